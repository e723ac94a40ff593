"""Tests of lambda selection and affine calibration on a few true fine-tunes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from subsetctl.errors import UserError
from subsetctl.estimate.calibrate import (
    Calibration,
    _loo_rel_errors,
    calibrate,
    choose_estimator,
    selection_loo_rel_errors,
    spearman,
)


def _grid(y: np.ndarray) -> dict[float, np.ndarray]:
    rng = np.random.default_rng(0)
    good = 0.8 * y + 0.1 + rng.normal(0, 0.002, len(y))  # same ranks, biased level
    return {
        1e-2: rng.permutation(y) * 0.7,  # scrambled ranks
        1e-1: 1.0 - y,  # reversed ranks
        1.0: good,
        10.0: np.full(len(y), 0.3),  # constant: no rank information
    }


def test_picks_the_lambda_whose_ranks_match_and_fits_the_bias() -> None:
    y = np.array([0.61, 0.55, 0.72, 0.48, 0.66, 0.59, 0.70, 0.52])
    cal = calibrate(y, _grid(y))
    assert cal.enabled and cal.lam == 1.0
    assert cal.spearman == pytest.approx(1.0)
    assert cal.slope == pytest.approx(1 / 0.8, rel=0.05)
    assert cal.loo_median_rel_err < 0.01
    np.testing.assert_allclose(cal.apply(_grid(y)[1.0]), y, rtol=0.01)
    assert cal.per_lambda[1e-1]["spearman"] == pytest.approx(-1.0)
    assert np.isnan(cal.per_lambda[10.0]["spearman"])


def test_ties_go_to_the_closer_calibration_then_the_larger_lambda() -> None:
    y = np.array([0.3, 0.5, 0.4, 0.6, 0.2])
    cal = calibrate(y, {0.1: y * 2, 1.0: y + 1, 0.5: y - 0.1})  # all exact after the affine map
    assert cal.lam == 1.0
    # same ranking everywhere, but lambda 10's estimates bend (not affine): its calibrated
    # values are further off, so the equally ranking lambda 0.1 is chosen
    cal = calibrate(y, {0.1: y * 2 + 0.01 * np.array([1, -1, 1, -1, 1]), 10.0: np.exp(8 * y)})
    assert cal.per_lambda[0.1]["spearman"] == cal.per_lambda[10.0]["spearman"] == 1.0
    assert cal.per_lambda[0.1]["loo_median_rel_err"] < cal.per_lambda[10.0]["loo_median_rel_err"]
    assert cal.lam == 0.1
    # the held-out replica of the choice follows the same rule
    held_out = selection_loo_rel_errors(y, {("fast", 0.1): y * 2 + 0.01 * np.array([1, -1, 1, -1, 1]),
                                            ("fast", 10.0): np.exp(8 * y)})
    only_small = selection_loo_rel_errors(y, {("fast", 0.1): y * 2 + 0.01 * np.array([1, -1, 1, -1, 1])})
    assert np.allclose(held_out, only_small)


def test_a_spearman_higher_by_one_swapped_pair_wins_over_a_closer_calibration() -> None:
    """Only equal Spearmans (to 1e-12) are ties broken by the leave-one-out error: over 40
    subsets one swapped neighbouring pair lowers Spearman by 1.9e-4, and the lambda ranking
    all 40 right is chosen though its estimates bend (a larger calibrated error)."""
    y = np.linspace(0.4, 0.8, 40)
    swapped = y.copy()
    swapped[[10, 11]] = swapped[[11, 10]]
    cal = calibrate(y, {0.1: 2 * swapped + 0.1, 1.0: np.exp(6 * y)})
    close, best = cal.per_lambda[0.1], cal.per_lambda[1.0]
    assert best["spearman"] == 1.0 and 0.999 < close["spearman"] < 1.0
    assert close["loo_median_rel_err"] < best["loo_median_rel_err"]
    assert cal.lam == 1.0 and cal.spearman == 1.0


def test_nan_true_values_are_excluded_with_a_reason() -> None:
    y = np.array([0.61, np.nan, 0.72, 0.48, 0.66, 0.59])
    raw = {1.0: np.array([0.5, 0.1, 0.6, 0.4, 0.55, 0.48])}
    cal = calibrate(y, raw, labels=["s0", "s1", "s2", "s3", "s4", "s5"])
    assert cal.enabled and cal.per_lambda[1.0]["n"] == 5
    assert any("s1" in note and "diverged" in note for note in cal.notes)
    assert np.isfinite(cal.slope) and np.isfinite(cal.loo_median_rel_err)


def test_a_subset_without_an_estimate_is_one_note_whatever_the_lambdas() -> None:
    """A subset the estimator gave NaN for had one note per lambda of the grid (12 lines
    for 2 subsets)."""
    y = np.array([0.61, 0.55, 0.72, 0.48, 0.66, 0.59])
    grid = {lam: np.array([0.5, np.nan, 0.6, 0.4, 0.55, 0.48]) for lam in (0.1, 1.0, 10.0)}
    grid[10.0][3] = np.nan
    cal = calibrate(y, grid, labels=["s0", "s1", "s2", "s3", "s4", "s5"])
    assert [note for note in cal.notes if "its estimate is NaN" in note] == [
        "s1 excluded at every lambda: its estimate is NaN.", "s3 excluded at lambda=10: its estimate is NaN."]


def test_fewer_than_four_usable_subsets_disables_calibration() -> None:
    y = np.array([0.5, 0.6, np.nan, 0.4])
    cal = calibrate(y, {0.1: np.array([1.0, 2.0, 3.0, 0.5]), 1.0: np.array([0.3, 0.4, 0.1, 0.2])})
    assert not cal.enabled
    assert any("off" in note for note in cal.notes)
    raw = np.array([0.25, 0.35])
    np.testing.assert_array_equal(cal.apply(raw), raw)
    assert cal.lam == 1.0  # ranks still usable with 3 points: 1.0 matches, 0.1 does too -> larger


def test_json_round_trip() -> None:
    y = np.array([0.61, 0.55, 0.72, 0.48, 0.66])
    cal = calibrate(y, _grid(y))
    text = json.dumps(cal.to_dict())
    back = Calibration.from_dict(json.loads(text))
    assert back.lam == cal.lam and back.slope == cal.slope and back.notes == cal.notes
    assert set(back.per_lambda) == set(cal.per_lambda)
    np.testing.assert_array_equal(back.apply(np.array([0.4])), cal.apply(np.array([0.4])))


def test_per_lambda_n_is_written_as_an_integer() -> None:
    """report.json's calibration.per_lambda[].n, how many subsets were usable, read 4.0: a
    count a script compares or indexes with (``range(n)``) should be an integer there."""
    y = np.array([0.61, 0.55, 0.72, 0.48, 0.66])
    rows = json.loads(json.dumps(calibrate(y, _grid(y)).to_dict()))["per_lambda"]
    assert [type(row["n"]) for row in rows] == [int] * len(rows) and rows[0]["n"] == 5
    assert all(isinstance(row["raw_median_rel_err"], float) for row in rows)  # the statistics stay floats


def test_mismatched_lengths_are_user_errors() -> None:
    with pytest.raises(UserError, match="raw estimates"):
        calibrate([0.1, 0.2, 0.3, 0.4], {1.0: [0.1, 0.2]})
    with pytest.raises(UserError):
        calibrate([0.1, 0.2], {})


def test_spearman_handles_ties_and_constants() -> None:
    assert spearman(np.array([1, 2, 2, 3]), np.array([1, 2, 2, 3])) == pytest.approx(1.0)
    assert np.isnan(spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])))


def test_choose_estimator_prefers_better_ranks_and_breaks_ties_by_order() -> None:
    y = np.array([0.61, 0.55, 0.72, 0.48, 0.66, 0.59])
    good = calibrate(y, {1.0: y * 0.5 + 0.2})
    worse = calibrate(y, {1.0: np.array([0.61, 0.72, 0.55, 0.48, 0.66, 0.59])})
    assert choose_estimator({"fast": worse, "linear_sgd": good}).estimator == "linear_sgd"
    tied = calibrate(y, {3.0: y + 1})
    chosen = choose_estimator({"fast": good, "linear_sgd": tied})
    assert chosen.estimator == "fast" and chosen.lam == 1.0
    assert Calibration.from_dict(json.loads(json.dumps(chosen.to_dict()))).estimator == "fast"
    with pytest.raises(UserError):
        choose_estimator({})


def test_selection_loo_holds_out_the_choice_too() -> None:
    y = np.array([0.61, 0.55, 0.72, 0.48, 0.66, 0.59, np.nan, 0.52])
    rng = np.random.default_rng(1)
    exact = 2.0 * np.nan_to_num(y) - 0.3
    noise = rng.permutation(np.nan_to_num(y))
    errs = selection_loo_rel_errors(y, {("fast", 1.0): noise, ("linear_sgd", 1.0): exact})
    assert np.isnan(errs[6]) and np.isfinite(errs[[0, 1, 2, 3, 4, 5, 7]]).all()
    assert np.nanmax(errs) < 1e-9  # the affine candidate wins on every held-out fold
    noisy_only = selection_loo_rel_errors(y, {("fast", 1.0): noise})
    assert np.nanmedian(noisy_only) > 0.01


def test_too_few_subsets_keep_the_default_lambda_instead_of_a_three_point_spearman() -> None:
    from subsetctl.estimate.calibrate import calibrate

    y = np.array([1.0, 2.0, 3.0])
    cal = calibrate(y, {0.1: -y, 1.0: y * 0.5, 10.0: y}, default_lam=0.3)
    assert not cal.enabled and cal.lam == 0.3  # used to be 10: every lambda tied on 3 points
    assert "3 usable fine-tuned subsets" in cal.notes[-1]


def test_real_runs_that_all_end_at_one_loss_turn_calibration_off() -> None:
    """Blown-up runs that stay finite (all 4.574711) showed a 1.9e-14% error: a perfect
    estimator, by appearance."""
    from subsetctl.estimate.calibrate import calibrate

    y = np.full(6, 4.574711)
    cal = calibrate(y, {1.0: np.linspace(1.0, 2.0, 6), 10.0: np.linspace(2.0, 1.0, 6)}, default_lam=1.0)
    assert not cal.enabled and cal.lam == 1.0 and not np.isfinite(cal.loo_median_rel_err)
    assert "ended at the same loss (4.57471)" in cal.notes[-1]


def test_no_rankable_lambda_or_too_few_runs_give_no_evidence_for_an_estimator() -> None:
    """Constant estimates (no Spearman) with the spec's lambda outside the grid raised a
    KeyError; three usable runs let choose_estimator swap estimators on a 3-point Spearman."""
    from subsetctl.estimate.calibrate import calibrate, choose_estimator

    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    cal = calibrate(y, {0.1: np.ones(5), 1.0: np.full(5, 2.0)}, default_lam=0.5)
    assert not cal.enabled and cal.lam == 0.5 and "rank" in cal.notes[-1]
    few = np.array([1.0, 2.0, 3.0, np.nan, np.nan])
    fast = calibrate(few, {1.0: -few}, default_lam=1.0)
    sgd = calibrate(few, {1.0: few}, default_lam=1.0)
    fast.estimator, sgd.estimator = "fast", "linear_sgd"
    assert np.isnan(fast.spearman) and np.isnan(sgd.spearman)
    assert choose_estimator({"fast": fast, "linear_sgd": sgd}).estimator == "fast"  # the spec's, not a 3-point pick


def _ref_loo(raw: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Brute-force leave-one-out relative errors: for each i, ordinary least squares on the
    other points by the normal equations; where that slope is not positive (a constant raw
    too), calibration is off, and the prediction is the raw estimate itself."""
    errs = []
    for i in range(len(y)):
        xs = np.delete(raw, i)
        ys = np.delete(y, i)
        if np.all(xs == xs[0]):
            pred = raw[i]
        else:
            xm, ym = xs.mean(), ys.mean()
            slope = ((xs - xm) * (ys - ym)).sum() / ((xs - xm) ** 2).sum()
            pred = ym + slope * (raw[i] - xm) if slope > 0 else raw[i]
        errs.append(abs(pred - y[i]) / abs(y[i]))
    return np.array(errs)


def test_leave_one_out_error_holds_each_point_out_of_its_own_fit() -> None:
    raw = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([1.0, 2.0, 3.0, 5.0])
    # by hand: without the last point the others lie on y = raw + 1, so it is predicted 4, error 1/5
    assert _ref_loo(raw, y)[3] == pytest.approx(0.2)
    cal = calibrate(y, {1.0: raw})  # exactly MIN_K = 4 usable subsets: the error is defined
    assert cal.enabled
    assert cal.loo_median_rel_err == pytest.approx(float(np.median(_ref_loo(raw, y))))
    # raw vs true relative errors |raw - y| / |y| = 1, 1/2, 1/3, 2/5: the median is 0.45
    assert cal.per_lambda[1.0]["raw_median_rel_err"] == pytest.approx(0.45)


def test_leave_one_out_where_the_others_fit_no_positive_slope_predicts_the_raw_estimate() -> None:
    """As calibrate() does with all the subsets, a fold whose map is flat or reversed is
    calibration turned off: its subset's prediction is the raw estimate (the map's value, a
    reversed order's, was counted as the calibrated error)."""
    raw = np.array([1.0, 1.0, 1.0, 2.0])
    y = np.array([1.0, 2.0, 8.0, 4.0])
    # without the last point raw is constant: slope 0, calibration off, prediction 2, error 1/2
    assert _ref_loo(raw, y)[3] == pytest.approx(0.5)
    np.testing.assert_allclose(_loo_rel_errors(raw, y), _ref_loo(raw, y), rtol=1e-9)
    raw = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    y = np.array([4.0, 3.0, 2.0, 1.0, 9.0])
    # without the last point the slope is -1 (the map would give 5 - 10 = -5): the raw 10, error 1/9
    assert _ref_loo(raw, y)[4] == pytest.approx(1 / 9)
    np.testing.assert_allclose(_loo_rel_errors(raw, y), _ref_loo(raw, y), rtol=1e-9)
    errs = selection_loo_rel_errors(y, {("fast", 1.0): raw})
    assert errs[4] == pytest.approx(1 / 9)


def test_two_usable_runs_report_no_spearman() -> None:
    cal = calibrate([1.0, 2.0, np.nan], {1.0: [1.0, 2.0, 3.0]})
    assert np.isnan(cal.per_lambda[1.0]["spearman"])  # two points always rank perfectly or inversely


def test_spearman_of_two_points_is_their_order() -> None:
    assert spearman(np.array([1.0, 2.0]), np.array([5.0, 3.0])) == pytest.approx(-1.0)
    assert spearman(np.array([1.0, 2.0]), np.array([3.0, 5.0])) == pytest.approx(1.0)


def test_selection_loo_makes_the_choice_without_the_held_out_subset() -> None:
    """Held out, subset 0 must not sway the choice: without it lambda 0.1's estimates are
    exactly affine in the truth (a tie on Spearman 1, won by the smaller error), so subset
    0, which they put 0.5 too high, is predicted 0.25 too high (0.625 of 0.4). Seen by the
    choice, that one subset would lower 0.1's Spearman and hand the choice to lambda 1."""
    y = np.linspace(0.4, 0.8, 8)
    off = 2 * y + 0.1
    off[0] += 0.5
    errs = selection_loo_rel_errors(y, {("fast", 0.1): off, ("fast", 1.0): np.exp(6 * y)})
    assert errs[0] == pytest.approx(0.625, rel=1e-9)


def test_selection_loo_needs_min_k_subsets_besides_the_held_out_one() -> None:
    """With 4 usable subsets (MIN_K) each fold has 3 others: calibration would be off, so
    no held-out error; with 5, every fold has one."""
    y = np.array([0.61, 0.55, 0.72, 0.48, 0.66])
    assert np.isnan(selection_loo_rel_errors(y[:4], {("fast", 1.0): 2 * y[:4] + 0.1})).all()
    assert np.isfinite(selection_loo_rel_errors(y, {("fast", 1.0): 2 * y + 0.1})).all()


def test_close_but_distinct_true_losses_still_calibrate() -> None:
    y = np.array([2.0, 2.0001, 2.0002, 2.0003, 2.0004])  # real runs 1e-4 apart: not "all the same"
    cal = calibrate(y, {1.0: np.array([1.0, 2.0, 3.0, 4.0, 5.0])})
    assert cal.enabled and cal.spearman == pytest.approx(1.0)


def test_choose_estimator_never_prefers_an_estimator_without_a_spearman() -> None:
    y = np.array([0.61, 0.55, 0.72, 0.48, 0.66, 0.59])
    flat = calibrate(y, {1.0: np.full(6, 0.5)})  # constant estimates: no Spearman
    assert np.isnan(flat.spearman)
    ranked = calibrate(y, {1.0: y * 0.5 + 0.2})
    assert choose_estimator({"fast": flat, "linear_sgd": ranked}).estimator == "linear_sgd"


def test_selection_loo_with_one_candidate_is_the_plain_leave_one_out() -> None:
    raw = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    y = np.array([1.0, 2.0, 3.0, 5.0, 4.0])
    errs = selection_loo_rel_errors(y, {("fast", 1.0): raw})
    np.testing.assert_allclose(errs, _ref_loo(raw, y), rtol=1e-9, atol=1e-12)


def test_selection_loo_ties_across_estimators_go_to_the_earlier_one() -> None:
    y = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 6.0])
    curved = np.exp(y)  # same ranks as the linear one, so every fold ties on Spearman
    linear = 0.5 * y
    errs = selection_loo_rel_errors(y, {("fast", 1.0): curved, ("linear_sgd", 1.0): linear})
    np.testing.assert_allclose(errs, _ref_loo(curved, y), rtol=1e-9, atol=1e-12)
    assert not np.allclose(_ref_loo(curved, y), _ref_loo(linear, y))


def test_selection_loo_skips_a_candidate_that_has_no_estimate_for_the_held_out_subset() -> None:
    y = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 6.0])
    best = y.copy()
    best[0] = np.nan  # would win every fold on ranks, but cannot predict subset 0
    worse = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 6.0])
    errs = selection_loo_rel_errors(y, {("fast", 1.0): best, ("linear_sgd", 1.0): worse})
    assert np.isfinite(errs).all()
    assert errs[0] == pytest.approx(_ref_loo(worse, y)[0])


@pytest.mark.parametrize("raw", [
    [0.9, 0.8, 0.7, 0.6, 0.5],  # reversed ranks: Spearman -1, slope -1
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, -9.0],  # Spearman 0.54, one outlier: slope < 0
])
def test_a_map_with_a_slope_that_is_not_positive_is_not_used(raw: list[float]) -> None:
    """The search ranks subsets by the raw estimates; a negative slope was kept (with a
    note nobody was warned of), so the calibrated estimates ranked the search's own pick
    as the worst subset and the report showed both orders side by side."""
    y = np.linspace(0.5, 0.9, len(raw))
    cal = calibrate(y, {0.1: np.array(raw)})
    assert not cal.enabled and (cal.slope, cal.intercept) == (1.0, 0.0)
    np.testing.assert_array_equal(cal.apply(np.array(raw)), raw)
    assert cal.lam == 0.1 and np.isfinite(cal.spearman) and np.isnan(cal.loo_median_rel_err)
    assert any(note.startswith("Calibration is off: the affine map fitted at lambda=0.1 has slope -")
               for note in cal.notes)


def test_a_lambda_chosen_at_either_end_of_the_grid_is_noted() -> None:
    """The default grid's smallest lambda won on the tiny project (Spearman 0.76 against 0.62
    at the next) and nothing said that a smaller one might rank better still."""
    y = np.array([0.3, 0.5, 0.4, 0.6, 0.2, 0.45])
    scrambled = np.array([0.3, 0.2, 0.4, 0.6, 0.5, 0.45])
    smallest = calibrate(y, {0.01: y * 2, 0.1: scrambled, 1.0: -y})
    assert smallest.lam == 0.01 and smallest.enabled
    assert [n for n in smallest.notes if "beyond the grid" in n] == [(
        "lambda=0.01 is the smallest of calibrate.lambda_grid and ranks the fine-tuned subsets best (Spearman "
        "1.00; lambda=0.1: 0.09), so the best lambda may lie beyond the grid: add smaller values to "
        "calibrate.lambda_grid (e.g. 0.001, 0.003) to find out.")]
    largest = calibrate(y, {0.01: -y, 0.1: scrambled, 10.0: y})
    assert largest.lam == 10.0 and "add larger values to calibrate.lambda_grid (e.g. 30, 100)" in largest.notes[-1]
    # not for a lambda inside the grid, a pinned one, or the largest winning only by the tie rule
    for grid in ({0.01: -y, 1.0: y * 2 + 1, 10.0: scrambled}, {1.0: y}, {0.01: y * 2, 1.0: y * 2 + 1}):
        cal = calibrate(y, grid)
        assert cal.enabled and not any("beyond the grid" in n for n in cal.notes), (grid, cal.notes)


def test_a_held_out_error_no_smaller_than_the_mean_of_the_other_runs_is_noted() -> None:
    """On the tiny project the surrogate runs' calibrated error read 0.0064%, a precise-looking
    figure, while predicting each run by the mean of the others was off by only 0.0047%."""
    y = np.array([0.50, 0.52, 0.51, 0.53, 0.49, 0.515])
    others = (y.sum() - y) / (len(y) - 1)
    of_mean = float(np.median(np.abs(others - y) / y))  # 2.4%
    cal = calibrate(y, {1.0: np.array([0.2, 0.3, 0.1, 0.5, 0.05, 0.6])})
    assert cal.enabled and of_mean <= cal.loo_median_rel_err < 0.03
    assert cal.notes == [(
        "The calibrated estimates' leave-one-out error (2.5%) is no smaller than that of predicting each "
        f"fine-tuned subset by the mean of the others ({of_mean * 100:#.2g}%): the calibrated values tell no more "
        "about a subset's loss than the average of the real runs does, however small the error looks. Judge the "
        "estimates by their rank agreement (Spearman) instead.")]
    # an estimate that beats the mean is not noted
    assert calibrate(y, {1.0: np.array([0.1, 0.3, 0.2, 0.5, 0.05, 0.6])}).notes == []


def test_diverged_fine_tunes_are_one_note_however_many() -> None:
    """With every surrogate fine-tune of the tiny project diverged, the report listed eight
    "X excluded: its true loss is NaN" lines before the one that said calibration is off."""
    y = np.array([0.61, np.nan, 0.72, np.nan, 0.66, 0.59, 0.5])
    raw = {1.0: np.array([0.5, 0.1, 0.6, 0.4, 0.55, 0.48, 0.45])}
    cal = calibrate(y, raw, labels=[f"s{i}" for i in range(7)])
    assert cal.notes[0] == "s1, s3 excluded: their true losses are NaN (the fine-tunes diverged)."
    assert len([n for n in cal.notes if "NaN" in n]) == 1
    cal = calibrate(np.full(8, np.nan), {1.0: np.arange(8.0)}, labels=[f"s{i}" for i in range(8)])
    assert cal.notes[0] == ("s0, s1, s2, s3, s4 and 3 more excluded: their true losses are NaN (the fine-tunes "
                            "diverged).")
    assert len(cal.notes) == 2 and cal.notes[1].startswith("Calibration is off")


@pytest.mark.parametrize(("y", "raw"), [
    ([1, 2, 0, 2, 1.0], [1, 2, 3, 4, 5.0]),  # slope 8.5e-17 by rounding: was taken as a rising map
    ([2, 1, 3, 3, 1, 2.0], [1, 2, 3, 4, 5, 6.0]),  # -1.4e-16: was said to rank "in the reverse order"
])
def test_a_slope_of_zero_within_rounding_is_flat(y: list[float], raw: list[float]) -> None:
    """True losses that do not move with the raw estimates (Spearman 0): the fitted slope is
    0 up to rounding, and calibration is off with the estimates ranked "all alike"."""
    cal = calibrate(np.array(y), {1.0: np.array(raw)})
    assert not cal.enabled and cal.slope == 1.0
    assert any("rank the subsets all alike" in note for note in cal.notes), cal.notes
