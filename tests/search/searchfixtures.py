"""Helpers for the search-strategy tests: synthetic stores with a planted truth.

Sources are built as a logistic model would produce them: for an example with input z
and label y, the model output is f = y z^T theta0 and its gradient is x = y z, so the
estimator's offset logistic regression (DESIGN.md section 2, step 4) is ordinary
logistic regression started at theta0. The target (12 training rows, 400 validation
rows) is labelled by ``w_true`` with 10% label noise. See :func:`make_store` for the
source kinds. Estimates come from the package's ``ExactEstimator``, wrapped in
:class:`CountingEstimator` to record every ``estimate`` call.
"""

from __future__ import annotations

import numpy as np

from subsetctl.estimate.base import EstimateBatch, FeatureSet, SubsetEstimator
from subsetctl.estimate.solvers import ExactEstimator

HELPFUL = ["help1", "help2", "help3"]
HARMFUL = ["flip1", "flip2", "flip3"]
NEUTRAL = ["noise1", "noise2"]
#: the planted store's sources, interleaved so that no strategy profits from order
SOURCES = ["help1", "flip1", "noise1", "help2", "flip2", "help3", "noise2", "flip3"]
#: the store where gradient similarity is fooled by FOOLER
FOOLED_SOURCES = ["help1", "huge", "help2", "noise1"]
FOOLER = "huge"
LAM = 0.03
#: Store seed. With LAM, the best subset of the main store contains every helpful and
#: no harmful source for 6 of the first 8 seeds (in the other two, one helpful source
#: adds nothing once the other two are in). In the fooled store, ``huge`` has the top
#: gradient cosine and raises the loss of every subset for all of the first 8 seeds.
SEED = 4
D = 24
N_BLOCKS = 3
#: input scale of a helpful source outside its own block of coordinates
OFF_BLOCK = 0.1
#: norm of the target direction w_true
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


def make_store(sources: list[str], seed: int = SEED) -> FeatureSet:
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


def make_planted_features(seed: int = SEED) -> FeatureSet:
    """The main planted store (helpful, harmful and neutral sources)."""
    return make_store(SOURCES, seed)


def make_estimator(features: FeatureSet, lam: float = LAM) -> SubsetEstimator:
    """The package's exact offset-logistic solver on ``features``."""
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


class Additive(SubsetEstimator):
    """L_hat(S) = 1 - sum of per-source effects: a known linear truth, no solver."""

    def __init__(self, effects: list[float]) -> None:
        self.effects = np.asarray(effects, dtype=float)
        self.calls: list[int] = []

    @property
    def sources(self) -> list[str]:
        return [f"s{i}" for i in range(len(self.effects))]

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        self.calls.append(len(masks))
        m = len(masks)
        loss = 1.0 - masks.astype(float) @ self.effects
        return EstimateBatch(loss, np.zeros(m), np.zeros(m, dtype=int), np.ones(m, dtype=bool))


class NoiseFavoursFirst(Additive):
    """:class:`Additive`, with subsets holding s0 estimated 2.5e-10 lower: solver noise, as
    for a source that repeats the target's train rows (it changes no fast estimate)."""

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        batch = super().estimate(masks)
        batch.loss = batch.loss - 2.5e-10 * masks[:, 0]
        return batch
