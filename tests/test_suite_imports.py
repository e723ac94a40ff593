"""Checks of the test suite itself."""

from __future__ import annotations

import re
from pathlib import Path


def test_no_test_imports_a_conftest_by_module_name() -> None:
    """`from conftest import ...` in a test finds whichever conftest.py Python imported first
    under that name: in a whole-suite run tests/search/conftest.py, so a test passing alone
    failed in CI (twice on 2026-12-05). Take conftest's helpers through its fixtures."""
    tests = Path(__file__).parent
    found = [f"{path.relative_to(tests)}:{number}" for path in sorted(tests.rglob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
             if re.match(r"\s*(from conftest import|import conftest\b)", line)]
    assert not found, found
