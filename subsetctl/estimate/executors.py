"""Run an estimator over many masks in parallel: joblib (loky, threading) or Dask.

Masks are cut into batches whose boundaries depend only on the number of masks and
``batch_size`` (never on the backend or ``n_jobs``), each batch is estimated by one
worker, and the results are put back in request order. Because estimators are
deterministic for a given batch, every backend returns the same numbers as the
sequential one.

Shipping the estimator: for loky it is written once per call with :func:`joblib.dump`
to a temporary folder (``/dev/shm`` when it has room) and workers load it memory-mapped,
once per process; so the exact estimator's rows (N x d float64) are shared, not copied
per task. For Dask it is scattered once to every worker.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from subsetctl.errors import UserError
from subsetctl.estimate.base import EstimateBatch, SubsetEstimator
from subsetctl.estimate.results import concat_batches, empty_batch

BACKENDS = ("sequential", "loky", "threading", "dask")
#: Default number of batches a request is cut into (when ``batch_size`` is not given).
TARGET_BATCHES = 8
#: Largest default batch; estimators may lower it with a ``chunk_size`` attribute.
MAX_DEFAULT_BATCH = 1024

ProgressFn = Callable[[int, int], None]

_WORKER_CACHE: dict[str, SubsetEstimator] = {}


def default_batch_size(n_masks: int, estimator: SubsetEstimator) -> int:
    """Batch size used when none is given: about ``TARGET_BATCHES`` batches, capped by
    the estimator's own ``chunk_size`` (if it has one) and ``MAX_DEFAULT_BATCH``."""
    cap = int(getattr(estimator, "chunk_size", MAX_DEFAULT_BATCH))
    return max(1, min(cap, MAX_DEFAULT_BATCH, math.ceil(n_masks / TARGET_BATCHES)))


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _run_batch(estimator: SubsetEstimator, masks: np.ndarray) -> EstimateBatch:
    return estimator.estimate(masks)


def _run_from_file(path: str, masks: np.ndarray) -> EstimateBatch:
    """Worker side of the loky backend: load the dumped estimator once per process."""
    est = _WORKER_CACHE.get(path)
    if est is None:
        import joblib

        _WORKER_CACHE.clear()  # keep only the current call's estimator
        est = joblib.load(path, mmap_mode="r")
        _WORKER_CACHE[path] = est
    return est.estimate(masks)


def _temp_dir(nbytes: int) -> str:
    shm = Path("/dev/shm")
    roomy = shm.is_dir() and os.access(shm, os.W_OK)
    if roomy and shutil.disk_usage(shm).free > 2 * nbytes + (64 << 20):
        return tempfile.mkdtemp(prefix="subsetctl-", dir=shm)
    return tempfile.mkdtemp(prefix="subsetctl-")


def _estimate_nbytes(estimator: Any) -> int:
    total = 0
    stack = [estimator]
    seen: set[int] = set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            total += obj.nbytes
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return total


def _joblib_results(
    estimator: SubsetEstimator,
    masks: np.ndarray,
    slices: list[slice],
    backend: str,
    n_jobs: int,
) -> Iterator[EstimateBatch]:
    from joblib import Parallel, delayed

    if backend == "threading":
        parallel = Parallel(n_jobs=n_jobs, backend="threading", return_as="generator")
        yield from parallel(delayed(_run_batch)(estimator, masks[s]) for s in slices)
        return
    folder = _temp_dir(_estimate_nbytes(estimator))
    try:
        import joblib

        path = os.path.join(folder, "estimator.joblib")
        joblib.dump(estimator, path)
        parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")
        yield from parallel(delayed(_run_from_file)(path, masks[s]) for s in slices)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _dask_results(
    estimator: SubsetEstimator,
    masks: np.ndarray,
    slices: list[slice],
    n_jobs: int,
    address: str | None,
    connect_timeout: float,
    progress: Callable[[int], None],
) -> list[EstimateBatch]:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if address is not None:
        try:
            client = Client(address, timeout=f"{connect_timeout}s", set_as_default=False)
        except ValueError as exc:  # e.g. no port: dask cannot parse it
            raise UserError(
                f"executor.address {address!r} is not a Dask scheduler address ({exc}). Use the form "
                "tcp://HOST:PORT (what `dask scheduler` prints), or drop the address to use a local cluster."
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise UserError(
                f"Could not reach the Dask scheduler at {address!r} within "
                f"{connect_timeout:g} s ({exc}). Start it (`dask scheduler`), check the "
                "address and port, or drop the address to use a local cluster."
            ) from exc
    else:
        cluster = LocalCluster(
            n_workers=n_jobs,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster, set_as_default=False)
    try:
        shipped = client.scatter(estimator, broadcast=True)
        futures = [client.submit(_run_batch, shipped, masks[s], pure=False) for s in slices]
        position = {f.key: i for i, f in enumerate(futures)}
        results: list[EstimateBatch | None] = [None] * len(futures)
        for fut in as_completed(futures, loop=client.loop):
            i = position[fut.key]
            results[i] = fut.result()
            progress(i)
        return [r for r in results if r is not None]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def estimate_parallel(
    estimator: SubsetEstimator,
    masks: np.ndarray,
    backend: str = "loky",
    n_jobs: int = 2,
    address: str | None = None,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    connect_timeout: float = 5.0,
) -> EstimateBatch:
    """Estimate ``masks`` (m, n_sources) with ``estimator`` on several workers.

    Args:
        backend: ``"loky"`` (processes, default), ``"threading"``, ``"dask"`` or
            ``"sequential"`` (in this process, same batches).
        n_jobs: joblib workers, or workers of the local Dask cluster.
        address: Dask scheduler address (``"tcp://host:8786"``); without it a
            ``LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True)`` is
            started and closed for this call.
        batch_size: masks per task; default :func:`default_batch_size`.
        progress: called as ``progress(masks_done, masks_total)`` as batches finish.
        connect_timeout: seconds to wait for the Dask scheduler at ``address``.

    Returns:
        One :class:`EstimateBatch` in the order of ``masks``.

    Raises:
        UserError: unknown backend, bad ``n_jobs``/``batch_size``, unreachable scheduler.
    """
    if backend not in BACKENDS:
        raise UserError(f"Unknown executor backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if n_jobs < 1:
        raise UserError(f"n_jobs must be at least 1, got {n_jobs}.")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}.")
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim == 1:
        masks = masks[None, :]
    if masks.ndim != 2 or masks.shape[1] != len(estimator.sources):
        raise UserError(f"Subset masks must have shape (m, {len(estimator.sources)}), got {masks.shape}.")
    total = len(masks)
    if total == 0:
        return empty_batch(0)
    size = batch_size or default_batch_size(total, estimator)
    slices = _batches(total, size)
    done = 0

    def advance(i: int) -> None:
        nonlocal done
        done += slices[i].stop - slices[i].start
        if progress is not None:
            progress(done, total)

    if backend == "sequential" or (backend != "dask" and (n_jobs == 1 or len(slices) == 1)):
        parts = []
        for i, s in enumerate(slices):
            parts.append(estimator.estimate(masks[s]))
            advance(i)
        return concat_batches(parts)
    if backend == "dask":
        parts = _dask_results(estimator, masks, slices, n_jobs, address, connect_timeout, advance)
        return concat_batches(parts)
    parts = []
    for i, part in enumerate(_joblib_results(estimator, masks, slices, backend, n_jobs)):
        parts.append(part)
        advance(i)
    return concat_batches(parts)
