"""Random subsets, caps and limits of the ensemble strategies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from searchfixtures import SOURCES, Additive, CountingEstimator, NoiseFavoursFirst

from subsetctl.errors import UserError
from subsetctl.estimate.base import EstimateBatch
from subsetctl.search import SearchContext, run_strategy
from subsetctl.search.ensemble import fit_ridge, indicator_gram, mean_difference_scores, sample_subsets


@pytest.mark.parametrize("n, size, m", [(8, 4, 10), (8, 4, 60), (8, 4, 70), (20, 10, 500), (5, 1, 5)])
def test_sample_subsets_are_distinct_and_sized(n: int, size: int, m: int) -> None:
    masks, notices = sample_subsets(n, size, m, np.random.default_rng(0))
    assert masks.shape == (m, n) and not notices
    assert (masks.sum(axis=1) == size).all()
    assert len({row.tobytes() for row in masks}) == m


def test_m_above_distinct_subsets_is_capped_with_notice(estimator: CountingEstimator) -> None:
    result = run_strategy("random_ensemble", estimator, SearchContext(sources=list(SOURCES)), {"m": 100})
    total = math.comb(len(SOURCES), 4)
    assert result.diagnostics["n_subsets"] == total
    assert any(f"only {total} distinct" in n for n in result.notices)


def test_alpha_is_clamped_so_scores_exist() -> None:
    est = Additive([0.1, -0.1, 0.2])
    result = run_strategy("random_ensemble", est, SearchContext(sources=est.sources), {"alpha": 1.0})
    assert result.diagnostics["subset_size"] == 2
    assert any("alpha=1.0" in n for n in result.notices)


def test_single_source_ensemble_points_to_exhaustive() -> None:
    est = Additive([0.1])
    with pytest.raises(UserError, match="exhaustive"):
        run_strategy("random_ensemble", est, SearchContext(sources=est.sources))


def test_scores_recover_additive_effects() -> None:
    effects = [0.3, -0.2, 0.05, -0.4, 0.1, 0.0]
    est = Additive(effects)
    ctx = SearchContext(sources=est.sources, seed=1)
    ens = run_strategy("random_ensemble", est, ctx, {"m": 20, "select": "sweep"})
    sur = run_strategy("surrogate", est, ctx, {"m": 20, "ridge": 1e-6, "select": "sweep"})
    exh = run_strategy("exhaustive", est, ctx)
    for result in (ens, sur, exh):
        assert result.selected == ["s0", "s2", "s4"]
        order = sorted(result.scores, key=result.scores.get, reverse=True)
        assert order[:3] == ["s0", "s4", "s2"]
    # exhaustive scores are absolute effects (Banzhaf values of an additive game)
    assert [exh.scores[s] for s in est.sources] == pytest.approx(effects)
    assert sur.diagnostics["holdout_r2"] == pytest.approx(1.0, abs=1e-6)
    assert sur.diagnostics["holdout_spearman"] == pytest.approx(1.0)
    sweep = ens.diagnostics["sweep"]
    assert [s["k"] for s in sweep] == list(range(7))


def test_top_k_larger_than_n_keeps_all_with_notice() -> None:
    est = Additive([0.1, 0.2, -0.1])
    result = run_strategy(
        "random_ensemble", est, SearchContext(sources=est.sources), {"select": "top_k", "top_k": 5}
    )
    assert result.selected == est.sources
    assert any("top_k=5" in n for n in result.notices)


def test_sign_selection_ignores_scores_within_rounding_noise() -> None:
    """Two identical harmful sources scored ±6e-9 (rounding): one used to be selected."""
    from subsetctl.search.base import SubsetMemo
    from subsetctl.search.ensemble import RandomSubsetParams, select_by_scores

    est = Additive([0.2, 0.0, 0.0])
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "random_ensemble")
    mask, _, _, notices = select_by_scores(memo, np.array([0.2, 6.4e-9, -6.4e-9]), RandomSubsetParams(select="sign"))
    assert mask.tolist() == [True, False, False]
    assert any("1 source scored above 0 by less than 1e-08 (rounding noise of the estimates, e.g. identical "
               "sources) and is not selected." in n for n in notices)


def test_surrogate_with_too_few_subsets_skips_holdout() -> None:
    five = Additive([0.1, 0.2, -0.1, 0.05, 0.0])  # 10 distinct subsets of size 2 or 3: 3 are not all of them
    result = run_strategy("surrogate", five, SearchContext(sources=five.sources), {"m": 3, "holdout": 0.2})
    assert "holdout_r2" not in result.diagnostics
    assert any("hold out" in n and n.endswith("increase m.") for n in result.notices)
    est = Additive([0.1, 0.2, -0.1])
    for m in (3, 20):  # 3 distinct subsets of size 1 or 2: m = 3 already has them all, and m cannot help
        result = run_strategy("surrogate", est, SearchContext(sources=est.sources), {"m": m, "holdout": 0.2})
        (note,) = [n for n in result.notices if "hold out" in n]
        assert "all the distinct subsets of size" in note and "increase m" not in note


def test_surrogate_says_which_sources_it_could_not_score() -> None:
    """With m: 1 every source is in all or none of the subsets: the ridge fit leaves each
    coefficient at 0, and surrogate reported all-zero scores (select: sign kept nothing)
    with no word, where random_ensemble names such sources."""
    est = Additive([0.1, 0.2, -0.1, 0.05])
    result = run_strategy("surrogate", est, SearchContext(sources=est.sources), {"m": 1})
    (notice,) = [n for n in result.notices if "all or none" in n]
    assert all(f"'{s}'" in notice for s in est.sources) and notice.endswith("Increase m.")
    result = run_strategy("surrogate", est, SearchContext(sources=est.sources), {"m": 6})
    assert not [n for n in result.notices if "all or none" in n], result.notices


def test_surrogate_reuses_the_ensemble_subsets(estimator: CountingEstimator) -> None:
    ctx = SearchContext(sources=list(SOURCES), seed=5)
    ens = run_strategy("random_ensemble", estimator, ctx, {"m": 25})
    sur = run_strategy("surrogate", estimator, ctx, {"m": 25})
    assert [t["subset"] for t in ens.trace[:25]] == [t["subset"] for t in sur.trace[:25]]


def test_exhaustive_refuses_more_than_12_sources() -> None:
    est = Additive([0.0] * 13)
    with pytest.raises(UserError) as info:
        run_strategy("exhaustive", est, SearchContext(sources=est.sources))
    assert "random_ensemble" in str(info.value) and "13" in str(info.value)


def test_exhaustive_advises_raising_max_sources_only_where_it_can_help() -> None:
    """For 1,000 sources the refusal advised raising params.max_sources, which stops at 20,
    and wrote 2^1000 out in 302 digits."""
    from subsetctl.registry import STRATEGIES
    from subsetctl.search import parse_params

    def refusal(n: int, **params: int) -> str:
        est = Additive([0.0] * n)
        with pytest.raises(UserError) as info:
            run_strategy("exhaustive", est, SearchContext(sources=est.sources), params)
        cls = STRATEGIES.get("exhaustive")  # validate says the same
        assert cls.check_spec(parse_params(cls, params, "params"), n, []) == str(info.value)
        return str(info.value)

    assert refusal(13) == ("The exhaustive strategy would estimate 2^13 = 8,192 subsets of 13 sources, above its limit "
                           "of max_sources=12. Use 'random_ensemble' (or 'surrogate') for this many sources, or raise "
                           "its params.max_sources under search.strategies to 13 (at most 20).")
    for n in (21, 1000):
        text = refusal(n, max_sources=20)
        assert "max_sources under" not in text and "raise" not in text and "'random_ensemble'" in text, text
        assert "the most it can take (20 sources, whatever its max_sources)" in text
    assert "2^40 = 1,099,511,627,776 subsets" in refusal(40)
    assert "estimate 2^1000 subsets of 1000 sources" in refusal(1000) and len(refusal(1000)) < 300


def test_mean_difference_scores_undefined_source_gets_zero() -> None:
    masks = np.array([[1, 1, 0], [1, 0, 1]], dtype=bool)
    scores, notices = mean_difference_scores(masks, np.array([1.0, 2.0]), ["a", "b", "c"])
    assert scores[0] == 0.0 and scores[1] == pytest.approx(1.0)
    assert notices and "'a'" in notices[0]


def test_fit_ridge_recovers_linear_model() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((50, 4)) > 0.5
    y = 2.0 + x @ np.array([0.5, -1.0, 0.0, 0.25])
    coef, intercept = fit_ridge(x.astype(float), y, 1e-9)
    assert coef == pytest.approx([0.5, -1.0, 0.0, 0.25], abs=1e-6)
    assert intercept == pytest.approx(2.0, abs=1e-6)


def test_indicator_gram_counts_exactly_and_adds_up_over_parts_of_the_rows() -> None:
    """The surrogate counts the Gram matrix of its train rows, fits, then adds the held-out
    rows' to fit all: the counts must be exact in float32 and add up to those of all rows."""
    x = np.random.default_rng(0).random((300, 40)) > 0.5
    exact = x.astype(np.int64).T @ x.astype(np.int64)
    assert np.array_equal(indicator_gram(x, chunk=7), exact)
    assert np.array_equal(indicator_gram(x[:100]) + indicator_gram(x[100:]), exact)


def test_fit_ridge_of_indicators_agrees_with_the_centered_float_fit() -> None:
    """Bool indicators are fitted from their counts (less the column means' outer product),
    float ones centered first: the same ridge solution, with or without the Gram matrix given."""
    rng = np.random.default_rng(1)
    x = rng.random((120, 30)) > 0.5
    x[:, 3] = True  # a source in every subset: its centered column is 0, so is its coefficient
    y = 4.5 + x @ rng.normal(0.0, 1e-3, 30) + rng.normal(0.0, 1e-5, 120)
    coef, intercept = fit_ridge(x.astype(float), y, 0.5)
    for gram in (None, indicator_gram(x)):
        coef_b, intercept_b = fit_ridge(x, y, 0.5, gram)
        assert coef_b == pytest.approx(coef, rel=1e-9, abs=1e-12)
        assert intercept_b == pytest.approx(intercept, rel=1e-12)
    assert abs(coef[3]) < 1e-12


def test_fit_ridge_of_indicators_with_a_tiny_ridge_and_fewer_subsets_than_sources() -> None:
    """Fewer subsets than sources leave the centered Gram matrix singular, and a ridge of
    1e-12 too small for its rounding: Cholesky fails, and the fit falls back to LU (what the
    ridge was solved with before) instead of stopping the search."""
    rng = np.random.default_rng(1)
    x = rng.random((500, 2000)) > 0.5
    y = 4.5 + x @ rng.normal(0.0, 1e-3, 2000)
    coef, intercept = fit_ridge(x, y, 1e-12)
    coef_f, intercept_f = fit_ridge(x.astype(float), y, 1e-12)
    assert np.isfinite(coef).all() and np.isfinite(intercept)
    assert np.abs(x @ coef + intercept - y).max() < 1e-6  # it interpolates the subsets, as the LU fit does
    assert np.abs(x @ coef_f + intercept_f - y).max() < 1e-6


def test_exhaustive_does_not_advise_raising_m_it_has_no_m() -> None:
    """Every subset is estimated, so a source in all or none of the finite ones means the
    estimator failed on the rest; the notice said "Increase m." (exhaustive has no m)."""

    class FailsWithoutS0(Additive):
        def estimate(self, masks: np.ndarray) -> EstimateBatch:
            batch = super().estimate(masks)
            batch.loss = np.where(masks[:, 0], batch.loss, np.nan)
            return batch

    result = run_strategy("exhaustive", FailsWithoutS0([0.1, 0.2, 0.3]), SearchContext(sources=["s0", "s1", "s2"]))
    (notice,) = [n for n in result.notices if "all or none" in n]
    assert "'s0'" in notice and "Increase m" not in notice and "no finite estimate" in notice


def test_sample_subsets_rejection_path_never_repeats_a_subset() -> None:
    masks, _ = sample_subsets(6, 3, 10, np.random.default_rng(0))  # 10 of the 20: drawn by rejection
    assert len({row.tobytes() for row in masks}) == 10


def test_sample_subsets_rejection_path_draws_the_subsets_it_drew_one_by_one_before() -> None:
    """The draws are kept as arrays now, not sorted Python tuples: the same seed must still
    give the same subsets, in the same order (stored estimates and picks depend on them)."""
    for n, size, m in ((50, 25, 40), (9, 2, 12), (300, 150, 20)):
        rng = np.random.default_rng(3)
        seen: set[tuple[int, ...]] = set()
        before = []
        while len(before) < m:
            combo = tuple(sorted(rng.choice(n, size=size, replace=False).tolist()))
            if combo not in seen:
                seen.add(combo)
                before.append(combo)
        masks, _ = sample_subsets(n, size, m, np.random.default_rng(3))
        assert [tuple(np.flatnonzero(row)) for row in masks] == before


def test_mean_difference_score_is_a_difference_of_means() -> None:
    masks = np.array([[1, 0], [0, 1], [0, 0], [0, 1]], dtype=bool)
    losses = np.array([1.0, 2.0, 3.0, 10.0])
    scores, _ = mean_difference_scores(masks, losses, ["a", "b"])
    # a: mean(2, 3, 10) - 1 = 4;  b: mean(1, 3) - mean(2, 10) = -4
    assert scores == pytest.approx([4.0, -4.0])


def test_subset_size_rounds_alpha_times_n() -> None:
    from subsetctl.search.ensemble import subset_size

    assert subset_size(4, 0.7, "random_ensemble")[0] == 3  # 2.8 -> 3
    assert subset_size(10, 0.26, "random_ensemble")[0] == 3  # 2.6 -> 3


def test_fit_ridge_shrinks_by_the_closed_form() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([1.0, 3.0, 5.0, 7.0])  # y = 2 x + 1
    coef, intercept = fit_ridge(x, y, ridge=5.0)
    # centred: sum xc^2 = 5, sum xc yc = 10, so coef = 10 / (5 + 5) = 1; intercept = 4 - 1.5 * 1
    assert coef[0] == pytest.approx(1.0)
    assert intercept == pytest.approx(2.5)


def test_sweep_prefix_k_holds_the_k_best_scored_sources() -> None:
    effects = [0.3, -0.2, 0.05, -0.4, 0.1, 0.0]
    est = Additive(effects)
    result = run_strategy("random_ensemble", est, SearchContext(sources=est.sources, seed=1),
                          {"m": 20, "select": "sweep"})
    order = sorted(range(len(effects)), key=lambda i: -result.scores[f"s{i}"])
    for entry in result.diagnostics["sweep"]:
        k = entry["k"]
        assert entry["loss"] == pytest.approx(1.0 - sum(effects[i] for i in order[:k]))


@pytest.mark.parametrize("name", ["random_ensemble", "surrogate"])
def test_sweep_does_not_pick_a_longer_prefix_by_rounding_noise(name: str) -> None:
    """The sweep took the prefix with the lowest estimate, so a source repeating the
    target's train rows (2.5e-10 lower: solver noise) was picked over the target alone, as
    exhaustive once picked it; of prefixes within 1e-8 the shortest is kept, with a notice."""
    est = NoiseFavoursFirst([0.0, -0.3, -0.2])
    result = run_strategy(name, est, SearchContext(sources=est.sources), {"select": "sweep"})
    assert [entry["k"] for entry in result.diagnostics["sweep"][:2]] == [0, 1]
    assert result.diagnostics["sweep"][1]["loss"] < result.diagnostics["sweep"][0]["loss"]  # s0 ranked first
    assert result.selected == [] and result.estimated_loss == 1.0
    (notice,) = [n for n in result.notices if "rounding noise" in n]
    assert "The ranking's best 1 source is estimated lower than the pick (the target only)" in notice
    helps = NoiseFavoursFirst([1e-6, -0.3, -0.2])  # a real gain, above the noise: still picked
    result = run_strategy(name, helps, SearchContext(sources=helps.sources), {"select": "sweep"})
    assert result.selected == ["s0"] and not [n for n in result.notices if "rounding noise" in n]


def test_exhaustive_does_not_pick_a_source_by_rounding_noise() -> None:
    """A source repeating the target's train rows changes no fast estimate but, by solver
    noise 2.5e-10 lower, was the exhaustive pick over the target alone, without a word."""

    est = NoiseFavoursFirst([0.0, -0.3, -0.2])
    result = run_strategy("exhaustive", est, SearchContext(sources=est.sources))
    assert result.selected == []
    (notice,) = [n for n in result.notices if "rounding noise" in n]
    assert "The subset s0 is estimated lower than the pick (the target only)" in notice
    helps = NoiseFavoursFirst([1e-6, -0.3, -0.2])  # a real gain, above the noise: still picked
    result = run_strategy("exhaustive", helps, SearchContext(sources=helps.sources))
    assert result.selected == ["s0"] and not [n for n in result.notices if "rounding noise" in n]


def test_a_final_pick_estimated_above_the_target_alone_is_warned_about() -> None:
    """random_ensemble's sign rule keeps sources that each score positive on average, and their
    subset can be estimated worse than the target alone (the quickstart: 1.400 against 1.390);
    the search said nothing. A pick at or below the target alone, an empty pick and a pick
    without an estimate are not warned about."""
    from subsetctl.stages.search import _final_estimated_above_target_only

    baselines = {"all": {"estimated_loss_raw": 1.451}, "target_only": {"estimated_loss_raw": 1.390}}
    results = {"random_ensemble": {"selected": ["a", "b", "c"], "estimated_loss_raw": 1.400},
               "forward": {"selected": ["a"], "estimated_loss_raw": 1.384}}
    said = _final_estimated_above_target_only("random_ensemble", results, baselines)
    assert said is not None and said.startswith(
        "The final pick, random_ensemble's 3 sources, is estimated at L_hat 1.400 (raw), above the target alone's 1.390:"), said
    assert "The lowest estimate here is forward's pick (1.384)" in said, said
    assert _final_estimated_above_target_only("forward", results, baselines) is None
    results["forward"]["estimated_loss_raw"] = 1.395  # then the target alone is the lowest
    said = _final_estimated_above_target_only("random_ensemble", results, baselines)
    assert "The lowest estimate here is the target alone's (1.390)" in said, said
    for selected, estimate in (([], 1.5), (["a"], None), (["a"], 1.390)):
        results["random_ensemble"] = {"selected": selected, "estimated_loss_raw": estimate}
        assert _final_estimated_above_target_only("random_ensemble", results, baselines) is None



def test_a_final_random_pick_above_the_target_alone_is_not_blamed_on_averaged_scores() -> None:
    """`search.final` naming the `random` baseline, its one source estimated above the target
    alone, was told "adding them hurts. Per-source scores average over many subsets ...": random
    has no scores."""
    from subsetctl.stages.search import _final_estimated_above_target_only

    baselines = {"all": {"estimated_loss_raw": 1.451}, "target_only": {"estimated_loss_raw": 1.390}}
    results = {"rnd": {"strategy": "random", "selected": ["b"], "estimated_loss_raw": 1.400},
               "re": {"strategy": "random_ensemble", "selected": ["a", "b"], "estimated_loss_raw": 1.420}}
    said = _final_estimated_above_target_only("rnd", results, baselines)
    assert "rnd's 1 source, is estimated at L_hat 1.400 (raw), above the target alone's 1.390: by the estimates, " \
        "adding it hurts. random does not weigh its pick against the target alone. The lowest" in said, said
    assert "Per-source scores" not in said
    assert "adding them hurts. Per-source scores average" in _final_estimated_above_target_only("re", results, baselines)


def test_a_small_alpha_is_clamped_up_to_subsets_of_one_source() -> None:
    """round(0.1 * 4) is 0: subsets of no source say nothing about any; the size is
    raised to 1 (with a notice), as a size of n is lowered to n - 1."""
    from subsetctl.search.ensemble import clamped_subset_size

    assert clamped_subset_size(4, 0.1) == 1
    est = Additive([0.1, -0.1, 0.2, 0.0])
    result = run_strategy("random_ensemble", est, SearchContext(sources=est.sources), {"alpha": 0.1})
    assert result.diagnostics["subset_size"] == 1
    assert result.diagnostics["n_subsets"] == 4
    assert any("alpha=0.1 gives subsets of 0 of 4 sources; used 1" in n for n in result.notices)


def test_threshold_selection_keeps_only_scores_above_the_threshold() -> None:
    """select: threshold keeps score > threshold: a score equal to it (0.125, exact in
    binary) is not kept."""
    from subsetctl.search.base import SubsetMemo
    from subsetctl.search.ensemble import RandomSubsetParams, select_by_scores

    est = Additive([0.25, 0.125, -0.1])
    memo = SubsetMemo(est, SearchContext(sources=est.sources), "random_ensemble")
    params = RandomSubsetParams(select="threshold", threshold=0.125)
    mask, loss, _, _ = select_by_scores(memo, np.array([0.25, 0.125, -0.1]), params)
    assert mask.tolist() == [True, False, False]
    assert loss == pytest.approx(0.75)


@pytest.mark.parametrize("name", ["random_ensemble", "surrogate"])
def test_max_subsets_of_a_sweep_counts_its_n_plus_1_prefixes(name: str) -> None:
    """validate prices a true_finetune search by max_subsets: the m random subsets, then
    the n + 1 prefixes (k = 0..n) of a sweep. Where none of the prefixes is one of the
    random subsets, the search estimates exactly that many."""
    from subsetctl.registry import STRATEGIES
    from subsetctl.search.base import parse_params

    est = Additive([0.4, 0.3, 0.2, 0.1])
    params = {"m": 1, "select": "sweep"} if name == "random_ensemble" else {"m": 1, "select": "sweep", "holdout": 0.0}
    result = run_strategy(name, est, SearchContext(sources=est.sources, seed=0), params)
    prefixes = {tuple(f"s{i}" for i in range(k)) for k in range(5)}
    random_subsets = {tuple(t["subset"]) for t in result.trace} - prefixes
    assert len(random_subsets) == 1  # (the seed's subset is no prefix)
    cls = STRATEGIES.get(name)
    bound = cls.max_subsets(parse_params(cls, params, "params"), 4)
    assert result.diagnostics["n_subsets_estimated"] == bound == 1 + 5


class _Interacting(Additive):
    """:class:`Additive` plus a product of s0 and s1: a loss no linear surrogate fits
    exactly, so the held-out R^2 is below 1."""

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        batch = super().estimate(masks)
        batch.loss = batch.loss + 0.3 * (masks[:, 0] & masks[:, 1]) - 0.2 * (masks[:, 2] & ~masks[:, 3])
        return batch


def test_surrogate_holdout_r2_is_one_minus_the_residual_over_the_total_sum_of_squares() -> None:
    """The held-out share is ``round(holdout * m)`` subsets (the first of a permutation
    seeded by seed + 1), the rest fit the ridge surrogate, and R^2 = 1 - SSE / SST on the
    held-out subsets, recomputed here with a plain least-squares ridge fit."""
    est = _Interacting([0.3, -0.2, 0.1, 0.05, -0.1, 0.0])
    params = {"m": 20, "holdout": 0.2, "ridge": 0.5}
    result = run_strategy("surrogate", est, SearchContext(sources=est.sources, seed=3), params)
    diag = result.diagnostics
    assert (diag["n_holdout"], diag["n_train"]) == (4, 16)
    masks = np.array([[s in t["subset"] for s in est.sources] for t in result.trace[:20]])
    y = np.array([t["loss"] for t in result.trace[:20]])
    perm = np.random.default_rng(3 + 1).permutation(20)
    hold, train = perm[:4], perm[4:]
    xt = masks[train].astype(float)
    xc = xt - xt.mean(axis=0)
    coef = np.linalg.solve(xc.T @ xc + 0.5 * np.eye(6), xc.T @ (y[train] - y[train].mean()))
    pred = masks[hold] @ coef + y[train].mean() - xt.mean(axis=0) @ coef
    sse = ((y[hold] - pred) ** 2).sum()
    sst = ((y[hold] - y[hold].mean()) ** 2).sum()
    assert 0 < sse and diag["holdout_r2"] == pytest.approx(1 - sse / sst, rel=1e-9)
    assert diag["holdout_r2"] < 0.99


class _Exclusive(Additive):
    """:class:`Additive`, with s0 and s1 together 0.7 worse: each alone lowers the loss by
    about 0.5, both together do not."""

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        batch = super().estimate(masks)
        batch.loss = batch.loss + 0.7 * (masks[:, 0] & masks[:, 1])
        return batch


@pytest.mark.parametrize("first", [0, 1])
def test_exhaustive_keeps_the_lowest_of_tied_subsets_of_the_fewest_sources(first: int) -> None:
    """Of subsets tied within rounding noise with the lowest, exhaustive keeps the fewest
    sources, and among those the lowest estimate: {s0} and {s1} differ by 6e-9 here."""
    effects = [0.5, 0.5]
    effects[1 - first] -= 6e-9
    est = _Exclusive(effects)
    result = run_strategy("exhaustive", est, SearchContext(sources=est.sources))
    assert result.selected == [f"s{first}"]
    assert result.estimated_loss == pytest.approx(0.5, abs=1e-12)
