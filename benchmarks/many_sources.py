"""subsetctl with a thousand candidate sources: where the time goes outside the model.

Builds a project of N tiny JSONL sources (one ``source_files`` group over a pool folder)
on a tiny random Llama, so the model stages are cheap and what is measured is the
tool's own per-source overhead: validate, plan, the data stage, search over N sources,
the report stage, and the terminal report (its wall time and its length in lines, which
stays bounded however many sources there are), and the sizes of report.json (its ``settings``
too), report.md and report_sources.csv; then the data stage again after one
source file is added (it prepares that one and reuses the others). Prints one JSON line.
The work folder is built afresh each time: a project left from an earlier invocation
would have nothing to run, and its manifests' stage times are not this run's.

    python benchmarks/many_sources.py [--sources 1000] [--rows 20]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from pathlib import Path

import yaml
from _common import ROOT, fresh_work_dir, stage_seconds

sys.path.insert(0, str(ROOT / "tests"))  # tinymodels: the tiny random Llama the tests use


def build(folder: Path, sources: int, rows: int) -> None:
    """Target (sums) and ``sources`` pool files (sums, differences or products) + spec."""
    from tinymodels import save_tiny_llama

    rng = random.Random(0)
    pool = folder / "pool"
    pool.mkdir(parents=True, exist_ok=True)

    def write(path: Path, op: str, n: int) -> None:
        lines = []
        for _ in range(n):
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            lines.append(json.dumps({"prompt": f"{a}{op}{b}=", "response": str(eval(f"{a}{op}{b}"))}))
        path.write_text("\n".join(lines) + "\n")

    write(folder / "target.jsonl", "+", 60)
    for i in range(sources):
        write(pool / f"s{i:05d}.jsonl", rng.choice("+-*"), rows)
    if not (folder / "model" / "config.json").is_file():
        save_tiny_llama(folder / "model")
    spec = {
        "project": {"name": "many-sources", "seed": 0},
        "model": {"source": "model", "max_length": 32, "lora": {"r": 2, "alpha": 4}},
        "target": {"name": "target", "loader": {"type": "jsonl", "path": "target.jsonl"},
                   "split": {"train": 20, "validation": 20, "test": 20}},
        "source_files": [{"files": "pool/*.jsonl", "loader": {"type": "jsonl"}}],
        "meta_init": {"steps": 4, "batch_size": 8},
        "gradients": {"d": 64, "batch_size": 32},
        "search": {"strategies": [{"name": "random_ensemble"}, {"name": "forward"}, {"name": "gradient_similarity"}]},
        "finetune": {"steps": 2, "batch_size": 4},
        "evaluate": {"max_new_tokens": 3},
        "executor": {"backend": "loky", "n_jobs": 2},
    }
    (folder / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=20, help="examples per source")
    parser.add_argument("--name", default="many_sources")
    args = parser.parse_args()


    from rich.console import Console

    from subsetctl.api import plan_project, run_project, validate_spec_file
    from subsetctl.report.terminal import render_report

    folder = fresh_work_dir(args.name)
    build(folder, args.sources, args.rows)

    started = time.perf_counter()
    report = validate_spec_file(folder / "subsetctl.yaml")
    validate_s = time.perf_counter() - started
    assert report.ok, [i.render() for i in report.issues]
    started = time.perf_counter()
    plan_project(folder)
    plan_s = time.perf_counter() - started
    started = time.perf_counter()
    run_project(folder)
    run_s = time.perf_counter() - started
    buffer = io.StringIO()
    started = time.perf_counter()
    render_report(folder, Console(file=buffer, width=120))
    terminal_report_s = time.perf_counter() - started
    seconds = stage_seconds(folder)
    written = json.loads((folder / "report.json").read_text())
    sizes = {"report_json_kb": round((folder / "report.json").stat().st_size / 1e3, 1),
             "report_json_settings_kb": round(len(json.dumps(written["settings"], indent=2)) / 1e3, 1),
             "report_md_kb": round((folder / "report.md").stat().st_size / 1e3, 1),
             # (of more than 200 sources, every source's scores: report.md shows the highest and lowest)
             "report_sources_csv_kb": round((folder / "report_sources.csv").stat().st_size / 1e3, 1)
             if (folder / "report_sources.csv").is_file() else None}
    # one more candidate source: the data stage prepares it and reuses the others as prepared
    extra = folder / "pool" / f"s{args.sources:05d}.jsonl"
    extra.write_text("".join(json.dumps({"prompt": f"{a}+{a}=", "response": str(2 * a)}) + "\n"
                             for a in range(args.rows)))
    try:
        run_project(folder, until="data")
        add_one = stage_seconds(folder).get("data")
        reused = len(json.loads((folder / ".subsetctl" / "data" / "manifest.json").read_text())["summary"]["reused"])
    finally:
        extra.unlink()
    print(json.dumps({
        "sources": args.sources, "rows_per_source": args.rows,
        "validate_s": round(validate_s, 2), "plan_s": round(plan_s, 2), "run_s": round(run_s, 1),
        "data_s": seconds.get("data"), "data_ms_per_source": round(1000 * seconds.get("data", 0) / args.sources, 2),
        "data_add_one_source_s": add_one, "data_add_one_reused": reused,
        "data_add_one_speedup": round(seconds.get("data", 0) / add_one, 1) if add_one else None,
        "search_s": seconds.get("search"), "report_stage_s": seconds.get("report"),
        "terminal_report_s": round(terminal_report_s, 2), "terminal_report_lines": len(buffer.getvalue().splitlines()),
        **sizes,
    }))


if __name__ == "__main__":
    main()
