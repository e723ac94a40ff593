"""Memory of reading a corpus of long documents (``loader.text_field``): peak resident
memory of the JSON Lines and Parquet loaders above what the process held before the load,
with chunks (and Parquet batches) cut at ``CHUNK_CHARS`` characters (bytes) as now, against
``CHUNK_ROWS`` rows only (as before: 50,000 documents of 5 kB held as Python strings at once).

Writes a file of ``--mb`` MB of documents of 100 to 20,000 characters (a few words beyond
Latin-1, as a real corpus has, so Python holds a document at up to 4 bytes a character),
and as Parquet, then loads each in a fresh process per variant, the way the data stage does.
Prints one JSON line: for each format and variant the load's seconds and its peak memory above
the baseline.

    python benchmarks/long_documents.py [--mb 200]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import ROOT

CHILD = r"""
import json, sys, time
from pathlib import Path
from subsetctl.data.loaders import LoadContext, common
from subsetctl.registry import LOADERS
from subsetctl.spec import JsonlLoader, ParquetLoader
import datasets, pyarrow, pandas  # what the data stage has imported before it loads
def high_water_mb():  # VmHWM: peak RSS of this process image
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
path, variant = Path(sys.argv[1]), sys.argv[2]
kind = path.suffix[1:]
if variant == "rows_only":
    common.CHUNK_CHARS = 10**18
options = {"jsonl": JsonlLoader, "parquet": ParquetLoader}[kind](type=kind, path=str(path), text_field="text")
before = high_water_mb()
start = time.perf_counter()
dataset = LOADERS.get(kind)(options, LoadContext(source_name="docs", base_dir=path.parent, kind="causal-lm", seed=0))
seconds = time.perf_counter() - start
print(json.dumps({"rows": len(dataset), "seconds": seconds, "peak_above_mb": high_water_mb() - before}))
"""


def write_documents(path: Path, mb: float) -> None:
    """``mb`` MB of JSON Lines documents of log-normal lengths, 100 to 20,000 characters."""
    rng = random.Random(0)
    words = ["the", "of", "and", "to", "in", "was", "for", "with", "naïve", "café", "日本語", "emoji🙂"]
    pool = " ".join(rng.choice(words) for _ in range(200_000))
    size = 0
    with path.open("w", encoding="utf-8") as f:
        while size < mb * 1e6:
            n = int(min(20_000, max(100, rng.lognormvariate(8.0, 1.0))))
            start = rng.randrange(0, len(pool) - n)
            line = json.dumps({"text": pool[start:start + n]}, ensure_ascii=False) + "\n"
            f.write(line)
            size += len(line.encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=200.0)
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="subsetctl-docs-") as tmp:
        import pyarrow.json as pj
        import pyarrow.parquet as pq

        path = Path(tmp) / "docs.jsonl"
        write_documents(path, args.mb)
        pq.write_table(pj.read_json(path), Path(tmp) / "docs.parquet")
        for kind in ("jsonl", "parquet"):
            file = path.with_suffix("." + kind)
            out[kind] = {"file_mb": round(file.stat().st_size / 1e6, 1)}
            for variant in ("chunk_chars", "rows_only"):
                result = subprocess.run([sys.executable, "-c", CHILD, str(file), variant], capture_output=True,
                                        text=True, cwd=ROOT, check=False)
                if result.returncode != 0:
                    raise SystemExit(f"{kind} {variant}: {result.stderr[-2000:]}")
                figures = json.loads(result.stdout.strip().splitlines()[-1])
                out["rows"] = figures["rows"]
                out[kind][variant] = {"seconds": round(figures["seconds"], 2),
                                      "peak_above_mb": round(figures["peak_above_mb"], 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
