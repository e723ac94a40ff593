"""subsetctl's selection time against the conventional method, on the quickstart project.

subsetctl: meta_init + gradients + calibrate + search (all estimates) wall time, from the
stage manifests of one run. Conventional: one real fine-tune per subset that the same
strategy evaluates (the ``true_finetune`` estimator, at the final fine-tune's budget),
MEASURED on a few subsets and EXTRAPOLATED to all of them (labeled as such).
The work project (benchmarks/_work/speedup, or ``--name``) is built afresh each time, with
no stages copied from examples/quickstart: a stage left from an earlier run would not run
again, and its manifest's seconds would set one side of the ratio from another run.
Prints one JSON line with ``speedup`` and ``subsets``.

    python benchmarks/speedup.py [--measure 2] [key=value overrides...]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from _common import stage_seconds, work_project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--measure", type=int, default=2, help="real fine-tunes to time")
    parser.add_argument("--name", default="speedup")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    from subsetctl.api import load_project, run_project
    from subsetctl.pipeline import StageContext
    from subsetctl.reporter import RichReporter, SilentReporter
    from subsetctl.stages.real_finetune import RealFinetuner

    folder = work_project(args.name, fresh=True, reuse_quickstart=False)  # both sides timed in this run
    run_project(folder, args.overrides, until="search", reporter=RichReporter())
    seconds = stage_seconds(folder)
    selection_seconds = sum(seconds.get(s, 0.0) for s in ("meta_init", "gradients", "calibrate", "search"))
    selections = json.loads((folder / ".subsetctl" / "search" / "selections.json").read_text())
    final = selections["final"]
    record = selections["strategies"][final]  # its trace keeps at most 10,000 subsets; the count is in diagnostics
    subsets = int(record["diagnostics"].get("n_subsets_estimated", len(record["trace"])))

    project, spec = load_project(folder, args.overrides)
    ctx = StageContext(spec, project, SilentReporter(), project.state_dir / "speedup-work")
    finetuner = RealFinetuner(ctx, "ce", steps=spec.finetune.steps, batch_size=spec.finetune.batch_size)
    rng = np.random.default_rng(0)
    names = [s.name for s in spec.sources]
    for i in range(args.measure):
        subset = [n for n in names if rng.random() < 0.5]
        finetuner.run(subset, ctx.out_dir / f"run-{i}")
    per_subset = float(np.mean(finetuner.seconds))
    conventional = per_subset * subsets
    out = {
        "speedup": round(conventional / selection_seconds, 1),
        "subsets": subsets,
        "strategy": final,
        "subsetctl_seconds": round(selection_seconds, 1),
        "subsetctl_stage_seconds": {k: v for k, v in seconds.items() if k in ("meta_init", "gradients", "calibrate", "search")},
        "conventional_seconds_extrapolated": round(conventional, 1),
        "conventional_seconds_per_subset_measured": round(per_subset, 2),
        "conventional_subsets_measured": args.measure,
        "conventional_finetune_steps": spec.finetune.steps,
        "note": "conventional time is measured on a few subsets and extrapolated to all subsets the strategy evaluated",
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
