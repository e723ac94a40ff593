"""The ``linear_sgd`` estimator: the surrogate SGD fine-tune, simulated on the
linearized model in projected-gradient space.

The ridge estimators (``fast``, ``exact``) model fine-tuning by a *converged*
regularized fit; lambda stands in for "how far fine-tuning moves". This estimator
instead replays the fine-tune itself. With the model linearized at theta*
(``f_i(theta* + delta) ~ f_i + g_i . delta``) and the displacement written in the
projected space (``delta = P w``, so ``g_i . delta ~ x_i . w`` because P preserves inner
products), plain SGD on the surrogate loss ``mean_i softplus(-f_i)`` becomes

    w_0 = 0,   w_{t+1} = w_t + lr * mean_{i in B_t} sigmoid(-(f_i + x_i . w_t)) x_i - 2 lr lam w_t

and the estimate is ``L_hat = mean_j softplus(-(f_j + x_j . w_T))`` over the target's
validation rows. With ``replay`` the batches ``B_t`` are exactly those of the real
fine-tune (:func:`subsetctl.modeling.train.batch_order` over target train rows, then the
sources in mask order, as ``verify`` builds them); without it every step uses the whole
pool (full-batch gradient descent, the expected SGD path: no batch-sampling noise, the
better choice for a search whose final fine-tune will see other batches).

Why it exists: measured on the quickstart (docs in README "Fidelity"), the real surrogate
fine-tune leaves the linear regime quickly (at lr 0.01 x 15 steps the linearized path
already over-predicts the loss drop by a third), and within the linear regime the
replayed path tracks the real fine-tune step for step (one step: 4 significant digits),
which a converged ridge fit cannot, since it has no notion of the number of steps.
Its accuracy then rests on the projection: cross-example inner products carry noise of
order ``|g_i| |g_j| / sqrt(d)``, so it wants d in the thousands rather than 128.

Cost per subset: ``steps * batch_size * d`` (replay) or ``steps * pool * d`` (full
batch) multiply-adds, vectorized over the masks of a chunk.
"""

from __future__ import annotations

import math

import numpy as np

from subsetctl.errors import UserError
from subsetctl.estimate.base import EstimateBatch, FeatureSet, SubsetEstimator
from subsetctl.estimate.solvers import (
    _as_blocks,
    _empty_batch,
    _hash_arrays,
    _Rows,
    _rows_times,
    _val_loss,
    _validation_rows,
    extend_masks,
)
from subsetctl.registry import ESTIMATORS


def _sigmoid_neg(z: np.ndarray) -> np.ndarray:
    """sigmoid(-z), computed stably: the derivative of softplus(-z) is -sigmoid(-z)."""
    return 0.5 * (1.0 - np.tanh(0.5 * z))


def unstable_weight_decay(lr: float, lam: float) -> str | None:
    """Why the simulated run at learning rate ``lr`` and penalty ``lam`` diverges, or None.

    Each step multiplies ``w`` by ``1 - 2 lr lam``; from ``lr * lam >= 1`` on that factor is
    -1 or below, so ``w`` flips sign and grows every step whatever the data: the estimates
    reach 1e90 and a search would rank subsets by noise (a real SGD run with that weight
    decay diverges too)."""
    if lr * lam < 1:
        return None
    return (f"the simulated fine-tune diverges at learning rate {lr:g} and lambda {lam:g}: each step multiplies "
            f"the displacement by 1 - 2*lr*lambda = {1 - 2 * lr * lam:g}, so lr*lambda must stay below 1. Lower "
            "estimate.sgd.lr (default: verify.lr_surrogate) or lambda (estimate.lam, calibrate.lambda_grid)")


@ESTIMATORS.register(
    "linear_sgd",
    "Replays the surrogate SGD fine-tune (steps, lr, batches) on the linearized model; wants large d",
)
class LinearSGDEstimator(SubsetEstimator):
    """Simulated SGD on the linearized surrogate objective (see the module docstring).

    Args:
        features: the gradient store's features.
        lam: L2 penalty on the displacement ``w`` (as in the ridge estimators' objective),
            applied as weight decay ``2 * lr * lam * w`` per step; 0 switches it off.
        steps / lr / batch_size: the fine-tune simulated (``verify``'s surrogate run by
            default in the pipeline).
        seed: the batch-order seed (the project seed, as the real fine-tunes use).
        replay: replay the exact batch sequence (True) or take full-batch steps (False).
        chunk_size: masks simulated together (bounds memory at chunk * steps * batch * d).
    """

    description = "simulated surrogate SGD on the linearized model; matches short fine-tunes"

    def __init__(
        self,
        features: FeatureSet,
        lam: float = 0.0,
        steps: int = 15,
        lr: float = 0.002,
        batch_size: int = 8,
        seed: int = 0,
        replay: bool = True,
        chunk_size: int = 256,
    ) -> None:
        if not (lam >= 0 and math.isfinite(lam)):
            raise UserError(f"The linear_sgd estimator's lambda must be 0 or positive, got {lam}.")
        for name, value in (("steps", steps), ("batch_size", batch_size), ("chunk_size", chunk_size)):
            if int(value) < 1:
                raise UserError(f"The linear_sgd estimator's {name} must be at least 1, got {value}.")
        if not (lr > 0 and math.isfinite(lr)):
            raise UserError(f"The linear_sgd estimator's learning rate must be positive, got {lr}.")
        unstable = unstable_weight_decay(float(lr), float(lam))
        if unstable:
            raise UserError(f"The linear_sgd estimator cannot be used: {unstable}.")
        self.lam = float(lam)
        self.steps, self.lr, self.batch_size = int(steps), float(lr), int(batch_size)
        self.seed, self.replay, self.chunk_size = int(seed), bool(replay), int(chunk_size)
        self._sources = list(features.sources)
        self.rows = _Rows.stack(*_as_blocks(features))  # train rows of all blocks, target first
        self.val_x, self.val_f = _validation_rows(features)

    @property
    def sources(self) -> list[str]:
        return self._sources

    def fingerprint(self) -> str:
        """Short hash of the settings and features the results depend on."""
        settings = (f"linear_sgd|lam={self.lam!r}|steps={self.steps}|lr={self.lr!r}|bs={self.batch_size}"
                    f"|seed={self.seed}|replay={self.replay}|{','.join(self._sources)}")
        return _hash_arrays([self.rows.x, self.rows.f, self.rows.offsets, self.val_x, self.val_f], settings)

    # ------------------------------------------------------------------ helpers
    def _pool(self, ext_row: np.ndarray) -> np.ndarray:
        """Global row indices of one subset's training pool, in the real fine-tune's order."""
        offsets = self.rows.offsets
        return np.concatenate([np.arange(offsets[b], offsets[b + 1]) for b in np.flatnonzero(ext_row)])

    def _replay_indices(self, ext: np.ndarray) -> np.ndarray:
        """(m, steps, batch_size) global row indices of every subset's batches."""
        from subsetctl.modeling.train import batch_order_array

        out = np.empty((len(ext), self.steps, self.batch_size), dtype=np.int64)
        for k, row in enumerate(ext):
            pool = self._pool(row)
            out[k] = pool[batch_order_array(len(pool), self.steps, self.batch_size, self.seed)]
        return out

    def _simulate_replay(self, ext: np.ndarray) -> np.ndarray:
        idx = self._replay_indices(ext)
        w = np.zeros((len(ext), self.rows.x.shape[1]))
        decay = 1.0 - 2.0 * self.lr * self.lam
        for t in range(self.steps):
            xb = self.rows.x[idx[:, t]]  # (m, B, d)
            margin = self.rows.f[idx[:, t]] + np.einsum("mbd,md->mb", xb, w)
            step = np.einsum("mb,mbd->md", _sigmoid_neg(margin), xb) / self.batch_size
            w = decay * w + self.lr * step
        return w

    def _simulate_full(self, ext: np.ndarray) -> np.ndarray:
        # row by row (_rows_times): a subset's w does not depend on the other subsets of its batch
        x, f, sizes = self.rows.x, self.rows.f, np.diff(self.rows.offsets)
        member = ext[:, np.repeat(np.arange(len(sizes)), sizes)].astype(np.float64)  # (m, n)
        pool = member.sum(axis=1)  # (m,)
        w = np.zeros((len(ext), x.shape[1]))
        decay = 1.0 - 2.0 * self.lr * self.lam
        for _ in range(self.steps):
            margin = _rows_times(x, w) + f  # (m, n)
            weights = _sigmoid_neg(margin) * member / pool[:, None]
            w = decay * w + self.lr * _rows_times(x.T, weights)
        return w

    # ------------------------------------------------------------------ estimate
    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        ext = extend_masks(masks, len(self._sources))
        if ext.shape[0] == 0:
            return _empty_batch()
        losses, norms = [], []
        # a run that overflows (a huge estimate.sgd.lr) gives a non-finite loss, reported below as a
        # failed estimate: numpy's "overflow encountered" RuntimeWarning on stderr said it again, raw
        with np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, len(ext), self.chunk_size):
                chunk = ext[start : start + self.chunk_size]
                w = self._simulate_replay(chunk) if self.replay else self._simulate_full(chunk)
                losses.append(_val_loss(self.val_x, self.val_f, w))
                norms.append(np.linalg.norm(w, axis=1))
        loss = np.concatenate(losses)
        ok = np.isfinite(loss)
        loss[~ok] = np.nan
        return EstimateBatch(
            loss=loss,
            w_norm=np.concatenate(norms),
            iterations=np.full(len(loss), self.steps, dtype=np.int64),
            converged=ok,
        )

