"""The calibrate stage: choose lambda and an affine map raw -> calibrated estimate from
verify's real fine-tunes (DESIGN.md section 6). Without verify (or with calibration
off, or fewer than 4 usable fine-tunes) it records the spec's lambda and the identity
map, labeled uncalibrated, so later stages always read one file."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from subsetctl.pipeline import Stage, StageContext
from subsetctl.project import atomic_write_json
from subsetctl.stages.features import load_features, make_estimator

CALIBRATION = "calibration.json"


class CalibrateStage(Stage):
    name = "calibrate"
    description = "choose lambda and calibrate estimates against verify"
    after = ("gradients", "verify")
    spec_keys = ("estimate", "calibrate", "verify.enabled")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.estimate.calibrate import Calibration, calibrate, spearman

        spec = ctx.spec
        features = load_features(ctx.upstream_dir("gradients") / "store", spec)
        verify_results = ctx.upstream_dir("verify") / "results.json"
        out: dict[str, Any] = {"kinds": {}}
        if spec.verify.enabled and verify_results.is_file():
            runs = json.loads(verify_results.read_text())
            grid = sorted(set(spec.calibrate.lambda_grid) | {spec.estimate.lam})
            # one estimator per lambda (building one precomputes statistics), shared by every kind
            estimators = {lam: _calibration_estimator(spec, features, lam) for lam in grid}
            for kind in sorted({r["kind"] for r in runs}):
                rows = sorted((r for r in runs if r["kind"] == kind), key=lambda r: r["index"])
                y = np.array([np.nan if r["true"] is None else r["true"] for r in rows], dtype=float)
                raw_by_lambda = {
                    lam: est.estimate(est.masks_for([r["subset"] for r in rows])).loss for lam, est in estimators.items()
                }
                labels = ["+".join(r["subset"]) or "(target only)" for r in rows]
                if spec.calibrate.enabled:
                    cal = calibrate(y, raw_by_lambda, labels=labels, default_lam=spec.estimate.lam)
                else:
                    cal = calibrate(y, {spec.estimate.lam: raw_by_lambda[spec.estimate.lam]}, labels=labels,
                                    default_lam=spec.estimate.lam)
                raw = np.asarray(raw_by_lambda[cal.lam])
                out["kinds"][kind] = {
                    "calibration": cal.to_dict(),
                    "subsets": [r["subset"] for r in rows],
                    "true": [None if not np.isfinite(v) else float(v) for v in y],
                    "raw": [float(v) for v in raw],
                    "calibrated": [float(v) for v in np.asarray(cal.apply(raw))],
                    "spearman_raw_by_lambda": {str(lam): spearman(np.asarray(v), y) for lam, v in raw_by_lambda.items()},
                }
                if not cal.enabled:
                    for note in cal.notes:
                        ctx.reporter.warn(f"calibration ({kind}): {note}")
            chosen = out["kinds"].get(spec.calibrate.against) or next(iter(out["kinds"].values()))
            primary = Calibration.from_dict(chosen["calibration"])
            if not spec.calibrate.enabled:
                primary.enabled = False
        else:
            primary = Calibration(lam=spec.estimate.lam, slope=1.0, intercept=0.0, loo_median_rel_err=float("nan"),
                                  spearman=float("nan"), per_lambda={}, enabled=False,
                                  notes=["verify is off: raw estimates at the spec's lambda, uncalibrated"])
        out["primary"] = primary.to_dict()
        out["against"] = spec.calibrate.against
        atomic_write_json(ctx.out_dir / CALIBRATION, out)
        return {"lambda": primary.lam, "calibrated": primary.enabled, "slope": primary.slope,
                "intercept": primary.intercept, "loo_median_rel_err": primary.loo_median_rel_err}


def _calibration_estimator(spec: Any, features: Any, lam: float) -> Any:
    """The spec's estimator, or the fast one when the spec's needs a model (true_finetune
    has no lambda to calibrate)."""
    from subsetctl.registry import ESTIMATORS

    if getattr(ESTIMATORS.get(spec.estimate.estimator), "needs_model", False):
        return ESTIMATORS.get("fast")(features, lam=lam)
    return make_estimator(spec, features, lam)


def read_calibration(ctx: StageContext) -> Any:
    from subsetctl.estimate.calibrate import Calibration

    data = json.loads((ctx.upstream_dir("calibrate") / CALIBRATION).read_text())
    return Calibration.from_dict(data["primary"])
