"""The calibrate stage's per-kind choice, on stand-in estimators (no model needed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from subsetctl.estimate.base import EstimateBatch
from subsetctl.reporter import SilentReporter
from subsetctl.stages.calibrate import CalibrateStage


class Fixed:
    """An estimator returning given losses for the subsets in the given order."""

    def __init__(self, values: list[float]) -> None:
        self.values = np.array(values)

    def masks_for(self, subsets: list[list[str]]) -> np.ndarray:
        return np.eye(len(subsets), dtype=bool)

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        n = len(masks)
        return EstimateBatch(loss=self.values[:n], w_norm=np.zeros(n), iterations=np.ones(n, int),
                             converged=np.ones(n, bool))


class Unconverged(Fixed):
    """:class:`Fixed`, its solves of the first ``n`` subsets flagged as not converged."""

    def __init__(self, values: list[float], n: int = 2) -> None:
        super().__init__(values)
        self.n = n

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        batch = super().estimate(masks)
        batch.converged[:self.n] = False
        return batch


def _run(raw_fast: list[float], raw_sgd: list[float], truth: list[float]) -> tuple[dict, SilentReporter]:
    reporter = SilentReporter()
    spec = SimpleNamespace(calibrate=SimpleNamespace(enabled=True), estimate=SimpleNamespace(lam=1.0))
    ctx = SimpleNamespace(spec=spec, reporter=reporter)
    rows = [{"kind": "ce", "index": i, "subset": [f"s{i}"], "true": t} for i, t in enumerate(truth)]
    estimators = {("fast", 1.0): Fixed(raw_fast), ("linear_sgd", 1.0): Fixed(raw_sgd)}
    out = CalibrateStage._calibrate_kind(ctx, rows, ["fast", "linear_sgd"], [1.0], estimators)
    return out, reporter


def test_the_better_ranking_estimator_is_chosen_and_recorded() -> None:
    truth = [0.5, 0.7, 0.6, 0.9, 0.8]
    out, reporter = _run([0.9, 0.5, 0.6, 0.7, 0.8], [x * 2 + 0.1 for x in truth], truth)
    assert out["estimator"] == "linear_sgd" and out["calibration"]["spearman"] == 1.0
    assert set(out["candidates"]) == {"fast", "linear_sgd"}
    assert out["loo_median_rel_err_with_selection"] < 1e-9
    assert not reporter.warnings


def test_weak_rank_agreement_is_warned_about() -> None:
    truth = [0.5, 0.7, 0.6, 0.9, 0.8]
    out, reporter = _run([0.5, 0.9, 0.8, 0.6, 0.7], [0.6, 0.5, 0.9, 0.8, 0.7], truth)
    assert 0 < out["calibration"]["spearman"] < 0.5 and out["calibration"]["slope"] > 0
    assert any("weak evidence" in w for w in reporter.warnings)
    # estimates that rank the runs against the truth fit a negative slope: calibration is off, said so
    out, reporter = _run([0.9, 0.5, 0.6, 0.7, 0.8], [0.8, 0.7, 0.9, 0.5, 0.6], truth)
    assert out["calibration"]["spearman"] < 0 and not out["calibration"]["enabled"]
    assert any("(not positive)" in w for w in reporter.warnings)


def test_lambda_is_chosen_from_the_grid_only_so_one_value_pins_it() -> None:
    """The spec's estimate.lam is estimated too (kept when lambda cannot be chosen) but is
    not a candidate: `calibrate.lambda_grid: [0.01]` used to end with lambda 1."""
    truth = [0.5, 0.7, 0.6, 0.9, 0.8]
    spec = SimpleNamespace(calibrate=SimpleNamespace(enabled=True), estimate=SimpleNamespace(lam=1.0))
    ctx = SimpleNamespace(spec=spec, reporter=SilentReporter())
    rows = [{"kind": "ce", "index": i, "subset": [f"s{i}"], "true": t} for i, t in enumerate(truth)]
    estimators = {("fast", 1.0): Fixed(truth), ("fast", 0.01): Fixed([0.9, 0.5, 0.6, 0.7, 0.8])}
    out = CalibrateStage._calibrate_kind(ctx, rows, ["fast"], [0.01, 1.0], estimators, [0.01])
    assert out["calibration"]["lam"] == 0.01  # though lambda 1 ranks the runs perfectly


def test_an_estimator_missing_some_lambdas_competes_on_the_rest() -> None:
    """linear_sgd refuses lambdas where its simulated weight decay diverges (lr*lambda >= 1);
    the stage leaves those pairs out, and a candidate with none left drops out."""
    truth = [0.5, 0.7, 0.6, 0.9, 0.8]
    spec = SimpleNamespace(calibrate=SimpleNamespace(enabled=True), estimate=SimpleNamespace(lam=1.0))
    ctx = SimpleNamespace(spec=spec, reporter=SilentReporter())
    rows = [{"kind": "ce", "index": i, "subset": [f"s{i}"], "true": t} for i, t in enumerate(truth)]
    shuffled = [0.9, 0.5, 0.6, 0.7, 0.8]
    estimators = {("fast", 1.0): Fixed(shuffled), ("fast", 10.0): Fixed(shuffled), ("linear_sgd", 1.0): Fixed(truth)}
    out = CalibrateStage._calibrate_kind(ctx, rows, ["fast", "linear_sgd"], [1.0, 10.0], estimators)
    assert (out["estimator"], out["calibration"]["lam"]) == ("linear_sgd", 1.0)
    assert set(out["candidates"]) == {"fast", "linear_sgd"}
    out = CalibrateStage._calibrate_kind(ctx, rows, ["fast", "linear_sgd"], [10.0], {("fast", 10.0): Fixed(truth)})
    assert set(out["candidates"]) == {"fast"}


def test_a_diverged_fine_tune_is_left_out_of_the_per_lambda_spearman() -> None:
    """A NaN real loss made every lambda's recorded Spearman NaN (null in the JSON)."""
    truth = [0.5, 0.7, float("nan"), 0.6, 0.9, 0.8]
    out, _ = _run([0.5, 0.7, 0.1, 0.6, 0.9, 0.8], [0.5, 0.7, 0.1, 0.6, 0.9, 0.8], truth)
    assert out["spearman_raw_by_lambda"] == {"1.0": 1.0}
    assert out["true"][2] is None


def test_a_subset_without_an_estimate_is_left_out_of_the_per_lambda_spearman() -> None:
    """As a diverged fine-tune is: a NaN estimate (a failed solve) leaves its subset out of
    the recorded Spearman, as calibration leaves it out, instead of making it NaN."""
    truth = [0.5, 0.7, 0.65, 0.6, 0.9, 0.8]
    raw = [0.5, 0.7, float("nan"), 0.6, 0.9, 0.8]
    out, _ = _run(raw, raw, truth)
    assert out["spearman_raw_by_lambda"] == {"1.0": 1.0}


def test_calibration_off_drops_an_extra_candidate_that_refuses_the_spec_lambda() -> None:
    """With every real fine-tune diverged calibration is off and falls back to the spec's
    lambda; linear_sgd, an extra candidate that refuses it, was looked up there anyway
    (an internal KeyError)."""
    spec = SimpleNamespace(calibrate=SimpleNamespace(enabled=True), estimate=SimpleNamespace(lam=1.0))
    ctx = SimpleNamespace(spec=spec, reporter=SilentReporter())
    rows = [{"kind": "ce", "index": i, "subset": [f"s{i}"], "true": None} for i in range(5)]
    estimators = {("fast", 1.0): Fixed([0.5, 0.7, 0.6, 0.9, 0.8]), ("linear_sgd", 0.1): Fixed([0.5] * 5)}
    out = CalibrateStage._calibrate_kind(ctx, rows, ["fast", "linear_sgd"], [0.1, 1.0], estimators)
    assert (out["estimator"], out["calibration"]["lam"], out["calibration"]["enabled"]) == ("fast", 1.0, False)
    assert set(out["candidates"]) == {"fast"}


def test_no_held_out_error_is_claimed_when_calibration_turned_itself_off() -> None:
    """Real fine-tunes that all ended at one loss turn calibration off; the error of the
    choice held out was still computed on them, a near-zero figure beside "LOO –"."""
    truth = [1.616 + 1e-11 * i for i in (0, 2, 1, 4, 3, 5)]
    out, reporter = _run([0.5, 0.7, 0.6, 0.9, 0.8, 1.0], [0.5, 0.7, 0.6, 0.9, 0.8, 1.0], truth)
    assert out["calibration"]["enabled"] is False and out["calibration"]["loo_median_rel_err"] is None
    assert out["loo_median_rel_err_with_selection"] is None
    assert any("same loss" in w for w in reporter.warnings)


def test_repeats_that_diverged_are_named_in_the_notes_the_report_shows() -> None:
    """With verify.repeats, a subset one of whose repeats diverged keeps the mean of the
    others; only the run's warning said a fine-tune was left out, and the report (its
    notes come from here) said nothing."""
    spec = SimpleNamespace(calibrate=SimpleNamespace(enabled=True), estimate=SimpleNamespace(lam=1.0))
    ctx = SimpleNamespace(spec=spec, reporter=SilentReporter())
    repeats = [[0.5, 0.5, 0.5], [0.7, None, 0.7], [0.6, 0.6, 0.6], [0.9, None, None], [None, None, None]]
    rows = [{"kind": "ce", "index": i, "subset": [f"s{i}"], "true_repeats": reps,
             "true": float(np.mean([x for x in reps if x is not None])) if any(reps) else None}
            for i, reps in enumerate(repeats)]
    out = CalibrateStage._calibrate_kind(ctx, rows, ["fast"], [1.0], {("fast", 1.0): Fixed([0.5, 0.7, 0.6, 0.9, 0.8])})
    notes = out["calibration"]["notes"]
    assert "s1: 1 of 3 repeats diverged (left out); its true loss is the mean of the other 2." in notes
    assert "s3: 2 of 3 repeats diverged (left out); its true loss is the mean of the other 1." in notes
    assert not any(note.startswith(("s0:", "s2:", "s4:")) for note in notes)  # s4: calibrate's own note
    assert any("s4 excluded" in note for note in notes)


def test_the_missing_error_with_the_choice_held_out_is_explained() -> None:
    """With exactly 4 usable subsets calibration runs, but the error with the choice held
    out needs 4 others for each: the table showed "–" and nothing said why."""
    truth = [0.5, 0.7, 0.6, 0.9]
    out, _ = _run([0.5, 0.7, 0.6, 0.9], [0.5, 0.7, 0.6, 0.9], truth)
    assert out["calibration"]["enabled"] and out["loo_median_rel_err_with_selection"] is None
    assert any("needs at least 5 usable fine-tuned subsets" in note and "there are 4" in note
               for note in out["calibration"]["notes"])
    out, _ = _run([0.5, 0.7, 0.6, 0.9, 0.8], [0.5, 0.7, 0.6, 0.9, 0.8], [0.5, 0.7, 0.6, 0.9, 0.8])
    assert out["loo_median_rel_err_with_selection"] is not None
    assert not any("needs at least 5" in note for note in out["calibration"]["notes"])


def test_a_reversing_map_turns_calibration_off_with_a_warning() -> None:
    """The estimates rank the real fine-tunes backwards: the fitted slope is negative. The
    map was used (calibrated values ranking the search's pick last) and only a note in
    calibration.json said so."""
    truth = [0.5, 0.7, 0.6, 0.9, 0.8]
    out, reporter = _run([1.0 - t for t in truth], [1.0 - t for t in truth], truth)
    assert out["calibration"]["enabled"] is False and out["calibration"]["spearman"] == -1.0
    assert out["calibrated"] == out["raw"] and out["loo_median_rel_err_with_selection"] is None
    assert any("slope -1 (not positive)" in w and "reverse order" in w for w in reporter.warnings)


def test_a_new_lambda_grid_with_calibration_off_reruns_the_report_not_the_search(tiny_project_ran) -> None:
    """With calibrate.enabled false the search uses estimate.lam, whatever the grid, but a new
    calibrate.lambda_grid re-ran it: calibrate's verify table (which shows the grid) changed
    its output digest. The table's figures now stay out of that digest (the report counts
    them itself and shows the new grid); a change the search does read re-runs it."""
    import json

    import yaml

    from subsetctl.api import run_project

    def ran(overrides: list[str]) -> list[str]:
        return [r["stage"] for r in run_project(tiny_project, overrides) if r["action"] == "ran"]

    tiny_project = tiny_project_ran("gradients")  # a copy: verify and what follows still run
    spec_file = tiny_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["verify"] = {"enabled": True, "k": 4, "steps": 2, "batch_size": 4}
    spec["calibrate"] = {"enabled": False, "lambda_grid": [0.1, 1.0]}
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    ran([])
    assert ran(["calibrate.lambda_grid=[0.1,1.0,5.0]"]) == ["calibrate", "report"]
    verify = json.loads((tiny_project / "report.json").read_text())["verify"]
    assert all(set(kind["spearman_raw_by_lambda"]) == {"0.1", "1.0", "5.0"} for kind in verify.values())
    # what the search reads changes: it re-runs
    assert "search" in ran(["calibrate.lambda_grid=[0.1,1.0,5.0]", "estimate.lam=5.0"])
    assert "search" in ran(["calibrate.lambda_grid=[5.0]", "estimate.lam=1.0", "calibrate.enabled=true"])
    selections = json.loads((tiny_project / ".subsetctl" / "search" / "selections.json").read_text())
    assert selections["calibration"]["lam"] == 5.0
    # calibration on picks lambda from the grid: a new estimate.lam (the fallback) re-runs
    # calibrate, whose choice stays, and not the search (it re-ran the search for nothing)
    on = ["calibrate.lambda_grid=[5.0]", "calibrate.enabled=true"]
    assert ran([*on, "estimate.lam=2.0"]) == ["calibrate", "report"]
    assert json.loads((tiny_project / ".subsetctl" / "search" / "selections.json").read_text()) == selections
    # nor does the report say the results were made with estimate.lam=2.0 (it credited calibrate)
    assert "estimate.lam=2.0" not in json.loads((tiny_project / "report.json").read_text()).get("overrides", {})


def test_a_new_lambda_grid_keeping_the_choice_does_not_rerun_the_finetune_stage(tiny_project_ran) -> None:
    """A value added to calibrate.lambda_grid that calibration does not choose changed the
    search's selections.json (its calibration listed every lambda's figures) and nothing it
    picks, yet re-ran the finetune stage (every adapter restored from its cache, `plan`
    saying it runs): the finetune stage reads only the search's picks now, which `plan` says.
    It re-ran the search too, for the same estimates from its store: the search reads only
    calibrate's choice (estimator, lambda, map) now, and report.json the figures from calibrate."""
    import json

    import yaml

    from subsetctl.api import plan_project, run_project

    def ran(overrides: list[str]) -> list[str]:
        return [r["stage"] for r in run_project(tiny_project, overrides) if r["action"] == "ran"]

    def chosen() -> float:
        return json.loads((tiny_project / ".subsetctl" / "search" / "selections.json").read_text())["calibration"]["lam"]

    tiny_project = tiny_project_ran("gradients")  # a copy: verify and what follows still run
    spec_file = tiny_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["verify"] = {"enabled": True, "k": 4, "steps": 2, "batch_size": 4}
    spec["calibrate"] = {"lambda_grid": [0.01, 0.1]}
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    ran([])
    before = chosen()
    wider = ["calibrate.lambda_grid=[0.01,0.1,1000]"]
    [finetune] = [status for status in plan_project(tiny_project, wider)[2] if status.name == "finetune"]
    assert finetune.conditional and "only its picks count" in " ".join(finetune.reasons), finetune.reasons
    # nor the search (it re-ran, from its store, for the same estimates: it reads calibrate's choice alone)
    [search] = [status for status in plan_project(tiny_project, wider)[2] if status.name == "search"]
    assert search.conditional and "only its choice of estimator, lambda and map counts" in " ".join(search.reasons)
    # a forced stage's note is said as well: with --force calibrate the search's line left it out, while
    # with --force search the finetune stage's kept "only its picks count"
    forced = {s.name: s for s in plan_project(tiny_project, [], force=["calibrate"])[2]}
    assert forced["search"].conditional and "only its choice of estimator, lambda and map counts" in " ".join(
        forced["search"].reasons), forced["search"].reasons
    forced = {s.name: s for s in plan_project(tiny_project, [], force=["search"])[2]}
    assert forced["finetune"].conditional and "only its picks count" in " ".join(forced["finetune"].reasons)
    assert ran(wider) == ["calibrate", "report"]
    assert chosen() == before  # the same choice (what the test is about)
    # report.json's calibration is calibrate's as it is now: 1000's figures beside the others
    calibration = json.loads((tiny_project / "report.json").read_text())["calibration"]
    assert [row["lam"] for row in calibration["per_lambda"]] == [0.01, 0.1, 1000.0] and calibration["lam"] == before
    # nor does selections.json keep figures calibrate no longer has: a new estimate.lam (the fallback, whose
    # row per_lambda had) keeps the choice and the search, whose calibration listed lambda 1's row and the
    # old grid's notes; it records the calibration the search applied now, each value as calibrate has it
    assert ran([*wider, "estimate.lam=0.5"]) == ["calibrate", "report"]
    applied = json.loads((tiny_project / ".subsetctl" / "search" / "selections.json").read_text())["calibration"]
    primary = json.loads((tiny_project / ".subsetctl" / "calibrate" / "calibration.json").read_text())["primary"]
    assert applied == {key: primary[key] for key in applied} and applied["lam"] == before, (applied, primary)
    assert set(applied) == {"estimator", "lam", "enabled", "slope", "intercept"}


def test_a_search_recorded_with_estimate_lam_stays_up_to_date(tiny_project_ran) -> None:
    """The search no longer reads estimate.lam (lambda comes from calibrate's output); one
    recorded by an earlier subsetctl with it in its slice is up to date, not re-run once, and
    a later change is not said to be one of estimate.lam."""
    import json

    from subsetctl.api import plan_project
    from subsetctl.project import fingerprint

    tiny_project = tiny_project_ran("search")  # a copy: up to date through the search
    path = tiny_project / ".subsetctl" / "search" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert "lam" not in manifest["inputs"]["slice"]["estimate"]
    assert fingerprint(manifest["inputs"]) == manifest["fingerprint"]
    manifest["inputs"]["slice"]["estimate"]["lam"] = 0.5  # as the earlier subsetctl recorded it
    manifest["fingerprint"] = fingerprint(manifest["inputs"])
    path.write_text(json.dumps(manifest))

    def search_plan(overrides: list[str]) -> object:
        return {s.name: s for s in plan_project(tiny_project, overrides, until="search")[2]}["search"]

    assert not search_plan([]).will_run
    reasons = search_plan(["estimate.estimator=exact"]).reasons
    assert reasons[:2] == ["spec changed: estimate.estimator (given in overrides: estimate.estimator=exact)",
                           "this subsetctl no longer reads estimate.lam for this stage (the spec did not change)"]


def test_a_true_finetune_search_records_none_of_the_fast_calibrations_figures() -> None:
    """With estimate.estimator: true_finetune, report.json's calibration named true_finetune
    with the Spearman (0.62), held-out error and per-lambda rows that calibrate had fitted to
    fast, and fast's note to add smaller lambdas to the grid, which the search never reads."""
    from subsetctl.estimate.calibrate import calibrate
    from subsetctl.stages.search import real_losses_calibration

    truth = np.array([0.5, 0.7, 0.6, 0.9, 0.8])
    fast = calibrate(truth, {0.01: truth * 2, 0.1: truth[::-1]})
    assert fast.enabled and fast.spearman == 1.0 and fast.notes  # (the note on the grid's smallest lambda)
    recorded = real_losses_calibration(fast, "true_finetune").to_dict()
    assert recorded["estimator"] == "true_finetune" and not recorded["enabled"]
    assert recorded["spearman"] is None and recorded["loo_median_rel_err"] is None and recorded["per_lambda"] == []
    assert recorded["notes"] == [("the search uses true_finetune, which fine-tunes for real: its estimates are real "
                                 "losses and are not calibrated")]
    assert fast.enabled and fast.spearman == 1.0  # the verify table's calibration is left as it was


def test_plan_says_what_calibration_will_decide_or_why_it_will_not() -> None:
    """plan showed nothing beside calibrate but how long it last took: a verify.k too small to
    calibrate, calibration switched off or a pinned lambda went unseen until the report."""
    from subsetctl.spec import Spec

    def work(**parts: dict) -> str:
        return CalibrateStage().work(Spec.model_validate({
            "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
            "sources": [{"name": f"s{i}", "loader": {"type": "jsonl", "path": "s.jsonl"}} for i in range(6)],
            **parts}))

    on = {"enabled": True, "k": 8}
    assert work(verify=on) == ("the choice of lambda among the 6 of calibrate.lambda_grid (0.01 to 10) by rank "
                               "agreement, and an affine map fitted to the ce fine-tunes of verify's 8 subsets")
    assert work(verify=on, calibrate={"lambda_grid": [0.3]}) == (
        "lambda pinned at 0.3, and an affine map fitted to the ce fine-tunes of verify's 8 subsets")
    assert work(verify={**on, "kinds": ["surrogate"]}, calibrate={"estimators": ["fast", "linear_sgd"]}).startswith(
        "the choice of lambda among the 6 of calibrate.lambda_grid (0.01 to 10) and of the estimator among fast, "
        "linear_sgd by rank agreement, and an affine map fitted to the surrogate fine-tunes")
    assert work(verify={**on, "k": 3}) == ("no calibration: raw estimates at estimate.lam = 1 (verify's 3 subsets "
                                           "are fewer than the 4 it needs)")
    assert work(verify=on, calibrate={"enabled": False}).startswith(
        "no calibration: raw estimates at estimate.lam = 1 (calibrate.enabled is false); the 6 lambdas")
    assert work() == "no calibration: raw estimates at estimate.lam = 1 (verify is off)"


def test_without_verify_the_calibrate_settings_are_recorded_as_the_spec_gives_them(tmp_path, monkeypatch) -> None:
    """cf25ac09 recorded the ``calibrate`` section at its defaults with verify off (so a new
    grid would not re-run calibrate); report.json's ``settings`` then gave the default grid, and
    `init --from-report` wrote it back, losing the user's grid for when verify is turned on
    (reverted by 42d10dd1). The spec's grid is recorded, and report.json's settings give it."""
    from subsetctl.report import build
    from subsetctl.spec import Spec

    grid = {"lambda_grid": [0.5, 2.0], "estimators": ["linear_sgd"], "against": "surrogate"}
    sliced = CalibrateStage().spec_slice(Spec.model_validate({
        "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
        "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}], "calibrate": grid}))
    assert sliced["verify.enabled"] is False and {k: sliced["calibrate"][k] for k in grid} == grid, sliced
    shown = [(CalibrateStage(), {"inputs": {"slice": sliced}})]
    monkeypatch.setattr(build, "_shown_results", lambda project, skip: iter(shown))
    settings = build.results_settings(SimpleNamespace(root=tmp_path))
    assert settings["calibrate.lambda_grid"] == [0.5, 2.0] and settings["calibrate.against"] == "surrogate", settings


def test_weak_ranking_with_calibration_off_does_not_call_the_spec_lambda_the_best() -> None:
    """With calibrate.enabled: false the warning called the spec's lambda "the best estimate
    (fast, lambda=1)", as if calibration had chosen it for ranking best."""
    truth = [0.5, 0.7, 0.6, 0.9, 0.8]
    reporter = SilentReporter()
    spec = SimpleNamespace(calibrate=SimpleNamespace(enabled=False), estimate=SimpleNamespace(lam=1.0))
    rows = [{"kind": "ce", "index": i, "subset": [f"s{i}"], "true": t} for i, t in enumerate(truth)]
    CalibrateStage._calibrate_kind(SimpleNamespace(spec=spec, reporter=reporter), rows, ["fast"], [1.0],
                                   {("fast", 1.0): Fixed([0.5, 0.9, 0.8, 0.6, 0.7])})
    weak = [w for w in reporter.warnings if "weak evidence" in w]
    assert len(weak) == 1 and "best" not in weak[0], weak
    assert weak[0].startswith("calibration (ce): the search's estimate (fast, estimate.lam = 1; calibrate.enabled "
                              "is false) ranks the 5 real ce fine-tunes at Spearman 0.10")


def test_estimates_of_the_verify_subsets_that_did_not_converge_at_the_chosen_lambda_are_noted() -> None:
    """On the tiny project the default grid's 0.01 was chosen though the fast solver had not
    converged on 7 of the 8 verify subsets there: only the search's warning about its own
    subsets said anything of convergence, nothing of the estimates lambda was chosen on."""

    truth = [0.5, 0.7, 0.6, 0.9, 0.8]
    spec = SimpleNamespace(calibrate=SimpleNamespace(enabled=True), estimate=SimpleNamespace(lam=1.0))
    rows = [{"kind": "ce", "index": i, "subset": [f"s{i}"], "true": t} for i, t in enumerate(truth)]
    ctx = SimpleNamespace(spec=spec, reporter=SilentReporter())
    estimators = {("fast", 0.01): Unconverged(truth, 3), ("fast", 1.0): Fixed([0.9, 0.5, 0.6, 0.7, 0.8])}
    out = CalibrateStage._calibrate_kind(ctx, rows, ["fast"], [0.01, 1.0], estimators)
    assert out["calibration"]["lam"] == 0.01
    assert any(note.startswith("The fast solver did not converge on 3 of the 5 fine-tuned subsets at lambda=0.01 "
                               "(the chosen one): the rank agreement and error shown for it rest partly on "
                               "unreliable estimates") for note in out["calibration"]["notes"]), out["calibration"]
    # converged everywhere at the chosen lambda (0.01 unconverged, 1 chosen): no such note
    estimators = {("fast", 0.01): Unconverged([0.9, 0.5, 0.6, 0.7, 0.8], 3), ("fast", 1.0): Fixed(truth)}
    out = CalibrateStage._calibrate_kind(ctx, rows, ["fast"], [0.01, 1.0], estimators)
    assert out["calibration"]["lam"] == 1.0 and not any("converge" in n for n in out["calibration"]["notes"])
    # calibration off for too few runs keeps estimate.lam: the note does not call it chosen
    few = rows[:3]
    out = CalibrateStage._calibrate_kind(ctx, few, ["fast"], [0.01, 1.0], {("fast", 0.01): Fixed(truth[:3]),
                                                                           ("fast", 1.0): Unconverged(truth[:3], 1)})
    assert any("at lambda=1 (estimate.lam)" in note for note in out["calibration"]["notes"]), out["calibration"]


def test_no_advice_to_add_smaller_lambdas_where_the_solver_did_not_converge_at_the_smallest() -> None:
    """The note on the grid's smallest lambda said to add smaller ones while the solver had
    not converged at it on 7 of 8 verify subsets (and the search said to use a larger one)."""

    truth = [0.5, 0.7, 0.6, 0.9, 0.8]
    spec = SimpleNamespace(calibrate=SimpleNamespace(enabled=True), estimate=SimpleNamespace(lam=1.0))
    rows = [{"kind": "ce", "index": i, "subset": [f"s{i}"], "true": t} for i, t in enumerate(truth)]
    ctx = SimpleNamespace(spec=spec, reporter=SilentReporter())
    for smallest, says in ((Fixed(truth), True), (Unconverged(truth), False)):
        estimators = {("fast", 0.01): smallest, ("fast", 1.0): Fixed([0.9, 0.5, 0.6, 0.7, 0.8])}
        notes = CalibrateStage._calibrate_kind(ctx, rows, ["fast"], [0.01, 1.0], estimators)["calibration"]["notes"]
        assert any("add smaller values to calibrate.lambda_grid" in note for note in notes) == says, notes


def test_an_estimator_refusing_the_whole_grid_says_its_lambda_is_the_spec_s() -> None:
    """estimate.estimator: linear_sgd with calibrate.lambda_grid: [1e6] (where its simulated
    fine-tune diverges) was calibrated at estimate.lam = 1, a lambda the grid did not hold,
    and the report's "lambda=1" said nothing of where it came from."""
    truth = [0.5, 0.7, 0.6, 0.9, 0.8]
    spec = SimpleNamespace(calibrate=SimpleNamespace(enabled=True), estimate=SimpleNamespace(lam=1.0))
    rows = [{"kind": "ce", "index": i, "subset": [f"s{i}"], "true": t} for i, t in enumerate(truth)]
    ctx = SimpleNamespace(spec=spec, reporter=SilentReporter())
    # (the stage leaves out the (estimator, lambda) pairs the estimator refuses: here 1e6)
    out = CalibrateStage._calibrate_kind(ctx, rows, ["linear_sgd"], [1.0, 1e6], {("linear_sgd", 1.0): Fixed(truth)},
                                         [1e6])
    assert out["calibration"]["lam"] == 1.0
    assert ("linear_sgd accepts none of calibrate.lambda_grid (the run's warnings say why): its lambda is "
            "estimate.lam = 1, not chosen from the grid.") in out["calibration"]["notes"]


def test_the_error_with_the_choice_held_out_is_the_median_over_the_subsets() -> None:
    """loo_median_rel_err_with_selection is the median of selection_loo_rel_errors, as the
    leave-one-out error of the chosen lambda is a median: one badly predicted subset does
    not set it."""
    from subsetctl.estimate.calibrate import selection_loo_rel_errors

    truth = [0.5, 0.7, 0.6, 0.9, 0.8, 0.55]
    fast = [0.9, 0.5, 0.6, 0.7, 0.8, 0.52]
    sgd = [1.1, 1.52, 1.3, 1.9, 1.69, 1.2]
    out, _ = _run(fast, sgd, truth)
    errs = selection_loo_rel_errors(np.array(truth), {("fast", 1.0): np.array(fast), ("linear_sgd", 1.0): np.array(sgd)})
    assert np.mean(errs) > 1.05 * np.median(errs)
    assert out["loo_median_rel_err_with_selection"] == pytest.approx(float(np.median(errs)), rel=1e-12)


def test_the_calibrated_estimates_are_the_raw_ones_through_the_chosen_map() -> None:
    """The verify table's calibrated column is slope * raw + intercept of the chosen
    calibration, not the raw estimates again."""
    truth = [0.5, 0.7, 0.6, 0.9, 0.8]
    out, _ = _run([0.9, 0.5, 0.6, 0.7, 0.8], [x * 2 + 0.1 for x in truth], truth)
    cal = out["calibration"]
    assert cal["enabled"] and cal["slope"] == pytest.approx(0.5)
    np.testing.assert_allclose(out["calibrated"], [cal["slope"] * r + cal["intercept"] for r in out["raw"]], rtol=1e-12)
    np.testing.assert_allclose(out["calibrated"], truth, rtol=1e-9)


def test_too_few_verify_subsets_say_why_their_spearman_is_not_shown() -> None:
    """With fewer than 4 usable fine-tuned subsets the verify table's Spearman is "–" (one
    over 3 points picks by chance): the note said calibration was off, but not why no
    Spearman was shown beside it, which the report's reader took for a missing figure."""
    from subsetctl.estimate.calibrate import calibrate

    truth = np.array([0.5, 0.7, 0.6])
    cal = calibrate(truth, {0.1: truth * 2})
    assert not cal.enabled and np.isnan(cal.spearman)
    [note] = cal.notes
    assert "3 usable fine-tuned subsets" in note and "Spearman is not shown" in note and "fewer than 4" in note
