"""The strategy interface: params, registry look-ups, results and the estimate memo."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from searchfixtures import SOURCES, CountingEstimator

from subsetctl.errors import UnknownPluginError, UserError
from subsetctl.estimate.base import EstimateBatch, SubsetEstimator
from subsetctl.registry import STRATEGIES
from subsetctl.search import (
    SearchContext,
    StrategyResult,
    SubsetMemo,
    SubsetTrace,
    describe_params,
    parse_params,
    run_strategy,
)
from subsetctl.search.strategies import BASELINE_STRATEGIES, ESTIMATOR_STRATEGIES


class Recorder(SubsetEstimator):
    """Loss = number of selected sources; ``failed`` (NaN) for masks with source 0 when asked."""

    def __init__(self, n: int, fail_first: bool = False, failed: float = math.nan) -> None:
        self.names = [f"s{i}" for i in range(n)]
        self.fail_first = fail_first
        self.failed = failed
        self.calls: list[np.ndarray] = []

    @property
    def sources(self) -> list[str]:
        return self.names

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        self.calls.append(np.array(masks))
        loss = masks.sum(axis=1).astype(float)
        if self.fail_first:
            loss[masks[:, 0]] = self.failed
        m = len(masks)
        return EstimateBatch(loss, np.zeros(m), np.ones(m, dtype=int), np.ones(m, dtype=bool))


def test_every_builtin_is_registered_with_documented_params() -> None:
    names = STRATEGIES.names()
    for name in ESTIMATOR_STRATEGIES + BASELINE_STRATEGIES:
        assert name in names
        cls = STRATEGIES.get(name)
        assert cls.name == name and cls.description
        for pname, ptype, default, description in describe_params(cls):
            assert description, f"{name}.{pname} has no description"
            assert ptype
            assert cls.Params.model_fields[pname].default == default


def test_describe_params_renders_literal_and_optional_types() -> None:
    rows = {r[0]: r for r in describe_params(STRATEGIES.get("random_ensemble"))}
    assert rows["select"][1] == "sign|threshold|top_k|sweep"
    assert rows["top_k"][1] == "int | None"
    assert rows["m"][2] == 200


def test_unknown_strategy_lists_registered_ones() -> None:
    with pytest.raises(UnknownPluginError) as info:
        run_strategy("randm_ensemble", Recorder(3), SearchContext(sources=["s0", "s1", "s2"]))
    for name in ("random_ensemble", "forward", "gradient_similarity"):
        assert name in str(info.value)


def test_wrong_param_type_names_the_key() -> None:
    cls = STRATEGIES.get("random_ensemble")
    with pytest.raises(UserError) as info:
        parse_params(cls, {"m": "many"}, "search.strategies[0].params")
    assert "search.strategies[0].params.m" in str(info.value)
    assert "'many'" in str(info.value)


def test_unknown_param_is_refused_with_valid_keys() -> None:
    with pytest.raises(UserError) as info:
        parse_params(STRATEGIES.get("forward"), {"min_improvment": 0.1}, "search.strategies[2].params")
    msg = str(info.value)
    assert "search.strategies[2].params.min_improvment" in msg
    assert "min_improvement" in msg.split("Valid keys:")[1]


def test_a_mistyped_param_says_which_one_it_likely_meant() -> None:
    """`params: {alpa: 0.3}` said only "is not a parameter of this strategy" and the valid keys,
    while a mistyped spec key (`meta_int`) is told "did you mean 'meta_init'?"."""
    with pytest.raises(UserError) as info:
        parse_params(STRATEGIES.get("random_ensemble"), {"alpa": 0.3, "zzz": 1}, "search.strategies[0].params")
    msg = str(info.value)
    assert "params.alpa: is not a parameter of this strategy (did you mean 'alpha'?)" in msg, msg
    assert "params.zzz: is not a parameter of this strategy" in msg and msg.count("did you mean") == 1, msg


def test_a_param_out_of_range_is_refused_without_the_valid_keys() -> None:
    """A range error ended in "Valid keys: max_sources", which helps with a mistyped key only."""
    with pytest.raises(UserError) as info:
        parse_params(STRATEGIES.get("exhaustive"), {"max_sources": 99}, "search.strategies[0].params")
    msg = str(info.value)
    assert "search.strategies[0].params.max_sources: expected a whole number <= " in msg and "Valid keys" not in msg, msg
    assert "got 99" in msg and "Input should" not in msg, msg  # the spec's words, not pydantic's
    assert msg.endswith(".") and not msg.endswith(".."), msg
    with pytest.raises(UserError, match="Valid keys: ") as info:  # a mistyped key among them: said
        parse_params(STRATEGIES.get("exhaustive"), {"max_sources": 99, "max_source": 2}, "search.strategies[0].params")


def test_cross_field_param_error_names_the_block() -> None:
    with pytest.raises(UserError) as info:
        parse_params(STRATEGIES.get("surrogate"), {"select": "top_k"}, "search.strategies[1].params")
    assert "search.strategies[1].params" in str(info.value)
    assert "top_k" in str(info.value)


@pytest.mark.parametrize("name", ["random_ensemble", "surrogate"])
def test_a_cut_off_the_selection_rule_never_reads_is_refused(name: str) -> None:
    """top_k: 1 without select: top_k used to be ignored without a word (3 sources kept)."""
    with pytest.raises(UserError, match="top_k is only used with select: top_k, but select is 'sign'"):
        parse_params(STRATEGIES.get(name), {"top_k": 1}, "params")
    with pytest.raises(UserError, match="threshold is only used with select: threshold"):
        parse_params(STRATEGIES.get(name), {"select": "top_k", "top_k": 2, "threshold": 0.5}, "params")
    assert parse_params(STRATEGIES.get(name), {"select": "top_k", "top_k": 1}, "params").top_k == 1
    assert parse_params(STRATEGIES.get(name), {"threshold": 0.0, "top_k": None}, "params")  # the defaults, dumped


@pytest.mark.parametrize("params", [{"top_k": False}, {"m": True}, {"alpha": True}])
def test_strategy_params_refuse_booleans_for_numbers(params: dict) -> None:
    """YAML reads no/on/yes as booleans; `top_k: no` kept nothing, `m: on` ran one subset."""
    name = "gradient_similarity" if "top_k" in params else "random_ensemble"
    with pytest.raises(UserError, match="expected a number, got the boolean"):
        parse_params(STRATEGIES.get(name), params, "params")


def test_params_must_be_a_mapping() -> None:
    with pytest.raises(UserError, match="must be a mapping"):
        parse_params(STRATEGIES.get("forward"), [1, 2], "search.strategies[0].params")  # type: ignore[arg-type]


def test_mismatched_sources_are_refused() -> None:
    with pytest.raises(UserError, match="differ"):
        run_strategy("all", Recorder(3), SearchContext(sources=["a", "b", "c"]))


def test_result_round_trips_through_json() -> None:
    result = StrategyResult(
        strategy="x",
        selected=["a"],
        scores={"a": 0.5, "b": float("nan")},
        estimated_loss=float("inf"),
        trace=[{"subset": ["a"], "loss": 0.25}, {"subset": [], "loss": None}],
        notices=["note"],
        diagnostics={"arr": np.arange(2), "v": np.float64(1.5), "bad": float("nan")},
    )
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["scores"]["b"] is None and data["estimated_loss"] is None
    assert data["diagnostics"] == {"arr": [0, 1], "v": 1.5, "bad": None}
    back = StrategyResult.from_dict(data)
    assert back.selected == ["a"] and back.trace == result.trace
    assert math.isnan(back.scores["b"]) and back.scores["a"] == 0.5


def test_memo_dedupes_and_batches() -> None:
    est = Recorder(3)
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "t")
    masks = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1]], dtype=bool)
    assert memo.losses(masks).tolist() == [1.0, 1.0, 2.0]
    assert len(est.calls) == 1 and len(est.calls[0]) == 2
    assert memo.losses(masks[:1]).tolist() == [1.0]
    assert len(est.calls) == 1
    assert [t["subset"] for t in memo.trace] == [["s0"], ["s1", "s2"]]


def test_memo_chunks_report_progress_and_count_failures() -> None:
    est = Recorder(4, fail_first=True)
    events: list[tuple[str, int, int]] = []
    ctx = SearchContext(
        sources=est.sources, progress=lambda msg, done, total: events.append((msg, done, total))
    )
    memo = SubsetMemo(est, ctx, "t", chunk_size=5)
    codes = np.arange(16)
    masks = ((codes[:, None] >> np.arange(4)) & 1).astype(bool)
    losses = memo.losses(masks)
    assert len(est.calls) == 4
    assert [e[1:] for e in events] == [(5, 16), (10, 16), (15, 16), (16, 16)]
    assert np.isnan(losses[masks[:, 0]]).all()
    assert memo.n_failed == 8
    assert any("failed" in n for n in memo.notices())
    assert all(t["loss"] is None for t in memo.trace if "s0" in t["subset"])


def test_failed_estimates_are_left_out_of_selection() -> None:
    est = Recorder(4, fail_first=True)
    result = run_strategy("exhaustive", est, SearchContext(sources=est.sources))
    assert result.selected == []
    assert any("failed" in n for n in result.notices)
    json.dumps(result.to_dict(), allow_nan=False)


@pytest.mark.parametrize("failed", [-math.inf, math.inf])
@pytest.mark.parametrize(("name", "params"), [("exhaustive", {}), ("random_ensemble", {"select": "sweep"}),
                                              ("forward", {}), ("backward", {})])
def test_infinite_estimates_are_failures_too(failed: float, name: str, params: dict) -> None:
    """-inf was the "lowest loss" that exhaustive and sweep picked (the notice saying failed
    subsets were left out of the selection); +inf made every finite gain of greedy
    selection infinite, so backward kept every source."""
    est = Recorder(4, fail_first=True, failed=failed)
    assert np.isnan(SubsetMemo(est, SearchContext(sources=est.sources), "t").losses(np.ones((1, 4), bool))).all()
    result = run_strategy(name, est, SearchContext(sources=est.sources), params)
    assert "s0" not in result.selected and result.estimated_loss is not None
    assert result.selected == [] and result.estimated_loss == 0.0  # the target alone: the lowest finite loss
    assert all(math.isfinite(v) and abs(v) < 10 for v in result.scores.values())


def test_failure_notice_names_infinite_estimates() -> None:
    """An infinite estimate counts as a failure, and the notice said "(NaN loss)" for it."""
    est = Recorder(4, fail_first=True, failed=math.inf)
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "t")
    memo.losses(np.ones((1, 4), bool))
    assert memo.n_failed == 1
    assert any("infinite" in n for n in memo.notices())


def test_progress_callback_sees_strategy_work(estimator: CountingEstimator) -> None:
    events: list[str] = []
    ctx = SearchContext(sources=list(SOURCES), progress=lambda msg, done, total: events.append(msg))
    run_strategy("forward", estimator, ctx, {})
    assert any(e.startswith("forward") for e in events)


@pytest.mark.parametrize(("name", "params"), [
    ("random_ensemble", {"m": 20}), ("random_ensemble", {"m": 20, "select": "sweep"}), ("surrogate", {"m": 30}),
    ("random_ensemble", {"m": 200, "alpha": 0.01}), ("random_ensemble", {"m": 200, "alpha": 1.0}),
    ("forward", {}), ("backward", {"max_steps": 2}), ("exhaustive", {}), ("all", {}), ("target_only", {}),
    ("random", {"k": 2}), ("gradient_similarity", {}),
])
def test_max_subsets_bounds_what_a_strategy_estimates(name: str, params: dict, planted_features) -> None:
    """validate adds these bounds up to price a true_finetune search: they must hold."""
    from subsetctl.estimate.solvers import FastEstimator
    from subsetctl.registry import STRATEGIES

    estimator = FastEstimator(planted_features, lam=1.0)
    context = SearchContext(sources=list(planted_features.sources), features=planted_features)
    result = run_strategy(name, estimator, context, params)
    cls = STRATEGIES.get(name)
    bound = cls.max_subsets(parse_params(cls, params, "params"), len(planted_features.sources))
    distinct = {tuple(sorted(t["subset"])) for t in result.trace}
    assert 0 < len(distinct) <= bound
    if name == "random_ensemble" and params.get("alpha") in (0.01, 1.0):  # clamped sizes: the bound is tight
        assert len(distinct) >= bound - 1


def test_a_long_trace_keeps_its_best_subsets_and_its_total() -> None:
    """selections.json held every one of 2^20 subsets by name (287 MB)."""
    result = StrategyResult(strategy="exhaustive", selected=[], trace=[
        {"subset": [f"s{i}"], "loss": loss} for i, loss in enumerate([3.0, None, 1.0, 2.0, 0.5])])
    short = result.to_dict(trace_limit=2)
    assert [t["subset"] for t in short["trace"]] == [["s2"], ["s4"]] and short["trace_total"] == 5
    assert "trace_total" not in result.to_dict(trace_limit=5) and len(result.to_dict()["trace"]) == 5


def test_a_trace_of_large_subsets_keeps_a_bounded_number_of_names() -> None:
    """backward over 1,000 sources: 10,000 kept subsets of ~1,000 names each made
    selections.json 157 MB (7 s of a 9 s search stage to write, 1.1 GB peak)."""
    est = Recorder(40)
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "t")
    masks = np.ones((30, 40), dtype=bool)
    masks[np.arange(30), np.arange(30)] = False  # 30 subsets of 39 names, loss = their size
    memo.losses(masks)
    memo.trace.append({"subset": ["s0"], "loss": -1.0})  # a written entry: the lowest loss, 1 name
    result = StrategyResult("backward", [], trace=memo.trace)
    short = result.to_dict(trace_limit=10, trace_names_limit=100)
    assert sum(len(t["subset"]) for t in short["trace"]) <= 100 and short["trace_total"] == 31
    assert [len(t["subset"]) for t in short["trace"]] == [39, 39, 1]  # the lowest losses, in evaluation order
    # the same cut for a plugin's list of dicts, and at least one subset however many names it lists
    listed = StrategyResult("x", [], trace=list(memo.trace)).to_dict(trace_limit=10, trace_names_limit=100)
    assert listed["trace"] == short["trace"]
    one = StrategyResult("x", [], trace=list(memo.trace)[:30]).to_dict(trace_names_limit=5)
    assert len(one["trace"]) == 1 and one["trace_total"] == 30
    assert "trace_total" not in result.to_dict(trace_limit=100, trace_names_limit=10_000)


class _Unconverged(Recorder):
    """``Recorder`` whose every estimate is flagged not converged."""

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        batch = super().estimate(masks)
        return EstimateBatch(batch.loss, batch.w_norm, batch.iterations, np.zeros(len(masks), dtype=bool))


def test_the_not_converged_notice_gives_the_estimators_own_advice() -> None:
    """It advised "more iterations of the exact estimator" whatever the estimator, though
    the fast one has no iterations and estimate.max_iter changes nothing for it."""
    from subsetctl.estimate.solvers import ExactEstimator, FastEstimator

    est = _Unconverged(3)
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "t")
    memo.losses(np.ones((1, 3), bool))
    notice = next(n for n in memo.notices() if "did not converge on 1 of 1" in n)
    assert "larger lambda" in notice and "max_iter" not in notice and "exact" not in notice
    assert "estimate.max_iter" in ExactEstimator.not_converged_advice
    assert "estimate.estimator: exact" in FastEstimator.not_converged_advice
    est.not_converged_advice = "do this"  # an estimator's own advice ends the notice
    assert any(n.endswith("(their estimates are kept but unreliable); do this.") for n in memo.notices())


def _old_to_dict_trace(trace: list[dict], limit: int | None) -> tuple[list[dict], int | None]:
    """The trace StrategyResult.to_dict stored before the trace was packed (its own code)."""
    full = [{"subset": list(t["subset"]), "loss": None if t["loss"] is None or not math.isfinite(t["loss"])
             else float(t["loss"])} for t in trace]
    if limit is None or len(full) <= limit:
        return full, None
    ranked = sorted(range(len(full)), key=lambda i: (full[i]["loss"] is None, full[i]["loss"] or 0.0, i))
    return [full[i] for i in sorted(ranked[:limit])], len(full)


def test_the_packed_trace_reads_and_stores_as_the_list_of_names_did() -> None:
    """The trace became packed bits and a float array; what it reads as, and what
    selections.json keeps of it (which subsets, their order, trace_total), are as before."""
    est = Recorder(3, fail_first=True, failed=math.inf)
    result = run_strategy("exhaustive", est, SearchContext(sources=est.sources))
    expected = [{"subset": [], "loss": 0.0}, {"subset": ["s0"], "loss": None}, {"subset": ["s1"], "loss": 1.0},
                {"subset": ["s0", "s1"], "loss": None}, {"subset": ["s2"], "loss": 1.0},
                {"subset": ["s0", "s2"], "loss": None}, {"subset": ["s1", "s2"], "loss": 2.0},
                {"subset": ["s0", "s1", "s2"], "loss": None}]
    assert result.trace == expected and list(result.trace) == expected and len(result.trace) == 8
    assert result.trace[2] == expected[2] and result.trace[-1] == expected[-1] and result.trace[1:4] == expected[1:4]
    with pytest.raises(IndexError):
        result.trace[8]
    assert result.to_dict()["trace"] == expected and "trace_total" not in result.to_dict()
    # the lowest losses, ties in evaluation order, failures last (the first of them first)
    short = result.to_dict(trace_limit=3)
    assert short["trace"] == [expected[0], expected[2], expected[4]] and short["trace_total"] == 8
    assert result.to_dict(trace_limit=6)["trace"] == [expected[i] for i in (0, 1, 2, 3, 4, 6)]
    rng = np.random.default_rng(0)  # many ties, -0.0 and failures: the same pick as the old rule
    trace = [{"subset": [f"s{i}"], "loss": rng.choice([None, -0.0, 0.0, 0.5, 1.0, math.nan, -1.5])}
             for i in range(200)]
    for limit in (None, 0, 1, 7, 50, 199, 200, 500):
        entries, total = _old_to_dict_trace(trace, limit)
        new = StrategyResult("x", [], trace=trace).to_dict(trace_limit=limit)
        assert new["trace"] == entries and new.get("trace_total") == total
        assert json.dumps(new["trace"]) == json.dumps(entries)  # -0.0 stays -0.0


def test_the_memo_keeps_a_subset_as_bits_and_a_float() -> None:
    """forward over 2,000 sources evaluates 2M subsets: as lists of names about 19 GB."""
    est = Recorder(20)
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "t")
    masks = np.random.default_rng(0).random((100, 20)) < 0.5
    memo.losses(masks)
    trace = memo.trace
    assert isinstance(trace, SubsetTrace) and len(trace) == len({m.tobytes() for m in masks})
    assert trace._packed is memo._packed and trace._packed.width == 3  # 20 sources: 3 bytes each, held once
    assert trace._packed.count == len(trace) and list(trace._at) == list(range(len(trace)))
    assert trace.losses().dtype == np.float64 and trace.losses().shape == (len(trace),)
    assert [t["subset"] for t in trace] == [memo.names(m) for m in est.calls[0]]


@pytest.mark.parametrize("hashing", ["real", "all_equal", "two_values"])
def test_the_memo_tells_subsets_apart_when_their_hashes_collide(monkeypatch: pytest.MonkeyPatch, hashing: str) -> None:
    """The memo finds a subset by a hash of its mask, confirmed against the mask it holds:
    masks sharing a hash (forced here) are still estimated once each and get their own loss."""
    from subsetctl.estimate import rowindex
    from subsetctl.search import base

    real = rowindex.hash_rows
    fake = {"all_equal": lambda packed: np.zeros(len(packed), dtype=np.uint64),
            "two_values": lambda packed: real(packed) & np.uint64(1)}.get(hashing, real)
    monkeypatch.setattr(rowindex, "hash_rows", fake)
    monkeypatch.setattr(base, "hash_rows", fake)
    est = Recorder(12)
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "t", chunk_size=7)
    masks = np.unique(np.random.default_rng(1).random((150, 12)) < 0.5, axis=0)
    expected = masks.sum(axis=1).astype(float)  # Recorder's loss
    first = memo.losses(np.concatenate([masks[:60], masks[:10]]))
    np.testing.assert_allclose(first, np.concatenate([expected[:60], expected[:10]]))
    order = np.random.default_rng(2).permutation(len(masks))
    np.testing.assert_allclose(memo.losses(masks[order]), expected[order])
    assert memo.n_evaluated == len(masks) == sum(len(c) for c in est.calls) == len(memo.trace)
    assert [t["subset"] for t in memo.trace] == [memo.names(m) for m in np.concatenate(est.calls)]


def test_a_trace_copy_recording_does_not_disturb_the_memo() -> None:
    """A copy of the memo's trace shares the masks' storage; what it records is added there
    without changing the memo's answers or the original trace."""
    est = Recorder(6)
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "t")
    masks = np.eye(6, dtype=bool)
    before = memo.losses(masks[:3])
    other = copy.copy(memo.trace)
    other.record(SubsetTrace.pack(masks[3:5]), np.array([7.0, 8.0]))
    np.testing.assert_allclose(memo.losses(masks), np.concatenate([before, memo.losses(masks[3:])]))
    assert [t["loss"] for t in other] == [*before.tolist(), 7.0, 8.0]
    assert len(memo.trace) == 6 and memo.n_evaluated == 6 and sum(len(c) for c in est.calls) == 6
    assert memo.trace[4] == {"subset": [est.sources[4]], "loss": float(memo.losses(masks[4:5])[0])}


def test_a_trace_can_be_written_like_a_list() -> None:
    """A plugin strategy may add its own entries to the memo's trace (kept as given)."""
    est = Recorder(3)
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "t")
    memo.losses(np.array([[1, 0, 0], [0, 1, 1]], dtype=bool))
    mine = {"subset": ["s2"], "loss": 0.5}
    memo.trace.append(mine)
    memo.trace.insert(0, {"subset": [], "loss": None})
    memo.losses(np.array([[1, 1, 1]], dtype=bool))
    assert [t["loss"] for t in memo.trace] == [None, 1.0, 2.0, 0.5, 3.0] and memo.trace[3] is mine
    del memo.trace[1]
    memo.trace[0] = {"subset": ["s0"], "loss": 0.25}
    expected = [{"subset": ["s0"], "loss": 0.25}, {"subset": ["s1", "s2"], "loss": 2.0}, mine,
                {"subset": ["s0", "s1", "s2"], "loss": 3.0}]
    assert memo.trace == expected and memo.trace + [] == expected and [] + memo.trace == expected
    result = StrategyResult("x", [], trace=memo.trace)
    assert result.to_dict(trace_limit=2)["trace"] == [expected[0], expected[2]]
    assert sorted(memo.trace.named()) == ["s0", "s0", "s1", "s2", "s2"]  # the union of the bits, then the written
    copy = memo.trace.copy()
    copy.clear()
    assert len(copy) == 0 and len(memo.trace) == 4


def test_a_trace_is_sorted_copied_and_stored_in_diagnostics_as_a_list() -> None:
    """What a plugin strategy could do with the list of dicts the memo's trace was: sort it
    in place, copy.copy it (not a second view that goes on growing), put it in its
    diagnostics (selections.json could not be written: not JSON serializable)."""
    import copy

    est = Recorder(3)
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "t")
    memo.losses(np.array([[1, 1, 0], [1, 0, 0]], dtype=bool))
    entries = list(memo.trace)
    kept = copy.copy(memo.trace)
    memo.losses(np.array([[0, 0, 1]], dtype=bool))
    assert kept == entries and len(memo.trace) == 3
    result = StrategyResult("x", [], trace=memo.trace, diagnostics={"seen": memo.trace})
    stored = json.loads(json.dumps(result.to_dict()))
    assert stored["diagnostics"]["seen"] == stored["trace"] == list(memo.trace)
    memo.trace.sort(key=lambda t: t["loss"])
    assert [t["loss"] for t in memo.trace] == sorted(t["loss"] for t in stored["trace"])
    memo.trace.sort(key=lambda t: len(t["subset"]), reverse=True)
    assert [t["subset"] for t in memo.trace] == [["s0", "s1"], ["s0"], ["s2"]]


def test_the_not_converged_advice_is_the_cached_estimators(tmp_path) -> None:
    """The search stage hands its strategies the estimator wrapped in a CachedEstimator:
    the notice gave the generic advice, never the exact or fast estimator's own."""
    from subsetctl.estimate.results import CachedEstimator, SubsetResultsStore

    est = _Unconverged(3)
    est.not_converged_advice = "raise estimate.max_iter"
    cached = CachedEstimator(est, SubsetResultsStore(tmp_path, est.sources, "k"), {"backend": "sequential"})
    memo = SubsetMemo(cached, SearchContext(sources=est.sources), "t")
    memo.losses(np.ones((1, 3), bool))
    assert any(n.endswith("unreliable); raise estimate.max_iter.") for n in memo.notices()), memo.notices()


def test_a_param_given_to_a_strategy_without_params_says_to_remove_it() -> None:
    """`{name: all, params: {k: 1}}` ended "Valid keys: (none). `subsetctl ls` lists their
    defaults.": there are no keys, nor defaults, to list."""
    with pytest.raises(UserError) as info:
        parse_params(STRATEGIES.get("all"), {"k": 1}, "search.strategies[0].params", "every")
    msg = str(info.value)
    assert msg == ("Invalid parameters for strategy 'every' (all): search.strategies[0].params.k: is not a parameter "
                   "of this strategy. This strategy takes no parameters: remove its params."), msg


def test_a_failed_estimate_is_counted_as_failed_not_also_as_unconverged() -> None:
    """A NaN estimate flagged not converged (as a solver that gave up reports it) is one
    failure: the notice of unconverged estimates counts only the finite ones."""

    class GivesUp(Recorder):
        def estimate(self, masks: np.ndarray) -> EstimateBatch:
            batch = super().estimate(masks)
            batch.converged = np.zeros(len(masks), dtype=bool)  # none converged; those with s0 failed too
            return batch

    est = GivesUp(3, fail_first=True)
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "t")
    memo.losses(np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool))
    assert (memo.n_failed, memo.n_not_converged) == (2, 2)


def test_a_trace_listing_exactly_the_names_limit_is_kept_whole() -> None:
    """trace_names_limit is the most names kept: kept subsets listing exactly that many
    names in all are all kept."""
    est = Recorder(4)
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "t")
    memo.losses(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=bool))  # 2 + 3 + 1 names
    short = StrategyResult("x", [], trace=memo.trace).to_dict(trace_limit=3, trace_names_limit=6)
    assert [len(t["subset"]) for t in short["trace"]] == [2, 3, 1]
    cut = StrategyResult("x", [], trace=memo.trace).to_dict(trace_limit=3, trace_names_limit=5)
    assert [len(t["subset"]) for t in cut["trace"]] == [2, 1] and cut["trace_total"] == 3


def test_forward_keeps_its_candidates_as_changes_of_one_source() -> None:
    """Each step's candidates are the current subset plus one source: the memo (and so the
    trace) keeps them as that change, 12 bytes each, not 1,250 (10,000 sources), and reads
    them back as the masks estimated."""

    class Helpful(Recorder):
        def estimate(self, masks: np.ndarray) -> EstimateBatch:
            self.calls.append(np.array(masks))
            m = len(masks)
            loss = 1.0 - masks @ np.linspace(1.0, 2.0, masks.shape[1]) / masks.shape[1]
            return EstimateBatch(loss, np.zeros(m), np.zeros(m, dtype=np.int64), np.ones(m, dtype=bool))

    est = Helpful(3000)
    result = run_strategy("forward", est, SearchContext(sources=est.sources), {"max_steps": 4})
    assert result.selected == ["s2996", "s2997", "s2998", "s2999"]  # (in source order)
    estimated = np.concatenate(est.calls)
    assert len(result.trace) == len(estimated) == 1 + 3000 + 2999 + 2998 + 2997
    trace = result.trace
    assert isinstance(trace, SubsetTrace) and trace._packed.anchors.count <= 2 * 5 + 1
    assert trace._packed.nbytes < 0.05 * len(estimated) * 375  # (375 bytes a mask packed)
    assert np.array_equal(trace._packed.take(np.arange(len(estimated))), np.packbits(estimated, axis=1))
    assert [t["subset"] for t in trace[-3:]] == [[est.names[i] for i in np.flatnonzero(m)] for m in estimated[-3:]]
