"""Memory of reading one large source file: peak resident memory of the JSON Lines, CSV
and Parquet loaders, above what the process held before the load, per MB of file.

Writes a file of ``--mb`` MB (rows of a 300-character prompt, a short response and two
metadata fields), then loads it through the registered loader in a fresh process per
format, the way the data stage does, and reads that process's peak RSS. Prints one JSON
line: for each format the file's size, the load's seconds, its peak memory above the
baseline and that peak as a multiple of the file size.

    python benchmarks/large_file.py [--mb 200] [--formats jsonl,csv,parquet]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT

CHILD = r"""
import json, sys, time
from pathlib import Path
from subsetctl.data.loaders import LoadContext
from subsetctl.registry import LOADERS
from subsetctl.spec import CsvLoader, JsonlLoader, ParquetLoader
import datasets, pyarrow, pandas  # what the data stage has imported before it loads
def high_water_mb():  # VmHWM: peak RSS of this process image (ru_maxrss carries the parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
path, kind = Path(sys.argv[1]), sys.argv[2]
options = {"jsonl": JsonlLoader, "csv": CsvLoader, "parquet": ParquetLoader}[kind](type=kind, path=str(path))
before = high_water_mb()
start = time.perf_counter()
dataset = LOADERS.get(kind)(options, LoadContext(source_name="big", base_dir=path.parent, kind="causal-lm", seed=0))
seconds = time.perf_counter() - start
print(json.dumps({"rows": len(dataset), "seconds": seconds, "peak_above_mb": high_water_mb() - before}))
"""


def write_rows(folder: Path, mb: float) -> list[dict]:
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    rows, size = [], 0
    while size < mb * 1e6:
        prompt = " ".join(rng.choice(words) for _ in range(50))[:300]
        row = {"prompt": prompt, "response": str(rng.randint(0, 10**6)), "topic": rng.choice(words), "id": len(rows)}
        rows.append(row)
        size += len(json.dumps(row)) + 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=200.0)
    parser.add_argument("--formats", default="jsonl,csv,parquet")
    args = parser.parse_args()
    import pandas as pd

    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="subsetctl-large-") as tmp:
        folder = Path(tmp)
        rows = write_rows(folder, args.mb)
        frame = pd.DataFrame(rows)
        files = {"jsonl": folder / "big.jsonl", "csv": folder / "big.csv", "parquet": folder / "big.parquet"}
        files["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        frame.to_csv(files["csv"], index=False)
        frame.to_parquet(files["parquet"], index=False)
        del rows, frame
        for kind in args.formats.split(","):
            path = files[kind]
            result = subprocess.run([sys.executable, "-c", CHILD, str(path), kind], capture_output=True, text=True,
                                    cwd=ROOT, check=False)
            if result.returncode != 0:
                raise SystemExit(f"{kind}: {result.stderr[-2000:]}")
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            file_mb = path.stat().st_size / 1e6
            out[kind] = {"file_mb": round(file_mb, 1), "rows": figures["rows"], "seconds": round(figures["seconds"], 2),
                         "peak_above_mb": round(figures["peak_above_mb"], 1),
                         "peak_per_file_mb": round(figures["peak_above_mb"] / file_mb, 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
