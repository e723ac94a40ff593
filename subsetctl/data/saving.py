"""Save one prepared split as ``Dataset.save_to_disk`` does, without its per-call cost.

``save_to_disk`` spends about 9 ms on a split of a few rows in bookkeeping (a shard
``select``, an ``ArrowWriter`` that casts every batch to its schema, deep copies of the
features): half of the data stage of a project of 2,000 small sources. :func:`save_split`
writes the same three files with pyarrow: ``data-00000-of-00001.arrow`` (an Arrow stream
whose schema carries the ``huggingface`` features metadata, in record batches of
``save_to_disk``'s size), ``state.json`` and ``dataset_info.json``, byte for byte what
``save_to_disk`` writes for a split it puts in one shard, so the folder loads back with
``Dataset.load_from_disk`` and :func:`~subsetctl.data.stage.split_columns` as before and a
source saved either way is the same files (the data stage's output digest does not
depend on which subsetctl saved it). Anything else, a split ``save_to_disk`` would shard
or whose features are not plain values (an image is embedded by its writer), is saved
with ``save_to_disk`` itself. :func:`load_saved` reads such a folder back as
``Dataset.load_from_disk`` does, without its per-call cost. :func:`read_saved_json` reads
the metadata files of such a folder for every reader of them here.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from datasets import Dataset

DATA_FILE = "data-00000-of-00001.arrow"  # save_to_disk's name for a split's only shard
_STATE_KEYS = ("_fingerprint", "_format_columns", "_format_kwargs", "_format_type", "_output_all_columns")
#: a split's features as :func:`_schema_and_info` keys them: (name, dtype, id) of each plain value
FeaturesKey = tuple[tuple[str, str, "str | None"], ...]
#: the Arrow schema and ``dataset_info.json`` content of splits whose info is their features alone, by
#: :data:`FeaturesKey`: built with datasets' ``asdict`` (twice), they were most of a small split's layout
#: (0.77 ms of it; 6,000 splits alike at 2,000 sources)
_PLAIN_LAYOUTS: dict[FeaturesKey, tuple[pa.Schema, dict[str, Any]]] = {}
_PLAIN_LAYOUTS_KEPT = 64


def read_saved_json(path: str | Path) -> Any:
    """The JSON value in ``path``, a metadata file ``save_to_disk`` writes (``state.json``,
    ``dataset_info.json``, ``dataset_dict.json``): the one reader of them for validate's
    checks, the loader, the data stage and the fingerprints, so that a file none can read is
    the same user error (or the same fallback) in each. Python's JSON reader raises a
    ``RecursionError`` for lists or objects nested past its depth (``[[[[...``), which their
    ``except ValueError`` let through as an internal error: it is a ``ValueError`` here.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not UTF-8 text, not JSON, or JSON nested deeper than Python reads."""
    try:
        with open(path, encoding="utf-8") as file:
            return json.loads(file.read())
    except RecursionError:
        raise ValueError(f"{os.path.basename(path)} is nested deeper than Python's JSON reader goes "
                         "(thousands of lists or objects one in another)") from None


def save_split(dataset: Dataset, folder: Path) -> None:
    """Write ``dataset`` (one split, any ``select`` applied) to the new folder ``folder``
    as ``dataset.save_to_disk(folder)`` would."""
    layout = _one_shard_layout(dataset)
    if layout is None:
        dataset.save_to_disk(str(folder))
        return
    from subsetctl.data.loaders import dataset_table

    schema, info, batch_size = layout
    folder.mkdir(parents=True, exist_ok=True)
    _write_stream(folder / DATA_FILE, dataset_table(dataset), schema, batch_size)
    state = {key: dataset.__dict__[key] for key in _STATE_KEYS}
    state["_split"] = str(dataset.split) if dataset.split is not None else None
    state["_data_files"] = [{"filename": DATA_FILE}]
    (folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({key: info[key] for key in sorted(info)}, indent=2),
                                              encoding="utf-8")


def _one_shard_layout(dataset: Dataset) -> tuple[pa.Schema, dict[str, Any], int] | None:
    """The Arrow schema (with datasets' metadata), the ``dataset_info.json`` content and
    the record batch size ``save_to_disk`` writes ``dataset`` with, or None when it would
    write it otherwise than this module can (more than one shard; features that are not
    plain values, or a JSON-unfriendly format)."""
    from datasets import config
    from datasets.utils.py_utils import convert_file_size_to_int

    features = dataset._info.features  # (the public .features and .info are deep copies)
    if not all(getattr(feature, "_type", None) == "Value" for feature in features.values()):
        return None
    if dataset.list_indexes() or dataset._format_kwargs:
        return None
    nbytes = dataset.data.nbytes  # save_to_disk's estimate (Dataset._estimate_nbytes, plain columns): an int
    if dataset._indices is not None and len(dataset.data):
        nbytes = nbytes * len(dataset._indices) // len(dataset.data)
    if int(nbytes / convert_file_size_to_int(config.MAX_SHARD_SIZE)) + 1 != 1 or len(dataset) == 0:
        return None
    return (*_schema_and_info(dataset), _save_to_disk_batch_size(len(dataset), nbytes))


def _schema_and_info(dataset: Dataset) -> tuple[pa.Schema, dict[str, Any]]:
    """The Arrow schema (with datasets' metadata) and ``dataset_info.json`` content of
    ``dataset``, whose features are plain values: built once for every split whose info is
    the same features alone (:data:`_PLAIN_LAYOUTS`), as every split the data stage saves is;
    the caller does not change them."""
    import pyarrow as pa
    from datasets import DatasetInfo
    from datasets.arrow_writer import ArrowWriter
    from datasets.utils.py_utils import asdict

    info = dataset._info
    key = tuple((name, feature.dtype, feature.id) for name, feature in info.features.items()) \
        if _features_alone(info) else None
    if key is not None and key in _PLAIN_LAYOUTS:
        return _PLAIN_LAYOUTS[key]
    schema = pa.schema(info.features.type).with_metadata(
        ArrowWriter._build_metadata(DatasetInfo(features=info.features)))
    layout = schema, asdict(info)
    if key is not None:
        if len(_PLAIN_LAYOUTS) >= _PLAIN_LAYOUTS_KEPT:  # (a sweep of many shapes: not a growing cache)
            _PLAIN_LAYOUTS.clear()
        _PLAIN_LAYOUTS[key] = layout
    return layout


def _features_alone(info: Any) -> bool:
    """Whether the ``DatasetInfo`` ``info`` holds nothing but its features: each other field
    at its default value."""
    blank = _blank_info()
    return all(getattr(info, name) == value for name, value in blank.items())


@functools.cache
def _blank_info() -> dict[str, Any]:
    """A default ``DatasetInfo``'s fields but its features."""
    import dataclasses

    from datasets import DatasetInfo

    info = DatasetInfo()
    return {field.name: getattr(info, field.name) for field in dataclasses.fields(info) if field.name != "features"}


def _save_to_disk_batch_size(num_rows: int, nbytes: int) -> int:
    """The record batch size the installed ``datasets`` writes a split of ``num_rows``
    rows and about ``nbytes`` bytes with in ``save_to_disk``: from 5.2 on, 1,000 rows
    (``DEFAULT_MAX_BATCH_SIZE``) or fewer where they hold more than its row group size
    (``get_writer_batch_size_from_data_size``); before 5.2 (pyproject takes 4.8 on), 1,000
    rows whatever their size."""
    import datasets
    from datasets import config
    from packaging.version import Version  # (a requirement of datasets)

    batch_size = config.DEFAULT_MAX_BATCH_SIZE
    if nbytes > 0 and Version(datasets.__version__).release >= (5, 2):
        from datasets.arrow_writer import get_writer_batch_size_from_data_size

        batch_size = min(batch_size, get_writer_batch_size_from_data_size(num_rows, nbytes))
    return batch_size


def _write_stream(path: Path, table: pa.Table, schema: pa.Schema, batch_size: int) -> None:
    """``table`` as an Arrow stream file in record batches of ``batch_size`` rows, each
    written from contiguous buffers, as ``ArrowWriter`` writes each batch it is given."""
    import pyarrow as pa

    table = pa.Table.from_arrays(table.columns, schema=schema)  # the metadata; the types are the features'
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for start in range(0, table.num_rows, batch_size):
            writer.write_table(table.slice(start, batch_size).combine_chunks(), batch_size)


def load_saved(path: Path, formatted: bool = True) -> Dataset | None:
    """What ``Dataset.load_from_disk`` gives for the local ``save_to_disk`` folder
    ``path``, built as it builds it but without the thread pool it starts to open the
    files (about 5 ms a split, which re-running the data stage of 2,000 sources after
    adding one paid for every source it reused). None when ``datasets`` is told to keep
    small datasets in memory (``HF_DATASETS_IN_MEMORY_MAX_SIZE``) or the folder cannot be
    read so (a damaged split): left to ``load_from_disk`` and its errors. Not ``formatted``:
    without the output format it was saved with (``set_format("tensorflow")``), which the
    ``huggingface`` loader does not read its rows through, and which ``load_from_disk``
    refused where that library is not installed."""
    import pyarrow as pa
    from datasets import Dataset, DatasetInfo, Split, config
    from datasets.table import MemoryMappedTable, concat_tables

    if config.IN_MEMORY_MAX_SIZE:  # load_from_disk may copy a small one into memory
        return None
    try:
        state = read_saved_json(path / "state.json")
        info = DatasetInfo.from_dict(read_saved_json(path / "dataset_info.json"))
        table = concat_tables([MemoryMappedTable.from_file(str(path / data_file["filename"]))
                               for data_file in state["_data_files"]])
        split = Split(state["_split"]) if state["_split"] is not None else None
        dataset = Dataset(table, info=info, split=split, fingerprint=state["_fingerprint"])
        if not formatted:
            return dataset
        return dataset.with_format(type=state["_format_type"], format_kwargs=state["_format_kwargs"],
                                   columns=state["_format_columns"], output_all_columns=state["_output_all_columns"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, pa.ArrowException):
        return None


def plain_split_columns(path: Path) -> dict[str, list[Any]] | None:
    """The columns of the ``save_to_disk`` folder ``path`` read with pyarrow, or None when
    ``datasets`` would give other values (a format set, a feature that decodes, such as an
    image) or the folder cannot be read so (a damaged state.json holding ``[]`` too: its
    AttributeError was an internal error of `plan`). (Here, not in the data stage's module, which imports
    ``datasets``: the evaluate stage's inputs read the target's test rows so, and `plan` or a
    `run` with nothing to do took a second longer importing it.)"""
    table = plain_split_table(path)
    return None if table is None else table.to_pydict()


def plain_split_table(path: str | Path) -> pa.Table | None:
    """The Arrow table :func:`plain_split_columns` turns into columns (None where it gives
    None), for a reader of many splits that converts their tables together (``path`` a
    string there: its files' paths are joined as strings, ``Path``'s parsing a tenth of the
    reading of a few rows)."""
    import pyarrow as pa

    try:
        state = read_saved_json(os.path.join(path, "state.json"))
        features = read_saved_json(os.path.join(path, "dataset_info.json"))["features"]
        plain = (state.get("_format_type") is None and not state.get("_format_columns")
                 and not state.get("_format_kwargs") and isinstance(features, dict)
                 and all(isinstance(f, dict) and f.get("_type") == "Value" for f in features.values()))
        if not plain:
            return None
        table = pa.concat_tables([read_arrow_stream(os.path.join(path, data_file["filename"]))
                                  for data_file in state["_data_files"]])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, pa.ArrowException):
        return None
    if list(table.column_names) != list(features):
        return None
    return table


def read_arrow_stream(file: str | Path) -> pa.Table:
    """The table in the Arrow stream ``file`` (a ``save_to_disk`` data file), memory-mapped.

    Raises:
        OSError: the file cannot be opened.
        pyarrow.ArrowException: it is not a whole Arrow stream (truncated, overwritten)."""
    import pyarrow as pa

    with pa.memory_map(str(file)) as stream:
        return pa.ipc.open_stream(stream).read_all()


def unreadable_data_file(path: Path) -> tuple[Path, Exception] | None:
    """The first of the Arrow files that the ``save_to_disk`` folder ``path`` lists in its
    ``state.json`` that cannot be read, with the error it raised; None where each reads, or
    ``state.json`` lists none it can name. For the message of a split ``load_from_disk``
    cannot load, whose pyarrow error (``Expected to read 840 metadata bytes``) names no file."""
    import pyarrow as pa

    try:
        names = [data_file["filename"] for data_file in read_saved_json(path / "state.json")["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    for name in names:
        if not isinstance(name, str):
            continue
        try:
            read_arrow_stream(path / name)
        except (OSError, pa.ArrowException) as exc:
            return path / name, exc
    return None
