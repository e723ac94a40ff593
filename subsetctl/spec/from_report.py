"""A spec written back from a report: `subsetctl init NEWDIR --from-report PATH`.

report.json's ``settings`` hold every setting the shown results were made with, as the
stages recorded them (command-line overrides folded in; a setting every source shares once,
as ``sources[*].<key>``, or ``sources[{name}].<key>``). Of a sweep's variants, their project
overwritten since, the report is all that is left: this turns those settings back into a
spec whose stages' spec slices (what their fingerprints count) are those the results were
made with. The settings no result depends on (``executor``, ``report``, the ``plugins:`` list,
a checkpoint's spacing) come from ``run_settings``, the run's that wrote the report (report
format 18; an earlier report's are written at their defaults, with a warning). What the report
cannot hold is named in a warning: the plugins' code, and the data files' contents, which are
checked against ``input_files``' sha256 where NEWDIR's paths lead to them.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import yaml

from subsetctl.errors import UserError, json_file_problem, shown_path, shown_text, standard_input_note

#: the first report format holding ``settings`` (:data:`~subsetctl.report.build.REPORT_FORMAT` 8)
FIRST_FORMAT_WITH_SETTINGS = 8

#: the spec's sections no stage's results depend on, so report.json's settings never hold them:
#: its run_settings do (format 18); from an earlier report the written spec has them at their defaults
NOT_IN_SETTINGS = ("executor", "report", "plugins")


def report_json_path(path: Path) -> Path:
    """The report.json ``path`` names: the file itself, or the one in the project folder it
    names, or in the folder of the project's spec file it names (``proj/subsetctl.yaml``, as
    the other commands and `report --compare` take it; it was refused as "not valid JSON").
    A UserError when there is none."""
    from subsetctl.project import named_as_yaml

    spec_file = path.is_file() and named_as_yaml(path)
    found = path / "report.json" if path.is_dir() else path.parent / "report.json" if spec_file else path
    if not found.is_file():
        stdin = standard_input_note(path, "the spec's paths are made relative to the report's folder, "
                                          "which a file names").removeprefix(": ")
        where = (f"{shown_path(path)} holds no report.json" if path.is_dir() else
                 f"{shown_path(path)} is a spec file, and its folder holds no report.json" if spec_file else
                 # (/dev/null, a named pipe: it was "does not exist")
                 f"{shown_path(path)} is neither a file nor a folder (a device or a named pipe)" if path.exists() else
                 f"{shown_path(path)} does not exist" + (f" ({stdin})" if stdin else ""))
        raise UserError(f"--from-report: {where}. Name a report.json (a variant's, kept aside) or the project folder "
                        "whose report.json `subsetctl run` wrote.")
    return found


def read_report(path: Path) -> dict[str, Any]:
    """report.json at ``path`` as JSON; a UserError when it is not one, or of a format too old
    to hold ``settings`` (written before subsetctl recorded what results were made with)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"--from-report: {shown_path(path)} cannot be read as a report.json ({json_file_problem(exc)}). Name the "
                        "report.json `subsetctl run` wrote.") from None
    if not isinstance(report, dict):
        raise UserError(f"--from-report: {shown_path(path)} is not a report.json (not a JSON object).")
    fmt = report.get("report_format")
    settings = report.get("settings")
    if not isinstance(settings, dict) or not settings or not isinstance(fmt, int) or fmt < FIRST_FORMAT_WITH_SETTINGS:
        said = f"format {fmt}" if isinstance(fmt, int) else "no recorded format"
        raise UserError(f"--from-report: {shown_path(path)} is a report.json of {said}, written before subsetctl "
                        f"recorded the settings its results were made with (format {FIRST_FORMAT_WITH_SETTINGS} and "
                        "later hold them as `settings`), so no spec can be written back from it. If its project "
                        "still holds the results, `subsetctl run` on it with the same spec and overrides writes "
                        "the report again (nothing else re-runs); else write the spec by hand from report.md.")
    return report


def spec_data(settings: dict[str, Any]) -> dict[str, Any]:
    """report.json's ``settings`` (dotted keys, ``sources[*]`` and ``sources[{name}]`` ones
    too) as a nested spec mapping, sections in the spec's order."""
    from subsetctl.report.build import expand_source_settings
    from subsetctl.spec import Spec

    data: dict[str, Any] = {}
    for key, value in expand_source_settings(settings).items():
        parts = _key_parts(key)
        node: Any = data
        for part, after in itertools.pairwise(parts):
            empty: Any = [] if isinstance(after, int) else {}
            if isinstance(part, int):
                node.extend(None for _ in range(part + 1 - len(node)))
                node[part] = empty if node[part] is None else node[part]
                node = node[part]
            else:
                node = node.setdefault(str(part), empty)
        last = parts[-1]
        if isinstance(last, int):
            node.extend(None for _ in range(last + 1 - len(node)))
            node[last] = value
        else:
            node[str(last)] = value
    order = list(Spec.model_fields)
    return dict(sorted(data.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))


#: the settings whose keys are names of the user's (a label, a column), of plain values: the
#: rest of a dotted key after them is one name, dots and brackets included (``label_map.v1.2``)
NAMED_KEYS = ("label_map", "where")


def _key_parts(key: str) -> list[str | int]:
    """A dotted setting ``key`` as its parts (:func:`~subsetctl.spec.overrides.parse_key_path`:
    a name in quotes, as report.json writes a mapping's key holding dots, ``options."a.b"``, is
    one), the rest after a :data:`NAMED_KEYS` setting one name (in quotes or not: report.json
    written before it quoted them). Only where the spec has that setting (a source's
    ``label_map``, a loader's ``where``): a plugin loader's option of that name
    (``options.where.x``) is split as any other key."""
    from subsetctl.errors import SpecError
    from subsetctl.spec.overrides import QuotedName, parse_key_path

    for named in NAMED_KEYS:
        at = key.find(f".{named}.")
        while at > 0:
            head, name = key[:at], key[at + len(named) + 2:]
            try:
                parts = parse_key_path(head)
            except SpecError:
                parts = []
            if name and _holds_setting(parts, named):
                try:
                    quoted = parse_key_path(name)
                except SpecError:
                    quoted = []
                return [*parts, named, str(quoted[0]) if len(quoted) == 1 and isinstance(quoted[0], QuotedName) else name]
            at = key.find(f".{named}.", at + 1)
    return parse_key_path(key)


def _holds_setting(parts: list[str | int], named: str) -> bool:
    """Whether the spec's key ``parts`` (``["sources", 2]``) is where a ``named`` setting of
    :data:`NAMED_KEYS` is: a source's (the target's) ``label_map``, its loaders' ``where``."""
    size = {"target": 1, "sources": 2}.get(str(parts[0])) if parts else None  # (target; sources[2])
    if size is None:
        return False
    return len(parts) == size if named == "label_map" else (len(parts) == size + 1
                                                            and parts[-1] in ("loader", "test_loader"))


def settings_a_report_holds(settings: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """report.json's ``settings`` without those of the :data:`NOT_IN_SETTINGS` sections, and
    the keys left out. subsetctl never records them, so such a key comes from a report edited
    by hand or made elsewhere, and a report is data a teammate shares: written back, its
    ``plugins:`` would have every command on the new spec import a module it names, and its
    ``executor.address`` have `run` load what a cluster of its choosing sends back pickled."""
    def section(key: str) -> str:
        return key.split(".", 1)[0].split("[", 1)[0]

    foreign = [key for key in settings if section(key) in NOT_IN_SETTINGS]
    return {key: value for key, value in settings.items() if key not in foreign}, foreign


def run_settings_a_report_holds(ran: Any) -> tuple[dict[str, Any], list[str]]:
    """report.json's ``run_settings`` (:func:`subsetctl.report.build.run_settings`) as
    `init --from-report` writes them back, and the keys left out: only the keys that function
    writes, each spelt as it writes them (``executor.n_jobs``, ``plugins``), but the Dask
    cluster's ``executor.address`` (whose pickled results `run` would load; a report of an
    earlier subsetctl holds it, a newer one only ``executor.address_set``). A report is data
    a teammate shares: a key edited in by hand (``model.source``, a whole ``executor`` mapping,
    ``executor."address"``) would otherwise be written into the new spec unsaid. An empty
    ``plugins`` list is left out (the default: it wrote ``plugins: []`` into every spec)."""
    from subsetctl.report.build import ADDRESS_SET
    from subsetctl.spec import RESULT_NEUTRAL, Spec

    if not isinstance(ran, dict):
        return {}, []
    taken = {"plugins", *(f"{section}.{key}" for section, keys in RESULT_NEUTRAL.items() for key in keys)}
    taken |= {f"{section}.{key}" for section in ("executor", "report")
              for key in Spec.model_fields[section].annotation.model_fields if key != "address"}
    return ({key: value for key, value in ran.items() if key in taken and (key != "plugins" or value != [])},
            [key for key in ran if key not in taken and key not in ("executor.address", ADDRESS_SET)])


def without_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without those of a section (not the target's nor a source's) at their
    schema default, of the same type (``1.0`` is not ``1``): the written spec holds what
    was set, as a user writes one, and resolves to the same."""
    from subsetctl.report.build import _compared, _schema_default

    def at_default(key: str, value: Any) -> bool:  # (a list's defaults are its items': lambda_grid[0], ...)
        if "[" in key:  # an item's of a list (search.strategies[0].name): the default list's item is another
            return False
        if isinstance(value, list) and value:
            return _schema_default(f"{key}[{len(value)}]") is None and all(
                (default := _schema_default(f"{key}[{i}]")) is not None and _compared(default[0]) == _compared(item)
                for i, item in enumerate(value))
        default = _schema_default(key)
        return default is not None and _compared(default[0]) == _compared(value)

    return {key: value for key, value in settings.items() if not at_default(key, value)}


def _loaders(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, loader) of every loader in the spec mapping ``data``: the target's (and its
    test_loader), each source's; a plugin loader's ``options`` as the loader holding a path."""
    out: list[tuple[str, dict[str, Any]]] = []
    target = data.get("target") if isinstance(data.get("target"), dict) else {}
    named = [("target", target), *((f"sources[{i}]", s) for i, s in enumerate(data.get("sources") or []))]
    for where, source in named:
        for key in ("loader", "test_loader"):
            loader = source.get(key) if isinstance(source, dict) else None
            if isinstance(loader, dict):
                out.append((f"{where}.{key}", loader))
                if isinstance(loader.get("options"), dict):
                    out.append((f"{where}.{key}.options", loader["options"]))
    return out


def _path_from(path: str, origin: Path, newdir: Path) -> str:
    """A loader's (or model's) relative ``path`` as the spec in ``newdir`` names the file the
    report's project (``origin``) read: as it is where ``newdir`` holds that path (the data
    copied along: the data stage's fingerprint, which counts paths as written, is the same),
    else relative from ``newdir`` to it where it is beside the report; an absolute path, a hub
    id or a name found in neither, as it is."""
    if not path or Path(path).is_absolute() or (newdir / path).exists() or not (origin / path).exists():
        return path
    return Path(os.path.relpath((origin / path).resolve(), newdir.resolve())).as_posix()


def with_paths_from(data: dict[str, Any], origin: Path, newdir: Path) -> list[str]:
    """Rewrite the loaders' ``path`` and ``model.source`` of ``data`` in place for a spec in ``newdir``
    (:func:`_path_from`); the paths rewritten, as written now. ``plugins`` entries are modules, found on
    ``PYTHONPATH``, not paths: a package's folder beside the report made one ``../x/mine``, no module."""
    moved: list[str] = []
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    places: list[tuple[str, dict[str, Any], str]] = [("model", model, "source")]
    places += [(where, loader, "path") for where, loader in _loaders(data)]
    for where, holder, key in places:
        value = holder.get(key)
        if isinstance(value, str) and (new := _path_from(value, origin, newdir)) != value:
            holder[key] = new
            moved.append(new)
    return moved


def model_source_not_found(data: dict[str, Any], report: dict[str, Any], origin: Path, newdir: Path) -> str | None:
    """The warning for a relative ``model.source`` of ``data`` (after :func:`with_paths_from`)
    that leads to no folder from ``newdir`` nor beside the report (``origin``): a model folder
    moved or deleted since, which `run` from ``newdir`` would not find (or would take for a hub
    id of that name). None for one found, an absolute path or ``~`` one (its own error at
    `run`), a packaged model, and a name of a hub id's form unless the report's
    ``input_files`` record it as a local folder's files."""
    from subsetctl.modeling.resolve import _HUB_ID, packaged_names

    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    source = model.get("source")
    if (not isinstance(source, str) or not source or source.startswith("~") or Path(source).is_absolute()
            or source in packaged_names() or (newdir / source).exists() or (origin / source).exists()):
        return None
    files = report.get("input_files")
    recorded = files.get("model") if isinstance(files, dict) else None
    local = isinstance(recorded, dict) and "model_files" in recorded and "model_package" not in recorded
    if _HUB_ID.match(source) and not local:
        return None
    return (f"model.source {source!r} is a model folder the report's project named relative to itself, and it is "
            f"neither in {shown_path(newdir)} ({shown_path(newdir / source)}) nor beside the report "
            f"({shown_path(origin / source)}): write the folder's path where it is now as model.source in "
            f"{shown_path(newdir / 'subsetctl.yaml')} (relative to {shown_path(newdir)}, or absolute), or put the "
            f"folder at {shown_path(newdir / source)}, before `subsetctl run`")


def data_file_differences(spec: Any, report: dict[str, Any], newdir: Path) -> list[str]:
    """A line for each source whose input files, as the spec in ``newdir`` reads them, are not
    those report.json's ``input_files`` records (sha256): another file, or none there."""
    from subsetctl.data.fingerprint import source_fingerprint_inputs
    from subsetctl.report.build import expand_input_files

    files = report.get("input_files")
    recorded = expand_input_files(files).get("data") if isinstance(files, dict) else None
    if not isinstance(recorded, dict):
        return []
    out = []
    for source in [spec.target, *spec.sources]:
        if source.name not in recorded:
            continue
        want = _sha256s(recorded[source.name])
        if not want:
            continue
        try:
            have = _sha256s(source_fingerprint_inputs(source, newdir))
        except (UserError, OSError, ValueError) as exc:
            out.append(f"{source.name}: its files cannot be read from {shown_path(newdir)} ({exc})")
            continue
        if have != want:
            out.append(f"{source.name}: its files' sha256 ({', '.join(sorted(have)) or 'none'}) are not the "
                       f"report's ({', '.join(sorted(want))})")
    return out


def _sha256s(record: Any) -> set[str]:
    """Every ``sha256`` value in an ``input_files`` record (a file's, a glob's files', rows')."""
    if isinstance(record, dict):
        return {v for k, v in record.items() if k == "sha256" and isinstance(v, str)} | {
            s for v in record.values() for s in _sha256s(v)}
    if isinstance(record, list):
        return {s for v in record for s in _sha256s(v)}
    return set()


def spec_from_report(path: Path, newdir: Path) -> tuple[str, list[str], list[str]]:
    """The text of ``newdir``'s subsetctl.yaml written back from the report ``path`` names
    (:func:`report_json_path`), the lines `init` says of its data paths, and its warnings
    (what the report cannot hold, data files other than the report's). A UserError for a
    report too old, or settings that are no valid spec."""
    from subsetctl.report.build import ADDRESS_SET
    from subsetctl.spec import SPEC_FILENAME
    from subsetctl.spec.dumps import spec_json
    from subsetctl.spec.reading import validate_data

    report_path = report_json_path(path)
    report = read_report(report_path)
    file = str(newdir / SPEC_FILENAME)
    held, foreign = settings_a_report_holds(report["settings"])
    # the settings no result depends on, as the run that wrote the report had them (since report format 18),
    # but a Dask cluster's address: the cluster of that machine's run, whose pickled results `run` would load
    ran = report.get("run_settings") if isinstance(report.get("run_settings"), dict) else {}
    address = ran.get("executor.address")  # (a report of an earlier subsetctl; since, whether one was set alone)
    address_set = ran.get(ADDRESS_SET) is True
    ran, strange = run_settings_a_report_holds(ran)
    specs = []
    for settings in ({**ran, **held}, without_defaults({**ran, **held})):
        data = spec_data(settings)
        if isinstance(report.get("project"), str):  # (project.name changes no result: not among the settings)
            data = {"project": {"name": report["project"], **(data.get("project") or {})},
                    **{key: value for key, value in data.items() if key != "project"}}
        moved = with_paths_from(data, report_path.parent, newdir)
        spec, issues = validate_data(data, file)
        if spec is None and specs:  # (the defaults left out: the whole settings make the spec)
            break
        if spec is None:
            raise UserError(f"--from-report: the settings of {shown_path(report_path)} do not make a valid spec "
                            "(a subsetctl of another version wrote them?):\n"
                            + "\n".join("  " + issue.render() for issue in issues))
        specs.append((data, spec))
    (data, spec), *trimmed = specs
    if trimmed and spec_json(trimmed[0][1]) == spec_json(spec):  # (the defaults left out resolve to the same spec)
        data = trimmed[0][0]
    warnings = [] if isinstance(report.get("run_settings"), dict) else [
        (f"not in the report (written before report format 18), written at their defaults: {', '.join(NOT_IN_SETTINGS)} "
         "(no result depends on them), and a checkpoint's spacing and gradients.memory_budget_mb (neither changes a "
         "result)")]
    if address:
        warnings.append(f"left out: executor.address {address!r}, the Dask cluster the report's run used (`run` loads "
                        "what a cluster sends back): write it into the spec yourself to run on that cluster")
    elif address_set:
        warnings.append("left out: executor.address, the Dask cluster the report's run used, which the report does not "
                        "record (a shared report keeps a cluster's address private): write one into the spec yourself "
                        "to run on a cluster")
    if foreign:
        warnings.append(f"left out: report.json's settings hold {', '.join(foreign)}, which no report subsetctl writes "
                        "holds (it was edited by hand or made elsewhere); a plugin module, a Dask cluster's address "
                        "or the report's settings are written into the spec by you, not taken from a report")
    if strange:
        warnings.append(f"left out: report.json's run_settings hold {', '.join(strange)}, which no report subsetctl "
                        "writes holds there (it was edited by hand or made elsewhere); write such settings into "
                        "the spec yourself")
    code = report["plugins"] if isinstance(report.get("plugins"), dict) else {}
    listed = data["plugins"] if isinstance(data.get("plugins"), list) else []
    if listed:  # (from run_settings: said even where report.json's `plugins` names no code, as a hand-edited one may)
        warnings.append(f"written from report.json's run_settings: plugins {', '.join(shown_text(str(p)) for p in listed)}, "
                        "which every command on the new spec, validate too, imports (their code runs): read them "
                        "before any command"
                        + (f", and check their files against report.json's `plugins` ({', '.join(sorted(code))}), "
                           "the plugin code the results were made with, which the report cannot hold" if code else ""))
    elif code:
        warnings.append(f"the results were made with plugin code the report names but cannot hold "
                        f"({', '.join(sorted(code))}): "
                        + ("install the packages it names (the run's spec listed no `plugins:`), and check their "
                           "releases and sha256" if isinstance(report.get("run_settings"), dict) else
                           "add the `plugins:` list and their files, and check their sha256")
                        + " against report.json's `plugins`")
    if isinstance(report.get("left_out"), list) and report["left_out"]:
        warnings.append(f"the report left out the results of {', '.join(map(str, report['left_out']))} (outdated): "
                        "their settings are not in it, and are written at their defaults")
    if (missing := model_source_not_found(data, report, report_path.parent, newdir)) is not None:
        warnings.append(missing)
    different = data_file_differences(spec, report, newdir)
    if different:
        warnings.append("the data files differ from those the results were made with (report.json's "
                        "input_files): " + "; ".join(different) + ". Put the report's files in their place "
                        "before `subsetctl run`, or the results will not be the report's")
    elif not isinstance(report.get("input_files"), dict):
        warnings.append("the report holds no input_files (written before format 10): the data files' contents "
                        "are not checked")
    named = str(report_path.resolve())  # one comment line: a folder name's line break would start a line of YAML
    header = (f"# Written by `subsetctl init --from-report` from {named if named.isprintable() else ascii(named)}\n"
              f"# (report format {report['report_format']}): the settings its results were made with, "
              "overrides folded in.\n")
    notes = [(f"Paths: {len(moved)} made relative to {shown_path(newdir)}, to the files beside the report "
             f"({moved[0]}{', ...' if len(moved) > 1 else ''}; the data stage then prepares them again once, as its "
             "fingerprint counts paths as written); those the folder holds are kept as the report names them; "
             "absolute ones stay absolute.")] if moved else []
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), notes, warnings
