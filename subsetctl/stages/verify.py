"""The verify stage: fine-tune from theta* for real on k random subsets and measure
the true value of what the estimator predicts (mean softplus(-f_j) over the target's
validation rows), for each kind of fine-tune the spec asks for:

- ``ce``: AdamW on the usual token cross-entropy (what users run);
- ``surrogate``: SGD on mean softplus(-f_i) (what the linearized estimate models).

Every kind uses the same subsets, the same seed (batch sequence) and the same steps.
Each finished run is recorded at once, so a killed stage resumes at the next run.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import numpy as np

from subsetctl.pipeline import Stage, StageContext
from subsetctl.project import atomic_write_json
from subsetctl.stages import common

RESULTS = "results.json"


def verify_subsets(sources: list[str], k: int, seed: int) -> list[list[str]]:
    """k distinct subsets: the empty one, all sources, then random subsets whose sizes
    cycle through 1..n-1 so that small and large subsets are both represented."""
    n = len(sources)
    rng = np.random.default_rng(seed)
    chosen: list[tuple[str, ...]] = [(), tuple(sources)]
    sizes = list(range(1, n)) or [0]
    attempts = 0
    while len(chosen) < k and attempts < 100 * k:
        size = sizes[(len(chosen) - 2) % len(sizes)]
        pick = tuple(sources[i] for i in sorted(rng.choice(n, size=size, replace=False)))
        if pick not in chosen:
            chosen.append(pick)
        attempts += 1
    return [list(s) for s in chosen[:k]]


class VerifyStage(Stage):
    name = "verify"
    description = "real fine-tunes of k random subsets from theta*"
    after = ("data", "meta_init")
    spec_keys = ("project.seed", "model", "meta_init.weight_decay", "verify")

    def enabled(self, spec: Any) -> bool:
        return bool(spec.verify.enabled)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.modeling.train import evaluate_loss
        from subsetctl.stages.real_finetune import RealFinetuner

        spec = ctx.spec
        v = spec.verify
        subsets = verify_subsets(common.source_names(spec), v.k, spec.project.seed)
        path = ctx.out_dir / RESULTS
        done: list[dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else []
        finished = {(r["kind"], r["index"]) for r in done}
        finetuner: RealFinetuner | None = None
        with ctx.reporter.progress("verify fine-tunes", total=len(subsets) * len(v.kinds)) as task:
            task.update(len(finished))
            for kind in v.kinds:
                for index, subset in enumerate(subsets):
                    if (kind, index) in finished:
                        continue
                    if finetuner is None:
                        finetuner = RealFinetuner(ctx, kind)
                    finetuner.kind = kind
                    out = finetuner.run(subset, ctx.out_dir / "work" / f"{kind}-{index}")
                    if out["diverged"]:
                        ctx.reporter.warn(f"verify: the {kind} fine-tune of subset {subset} diverged; it is excluded.")
                    done.append({"kind": kind, "index": index, "subset": subset, **out})
                    atomic_write_json(path, done)
                    task.update(len(done))
        shutil.rmtree(ctx.out_dir / "work", ignore_errors=True)
        if finetuner is None:
            finetuner = RealFinetuner(ctx, v.kinds[0])
        from subsetctl.modeling.lora import load_adapter_weights

        load_adapter_weights(finetuner.model, finetuner.theta_star)
        theta = evaluate_loss(finetuner.model, finetuner.tokenizer, finetuner.validation, spec.model.kind,
                              spec.model.max_length, batch_size=16, objective="surrogate")
        atomic_write_json(ctx.out_dir / "subsets.json", {"subsets": subsets, "theta_star_loss": theta})
        return {"k": len(subsets), "kinds": list(v.kinds), "runs": len(done),
                "diverged": sum(bool(r["diverged"]) for r in done), "theta_star_val_loss": theta,
                "seconds_per_finetune": float(np.mean([r["seconds"] for r in done])) if done else None}
