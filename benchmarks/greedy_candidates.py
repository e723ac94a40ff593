"""Peak memory and seconds of ``forward``'s steps over many sources, old against new.

Each step of greedy selection estimates one candidate per remaining source. Until the
candidates were made a chunk at a time, a step built them as one sources x sources bool
array (100 MB a step at 10,000 sources) before estimating them. This script runs
``forward`` for ``--steps`` steps over ``--sources`` and twice as many sources, as the
search stage runs it: through :class:`~subsetctl.estimate.results.CachedEstimator` and a
fresh results store (chunks of 256, sequential), with a free estimator
(``L_hat(S) = 1 - sum of the effects of S``, summed row by row so that it copies no
masks; every effect positive, so every step adds a source), so what is measured is the
search's own work. Each case runs in a process of its own (its peak RSS is the case's),
with this checkout's code (new) and with that of ``--old`` (a git revision, checked out
in a temporary worktree; by default the commit before the change), alternating.

Per case: ``seconds`` of the search, ``peak_rss_mb`` of the process, ``store_masks_mb``
(the store's masks in memory: N/8 bytes a subset before store format 3) and
``digest``, of the strategy's record (selections.json's, trace cut to 10,000) and the
store's masks and losses: old and new must agree.

    python benchmarks/greedy_candidates.py [--sources 5000] [--steps 3] [--old REV] [--no-old]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
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
_CHANGE = "make forward and backward selection's candidates a chunk at a time"


def _case(n: int, steps: int) -> dict[str, Any]:
    """One forward search of ``steps`` steps over ``n`` sources, in this process."""
    def loss_of(masks: np.ndarray, effects: np.ndarray) -> np.ndarray:
        return 1.0 - np.array([effects[row].sum() for row in masks])  # (row by row: no copy of the masks)

    with forward_search(n, steps, loss_of) as (_result, record, store, seconds, peak):
        (masks, masks_bytes), loss = stored_masks(store), store._rows["loss"]
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode())
        digest.update(masks.tobytes())
        digest.update(loss.tobytes())
        return {"sources": n, "subsets": len(store), "seconds": round(seconds, 2), "peak_rss_mb": round(peak),
                "store_masks_mb": round(masks_bytes / 2**20, 1), "digest": digest.hexdigest()[:16]}


def _child(code: Path, n: int, steps: int) -> dict[str, Any]:
    """:func:`_case` in a fresh process running the package in ``code``."""
    return case_in_child(__file__, code, n, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=5000, help="N: the cases are N and 2N sources")
    parser.add_argument("--steps", type=int, default=3, help="forward steps (each estimates every remaining source)")
    parser.add_argument("--old", help="git revision of the old code (default: the one before the change)")
    parser.add_argument("--no-old", action="store_true", help="measure this checkout's code only")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_case(args.child, args.steps)))
        return
    sizes = (args.sources, 2 * args.sources)
    out: dict[str, Any] = {"steps": args.steps}
    if args.no_old:
        out["new"] = [_child(ROOT, n, args.steps) for n in sizes]
        print(json.dumps(out))
        return
    old = args.old or revision_before(_CHANGE)
    with old_worktree(old) as tree:
        cases: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
        for n in sizes:
            for way, code in (("old", tree), ("new", ROOT)):
                cases[way].append(_child(code, n, args.steps))
    out.update(cases)
    out["same_results"] = all(o["digest"] == w["digest"] for o, w in zip(cases["old"], cases["new"]))
    out["peak_rss_saved_mb"] = [o["peak_rss_mb"] - w["peak_rss_mb"] for o, w in zip(cases["old"], cases["new"])]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
