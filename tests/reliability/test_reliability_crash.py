"""Crash-resume: SIGKILL `subsetctl run` inside each long stage, run again up to that stage,
and compare its artifacts with an uninterrupted run of the same spec.

Only the killed run is a `subsetctl` process of its own (SIGKILL is the point); the
uninterrupted run and the run again are ``run_project`` calls in this process, which has
torch and transformers imported already (a process of their own paid 5-6 s of CPU for
that import alone, nine times a module). Both use one torch thread, as the killed process.

Kill points are drawn from a seeded generator. Stages before the killed one are copied
from the reference run (same spec, same fingerprints), so each test spends its time in
the stage it tests. Tolerances: gradient features and outputs bitwise equal, subset
estimates within 1e-10 (they are recomputed by the same deterministic solver), adapters
within 1e-5 absolute.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import relfixtures as rf

from subsetctl.api import run_project

RNG = np.random.default_rng(20240917)
STAGES = ["data", "meta_init", "gradients", "calibrate", "search", "finetune", "evaluate", "report"]


@pytest.fixture(scope="module")
def reference(made_once_per_run: Callable[[str, Callable[[Path], object]], Path], tiny_llama: Path) -> dict[str, Any]:
    """One uninterrupted run of the crash spec up to finetune, the last stage a test kills
    (also counts the search's saved chunks), made once for the whole test run (each
    pytest-xdist worker used to run it again). Tests copy its stages and read it, never change it."""
    from subsetctl.estimate.results import SubsetResultsStore

    spec = rf.crash_spec(tiny_llama)

    def run(folder: Path) -> None:
        project = rf.make_project(folder / "project", spec)
        original, adds = SubsetResultsStore.add, []

        def counted(self: SubsetResultsStore, masks: Any, batch: Any) -> None:
            original(self, masks, batch)
            adds.append(len(masks))

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(SubsetResultsStore, "add", counted)
            run_project(project, until="finetune")
        (folder / "search_adds.json").write_text(json.dumps(len(adds)))  # for the workers that did not run it

    folder = made_once_per_run("crash-reference", run)
    return {"project": folder / "project", "spec": spec,
            "search_adds": json.loads((folder / "search_adds.json").read_text())}


def _resume(project: Path, stage: str) -> None:
    """Run the project again up to ``stage``, the one killed: the stages after it would run
    as in any run, and each test checks the killed stage's results only."""
    results = run_project(project, until=stage)
    assert results[-1]["stage"] == stage and results[-1]["action"] == "ran", results
    for done in STAGES[: STAGES.index(stage) + 1]:
        assert (project / rf.STATE / done / "manifest.json").is_file(), done


def _fresh(tmp_path: Path, reference: dict[str, Any], upto: str | None) -> Path:
    """A new project with the reference spec and the reference's stages before ``upto``."""
    project = rf.make_project(tmp_path / "project", reference["spec"])
    if upto is not None:
        rf.copy_state(reference["project"], project, STAGES[: STAGES.index(upto)])
    return project


def test_kill_inside_meta_init_resumes_from_checkpoint(tmp_path: Path, reference: dict[str, Any]) -> None:
    project = _fresh(tmp_path, reference, "meta_init")
    kill_at = int(RNG.choice([10, 15, 20, 25]))
    ckpts = project / rf.STATE / "meta_init" / "checkpoints"
    proc = rf.start_run(project, "--until", "meta_init")
    assert rf.kill_when(proc, lambda: any(s >= kill_at for s in rf.checkpoint_steps(ckpts))), "run ended before the kill"
    assert not (project / rf.STATE / "meta_init" / "manifest.json").exists()
    done = max(rf.checkpoint_steps(ckpts))
    assert kill_at <= done < 40

    _resume(project, "meta_init")
    summary = rf.manifest(project, "meta_init")["summary"]
    assert summary["resumed_from"] >= kill_at, summary
    ref = rf.manifest(reference["project"], "meta_init")["summary"]
    assert summary["best_step"] == ref["best_step"]
    assert summary["best_val_loss"] == pytest.approx(ref["best_val_loss"], abs=1e-6)
    rf.assert_adapters_close(project / rf.STATE / "meta_init" / "adapter",
                             reference["project"] / rf.STATE / "meta_init" / "adapter", atol=1e-5)


def test_kill_inside_gradients_keeps_written_rows(tmp_path: Path, reference: dict[str, Any]) -> None:
    project = _fresh(tmp_path, reference, "gradients")
    store = project / rf.STATE / "gradients" / "store"
    total = rf.manifest(reference["project"], "gradients")["summary"]["rows"]
    kill_at = int(RNG.integers(total // 5, total // 2))
    proc = rf.start_run(project, "--until", "gradients")
    assert rf.kill_when(proc, lambda: rf.written_rows(store) >= kill_at), "run ended before the kill"
    written = rf.written_rows(store)
    assert kill_at <= written < total

    _resume(project, "gradients")
    summary = rf.manifest(project, "gradients")["summary"]
    assert summary["rows"] == total
    assert summary["reused"] >= written - 2 and summary["reused"] > 0, summary
    assert summary["computed"] < total and summary["computed"] + summary["reused"] == total
    ref_store = reference["project"] / rf.STATE / "gradients" / "store"
    for name in ("features.npy", "outputs.npy", "written.npy"):
        assert np.array_equal(np.load(store / name), np.load(ref_store / name)), name
    assert json.loads((store / "rows.json").read_text()) == json.loads((ref_store / "rows.json").read_text())


def test_kill_inside_search_keeps_finished_estimates(tmp_path: Path, reference: dict[str, Any]) -> None:
    adds = reference["search_adds"]
    assert adds >= 2, "the crash spec's search should save several chunks"
    project = _fresh(tmp_path, reference, "search")
    kill_after = int(RNG.integers(1, adds))
    proc = rf.start_run(project, "--until", "search", env=rf.subprocess_env(RELTEST_KILL_AFTER_ADDS=str(kill_after)))
    assert proc.wait(timeout=240) == -9, (project / "run.out").read_text()
    (subsets,) = (project / rf.STATE / "cache" / "search").iterdir()  # the one estimator's store
    partial = rf.subset_results(subsets)
    assert partial and not (project / rf.STATE / "search" / "manifest.json").exists()

    _resume(project, "search")
    summary = rf.manifest(project, "search")["summary"]
    ref_summary = rf.manifest(reference["project"], "search")["summary"]
    assert summary["computed_now"] == ref_summary["computed_now"] - len(partial), (summary, ref_summary)
    assert summary["reused"] > ref_summary["reused"]
    reference_store = reference["project"] / rf.manifest(reference["project"], "search")["summary"]["subsets_store"]
    got, want = rf.subset_results(subsets), rf.subset_results(reference_store)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key][:2], want[key][:2], rtol=0, atol=1e-10)
        assert got[key][2:] == want[key][2:]
    sel = json.loads((project / rf.STATE / "search" / "selections.json").read_text())
    ref_sel = json.loads((reference["project"] / rf.STATE / "search" / "selections.json").read_text())
    assert {k: v["selected"] for k, v in sel["strategies"].items()} == {
        k: v["selected"] for k, v in ref_sel["strategies"].items()}


def test_kill_inside_finetune_keeps_finished_runs(tmp_path: Path, reference: dict[str, Any]) -> None:
    project = _fresh(tmp_path, reference, "finetune")
    ref_runs = json.loads((reference["project"] / rf.STATE / "finetune" / "runs.json").read_text())
    assert len(ref_runs) >= 2, "the crash spec should fine-tune at least two selections"
    kill_at = int(RNG.choice([6, 9, 12, 15, 18, 21]))
    folder = project / rf.STATE / "finetune"

    def second_run_midway() -> bool:
        runs_file = folder / "runs.json"
        if not runs_file.is_file():
            return False
        finished = json.loads(runs_file.read_text())
        others = [p for p in (folder / "runs").iterdir() if p.name not in finished]
        return any(any(s >= kill_at for s in rf.checkpoint_steps(p / "checkpoints")) for p in others)

    proc = rf.start_run(project, "--until", "finetune")
    assert rf.kill_when(proc, second_run_midway), "run ended before the kill"
    finished = json.loads((folder / "runs.json").read_text())
    assert 1 <= len(finished) < len(ref_runs)
    first_adapters = {k: (folder / "runs" / k / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
                      for k in finished}

    _resume(project, "finetune")
    summary = rf.manifest(project, "finetune")["summary"]
    assert summary["reused_runs"] == len(finished) and summary["trained_now"] == len(ref_runs) - len(finished)
    for key, mtime in first_adapters.items():  # finished runs were not trained again
        assert (folder / "runs" / key / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == mtime
    runs = json.loads((folder / "runs.json").read_text())
    assert runs.keys() == ref_runs.keys()
    assert max(summary["resumed_from"].values()) >= kill_at  # from its checkpoint
    assert not any("resumed_from" in r for r in runs.values())  # not a result: runs.json as a straight run's
    for key in ref_runs:
        assert runs[key]["steps"] == ref_runs[key]["steps"]
        rf.assert_adapters_close(folder / "runs" / key / "adapter",
                                 reference["project"] / rf.STATE / "finetune" / "runs" / key / "adapter", atol=1e-5)


@pytest.mark.parametrize("held", [False, True])
def test_ctrl_c_in_the_report_stage_leaves_no_empty_plots_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: bool) -> None:
    """Ctrl-C during the first report of a project (matplotlib importing, the first plot
    drawing) left an empty plots/ folder behind. It is removed; a plots/ holding a file stays."""
    from subsetctl.pipeline import StageContext
    from subsetctl.project import Project
    from subsetctl.report import plots
    from subsetctl.reporter import SilentReporter, StageWarnings
    from subsetctl.spec import load_spec
    from subsetctl.stages.report import ReportStage

    project = Project.find(rf.make_project(tmp_path / "p", rf.data_spec()))
    folder = project.root / "plots"
    if held:  # a plots/ already holding a file
        folder.mkdir()
        (folder / "mine.png").write_bytes(b"a user's")

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "import_matplotlib", interrupted)
    ctx = StageContext(load_spec(project.spec_path), project, StageWarnings(SilentReporter()),
                       project.stage_dir("report"), {})
    with pytest.raises(KeyboardInterrupt):
        ReportStage().run(ctx)
    if held:
        assert [p.name for p in folder.iterdir()] == ["mine.png"]
    else:
        assert not folder.exists()
