"""One row per project of a folder of projects (`subsetctl ls sweep`), read-only.

A researcher keeps many copies of a project side by side (``sweep/v0`` ... ``sweep/v19``:
strategies, ``d``, lambda, seeds); this says of each, without loading a model, whether its
results are the spec's, what it picked and how the pick scored. Each row comes from what
`report` reads (:func:`~subsetctl.report.terminal.load_report_data`: the stage manifests and
report.json, checked against the spec as `plan` checks it), so it is current during a run too.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from pathlib import Path
from typing import Any

from subsetctl.errors import UserError
from subsetctl.project import SPEC_FILENAME, projects_below

#: the entries of a folder (and of each subfolder) `ls FOLDER` looks at, as
#: :func:`~subsetctl.project.projects_below` does (a home folder may hold thousands)
LOOKED_AT = 500

#: the version of each object `ls FOLDER --format json` prints (its ``json_format``): raised
#: whenever a subsetctl removes or renames one of its keys or changes what one means.
#: 1: the first numbered
OVERVIEW_JSON_FORMAT = 1


def holds_projects(folder: Path | None, *, nested: bool = True) -> bool:
    """Whether ``folder`` is no project itself but has project folders inside it, right there
    or (``nested``) one level deeper (:func:`sweep_projects`): `ls` of it lists them, not the
    registries. `ls` with no folder asks for projects right inside the current one: a checkout
    of subsetctl (examples/quickstart) or a home folder (code/myproject) is no sweep."""
    if folder is None or not folder.is_dir() or (folder / SPEC_FILENAME).exists():
        return False
    return bool(sweep_projects(folder)[0] if nested else projects_below(folder, LOOKED_AT))


def sweep_projects(folder: Path, looked_at: int | None = None) -> tuple[list[Path], int]:
    """The project folders of a sweep's ``folder``: those right inside it and, for a subfolder
    that is no project, those right inside that (``sweep/lam0.1/seed0``: a nested sweep was
    not found), in natural order of their paths; and how many entries were not looked at, the
    first ``looked_at`` (:data:`LOOKED_AT`) of each folder being (a folder of thousands listed
    some silently)."""
    looked_at = looked_at or LOOKED_AT
    found: list[Path] = []
    skipped = 0
    entries, skipped = _first_entries(folder, looked_at)
    for entry in entries:
        with contextlib.suppress(OSError):
            if (entry / SPEC_FILENAME).is_file():
                found.append(entry)
            elif entry.is_dir() and (inside := projects_below(entry, looked_at)):
                found += inside
                skipped += _entries_after(entry, looked_at)
    return sorted(found, key=lambda path: _natural_key(path.relative_to(folder))), skipped


def _first_entries(folder: Path, looked_at: int) -> tuple[list[Path], int]:
    """The first ``looked_at`` entries of ``folder`` (none of an unreadable one) and how many
    come after them (:func:`_entries_after`), from one listing of it."""
    first: list[Path] = []
    with contextlib.suppress(OSError):
        entries = folder.iterdir()
        first = list(itertools.islice(entries, looked_at))
        return first, sum(1 for _ in entries)
    return first, 0


def _entries_after(folder: Path, looked_at: int) -> int:
    """How many entries of ``folder`` come after its first ``looked_at`` (names only: no stat)."""
    with contextlib.suppress(OSError):
        return sum(1 for _ in itertools.islice(folder.iterdir(), looked_at, None))
    return 0


def _natural_key(path: Path) -> list[Any]:
    """``v2`` before ``v10``, as a sweep's variants are numbered (a plain sort put v10 first);
    a nested path part by part (``lam0.1/seed2`` before ``lam0.1/seed10``)."""
    return [[int(piece) if piece.isdigit() else piece for piece in re.split(r"(\d+)", part)] for part in path.parts]


def overview_rows(folder: Path, *, import_plugins: bool = True) -> tuple[list[dict[str, Any]], int]:
    """One row per project of ``folder`` (:func:`sweep_projects`), its ``project`` the path
    relative to ``folder`` (see :func:`project_row`), and how many entries were not looked at.
    ``import_plugins=False`` (``--no-plugins``): no spec's plugins are imported; a stage that
    needs one is not checked."""
    paths, skipped = sweep_projects(folder)
    rows = [project_row(path, import_plugins=import_plugins) for path in paths]
    for row, path in zip(rows, paths, strict=True):
        row["project"] = path.relative_to(folder).as_posix()
    return rows, skipped


def project_row(path: Path, *, import_plugins: bool = True) -> dict[str, Any]:
    """What `ls FOLDER` says of one project: ``state`` ("up to date"; "stale", with the stages
    ``stale`` that `run` would redo; "partial", with ``not_run`` the stages `run --until` left
    out; "not run"; "running", with the ``running`` stage; "error", with ``error`` the one-line
    reason: a spec that cannot be read, whose results are still shown), the ``final`` pick and
    its ``sources`` (the last finished report's while a run redoes a stage before them), its
    ``test_loss`` and ``score`` (of ``metric``, the mean over fine-tune seeds; ``diverged``: true
    where one of its fine-tunes diverged, so that they are not a finished fine-tune's; None,
    unknown, where there is no test loss (no final pick, or one not evaluated yet) and for a
    report.json before format 19, which did not record it), the command-line ``overrides`` its
    results were made with (each with the stages that read it, as report.json's) and
    ``last_run``, the latest stage's ``written_at``."""
    from subsetctl.plugin_loading import plugins_not_imported
    from subsetctl.report.terminal import report_data_and_plan

    row: dict[str, Any] = {"json_format": OVERVIEW_JSON_FORMAT, "project": path.name, "path": str(path),
                           "state": "not run", "stale": [], "not_run": [], "running": None, "final": None,
                           "sources": None, "metric": None, "test_loss": None, "score": None,
                           "diverged": None, "overrides": {}, "last_run": None, "error": None}
    try:
        with plugins_not_imported(not import_plugins):
            data, statuses = report_data_and_plan(path, nothing_run_ok=True)
    except (UserError, OSError) as exc:  # one project's problem is its row's, not the table's
        return {**row, "state": "error", "error": _one_line(exc)}
    stages = data["stages"]
    written = [entry["written_at"] for entry in stages.values() if entry.get("written_at")]
    row["last_run"] = max(written) if written else None
    # a stage rerun (by `run` now, or stopped) leaves the stages after it without current results: the
    # figures of the last report the project finished, as the state says how current they are
    row.update(_pick(data.get("report") or {}) or _pick(_last_finished_report(path)))
    # every stage `run` would redo: results the spec moved past, out of date, damaged, stopped partway,
    # a deleted output, or set aside for previous results it would put back; and the report where only its
    # own text is outdated (an earlier subsetctl wrote it, or it names overrides the spec file holds since):
    # `report` shows it as this subsetctl writes it, so its "stale" leaves it out, but `plan` lists it and
    # `run` writes it again ("up to date" here contradicted both). The stages after a damaged one (or one
    # stopped partway, or with an output deleted), which `report`'s "stale" leaves out as their results
    # still hold, are the plan's to say: `run` redoes them too (the row said "stale: search" alone)
    rewritten = data["report_by_earlier_subsetctl"] or data["report_names_overrides_since_held"]
    planned = [status.name for status in statuses if status.will_run and status.name not in data["not_run"]]
    redo = {*data["stale"], *data["outdated"], *data["damaged"], *data["unfinished"], *data["missing_outputs"],
            *data["previous"], *(["report"] if rewritten else []), *planned}
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


def _last_finished_report(path: Path) -> dict[str, Any]:
    """The report.json the report stage last finished (in its folder, or set aside while a
    run redoes the stages before it), so a project being run shows the figures it had, not
    "–" until its run ends; {} where there is none or it cannot be read."""
    from subsetctl.project import Project

    with contextlib.suppress(OSError, ValueError, UserError):
        project = Project(path)
        if project.read_results_manifest("report"):
            report = json.loads((project.results_dir("report") / "report.json").read_text(encoding="utf-8"))
            return report if isinstance(report, dict) else {}
    return {}


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
    overrides its results were made with; empty where the report lacks them (no search yet).
    ``diverged`` is :func:`~subsetctl.report.cells.diverged_recorded`'s (None where the report
    predates the record), and None where the pick has no test loss (not evaluated yet): no
    fine-tune of it is known to have finished, diverged or not."""
    from subsetctl.report.cells import diverged_recorded

    final = report.get("final")
    if not final:
        return {}
    chosen = {**(report.get("baselines") or {}), **(report.get("strategies") or {})}.get(final) or {}
    test = (report.get("test_metrics") or {}).get(final) or {}  # {} without evaluate
    return {"final": final, "sources": chosen.get("selected"), "metric": test.get("metric"),
            "test_loss": test.get("loss_mean"), "score": test.get("score_mean"),
            "diverged": diverged_recorded(report, final) if test.get("loss_mean") is not None else None,
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


#: `ls`'s table's columns, in order
_COLUMNS = ("project", "state", "final pick", "sources", "test loss", "score", "overrides", "last run")
#: the columns left out, in this order, where the project names would not fit whole beside them
_LEFT_OUT_FIRST = ("last run", "sources", "overrides")
#: the least the text columns beside the project's fold to (mid-word) where, even with the
#: columns of :data:`_LEFT_OUT_FIRST` left out, the project names do not fit whole beside
#: their words; the numbers' columns do not fold
_LEAST = {"state": 6, "final pick": 6, "overrides": 4, "last run": 5}


def _longest_word(texts: list[str]) -> int:
    """The widest word of ``texts`` (split at whitespace, where rich folds a cell's lines:
    "stale: search, finetune" at "search,"), in terminal cells."""
    from rich.cells import cell_len

    return max((cell_len(word) for text in texts for word in text.split()), default=1)


def _table_layout(cells: dict[str, list[str]], width: int) -> tuple[list[str], dict[str, int]]:
    """The columns of `ls`'s table on a terminal ``width`` wide, and each one's width, from
    the text of their cells (``cells``: a column's, as shown, its header aside): the project
    column as wide as its longest name (how a project is told apart; a sweep's variants have
    long ones), every other column at least as wide as its widest word, header's included
    ("gradient_similarity", "2026-12-05", "finetune.steps=5": folded only between words), and
    the room left given to them up to their longest line, those needing least first (a
    column whole on one line for each). Where the names and those words do not fit, the
    columns of :data:`_LEFT_OUT_FIRST` are left out, one at a time; then the widest text
    columns fold mid-word (to :data:`_LEAST`), and last the names. Folding at a fixed least
    width broke words mid-word at 80 columns ("gradien/t_simil/arity", "overri/des",
    "2026-12/-05") even beside short names."""
    from rich.cells import cell_len

    least = {name: max(_longest_word([name]), _longest_word(cells[name])) for name in _COLUMNS}
    least["project"] = max(map(cell_len, ["project", *cells["project"]]))
    longest = {name: max(map(cell_len, [name, *cells[name]])) for name in _COLUMNS}
    columns = list(_COLUMNS)

    def room() -> int:  # (3 a column of borders and padding, and the last border)
        return width - 3 * len(columns) - 1

    for column in _LEFT_OUT_FIRST:
        if sum(least[c] for c in columns) <= room():
            break
        columns.remove(column)
    widths = {name: least[name] for name in columns}
    while sum(widths.values()) > room():  # names whole: the widest text column narrower, to its least
        wide = max((c for c in columns if widths[c] > _LEAST.get(c, widths[c])), key=widths.__getitem__, default=None)
        if wide is None:
            break
        widths[wide] = max(_LEAST[wide], widths[wide] - (sum(widths.values()) - room()))
    beside = sum(widths[c] for c in columns if c != "project")
    widths["project"] = max(len("project"), min(widths["project"], room() - beside))
    spare = room() - sum(widths.values())
    for name in sorted(columns, key=lambda c: longest[c] - widths[c]):  # (sorted is stable: else in order)
        more = max(0, min(spare, longest[name] - widths[name]))
        widths[name] += more
        spare -= more
    return columns, widths


def _left_out_note(cells: dict[str, list[str]], columns: list[str], width: int) -> str:
    """The line under `ls`'s table naming the columns :func:`_table_layout` left out
    (``columns``: those it kept), by why: the project names (short names would have left room
    for them), the other columns' words alone (names as short as "project" would not), or
    both; "" when none is. It said "for the project names" beside names of two letters."""
    left_out = [name for name in _COLUMNS if name not in columns]
    if not left_out:
        return ""
    short_names, _ = _table_layout({**cells, "project": []}, width)  # (the project column as wide as its header)
    by_words = [name for name in left_out if name not in short_names]
    if not by_words:
        why = "for the project names to fit whole beside the other columns"
    elif by_words == left_out:
        why = "for the columns to fit with their words whole"
    else:
        why = "for the project names and the columns' words to fit whole"
    return (f"(Left out {why} in {width} terminal columns: {', '.join(left_out)}; a wider terminal, or "
            "`--format json`, gives them.)")


def _running_figures_note(rows: list[dict[str, Any]]) -> str:
    """The line under `ls`'s table saying that a project a `run` works on now shows the pick
    and figures of its last finished run, not of the run in progress (a "running now" row
    beside a pick and a test loss read as that run's); "" where no such row shows a pick."""
    running = [row["project"] for row in rows if row["state"] == "running" and row["final"]]
    if not running:
        return ""
    if len(running) == 1:
        return (f"({running[0]} is running now: its final pick, test loss and score are those of its last finished "
                "run, not of the run in progress, which replaces them when its report stage finishes.)")
    return (f"({', '.join(running)} are running now: their final picks, test losses and scores are those of their "
            "last finished runs, not of the runs in progress, which replace them when their report stages finish.)")


def print_overview(rows: list[dict[str, Any]], folder: Path, console: Any, skipped: int = 0) -> None:
    """The rows as one table, a project a line; the reasons of the projects in error under
    it, one a line (a spec error's text names its file and line: too long for a cell); then
    how many entries were not looked at (``skipped``), if any."""
    from rich.markup import escape
    from rich.table import Table

    from subsetctl.report.cells import DIVERGED_MARK, diverged_unrecorded_line, fmt, loss_cell

    metrics = {row["metric"] for row in rows if row["metric"]}
    one_metric = next(iter(metrics)) if len(metrics) == 1 else None  # named once, in the heading
    heading = f"projects in {folder}" + (f" (score: {one_metric})" if one_metric else "")
    table = Table(title=heading, title_justify="left")
    numbers = {"sources": ["–" if row["sources"] is None else str(len(row["sources"])) for row in rows],
               "test loss": [loss_cell(row["test_loss"]) + (DIVERGED_MARK if row.get("diverged") else "")
                             for row in rows],
               "score": [fmt(row["score"], 3) + (f" {row['metric']}" if row["metric"] and not one_metric else "")
                         for row in rows]}
    texts = {"project": [row["project"] for row in rows],
             "state": [state_cell(row) if row["state"] != "error" else "error (below)" for row in rows],
             "final pick": [row["final"] or "–" for row in rows], **numbers,
             "overrides": ["; ".join(row["overrides"]) or "–" for row in rows],
             "last run": [(row["last_run"] or "–")[:16].replace("T", " ") for row in rows]}  # to the minute: its time zone is the run's
    columns, widths = _table_layout(texts, console.width)
    for name in columns:  # (each a fixed width: rich narrows the widest column first, mid-word)
        table.add_column(name, justify="right" if name in numbers else "left", overflow="fold", width=widths[name])
    for i, row in enumerate(rows):
        cells = {name: escape(texts[name][i]) for name in columns}
        if row["state"] != "up to date":
            cells["state"] = f"[{'red' if row['state'] == 'error' else 'yellow'}]{cells['state']}[/]"
        table.add_row(*(cells[name] for name in columns))
    console.print(table)
    if note := _left_out_note(texts, columns, console.width):
        console.print(note, markup=False, highlight=False, soft_wrap=False)  # (folded at the width, as the table)
    if note := _running_figures_note(rows):
        console.print(note, markup=False, highlight=False)
    if any(row.get("diverged") for row in rows):
        console.print(f"{DIVERGED_MARK.strip()}: a fine-tune of the final pick diverged (the loss or an update became "
                      "NaN or infinite), so its test loss and score are not those of a finished fine-tune; "
                      "`subsetctl report DIR` names its seeds.", markup=False, highlight=False)
    unknown = [row["project"] for row in rows if row.get("diverged") is None and row["test_loss"] is not None]
    if unknown:  # (shown from a report.json of an earlier subsetctl: the project's report is stale for more)
        console.print(diverged_unrecorded_line(" and ".join(f"{name}'s" for name in unknown), len(unknown) == 1,
                                               "`subsetctl report DIR`"), markup=False, highlight=False)
    for row in rows:
        if row["state"] == "error":
            console.print(f"{row['project']}: {row['error']}", markup=False, highlight=False)
    if skipped:
        console.print(f"{skipped} more entr{'y' if skipped == 1 else 'ies'} of {folder} (or of its subfolders) not looked "
                      f"at: only the first {LOOKED_AT} of each folder are; list a subfolder of it to see its projects.",
                      markup=False, highlight=False)
