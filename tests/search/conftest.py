"""Test fixtures for the search strategies: a synthetic store with planted truth.

Sources are built as a logistic model would produce them: for an example with input z
and label y, the model output is f = y z^T theta0 and its gradient is x = y z, so the
estimator's offset logistic regression (DESIGN.md section 2, step 4) is ordinary
logistic regression started at theta0. The target's labels follow ``w_true`` with 10%
label noise.

- ``help1..3``: more examples labelled by ``w_true`` (lower the target loss when added);
- ``flip1, flip2``: the target's kind of data with flipped labels (raise the loss);
- ``huge``: many clean ``w_true`` examples whose outputs f are very low, so the fit
  overshoots along the target's own direction (cosine with the target's mean gradient
  near 1, yet it raises the target loss: gradient similarity is fooled);
- ``noise1, noise2``: labels from a direction orthogonal to ``w_true`` (roughly neutral).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from subsetctl.estimate.base import EstimateBatch, FeatureSet, SubsetEstimator

HELPFUL = ["help1", "help2", "help3"]
HARMFUL = ["flip1", "flip2", "flip3"]
NEUTRAL = ["noise1", "noise2"]
#: the planted store's sources, interleaved so that no strategy profits from order
SOURCES = ["help1", "flip1", "noise1", "help2", "flip2", "help3", "noise2", "flip3"]
#: the store where gradient similarity is fooled by FOOLER
FOOLED_SOURCES = ["help1", "huge", "help2", "noise1"]
FOOLER = "huge"
LAM = 1e-2
D = 24
N_BLOCKS = 3
OFF_BLOCK = 0.1
W_NORM = 2.0


def _rows(
    rng: np.random.Generator,
    n: int,
    w: np.ndarray,
    theta0: np.ndarray,
    scale: np.ndarray | None = None,
    label_noise: float = 0.0,
    flip: bool = False,
    f_shift: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(x, f) rows of a logistic model: inputs z (per-coordinate ``scale``), labels
    y = sign(z^T w) with ``label_noise``, x = y z, f = y z^T theta0 + f_shift."""
    z = rng.standard_normal((n, w.shape[0]))
    if scale is not None:
        z = z * scale
    y = np.sign(z @ w)
    y[y == 0] = 1.0
    y[rng.random(n) < label_noise] *= -1
    if flip:
        y = -y
    x = y[:, None] * z
    return x, x @ theta0 + f_shift


def make_store(sources: list[str], seed: int = 0) -> FeatureSet:
    """A synthetic store whose source kinds are given by their names.

    ``helpK`` (K = 1..3) has inputs concentrated on the K-th third of the coordinates,
    labelled by the target's direction ``w_true``: each teaches a different part of
    ``w_true``, so their benefits add up instead of saturating. ``flipK`` is the target's
    kind of data with flipped labels. ``noiseK`` is labelled by a direction orthogonal to
    ``w_true``. ``huge`` has many clean rows labelled along the target's mean training
    gradient (cosine near 1) whose outputs f are very low, so the fit overshoots.
    """
    rng = np.random.default_rng(seed)
    w_true = rng.standard_normal(D)
    w_true *= W_NORM / np.linalg.norm(w_true)
    w_perp = rng.standard_normal(D)
    w_perp -= (w_perp @ w_true) / (w_true @ w_true) * w_true
    theta0 = 0.1 * w_true
    t_x, t_f = _rows(rng, 12, w_true, theta0, label_noise=0.1)
    v_x, v_f = _rows(rng, 400, w_true, theta0, label_noise=0.1)
    u = t_x.mean(axis=0)
    xs, fs = [], []
    for name in sources:
        kind, index = name.rstrip("0123456789"), int(name[-1]) if name[-1].isdigit() else 1
        if kind == "help":
            scale = np.full(D, OFF_BLOCK)
            block = D // N_BLOCKS
            scale[(index - 1) * block : index * block] = 1.0
            x, f = _rows(rng, 80, w_true, theta0, scale=scale, label_noise=0.05)
        elif kind == "flip":
            x, f = _rows(rng, 60, w_true, theta0, label_noise=0.1, flip=True)
        elif kind == "noise":
            x, f = _rows(rng, 40, w_perp, theta0)
        elif kind == "huge":
            x, f = _rows(rng, 200, u, theta0, f_shift=-8.0)
        else:
            raise ValueError(f"unknown source kind in {name!r}")
        xs.append(x)
        fs.append(f)
    return FeatureSet(
        target="target",
        sources=list(sources),
        target_train_x=t_x,
        target_train_f=t_f,
        source_train_x=xs,
        source_train_f=fs,
        val_x=v_x,
        val_f=v_f,
    )


def make_planted_features(seed: int = 0) -> FeatureSet:
    """The main planted store (helpful, harmful and neutral sources)."""
    return make_store(SOURCES, seed)


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


class ReferenceEstimator(SubsetEstimator):
    """Converged offset logistic regression (L-BFGS), for tests only."""

    description = "test reference solver"

    def __init__(self, features: FeatureSet, lam: float) -> None:
        self.features = features
        self.lam = lam

    @property
    def sources(self) -> list[str]:
        return list(self.features.sources)

    def _solve(self, mask: np.ndarray) -> tuple[float, float, int, bool]:
        fs = self.features
        x = np.concatenate([fs.target_train_x] + [fs.source_train_x[k] for k in np.flatnonzero(mask)])
        f = np.concatenate([fs.target_train_f] + [fs.source_train_f[k] for k in np.flatnonzero(mask)])

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = f + x @ w
            value = _softplus(-z).mean() + self.lam * w @ w
            grad = -(expit(-z)[:, None] * x).mean(axis=0) + 2 * self.lam * w
            return float(value), grad

        res = minimize(objective, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B",
                       options={"gtol": 1e-8, "maxiter": 500})
        loss = float(_softplus(-(fs.val_f + fs.val_x @ res.x)).mean())
        return loss, float(np.linalg.norm(res.x)), int(res.nit), bool(res.success)

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        out = [self._solve(m) for m in np.asarray(masks, dtype=bool)]
        return EstimateBatch(
            loss=np.array([o[0] for o in out]),
            w_norm=np.array([o[1] for o in out]),
            iterations=np.array([o[2] for o in out]),
            converged=np.array([o[3] for o in out]),
        )


def make_estimator(features: FeatureSet, lam: float = LAM) -> SubsetEstimator:
    """The package's exact solver when it exists, else the reference solver above."""
    try:
        from subsetctl.estimate.solvers import ExactEstimator
    except ImportError:
        return ReferenceEstimator(features, lam)
    return ExactEstimator(features, lam)


class CountingEstimator(SubsetEstimator):
    """Wraps an estimator, memoizes it across runs and records every call's masks."""

    def __init__(self, inner: SubsetEstimator) -> None:
        self.inner = inner
        self.calls: list[np.ndarray] = []
        self._cache: dict[bytes, tuple[float, float, int, bool]] = {}

    @property
    def sources(self) -> list[str]:
        return self.inner.sources

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        masks = np.asarray(masks, dtype=bool)
        self.calls.append(masks.copy())
        todo = [m for m in masks if m.tobytes() not in self._cache]
        if todo:
            b = self.inner.estimate(np.array(todo))
            for i, m in enumerate(todo):
                self._cache[m.tobytes()] = (b.loss[i], b.w_norm[i], b.iterations[i], b.converged[i])
        rows = [self._cache[m.tobytes()] for m in masks]
        return EstimateBatch(
            loss=np.array([r[0] for r in rows], dtype=float),
            w_norm=np.array([r[1] for r in rows], dtype=float),
            iterations=np.array([r[2] for r in rows]),
            converged=np.array([r[3] for r in rows], dtype=bool),
        )

    def reset_calls(self) -> None:
        self.calls = []


@pytest.fixture(scope="session")
def planted_features() -> FeatureSet:
    return make_planted_features()


@pytest.fixture(scope="session")
def shared_estimator(planted_features: FeatureSet) -> CountingEstimator:
    """One memoized estimator for the whole session (the planted store is fixed)."""
    return CountingEstimator(make_estimator(planted_features))


@pytest.fixture()
def estimator(shared_estimator: CountingEstimator) -> CountingEstimator:
    shared_estimator.reset_calls()
    return shared_estimator
