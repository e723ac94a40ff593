"""The data stage: every source (and the target) becomes a ``datasets.Dataset`` with
common columns (source, prompt, response, label, label_text, metadata, row), shuffled
and split deterministically, and saved in the project.

Modules, one concern each:

- :mod:`subsetctl.data.loaders`: one registered loader per ``loader.type``;
- :mod:`subsetctl.data.prepare`: subsample, shuffle, corrupt and split one source;
- :mod:`subsetctl.data.stage`: run the stage, save and load splits;
- :mod:`subsetctl.data.fingerprint`: what each source's data depends on (stage inputs);
- :mod:`subsetctl.data.overlap`: held-out target rows leaking into sources, duplicate sources;
- :mod:`subsetctl.data.checks`: spec checks that need no data (``subsetctl validate``).

The names below are re-exported lazily so that ``import subsetctl.data`` (which
``checks`` needs) does not import ``datasets``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LoadContext": "subsetctl.data.loaders",
    "COLUMNS": "subsetctl.data.loaders",
    "prepare_source": "subsetctl.data.prepare",
    "run_data_stage": "subsetctl.data.stage",
    "load_split": "subsetctl.data.stage",
    "load_all": "subsetctl.data.stage",
    "label_names": "subsetctl.data.stage",
    "source_fingerprint_inputs": "subsetctl.data.fingerprint",
    "check_sources": "subsetctl.data.checks",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'subsetctl.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
