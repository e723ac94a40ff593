"""`run --shard i/N`: shards of the gradients stage run side by side (shared project lock),
a plain `run` is kept out meanwhile, and afterwards merges them into the store an
unsharded run computes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tinymodels import change_data_of

from subsetctl.api import plan_project, run_project
from subsetctl.cli import main
from subsetctl.errors import LockedError, UserError
from subsetctl.file_locks import exclusive_file_lock
from subsetctl.project import Project

#: how a passed-over shard's warning ends
_DELETED = "and its folder is deleted with the merged shards once they are (copy it aside now to keep it)."


def _hold_lock(root: Path, shared: bool, shard: bool = False, until_told: bool = False) -> subprocess.Popen:
    """Another process holding the project lock (as a running `run` or `run --shard` would) for a
    minute, or with ``until_told`` until a line comes on its stdin (it says "let go" once it has
    let go); at most a minute still, so that a waiter never told fails the test, not hangs it."""
    hold = "select.select([sys.stdin], [], [], 60)" if until_told else "time.sleep(60)"
    code = (
        "import select, sys, time; from pathlib import Path; from subsetctl.project import Project\n"
        f"with Project(Path({str(root)!r})).lock(shared={shared}, shard={shard}):\n"
        f"    print('locked', flush=True); {hold}\n"
        "print('let go', flush=True)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE if until_told else None,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def _hold_file_lock(lock: Path) -> subprocess.Popen:
    """Another process holding ``lock`` exclusively (as a running `run --shard` its shard's)."""
    code = ("import sys, time; from pathlib import Path; from subsetctl.file_locks import exclusive_file_lock\n"
            f"with exclusive_file_lock(Path({str(lock)!r}), 'busy'):\n"
            "    print('locked', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def _release(holder: subprocess.Popen) -> None:
    holder.kill()
    holder.wait()


def test_shared_lock_admits_shards_and_keeps_plain_runs_out(tmp_path: Path) -> None:
    project = Project(tmp_path)
    holder = _hold_lock(tmp_path, shared=True)
    try:
        with project.lock(shared=True):  # a second shard: fine
            pass
        with pytest.raises(LockedError, match="run --shard"), project.lock():
            pass
    finally:
        _release(holder)
    holder = _hold_lock(tmp_path, shared=False)
    try:
        with pytest.raises(LockedError, match=str(holder.pid)), project.lock(shared=True):
            pass
    finally:
        _release(holder)
    with project.lock(shared=True):  # the dead exclusive holder's PID does not block or confuse anyone
        pass
    with project.lock():
        pass


def test_a_lock_left_by_a_killed_run_not_yet_reaped_is_taken_over_as_stale(tmp_path: Path) -> None:
    """A run killed while its parent has not yet reaped it (a script waiting on another shard
    first, or a moment's race) is a zombie that ``kill(pid, 0)`` still finds: the run taking its
    lock said nothing of taking it over (a shard told it was waiting for that PID then went on
    computing meta_init itself)."""
    for shard in (False, True):
        holder = _hold_lock(tmp_path, shared=False, shard=shard)
        holder.kill()
        os.waitid(os.P_PID, holder.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped: a zombie
        notes: list[str] = []
        try:
            with Project(tmp_path).lock(notice=notes.append, shard=shard):
                pass
        finally:
            holder.wait()
        assert notes == [f"Took over a stale lock left by PID {holder.pid}, which is no longer running."]


def test_a_shard_run_waits_for_another_shard_runs_preparation_but_not_for_a_plain_run(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.state_dir.mkdir()
    preparing = _hold_lock(tmp_path, shared=False, shard=True, until_told=True)  # a shard run's stages before gradients
    try:
        assert project.run_in_progress() == str(preparing.pid)  # `plan` names the PID alone
        with pytest.raises(LockedError, match=str(preparing.pid)), project.lock():
            pass  # a plain run does not wait
        said: list[str] = []

        def let_go_once_waited_for(line: str) -> None:  # (not a time: on a busy machine the checks above took 1 s)
            said.append(line)
            preparing.stdin.write("done\n")
            preparing.stdin.flush()

        with project.lock(shard=True, waiting=let_go_once_waited_for):  # another shard run waits, then takes it
            assert said and preparing.stdout.readline().strip() == "let go"  # taken after the holder let go
        assert said == [(f"Waiting for the shard run PID {preparing.pid}, which runs the stages before gradients "
                         "(or puts kept results back) for every shard.")]
    finally:
        _release(preparing)
    plain = _hold_lock(tmp_path, shared=False)  # a plain run: a shard run does not wait for it
    try:
        with pytest.raises(LockedError, match=str(plain.pid)) as raised, project.lock(shard=True, shared=True):
            pass
        assert raised.value.holder == "run"
    finally:
        _release(plain)


def test_shard_runs_started_at_the_same_moment_prepare_once_then_run_side_by_side(tiny_project: Path) -> None:
    command = "import sys; from subsetctl.cli import main; sys.argv[0] = 'subsetctl'; main()"
    shards = [subprocess.Popen([sys.executable, "-c", command, "run", str(tiny_project), "--shard", f"{i}/2"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [shard.communicate(timeout=300)[0] for shard in shards]
    assert [shard.returncode for shard in shards] == [0, 0], outputs
    assert sum("Ran data, meta_init" in out for out in outputs) == 1, outputs  # the stages before, once
    assert sum("Waiting for the shard run PID" in out for out in outputs) <= 1, outputs
    (gradients,) = [s for s in plan_project(tiny_project)[2] if s.name == "gradients"]
    assert gradients.reasons == ["all 2 gradient shards done; `run` merges them"]


def test_shards_run_alongside_each_other_then_merge(tiny_project: Path) -> None:
    first = run_project(tiny_project, options={"shard": (0, 2)})
    assert [(r["stage"], r["action"]) for r in first] == [("data", "ran"), ("meta_init", "ran"),
                                                          ("gradients", "partial")]
    (gradients,) = [s for s in plan_project(tiny_project)[2] if s.name == "gradients"]
    assert gradients.state == "unfinished"  # not "a run stopped partway": shards were asked for
    assert gradients.reasons == [("1 of 2 gradient shards done; left: 1/2 (not started); `run --shard 1/2` computes "
                                  "it, then `run` merges them (it computes any rows still missing itself)")]
    holder = _hold_lock(tiny_project, shared=True)  # shard 0 "still running" in another process
    try:
        second = run_project(tiny_project, options={"shard": (1, 2)})
        assert [(r["stage"], r["action"]) for r in second][-1] == ("gradients", "partial")
        (gradients,) = [s for s in plan_project(tiny_project)[2] if s.name == "gradients"]
        assert gradients.reasons == ["all 2 gradient shards done; `run` merges them"]
        assert all(r["action"] == "up to date" for r in second[:-1])
        with pytest.raises(LockedError, match="run --shard"):
            run_project(tiny_project, until="gradients")  # a plain run waits for the shards
    finally:
        _release(holder)

    merged = run_project(tiny_project, until="gradients")
    # the memory budget changes how P is streamed, not P: it must not recompute the stage
    (gradients,) = [s for s in plan_project(tiny_project, ["gradients.memory_budget_mb=0.5"])[2]
                    if s.name == "gradients"]
    assert gradients.state == "up to date", gradients.reasons
    assert merged[-1] == {"stage": "gradients", "action": "ran", "seconds": merged[-1]["seconds"]}
    state = tiny_project / ".subsetctl" / "gradients"
    summary = json.loads((state / "manifest.json").read_text())["summary"]
    assert summary["computed"] == 0 and summary["reused"] == summary["rows"]  # every row came from the shards
    assert not (state / "shards").exists()  # merged: no second copy of the store left behind
    sharded = np.load(state / "store" / "features.npy")

    run_project(tiny_project, until="gradients", force=["gradients"])  # the same rows, unsharded
    assert summary["rows"] == len(np.load(state / "store" / "features.npy"))
    np.testing.assert_allclose(np.load(state / "store" / "features.npy"), sharded, rtol=1e-5, atol=1e-6)


def test_one_shard_twice_and_force_with_shard_are_refused(tiny_project_ran, monkeypatch) -> None:
    """The second run of a shard fails on the shard's lock before it loads the model (which
    takes minutes for a real one), not after."""
    from subsetctl.stages import common

    tiny_project = tiny_project_ran("meta_init")
    shard_lock = tiny_project / ".subsetctl" / "gradients" / "shards" / "shard-0-of-2.lock"
    loads: list[str] = []

    def no_loading(ctx):
        loads.append(ctx.out_dir.name)
        raise AssertionError("the model was loaded although the shard's lock is held")

    monkeypatch.setattr(common, "base_model", no_loading)
    with exclusive_file_lock(shard_lock, "held by the test"), pytest.raises(LockedError, match="already being"):
        run_project(tiny_project, options={"shard": (0, 2)})
    assert loads == []
    with pytest.raises(UserError, match=re.escape("force=['gradients'] cannot be combined with options['shard']")):
        run_project(tiny_project, force=["gradients"], options={"shard": (0, 2)})


def test_a_shard_run_again_after_it_finished_says_so_without_loading_the_model(tiny_project_ran, monkeypatch) -> None:
    """Running a finished, unmerged shard again loaded the model (25 s for SmolLM2-135M) to
    say "0 rows computed, N already there"; it says so before loading it. A shard with rows
    left still loads it."""
    from subsetctl.reporter import SilentReporter
    from subsetctl.stages import common

    tiny_project = tiny_project_ran("meta_init")
    run_project(tiny_project, options={"shard": (0, 2)})
    loads: list[str] = []
    real = common.base_model

    def counted(ctx):
        loads.append(ctx.out_dir.name)
        return real(ctx)

    monkeypatch.setattr(common, "base_model", counted)
    reporter = SilentReporter()
    run_project(tiny_project, reporter=reporter, options={"shard": (0, 2)})
    assert loads == [] and any("0 rows computed" in line and "the model was not loaded" in line
                               for line in reporter.messages), reporter.messages
    run_project(tiny_project, options={"shard": (1, 2)})  # one with rows left loads it
    assert loads == ["gradients"]


def test_a_shard_run_dealt_no_rows_says_it_needs_none(tiny_project_ran, monkeypatch) -> None:
    """`run --shard 0/1000` (more shards than batches) said "0 rows computed, 0 already there",
    as a shard whose rows another run computed; it says the shard holds no rows and needs no run,
    without loading the model (it loaded it to find nothing to do)."""
    from subsetctl.reporter import SilentReporter
    from subsetctl.stages import common

    tiny_project = tiny_project_ran("meta_init")
    monkeypatch.setattr(common, "base_model", lambda ctx: pytest.fail("the model was loaded"))
    reporter = SilentReporter()
    run_project(tiny_project, reporter=reporter, options={"shard": (0, 1000)})
    assert any(line.startswith("Shard 0/1000 holds no rows (more shards than the ") and
               "no `run --shard` is needed for it" in line for line in reporter.messages), reporter.messages


def test_cli_shard_run_says_what_is_left(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran("meta_init")  # a copy: the shard runs still start from there
    result = CliRunner().invoke(main, ["run", str(tiny_project), "-q", "--shard", "1/2"])
    assert result.exit_code == 0, result.output
    assert "gradients shard 1/2 is done" in result.output and "without --shard) merges" in result.output
    assert "Everything is up to date" not in result.output and "selections" not in result.output
    # the gradients complete (and later stages stale): not "up to date", and no report
    run_project(tiny_project)
    result = CliRunner().invoke(main, ["run", str(tiny_project), "-q", "--shard", "1/2", "estimate.lam=0.25"])
    assert result.exit_code == 0, result.output
    assert "the gradients stage is complete: shard 1/2 has nothing to compute" in result.output
    # the run that goes on: this project with the shard's overrides (a plain `subsetctl run` was named, which
    # with the spec alone passes over the shards of other settings), and its options but --shard
    assert (f"`subsetctl run {tiny_project} --quiet estimate.lam=0.25` (without --shard) goes on"
            in " ".join(result.output.split())), result.output
    assert "Everything is up to date" not in result.output and "selections" not in result.output


def test_a_shard_run_with_other_overrides_is_refused_rather_than_discarding_the_other_shards(tiny_project_ran) -> None:
    """Shard 1/2 started with an override shard 0/2 was not started with (or the other way
    round) deleted shard 0/2's computed rows to start over for its own inputs; it is refused
    now, naming the shards and what differs, and the rows stay to be merged."""
    tiny_project = tiny_project_ran("meta_init")
    run_project(tiny_project, ["gradients.d=8"], options={"shard": (0, 2)})
    shard = tiny_project / ".subsetctl" / "gradients" / "shards" / "shard-0-of-2"
    before = np.load(shard / "features.npy").copy()
    result = CliRunner().invoke(main, ["run", str(tiny_project), "-q", "--shard", "1/2"])
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert "shard 0/2:" in message and "differing: settings gradients.d" in message, message
    assert "Traceback" not in result.output and "delete" in message and "shards first" in message, message
    np.testing.assert_array_equal(np.load(shard / "features.npy"), before)
    run_project(tiny_project, ["gradients.d=8"], options={"shard": (1, 2)})  # as shard 0/2: side by side
    assert run_project(tiny_project, ["gradients.d=8"], until="gradients")[-1]["action"] == "ran"
    summary = json.loads((Project(tiny_project).stage_dir("gradients") / "manifest.json").read_text())["summary"]
    assert summary["reused"] == summary["rows"], summary  # every row from the two shards


def test_the_merging_run_without_the_shards_overrides_is_refused_rather_than_discarding_them(tiny_project_ran) -> None:
    """The plain run meant to merge shards started with `gradients.d=8`, run without it,
    deleted every shard's rows silently (README: a shard of other settings "is not merged,
    with a warning"); it is refused now, naming --force gradients to discard them on purpose."""
    tiny_project = tiny_project_ran("meta_init")
    run_project(tiny_project, ["gradients.d=8"], options={"shard": (0, 2)})
    gradients = {s.name: s for s in plan_project(tiny_project)[2]}["gradients"]  # not "`run` starts over"
    assert any("`run` refuses rather than discard their rows" in r for r in gradients.reasons), gradients.reasons
    with pytest.raises(UserError, match="this run would discard their rows to start over instead of merging") as caught:
        run_project(tiny_project, until="gradients")
    assert "shard 0/2:" in str(caught.value) and "--force gradients" in str(caught.value)
    assert (tiny_project / ".subsetctl" / "gradients" / "shards" / "shard-0-of-2").is_dir()
    results = run_project(tiny_project, ["gradients.d=8"], until="gradients")  # merges shard 0/2's rows
    summary = json.loads((Project(tiny_project).stage_dir("gradients") / "manifest.json").read_text())["summary"]
    assert results[-1]["action"] == "ran" and 0 < summary["reused"] < summary["rows"], summary


def test_a_shard_run_with_other_overrides_than_running_shards_says_so(tiny_project_ran) -> None:
    """It was told only that the project "is locked by running `subsetctl run --shard`
    processes. Wait for them to finish", though shards are to run side by side: the user
    was left to guess that its overrides differed from theirs."""
    tiny_project = tiny_project_ran("meta_init")
    run_project(tiny_project, options={"shard": (0, 2)})  # the gradients folder readied for the spec
    holder = _hold_lock(tiny_project, shared=True, shard=True)  # shards running now
    try:
        with pytest.raises(LockedError, match="for other inputs than this run's: its spec, overrides") as caught:
            run_project(tiny_project, ["gradients.d=8"], options={"shard": (1, 2)})
        assert "Start every shard with the spec and overrides the running ones were started with" in str(caught.value)
        run_project(tiny_project, options={"shard": (1, 2)})  # the same spec: side by side
    finally:
        _release(holder)


def test_a_stopped_shard_run_names_the_shard_run_that_resumes_it(tmp_path: Path, monkeypatch) -> None:
    """A shard run stopped (Ctrl-C, SIGTERM) said "`subsetctl run` resumes", a plain run, which
    is refused while the other shards run and computes every missing row itself after; it
    names the shard's own run, with its overrides, now."""
    import subsetctl.api

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(subsetctl.api, "run_project", stopped)
    result = CliRunner().invoke(main, ["run", str(tmp_path), "--shard", "1/2", "gradients.d=8"])
    assert result.exit_code == 130, result.output
    said = " ".join(result.output.split())  # (however the console wraps it)
    assert f"`subsetctl run {tmp_path} --shard 1/2 gradients.d=8` resumes this shard" in said, said
    result = CliRunner().invoke(main, ["run", str(tmp_path), "gradients.d=8"])
    assert (f"finished work is kept, `subsetctl run {tmp_path} gradients.d=8` resumes."
            in " ".join(result.output.split())), result.output


def test_a_stopped_run_of_a_finished_shard_says_nothing_is_left_to_resume(tiny_project_ran, monkeypatch) -> None:
    """Stopping a run of a shard an earlier run finished said "`... --shard 0/2` resumes this
    shard", though nothing of it was left; it says so, and names the run that merges."""
    import subsetctl.api

    tiny_project = tiny_project_ran("meta_init")
    run_project(tiny_project, options={"shard": (0, 2)})

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(subsetctl.api, "run_project", stopped)
    said = " ".join(CliRunner().invoke(main, ["run", str(tiny_project), "--shard", "0/2"]).output.split())
    assert "resumes this shard" not in said, said
    assert (f"shard 0/2 was finished already: nothing of it is left to compute. When every shard is, "
            f"`subsetctl run {tiny_project}` (without --shard) merges them") in said, said
    said = " ".join(CliRunner().invoke(main, ["run", str(tiny_project), "--shard", "1/2"]).output.split())
    assert f"`subsetctl run {tiny_project} --shard 1/2` resumes this shard" in said, said


def test_the_command_resuming_a_stopped_run_keeps_its_options_but_force(tmp_path: Path, monkeypatch) -> None:
    """The command a stopped `run --shard 0/2 --format json` named to resume it left out
    `--format json` (and `--quiet`), so a script pasting it got text on stdout: it keeps the
    options given, but `--force` (the stopped stage resumes; forced again, it would start over)."""
    import subsetctl.api

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(subsetctl.api, "run_project", stopped)
    result = CliRunner().invoke(main, ["run", str(tmp_path), "--shard", "0/2", "--format", "json", "gradients.d=8"])
    assert result.exit_code == 130, result.output
    said = json.loads(result.stdout)["error"]["message"]
    assert f"`subsetctl run {tmp_path} --shard 0/2 --format json gradients.d=8` resumes this shard" in said, said
    result = CliRunner().invoke(main, ["run", str(tmp_path), "--force", "data", "--until", "search", "-q",
                                       "--format=json", "gradients.d=8"])
    said = json.loads(result.stdout)["error"]["message"]
    assert f"`subsetctl run {tmp_path} --until search --quiet --format json gradients.d=8` resumes." in said, said


def test_a_damaged_upstream_stage_is_recomputed_once_before_the_shard(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran("meta_init")
    adapter = next((tiny_project / ".subsetctl" / "meta_init" / "adapter").glob("*.safetensors"))
    adapter.write_bytes(adapter.read_bytes()[:100])  # truncated: fails its checksum
    results = run_project(tiny_project, options={"shard": (0, 2)})
    assert [(r["stage"], r["action"]) for r in results] == [("data", "up to date"), ("meta_init", "ran"),
                                                            ("gradients", "partial")]


def test_shards_an_earlier_version_finished_merge_with_shards_finished_now(tiny_project_ran) -> None:
    """A shard finished before the upgrade names the model folder's path in its info.json,
    one finished after names the folder by its files: they were not merged ("Could not
    merge shards") and every row was computed again."""
    from subsetctl.modeling.resolve import model_location
    from subsetctl.spec import load_spec

    tiny_project = tiny_project_ran("meta_init")  # a copy: the shard runs still start from there
    run_project(tiny_project, options={"shard": (0, 2)})
    info_path = tiny_project / ".subsetctl" / "gradients" / "shards" / "shard-0-of-2" / "info.json"
    info = json.loads(info_path.read_text())
    assert "known by its files" in info["model"]
    spec = load_spec(tiny_project / "subsetctl.yaml")
    info_path.write_text(json.dumps({**info, "model": model_location(spec.model.source, tiny_project)}))
    run_project(tiny_project, options={"shard": (1, 2)})
    run_project(tiny_project, until="gradients")
    summary = json.loads((tiny_project / ".subsetctl" / "gradients" / "manifest.json").read_text())["summary"]
    assert summary["computed"] == 0 and summary["reused"] == summary["rows"]


def test_shards_of_different_counts_give_their_rows_to_the_merge(tiny_project_ran) -> None:
    """Shard 0/2 finished, then the job was re-split in three and 1/3 and 2/3 finished: the
    shards cover every row between them but do not tile, so the merge was refused ("Could
    not merge shards") and every row computed again. Now each shard's rows are taken, and
    so are the rows of a shard stopped partway; only rows no shard has are computed."""
    from subsetctl.gradients.store import GradientStore
    from subsetctl.spec import load_spec

    tiny_project = tiny_project_ran("meta_init")  # a copy: the shard runs still start from there
    run_project(tiny_project, options={"shard": (0, 2)})
    run_project(tiny_project, options={"shard": (1, 3)})
    run_project(tiny_project, options={"shard": (2, 3)})
    merged = run_project(tiny_project, until="gradients")
    assert merged[-1]["action"] == "ran"
    state = tiny_project / ".subsetctl" / "gradients"
    summary = json.loads((state / "manifest.json").read_text())["summary"]
    assert summary["computed"] == 0 and summary["reused"] == summary["rows"]
    sharded = np.load(state / "store" / "features.npy")

    run_project(tiny_project, until="gradients", force=["gradients"])  # the same rows, unsharded
    np.testing.assert_allclose(np.load(state / "store" / "features.npy"), sharded, rtol=1e-5, atol=1e-6)

    # a shard stopped partway: its written rows are taken, the others computed
    store = GradientStore.open(state / "store", writable=False)
    n_rows = store.n_rows
    run_project(tiny_project, ["gradients.seed=5"], options={"shard": (0, 2)})
    half = state / "shards" / "shard-0-of-2"
    batch_size = load_spec(tiny_project / "subsetctl.yaml").gradients.batch_size
    written = np.load(half / "written.npy", mmap_mode="r+")
    assert written.all() and len(written) > batch_size
    kept = batch_size  # its first batch only
    written[kept:] = False
    written.flush()
    del written
    run_project(tiny_project, ["gradients.seed=5"], until="gradients")
    summary = json.loads((state / "manifest.json").read_text())["summary"]
    assert (summary["reused"], summary["computed"]) == (kept, n_rows - kept)
    # a shard computed with other settings gives nothing (a run with other settings than the
    # shards' is refused, not to discard them by mistake: --force gradients discards them)
    run_project(tiny_project, ["gradients.seed=7"], options={"shard": (0, 2)})
    with pytest.raises(UserError, match="differing: settings gradients.seed"):
        run_project(tiny_project, ["gradients.seed=9"], until="gradients")
    run_project(tiny_project, ["gradients.seed=9"], until="gradients", force=["gradients"])
    summary = json.loads((state / "manifest.json").read_text())["summary"]
    assert (summary["reused"], summary["computed"]) == (0, n_rows)


def test_plan_says_shards_of_different_counts_that_cover_every_row_are_ready_to_merge(tmp_path: Path) -> None:
    """0/2 finished, then the job re-split as 1/3 and 2/3: the shards have every row between
    them and a plain `run` computes none, but `plan` said "2 of 3 gradient shards done;
    compute the others with `run --shard i/3`" (shard 0/3: rows 0/2 already has). With 2/3
    stopped partway, it said "left: 0/3 (not started)" and `run --shard 0/3`, which computes
    0/2's rows again: 0/3 is now said to need no shard run."""
    from types import SimpleNamespace

    from subsetctl.gradients.store import create_shard_store
    from subsetctl.stages.gradients import GradientsStage

    shards = tmp_path / "gradients" / "shards"
    rows = [{"source": "s", "row": i} for i in range(12)]
    for index, count in ((0, 2), (1, 3), (2, 3)):
        store = create_shard_store(shards, rows, 4, 0, {"seed": 0}, index, count, 2)
        store.written[:] = True
        store.written.flush()
    project = SimpleNamespace(stage_dir=lambda name: tmp_path / name)
    note = GradientsStage().unfinished_note(project) or ""
    assert "every row" in note and "`run` merges them" in note and "compute the others" not in note, note
    store.written[-1] = False  # 2/3 stopped partway: a row no shard has
    store.written.flush()
    note = GradientsStage().unfinished_note(project) or ""
    # 0/3's rows are 0/2's: `run --shard 0/3` would compute them again (it takes no other shard's rows)
    assert note == ("1 of 3 gradient shards done; 0/3 needs no `run --shard`: shards of another count have its rows, "
                    "which the merge takes; left: 2/3 (3 of 4 rows computed); `run --shard 2/3` computes it, then "
                    "`run` merges them (it computes any rows still missing itself)"), note
    shutil.rmtree(shards / "shard-0-of-2")  # 0/3's rows no shard has: it is to be computed again
    note = GradientsStage().unfinished_note(project) or ""
    assert note.startswith("1 of 3 gradient shards done; left: 0/3 (not started), 2/3 (3 of 4 rows computed); "), note


def test_plan_says_a_shard_dealt_no_rows_needs_no_shard_run(tmp_path: Path) -> None:
    """More shards than batches (12 rows in 6 batches of 2, 8 shards): shards 0/8 and 4/8 are
    dealt no rows, but `plan` listed them as "left: 0/8 (not started)" with a `run --shard 0/8`
    to compute them, which loads the model to compute nothing; they are said to need none."""
    from types import SimpleNamespace

    from subsetctl.gradients.store import create_shard_store, shard_rows
    from subsetctl.stages.gradients import GradientsStage

    shards = tmp_path / "gradients" / "shards"
    rows = [{"source": "s", "row": i} for i in range(12)]
    assert [i for i in range(8) if not shard_rows(12, i, 8, 2)] == [0, 4]
    for index in (1, 2, 3, 5, 6):  # all but 7/8 of those with rows
        store = create_shard_store(shards, rows, 4, 0, {"seed": 0}, index, 8, 2)
        store.written[:] = True
        store.written.flush()
    project = SimpleNamespace(stage_dir=lambda name: tmp_path / name)
    note = GradientsStage().unfinished_note(project) or ""
    assert note == ("5 of 8 gradient shards done; 0/8 and 4/8 need no `run --shard`: they hold no rows (more shards "
                    "than batches of gradients); left: 7/8 (not started); `run --shard 7/8` computes it, then `run` "
                    "merges them (it computes any rows still missing itself)"), note
    store = create_shard_store(shards, rows, 4, 0, {"seed": 0}, 7, 8, 2)
    store.written[:] = True
    store.written.flush()
    note = GradientsStage().unfinished_note(project) or ""
    assert note == ("all 6 gradient shards with rows of 8 done; 0/8 and 4/8 need no `run --shard`: they hold no "
                    "rows (more shards than batches of gradients); `run` merges them"), note


def test_a_damaged_shard_is_warned_about_and_its_rows_computed(tiny_project_ran) -> None:
    """A shard whose data file is cut short (a disk filled up, a copy between machines
    stopped) is passed over with the shards of other settings: the merge takes the other
    shard's rows and computes that one's, and a warning says so (it said nothing: the work
    of a shard computed on another machine was thrown away unsaid)."""
    from subsetctl.reporter import SilentReporter

    tiny_project = tiny_project_ran("meta_init")  # a copy: the shard runs still start from there
    run_project(tiny_project, options={"shard": (0, 2)})
    run_project(tiny_project, options={"shard": (1, 2)})
    features = tiny_project / ".subsetctl" / "gradients" / "shards" / "shard-1-of-2" / "features.npy"
    features.write_bytes(features.read_bytes()[:200])
    reporter = SilentReporter()
    merged = run_project(tiny_project, until="gradients", reporter=reporter)
    assert merged[-1]["action"] == "ran"
    assert [w for w in reporter.warnings if w.startswith("gradients: shard")] == [
        "gradients: shard 1/2 is not merged (its files are damaged or incomplete); its rows are computed here, "
        + _DELETED]
    summary = json.loads((tiny_project / ".subsetctl" / "gradients" / "manifest.json").read_text())["summary"]
    assert 0 < summary["reused"] < summary["rows"] and summary["reused"] + summary["computed"] == summary["rows"]


def test_a_shard_of_other_data_copied_in_is_not_merged(tiny_project_ran) -> None:
    """A shard records the data results it was computed from: one of other data (copied in
    from a machine whose data files differed, with no work.json to tell) is passed over
    with a warning, its rows computed here, as one of other settings is."""
    from subsetctl.reporter import SilentReporter

    tiny_project = tiny_project_ran("meta_init")
    run_project(tiny_project, options={"shard": (0, 2)})
    run_project(tiny_project, options={"shard": (1, 2)})
    info_path = tiny_project / ".subsetctl" / "gradients" / "shards" / "shard-1-of-2" / "info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "data": "0123456789abcdef"}))
    reporter = SilentReporter()
    assert run_project(tiny_project, until="gradients", reporter=reporter)[-1]["action"] == "ran"
    (warning,) = [w for w in reporter.warnings if w.startswith("gradients: shard")]
    assert warning.startswith(f"gradients: shard 1/2 is not merged (computed with other settings or another model, "
                              f"adapter or data: data: stored '0123456789abcdef', expected {info['data']!r})"), warning
    summary = json.loads((tiny_project / ".subsetctl" / "gradients" / "manifest.json").read_text())["summary"]
    assert 0 < summary["reused"] < summary["rows"] and summary["reused"] + summary["computed"] == summary["rows"]


def test_force_with_shard_advises_commands_that_work(tiny_project_ran) -> None:
    """The advice names the project and a command that runs: `--until meta_init` would refuse
    `--force gradients` (it comes after), so that one goes with a plain run."""
    tiny_project = tiny_project_ran("meta_init")  # a copy of a project that ran as far as the shards start
    with pytest.raises(UserError, match=re.escape("force=['gradients'] cannot be combined with options['shard']")
                       ) as refused:
        run_project(tiny_project, force=["gradients"], options={"shard": (0, 2)})
    assert "--until" not in str(refused.value) and "DIR" not in str(refused.value)
    assert f"plain `subsetctl run {tiny_project}` (without --shard)" in str(refused.value)
    with pytest.raises(UserError, match=re.escape("force=['data', 'search'] cannot be combined with options['shard']")
                       ) as refused:
        run_project(tiny_project, force=["data", "search"], options={"shard": (0, 2)})
    assert f"`subsetctl run {tiny_project} --force data --until meta_init` first" in str(refused.value)
    assert "--force search goes with a plain" in str(refused.value)
    with pytest.raises(UserError, match=r"--force gradients, --force search go with a plain `subsetctl run .*"
                                        r"\(without --shard\), which computes them itself"):
        run_project(tiny_project, force=["search", "gradients"], options={"shard": (0, 2)})
    run_project(tiny_project, force=["data"], until="meta_init")  # the advised command runs


@pytest.mark.parametrize(("damaged", "artifact"), [("meta_init", "adapter/adapter_model.safetensors"),
                                                   ("gradients", "store/features.npy")])
def test_damage_found_by_a_shard_run_advises_a_run_that_recomputes_it(tiny_project_ran, damaged: str,
                                                                      artifact: str) -> None:
    """Artifacts found damaged by a shard run (holding the lock shared, so it cannot
    recompute them) were always said to be recomputed by `run --until meta_init`, which
    leaves a damaged gradients stage as it is."""
    from subsetctl.api import make_pipeline
    from subsetctl.spec import load_spec

    tiny_project = tiny_project_ran("gradients")
    path = tiny_project / ".subsetctl" / damaged / artifact
    path.write_bytes(path.read_bytes()[:100])  # truncated: fails its checksum
    project = Project(tiny_project)
    pipeline = make_pipeline(project, load_spec(project.spec_path))
    with pytest.raises(UserError, match=rf"Stage {damaged}: artifacts fail their checksums .*Stop the shard runs, "
                                        rf"then `subsetctl run \S+ --until {damaged}` recomputes it"):
        pipeline._run_stages("gradients", set(), {}, None, shared=True)


def test_the_truncation_warning_counts_rows_taken_from_shards_or_kept_from_a_stopped_run(tiny_project: Path) -> None:
    """The gradients stage counted the rows model.max_length cut only among those it
    computed itself: merged from shards it said nothing (and recorded truncated: 0), and
    resumed after a stop it counted only the rows left to compute. Both now say what a
    single run says, of every row."""
    from subsetctl.reporter import SilentReporter

    state = tiny_project / ".subsetctl" / "gradients"

    def gradients(overrides: list[str]) -> tuple[list[str], dict]:
        reporter = SilentReporter()
        run_project(tiny_project, ["model.max_length=8", *overrides], until="gradients", reporter=reporter)
        said = [w for w in reporter.warnings if w.startswith("gradients: model.max_length=8 tokens cut")]
        return said, json.loads((state / "manifest.json").read_text())["summary"]

    whole, summary = gradients([])
    assert len(whole) == 1 and summary["truncated"] > 0 and summary["computed"] == summary["rows"]
    truncated = summary["truncated"]

    written = np.load(state / "store" / "written.npy", mmap_mode="r+")
    written[len(written) // 2:] = False  # a run stopped halfway
    written.flush()
    del written
    (state / "manifest.json").unlink()  # an unfinished stage: its work.json remains
    said, summary = gradients([])
    assert 0 < summary["reused"] < summary["rows"]
    assert (said, summary["truncated"]) == (whole, truncated)

    for shard in range(2):  # other settings, so every row is computed again, by the shards
        run_project(tiny_project, ["model.max_length=8", "gradients.seed=5"], options={"shard": (shard, 2)})
    said, summary = gradients(["gradients.seed=5"])
    assert summary["computed"] == 0 and summary["reused"] == summary["rows"]
    assert (said, summary["truncated"]) == (whole, truncated)


def test_until_before_gradients_with_shard_is_refused(tiny_project: Path) -> None:
    """`run --shard 0/2 --until data` ignored --until: it ran data, meta_init and the shard
    (hours of gradients on a GPU) when only the data was asked for."""
    result = CliRunner().invoke(main, ["run", str(tiny_project), "-q", "--shard", "0/2", "--until", "data"])
    assert result.exit_code == 1, result.output
    assert "--until data stops before the gradients stage" in result.output
    assert f"`subsetctl run {tiny_project} --until data` (without --shard)" in result.output
    # with the run's overrides, as typed (without them, the command advised ran another variant)
    result = CliRunner().invoke(main, ["run", str(tiny_project), "-q", "--shard", "0/2", "--until", "data",
                                       "sources.a.max_examples=3", "gradients.d=8"])
    assert (f"`subsetctl run {tiny_project} --until data sources.a.max_examples=3 gradients.d=8` (without --shard)"
            in " ".join(result.output.split())), result.output
    assert not (tiny_project / ".subsetctl" / "data").exists()  # nothing ran
    with pytest.raises(UserError) as refused:  # Python is told of its own arguments, not of --until and --shard
        run_project(tiny_project, until="data", options={"shard": (0, 2)})
    assert str(refused.value).startswith("until='data' stops before the gradients stage, of which options['shard'] "
                                         "computes a shard"), refused.value
    assert str(refused.value).endswith("or leave out until to compute the shard."), refused.value
    forced = CliRunner().invoke(main, ["run", str(tiny_project), "-q", "--shard", "0/2", "--force", "data"])
    assert forced.exit_code == 1 and "--force cannot be combined with --shard" in forced.output, forced.output
    results = run_project(tiny_project, until="gradients", options={"shard": (0, 2)})  # as far as the shard: fine
    assert results[-1]["action"] == "partial"


def test_commands_the_pipeline_advises_name_the_project_as_the_command_line_did(tiny_project: Path,
                                                                                monkeypatch) -> None:
    """The pipeline's advice named the project by its absolute folder (`subsetctl run
    /home/me/work/proj --until data`) while the CLI's own advice ("`subsetctl run proj ...` goes
    on") named it as typed: both name it as typed now, and a caller of the API, whose relative
    path was from its own folder, gets the absolute folder."""
    monkeypatch.chdir(tiny_project.parent)
    said = CliRunner().invoke(main, ["run", tiny_project.name, "-q", "--shard", "0/2", "--until", "data", "gradients.d=8"])
    assert said.exit_code == 1, said.output
    assert f"`subsetctl run {tiny_project.name} --until data gradients.d=8` (without --shard)" in \
        " ".join(said.output.split()), said.output
    monkeypatch.chdir(tiny_project)
    said = CliRunner().invoke(main, ["run", "-q", "--shard", "0/2", "--until", "data"])
    assert "`subsetctl run --until data` (without --shard)" in " ".join(said.output.split()), said.output
    with pytest.raises(UserError) as refused:
        run_project(".", until="data", options={"shard": (0, 2)})
    assert f"`subsetctl run {tiny_project.resolve()} --until data` (without --shard)" in str(refused.value)


def test_plan_names_each_shard_left_once_with_what_it_lacks(tmp_path: Path) -> None:
    """Shards stopped partway or never started: `plan` said "1 of 4 gradient shards done;
    compute the others with `run --shard i/4`", which named none of them, and a shard the
    merge passes over (damaged) was among "the others" and said again after. Each shard left
    is named once, with its rows computed or "not started", and its `run --shard`; one being
    computed now is not told to be computed."""
    from types import SimpleNamespace

    from subsetctl.gradients.store import create_shard_store
    from subsetctl.stages.gradients import GradientsStage

    shards = tmp_path / "gradients" / "shards"
    rows = [{"source": "s", "row": i} for i in range(16)]
    for index in (0, 1, 3):
        store = create_shard_store(shards, rows, 4, 0, {"seed": 0}, index, 4, 2)
        store.written[:] = index != 1
        store.written[:1] = True
        store.written.flush()
    project = SimpleNamespace(stage_dir=lambda name: tmp_path / name)
    assert GradientsStage().unfinished_note(project) == (
        "2 of 4 gradient shards done; left: 1/4 (1 of 4 rows computed), 2/4 (not started); `run --shard 1/4` and "
        "`run --shard 2/4` compute them, then `run` merges them (it computes any rows still missing itself)")
    (shards / "shard-3-of-4" / "info.json").unlink()  # damaged: named once, as such
    note = GradientsStage().unfinished_note(project) or ""
    assert note == ("1 of 4 gradient shards done; left: 1/4 (1 of 4 rows computed), 2/4 (not started), 3/4 (its files "
                    "are damaged or incomplete); `run --shard 1/4`, `run --shard 2/4` and `run --shard 3/4` compute "
                    "them, then `run` merges them (it computes any rows still missing itself)"), note
    holder = _hold_file_lock(shards / "shard-2-of-4.lock")  # 2/4 being computed now
    try:
        note = GradientsStage().unfinished_note(project) or ""
        assert note.startswith("shard 2/4 being computed now by `run --shard`"), note
        assert "2/4 (not started)" not in note and "`run --shard 2/4`" not in note, note
    finally:
        _release(holder)


def test_plan_names_the_shards_being_computed_now(tmp_path: Path) -> None:
    """While `run --shard 0/2` computed, `plan` said "0 of 2 gradient shards done; compute
    the others with `run --shard i/2`", as of shards stopped partway, and nothing of the
    running one (a plain `run` is refused meanwhile)."""
    from types import SimpleNamespace

    from subsetctl.gradients.store import create_shard_store
    from subsetctl.stages.gradients import GradientsStage

    shards = tmp_path / "gradients" / "shards"
    rows = [{"source": "s", "row": i} for i in range(12)]
    create_shard_store(shards, rows, 4, 0, {"seed": 0}, 0, 2, 2)
    project = SimpleNamespace(stage_dir=lambda name: tmp_path / name)
    lock = shards / "shard-0-of-2.lock"
    holder = _hold_file_lock(lock)
    try:
        note = GradientsStage().unfinished_note(project) or ""
        assert note.startswith("shard 0/2 being computed now by `run --shard`"), note
        assert "0 of 2 gradient shards done" in note
    finally:
        _release(holder)
    note = GradientsStage().unfinished_note(project) or ""  # stopped: no longer named as being computed
    assert note.startswith("0 of 2 gradient shards done"), note
    with exclusive_file_lock(lock, "busy"):  # the probe left the lock free
        pass


def test_a_bad_shard_value_is_a_usage_error_also_under_python_O(tmp_path: Path) -> None:
    """--shard was checked with an ``assert``, which ``python -O`` strips: 3/2 then started a
    run; every bad value is a usage error (exit 2) naming the option, with or without -O."""
    for shard in ("3/2", "0/0", "a/b", "-1/2", "1/2/3", "", "2/2"):
        result = CliRunner().invoke(main, ["run", str(tmp_path), "--shard", shard])
        assert result.exit_code == 2 and "Invalid value for --shard" in result.output, (shard, result.output)
    command = "import sys; from subsetctl.cli import main; sys.argv[0] = 'subsetctl'; main()"
    done = subprocess.run([sys.executable, "-O", "-c", command, "run", str(tmp_path), "--shard", "3/2"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Invalid value for --shard" in done.stderr, done.stderr


def test_report_names_the_shards_being_computed_now_instead_of_a_stopped_run(tiny_project_ran) -> None:
    """While `run --shard 1/2` computed, `subsetctl report` said "Stopped partway: gradients.
    `subsetctl run DIR` resumes it", which a plain `run` then refused (the shards hold the lock)."""
    from subsetctl.report.terminal import load_report_data, outdated_note

    tiny_project = tiny_project_ran("gradients")
    spec = tiny_project / "subsetctl.yaml"
    spec.write_text(spec.read_text().replace("d: 16", "d: 8"))
    run_project(tiny_project, options={"shard": (0, 2)})
    lock = Project(tiny_project).stage_dir("gradients") / "shards" / "shard-1-of-2.lock"
    holder = _hold_file_lock(lock)
    try:
        data = load_report_data(tiny_project)
        note = outdated_note(data) or ""
        assert data["shards_running"] == ["1/2"] and "gradients" not in data["unfinished"], data
        assert "Gradient shard 1/2 is being computed now by `subsetctl run --shard`" in note, note
        assert "Stopped partway" not in note, note
    finally:
        _release(holder)
    data = load_report_data(tiny_project)  # the shard run stopped: shard 0/2 is done, 1/2 to compute
    assert "shards_running" not in data and "gradients" not in data["unfinished"], data
    assert data["shards_state"].startswith("1 of 2 gradient shards done; left: 1/2"), data
    assert "Stopped partway" not in (outdated_note(data) or "")


def test_report_says_every_shard_is_done_and_a_plain_run_merges_them(tiny_project_ran) -> None:
    """With every gradient shard done and not merged yet, `subsetctl report` (and its
    markdown) said "Stopped partway: gradients. `subsetctl run DIR` resumes it where it
    stopped", where `plan` said "all 2 gradient shards done; `run` merges them"."""
    tiny_project = tiny_project_ran("meta_init")  # a copy: the shard runs still start from there
    run_project(tiny_project, options={"shard": (0, 2)})
    run_project(tiny_project, options={"shard": (1, 2)})
    for fmt in ("text", "markdown"):
        result = CliRunner().invoke(main, ["report", str(tiny_project), "--format", fmt])
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.replace(">", " ").split())
        assert "Stopped partway" not in text, text
        assert ("Gradients computed in shards (`subsetctl run --shard i/N`): all 2 gradient shards done; `run` merges "
                f"them (`subsetctl run {tiny_project}`).") in text, text


def test_plan_says_unfinished_shards_survive_an_upstream_rerun_only_if_it_comes_out_as_before(
        tiny_project: Path) -> None:
    """With shard work done and meta_init to re-run, `plan` showed gradients as "never run"
    with no word of the shard work a changed meta_init output discards; it says so now, and a
    re-run that comes out as before (forced, same inputs) does resume the shard's rows."""
    run_project(tiny_project, options={"shard": (0, 2)})
    statuses = {s.name: s for s in plan_project(tiny_project, force=["meta_init"])[2]}
    gradients = statuses["gradients"]
    assert gradients.state == "never run" and any(
        "resumed only if the stages before it that re-run come out as before" in r for r in gradients.reasons), gradients
    results = {r["stage"]: r for r in run_project(tiny_project, until="gradients", force=["meta_init"])}
    assert results["meta_init"]["action"] == "ran"
    summary = json.loads((Project(tiny_project).stage_dir("gradients") / "manifest.json").read_text())["summary"]
    assert 0 < summary["reused"] < summary["rows"], summary


def test_the_merge_says_which_library_versions_computed_each_shard(tiny_project_ran, monkeypatch) -> None:
    """Shards may be computed on other machines, with other torch or transformers: each
    records its versions, and the merged stage's provenance.json lists them (the report's
    other_library_versions too). Such a shard is merged all the same, and said; a version
    difference makes nothing stale."""
    from subsetctl import pipeline
    from subsetctl.report.build import other_versions
    from subsetctl.reporter import SilentReporter
    from subsetctl.stages.gradients import GradientsStage

    tiny_project = tiny_project_ran("meta_init")
    now = pipeline.library_versions()
    elsewhere = {**now, "torch": "99.0"}
    monkeypatch.setattr(pipeline, "library_versions", lambda: elsewhere)
    run_project(tiny_project, options={"shard": (0, 2)})  # on a machine with another torch
    monkeypatch.setattr(pipeline, "library_versions", lambda: now)
    run_project(tiny_project, options={"shard": (1, 2)})
    state = tiny_project / ".subsetctl" / "gradients"
    assert json.loads((state / "shards" / "shard-0-of-2" / "info.json").read_text())["versions"] == [elsewhere]
    info_path = state / "shards" / "shard-1-of-2" / "info.json"  # as if begun by an earlier subsetctl, resumed now
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), "versions": [None, now]}))

    reporter = SilentReporter()
    run_project(tiny_project, until="gradients", reporter=reporter)
    summary = json.loads((state / "manifest.json").read_text())["summary"]
    assert summary["computed"] == 0 and summary["reused"] == summary["rows"]  # merged, other torch or not
    provenance = json.loads((state / "provenance.json").read_text())
    threads = [pipeline.thread_counts()]  # each shard's runs' thread counts, with its first record
    assert provenance == {"computed_with": {"shard 0/2": elsewhere, "shard 1/2 (run 1 of 2)": None,
                                            "shard 1/2 (run 2 of 2)": now},
                          "threads": {"shard 0/2": threads, "shard 1/2 (run 1 of 2)": threads}}
    assert any(f"shard 0/2 was computed with other library versions than this run's (torch 99.0, now "
               f"{now['torch']})" in m for m in reporter.messages), reporter.messages
    assert any("shard 1/2 was computed with other library versions than this run's (versions not recorded"
               in m for m in reporter.messages), reporter.messages
    assert other_versions(Project(tiny_project), ["gradients"]) == {"now": now, "reused": {"gradients": {
        "shard 0/2": {"torch": {"then": "99.0", "now": now["torch"]}}, "shard 1/2 (run 1 of 2)": "unknown"}}}
    assert "provenance.json" in GradientsStage.describes_only  # no output digest changes for it


def test_plan_names_a_shard_of_other_settings_that_the_merge_would_pass_over(tiny_project_ran) -> None:
    """A shard copied in from a machine run with other settings is not merged (the merge
    warns and computes its rows), but `plan` said "all 2 gradient shards done; `run` merges
    them"; it names that shard and why, as the merge's warning does, and counts it as not done."""
    from subsetctl.reporter import SilentReporter

    tiny_project = tiny_project_ran("meta_init")  # a copy: the shard runs still start from there
    run_project(tiny_project, options={"shard": (0, 2)})
    run_project(tiny_project, options={"shard": (1, 2)})
    info_path = tiny_project / ".subsetctl" / "gradients" / "shards" / "shard-1-of-2" / "info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "seed": info["seed"] + 1}))  # as if run with another gradients.seed
    why = f"computed with other settings or another model, adapter or data: seed: stored {info['seed'] + 1}, expected {info['seed']}"
    (gradients,) = [s for s in plan_project(tiny_project)[2] if s.name == "gradients"]
    assert gradients.reasons == [(
        f"1 of 2 gradient shards done; `run` merges them; shard 1/2 is not merged ({why}): `run` computes its rows "
        "itself")]  # (named once: not among those left for `run --shard` too)
    reporter = SilentReporter()
    run_project(tiny_project, until="gradients", reporter=reporter)
    assert [w for w in reporter.warnings if w.startswith("gradients: shard")] == [
        f"gradients: shard 1/2 is not merged ({why}); its rows are computed here, " + _DELETED]


def test_plan_does_not_call_a_shard_being_written_damaged(tiny_project_ran) -> None:
    """A shard whose run is creating its files may not open yet: `plan` names it as being
    computed, not as a damaged shard the merge would pass over; once no run holds it, it is."""
    tiny_project = tiny_project_ran("meta_init")
    run_project(tiny_project, options={"shard": (0, 2)})
    shards = Project(tiny_project).stage_dir("gradients") / "shards"
    (shards / "shard-1-of-2").mkdir()  # its files not written yet
    holder = _hold_file_lock(shards / "shard-1-of-2.lock")
    try:
        (gradients,) = [s for s in plan_project(tiny_project)[2] if s.name == "gradients"]
        assert gradients.reasons[0].startswith("shard 1/2 being computed now"), gradients.reasons
        assert "not merged" not in gradients.reasons[0], gradients.reasons
    finally:
        _release(holder)
    (gradients,) = [s for s in plan_project(tiny_project)[2] if s.name == "gradients"]
    assert "shard 1/2 is not merged (its files are damaged or incomplete)" in gradients.reasons[0], gradients.reasons


def test_shards_computed_on_machines_without_a_shared_disk_and_copied_back_are_merged(tiny_project_ran,
                                                                                      tmp_path_factory) -> None:
    """Each machine runs its shard in its own copy of the project; the user copies the shard
    folders back into the first copy's ``shards/`` (its gradients folder holds no work.json).
    The merging run refused them as "for other inputs (differing: the results of data,
    meta_init)" though they were the same, and `plan` called the stage "never run"; it merges
    them now. One computed with other settings among them is refused, with what differs, as
    shards beside a work.json are, rather than passed over and deleted."""
    tiny_project = tiny_project_ran("meta_init")
    machines = [tiny_project_ran("meta_init", into=tmp_path_factory.mktemp(f"machine{i}")) for i in range(2)]
    for i, machine in enumerate(machines):
        run_project(machine, options={"shard": (i, 2)})
    other = tiny_project_ran("meta_init", into=tmp_path_factory.mktemp("other"))
    run_project(other, ["gradients.d=8"], options={"shard": (0, 3)})
    shards = tiny_project / ".subsetctl" / "gradients" / "shards"
    for name, machine in [("shard-0-of-2", machines[0]), ("shard-1-of-2", machines[1]), ("shard-0-of-3", other)]:
        shutil.copytree(machine / ".subsetctl" / "gradients" / "shards" / name, shards / name)
    gradients = {s.name: s for s in plan_project(tiny_project)[2]}["gradients"]
    assert any("`run` refuses rather than discard their rows" in r for r in gradients.reasons), gradients
    result = CliRunner().invoke(main, ["run", str(tiny_project), "-q", "--until", "gradients"])
    message = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "differing: shard 0/3: computed with other settings" in message and "d: stored 8, expected 16" in message
    assert f"delete {shards / 'shard-0-of-3'} first" in message, message
    shutil.rmtree(shards / "shard-0-of-3")
    gradients = {s.name: s for s in plan_project(tiny_project)[2]}["gradients"]
    assert gradients.state == "unfinished", gradients
    assert any("all 2 gradient shards done" in r for r in gradients.reasons), gradients
    result = CliRunner().invoke(main, ["run", str(tiny_project), "-q", "--until", "gradients"])
    assert result.exit_code == 0, result.output
    summary = json.loads((Project(tiny_project).stage_dir("gradients") / "manifest.json").read_text())["summary"]
    assert summary["reused"] == summary["rows"] and summary["computed"] == 0, summary
    provenance = json.loads((Project(tiny_project).stage_dir("gradients") / "provenance.json").read_text())
    assert sorted(provenance["computed_with"]) == ["shard 0/2", "shard 1/2"], provenance


def test_this_specs_shards_beside_an_older_runs_work_marker_are_merged_not_refused(tiny_project_ran,
                                                                                  tmp_path_factory) -> None:
    """Shard 0/2 computed here with `gradients.d=8` left its work.json; shard 1/2 of the spec
    itself, computed on another machine, was copied in. The plain run called every shard
    "for other inputs (differing: gradients.d)", its advice (--force gradients) discarding
    the good one too. It names the good one and the folder to delete; once the other
    settings' shard is gone, the plain run merges the rest instead of refusing."""
    tiny_project = tiny_project_ran("meta_init")
    run_project(tiny_project, ["gradients.d=8"], options={"shard": (0, 2)})
    machine = tiny_project_ran("meta_init", into=tmp_path_factory.mktemp("machine"))
    run_project(machine, options={"shard": (1, 2)})
    shards = tiny_project / ".subsetctl" / "gradients" / "shards"
    shutil.copytree(machine / ".subsetctl" / "gradients" / "shards" / "shard-1-of-2", shards / "shard-1-of-2")
    with pytest.raises(UserError, match="for other inputs than this run's") as caught:
        run_project(tiny_project, until="gradients")
    message = " ".join(str(caught.value).split())
    assert "Shard 1/2 is of this run's settings" in message and f"delete {shards / 'shard-0-of-2'} first" in message
    shutil.rmtree(shards / "shard-0-of-2")
    gradients = {s.name: s for s in plan_project(tiny_project)[2]}["gradients"]
    assert gradients.state == "unfinished" and any("1 of 2 gradient shards done" in r for r in gradients.reasons), \
        gradients
    assert run_project(tiny_project, until="gradients")[-1]["action"] == "ran"
    summary = json.loads((Project(tiny_project).stage_dir("gradients") / "manifest.json").read_text())["summary"]
    assert 0 < summary["reused"] < summary["rows"] and summary["d"] == 16, summary
    provenance = json.loads((Project(tiny_project).stage_dir("gradients") / "provenance.json").read_text())
    assert list(provenance["computed_with"]) == ["shard 1/2"], provenance


def test_shards_of_the_changed_data_beside_an_older_runs_work_marker_are_merged_not_refused(tiny_project_ran,
                                                                                            tmp_path_factory) -> None:
    """Shard 0/2 computed here left its work.json; then the data changed, and both shards of
    the new data, computed on another machine, were copied in. The plain run called them
    "for other inputs (differing: the results of data)", its advice (--force gradients)
    discarding them. Each shard records the data it was computed from: a shard of the old
    data is named to delete, and shards of this run's data are merged."""
    tiny_project = tiny_project_ran("meta_init")
    run_project(tiny_project, options={"shard": (0, 2)})  # its work.json: of the data as it was
    machine = tiny_project_ran("meta_init", into=tmp_path_factory.mktemp("machine"))
    change_data_of(tiny_project)
    change_data_of(machine)
    for index in (0, 1):
        run_project(machine, options={"shard": (index, 2)})
    shards, there = (folder / ".subsetctl" / "gradients" / "shards" for folder in (tiny_project, machine))
    shutil.copytree(there / "shard-1-of-2", shards / "shard-1-of-2")
    with pytest.raises(UserError, match="for other inputs than this run's") as caught:
        run_project(tiny_project, until="gradients")
    message = " ".join(str(caught.value).split())
    assert "Shard 1/2 is of this run's settings" in message and f"delete {shards / 'shard-0-of-2'} first" in message
    shutil.rmtree(shards / "shard-0-of-2")
    shutil.copytree(there / "shard-0-of-2", shards / "shard-0-of-2")
    for index in (0, 1):  # as an earlier subsetctl wrote them: their data unknown, the work.json's stands
        info = json.loads((shards / f"shard-{index}-of-2" / "info.json").read_text())
        (shards / f"shard-{index}-of-2" / "info.json").write_text(json.dumps({**info, "data": None}))
    with pytest.raises(UserError, match="add --force gradients") as caught:
        run_project(tiny_project, until="gradients")
    assert "discard only the others" not in str(caught.value)  # (it named no folder to delete)
    for index in (0, 1):
        shutil.copy(there / f"shard-{index}-of-2" / "info.json", shards / f"shard-{index}-of-2" / "info.json")
    gradients = {s.name: s for s in plan_project(tiny_project)[2]}["gradients"]
    assert gradients.state == "unfinished" and "all 2 gradient shards done; `run` merges them" in gradients.reasons, \
        gradients
    assert run_project(tiny_project, until="gradients")[-1]["action"] == "ran"
    summary = json.loads((Project(tiny_project).stage_dir("gradients") / "manifest.json").read_text())["summary"]
    assert summary["computed"] == 0 and summary["reused"] == summary["rows"], summary
