"""Real fine-tuning of one subset from theta*, and the estimator built on it.

``verify`` and the ``true_finetune`` estimator share this: load theta*, fine-tune on
target + S for a fixed budget, then measure the quantity the estimator predicts, the mean
softplus(-f_j) over the target's validation rows. ``true_finetune`` is the conventional,
expensive method (one fine-tune per subset): use it for small checks and to measure
subsetctl's speedup.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from subsetctl.estimate.base import EstimateBatch, SubsetEstimator
from subsetctl.pipeline import StageContext
from subsetctl.registry import ESTIMATORS
from subsetctl.stages import common


class RealFinetuner:
    """Fine-tunes from theta* on target + S and returns the true validation loss."""

    def __init__(self, ctx: StageContext, kind: str = "ce", steps: int | None = None,
                 batch_size: int | None = None) -> None:
        spec = ctx.spec
        self.ctx = ctx
        self.kind = kind
        self.steps = steps or spec.verify.steps
        self.batch_size = batch_size or spec.verify.batch_size
        self.theta_star = ctx.upstream_dir("meta_init") / "adapter"
        self.model, self.tokenizer, _ = common.lora_model(ctx, adapter_dir=self.theta_star, trainable=True)
        names = common.source_names(spec)
        self.target_train, self.validation, *per_source = common.examples_of(
            ctx, [(spec.target.name, "train"), (spec.target.name, "validation"), *((name, "train") for name in names)])
        self.per_source = dict(zip(names, per_source))
        self.seconds: list[float] = []

    def run(self, subset: list[str], work_dir: Path, seed: int | None = None, objective: str | None = None,
            optimizer: str | None = None, lr: float | None = None) -> dict[str, Any]:
        """Fine-tune on target + ``subset``; returns true loss (None if diverged) and stats.

        ``seed`` sets the batch sequence (default: the project seed, as the estimate assumes).
        ``objective``, ``optimizer`` and ``lr`` default to those of ``self.kind`` (ce: token
        cross-entropy, AdamW, verify.lr_ce; surrogate: softplus(-f), SGD, verify.lr_surrogate);
        benchmarks/fidelity_variants.py mixes them."""
        from subsetctl.modeling.lora import load_adapter_weights
        from subsetctl.modeling.train import evaluate_loss, train_lora

        spec = self.ctx.spec
        start = time.perf_counter()
        load_adapter_weights(self.model, self.theta_star)
        train = self.target_train + [e for name in subset for e in self.per_source[name]]
        ce = self.kind == "ce"
        config = common.train_config(spec.meta_init, spec, objective=objective or ("ce" if ce else "surrogate"),
                                     optimizer=optimizer or ("adamw" if ce else "sgd"),
                                     seed=spec.project.seed if seed is None else seed)
        # one batch of verify.batch_size per step, no accumulation: the batch sequence
        # linear_sgd replays (meta_init.grad_accum is a memory setting of meta-init alone)
        config.steps, config.batch_size, config.grad_accum = self.steps, self.batch_size, 1
        config.lr = lr or (spec.verify.lr_ce if ce else spec.verify.lr_surrogate)
        config.checkpoint_every, config.weight_decay = 0, 0.0
        result = train_lora(self.model, self.tokenizer, train, config, work_dir, kind=spec.model.kind)
        true = float("nan")
        if not result.diverged:
            true = evaluate_loss(self.model, self.tokenizer, self.validation, spec.model.kind,
                                 spec.model.max_length, batch_size=16, objective="surrogate")
        shutil.rmtree(work_dir, ignore_errors=True)
        self.seconds.append(time.perf_counter() - start)
        finite = math.isfinite(true)
        return {
            "true": true if finite else None, "diverged": bool(result.diverged or not finite),
            "steps": result.steps, "seconds": self.seconds[-1],
            "first_loss": result.train_losses[0] if result.train_losses else None,
            "last_loss": result.train_losses[-1] if result.train_losses else None,
        }


@ESTIMATORS.register("true_finetune", "the conventional method: really fine-tune from theta* per subset (slow)")
class TrueFinetuneEstimator(SubsetEstimator):
    """L(S) measured by a real fine-tune per subset (verify's settings and first kind).

    Built from a stage context rather than from cached features (``needs_model``); runs in
    this process, one subset after another.
    """

    needs_model = True
    description = "real fine-tune per subset"

    def __init__(self, ctx: StageContext, kind: str | None = None) -> None:
        self._sources = common.source_names(ctx.spec)
        self.finetuner = RealFinetuner(ctx, kind or ctx.spec.verify.kinds[0])
        self.work = ctx.out_dir / "true_finetune"

    @property
    def sources(self) -> list[str]:
        return self._sources

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        masks = np.asarray(masks, dtype=bool)
        m = len(masks)
        loss = np.full(m, np.nan)
        for i, mask in enumerate(masks):
            subset = [s for s, keep in zip(self._sources, mask) if keep]
            out = self.finetuner.run(subset, self.work / f"run-{i}")
            if out["true"] is not None:
                loss[i] = out["true"]
        return EstimateBatch(loss=loss, w_norm=np.full(m, np.nan), iterations=np.zeros(m, dtype=int),
                             converged=np.isfinite(loss))
