"""Registers the ``slow`` marker for the gradient tests (real models)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: uses a real model; deselect with -m 'not slow'")
