"""The gradients stage at N and 2N sources: does its time grow faster than its rows?

Builds the project ``many_sources.py`` builds at ``--sources`` N and 2N (``--rows`` rows
each, a tiny random Llama, gradients.d 8 in batches of 64), runs each up to meta_init,
then runs the gradients stage (``run --until gradients --force gradients``) on the two
projects in turn, ``--repeats`` times, each in its own process. Prints one JSON line: the
best stage seconds and process CPU seconds at N and 2N, their ratios (2 or a little
under for a stage linear in its rows: the model load is a fixed cost), and the stage's
output digest at each N (the same on every repeat, or the benchmark stops).

Torch's OpenMP threads spin while they wait for a core, so on busy cores the stage's
time says how busy they were, not how it scales (a 10,000-source project took 410.9 s
where 5,000 took 6.1 s): the runs use ``OMP_WAIT_POLICY=PASSIVE`` unless it is set
(the thread count, and so the results, are unchanged), and alternate the two sizes so
that a change of load falls on both.

    python benchmarks/gradients_sources.py [--sources 2500] [--rows 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _common import ROOT, fresh_work_dir, stage_seconds
from many_sources import build


def _subsetctl(folder: Path, *args: str) -> float:
    """Run ``python -P -m subsetctl run FOLDER -q ARGS`` with this checkout's package; the
    CPU seconds (user + system) it took."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-P", "-m", "subsetctl", "run", str(folder), "-q", *args],
                          check=False, capture_output=True, text=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"subsetctl run {folder} {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _digest(folder: Path) -> str:
    return json.loads((folder / ".subsetctl" / "gradients" / "manifest.json").read_text())["output_digest"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=2500, help="N (the larger project has 2N)")
    parser.add_argument("--rows", type=int, default=5, help="examples per source")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    sizes = (args.sources, 2 * args.sources)
    folders = {}
    for n in sizes:
        folder = fresh_work_dir(f"gradients_sources_{n}")
        build(folder, n, args.rows)
        spec = yaml.safe_load((folder / "subsetctl.yaml").read_text())
        spec["gradients"] = {"d": 8, "batch_size": 64}
        (folder / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        _subsetctl(folder, "--until", "meta_init")
        folders[n] = folder
    seconds: dict[int, list[float]] = {n: [] for n in sizes}
    cpu: dict[int, list[float]] = {n: [] for n in sizes}
    digests: dict[int, str] = {}
    started = time.perf_counter()
    for _ in range(args.repeats):
        for n in sizes:
            cpu[n].append(_subsetctl(folders[n], "--until", "gradients", "--force", "gradients"))
            seconds[n].append(stage_seconds(folders[n])["gradients"])
            digest = _digest(folders[n])
            if digests.setdefault(n, digest) != digest:
                raise SystemExit(f"The gradients of {n} sources changed between repeats: {digests[n]}, then {digest}.")
    small, large = sizes
    best = {n: min(seconds[n]) for n in sizes}
    best_cpu = {n: min(cpu[n]) for n in sizes}
    print(json.dumps({
        "benchmark": "gradients_sources",
        "sources": list(sizes),
        "rows": {n: n * args.rows for n in sizes},
        "gradients_s": best,
        "ratio_s": round(best[large] / best[small], 2),
        "process_cpu_s": {n: round(v, 2) for n, v in best_cpu.items()},
        "ratio_cpu": round(best_cpu[large] / best_cpu[small], 2),
        "output_digest": digests,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        "load_average": [round(v, 1) for v in os.getloadavg()],
        "wall_s": round(time.perf_counter() - started, 1),
    }))


if __name__ == "__main__":
    main()
