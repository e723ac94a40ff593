"""The pipeline's stages, in order. Each module holds one stage and imports its heavy
dependencies (torch, transformers) inside ``run`` so that planning stays fast."""

from __future__ import annotations

from subsetctl.pipeline import Stage


def all_stages() -> list[Stage]:
    """Every stage, in execution order."""
    from subsetctl.stages.calibrate import CalibrateStage
    from subsetctl.stages.data import DataStage
    from subsetctl.stages.evaluate import EvaluateStage
    from subsetctl.stages.finetune import FinetuneStage
    from subsetctl.stages.gradients import GradientsStage
    from subsetctl.stages.meta_init import MetaInitStage
    from subsetctl.stages.report import ReportStage
    from subsetctl.stages.search import SearchStage
    from subsetctl.stages.verify import VerifyStage

    return [
        DataStage(),
        MetaInitStage(),
        GradientsStage(),
        VerifyStage(),
        CalibrateStage(),
        SearchStage(),
        FinetuneStage(),
        EvaluateStage(),
        ReportStage(),
    ]


def stage_names() -> list[str]:
    """The stages' names in execution order (what reports list them by)."""
    return [stage.name for stage in all_stages()]
