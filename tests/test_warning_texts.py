"""The warnings a run prints: each fact said once, with what to do about it."""

from __future__ import annotations

from pathlib import Path

from subsetctl.api import run_project
from subsetctl.reporter import SilentReporter


def test_unconverged_estimates_are_warned_once_per_strategy_not_again_for_the_stage(tiny_project: Path) -> None:
    """The search stage added "N subset estimates did not converge; they are flagged in the
    results" after each strategy's own notice had said it with the count and what to do."""
    rep = SilentReporter()
    run_project(tiny_project, ["estimate.estimator=exact", "estimate.max_iter=1", "estimate.lam=0.01",
                               "search.strategies=[{name: exhaustive}]"], until="search", reporter=rep)
    said = [w for w in rep.warnings if "did not converge" in w]
    assert len(said) == 1 and said[0].startswith("exhaustive: "), rep.warnings
    assert "estimate.max_iter" in said[0]


def test_a_calibration_note_every_verify_kind_shares_is_said_once(tiny_project: Path) -> None:
    """With too few verify fine-tunes the calibrate stage warned "calibration (ce): Calibration
    is off: 3 usable ..." and "calibration (surrogate): ..." in the same words, and the report
    said it again under "verify surrogate:" after its "calibration:" line."""
    rep = SilentReporter()
    run_project(tiny_project, ["verify.enabled=true", "verify.k=3", "verify.steps=1", "verify.batch_size=4",
                               "search.strategies=[{name: exhaustive}]", "finetune.enabled=false"],
                reporter=rep)
    said = [w for w in rep.warnings if "Calibration is off" in w]
    assert len(said) == 1 and said[0].startswith("calibration (ce, surrogate): "), rep.warnings
    markdown = (tiny_project / "report.md").read_text()
    assert markdown.count("Calibration is off") == 1, markdown
    assert "The same goes for verify's surrogate fine-tunes." in markdown


def test_calibration_off_for_too_few_fine_tunes_says_what_to_raise() -> None:
    """The note said 3 usable fine-tunes are too few and stopped there; validate's warning
    named verify.k but the report's line, read later, did not."""
    from subsetctl.estimate.calibrate import calibrate

    cal = calibrate([1.0, 2.0, 3.0], {1.0: [1.1, 2.1, 3.1]})
    assert not cal.enabled and cal.notes[-1].endswith("Raise verify.k (6-10 is typical)."), cal.notes
    cal = calibrate([1.0, float("nan"), 3.0, 4.0], {1.0: [1.1, 2.1, 3.1, 4.1]})
    assert not cal.enabled and "1 of the 4 fine-tunes are not usable" in cal.notes[-1], cal.notes
    assert "raise verify.k" in cal.notes[-1]


def test_calibration_off_because_the_fine_tunes_diverged_names_their_learning_rate() -> None:
    """With verify.lr_surrogate far too high every surrogate run diverged, and the note said to
    raise verify.k: more fine-tunes at that learning rate, which would diverge too."""
    from types import SimpleNamespace

    import numpy as np

    from subsetctl.estimate.calibrate import calibrate
    from subsetctl.stages.calibrate import CalibrateStage

    nan = float("nan")
    cal = calibrate([nan, nan, 3.0, nan, 5.0, 6.0], {1.0: [1.1, 2.1, 3.1, 4.1, 5.1, 6.1]}, lr_key="verify.lr_ce")
    assert not cal.enabled and cal.notes[-1].endswith(
        "3 of the 6 fine-tunes are not usable (the notes say why); 3 diverged: lower verify.lr_ce first (more "
        "fine-tunes at this one would diverge too), then raise verify.k if too few remain."), cal.notes
    # the stage names the learning rate of the kind whose runs diverged
    reporter = SilentReporter()
    spec = SimpleNamespace(calibrate=SimpleNamespace(enabled=True), estimate=SimpleNamespace(lam=1.0))
    rows = [{"kind": "surrogate", "index": i, "subset": [f"s{i}"], "true": None} for i in range(5)]

    class Fixed:
        def masks_for(self, subsets: list) -> list:
            return subsets

        def estimate(self, masks: list) -> SimpleNamespace:
            return SimpleNamespace(loss=np.arange(len(masks), dtype=float))

    out = CalibrateStage._calibrate_kind(SimpleNamespace(spec=spec, reporter=reporter), rows, ["fast"], [1.0],
                                         {("fast", 1.0): Fixed()})
    assert "5 diverged: lower verify.lr_surrogate first" in out["calibration"]["notes"][-1]
    assert any("lower verify.lr_surrogate first" in w for w in reporter.warnings)


def test_a_small_test_split_warning_says_what_to_give_more_rows(tiny_project: Path) -> None:
    """The small validation split's warning named target.split.validation; the small test
    split's stopped at "too noisy to compare subsets"."""
    rep = SilentReporter()
    run_project(tiny_project, ["search.strategies=[{name: exhaustive}]", "finetune.baselines=[]"], reporter=rep)
    said = [w for w in rep.warnings if "The test split has only 5 examples" in w]
    assert len(said) == 1 and said[0].endswith("Give the target more test rows (target.split.test, or the data target.test_loader reads) if the data allows."), rep.warnings


def test_report_says_data_warnings_are_of_the_last_runs_inputs_once_they_changed(tiny_project: Path) -> None:
    """`report` after the user fixed a warned-about cause (removed a source, edited a file)
    printed the old data warnings first, as problems of now; that the results are of other
    inputs came only at the end, after the tables."""
    import io

    from rich.console import Console

    from subsetctl.report.terminal import render_report

    run_project(tiny_project, ["search.strategies=[{name: exhaustive}]", "finetune.enabled=false"])
    buffer = io.StringIO()
    render_report(tiny_project, Console(file=buffer, width=300))
    assert "last run's inputs" not in buffer.getvalue()
    (tiny_project / "target.jsonl").write_text((tiny_project / "target.jsonl").read_text()[:-1] + " \n")
    buffer = io.StringIO()
    render_report(tiny_project, Console(file=buffer, width=300))
    text = buffer.getvalue()
    lines = [line for line in text.splitlines() if line.startswith("data: ")]
    assert len(lines) >= 2 and "the warnings below are of the last run's inputs" in lines[0], text


def test_the_warnings_a_stage_raised_are_in_every_report(tiny_project: Path) -> None:
    """meta_init's and the gradients' "model.max_length=... tokens cut ..." were said while
    `run` ran and nowhere after: report.md, report.json and `report` never showed them.
    Warnings the results carry already (data, search notices) are not said twice; once the
    stage is stale, `report` says its warnings are of its last run."""
    import io
    import json

    from rich.console import Console

    from subsetctl.report.terminal import render_report

    rep = SilentReporter()
    run_project(tiny_project, ["model.max_length=8", "search.strategies=[{name: exhaustive}]",
                               "finetune.enabled=false"], reporter=rep)
    said = [w for w in rep.warnings if w.startswith(("meta_init: model.max_length=8", "gradients: model.max_length=8"))]
    assert len(said) == 2, rep.warnings
    report = json.loads((tiny_project / "report.json").read_text())
    assert report["stage_warnings"]["meta_init"] == [said[0]] and report["stage_warnings"]["gradients"] == [said[1]]
    assert "data" not in report["stage_warnings"]  # its warnings are the report's data warnings
    markdown = (tiny_project / "report.md").read_text()
    assert "## Warnings of the stages" in markdown and f"- {said[0]}" in markdown and f"- {said[1]}" in markdown
    buffer = io.StringIO()
    render_report(tiny_project, Console(file=buffer, width=400), overrides=["model.max_length=8"])
    text = buffer.getvalue()
    assert said[0] in text and said[1] in text and "of its last run" not in text, text
    assert text.index(said[0]) < text.index(said[1])  # in pipeline order (report.json sorts its keys)
    buffer = io.StringIO()
    render_report(tiny_project, Console(file=buffer, width=400))  # the spec's model.max_length: stale
    lines = buffer.getvalue().splitlines()
    assert any(line.startswith("meta_init: the warnings below are of its last run") for line in lines), lines
    assert said[0] in lines[lines.index(next(line for line in lines if "meta_init: the warnings" in line)) + 1]


def test_a_stage_recorded_before_its_warnings_were_stays_up_to_date(tiny_project: Path) -> None:
    """Warnings are no input of anything: a manifest without them (written by an earlier
    subsetctl) re-runs nothing, and the reports show what they have."""
    import json

    from subsetctl.api import plan_project

    overrides = ["model.max_length=8", "search.strategies=[{name: exhaustive}]", "finetune.enabled=false"]
    run_project(tiny_project, overrides)
    for manifest in (tiny_project / ".subsetctl").glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        data.pop("warnings", None)
        manifest.write_text(json.dumps(data))
    _, _, statuses = plan_project(tiny_project, overrides)
    assert all(s.state != "stale" for s in statuses), [(s.name, s.state, s.reasons) for s in statuses]


def test_messages_name_a_list_of_things_as_quoted_names_not_a_python_list() -> None:
    """"Sources ['s11'] were in all or none ..." printed a Python list; other warnings write
    names as 's00', 's01'."""
    import numpy as np
    import pytest

    from subsetctl.errors import UserError
    from subsetctl.search.ensemble import mean_difference_scores
    from subsetctl.spec import VerifySpec

    masks = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1]], dtype=bool)
    _, notices = mean_difference_scores(masks, np.array([1.0, 2.0, 3.0]), ["s10", "s11", "s12"])
    assert notices and notices[0].startswith("Sources 's10' were in all or none"), notices
    with pytest.raises(ValueError, match="got 'ce', 'ce' "):
        VerifySpec(kinds=["ce", "ce"])
    from subsetctl.estimate.synthetic import make_synthetic_features

    with pytest.raises(UserError, match=r"Synthetic sources 0, 2 are listed as both"):
        make_synthetic_features(n_sources=3, helpful=[0, 2], harmful=[0, 2])


def test_stage_warnings_keep_what_the_report_needs_and_leave_out_repairs_of_this_run() -> None:
    """A damaged cache entry computed again, or a reset search store, stayed among the
    stage's warnings in every later report, though the repair was done."""
    from subsetctl.reporter import AboutThisRun, ShownInResults, StageWarnings

    inner = SilentReporter()
    recorder = StageWarnings(inner)
    for message in ("kept", AboutThisRun("repaired"), ShownInResults("in the results"), "kept"):
        recorder.warn(message)
    assert recorder.warnings == ["kept"]
    assert inner.warnings == ["kept", "repaired", "in the results", "kept"]  # every one said while it ran


def test_estimates_identical_for_every_subset_are_warned_about(tiny_project: Path) -> None:
    """estimate.lam: 1e300 (valid: any lambda > 0) zeroes the fitted step, so every subset got
    the target-only estimate and each strategy's pick was a tie broken by order, without a word."""
    rep = SilentReporter()
    run_project(tiny_project, ["estimate.lam=1e300", "search.strategies=[{name: exhaustive}]"],
                until="search", reporter=rep)
    said = [w for w in rep.warnings if "same estimated loss" in w]
    assert len(said) == 1 and "lower estimate.lam" in said[0], rep.warnings
    rep = SilentReporter()
    run_project(tiny_project, ["search.strategies=[{name: exhaustive}]"], until="search", reporter=rep)
    assert not [w for w in rep.warnings if "same estimated loss" in w], rep.warnings


def test_a_diverged_final_fine_tune_is_warned_and_reported(tiny_project_ran, monkeypatch) -> None:
    """A final fine-tune whose loss became NaN kept its untrained start (or an earlier
    checkpoint) as its adapter, was evaluated as if finished, and nothing said so: runs.json
    alone recorded ``diverged``. Restored from the cache by a later run, it is warned again."""
    import json

    from subsetctl.modeling import train

    overrides = ["search.strategies=[{name: exhaustive}]", "finetune.baselines=[]"]
    tiny_project = tiny_project_ran("gradients")  # a copy: the search and what follows still run
    run_project(tiny_project, overrides, until="search")
    monkeypatch.setattr(train, "_optimizer_step", lambda *args: None)  # the final fine-tunes' loss: NaN at once
    rep = SilentReporter()
    run_project(tiny_project, overrides, reporter=rep)
    said = [w for w in rep.warnings if "diverged" in w]
    assert len(said) == 1 and said[0].startswith("finetune exhaustive (seed 0) diverged"), rep.warnings
    assert "untrained start" in said[0] and "finetune.lr" in said[0]
    shown = json.loads((tiny_project / "report.json").read_text())["stage_warnings"]
    assert any("diverged" in w for w in shown["finetune"]), shown

    rep = SilentReporter()  # seed 0's run comes from the cache, seed 1's is trained
    run_project(tiny_project, [*overrides, "finetune.seeds=2"], reporter=rep)
    said = sorted(w for w in rep.warnings if "diverged" in w)
    assert [w[:len("finetune exhaustive (seed 0)")] for w in said] == [
        "finetune exhaustive (seed 0)", "finetune exhaustive (seed 1)"], rep.warnings


def test_a_meta_init_that_made_the_target_worse_is_warned_naming_meta_init_lr(tiny_project: Path, monkeypatch) -> None:
    """A learning rate too high mostly keeps the loss finite (SmolLM2-135M at meta_init.lr=1:
    target validation loss 2.30 untrained, 4.94 at the best step) and meta_init finished
    without a word: the gradients, estimates and fine-tunes started from a theta* worse than
    the base model. The untrained adapter's loss (here made lower than any trained one's)
    is now measured and compared."""
    import json

    from subsetctl.modeling import train

    real, calls = train.evaluate_loss, []

    def first_is_low(*args, **kwargs):  # the stage's evaluation before training comes first
        calls.append(1)
        return 0.01 if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate_loss", first_is_low)
    rep = SilentReporter()
    run_project(tiny_project, ["meta_init.lr=0.5"], until="meta_init", reporter=rep)
    said = [w for w in rep.warnings if w.startswith("meta_init: training made")]
    assert len(said) == 1 and "against 0.01 before training" in said[0], rep.warnings
    assert said[0].endswith("A meta_init.lr too high (here 0.5) is the usual cause: lower it and run again.")
    summary = json.loads((tiny_project / ".subsetctl" / "meta_init" / "manifest.json").read_text())["summary"]
    assert summary["start_val_loss"] == 0.01 and summary["best_val_loss"] > 0.01

    monkeypatch.setattr(train, "evaluate_loss", real)  # trained, the tiny model's loss goes down: nothing said
    rep = SilentReporter()
    run_project(tiny_project, [], until="meta_init", reporter=rep)
    assert not [w for w in rep.warnings if w.startswith("meta_init: training made")], rep.warnings


def test_a_meta_init_that_barely_moved_the_loss_is_not_blamed_on_a_high_lr() -> None:
    """The reference classifier spec (MiniLM, 40 steps, lr 0.001) ended meta_init at a best
    validation loss of 0.6945 against 0.6922 untrained, and was told that a learning rate
    too high is the usual cause and to lower it: training had barely moved the loss."""
    from subsetctl.stages.meta_init import worse_than_untrained_warning

    barely = worse_than_untrained_warning(0.6922, 0.6945, 10, 0.001, 28)
    assert barely is not None and "0.6945 at its best step (10) against 0.6922" in barely
    assert "too high" not in barely and "barely moved" in barely and "28 validation examples" in barely
    clearly = worse_than_untrained_warning(2.30, 4.94, 40, 1.0, 28)
    assert clearly is not None and clearly.endswith("A meta_init.lr too high (here 1) is the usual cause: lower it "
                                                    "and run again.")
    assert worse_than_untrained_warning(0.6922, 0.6922, 10, 0.001, 28) is None
    assert worse_than_untrained_warning(0.6922, 0.60, 10, 0.001, 28) is None


def test_classifier_selections_that_predicted_one_class_are_warned() -> None:
    """The reference classifier spec's every selection scored accuracy 0.667 (macro-F1 0.4)
    on 27 test examples, each predicting 'False' for all of them, and nothing said so: the
    selections looked tied by the test metric, though no fine-tune had learned the task."""
    from subsetctl.stages.evaluate import one_class_warning

    def run(*predicted: int) -> dict:
        gold = [0, 1, 0][: len(predicted)]
        return {"n": len(predicted), "predictions": [{"gold": g, "prediction": p} for g, p in zip(gold, predicted)]}

    classes = ["False", "True"]
    per_run = {"a": run(0, 0, 0), "b": run(0, 0, 0), "c": run(0, 1, 0), "d": run(1, 1, 1), "e": run(0, 0, 0)}
    said = one_class_warning({"exhaustive": ["a"], "all": ["b", "e"], "target_only": ["c"]}, per_run, classes)
    assert said is not None and said.startswith("The fine-tunes of exhaustive and all predicted 'False' for every one of "
                                                "the 3 test examples (every seed)"), said
    assert "target_only" not in said and "finetune.steps" in said
    mixed = one_class_warning({"x": ["a"], "y": ["d"]}, per_run, classes)
    assert mixed is not None and mixed.startswith("The fine-tunes of x and y each predicted a single class")
    assert one_class_warning({"x": ["a", "c"]}, per_run, classes) is None  # one seed learned more than that
    assert one_class_warning({"x": ["c"]}, per_run, classes) is None
    same_gold = {"a": {"n": 2, "predictions": [{"gold": 0, "prediction": 0}] * 2}}
    assert one_class_warning({"x": ["a"]}, same_gold, classes) is None  # one class is all there is to predict
    assert one_class_warning({"x": ["z"]}, {"z": {"n": 3}}, classes) is None  # (a result without predictions)


def test_a_lambda_linear_sgd_leaves_out_is_warned_of_once(tiny_project: Path) -> None:
    """calibrate.lambda_grid holding a lambda where linear_sgd's simulated fine-tune diverges
    was warned of twice by `run`: by the spec's checks as the run began and again by the
    calibrate stage, the same reason in other words. The spec's warning says it alone."""
    rep = SilentReporter()
    run_project(tiny_project, ["verify.enabled=true", "verify.k=4", "calibrate.lambda_grid=[0.1, 100000]",
                               "estimate.estimator=linear_sgd"], until="calibrate", reporter=rep)
    said = [w for w in rep.warnings if "lambda 100000" in w]
    assert len(said) == 1 and "calibrate.lambda_grid: linear_sgd leaves this lambda out" in said[0], rep.warnings
