"""verify.repeats: per-subset means over repeats and the repeats' own rank agreement."""

from __future__ import annotations

import json

import pytest

from subsetctl.stages.verify import mean_over_repeats, repeat_agreement


def _run(kind: str, index: int, repeat: int | None, true: float | None) -> dict:
    row = {"kind": kind, "index": index, "subset": [f"s{index}"], "true": true, "diverged": true is None}
    if repeat is not None:
        row["repeat"] = repeat
    return row


def test_mean_over_repeats_averages_finite_values_and_keeps_each() -> None:
    runs = [_run("ce", 0, 0, 1.0), _run("ce", 0, 1, 3.0), _run("ce", 1, 1, None), _run("ce", 1, 0, 2.0),
            _run("surrogate", 0, 0, 9.0)]
    rows = mean_over_repeats(runs, "ce")
    assert [r["index"] for r in rows] == [0, 1]
    assert rows[0]["true"] == pytest.approx(2.0) and rows[0]["true_repeats"] == [1.0, 3.0]
    assert rows[1]["true"] == pytest.approx(2.0) and rows[1]["true_repeats"] == [2.0, None]  # repeat order
    assert not rows[1]["diverged"]


def test_a_subset_whose_every_repeat_diverged_has_no_true_value() -> None:
    rows = mean_over_repeats([_run("ce", 0, 0, None), _run("ce", 0, 1, None)], "ce")
    assert rows[0]["true"] is None and rows[0]["diverged"]


def test_results_from_before_repeats_count_as_repeat_zero() -> None:
    rows = mean_over_repeats([_run("ce", 0, None, 1.5), _run("ce", 1, None, 2.5)], "ce")
    assert [r["true"] for r in rows] == [1.5, 2.5]
    assert repeat_agreement([_run("ce", i, None, float(i)) for i in range(4)], "ce") is None  # one repeat


def test_repeat_agreement_is_the_mean_pairwise_spearman() -> None:
    first = [1.0, 2.0, 3.0, 4.0]
    same = [_run("ce", i, 0, v) for i, v in enumerate(first)] + [_run("ce", i, 1, v + 10) for i, v in enumerate(first)]
    assert repeat_agreement(same, "ce") == pytest.approx(1.0)
    reversed_ = [_run("ce", i, 0, v) for i, v in enumerate(first)] + [_run("ce", i, 1, -v) for i, v in enumerate(first)]
    assert repeat_agreement(reversed_, "ce") == pytest.approx(-1.0)
    three = same + [_run("ce", i, 2, -v) for i, v in enumerate(first)]  # pairs: +1, -1, -1
    assert repeat_agreement(three, "ce") == pytest.approx(-1.0 / 3.0)
    # a diverged run drops that subset from the pairs it is in; fewer than 3 shared subsets: no score
    sparse = [_run("ce", 0, 0, 1.0), _run("ce", 1, 0, 2.0), _run("ce", 0, 1, 1.0), _run("ce", 1, 1, None)]
    assert repeat_agreement(sparse, "ce") is None


def test_verify_repeats_on_a_tiny_model(tiny_project_ran) -> None:
    from subsetctl.api import run_project

    tiny_project = tiny_project_ran("gradients")  # a copy: verify and what follows still run
    overrides = ["verify.enabled=true", "verify.k=4", "verify.steps=2", "verify.batch_size=4", "verify.repeats=2",
                 "verify.kinds=[ce]", "finetune.enabled=false", "calibrate.lambda_grid=[1.0]"]
    run_project(tiny_project, overrides)
    state = tiny_project / ".subsetctl"
    results = json.loads((state / "verify" / "results.json").read_text())
    assert sorted((r["index"], r["repeat"], r["seed"]) for r in results) == [
        (i, r, r) for i in range(4) for r in range(2)]  # project.seed 0 -> seeds 0, 1
    entry = json.loads((state / "calibrate" / "calibration.json").read_text())["kinds"]["ce"]
    assert entry["repeats"] == 2 and entry["repeat_spearman"] is not None
    for true, reps in zip(entry["true"], entry["true_repeats"]):
        assert true == pytest.approx(sum(reps) / 2)
    # different batch sequences give different real outcomes for a non-empty subset
    assert any(reps[0] != reps[1] for reps in entry["true_repeats"])
    report = json.loads((tiny_project / "report.json").read_text())
    assert report["verify"]["ce"]["repeats"] == 2
    from test_api import readme_report_json_keys  # README names what a verify kind's entry holds

    assert sorted(key for key in report["verify"]["ce"] if f"`{key}`" not in readme_report_json_keys()) == []
    assert "| 2 (" in (tiny_project / "report.md").read_text()


def test_verify_reuses_finished_fine_tunes_when_its_settings_change(tiny_project_ran) -> None:
    """Raising k keeps the runs already done (the stage folder is reset, the run cache is
    not); a changed learning rate is a different run and is not reused. `plan` says how
    many the cache holds."""
    from subsetctl.api import plan_project, run_project

    base = ["verify.enabled=true", "verify.steps=2", "verify.batch_size=4", "verify.kinds=[ce]",
            "finetune.enabled=false", "calibrate.lambda_grid=[1.0]"]
    tiny_project = tiny_project_ran("gradients")  # a copy: verify and what follows still run
    state = tiny_project / ".subsetctl"

    def verify_summary() -> dict:
        return json.loads((state / "verify" / "manifest.json").read_text())["summary"]

    def results() -> dict:
        rows = json.loads((state / "verify" / "results.json").read_text())
        return {(tuple(r["subset"]), r["seed"]): r["true"] for r in rows}

    run_project(tiny_project, [*base, "verify.k=3"], until="verify")
    first = results()
    assert verify_summary()["reused"] == 0 and len(first) == 3
    verify = {s.name: s for s in plan_project(tiny_project, [*base, "verify.k=4"], until="verify")[2]}["verify"]
    assert verify.work is not None and verify.work.endswith("; 3 of 4 cached, reused"), verify.work  # said none
    run_project(tiny_project, [*base, "verify.k=4"], until="verify")
    second = results()
    assert verify_summary()["reused"] == 3 and len(second) == 4
    assert all(second[key] == value for key, value in first.items())
    lr = {s.name: s for s in plan_project(tiny_project, [*base, "verify.k=4", "verify.lr_ce=0.003"], until="verify")[2]}
    assert lr["verify"].work is not None and lr["verify"].work.endswith("; none cached"), lr["verify"].work
    run_project(tiny_project, [*base, "verify.k=4", "verify.lr_ce=0.003"], until="verify")
    assert verify_summary()["reused"] == 0

    def digest() -> str:
        return json.loads((state / "verify" / "manifest.json").read_text())["output_digest"]

    trained = digest()
    run_project(tiny_project, [*base, "verify.k=4", "verify.lr_ce=0.003"], until="verify", force=["verify"])
    assert verify_summary()["reused"] == 0 and verify_summary()["runs"] == 4  # --force fine-tunes again
    # the same fine-tunes, timed anew: the same output (calibrate is not re-run for the timings)
    assert digest() == trained and verify_summary()["seconds_per_finetune"] > 0
    # as if stopped after two runs: the stage resumes from results.json and says so
    rows = json.loads((state / "verify" / "results.json").read_text())
    (state / "verify" / "results.json").write_text(json.dumps(rows[:2]))
    (state / "verify" / "manifest.json").unlink()
    run_project(tiny_project, [*base, "verify.k=4", "verify.lr_ce=0.003"], until="verify")
    assert verify_summary()["resumed"] == 2 and verify_summary()["reused"] == 2  # the other two from the cache


def test_a_resumed_verify_records_the_divergence_of_a_fine_tune_done_before_it_stopped(tiny_project_ran) -> None:
    """The warning that a verify fine-tune diverged was said only as it finished: a stage
    stopped after it and resumed never said it again, so its manifest (and every report)
    lacked it while the fine-tune stayed excluded."""
    from subsetctl.api import run_project

    base = ["verify.enabled=true", "verify.steps=2", "verify.batch_size=4", "verify.kinds=[ce]", "verify.k=3",
            "finetune.enabled=false"]
    tiny_project = tiny_project_ran("gradients")  # a copy: verify and what follows still run
    state = tiny_project / ".subsetctl" / "verify"
    run_project(tiny_project, base, until="verify")
    rows = json.loads((state / "results.json").read_text())
    rows[0].update(diverged=True, true=None)  # as if it diverged, then the stage stopped after two
    (state / "results.json").write_text(json.dumps(rows[:2]))
    (state / "manifest.json").unlink()
    run_project(tiny_project, base, until="verify")
    warnings = json.loads((state / "manifest.json").read_text()).get("warnings", [])
    assert [w for w in warnings if "diverged" in w] == [
        (f"verify: the ce fine-tune of subset {'+'.join(rows[0]['subset']) or '(target only)'} (seed {rows[0]['seed']}) "
         "diverged; it is excluded. If many do, lower verify.lr_ce.")], warnings
    assert not any("[" in w for w in warnings), "subsets are named as the report names them, not as Python lists"


def test_plan_counts_no_damaged_verify_cache_entry_as_cached(tiny_project_ran) -> None:
    """A cache entry cut short (or a folder in its place) is trained again by `run`:
    `plan` counts only the entries `run` takes."""
    from subsetctl.api import plan_project, run_project

    base = ["verify.enabled=true", "verify.steps=2", "verify.batch_size=4", "verify.kinds=[ce]",
            "finetune.enabled=false", "calibrate.lambda_grid=[1.0]"]
    tiny_project = tiny_project_ran("gradients")  # a copy: verify and what follows still run
    run_project(tiny_project, [*base, "verify.k=3"], until="verify")
    cut, folder, _ = sorted((tiny_project / ".subsetctl" / "cache" / "verify").glob("*.json"))
    cut.write_text(cut.read_text()[:10])
    folder.unlink()
    folder.mkdir()
    verify = {s.name: s for s in plan_project(tiny_project, [*base, "verify.k=4"], until="verify")[2]}["verify"]
    assert verify.work is not None and verify.work.endswith("; 1 of 4 cached, reused"), verify.work
    run_project(tiny_project, [*base, "verify.k=4"], until="verify")
    manifest = json.loads((tiny_project / ".subsetctl" / "verify" / "manifest.json").read_text())
    assert manifest["summary"]["reused"] == 1
