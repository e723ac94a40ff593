"""What a source's prepared data depends on besides its spec slice: local file digests and
the versions of the packages that generate data. The data stage's fingerprint includes
these, so editing a data file or upgrading a generator makes the stage stale; and each
source's key (:func:`source_key`), which its prepared folder records, so that `plan` can
tell which sources a run prepares again (:func:`prepared_again`).

Kept apart from the data stage itself so that planning and validating (which compute
fingerprints) do not import ``datasets``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from subsetctl.data.loaders import (
    BUILTIN_OPTION_MODELS,
    LoadContext,
    evals_data_dir,
    evals_file,
    expand_data_files,
    is_saved_to_disk,
    resolve_path,
)
from subsetctl.data.saving import read_saved_json
from subsetctl.errors import UserError
from subsetctl.filehash import file_fingerprint, tree_fingerprint
from subsetctl.project import STATE_DIRNAME, read_json_object
from subsetctl.spec import HuggingFaceLoader, PluginLoader, SourceSpec, Spec
from subsetctl.spec.dumps import source_json

SOURCE_FILE = ".source.json"  # hidden: not an artifact, so not in the data stage's output digest


@functools.lru_cache(maxsize=16)
def _version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (None when it is not installed), read once
    a process: ``importlib.metadata`` parses the package's METADATA file at each call
    (about 5 ms), and every ``huggingface`` source's fingerprint asks for ``datasets``' three
    times a `plan`, half of its time with 500 such sources. A package upgraded while the
    process runs is still the one imported, whose rows it makes."""
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


#: the keys under which :func:`source_fingerprint_inputs` records the version of a package that reads or
#: makes a source's rows (not a file's fingerprint), each with the distribution names it is installed as
#: (:func:`_package_version`); `report --compare` says a change of one as a package's
PACKAGE_VERSIONS: dict[str, tuple[str, ...]] = {
    "datasets": ("datasets",), "reasoning_gym": ("reasoning-gym", "reasoning_gym"), "evals": ("evals",)}


def _package_version(key: str) -> dict[str, str | None]:
    """``{key: version}``, the installed version of :data:`PACKAGE_VERSIONS`' ``key`` under the
    first of its distribution names installed (None when none is)."""
    return {key: next((version for name in PACKAGE_VERSIONS[key] if (version := _version(name))), None)}


def source_fingerprint_inputs(source: SourceSpec, spec_dir: Path, whole_files: bool = False,
                              saved_whole: bool = False) -> dict[str, Any]:
    """What a source's data depends on besides its spec: local data files (size and
    sha256, so editing one makes the data stage stale; modification times are left out
    so that copying a project or touching a file does not) and, for generated or
    packaged data, the version of the package that produces it. File hashes are cached
    in the project (see :mod:`subsetctl.filehash`). A target's ``test_loader`` adds its
    own, under ``test_loader`` (nothing when it is unset, so keys stay as they were).

    A JSON Lines, CSV or Parquet loader with ``where`` (one task of a file holding many, as a ``by`` group's
    sources read it) depends on that task's rows only (:func:`where_rows_fingerprint`):
    editing or adding another task of the file prepares that one alone.
    A ``huggingface`` loader's local dataset folder counts the files its configuration and
    split read (:func:`folder_files_read`): editing another configuration's files leaves it
    up to date; a ``save_to_disk`` folder counts its files but not the ``_fingerprint`` that
    each save writes anew (:func:`saved_to_disk_fingerprint`). ``whole_files``: the whole file (or folder) instead, as subsetctl counted it
    before (to recognise data prepared then); ``saved_whole``: a ``save_to_disk`` folder alone
    whole, the rest as today, as subsetctl counted them just before (:func:`counts_saved_to_disk`)."""
    test_loader = getattr(source, "test_loader", None)
    if test_loader is not None:
        return {**_loader_inputs(source, spec_dir, whole_files, saved_whole),
                "test_loader": _loader_inputs(source.model_copy(update={"loader": test_loader}), spec_dir,
                                              whole_files, saved_whole)}
    return _loader_inputs(source, spec_dir, whole_files, saved_whole)


def counted_otherwise_before(source: SourceSpec, spec_dir: Path) -> bool:
    """Whether :func:`source_fingerprint_inputs` of ``source`` may differ from those an
    earlier subsetctl counted (its ``whole_files``): a file loader's ``where``
    (:func:`reads_rows_where`), or a ``huggingface`` loader (or a target's test_loader)
    whose local folder is fingerprinted by the files its configuration and split read
    (:func:`folder_files_read`), not whole, or whose ``save_to_disk`` folder is counted without
    its ``_fingerprint`` (:func:`saved_to_disk_fingerprint`); a ``type: plugin`` loader naming the built-in
    ``huggingface`` (:func:`plugin_fingerprint_inputs`) too."""
    def folder_counted_otherwise(loader: HuggingFaceLoader) -> bool:
        folder = resolve_path(loader.path, Path(spec_dir))  # (a save_to_disk folder's data_files are ignored)
        return is_saved_to_disk(folder) or (not loader.data_files and folder_files_read(loader, folder) is not None)

    return reads_rows_where(source) or any(folder_counted_otherwise(loader) for loader in _folder_loaders(source))


def counts_saved_to_disk(source: SourceSpec, spec_dir: Path) -> bool:
    """Whether ``source`` (its loader, or a target's test_loader; a ``type: plugin`` one naming
    the built-in ``huggingface`` too) reads a ``save_to_disk`` folder, which subsetctl counted
    whole until it left its ``_fingerprint`` out (:func:`saved_to_disk_fingerprint`), while it
    counted the other sources as today (``saved_whole`` of :func:`source_fingerprint_inputs`)."""
    return any(is_saved_to_disk(resolve_path(loader.path, Path(spec_dir))) for loader in _folder_loaders(source))


def _folder_loaders(source: SourceSpec) -> list[HuggingFaceLoader]:
    """The ``huggingface`` loaders of ``source`` (its loader and a target's test_loader), a
    ``type: plugin`` one naming the built-in read as its options give it (none where they are
    not valid: fingerprinted as not valid, as before)."""
    from pydantic import ValidationError

    def built_in(loader: Any) -> Any:
        if isinstance(loader, PluginLoader) and loader.name == "huggingface":
            try:
                return HuggingFaceLoader.model_validate({"type": "huggingface", **loader.options})
            except ValidationError:
                return None
        return loader

    loaders = [built_in(loader) for loader in (source.loader, getattr(source, "test_loader", None))]
    return [loader for loader in loaders if isinstance(loader, HuggingFaceLoader)]


def folder_files_read(loader: HuggingFaceLoader, folder: Path) -> list[Path] | None:
    """The files of the local dataset ``folder`` (a folder of data files, or a hub
    dataset's copy with several configurations in its README.md's ``configs:``) that
    ``load_dataset`` reads for ``loader.name`` and ``loader.split`` (each part of a slice
    or sum), as ``datasets`` finds them, with the README.md and ``.huggingface.yaml`` that
    define the configurations: editing another configuration's (or split's) files changes
    nothing this source reads. None when that cannot be told (not such a folder, a
    ``save_to_disk`` folder, files outside it, a configuration or split it lacks: the whole
    folder is fingerprinted, and validate or the data stage says what is wrong). Imports
    ``datasets`` (as validate's folder checks do), only for such a folder."""
    from subsetctl.data.loaders import is_glob, is_saved_to_disk

    if not folder.is_dir() or is_saved_to_disk(folder) or is_glob(str(folder)):
        return None
    try:
        import datasets

        config = datasets.load_dataset_builder(str(folder), loader.name).config
    except Exception:  # noqa: BLE001 - validate and load_dataset say what is wrong
        return None
    by_split = {str(name): [Path(str(f)) for f in found] for name, found in (config.data_files or {}).items()}
    parts = [part.split("[")[0].strip() for part in loader.split.split("+")]
    if not by_split or any(part not in by_split for part in parts):
        return None
    read = {f for part in parts for f in by_split[part]}
    read |= {p for p in (folder / "README.md", folder / ".huggingface.yaml") if p.is_file()}
    if not all(f.is_file() and f.is_relative_to(folder) for f in read):
        return None
    return sorted(read)


#: what a ``save_to_disk`` folder's ``state.json`` holds that names no data: the fingerprint ``datasets``
#: gives the dataset's history of transforms (new each save of a dataset whose history it cannot hash, for
#: the same rows), which the folder's ``.arrow`` files, counted by content, make needless
_SAVED_STATE_LEFT_OUT = ("_fingerprint",)


def saved_to_disk_fingerprint(folder: Path, spec_dir: Path) -> dict[str, Any]:
    """The fingerprint of a ``save_to_disk`` folder (a ``Dataset``'s or a ``DatasetDict``'s):
    every file's, as :func:`~subsetctl.filehash.tree_fingerprint` gives them, but each
    ``state.json`` by its content less ``_fingerprint`` (:data:`_SAVED_STATE_LEFT_OUT`), so
    that saving the same rows again prepares nothing again, and changed rows (other
    ``.arrow`` files) or settings (format, split, files listed) do. A ``state.json`` that
    is not a JSON object counts by its bytes."""
    tree = tree_fingerprint(folder, spec_dir)
    for name in [name for name in tree.get("files", {}) if Path(name).name == "state.json"]:
        try:
            state = read_saved_json(folder / name)
        except (OSError, ValueError):
            continue
        if isinstance(state, dict):
            tree["files"][name] = {"state": {k: v for k, v in state.items() if k not in _SAVED_STATE_LEFT_OUT}}
    return tree


def reads_rows_where(source: SourceSpec) -> bool:
    """Whether ``source`` (its loader, or a target's test_loader) reads one task's rows of
    a file (``where``): its fingerprint inputs differ from those subsetctl counted
    before (:func:`source_fingerprint_inputs`'s ``whole_files``)."""
    loaders = (source.loader, getattr(source, "test_loader", None))
    return any(getattr(loader, "where", None) is not None
               or (isinstance(loader, PluginLoader) and loader.options.get("where") is not None) for loader in loaders)


def _loader_inputs(source: SourceSpec, spec_dir: Path, whole_files: bool = False,
                   saved_whole: bool = False) -> dict[str, Any]:
    """:func:`source_fingerprint_inputs` of ``source.loader`` alone."""
    loader = source.loader
    spec_dir = Path(spec_dir)
    if loader.type in ("jsonl", "csv", "parquet") and loader.where is not None and not whole_files:
        path = resolve_path(loader.path, spec_dir)
        return {"rows": where_rows_fingerprint(path, loader.where, spec_dir, loader), **_cells_read(loader, path)}
    if loader.type in ("jsonl", "csv", "parquet"):
        path = resolve_path(loader.path, spec_dir)
        return {"file": file_fingerprint(path, spec_dir), **_cells_read(loader, path)}
    if isinstance(loader, HuggingFaceLoader):
        out: dict[str, Any] = _package_version("datasets")
        local = resolve_path(loader.path, spec_dir)
        read = None if whole_files or loader.data_files else folder_files_read(loader, local)
        if read is not None:
            out["path"] = {"files": {f.relative_to(local).as_posix(): file_fingerprint(f, spec_dir) for f in read}}
        elif not (whole_files or saved_whole) and is_saved_to_disk(local):
            out["path"] = saved_to_disk_fingerprint(local, spec_dir)
        elif local.exists():
            out["path"] = tree_fingerprint(local, spec_dir)
        if loader.data_files:
            try:  # globs expanded as the loader will (a file added to a glob's folder is a change)
                files = expand_data_files(loader, spec_dir) or []
            except UserError:  # a glob matching nothing: validate and the data stage say so
                files = list(loader.data_files)
            out["data_files"] = [tree_fingerprint(Path(f), spec_dir) if Path(f).exists()
                                 else f for f in files]
        return out
    if loader.type == "reasoning_gym":
        return _package_version("reasoning_gym")
    if loader.type == "evals":
        data_dir = evals_data_dir()
        out = {**_package_version("evals"), "installed": data_dir is not None}
        try:  # the file read (the default changed once: samples.jsonl first)
            chosen = evals_file(loader, source.name)  # relative to the evals data folder when it is inside
            out["file"] = chosen.relative_to(data_dir).as_posix() if data_dir and chosen.is_relative_to(data_dir) \
                else chosen.name
        except UserError:  # validate and the data stage say what is wrong
            pass
        return out
    if isinstance(loader, PluginLoader):
        return plugin_fingerprint_inputs(source, loader, spec_dir, whole_files, saved_whole)
    return {}


def _cells_read(loader: Any, path: Path) -> dict[str, Any]:
    """``{"cells": "CRLF as LF"}`` for a CSV file whose lines end with CRLF, whose cells'
    CRLF are read as LF (:func:`~subsetctl.data.loaders.files.lf_cells`): such a file's data
    prepared while they were not held the CRLF, and is prepared again; nothing for any other
    file, whose key stays as it was."""
    from subsetctl.data.loaders.files import crlf_lines

    return {"cells": "CRLF as LF"} if loader.type == "csv" and path.is_file() and crlf_lines(path) else {}


def where_rows_fingerprint(path: Path, where: dict[str, str | int], spec_dir: Path,
                           loader: Any = None) -> dict[str, Any]:
    """The fingerprint of the rows of file ``path`` a loader's ``where`` picks (``loader``:
    its options; None, Parquet): the sha256 of those rows
    (:func:`~subsetctl.data.loaders.files.value_digests`; None when no row has the value),
    kept in the project's cache under the file's sha256 and the column (a CSV file's, its
    delimiter too: :meth:`~subsetctl.filehash.HashCache.derived`), so `plan` reads the file only
    after it changed, once for all its tasks. The file's own fingerprint when it is missing
    or cannot be read by that column (validate and the data stage say why)."""
    from subsetctl.data.loaders.files import value_digests
    from subsetctl.filehash import hash_cache

    (column, value), = where.items()
    if not path.is_file():
        return file_fingerprint(path, spec_dir)
    kind = getattr(loader, "type", "parquet")
    try:
        digests = hash_cache(spec_dir).derived(
            path, _derived_name("rows", column, loader, path),
            lambda p: value_digests(p, column) if kind == "parquet" else value_digests(p, column, loader))
    except (UserError, OSError):
        return file_fingerprint(path, spec_dir)
    return {"sha256": digests.get(json.dumps(value))}


def _derived_name(what: str, column: str, loader: Any, path: Path) -> str:
    """The name :meth:`~subsetctl.filehash.HashCache.derived` keeps ``what`` (``rows``, the
    digests; ``values``) of a file by ``column`` under, after its sha256: a Parquet file's
    digests as subsetctl named them first (``rows by task``), a text file's with its loader
    type (a CSV file's with its delimiter too, which changes its rows, and for one of CRLF
    lines :func:`_cells_read`'s note: its digests kept before then are of its cells' CRLF)."""
    kind = getattr(loader, "type", "parquet")
    if kind == "parquet":
        return f"{what} by {column}"
    return f"{kind} {what} by {column}" + (f" ({loader.delimiter!r})" if kind == "csv" else "") \
        + "".join(f" ({note})" for note in _cells_read(loader, path).values())


def listed_values(path: Path, column: str, loader: Any, spec_dir: Path) -> tuple[dict[str | int, int], int]:
    """The values of ``column`` in file ``path`` read with ``loader`` (a ``by`` group's
    options, a ``where`` source's loader), in order, each with how many rows hold it, and
    how many rows have none (null, blank): :func:`value_rows`'s. A JSON Lines or CSV file's,
    parsed whole to find them, are kept in the project's cache under the file's sha256
    (:meth:`~subsetctl.filehash.HashCache.derived`), so that `plan` and `validate` do not
    parse it again until it changes; a Parquet file's column is read (one column, about as
    quick as the cache). The dict is shared by every caller of this process (:func:`_listing`):
    read it, do not change it.

    Raises:
        UserError: as :func:`value_rows` (no such column, a value that is no text or whole
        number, a file its loader cannot read)."""
    found = _listing(path, column, loader, spec_dir)
    return found.values, found.left_out


def blank_columns(path: Path, column: str, loader: Any, spec_dir: Path) -> dict[str | int, list[str]]:
    """The columns empty or only whitespace in every row of each value of ``column`` in JSON
    Lines or CSV file ``path`` (values with none left out), found by the same parse as
    :func:`listed_values` and kept with them (a listing kept before they were is made again).
    Shared as :func:`listed_values`' dict is: read it, do not change it.

    Raises:
        UserError: as :func:`listed_values`."""
    return _listing(path, column, loader, spec_dir).blank


@dataclass(frozen=True)
class _Listing:
    """A listing (:func:`_listing`) as dicts: ``values`` (value -> rows), ``left_out`` (rows
    with no value), ``blank`` (value -> its blank columns)."""

    values: dict[str | int, int]
    left_out: int
    blank: dict[str | int, list[str]]


#: the kept listing of each text file and column (by the file's resolved path and the listing's
#: derived name) with its dicts, made again when the kept listing is another object (the file
#: changed, or the project's hash cache was made again): a file's ``where`` sources each ask for
#: its listing, twice, and making the dict of all its values again for each took `validate` of
#: 2,000 such sources of one file most of its time (quadratic in the number of sources). Keyed
#: by the kept listing's identity, it grew by every listing of every file each time a notebook
#: loaded a spec again (new hash caches, new listings). A Parquet file's: :func:`_parquet_listing`
_LISTINGS_AS_DICTS: dict[tuple[Path, str], tuple[dict[str, Any], _Listing]] = {}


def _listing(path: Path, column: str, loader: Any, spec_dir: Path) -> _Listing:
    """:func:`listed_values`' listing: ``values`` and ``left_out``, and a text file's
    ``blank`` (:func:`blank_columns`), kept as pairs (JSON keys are text, a value may be a
    number) and made dicts once per process for each kept listing. A text file's listing
    kept by an earlier subsetctl, without ``blank``, is made again: the blank-answers check of
    its ``where`` sources was silent on it until the file changed."""
    from subsetctl.data.loaders.files import TEXT_ROW_LOADERS, value_rows
    from subsetctl.filehash import hash_cache

    if getattr(loader, "type", "parquet") not in TEXT_ROW_LOADERS:
        stat = path.stat()
        return _parquet_listing(path.resolve(), column, stat.st_size, stat.st_mtime_ns)
    name = _derived_name("values", column, loader, path)
    kept = hash_cache(spec_dir).derived(path, name, lambda p: _pairs(value_rows(p, column, loader)),
                                        holds=("values", "left_out", "blank"))
    key = (path.resolve(), name)
    if (known := _LISTINGS_AS_DICTS.get(key)) is None or known[0] is not kept:
        known = _LISTINGS_AS_DICTS[key] = (kept, _as_dicts(kept))
    return known[1]


def _pairs(found: Any) -> dict[str, Any]:
    """The listing of :func:`~subsetctl.data.loaders.files.value_rows`' ``found`` as pairs."""
    return {"values": [[value, len(rows)] for value, rows in found.rows.items()], "left_out": found.left_out,
            "blank": [[value, columns] for value, columns in getattr(found, "blank", {}).items()]}


@functools.lru_cache(maxsize=256)
def _parquet_listing(path: Path, column: str, size: int, mtime_ns: int) -> _Listing:
    """A Parquet file's listing as dicts, made once per process while the file's size and
    modification time (the last two) stay: they were made again for each of its ``where``
    sources, twice, 2,000 values each time (validate of 2,000 such sources spent 12 s of its
    15 s CPU on it). Kept without the file's ``ValueRows`` (every row number of every value),
    which :func:`~subsetctl.data.loaders.files.value_rows`' own cache lets go."""
    from subsetctl.data.loaders.files import value_rows

    return _as_dicts(_pairs(value_rows(path, column)))


def _as_dicts(found: dict[str, Any]) -> _Listing:
    """A listing's pairs (:func:`_listing`) as dicts."""
    return _Listing(values={value: int(count) for value, count in found["values"]}, left_out=int(found["left_out"]),
                    blank={value: list(columns) for value, columns in found.get("blank", [])})


def plugin_fingerprint_inputs(source: SourceSpec, loader: PluginLoader, spec_dir: Path,
                              whole_files: bool = False, saved_whole: bool = False) -> dict[str, Any]:
    """What a plugin loader's data depends on, as far as it can be known without running it.

    The loader's ``name`` and ``options`` are in the spec, so changing them already makes
    the data stage stale. Besides them:

    - a plugin that names a built-in loader (``name: jsonl``) with valid options gets
      that loader's inputs (its file, package version, ...; ``whole_files``, ``saved_whole``: see
      :func:`source_fingerprint_inputs`);
    - otherwise, ``code``: the sha256 of the source file of the module that defines the
      registered loader function (``inspect.getsourcefile``), so editing the plugin makes
      the data stage stale; other modules it imports are not followed;
    - ``paths``: every string in the options (at any depth) that names an existing file,
      relative to the spec's folder or absolute, with its content fingerprint, so editing
      the data a plugin reads through its options makes the data stage stale. Folders are
      not followed (a cache or temporary folder would change on every run, or hold more
      than is worth hashing at each `plan`), nor are the project's own outputs (its state
      folder, report.md, report.json, plots/); an unreadable file is recorded as such.

    Files a plugin finds on its own (a folder's contents, a path written in its code, a
    download) are not seen: force the data stage (``subsetctl run --force data``) after
    changing them.
    File hashes are cached like every other data file's."""
    from pydantic import ValidationError

    from subsetctl.registry import LOADERS

    model = BUILTIN_OPTION_MODELS.get(loader.name)
    if model is not None:
        try:
            options = model.model_validate({"type": loader.name, **loader.options})
        except ValidationError:  # the data stage says why
            return {"builtin": loader.name, "valid": False}
        return {"builtin": _loader_inputs(source.model_copy(update={"loader": options}), spec_dir, whole_files,
                                          saved_whole)}
    # with an installed one's version; None when not registered (yet: validate and the data stage report it),
    # but a stand-in for a plugin not imported (plan --no-plugins: it says it cannot tell)
    out: dict[str, Any] = {"code": LOADERS.code_fingerprint(loader.name, spec_dir)}
    paths = _option_paths(loader.options, (), Path(spec_dir))
    out["paths"] = {key: _file_or_unreadable(path, spec_dir) for key, path in paths.items()}
    return out


def _file_or_unreadable(path: Path, spec_dir: Path) -> dict[str, Any]:
    """The content fingerprint of ``path``, or ``{"unreadable": ...}``: a file the plugin
    may never open must not stop `plan`."""
    try:
        return file_fingerprint(path, spec_dir)
    except OSError as exc:
        return {"unreadable": exc.strerror or type(exc).__name__}


def _option_paths(value: Any, key: tuple[str, ...], spec_dir: Path) -> dict[str, Path]:
    """``{"files[1]": path}`` for each string in an options tree naming an existing file
    (not a folder; see :func:`plugin_fingerprint_inputs` for what is left out)."""
    found: dict[str, Path] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            found.update(_option_paths(v, (*key, str(k)), spec_dir))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.update(_option_paths(v, (*key[:-1], f"{key[-1] if key else ''}[{i}]"), spec_dir))
    elif isinstance(value, str) and value.strip() and "\n" not in value and len(value) < 4096:
        try:
            path = resolve_path(value, spec_dir)
            if not path.is_file():
                return found
            resolved, root = path.resolve(), spec_dir.resolve()
        except (OSError, ValueError, RuntimeError):  # not a path at all (a NUL byte, a loop)
            return found
        outputs = (root / STATE_DIRNAME, root / "plots", root / "report.md", root / "report.json")
        if any(o == resolved or o in resolved.parents for o in outputs):
            return found
        found[".".join(key) or "(options)"] = path
    return found


def label_field_unread(spec: Any, source: SourceSpec) -> bool:
    """Whether ``source``'s ``loader.label_field`` cannot change its prepared data: a causal
    LM reads its answers from ``response_field``, and subsetctl's own file loaders read no
    label then (``validate`` says it is ignored). A loader a plugin registers under the
    type (``plugins:`` replacing ``jsonl``) gets the option and may read it: counted."""
    from subsetctl.plugin_loading import load_plugin_string
    from subsetctl.registry import LOADERS

    if spec.model.kind != "causal-lm" or getattr(source.loader, "label_field", None) is None:
        return False
    for plugin in spec.plugins:  # (imported already when a stage computed its inputs: cheap)
        try:
            load_plugin_string(plugin)
        except UserError:  # validate says why
            pass
    try:
        return LOADERS.origin(source.loader.type) == "built-in"
    except KeyError:
        return False


def source_dump(spec: Any, source: SourceSpec, label_field_counted: bool = False) -> dict[str, Any]:
    """``source`` as JSON for the data stage's fingerprint and a source's key: with a
    ``loader.label_field`` that cannot change its data (:func:`label_field_unread`) left at
    its default, so changing it re-prepares nothing. ``label_field_counted``: as subsetctl
    counted it before, to recognise data prepared then. (A ``label_map`` is in the dump
    only when set: it renames a classifier's labels and a causal LM's answers.)"""
    dumped = source_json(source)  # (a new dict: its loader is replaced below, not changed)
    if not label_field_counted and label_field_unread(spec, source):
        dumped["loader"] = {**dumped["loader"], "label_field": None}
    test_loader = getattr(source, "test_loader", None)  # a target's (in the dump only when set)
    if test_loader is not None and label_field_unread(spec, source.model_copy(update={"loader": test_loader})):
        dumped["test_loader"] = {**dumped["test_loader"], "label_field": None}
    return dumped


def source_context(spec: Spec, source: SourceSpec, spec_dir: Path, file_shared: bool = False) -> LoadContext:
    """The load context of ``source``: its seed is ``source.seed`` or the project seed;
    ``file_shared``: its file is read by other sources too (:attr:`LoadContext.file_shared`)."""
    seed = source.seed if source.seed is not None else spec.project.seed
    renamed = frozenset(source.label_map or ()) if spec.model.kind == "causal-lm" else frozenset()
    return LoadContext(source_name=source.name, base_dir=Path(spec_dir), kind=spec.model.kind, seed=seed,
                       renamed_answers=renamed, file_shared=file_shared)


def source_key(spec: Spec, source: SourceSpec, spec_dir: Path, before_plugins_left_out: bool = False,
               label_field_counted: bool = False, whole_files: bool = False, saved_whole: bool = False,
               inputs: dict[str, Any] | None = None) -> str:
    """What one source's prepared splits follow from: its spec (loader, split, limits,
    corruption), whether it is the target, the seed and model kind, its input files or
    generating package, with a plugin loader's code
    (:func:`~subsetctl.data.fingerprint.source_fingerprint_inputs`), the code of a plugin
    registered under its loader's built-in type, and subsetctl's results version
    (:data:`subsetctl.RESULTS_VERSION`).

    Not the spec's whole ``plugins:`` list: adding a strategy or estimator plugin loaded
    every source again (the loader code above is what a plugin can change here). Keys
    written before then had the list (``before_plugins_left_out``), and are accepted.
    Nor a ``loader.label_field`` a causal LM's loaders do not read
    (:func:`~subsetctl.data.fingerprint.source_dump`); keys written while it counted
    (``label_field_counted``) are accepted too. Nor, for a file loader's ``where``, the
    file's other rows; keys written while they counted (``whole_files``; ``saved_whole``: a
    ``save_to_disk`` folder's ``_fingerprint`` alone) are accepted. ``inputs``: today's
    :func:`source_fingerprint_inputs` of ``source`` where the caller has them (its files are
    then not counted again; not with ``whole_files`` or ``saved_whole``)."""
    from subsetctl import RESULTS_VERSION
    from subsetctl.project import fingerprint
    from subsetctl.registry import LOADERS

    loader_type = source.loader.type
    return fingerprint({
        # a plugin may register a loader under a built-in type (jsonl): its code, as for plugin loaders
        "loader_code": LOADERS.code_fingerprint(loader_type, spec_dir) if loader_type in LOADERS.names() else None,
        "source": source_dump(spec, source, label_field_counted=label_field_counted or before_plugins_left_out),
        "target": source.name == spec.target.name,
        "seed": source_context(spec, source, spec_dir).seed,
        "kind": spec.model.kind,
        "inputs": (inputs if inputs is not None and not (whole_files or saved_whole)
                   else source_fingerprint_inputs(source, spec_dir, whole_files=whole_files, saved_whole=saved_whole)),
        **({"plugins": spec.plugins} if before_plugins_left_out else {}),
        "version": RESULTS_VERSION,
    })


def key_and_inputs(spec: Spec, source: SourceSpec, spec_dir: Path) -> tuple[str, dict[str, Any]]:
    """Today's :func:`source_key` of ``source`` with the :func:`source_fingerprint_inputs` it
    counted: given to :func:`reuse_keys`, which then counts the source's files no more for today's keys."""
    inputs = source_fingerprint_inputs(source, spec_dir)
    return source_key(spec, source, spec_dir, inputs=inputs), inputs


def reuse_keys(spec: Spec, source: SourceSpec, spec_dir: Path,
               inputs: dict[str, Any] | None = None) -> list[tuple[str, ...]]:
    """The keys a source prepared earlier is reused under, looked for in this order (each
    group in every folder before the next group): today's :func:`source_key` with those an
    earlier subsetctl wrote for the same inputs (a causal LM's unread ``label_field``
    counted, a ``where``'s whole file counted), then the key written while the spec's
    ``plugins:`` list counted. The source's files are counted once for today's keys (or not
    at all, given ``inputs``, :func:`source_fingerprint_inputs`'s), again only as counted before."""
    if inputs is None:
        inputs = source_fingerprint_inputs(source, spec_dir)
    keys = (source_key(spec, source, spec_dir, inputs=inputs),)
    if label_field_unread(spec, source):  # also data prepared while subsetctl counted it
        keys += (source_key(spec, source, spec_dir, label_field_counted=True, inputs=inputs),)
    if counted_otherwise_before(source, spec_dir):  # also data prepared while the whole file (folder) counted
        keys += (source_key(spec, source, spec_dir, whole_files=True),)
        if getattr(source, "test_loader", None) is not None and counts_saved_to_disk(source, spec_dir):
            # (a target's save_to_disk folder counted whole beside a test_loader counted as today: just before)
            keys += (source_key(spec, source, spec_dir, saved_whole=True),)
    return [keys, (source_key(spec, source, spec_dir, before_plugins_left_out=True, inputs=inputs),)]


def prepared_again(spec: Spec, spec_dir: Path, folders: list[Path],
                   inputs: dict[str, Any] | None = None) -> list[str]:
    """The target's and sources' names (in the spec's order) that no folder among
    ``folders`` (earlier data-stage results) holds prepared from one of its
    :func:`reuse_keys`, by the records' keys alone: those a run prepares again, for `plan`
    to count without hashing the prepared files (one found damaged then is prepared
    again too, and `run` says so). The earlier keys are worked out only for a source no
    folder holds under today's. ``inputs``: each source's :func:`source_fingerprint_inputs` by
    its name, as the data stage's inputs hold them (``plan`` has worked them out): its files are
    not counted again; a source they lack is counted here, once."""
    def held(source: SourceSpec) -> bool:
        records = [read_json_object(folder / source.name / SOURCE_FILE) for folder in folders]
        found = [record.get("key") for record in records
                 if record is not None and isinstance(record.get("warnings"), list)]
        if not found:
            return False
        counted = (inputs or {}).get(source.name)
        today = counted if isinstance(counted, dict) else source_fingerprint_inputs(source, spec_dir)
        if source_key(spec, source, spec_dir, inputs=today) in found:
            return True
        # (the keys an earlier subsetctl wrote only now: those counting the source's files otherwise count them again)
        return any(key in found for group in reuse_keys(spec, source, spec_dir, today) for key in group)

    return [source.name for source in [spec.target, *spec.sources] if not held(source)]
