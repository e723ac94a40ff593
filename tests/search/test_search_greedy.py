"""Greedy selection: one batched call per round, stopping rules, score meaning."""

from __future__ import annotations

import pytest
from searchfixtures import Additive

from subsetctl.search import SearchContext, run_strategy


def test_forward_adds_best_first_in_batched_rounds() -> None:
    est = Additive([0.3, -0.2, 0.1, 0.0])
    result = run_strategy("forward", est, SearchContext(sources=est.sources))
    assert result.selected == ["s0", "s2"]
    assert [s["source"] for s in result.diagnostics["steps"]] == ["s0", "s2"]
    # start, then rounds over 4, 3 and 2 candidates
    assert est.calls == [1, 4, 3, 2]
    assert result.scores == pytest.approx({"s0": 0.3, "s1": -0.2, "s2": 0.1, "s3": 0.0})
    assert result.estimated_loss == pytest.approx(0.6)


def test_backward_removes_harmful_and_scores_harm_of_removal() -> None:
    est = Additive([0.3, -0.2, 0.1, -0.05])
    result = run_strategy("backward", est, SearchContext(sources=est.sources))
    assert result.selected == ["s0", "s2"]
    assert est.calls == [1, 4, 3, 2]
    assert result.scores == pytest.approx({"s0": 0.3, "s1": -0.2, "s2": 0.1, "s3": -0.05})


def test_min_improvement_and_max_steps_stop_early() -> None:
    est = Additive([0.3, 0.02, 0.1])
    assert run_strategy(
        "forward", est, SearchContext(sources=est.sources), {"min_improvement": 0.05}
    ).selected == ["s0", "s2"]
    assert run_strategy("forward", est, SearchContext(sources=est.sources), {"max_steps": 1}).selected == [
        "s0"
    ]
