"""Baseline selections the estimator-based strategies are compared against.

None of these consults the estimator to choose; each estimates its choice once so the
report can put its ``L_hat`` next to the others.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from subsetctl.errors import UserError
from subsetctl.estimate.base import FeatureSet, SubsetEstimator
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import (
    SearchContext,
    Strategy,
    StrategyParams,
    StrategyResult,
    SubsetMemo,
)


def _result(
    name: str,
    memo: SubsetMemo,
    selected: list[str],
    scores: dict[str, float] | None = None,
    notices: list[str] | None = None,
    diagnostics: dict | None = None,
) -> StrategyResult:
    """Estimate the selection once and wrap it in a result."""
    loss = memo.loss_of(selected)
    order = {s: i for i, s in enumerate(memo.sources)}
    return StrategyResult(
        strategy=name,
        selected=sorted(selected, key=order.__getitem__),
        scores=scores or {},
        estimated_loss=loss,
        trace=memo.trace,
        notices=(notices or []) + memo.notices(),
        diagnostics={**(diagnostics or {}), **memo.diagnostics()},
    )


class _OnePick(Strategy):
    """A baseline that picks without the estimator and estimates only its pick."""

    @classmethod
    def max_subsets(cls, params: StrategyParams, n_sources: int) -> int | None:
        return 1


@STRATEGIES.register("all", "baseline: every source")
class AllSources(_OnePick):
    """Keep every source (the usual multitask mix)."""

    Params = StrategyParams

    def run(
        self, estimator: SubsetEstimator, context: SearchContext, params: StrategyParams
    ) -> StrategyResult:
        memo = SubsetMemo(estimator, context, self.name)
        return _result(self.name, memo, list(memo.sources))


@STRATEGIES.register("target_only", "baseline: no auxiliary source")
class TargetOnly(_OnePick):
    """Keep no source: fine-tune on the target alone."""

    Params = StrategyParams

    def run(
        self, estimator: SubsetEstimator, context: SearchContext, params: StrategyParams
    ) -> StrategyResult:
        memo = SubsetMemo(estimator, context, self.name)
        return _result(self.name, memo, [])


class RandomParams(StrategyParams):
    """Size of the random pick."""

    like: str | None = Field(None, description="pick as many sources as the strategy listed before it with this "
                                                "label (its name where it has no label) selected")
    k: int | None = Field(None, ge=0, description="pick this many sources (when 'like' is not set)")

    @model_validator(mode="after")
    def _one_size(self) -> RandomParams:
        if (self.like is None) == (self.k is None):
            raise ValueError("set exactly one of 'like' (the label of a strategy listed before it: its name where "
                             "it has no label) or 'k' (a number)")
        return self


def random_pick_seeds(project_seed: int, strategies: list[Any]) -> dict[int, int]:
    """The seeds of the built-in ``random`` entries of ``search.strategies`` after the first:
    entry index -> a seed of its own, from ``project_seed`` and the entry's label (stable
    across processes, and across moves of the other strategies). The first ``random`` entry
    draws from ``project_seed`` itself, as every one did before, so a spec with one keeps its
    pick; two entries of one size drew the same sources (one fine-tune, not two random
    draws). Which ``random`` entry is first matters: swapping two of them changes both picks."""
    if STRATEGIES.origin("random") != "built-in":
        return {}
    entries = [(i, entry.label or entry.name) for i, entry in enumerate(strategies) if entry.name == "random"]
    return {i: labelled_seed(project_seed, label) for i, label in entries[1:]}


def labelled_seed(project_seed: int, label: str) -> int:
    """The seed a ``random`` entry after the first draws from (:func:`random_pick_seeds`):
    the first 8 bytes of sha256("<project_seed>:<label>"), so a reviewer can work it out too."""
    return int.from_bytes(hashlib.sha256(f"{project_seed}:{label}".encode()).digest()[:8], "big")


@STRATEGIES.register(
    "random", "baseline: a seeded random pick of a given size; set exactly one of k (its size) or like (the size "
    "of an earlier strategy's pick)")
class RandomPick(_OnePick):
    """A seeded random subset, as large as another strategy's pick or of size k."""

    Params = RandomParams

    @classmethod
    def check_spec(cls, params: RandomParams, n_sources: int, earlier: list[str]) -> str | None:
        if params.like is not None and params.like not in earlier:
            listed = ", ".join(earlier) or "none"
            return (f"like: {params.like!r} must name a strategy listed before this one (listed before it: "
                    f"{listed}); add it above, fix the name, or set k instead.")
        return None

    def run(self, estimator: SubsetEstimator, context: SearchContext, params: RandomParams) -> StrategyResult:
        memo = SubsetMemo(estimator, context, self.name)
        n = len(memo.sources)
        notices = []
        if params.like is not None:
            if params.like not in context.other_selections:
                ran = ", ".join(sorted(context.other_selections)) or "(none yet)"
                raise UserError(
                    f"The random baseline is sized like {params.like!r}, which has not run "
                    f"before it. Strategies that ran earlier: {ran}. List {params.like!r} "
                    "before 'random' under search.strategies, or set params.k instead."
                )
            k = len(context.other_selections[params.like])
        else:
            k = int(params.k or 0)
        if k > n:
            notices.append(f"k={k} exceeds the {n} sources; kept all of them.")
            k = n
        rng = np.random.default_rng(context.seed)
        pick = sorted(rng.choice(n, size=k, replace=False).tolist()) if k else []
        return _result(
            self.name, memo, [memo.sources[i] for i in pick], notices=notices, diagnostics={"k": k}
        )


class SimilarityParams(StrategyParams):
    """How to turn similarities into a selection."""

    top_k: int | None = Field(
        None, ge=0, description="keep the top_k most similar sources (instead of a threshold)"
    )
    threshold: float = Field(0.0, ge=-1.0, lt=1.0,
                             description="keep sources with cosine similarity above this (a cosine: from -1 "
                                         "to below 1; 1 or more would keep none)")

    @model_validator(mode="after")
    def _one_rule(self) -> SimilarityParams:
        """top_k replaces the threshold rule: both given means one is silently ignored."""
        if self.top_k is not None and "threshold" in self.model_fields_set:
            raise ValueError("set top_k or threshold, not both: with top_k the threshold is not used")
        return self


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity; 0.0 when either vector is zero."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def _threshold_kept_all_or_none(name: str, sims: np.ndarray, keep: np.ndarray, threshold: float) -> str | None:
    """What to say when ``threshold`` kept every source or none: the pick is then the ``all``
    or the ``target_only`` baseline's, which the result alone does not show; None otherwise (and
    for a single source, which any threshold keeps or drops)."""
    n = len(sims)
    if n < 2 or 0 < int(keep.sum()) < n:
        return None
    low, high = float(np.min(sims)), float(np.max(sims))
    if keep.all():
        said = f"threshold={threshold:g} kept all {n} sources"
        pick = "the 'all' baseline's"
        change = (f"Raise {name}'s threshold to between the lowest and the highest similarity, or set its top_k, "
                  "to keep only the most similar sources.")
    else:
        said = f"threshold={threshold:g} kept none of the {n} sources"
        pick = "the target alone (the 'target_only' baseline's)"
        change = (f"Lower {name}'s threshold below the highest similarity ({high:.3g}), or set its top_k, to keep "
                  "the most similar sources.")
    if low == high:
        change = (f"Every source has the same similarity, so no threshold tells them apart: {name} does not rank "
                  "these sources.")
    return (f"{said} (their similarities to the target range from {low:.3g} to {high:.3g}), so its pick "
            f"is {pick}. {change}")


def _select_similar(
    name: str, memo: SubsetMemo, sims: np.ndarray, params: SimilarityParams
) -> StrategyResult:
    notices = []
    if params.top_k is not None:
        k = params.top_k
        if k > len(sims):
            notices.append(f"top_k={k} exceeds the {len(sims)} sources; kept all of them.")
        order = np.argsort(-sims, kind="stable")[:k]
        keep = np.zeros(len(sims), dtype=bool)
        keep[order] = True
    else:
        keep = sims > params.threshold
        kept_all_or_none = _threshold_kept_all_or_none(memo.label, sims, keep, params.threshold)
        if kept_all_or_none:
            notices.append(kept_all_or_none)
    return _result(
        name,
        memo,
        memo.names(keep),
        scores={s: float(v) for s, v in zip(memo.sources, sims)},
        notices=notices,
    )


def _features(context: SearchContext, strategy: str) -> FeatureSet:
    if context.features is None:
        raise UserError(
            f"Strategy {strategy!r} needs the cached gradient features, which this search "
            "was not given. Run the gradients stage first."
        )
    return context.features


@STRATEGIES.register("gradient_similarity", "baseline: cosine of mean gradients (LESS-style)")
class GradientSimilarity(_OnePick):
    """Keep sources whose mean projected gradient points like the target's (LESS-style).

    Score of source k = cosine(mean of k's training rows x_i, mean of the target's training
    rows x_i), where x_i is the projected gradient of the model output f_i.

    Known failure, shown in the tests: a source whose gradients point the target's way
    but that pushes much too far (far more rows, or rows whose outputs f_i are very low
    so the fitted step overshoots) has cosine close to 1 and is picked first, although
    adding it raises the target's validation loss. Cosine sees direction, not size or
    the curvature of the loss; the estimator-based strategies see the resulting loss.
    """

    Params = SimilarityParams

    def run(
        self, estimator: SubsetEstimator, context: SearchContext, params: SimilarityParams
    ) -> StrategyResult:
        features = _features(context, self.name)
        memo = SubsetMemo(estimator, context, self.name)
        target = np.asarray(features.target_train_x, dtype=float).mean(axis=0)
        sims = np.array(
            [
                cosine(np.asarray(x, dtype=float).mean(axis=0), target) if len(x) else 0.0
                for x in features.source_train_x
            ]
        )
        result = _select_similar(self.name, memo, sims, params)
        if features.d == 1:  # the cosine of two numbers is their signs' product
            result.notices.append(
                "With gradients.d=1 every cosine is 1 or -1 (the sign of one projected number), so the scores only "
                "say on which side of the target each source's mean gradient falls; raise gradients.d (128 is the "
                "default) for similarities that rank the sources."
            )
        return result


@STRATEGIES.register("representation_similarity", "baseline: cosine of mean representations")
class RepresentationSimilarity(_OnePick):
    """Keep sources whose mean hidden representation is close (cosine) to the target's."""

    Params = SimilarityParams

    def run(
        self, estimator: SubsetEstimator, context: SearchContext, params: SimilarityParams
    ) -> StrategyResult:
        features = _features(context, self.name)
        if features.source_repr is None or features.target_repr is None:
            raise UserError(
                "Strategy 'representation_similarity' needs mean hidden representations "
                "of the target and each source, which the gradient store does not hold. "
                "Re-run the gradients stage with representations enabled, or drop this "
                "strategy from search.strategies."
            )
        reprs = np.asarray(features.source_repr, dtype=float)
        target = np.asarray(features.target_repr, dtype=float).reshape(-1)
        if reprs.shape != (len(features.sources), target.shape[0]):
            raise UserError(
                f"The stored representations have shape {reprs.shape}, expected "
                f"({len(features.sources)}, {target.shape[0]}). Re-run the gradients stage."
            )
        memo = SubsetMemo(estimator, context, self.name)
        sims = np.array([cosine(r, target) for r in reprs])
        return _select_similar(self.name, memo, sims, params)
