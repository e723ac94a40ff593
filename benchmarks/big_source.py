"""A few large sources capped by ``max_examples``: time and peak memory of preparing one.

Writes one table of ``--rows`` rows (a short prompt, a short answer and two more
columns) as JSON Lines, gzip-compressed JSON Lines, CSV, Parquet and a ``save_to_disk``
folder, then prepares it as a source with ``max_examples`` in a fresh process per format,
the way the data stage does (every row is read and checked, ``max_examples`` rows are
kept), and reads that process's peak RSS. Each format is measured twice: as the data
stage prepares it (``drawn``: only the kept rows are mapped onto the common columns) and
with every row mapped first and the draw made after (``all_mapped``, how it was done
before). Both must keep the same rows. Prints one JSON line.

    python benchmarks/big_source.py [--rows 2000000] [--max-examples 1000] [--formats jsonl,...]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT

CHILD = r"""
import hashlib, json, sys, time
from pathlib import Path
import datasets, pyarrow, pandas  # what the data stage has imported before it loads
from subsetctl.data.loaders import LoadContext, sample_order
from subsetctl.data.prepare import load_source, prepare_source
from subsetctl.spec import SourceSpec
def high_water_mb():  # VmHWM: peak RSS of this process image
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
loader, keep, mode = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
source = SourceSpec(name="big", loader=loader, max_examples=keep)
ctx = LoadContext(source_name="big", base_dir=Path(sys.argv[4]), kind="causal-lm", seed=0)
before = high_water_mb()
start = time.perf_counter()
if mode == "drawn":
    kept = prepare_source(source, ctx)["train"]
else:  # every row mapped (no limit given to the loader), then the same draw
    full = load_source(source, ctx)
    kept = full.select(sample_order(0, len(full), keep))
seconds = time.perf_counter() - start
digest = hashlib.sha256(json.dumps(kept.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
print(json.dumps({"rows": len(kept), "seconds": seconds, "peak_above_mb": high_water_mb() - before,
                  "digest": digest}))
"""


def write_files(folder: Path, rows: int) -> dict[str, dict]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from datasets import Dataset
    from datasets.utils import disable_progress_bars

    disable_progress_bars()
    table = pa.table({
        "question": [f"What is {i % 997} plus {i % 13}?" for i in range(rows)],
        "answer": [str(i % 997 + i % 13) for i in range(rows)],
        "id": list(range(rows)),
        "topic": [f"t{i % 7}" for i in range(rows)],
    })
    pq.write_table(table, folder / "big.parquet")
    pacsv.write_csv(table, folder / "big.csv")
    with open(folder / "big.jsonl", "w", encoding="utf-8") as handle:
        for batch in table.to_batches(max_chunksize=100_000):
            handle.writelines(json.dumps(r) + "\n" for r in batch.to_pylist())
    with open(folder / "big.jsonl", "rb") as src, gzip.open(folder / "big.jsonl.gz", "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)
    Dataset(table).save_to_disk(str(folder / "big_hf"))
    fields = {"prompt_field": "question", "response_field": "answer"}
    return {
        "jsonl": {"type": "jsonl", "path": "big.jsonl", **fields},
        "jsonl_gz": {"type": "jsonl", "path": "big.jsonl.gz", **fields},
        "csv": {"type": "csv", "path": "big.csv", **fields},
        "parquet": {"type": "parquet", "path": "big.parquet", **fields},
        "huggingface": {"type": "huggingface", "path": "big_hf", **fields},
    }


def file_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--max-examples", type=int, default=1000)
    parser.add_argument("--formats", default="jsonl,jsonl_gz,csv,parquet,huggingface")
    args = parser.parse_args()

    out: dict[str, dict] = {"rows": args.rows, "max_examples": args.max_examples}
    with tempfile.TemporaryDirectory(prefix="subsetctl-big-") as tmp:
        folder = Path(tmp)
        loaders = write_files(folder, args.rows)
        for kind in args.formats.split(","):
            figures = {"file_mb": round(file_mb(folder / loaders[kind]["path"]), 1)}
            for mode in ("drawn", "all_mapped"):
                result = subprocess.run(
                    [sys.executable, "-c", CHILD, json.dumps(loaders[kind]), str(args.max_examples), mode, tmp],
                    capture_output=True, text=True, cwd=ROOT, check=False)
                if result.returncode != 0:
                    raise SystemExit(f"{kind} {mode}: {result.stderr[-2000:]}")
                got = json.loads(result.stdout.strip().splitlines()[-1])
                figures[mode] = {"seconds": round(got["seconds"], 2), "peak_above_mb": round(got["peak_above_mb"], 1),
                                 "digest": got["digest"]}
            figures["same_rows"] = figures["drawn"].pop("digest") == figures["all_mapped"].pop("digest")
            out[kind] = figures
    print(json.dumps(out))


if __name__ == "__main__":
    main()
