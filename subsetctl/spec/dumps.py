"""The spec and its sources as JSON (``model_dump(mode="json")``), each source dumped once
per command.

Fingerprints, spec slices and cache keys dump the spec again and again: each stage's slice
(``fingerprint_dump`` and the raw slice), the data stage's per-source dumps, the fine-tune
cache's keys. At 10,000 sources a `run` dumped each source ~18 times (seconds of a run with
nothing to do). While :func:`dumps_once` is on, a source object is dumped once and its dump
handed out again; the spec's dump is its other settings' dump with those of its sources.

Held by the source object's identity (the object kept with it, so the identity is not
reused): a validated spec is not changed afterwards (overrides are applied before it is
validated; a changed copy, ``model_copy(update=...)``, is another object). Each call gives a
new top-level dict, so a caller may set its keys (``source_dump`` replaces ``loader``); what
is nested in it is shared and must not be changed in place.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import BaseModel

from subsetctl.project import CommandMemo

#: id(source) -> (the source, its dump) while :func:`dumps_once` is on
_source_dumps: CommandMemo[int, tuple[BaseModel, dict[str, Any]]] = CommandMemo()


def dumps_once() -> contextlib.AbstractContextManager[Any]:
    """Within it, :func:`source_json` dumps each source object once (:mod:`subsetctl.spec.dumps`).
    Re-entrant; the dumps are dropped when the outermost one ends. Usable as a decorator too."""
    return _source_dumps.scope()


def source_json(source: BaseModel) -> dict[str, Any]:
    """``source.model_dump(mode="json")``, dumped once while :func:`dumps_once` is on; a new
    top-level dict each call, its nested values shared (not to be changed in place)."""
    memo = _source_dumps.held
    if memo is None:
        return source.model_dump(mode="json")
    held = memo.get(id(source))
    if held is None or held[0] is not source:
        held = memo[id(source)] = (source, source.model_dump(mode="json"))
    return dict(held[1])


def spec_json(spec: Any) -> dict[str, Any]:
    """``spec.model_dump(mode="json")`` (a :class:`~subsetctl.spec.Spec`), its sources'
    dumps from :func:`source_json`: the same dict, keys in the same order."""
    if _source_dumps.held is None:
        return spec.model_dump(mode="json")
    others = spec.model_dump(mode="json", exclude={"sources"})
    out: dict[str, Any] = {}
    for key in type(spec).model_fields:
        if key == "sources":
            out[key] = [source_json(source) for source in spec.sources]
        elif key in others:
            out[key] = others[key]
    return out | others
