"""The ``surrogate`` strategy's ridge fits over thousands of sources, old against new, in one
process.

Draws ``--m`` random subsets of half of ``--sources`` sources (as the strategy does) and a
loss for each from a linear model with noise, then fits them as the strategy does: once on
the subsets its holdout keeps (80%), once on all. New: the exact Gram matrix of the 0/1
subset indicators counted in float32 once per part and added up, the ridge added on the
diagonal, Cholesky. Old (as before, copied here): each fit centered a float64 copy of the
indicators, took its Gram matrix, added ``ridge * np.eye(n)`` and ran LU. The two ways
alternate ``--repeats`` times after one warm-up run each; Python's allocations (numpy's included) are traced in a
separate pass (``tracemalloc``). Both must give the same selection (the sources scoring
above 1e-8) and coefficients within 1e-9 of each other, relative to the largest. Prints one
JSON line: each way's best seconds and peak MB, and the ratios old / new. The drawing of the
subsets themselves (``sample_subsets``, which both ensemble strategies run) is timed too, against
its earlier loop (each draw sorted as a Python list and kept as a tuple), checked to draw the
same subsets.

    python benchmarks/surrogate_fit.py [--sources 5000] [--m 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from subsetctl.search.ensemble import SCORE_NOISE, fit_ridge, indicator_gram, sample_subsets


def _old_fit_ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """fit_ridge as it was: a centered float copy, ``+ ridge * np.eye(n)``, LU."""
    x_mean, y_mean = x.mean(axis=0), y.mean()
    xc, yc = x - x_mean, y - y_mean
    coef = np.linalg.solve(xc.T @ xc + ridge * np.eye(x.shape[1]), xc.T @ yc)
    return coef, float(y_mean - x_mean @ coef)


def _old_sample_subsets(n: int, size: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """sample_subsets' rejection path as it was: each draw a sorted tuple of Python ints."""
    seen: set[tuple[int, ...]] = set()
    chosen: list[tuple[int, ...]] = []
    while len(chosen) < m:
        combo = tuple(sorted(rng.choice(n, size=size, replace=False).tolist()))
        if combo not in seen:
            seen.add(combo)
            chosen.append(combo)
    masks = np.zeros((m, n), dtype=bool)
    for row, combo in enumerate(chosen):
        masks[row, list(combo)] = True
    return masks


def old(masks: np.ndarray, y: np.ndarray, train: np.ndarray, ridge: float) -> np.ndarray:
    x = masks.astype(float)
    _old_fit_ridge(x[train], y[train], ridge)
    return _old_fit_ridge(x, y, ridge)[0]


def new(masks: np.ndarray, y: np.ndarray, train: np.ndarray, hold: np.ndarray, ridge: float) -> np.ndarray:
    gram = indicator_gram(masks[train])  # as the surrogate strategy fits
    fit_ridge(masks[train], y[train], ridge, gram)
    gram += indicator_gram(masks[hold])
    return fit_ridge(masks, y, ridge, gram)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=5000)
    parser.add_argument("--m", type=int, default=5000, help="random subsets (the strategy's m)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    draws: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(args.repeats):
        started = time.perf_counter()
        before = _old_sample_subsets(args.sources, args.sources // 2, args.m, np.random.default_rng(0))
        draws["old"].append(time.perf_counter() - started)
        started = time.perf_counter()
        masks, _ = sample_subsets(args.sources, args.sources // 2, args.m, np.random.default_rng(0))
        draws["new"].append(time.perf_counter() - started)
        assert np.array_equal(masks, before), "sample_subsets drew other subsets than before"
    rng = np.random.default_rng(0)
    masks, _ = sample_subsets(args.sources, args.sources // 2, args.m, rng)  # and leaves rng where it did
    effects = rng.normal(0.0, 1e-4, args.sources)
    y = 4.5 + masks @ effects / args.sources + rng.normal(0.0, 1e-6, args.m)  # losses near 4.5, as a run's
    perm = np.random.default_rng(1).permutation(args.m)
    hold, train = perm[: round(0.2 * args.m)], perm[round(0.2 * args.m):]
    ways = {"old": lambda: old(masks, y, train, 1.0), "new": lambda: new(masks, y, train, hold, 1.0)}

    for way in ways.values():  # warm up: BLAS and LAPACK start their threads on a first call
        way()
    seconds: dict[str, list[float]] = {"old": [], "new": []}
    coefs = {}
    for _ in range(args.repeats):
        for name, way in ways.items():
            started = time.perf_counter()
            coefs[name] = way()
            seconds[name].append(time.perf_counter() - started)
    peak = {}
    for name, way in ways.items():
        tracemalloc.start()
        way()
        peak[name] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    scale = float(np.abs(coefs["old"]).max())
    diff = float(np.abs(coefs["new"] - coefs["old"]).max()) / scale
    same_pick = bool(np.array_equal(-coefs["new"] > SCORE_NOISE, -coefs["old"] > SCORE_NOISE))
    assert same_pick and diff < 1e-9, (same_pick, diff)
    best = {name: min(times) for name, times in seconds.items()}
    print(json.dumps({
        "sources": args.sources, "m": args.m, "repeats": args.repeats,
        "old_s": round(best["old"], 2), "new_s": round(best["new"], 2),
        "speedup": round(best["old"] / best["new"], 2),
        "old_peak_mb": round(peak["old"], 1), "new_peak_mb": round(peak["new"], 1),
        "memory_ratio": round(peak["old"] / peak["new"], 2),
        "coef_max_rel_diff": diff,
        "sample_old_s": round(min(draws["old"]), 2), "sample_new_s": round(min(draws["new"]), 2),
        "sample_speedup": round(min(draws["old"]) / min(draws["new"]), 1), "same_selection": same_pick,
    }))


if __name__ == "__main__":
    main()
