"""The model output f_i: one scalar per example (DESIGN.md section 2, step 2).

Causal LM: the mean, over gold response tokens, of the gold token's log-odds
``log(p / (1 - p))`` with p the softmax probability of the gold token.
Classifier: the gold class's log-odds.

Since ``softplus(-f) = -log(sigmoid(f))``, the surrogate loss ``softplus(-f)`` equals the
cross-entropy when there is a single gold token. The estimator linearizes f in the LoRA
parameters; gradients of f are what the gradient store projects.
"""

from __future__ import annotations

import math

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
