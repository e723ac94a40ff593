"""Greedy forward and backward selection on estimated losses.

Each round estimates every one-source change of the current subset in a single batched
``estimate`` call, takes the best, and stops when no change lowers L_hat by more than
``min_improvement``. Scores (higher = more helpful):

- forward: the loss drop when the source was added; for sources never added, the loss
  drop adding them would give in the last round estimated (to the final subset; after a
  ``max_steps`` stop, to the subset before the last step), negative when they hurt;
- backward: the loss rise removing the source would cause in the last round estimated
  (from the final subset, or the one before the last step after a ``max_steps`` stop);
  for sources removed, minus the loss drop their removal gave.

A source whose every estimate failed has no score: it gets 0.0 and a notice, as in
:func:`subsetctl.search.ensemble.mean_difference_scores`.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from pydantic import Field

from subsetctl.estimate.base import SubsetEstimator
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import (
    SearchContext,
    Strategy,
    StrategyParams,
    StrategyResult,
    SubsetMemo,
)
from subsetctl.search.ensemble import SCORE_NOISE


class GreedyParams(StrategyParams):
    """Stopping rules of greedy selection."""

    min_improvement: float = Field(
        0.0, ge=0.0, description="stop when the best step lowers L_hat by no more than this"
    )
    max_steps: int | None = Field(
        None, ge=1, description="stop after this many accepted steps (None: no limit)"
    )


def _step_bound(params: GreedyParams, n_sources: int) -> int:
    """At most how many steps greedy selection takes: one per source, or ``max_steps``."""
    return min(n_sources, params.max_steps or n_sources)


def _changes(current: np.ndarray, candidates: np.ndarray, value: bool, start: int, stop: int) -> np.ndarray:
    """The masks of candidates ``start`` to ``stop - 1`` of a step: ``current`` with that
    candidate's source set to ``value``."""
    masks = np.repeat(current[None, :], stop - start, axis=0)
    masks[np.arange(stop - start), candidates[start:stop]] = value
    return masks


def _greedy(
    memo: SubsetMemo, context: SearchContext, params: GreedyParams, forward: bool, rows: int | None = None
) -> tuple[np.ndarray, float | None, np.ndarray, list[dict], list[str]]:
    """Run greedy selection; returns (mask, loss, scores, steps, notices). Progress says
    which step a round estimates, of at most how many (a long search shows where it is).
    A step's candidates are made and estimated ``rows`` at a time (default: the memo's
    ``chunk_size``, the rows of one estimate call), never as one candidates x sources array
    (100 MB a step at 10,000 sources); every candidate is a subset new to the memo, so the
    estimates, their order and the estimator's batches are those of one call on them all."""
    n = len(memo.sources)
    name, bound = memo.label, _step_bound(params, n)  # (the memo's label: the spec's label, else the strategy's name)
    current = np.zeros(n, dtype=bool) if forward else np.ones(n, dtype=bool)
    current_loss = float(memo.losses(current[None, :])[0])
    notices: list[str] = []
    if not np.isfinite(current_loss):
        notices.append(
            "The estimator failed on the starting subset; the first step compares "
            "candidates only with one another."
        )
    scores = np.full(n, np.nan)
    steps: list[dict] = []
    while params.max_steps is None or len(steps) < params.max_steps:
        candidates = np.flatnonzero(~current if forward else current)
        if len(candidates) == 0:
            break
        memo.label = f"{name}, step {len(steps) + 1} of at most {bound}"  # the memo's progress names the step
        losses = memo.losses_in_parts(len(candidates), partial(_changes, current, candidates, forward), rows)
        memo.label = name
        finite = np.isfinite(losses)
        # a failed start: gains against the worst candidate (none finite: no base, and no numpy warning)
        base = current_loss if np.isfinite(current_loss) else (losses[finite].max() if finite.any() else np.nan)
        gains = base - losses  # positive = the step lowers the loss
        # forward: gain of adding = helpfulness; backward: gain of removing = harm
        scores[candidates] = gains if forward else -gains
        if not np.isfinite(gains).any():
            notices.append("The estimator failed on every candidate step; stopped.")
            break
        best = int(np.nanargmax(gains))
        # forward: a gain within rounding noise is no gain (a source repeating the target's train rows was
        # added for 2.5e-10); backward may still drop such a source
        floor = max(params.min_improvement, SCORE_NOISE) if forward else params.min_improvement
        if not gains[best] > floor and np.isfinite(current_loss):
            if forward and gains[best] > params.min_improvement:
                notices.append(f"Stopped where the best step ({memo.sources[int(candidates[best])]!r}) lowers the "
                               f"estimate by less than {SCORE_NOISE:g}, rounding noise of the estimates (e.g. a "
                               "source that repeats rows the target already has).")
            break
        k = int(candidates[best])
        current[k] = forward
        current_loss = float(losses[best])
        steps.append(
            {
                "source": memo.sources[k],
                "action": "add" if forward else "remove",
                "loss": current_loss,
                "improvement": float(gains[best]),
            }
        )
        context.report(f"{name}: step {len(steps)} of at most {bound} done", len(steps), bound)
    unscored = [memo.sources[k] for k in np.flatnonzero(np.isnan(scores))]
    if unscored:  # the estimator failed on their step in the last round that tried it
        notices.append(f"Sources {', '.join(map(repr, unscored))} have no score: the estimator failed on their "
                       "step in the last round that estimated it; their score is set to 0.")
        scores = np.nan_to_num(scores, nan=0.0)
    loss = current_loss if np.isfinite(current_loss) else None
    return current, loss, scores, steps, notices


class _Greedy(Strategy):
    """Shared run() of forward and backward selection."""

    forward: bool = True
    Params = GreedyParams

    @classmethod
    def max_subsets(cls, params: GreedyParams, n_sources: int) -> int | None:  # type: ignore[override]
        """The start, then every remaining source at each accepted step."""
        return 1 + sum(n_sources - k for k in range(_step_bound(params, n_sources)))

    @classmethod
    def known_subsets(cls, params: GreedyParams, n_sources: int) -> tuple[np.ndarray, str] | None:  # type: ignore[override]
        """The start and its first step, which every run estimates (at least one step is
        taken, even after a failed start): each source alone (forward), all but one
        (backward); the later steps follow the estimates."""
        start = np.packbits(np.full(n_sources, not cls.forward))
        masks = np.repeat(start[None, :], n_sources + 1, axis=0)
        at = np.arange(n_sources)
        masks[at + 1, at // 8] ^= (np.uint8(128) >> (at % 8).astype(np.uint8))
        return masks, "start and first step"

    def run(self, estimator: SubsetEstimator, context: SearchContext, params: GreedyParams) -> StrategyResult:
        memo = SubsetMemo(estimator, context, self.name)
        mask, loss, scores, steps, notices = _greedy(memo, context, params, self.forward)
        return StrategyResult(
            strategy=self.name,
            selected=memo.names(mask),
            scores={s: float(v) for s, v in zip(memo.sources, scores)},
            estimated_loss=loss,
            trace=memo.trace,
            notices=notices + memo.notices(),
            diagnostics={"steps": steps, **memo.diagnostics()},
        )


@STRATEGIES.register("forward", "greedy forward selection from the target alone")
class Forward(_Greedy):
    """Start from the target alone; add the source that lowers L_hat most, until none does."""

    forward = True


@STRATEGIES.register("backward", "greedy backward elimination from all sources")
class Backward(_Greedy):
    """Start from all sources; remove the source whose removal lowers L_hat most, until none does."""

    forward = False
