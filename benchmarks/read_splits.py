"""Reading the data stage's saved splits back, as every later stage does for each source
(a fine-tune reads each source it selected, once per run): ``split_columns`` (the split's
Arrow files read with pyarrow) against ``load_split(...)[:]`` (``Dataset.load_from_disk``),
timed in the same run over the same folders, which it checks give the same columns.
Prints one JSON line.

    python benchmarks/read_splits.py [--sources 2000] [--rows 4]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import fresh_work_dir


def build(folder: Path, sources: int, rows: int) -> list[str]:
    """``sources`` saved train splits of ``rows`` rows with the data stage's columns."""
    from datasets import Dataset

    from subsetctl.data.prepare import quiet_datasets

    names = [f"s{i:05d}" for i in range(sources)]
    with quiet_datasets():
        for n, name in enumerate(names):
            Dataset.from_dict({
                "source": [name] * rows, "prompt": [f"{n}+{i}=" for i in range(rows)],
                "response": [str(n + i) for i in range(rows)], "label": [-1] * rows,
                "label_text": [""] * rows, "metadata": ["{}"] * rows, "row": list(range(rows)),
            }).save_to_disk(str(folder / name / "train"))
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=4, help="rows per source")
    args = parser.parse_args()

    from subsetctl.data.stage import load_split, split_columns

    folder = fresh_work_dir("read_splits")
    names = build(folder, args.sources, args.rows)
    split_columns(folder, names[0], "train"), load_split(folder, names[0], "train")  # imports, warm cache

    started = time.perf_counter()
    before = [load_split(folder, name, "train")[:] for name in names]
    before_s = time.perf_counter() - started
    started = time.perf_counter()
    after = [split_columns(folder, name, "train") for name in names]
    after_s = time.perf_counter() - started
    assert after == before and all(list(a) == list(b) for a, b in zip(after, before))
    print(json.dumps({
        "sources": args.sources, "rows_per_source": args.rows,
        "load_from_disk_s": round(before_s, 3), "split_columns_s": round(after_s, 3),
        "ms_per_source_before": round(1000 * before_s / args.sources, 3),
        "ms_per_source_after": round(1000 * after_s / args.sources, 3),
        "speedup": round(before_s / after_s, 1), "same_columns": True,
    }))


if __name__ == "__main__":
    main()
