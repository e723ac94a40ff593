"""Cell formatting shared by the terminal report and report.md (same content, two renderings)."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; "–" for a missing value."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def loss_cell(value: Any) -> str:
    """A loss with 4 significant digits, trailing zeros kept so a column lines up
    (1.400, not 1.4); "–" for a missing value."""
    return f"{value:#.4g}" if isinstance(value, float) else fmt(value)


def percent_cell(value: Any) -> str:
    """A fraction as a percentage with two significant digits (0.0391 -> 3.9%)."""
    if not isinstance(value, float) or math.isnan(value):
        return "–"
    return f"{value * 100:.2g}%"


def calibrated_loss_cell(row: dict[str, Any], calibrated: bool) -> str:
    """The calibrated estimate, or "–" when calibration is off (the map is the identity
    then, and repeating the raw value under "calibrated" would suggest otherwise)."""
    return loss_cell(row.get("estimated_loss_calibrated")) if calibrated else "–"


def test_metric_cells(metrics: dict[str, Any]) -> tuple[str, str]:
    """The score and test-loss cells of one selection: mean, and ± std over seeds when
    there are several (a std of 0 is shown too: the seeds agreed)."""
    score = fmt(metrics["score_mean"], 3)
    loss = loss_cell(metrics["loss_mean"])
    if metrics.get("score_std") is not None:
        score += f" ± {metrics['score_std']:.3f}"
    if metrics.get("loss_std") is not None:
        loss += f" ± {metrics['loss_std']:.3f}"
    return score, loss


def repeats_cell(verify_entry: dict[str, Any]) -> str:
    """How many times verify fine-tuned each subset, and (with more than one) the mean
    Spearman between repeats: the ceiling for any estimate's Spearman against one run."""
    repeats = int(verify_entry.get("repeats") or 1)
    agreement = verify_entry.get("repeat_spearman")
    return f"{repeats} ({fmt(agreement, 3)})" if repeats > 1 else "1"
