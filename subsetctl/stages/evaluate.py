"""The evaluate stage: every fine-tuned adapter on the target's held-out test split:
the loss and the task metric (reasoning-gym's own scorer, exact match, or accuracy and
macro-F1), with mean ± std over seeds."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from subsetctl.pipeline import Stage, StageContext
from subsetctl.project import atomic_write_json
from subsetctl.stages import common


class EvaluateStage(Stage):
    name = "evaluate"
    description = "test-split metrics of every fine-tuned selection"
    after = ("data", "finetune")
    spec_keys = ("model", "evaluate")

    def enabled(self, spec: Any) -> bool:
        return bool(spec.finetune.enabled)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.modeling.evaluate import evaluate_model
        from subsetctl.modeling.lora import load_adapter_weights

        spec = ctx.spec
        ft = ctx.upstream_dir("finetune")
        labels = json.loads((ft / "labels.json").read_text())["labels"]
        test = common.examples(ctx, spec.target.name, "test")
        per_run_path = ctx.out_dir / "per_run.json"
        per_run: dict[str, Any] = json.loads(per_run_path.read_text()) if per_run_path.is_file() else {}
        keys = sorted({k for ks in labels.values() for k in ks})
        model = tokenizer = None
        with ctx.reporter.progress("evaluate", total=len(keys)) as task:
            task.update(sum(k in per_run for k in keys))
            for key in keys:
                if key in per_run:
                    continue
                if model is None:
                    model, tokenizer, _ = common.lora_model(ctx, trainable=False)
                load_adapter_weights(model, ft / "runs" / key / "adapter")
                result = evaluate_model(model, tokenizer, test, spec.model.kind, spec.model.max_length,
                                        max_new_tokens=spec.evaluate.max_new_tokens,
                                        batch_size=spec.evaluate.batch_size, metric=spec.evaluate.metric)
                per_run[key] = result
                atomic_write_json(per_run_path, per_run)
                task.update(sum(k in per_run for k in keys))
        warnings = sorted({w for r in per_run.values() for w in r.get("warnings", [])})
        for w in warnings:
            ctx.reporter.warn(w)
        table: dict[str, Any] = {}
        for label, ks in labels.items():
            scores = np.array([per_run[k]["score"] for k in ks], dtype=float)
            losses = np.array([per_run[k]["loss_ce"] for k in ks], dtype=float)
            table[label] = {
                "metric": per_run[ks[0]]["metric"],
                "score_mean": float(scores.mean()), "score_std": float(scores.std()) if len(ks) > 1 else None,
                "loss_mean": float(losses.mean()), "loss_std": float(losses.std()) if len(ks) > 1 else None,
                "seeds": len(ks), "n_test": per_run[ks[0]]["n"],
            }
        atomic_write_json(ctx.out_dir / "metrics.json", {"metrics": table, "warnings": warnings})
        return {"metrics": {k: round(v["score_mean"], 4) for k, v in table.items()}, "n_test": len(test)}
