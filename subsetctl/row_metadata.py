"""A prepared row's metadata (a JSON object's text, or a dict) and whether reasoning-gym's
scorer scores the row (its metadata names ``rg_task``).

One module for what the test metrics and the evaluate stage's inputs must agree on; it
imports nothing heavy, so the evaluate stage can tell from the data stage's results
whether exact match scores any test row (which decides its inputs, and so `plan`'s
verdict) without loading the model code (torch)."""

from __future__ import annotations

import json
from typing import Any


def row_metadata(example: dict[str, Any]) -> dict[str, Any]:
    """``example``'s metadata as a dict ({} where it has none, or none that parses to one:
    JSON nested deeper than Python's reader goes too, as :func:`subsetctl.text_rows.is_text_row`
    takes it, not a traceback)."""
    raw = example.get("metadata")
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def is_reasoning_gym_row(example: dict[str, Any]) -> bool:
    """Whether ``example`` carries reasoning-gym's ``rg_task``: metric ``auto`` scores it with
    reasoning-gym's scorer, not exact match."""
    return bool(row_metadata(example).get("rg_task"))
