"""Render what a project's stages produced, read-only (works during a run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from subsetctl.errors import UserError
from subsetctl.project import Project


def load_report_data(root: Path) -> dict[str, Any]:
    """Everything the report shows, from the stage manifests (nothing is recomputed)."""
    from subsetctl.stages import stage_names

    project = Project(root)
    stages: dict[str, Any] = {}
    for name in stage_names():  # in execution order
        manifest = project.read_manifest(name)
        if manifest and not manifest.get("corrupt"):
            stages[name] = {
                "seconds": manifest.get("seconds"),
                "summary": manifest.get("summary", {}),
                "written_at": manifest.get("written_at"),
            }
    if not stages:
        raise UserError(
            f"Nothing to report in {root}: no stage has finished yet. Run `subsetctl run {root}` first "
            f"(`subsetctl plan {root}` shows what it would do)."
        )
    from subsetctl.report.build import build_report, outdated_stages

    outdated = outdated_stages(project)
    data: dict[str, Any] = {"project": str(root), "stages": stages, "outdated": outdated}
    report_json = root / "report.json"
    if report_json.is_file() and "report" in stages and "report" not in outdated:
        try:
            data["report"] = json.loads(report_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            pass
    if "report" not in data:  # no current report stage (e.g. `run --until calibrate`): from the stages
        data["report"] = build_report(project, skip=set(outdated))
    return data


def outdated_note(data: dict[str, Any]) -> str | None:
    """One line saying which stages' results are left out as outdated, and what to do."""
    shown = [s for s in data.get("outdated", []) if s != "report"]
    if not shown:
        return None
    return (f"Not shown: the results of {', '.join(shown)}, from an earlier run (an upstream stage changed "
            f"since). `subsetctl run {data['project']}` brings them up to date.")


def render_report(root: Path, console: Any, all_sources: bool = False) -> None:
    """Print the report; the full results tables come from report.json when present.
    ``all_sources`` lists every source instead of the highest and lowest scoring ones."""
    from rich.table import Table

    data = load_report_data(root)
    full = data.get("report")
    if full:
        from subsetctl.report.render import render_full_report

        render_full_report(full, console, all_sources=all_sources)
    note = outdated_note(data)
    if note:
        from rich.markup import escape

        console.print(f"[yellow]{escape(note)}[/yellow]")
    table = Table(title="stages", title_justify="left")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("finished")
    for name, info in data["stages"].items():
        table.add_row(name, f"{info['seconds']:.1f}" if info["seconds"] is not None else "-", str(info["written_at"]))
    console.print(table)
