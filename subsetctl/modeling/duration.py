"""How long a training stage will take, roughly, before its first run (``plan``).

``plan`` gave a stage's time only from its last run; before a stage's first run it said
nothing, though meta-init and the fine-tunes can take hours. Their work is known from the
spec alone (steps, batch size, ``model.max_length``, the fine-tunes' count) and the model's
size from its files (:func:`~subsetctl.modeling.footprint.read_shape`, read without loading
anything), so a rough time follows: a fixed time for the stage (the libraries, loading the
model, writing results) and for each fine-tune, plus the training arithmetic, about 6
floating-point operations per parameter and token (forward and backward), at the rate the
stages reached on the 2-core CPU they were calibrated on.

Calibration (this project's 2-core CPU, nothing else running): the tiny 2-layer Llama of the
tests, whose arithmetic is nothing, took 9.9 s for meta-init (4 steps) and 3.5 s for 2
fine-tunes of 2 steps: the fixed times (the finetune stage's split as 0.5 s and 1.5 s a fine-tune). The packaged SmolLM2-135M quickstart took 40 s for
meta-init (30 steps of 8 rows of at most 64 tokens, 135M parameters: 1.2e13 operations) and
89 s for 4 fine-tunes of 20 steps (README's Measured): 4.0e11 operations a second, which
puts the fine-tunes at 88 s. The stages not estimated (gradients, evaluate) depend on row
counts the data stage decides.

What it assumes, which ``plan`` says: every row fills ``model.max_length`` (shorter rows
take less: batches are padded to their longest row), the cores were free (busy ones made
meta-init up to 7 times slower), and a CPU like that one (a GPU, or more cores, take far
less). A guide to minutes against hours, not a forecast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: floating-point operations a second the training stages reached on the 2-core CPU they were
#: calibrated on (SmolLM2-135M's meta-init in the quickstart; see the module's docstring)
OPERATIONS_PER_SECOND = 4.0e11

#: operations per parameter and token of a training step (forward and backward)
OPERATIONS_PER_PARAMETER_TOKEN = 6

#: seconds meta-init takes besides its steps' arithmetic (libraries, loading the model, its
#: validation losses and checkpoints): the tiny model's, whose steps take no time
META_INIT_SECONDS = 9.0

#: seconds the finetune stage takes besides its fine-tunes, and each fine-tune besides its steps'
#: arithmetic (its model and adapter set up and saved): the tiny model's 3.5 s for 2 fine-tunes
FINETUNE_STAGE_SECONDS = 0.5
FINETUNE_SECONDS = 1.5

#: the stages :func:`rough_time` estimates
ESTIMATED_STAGES = ("meta_init", "finetune")


def _training_seconds(params: int, steps: int, rows_per_step: int, max_length: int) -> float:
    """The arithmetic of ``steps`` training steps of ``rows_per_step`` rows of ``max_length``
    tokens on a model of ``params`` parameters, in seconds at :data:`OPERATIONS_PER_SECOND`."""
    tokens = steps * rows_per_step * max_length
    return OPERATIONS_PER_PARAMETER_TOKEN * params * tokens / OPERATIONS_PER_SECOND


def rough_seconds(stage: str, spec: Any, params: int) -> float | None:
    """``stage``'s rough duration with ``spec`` on a model of ``params`` parameters (see the
    module's docstring); None for a stage not estimated. Finetune counts every selection
    and seed, as many as its work says "up to" (alike picks are trained once)."""
    length = spec.model.max_length
    if stage == "meta_init":
        m = spec.meta_init
        return META_INIT_SECONDS + _training_seconds(params, m.steps, m.batch_size * m.grad_accum, length)
    if stage == "finetune":
        from subsetctl.modeling.footprint import fine_tunes_at_most

        f = spec.finetune
        return FINETUNE_STAGE_SECONDS + fine_tunes_at_most(spec) * (FINETUNE_SECONDS + _training_seconds(
            params, f.steps, f.batch_size * f.grad_accum, length))
    return None


def rough_time(stage: str, spec: Any, spec_dir: Path) -> tuple[float, str] | None:
    """``stage``'s rough duration (:func:`rough_seconds`) and what ``plan`` says of it, what
    it assumes; None for a stage not estimated, or a model whose size cannot be read without
    loading it (as for the memory estimate: a hub id not cached, a packaged model not
    converted yet, a checkpoint without safetensors files)."""
    from subsetctl.modeling.footprint import model_shape

    if stage not in ESTIMATED_STAGES:
        return None
    shape = model_shape(spec, spec_dir)
    seconds = rough_seconds(stage, spec, shape.params) if shape is not None else None
    if seconds is None:
        return None
    return seconds, ("a rough guess before its first run: it assumes rows filling model.max_length and 2 free CPU "
                     "cores, as calibrated; shorter rows, a GPU or more cores take less, busy cores several times "
                     "more")
