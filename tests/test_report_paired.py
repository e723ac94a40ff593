"""The final pick against each baseline row by row on the test split: with one seed a user
could not tell whether 2.100 against 2.115 test loss was more than the test rows' noise.
The figures on cases with a known answer, seeded, and the whole run recording them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from subsetctl.report.paired import paired_comparison, paired_difference, paired_lines


def test_a_pick_better_on_every_row_has_an_interval_above_zero() -> None:
    gain = np.linspace(0.01, 0.05, 200)
    figures = paired_difference(gain, seed=0)
    assert figures["mean"] == pytest.approx(0.03)
    assert 0.01 <= figures["low"] < figures["mean"] < figures["high"] <= 0.05
    assert (figures["better"], figures["worse"], figures["n"]) == (1.0, 0.0, 200)


def test_identical_selections_differ_by_nothing() -> None:
    figures = paired_difference(np.zeros(50), seed=3)
    assert (figures["mean"], figures["low"], figures["high"], figures["better"], figures["worse"]) == (0, 0, 0, 0, 0)


def test_the_interval_is_seeded_and_straddles_zero_for_noise() -> None:
    gain = np.random.default_rng(1).normal(0.0, 1.0, 200)
    gain -= gain.mean() - 0.01  # a mean gain far inside the rows' noise
    first, again, other = (paired_difference(gain, seed=s) for s in (7, 7, 8))
    assert first == again and first != other
    assert first["low"] < 0 < first["high"]
    # the percentile interval of a mean: about 1.96 standard errors either side
    assert first["high"] - first["low"] == pytest.approx(2 * 1.96 * gain.std() / np.sqrt(200), rel=0.1)


def _results(losses: dict[str, list[float] | None], scores: dict[str, list[float]]) -> dict:
    """per_run.json as the evaluate stage writes it (only what the comparison reads)."""
    return {run: {"score": float(np.mean(scores[run])), "loss_ce": 0.0, "metric": "exact_match",
                  "n": len(scores[run]), "metrics": {}, "warnings": [],
                  "predictions": [{"score": s} for s in scores[run]],
                  **({"losses": losses[run]} if losses[run] is not None else {})} for run in scores}


def test_the_comparison_averages_each_selections_seeds_row_by_row() -> None:
    comparison = {"final": "pick", "metric": "exact_match", "scores": {"pick": 0.5, "target_only": 0.5, "all": 0.25}}
    finetuned = {"labels": {"pick": ["p1", "p2"], "target_only": ["t1", "t2"], "all": ["a1"]}}
    per_run = _results(
        {"p1": [1.0, 2.0, 3.0, 4.0], "p2": [1.0, 2.0, 3.0, 2.0], "t1": [2.0, 3.0, 4.0, 4.0],
         "t2": [2.0, 3.0, 4.0, 2.0], "a1": None},  # all's result kept without its per-row losses
        {"p1": [1, 0, 1, 0], "p2": [1, 0, 1, 0], "t1": [1, 0, 1, 0], "t2": [1, 0, 1, 0], "a1": [0, 0, 1, 0]})
    paired = paired_comparison(comparison, finetuned, per_run, seed=0, resamples=500)
    assert (paired["seed"], paired["resamples"], paired["level"]) == (0, 500, 0.95)
    vs = paired["vs"]
    # target_only's loss is the pick's + 1 on the first three rows, the same on the last (each the seeds' mean)
    assert vs["target_only"]["loss"]["mean"] == pytest.approx(0.75)
    assert (vs["target_only"]["loss"]["better"], vs["target_only"]["loss"]["worse"]) == (0.75, 0.0)
    assert vs["target_only"]["score"]["mean"] == 0 and vs["target_only"]["score"]["better"] == 0
    assert "loss" not in vs["all"] and vs["all"]["score"]["mean"] == 0.25 and vs["all"]["score"]["better"] == 0.25
    lines = paired_lines({**comparison, "paired": paired})
    assert lines[0].startswith("Row by row, pick against target_only: the pick's test loss is lower by 0.750 "
                               "(95% interval over the 4 test rows: "), lines
    assert "its exact_match is the same on every one of the 4 test rows" in lines[0]
    # four rows give a narrow interval above 0 that says nothing: no "clearly better" of them
    assert vs["target_only"]["loss"]["low"] > 0 and "clearly" not in lines[0]
    assert "too few test rows (under 10) for the interval to tell" in lines[0]
    assert "its exact_match is higher by 0.250" in lines[1] and "test loss" not in lines[1]
    assert "`subsetctl run --force evaluate` records them" in lines[2]
    assert paired_comparison(comparison, {"labels": {}}, per_run, seed=0) is None


def test_a_worse_pick_reads_as_higher_with_its_interval_in_those_words() -> None:
    """The interval follows the sentence's words: "higher by 0.02 (... 0.01 to 0.03)", not
    "higher by 0.02 (... -0.03 to -0.01)", and one that leaves out 0 is said to be clear."""
    figures = {"mean": -0.02, "low": -0.03, "high": -0.01, "better": 0.1, "worse": 0.9, "n": 100}
    comparison = {"final": "pick", "metric": "accuracy", "scores": {"pick": 0.5, "all": 0.5},
                  "paired": {"resamples": 2000, "seed": 0, "level": 0.95, "vs": {"all": {"loss": figures}}}}
    line, = paired_lines(comparison)
    assert ("the pick's test loss is higher by 0.020 (95% interval over the 100 test rows: 0.010 to 0.030; "
            "lower on 10% of them, higher on 90%): clearly worse.") in line
    straddling = {**figures, "mean": 0.015, "low": -0.004, "high": 0.034}
    comparison["paired"]["vs"]["all"]["loss"] = straddling
    assert "lower by 0.015 (95% interval over the 100 test rows: -0.004 to 0.034;" in paired_lines(comparison)[0]
    assert paired_lines(comparison)[0].endswith(": not clearly better or worse.")
    assert paired_lines({"final": "pick"}) == []  # a report.json of an earlier subsetctl


def test_a_run_records_each_test_rows_loss_and_the_report_pairs_them(tiny_project_ran) -> None:
    """End to end: per_run.json holds each test row's loss (their mean the selection's test
    loss), report.json's final_vs_baselines its paired figures, and both reports the lines."""
    folder: Path = tiny_project_ran()
    per_run = json.loads((folder / ".subsetctl" / "evaluate" / "per_run.json").read_text())
    for result in per_run.values():
        assert len(result["losses"]) == result["n"] and np.mean(result["losses"]) == pytest.approx(result["loss_ce"])
    report = json.loads((folder / "report.json").read_text())
    paired = report["final_vs_baselines"]["paired"]
    assert paired["seed"] == 0 and set(paired["vs"]) == set(report["final_vs_baselines"]["scores"]) - {report["final"]}
    for baseline, figures in paired["vs"].items():
        if figures.get("same_finetune"):  # (the pick's sources are the baseline's: one fine-tune)
            assert report["adapters"][baseline] == report["adapters"][report["final"]]
            assert figures["n"] == report["test_metrics"][baseline]["n_test"]
            continue
        loss = figures["loss"]
        assert loss["n"] == report["test_metrics"][baseline]["n_test"]
        assert loss["mean"] == pytest.approx(report["test_metrics"][baseline]["loss_mean"]
                                             - report["test_metrics"][report["final"]]["loss_mean"])
        assert loss["low"] <= loss["mean"] <= loss["high"]
    assert "Row by row, " in (folder / "report.md").read_text()


def _recorded_before_row_losses(stage: Path) -> None:
    """The evaluate stage's manifest and work.json as an earlier subsetctl recorded them:
    its inputs without the per-row test losses, per_run.json's checksum as it is now."""
    from subsetctl.project import fingerprint

    per_run = stage / "per_run.json"
    for name in ("manifest.json", "work.json"):
        record = json.loads((stage / name).read_text())
        del record["inputs"]["extra"]["per_row_test_losses"]
        record["fingerprint"] = fingerprint(record["inputs"])
        if "artifacts" in record:
            record["artifacts"]["per_run.json"] = {"sha256": hashlib.sha256(per_run.read_bytes()).hexdigest(),
                                                   "size": per_run.stat().st_size}
        (stage / name).write_text(json.dumps(record))


@pytest.mark.parametrize(("cache", "also_row_losses"), [("kept", False), ("deleted", False), ("kept", True)])
def test_results_scored_before_answers_were_compared_in_nfkc_are_scored_again_without_generating(
        tiny_project_ran, monkeypatch: pytest.MonkeyPatch, cache: str, also_row_losses: bool) -> None:
    """Test results a subsetctl comparing answers otherwise scored ('東京。' not '東京', NFD
    'café' not NFC) are not up to date: `plan` says why and that their kept answers are
    re-scored, and `run` scores each row's kept prediction again without loading the model
    (it re-generated every adapter's answers): the figures a fresh evaluation gives, the
    answer kept in full-width digits now a match. From the cache entries it kept by their
    keys then, or (the cache deleted) its own results; made before the per-row losses too,
    those come from one loss pass, nothing generated. Only that pass imports the model
    libraries: re-scoring alone imports neither torch nor transformers."""
    import shutil
    import subprocess
    import sys

    import subsetctl.modeling.evaluate as evaluate_module
    from subsetctl import library_imports
    from subsetctl.api import plan_project, run_project
    from subsetctl.project import fingerprint
    from subsetctl.stages import common
    from subsetctl.stages import evaluate as evaluate_stage

    folder: Path = tiny_project_ran()
    state = folder / ".subsetctl"
    fresh = json.loads((state / "evaluate" / "per_run.json").read_text())
    runs = sorted(fresh)
    wide = str.maketrans("0123456789", "０１２３４５６７８９")
    kept = json.loads(json.dumps(fresh))  # as that subsetctl scored them: one answer in full-width digits a miss
    row = kept[runs[0]]["predictions"][0]
    row["prediction"], row["score"] = str(row["gold"]).translate(wide), 0.0
    assert row["prediction"] != str(row["gold"]) and row["scorer"] == "exact_match"
    for result in kept.values():
        result["score"] = float(np.mean([p["score"] for p in result["predictions"]]))
        if also_row_losses:
            del result["losses"]
    (state / "evaluate" / "per_run.json").write_text(json.dumps(kept))
    for name in ("manifest.json", "work.json"):  # its inputs as that subsetctl recorded them
        record = json.loads((state / "evaluate" / name).read_text())
        del record["inputs"]["extra"]["exact_match_answers"]
        if also_row_losses:
            del record["inputs"]["extra"]["per_row_test_losses"]
        record["fingerprint"] = fingerprint(record["inputs"])
        if "artifacts" in record:
            record["artifacts"]["per_run.json"] = {
                "sha256": hashlib.sha256((state / "evaluate" / "per_run.json").read_bytes()).hexdigest(),
                "size": (state / "evaluate" / "per_run.json").stat().st_size}
        (state / "evaluate" / name).write_text(json.dumps(record))
    seen: list = []
    keys_now = evaluate_stage.result_cache_keys
    monkeypatch.setattr(evaluate_stage, "result_cache_keys",
                        lambda ctx, runs, **kw: seen.append(ctx) or keys_now(ctx, runs, **kw))
    plan_project(folder)
    now = keys_now(seen[-1], runs)
    with monkeypatch.context() as patched:  # the keys that subsetctl cached them by
        patched.setattr(evaluate_stage, "fingerprint",
                        lambda inputs: fingerprint({k: v for k, v in inputs.items() if k != "answers"}))
        before = keys_now(seen[-1], runs)
    assert now[runs[0]][0] != before[runs[0]][0]
    entries = state / "cache" / "evaluate"
    for run in runs:
        (entries / f"{now[run][0]}.json").unlink()
        (entries / f"{before[run][0]}.json").write_text(json.dumps(kept[run]))
    if cache == "deleted":
        shutil.rmtree(entries)
    evaluate = {s.name: s for s in plan_project(folder)[2]}["evaluate"]
    assert evaluate.will_run and any("exact match now compares answers in one Unicode form (NFKC" in r
                                     and "re-scored from the kept answers, nothing generated" in r
                                     for r in evaluate.reasons), evaluate.reasons
    assert not any("row by row" in r for r in evaluate.reasons), evaluate.reasons
    assert any("one pass over the test rows" in r for r in evaluate.reasons) == also_row_losses, evaluate.reasons
    assert f"{len(runs)} of {len(runs)} cached, reused ({len(runs)} re-scored from the kept answers, nothing " \
           "generated)" in evaluate.work, evaluate.work
    monkeypatch.setattr(evaluate_module, "evaluate_model", lambda *a, **k: pytest.fail("evaluated again"))
    monkeypatch.setattr(evaluate_module, "generate_answers", lambda *a, **k: pytest.fail("generated again"))
    if also_row_losses:  # the loss pass loads the model: its libraries are imported whole first
        imported: list = []
        monkeypatch.setattr(library_imports, "import_whole", imported.append)
        run_project(folder)
        assert "transformers" in {name for libraries in imported for name in libraries}, imported
    else:  # in a process of its own: re-scoring imports neither torch nor transformers (7 s of the stage's 8)
        monkeypatch.setattr(common, "lora_model", lambda *a, **k: pytest.fail("the model was loaded"))
        probe = ("import sys; from subsetctl.api import run_project; run_project(sys.argv[1]); "
                 "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
        done = subprocess.run([sys.executable, "-c", probe, str(folder)], capture_output=True, text=True,
                              check=False, timeout=120, cwd=Path(__file__).resolve().parents[1])
        assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    after = json.loads((state / "evaluate" / "per_run.json").read_text())
    expected = json.loads(json.dumps(fresh))
    expected[runs[0]]["predictions"][0]["prediction"] = row["prediction"]
    expected[runs[0]]["predictions"][0]["score"] = 1.0
    expected[runs[0]]["score"] = float(np.mean([p["score"] for p in expected[runs[0]]["predictions"]]))
    expected[runs[0]]["metrics"]["exact_match"] = expected[runs[0]]["score"]
    assert after.keys() == expected.keys()
    for run in runs:
        assert after[run]["losses"] == pytest.approx(expected[run]["losses"], rel=1e-5)
        assert {k: v for k, v in after[run].items() if k != "losses"} == {
            k: v for k, v in expected[run].items() if k != "losses"}
    assert after[runs[0]]["score"] > fresh[runs[0]]["score"]  # (the full-width answer a match now)
    for run in runs:  # kept by today's keys, with their losses: a second run reuses them as they are
        assert json.loads((entries / f"{now[run][0]}.json").read_text())["score"] == after[run]["score"]
    assert not {s.name: s for s in plan_project(folder)[2]}["evaluate"].will_run


@pytest.mark.parametrize("reads", [{}, {"data": "train"}])
def test_evaluates_inputs_for_the_upgrade_are_those_the_pipeline_computes(
        tiny_project_ran, monkeypatch: pytest.MonkeyPatch, reads: dict[str, str]) -> None:
    """EvaluateStage.inputs_now (how `plan` and `run` tell the stage's results of an earlier
    subsetctl from others) is the pipeline's own computation of its inputs, not a copy that
    drifts: the inputs its run recorded, and, were it to read a part of the data stage's
    results only, that part's digest as the pipeline takes it."""
    from subsetctl.api import load_project, make_pipeline
    from subsetctl.pipeline import _digests_of
    from subsetctl.stages.evaluate import EvaluateStage

    folder: Path = tiny_project_ran()
    project, spec = load_project(folder)
    pipeline = make_pipeline(project, spec)
    stage = pipeline.by_name["evaluate"]
    if not reads:
        assert stage.inputs_now(spec, project) == project.read_manifest("evaluate")["inputs"]
    monkeypatch.setattr(EvaluateStage, "reads_parts", reads)
    digests: dict = {}
    for name in stage.after:
        digests.update(_digests_of(name, project.read_manifest(name)))
    assert stage.inputs_now(spec, project) == pipeline._current(stage, digests)[1]


@pytest.mark.parametrize("cache", ["kept", "deleted"])
def test_results_an_earlier_subsetctl_kept_get_their_row_losses_without_being_evaluated_again(
        tiny_project_ran, monkeypatch: pytest.MonkeyPatch, cache: str) -> None:
    """Test results cached without their per-row losses (an earlier subsetctl's) are
    completed by one pass over the test rows: `plan` says why evaluate runs again, nothing
    is generated or fine-tuned again, and the losses are those a new evaluation records.
    Likewise with the cache deleted before the upgrade: `run` evaluated every adapter again,
    generating, though `plan` said one loss pass; the stage's own results are completed."""
    import shutil

    import subsetctl.modeling.evaluate as evaluate_module
    from subsetctl.api import plan_project, run_project

    folder: Path = tiny_project_ran()
    state = folder / ".subsetctl"
    before = json.loads((state / "evaluate" / "per_run.json").read_text())
    finetuned = json.loads((state / "finetune" / "manifest.json").read_text())["written_at"]
    entries = sorted((state / "cache" / "evaluate").glob("*.json"))
    assert entries
    for i, entry in enumerate(entries):  # as an earlier subsetctl cached them; the first cut short
        result = json.loads(entry.read_text())
        if i == 0:
            result["losses"] = result["losses"][:1]
        else:
            del result["losses"]
        entry.write_text(json.dumps(result))
    if cache == "deleted":
        shutil.rmtree(state / "cache" / "evaluate")
        (state / "evaluate" / "per_run.json").write_text(json.dumps(  # as an earlier subsetctl wrote it
            {run: {k: v for k, v in result.items() if k != "losses"} for run, result in before.items()}))
    _recorded_before_row_losses(state / "evaluate")
    evaluate = {s.name: s for s in plan_project(folder)[2]}["evaluate"]
    assert evaluate.will_run and any("row by row on the test split" in r for r in evaluate.reasons), evaluate.reasons
    adapters = len({run for runs in json.loads((state / "finetune" / "labels.json").read_text())["labels"].values()
                    for run in runs})
    assert f"{adapters} of {adapters} cached, reused" in evaluate.work, evaluate.work  # (they are: none generated)
    monkeypatch.setattr(evaluate_module, "evaluate_model", lambda *a, **k: pytest.fail("evaluated again"))
    run_project(folder)
    after = json.loads((state / "evaluate" / "per_run.json").read_text())
    assert after.keys() == before.keys()
    for run, result in after.items():
        assert result["losses"] == pytest.approx(before[run]["losses"], rel=1e-5)
        assert {k: v for k, v in result.items() if k != "losses"} == {
            k: v for k, v in before[run].items() if k != "losses"}
    cached = [json.loads(entry.read_text()) for entry in entries]
    assert [len(result["losses"]) for result in cached] == [result["n"] for result in cached]  # the cache too
    assert json.loads((state / "finetune" / "manifest.json").read_text())["written_at"] == finetuned
    assert "paired" in json.loads((folder / "report.json").read_text())["final_vs_baselines"]


def test_many_test_rows_are_resampled_a_block_at_a_time_with_the_same_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 resamples of 100,000 rows drawn at once held 3 GB; drawn in blocks, the figures
    are those of one draw (the generator's stream is the same)."""
    from subsetctl.report import paired

    gain = np.random.default_rng(0).normal(0.01, 1.0, 1000)
    whole = paired_difference(gain, seed=5, resamples=300)
    monkeypatch.setattr(paired, "CELLS", 7 * 1000)  # blocks of 7 resamples, the last of 6
    assert paired_difference(gain, seed=5, resamples=300) == pytest.approx(whole)


def _one_figure_at_a_time(gain: np.ndarray, seed: int, resamples: int) -> tuple[float, float]:
    """The bootstrap interval as subsetctl drew it before the figures shared their draws: all
    resamples' rows at once, numpy's default int64."""
    rows = np.random.default_rng(seed).integers(0, len(gain), size=(resamples, len(gain)))
    tail = (1.0 - 0.95) / 2 * 100  # (2.500000000000002, as paired.py works it out)
    low, high = np.percentile(gain[rows].mean(axis=1), [tail, 100 - tail])
    return float(low), float(high)


def test_the_figures_draw_their_resamples_once_with_the_figures_each_drew_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The loss and the score against two baselines drew 2,000 resamples of 100,000 test rows
    four times (6 s each): the rows are drawn once for all four, and each figure's interval
    is, to the bit, the one it had drawing its own from the same seed."""
    from subsetctl.report import paired

    rng = np.random.default_rng(2)
    runs = {"p": rng.normal(2, 1, 500), "t": rng.normal(2.1, 1, 500), "a": rng.normal(2, 1, 500)}
    per_run = _results({run: list(map(float, losses)) for run, losses in runs.items()},
                       {run: [float(v > 2) for v in losses] for run, losses in runs.items()})
    comparison = {"final": "pick", "metric": "exact_match", "scores": {"pick": 0.5, "target_only": 0.5, "all": 0.5}}
    finetuned = {"labels": {"pick": ["p"], "target_only": ["t"], "all": ["a"]}}
    seeded = []
    monkeypatch.setattr(paired.np.random, "default_rng", lambda seed: seeded.append(seed) or np.random.Generator(
        np.random.PCG64(seed)))
    vs = paired_comparison(comparison, finetuned, per_run, seed=4, resamples=300)["vs"]
    assert seeded == [4]
    for baseline, run in (("target_only", "t"), ("all", "a")):
        assert list(vs[baseline]) == ["loss", "score"]
        gains = {"loss": runs[run] - runs["p"], "score": (runs["p"] > 2).astype(float) - (runs[run] > 2)}
        for key, gain in gains.items():
            assert (vs[baseline][key]["low"], vs[baseline][key]["high"]) == _one_figure_at_a_time(gain, 4, 300)


def test_a_pick_of_a_baselines_sources_is_said_to_be_its_fine_tune_with_no_interval() -> None:
    """A pick of the target alone shares target_only's fine-tune: the comparison read "the
    same on every one of the 4 test rows", as if two runs had agreed row by row; it says it
    is that baseline's fine-tune, with no bootstrap and no interval."""
    comparison = {"final": "pick", "metric": "exact_match", "scores": {"pick": 0.5, "target_only": 0.5, "all": 0.25}}
    finetuned = {"labels": {"pick": ["t1", "t2"], "target_only": ["t2", "t1"], "all": ["a1"]}}
    per_run = _results({"t1": [1.0, 2.0, 3.0, 4.0], "t2": [1.0, 2.0, 3.0, 2.0], "a1": [2.0, 2.0, 3.0, 4.0]},
                       {"t1": [1, 0, 1, 0], "t2": [1, 0, 1, 0], "a1": [0, 0, 1, 0]})
    paired = paired_comparison(comparison, finetuned, per_run, seed=0, resamples=50)
    assert paired["vs"]["target_only"] == {"same_finetune": True, "n": 4}
    assert paired["vs"]["all"]["loss"]["mean"] == pytest.approx(0.5)
    first, second = paired_lines({**comparison, "paired": paired})
    assert first == ("Row by row, pick against target_only: the same fine-tune (pick picked the same sources as "
                     "target_only, and a subset is fine-tuned once), so its test loss and exact_match are "
                     "target_only's on every one of the 4 test rows: no interval to give.")
    assert second.startswith("Row by row, pick against all: the pick's test loss is lower by 0.500")


def test_test_rows_without_a_loss_are_left_out_of_the_comparison() -> None:
    """A test row with no token to score has no loss (None in per_run.json's ``losses``):
    it is left out of the row-by-row comparison of the losses, not the whole comparison."""
    comparison = {"final": "pick", "metric": "exact_match", "scores": {"pick": 0.5, "all": 0.5}}
    finetuned = {"labels": {"pick": ["p"], "all": ["a"]}}
    per_run = _results({"p": [1.0, 2.0, None, 3.0], "a": [2.0, 2.0, None, 4.0]},
                       {"p": [1, 0, 1, 0], "a": [1, 0, 1, 0]})
    loss = paired_comparison(comparison, finetuned, per_run, seed=0, resamples=50)["vs"]["all"]["loss"]
    assert (loss["n"], loss["mean"], loss["better"]) == (3, pytest.approx(2 / 3), pytest.approx(2 / 3))


def test_a_test_split_of_one_row_is_worded_as_one() -> None:
    """A target with `split.test: 1` read "On the test split (1 test examples, ...)", "over the
    1 test rows" and "the same on every one of the 1 test rows"; and gave a bootstrap interval
    of that one row ("0.003 to 0.003"), every resample of which is the row itself."""
    from subsetctl.report.cells import final_vs_baselines_line

    comparison = {"final": "pick", "metric": "exact_match", "scores": {"pick": 0.0, "target_only": 0.0, "all": 0.0},
                  "losses": {"pick": 4.743, "target_only": 4.740, "all": 4.743}, "stds": {}, "below": [],
                  "seeds": 1, "n_test": 1}
    finetuned = {"labels": {"pick": ["p1"], "target_only": ["t1"], "all": ["p1"]}}
    per_run = _results({"p1": [4.743], "t1": [4.740]}, {"p1": [0], "t1": [0]})
    paired = paired_comparison(comparison, finetuned, per_run, seed=0, resamples=50)
    assert final_vs_baselines_line(comparison, checked=False).startswith(
        "On the test split (1 test example, 1 seed each), exact_match:")
    first, second = paired_lines({**comparison, "paired": paired})
    # (no bootstrap "interval" of one row, which was the difference again: "0.003 to 0.003")
    assert first == ("Row by row, pick against target_only: the pick's test loss is higher by 0.003 on its one test "
                     "row: too few test rows (under 10) for an interval; its exact_match is the same on its one test "
                     "row."), first
    assert second.endswith("exact_match are all's on its one test row: no interval to give."), second


def test_no_row_by_row_verdict_is_drawn_from_a_fine_tune_that_diverged() -> None:
    """The line above the row-by-row ones draws no verdict where the pick's or a baseline's
    fine-tune diverged (an adapter kept before it, or the untrained start): the row-by-row
    line still said "clearly worse" of that pair."""
    figures = {"mean": -0.02, "low": -0.03, "high": -0.01, "better": 0.1, "worse": 0.9, "n": 100}
    comparison = {"final": "pick", "metric": "accuracy", "scores": {"pick": 0.5, "all": 0.5, "target_only": 0.5},
                  "paired": {"resamples": 2000, "seed": 0, "level": 0.95,
                             "vs": {"all": {"loss": figures}, "target_only": {"loss": figures}}}}
    assert [line.split(":")[0] for line in paired_lines(comparison)] == ["Row by row, pick against target_only",
                                                                         "Row by row, pick against all"]
    line, = paired_lines({**comparison, "diverged": ["all"]})
    assert line.startswith("Row by row, pick against target_only:"), line
    assert paired_lines({**comparison, "diverged": ["pick"]}) == []


def test_a_pair_left_out_as_diverged_is_not_said_to_lack_its_row_losses() -> None:
    """The closing line that the test results were evaluated by an earlier subsetctl (no
    per-row test losses) counted a pair with no ``loss`` figures that no line is given, as its
    fine-tune diverged: it followed a report of only clear figures, or stood alone."""
    figures = {"mean": 0.02, "low": 0.01, "high": 0.03, "better": 0.9, "worse": 0.1, "n": 100}
    comparison = {"final": "pick", "metric": "accuracy", "scores": {"pick": 0.5, "all": 0.5, "target_only": 0.5},
                  "diverged": ["all"],
                  "paired": {"resamples": 2000, "seed": 0, "level": 0.95,
                             "vs": {"all": {"score": figures}, "target_only": {"loss": figures, "score": figures}}}}
    line, = paired_lines(comparison)
    assert line.startswith("Row by row, pick against target_only: the pick's test loss is lower by 0.020"), line
    assert paired_lines({**comparison, "diverged": ["pick"]}) == []
    # a pair given its line without the losses is still told how to get them
    comparison["paired"]["vs"]["target_only"] = {"score": figures}
    assert paired_lines(comparison)[-1].startswith("The test results were evaluated by an earlier subsetctl")
