"""Can the k real fine-tunes themselves correct the estimate, source by source?

A linear datamodel on top of the estimate: true loss ~ a + b * raw estimate + sum over the
subset's sources of c_s, with a ridge penalty on the c_s (one coefficient per source), fitted
leave-one-out on verify's runs of each kind. Prints, per kind and ridge strength, the
Spearman and median relative error of the held-out predictions, next to the plain affine
calibration (b and a only) for reference.

Run ``python benchmarks/fidelity.py`` first (this reads its calibration in
benchmarks/_work/fidelity, or ``--name``); numpy only, seconds. Prints one JSON line at
the end.

    python benchmarks/fidelity_datamodel.py [--name fidelity]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import fidelity_project

RIDGES = (0.01, 0.1, 1.0, 10.0, 100.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="fidelity", help="the fidelity run's work folder")
    args = parser.parse_args()
    from subsetctl.estimate.calibrate import spearman

    start = time.perf_counter()
    folder = fidelity_project(args.name)
    calibration = json.loads((folder / ".subsetctl" / "calibrate" / "calibration.json").read_text())
    out: dict[str, float | int] = {}
    for kind, entry in calibration["kinds"].items():
        y = np.array([np.nan if v is None else v for v in entry["true"]], dtype=float)
        raw = np.array(entry["raw"], dtype=float)
        keep = np.isfinite(y)
        subsets = [s for s, k in zip(entry["subsets"], keep) if k]
        y, raw = y[keep], raw[keep]
        sources = sorted({name for subset in subsets for name in subset})
        members = np.array([[name in subset for name in sources] for subset in subsets], dtype=float)
        out["k"] = len(y)
        for label, features, ridge in [("affine", raw[:, None], 0.0),
                                       *((f"datamodel@{r:g}", np.c_[raw, members], r) for r in RIDGES)]:
            held_out = _leave_one_out(features, y, ridge)
            out[f"{kind}_{label}_spearman"] = round(spearman(held_out, y), 3)
            out[f"{kind}_{label}_median_rel_err"] = round(float(np.median(np.abs(held_out - y) / y)), 4)
    out["seconds"] = round(time.perf_counter() - start, 2)
    print(json.dumps(out))


def _leave_one_out(features: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Held-out predictions: for each run, fit on the others (intercept free, the raw
    estimate's slope unpenalized, the per-source terms penalized by ``ridge``)."""
    predictions = np.empty(len(y))
    penalty = np.r_[0.0, np.full(features.shape[1] - 1, ridge)]
    for i in range(len(y)):
        train = np.arange(len(y)) != i
        x, t = features[train], y[train]
        mean_x, mean_t = x.mean(axis=0), t.mean()
        centered = x - mean_x
        coef = np.linalg.solve(centered.T @ centered + np.diag(penalty) + 1e-10 * np.eye(len(penalty)),
                               centered.T @ (t - mean_t))
        predictions[i] = mean_t + (features[i] - mean_x) @ coef
    return predictions


if __name__ == "__main__":
    main()
