"""The calibrate stage: choose lambda (and, with ``calibrate.estimators``, the estimator)
and an affine map raw -> calibrated estimate from verify's real fine-tunes. Without
verify (or with calibration off, or fewer than 4 usable fine-tunes) it records the spec's
estimator and lambda and the identity map, labeled uncalibrated, so later stages always
read one file."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from subsetctl.errors import UserError
from subsetctl.pipeline import Stage, StageContext
from subsetctl.project import atomic_write_json
from subsetctl.reporter import ShownInResults
from subsetctl.spec import Spec
from subsetctl.stages import common
from subsetctl.stages.features import (
    SIMULATED_FINETUNE_KEYS,
    load_features,
    make_estimator,
    with_unread_estimator_keys_at_defaults,
)
from subsetctl.stages.verify import mean_over_repeats, repeat_agreement

CALIBRATION = "calibration.json"
#: each verify kind's Spearman of the raw estimates at every lambda of the grid
#: (``{kind: {lambda: spearman}}``), the report's verify table shows it as the kind's
#: ``spearman_raw_by_lambda``. Kept apart from calibration.json and out of the stage's output
#: digest: with calibration off a new ``calibrate.lambda_grid`` changes only these figures,
#: and re-ran the search (which reads the primary calibration alone) for nothing. The report
#: stage counts this file among its inputs instead.
GRID_FIGURES = "spearman_by_lambda.json"

#: Below this rank agreement with verify's fine-tunes the stage warns that rankings are weak.
WEAK_SPEARMAN = 0.5


def _said_as_the_run_began(spec: Spec, name: str, lam: float) -> bool:
    """Whether the spec's checks warned, as the run began, that ``name`` leaves ``lam`` out
    (linear_sgd diverging there: :func:`~subsetctl.spec_checks.lambda_left_out_warning`), so
    that the stage does not say it a second time."""
    from subsetctl.spec_checks import lambda_left_out_warning, unstable_linear_sgd

    said = set(spec.checked_warnings)
    return name == "linear_sgd" and any(lambda_left_out_warning(reason) in said
                                        for reason in unstable_linear_sgd(spec, [lam]))


class CalibrateStage(Stage):
    name = "calibrate"
    description = "choose lambda and calibrate estimates against verify's real fine-tunes (when verify is on)"
    after = ("gradients", "verify")
    memory_keys = ("executor.n_jobs", "executor.batch_size")
    describes_only = (GRID_FIGURES,)  # read by the report alone, which counts it itself
    # verify's budget: what linear_sgd simulates by default
    spec_keys = ("project.seed", "estimate", "calibrate", "verify.enabled", *SIMULATED_FINETUNE_KEYS)

    def work(self, spec: Any, forced: bool = False) -> str:
        """What calibration will decide, and from what (plan showed only how long its last run
        took: a k too small to calibrate, or calibration switched off, went unseen until the report)."""
        from subsetctl.spec import MIN_CALIBRATION_K

        kept = f"no calibration: raw estimates at estimate.lam = {spec.estimate.lam:g}"
        if not spec.verify.enabled:
            return f"{kept} (verify is off)"
        k = min(spec.verify.k, 2 ** min(len(spec.sources), 30))
        grid = sorted(set(spec.calibrate.lambda_grid))
        if not spec.calibrate.enabled:
            return (f"{kept} (calibrate.enabled is false); the {len(grid)} lambda{'s' if len(grid) > 1 else ''} of "
                    f"calibrate.lambda_grid compared with verify's {k} subsets for the report only")
        if k < MIN_CALIBRATION_K:
            return f"{kept} (verify's {k} subset{'s are' if k != 1 else ' is'} fewer than the {MIN_CALIBRATION_K} it needs)"
        names = candidate_estimators(spec)
        against = spec.calibrate.against if spec.calibrate.against in spec.verify.kinds else spec.verify.kinds[0]
        chosen = ([f"of lambda among the {len(grid)} of calibrate.lambda_grid ({grid[0]:g} to {grid[-1]:g})"]
                  if len(grid) > 1 else []) + ([f"of the estimator among {', '.join(names)}"] if len(names) > 1 else [])
        fitted = f"an affine map fitted to the {against} fine-tunes of verify's {k} subsets"
        if not chosen:
            return f"lambda pinned at {grid[0]:g}, and {fitted}"
        return (f"the choice {' and '.join(chosen)} by rank agreement"
                + (f" (lambda pinned at {grid[0]:g})" if len(grid) == 1 else "") + f", and {fitted}")

    def spec_slice(self, spec: Any) -> dict[str, Any]:
        """The slice, with the estimator settings no estimator it builds takes at their
        defaults: without verify it builds none (it records estimate.estimator and
        estimate.lam), so neither verify's budget nor estimate.max_iter re-run it."""
        names = candidate_estimators(spec) if spec.verify.enabled else []
        return with_unread_estimator_keys_at_defaults(super().spec_slice(spec), spec, names)

    def settings_not_read(self, recorded_slice: dict[str, Any]) -> tuple[str, ...]:
        """The estimator settings :meth:`spec_slice` recorded at their defaults, as
        ``recorded_slice`` tells: all of them without verify (report.json's ``settings`` said
        ``estimate.max_iter: 50`` where the search, which read it, ran with 77); with verify and
        a model-backed ``estimate.estimator`` (true_finetune), verify's budget, which calibration,
        evaluating ``fast`` in its place, may not read but the search's real fine-tunes do (a
        ``verify.lr_surrogate`` of 0.5 was reported at its default where verify runs only ce)."""
        from subsetctl.registry import ESTIMATORS
        from subsetctl.stages.features import ESTIMATOR_SETTING_KEYS

        if recorded_slice.get("verify.enabled") is False:
            return tuple(key for keys in ESTIMATOR_SETTING_KEYS.values() for key in keys)
        estimate = recorded_slice.get("estimate")
        try:
            model_backed = getattr(ESTIMATORS.get(estimate["estimator"]), "needs_model", False)
        except Exception:  # noqa: BLE001 - no estimator recorded, or a plugin not imported: as read
            return ()
        return SIMULATED_FINETUNE_KEYS if model_backed else ()

    def output_parts(self, outputs: dict[str, str], summary: dict[str, Any]) -> dict[str, Any]:
        """The ``choice`` part, which the search reads alone (its ``reads_parts``): the
        estimator, lambda and map the search applies (the summary's), not the figures of each
        lambda of the grid, the notes and the held-out errors in calibration.json (report.json
        takes those from it): a new ``calibrate.lambda_grid`` whose choice stayed the same re-ran
        the search, from its store, for the same estimates. None for a summary without them."""
        keys = ("estimator", "lambda", "calibrated", "slope", "intercept")
        return {"choice": {key: summary[key] for key in keys}} if all(key in summary for key in keys) else {}

    def parts_change_note(self, spec: Spec, project: Any, manifest: dict[str, Any],
                          inputs: dict[str, Any]) -> dict[str, str]:
        """The ``choice`` part, whenever calibrate re-runs: `plan` says the search runs "if
        its output" changes, though a new lambda grid or verify k seldom changes the choice."""
        return {"choice": "only its choice of estimator, lambda and map counts, not its figures for each lambda"}

    def settings_not_taken(self, manifest: dict[str, Any]) -> tuple[str, ...]:
        """estimate.lam when calibration chose lambda from calibrate.lambda_grid (its summary
        says "calibrated"): the spec's lambda is then only the fallback, and results made
        with an ``estimate.lam`` override are those the spec without it gives."""
        summary = manifest.get("summary")
        return ("estimate.lam",) if isinstance(summary, dict) and summary.get("calibrated") is True else ()

    def extra_inputs(self, spec: Any, project: Any) -> dict[str, Any]:
        """The files of plugin estimators among the candidates."""
        from subsetctl.plugin_loading import plugin_code_inputs
        from subsetctl.registry import ESTIMATORS

        names = [spec.estimate.estimator, *spec.calibrate.estimators]
        return plugin_code_inputs(spec.plugins, [(ESTIMATORS, name) for name in names], project.root)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.estimate.calibrate import Calibration

        spec = ctx.spec
        features = load_features(ctx.upstream_dir("gradients") / "store", spec)
        verify_results = ctx.upstream_dir("verify") / "results.json"
        out: dict[str, Any] = {"kinds": {}}
        against = spec.calibrate.against  # the kind the primary calibration comes from
        if spec.verify.enabled and verify_results.is_file():
            runs = json.loads(verify_results.read_text())
            names = candidate_estimators(spec)
            # estimates at the spec's lambda too: what is kept when lambda cannot be chosen
            grid = sorted(set(spec.calibrate.lambda_grid) | {spec.estimate.lam})
            # one estimator per (name, lambda) (building one precomputes statistics), shared by every kind;
            # a lambda an estimator refuses (linear_sgd's diverging weight decay) is left out for it
            estimators = {}
            for name in names:
                for lam in grid:
                    try:
                        estimators[(name, lam)] = make_estimator(spec, features, lam, name=name)
                    except UserError as exc:
                        if name == spec.estimate.estimator and lam == spec.estimate.lam:
                            raise  # the estimate the search falls back to: nothing can stand in
                        # (off, the grid only shows what calibration would give; the spec's checks said it as
                        # the run began where they could: lambda_grid's linear_sgd divergence)
                        if spec.calibrate.enabled and not _said_as_the_run_began(spec, name, lam):
                            ctx.reporter.warn(f"calibrate: {name} at lambda={lam:g} left out: {exc}")
            said: dict[str, list[str]] = {}  # a note -> the kinds whose calibration says it (said once)
            for kind in sorted({r["kind"] for r in runs}):
                rows = mean_over_repeats(runs, kind)
                entry = self._calibrate_kind(ctx, rows, names, grid, estimators, spec.calibrate.lambda_grid, said)
                entry["repeats"] = max(len(r["true_repeats"]) for r in rows)
                entry["true_repeats"] = [r["true_repeats"] for r in rows]
                entry["repeat_spearman"] = repeat_agreement(runs, kind)
                out["kinds"][kind] = entry
            for note, kinds in said.items():
                ctx.reporter.warn(ShownInResults(f"calibration ({', '.join(kinds)}): {note}"))  # the report's notes
            against = spec.calibrate.against if spec.calibrate.against in out["kinds"] else next(iter(out["kinds"]))
            primary = Calibration.from_dict(out["kinds"][against]["calibration"])
            # (the default 'ce' left unwritten follows verify.kinds: `kinds: [surrogate]` calibrates against
            # the one kind it has, as plan says, without a note that a key the spec never wrote is wrong)
            if against != spec.calibrate.against and "against" in spec.calibrate.model_fields_set:
                primary.notes.append(f"calibrate.against is {spec.calibrate.against!r}, but verify ran no such "
                                     f"fine-tunes: calibrated against the {against!r} ones instead (set "
                                     f"calibrate.against: {against}, or add {spec.calibrate.against} to verify.kinds)")
            if not spec.calibrate.enabled:
                # the identity map, as whenever calibration is off: a reader applying slope and intercept
                # must get the raw estimates the search uses (the fit stays in the kind's entry)
                primary.enabled, primary.slope, primary.intercept = False, 1.0, 0.0
                # nor the fit's held-out error: the raw estimates in use have no such error (the kind's entry has it)
                primary.loo_median_rel_err = float("nan")
                primary.notes.append(f"calibrate.enabled is false: raw estimates at the spec's lambda "
                                     f"({spec.estimate.lam:g}); the verify table's calibrated error says what "
                                     "calibration would give")
        else:
            primary = Calibration(lam=spec.estimate.lam, slope=1.0, intercept=0.0, loo_median_rel_err=float("nan"),
                                  spearman=float("nan"), per_lambda={}, enabled=False,
                                  notes=["verify is off: raw estimates at the spec's lambda, uncalibrated"],
                                  estimator=spec.estimate.estimator)
        out["primary"] = primary.to_dict()
        out["against"] = against
        atomic_write_json(ctx.out_dir / GRID_FIGURES, {kind: entry.pop("spearman_raw_by_lambda")
                                                        for kind, entry in out["kinds"].items()})
        atomic_write_json(ctx.out_dir / CALIBRATION, out)
        return {"estimator": primary.estimator, "lambda": primary.lam, "calibrated": primary.enabled,
                "slope": primary.slope, "intercept": primary.intercept,
                "loo_median_rel_err": primary.loo_median_rel_err}

    @staticmethod
    def _calibrate_kind(ctx: StageContext, rows: list[dict[str, Any]], names: list[str], grid: list[float],
                        estimators: dict[tuple[str, float], Any],
                        choose_from: list[float] | None = None,
                        said: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """Calibrate every candidate estimator against one kind of fine-tune (one row per
        subset, its true loss the mean over verify's repeats); keep the best. ``grid``: the
        lambdas estimated; ``choose_from``: those lambda is chosen among (default: all); ``said``:
        where the notes of a calibration that turned itself off go (note -> kinds), for the
        caller to warn once per note however many kinds say it (default: warned here)."""
        from subsetctl.estimate.calibrate import (
            ADD_SMALLER,
            MIN_K,
            calibrate,
            choose_estimator,
            selection_loo_rel_errors,
        )

        spec = ctx.spec
        choice_grid = sorted(set(choose_from or grid))  # the lambdas lambda is chosen among
        y = np.array([np.nan if r["true"] is None else r["true"] for r in rows], dtype=float)
        labels = [common.subset_label(r["subset"]) for r in rows]
        subsets = [r["subset"] for r in rows]
        lr_key = f"verify.lr_{rows[0]['kind']}"  # named when too few fine-tunes are usable because they diverged
        candidates, raws = {}, {}
        unconverged: dict[tuple[str, float], int] = {}  # (estimator, lambda) -> verify subsets not solved to tolerance
        for name in names:
            batches = {lam: estimators[(name, lam)].estimate(estimators[(name, lam)].masks_for(subsets))
                       for lam in grid if (name, lam) in estimators}
            raw_by_lambda = {lam: batch.loss for lam, batch in batches.items()}
            unconverged.update({(name, lam): int(np.sum(~np.asarray(batch.converged, dtype=bool)))
                                for lam, batch in batches.items() if getattr(batch, "converged", None) is not None})
            usable = [lam for lam in choice_grid if lam in raw_by_lambda]
            if spec.calibrate.enabled and usable:  # lambda is chosen from the grid alone
                cal = calibrate(y, {lam: raw_by_lambda[lam] for lam in usable}, labels=labels,
                                default_lam=spec.estimate.lam, lr_key=lr_key)
            elif spec.estimate.lam in raw_by_lambda:
                cal = calibrate(y, {spec.estimate.lam: raw_by_lambda[spec.estimate.lam]}, labels=labels,
                                default_lam=spec.estimate.lam, lr_key=lr_key)
                if spec.calibrate.enabled:  # every lambda of the grid refused (warned of): say whose lambda this is
                    cal.notes.append(f"{name} accepts none of calibrate.lambda_grid (the run's warnings say why): "
                                     f"its lambda is estimate.lam = {spec.estimate.lam:g}, not chosen from the grid.")
            else:  # an extra candidate with no lambda it accepts: not a candidate
                continue
            if cal.lam not in raw_by_lambda:  # calibration off: it falls back to the spec's lambda, which this
                continue  # extra candidate refuses (linear_sgd at a large lambda), so it has no estimate to offer
            cal.estimator = name
            candidates[name], raws[name] = cal, raw_by_lambda
        chosen = choose_estimator(candidates)
        chosen.notes.extend(_diverged_repeat_notes(rows, labels))
        n_unconverged = unconverged.get((chosen.estimator, chosen.lam), 0)
        if n_unconverged:  # the search warns of its own subsets; these decided lambda, which nothing said
            # not also "add smaller lambdas": the solver, short of converging here, converges less still there
            chosen.notes = [note for note in chosen.notes if ADD_SMALLER not in note]
            advice = getattr(estimators[(chosen.estimator, chosen.lam)], "not_converged_advice", "")
            # (a calibration that turned itself off for too few runs kept estimate.lam: no Spearman chose it)
            which = "the chosen one" if spec.calibrate.enabled and np.isfinite(chosen.spearman) else "estimate.lam"
            chosen.notes.append(
                f"The {chosen.estimator} solver did not converge on {n_unconverged} of the {len(rows)} fine-tuned "
                f"subsets at lambda={chosen.lam:g} ({which}): "
                "the rank agreement and error shown for it rest partly on unreliable estimates"
                + (f"; {advice}." if advice else "."))
        # the same choice, redone without each held-out subset (estimators in order of preference)
        ordered = {(name, lam): raws[name][lam] for name in raws for lam in choice_grid if lam in raws[name]}
        # (none when calibration turned itself off: too few usable runs, or runs that all ended
        # at one loss, where a near-zero error would look like a perfect estimate)
        calibrated = spec.calibrate.enabled and chosen.enabled
        nested = selection_loo_rel_errors(y, ordered) if calibrated else np.array([])
        nested = nested[np.isfinite(nested)]
        if calibrated and not len(nested):  # the table shows "–": say why
            n_usable = int(chosen.per_lambda[chosen.lam]["n"])
            chosen.notes.append(
                f"The error with the choice held out too needs at least {MIN_K + 1} usable fine-tuned subsets "
                f"(each held out in turn, the choice made and the map fitted on {MIN_K} others); there are "
                f"{n_usable}, so only the leave-one-out error of the chosen lambda is given.")
        raw = np.asarray(raws[chosen.estimator][chosen.lam])
        kind = rows[0]["kind"]
        if not chosen.enabled:
            for note in chosen.notes:
                if said is None:
                    ctx.reporter.warn(ShownInResults(f"calibration ({kind}): {note}"))
                else:
                    said.setdefault(note, []).append(kind)
        elif np.isfinite(chosen.spearman) and chosen.spearman < WEAK_SPEARMAN:
            # with calibration off, lambda is the spec's, not the best-ranking one: not "the best estimate"
            which = (f"the best estimate ({chosen.estimator}, lambda={chosen.lam:g})" if spec.calibrate.enabled else
                     f"the search's estimate ({chosen.estimator}, estimate.lam = {chosen.lam:g}; calibrate.enabled "
                     "is false)")
            ctx.reporter.warn(
                f"calibration ({kind}): {which} ranks the "
                f"{len(rows)} real {kind} fine-tunes at Spearman {chosen.spearman:.2f}; rankings from the search "
                "are weak evidence for this kind of fine-tune (README, Measured > Fidelity, says why)."
            )
        return {
            "estimator": chosen.estimator,
            "calibration": chosen.to_dict(),
            "subsets": subsets,
            "true": [None if not np.isfinite(v) else float(v) for v in y],
            "raw": [float(v) for v in raw],
            "calibrated": [float(v) for v in np.asarray(chosen.apply(raw))],
            "loo_median_rel_err_with_selection": float(np.median(nested)) if len(nested) else None,
            "spearman_raw_by_lambda": {str(lam): _spearman_where_finite(np.asarray(v), y)
                                       for lam, v in raws[chosen.estimator].items()},
            "candidates": {name: {"calibration": cal.to_dict(), "raw": [float(v) for v in raws[name][cal.lam]]}
                           for name, cal in candidates.items()},
        }


def _diverged_repeat_notes(rows: list[dict[str, Any]], labels: list[str]) -> list[str]:
    """A note for each subset some, but not all, of whose repeats diverged: its true loss
    is the mean of the others (a subset whose every repeat diverged has calibrate's own
    note), so the report says so after the run's warnings are gone."""
    notes = []
    for row, label in zip(rows, labels):
        values = row.get("true_repeats") or []
        lost = sum(x is None or not np.isfinite(x) for x in values)
        if 0 < lost < len(values):
            notes.append(f"{label}: {lost} of {len(values)} repeats diverged (left out); its true loss is the "
                         f"mean of the other {len(values) - lost}.")
    return notes


def _spearman_where_finite(raw: np.ndarray, true: np.ndarray) -> float:
    """Spearman over the subsets where both the estimate and the real fine-tune are
    finite: a diverged fine-tune (NaN) is left out, as calibration leaves it out, instead
    of making every lambda's figure NaN."""
    from subsetctl.estimate.calibrate import spearman

    ok = np.isfinite(raw) & np.isfinite(true)
    return spearman(raw[ok], true[ok])


def candidate_estimators(spec: Any) -> list[str]:
    """The estimators calibration chooses among: the spec's first, then calibrate.estimators.

    Model-backed estimators (true_finetune) have nothing to calibrate and are replaced by
    ``fast``; unknown names are user errors naming the registered ones."""
    from subsetctl.registry import ESTIMATORS

    names: list[str] = []
    extra = spec.calibrate.estimators if spec.calibrate.enabled else []
    for name in [spec.estimate.estimator, *extra]:
        if getattr(ESTIMATORS.get(name), "needs_model", False):
            name = "fast"
        if name not in names:
            names.append(name)
    return names


def read_calibration(ctx: StageContext) -> Any:
    from subsetctl.estimate.calibrate import Calibration

    data = json.loads((ctx.upstream_dir("calibrate") / CALIBRATION).read_text())
    return Calibration.from_dict(data["primary"])
