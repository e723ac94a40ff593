"""Cell formatting shared by the terminal report and report.md (same content, two renderings)."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; "–" for a missing value."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def repeats_cell(verify_entry: dict[str, Any]) -> str:
    """How many times verify fine-tuned each subset, and (with more than one) the mean
    Spearman between repeats: the ceiling for any estimate's Spearman against one run."""
    repeats = int(verify_entry.get("repeats") or 1)
    agreement = verify_entry.get("repeat_spearman")
    return f"{repeats} ({fmt(agreement, 3)})" if repeats > 1 else "1"
