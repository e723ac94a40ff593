"""Time a ``forward`` search over many sources with the loky executor and in one process.

The search stage estimates in chunks of 256 subsets, one executor call each. Over 2,000
sources of a few rows, a call is ~100 ms of work, and each loky call costs 10-30 ms of
dispatch while this process's numpy already uses every core for its matrix products: on 2
cores the workers were slower than one process. The loky backend therefore times its
first calls both ways and keeps the faster (``executors.TIMED_CALLS``). This script runs
the same ``forward`` search (through a fresh results store each time, as a first run
does) three ways, alternating, ``--repeats`` times in this one process:

* ``loky``: ``backend: loky`` as it is (timed, then the faster way kept);
* ``loky_always``: every call on the workers (``TIMED_CALLS = 0``, what it did before);
* ``sequential``: ``backend: sequential``.

Figures are the fastest of the repeats, in seconds, and the ratios of the two others to
``loky``; ``identical`` tells whether all three chose the same subsets with the same
estimates. Features: ``--project FOLDER`` reads a project's gradient store (after
``subsetctl run FOLDER --until gradients``); by default a synthetic store of ``--sources``
sources of ``--rows`` rows at ``--d`` (the statistics are ~65 MB at 2,000 sources, d = 64).

    python benchmarks/search_executor.py [--sources 2000] [--rows 4] [--d 64] [--repeats 2]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not os.environ.get("PYTHONPATH"):  # this checkout's code unless told otherwise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from subsetctl.estimate import executors
from subsetctl.estimate.base import FeatureSet
from subsetctl.estimate.results import CachedEstimator, SubsetResultsStore
from subsetctl.estimate.solvers import FastEstimator
from subsetctl.search.base import SearchContext, run_strategy


def features_of(args: argparse.Namespace) -> tuple[FeatureSet, float]:
    if args.project:
        from subsetctl.api import load_project
        from subsetctl.stages.features import load_features

        project, spec = load_project(Path(args.project), [])
        return load_features(project.state_dir / "gradients" / "store", spec), spec.estimate.lam
    from subsetctl.estimate.synthetic import make_synthetic_features

    return make_synthetic_features(n_sources=args.sources, rows_per_source=args.rows, d=args.d,
                                   n_target_train=20, n_val=20, helpful=tuple(range(0, 60, 2)), harmful=(1, 3)), 1.0


def search(estimator: FastEstimator, way: str, n_jobs: int) -> tuple[float, Any]:
    executors.forget_dumped_estimator()  # each search as a new stage: dumped, then timed afresh
    limit = executors.TIMED_CALLS
    executors.TIMED_CALLS = 0 if way == "loky_always" else limit
    backend = "sequential" if way == "sequential" else "loky"
    try:
        with tempfile.TemporaryDirectory() as folder:
            store = SubsetResultsStore(Path(folder) / "store", estimator.sources, "bench")
            cached = CachedEstimator(estimator, store, {"backend": backend, "n_jobs": n_jobs}, chunk_size=256)
            started = time.perf_counter()
            result = run_strategy("forward", cached, SearchContext(sources=list(estimator.sources)), {})
            return time.perf_counter() - started, result
    finally:
        executors.TIMED_CALLS = limit
        executors.forget_dumped_estimator()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", help="a project folder whose gradients stage has run")
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    features, lam = features_of(args)
    estimator = FastEstimator(features, lam=lam)
    search(estimator, "loky_always", args.n_jobs)  # starts the workers once (a one-off per process)
    ways = ("loky", "loky_always", "sequential")
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    picked: dict[str, Any] = {}
    for _ in range(args.repeats):
        for way in ways:
            took, result = search(estimator, way, args.n_jobs)
            seconds[way].append(took)
            picked.setdefault(way, (result.selected, [float(s["loss"]) for s in result.diagnostics["steps"]]))
    best = {way: min(v) for way, v in seconds.items()}
    print(json.dumps({
        "sources": len(features.sources), "d": int(features.d), "n_jobs": args.n_jobs,
        "statistics_mb": round(executors._array_bytes(estimator) / 1e6, 1),
        "subsets": int(result.diagnostics["n_subsets_estimated"]),
        **{f"{way}_s": round(best[way], 2) for way in ways},
        "loky_always_over_loky": round(best["loky_always"] / best["loky"], 2),
        "sequential_over_loky": round(best["sequential"] / best["loky"], 2),
        "all_s": {way: [round(x, 2) for x in v] for way, v in seconds.items()},
        "identical": all(picked[way] == picked["loky"] for way in ways),
    }))


if __name__ == "__main__":
    main()
