"""Fixtures for the data-stage tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from subsetctl.data.loaders import LoadContext


@pytest.fixture
def make_ctx(tmp_path: Path) -> Callable[..., LoadContext]:
    """A LoadContext factory whose base_dir is tmp_path."""

    def make(name: str = "src", kind: str = "causal-lm", seed: int = 0) -> LoadContext:
        return LoadContext(source_name=name, base_dir=tmp_path, kind=kind, seed=seed)  # type: ignore[arg-type]

    return make
