"""Report cells: losses line up, errors read as percentages, and an uncalibrated run
does not repeat its raw estimates under "calibrated"."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from subsetctl.report.cells import loss_cell, percent_cell
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
    assert percent_cell(None) == "–" and percent_cell(float("nan")) == "–"


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
    assert test_metric_cells(three) == ("0.5 ± 0.000", "2.000 ± 0.012")
