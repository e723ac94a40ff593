"""What one BLAS thread for the Hessians' factorizations costs the estimators in this process.

The ``fast`` and ``exact`` estimators factor each subset's d x d Hessian (``numpy.linalg.solve``;
``exact`` also ``inv``) on one OpenBLAS thread (:mod:`subsetctl.estimate.blas_threads`), so
that the estimates have the same bits in this process as on a loky or Dask worker with one
thread. This script times the same estimates both ways, alternating, ``--repeats`` times in
this one process, on this process's own thread count (numpy's default: one a core):

* ``one_thread``: as subsetctl does;
* ``threads``: the factorizations on this process's threads (what it did before).

Store: ``--sources`` sources of ``--rows`` rows at ``--d`` (synthetic); ``fast`` estimates
``--fast-masks`` random subsets, ``exact`` ``--exact-masks``. Figures are the fastest of the
repeats, in seconds, with ``ratio`` = one_thread / threads, and the load average (1 minute) at
the start: a loaded machine gains less from a second thread.

    python benchmarks/blas_threads.py [--d 128] [--repeats 3]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

if not os.environ.get("PYTHONPATH"):  # this checkout's code unless told otherwise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from subsetctl.estimate import solvers
from subsetctl.estimate.synthetic import make_synthetic_features


def timed(estimator: solvers.SubsetEstimator, masks: np.ndarray, one_thread: bool) -> float:
    """Seconds for ``estimator`` to estimate ``masks``, its factorizations on one thread or not."""
    keep = solvers.one_blas_thread
    if not one_thread:
        solvers.one_blas_thread = contextlib.nullcontext
    try:
        started = time.perf_counter()
        estimator.estimate(masks)
        return time.perf_counter() - started
    finally:
        solvers.one_blas_thread = keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=50)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--fast-masks", type=int, default=1024)
    parser.add_argument("--exact-masks", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    features = make_synthetic_features(n_sources=args.sources, rows_per_source=args.rows, d=args.d)
    rng = np.random.default_rng(0)
    out: dict[str, object] = {"d": args.d, "load_1min": os.getloadavg()[0]}
    for name, estimator, n_masks in (("fast", solvers.FastEstimator(features), args.fast_masks),
                                     ("exact", solvers.ExactEstimator(features), args.exact_masks)):
        masks = rng.random((n_masks, args.sources)) < 0.5
        best = {"one_thread": float("inf"), "threads": float("inf")}
        for _ in range(args.repeats):
            for way in ("one_thread", "threads"):
                best[way] = min(best[way], timed(estimator, masks, way == "one_thread"))
        out[name] = {**{way: round(s, 3) for way, s in best.items()},
                     "ratio": round(best["one_thread"] / best["threads"], 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
