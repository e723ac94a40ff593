"""Saving the data stage's splits of many small sources: the schema and info built once, old against new.

The data stage saves each split with :func:`subsetctl.data.saving.save_split`, which built
the Arrow schema's ``huggingface`` metadata and ``dataset_info.json`` with datasets'
``asdict`` for every split; it now builds them once for the splits whose info is the same
features alone (all of the data stage's). This saves ``--sources`` sources' three splits of
a few rows each (the data stage's seven columns) into a fresh folder, ``--repeats`` times
each way, alternating: as it is, and with that layout built per split as before. Both must
write the same files. Prints one JSON line: the best wall and CPU seconds of each way, per
split, and the ratio.

    python benchmarks/save_split_layouts.py [--sources 2000] [--rows 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

from _common import fresh_work_dir


def _files(folder: Path) -> str:
    """One digest of every file under ``folder``, by relative path."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _as_before() -> Iterator[None]:
    """Each split's schema and info built afresh, as before."""
    from subsetctl.data import saving

    with mock.patch.object(saving, "_features_alone", lambda info: False):
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=4, help="rows per split")
    parser.add_argument("--repeats", type=int, default=3, help="saves of every split each way (the best counts)")
    args = parser.parse_args()

    from subsetctl.data.loaders import dataset_from_columns
    from subsetctl.data.saving import save_split

    n = args.rows
    splits = [dataset_from_columns({"source": [f"s{i}"] * n, "prompt": [f"{i}+{r}=" for r in range(n)],
                                    "response": [str(i + r) for r in range(n)], "label": [-1] * n,
                                    "label_text": [""] * n, "metadata": ["{}"] * n, "row": list(range(n))})
              for i in range(args.sources) for _ in ("train", "validation", "test")]
    folder = fresh_work_dir("save_split_layouts")

    def save_all(old: bool) -> tuple[float, float, str]:
        out = folder / ("old" if old else "new")
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        with _as_before() if old else contextlib.nullcontext():
            started, cpu = time.perf_counter(), time.process_time()
            for i, split in enumerate(splits):
                save_split(split, out / str(i))
            seconds = time.perf_counter() - started, time.process_time() - cpu
        return *seconds, _files(out)

    save_all(False)  # (imports, the first calls)
    best: dict[str, tuple[float, float]] = {}
    digests: dict[str, str] = {}
    for _ in range(args.repeats):
        for way in ("old", "new"):
            wall, cpu, digests[way] = save_all(way == "old")
            before = best.get(way, (float("inf"), float("inf")))
            best[way] = min(before[0], wall), min(before[1], cpu)
    assert digests["old"] == digests["new"], "the two ways wrote different files"
    count = len(splits)
    print(json.dumps({
        "sources": args.sources, "splits": count, "rows_per_split": n, "repeats": args.repeats,
        "old_s": round(best["old"][0], 2), "new_s": round(best["new"][0], 2),
        "old_cpu_s": round(best["old"][1], 2), "new_cpu_s": round(best["new"][1], 2),
        "ms_per_split_old": round(1000 * best["old"][0] / count, 3),
        "ms_per_split_new": round(1000 * best["new"][0] / count, 3),
        "cpu_saved_s": round(best["old"][1] - best["new"][1], 2),
        "cpu_speedup": round(best["old"][1] / best["new"][1], 2), "same_files": True,
    }))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
