"""The fast estimator on ``forward``'s masks over many sources: each step estimates the
current pick plus one more source, masks of a few blocks out of thousands. Timed in the
same run with the masked sums taken as sparse products (the default for such masks) and
with every mask summed as a dense product over all the blocks (as before), on the same
masks, checked to give the same bits. Prints one JSON line.

    python benchmarks/sparse_masks.py [--sources 2000] [--d 64] [--steps 30] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from subsetctl.estimate import solvers
from subsetctl.estimate.synthetic import make_synthetic_features


def forward_batches(n_sources: int, steps: int, seed: int) -> list[np.ndarray]:
    """Forward's candidate masks at steps 0, steps // 3, 2 * steps // 3 and steps: a
    random current pick of that size plus each source not in it (one mask per source)."""
    rng = np.random.default_rng(seed)
    batches = []
    for size in sorted({0, steps // 3, 2 * steps // 3, steps}):
        current = rng.choice(n_sources, size, replace=False)
        rest = np.setdiff1d(np.arange(n_sources), current)
        masks = np.zeros((len(rest), n_sources), dtype=bool)
        masks[:, current] = True
        masks[np.arange(len(rest)), rest] = True
        batches.append(masks)
    return batches


def timed(estimator: solvers.FastEstimator, batches: list[np.ndarray], size: int) -> tuple[float, np.ndarray]:
    """Seconds to estimate every mask of ``batches``, ``size`` masks at a time, and the losses."""
    started = time.perf_counter()
    losses = np.concatenate([estimator.estimate(masks[i:i + size]).loss
                             for masks in batches for i in range(0, len(masks), size)])
    return time.perf_counter() - started, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="the largest current pick")
    parser.add_argument("--batch", type=int, default=32,
                        help="masks per estimate call (the search's 256-subset chunks in 8 batches)")
    args = parser.parse_args()

    features = make_synthetic_features(n_sources=args.sources, rows_per_source=4, d=args.d,
                                       n_target_train=20, n_val=20, seed=0, helpful=[0, 1], harmful=[2, 3])
    estimator = solvers.FastEstimator(features, lam=solvers.DEFAULT_LAMBDA)
    batches = forward_batches(args.sources, args.steps, seed=1)
    estimator.estimate(batches[0][:8])  # warm up (imports)
    sparse_s, sparse_losses = timed(estimator, batches, args.batch)
    share, solvers._SPARSE_SHARE = solvers._SPARSE_SHARE, -1.0  # every batch as a dense product
    try:
        dense_s, dense_losses = timed(estimator, batches, args.batch)
    finally:
        solvers._SPARSE_SHARE = share
    assert np.array_equal(sparse_losses, dense_losses, equal_nan=True)
    masks = sum(len(b) for b in batches)
    print(json.dumps({
        "sources": args.sources, "d": args.d, "masks": masks, "masks_per_call": args.batch,
        "current_pick_sizes": [int(b[0].sum()) - 1 for b in batches],
        "dense_s": round(dense_s, 2), "sparse_s": round(sparse_s, 2),
        "speedup": round(dense_s / sparse_s, 1), "same_bits": True,
    }))


if __name__ == "__main__":
    main()
