"""`validate` and `plan` of thousands of ``where`` sources of one JSON Lines (or Parquet) file, or of a file each, old against new.

Writes one JSON Lines file of ``--sources`` tasks of ``--rows`` rows each (a ``task`` column)
and a spec listing each task as a source of its own (``loader.where: {task: ...}``), with a
small target, then times ``subsetctl validate`` and ``plan`` in fresh processes, ``--repeats``
times each way, alternating: with this checkout's code (new) and with that of ``--old`` (a git
revision; by default the commit before a file's listing was made dicts once per process: each
source made the dict of all the file's values again, twice, quadratic in the sources). Both
ways must exit 0. Prints one JSON line: the best wall and CPU seconds (user + system: steadier
on shared cores) of each command each way, and the CPU ratios. At 2,000 tasks of 4 rows on a
shared 2-core machine: validate 5.92 s CPU before the listing was made dicts once, 4.62 s after
(plan 6.35 s, 4.93 s); with the spec's lines read by libyaml too (``--old`` that commit): 3.71 s
(plan 4.16 s).

With ``--parquet`` the file is Parquet, and ``--old`` by default the commit before a Parquet
file's listing was made dicts once per process (its column was read once, but the dict of its
values made again for each source, twice): at 2,000 tasks of 4 rows, validate 7.45 s of CPU
before, 3.82 s after (one run each, `/usr/bin/time`, shared 2-core machine).

With ``--files`` each task is a JSON Lines file of its own (no ``where``), and ``--old`` by
default the commit before a source file's path was resolved once per process (validate's
checks and warnings made each source's path about 9 times) and the files validate reads
through were worked out once per validation (three times before, each looking up every file's
path and size): at 2,000 files of 3 rows, validate 2.61-2.71 s of CPU before, 2.40-2.44 s after
(plan 2.98-3.11 s, 2.79-2.95 s; two runs, best of 3-4 repeats each, shared 2-core machine). The rest
is mostly the imports and the spec's YAML (~0.7 s for 2,000 sources).

    python benchmarks/validate_where_sources.py [--sources 2000] [--rows 4] [--repeats 3] [--old REV] [--parquet | --files]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from _common import (
    ROOT,
    checked_subsetctl,
    fresh_work_dir,
    keep_best,
    old_against_new_arguments,
    old_worktree,
    revision_before,
)

#: the commit whose parent is the old code by default (found by its message: hashes change on a rebase)
_FIRST_CHANGE = "a file's listing made dicts once per process"
#: the same, of ``--parquet``'s change
_PARQUET_CHANGE = "a Parquet file's listing made dicts once per process"
#: the same, of ``--files``'s change
_FILES_CHANGE = "a source file's path resolved once per process"


def build(folder: Path, sources: int, rows: int, parquet: bool = False, files: bool = False) -> None:
    """The target, the tasks' file (``parquet``: a Parquet one; ``files``: a JSON Lines file
    each, in ``tasks/``) and the spec (no model is loaded by validate or plan)."""
    folder.mkdir(parents=True)
    (folder / "target.jsonl").write_text("".join(json.dumps({"prompt": f"{i}+1=", "response": str(i + 1)}) + "\n"
                                                 for i in range(60)))
    tasks = [{"task": f"t{k:05d}", "prompt": f"{k}*{i}=", "response": str(k * i)}
             for k in range(sources) for i in range(rows)]
    kind = "parquet" if parquet else "jsonl"
    if files:
        (folder / "tasks").mkdir()
        for k in range(sources):
            (folder / "tasks" / f"t{k:05d}.jsonl").write_text("".join(json.dumps(task) + "\n"
                                                                    for task in tasks[k * rows:(k + 1) * rows]))
    elif parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(tasks), folder / "tasks.parquet")
    else:
        (folder / "tasks.jsonl").write_text("".join(json.dumps(task) + "\n" for task in tasks))
    spec = {"project": {"name": "where-sources", "seed": 0},
            "model": {"source": "smollm2-135m-instruct", "max_length": 32},
            "target": {"name": "target", "loader": {"type": "jsonl", "path": "target.jsonl"},
                       "split": {"train": 20, "validation": 20, "test": 20}},
            "sources": [{"name": f"t{k:05d}", "loader": {"type": "jsonl", "path": f"tasks/t{k:05d}.jsonl"}} if files
                        else {"name": f"t{k:05d}", "loader": {"type": kind, "path": f"tasks.{kind}",
                                                              "where": {"task": f"t{k:05d}"}}} for k in range(sources)],
            "search": {"strategies": [{"name": "gradient_similarity"}]}}
    (folder / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def _file_kinds(parser: argparse.ArgumentParser) -> None:
    """``--parquet`` and ``--files``, one or neither."""
    kinds = parser.add_mutually_exclusive_group()
    kinds.add_argument("--parquet", action="store_true", help="the tasks' file is Parquet (default: JSON Lines)")
    kinds.add_argument("--files", action="store_true", help="each task a JSON Lines file of its own, without where")


def main() -> None:
    args = old_against_new_arguments(__doc__.splitlines()[0], sources=2000, rows=4, more=_file_kinds)
    folder = fresh_work_dir("validate_where_sources")
    build(folder, args.sources, args.rows, args.parquet, args.files)
    best: dict[str, list[float]] = {}
    change = _FILES_CHANGE if args.files else _PARQUET_CHANGE if args.parquet else _FIRST_CHANGE
    with old_worktree(args.old or revision_before(change)) as old:
        for _ in range(args.repeats):
            for way, code in (("old", old), ("new", ROOT)):
                for command in ("validate", "plan"):
                    wall, cpu, _ = checked_subsetctl(code, command, cwd=folder)
                    keep_best(best, f"{command}_{way}", wall, cpu)
    figures = {f"{key}_{unit}": round(value, 2) for key, pair in best.items() for unit, value in zip(("s", "cpu_s"), pair)}
    ratios = {f"{command}_cpu_speedup": round(best[f"{command}_old"][1] / best[f"{command}_new"][1], 2)
              for command in ("validate", "plan")}
    file = "a jsonl file each" if args.files else "parquet" if args.parquet else "jsonl"
    print(json.dumps({"sources": args.sources, "rows_per_source": args.rows, "file": file,
                      **figures, **ratios}))


if __name__ == "__main__":
    main()
