"""Time a search spends saving its results store: ``backward`` over many sources.

The search stage saves its estimates (``.subsetctl/cache/search/<key>/``) after every
chunk of 256, so that a stopped search loses at most one chunk. This script runs the
``backward`` strategy over ``--sources`` sources for ``--steps`` steps through
:class:`~subsetctl.estimate.results.CachedEstimator` with a free additive estimator (the
one of ``benchmarks/search_memory.py``, with every
source harmful so that each step removes one), so what is measured is the store's own work,
twice in the same process:

* ``segments``: the store as it is (each save writes one segment file of the rows it
  changed; the main file is rewritten when the segments hold as many rows);
* ``whole_file``: the same code with every save rewriting the main file whole (what
  format 1 did: the work grows with the square of the number of chunks).

For each: ``seconds`` of the search, ``written_mb`` (bytes the saves wrote), ``files``
left in the folder, ``reopen_seconds`` (opening the store again, as a resumed run does)
, ``masks_in_memory_mb`` (the store's masks as held: packed, 8 sources a byte, those one
source away from a step's current subset as that change) and
``peak_rss_mb`` (the process's peak resident memory when the search ends, read before the
store is reopened; ``whole_file``'s, measured second, is at least ``segments``'s).

    python benchmarks/search_store.py [--sources 1000] [--steps 100] [--no-whole-file]

A full ``backward`` (``--steps 1000 --no-whole-file``: 500,501 subsets) shows the memory a
long search holds: its trace's masks, the store's rows and the store's index of them.

Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not os.environ.get("PYTHONPATH"):  # this checkout's code unless told otherwise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_memory import Additive

from subsetctl.estimate import results
from subsetctl.estimate.results import CachedEstimator, SubsetResultsStore
from subsetctl.search.base import SearchContext, run_strategy


class Harmful(Additive):
    """``L_hat(S) = 1 + sum of the harms of S``: every source hurts, so ``backward``
    removes one a step, each step estimating every remaining one."""

    def __init__(self, n: int, seed: int = 0) -> None:
        super().__init__(n, seed)
        self.effects = -self.effects


def measure(n: int, steps: int, whole_file: bool) -> dict[str, Any]:
    """One backward search of ``steps`` steps over ``n`` sources through a fresh store."""
    written = {"bytes": 0}
    real_write = results.atomic_write

    def counting(path: Path, write: Any, mode: str = "w") -> None:
        real_write(path, write, mode)
        written["bytes"] += path.stat().st_size

    results.atomic_write = counting  # type: ignore[assignment]
    limit = results.MAX_SEGMENTS
    results.MAX_SEGMENTS = 1 if whole_file else limit
    try:
        with tempfile.TemporaryDirectory() as folder:
            estimator = Harmful(n)
            store = SubsetResultsStore(Path(folder) / "store", estimator.sources, "bench")
            cached = CachedEstimator(estimator, store, {"backend": "sequential"}, chunk_size=256)
            started = time.perf_counter()
            result = run_strategy("backward", cached, SearchContext(sources=list(estimator.sources)),
                                  {"max_steps": steps})
            seconds = time.perf_counter() - started
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
            files = len(list(store.path.iterdir()))
            started = time.perf_counter()
            reopened = SubsetResultsStore(store.path, estimator.sources, "bench")
            reopen_seconds = time.perf_counter() - started
            assert len(reopened) == len(store) == cached.computed
            masks_bytes = reopened._rows.masks.nbytes
    finally:
        results.atomic_write = real_write  # type: ignore[assignment]
        results.MAX_SEGMENTS = limit
    return {"subsets": int(result.diagnostics["n_subsets_estimated"]), "seconds": round(seconds, 2),
            "written_mb": round(written["bytes"] / 2**20, 1), "files": files,
            "reopen_seconds": round(reopen_seconds, 2), "masks_in_memory_mb": round(masks_bytes / 2**20, 1),
            "peak_rss_mb": round(peak_mb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--no-whole-file", action="store_true",
                        help="measure the store as it is only (the whole_file case is quadratic: slow for many steps)")
    args = parser.parse_args()
    segments = measure(args.sources, args.steps, whole_file=False)
    out: dict[str, Any] = {"sources": args.sources, "steps": args.steps, "segments": segments}
    if not args.no_whole_file:
        whole = measure(args.sources, args.steps, whole_file=True)
        out.update(whole_file=whole, speedup=round(whole["seconds"] / max(segments["seconds"], 1e-9), 1))
    out["masks_as_booleans_mb"] = round(segments["subsets"] * args.sources / 2**20, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
