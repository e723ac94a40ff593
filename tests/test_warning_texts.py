"""The warnings a run prints: each fact said once, with what to do about it."""

from __future__ import annotations

from pathlib import Path

from subsetctl.api import run_project
from subsetctl.reporter import SilentReporter


def test_unconverged_estimates_are_warned_once_per_strategy_not_again_for_the_stage(tiny_project: Path) -> None:
    """The search stage added "N subset estimates did not converge; they are flagged in the
    results" after each strategy's own notice had said it with the count and what to do."""
    rep = SilentReporter()
    run_project(tiny_project, ["estimate.estimator=exact", "estimate.max_iter=1", "estimate.lam=0.01",
                               "search.strategies=[{name: exhaustive}]"], until="search", reporter=rep)
    said = [w for w in rep.warnings if "did not converge" in w]
    assert len(said) == 1 and said[0].startswith("exhaustive: "), rep.warnings
    assert "estimate.max_iter" in said[0]
