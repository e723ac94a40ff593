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
import math
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
    spec_keys = ("project.seed", "model", "verify")

    def enabled(self, spec: Any) -> bool:
        return bool(spec.verify.enabled)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.modeling.lora import load_adapter_weights
        from subsetctl.modeling.train import evaluate_loss, train_lora

        spec = ctx.spec
        v = spec.verify
        names = common.source_names(spec)
        subsets = verify_subsets(names, v.k, spec.project.seed)
        path = ctx.out_dir / RESULTS
        done: list[dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else []
        finished = {(r["kind"], r["index"]) for r in done}
        theta_star = ctx.upstream_dir("meta_init") / "adapter"
        model, tokenizer, _ = common.lora_model(ctx, adapter_dir=theta_star, trainable=True)
        target_train = common.examples(ctx, spec.target.name, "train")
        validation = common.examples(ctx, spec.target.name, "validation")
        per_source = {name: common.examples(ctx, name, "train") for name in names}
        total = len(subsets) * len(v.kinds)
        with ctx.reporter.progress("verify fine-tunes", total=total) as task:
            task.update(len(finished))
            for kind in v.kinds:
                for index, subset in enumerate(subsets):
                    if (kind, index) in finished:
                        continue
                    load_adapter_weights(model, theta_star)
                    train = target_train + [e for name in subset for e in per_source[name]]
                    config = common.train_config(
                        spec.meta_init, spec,
                        objective="ce" if kind == "ce" else "surrogate",
                        optimizer="adamw" if kind == "ce" else "sgd",
                        seed=spec.project.seed,
                    )
                    config.steps, config.batch_size = v.steps, v.batch_size
                    config.lr = v.lr_ce if kind == "ce" else v.lr_surrogate
                    config.checkpoint_every, config.weight_decay = 0, 0.0
                    run_dir = ctx.out_dir / "work" / f"{kind}-{index}"
                    result = train_lora(model, tokenizer, train, config, run_dir, kind=spec.model.kind)
                    true = float("nan")
                    if not result.diverged:
                        true = evaluate_loss(
                            model, tokenizer, validation, spec.model.kind, spec.model.max_length,
                            batch_size=16, objective="surrogate",
                        )
                    if not math.isfinite(true):
                        ctx.reporter.warn(f"verify: the {kind} fine-tune of subset {subset} diverged; it is excluded.")
                    done.append({
                        "kind": kind, "index": index, "subset": subset, "true": true if math.isfinite(true) else None,
                        "diverged": bool(result.diverged or not math.isfinite(true)), "steps": result.steps,
                        "first_loss": result.train_losses[0] if result.train_losses else None,
                        "last_loss": result.train_losses[-1] if result.train_losses else None,
                    })
                    atomic_write_json(path, done)
                    shutil.rmtree(run_dir, ignore_errors=True)
                    task.update(len(done))
        shutil.rmtree(ctx.out_dir / "work", ignore_errors=True)
        theta = evaluate_loss(
            *self._theta_star(ctx, model, theta_star, tokenizer), validation, spec.model.kind,
            spec.model.max_length, batch_size=16, objective="surrogate",
        )
        atomic_write_json(ctx.out_dir / "subsets.json", {"subsets": subsets, "theta_star_loss": theta})
        return {"k": len(subsets), "kinds": list(v.kinds), "runs": len(done),
                "diverged": sum(r["diverged"] for r in done), "theta_star_val_loss": theta}

    @staticmethod
    def _theta_star(ctx: StageContext, model: Any, adapter: Any, tokenizer: Any) -> tuple[Any, Any]:
        from subsetctl.modeling.lora import load_adapter_weights

        load_adapter_weights(model, adapter)
        return model, tokenizer
