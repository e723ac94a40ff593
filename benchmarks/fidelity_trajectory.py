"""Does linearizing further along the cross-entropy fine-tune rank its outcomes better?

The estimate linearizes the model at theta*; the cross-entropy (AdamW) verify runs move
far from it in 15 steps. In the spirit of TracIn-CP / LESS (gradients at several
checkpoints), this script re-runs one real cross-entropy fine-tune from theta* (``all``:
target + every source; ``target``: the target alone), computes the per-example projected
gradients at its end point (same projector and d as the fidelity run's store), builds
``fast`` and ``linear_sgd`` on them for each lambda, and prints the Spearman of each
against the fidelity run's real fine-tunes of both kinds, alone and averaged (z-scores)
with the theta* estimate that calibration chose.

Run ``python benchmarks/fidelity.py`` first (this reads its project in
benchmarks/_work/fidelity, or ``--name``); each point costs one fine-tune (~1 min) and one gradient
pass (~2.5 min at d = 1024 on 2 cores), kept under benchmarks/_work/fidelity/trajectory
so a rerun only recomputes the figures. Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import fidelity_overrides, fidelity_project

LAMBDAS = (0.1, 1.0, 10.0, 100.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", nargs="*", default=["all", "target"], choices=["all", "target"])
    parser.add_argument("--name", default="fidelity", help="the fidelity run's work folder")
    args = parser.parse_args()

    from subsetctl.api import load_project
    from subsetctl.estimate.calibrate import spearman
    from subsetctl.pipeline import StageContext
    from subsetctl.reporter import RichReporter
    from subsetctl.stages import common
    from subsetctl.stages.features import load_features, make_estimator
    from subsetctl.stages.real_finetune import RealFinetuner
    from subsetctl.stages.verify import mean_over_repeats

    folder = fidelity_project(args.name)
    state = folder / ".subsetctl"
    runs = json.loads((state / "verify" / "results.json").read_text())
    subsets = json.loads((state / "verify" / "subsets.json").read_text())["subsets"]
    chosen = json.loads((state / "calibrate" / "calibration.json").read_text())["kinds"]["ce"]
    order = [chosen["subsets"].index(s) for s in subsets]
    theta_star_raw = np.array([chosen["raw"][i] for i in order])
    project, spec = load_project(folder, fidelity_overrides(folder))
    ctx = StageContext(spec=spec, project=project, reporter=RichReporter(), out_dir=state / "verify")
    truth = {kind: np.array([np.nan if r["true"] is None else r["true"] for r in mean_over_repeats(runs, kind)])
             for kind in spec.verify.kinds}

    start = time.perf_counter()
    out: dict[str, Any] = {"k": len(subsets), "theta_star_ce": round(spearman(theta_star_raw, truth["ce"]), 3)}
    finetuner = None
    for point in args.points:
        store_dir = folder / "trajectory" / f"store-{point}"
        if not _complete(store_dir):
            finetuner = finetuner or RealFinetuner(ctx, "ce")
            subset = common.source_names(spec) if point == "all" else []
            finetuner.run(subset, folder / "trajectory" / "work")  # leaves the model at the run's end point
            _gradient_store(ctx, finetuner, store_dir, state / "gradients" / "store")
        features = load_features(store_dir, spec)
        for name in ("fast", "linear_sgd"):
            for lam in LAMBDAS:
                estimator = make_estimator(spec, features, lam, name=name)
                raw = estimator.estimate(estimator.masks_for(subsets)).loss
                key = f"{point}_{name}@{lam:g}"
                for kind, y in truth.items():
                    out[f"{key}_vs_{kind}"] = round(spearman(raw, y), 3)
                out[f"{key}_plus_theta_star_vs_ce"] = round(spearman(_z(raw) + _z(theta_star_raw), truth["ce"]), 3)
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out))


def _gradient_store(ctx: Any, finetuner: Any, store_dir: Path, reference: Path) -> None:
    """Per-example projected gradients at the fine-tuner's current weights, with the
    projector (kind, seed, d) of the fidelity run's store at theta*."""
    import torch

    from subsetctl.gradients.engine import PerExampleGradientEngine
    from subsetctl.gradients.projectors import make_projector
    from subsetctl.gradients.store import GradientStore, compute_store
    from subsetctl.modeling.lora import count_trainable
    from subsetctl.stages.common import device_for
    from subsetctl.stages.gradients import BatchMaker, row_table

    spec = ctx.spec
    info = json.loads((reference / "info.json").read_text())
    model = finetuner.model
    model.eval()
    projector = make_projector(info["projector"], count_trainable(model), info["d"], info["seed"],
                               spec.gradients.memory_budget_mb)
    engine = PerExampleGradientEngine(model, projector, kind=spec.model.kind)
    rows, items = row_table(ctx)
    make_batch = BatchMaker(finetuner.tokenizer, items, spec.model.kind, spec.model.max_length, device_for(spec))
    keep = {k: v for k, v in info.items() if k not in ("n_rows", "d", "h", "adapter_fingerprint")}
    store = GradientStore.create(store_dir, rows, info["d"], info["h"], {**keep, "point": store_dir.name})
    with torch.enable_grad():
        compute_store(engine, make_batch, store, spec.gradients.batch_size)


def _complete(store_dir: Path) -> bool:
    return (store_dir / "written.npy").is_file() and bool(np.load(store_dir / "written.npy").all())


def _z(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std()


if __name__ == "__main__":
    main()
