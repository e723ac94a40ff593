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
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.util
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from subsetctl.errors import UserError, unexpanded_variable_note
from subsetctl.registry import LOADERS
from subsetctl.spec import (
    CsvLoader,
    EvalsLoader,
    HuggingFaceLoader,
    JsonlLoader,
    LoaderBase,
    ParquetLoader,
    PluginLoader,
    ReasoningGymLoader,
)

if TYPE_CHECKING:
    from datasets import Dataset, Features

Kind = Literal["causal-lm", "classifier"]

#: The columns of every prepared dataset, in order.
COLUMNS: tuple[str, ...] = ("source", "prompt", "response", "label", "label_text", "metadata", "row")



@functools.cache
def dataset_features() -> Features:
    """The arrow types of :data:`COLUMNS` (built on first use: importing ``datasets`` takes
    a second, and validating a spec does not need it)."""
    from datasets import Features, Value

    return Features(
        {
            "source": Value("string"),
            "prompt": Value("string"),
            "response": Value("string"),
            "label": Value("int64"),
            "label_text": Value("string"),
            "metadata": Value("string"),
            "row": Value("int64"),
        }
    )

EVALS_INSTALL_HINT = "pip install --no-deps evals==3.0.1.post1"


@dataclass(frozen=True)
class LoadContext:
    """What a loader needs to know besides its options.

    Attributes:
        source_name: the source's name (goes into the ``source`` column and messages).
        base_dir: the spec file's folder; relative paths resolve against it.
        kind: ``causal-lm`` (prompt -> response) or ``classifier`` (text -> label).
        seed: the source's seed (``source.seed`` or the project seed).
        notices: non-fatal problems found while loading, for the data stage's warnings.
    """

    source_name: str
    base_dir: Path
    kind: Kind
    seed: int
    #: non-fatal problems found while loading (rows left out, options that do not apply);
    #: the data stage reports them as warnings
    notices: list[str] = dataclass_field(default_factory=list, compare=False)
    #: the most rows the data stage keeps of the source (``max_examples``, or the split's
    #: counts), set by :func:`~subsetctl.data.prepare.prepare_source` for the built-in
    #: loaders: they then check every row but map onto the common columns only the rows its
    #: seeded draw (:func:`sample_order`) keeps, and say so in ``drawn``
    keep_at_most: int | None = None
    #: ``{"rows": n}`` once a loader has drawn the sample itself: the dataset it returns
    #: holds the kept rows in the draw's order, out of ``n`` usable rows
    drawn: dict[str, int] = dataclass_field(default_factory=dict, compare=False)


#: the random stream of :func:`sample_order` under the source's seed
STREAM_ORDER = 0


def sample_order(seed: int, n: int, keep_at_most: int | None) -> Any:
    """The data stage's seeded draw of ``n`` rows: one permutation of ``range(n)`` (a numpy
    array), of which the first ``keep_at_most`` rows are kept (all without a limit)."""
    import numpy as np

    order = np.random.default_rng([seed, STREAM_ORDER]).permutation(n)
    return order if keep_at_most is None else order[:keep_at_most]


@functools.cache
def empty_dataset() -> Dataset:
    """A dataset with the common columns and no rows.

    Built once per process and shared: ``Dataset.from_dict`` fingerprints the table with
    dill (about 2.5 ms), which with a thousand sources whose validation and test splits are
    empty was a quarter of the data stage. Datasets are immutable here (no in-place
    ``set_format``), so sharing one is safe."""
    from datasets import Dataset

    return Dataset.from_dict({name: [] for name in COLUMNS}, features=dataset_features())


# ------------------------------------------------------------------------ labels


_INT_LABEL = re.compile(r"-?\d{1,18}")


def _label_sort_key(text: str) -> tuple[int, int, str]:
    """Integer labels sort numerically (so "2" < "10"), before any other text; labels of
    one value written differently ("1", "01", "-0" and "0") by their text, so that the
    order never depends on how a set happened to iterate (Python's string hashing differs
    from process to process, and a label's id is its place in this order)."""
    if _INT_LABEL.fullmatch(text):
        return (0, int(text), text)
    return (1, 0, text)


def label_vocabulary(texts: Iterable[str]) -> list[str]:
    """The sorted unique label names; a label's id is its index in this list.

    Integer-like names sort numerically, so labels 0/1 keep ids 0/1."""
    return sorted(set(texts), key=_label_sort_key)


def encode_labels(texts: list[str], vocabulary: list[str]) -> list[int]:
    """Label ids of ``texts`` in ``vocabulary``; texts not in it raise ``KeyError``."""
    index = {name: i for i, name in enumerate(vocabulary)}
    return [index[t] for t in texts]


def label_to_text(value: Any) -> str:
    """The canonical text of a raw label value: booleans become "0"/"1", integral
    floats lose their ".0", strings are stripped of surrounding whitespace."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value.strip()
    return value_to_text(value)


# ------------------------------------------------------------------------ values


def _missing(value: Any) -> bool:
    """A cell that holds no value: absent or null, or a float NaN (how pandas and Parquet
    float columns hold a missing cell, and what JSON's ``NaN`` reads as); read as text it
    would be the answer "nan"."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def value_to_text(value: Any) -> str:
    """A cell as text: strings unchanged, bytes as UTF-8 text (a Parquet string column
    some writers store as plain binary; :class:`CommonColumns` checks that they decode),
    booleans, lists and objects as JSON (``true``, as the data file writes it, not
    Python's ``True``), and other values (numbers, and the decimals, dates and times of
    Parquet and Arrow columns) via ``str``: ``1.50``, ``2024-01-02``, not JSON's quoted
    ``"1.50"``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    if value is None or isinstance(value, (bool, list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    return str(value)


def _metadata_json(extra: dict[str, Any]) -> str:
    """Serialize a row's metadata. ASCII-escaped so any Python string (even a lone
    surrogate from a ``\\ud800`` JSON escape) survives the UTF-8 arrow column."""
    return json.dumps(extra, ensure_ascii=True, default=str, sort_keys=True)


def _check_utf8(text: str, source: str, where: str, locate: Callable[[], str], column: str) -> str:
    """``text``, unless it holds a lone surrogate (``locate()`` names the row, only then:
    finding a CSV row's file line reads the file again)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(
            f"Source {source!r}: {where}, {locate()}: the {column!r} value contains an invalid "
            "unicode escape (a lone surrogate such as \\ud800). Fix that value in the file."
        ) from None
    return text


# --------------------------------------------------------------- common columns


def _where(path: Path) -> str:
    return f"file {path}"


def _missing_column(
    source: str, where: str, column: str, option: str | None, available: Iterable[str], fix: str | None = None
) -> UserError:
    """The error for a column the data lacks. ``option`` is the spec option that named the
    column (the advice is then to change it); ``None`` when the loader's columns are fixed,
    and ``fix`` then says what to do instead."""
    names = sorted(set(available))
    listed = ", ".join(repr(n) for n in names) if names else "(none)"
    if option is None:
        return UserError(
            f"Source {source!r}: {where} has no column {column!r}. Available columns: {listed}. "
            f"{fix or 'Fix the data.'}"
        )
    return UserError(
        f"Source {source!r}: {where} has no column {column!r} (asked for by loader.{option}). "
        f"Available columns: {listed}. Set loader.{option} to one of them or fix the data."
    )


def _named(field: str, option: str | None) -> str:
    """``'response' (loader.response_field)``, or just ``'response'`` for a fixed column."""
    return f"{field!r} (loader.{option})" if option else repr(field)


def _required_fields(options: LoaderBase, ctx: LoadContext) -> tuple[str, str]:
    """(name of the answer option, column) for the model kind; errors if unset."""
    if ctx.kind == "classifier":
        if not options.label_field:
            raise UserError(
                f"Source {ctx.source_name!r}: model.kind is classifier but loader.label_field is "
                "not set. Name the column holding the class label with loader.label_field."
            )
        return "label_field", options.label_field
    if not options.response_field:
        raise UserError(
            f"Source {ctx.source_name!r}: model.kind is causal-lm but loader.response_field is "
            "not set. Name the column holding the gold response with loader.response_field."
        )
    return "response_field", options.response_field


#: rows mapped onto the common columns before they are turned into an Arrow chunk: a
#: large file's rows then never all exist as Python objects at once
CHUNK_ROWS = 50_000


class CommonColumns:
    """Maps raw records onto the common columns, one record at a time.

    A loader streams its file's records in (:meth:`add`) and gets the dataset from
    :meth:`finish`. Mapped rows are turned into Arrow chunks of :data:`CHUNK_ROWS`, so
    reading a large file holds its table plus one chunk of Python objects, not every
    record as a dict (a 1 GB JSON Lines file took about 5 GB that way).

    Args:
        prompt_field: the key holding the prompt.
        answer_field: the key holding the response (causal-lm) or label (classifier).
        answer_option: the spec option that named ``answer_field`` (for messages), with
            ``prompt_field`` naming the prompt; ``None`` when the loader's columns are fixed
            (plugins, reasoning-gym, evals), so no option can rename them.
        ctx: the load context (source name and model kind).
        where: "file /abs/path" or similar, for messages.
        locate: row index -> "line 12" (or "row 12"), for messages; called only when a
            message names a row.
        available: every column name the data has, for messages; ``None`` to collect the
            keys of the records themselves (JSON Lines rows may differ in their keys).
        fix: with fixed columns, what to do about a missing or empty one (for messages).
        fetch: the loader's second read, for ``ctx.keep_at_most``: given sorted record
            indices, yields ``(index, record)`` for each of them, in that order. With it and
            a limit, every record is still checked, but only the first ``keep_at_most``
            usable ones are mapped as they come; :meth:`finish` draws the sample and maps
            the other rows it keeps from ``fetch`` (a large file's other rows never become
            metadata JSON and Arrow data). Without it, every row is mapped.

    Every row needs a prompt and an answer that are not missing, null or NaN (an error
    naming the row). A row whose answer (the gold response, or the class label) is empty or
    only whitespace is left out with a notice in ``ctx.notices``: a causal-lm example
    without response tokens has nothing to train or score, and a blank label would become
    a class of its own; every row blank is an error. A CSV row with too few cells reads as
    empty cells, so it is left out too. An empty prompt is allowed, with a notice (a
    prompt-less example is a plain text continuation; see
    :func:`subsetctl.modeling.encoding.encode_causal_lm`).

    A column that no row has is reported as missing (with the columns there are) rather
    than as null in its first row, so the first row error found is kept and raised by
    :meth:`finish`, once every record has been seen.

    Other keys of a record go into its ``metadata`` JSON; a ``metadata`` key holding an
    object (or a JSON object string) is merged into it instead of being nested.
    """

    def __init__(self, prompt_field: str, answer_field: str, answer_option: str | None, ctx: LoadContext,
                 where: str, locate: Callable[[int], str], available: Iterable[str] | None = None,
                 fix: str | None = None,
                 fetch: Callable[[Any], Iterable[tuple[int, dict[str, Any]]]] | None = None) -> None:
        from array import array

        self.prompt_field, self.answer_field, self.answer_option = prompt_field, answer_field, answer_option
        self.prompt_option = "prompt_field" if answer_option else None
        self.ctx, self.where, self.locate, self.fix = ctx, where, locate, fix
        self.available: set[str] = set(available) if available is not None else set()
        self.collect_keys = available is None
        self.classifier = ctx.kind == "classifier"
        self.what = "a class label" if self.classifier else "a gold response"
        self.advice = f" {fix}" if fix and not answer_option else ""
        self.skip = {prompt_field, answer_field}
        if self.available.issuperset(COLUMNS):  # rows a built-in loader prepared (a plugin filtering its output):
            self.skip |= {"source", "row", "label", "label_text"}  # those columns are its own, not the data's
        # (a data file's own "source", "row" or "label_text" column is the data's: kept in the metadata)
        self.seen = {prompt_field: False, answer_field: False}
        self.count = 0
        self.error: UserError | None = None
        self.null_rows: list[int] = []  # the first few rows missing a prompt or an answer (for the error)
        self.null_count = 0
        self.blank: list[int] = []  # the first few rows with a blank answer (for the notice)
        self.blank_count = 0
        self.empty_prompts: list[int] = []  # the first few kept rows with an empty prompt (for the notice)
        self.empty_prompt_count = 0
        self.minus_one: list[int] = []  # the first few rows of a classifier labelled -1 (for the notice)
        self.minus_one_count = 0
        self.some_labels: set[str] = set()  # up to 3 of the labels seen (is -1 one of the classes -1 and 1?)
        self.structured: tuple[int, str] | None = None  # first row whose answer is a list or object
        self.structured_count = 0
        self.structured_prompt: tuple[int, str] | None = None  # first row whose prompt is (e.g. a chat)
        self.structured_prompt_count = 0
        self.chunks: list[Any] = []
        self.columns: dict[str, list[Any]] = self._empty_columns()
        self.fetch = fetch
        self.limit = ctx.keep_at_most if fetch is not None else None
        self.usable = 0  # rows checked and kept so far (not left out as blank)
        self.usable_rows = array("q")  # with a limit: their record indices (8 bytes a row)
        self.digests = array("q")  # with a limit: hash of each one's prompt and answer (checked on fetch)

    @property
    def mapping_all(self) -> bool:
        """Whether the next record is mapped in full: without a limit, or while fewer usable
        rows than the limit have come (a loader may give only the prompt and answer
        columns of later records)."""
        return self.limit is None or self.usable < self.limit

    @staticmethod
    def _empty_columns() -> dict[str, list[Any]]:
        return {name: [] for name in COLUMNS if name != "label"}

    def add_all(self, records: Iterable[dict[str, Any]]) -> CommonColumns:
        for record in records:
            self.add(record)
        return self

    def add(self, record: dict[str, Any]) -> None:
        """Map the next record (its index is the number of records added before it)."""
        i = self.count
        self.count += 1
        if self.collect_keys:
            self.available.update(record)
        for field in self.seen:
            if not self.seen[field] and field in record:
                self.seen[field] = True
        if self.error is not None:  # only the columns' presence, and the count of such rows, still matter
            self._count_null(i, record)
            return
        try:
            self._map(i, record)
        except UserError as exc:
            self.error = exc
            self._count_null(i, record)
            return
        if len(self.columns["row"]) >= CHUNK_ROWS:
            self._flush()

    def _count_null(self, i: int, record: dict[str, Any]) -> None:
        """Count record ``i`` if it lacks its prompt or its answer (a null or missing value)."""
        if _missing(record.get(self.prompt_field)) or _missing(record.get(self.answer_field)):
            self.null_count += 1
            if len(self.null_rows) < 5:
                self.null_rows.append(i)

    def _map(self, i: int, record: dict[str, Any]) -> None:
        source, answer_field = self.ctx.source_name, self.answer_field
        values: dict[str, Any] = {}
        for field, option in ((self.prompt_field, self.prompt_option), (answer_field, self.answer_option)):
            value = record.get(field)
            if _missing(value):
                raise UserError(
                    f"Source {source!r}: {self.where}, {self.locate(i)}: {_named(field, option)} is "
                    f"missing, null or NaN. Every row needs it; fix or drop that row.{self.advice}"
                )
            if isinstance(value, (bytes, bytearray)):
                try:
                    bytes(value).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise UserError(
                        f"Source {source!r}: {self.where}, {self.locate(i)}: {_named(field, option)} holds bytes "
                        f"that are not UTF-8 text (byte {exc.start}). Store the column as UTF-8 strings."
                    ) from None
            values[field] = value
        if isinstance(values[answer_field], (list, dict)):
            self.structured_count += 1
            if self.structured is None:
                self.structured = (i, value_to_text(values[answer_field]))
        if isinstance(values[self.prompt_field], (list, dict)):
            self.structured_prompt_count += 1
            if self.structured_prompt is None:
                self.structured_prompt = (i, value_to_text(values[self.prompt_field]))
        locate_row = functools.partial(self.locate, i)
        prompt, answer = self._texts(values)
        prompt = _check_utf8(prompt, source, self.where, locate_row, self.prompt_field)
        if not answer.strip():  # nothing to train or score on: left out (see finish) rather than fatal
            self.blank_count += 1
            if len(self.blank) < 5:
                self.blank.append(i)
            return
        answer = _check_utf8(answer, source, self.where, locate_row, answer_field)
        if self.classifier:
            if len(self.some_labels) < 3:
                self.some_labels.add(answer)
            if answer == "-1":
                self.minus_one_count += 1
                if len(self.minus_one) < 5:
                    self.minus_one.append(i)
        if not prompt.strip():  # (a row kept: one whose answer is blank is left out above)
            self.empty_prompt_count += 1
            if len(self.empty_prompts) < 5:
                self.empty_prompts.append(i)
        full = self.mapping_all
        self.usable += 1
        if self.limit is not None:
            self.usable_rows.append(i)
            self.digests.append(hash((prompt, answer)))
        if full:
            self._append(i, record, prompt, answer)

    def _texts(self, record: dict[str, Any]) -> tuple[str, str]:
        """A record's prompt and answer as text (both present: checked by :meth:`_map`)."""
        value = record[self.answer_field]
        answer = label_to_text(value) if self.classifier else value_to_text(value)
        return value_to_text(record[self.prompt_field]), answer

    def _append(self, i: int, record: dict[str, Any], prompt: str, answer: str) -> None:
        """Add record ``i``, checked by :meth:`_map`, to the columns."""
        source = self.ctx.source_name
        extra: dict[str, Any] = {}
        for key, value in record.items():
            if key in self.skip:
                continue
            if key == "metadata":
                parsed = value
                if isinstance(value, str):
                    try:
                        parsed = json.loads(value)
                    except (ValueError, RecursionError):
                        parsed = value
                if isinstance(parsed, dict):
                    extra.update(parsed)
                    continue
            extra[key] = value
        columns = self.columns
        columns["source"].append(source)
        columns["prompt"].append(prompt)
        columns["response"].append("" if self.classifier else answer)
        columns["label_text"].append(answer if self.classifier else "")
        columns["metadata"].append(_metadata_json(extra))
        columns["row"].append(i)

    def _note_structured(self, first_row: tuple[int, str], count: int, named: str, what_then: str) -> None:
        """The notice that ``count`` rows hold a list or an object as ``named`` (the first of
        them: ``first_row``), and ``what_then`` is made of it."""
        first, example = first_row
        example = example if len(example) <= 60 else example[:57] + "..."
        self.ctx.notices.append(
            f"Source {self.ctx.source_name!r}: {count} row(s) of {self.where} have a list or an object as {named} "
            f"(first at {self.locate(first)}: {example}); {what_then}"
        )

    def _some_rows(self, count: int, first: list[int]) -> tuple[str, str, str]:
        """How a notice names ``count`` of the kept rows, ``first`` the first few of them:
        ("every row", "has") or ("3 of 5 rows", "have"), and where they are ("line 2,
        line 4 (+1 more)")."""
        kept = self.count - self.blank_count
        shown = ", ".join(self.locate(i) for i in first) + (f" (+{count - len(first)} more)" if count > len(first) else "")
        return ("every row", "has", shown) if count == kept else (f"{count} of {kept} rows", "have", shown)

    def _note_empty_prompts(self) -> None:
        """The notice that some kept rows have an empty prompt: legal (the answer is then
        learned and scored with nothing before it), but more often a prompt column read
        from the wrong place or a template that left it blank."""
        every, has, shown = self._some_rows(self.empty_prompt_count, self.empty_prompts)
        self.ctx.notices.append(
            f"Source {self.ctx.source_name!r}: {self.where}: {every} kept {has} an "
            f"empty {_named(self.prompt_field, self.prompt_option)} ({shown}); their "
            f"{'labels are' if self.classifier else 'answers are'} learned with no prompt. If that is not meant, "
            "check the column the loader reads."
        )

    def _note_minus_one(self, named: str) -> None:
        """The notice that rows of a classifier have the label -1: a class of its own here,
        but many datasets mark a row without a label so (GLUE's test splits are all -1; a
        Hugging Face ``ClassLabel`` -1 is read as no label, and refused as one). Neither left
        out nor refused, since -1 is a real class in others (-1/0/1 sentiment)."""
        every, has, shown = self._some_rows(self.minus_one_count, self.minus_one)
        self.ctx.notices.append(
            f"Source {self.ctx.source_name!r}: {self.where}: {every} {has} -1 as "
            f"{named} ({shown}), taken as a class of its own. Many datasets mark a row without a label so "
            "(GLUE's test splits are all -1): if these rows have none, drop them from the file, or use a split "
            "that has labels."
        )

    def _flush(self) -> None:
        """The rows mapped so far as an Arrow chunk (label -1 until :meth:`finish`)."""
        import pyarrow as pa

        if not self.columns["row"] and self.chunks:
            return
        columns = {**self.columns, "label": [-1] * len(self.columns["row"])}
        self.chunks.append(pa.Table.from_pydict({name: columns[name] for name in COLUMNS},
                                                schema=dataset_features().arrow_schema))
        self.columns = self._empty_columns()

    def _one_chunk(self) -> Any:
        """The chunks as one table of single-chunk columns, as one table of every row would
        be: the fingerprint (a hash of the buffers) and the Arrow files written must not
        depend on where chunks were cut. Joined a column at a time, each column's pieces
        let go as soon as it is joined, so the peak is the table plus one column."""
        import pyarrow as pa

        chunks, self.chunks = self.chunks, []
        if len(chunks) == 1:
            return chunks[0]
        schema = chunks[0].schema
        pieces = [[array for chunk in chunks for array in chunk.column(i).chunks] for i in range(len(schema))]
        del chunks
        joined = []
        for i in range(len(pieces)):
            joined.append(pa.concat_arrays(pieces[i]))
            pieces[i] = []
        return pa.Table.from_arrays(joined, schema=schema)

    def _drawn(self, first: Any) -> Any:
        """The rows :func:`sample_order` keeps of the usable ones, in its order, given the
        table of the first ``limit`` of them (mapped as they came); the rest it keeps are
        read again through ``fetch``."""
        import numpy as np
        import pyarrow as pa

        assert self.fetch is not None and self.limit is not None
        limit = self.limit
        order = sample_order(self.ctx.seed, self.usable, limit)  # positions among the usable rows
        later = np.sort(order[order >= limit])
        wanted = np.frombuffer(self.usable_rows, dtype=np.int64)[later]  # their record indices, ascending
        digests = np.frombuffer(self.digests, dtype=np.int64)[later].tolist()
        self.usable_rows, self.digests = type(self.usable_rows)("q"), type(self.digests)("q")
        got = 0
        for i, record in self.fetch(wanted):
            if got >= len(wanted) or i != wanted[got]:
                break
            # the record read again must be the one checked: a file rewritten in between could
            # give a row without its answer (a KeyError), or a blank or other one, kept unchecked
            if _missing(record.get(self.prompt_field)) or _missing(record.get(self.answer_field)):
                break
            prompt, answer = self._texts(record)
            if hash((prompt, answer)) != digests[got]:
                break
            self._append(int(i), record, prompt, answer)
            got += 1
            if len(self.columns["row"]) >= CHUNK_ROWS:
                self._flush()
        if got != len(wanted):
            raise UserError(
                f"Source {self.ctx.source_name!r}: {self.where} changed while it was being read (its rows "
                "differ from those just read). Run again once it is no longer being written."
            )
        self._flush()
        rest = self._one_chunk()
        both = pa.concat_tables([first, rest])
        at = np.where(order < limit, order, limit + np.searchsorted(later, order))
        return both.take(pa.array(at, type=pa.int64())).combine_chunks()

    def finish(self) -> Dataset:
        """The dataset of every row added, or the error that stops the source; with a limit
        and ``fetch`` (see the class), the rows :func:`sample_order` keeps, in its order."""
        import pyarrow as pa

        source, option = self.ctx.source_name, self.answer_option
        if self.count == 0:
            raise UserError(f"Source {source!r}: {self.where} has no examples. "
                            + (f"{self.fix}" if self.fix else "Give a file with at least one row."))
        for field, field_option in ((self.prompt_field, self.prompt_option), (self.answer_field, option)):
            if not self.seen[field]:
                raise _missing_column(source, self.where, field, field_option, self.available, self.fix)
        if self.error is not None:
            if self.null_count > 1:  # all of them at once, not one per run
                shown = ", ".join(self.locate(i) for i in self.null_rows) + (", ..." if self.null_count > 5 else "")
                raise UserError(f"{self.error} {self.null_count} of {self.count} rows lack {_named(self.prompt_field, self.prompt_option)} "
                                f"or {_named(self.answer_field, option)} ({shown}).") from None
            raise self.error
        named = _named(self.answer_field, option)
        if self.blank_count:
            _note_blank_answers(self.blank, self.blank_count, self.count, self.ctx, self.where, self.locate,
                                named, self.what, self.advice)
        if self.empty_prompt_count:
            self._note_empty_prompts()
        if self.minus_one_count and self.some_labels != {"-1", "1"}:  # -1 and 1: two classes, as written
            self._note_minus_one(named)
        if self.structured_prompt is not None:
            self._note_structured(self.structured_prompt, self.structured_prompt_count,
                                  _named(self.prompt_field, self.prompt_option),
                                  "each prompt is its JSON text. A chat (a list of messages) is not rendered with "
                                  "the model's chat template: write the prompt as plain text, or render it in a "
                                  "plugin loader.")
        if self.structured is not None:
            self._note_structured(self.structured, self.structured_count, named,
                                  f"each is {'a class' if self.classifier else 'the gold response'} as its JSON "
                                  "text. If it holds several accepted answers or a nested field, write the one "
                                  "meant as a plain value (or use a plugin loader).")
        self._flush()
        table = self._one_chunk()
        if self.limit is not None and self.usable > self.limit:
            table = self._drawn(table)
            self.ctx.drawn["rows"] = self.usable
        if self.classifier:
            texts = table.column("label_text").to_pylist()
            labels = pa.array(encode_labels(texts, label_vocabulary(texts)), type=pa.int64())
            table = table.set_column(COLUMNS.index("label"), "label", labels)
        return dataset_from_table(table)


def _records_at(batches: Iterable[Any], wanted: Any,
                records: Callable[[Any, Any], list[dict[str, Any]]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(index, record)`` for each of the ascending record indices ``wanted`` (a numpy
    array), read from consecutive ``batches`` (data frames, Arrow record batches):
    ``records(batch, positions)`` gives a batch's records at those positions in it. A
    :class:`CommonColumns` ``fetch``."""
    start = 0
    for batch in batches:
        here = wanted[(wanted >= start) & (wanted < start + len(batch))]
        if len(here):
            yield from zip(here.tolist(), records(batch, here - start))
        start += len(batch)


def build_common(
    records: list[dict[str, Any]],
    prompt_field: str,
    answer_field: str,
    answer_option: str | None,
    ctx: LoadContext,
    where: str,
    locate: Callable[[int], str],
    available: Iterable[str],
    fix: str | None = None,
    draw: bool = False,
) -> Dataset:
    """Map a list of raw records onto the common columns (see :class:`CommonColumns`,
    which file loaders feed record by record). With ``draw``, ``ctx.keep_at_most``
    applies (the built-in loaders, whose dataset goes to the data stage as it is)."""
    fetch = (lambda wanted: ((int(i), records[i]) for i in wanted)) if draw else None
    return CommonColumns(prompt_field, answer_field, answer_option, ctx, where, locate, available,
                         fix, fetch).add_all(records).finish()


def dataset_from_columns(columns: dict[str, list[Any]]) -> Dataset:
    """The common columns (Python lists) as a ``datasets.Dataset`` (see :func:`dataset_from_table`)."""
    import pyarrow as pa

    return dataset_from_table(pa.Table.from_pydict({name: columns[name] for name in COLUMNS},
                                                   schema=dataset_features().arrow_schema))


def dataset_from_table(table: Any) -> Dataset:
    """An Arrow table of the common columns as a ``datasets.Dataset``, built directly.

    ``Dataset.from_dict`` encodes every value through the features and then fingerprints
    the table with dill: 30 s of a 88 s data stage for 1.1M rows, for columns that are
    plain strings and integers. The fingerprint here is a sha256 of the table's Arrow
    buffers: as content-determined, at memory speed. (The Arrow data is byte-identical
    to ``from_dict``'s.)"""
    import hashlib

    from datasets import Dataset, DatasetInfo
    from datasets.table import InMemoryTable

    features = dataset_features()
    digest = hashlib.sha256()
    for column in table.columns:
        for chunk in column.chunks:
            for buffer in chunk.buffers():
                digest.update(b"|" if buffer is None else buffer)
    return Dataset(InMemoryTable(table), info=DatasetInfo(features=features), fingerprint=digest.hexdigest()[:16])


# ------------------------------------------------------------------------- files


def resolve_path(path: str, base_dir: Path) -> Path:
    """``path`` with ``~`` expanded, made absolute against ``base_dir`` if relative."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir / p)


def is_saved_to_disk(folder: Path) -> bool:
    """Whether ``folder`` was written by ``Dataset(Dict).save_to_disk`` (read with
    ``datasets.load_from_disk``; ``load_dataset`` refuses it)."""
    return folder.is_dir() and ((folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file())


def is_glob(pattern: str) -> bool:
    """Whether a path holds glob characters (``*``, ``?``, ``[``)."""
    return any(ch in pattern for ch in "*?[")


def data_files_by_entry(options: HuggingFaceLoader, base_dir: Path) -> list[list[str]]:
    """A ``huggingface`` loader's ``data_files``, each entry as the files ``load_dataset``
    should get for it (the same for loading, fingerprinting and validate).

    With a builder name as ``path`` (``json``, ``csv``, ``parquet``, ...), files are the
    user's own: relative paths and globs resolve against the spec's folder like every
    other data path (``load_dataset`` would resolve them against the working directory),
    and a glob becomes the sorted files it matches (none: an empty list), so a file
    added, removed or edited makes the data stage stale. With a local folder or a hub id
    as ``path``, entries are relative to that dataset and are passed on unchanged (a
    local folder is fingerprinted whole)."""
    from subsetctl.hub import is_file_builder

    own_files = is_file_builder(options.path) and not resolve_path(options.path, base_dir).exists()
    entries: list[list[str]] = []
    for entry in options.data_files or []:
        resolved = resolve_path(entry, base_dir)
        if "://" in entry:
            entries.append([entry])
        elif own_files and is_glob(entry) and not resolved.is_file():  # x [1].jsonl: that file
            expanded = Path(entry).expanduser()  # the spec's folder as it is, not a pattern: /x/exp [2]/
            entries.append(_files_matching(expanded if expanded.is_absolute() else _glob_escaped(base_dir) / expanded))
        else:
            entries.append([str(resolved) if resolved.exists() else entry])
    return entries


def unmatched_glob_message(options: HuggingFaceLoader, index: int, base_dir: Path) -> str:
    """What to say about ``data_files[index]``, a glob that matches no file."""
    entry = (options.data_files or [])[index]
    return (f"loader.data_files pattern {entry!r} matches no file (looked for {resolve_path(entry, base_dir)}; "
            f"relative patterns resolve against the spec's folder){unexpanded_variable_note(entry)}. Fix the pattern "
            "or the folder.")


def expand_data_files(options: HuggingFaceLoader, base_dir: Path) -> list[str] | None:
    """:func:`data_files_by_entry` flattened (None without data_files); a glob that
    matches no file is a UserError."""
    if not options.data_files:
        return None
    entries = data_files_by_entry(options, base_dir)
    for index, files in enumerate(entries):
        if not files:
            raise UserError(unmatched_glob_message(options, index, base_dir))
    return [f for files in entries for f in files]


def _glob_escaped(path: Path) -> Path:
    """``path`` as a glob pattern that matches only itself (its ``[``, ``*`` and ``?``
    taken literally)."""
    import glob

    return Path(glob.escape(str(path)))


def _files_matching(pattern: Path) -> list[str]:
    """The files matching an absolute glob ``pattern``, sorted; its folders may hold glob
    characters too (``data/*/part-*.jsonl``, ``data/**/*.jsonl``; a symbolic link back
    into a folder ``**`` is inside is not followed round: :mod:`subsetctl.globbing`)."""
    from subsetctl.globbing import glob_without_loops

    return sorted(p for p in glob_without_loops(str(pattern), Path(pattern.anchor)) if Path(p).is_file())


def _existing_file(path_option: str, ctx: LoadContext) -> Path:
    path = resolve_path(path_option, ctx.base_dir)
    if not path.exists():
        raise UserError(
            f"Source {ctx.source_name!r}: loader.path {path_option!r} does not exist (looked for "
            f"{path}; relative paths resolve against the spec's folder {ctx.base_dir})"
            f"{unexpanded_variable_note(path_option)}. Fix loader.path or create the file."
        )
    if not path.is_file():
        raise UserError(
            f"Source {ctx.source_name!r}: loader.path {path} is not a file. Point loader.path "
            "at the data file itself."
        )
    return path


GZIP_MAGIC = b"\x1f\x8b"
"""The first two bytes of a gzip file: JSONL and CSV files may be gzip-compressed
(``train.jsonl.gz``), whatever their name says."""


#: compressions subsetctl does not read, by their first bytes: named in the error, which a
#: decoding error ("not valid UTF-8") would not
OTHER_COMPRESSIONS = {b"\x28\xb5\x2f\xfd": ("zstd", "zstd -d"), b"\xfd7zXZ\x00": ("xz", "unxz"),
                      b"PK\x03\x04": ("zip", "unzip")}
#: bzip2: "BZh", the block size digit, then a block's or the stream end's magic (text may start "BZh")
_BZIP2 = re.compile(rb"BZh[1-9](\x31\x41\x59\x26\x53\x59|\x17\x72\x45\x38\x50\x90)", re.DOTALL)


class UnsupportedCompression(UserError):
    """A data file compressed otherwise than with gzip; ``problem`` says so without the path."""

    def __init__(self, path: Path, name: str, command: str) -> None:
        self.problem = (f"compressed with {name}; subsetctl reads plain and gzip-compressed files: decompress it "
                        f"(`{command} {path.name}`) or compress it with gzip, and point the spec at that file")
        super().__init__(f"file {path} is {self.problem}.")


def open_decompressed(path: Path) -> IO[bytes]:
    """A data file's bytes, decompressed when it is gzip-compressed (whatever its name).
    A file compressed otherwise (zstd, bzip2, xz, zip) is an :class:`UnsupportedCompression`."""
    import gzip

    with open(path, "rb") as raw:
        head = raw.read(10)
    for magic, (name, command) in OTHER_COMPRESSIONS.items():
        if head.startswith(magic):
            raise UnsupportedCompression(path, name, command)
    if _BZIP2.match(head):
        raise UnsupportedCompression(path, "bzip2", "bunzip2")
    return gzip.open(path, "rb") if head[:2] == GZIP_MAGIC else open(path, "rb")  # type: ignore[return-value]


def gzip_damage(exc: BaseException) -> str:
    """What is wrong with a gzip file that cannot be decompressed (``exc``: what gzip or
    zlib raised: cut short, corrupt data, not gzip after its first two bytes), without the
    path; the data stage and validate say the same."""
    return (f"gzip-compressed but cannot be decompressed ({exc or type(exc).__name__}): it is cut short or "
            "damaged. Copy it again, or compress the original again")


def _unreadable(path: Path, source: str, exc: BaseException) -> UserError:
    """The error for a file that cannot be read, or a gzip file that cannot be decompressed."""
    if isinstance(exc, OSError) and exc.strerror:
        return UserError(f"Source {source!r}: cannot read file {path}: {exc.strerror}.")
    return UserError(f"Source {source!r}: file {path} is {gzip_damage(exc)}.")


def text_lines(path: Path, source: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 file, read a line at a time (a leading
    BOM is dropped; a gzip-compressed file is decompressed as it is read).

    Lines are split on newlines only (not on the other characters ``str.splitlines``
    treats as line breaks, which may appear inside JSON strings). A newline byte is never
    part of a multi-byte UTF-8 character, so each line decodes on its own and invalid
    UTF-8 is located exactly (byte offset in the decompressed data, and line)."""
    import zlib

    offset = 0
    try:
        handle_of_file = open_decompressed(path)
    except UnsupportedCompression as exc:
        raise UserError(f"Source {source!r}: {exc}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise _unreadable(path, source, exc) from None
    try:
        with handle_of_file as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise UserError(
                        f"Source {source!r}: file {path} is not valid UTF-8 (byte {offset + exc.start}, "
                        f"line {number}{utf16_note(raw) if number == 1 else ''}). Re-save it as UTF-8."
                    ) from None
                offset += len(raw)
                yield number, text.rstrip("\n")
    except (OSError, EOFError, zlib.error) as exc:
        raise _unreadable(path, source, exc) from None


def utf16_note(head: bytes) -> str:
    """"; it starts with a UTF-16 byte-order mark, ..." for a file that does (Notepad's
    "Unicode", PowerShell's ``>``, Excel's "Unicode text" save UTF-16), else "": its
    "invalid byte 0" alone does not say what the file is."""
    import codecs

    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "; it starts with a UTF-16 byte-order mark, so it is UTF-16 text"
    return ""


def _utf8_problem(path: Path, source: str) -> UserError | None:
    """The error naming the first invalid UTF-8 byte of a file, or None if it has none."""
    try:
        for _ in text_lines(path, source):
            pass
    except UserError as exc:
        return exc
    return None


#: A JSON Lines file whose lines end with a carriage return alone (classic Mac OS) is one long
#: line to a reader splitting on newlines: said where its "invalid JSON" is.
CR_ALONE = ("lines end with a carriage return alone (CR, classic Mac OS line endings), which JSON Lines "
            "does not take: re-save it with LF (or CRLF) line endings")


@dataclass
class DuplicateKeys:
    """Lines of a JSON Lines file whose objects name a key twice (``{"a": 1, "a": 2}``, which
    JSON reads as its last value): the first few, and how many."""

    first: list[tuple[int, list[str]]] = dataclass_field(default_factory=list)
    count: int = 0

    def notice(self, source: str, path: Path) -> str:
        """The data stage's warning about them, naming the file, the lines and the keys."""
        shown = "; ".join(f"line {number}: {', '.join(repr(k) for k in keys)}" for number, keys in self.first)
        more = f" (+{self.count - len(self.first)} more)" if self.count > len(self.first) else ""
        return (f"Source {source!r}: file {path}: {self.count} row(s) name a key twice ({shown}{more}); only the "
                "last value of each such key is read. Remove the duplicate keys, or rename the one meant to be "
                "kept too.")


def jsonl_records(path: Path, source: str,
                  duplicates: DuplicateKeys | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON Lines file, a line at a time;
    the lines whose objects (also nested ones) name a key twice go into ``duplicates``."""
    twice: list[str] = []

    def as_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(pairs)
        if len(value) != len(pairs):  # the keys named again, in one pass (an object may have thousands)
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    twice.append(key)
                seen.add(key)
        return value

    decoder = json.JSONDecoder(object_pairs_hook=as_dict)  # (as fast as json.loads: 0.69 s vs 0.81 s a 400k lines)
    for number, line in text_lines(path, source):
        if not line.strip():
            continue
        try:
            # json.loads refuses a BOM that starts a line past the first (decode would say "Expecting value")
            value = json.loads(line) if line.startswith("\ufeff") else decoder.decode(line)
        except json.JSONDecodeError as exc:
            cr_alone = "\r" in line.rstrip("\r")
            raise UserError(
                f"Source {source!r}: file {path}, line {number}: invalid JSON ({exc.msg} at "
                f"column {exc.colno}). Each line of a .jsonl file must be one JSON object."
                f"{f' Its {CR_ALONE}.' if cr_alone else ''}"
            ) from None
        except (ValueError, RecursionError) as exc:
            raise UserError(
                f"Source {source!r}: file {path}, line {number}: invalid JSON ({exc}). Each line "
                "of a .jsonl file must be one JSON object."
            ) from None
        if not isinstance(value, dict):
            raise UserError(
                f"Source {source!r}: file {path}, line {number}: expected a JSON object "
                f'({{"prompt": ..., ...}}), got a JSON {type(value).__name__}.'
            )
        if twice:
            if duplicates is not None:
                duplicates.count += 1
                if len(duplicates.first) < 3:
                    duplicates.first.append((number, list(dict.fromkeys(twice))))
            twice.clear()
        yield number, value


def parse_jsonl(path: Path, source: str) -> list[tuple[int, dict[str, Any]]]:
    """Every (line number, object) of a JSON Lines file (for small files: evals samples)."""
    rows = list(jsonl_records(path, source))
    if not rows:
        raise UserError(f"Source {source!r}: file {path} is empty. Give a file with at least one row.")
    return rows


@LOADERS.register("jsonl")
def load_jsonl(options: JsonlLoader, ctx: LoadContext) -> Dataset:
    """A local JSON Lines file, one example (a JSON object) per line, read a line at a time."""
    from array import array

    path = _existing_file(options.path, ctx)
    lines = array("q")  # each record's line, for messages (8 bytes a row)
    answer_option, answer_field = _required_fields(options, ctx)

    def fetch(wanted: Any) -> Iterator[tuple[int, dict[str, Any]]]:  # the file read again for these records
        at = iter(wanted.tolist())
        index = next(at, None)
        for number, line in text_lines(path, ctx.source_name):
            if index is None:
                return
            if number == lines[index]:
                try:
                    value = json.loads(line)
                except (ValueError, RecursionError):  # changed since: CommonColumns says so
                    return
                if not isinstance(value, dict):
                    return
                yield index, value
                index = next(at, None)

    builder = CommonColumns(options.prompt_field, answer_field, answer_option, ctx, _where(path),
                            lambda i: f"line {lines[i]}", fetch=fetch)
    duplicates = DuplicateKeys()
    for number, record in jsonl_records(path, ctx.source_name, duplicates):
        lines.append(number)
        builder.add(record)
    if builder.count == 0:
        raise UserError(f"Source {ctx.source_name!r}: file {path} is empty. Give a file with at least one row.")
    dataset = builder.finish()
    if duplicates.count:
        ctx.notices.append(duplicates.notice(ctx.source_name, path))
    return dataset


def _note_blank_answers(blank: list[int], blank_count: int, total: int, ctx: LoadContext, where: str,
                        locate: Callable[[int], str], named: str, what: str, advice: str) -> None:
    """Rows whose answer is empty or only whitespace have nothing to train or score on:
    they are left out with a notice naming their lines (a few blank gold answers are
    common in public datasets, and rows a `max_examples` cut drops anyway must not stop
    the run); an error when every row is blank."""
    shown = ", ".join(locate(i) for i in blank[:5]) + (f" (+{blank_count - 5} more)" if blank_count > 5 else "")
    if blank_count == total:
        raise UserError(
            f"Source {ctx.source_name!r}: {where}: {named} is empty in every row ({shown}). Every row "
            f"needs {what}; check that the loader reads the right column.{advice}"
        )
    ctx.notices.append(
        f"Source {ctx.source_name!r}: {where}: {blank_count} of {total} rows have an empty {named} ({shown}); "
        f"they are left out (every row needs {what})."
    )


def _note_duplicate_csv_columns(path: Path, delimiter: str, read_as: list[str], ctx: LoadContext) -> None:
    """A notice for a header naming one column twice: pandas reads the later ones under
    other names (``name.1``; ``read_as``: the columns as it named them, in file order),
    and for the prompt or answer column only the first is the prompt or the answer; said
    so instead of a ``name.1`` key appearing in the metadata unexplained."""
    import csv
    import io
    from collections import Counter

    try:
        with open_decompressed(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            header = next(csv.reader(text, delimiter=delimiter), [])
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, ValueError):
        return  # reading the file proper says what is wrong with it
    counts = Counter(header)
    twice = [name for name, count in counts.items() if count > 1]
    if not twice or len(read_as) != len(header):
        return
    named = ", ".join(f"{name!r} ({counts[name]} times)" for name in twice)
    renamed = ", ".join(read_as[i] for i, name in enumerate(header) if counts[name] > 1 and header.index(name) != i)
    ctx.notices.append(
        f"Source {ctx.source_name!r}: {_where(path)}: the header names {named}; the first column of each "
        f"name keeps it (the prompt and the answer are read from that one), the later ones are read as "
        f"{renamed}. Rename the columns if another one was meant."
    )


def csv_record_lines(path: Path, delimiter: str) -> Any:
    """The file line on which each data row of a CSV file starts (the header excluded), as
    an ``array`` of ints, read with the csv module the way pandas reads it (lines holding
    only whitespace are skipped, a line holding a quoted empty cell ``""`` is a row, a
    quoted cell may span lines); None when the csv module cannot read it. The file is
    read a line at a time."""
    import csv
    from array import array

    starts = array("q")
    current: dict[int, str] = {}  # the raw lines of the row being read, by number

    def tracked(handle: IO[str]) -> Iterator[str]:
        for number, line in enumerate(handle, start=1):
            current[number] = line
            yield line

    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(2**31 - 1)  # long multi-line cells are where lines matter (a gzip file's size says nothing)
        with io.TextIOWrapper(open_decompressed(path), encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(tracked(handle), delimiter=delimiter)
            previous = 0
            for row in reader:
                start, previous = previous + 1, reader.line_num
                first = current.get(start, "")
                current.clear()
                if len(row) <= 1 and not "".join(row).strip() and '"' not in first:
                    continue  # a blank or whitespace-only line; a quoted empty cell ("") is a row
                starts.append(start)
    except (csv.Error, TypeError, ValueError, OSError, EOFError):  # e.g. a delimiter the csv module refuses
        return None
    finally:
        csv.field_size_limit(limit)
    return starts[1:]


@LOADERS.register("csv")
def load_csv(options: CsvLoader, ctx: LoadContext) -> Dataset:
    """A local CSV file with a header row; every cell is read as text, a chunk of rows at
    a time. Messages name the file line of a row (the header is line 1).

    Chunks are :data:`CHUNK_ROWS` rows. Lines are found with :func:`csv_record_lines`,
    only when a message needs one."""
    import zlib

    import pandas as pd

    path = _existing_file(options.path, ctx)
    source = ctx.source_name
    answer_option, answer_field = _required_fields(options, ctx)

    @functools.cache
    def lines() -> Any:  # the line mapping reads the file again, only when a message needs a line
        return csv_record_lines(path, options.delimiter)

    def locate(i: int) -> str:
        found = lines()
        if found is None or len(found) != builder.count:  # read differently: count from the header
            return f"line {i + 2}"
        return f"line {found[i]}"

    def not_csv(exc: BaseException) -> UserError:
        problem = " ".join(str(exc).split())  # pandas ends its tokenizer messages with a newline
        return UserError(
            f"Source {source!r}: file {path} is not valid CSV ({problem}). Check the "
            f"delimiter (loader.delimiter is {options.delimiter!r}) and the quoting."
        )

    def frames() -> Iterator[Any]:
        with open_decompressed(path) as handle:
            reader = pd.read_csv(handle, sep=options.delimiter, dtype=str, keep_default_na=False,
                                 encoding="utf-8-sig", chunksize=CHUNK_ROWS)
            with reader:
                for frame in reader:
                    frame.columns = [str(c) for c in frame.columns]
                    yield frame

    def fetch(wanted: Any) -> Iterator[tuple[int, dict[str, Any]]]:  # the file read again for these records
        return _records_at(frames(), wanted, lambda frame, at: frame.iloc[at].to_dict("records"))

    builder: CommonColumns | None = None
    columns: list[str] = []
    try:
        for frame in frames():
            columns = list(frame.columns)
            if builder is None:
                builder = CommonColumns(options.prompt_field, answer_field, answer_option, ctx,
                                        _where(path), locate, columns, fetch=fetch)
            if not builder.mapping_all:  # only the columns every row is checked for
                frame = frame[[c for c in dict.fromkeys((options.prompt_field, answer_field)) if c in columns]]
            builder.add_all(frame.to_dict("records"))
    except pd.errors.EmptyDataError:
        raise UserError(
            f"Source {source!r}: file {path} is empty. Give a CSV file with a header "
            "row and at least one example."
        ) from None
    except UnicodeDecodeError:
        raise _utf8_problem(path, source) or UserError(
            f"Source {source!r}: file {path} is not valid UTF-8. Re-save it as UTF-8.") from None
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, or a gzip file cut short
        raise _unreadable(path, source, exc) from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise not_csv(exc) from None
    if builder is None:  # a header and no rows
        raise UserError(f"Source {source!r}: {_where(path)} has no examples. Give a file with at least one row.")
    dataset = builder.finish()
    _note_duplicate_csv_columns(path, options.delimiter, columns, ctx)
    return dataset


@LOADERS.register("parquet")
def load_parquet(options: ParquetLoader, ctx: LoadContext) -> Dataset:
    """A local Parquet file, read a batch of rows at a time.

    Batches are :data:`CHUNK_ROWS` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _existing_file(options.path, ctx)

    def unreadable(exc: BaseException) -> UserError:
        return UserError(
            f"Source {ctx.source_name!r}: file {path} could not be read as Parquet ({exc}). "
            "Check that it is a Parquet file."
        )

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise unreadable(exc) from None
    if parquet.metadata.num_rows == 0:
        raise UserError(f"Source {ctx.source_name!r}: file {path} is empty (no rows).")
    answer_option, answer_field = _required_fields(options, ctx)
    names = parquet.schema_arrow.names
    # a name the file gives two columns: the last one, which a record (``to_pylist``) holds
    checked = [len(names) - 1 - names[::-1].index(c) for c in dict.fromkeys((options.prompt_field, answer_field))
               if c in names]

    def fetch(wanted: Any) -> Iterator[tuple[int, dict[str, Any]]]:  # the file read again for these records
        return _records_at(parquet.iter_batches(batch_size=CHUNK_ROWS), wanted,
                           lambda batch, at: batch.take(pa.array(at)).to_pylist())

    builder = CommonColumns(options.prompt_field, answer_field, answer_option, ctx, _where(path),
                            one_based_row, names, fetch=fetch)
    try:
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
            # past the rows mapped as they come, only the columns every row is checked for
            builder.add_all((batch if builder.mapping_all else batch.select(checked)).to_pylist())
        dataset = builder.finish()
    except (pa.ArrowException, OSError) as exc:
        raise unreadable(exc) from None
    return dataset


# ------------------------------------------------------------------- huggingface


def one_based_row(i: int) -> str:
    """Where row ``i`` (0-based) of a table is, counted from 1 as JSONL and CSV lines are."""
    return f"row {i + 1}"


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


def _json_columns_of(loaded: Any) -> dict[str, Any]:
    """The ``Json`` columns of a Hugging Face dataset (datasets >= 5 stores a column whose
    values mix types, answers ``42`` and ``"forty"``, as JSON text): column -> feature,
    whose ``decode_example`` gives a value back."""
    import datasets

    json_feature = getattr(datasets, "Json", None)
    if json_feature is None:  # an older datasets has no such feature
        return {}
    return {name: feature for name, feature in loaded.features.items() if isinstance(feature, json_feature)}


def _with_json_decoded(records: list[dict[str, Any]], columns: dict[str, Any]) -> list[dict[str, Any]]:
    """``records`` with the JSON text of ``Json`` columns decoded: read as stored, the
    answer "forty" was the text ``"forty"``, quotes included."""
    for record in records:
        for column, feature in columns.items():
            value = record.get(column)
            if isinstance(value, str):
                record[column] = feature.decode_example(value)
    return records


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
    from subsetctl.hub import dataset_cached, hub_reachable, is_file_builder, looks_local, unreachable_reason

    if looks_local(path) or local.exists() or is_file_builder(path) or dataset_cached(path) \
            or hub_reachable():  # a path meant as local: load_dataset says it is missing
        return
    raise UserError(
        f"Source {source_name!r}: {path!r} is a Hugging Face hub dataset id, but {unreachable_reason()} and "
        "the local Hugging Face cache does not hold it. Point loader.path at a local copy (a folder written by "
        "save_to_disk, or use the jsonl, csv or parquet loader on its files), or run where the hub is reachable."
    )


def csv_cells_as_text(path: str, name: str | None, data_files: list[str] | None) -> dict[str, Any]:
    """``load_dataset`` options that make ``datasets``' csv builder read every cell as the
    text the file holds, as the ``csv`` loader does: the builder lets pandas guess each
    column's type, so gold answers ``2`` and ``1.50`` in one column became "2.0" and "1.5",
    ``007`` "7.0", and an answer ``NA`` or ``None`` a missing value. Every column of every
    file (from their headers: the splits' files may differ, a test split without answers)
    gets a ``str`` converter. Empty for anything that is not local CSV files (a Parquet or
    JSON folder, a hub id: left as datasets reads it), and for files whose header cannot be
    read here (``load_dataset`` then says why)."""
    import datasets
    import pandas as pd
    from datasets.packaged_modules.csv.csv import CsvConfig

    try:
        config = datasets.load_dataset_builder(path, name, data_files=data_files).config
    except Exception:  # noqa: BLE001  (load_dataset, called next, reports the problem)
        return {}
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


@LOADERS.register("huggingface")
def load_huggingface(options: HuggingFaceLoader, ctx: LoadContext) -> Dataset:
    """Anything ``datasets.load_dataset`` reads: a local folder or a hub id; a folder written
    by ``save_to_disk`` is read with ``datasets.load_from_disk``. Local CSV files are read
    with every cell as text (:func:`csv_cells_as_text`)."""
    import datasets

    from subsetctl.hub import is_file_builder

    local = resolve_path(options.path, ctx.base_dir)
    path = str(local) if local.exists() else options.path
    try:
        data_files = expand_data_files(options, ctx.base_dir)
    except UserError as exc:
        raise UserError(f"Source {ctx.source_name!r}: {exc}") from None
    where = f"dataset {path!r}" + (f" (configuration {options.name!r})" if options.name else "")
    if local.is_file():
        raise UserError(f"Source {ctx.source_name!r}: loader.path {file_as_dataset_path_problem(local, options.path)}.")
    _refuse_unreachable_hub_dataset(path, local, ctx.source_name)
    try:
        if is_saved_to_disk(local):  # written by Dataset(Dict).save_to_disk, which load_dataset refuses
            loaded = datasets.load_from_disk(str(local))
            if isinstance(loaded, datasets.DatasetDict):
                if options.split not in loaded:
                    raise UserError(
                        f"Source {ctx.source_name!r}: {where} has the splits {', '.join(loaded)}, not "
                        f"{options.split!r}. Set loader.split to one of them."
                    )
                loaded = loaded[options.split]
            else:
                _check_single_split(loaded, options, ctx.source_name, where, ctx.notices)
        else:
            if data_files is not None:  # load_dataset reads each file as a glob: /x/exp [2]/a.jsonl matched nothing
                data_files = [str(_glob_escaped(Path(f))) if Path(f).is_absolute() and Path(f).exists() else f
                              for f in data_files]
            as_text = csv_cells_as_text(path, options.name, data_files) if local.exists() or is_file_builder(path) else {}
            loaded = datasets.load_dataset(path, options.name, split=options.split, data_files=data_files, **as_text)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001  (load_dataset fails in many library-specific ways)
        raise UserError(
            f"Source {ctx.source_name!r}: datasets.load_dataset could not load {where}, split "
            f"{options.split!r}: {describe_exception(exc)}. Check loader.path, loader.name, "
            "loader.split and loader.data_files (hub ids need network access; the files of one "
            "dataset must have the same columns with the same types)."
        ) from None
    if not isinstance(loaded, datasets.Dataset):
        raise UserError(
            f"Source {ctx.source_name!r}: {where} did not give one split as a Dataset (got "
            f"{type(loaded).__name__}). Set loader.split."
        )
    answer_option, answer_field = _required_fields(options, ctx)
    # the rows as stored, a batch at a time: not through the dataset's format (a saved
    # "numpy" format turned numbers into JSON strings) or its feature decoding (an Image
    # column became a PIL object whose text holds a memory address), like ``to_list()``
    classes, as_json = _class_names_of(loaded), _json_columns_of(loaded)

    def records(batch: Any) -> list[dict[str, Any]]:
        rows = _with_json_decoded(batch.to_pylist(), as_json) if as_json else batch.to_pylist()
        return _with_class_names(rows, classes) if classes else rows

    def fetch(wanted: Any) -> Iterator[tuple[int, dict[str, Any]]]:  # the kept rows read again
        indices, start = wanted.tolist(), 0
        for batch in loaded.select(indices).with_format("arrow").iter(batch_size=CHUNK_ROWS):
            # (a zip of one iterator over every batch took an index it then dropped at each batch's end)
            yield from zip(indices[start:start + batch.num_rows], records(batch))
            start += batch.num_rows

    builder = CommonColumns(options.prompt_field, answer_field, answer_option, ctx, where, one_based_row,
                            loaded.column_names, fetch=fetch)
    checked = [c for c in dict.fromkeys((options.prompt_field, answer_field)) if c in loaded.column_names]
    for batch in loaded.with_format("arrow").iter(batch_size=CHUNK_ROWS):
        # past the rows mapped as they come, only the columns every row is checked for
        builder.add_all(records(batch if builder.mapping_all else batch.select(checked)))
    return builder.finish()


# ----------------------------------------------------------------- reasoning-gym


def reasoning_gym_tasks() -> list[str]:
    """Names of reasoning-gym's registered task generators."""
    import reasoning_gym  # noqa: F401  (importing registers the generators)
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def reasoning_gym_task_hint(tasks: list[str]) -> str:
    """How to see every reasoning-gym task (`subsetctl ls` lists loaders, not tasks)."""
    return (
        f"The installed reasoning-gym has {len(tasks)} tasks; list them with "
        "`python -c \"import reasoning_gym; print(*sorted(reasoning_gym.factory.DATASETS))\"`."
    )


def close_names(name: str, names: Iterable[str], n: int = 5) -> str:
    """ "Did you mean ...?" text for an unknown name."""
    names = list(names)
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    if close:
        return "Did you mean " + ", ".join(repr(c) for c in close) + "?"
    return "Known names include " + ", ".join(repr(c) for c in names[:10]) + "."


@LOADERS.register("reasoning_gym")
def load_reasoning_gym(options: ReasoningGymLoader, ctx: LoadContext) -> Dataset:
    """A reasoning-gym task generator: question -> prompt, answer -> response.

    Each row's metadata is the generator's metadata plus ``rg_task``, ``rg_seed``,
    ``rg_size``, ``rg_index`` and ``rg_config``: enough to rebuild the exact entry
    (``reasoning_gym.create_dataset(rg_task, size=rg_size, seed=rg_seed,
    **rg_config)[rg_index]``) and score an answer with its ``score_answer``."""
    import reasoning_gym

    tasks = reasoning_gym_tasks()
    if options.task not in tasks:
        raise UserError(
            f"Source {ctx.source_name!r}: loader.task {options.task!r} is not a reasoning-gym "
            f"task. {close_names(options.task, tasks)} {reasoning_gym_task_hint(tasks)}"
        )
    seed = options.seed if options.seed is not None else ctx.seed
    try:
        generator = reasoning_gym.create_dataset(options.task, size=options.size, seed=seed, **options.config)
    except (TypeError, ValueError, AssertionError) as exc:
        raise UserError(
            f"Source {ctx.source_name!r}: reasoning-gym task {options.task!r} rejected "
            f"loader.config {options.config!r}: {exc}. Fix loader.config."
        ) from None
    records = []
    for index in range(options.size):
        entry = generator[index]
        meta = dict(entry.get("metadata") or {})
        meta.update(
            rg_task=options.task, rg_seed=seed, rg_size=options.size, rg_index=index, rg_config=options.config
        )
        records.append({"question": entry["question"], "answer": entry["answer"], "metadata": meta})
    where = f"reasoning-gym task {options.task!r}"
    return build_common(
        records,
        "question",
        "answer",
        None,
        ctx,
        where,
        lambda i: f"entry {i}",
        ["question", "answer", "metadata"],
        fix="The generator made an unusable entry: try another loader.seed or loader.config.",
        draw=True,
    )


# ------------------------------------------------------------------------- evals


def evals_data_dir() -> Path | None:
    """``evals/registry/data`` of the installed ``evals`` package, or None.

    Found with ``importlib.util.find_spec`` so that the heavy package is never imported."""
    spec = importlib.util.find_spec("evals")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "registry" / "data"
    return folder if folder.is_dir() else None


def evals_names(data_dir: Path) -> list[str]:
    """The eval folders under ``data_dir``."""
    return sorted(p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def evals_files(folder: Path) -> list[str]:
    """The JSONL files of one eval folder, as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jsonl") if p.is_file())


#: The file an eval's samples are usually in; its other files are often few-shot examples.
EVALS_SAMPLES_FILE = "samples.jsonl"


def default_evals_file(files: list[str]) -> str:
    """The file read when ``loader.file`` is not set: ``samples.jsonl`` when the eval has
    one (its other files are typically few-shot or labelled variants: ``fewshot.jsonl``
    sorts first in ``anagrams``), else the first file in sorted order. ``files`` is
    :func:`evals_files`'s non-empty list."""
    if EVALS_SAMPLES_FILE in files:
        return EVALS_SAMPLES_FILE
    nested = [f for f in files if f.rsplit("/", 1)[-1] == EVALS_SAMPLES_FILE]
    return nested[0] if nested else files[0]


def evals_file(options: EvalsLoader, source: str) -> Path:
    """The JSONL file an evals loader reads; UserError when it cannot be found."""
    data_dir = evals_data_dir()
    if data_dir is None:
        raise UserError(
            f"Source {source!r}: the evals loader needs the `evals` package's data files, "
            f"which are not installed. Install them with `{EVALS_INSTALL_HINT}`."
        )
    folder = data_dir / options.name
    if not folder.is_dir():
        raise UserError(
            f"Source {source!r}: loader.name {options.name!r} is not an eval under {data_dir}. "
            f"{close_names(options.name, evals_names(data_dir))}"
        )
    files = evals_files(folder)
    if options.file is None:
        if not files:
            raise UserError(f"Source {source!r}: eval {options.name!r} ({folder}) has no .jsonl file.")
        return folder / default_evals_file(files)
    if options.file not in files:
        listed = ", ".join(repr(f) for f in files) or "(none)"
        raise UserError(
            f"Source {source!r}: loader.file {options.file!r} is not in eval {options.name!r} "
            f"({folder}). Its files: {listed}."
        )
    return folder / options.file


def _evals_prompt(value: Any) -> str | None:
    """The prompt of an evals ``input``: the contents of its chat messages joined by
    blank lines (system, user and few-shot assistant turns, in order), or the text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for message in value:
            content = message.get("content") if isinstance(message, dict) else message
            if content is not None:
                parts.append(value_to_text(content))
        return "\n\n".join(parts)
    if value is None:
        return None
    return value_to_text(value)


@LOADERS.register("evals")
def load_evals(options: EvalsLoader, ctx: LoadContext) -> Dataset:
    """A task from the `evals` package: chat ``input`` -> prompt, ``ideal`` -> response.

    A list ``ideal`` (several accepted answers) gives its first item as the response;
    the whole list stays in the metadata as ``ideal_all``."""
    path = evals_file(options, ctx.source_name)
    parsed = parse_jsonl(path, ctx.source_name)
    records = []
    for number, record in parsed:
        ideal = record.get("ideal")
        if isinstance(ideal, list):
            ideal_all = ideal
            ideal = ideal[0] if ideal else None
        else:
            ideal_all = [ideal] if ideal is not None else []
        if ideal is None:
            raise UserError(
                f"Source {ctx.source_name!r}: file {path}, line {number} has no 'ideal' answer. "
                f"{_evals_no_ideal_advice(options, path)}"
            )
        extra = {k: v for k, v in record.items() if k not in ("input", "ideal")}
        extra.update(evals_name=options.name, evals_file=path.name, ideal_all=ideal_all)
        records.append({"prompt": _evals_prompt(record.get("input")), "ideal": ideal, "metadata": extra})
    lines = [number for number, _ in parsed]
    return build_common(
        records,
        "prompt",
        "ideal",
        None,
        ctx,
        f"file {path}",
        lambda i: f"line {lines[i]}",
        ["input", "ideal"],
        fix="Choose an eval (loader.name) or file (loader.file) whose every sample has an 'ideal' answer.",
        draw=True,
    )


def _evals_no_ideal_advice(options: EvalsLoader, path: Path) -> str:
    """What to do about a sample without an ``ideal`` answer: choose another file when the
    eval has several (besides its samples, an eval may ship few-shot or model-graded
    files), else another eval (this one is probably model-graded)."""
    data_dir = evals_data_dir()
    folder = data_dir / options.name if data_dir is not None else path.parent
    others = [f for f in evals_files(folder) if folder / f != path] if folder.is_dir() else []
    if others:
        listed = ", ".join(repr(f) for f in others)
        return (
            f"Eval {options.name!r} has other files ({listed}): choose one with ideal answers with "
            "loader.file, or choose another eval (this file is probably model-graded)."
        )
    return f"Eval {options.name!r} is probably model-graded; choose an eval with ideal answers."


# ------------------------------------------------------------------------ plugin

#: Built-in loader types and their option models (a plugin entry may name one).
BUILTIN_OPTION_MODELS: dict[str, type] = {
    "jsonl": JsonlLoader,
    "csv": CsvLoader,
    "parquet": ParquetLoader,
    "huggingface": HuggingFaceLoader,
    "reasoning_gym": ReasoningGymLoader,
    "evals": EvalsLoader,
}


#: the built-in loaders, which honour ``LoadContext.keep_at_most`` (filled in below)
DRAWING_LOADERS: set[Callable[..., Any]] = set()


@LOADERS.register("plugin")
def load_plugin(options: PluginLoader, ctx: LoadContext) -> Dataset:
    """A loader registered by a third party, called as ``fn(options: dict, ctx)``.

    It must return a ``datasets.Dataset`` with a ``prompt`` column and a ``response``
    (causal-lm) or ``label`` (classifier) column; other columns (and a ``metadata``
    column holding objects) become the metadata."""
    from pydantic import ValidationError

    if options.name == "plugin":
        raise UserError(f"Source {ctx.source_name!r}: loader.name cannot be 'plugin' itself.")
    fn = LOADERS.get(options.name)
    call_options: Any = options.options
    model = BUILTIN_OPTION_MODELS.get(options.name)
    if model is not None:
        try:
            call_options = model.model_validate({"type": options.name, **options.options})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(options)'}: {e['msg']}" for e in exc.errors())
            raise UserError(
                f"Source {ctx.source_name!r}: loader.options are not valid for the built-in "
                f"loader {options.name!r}: {problems}. `subsetctl schema` lists that loader's keys."
            ) from None
    from subsetctl.plugin_guard import call_loader_plugin

    # the plugin's data is drawn from after it returns (it may filter what a built-in loader gives)
    result = call_loader_plugin(fn, call_options, dataclasses.replace(ctx, keep_at_most=None, drawn={}),
                                f"loader plugin {options.name!r} ({LOADERS.origin(options.name)})",
                                "Fix the plugin or its options under loader.options.")
    from datasets import Dataset

    if not isinstance(result, Dataset):
        raise UserError(
            f"Source {ctx.source_name!r}: loader plugin {options.name!r} returned "
            f"{type(result).__name__}, not a datasets.Dataset. Fix the plugin."
        )
    if model is not None:
        return result
    answer = "label" if ctx.kind == "classifier" else "response"
    where = f"the dataset returned by loader plugin {options.name!r}"
    fix = (
        f"A loader plugin must return a dataset with a 'prompt' column and, for model.kind {ctx.kind}, "
        f"a {answer!r} column (these names are fixed; no option renames them): fix the plugin "
        f"{options.name!r} or its loader.options."
    )
    return build_common(
        _with_class_names(result.to_list(), _class_names_of(result)), "prompt", answer, None, ctx, where,
        one_based_row, result.column_names, fix, draw=True
    )


DRAWING_LOADERS.update({load_jsonl, load_csv, load_parquet, load_huggingface, load_reasoning_gym, load_evals,
                        load_plugin})
