"""Fixtures for the estimation engine tests: a small synthetic feature store."""

from __future__ import annotations

import pytest

from subsetctl.estimate.base import FeatureSet
from subsetctl.estimate.synthetic import make_synthetic_features


@pytest.fixture(scope="session")
def small_features() -> FeatureSet:
    """10 sources x 200 rows, d = 16; sources 0-1 helpful, 2-3 harmful."""
    return make_synthetic_features(
        n_sources=10,
        rows_per_source=200,
        d=16,
        n_target_train=120,
        n_val=80,
        seed=3,
        helpful=(0, 1),
        harmful=(2, 3),
    )
