"""Benchmark of the estimation engine: exact vs fast estimator on a synthetic store.

Store: 50 sources x 2,000 rows (100,000 source rows), d = 128, 1,000 target training and
500 validation rows (:func:`subsetctl.estimate.synthetic.make_synthetic_features`).
Measured with the loky executor on ``--n-jobs`` workers (default 2), workers started
beforehand (their start-up is a one-off per session and is reported separately):

* ``exact_subsets_per_s``: 200 random half-size subsets, exact solver (tol 1e-6);
* ``fast_subsets_per_s``: ``--fast-masks`` random half-size subsets, fast estimator;
* ``fast_vs_exact_spearman``: rank agreement of the two on the 200 subsets;
* the same agreement at lambda = 0.1 on 64 subsets (weaker regularisation moves ``w``
  further, where one Newton step is a worse approximation).

Targets: exact >= 30/s, fast >= 1000/s, Spearman >= 0.95. Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from subsetctl.estimate.calibrate import spearman
from subsetctl.estimate.executors import estimate_parallel
from subsetctl.estimate.solvers import DEFAULT_LAMBDA, ExactEstimator, FastEstimator
from subsetctl.estimate.synthetic import make_synthetic_features


def half_masks(n_masks: int, n_sources: int, seed: int) -> np.ndarray:
    """``n_masks`` random subsets of exactly half the sources."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_masks, n_sources), dtype=bool)
    for row in masks:
        row[rng.choice(n_sources, n_sources // 2, replace=False)] = True
    return masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--subsets", type=int, default=200)
    parser.add_argument("--fast-masks", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    features = make_synthetic_features(
        n_sources=50,
        rows_per_source=2000,
        d=128,
        n_target_train=1000,
        n_val=500,
        seed=args.seed,
    )
    t_features = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = ExactEstimator(features, lam=DEFAULT_LAMBDA)
    fast = FastEstimator(features, lam=DEFAULT_LAMBDA)
    t_build = time.perf_counter() - t0

    masks = half_masks(args.subsets, features.n_sources, args.seed + 1)
    t0 = time.perf_counter()  # start the loky workers once
    estimate_parallel(fast, masks[:4], backend="loky", n_jobs=args.n_jobs, batch_size=2)
    t_spawn = time.perf_counter() - t0

    t0 = time.perf_counter()
    ex = estimate_parallel(exact, masks, backend="loky", n_jobs=args.n_jobs)
    t_exact = time.perf_counter() - t0

    many = half_masks(args.fast_masks, features.n_sources, args.seed + 2)
    t0 = time.perf_counter()
    estimate_parallel(fast, many, backend="loky", n_jobs=args.n_jobs)
    t_fast = time.perf_counter() - t0
    fa = fast.estimate(masks)

    inproc = many[:2000]  # in this process, BLAS threads as the environment sets them
    t0 = time.perf_counter()
    fast.estimate(inproc)
    t_fast_inproc = time.perf_counter() - t0

    small = masks[:64]
    ex01 = estimate_parallel(ExactEstimator(features, lam=0.1), small, backend="loky", n_jobs=args.n_jobs)
    fa01 = FastEstimator(features, lam=0.1).estimate(small)

    figures = {
        "exact_subsets_per_s": round(args.subsets / t_exact, 1),
        "fast_subsets_per_s": round(args.fast_masks / t_fast, 1),
        "fast_vs_exact_spearman": round(spearman(fa.loss, ex.loss), 4),
        "fast_vs_exact_max_abs_loss_diff": float(np.max(np.abs(fa.loss - ex.loss))),
        "exact_all_converged": bool(ex.converged.all()),
        "exact_mean_newton_iterations": float(ex.iterations.mean()),
        "exact_loss_std_across_subsets": float(ex.loss.std()),
        "fast_in_process_subsets_per_s": round(len(inproc) / t_fast_inproc, 1),
        "fast_vs_exact_spearman_lam_0.1": round(spearman(fa01.loss, ex01.loss), 4),
        "exact_all_converged_lam_0.1": bool(ex01.converged.all()),
        "n_jobs": args.n_jobs,
        "backend": "loky",
        "subsets": args.subsets,
        "rows": int(sum(len(f) for f in features.source_train_f)),
        "d": features.d,
        "lam": DEFAULT_LAMBDA,
        "features_s": round(t_features, 2),
        "build_estimators_s": round(t_build, 2),
        "worker_start_s": round(t_spawn, 2),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
