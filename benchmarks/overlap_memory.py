"""Memory and time of the data stage's leak and duplicate checks on one large source, old
against new, in one process.

Builds a prepared split of ``--rows`` rows (a ``--chars``-character prompt, a short
answer) and feeds it to ``OverlapCheck.add`` as it is (a batch of rows at a time, a sum
of per-row digests) and as it was before (every row's (prompt, answer) as Python strings
at once, then each row's text joined into one string, encoded and hashed), alternating
``--repeats`` times. Python's allocations are traced (``tracemalloc``); the Arrow table
itself is not counted, being the same both ways. Both must give the same warnings.
Prints one JSON line: each way's best seconds and peak MB, and the ratios old / new.

    python benchmarks/overlap_memory.py [--rows 200000] [--chars 300] [--repeats 2]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled


def _old_add(check: Any, name: str, splits: dict[str, Any]) -> None:
    """``OverlapCheck.add`` before: every row's key at once, and one joined text digested."""
    from subsetctl.data.overlap import _row_keys

    keys = [k for split in splits.values() for k in _row_keys(split, check.kind)]
    if name not in check.controls and check.held_out:
        shared = check.held_out.intersection(keys)
        if shared:
            check.leaking.append((name, len(shared)))
    if keys and name not in check.controls and check.target_train.issuperset(keys):
        check.copies_of_train.append(name)
    if keys:
        digest = hashlib.sha256("\0".join(sorted(f"{p}\1{a}" for p, a in keys)).encode()).hexdigest()
        check.by_content.setdefault(digest, []).append(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chars", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from subsetctl.data.loaders import dataset_from_columns
    from subsetctl.data.overlap import OverlapCheck

    def split(prompts: list[str]) -> Any:
        n = len(prompts)
        return dataset_from_columns({"source": ["s"] * n, "prompt": prompts, "response": ["an answer"] * n,
                                     "label": [-1] * n, "label_text": [""] * n, "metadata": ["{}"] * n,
                                     "row": list(range(n))})

    prompts = [(f"{i:09d} " + "lorem ipsum " * (args.chars // 12 + 1))[: args.chars] for i in range(args.rows)]
    target = {"train": split(["t"]), "validation": split([prompts[3]]), "test": split(["u"])}
    big = split(prompts)
    copy = big.select(range(args.rows - 1, -1, -1))
    del prompts
    best: dict[str, tuple[float, float]] = {}
    said: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for way in ("old", "new"):
            check = OverlapCheck("tgt", target, "causal-lm")
            add = functools.partial(_old_add, check) if way == "old" else check.add
            tracemalloc.start()
            start = time.perf_counter()
            add("big", {"train": big})
            add("copy", {"train": copy})
            seconds = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
            said[way] = check.warnings()
            s, p = best.get(way, (float("inf"), float("inf")))
            best[way] = (min(s, seconds), min(p, peak))
    assert said["old"] == said["new"], said
    print(json.dumps({"rows": args.rows, "chars": args.chars, "warnings": len(said["new"]),
                      "old_s": round(best["old"][0], 3), "new_s": round(best["new"][0], 3),
                      "old_peak_mb": round(best["old"][1], 1), "new_peak_mb": round(best["new"][1], 1),
                      "time_ratio": round(best["old"][0] / best["new"][0], 2),
                      "memory_ratio": round(best["old"][1] / best["new"][1], 1)}))


if __name__ == "__main__":
    main()
