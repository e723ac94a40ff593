"""Fixtures for the estimation engine tests: a small synthetic feature store."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from subsetctl.estimate.base import FeatureSet
from subsetctl.estimate.blas_threads import _loaded_openblas, _OpenBLAS
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


@pytest.fixture
def blas_threads_here() -> Iterator[Callable[[int], list[_OpenBLAS]]]:
    """``set(n)``: every OpenBLAS this process has loaded (numpy's first) on ``n`` threads,
    returned; their counts are put back after the test. Skips where numpy's BLAS is another."""
    libraries = _loaded_openblas()
    if not libraries:
        pytest.skip("numpy's BLAS here is not OpenBLAS, whose thread count subsetctl sets")
    before = [library.threads() for library in libraries]

    def set_threads(n: int) -> list[_OpenBLAS]:
        for library in libraries:
            library.set_threads(n)
        return libraries

    yield set_threads
    for library, threads in zip(libraries, before):
        library.set_threads(threads)
