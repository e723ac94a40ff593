"""Planted truth: every estimator-based strategy keeps the helpful sources and drops
the harmful ones of the synthetic store in conftest.py."""

from __future__ import annotations

import numpy as np
import pytest
from searchfixtures import HARMFUL, HELPFUL, SOURCES, CountingEstimator

from subsetctl.search import SearchContext, run_strategy

CASES = [
    ("random_ensemble", {"m": 60, "select": "sign"}),
    ("random_ensemble", {"m": 60, "select": "threshold", "threshold": 0.005}),
    ("random_ensemble", {"m": 60, "select": "top_k", "top_k": 3}),
    ("random_ensemble", {"m": 60, "select": "sweep"}),
    ("surrogate", {"m": 60, "select": "sign"}),
    ("surrogate", {"m": 60, "select": "sweep"}),
    ("forward", {}),
    ("backward", {}),
    ("exhaustive", {}),
]


def _ids(case: tuple[str, dict]) -> str:
    return case[0] + "-" + str(case[1].get("select", ""))


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_keeps_helpful_and_drops_harmful(case: tuple[str, dict], estimator: CountingEstimator) -> None:
    name, params = case
    result = run_strategy(name, estimator, SearchContext(sources=list(SOURCES), seed=3), params)
    assert set(HELPFUL) <= set(result.selected), result.selected
    assert not set(HARMFUL) & set(result.selected), result.selected
    # scores: higher = more helpful
    assert min(result.scores[s] for s in HELPFUL) > max(result.scores[s] for s in HARMFUL)
    # the selection's own estimate is reported and is below the target-only estimate
    target_only = float(estimator.estimate(np.zeros((1, len(SOURCES)), dtype=bool)).loss[0])
    assert result.estimated_loss is not None and result.estimated_loss < target_only


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_never_asks_twice_and_traces_everything(case: tuple[str, dict], estimator: CountingEstimator) -> None:
    name, params = case
    result = run_strategy(name, estimator, SearchContext(sources=list(SOURCES), seed=3), params)
    asked = [row.tobytes() for call in estimator.calls for row in call]
    assert len(asked) == len(set(asked)), "a subset was estimated twice in one run"
    assert len(result.trace) == len(asked)
    traced = {tuple(t["subset"]) for t in result.trace}
    assert tuple(result.selected) in traced
    assert result.diagnostics["n_estimate_calls"] == len(estimator.calls)


def test_exhaustive_is_the_true_optimum(estimator: CountingEstimator) -> None:
    result = run_strategy("exhaustive", estimator, SearchContext(sources=list(SOURCES)))
    assert len(result.trace) == 2 ** len(SOURCES)
    best = min(result.trace, key=lambda t: t["loss"])
    assert result.selected == best["subset"]
    assert result.estimated_loss == pytest.approx(best["loss"])
    assert sorted(result.selected) == sorted(HELPFUL)


def test_strategies_are_reproducible(estimator: CountingEstimator) -> None:
    ctx = SearchContext(sources=list(SOURCES), seed=11)
    a = run_strategy("random_ensemble", estimator, ctx, {"m": 30})
    b = run_strategy("random_ensemble", estimator, ctx, {"m": 30})
    assert a.to_dict() == b.to_dict()
    c = run_strategy("random_ensemble", estimator, SearchContext(sources=list(SOURCES), seed=12), {"m": 30})
    assert [t["subset"] for t in a.trace] != [t["subset"] for t in c.trace]
