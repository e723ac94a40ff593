"""validate's count of a JSON Lines file's non-blank lines, a line at a time (the old way) and a
block at a time (:func:`~subsetctl.data.line_count.count_nonblank_lines`), in one run.

Writes the file ``validate_many_large.py`` makes each source of (``--rows`` rows of a short
text and a label, 4.4 MB at 100,000), then a copy with CRLF line ends and blank lines of
Unicode whitespace, and a gzip-compressed copy, and times each count of each, best of
``--repeats`` in CPU milliseconds of this process (steadier than wall seconds on a shared machine);
the counts must be equal. Prints one JSON line: per file, the old and new milliseconds and their ratio.

    python benchmarks/count_lines.py [--rows 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

from _common import fresh_work_dir

from subsetctl.data.line_count import count_nonblank_lines
from subsetctl.data.loaders.files import open_decompressed


def _old_count(path: Path) -> int:
    """The count as validate made it before: the file read as the loaders read it, line by line."""
    with io.TextIOWrapper(open_decompressed(path), encoding="utf-8-sig", newline="") as handle:
        return sum(1 for line in handle if line.strip())


def _new_count(path: Path) -> int:
    with open_decompressed(path) as handle:
        return count_nonblank_lines(handle)


def _best_ms(count: Callable[[Path], int], path: Path, repeats: int) -> tuple[float, int]:
    """The fastest of ``repeats`` counts of ``path`` (CPU milliseconds) and the count."""
    best, lines = float("inf"), -1
    for _ in range(repeats):
        started = time.process_time()
        lines = count(path)
        best = min(best, time.process_time() - started)
    return best * 1000, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    folder = fresh_work_dir("count_lines")
    folder.mkdir(parents=True)
    rows = [json.dumps({"text": f"row {i} of a source", "y": ["neg", "pos"][i % 2]}) for i in range(args.rows)]
    files = {"lf": folder / "big.jsonl", "crlf_blank": folder / "crlf.jsonl", "gzip": folder / "big.jsonl.gz"}
    files["lf"].write_text("".join(row + "\n" for row in rows))
    files["crlf_blank"].write_bytes("".join(row + ("\r\n\xa0\u2028 \r\n" if i % 100 == 0 else "\r\n")
                                            for i, row in enumerate(rows)).encode())
    files["gzip"].write_bytes(gzip.compress(files["lf"].read_bytes()))
    result: dict[str, object] = {"rows": args.rows, "mb": round(files["lf"].stat().st_size / 1e6, 2)}
    for name, path in files.items():
        old_ms, old_lines = _best_ms(_old_count, path, args.repeats)
        new_ms, new_lines = _best_ms(_new_count, path, args.repeats)
        if old_lines != new_lines:
            raise SystemExit(f"{name}: the counts differ: {old_lines} the old way, {new_lines} the new")
        result[name] = {"lines": new_lines, "old_ms": round(old_ms, 2), "new_ms": round(new_ms, 2),
                        "ratio": round(old_ms / new_ms, 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
