"""The stage graph's bookkeeping with stand-in stages (no model, no data): what `plan` says
will run is what `run` runs, a stage re-runs only when its inputs changed, and its results
come back when the spec returns to their inputs. Each stage writes one file from a spec
setting, so a test sets exactly what changes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from subsetctl.pipeline import Pipeline, Stage, StageContext
from subsetctl.project import Project, fingerprint
from subsetctl.spec import Spec, apply_overrides

BASE = {
    "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
    "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}],
}


class _Writes(Stage):
    """Writes ``out.txt``: its spec key's value, and what its upstream stage wrote."""

    key = ""

    def run(self, ctx: StageContext) -> dict[str, Any]:
        value = self.spec_slice(ctx.spec)[self.key]
        upstream = "".join((ctx.upstream_dir(up) / "out.txt").read_text() for up in self.after
                           if (ctx.upstream_dir(up) / "out.txt").is_file())  # (not one switched off)
        (ctx.out_dir / "out.txt").write_text(f"{upstream}|{self.name}={value}")
        return {}


class First(_Writes):
    name, spec_keys, key = "first", ("project.seed",), "project.seed"


class Second(_Writes):
    """Writes its own setting only, whatever ``first`` wrote: a re-run of ``first`` that
    changes its output still re-runs it, one that does not leaves it alone."""

    name, after, spec_keys, key = "second", ("first",), ("gradients.d",), "gradients.d"

    def run(self, ctx: StageContext) -> dict[str, Any]:
        (ctx.out_dir / "out.txt").write_text(f"second={self.spec_slice(ctx.spec)[self.key]}")
        return {}


class Third(_Writes):
    name, after, spec_keys, key = "third", ("second",), ("verify.steps",), "verify.steps"


def _pipeline(root: Path, *overrides: str) -> Pipeline:
    spec = Spec.model_validate(apply_overrides(BASE, list(overrides)))
    return Pipeline(Project(root), spec, [First(), Second(), Third()])


def _ran(results: list[dict[str, Any]]) -> dict[str, str]:
    return {r["stage"]: r["action"] for r in results}


def _will_run(pipeline: Pipeline, **kwargs: Any) -> dict[str, bool]:
    return {s.name: s.will_run for s in pipeline.plan(**kwargs)}


def test_a_second_run_runs_nothing(tmp_path: Path) -> None:
    assert _ran(_pipeline(tmp_path).run()) == {"first": "ran", "second": "ran", "third": "ran"}
    assert _will_run(_pipeline(tmp_path)) == {"first": False, "second": False, "third": False}
    assert _ran(_pipeline(tmp_path).run()) == {"first": "up to date", "second": "up to date", "third": "up to date"}


def test_a_changed_setting_reruns_its_stage_and_the_stages_its_output_reaches(tmp_path: Path) -> None:
    _pipeline(tmp_path).run()
    statuses = {s.name: s for s in _pipeline(tmp_path, "gradients.d=8").plan()}
    assert [statuses[n].will_run for n in ("first", "second", "third")] == [False, True, True]
    assert statuses["second"].state == "stale" and statuses["second"].reasons == ["spec changed: gradients.d"]
    assert not statuses["second"].conditional
    # third's own inputs are as they were: it runs only if second's output comes out otherwise
    assert statuses["third"].conditional and statuses["third"].state == "stale"
    assert _ran(_pipeline(tmp_path, "gradients.d=8").run()) == {"first": "up to date", "second": "ran", "third": "ran"}
    assert (Project(tmp_path).stage_dir("third") / "out.txt").read_text() == "second=8|third=15"


def test_an_upstream_rerun_that_changes_nothing_leaves_the_stages_after_it_up_to_date(tmp_path: Path) -> None:
    _pipeline(tmp_path).run()
    statuses = {s.name: s for s in _pipeline(tmp_path).plan(force={"first"})}
    assert statuses["first"].will_run and not statuses["first"].conditional
    assert statuses["second"].will_run and statuses["second"].conditional
    assert statuses["second"].reasons == ["upstream first will re-run (skipped if its output is unchanged)"]
    assert statuses["third"].will_run and statuses["third"].conditional
    assert _ran(_pipeline(tmp_path).run(force={"first"})) == {"first": "ran", "second": "up to date",
                                                              "third": "up to date"}


def test_plan_says_a_stage_after_a_conditional_one_reruns_only_if_the_sure_ones_output_changes(tmp_path: Path) -> None:
    """A stage that re-runs only if the output of one sure to re-run changes is said so by
    the stages after it (`plan --force data` said "upstream meta_init will re-run" of
    gradients, and evaluate's "upstream finetune will re-run", where `run` re-ran neither)."""
    _pipeline(tmp_path).run()
    statuses = {s.name: s for s in _pipeline(tmp_path).plan(force={"first"})}
    assert statuses["third"].conditional
    assert statuses["third"].reasons == ["re-runs only if the first stage's output changes (upstream second only if it does)"]
    statuses = {s.name: s for s in _pipeline(tmp_path, "verify.steps=3").plan(force={"first"})}
    assert statuses["third"].will_run and not statuses["third"].conditional  # its own setting changed: it runs anyway
    assert statuses["third"].reasons == ["spec changed: verify.steps",
                                         "upstream second re-runs only if the first stage's output changes"]


def test_plan_says_a_conditional_stage_whose_previous_results_come_back_if_upstream_does(tmp_path: Path) -> None:
    """A stage re-run only if its upstream's output changes says its previous results are put
    back if that output comes out as the one they were made from (a merge moved that aside
    under the branch of a stage that runs anyway, where it used a name not yet set)."""
    _pipeline(tmp_path).run()
    _pipeline(tmp_path, "gradients.d=8").run()  # second and third re-run: their first results are previous
    shutil.rmtree(Project(tmp_path).previous_dir("second"))  # second must re-run to go back
    statuses = {s.name: s for s in _pipeline(tmp_path).plan()}
    assert statuses["second"].will_run and statuses["third"].will_run and statuses["third"].conditional
    assert statuses["third"].reasons == [("upstream second will re-run (skipped if its output is unchanged); if its "
                                         "output comes out as the one this stage's previous results were made "
                                         "from, `run` puts those back instead")]
    assert _ran(_pipeline(tmp_path).run()) == {"first": "up to date", "second": "ran", "third": "up to date"}


def test_plan_of_kept_results_waiting_on_a_stage_that_waits_too_does_not_fail(tmp_path: Path) -> None:
    """Kept results of two stages in a row, each waiting on the re-run upstream of it (their
    own results gone): `plan --force first` raised UnboundLocalError ('whose'), the note on
    kept results put back having moved under the stages that run anyway."""
    _pipeline(tmp_path).run()
    _pipeline(tmp_path, "gradients.d=8").run()  # the first results of second and third are previous ones now
    for name in ("second", "third"):
        shutil.rmtree(Project(tmp_path).stage_dir(name))
    statuses = {s.name: s for s in _pipeline(tmp_path).plan(force={"first"})}
    assert statuses["third"].will_run and statuses["third"].conditional
    assert statuses["third"].reasons[0].endswith("`run` then puts them back, else runs it"), statuses["third"].reasons
    assert _ran(_pipeline(tmp_path).run(force={"first"})) == {"first": "ran", "second": "up to date",
                                                              "third": "up to date"}


def test_a_forced_stage_runs_and_says_why(tmp_path: Path) -> None:
    _pipeline(tmp_path).run()
    statuses = {s.name: s for s in _pipeline(tmp_path).plan(force={"second"})}
    assert not statuses["first"].will_run and statuses["second"].will_run
    assert statuses["second"].state == "stale" and "forced" in statuses["second"].reasons[-1]
    assert _ran(_pipeline(tmp_path).run(force={"second"})) == {"first": "up to date", "second": "ran",
                                                               "third": "up to date"}


def test_until_leaves_the_later_stages_and_plan_says_so(tmp_path: Path) -> None:
    assert _ran(_pipeline(tmp_path).run(until="second")) == {"first": "ran", "second": "ran"}
    statuses = {s.name: s for s in _pipeline(tmp_path, "project.seed=7").plan(until="second")}
    assert statuses["first"].will_run and statuses["second"].will_run and not statuses["third"].will_run
    assert statuses["third"].left_stale_by_until and not statuses["second"].left_stale_by_until
    assert _ran(_pipeline(tmp_path, "project.seed=7").run(until="first")) == {"first": "ran"}
    # third's upstream is not brought up to date by `run --until first`: nor is third
    statuses = {s.name: s for s in _pipeline(tmp_path, "project.seed=7").plan(until="first")}
    assert [statuses[n].will_run for n in ("first", "second", "third")] == [False, False, False]
    assert statuses["second"].left_stale_by_until and statuses["third"].left_stale_by_until


def test_results_of_earlier_inputs_come_back_instead_of_being_recomputed(tmp_path: Path) -> None:
    _pipeline(tmp_path).run()
    _pipeline(tmp_path, "gradients.d=8").run()
    statuses = {s.name: s for s in _pipeline(tmp_path).plan()}
    assert not statuses["second"].will_run and statuses["second"].put_back
    assert statuses["second"].put_back_from == "previous"
    results = _pipeline(tmp_path).run()
    assert _ran(results) == {"first": "up to date", "second": "up to date", "third": "up to date"}
    assert [r.get("put_back") for r in results] == [None, True, True]
    assert (Project(tmp_path).stage_dir("third") / "out.txt").read_text() == "second=128|third=15"


def test_a_damaged_artifact_is_found_and_its_stage_recomputed(tmp_path: Path) -> None:
    _pipeline(tmp_path).run()
    out = Project(tmp_path).stage_dir("second") / "out.txt"
    out.write_text("second=999")  # the same size, other bytes
    statuses = {s.name: s for s in _pipeline(tmp_path).plan()}
    assert statuses["second"].state == "corrupt" and statuses["second"].will_run
    assert _ran(_pipeline(tmp_path).run()) == {"first": "up to date", "second": "ran", "third": "up to date"}
    assert out.read_text() == "second=128"


class _Resumes(Second):
    """Keeps the work it finds in its folder, as the gradients stage keeps the rows its store
    has written: writes ``out.txt`` only when it is not there."""

    def run(self, ctx: StageContext) -> dict[str, Any]:
        if not (ctx.out_dir / "out.txt").is_file():
            super().run(ctx)
        return {}


def _resuming_pipeline(root: Path) -> Pipeline:
    return Pipeline(Project(root), Spec.model_validate(BASE), [First(), _Resumes(), Third()])


def test_a_stage_whose_artifacts_fail_their_checksums_runs_again_from_an_empty_folder(tmp_path: Path) -> None:
    """Its damaged files are deleted before it runs: a stage that resumes the work in its
    folder (the gradients stage keeps the rows its store marks written) reused them. (The
    fast twin of tests/reliability's test_altered_gradient_features_are_recomputed.)"""
    _resuming_pipeline(tmp_path).run()
    out = Project(tmp_path).stage_dir("second") / "out.txt"
    out.write_text("second=999")  # the same size, other bytes
    assert _ran(_resuming_pipeline(tmp_path).run()) == {"first": "up to date", "second": "ran", "third": "up to date"}
    assert out.read_text() == "second=128"


def test_a_work_marker_that_is_no_file_starts_the_stage_afresh(tmp_path: Path) -> None:
    """A stage folder whose work marker is a folder (damaged, or made by hand) is emptied and
    the stage run from the start: writing the marker over the folder failed, and the work
    found beside it is not known to be of these inputs."""
    from subsetctl.project import WORK_MARKER

    folder = Project(tmp_path).stage_dir("second")
    (folder / WORK_MARKER).mkdir(parents=True)
    (folder / "out.txt").write_text("second=999")
    assert _ran(_resuming_pipeline(tmp_path).run()) == {"first": "ran", "second": "ran", "third": "ran"}
    assert (folder / "out.txt").read_text() == "second=128"
    assert json.loads((folder / WORK_MARKER).read_text())["fingerprint"]


class Stops(Second):
    """``second``, which writes a piece of its work first and stops there while ``stop`` is set."""

    stop = False

    def run(self, ctx: StageContext) -> dict[str, Any]:
        part = ctx.out_dir / "part.txt"
        found = part.is_file()
        part.write_text(str(self.spec_slice(ctx.spec)[self.key]))
        if Stops.stop:
            raise RuntimeError("stopped")
        (ctx.out_dir / "out.txt").write_text(f"second={self.spec_slice(ctx.spec)[self.key]}")
        return {"found_work": found}


def _stopping(root: Path, *overrides: str) -> Pipeline:
    spec = Spec.model_validate(apply_overrides(BASE, list(overrides)))
    return Pipeline(Project(root), spec, [First(), Stops(), Third()])


def test_a_run_stopped_partway_resumes_its_work_and_one_with_other_inputs_starts_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Stops, "stop", True)
    with pytest.raises(RuntimeError):
        _stopping(tmp_path).run()
    statuses = {s.name: s for s in _stopping(tmp_path).plan()}
    assert statuses["second"].state == "unfinished" and statuses["second"].will_run
    assert statuses["second"].reasons == ["a run stopped partway; `run` resumes its work"]
    monkeypatch.setattr(Stops, "stop", False)
    assert _ran(_stopping(tmp_path).run())["second"] == "ran"
    manifest = Project(tmp_path).read_manifest("second")
    assert manifest is not None and manifest["summary"] == {"found_work": True} and manifest["resumed"]
    # a resumed run's seconds are the rest's only: no hint of what a whole run takes
    statuses = {s.name: s for s in _stopping(tmp_path).plan(force={"first", "second"})}
    assert isinstance(statuses["first"].last_seconds, float) and statuses["second"].last_seconds is None
    # stopped again, with other inputs: the next run, with others still, discards that work
    monkeypatch.setattr(Stops, "stop", True)
    with pytest.raises(RuntimeError):
        _stopping(tmp_path, "gradients.d=8").run()
    monkeypatch.setattr(Stops, "stop", False)
    statuses = {s.name: s for s in _stopping(tmp_path, "gradients.d=9").plan()}
    assert statuses["second"].state == "never run"
    assert statuses["second"].reasons[-1] == "earlier unfinished work was for other inputs; `run` starts over"
    assert _ran(_stopping(tmp_path, "gradients.d=9").run())["second"] == "ran"
    manifest = Project(tmp_path).read_manifest("second")
    assert manifest is not None and manifest["summary"] == {"found_work": False} and "resumed" not in manifest


def test_a_mapping_written_in_another_order_is_the_same_input() -> None:
    """A source's label_map written in another key order maps the same labels: the data
    stage's fingerprint (and so every later stage's) stays as it was."""
    from subsetctl.project import fingerprint
    from subsetctl.stages import all_stages

    data = next(stage for stage in all_stages() if stage.name == "data")
    one, other = ({**BASE, "sources": [{**BASE["sources"][0], "label_map": mapping}]}
                  for mapping in ({"0": "neg", "1": "pos"}, {"1": "pos", "0": "neg"}))
    assert fingerprint(data.spec_slice(Spec.model_validate(one))) == fingerprint(data.spec_slice(Spec.model_validate(other)))
    assert fingerprint(data.spec_slice(Spec.model_validate(one))) != fingerprint(data.spec_slice(Spec.model_validate(BASE)))


def test_results_of_another_results_version_are_computed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A subsetctl that computes results otherwise (a raised RESULTS_VERSION) re-runs every
    stage, and `plan` says why."""
    import subsetctl.pipeline

    _pipeline(tmp_path).run()
    monkeypatch.setattr(subsetctl.pipeline, "RESULTS_VERSION", subsetctl.pipeline.RESULTS_VERSION + "-later")
    statuses = {s.name: s for s in _pipeline(tmp_path).plan()}
    assert statuses["first"].will_run and "this subsetctl computes results otherwise" in statuses["first"].reasons[0]
    assert _ran(_pipeline(tmp_path).run()) == {"first": "ran", "second": "ran", "third": "ran"}


class Switched(Second):
    """``second``, switched on and off by ``verify.enabled``."""

    switch = "verify.enabled"

    def enabled(self, spec: Spec) -> bool:
        return spec.verify.enabled


def test_a_stage_switched_off_leaves_the_stages_after_it_up_to_date(tmp_path: Path) -> None:
    def pipeline(*overrides: str) -> Pipeline:
        spec = Spec.model_validate(apply_overrides(BASE, ["verify.enabled=false", *overrides]))
        return Pipeline(Project(tmp_path), spec, [First(), Switched(), Third()])

    Third.after = ("first", "second")
    try:
        assert _ran(pipeline().run()) == {"first": "ran", "second": "disabled", "third": "ran"}
        statuses = {s.name: s for s in pipeline().plan()}
        assert statuses["second"].state == "disabled" and statuses["third"].state == "up to date"
        assert _ran(pipeline().run()) == {"first": "up to date", "second": "disabled", "third": "up to date"}
        # switched on: its output is among third's inputs now
        statuses = {s.name: s for s in pipeline("verify.enabled=true").plan()}
        assert statuses["second"].will_run and statuses["third"].will_run
    finally:
        Third.after = ("second",)


def test_the_set_kept_last_is_the_one_kept_when_only_one_is(tmp_path: Path) -> None:
    """With ``keep_previous: 1``, the one previous set kept is the one replaced last, not the
    one computed last: results put back and replaced again are dated when kept (a rename
    leaves a folder's date as it was, which made them the oldest)."""
    for d in ("128", "8", "128", "9"):  # the d=128 results are put back, then replaced by d=9's
        _pipeline(tmp_path, "project.keep_previous=1", f"gradients.d={d}").run()
    assert len(Project(tmp_path).previous_sets("second")) == 1
    statuses = {s.name: s for s in _pipeline(tmp_path, "project.keep_previous=1").plan()}
    assert statuses["second"].put_back and not statuses["second"].will_run
    assert {s.name: s for s in _pipeline(tmp_path, "project.keep_previous=1", "gradients.d=8").plan()}["second"].will_run


class Writes(Third):
    """``third``, which also writes ``third.md`` into the project folder (as the report stage writes report.md)."""

    keeps_results = False

    def run(self, ctx: StageContext) -> dict[str, Any]:
        (ctx.project.root / "third.md").write_text("made")
        return super().run(ctx)

    def missing_outputs(self, project: Project, manifest: dict[str, Any]) -> list[str]:
        return [] if (project.root / "third.md").is_file() else ["third.md"]


def test_a_file_written_outside_the_state_folder_and_deleted_since_is_written_again(tmp_path: Path) -> None:
    def pipeline() -> Pipeline:
        return Pipeline(Project(tmp_path), Spec.model_validate(BASE), [First(), Second(), Writes()])

    pipeline().run()
    (tmp_path / "third.md").unlink()
    statuses = {s.name: s for s in pipeline().plan()}
    assert statuses["third"].state == "stale" and statuses["third"].will_run
    assert statuses["third"].missing_outputs == ["third.md"] and not statuses["second"].will_run
    assert _ran(pipeline().run()) == {"first": "up to date", "second": "up to date", "third": "ran"}
    assert (tmp_path / "third.md").read_text() == "made"
    assert "resumed" not in (Project(tmp_path).read_manifest("third") or {})  # a whole run, not a resumed one


def test_keep_previous_gb_deletes_nothing_while_the_sets_take_exactly_the_limit(tmp_path: Path) -> None:
    """The limit is "at most": sets taking exactly ``keep_previous_gb`` stay; the least
    recently kept one goes once they take a byte more."""
    project = Project(tmp_path)
    for i, name in enumerate(("older", "newer")):
        kept = project.previous_dir("second") / name
        kept.mkdir(parents=True)
        (kept / "out.bin").write_bytes(b"x" * 500)
        os.utime(kept, ns=(i * 10**9, i * 10**9))
    assert project.prune_previous(1000) == (0, 0)
    assert project.prune_previous(999) == (1, 500)
    assert [p.name for p in project.previous_sets("second")] == ["newer"]


def test_plan_does_not_call_unfinished_work_of_other_inputs_while_an_upstream_stage_is_to_rerun(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether work a stopped run left matches is known only once the stages before it have
    re-run: `plan` says so, not that it "was for other inputs"."""
    monkeypatch.setattr(Stops, "stop", True)
    with pytest.raises(RuntimeError):
        _stopping(tmp_path).run()
    statuses = {s.name: s for s in _stopping(tmp_path, "project.seed=7").plan()}
    assert statuses["first"].will_run and statuses["second"].fingerprint is None
    assert statuses["second"].reasons[-1].startswith("earlier unfinished work is resumed only if the stages before "
                                                     "it that re-run come out as before")


def test_a_stage_whose_upstream_until_leaves_stale_is_not_said_to_be_up_to_date(tmp_path: Path) -> None:
    """third's own inputs are those it ran with, but they are second's outdated results,
    which `run --until first` does not bring up to date."""
    _pipeline(tmp_path).run()
    _pipeline(tmp_path, "project.seed=7").run(until="first")
    statuses = {s.name: s for s in _pipeline(tmp_path, "project.seed=7").plan(until="first")}
    assert statuses["second"].state == "stale" and statuses["third"].state == "stale"
    assert statuses["third"].reasons == ["upstream second is not up to date and until='first' stops before it"]
    assert statuses["third"].left_stale_by_until and not statuses["third"].will_run


def test_a_forced_stage_is_recomputed_not_put_back(tmp_path: Path) -> None:
    _pipeline(tmp_path).run()
    _pipeline(tmp_path, "gradients.d=8").run()
    statuses = {s.name: s for s in _pipeline(tmp_path).plan(force={"second"})}
    assert statuses["second"].will_run and not statuses["second"].put_back
    results = _pipeline(tmp_path).run(force={"second"})
    assert _ran(results)["second"] == "ran" and "put_back" not in results[1]


class Times(Third):
    """``third``, showing how long the stages before it took (as the report stage does)."""

    shows_stage_seconds = True


def test_a_stage_showing_the_stage_times_runs_whenever_one_before_it_runs(tmp_path: Path) -> None:
    def pipeline() -> Pipeline:
        return Pipeline(Project(tmp_path), Spec.model_validate(BASE), [First(), Second(), Times()])

    pipeline().run()
    statuses = {s.name: s for s in pipeline().plan(force={"first"})}
    assert statuses["second"].conditional  # first's output comes out the same
    assert statuses["third"].will_run and not statuses["third"].conditional and statuses["third"].for_time_table
    assert statuses["third"].reasons == [("first will run, and its time table shows how long it takes (rewritten even "
                                          "when the output is unchanged)")]
    assert _ran(pipeline().run(force={"first"})) == {"first": "ran", "second": "up to date", "third": "ran"}


def test_a_swap_cut_short_after_the_kept_set_went_in_keeps_the_results_it_was_replacing(tmp_path: Path) -> None:
    """Killed between the second and third renames of a swap: the kept set is in the stage's
    folder, the results it replaced wait in the swap folder, and `run` makes them a previous set."""
    _pipeline(tmp_path).run()
    _pipeline(tmp_path, "gradients.d=8").run()
    project = Project(tmp_path)
    swap = project.previous_dir("second").parent / ".second.swap"
    os.replace(project.stage_dir("second"), swap)  # the d=8 results
    os.replace(project.previous_sets("second")[0], project.stage_dir("second"))  # the d=128 ones, then the kill
    assert _ran(_pipeline(tmp_path).run())["second"] == "up to date"
    assert not swap.exists()
    assert {s.name: s for s in _pipeline(tmp_path, "gradients.d=8").plan()}["second"].put_back


def test_the_results_read_are_the_committed_ones_and_set_aside_ones_only_while_none_are(tmp_path: Path) -> None:
    """A run killed between committing a stage and keeping the results it replaced leaves both:
    the report reads the committed ones; with the stage's manifest damaged, the set-aside ones."""
    _pipeline(tmp_path).run()
    project = Project(tmp_path)
    shutil.copytree(project.stage_dir("second"), project.set_aside_dir("second"))
    (project.set_aside_dir("second") / "manifest.json").write_text(
        json.dumps({**(project.read_manifest("second") or {}), "fingerprint": "0" * 16}))
    assert project.results_dir("second") == project.stage_dir("second")
    assert project.read_results_manifest("second") == project.read_manifest("second")
    (project.stage_dir("second") / "manifest.json").write_text("{")
    assert project.results_dir("second") == project.set_aside_dir("second")
    assert (project.read_results_manifest("second") or {}).get("fingerprint") == "0" * 16


def test_plan_says_the_set_aside_results_are_the_last_finished_ones_not_the_stopped_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with project.seed=7 stopped in second; `plan` with the same override said "results
    set aside by a run that stopped before finishing are of other inputs", which read as the
    stopped work being of other inputs, though `run` resumes it. It says which results those
    are: the last finished ones."""
    _stopping(tmp_path).run()
    monkeypatch.setattr(Stops, "stop", True)
    with pytest.raises(RuntimeError):
        _stopping(tmp_path, "project.seed=7").run()
    monkeypatch.setattr(Stops, "stop", False)
    second = {s.name: s for s in _stopping(tmp_path, "project.seed=7").plan()}["second"]
    assert second.state == "unfinished" and second.reasons == [
        ("the stage's last finished results, of other inputs, were set aside by the run that stopped before "
         "finishing: they stay set aside until the resumed work finishes"),
        "a run stopped partway; `run` resumes its work"]


def test_set_aside_results_waiting_on_an_upstream_rerun_are_a_conditional_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change that re-ran first, then stopped in second, undone: first re-runs, and if its
    output comes out as before, second's set-aside results go back. `plan` says second runs
    only if first's output differs."""
    _stopping(tmp_path).run()
    monkeypatch.setattr(Stops, "stop", True)
    with pytest.raises(RuntimeError):
        _stopping(tmp_path, "project.seed=7").run()
    monkeypatch.setattr(Stops, "stop", False)
    shutil.rmtree(Project(tmp_path).previous_dir("first"))  # first must re-run
    statuses = {s.name: s for s in _stopping(tmp_path).plan()}
    assert statuses["first"].will_run and not statuses["first"].conditional
    assert statuses["second"].will_run and statuses["second"].conditional and statuses["second"].state == "stale"
    assert _ran(_stopping(tmp_path).run()) == {"first": "ran", "second": "up to date", "third": "up to date"}


class Section(Second):
    """``second`` reading the whole gradients section (not the project seed its ``seed`` defaults to)."""

    spec_keys = ("gradients",)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        (ctx.out_dir / "out.txt").write_text(f"second={self.spec_slice(ctx.spec)['gradients']['d']}")
        return {}


def test_plan_names_only_the_keys_changed_as_written_not_those_an_earlier_subsetctl_recorded_otherwise(
        tmp_path: Path) -> None:
    """An earlier subsetctl recorded ``gradients.seed`` as written; this one counts it as
    unset where it is the project seed. With ``gradients.d`` changed, `plan` names that key
    only, not the seed, which the spec still writes as it did."""
    def pipeline(*overrides: str) -> Pipeline:
        spec = Spec.model_validate(apply_overrides(BASE, ["project.seed=5", "gradients.seed=5", *overrides]))
        return Pipeline(Project(tmp_path), spec, [First(), Section(), Third()])

    pipeline().run()
    path = Project(tmp_path).stage_dir("second") / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["inputs"]["slice"]["gradients"]["seed"] is None  # counted as unset
    manifest["inputs"]["slice"]["gradients"]["seed"] = 5  # as the earlier subsetctl recorded it
    path.write_text(json.dumps(manifest))
    statuses = {s.name: s for s in pipeline("gradients.d=8").plan()}
    assert statuses["second"].reasons == ["spec changed: gradients.d"]


class Counts(Times):
    """``third`` showing the stage times, with the work a run does: ``verify.steps`` steps."""

    spec_keys = ("verify.steps",)

    def work(self, spec: Spec, forced: bool = False) -> str | None:
        return f"{spec.verify.steps} steps"


def test_plan_gives_the_last_runs_work_beside_its_time_only_when_it_differs_from_the_planned(
        tmp_path: Path) -> None:
    """`plan` shows the last run's seconds beside a stage it would run, and the work they
    were for only when that differs from the work planned (saying it twice reads as a change)."""
    def pipeline(*overrides: str) -> Pipeline:
        return Pipeline(Project(tmp_path), Spec.model_validate(apply_overrides(BASE, list(overrides))),
                        [First(), Second(), Counts()])

    pipeline().run()
    third = {s.name: s for s in pipeline().plan(force={"third"})}["third"]
    assert third.last_seconds is not None and third.last_work is None  # the same work as planned
    third = {s.name: s for s in pipeline("verify.steps=7").plan()}["third"]
    assert third.last_seconds is not None and third.last_work and third.last_work != "7 steps"


class NoLongerReads(Second):
    """``second``, whose results an earlier subsetctl recorded with ``plugins`` in its slice."""

    spec_keys_no_longer_read = ("plugins",)


def test_results_recorded_with_a_key_no_longer_read_stay_up_to_date(tmp_path: Path) -> None:
    """A run recorded by an earlier subsetctl that also counted ``plugins`` (at any value) is
    up to date when the rest of its inputs are the same: not re-run once for the key."""
    def pipeline(*overrides: str) -> Pipeline:
        return Pipeline(Project(tmp_path), Spec.model_validate(apply_overrides(BASE, list(overrides))),
                        [First(), NoLongerReads(), Third()])

    pipeline().run()
    path = Project(tmp_path).stage_dir("second") / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["inputs"]["slice"]["plugins"] = ["gone_plugin"]  # as the earlier subsetctl recorded it
    manifest["fingerprint"] = fingerprint(manifest["inputs"])
    path.write_text(json.dumps(manifest))
    assert _will_run(pipeline()) == {"first": False, "second": False, "third": False}
    statuses = {s.name: s for s in pipeline("gradients.d=8").plan()}
    assert statuses["second"].reasons == ["spec changed: gradients.d",
                                          ("this subsetctl no longer reads plugins for this stage (the spec did "
                                           "not change)")]
