"""Reading a large CSV file of CRLF lines among more CSV files than a cache of 8 kept:
the line-end scan (:func:`~subsetctl.data.loaders.files.crlf_lines`) read such a file through
again for each of the fingerprint, the loader and validate's looks once the spec had more
than 8 CSV files. Old code against new, each in a fresh process.

Writes a CSV file of ``--mb`` MB whose lines end with CRLF (a quoted cell over two lines in
each row) and ``--small`` small CRLF files, then, as one command does, fingerprints every
file's source, loads each (the data stage's loader) and validates the spec's sources; prints
one JSON line: per side (``old``: the revision before the commit reading them once, or
``--old REV``; ``new``: this checkout) the seconds, the process's peak memory above what it
held before, how many times the large file was opened, and the line-end scans of all the files:
how many, and their seconds (the rest is the loader's, about the same either way).

    python benchmarks/crlf_reads.py [--mb 200] [--small 8] [--old REV]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import ROOT, child_json, old_worktree, revision_before

CHILD = r"""
import functools, json, sys, time
from pathlib import Path
from subsetctl.data.loaders import LoadContext, files
from subsetctl.data.checks import check_sources
from subsetctl.data.fingerprint import source_fingerprint_inputs
from subsetctl.registry import LOADERS
from subsetctl.spec import load_spec
import datasets, pyarrow, pandas  # what the data stage has imported before it loads
def high_water_mb():  # VmHWM: peak RSS of this process image
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
reads = []
real = files.open_decompressed
def counted(path, *a, **k):
    handle = real(path, *a, **k)
    if Path(path).name == "big.csv":
        reads.append(1)
    return handle
files.open_decompressed = counted
scans = []  # (seconds) of each read of a file's line ends: the old code's _crlf_lines, the new one's _line_ends
name = "_line_ends" if hasattr(files, "_line_ends") else "_crlf_lines"
scan = getattr(files, name)
def timed(*args, **kwargs):
    started = time.perf_counter()
    try:
        return scan.__wrapped__(*args, **kwargs)
    finally:
        scans.append(time.perf_counter() - started)
setattr(files, name, functools.lru_cache(maxsize=scan.cache_info().maxsize)(timed))
spec_path = Path(sys.argv[1])
spec = load_spec(spec_path)
before = high_water_mb()
start = time.perf_counter()
for source in spec.sources:
    source_fingerprint_inputs(source, spec_path.parent)
for source in spec.sources:
    ctx = LoadContext(source_name=source.name, base_dir=spec_path.parent, kind="causal-lm", seed=0)
    LOADERS.get("csv")(source.loader, ctx)
check_sources(spec, spec_path)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": round(seconds, 2), "peak_above_mb": round(high_water_mb() - before, 1),
                  "big_file_opens": len(reads), "line_end_scans": len(scans), "scan_seconds": round(sum(scans), 2)}))
"""


def write_project(folder: Path, mb: float, small: int) -> Path:
    """The large CRLF file, ``small`` small ones after it, and a spec of a source each."""
    with open(folder / "big.csv", "w", newline="", encoding="utf-8") as out:
        out.write("prompt,response\r\n")
        size, i = 0, 0
        while size < mb * 2**20:
            rows = "".join(f'what is item {j} of the list,"answer {j}\r\nsecond line"\r\n' for j in range(i, i + 10_000))
            out.write(rows)
            size, i = size + len(rows), i + 10_000
    for k in range(small):
        (folder / f"s{k}.csv").write_bytes(b'prompt,response\r\nq,"a\r\nb"\r\nq2,r2\r\n')
    sources = [{"name": "big", "loader": {"type": "csv", "path": "big.csv"}},
               *({"name": f"s{k}", "loader": {"type": "csv", "path": f"s{k}.csv"}} for k in range(small))]
    spec = {"target": {"name": "t", "loader": {"type": "csv", "path": "s0.csv"},
                       "split": {"train": 1, "validation": 1, "test": 0.5}}, "sources": sources}
    path = folder / "subsetctl.yaml"
    path.write_text(json.dumps(spec))  # (JSON is YAML)
    return path


def run_side(code: Path, spec: Path) -> dict:
    return child_json(code, CHILD, spec, what="reading the files", cwd=spec.parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=200.0)
    parser.add_argument("--small", type=int, default=8)
    parser.add_argument("--old", default=None, help="the old code's git revision (default: before the fix)")
    args = parser.parse_args()
    old = args.old or revision_before("Perf: a CSV file's line ends are read once")
    with tempfile.TemporaryDirectory(prefix="subsetctl-crlf-") as tmp:
        spec = write_project(Path(tmp), args.mb, args.small)
        with old_worktree(old) as tree:
            before = run_side(tree, spec)
        after = run_side(ROOT, spec)
    print(json.dumps({"mb": args.mb, "small_files": args.small, "old": before, "new": after}))


if __name__ == "__main__":
    main()
