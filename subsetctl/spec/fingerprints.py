"""The spec as stages' fingerprints and cache keys see it: result-neutral settings
(:data:`RESULT_NEUTRAL`) at their defaults, so changing them recomputes nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from subsetctl.spec.models import EvaluateSpec, ModelSpec, Spec

#: Settings that change how a stage runs but not what it produces: fingerprints and cache
#: keys count them at their defaults, so changing one re-runs nothing. (At the default,
#: not left out, so projects computed before a setting was listed here stay up to date.)
RESULT_NEUTRAL: dict[str, tuple[str, ...]] = {
    # the projection is the same bit for bit under any budget (each unit of the matrix is
    # its own matmul, whatever a block holds)
    "gradients": ("memory_budget_mb",),
    # a resumable checkpoint's spacing: a resumed run reproduces an uninterrupted one
    "meta_init": ("checkpoint_every",),
    "finetune": ("checkpoint_every",),
}

#: Settings one kind of model ignores, counted at their defaults for it like
#: :data:`RESULT_NEUTRAL`: a causal LM has no classification head (``model.num_labels``),
#: a classifier generates nothing (``evaluate.max_new_tokens``).
KIND_NEUTRAL: dict[str, dict[str, tuple[str, ...]]] = {
    "causal-lm": {"model": ("num_labels",)},
    "classifier": {"evaluate": ("max_new_tokens",)},
}


def fingerprint_dump(spec: Spec) -> dict[str, Any]:
    """The spec as JSON for fingerprints and cache keys: the settings of
    :data:`RESULT_NEUTRAL` at their defaults, those of :data:`KIND_NEUTRAL` for the model's
    kind (``model.num_labels`` of a causal LM, which ignores it) too, and a ``gradients.seed`` written as the project seed's
    value as unset (it projects with the same matrix)."""
    from subsetctl.spec.dumps import spec_json

    return neutralized(spec_json(spec), spec.model.kind)


def neutralized(dumped: dict[str, Any], kind: str) -> dict[str, Any]:
    """A copy of (part of) a dumped spec with the :func:`fingerprint_dump` rules applied
    to the sections it holds (a stage's recorded spec slice, too)."""
    defaults = {section: model().model_dump(mode="json") for section, model in _SECTION_MODELS.items()}  # 256.0
    defaults["model"] = {"num_labels": ModelSpec.model_fields["num_labels"].default}
    defaults["evaluate"] = {"max_new_tokens": EvaluateSpec.model_fields["max_new_tokens"].default}
    return _without_default_seed(_with_neutral_settings(dumped, kind, defaults))


def _without_default_seed(dumped: dict[str, Any]) -> dict[str, Any]:
    """``dumped`` (a spec or a stage's slice of it) with ``gradients.seed`` as unset when it
    equals the project seed, the value it defaults to: writing it out re-ran the gradients
    stage (and everything after it) for the same projection."""
    project = dumped.get("project")
    project_seed = project.get("seed") if isinstance(project, dict) else dumped.get("project.seed")
    gradients = dumped.get("gradients")
    if project_seed is None or not isinstance(gradients, dict) or gradients.get("seed") != project_seed:
        return dumped
    return {**dumped, "gradients": {**gradients, "seed": None}}


def with_neutral_values_of(sliced: dict[str, Any], recorded: Any, kind: str) -> dict[str, Any]:
    """``sliced`` (a stage's raw spec slice) with the settings :func:`neutralized` resets
    taken from ``recorded`` (the slice a run recorded): equal to ``recorded`` when only
    those settings differ."""
    return _with_neutral_settings(sliced, kind, recorded) if isinstance(recorded, dict) else sliced


def _with_neutral_settings(dumped: dict[str, Any], kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``dumped`` whose result-neutral settings (:data:`RESULT_NEUTRAL`, and
    :data:`KIND_NEUTRAL` of the model's kind) are those ``values`` holds, section by section."""
    neutral = {**RESULT_NEUTRAL, **(KIND_NEUTRAL.get(kind, {}))}
    out = dict(dumped)
    for section, keys in neutral.items():
        if isinstance(out.get(section), dict) and isinstance(values.get(section), dict):
            out[section] = {**out[section], **{k: values[section][k] for k in keys if k in values[section]}}
    return out


#: the model class of each section :data:`RESULT_NEUTRAL` names, for its defaults
_SECTION_MODELS: dict[str, type[BaseModel]] = {
    section: Spec.model_fields[section].annotation for section in RESULT_NEUTRAL  # type: ignore[misc]
}
