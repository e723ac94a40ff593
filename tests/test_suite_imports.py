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


def test_no_report_module_imports_a_private_name_of_another() -> None:
    """report/paired.py took the baselines' order from cells._BASELINES, a name cells.py could
    rename or drop as its own business: what two report modules share is public (e.g.
    subsetctl.report.BASELINES)."""
    report = Path(__file__).parents[1] / "subsetctl" / "report"
    found = [f"{path.name}:{number}" for path in sorted(report.glob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
             if (imported := re.match(r"\s*from subsetctl\S* import (.*)", line))
             and any(name.strip().startswith("_") for name in imported.group(1).strip("() ").split(","))]
    assert not found, found
