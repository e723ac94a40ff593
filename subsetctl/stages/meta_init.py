"""The meta_init stage: multitask LoRA training on target + all sources -> theta*.

The adapter with the best target validation loss (mean softplus(-f), the quantity the
estimator predicts) is kept. Checkpoints make a killed run resume with optimizer state
and data order. A best loss above the untrained adapter's (the base model's) is warned
about: a learning rate too high keeps the loss finite but leaves theta* worse than the start.
"""

from __future__ import annotations

from typing import Any

from subsetctl.pipeline import StageContext, library_versions
from subsetctl.project import Project, atomic_write_text, fingerprint
from subsetctl.spec import Spec
from subsetctl.spec.dumps import spec_json
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
                     resumes: bool = False, inputs: dict[str, Any] | None = None) -> str | None:
        """:meth:`work`, and the disk its checkpoints and adapter take where that matters
        (:func:`~subsetctl.stages.common.lora_disk_note`: the checkpoints of a run that stopped
        partway, which `run` resumes from, count as room)."""
        return self.work(spec, forced) + common.lora_disk_note(self.name, spec, project, resumes=resumes)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.modeling.lora import adapter_fingerprint, card_front_matter, count_trainable
        from subsetctl.modeling.packaged import shipped_model
        from subsetctl.modeling.train import evaluate_loss, kept_start_eval_loss, train_lora

        spec = ctx.spec
        common.check_lora_disk(ctx, self.name)  # (before the model loads: nothing begun that a full disk stops)
        common.seed_everything(spec.project.seed)
        target = spec.target.name
        *train_splits, validation = common.examples_of(
            ctx, [*((name, "train") for name in [target, *common.source_names(spec)]), (target, "validation")])
        train: list[dict[str, Any]] = [row for rows in train_splits for row in rows]
        # loading the model and the loss before training took minutes on busy cores with nothing said between
        # "▶ meta_init" and "meta_init: 0/N": each has progress of its own (a log's line at once, then every 30 s;
        # the model's, as every stage's that loads it: common.loading_the_model)
        model, tokenizer, info = common.lora_model(ctx, meta_init=True)
        config = common.train_config(
            spec.meta_init, spec, objective="ce", optimizer="adamw", seed=spec.project.seed,
            eval_every=spec.meta_init.eval_every, eval_objective="surrogate",
        )
        # the untrained adapter's (LoRA B is 0: the base model's), what training should improve on; a run that
        # stopped partway kept it with its checkpoints (a pass over every validation row, the same number again)
        start_val_loss = kept_start_eval_loss(ctx.out_dir, config, validation, spec.model.kind)
        if start_val_loss is None:  # (a first run, or checkpoints of an older subsetctl)
            with ctx.reporter.progress("meta_init: validation loss before training", total=len(validation)) as task:
                start_val_loss = evaluate_loss(model, tokenizer, validation, spec.model.kind, spec.model.max_length,
                                               spec.meta_init.batch_size, "surrogate", progress=task.update)
        with common.train_progress(ctx, "meta_init", spec.meta_init.steps, "val_surrogate") as progress:
            result = train_lora(
                model, tokenizer, train, config, ctx.out_dir, kind=spec.model.kind,
                eval_examples=validation, progress=progress, start_eval_loss=start_val_loss,
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
        summary = {
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
        # peft's blank model card said nothing of what made theta* (a folder README's "Project directory" says
        # loads as the fine-tuned adapters do): its card says it as theirs do (not an output: describes_only)
        card = result.adapter_dir / "README.md"  # (peft's front matter, which names the base model, kept)
        atomic_write_text(card, card_front_matter(card) + theta_card(
            spec, summary, library_versions(), fingerprint(spec_json(spec))))
        return summary


#: the sources θ*'s model card names (a spec of thousands lists the first ones)
CARD_SOURCES = 20


def theta_card(spec: Spec, summary: dict[str, Any], versions: Any, spec_digest: str | None) -> str:
    """θ*'s model card (``.subsetctl/meta_init/adapter/README.md``): what it was trained on
    (the target and every source, as the stage trains), with which settings and seed, the
    step whose weights were kept, and :func:`~subsetctl.stages.common.card_provenance`'s
    library versions and resolved spec digest, as each fine-tuned adapter's card says them:
    a θ* folder copied out of the project says what made it."""
    from subsetctl.report.markdown import md_code, md_title

    sources = common.source_names(spec)
    named = ", ".join(sources[:CARD_SOURCES]) + (", …" if len(sources) > CARD_SOURCES else "")
    together = "its one source" if len(sources) == 1 else f"all {len(sources)} sources"  # (not "1 source(s)")
    best, best_loss = summary.get("best_step"), summary.get("best_val_loss")
    kept = (f"- weights kept: step {best}'s, the best target validation loss ({best_loss:.4g}, the surrogate "
            "loss the estimates predict)\n" if best and isinstance(best_loss, float) else "")
    m = spec.meta_init
    load = ("Load with `peft.PeftModel.from_pretrained(base_model, this_folder)`, the base model built with "
            "`AutoModelForSequenceClassification` and the head's `num_labels` as report.md says."
            if spec.model.kind == "classifier" else "Load with `peft.PeftModel.from_pretrained(base_model, this_folder)`.")
    return (
        f"# subsetctl adapter: theta* (meta_init)\n\n"
        f"LoRA adapter (peft format) for {md_code(spec.model.source)}: subsetctl's meta-initialization, trained "
        f"on the target {md_code(spec.target.name)} and {together} together ({md_title(named)}): "
        "the point where the gradients stage takes the per-example gradients the estimates are made of.\n\n"
        f"- steps: {summary['steps']}, batch size: {m.batch_size}, lr: {m.lr}\n"
        f"- LoRA: r={spec.model.lora.r}, alpha={spec.model.lora.alpha}\n"
        f"{kept}"
        f"- project: {md_title(spec.project.name)}, seed {spec.project.seed}\n"
        f"{common.card_provenance(versions, spec_digest)}\n"
        f"{load} The project's report.md names the base model.\n"
    )


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
