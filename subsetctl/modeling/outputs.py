"""The model output f_i: one scalar per example.

Causal LM: the mean, over gold response tokens, of the gold token's log-odds
``log(p / (1 - p))`` with p the softmax probability of the gold token.
Classifier: the gold class's log-odds.

Since ``softplus(-f) = -log(sigmoid(f))``, the surrogate loss ``softplus(-f)`` equals the
cross-entropy when there is a single gold token. The estimator linearizes f in the LoRA
parameters; gradients of f are what the gradient store projects.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """Stable ``log(1 - exp(x))`` for ``x <= 0`` (Maechler's two-branch formula)."""
    x = torch.clamp(x, max=-1e-12)
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def gold_log_odds(logits: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Log-odds of the gold index along the last axis: ``log p - log(1 - p)``.

    Works for any leading shape; ``gold`` has the leading shape of ``logits``.
    """
    logp_all = F.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, gold.unsqueeze(-1)).squeeze(-1)
    return logp - log1mexp(logp)


def causal_lm_f(logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Per-example f for a causal LM.

    Args:
        logits: (B, T, V) next-token logits.
        input_ids: (B, T) tokens.
        response_mask: (B, T) bool, True at gold response tokens.

    Returns:
        (B,) mean gold-token log-odds over each example's response tokens.
    """
    pred = logits[:, :-1, :]
    gold = input_ids[:, 1:]
    mask = response_mask[:, 1:].to(pred.dtype if pred.is_floating_point() else torch.float32)
    lo = gold_log_odds(pred, gold)
    counts = mask.sum(dim=1).clamp(min=1.0)
    return (lo * mask).sum(dim=1) / counts


def causal_lm_token_ce(logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Per-example mean token cross-entropy over the response tokens (B,)."""
    pred = logits[:, :-1, :].float()
    gold = input_ids[:, 1:]
    mask = response_mask[:, 1:].float()
    nll = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), gold.reshape(-1), reduction="none")
    nll = nll.view(gold.shape)
    return (nll * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def classifier_f(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example gold-class log-odds for a classifier, (B,)."""
    return gold_log_odds(logits, labels)


def surrogate_loss(f: torch.Tensor) -> torch.Tensor:
    """The loss the estimate models: ``softplus(-f)`` per example."""
    return F.softplus(-f)


def _scored_per_example(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                        scored: torch.Tensor) -> torch.Tensor:
    """Per-example mean of ``values`` (one per scored position ``(rows, cols)``), summed
    exactly as :func:`causal_lm_f` sums: laid out in a zero (B, T - 1) matrix first."""
    full = torch.zeros(scored.shape, dtype=values.dtype, device=values.device).index_put((rows, cols), values)
    return full.sum(dim=1) / scored.to(values.dtype).sum(dim=1).clamp(min=1.0)


class CausalLMScores(NamedTuple):
    """What :func:`causal_lm_scores` gives: the model's output, f and the token CE per
    example, and ``gathered``: the scored positions ``(rows, cols)`` when the output head
    ran on them alone (its inputs were then (1, N, H), one row per scored position), None
    when it ran on every position."""

    output: Any
    f: torch.Tensor
    ce: torch.Tensor
    gathered: tuple[torch.Tensor, torch.Tensor] | None


def causal_lm_scores(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                     **forward_kwargs: object) -> CausalLMScores:
    """One forward pass of a causal LM: the model output, f and token CE per example.

    Only the positions that predict a response token are scored, so the output head (the
    vocabulary projection, about a fifth of a small model's compute) and the log-softmax
    run on those rows alone, about one in ten of a batch's tokens: a forward pre-hook on
    ``model.get_output_embeddings()`` hands the head the gathered hidden states. f and the
    CE equal :func:`causal_lm_f` and :func:`causal_lm_token_ce` on the full logits (the
    same per-row log-softmax and the same sums); ``output.logits`` then holds only the
    scored rows, (1, N, V). A model whose head is not called through that module gets the
    full logits, scored the same way."""
    input_ids, response_mask = batch["input_ids"], batch["response_mask"]
    scored = response_mask[:, 1:]
    rows, cols = scored.nonzero(as_tuple=True)
    B, T = input_ids.shape
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    calls: list[int] = []

    def keep_scored(module: torch.nn.Module, args: tuple) -> tuple | None:
        hidden = args[0] if args else None
        if not (isinstance(hidden, torch.Tensor) and hidden.is_floating_point() and hidden.dim() == 3
                and tuple(hidden.shape[:2]) == (B, T)):
            calls.append(-1)  # not the (B, T, H) hidden states: left alone, and the full logits are used
            return None
        calls.append(1)
        return (hidden[rows, cols].unsqueeze(0), *args[1:])

    def forward(hooked: bool) -> object:
        handle = head.register_forward_pre_hook(keep_scored) if hooked else None
        try:
            return model(input_ids=input_ids, attention_mask=batch["attention_mask"], **forward_kwargs)
        finally:
            if handle is not None:
                handle.remove()

    out = forward(isinstance(head, torch.nn.Module))
    gathered = calls == [1] and tuple(out.logits.shape[:2]) == (1, rows.numel())
    if gathered:
        picked = out.logits[0]
    else:  # the head is another module, or was called otherwise: score the full logits
        if calls:
            out = forward(False)
        if tuple(out.logits.shape[:2]) != (B, T):
            raise RuntimeError(f"{type(model).__name__} returned logits of shape {tuple(out.logits.shape)} "
                               f"for a batch of shape {(B, T)}")
        picked = out.logits[:, :-1][rows, cols]
    gold = input_ids[:, 1:][rows, cols]
    logp = F.log_softmax(picked.float(), dim=-1).gather(-1, gold.unsqueeze(-1)).squeeze(-1)
    f = _scored_per_example(logp - log1mexp(logp), rows, cols, scored)
    ce = _scored_per_example(-logp, rows, cols, scored)
    return CausalLMScores(out, f, ce, (rows, cols) if gathered else None)
