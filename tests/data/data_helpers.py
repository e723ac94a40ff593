"""Helpers for the data-stage tests: small files written to tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as JSON Lines."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def qa_rows(n: int, prefix: str = "q") -> list[dict[str, Any]]:
    """``n`` distinct prompt/response rows with one extra column."""
    return [{"prompt": f"{prefix}{i}?", "response": f"a{i}", "extra": i} for i in range(n)]
