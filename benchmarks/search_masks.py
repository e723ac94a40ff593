"""Bytes of subset masks that ``forward`` leaves in the results store and its trace.

Every subset a search estimates is kept twice: in the results store
(``.subsetctl/cache/search/<key>/``, in memory and on disk) and in the strategy's trace
(:class:`~subsetctl.search.base.SubsetMemo`'s rows). As packed bits a subset is
``ceil(N / 8)`` bytes, and forward selection over N sources estimates about N subsets a
step: 30 steps over 10,000 sources are 300,000 subsets, 375 MB of masks in each place.
This script runs ``forward`` for each of ``--steps`` over each of ``--sources``, as the
search stage runs it (through :class:`~subsetctl.estimate.results.CachedEstimator`, chunks
of 256, sequential, a fresh store), with a free estimator (``L_hat(S) = 1 - sum of the
effects of S``, all positive: every step adds a source), each case in a process of its own
(its peak RSS is the case's), with this checkout's code and, unless ``--no-old``, with that
of ``--old`` (a git revision, checked out in a temporary worktree).

Per case: ``seconds`` (the search), ``peak_rss_mb``, ``store_masks_mb`` (the store's masks
in memory), ``store_disk_mb`` (its folder), ``trace_masks_mb`` (the trace's masks) and
``digest`` (selections.json's record of the strategy, trace cut to 10,000, and every
stored mask and loss): old and new must agree.

    python benchmarks/search_masks.py [--sources 2500 10000] [--steps 3 10 30] [--old REV] [--no-old]

Prints one JSON line per case, then a summary line.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

if not os.environ.get("PYTHONPATH"):  # this checkout's code unless told otherwise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from _common import ROOT, case_in_child, forward_search, old_worktree, revision_before, stored_masks

#: the commit whose parent is the old code by default (found by its message: hashes change on a rebase)
_CHANGE = "keep the subsets one source away from a step's current subset as that change"


def _case(n: int, steps: int) -> dict[str, Any]:
    """One forward search of ``steps`` steps over ``n`` sources, in this process."""
    def loss_of(masks: np.ndarray, effects: np.ndarray) -> np.ndarray:
        return 1.0 - np.asarray(masks, dtype=np.float64) @ effects

    with forward_search(n, steps, loss_of) as (result, record, store, seconds, peak):
        trace = result.trace._packed  # type: ignore[attr-defined]
        masks, masks_bytes = stored_masks(store)
        disk = sum(p.stat().st_size for p in store.path.iterdir())
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode())
        digest.update(masks.tobytes())
        digest.update(store._rows["loss"].tobytes())
        return {"sources": n, "steps": steps, "subsets": len(store), "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak), "store_masks_mb": round(masks_bytes / 2**20, 1),
                "store_disk_mb": round(disk / 2**20, 1), "trace_masks_mb": round(trace.nbytes / 2**20, 1),
                "digest": digest.hexdigest()[:16]}


def _child(code: Path, n: int, steps: int) -> dict[str, Any]:
    """:func:`_case` in a fresh process running the package in ``code``."""
    return case_in_child(__file__, code, n, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, nargs="+", default=[2500, 10000])
    parser.add_argument("--steps", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--old", help="git revision of the old code (default: the one before the change)")
    parser.add_argument("--no-old", action="store_true", help="measure this checkout's code only")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_case(args.child, args.steps[0])))
        return
    cases = [(n, s) for n in args.sources for s in args.steps]
    with contextlib.nullcontext(None) if args.no_old else old_worktree(args.old or revision_before(_CHANGE)) as tree:
        same = []
        for n, steps in cases:
            new = _child(ROOT, n, steps)
            print(json.dumps({"code": "new", **new}), flush=True)
            if tree is not None:
                old = _child(tree, n, steps)
                print(json.dumps({"code": "old", **old}), flush=True)
                same.append(old["digest"] == new["digest"])
    print(json.dumps({"same_results": all(same) if same else None}))


if __name__ == "__main__":
    main()
