"""Time a search on a local Dask cluster against loky and one process: with its calls run in
this process when that is faster, on the cluster always, as before the logs were silenced
cheaply, and with the workers checked on every call.

The search stage estimates in chunks of 256 subsets, and a greedy search once per step:
one executor call each. Before running a call's tasks, the Dask backend checks that the
workers run this subsetctl and can load the estimator's code (two round trips to every
worker). It now checks each worker process once per search stage
(``dask_backend._check_new_workers``); before, it checked all of them on every call. This
script runs the same searches (``forward``, then ``random_ensemble``, through a fresh
results store each time, as a first run does) ``--repeats`` times, alternating, in this
one process:

* ``dask``: ``backend: dask`` without an address (a LocalCluster of ``--n-jobs``
  single-threaded processes, started once before the timings, as a search stage reuses it),
  which times its first calls on the cluster and in this process and keeps the faster
  (``executors.TIMED_CALLS``, as loky does);
* ``dask_always``: every call on the cluster (``TIMED_CALLS = 0``, what it did before);
* ``dask_logs_all``: every call on the cluster, distributed's logs silenced around each
  fetched estimate by setting every one of its loggers (what it did before they were set
  only where they have a level of their own: ``dask_backend._distributed_logs_off``);
* ``dask_checks_every_call``: every call on the cluster, the workers checked again on
  every call (what it did before they were checked once per stage);
* ``loky`` and ``sequential``.

Figures are the fastest of the repeats, in seconds, the ratios of the others to ``dask``,
the calls made (and of them, those ``dask`` ran on the cluster); ``identical`` tells whether all ways chose the same subsets with the
same estimates. On a loaded machine a search's time varies by more than the checks cost,
so ``per_call_ms`` also times ``--calls`` single calls (``--sources`` subsets each, as a
greedy step) each Dask way, interleaved one by one so that all see the same load: the
median milliseconds per call. By default a synthetic store of ``--sources`` sources of
``--rows`` rows at ``--d``. Silencing distributed's logs costs in proportion to the loggers
the process has, so transformers, peft, datasets and torch are imported first, as a
``subsetctl run`` has by its search stage (~560 loggers; ~70 without).

    python benchmarks/search_dask.py [--sources 60] [--rows 4] [--d 32] [--m 3000] [--repeats 3] [--calls 100]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if not os.environ.get("PYTHONPATH"):  # this checkout's code unless told otherwise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from subsetctl.estimate import dask_backend, executors
from subsetctl.estimate.results import CachedEstimator, SubsetResultsStore
from subsetctl.estimate.solvers import FastEstimator
from subsetctl.estimate.synthetic import make_synthetic_features
from subsetctl.search.base import SearchContext, run_strategy

WAYS = ("dask", "dask_always", "dask_logs_all", "dask_checks_every_call", "loky", "sequential")
DASK_WAYS = WAYS[:4]


@contextlib.contextmanager
def _all_distributed_logs_off() -> Iterator[None]:
    """``dask_backend._distributed_logs_off`` as it was: every ``distributed`` logger set."""
    import logging

    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name == "distributed" or name.startswith("distributed.")]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in levels:
            logger.setLevel(level)


@contextlib.contextmanager
def _as(way: str) -> Iterator[None]:
    """The executors as ``way`` runs them (see the module's docstring)."""
    limit, logs_off = executors.TIMED_CALLS, dask_backend._distributed_logs_off
    if way in ("dask_always", "dask_logs_all", "dask_checks_every_call"):
        executors.TIMED_CALLS = 0
    if way == "dask_logs_all":
        dask_backend._distributed_logs_off = _all_distributed_logs_off  # type: ignore[assignment]
    try:
        yield
    finally:
        executors.TIMED_CALLS, dask_backend._distributed_logs_off = limit, logs_off  # type: ignore[assignment]


class _Counted:
    """``dask_backend._check_new_workers`` counting its calls; with ``every_call``, it forgets
    the workers checked before each (the behaviour before they were remembered)."""

    def __init__(self) -> None:
        self.original = dask_backend._check_new_workers
        self.every_call = False
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        if self.every_call:
            dask_backend._checked.clear()
        self.original(*args, **kwargs)


def search(estimator: FastEstimator, way: str, n_jobs: int, m: int, counted: _Counted) -> tuple[float, Any]:
    """Both searches run ``way``, in seconds, and what they picked (subsets and losses)."""
    executors.forget_dumped_estimator()
    dask_backend.forget_scattered_estimator()  # each search as a new stage
    counted.every_call = way == "dask_checks_every_call"
    backend = "dask" if way.startswith("dask") else way
    picked = []
    with tempfile.TemporaryDirectory() as folder:
        store = SubsetResultsStore(Path(folder) / "store", estimator.sources, "bench")
        cached = CachedEstimator(estimator, store, {"backend": backend, "n_jobs": n_jobs}, chunk_size=256)
        ctx = SearchContext(sources=list(estimator.sources), seed=0)
        started = time.perf_counter()
        with _as(way):
            for name, params in (("forward", {}), ("random_ensemble", {"m": m, "alpha": 0.5})):
                result = run_strategy(name, cached, ctx, params)
                picked.append((result.selected, result.estimated_loss))
        took = time.perf_counter() - started
    executors.forget_dumped_estimator()
    dask_backend.forget_scattered_estimator()
    return took, picked


def per_call_ms(estimator: FastEstimator, n_jobs: int, calls: int, counted: _Counted) -> dict[str, float]:
    """Median milliseconds of one Dask call (a greedy step's ``n_sources`` subsets) each Dask
    way, interleaved call by call."""
    import numpy as np

    masks = np.random.default_rng(0).random((len(estimator.sources), len(estimator.sources))) < 0.5
    taken: dict[str, list[float]] = {way: [] for way in DASK_WAYS}
    for _ in range(calls):
        for way, ms in taken.items():
            counted.every_call = way == "dask_checks_every_call"
            with _as(way):
                started = time.perf_counter()
                executors.estimate_parallel(estimator, masks, backend="dask", n_jobs=n_jobs)
                ms.append(1000 * (time.perf_counter() - started))
    return {way: round(float(np.median(ms)), 1) for way, ms in taken.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=60)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--m", type=int, default=3000)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    # their loggers, as a run has them
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers.modeling_utils  # noqa: F401

    features = make_synthetic_features(n_sources=args.sources, rows_per_source=args.rows, d=args.d,
                                       n_target_train=20, n_val=20, helpful=tuple(range(0, 20, 2)), harmful=(1, 3))
    estimator = FastEstimator(features, lam=1.0)
    counted = _Counted()
    dask_backend._check_new_workers = counted  # type: ignore[assignment]
    try:
        for way in ("dask", "loky"):  # start the local cluster and the loky workers (once per process)
            search(estimator, way, args.n_jobs, args.m, counted)
        seconds: dict[str, list[float]] = {way: [] for way in WAYS}
        picked: dict[str, Any] = {}
        on_cluster = {"dask": 0, "dask_always": 0}  # calls of the searches that ran on the cluster
        for _ in range(args.repeats):
            for way in WAYS:
                before = counted.calls
                took, result = search(estimator, way, args.n_jobs, args.m, counted)
                seconds[way].append(took)
                picked.setdefault(way, result)
                if way in on_cluster:
                    on_cluster[way] += counted.calls - before
        single = per_call_ms(estimator, args.n_jobs, args.calls, counted)
    finally:
        dask_backend._check_new_workers = counted.original  # type: ignore[assignment]
        dask_backend.close_dask_clients()
    best = {way: min(v) for way, v in seconds.items()}
    print(json.dumps({
        "sources": len(features.sources), "d": int(features.d), "n_jobs": args.n_jobs, "m": args.m,
        "dask_calls_per_search": on_cluster["dask_always"] // args.repeats,
        "dask_calls_on_the_cluster_per_search": on_cluster["dask"] // args.repeats,
        **{f"{way}_s": round(best[way], 3) for way in WAYS},
        **{f"{way}_over_dask": round(best[way] / best["dask"], 2) for way in WAYS[1:]},
        "per_call_ms": single,
        "check_ms_saved_per_call": round(single["dask_checks_every_call"] - single["dask_always"], 1),
        "logs_ms_saved_per_call": round(single["dask_logs_all"] - single["dask_always"], 1),
        "all_s": {way: [round(x, 3) for x in v] for way, v in seconds.items()},
        "identical": all(picked[way] == picked["dask"] for way in WAYS),
    }))


if __name__ == "__main__":
    main()
