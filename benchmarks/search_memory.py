"""Memory and time of a search's trace: ``forward`` over many sources, ``exhaustive`` at its limit.

A strategy's trace records every subset it estimated (``N(N+1)/2 + 1`` for ``forward`` over
N sources when every step is accepted, ``2^n`` for ``exhaustive``). The estimator here is
additive and free (``L_hat(S) = 1 - sum of the effects in S``, every effect positive, so
``forward`` accepts every source), so what is measured is the search's own bookkeeping:
the strategy run plus ``to_dict(trace_limit=10_000)``, the record selections.json keeps.
Each case runs twice: untimed-allocation for the seconds, then under ``tracemalloc`` for
the peak traced memory. ``record_sha256`` is the digest of that record's JSON, so two
checkouts can be shown to write the same selections.json.

    python benchmarks/search_memory.py [--sources 1000] [--exhaustive 18]
    PYTHONPATH=/other/checkout python benchmarks/search_memory.py   # that checkout's code

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

if not os.environ.get("PYTHONPATH"):  # this checkout's code unless told otherwise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import subsetctl
from subsetctl.estimate.base import EstimateBatch, SubsetEstimator
from subsetctl.search.base import SearchContext, run_strategy

#: what the search stage keeps of each trace (subsetctl.stages.search.TRACE_KEPT)
TRACE_KEPT = 10_000


class Additive(SubsetEstimator):
    """``L_hat(S) = 1 - sum of the effects of S``: costs one matrix product a batch."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.effects = np.random.default_rng(seed).uniform(0.1, 1.0, n) / n  # all positive: all accepted
        self._sources = [f"source_{i:05d}" for i in range(n)]  # names as long as real ones

    @property
    def sources(self) -> list[str]:
        return self._sources

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        m = len(masks)
        loss = 1.0 - masks.astype(np.float32) @ self.effects.astype(np.float32)
        return EstimateBatch(loss.astype(float), np.zeros(m), np.zeros(m, dtype=int), np.ones(m, dtype=bool))


def _search(name: str, n: int, params: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Run one strategy and build the record selections.json keeps: (record, subsets)."""
    estimator = Additive(n)
    result = run_strategy(name, estimator, SearchContext(sources=list(estimator.sources)), params)
    record = result.to_dict(trace_limit=TRACE_KEPT)
    return record, int(result.diagnostics["n_subsets_estimated"])


def measure(name: str, n: int, params: dict[str, Any]) -> dict[str, Any]:
    """Seconds (without tracemalloc) and peak traced MB (with it) of one search."""
    gc.collect()
    started = time.perf_counter()
    record, subsets = _search(name, n, params)
    seconds = time.perf_counter() - started
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    del record
    gc.collect()
    tracemalloc.start()
    try:
        _search(name, n, params)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return {"sources": n, "subsets": subsets, "seconds": round(seconds, 2),
            "peak_traced_mb": round(peak / 2**20, 1), "record_sha256": digest[:16]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=1000, help="sources of the forward search")
    parser.add_argument("--exhaustive", type=int, default=18, help="sources of the exhaustive search (at most 20)")
    args = parser.parse_args()
    out: dict[str, Any] = {"code": str(Path(subsetctl.__file__).resolve().parents[1])}
    if args.sources:
        out["forward"] = measure("forward", args.sources, {})
    if args.exhaustive:
        out["exhaustive"] = measure("exhaustive", args.exhaustive, {"max_sources": args.exhaustive})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
