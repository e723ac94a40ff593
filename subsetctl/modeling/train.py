"""One resumable LoRA trainer, plus the no-grad loss and f evaluators built on it.

Used by meta-initialization (multitask LoRA on target + all sources), verify (real
fine-tunes from theta* on k subsets) and the final fine-tune. Three properties matter:

- **Deterministic data order.** :func:`batch_order` precomputes every step's example
  indices from ``(n, steps, batch_size, seed)`` alone, so two subsets of the same size
  see the same batch positions (verify compares subsets, not data orders).
- **Exact resume.** Checkpoints (adapter + optimizer + RNG + step + history) are written
  atomically to ``out_dir/checkpoints/step-K/``; a killed run resumes from the last one
  and ends with the same weights as an uninterrupted run. Only the last and the best
  checkpoints are kept.
- **Best by validation.** With ``eval_examples`` the adapter saved to ``out_dir/adapter``
  is the one with the lowest validation loss (surrogate ``softplus(-f)`` or CE).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from subsetctl.errors import UserError
from subsetctl.modeling.encoding import TruncationCounts, encode_rows, make_batch, row_context
from subsetctl.modeling.lora import load_adapter_weights, save_adapter, write_adapter
from subsetctl.modeling.modes import in_eval_mode
from subsetctl.modeling.outputs import causal_lm_scores, classifier_f, surrogate_loss
from subsetctl.project import remove_tree, replace_dir
from subsetctl.text_rows import TEXT_KEY, is_text_row

Objective = Literal["ce", "surrogate"]
TrainProgress = Callable[[int, int, "float | None", "float | None"], None]

STATE_FILE = "trainer_state.json"
#: the state file's key of the loss before training (:func:`kept_start_eval_loss`)
START_EVAL = "start_eval"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"


@dataclass
class TrainConfig:
    """Settings of one LoRA fine-tune.

    A *step* is one optimizer update over ``batch_size * grad_accum`` examples. Give
    ``steps`` or ``epochs`` (passes over the training examples, rounded up to steps).
    ``checkpoint_every`` / ``eval_every`` of 0 mean "only at the end". ``warmup`` is a
    number of steps of linear learning-rate warmup (constant afterwards).
    ``eval_objective`` defaults to ``objective``.
    """

    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    optimizer: Literal["adamw", "sgd"] = "adamw"
    objective: Objective = "ce"
    max_length: int = 256
    seed: int = 0
    checkpoint_every: int = 0
    eval_every: int = 0
    weight_decay: float = 0.0
    warmup: int = 0
    eval_objective: Objective | None = None
    eval_batch_size: int | None = None
    max_grad_norm: float | None = None

    def validate(self) -> None:
        """Raise a UserError naming the first bad setting."""
        if (self.steps is None) == (self.epochs is None):
            raise UserError("Training needs exactly one of 'steps' or 'epochs'; set one of them.")
        if self.steps is not None and self.steps < 1:
            raise UserError(f"Training steps must be at least 1 (got {self.steps}).")
        if self.epochs is not None and self.epochs <= 0:
            raise UserError(f"Training epochs must be positive (got {self.epochs}).")
        for name in ("batch_size", "grad_accum", "max_length"):
            if getattr(self, name) < 1:
                raise UserError(f"Training {name} must be at least 1 (got {getattr(self, name)}).")
        for name in ("checkpoint_every", "eval_every", "warmup"):
            if getattr(self, name) < 0:
                raise UserError(f"Training {name} must be 0 or more (got {getattr(self, name)}).")
        if self.optimizer not in ("adamw", "sgd"):
            raise UserError(f"Unknown optimizer {self.optimizer!r}; use 'adamw' or 'sgd'.")
        for name in ("objective", "eval_objective"):
            value = getattr(self, name)
            if value is not None and value not in ("ce", "surrogate"):
                raise UserError(f"Unknown {name} {value!r}; use 'ce' or 'surrogate'.")
        if not self.lr > 0:
            raise UserError(f"Learning rate must be positive (got {self.lr}).")

    def total_steps(self, n: int) -> int:
        """Number of optimizer steps for ``n`` training examples."""
        if self.steps is not None:
            return int(self.steps)
        per_step = self.batch_size * self.grad_accum
        return max(1, math.ceil(float(self.epochs) * n / per_step))  # type: ignore[arg-type]

    def lr_at(self, step: int) -> float:
        """Learning rate for (1-based) ``step``: linear warmup, then constant."""
        if self.warmup and step <= self.warmup:
            return self.lr * step / self.warmup
        return self.lr


@dataclass
class TrainResult:
    """What :func:`train_lora` did. ``best_step``/``best_eval_loss`` refer to the saved
    adapter (the last step when there is no validation set)."""

    steps: int
    best_step: int
    best_eval_loss: float | None
    train_losses: list[float]
    adapter_dir: Path
    seconds: float
    diverged: bool
    resumed_from: int = 0
    eval_losses: dict[int, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # e.g. a damaged checkpoint skipped on resume
    truncation: str | None = None  # what max_length cut, by source (TruncationCounts.notice)


# --------------------------------------------------------------------------- data order


def batch_order(n: int, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """Example indices of every step, from ``(n, steps, batch_size, seed)`` only.

    The stream is a concatenation of seeded permutations of ``range(n)`` cut into
    consecutive batches, so each example is seen equally often; a batch may straddle two
    passes (and repeat an example when ``n < batch_size``).
    """
    return batch_order_array(n, steps, batch_size, seed).tolist()


def batch_order_array(n: int, steps: int, batch_size: int, seed: int) -> np.ndarray:
    """:func:`batch_order` as a (steps, batch_size) int64 array (for simulating many
    fine-tunes without building Python lists of every permutation)."""
    if n < 1:
        raise UserError("There are no training examples; the selected sources are empty.")
    rng = np.random.default_rng(seed)
    needed = steps * batch_size
    passes = [rng.permutation(n) for _ in range(-(-needed // n))]
    return np.concatenate(passes)[:needed].reshape(steps, batch_size)


# --------------------------------------------------------------------------- batches


def _check_kind(kind: str) -> None:
    if kind not in ("causal-lm", "classifier"):
        raise UserError(f"Unknown model kind {kind!r}; use 'causal-lm' or 'classifier'.")


def _per_example(model: Any, batch: dict[str, torch.Tensor], kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(f, ce) per example for one batch, with gradients if enabled."""
    if kind == "causal-lm":
        scores = causal_lm_scores(model, batch)
        return scores.f, scores.ce
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    f = classifier_f(logits, batch["labels"])
    ce = F.cross_entropy(logits.float(), batch["labels"], reduction="none")
    return f, ce


def _model_device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def per_example_outputs(
    model: Any, tokenizer: Any, examples: Sequence[dict], kind: str, max_length: int, batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """f and token/class cross-entropy per example, no gradients, in input order; NaN for
    a causal-LM example with no token to score (a text of one token with no BOS before it
    and no EOS after it): it has no loss, where a loss of 0 lowered the mean. ``scored``
    says which examples have one, from their encoding: a loss that is NaN for another
    reason (a diverged model's) is not taken for no token to score.

    Examples are batched by length to waste little padding; the model's train/eval mode
    is restored afterwards. ``progress`` gets the count of examples done after each batch.
    """
    _check_kind(kind)
    if not examples:
        return {"f": np.zeros(0), "ce": np.zeros(0), "scored": np.zeros(0, dtype=bool)}
    items = encode_rows(tokenizer, examples, kind, max_length)
    lengths = [len(it.input_ids) if kind == "causal-lm" else len(str(it["prompt"])) for it in items]
    order = np.argsort(lengths, kind="stable")
    f_out = np.zeros(len(items))
    ce_out = np.zeros(len(items))
    device = _model_device(model)
    with in_eval_mode(model), torch.inference_mode():
        for start in range(0, len(items), max(1, batch_size)):
            idx = order[start : start + max(1, batch_size)]
            batch = _to(make_batch(tokenizer, [items[i] for i in idx], kind, max_length), device)
            f, ce = _per_example(model, batch, kind)
            f_out[idx] = f.double().cpu().numpy()
            ce_out[idx] = ce.double().cpu().numpy()
            if progress is not None:
                progress(min(start + max(1, batch_size), len(items)))
    scored = np.array([any(it.response_mask) for it in items]) if kind == "causal-lm" else np.ones(len(items), bool)
    f_out[~scored] = ce_out[~scored] = np.nan
    return {"f": f_out, "ce": ce_out, "scored": scored}


def compute_f(
    model: Any, tokenizer: Any, examples: Sequence[dict], kind: str, max_length: int, batch_size: int = 8
) -> np.ndarray:
    """f_i for every example (:mod:`subsetctl.modeling.outputs`), no gradients, float64."""
    return per_example_outputs(model, tokenizer, examples, kind, max_length, batch_size)["f"]


def evaluate_loss(
    model: Any,
    tokenizer: Any,
    examples: Sequence[dict],
    kind: str,
    max_length: int,
    batch_size: int = 8,
    objective: Objective = "surrogate",
    progress: Callable[[int], None] | None = None,
) -> float:
    """Mean loss over ``examples``: ``softplus(-f)`` ("surrogate", what the estimator
    predicts and verify measures) or the cross-entropy ("ce"). ``progress`` gets the count
    of examples done after each batch (:func:`per_example_outputs`)."""
    if objective not in ("ce", "surrogate"):
        raise UserError(f"Unknown objective {objective!r}; use 'ce' or 'surrogate'.")
    if not examples:
        raise UserError("Cannot evaluate a loss on zero examples; the validation split is empty.")
    out = per_example_outputs(model, tokenizer, examples, kind, max_length, batch_size, progress=progress)
    scored = out["scored"]  # (a text of one token, no BOS, no EOS, has no loss: left out)
    if not scored.any():
        raise UserError(f"None of the {len(examples)} examples the loss is taken over has a token to score: each is "
                        "a text of one token, with no BOS token before it and no EOS token after it. Give the target "
                        "longer texts, or use a tokenizer with an EOS token.")
    if objective == "surrogate":
        return float(surrogate_loss(torch.from_numpy(out["f"][scored])).mean())
    return float(out["ce"][scored].mean())


# --------------------------------------------------------------------------- checkpoints


def _trainable(model: Any) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _make_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _run_fingerprint(
    config: TrainConfig, examples: Sequence[dict], eval_examples: Sequence[dict] | None, kind: str
) -> str:
    """Hash of everything that must match for a checkpoint to be resumable."""
    digest = hashlib.sha256()
    settings = asdict(config)
    settings.pop("checkpoint_every")  # how often state is saved does not change the result
    digest.update(json.dumps({"config": settings, "kind": kind}, sort_keys=True, default=str).encode())
    for group in (examples, eval_examples or []):
        digest.update(b"|group|")
        _digest_rows(digest, group, kind)
    return digest.hexdigest()


def _digest_rows(digest: Any, rows: Sequence[dict], kind: str) -> None:
    """Add to ``digest`` what of each row the model reads (its text, label, chat context)."""
    for ex in rows:
        key = [ex.get("source"), ex.get("row"), ex.get("prompt"), ex.get("response"), ex.get("label")]
        if kind == "causal-lm" and (context := row_context(ex)) is not None:
            key.append(context)  # (rendered before the prompt; rows without one fingerprint as before)
        if kind == "causal-lm" and is_text_row(ex):
            key.append(TEXT_KEY)  # (tokenized with no template; other rows fingerprint as before)
        digest.update(json.dumps(key, default=str).encode())


def _start_eval_key(config: TrainConfig, eval_examples: Sequence[dict], kind: str) -> str:
    """Hash of what the loss over ``eval_examples`` before training depends on besides the
    model: the rows, and the settings train_lora's evaluations take them with. (Not the whole
    run's :func:`_run_fingerprint`: that hashes every training row, a second time.)"""
    digest = hashlib.sha256()
    settings = {"kind": kind, "max_length": config.max_length,
                "batch_size": config.eval_batch_size or config.batch_size,
                "objective": config.eval_objective or config.objective}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    _digest_rows(digest, eval_examples, kind)
    return digest.hexdigest()


def kept_start_eval_loss(out_dir: str | Path, config: TrainConfig, eval_examples: Sequence[dict],
                         kind: str = "causal-lm") -> float | None:
    """The loss over ``eval_examples`` before training that :func:`train_lora` (its
    ``start_eval_loss``) kept in ``out_dir``'s checkpoints for the same rows and evaluation
    settings, as the newest checkpoint that holds one says it; None where none does (no
    checkpoint, or those of an older subsetctl). A run that stopped partway resumes without
    a pass over those rows to find it again. Like a resumed run, it takes the model to be the
    one the checkpoints were trained from."""
    key = _start_eval_key(config, eval_examples, kind)
    for _, folder in reversed(_step_dirs(Path(out_dir) / "checkpoints")):
        try:
            kept = json.loads((folder / STATE_FILE).read_text()).get(START_EVAL)
        except (OSError, ValueError, AttributeError):  # unreadable, or not a JSON object: train_lora says so
            continue
        if isinstance(kept, dict) and kept.get("key") == key and isinstance(kept.get("loss"), (int, float)):
            return float(kept["loss"])
    return None


def _read_latest_checkpoint(
    existing: list[tuple[int, Path]], fingerprint: str, out_dir: Path, notices: list[str]
) -> tuple[Path, dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    """The newest checkpoint that reads whole: ``(folder, state, optimizer state, rng)``,
    every file read before anything is applied, so a damaged one (a power loss, a full
    disk) costs the steps since the one before it, not an error on every run. Damaged ones
    are deleted with a notice; None when none is left (training starts over). Checkpoints
    of another run are an error."""
    from safetensors.torch import load_file

    for step, folder in reversed(existing):
        try:
            state = json.loads((folder / STATE_FILE).read_text())
            if state.get("fingerprint") != fingerprint:
                raise UserError(
                    f"{out_dir} holds checkpoints of a different training run (other settings or "
                    "examples). Delete that folder or train into another one."
                )
            load_file(str(folder / "adapter" / "adapter_model.safetensors"))  # readable before it is applied
            json.loads((folder / "adapter" / "adapter_config.json").read_text())
            optimizer_state = torch.load(folder / OPTIMIZER_FILE, weights_only=True)
            rng = torch.load(folder / RNG_FILE, weights_only=True)
            rng["cpu"], state["best_eval_loss"]  # present before anything is applied
            int(state["step"]), list(state["train_losses"]), dict(state["eval_losses"]), int(state["best_step"])
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - any damage (EOFError on an empty file, IndexError, ...)
            notices.append(f"checkpoint {folder} is damaged ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:120]}); it is deleted and training resumes from the "
                           "one before it, or starts over")
            shutil.rmtree(folder, ignore_errors=True)
            continue
        return folder, state, optimizer_state, rng
    return None


def _step_dirs(ckpt_root: Path) -> list[tuple[int, Path]]:
    if not ckpt_root.is_dir():
        return []
    found = []
    for p in ckpt_root.iterdir():
        if p.is_dir() and p.name.startswith("step-") and (p / STATE_FILE).is_file():
            try:
                found.append((int(p.name[5:]), p))
            except ValueError:
                continue
    return sorted(found)


def _torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` through memory, so that a full disk is the OSError (ENOSPC)
    that says so: torch's own file writer reports it as a RuntimeError ("unexpected pos
    576 vs 534"), an internal error. A LoRA optimizer state is small."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    path.write_bytes(buffer.getbuffer())


def _write_checkpoint(
    ckpt_root: Path, step: int, model: Any, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> Path:
    """Write ``step-K`` atomically: everything goes into a temp folder renamed at the end;
    the state file (the commit point) is written last inside it."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{step}"
    tmp = ckpt_root / f".step-{step}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        write_adapter(model, tmp / "adapter")
        _torch_save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        _torch_save(rng, tmp / RNG_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _prune(ckpt_root: Path, keep: set[int]) -> None:
    for step, path in _step_dirs(ckpt_root):
        if step not in keep:
            shutil.rmtree(path, ignore_errors=True)
    for p in ckpt_root.iterdir() if ckpt_root.is_dir() else []:
        if p.name.startswith(".step-"):  # leftovers of a killed write
            shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------- trainer


@dataclass
class _History:
    """What a fine-tune has done so far: written into each checkpoint's state file, and
    read back as the start of a resumed run."""

    step: int = 0
    train_losses: list[float] = field(default_factory=list)
    eval_losses: dict[int, float] = field(default_factory=dict)
    best_step: int = 0
    best_loss: float = math.inf

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _History:
        return cls(
            step=int(state["step"]),
            train_losses=[float(x) for x in state["train_losses"]],
            eval_losses={int(k): float(v) for k, v in state["eval_losses"].items()},
            best_step=int(state["best_step"]),
            best_loss=math.inf if state["best_eval_loss"] is None else float(state["best_eval_loss"]),
        )

    def state(self, fingerprint: str, total: int, per_step: int) -> dict[str, Any]:
        """The checkpoint state file's content after ``self.step`` steps."""
        return {
            "fingerprint": fingerprint,
            "step": self.step,
            "total_steps": total,
            "data_position": self.step * per_step,
            "train_losses": self.train_losses,
            "eval_losses": {str(k): v for k, v in self.eval_losses.items()},
            "best_step": self.best_step,
            "best_eval_loss": None if math.isinf(self.best_loss) else self.best_loss,
        }


def _encode_drawn(
    tokenizer: Any, train_examples: Sequence[dict], order: list[list[int]], kind: str, config: TrainConfig
) -> tuple[dict[int, Any], Any]:
    """Tokenize only the rows the batches draw (meta-init's few steps over a million source
    rows tokenized all of them first, about 27 KB each, 24 GB, to use 32): index -> encoded
    row, and the notice of how many of them were cut to ``max_length`` (or None)."""
    drawn = sorted({i for step in order for i in step})
    drawn_rows = [train_examples[i] for i in drawn]
    items = dict(zip(drawn, encode_rows(tokenizer, drawn_rows, kind, config.max_length)))
    counts = TruncationCounts()
    if kind == "causal-lm":
        counts.add([items[i] for i in drawn], drawn_rows)
    else:
        counts.add_classifier(tokenizer, drawn_rows, config.max_length)
    return items, counts.notice(config.max_length, f"examples the {len(order)} training steps drew")


def _restore_or_start(
    model: Any, optimizer: torch.optim.Optimizer, out_dir: Path, fingerprint: str, resume: bool, seed: int,
    notices: list[str],
) -> _History:
    """The history to continue from: the last usable checkpoint of this very run (its
    adapter, optimizer and RNG states loaded), or a fresh start (other checkpoints
    deleted, the dropout stream seeded)."""
    ckpt_root = out_dir / "checkpoints"
    existing = _step_dirs(ckpt_root)
    restored = _read_latest_checkpoint(existing, fingerprint, out_dir, notices) if existing and resume else None
    if restored is None:
        if existing:
            remove_tree(ckpt_root)
        torch.manual_seed(seed)  # dropout stream; restored from checkpoints on resume
        return _History()
    last_dir, state, optimizer_state, rng = restored
    load_adapter_weights(model, last_dir / "adapter")
    optimizer.load_state_dict(optimizer_state)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return _History.from_state(state)


def _optimizer_step(
    model: Any, tokenizer: Any, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter],
    batch_rows: list[Any], config: TrainConfig, kind: str, device: torch.device,
) -> float | None:
    """One update over ``batch_rows`` (``grad_accum`` micro-batches of encoded rows):
    the mean training loss (of the examples with a token to score: one with none, a text of
    one token with no BOS and no EOS, diluted the update as a loss of 0 or log 2 that moves
    nothing), or None when a micro-batch's loss is not finite (then no update is applied) or the update cannot be held in the weights' dtype (a learning rate of
    about 1e37 or more: torch refuses the step, and the trainer restores a saved adapter)."""
    optimizer.zero_grad(set_to_none=True)
    step_loss = 0.0
    for micro in range(config.grad_accum):
        chunk = batch_rows[micro * config.batch_size : (micro + 1) * config.batch_size]
        batch = _to(make_batch(tokenizer, chunk, kind, config.max_length), device)
        f, ce = _per_example(model, batch, kind)
        per = surrogate_loss(f) if config.objective == "surrogate" else ce
        if kind == "causal-lm" and not (scored := batch["response_mask"][:, 1:].any(dim=1)).all():
            per = per[scored]  # (a text of one token, no BOS, no EOS: nothing to learn, left out of the mean)
            if not len(per):
                continue
        loss = per.mean() / config.grad_accum
        if not torch.isfinite(loss):
            return None
        loss.backward()
        step_loss += float(loss.detach())
    if config.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    try:
        optimizer.step()
    except RuntimeError as exc:  # "value cannot be converted to type float without overflow"
        if "overflow" not in str(exc):
            raise
        return None
    return step_loss


def _save_final_adapter(
    model: Any, params: list[torch.nn.Parameter], start_weights: list[torch.Tensor], out_dir: Path,
    history: _History, total: int, by_eval: bool, diverged: bool,
) -> int:
    """Load into ``model`` and copy to ``out_dir/adapter`` the adapter a fine-tune ends
    with: the best checkpoint by validation (``by_eval``), else the last one (the one
    before a divergence), else, diverged before any checkpoint, the starting weights
    (never non-finite ones). Returns the step it is from (0: the start)."""
    ckpt_root = out_dir / "checkpoints"
    last = _step_dirs(ckpt_root)
    if by_eval and history.best_step:
        chosen = ckpt_root / f"step-{history.best_step}"
    elif diverged:
        chosen = last[-1][1] if last else None
    else:
        chosen = ckpt_root / f"step-{total}"
    if chosen is None or not chosen.is_dir():
        with torch.no_grad():
            for p, w in zip(params, start_weights):
                p.copy_(w)
        save_adapter(model, out_dir / "adapter")
        return 0
    load_adapter_weights(model, chosen / "adapter")
    tmp = out_dir / f".adapter.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(chosen / "adapter", tmp)
        replace_dir(tmp, out_dir / "adapter")
    finally:  # interrupted (Ctrl-C, SIGTERM) while copying: no half-copied adapter left behind
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return history.best_step if (by_eval and history.best_step) else int(chosen.name[5:])


def train_lora(
    model: Any,
    tokenizer: Any,
    train_examples: Sequence[dict],
    config: TrainConfig,
    out_dir: str | Path,
    kind: str = "causal-lm",
    eval_examples: Sequence[dict] | None = None,
    progress: TrainProgress | None = None,
    resume: bool = True,
    start_eval_loss: float | None = None,
) -> TrainResult:
    """Fine-tune the trainable (LoRA) parameters of a peft ``model``; resumable.

    Args:
        model: a peft model (see :func:`subsetctl.modeling.lora.apply_lora`, then
            :func:`~subsetctl.modeling.lora.load_adapter_weights` to start from a saved
            adapter); its current adapter weights are the start.
        tokenizer: the model's tokenizer (with a pad token).
        train_examples: rows with ``prompt`` and ``response`` (causal LM) or ``label``.
        config: see :class:`TrainConfig`.
        out_dir: receives ``checkpoints/step-K/`` and the final ``adapter/``.
        kind: "causal-lm" or "classifier".
        eval_examples: validation rows; the saved adapter is the best on these.
        progress: called after every step with ``(step, total, loss, eval_loss | None)``, and
            once before the first step of a resumed run with ``(start, total, None, None)``.
        resume: continue from the last checkpoint in ``out_dir`` when it belongs to the
            same run (same config and examples); a checkpoint of another run is an error.
        start_eval_loss: the loss over ``eval_examples`` before training, as the caller
            measured it with this config's evaluation settings: kept in every checkpoint, for
            :func:`kept_start_eval_loss` to give a resumed run.

    Returns:
        A :class:`TrainResult`. On return the model holds the saved (best) adapter weights.
        A non-finite loss, or an update the weights' dtype cannot hold, stops training with
        ``diverged=True`` (the saved adapter is never a non-finite one).
    """
    from peft import PeftModel

    t0 = time.perf_counter()
    config.validate()
    _check_kind(kind)
    if not isinstance(model, PeftModel):
        raise UserError("train_lora needs a LoRA (peft) model; wrap the base model with apply_lora first.")
    out_dir = Path(out_dir)
    ckpt_root = out_dir / "checkpoints"
    eval_examples = list(eval_examples) if eval_examples else None
    eval_objective = config.eval_objective or config.objective
    eval_bs = config.eval_batch_size or config.batch_size

    total = config.total_steps(len(train_examples))
    per_step = config.batch_size * config.grad_accum
    order = batch_order(len(train_examples), total, per_step, config.seed)
    items, truncation = _encode_drawn(tokenizer, train_examples, order, kind, config)
    fingerprint = _run_fingerprint(config, train_examples, eval_examples, kind)
    start_eval_state = ({START_EVAL: {"key": _start_eval_key(config, eval_examples, kind), "loss": start_eval_loss}}
                        if start_eval_loss is not None and eval_examples else {})

    params = _trainable(model)
    if not params:
        raise UserError("The model has no trainable parameters; apply LoRA (trainable=True) before training.")
    optimizer = _make_optimizer(params, config)
    device = _model_device(model)
    notices: list[str] = []
    history = _restore_or_start(model, optimizer, out_dir, fingerprint, resume, config.seed, notices)
    start_step = history.step

    # weights to fall back on if the loss diverges before any checkpoint exists
    start_weights = [p.detach().clone() for p in params]
    diverged = False
    model.train()
    if progress is not None and start_step:  # a resumed run's bar starts where it resumes, not at 0
        progress(start_step, total, None, None)
    for step in range(start_step + 1, total + 1):
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        step_loss = _optimizer_step(
            model, tokenizer, optimizer, params, [items[i] for i in order[step - 1]], config, kind, device
        )
        if step_loss is None:
            diverged = True
            break
        history.step = step
        history.train_losses.append(step_loss)

        eval_loss = None
        is_last = step == total
        if eval_examples and (is_last or (config.eval_every and step % config.eval_every == 0)):
            eval_loss = evaluate_loss(
                model, tokenizer, eval_examples, kind, config.max_length, eval_bs, eval_objective
            )
            history.eval_losses[step] = eval_loss
            if not math.isfinite(eval_loss):
                diverged = True
            elif eval_loss < history.best_loss:
                history.best_step, history.best_loss = step, eval_loss
        if not diverged and (
            is_last
            or eval_loss is not None
            or (config.checkpoint_every and step % config.checkpoint_every == 0)
        ):
            state = {**history.state(fingerprint, total, per_step), **start_eval_state}
            _write_checkpoint(ckpt_root, step, model, optimizer, state)
            _prune(ckpt_root, {step, history.best_step} if eval_examples and history.best_step else {step})
        if progress is not None:
            progress(step, total, step_loss, eval_loss)
        if diverged:
            break

    saved_step = _save_final_adapter(
        model, params, start_weights, out_dir, history, total, by_eval=bool(eval_examples), diverged=diverged
    )
    model.eval()
    return TrainResult(
        steps=len(history.train_losses),
        best_step=saved_step,
        best_eval_loss=None if math.isinf(history.best_loss) else history.best_loss,
        train_losses=history.train_losses,
        adapter_dir=out_dir / "adapter",
        seconds=time.perf_counter() - t0,
        diverged=diverged,
        resumed_from=start_step,
        eval_losses=history.eval_losses,
        notices=notices,
        truncation=truncation,
    )
