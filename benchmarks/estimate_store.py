"""Fast vs. exact estimator on a real project's gradient store, across lambda.

The synthetic store of ``benchmarks/estimate.py`` shows the fast estimator ranking like
the exact one where lambda is large enough for one Newton step. This script measures how
far that holds on a real store: the project's own gradient features (by default the
quickstart copy that ``benchmarks/speedup.py`` builds, SmolLM2 at d = 128), ``--subsets``
random subsets (each source in with probability 1/2, drawn with ``--seed``), and for
each lambda in ``--lambdas``:

* ``spearman``: rank agreement of fast and exact estimates over the subsets;
* ``fast_not_converged``: how many the fast estimator flags as not converged (its Newton
  step left the region its quadratic model describes; the search says so);
* ``exact_all_converged`` and ``max_abs_loss_diff``.

Runs in this process (no executor), seconds. Prints one JSON line at the end.

    python benchmarks/estimate_store.py [--project DIR] [--subsets 200] [--lambdas 1,0.1,0.01]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _common import work_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=None,
                        help="a project whose gradients stage has run (default: the speedup benchmark's work project)")
    parser.add_argument("--subsets", type=int, default=200)
    parser.add_argument("--lambdas", default="1,0.1,0.01")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from subsetctl.api import load_project
    from subsetctl.estimate.calibrate import spearman
    from subsetctl.estimate.solvers import ExactEstimator, FastEstimator
    from subsetctl.stages.features import load_features

    folder = args.project or work_dir() / "speedup"
    store_dir = folder / ".subsetctl" / "gradients" / "store"
    if not (store_dir / "info.json").is_file():
        sys.exit(f"{folder} has no gradient store: run `subsetctl run {folder} --until gradients` first "
                 "(or `python benchmarks/speedup.py`, which builds the default project).")
    started = time.perf_counter()
    _, spec = load_project(folder)
    features = load_features(store_dir, spec)
    rng = np.random.default_rng(args.seed)
    masks = rng.random((args.subsets, features.n_sources)) < 0.5
    by_lambda = {}
    for lam in (float(x) for x in args.lambdas.split(",")):
        exact = ExactEstimator(features, lam=lam).estimate(masks)
        fast = FastEstimator(features, lam=lam).estimate(masks)
        by_lambda[f"{lam:g}"] = {
            "spearman": round(spearman(fast.loss, exact.loss), 4),
            "fast_not_converged": int(np.sum(~np.asarray(fast.converged, dtype=bool))),
            "exact_all_converged": bool(np.all(exact.converged)),
            "max_abs_loss_diff": float(np.max(np.abs(fast.loss - exact.loss))),
        }
    print(json.dumps({
        "project": str(folder), "subsets": args.subsets, "sources": features.n_sources, "d": features.d,
        "rows": int(sum(len(f) for f in features.source_train_f)), "by_lambda": by_lambda,
        "seconds": round(time.perf_counter() - started, 2),
    }))


if __name__ == "__main__":
    main()
