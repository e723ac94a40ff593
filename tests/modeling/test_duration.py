"""`plan`'s rough duration of a training stage before its first run, from the spec and the
model's size (read without loading it)."""

from __future__ import annotations

from pathlib import Path

import yaml

from subsetctl.modeling.duration import rough_seconds
from subsetctl.spec import Spec

#: the packaged SmolLM2-135M-Instruct's parameters (its safetensors headers)
SMOLLM2_PARAMS = 134_515_008


def test_the_rough_time_meets_the_quickstarts_measured_stages() -> None:
    """Calibrated on README's measured quickstart (meta-init 40 s; 4 distinct fine-tunes
    89 s) and the tiny model's fixed times: within a fifth of those."""
    spec = Spec.model_validate(yaml.safe_load(
        (Path(__file__).parents[2] / "examples" / "quickstart" / "subsetctl.yaml").read_text()))
    assert abs(rough_seconds("meta_init", spec, SMOLLM2_PARAMS) - 40) < 8
    # the spec's 3 strategies and 2 baselines picked 4 distinct subsets: as many fine-tunes
    four = spec.model_copy(update={"finetune": spec.finetune.model_copy(update={"baselines": ["all"]})})
    assert abs(rough_seconds("finetune", four, SMOLLM2_PARAMS) - 89) < 18
    # it grows with the steps, rows and model; stages that depend on the data's rows are not estimated
    longer = spec.model_copy(update={"meta_init": spec.meta_init.model_copy(update={"steps": 300})})
    assert rough_seconds("meta_init", longer, SMOLLM2_PARAMS) > 7 * rough_seconds("meta_init", spec, SMOLLM2_PARAMS)
    assert rough_seconds("gradients", spec, SMOLLM2_PARAMS) is None


def test_plan_gives_a_training_stage_never_run_a_rough_time(tiny_project: Path) -> None:
    """plan said a stage's time only from its last run: before a first run, nothing, though
    meta-init and the fine-tunes can take hours. It gives a rough time, saying it is rough
    and what it assumes."""
    from subsetctl.api import plan_project

    _, _, statuses = plan_project(tiny_project)
    by_stage = {s.name: s.to_dict() for s in statuses}
    for stage in ("meta_init", "finetune"):
        assert by_stage[stage]["last_seconds"] is None and by_stage[stage]["rough_seconds"] > 0
        assert by_stage[stage]["rough"].startswith("a rough guess before its first run: it assumes rows filling "
                                                   "model.max_length and 2 free CPU cores")
    assert by_stage["gradients"]["rough_seconds"] is None and by_stage["data"]["rough"] is None
