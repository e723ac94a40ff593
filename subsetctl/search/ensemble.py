"""Strategies that score sources from many estimated subsets at once.

``random_ensemble`` and ``surrogate`` estimate m random subsets of a fixed size (the same
subsets for the same seed, m and alpha, so a caching estimator answers the second one for
free); ``exhaustive`` estimates every subset of a small source set.

Scores follow the package convention: higher = more helpful. With subsets of one fixed
size, every inclusion displaces another source, so the scores of ``random_ensemble`` and
``surrogate`` say how a source compares with the *average* source, not whether adding it
beats the target alone. ``select: sweep`` settles how many of the ranked sources to keep
by estimating the top-k prefixes directly; ``exhaustive`` scores (the Banzhaf value of
each source) do measure the absolute effect.
"""

from __future__ import annotations

import itertools
import math
from abc import abstractmethod
from typing import Any, Literal

import numpy as np
import scipy.linalg
from pydantic import Field, model_validator

from subsetctl.errors import UserError, count_agreeing
from subsetctl.estimate.base import SubsetEstimator
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import (
    NoFiniteEstimate,
    SearchContext,
    Strategy,
    StrategyParams,
    StrategyResult,
    SubsetMemo,
    count_text,
)

SelectMode = Literal["sign", "threshold", "top_k", "sweep"]


class SelectionParams(StrategyParams):
    """How to turn per-source scores into a selection (shared by scoring strategies)."""

    select: SelectMode = Field(
        "sign",
        description=(
            "sign: keep sources with a positive score; threshold: score > threshold; "
            "top_k: the top_k best; sweep: estimate the best-k prefixes for k=0..n "
            "and keep the one with the lowest estimated loss"
        ),
    )
    threshold: float = Field(0.0, description="score cut-off for select: threshold")
    top_k: int | None = Field(None, ge=0, description="number of sources for select: top_k")

    @model_validator(mode="after")
    def _top_k_needed(self) -> SelectionParams:
        if self.select == "top_k" and self.top_k is None:
            raise ValueError("select: top_k needs the parameter top_k (how many sources to keep)")
        for key in ("top_k", "threshold"):  # set, but the selection rule never reads it
            if getattr(self, key) != type(self).model_fields[key].default and self.select != key:
                raise ValueError(f"{key} is only used with select: {key}, but select is {self.select!r}; "
                                 f"add select: {key}, or remove {key}")
        return self


class RandomSubsetParams(SelectionParams):
    """Parameters of the random fixed-size subsets both ensemble strategies estimate."""

    m: int = Field(200, ge=1, description="number of distinct random subsets to estimate")
    alpha: float = Field(
        0.5, gt=0.0, le=1.0, description="subset size as a share of the sources, round(alpha*n)"
    )


def sample_subsets(n: int, size: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """``m`` distinct subsets of ``size`` out of ``n`` sources, as an (m, n) bool array,
    and notices.

    When ``m`` exceeds the number of distinct subsets it is capped (with a notice);
    when it is close to that number, subsets are drawn from the full enumeration
    without replacement rather than by rejection.
    """
    total = math.comb(n, size)
    notices: list[str] = []
    if m > total:
        notices.append(
            f"Asked for m={m} subsets but only {total} distinct subsets of size {size} "
            f"exist among {n} sources; estimated all {total}."
        )
        m = total
    masks = np.zeros((m, n), dtype=bool)
    if 2 * m > total:
        combos = list(itertools.combinations(range(n), size))
        pick = np.sort(rng.choice(total, size=m, replace=False))
        for row, i in enumerate(pick):
            masks[row, list(combos[i])] = True
    else:
        # each draw is told apart by the bytes of its sorted indices, kept as an array: as Python
        # lists and tuples, 5,000 draws of 2,500 of 5,000 sources took 4.8 s (the same draws)
        seen: set[bytes] = set()
        while len(seen) < m:
            combo = np.sort(rng.choice(n, size=size, replace=False))
            key = combo.tobytes()
            if key not in seen:
                masks[len(seen), combo] = True
                seen.add(key)
    return masks, notices


def _too_few_sources(n: int, strategy: str) -> str | None:
    """Why random subsets of ``n`` sources cannot score them (fewer than 2), or None."""
    if n >= 2:
        return None
    return (f"Strategy {strategy!r} needs at least 2 sources to compare subsets; there "
            f"{'is' if n == 1 else 'are'} {n}. Use the 'exhaustive' strategy instead.")


def clamped_subset_size(n: int, alpha: float) -> int:
    """``round(alpha * n)`` clamped to ``1..n-1`` (1 for a single source): the size of the
    random subsets, which :func:`subset_size` uses and `plan`/`validate` count with."""
    return min(max(1, round(alpha * n)), max(1, n - 1))


def subset_size(n: int, alpha: float, strategy: str) -> tuple[int, list[str]]:
    """``round(alpha * n)`` clamped to ``1..n-1`` (a size of n says nothing per source),
    with a notice when clamped. Raises a UserError for fewer than 2 sources."""
    problem = _too_few_sources(n, strategy)
    if problem:
        raise UserError(problem)
    raw = round(alpha * n)
    size = clamped_subset_size(n, alpha)
    notices = []
    if size != raw:
        notices.append(
            f"alpha={alpha} gives subsets of {raw} of {n} sources; used {size} so that "
            "every source is both in and out of some subsets."
        )
    return size, notices


def mean_difference_scores(
    masks: np.ndarray, losses: np.ndarray, sources: list[str], advice: str = "Increase m."
) -> tuple[np.ndarray, list[str]]:
    """Score k = mean L_hat of subsets without k minus mean of subsets with k.

    Higher = more helpful. Failed (NaN) estimates are ignored; a source that is in all
    or none of the remaining subsets gets 0.0 and a notice.
    """
    ok = np.isfinite(losses)
    masks, losses = masks[ok], losses[ok]
    scores = np.zeros(masks.shape[1])
    undefined, notices = in_all_or_none(masks, sources, advice)
    for k in range(masks.shape[1]):
        if k not in undefined:
            inside = masks[:, k]
            scores[k] = losses[~inside].mean() - losses[inside].mean()
    return scores, notices


def in_all_or_none(masks: np.ndarray, sources: list[str], advice: str) -> tuple[set[int], list[str]]:
    """The sources (their indices) in all or none of the subsets ``masks``, whose score the
    subsets cannot tell and is left at 0, and the notice naming them (ending in ``advice``)."""
    members = np.asarray(masks, dtype=bool)
    undefined = [k for k in range(members.shape[1]) if members[:, k].all() or not members[:, k].any()]
    if not undefined:
        return set(), []
    names = ", ".join(repr(sources[k]) for k in undefined)
    notice = f"Sources {names} were in all or none of the estimated subsets; their score is set to 0. {advice}"
    return set(undefined), [notice]


SCORE_NOISE = 1e-8
"""A score (a difference of estimated losses) this close to 0 is rounding noise: ``select:
sign`` keeps only sources scoring above it."""


def select_by_scores(
    memo: SubsetMemo, scores: np.ndarray, params: SelectionParams
) -> tuple[np.ndarray, float | None, dict, list[str]]:
    """Apply the selection rule; returns (mask, estimated loss, diagnostics, notices).

    The selected subset is estimated once (or found in the sweep) so every result
    carries its ``L_hat``. Raises :class:`NoFiniteEstimate` when no prefix of a sweep has
    a finite estimate.
    """
    n = len(scores)
    order = np.argsort(-scores, kind="stable")
    notices: list[str] = []
    diagnostics: dict = {}
    mask = np.zeros(n, dtype=bool)
    if params.select == "sign":
        mask = scores > SCORE_NOISE
        noise = int(np.sum((scores > 0) & ~mask))
        if noise:
            notices.append(f"{count_agreeing(noise, 'source', 'scored', 'scored')} above 0 by less than "
                           f"{SCORE_NOISE:g} (rounding noise of the estimates, e.g. identical sources) and "
                           f"{'is' if noise == 1 else 'are'} not selected.")
    elif params.select == "threshold":
        mask = scores > params.threshold
    elif params.select == "top_k":
        k = int(params.top_k or 0)
        if k > n:
            notices.append(f"top_k={k} exceeds the {n} sources; kept all of them.")
            k = n
        mask[order[:k]] = True
    else:  # sweep
        prefixes = np.zeros((n + 1, n), dtype=bool)
        for k in range(1, n + 1):
            prefixes[k, order[:k]] = True
        prefix_losses = memo.losses(prefixes)
        diagnostics["sweep"] = [
            {"k": k, "loss": float(v) if np.isfinite(v) else None} for k, v in enumerate(prefix_losses)
        ]
        if not np.isfinite(prefix_losses).any():
            raise NoFiniteEstimate(
                "The estimator gave no finite estimate for any subset of the sweep (every one is NaN or "
                "infinite); check the estimator settings (estimate.*, e.g. a larger estimate.lam) or, for a "
                "plugin estimator, its code."
            )
        lowest = int(np.nanargmin(prefix_losses))
        # prefixes within rounding noise of the lowest are a tie: keep the shortest, as exhaustive keeps the
        # fewest sources (a source that repeats the target's train rows won the tie by 2.5e-10)
        best = int(np.flatnonzero(prefix_losses <= prefix_losses[lowest] + SCORE_NOISE)[0])
        if best < lowest:
            pick = f"its best {best}" if best else "the target only"
            notices.append(f"The ranking's best {count_agreeing(lowest, 'source', 'is', 'are')} estimated lower than the "
                           f"pick ({pick}) by less "
                           f"than {SCORE_NOISE:g}, rounding noise of the estimates (e.g. a source that repeats rows "
                           "the target already has): of such tied prefixes the shortest is kept.")
        mask = prefixes[best]
    return mask, memo.loss_of(memo.names(mask)), diagnostics, notices


def _scores_dict(sources: list[str], scores: np.ndarray) -> dict[str, float]:
    return {s: float(v) for s, v in zip(sources, scores)}


def _estimate_random_subsets(
    memo: SubsetMemo, context: SearchContext, params: RandomSubsetParams, strategy: str
) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """Sample and estimate the random subsets (the rng depends only on the seed, so both
    ensemble strategies draw the same ones): ``(masks, losses, subset size, notices)``."""
    n = len(memo.sources)
    size, notices = subset_size(n, params.alpha, strategy)
    rng = np.random.default_rng(context.seed)
    masks, more = sample_subsets(n, size, params.m, rng)
    losses = memo.losses(masks)
    if not np.isfinite(losses).any():
        raise NoFiniteEstimate(
            f"The estimator failed on all {len(losses)} subsets of {strategy!r}; check the "
            "estimator settings (for example a larger lambda)."
        )
    return masks, losses, size, notices + more


class _RandomSubsetsStrategy(Strategy):
    """A strategy that scores sources from the losses of m random subsets of size
    round(alpha*n) (:func:`_estimate_random_subsets`), then selects by the scores
    (:func:`select_by_scores`). Each subclass says only how it scores
    (:meth:`score_sources`); the run around it, what `validate` says of its spec (fewer than 2
    sources) and how many subsets it estimates at most are the same for each."""

    def run(
        self, estimator: SubsetEstimator, context: SearchContext, params: RandomSubsetParams
    ) -> StrategyResult:
        memo = SubsetMemo(estimator, context, self.name)
        masks, losses, size, notices = _estimate_random_subsets(memo, context, params, self.name)
        scores, more, found = self.score_sources(memo, context, params, masks, losses, size)
        mask, loss, diag, sel_notices = select_by_scores(memo, scores, params)
        return StrategyResult(
            strategy=self.name,
            selected=memo.names(mask),
            scores=_scores_dict(memo.sources, scores),
            estimated_loss=loss,
            trace=memo.trace,
            notices=notices + more + sel_notices + memo.notices(),
            diagnostics={"subset_size": size, "n_subsets": len(masks), **found, **diag, **memo.diagnostics()},
        )

    @abstractmethod
    def score_sources(
        self, memo: SubsetMemo, context: SearchContext, params: RandomSubsetParams, masks: np.ndarray,
        losses: np.ndarray, size: int,
    ) -> tuple[np.ndarray, list[str], dict[str, Any]]:
        """Each source's score (higher: keep it first) from the random subsets ``masks`` of
        ``size`` sources and their estimated ``losses`` (NaN where the estimator failed), with
        the notices and the diagnostics the scoring adds to the result's."""

    @classmethod
    def check_spec(cls, params: StrategyParams, n_sources: int, earlier: list[str]) -> str | None:
        return _too_few_sources(n_sources, cls.name)

    @classmethod
    def max_subsets(cls, params: RandomSubsetParams, n_sources: int) -> int | None:  # type: ignore[override]
        return _random_subsets_bound(params, n_sources)


@STRATEGIES.register("random_ensemble", "score sources by mean L_hat over random subsets")
class RandomEnsemble(_RandomSubsetsStrategy):
    """Estimate m random subsets of size round(alpha*n) and score each source by how
    much lower the estimated loss is in subsets that contain it."""

    Params = RandomSubsetParams

    def score_sources(
        self, memo: SubsetMemo, context: SearchContext, params: RandomSubsetParams, masks: np.ndarray,
        losses: np.ndarray, size: int,
    ) -> tuple[np.ndarray, list[str], dict[str, Any]]:
        scores, notices = mean_difference_scores(masks, losses, memo.sources)
        return scores, notices, {}


def _random_subsets_bound(params: RandomSubsetParams, n_sources: int) -> int:
    """The m random subsets (at most as many as exist), then the selection: one subset,
    or the n + 1 prefixes of a sweep."""
    size = clamped_subset_size(n_sources, params.alpha)
    return min(params.m, math.comb(n_sources, size)) + (n_sources + 1 if params.select == "sweep" else 1)


class SurrogateParams(RandomSubsetParams):
    """Random subsets plus a ridge fit of L_hat on subset indicators."""

    ridge: float = Field(1.0, gt=0.0, description="ridge penalty of the linear surrogate")
    holdout: float = Field(
        0.2, ge=0.0, lt=1.0, description="share of subsets held out to measure the fit (R^2, Spearman)"
    )


def indicator_gram(x: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """``x.T @ x`` of a 0/1 matrix (bool, subsets by rows), exactly.

    Its entries are counts of subsets, integers, which float32 holds exactly below 2**24
    (float64 above): so the products are taken in float32, half the work and memory of
    float64, ``chunk`` rows at a time, and any summation order (BLAS threads, the split into
    train and held-out rows) gives the same counts: the Gram matrices of two sets of rows
    add up to that of both."""
    x = np.asarray(x, dtype=bool)
    dtype = np.float32 if len(x) < 2**24 else np.float64
    gram = np.zeros((x.shape[1], x.shape[1]), dtype=dtype)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].astype(dtype)
        gram += part.T @ part
    return gram


def fit_ridge(
    x: np.ndarray, y: np.ndarray, ridge: float, gram: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Closed-form ridge regression with an unpenalized intercept: (coef, intercept).

    For 0/1 indicators (``x`` bool, the surrogate's subsets) the centered Gram matrix comes
    from the exact counts of :func:`indicator_gram` (``gram``, when the caller has it) less
    the rank-one term of the column means, without a float copy of ``x``; other ``x`` is
    centered first. The ridge is added on the diagonal in place and the system (positive
    definite for ``ridge`` > 0) solved by Cholesky, in place; by LU where rounding leaves it
    not quite positive definite (a tiny ridge, fewer subsets than sources). Over 5,000 sources and 5,000
    subsets the surrogate's two fits held float64 copies of the subsets and n x n float64
    matrices (the identity among them) and ran LU: 920 MB and 15.2 s, against 402 MB and 8.0 s
    (``benchmarks/surrogate_fit.py``)."""
    y = np.asarray(y, dtype=float)
    y_mean = y.mean()
    yc = y - y_mean
    if x.dtype == bool:
        colsum = x.sum(axis=0, dtype=np.int64).astype(float)
        x_mean = colsum / len(y)
        counts = indicator_gram(x) if gram is None else gram

        def system() -> np.ndarray:
            a = counts.astype(float)
            for start in range(0, len(a), 1024):  # a -= count * outer(x_mean, x_mean), a block of rows at a time
                a[start : start + 1024] -= np.outer(colsum[start : start + 1024], x_mean)
            return a

        b = np.zeros(x.shape[1])
        for start in range(0, len(x), 2048):
            b += x[start : start + 2048].T.astype(float) @ yc[start : start + 2048]
        b -= x_mean * yc.sum()
    else:
        x_mean = x.mean(axis=0)
        xc = x - x_mean
        b = xc.T @ yc

        def system() -> np.ndarray:
            return xc.T @ xc

    a = system()
    a[np.diag_indices_from(a)] += ridge
    try:  # a is symmetric: its transpose, in Fortran order, is factored in place (a itself would be copied)
        coef = scipy.linalg.cho_solve(scipy.linalg.cho_factor(a.T, overwrite_a=True, check_finite=False), b,
                                      check_finite=False)
    except np.linalg.LinAlgError:  # a ridge too small for the rounding of fewer subsets than sources: LU, as before
        a = system()
        a[np.diag_indices_from(a)] += ridge
        coef = np.linalg.solve(a, b)
    return coef, float(y_mean - x_mean @ coef)


@STRATEGIES.register("surrogate", "ridge surrogate of L_hat on subset indicators")
class Surrogate(_RandomSubsetsStrategy):
    """Fit L_hat(S) ~ b + sum_k c_k [k in S] by ridge on random subsets; score = -c_k.

    A share of the subsets is held out to report how well the linear surrogate predicts
    unseen subsets (R^2 and Spearman in ``diagnostics``); the scores come from a refit on
    all subsets. With the same seed, m and alpha it estimates the same subsets as
    ``random_ensemble``.
    """

    Params = SurrogateParams

    def score_sources(  # type: ignore[override]
        self, memo: SubsetMemo, context: SearchContext, params: SurrogateParams, masks: np.ndarray,
        losses: np.ndarray, size: int,
    ) -> tuple[np.ndarray, list[str], dict[str, Any]]:
        ok = np.isfinite(losses)
        x, y = masks[ok], losses[ok]  # bool: fit_ridge counts the Gram matrix exactly
        notices: list[str] = []
        diagnostics: dict[str, Any] = {}
        n_hold = round(params.holdout * len(y))
        gram: np.ndarray | None = None  # the subsets' exact Gram matrix, once the holdout fit has counted it
        if params.holdout > 0 and (n_hold < 2 or len(y) - n_hold < 2):
            distinct = math.comb(len(context.sources), size)
            more = ("increase m" if len(masks) < distinct else
                    f"these are all the distinct subsets of size {size}, so a larger m cannot add any")
            notices.append(
                f"Too few subsets ({len(y)}) to hold out {params.holdout:.0%} for a fit check; {more}."
            )
        elif n_hold >= 2:
            perm = np.random.default_rng(context.seed + 1).permutation(len(y))
            hold, train = perm[:n_hold], perm[n_hold:]
            gram = indicator_gram(x[train])
            coef, intercept = fit_ridge(x[train], y[train], params.ridge, gram)
            pred = x[hold] @ coef + intercept
            gram += indicator_gram(x[hold])  # exact counts: now the Gram matrix of all the subsets
            ss_tot = float(((y[hold] - y[hold].mean()) ** 2).sum())
            r2 = 1.0 - float(((y[hold] - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else None
            from subsetctl.estimate.calibrate import spearman

            rho = spearman(pred, y[hold])  # NaN when either side is constant
            diagnostics.update(
                holdout_r2=r2,
                holdout_spearman=None if rho is None or not np.isfinite(rho) else float(rho),
                n_train=len(train),
                n_holdout=int(n_hold),
            )
        coef, intercept = fit_ridge(x, y, params.ridge, gram)
        diagnostics["intercept"] = intercept
        scores = -coef
        notices += in_all_or_none(x, memo.sources, "Increase m.")[1]  # a constant column: its centered fit leaves 0
        return scores, notices, diagnostics


#: The most sources ``exhaustive`` takes, whatever its ``max_sources`` (2^20 subsets).
EXHAUSTIVE_MAX_SOURCES = 20


class ExhaustiveParams(StrategyParams):
    """Limits of the exhaustive search."""

    max_sources: int = Field(
        12, ge=1, le=EXHAUSTIVE_MAX_SOURCES, description="refuse to run above this many sources (2^n subsets)"
    )


def _too_many_for_exhaustive(n: int, params: ExhaustiveParams) -> str | None:
    """Why ``exhaustive`` refuses ``n`` sources (more than ``params.max_sources``), and what to
    use instead, or None. Raising max_sources is advised only where it can help (up to
    :data:`EXHAUSTIVE_MAX_SOURCES`), and 2^n is written in full only while it is short: for
    1,000 sources it ran to 302 digits, with advice to raise max_sources, which stops at 20."""
    if n <= params.max_sources:
        return None
    count = f"2^{n} = {count_text(2**n)}" if n <= 40 else f"2^{n}"
    if n > EXHAUSTIVE_MAX_SOURCES:
        limit, instead = f"the most it can take ({EXHAUSTIVE_MAX_SOURCES} sources, whatever its max_sources)", ""
    else:
        limit = f"its limit of max_sources={params.max_sources}"
        instead = (f", or raise its params.max_sources under search.strategies to {n} (at most "
                   f"{EXHAUSTIVE_MAX_SOURCES})")
    return (f"The exhaustive strategy would estimate {count} subsets of {n} sources, above {limit}. Use "
            f"'random_ensemble' (or 'surrogate') for this many sources{instead}.")


@STRATEGIES.register("exhaustive", "estimate every subset (small n) and keep the best")
class Exhaustive(Strategy):
    """Estimate all 2^n subsets and keep the one with the lowest L_hat.

    Scores are the mean-difference scores over all subsets (the Banzhaf value of each
    source under L_hat), so they measure the absolute effect of adding a source.
    """

    Params = ExhaustiveParams

    @classmethod
    def max_subsets(cls, params: ExhaustiveParams, n_sources: int) -> int | None:  # type: ignore[override]
        return 2 ** n_sources

    @classmethod
    def check_spec(cls, params: ExhaustiveParams, n_sources: int, earlier: list[str]) -> str | None:
        return _too_many_for_exhaustive(n_sources, params)

    def run(
        self, estimator: SubsetEstimator, context: SearchContext, params: ExhaustiveParams
    ) -> StrategyResult:
        n = len(estimator.sources)
        refusal = _too_many_for_exhaustive(n, params)
        if refusal:
            raise UserError(refusal)
        memo = SubsetMemo(estimator, context, self.name)
        codes = np.arange(2**n)
        masks = ((codes[:, None] >> np.arange(n)[None, :]) & 1).astype(bool)
        losses = memo.losses(masks)
        if not np.isfinite(losses).any():
            raise NoFiniteEstimate(
                "The estimator gave no finite estimate for any subset (every one is NaN or infinite); check "
                "the estimator settings (estimate.*, e.g. a larger estimate.lam) or, for a plugin estimator, "
                "its code."
            )
        scores, notices = mean_difference_scores(  # every subset was estimated: the others failed
            masks, losses, memo.sources, advice="The estimator gave no finite estimate for the subsets that would "
            "tell (check the estimator's notices).")
        lowest = int(np.nanargmin(losses))
        # subsets within rounding noise of the lowest are a tie: keep the fewest sources (a source that
        # repeats the target's train rows changes no fast estimate, yet won the tie by 1e-10)
        tied = np.flatnonzero(losses <= losses[lowest] + SCORE_NOISE)
        best = int(tied[np.lexsort((losses[tied], masks[tied].sum(axis=1)))[0]])
        if masks[best].sum() < masks[lowest].sum():
            notices.append(f"The subset {', '.join(memo.names(masks[lowest]))} is estimated lower than the pick "
                           f"({', '.join(memo.names(masks[best])) or 'the target only'}) by less than "
                           f"{SCORE_NOISE:g}, rounding noise of the estimates (e.g. a source that repeats rows the "
                           "target already has): of such tied subsets the one with the fewest sources is kept.")
        return StrategyResult(
            strategy=self.name,
            selected=memo.names(masks[best]),
            scores=_scores_dict(memo.sources, scores),
            estimated_loss=float(losses[best]),
            trace=memo.trace,
            notices=notices + memo.notices(),
            diagnostics={"n_subsets": len(masks), **memo.diagnostics()},
        )
