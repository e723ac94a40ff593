"""Which difference between the two kinds of verify fine-tune breaks rank agreement?

The estimate models the surrogate fine-tune (SGD on mean softplus(-f_i)) and ranks it at
Spearman ~0.97, but ranks the cross-entropy fine-tune (AdamW on token cross-entropy) far
lower. The two runs differ in the optimizer *and* the objective. This script fine-tunes
the same verify subsets, from the same theta*, with the same batch sequence and steps, in
the two mixed configurations:

- ``surrogate_adamw``: the surrogate objective with AdamW at verify.lr_ce;
- ``ce_sgd``: the token cross-entropy with SGD (``--ce-sgd-lr``; SGD on token CE needs a
  larger step than on softplus(-f) to move the loss comparably);

and prints, per variant, its Spearman against each of verify's two kinds (mean over repeats) and
against the raw estimates of each candidate estimator at the lambda calibration chose for
it, per kind.

Run ``python benchmarks/fidelity.py`` first (this reads its project in
benchmarks/_work/fidelity, or ``--name``); prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from _common import fidelity_overrides, fidelity_project

VARIANTS = {"surrogate_adamw": ("surrogate", "adamw"), "ce_sgd": ("ce", "sgd")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="fidelity")
    parser.add_argument("--ce-sgd-lr", type=float, default=0.05)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()

    from subsetctl.api import load_project
    from subsetctl.estimate.calibrate import spearman
    from subsetctl.pipeline import StageContext
    from subsetctl.project import atomic_write_json
    from subsetctl.reporter import RichReporter
    from subsetctl.stages.real_finetune import RealFinetuner
    from subsetctl.stages.verify import mean_over_repeats

    folder = fidelity_project(args.name)
    state = folder / ".subsetctl"
    verify_runs = json.loads((state / "verify" / "results.json").read_text())
    subsets = json.loads((state / "verify" / "subsets.json").read_text())["subsets"]
    calibration = json.loads((state / "calibrate" / "calibration.json").read_text())
    project, spec = load_project(folder, fidelity_overrides(folder))
    ctx = StageContext(spec=spec, project=project, reporter=RichReporter(), out_dir=state / "verify")
    finetuner = RealFinetuner(ctx, "ce")

    cache_path = folder / "variants.json"
    done: dict[str, dict[str, Any]] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    start = time.perf_counter()
    for variant in args.variants:
        objective, optimizer = VARIANTS[variant]
        lr = spec.verify.lr_ce if optimizer == "adamw" else args.ce_sgd_lr
        key = f"{variant}@{lr}"
        runs = done.setdefault(key, {})
        for index, subset in enumerate(subsets):
            if str(index) in runs:
                continue
            result = finetuner.run(subset, folder / "variants-work", objective=objective, optimizer=optimizer, lr=lr)
            runs[str(index)] = result["true"]
            atomic_write_json(cache_path, done)
            print(f"{key} {index + 1}/{len(subsets)}: {runs[str(index)]}", flush=True)

    truth = {kind: _floats([r["true"] for r in mean_over_repeats(verify_runs, kind)]) for kind in spec.verify.kinds}
    estimates = {}  # each candidate estimator at the lambda calibration chose for it, per kind
    for kind, entry in calibration["kinds"].items():
        order = [entry["subsets"].index(s) for s in subsets]
        for name, candidate in entry["candidates"].items():
            estimates[f"{name}_for_{kind}"] = [candidate["raw"][i] for i in order]
    out: dict[str, Any] = {"k": len(subsets), "seconds": round(time.perf_counter() - start, 1)}
    for key, runs in done.items():
        values = _floats([runs.get(str(i)) for i in range(len(subsets))])
        for kind, real in truth.items():
            ok = np.isfinite(values) & np.isfinite(real)
            out[f"{key}_vs_{kind}_real"] = round(spearman(values[ok], real[ok]), 3)
        for kind, est in estimates.items():
            est = _floats(est)
            ok = np.isfinite(values) & np.isfinite(est)
            out[f"{key}_vs_{kind}_estimate"] = round(spearman(values[ok], est[ok]), 3)
    print(json.dumps(out))


def _floats(values: list[float | None]) -> np.ndarray:
    """Loss values as floats, NaN where a run diverged or is missing (None)."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


if __name__ == "__main__":
    main()
