"""Greedy selection: one batched call per round, stopping rules, score meaning."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from searchfixtures import Additive, NoiseFavoursFirst

from subsetctl.estimate.base import EstimateBatch
from subsetctl.search import SearchContext, run_strategy


def test_forward_adds_best_first_in_batched_rounds() -> None:
    est = Additive([0.3, -0.2, 0.1, 0.0])
    result = run_strategy("forward", est, SearchContext(sources=est.sources))
    assert result.selected == ["s0", "s2"]
    assert [s["source"] for s in result.diagnostics["steps"]] == ["s0", "s2"]
    # start, then rounds over 4, 3 and 2 candidates
    assert est.calls == [1, 4, 3, 2]
    assert result.scores == pytest.approx({"s0": 0.3, "s1": -0.2, "s2": 0.1, "s3": 0.0})
    assert result.estimated_loss == pytest.approx(0.6)


def test_backward_removes_harmful_and_scores_harm_of_removal() -> None:
    est = Additive([0.3, -0.2, 0.1, -0.05])
    result = run_strategy("backward", est, SearchContext(sources=est.sources))
    assert result.selected == ["s0", "s2"]
    assert est.calls == [1, 4, 3, 2]
    assert result.scores == pytest.approx({"s0": 0.3, "s1": -0.2, "s2": 0.1, "s3": -0.05})


def test_min_improvement_and_max_steps_stop_early() -> None:
    est = Additive([0.3, 0.02, 0.1])
    assert run_strategy(
        "forward", est, SearchContext(sources=est.sources), {"min_improvement": 0.05}
    ).selected == ["s0", "s2"]
    assert run_strategy("forward", est, SearchContext(sources=est.sources), {"max_steps": 1}).selected == [
        "s0"
    ]


class _InfiniteWhen(Additive):
    """``Additive``, except that the estimate is +inf (a failure) for the subsets ``fails`` picks."""

    def __init__(self, effects: list[float], fails: Callable[[np.ndarray], bool]) -> None:
        super().__init__(effects)
        self.fails = fails

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        batch = super().estimate(masks)
        batch.loss[[self.fails(m) for m in masks]] = np.inf
        return batch


def test_infinite_estimates_count_as_failures_not_as_infinite_gains() -> None:
    """An infinite start made every finite candidate's gain inf (a tie, or inf - inf = NaN):
    backward kept all sources, forward added none ("failed on every candidate step"), and
    the scores were 1.8e308."""
    est = _InfiniteWhen([0.1, 0.1, 0.1, 0.1], lambda m: bool(m[1]))  # s1 breaks every subset
    result = run_strategy("backward", est, SearchContext(sources=est.sources))
    assert result.selected == ["s0", "s2", "s3"]
    assert result.estimated_loss == pytest.approx(0.7)
    assert all(abs(v) < 1.0 for v in result.scores.values())
    est = _InfiniteWhen([0.1, 0.3, 0.2], lambda m: not m.any())  # the target alone fails
    result = run_strategy("forward", est, SearchContext(sources=est.sources))
    assert result.selected == ["s0", "s1", "s2"]
    assert [s["source"] for s in result.diagnostics["steps"]] == ["s1", "s2", "s0"]
    assert result.estimated_loss == pytest.approx(0.4)
    assert all(abs(v) < 1.0 for v in result.scores.values())


@pytest.mark.parametrize("name", ["forward", "backward"])
def test_an_estimator_failing_everywhere_stops_greedy_without_a_numpy_warning(name: str) -> None:
    """A failed start and no finite candidate printed numpy's "RuntimeWarning: All-NaN
    slice encountered" with greedy.py's source line among the run's warnings (a plugin
    estimator giving NaN everywhere), besides greedy's own notice saying so."""
    import warnings

    est = _InfiniteWhen([0.1, 0.3, 0.2], lambda m: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = run_strategy(name, est, SearchContext(sources=est.sources))
    assert "The estimator failed on every candidate step; stopped." in result.notices


def test_a_source_every_step_of_which_failed_is_scored_0_with_a_notice() -> None:
    """Its score became 0.0 silently: the report showed it as a source estimated to change
    nothing, not as one the estimator could not score."""
    est = _InfiniteWhen([0.1, 0.3, 0.2], lambda m: bool(m[2]))  # every subset with s2 fails
    result = run_strategy("forward", est, SearchContext(sources=est.sources))
    assert result.selected == ["s0", "s1"] and result.scores["s2"] == 0.0
    assert any("Sources 's2' have no score" in n and "score is set to 0" in n for n in result.notices)
    result = run_strategy("forward", Additive([0.1, 0.3, 0.2]), SearchContext(sources=["s0", "s1", "s2"]))
    assert not any("score is set to 0" in n for n in result.notices)


def test_each_step_reports_how_much_it_lowered_the_loss() -> None:
    est = Additive([0.3, -0.2, 0.1, 0.0])
    steps = run_strategy("forward", est, SearchContext(sources=est.sources)).diagnostics["steps"]
    assert [s["improvement"] for s in steps] == pytest.approx([0.3, 0.1])  # 1 -> 0.7 -> 0.6
    assert [s["loss"] for s in steps] == pytest.approx([0.7, 0.6])


class _FailsOnEmpty(Additive):
    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        batch = super().estimate(masks)
        batch.loss[~masks.any(axis=1)] = np.nan
        return batch


def test_a_failed_start_measures_first_gains_against_the_worst_candidate() -> None:
    est = _FailsOnEmpty([0.3, -0.2, 0.1])
    result = run_strategy("forward", est, SearchContext(sources=est.sources))
    # first round: candidate losses 0.7, 1.2, 0.9; the worst (1.2) is the base
    assert result.diagnostics["steps"][0]["improvement"] == pytest.approx(0.5)
    assert result.scores["s0"] == pytest.approx(0.5)
    assert result.selected == ["s0", "s2"]


def test_forward_does_not_add_a_source_for_rounding_noise() -> None:
    """A source repeating the target's train rows changes no fast estimate but, by solver
    noise 2.5e-10 lower, forward added it (min_improvement 0), without a word."""

    est = NoiseFavoursFirst([0.0, -0.3, -0.2])
    result = run_strategy("forward", est, SearchContext(sources=est.sources))
    assert result.selected == []
    assert any("'s0'" in n and "rounding noise" in n for n in result.notices), result.notices
    helps = NoiseFavoursFirst([1e-6, -0.3, -0.2])
    result = run_strategy("forward", helps, SearchContext(sources=helps.sources))
    assert result.selected == ["s0"] and not any("rounding noise" in n for n in result.notices)


@pytest.mark.parametrize(("name", "params", "bound"), [("forward", {}, 4), ("backward", {}, 4),
                                                       ("forward", {"max_steps": 2}, 2)])
def test_progress_says_which_step_of_at_most_how_many(name: str, params: dict, bound: int) -> None:
    """The progress line of a long greedy search (1,000 sources) said only how many subsets
    of the round were estimated, not which step the search was at."""
    est = Additive([0.3, 0.2, 0.1, -0.05] if name == "forward" else [-0.3, -0.2, 0.1, 0.05])
    events: list[tuple[str, int, int]] = []
    context = SearchContext(sources=est.sources, progress=lambda msg, done, total: events.append((msg, done, total)))
    run_strategy(name, est, context, params)
    rounds = [msg for msg, _, _ in events if "estimated" in msg][1:]  # (the first: the start)
    assert rounds[:2] == [f"{name}, step 1 of at most {bound}: estimated 4/4 subsets",
                          f"{name}, step 2 of at most {bound}: estimated 3/3 subsets"]
    assert (f"{name}: step 1 of at most {bound} done", 1, bound) in events


def test_a_step_that_lowers_the_loss_by_exactly_min_improvement_is_not_taken() -> None:
    """min_improvement is "stop when the best step lowers L_hat by no more than this": a
    step gaining exactly that much (0.25, exact in binary) ends the search."""
    est = Additive([0.5, 0.25])
    result = run_strategy("forward", est, SearchContext(sources=est.sources), {"min_improvement": 0.25})
    assert result.selected == ["s0"]
    assert run_strategy("forward", est, SearchContext(sources=est.sources),
                        {"min_improvement": 0.125}).selected == ["s0", "s1"]


@pytest.mark.parametrize("name", ["forward", "backward"])
def test_max_subsets_is_tight_when_greedy_runs_to_the_end(name: str) -> None:
    """validate prices a true_finetune search by max_subsets: the start plus every
    remaining source at each step. A greedy run that takes every step estimates exactly
    that many distinct subsets (1 + 4 + 3 + 2 + 1 for 4 sources)."""
    from subsetctl.registry import STRATEGIES
    from subsetctl.search.base import parse_params

    est = Additive([0.4, 0.3, 0.2, 0.1] if name == "forward" else [-0.4, -0.3, -0.2, -0.1])
    result = run_strategy(name, est, SearchContext(sources=est.sources))
    assert len(result.diagnostics["steps"]) == 4
    cls = STRATEGIES.get(name)
    bound = cls.max_subsets(parse_params(cls, {}, "params"), 4)
    assert result.diagnostics["n_subsets_estimated"] == bound == 11


class _PerRow(Additive):
    """:class:`Additive` summed row by row: no float copy of the masks (which would be the
    peak of a step), and each estimate the same in any batch (a matrix product's last bits
    depend on the batch's rows)."""

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        self.calls.append(m := len(masks))
        loss = 1.0 - np.array([self.effects[row].sum() for row in masks])
        return EstimateBatch(loss, np.zeros(m), np.zeros(m, dtype=int), np.ones(m, dtype=bool))


class _TiedAndFailing(_PerRow):
    """:class:`_PerRow` with tied effects, and a failed estimate for subsets holding s5 and s6."""

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        batch = super().estimate(masks)
        batch.loss = np.where(masks[:, 5] & masks[:, 6], np.nan, batch.loss)
        return batch


@pytest.mark.parametrize("forward", [True, False])
@pytest.mark.parametrize(("memo_rows", "rows"), [(1024, 2), (2, 4), (3, 1)])
def test_candidates_made_in_parts_give_what_one_array_of_them_gave(forward: bool, memo_rows: int, rows: int) -> None:
    """A step's candidates are made a few rows at a time (one array of them all was 100 MB a
    step at 10,000 sources): the estimates, ties, failures, trace and selection are those of
    one array, and with ``rows`` a multiple of the memo's chunk the estimator's batches too."""
    from subsetctl.search.base import SubsetMemo
    from subsetctl.search.greedy import GreedyParams, _greedy

    effects = [0.3, 0.3, -0.1, 0.2, 0.2, 0.0, 0.1, 0.3, -0.2]
    if not forward:
        effects = [-e for e in effects]
    runs = []
    for parts in (rows, 10**6):
        est = _TiedAndFailing(effects)
        events: list[tuple[str, int, int]] = []
        context = SearchContext(sources=est.sources, progress=lambda *e, got=events: got.append(e))
        memo = SubsetMemo(est, context, "greedy", chunk_size=memo_rows)
        mask, loss, scores, steps, notices = _greedy(memo, context, GreedyParams(), forward, rows=parts)
        runs.append((mask.tolist(), loss, scores.tolist(), steps, notices, list(memo.trace), memo.n_evaluated,
                     est.calls, events))
    chunked, whole = runs
    assert len(whole[3]) >= 3 and any(n for n in whole[4])  # (steps taken, a failure noticed)
    assert chunked[:7] == whole[:7]
    if rows % memo_rows == 0:
        assert chunked[7:] == whole[7:]  # the same estimate calls, the same progress


def test_a_forward_step_never_holds_every_candidate_mask_at_once() -> None:
    """Forward's first step over 8,000 sources built its 8,000 candidates as one 8,000 x 8,000
    bool array (64 MB; 100 MB at 10,000 sources); made a chunk at a time, the step's peak is
    about the trace's packed masks (8 MB) and a chunk or two (8 MB each)."""
    import tracemalloc

    n = 8000
    est = _PerRow(np.linspace(0.1, 1.0, n) / n)
    context = SearchContext(sources=est.sources)
    tracemalloc.start()
    try:
        result = run_strategy("forward", est, context, {"max_steps": 1})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.selected == [f"s{n - 1}"]
    assert peak < n * n / 2, f"peak {peak / 2**20:.1f} MB"
