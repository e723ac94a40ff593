"""A source that gradient similarity loves but that raises the target loss.

``huge`` (conftest.make_store) has many rows labelled along the target's own mean
gradient, with very low outputs f: its mean gradient has cosine near 1 with the
target's, but fitting it overshoots and raises the target's validation loss.
"""

from __future__ import annotations

import pytest
from searchfixtures import FOOLED_SOURCES, FOOLER, CountingEstimator

from subsetctl.estimate.base import FeatureSet
from subsetctl.search import SearchContext, run_strategy


def test_gradient_similarity_picks_the_fooler(
    fooled_estimator: CountingEstimator, fooled_features: FeatureSet
) -> None:
    ctx = SearchContext(sources=list(FOOLED_SOURCES), features=fooled_features)
    top1 = run_strategy("gradient_similarity", fooled_estimator, ctx, {"top_k": 1})
    assert top1.selected == [FOOLER]
    assert top1.scores[FOOLER] > 0.8
    default = run_strategy("gradient_similarity", fooled_estimator, ctx, {})
    assert FOOLER in default.selected
    target_only = run_strategy("target_only", fooled_estimator, ctx, {})
    assert top1.estimated_loss > target_only.estimated_loss


@pytest.mark.parametrize(
    "name, params",
    [
        ("random_ensemble", {"m": 6, "select": "sweep"}),
        ("surrogate", {"m": 6, "holdout": 0.0}),
        ("forward", {}),
        ("backward", {}),
        ("exhaustive", {}),
    ],
)
def test_estimator_strategies_are_not_fooled(
    name: str, params: dict, fooled_estimator: CountingEstimator, fooled_features: FeatureSet
) -> None:
    ctx = SearchContext(sources=list(FOOLED_SOURCES), features=fooled_features)
    result = run_strategy(name, fooled_estimator, ctx, params)
    assert FOOLER not in result.selected
    assert result.scores[FOOLER] < 0
    fooled = run_strategy("gradient_similarity", fooled_estimator, ctx, {"top_k": 1})
    assert result.estimated_loss < fooled.estimated_loss
