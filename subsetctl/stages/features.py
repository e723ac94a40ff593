"""Bridge from the gradient store to the estimators: a FeatureSet, and the estimator
the spec names (optionally with calibrated lambda), wrapped in the results cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from subsetctl.estimate.base import FeatureSet, SubsetEstimator
from subsetctl.spec import Spec


def load_features(store_dir: Path, spec: Spec) -> FeatureSet:
    """Group the store's rows by source and split into a FeatureSet (float64 copies), a
    causal LM's rows with no token to score left out."""
    from subsetctl.gradients.store import GradientStore

    store = GradientStore.open(store_dir, writable=False)
    x = np.asarray(store.features, dtype=np.float64)
    f = np.asarray(store.outputs, dtype=np.float64)
    rep = np.asarray(store.repr, dtype=np.float64) if store.repr is not None else None
    # the rows of each (source, split), in store order: one pass (comparing every row's source
    # name once per source took 0.8 s of the search stage at 3,000 sources of 5 rows, and grows
    # with sources x rows)
    # rows with no token to score (a text of one token, no BOS before it, no EOS after it): f and
    # gradient exactly 0, which the gradients stage warns of; left out, as in a subset's estimate
    # they counted as rows that change nothing (not where every gradient is 0: a saturated theta*,
    # which the gradients stage warns of otherwise, is not this)
    nonzero = x.any(axis=1)
    unscored = ((f == 0) & ~nonzero) if spec.model.kind == "causal-lm" and nonzero.any() else np.zeros(len(f), bool)
    rows_of: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(store.rows):
        if not unscored[i]:
            rows_of.setdefault((r["source"], r["split"]), []).append(i)

    def pick(name: str, split: str) -> np.ndarray:
        return np.array(rows_of.get((name, split), []), dtype=np.int64)

    target = spec.target.name
    sources = [s.name for s in spec.sources]
    t_train, t_val = pick(target, "train"), pick(target, "validation")
    src_rows = [pick(name, "train") for name in sources]
    source_repr = target_repr = None
    if rep is not None and rep.shape[1] > 0:
        target_repr = rep[t_train].mean(axis=0)
        source_repr = np.stack([rep[r].mean(axis=0) if len(r) else np.zeros(rep.shape[1]) for r in src_rows])
    return FeatureSet(
        target=target,
        sources=sources,
        target_train_x=x[t_train],
        target_train_f=f[t_train],
        source_train_x=[x[r] for r in src_rows],
        source_train_f=[f[r] for r in src_rows],
        val_x=x[t_val],
        val_f=f[t_val],
        source_repr=source_repr,
        target_repr=target_repr,
    )


def make_estimator(
    spec: Spec, features: FeatureSet, lam: float, ctx: Any = None, name: str | None = None
) -> SubsetEstimator:
    """The estimator ``name`` (default: ``estimate.estimator``) at regularization ``lam``.

    Estimators that need the model (``needs_model``, e.g. ``true_finetune``) are built from
    the stage context ``ctx`` instead of the cached features."""
    from subsetctl.errors import UserError
    from subsetctl.registry import ESTIMATORS

    name = name or spec.estimate.estimator
    cls = ESTIMATORS.get(name)
    origin = ESTIMATORS.described(name)
    if getattr(cls, "needs_model", False):
        if ctx is None:
            raise UserError(f"The {name!r} estimator cannot be used here; use fast, exact or linear_sgd.")
        return cls(ctx)
    if origin == "built-in":
        return cls(features, lam=lam, **estimator_settings(spec, name))
    from subsetctl.plugin_guard import CheckedEstimator, build_plugin, check_estimator_sources

    inner = build_plugin("estimator", name, origin, cls, features, lam=lam, **estimator_settings(spec, name))
    checked = CheckedEstimator(inner, name, origin)
    check_estimator_sources(checked, list(features.sources))
    return checked  # type: ignore[return-value]


def estimator_settings(spec: Spec, name: str) -> dict[str, Any]:
    """The spec settings (besides lambda) that estimator ``name`` is built with: those of
    ``estimate.max_iter`` and the simulated fine-tune that its constructor accepts. The
    search stage keys its results cache on them too."""
    import inspect

    from subsetctl.registry import ESTIMATORS

    accepted = inspect.signature(ESTIMATORS.get(name)).parameters
    offered = {"max_iter": spec.estimate.max_iter, **simulated_finetune(spec)}
    return {k: v for k, v in offered.items() if k in accepted}


#: The spec keys :func:`simulated_finetune` reads besides ``estimate``: every stage that
#: builds a simulating estimator (calibrate, search) lists them among its ``spec_keys``,
#: or a changed verify budget would leave its estimates stale.
SIMULATED_FINETUNE_KEYS = ("verify.steps", "verify.batch_size", "verify.lr_surrogate")


#: The spec keys behind each setting :func:`estimator_settings` offers (``seed`` is the
#: project seed, which the stages read anyway).
ESTIMATOR_SETTING_KEYS: dict[str, tuple[str, ...]] = {
    "max_iter": ("estimate.max_iter",),
    "steps": ("estimate.sgd.steps", "verify.steps"),
    "batch_size": ("estimate.sgd.batch_size", "verify.batch_size"),
    "lr": ("estimate.sgd.lr", "verify.lr_surrogate"),
    "replay": ("estimate.sgd.replay",),
}


def unread_estimator_keys(spec: Spec, names: list[str]) -> list[str]:
    """The spec keys of estimator settings (:data:`ESTIMATOR_SETTING_KEYS`) that none of
    the estimators ``names`` is built with: ``estimate.max_iter`` is the exact solver's,
    ``estimate.sgd`` and verify's budget the simulating (``linear_sgd``) or real
    (``true_finetune``, verify's budget only) fine-tune's. A stage that builds only the
    others counts these keys at their defaults, so changing one re-runs nothing. An
    estimator that cannot be looked up (a plugin not imported: the pipeline's callers,
    :func:`subsetctl.api.load_project`, import the spec's plugins first) counts as reading
    them all."""
    from subsetctl.registry import ESTIMATORS

    read: set[str] = set()
    for name in names:
        try:
            if getattr(ESTIMATORS.get(name), "needs_model", False):  # a real fine-tune of verify's budget
                read.update(SIMULATED_FINETUNE_KEYS)
                continue
            taken = estimator_settings(spec, name)
        except Exception:  # noqa: BLE001 - unknown or broken: as reading every setting
            return []
        read.update(key for setting in taken for key in ESTIMATOR_SETTING_KEYS.get(setting, ()))
    return [key for keys in ESTIMATOR_SETTING_KEYS.values() for key in keys if key not in read]


def with_unread_estimator_keys_at_defaults(sliced: dict[str, Any], spec: Spec, names: list[str]) -> dict[str, Any]:
    """A stage's spec slice (``estimate`` and the flat ``verify.*`` keys) with the keys
    :func:`unread_estimator_keys` finds set to their defaults."""
    import copy

    from subsetctl.spec import EstimateSpec, VerifySpec

    defaults = {"estimate": EstimateSpec().model_dump(mode="json"), "verify": VerifySpec().model_dump(mode="json")}
    out = copy.deepcopy(sliced)
    for key in unread_estimator_keys(spec, names):
        section, *path = key.split(".")
        default: Any = defaults[section]
        for part in path:
            default = default[part]
        if key in out:  # a key of its own in the slice ("verify.steps")
            out[key] = default
        elif isinstance(out.get(section), dict):  # inside a section ("estimate")
            node = out[section]
            for part in path[:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and path[-1] in node:
                node[path[-1]] = default
    return out


def simulated_finetune(spec: Spec) -> dict[str, Any]:
    """The fine-tune a simulating estimator (``linear_sgd``) replays: ``estimate.sgd``,
    with unset values taken from verify's surrogate fine-tune and the project seed."""
    sgd, verify = spec.estimate.sgd, spec.verify
    return {
        "steps": sgd.steps or verify.steps,
        "batch_size": sgd.batch_size or verify.batch_size,
        "lr": sgd.lr or verify.lr_surrogate,
        "seed": spec.project.seed,
        "replay": sgd.replay,
    }


def executor_kwargs(spec: Spec) -> dict[str, Any]:
    ex = spec.executor
    return {"backend": ex.backend, "n_jobs": ex.n_jobs, "address": ex.address, "batch_size": ex.batch_size,
            "connect_timeout": ex.connect_timeout}
