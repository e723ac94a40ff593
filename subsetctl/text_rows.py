"""Rows of plain text trained on whole (``loader.text_field``): a corpus's document is kept
as a row with an empty prompt and the text as its response, its metadata marking it with
:data:`TEXT_KEY`, so that the model stages tokenize the text alone (no chat template, no
prompt: loss on every token; :func:`subsetctl.modeling.encoding.encode_rows`).

One module for what both sides must agree on, the key and how a row is told to be one; it
imports nothing heavy, so the data loaders need not load the model code (torch) for it,
nor the model code the loaders and the spec."""

from __future__ import annotations

import json
from typing import Any

#: the metadata key (value ``true``) of a row whose response is a text trained on whole
TEXT_KEY = "whole_text"

#: the key as a row's metadata JSON names it: rows without it are not parsed
_TEXT_KEY_JSON = json.dumps(TEXT_KEY)


def is_text_row(row: dict[str, Any]) -> bool:
    """Whether ``row`` (a prepared row: its ``metadata`` a JSON object's text, or a dict)
    is a text trained on whole: its metadata holds :data:`TEXT_KEY` as ``true``. The
    metadata JSON is parsed only when it names the key."""
    raw = row.get("metadata")
    if not raw:
        return False
    if isinstance(raw, dict):
        return raw.get(TEXT_KEY) is True
    if not isinstance(raw, str) or _TEXT_KEY_JSON not in raw:
        return False
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        return False
    return isinstance(parsed, dict) and parsed.get(TEXT_KEY) is True
