"""The report's row-by-row comparison (the pick against two baselines, test loss and task
score) at many test rows: its seconds, old code against new, and whether the figures are the
same.

Builds per_run.json-like results of three selections (the pick, target_only, all; one seed
each) over N test rows, and times :func:`subsetctl.report.paired.paired_comparison` on them
with this checkout's code (new: the resamples' rows drawn once for the four figures) and with
that of ``--old`` (a git revision, checked out in a temporary worktree; by default the commit
before that change), each in a child process, best of ``--repeats``. Prints one JSON line.

    python benchmarks/paired_bootstrap.py [--rows 10000 100000] [--repeats 2] [--old REV]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import ROOT, child_json, old_worktree, revision_before

#: the commit whose parent is the old code by default (found by its message: hashes change on a rebase)
_FIRST_CHANGE = "draws the bootstrap's resamples once"

#: run with the code under test on PYTHONPATH: the best seconds of the comparison, and its figures
_TIME = r"""
import json, sys, time
import numpy as np
from subsetctl.report.paired import paired_comparison
n, repeats = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
losses = {run: rng.normal(2.0 + shift, 1.0, n) for run, shift in (("p", 0.0), ("t", 0.01), ("a", -0.005))}
per_run = {run: {"losses": values.tolist(), "predictions": [{"score": float(v < 2.0)} for v in values]}
           for run, values in losses.items()}
comparison = {"final": "pick", "scores": {"pick": 0.5, "target_only": 0.5, "all": 0.5}}
finetuned = {"labels": {"pick": ["p"], "target_only": ["t"], "all": ["a"]}}
best = float("inf")
for _ in range(repeats):
    start = time.perf_counter()
    paired = paired_comparison(comparison, finetuned, per_run, seed=0)
    best = min(best, time.perf_counter() - start)
print(json.dumps({"seconds": round(best, 3), "vs": paired["vs"]}))
"""


def timed(code: Path, n: int, repeats: int) -> dict:
    """What :data:`_TIME` prints with the package in ``code``."""
    return child_json(code, _TIME, n, repeats, what="timing the comparison")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--old", help="git revision of the old code (default: the one before the change)")
    args = parser.parse_args()

    old = args.old or revision_before(_FIRST_CHANGE)
    out: dict[str, dict[str, dict]] = {}
    with old_worktree(old) as tree:
        for n in args.rows:
            out[str(n)] = {"old": timed(tree, n, args.repeats), "new": timed(ROOT, n, args.repeats)}
    print(json.dumps({
        "rows": args.rows, "repeats": args.repeats,
        "seconds": {n: {way: f[way]["seconds"] for way in ("old", "new")} for n, f in out.items()},
        "speedup": {n: round(f["old"]["seconds"] / max(f["new"]["seconds"], 1e-9), 2) for n, f in out.items()},
        "same_figures": {n: f["old"]["vs"] == f["new"]["vs"] for n, f in out.items()},
    }))


if __name__ == "__main__":
    main()
