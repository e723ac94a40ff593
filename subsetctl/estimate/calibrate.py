"""Calibrate the estimator on a few real fine-tunes: choose lambda, fit an affine map.

The design notes this project started from found that lambda decides how well estimates rank subsets and that
the raw level of ``L_hat`` is biased, while an affine map fitted on a few true
fine-tunes removes most of the bias. Given the true losses ``y_k`` of k subsets
(fine-tuned for real by ``verify``) and, for every lambda of a grid, the raw estimates of
the same k subsets, :func:`calibrate`:

1. drops subsets whose true value is NaN (a diverged fine-tune), saying which and why;
2. picks the lambda whose raw estimates rank the subsets most like the truth (Spearman;
   among lambdas that rank equally well, the one whose calibrated estimates are closest
   (leave-one-out error), then the larger, more conservative one);
3. fits ``calibrated = slope * raw + intercept`` by least squares at that lambda (a slope
   that is not positive turns calibration off: the search ranks by the raw estimates, and
   such a map would reverse or flatten their order); a lambda chosen at either end of the
   grid, ranking better than its neighbour, gets a note: the best one may lie beyond it;
4. reports the leave-one-out median relative error of the calibrated estimate (each
   subset predicted by a map fitted on the others), so the error shown is held out, and
   says so when it is no smaller than that of predicting each subset by the mean of the
   others (real runs that barely differ make any error small).

With fewer than ``MIN_K`` usable subsets calibration is off: the result keeps the spec's
lambda (``default_lam``), else the grid's largest, with the identity map, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from subsetctl.errors import UserError
from subsetctl.spec import MIN_CALIBRATION_K

#: Fewest usable true fine-tunes for which an affine map is fitted.
MIN_K = MIN_CALIBRATION_K
#: what the note on a lambda chosen at the grid's small end advises (a caller whose solver did
#: not converge there drops that note: smaller lambdas converge less still)
ADD_SMALLER = "add smaller values to calibrate.lambda_grid"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation with average ranks for ties; NaN when either side is
    constant or fewer than 2 points."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) < 2:
        return float("nan")
    ra = rankdata(a) - (len(a) + 1) / 2.0
    rb = rankdata(b) - (len(b) + 1) / 2.0
    denom = np.sqrt((ra @ ra) * (rb @ rb))
    if denom == 0:
        return float("nan")
    return float((ra @ rb) / denom)


#: a fitted slope whose change over the raw estimates' range is below this fraction of the
#: true losses' scale is rounding, not a trend: taken as 0 ("all alike")
_FLAT_SLOPE = 1e-9


def _fit_affine(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y ~ slope * raw + intercept``; a constant ``raw`` gives slope 0, and so
    does a slope that moves the fit by no more than rounding over the raw range (a true slope
    of 0 came out 8.5e-17 or -1.4e-16 by rounding alone, read as a real trend or as a reversed
    order)."""
    if np.ptp(raw) == 0:
        return 0.0, float(np.mean(y))
    slope, intercept = np.polyfit(raw, y, 1)
    if abs(slope) * np.ptp(raw) <= _FLAT_SLOPE * max(float(np.max(np.abs(y))), np.finfo(float).tiny):
        return 0.0, float(np.mean(y))
    return float(slope), float(intercept)


def _held_out_prediction(raw_fit: np.ndarray, y_fit: np.ndarray, raw_held_out: float) -> float:
    """What calibration fitted on ``(raw_fit, y_fit)`` gives for a subset it did not see:
    the affine map's value, or the raw estimate itself where the map's slope is not
    positive (:func:`calibrate` turns calibration off there and reports raw estimates)."""
    slope, intercept = _fit_affine(raw_fit, y_fit)
    return slope * raw_held_out + intercept if slope > 0 else raw_held_out


def _loo_rel_errors(raw: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Relative error of each point predicted by calibration fitted on the others."""
    errs = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        pred = _held_out_prediction(raw[keep], y[keep], raw[i])
        errs[i] = abs(pred - y[i]) / max(abs(y[i]), 1e-12)
    return errs


def _nan_last(value: float) -> float:
    """A sort key that puts NaN (no value) after every number."""
    return value if np.isfinite(value) else np.inf


def _pick_lambda(scored: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """``(lam, spearman)`` of the best ``(lam, spearman, loo_error)``: highest Spearman, then
    lowest leave-one-out error, then the larger lambda (the rule of :func:`calibrate`)."""
    usable = [t for t in scored if np.isfinite(t[1])]
    if not usable:
        return None
    best = max(t[1] for t in usable)
    tied = [t for t in usable if t[1] >= best - 1e-12]
    closest = min(_nan_last(t[2]) for t in tied)
    lam, spear, _ = max((t for t in tied if _nan_last(t[2]) <= closest + 1e-9), key=lambda t: t[0])
    return lam, spear


def _some_names(names: list[str], shown: int = 5) -> str:
    """``names`` joined by commas, the first ``shown`` of them and how many more
    ("a, b, c, d, e and 3 more")."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def _mean_loo_rel_errors(y: np.ndarray) -> np.ndarray:
    """Relative error of each point predicted by the mean of the others: the held-out error
    of an estimate that knows nothing of the subsets, for :func:`_loo_rel_errors` to beat."""
    others = (y.sum() - y) / (len(y) - 1)
    return np.abs(others - y) / np.maximum(np.abs(y), 1e-12)


def _percent(fraction: float) -> str:
    """A fraction as a percentage with two significant digits (0.00064 -> 0.064%)."""
    return f"{fraction * 100:#.2g}%"


def _rel_errors(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(pred - y) / np.maximum(np.abs(y), 1e-12)


@dataclass
class Calibration:
    """The chosen lambda and affine map, with the evidence behind them.

    Attributes:
        lam: chosen lambda.
        slope / intercept: ``calibrated = slope * raw + intercept`` (identity when
            ``enabled`` is False).
        loo_median_rel_err: median leave-one-out relative error of the calibrated
            estimate at ``lam`` (NaN when disabled).
        spearman: Spearman rank correlation of the raw estimates at ``lam`` with the
            true values.
        per_lambda: for every lambda of the grid, ``{"spearman", "raw_median_rel_err",
            "loo_median_rel_err", "n"}``.
        enabled: whether the affine map is in use.
        notes: human-readable remarks (excluded subsets, why calibration is off...).
        estimator: the estimator these numbers belong to (None: the spec's own).
    """

    lam: float
    slope: float
    intercept: float
    loo_median_rel_err: float
    spearman: float
    per_lambda: dict[float, dict[str, float]] = field(default_factory=dict)
    enabled: bool = True
    notes: list[str] = field(default_factory=list)
    estimator: str | None = None

    def apply(self, raw: np.ndarray | float) -> np.ndarray:
        """Calibrated estimates for raw estimates at ``lam`` (unchanged when disabled)."""
        raw = np.asarray(raw, dtype=float)
        if not self.enabled:
            return raw.copy()
        return self.slope * raw + self.intercept

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN becomes None; lambdas become a list)."""

        def clean(v: float) -> float | None:
            return None if v is None or not np.isfinite(v) else float(v)

        def stat(key: str, v: float) -> float | int | None:
            """A per-lambda value as JSON shows it: ``n``, a count, as an integer (4, not 4.0)."""
            value = clean(v)
            return int(value) if key == "n" and value is not None else value

        return {
            "lam": float(self.lam),
            "slope": float(self.slope),
            "intercept": float(self.intercept),
            "loo_median_rel_err": clean(self.loo_median_rel_err),
            "spearman": clean(self.spearman),
            "per_lambda": [
                {"lam": float(lam), **{k: stat(k, v) for k, v in stats.items()}}
                for lam, stats in sorted(self.per_lambda.items())
            ],
            "enabled": bool(self.enabled),
            "notes": list(self.notes),
            "estimator": self.estimator,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""

        def num(v: Any) -> float:
            return float("nan") if v is None else float(v)

        per_lambda = {
            float(row["lam"]): {k: num(v) for k, v in row.items() if k != "lam"}
            for row in data.get("per_lambda", [])
        }
        return cls(
            lam=float(data["lam"]),
            slope=float(data["slope"]),
            intercept=float(data["intercept"]),
            loo_median_rel_err=num(data.get("loo_median_rel_err")),
            spearman=num(data.get("spearman")),
            per_lambda=per_lambda,
            enabled=bool(data.get("enabled", True)),
            notes=list(data.get("notes", [])),
            estimator=data.get("estimator"),
        )


def calibrate(
    y_true: Sequence[float] | np.ndarray,
    raw_by_lambda: Mapping[float, Sequence[float] | np.ndarray],
    labels: Sequence[str] | None = None,
    default_lam: float | None = None,
    lr_key: str | None = None,
) -> Calibration:
    """Choose lambda by rank agreement and fit the affine map (see the module docstring).

    Args:
        y_true: true target losses of k fine-tuned subsets; NaN marks a diverged run.
        raw_by_lambda: lambda -> raw estimates (k,) of the same subsets, same order.
        labels: optional names of the k subsets, used in notes.
        default_lam: lambda to keep when lambda cannot be chosen (fewer than ``MIN_K``
            usable subsets; it need not be in the grid); defaults to the grid's largest.
        lr_key: the spec key of the learning rate the fine-tunes ran at (``verify.lr_ce``),
            which the note names when too few are usable because half or more diverged.

    Raises:
        UserError: empty grid, or an estimate array whose length is not k.
    """
    y = np.asarray(y_true, dtype=float)
    raws = _estimates_by_lambda(raw_by_lambda, len(y))
    grid = sorted(raws)
    names = list(labels) if labels is not None else [f"subset #{i}" for i in range(len(y))]
    notes: list[str] = []
    valid = np.isfinite(y)
    diverged = [names[i] for i in np.flatnonzero(~valid)]
    if diverged:  # one note, however many: a line each buried the report's other notes (8 of 8 diverged)
        notes.append(f"{_some_names(diverged)} excluded: {'its true loss is' if len(diverged) == 1 else 'their true losses are'} "
                     f"NaN (the fine-tune{'' if len(diverged) == 1 else 's'} diverged).")
    per_lambda = _agreement_by_lambda(y, valid, raws, names, notes)

    yv = y[valid]
    constant = len(yv) >= 2 and float(np.ptp(yv)) <= 1e-9 * max(1.0, float(np.abs(yv).mean()))
    if constant:  # nothing to rank or fit: a near-zero error here would look like a perfect estimate
        notes.append(
            f"Calibration is off: every usable fine-tune ended at the same loss ({float(yv[0]):.6g}), so the "
            "real runs cannot rank the subsets (a learning rate so high that every run blew up to the same "
            "value, or so low that none moved); check verify's learning rates."
        )
    n_usable = int(max(stats["n"] for stats in per_lambda.values()))
    # only lambdas with MIN_K usable subsets compete: a Spearman over 3 points picks by chance
    pick = None if constant else _pick_lambda([
        (lam, per_lambda[lam]["spearman"], per_lambda[lam]["loo_median_rel_err"])
        for lam in grid if per_lambda[lam]["n"] >= MIN_K])
    if pick is None:
        if n_usable < MIN_K:
            n_diverged = int((~valid).sum())
            notes.append(
                f"Calibration is off: {n_usable} usable fine-tuned subsets, at least {MIN_K} are "
                "needed to fit and check the affine map; estimates are reported raw, and their Spearman is not "
                f"shown (over fewer than {MIN_K} subsets a rank agreement comes out high or low by chance). "
                + ("Raise verify.k (6-10 is typical)." if n_usable == len(y) else
                   f"{len(y) - n_usable} of the {len(y)} fine-tunes are not usable (the notes say why); "
                   + (f"{n_diverged} diverged: lower {lr_key or 'the learning rate of these fine-tunes'} first (more "
                      "fine-tunes at this one would diverge too), then raise verify.k if too few remain."
                      if 2 * n_diverged >= len(y) else "raise verify.k or fix what made them unusable."))
            )
        elif not constant:
            notes.append("Calibration is off: no lambda's estimates rank the fine-tuned subsets (the estimates "
                         "are the same for every subset); estimates are reported raw.")
        # no Spearman either: choose_estimator must not prefer one estimator on this evidence
        return Calibration(
            lam=float(default_lam) if default_lam is not None else grid[-1],
            slope=1.0,
            intercept=0.0,
            loo_median_rel_err=float("nan"),
            spearman=float("nan"),
            per_lambda=per_lambda,
            enabled=False,
            notes=notes,
        )
    chosen = pick[0]
    stats = per_lambda[chosen]
    ok = valid & np.isfinite(raws[chosen])
    slope, intercept = _fit_affine(raws[chosen][ok], y[ok])
    if not slope > 0:
        # the search ranks subsets by the raw estimates: a map that reverses (or flattens) their
        # order would show its pick as the worst (or no better than any) subset, so it is not used
        notes.append(
            f"Calibration is off: the affine map fitted at lambda={chosen:g} has slope {slope:.3g} (not "
            "positive), so its calibrated estimates would rank the subsets "
            + ("all alike" if slope == 0 else "in the reverse order") + " of the raw ones the search ranks "
            f"them by; the raw estimates do not track the true losses (Spearman {stats['spearman']:.2f}). "
            f"Estimates are reported raw, at lambda={chosen:g}; raise verify.k, or check verify's learning "
            "rates and the estimator."
        )
        return Calibration(lam=chosen, slope=1.0, intercept=0.0, loo_median_rel_err=float("nan"),
                           spearman=stats["spearman"], per_lambda=per_lambda, enabled=False, notes=notes)
    edge = _grid_edge_note(chosen, per_lambda)
    if edge:
        notes.append(edge)
    # a small held-out error reads as a precise estimate; it is only one if it beats knowing nothing
    # of the subset at all: the mean of the other fine-tunes, held out alike
    of_mean = float(np.median(_mean_loo_rel_errors(y[ok])))
    if stats["loo_median_rel_err"] >= of_mean:
        notes.append(
            f"The calibrated estimates' leave-one-out error ({_percent(stats['loo_median_rel_err'])}) is no smaller "
            f"than that of predicting each fine-tuned subset by the mean of the others ({_percent(of_mean)}): the "
            "calibrated values tell no more about a subset's loss than the average of the real runs does, however "
            "small the error looks. Judge the estimates by their rank agreement (Spearman) instead.")
    return Calibration(
        lam=chosen,
        slope=slope,
        intercept=intercept,
        loo_median_rel_err=stats["loo_median_rel_err"],
        spearman=stats["spearman"],
        per_lambda=per_lambda,
        enabled=True,
        notes=notes,
    )


def _grid_edge_note(chosen: float, per_lambda: dict[float, dict[str, float]]) -> str | None:
    """A note when ``chosen`` is the smallest or the largest of the lambdas that competed
    (two or more, each with ``MIN_K`` usable subsets and a Spearman) and ranks the subsets
    better than its neighbour in the grid: the best lambda may lie beyond the grid, which
    nothing else would tell the user. None otherwise, and for the largest lambda when it won
    only by the tie rule (same Spearman and error as its neighbour: no sign of a trend)."""
    competed = [lam for lam in sorted(per_lambda)
                if per_lambda[lam]["n"] >= MIN_K and np.isfinite(per_lambda[lam]["spearman"])]
    if len(competed) < 2 or chosen not in (competed[0], competed[-1]):
        return None
    smallest = chosen == competed[0]
    mine, theirs = per_lambda[chosen], per_lambda[competed[1] if smallest else competed[-2]]
    tied = (abs(mine["spearman"] - theirs["spearman"]) <= 1e-12
            and abs(_nan_last(mine["loo_median_rel_err"]) - _nan_last(theirs["loo_median_rel_err"])) <= 1e-9)
    if tied and not smallest:
        return None
    neighbour = competed[1] if smallest else competed[-2]
    end, add, beyond = ("smallest", ADD_SMALLER, (chosen / 10, chosen / 3)) if smallest else \
        ("largest", "add larger values to calibrate.lambda_grid", (chosen * 3, chosen * 10))
    return (f"lambda={chosen:g} is the {end} of calibrate.lambda_grid and ranks the fine-tuned subsets best "
            f"(Spearman {mine['spearman']:.2f}; lambda={neighbour:g}: {theirs['spearman']:.2f}"
            + (", with a larger leave-one-out error" if abs(mine["spearman"] - theirs["spearman"]) <= 1e-12 else "")
            + f"), so the best lambda may lie beyond the grid: {add} "
            f"(e.g. {', '.join(_one_digit(lam) for lam in beyond)}) to find out.")


def _one_digit(value: float) -> str:
    """``value`` rounded to one significant digit, as a spec would write it (0.003, 30)."""
    return f"{float(f'{value:.1g}'):g}"


def _estimates_by_lambda(raw_by_lambda: Mapping[float, Sequence[float] | np.ndarray], k: int) -> dict[float, np.ndarray]:
    """``raw_by_lambda`` as float arrays keyed by float lambda; a UserError for an empty
    grid or an array that is not one estimate per fine-tuned subset (``k``)."""
    if not raw_by_lambda:
        raise UserError("Calibration needs raw estimates for at least one lambda.")
    raws: dict[float, np.ndarray] = {}
    for lam, values in raw_by_lambda.items():
        arr = np.asarray(values, dtype=float)
        if arr.shape != (k,):
            raise UserError(
                f"Calibration got {k} true values but {arr.shape} raw estimates for "
                f"lambda={lam}; give one estimate per fine-tuned subset, in the same order."
            )
        raws[float(lam)] = arr
    return raws


def _agreement_by_lambda(
    y: np.ndarray, valid: np.ndarray, raws: dict[float, np.ndarray], names: list[str], notes: list[str]
) -> dict[float, dict[str, float]]:
    """For each lambda (ascending), how its raw estimates agree with the true losses ``y``
    over the subsets usable at it (``valid`` and a finite estimate): Spearman (3 or more),
    the raw and the leave-one-out calibrated median relative errors (:data:`MIN_K` or
    more), and how many were usable, ``n``. A subset with no estimate gets one note,
    naming the lambdas."""
    per_lambda: dict[float, dict[str, float]] = {}
    no_estimate: dict[int, list[float]] = {}  # subset -> the lambdas it has no estimate at: one note each
    for lam in sorted(raws):
        ok = valid & np.isfinite(raws[lam])
        for i in np.flatnonzero(valid & ~np.isfinite(raws[lam])):
            no_estimate.setdefault(int(i), []).append(lam)
        n = int(ok.sum())
        raw, yy = raws[lam][ok], y[ok]
        per_lambda[lam] = {
            "spearman": spearman(raw, yy) if n >= 3 else float("nan"),
            "raw_median_rel_err": float(np.median(_rel_errors(raw, yy))) if n else float("nan"),
            "loo_median_rel_err": (
                float(np.median(_loo_rel_errors(raw, yy))) if n >= MIN_K else float("nan")
            ),
            "n": float(n),
        }
    for i, lams in no_estimate.items():
        at = "every lambda" if len(lams) == len(raws) > 1 else \
            f"lambda={', '.join(f'{lam:g}' for lam in lams)}"
        notes.append(f"{names[i]} excluded at {at}: its estimate is NaN.")
    return per_lambda


def choose_estimator(candidates: Mapping[str, Calibration]) -> Calibration:
    """The calibration whose raw estimates rank the true losses best, across estimators.

    ``candidates`` maps estimator name -> its :func:`calibrate` result, in order of
    preference: a tie (equal Spearman, or no usable Spearman anywhere) goes to the
    earlier one, so the spec's own estimator wins unless another ranks strictly better.
    """
    if not candidates:
        raise UserError("Calibration needs at least one estimator to choose from.")
    best_name, best_score = None, -np.inf
    for name, cal in candidates.items():
        score = cal.spearman if np.isfinite(cal.spearman) else -np.inf
        if best_name is None or score > best_score + 1e-12:
            best_name, best_score = name, score
    chosen = candidates[best_name]
    chosen.estimator = best_name
    return chosen


def selection_loo_rel_errors(
    y_true: Sequence[float] | np.ndarray, raw_by_candidate: Mapping[tuple[str, float], np.ndarray]
) -> np.ndarray:
    """Leave-one-out relative errors with the *choice* held out too.

    ``raw_by_candidate`` maps ``(estimator, lambda)`` to raw estimates, estimators in order
    of preference. For each usable subset i, the choice is redone on the other subsets
    alone, by the same rule as :func:`calibrate` and :func:`choose_estimator` (per
    estimator: highest Spearman, then lowest leave-one-out error, then larger lambda;
    across estimators: highest Spearman, ties to the earlier one); the affine map is
    fitted on them and subset i predicted. Unlike :attr:`Calibration.loo_median_rel_err`,
    whose lambda was chosen with subset i in view, nothing about subset i reaches its own
    prediction. NaN where a subset's truth is NaN, or where the other subsets are fewer
    than ``MIN_K`` (calibration would be off there).
    """
    y = np.asarray(y_true, dtype=float)
    raws = {key: np.asarray(v, dtype=float) for key, v in raw_by_candidate.items()}
    estimators = list(dict.fromkeys(name for name, _ in raws))
    errs = np.full(len(y), np.nan)
    for i in np.flatnonzero(np.isfinite(y)):
        best_key, best = None, -np.inf
        for name in estimators:
            scored = []
            for (est, lam), raw in raws.items():
                keep = np.isfinite(y) & np.isfinite(raw)
                keep[i] = False
                if est != name or keep.sum() < MIN_K or not np.isfinite(raw[i]):  # as calibrate(): MIN_K
                    continue
                scored.append((lam, spearman(raw[keep], y[keep]), float(np.median(_loo_rel_errors(raw[keep], y[keep])))))
            pick = _pick_lambda(scored)
            if pick is not None and pick[1] > best + 1e-12:
                best_key, best = (name, pick[0]), pick[1]
        if best_key is None:
            continue
        raw = raws[best_key]
        keep = np.isfinite(y) & np.isfinite(raw)
        keep[i] = False
        errs[i] = abs(_held_out_prediction(raw[keep], y[keep], raw[i]) - y[i]) / max(abs(y[i]), 1e-12)
    return errs
