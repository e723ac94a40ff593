"""The Python API behind the CLI: every command is one function here.

Tests call these functions directly; ``cli.py`` only parses arguments and renders. What
validating a spec checks beyond its schema is :mod:`subsetctl.spec_checks`'s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import numbers
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from subsetctl.errors import (
    EDQUOT,
    PluginNotImported,
    SpecError,
    SpecFileError,
    UserError,
    environment_errors_as_user_errors,
    joined_names,
    shell_arg,
    windows_path_note,
    worded,
)
from subsetctl.pipeline import Pipeline, StageStatus
from subsetctl.plugin_scoping import plugin_scope
from subsetctl.project import (
    CommandMemo,
    Project,
    atomic_write,
    atomic_write_text,
    keep_as_backup,
    manifests_read_once,
    named_as_yaml,
    path_argument,
)
from subsetctl.reporter import Reporter, RichReporter, SilentReporter
from subsetctl.spec import (
    SPEC_FILENAME,
    Spec,
    SpecIssue,
    apply_overrides,
    attribute_overrides,
    blame_source_files,
    indexed_overrides,
    issues_text,
    json_schema,
    key_lines,
    overrides_that_change,
    read_yaml,
    validate_data,
    warnings_shown,
)
from subsetctl.spec.dumps import dumps_once
from subsetctl.spec_checks import (
    code_the_spec_runs,
    data_stage_words,
    listed_parts_issues,
    param_issues_of_an_invalid_spec,
    semantic_issues,
    spec_warnings,
)
from subsetctl.templates import TEMPLATES


def template_text(name: str) -> str:
    """The commented spec of a template (package data under subsetctl/templates). A path given
    for the name (``template=Path("team.yaml")`` in a notebook) is told apart from a mistyped
    name: "Unknown template PosixPath('team.yaml')" read as if paths were taken and this one wrong."""
    if isinstance(name, os.PathLike):
        raise UserError(
            f"template takes the name of one of subsetctl's templates ({', '.join(TEMPLATES)}), not a path "
            f"({os.fspath(name)}). To start a project from a spec file of your own, copy it into the project "
            f"folder as {SPEC_FILENAME} (shutil.copy(path, folder / {SPEC_FILENAME!r})).")
    if name not in TEMPLATES:
        raise UserError(f"Unknown template {name!r}. Templates: {', '.join(TEMPLATES)}.")
    return resources.files("subsetctl.templates").joinpath(f"{name}.yaml").read_text(encoding="utf-8")


SCHEMA_FILENAME = "subsetctl.schema.json"


def init_project(directory: str | Path, template: str = "quickstart", force: bool = False,
                 kept: list[str] | None = None, backups: list[Path] | None = None,
                 from_report: str | Path | None = None, said: list[str] | None = None) -> Path:
    """Create ``directory`` with a commented ``subsetctl.yaml`` (and the JSON schema it
    points editors at); never overwrites a spec unless ``force``, nor ever a data file
    the template would write (their names are appended to ``kept``). A spec ``force``
    overwrites is first copied to ``subsetctl.yaml.bak`` (``.bak.1``, ... when that
    exists; the path is appended to ``backups``): it may hold hours of edits.

    With ``from_report`` (a report.json, or the project folder holding one), the spec is
    the one that report's results were made with instead of a template's
    (:func:`~subsetctl.spec.from_report.spec_from_report`); what it says of the paths and
    its warnings (what the report cannot hold, data files not the report's) are appended
    to ``said``, each with "warning: " before it."""
    text = template_text(template) if from_report is None else ""
    if from_report is not None:  # (refused before a folder is made: no report.json, one too old)
        from subsetctl.spec.from_report import read_report, report_json_path, spec_from_report

        from_report = report_json_path(path_argument(from_report, "--from-report", "report.json"))
        read_report(from_report)
    # (expanded: `init '~/q'` made ./~/q, which `plan ~/q` then did not find; not a str or path,
    # bytes among them: a UserError, not a TypeError from Path())
    directory = path_argument(directory, "directory (the project folder)", "myproject")
    if named_as_yaml(directory) and not directory.is_dir():  # a spec file named, not a folder
        if directory.name != SPEC_FILENAME:  # `init myspec.yaml` made a folder myspec.yaml/ holding subsetctl.yaml
            raise UserError(
                f"{directory} names a spec file, but a project is a folder whose spec is named {SPEC_FILENAME}, "
                f"which `subsetctl init` writes: name the folder, e.g. `subsetctl init "
                f"{shell_arg(directory.with_suffix(''))}`.")
        directory = directory.parent  # `init proj/subsetctl.yaml`: proj, as the other commands take it
    spec_path = directory / SPEC_FILENAME
    _refuse_a_new_windows_path(directory)
    if directory.exists() and not directory.is_dir():  # `mkdir` said only "File exists"
        raise UserError(f"{directory} is a file, not a folder: a project is a folder holding its spec "
                        f"({SPEC_FILENAME}). Name a new or existing folder for `subsetctl init`.")
    if spec_path.is_dir():
        raise UserError(f"{spec_path} is a folder, not a spec file: move or rename it, then run `subsetctl init` "
                        "again.")
    if spec_path.exists() and not force:
        raise UserError(f"{spec_path} already exists; pass {worded('--force', 'force=True')} to overwrite it.")
    data_files = [directory / extra.name for extra in _template_files(template)] if from_report is None else []
    for path in (directory / SCHEMA_FILENAME, *data_files):  # (checked first: the spec was written, then
        if path.is_dir():  # "Cannot create the project in DIR: Is a directory", naming neither folder)
            what = "the spec's schema for editors" if path.name == SCHEMA_FILENAME else "a data file its template reads"
            raise UserError(f"{path} is a folder, where init writes {what}: move or rename it, then run "
                            "`subsetctl init` again (nothing was written).")
    existed = directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if from_report is not None:  # (in the folder made: its paths are checked from there)
            try:
                text, notes, warnings = spec_from_report(Path(from_report), directory)
            except UserError:  # (settings that make no valid spec: no empty folder left behind)
                if not existed:
                    directory.rmdir()
                raise
            if said is not None:
                said += [*notes, *(f"warning: {warning}" for warning in warnings)]
        # editors validate and complete the spec against the schema of the installed version,
        # written next to it (no network needed; `subsetctl schema` regenerates it after an upgrade)
        body = text.split("\n", 1)[1] if text.startswith("# yaml-language-server") else text
        new_text = f"# yaml-language-server: $schema={SCHEMA_FILENAME}\n" + body
        backup = _backed_up_spec(spec_path, new_text)
        if backup is not None and backups is not None:
            backups.append(backup)
        atomic_write_text(spec_path, new_text)
        atomic_write_text(directory / SCHEMA_FILENAME, schema_text())  # generated: always this version's
        for extra in _template_files(template) if from_report is None else ():
            target = directory / extra.name
            if not target.exists() and not target.is_symlink():  # a dangling link: written through, outside
                # (atomically: a full disk left a truncated file, which `init --force` then kept
                # as the user's and `run` read)
                data = extra.read_bytes()
                atomic_write(target, lambda handle: handle.write(data), mode="wb")  # noqa: B023 (called at once)
            elif kept is not None:
                kept.append(extra.name)
    except OSError as exc:  # a path that cannot be a folder, a read-only or missing parent
        if exc.errno in _OUT_OF_ROOM:
            raise UserError(_init_out_of_room(exc, directory, spec_path, force)) from None
        raise UserError(
            f"Cannot create the project in {directory}: {exc.strerror or exc}. Choose a folder you can write to "
            "(it is created if missing, with its parents)."
        ) from None
    return spec_path


_OUT_OF_ROOM = {errno.ENOSPC: "the disk is full", EDQUOT: "your disk quota is used up"}


def _init_out_of_room(exc: OSError, directory: Path, spec_path: Path, force: bool) -> str:
    """What `init` says when the disk (or the user's quota) is full: that, and the file it was
    writing, rather than "choose a folder you can write to", which the folder is. Each file is
    written whole or not at all, so running `init` again (with --force once the spec is
    there) writes the rest and keeps what was written."""
    filename = str(exc.filename or "")
    if Path(filename).name.startswith(".") and ".tmp-" in filename:  # (the temporary file of an atomic write: the file it makes)
        filename = str(Path(filename).parent / Path(filename).name[1:].split(".tmp-")[0])
    writing = f" (writing {filename})" if filename else ""
    again = (f"`subsetctl init` again with {worded('--force', 'force=True')}" if spec_path.exists() and not force
             else "`subsetctl init` again")
    return (f"Cannot create the project in {directory}: {_OUT_OF_ROOM[exc.errno]}{writing}. Free disk space there "
            f"and run {again}: no file is left half written, and the files already written are kept.")


def _refuse_a_new_windows_path(directory: Path) -> None:
    """Refuse to create folders whose path is written as on Windows (``C:\\Users\\me\\q``,
    ``proj\\v2``, ``\\\\wsl$\\Ubuntu\\home\\q``): on Linux and macOS a backslash is a character
    of a name, so `init` made one folder of that whole name in the current folder, which
    Windows cannot copy and the user then did not find where they meant it. A folder that
    exists already is taken as it is named (only what `init` would create is looked at)."""
    existing = next((p for p in directory.absolute().parents if p.exists()), None)
    if directory.exists() or existing is None:
        return
    created = os.path.relpath(directory.absolute(), existing)
    note = windows_path_note(created)
    if note:
        raise UserError(f"{directory} is not created: it would be a folder named '{created}' in {existing}"
                        f"{note}." + (" (To name a new folder with a backslash, create it first, then run "
                                      "`subsetctl init` on it.)" if "\\" in created else ""))


def _backed_up_spec(spec_path: Path, new_text: str) -> Path | None:
    """Copy the spec `init --force` is about to overwrite to a backup file that does not
    exist yet (subsetctl.yaml.bak, then .bak.1, .bak.2, ...); None when there is no spec or
    it already holds ``new_text`` (nothing to lose)."""
    if not spec_path.is_file() or spec_path.read_bytes() == new_text.encode("utf-8"):
        return None
    return keep_as_backup(spec_path)


def _template_files(template: str) -> list[Any]:
    folder = resources.files("subsetctl.templates").joinpath(f"{template}_files")
    if not folder.is_dir():
        return []
    return [f for f in folder.iterdir() if f.is_file()]


#: the version of what `validate --format json` prints (:meth:`ValidationReport.to_dict`'s
#: ``validate_format``), raised whenever a subsetctl changes its keys or their meaning: a script
#: checks it has the keys it reads, as report.json's ``report_format`` lets it. 1: the first numbered;
#: 2: a warning that is a note (:attr:`SpecIssue.note`) has ``"note": true``
VALIDATE_FORMAT = 2


@dataclass
class ValidationReport:
    """What validating one spec file found: errors (``issues``, the spec is unusable) and
    warnings (valid settings that will not do what they likely mean)."""

    file: str
    issues: list[SpecIssue] = field(default_factory=list)
    warnings: list[SpecIssue] = field(default_factory=list)
    #: the validated spec (with overrides applied) when the schema accepted it
    spec: Spec | None = field(default=None, repr=False)
    #: code from outside subsetctl the spec runs (:func:`code_the_spec_runs`)
    runs_code: list[str] = field(default_factory=list)
    #: whether its ``plugins:`` were imported (not with ``import_plugins=False``, ``--no-plugins``)
    plugins_imported: bool = True
    #: what was left unchecked because the plugins were not imported (the plugins themselves,
    #: names one may register): no problem of the spec, and not counted by :attr:`ok`
    not_checked: list[SpecIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the spec is valid: no errors (warnings and what was not checked do not count)."""
        return not self.issues

    @property
    def plugin_tracebacks(self) -> str:
        """The own frames of the ``plugins:`` modules whose import failed
        (:attr:`SpecIssue.plugin_traceback`), one after another; "" where none did."""
        return "".join(issue.plugin_traceback for issue in self.issues)

    def to_dict(self) -> dict[str, Any]:
        """The report as ``validate --format json`` prints it (numbered by :data:`VALIDATE_FORMAT`)."""
        # (``note`` only where true: ``{file, line, key, message}`` as before otherwise)
        return {"file": self.file, "valid": self.ok, "errors": [i.model_dump(exclude_defaults=True) for i in self.issues],
                "warnings": [w.model_dump(exclude_defaults=True) for w in self.warnings], "runs_code": self.runs_code,
                "plugins_imported": self.plugins_imported,
                "not_checked": [i.model_dump(exclude_defaults=True) for i in self.not_checked],
                "validate_format": VALIDATE_FORMAT}


def _listed(items: str | list[str] | tuple[str, ...] | None, what: str, example: str) -> list[str]:
    """Overrides or stage names as a list: one given as a plain string (`force="data"`) is
    one item, not its characters ("Unknown stage 'd'"). Anything else but a list, tuple or
    set (``force=True``, a Path) is a UserError naming ``what`` and showing ``example``, not
    a TypeError ("'bool' object is not iterable")."""
    if items is None:
        return []
    if isinstance(items, str):
        return [items]
    if not isinstance(items, list | tuple | set | frozenset):
        raise UserError(f"{what} takes a str or a list of them ({example}), not {items!r} ({type(items).__name__}).")
    return list(items)


def _directory_arg(directory: Any) -> Path | None:
    """The project folder argument of plan_project and run_project (None: the current folder)."""
    return None if directory is None else path_argument(directory, "directory (the project folder)", "myproject")


#: the methods of a reporter (:class:`subsetctl.reporter.Reporter`; README → From Python)
_REPORTER_METHODS = {"info": "info(message)", "warn": "warn(message)", "progress": "progress(description, total)"}


def _check_reporter(reporter: Any, needed: tuple[str, ...] = tuple(_REPORTER_METHODS)) -> None:
    """A UserError naming the methods ``reporter`` lacks (of ``needed``): reporter="quiet"
    raised AttributeError at the project's lock, and an object without ``progress`` failed
    deep in the first stage that shows a bar, after the stages before it had run."""
    if reporter is None:
        return
    missing = [name for name in needed if not callable(getattr(reporter, name, None))]
    if missing:
        methods = list(_REPORTER_METHODS.values())
        shown = repr(reporter) if len(repr(reporter)) <= 60 else f"<{type(reporter).__name__} object>"
        raise UserError(f"reporter={shown} has no {joined_names(missing, 'or')} method: a reporter has "
                        f"{joined_names(methods)} (README → From Python). Pass None or "
                        "subsetctl.reporter.SilentReporter() for a quiet run, RichReporter() for the terminal's "
                        "output, or an object with those methods.")


def _until_arg(until: Any) -> str | None:
    """``until`` as one stage name, or a UserError saying what to pass: a list (``["search"]``,
    as ``force`` takes) raised a TypeError ("unhashable type: 'list'"). A run stops after
    one stage, so a list is refused rather than read."""
    if isinstance(until, list | tuple | set | frozenset):
        hint = f" (until={next(iter(until))!r})" if len(until) == 1 else ""
        raise UserError(f"until takes one stage name, a str{hint}, not {until!r}: the run stops after that "
                        "stage (force is the one that takes a list).")
    return until


def _override_list(overrides: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """The ``overrides`` argument as a list (:func:`_listed`); given as a dict
    (``{"gradients.d": 8}``), or with an item that is not text, a UserError saying what to
    write: a dict's keys alone were taken ("Override 'gradients.d' must look like
    key=value"), and a number failed with an AttributeError."""
    if isinstance(overrides, dict):
        written = [f"{key}={value if isinstance(value, str) else json.dumps(value, default=str)}"
                   for key, value in overrides.items()]
        raise UserError(f"overrides takes a list of 'key=value' texts, as on the command line, not a dict: write "
                        f"{written!r}.")
    listed = _listed(overrides, "overrides", "['gradients.d=8'], as on the command line")
    for i, item in enumerate(listed):
        if not isinstance(item, str):
            raise UserError(f"overrides[{i}] is {item!r} ({type(item).__name__}); overrides takes a list of "
                            "'key=value' texts, as on the command line (['gradients.d=8']).")
        _refuse_overrides_in_one_text(item)
    return listed


def _refuse_overrides_in_one_text(item: str) -> None:
    """A UserError for one override text holding several, separated by spaces, as typed on
    a command line ("project.name=a finetune.steps=2"): the first took the rest as its value
    (the project named "a finetune.steps=2", finetune.steps left as it was), without a word.
    Only a later word that is a key of one of the spec's sections counts (``finetune.steps=``)."""
    import re

    sections = "|".join(re.escape(name) for name in Spec.model_fields)
    parts = re.split(rf"\s+(?=(?:{sections})(?:\[-?\d+\]|\.[\w\-]+)*=)", item.strip())
    if len(parts) > 1 and "=" in parts[0]:
        raise UserError(f"Override {item!r} holds {len(parts)} overrides in one text: give each as its own item (of "
                        f"the list from Python, an argument on the command line): {parts!r}.")


#: (spec file, overrides, its text, whether its plugins are imported) -> its validation, while
#: :func:`spec_validated_once` is on
_validations: CommandMemo[tuple[str, tuple[str, ...], str, bool], ValidationReport] = CommandMemo()


def spec_validated_once() -> contextlib.AbstractContextManager[dict[tuple[str, tuple[str, ...], str, bool],
                                                                    ValidationReport]]:
    """Within it, :func:`validate_spec_file` validates a spec file once for the same text
    and overrides, and hands out that report again: `run`'s terminal report checked the
    results against the spec by validating it all over again (the glob of every
    ``source_files`` group expanded, each source file's head read: seconds for thousands of
    sources, in a `run` with nothing to do). The dict it yields is what it holds: clear it
    when what the validation read may have changed since (stages ran). Re-entrant."""
    return _validations.scope()


@plugin_scope()
def validate_spec_file(path: str | Path, overrides: str | list[str] | None = None, *,
                       import_plugins: bool = True) -> ValidationReport:
    """Validate one spec file: YAML, schema, then the semantic checks. A project folder
    holding a spec stands for that spec, as `subsetctl validate myproject` and
    :func:`plan_project` take it (it was "m1 is a directory; give the spec file").
    ``import_plugins=False`` (``--no-plugins``): the spec's ``plugins:`` are not imported, so
    their code does not run; what they would register is listed in ``not_checked``."""
    from subsetctl.plugin_loading import plugins_not_imported, plugins_skipped

    with plugins_not_imported(not import_plugins):
        return _validate_spec_file(path, overrides, not plugins_skipped())


def _validate_spec_file(path: str | Path, overrides: str | list[str] | None, import_plugins: bool) -> ValidationReport:
    """:func:`validate_spec_file`."""
    from subsetctl.plugin_loading import is_not_checked

    # a str from a notebook failed with AttributeError deep in read_yaml; "~/q/subsetctl.yaml" was
    # "no such spec file" while plan_project("~/q") and `subsetctl validate '~/q'` found it
    path = path_argument(path, "path (the spec file)", "myproject/subsetctl.yaml")
    with contextlib.suppress(OSError, ValueError):  # (a name too long to look up: read_yaml says so)
        if path.is_dir() and (path / SPEC_FILENAME).is_file():
            path = path / SPEC_FILENAME
    overrides = _override_list(overrides)
    report = ValidationReport(file=str(path), plugins_imported=import_plugins)
    try:
        data, text = read_yaml(path)
    except SpecFileError as exc:
        report.issues.append(SpecIssue(file=str(path), line=exc.line, key="(file)", message=exc.problem))
        return report
    except SpecError as exc:
        report.issues.append(SpecIssue(file=str(path), line=None, key="(file)", message=str(exc)))
        return report
    memo = _validations.held
    key = (str(path.absolute()), tuple(overrides), text, import_plugins)
    if memo is not None and key in memo:
        return memo[key]
    file_data = data
    written: dict[str, str] = {}  # (what messages quote of an override naming a strategy or source)
    try:
        if overrides:
            overrides = indexed_overrides(data, overrides, written)  # a strategy or source named in a key: its index
            data = apply_overrides(data, overrides, written)
    except SpecError as exc:
        report.issues.append(SpecIssue(file=worded("command line", "overrides argument"), line=None, key="overrides", message=str(exc)))
        return report
    spec, issues = validate_data(data, str(path), text)
    report.issues.extend(issues)
    report.spec = spec
    if spec is not None:
        spec._command_line = overrides_that_change(file_data, overrides)  # which of its settings are not the file's
        spec._written = written
    if spec is None:
        report.issues.extend(i for i in param_issues_of_an_invalid_spec(data, path, text) if i not in issues)
        listed = [i for i in listed_parts_issues(data, path, text) if i not in issues]
        report.issues.extend(i for i in listed if not i.note)
        report.warnings.extend(i for i in listed if i.note)  # (a note of what was left to the data stage)
    else:
        from subsetctl.data.loaders.files import files_read_once

        lines = key_lines(text) if text else {}
        with files_read_once():  # (the checks and the warnings look at each small data file several times)
            found = semantic_issues(spec, path, text)
            warnings = spec_warnings(spec, path, text)
        # the source checks' notes (what they left to the data stage past a total read) among the warnings
        warnings += [i for i in found if i.note]
        found = [i for i in found if not i.note]
        report.issues.extend(blame_source_files(found, spec.source_origins, lines, path.parent))
        # (blame_source_files may merge them; the data stage's words kept too: data_stage_words)
        spec._checked_warnings = list(dict.fromkeys(m for w in warnings if not w.note
                                                    for m in (w.message, data_stage_words(w.message))))
        report.warnings.extend(blame_source_files(warnings, spec.source_origins, lines, path.parent))
        report.runs_code = code_the_spec_runs(spec, import_plugins)
    report.not_checked = [i for i in report.issues if is_not_checked(i.message)]
    report.issues = [i for i in report.issues if not is_not_checked(i.message)]
    if overrides:
        report.issues = attribute_overrides(report.issues, overrides, written)
        report.warnings = attribute_overrides(report.warnings, overrides, written)
        report.not_checked = attribute_overrides(report.not_checked, overrides, written)
    if memo is not None:
        memo[key] = report
    return report


def load_project(
    directory: str | Path | None, overrides: list[str] | None = None, reporter: Reporter | None = None,
) -> tuple[Project, Spec]:
    """Find the project, load and validate its spec (with overrides); every problem
    raised as one SpecError. The validation's warnings go to ``reporter`` when given."""
    project = Project.find(directory)
    report = validate_spec_file(project.spec_path, overrides)
    if not report.ok or report.spec is None:
        error = SpecError(f"{project.spec_path} is not a valid spec:\n{issues_text(report.issues, project.spec_path, overrides)}")
        # a plugin whose import failed: its own frames, which the CLI prints above the message, as for a stage's
        error.plugin_traceback = report.plugin_tracebacks  # type: ignore[attr-defined]
        raise error
    if reporter is not None:
        _say_spec_warnings(reporter, report.warnings, project.spec_path, overrides)
    return project, report.spec


def _say_spec_warnings(reporter: Reporter, warnings: list[SpecIssue], spec_path: Path,
                       overrides: list[str] | None) -> None:
    """Give ``reporter`` the spec's ``warnings`` and notes as ``plan`` and ``run`` begin. The
    terminal's (:class:`RichReporter`) is given the first ISSUES_SHOWN and the line counting the
    rest with the `validate --format json` that lists them, as `validate` says them (a warning per
    source of 2,000 made 2,000 lines before every run); that line is shown under ``--quiet`` as
    the warnings are, unless it counts notes alone (which --quiet hides). Any other reporter (an
    API caller's SilentReporter, one of its own) is given every one: it keeps what it is told; one
    with ``warn`` alone (all ``plan_project`` asks for) is given no notes, which ``info`` says."""
    from rich.markup import escape

    from subsetctl.plugin_loading import plugins_skipped

    shown, more = warnings, ""
    if isinstance(reporter, RichReporter):
        shown, more = warnings_shown(warnings, spec_path, overrides, plugins_skipped())
    for warning in shown:
        if not warning.note:
            reporter.warn(warning.render())
        elif callable(getattr(reporter, "info", None)):  # (plan's reporter need have warn alone: no note)
            reporter.info(f"[cyan]note:[/cyan] {escape(warning.render())}")  # (not recorded as a stage's warning)
    if more and isinstance(reporter, RichReporter):
        if sum(not w.note for w in shown) < sum(not w.note for w in warnings):  # (it counts a warning)
            reporter.say(more.strip())
        else:
            reporter.info(escape(more.strip()))


def make_pipeline(project: Project, spec: Spec, reporter: Reporter | None = None) -> Pipeline:
    """The pipeline of every stage for ``project`` and its validated ``spec``. The spec's
    plugins are imported first (what they register is what the stages look up), except
    while ``import_plugins=False`` holds them back (the checks say what that leaves unknown)."""
    from subsetctl.plugin_loading import load_plugin_string
    from subsetctl.stages import all_stages

    for plugin in spec.plugins:
        with contextlib.suppress(PluginNotImported):  # plan_project(import_plugins=False): the checks say so
            load_plugin_string(plugin, project.root)
    return Pipeline(project, spec, all_stages(), reporter or SilentReporter(), spec.command_line_overrides)


def warn_edited_plugins(reporter: Reporter, spec: Spec) -> None:
    """Name the files of the spec's plugins edited since this process loaded their code (a
    notebook that edited a plugin between two runs): the old code runs, and results are
    recorded as its. Plugins of other projects run in the process are left out. A file a
    plugin class inherits from (:func:`~subsetctl.filehash.base_class_code_fingerprints`) is
    named as such, not as a plugin file: reloading the plugin's module alone keeps the old
    base class, so that module is to be reloaded first."""
    from subsetctl.filehash import code_edited_since_loaded
    from subsetctl.registry import ALL_REGISTRIES

    modules = {plugin.partition(":")[0] for plugin in spec.plugins}
    objects = [entry.obj for registry in ALL_REGISTRIES.values() for entry in registry.entries()
               if entry.origin != "built-in" and getattr(entry.obj, "__module__", None) in modules]
    plugin_files = {Path(file).resolve() for module in modules
                    if (file := getattr(sys.modules.get(module), "__file__", None))}
    for path in code_edited_since_loaded(objects):
        own = path.resolve() in plugin_files
        what = f"The plugin file {path}" if own else f"The file {path}, which a class of the spec's plugins inherits from,"
        reload = "the module" if own else "that module, then the plugin's"
        reporter.warn(f"{what} changed after this Python process loaded it: it still runs the code from before the "
                      "edit (Python does not import a module again), and results are recorded as that code's. "
                      f"Restart the process (a notebook's kernel), or importlib.reload {reload}, to use the edit.")


def warn_hub_revision_changed(reporter: Reporter, project: Project, spec: Spec) -> None:
    """Say where the results were made from another commit of the spec's hub model than the
    local Hugging Face cache serves now (:func:`subsetctl.report.build.hub_revision_changed_note`)."""
    from subsetctl.report.build import hub_revision_changed_note

    note = hub_revision_changed_note(project, spec)
    if note is not None:
        reporter.warn(note)


@plugin_scope()
def plan_project(
    directory: str | Path | None, overrides: str | list[str] | None = None, until: str | None = None,
    force: str | list[str] | None = None, reporter: Reporter | None = None, *, import_plugins: bool = True,
) -> tuple[Project, Spec, list[StageStatus]]:
    """Each stage's status and what ``run`` would do; the spec's warnings go to ``reporter``.
    ``import_plugins=False`` (``--no-plugins``): the spec's ``plugins:`` are not imported, so
    their code does not run; a stage using what one would register (and those after it) is
    "not checked" (``will_run`` False: not known)."""
    from subsetctl.plugin_loading import plugins_not_imported

    overrides, force = _override_list(overrides), _listed(force, "force", "force='data', force=['data', 'search']")
    directory, until = _directory_arg(directory), _until_arg(until)
    _check_reporter(reporter, ("warn",))  # plan needs warn alone (an info, where there, gets the notes)
    with environment_errors_as_user_errors(), manifests_read_once(), dumps_once(), plugins_not_imported(not import_plugins):
        project, spec = load_project(directory, overrides, reporter)
        pipeline = make_pipeline(project, spec)
        if reporter is not None:
            warn_edited_plugins(reporter, spec)
            warn_hub_revision_changed(reporter, project, spec)
            try:  # a link in the state folder: said before `run` stops on it
                project.refuse_links()
            except UserError as exc:
                reporter.warn(f"`run` would stop at once: {exc}")
        statuses = pipeline.plan(force=set(force or []), until=until)
        running = project.run_in_progress()
        if running:
            stage = project.stage_in_progress(running)
            _mark_running(statuses, stage, running + project.running_whose(),
                          _fingerprint_of_running_work(project, spec, stage) if stage else None,
                          spec_edits_since_run_started(project, spec, stage) if stage else [])
        return project, spec, statuses


def _fingerprint_of_running_work(project: Project, spec: Spec, stage: str) -> str | None:
    """The inputs fingerprint the live `run` records ``stage``'s results under: its work
    marker's, but with a ``model.revision`` the local cache did not resolve as the stage
    started (the stage downloads it) taken as the commit the cache resolves it to now, as
    that run records it once the stage has run (:func:`~subsetctl.stages.common.model_at_commit`).
    Plan took the download itself for an edit of the spec, and said the stage ran again."""
    from subsetctl.project import fingerprint
    from subsetctl.stages.common import model_at_commit

    marker = project.read_work_marker(stage)
    inputs = marker.get("inputs")
    sliced = inputs.get("slice") if isinstance(inputs, dict) else None  # (a damaged marker's: its fingerprint alone)
    model = sliced.get("model") if isinstance(sliced, dict) else None
    if not isinstance(inputs, dict) or not isinstance(model, dict) or marker.get("fingerprint") is None:
        return marker.get("fingerprint")
    resolved = model_at_commit(model, spec)
    return marker.get("fingerprint") if resolved == model else fingerprint(
        {**inputs, "slice": {**sliced, "model": resolved}})


def _mark_running(statuses: list[StageStatus], stage: str | None, holder: str, computing: str | None,
                  edits: list[str]) -> None:
    """Say "running" for the stage a live `run` is computing, whatever its status would be
    otherwise ("unfinished: a run stopped partway", or "never run" when that run was
    started with other overrides); ``holder`` is its PID, and where and whose it is when
    another machine's or user's (:meth:`~subsetctl.project.Project.running_whose`). Here
    rather than in the CLI, so that `plan_project` in a notebook says what `plan --format
    json` says while a run works on the project. ``computing``: the fingerprint of the
    inputs that run computes the stage from (its work marker's); where the spec or files
    planned now give another (the spec edited since that run read it), the stage is said to
    run again after it, as `run` then would: "running" alone read as if the edit were in use.
    ``edits``: the spec keys edited since that run started (:func:`spec_edits_since_run_started`),
    kept on that row for `plan --format json` (``spec_edited_since_run``), as plan's text lists them."""
    for status in statuses:
        if status.name == stage:
            status.state = "running"
            status.spec_edited_since_run = edits
            status.reasons = [f"`subsetctl run` (PID {holder}) is computing it now"]
            if computing is not None and status.fingerprint is not None and computing != status.fingerprint:
                status.reasons[0] += (", with the spec and files as they were when that run started, not as "
                                      "planned here: `run` computes it again once that run is over")


def spec_edits_since_run_started(project: Project, spec: Spec, stage: str | None) -> list[str]:
    """The spec keys in which ``spec`` (as planned now, its overrides applied) differs from
    the resolved spec the live `run` read as it started: that run goes on with the spec it
    read to its end, so an edit of the spec file meanwhile (or other overrides) reaches only
    the `run` after it. Read from the lock file that run holds (:meth:`~subsetctl.project.
    Project.run_spec_digest`: at any moment of it, between its stages too), else from the
    work marker of ``stage``, the one it computes (:meth:`~subsetctl.project.Project.
    stage_in_progress`, which the caller has found already; None: between stages); empty
    where the two are the same, and where that is not known (a run of an earlier subsetctl,
    which names no spec, or one that has not begun its first stage)."""
    from subsetctl.plan_reasons import changed_keys
    from subsetctl.spec.dumps import spec_json

    digest = project.run_spec_digest()
    if digest is None and stage is not None:
        digest = project.read_work_marker(stage).get("resolved_spec")
    ran_with = project.stored_spec(digest) if isinstance(digest, str) else None
    return [] if ran_with is None else changed_keys(ran_with, spec_json(spec))


@contextlib.contextmanager
def _callers_random_state() -> Iterator[None]:
    """Python's, numpy's and torch's global random generators as the caller had them once a
    run is over: the stages seed them from the spec, so a notebook drawing random numbers
    after each run drew the same ones. One the run imported first is seeded afresh, as an
    import leaves it."""
    saved = random.getstate()
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    np_state = np.random.get_state() if np is not None else None
    torch_state = torch.random.get_rng_state() if torch is not None else None
    cuda_state = torch.cuda.get_rng_state_all() if torch is not None and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(saved)
        np, torch = sys.modules.get("numpy"), sys.modules.get("torch")
        if np is not None:
            np.random.set_state(np_state) if np_state is not None else np.random.seed()
        if torch is not None:
            torch.random.set_rng_state(torch_state) if torch_state is not None else torch.seed()
            if cuda_state is not None:
                torch.cuda.set_rng_state_all(cuda_state)
            elif torch_state is not None and torch.cuda.is_initialized():
                torch.cuda.seed_all()


@plugin_scope()
def run_project(
    directory: str | Path | None,
    overrides: str | list[str] | None = None,
    until: str | None = None,
    force: str | list[str] | None = None,
    reporter: Reporter | None = None,
    options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run every stale stage; returns one record per stage (action, seconds). A folder the
    run cannot write or a full disk raises a UserError, as the CLI reports it (but a re-run
    cache under ``.subsetctl/cache/`` that cannot take a finished result: ``reporter`` is
    warned once, and the run goes on, the result kept in its stage's folder).
    ``options={"shard": (i, N)}`` computes only shard i of N of the gradients (as
    ``run --shard i/N``)."""
    overrides, force = _override_list(overrides), _listed(force, "force", "force='data', force=['data', 'search']")
    directory, until = _directory_arg(directory), _until_arg(until)
    _check_run_options(options)
    _check_reporter(reporter)
    rep = reporter or SilentReporter()
    # from the spec's loading on: the first run in a process imports rich there, whose import
    # draws from Python's global generator (rich.style's getrandbits(24))
    with _callers_random_state():
        with environment_errors_as_user_errors():
            project, spec = load_project(directory, overrides, rep)
            pipeline = make_pipeline(project, spec, reporter)
            warn_edited_plugins(rep, spec)
            warn_hub_revision_changed(rep, project, spec)
        with environment_errors_as_user_errors(), manifests_read_once(), dumps_once():
            return pipeline.run(
                until=until,
                force=set(force or []),
                options=options,
                on_stage=lambda name, desc: rep.info(f"[bold cyan]▶ {name}[/bold cyan] [dim]{desc}[/dim]"),
            )


def _check_run_options(options: dict[str, Any] | None) -> None:
    """Refuse run options other than ``shard``, and a shard that is not (i, N) with
    0 <= i < N, before any stage runs: a mistyped key (``{"shards": (0, 2)}``) ran the whole
    pipeline instead of one shard, and ``{"shard": "0/2"}`` failed with a ValueError in the
    gradients stage, after the stages before it."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise UserError(f"options is a dict ({{'shard': (0, 2)}}), not {options!r}.")
    unknown = [key for key in options if key != "shard"]
    if unknown:
        raise UserError(f"Unknown run option {unknown[0]!r}: run_project takes options={{'shard': (i, N)}} "
                        "(compute only shard i of N of the gradients, as `run --shard i/N`), or none.")
    shard = options.get("shard")
    if shard is None:
        return
    pair = tuple(shard) if isinstance(shard, tuple | list) else ()
    if len(pair) != 2 or not all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in pair) \
            or not 0 <= pair[0] < pair[1]:
        raise UserError(f"options['shard'] is {shard!r}; it takes (i, N), two whole numbers with 0 <= i < N "
                        "(e.g. (0, 4), as `run --shard 0/4`).")


@plugin_scope()
def list_plugins(directory: str | Path | None = None, *, import_plugins: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Registered plugins of every kind, with one-line descriptions and where each comes
    from; with ``directory``, also those its spec's ``plugins:`` register. Installed entry
    points that fail to import are listed with ``error`` (the reason) instead.
    ``import_plugins=False`` (``--no-plugins``): the spec's ``plugins:`` are not imported, so
    their code does not run; they are listed under ``"not imported"`` (the ``module:attr``
    as ``name``, its file as ``origin``) instead of what they register."""
    from subsetctl.plugin_loading import load_plugin_string, module_file, no_plugins_option
    from subsetctl.registry import ALL_REGISTRIES
    from subsetctl.spec import read_yaml

    not_imported: list[dict[str, Any]] = []  # the spec's plugins, with import_plugins=False
    if directory is not None:  # only its plugins: list is read, so a spec with other problems still lists them
        project = Project.find(directory)
        data, _ = read_yaml(project.spec_path)
        plugins = data.get("plugins") if isinstance(data, dict) else None
        plugins = [] if plugins is None else plugins
        if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
            raise SpecError(f"{project.spec_path}: plugins must be a list of 'module:attr' strings. "
                            f"`subsetctl validate {shell_arg(project.root)}` says more.")
        for i, plugin in enumerate(plugins if import_plugins else []):
            try:
                load_plugin_string(plugin, project.spec_path.parent)
            except UserError as exc:  # the spec's mistake, as plan and validate call it (kind spec_invalid)
                if type(exc) is not UserError:
                    raise
                error = SpecError(f"{project.spec_path}: plugins[{i}]: {exc}")
                error.plugin_traceback = getattr(exc, "plugin_traceback", "")  # type: ignore[attr-defined]
                raise error from exc
        files = {plugin: module_file(plugin.partition(":")[0]) for plugin in ([] if import_plugins else plugins)}
        not_imported = [
            {"name": plugin, "description": f"not imported ({no_plugins_option()}): what it registers is not listed",
             "origin": str(file) if file is not None else "a module not found on PYTHONPATH here"}
            for plugin, file in files.items()]
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, registry in ALL_REGISTRIES.items():
        rows: list[dict[str, Any]] = [
            {"name": name, "description": registry.broken_summary(name), "origin": registry.broken_origin(name),
             "error": why}
            for name, why in registry.broken().items()
        ]
        for entry in registry.entries():
            row: dict[str, Any] = {"name": entry.name, "description": entry.description, "origin": entry.origin}
            if kind == "strategies":
                try:
                    from subsetctl.search.base import describe_params, required_params

                    required = required_params(entry.obj)
                    row["params"] = [
                        {"name": n, "type": t, "default": d, "description": desc}
                        | ({"required": True} if n in required else {})
                        for n, t, d, desc in describe_params(entry.obj)
                    ]
                except Exception:  # noqa: BLE001 - a third-party strategy without Params
                    row["params"] = []
            rows.append(row)
        out[kind] = sorted(rows, key=lambda r: r["name"])
    if not_imported:
        out["not imported"] = not_imported
    return out


def schema_text() -> str:
    """The JSON schema of the spec as ``subsetctl schema`` prints it and ``init`` writes it
    beside a new spec (``subsetctl.schema.json``, which editors validate against)."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
