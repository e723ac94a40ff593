"""The meta_init stage: multitask LoRA training on target + all sources -> theta*.

The adapter with the best target validation loss (mean softplus(-f), the quantity the
estimator predicts) is kept. Checkpoints make a killed run resume with optimizer state
and data order. A best loss above the untrained adapter's (the base model's) is warned
about: a learning rate too high keeps the loss finite but leaves theta* worse than the start.
"""

from __future__ import annotations

from typing import Any

from subsetctl.pipeline import StageContext
from subsetctl.project import Project
from subsetctl.spec import Spec
from subsetctl.stages import common


class MetaInitStage(common.ModelStage):
    name = "meta_init"
    scratch = ("checkpoints",)  # resumable training state
    # peft writes the base model's absolute path into these (the weights and the spec's LoRA
    # settings are what the stages after it use): a moved model folder with the same weights
    # must not re-run the gradients, verify's fine-tunes and the real-fine-tune estimates
    describes_only = ("adapter/adapter_config.json", "adapter/README.md")
    description = "multitask LoRA on target + all sources (theta*)"
    after = ("data",)
    reads_parts = common.TRAIN_SIDE  # no test rows: editing them re-runs it not
    memory_keys = ("meta_init.batch_size", "model.max_length")
    accumulation_keys = ("meta_init.batch_size", "meta_init.grad_accum")
    resumable_work = "its checkpoints, saved every meta_init.checkpoint_every steps"
    spec_keys = ("project.seed", "model", "meta_init")

    def work(self, spec: Spec, forced: bool = False) -> str:
        m = spec.meta_init
        return common.steps_work(m.steps, m.batch_size, m.grad_accum)

    def planned_work(self, spec: Spec, forced: bool, project: Project, rerun: set[str],
                     resumes: bool = False) -> str | None:
        """:meth:`work`, and the disk its checkpoints and adapter take where that matters
        (:func:`~subsetctl.stages.common.lora_disk_note`: the checkpoints of a run that stopped
        partway, which `run` resumes from, count as room)."""
        return self.work(spec, forced) + common.lora_disk_note(self.name, spec, project, resumes=resumes)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.modeling.lora import adapter_fingerprint, count_trainable
        from subsetctl.modeling.packaged import shipped_model
        from subsetctl.modeling.train import evaluate_loss, train_lora

        spec = ctx.spec
        common.check_lora_disk(ctx, self.name)  # (before the model loads: nothing begun that a full disk stops)
        common.seed_everything(spec.project.seed)
        train: list[dict[str, Any]] = []
        for name in [spec.target.name, *common.source_names(spec)]:
            train.extend(common.examples(ctx, name, "train"))
        validation = common.examples(ctx, spec.target.name, "validation")
        # loading the model and the loss before training took minutes on busy cores with nothing said between
        # "▶ meta_init" and "meta_init: 0/N": each has progress of its own (a log's line at once, then every 30 s)
        with ctx.reporter.progress("meta_init: loading the model", total=1) as task:
            model, tokenizer, info = common.lora_model(ctx, meta_init=True)
            task.update(1)
        config = common.train_config(
            spec.meta_init, spec, objective="ce", optimizer="adamw", seed=spec.project.seed,
            eval_every=spec.meta_init.eval_every, eval_objective="surrogate",
        )
        # the untrained adapter's (LoRA B is 0: the base model's), what training should improve on
        with ctx.reporter.progress("meta_init: validation loss before training", total=len(validation)) as task:
            start_val_loss = evaluate_loss(model, tokenizer, validation, spec.model.kind, spec.model.max_length,
                                           spec.meta_init.batch_size, "surrogate", progress=task.update)
        with common.train_progress(ctx, "meta_init", spec.meta_init.steps, "val_surrogate") as progress:
            result = train_lora(
                model, tokenizer, train, config, ctx.out_dir, kind=spec.model.kind,
                eval_examples=validation, progress=progress,
            )
        for notice in result.notices + ([result.truncation] if result.truncation else []):
            ctx.reporter.warn(f"meta_init: {notice}")  # truncation: said once here, for every source
        if result.resumed_from:
            ctx.reporter.info(f"meta_init resumed from step {result.resumed_from}")
        if result.diverged:
            from subsetctl.errors import UserError

            raise UserError(
                "meta_init diverged (the loss or an update became NaN or infinite). "
                + common.divergence_fix("meta_init", spec.meta_init.lr, spec.meta_init.weight_decay))
        if result.best_eval_loss is not None and (
                warning := worse_than_untrained_warning(start_val_loss, result.best_eval_loss, result.best_step,
                                                        spec.meta_init.lr, len(validation))):
            ctx.reporter.warn(warning)
        return {
            # a built-in packaged model's package version and weights' sha256 (report.json's input_files)
            "model": {**{k: v for k, v in info.items() if isinstance(v, (str, int, float, list))},
                      **shipped_model(spec.model.source, ctx.project.root)},
            "trainable_parameters": count_trainable(model),
            "train_examples": len(train),
            "steps": result.steps,
            "resumed_from": result.resumed_from,
            "best_step": result.best_step,
            "best_val_loss": result.best_eval_loss,
            "start_val_loss": start_val_loss,
            "first_train_loss": result.train_losses[0] if result.train_losses else None,
            "last_train_loss": result.train_losses[-1] if result.train_losses else None,
            "adapter": "adapter",
            "adapter_fingerprint": adapter_fingerprint(result.adapter_dir),
        }


#: a best validation loss this far (relative) above the untrained adapter's is training that
#: went wrong; closer, it is training that did not move the loss (noise on a few examples)
CLEARLY_WORSE = 0.01


def worse_than_untrained_warning(start: float, best: float, best_step: int | None, lr: float,
                                 n_validation: int) -> str | None:
    """The warning for a meta-init whose best checkpoint's target validation loss ``best``
    is above the untrained adapter's ``start`` (None when it is not): the gradients and
    fine-tunes then start from a theta* worse than the base model. Clearly worse (by more
    than :data:`CLEARLY_WORSE`) is the mark of a learning rate too high; barely worse means
    training did not move the loss, where lowering the learning rate is no sure remedy (the
    reference classifier spec, 40 steps on 55 target examples at meta_init.lr=0.001, was
    told to lower it: 0.6945 against 0.6922)."""
    if not best > start:
        return None
    said = (f"meta_init: training made the target's validation loss worse: {best:.4g} at its best step "
            f"({best_step}) against {start:.4g} before training, so the gradients and fine-tunes start from a "
            "theta* worse than the base model.")
    if best > start * (1 + CLEARLY_WORSE):
        return f"{said} A meta_init.lr too high (here {lr:g}) is the usual cause: lower it and run again."
    return (f"{said} It is less than {CLEARLY_WORSE:.0%} worse, so training barely moved it: more meta_init.steps "
            f"or another meta_init.lr (here {lr:g}) may help, or the target's {n_validation} validation examples are "
            "too few to show a change.")
