"""The pipeline's stages, in order. Each module holds one stage and imports its heavy
dependencies (torch, transformers) inside ``run`` so that planning stays fast."""

from __future__ import annotations

from subsetctl.pipeline import Stage


def all_stages() -> list[Stage]:
    """Every stage, in execution order."""
    from subsetctl.stages.data import DataStage

    stages: list[Stage] = [DataStage()]
    try:
        from subsetctl.stages.later import later_stages
    except ImportError:  # pragma: no cover - while stages are being added
        return stages
    return stages + later_stages()
