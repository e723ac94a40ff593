"""One Parquet file holding many tasks (``source_files`` with ``by``) against the same rows
split into one file per task: the time to load the spec (which lists each file's tasks),
to fingerprint the sources as `plan` does (each task of one file by its own rows: the
first time, which reads the file once, and again, from the cache) and to run the data
stage (nothing reused).

Builds ``--tasks`` tasks of ``--rows`` rows each, written five ways: one Parquet file
sorted by task (as FLAN-style collections usually come), the same file with its rows
shuffled (every task in every row group: the worst case for reading one task's rows),
one Parquet file per task, and one JSON Lines and one CSV file sorted by task. Runs each
``--repeats`` times, alternating, and checks that all give every source the same rows. Prints one JSON line: the best wall time
of each way's spec load, fingerprints and data stage, the data stage's CPU time (steadier
on shared cores), and its ratio to one file per task.

    python benchmarks/one_file_many_sources.py [--tasks 500] [--rows 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from _common import fresh_work_dir

#: the layouts of the same rows: the glob, ``by`` and loader of each one's group
WAYS: dict[str, dict[str, Any]] = {
    "one_file_sorted": {"files": "sorted/*.parquet", "by": "task"},
    "one_file_shuffled": {"files": "shuffled/*.parquet", "by": "task"},
    "file_per_task": {"files": "split/*.parquet"},
    "one_jsonl_file": {"files": "sorted/*.jsonl", "by": "task", "loader": {"type": "jsonl"}},
    "one_csv_file": {"files": "sorted/*.csv", "by": "task", "loader": {"type": "csv"}},
}


def build(folder: Path, tasks: int, rows: int) -> None:
    """The target, the tasks' rows in the three layouts, and a spec per layout."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(0)
    records = []
    for t in range(tasks):
        op = rng.choice("+-*")
        for _ in range(rows):
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            records.append({"task": f"t{t:05d}", "prompt": f"{a}{op}{b}=", "response": str(eval(f"{a}{op}{b}"))})
    (folder / "target.jsonl").write_text("".join(json.dumps({"prompt": f"{a}+{a}=", "response": str(2 * a)}) + "\n"
                                                 for a in range(60)))
    for name in ("sorted", "shuffled", "split"):
        (folder / name).mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records), folder / "sorted" / "tasks.parquet")
    (folder / "sorted" / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "sorted" / "tasks.csv").write_text("task,prompt,response\n" + "".join(
        f"{r['task']},{r['prompt']},{r['response']}\n" for r in records))
    shuffled = list(records)
    rng.shuffle(shuffled)
    pq.write_table(pa.Table.from_pylist(shuffled), folder / "shuffled" / "tasks.parquet", row_group_size=2_000)
    for t in range(tasks):
        pq.write_table(pa.Table.from_pylist(records[t * rows:(t + 1) * rows]), folder / "split" / f"t{t:05d}.parquet")
    for way, group in WAYS.items():
        spec = {
            "project": {"name": way, "seed": 0},
            "model": {"source": "model", "max_length": 32},
            "target": {"name": "target", "loader": {"type": "jsonl", "path": "target.jsonl"},
                       "split": {"train": 20, "validation": 20, "test": 20}},
            "source_files": [{"loader": {"type": "parquet"}, **group}],
        }
        (folder / f"{way}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rows", type=int, default=50, help="rows per task")
    parser.add_argument("--repeats", type=int, default=3, help="runs each way (the best counts)")
    args = parser.parse_args()

    from subsetctl import filehash
    from subsetctl.data import stage
    from subsetctl.data.fingerprint import source_fingerprint_inputs
    from subsetctl.data.loaders import files
    from subsetctl.spec.reading import load_spec

    folder = fresh_work_dir("one_file_many_sources")
    folder.mkdir(parents=True)
    build(folder, args.tasks, args.rows)

    def run(way: str) -> tuple[tuple[float, float, float, float, float], dict[str, list[str]]]:
        files._value_rows.cache_clear()  # each run as a new process would: the files read again
        files._whole_file.cache_clear()
        files._text_value_rows.cache_clear()
        filehash._CACHES.clear()  # (the folder has no state folder: the hash cache is the process's)
        started = time.perf_counter()
        spec = load_spec(folder / f"{way}.yaml")
        loaded = time.perf_counter()
        fingerprints = []
        for _ in range(2):  # as `plan` computes them: the first time, then from the cache
            begun = time.perf_counter()
            [source_fingerprint_inputs(s, folder) for s in (spec.target, *spec.sources)]
            fingerprints.append(time.perf_counter() - begun)
        out = folder / "out" / way
        shutil.rmtree(out, ignore_errors=True)
        begun, cpu = time.perf_counter(), time.process_time()
        stage.run_data_stage(spec, folder, out, reuse=False)
        seconds = (loaded - started, time.perf_counter() - begun, time.process_time() - cpu, *fingerprints)
        rows = {s.name: sorted(stage.load_split(out, s.name, "train")["prompt"]) for s in spec.sources}
        return seconds, rows

    run("file_per_task")  # imports, the loaders' first calls
    times: dict[str, list[tuple[float, float, float, float, float]]] = {way: [] for way in WAYS}
    rows: dict[str, dict[str, list[str]]] = {}
    for _ in range(args.repeats):
        for way in WAYS:
            seconds, rows[way] = run(way)
            times[way].append(seconds)
    assert all(found == rows["file_per_task"] for found in rows.values()), "the ways differ"
    # the best of each (wall clock; the process's CPU time, steadier on shared cores)
    best = {way: [min(t[i] for t in found) for i in range(5)] for way, found in times.items()}
    out: dict[str, Any] = {"tasks": args.tasks, "rows_per_task": args.rows, "repeats": args.repeats}
    for way, (load, data, cpu, first, again) in best.items():
        out[f"{way}_load_spec_s"] = round(load, 3)
        out[f"{way}_fingerprints_first_s"] = round(first, 3)
        out[f"{way}_fingerprints_again_s"] = round(again, 3)
        out[f"{way}_data_stage_s"] = round(data, 2)
        out[f"{way}_data_stage_cpu_s"] = round(cpu, 2)
        if way != "file_per_task":
            out[f"{way}_cpu_ratio"] = round(cpu / best["file_per_task"][2], 2)
    out["same_rows"] = True
    print(json.dumps(out))


if __name__ == "__main__":
    main()
