"""The stages after data, in order (kept apart so each stage stays in its own module)."""

from __future__ import annotations

from subsetctl.pipeline import Stage


def later_stages() -> list[Stage]:
    from subsetctl.stages.calibrate import CalibrateStage
    from subsetctl.stages.evaluate import EvaluateStage
    from subsetctl.stages.finetune import FinetuneStage
    from subsetctl.stages.gradients import GradientsStage
    from subsetctl.stages.meta_init import MetaInitStage
    from subsetctl.stages.report import ReportStage
    from subsetctl.stages.search import SearchStage
    from subsetctl.stages.verify import VerifyStage

    return [
        MetaInitStage(),
        GradientsStage(),
        VerifyStage(),
        CalibrateStage(),
        SearchStage(),
        FinetuneStage(),
        EvaluateStage(),
        ReportStage(),
    ]
