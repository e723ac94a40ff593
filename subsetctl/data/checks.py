"""Checks of the data part of a spec that need no model and no data generation.

``subsetctl validate`` calls :func:`check_sources` after the schema validation: it
finds the mistakes that would otherwise surface minutes into a run (a missing or
unreadable file, a column the loader asks for that the file lacks, a misspelt
reasoning-gym task or evals name, an unregistered plugin loader, a classifier without a
label column, split counts larger than a generator's size, a file's row count or
``max_examples``). Heavy packages are imported only when a source needs them
(reasoning-gym for its task names, pyarrow for a Parquet file, ``datasets`` for a folder
``save_to_disk`` wrote, the spec's ``plugins:`` only when a source has a ``type: plugin``
loader); ``evals`` is never imported, only located.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import difflib
import functools
import gzip
import io
import json
import re
import zlib
from array import array
from collections.abc import Iterator
from itertools import dropwhile, islice
from pathlib import Path
from typing import IO, Any

from subsetctl.data.fingerprint import listed_values
from subsetctl.data.line_count import count_nonblank_lines
from subsetctl.data.loaders import (
    CR_ALONE,
    GZIP_MAGIC,
    NotUtf8,
    NotUtf8Lines,
    UnsupportedCompression,
    close_column,
    compressed_again_note,
    compressed_parquet_problem,
    evals_file,
    first_bytes,
    gzip_damage,
    has_escaped_bytes,
    jq_rows_command,
    json_document_advice,
    json_kind,
    lines_not_utf8,
    not_utf8_fix,
    open_decompressed,
    parquet_read_as_text,
    release_whole_file,
    resolve_path,
    split_meant_note,
    text_lines,
    usual_column,
    utf16_note,
    value_rows,
)
from subsetctl.errors import (
    UserError,
    as_typed,
    json_syntax_error,
    name_too_long_problem,
    path_not_found_note,
    shown_path,
)
from subsetctl.hub import looks_local
from subsetctl.spec import (
    CsvLoader,
    EvalsLoader,
    HuggingFaceLoader,
    JsonlLoader,
    LoaderBase,
    ParquetLoader,
    PluginLoader,
    ReasoningGymLoader,
    SourceSpec,
    Spec,
    SpecIssue,
    format_path,
    key_lines,
    line_of_key,
    where_text,
)


class _Issues:
    """Collects issues, filling the line number from the YAML text when known."""

    def __init__(self, file: str, lines: dict[tuple[Any, ...], int]):
        self.file = file
        self.lines = lines
        self.found: list[SpecIssue] = []

    def add(self, loc: tuple[Any, ...], message: str, note: bool = False, plugin_traceback: str = "") -> None:
        line = line_of_key(loc, self.lines)
        self.found.append(SpecIssue(file=self.file, line=line, key=format_path(loc), message=message, note=note,
                                    plugin_traceback=plugin_traceback))

    def note(self, loc: tuple[Any, ...], message: str) -> None:
        """A note, not a problem (validate passes): printed among the warnings, as "note:"."""
        self.add(loc, message, note=True)



#: JSON Lines files up to this size have their lines counted by validate (about 0.1 s)
LINES_COUNTED_MB = 64

#: of all the JSON Lines and CSV files validate reads through (their lines counted, their bytes checked as
#: UTF-8 and gzip, :func:`files_read_through`): 2,000 sources' files of 100,000 rows (4.6 MB each) took
#: 102.6 s to validate, most of it in these reads; past these (a few seconds) the files are left to the data stage
READ_THROUGH_MB_TOTAL = 256


@dataclasses.dataclass
class ReadTotal:
    """A bound on what one of validate's checks reads of the target's and the sources' files
    together (rows, or bytes), so that its time stops growing with the sources: the files are
    read in the spec's order, the target's first, each up to what is left (:meth:`take`,
    then :meth:`spend`); the sources met once it is spent are not read, kept (``not_read``)
    for a note naming them as left to the data stage, which reads every row anyway. Validate's
    ``label_map`` and ``model.num_labels`` checks (rows) and its reads through JSON Lines and
    CSV files (bytes, :func:`files_read_through`) each have one."""

    total: int
    read: list[str] = dataclasses.field(default_factory=list)  # the sources read (not the target)
    not_read: list[tuple[tuple[Any, ...], str]] = dataclasses.field(default_factory=list)  # (key, name)

    def __post_init__(self) -> None:
        self.left = self.total

    def take(self, loc: tuple[Any, ...], name: str, wanted: int) -> int:
        """How much of ``wanted`` the file of the source (or target) at key ``loc`` may read: what
        is left, or 0 once the total is spent (the source is then kept as not read)."""
        if self.left <= 0:
            self.not_read.append((loc, name))
            return 0
        if loc[0] != "target":
            self.read.append(name)
        return min(wanted, self.left)

    def spend(self, amount: int) -> None:
        """Count ``amount`` read (a file's rows read, or its bytes)."""
        self.left -= amount

    def left_out(self) -> str:
        """The sources not read, for a note: "3 more (c, d, e)"."""
        from subsetctl.plan_reasons import listed_briefly

        return f"{len(self.not_read):,} more ({listed_briefly([name for _, name in self.not_read], 3)})"


def files_read_through(spec: Spec, base_dir: Path) -> tuple[set[Path], ReadTotal]:
    """The JSON Lines and CSV files (an ``evals`` loader's too, and a ``huggingface`` loader's JSON
    ``data_files``: :func:`_files_validate_reads`) of the target (its ``test_loader``'s
    too) and the sources that validate reads through (up to :data:`LINES_COUNTED_MB` each: its line count, its gzip,
    UTF-8 and CSV quote checks, the data stage's warnings on lines not UTF-8), in the spec's
    order, the target's first, up to :data:`READ_THROUGH_MB_TOTAL` in all (the file that
    crosses it read whole; one read by several sources counted once); with the
    :class:`ReadTotal` naming the sources left past it, whose files only the data stage reads
    through. From the files' sizes alone: the checks and the warnings agree on it. Worked out once
    within :func:`~subsetctl.data.loaders.files.files_read_once` (a validation: the checks and two
    warnings ask for it, each looking up every file's path and size again)."""
    from subsetctl.data.loaders.files import worked_out_once

    base_dir = Path(base_dir)
    return worked_out_once(("files_read_through", id(spec), base_dir),
                           lambda: (spec, _files_read_through_now(spec, base_dir)))[1]


def _files_read_through_now(spec: Spec, base_dir: Path) -> tuple[set[Path], ReadTotal]:
    """:func:`files_read_through`, worked out now."""
    total = ReadTotal(int(READ_THROUGH_MB_TOTAL * 2**20))
    granted: dict[Path, bool] = {}
    for loc, name, path in _files_validate_reads(spec, base_dir):
        if path in granted:  # (another source's file, counted once)
            if not granted[path]:
                total.not_read.append((loc, name))
            continue
        try:
            size = path.stat().st_size if path.is_file() else None
        except OSError:  # (a name too long, unreadable: the file checks say so)
            continue
        if size is None or size > LINES_COUNTED_MB * 2**20:
            continue  # (not read through by validate anyway)
        if size == 0:  # (nothing to read, nothing spent: a second reader of it is not "left" past the total)
            granted[path] = True
            continue
        granted[path] = total.take(loc, name, size) > 0
        total.spend(size if granted[path] else 0)
    return {path for path, read in granted.items() if read}, total


def _files_validate_reads(spec: Spec, base_dir: Path) -> Iterator[tuple[tuple[Any, ...], str, Path]]:
    """The files validate may read through, for :func:`files_read_through`, in the spec's order, the
    target's first: each with the key naming it (for the note on those left past the total) and its
    source's name. A JSON Lines or CSV loader's file, an ``evals`` loader's, and the first
    :data:`BUILDER_FILES_READ` local ``data_files`` of a ``huggingface`` loader with ``path: json``
    (whose heads :func:`_builder_file_columns` reads, a JSON array or a document holding its rows
    under a key whole: they read up to :data:`LINES_COUNTED_MB` each outside the total)."""
    from subsetctl.data.loaders.files import data_files_by_entry

    entries = [(("target", "loader"), spec.target.name, spec.target.loader)]
    if spec.target.test_loader is not None:
        entries.append((("target", "test_loader"), spec.target.name, spec.target.test_loader))
    entries += [(("sources", i, "loader"), source.name, source.loader) for i, source in enumerate(spec.sources)]
    for at, name, loader in entries:
        if isinstance(loader, EvalsLoader):  # (its file in the installed package: a JSON Lines file)
            try:
                yield (*at, "name"), name, evals_file(loader, "")
            except UserError:  # _check_evals says why
                continue
        elif isinstance(loader, (JsonlLoader, CsvLoader)):
            yield (*at, "path"), name, resolve_path(loader.path, base_dir)
        elif isinstance(loader, HuggingFaceLoader) and loader.path == "json" and loader.data_files:
            try:
                files = [file for files in data_files_by_entry(loader, base_dir) for file in files]
            except (UserError, OSError):  # (a pattern that walks the whole disk, a name too long to look
                continue  # at: _check_built_in and the path checks say so)
            for file in files[:BUILDER_FILES_READ]:
                if "://" not in file:
                    yield (*at, "data_files"), name, Path(file)


#: the files :func:`check_sources` reads through (:func:`files_read_through`) while it runs; None: any
_files_read_through: set[Path] | None = None


def _read_through(path: Path, size: int) -> bool:
    """Whether validate reads file ``path`` of ``size`` bytes through: one up to
    :data:`LINES_COUNTED_MB`, within :data:`READ_THROUGH_MB_TOTAL` while :func:`check_sources` runs."""
    return size <= LINES_COUNTED_MB * 2**20 and (_files_read_through is None or path in _files_read_through)


def rows_in_file(loader: Any, base_dir: Path) -> tuple[int, str] | None:
    """How many rows a local file holds at most, when that is cheap to know: a Parquet
    file's metadata, a ``where``'s rows (:func:`listed_values`, a text file's from the project's
    cache), or the non-blank lines of a JSON Lines file up to
    :data:`LINES_COUNTED_MB` (an upper bound: blank answers, and a text source's missing
    texts, are left out when loaded); with what was counted, for messages; an ``evals``
    loader's file in the installed package is such a JSON Lines file. None for anything
    else or an unreadable file (a named pipe or device is not opened: reading one waits for
    a writer, maybe forever)."""
    if isinstance(loader, EvalsLoader):
        try:
            path = evals_file(loader, "")
        except UserError:  # _check_evals says why
            return None
    elif isinstance(loader, (JsonlLoader, ParquetLoader)) or (isinstance(loader, CsvLoader) and loader.where is not None):
        path = resolve_path(loader.path, base_dir)
    else:
        return None
    if not path.is_file():  # the file checks say what it is instead
        return None
    try:
        if getattr(loader, "where", None) is not None:  # that value's rows only
            (column, value), = loader.where.items()
            picked = listed_values(path, column, loader, base_dir)[0].get(value)
            if picked is None:  # no row holds it: _check_where says so, not a split asking "at most 0"
                return None
            return picked, f"file {shown_path(path)} {where_text(loader.where)} has {picked} rows"
        if isinstance(loader, ParquetLoader):
            import pyarrow.parquet as pq

            rows = pq.read_metadata(path).num_rows
            return rows, f"file {shown_path(path)} has {rows} rows"
        lines = _jsonl_read_through(path)[0]
    except Exception:  # noqa: BLE001 - unreadable or not what it claims: the file checks and the loader say why
        return None
    return None if lines is None else (lines, f"file {shown_path(path)} has {lines} non-blank lines")


def _jsonl_read_through(path: Path) -> tuple[int | None, str | None, NotUtf8Lines | str | None]:
    """``(non-blank lines, gzip damage, lines not UTF-8)`` of a JSON Lines file up to
    :data:`LINES_COUNTED_MB` (all None above it, or past :data:`READ_THROUGH_MB_TOTAL` of all the files while
    :func:`check_sources` runs, :func:`_read_through`; the last as :func:`_jsonl_not_utf8` says,
    looked for only when the read meets such a line), from one read through the file, kept for the rest of a
    :func:`check_sources` call while the file is unchanged: validate's line count and gzip
    check each read a gzip-compressed file through, which for one of 64 MB took about 1 s
    each."""
    stat = path.stat()
    if not _read_through(path, stat.st_size):  # (or past READ_THROUGH_MB_TOTAL: left to the data stage)
        return None, None, None
    return _jsonl_read_through_of(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _jsonl_read_through_of(path: Path, size: int, mtime_ns: int) -> tuple[int | None, str | None,
                                                                          NotUtf8Lines | str | None]:
    """:func:`_jsonl_read_through` of the file ``path`` with that size and time (the key)."""
    try:
        with open_decompressed(path) as handle:  # (as _open_text reads it; by blocks: LF 2x, CRLF 1.3x faster)
            return count_nonblank_lines(handle), None, None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        return None, f"the file is {gzip_damage(exc)}", None
    except UnicodeDecodeError:  # read as the data stage reads it: lines that are not UTF-8 left out, or refused
        verdict = _jsonl_not_utf8(path)
        # (an upper bound of the rows, as the count of a UTF-8 file's non-blank lines is)
        rows = verdict.lines - verdict.count if isinstance(verdict, NotUtf8Lines) else None
        return rows, _gzip_damage(path), verdict
    except Exception:  # noqa: BLE001 - unreadable: the file checks say why; the bytes may still be cut short
        return None, _gzip_damage(path), None


@functools.lru_cache(maxsize=64)
def _jsonl_not_utf8_of(path: Path, size: int, mtime_ns: int, delimiter: str | None) -> NotUtf8Lines | str | None:
    """:func:`_jsonl_not_utf8` of the file ``path`` with that size and time (the key): a
    UTF-8 file is read once by the C decoder, a line at a time only when it is not."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open_decompressed(path) as handle:
            while chunk := handle.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        return None
    except Exception:  # noqa: BLE001, S110 - not UTF-8, or a gzip file cut short (after lines that may not be)
        pass
    try:  # (a CSV header not UTF-8: returned, its callers refuse it as the file's problem)
        not_utf8 = lines_not_utf8(path, "", delimiter=delimiter, refuse_header=False)
    except NotUtf8 as exc:
        return exc.problem
    except UserError:  # unreadable, or a gzip file cut short: said otherwise
        return None
    return not_utf8 if not_utf8.count else None


def lines_not_utf8_notice(loader: Any, base_dir: Path, name: str | None) -> str | None:
    """The data stage's warning that lines of ``loader``'s JSON Lines or CSV file, not UTF-8, are left
    out (as :class:`NotUtf8Lines` says it, of the source ``name``; None: of every task a
    ``where`` reads from the file), for validate to say it
    before any run; None for any other loader or file (one refused: the file checks say why)."""
    if not isinstance(loader, (JsonlLoader, CsvLoader)):
        return None
    path = resolve_path(loader.path, base_dir)
    try:
        verdict = _jsonl_not_utf8(path, getattr(loader, "delimiter", None)) if path.is_file() else None
    except OSError:
        return None
    if isinstance(loader, CsvLoader) and isinstance(verdict, NotUtf8Lines) and verdict.header_error() is not None:
        return None  # (a CSV header not UTF-8: refused, an error of the file checks)
    return verdict.notice(name, path) if isinstance(verdict, NotUtf8Lines) else None


def stray_cell_notices(loader: Any, base_dir: Path, name: str | None) -> list[str]:
    """The data stage's warnings on cells of ``loader``'s CSV file holding a byte-order mark
    past its start or a NUL byte (:func:`~subsetctl.data.loaders.files.csv_stray_cell_notices`,
    of the source ``name``; None: of every task a ``where`` reads from the file), for validate
    to say them before any run; none for any other loader, or a file larger than
    :data:`LINES_COUNTED_MB` (the data stage has the last word)."""
    from subsetctl.data.loaders.files import csv_stray_cell_notices

    if not isinstance(loader, CsvLoader):
        return []
    path = resolve_path(loader.path, base_dir)
    try:
        if not path.is_file() or path.stat().st_size > LINES_COUNTED_MB * 2**20:
            return []
        return csv_stray_cell_notices(path, loader.delimiter, name)
    except OSError:
        return []


def line_ends_notice(loader: Any, base_dir: Path, name: str | None) -> str | None:
    """The data stage's warning on a CSV file of ``loader`` whose lines end some with CRLF and
    some with a line feed alone (:func:`~subsetctl.data.loaders.files.mixed_line_ends_notice`,
    of the source ``name``; None: of every task a ``where`` reads from the file), for validate
    to say it before any run; None for any other loader or file, or one larger than
    :data:`LINES_COUNTED_MB` (the data stage has the last word)."""
    from subsetctl.data.loaders.files import mixed_line_ends_notice

    if not isinstance(loader, CsvLoader):
        return None
    path = resolve_path(loader.path, base_dir)
    try:
        if not path.is_file() or path.stat().st_size > LINES_COUNTED_MB * 2**20:
            return None
    except OSError:
        return None
    return mixed_line_ends_notice(path, name, loader.delimiter)


def _not_utf8_refusal(path: Path, line: int | None = None, delimiter: str | None = None) -> str | None:
    """Why the data stage refuses text file ``path``, some of whose lines are not UTF-8 (its
    words: a Latin-1 line, too many such lines, a UTF-16 file), or None when it leaves them
    out. A file up to :data:`LINES_COUNTED_MB` is read through (:func:`_jsonl_not_utf8`); a
    larger one up to ``line`` (the bad line met in its head), as the data stage meets its
    lines: one not UTF-8 there that it would leave out is no error here either (the read
    through it stops at a Latin-1 line, or a UTF-16 file's first). ``delimiter``: a CSV file's
    (its rows counted, :func:`_jsonl_not_utf8`), whose first line (its header) not UTF-8 is
    refused too."""
    header = delimiter is not None
    if _read_through(path, path.stat().st_size):
        verdict = _jsonl_not_utf8(path, delimiter)
        if header and isinstance(verdict, NotUtf8Lines) and (refused := verdict.header_error()) is not None:
            return refused.problem  # (a CSV header not UTF-8: refused, as the data stage refuses it)
        return verdict if isinstance(verdict, str) else None
    head = NotUtf8Lines()
    try:
        for number, _ in text_lines(path, "", head):
            if line is None or number >= line:
                break
    except NotUtf8 as exc:
        return exc.problem
    except UserError:  # unreadable, or a gzip file cut short: said otherwise
        return None
    # (a header not UTF-8 is left out by text_lines, as line 1, before its first line read)
    return refused.problem if header and (refused := head.header_error()) is not None else None


def _jsonl_not_utf8(path: Path, delimiter: str | None = None) -> NotUtf8Lines | str | None:
    """A JSON Lines file's lines that are not UTF-8, found as the data stage finds them
    (:func:`~subsetctl.data.loaders.files.text_lines`), for validate to say what it will:
    those it leaves out (a :class:`NotUtf8Lines`), or why it refuses the file (its words,
    "not valid UTF-8 (byte B, line L...): re-save it as UTF-8", a Latin-1 file's or one with
    many such lines); None for a UTF-8 file, or one larger than :data:`LINES_COUNTED_MB` whose
    lines past its head are left to the data stage (one whose head cannot be read as UTF-8
    is refused, as before). ``delimiter``: a CSV file's, whose rows are counted, not its lines
    (:func:`~subsetctl.data.loaders.files.count_csv_rows_not_utf8`)."""
    stat = path.stat()
    if not _read_through(path, stat.st_size):  # (or past READ_THROUGH_MB_TOTAL: left to the data stage)
        return None
    return _jsonl_not_utf8_of(path, stat.st_size, stat.st_mtime_ns, delimiter)


def _known_size(source: SourceSpec, base_dir: Path) -> tuple[int, str] | None:
    """The most examples the source can have, when known without loading anything, and
    what says so (for messages)."""
    sizes: list[tuple[int, str]] = []
    if isinstance(source.loader, ReasoningGymLoader):
        sizes.append((source.loader.size, f"loader.size is {source.loader.size}"))
    if source.max_examples is not None:
        sizes.append((source.max_examples, f"max_examples is {source.max_examples}"))
    in_file = rows_in_file(source.loader, base_dir)
    if in_file is not None:
        sizes.append(in_file)
    return min(sizes, key=lambda size: size[0]) if sizes else None


def _check_split(
    source: SourceSpec, loc: tuple[Any, ...], is_target: bool, issues: _Issues, base_dir: Path
) -> None:
    """The split asks for rows the source can give: the target has train, validation and
    test rows, a source train rows, and (when its size is known cheaply,
    :func:`_known_size`) the counts fit in it and no target fraction rounds to no rows."""
    from subsetctl.data.prepare import split_counts

    split = source.split
    if is_target:
        why = {
            "train": "every fine-tune (and the target_only baseline) trains on the target's own rows",
            "validation": "it chooses the checkpoint and scores subsets",
            "test": "the final fine-tunes are evaluated on it",
        }
        for name in ("train", "validation", "test"):
            if name == "test" and getattr(source, "test_loader", None) is not None:
                continue  # its test rows are test_loader's (the spec refuses split.test beside it)
            if not getattr(split, name):
                issues.add(loc + ("split", name), f"the target needs {name} examples (split.{name} > 0): {why[name]}"
                           + (" (or read them from a test file of its own with target.test_loader)"
                              if name == "test" else ""))
    if not split.train and not is_target:
        issues.add(loc + ("split", "train"), "a source needs training examples (split.train > 0)")
    known = _known_size(source, base_dir)
    if known is None:
        return
    n, counted = known
    counts = split_counts(split, n)
    if sum(counts.values()) > n:
        issues.add(
            loc + ("split",),
            f"asks for {sum(counts.values())} examples (train={counts['train']}, validation="
            f"{counts['validation']}, test={counts['test']}) but the {'target' if is_target else 'source'} has at "
            f"most {n} ({counted}): lower the counts to add up to at most {n}, or give fractions of the rows "
            f"({'e.g. train: 0.8, validation: 0.1, test: 0.1' if is_target else 'e.g. train: 1.0, every row'})",
        )
    # a fraction that rounds to no rows, only where the size is exact: a reasoning-gym task
    # makes exactly `size` rows, while a file's count or max_examples is an upper bound, and
    # the largest-remainder rounding is not monotone (with train and validation 0.45, test
    # 0.1 gives 0 of 6 rows, 1 of 5)
    # (elsewhere: when no row count up to the bound gives one, as 0.25 of at most 3 rows)
    exact = isinstance(source.loader, ReasoningGymLoader)
    for name in ("validation", "test"):
        if not (is_target and getattr(split, name) and counts[name] == 0):
            continue
        if exact or (n <= 1000 and not any(split_counts(split, m)[name] for m in range(1, n))):
            issues.add(
                loc + ("split", name),
                f"{getattr(split, name)!r} of {'' if exact else 'at most '}{n} examples gives no {name} examples"
                f" (a fraction of the rows, rounded); raise split.{name} or use more data",
            )


def _check_file_loader(
    loader: LoaderBase, loc: tuple[Any, ...], base_dir: Path, kind: str, issues: _Issues
) -> None:
    """A file-based loader (jsonl, csv, parquet, huggingface): its path (and ``data_files``)
    exist, a file's head has the columns asked for, and the column option the model kind
    needs (``label_field`` or ``response_field``) is set."""
    path_value = getattr(loader, "path", None)
    if isinstance(loader, HuggingFaceLoader):
        from subsetctl.data.loaders import (
            data_files_by_entry,
            file_as_dataset_path_problem,
            is_glob,
            is_saved_to_disk,
            unmatched_glob_message,
        )
        from subsetctl.globbing import UnwalkablePattern

        local = resolve_path(loader.path, base_dir)
        if looks_local(loader.path) and not local.exists():
            issues.add(loc + ("path",), f"local dataset path {shown_path(local)} does not exist"
                       f"{path_not_found_note(loader.path, local)}")
        elif local.is_file():
            issues.add(loc + ("path",), file_as_dataset_path_problem(local, loader.path))
        elif is_saved_to_disk(local):
            _check_saved_to_disk(loader, local, loc, kind, issues)
        elif local.is_dir() and not loader.data_files and is_glob(str(local)):  # (saved_to_disk: above)
            issues.add(  # datasets globs the folder's path itself: "Couldn't find any data file at /x/d [[]1]"
                loc + ("path",),
                f"the folder {shown_path(local)} has '[', '*' or '?' in its path, which datasets.load_dataset reads as "
                "a file pattern: it finds no data files there. Rename the folder, or load its files by name: "
                "`path: json` (or csv, parquet) with `data_files` listing each file",
            )

        # a save_to_disk folder is read whole: its data_files are ignored (validate warns), not files to find
        try:
            by_entry = [] if is_saved_to_disk(local) else data_files_by_entry(loader, base_dir)
        except UnwalkablePattern as walk:  # data_files: [/**/*.json] walked the whole disk
            issues.add(loc + ("data_files",), str(walk))
            return
        found = len(issues.found)
        for i, (data_file, files) in enumerate(zip(loader.data_files or [], by_entry)):
            if not files:  # a glob matching no file
                issues.add(loc + ("data_files", i), unmatched_glob_message(loader, i, base_dir))
                continue
            if is_glob(data_file) or "://" in data_file:
                continue
            if (
                not resolve_path(data_file, base_dir).exists()
                and not (local / data_file).exists()
            ):
                issues.add(loc + ("data_files", i), f"data file {shown_path(resolve_path(data_file, base_dir))} does not "
                           f"exist{path_not_found_note(data_file, resolve_path(data_file, base_dir))}")
        if loader.data_files and not is_saved_to_disk(local) and loader.split != "all" \
                and any(part.split("[")[0].strip() != "train" for part in loader.split.split("+")):
            # load_dataset reads a list of data_files as one split, train: any other was its "Unknown split"
            # (split: all, exactly, is every split: train)
            issues.add(loc + ("split",), f"data_files (a list) are read as one split, train, not {loader.split!r}"
                                         f"{split_meant_note(loader.split, ['train'])}, whatever their files hold: "
                                         "write split: train or leave split out (train is the default), and list in "
                                         "data_files the files to read")
        if len(issues.found) == found and not local.exists() and not looks_local(loader.path) \
                and not loader.data_files:
            _check_cached_hub_dataset(loader, loc, kind, issues)
        if len(issues.found) == found and not local.exists() and loader.path in _FILES_CHECKED:
            _check_builder_local_files(loader.path, by_entry, loc, issues)
        if len(issues.found) == found and not local.exists():
            _check_builder_files(loader, [f for files in by_entry for f in files], loc, kind, issues)
        elif (len(issues.found) == found and local.is_dir() and not loader.data_files and not is_glob(str(local))
              and not is_saved_to_disk(local)):
            _check_folder_files(loader, local, loc, kind, issues)
    elif path_value is not None:
        resolved = resolve_path(path_value, base_dir)
        if not resolved.exists() and (not_one_file := _not_one_local_file(str(path_value))):
            issues.add(loc + ("path",), not_one_file)
        elif not resolved.exists():
            issues.add(
                loc + ("path",),
                f"file {shown_path(resolved)} does not exist (relative paths resolve against the spec's folder)"
                f"{path_not_found_note(path_value, resolved)}",
            )
        elif not resolved.is_file():
            issues.add(loc + ("path",), f"{shown_path(resolved)} is a folder, not a file: point loader.path at the data file "
                       "itself (a `source_files` group makes one source per file of a folder; a folder of a "
                       "dataset loads with `type: huggingface`)" if resolved.is_dir() else
                       f"{shown_path(resolved)} is not a regular file (a named pipe, a device or a socket): point "
                       "loader.path at the data file itself")
        else:
            _check_columns(loader, resolved, loc, kind, issues, base_dir)
    if kind == "classifier" and getattr(loader, "messages_field", None) is not None:
        issues.add(loc + ("messages_field",), "is for a causal LM's chats, but model.kind is classifier: name the "
                                              "text column with prompt_field and the class with label_field")
    if kind == "classifier" and loader.text_field is not None:
        issues.add(loc + ("text_field",), "is for a causal LM's plain text, trained on whole, but model.kind is "
                                          "classifier, which learns a class for each text and has no objective "
                                          "without one: name the text column with prompt_field and the class "
                                          "with label_field")
    if kind == "classifier" and not loader.label_field:
        written = loader.response_field if "response_field" in loader.model_fields_set else None
        issues.add(loc + ("label_field",), "model.kind is classifier: name the label column with label_field"
                   + (f" (label_field: {written}, if the column response_field names holds the classes: a "
                      "classifier reads no response_field)" if written else ""))
    if kind == "causal-lm" and not loader.response_field:
        issues.add(
            loc + ("response_field",), "model.kind is causal-lm: name the response column with response_field"
        )


def _utf8_error_where(path: Path, head: int = 1 << 20) -> tuple[str, str]:
    """", byte B, line L" of the first invalid UTF-8 byte in the file's first ``head``
    bytes (decompressed), and what to do about it (:func:`not_utf8_fix`); a decoding error
    caught while reading through a text wrapper does not say where in the file it is."""
    try:
        with open_decompressed(path) as handle:
            data = handle.read(head)
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _utf8_error_at(data, exc), not_utf8_fix(data)
    except (OSError, EOFError, zlib.error):  # a gzip file cut short or corrupt further on
        pass
    return "", not_utf8_fix(b"")


def _utf8_error_at(head: bytes, exc: UnicodeDecodeError) -> str:
    """", byte B, line L" of decoding error ``exc`` in a file's first bytes ``head``, with
    what those bytes are where they say it (UTF-16, gzip-compressed again)."""
    line = head[: exc.start].count(b"\n") + 1
    return f", byte {exc.start}, line {line}{utf16_note(head)}{compressed_again_note(head)}"


def _open_text(path: Path, errors: str = "strict") -> IO[str]:
    """A data file opened as the loaders read it: UTF-8 with or without a BOM,
    decompressed when it is gzip-compressed; ``errors``: as :func:`open`'s."""
    return io.TextIOWrapper(open_decompressed(path), encoding="utf-8-sig", newline="", errors=errors)


def _file_head(loader: LoaderBase, path: Path) -> tuple[list[str] | None, str | None, bool]:
    """``(columns, problem, rowless)`` from a file's head, read as the loader will read it
    (the first JSONL object, the CSV header, the Parquet schema): the columns, or what
    makes the file unreadable (empty, not JSON Lines, not Parquet); ``rowless`` when the
    head is all there is (a CSV header or a Parquet schema with no row: its columns look
    right, but the data stage would find no examples; a JSON Lines file without rows has
    no head, and its problem says so). ``(None, None, False)`` when nothing can be said
    cheaply; the data stage, which reads every row, then has the last word."""
    try:
        if loader.type == "jsonl":
            with _open_text(path, errors="surrogateescape") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    if has_escaped_bytes(line):  # not UTF-8: the data stage leaves the line out, or refuses the file
                        refused = _not_utf8_refusal(path, number)
                        if refused is not None:
                            return None, refused, False
                        continue
                    if "\x00" in line:
                        return None, _nul_problem(number), False
                    if line.endswith("\r"):  # (newline="" keeps line endings: CRLF is "\r\n")
                        return None, f"its {CR_ALONE}", False
                    try:
                        first = json.loads(line)
                    except ValueError as exc:
                        rows_under = _under_a_key_note(path) if line.strip() == "{" else ""  # pretty-printed
                        return None, (f"line {number} is not JSON ({json_syntax_error(exc)}): not a JSON Lines "
                                      f"file.{json_document_advice(line, loader.path)}{rows_under}"), False
                    if not isinstance(first, dict):
                        return None, (f"line {number} is a JSON {json_kind(first)}, not an object: each line "
                                      "must be one example like {\"prompt\": ..., \"response\": ...}."
                                      f"{json_document_advice(line, loader.path)}"), False
                    return list(first), None, False
            return None, ("the file is empty: give a JSON Lines file with at least one example "
                          "(a JSON object a line)"), False
        if loader.type == "csv":
            # read strictly; rows not UTF-8 (the data stage leaves them out, or refuses the file): read
            # again with them as surrogate escapes, once the file is not refused
            for errors in ("strict", "surrogateescape"):
                try:
                    with _open_text(path, errors=errors) as handle:
                        rows = (row for row in csv.reader(_past_blank_lines(handle, loader.delimiter),
                                                          delimiter=loader.delimiter) if row)  # pandas skips blank lines before the header too
                        header = next(rows, None)
                        if header and any("\x00" in cell for cell in header):
                            return None, _nul_problem(None), False
                        rowless = header is not None and _no_row_follows(rows)
                    break
                except UnicodeDecodeError:  # (strict only: surrogateescape decodes any byte)
                    refused = _not_utf8_refusal(path, delimiter=loader.delimiter)
                    if refused is not None:
                        return None, refused, False
            if not header:
                return None, "the file is empty: give a CSV file with a header row and at least one example", False
            return header, None, rowless
        if loader.type == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                metadata = pq.read_metadata(path)  # the schema and the row count, in one read
                return list(metadata.schema.to_arrow_schema().names), None, metadata.num_rows == 0
            except PermissionError:
                raise
            except (pa.ArrowException, OSError, ValueError):
                return None, _parquet_problem(path), False
    except UnicodeDecodeError as exc:
        where, fix = _utf8_error_where(path)
        return None, f"not valid UTF-8 ({exc.reason}{where}): {fix}", False
    except UnsupportedCompression as exc:
        return None, exc.problem, False
    except PermissionError:
        return None, ("subsetctl may not read it (permission denied): make it readable "
                      "(chmod a+r), or copy the data somewhere you can read it"), False
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # a gzip file cut short or corrupt within its head
        return None, f"the file is {gzip_damage(exc)}", False
    except (OSError, csv.Error, ImportError, RecursionError):
        return None, None, False
    return None, None, False


def _gzip_damage(path: Path, from_line_count: bool = False) -> str | None:
    """What is wrong with a gzip-compressed file that cannot be decompressed to its end (cut
    short, or corrupt past the head :func:`_file_head` read), read through without keeping
    what it holds (0.1-0.6 s per 87 MB of text, depending on how well it compresses); None
    for a file that is not gzip, one larger than :data:`LINES_COUNTED_MB` compressed (the
    data stage says), or a sound one. ``from_line_count``: a JSON Lines file, which the
    read counting its lines (:func:`_jsonl_read_through`) reads through already."""
    try:
        if not _read_through(path, path.stat().st_size):
            return None
        if first_bytes(path, 2) != GZIP_MAGIC:
            return None
        if from_line_count:
            return _jsonl_read_through(path)[1]
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        return f"the file is {gzip_damage(exc)}"
    except OSError:  # unreadable: the head check and the data stage say why
        return None
    return None


def _nul_problem(line: int | None) -> str:
    """A file whose head has NUL bytes: UTF-16 without a byte-order mark reads as UTF-8
    with a NUL after each ASCII character, which was "line 1 is not JSON" or a CSV "column"
    'p\\x00r\\x00o\\x00...', not what the file is."""
    where = f"line {line} has" if line else "its header has"
    return (f"{where} NUL bytes, as UTF-16 text without a byte-order mark has (or a file that is not text): "
            "re-save it as UTF-8")


def _past_blank_lines(lines: Iterator[str], delimiter: str) -> Iterator[str]:
    """``lines`` from the first that pandas' CSV reader does not skip as blank before the
    header: one of only spaces, tabs and line endings is blank unless the delimiter is among
    them (with ``delimiter="\\t"``, a line holding a tab is a row of empty cells)."""
    blank = " \t\r\n"
    return dropwhile(lambda line: not line.strip(blank) and delimiter not in line, lines)


def _no_row_follows(rows: Iterator[list[str]]) -> bool:
    """Whether the CSV reader ``rows``, past its header, holds no row; False when the
    file cannot be read that far (the data stage, reading every row, says why)."""
    try:
        return next(rows, None) is None
    except Exception:  # noqa: BLE001 - unreadable past its head
        return False


def _check_columns(loader: LoaderBase, path: Path, loc: tuple[Any, ...], kind: str, issues: _Issues,
                   base_dir: Path) -> None:
    """The file can be read as its loader's type, has every column the loader asks for,
    and a row (all problems at once, before any run; the data stage checks every row later).
    ``base_dir``: the spec's folder (the project's, whose cache keeps a ``where``'s values)."""
    columns, problem, rowless = _file_head(loader, path)
    other, certain = _other_type_advice(loader, path, columns)
    if problem or certain:
        # a Parquet file read as CSV was "not valid UTF-8: re-save it as UTF-8", a CSV file read as
        # JSON Lines "line 1 is not JSON", a JSON Lines file read as CSV "no column 'question'":
        # the fix is the loader's type (the problem found, by the name's suffix alone, said too)
        issues.add(loc + ("path",), f"{path.name}: " + (other if certain else f"{other} ({problem})" if other
                                                          else str(problem)))
        return
    damage = _gzip_damage(path, from_line_count=loader.type == "jsonl")
    if damage:
        issues.add(loc + ("path",), f"{path.name}: {damage}")
        return
    if ((loader.type == "jsonl" and isinstance(refused := _jsonl_read_through(path)[2], str))  # past its head
            or (loader.type == "csv" and isinstance(refused := _jsonl_not_utf8(path, loader.delimiter), str))):
        issues.add(loc + ("path",), f"{path.name}: {refused}")
        return
    if loader.type == "csv" and (unclosed := _unclosed_csv_quote(path, loader.delimiter)) is not None:
        issues.add(loc + ("path",), f"{path.name}: {unclosed}")
        return
    if columns is None:
        return
    where = _columns_source(loader.type)
    sometimes = _sometimes_columns(loader, kind)
    if loader.type == "jsonl" and not set(sometimes) <= set(columns):
        columns, rows = _jsonl_head_keys(path, columns, sometimes,
                                         read_on=_read_through(path, path.stat().st_size))  # (within the total)
        where = f"its first {rows} rows have" if rows > 1 else where
    if loader.type == "jsonl":
        columns = _later_jsonl_columns(loader, path, columns, loc, kind, issues)
    note = _under_a_key_note(path) if loader.type == "jsonl" and _lacks_a_column(loader, kind, columns) else ""
    if (loader.type == "csv" and len(columns) == 1 and kind != "classifier" and loader.text_field is None
            and path.name.lower().removesuffix(".gz").endswith(".txt")):
        note = f"; a CSV file's first line is its header, and its name ends in .txt: {_plain_text_file_advice(loader)}"
    _check_named_columns(loader, columns, where, loc, kind, issues, note=note,
                         spaced_cells=_csv_cells_spaced(loader, path, columns))
    if rowless:
        issues.add(loc + ("path",), f"{path.name}: the file has {'a schema' if loader.type == 'parquet' else 'a header'} "
                                    "but no rows: give a file with at least one example")
    elif getattr(loader, "where", None) is None or _check_where(loader, path, loc, issues, base_dir):
        _check_answers_not_all_blank(loader, path, loc, kind, columns, issues, base_dir)


def _check_answers_not_all_blank(loader: LoaderBase, path: Path, loc: tuple[Any, ...], kind: str,
                                 columns: list[str], issues: _Issues, base_dir: Path) -> None:
    """A JSON Lines, CSV or Parquet file whose every row's answer (a classifier's label), of the
    rows its ``where`` picks if any, is empty or only whitespace: the data stage leaves such rows
    out, and stops on a source left with none ("is empty in every row"), after the sources
    before it; validate passed it. The answers are read as a stream (:func:`_answers`), up to
    the first that is not blank: one row of most files, whatever their size (the first 1,000
    rows of a JSON Lines or CSV file alone were read before, read whole, and a larger file,
    a Parquet file or a ``where``'s rows were not looked at). A file that cannot be read through
    (a line that is no JSON: the rows before it were taken for all there are), or a row lacking
    the answer (the data stage's error naming it), is left to the data stage, and a line not
    UTF-8 is no row, as the data stage leaves it out; ``columns``: the file's, as its head shows
    them (one it lacks is an issue of its own); ``base_dir``: the spec's folder (the project's,
    whose cache keeps a JSON Lines or CSV file's ``where`` listing, :func:`_blank_rows_where`)."""
    (key, option, column), = _wanted_columns(loader, kind)[-1:]
    if option not in ("response_field", "label_field") or column not in columns:
        return
    rows = 0
    if getattr(loader, "where", None) is not None and loader.type != "parquet":
        rows = _blank_rows_where(loader, path, column, base_dir)
    else:
        try:
            for value in _answers(loader, path, column):
                if not isinstance(value, str) or value.strip():
                    return
                rows += 1
        except Exception:  # noqa: BLE001 - unreadable: the file checks and the data stage say why
            return  # (no verdict on the rows read before it: a later one may have its answer)
    if not rows:
        return
    what = "a class label" if kind == "classifier" else "a gold response"
    where = "" if getattr(loader, "where", None) is None else f" {where_text(loader.where)}"
    issues.add(loc + key, f"{path.name}: column {column!r} is empty in every row{where} ({rows:,} row"
                          f"{'' if rows == 1 else 's'}): the data stage leaves such rows out and stops on a "
                          f"source left with none. Every row needs {what}: check that {option} names the column "
                          "that holds them, or fill it in")


def _blank_rows_where(loader: Any, path: Path, column: str, base_dir: Path) -> int:
    """How many rows a JSON Lines or CSV file's ``where`` picks when ``column`` is blank in each
    (else 0), from the file's listing (:func:`~subsetctl.data.fingerprint.blank_columns`, found by
    the parse that lists its values, kept in the project's cache with them): not parsed again for
    each task, nor by a `plan` of the file unchanged (a listing kept before it said them is made
    again)."""
    from subsetctl.data.fingerprint import blank_columns

    (by, value), = loader.where.items()
    try:
        blank = blank_columns(path, by, loader, base_dir)
        if column not in blank.get(value, ()):
            return 0
        return listed_values(path, by, loader, base_dir)[0].get(value, 0)
    except UserError:  # _check_where says why
        return 0


def _answers(loader: LoaderBase, path: Path, column: str) -> Iterator[Any]:
    """The values of ``column`` in the rows of file ``path`` its loader reads, in file order and
    read as they are asked for: a JSON Lines file's lines a line at a time (a line not UTF-8
    left out, as the data stage leaves it out), a CSV file's cells of that column alone
    :data:`LABEL_ROWS_READ` rows at a time, a Parquet file's column alone a batch at a time; of a
    Parquet file's ``where``'s rows only (a JSON Lines or CSV file's: :func:`_blank_rows_where`).
    Nothing for a Parquet file naming the column twice (the loader reads the last; left to it)."""
    where = getattr(loader, "where", None)
    if loader.type == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        if parquet.schema_arrow.names.count(column) != 1:
            return
        if where is not None:
            (by, value), = where.items()
            rows = value_rows(path, by).rows.get(value)
            if rows is not None:  # a batch of the picked rows at a time, as the file's batches below
                answers = _label_column(path, column, None, *_stamp(path))
                for start in range(0, len(rows), LABEL_ROWS_READ):
                    yield from answers.take(rows[start:start + LABEL_ROWS_READ]).to_pylist()
            return
        for batch in parquet.iter_batches(batch_size=LABEL_ROWS_READ, columns=[column]):
            yield from batch.column(0).to_pylist()
    elif loader.type == "csv":
        import pandas as pd

        from subsetctl.data.loaders.files import csv_text_options

        with open_decompressed(path) as handle, pd.read_csv(
                handle, sep=loader.delimiter, usecols=[column], chunksize=LABEL_ROWS_READ,
                **csv_text_options()) as frames:
            for frame in frames:
                yield from frame[column].tolist()
    elif loader.type == "jsonl":
        with _open_text(path, errors="surrogateescape") as handle:
            for line in handle:
                if line.strip() and not has_escaped_bytes(line):
                    record = json.loads(line)
                    yield record.get(column) if isinstance(record, dict) else None


def _sometimes_columns(loader: LoaderBase, kind: str) -> list[str]:
    """The columns ``loader`` asks for that a row may lack, looked for past a file's first
    row: a listed prompt's (Alpaca's empty input), a text's (loader.text_field: a missing
    document, left out by the data stage)."""
    if loader.text_field is not None and kind != "classifier":
        return [loader.text_field]
    return [] if isinstance(loader.prompt_field, str) else list(loader.prompt_field)


def _check_where(loader: Any, path: Path, loc: tuple[Any, ...], issues: _Issues, base_dir: Path) -> bool:
    """A file loader's ``where`` names a column of the file holding text or whole numbers,
    and a value some row holds (the data stage would stop on the source otherwise); a text
    file's values from the project's cache once listed (:func:`listed_values`). Whether it
    does (its rows can be looked at)."""
    (column, value), = loader.where.items()
    try:
        found = listed_values(path, column, loader, base_dir)[0]
    except UserError as exc:
        issues.add(loc + ("where",), f"{path.name}: {exc}")
        return False
    if value not in found:
        some = ", ".join(repr(v) for v in list(found)[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        issues.add(loc + ("where",), f"{path.name}: no row has {column} = {value!r} (a value is taken as written: "
                                     f"the text '1' is not the number 1); its values are {some or 'none'}")
        return False
    return True


def _columns_source(kind: str) -> str:
    """Where a file of ``kind`` (a loader type or datasets builder) lists its columns, as a
    missing column's message says it: a CSV's header was called "its first row", which a
    reader takes for the first data row under it."""
    return {"parquet": "its schema has", "csv": "its header has"}.get(kind, "its first row has")


def _other_type_advice(loader: LoaderBase, path: Path, columns: list[str] | None) -> tuple[str, bool]:
    """Where the file is of another type than ``loader.type`` says: what to write instead, and
    whether that is certain, by the file's content (a Parquet file's first bytes, ``PAR1``; a
    CSV "header" that is a JSON object), not only by its name's suffix (said for a file the
    loader cannot read). ``("", False)`` otherwise."""
    if loader.type not in ("jsonl", "csv", "parquet"):
        return "", False
    if advice := parquet_read_as_text(path, loader.type):
        return f"it is {advice}", True
    if loader.type == "csv" and columns and columns[0].lstrip().startswith("{"):
        return ("its first line is a JSON object, not a CSV header: for a JSON Lines file write "
                "`type: jsonl`"), True
    name = path.name.lower().removesuffix(".gz")
    for suffixes, kind, what in (((".csv", ".tsv"), "csv", "a CSV file"),
                                 ((".jsonl", ".ndjson"), "jsonl", "a JSON Lines file"),
                                 ((".parquet", ".pq"), "parquet", "a Parquet file")):
        if name.endswith(suffixes) and kind != loader.type and columns is None:
            return f"its name ends in {name[name.rindex('.'):]}: for {what} write `type: {kind}`", False
    if name.endswith(".txt") and columns is None:
        return f"its name ends in .txt: {_plain_text_file_advice(loader)}", False
    return "", False


def _plain_text_file_advice(loader: LoaderBase) -> str:
    """How to read ``loader``'s file as plain text, a line a row: a ``.txt`` file read as JSON
    Lines was "not JSON", and one read as CSV took its first line for the header and was told
    to set ``text_field`` to that line (as :func:`json_document_advice` says, for a group's file too)."""
    written = str(loader.path)
    shown = written if re.fullmatch(r"[\w./\-]+", written) else json.dumps(written)  # as YAML's flow style reads it
    return ("for plain text, a line a row, write loader: {type: huggingface, path: text, "
            f"data_files: [{shown}], text_field: text}} (a source of its own: a source_files group has no such "
            "loader)")


def _later_jsonl_columns(loader: LoaderBase, path: Path, columns: list[str], loc: tuple[Any, ...], kind: str,
                         issues: _Issues) -> list[str]:
    """``columns`` (a JSON Lines file's first row's keys) with the prompt's or answer's column
    that the first row lacks but later rows have: that row lacks its value (the data stage's
    error, "line 1: 'answer' ... is missing"), said here as such, not as "the file has no
    column 'answer'", which sent users to rename a right ``response_field``."""
    single = [(key, column) for key, _, column in _wanted_columns(loader, kind)
              if column and column not in columns and len(key) == 1]  # (a listed prompt column: may be left out)
    if not single:
        return columns
    later: set[str] = set()
    try:  # the head's first LABEL_ROWS_READ rows, as _jsonl_head_keys reads them (nothing assumed of the rest)
        with _open_text(path) as handle:
            rows = list(islice(((n, text) for n, text in enumerate(handle, start=1) if text.strip()),
                               LABEL_ROWS_READ))
    except Exception:  # noqa: BLE001 - unreadable past its head: the data stage says why
        return columns
    line = rows[0][0] if rows else 1
    for _, text in islice(rows, 1, None):
        try:
            record = json.loads(text)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            later.update(record)
    found = [(key, column) for key, column in single if column in later]
    if not found:
        return columns
    for key, column in found:
        what = {"response_field": "answer", "label_field": "label", "messages_field": "chat"}.get(key[0], "prompt")
        issues.add(loc + key, f"the file's first row (line {line}) has no {column!r}, though later rows have it: "
                              f"every row needs its {what}; fix or drop that row")
    return [*columns, *(column for _, column in found)]


def _jsonl_head_keys(path: Path, first: list[str], wanted: list[str], sometimes: list[str] | None = None, *,
                     read_on: bool) -> tuple[list[str], int]:
    """The keys of a JSON Lines file's first :data:`LABEL_ROWS_READ` objects, in the order
    they come, and how many objects were read (``first``: the first object's keys); then,
    for a ``wanted`` column none of them has, the rows after them (only a line holding the
    column's name as JSON text is parsed): a column that first comes later is there (the
    data stage reads it), and a file that cannot be read through (the data stage says why)
    is not said to lack one; lines that are not JSON objects are passed over. A file not to
    be read on (``read_on`` false: one larger than :data:`LINES_COUNTED_MB`, or past
    :data:`READ_THROUGH_MB_TOTAL` of all the files, read on every `validate`, `plan` and `run`)
    is not read past its head: of the ``wanted`` columns the head lacks, those a row may leave
    out (``sometimes``: a listed prompt's, a text's; all of them when None) are taken as there,
    the others (an answer every row needs) are missing, as they would be in a small file."""

    keys: dict[str, None] = dict.fromkeys(first)
    count = 0

    def objects(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
        for line in lines:
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # (the data stage names the line)
                continue
            if isinstance(record, dict):
                yield record

    try:
        with _open_text(path) as handle:
            lines = (line for line in handle if line.strip())
            for record in objects(islice(lines, LABEL_ROWS_READ)):
                keys.update(dict.fromkeys(record))
                count += 1
            missing = [column for column in wanted if column not in keys]
            if missing and not read_on:  # not read through on every validate
                keys.update(dict.fromkeys(c for c in missing if sometimes is None or c in sometimes))
            elif missing:
                names = {column: (json.dumps(column), json.dumps(column, ensure_ascii=False)) for column in missing}
                hits = (line for line in lines if any(name in line for both in names.values() for name in both))
                for record in objects(hits):
                    keys.update(dict.fromkeys(c for c in missing if c in record and c not in keys))
                    if all(column in keys for column in missing):
                        break
    except Exception:  # noqa: BLE001 - not read through: only what was read says a column is missing
        keys.update(dict.fromkeys(wanted))
    return list(keys), max(count, 1)


def _check_saved_to_disk(loader: HuggingFaceLoader, folder: Path, loc: tuple[Any, ...], kind: str,
                         issues: _Issues) -> None:
    """A folder written by ``save_to_disk``: a ``DatasetDict``'s has ``loader.split``, and the
    dataset read has the columns the loader asks for, from the metadata ``datasets`` saved
    with it (``dataset_dict.json``, ``dataset_info.json``); metadata ``load_from_disk`` would
    refuse is an issue (:func:`~subsetctl.data.loaders.huggingface.saved_dataset_problem`).
    Metadata unreadable otherwise is left to the data stage."""
    from datasets import DatasetInfo

    from subsetctl.data.loaders import saved_dataset_problem, saved_dict_splits, saved_split_slice_note
    from subsetctl.data.saving import read_saved_json

    dataset = folder
    try:
        if (folder / "dataset_dict.json").is_file():
            try:
                splits = saved_dict_splits(folder)
            except (OSError, ValueError, KeyError, TypeError):  # (not JSON, [1], no "splits": saved_dataset_problem
                # says so below, as in the data stage)
                splits = [loader.split]
            if loader.split not in splits:
                issues.add(loc + ("split",), f"the DatasetDict saved in {shown_path(folder)} has the splits "
                                             f"{', '.join(splits)}, not {loader.split!r}"
                                             f"{split_meant_note(loader.split, splits)}; set split to one of them"
                                             f"{saved_split_slice_note(loader.split, splits)}")
                return
            dataset = folder / loader.split
        if (problem := saved_dataset_problem(folder, loader.split if dataset != folder else None)) is not None:
            issues.add(loc + ("path",), problem)
            return
        features = DatasetInfo.from_dict(read_saved_json(dataset / "dataset_info.json")).features
    except (OSError, ValueError, KeyError, TypeError):
        return
    if features is not None:
        _check_named_columns(loader, _with_struct_fields(loader, list(features), kind, features, loc, issues),
                             "its features are", loc, kind, issues, f"the dataset saved in {dataset}")


def _wanted_columns(loader: LoaderBase, kind: str) -> list[tuple[tuple[Any, ...], str, str | None]]:
    """``(the key of its issue, the option, the column)`` of each column the loader asks
    for: the chats' column, the text's (``text_field``), or the prompt's and the answer's
    (the label's for a classifier)."""
    messages_field = getattr(loader, "messages_field", None)
    if messages_field is not None and kind != "classifier":  # (a classifier's: an issue of its own)
        return [(("messages_field",), "messages_field", messages_field)]
    if loader.text_field is not None and kind != "classifier":
        return [(("text_field",), "text_field", loader.text_field)]
    prompt = loader.prompt_field
    wanted: list[tuple[tuple[Any, ...], str, str | None]] = (
        [(("prompt_field",), "prompt_field", prompt)] if isinstance(prompt, str)
        else [(("prompt_field", i), "prompt_field", column) for i, column in enumerate(prompt)])
    answer = "label_field" if kind == "classifier" else "response_field"
    wanted.append(((answer,), answer, loader.label_field if kind == "classifier" else loader.response_field))
    return wanted


#: data files of one ``huggingface`` builder source whose heads validate reads at most
BUILDER_FILES_READ = 32


def _not_one_local_file(path: str) -> str:
    """Why a file loader's ``path`` that names no file is not one local file, when it shows:
    a URL (these loaders do not download) or a file pattern (they read one file); "" else.
    Without it the error said ".../https:/example.com/a.jsonl does not exist"."""
    from subsetctl.data.loaders import is_glob

    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", path):
        return (f"{as_typed(path)} is a URL, and the jsonl, csv and parquet loaders read local files only: download "
                "it and name the file, or read it with `type: huggingface`, `path: json` (or csv, parquet) "
                f"and `data_files: [{path}]`, which downloads it")
    if is_glob(path):
        return (f"{as_typed(path)} is a file pattern, and loader.path names one file: for one source per matching "
                "file use a `source_files` group (`files:` takes the pattern); to read the files as one "
                "source, `type: huggingface`, `path: json` (or csv, parquet) and `data_files: [the pattern]`")
    return ""


#: the bytes of each text data file validate reads for its UTF-8 check (the data stage reads the rest)
TEXT_HEAD_BYTES = 1 << 20

#: the file builders whose local data files :func:`_check_builder_local_files` checks, and
#: whether their files are text (checked to be UTF-8)
_FILES_CHECKED = {"text": True, "json": True, "csv": True, "parquet": False}


def _check_builder_local_files(builder: str, by_entry: list[list[str]], loc: tuple[Any, ...],
                               issues: _Issues) -> None:
    """The local files of a ``huggingface`` loader of one of datasets' file builders
    (:data:`_FILES_CHECKED`: ``text``, a .txt file a line a row; ``json``; ``csv``;
    ``parquet``): each is a file, not a folder, they are not all empty, and the head of a
    text one is UTF-8. The builders' own errors said none of it: "Unable to find x.txt" for
    a folder of that name, "Please pass `features` or at least one example" (text) or
    "StopIteration" (json) for an empty file, a UnicodeDecodeError at a position of no line
    for a Latin-1 file. An empty file among others adds no row: not an issue."""
    empty: list[tuple[int, Path]] = []
    checked = 0
    for i, files in enumerate(by_entry):
        for file in files[:BUILDER_FILES_READ]:
            path = Path(file)
            if "://" in file or not path.exists():  # (a missing one: an issue of its own)
                continue
            if path.is_dir():
                issues.add(loc + ("data_files", i), f"data file {shown_path(path)} is a folder, not a file: the {builder} "
                                                    "builder reads files (list the folder's files, or a glob of them)")
                return
            if not path.is_file():
                continue
            checked += 1
            try:
                with open_decompressed(path) as handle:
                    head = handle.read(TEXT_HEAD_BYTES)
            except UnsupportedCompression as exc:
                issues.add(loc + ("data_files", i), f"{path.name}: {exc.problem}")
                return
            except (OSError, EOFError, zlib.error):  # (unreadable, a gzip cut short: the data stage says which)
                continue
            if not (head.strip() if _FILES_CHECKED[builder] else head):
                empty.append((i, path))
                continue
            if builder == "parquet" and (problem := _parquet_problem(path)) is not None:
                issues.add(loc + ("data_files", i), f"{path.name}: {problem}")
                return
            if not _FILES_CHECKED[builder] or _is_archive(path):
                continue
            try:
                head.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                if exc.start < len(head) - 3 or len(head) < TEXT_HEAD_BYTES:  # (not a character the head cut)
                    issues.add(loc + ("data_files", i), f"{path.name}: not valid UTF-8 ({exc.reason}"
                                                        f"{_utf8_error_at(head, exc)}): {not_utf8_fix(head)}")
                    return
    if empty and len(empty) == checked:
        i, path = empty[0]
        which = f"data file {shown_path(path)} is" if checked == 1 else f"each of the {checked} data files ({shown_path(path)}, ...) is"
        issues.add(loc + ("data_files", i), f"{which} empty{' (no line of text)' if _FILES_CHECKED[builder] else ''}: "
                                            "give at least one " + ("document (a line a row)" if builder == "text"
                                                                    else "example"))


def _parquet_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a Parquet file (compressed, cut short, not Parquet), or
    None, from its metadata; as :func:`_file_head` says it of a ``parquet`` loader's file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        return compressed_parquet_problem(path) or (
            f"not a Parquet file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
    return None


def _check_builder_files(loader: HuggingFaceLoader, files: list[str], loc: tuple[Any, ...], kind: str,
                         issues: _Issues) -> None:
    """A ``huggingface`` loader with a file builder as its path (``path: json``, ``csv``,
    ``parquet`` or ``text``) and local ``data_files`` (``files``: as :func:`data_files_by_entry`
    gives them, globs expanded): the columns it asks for are in the files' heads, read as the
    builder reads them (``text``: one column, ``text``, so a plain-text file read without
    ``text_field`` is told to set it here, not by the data stage's "no column 'prompt'"). ``data_files`` as a list are the ``train`` split, so only a loader
    reading that split is checked; a column is missing only when none of the files read
    (the first :data:`BUILDER_FILES_READ`) has it. Nothing is said when a file is remote or
    cannot be read here, or its columns cannot be told cheaply (a JSON document that is one
    object holding no list of rows; a JSON array over :data:`LINES_COUNTED_MB`): the data
    stage has the last word."""
    builder = loader.path
    if builder not in ("json", "csv", "parquet", "text") or not files:
        return
    if any(part.split("[")[0].strip() != "train" for part in loader.split.split("+")):
        return  # a split data_files (a list: train) lacks; load_dataset says so
    _check_files_columns(loader, builder, files, loc, kind, issues, counted=True)


def _check_folder_files(loader: HuggingFaceLoader, folder: Path, loc: tuple[Any, ...], kind: str,
                        issues: _Issues) -> None:
    """A ``huggingface`` loader whose path is a plain local folder of data files (CSV, JSON
    Lines, Parquet; no ``data_files``): the columns it asks for are in the heads of the
    files ``datasets`` reads for ``loader.split``, as it finds them (by their names and
    extensions), read as its builder reads them (:func:`_check_files_columns`). A folder with
    several configurations (a hub dataset's copy, its README.md's ``configs:``) must have
    ``loader.name`` among them, and ``loader.split`` must be one of the configuration's splits:
    each is an issue listing the choices (``validate`` said nothing, and the data stage stopped
    on datasets' "Config name is missing ... `load_dataset('gsm8k', 'main')`"). Nothing is said
    when ``datasets`` cannot tell the files here or the builder is told to read the files
    otherwise (a ``.tsv`` file's tab)."""
    if "+" in loader.split:
        return
    split = loader.split.split("[")[0].strip()
    try:
        import datasets
        from datasets.packaged_modules.csv.csv import CsvConfig
        from datasets.packaged_modules.json.json import JsonConfig
        from datasets.packaged_modules.parquet.parquet import ParquetConfig

        config = datasets.load_dataset_builder(str(folder), loader.name).config
    except ValueError:  # a configuration the folder lacks, or none chosen of several
        _check_folder_config(loader, folder, loc, issues)
        return
    except Exception:  # noqa: BLE001 - load_dataset, in the data stage, says what is wrong
        return
    splits = [str(name) for name in config.data_files or {}]
    every = loader.split == "all"  # every split, as load_dataset reads exactly "all" (not "all[:50%]")
    if splits and split not in splits and not every:
        named = f" (configuration {loader.name!r})" if loader.name else ""
        issues.add(loc + ("split",), f"the dataset in {shown_path(folder)}{named} has the splits {', '.join(splits)}, not "
                                     f"{split!r}{split_meant_note(split, splits)}; set split to one of them")
        return
    builder = {CsvConfig: "csv", JsonConfig: "json", ParquetConfig: "parquet"}.get(type(config))
    if builder is None or not config.data_files:
        return
    if (builder == "csv" and (config.sep != "," or config.delimiter not in (None, ","))
            or builder == "json" and config.field is not None):
        return
    files = [str(f) for name, found in config.data_files.items() if every or split == str(name) for f in found]
    if files:
        _check_files_columns(loader, builder, files, loc, kind, issues)


def _check_folder_config(loader: HuggingFaceLoader, folder: Path, loc: tuple[Any, ...], issues: _Issues) -> None:
    """``loader.name`` is not one of the configurations of the dataset in ``folder`` (those
    its README.md's ``configs:`` header names), or is left out where there are several: an
    issue listing them. Nothing is said when they cannot be told, or ``loader.name`` is one
    of them (the builder failed for another reason: the data stage says which)."""
    import datasets

    try:
        names = [str(name) for name in datasets.get_dataset_config_names(str(folder))]
    except Exception:  # noqa: BLE001 - load_dataset, in the data stage, says what is wrong
        return
    if not names or loader.name in names:
        return
    if names == ["default"]:  # a plain folder of data files: datasets names its one configuration so
        if loader.name is None:  # (left out already: the builder failed for another reason, which loading says)
            return
        issues.add(loc + ("name",), f"the dataset in {shown_path(folder)} has one configuration, not {loader.name!r} (its "
                                    "data files, read as they are): leave loader.name out")
        return
    choose = f"set name to one of them (e.g. name: {names[0]})"
    issues.add(loc + ("name",),
               f"the dataset in {shown_path(folder)} has the configurations {', '.join(names)}, and loader.name chooses none "
               f"of them; {choose}" if loader.name is None else
               f"the dataset in {shown_path(folder)} has no configuration {loader.name!r}; its configurations are "
               f"{', '.join(names)}: {choose}")


def _check_cached_hub_dataset(loader: HuggingFaceLoader, loc: tuple[Any, ...], kind: str, issues: _Issues) -> None:
    """A hub id whose tables the local ``datasets`` cache holds, where ``datasets`` reads them
    from there (``HF_DATASETS_OFFLINE``, ``HF_HUB_OFFLINE`` or the hub out of reach: it asks no
    hub): ``loader.name`` is one of the configurations cached (or left out where there is one),
    ``loader.split`` one of its splits, and the columns asked for are among its features, from
    the ``dataset_info.json`` datasets keeps with them (:func:`~subsetctl.hub.cached_dataset_tables`).
    Each is an issue listing the choices, as for a local folder: the data stage stopped on
    datasets' "Couldn't find cache for ... for config 'wrong_config'" or "Unknown split". Nothing
    is said where the hub is asked (it may hold configurations the cache lacks), for a file
    builder or when the metadata cannot be read."""
    from subsetctl.hub import cached_dataset_tables, datasets_offline_reason, hub_reachable, is_file_builder

    if is_file_builder(loader.path):
        return
    tables = cached_dataset_tables(loader.path)
    if not tables or (datasets_offline_reason() is None and hub_reachable()):
        return
    names = sorted(tables)
    where = f"the local datasets cache (read offline: the hub is not asked) holds {as_typed(loader.path)}"
    if loader.name is None and len(names) > 1:
        issues.add(loc + ("name",), f"{where} in the configurations {', '.join(names)}, and loader.name chooses none "
                                    f"of them; set name to one of them (e.g. name: {names[0]})")
        return
    if loader.name is not None and loader.name not in tables:
        offline = datasets_offline_reason()
        unset = f" with HF_DATASETS_OFFLINE unset ({offline})" if offline else ""
        issues.add(loc + ("name",), f"{where} in the configurations {', '.join(names)}, not {loader.name!r}: set "
                                    f"name to one of them, or run once where the hub is reachable{unset} to cache "
                                    "that one")
        return
    config = loader.name or names[0]
    from datasets import DatasetInfo  # (only now: importing datasets takes most of a second)

    try:
        info = DatasetInfo.from_directory(str(tables[config]))
    except (OSError, ValueError, KeyError, TypeError):
        return
    splits = [str(name) for name in info.splits or {}]
    parts = [part.split("[")[0].strip() for part in loader.split.split("+")]
    if splits and loader.split != "all" and any(part not in splits for part in parts):  # (exactly "all": every split)
        issues.add(loc + ("split",), f"{where} (configuration {config!r}) with the splits {', '.join(splits)}, not "
                                     f"{loader.split!r}{split_meant_note(loader.split, splits)}; set split to one "
                                     "of them")
        return
    if info.features is not None:
        columns = _with_struct_fields(loader, list(info.features), kind, info.features, loc, issues)
        _check_named_columns(loader, columns, "its features are", loc, kind, issues,
                             f"the cached dataset {as_typed(loader.path)} (configuration {config!r})")


def _with_struct_fields(loader: HuggingFaceLoader, columns: list[str], kind: str, features: Any = None,
                        loc: tuple[Any, ...] = (), issues: _Issues | None = None) -> list[str]:
    """``columns`` with each dotted name the loader asks for (``prompt_field: meta.question``)
    that reads a field of a struct column, as the ``huggingface`` loader reads it: by the
    dataset's ``features`` (saved or cached) where they are known, where a part that is not
    there is an issue at its key naming the fields there are
    (:func:`~subsetctl.data.loaders.huggingface.struct_field_of`); else (a file's head) when
    its first part is a column, its fields left to the data stage."""
    from subsetctl.data.loaders.huggingface import struct_field_of

    added = []
    for key, _, name in _wanted_columns(loader, kind):
        if not name or name in columns or "." not in name:
            continue
        if features is None:
            if name.split(".")[0] in columns:
                added.append(name)
            continue
        field = struct_field_of(features, name)
        if isinstance(field, str) and issues is not None:
            issues.add(loc + key, f"{name!r} names a field of a struct column, and {field}")
        if field is not None:  # (a wrong part: said above, not as a missing column too)
            added.append(name)
    return [*columns, *added]


def _check_files_columns(loader: HuggingFaceLoader, builder: str, files: list[str], loc: tuple[Any, ...],
                         kind: str, issues: _Issues, counted: bool = False) -> None:
    """The columns ``loader`` asks for are in the heads of the local ``files`` that datasets'
    ``builder`` (json, csv, parquet, text) reads (see :func:`_check_builder_files`). ``counted``:
    files that :func:`files_read_through` counts (``data_files``), read past their heads only
    within its total (:func:`_builder_file_columns`)."""
    if any("://" in f or not Path(f).is_file() for f in files):
        return
    wanted = [column for _, _, column in _wanted_columns(loader, kind) if column]
    columns: dict[str, None] = {}
    read = files[:BUILDER_FILES_READ]
    for file in read:
        lacking = [column for column in wanted if column not in columns]
        if not lacking:  # each found already: the files after are not read
            return
        head = _builder_file_columns(builder, Path(file), lacking, _sometimes_columns(loader, kind), counted)
        if head is None:
            return
        columns.update(dict.fromkeys(head))
    if len(files) == 1:
        what, where = f"data file {shown_path(files[0])}", _columns_source(builder)
    else:
        first = "first " if len(read) < len(files) else ""
        what = f"each of the {first}{len(read)} data files ({read[0]}, ...; {len(files)} in all)"
        where = "their heads have"
    note = (_under_a_key_note(Path(read[0]), counted) if builder == "json" and len(read) == 1
            and _lacks_a_column(loader, kind, list(columns)) else "")
    _check_named_columns(loader, _with_struct_fields(loader, list(columns), kind), where, loc, kind, issues, what,
                         note)


#: the first bytes of the archives ``datasets`` unpacks that :func:`open_decompressed` does
#: not refuse: 7z, RAR, LZ4 (a tar, plain or compressed, is told by :func:`tarfile.is_tarfile`)
_ARCHIVE_MAGIC = (b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07", b"\x04\x22\x4d\x18")


def _is_archive(path: Path) -> bool:
    """Whether ``path`` is an archive that ``datasets`` unpacks to read the files in it (a
    ``.tar`` or ``.tar.gz`` of CSV files reads so): its own bytes are not rows (a tar's
    header, read as a CSV header, named no column asked for)."""
    import tarfile

    with open(path, "rb") as handle:
        head = handle.read(8)
    return head.startswith(_ARCHIVE_MAGIC) or tarfile.is_tarfile(path)


def _builder_file_columns(builder: str, path: Path, wanted: list[str],
                          sometimes: list[str] | None = None, counted: bool = False) -> list[str] | None:
    """The columns ``datasets``' ``builder`` (json, csv, parquet, text) reads from the file
    ``path``, from its head; None when that cannot be told cheaply or surely (the data
    stage says what is wrong with a file). JSON Lines: the keys of the first rows (and, for
    a ``wanted`` column they lack, of the rest, or past :data:`LINES_COUNTED_MB` of the
    ``sometimes`` columns only: :func:`_jsonl_head_keys`); a JSON array of
    objects: every object's keys (of strings: ``text``); a document of one key, or a
    pretty-printed one: the key that holds a list of objects (``{"data": [...]}``, whose rows
    only the builder's ``field`` option, which the loader does not take, reads: the builder
    makes one row of it; :func:`_rows_under_a_key`), else not told; CSV: the header, with pandas' names for repeated and
    empty ones added (pandas' own); Parquet: the schema's names; text: its one column, ``text``, a
    line a row. An archive (:func:`_is_archive`): not told. ``counted``: a JSON file read past
    its head (an array, a document, the keys past the first rows) only within validate's
    :data:`READ_THROUGH_MB_TOTAL` (:func:`_read_through`: ``data_files``, which
    :func:`files_read_through` counts; a local folder's files it does not list, up to
    :data:`LINES_COUNTED_MB` each)."""
    try:
        if _is_archive(path):
            return None
        if builder == "text":
            return [TEXT_COLUMN]
        if builder == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_metadata(path).schema.to_arrow_schema().names)
        if builder == "csv":
            with _open_text(path) as handle:
                header = next((row for row in csv.reader(_past_blank_lines(handle, ",")) if row), None)
            if header is None:
                return None
            if len(set(header)) == len(header) and "" not in header:
                return list(header)
            # pandas renames repeated and empty ones ("a", "a" -> "a", "a.1"; "" -> "Unnamed: 2";
            # "x", "x.1", "x" -> "x", "x.1", "x.2"): its own names, from the header alone
            import pandas as pd

            row = io.StringIO()
            csv.writer(row).writerow(header)
            row.seek(0)
            return list(dict.fromkeys(header + [str(name) for name in pd.read_csv(row, nrows=0).columns]))
        with _open_text(path) as handle:
            lines = (line for line in handle if line.strip())
            line, more = next(lines, ""), next(lines, None) is not None
        within = _may_read_whole(path, counted)
        if line.lstrip().startswith("["):
            if not within:
                return None
            with _open_text(path) as handle:
                items = json.load(handle)
            if isinstance(items, list) and items and all(isinstance(item, dict) for item in items):
                return list({key: None for item in items for key in item})
            if isinstance(items, list) and items and all(isinstance(item, str) for item in items):
                return ["text"]
            return None
        try:
            first = json.loads(line)
        except ValueError:
            first = None  # a pretty-printed document's first line, "{"
        if not isinstance(first, dict) or (not more and len(first) == 1):
            # a document holding its rows under a key, as {"data": [...]}: the builder makes one row of it
            found = _rows_under_a_key(path, counted) if line.lstrip().startswith("{") and not (first and more) else None
            return [found[0]] if found else None
        return _jsonl_head_keys(path, list(first), wanted, sometimes, read_on=within)[0]
    except Exception:  # noqa: BLE001 - unreadable or not what the builder reads: the data stage says why
        return None


#: column names that usually hold a chat a row (OpenAI's messages, ShareGPT's conversations), which
#: a causal LM reads with ``messages_field``
CHAT_COLUMNS = ("messages", "conversations", "conversation", "chat", "dialog", "dialogue")


def _may_read_whole(path: Path, counted: bool = True) -> bool:
    """Whether validate may read the file ``path`` whole: up to :data:`LINES_COUNTED_MB`, and where
    ``counted`` within :data:`READ_THROUGH_MB_TOTAL` of all the files (:func:`_read_through`)."""
    size = path.stat().st_size
    return _read_through(path, size) if counted else size <= LINES_COUNTED_MB * 2**20


def _rows_under_a_key(path: Path, counted: bool = True) -> tuple[str, int] | None:
    """``(key, count)`` when the JSON file ``path`` (that validate may read whole, :func:`_may_read_whole`) is one
    object holding its rows, a list of objects, under ``key`` (SQuAD's ``{"version": ...,
    "data": [...]}``, an export's ``{"rows": [...]}``): read as JSON Lines, or by
    ``datasets``' JSON reader without its ``field`` option, it is one row whose columns are
    those keys. None otherwise, or when it cannot be read."""
    try:
        if not _may_read_whole(path, counted):
            return None
        with _open_text(path) as handle:
            document = json.load(handle)
    except Exception:  # noqa: BLE001 - not one JSON document: other checks say what it is
        return None
    if not isinstance(document, dict):
        return None
    return next(((key, len(value)) for key, value in document.items()
                 if isinstance(value, list) and value and all(isinstance(item, dict) for item in value)), None)


def _lacks_a_column(loader: LoaderBase, kind: str, columns: list[str]) -> bool:
    """Whether ``columns``, few as a document's keys are, lack one the loader asks for (only
    then is a file read whole for :func:`_under_a_key_note`)."""
    return len(columns) <= 3 and any(column and column not in columns for _, _, column in _wanted_columns(loader, kind))


def _under_a_key_note(path: Path, counted: bool = True) -> str:
    """What a missing column's issue adds for a file holding its rows under a key
    (:func:`_rows_under_a_key`): how to make them rows; "" for any other file."""
    found = _rows_under_a_key(path, counted)
    if found is None:
        return ""
    key, count = found
    return (f" ({path.name} is one JSON object holding its {count} rows under {key!r}, which no loader reads "
            f"there: write them one object a line, e.g. `{jq_rows_command(path.name, key)}`, "
            "and read that with type: jsonl)")


def _csv_cells_spaced(loader: LoaderBase, path: Path, columns: list[str]) -> bool:
    """Whether a CSV file was written with a space after each delimiter (``question, answer``
    then ``q?, 12``): every column after the first, and every cell after the first of its
    first row, starts with a space, which the answers then keep. False when unsure."""
    if loader.type != "csv" or len(columns) < 2 or not all(c[:1] == " " for c in columns[1:]):
        return False
    try:
        with _open_text(path) as handle:
            rows = (row for row in csv.reader(_past_blank_lines(handle, loader.delimiter),
                                              delimiter=loader.delimiter) if row)
            next(rows, None)
            first = next(rows, None)
    except Exception:  # noqa: BLE001 - unreadable past its header: the data stage says why
        return False
    return first is not None and len(first) > 1 and all(cell[:1] == " " for cell in first[1:] if cell)


def _unclosed_csv_quote(path: Path, delimiter: str) -> str | None:
    """What the data stage says of a CSV file with a quoted cell that is never closed (a stray
    ``"``: the rest of the file is read as that cell, and pandas refuses it, "EOF inside
    string"), where that cell starts; None for any other file. Only a file up to
    :data:`LINES_COUNTED_MB` (compressed) is looked at, and only one with an odd count of
    quotes (counted by C's search, a few ms per 10 MB) is read as CSV to find the cell: a
    doubled quote (``""``) in a quoted cell keeps the count even. A file the csv module
    finds otherwise wrong (a character after a closing quote, which pandas takes) is left to
    the data stage."""
    try:
        if not _read_through(path, path.stat().st_size):
            return None
        quotes = 0
        with open_decompressed(path) as raw:
            while chunk := raw.read(1 << 20):
                quotes += chunk.count(b'"')
        if quotes % 2 == 0:
            return None
        limit = csv.field_size_limit()
        try:
            csv.field_size_limit(2**31 - 1)  # (the unclosed cell holds the rest of the file)
            with _open_text(path) as handle:
                reader = csv.reader(handle, delimiter=delimiter, strict=True)
                start = 1
                for _ in reader:
                    start = reader.line_num + 1
        finally:
            csv.field_size_limit(limit)
    except csv.Error as exc:
        if "unexpected end of data" not in str(exc):
            return None
        return (f"not valid CSV (EOF inside string starting at line {start}: a quoted cell opened there is never "
                f"closed, so the rest of the file would be read as that cell). Check the delimiter (loader.delimiter "
                f"is {delimiter!r}) and the quoting: close that quote, or double a quote meant inside a cell (\"\")")
    except Exception:  # noqa: BLE001 - unreadable, not UTF-8, a gzip file cut short: said by the other checks
        return None
    return None


#: the column a file of plain text (a corpus, a dump) holds its documents in, where it has others
TEXT_COLUMN = "text"


def _plain_text_column(loader: LoaderBase, kind: str, columns: list[str], wanted: list[str | None]) -> str | None:
    """The column ``loader.text_field`` would read, for a causal LM's file that has no answer
    column and looks like plain text (``wanted``: the prompt's columns, the answer's last): one
    named :data:`TEXT_COLUMN` (Wikipedia dumps: id, url, title, text), none of the prompt's
    columns but it there, or the file's one column where that is no prompt column (a file of
    prompts alone lacks its answers: no text to train on whole); else None."""
    if kind == "classifier" or loader.text_field is not None or getattr(loader, "messages_field", None) is not None:
        return None
    *prompt, answer = wanted
    text = TEXT_COLUMN if TEXT_COLUMN in columns else columns[0] if len(columns) == 1 else None
    if text is None or answer in columns or any(c in columns and c != TEXT_COLUMN for c in prompt):
        return None
    return text


#: the huggingface loader's builder that reads what a file loader reads, for a dotted path
_BUILDER_OF = {"jsonl": "json", "parquet": "parquet"}


def _struct_path_note(loader: LoaderBase, column: str, columns: list[str]) -> str | None:
    """"; 'meta' is a column: the jsonl loader reads ..." for a column option of the jsonl or
    parquet loader that names a field of a struct column as a dotted path (``meta.question``,
    'meta' a column there), which only the huggingface loader reads; else None. It was told to
    set ``text_field: meta``, or to pick one of the columns, neither of which reads the field."""
    builder = _BUILDER_OF.get(loader.type)
    head = column.split(".", 1)[0]
    if builder is None or "." not in column or head not in columns:
        return None
    path = json.dumps(str(getattr(loader, "path", "FILE")))
    return (f"; {head!r} is a column: the {loader.type} loader reads column names only, not a field of a "
            f"struct column named as a dotted path; the huggingface loader does: loader: {{type: huggingface, "
            f"path: {builder}, data_files: [{path}], ...}} with the same column options")


def _check_named_columns(loader: LoaderBase, columns: list[str], where: str, loc: tuple[Any, ...], kind: str,
                         issues: _Issues, what: str = "the file", note: str = "", spaced_cells: bool = False) -> None:
    """An issue for each column the loader asks for that ``columns`` lacks (``where`` says
    what listed them: "its first row has"; ``what`` what lacks it; ``note``, what is
    known of the file, e.g. :func:`_under_a_key_note`, said after the columns;
    ``spaced_cells``: a CSV file written with ", ", :func:`_csv_cells_spaced`)."""
    wanted = _wanted_columns(loader, kind)
    listed = ", ".join(repr(c) for c in columns) or "(none)"
    hint = note
    if loader.type == "csv" and len(columns) == 1:
        other = next((d for d in (";", "\t", "|", ",") if d != loader.delimiter and d in columns[0]), None)
        if other:
            hint = f" (is the delimiter {other!r}? set loader.delimiter: {json.dumps(other)})"  # "\t": YAML's tab
    elif loader.type == "huggingface" and len(columns) == 1:  # datasets' CSV reader splits at commas alone
        other = next((d for d in (";", "\t", "|") if d in columns[0]), None)
        if other:
            hint = (f" (is the delimiter {other!r}? the huggingface loader reads CSV files at commas only: read "
                    f"the file with loader: {{type: csv, delimiter: {json.dumps(other)}}}, one source a file)")
    headerless = (loader.type == "csv" and not hint and len(columns) > 1
                  and any(re.fullmatch(r"\s*[-+]?\d+(\.\d+)?\s*", c) or len(c) > 40 for c in columns))
    if headerless:  # `What is 2 plus 2?,4` as the first line: a row read as the column names
        named = loader.delimiter.join(column for _, _, column in wanted if column)
        hint = (" (a row, not column names? a CSV file's first line is its header: add one naming the columns, "
                f"e.g. `{named}`, above the rows)")
    chats = [c for c in columns if c in CHAT_COLUMNS] if hasattr(loader, "messages_field") and kind != "classifier" \
        else []
    text = None if hint or headerless else _plain_text_column(loader, kind, columns,
                                                              [column for _, _, column in wanted])
    for key, option, column in wanted:
        if column and column not in columns:
            if (struct := _struct_path_note(loader, column, columns)) is not None:
                issues.add(loc + key, f"{what} has no column {column!r} ({where} {listed}){struct}")
                continue
            if chats and option != "messages_field":  # a chat a row, read as prompt and response columns
                issues.add(loc + key, f"{what} has no column {column!r} ({where} {listed}); {chats[0]!r} looks like "
                           f"a column of chats: read it with loader.messages_field: {chats[0]} in place of "
                           "prompt_field and response_field (the last message is the response, the user's "
                           "before it the prompt)")
                continue
            if text is not None and option == "response_field":  # plain text (a corpus): no answer to learn
                has = (f"has one column, {text!r}" if len(columns) == 1
                       else f"has no column {column!r} ({where} {listed})")
                shown = text if re.fullmatch(r"[A-Za-z_][\w.-]*", text) else json.dumps(text)  # as YAML reads it
                issues.add(loc + key, f"{what} {has}, and no prompt and response to learn: set text_field: "
                           f"{shown} (in place of prompt_field and response_field) to train on each "
                           "row's text whole, loss on every token and no prompt; or give each row a prompt and a "
                           "response")
                continue
            if text is not None:  # (the prompt's column: said with the answer's)
                continue
            # ' label' (a space after a CSV header's comma) or 'Question': alike to the eye in the list shown
            near = next((c for c in columns if c.strip().casefold() == column.strip().casefold()), None)
            if near is not None:
                how = "spaces around it" if near.strip() == column.strip() else "letter case"
                value: Any = near
                if len(key) == 2:  # an entry of a list (prompt_field: [context, question]): the list it makes
                    value = [near if i == key[1] else c for i, c in enumerate(getattr(loader, option))]
                fix = (f"; {near!r} differs from it only in {how} (column names are matched exactly): set "
                       f"{option}: {json.dumps(value)}, or fix the data's column name")
                if spaced_cells:  # `question, answer` and `q?, 12`: a file written with ", "
                    fix = (f"; the file separates its cells with {loader.delimiter + ' '!r}: every column after the "
                           "first starts with a space, and so do the cells of its first row (the answers too, "
                           f"which the model would learn): re-save the file with {loader.delimiter!r} alone (or set "
                           f"{option}: {json.dumps(value)}, keeping those spaces)")
            elif ((near := close_column(column, columns)
                           or usual_column(option, column, columns, option in loader.model_fields_set)) is not None
                  and not (note or headerless)):
                value = near  # 'questoin', 'answers': the column a typo meant, as the option to write
                if len(key) == 2:
                    value = [near if i == key[1] else c for i, c in enumerate(getattr(loader, option))]
                fix = f"; did you mean {near!r}? set {option}: {json.dumps(value)}, or fix the data"
            else:
                fix = "" if note or headerless else f"; set {option} to one of them or fix the data"
            issues.add(loc + key, f"{what} has no column {column!r} ({where} {listed}){hint}{fix}")


def _check_reasoning_gym(loader: ReasoningGymLoader, loc: tuple[Any, ...], issues: _Issues) -> None:
    """The task is one reasoning-gym has, and ``loader.config`` holds only options of its
    config (``seed`` and ``size`` belong to the loader itself)."""
    from subsetctl.data.loaders import close_names, reasoning_gym_task_hint, reasoning_gym_tasks

    tasks = reasoning_gym_tasks()
    if loader.task not in tasks:
        issues.add(
            loc + ("task",),
            f"unknown reasoning-gym task {loader.task!r}. {close_names(loader.task, tasks)} "
            f"{reasoning_gym_task_hint(tasks)}",
        )
        return
    from reasoning_gym.factory import DATASETS

    config_cls = DATASETS[loader.task][1]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    for key in loader.config:
        if key in ("seed", "size"):
            issues.add(loc + ("config", key), f"set {key} with loader.{key}, not inside loader.config")
        elif key not in fields:
            options = ", ".join(sorted(fields - {"seed", "size"})) or "(none)"
            issues.add(
                loc + ("config", key), f"task {loader.task!r} has no option {key!r}; its options: {options}"
            )


def _check_evals(loader: EvalsLoader, loc: tuple[Any, ...], issues: _Issues) -> None:
    """The ``evals`` package data is installed and has the named eval and file, and the
    file's first sample has an ``ideal`` answer (a model-graded eval has none)."""
    from subsetctl.data.loaders import (
        EVALS_INSTALL_HINT,
        close_names,
        default_evals_file,
        evals_data_dir,
        evals_files,
        evals_names,
        evals_names_hint,
    )

    data_dir = evals_data_dir()
    if data_dir is None:
        issues.add(loc, f"the evals loader needs the `evals` package data: `{EVALS_INSTALL_HINT}`")
        return
    folder = data_dir / loader.name
    if loader.name not in evals_names(data_dir):  # not a path: '' or '.' read the first eval's file
        issues.add(
            loc + ("name",),
            f"unknown eval {loader.name!r}. {close_names(loader.name, evals_names(data_dir))} "
            f"{evals_names_hint(data_dir)}",
        )
        return
    files = evals_files(folder)
    if loader.file is not None and loader.file not in files:
        issues.add(
            loc + ("file",),
            f"eval {loader.name!r} has no file {as_typed(loader.file)}; its files: {', '.join(files) or '(none)'}",
        )
    elif loader.file is None and not files:
        issues.add(loc + ("name",), f"eval {loader.name!r} has no .jsonl file")
    else:
        chosen = loader.file or default_evals_file(files)
        if not _first_object_has_ideal(folder / chosen):
            others = ", ".join(f for f in files if f != chosen)
            issues.add(
                loc + ("file" if loader.file else "name",),
                f"the first sample of eval {loader.name!r} file {chosen!r} has no 'ideal' answer (the eval is "
                "probably model-graded); choose an eval with ideal answers"
                + (f" or another of its files with loader.file ({others})" if others else ""),
            )


def _first_object_has_ideal(path: Path) -> bool:
    """Whether the first JSON object of an evals file has an ``ideal`` answer; True when
    that cannot be said cheaply (unreadable or not JSON: the data stage says why)."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for line in handle:
                if line.strip():
                    first = json.loads(line)
                    return not isinstance(first, dict) or first.get("ideal") not in (None, [])
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return True
    return True


def _check_plugin(loader: PluginLoader, loc: tuple[Any, ...], issues: _Issues, failed_plugins: list[str],
                  base_dir: Path, kind: str) -> None:
    """A ``type: plugin`` loader's name is a registered loader; one naming a built-in
    (``name: jsonl``) has options that loader takes, checked as that loader's own are."""
    from pydantic import ValidationError

    from subsetctl.data.loaders import BUILTIN_OPTION_MODELS
    from subsetctl.plugin_loading import unknown_after_failed_imports
    from subsetctl.registry import LOADERS
    from subsetctl.spec import plain_error_message

    if loader.name == "plugin":  # registered (it is this loader type), but it cannot load data by itself
        issues.add(loc + ("name",), "'plugin' is the loader type, not a loader: name the loader a plugin "
                                    "registered (`subsetctl ls` lists them)")
        return
    try:
        LOADERS.get(loader.name)
    except UserError as exc:
        issues.add(loc + ("name",), unknown_after_failed_imports(exc, LOADERS, failed_plugins))
        return
    model = BUILTIN_OPTION_MODELS.get(loader.name)
    if model is None:
        return
    try:  # as the data stage builds them (load_plugin): it refused bad ones only after the sources before
        options = model.model_validate({"type": loader.name, **loader.options})
    except ValidationError as exc:
        for error in exc.errors():
            message = plain_error_message(error)
            listed = "" if "subsetctl schema" in message else "; `subsetctl schema` lists its keys"
            issues.add(loc + ("options", *error["loc"]),
                       f"{message} (an option of the built-in loader {loader.name!r}{listed})")
        return
    _check_built_in(options, loc + ("options",), base_dir, kind, issues)


def _check_replacement(loader_type: str, loc: tuple[Any, ...], issues: _Issues) -> None:
    """A plugin registered under a built-in loader type (``@LOADERS.register("csv")``) is
    called as the built-in is, ``(options, ctx)``: one that cannot be (a ``def load(options)``;
    :meth:`~subsetctl.registry.Registry.get` says why) failed only at the data stage."""
    from subsetctl.registry import LOADERS

    if loader_type not in LOADERS.replaced():
        return
    try:
        LOADERS.get(loader_type)
    except UserError as exc:
        issues.add(loc + ("type",), str(exc))


#: the options whose problems one cause explains in a classifier's plain-text source (their columns: the
#: text is no prompt column and holds no class)
_COLUMN_OPTIONS = ("prompt_field", "label_field", "text_field", "response_field")


def _one_problem_for_plain_text_of_a_classifier(loader: LoaderBase, loc: tuple[Any, ...], issues: _Issues,
                                                found: int) -> None:
    """For a classifier's source of plain text (``text_field`` set, or the huggingface
    ``text`` builder, which reads a column 'text' alone): the problems of its column options
    since ``found`` (no column 'prompt', no label_field, no column 'label', text_field is
    for a causal LM) as one, at ``label_field``: the source has no class to learn, which each
    of them said in part (up to four problems for one cause). Its other problems (a missing
    file) are kept."""
    text_builder = isinstance(loader, HuggingFaceLoader) and loader.path == "text"
    if not (text_builder or loader.text_field is not None):
        return
    keys = {format_path(loc + (option,)) for option in _COLUMN_OPTIONS}
    prompts = format_path(loc + ("prompt_field",)) + "["  # (a prompt of several columns)
    about_columns = [i for i in issues.found[found:] if i.key in keys or i.key.startswith(prompts)]
    # (a file of a text and a label column read with text_field has its class: that problem alone is said)
    if not about_columns or not text_builder and not any(i.key == format_path(loc + ("label_field",)) for i in about_columns):
        return
    issues.found[found:] = [i for i in issues.found[found:] if i not in about_columns]
    what = ("the huggingface `text` builder reads each line as a row with one column, 'text'" if text_builder
            else f"loader.text_field: {loader.text_field} reads each row's text whole, for a causal LM")
    issues.add(loc + ("label_field",), f"a classifier's sources need a label column (model.kind is classifier, which "
               f"learns a class for each text), and this source is plain text ({what}): it has no class to learn. Give "
               "it a file with a text column and a label column, named by prompt_field and label_field, or leave it "
               "out of the sources")


def _check_built_in(loader: Any, loc: tuple[Any, ...], base_dir: Path, kind: str, issues: _Issues) -> None:
    """The checks of a built-in loader's settings (file, reasoning-gym task, evals name)."""
    if isinstance(loader, LoaderBase):
        found = len(issues.found)
        _check_file_loader(loader, loc, base_dir, kind, issues)
        if kind == "classifier":
            _one_problem_for_plain_text_of_a_classifier(loader, loc, issues, found)
    elif isinstance(loader, ReasoningGymLoader):
        _check_reasoning_gym(loader, loc, issues)
    elif isinstance(loader, EvalsLoader):
        _check_evals(loader, loc, issues)


def _names_too_long(loader: Any, loc: tuple[Any, ...], base_dir: Path, issues: _Issues) -> bool:
    """Whether a built-in loader's ``path`` or a ``data_files`` file names a file whose
    name (or whole path) is longer than the system takes, each said at its key as a
    missing file is: every look at such a path raises "File name too long", which stopped
    `validate` whole (naming neither the key nor the line, and hiding the other problems).
    The loader's other checks are then left out (they would look at it again)."""
    if isinstance(loader, PluginLoader):
        return False
    paths = [(("path",), loader.path)] if getattr(loader, "path", None) else []
    if isinstance(loader, HuggingFaceLoader):
        paths += [(("data_files", i), entry) for i, entry in enumerate(loader.data_files or [])
                  if "://" not in entry]
    found = False
    for key, written in paths:
        problem = name_too_long_problem(resolve_path(written, base_dir))
        if problem is not None:
            issues.add(loc + key, f"{'path' if key == ('path',) and isinstance(loader, HuggingFaceLoader) else 'file'} "
                                  f"{problem}")
            found = True
    return found


def _check_sources(spec: Spec, spec_path: Path, text: str | None) -> list[SpecIssue]:
    """:func:`check_sources`."""
    spec_path = Path(spec_path)
    if text is None:
        try:
            text = spec_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
    issues = _Issues(str(spec_path), key_lines(text) if text else {})
    base_dir = spec_path.parent
    kind = spec.model.kind
    global _files_read_through  # (check_sources sets it back to None)
    granted, read_through = files_read_through(spec, base_dir)
    _files_read_through = granted
    failed_plugins: list[str] = []
    if any(isinstance(s.loader, PluginLoader) for s in [spec.target, *spec.sources]) \
            or isinstance(spec.target.test_loader, PluginLoader):
        from subsetctl.spec_checks import _plugin_issues

        failed_plugins = _plugin_issues(spec, spec_path, issues.add)  # (said as validate says it: one issue, the same)
    entries: list[tuple[tuple[Any, ...], SourceSpec, bool]] = [(("target",), spec.target, True)]
    entries += [(("sources", i), s, False) for i, s in enumerate(spec.sources)]
    for loc, source, is_target in list(entries):
        loader = source.loader
        lloc = loc + ("loader",)
        if _names_too_long(loader, lloc, base_dir, issues):  # (every look at the file would raise)
            entries.remove((loc, source, is_target))
            continue
        if isinstance(loader, PluginLoader):
            _check_plugin(loader, lloc, issues, failed_plugins, base_dir, kind)
        else:
            _check_replacement(loader.type, lloc, issues)
            _check_built_in(loader, lloc, base_dir, kind, issues)
        _check_split(source, loc, is_target, issues, base_dir)
    test_loader = spec.target.test_loader  # checked as the target's loader is, at its own key
    if isinstance(test_loader, PluginLoader):
        _check_plugin(test_loader, ("target", "test_loader"), issues, failed_plugins, base_dir, kind)
    elif test_loader is not None and not _names_too_long(test_loader, ("target", "test_loader"), base_dir, issues):
        _check_replacement(test_loader.type, ("target", "test_loader"), issues)
        _check_built_in(test_loader, ("target", "test_loader"), base_dir, kind, issues)
    _check_num_labels(spec, [(loc, source) for loc, source, _ in entries], base_dir, issues)
    if read_through.not_read:
        issues.note(read_through.not_read[0][0],
                    f"validate read {len(granted):,} JSON Lines, CSV and JSON file(s) through, {READ_THROUGH_MB_TOTAL} MB "
                    f"in all, and stopped there: the files of {read_through.left_out()} are read through by the data stage alone, which counts their rows, "
                    "checks their bytes (gzip, UTF-8) and looks for a column their first rows lack as it "
                    "reads them. A note, not a problem (validate passes).")
    return issues.found


def check_sources(spec: Spec, spec_path: Path, text: str | None = None) -> list[SpecIssue]:
    """Problems with the target and sources that show without loading any data.

    Args:
        spec: the validated spec.
        spec_path: the spec file (relative data paths resolve against its folder).
        text: the spec's YAML text, to give each issue a line number; read from
            ``spec_path`` when omitted (no line numbers if it cannot be read).

    Returns:
        The issues found, keyed like ``sources[3].loader.path``; empty when all is well.
    """
    global _files_read_through
    _jsonl_read_through_of.cache_clear()  # what files hold is read afresh by each call
    _jsonl_not_utf8_of.cache_clear()
    try:
        return _check_sources(spec, spec_path, text)
    finally:
        _files_read_through = None
        _jsonl_read_through_of.cache_clear()
        _jsonl_not_utf8_of.cache_clear()
        _label_column.cache_clear()
        release_whole_file()  # (a text file's records, kept by _first_rows_where)


#: rows of each JSON Lines, CSV or Parquet file whose labels validate reads for ``model.num_labels``
LABEL_ROWS_READ = 1000


def _first_rows_where(loader: Any, path: Path, at_most: int = LABEL_ROWS_READ) -> list[dict[str, Any]]:
    """The first ``at_most`` records of a JSON Lines or CSV file its loader's ``where``
    picks, as the loader reads them: from the file kept in memory (one read for all its
    tasks' sources), or read up to the last of them."""
    from subsetctl.data.loaders.files import _text_file_in_memory, _text_records

    (by, value), = loader.where.items()
    found = value_rows(path, by, loader)
    rows = found.rows.get(value)
    if rows is None:
        return []
    wanted = rows[:at_most].tolist()
    memory = _text_file_in_memory(path, loader.type, getattr(loader, "delimiter", ","), len(found.lines))
    if memory is not None:
        return [memory.records[i] for i in wanted]
    picked = set(wanted)
    records = islice(_text_records(path, loader.type, getattr(loader, "delimiter", ","), array("q")), wanted[-1] + 1)
    return [record for i, record in enumerate(records) if i in picked]


def head_label_texts(loader: LoaderBase, path: Path, at_most: int = LABEL_ROWS_READ) -> tuple[list[str], int]:
    """The label texts of a classifier file's first ``at_most`` rows, one a row, as the
    loaders read them (:func:`~subsetctl.data.loaders.label_to_text`; blank and missing
    labels, which the data stage leaves out or refuses, are not counted, nor rows not UTF-8,
    which it leaves out: a read that stopped on one took the rows before it, or none, for the
    file's, and validate warned that a later row's label_map key renamed nothing); what could be
    read of them when the file cannot be read that far (the other checks and the data
    stage say why). Also how many rows were read: rows may be left unread where that is
    ``at_most``."""
    from itertools import islice

    from subsetctl.data.loaders import _missing, label_to_text

    field = loader.label_field
    values: list[Any] = []
    read: int | None = None  # rows read, where some are left out of ``values`` (a CSV file's rows not UTF-8)
    # unreadable or not what it claims: the file checks and the loader say why
    with contextlib.suppress(Exception):
        if loader.type in ("jsonl", "csv") and loader.where is not None:  # that value's first rows, not the file's
            values = [record.get(field) for record in _first_rows_where(loader, path, at_most)]
        elif loader.type == "jsonl":  # (a line not UTF-8 is no row, as the data stage leaves it out)
            with _open_text(path, errors="surrogateescape") as handle:
                for line in islice((line for line in handle if line.strip() and not has_escaped_bytes(line)),
                                   at_most):
                    record = json.loads(line)  # (one that is no object is a row read, with no label)
                    values.append(record.get(field) if isinstance(record, dict) else None)
        elif loader.type == "csv":
            try:
                head = _csv_head(loader, path, at_most)
            except UnicodeDecodeError:  # rows not UTF-8: no rows, as the data stage leaves them out
                head = _csv_head(loader, path, at_most, escaped=True)
                read = len(head)  # (rows past them are unread though fewer are kept)
                head = head[[not any(isinstance(cell, str) and has_escaped_bytes(cell) for cell in row)
                             for row in head.itertuples(index=False)]]
            values = head[field].tolist() if field in head.columns else []
        elif loader.type == "parquet":
            import pyarrow.parquet as pq

            from subsetctl.data.loaders.files import _json_decoder

            parquet = pq.ParquetFile(path)
            names = parquet.schema_arrow.names
            if field in names:
                # a name the file gives two columns: the loader reads the last one (a record's),
                # where reading the column by name gives the first
                twice = names.count(field) > 1
                at = len(names) - 1 - names[::-1].index(field) if twice else 0
                if loader.where is not None:  # that value's first rows, not the file's (another task's)
                    column = _label_column(path, field, at if twice else None, *_stamp(path))
                    (by, value), = loader.where.items()
                    rows = value_rows(path, by).rows.get(value)
                    picked = column.take(rows[:at_most]) if rows is not None else column.slice(0, 0)
                    values, arrow_type = picked.to_pylist(), column.type
                else:
                    batch = next(parquet.iter_batches(batch_size=at_most, columns=None if twice else [field]),
                                 None)
                    values = batch.column(at).to_pylist() if batch is not None else []
                    arrow_type = batch.schema.field(at).type if batch is not None else None
                # a column datasets 5 wrote as JSON text (values of mixed types): its values, as the loader reads
                decode = _json_decoder(arrow_type) if arrow_type is not None else None
                values = [decode(v) for v in values] if decode is not None else values
    texts: list[str] = []
    for value in values:
        if _missing(value):
            continue
        try:
            texts.append(label_to_text(value))
        except UnicodeDecodeError:  # bytes that are not UTF-8 text: the data stage names the row
            continue
    return [t for t in texts if t.strip()], len(values) if read is None else read


def _csv_head(loader: CsvLoader, path: Path, rows: int, escaped: bool = False) -> Any:
    """The first ``rows`` rows of CSV file ``path`` as its loader reads them: a pandas frame
    of text cells, a CRLF file's line breaks inside cells as LF (:func:`~subsetctl.data.loaders.
    files.csv_text_frame`), so that a label or an answer reads as the data stage reads it
    (validate's own csv module read kept ``"very\r\ngood"``, which a ``label_map`` key
    ``"very\ngood"`` did not map); ``escaped``: bytes that are not UTF-8 as surrogate escapes
    (:func:`~subsetctl.data.loaders.files.csv_text_options`), not refused."""
    import pandas as pd

    from subsetctl.data.loaders.files import crlf_lines, csv_text_frame, csv_text_options

    with open_decompressed(path) as handle:
        frame = pd.read_csv(handle, sep=loader.delimiter, nrows=rows, **csv_text_options(escaped))
    return csv_text_frame(frame, crlf_lines(path))


def _stamp(path: Path) -> tuple[int, int]:
    """``path``'s size and modification time, keying what is cached of its content."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=2)
def _label_column(path: Path, field: str, at: int | None, size: int, mtime_ns: int) -> Any:
    """Parquet file ``path``'s column ``field`` (the ``at``-th column, for a name the file
    gives two), read once for all the tasks of the file (``where``) whose labels
    :func:`head_label_texts` reads; kept while the file's size and modification time stay,
    until :func:`check_sources` returns."""
    import pyarrow.parquet as pq

    if at is None:
        return pq.read_table(path, columns=[field]).column(0).combine_chunks()
    return pq.read_table(path).column(at).combine_chunks()


#: rows of all the files whose labels validate reads for ``model.num_labels`` (:data:`LABEL_ROWS_READ` each):
#: 2,000 sources' files took 55 s of validate's 102.6 s (profiled) in this check; past these (about 1 s) the
#: sources left are not read, a note says so
NUM_LABELS_ROWS_TOTAL = 100_000


def _check_num_labels(spec: Spec, sources: list[tuple[tuple[Any, ...], SourceSpec]], base_dir: Path,
                      issues: _Issues) -> None:
    """A classifier's ``model.num_labels`` is not below the labels the first rows of the
    target's (its ``test_loader``'s too) and the sources' local files already use: the head
    has ``num_labels`` outputs, and the run would refuse it before meta-init, minutes in
    (after the data stage). Only
    the heads of JSON Lines, CSV and Parquet files are read (:data:`LABEL_ROWS_READ` rows
    each), so fewer labels found says nothing; the run checks every row's that it keeps.
    A source that keeps a seeded draw of its rows (``max_examples``, split counts, split
    fractions adding up to less than 1) is not read: the run counts the labels of the rows
    it draws only, which may leave out one of the head's. The files are read in the spec's
    order, the target's first, up to :data:`NUM_LABELS_ROWS_TOTAL` rows in all: the sources left
    past them are not read, which a note says, naming them (``sources``: ``(key, source)``)."""
    from subsetctl.data.loaders import label_vocabulary
    from subsetctl.data.prepare import SPLITS

    asked = spec.model.num_labels
    if spec.model.kind != "classifier" or asked is None:
        return
    found: set[str] = set()
    test_loader = spec.target.test_loader  # (its rows are all kept: no draw)
    total = ReadTotal(NUM_LABELS_ROWS_TOTAL)
    readers = [(loc, source, source.loader) for loc, source in sources]
    if test_loader is not None:  # (after the target's own file: the target's files first)
        readers.insert(1 if readers and readers[0][0] == ("target",) else 0,
                       (("target", "test_loader"), spec.target, test_loader))
    for loc, source, loader in readers:
        if not isinstance(loader, (JsonlLoader, CsvLoader, ParquetLoader)) or not loader.label_field:
            continue
        fractions = [size for name in SPLITS if isinstance(size := getattr(source.split, name), float)]
        drawn = source.max_examples is not None or abs(sum(fractions) - 1.0) > 1e-9  # (then every count is 0)
        if drawn and loader is not test_loader:
            continue  # a draw of the rows: the run's labels are those of the rows it keeps
        path = resolve_path(loader.path, base_dir)
        if path.is_file() and (at_most := total.take(loc, source.name, LABEL_ROWS_READ)):
            labels, rows = head_label_texts(loader, path, at_most)
            total.spend(rows)
            found |= {(source.label_map or {}).get(t, t) for t in labels} - {None}  # the classes they become
    if len(found) <= asked:
        if total.not_read:
            issues.note(("model", "num_labels"),
                        f"validate counted the labels of the first rows of {len(total.read):,} source(s)' files "
                        f"beside the target's, {NUM_LABELS_ROWS_TOTAL:,} rows in all, and stopped there: the labels "
                        f"of {total.left_out()} are counted by the run, which refuses a num_labels below them after "
                        "the data stage. A note, not a problem (validate passes).")
        return
    names = label_vocabulary(found)
    shown = ", ".join(repr(n) for n in names[:10]) + (", ..." if len(names) > 10 else "")
    issues.add(("model", "num_labels"),
               f"is {asked}, but the first {LABEL_ROWS_READ} rows of the target's and the sources' files already "
               f"use {len(names)} labels ({shown}); raise model.num_labels to at least {len(names)} (the data "
               "may hold more), or leave it out to size the head from the data")


def uncached_hub_datasets(spec: Spec, spec_dir: Path) -> list[tuple[tuple[Any, ...], str]]:
    """``(key, path)`` of the ``huggingface`` loaders that name a hub dataset which the
    local caches do not hold: those need the hub to be reachable."""
    from subsetctl.hub import dataset_cached, is_file_builder

    return [(loc, loader.path) for loc, loader in _non_local_hf_loaders(spec, spec_dir)
            if not is_file_builder(loader.path) and not dataset_cached(loader.path)]


def _non_local_hf_loaders(spec: Spec, spec_dir: Path) -> list[tuple[tuple[Any, ...], HuggingFaceLoader]]:
    """``(key of loader.path, loader)`` of the target's and sources' ``huggingface``
    loaders whose path is no local file or folder, so `datasets` looks it up by name."""
    entries = [(("target", "loader"), spec.target.loader)]
    if spec.target.test_loader is not None:
        entries.append((("target", "test_loader"), spec.target.test_loader))
    entries += [(("sources", i, "loader"), s.loader) for i, s in enumerate(spec.sources)]
    return [(loc + ("path",), loader) for loc, loader in entries
            if isinstance(loader, HuggingFaceLoader) and not looks_local(loader.path)
            and name_too_long_problem(resolve_path(loader.path, Path(spec_dir))) is None  # (said as such)
            and not resolve_path(loader.path, Path(spec_dir)).exists()]


def hub_lookalike_warnings(spec: Spec, spec_dir: Path) -> list[tuple[tuple[Any, ...], str]]:
    """``huggingface`` loader paths that are not local, so `datasets` will look them up on
    the hub (slowly, with retries, and failing offline), but that resemble a folder next
    to the spec: most likely a mistyped local dataset. ``(key, message)`` pairs, for
    warnings (a hub id is valid, so this is not an error)."""
    try:
        local = sorted(p.name for p in Path(spec_dir).iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    found = []
    for loc, loader in _non_local_hf_loaders(spec, spec_dir):
        first = loader.path.split("/", 1)[0]
        close = [first] if first in local else difflib.get_close_matches(first, local, n=3, cutoff=0.75)
        if close:
            message = (f"{as_typed(loader.path)} is not a local path, so it will be looked up on the Hugging Face hub, "
                       f"but the spec's folder has {', '.join('./' + c for c in close)}: if you meant a local "
                       "dataset, write the path with ./ (a mistyped local path then fails at once).")
            found.append((loc, message))
    return found
