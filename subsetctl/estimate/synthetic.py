"""Synthetic feature stores with a planted truth, for tests and benchmarks.

The real pipeline produces, per example, a model output ``f_i`` and a projected
gradient ``x_i = P^T d f_i / d theta``. This module builds arrays
with the same shapes and roughly the same statistics, plus a known answer: which
sources help the target and which hurt it.

Construction (all directions are unit vectors in R^d):

* ``u`` is the target's *task direction*. Every target row (train and validation) is
  ``x = scale * (a_i u + e_i)`` with ``a_i ~ N(1, 0.3)`` and isotropic noise ``e_i`` of
  norm about ``noise``. Moving ``w`` along ``+u`` therefore raises ``f`` on the target's
  validation rows and lowers ``L_hat``.
* Every source ``k`` has an alignment ``c_k`` with ``u`` and an own direction ``v_k``
  orthogonal to ``u``: ``x = scale * (c_k a_i u + s_k b_i v_k + e_i)`` with
  ``b_i ~ N(1, 0.5)``. Helpful sources have ``c_k ~ U(0.8, 1.5)`` (their gradient steps
  push ``w`` along ``+u``), harmful ones ``c_k ~ U(-1.5, -0.8)`` (they pull ``w`` the
  opposite way, like a source with shuffled answers, ``corrupt.shuffle_responses``), neutral ones
  ``c_k ~ N(0, 0.1)``; neutral sources mostly dilute the target's pull, so they cost a
  little.
* ``f`` values: target rows ``N(0, 1.2)``, source ``k`` rows ``N(mu_k, 1)`` with
  ``mu_k ~ U(-1.5, 1.5)``, clipped to ``[-4, 4]`` (so most lie in ``-3..3``). Poorly fit
  rows (low ``f``) have larger gradient weights ``sigmoid(-f)``, as in a real model.

With ``scale = 3`` the data Hessian along ``u`` is comparable to ``2 * lambda`` at the
default ``lambda = 1``, so the offset logistic problem is genuinely non-quadratic and the
fast (one Newton step) estimator is not trivially exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from subsetctl.errors import UserError
from subsetctl.estimate.base import FeatureSet

DEFAULT_HELPFUL: tuple[int, ...] = (0, 1, 2, 3, 4)
DEFAULT_HARMFUL: tuple[int, ...] = (5, 6, 7, 8, 9)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def make_synthetic_features(
    n_sources: int = 50,
    rows_per_source: int | Sequence[int] = 2000,
    d: int = 128,
    n_target_train: int = 1000,
    n_val: int = 500,
    seed: int = 0,
    helpful: Sequence[int] = DEFAULT_HELPFUL,
    harmful: Sequence[int] = DEFAULT_HARMFUL,
    scale: float = 3.0,
    noise: float = 1.0,
) -> FeatureSet:
    """Build a :class:`FeatureSet` whose helpful/harmful sources are known.

    Args:
        n_sources: number of auxiliary sources, named ``src00``, ``src01``, ...
        rows_per_source: training rows per source (one int, or one per source).
        d: projected gradient dimension.
        n_target_train / n_val: target training and validation rows.
        seed: everything is drawn from ``numpy.random.default_rng(seed)``.
        helpful / harmful: source indexes aligned / anti-aligned with the target's
            task direction. Indexes outside ``range(n_sources)`` are ignored so that the
            defaults work for small stores; a source in both lists is an error.
        scale: overall gradient-feature scale (see the module docstring).
        noise: norm of the isotropic per-row noise, before ``scale``.

    Returns:
        A FeatureSet with float64 arrays and ``source_repr``/``target_repr`` set to the
        mean feature of each source (a stand-in for mean hidden states).
    """
    helpful_set = {int(k) for k in helpful if 0 <= int(k) < n_sources}
    harmful_set = {int(k) for k in harmful if 0 <= int(k) < n_sources}
    if helpful_set & harmful_set:
        raise UserError(
            f"Synthetic sources {', '.join(map(str, sorted(helpful_set & harmful_set)))} are listed as both "
            "helpful and harmful; give each source index at most one role."
        )
    if isinstance(rows_per_source, int):
        rows = [rows_per_source] * n_sources
    else:
        rows = [int(r) for r in rows_per_source]
        if len(rows) != n_sources:
            raise UserError(f"rows_per_source has {len(rows)} entries but n_sources is {n_sources}.")
    rng = np.random.default_rng(seed)
    u = _unit(rng.standard_normal(d))

    def noise_rows(n: int) -> np.ndarray:
        return rng.standard_normal((n, d)) * (noise / np.sqrt(d))

    def target_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
        a = rng.normal(1.0, 0.3, size=n)
        x = scale * (a[:, None] * u[None, :] + noise_rows(n))
        f = np.clip(rng.normal(0.0, 1.2, size=n), -4.0, 4.0)
        return x, f

    tx, tf = target_rows(n_target_train)
    vx, vf = target_rows(n_val)

    sx: list[np.ndarray] = []
    sf: list[np.ndarray] = []
    for k in range(n_sources):
        if k in helpful_set:
            c = rng.uniform(0.8, 1.5)
        elif k in harmful_set:
            c = -rng.uniform(0.8, 1.5)
        else:
            c = rng.normal(0.0, 0.1)
        v = rng.standard_normal(d)
        v = _unit(v - (v @ u) * u)
        s = rng.uniform(0.5, 1.0)
        n = rows[k]
        a = rng.normal(1.0, 0.3, size=n)
        b = rng.normal(1.0, 0.5, size=n)
        x = scale * (c * a[:, None] * u + s * b[:, None] * v + noise_rows(n))
        mu = rng.uniform(-1.5, 1.5)
        f = np.clip(rng.normal(mu, 1.0, size=n), -4.0, 4.0)
        sx.append(x)
        sf.append(f)

    return FeatureSet(
        target="target",
        sources=[f"src{k:02d}" for k in range(n_sources)],
        target_train_x=tx,
        target_train_f=tf,
        source_train_x=sx,
        source_train_f=sf,
        val_x=vx,
        val_f=vf,
        source_repr=np.stack([x.mean(axis=0) for x in sx]) if sx else np.zeros((0, d)),
        target_repr=tx.mean(axis=0),
    )
