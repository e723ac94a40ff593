"""The common columns every loader produces, and what the loaders share: the columns'
Arrow types, :class:`LoadContext`, the data stage's seeded draw (:func:`sample_order`),
label vocabularies, value-to-text rules, :class:`CommonColumns` (which builds a source's
rows into Arrow chunks of :data:`CHUNK_ROWS` with line-numbered errors and notices), the
datasets built from its chunks, and the "did you mean" text for an unknown task or eval
name (:func:`close_names`).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from subsetctl.chat_context import CONTEXT_KEY, is_chat_context
from subsetctl.errors import UserError, count_agreeing, shown_path
from subsetctl.spec import LoaderBase
from subsetctl.text_rows import TEXT_KEY

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
    #: a causal LM's answers the source's ``label_map`` renames (its keys): a whole number
    #: held as a float among them ('1.0', the key 1) is renamed, not learned as written
    renamed_answers: frozenset[str] = frozenset()
    #: the source's JSON Lines or CSV file is read by other sources too (:func:`~subsetctl.data.
    #: loaders.files.text_file_readers`): a problem of the file (lines not UTF-8, stray cells, mixed
    #: line ends) is said of the file, alike by each, as validate says it once for all its readers
    file_shared: bool = dataclass_field(default=False, compare=False)


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


def _utf8_encodes(text: str) -> bool:
    """Whether ``text`` is valid UTF-8 text (no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class InvalidText(UserError):
    """A row's prompt, answer or chat message holds text that is not valid UTF-8 (a lone
    surrogate, bytes that do not decode): :class:`CommonColumns` leaves the row out, with
    one notice counting such rows, and stops the source only when no row is left."""


def _check_utf8(text: str, source: str, where: str, locate: Callable[[], str], column: str) -> str:
    """``text``, unless it holds a lone surrogate (an :class:`InvalidText`; ``locate()``
    names the row, only then: finding a CSV row's file line reads the file again)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidText(
            f"Source {source!r}: {where}, {locate()}: the {column!r} value contains an invalid "
            "unicode escape (a lone surrogate such as \\ud800). Fix that value in the file."
        ) from None
    return text


def _check_context_utf8(context: list[dict[str, str]], source: str, where: str, locate: Callable[[], str],
                        column: str) -> None:
    """Check a chat context's messages (:data:`CONTEXT_KEY`) as :func:`_check_utf8` checks a
    prompt: a lone surrogate in one stopped meta-init with an internal error from the
    tokenizer."""
    for message in context:
        _check_utf8(message["content"], source, where, locate, column)


def _own_contexts(record: dict[str, Any]) -> list[Any]:
    """The values a record holds under :data:`CONTEXT_KEY`: as a column, and as a key of its
    ``metadata`` object (or of the JSON text of one), as :meth:`CommonColumns._append` reads them."""
    found = [record[CONTEXT_KEY]] if CONTEXT_KEY in record else []
    metadata = record.get("metadata")
    if isinstance(metadata, str) and CONTEXT_KEY in metadata:
        try:
            metadata = json.loads(metadata)
        except (ValueError, RecursionError):
            return found
    if isinstance(metadata, dict) and CONTEXT_KEY in metadata:
        found.append(metadata[CONTEXT_KEY])
    return found


# --------------------------------------------------------------- common columns


def _where(path: Path) -> str:
    return f"file {shown_path(path)}"


def _missing_column(
    source: str, where: str, column: str, option: str | None, available: Iterable[str], fix: str | None = None,
    text: str | None = None, written: bool = False,
) -> UserError:
    """The error for a column the data lacks. ``option`` is the spec option that named the
    column (the advice is then to change it); ``None`` when the loader's columns are fixed,
    and ``fix`` then says what to do instead. ``text``: the column of a plain-text source
    read with prompt and response columns (a hub corpus as wikitext, whose one column is
    ``text``), which ``loader.text_field`` reads: setting prompt_field to it was no fix.
    ``written``: whether the spec wrote ``option`` (else its default named the column, which
    a usual name may stand for: :func:`usual_column`)."""
    names = sorted(set(available))
    listed = ", ".join(repr(n) for n in names) if names else "(none)"
    if option is None:
        return UserError(
            f"Source {source!r}: {where} has no column {column!r}. Available columns: {listed}. "
            f"{fix or 'Fix the data.'}"
        )
    if text is not None:
        return UserError(
            f"Source {source!r}: {where} has no column {column!r} (asked for by loader.{option}). "
            f"Available columns: {listed}. Plain text with no prompt and response to learn reads with "
            f"loader.text_field: {text} (in place of prompt_field and response_field), each row's text trained "
            "on whole; or give each row a prompt and a response."
        )
    near = close_column(column, names) or usual_column(option, column, names, written)
    return UserError(
        f"Source {source!r}: {where} has no column {column!r} (asked for by loader.{option}). "
        f"Available columns: {listed}. {'' if near is None else f'Did you mean {near!r}? '}"
        f"Set loader.{option} to one of them or fix the data."
    )


def _named(field: str | Sequence[str], option: str | None) -> str:
    """``'response' (loader.response_field)``, or just ``'response'`` for a fixed column;
    a list ``prompt_field`` as its columns joined: ``'instruction' + 'input' (loader.prompt_field)``."""
    shown = repr(field) if isinstance(field, str) else " + ".join(repr(f) for f in field)
    return f"{shown} (loader.{option})" if option else shown


#: what joins the texts of a list ``prompt_field``'s columns: a blank line
PROMPT_JOINER = "\n\n"


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
#: large file's rows then never all exist as Python objects at once. Every module reads it
#: here (``common.CHUNK_ROWS``): change it on this module, not on the package
CHUNK_ROWS = 50_000
#: characters (prompts, answers and metadata JSON) mapped before a chunk is made, however
#: few its rows: 50,000 documents of a corpus (5 kB each, some beyond Latin-1, so Python
#: holds them at 4 bytes a character) took 1 GB more at the peak than chunks of this size
CHUNK_CHARS = 16_000_000


def batch_rows(data_bytes: int, num_rows: int) -> int:
    """How many rows of a table (``num_rows`` rows, ``data_bytes`` bytes of data) a loader
    reads as one batch: :data:`CHUNK_ROWS`, or as many as hold about :data:`CHUNK_CHARS`
    bytes where its rows are long. A batch becomes Python objects (``to_pylist``) before its
    rows are chunked: 50,000 documents of a corpus (5 kB each) took 1 GB more at the peak."""
    per_row = max(data_bytes / max(1, num_rows), 1.0)
    return max(1, min(CHUNK_ROWS, int(CHUNK_CHARS // per_row)))


class CommonColumns:
    """Maps raw records onto the common columns, one record at a time.

    A loader streams its file's records in (:meth:`add`) and gets the dataset from
    :meth:`finish`. Mapped rows are turned into Arrow chunks of :data:`CHUNK_ROWS`, so
    reading a large file holds its table plus one chunk of Python objects, not every
    record as a dict (a 1 GB JSON Lines file took about 5 GB that way).

    Args:
        prompt_field: the key holding the prompt; or a list of keys (a list
            ``loader.prompt_field``), whose values that are not blank (missing, null, NaN,
            or only whitespace as text) are the prompt, in that order, joined by
            :data:`PROMPT_JOINER`, each as it is (not stripped) (a row all of whose
            keys are missing or null lacks its prompt; one whose values are all blank has an
            empty prompt).
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
        plugin: the loader plugin whose dataset the records are ("'mine'"), or None for a
            built-in loader's: the notices' advice is then about what the plugin returns
            (telling its author to "use a plugin loader" was odd advice).
        written: the loader options the spec wrote (its ``model_fields_set``): a missing
            column of one left at its default is told a usual name for it (:func:`usual_column`).

    Every row needs a prompt and an answer that are not missing, null or NaN (an error
    naming the row; a text source leaves such a row out instead, see
    :class:`~subsetctl.data.loaders.text.TextColumns`). A row whose answer (the gold
    response, or the class label) is empty or only whitespace is left out with a notice in
    ``ctx.notices``: a causal-lm example
    without response tokens has nothing to train or score, and a blank label would become
    a class of its own; every row blank is an error. A CSV row with too few cells reads as
    empty cells, so it is left out too. An empty prompt is allowed, with a notice (a
    prompt-less example is a plain text continuation; see
    :func:`subsetctl.modeling.encoding.encode_causal_lm`).

    A column that no row has (any of a list ``prompt_field``'s) is reported as missing (with
    the columns there are) rather
    than as null in its first row, so the first row error found is kept and raised by
    :meth:`finish`, once every record has been seen.

    Other keys of a record go into its ``metadata`` JSON; a ``metadata`` key holding an
    object (or a JSON object string) is merged into it instead of being nested.
    """

    def __init__(self, prompt_field: str | Sequence[str], answer_field: str, answer_option: str | None, ctx: LoadContext,
                 where: str, locate: Callable[[int], str], available: Iterable[str] | None = None,
                 fix: str | None = None,
                 fetch: Callable[[Any], Iterable[tuple[int, dict[str, Any]]]] | None = None,
                 plugin: str | None = None, written: Collection[str] = ()) -> None:
        from array import array

        self.prompt_field, self.answer_field, self.answer_option = prompt_field, answer_field, answer_option
        #: the prompt's columns: one, or those of a list ``prompt_field`` (:attr:`joined`)
        self.prompt_columns: tuple[str, ...] = (prompt_field,) if isinstance(prompt_field, str) else tuple(prompt_field)
        self.joined = not isinstance(prompt_field, str)
        self.prompt_option = "prompt_field" if answer_option else None
        self.ctx, self.where, self.locate, self.fix, self.plugin = ctx, where, locate, fix, plugin
        self.written = frozenset(written)
        self.available: set[str] = set(available) if available is not None else set()
        self.collect_keys = available is None
        self.classifier = ctx.kind == "classifier"
        self.what = "a class label" if self.classifier else "a gold response"
        self.advice = f" {fix}" if fix and not answer_option else ""
        self.skip = {*self.prompt_columns, answer_field}
        if self.available.issuperset(COLUMNS):  # rows a built-in loader prepared (a plugin filtering its output):
            self.skip |= {"source", "row", "label", "label_text"}  # those columns are its own, not the data's
        # (a data file's own "source", "row" or "label_text" column is the data's: kept in the metadata)
        self.seen = dict.fromkeys((*self.prompt_columns, answer_field), False)
        self.count = 0
        self.error: UserError | None = None
        self.null_rows: list[int] = []  # the first few rows missing a prompt or an answer (for the error)
        self.null_count = 0
        self.blank: list[int] = []  # the first few rows with a blank answer (for the notice)
        self.blank_count = 0
        self.invalid: list[int] = []  # the first few rows left out for text that is not UTF-8 (for the notice)
        self.invalid_count = 0
        self.invalid_detail = ""  # what the first of them holds (the error it would have been)
        self.missing_count = 0  # of those, rows left out for a missing answer (a subclass's: a text source's)
        self.empty_prompts: list[int] = []  # the first few kept rows with an empty prompt (for the notice)
        self.empty_prompt_count = 0
        self.minus_one: list[int] = []  # the first few rows of a classifier labelled -1 (for the notice)
        self.minus_one_count = 0
        self.some_labels: set[str] = set()  # up to 3 of the labels seen (is -1 one of the classes -1 and 1?)
        self.structured: tuple[int, str] | None = None  # first row whose answer is a list or object
        self.structured_count = 0
        self.structured_prompt: tuple[int, str] | None = None  # first row whose prompt is (e.g. a chat)
        self.structured_prompt_count = 0
        self.whole_float: tuple[int, float] | None = None  # first row whose answer is a float like 5.0
        self.infinite: list[int] = []  # the first few rows whose answer is an infinite number (for the notice)
        self.infinite_count = 0
        self.whole_float_count = 0
        self.spaced: tuple[int, str] | None = None  # first kept row whose answer starts with whitespace
        self.spaced_count = 0
        self.chunks: list[Any] = []
        self.columns: dict[str, list[Any]] = self._empty_columns()
        self.chunk_chars = 0  # characters in :attr:`columns` (see :attr:`chunk_full`)
        self.fetch = fetch
        self.limit = ctx.keep_at_most if fetch is not None else None
        self.usable = 0  # rows checked and kept so far (not left out as blank)
        self.usable_rows = array("q")  # with a limit: their record indices (8 bytes a row)
        self.digests = array("q")  # with a limit: hash of each one's prompt and answer (checked on fetch)

    @functools.cached_property
    def checked(self) -> tuple[tuple[str, str | None], ...]:
        """(column, option) of each column every row is checked for, the answer's last: built
        at the first row (a subclass may name the prompt's option after ``__init__``), then
        read as an attribute, as :meth:`_map` runs for every row."""
        return (*((field, self.prompt_option) for field in self.prompt_columns), (self.answer_field, self.answer_option))

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
        except InvalidText as exc:  # (raised before the row is mapped: see _map)
            self._leave_out_invalid(i, exc)
            return
        except UserError as exc:
            self.error = exc
            self._count_null(i, record)
            return
        if self.chunk_full:
            self._flush()

    @property
    def chunk_full(self) -> bool:
        """Whether the rows mapped since the last chunk make one: :data:`CHUNK_ROWS` of them,
        or :data:`CHUNK_CHARS` characters (long documents: a count of rows bounds nothing)."""
        return len(self.columns["row"]) >= CHUNK_ROWS or self.chunk_chars >= CHUNK_CHARS

    def _count_null(self, i: int, record: dict[str, Any]) -> None:
        """Count record ``i`` if it lacks its prompt or its answer (a null or missing value)."""
        if self._prompt_missing(record) or _missing(record.get(self.answer_field)):
            self.null_count += 1
            if len(self.null_rows) < 5:
                self.null_rows.append(i)

    def _prompt_missing(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` lacks its prompt: its column (every one of a list's) is
        missing, null or NaN."""
        return all(_missing(record.get(field)) for field in self.prompt_columns)

    def _map(self, i: int, record: dict[str, Any]) -> None:
        source, answer_field = self.ctx.source_name, self.answer_field
        values: dict[str, Any] = {}
        if self.joined and self._prompt_missing(record):
            raise UserError(
                f"Source {source!r}: {self.where}, {self.locate(i)}: {_named(self.prompt_field, self.prompt_option)} "
                "is missing, null or NaN in every one of those columns. Every row needs a prompt from at least "
                f"one of them; fix or drop that row.{self.advice}"
            )
        for field, option in self.checked:
            value = record.get(field)
            if _missing(value):
                if self.joined and field != answer_field:  # (a listed column may be missing in a row)
                    continue
                raise UserError(
                    f"Source {source!r}: {self.where}, {self.locate(i)}: {_named(field, option)} is "
                    f"missing, null or NaN. Every row needs it; fix or drop that row.{self.advice}"
                )
            if isinstance(value, (bytes, bytearray)):
                try:
                    bytes(value).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InvalidText(
                        f"Source {source!r}: {self.where}, {self.locate(i)}: {_named(field, option)} holds bytes "
                        f"that are not UTF-8 text (byte {exc.start}). Store the column as UTF-8 strings."
                    ) from None
            values[field] = value
        if isinstance(values[answer_field], float) and math.isinf(values[answer_field]):
            self._count_infinite(i, values[answer_field])
        self._count_structured(i, values)
        locate_row = functools.partial(self.locate, i)
        prompt, answer = self._texts(values)
        prompt = _check_utf8(prompt, source, self.where, locate_row,
                             self._prompt_column_of(prompt, values) if self.joined else self.prompt_field)
        if not answer.strip():  # nothing to train or score on: left out (see finish) rather than fatal
            self._leave_out(i)
            return
        answer = _check_utf8(answer, source, self.where, locate_row, answer_field)
        self._check_more_text(record, locate_row)
        if self.classifier:
            if len(self.some_labels) < 3:
                self.some_labels.add(answer)
            if answer == "-1":
                self.minus_one_count += 1
                if len(self.minus_one) < 5:
                    self.minus_one.append(i)
        if not self.classifier and answer[:1].isspace():  # (a classifier's label is stripped)
            self.spaced_count += 1
            if self.spaced is None:
                self.spaced = (i, answer)
        if not prompt.strip():  # (a row kept: one whose answer is blank is left out above)
            self.empty_prompt_count += 1
            if len(self.empty_prompts) < 5:
                self.empty_prompts.append(i)
        full = self.mapping_all
        self.usable += 1
        if self.limit is not None:
            self.usable_rows.append(i)
            self.digests.append(self._digest(prompt, answer))
        if full:
            self._append(i, record, prompt, answer)

    def _check_more_text(self, record: dict[str, Any], locate: Callable[[], str]) -> None:
        """Check what else of ``record`` is trained on as the prompt is, before the row is
        mapped; may raise :class:`InvalidText`, which leaves the row out. Here: a causal LM's
        row's own :data:`CONTEXT_KEY` (a column, or a key of its metadata object), rendered
        before its prompt: a lone surrogate in one stopped the whole source (a subclass's:
        a chat's earlier messages). A record given with its checked columns only (past a
        limit, :attr:`mapping_all`) is checked when read again, by :meth:`_more_metadata`."""
        if self.classifier:
            return
        for context in _own_contexts(record):
            if context and is_chat_context(context):  # (another value: refused by _more_metadata)
                _check_context_utf8(context, self.ctx.source_name, self.where, locate, CONTEXT_KEY)

    def _leave_out_invalid(self, i: int, exc: InvalidText) -> None:
        """Leave row ``i`` out for text that is not UTF-8 (``exc`` says which and where):
        counted, and named by the notice :meth:`finish` gives if among the first few."""
        self.invalid_count += 1
        if len(self.invalid) < 5:
            self.invalid.append(i)
        if not self.invalid_detail:
            self.invalid_detail = str(exc)

    def _leave_out(self, i: int) -> None:
        """Leave row ``i`` out as one with a blank answer: counted, and named by the notice
        :meth:`finish` gives if among the first few."""
        self.blank_count += 1
        if len(self.blank) < 5:
            self.blank.append(i)

    def _count_structured(self, i: int, values: dict[str, Any]) -> None:
        """Count row ``i`` if its prompt or answer (in ``values``) is a list or an object,
        which is read as its JSON text, or (a causal LM's) its answer is a whole number held
        as a float, which reads "5.0" (each said once, by :meth:`finish`)."""
        answer = values[self.answer_field]
        if (not self.classifier and isinstance(answer, float) and math.isfinite(answer) and answer.is_integer()
                and str(int(answer)) not in self.ctx.renamed_answers):
            self.whole_float_count += 1  # reads "5.0" (a classifier's label reads "5": label_to_text)
            if self.whole_float is None:
                self.whole_float = (i, answer)
        if isinstance(answer, (list, dict)):
            self.structured_count += 1
            if self.structured is None:
                self.structured = (i, value_to_text(values[self.answer_field]))
        if self.joined:
            structured = next((values[f] for f in self.prompt_columns if isinstance(values.get(f), (list, dict))), None)
        else:  # (one column: looked at directly, as every row comes here)
            structured = values[self.prompt_field] if isinstance(values[self.prompt_field], (list, dict)) else None
        if structured is not None:
            self.structured_prompt_count += 1
            if self.structured_prompt is None:
                self.structured_prompt = (i, value_to_text(structured))

    def _count_infinite(self, i: int, value: float) -> None:
        """Count row ``i``, whose answer is an infinite number (JSON's ``Infinity``, which
        Python's JSON reader takes and other readers refuse; a float column's inf): read as
        the text "inf", which a causal LM then learns (said once, by :meth:`finish`). A
        classifier's label so is an error: it would be a class "inf"."""
        if self.classifier:
            raise UserError(
                f"Source {self.ctx.source_name!r}: {self.where}, {self.locate(i)}: {self._answer_named()} is "
                f"{'-' if value < 0 else ''}Infinity, an infinite number (JSON's Infinity, a float column's inf), "
                "which is no class: it would be read as the class 'inf'. Write that row's label, or drop the row."
            )
        self.infinite_count += 1
        if len(self.infinite) < 3:
            self.infinite.append(i)

    def _note_infinite(self, named: str) -> None:
        """The notice that some answers are infinite numbers (:meth:`_count_infinite`)."""
        more = self.infinite_count - len(self.infinite)
        shown = ", ".join(self.locate(i) for i in self.infinite) + (f" (+{more} more)" if more > 0 else "")
        self.ctx.notices.append(
            f"Source {self.ctx.source_name!r}: {self.where}: {count_agreeing(self.infinite_count, 'row', 'has', 'have')} an "
            "infinite number "
            f"(JSON's Infinity or -Infinity, a float column's inf) as {named}, at {shown}: each gold response is its "
            "text, 'inf' or '-inf', which the model learns. If a number was meant, fix those values in the file "
            "(JSON has no infinite numbers: Python's reader takes Infinity, most others refuse it)."
        )

    @property
    def fields(self) -> list[str]:
        """The columns every row is checked for (a loader may give later records with only
        these, see :attr:`mapping_all`): a causal LM's :data:`CONTEXT_KEY` and ``metadata``
        too (:meth:`_check_more_text`), so that a row past the first ``limit`` whose own chat
        context is not UTF-8 is left out as any other, not found only if the draw reads it
        again (then an error)."""
        more = () if self.classifier else (CONTEXT_KEY, "metadata")
        return list(dict.fromkeys((*self.prompt_columns, self.answer_field, *more)))

    @property
    def left_out_count(self) -> int:
        """How many of the rows added so far are left out (a blank answer, text that is not UTF-8)."""
        return self.blank_count + self.invalid_count

    def _answer_named(self) -> str:
        """What the notices on blank answers call a row's answer (its column, and the option
        that names it)."""
        return _named(self.answer_field, self.answer_option)

    def _prompt_named(self) -> str:
        """What the notice on empty prompts calls a row's prompt (its column, and the option
        that names it)."""
        return _named(self.prompt_field, self.prompt_option)

    def _texts(self, record: dict[str, Any]) -> tuple[str, str]:
        """A record's prompt and answer as text (both present: checked by :meth:`_map`).
        A subclass may raise :class:`ValueError` for a record it leaves out."""
        value = record[self.answer_field]
        answer = label_to_text(value) if self.classifier else value_to_text(value)
        # (one prompt column: read here, without a call more for every row)
        return value_to_text(record[self.prompt_field]) if not self.joined else self._prompt_text(record), answer

    def _digest(self, prompt: str, answer: str) -> int:
        """What the seeded draw checks a record read again against (:meth:`_drawn`), from
        the texts :meth:`_texts` just gave for it."""
        return hash((prompt, answer))

    def _more_metadata(self, i: int, extra: dict[str, Any]) -> None:
        """Add to record ``i``'s metadata ``extra`` what a subclass read with its texts
        (:meth:`_texts` just ran for it); may raise :class:`UserError`. Here: a causal LM's
        row that carries a :data:`CONTEXT_KEY` of its own (a plugin loader's, or a column so
        named) has it checked as the model stages read it
        (:func:`subsetctl.chat_context.is_chat_context`), its texts UTF-8 as a prompt's, so
        that one they would refuse stops the data stage, not meta-init after it."""
        if not self.classifier and CONTEXT_KEY in extra and not is_chat_context(extra[CONTEXT_KEY]):
            raise UserError(
                f"Source {self.ctx.source_name!r}: {self.where}, {self.locate(i)}: its {CONTEXT_KEY!r} (a column, "
                "or a key of its metadata) is not a list of {role, content} messages (roles system, user or "
                "assistant), which that key holds: a chat's messages before the prompt, rendered before it. "
                "Rename that column, or fix what the loader writes there."
            )
        if not self.classifier and extra.get(CONTEXT_KEY):
            try:  # (a row being mapped: an error, not left out)
                _check_context_utf8(extra[CONTEXT_KEY], self.ctx.source_name, self.where,
                                    functools.partial(self.locate, i), CONTEXT_KEY)
            except InvalidText as exc:
                raise UserError(str(exc)) from None

    def _prompt_text(self, record: dict[str, Any]) -> str:
        """A record's prompt: its prompt column's value as text; with a list
        ``prompt_field``, the texts of those of its columns that are not blank, in the order
        listed, joined by :data:`PROMPT_JOINER` (the same from a record's checked values as
        from the whole record, as the seeded draw reads it again)."""
        if not self.joined:
            return value_to_text(record[self.prompt_field])
        texts = (value_to_text(record[f]) for f in self.prompt_columns if not _missing(record.get(f)))
        return PROMPT_JOINER.join(text for text in texts if text.strip())

    def _prompt_column_of(self, prompt: str, values: dict[str, Any]) -> str:
        """The column a message about the prompt's text names: the prompt column, or the
        first listed column whose text is not valid (only looked for when the prompt is
        not)."""
        if not self.joined or _utf8_encodes(prompt):
            return self.prompt_columns[0]
        return next((f for f in self.prompt_columns
                     if not _missing(values.get(f)) and not _utf8_encodes(value_to_text(values[f]))),
                    self.prompt_columns[0])

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
        self._more_metadata(i, extra)
        if not self.classifier and TEXT_KEY in extra and (extra[TEXT_KEY] is not True or prompt or extra.get(CONTEXT_KEY)):
            # (a plugin's own text rows, or a prepared one filtered, have an empty prompt and no chat)
            raise UserError(
                f"Source {self.ctx.source_name!r}: {self.where}, {self.locate(i)}: its {TEXT_KEY!r} (a column, or a "
                "key of its metadata) marks a text trained on whole (loader.text_field), which is true in a row with "
                "an empty prompt and no chat context only. Rename that column, or fix what the loader writes there."
            )
        columns = self.columns
        columns["source"].append(source)
        columns["prompt"].append(prompt)
        columns["response"].append("" if self.classifier else answer)
        columns["label_text"].append(answer if self.classifier else "")
        metadata = _metadata_json(extra)
        columns["metadata"].append(metadata)
        columns["row"].append(i)
        self.chunk_chars += len(prompt) + len(answer) + len(metadata)

    def _note_structured(self, first_row: tuple[int, str], count: int, named: str, what_then: str) -> None:
        """The notice that ``count`` rows hold a list or an object as ``named`` (the first of
        them: ``first_row``), and ``what_then`` is made of it."""
        first, example = first_row
        example = example if len(example) <= 60 else example[:57] + "..."
        self.ctx.notices.append(
            f"Source {self.ctx.source_name!r}: {count_agreeing(count, 'row', 'has', 'have', of=self.where)} a list or "
            f"an object as {named} "
            f"({'at' if count == 1 else 'first at'} {self.locate(first)}: {example}); {what_then}"
        )

    def _structured_answer_advice(self) -> str:
        """What the notice on answers held as a list or an object says is made of them, and
        what to do."""
        how = (f"have the loader plugin {self.plugin} return the one meant as a plain value (a string)"
               if self.plugin else "write the one meant as a plain value (or use a plugin loader)")
        return (f"each is {'a class' if self.classifier else 'the gold response'} as its JSON text. If it holds "
                f"several accepted answers or a nested field, {how}.")

    def _note_whole_floats(self, named: str) -> None:
        """The notice that some answers are whole numbers held as floats: each reads "5.0",
        the tokens the model learns (and the test loss scores; exact_match takes 5.0 = 5), while
        the same answer written 5 (in another file, or the target) reads "5". A Parquet or Arrow float column holds whole numbers
        so (pandas makes one of an integer column with a missing value), and ``datasets``'
        JSON reader makes one of a column mixing 5 and 0.5, whose 5 the ``jsonl`` loader
        reads as "5": nothing in the texts shows it."""
        first, value = self.whole_float  # type: ignore[misc]  # (set: the caller checked)
        self.ctx.notices.append(
            f"Source {self.ctx.source_name!r}: {count_agreeing(self.whole_float_count, 'row', 'has', 'have', of=self.where)}"
            f" a whole number stored as a floating-point number as {named} "
            f"({'at' if self.whole_float_count == 1 else 'first at'} {self.locate(first)}: {value!r}): each gold "
            f"response is that text, {value_to_text(value)!r} with its '.0', the tokens the model learns (and the "
            f"test loss scores; exact_match takes {value_to_text(value)} = {int(value)}), where {int(value)!r} "
            "written elsewhere reads without it. A Parquet or Arrow float column "
            "stores whole numbers so (pandas makes one of an integer column with a missing value), and so does "
            "the huggingface loader's JSON reader for a column mixing whole numbers and fractions (type: jsonl "
            f"reads 5 as '5'). If {str(int(value))!r} is meant, store the column as integers or as text."
        )

    def _note_spaced_answers(self, named: str) -> None:
        """The notice that most kept answers start with whitespace, which the model then
        learns as each answer's first tokens (exact_match strips it; the test loss does not):
        a CSV file written with ", " between its cells (a header ``question, answer`` whose
        `` answer`` validate's hint then names) reads so, as do legacy prompt/completion files,
        whose completions start with a space for a base model without a chat template."""
        first, example = self.spaced  # type: ignore[misc]  # (set: the caller checked)
        example = example if len(example) <= 30 else example[:27] + "..."
        every, have, _ = self._some_rows(self.spaced_count, [first])
        csv_hint = (" A CSV file written with ', ' between its cells has a space before every cell after the "
                    "first (its header's too): re-save it with ',' alone." if ".csv" in self.where else "")
        self.ctx.notices.append(
            f"Source {self.ctx.source_name!r}: {every} of {self.where} {have} {named} starting with whitespace "
            f"(first at {self.locate(first)}: {example!r}): the model learns it as the answer's first "
            f"tokens, and the test loss scores them (exact_match strips it).{csv_hint} Remove it from the data "
            "unless the model is meant to write it."
        )

    def _some_rows(self, count: int, first: list[int]) -> tuple[str, str, str]:
        """How a notice names ``count`` of the kept rows, ``first`` the first few of them:
        ("every row", "has") or ("3 of 5 rows", "have"), and where they are ("line 2,
        line 4 (+1 more)")."""
        kept = self.count - self.left_out_count
        shown = ", ".join(self.locate(i) for i in first) + (f" (+{count - len(first)} more)" if count > len(first) else "")
        return ("every row", "has", shown) if count == kept else (f"{count} of {kept} rows", "have", shown)

    def _note_invalid_text(self) -> None:
        """The notice that rows are left out for text that is not valid UTF-8 (a lone
        surrogate from a JSON ``\\ud800`` escape, a binary column's bytes that do not
        decode), which no tokenizer takes: one document of a corpus, or one example, stopped
        the whole source. The error when no row is left (the first row's, with the count)."""
        shown = ", ".join(self.locate(i) for i in self.invalid) + (
            f" (+{self.invalid_count - len(self.invalid)} more)" if self.invalid_count > len(self.invalid) else "")
        if self.count == self.left_out_count:
            blank = f", {self.blank_count} more an empty one" if self.blank_count else ""
            raise UserError(f"{self.invalid_detail} No row is left: {self.invalid_count} of {self.count} rows "
                            f"{'holds' if self.invalid_count == 1 else 'hold'} such text ({shown}){blank}.")
        said = f"Source {self.ctx.source_name!r}: {self.where}"
        first = self.invalid_detail.removeprefix(f"{said}, ")  # its row's place alone: the source said once
        if self.invalid_count == 1:  # (its one row's place and text: "Row 2: 'prompt' ... holds bytes ...")
            lead, first = "", first[:1].upper() + first[1:]
        else:
            lead = "The first, " if first != self.invalid_detail else "The first: "
        self.ctx.notices.append(
            f"{said}: {self.invalid_count} of {self.count} rows {'holds' if self.invalid_count == 1 else 'hold'} text "
            f"that is not valid UTF-8 ({shown}); {'it is' if self.invalid_count == 1 else 'they are'} left out. "
            f"{lead}{first}"
        )

    def _most_blank(self) -> str | None:
        """What the notice on blank answers says when they are most of the rows, instead of
        telling to check the column read (a subclass's: a text file's blank lines); None for that."""
        return None

    def _note_empty_prompts(self) -> None:
        """The notice that some kept rows have an empty prompt: legal (the answer is then
        learned and scored with nothing before it), but more often a prompt column read
        from the wrong place or a template that left it blank."""
        every, has, shown = self._some_rows(self.empty_prompt_count, self.empty_prompts)
        self.ctx.notices.append(
            f"Source {self.ctx.source_name!r}: {self.where}: {every} kept {has} an "
            f"empty {self._prompt_named()} ({shown}); their "
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
        self.chunk_chars = 0

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
            if self._prompt_missing(record) or _missing(record.get(self.answer_field)):
                break
            try:
                prompt, answer = self._texts(record)
            except ValueError:  # (a subclass's record that no longer maps)
                break
            if self._digest(prompt, answer) != digests[got]:
                break
            self._append(int(i), record, prompt, answer)
            got += 1
            if self.chunk_full:
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
        # no prompt or answer column at all, and a `text` one (or one column alone): plain text
        text = None
        if self.ctx.kind != "classifier" and option == "response_field" and not any(self.seen.values()):
            if "text" in self.available:
                text = "text"
            elif len(self.available) == 1:
                (text,) = self.available
        for field, field_option in (*((f, self.prompt_option) for f in self.prompt_columns),
                                    (self.answer_field, option)):
            if not self.seen[field]:
                raise _missing_column(source, self.where, field, field_option, self.available, self.fix, text,
                                      written=field_option in self.written)
        if self.error is not None:
            if self.null_count > 1:  # all of them at once, not one per run
                shown = ", ".join(self.locate(i) for i in self.null_rows) + (", ..." if self.null_count > 5 else "")
                lack = " or ".join(dict.fromkeys((_named(self.prompt_field, self.prompt_option),
                                                  _named(self.answer_field, option))))
                raise UserError(f"{self.error} {self.null_count} of {self.count} rows lack {lack} ({shown}).") from None
            raise self.error
        named = _named(self.answer_field, option)
        if self.invalid_count:
            self._note_invalid_text()
        if self.blank_count:
            _note_blank_answers(self.blank, self.blank_count, self.count, self.ctx, self.where, self.locate,
                                self._answer_named(), self.what, self.advice, self.missing_count, self._most_blank())
        if self.empty_prompt_count:
            self._note_empty_prompts()
        if self.minus_one_count and self.some_labels != {"-1", "1"}:  # -1 and 1: two classes, as written
            self._note_minus_one(named)
        if self.structured_prompt is not None:
            how = (f"have the loader plugin {self.plugin} return the last user message as the prompt and the "
                   f"messages before it as a {CONTEXT_KEY!r} column ([{{role, content}}, ...]), or the prompt as plain "
                   "text" if self.plugin else
                   "write the prompt as plain text, read a column of chats with loader.messages_field (JSON Lines, "
                   "Parquet, Hugging Face datasets), or render it in a plugin loader")
            self._note_structured(self.structured_prompt, self.structured_prompt_count,
                                  _named(self.prompt_field, self.prompt_option),
                                  "each prompt is its JSON text. A chat (a list of messages) is not rendered with "
                                  f"the model's chat template: {how}.")
        if self.structured is not None:
            self._note_structured(self.structured, self.structured_count, named, self._structured_answer_advice())
        if self.whole_float is not None:
            self._note_whole_floats(named)
        if self.infinite_count:
            self._note_infinite(named)
        if self.spaced is not None and 2 * self.spaced_count >= self.count - self.left_out_count:
            self._note_spaced_answers(named)
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
    prompt_field: str | Sequence[str],
    answer_field: str,
    answer_option: str | None,
    ctx: LoadContext,
    where: str,
    locate: Callable[[int], str],
    available: Iterable[str],
    fix: str | None = None,
    draw: bool = False,
    plugin: str | None = None,
) -> Dataset:
    """Map a list of raw records onto the common columns (see :class:`CommonColumns`,
    which file loaders feed record by record). With ``draw``, ``ctx.keep_at_most``
    applies (the built-in loaders, whose dataset goes to the data stage as it is).
    ``plugin``: the loader plugin whose dataset the records are (its name, quoted)."""
    fetch = (lambda wanted: ((int(i), records[i]) for i in wanted)) if draw else None
    return CommonColumns(prompt_field, answer_field, answer_option, ctx, where, locate, available,
                         fix, fetch, plugin).add_all(records).finish()


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


def dataset_table(dataset: Dataset) -> Any:
    """A dataset's rows as one ``pyarrow.Table``: its table with its ``select`` index
    mapping (if any) applied. ``with_format("arrow")[:]`` and ``select_columns`` give the
    same rows through a new ``Dataset``, whose construction (deep copies of the features
    and info) costs about 2 ms: per source, a tenth of a data stage of many small ones."""
    table = dataset.data.table
    if dataset._indices is not None:
        table = table.take(dataset._indices.column(0))
    return table


def _note_blank_answers(blank: list[int], blank_count: int, total: int, ctx: LoadContext, where: str,
                        locate: Callable[[int], str], named: str, what: str, advice: str, missing: int = 0,
                        most_blank: str | None = None) -> None:
    """Rows whose answer is empty or only whitespace have nothing to train or score on:
    they are left out with a notice naming their lines (a few blank gold answers are
    common in public datasets, and rows a `max_examples` cut drops anyway must not stop
    the run); an error when every row is blank, and a hint to check the column read when
    most are (a source of 50,000 rows kept 4,970 and said only that 45,030 were left out).
    ``missing`` of the ``blank_count`` rows lack the answer (missing, null or NaN: a text
    source's missing documents, left out with the blank ones and said in the same notice).
    ``most_blank``: what to say instead of that hint (a text file's blank lines are no column read wrong)."""
    shown = ", ".join(locate(i) for i in blank[:5]) + (f" (+{blank_count - 5} more)" if blank_count > 5 else "")
    empty = "empty" if not missing else "missing, null or NaN" if missing == blank_count else "empty or missing"
    if blank_count == total:
        raise UserError(
            f"Source {ctx.source_name!r}: {where}: {named} is {empty} in every row ({shown}). Every row "
            f"needs {what}; check that the loader reads the right column.{advice}"
        )
    # most rows blank: more likely a column of something else (or of answers given elsewhere) than blank answers
    most = (f" That is most of its rows: {most_blank or f'check that the loader reads the right column.{advice}'}"
            if blank_count * 2 > total else "")
    ctx.notices.append(
        f"Source {ctx.source_name!r}: {where}: {blank_count} of {total} rows "
        f"{'has' if blank_count == 1 else 'have'} {'a' if empty[0] == 'm' else 'an'} {empty} {named} "
        f"({shown}{f'; {missing} missing, null or NaN' if 0 < missing < blank_count else ''}); "
        f"{'it is' if blank_count == 1 else 'they are'} left out (every row needs {what}).{most}"
    )


def one_based_row(i: int) -> str:
    """Where row ``i`` (0-based) of a table is, counted from 1 as JSONL and CSV lines are."""
    return f"row {i + 1}"


#: column names that usually hold a row's prompt or answer under another name than the defaults
#: (OpenAI's legacy prompt/completion files, question/answer sets, Alpaca's output), by the option
#: that reads them: a file of prompt and completion columns was told only to "set response_field to
#: one of them", as if the loader could not tell which
USUAL_COLUMNS = {"prompt_field": ("question", "query"),
                 "response_field": ("completion", "answer", "output", "target", "solution")}


def usual_column(option: str | None, column: str, columns: Iterable[str], written: bool) -> str | None:
    """The first of :data:`USUAL_COLUMNS` for ``option`` that ``columns`` holds (``completion``
    for ``response_field``), letter case aside (a CSV header's ``Answer``), where the spec left
    ``option`` out (``written`` false: not in its loader's ``model_fields_set``) and ``column``
    is its default (``response``), the column it most likely means; None where none is, or
    where the spec named the column itself, the default's name too (``response_field:
    response`` written out was told 'completion' all the same): a typo is :func:`close_column`'s."""
    if option is None or written or column != option.removesuffix("_field"):
        return None
    names = list(columns)
    for usual in USUAL_COLUMNS.get(option, ()):
        found = usual if usual in names else next((name for name in names if name.casefold() == usual), None)
        if found is not None:
            return found
    return None


def close_column(column: str, columns: Iterable[str], cutoff: float = 0.8) -> str | None:
    """The one of ``columns`` spelled most like ``column`` (``question`` for ``questoin``,
    ``answer`` for ``answers``), letter case aside, when one is close enough to be what was
    meant (``cutoff``: difflib's ratio; a dataset's few short split names take a lower one);
    else None. The errors of a column the data lacks listed the columns there are,
    and among many (a hub dataset's twenty) the one a typo meant was left to be found."""
    by_folded: dict[str, str] = {}
    for name in columns:
        by_folded.setdefault(name.casefold(), name)
    close = difflib.get_close_matches(column.casefold(), list(by_folded), n=1, cutoff=cutoff)
    return by_folded[close[0]] if close else None


def close_names(name: str, names: Iterable[str], n: int = 5) -> str:
    """ "Did you mean ...?" text for an unknown name."""
    names = list(names)
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    if close:
        return "Did you mean " + ", ".join(repr(c) for c in close) + "?"
    return "Known names include " + ", ".join(repr(c) for c in names[:10]) + "."
