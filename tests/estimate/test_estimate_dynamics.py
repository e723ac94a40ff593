"""Tests of the linear_sgd estimator (simulated surrogate SGD on the linearized model)."""

from __future__ import annotations

import numpy as np
import pytest
from estfixtures import random_masks

from subsetctl.errors import UserError
from subsetctl.estimate.base import FeatureSet
from subsetctl.estimate.calibrate import spearman
from subsetctl.estimate.dynamics import LinearSGDEstimator
from subsetctl.estimate.solvers import FastEstimator
from subsetctl.modeling.train import batch_order
from subsetctl.registry import ESTIMATORS


def _pool(features: FeatureSet, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.flatnonzero(mask)
    x = np.concatenate([features.target_train_x] + [features.source_train_x[k] for k in idx])
    f = np.concatenate([features.target_train_f] + [features.source_train_f[k] for k in idx])
    return x, f


def _reference(features: FeatureSet, mask: np.ndarray, steps: int, lr: float, bs: int, seed: int,
               lam: float, replay: bool) -> float:
    """One subset, one example at a time: the SGD loop written out plainly."""
    x, f = _pool(features, mask)
    w = np.zeros(x.shape[1])
    order = batch_order(len(x), steps, bs, seed)
    for t in range(steps):
        rows = order[t] if replay else range(len(x))
        grad = np.zeros_like(w)
        for i in rows:
            grad += x[i] / (1.0 + np.exp(f[i] + x[i] @ w))
        w = w + lr * grad / len(rows) - 2 * lr * lam * w
    return float(np.logaddexp(0.0, -(features.val_f + features.val_x @ w)).mean())


def test_registered() -> None:
    assert ESTIMATORS.get("linear_sgd") is LinearSGDEstimator


@pytest.mark.parametrize("replay", [True, False])
def test_matches_the_plain_sgd_loop(small_features: FeatureSet, replay: bool) -> None:
    masks = random_masks(6, small_features.n_sources, seed=1)
    masks[0] = False
    est = LinearSGDEstimator(small_features, lam=0.5, steps=7, lr=0.05, batch_size=5, seed=3, replay=replay)
    got = est.estimate(masks).loss
    want = [_reference(small_features, m, 7, 0.05, 5, 3, 0.5, replay) for m in masks]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_replay_follows_the_batch_order_seed(small_features: FeatureSet) -> None:
    masks = random_masks(4, small_features.n_sources, seed=2)
    a = LinearSGDEstimator(small_features, steps=5, lr=0.1, batch_size=4, seed=0).estimate(masks).loss
    b = LinearSGDEstimator(small_features, steps=5, lr=0.1, batch_size=4, seed=1).estimate(masks).loss
    assert not np.allclose(a, b)


def test_chunking_changes_only_round_off(small_features: FeatureSet) -> None:
    masks = random_masks(30, small_features.n_sources, seed=4)
    whole = LinearSGDEstimator(small_features, steps=4, lr=0.1, batch_size=8).estimate(masks).loss
    parts = LinearSGDEstimator(small_features, steps=4, lr=0.1, batch_size=8, chunk_size=7).estimate(masks).loss
    np.testing.assert_allclose(parts, whole, rtol=1e-12)


def test_small_steps_rank_like_strongly_regularized_ridge(small_features: FeatureSet) -> None:
    """A short full-batch run from 0 moves w along the pooled gradient, as a ridge fit with
    a large lambda does (w ~ g / 2 lambda): both rank subsets the same way."""
    masks = random_masks(40, small_features.n_sources, seed=5)
    sgd = LinearSGDEstimator(small_features, steps=1, lr=1e-3, replay=False).estimate(masks).loss
    ridge = FastEstimator(small_features, lam=1e4).estimate(masks).loss
    assert spearman(sgd, ridge) > 0.99


def test_planted_truth(small_features: FeatureSet) -> None:
    """Adding a helpful source lowers L_hat; a harmful one raises it more than a neutral one."""
    est = LinearSGDEstimator(small_features, steps=5, lr=0.01, batch_size=16, replay=False)
    base = est.estimate(np.zeros((1, small_features.n_sources), dtype=bool)).loss[0]
    singles = est.estimate(np.eye(small_features.n_sources, dtype=bool)).loss
    assert (singles[[0, 1]] < base).all()
    assert singles[[2, 3]].min() > singles[4:].max()


@pytest.mark.parametrize("kwargs", [{"lam": -1.0}, {"steps": 0}, {"lr": 0.0}, {"batch_size": 0},
                                    {"lr": float("nan")}])
def test_bad_settings_are_user_errors(small_features: FeatureSet, kwargs: dict) -> None:
    with pytest.raises(UserError):
        LinearSGDEstimator(small_features, **kwargs)


def test_a_diverging_weight_decay_is_refused(small_features: FeatureSet) -> None:
    """At lr*lambda >= 1 every step flips and grows w: estimates reached 1e90 and the search
    picked subsets by noise (lr 10, lambda 1), without a word."""
    with pytest.raises(UserError, match=r"diverges at learning rate 10 and lambda 1: .* = -19"):
        LinearSGDEstimator(small_features, lam=1.0, lr=10.0)
    stable = LinearSGDEstimator(small_features, lam=1.9, lr=0.5)  # lr*lambda 0.95: damped, not divergent
    assert np.isfinite(stable.estimate(np.eye(small_features.n_sources, dtype=bool)).loss).all()


def test_fingerprint_tells_apart_rows_split_differently_between_target_and_source() -> None:
    """The same stacked rows, 5+3 or 4+4 between the target and its source, give other
    estimates: their fingerprints (a results store's key) must differ too."""
    rng = np.random.default_rng(0)
    x, f, val_x, val_f = rng.standard_normal((8, 3)), rng.standard_normal(8), rng.standard_normal((4, 3)), rng.standard_normal(4)
    split5 = LinearSGDEstimator(FeatureSet("t", ["A"], x[:5], f[:5], [x[5:]], [f[5:]], val_x, val_f), lr=0.1)
    split4 = LinearSGDEstimator(FeatureSet("t", ["A"], x[:4], f[:4], [x[4:]], [f[4:]], val_x, val_f), lr=0.1)
    target_only = np.array([[False]])
    assert split5.estimate(target_only).loss[0] != split4.estimate(target_only).loss[0]
    assert split5.fingerprint() != split4.fingerprint()


def test_weight_decay_factor_of_exactly_minus_one_is_refused(small_features: FeatureSet) -> None:
    """lr*lambda = 1: every step multiplies w by 1 - 2 = -1, so w never decays (the boundary
    of the documented lr*lambda >= 1)."""
    with pytest.raises(UserError, match="diverges"):
        LinearSGDEstimator(small_features, lam=2.0, lr=0.5)


def test_fingerprint_follows_every_setting(small_features: FeatureSet) -> None:
    base = {"lam": 0.1, "steps": 5, "lr": 0.01, "batch_size": 4, "seed": 0, "replay": True}
    fp = LinearSGDEstimator(small_features, **base).fingerprint()
    assert LinearSGDEstimator(small_features, **base).fingerprint() == fp
    for change in ({"lam": 0.2}, {"steps": 6}, {"lr": 0.02}, {"batch_size": 8}, {"seed": 1}, {"replay": False}):
        assert LinearSGDEstimator(small_features, **{**base, **change}).fingerprint() != fp, change


def test_an_overflowing_run_is_a_failed_estimate_without_numpy_warnings(small_features: FeatureSet) -> None:
    """estimate.sgd.lr=1e300 printed numpy's "RuntimeWarning: overflow encountered in
    multiply" on stderr; a loss that overflows is already reported as a failed estimate
    (NaN, not converged)."""
    import warnings

    masks = np.ones((2, len(small_features.sources)), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = LinearSGDEstimator(small_features, steps=20, lr=1e300, batch_size=4).estimate(masks)
    assert batch.loss.shape == (2,)  # (what overflowed is NaN and not converged; the rest stays)
    assert all(np.isnan(loss) or loss > 1e100 for loss in batch.loss)
