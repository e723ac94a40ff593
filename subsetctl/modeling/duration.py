"""How long a model stage will take, roughly, before its first run (``plan``).

``plan`` gave a stage's time only from its last run; before a stage's first run it said
nothing, though meta-init and the fine-tunes can take hours. Their work is known from the
spec alone (steps, batch size, ``model.max_length``, the fine-tunes' count) and the model's
size from its files (:func:`~subsetctl.modeling.footprint.read_shape`, read without loading
anything), so a rough time follows: a fixed time for the stage (the libraries, loading the
model, writing results) and for each fine-tune or adapter, plus the arithmetic, about 6
floating-point operations per parameter and token of a training step (forward and
backward), 2 of a forward pass, at the rate the stages reached on the 2-core CPU they were
calibrated on. The gradients stage and evaluate work on rows the data stage decides: they
are estimated once it has prepared them (the gradients' rows, the target's test rows).

Calibration (this project's 2-core CPU, nothing else running): the tiny 2-layer Llama of the
tests, whose arithmetic is nothing, took 9.9 s for meta-init (4 steps) and 3.5 s for 2
fine-tunes of 2 steps: the fixed times (the finetune stage's split as 0.5 s and 1.5 s a
fine-tune); its gradients stage 1.5 s after meta-init, and its evaluate 5.0 s for 2 adapters,
with the load average at 1 to 4 (2026-12-05, the cores never free): taken as 1.2 s, and 1 s
and 1 s an adapter. The
packaged SmolLM2-135M quickstart took 40 s for meta-init (30 steps of 8 rows of at most 64
tokens, 135M parameters: 1.2e13 operations) and 89 s for 4 fine-tunes of 20 steps (README's
Measured): 4.0e11 operations a second, which puts the fine-tunes at 88 s, its gradients
(328 rows, a forward and backward pass each: 1.7e13 operations) at 44 s of the 43 measured,
and its evaluate (64 test rows through 4 adapters: each row's test loss, its prompt's
forward pass and 16 generated tokens, 1.0e13 operations) at 30 s of the 28 measured.

The CPU this process runs on scales it (:class:`Cpu`): the threads torch computes with (the
cores this process may use, fewer where ``OMP_NUM_THREADS`` or torch says so) each at half
the calibrated rate; where other processes keep the cores busy (the 1-minute load average
above the cores the threads leave), each thread's fair share of them slows every part, and
torch's threads spinning as they wait (two or more: one waits for none) slow its arithmetic
:data:`SPINNING_SLOWDOWN` times more: the quickstart's meta-init took 7 times its free time
with another process busy on its 2 cores, 2.6 times with ``OMP_WAIT_POLICY=PASSIVE``
(README's Measured), and its steps 23 to 46 times with the load average at 11 (its second
step took 30 to 61 s, 1.3 s free; 2026-12-05, the run stopped there), while the tiny model's
fixed times grew less (2 to 6 times).

What it assumes, which ``plan`` says: every row fills ``model.max_length`` (shorter rows
take less: batches are padded to their longest row), a CPU like the calibrated one (a GPU
takes far less), and the load as it is when ``plan`` runs (it comes and goes). A guide to
minutes against hours, not a forecast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: floating-point operations a second the training stages reached on the 2-core CPU they were
#: calibrated on (SmolLM2-135M's meta-init in the quickstart; see the module's docstring)
OPERATIONS_PER_SECOND = 4.0e11

#: the cores (torch threads) :data:`OPERATIONS_PER_SECOND` was reached with, free
CALIBRATED_CORES = 2

#: operations per parameter and token of a training step (forward and backward), and of a
#: forward pass alone
OPERATIONS_PER_PARAMETER_TOKEN = 6
FORWARD_OPERATIONS_PER_PARAMETER_TOKEN = 2

#: seconds meta-init takes besides its steps' arithmetic (libraries, loading the model, its
#: validation losses and checkpoints): the tiny model's, whose steps take no time
META_INIT_SECONDS = 9.0

#: seconds the finetune stage takes besides its fine-tunes, and each fine-tune besides its steps'
#: arithmetic (its model and adapter set up and saved): the tiny model's 3.5 s for 2 fine-tunes
FINETUNE_STAGE_SECONDS = 0.5
FINETUNE_SECONDS = 1.5

#: seconds the gradients stage takes besides its rows' arithmetic (the model and θ* loaded, the
#: store written): the tiny model's
GRADIENTS_SECONDS = 1.2

#: seconds evaluate takes besides its arithmetic, and each adapter besides its rows' (loaded,
#: its answers scored): the tiny model's
EVALUATE_STAGE_SECONDS = 1.0
EVALUATE_SECONDS = 1.0

#: the stages :func:`rough_time` estimates (gradients and evaluate once the data stage has
#: prepared their rows)
ESTIMATED_STAGES = ("meta_init", "gradients", "finetune", "evaluate")

#: the stages whose work is rows the data stage prepares: :func:`rough_seconds` needs their count
ROW_STAGES = ("gradients", "evaluate")

#: how many times slower than its fair share of busy cores a stage's arithmetic ran where torch's
#: waiting threads spin (no ``OMP_WAIT_POLICY=PASSIVE``): the quickstart's meta-init took 7 times its
#: time on free cores with another process busy on its 2 cores (a share of 1.5 to 2), its steps 23
#: to 46 times with the load average at 11 (a share of 6.5)
SPINNING_SLOWDOWN = 4.5


@dataclass(frozen=True)
class Cpu:
    """The CPU a rough time counts on: the ``threads`` torch computes with, the ``cores``
    this process may use, the 1-minute ``load`` average (None where it cannot be read) and
    whether ``OMP_WAIT_POLICY=PASSIVE`` keeps torch's waiting threads from spinning."""

    threads: int
    cores: int
    load: float | None
    passive: bool

    @property
    def share(self) -> float:
        """How many times slower than on free cores a thread runs: 1 while the load leaves
        the threads their cores, else their fair share of them ((threads + load) / cores)."""
        return max(1.0, (self.threads + (self.load or 0.0)) / self.cores)

    @property
    def spinning(self) -> bool:
        """Whether torch's threads spin on busy cores: two threads or more (one thread has no
        others to wait for: ``OMP_NUM_THREADS=1`` spins never), not ``passive``, and the load
        takes a core's worth or more of those the threads need."""
        return (self.threads > 1 and not self.passive
                and self.threads + (self.load or 0.0) >= self.cores + 1)

    @property
    def rate(self) -> float:
        """Floating-point operations a second: :data:`OPERATIONS_PER_SECOND` per
        :data:`CALIBRATED_CORES` threads, slowed by the :attr:`share` and, where they are
        :attr:`spinning`, :data:`SPINNING_SLOWDOWN`."""
        return (OPERATIONS_PER_SECOND * self.threads / CALIBRATED_CORES / self.share
                / (SPINNING_SLOWDOWN if self.spinning else 1))

    def text(self) -> str:
        """What the rough time assumed of this CPU, in words, for ``plan``: short, as plan
        says it for each stage not run yet ("2 CPU threads on 2 cores, busy now (load average
        11.0: its arithmetic 29 times slower; OMP_WAIT_POLICY=PASSIVE would make it less)")."""
        threads = f"{self.threads} CPU thread{'s' if self.threads != 1 else ''}"
        on = f"{threads} on {self.cores} core{'s' if self.cores != 1 else ''}"
        if self.load is None:
            return f"{on}, free (the load is not known; busy cores take several times longer)"
        if self.share == 1:
            return f"{on}, the cores free now (load average {self.load:.1f})"
        slower = self.share * (SPINNING_SLOWDOWN if self.spinning else 1)
        passive = "; OMP_WAIT_POLICY=PASSIVE would make it less" if self.spinning else ""
        times = f"{slower:.1f}" if slower < 10 else f"{slower:.0f}"  # (1.4, not "1 times", on a light load)
        return f"{on}, busy now (load average {self.load:.1f}: its arithmetic {times} times slower{passive})"


def this_cpu() -> Cpu:
    """The :class:`Cpu` of this process now: the cores it may use
    (:func:`~subsetctl.spec_checks.usable_cores`, its affinity), the threads torch uses where
    this process has loaded it (:func:`~subsetctl.pipeline.thread_counts`; loading it here
    would take seconds), else ``OMP_NUM_THREADS`` where set, else one a core; the load from
    ``os.getloadavg`` (runnable processes, this one among them: ``plan`` itself is short)."""
    from subsetctl.pipeline import thread_counts
    from subsetctl.spec_checks import usable_cores

    cores = usable_cores()[0]
    counts = thread_counts()
    threads = counts.get("torch", counts.get("OMP_NUM_THREADS", cores))
    try:
        threads = max(1, min(cores, int(threads)))
    except ValueError:  # (an OMP_NUM_THREADS such as "4,2", a list for nested regions)
        threads = cores
    try:
        load: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):  # (Windows)
        load = None
    passive = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"
    return Cpu(threads, cores, load, passive)


def _training_operations(params: int, steps: int, rows_per_step: int, max_length: int) -> float:
    """The arithmetic of ``steps`` training steps of ``rows_per_step`` rows of ``max_length``
    tokens on a model of ``params`` parameters, in floating-point operations."""
    return OPERATIONS_PER_PARAMETER_TOKEN * params * steps * rows_per_step * max_length


def rough_seconds(stage: str, spec: Any, params: int, rows: int | None = None, cpu: Cpu | None = None) -> float | None:
    """``stage``'s rough duration with ``spec`` on a model of ``params`` parameters and
    ``cpu`` (:func:`this_cpu` when None; see the module's docstring); None for a stage not
    estimated, or one of :data:`ROW_STAGES` without its ``rows`` (the gradients': the target's
    and sources' rows; evaluate's: the target's test rows). Finetune and evaluate count every
    selection and seed, as many as their work says "up to" (alike picks are trained once)."""
    from subsetctl.modeling.footprint import fine_tunes_at_most

    length = spec.model.max_length
    if stage in ROW_STAGES and rows is None:
        return None
    if stage == "meta_init":
        m = spec.meta_init
        fixed, work = META_INIT_SECONDS, _training_operations(params, m.steps, m.batch_size * m.grad_accum, length)
    elif stage == "finetune":
        f = spec.finetune
        fixed = FINETUNE_STAGE_SECONDS + fine_tunes_at_most(spec) * FINETUNE_SECONDS
        work = fine_tunes_at_most(spec) * _training_operations(params, f.steps, f.batch_size * f.grad_accum, length)
    elif stage == "gradients":  # a forward and backward pass a row (the projection is small beside it)
        fixed, work = GRADIENTS_SECONDS, _training_operations(params, 1, int(rows or 0), length)
    elif stage == "evaluate":  # each row's test loss and its prompt's forward pass, then the new tokens
        adapters = fine_tunes_at_most(spec)
        new = 0 if spec.model.kind == "classifier" else spec.evaluate.max_new_tokens
        fixed = EVALUATE_STAGE_SECONDS + adapters * EVALUATE_SECONDS
        work = FORWARD_OPERATIONS_PER_PARAMETER_TOKEN * params * adapters * int(rows or 0) * (2 * length + new)
    else:
        return None
    cpu = cpu or this_cpu()
    return fixed * cpu.share + work / cpu.rate


def rough_time(stage: str, spec: Any, spec_dir: Path, rows: int | None = None) -> tuple[float, str] | None:
    """``stage``'s rough duration (:func:`rough_seconds`, on :func:`this_cpu`) and what
    ``plan`` says of it, what it assumes; None for a stage not estimated, one of
    :data:`ROW_STAGES` without its ``rows`` (the data stage has not prepared them), or a model
    whose size cannot be read without loading it (as for the memory estimate: a hub id not
    cached, a packaged model not converted yet, a checkpoint with neither safetensors weights nor a
    config.json the size can be read from)."""
    from subsetctl.modeling.footprint import model_shape

    if stage not in ESTIMATED_STAGES or (stage in ROW_STAGES and rows is None):
        return None
    shape = model_shape(spec, spec_dir)
    cpu = this_cpu()
    seconds = rough_seconds(stage, spec, shape.params, rows, cpu) if shape is not None else None
    if seconds is None:
        return None
    counted = (f", the {rows:,} {'test rows' if stage == 'evaluate' else 'rows'} the data stage prepared last"
               if stage in ROW_STAGES else "")
    return seconds, (f"a rough guess before its first run: it assumes rows filling model.max_length{counted}, "
                     f"{cpu.text()}; shorter rows take less, a GPU far less")
