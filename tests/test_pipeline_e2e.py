"""The whole pipeline on a tiny random model: runs, resumes, skips what is up to date."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from subsetctl.api import plan_project, run_project, validate_spec_file
from subsetctl.cli import main
from subsetctl.errors import cli_wording
from subsetctl.reporter import SilentReporter, _NullTask


def test_full_run_then_noop_then_partial_rerun(tiny_project: Path) -> None:
    results = run_project(tiny_project)
    ran = [r["stage"] for r in results if r["action"] == "ran"]
    assert ran == ["data", "meta_init", "gradients", "calibrate", "search", "finetune", "evaluate", "report"]
    def reject(word: str) -> None:  # strict JSON: no NaN (verify is off, so calibration has none)
        raise AssertionError(f"{word} in report.json")

    report = json.loads((tiny_project / "report.json").read_text(), parse_constant=reject)
    assert set(report["strategies"]) == {"exhaustive", "gradient_similarity"}
    assert set(report["test_metrics"]) >= {"exhaustive", "all", "target_only"}
    comparison = report["final_vs_baselines"]  # the pick's test score beside the baselines'
    assert comparison["final"] == report["final"] and set(comparison["scores"]) >= {"all", "target_only"}
    assert comparison["below"] == [b for b in ("target_only", "all")
                                   if comparison["scores"][b] > comparison["scores"][report["final"]]]
    assert (tiny_project / "report.md").read_text().startswith("# subsetctl report")
    # each source's token lengths as trained, from the gradients stage's count of every row
    tokens = report["tokens_by_source"]
    assert tokens["max_length"] == 32 and set(tokens["sources"]) == {"target", *report["sources"]}
    assert sum(s["examples"] for s in tokens["sources"].values()) == report["stages"]["gradients"]["summary"]["rows"]
    assert "## Token lengths by source" in (tiny_project / "report.md").read_text()
    for label, folders in report["adapters"].items():  # where to find each selection's adapters
        assert label in report["test_metrics"] and all((tiny_project / f / "adapter_config.json").is_file()
                                                       for f in folders)
        assert f"| {label} | `{folders[0]}` |" in (tiny_project / "report.md").read_text()
    assert (tiny_project / "plots" / "source_scores.png").is_file()

    again = run_project(tiny_project)
    assert all(r["action"] in ("up to date", "disabled") for r in again)

    # deleting an output of the report stage (outside its state folder) brings it back on the next run
    (tiny_project / "report.md").unlink()
    (tiny_project / "plots" / "source_scores.png").unlink()
    report_status = {s.name: s for s in plan_project(tiny_project)[2]}["report"]
    assert report_status.will_run and "report.md" in report_status.reasons[0]
    assert "plots/source_scores.png" in report_status.reasons[0]
    # also when an upstream re-runs: it runs for certain, not only if the upstream's output changes
    forced = {s.name: s for s in plan_project(tiny_project, force=["data"])[2]}
    assert forced["report"].will_run and not forced["report"].conditional and forced["evaluate"].conditional
    assert any("outputs missing: report.md" in r for r in forced["report"].reasons)
    from subsetctl.report.terminal import load_report_data, outdated_note

    data = load_report_data(tiny_project)  # `report` says what was deleted, not that the spec changed
    assert data["stale"] == [] and data["missing_outputs"] == {"report": ["report.md", "plots/source_scores.png"]}
    assert "Deleted since the last run: report.md, plots/source_scores.png" in (outdated_note(data) or "")
    again = run_project(tiny_project)
    assert [r["stage"] for r in again if r["action"] == "ran"] == ["report"]
    assert (tiny_project / "report.md").is_file() and (tiny_project / "plots" / "source_scores.png").is_file()

    # a search-only change re-runs search and what depends on it, not the model stages
    statuses = {s.name: s for s in plan_project(tiny_project, ["search.strategies[0].name=forward"])[2]}
    assert not statuses["meta_init"].will_run and not statuses["gradients"].will_run
    assert statuses["search"].will_run and "search.strategies[0].name" in statuses["search"].reasons[0]


def test_cli_run_prints_report(tiny_project: Path, monkeypatch) -> None:
    result = CliRunner().invoke(main, ["run", str(tiny_project), "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "selections" in result.output and "test metrics" in result.output
    # a path that works from where the command was given (the project is not below it here)
    assert f"adapter of the final pick (exhaustive): {tiny_project.resolve()}/.subsetctl/finetune/runs/" in result.output
    monkeypatch.chdir(tiny_project.parent)
    shown = CliRunner().invoke(main, ["report", tiny_project.name]).output
    assert f"adapter of the final pick (exhaustive): {tiny_project.name}/.subsetctl/finetune/runs/" in shown
    report = CliRunner().invoke(main, ["report", str(tiny_project)])
    assert report.exit_code == 0 and "per-source scores" in report.output
    # the stages table lists the stages in the order they run, not alphabetically
    stage_rows = report.output.split("\nstages")[-1]
    positions = [stage_rows.index(f" {name} ") for name in ("data", "meta_init", "gradients", "calibrate", "report")]
    assert positions == sorted(positions)


def test_verify_and_calibrate_on_tiny_model(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran("gradients")  # a copy: the stages this test looks at still run
    overrides = ["verify.enabled=true", "verify.k=5", "verify.steps=2", "verify.batch_size=4",
                 "finetune.enabled=false", "calibrate.lambda_grid=[0.1, 1.0, 10.0]"]
    run_project(tiny_project, overrides)
    results = json.loads((tiny_project / ".subsetctl" / "verify" / "results.json").read_text())
    assert {r["kind"] for r in results} == {"ce", "surrogate"}
    assert len(results) == 10
    subsets = [r["subset"] for r in results if r["kind"] == "ce"]
    assert [] in subsets and ["a", "b", "bad"] in subsets
    calibration = json.loads((tiny_project / ".subsetctl" / "calibrate" / "calibration.json").read_text())
    for kind in ("ce", "surrogate"):
        entry = calibration["kinds"][kind]
        assert len(entry["raw"]) == len(entry["true"]) == 5
        assert entry["calibration"]["lam"] in (0.1, 1.0, 10.0)
    report = json.loads((tiny_project / "report.json").read_text())
    assert set(report["verify"]) == {"ce", "surrogate"}
    assert (tiny_project / "plots" / "estimated_vs_true.png").is_file()


def test_calibration_chooses_among_estimators_and_search_uses_the_choice(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran("gradients")  # a copy: the stages this test looks at still run
    overrides = ["verify.enabled=true", "verify.k=5", "verify.steps=2", "verify.batch_size=4",
                 "verify.kinds=[surrogate]", "verify.lr_surrogate=0.01", "finetune.enabled=false",
                 "calibrate.estimators=[fast, linear_sgd]", "calibrate.against=surrogate",
                 "calibrate.lambda_grid=[0.1, 10.0]"]
    run_project(tiny_project, overrides)
    calibration = json.loads((tiny_project / ".subsetctl" / "calibrate" / "calibration.json").read_text())
    entry = calibration["kinds"]["surrogate"]
    assert set(entry["candidates"]) == {"fast", "linear_sgd"}
    best = max(c["calibration"]["spearman"] for c in entry["candidates"].values())
    assert entry["calibration"]["spearman"] == best
    assert calibration["primary"]["estimator"] == entry["estimator"]
    summary = json.loads((tiny_project / ".subsetctl" / "search" / "manifest.json").read_text())["summary"]
    assert summary["estimator"] == entry["estimator"]
    assert entry["estimator"] in (tiny_project / "report.md").read_text()


def test_report_after_a_partial_run_shows_what_exists(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran("gradients")  # a copy: the stages this test looks at still run
    overrides = ["verify.enabled=true", "verify.k=4", "verify.steps=1", "verify.batch_size=4",
                 "verify.kinds=[surrogate]"]
    run_project(tiny_project, overrides, until="calibrate")
    assert not (tiny_project / "report.json").exists()
    result = CliRunner().invoke(main, ["report", str(tiny_project)])
    assert result.exit_code == 0, result.output
    assert "estimated vs. true" in result.output and "surrogate" in result.output
    # calibration switched off: the primary map is the identity (it kept the fitted slope and
    # intercept, which a reader applying them would have got wrong); the kind keeps its fit
    run_project(tiny_project, [*overrides, "calibrate.enabled=false"], until="calibrate")
    calibration = json.loads((tiny_project / ".subsetctl" / "calibrate" / "calibration.json").read_text())
    primary = calibration["primary"]
    assert (primary["enabled"], primary["slope"], primary["intercept"]) == (False, 1.0, 0.0)
    # nor its held-out error, which report.json's calibration and the stage summary gave for the raw estimates
    assert primary["loo_median_rel_err"] is None
    assert calibration["kinds"]["surrogate"]["calibration"]["loo_median_rel_err"] is not None  # what it would give
    summary = json.loads((tiny_project / ".subsetctl" / "calibrate" / "manifest.json").read_text())["summary"]
    assert summary["calibrated"] is False and summary["loo_median_rel_err"] is None


def test_true_finetune_estimator_drives_a_strategy(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran("gradients")  # a copy: the stages this test looks at still run
    overrides = ["estimate.estimator=true_finetune", "verify.enabled=true", "verify.k=4", "verify.steps=1",
                 "verify.kinds=[ce]",
                 "search.strategies=[{name: forward, params: {max_steps: 1}}]", "finetune.enabled=false"]
    run_project(tiny_project, overrides)
    selections = json.loads((tiny_project / ".subsetctl" / "search" / "selections.json").read_text())
    trace = selections["strategies"]["forward"]["trace"]
    assert len(trace) >= 4  # target only + one addition per source, each a real fine-tune
    assert all(t["loss"] is not None and t["loss"] > 0 for t in trace)
    calibration = selections["calibration"]  # real losses: neither labelled fast nor calibrated
    assert calibration["estimator"] == "true_finetune" and not calibration["enabled"]
    assert any("fine-tunes for real" in note for note in calibration["notes"])
    assert (calibration["lam"], calibration["slope"], calibration["intercept"]) == (None, 1.0, 0.0)  # no lambda
    # nothing was calibrated: no "calibrated" copy of the raw loss (it was the raw value)
    assert selections["strategies"]["forward"]["estimated_loss_calibrated"] is None
    assert all(b["estimated_loss_calibrated"] is None for b in selections["baselines"].values())
    # report.json shows that calibration, with the keys README names for it (selections.json had kept only the
    # estimator, lambda and map, so report.json's lacked spearman, loo_median_rel_err and per_lambda)
    shown = json.loads((tiny_project / "report.json").read_text())["calibration"]
    assert (shown["spearman"], shown["loo_median_rel_err"], shown["per_lambda"], shown["lam"]) == (None, None, [], None)
    assert shown["notes"] == calibration["notes"] and shown["estimator"] == "true_finetune"
    text = CliRunner().invoke(main, ["report", str(tiny_project)]).output
    assert "true_finetune lambda=–" in text  # the report showed the spec's lambda 1, which it never used
    # the real fine-tunes do not depend on the projection: a new d re-runs the search, which reuses them all
    run_project(tiny_project, [*overrides, "gradients.d=8"])
    summary = json.loads((tiny_project / ".subsetctl" / "search" / "manifest.json").read_text())["summary"]
    assert summary["computed_now"] == 0 and summary["reused"] >= 4


def test_report_leaves_out_results_an_upstream_change_made_outdated(tiny_project_ran) -> None:
    from subsetctl.report.terminal import load_report_data

    tiny_project = tiny_project_ran()
    run_project(tiny_project, ["search.strategies=[{name: forward}]"], until="search")
    data = load_report_data(tiny_project)
    assert set(data["outdated"]) == {"finetune", "evaluate", "report"}
    assert set(data["report"]["strategies"]) == {"forward"}  # the new search, not report.json's
    assert "test_metrics" not in data["report"]  # fine-tuned on the old selections: left out
    runner = CliRunner()
    text = runner.invoke(main, ["report", str(tiny_project)])
    assert text.exit_code == 0 and "Not shown: the results of finetune, evaluate" in text.output
    # the report stage itself leaves them out too (report.md and report.json showed the old test metrics)
    run_project(tiny_project, ["search.strategies=[{name: forward}]", "finetune.enabled=false"])
    written = json.loads((tiny_project / "report.json").read_text())
    assert "test_metrics" not in written and "adapters" not in written
    assert set(written["left_out"]) >= {"finetune", "evaluate"}
    assert "## Test metrics" not in (tiny_project / "report.md").read_text()
    assert "> Left out: the results of " in (tiny_project / "report.md").read_text()
    markdown = runner.invoke(main, ["report", str(tiny_project), "--format", "markdown"])
    assert markdown.exit_code == 0 and "| forward |" in markdown.output and "exhaustive" not in markdown.output

    run_project(tiny_project, ["search.strategies=[{name: forward}]"])  # brings them up to date
    data = load_report_data(tiny_project)
    assert data["outdated"] == [] and "forward" in data["report"]["test_metrics"]


def test_finetune_and_evaluate_reuse_what_an_upstream_change_left_the_same(tiny_project_ran) -> None:
    def summary(stage: str) -> dict:
        return json.loads((tiny_project / ".subsetctl" / stage / "manifest.json").read_text())["summary"]

    tiny_project = tiny_project_ran()
    n = summary("finetune")["runs"]
    assert summary("finetune")["trained_now"] == n and summary("evaluate")["reused"] == 0
    metrics = json.loads((tiny_project / ".subsetctl" / "evaluate" / "metrics.json").read_text())["metrics"]

    run_project(tiny_project, ["finetune.seeds=2"])  # seed 0's runs are reused, only seed 1's trained
    assert summary("finetune")["runs"] == 2 * n
    assert summary("finetune")["trained_now"] == n and summary("finetune")["reused_runs"] == n
    assert summary("evaluate")["reused"] == n
    again = json.loads((tiny_project / ".subsetctl" / "evaluate" / "per_run.json").read_text())
    assert len(again) == 2 * n

    # back, the previous results not kept: everything from the caches, same metrics
    run_project(tiny_project, ["finetune.seeds=1", "project.keep_previous=false"])
    assert summary("finetune")["trained_now"] == 0 and summary("evaluate")["reused"] == n
    assert json.loads((tiny_project / ".subsetctl" / "evaluate" / "metrics.json").read_text())["metrics"] == metrics

    run_project(tiny_project, force=["finetune"])  # --force trains again instead of reusing
    assert summary("finetune")["trained_now"] == n

    # removing a source changes the data stage, but runs that never read it stay cached:
    # target_only (and any selection without that source) is neither retrained nor re-evaluated
    import yaml

    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["sources"] = [s for s in spec["sources"] if s["name"] != "b"]
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(tiny_project)
    assert summary("finetune")["reused_runs"] >= 1 and summary("evaluate")["reused"] >= 1
    records = json.loads((tiny_project / ".subsetctl" / "finetune" / "runs.json").read_text())
    assert all("b" not in r["subset"] for r in records.values())


def test_plan_says_how_many_fine_tunes_and_test_results_the_caches_hold(tiny_project_ran) -> None:
    """As verify's: "3 of 5 cached, reused" where the stages that decide them are not re-run,
    counting only what `run` takes (a test result or an adapter file cut short is not)."""
    tiny_project = tiny_project_ran()
    state = tiny_project / ".subsetctl"
    n = json.loads((state / "finetune" / "manifest.json").read_text())["summary"]["runs"]

    def work(stage: str, overrides: tuple[str, ...] = ()) -> str:
        return str({s.name: s for s in plan_project(tiny_project, list(overrides))[2]}[stage].work)

    assert work("finetune", ("finetune.seeds=2",)).endswith(f"; {n} of {2 * n} cached, reused")
    assert work("evaluate", ("finetune.seeds=2",)).endswith("; those in the cache are reused")  # not known yet
    shutil.rmtree(state / "evaluate")
    cut = min((state / "cache" / "evaluate").glob("*.json"))
    cut.write_text(cut.read_text()[:5])
    assert work("evaluate").endswith(f"; {n - 1} of {n} cached, reused")
    shutil.rmtree(state / "finetune")
    adapter = min((state / "cache" / "finetune").glob("*/adapter"))
    weights = max(adapter.iterdir(), key=lambda p: p.stat().st_size)
    weights.write_bytes(weights.read_bytes()[:100])
    assert work("finetune").endswith(f"; {n - 1} of {n} cached, reused")
    run_project(tiny_project)
    assert json.loads((state / "finetune" / "manifest.json").read_text())["summary"]["reused_runs"] == n - 1


def test_plan_counts_the_fine_tunes_and_test_results_a_stopped_run_finished(tiny_project_ran) -> None:
    """`run` keeps what a run that stopped partway recorded in the stage's folder (evaluate's
    per_run.json, finetune's runs.json) also where the cache lacks it (one that took none of
    its writes): `plan` counts them, not "none cached"; and the fine-tunes as the distinct
    subsets the search picked, not "up to" one a pick."""
    tiny_project = tiny_project_ran()
    state = tiny_project / ".subsetctl"

    def work(stage: str) -> str:
        return str({s.name: s for s in plan_project(tiny_project)[2]}[stage].work)

    tested = len(json.loads((state / "evaluate" / "per_run.json").read_text()))
    for stage in ("evaluate", "finetune"):  # stopped before its results were committed
        (state / stage / "manifest.json").unlink()
        shutil.rmtree(state / "cache" / stage)
        if stage == "evaluate":
            assert work("evaluate").endswith(f"; {tested} of {tested} done by the run that stopped partway, kept")
    runs = json.loads((state / "finetune" / "runs.json").read_text())
    (state / "finetune" / "runs.json").write_text(json.dumps(dict(list(runs.items())[1:])))  # the first unfinished
    assert work("finetune").endswith(f"; {len(runs) - 1} of {len(runs)} done by the run that stopped partway, kept")
    # the fine-tunes the search's picks make, one per distinct subset: "up to 4" counted picks alike
    picks = {label: sorted(r["selected"]) for section in ("strategies", "baselines") for label, r in json.loads(
        (state / "search" / "selections.json").read_text())[section].items()}
    distinct = len({tuple(subset) for subset in picks.values()})
    assert distinct == len(runs) < len(picks) == 4, picks  # (the tiny project's picks share a subset)
    assert work("finetune").startswith(f"{distinct} fine-tunes (4 picks, {distinct} distinct) of 2 steps of 4 "
                                       "examples; "), work("finetune")
    run_project(tiny_project)
    summary = json.loads((state / "finetune" / "manifest.json").read_text())["summary"]
    assert (summary["reused_runs"], summary["trained_now"]) == (len(runs) - 1, 1)


def test_plan_says_the_fine_tunes_the_last_run_did_as_its_summary_counts_them(tiny_project_ran) -> None:
    """"Its last run took" said the last finetune was "for up to 4 fine-tunes (4 selections;
    ...)", the spec's bound, though it had trained one per distinct pick: the count is now
    the last run's summary's; and `--force finetune` with the search's picks on disk said
    "up to 4" where `run` trains the distinct ones."""
    tiny_project = tiny_project_ran()
    summary = json.loads((tiny_project / ".subsetctl" / "finetune" / "manifest.json").read_text())["summary"]
    runs, picks = summary["runs"], len(summary["labels"])
    assert runs < picks == 4, summary  # (the tiny project's picks share a subset)
    head = f"{runs} fine-tunes (4 picks, {runs} distinct)"
    finetune = {s.name: s for s in plan_project(tiny_project, ["finetune.steps=3"])[2]}["finetune"]
    assert finetune.last_work == f"{head} of 2 steps of 4 examples", finetune.last_work
    forced = {s.name: s for s in plan_project(tiny_project, force=["finetune"])[2]}["finetune"]
    assert str(forced.work).startswith(f"{head} of 2 steps of 4 examples; --force"), forced.work
    assert forced.last_work is None  # the work planned, as the last run did it


def test_plan_counts_the_adapters_evaluate_tests(tiny_project_ran) -> None:
    """`plan` said evaluate runs "the target's test split through each fine-tuned adapter;
    none cached", not how many `run` evaluates: once finetune is up to date it counts them."""
    tiny_project = tiny_project_ran()
    state = tiny_project / ".subsetctl"
    adapters = len(json.loads((state / "finetune" / "runs.json").read_text()))
    assert adapters > 1
    rows = json.loads((state / "data" / "manifest.json").read_text())["summary"]["counts"]["target"]["test"]
    for overrides, force in ((["evaluate.max_new_tokens=2"], []), ([], ["evaluate"])):
        evaluate = {s.name: s for s in plan_project(tiny_project, overrides, force=force)[2]}["evaluate"]
        assert str(evaluate.work).startswith(f"the target's test split ({rows} rows) through the {adapters} fine-tuned "
                                             "adapters, generating up to "), evaluate.work
    run_project(tiny_project, ["evaluate.max_new_tokens=2"])
    assert len(json.loads((state / "evaluate" / "per_run.json").read_text())) == adapters


def test_plan_counts_the_gradient_rows_a_stopped_run_computed(tiny_project_ran) -> None:
    """Gradients stopped partway (SIGTERM after 8 of 40 rows): `plan` said "40 rows" as for
    a fresh start while `run` said "resuming; 8 of 40 rows are computed already, computing
    the other 32": it now counts them as for finetune's fine-tunes."""
    import numpy as np

    tiny_project = tiny_project_ran("gradients")
    state = tiny_project / ".subsetctl" / "gradients"
    (state / "manifest.json").unlink()  # stopped before its results were committed
    written = np.load(state / "store" / "written.npy", mmap_mode="r+")
    rows, kept = len(written), 8
    written[kept:] = False
    written.flush()
    del written
    gradients = {s.name: s for s in plan_project(tiny_project)[2]}["gradients"]
    assert gradients.state == "unfinished", gradients
    assert str(gradients.work).endswith(f": {rows} rows (the most from 'target': 15; then 'a': 10, 'b': 10, 'bad': 10, its max_examples; "
                                        "`max_examples` on a source caps "
                                        f"its rows); {kept} of {rows} done by the run that stopped partway, kept"), \
        gradients.work
    run_project(tiny_project, until="gradients")
    summary = json.loads((state / "manifest.json").read_text())["summary"]
    assert (summary["reused"], summary["computed"]) == (kept, rows - kept), summary


def test_calibration_against_a_kind_verify_did_not_run_is_recorded_and_reported(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran("gradients")  # a copy: the stages this test looks at still run
    overrides = ["verify.enabled=true", "verify.k=4", "verify.steps=1", "verify.batch_size=4",
                 "verify.kinds=[surrogate]", "calibrate.against=ce", "finetune.enabled=false"]
    run_project(tiny_project, overrides)
    calibration = json.loads((tiny_project / ".subsetctl" / "calibrate" / "calibration.json").read_text())
    assert calibration["against"] == "surrogate"  # the kind actually used, not the one asked for
    assert any("calibrate.against is 'ce'" in note for note in calibration["primary"]["notes"])
    assert "> calibration: calibrate.against is 'ce'" in (tiny_project / "report.md").read_text()
    text = CliRunner().invoke(main, ["report", str(tiny_project)])
    assert "calibration: calibrate.against is 'ce'" in text.output
    assert "set calibrate.against: surrogate, or add ce to verify.kinds" in text.output  # what to set
    # left at its default, against follows verify.kinds: no note of a key the spec never wrote
    run_project(tiny_project, [o for o in overrides if not o.startswith("calibrate.against")], force="calibrate")
    calibration = json.loads((tiny_project / ".subsetctl" / "calibrate" / "calibration.json").read_text())
    assert calibration["against"] == "surrogate" and not any("against" in n for n in calibration["primary"]["notes"])
    assert "calibrate.against is" not in (tiny_project / "report.md").read_text()


def test_a_replaced_local_model_makes_the_model_stages_stale_and_relative_paths_follow_the_spec(
    tiny_project_ran, tiny_llama: Path, tmp_path_factory, monkeypatch
) -> None:
    """model.source relative to the spec's folder works from any working directory, and a
    checkpoint replaced at the same path re-runs every stage that loads the model (and is
    not served from the finetune/evaluate caches); data-only stages stay up to date."""
    import shutil

    import torch
    import yaml

    tiny_project = tiny_project_ran()  # a copy, run on these model files in another folder
    shutil.copytree(tiny_llama, tiny_project / "models" / "base")
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["model"]["source"] = "models/base"
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # not the project folder
    assert validate_spec_file(tiny_project / "subsetctl.yaml").issues == []
    # the stages are up to date on the same files; meta_init, trained again from here, records models/base
    run_project(tiny_project, force=["meta_init"])
    assert all(not s.will_run for s in plan_project(tiny_project)[2])
    # the same files under another spelling, or moved: nothing re-runs (meta_init is hours on a real model)
    base = tiny_project / "models" / "base"
    for spelled in ("models/base/", str(base.resolve())):
        assert all(not s.will_run for s in plan_project(tiny_project, [f"model.source={spelled}"])[2]), [(s.name, s.reasons) for s in plan_project(tiny_project, [f"model.source={spelled}"])[2] if s.will_run]
    shutil.move(base, tiny_project / "models" / "moved")
    assert [r["stage"] for r in run_project(tiny_project, ["model.source=models/moved"])
            if r["action"] == "ran"] == ["report"]  # (naming the folder where it is now)
    shutil.move(tiny_project / "models" / "moved", base)

    from safetensors.torch import load_file, save_file

    weights = tiny_project / "models" / "base" / "model.safetensors"
    tensors = load_file(weights)
    save_file({k: v + 0.01 * torch.ones_like(v) for k, v in tensors.items()}, weights, metadata={"format": "pt"})
    statuses = {s.name: s for s in plan_project(tiny_project)[2]}
    assert {n for n, s in statuses.items() if s.will_run} >= {"meta_init", "gradients", "finetune", "evaluate"}
    assert not statuses["data"].will_run
    assert statuses["meta_init"].reasons == ["input files changed: model folder (model.source)"]
    run_project(tiny_project)
    finetune = json.loads((tiny_project / ".subsetctl" / "finetune" / "manifest.json").read_text())["summary"]
    assert finetune["trained_now"] == finetune["runs"] and finetune.get("reused_runs", 0) == 0

    # mistyped folders are caught before anything runs: an error when the name cannot be a
    # hub id, a warning when it could (models/bsae) but models/ is a local folder (online:
    # offline, an uncached hub id is a warning of its own)
    monkeypatch.setattr("subsetctl.hub.hub_reachable", lambda timeout=3.0: True)
    for source, errors, warnings in (("./models/bsae", ["model.source"], []),
                                     ("models/bsae", [], ["model.source"])):
        spec["model"]["source"] = source
        (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        report = validate_spec_file(tiny_project / "subsetctl.yaml")
        assert [i.key for i in report.issues] == errors and [w.key for w in report.warnings] == warnings
    assert "holding base" in report.warnings[0].message


def test_report_says_when_the_spec_moved_past_its_results(tiny_project: Path) -> None:
    import yaml

    runner = CliRunner()
    result = runner.invoke(main, ["run", str(tiny_project), "-q", "finetune.steps=1"])
    assert result.exit_code == 0 and "test metrics" in result.output
    assert "changed since these results" not in result.output  # the run's report sees its overrides
    data = json.loads(runner.invoke(main, ["report", str(tiny_project), "--format", "json"]).output)
    assert data["stale"] == ["finetune", "evaluate", "report"]  # the file still says steps: 2
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["finetune"]["steps"] = 1
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    text = runner.invoke(main, ["report", str(tiny_project)]).output
    assert "changed since these results" not in text
    spec["meta_init"]["steps"] = 3
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    text = runner.invoke(main, ["report", str(tiny_project)], terminal_width=300).output
    assert "changed since these results: meta_init, gradients, calibrate, search, finetune, evaluate, report" in text
    markdown = runner.invoke(main, ["report", str(tiny_project), "--format", "markdown"]).output
    assert "> The spec or its input files changed since these results" in markdown
    (tiny_project / "subsetctl.yaml").write_text("target: {}\n")
    data = json.loads(runner.invoke(main, ["report", str(tiny_project), "--format", "json"]).output)
    assert data["stale"] == [] and "not a valid spec" in data["spec_problem"]
    assert "target.name: required key is missing" in data["spec_problem"]  # the problem itself, not just a colon


def test_verify_takes_one_batch_a_step_and_only_estimated_rows_get_gradients(tiny_project: Path, monkeypatch) -> None:
    from subsetctl.gradients.store import GradientStore
    from subsetctl.modeling import train

    real_train = train.train_lora
    batches: list[tuple[int, int]] = []  # (batch_size, grad_accum) of every training run

    def spy(model, tokenizer, examples, config, *args, **kwargs):  # type: ignore[no-untyped-def]
        batches.append((config.batch_size, config.grad_accum))
        return real_train(model, tokenizer, examples, config, *args, **kwargs)

    monkeypatch.setattr(train, "train_lora", spy)
    overrides = ["verify.enabled=true", "verify.k=4", "verify.steps=2", "verify.batch_size=3",
                 "meta_init.grad_accum=2", "finetune.enabled=false",
                 "sources[0].split={train: 0.5, validation: 0.5}"]
    run_project(tiny_project, overrides)
    # verify's runs (batch 3) step on one batch each, as linear_sgd replays them, whatever meta-init accumulates
    assert sorted({grad_accum for size, grad_accum in batches if size == 3}) == [1]
    store = GradientStore.open(tiny_project / ".subsetctl" / "gradients" / "store", writable=False)
    splits = {(r["source"], r["split"]) for r in store.rows}
    assert ("target", "validation") in splits and ("a", "train") in splits
    assert ("a", "validation") not in splits  # a source's held-out rows are read by no estimate

    # estimate.max_iter is the exact solver's: with the fast estimator nothing re-runs
    actions = {r["stage"]: r["action"] for r in run_project(tiny_project, [*overrides, "estimate.max_iter=7"])}
    assert actions["calibrate"] == actions["search"] == "up to date"


def test_results_of_a_switched_off_stage_whose_settings_changed_are_left_out(tiny_project_ran) -> None:
    from subsetctl.report.terminal import load_report_data, outdated_note

    tiny_project = tiny_project_ran()
    off = ["finetune.enabled=false"]
    run_project(tiny_project, off)  # switched off, settings unchanged: the results still match the spec
    assert "test_metrics" in json.loads((tiny_project / "report.json").read_text())
    # their time is an earlier run's, not this spec's cost: said so in the time tables
    assert "| finetune (switched off; an earlier run's) |" in (tiny_project / "report.md").read_text()
    (tiny_project / "subsetctl.yaml").write_text(
        (tiny_project / "subsetctl.yaml").read_text().replace("finetune:\n", "finetune:\n  enabled: false\n"))
    data = load_report_data(tiny_project)
    assert data["switched_off"] == ["finetune", "evaluate"] and data["stages"]["evaluate"]["switched_off"]
    assert "switched_off" not in data["stages"]["search"]
    (tiny_project / "subsetctl.yaml").write_text(
        (tiny_project / "subsetctl.yaml").read_text().replace("finetune:\n  enabled: false\n", "finetune:\n"))
    moved = [*off, "finetune.steps=3"]
    statuses = {s.name: s for s in plan_project(tiny_project, moved)[2]}
    assert statuses["finetune"].state == "disabled" and "finetune.steps" in statuses["finetune"].reasons[1]
    assert "switched-off stages whose settings changed: finetune" in " ".join(statuses["report"].reasons)
    run_project(tiny_project, moved)
    written = json.loads((tiny_project / "report.json").read_text())
    assert "test_metrics" not in written and "adapters" not in written
    assert written["left_out"] == written["left_out_switched_off"] == ["finetune", "evaluate"]
    assert "switch them back on" in (tiny_project / "report.md").read_text()
    data = load_report_data(tiny_project, moved)  # `report` shows report.json, which left them out, and says why
    assert data["switched_off_moved_past"] == ["finetune"] and "test_metrics" not in data["report"]
    note = outdated_note(data)
    assert note is not None and "Switched off in the spec, with settings changed since" in note


def test_plots_of_results_no_longer_shown_are_removed(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran()
    assert (tiny_project / "plots" / "test_metric.png").is_file()
    run_project(tiny_project, ["report.plots=false"])
    assert not list((tiny_project / "plots").glob("*.png"))  # report.md no longer links them: gone, not stale


def test_a_plot_that_is_a_link_is_replaced_not_written_through(tiny_project_ran, tmp_path: Path) -> None:
    """`plots/test_metric.png -> ~/notes.txt` in a copied project: the plot was written into the
    file the link points to, outside the project."""
    tiny_project = tiny_project_ran()
    precious = tmp_path / "notes.txt"
    precious.write_text("mine")
    (tiny_project / "plots" / "test_metric.png").unlink()
    (tiny_project / "plots" / "test_metric.png").symlink_to(precious)
    run_project(tiny_project, force=["report"])
    assert precious.read_text() == "mine"
    plot = tiny_project / "plots" / "test_metric.png"
    assert not plot.is_symlink() and plot.read_bytes().startswith(b"\x89PNG")


def test_a_users_link_named_report_sources_csv_is_left_alone_where_no_table_is_written(tiny_project_ran,
                                                                                       tmp_path: Path) -> None:
    """A project of 200 sources or fewer writes no report_sources.csv, yet the report stage
    removed a link of the user's by that name without a word."""
    tiny_project = tiny_project_ran()
    elsewhere = tmp_path / "mine.csv"
    elsewhere.write_text("a,b\n")
    (tiny_project / "report_sources.csv").symlink_to(elsewhere)
    run_project(tiny_project, force=["report"])
    assert (tiny_project / "report_sources.csv").is_symlink() and elsewhere.read_text() == "a,b\n"


def test_a_report_md_of_the_users_own_is_kept_as_a_backup_not_overwritten_unsaid(tiny_project_ran) -> None:
    """Notes of the user's in report.md (or a report.json of another tool) next to the spec
    were replaced by the report without a word."""
    from subsetctl.reporter import SilentReporter

    tiny_project = tiny_project_ran()
    (tiny_project / "report.md").write_text("my notes\n")
    (tiny_project / "report.json").write_text("[1, 2]\n")
    reporter = SilentReporter()
    run_project(tiny_project, force=["report"], reporter=reporter)
    assert (tiny_project / "report.md.bak").read_text() == "my notes\n"
    assert (tiny_project / "report.json.bak").read_text() == "[1, 2]\n"
    assert (tiny_project / "report.md").read_text().startswith("# subsetctl report")
    assert any("report.md was not a subsetctl report it could read (a file of your own, or one damaged): kept as report.md.bak" in w for w in reporter.warnings)
    run_project(tiny_project, force=["report"])  # its own report now: replaced, no backup of it
    assert sorted(p.name for p in tiny_project.glob("report*")) == ["report.json", "report.json.bak", "report.md",
                                                                     "report.md.bak"]


def test_a_project_computed_before_checkpoint_every_counted_at_its_default_stays_up_to_date(
    tiny_project: Path, monkeypatch
) -> None:
    """Stages and cached fine-tunes recorded with a non-default checkpoint_every in the raw
    spec (as the previous version keyed them) are still recognised: nothing re-runs, and a
    finetune stage that must run again finds its adapters."""
    import shutil

    import subsetctl.pipeline
    import subsetctl.stages.finetune
    from subsetctl.modeling.resolve import model_fingerprint_inputs

    def raw(spec):  # type: ignore[no-untyped-def]
        return spec.model_dump(mode="json")

    def model_key_by_path(ctx):  # type: ignore[no-untyped-def]
        return {"model": raw(ctx.spec)["model"], **model_fingerprint_inputs(ctx.spec.model.source, ctx.project.root)}, []

    overrides = ["finetune.checkpoint_every=3"]  # and the tiny spec's meta_init.checkpoint_every is 2
    with monkeypatch.context() as previous_version:  # fingerprints and cache keys of the raw spec
        previous_version.setattr(subsetctl.pipeline, "fingerprint_dump", raw)
        previous_version.setattr(subsetctl.stages.finetune, "fingerprint_dump", raw)
        previous_version.setattr(subsetctl.stages.common, "model_key", model_key_by_path)  # (and by the model's path)
        run_project(tiny_project, overrides)
    for now in (overrides, ["finetune.checkpoint_every=5"]):  # also with another value: it changes nothing
        statuses = plan_project(tiny_project, now)[2]
        assert all(s.state in ("up to date", "disabled") for s in statuses), [(s.name, s.reasons) for s in statuses]
    state = tiny_project / ".subsetctl"
    entries = sorted(p.name for p in (state / "cache" / "finetune").iterdir())
    shutil.rmtree(state / "finetune")  # finetune runs again: it finds its adapters under the old keys
    run_project(tiny_project, overrides)
    summary = json.loads((state / "finetune" / "manifest.json").read_text())["summary"]
    now = sorted(p.name for p in (state / "cache" / "finetune").iterdir())
    assert summary["trained_now"] == 0 and len(now) == len(entries) and not set(now) & set(entries)  # re-keyed


def test_report_after_a_run_that_switched_verify_on_by_override_does_not_call_it_switched_off(
    tiny_project_ran,
) -> None:
    tiny_project = tiny_project_ran("gradients")  # a copy: verify and what follows still run
    from subsetctl.report.terminal import load_report_data, outdated_note

    for switched_on in (["verify.enabled=true", "verify.k=4", "verify.steps=1", "verify.batch_size=4"],
                        ["verify={enabled: true, k: 4, steps: 1, batch_size: 4}"]):  # or the whole section
        run_project(tiny_project, [*switched_on, "finetune.enabled=false"])
        data = load_report_data(tiny_project)  # no overrides: the spec has verify off (and k 8)
        assert data["switched_off_moved_past"] == [] and data["report"].get("verify")
        assert data["switched_off"] == []  # verify's results are shown: it is not marked
        assert "Switched off in the spec" not in (outdated_note(data) or "")


def test_a_partial_gradient_store_of_another_row_table_is_recreated(tiny_project: Path, monkeypatch) -> None:
    """An interrupted store computed by an earlier version (which also took sources'
    validation rows) was filled by position with the new rows: other rows' gradients, then
    an internal IndexError on every run."""
    import numpy as np

    from subsetctl.gradients.store import GradientStore
    from subsetctl.stages import gradients

    overrides = ["sources[0].split={train: 0.5, validation: 0.5}", "finetune.enabled=false"]
    with monkeypatch.context() as previous_version:
        previous_version.setattr(gradients, "SOURCE_SPLITS", ("train", "validation"))
        run_project(tiny_project, overrides, until="gradients")
    state = tiny_project / ".subsetctl" / "gradients"
    info = json.loads((state / "store" / "info.json").read_text())  # no row identity, as it was written then
    (state / "store" / "info.json").write_text(json.dumps({k: v for k, v in info.items() if k != "rows_digest"}))
    written = np.load(state / "store" / "written.npy", mmap_mode="r+")
    written[len(written) // 2:] = False  # stopped halfway
    written.flush()
    del written
    (state / "manifest.json").unlink()  # an unfinished stage: its work.json remains
    run_project(tiny_project, overrides, until="gradients")
    store = GradientStore.open(state / "store", writable=False)
    assert ("a", "validation") not in {(r["source"], r["split"]) for r in store.rows} and store.complete


def test_partial_work_an_earlier_subsetctl_marked_with_the_settings_as_written_is_resumed(tiny_project_ran) -> None:
    """A work marker of a subsetctl from before result-neutral settings counted at their
    defaults records only the fingerprint of the spec's settings as written (tiny_project's
    meta_init.checkpoint_every: 2): the run it stopped is resumed, not discarded as work
    "for other inputs" (hours of meta-init training on a real project)."""
    from subsetctl.project import fingerprint

    tiny_project = tiny_project_ran("meta_init")
    state = tiny_project / ".subsetctl" / "meta_init"
    (state / "manifest.json").unlink()  # as a Ctrl-C leaves it: work.json and the checkpoints stay
    marker = json.loads((state / "work.json").read_text())
    inputs = marker["inputs"]
    assert inputs["slice"]["meta_init"]["checkpoint_every"] == 10  # counted at its default now
    as_written = {**inputs, "slice": {**inputs["slice"], "meta_init": {**inputs["slice"]["meta_init"],
                                                                        "checkpoint_every": 2}}}
    (state / "work.json").write_text(json.dumps({"fingerprint": fingerprint(as_written)}))
    meta_init = {s.name: s for s in plan_project(tiny_project)[2]}["meta_init"]
    assert meta_init.state == "unfinished", meta_init.reasons
    assert "resumes" in " ".join(meta_init.reasons)


def test_report_says_a_stage_a_run_stopped_partway_is_resumable_not_unrun(tiny_project_ran) -> None:
    from subsetctl.report.terminal import load_report_data, outdated_note

    tiny_project = tiny_project_ran()
    (tiny_project / ".subsetctl" / "finetune" / "manifest.json").unlink()  # as a Ctrl-C leaves it: work.json stays
    data = load_report_data(tiny_project)
    assert data["unfinished"] == ["finetune"] and "finetune" not in data["not_run"]
    note = outdated_note(data) or ""
    assert "Stopped partway: finetune" in note and "Not run yet: finetune" not in note
    # what follows is outdated because finetune is being computed again, not because it changed
    assert "the results of evaluate, from an earlier run (finetune, which they were made from, is being " in note
    assert "upstream stage changed" not in note



def test_report_during_a_run_says_it_is_running_not_stopped(tiny_project_ran) -> None:
    """`report` while a run computes a stage said "Stopped partway: ... `subsetctl run`
    resumes it", advice that then fails on the lock."""
    import subprocess
    import sys

    from subsetctl.report.terminal import load_report_data, outdated_note

    tiny_project = tiny_project_ran()
    state = tiny_project / ".subsetctl" / "finetune"
    (state / "manifest.json").unlink()
    code = ("import sys, time; from pathlib import Path; from subsetctl.project import Project\n"
            f"with Project(Path({str(tiny_project)!r})).lock():\n    print('locked', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        marker = json.loads((state / "work.json").read_text())
        (state / "work.json").write_text(json.dumps({**marker, "pid": holder.pid}))  # the run working on it
        data = load_report_data(tiny_project)
        assert data["running"] == {"pid": holder.pid, "stage": "finetune"} and data["unfinished"] == []
        note = outdated_note(data) or ""
        assert f"in progress (PID {holder.pid}, computing finetune)" in note and "Stopped partway" not in note
    finally:
        holder.kill()
        holder.wait()
    assert load_report_data(tiny_project)["unfinished"] == ["finetune"]  # the run has gone: stopped partway

class _ProgressRecorder(SilentReporter):
    """A SilentReporter that keeps each progress bar's updates, by description."""

    def __init__(self) -> None:
        super().__init__()
        self.updates: dict[str, list[tuple[int, dict[str, Any]]]] = {}

    def progress(self, description: str, total: int) -> contextlib.AbstractContextManager[Any]:
        task = _NullTask()
        self.updates[description] = task.updates
        return contextlib.nullcontext(task)


def test_a_stage_that_fails_on_new_inputs_keeps_its_finished_results(tiny_project_ran) -> None:
    """A user error raised inside a stage (here: LoRA target modules the model lacks, found
    only once meta_init loads the model) deleted the stage's finished results before the
    check ran; with the override dropped, meta_init trained again. They are now set aside
    until the new run commits, and put back once the spec matches them again."""
    from subsetctl.errors import UserError
    from subsetctl.project import Project

    tiny_project = tiny_project_ran("meta_init")
    project = Project(tiny_project)
    adapter = project.stage_dir("meta_init") / "adapter" / "adapter_model.safetensors"
    before = adapter.read_bytes()
    try:
        run_project(tiny_project, until="meta_init", overrides=["model.lora.target_modules=[no_such_proj]"])
    except UserError as exc:
        assert "no_such_proj" in str(exc)
    else:
        raise AssertionError("the bad target module was accepted")
    assert (project.set_aside_dir("meta_init") / "manifest.json").is_file()
    statuses = {s.name: s for s in plan_project(tiny_project, until="meta_init")[2]}
    assert statuses["meta_init"].state == "up to date" and not statuses["meta_init"].will_run
    assert "puts them back" in statuses["meta_init"].reasons[0]
    results = {r["stage"]: r["action"] for r in run_project(tiny_project, until="meta_init")}
    assert results["meta_init"] == "up to date"  # put back, not trained again
    assert adapter.read_bytes() == before
    assert not project.set_aside_dir("meta_init").exists()
    # a change that finishes replaces the results for good: nothing is left aside
    reporter = _ProgressRecorder()
    run_project(tiny_project, until="meta_init", overrides=["meta_init.lr=0.002"], reporter=reporter)
    assert not project.set_aside_dir("meta_init").exists()
    assert adapter.read_bytes() != before
    # (and its progress names the validation loss the surrogate: "val=" beside a cross-entropy
    # "loss=" read as the measure finetune's progress shows under that name)
    fields = [set(f) for _, f in reporter.updates["meta_init"] if f]
    assert fields and all(f == {"loss", "val_surrogate"} for f in fields), fields


def test_set_aside_gradients_are_put_back_before_shards_start(tiny_project_ran, monkeypatch) -> None:
    """`plan` said gradients were up to date (set aside, to be put back); `run --shard`
    believed it, skipped the exclusive step and then failed on every retry with "inputs
    changed while shards were starting"."""
    from subsetctl.errors import UserError
    from subsetctl.project import Project
    from subsetctl.stages.gradients import GradientsStage

    tiny_project = tiny_project_ran("gradients")
    real = GradientsStage.run
    monkeypatch.setattr(GradientsStage, "run", lambda self, ctx: (_ for _ in ()).throw(UserError("failed inside")))
    try:
        run_project(tiny_project, until="gradients", overrides=["gradients.seed=99"])
    except UserError:
        pass
    monkeypatch.setattr(GradientsStage, "run", real)
    assert Project(tiny_project).set_aside_dir("gradients").is_dir()
    results = {r["stage"]: r["action"] for r in run_project(tiny_project, options={"shard": (0, 2)})}
    assert results["gradients"] == "up to date"
    assert not Project(tiny_project).set_aside_dir("gradients").exists()


def test_a_forced_run_drops_what_was_set_aside(tiny_project_ran, monkeypatch) -> None:
    """`run --force meta_init` interrupted, then `run`: the results a failed run had set
    aside were put back over the forced run's partial work."""
    from subsetctl.errors import UserError
    from subsetctl.project import Project
    from subsetctl.stages.meta_init import MetaInitStage

    tiny_project = tiny_project_ran("meta_init")
    try:
        run_project(tiny_project, until="meta_init", overrides=["model.lora.target_modules=[no_such_proj]"])
    except UserError:
        pass
    project = Project(tiny_project)
    assert project.set_aside_dir("meta_init").is_dir()

    def interrupted(self, ctx):
        (ctx.out_dir / "partial.txt").write_text("forced work")
        raise KeyboardInterrupt

    monkeypatch.setattr(MetaInitStage, "run", interrupted)
    try:
        run_project(tiny_project, until="meta_init", force=["meta_init"])
    except KeyboardInterrupt:
        pass
    assert not project.set_aside_dir("meta_init").exists()
    statuses = {s.name: s for s in plan_project(tiny_project, until="meta_init")[2]}
    assert not statuses["meta_init"].put_back and statuses["meta_init"].will_run
    assert (project.stage_dir("meta_init") / "partial.txt").is_file()


def _fail_meta_init_with(tiny_project: Path, overrides: list[str]) -> None:
    """A run whose new inputs meta_init refuses only once it loads the model (LoRA target
    modules the model lacks): meta_init's finished results are set aside."""
    from subsetctl.errors import UserError

    try:
        run_project(tiny_project, until="meta_init", overrides=[*overrides, "model.lora.target_modules=[no_such_proj]"])
    except UserError as exc:
        assert "no_such_proj" in str(exc)
    else:
        raise AssertionError("the bad target module was accepted")


def test_set_aside_results_whose_upstream_reruns_are_put_back_when_it_comes_out_as_before(tiny_project_ran) -> None:
    """A change that re-ran data, then failed in meta_init, was undone: `plan` said meta_init
    was "never run" although `run` re-runs data, finds its output as before and puts
    meta_init's set-aside results back (no training)."""
    from tinymodels import change_data_of

    from subsetctl.project import Project

    tiny_project = tiny_project_ran("meta_init")
    project = Project(tiny_project)
    adapter = project.stage_dir("meta_init") / "adapter" / "adapter_model.safetensors"
    before = adapter.read_bytes()
    original = change_data_of(tiny_project)
    _fail_meta_init_with(tiny_project, ["project.keep_previous=false"])  # data's results are not kept
    assert project.set_aside_dir("meta_init").is_dir()
    statuses = {s.name: s for s in plan_project(tiny_project, until="meta_init")[2]}
    assert statuses["meta_init"].state == "never run" and "other inputs" in statuses["meta_init"].reasons[0]
    (tiny_project / "subsetctl.yaml").write_text(original)  # the change undone: data re-runs to its earlier output
    statuses = {s.name: s for s in plan_project(tiny_project, until="meta_init")[2]}
    assert statuses["data"].will_run and not statuses["data"].conditional
    meta = statuses["meta_init"]
    assert meta.will_run and meta.conditional and meta.state == "stale", meta
    assert "puts them back" in meta.reasons[0] and "upstream data" in meta.reasons[0]
    results = {r["stage"]: r["action"] for r in run_project(tiny_project, until="meta_init")}
    assert results["data"] == "ran" and results["meta_init"] == "up to date"
    assert adapter.read_bytes() == before
    assert not (project.state_dir / ".set-aside").exists()  # no empty folder left behind


def test_the_report_shows_results_that_follow_from_set_aside_ones(tiny_project_ran) -> None:
    """After a failed change to meta_init, `subsetctl report` left out every result after it
    as outdated (meta_init had no manifest in its folder) although `plan` says all is up to
    date: the set-aside results count as the stage's until a run replaces them."""
    from subsetctl.project import Project
    from subsetctl.report.build import build_report, outdated_stages
    from subsetctl.report.terminal import load_report_data, outdated_note

    tiny_project = tiny_project_ran()
    full = load_report_data(tiny_project)["report"]
    _fail_meta_init_with(tiny_project, [])
    project = Project(tiny_project)
    assert project.read_manifest("meta_init") is None and project.set_aside_dir("meta_init").is_dir()
    assert outdated_stages(project) == []
    data = load_report_data(tiny_project)
    assert data["outdated"] == [] and data["stale"] == [] and data["not_run"] == []
    assert "meta_init" in data["stages"]
    assert outdated_note(data) is None
    rebuilt = build_report(project)
    assert rebuilt["strategies"] == full["strategies"] and rebuilt["test_metrics"] == full["test_metrics"]
    # with the failing change in force, the shown results are the earlier inputs': said so
    data = load_report_data(tiny_project, ["model.lora.target_modules=[no_such_proj]"])
    assert "meta_init" in data["stale"] and "meta_init" not in data["not_run"]


def test_the_report_reads_a_set_aside_stages_own_results(tiny_project_ran, monkeypatch) -> None:
    """A failed re-run of finetune set its results aside: the report read its (now empty)
    folder and lost the adapters' paths; they come from the set-aside folder."""
    from subsetctl.errors import UserError
    from subsetctl.project import Project
    from subsetctl.report.build import build_report
    from subsetctl.stages.finetune import FinetuneStage

    tiny_project = tiny_project_ran()
    project = Project(tiny_project)
    monkeypatch.setattr(FinetuneStage, "run", lambda self, ctx: (_ for _ in ()).throw(UserError("failed inside")))
    try:
        run_project(tiny_project, overrides=["finetune.steps=3"])
    except UserError:
        pass
    assert project.read_manifest("finetune") is None and project.set_aside_dir("finetune").is_dir()
    adapters = build_report(project)["adapters"]
    paths = [path for runs in adapters.values() for path in runs]
    assert paths and all((tiny_project / path).is_dir() for path in paths), paths
    # also when the stage folder holds a damaged manifest (no commit): not report.json's stage-folder paths
    from subsetctl.report.terminal import load_report_data

    (project.stage_dir("finetune") / "manifest.json").write_text("{damaged")
    shown = load_report_data(tiny_project)["report"]["adapters"]
    shown_paths = [path for runs in shown.values() for path in runs]
    assert shown_paths and all((tiny_project / path).is_dir() for path in shown_paths), shown_paths


def test_adding_a_source_loads_only_that_one(tiny_project_ran) -> None:
    """The data stage re-prepared every source when one was added: the others come from
    the results it replaces (set aside while it runs); `--force data` prepares all."""
    import yaml

    from subsetctl.project import Project

    tiny_project = tiny_project_ran("data")
    spec_path = tiny_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["sources"].append({"name": "c", "loader": {"type": "jsonl", "path": "a.jsonl"}, "max_examples": 5})
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(tiny_project, until="data")
    summary = Project(tiny_project).read_manifest("data")["summary"]
    assert summary["reused"] == ["target", "a", "b", "bad"] and "c" in summary["counts"]
    run_project(tiny_project, until="data", force=["data"])
    assert Project(tiny_project).read_manifest("data")["summary"]["reused"] == []


def test_sources_are_not_reused_from_damaged_results(tiny_project_ran) -> None:
    import yaml

    from subsetctl.project import Project

    tiny_project = tiny_project_ran("data")
    run_project(tiny_project, until="data", overrides=["project.seed=5"])  # the seed-0 data kept as previous
    previous = Project(tiny_project).previous_sets("data")[0]
    arrow = next((previous / "a").rglob("*.arrow"))
    damaged = bytearray(arrow.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    arrow.write_bytes(bytes(damaged))
    spec_path = tiny_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["sources"].append({"name": "c", "loader": {"type": "jsonl", "path": "a.jsonl"}, "max_examples": 5})
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(tiny_project, until="data")  # seed 0 again, with a new source: the previous data is damaged
    assert Project(tiny_project).read_manifest("data")["summary"]["reused"] == []


def test_the_terminal_report_names_set_aside_adapters_and_checks_switched_off_settings(tiny_project_ran,
                                                                                        monkeypatch) -> None:
    """With finetune's results set aside by a failed run, `subsetctl report` took the adapter
    paths from report.json (the emptied stage folder), and, finetune switched off with its
    settings changed, showed those results without saying they no longer match the spec."""
    from subsetctl.errors import UserError
    from subsetctl.report.terminal import load_report_data
    from subsetctl.stages.finetune import FinetuneStage

    tiny_project = tiny_project_ran()
    monkeypatch.setattr(FinetuneStage, "run", lambda self, ctx: (_ for _ in ()).throw(UserError("failed inside")))
    try:
        run_project(tiny_project, overrides=["finetune.steps=3"])
    except UserError:
        pass
    data = load_report_data(tiny_project)
    paths = [path for runs in data["report"]["adapters"].values() for path in runs]
    assert paths and all((tiny_project / path).is_dir() for path in paths), paths
    off = ["finetune.enabled=false", "finetune.steps=7"]
    assert load_report_data(tiny_project, off)["switched_off_moved_past"] == ["finetune"]
    statuses = {s.name: s for s in plan_project(tiny_project, off)[2]}
    assert any("no longer match" in r for r in statuses["finetune"].reasons), statuses["finetune"].reasons


def test_a_plugin_replacing_a_built_in_loader_makes_the_data_stale_when_it_changes(tiny_project: Path,
                                                                                    monkeypatch) -> None:
    import yaml

    from subsetctl.registry import LOADERS

    LOADERS.get("jsonl")
    monkeypatch.setitem(LOADERS._entries, "jsonl", LOADERS._entries["jsonl"])  # the built-in back afterwards
    plugin = tiny_project / "jsonl_override.py"
    plugin.write_text("from subsetctl.registry import LOADERS\nfrom subsetctl.data.loaders import load_jsonl\n"
                      "@LOADERS.register('jsonl')\ndef my_jsonl(options, ctx):\n    return load_jsonl(options, ctx)\n"
                      "VERSION = 1\n")
    monkeypatch.syspath_prepend(str(tiny_project))
    spec_path = tiny_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["plugins"] = ["jsonl_override:VERSION"]
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(tiny_project, until="data")
    assert not {s.name: s for s in plan_project(tiny_project, until="data")[2]}["data"].will_run
    plugin.write_text(plugin.read_text().replace("VERSION = 1", "VERSION = 2"))
    monkeypatch.delitem(sys.modules, "jsonl_override")  # as a new process loads it
    status = {s.name: s for s in plan_project(tiny_project, until="data")[2]}["data"]
    assert status.will_run and "the code of the loader jsonl plugin" in " ".join(status.reasons), status.reasons


def test_plan_force_does_not_call_a_forced_stage_conditional(tiny_project_ran) -> None:
    from tinymodels import change_data_of

    tiny_project = tiny_project_ran("meta_init")
    original = change_data_of(tiny_project)
    _fail_meta_init_with(tiny_project, ["project.keep_previous=false"])
    (tiny_project / "subsetctl.yaml").write_text(original)
    assert {s.name: s for s in plan_project(tiny_project, until="meta_init")[2]}["meta_init"].conditional
    forced = {s.name: s for s in plan_project(tiny_project, until="meta_init", force=["meta_init"])[2]}
    assert forced["meta_init"].will_run and not forced["meta_init"].conditional


def test_the_report_follows_the_overrides_of_results_that_came_back_to_the_same_output(tiny_project_ran) -> None:
    """Results replaced or put back with the same output digests re-run nothing downstream,
    but the report's "made with command-line overrides" line must still follow them."""
    tiny_project = tiny_project_ran()
    manifest_path = tiny_project / ".subsetctl" / "evaluate" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["overrides"] == []
    manifest["overrides"] = ["evaluate.max_new_tokens=16"]  # as if made by a run with it, to the same results
    manifest["inputs"]["slice"]["evaluate"]["max_new_tokens"] = 16  # (which records the override's value)
    manifest_path.write_text(json.dumps(manifest))
    (report,) = [s for s in plan_project(tiny_project)[2] if s.name == "report"]
    assert report.will_run
    run_project(tiny_project)
    assert json.loads((tiny_project / "report.json").read_text())["overrides"] == {
        "evaluate.max_new_tokens=16": ["evaluate"]}
    manifest["overrides"] = []  # a plain run made them again
    manifest_path.write_text(json.dumps(manifest))
    results = run_project(tiny_project)
    assert [r["stage"] for r in results if r["action"] == "ran"] == ["report"]
    assert "overrides" not in json.loads((tiny_project / "report.json").read_text())


def test_cached_runs_follow_the_model_files_not_their_folder(tiny_project_ran, tiny_llama: Path,
                                                              monkeypatch) -> None:
    """Fine-tunes, verify runs, test results and real-fine-tune estimates are cached by the
    model folder's files: moving the folder keeps them all. Entries an earlier subsetctl
    kept under the folder's path are found too, and moved to today's key."""
    import shutil

    from subsetctl.modeling.resolve import model_fingerprint_inputs
    from subsetctl.spec import fingerprint_dump
    from subsetctl.stages import common
    from subsetctl.stages import evaluate as evaluate_stage
    from subsetctl.stages.verify import RunCache

    def summary(stage: str) -> dict:
        return json.loads((tiny_project / ".subsetctl" / stage / "manifest.json").read_text())["summary"]

    def run_cache_as_before(self: RunCache, ctx) -> None:  # verify's key had the path and not the files
        init(self, ctx)
        self.base = {**{k: v for k, v in self.base.items() if k != "model_files"},
                     "model": fingerprint_dump(ctx.spec)["model"]}

    init = RunCache.__init__
    tiny_project = tiny_project_ran("gradients")  # a copy (the same model files elsewhere): no cached runs yet
    shutil.copytree(tiny_llama, tiny_project / "models" / "base")
    overrides = ["model.source=models/base", "verify.enabled=true", "verify.k=4", "verify.steps=1",
                 "verify.kinds=[ce]", "estimate.estimator=true_finetune",
                 "search.strategies=[{name: forward, params: {max_steps: 1}}]"]
    def model_key_as_before(ctx) -> tuple[dict, list]:  # the model's path and files
        return {"model": fingerprint_dump(ctx.spec)["model"],
                **model_fingerprint_inputs(ctx.spec.model.source, ctx.project.root)}, []

    def evaluate_keys_as_before(ctx, runs: list[str], **kw) -> dict[str, list[str]]:  # with the adapter's config
        return {run: keys[1:] for run, keys in result_cache_keys(ctx, runs, **kw).items()}

    result_cache_keys = evaluate_stage.result_cache_keys
    with monkeypatch.context() as patched:  # an earlier subsetctl
        patched.setattr(common, "model_key", model_key_as_before)
        patched.setattr(RunCache, "__init__", run_cache_as_before)
        patched.setattr(evaluate_stage, "result_cache_keys", evaluate_keys_as_before)
        run_project(tiny_project, overrides)
    runs, estimated = summary("finetune")["runs"], summary("search")["computed_now"]
    assert summary("finetune")["trained_now"] == runs and summary("verify")["reused"] == 0 and estimated >= 4

    # stages re-run for other reasons find what the earlier version kept
    run_project(tiny_project, [*overrides, "finetune.seeds=2", "verify.repeats=2", "gradients.d=8"])
    assert (summary("finetune")["reused_runs"], summary("finetune")["trained_now"]) == (runs, runs)
    assert summary("evaluate")["reused"] == runs and summary("verify")["reused"] == 4
    assert summary("search")["computed_now"] == 0 and summary("search")["reused"] >= estimated

    # moved, and re-run for settings the cached runs do not depend on (and a third verify repeat):
    # all taken from the caches
    shutil.move(tiny_project / "models" / "base", tiny_project / "models" / "moved")
    ran = [r["stage"] for r in run_project(tiny_project, [
        *overrides, "model.source=models/moved", "finetune.seeds=2", "finetune.baselines=[all]",
        "verify.repeats=3", "gradients.d=4"]) if r["action"] == "ran"]
    assert {"finetune", "evaluate", "verify", "search"} <= set(ran) and "meta_init" not in ran
    assert summary("finetune")["trained_now"] == 0 and summary("finetune")["reused_runs"] > 0
    assert summary("evaluate")["reused"] == summary("finetune")["runs"] and summary("verify")["reused"] == 8  # of 12
    assert summary("search")["computed_now"] == 0


def test_plan_predicts_the_report_from_the_results_run_will_put_back(tiny_project_ran) -> None:
    """The report stage's inputs include the overrides its upstream results were made with;
    `plan` read them before `run` puts kept results back, and so said the report would
    run when `run` then skipped it (and the other way round)."""
    def predicted_and_ran(overrides: list[str]) -> tuple[bool, bool]:
        report = {s.name: s for s in plan_project(tiny_project, overrides)[2]}["report"]
        ran = {r["stage"] for r in run_project(tiny_project, overrides) if r["action"] == "ran"}
        return report.will_run, "report" in ran

    tiny_project = tiny_project_ran()
    run_project(tiny_project, ["search.final=exhaustive"], until="search")  # search's results: made with it
    assert predicted_and_ran([]) == (False, False)  # run puts back search: the report stays as it was
    run_project(tiny_project, ["search.final=exhaustive"])  # and now the report says it was made with it
    assert predicted_and_ran([]) == (True, True)  # putting back search takes that line out of the report


def test_reordering_the_sources_gives_what_a_fresh_project_with_that_order_gives(
    tiny_project_ran, tmp_path_factory
) -> None:
    """The sources' order is meta_init's multitask pool and the order a fine-tune pools
    their rows in; a reordered spec kept the old order's theta*, gradients and search
    (the data stage's output ignored the order) and took fine-tunes of the old order from
    the cache (keyed by the sorted subset)."""

    import yaml

    tiny_project = tiny_project_ran()
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["sources"] = spec["sources"][::-1]
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    data = {s.name: s for s in plan_project(tiny_project)[2]}["data"]
    assert data.reasons[0].startswith("spec changed: sources: reordered (their order is meta_init's multitask pool")
    results = run_project(tiny_project)
    assert {"meta_init", "gradients", "search", "finetune"} <= {r["stage"] for r in results if r["action"] == "ran"}
    assert _report_numbers(tiny_project) == _report_numbers(_fresh_run_of(tiny_project, tmp_path_factory))


def _fresh_run_of(project: Path, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A new project with ``project``'s spec and data files, run from scratch."""
    import shutil

    fresh = tmp_path_factory.mktemp("fresh")
    for item in project.iterdir():
        if item.name == "subsetctl.yaml" or item.suffix == ".jsonl":
            shutil.copy(item, fresh / item.name)
    run_project(fresh)
    return fresh


def _report_numbers(project: Path) -> dict:
    """What a project's results are: sources in order, strategies' selections and estimates, test losses."""
    report = json.loads((project / "report.json").read_text())
    return {"sources": report["sources"], "strategies": report["strategies"],
            "test": {k: v["loss_mean"] for k, v in report["test_metrics"].items()}}


def test_fine_tunes_an_earlier_version_keyed_by_the_sorted_selection_are_still_found(
    tiny_project: Path, monkeypatch, tmp_path_factory, tiny_project_ran
) -> None:
    """Earlier versions keyed a cached fine-tune by its sorted selection; with sources not
    listed alphabetically every multi-source fine-tune was trained again after the key
    began to follow the training order. Such an entry is taken when its record says it
    was trained in this order, and only then: after the sources are put in alphabetical
    order, the old key is the new one, and its fine-tune (of the old order) was reused."""
    import shutil

    import yaml

    from subsetctl.stages.finetune import AdapterCache

    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["sources"] = spec["sources"][::-1]  # bad, b, a: selections are not sorted
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    entry = AdapterCache._entry

    def sorted_key(self, subset, seed, base=None, keyed=None, test_splits=False):  # type: ignore[no-untyped-def]
        # (those versions keyed it by the test splits' files too)
        return entry(self, subset, seed, base, sorted(subset) if keyed is None else keyed, test_splits=True)

    with monkeypatch.context() as earlier:
        earlier.setattr(AdapterCache, "_entry", sorted_key)
        run_project(tiny_project)
    summary = json.loads((tiny_project / ".subsetctl" / "finetune" / "manifest.json").read_text())["summary"]
    runs = summary["runs"]
    selections = json.loads((tiny_project / ".subsetctl" / "finetune" / "labels.json").read_text())["selections"]
    assert any(len(s) > 1 and s != sorted(s) for s in selections.values())
    reordered = tmp_path_factory.mktemp("reordered") / "project"
    shutil.copytree(tiny_project, reordered)
    run_project(tiny_project, ["finetune.seeds=2"])
    summary = json.loads((tiny_project / ".subsetctl" / "finetune" / "manifest.json").read_text())["summary"]
    assert (summary["reused_runs"], summary["trained_now"]) == (runs, runs)
    spec["sources"] = spec["sources"][::-1]  # a, b, bad: every selection's key is the old sorted one
    (reordered / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(reordered)
    # the tiny project's own order and files: a fresh run of them is a copy of the shared run
    fresh = tiny_project_ran(into=tmp_path_factory.mktemp("fresh"))
    assert yaml.safe_load((fresh / "subsetctl.yaml").read_text()) == spec
    assert all((fresh / f.name).read_bytes() == f.read_bytes() for f in reordered.glob("*.jsonl"))
    assert _report_numbers(reordered) == _report_numbers(fresh)


def _forced_from_a_moved_model_folder(project: Path, model: Path, stage: str,
                                      overrides: tuple[str, ...] = ()) -> tuple[str, str, list[str]]:
    """Run the project (a copy of the shared run on ``model``: its model stages are up to
    date) on a copy of ``model`` inside it, move that folder, then force ``stage`` from the
    moved folder: the stage's output digest before and after, and the stages the forced
    run ran."""
    import shutil

    shutil.copytree(model, project / "models" / "base")
    run_project(project, ["model.source=models/base", *overrides])
    manifest_path = project / ".subsetctl" / stage / "manifest.json"
    before = json.loads(manifest_path.read_text())["output_digest"]
    shutil.move(project / "models" / "base", project / "models" / "moved")
    ran = [r["stage"] for r in run_project(project, ["model.source=models/moved", *overrides], force=[stage])
           if r["action"] == "ran"]
    return before, json.loads(manifest_path.read_text())["output_digest"], ran


def test_theta_star_trained_again_from_a_moved_model_folder_leaves_what_follows_up_to_date(
    tiny_project_ran, tiny_llama: Path
) -> None:
    """peft writes the base model's absolute path into the adapter's config and card: θ*
    trained again with the same weights from a moved folder had another output digest,
    and the gradients, verify's fine-tunes and everything after them ran again."""
    verify = ("verify.enabled=true", "verify.k=4", "verify.steps=1", "verify.kinds=[ce]")
    tiny_project = tiny_project_ran()
    before, after, ran = _forced_from_a_moved_model_folder(tiny_project, tiny_llama, "meta_init", verify)
    assert "models/moved" in (tiny_project / ".subsetctl" / "meta_init" / "adapter" / "adapter_config.json").read_text()
    # (the report is written again: the overrides its results were made with changed)
    assert after == before and ran == ["meta_init", "report"]


def test_gradients_computed_again_from_a_moved_model_folder_leave_what_follows_up_to_date(
    tiny_project_ran, tiny_llama: Path
) -> None:
    """The gradient store's info.json named the model folder's path: gradients computed
    again from a moved folder had another output digest, so the estimates, the search and
    everything after them ran again."""
    tiny_project = tiny_project_ran()
    before, after, ran = _forced_from_a_moved_model_folder(tiny_project, tiny_llama, "gradients")
    info = (tiny_project / ".subsetctl" / "gradients" / "store" / "info.json").read_text()
    assert "models/" not in info and "known by its files" in info
    assert after == before and ran == ["gradients", "report"]


def test_finetune_trained_again_from_a_moved_model_folder_leaves_evaluate_up_to_date(
    tiny_project_ran, tiny_llama: Path
) -> None:
    """peft writes the base model's absolute path into every fine-tuned adapter's config:
    the same fine-tunes from a moved model folder (or a project folder elsewhere, with the
    model inside it) had another finetune output digest, and evaluate ran again."""
    import shutil

    tiny_project = tiny_project_ran()
    before, after, ran = _forced_from_a_moved_model_folder(tiny_project, tiny_llama, "finetune")
    configs = (tiny_project / ".subsetctl" / "finetune" / "runs").glob("*/adapter/adapter_config.json")
    assert all("models/moved" in c.read_text() for c in configs)
    assert after == before and ran == ["finetune", "report"]
    # evaluate's cache is keyed by the adapters' weights, not their configs: its results are found again
    shutil.rmtree(tiny_project / ".subsetctl" / "evaluate")
    run_project(tiny_project, ["model.source=models/moved"])
    summary = json.loads((tiny_project / ".subsetctl" / "evaluate" / "manifest.json").read_text())["summary"]
    runs = json.loads((tiny_project / ".subsetctl" / "finetune" / "manifest.json").read_text())["summary"]["runs"]
    assert summary["reused"] == runs


def test_plan_counts_a_moved_model_folder_as_unchanged_while_an_upstream_stage_re_runs(
    tiny_project_ran, tiny_llama: Path
) -> None:
    """A project whose model folder moved (its files the same) is up to date, but once the
    data stage re-ran too (`--force data`, or a data file moved with the model), `plan`
    gave the model stages "spec changed: model.source" and said they would run for certain,
    while `run` found them unchanged and skipped them."""
    import shutil

    tiny_project = tiny_project_ran()  # a copy: its model stages are up to date on these files
    shutil.copytree(tiny_llama, tiny_project / "models" / "base")
    run_project(tiny_project, ["model.source=models/base"])
    shutil.move(tiny_project / "models" / "base", tiny_project / "models" / "moved")
    moved = ["model.source=models/moved"]
    statuses = {s.name: s for s in plan_project(tiny_project, moved, force=["data"])[2]}
    for stage in ("meta_init", "gradients", "finetune", "evaluate"):
        assert statuses[stage].conditional, (stage, statuses[stage].reasons)
        assert not any("model.source" in reason for reason in statuses[stage].reasons)
    ran = [r["stage"] for r in run_project(tiny_project, moved, force=["data"]) if r["action"] == "ran"]
    assert ran == ["data", "report"]  # (the report, for the data stage's new time)


#: `tiny_project_ran`'s run up to meta_init from a copy of the tiny model in the project's
#: ``models/base`` (``model.source: models/base``, relative, so that a project copied
#: without that folder has the spec it had)
_META_INIT_FROM_MODELS_BASE = {"overrides": ("model.source=models/base",), "model_at": "models/base"}


def test_plan_says_the_model_folder_is_gone_when_a_project_is_copied_without_it(tiny_project_ran) -> None:
    """A project copied or moved without its model folder (``model.source: models/base``,
    relative, so the spec is as it was): `plan` gave meta_init only "inputs changed"."""
    import shutil

    tiny_project = tiny_project_ran("meta_init", **_META_INIT_FROM_MODELS_BASE)
    shutil.rmtree(tiny_project / "models" / "base")
    statuses = {s.name: s for s in plan_project(tiny_project, ["model.source=models/base"])[2]}
    reasons = " ".join(statuses["meta_init"].reasons)
    assert "inputs changed" not in reasons
    assert f"{tiny_project.resolve() / 'models' / 'base'} holds no model (model.source: 'models/base')" in reasons


def test_run_refuses_to_fetch_a_gone_model_folders_path_from_the_hub(tiny_project_ran) -> None:
    """``models/base`` is also an 'org/name' hub id: a project copied without its model
    folder went on to meta_init and failed with a hub error that never named the folder
    (online, it would train from whatever the hub holds under that name). `run` now stops
    first, naming the folder, and the stage's results stay."""
    import shutil

    import pytest

    from subsetctl.errors import UserError

    tiny_project = tiny_project_ran("meta_init", **_META_INIT_FROM_MODELS_BASE)
    manifest = (tiny_project / ".subsetctl" / "meta_init" / "manifest.json").read_text()
    shutil.rmtree(tiny_project / "models" / "base")
    with pytest.raises(UserError) as caught:
        run_project(tiny_project, ["model.source=models/base"], until="meta_init")
    message = str(caught.value)
    assert "model.source: meta_init's results were made from a local model folder" in message
    assert str(tiny_project.resolve() / "models" / "base") in message and "--force meta_init" in message
    assert (tiny_project / ".subsetctl" / "meta_init" / "manifest.json").read_text() == manifest


def test_forcing_a_stage_that_does_not_load_the_model_still_refuses_a_gone_model_folders_hub_id(
    tiny_project_ran
) -> None:
    """Any --force skipped the refusal: `run --force data` on a project copied without its
    model folder went on to fetch 'models/base' from the hub for meta_init, as before the
    refusal. Only forcing a stage that loads the model says the hub is meant."""
    import shutil

    import pytest

    from subsetctl.errors import UserError

    tiny_project = tiny_project_ran("meta_init", **_META_INIT_FROM_MODELS_BASE)
    shutil.rmtree(tiny_project / "models" / "base")
    with pytest.raises(UserError) as caught:
        run_project(tiny_project, ["model.source=models/base"], until="meta_init", force="data")
    assert "meta_init's results were made from a local model folder" in str(caught.value)


def test_switching_model_source_from_a_local_folder_to_a_hub_id_is_no_gone_folder(tiny_project_ran) -> None:
    """model.source changed on purpose from a local folder (still there) to a hub id: `plan`
    said "the model folder it was made from is not there any more: <project>/org/other holds
    no model", and `run` refused the hub id as a gone folder's path."""
    import pytest

    from subsetctl.errors import UserError

    tiny_project = tiny_project_ran("meta_init", **_META_INIT_FROM_MODELS_BASE)
    statuses = {s.name: s for s in plan_project(tiny_project, ["model.source=org/other"], until="meta_init")[2]}
    reasons = " ".join(statuses["meta_init"].reasons)
    assert "not there any more" not in reasons and "spec changed: model.source" in reasons, reasons
    with pytest.raises(UserError) as caught:  # offline: the hub's own error
        run_project(tiny_project, ["model.source=org/other"], until="meta_init")
    assert "made from a local model folder" not in str(caught.value)


def test_plan_says_previous_results_go_back_when_an_upstream_stage_re_runs_with_the_same_output(
    tiny_project_ran
) -> None:
    """gradients.d=32 tried, then the spec's d again after a data file moved (another path
    in the spec, the same rows): `run` re-runs data and puts the previous gradients back,
    but `plan` said the gradients would run for certain."""
    import shutil

    tiny_project = tiny_project_ran("gradients")
    run_project(tiny_project, ["gradients.d=32"], until="gradients")
    (tiny_project / "moved").mkdir()
    shutil.move(tiny_project / "b.jsonl", tiny_project / "moved" / "b.jsonl")
    moved = ["sources[1].loader.path=moved/b.jsonl"]
    statuses = {s.name: s for s in plan_project(tiny_project, moved, until="gradients")[2]}
    assert statuses["data"].will_run and not statuses["data"].conditional
    gradients = statuses["gradients"]
    assert gradients.conditional and "`run` then puts them back" in gradients.reasons[-1], gradients.reasons
    results = {r["stage"]: r for r in run_project(tiny_project, moved, until="gradients")}
    assert results["data"]["action"] == "ran" and results["gradients"].get("put_back")


def test_a_report_built_from_the_stages_marks_switched_off_stages_too(tiny_project_ran) -> None:
    """`report --format markdown` without a current report.md renders the report built from
    the stages: its time table marks a switched-off stage as report.md's does."""
    from subsetctl.report.markdown import render_markdown
    from subsetctl.report.terminal import load_report_data

    tiny_project = tiny_project_ran()
    (tiny_project / "subsetctl.yaml").write_text(
        (tiny_project / "subsetctl.yaml").read_text().replace("finetune:\n", "finetune:\n  enabled: false\n"))
    (tiny_project / "report.json").unlink()  # not current: the report is built from the stages
    data = load_report_data(tiny_project)
    assert data["switched_off"] == ["finetune", "evaluate"]
    assert data["report"]["stages"]["finetune"].get("switched_off")
    assert "| finetune (switched off; an earlier run's) |" in render_markdown(data["report"], {})


def test_gradients_stopped_partway_resume_from_a_moved_model_folder(tiny_project: Path, tiny_llama: Path) -> None:
    """The work marker held only the inputs' fingerprint, which holds the model folder's
    path: gradients stopped partway (Ctrl-C, a crash) and resumed after the model folder
    moved were computed from the first row again, though the model's files are the same."""
    import shutil

    import numpy as np

    shutil.copytree(tiny_llama, tiny_project / "models" / "base")
    run_project(tiny_project, ["model.source=models/base"], until="gradients")
    state = tiny_project / ".subsetctl" / "gradients"
    complete = np.load(state / "store" / "features.npy").copy()
    written = np.load(state / "store" / "written.npy", mmap_mode="r+")
    half = len(written) // 2
    written[half:] = False  # stopped halfway
    written.flush()
    del written
    features = np.load(state / "store" / "features.npy", mmap_mode="r+")
    features[0] = 7.0  # a row kept is never computed again: this stays
    features.flush()
    del features
    (state / "manifest.json").unlink()  # as a Ctrl-C leaves it: work.json stays
    shutil.move(tiny_project / "models" / "base", tiny_project / "models" / "moved")
    gradients = {s.name: s for s in plan_project(tiny_project, ["model.source=models/moved"])[2]}["gradients"]
    assert gradients.state == "unfinished", gradients.reasons
    ran = [r["stage"] for r in run_project(tiny_project, ["model.source=models/moved"], until="gradients")
           if r["action"] == "ran"]
    assert ran == ["gradients"]  # meta_init is up to date: the same files
    resumed = np.load(state / "store" / "features.npy")
    assert (resumed[0] == 7.0).all()
    np.testing.assert_allclose(resumed[1:], complete[1:], atol=1e-6)
    marker = json.loads((state / "work.json").read_text())
    assert marker["inputs"]["slice"]["model"]["source"] == "models/moved"


def test_a_shard_finished_before_the_model_folder_moved_is_kept(tiny_project: Path, tiny_llama: Path) -> None:
    """Shard runs ready the gradients folder for their inputs: a shard finished before the
    model folder moved was discarded by the next shard run, from the moved folder."""
    import shutil

    import numpy as np

    shutil.copytree(tiny_llama, tiny_project / "models" / "base")
    run_project(tiny_project, ["model.source=models/base"], options={"shard": (0, 2)})
    shard = tiny_project / ".subsetctl" / "gradients" / "shards" / "shard-0-of-2"
    features = np.load(shard / "features.npy", mmap_mode="r+")
    features[0] = 7.0  # a shard kept is never computed again: this reaches the merged store
    features.flush()
    del features
    shutil.move(tiny_project / "models" / "base", tiny_project / "models" / "moved")
    run_project(tiny_project, ["model.source=models/moved"], options={"shard": (1, 2)})
    run_project(tiny_project, ["model.source=models/moved"], until="gradients")
    store = np.load(tiny_project / ".subsetctl" / "gradients" / "store" / "features.npy")
    assert (store == 7.0).all(axis=1).sum() == 1


def test_plan_says_an_upstream_stage_was_switched_off_or_on_not_that_it_changed(tiny_project_ran) -> None:
    """finetune switched off: evaluate's output no longer counts for the report, which
    `plan` said as "upstream evaluate changed" (it did not: it stopped running)."""
    tiny_project = tiny_project_ran()
    statuses = {s.name: s for s in plan_project(tiny_project, overrides=["finetune.enabled=false"])[2]}
    assert statuses["report"].will_run and statuses["report"].reasons == ["upstream evaluate switched off in the spec"]
    run_project(tiny_project, overrides=["finetune.enabled=false"])
    statuses = {s.name: s for s in plan_project(tiny_project)[2]}
    assert statuses["report"].will_run and statuses["report"].reasons == ["upstream evaluate switched on in the spec"]


def test_plan_does_not_call_the_order_of_the_selections_an_input_file(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran()
    statuses = {s.name: s for s in plan_project(tiny_project, overrides=['finetune.baselines=["target_only","all"]'])[2]}
    reasons = statuses["report"].reasons
    assert "the order of the search strategies and baselines in the spec changed" in reasons, reasons
    assert not any("input files" in reason for reason in reasons), reasons


def test_the_report_names_the_base_model_the_adapters_load_onto_with_plain_peft(tiny_project_ran,
                                                                                tiny_llama: Path) -> None:
    """report.md said `peft.PeftModel.from_pretrained(base_model, folder)` but never which
    base model (a packaged model's name is no folder `from_pretrained` takes; a moved
    project's adapter_config.json names where the model was). report.json's
    adapter_base_model names it; loaded so, outside subsetctl, the final pick's adapter
    gives the evaluate stage's test loss."""
    import torch
    from datasets import load_from_disk
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tiny_project = tiny_project_ran()
    report = json.loads((tiny_project / "report.json").read_text())
    assert report["adapter_base_model"] == str(tiny_llama)
    assert f"The base model is `{tiny_llama}`" in (tiny_project / "report.md").read_text()
    tok = AutoTokenizer.from_pretrained(report["adapter_base_model"])
    base = AutoModelForCausalLM.from_pretrained(report["adapter_base_model"])
    model = PeftModel.from_pretrained(base, str(tiny_project / report["adapters"][report["final"]][0])).eval()
    losses = []
    for row in load_from_disk(str(tiny_project / ".subsetctl" / "data" / "target" / "test")):
        prompt = tok(row["prompt"] + "\n", add_special_tokens=False)["input_ids"]  # no chat template, no BOS
        ids = torch.tensor([prompt + tok(row["response"], add_special_tokens=False)["input_ids"]
                            + [tok.eos_token_id]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        losses.append(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")[len(prompt) - 1:].mean())
    expected = report["test_metrics"][report["final"]]["loss_mean"]
    assert abs(float(torch.stack(losses).mean()) - expected) < 1e-4


def test_adapters_name_the_base_model_as_the_spec_does_not_where_this_machine_had_it(
        tiny_project: Path, tiny_llama: Path, monkeypatch) -> None:
    """adapter_config.json named the base model's absolute path (a local folder's, or a
    packaged model's converted copy in the user cache), so a copied project's adapters named
    a folder of the machine that trained them. They name model.source as the spec does (a
    folder relative to the project, a packaged name); report.json keeps the folder read."""
    import shutil

    import yaml
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from subsetctl.modeling.packaged import PackagedModel
    from subsetctl.registry import PACKAGED_MODELS

    shutil.copytree(tiny_llama, tiny_project / "models" / "tiny")
    spec_file = tiny_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["model"]["source"] = "models/tiny"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    run_project(tiny_project)
    report = json.loads((tiny_project / "report.json").read_text())
    assert report["adapter_base_model"] == "models/tiny"
    assert "adapter_base_model_path" not in report  # the folder it names, in the project: no absolute path
    state = tiny_project / ".subsetctl"
    for config in [state / "meta_init" / "adapter" / "adapter_config.json",
                   *(state / "finetune" / "runs").glob("*/adapter/adapter_config.json")]:
        assert json.loads(config.read_text())["base_model_name_or_path"] == "models/tiny", config
    card = (state / "meta_init" / "adapter" / "README.md").read_text()  # peft's model card says so too
    assert 'base_model: "models/tiny"' in card and str(tiny_project) not in card, card[:200]
    monkeypatch.chdir(tiny_project)  # plain peft, from the project folder, as the adapter names it
    base = AutoModelForCausalLM.from_pretrained(json.loads(config.read_text())["base_model_name_or_path"])
    PeftModel.from_pretrained(base, str(config.parent))

    (tiny_project / "models" / "tiny").rename(tiny_project / "models" / "moved")  # the same files: θ* kept
    run_project(tiny_project, ["model.source=models/moved"])  # nothing re-runs: the report names it where it is now
    assert json.loads((tiny_project / "report.json").read_text())["adapter_base_model"] == "models/moved"
    assert "re-ran nothing and is named as the spec names it now, which the adapters' files may not" in \
        (tiny_project / "report.md").read_text()
    assert all(json.loads(config.read_text())["base_model_name_or_path"] == "models/tiny"  # (as they were trained)
               for config in (state / "finetune" / "runs").glob("*/adapter/adapter_config.json"))
    run_project(tiny_project, ["model.source=models/moved", "finetune.seeds=2"])  # seed 0's runs from the cache
    assert json.loads((tiny_project / "report.json").read_text())["stages"]["finetune"]["summary"]["reused_runs"]
    for config in (state / "finetune" / "runs").glob("*/adapter/adapter_config.json"):
        assert json.loads(config.read_text())["base_model_name_or_path"] == "models/moved", config

    PACKAGED_MODELS.add("tiny-packaged", PackagedModel(
        name="tiny-packaged", description="a tiny Llama", architecture="llama", kinds=("causal-lm",),
        lora_targets=("q_proj", "v_proj"), pypi="tiny-packaged", locate=lambda cache, progress: tiny_llama),
        "a tiny Llama")
    run_project(tiny_project, ["model.source=tiny-packaged"])
    report = json.loads((tiny_project / "report.json").read_text())
    assert report["adapter_base_model"] == "tiny-packaged"
    assert report["adapter_base_model_path"] == str(tiny_llama)
    assert f"the run read it from `{tiny_llama}`" in (tiny_project / "report.md").read_text()
    for config in (state / "finetune" / "runs").glob("*/adapter/adapter_config.json"):
        assert json.loads(config.read_text())["base_model_name_or_path"] == "tiny-packaged", config


@pytest.mark.parametrize("source", ["model", "../shared/model"])
def test_a_copied_project_reports_its_own_model_folder_not_the_one_it_was_copied_from(
        tmp_path: Path, jsonl_project: Path, tiny_llama: Path, source: str) -> None:
    """`cp -r A B` (the model folder inside A, or next to it and copied too), A deleted:
    B re-ran nothing, and its report named A's model folder (meta_init's summary and
    `adapter_base_model_path`: the absolute folders the runs recorded), which B never read
    and which is gone. It names B's, as A's report named A's."""
    import yaml
    from tinymodels import tiny_project_spec

    from subsetctl.project import Project
    from subsetctl.report.build import build_report

    first = tmp_path / "A" / "proj"
    first.mkdir(parents=True)
    for data in jsonl_project.glob("*.jsonl"):  # (conftest's data files, written in tmp_path)
        shutil.copy(data, first)
    shutil.copytree(tiny_llama, (first / source).resolve())
    (first / "subsetctl.yaml").write_text(yaml.safe_dump(tiny_project_spec(source), sort_keys=False))
    run_project(first, until="finetune")
    shutil.copytree(tmp_path / "A", tmp_path / "B")
    shutil.rmtree(tmp_path / "A")
    report = build_report(Project(tmp_path / "B" / "proj"))
    assert str(tmp_path / "A") not in json.dumps(report)
    model = report["stages"]["meta_init"]["summary"]["model"]
    if source == "model":  # inside the project: named relative to it, as in A's report
        assert model["path"] == model["source"] == "model" and "adapter_base_model_path" not in report
    else:  # outside it, copied with it: where it is now
        now = str(tmp_path / "B" / "shared" / "model")
        assert model["path"] == model["source"] == report["adapter_base_model_path"] == now, report


def test_a_copied_project_writes_its_report_again_naming_the_model_folder_outside_it_it_reads(
        tmp_path: Path, jsonl_project: Path, tiny_llama: Path) -> None:
    """`cp -r A B` with the model folder next to the project (`model.source: ../shared/model`):
    B re-ran nothing, and the report.json and report.md copied from A named A's folder
    (`adapter_base_model_path`, meta_init's model) until `run B --force report`, plan saying
    all was up to date. The report stage is not up to date there (plan says why) and a plain
    `run` writes it again naming B's folder; A's own plan is unchanged."""
    import yaml
    from tinymodels import tiny_project_spec

    first = tmp_path / "A" / "proj"
    first.mkdir(parents=True)
    for data in jsonl_project.glob("*.jsonl"):  # (conftest's data files, written in tmp_path)
        shutil.copy(data, first)
    shutil.copytree(tiny_llama, tmp_path / "A" / "shared" / "model")
    (first / "subsetctl.yaml").write_text(yaml.safe_dump(tiny_project_spec("../shared/model"), sort_keys=False))
    run_project(first)
    shutil.copytree(tmp_path / "A", tmp_path / "B")
    copy = tmp_path / "B" / "proj"
    assert [s.name for s in plan_project(first)[2] if s.will_run] == []  # (A: as it was)
    planned = {s.name: s for s in plan_project(copy)[2] if s.will_run}
    assert list(planned) == ["report"], planned
    now = str(tmp_path / "B" / "shared" / "model")
    assert any(f"leads to is {now} now" in reason for reason in planned["report"].reasons), planned["report"].reasons
    assert [r["stage"] for r in run_project(copy) if r["action"] == "ran"] == ["report"]
    report = json.loads((copy / "report.json").read_text())
    assert str(tmp_path / "A") not in json.dumps(report) and str(tmp_path / "A") not in (copy / "report.md").read_text()
    assert report["adapter_base_model_path"] == report["stages"]["meta_init"]["summary"]["model"]["path"] == now
    assert [s.name for s in plan_project(copy)[2] if s.will_run] == []


def test_a_moved_project_whose_spec_now_names_its_model_folder_reports_that_folder(
        tmp_path: Path, jsonl_project: Path, tiny_llama: Path) -> None:
    """A spec naming its model by an absolute path inside the project, the project moved
    (`cp -r A B`, A deleted) and model.source set to `model`, as validate advises: nothing
    re-runs (the same model files), and the report written again named A's folder (meta_init's
    summary, `adapter_base_model`, `settings`, report.md's model line), recorded by the runs.
    It names the folder the spec leads to now."""
    import yaml
    from tinymodels import tiny_project_spec

    first = tmp_path / "A"
    first.mkdir()
    for data in jsonl_project.glob("*.jsonl"):  # (conftest's data files, written in tmp_path)
        shutil.copy(data, first)
    shutil.copytree(tiny_llama, first / "model")
    (first / "subsetctl.yaml").write_text(yaml.safe_dump(tiny_project_spec(str(first / "model")), sort_keys=False))
    run_project(first)
    shutil.copytree(first, tmp_path / "B")
    shutil.rmtree(first)
    moved = tmp_path / "B"
    spec = yaml.safe_load((moved / "subsetctl.yaml").read_text())
    (moved / "subsetctl.yaml").write_text(yaml.safe_dump({**spec, "model": {**spec["model"], "source": "model"}},
                                                        sort_keys=False))
    reasons = {s.name: s.reasons for s in plan_project(moved)[2]}["report"]
    assert any("is named 'model' in the spec now" in reason for reason in reasons), reasons
    ran = [r["stage"] for r in run_project(moved) if r["action"] == "ran"]
    assert ran == ["report"], ran  # meta_init and the rest: up to date; the report names the folder anew
    report = json.loads((moved / "report.json").read_text())
    assert str(first) not in json.dumps(report) and str(first) not in (moved / "report.md").read_text()
    model = report["stages"]["meta_init"]["summary"]["model"]
    assert model["path"] == model["source"] == report["adapter_base_model"] == report["settings"]["model.source"] \
        == "model", report
    assert "- model: model" in (moved / "report.md").read_text()


def test_report_json_names_the_revision_the_finetune_stage_recorded_for_a_hub_base_model(tiny_project_ran) -> None:
    """report.json's `adapter_base_model_revision`: the revision of a hub base model that
    the finetune stage recorded (base_model.json), for `from_pretrained(id, revision=...)`;
    absent for a record of another model (adapters naming another) or without one."""
    from subsetctl.project import Project
    from subsetctl.report.build import build_report
    from subsetctl.stages.finetune import BASE_MODEL_FILE

    project = Project(tiny_project_ran())
    for config in (project.results_dir("finetune") / "runs").glob("*/adapter/adapter_config.json"):
        data = json.loads(config.read_text())  # as adapters trained on the hub id name it
        config.write_text(json.dumps({**data, "base_model_name_or_path": "tinyorg/tinyllama"}))
    record = project.results_dir("finetune") / BASE_MODEL_FILE
    record.write_text(json.dumps({"name": "tinyorg/tinyllama", "folder": None, "revision": "0123abcd"}))
    report = build_report(project)
    assert report["adapter_base_model"] == "tinyorg/tinyllama" and "adapter_base_model_path" not in report
    assert report["adapter_base_model_revision"] == "0123abcd", report
    record.write_text(json.dumps({"name": "other/model", "folder": None, "revision": "0123abcd"}))
    assert "adapter_base_model_revision" not in build_report(project)


def _computed_before_answers_followed_the_prompt(project: Path, overrides: list[str], monkeypatch) -> None:
    """Run ``project`` as a subsetctl from before answers were tokenized after the prompt:
    its model stages' inputs and cache keys had no answer_tokenization marker."""
    from subsetctl.modeling import resolve

    with monkeypatch.context() as patched:
        patched.setattr(resolve, "answer_tokenization_inputs", lambda *args: {})
        run_project(project, overrides)


def test_a_sentencepiece_style_project_computed_before_answers_followed_the_prompt_is_stale(
        tiny_project: Path, tmp_path: Path, monkeypatch) -> None:
    """A causal LM whose tokenizer marks a text's first word (Metaspace) was trained and
    measured on other answer ids before: plan says so, and run computes meta_init and all
    after it again, fine-tunes and test results included (not taken from their caches)."""
    from tinymodels import metaspace_char_tokenizer, save_tiny_llama

    def summary(stage: str) -> dict:
        return json.loads((tiny_project / ".subsetctl" / stage / "manifest.json").read_text())["summary"]

    model = save_tiny_llama(tmp_path / "metaspace-llama", metaspace_char_tokenizer())
    overrides = [f"model.source={model}"]
    _computed_before_answers_followed_the_prompt(tiny_project, overrides, monkeypatch)
    runs = summary("finetune")["runs"]
    statuses = {s.name: s for s in plan_project(tiny_project, overrides)[2]}
    assert not statuses["data"].will_run
    for name in ("meta_init", "finetune"):  # their own inputs changed (and their cached runs' keys)
        assert statuses[name].state == "stale" and not statuses[name].conditional, name
        assert any("answers are now tokenized after the prompt:" in r for r in statuses[name].reasons), name
    assert statuses["gradients"].will_run and statuses["evaluate"].will_run

    ran = {r["stage"] for r in run_project(tiny_project, overrides) if r["action"] == "ran"}
    assert {"meta_init", "gradients", "finetune", "evaluate"} <= ran
    assert summary("finetune")["trained_now"] == runs and summary("evaluate")["reused"] == 0
    assert all(s.state in ("up to date", "disabled") for s in plan_project(tiny_project, overrides)[2])


def test_byte_level_bpe_and_char_projects_computed_before_answers_followed_the_prompt_stay_up_to_date(
        tiny_project: Path, tmp_path: Path, monkeypatch) -> None:
    """Their answers' ids did not change: nothing is stale, and their model stages' inputs
    are the model folder's files alone, as before."""
    from tinymodels import byte_level_bpe_tokenizer, save_tiny_llama

    bpe = save_tiny_llama(tmp_path / "bpe-llama", byte_level_bpe_tokenizer())
    for overrides in ([f"model.source={bpe}"], []):  # [] : the char tokenizer of tiny_project
        _computed_before_answers_followed_the_prompt(tiny_project, overrides, monkeypatch)
        statuses = plan_project(tiny_project, overrides)[2]
        assert all(s.state in ("up to date", "disabled") for s in statuses), [(s.name, s.reasons) for s in statuses]


def _report_written_by_an_earlier_subsetctl(project: Path) -> None:
    """Record the report stage's inputs as an earlier subsetctl did, without report_format."""
    from subsetctl.project import fingerprint

    manifest_file = project / ".subsetctl" / "report" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["inputs"]["extra"].pop("report_format", None)
    manifest["fingerprint"] = fingerprint(manifest["inputs"])
    manifest_file.write_text(json.dumps(manifest))


def test_a_report_an_earlier_subsetctl_wrote_is_written_again_with_what_this_one_adds(tiny_project_ran) -> None:
    """A project whose report stage an earlier subsetctl ran (its inputs without
    report_format; report.json without final_vs_baselines) was up to date, so an upgrade
    never wrote the report's newer contents: plan says why the report re-runs, and run
    writes it again alone."""
    project = tiny_project_ran()
    _report_written_by_an_earlier_subsetctl(project)
    report = json.loads((project / "report.json").read_text())
    del report["final_vs_baselines"]
    (project / "report.json").write_text(json.dumps(report))

    # `report` before the run: the report as this subsetctl writes it, not "the spec changed"
    result = CliRunner().invoke(main, ["report", str(project), "--format", "json"])
    shown = json.loads(result.stdout)
    assert shown["report_by_earlier_subsetctl"] and shown["stale"] == [], shown["stale"]
    assert "final_vs_baselines" in shown["report"]
    text = " ".join(CliRunner().invoke(main, ["report", str(project)]).output.split())
    assert "written by an earlier subsetctl" in text and "The spec or its input files changed" not in text, text
    assert "On the test split" in text

    # --format markdown likewise: report.md as this one writes it, not the old file the note
    # says it is not (it printed that file verbatim, without "On the test split")
    (project / "report.md").write_text("# report.md of an earlier subsetctl\n", encoding="utf-8")
    markdown = CliRunner().invoke(main, ["report", str(project), "--format", "markdown"]).output
    assert not markdown.startswith("# report.md of an earlier") and "On the test split" in markdown, markdown
    assert "shown here as this one writes them" in " ".join(markdown.split())

    statuses = {s.name: s for s in plan_project(project)[2]}
    assert [name for name, s in statuses.items() if s.will_run] == ["report"]
    assert any("written by an earlier subsetctl" in r for r in statuses["report"].reasons), statuses["report"].reasons
    assert {r["stage"] for r in run_project(project) if r["action"] == "ran"} == {"report"}
    assert "final_vs_baselines" in json.loads((project / "report.json").read_text())
    assert all(s.state in ("up to date", "disabled") for s in plan_project(project)[2])
    assert not json.loads(CliRunner().invoke(main, ["report", str(project), "--format", "json"]).stdout)[
        "report_by_earlier_subsetctl"]


def test_a_report_an_earlier_subsetctl_wrote_then_deleted_is_listed_as_missing(tiny_project_ran) -> None:
    """After an upgrade, report.md deleted by hand: `report` listed no missing output (its
    json's missing_outputs was empty, and no "Deleted since the last run" note) and said
    report.md was written by an earlier subsetctl; `plan` listed it."""
    project = tiny_project_ran()
    _report_written_by_an_earlier_subsetctl(project)
    (project / "report.md").unlink()

    shown = json.loads(CliRunner().invoke(main, ["report", str(project), "--format", "json"]).stdout)
    assert shown["report_by_earlier_subsetctl"] and shown["stale"] == [], shown["stale"]
    assert shown["missing_outputs"] == {"report": ["report.md"]}, shown["missing_outputs"]
    text = " ".join(CliRunner().invoke(main, ["report", str(project)]).output.split())
    assert "Deleted since the last run: report.md." in text, text
    assert "report.json was written by an earlier subsetctl" in text and "report.md and report.json" not in text, text
    reasons = {s.name: s.reasons for s in plan_project(project)[2]}["report"]
    assert "outputs missing: report.md" in reasons, reasons


def test_a_report_json_cut_short_is_listed_as_damaged_and_written_again(tiny_project_ran) -> None:
    """report.json in the project folder cut short to "{": `report` showed the report whole (from
    the report stage's own copy) and said nothing, `plan` said it was up to date, and a script
    reading report.json failed until some other change re-ran the report. It is listed like a
    deleted output, as damaged, and the next `run` writes it again, reading as the report."""
    project = tiny_project_ran()
    whole = json.loads((project / "report.json").read_text(encoding="utf-8"))
    (project / "report.json").write_text("{", encoding="utf-8")

    shown = json.loads(CliRunner().invoke(main, ["report", str(project), "--format", "json"]).stdout)
    assert shown["missing_outputs"] == {"report": ["report.json"]} and shown["stale"] == [], shown
    assert shown["report"]["stages"].keys() == whole["stages"].keys()  # shown rebuilt, not from the damaged file
    text = " ".join(CliRunner().invoke(main, ["report", str(project)]).output.split())
    assert "Damaged since the last run: report.json" in text and "Deleted since" not in text, text
    reasons = {s.name: s.reasons for s in plan_project(project)[2]}["report"]
    assert reasons == ["outputs damaged (not what it wrote; cut short or edited): report.json"], reasons
    assert [r["stage"] for r in run_project(project) if r["action"] == "ran"] == ["report"]
    assert json.loads((project / "report.json").read_text(encoding="utf-8"))["stages"].keys() == whole["stages"].keys()
    (project / ".subsetctl" / "report" / "report.json").write_text("{", encoding="utf-8")  # the stage's own copy
    text = " ".join(CliRunner().invoke(main, ["report", str(project)]).output.split())  # was: "they are not shown"
    assert "Damaged saved results: report" in text and "shown rebuilt" in text and "not shown" not in text, text


def test_a_plot_replaced_by_hand_is_listed_as_damaged_and_drawn_again(tiny_project_ran) -> None:
    """report.md shows plots/*.png as the results' figures, but only their presence was checked:
    a plot replaced by hand (another run's copied in) left `plan` saying the report was up to
    date. The report stage records each plot's sha256; one drawn otherwise is damaged, drawn again."""
    project = tiny_project_ran()
    plot = project / "plots" / "test_metric.png"
    drawn = plot.read_bytes()
    plot.write_bytes((project / "plots" / "source_scores.png").read_bytes())  # another figure in its place
    reasons = {s.name: s.reasons for s in plan_project(project)[2]}["report"]
    assert reasons == ["outputs damaged (not what it wrote; cut short or edited): plots/test_metric.png"], reasons
    assert [r["stage"] for r in run_project(project) if r["action"] == "ran"] == ["report"]
    assert plot.read_bytes() == drawn
    assert {s.name: s.state for s in plan_project(project)[2]}["report"] == "up to date"


def test_a_project_computed_with_gradients_seed_written_out_stays_up_to_date(tiny_project: Path, monkeypatch) -> None:
    """A project run with ``gradients.seed`` written as the project seed's value, before that
    counted as unset, is still up to date under the same spec (a project run now is up to
    date with the value written or not: test_stage_inputs)."""
    import yaml

    import subsetctl.spec.fingerprints

    seed = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text()).get("project", {}).get("seed", 0)
    overrides = [f"gradients.seed={seed}"]
    with monkeypatch.context() as previous_version:
        previous_version.setattr(subsetctl.spec.fingerprints, "_without_default_seed", lambda dumped: dumped)
        run_project(tiny_project, overrides)
    statuses = plan_project(tiny_project, overrides)[2]
    assert all(s.state in ("up to date", "disabled") for s in statuses), [(s.name, s.reasons) for s in statuses]


def test_gradients_warn_when_theta_star_is_flat(tiny_project_ran) -> None:
    """A meta_init.lr so high that the model's output no longer depends on the LoRA weights
    gave all-zero gradient features and, only later, a search whose estimates were all
    equal, with nothing naming meta_init.lr; the gradients stage says so now, and only then."""
    from subsetctl.reporter import SilentReporter

    tiny_project = tiny_project_ran("gradients")  # a copy: the usual θ*; its gradients run again here
    usual = SilentReporter()
    ran = run_project(tiny_project, until="gradients", reporter=usual, force=["gradients"])
    assert [r["stage"] for r in ran if r["action"] == "ran"] == ["gradients"]
    assert not any("gradient of every one of the" in m for m in usual.warnings), usual.warnings
    flat = SilentReporter()
    run_project(tiny_project, until="gradients", overrides=["meta_init.lr=1e12"], reporter=flat)
    assert any("gradient of every one of the" in m and "meta_init.lr far too high (here 1e+12)" in m
               for m in flat.warnings), flat.warnings



def test_a_report_a_later_subsetctl_wrote_is_not_called_an_earlier_ones(tiny_project_ran) -> None:
    """Going back to an older subsetctl (not supported, but `plan` should not mislead): a
    report a later one wrote, with a higher report_format, was said to be "written by an
    earlier subsetctl, without what this one writes there"."""
    from subsetctl.project import fingerprint
    from subsetctl.report.build import REPORT_FORMAT

    project = tiny_project_ran()
    manifest_file = project / ".subsetctl" / "report" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["inputs"]["extra"]["report_format"] = REPORT_FORMAT + 1
    manifest["fingerprint"] = fingerprint(manifest["inputs"])
    manifest_file.write_text(json.dumps(manifest))
    reasons = {s.name: s.reasons for s in plan_project(project)[2]}["report"]
    assert any(f"written by a later subsetctl (their format {REPORT_FORMAT + 1}; this one writes {REPORT_FORMAT})"
               in r for r in reasons) and not any("earlier" in r for r in reasons), reasons
    shown = json.loads(CliRunner().invoke(main, ["report", str(project), "--format", "json"]).stdout)
    assert not shown["report_by_earlier_subsetctl"] and shown["stale"] == ["report"], shown["stale"]


def test_a_report_an_earlier_subsetctl_wrote_is_said_to_lack_what_it_lacks(tiny_project_ran) -> None:
    """`plan` said a report an earlier subsetctl wrote lacked "such as final_vs_baselines" even
    when it held final_vs_baselines and lacked only what later formats added (the per-seed
    test figures); it names what was added after the report's own format now."""
    from subsetctl.project import fingerprint
    from subsetctl.report.build import REPORT_FORMAT

    project = tiny_project_ran()
    manifest_file = project / ".subsetctl" / "report" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    per_seed = ("test_metrics' diverged_seeds and final_vs_baselines' diverged (the fine-tunes that diverged, named "
                "under the test metrics), and the notes saying what the figures are (est. loss, each strategy's score, "
                "the test score and loss), "
                "run_settings (the executor, report, plugins and checkpoint spacing `init --from-report` writes back), "
                "train_rows (each source's train rows, beside its scores), "
                "final_vs_baselines' paired (the pick against each baseline row by row on the test rows), "
                "settings' sources[{name}] keys, input_files' data_files, the data stage's counts as columns "
                "(about half the bytes at thousands of sources), "
                "overrides as typed (a strategy or source by its name) and overrides_recorded, "
                "settings' sources[*] keys (a setting every listed source shares, once), "
                "input_files (the data and model files' sha256) and report.md's section on reproducing the selection, "
                "each stage's reused_threads (the thread counts of results taken from the cache or shards), "
                "settings (what the results were made with), "
                "each stage's written_at (report.md's time table too), resolved_spec, versions, threads, fingerprint and "
                "output_digest, stage_order, and report_format, "
                "the plugins the results were made with, test_metrics' score_per_seed and loss_per_seed")
    for recorded, named, left_out in ((4, f"({per_seed})", "final_vs_baselines)"),
                                      (3, f"({per_seed}, report.md's per-source scores ranked)", "final_vs_baselines)"),
                                      (None, (f"({per_seed}, report.md's per-source scores ranked, "
                                              "final_vs_baselines' stds, final_vs_baselines)"), "")):
        manifest["inputs"]["extra"]["report_format"] = recorded
        manifest["fingerprint"] = fingerprint(manifest["inputs"])
        manifest_file.write_text(json.dumps(manifest))
        [reason] = {s.name: s.reasons for s in plan_project(project)[2]}["report"]
        assert f"without what this one writes there {named}" in reason and REPORT_FORMAT == 19, reason
        assert not left_out or left_out not in reason, reason
        assert "report_sources.csv" not in reason, reason  # (3 sources: a file only more than 200 get)
        assert "class_balance" not in reason, reason  # (a causal LM: only a classifier's report holds it)


def test_a_report_format_addition_is_named_only_to_projects_that_get_it() -> None:
    """report_sources.csv (format 14) is written only beside a report of more than 200
    sources: `plan` named it among what a 3-source project's report lacked."""
    from subsetctl.report.build import added_since

    assert "report_sources.csv" in added_since(13) and "report_sources.csv" in added_since(13, 201)
    assert "report_sources.csv" not in added_since(13, 200) and "final_vs_baselines' paired" in added_since(13, 3)


def test_a_report_format_only_a_classifier_gets_is_not_named_to_a_causal_lm(monkeypatch) -> None:
    """Format 16 added a classifier's class_balance: `plan` named it to a causal LM's project
    whose report format 15 wrote (an upgraded project), and, where a project gets none of
    the additions since its report's format, printed an empty "without what this one writes
    there ()". (The formats after 16 are set aside: with them there is something to add.)"""
    from subsetctl.plan_reasons import changed_inputs
    from subsetctl.report import build
    from subsetctl.report.build import added_since

    monkeypatch.setattr(build, "FORMAT_ADDITIONS", {n: text for n, text in build.FORMAT_ADDITIONS.items() if n <= 16})

    assert "class_balance" in added_since(15, 3, "classifier") and "class_balance" in added_since(15, 3)
    assert added_since(15, 3, "causal-lm") == "" and added_since(13, 3, "causal-lm") == (
        "final_vs_baselines' paired (the pick against each baseline row by row on the test rows)")
    reason = changed_inputs({"report_format": 15}, {"report_format": 16}, None, 3, "causal-lm")
    assert reason == ("report.json and report.md were written by an earlier subsetctl (their format 15; this one "
                      "writes 16, adding nothing this project's results give it): written again from the "
                      "stages' results"), reason
    assert "without what this one writes there (a classifier's class_balance" in str(
        changed_inputs({"report_format": 15}, {"report_format": 16}, None, 3, "classifier"))


def test_class_balance_is_not_promised_to_a_classifier_whose_data_an_earlier_subsetctl_prepared(
        tmp_path: Path, monkeypatch) -> None:
    """class_balance comes from data.json's classes, which data an earlier subsetctl prepared
    lacks: `plan` named it among what the report of an upgraded classifier project would gain,
    and the report written again had none (it comes once the data stage runs again). (The
    formats after 16 are set aside: with them there is something to add.)"""
    from subsetctl.plan_reasons import changed_inputs
    from subsetctl.project import Project
    from subsetctl.report import build
    from subsetctl.report.build import added_since, data_counts_classes

    monkeypatch.setattr(build, "FORMAT_ADDITIONS", {n: text for n, text in build.FORMAT_ADDITIONS.items() if n <= 16})

    project = Project(tmp_path)
    (project.stage_dir("data")).mkdir(parents=True)
    (project.stage_dir("data") / "data.json").write_text(json.dumps({"target": "t", "sources": ["s"]}))
    assert not data_counts_classes(project)
    (project.stage_dir("data") / "data.json").write_text(json.dumps({"target": "t", "classes": {"t": {}}}))
    assert data_counts_classes(project)
    assert added_since(15, 3, "classifier", frozenset({"classes"})) == ""
    reason = changed_inputs({"report_format": 15}, {"report_format": 16}, None, 3, "classifier", frozenset({"classes"}))
    assert reason is not None and "class_balance" not in reason and "adding nothing" in reason, reason


def test_plan_until_says_the_later_stages_it_leaves_outdated(tiny_project_ran) -> None:
    """`plan --until search` after a change of finetune's settings called evaluate, whose
    results come from the fine-tunes that change outdates, "up to date" (`report` after the
    run left them out as outdated), and summed up "Everything is up to date; `run` would
    do nothing." under a table of stale stages."""
    tiny_project = tiny_project_ran()
    statuses = {s.name: s for s in plan_project(tiny_project, overrides=["finetune.steps=3"], until="search")[2]}
    assert [statuses[n].state for n in ("search", "finetune", "evaluate", "report")] == ["up to date", *["stale"] * 3]
    assert not any(s.will_run for s in statuses.values())
    assert statuses["evaluate"].reasons == ["upstream finetune is not up to date and until='search' stops before it"]
    with cli_wording():  # as `subsetctl plan --until search` words it
        cli = {s.name: s for s in plan_project(tiny_project, overrides=["finetune.steps=3"], until="search")[2]}
    assert cli["evaluate"].reasons == ["upstream finetune is not up to date and `run --until search` stops before it"]
    forced = {s.name: s for s in plan_project(tiny_project, force=["search"])[2]}
    assert "forced (named in force)" in forced["search"].reasons, forced["search"].reasons
    output = " ".join(CliRunner().invoke(main, ["plan", str(tiny_project), "--until", "search",
                                                "finetune.steps=3"]).output.split())
    assert "Everything is up to date" not in output, output
    assert ("Everything up to search is up to date; `run --until search` would do nothing. Not up to date after "
            "--until search, and left so: finetune, evaluate, report; `run` without --until brings them up to "
            "date.") in output, output


def test_plan_json_marks_the_stages_until_leaves_outdated(tiny_project_ran) -> None:
    """`plan --format json --until search` left out what the text's last line says, the
    stages after search that `run --until search` leaves outdated: each stage now says so in
    `left_stale_by_until` (the JSON stays a list of stages), false without --until."""
    tiny_project = str(tiny_project_ran())
    args = ["plan", tiny_project, "--until", "search", "finetune.steps=3", "--format", "json"]
    stages = json.loads(CliRunner().invoke(main, args).stdout)
    assert [s["stage"] for s in stages if s["left_stale_by_until"]] == ["finetune", "evaluate", "report"], stages
    unlimited = json.loads(CliRunner().invoke(main, ["plan", tiny_project, "finetune.steps=3", "--format", "json"]).stdout)
    assert [s["left_stale_by_until"] for s in unlimited] == [False] * len(unlimited), unlimited


def test_a_forced_stage_with_unchanged_output_rewrites_the_report_times(tiny_project_ran) -> None:
    """`run --force search` whose selections came out the same left the report as it was
    (its inputs, the search's output, unchanged), so report.md's and the terminal's time
    table kept the old search's seconds: the report now runs again after any stage runs,
    and `plan` says it will for certain, not only if the search's output changes."""
    root = tiny_project_ran()
    planned = {s.name: s for s in plan_project(root, force="search")[2]}["report"]
    assert planned.will_run and not planned.conditional, planned
    assert planned.reasons == [("search will run, and its time table shows how long it takes (rewritten even "
                                "when the output is unchanged)")], planned.reasons
    report = json.loads((root / "report.json").read_text())
    report["stages"]["search"]["seconds"] = 9999.0  # as the last run's time, told apart from this run's
    (root / "report.json").write_text(json.dumps(report))
    actions = {r["stage"]: r["action"] for r in run_project(root, force="search")}
    assert actions["search"] == actions["report"] == "ran" and actions["finetune"] == "up to date", actions
    seconds = json.loads((root / ".subsetctl" / "search" / "manifest.json").read_text())["seconds"]
    assert json.loads((root / "report.json").read_text())["stages"]["search"]["seconds"] == seconds != 9999.0
    assert all(r["action"] in ("up to date", "disabled") for r in run_project(root))  # nothing ran: left as it is


def test_plan_does_not_promise_reused_results_to_a_forced_stage(tiny_project: Path) -> None:
    """`plan --force finetune` said "those in the cache are reused" of the fine-tunes, and
    likewise of verify's, the evaluations, the search's estimates and the prepared sources,
    while a forced stage takes none of them and computes everything again."""
    cached = ("data", "verify", "search", "finetune", "evaluate")
    plain = {s.name: s.work for s in plan_project(tiny_project, ["verify.enabled=true"])[2]}
    forced = {s.name: s.work for s in plan_project(tiny_project, ["verify.enabled=true"], force=list(cached))[2]}
    # (nothing prepared yet: the data stage's line counts the sources none of which it reuses)
    assert plain["data"] == "the target and 3 sources (none of the 4 prepared before: each loaded; the target counted)"
    for name in cached:
        assert ("reused" in plain[name] or name == "data") and "--force:" not in plain[name], plain[name]
        assert "reused" not in forced[name] and "--force: " in forced[name], forced[name]
    assert forced["finetune"].endswith("; --force: none taken from the cache, all computed again")
    assert forced["meta_init"] == plain["meta_init"]  # nothing of its own reused, nothing said


def test_the_report_drops_an_override_once_the_spec_file_holds_its_value(tiny_project_ran) -> None:
    """After `run finetune.steps=3`, then `steps: 3` written into the spec file, every stage
    was up to date and the report went on saying "Results made with command-line
    overrides, not the spec alone: finetune.steps=3", although they were the spec's."""
    import yaml

    tiny_project = tiny_project_ran()
    run_project(tiny_project, overrides=["finetune.steps=3"])
    assert json.loads((tiny_project / "report.json").read_text())["overrides"] == {"finetune.steps=3": ["finetune"]}
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["finetune"]["steps"] = 3
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    statuses = {s.name: s for s in plan_project(tiny_project)[2]}
    assert [name for name, s in statuses.items() if s.will_run] == ["report"]
    shown = json.loads(CliRunner().invoke(main, ["report", str(tiny_project), "--format", "json"]).output)
    assert shown["report_names_overrides_since_held"] and shown["stale"] == [], shown["stale"]
    assert "overrides" not in shown["report"]  # built from the stages, as the next run writes it
    now_the_specs = ("the results it shows are now the spec's alone (made without command-line overrides, or with "
                     "values the spec file now holds)")
    assert statuses["report"].reasons == [now_the_specs]
    assert [r["stage"] for r in run_project(tiny_project) if r["action"] == "ran"] == ["report"]
    assert "overrides" not in json.loads((tiny_project / "report.json").read_text())
    assert "command-line overrides" not in (tiny_project / "report.md").read_text()


def test_an_override_giving_the_files_own_value_is_not_called_an_override(tiny_project_ran) -> None:
    """`run finetune.steps=S` on a spec holding ``steps: S`` changed nothing, yet report.json
    and report.md said the results were "made with command-line overrides"."""
    import yaml

    tiny_project = tiny_project_ran()
    steps = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())["finetune"]["steps"]
    statuses = plan_project(tiny_project, [f"finetune.steps={steps}"])[2]
    assert not [s.name for s in statuses if s.will_run]
    run_project(tiny_project, overrides=[f"finetune.steps={steps}"], force=["finetune"])
    assert "overrides" not in json.loads((tiny_project / "report.json").read_text())
    assert "command-line overrides" not in (tiny_project / "report.md").read_text()
    assert json.loads((tiny_project / ".subsetctl" / "finetune" / "manifest.json").read_text())["overrides"] == []


def test_plan_says_which_changed_keys_this_command_line_sets(tiny_project_ran) -> None:
    """`plan p finetune.steps=3` said "spec changed: finetune.steps" as for an edit of the
    file, though the file still holds what the results were made with."""
    tiny_project = tiny_project_ran()
    statuses = {s.name: s for s in plan_project(tiny_project, ["finetune.steps=3", "evaluate.batch_size=4"])[2]}
    assert statuses["finetune"].reasons == ["spec changed: finetune.steps (given in overrides: finetune.steps=3)"]
    with cli_wording():  # as `subsetctl plan` words it
        cli = {s.name: s for s in plan_project(tiny_project, ["finetune.steps=3"])[2]}
    assert cli["finetune"].reasons == ["spec changed: finetune.steps (set on this command line: finetune.steps=3)"]
    import yaml

    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec["finetune"]["steps"] = 3  # the same change, now in the file
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert {s.name: s for s in plan_project(tiny_project)[2]}["finetune"].reasons == ["spec changed: finetune.steps"]


def test_settings_an_earlier_subsetctl_recorded_as_written_are_not_said_to_have_changed(tiny_project_ran) -> None:
    """A stage an earlier subsetctl recorded with settings as the spec writes them, which
    this one counts at their defaults (meta_init.checkpoint_every: 2; verify.steps in the
    slice of a search whose fast estimator does not read it), is stale for another reason:
    plan said "spec changed: meta_init.checkpoint_every" (and "verify.steps") of a spec that
    had not changed there."""
    from subsetctl.project import fingerprint

    tiny_project = tiny_project_ran("search")
    state = tiny_project / ".subsetctl"
    for stage, edit in (("meta_init", lambda s: s["meta_init"].update(checkpoint_every=2)),
                        ("search", lambda s: s.update({"verify.steps": 3}))):
        path = state / stage / "manifest.json"
        manifest = json.loads(path.read_text())
        edit(manifest["inputs"]["slice"])  # as the earlier subsetctl recorded it
        manifest["fingerprint"] = fingerprint(manifest["inputs"])
        path.write_text(json.dumps(manifest))
    overrides = ["meta_init.steps=3", "verify.steps=3"]
    statuses = {s.name: s for s in plan_project(tiny_project, overrides, until="search")[2]}
    assert statuses["meta_init"].reasons[0] == "spec changed: meta_init.steps (given in overrides: meta_init.steps=3)"
    assert not any("spec changed" in reason for reason in statuses["search"].reasons), statuses["search"].reasons
    assert statuses["search"].reasons[0].startswith("re-runs only if the meta_init stage's output changes (upstream "
                                                    "gradients, calibrate only if it does")


def test_report_says_results_are_outdated_by_the_upgrade_not_only_by_the_spec(tiny_project_ran) -> None:
    """Results an older subsetctl made, which did not record the model folder's files, are
    stale with the spec and its files as they were: report said only "The spec or its input
    files changed since these results", which the user had not touched."""
    from tinymodels import change_data_of

    from subsetctl.project import fingerprint
    from subsetctl.report.terminal import load_report_data, outdated_note

    tiny_project = tiny_project_ran()
    path = tiny_project / ".subsetctl" / "meta_init" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["inputs"]["extra"] = {k: v for k, v in manifest["inputs"]["extra"].items() if k != "model_files"}
    assert manifest["inputs"]["extra"] != json.loads(path.read_text())["inputs"]["extra"]
    manifest["fingerprint"] = fingerprint(manifest["inputs"])  # as the older subsetctl recorded it
    original = path.read_text()
    path.write_text(json.dumps(manifest))
    data = load_report_data(tiny_project)
    assert "meta_init" in data["stale"] and data["stale_by_earlier_subsetctl"]
    assert "or this subsetctl reads them otherwise than the earlier one" in outdated_note(data)
    path.write_text(original)
    change_data_of(tiny_project)  # the spec changed, this subsetctl made the results: said as before
    data = load_report_data(tiny_project)
    assert data["stale"] and not data["stale_by_earlier_subsetctl"]
    assert "The spec or its input files changed since these results: " in outdated_note(data)


def test_a_report_an_earlier_subsetctl_wrote_does_not_say_the_stages_before_it_are_read_otherwise(
        tiny_project_ran) -> None:
    """After an upgrade, a project whose spec changed since its run (data edited; or results
    made with overrides, reported without them) and whose report an earlier subsetctl wrote:
    `report` said "The spec or its input files changed since these results, or this subsetctl
    reads them otherwise than the earlier one that made these results", as if the upgrade
    re-ran the stages before the report; only the report's format was of the earlier one,
    and `report` shows it as this one writes it."""
    from tinymodels import change_data_of

    from subsetctl.report.terminal import load_report_data, outdated_note

    project = tiny_project_ran()
    _report_written_by_an_earlier_subsetctl(project)
    change_data_of(project)
    reasons = {s.name: s.reasons for s in plan_project(project)[2]}["report"]
    # plan still says it, as a reason of its own (not split out of another by its wording)
    assert any(r.startswith("report.json and report.md were written by an earlier subsetctl") for r in reasons), reasons
    data = load_report_data(project)
    assert "data" in data["stale"] and "report" in data["stale"] and not data["stale_by_earlier_subsetctl"]
    note = outdated_note(data)
    assert "The spec or its input files changed since these results: data, " in note and "otherwise" not in note, note


def test_a_new_release_of_subsetctl_alone_keeps_the_results_and_the_caches(tiny_project_ran, monkeypatch) -> None:
    """Every fingerprint and cache key held subsetctl's release (``__version__``): the first
    release after a project's run made every stage stale and every cached fine-tune, test
    result and subset estimate unfound, so a plain upgrade trained everything again."""
    import shutil

    tiny_project = tiny_project_ran()
    for module in [m for name, m in sys.modules.items() if name.split(".")[0] == "subsetctl"]:
        if hasattr(module, "__version__"):  # the release, wherever a module took it from
            monkeypatch.setattr(module, "__version__", "99.0.0")
    statuses = plan_project(tiny_project)[2]
    assert all(s.state in ("up to date", "disabled") for s in statuses), [(s.name, s.reasons) for s in statuses]
    state = tiny_project / ".subsetctl"
    for stage in ("search", "finetune", "evaluate"):
        shutil.rmtree(state / stage)  # run again: their results come from the caches
    run_project(tiny_project)

    def summary(stage: str) -> dict[str, Any]:
        return json.loads((state / stage / "manifest.json").read_text())["summary"]

    assert summary("search")["computed_now"] == 0 and summary("finetune")["trained_now"] == 0
    assert summary("evaluate")["reused"] == summary("finetune")["runs"]
    # a change that makes results differ raises RESULTS_VERSION: that re-runs them, and plan says why
    import subsetctl.pipeline

    monkeypatch.setattr(subsetctl.pipeline, "RESULTS_VERSION", "0.2.0")
    data = {s.name: s for s in plan_project(tiny_project)[2]}["data"]
    assert data.reasons == [("this subsetctl computes results otherwise than the one that made these "
                             "(results version 0.1.0 -> 0.2.0)")]



def test_a_divergence_from_a_weight_decay_times_lr_of_1_or_more_names_the_weight_decay(tiny_project_ran) -> None:
    """meta_init.weight_decay: 1e15 (the spec takes any weight decay of 0 or more): each AdamW
    step scaled the weights by 1 - lr x weight_decay, meta_init diverged, and the error said to
    lower meta_init.lr or raise meta_init.batch_size, neither of which was the cause."""
    import pytest

    from subsetctl.errors import UserError

    project = tiny_project_ran("data")
    with pytest.raises(UserError) as raised:
        run_project(project, until="meta_init", overrides=["meta_init.weight_decay=1e15"], reporter=SilentReporter())
    assert "meta_init diverged" in str(raised.value)
    assert "meta_init.weight_decay (1e+15) times meta_init.lr" in str(raised.value)
    assert "Lower meta_init.weight_decay" in str(raised.value) and "raise meta_init.batch_size" not in str(raised.value)


@pytest.mark.parametrize("stage", ["finetune", "evaluate", "verify"])
def test_a_cache_that_cannot_take_a_result_is_warned_of_and_the_run_goes_on(tiny_project_ran, monkeypatch,
                                                                           stage: str) -> None:
    """A project folder a team shares, whose `.subsetctl/cache/<stage>` another user made
    under umask 022: a run stopped on the permission error right after a fine-tune (or a
    test evaluation) finished, before recording it, so the run after `chmod -R g+rwX`
    computed it again; then it stopped after recording it, for a cache that only spares
    later runs work. Now the stage finishes with one warning, and its results are kept."""
    import errno

    from subsetctl.modeling import evaluate as evaluating
    from subsetctl.modeling import train
    from subsetctl.reporter import SilentReporter
    from subsetctl.stages import evaluate, finetune, verify

    tiny_project = tiny_project_ran("search" if stage == "finetune" else "finetune")
    overrides = ["verify.enabled=true", "verify.k=2", "verify.kinds=[ce]", "verify.steps=1"] if stage == "verify" else []
    computed: list[int] = []
    module, name = (evaluating, "evaluate_model") if stage == "evaluate" else (train, "train_lora")
    real = getattr(module, name)

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        computed.append(1)
        return real(*args, **kwargs)

    refusals: list[int] = []

    def refused(*args, **kwargs):  # type: ignore[no-untyped-def]
        refusals.append(1)
        raise PermissionError(errno.EACCES, "Permission denied", str(tiny_project / ".subsetctl" / "cache" / stage))

    real_write = evaluate.atomic_write_json
    monkeypatch.setattr(module, name, counting)
    if stage == "finetune":
        monkeypatch.setattr(finetune.AdapterCache, "store", refused)
    elif stage == "verify":
        monkeypatch.setattr(verify.RunCache, "put", refused)
    else:
        monkeypatch.setattr(evaluate, "atomic_write_json", lambda path, data: refused() if "cache" in path.parts
                            else real_write(path, data))
    reporter = SilentReporter()
    run_project(tiny_project, overrides, until=stage, reporter=reporter)
    said = [w for w in map(str, reporter.warnings) if "cannot take results" in w]
    assert len(said) == 1 and "Permission denied" in said[0] and "kept in the project" in said[0], reporter.warnings
    assert len(refusals) == 1  # not tried again for each result
    record = {"finetune": "runs.json", "evaluate": "per_run.json", "verify": "results.json"}[stage]
    done = json.loads((tiny_project / ".subsetctl" / stage / record).read_text())
    assert len(computed) == len(done) >= 1, done
    monkeypatch.undo()
    monkeypatch.setattr(module, name, counting)
    run_project(tiny_project, overrides, until=stage)
    assert len(computed) == len(done)  # up to date: nothing computed again


def test_plan_says_how_many_subset_estimates_the_search_store_holds(tiny_project_ran) -> None:
    """A search re-run for another strategy list takes its estimates from the store: `plan`
    says how many it holds ("8 of 8 stored, reused", as `run` then says "8 subset estimates
    taken from the store"), where it said "stored ones reused" of however many there were."""
    tiny_project = tiny_project_ran()

    def work(overrides: list[str]) -> str:
        return str({s.name: s for s in plan_project(tiny_project, overrides)[2]}["search"].work)

    strategies = "search.strategies=[{name: exhaustive}, {name: gradient_similarity}, {name: forward}]"
    assert work([strategies]).endswith("shared ones are estimated once, 8 of 8 stored, reused)")
    # a bound below the 2^3 subsets: which of the stored ones it asks for is known as it runs, but for the
    # baselines and a greedy strategy's start and first step, which it asks for in any case
    assert work(["search.strategies=[{name: gradient_similarity}]"]).endswith(
        "8 stored, 2 of the 2 it asks for in any case among them (the all and target_only baselines), reused; the "
        "others where asked for again)")
    assert work(["search.strategies=[{name: forward, params: {max_steps: 1}}]"]).endswith(
        "8 stored, 5 of the 5 it asks for in any case among them (the all and target_only baselines; forward's start "
        "and first step), reused; the others where asked for again)")
    assert work([strategies, "estimate.lam=3"]).endswith("stored ones reused)")  # calibrate re-runs: not known yet
    shutil.rmtree(tiny_project / ".subsetctl" / "cache" / "search")
    assert work([strategies]).endswith("shared ones are estimated once, none stored)")


def test_plan_and_run_say_how_many_sources_are_prepared_again_and_which(tiny_project_ran) -> None:
    """After one source's file is edited, `plan` says "1 of 4 prepared again (a), 3 reused" by
    the keys the prepared sources record (it said "those prepared before as they are now are
    reused" of however many), and `run` says the same as the stage ends (it said "3 of 4
    reused; the others were loaded", naming none)."""
    tiny_project = tiny_project_ran()

    def work() -> str:
        return str({s.name: s for s in plan_project(tiny_project)[2]}["data"].work)

    with (tiny_project / "a.jsonl").open("a") as fh:
        fh.write('{"prompt": "9+9=", "response": "18"}\n')
    assert work() == "the target and 3 sources (1 of 4 prepared again (a), 3 reused; the target counted)"
    reporter = SilentReporter()
    run_project(tiny_project, until="data", reporter=reporter)
    assert ("data: 1 of 4 sources prepared again (a), 3 reused as an earlier run prepared them (same spec and "
            "files; the target counted)") in reporter.messages
    shutil.rmtree(tiny_project / ".subsetctl")
    assert work() == "the target and 3 sources (none of the 4 prepared before: each loaded; the target counted)"


def test_plan_counts_each_sources_files_once_saying_which_are_prepared_again(tiny_project_ran, monkeypatch) -> None:
    """`plan` worked out each source's input files twice where the data stage runs again: for
    the stage's fingerprint, and again for the key that tells whether earlier results hold the
    source (four times for a changed one): 500 ``save_to_disk`` sources took 0.4 s of CPU more. Once
    now, each as today counts it, and the count of sources prepared again is as before."""
    from subsetctl.data import fingerprint

    tiny_project = tiny_project_ran("data")
    counted: list[str] = []
    count = fingerprint.source_fingerprint_inputs

    def counting(source: Any, spec_dir: Path, whole_files: bool = False, saved_whole: bool = False) -> dict[str, Any]:
        counted.append(source.name)
        return count(source, spec_dir, whole_files, saved_whole)

    monkeypatch.setattr(fingerprint, "source_fingerprint_inputs", counting)
    with (tiny_project / "a.jsonl").open("a") as fh:
        fh.write('{"prompt": "9+9=", "response": "18"}\n')
    work = str({s.name: s for s in plan_project(tiny_project)[2]}["data"].work)
    assert work == "the target and 3 sources (1 of 4 prepared again (a), 3 reused; the target counted)"
    assert sorted(counted) == sorted(["a", "b", "bad", "target"]), counted


def test_plan_counts_sources_whose_prepared_files_are_damaged_as_prepared_again(tiny_project_ran) -> None:
    """A prepared source whose Arrow file is cut short: `plan` counted it (and every other)
    reused by the keys the prepared sources record, "all 4 reused", while `run` discards the
    stage's damaged results and prepares again what no intact earlier results hold. It says
    so now, with the damage, and what earlier intact results `run` reuses from still count."""
    tiny_project = tiny_project_ran()
    data = tiny_project / ".subsetctl" / "data"

    def work() -> str:
        return str({s.name: s for s in plan_project(tiny_project)[2]}["data"].work)

    arrow = "b/train/data-00000-of-00001.arrow"
    size = (data / arrow).stat().st_size
    os.truncate(data / arrow, 100)
    assert work() == ("the target and 3 sources (all 4 prepared again: the prepared files fail their checksums "
                      f"({arrow} has size 100, expected {size}): `run` discards them; the target counted)")
    reporter = SilentReporter()
    run_project(tiny_project, until="data", reporter=reporter)
    assert json.loads((data / "manifest.json").read_text())["summary"]["reused"] == []
    assert not any("reused as an earlier run prepared them" in m for m in reporter.messages), reporter.messages
    with (tiny_project / "a.jsonl").open("a") as fh:  # the results above become the previous ones, intact
        fh.write('{"prompt": "9+9=", "response": "18"}\n')
    run_project(tiny_project, until="data")
    (data / arrow).unlink()  # the new results damaged: the previous ones give the target, b and bad
    assert work() == ("the target and 3 sources (1 of 4 prepared again (a), 3 reused; the prepared files fail their "
                      f"checksums ({arrow} is missing): `run` discards them, none reused from them; the target counted)")
    reporter = SilentReporter()
    run_project(tiny_project, until="data", reporter=reporter)
    assert ("data: 1 of 4 sources prepared again (a), 3 reused as an earlier run prepared them (same spec and "
            "files; the target counted)") in reporter.messages, reporter.messages


def test_plan_says_how_many_adapters_the_last_evaluation_tested(tiny_project_ran) -> None:
    """evaluate's summary records how many adapters it tested, and `plan` says its last run's
    seconds were for them ("the 2 fine-tuned adapters"), where it said only "each fine-tuned
    adapter" (the count was lost once finetune re-runs). The summary is in no fingerprint: a
    manifest without the count (an earlier subsetctl's) stays up to date."""
    tiny_project = tiny_project_ran()
    manifest_path = tiny_project / ".subsetctl" / "evaluate" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    n = manifest["summary"]["adapters"]
    assert n == json.loads((tiny_project / ".subsetctl" / "finetune" / "manifest.json").read_text())["summary"]["runs"]
    strategies = "search.strategies=[{name: exhaustive}, {name: gradient_similarity}, {name: forward}]"
    evaluate = {s.name: s for s in plan_project(tiny_project, [strategies])[2]}["evaluate"]
    assert evaluate.work.startswith("the target's test split through each fine-tuned adapter")  # finetune re-runs
    rows = manifest["summary"]["n_test"]
    assert evaluate.last_work == (f"the target's test split ({rows} rows) through the {n} fine-tuned adapters, "
                                  "generating up to 3 tokens")
    del manifest["summary"]["adapters"]
    manifest_path.write_text(json.dumps(manifest))
    statuses = plan_project(tiny_project)[2]
    assert not any(s.will_run for s in statuses)
    assert {s.name: s for s in plan_project(tiny_project, [strategies])[2]}["evaluate"].last_work is None


def test_the_search_summary_counts_the_stored_estimates_it_reused_as_its_notice_does(tiny_project_ran) -> None:
    """A re-run search said "8 subset estimates taken from the store" while its summary (the
    manifest's, report.json's stages.search.summary) said "reused": 14, a count of lookups (a
    subset two strategies asked for counted twice). "reused" counts distinct subsets now; the
    lookups are "lookups_answered_without_solving"."""
    tiny_project = tiny_project_ran("search")
    rep = SilentReporter()
    run_project(tiny_project, ["search.strategies=[{name: exhaustive}, {name: forward}]"], until="search",
                reporter=rep)
    summary = json.loads((tiny_project / ".subsetctl" / "search" / "manifest.json").read_text())["summary"]
    [told] = [m for m in rep.messages if "subset estimates taken from the store" in m]
    assert told.startswith(f"search: {summary['reused']} subset estimates taken"), (told, summary)
    assert summary["computed_now"] == 0 and summary["lookups_answered_without_solving"] > summary["reused"], summary


def test_a_causal_lm_answering_in_class_words_gets_macro_f1_over_its_answers(tiny_project_ran) -> None:
    """A causal-LM target whose answers are class words ("positive"/"negative") got only exact
    match in the report, where a classifier gets macro-F1 beside accuracy: its test metrics
    have macro-F1 over the exact answers too (each seed's in per_run.json), and a target of
    free answers (the tiny project's sums) has none."""
    tiny_project = tiny_project_ran()  # a copy of the free answers' run
    free = json.loads((tiny_project / "report.json").read_text())["test_metrics"]
    assert free and all("macro_f1_mean" not in m for m in free.values()), free
    rows = [{"prompt": f"review {i}:", "response": ["positive", "negative"][i % 3 == 0]} for i in range(20)]
    (tiny_project / "target.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_project(tiny_project, ["search.strategies=[{name: exhaustive}]"])
    metrics = json.loads((tiny_project / "report.json").read_text())["test_metrics"]
    assert metrics and all(0 <= m["macro_f1_mean"] <= 1 and len(m["macro_f1_per_seed"]) == m["seeds"]
                           for m in metrics.values()), metrics
    text = CliRunner().invoke(main, ["report", str(tiny_project)], terminal_width=200).output
    assert "macro-F1" in text


def test_finetune_lets_go_of_one_fine_tunes_model_before_it_loads_the_next(tiny_project_ran, monkeypatch) -> None:
    """Each fine-tune loads the base model afresh; the one before it was still held while the
    next loaded, so a stage of several fine-tunes peaked at two models (a 0.47B model in
    bfloat16 on a CPU: 4.6 GB instead of 3.3 GB, measured with /usr/bin/time)."""
    import weakref

    from subsetctl.stages import common

    loaded: list[weakref.ref] = []
    alive_at_load: list[int] = []
    real = common.lora_model

    def counting(ctx, *args, **kwargs):
        alive_at_load.append(sum(ref() is not None for ref in loaded))
        model, tokenizer, info = real(ctx, *args, **kwargs)
        loaded.append(weakref.ref(model))
        return model, tokenizer, info

    tiny_project = tiny_project_ran("search")
    monkeypatch.setattr(common, "lora_model", counting)
    run_project(tiny_project, until="finetune")
    assert len(alive_at_load) >= 2, alive_at_load
    assert alive_at_load == [0] * len(alive_at_load), alive_at_load


def _offline_hub_cache_of_two_commits(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch,
                                      main: str) -> Path:
    """HF_HUB_OFFLINE set and a local hub cache built by hand holding `tinyorg/tinyllama` at
    commits a...a and b...b (the tiny model's files), ``main`` its refs/main: its repo folder."""
    import huggingface_hub.constants as hc

    cache = tmp_path_factory.mktemp("hub")
    repo = cache / "models--tinyorg--tinyllama"
    for commit in ("a" * 40, "b" * 40):
        shutil.copytree(tiny_llama, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(main)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    return repo


def test_model_revision_pins_the_commit_the_model_stages_load_and_is_among_their_inputs(
        tiny_project: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """`model.revision` loads that revision of a hub id from the local cache offline (a tag
    through its refs), not the cache's main; meta_init records the commit it loaded, the stages
    are up to date with it, and setting or unsetting it makes them stale (it is among their
    inputs where set, as the commit it resolves to: a branch or tag or the sha it names alike, a
    branch that moved not)."""
    from subsetctl.project import Project
    from subsetctl.report.build import hub_revision_changed_note
    from subsetctl.spec import load_spec

    repo = _offline_hub_cache_of_two_commits(tiny_llama, tmp_path_factory, monkeypatch, main="b" * 40)
    (repo / "refs" / "v1").write_text("a" * 40)
    pinned = ["model.source=tinyorg/tinyllama", "model.revision=v1"]
    run_project(tiny_project, pinned, until="meta_init")
    summary = Project(tiny_project).read_results_manifest("meta_init")["summary"]
    assert summary["model"]["revision"] == "a" * 40, summary["model"]

    def meta_init(overrides: list[str]) -> str:
        return {s.name: s for s in plan_project(tiny_project, overrides)[2]}["meta_init"].state

    assert meta_init(pinned) == "up to date"
    assert meta_init(pinned[:1]) != "up to date"  # unset: the cache's main, another input
    # the commit is the input, not the spec's words: v1's sha, or another name of it, is the same input
    assert meta_init([*pinned[:1], "model.revision=" + "a" * 40]) == "up to date"
    (repo / "refs" / "release").write_text("a" * 40)
    assert meta_init([*pinned[:1], "model.revision=release"]) == "up to date"
    (repo / "refs" / "v1").write_text("b" * 40)  # the tag (a branch) moved: other weights, stale
    assert meta_init(pinned) != "up to date"
    reasons = {s.name: s for s in plan_project(tiny_project, pinned)[2]}["meta_init"].reasons
    assert reasons[0] == (f"model.revision v1 is commit {'b' * 40} in the local Hugging Face cache now, and these "
                          f"results were made from {'a' * 40} (a branch or tag that moved, or another revision "
                          "set)"), reasons  # (not "spec changed": its words did not)
    # (and not the note of an unpinned hub id's newer main, that the stages stay up to date)
    assert hub_revision_changed_note(Project(tiny_project), load_spec(tiny_project / "subsetctl.yaml", pinned)) is None


def _run_by_an_earlier_subsetctl_at_v1_then_moved(tiny_project: Path, tiny_llama: Path,
                                                  tmp_path_factory: pytest.TempPathFactory, monkeypatch,
                                                  until: str) -> list[str]:
    """Run ``tiny_project`` up to ``until`` on the hub id `tinyorg/tinyllama` with
    `model.revision: v1` (commit a...a), recorded and keyed as 70b77598 did (the revision as
    written), then move v1 to b...b; the overrides that pin it."""
    import subsetctl.stages.common

    repo = _offline_hub_cache_of_two_commits(tiny_llama, tmp_path_factory, monkeypatch, main="b" * 40)
    (repo / "refs" / "v1").write_text("a" * 40)
    pinned = ["model.source=tinyorg/tinyllama", "model.revision=v1"]
    with monkeypatch.context() as earlier:
        earlier.setattr(subsetctl.stages.common, "model_at_commit", lambda model, spec: model)
        run_project(tiny_project, pinned, until=until)
    (repo / "refs" / "v1").write_text("b" * 40)  # the tag moved
    return pinned


def test_a_model_revision_recorded_as_written_by_an_earlier_subsetctl_whose_tag_moved_is_warned_of(
        tiny_project: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Results an earlier subsetctl made with `model.revision: v1` recorded the revision as
    written, so they stay up to date after v1 moves (as the spec's words are the same): plan
    must still warn that the cache now serves another commit than they were made from, as
    that subsetctl did, not say nothing because a set model.revision counts as its commit."""
    from subsetctl.project import Project

    pinned = _run_by_an_earlier_subsetctl_at_v1_then_moved(tiny_project, tiny_llama, tmp_path_factory, monkeypatch,
                                                           until="meta_init")
    assert Project(tiny_project).read_results_manifest("meta_init")["inputs"]["slice"]["model"]["revision"] == "v1"
    reporter = SilentReporter()
    statuses = plan_project(tiny_project, pinned, reporter=reporter)[2]
    assert {s.name: s for s in statuses}["meta_init"].state == "up to date"  # (as recorded: the words match)
    (said,) = [w for w in reporter.warnings if "commit" in w]
    assert (f"were made from 'tinyorg/tinyllama' at commit {'a' * 40}, but the local Hugging Face cache now "
            f"serves commit {'b' * 40}: the stages stay up to date (they recorded model.revision v1 as written") \
        in said, said


def test_adapters_an_earlier_subsetctl_cached_under_a_model_revision_as_written_are_not_taken_after_it_moved(
        tiny_project: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """An earlier subsetctl keyed its cached fine-tunes by `model.revision` as written (`v1`),
    which names no commit: after v1 moved to other weights, a finetune stage that ran again
    (more seeds) reused them as trained from the new commit, base_model.json and report.json
    saying so. They are trained again; the cache's keys by the commit are as before."""
    from subsetctl.project import Project
    from subsetctl.stages.finetune import BASE_MODEL_FILE

    pinned = _run_by_an_earlier_subsetctl_at_v1_then_moved(tiny_project, tiny_llama, tmp_path_factory, monkeypatch,
                                                           until="finetune")
    reporter = SilentReporter()
    run_project(tiny_project, [*pinned, "finetune.seeds=2"], until="finetune", reporter=reporter)
    assert not [m for m in reporter.messages if "reused from the cache" in m], reporter.messages
    record = json.loads((Project(tiny_project).results_dir("finetune") / BASE_MODEL_FILE).read_text())
    assert record["revision"] == "b" * 40 and set(record["run_revisions"].values()) == {"b" * 40}, record


def test_a_model_revision_downloaded_by_the_run_is_recorded_as_its_commit(
        tiny_project: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """A `model.revision` the local cache does not resolve when meta_init starts (the run
    downloads it) is in its inputs as written then; the run records them as the commit it
    resolves to once the stage has run, as the next plan counts them: meta_init stays up to
    date, not stale for the download itself."""
    import subsetctl.hub
    from subsetctl.project import Project
    from subsetctl.stages.meta_init import MetaInitStage

    _offline_hub_cache_of_two_commits(tiny_llama, tmp_path_factory, monkeypatch, main="a" * 40)
    downloaded, resolve, train = [], subsetctl.hub.cached_revision, MetaInitStage.run
    monkeypatch.setattr(subsetctl.hub, "cached_revision", lambda *a, **k: resolve(*a, **k) if downloaded else None)

    def run(self, ctx):  # (the stage's download: the cache resolves it from now on)
        downloaded.append(True)
        return train(self, ctx)

    monkeypatch.setattr(MetaInitStage, "run", run)
    pinned = ["model.source=tinyorg/tinyllama", "model.revision=main"]
    run_project(tiny_project, pinned, until="meta_init")
    recorded = Project(tiny_project).read_results_manifest("meta_init")["inputs"]["slice"]["model"]
    assert recorded["revision"] == "a" * 40, recorded
    assert {s.name: s for s in plan_project(tiny_project, pinned)[2]}["meta_init"].state == "up to date"

def test_fine_tunes_reused_from_the_cache_keep_the_commit_they_were_trained_from(
        tiny_project: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """A fine-tune reused from the cache after a newer revision of the hub model was downloaded
    was recorded as trained from the new commit (base_model.json's one revision): each adapter's
    commit is kept with it in the cache, base_model.json and report.json name those of another
    commit, and the finetune stage and plan say so."""
    from subsetctl.api import warn_hub_revision_changed
    from subsetctl.project import Project
    from subsetctl.report.build import build_report, hub_revision_changed_note
    from subsetctl.spec import load_spec
    from subsetctl.stages.finetune import BASE_MODEL_FILE

    class Warnings(SilentReporter):
        def __init__(self) -> None:
            super().__init__()
            self.said: list[str] = []

        def warn(self, message: Any) -> None:
            self.said.append(str(message))

    repo = _offline_hub_cache_of_two_commits(tiny_llama, tmp_path_factory, monkeypatch, main="a" * 40)
    hub = ["model.source=tinyorg/tinyllama"]
    run_project(tiny_project, hub, until="finetune")
    project = Project(tiny_project)
    first = json.loads((project.results_dir("finetune") / BASE_MODEL_FILE).read_text())
    assert first["revision"] == "a" * 40 and set(first["run_revisions"].values()) == {"a" * 40}, first
    (repo / "refs" / "main").write_text("b" * 40)  # a newer main downloaded
    reporter = Warnings()
    run_project(tiny_project, [*hub, "finetune.seeds=2"], until="finetune", reporter=reporter)
    record = json.loads((project.results_dir("finetune") / BASE_MODEL_FILE).read_text())
    assert record["revision"] == "b" * 40, record
    assert {k: c for k, c in record["run_revisions"].items() if c == "a" * 40} == first["run_revisions"], record
    assert "b" * 40 in record["run_revisions"].values(), record  # (the second seed's, trained now)
    assert any("reused from the cache, were trained from tinyorg/tinyllama at commit " + "a" * 40 in said
               for said in reporter.said), reporter.said
    report = build_report(project)
    assert set(report["adapter_base_model_revisions"].values()) == {"a" * 40}, report["adapter_base_model_revisions"]
    assert len(report["adapter_base_model_revisions"]) == len(first["run_revisions"])
    # (meta_init's own commit changed too: plan names that first; with it back, the adapters' note)
    spec = load_spec(tiny_project / "subsetctl.yaml", [*hub, "finetune.seeds=2"])
    assert "meta_init stage's results" in hub_revision_changed_note(project, spec)
    (repo / "refs" / "main").write_text("a" * 40)  # meta_init's commit again: the second seed's adapters are not
    trained_now = len(record["run_revisions"]) - len(first["run_revisions"])
    plan_warnings = Warnings()
    warn_hub_revision_changed(plan_warnings, project, spec)
    assert plan_warnings.said == [hub_revision_changed_note(project, spec)]
    assert plan_warnings.said[0].startswith(f"{trained_now} of the finetune stage's adapters (reused from the cache, "
                                            "or trained while the cache served another commit) were trained from "
                                            f"'tinyorg/tinyllama' at commit {'b' * 40}, not {'a' * 40}"), plan_warnings.said


def test_a_finetune_rerun_with_the_same_adapters_but_another_base_model_record_rewrites_the_report(
        tiny_project: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """base_model.json is left out of the finetune stage's output digest (the evaluation does
    not read it, and its folder changes with a move): a finetune re-run restoring every adapter
    from the cache after a newer commit was downloaded (`run --until finetune`) left the same digest,
    so the report stayed "up to date" without its note on the adapters trained from the old commit. The report counts
    the record itself now: it alone re-runs, and names them."""
    from subsetctl.api import plan_project
    from subsetctl.project import Project

    repo = _offline_hub_cache_of_two_commits(tiny_llama, tmp_path_factory, monkeypatch, main="a" * 40)
    hub = ["model.source=tinyorg/tinyllama"]
    run_project(tiny_project, hub)
    project = Project(tiny_project)
    assert "adapter_base_model_revisions" not in json.loads((tiny_project / "report.json").read_text())
    (repo / "refs" / "main").write_text("b" * 40)  # a newer main downloaded (a hub id is known by its name)
    digest = project.read_manifest("finetune")["output_digest"]
    shutil.rmtree(project.stage_dir("finetune"))  # re-run: each adapter restored from the cache
    run_project(tiny_project, hub, until="finetune")  # (a run of the whole rewrites the report for its time table)
    assert project.read_manifest("finetune")["output_digest"] == digest  # the same adapters
    planned = {s.name: s.reasons for s in plan_project(tiny_project, hub)[2] if s.will_run}
    assert planned == {"report": [("the finetune stage's adapters trained from another commit of the hub model than "
                                  "it records now (its base_model.json, which the report names them from) are not "
                                  "those the report names")]}, planned
    ran = [r["stage"] for r in run_project(tiny_project, hub) if r["action"] == "ran"]
    assert ran == ["report"], ran  # (evaluate reads the same adapters: up to date)
    report = json.loads((tiny_project / "report.json").read_text())
    assert report["adapter_base_model_revision"] == "b" * 40
    assert set(report["adapter_base_model_revisions"].values()) == {"a" * 40}, report
    assert all(not s.will_run for s in plan_project(tiny_project, hub)[2])


def test_a_finetune_stage_resumed_keeps_the_commits_of_the_fine_tunes_finished_before(
        tiny_project: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """The fine-tunes a finetune stage stopped partway had finished (kept in its runs.json, not
    taken from the cache) keep the commit they were trained from in base_model.json: it is
    written as the runs finish, not only at the stage's end."""
    from subsetctl.modeling import train
    from subsetctl.project import Project
    from subsetctl.stages.finetune import BASE_MODEL_FILE

    _offline_hub_cache_of_two_commits(tiny_llama, tmp_path_factory, monkeypatch, main="a" * 40)
    hub = ["model.source=tinyorg/tinyllama"]
    run_project(tiny_project, hub, until="search")
    real, calls = train.train_lora, []

    def stopped_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(train, "train_lora", stopped_at_the_second)
        with pytest.raises(KeyboardInterrupt):
            run_project(tiny_project, hub, until="finetune")
    run_project(tiny_project, hub, until="finetune")
    project = Project(tiny_project)
    runs = json.loads((project.results_dir("finetune") / "runs.json").read_text())
    record = json.loads((project.results_dir("finetune") / BASE_MODEL_FILE).read_text())
    assert record["run_revisions"] == {key: "a" * 40 for key in runs}, record


def test_plan_says_when_the_hub_cache_now_serves_another_commit_than_the_results_were_made_from(
        tiny_project: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """A project on a hub id stays up to date when a newer revision is downloaded into the
    local cache (a hub id is known by its name), so a stage that runs again later (a new
    source, more seeds) loaded the new commit beside results of the old, and nothing said so.
    The model stages now record the commit they loaded, and `plan` and `run` warn where the
    cache serves another, with the snapshot folder that keeps the old; not while it is the same."""
    repo = _offline_hub_cache_of_two_commits(tiny_llama, tmp_path_factory, monkeypatch, main="a" * 40)
    overrides = ["model.source=tinyorg/tinyllama"]
    run_project(tiny_project, overrides, until="meta_init")
    reporter = SilentReporter()
    plan_project(tiny_project, overrides, reporter=reporter)
    assert not [w for w in reporter.warnings if "commit" in w], reporter.warnings
    (repo / "refs" / "main").write_text("b" * 40)  # a newer revision downloaded since
    for check in (lambda r: plan_project(tiny_project, overrides, reporter=r),
                  lambda r: run_project(tiny_project, overrides, until="meta_init", reporter=r)):
        reporter = SilentReporter()
        check(reporter)
        (said,) = [w for w in reporter.warnings if "commit" in w]
        assert said.startswith(f"The meta_init stage's results (and those after it) were made from 'tinyorg/tinyllama' "
                               f"at commit {'a' * 40}, but the local Hugging Face cache now serves commit {'b' * 40}: "
                               "the stages stay up to date"), said
        assert (f"to keep the old, set model.revision: {'a' * 40} (or model.source to its snapshot folder, "
                f"{repo / 'snapshots' / ('a' * 40)}; the model stages") in said, said


def test_plan_during_a_run_downloading_a_model_revision_does_not_say_the_stage_runs_again(
        tiny_project: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """A `model.revision` the cache did not resolve as meta_init started is in its work marker as
    written; once the stage downloaded it, plan's inputs name the commit, and plan said of the
    running stage that `run` computes it again after that run, as if the spec had been edited:
    the run records the commit too, and the stage is up to date after it."""
    import subprocess
    import sys

    import subsetctl.hub
    from subsetctl.api import load_project, make_pipeline

    _offline_hub_cache_of_two_commits(tiny_llama, tmp_path_factory, monkeypatch, main="a" * 40)
    downloaded, resolve = [], subsetctl.hub.cached_revision
    monkeypatch.setattr(subsetctl.hub, "cached_revision", lambda *a, **k: resolve(*a, **k) if downloaded else None)
    pinned = ["model.source=tinyorg/tinyllama", "model.revision=main"]
    run_project(tiny_project, pinned, until="data")
    code = ("import time; from pathlib import Path; from subsetctl.project import Project\n"
            f"with Project(Path({str(tiny_project)!r})).lock():\n    print('locked', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        pipeline = make_pipeline(*load_project(tiny_project, pinned))
        meta_init = {s.name: s for s in pipeline.plan()}["meta_init"]
        assert meta_init.inputs["slice"]["model"]["revision"] == "main"  # not resolved yet: as the stage starts
        stage = next(s for s in pipeline.stages if s.name == "meta_init")
        pipeline._prepare_work_dir(stage, meta_init.fingerprint, meta_init.inputs)  # as that run marks its work
        marker = tiny_project / ".subsetctl" / "meta_init" / "work.json"
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "pid": holder.pid}))
        downloaded.append(True)  # (the stage's download: the cache resolves main from now on)
        running = {s.name: s for s in plan_project(tiny_project, pinned)[2]}["meta_init"]
    finally:
        holder.kill()
        holder.wait()
    assert running.state == "running" and running.reasons == [
        f"`subsetctl run` (PID {holder.pid}) is computing it now"], running.reasons


def test_a_resumed_meta_init_takes_the_loss_before_training_from_its_checkpoints(
        tiny_project_ran, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """meta_init stopped partway and resumed evaluated the untrained adapter on every validation
    row again, for the number it had found before; its checkpoints now keep it. Evaluations of
    the untrained adapter (LoRA B all 0) are counted: one in the stopped run, none resumed."""
    from subsetctl.modeling import train

    whole = tiny_project_ran("meta_init", into=tmp_path_factory.mktemp("whole"))
    expected = json.loads((whole / ".subsetctl" / "meta_init" / "manifest.json").read_text())["summary"]
    tiny_project = tiny_project_ran("data")
    real_train, real_evaluate, untrained = train.train_lora, train.evaluate_loss, []

    def counted(model, *args, **kwargs):
        lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
        if lora_b and all(not p.any() for p in lora_b):
            untrained.append(1)
        return real_evaluate(model, *args, **kwargs)

    def stopped_at_step_3(*args, progress, **kwargs):
        def stopping(step, total, loss, eval_loss):
            progress(step, total, loss, eval_loss)
            if step == 3:  # (after step 2's checkpoint)
                raise KeyboardInterrupt
        return real_train(*args, progress=stopping, **kwargs)

    monkeypatch.setattr(train, "evaluate_loss", counted)
    with monkeypatch.context() as patched:
        patched.setattr(train, "train_lora", stopped_at_step_3)
        with pytest.raises(KeyboardInterrupt):
            run_project(tiny_project, until="meta_init")
    assert untrained == [1]
    run_project(tiny_project, until="meta_init")
    summary = json.loads((tiny_project / ".subsetctl" / "meta_init" / "manifest.json").read_text())["summary"]
    assert untrained == [1] and summary["resumed_from"] == 2
    assert summary["start_val_loss"] == expected["start_val_loss"]
    assert summary["best_val_loss"] == pytest.approx(expected["best_val_loss"], abs=1e-6)
