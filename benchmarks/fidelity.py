"""Fidelity of the estimate against real fine-tuning, on the quickstart project.

Runs meta_init, gradients, k real fine-tunes of each kind (cross-entropy/AdamW and
surrogate/SGD) from theta*, and calibration (choosing the estimator among
calibrate.estimators and lambda per kind); prints one JSON line at the end:
spearman_ce, spearman_surrogate, calibrated_median_rel_err_ce,
calibrated_median_rel_err_surrogate, lambda, k, seconds (plus per-estimator and
per-lambda details; with verify.repeats=r > 1, repeat_spearman_<kind>, the real runs' own
seed-to-seed rank agreement, the ceiling for any estimate).

    python benchmarks/fidelity.py [--k 16] [key=value overrides...]

Defaults (the README's headline run; later overrides win): d = 1024 with the whole
projection cached (gradients.memory_budget_mb=2048), verify's default budgets (15 steps x
batch 8; AdamW 5e-4 for ce, SGD 0.002 for surrogate), lambda grid 0.1-1000, and
calibration choosing between the fast (ridge) and linear_sgd estimators per kind.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from _common import OVERRIDES_FILE, stage_seconds, work_project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--name", default="fidelity")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    from subsetctl.api import run_project
    from subsetctl.reporter import RichReporter

    folder = work_project(args.name, fresh=args.fresh)
    overrides = [
        "verify.enabled=true", f"verify.k={args.k}", "verify.kinds=[ce, surrogate]", "finetune.enabled=false",
        "gradients.d=1024", "gradients.memory_budget_mb=2048",
        "calibrate.lambda_grid=[0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000]", "calibrate.estimators=[fast, linear_sgd]",
        *args.overrides,
    ]
    (folder / OVERRIDES_FILE).write_text(json.dumps(overrides))  # the spec the readers of this run load
    start = time.perf_counter()
    run_project(folder, overrides, until="calibrate", reporter=RichReporter())
    wall = time.perf_counter() - start
    data = json.loads((folder / ".subsetctl" / "calibrate" / "calibration.json").read_text())
    out: dict = {"k": args.k, "overrides": args.overrides}
    for kind in ("ce", "surrogate"):
        entry = data["kinds"].get(kind)
        if not entry:
            continue
        cal = entry["calibration"]
        out[f"spearman_{kind}"] = cal["spearman"]
        out[f"calibrated_median_rel_err_{kind}"] = cal["loo_median_rel_err"]
        out[f"calibrated_median_rel_err_with_selection_{kind}"] = entry.get("loo_median_rel_err_with_selection")
        out[f"estimator_{kind}"] = entry.get("estimator")
        out[f"lambda_{kind}"] = cal["lam"]
        out[f"per_estimator_{kind}"] = {
            name: {"lam": c["calibration"]["lam"], "spearman": c["calibration"]["spearman"],
                   "loo_median_rel_err": c["calibration"]["loo_median_rel_err"],
                   "per_lambda": {str(r["lam"]): [r.get("spearman"), r.get("loo_median_rel_err")]
                                  for r in c["calibration"]["per_lambda"]}}
            for name, c in entry.get("candidates", {}).items()
        }
        out[f"repeats_{kind}"] = entry.get("repeats", 1)
        out[f"repeat_spearman_{kind}"] = entry.get("repeat_spearman")
        out[f"true_{kind}"] = entry["true"]
        out[f"raw_{kind}"] = entry["raw"]
    out["lambda"] = data["primary"]["lam"]
    out["estimator"] = data["primary"].get("estimator")
    out["subsets"] = data["kinds"][next(iter(data["kinds"]))]["subsets"]
    seconds = stage_seconds(folder)
    out["stage_seconds"] = seconds
    out["seconds"] = round(sum(seconds.get(s, 0.0) for s in ("data", "meta_init", "gradients", "verify", "calibrate")), 1)
    out["wall_this_invocation"] = round(wall, 1)
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
