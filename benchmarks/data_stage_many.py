"""The data stage of a project of many tiny sources: its per-source overhead, old against new.

Builds the project ``many_sources.py`` builds (``--sources`` JSONL files of ``--rows``
rows, one ``source_files`` group) and runs the data stage on it fresh (nothing reused)
``--repeats`` times each way, alternating: as it is, and as it was before (each split
saved by ``Dataset.save_to_disk``, each source's ``.source.json`` written atomically with
an fsync of its own, the leak and duplicate checks reading each split through a new
``Dataset``, a reused source's splits read back with ``Dataset.load_from_disk``); then
once more each way after one source is added, reusing the others.
Both must write the same files (every path and byte under the stage folder). Prints one
JSON line: the best time of each way (wall clock, and the process's CPU time, steadier
on shared cores; the wall clock also counts the fsyncs saved), per source, and ratios.

With ``--before TREE`` (a checkout of an earlier subsetctl, e.g. ``git worktree add
/tmp/before <rev>``), the fresh data stage also runs in child processes, alternating, with
that tree's subsetctl and with this one's on ``PYTHONPATH``, each timing its stage alone
(not its imports); the line adds their best times (``tree_before_*``, ``tree_after_*``),
the ratio, and whether both wrote the same files.

    python benchmarks/data_stage_many.py [--sources 300] [--rows 4] [--repeats 3] [--before TREE]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from _common import ROOT, fresh_work_dir
from many_sources import build


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative path: its sha256."""
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _old_save(dataset: Any, folder: Path) -> None:
    """How the data stage saved a split before: ``save_to_disk`` itself."""
    dataset.save_to_disk(str(folder))


def _old_record(tmp: Path, record: dict[str, Any]) -> None:
    """How it wrote a source's record before: atomically (a temporary file, fsync)."""
    from subsetctl.data.stage import SOURCE_FILE
    from subsetctl.project import atomic_write_json

    atomic_write_json(tmp / SOURCE_FILE, record)


def _old_row_keys(dataset: Any, kind: str) -> list[tuple[str, str]]:
    """How the leak and duplicate checks read a split's rows before: through a new
    ``Dataset`` of its two columns (``select_columns``)."""
    from subsetctl.data.overlap import _comparable

    answer = "label_text" if kind == "classifier" else "response"
    if len(dataset) == 0:
        return []
    columns = dataset.select_columns(["prompt", answer])[:]
    return [(_comparable(p), _comparable(a)) for p, a in zip(columns["prompt"], columns[answer])]


@contextlib.contextmanager
def _as_before() -> Iterator[None]:
    """The data stage as it was before this benchmark's changes (see the module docstring)."""
    from subsetctl.data import overlap, stage

    with (mock.patch.object(stage, "save_split", _old_save), mock.patch.object(stage, "_write_record", _old_record),
          mock.patch.object(overlap, "_row_keys", _old_row_keys),
          mock.patch.object(overlap, "_key_batches", lambda dataset, kind: iter([_old_row_keys(dataset, kind)])),
          mock.patch.object(stage, "load_saved", lambda path: None)):  # load_from_disk for every split
        yield


def _child_stage(folder: Path, out: Path) -> None:
    """(In a child process, whichever subsetctl its ``PYTHONPATH`` gives.) Run the data stage
    of the project in ``folder`` fresh into ``out``; print its wall and CPU seconds as JSON.
    A first, untimed run into ``out``'s sibling loads the libraries the stage imports as it
    runs (datasets, pyarrow): timed cold, they were most of the figure (30 sources: 6.9 s a
    child, against 0.5 s in this process), not the stage."""
    from subsetctl.data import stage
    from subsetctl.spec.reading import load_spec

    spec = load_spec(folder / "subsetctl.yaml")
    warm = out.with_name(out.name + "_warm")
    for where in (warm, out):
        shutil.rmtree(where, ignore_errors=True)
    stage.run_data_stage(spec, folder, warm, reuse=False)
    shutil.rmtree(warm, ignore_errors=True)
    started, cpu = time.perf_counter(), time.process_time()
    stage.run_data_stage(spec, folder, out, reuse=False)
    print(json.dumps({"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu}))


def _trees(folder: Path, before: Path, repeats: int) -> dict[str, Any]:
    """The fresh data stage of ``folder``'s project with the subsetctl of the tree ``before``
    and with this tree's, in child processes taking turns: best wall and CPU seconds of each,
    and whether both wrote the same files."""
    best: dict[str, tuple[float, float]] = {}
    files: dict[str, dict[str, str]] = {}
    for _ in range(repeats):
        for way, tree in (("before", before), ("after", ROOT)):
            out = folder / f"tree_{way}"
            env = {**os.environ, "PYTHONPATH": str(tree)}
            done = subprocess.run([sys.executable, __file__, "--child", str(folder), str(out)], env=env, check=True,
                                  capture_output=True, text=True)
            seconds = json.loads(done.stdout.strip().splitlines()[-1])
            wall, cpu = best.get(way, (float("inf"), float("inf")))
            best[way] = min(wall, seconds["wall"]), min(cpu, seconds["cpu"])
            files[way] = _files(out)
    return {
        "tree_before": str(before),
        "tree_before_s": round(best["before"][0], 2), "tree_after_s": round(best["after"][0], 2),
        "tree_before_cpu_s": round(best["before"][1], 2), "tree_after_cpu_s": round(best["after"][1], 2),
        "tree_cpu_speedup": round(best["before"][1] / best["after"][1], 2),
        "tree_same_files": files["before"] == files["after"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=300)
    parser.add_argument("--rows", type=int, default=4, help="examples per source")
    parser.add_argument("--repeats", type=int, default=3, help="fresh data stages each way (the best counts)")
    parser.add_argument("--before", type=Path, help="an earlier subsetctl tree to time the fresh data stage of too")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)  # (_trees' child processes)
    args = parser.parse_args()
    if args.child:
        _child_stage(*args.child)
        return

    from subsetctl.data import stage
    from subsetctl.spec.reading import load_spec

    folder = fresh_work_dir("data_stage_many")
    build(folder, args.sources, args.rows)
    spec = load_spec(folder / "subsetctl.yaml")

    def run(old: bool) -> tuple[tuple[float, float], dict[str, str]]:
        out = folder / ("old" if old else "new")
        shutil.rmtree(out, ignore_errors=True)
        with _as_before() if old else contextlib.nullcontext():
            started, cpu = time.perf_counter(), time.process_time()
            stage.run_data_stage(spec, folder, out, reuse=False)
            seconds = time.perf_counter() - started, time.process_time() - cpu
        return seconds, _files(out)

    def add_one(old: bool) -> tuple[tuple[float, float], dict[str, str]]:
        """The stage re-run after one source is added, reusing the others from ``run``'s folder."""
        out = folder / ("old_plus_one" if old else "new_plus_one")
        shutil.rmtree(out, ignore_errors=True)
        with _as_before() if old else contextlib.nullcontext():
            started, cpu = time.perf_counter(), time.process_time()
            stage.run_data_stage(spec_plus_one, folder, out, reuse_from=[folder / ("old" if old else "new")])
            seconds = time.perf_counter() - started, time.process_time() - cpu
        return seconds, _files(out)

    run(False)  # imports, the loaders' first calls
    times: dict[str, list[tuple[float, float]]] = {"old": [], "new": [], "old_add_one": [], "new_add_one": []}
    files: dict[str, dict[str, str]] = {}
    for _ in range(args.repeats):
        for old in (True, False):
            seconds, files["old" if old else "new"] = run(old)
            times["old" if old else "new"].append(seconds)
    extra = folder / "pool" / f"s{args.sources:05d}.jsonl"
    extra.write_text("".join(json.dumps({"prompt": f"{a}+{a}=", "response": str(2 * a)}) + "\n" for a in range(args.rows)))
    spec_plus_one = load_spec(folder / "subsetctl.yaml")
    for _ in range(args.repeats):
        for old in (True, False):
            seconds, files[f"{'old' if old else 'new'}_add_one"] = add_one(old)
            times[f"{'old' if old else 'new'}_add_one"].append(seconds)
    assert files["old"] == files["new"] and files["old_add_one"] == files["new_add_one"], "the two ways differ"
    best = {way: min(wall for wall, _ in pairs) for way, pairs in times.items()}
    cpu = {way: min(used for _, used in pairs) for way, pairs in times.items()}  # steadier on shared cores
    print(json.dumps({
        "sources": args.sources, "rows_per_source": args.rows, "repeats": args.repeats,
        "data_stage_old_s": round(best["old"], 2), "data_stage_new_s": round(best["new"], 2),
        "ms_per_source_old": round(1000 * best["old"] / (args.sources + 1), 2),
        "ms_per_source_new": round(1000 * best["new"] / (args.sources + 1), 2),
        "speedup": round(best["old"] / best["new"], 2),
        "cpu_old_s": round(cpu["old"], 2), "cpu_new_s": round(cpu["new"], 2),
        "cpu_speedup": round(cpu["old"] / cpu["new"], 2),
        "add_one_old_s": round(best["old_add_one"], 2), "add_one_new_s": round(best["new_add_one"], 2),
        "add_one_speedup": round(best["old_add_one"] / best["new_add_one"], 2),
        "add_one_cpu_old_s": round(cpu["old_add_one"], 2), "add_one_cpu_new_s": round(cpu["new_add_one"], 2),
        "add_one_cpu_speedup": round(cpu["old_add_one"] / cpu["new_add_one"], 2),
        "same_files": True, "files": len(files["new"]),
        **(_trees(folder, args.before.resolve(), args.repeats) if args.before else {}),
    }))


if __name__ == "__main__":
    main()
