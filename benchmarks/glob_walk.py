"""A ``source_files`` pattern's ``**`` walk over a big tree of data files: its time, and that
the folder limit (:data:`subsetctl.globbing.FOLDER_LIMIT`) leaves such a tree alone.

Builds FILES ``.jsonl`` files spread over FOLDERS folders (20,000 in 2,000 by default, a big
data set kept as files) in a temporary folder, matches ``**/*.jsonl`` there (best of
``--repeat``), then times a walk stopped by a lowered limit to give the seconds per 100,000
folders, what a ``**`` over a tree too big (``files: /home/**/*.jsonl``) spends before its error
(one from ``/`` is refused before any walk). Prints one JSON line.

    python benchmarks/glob_walk.py [--files 20000] [--folders 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT

sys.path.insert(0, str(ROOT))

from subsetctl import globbing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--folders", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.files):
            folder = root / f"part-{i % args.folders // 50:03d}" / f"shard-{i % args.folders:05d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f{i}.jsonl").touch()
        times, matched = [], 0
        for _ in range(args.repeat):
            start = time.perf_counter()
            matched = len(globbing.glob_without_loops("**/*.jsonl", root))
            times.append(time.perf_counter() - start)
        folders = sum(1 for p in root.rglob("*") if p.is_dir()) + 1
        limit = folders // 2
        start = time.perf_counter()
        try:
            globbing.glob_without_loops("**/*.jsonl", root, folder_limit=limit)
        except globbing.TooManyFolders:
            pass
        stopped = time.perf_counter() - start
    print(json.dumps({"files": args.files, "folders": folders, "matched": matched,
                      "walk_s": round(min(times), 3), "folder_limit": globbing.FOLDER_LIMIT,
                      "s_per_100k_folders": round(stopped / limit * 100_000, 1)}))


if __name__ == "__main__":
    main()
