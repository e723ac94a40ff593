"""The report stage: report.json, report.md and PNG plots in the project directory."""

from __future__ import annotations

from typing import Any

from subsetctl.pipeline import Stage, StageContext
from subsetctl.project import Project, atomic_write_json, atomic_write_text


class ReportStage(Stage):
    name = "report"
    description = "write report.md, report.json and plots"
    after = ("search", "calibrate", "evaluate")
    spec_keys = ("project.name", "report")

    def missing_outputs(self, project: Project, manifest: dict[str, Any]) -> list[str]:
        """report.md, report.json and the plots the last run wrote, if deleted since."""
        written = ["report.md", "report.json", *manifest.get("summary", {}).get("plots", [])]
        return [name for name in written if not (project.root / name).is_file()]

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from subsetctl.report import plots
        from subsetctl.report.build import build_report, outdated_stages
        from subsetctl.report.markdown import render_markdown

        # results an upstream change made outdated (finetune switched off after a new search,
        # `run --until search`) are left out, as `subsetctl report` leaves them out
        outdated = set(outdated_stages(ctx.project))
        report = build_report(ctx.project, skip=outdated, name=ctx.spec.project.name)
        if outdated:
            report["left_out"] = sorted(outdated)
        written: dict[str, str] = {}
        if ctx.spec.report.plots:
            folder = ctx.project.inside(ctx.project.root / "plots")
            folder.mkdir(exist_ok=True)
            for title, name, fn in (
                ("per-source scores", "source_scores.png", plots.source_scores),
                ("estimated vs. true", "estimated_vs_true.png", plots.estimated_vs_true),
                ("test metric by selection", "test_metric.png", plots.test_metric),
            ):
                if fn(report, folder / name):
                    written[title] = f"plots/{name}"
        atomic_write_json(ctx.project.root / "report.json", report)
        atomic_write_text(ctx.project.root / "report.md", render_markdown(report, written))
        atomic_write_json(ctx.out_dir / "report.json", report)
        return {"plots": list(written.values())}
