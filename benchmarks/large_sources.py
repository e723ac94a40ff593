"""Large sources, whole: the data stage and meta-init on ~1.1M rows, time and peak memory.

Builds a project on the tiny random Llama the tests use with 7 sources of 50k-300k rows
(``--scale`` multiplies the row counts) written as JSON Lines, CSV and Parquet in turn
(prompts of about 270 characters: 1.1M rows are about 260 MB of files) and a small
target, then runs ``subsetctl run --until data`` and ``subsetctl run --until meta_init``
(4 steps) as separate commands, each in a fresh process, and reads each one's wall time
and peak RSS (``os.wait4``). Every source is used whole (no ``max_examples``), so the
data stage reads, checks and saves every row, and meta-init must tokenize only the rows
its steps draw. Prints one JSON line.

    python benchmarks/large_sources.py [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _common import ROOT, fresh_work_dir

sys.path.insert(0, str(ROOT / "tests"))  # tinymodels: the tiny random Llama the tests use

ROWS = (50_000, 100_000, 150_000, 150_000, 200_000, 150_000, 300_000)
FORMATS = ("jsonl", "csv", "parquet")
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "sigma")


def _table(n: int, seed: int) -> dict[str, list[str]]:
    """``n`` rows: a ~300-character prompt of words and numbers, and a short answer."""
    rng = random.Random(seed)
    prompts, answers = [], []
    for _ in range(n):
        a, b = rng.randint(0, 9999), rng.randint(0, 9999)
        filler = " ".join(rng.choice(WORDS) for _ in range(40))
        prompts.append(f"{filler} What is {a} plus {b}?")
        answers.append(str(a + b))
    return {"prompt": prompts, "response": answers}


def build(folder: Path, scale: float) -> tuple[int, int]:
    """The project's files and spec; returns (rows, bytes) of the sources."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from tinymodels import save_tiny_llama

    folder.mkdir(parents=True)
    save_tiny_llama(folder / "model")
    target = _table(300, seed=99)
    (folder / "target.jsonl").write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n"
                                                 for p, r in zip(target["prompt"], target["response"])))
    sources, rows, size = [], 0, 0
    for i, n in enumerate(ROWS):
        n = max(1, int(n * scale))
        fmt = FORMATS[i % len(FORMATS)]
        path = folder / f"s{i}.{fmt}"
        table = pa.table(_table(n, seed=i))
        if fmt == "jsonl":
            pairs = zip(table["prompt"].to_pylist(), table["response"].to_pylist())
            with open(path, "w") as out:
                out.writelines(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in pairs)
        elif fmt == "csv":
            pacsv.write_csv(table, path)
        else:
            pq.write_table(table, path)
        sources.append({"name": f"s{i}", "loader": {"type": fmt, "path": path.name}})
        rows, size = rows + n, size + path.stat().st_size
    spec = {
        "project": {"name": "large-sources", "seed": 0},
        "model": {"source": "model", "max_length": 64, "lora": {"r": 2, "alpha": 4}},
        "target": {"name": "target", "loader": {"type": "jsonl", "path": "target.jsonl"},
                   "split": {"train": 100, "validation": 100, "test": 100}},
        "sources": sources,
        "meta_init": {"steps": 4, "batch_size": 8},
        "gradients": {"d": 32},
        "executor": {"backend": "sequential", "n_jobs": 1},
    }
    (folder / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return rows, size


def timed_run(folder: Path, until: str) -> dict[str, float]:
    """``subsetctl run FOLDER --until UNTIL -q`` in a fresh process: seconds and peak RSS."""
    import tempfile

    command = [sys.executable, "-c", "from subsetctl.cli import main; main()", "run", str(folder), "--until", until, "-q"]
    with tempfile.TemporaryFile() as errors:  # (a pipe read only after the wait could fill and block the child)
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            sys.exit(f"`subsetctl run --until {until}` failed:\n{errors.read().decode(errors='replace')}")
    return {"seconds": round(seconds, 1), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every source's row count")
    parser.add_argument("--name", default="large_sources")
    args = parser.parse_args()

    folder = fresh_work_dir(args.name)
    started = time.perf_counter()
    rows, size = build(folder, args.scale)
    build_s = time.perf_counter() - started
    data = timed_run(folder, "data")
    meta_init = timed_run(folder, "meta_init")
    print(json.dumps({"sources": len(ROWS), "rows": rows, "files_mb": round(size / 1e6), "build_s": round(build_s, 1),
                      "data_s": data["seconds"], "data_peak_rss_gb": data["peak_rss_gb"],
                      "meta_init_s": meta_init["seconds"], "meta_init_peak_rss_gb": meta_init["peak_rss_gb"],
                      "cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
