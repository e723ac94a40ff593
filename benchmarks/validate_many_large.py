"""`validate` on a classifier project of many large JSON Lines sources: what it reads in all.

Writes one JSON Lines file of ``--rows`` rows (a short text and one of two labels) and makes
``--sources`` sources of it, each through a hard link of its own (so no read is shared by
path), with a small target and ``model.num_labels: 2`` (no ``label_map``), then times
``subsetctl validate`` from the command line ``--repeats`` times in a fresh process each,
with this checkout's code. Validate's per-file checks (the columns, the line count, the
``num_labels`` labels) are bounded in all, so its time should not grow with the sources past
that bound. The default is the project that took 102.6 s to validate when each of those reads
was bounded per file only (or not at all): 84.7 s wall (27.6 s CPU) before the totals, 7.05 s
(3.1 s CPU) after, on a shared 2-core machine. Wall seconds are the best of the repeats, CPU
seconds (user + system of the child) beside them, as the machine may be shared. Prints one
JSON line.

    python benchmarks/validate_many_large.py [--sources 2000] [--rows 100000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import yaml
from _common import ROOT, fresh_work_dir, timed_subsetctl


def build(folder: Path, sources: int, rows: int, missing_column: bool = False) -> Path:
    """The project (its spec file's path); with ``missing_column``, each loader's prompt also
    lists a column no row has (a typo: the one mistake that has validate look past a file's head)."""
    folder.mkdir(parents=True)
    loader = {"type": "jsonl", "prompt_field": ["text", "txet"] if missing_column else "text", "label_field": "y"}
    (folder / "t.jsonl").write_text("".join(json.dumps({"text": f"t{i}", "y": ["neg", "pos"][i % 2]}) + "\n"
                                            for i in range(60)))
    (folder / "big.jsonl").write_text("".join(json.dumps({"text": f"row {i} of a source", "y": ["neg", "pos"][i % 2]})
                                              + "\n" for i in range(rows)))
    (folder / "links").mkdir()
    for k in range(sources):
        os.link(folder / "big.jsonl", folder / "links" / f"s{k:05d}.jsonl")
    spec = {
        "project": {"name": "validate-many-large", "seed": 0},
        "model": {"kind": "classifier", "num_labels": 2},
        "target": {"name": "t", "loader": {**loader, "path": "t.jsonl"},
                   "split": {"train": 20, "validation": 20, "test": 20}},
        "sources": [{"name": f"s{k:05d}", "loader": {**loader, "path": f"links/s{k:05d}.jsonl"}}
                    for k in range(sources)],
    }
    (folder / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder / "subsetctl.yaml"


def _validate(spec_path: Path) -> tuple[float, float, int, str]:
    """Wall and CPU seconds, exit status and output of ``subsetctl validate`` in a fresh process."""
    wall, cpu, done = timed_subsetctl(ROOT, "validate", str(spec_path), cwd=spec_path.parent)
    return wall, cpu, done.returncode, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--missing-column", action="store_true",
                        help="list a prompt column no row has (validate exits 1 naming it)")
    args = parser.parse_args()
    spec_path = build(fresh_work_dir("validate_many_large"), args.sources, args.rows, args.missing_column)
    runs = [_validate(spec_path) for _ in range(args.repeats)]
    wall, cpu, status, output = min(runs)
    notes = [line.strip() for line in output.splitlines() if "A note, not a problem" in line]
    print(json.dumps({"sources": args.sources, "rows": args.rows, "validate_s": round(wall, 2),
                      "validate_cpu_s": round(cpu, 2), "exit": status,
                      "missing_column": args.missing_column, "notes": len(notes),
                      "file_mb": round((spec_path.parent / "big.jsonl").stat().st_size / 2**20, 1)}))


if __name__ == "__main__":
    main()
