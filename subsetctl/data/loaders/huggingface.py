"""The ``huggingface`` loader: ``datasets.load_dataset`` on a hub id or a local folder,
with class names and JSON columns turned into text and hub access refused offline.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subsetctl.data.loaders import common
from subsetctl.data.loaders.chat import common_columns
from subsetctl.data.loaders.common import LoadContext, close_column, one_based_row
from subsetctl.data.loaders.files import (
    _glob_escaped,
    expand_data_files,
    is_saved_to_disk,
    json_text_columns,
    json_text_decoder,
    list_decoder,
    narrow_float_decoders,
    resolve_path,
    struct_decoder,
    with_decoded,
)
from subsetctl.errors import UserError, as_typed, shown_path
from subsetctl.hub import cache_write_problem
from subsetctl.registry import LOADERS
from subsetctl.spec import HuggingFaceLoader

if TYPE_CHECKING:
    from datasets import Dataset


def _class_names_of(loaded: Any) -> dict[str, Any]:
    """The ``ClassLabel`` columns of a Hugging Face dataset (most classification datasets
    store their labels so): column -> feature, whose ``int2str`` gives a class id's name."""
    import datasets

    return {name: feature for name, feature in loaded.features.items() if isinstance(feature, datasets.ClassLabel)}


def _with_class_names(records: list[dict[str, Any]], classes: dict[str, Any]) -> list[dict[str, Any]]:
    """``records`` with the class ids of ``ClassLabel`` columns as their names ("positive",
    not 1), as a target written in text names them; -1 (no label, as in hidden test
    splits) becomes null. Ids outside the names stay as they are."""
    for record in records:
        for column, feature in classes.items():
            value = record.get(column)
            if isinstance(value, int) and not isinstance(value, bool):
                record[column] = None if value < 0 else feature.int2str(value) if value < feature.num_classes else value
    return records


def _json_columns_of(loaded: Any, messages_field: str | None = None,
                    texts: set[str] | frozenset[str] = frozenset()) -> dict[str, Callable[[Any], Any]]:
    """The columns of a Hugging Face dataset that hold a ``Json`` feature (datasets, from 4.7,
    stores values that mix types, answers ``42`` and ``"forty"``, as JSON text), at the top
    or nested (a chat's ``content``, text in some messages and a list of parts in others,
    is ``List({"role": ..., "content": Json})``): column -> what gives a value back. In the
    ``messages_field`` column a number, boolean or null read so stays its JSON text: datasets
    keeps a string that is valid JSON as that JSON (the answer ``"4"`` is stored as ``4``),
    and a message's content is text or a list of parts, never a number. So too in the
    ``texts`` columns (:func:`~subsetctl.data.loaders.files.json_text_columns`) when the
    column itself is ``Json``: the answer ``"1.50"`` is not ``"1.5"``, nor ``"null"`` a
    missing answer."""
    import datasets

    decoders = {name: _json_decoder(feature, name == messages_field
                                    or (name in texts and isinstance(feature, datasets.Json)))
                for name, feature in loaded.features.items()}
    return {name: decoder for name, decoder in decoders.items() if decoder is not None}


def _json_decoder(feature: Any, scalars_as_text: bool = False) -> Callable[[Any], Any] | None:
    """What turns a value stored under ``feature`` into one with the JSON text of each
    ``Json`` feature in it (in lists and structs too) decoded, with ``scalars_as_text``
    that of a number, a boolean or null kept; None when it has no ``Json`` feature."""
    import datasets

    if isinstance(feature, datasets.Json):
        # a feature saved with ``decode=False`` refuses to decode; a decoding one reads the same text
        decoding = feature if feature.decode else datasets.Json()
        return json_text_decoder(decoding.decode_example, scalars_as_text)
    if isinstance(feature, (datasets.List, datasets.LargeList)):
        return list_decoder(_json_decoder(feature.feature, scalars_as_text))
    if isinstance(feature, dict):
        return struct_decoder({key: decoder for key, sub in feature.items()
                               if (decoder := _json_decoder(sub, scalars_as_text)) is not None})
    return None


#: the loader options that name a column
_COLUMN_OPTIONS = ("prompt_field", "response_field", "label_field", "text_field", "messages_field")


def _columns_named(options: Any, kind: str) -> list[tuple[str, str]]:
    """``(option, column)`` of each column a loader's ``options`` name (each of a list
    ``prompt_field``'s) that a model of ``kind`` reads: a classifier's ``label_field``, not
    its ``response_field``; a causal LM's the other way round."""
    named = []
    unread = "response_field" if kind == "classifier" else "label_field"
    for option in (o for o in _COLUMN_OPTIONS if o != unread):
        value = getattr(options, option, None)
        for column in ([value] if isinstance(value, str) else list(value or [])):
            named.append((option, column))
    return named


def struct_field_of(features: Any, name: str) -> tuple[str, list[str], Any] | str | None:
    """Where the dotted column name ``name`` (``meta.question``) points in a dataset with
    ``features``: ``(column, the fields under it, the field's feature)`` when ``meta`` is a
    struct column (a dict of features) holding ``question`` (nested structs too:
    ``meta.source.url``); what is wrong, for messages, when ``meta`` is a column but no
    struct, or lacks a part; None when ``name`` is a column itself or has no dot, or its
    first part is not a column (the missing column's own error says so)."""
    if name in features or "." not in name:
        return None
    column, *path = name.split(".")
    if column not in features:
        return None
    feature, walked = features[column], column
    for part in path:
        if not isinstance(feature, dict):
            return (f"{walked!r} holds {type(feature).__name__} values, not a struct (a record of named fields), "
                    f"so it has no field {part!r}")
        if part not in feature:
            return (f"the struct column {walked!r} has no field {part!r}; its fields are "
                    f"{', '.join(repr(key) for key in feature)}")
        feature, walked = feature[part], f"{walked}.{part}"
    return column, path, feature


def _struct_fields(loaded: Any, options: HuggingFaceLoader, ctx: LoadContext,
                   where: str) -> dict[str, tuple[str, list[str], Any]]:
    """The dotted column names the loader's options give (``prompt_field: meta.question``),
    each with the struct column and fields it reads (:func:`struct_field_of`); a part that
    is not there is a :class:`UserError` naming the option and the fields there are."""
    found: dict[str, tuple[str, list[str], Any]] = {}
    for option, name in _columns_named(options, ctx.kind):
        field = struct_field_of(loaded.features, name)
        if isinstance(field, str):
            raise UserError(f"Source {ctx.source_name!r}: loader.{option} {name!r} names a field of a struct column of "
                            f"{where}, and {field}. Set loader.{option} to a column, or to a field of a struct "
                            "column as a dotted path (`column.field`).")
        if field is not None:
            found[name] = field
    return found


def _with_struct_fields(batch: Any, fields: dict[str, tuple[str, list[str], Any]]) -> Any:
    """The Arrow table ``batch`` with a column for each dotted name in ``fields``: the
    values of that field of its struct column (null where the struct is)."""
    import pyarrow.compute as pc

    for name, (column, path, _) in fields.items():
        if column in batch.column_names and name not in batch.column_names:
            batch = batch.append_column(name, pc.struct_field(batch.column(column), path))
    return batch


def describe_exception(exc: BaseException, limit: int = 300) -> str:
    """``"Type: message"`` of ``exc`` followed by its causes (``__cause__``, else
    ``__context__``) as ``(caused by Type: message)``: library errors such as
    ``DatasetGenerationError`` say only that something failed and keep the reason in
    their cause. Whitespace is flattened, each message is cut to ``limit`` characters and
    a cause repeating its effect's text is left out."""

    def one(e: BaseException) -> str:
        text = " ".join(str(e).split())
        text = text if len(text) <= limit else text[: limit - 3] + "..."
        return f"{type(e).__name__}: {text}" if text else type(e).__name__

    def cause_of(e: BaseException) -> BaseException | None:
        return e.__cause__ or (None if e.__suppress_context__ else e.__context__)

    parts = [one(exc)]
    seen = {id(exc)}
    cause = cause_of(exc)
    while cause is not None and id(cause) not in seen and len(parts) < 5:
        seen.add(id(cause))
        text = one(cause)
        if text not in parts:
            parts.append(text)
        cause = cause_of(cause)
    return parts[0] + "".join(f" (caused by {p})" for p in parts[1:])


def _check_single_split(
    loaded: Any, options: HuggingFaceLoader, source: str, where: str, notices: list[str]
) -> None:
    """A plain ``Dataset.save_to_disk`` folder holds one dataset, not named splits: it is
    read whole for the default ``loader.split`` (``train``); any other split must be the
    one it was saved from (when the folder records it), instead of being ignored. (Whether
    the spec wrote ``split: train`` or left the default cannot be told apart once
    ``source_files`` are expanded, so ``train`` always reads the whole dataset.)"""
    saved = str(loaded.split) if getattr(loaded, "split", None) is not None else None
    # what datasets records is loose ("test[:50%]", "validation+test", "train" after a
    # train_test_split of train, None after concatenate_datasets): compare base names
    # only, and say so rather than refuse a folder that loads fine
    names = {part.split("[")[0].strip() for part in saved.split("+")} if saved else set()
    if options.split == "train" or options.split in names:
        return
    held = f"the split {saved!r}" if saved else "one dataset without named splits"
    notices.append(
        f"Source {source!r}: {where} was written by Dataset.save_to_disk and holds {held}: loader.split "
        f"{options.split!r} does not apply, so all its rows are read. Remove loader.split, or save a "
        "DatasetDict (DatasetDict.save_to_disk) with that split."
    )


def saved_dataset_problem(folder: Path, split: str | None = None) -> str | None:
    """What keeps ``datasets.load_from_disk`` from reading the ``save_to_disk`` folder
    ``folder`` (a ``DatasetDict``'s split ``split``), as its metadata shows: a
    ``dataset_dict.json`` that is not JSON (or not an object listing its ``splits``), the split's folder, its ``state.json`` or ``dataset_info.json`` missing (a folder copied without
    them), metadata that is not JSON, features this ``datasets`` cannot read (a feature
    type a newer one wrote), a data file ``state.json`` lists missing. None when none of
    these shows. ``load_from_disk`` said only that the folder "is neither a `Dataset`
    directory nor a `DatasetDict` directory", or "Feature type 'X' not found", and validate
    passed such a folder."""
    import datasets

    from subsetctl.data.saving import read_saved_json

    dataset = folder / split if split is not None else folder
    again = "copy the folder whole, or save the dataset again with save_to_disk"
    if split is not None:
        try:
            listing = read_saved_json(folder / "dataset_dict.json")
        except (OSError, ValueError) as exc:
            return f"{shown_path(folder)}'s dataset_dict.json cannot be read as JSON ({exc}): {again}"
        if not isinstance(listing, dict) or not isinstance(listing.get("splits"), list):  # ([1], {}: no splits)
            what = "is not a JSON object" if not isinstance(listing, dict) else 'has no list of "splits"'
            return f"{shown_path(folder)}'s dataset_dict.json {what}: {again}"
    if not dataset.is_dir():
        return f"{shown_path(folder)}'s dataset_dict.json names the split {split!r}, but it has no folder {split!r}: {again}"
    missing = [name for name in ("state.json", "dataset_info.json") if not (dataset / name).is_file()]
    if missing:
        return (f"{shown_path(dataset)} has no {' and no '.join(missing)}, which datasets.load_from_disk reads "
                f"beside the data files: {again}")
    try:
        state = read_saved_json(dataset / "state.json")
        info = read_saved_json(dataset / "dataset_info.json")
    except (OSError, ValueError) as exc:
        return f"{shown_path(dataset)}'s state.json or dataset_info.json cannot be read as JSON ({exc}): {again}"
    not_objects = [name for name, value in (("state.json", state), ("dataset_info.json", info))
                   if not isinstance(value, dict)]
    if not_objects:  # ([1]: datasets' readers call .items() or .get() on it)
        return f"{shown_path(dataset)}'s {' and '.join(not_objects)} is not a JSON object: {again}"
    try:
        if info.get("features") is not None:
            datasets.Features.from_dict(info["features"])
    except (ValueError, KeyError, TypeError) as exc:
        said = " ".join(str(exc).split(". Available")[0].split())
        return (f"{shown_path(dataset / 'dataset_info.json')} holds features datasets {datasets.__version__} (installed) "
                f"cannot read ({said}), as a folder written by a newer datasets may: upgrade datasets "
                "(pip install -U datasets), or save the dataset again with this version")
    listed = state.get("_data_files")
    lost = [entry["filename"] for entry in listed or [] if isinstance(entry, dict) and "filename" in entry
            and not (dataset / str(entry["filename"])).is_file()]
    if lost:
        return f"{shown_path(dataset)} lacks the data file {lost[0]} its state.json lists: {again}"
    return None


def saved_dict_splits(folder: Path) -> list[str]:
    """The splits a ``DatasetDict``'s ``save_to_disk`` folder ``folder`` lists in its
    ``dataset_dict.json``.

    Raises:
        OSError, ValueError, KeyError, TypeError: no such file, or not such a listing."""
    from subsetctl.data.saving import read_saved_json

    return [str(split) for split in read_saved_json(folder / "dataset_dict.json")["splits"]]


def _load_from_disk(folder: Path) -> Any:
    """``datasets.load_from_disk(folder)`` (a ``Dataset`` or a ``DatasetDict``) without the
    output format each dataset was saved with: the rows are read as Arrow batches whatever
    it is, and a folder saved after ``set_format("tensorflow")`` (or ``"jax"``) was refused
    where that library is not installed ("Tensorflow needs to be installed ..."). A folder
    :func:`~subsetctl.data.saving.load_saved` cannot read goes to ``load_from_disk`` and its errors."""
    import datasets

    from subsetctl.data.saving import load_saved

    if (folder / "dataset_dict.json").is_file():
        try:
            splits = saved_dict_splits(folder)
        except (OSError, ValueError, KeyError, TypeError):
            splits = []
        read = {split: load_saved(folder / split, formatted=False) for split in splits}
        if read and all(dataset is not None for dataset in read.values()):
            return datasets.DatasetDict(read)
    elif (dataset := load_saved(folder, formatted=False)) is not None:
        return dataset
    return datasets.load_from_disk(str(folder))


def split_meant_note(split: str, splits: list[str]) -> str:
    """`` (did you mean 'train'?)`` where the split ``split`` (its name: a slice or sum's
    first part it lacks) is not among ``splits`` but close to one of them (``tran``,
    ``Train``, ``tset``), as a mistyped key or column is told; "" otherwise."""
    names = [part.split("[")[0].strip() for part in split.split("+")]
    missing = next((name for name in names if name not in splits), None)
    close = close_column(missing, splits, cutoff=0.7) if missing is not None else None
    return f" (did you mean {close!r}?)" if close else ""


def unknown_split_message(exc: BaseException) -> tuple[str, list[str]] | None:
    """The split and the splits of ``datasets``' ``ValueError('Unknown split "tran". Should
    be one of ['train'].')`` (load_dataset's, for a split the dataset lacks); None for any
    other error."""
    import ast

    found = re.fullmatch(r'Unknown split "(.*)"\. Should be one of (\[.*\])\.?', str(exc).strip(), re.DOTALL)
    if not isinstance(exc, ValueError) or found is None:
        return None
    try:
        splits = ast.literal_eval(found.group(2))
    except (ValueError, SyntaxError):
        return None
    return found.group(1), [str(split) for split in splits]


def saved_split_slice_note(split: str, splits: list[str]) -> str:
    """What to add where ``split`` is not one of the ``splits`` of a ``DatasetDict`` written
    by ``save_to_disk`` but names one of them with a slice or a sum (``train[:10%]``,
    ``train+validation``): ``load_dataset`` reads those from a dataset's data files, while
    ``load_from_disk`` takes a split's name only, and the error said only "set split to one
    of them", with no word on why the split written was not one. "" otherwise."""
    parts = [part.split("[")[0].strip() for part in split.split("+")]
    if split in splits or not all(part in splits for part in parts):
        return ""
    return (f" (a slice or sum such as {split!r} is read by load_dataset from a dataset's data files, but a "
            "folder written by save_to_disk is read by split name only; bound a split's rows with max_examples "
            "or split counts instead)")


#: the file loader that reads a data file, by the file's suffixes (compression aside)
_LOADER_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
#: the ``datasets`` builder that reads one, for files no built-in loader takes (a JSON array)
_BUILDER_BY_SUFFIX = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}


def file_as_dataset_path_problem(file: Path, written: str) -> str:
    """What to say about a ``huggingface`` loader whose ``path`` (``written`` in the spec)
    is the data file ``file``: load_dataset takes a folder or a hub id there, and said it
    "couldn't find any data file" at a file that is there. The advice names the loader (or
    builder) for the file's type."""
    suffixes = [s for s in file.suffixes if s not in (".gz", ".gzip")]
    suffix = suffixes[-1].lower() if suffixes else ""
    loader, builder = _LOADER_BY_SUFFIX.get(suffix), _BUILDER_BY_SUFFIX.get(suffix)
    advice = []
    if loader:
        advice.append(f"use `type: {loader}` with this path" + (" and `delimiter: tab`" if suffix == ".tsv" else ""))
    if builder:
        advice.append(f"keep `type: huggingface` with `path: {builder}` and `data_files: [{written}]`")
    advice.append("point loader.path at the dataset's folder")
    return (f"{file} is a file; the huggingface loader reads a dataset folder (or a hub id), not one data file: "
            f"{', or '.join(advice)}")


def _refuse_unreachable_hub_dataset(path: str, local: Path, source_name: str) -> None:
    """A hub dataset that is in no local cache, on a machine that cannot reach the hub,
    fails at once instead of after the hub client's half minute of retries (``validate``
    says the same before any stage runs)."""
    from subsetctl.hub import (
        cache_looked_in,
        dataset_cached,
        datasets_offline_reason,
        hub_reachable,
        is_file_builder,
        looks_local,
        unreachable_reason,
    )

    offline = datasets_offline_reason()  # (datasets then asks no hub, reachable or not)
    if looks_local(path) or local.exists() or is_file_builder(path) or dataset_cached(path) \
            or (offline is None and hub_reachable()):  # a path meant as local: load_dataset says it is missing
        return
    raise UserError(
        f"Source {source_name!r}: {as_typed(path)} is a Hugging Face hub dataset id, but {offline or unreachable_reason()} and "
        f"the local Hugging Face cache does not hold it ({cache_looked_in('dataset')}). Point loader.path at a local copy (a folder written by "
        f"save_to_disk, or use the jsonl, csv or parquet loader on its files), or {'unset HF_DATASETS_OFFLINE and ' if offline else ''}"
        "run where the hub is reachable."
    )


def file_builder_options(path: str, name: str | None, data_files: list[str] | None) -> dict[str, Any]:
    """``load_dataset`` options that make ``datasets``' csv builder read every cell as the
    text the file holds, as the ``csv`` loader does: the builder lets pandas guess each
    column's type, so gold answers ``2`` and ``1.50`` in one column became "2.0" and "1.5",
    ``007`` "7.0", and an answer ``NA`` or ``None`` a missing value. Every column of every
    file (from their headers: the splits' files may differ, a test split without answers)
    gets a ``str`` converter. For local text files (``.txt``, the ``text`` builder), the
    encoding ``utf-8-sig``: the builder reads UTF-8 and kept the byte-order mark Windows
    editors write (Notepad's "UTF-8 with BOM") as a U+FEFF at the start of the first row's
    text, which the other loaders drop. Empty for anything that is not local CSV or text
    files (a Parquet or JSON folder, a hub id: left as datasets reads it), and for files
    whose header cannot be read here (``load_dataset`` then says why)."""
    import datasets
    import pandas as pd
    from datasets.packaged_modules.csv.csv import CsvConfig
    from datasets.packaged_modules.text.text import TextConfig

    try:
        config = datasets.load_dataset_builder(path, name, data_files=data_files).config
    except Exception:  # noqa: BLE001  (load_dataset, called next, reports the problem)
        return {}
    if isinstance(config, TextConfig) and config.data_files and config.encoding.lower().replace("_", "-") == "utf-8":
        return {"encoding": "utf-8-sig"}  # (utf-8-sig reads a file without a BOM as utf-8 does)
    if not isinstance(config, CsvConfig) or not config.data_files:
        return {}
    files = [str(f) for split_files in config.data_files.values() for f in split_files]
    if not files or not all(Path(f).is_file() for f in files):
        return {}
    columns: dict[str, None] = {}
    try:
        for file in files:
            columns.update(dict.fromkeys(pd.read_csv(file, sep=config.sep, nrows=0, encoding="utf-8-sig").columns))
    except Exception:  # noqa: BLE001  (pandas fails in many ways: load_dataset says why)
        return {}
    return {"converters": {column: str for column in columns}, "keep_default_na": False}


class _FailedFiles(logging.Handler):
    """The files ``datasets``' file builders log "Failed to read file '...' with error ..."
    (:attr:`PATTERN`) for, while in effect: the error load_dataset raises then (a DatasetGenerationError, "An
    error occurred while generating the dataset") names none, so a glob of files one of
    which has other column types said which only in that stray log line, printed above the
    error. The line is kept from ``datasets``' own handlers: the error names the file."""

    #: the json builder's "Failed to load JSON from file", the parquet builder's "Failed to read
    #: schema from" too (a JSON Lines line with a trailing comma, a Parquet file cut short)
    PATTERN = r"Failed to (?:read file|load JSON from file|read schema from) '(.+?)' with error"

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.files: list[str] = []
        self._logger = logging.getLogger("datasets")
        self._muted: list[logging.Handler] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(self.PATTERN, str(record.msg))
        if found and found.group(1) not in self.files:
            self.files.append(found.group(1))

    def _keep(self, record: logging.LogRecord) -> bool:
        return re.match(self.PATTERN, str(record.msg)) is None

    def __enter__(self) -> list[str]:
        self._muted = list(self._logger.handlers)
        for handler in self._muted:
            handler.addFilter(self._keep)
        self._logger.addHandler(self)
        return self.files

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        for handler in self._muted:
            handler.removeFilter(self._keep)


def _fresh_local_read(local: Path) -> dict[str, str]:
    """``load_dataset`` options that read a local dataset folder from its files, not from
    ``datasets``' cache: a configuration its README.md names (``name: c2``) is cached under the
    folder's name, the configuration's and a hash of the README alone, so an edited data file of
    it, or another project's folder of that name and README, gave the rows cached before, while
    the data stage said the source was loaded again. The data stage reads a source only when its
    files or settings changed, so building it again costs no more than reading its files. The
    split sizes are not checked: ``datasets`` compares them with those it cached before, and a
    row added to the file was refused as a NonMatchingSplitsSizesError."""
    return {"download_mode": "force_redownload", "verification_mode": "no_checks"} if local.is_dir() else {}


@LOADERS.register("huggingface")
def load_huggingface(options: HuggingFaceLoader, ctx: LoadContext) -> Dataset:
    """Anything ``datasets.load_dataset`` reads: a local folder or a hub id; a folder written
    by ``save_to_disk`` is read with ``datasets.load_from_disk``. Local CSV files are read
    with every cell as text, local text files without a byte-order mark (:func:`file_builder_options`)."""
    import datasets

    from subsetctl.hub import is_file_builder

    local = resolve_path(options.path, ctx.base_dir)
    path = str(local) if local.exists() else options.path
    try:
        data_files = expand_data_files(options, ctx.base_dir)
    except UserError as exc:
        raise UserError(f"Source {ctx.source_name!r}: {exc}") from None
    where = f"dataset {as_typed(path)}" + (f" (configuration {options.name!r})" if options.name else "")
    if data_files and not local.exists() and is_file_builder(options.path):  # the user's own files: named
        where += f" of {data_files[0]}" if len(data_files) == 1 else f" of {len(data_files)} files ({data_files[0]}, ...)"
    if local.is_file():
        raise UserError(f"Source {ctx.source_name!r}: loader.path {file_as_dataset_path_problem(local, options.path)}.")
    _refuse_unreachable_hub_dataset(path, local, ctx.source_name)
    failed = _FailedFiles()
    try:
        if is_saved_to_disk(local):  # written by Dataset(Dict).save_to_disk, which load_dataset refuses
            loaded = _load_from_disk(local)
            if isinstance(loaded, datasets.DatasetDict):
                if options.split not in loaded:
                    raise UserError(
                        f"Source {ctx.source_name!r}: {where} has the splits {', '.join(loaded)}, not "
                        f"{options.split!r}{split_meant_note(options.split, list(loaded))}. Set loader.split to one "
                        f"of them{saved_split_slice_note(options.split, list(loaded))}."
                    )
                loaded = loaded[options.split]
            else:
                _check_single_split(loaded, options, ctx.source_name, where, ctx.notices)
        else:
            if data_files is not None:  # load_dataset reads each file as a glob: /x/exp [2]/a.jsonl matched nothing
                data_files = [str(_glob_escaped(Path(f))) if Path(f).is_absolute() and Path(f).exists() else f
                              for f in data_files]
            as_read = file_builder_options(path, options.name, data_files) if local.exists() or is_file_builder(path) else {}
            with failed:
                loaded = datasets.load_dataset(path, options.name, split=options.split, data_files=data_files,
                                               **as_read, **_fresh_local_read(local))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001  (load_dataset fails in many library-specific ways)
        if is_saved_to_disk(local):  # not load_dataset's, nor anything of its options
            in_dict = options.split if (local / "dataset_dict.json").is_file() else None
            problem = saved_dataset_problem(local, in_dict) or (
                f"{describe_exception(exc)} (datasets {datasets.__version__} is installed; copy the folder whole, or "
                "save the dataset again with save_to_disk)")
            raise UserError(f"Source {ctx.source_name!r}: datasets.load_from_disk could not read {where}, a folder "
                            f"written by save_to_disk: {problem}.") from None
        if (cache_problem := cache_write_problem(exc, default="datasets")) is not None:
            raise UserError(f"Source {ctx.source_name!r}: datasets.load_dataset could not write its cache while "
                            f"loading {where}: {cache_problem} Nothing in the spec needs changing.") from None
        if (unknown := unknown_split_message(exc)) is not None:  # (datasets' 'Unknown split "tran". Should be ...')
            split, splits = unknown
            raise UserError(
                f"Source {ctx.source_name!r}: {where} has the splits {', '.join(splits)}, not {split!r}"
                f"{f' (of loader.split {options.split!r})' if split != options.split else ''}"
                f"{split_meant_note(split, splits)}. Set loader.split to one of them."
            ) from None
        reading = f" (reading {', '.join(failed.files)})" if failed.files else ""
        described = describe_exception(exc)  # ('Unknown split "test". Should be one of [...].' ends a sentence)
        raise UserError(
            f"Source {ctx.source_name!r}: datasets.load_dataset could not load {where}, split "
            f"{options.split!r}{reading}: {described}{'' if described.endswith('.') else '.'} Check loader.path, "
            "loader.name, loader.split and loader.data_files (hub ids need network access; the files of one "
            "dataset must have the same columns with the same types)."
        ) from None
    if not isinstance(loaded, datasets.Dataset):
        raise UserError(
            f"Source {ctx.source_name!r}: {where} did not give one split as a Dataset (got "
            f"{type(loaded).__name__}). Set loader.split."
        )
    # the rows as stored, a batch at a time: not through the dataset's format (a saved
    # "numpy" format turned numbers into JSON strings) or its feature decoding (an Image
    # column became a PIL object whose text holds a memory address), like ``to_list()``
    classes = _class_names_of(loaded)
    as_json = {**narrow_float_decoders(loaded.data.schema),
               **_json_columns_of(loaded, options.messages_field, json_text_columns(options, ctx.kind))}
    fields = _struct_fields(loaded, options, ctx, where)  # dotted names: a struct column's fields
    for name, (_, _, feature) in fields.items():  # read as such a column would be
        if isinstance(feature, datasets.ClassLabel):
            classes[name] = feature
        if (decoder := _json_decoder(feature, name == options.messages_field
                                     or name in json_text_columns(options, ctx.kind))) is not None:
            as_json[name] = decoder

    def records(batch: Any) -> list[dict[str, Any]]:
        rows = with_decoded(_with_struct_fields(batch, fields).to_pylist(), as_json)
        return _with_class_names(rows, classes) if classes else rows

    batch_size = common.batch_rows(loaded.data.nbytes, loaded.num_rows)  # (fewer rows where they are long)

    def fetch(wanted: Any) -> Iterator[tuple[int, dict[str, Any]]]:  # the kept rows read again
        indices, start = wanted.tolist(), 0
        for batch in loaded.select(indices).with_format("arrow").iter(batch_size=batch_size):
            # (a zip of one iterator over every batch took an index it then dropped at each batch's end)
            yield from zip(indices[start:start + batch.num_rows], records(batch))
            start += batch.num_rows

    builder = common_columns(options, ctx, where, one_based_row, [*loaded.column_names, *fields], fetch=fetch)
    checked = [c for c in builder.fields if c in loaded.column_names or c in fields]
    for batch in loaded.with_format("arrow").iter(batch_size=batch_size):
        # past the rows mapped as they come, only the columns every row is checked for
        batch = _with_struct_fields(batch, fields)
        builder.add_all(records(batch if builder.mapping_all else batch.select(checked)))
    return builder.finish()
