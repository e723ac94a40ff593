"""Project state: lock, manifests, checksums, corruption detection."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from subsetctl.api import plan_project, run_project
from subsetctl.errors import LockedError
from subsetctl.project import Project, artifact_checksums, atomic_write_json, verify_checksums
from subsetctl.reporter import SilentReporter


def test_the_lock_names_the_machine_and_the_user_of_a_run_on_another(tmp_path: Path, monkeypatch) -> None:
    """A cluster job refused on one node was told only "locked by a running `subsetctl run`
    (PID 4242)", a process of another node (shard runs said "on HOST" already); a lock
    that job left when it was killed is taken over naming that node too. So was a user
    refused by another user's run in a project folder a team shares: a process not theirs
    to stop, without whose it is (the user's own run is named without the user)."""
    import os
    import pwd
    import socket

    code = ("import time; from pathlib import Path; from subsetctl.project import Project\n"
            f"with Project(Path({str(tmp_path)!r})).lock():\n    print('locked', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    here = socket.gethostname()
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(socket, "gethostname", lambda: "another-node")  # as seen from there
        with pytest.raises(LockedError, match=rf"a running `subsetctl run` \(PID {holder.pid} on {here}\)\. Wait"), \
                Project(tmp_path).lock():
            pass
        me = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: me + 4242)  # as another user sees it
        with pytest.raises(LockedError, match=rf"a running `subsetctl run` \(PID {holder.pid} on {here}, user "
                                              rf"{pwd.getpwuid(me).pw_name}\)\. Wait for it to finish or ask "
                                              rf"{pwd.getpwuid(me).pw_name} to stop it;"), Project(tmp_path).lock():
            pass
        # and plan's "A `subsetctl run` (PID N, user NAME) is working on this project now"
        assert Project(tmp_path).running_whose() == f" on {here}, user {pwd.getpwuid(me).pw_name}"
        monkeypatch.setattr(os, "geteuid", lambda: me)
        assert Project(tmp_path).running_whose() == f" on {here}"
    finally:
        holder.kill()
        holder.wait()
    messages = _notices_taking_the_lock(Project(tmp_path))
    # (from another machine, where no PID can be looked up: said dead by its free file lock alone, which a file
    # system sharing no locks between machines gives a live run too: two runs of one project, said "no longer running")
    assert messages == [(f"Took over the lock left by PID {holder.pid} on {here}: no process holds its file lock, so "
                        "that run has ended; were it still running there, this file system would not share file locks "
                        "between machines (an NFS mount with `nolock` or `local_lock`): then stop this run at once, as "
                        "two runs of one project overwrite each other's work, and run the project from one machine at "
                        "a time.")]



def test_a_teammates_run_holding_a_lock_file_this_user_may_not_write_is_named(tmp_path: Path, monkeypatch) -> None:
    """A project folder of another user's, made under umask 022, while that user's `run` goes
    on: `run` said "Cannot use .../lock: Permission denied" (kind environment), not that a run
    holds the project (kind project_locked, which a script waits on and retries)."""
    import builtins
    import errno
    import os

    code = ("import time; from pathlib import Path; from subsetctl.project import Project\n"
            f"with Project(Path({str(tmp_path)!r})).lock():\n    print('locked', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    lock = Project(tmp_path).lock_path
    real_open, real_access = builtins.open, os.access

    def refusing_open(file, mode="r", *args, **kwargs):  # (root writes anything: refuse as the OS would another user)
        if Path(os.fsdecode(file)) == lock and mode != "r":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, mode, *args, **kwargs)

    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(builtins, "open", refusing_open)
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: not (Path(path) == lock and mode & os.W_OK)
                            and real_access(path, mode, **kw))
        with pytest.raises(LockedError, match=rf"locked by a running `subsetctl run` \(PID {holder.pid}\)"), \
                Project(tmp_path).lock():
            pass
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(PermissionError), Project(tmp_path).lock():  # once it ends: the permissions, said by the CLI
        pass

def test_second_lock_names_holder_pid(tmp_path: Path) -> None:
    project = Project(tmp_path)
    code = (
        "import sys, time; from pathlib import Path; from subsetctl.project import Project\n"
        f"with Project(Path({str(tmp_path)!r})).lock():\n    print('locked', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert project.run_in_progress() is None
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert project.run_in_progress() == str(holder.pid)  # plan says a run is working
        with pytest.raises(LockedError, match=str(holder.pid)), project.lock():
            pass
        # what it computes (as plan says), and how to stop it without losing its finished work: the second
        # `run` said only "stop that process", with nothing of what stopping it would cost
        (project.stage_dir("meta_init")).mkdir(parents=True)
        (project.stage_dir("meta_init") / "work.json").write_text(json.dumps({"pid": holder.pid}))
        with pytest.raises(LockedError, match=rf"\(PID {holder.pid}, computing meta_init\)\. Wait for it to finish "
                                              rf"or stop that process \(Ctrl-C where it runs, or `kill {holder.pid}`: "
                                              r"the work it finished is kept, and the next `run` resumes the rest\);"), \
                project.lock():
            pass
    finally:
        holder.kill()
        holder.wait()
    assert project.run_in_progress() is None  # the holder died: nothing runs (its PID is still in the file)
    messages = _notices_taking_the_lock(project)
    assert messages and "stale lock" in messages[0] and str(holder.pid) in messages[0]


def test_checksums_detect_truncation(tmp_path: Path) -> None:
    project = Project(tmp_path)
    folder = project.stage_dir("x")
    folder.mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"0123456789")
    project.write_manifest("x", {"fingerprint": "f"})
    manifest = project.read_manifest("x")
    assert verify_checksums(folder, manifest["artifacts"]) == []
    (folder / "a.bin").write_bytes(b"01234")
    assert verify_checksums(folder, manifest["artifacts"])


def test_checksums_say_a_file_replaced_by_a_folder_is_missing_and_skip_a_nested_hidden_leftover(tmp_path: Path) -> None:
    """One stat answers whether each artifact is a file, its size and its stamp (10,000
    sources' 60,000 files were stat'ed three times each by every `plan`)."""
    (tmp_path / "a.bin").write_bytes(b"0123456789")
    (tmp_path / "s1" / "train").mkdir(parents=True)
    (tmp_path / "s1" / "train" / "b.arrow").write_bytes(b"01")
    recorded = {**artifact_checksums(tmp_path), "s1/.tmp-1-x/c": {"size": 1, "sha256": "0" * 64}}
    assert sorted(recorded) == ["a.bin", "s1/.tmp-1-x/c", "s1/train/b.arrow"]
    assert verify_checksums(tmp_path, recorded) == []
    (tmp_path / "a.bin").unlink()
    (tmp_path / "a.bin").mkdir()
    assert verify_checksums(tmp_path, recorded) == ["a.bin is missing"]


def test_a_manifest_says_when_it_was_written_in_rfc_3339(tmp_path: Path) -> None:
    """written_at (in report.json too) was ``2026-12-04T15:46:29+0000``: the offset without its
    colon is not RFC 3339, so Go's time.RFC3339 parse and Safari's Date rejected it."""
    import datetime
    import re

    project = Project(tmp_path)
    project.stage_dir("x").mkdir(parents=True)
    project.write_manifest("x", {"fingerprint": "f"})
    written = project.read_manifest("x")["written_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", written), written
    assert abs(datetime.datetime.fromisoformat(written).timestamp() - datetime.datetime.now().timestamp()) < 60


def test_checksums_of_a_folder_a_running_run_moves_meanwhile_say_missing_not_crash(tmp_path: Path, monkeypatch) -> None:
    """`plan` and `report` check a stage's artifacts while a `run` may move the stage's folder
    (setting its results aside, swapping in previous ones): a file there when looked for and
    gone when read is missing, not an internal error (FileNotFoundError)."""
    import subsetctl.project as project_module

    folder = tmp_path / "gradients"
    folder.mkdir()
    (folder / "store.bin").write_bytes(b"0123456789")
    (folder / "info.json").write_text("{}")
    recorded = {rel: {k: v for k, v in meta.items() if k != "stat"}  # hashed: the widest window
                for rel, meta in artifact_checksums(folder).items()}
    real = project_module.sha256_file

    def moved_by_the_run(path: Path) -> str:
        if folder.exists():
            folder.rename(tmp_path / ".set-aside")
        return real(path)

    monkeypatch.setattr(project_module, "sha256_file", moved_by_the_run)
    assert sorted(verify_checksums(folder, recorded)) == ["info.json is missing", "store.bin is missing"]


def test_a_manifest_a_running_run_moves_away_as_it_is_read_is_none_not_a_crash(tmp_path: Path, monkeypatch) -> None:
    """`plan` and `report` read manifests while a `run` may move the stage's folder aside:
    one there when looked for and gone when read is no manifest (FileNotFoundError before)."""
    project = Project(tmp_path)
    project.stage_dir("search").mkdir(parents=True)
    project.write_manifest("search", {"fingerprint": "f"})
    real = Path.is_file

    def moved_by_the_run(path: Path) -> bool:
        found = real(path)
        if path.name == "manifest.json" and project.stage_dir("search").exists():
            project.stage_dir("search").rename(tmp_path / "aside")
        return found

    monkeypatch.setattr(Path, "is_file", moved_by_the_run)
    assert project.read_manifest("search") is None


def test_checksums_are_not_recomputed_for_untouched_files_but_are_after_any_write(tmp_path: Path, monkeypatch) -> None:
    """`plan` and every `run` verify every artifact: re-hashing a multi-GB gradient store
    each time cost about a second per GB. A file whose stat stamp is the recorded one is
    trusted; one written since (even to the same size, right after it was hashed) is hashed."""
    import subsetctl.project as project_module

    (tmp_path / "store.bin").write_bytes(b"0123456789")
    (tmp_path / "small.json").write_text("{}")
    recorded = artifact_checksums(tmp_path)
    assert all(len(meta["stat"]) == 3 for meta in recorded.values())
    hashed: list[str] = []
    real = project_module.sha256_file
    monkeypatch.setattr(project_module, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    assert verify_checksums(tmp_path, recorded) == [] and hashed == []
    (tmp_path / "store.bin").write_bytes(b"abcdefghij")  # same size, at once
    assert verify_checksums(tmp_path, recorded) == ["store.bin does not match its checksum"]
    assert hashed == ["store.bin"]
    legacy = {rel: {k: v for k, v in meta.items() if k != "stat"} for rel, meta in recorded.items()}
    hashed.clear()
    assert verify_checksums(tmp_path, legacy) == ["store.bin does not match its checksum"]
    assert sorted(hashed) == ["small.json", "store.bin"]  # manifests of earlier versions: hashed in full


def test_a_copied_projects_artifacts_are_hashed_once_then_trusted(tmp_path: Path, monkeypatch) -> None:
    """cp -a / rsync -a keep mtimes but give new inodes and change times: the recorded
    stamps never matched again, so every plan and run hashed every artifact forever."""
    import shutil

    import subsetctl.project as project_module

    project = Project(tmp_path / "a")
    folder = project.stage_dir("x")
    folder.mkdir(parents=True)
    (folder / "store.bin").write_bytes(b"0123456789")
    project.write_manifest("x", {"fingerprint": "f"})
    shutil.copytree(tmp_path / "a", tmp_path / "b", copy_function=shutil.copy2)
    copy = Project(tmp_path / "b")
    recorded = copy.read_manifest("x")["artifacts"]
    hashed: list[str] = []
    real = project_module.sha256_file
    monkeypatch.setattr(project_module, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    restamped: dict = {}
    assert verify_checksums(copy.stage_dir("x"), recorded, restamped) == [] and hashed == ["store.bin"]
    copy.restamp_manifest("x", restamped)
    hashed.clear()
    assert verify_checksums(copy.stage_dir("x"), copy.read_manifest("x")["artifacts"]) == [] and hashed == []


def test_plan_on_a_copied_project_hashes_its_artifacts_once_unless_a_run_holds_the_lock(
    jsonl_project: Path, tmp_path: Path, monkeypatch
) -> None:
    """Only `run` recorded the new stamps of a copied project's artifacts: a copy only
    looked at (`plan`, `report`) had every artifact hashed again each time. Not while a
    run holds the lock: it may be committing the stage."""
    import shutil

    import subsetctl.project as project_module

    run_project(jsonl_project, until="data")
    copy = tmp_path / "copy"
    shutil.copytree(jsonl_project, copy)  # new inodes and change times
    hashed: list[str] = []
    real = project_module.sha256_file
    monkeypatch.setattr(project_module, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    manifest = (copy / ".subsetctl" / "data" / "manifest.json").read_text()
    with Project(copy).lock():  # a run in progress: nothing written
        assert plan_project(copy, until="data")[2][0].state == "up to date" and hashed
    assert (copy / ".subsetctl" / "data" / "manifest.json").read_text() == manifest
    hashed.clear()
    assert plan_project(copy, until="data")[2][0].state == "up to date" and hashed
    hashed.clear()
    assert plan_project(copy, until="data")[2][0].state == "up to date" and hashed == []


def test_whole_second_timestamps_are_not_trusted() -> None:
    """On a file system keeping whole seconds, a same-size rewrite within the second would
    keep the stamp: such files are always hashed."""
    from subsetctl.project import trustworthy_stamp

    assert not trustworthy_stamp([1_700_000_000_000_000_000, 1_700_000_000_000_000_000, 5])
    assert trustworthy_stamp([1_700_000_000_123_456_789, 1_700_000_000_123_456_789, 5])


def test_output_digest_ignores_stat_stamps(tmp_path: Path) -> None:
    """Writing the same bytes again (a forced re-run) must leave later stages up to date:
    the stamps are kept out of what a stage's output digest is taken over."""
    from subsetctl.project import artifact_contents

    (tmp_path / "a.bin").write_bytes(b"same")
    first = artifact_checksums(tmp_path)
    (tmp_path / "a.bin").unlink()
    (tmp_path / "a.bin").write_bytes(b"same")
    second = artifact_checksums(tmp_path)
    assert first != second
    assert artifact_contents(first) == artifact_contents(second)


def test_corrupted_data_artifact_reruns_stage(jsonl_project: Path) -> None:
    run_project(jsonl_project, until="data")
    data_dir = jsonl_project / ".subsetctl" / "data"
    arrow = next(p for p in data_dir.rglob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-10])
    _, _, statuses = plan_project(jsonl_project, until="data")
    assert statuses[0].state == "corrupt"
    reporter = SilentReporter()
    results = run_project(jsonl_project, until="data", reporter=reporter)
    assert results[0]["action"] == "ran"
    assert any("checksums" in w for w in reporter.warnings)
    _, _, statuses = plan_project(jsonl_project, until="data")
    assert statuses[0].state == "up to date"


@pytest.mark.parametrize("name", ["work", "checkpoints"])
def test_sources_named_like_another_stages_scratch_folder_are_tracked(jsonl_project: Path, name: str) -> None:
    """meta_init keeps checkpoints/ and verify work/ out of their checksums; the data stage
    keeps one folder per source, so a source with that name must still be checksummed."""
    overrides = [f"sources[0].name={name}"]
    run_project(jsonl_project, overrides, until="data")
    arrow = next((jsonl_project / ".subsetctl" / "data" / name).rglob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-10])
    _, _, statuses = plan_project(jsonl_project, overrides, until="data")
    assert statuses[0].state == "corrupt"


def test_scratch_folders_are_left_out_of_checksums(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "half.bin").write_bytes(b"1")
    (tmp_path / "kept.bin").write_bytes(b"2")
    assert set(artifact_checksums(tmp_path, ("work",))) == {"kept.bin"}
    assert set(artifact_checksums(tmp_path)) == {"kept.bin", "work/half.bin"}


def test_corrupt_manifest_is_not_trusted(jsonl_project: Path) -> None:
    """Not JSON, or JSON that is no manifest (`[]` stopped plan, report and run --force
    with an internal AttributeError; `{}` read as a spec change, `null` as a stopped run)."""
    from click.testing import CliRunner

    from subsetctl.cli import main

    run_project(jsonl_project, until="data")
    manifest = jsonl_project / ".subsetctl" / "data" / "manifest.json"
    for damage in ("{not json", "[]", "5", "null", "{}"):
        manifest.write_text(damage)
        _, _, statuses = plan_project(jsonl_project, until="data")
        assert statuses[0].state == "corrupt", damage
        report = CliRunner().invoke(main, ["report", str(jsonl_project)])
        assert report.exit_code == 1 and "no stage has finished yet" in report.output, damage
    assert [r["action"] for r in run_project(jsonl_project, until="data")] == ["ran"]


def test_a_manifest_with_a_field_of_another_type_is_corrupt_not_an_internal_error(jsonl_project: Path) -> None:
    """A manifest edited by hand (an object with a fingerprint, but `artifacts` a list, an
    artifact without its size, `inputs` a number) stopped plan, report and run with an
    internal error (AttributeError, KeyError, TypeError)."""
    from click.testing import CliRunner

    from subsetctl.cli import main

    run_project(jsonl_project, until="data")
    manifest = jsonl_project / ".subsetctl" / "data" / "manifest.json"
    good = json.loads(manifest.read_text())
    first = next(iter(good["artifacts"]))
    damages = [{"artifacts": []}, {"artifacts": {first: "x"}}, {"artifacts": {first: {"sha256": "0" * 64}}},
               {"inputs": 5}, {"inputs": {"upstream": []}}, {"fingerprint": None}]
    for damage in damages:
        manifest.write_text(json.dumps({**good, **damage}))
        _, _, statuses = plan_project(jsonl_project, until="data")
        assert statuses[0].state == "corrupt", damage
        for args in (["plan", str(jsonl_project)], ["report", str(jsonl_project), "--format", "json"]):
            result = CliRunner().invoke(main, args)
            assert "internal error" not in result.output and result.exit_code in (0, 1), (damage, result.output)
    assert [r["action"] for r in run_project(jsonl_project, until="data")] == ["ran"]


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert os.listdir(tmp_path) == ["x.json"]


def test_atomic_writes_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path) -> None:
    """report.md and artifacts must be readable like any file the user creates (0o644 under
    umask 022), not private as a bare mkstemp file would be; and follow a umask changed
    between two writes of one process (a notebook making its next run's files group-writable)."""
    previous = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "x.json", {"a": 1})
        os.umask(0o002)
        atomic_write_json(tmp_path / "y.json", {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "y.json").stat().st_mode) == 0o664


def test_without_proc_the_umask_is_not_set_to_0_to_read_it(tmp_path: Path, monkeypatch) -> None:
    """Where there is no /proc (macOS), each atomic write set the umask to 0 and back to
    read it: a file another thread created in that instant was writable by everyone."""
    import subsetctl.project as project_module

    real = os.umask
    previous = real(0o027)
    try:
        monkeypatch.setattr(project_module, "_PROC_STATUS", str(tmp_path / "no-proc"))
        set_to: list[int] = []
        monkeypatch.setattr(project_module.os, "umask", lambda mask: set_to.append(mask) or real(mask))
        atomic_write_json(tmp_path / "x.json", {"a": 1})
    finally:
        real(previous)
    assert set_to == []
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o640


def test_json_artifacts_are_strict_json(tmp_path: Path) -> None:
    """NaN/inf become null: Python would write the bare word NaN, which strict parsers reject."""
    atomic_write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.5, float("inf")], "c": (2, -float("inf"))})
    def reject(word: str) -> None:
        raise ValueError(word)

    assert json.loads((tmp_path / "x.json").read_text(), parse_constant=reject) == {"a": None, "b": [1.5, None],
                                                                                   "c": [2, None]}


def test_inside_refuses_paths_outside(tmp_path: Path) -> None:
    from subsetctl.errors import UserError

    project = Project(tmp_path)
    with pytest.raises(UserError):
        project.inside(tmp_path / ".." / "elsewhere")


def test_a_lock_file_that_is_a_link_is_refused_and_what_it_points_to_left_as_it_was(tmp_path: Path) -> None:
    """A project folder copied from someone else may hold `.subsetctl/lock -> ~/.bashrc`: the
    run's PID was written into that file (truncating it)."""
    from subsetctl.errors import UserError

    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    project = Project(tmp_path / "proj")
    project.state_dir.mkdir(parents=True)
    project.lock_path.symlink_to(precious)
    with pytest.raises(UserError, match=r"lock is a symbolic link .*rm "), project.lock():
        pass
    assert precious.read_text() == "mine"


def test_a_run_refuses_a_stage_folder_that_is_a_link_and_deletes_nothing_it_points_to(jsonl_project: Path) -> None:
    from subsetctl.errors import UserError

    elsewhere = jsonl_project.parent / f"{jsonl_project.name}-elsewhere"  # (jsonl_project is tmp_path itself)
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("mine")
    (jsonl_project / ".subsetctl").mkdir(exist_ok=True)
    (jsonl_project / ".subsetctl" / "data").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UserError, match="data is a symbolic link"):
        run_project(jsonl_project, until="data", force=["data"])
    assert [p.name for p in elsewhere.iterdir()] == ["notes.txt"]


def test_plan_warns_of_a_link_in_the_state_folder_that_run_refuses(jsonl_project: Path, tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("mine")
    (jsonl_project / ".subsetctl").mkdir(exist_ok=True)
    (jsonl_project / ".subsetctl" / "lock").symlink_to(tmp_path / "precious.txt")
    reporter = SilentReporter()
    plan_project(jsonl_project, until="data", reporter=reporter)
    assert any(w.startswith("`run` would stop at once: Refusing to run:") and "lock is a symbolic link" in w
               for w in reporter.warnings), reporter.warnings


def test_a_plots_folder_linked_outside_the_project_is_refused_before_any_work(jsonl_project: Path) -> None:
    """The report stage refused it, but only at the end of the run, after every stage's work."""
    from subsetctl.errors import UserError

    figures = jsonl_project.parent / f"{jsonl_project.name}-figures"  # (jsonl_project is tmp_path itself)
    figures.mkdir()
    (jsonl_project / "plots").symlink_to(figures, target_is_directory=True)
    with pytest.raises(UserError, match=r"outside the project .* \(.*plots links there\)\. Remove the link"):
        run_project(jsonl_project, until="data")
    assert not (jsonl_project / ".subsetctl" / "data").exists()


def test_a_state_folder_linked_to_a_folder_of_other_files_is_refused(tmp_path: Path) -> None:
    """`.subsetctl -> ~` would have a run write its stage folders there and delete files on
    re-runs (the stored-spec cleanup deleted every `specs/*.json`)."""
    from subsetctl.errors import UserError

    home = tmp_path / "home"
    (home / "specs").mkdir(parents=True)
    (home / "specs" / "mine.json").write_text("{}")
    (home / "notes.txt").write_text("mine")
    (tmp_path / "proj").mkdir()
    project = Project(tmp_path / "proj")
    project.state_dir.symlink_to(home, target_is_directory=True)
    with pytest.raises(UserError, match=r"holds files subsetctl did not write \(notes.txt\)"), project.lock():
        pass
    assert sorted(p.name for p in home.rglob("*")) == ["mine.json", "notes.txt", "specs"]


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners")
def test_a_state_folder_link_someone_else_could_have_planted_is_refused(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a shared machine a `.subsetctl` link to an empty folder was followed whoever made it
    and whoever could write that folder, who could put links in it after the check, sending the
    run's writes and deletions to the user's files. It is refused unless the link and the folder
    are yours, or the project is a team's (group-writable) and the folder the team group's;
    a folder everyone may write, never."""
    from subsetctl.errors import UserError

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (tmp_path / "proj").mkdir(mode=0o755)
    (tmp_path / "proj").chmod(0o755)
    project = Project(tmp_path / "proj")
    project.state_dir.symlink_to(theirs, target_is_directory=True)
    monkeypatch.setattr("subsetctl.project._own_private_group", lambda gid: False)  # (root's group is root's own)
    for mode, said in ((0o777, "theirs is writable by everyone"), (0o775, "theirs is writable by its group")):
        theirs.chmod(mode)
        with pytest.raises(UserError, match=rf"{said}; .*`chmod go-w "), project.lock():
            pass
    theirs.chmod(0o755)
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)  # as if the link and the folder were another user's
    with pytest.raises(UserError, match=r"the link is another user's \(uid \d+\)"), project.lock():
        pass
    assert list(theirs.iterdir()) == []
    (tmp_path / "proj").chmod(0o2775)  # a team's project: a teammate's link to the group's folder is taken
    theirs.chmod(0o2775)
    with project.lock():
        pass
    theirs.chmod(0o777)  # but not to a folder everyone may write
    with pytest.raises(UserError, match="theirs is writable by everyone"), project.lock():
        pass
    monkeypatch.setattr(os, "getuid", lambda: real_uid)
    theirs.chmod(0o755)
    (tmp_path / "proj").chmod(0o755)
    with project.lock():  # yours, and only yours to write: taken
        pass


def test_a_state_folder_link_to_a_folder_of_your_own_private_group_is_taken(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Ubuntu, Debian and Fedora give each user a private group of their own name and umask
    002, so a scratch folder they make is group-writable: a `.subsetctl` link to it was refused
    as "writable by its group", though no one else is in that group. A group with another
    member, or not named as the user, is still refused."""
    import grp
    import pwd

    from subsetctl.errors import UserError

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    scratch.chmod(0o775)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj").chmod(0o755)
    project = Project(tmp_path / "proj")
    project.state_dir.symlink_to(scratch, target_is_directory=True)
    gid = scratch.stat().st_gid
    ann = SimpleNamespace(pw_name="ann", pw_gid=gid)
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: ann)
    for name, members, users, taken in (
            ("ann", [], [ann], True), ("ann", ["ann"], [ann], True), ("ann", ["bob"], [ann], False),
            ("staff", [], [ann], False),
            ("ann", [], [ann, SimpleNamespace(pw_name="bob", pw_gid=gid)], False)):  # (bob's primary group too)
        monkeypatch.setattr(grp, "getgrgid", lambda g, n=name, m=members: SimpleNamespace(gr_name=n, gr_mem=m))
        monkeypatch.setattr(pwd, "getpwall", lambda u=users: u)
        if taken:
            with project.lock():
                pass
        else:
            with pytest.raises(UserError, match="scratch is writable by its group"), project.lock():
                pass


def test_a_state_folder_linked_to_an_empty_folder_or_its_own_results_is_taken(tmp_path: Path) -> None:
    """The state folder linked to a bigger disk is a user's choice, not a danger."""
    from subsetctl.errors import UserError

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "proj").mkdir()
    project = Project(tmp_path / "proj")
    project.state_dir.symlink_to(scratch, target_is_directory=True)
    with project.lock():
        (project.state_dir / "data").mkdir()
        (project.state_dir / "specs").mkdir()
    with project.lock():  # its own lock, stage and specs folders: still taken
        pass
    assert sorted(p.name for p in scratch.iterdir()) == ["data", "lock", "specs"]
    (tmp_path / "cache").mkdir()  # so is its cache folder linked to one of the cache's own files
    (tmp_path / "cache" / "finetune").mkdir()
    (scratch / "cache").symlink_to(tmp_path / "cache", target_is_directory=True)
    with project.lock():
        pass
    for name in ("file_hashes.json", "file_hashes.json.lock", "derived.json", "special_text.json"):  # and the files the cache keeps
        (tmp_path / "cache" / name).write_text("{}")
    with project.lock():
        pass
    (tmp_path / "cache" / "finetune" / "x").symlink_to(tmp_path)  # a link below it is not
    with pytest.raises(UserError, match="finetune/x is a symbolic link"), project.lock():
        pass
    (tmp_path / "cache" / "finetune" / "x").unlink()
    (tmp_path / "cache" / "notes.txt").write_text("mine")  # nor a cache link to a folder of other files
    with pytest.raises(UserError, match=r"cache is a link to .*holds files subsetctl did not write \(notes.txt\)"), \
            project.lock():
        pass


def test_force_recomputes_and_moved_project_stays_up_to_date(jsonl_project: Path, tmp_path: Path) -> None:
    import shutil

    run_project(jsonl_project, until="data")
    marker = jsonl_project / ".subsetctl" / "data" / "leftover.txt"
    marker.write_text("partial work of an earlier attempt")
    results = run_project(jsonl_project, until="data", force=["data"])
    assert results[0]["action"] == "ran"
    assert not marker.exists()  # forced stages start from scratch instead of resuming

    moved = tmp_path / "moved"
    shutil.copytree(jsonl_project, moved)
    _, _, statuses = plan_project(moved, until="data")
    assert statuses[0].state == "up to date"


class Recording(SilentReporter):
    """A reporter that keeps the info lines too (SilentReporter keeps the warnings)."""

    def info(self, message: str) -> None:
        self.messages.append(message)


def test_rerunning_a_finished_stage_does_not_claim_partial_work_was_discarded(jsonl_project: Path) -> None:
    run_project(jsonl_project, until="data")
    reporter = Recording()
    run_project(jsonl_project, ["sources[0].max_examples=5"], until="data", reporter=reporter)
    assert not any("partial work" in m for m in reporter.messages)
    (jsonl_project / ".subsetctl" / "data" / "manifest.json").unlink()  # as if killed before the commit
    run_project(jsonl_project, until="data", reporter=reporter)
    assert any("discarding earlier partial work" in m for m in reporter.messages)


def test_a_stage_that_failed_before_computing_anything_left_no_partial_work(tiny_project: Path, monkeypatch) -> None:
    """meta_init stopped at once (model.device: cuda without a GPU; likewise a hub model not
    in the cache offline) left its work marker alone, and then `plan` said "earlier
    unfinished work was for other inputs; `run` starts over" (with the same inputs: "a run
    stopped partway; `run` resumes its work") and `run` "inputs changed, discarding earlier
    partial work", though nothing had been computed."""
    import torch

    from subsetctl.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="sees no CUDA GPU"):
        run_project(tiny_project, ["model.device=cuda"], until="meta_init")
    assert (tiny_project / ".subsetctl" / "meta_init" / "work.json").is_file()
    for overrides in ([], ["model.device=cuda"]):
        meta_init = next(s for s in plan_project(tiny_project, overrides, until="meta_init")[2]
                         if s.name == "meta_init")
        assert meta_init.state == "never run" and meta_init.reasons == [], (overrides, meta_init)
    reporter = Recording()
    run_project(tiny_project, until="meta_init", reporter=reporter)
    assert not any("partial work" in m for m in reporter.messages), reporter.messages


def test_partial_work_an_older_subsetctl_marked_without_inputs_is_not_said_to_be_of_other_inputs(
    tiny_project_ran,
) -> None:
    """A work marker of an older subsetctl holds only a fingerprint of the inputs as that one
    counted them (before the model folder's files were recorded): when it does not match,
    plan said "earlier unfinished work was for other inputs" of a spec and files unchanged."""
    tiny_project = tiny_project_ran("meta_init")
    state = tiny_project / ".subsetctl" / "meta_init"
    (state / "manifest.json").unlink()  # as a kill leaves it: work.json and the checkpoints stay
    (state / "work.json").write_text(json.dumps({"fingerprint": "28fc62c812b4fb5e"}))  # of an older subsetctl
    meta_init = {s.name: s for s in plan_project(tiny_project)[2]}["meta_init"]
    said = ("earlier unfinished work was begun by an older subsetctl, which recorded its inputs otherwise (they may "
            "be the same); `run` starts over")
    assert meta_init.state == "never run" and meta_init.reasons == [said], meta_init.reasons
    reporter = Recording()
    run_project(tiny_project, until="meta_init", reporter=reporter)
    assert any("begun by an older subsetctl, which recorded its inputs otherwise, discarding earlier partial work"
               in m for m in reporter.messages), reporter.messages


def test_plan_tells_an_unfinished_stage_from_one_never_run(jsonl_project: Path) -> None:
    run_project(jsonl_project, until="data")
    (jsonl_project / ".subsetctl" / "data" / "manifest.json").unlink()  # as if stopped before the commit
    data = plan_project(jsonl_project)[2][0]
    assert data.state == "unfinished" and data.will_run and "resumes" in data.reasons[0]
    data = plan_project(jsonl_project, ["sources[0].max_examples=3"])[2][0]
    assert data.state == "never run" and "keeps what still applies" in data.reasons[0]


def test_plan_says_running_for_the_stage_a_live_run_is_computing(jsonl_project: Path) -> None:
    from click.testing import CliRunner

    from subsetctl.cli import main

    run_project(jsonl_project, until="data")
    (jsonl_project / ".subsetctl" / "data" / "manifest.json").unlink()  # a run working on the data stage
    marker = jsonl_project / ".subsetctl" / "data" / "work.json"
    code = (
        "import sys, time; from pathlib import Path; from subsetctl.project import Project\n"
        f"with Project(Path({str(jsonl_project)!r})).lock():\n    print('locked', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    plan = ["plan", str(jsonl_project), "--until", "data", "--format", "json"]
    try:
        assert holder.stdout.readline().strip() == "locked"
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "pid": holder.pid}))  # its stage
        result = CliRunner().invoke(main, plan)
        dead = subprocess.Popen([sys.executable, "-c", ""])
        dead.wait()
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "pid": dead.pid}))  # left by another run
        other = CliRunner().invoke(main, plan)
    finally:
        holder.kill()
        holder.wait()
    data = json.loads(result.output)[0]
    assert data["stage"] == "data" and data["state"] == "running" and str(holder.pid) in data["reasons"][0]
    assert json.loads(other.output)[0]["state"] == "unfinished"
    result = CliRunner().invoke(main, ["plan", str(jsonl_project), "--until", "data", "--format", "json"])
    assert json.loads(result.output)[0]["state"] == "unfinished"  # the run died: it resumes


def test_a_momentary_holder_of_the_lock_does_not_fail_a_starting_run(tmp_path: Path, monkeypatch) -> None:
    """`plan` probes the lock (shared, released at once); a `run` starting then still gets it.
    The probe lets go while the run pauses before its next try, not at a time: a timer thread
    letting go after 0.15 s ran after the run's last try (0.4 s on) on a busy machine. (The pause
    is file_locks' own, not time.sleep for every thread: another thread's sleep let the probe go
    before the run's first try; and a run blocked on the lock gets it after 30 s, to fail below.)"""
    import fcntl
    import threading
    import time

    from subsetctl import file_locks

    project = Project(tmp_path)
    project.state_dir.mkdir(parents=True)
    probe = open(project.state_dir / "lock", "a+")  # noqa: SIM115 - closed below
    fcntl.flock(probe.fileno(), fcntl.LOCK_SH)
    pauses: list[float] = []
    real_sleep = time.sleep

    def probe_done_while_paused(seconds: float) -> None:
        if not probe.closed:
            pauses.append(seconds)
            fcntl.flock(probe.fileno(), fcntl.LOCK_UN)
        real_sleep(seconds)

    monkeypatch.setattr(file_locks, "time", SimpleNamespace(sleep=probe_done_while_paused))
    blocked = threading.Timer(30, fcntl.flock, (probe.fileno(), fcntl.LOCK_UN))
    blocked.start()
    try:
        with project.lock():
            pass
    finally:
        blocked.cancel()
        probe.close()
    assert pauses, "the probe was never in the way: nothing checked"


def test_plan_says_when_a_newer_subsetctl_reads_fewer_spec_keys(jsonl_project: Path) -> None:
    """A stage recorded by an older subsetctl with a key it no longer reads (the search's
    executor.backend) re-runs once; plan must not claim the spec changed."""
    run_project(jsonl_project, until="data")
    path = jsonl_project / ".subsetctl" / "data" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["inputs"]["slice"]["executor.backend"] = "loky"
    manifest["fingerprint"] = "recorded-by-an-older-version"
    path.write_text(json.dumps(manifest))
    data = plan_project(jsonl_project, until="data")[2][0]
    assert data.state == "stale"
    assert data.reasons == ["this subsetctl no longer reads executor.backend for this stage (the spec did not change)"]
    # ... and more: the report stage now reads project.name (its title); that is no spec change either
    manifest["inputs"]["slice"] = {k: v for k, v in manifest["inputs"]["slice"].items()
                                   if k not in ("executor.backend", "project.seed")}
    path.write_text(json.dumps(manifest))
    data = plan_project(jsonl_project, until="data")[2][0]
    assert data.reasons == ["this subsetctl also reads project.seed for this stage (the spec did not change)"]


def test_work_marker_is_bookkeeping_not_a_checksummed_artifact(tmp_path: Path) -> None:
    """A damaged work.json in a finished stage threw the whole stage away as corrupt."""
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "x.npy").write_bytes(b"x")
    (tmp_path / "work.json").write_text('{"fingerprint": "f"}')
    recorded = artifact_checksums(tmp_path)
    assert set(recorded) == {"store/x.npy"}
    older = {**recorded, "work.json": {"size": 1, "sha256": "0"}}  # as builds before this one recorded it
    (tmp_path / "work.json").write_text("zz")
    assert verify_checksums(tmp_path, older) == []


def test_replace_dir_puts_the_old_folder_back_when_the_move_fails(tmp_path: Path, monkeypatch) -> None:
    """The old folder was renamed aside and, if the new one could not be moved in, left
    under its aside name, where the next run's clean-up deleted it: neither copy survived."""
    from subsetctl import project as project_module
    from subsetctl.project import replace_dir

    dst, src = tmp_path / "adapter", tmp_path / "new"
    dst.mkdir()
    (dst / "weights").write_text("old")
    src.mkdir()
    (src / "weights").write_text("new")
    real_replace = os.replace

    def fail_moving_src_in(a, b):
        if Path(a) == src:
            raise OSError(28, "No space left on device")
        real_replace(a, b)

    monkeypatch.setattr(project_module.os, "replace", fail_moving_src_in)
    with pytest.raises(OSError):
        replace_dir(src, dst)
    assert (dst / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "new"]
    monkeypatch.setattr(project_module.os, "replace", real_replace)
    replace_dir(src, dst, aside=tmp_path / ".old-adapter")
    assert (dst / "weights").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_a_folder_that_does_not_exist_is_said_to_not_exist(tmp_path) -> None:
    from subsetctl.errors import UserError
    from subsetctl.project import Project

    with pytest.raises(UserError, match="does not exist. Name an existing project folder"):
        Project.find(tmp_path / "mistyped")


def test_a_project_path_holding_a_double_colon_is_refused_before_datasets_loses_its_files(tmp_path) -> None:
    """datasets reads '::' as fsspec's chained-URL separator: the data stage's save wrote
    no Arrow files and meta_init failed on an internal FileNotFoundError."""
    from subsetctl.errors import UserError
    from subsetctl.project import SPEC_FILENAME, Project

    folder = tmp_path / "exp::2"
    folder.mkdir()
    (folder / SPEC_FILENAME).write_text("project: {name: x}\n")
    with pytest.raises(UserError, match="holds '::', which the datasets library reads as a chained URL"):
        Project.find(folder)
    (tmp_path / "exp:2").mkdir()
    (tmp_path / "exp:2" / SPEC_FILENAME).write_text("project: {name: x}\n")
    assert Project.find(tmp_path / "exp:2").root == (tmp_path / "exp:2").resolve()  # one colon is fine


def _notices_taking_the_lock(project: Project) -> list[str]:
    """What taking (and at once letting go of) ``project``'s lock said: a stale lock's notice."""
    messages: list[str] = []
    with project.lock(notice=messages.append):
        pass
    return messages


def _a_dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def test_what_a_killed_write_left_in_a_hidden_folder_is_no_artifact(tmp_path: Path) -> None:
    """A SIGKILL before `.adapter.tmp-PID-x/` was renamed to `adapter/` put its files among
    the stage's artifacts on resume: an output digest that differed on every such run."""
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "weights").write_bytes(b"w")
    (tmp_path / ".adapter.tmp-123-abcd1234").mkdir()
    (tmp_path / ".adapter.tmp-123-abcd1234" / "weights").write_bytes(b"half")
    assert list(artifact_checksums(tmp_path)) == ["adapter/weights"]
    # an older build recorded such files: their deletion (run deletes them) is no damage
    recorded = {**artifact_checksums(tmp_path), ".adapter.tmp-123-abcd1234/weights": {"size": 4, "sha256": "0" * 64}}
    assert verify_checksums(tmp_path, recorded) == []
    import shutil

    shutil.rmtree(tmp_path / ".adapter.tmp-123-abcd1234")
    assert verify_checksums(tmp_path, recorded) == []
    (tmp_path / "adapter" / "weights").write_bytes(b"changed")
    assert verify_checksums(tmp_path, recorded) != []  # real artifacts are still checked


def test_run_deletes_what_killed_writes_left_and_nothing_else(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran("gradients")  # a copy: up to date through gradients
    project = Project(tiny_project)
    dead = _a_dead_pid()
    leftovers = [project.stage_dir("meta_init") / f".adapter.tmp-{dead}-abcd1234",
                 project.stage_dir("gradients") / f".resolved_spec.json.tmp-{dead}-k3j_x9q2",
                 tiny_project / f".report.md.tmp-{dead}-zz9_aa11"]
    leftovers[0].mkdir()
    (leftovers[0] / "adapter_model.safetensors").write_bytes(b"half")
    for path in leftovers[1:]:
        path.write_text("half")
    live = project.stage_dir("gradients") / f".info.json.tmp-{os.getpid()}-abcd1234"  # a writer still at work
    live.write_text("being written")
    results = run_project(tiny_project, until="gradients")
    assert all(r["action"] == "up to date" for r in results)
    assert not any(path.exists() for path in leftovers) and live.exists()


def test_the_stages_share_one_stored_resolved_spec_and_unkept_ones_are_pruned(jsonl_project: Path) -> None:
    """Each stage folder kept its own resolved_spec.json, the same 860 KB nine times a run
    with 2,000 sources: the spec is stored once under .subsetctl/specs/ by its digest and
    each manifest names it; a spec that no kept results (current, set aside, previous)
    name any more is deleted after the run. A stage folder an earlier subsetctl wrote,
    with its own copy, is still read."""
    import json

    from subsetctl.api import run_project

    project = Project(jsonl_project)
    specs = project.state_dir / "specs"
    run_project(jsonl_project, until="data")
    first = project.read_manifest("data")["resolved_spec"]
    assert [p.name for p in specs.iterdir()] == [f"{first}.json"]
    assert not (project.stage_dir("data") / "resolved_spec.json").exists()
    assert project.resolved_spec("data")["project"]["seed"] == 0
    one = ["project.keep_previous=1"]  # one earlier set kept per stage
    run_project(jsonl_project, until="data", overrides=["project.seed=1", *one])  # seed 0's results kept as previous
    assert len(list(specs.iterdir())) == 2 and project.resolved_spec("data")["project"]["seed"] == 1
    run_project(jsonl_project, until="data", overrides=["project.seed=2", *one])  # seed 0's results are gone now
    assert f"{first}.json" not in {p.name for p in specs.iterdir()} and len(list(specs.iterdir())) == 2
    # an earlier subsetctl's stage folder: its own copy, no name in its manifest
    manifest_path = project.stage_dir("data") / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    (project.stage_dir("data") / "resolved_spec.json").write_text(json.dumps({"project": {"seed": 7}}))
    manifest_path.write_text(json.dumps({k: v for k, v in manifest.items() if k != "resolved_spec"}))
    assert project.resolved_spec("data") == {"project": {"seed": 7}}


def _sleeper() -> subprocess.Popen:
    """A live process standing for a `run` (its PID is what a work marker names)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_run_whose_lock_file_was_deleted_still_keeps_a_second_run_out(tmp_path: Path) -> None:
    """Deleting .subsetctl/lock while a run held it (as one deletes git's index.lock) let a
    second `run` lock a new file and write the same stages beside the first: the second is
    refused by the first's work marker, and plan still sees the first running."""
    import socket
    import time

    project = Project(tmp_path)
    holder = _sleeper()
    try:
        time.sleep(0.1)
        project.stage_dir("gradients").mkdir(parents=True)
        marker = project.stage_dir("gradients") / "work.json"
        atomic_write_json(marker, {"fingerprint": "f", "inputs": {}, "pid": holder.pid, "host": socket.gethostname()})
        with pytest.raises(LockedError, match=rf"PID {holder.pid}, computing gradients.*lock file .* was deleted"), \
                project.lock():
            pass
        assert project.run_in_progress() == str(holder.pid)
        atomic_write_json(marker, {"fingerprint": "f", "inputs": {}, "pid": holder.pid, "host": "another-machine"})
        with project.lock():  # a shard run's marker on another machine: its own lock there, not this one's
            pass
        (project.stage_dir("gradients") / "manifest.json").write_text("{}")
        atomic_write_json(marker, {"fingerprint": "f", "inputs": {}, "pid": holder.pid, "host": socket.gethostname()})
        with project.lock():  # a finished stage's marker names no running work
            pass
    finally:
        holder.kill()
        holder.wait()
    with project.lock():  # the holder is gone
        pass


def test_a_work_marker_older_than_the_process_with_its_pid_is_no_run(tmp_path: Path) -> None:
    """The PID of a run that died may be given to another process later: that one started
    after the marker was written, so it is not taken for the run."""
    import socket
    import time

    project = Project(tmp_path)
    project.stage_dir("search").mkdir(parents=True)
    marker = project.stage_dir("search") / "work.json"
    atomic_write_json(marker, {"fingerprint": "f", "inputs": {}, "pid": 0, "host": socket.gethostname()})
    os.utime(marker, (time.time() - 60, time.time() - 60))
    other = _sleeper()
    try:
        atomic_write_json(marker, {"fingerprint": "f", "inputs": {}, "pid": other.pid, "host": socket.gethostname()})
        os.utime(marker, (time.time() - 60, time.time() - 60))
        assert project.run_holding_deleted_lock() is None
        with project.lock():
            pass
    finally:
        other.kill()
        other.wait()


def test_a_run_takes_its_deleted_lock_file_again_or_stops_between_stages(tmp_path: Path) -> None:
    """While this process holds the lock, the file is deleted: before the next stage it locks
    the new file at the path; when another run has locked that one, it stops (LockedError)."""
    project = Project(tmp_path)
    path = project.state_dir / "lock"
    with project.lock():
        project.keep_lock_in_place()  # in place: nothing to do
        path.unlink()
        project.keep_lock_in_place()
        assert path.read_text().split()[0] == str(os.getpid())
    assert path.read_text() == ""  # released: the file taken again holds no PID
    with project.lock():
        code = ("import fcntl, sys, time\nh = open(sys.argv[1], 'a+'); fcntl.flock(h, fcntl.LOCK_EX)\n"
                "h.write('4242'); h.flush(); print('locked', flush=True); time.sleep(30)\n")
        path.unlink()
        other = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout.readline().strip() == "locked"
            with pytest.raises(LockedError, match=r"was deleted while this run held it.*PID 4242"):
                project.keep_lock_in_place()
        finally:
            other.kill()
            other.wait()
    assert path.read_text() == "4242"  # the other run's file is left to it


def test_a_run_stopped_by_an_error_leaves_no_pid_in_its_unfinished_work(tmp_path: Path) -> None:
    """A run from a notebook that stops partway (an error, Ctrl-C) leaves the kernel alive:
    its PID in the stage's work marker would have `plan` say the stage is running, and
    keep a `run` from the shell out, for as long as the notebook lives."""
    project = Project(tmp_path)
    marker = project.stage_dir("gradients") / "work.json"
    marker.parent.mkdir(parents=True)
    with pytest.raises(RuntimeError), project.lock():
        atomic_write_json(marker, {"fingerprint": "f", "inputs": {"a": 1}, "pid": os.getpid(), "host": "h"})
        raise RuntimeError("the stage failed")
    assert json.loads(marker.read_text()) == {"fingerprint": "f", "inputs": {"a": 1}}  # resumable still


def test_auto_device_on_the_cpu_with_a_cuda_torch_warns_in_the_log(tiny_project: Path, monkeypatch) -> None:
    """A batch job given no GPU (CUDA_VISIBLE_DEVICES empty), with a CUDA build of torch and
    model.device: auto, ran its model stages on the CPU, many times slower, and its log never
    said so; it is warned once, while it runs (not a finding the report keeps)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    reporter = SilentReporter()
    run_project(tiny_project, until="gradients", reporter=reporter)
    fallback = [w for w in reporter.warnings if "model.device is auto and this CUDA build of torch" in w]
    assert len(fallback) == 1, reporter.warnings
    assert "so the model stages run on the CPU, many times slower. CUDA_VISIBLE_DEVICES is '' here" in fallback[0]
    assert fallback[0].endswith("or set model.device: cpu to mean the CPU."), fallback[0]
    manifest = json.loads((tiny_project / ".subsetctl" / "meta_init" / "manifest.json").read_text())
    assert not any("CUDA" in w for w in manifest.get("warnings", [])), manifest


def test_within_a_command_a_manifest_is_parsed_once_until_it_is_rewritten(tmp_path: Path, monkeypatch) -> None:
    """One `run` of a project of 5,000 sources read and parsed the data stage's manifest
    (7.7 MB) 132 times, seconds of a run with nothing to do. Within manifests_read_once it
    is parsed once; a manifest rewritten (by this process or a `run` elsewhere) is read
    again, and outside it every read is the file's content now."""
    import subsetctl.project as project_module
    from subsetctl.project import manifests_read_once

    project = Project(tmp_path)
    project.stage_dir("x").mkdir(parents=True)
    project.write_manifest("x", {"fingerprint": "f"})
    parsed: list[int] = []
    real = json.loads
    monkeypatch.setattr(project_module.json, "loads", lambda text, **kw: parsed.append(1) or real(text, **kw))
    with manifests_read_once():
        first = project.read_manifest("x")
        with manifests_read_once():  # nested (plan_project within `run`'s report): the same reads
            assert Project(tmp_path).read_manifest("x") is first
        assert len(parsed) == 1
        project.restamp_manifest("x", {})  # nothing to restamp: unchanged
        project.write_manifest("x", {"fingerprint": "g"})
        assert project.read_manifest("x")["fingerprint"] == "g" and len(parsed) == 2
        (project.stage_dir("x") / "manifest.json").write_text("{not json")  # overwritten in place
        assert project.read_manifest("x") == {"corrupt": True}
        project.invalidate("x")
        assert project.read_manifest("x") is None
    project.write_manifest("x", {"fingerprint": "h"})
    parsed.clear()
    assert project.read_manifest("x")["fingerprint"] == "h" and project.read_manifest("x") is not project.read_manifest("x")


def test_restamping_leaves_the_manifest_read_before_as_it_was(tmp_path: Path) -> None:
    """Within manifests_read_once the manifest read is shared by every reader of the
    command: restamping writes a copy, not the dict they hold."""
    from subsetctl.project import manifests_read_once

    project = Project(tmp_path)
    (project.stage_dir("x")).mkdir(parents=True)
    (project.stage_dir("x") / "store.bin").write_bytes(b"0123")
    project.write_manifest("x", {"fingerprint": "f"})
    with manifests_read_once():
        held = project.read_manifest("x")
        before = json.dumps(held, sort_keys=True)
        project.restamp_manifest("x", {"store.bin": [1, 2, 3]})
        assert json.dumps(held, sort_keys=True) == before
        assert project.read_manifest("x")["artifacts"]["store.bin"]["stat"] == [1, 2, 3]


def test_a_umask_that_keeps_a_team_projects_files_from_the_group_is_warned_of(tmp_path: Path) -> None:
    """A user who ran a project the team shares (its folder group-writable) under umask 077
    left stage folders drwx------ that stopped every teammate's `plan`, `report` and `run`
    afterwards, and was told nothing; under umask 002 nothing is said, nor of a folder that
    is not the group's to write."""
    project = Project(tmp_path)
    old = os.umask(0o077)
    try:
        tmp_path.chmod(0o2775)
        warning = project.umask_hides_from_team()
        assert warning is not None and f"The project folder {tmp_path} is shared with its group " in warning
        assert "(its files get -rw-------)" in warning and "Run subsetctl under `umask 002`" in warning
        assert "a teammate's `plan`, `report` and `run` stop on it afterwards (Permission denied)." in warning
        os.umask(0o022)  # the group reads what it writes: a teammate's `plan` and `report` work, their `run` stops
        warning = project.umask_hides_from_team() or ""
        assert "(its files get -rw-r--r--): a teammate's `run` stops on it afterwards (Permission denied; their " \
               "`plan` and `report` still work)." in warning and "`plan`, `report` and `run` stop" not in warning
        os.umask(0o002)
        assert project.umask_hides_from_team() is None
        os.umask(0o077)
        tmp_path.chmod(0o755)
        assert project.umask_hides_from_team() is None
    finally:
        os.umask(old)


def test_the_stale_lock_notice_names_the_stage_a_run_ended_without_a_word_in(tmp_path: Path) -> None:
    """A run ended by OpenBLAS ("Memory allocation still failed after 10 retries, giving up.") under a
    `ulimit -v`, or killed outright, says nothing of subsetctl's; the next run said only that it took
    over a stale lock. It names the stage the dead run was computing (its work marker keeps its PID),
    and that the finished stages are kept; a run that died between stages names none."""
    import socket

    from subsetctl.errors import user_name

    dead = _a_dead_pid()
    state = tmp_path / ".subsetctl"
    (state / "meta_init").mkdir(parents=True)
    (state / "data").mkdir()
    (state / "data" / "manifest.json").write_text("{}")  # finished: its marker's PID is no matter
    (state / "data" / "work.json").write_text(json.dumps({"fingerprint": "f", "pid": dead}))
    (state / "lock").write_text(f"{dead} run {socket.gethostname()} {user_name(os.geteuid())}")
    marker = {"fingerprint": "f", "inputs": {}, "pid": dead, "host": socket.gethostname()}
    (state / "meta_init" / "work.json").write_text(json.dumps(marker))
    messages = _notices_taking_the_lock(Project(tmp_path))
    assert messages == [(f"Took over a stale lock left by PID {dead}, which is no longer running. It ended while "
                         "computing meta_init without letting the lock go: killed outright (SIGKILL, the "
                         "out-of-memory killer, a scheduler's hard limit), ended by a library (OpenBLAS giving up "
                         "on memory under a `ulimit -v`) or too short of memory to clean up. Finished stages are "
                         "kept, and meta_init resumes from what it had saved.")]
    # another dead run's (not dead + 1: on a busy machine that is the next process started, often alive, and
    # its marker then read as a live run whose lock file was deleted, refusing the lock)
    (state / "meta_init" / "work.json").write_text(json.dumps({**marker, "pid": _a_dead_pid()}))
    (state / "lock").write_text(f"{dead} run {socket.gethostname()} {user_name(os.geteuid())}")
    messages = _notices_taking_the_lock(Project(tmp_path))
    assert messages == [f"Took over a stale lock left by PID {dead}, which is no longer running."]


def test_a_world_writable_sticky_folder_is_no_team_project_for_the_umask_warning(tmp_path: Path) -> None:
    """A project in a 1777 folder (as /tmp: everyone's to write, each keeping their own files)
    was warned of as a team's shared project under every usual umask."""
    project = Project(tmp_path)
    old = os.umask(0o022)
    try:
        tmp_path.chmod(0o1777)
        assert project.umask_hides_from_team() is None
        tmp_path.chmod(0o0777)  # (without the sticky bit, teammates can delete each other's files: a shared folder)
        assert project.umask_hides_from_team() is not None
    finally:
        os.umask(old)
        tmp_path.chmod(0o755)


def test_doctors_umask_check_keeps_a_project_path_holding_its_advices_words_whole(tmp_path: Path) -> None:
    """doctor split the umask warning at its first " Run subsetctl under": a project folder
    whose path holds those words was cut there, the rest of the warning taken for advice."""
    from subsetctl.doctor import check_umask

    folder = tmp_path / "team Run subsetctl under here"
    folder.mkdir()
    old = os.umask(0o077)
    try:
        folder.chmod(0o2775)
        check = check_umask(folder)
        assert check is not None and not check.ok
        assert str(folder) in check.detail and check.detail.endswith("stop on it afterwards (Permission denied)."), \
            check.detail
        assert check.advice.startswith("Run subsetctl under `umask 002` (and `chmod -R g+rwX"), check.advice
    finally:
        os.umask(old)
        folder.chmod(0o755)


def test_a_shard_run_and_doctor_warn_of_a_umask_hiding_a_team_projects_files(
        tiny_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a plain `run` said so: `run --shard` (which writes the gradient shards a team's
    runs merge) and `doctor` were silent."""
    from subsetctl.doctor import run_checks
    from subsetctl.pipeline import Pipeline
    from subsetctl.reporter import SilentReporter

    monkeypatch.setattr(Pipeline, "_run_shard", lambda self, *args: [])  # (the warning alone is tested)
    old = os.umask(0o077)
    try:
        tiny_project.chmod(0o2775)
        reporter = SilentReporter()
        run_project(tiny_project, reporter=reporter, options={"shard": (0, 2)})
        assert any("is shared with its group" in w for w in reporter.warnings), reporter.warnings
        failed = [check for check in run_checks(tiny_project) if not check.ok]
        assert [check.name for check in failed] == ["umask"], failed
        assert "umask 002" in failed[0].advice
        # doctor's own words: of the umask here, not of "this run's" (it runs nothing)
        assert "but the umask here keeps what subsetctl writes from the group (its files would get -rw-------)" \
            in failed[0].detail and "this run" not in failed[0].detail, failed[0].detail
        assert "once for what earlier runs wrote" in failed[0].advice, failed[0].advice
    finally:
        os.umask(old)
        tiny_project.chmod(0o755)


def test_a_project_named_by_a_device_or_named_pipe_is_said_to_be_no_folder(tmp_path: Path) -> None:
    """`run /dev/null` (or a named pipe) was told it "has no subsetctl.yaml. Create one with
    `subsetctl init /dev/null`", which init refuses as a file. It is said to be neither a folder
    nor a file, and `init` is not advised."""
    from subsetctl.errors import UserError

    os.mkfifo(tmp_path / "pipe")
    for path in (tmp_path / "pipe", Path(os.devnull)):
        with pytest.raises(UserError) as refused:
            Project.find(path)
        said = str(refused.value)
        assert said.startswith(f"{path} is neither a folder nor a file (a device or a named pipe)"), said
        assert "subsetctl init" not in said, said


def test_doctor_of_a_device_or_named_pipe_says_what_it_is_and_checks_no_spec_in_it(tmp_path: Path) -> None:
    """`doctor /dev/null` (or a named pipe) read it as an empty spec, then checked it as a folder
    to write in ("/dev/null is not a folder") and its umask. It says it is neither a folder nor
    a file, and checks no spec, writability or umask of it."""
    from subsetctl.doctor import run_checks

    os.mkfifo(tmp_path / "pipe")
    for path in (Path(os.devnull), tmp_path / "pipe"):  # (a named pipe's spec was read: doctor waited for a writer)
        checks = run_checks(path)
        [project] = [check for check in checks if check.name == "project"]
        assert not project.ok and project.detail == f"{path} is neither a folder nor a file (a device or a named pipe)"
        assert not {"project spec", "writable", "umask"} & {check.name for check in checks}, checks
