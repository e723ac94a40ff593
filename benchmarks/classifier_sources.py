"""A classifier's data stage re-run after one source is added: time against the first run.

Writes ``--sources`` classifier sources of ``--rows`` rows each (3 classes, ~270-character
prompts, JSON Lines) and a small target, prepares them all (the first run), then adds one
source with the same classes and runs the data stage again as `run` does after such a
change: into a fresh folder, reusing the first run's prepared sources. Every reused
source's label ids stay the same, so the re-run should cost about one source's
preparation, not every source's (it re-read every label row by row and saved every
source again before). Prints one JSON line (with the process's peak RSS: the sources are
re-encoded one at a time).

    python benchmarks/classifier_sources.py [--sources 20] [--rows 20000]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

from _common import ROOT, work_dir

sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled


def _write_source(path: Path, name: str, rows: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for j in range(rows):
            prompt = f"{name} example number {j} " + "lorem ipsum " * 20
            f.write(json.dumps({"prompt": prompt, "y": f"c{j % 3}"}) + "\n")


def _spec(n_sources: int) -> object:
    from subsetctl.spec import Spec

    loader = {"type": "jsonl", "label_field": "y"}
    return Spec.model_validate({
        "model": {"kind": "classifier"},
        "target": {"name": "t", "loader": {**loader, "path": "t.jsonl"}},
        "sources": [{"name": f"s{i}", "loader": {**loader, "path": f"s{i}.jsonl"}} for i in range(n_sources)],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=20)
    parser.add_argument("--rows", type=int, default=20_000, help="rows per source")
    args = parser.parse_args()
    from subsetctl.data.stage import run_data_stage

    folder = work_dir() / "classifier_sources"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(args.sources + 1):
        _write_source(folder / f"s{i}.jsonl", f"s{i}", args.rows)
    _write_source(folder / "t.jsonl", "t", 2_000)
    start = time.perf_counter()
    run_data_stage(_spec(args.sources), folder, folder / "first")
    first = time.perf_counter() - start
    start = time.perf_counter()
    summary = run_data_stage(_spec(args.sources + 1), folder, folder / "again", reuse_from=[folder / "first"])
    again = time.perf_counter() - start
    print(json.dumps({
        "benchmark": "classifier_sources", "sources": args.sources, "rows_per_source": args.rows,
        "first_run_s": round(first, 2), "rerun_after_adding_one_s": round(again, 2),
        "rerun_over_first": round(again / first, 3), "reused": len(summary["reused"]),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),  # (of both runs)
    }))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
