"""Render what a project's stages produced, read-only (works during a run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subsetctl.errors import UserError, shell_arg
from subsetctl.project import Project, manifests_read_once
from subsetctl.spec.dumps import dumps_once

if TYPE_CHECKING:
    from subsetctl.pipeline import StageStatus

#: the version of what :func:`load_report_data` returns, which `report --format json` and `run
#: --format json` print (its top-level ``json_format``): raised whenever a subsetctl removes or
#: renames one of its keys or changes what one means, not when it adds one. report.json's own
#: content, under ``report``, has its own number (:data:`~subsetctl.report.build.REPORT_FORMAT`).
#: 1: the first numbered
REPORT_JSON_FORMAT = 1


def load_report_data(root: str | Path, overrides: list[str] | None = None, *, nothing_run_ok: bool = False) -> dict[str, Any]:
    """Everything the report shows, from the stage manifests (nothing is recomputed).

    A project no stage has finished in is a UserError saying to run it; with
    ``nothing_run_ok`` (`report --format json`, whose scripts need JSON to parse) it is the
    same keys with ``stages`` empty, ``report`` None and ``not_run`` the stages `run` would run.
    ``json_format`` numbers its keys (:data:`REPORT_JSON_FORMAT`).
    ``stale`` lists the stages whose shown results no longer match the spec (with
    ``overrides``, as a run with them would see it) or its input files: what `plan` says
    a run would redo, but of a damaged stage not the ones after it (:func:`report_data_and_plan`
    has them); ``spec_problem`` says why that could not be checked. ``root`` is
    found as the api's functions find a project: a str, ``~/q`` or its spec file will do,
    and a folder that is no project is a UserError saying so."""
    return report_data_and_plan(root, overrides, nothing_run_ok=nothing_run_ok)[0]


@manifests_read_once()  # its checks against the spec (a plan) and the report read each manifest once
@dumps_once()  # and dump each source once
def report_data_and_plan(root: str | Path, overrides: list[str] | None = None, *,
                         nothing_run_ok: bool = False) -> tuple[dict[str, Any], list[StageStatus]]:
    """:func:`load_report_data`'s data and the plan it checked the results with, each stage's
    status (none where the spec is invalid): which stages `run` would run (``will_run``) is
    the plan's, of a damaged stage the ones after it too, which the data's ``stale`` (the
    results a change moved past) leaves out; `ls` lists them as `plan` does."""
    from subsetctl.stages import stage_names

    project = Project.find(root)  # Project(root) took only a Path: a str from a notebook was a TypeError
    root = project.root
    stages: dict[str, Any] = {}
    for name in stage_names():  # in execution order; set-aside results while a run replacing them is unfinished
        manifest = project.read_results_manifest(name)
        if manifest and not manifest.get("corrupt"):
            stages[name] = {
                "seconds": manifest.get("seconds"),
                "summary": manifest.get("summary", {}),
                "written_at": manifest.get("written_at"),
            }
    if not stages and not nothing_run_ok:
        raise UserError(nothing_to_report(root))
    from subsetctl.report.build import (
        build_report,
        in_spec_order,
        mark_switched_off,
        outdated_stages,
        selection_order,
        switched_off_moved_past,
    )

    outdated = outdated_stages(project)
    data: dict[str, Any] = {"json_format": REPORT_JSON_FORMAT, "project": str(root), "stages": stages,
                            "outdated": outdated}
    checked = _checked_against_spec(root, overrides, stages)
    spec, statuses = checked.pop("spec"), checked.pop("statuses")
    checked["stale"] = [name for name in checked["stale"] if name not in outdated]
    checked["stale_reasons"] = {name: why for name, why in checked["stale_reasons"].items() if name in checked["stale"]}
    # switched off, with settings changed since their results: a run leaves them out of report.md (not
    # those a command-line override switched on: the overrides line says their results are not the spec's)
    checked["switched_off_moved_past"] = [
        name for name in (switched_off_moved_past(project, spec) if spec is not None else [])
        if not _switched_on_by_an_override(project, name)]
    name = checked.pop("name")
    data.update(checked)
    def switched_on_by_an_override(stage: str) -> bool:
        return _switched_on_by_an_override(project, stage)

    data["switched_off"] = mark_switched_off(stages, spec, unless=switched_on_by_an_override) if spec is not None else []
    running = project.run_in_progress()  # "unfinished" is the stage that run is computing now
    if running:
        stage = project.stage_in_progress(running)
        # the PID as a number a script can signal or poll (null when the lock file does not say)
        data["running"] = {"pid": int(running) if running.isdigit() else None, "stage": stage}
        data["unfinished"] = [name for name in data["unfinished"] if name != stage]
    if "gradients" in data["unfinished"]:  # shard runs hold the project lock shared, not as a `run`
        from subsetctl.stages.gradients import GradientsStage, running_shards

        if shards := running_shards(project):
            data["shards_running"] = shards
            data["unfinished"] = [name for name in data["unfinished"] if name != "gradients"]
        elif note := GradientsStage().unfinished_note(project, spec):  # shards done (or some): not a run stopped partway
            data["shards_state"] = note
            data["unfinished"] = [name for name in data["unfinished"] if name != "gradients"]
    # read from the report stage's own copy, checked against its manifest's checksums: the one in the
    # project folder is the user's (edited into another shape, it stopped `report` with an internal
    # error); deleted, the report stage is not current
    report_json = project.stage_dir("report") / "report.json"
    set_aside = [name for name in stages if project.results_dir(name) != project.stage_dir(name)]  # shown from .set-aside
    if ((root / "report.json").is_file() and report_json.is_file() and "report" in stages and "report" not in outdated
            and not data["damaged"] and not set_aside  # report.json names the stage folders (adapter paths)
            and not data["report_by_earlier_subsetctl"]  # (without what this one writes: built below)
            and not data["report_names_overrides_since_held"]):  # (with an overrides line no longer true)
        try:
            data["report"] = in_spec_order(json.loads(report_json.read_text(encoding="utf-8")))
        except json.JSONDecodeError:
            pass
    if not stages:  # nothing run yet (nothing_run_ok): no report to build
        data["report"] = None
    if "report" not in data:  # no current report stage (`run --until calibrate`, damaged state): from the stages
        data["report"] = build_report(project, skip=set(outdated) | set(data["damaged"]), name=name,
                                      order=selection_order(spec) if spec is not None else None, spec=spec)
        if spec is not None:  # its time table marks them as report.md's does
            mark_switched_off(data["report"]["stages"], spec, unless=switched_on_by_an_override)
    return data, statuses


def nothing_to_report(root: Path) -> str:
    """The error for a project no stage has finished in: what to run."""
    return (f"Nothing to report in {root}: no stage has finished yet. Run `subsetctl run {shell_arg(root)}` first "
            f"(`subsetctl plan {shell_arg(root)}` shows what it would do).")


def _switched_on_by_an_override(project: Project, stage: str) -> bool:
    """Whether the run that made ``stage``'s results switched it on on the command line
    (``verify.enabled=true``)."""
    from subsetctl.spec import overrides_under
    from subsetctl.stages import all_stages

    switch = next((s.switch for s in all_stages() if s.name == stage), None)
    overrides = (project.read_manifest(stage) or {}).get("overrides") or []
    # `verify.enabled=true`, or the whole section: `verify={enabled: true, k: 4}`
    return switch is not None and bool(overrides_under([str(o) for o in overrides], [switch]))


def _checked_against_spec(root: Path, overrides: list[str] | None, stages: dict[str, Any]) -> dict[str, Any]:
    """The same checks as `plan`, read-only: ``stale`` (stages with results whose spec
    slice or input files changed since, or downstream of such a change), ``damaged``
    (files failing their checksums, an unreadable manifest), ``not_run`` (`run --until`
    stopped before them), ``unfinished`` (a run stopped partway through them) and
    ``switched_off_moved_past``; ``name`` is the spec's project name. An invalid spec
    cannot be compared: ``spec_problem`` says why. ``spec`` is the spec and ``statuses``
    the plan's (None and none when invalid)."""
    from subsetctl.api import plan_project

    try:
        _, spec, statuses = plan_project(root, overrides)
    except UserError as exc:  # "<file> is not a valid spec:" then one line per problem: say the first
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        more = f" (and {len(lines) - 2} more; `subsetctl validate` lists them)" if len(lines) > 2 else ""
        return {"stale": [], "stale_reasons": {}, "previous": [], "missing_outputs": {}, "damaged": [], "not_run": [],
                "unfinished": [],
                "report_by_earlier_subsetctl": False, "report_names_overrides_since_held": False,
                "stale_by_earlier_subsetctl": False,
                "spec_problem": " ".join(lines[:2]) + more, "name": None,
                "spec": None, "statuses": []}
    from subsetctl.stages import all_stages

    after = {stage.name: stage.after for stage in all_stages()}
    # stale only because files it wrote were deleted since (report.md, a plot): nothing changed
    missing = {s.name: s.missing_outputs for s in statuses
               if s.state == "stale" and s.missing_outputs and len(s.reasons) == 1}  # that its only reason
    changed: set[str] = set()  # by the spec or input files, or downstream of such a change (not of damage)
    for s in statuses:
        if s.name in missing:
            continue
        if s.state == "stale" and s.for_time_table:  # (the report) after a change, not after damage alone
            if changed:
                changed.add(s.name)
        elif s.state == "stale" and (not s.conditional or any(up in changed for up in after.get(s.name, ()))):
            changed.add(s.name)
        elif s.state in ("never run", "unfinished") and s.name in stages:  # shown from results set aside
            changed.add(s.name)  # by a run with other inputs that has not finished

    from subsetctl.plan_reasons import said_of_another_subsetctl
    from subsetctl.project import Project
    from subsetctl.report.build import stale_only_for_its_format, stale_only_for_its_overrides_line

    report_status = next((s for s in statuses if s.name == "report"), None)
    earlier_format = ("report" in stages and "report" in changed and report_status is not None
                      and stale_only_for_its_format(Project(root), report_status.inputs))
    overrides_held = (not earlier_format and "report" in stages and "report" in changed and report_status is not None
                      and stale_only_for_its_overrides_line(Project(root), report_status.inputs))
    if earlier_format or overrides_held:  # only what the report itself says is outdated: not "the spec changed"
        changed.discard("report")
        if report_status.missing_outputs:  # and deleted since (its other reason): said as for any report
            missing["report"] = report_status.missing_outputs
    stale = [s.name for s in statuses if s.name in changed and s.name in stages]
    by_another = any(said_of_another_subsetctl(s.reasons) for s in statuses if s.name in stale)
    # up to date only once `run` swaps their previous results in: the results shown are of other inputs
    swapped = [s.name for s in statuses if s.put_back_from == "previous" and s.name in stages]
    return {"stale": stale, "stale_reasons": {s.name: list(s.reasons) for s in statuses if s.name in stale},
            "previous": swapped, "missing_outputs": missing,
            "damaged": [s.name for s in statuses if s.state == "corrupt"],
            "not_run": [s.name for s in statuses if s.state == "never run" and s.name not in stages],
            "unfinished": [s.name for s in statuses if s.state == "unfinished"],
            "report_by_earlier_subsetctl": earlier_format, "report_names_overrides_since_held": overrides_held,
            "stale_by_earlier_subsetctl": by_another,
            "spec_problem": None, "name": spec.project.name, "spec": spec, "statuses": statuses}


def _why_outdated(data: dict[str, Any], outdated: list[str]) -> str:
    """Why results are outdated: an upstream stage changed since, or (a run stopped partway
    or still running, e.g. after `run --force meta_init`) a stage they were made from is
    being computed again and has no results yet."""
    from subsetctl.stages import all_stages

    after = {stage.name: stage.after for stage in all_stages()}
    upstream: set[str] = set()  # every stage the outdated ones were made from, however far up
    todo = [up for name in outdated for up in after.get(name, ())]
    while todo:
        name = todo.pop()
        if name not in upstream:
            upstream.add(name)
            todo.extend(after.get(name, ()))
    running = (data.get("running") or {}).get("stage")
    again = [s for s in dict.fromkeys([*(data.get("unfinished") or []), *([running] if running else [])])
             if s in upstream and s not in outdated]
    if again:
        return (f"{', '.join(again)}, which they were made from, {'is' if len(again) == 1 else 'are'} being "
                "computed again")
    return "an upstream stage changed since"


def outdated_note(data: dict[str, Any], overrides: list[str] | None = None) -> str | None:
    """Lines saying which stages' results are left out as outdated, which shown results
    the spec has moved past, and what to do; None when the report is current. ``overrides``:
    those the results were checked against (`report DIR key=value`), which the commands it
    suggests (`run`, `plan`) then repeat: without them, they would run or plan another variant."""
    notes = []
    # as the commands suggested below take it, with the overrides after it
    folder = " ".join([shell_arg(data["project"]), *map(shell_arg, overrides or [])])
    shown = [s for s in data.get("outdated", []) if s != "report"]
    if shown:
        notes.append(f"Not shown: the results of {', '.join(shown)}, from an earlier run ({_why_outdated(data, shown)}). "
                     f"`subsetctl run {folder}` brings them up to date.")
    stale = data.get("stale") or []
    if stale:
        how = (", or this subsetctl reads them otherwise than the earlier one that made these results"
               if data.get("stale_by_earlier_subsetctl") else "")
        reasons = (data.get("stale_reasons") or {}).get(stale[0]) or []  # plan's words for the first
        why = "; ".join(reasons)
        plan = f"`subsetctl plan {folder}` says why{' of each' if len(stale) > 1 else ''}; "
        notes.append(f"The spec or its input files changed since these results{how}: {', '.join(stale)} would re-run"
                     + (f": {why} (" if why and len(stale) == 1 else f" ({stale[0]}: {why}; {plan}" if why
                        else f" ({plan}")
                     + "a run with key=value overrides counts as a change of the spec for the next run without them).")
    missing = data.get("missing_outputs") or {}
    # report.md or report.json deleted since: "Deleted since the last run" below says so, not that it was written
    kept = [f for f in ("report.md", "report.json") if f not in missing.get("report", [])]
    # a script reading report.json reads what is gone (missing_outputs is not checked for an outdated stage)
    written = [f for f in kept if (Path(data["project"]) / f).is_file()]
    if "report" in data.get("outdated", []) and written:
        one = len(written) == 1
        notes.append(f"{' and '.join(written)} {'is' if one else 'are'} of an earlier run: {'it' if one else 'they'} "
                     "still show" + ("s" if one else "") + " results that changed or were removed since, unlike "
                     f"this report. `subsetctl run {folder}` writes {'it' if one else 'them'} again.")
    if data.get("report_by_earlier_subsetctl") and kept:
        one = len(kept) == 1
        notes.append(f"{' and '.join(kept)} {'was' if one else 'were'} written by an earlier subsetctl, without what "
                     f"this one adds to {'it' if one else 'them'}; shown here as this one writes "
                     f"{'it' if one else 'them'}. `subsetctl run {folder}` writes {'it' if one else 'them'} again "
                     "(seconds; nothing else re-runs).")
    if data.get("report_names_overrides_since_held") and kept:
        one = len(kept) == 1
        notes.append(f"{' and '.join(kept)} still {'names' if one else 'name'} command-line overrides whose values "
                     f"the spec file holds now; shown here without them. `subsetctl run {folder}` writes "
                     f"{'it' if one else 'them'} again (nothing else re-runs).")
    files = [f for found in missing.values() for f in found]
    damaged_files = [f for f in files if (Path(data["project"]) / f).exists()]  # there, but not what was written
    deleted = [f for f in files if f not in damaged_files]
    if deleted:
        notes.append(f"Deleted since the last run: {', '.join(deleted)}. `subsetctl run {folder}` writes "
                     f"{'it' if len(deleted) == 1 else 'them'} again (nothing else changed).")
    if damaged_files:
        one = len(damaged_files) == 1
        notes.append(f"Damaged since the last run: {', '.join(damaged_files)} (not the report it wrote: cut short or "
                     f"edited); shown here rebuilt from the results. `subsetctl run {folder}` writes "
                     f"{'it' if one else 'them'} again (nothing else changed).")
    moved = data.get("switched_off_moved_past") or []
    if moved:
        one = len(moved) == 1
        notes.append(f"Switched off in the spec, with settings changed since their results: {', '.join(moved)}. "
                     f"`subsetctl run` does not update {'it' if one else 'them'}, and the report it writes leaves "
                     f"{'its' if one else 'their'} results (and what follows from them) out; switch "
                     f"{'it' if one else 'them'} back on to get new ones.")
    previous = data.get("previous") or []
    if previous:
        notes.append(f"The results shown for {', '.join(previous)} are of other inputs than the spec's: "
                     f"`subsetctl run {folder}` puts back the ones made with the spec's (kept as "
                     "previous results) without recomputing them.")
    not_run = data.get("not_run") or []
    if not_run:
        notes.append(f"Not run yet: {', '.join(not_run)}. `subsetctl run {folder}` runs "
                     f"{'it' if len(not_run) == 1 else 'them'}.")
    running = data.get("running")
    if running:
        at = f", computing {running['stage']}" if running.get("stage") else ""
        notes.append(f"A `subsetctl run` is in progress (PID {running.get('pid') or 'unknown'}{at}): the results "
                     "shown are those "
                     "finished so far; `subsetctl report` again once it is done.")
    shards = data.get("shards_running") or []
    if shards:
        notes.append(f"Gradient shard{'s' if len(shards) > 1 else ''} {', '.join(shards)} "
                     f"{'are' if len(shards) > 1 else 'is'} being computed now by `subsetctl run --shard`; once "
                     f"every shard is done, `subsetctl run {folder}` merges them and goes on.")
    if data.get("shards_state"):  # e.g. "all 2 gradient shards done; `run` merges them"
        notes.append(f"Gradients computed in shards (`subsetctl run --shard i/N`): {data['shards_state']} "
                     f"(`subsetctl run {folder}`).")
    unfinished = data.get("unfinished") or []
    if unfinished:  # a run stopped partway (Ctrl-C): its finished work is kept
        notes.append(f"Stopped partway: {', '.join(unfinished)}. `subsetctl run {folder}` resumes "
                     f"{'it' if len(unfinished) == 1 else 'them'} where {'it' if len(unfinished) == 1 else 'they'} "
                     "stopped.")
    damaged = data.get("damaged") or []
    if damaged:  # the report's own: rebuilt from the other stages' results, so shown all the same
        hidden = [name for name in damaged if name != "report"]
        shown = ("; the report is shown rebuilt from the other stages' results" if "report" in damaged else "")
        notes.append(f"Damaged saved results: {', '.join(damaged)} (files that fail their checksums or an unreadable "
                     f"manifest; `subsetctl plan {folder}` names them){shown}; "
                     + (f"{', '.join(hidden)} {'is' if len(hidden) == 1 else 'are'} not shown; " if hidden else "")
                     + f"`subsetctl run {folder}` recomputes {'it' if len(damaged) == 1 else 'them'}.")
    if data.get("spec_problem"):
        notes.append(f"The spec does not validate now, so these results could not be checked against it: "
                     f"{data['spec_problem']}")
    return "\n".join(notes) or None


def render_report(root: Path, console: Any, all_sources: bool = False, overrides: list[str] | None = None) -> None:
    """Print the report; the full results tables come from report.json when present.
    ``all_sources`` lists every source instead of the highest and lowest scoring ones;
    ``overrides``: judge what is stale against the spec with them, as a run with them would."""
    from rich.table import Table

    data = load_report_data(root, overrides)
    full = data.get("report")
    if full:
        from subsetctl.report.render import render_full_report

        render_full_report(full, console, all_sources=all_sources, root=root, stale=data.get("stale") or [])
    note = outdated_note(data, overrides)
    if note:
        from rich.markup import escape

        console.print(f"[yellow]{escape(note)}[/yellow]")
    table = Table(title="stages", title_justify="left")
    # on a narrow terminal cells fold, never end in "…" (meta_i…, 2026-12-02T05…)
    table.add_column("stage", overflow="fold")
    table.add_column("seconds", justify="right", overflow="fold")
    table.add_column("finished", overflow="fold")
    for name, info in data["stages"].items():
        label = f"{name} [dim](switched off; an earlier run's)[/dim]" if info.get("switched_off") else name
        table.add_row(label, f"{info['seconds']:.1f}" if info["seconds"] is not None else "-", str(info["written_at"]))
    console.print(table)
