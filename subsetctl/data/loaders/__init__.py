"""Source loaders: each turns one kind of data source into a ``datasets.Dataset`` with
the common columns every later stage reads.

Common columns (see :data:`COLUMNS`):

- ``source`` (str): the source name;
- ``prompt`` (str): the prompt / input text;
- ``response`` (str): the gold response ("" for classifiers);
- ``label`` (int): the class id (-1 for causal-lm);
- ``label_text`` (str): the class name as written in the data ("" for causal-lm);
- ``metadata`` (str): a JSON object with everything else known about the row;
- ``row`` (int): the row's index in the loaded data, before any shuffling.

Labels: a loader maps label *texts* to ids by :func:`label_vocabulary` over its own
rows only. The ids of different sources therefore do not agree; the data stage
recomputes one vocabulary over the target and all sources from ``label_text`` and
re-encodes every source with it (:func:`encode_labels`), so after the data stage
``label`` means the same class everywhere and the vocabulary is saved next to the data.

Every loader is registered in :data:`subsetctl.registry.LOADERS` under the spec's
``type`` name and has the signature ``(options, ctx: LoadContext) -> Dataset``.
Errors the user can fix (missing file, missing column, bad encoding, bad JSON, empty
file, unknown task) raise :class:`~subsetctl.errors.UserError` naming the source, the
file and what to do.

File loaders read with the json module, pandas or pyarrow, a line or a batch at a time,
and build the dataset in memory from Arrow chunks (:class:`CommonColumns`) rather than
with ``Dataset.from_json``/``from_csv``: that gives line-numbered errors, tolerates columns
whose type varies between rows, and writes nothing into the Hugging Face cache. The
``huggingface`` loader uses ``datasets.load_dataset``.

The loaders live in one module each (:mod:`.files` for ``jsonl``/``csv``/``parquet``,
:mod:`.huggingface`, :mod:`.reasoning_gym`, :mod:`.evals`, :mod:`.plugin`), what they
share in :mod:`.common`, and the reading of chat-format rows (``loader.messages_field``) in
:mod:`.chat`; importing this package registers them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from subsetctl.data.loaders.common import (  # noqa: F401
    _INT_LABEL,
    CHUNK_ROWS,
    COLUMNS,
    STREAM_ORDER,
    CommonColumns,
    Kind,
    LoadContext,
    _check_utf8,
    _label_sort_key,
    _metadata_json,
    _missing,
    _missing_column,
    _named,
    _note_blank_answers,
    _records_at,
    _required_fields,
    _where,
    build_common,
    close_column,
    close_names,
    dataset_features,
    dataset_from_columns,
    dataset_from_table,
    dataset_table,
    empty_dataset,
    encode_labels,
    label_to_text,
    label_vocabulary,
    one_based_row,
    sample_order,
    usual_column,
    value_to_text,
)
from subsetctl.data.loaders.evals import (  # noqa: F401
    EVALS_INSTALL_HINT,
    EVALS_SAMPLES_FILE,
    _evals_no_ideal_advice,
    _evals_prompt,
    default_evals_file,
    evals_data_dir,
    evals_file,
    evals_files,
    evals_names,
    evals_names_hint,
    load_evals,
)
from subsetctl.data.loaders.files import (  # noqa: F401
    _BZIP2,
    CR_ALONE,
    GZIP_MAGIC,
    OTHER_COMPRESSIONS,
    DuplicateKeys,
    NotUtf8,
    NotUtf8Lines,
    UnsupportedCompression,
    _existing_file,
    _files_matching,
    _glob_escaped,
    _note_duplicate_csv_columns,
    _unreadable,
    _utf8_problem,
    compressed_again_note,
    compressed_parquet_problem,
    count_csv_rows_not_utf8,
    csv_record_lines,
    data_files_by_entry,
    expand_data_files,
    file_notice_worded,
    first_bytes,
    gzip_damage,
    has_escaped_bytes,
    is_glob,
    is_saved_to_disk,
    jq_rows_command,
    json_document_advice,
    json_kind,
    jsonl_records,
    lines_not_utf8,
    load_csv,
    load_jsonl,
    load_parquet,
    not_utf8_fix,
    of_the_target,
    open_decompressed,
    parquet_read_as_text,
    parse_jsonl,
    release_whole_file,
    resolve_path,
    text_file_readers,
    text_lines,
    unmatched_glob_message,
    utf16_note,
    value_rows,
    whole_file_released,
)
from subsetctl.data.loaders.huggingface import (  # noqa: F401
    _BUILDER_BY_SUFFIX,
    _LOADER_BY_SUFFIX,
    _check_single_split,
    _class_names_of,
    _json_columns_of,
    _refuse_unreachable_hub_dataset,
    _with_class_names,
    describe_exception,
    file_as_dataset_path_problem,
    file_builder_options,
    load_huggingface,
    saved_dataset_problem,
    saved_dict_splits,
    saved_split_slice_note,
    split_meant_note,
    unknown_split_message,
)
from subsetctl.data.loaders.plugin import (  # noqa: F401
    BUILTIN_OPTION_MODELS,
    load_plugin,
)
from subsetctl.data.loaders.reasoning_gym import (  # noqa: F401
    load_reasoning_gym,
    reasoning_gym_task_hint,
    reasoning_gym_tasks,
)

#: the built-in loaders, which honour ``LoadContext.keep_at_most`` (filled in below)
DRAWING_LOADERS: set[Callable[..., Any]] = set()

DRAWING_LOADERS.update({load_jsonl, load_csv, load_parquet, load_huggingface, load_reasoning_gym, load_evals,
                        load_plugin})
