"""The estimator interface every search strategy talks to.

A subset is a boolean mask over the auxiliary sources (the target is always included).
An estimator maps masks to the estimated target validation loss ``L_hat(S)``
(:mod:`subsetctl.estimate.solvers` defines it) plus per-subset diagnostics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass
class FeatureSet:
    """Cached per-example features, grouped by source, as the estimators need them.

    Attributes:
        target: name of the target task.
        sources: names of the auxiliary sources, in mask order.
        target_train_x / target_train_f: the target's training rows, (n_t, d) and (n_t,).
        source_train_x / source_train_f: one array per source, aligned with ``sources``.
        val_x / val_f: the target's validation rows, where L_hat is evaluated.
        source_repr / target_repr: optional mean last-layer hidden states (for the
            representation-similarity baseline).
    """

    target: str
    sources: list[str]
    target_train_x: np.ndarray
    target_train_f: np.ndarray
    source_train_x: list[np.ndarray]
    source_train_f: list[np.ndarray]
    val_x: np.ndarray
    val_f: np.ndarray
    source_repr: np.ndarray | None = None
    target_repr: np.ndarray | None = None

    @property
    def d(self) -> int:
        return int(self.val_x.shape[1])

    @property
    def n_sources(self) -> int:
        return len(self.sources)

    def read_only(self) -> FeatureSet:
        """These features as one search strategy is given them (its ``context.features``): the
        arrays read-only views of these (no copy of the data; writing to one raises numpy's
        "assignment destination is read-only"), the lists fresh lists (a strategy may reorder
        or trim its own, as its ``context.sources``). The search gave every strategy the
        estimator's own FeatureSet: a plugin's ``features.sources.reverse()`` or
        ``features.val_f[:] = 0`` changed the estimates and picks of the strategies after it,
        and the order of the sources selections.json records, without a word."""
        return FeatureSet(
            target=self.target,
            sources=list(self.sources),
            target_train_x=_read_only(self.target_train_x),
            target_train_f=_read_only(self.target_train_f),
            source_train_x=[_read_only(a) for a in self.source_train_x],
            source_train_f=[_read_only(a) for a in self.source_train_f],
            val_x=_read_only(self.val_x),
            val_f=_read_only(self.val_f),
            source_repr=None if self.source_repr is None else _read_only(self.source_repr),
            target_repr=None if self.target_repr is None else _read_only(self.target_repr),
        )


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array`` (``array`` itself stays writable)."""
    view = np.asarray(array).view()
    view.setflags(write=False)
    return view


@dataclass
class EstimateBatch:
    """Results for m subsets: ``loss`` (m,), ``w_norm`` (m,), ``iterations`` (m,),
    ``converged`` (m,) bool. ``loss`` is NaN where the solver failed."""

    loss: np.ndarray
    w_norm: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


class SubsetEstimator(ABC):
    """Estimates target validation loss for subsets of sources.

    Strategies see only ``sources`` and ``estimate``; they never touch gradients.
    """

    #: one-line description shown by ``subsetctl ls``
    description: str = ""
    #: what to do when estimates come back not converged: the end of the search's notice
    #: (calibration takes the best-ranking lambda of its grid: larger values added to the grid
    #: leave its choice as it was unless they rank better, so the advice is to leave out the
    #: chosen one and those below)
    not_converged_advice: str = ("use a larger lambda (estimate.lam; where calibration chooses it, a "
                                 "calibrate.lambda_grid without the chosen value and those below it: a larger "
                                 "value added to it is chosen only if it ranks the verify runs better)")

    @property
    @abstractmethod
    def sources(self) -> list[str]:
        """Source names in mask order."""

    @abstractmethod
    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        """Estimate every subset in ``masks`` (m, n_sources) bool."""

    def masks_for(self, subsets: list[list[str]]) -> np.ndarray:
        """Masks for subsets given by source names; unknown names are errors, and so is a
        subset given as a text (``masks_for(["a", "b"])``: each letter was taken for a source,
        which with one-letter names estimated other subsets than meant without a word)."""
        from subsetctl.errors import UserError

        index = {name: i for i, name in enumerate(self.sources)}
        masks = np.zeros((len(subsets), len(self.sources)), dtype=bool)
        for row, subset in enumerate(subsets):
            if isinstance(subset, (str, bytes)):
                raise UserError(
                    f"masks_for takes a list of subsets, each a list of source names, but subset {row} is the text "
                    f"{subset!r}: write masks_for([[{subset!r}]]) for the subset of that source alone."
                )
            for name in subset:
                if name not in index:
                    raise UserError(
                        f"Unknown source {name!r} in subset {subset}. Known sources: "
                        f"{', '.join(self.sources)}."
                    )
                masks[row, index[name]] = True
        return masks
