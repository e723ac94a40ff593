"""One row per project of a folder of projects (`subsetctl ls sweep`), read-only.

A researcher keeps many copies of a project side by side (``sweep/v0`` ... ``sweep/v19``:
strategies, ``d``, lambda, seeds); this says of each, without loading a model, whether its
results are the spec's, what it picked and how the pick scored. Each row comes from what
`report` reads (:func:`~subsetctl.report.terminal.load_report_data`: the stage manifests and
report.json, checked against the spec as `plan` checks it), so it is current during a run too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from subsetctl.errors import UserError
from subsetctl.project import SPEC_FILENAME, projects_below

#: the version of each object `ls FOLDER --format json` prints (its ``json_format``): raised
#: whenever a subsetctl removes or renames one of its keys or changes what one means.
#: 1: the first numbered
OVERVIEW_JSON_FORMAT = 1


def holds_projects(folder: Path | None) -> bool:
    """Whether ``folder`` is no project itself but has project folders right inside it
    (:func:`~subsetctl.project.projects_below`): `ls` of it lists them, not the registries."""
    return (folder is not None and folder.is_dir() and not (folder / SPEC_FILENAME).exists()
            and bool(projects_below(folder)))


def _natural_key(path: Path) -> list[Any]:
    """``v2`` before ``v10``, as a sweep's variants are numbered (a plain sort put v10 first)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def overview_rows(folder: Path, *, import_plugins: bool = True) -> list[dict[str, Any]]:
    """One row per project right inside ``folder``, in natural order of their names (see
    :func:`project_row`). ``import_plugins=False`` (``--no-plugins``): no spec's plugins are
    imported; a stage that needs one is not checked."""
    return [project_row(path, import_plugins=import_plugins)
            for path in sorted(projects_below(folder), key=_natural_key)]


def project_row(path: Path, *, import_plugins: bool = True) -> dict[str, Any]:
    """What `ls FOLDER` says of one project: ``state`` ("up to date"; "stale", with the stages
    ``stale`` that `run` would redo; "partial", with ``not_run`` the stages `run --until` left
    out; "not run"; "running", with the ``running`` stage; "error", with ``error`` the one-line
    reason: a spec that cannot be read, whose results are still shown), the ``final`` pick and
    its ``sources``, its ``test_loss`` and ``score`` (of ``metric``, the mean over fine-tune
    seeds), the command-line ``overrides`` its results were made with (each with the stages
    that read it, as report.json's) and ``last_run``, the latest stage's ``written_at``."""
    from subsetctl.plugin_loading import plugins_not_imported
    from subsetctl.report.terminal import load_report_data

    row: dict[str, Any] = {"json_format": OVERVIEW_JSON_FORMAT, "project": path.name, "path": str(path),
                           "state": "not run", "stale": [], "not_run": [], "running": None, "final": None,
                           "sources": None, "metric": None, "test_loss": None, "score": None, "overrides": {},
                           "last_run": None, "error": None}
    try:
        with plugins_not_imported(not import_plugins):
            data = load_report_data(path, nothing_run_ok=True)
    except (UserError, OSError) as exc:  # one project's problem is its row's, not the table's
        return {**row, "state": "error", "error": _one_line(exc)}
    stages = data["stages"]
    written = [entry["written_at"] for entry in stages.values() if entry.get("written_at")]
    row["last_run"] = max(written) if written else None
    row.update(_pick(data.get("report") or {}))
    # every stage `run` would redo: results the spec moved past, out of date, damaged, stopped partway,
    # a deleted output, or set aside for previous results it would put back
    redo = {*data["stale"], *data["outdated"], *data["damaged"], *data["unfinished"], *data["missing_outputs"],
            *data["previous"]}
    row["stale"] = [name for name in _stage_order() if name in redo]
    row["not_run"] = [name for name in data["not_run"] if name not in redo]
    if data.get("running"):
        row.update(state="running", running=data["running"].get("stage"))
    elif data.get("spec_problem"):
        row.update(state="error", error=data["spec_problem"])
    elif not stages:
        row["state"] = "not run"
    elif row["stale"]:
        row["state"] = "stale"
    elif row["not_run"]:
        row["state"] = "partial"
    else:
        row["state"] = "up to date"
    return row


def _stage_order() -> list[str]:
    from subsetctl.stages import stage_names

    return list(stage_names())


def _one_line(exc: BaseException) -> str:
    """An error's first line, which names the file and the problem (an invalid spec's goes
    on with one line per problem: `validate` lists them)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _pick(report: dict[str, Any]) -> dict[str, Any]:
    """The final pick of a report (report.json's content), its sources, test figures and the
    overrides its results were made with; empty where the report lacks them (no search yet)."""
    final = report.get("final")
    if not final:
        return {}
    chosen = {**(report.get("baselines") or {}), **(report.get("strategies") or {})}.get(final) or {}
    test = (report.get("test_metrics") or {}).get(final) or {}  # {} without evaluate
    return {"final": final, "sources": chosen.get("selected"), "metric": test.get("metric"),
            "test_loss": test.get("loss_mean"), "score": test.get("score_mean"),
            "overrides": report.get("overrides") or {}}


def state_cell(row: dict[str, Any]) -> str:
    """The state as the table shows it: "stale: search, finetune", "running: finetune"."""
    if row["state"] == "stale":
        return f"stale: {', '.join(row['stale'])}"
    if row["state"] == "partial":
        return f"partial: {', '.join(row['not_run'])} not run"
    if row["state"] == "running":
        return f"running now: {row['running']}" if row["running"] else "running now"
    if row["state"] == "error":
        return f"error: {row['error']}"
    return row["state"]


def print_overview(rows: list[dict[str, Any]], folder: Path, console: Any) -> None:
    """The rows as one table, a project a line; the reasons of the projects in error under
    it, one a line (a spec error's text names its file and line: too long for a cell)."""
    from rich.markup import escape
    from rich.table import Table

    from subsetctl.report.cells import fmt, loss_cell

    metrics = {row["metric"] for row in rows if row["metric"]}
    one_metric = next(iter(metrics)) if len(metrics) == 1 else None  # named once, in the heading
    heading = f"projects in {folder}" + (f" (score: {one_metric})" if one_metric else "")
    table = Table(title=heading, title_justify="left")
    widths = {"project": 6, "state": 12, "final pick": 10, "overrides": 9, "last run": 10}  # (80 columns folded
    for name in ("project", "state", "final pick", "sources", "test loss", "score", "overrides", "last run"):  # each to a letter a line)
        numbers = name in ("sources", "test loss", "score")
        table.add_column(name, justify="right" if numbers else "left", overflow="fold", no_wrap=numbers,
                         min_width=widths.get(name))
    for row in rows:
        state = escape(state_cell(row) if row["state"] != "error" else "error (below)")
        if row["state"] != "up to date":
            state = f"[{'red' if row['state'] == 'error' else 'yellow'}]{state}[/]"
        score = fmt(row["score"], 3) + (f" {row['metric']}" if row["metric"] and not one_metric else "")
        table.add_row(escape(row["project"]), state, escape(row["final"] or "–"),
                      "–" if row["sources"] is None else str(len(row["sources"])), loss_cell(row["test_loss"]),
                      escape(score), escape("; ".join(row["overrides"])) or "–",
                      (row["last_run"] or "–")[:16].replace("T", " "))  # to the minute: its time zone is the run's
    console.print(table)
    for row in rows:
        if row["state"] == "error":
            console.print(f"{row['project']}: {row['error']}", markup=False, highlight=False)
