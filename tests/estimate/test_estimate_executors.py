"""Tests of the parallel executors: every backend returns the sequential numbers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from estfixtures import random_masks

from subsetctl.errors import UserError
from subsetctl.estimate.base import EstimateBatch, FeatureSet
from subsetctl.estimate.executors import default_batch_size, estimate_parallel
from subsetctl.estimate.solvers import ExactEstimator, FastEstimator


def _assert_same(a: EstimateBatch, b: EstimateBatch) -> None:
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.w_norm, b.w_norm)
    np.testing.assert_array_equal(a.iterations, b.iterations)
    np.testing.assert_array_equal(a.converged, b.converged)


@pytest.fixture(scope="module")
def exact(small_features: FeatureSet) -> ExactEstimator:
    return ExactEstimator(small_features, lam=0.1)


def test_loky_and_threading_equal_sequential(exact: ExactEstimator) -> None:
    masks = random_masks(37, len(exact.sources), seed=1)
    seen: list[tuple[int, int]] = []
    seq = estimate_parallel(exact, masks, backend="sequential", batch_size=5)
    loky = estimate_parallel(
        exact, masks, backend="loky", n_jobs=2, batch_size=5, progress=lambda d, t: seen.append((d, t))
    )
    threads = estimate_parallel(exact, masks, backend="threading", n_jobs=2, batch_size=5)
    _assert_same(seq, loky)
    _assert_same(seq, threads)
    # order is the request order: compare with a direct call mask by mask
    direct = exact.estimate(masks)
    np.testing.assert_allclose(seq.loss, direct.loss, rtol=1e-12)
    assert seen[-1] == (37, 37) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) == 8


def test_dask_local_cluster_equals_loky(exact: ExactEstimator) -> None:
    masks = random_masks(20, len(exact.sources), seed=2)
    loky = estimate_parallel(exact, masks, backend="loky", n_jobs=2, batch_size=4)
    dask = estimate_parallel(exact, masks, backend="dask", n_jobs=2, batch_size=4)
    _assert_same(loky, dask)


def test_dask_scheduler_address_equals_sequential(small_features: FeatureSet) -> None:
    import logging

    from dask.distributed import LocalCluster

    fast = FastEstimator(small_features)
    masks = random_masks(30, small_features.n_sources, seed=3)
    seq = estimate_parallel(fast, masks, backend="sequential", batch_size=7)
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as cluster:
        got = estimate_parallel(fast, masks, backend="dask", address=cluster.scheduler_address, batch_size=7)
    _assert_same(seq, got)


def test_unreachable_dask_scheduler_is_a_quick_user_error(small_features: FeatureSet) -> None:
    fast = FastEstimator(small_features)
    start = time.perf_counter()
    with pytest.raises(UserError, match="tcp://127.0.0.1:9"):
        estimate_parallel(
            fast,
            random_masks(2, 10, seed=0),
            backend="dask",
            address="tcp://127.0.0.1:9",
            connect_timeout=1.0,
        )
    assert time.perf_counter() - start < 15


def test_bad_arguments(small_features: FeatureSet) -> None:
    fast = FastEstimator(small_features)
    masks = random_masks(3, 10, seed=0)
    with pytest.raises(UserError, match="backend"):
        estimate_parallel(fast, masks, backend="mpi")
    with pytest.raises(UserError, match="n_jobs"):
        estimate_parallel(fast, masks, n_jobs=0)
    with pytest.raises(UserError, match="shape"):
        estimate_parallel(fast, masks[:, :4])
    assert estimate_parallel(fast, masks[:0]).loss.shape == (0,)


def test_default_batches_do_not_depend_on_backend(exact: ExactEstimator) -> None:
    assert default_batch_size(1000, exact) == exact.chunk_size
    assert default_batch_size(40, exact) == 5
    assert default_batch_size(1, exact) == 1
