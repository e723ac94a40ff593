"""Tests of the exact and fast offset-logistic estimators."""

from __future__ import annotations

import functools
import itertools
import pickle

import numpy as np
import pytest
from estfixtures import random_masks
from scipy.optimize import minimize

from subsetctl.errors import UserError
from subsetctl.estimate.base import FeatureSet
from subsetctl.estimate.calibrate import spearman
from subsetctl.estimate.dynamics import LinearSGDEstimator
from subsetctl.estimate.solvers import DEFAULT_LAMBDA, ExactEstimator, FastEstimator
from subsetctl.estimate.synthetic import make_synthetic_features
from subsetctl.registry import ESTIMATORS


def _rows(features: FeatureSet, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.flatnonzero(mask)
    x = np.concatenate([features.target_train_x] + [features.source_train_x[k] for k in idx])
    f = np.concatenate([features.target_train_f] + [features.source_train_f[k] for k in idx])
    return x, f


def _objective(x: np.ndarray, f: np.ndarray, lam: float):
    def fun(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = f + x @ w
        sig_neg = 1.0 / (1.0 + np.exp(z))
        value = np.logaddexp(0.0, -z).mean() + lam * w @ w
        return value, -(x.T @ sig_neg) / len(f) + 2 * lam * w

    return fun


def _one_dimensional(x: np.ndarray, f: np.ndarray, lam: float):
    """A 1-D feature set whose target rows are ``(x, f)`` (and validation rows too), the
    empty mask, and the objective of the target alone."""
    fs = FeatureSet("t", ["a"], x, f, [np.ones((1, 1))], [np.zeros(1)], x, f)

    def obj(w: np.ndarray) -> float:
        return float(np.logaddexp(0.0, -(f + x @ w)).mean() + lam * w @ w)

    return fs, np.array([[False]]), obj


def test_registered_under_their_names() -> None:
    assert ESTIMATORS.get("exact") is ExactEstimator
    assert ESTIMATORS.get("fast") is FastEstimator


@pytest.mark.parametrize("lam", [0.02, DEFAULT_LAMBDA])
def test_exact_matches_scipy_and_gradient_vanishes(small_features: FeatureSet, lam: float) -> None:
    est = ExactEstimator(small_features, lam=lam, tol=1e-9)
    masks = random_masks(6, small_features.n_sources, seed=1)
    w, batch = est.solve(masks)
    assert batch.converged.all()
    for i, mask in enumerate(masks):
        fun = _objective(*_rows(small_features, mask), lam)
        _, grad = fun(w[i])
        assert np.linalg.norm(grad) < 1e-8
        ref = minimize(
            fun,
            np.zeros(w.shape[1]),
            jac=True,
            method="L-BFGS-B",
            options={"gtol": 1e-10, "ftol": 1e-16, "maxiter": 5000},
        )
        ref_loss = np.logaddexp(0.0, -(small_features.val_f + small_features.val_x @ ref.x)).mean()
        assert batch.loss[i] == pytest.approx(ref_loss, rel=1e-6)
        assert batch.w_norm[i] == pytest.approx(np.linalg.norm(w[i]), rel=1e-12)
        assert fun(w[i])[0] <= fun(ref.x)[0] + 1e-12


def test_fast_ranks_like_exact(small_features: FeatureSet) -> None:
    masks = random_masks(60, small_features.n_sources, seed=2)
    exact = ExactEstimator(small_features).estimate(masks)
    fast = FastEstimator(small_features).estimate(masks)
    assert spearman(fast.loss, exact.loss) >= 0.95
    assert fast.converged.all() and (fast.iterations == 1).all()


def test_fast_is_one_exact_newton_step(small_features: FeatureSet) -> None:
    """With max_iter=0 the exact solver stops at its warm start, the fast solution."""
    masks = random_masks(5, small_features.n_sources, seed=4)
    fast = FastEstimator(small_features, lam=0.3).estimate(masks)
    exact0 = ExactEstimator(small_features, lam=0.3, max_iter=0).estimate(masks)
    np.testing.assert_allclose(exact0.loss, fast.loss, rtol=1e-12)


def test_non_converged_is_flagged_with_a_finite_loss(small_features: FeatureSet) -> None:
    est = ExactEstimator(small_features, lam=0.01, max_iter=1, tol=1e-14)
    batch = est.estimate(random_masks(4, small_features.n_sources, seed=5))
    assert not batch.converged.any()
    assert np.isfinite(batch.loss).all()
    assert (batch.iterations == 1).all()


def test_empty_mask_is_target_only(small_features: FeatureSet) -> None:
    n = small_features.n_sources
    target_only = FeatureSet(
        target="t",
        sources=["a"],
        target_train_x=small_features.target_train_x,
        target_train_f=small_features.target_train_f,
        source_train_x=[small_features.source_train_x[0]],
        source_train_f=[small_features.source_train_f[0]],
        val_x=small_features.val_x,
        val_f=small_features.val_f,
    )
    for cls in (ExactEstimator, FastEstimator):
        full = cls(small_features).estimate(np.zeros((1, n), dtype=bool))
        ref = cls(target_only).estimate(np.zeros((1, 1), dtype=bool))
        assert np.isfinite(full.loss[0])
        assert full.loss[0] == pytest.approx(ref.loss[0], rel=1e-12)


def test_zero_masks_give_an_empty_batch(small_features: FeatureSet) -> None:
    batch = ExactEstimator(small_features).estimate(np.zeros((0, small_features.n_sources)))
    assert batch.loss.shape == (0,)


def test_planted_truth(small_features: FeatureSet) -> None:
    """Adding a helpful source lowers L_hat; adding a harmful one raises it."""
    est = ExactEstimator(small_features)
    names = small_features.sources
    base = ["src05", "src06"]
    masks = est.masks_for([base, base + [names[0]], base + [names[1]], base + [names[2]], base + [names[3]]])
    loss = est.estimate(masks).loss
    assert loss[1] < loss[0] and loss[2] < loss[0]
    assert loss[3] > loss[0] and loss[4] > loss[0]


def test_unknown_source_name_is_a_user_error(small_features: FeatureSet) -> None:
    est = FastEstimator(small_features)
    with pytest.raises(UserError, match="nope"):
        est.masks_for([["src00", "nope"]])


def test_bad_inputs_are_user_errors(small_features: FeatureSet) -> None:
    with pytest.raises(UserError, match="lambda"):
        FastEstimator(small_features, lam=0.0)
    with pytest.raises(UserError, match="shape"):
        FastEstimator(small_features).estimate(np.zeros((2, 3), dtype=bool))
    broken = make_synthetic_features(n_sources=2, rows_per_source=10, d=4, n_target_train=5, n_val=5)
    broken.source_train_f[1] = broken.source_train_f[1].copy()
    broken.source_train_f[1][0] = np.nan
    with pytest.raises(UserError, match="src01"):
        ExactEstimator(broken)


def test_batch_composition_changes_only_round_off(small_features: FeatureSet) -> None:
    est = ExactEstimator(small_features, lam=0.1, chunk_size=7)
    masks = random_masks(15, small_features.n_sources, seed=9)
    together = est.estimate(masks)
    alone = [est.estimate(m[None]) for m in masks]
    np.testing.assert_allclose([a.loss[0] for a in alone], together.loss, rtol=1e-12)


def test_pickle_roundtrip_and_fast_ships_only_statistics(small_features: FeatureSet) -> None:
    fast = FastEstimator(small_features)
    exact = ExactEstimator(small_features)
    masks = random_masks(3, small_features.n_sources, seed=11)
    for est in (fast, exact):
        clone = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(clone.estimate(masks).loss, est.estimate(masks).loss)
        assert clone.fingerprint() == est.fingerprint()
    assert len(pickle.dumps(fast)) < len(pickle.dumps(exact)) / 2
    assert FastEstimator(small_features, lam=0.5).fingerprint() != fast.fingerprint()


def test_fast_chunking_changes_only_round_off(small_features: FeatureSet) -> None:
    masks = random_masks(10, small_features.n_sources, seed=12)
    whole = FastEstimator(small_features).estimate(masks)
    chunked = FastEstimator(small_features, chunk_size=3).estimate(masks)
    np.testing.assert_allclose(chunked.loss, whole.loss, rtol=1e-12)
    np.testing.assert_allclose(chunked.w_norm, whole.w_norm, rtol=1e-12)


def test_fast_flags_steps_outside_its_quadratic_model() -> None:
    """With few rows for d (as in real stores: 328 rows, d = 128) and a small lambda, the
    Newton step's quadratic model predicts a negative objective (impossible): fast
    returned such losses (near 0, or 53 at lambda 1e-300) marked converged."""
    features = make_synthetic_features(n_sources=4, rows_per_source=8, d=64, n_target_train=8, n_val=20, seed=3,
                                       helpful=(0,), harmful=(1,))
    masks = random_masks(12, 4, seed=7)
    tiny = FastEstimator(features, lam=1e-4).estimate(masks)
    assert 0 < (~tiny.converged).sum() < len(masks)
    w, ok, _, g, _, f0 = FastEstimator(features, lam=1e-4).solve_extended(
        np.column_stack([np.ones(len(masks), bool), masks]))
    predicted = f0 + 0.5 * np.einsum("md,md->m", g, w)
    np.testing.assert_array_equal(tiny.converged, ok & (predicted >= 0) & np.isfinite(tiny.loss))
    assert FastEstimator(features, lam=1.0).estimate(masks).converged.all()


def test_fast_is_the_newton_step_of_the_objective_at_zero(small_features: FeatureSet) -> None:
    """Gradient from the objective's own formula, Hessian by central differences of it:
    the step -H^{-1} g from w = 0 is what fast reports (loss and ||w||)."""
    lam = 0.3
    masks = random_masks(3, small_features.n_sources, seed=6)
    fast = FastEstimator(small_features, lam=lam).estimate(masks)
    d = small_features.d
    for i, mask in enumerate(masks):
        fun = _objective(*_rows(small_features, mask), lam)
        g0 = fun(np.zeros(d))[1]
        h = 1e-5
        hess = np.column_stack([(fun(h * e)[1] - fun(-h * e)[1]) / (2 * h) for e in np.eye(d)])
        w = -np.linalg.solve((hess + hess.T) / 2, g0)
        loss = np.logaddexp(0.0, -(small_features.val_f + small_features.val_x @ w)).mean()
        assert fast.loss[i] == pytest.approx(loss, rel=1e-6)
        assert fast.w_norm[i] == pytest.approx(np.linalg.norm(w), rel=1e-6)


def test_softplus_far_below_the_exp_cap_is_exact() -> None:
    from subsetctl.estimate.solvers import _loss_and_sigmoid

    loss, sig_neg = _loss_and_sigmoid(np.array([-800.0, -10.0, 0.0, 30.0]))
    np.testing.assert_allclose(loss, [800.0, 10.0 + np.log1p(np.exp(-10.0)), np.log(2.0), np.log1p(np.exp(-30.0))],
                               rtol=1e-12)
    np.testing.assert_allclose(sig_neg, [1.0, 1 / (1 + np.exp(-10.0)), 0.5, 1 / (1 + np.exp(30.0))], rtol=1e-12)


def test_softplus_between_the_exp_cap_and_the_far_branch_matches_logaddexp() -> None:
    """``exp`` is capped at exp(700) only: a lower cap (exp(70)) gave a loss of 70 for every
    row with z in (-700, -70), whatever its z."""
    from subsetctl.estimate.solvers import _loss_and_sigmoid, softplus_neg

    z = np.array([-650.0, -300.0, -100.0, -71.0, -40.0])
    loss, sig_neg = _loss_and_sigmoid(z.copy())
    np.testing.assert_allclose(loss, softplus_neg(z), rtol=1e-12)
    np.testing.assert_allclose(loss, -z, rtol=1e-12)
    np.testing.assert_allclose(sig_neg, 1.0, rtol=1e-12)


def test_fast_never_marks_a_non_finite_loss_converged(small_features: FeatureSet,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A step whose validation loss overflows (NaN or infinite) is a failed estimate, not a
    converged one, even where the step itself solved and stays in the quadratic regime."""
    from subsetctl.estimate import solvers

    real = solvers._val_loss
    monkeypatch.setattr(solvers, "_val_loss", lambda x, f, w: real(x, f, w) * np.array([np.nan, 1.0, np.inf])[: len(w)])
    batch = FastEstimator(small_features, lam=1.0).estimate(random_masks(3, small_features.n_sources, seed=2))
    np.testing.assert_array_equal(np.isfinite(batch.loss), [False, True, False])
    np.testing.assert_array_equal(batch.converged, [False, True, False])


def test_masks_with_values_other_than_0_and_1_are_user_errors(small_features: FeatureSet) -> None:
    masks = np.zeros((1, small_features.n_sources), dtype=int)
    masks[0, 0] = 2
    with pytest.raises(UserError, match="boolean"):
        FastEstimator(small_features).estimate(masks)


def test_exact_fingerprint_follows_its_settings(small_features: FeatureSet) -> None:
    base = ExactEstimator(small_features, lam=0.5, tol=1e-6, max_iter=50).fingerprint()
    assert ExactEstimator(small_features, lam=0.5, tol=1e-6, max_iter=50).fingerprint() == base
    assert ExactEstimator(small_features, lam=0.5, tol=1e-8, max_iter=50).fingerprint() != base
    assert ExactEstimator(small_features, lam=0.5, tol=1e-6, max_iter=5).fingerprint() != base
    assert ExactEstimator(small_features, lam=0.25, tol=1e-6, max_iter=50).fingerprint() != base


def test_exact_converged_means_gradient_norm_within_tol(small_features: FeatureSet) -> None:
    lam = 0.05
    masks = random_masks(1, small_features.n_sources, seed=7)
    w, _ = ExactEstimator(small_features, lam=lam, max_iter=0).solve(masks)
    gnorm = np.linalg.norm(_objective(*_rows(small_features, masks[0]), lam)(w[0])[1])
    assert gnorm > 1e-6
    assert not ExactEstimator(small_features, lam=lam, max_iter=0, tol=gnorm / 5).estimate(masks).converged[0]
    assert ExactEstimator(small_features, lam=lam, max_iter=0, tol=gnorm * 1.01).estimate(masks).converged[0]


def test_exact_never_goes_uphill_on_a_hard_one_dimensional_problem() -> None:
    """Two far-apart rows and a small lambda: the Newton step from 0 overshoots (warm start
    worse than 0) and later full steps need backtracking. Each extra Newton step may only
    lower the objective (Armijo), and the end point is the 1-D minimiser."""
    from scipy.optimize import minimize_scalar

    lam = 0.049
    fs, mask, obj = _one_dimensional(np.array([[14.19], [-51.62]]), np.array([-10.75, -11.24]), lam)
    values = [obj(np.zeros(1))]
    for k in range(8):
        w, _ = ExactEstimator(fs, lam=lam, max_iter=k).solve(mask)
        values.append(obj(w[0]))
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(values))
    w, batch = ExactEstimator(fs, lam=lam, tol=1e-10).solve(mask)
    ref = minimize_scalar(lambda v: obj(np.array([v])), bounds=(-5, 5), method="bounded", options={"xatol": 1e-12})
    assert batch.converged[0]
    assert w[0, 0] == pytest.approx(ref.x, abs=1e-6)


def test_exact_newton_steps_converge_superlinearly() -> None:
    """CG is stopped at relative residual ``min(0.5, sqrt(||g||))``, so the outer Newton
    steps converge superlinearly: 5-7 steps to 1e-10 here. A CG stopped at a fixed 0.5
    (linear convergence) took up to 23, and a CG whose directions lost conjugacy up to 10;
    both still converged, so only the step count shows it."""
    features = make_synthetic_features(n_sources=6, rows_per_source=40, d=8, n_target_train=30, n_val=50, seed=0,
                                       helpful=(0,), harmful=(1,))
    masks = random_masks(8, 6, seed=3)
    for lam, most in ((0.01, 7), (0.1, 5)):
        batch = ExactEstimator(features, lam=lam, tol=1e-10, max_iter=100).estimate(masks)
        assert batch.converged.all()
        assert batch.iterations.max() <= most, (lam, batch.iterations)


def test_exact_default_tolerance_is_1e_6(small_features: FeatureSet) -> None:
    """The pipeline builds the exact estimator without a tol: its default, 1e-6 on the
    gradient norm, is the precision of every exact estimate a search uses."""
    lam = 0.05
    masks = random_masks(4, small_features.n_sources, seed=8)
    w, batch = ExactEstimator(small_features, lam=lam).solve(masks)
    w_ref, ref = ExactEstimator(small_features, lam=lam, tol=1e-6).solve(masks)
    np.testing.assert_array_equal(batch.iterations, ref.iterations)
    np.testing.assert_array_equal(w, w_ref)
    for i, mask in enumerate(masks):
        assert np.linalg.norm(_objective(*_rows(small_features, mask), lam)(w[i])[1]) <= 1e-6


def test_exact_line_search_never_accepts_an_uphill_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step is accepted only where it lowers the objective by ``c1 * alpha * |slope|``
    (Armijo). With the sign of that term flipped, steps going uphill by up to it were
    accepted; the module's c1 (1e-4) hides that in tests, a large one (0.45) shows it on
    this 1-D problem, where the Newton steps overshoot."""
    from subsetctl.estimate import solvers

    monkeypatch.setattr(solvers, "_ARMIJO_C1", 0.45)
    lam = 0.0086
    fs, mask, obj = _one_dimensional(np.array([[10.37], [24.65]]), np.array([-6.678, -13.21]), lam)
    values = [obj(ExactEstimator(fs, lam=lam, max_iter=k).solve(mask)[0][0]) for k in range(6)]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(values)), values


@pytest.mark.parametrize("cls", [FastEstimator, ExactEstimator, functools.partial(LinearSGDEstimator, replay=False),
                                 functools.partial(LinearSGDEstimator, replay=True)])
def test_a_subsets_estimate_does_not_depend_on_its_batch(cls: type) -> None:
    """The same bits for a subset estimated alone, in batches of any size or all at once:
    matrix products rounded a row by the batch's shape and its place in it, so the search's
    estimates changed with executor.batch_size, with how many subsets a strategy asked for,
    and with what the cache held when a stopped search resumed (linear_sgd's full-batch
    steps, replay: false, too)."""
    features = make_synthetic_features(n_sources=6, rows_per_source=30, d=16, n_target_train=20, n_val=50, seed=0)
    masks = np.array(list(itertools.product([False, True], repeat=6)))
    masks = masks[np.random.default_rng(1).permutation(len(masks))]
    est = cls(features, lam=1.0)
    whole = est.estimate(masks)
    for size in (1, 3, 7, 17):
        parts = [est.estimate(masks[i:i + size]) for i in range(0, len(masks), size)]
        for field in ("loss", "w_norm", "converged", "iterations"):
            got = np.concatenate([getattr(p, field) for p in parts])
            assert np.array_equal(got, getattr(whole, field), equal_nan=field in ("loss", "w_norm")), (size, field)


def test_exact_sums_keep_each_columns_precision_and_tiny_values() -> None:
    """A small column is summed to its own precision, not to the largest column's (one
    scale for the whole matrix lost 4e-5 of a column 1e-12 the size of another), and a
    matrix of subnormal values sums to them (its scale underflowed to 0: NaN sums)."""
    from subsetctl.estimate.solvers import _ExactSums

    ext = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=bool)
    mixed = np.array([[1.0, 1e-12], [1.0, 1.2345678901234e-12], [1.0, 3.3e-12]])
    tiny = np.array([[1e-310, -3e-300], [2e-310, 5e-300], [3e-310, 7e-300]])
    per_row = np.array([1 / 3, 1 / 7, 1 / 11])
    for values in (mixed, tiny):
        plain = ext.astype(np.float64) @ values
        within = 4 * 2.0**-53 * np.abs(values).sum(axis=0)  # float64's own rounding of each column's sum
        assert (np.abs(_ExactSums(values)(ext) - plain) <= within).all(), values
        assert (np.abs(_ExactSums(values)(ext, per_row) - plain * per_row[:, None]) <= within).all(), values


def test_exact_sums_of_sparse_masks_add_only_the_blocks_they_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Masks of a few blocks out of many (forward's subsets over thousands of sources) are
    summed from the blocks they hold, not by a dense product over every block, to the same
    bits; dense masks still take the dense product."""
    from subsetctl.estimate import solvers

    rng = np.random.default_rng(0)
    sums = solvers._ExactSums(rng.normal(size=(400, 5, 5)) * rng.lognormal(size=(400, 1, 1)))
    sparse = np.zeros((32, 400), dtype=bool)
    for row in sparse:
        row[rng.choice(400, 3, replace=False)] = True
    dense = rng.random((32, 400)) < 0.5
    per_row = rng.random(32)
    expected = {id(m): (m.astype(np.float64) @ sums.units * per_row[:, None] * sums.scale).reshape(32, 5, 5)
                for m in (sparse, dense)}

    def refused(*args: object) -> np.ndarray:
        raise AssertionError("dense product of sparse masks")

    with monkeypatch.context() as patch:
        patch.setattr(solvers, "_dense_product", refused)
        assert np.array_equal(sums(sparse, per_row), expected[id(sparse)])
    called = []
    monkeypatch.setattr(solvers, "_sparse_product", lambda *args: called.append(1))
    assert np.array_equal(sums(dense, per_row), expected[id(dense)]) and not called


def test_an_exact_estimate_does_not_depend_on_its_batch_at_a_larger_size() -> None:
    """The exact estimator's passes over the rows were matrix products across the masks
    that contain a block (padded to two columns): at d = 96 and 300 rows a block, BLAS
    rounded a mask's products by how many other masks shared its batch."""
    features = make_synthetic_features(n_sources=8, rows_per_source=300, d=96, n_target_train=100, n_val=100, seed=0)
    masks = np.array(list(itertools.product([False, True], repeat=8)))
    masks = masks[np.random.default_rng(1).permutation(len(masks))][:128]
    est = ExactEstimator(features, lam=1.0)
    whole = est.estimate(masks)
    for size in (1, 33):
        parts = [est.estimate(masks[i:i + size]) for i in range(0, len(masks), size)]
        assert np.array_equal(np.concatenate([p.loss for p in parts]), whole.loss, equal_nan=True), size
        assert np.array_equal(np.concatenate([p.iterations for p in parts]), whole.iterations), size


def test_the_unconverged_advice_does_not_say_to_add_larger_lambdas_to_the_grid() -> None:
    """The search's notice said "larger values in calibrate.lambda_grid"; calibration takes the
    best-ranking lambda, so on the tiny project, where 0.01 ranked best and 44 of 64 solves did
    not converge, adding 30 and 100 to the grid changed nothing."""
    from subsetctl.estimate.solvers import ExactEstimator, FastEstimator

    for estimator in (FastEstimator, ExactEstimator):
        advice = estimator.not_converged_advice
        assert "larger values in calibrate.lambda_grid" not in advice
        assert "a calibrate.lambda_grid without the chosen value and those below it" in advice
