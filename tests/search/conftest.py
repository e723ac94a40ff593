"""Fixtures for the search-strategy tests (helpers live in searchfixtures.py)."""

from __future__ import annotations

import pytest
from searchfixtures import (
    FOOLED_SOURCES,
    CountingEstimator,
    make_estimator,
    make_planted_features,
    make_store,
)

from subsetctl.estimate.base import FeatureSet


@pytest.fixture(scope="session")
def planted_features() -> FeatureSet:
    return make_planted_features()


@pytest.fixture(scope="session")
def shared_estimator(planted_features: FeatureSet) -> CountingEstimator:
    """One memoized estimator for the whole session (the planted store is fixed)."""
    return CountingEstimator(make_estimator(planted_features))


@pytest.fixture()
def estimator(shared_estimator: CountingEstimator) -> CountingEstimator:
    shared_estimator.reset_calls()
    return shared_estimator


@pytest.fixture(scope="session")
def fooled_features() -> FeatureSet:
    return make_store(FOOLED_SOURCES)


@pytest.fixture(scope="session")
def fooled_shared(fooled_features: FeatureSet) -> CountingEstimator:
    return CountingEstimator(make_estimator(fooled_features))


@pytest.fixture()
def fooled_estimator(fooled_shared: CountingEstimator) -> CountingEstimator:
    fooled_shared.reset_calls()
    return fooled_shared
