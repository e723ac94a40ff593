"""The data stage: every source becomes a datasets.Dataset with common columns,
split deterministically into train/validation/test and saved in the project."""

from __future__ import annotations

from typing import Any

from subsetctl.pipeline import Stage, StageContext
from subsetctl.project import Project
from subsetctl.spec import Spec


class DataStage(Stage):
    name = "data"
    description = "load, shuffle and split the target and the sources"
    after = ()
    spec_keys = ("project.seed", "model.kind", "target", "sources", "plugins")

    def extra_inputs(self, spec: Spec, project: Project) -> dict[str, Any]:
        from subsetctl.data.fingerprint import source_fingerprint_inputs

        return {
            s.name: source_fingerprint_inputs(s, project.root) for s in [spec.target, *spec.sources]
        }

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.data.stage import run_data_stage

        sources = [ctx.spec.target, *ctx.spec.sources]
        with ctx.reporter.progress("data", total=len(sources)) as task:
            summary = run_data_stage(
                ctx.spec, ctx.spec_dir, ctx.out_dir, progress=lambda done, total: task.update(done)
            )
        for warning in summary.get("warnings", []):
            ctx.reporter.warn(warning)
        return summary
