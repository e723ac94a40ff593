"""The search stage: run every strategy of the spec against the (calibrated) estimator.

All strategies share one persistent results store, kept in ``.subsetctl/cache/search/``
under a key of the estimator, lambda, its settings, features and sources (for an
estimator that fine-tunes for real, what a real fine-tune depends on instead; see
:func:`_store_dir`): a subset estimated by one
strategy is never estimated again by another, a killed search resumes without
re-estimating what finished, and a search re-run for another reason (a strategy added,
other parameters, another executor) reuses every estimate it can. The store holds raw
estimates; selections.json gives each selection's (and baseline's) raw and calibrated one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import shutil
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from subsetctl import pipeline
from subsetctl.pipeline import Stage, StageContext
from subsetctl.project import Project, atomic_write_json, fingerprint, touch
from subsetctl.reporter import AboutThisRun, ShownInResults
from subsetctl.spec import MIN_CALIBRATION_K, Spec, fingerprint_dump
from subsetctl.stages import common
from subsetctl.stages.calibrate import read_calibration
from subsetctl.stages.features import (
    SIMULATED_FINETUNE_KEYS,
    estimator_settings,
    executor_kwargs,
    load_features,
    make_estimator,
    with_unread_estimator_keys_at_defaults,
)

SELECTIONS = "selections.json"
#: under what the search's provenance.json ``threads`` (report.json's ``reused_threads``) lists
#: the thread counts of the estimates it took from the store: ``{"threads": ..., "count": n}``
#: for each (``threads`` null for estimates an earlier subsetctl computed, which recorded none)
REUSED_ESTIMATES = "subset estimates"
SUBSET_CACHE = ("cache", "search")
#: Subsets of a strategy's trace kept in selections.json (the lowest estimated losses);
#: every estimate stays in the search cache.
TRACE_KEPT = 10_000
#: ... and at most this many source names in all, per strategy: a subset of backward over
#: 1,000 sources lists ~1,000, and 10,000 of them made selections.json 100 MB.
TRACE_NAMES_KEPT = 200_000


def real_losses_calibration(cal: Any, estimator: str) -> Any:
    """The calibration selections.json records for a search whose ``estimator`` fine-tunes
    for real (true_finetune): off, and without the figures of the one calibrate fitted to
    another estimator (its Spearman, held-out error, per-lambda rows and notes: report.json
    gave them as true_finetune's); the verify table keeps them, under that estimator's name."""
    return dataclasses.replace(cal, enabled=False, estimator=estimator, spearman=float("nan"),
                               loo_median_rel_err=float("nan"), per_lambda={}, notes=[
                                   (f"the search uses {estimator}, which fine-tunes for real: its estimates are "
                                   "real losses and are not calibrated")])


def applied_calibration(cal: Any, in_process: bool) -> dict[str, Any]:
    """The calibration selections.json records: what the search applied (the estimator, lambda
    and map, calibrate's ``choice`` part: :meth:`~subsetctl.stages.calibrate.CalibrateStage.output_parts`),
    not calibrate's figures (each lambda's rows, the chosen one's Spearman and held-out error,
    the notes on the grid). The search reads the choice alone, so a new lambda grid or
    estimate.lam that chose the same keeps it, and figures copied here named lambdas the spec
    no longer has; calibrate's calibration.json holds them, and report.json takes them from
    there. A search whose estimator fine-tunes for real (``in_process``) records its own whole
    calibration (:func:`real_losses_calibration`: its note, no figures, none stale), with no
    lambda nor a map: report.json shows it as it is (README: ``spearman`` and
    ``loo_median_rel_err`` null, ``per_lambda`` empty), calibrate's being another estimator's."""
    if in_process:
        return {**cal.to_dict(), "lam": None, "slope": 1.0, "intercept": 0.0}
    return {key: value for key, value in cal.to_dict().items()
            if key in ("estimator", "lam", "enabled", "slope", "intercept")}


def _calibrated(cal: Any, value: float | None) -> float | None:
    """The calibrated estimate; None when calibration is off (its map is the identity then,
    and a "calibrated" copy of the raw value would claim a calibration that did not happen)."""
    if value is None or not math.isfinite(value) or not cal.enabled:
        return None
    return float(np.asarray(cal.apply(np.array([value])))[0])


def _real_fine_tune_inputs(ctx: StageContext) -> list[dict[str, Any]]:
    """What one real fine-tune from theta* (verify's budget, its first kind) depends on:
    theta* and the data (meta_init's output digest and the data stage's train side, see
    :data:`common.TRAIN_SIDE`), the model, verify's budget and the project seed. (meta_init's settings too, though a real fine-tune takes none of them any
    more: θ*'s digest already covers what they change, and dropping them would orphan the
    estimates cached before.) Today's form first, then those an earlier subsetctl wrote
    (with a local model folder's path, see :func:`common.model_key`; with the data stage's
    whole output digest, its test rows too)."""
    from subsetctl.pipeline import output_digest

    spec = ctx.spec
    verify = spec.verify
    dumped = fingerprint_dump(spec)
    rest = {
        "theta_star": ctx.upstream_manifest("meta_init").get("output_digest"),
        "data": output_digest(ctx.upstream_manifest("data"), common.TRAIN_SIDE["data"]),
        "meta_init": dumped["meta_init"], "seed": spec.project.seed,
        # with accumulation, runs cached before took grad_accum batches a step: not these
        **({"one_batch_per_step": True} if spec.meta_init.grad_accum != 1 else {}),
        "verify": {"kind": verify.kinds[0], "steps": verify.steps, "batch_size": verify.batch_size,
                   "lr_ce": verify.lr_ce, "lr_surrogate": verify.lr_surrogate},
    }
    model, earlier = common.model_key(ctx)
    datas = [rest["data"], *common.data_keys_before(ctx.upstream_manifest("data"))]
    return [{**m, **rest, "data": data} for data in datas for m in [model, *earlier]]


#: Subsets estimated between two writes of the results store (at the least): what a
#: stopped search loses at most.
RESULTS_CHUNK = 256


def results_chunk_size(spec: Spec) -> int:
    """Subsets handed to the executor at once: :data:`RESULTS_CHUNK`, or enough for every
    worker to get one task of ``executor.batch_size`` subsets when that is more (a smaller
    chunk would cap the batch size the spec asks for and leave workers idle)."""
    return max(RESULTS_CHUNK, (spec.executor.batch_size or 0) * spec.executor.n_jobs)


def _fine_tune_counter(ctx: StageContext, estimator: str, computed: Any) -> Any:
    """A progress callback for an estimator that fine-tunes for real: one line per
    finished fine-tune (``computed()`` counts them) with the time each took on average;
    each is as long as a real fine-tune, and a strategy may ask for hundreds (validate
    warns about that)."""
    import time

    started = time.perf_counter()
    said = {"count": 0}

    def progress(done: int, total: int) -> None:
        count = computed()
        if count > said["count"]:
            said["count"] = count
            each = (time.perf_counter() - started) / count
            ctx.reporter.info(f"search: {estimator} has fine-tuned {count} subset(s), {each:.2g} s each "
                              f"({done} of the {total} this step of the search asks for)")

    return progress


#: What the stage estimates besides its strategies' subsets, and how many: its two baselines.
BASELINE_SUBSETS = ("the all and target_only baselines", 2)
#: the reuse clause of :meth:`SearchStage.work`, which :meth:`SearchStage.planned_work` counts
STORED_REUSED = "stored ones reused"


def search_subset_bounds(spec: Spec) -> tuple[int, str, list[str]]:
    """At most how many distinct subsets a search of ``spec`` estimates: the sum of each
    strategy's :meth:`~subsetctl.search.base.Strategy.max_subsets` and the baselines'
    (:data:`BASELINE_SUBSETS`), but no more than the 2^n subsets of n sources there are (a
    search estimates each once: exhaustive over 6 sources beside forward said "up to 192"
    of 64), the counts by label ("exhaustive: 256, forward: 16, the all
    and target_only baselines: 2") and the labels of the strategies not counted: their
    ``max_subsets`` says None, or fails, or their name or params are wrong (which `validate`
    reports). The one count of `plan`'s work line and of validate's warning about real
    fine-tunes."""
    from subsetctl.errors import UserError
    from subsetctl.plugin_guard import strategy_hook
    from subsetctl.registry import STRATEGIES
    from subsetctl.search.base import count_text, parse_params

    counts: list[tuple[str, int]] = []
    unknown: list[str] = []
    for i, entry in enumerate(spec.search.strategies):
        label = entry.label or entry.name
        try:
            cls = STRATEGIES.get(entry.name)
            params = parse_params(cls, entry.params, f"search.strategies[{i}].params", entry.label)
            bound = strategy_hook(cls, entry.name, STRATEGIES.described(entry.name), "max_subsets", params,
                                  len(spec.sources))
        except (UserError, ValueError):  # reported by the checks of the strategies themselves
            bound = None
        if bound is None:
            unknown.append(label)
        else:
            counts.append((label, bound))
    counts.append(BASELINE_SUBSETS)
    total, parts = sum(c for _, c in counts), ", ".join(f"{label}: {count_text(c)}" for label, c in counts)
    distinct = 2 ** len(spec.sources)
    if total > distinct:  # the strategies' counts overlap: no search estimates more subsets than exist
        # (those of strategies that do not say are among them too)
        return distinct, f"all there are of {len(spec.sources)} sources; by strategy {parts}", []
    return total, parts, unknown


def known_subsets(spec: Spec) -> tuple[np.ndarray, list[str]]:
    """The distinct subsets a search of ``spec`` asks for whatever the estimates say, packed
    (``np.packbits``), and what they are: the all and target_only baselines', and those of
    the built-in strategies that know theirs before they run
    (:meth:`~subsetctl.search.base.Strategy.known_subsets`: forward's and backward's start
    and first step). A plugin strategy's are not asked for (one that subclasses ``forward``
    may ask for others); nor a strategy's whose params are wrong (which `validate` reports)."""
    from subsetctl.errors import UserError
    from subsetctl.estimate.rowindex import distinct_rows
    from subsetctl.registry import STRATEGIES
    from subsetctl.search.base import parse_params

    n = len(spec.sources)
    masks = [np.packbits(np.zeros((1, n), dtype=bool), axis=1), np.packbits(np.ones((1, n), dtype=bool), axis=1)]
    said = [BASELINE_SUBSETS[0]]
    for i, entry in enumerate(spec.search.strategies):
        try:
            if STRATEGIES.origin(entry.name) != "built-in":
                continue
            cls = STRATEGIES.get(entry.name)
            known = cls.known_subsets(parse_params(cls, entry.params, f"search.strategies[{i}].params", entry.label), n)
        except (UserError, ValueError):
            continue
        if known is not None:
            masks.append(known[0])
            said.append(f"{entry.label or entry.name}'s {known[1]}")
    packed = np.concatenate(masks)
    return packed[distinct_rows(packed)[0]], said


def search_estimators(spec: Spec) -> list[str]:
    """The estimators the search may use: the spec's, or one calibration chooses among
    ``calibrate.estimators`` (when verify and calibration are on)."""
    chooses = spec.calibrate.enabled and spec.verify.enabled
    return list(dict.fromkeys([spec.estimate.estimator, *(spec.calibrate.estimators if chooses else [])]))


def estimator_name(spec: Any, cal: Any) -> str:
    """The estimator the search uses: the one calibration chose, except that a model-backed
    estimator named by the spec (true_finetune, which calibration cannot evaluate) stays."""
    from subsetctl.registry import ESTIMATORS

    if getattr(ESTIMATORS.get(spec.estimate.estimator), "needs_model", False):
        return spec.estimate.estimator
    return cal.estimator or spec.estimate.estimator


def _store_dir(ctx: StageContext, estimator: str, key: str, sources: list[str]) -> Path:
    """Where the search keeps its subset estimates: ``.subsetctl/cache/search`` under a key
    of all they depend on (``key``; plus the sources, subsetctl's results version and where the
    estimator comes from, with a plugin's code), so a search re-run for another strategy
    list reuses them. ``key`` holds, for an estimator working on the cached gradients, the
    estimator, lambda, its settings and the gradient features; for a model-backed one
    (``true_finetune``: real fine-tunes from theta*, minutes each) what a real fine-tune
    depends on (:func:`_real_fine_tune_inputs`)."""
    from subsetctl import RESULTS_VERSION
    from subsetctl.registry import ESTIMATORS

    origin = ESTIMATORS.origin(estimator)
    where: dict[str, Any] = {"key": key, "sources": sources, "version": RESULTS_VERSION, "origin": origin,
             "plugins": [] if origin == "built-in" else list(ctx.spec.plugins)}
    code = ESTIMATORS.code_fingerprint(estimator, ctx.project.root)
    if code is not None:  # an edited plugin estimator must not reuse its old estimates
        where["code"] = code
    return ctx.project.state_dir.joinpath(*SUBSET_CACHE, fingerprint(where))


class _OwnErrors:
    """The estimator as a strategy sees it: errors raised while estimating (a dask worker
    lost, a store that cannot be written) are marked as subsetctl's own, so that they are
    not blamed on a plugin strategy that asked for the estimates; ``where`` names that
    strategy in the refusals of its masks ("Strategy 'mine' (plugin ...)")."""

    def __init__(self, estimator: Any, where: str) -> None:
        self._estimator, self._where = estimator, where

    def estimate(self, masks: Any) -> Any:
        self._check_masks(masks)
        try:
            return self._estimator.estimate(masks)
        except Exception as exc:
            exc.raised_by_subsetctl = True  # type: ignore[attr-defined]
            raise

    @property
    def sources(self) -> list[str]:
        """A copy of the estimator's source names: a strategy reordering them in place
        (``estimator.sources.reverse()``) reordered the features' own list, and the estimates
        after it were given to other sources without a word."""
        return list(self._estimator.sources)

    def masks_for(self, subsets: Any) -> Any:
        """The estimator's ``masks_for``, its refusal (an unknown name, a text) naming the
        strategy that asked."""
        from subsetctl.errors import UserError

        try:
            return self._estimator.masks_for(subsets)
        except UserError as exc:
            raise UserError(f"{self._where}, calling estimator.masks_for: {exc}") from None

    def _check_masks(self, masks: Any) -> None:
        """Refuse masks of another shape or kind than the estimator takes, naming the strategy
        (names instead of masks, ``[["a"]]``, were "Subset masks must have shape (m, 3), got
        (1, 1)", which named neither the plugin nor how to make them)."""
        from subsetctl.errors import UserError

        n = len(self._estimator.sources)
        try:
            arr = np.asarray(masks)
        except (TypeError, ValueError):  # ragged lists
            arr = np.asarray(masks, dtype=object)
        if arr.size == 0 or (arr.ndim in (1, 2) and arr.shape[-1] == n and arr.dtype.kind in "biuf"):
            return
        what = f"of shape {arr.shape}" + (f" holding {arr.dtype.name} values" if arr.dtype.kind not in "biuf" else "")
        raise UserError(f"{self._where} passed estimator.estimate masks {what}; they must be 0/1 or bool of shape "
                        f"(m, {n}), one column per source in context.sources order: estimator.masks_for([[name, "
                        "...], ...]) makes them from source names.")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._estimator, name)


def _progress_on(task: Any, strategies_done: int) -> Any:
    """A strategy's progress callback (``SearchContext.progress``): what it reports (the
    subsets ``SubsetMemo`` has estimated, a plugin's ``context.report``) is shown on the
    search's progress line, which counts the strategies done, so that a long search does
    not sit silent until a strategy finishes."""

    def progress(message: str, done: int, total: int) -> None:
        count = f"{done}/{total}"
        task.update(strategies_done, now=message if count in message else f"{message} ({count})")

    return progress


#: what to fix when the estimator gave no finite estimate (the end of three messages)
_ESTIMATOR_FIX = "the estimator's code if it is a plugin, or its settings (estimate.*, e.g. a larger estimate.lam)"


def _no_finite_estimate(batch: Any, estimator_used: str, so_far: str = "") -> str | None:
    """What to say when the store's estimates (``batch``: ``store.estimates()``) hold
    estimates and not one of them is finite (the estimator failed on every subset),
    else None."""
    from subsetctl.registry import ESTIMATORS

    if not len(batch.loss) or np.isfinite(np.asarray(batch.loss, dtype=float)).any():
        return None
    return (f"The estimator {estimator_used!r} ({ESTIMATORS.described(estimator_used)}) gave no finite estimate for "
            f"any of the {len(batch.loss)} subsets estimated{so_far} (every one is NaN or infinite)")


def _final_estimated_above_target_only(final: str, results: dict[str, Any], baselines: dict[str, Any]) -> str | None:
    """A warning when the final pick (some sources) is estimated worse than the target alone:
    a strategy that scores sources one by one (random_ensemble, surrogate: averages over
    many subsets) can keep sources that each help on average but hurt together, and nothing
    said so; the report's table showed the two numbers apart. Raw estimates are compared
    (a calibration map orders them alike)."""
    record = results.get(final) or {}
    picked, estimate = record.get("selected") or [], record.get("estimated_loss_raw")
    alone = baselines["target_only"]["estimated_loss_raw"]
    if not picked or estimate is None or not math.isfinite(alone) or not estimate > alone:
        return None
    candidates = {**{label: r.get("estimated_loss_raw") for label, r in results.items()},
                  **{name: b["estimated_loss_raw"] for name, b in baselines.items()}}
    best, lowest = min(((k, v) for k, v in candidates.items() if v is not None and math.isfinite(v)),
                       key=lambda kv: kv[1])
    from subsetctl.report.cells import loss_cell, loss_digits

    digits = loss_digits([estimate, alone, lowest])  # as the report's table writes them: 1.400, 1.390
    estimate_text, alone_text, lowest_text = (loss_cell(v, digits) for v in (estimate, alone, lowest))
    named = "the target alone's" if best == "target_only" else f"{best}'s pick"
    strategy = record.get("strategy", final)
    if strategy in ("random_ensemble", "surrogate"):  # the built-ins whose scores average over many subsets
        why = "Per-source scores average over many subsets, so sources that each help on average can hurt together. "
    else:  # a baseline (random: no scores at all), backward stopped early, a plugin: no word on averages
        why = f"{strategy} does not weigh its pick against the target alone. "
    return (f"The final pick, {final}'s {len(picked)} source{'s' if len(picked) != 1 else ''}, is estimated at "
            f"L_hat {estimate_text} (raw), above the target alone's {alone_text}: by the estimates, adding "
            f"{'them' if len(picked) != 1 else 'it'} hurts. {why}"
            f"The lowest estimate here is {named} ({lowest_text}); to pick by the subset's own estimate, make "
            "search.final a strategy that compares its candidates with the target alone (forward, "
            "exhaustive, or select: sweep).")


def _all_estimates_alike(losses: Any, lam: float | None) -> str | None:
    """What to say when two or more subsets were estimated and every finite estimate is the
    same number (up to rounding): the search then ranks nothing, and each strategy's pick is
    a tie broken by order, else None. A lambda so large that the fitted step is zero does it
    (``estimate.lam: 1e300``)."""
    finite = np.asarray(losses, dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite) < 2 or float(np.ptp(finite)) > 1e-9 * max(1.0, float(np.max(np.abs(finite)))):
        return None
    cause = (f"lambda {lam:g} is likely so large that the fitted step is zero for every subset; lower "
             "estimate.lam (or the values of calibrate.lambda_grid when calibration chooses it)"
             if lam is not None and lam > 1 else
             "check whether the sources only repeat the target's rows (the data stage's warnings), then the "
             "gradients stage's output (gradients.d, the model's LoRA layers) and the estimator")
    return (f"All {len(finite)} subsets estimated got the same estimated loss ({float(finite[0]):.6g}): the "
            f"estimates cannot tell the subsets apart, so every strategy's pick is arbitrary. {cause[0].upper()}"
            f"{cause[1:]}, then run again.")


def _no_finite_estimate_for_strategy(batch: Any, estimator_used: str) -> str:
    """What to say when a strategy found no finite estimate among its own subsets while
    the store (``batch``: ``store.estimates()``) may hold finite ones from the
    strategies before it: the estimator is still the one at fault, and is named."""
    from subsetctl.registry import ESTIMATORS

    failed = _no_finite_estimate(batch, estimator_used, " so far")
    if failed:
        return failed
    finite = int(np.isfinite(np.asarray(batch.loss, dtype=float)).sum())
    return (f"The estimator {estimator_used!r} ({ESTIMATORS.described(estimator_used)}) gave no finite estimate for "
            f"any of the subsets this strategy estimated (NaN or infinite; it gave a finite one for {finite} of "
            f"the {len(batch.loss)} subsets estimated so far)")


def _run_strategy(cls: Any, name: str, label: str, estimator: Any, context: Any, params: Any,
                  estimator_failed: Any = None) -> Any:
    """Run one strategy and check what it returns. A third-party strategy's failure is the
    plugin author's to fix, so it is reported as such (estimates made so far stay in the
    store), and a result that is not a StrategyResult, or selects sources the project
    does not have, is refused here rather than breaking finetune later.

    ``estimator_failed``: a callable giving what to say when the estimator has given no
    finite estimate so far (None otherwise); a strategy that fails on such estimates
    (numpy's "All-NaN slice") is most likely failing because of the estimator, so the
    message names it first. Called with ``this_strategy=True`` when the strategy itself
    found no finite estimate among its subsets (NoFiniteEstimate), it always says what to
    say, naming the estimator even when earlier strategies stored finite estimates."""
    from subsetctl.errors import UserError
    from subsetctl.plugin_guard import prints_to_stderr
    from subsetctl.registry import STRATEGIES
    from subsetctl.search.base import NoFiniteEstimate, StrategyResult, SubsetTrace

    origin = STRATEGIES.described(name)
    where = f"Strategy {label!r} ({origin})"
    sources = list(context.sources)  # as they were: a plugin may change its context's list (its own copy)
    try:
        with contextlib.nullcontext() if origin == "built-in" else prints_to_stderr():
            result = cls().run(estimator if origin == "built-in" else _OwnErrors(estimator, where), context, params)
    except NoFiniteEstimate:
        failed = estimator_failed(this_strategy=True) if estimator_failed is not None else None
        if not failed:
            raise
        raise UserError(f"Strategy {label!r} has no subset to choose from. {failed}. Fix {_ESTIMATOR_FIX}, then "
                        "run again.") from None
    except (UserError, KeyboardInterrupt):
        raise
    except (Exception, SystemExit) as exc:  # sys.exit() in a plugin too: not a silent exit
        if origin == "built-in" or getattr(exc, "raised_by_subsetctl", False):
            raise
        from subsetctl.plugin_guard import blamed_on_plugin, what_it_did

        failed = estimator_failed() if estimator_failed is not None else None
        if failed:
            raise blamed_on_plugin(UserError(
                f"Strategy {label!r} ({origin}) {what_it_did(exc, cls)}. {failed}, which is most likely why: fix "
                f"{_ESTIMATOR_FIX}, then run again."
            ), exc, cls) from exc
        read_only = (" context.features' arrays are read-only (the estimator and the other strategies read "
                     "them): copy one (np.array(...)) to change it." if isinstance(exc, ValueError)
                     and "read-only" in str(exc) else "")
        raise blamed_on_plugin(UserError(
            f"Strategy {label!r} ({origin}) {what_it_did(exc, cls)}.{read_only} This is an error in the "
            "plugin, not in subsetctl: fix it and run again (the subset estimates made so far are kept)."
        ), exc, cls) from exc
    if not isinstance(result, StrategyResult):
        raise UserError(f"{where} returned a {type(result).__name__}; a strategy's run() must return a "
                        "subsetctl.search.base.StrategyResult.")
    try:  # a list once: a generator was used up by the checks below and became [] (the target alone)
        selected = None if isinstance(result.selected, (str, bytes)) else list(result.selected)
    except TypeError:  # selected=None or a number: not a subsetctl bug
        selected = None
    if selected is None or not all(isinstance(s, str) for s in selected):
        raise UserError(f"{where} returned selected={result.selected!r}; it must be a list of source names "
                        "(e.g. ['a', 'b'], or [] for the target alone).")
    result.selected = selected
    known = set(sources)  # (the list: a scan per name, 0.25 s a strategy over 3,000 sources)
    unknown = [s for s in result.selected if s not in known]
    if unknown:
        raise UserError(f"{where} selected {', '.join(map(repr, unknown))}, which "
                        f"{'is not a source' if len(unknown) == 1 else 'are not sources'} of this "
                        f"project (sources: {', '.join(sources)}).")
    repeated = sorted(s for s, count in Counter(result.selected).items() if count > 1)
    if repeated:  # a fine-tune would train on those sources' rows twice
        raise UserError(f"{where} selected {', '.join(map(repr, repeated))} more than once; a selection is a "
                        "set of sources, each listed once.")
    if not isinstance(result.scores, Mapping):  # a list of numbers was taken for a list of source names
        raise UserError(f"{where} returned scores={result.scores!r:.80}; scores must map source names to numbers "
                        "(e.g. {'a': 0.3, 'b': -0.1}, or {} for none).")
    result.notices = _checked_notices(result.notices, where)
    shape = "scores map source names to numbers, trace entries {'subset': [...], 'loss': number}"
    try:
        # a memo's trace says which names it holds without making a list of names per subset
        traced = result.trace.named() if isinstance(result.trace, SubsetTrace) else (
            name for step in result.trace for name in _trace_subset(step))
        named = [*result.scores, *traced]
        strangers = sorted({repr(name) for name in named if name not in known})
    except (TypeError, AttributeError):  # scores=None, a trace entry that is no mapping, subset: 3
        raise UserError(f"{where} returned scores or a trace of the wrong shape; {shape}.") from None
    if strangers:  # a report of scores for sources that are not there (or keys that cannot be sorted)
        raise UserError(f"{where} returned scores or trace subsets naming {', '.join(strangers[:5])}, which are "
                        f"not sources of this project (sources: {', '.join(sources)}); {shape}.")
    # (a memo's packed trace holds each source once by construction)
    twice = None if isinstance(result.trace, SubsetTrace) else _first_repeated_trace_subset(result.trace)
    if twice is not None:  # stored and reported as evaluated, a subset no estimate was made for
        raise UserError(f"{where} returned a trace entry whose subset {twice!r} names a source more than "
                        "once; a trace subset is a set of sources, each listed once.")
    chosen = set(result.selected)
    result.selected = [name for name in sources if name in chosen]  # in source order
    # its registered name, as run_strategy gives it: messages and the store name the strategy by it
    # (strategy=None, or a name copied from another plugin, was "None does not weigh its pick ...")
    result.strategy = name
    said = result.estimated_loss
    # the strategy did not say (or said NaN, which it may have made itself): subsetctl's own estimate of its
    # pick, which the store already holds when the strategy asked the estimator; a NaN was warned about as
    # "the estimator gave no finite estimate" although the estimator had never been asked
    if said is None or (isinstance(said, numbers.Real) and not math.isfinite(float(said))):
        result.estimated_loss = float(estimator.estimate(estimator.masks_for([result.selected])).loss[0])
    try:  # with the trace kept, as the stage stores it: the whole trace made every name of every subset
        result.to_dict(trace_limit=TRACE_KEPT, trace_names_limit=TRACE_NAMES_KEPT)
    except Exception as exc:  # e.g. estimated_loss="low"
        if origin == "built-in":
            raise
        raise UserError(f"{where} returned a StrategyResult that cannot be stored ({type(exc).__name__}: {exc}); "
                        "estimated_loss and scores must be numbers, trace entries {'subset': [...], 'loss': "
                        "number}.") from exc
    return result


def _leave_out_empty_sources(result: Any, features: Any) -> None:
    """Take the sources with no train rows (a split that gave a 1-row source's row to
    validation, a ``where`` matching nothing in train) out of ``result``'s pick, with a
    notice: fine-tuning on them adds nothing and their estimate is the pick's without them,
    but a strategy could pick one (random_ensemble's score of a source sampled in good
    subsets by chance), and the report listed it as chosen."""
    empty = {name for name, rows in zip(features.sources, features.source_train_x, strict=True) if not len(rows)}
    dropped = [name for name in result.selected if name in empty]
    if not dropped:
        return
    result.selected = [name for name in result.selected if name not in empty]
    one = len(dropped) == 1
    it, its = ("it", "its") if one else ("them", "their")
    result.notices = [*result.notices, (
        f"left {', '.join(map(repr, dropped))} out of its pick: {'it has' if one else 'they have'} no train rows "
        f"(all {its} rows went to validation or test), so fine-tuning on {it} adds nothing; the pick's estimate "
        f"is the same without {it}.")]


def _checked_notices(notices: Any, where: str) -> list[str]:
    """A plugin strategy's ``notices`` as a list of texts (once: a generator is used up by
    reading it), or a UserError naming the strategy (``where``) and what they must be: a
    text was warned about letter by letter, one warning each, and None was "cannot be stored
    (TypeError ...); estimated_loss and scores must be numbers"."""
    from subsetctl.errors import UserError

    if isinstance(notices, (str, bytes)):
        raise UserError(f"{where} returned notices={notices!r}; notices must be a list of sentences "
                        f"(e.g. [{notices!r}]).")
    try:
        listed = None if isinstance(notices, Mapping) else list(notices)
    except TypeError:
        listed = None
    if listed is None or not all(isinstance(notice, str) for notice in listed):
        raise UserError(f"{where} returned notices={notices!r:.80}; notices must be a list of sentences "
                        "(str), e.g. ['2 subsets failed to converge'], or [] for none.")
    return listed


def _first_repeated_trace_subset(trace: Any) -> list[Any] | None:
    """The first subset of a plugin's trace (a sequence of entries) that lists a source
    twice, or None."""
    for step in trace:
        subset = list(_trace_subset(step))
        if len(set(subset)) < len(subset):
            return subset
    return None


def _trace_subset(step: Any) -> Any:
    """A plugin's trace entry's ``subset``, the names it holds; TypeError (the wrong shape)
    for one given as a text, whose letters were taken for source names."""
    subset = step.get("subset") or []
    if isinstance(subset, (str, bytes)):
        raise TypeError("a trace subset is a text, not a list of names")
    return subset


def _on_dask(spec: Spec) -> str:
    """Where the estimates run when that is a Dask cluster (``plan``'s work of the search):
    ", on the Dask cluster at 'tcp://...' (executor.address)" or ", on a local Dask cluster of
    2 processes"; "" for the other backends, which run on this machine. Without it, plan said
    "estimates on the CPU" of a search whose estimates a cluster computes."""
    executor = spec.executor
    if executor.backend != "dask":
        return ""
    if executor.address:
        return f", on the Dask cluster at {executor.address!r} (executor.address)"
    return f", on a local Dask cluster of {executor.n_jobs} process{'es' if executor.n_jobs > 1 else ''}"


def _with_defaults_unset(sliced: dict[str, Any]) -> dict[str, Any]:
    """The search's slice with each strategy entry as :func:`_without_default_params` gives it."""
    search = sliced.get("search")
    if not (isinstance(search, dict) and isinstance(search.get("strategies"), list)):
        return sliced
    return {**sliced, "search": {**search, "strategies": [_without_default_params(s) for s in search["strategies"]]}}


def _without_default_params(entry: Any) -> Any:
    """A strategy entry of the search's slice without the params written at the strategy's
    default (``top_k: null``, ``threshold: 0.0``, or the override ``...params.top_k=null`` a
    sweep gives to go back to the default): they are the entry without them, so a search made
    without them is put back or kept up to date rather than run again. (A strategy the
    registry does not know is kept as written.)"""
    from subsetctl.registry import STRATEGIES

    params = entry.get("params") if isinstance(entry, dict) else None
    known = isinstance(params, dict) and entry.get("name") in STRATEGIES.names()
    fields = getattr(getattr(STRATEGIES.get(entry["name"]) if known else None, "Params", None), "model_fields", None)
    if not isinstance(fields, dict):
        return entry

    def at_default(name: str, value: Any) -> bool:
        if name not in fields or fields[name].is_required():
            return False
        default = fields[name].get_default(call_default_factory=True)
        return value == default and isinstance(value, bool) == isinstance(default, bool)  # (not 1 for True)

    unset = {name for name, value in params.items() if at_default(name, value)}
    return {**entry, "params": {k: v for k, v in params.items() if k not in unset}} if unset else entry


class SearchStage(Stage):
    """Runs the spec's strategies against one cached estimator and writes selections.json
    (each strategy's pick, scores and trace, the ``all`` and ``target_only`` baselines'
    estimates, the calibration used)."""

    name = "search"
    description = "estimate subsets and run the search strategies"
    after = ("gradients", "calibrate")
    #: calibrate's choice alone (estimator, lambda, map): its figures for each lambda are the report's
    reads_parts: ClassVar[dict[str, str]] = {"calibrate": "choice"}
    memory_keys = ("executor.n_jobs", "executor.batch_size")
    # not "executor": every backend gives the same estimates (only how fast)
    # verify's budget: what linear_sgd simulates by default (true_finetune's: extra_inputs)
    # not "plugins": the code of the plugin estimators and strategies it uses is among its
    # inputs (extra_inputs), so a plugin for another stage, or one not used, re-runs nothing
    spec_keys = ("project.seed", "estimate", "search", *SIMULATED_FINETUNE_KEYS)
    # a search recorded with them stays up to date (lambda: calibrate's output holds it)
    spec_keys_no_longer_read = ("plugins", "estimate.lam")
    # how many estimates came from the cache, computed with which library versions: not a result
    describes_only = (common.PROVENANCE,)

    def work(self, spec: Spec, forced: bool = False) -> str:
        """The strategies, the estimator (one that fine-tunes for real, true_finetune or a
        plugin's, or those calibration chooses among: :func:`estimator_name`), and at most how
        many subsets it estimates (:func:`search_subset_bounds`)."""
        from subsetctl.registry import fine_tunes_for_real
        from subsetctl.search.base import count_text

        n = len(spec.search.strategies)
        if fine_tunes_for_real(spec.estimate.estimator):
            how = f"each estimate a real fine-tune from theta* ({spec.estimate.estimator})"
        else:  # (calibrate.estimators: with enough verify fine-tunes, calibration may choose another)
            chooses = (spec.verify.enabled and spec.calibrate.enabled
                       and min(spec.verify.k, 2 ** min(len(spec.sources), 30)) >= MIN_CALIBRATION_K)
            extra = spec.calibrate.estimators if chooses else []
            names = list(dict.fromkeys([spec.estimate.estimator, *extra]))
            how = f"estimates on the CPU ({' or '.join(names)}{', as calibrate chooses' if len(names) > 1 else ''})"
            how += _on_dask(spec)
        total, parts, unknown = search_subset_bounds(spec)
        besides = f" besides those of {', '.join(unknown)}, which do{'es' if len(unknown) == 1 else ''} not say" \
            if unknown else ""
        stored = common.reused_unless_forced(forced, STORED_REUSED, "none taken from the store")
        return (f"{n} strateg{'ies' if n > 1 else 'y'}, {how}: up to {count_text(total)} subsets{besides} ({parts}; "
                f"shared ones are estimated once, {stored})")

    def planned_work(self, spec: Spec, forced: bool, project: Project, rerun: set[str],
                     resumes: bool = False, inputs: dict[str, Any] | None = None) -> str | None:
        """:meth:`work`, saying how many estimates the store `run` opens holds when the
        stages deciding its key (gradients, calibrate) are not re-run: "8 of 8 stored,
        reused" when the search may ask for every subset there is, else "120 stored, 7 of the
        12 it asks for in any case among them (...)" (:func:`known_subsets`: the baselines and a
        greedy strategy's start and first step; its later steps are known only as it runs). Read
        from the store's ``completed`` columns alone (:func:`~subsetctl.estimate.results.stored_count`,
        :func:`~subsetctl.estimate.results.stored_among`), changing nothing on disk; the plain line
        when they cannot be read."""
        from subsetctl.errors import UserError
        from subsetctl.estimate.results import stored_among, stored_count
        from subsetctl.registry import ESTIMATORS
        from subsetctl.search.base import count_text

        work = self.work(spec, forced)
        if forced or any(name in rerun for name in self.after) or STORED_REUSED not in work:
            return work
        ctx = common.planned_context(spec, project, self.name, resumes)
        try:
            cal = read_calibration(ctx)
            estimator_used = estimator_name(spec, cal)
            in_process = bool(getattr(ESTIMATORS.get(estimator_used), "needs_model", False))
            keys = _store_keys(ctx, estimator_used, cal.lam, in_process)
            sources = [source.name for source in spec.sources]
            store = _store_dir(ctx, estimator_used, keys[0], sources)
            stored = stored_count(store, sources, keys)
            total = search_subset_bounds(spec)[0]
            if stored and total < 2 ** len(sources):  # which it asks for: those known before it runs
                known, what = known_subsets(spec)
                held = stored_among(store, sources, keys, known)
        except (UserError, OSError, ValueError, KeyError, TypeError, AttributeError):
            return work
        if stored is None:
            return work
        if not stored or total == 2 ** len(sources):
            said = f"{count_text(stored)} of {count_text(total)} stored, reused" if stored else "none stored"
        elif held is None:
            said = f"{count_text(stored)} stored, reused where asked for again"
        else:  # (the others, a greedy step's after the first or a pick, follow from the estimates)
            said = (f"{count_text(stored)} stored, {count_text(held)} of the {count_text(len(known))} it asks for "
                    f"in any case among them ({'; '.join(what)}), reused; the others where asked for again")
        return work.replace(STORED_REUSED, said)

    def memory_estimate(self, spec: Spec, project: Project) -> tuple[int, str] | None:
        """The peak memory of a search whose estimator fine-tunes for real (true_finetune:
        the model loaded in this process, as verify's); None for an estimator on the
        cached gradients (no model loaded)."""
        from subsetctl.modeling.footprint import estimate

        return estimate(self.name, spec, project.root)

    def memory_note(self, spec: Spec, project: Project) -> str | None:
        """Why a search whose estimator fine-tunes for real gets no memory estimate
        (:func:`subsetctl.modeling.footprint.no_estimate_note`)."""
        from subsetctl.modeling.footprint import no_estimate_note

        return no_estimate_note(self.name, spec, project.root)

    def memory_settings(self, spec: Spec) -> tuple[str, ...]:
        """A model-backed estimator (true_finetune) fine-tunes in this process, one subset at
        a time, with verify's budget: its batch size and the length bound the memory, not
        the executor's workers and batches, which running out of memory named."""
        from subsetctl.registry import ESTIMATORS

        if getattr(ESTIMATORS.get(spec.estimate.estimator), "needs_model", False):
            return ("verify.batch_size", "model.max_length")
        return self.memory_keys

    def spec_slice(self, spec: Spec) -> dict[str, Any]:
        """The slice, with the estimator settings that no estimator the search may use
        takes at their defaults (the fast estimator reads neither estimate.max_iter nor
        estimate.sgd nor verify's budget): changing one re-runs nothing. ``estimate.lam``
        is left out too: the search takes lambda from calibrate's output (the chosen one,
        or estimate.lam when calibration is off or falls back to it), which re-runs it when
        lambda changes; a new estimate.lam that calibration does not choose left the search
        re-running for nothing. A strategy param written at its default counts as unset
        (:func:`_without_default_params`)."""
        return _with_defaults_unset(self._slice_as_written(spec))

    def earlier_spec_slices(self, spec: Spec) -> list[dict[str, Any]]:
        """The slice with strategy params written at their defaults kept (as recorded before
        :func:`_without_default_params`): a search made with ``alpha: 0.5`` in the spec stays up to date."""
        return [self._slice_as_written(spec)]

    def _slice_as_written(self, spec: Spec) -> dict[str, Any]:
        """The slice with the estimator keys the search does not read at their defaults and
        without ``estimate.lam``, strategy params as the spec writes them."""
        sliced = with_unread_estimator_keys_at_defaults(super().spec_slice(spec), spec, search_estimators(spec))
        if isinstance(sliced.get("estimate"), dict):
            sliced["estimate"] = {key: value for key, value in sliced["estimate"].items() if key != "lam"}
        return sliced

    def extra_inputs(self, spec: Spec, project: Project) -> dict[str, Any]:
        """The files of plugin estimators and strategies (editing one re-runs the search);
        with an estimator that fine-tunes for real, the rest of verify's budget it runs; with
        two ``random`` baselines or more, the seeds of those after the first
        (:func:`~subsetctl.search.baselines.random_pick_seeds`: a search an earlier subsetctl
        ran drew them all from ``project.seed``, so it re-runs).

        Every estimator calibration may choose counts, not only ``estimate.estimator``: an
        edited plugin estimator that calibration chose again (the same choice, so the same
        calibrate output) left the search's estimates from the old code."""
        from subsetctl.plugin_loading import plugin_code_inputs
        from subsetctl.registry import ESTIMATORS, STRATEGIES, fine_tunes_for_real
        from subsetctl.search.baselines import random_pick_seeds

        uses = [*((ESTIMATORS, name) for name in search_estimators(spec)),  # calibration may pick among them
                *((STRATEGIES, s.name) for s in spec.search.strategies)]
        extra = plugin_code_inputs(spec.plugins, uses, project.root)  # imports the spec's plugins too
        if fine_tunes_for_real(spec.estimate.estimator):
            extra["real_fine_tune"] = {"kind": spec.verify.kinds[0], "lr_ce": spec.verify.lr_ce}
        seeds = random_pick_seeds(spec.project.seed, spec.search.strategies)
        if seeds:  # only with two random baselines or more: a search of one (or none) stays up to date
            extra["random_seeds"] = {str(i): seed for i, seed in seeds.items()}
        return extra

    def output_parts(self, outputs: dict[str, str], summary: dict[str, Any]) -> dict[str, Any]:
        """The ``picks`` part, which the finetune stage reads alone (:data:`~subsetctl.stages.common.PICKS`):
        each strategy's selected sources, by label (the summary's ``strategies``). The rest of
        selections.json (estimates, scores, the calibration) is the report's: a new lambda that
        left the picks as they were (estimate.lam, or calibration's choice) changed it, and
        re-ran the finetune stage (restoring every adapter from its cache) for the same picks."""
        strategies = summary.get("strategies")
        return {"picks": {"strategies": strategies}} if isinstance(strategies, dict) else {}

    def parts_change_note(self, spec: Spec, project: Project, manifest: dict[str, Any],
                          inputs: dict[str, Any]) -> dict[str, str]:
        """The ``picks`` part, whenever the search re-runs: `plan` said the finetune stage runs
        "if its output" changes, and a new lambda or estimator always changes it (the
        estimates), though the picks seldom do."""
        return {"picks": "only its picks count, not its estimates or calibration figures"}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.estimate.dask_backend import (
            announcing_cluster_start,
            close_dask_clients,
            forget_scattered_estimator,
        )
        from subsetctl.estimate.executors import forget_dumped_estimator

        try:
            with announcing_cluster_start(lambda what: ctx.reporter.info(f"search: {what} ...")):
                return self._search(ctx)
        finally:
            forget_dumped_estimator()  # the file loky's workers read the estimator from, kept between chunks
            forget_scattered_estimator()  # its copy on the Dask workers, likewise
            if ctx.spec.executor.backend == "dask":  # the client lives for the stage, not the whole run
                close_dask_clients()

    def _search(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.errors import UserError
        from subsetctl.estimate.results import CachedEstimator

        spec = ctx.spec
        features = load_features(ctx.upstream_dir("gradients") / "store", spec)
        cal = read_calibration(ctx)
        estimator_used = estimator_name(spec, cal)
        estimator = make_estimator(spec, features, cal.lam, ctx, name=estimator_used)
        in_process = bool(getattr(estimator, "needs_model", False))
        if in_process:  # true_finetune: its estimates are real losses
            cal = real_losses_calibration(cal, estimator_used)
        store = _open_store(ctx, estimator_used, cal.lam, features.sources, in_process)
        store_dir = store.path
        kwargs = executor_kwargs(spec)
        if in_process:  # a model-backed estimator cannot be shipped to workers
            kwargs.update(backend="sequential", n_jobs=1)
        cached = CachedEstimator(estimator, store, kwargs, chunk_size=1 if in_process else results_chunk_size(spec))
        if in_process:
            cached.progress = _fine_tune_counter(ctx, estimator_used, lambda: cached.computed)
        def estimator_failed(this_strategy: bool = False) -> str | None:
            """What _run_strategy says of the estimator (see there), from the store's results."""
            if this_strategy:
                return _no_finite_estimate_for_strategy(store.estimates(), estimator_used)
            return _no_finite_estimate(store.estimates(), estimator_used, " so far")

        results = _run_strategies(ctx, features, cached, cal, estimator_failed)
        for label, record in results.items():
            if record["estimated_loss"] is None:
                ctx.reporter.warn(f"{label}: the estimator gave no finite estimate for its selection "
                                  f"({', '.join(record['selected']) or 'target only'}); its rank among the "
                                  "subsets is unknown.")
        final = spec.search.final or (spec.search.strategies[0].label or spec.search.strategies[0].name)
        baseline = {}
        for name, subset in (("all", features.sources), ("target_only", [])):
            raw = float(cached.estimate(cached.masks_for([subset])).loss[0])
            baseline[name] = {"selected": list(subset), "estimated_loss_raw": raw,
                              "estimated_loss_calibrated": _calibrated(cal, raw)}
        above = _final_estimated_above_target_only(final, results, baseline)
        if above:
            ctx.reporter.warn(above)
        batch = store.estimates()  # (the masks are not needed: unpacked, 500 MB at 1,000 sources)
        failed = _no_finite_estimate(batch, estimator_used)  # (the results just read)
        if failed:
            raise UserError(
                f"{failed}, so no selection can be chosen. Fix {_ESTIMATOR_FIX}; the stored estimates are "
                "replaced once it changes.")
        atomic_write_json(ctx.out_dir / SELECTIONS, {
            "final": final,
            "strategies": results,
            "baselines": baseline,
            "calibration": applied_calibration(cal, in_process),
            "sources": features.sources,
        })
        # the estimates taken from the store that earlier runs computed, by the library versions and the
        # thread counts computing them (report.json's reused_threads; null: not recorded)
        threads = [{"threads": counts, "count": count} for counts, count in store.threads_of(cached.reused_rows)]
        atomic_write_json(ctx.out_dir / common.PROVENANCE, {"computed_with": {}, "estimates": [
            {"versions": versions, "count": count} for versions, count in store.versions_of(cached.reused_rows)],
            **({"threads": {REUSED_ESTIMATES: threads}} if threads else {})})
        alike = _all_estimates_alike(batch.loss, None if in_process else cal.lam)
        if alike:
            ctx.reporter.warn(alike)
        if cached.reused_rows:  # a resumed or re-run search: say how much of it the store saved
            from rich.markup import escape

            ctx.reporter.info(escape(f"search: {len(cached.reused_rows):,} subset estimates taken from the store "
                                     f"({store_dir.relative_to(ctx.project.root).as_posix()}) that an earlier run "
                                     f"computed; {cached.computed:,} computed now."))
        not_converged = int(np.sum(~np.asarray(batch.converged, dtype=bool))) if len(batch.loss) else 0
        told = any("did not converge" in n for r in results.values() for n in r.get("notices", []))
        if not_converged and not told:  # (a strategy's notice said it already, with the count and what to do)
            ctx.reporter.warn(f"{not_converged} of {len(batch.loss)} subset estimates did not converge (their estimates "
                              f"are kept but unreliable); {cached.not_converged_advice}.")
        return {
            "final": final,
            "selected": results[final]["selected"],
            "strategies": {k: v["selected"] for k, v in results.items()},
            "subsets_estimated": len(batch.loss),
            "subsets_store": store_dir.relative_to(ctx.project.root).as_posix(),
            "computed_now": cached.computed,
            # distinct subsets whose estimates an earlier run computed, as the notice above counts them
            # (the wrapper's own count is of lookups: a subset two strategies or two steps asked for, twice)
            "reused": len(cached.reused_rows),
            "lookups_answered_without_solving": cached.reused,
            "not_converged": not_converged,
            "estimator": estimator_used,
            "lambda": None if in_process else cal.lam,  # a real fine-tune has no lambda
            "calibrated": cal.enabled,
        }


def _store_keys(ctx: StageContext, estimator_used: str, lam: float, in_process: bool) -> list[str]:
    """The key of ``estimator_used``'s store of subset estimates, then those an earlier
    subsetctl kept the same estimates under: the estimator, lambda, the gradients and the
    estimator's settings, or, for a real fine-tune (``in_process``), what its fine-tunes
    read (:func:`_real_fine_tune_inputs`)."""
    if in_process:  # real fine-tunes: neither the features nor lambda change them
        return [fingerprint({"estimator": estimator_used, **inputs}) for inputs in _real_fine_tune_inputs(ctx)]
    gradients_digest = ctx.upstream_manifest("gradients")["output_digest"]
    # max_iter among the settings only for an estimator that takes it (exact), as before
    return [fingerprint({"estimator": estimator_used, "lam": lam, "features": gradients_digest,
                         **estimator_settings(ctx.spec, estimator_used)})]


def _open_store(ctx: StageContext, estimator_used: str, lam: float, sources: list[str], in_process: bool) -> Any:
    """The store of ``estimator_used``'s subset estimates for these inputs (a
    :class:`~subsetctl.estimate.results.SubsetResultsStore`): keyed by the estimator, lambda,
    the gradients and the estimator's settings, or, for a real fine-tune, by what its
    fine-tunes read; emptied by ``--force``; estimates an earlier subsetctl kept under
    another key are taken over."""
    from subsetctl.estimate.results import SubsetResultsStore

    key, *earlier = _store_keys(ctx, estimator_used, lam, in_process)
    store_dir = _store_dir(ctx, estimator_used, key, sources)
    if ctx.options.get("forced"):  # --force recomputes every estimate
        shutil.rmtree(store_dir, ignore_errors=True)
    else:  # estimates an earlier subsetctl kept under another key
        common.adopt_legacy_entry(store_dir, [_store_dir(ctx, estimator_used, k, sources) for k in earlier])
    store = SubsetResultsStore(store_dir, sources, key, earlier_keys=tuple(earlier),
                               versions=pipeline.library_versions(), threads=pipeline.thread_counts())
    touch(store_dir)  # used: the last to go when the caches are trimmed (project.cache_limit_gb)
    if store.reset_reason:
        ctx.reporter.warn(AboutThisRun(f"{store.reset_reason} Its subsets are estimated again."))
    return store


def _run_strategies(ctx: StageContext, features: Any, cached: Any, cal: Any,
                    estimator_failed: Callable[..., str | None]) -> dict[str, Any]:
    """Run the spec's strategies in order, each seeing the selections of those before it:
    label -> its result as selections.json records it (raw and calibrated estimates, its
    parameters, a trace cut to :data:`TRACE_KEPT` steps); their notices are warned."""
    from subsetctl.registry import STRATEGIES
    from subsetctl.search.base import SearchContext, parse_params, shown_notices
    from subsetctl.search.baselines import random_pick_seeds

    spec = ctx.spec
    results: dict[str, Any] = {}
    other: dict[str, list[str]] = {}
    seeds = random_pick_seeds(spec.project.seed, spec.search.strategies)  # a later random baseline: its own
    with ctx.reporter.progress("search", total=len(spec.search.strategies)) as task:
        for i, entry in enumerate(spec.search.strategies):
            label = entry.label or entry.name
            cls = STRATEGIES.get(entry.name)
            params = parse_params(cls, entry.params, f"search.strategies[{i}].params", entry.label)
            # the features and the earlier picks as this strategy's own (read-only arrays, fresh lists):
            # one changing them in place changed the estimator's features and the strategies after it
            search_ctx = SearchContext(
                sources=list(features.sources), seed=seeds.get(i, spec.project.seed), features=features.read_only(),
                other_selections={done: list(picked) for done, picked in other.items()},
                progress=_progress_on(task, i), label=entry.label,
            )
            result = _run_strategy(cls, entry.name, label, cached, search_ctx, params, estimator_failed)
            _leave_out_empty_sources(result, features)
            for notice in shown_notices(label, result.notices):
                ctx.reporter.warn(ShownInResults(notice))  # the report's search notes
            record = result.to_dict(trace_limit=TRACE_KEPT, trace_names_limit=TRACE_NAMES_KEPT)
            record["label"] = label
            record["params"] = params.model_dump(mode="json")
            record["estimated_loss_raw"] = record["estimated_loss"]
            record["estimated_loss_calibrated"] = _calibrated(cal, result.estimated_loss)
            results[label] = record
            other[label] = list(result.selected)
            task.update(i + 1)
    return results
