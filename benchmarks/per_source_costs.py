"""The model stages' per-source costs at thousands of sources, the old way and the new, in one run.

Builds the project ``many_sources.py`` builds (``--sources`` tiny sources of ``--rows``
examples each) and runs its data stage, then times, best of ``--repeats``:

* ``row_table``: every split the gradients stage reads (the target's train and validation, each
  source's train), the old way (a copy of the code before: one split at a time, its files'
  paths made with ``Path``, its columns zipped into rows) and the new
  (:func:`~subsetctl.data.stage.splits_rows`); the rows must be equal;
* ``stage_reads``: every split of the target and each source (what meta_init, verify and a
  fine-tune of many sources read a split of each, and the special-token count all three), one
  split at a time with :func:`~subsetctl.stages.common.examples`'s ``split_columns`` (the old
  way, as those stages read them) and together (:func:`~subsetctl.stages.common.examples_of`'s
  ``splits_rows``); the rows must be equal;
* ``store_writes``: a gradient store of those rows (``--d`` projected and 64 hidden-state
  floats a row, the tiny Llama's) filled in batches of ``--batch-size``, the old way (each
  array flushed in turn after every batch) and the new (:meth:`GradientStore.write`, the data
  arrays synced at once); the files must be equal.

Prints one JSON line: each part's old and new seconds and their ratio. The disk's sync time
follows what else writes to it: on a shared machine, run it more than once.

    python benchmarks/per_source_costs.py [--sources 2000] [--rows 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import fresh_work_dir
from many_sources import build


def _old_rows(data_dir: Path, wanted: list[tuple[str, str]]) -> list[list[dict[str, Any]]]:
    """The splits' rows as ``row_table`` read them before: each one's ``split_columns`` (plain
    splits read as ``plain_split_columns`` read them), zipped into rows."""
    import pyarrow as pa

    from subsetctl.data.saving import read_saved_json

    rows = []
    for name, split in wanted:
        path = Path(data_dir) / name / split
        if Path(data_dir, name).is_dir() and not path.exists():
            columns: dict[str, list[Any]] = {}
        else:
            state = read_saved_json(path / "state.json")
            features = read_saved_json(path / "dataset_info.json")["features"]
            if not (state.get("_format_type") is None and not state.get("_format_columns")
                    and not state.get("_format_kwargs") and isinstance(features, dict)
                    and all(isinstance(f, dict) and f.get("_type") == "Value" for f in features.values())):
                raise SystemExit(f"{path} is not a plain split: this benchmark reads those alone.")
            tables = []
            for data_file in state["_data_files"]:
                with pa.memory_map(str(path / data_file["filename"])) as stream:
                    tables.append(pa.ipc.open_stream(stream).read_all())
            columns = pa.concat_tables(tables).to_pydict()
        rows.append([dict(zip(columns, values)) for values in zip(*columns.values())])
    return rows


def _one_by_one(data_dir: Path, wanted: list[tuple[str, str]]) -> list[list[dict[str, Any]]]:
    """The splits' rows as ``common.examples`` reads them, one split at a time."""
    from subsetctl.data.stage import split_columns

    return [[dict(zip(columns, values)) for values in zip(*columns.values())]
            for columns in (split_columns(data_dir, name, split) for name, split in wanted)]


def _read_both_ways(old: Callable[[Path, list[tuple[str, str]]], list[list[dict[str, Any]]]], data_dir: Path,
                    wanted: list[tuple[str, str]], seconds: dict[str, list[float]]) -> list[list[dict[str, Any]]]:
    """The rows of ``wanted`` read by ``old`` and by ``splits_rows``, which must be equal, each
    way's seconds added to ``seconds[way]``."""
    from subsetctl.data.stage import splits_rows

    got = {}
    for way, read in (("old", old), ("new", splits_rows)):
        started = time.perf_counter()
        got[way] = read(data_dir, wanted)
        seconds[way].append(time.perf_counter() - started)
    if got["new"] != got["old"]:
        raise SystemExit(f"splits_rows read other rows than {old.__name__}.")
    return got["old"]


def _old_write(store: Any, rows: list[int], f: np.ndarray, x: np.ndarray, hidden: np.ndarray) -> None:
    """``GradientStore.write`` as it was: each array flushed in turn after every batch."""
    store.features[rows] = x
    store.outputs[rows] = f
    store.features.flush()
    store.outputs.flush()
    store.repr[rows] = hidden
    store.repr.flush()
    store.written[rows] = True
    store.written.flush()


def _fill(folder: Path, n_rows: int, d: int, batch_size: int, old: bool) -> float:
    """Seconds to fill a new store of ``n_rows`` rows at ``folder``, batch by batch."""
    from subsetctl.gradients.store import GradientStore

    store = GradientStore.create(folder, [{"source": "s", "split": "train", "index": i} for i in range(n_rows)],
                                 d, 64, {"model": "benchmark"})
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for start in range(0, n_rows, batch_size):
        rows = list(range(start, min(n_rows, start + batch_size)))
        f = rng.standard_normal(len(rows)).astype(np.float32)
        x = rng.standard_normal((len(rows), d)).astype(np.float32)
        hidden = rng.standard_normal((len(rows), 64)).astype(np.float32)
        (_old_write if old else GradientStore.write)(store, rows, f, x, hidden)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=5, help="examples per source")
    parser.add_argument("--d", type=int, default=8, help="gradients.d of the store")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from subsetctl.api import load_project, run_project
    from subsetctl.data.prepare import SPLITS

    folder = fresh_work_dir(f"per_source_costs_{args.sources}")
    build(folder, args.sources, args.rows)
    run_project(folder, until="data")
    _, spec = load_project(folder)
    data_dir = folder / ".subsetctl" / "data"
    wanted = [(spec.target.name, "train"), (spec.target.name, "validation"),
              *((source.name, "train") for source in spec.sources)]
    every_split = [(name, split) for name in [spec.target.name, *(source.name for source in spec.sources)]
                   for split in SPLITS]
    seconds: dict[str, dict[str, list[float]]] = {part: {"old": [], "new": []}
                                                  for part in ("row_table", "stage_reads", "store_writes")}
    n_rows = 0
    for _ in range(args.repeats):
        expected = _read_both_ways(_old_rows, data_dir, wanted, seconds["row_table"])
        n_rows = sum(map(len, expected))
        expected_splits = _read_both_ways(_one_by_one, data_dir, every_split, seconds["stage_reads"])
        for way in ("old", "new"):
            seconds["store_writes"][way].append(
                _fill(folder / "stores" / way, n_rows, args.d, args.batch_size, way == "old"))
        for name in sorted(os.listdir(folder / "stores" / "old")):
            if (folder / "stores" / "old" / name).read_bytes() != (folder / "stores" / "new" / name).read_bytes():
                raise SystemExit(f"The two stores' {name} differ.")
    best = {part: {way: round(min(times), 3) for way, times in ways.items()} for part, ways in seconds.items()}
    print(json.dumps({
        "benchmark": "per_source_costs", "sources": args.sources, "rows": n_rows,
        "stage_reads_rows": sum(map(len, expected_splits)), "d": args.d,
        "batches": -(-n_rows // args.batch_size),
        **{f"{part}_s": ways for part, ways in best.items()},
        **{f"{part}_ratio": round(ways["old"] / ways["new"], 2) for part, ways in best.items()},
        "load_average": [round(v, 1) for v in os.getloadavg()],
    }))


if __name__ == "__main__":
    main()
