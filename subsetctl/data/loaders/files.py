"""The file loaders (``jsonl``, ``csv``, ``parquet``) and what they share: paths and
globs, decompression (gzip; other compressions refused by name), text lines with
encoding checks, JSON Lines records.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import shlex
from collections.abc import Callable, Container, Hashable, Iterable, Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from subsetctl.data.loaders import common
from subsetctl.data.loaders.chat import common_columns
from subsetctl.data.loaders.common import (
    CommonColumns,
    LoadContext,
    _records_at,
    _where,
    one_based_row,
)
from subsetctl.errors import (
    UserError,
    as_typed,
    count_agreeing,
    json_syntax_error,
    path_not_found_note,
    shell_arg,
    shown_path,
)
from subsetctl.globbing import literal_folder_note, missing_folder_note
from subsetctl.registry import LOADERS
from subsetctl.spec import CsvLoader, HuggingFaceLoader, JsonlLoader, ParquetLoader, where_text
from subsetctl.user_paths import expand_home

if TYPE_CHECKING:
    from datasets import Dataset

T = TypeVar("T")

def resolve_path(path: str, base_dir: Path) -> Path:
    """``path`` with ``~`` expanded, made absolute against ``base_dir`` if relative.

    A path without ``~`` is made once per ``(path, base_dir)`` in a process
    (:func:`_resolved_as_written`): validate's checks and warnings resolve each source's path about
    ten times, 20,000 paths made for 2,000 sources. One with ``~`` is expanded each time, as the
    home it names (``HOME``, the user database) can change."""
    if os.fspath(path).startswith("~"):
        p = expand_home(path)
        return p if p.is_absolute() else (base_dir / p)
    return _resolved_as_written(path, base_dir)


@functools.lru_cache(maxsize=1 << 16)
def _resolved_as_written(path: str, base_dir: Path) -> Path:
    """:func:`resolve_path` of a path without ``~`` (nothing to expand: what it is depends on
    its arguments alone)."""
    p = Path(path)
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
            expanded = expand_home(entry)  # the spec's folder as it is, not a pattern: /x/exp [2]/
            entries.append(_files_matching(expanded if expanded.is_absolute() else _glob_escaped(base_dir) / expanded))
        else:
            entries.append([str(resolved) if resolved.exists() else entry])
    return entries


def unmatched_glob_message(options: HuggingFaceLoader, index: int, base_dir: Path) -> str:
    """What to say about ``data_files[index]``, a glob that matches no file."""
    entry = (options.data_files or [])[index]
    return (f"loader.data_files pattern {as_typed(entry)} matches no file (looked for {shown_path(resolve_path(entry, base_dir))}; "
            f"relative patterns resolve against the spec's folder){path_not_found_note(entry)}"
            f"{literal_folder_note(entry, base_dir)}{missing_folder_note(entry, base_dir)}. Fix the pattern "
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
            f"Source {ctx.source_name!r}: loader.path {as_typed(path_option)} does not exist (looked for "
            f"{shown_path(path)}; relative paths resolve against the spec's folder {ctx.base_dir})"
            f"{path_not_found_note(path_option, path)}. Fix loader.path or create the file."
        )
    if not path.is_file():
        raise UserError(
            f"Source {ctx.source_name!r}: loader.path {shown_path(path)} is not a file. Point loader.path "
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
        super().__init__(f"file {shown_path(path)} is {self.problem}.")


class SpreadsheetFile(UnsupportedCompression):
    """A spreadsheet workbook (Excel's .xlsx or .xls, an OpenDocument .ods) given as a data
    file: an .xlsx is a zip, which was told to be unzipped (into XML parts, no rows)."""

    def __init__(self, path: Path, kind: str) -> None:
        self.problem = (f"{kind}, not a text file: subsetctl reads no workbooks. Save the sheet as CSV from the "
                        "spreadsheet program (Excel: Save As, CSV UTF-8) and point the spec at that file, read "
                        "with type: csv")
        UserError.__init__(self, f"file {shown_path(path)} is {self.problem}.")


#: the first bytes of an OLE2 compound file: an Excel 97-2003 workbook (.xls)
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _spreadsheet_kind(path: Path, head: bytes) -> str | None:
    """What spreadsheet ``path`` is (its first bytes ``head``), or None: an Excel workbook (a
    zip holding ``xl/workbook.xml``, or named .xlsx/.xlsm), an OpenDocument spreadsheet (a zip
    named .ods), an Excel 97-2003 workbook (OLE2)."""
    import zipfile

    if head.startswith(_OLE2_MAGIC):
        return "an Excel 97-2003 workbook"
    if not head.startswith(b"PK\x03\x04"):
        return None
    suffix = path.suffix.lower()
    if suffix == ".ods":
        return "an OpenDocument spreadsheet"
    try:
        with zipfile.ZipFile(path) as archive:
            excel = "xl/workbook.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        excel = False
    return "an Excel workbook" if excel or suffix in (".xlsx", ".xlsm") else None


#: a file (as stored) of at most this many bytes is read once within :func:`files_read_once`
READ_ONCE_FILE_BYTES = 1 << 20
#: the most bytes :func:`files_read_once` holds in all (past them, files are opened each time)
READ_ONCE_TOTAL_BYTES = 64 << 20

#: within :func:`files_read_once`: each small file's bytes, by its path and stat (size, times, inode)
_read_once: dict[tuple[str, int, int, int, int], bytes] | None = None
#: the bytes :data:`_read_once` holds
_read_once_bytes = 0
#: within :func:`files_read_once`: what :func:`worked_out_once` worked out, by its key
_worked_out: dict[Hashable, Any] | None = None


@contextlib.contextmanager
def files_read_once() -> Iterator[None]:
    """Within it, :func:`open_decompressed` reads a file of at most :data:`READ_ONCE_FILE_BYTES`
    from disk once and serves it from memory after, while its size, modification and change
    times and inode stay the same (an edited file is read again). Validation looks at each
    source file several times (its head, its lines counted, the answers read, the lines not
    UTF-8 looked for), most opening it twice (its first bytes, then the data): ten opens a
    file, 100,000 for 10,000 small sources. Re-entrant; what it held is dropped when it ends."""
    global _read_once, _read_once_bytes, _worked_out
    if _read_once is not None:
        yield
        return
    _read_once, _read_once_bytes, _worked_out = {}, 0, {}
    try:
        yield
    finally:
        _read_once, _read_once_bytes, _worked_out = None, 0, None


def worked_out_once(key: Hashable, work: Callable[[], T]) -> T:
    """``work()``, done once for ``key`` within :func:`files_read_once` (what it found of the
    files then kept to its end, so that the checks and the warnings of one validation agree on
    it), each time outside it. Its caller keeps ``key``'s objects alive to its end (an ``id`` in
    it is not reused)."""
    if _worked_out is None:
        return work()
    if key not in _worked_out:
        _worked_out[key] = work()
    return _worked_out[key]  # type: ignore[no-any-return]


def _held_bytes(path: Path) -> bytes | None:
    """``path``'s bytes as stored, from :func:`files_read_once`'s memory (read now when not
    held); None outside it, for a larger file, or one that cannot be read (opened as before)."""
    from stat import S_ISREG

    global _read_once_bytes
    held = _read_once
    if held is None:
        return None
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    if not S_ISREG(stat.st_mode) or stat.st_size > READ_ONCE_FILE_BYTES:
        return None
    key = (os.fspath(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    data = held.get(key)
    if data is None:
        try:
            with open(path, "rb") as raw:
                data = raw.read()
        except OSError:
            return None
        if len(data) != stat.st_size:  # (changed while read: not kept under that stat)
            return data
        if _read_once_bytes + len(data) <= READ_ONCE_TOTAL_BYTES:
            held[key] = data
            _read_once_bytes += len(data)
    return data


def first_bytes(path: Path, count: int) -> bytes:
    """The first ``count`` bytes of ``path`` as stored (not decompressed), from
    :func:`files_read_once`'s memory where it holds them; OSError as :func:`open`'s."""
    whole = _held_bytes(path)
    if whole is not None:
        return whole[:count]
    with open(path, "rb") as raw:
        return raw.read(count)


def open_decompressed(path: Path) -> IO[bytes]:
    """A data file's bytes, decompressed when it is gzip-compressed (whatever its name).
    A file compressed otherwise (zstd, bzip2, xz, zip) is an :class:`UnsupportedCompression`,
    a spreadsheet workbook (an .xlsx is a zip) a :class:`SpreadsheetFile`. Within
    :func:`files_read_once`, a small file's bytes come from memory after its first read."""
    import gzip

    whole = _held_bytes(path)
    if whole is not None:
        head = whole[:10]
    else:  # (not held: first_bytes would look it up again)
        with open(path, "rb") as raw:
            head = raw.read(10)
    spreadsheet = _spreadsheet_kind(path, head)
    if spreadsheet is not None:
        raise SpreadsheetFile(path, spreadsheet)
    for magic, (name, command) in OTHER_COMPRESSIONS.items():
        if head.startswith(magic):
            raise UnsupportedCompression(path, name, command)
    if _BZIP2.match(head):
        raise UnsupportedCompression(path, "bzip2", "bunzip2")
    if whole is not None:
        return gzip.GzipFile(fileobj=io.BytesIO(whole), mode="rb") if head[:2] == GZIP_MAGIC \
            else io.BytesIO(whole)  # type: ignore[return-value]
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
        return UserError(f"Source {source!r}: cannot read file {shown_path(path)}: {exc.strerror}.")
    return UserError(f"Source {source!r}: file {shown_path(path)} is {gzip_damage(exc)}.")


#: a text file some of whose lines are not UTF-8 has them left out (:class:`NotUtf8Lines`) while
#: they are at most this share of its lines; more, and the file is taken for one in another
#: encoding, which stops its source (re-saved as UTF-8, none of its lines is lost)
NOT_UTF8_SHARE = 0.1

#: what a line that is not UTF-8 holds, decoded as Windows-1252 (Latin-1), when it is text of
#: that encoding: letters (é, ü, ñ) and its typographic punctuation (quotes, dashes, ...)
_CP1252_PUNCTUATION = frozenset("‘’‚“”„–—…«»‹›°·×÷£¥©®™§¶¡¿\u00a0")


def looks_cp1252(raw: bytes) -> bool:
    """Whether a line that is not UTF-8 (``raw``, its bytes) reads as Latin-1 or Windows-1252
    text: each of its characters past ASCII so decoded is a letter or typographic punctuation
    (``caf\\xe9``, ``\\x93quoted\\x94``). Such a line is a file in that encoding, not a damaged
    line: it stops the source (:class:`NotUtf8Lines`) rather than the file being emptied of its
    accented lines. A byte no Windows-1252 character has (0x81, 0x8D, 0x8F, 0x90, 0x9D), or a
    UTF-8 character cut short (its lead byte and continuation bytes, then no more: ``\\xe2\\x80``,
    read "â€", or a "€" cut to ``\\xe2\\x82``, read "â‚", a letter and a quote), is no such text."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.end - exc.start > 1:  # a lead byte and continuation bytes, then the character stops
            return False
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return all(ch.isalpha() or ch in _CP1252_PUNCTUATION for ch in text if ord(ch) > 127)


class NotUtf8(UserError):
    """A text file that is not UTF-8, as :func:`text_lines` refuses it; ``problem``: what
    validate says of it (the same, in its form: "not valid UTF-8 (byte B, line L): re-save
    it as UTF-8")."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass
class NotUtf8Lines:
    """Lines of a text file that are not valid UTF-8, left out by :func:`text_lines` (given
    one): the first few, how many, how many lines were read, and the error the first would
    have been. A few damaged lines (a line cut short, stray bytes) no longer stop the whole
    source; a file in another encoding still does: a line that reads as Latin-1 text
    (:func:`looks_cp1252`), or such lines more than :data:`NOT_UTF8_SHARE` of the lines.

    A CSV file's (``csv``) are its rows (records) instead, once the file is read
    (:func:`count_csv_rows_not_utf8`): a quoted cell over many lines is one row, so the share
    is of rows, ``count`` the rows holding such bytes and ``first`` the first such line of
    each (file lines, as an editor numbers them)."""

    first: list[int] = dataclass_field(default_factory=list)
    count: int = 0
    lines: int = 0
    error: NotUtf8 | None = None
    byte: int = 0
    csv: bool = False
    #: a CSV file's rows (its header not counted), once counted: the share is of them
    rows: int | None = None

    def add(self, line: int, byte: int, error: NotUtf8) -> None:
        """Count ``line``, not UTF-8 from ``byte`` of the file on (``error``: stopping on it),
        the first three kept to show."""
        self.count += 1
        if len(self.first) < 3:
            self.first.append(line)
        if self.error is None:
            self.error, self.byte = error, byte

    def shown(self) -> str:
        """The lines left out, as messages name them ("line 3, line 7 (+2 more)")."""
        more = f" (+{self.count - len(self.first)} more)" if self.count > len(self.first) else ""
        return ", ".join(f"line {n}" for n in self.first) + more

    def header_error(self) -> NotUtf8 | None:
        """The error stopping a CSV file whose first line (its header) is not UTF-8: no column
        could be named, however few such lines; else None."""
        return self.error if self.first[:1] == [1] else None

    def too_many(self) -> NotUtf8 | None:
        """The error stopping the source once the file is read: more such lines than
        :data:`NOT_UTF8_SHARE` of its lines, which a file in another encoding has; else None."""
        if self.error is None or (self.csv and self.rows is None):  # (a CSV file's rows are not counted yet)
            return None
        total, unit = self.counted()
        if self.count <= NOT_UTF8_SHARE * total:
            return None
        many = f"{self.count} of its {total} {unit} {'is' if self.count == 1 else 'are'} not UTF-8 ({self.shown()})"
        return NotUtf8(f"{self.error} {many}.", f"{self.error.problem}; {many}")

    def counted(self) -> tuple[int, str]:
        """What the share is of: the file's lines, or a CSV file's rows once counted."""
        return (self.lines, "lines") if self.rows is None else (self.rows, "rows")

    def notice(self, source: str | None, path: Path) -> str:
        """The data stage's warning that the lines are left out, naming the file and the lines;
        ``source`` None: of every source reading the file (a ``where``'s tasks, or several), said once for it
        (the same words from each of its sources)."""
        said = f"Source {source!r}: file" if source is not None else "File"
        whose = "" if source is not None else " of every source reading it"
        total, unit = self.counted()
        one = self.count == 1
        return (f"{said} {shown_path(path)}: {self.count} of {total} {unit} {'is' if one else 'are'} not valid UTF-8 "
                f"({self.shown()}; the first at byte {self.byte}); {'it is' if one else 'they are'} left out{whose}. "
                "If the file was saved in another encoding, re-save it as UTF-8.")


def has_escaped_bytes(text: str) -> bool:
    """Whether ``text``, read with ``errors="surrogateescape"``, holds bytes that are not UTF-8."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def lines_not_utf8(path: Path, source: str, not_utf8: NotUtf8Lines | None = None,
                   delimiter: str | None = None, refuse_header: bool = True) -> NotUtf8Lines:
    """The lines of text file ``path`` that are not UTF-8, as :func:`text_lines` leaves them
    out (read through for them, counted in ``not_utf8`` if given); for a CSV file pandas
    refused as not UTF-8 (``delimiter``, its loader's: counted by rows,
    :func:`count_csv_rows_not_utf8`). ``refuse_header`` False: a first line (a CSV header)
    not UTF-8 is no error, its lines returned uncounted by rows, for the caller to ask
    :meth:`NotUtf8Lines.header_error` (validate, which says it as the file's problem).

    Raises:
        NotUtf8: the file is taken for one in another encoding (a Latin-1 line, too many
        such lines), as :func:`text_lines` refuses it, or its first line (a CSV header) is
        not UTF-8 (unless ``refuse_header`` is False).
        UserError: it cannot be read."""
    not_utf8 = NotUtf8Lines() if not_utf8 is None else not_utf8
    not_utf8.csv = delimiter is not None
    for _ in text_lines(path, source, not_utf8):
        pass
    if (header := not_utf8.header_error()) is not None:
        if not refuse_header:
            return not_utf8
        raise header
    if delimiter is not None:
        count_csv_rows_not_utf8(path, delimiter, not_utf8)
    return not_utf8


def count_csv_rows_not_utf8(path: Path, delimiter: str, not_utf8: NotUtf8Lines) -> None:
    """Count in ``not_utf8`` (:func:`text_lines`' lines of CSV file ``path``, its header UTF-8)
    the file's rows and those holding bytes that are not UTF-8, each named by its first such
    line, read as pandas reads the rows (:func:`csv_record_lines`); then refuse the file, as
    :meth:`NotUtf8Lines.too_many` says, if they are more than :data:`NOT_UTF8_SHARE` of its
    rows. The lines counted it before: a cell spanning ten lines that are not UTF-8 counted
    ten times, and a file of long multi-line cells hid a share of bad rows among its lines.
    A file the csv module cannot read keeps the count of lines (pandas says what is wrong).

    Raises:
        NotUtf8: too many such rows."""
    if not_utf8.count == 0:
        not_utf8.csv = False
        return
    bad: dict[int, int] = {}  # the record (0: the header) -> its first line not UTF-8
    starts = csv_record_lines(path, delimiter, errors="surrogateescape", not_utf8_rows=bad)
    if starts is None:
        not_utf8.csv = False
    else:
        not_utf8.rows, not_utf8.count = len(starts), len(bad) - (0 in bad)
        not_utf8.first = [line for _, line in sorted(bad.items())][:3]
    if (stop := not_utf8.too_many()) is not None:
        raise stop


def text_lines(path: Path, source: str, not_utf8: NotUtf8Lines | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 file, read a line at a time (a leading
    BOM is dropped; a gzip-compressed file is decompressed as it is read).

    Lines are split on newlines only (not on the other characters ``str.splitlines``
    treats as line breaks, which may appear inside JSON strings). A newline byte is never
    part of a multi-byte UTF-8 character, so each line decodes on its own and invalid
    UTF-8 is located exactly (byte offset in the decompressed data, and line). With
    ``not_utf8``, such a line is left out and counted there (the caller warns), unless it
    is the first line of a UTF-16 or doubly compressed file, or reads as Latin-1 text, and
    once the file is read, unless they are too many (:class:`NotUtf8Lines`)."""
    import zlib

    offset = 0
    try:
        handle_of_file = open_decompressed(path)
    except UnsupportedCompression as exc:
        raise UserError(f"Source {source!r}: {exc}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise _unreadable(path, source, exc) from None
    number = 0
    try:
        with handle_of_file as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    head = raw if number == 1 else b""
                    fix, what = not_utf8_fix(head), utf16_note(head) + compressed_again_note(head)
                    latin = not what and looks_cp1252(raw)
                    where = (f"byte {offset + exc.start}, line {number}{what}"
                             f"{'; it reads as Latin-1 (Windows-1252) text there' if latin else ''}")
                    error = NotUtf8(f"Source {source!r}: file {shown_path(path)} is not valid UTF-8 ({where}). "
                                    f"{fix[0].upper()}{fix[1:]}.", f"not valid UTF-8 ({where}): {fix}")
                    if not_utf8 is None or latin or what:
                        raise error from None
                    not_utf8.add(number, offset + exc.start, error)
                    offset += len(raw)
                    continue
                offset += len(raw)
                yield number, text.rstrip("\n")
    except (OSError, EOFError, zlib.error) as exc:
        raise _unreadable(path, source, exc) from None
    if not_utf8 is not None:
        not_utf8.lines = number
        if (stop := not_utf8.too_many()) is not None:
            raise stop


def compressed_again_note(head: bytes) -> str:
    """"; its data is gzip-compressed again ..." for a file whose decompressed bytes
    (``head``) start as a gzip file does (``data.jsonl.gz.gz``, or gzip run twice), else "":
    "not valid UTF-8 (byte 1, line 1)" alone does not say what the bytes are."""
    if head[:2] != GZIP_MAGIC:
        return ""
    return "; its data is gzip-compressed again (compressed twice)"


def not_utf8_fix(head: bytes) -> str:
    """What to do about a file that is not valid UTF-8 whose decompressed bytes start with
    ``head``: decompress once more a file compressed twice (:func:`compressed_again_note`),
    for which "re-save it as UTF-8" is no fix; re-save any other as UTF-8."""
    if head[:2] == GZIP_MAGIC:
        return "decompress it once (gunzip) and read that file"
    return "re-save it as UTF-8"


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

    def add(self, line: int, keys: list[str]) -> None:
        """Count the object on ``line`` naming ``keys`` twice (the first three kept to show)."""
        self.count += 1
        if len(self.first) < 3:
            self.first.append((line, keys))

    def notice(self, source: str, path: Path) -> str:
        """The data stage's warning about them, naming the file, the lines and the keys."""
        shown = "; ".join(f"line {number}: {', '.join(repr(k) for k in keys)}" for number, keys in self.first)
        more = f" (+{self.count - len(self.first)} more)" if self.count > len(self.first) else ""
        rows = count_agreeing(self.count, "row", "names", "name")
        return (f"Source {source!r}: file {shown_path(path)}: {rows} a key twice ({shown}{more}); only the last value "
                "of each such key is read. Remove the duplicate keys, or rename the one meant to be kept too.")


def jq_rows_command(name: str, key: str | None = None) -> str:
    """The ``jq`` command that writes the rows of the JSON file ``name`` (in the current
    folder) as JSON Lines beside it: its array's items, or those of the list under ``key``
    (``{"data": [...]}``). The file names are shell words and a key that is no jq
    identifier is written ``.["my rows"]``, so the command runs as shown for ``my data.json``
    too (the names were pasted in bare, and such a command failed or wrote elsewhere)."""
    under = "" if key is None else (f".{key}" if re.fullmatch(r"[A-Za-z_]\w*", key, re.ASCII)
                                    else f".[{json.dumps(key)}]")
    rows = f"{under}[]" if under else ".[]"
    return f"jq -c {shlex.quote(rows)} {shell_arg(name)} > {shell_arg(Path(name).stem + '.jsonl')}"


def json_document_advice(line: str, written_path: str) -> str:
    """What to do with a "JSON Lines" file whose first line shows it holds one JSON
    document instead, starting with ``line``: an array of examples (Alpaca's
    alpaca_data.json and many others are one array, often pretty-printed) reads with the
    ``huggingface`` loader's ``json`` builder, which takes arrays (offline, from local
    files), or is written as JSON Lines (``jq``: a source_files group, which takes no
    ``huggingface`` loader); an object spread over lines (pretty-printed) is to be written
    one per line.
    "" when the line looks like neither (a line of JSON Lines that is not JSON)."""
    text = line.lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        # a path YAML's flow style would read otherwise (a comma, "#", a space, quotes) is quoted
        shown = written_path if re.fullmatch(r"[\w./\-]+", written_path) else json.dumps(written_path)
        name = Path(written_path).name
        return (f" It holds one JSON array (a .json document), not one object per line: read it with "
                f"loader: {{type: huggingface, path: json, data_files: [{shown}]}}, which takes JSON "
                f"arrays (a source of its own: a source_files group has no such loader), or write it as JSON "
                f"Lines (`{jq_rows_command(name)}`).")
    if text.rstrip() == "{":
        return " It looks like one JSON object spread over lines (pretty-printed): write one object per line."
    return ""


def split_bare_carriage_returns(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """:func:`text_lines`'s lines with a carriage return alone ending a line too, numbered
    as Python's universal newlines number them (a CRLF line stays one line, its CR dropped)."""
    number = 0
    for _, line in lines:
        parts = line.split("\r")
        if len(parts) > 1 and parts[-1] == "":  # the line ended in CR (CRLF, or a CR at the end)
            parts.pop()
        for part in parts:
            number += 1
            yield number, part


#: what to say about a line past the first that starts with a byte-order mark (U+FEFF)
_MID_FILE_BOM = (" The line starts with a byte-order mark (U+FEFF), which a file may have only at its start (as "
                 "when a file saved with one is appended to another): delete those 3 bytes (EF BB BF) there.")


def jsonl_records(path: Path, source: str, duplicates: DuplicateKeys | None = None,
                  written_path: str | None = None, universal_newlines: bool = False,
                  only: Container[int] | None = None,
                  not_utf8: NotUtf8Lines | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON Lines file, a line at a time;
    the lines whose objects (also nested ones) name a key twice go into ``duplicates``.
    ``written_path``: the path as the spec gives it, for the advice on a file that holds
    one JSON document (:func:`json_document_advice`). ``universal_newlines``: a carriage
    return alone ends a line too (:func:`split_bare_carriage_returns`). ``only``: the lines
    to read (a ``where``'s rows, found by :func:`value_rows`); the others are not parsed.
    ``not_utf8``: lines that are not UTF-8 are left out and counted there (:func:`text_lines`)."""
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
    first = True  # the first non-blank line (blank lines may come before it), whose text may show a JSON document
    lines = text_lines(path, source, not_utf8)
    for number, line in split_bare_carriage_returns(lines) if universal_newlines else lines:
        if (only is not None and number not in only) or not line.strip():
            continue
        try:
            # json.loads refuses a BOM that starts a line past the first (decode would say "Expecting value")
            value = json.loads(line) if line.startswith("\ufeff") else decoder.decode(line)
        except json.JSONDecodeError as exc:
            cr_alone = "\r" in line.rstrip("\r")
            raise UserError(
                f"Source {source!r}: file {shown_path(path)}, line {number}: invalid JSON ({json_syntax_error(exc)}). Each line of a .jsonl file must be one JSON object."
                f"{f' Its {CR_ALONE}.' if cr_alone else ''}{_MID_FILE_BOM if line.startswith(chr(0xFEFF)) else ''}"
                f"{json_document_advice(line, written_path or str(path)) if first else ''}"
            ) from None
        except (ValueError, RecursionError) as exc:
            raise UserError(f"Source {source!r}: file {shown_path(path)}, line {number}: {_json_beyond_python(exc)}") from None
        if not isinstance(value, dict):
            raise UserError(
                f"Source {source!r}: file {shown_path(path)}, line {number}: expected a JSON object "
                f'({{"prompt": ..., ...}}), got a JSON {json_kind(value)}.'
                f"{json_document_advice(line, written_path or str(path)) if first else ''}"
            )
        first = False
        if twice:
            if duplicates is not None:
                duplicates.add(number, list(dict.fromkeys(twice)))
            twice.clear()
        yield number, value


def json_kind(value: Any) -> str:
    """What a JSON value that is no object is, in JSON's words (``null``, not Python's
    ``NoneType``; ``string``, not ``str``), a list as ``list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else "list" if isinstance(value, list) else type(value).__name__


def _json_beyond_python(exc: ValueError | RecursionError) -> str:
    """What to say of a JSON Lines line Python's JSON reader refuses for no syntax error
    (``exc``, not a ``JSONDecodeError``): a whole number of more digits than Python turns
    into a number (its advice was ``sys.set_int_max_str_digits()``, to the file's author),
    or lists and objects nested deeper than it reads (valid JSON, called invalid)."""
    if isinstance(exc, RecursionError):
        return ("its JSON is nested deeper than Python's JSON reader goes (thousands of lists or objects one in "
                "another). Flatten that value, or store it as a string.")
    if "integer string conversion" in str(exc):
        return ("it holds a whole number of more digits than Python's JSON reader takes (4,300). Write that "
                "number as a string (in quotes).")
    return f"invalid JSON ({exc}). Each line of a .jsonl file must be one JSON object."


def parse_jsonl(path: Path, source: str) -> list[tuple[int, dict[str, Any]]]:
    """Every (line number, object) of a JSON Lines file (for small files: evals samples).

    A carriage return alone ends a line too, as in Python's universal newlines, with which
    the ``evals`` package reads its own files: one of them (``Chinese_character_riddles``)
    has classic Mac OS line endings, and the user cannot re-save a package's file."""
    rows = list(jsonl_records(path, source, universal_newlines=True))
    if not rows:
        raise UserError(f"Source {source!r}: file {shown_path(path)} is empty. Give a file with at least one row.")
    return rows


@LOADERS.register("jsonl")
def load_jsonl(options: JsonlLoader, ctx: LoadContext) -> Dataset:
    """A local JSON Lines file, one example (a JSON object) per line, read a line at a time."""
    from array import array

    path = _existing_file(options.path, ctx)
    lines = array("q")  # each record's line, for messages (8 bytes a row)
    where, only, memory = _where(path), None, None
    if options.where is not None:  # that value's records, from memory, or its lines only parsed
        where, picked, found = _text_rows_where(options, path, ctx)
        memory = _text_file_in_memory(path, "jsonl", ",", len(found.lines))
        only = frozenset(found.lines[i] for i in picked.tolist()) if memory is None else None

    def fetch(wanted: Any) -> Iterator[tuple[int, dict[str, Any]]]:  # the file read again for these records
        at = iter(wanted.tolist())
        index = next(at, None)
        for number, line in text_lines(path, ctx.source_name, NotUtf8Lines()):  # (those left out, again)
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

    builder = common_columns(options, ctx, where, lambda i: f"line {lines[i]}", fetch=fetch)
    duplicates, not_utf8 = DuplicateKeys(), NotUtf8Lines()
    if memory is not None:
        for i in picked.tolist():
            lines.append(found.lines[i])
            builder.add(memory.records[i])
            if i in memory.twice:
                duplicates.add(found.lines[i], memory.twice[i])
    for number, record in () if memory is not None else jsonl_records(path, ctx.source_name, duplicates,
                                                                       options.path, only=only, not_utf8=not_utf8):
        lines.append(number)
        builder.add(record)
    if builder.count == 0:
        raise UserError(f"Source {ctx.source_name!r}: file {shown_path(path)} is empty. Give a file with at least one row.")
    dataset = builder.finish()
    if memory is not None or only is not None:  # a ``where``'s: the file's lines, said alike by each task's source
        if found.not_utf8 is not None:
            ctx.notices.append(found.not_utf8.notice(None, path))
    elif not_utf8.count:  # (a file other sources read too: said of it, alike by each)
        ctx.notices.append(not_utf8.notice(None if ctx.file_shared else ctx.source_name, path))
    if duplicates.count:
        ctx.notices.append(duplicates.notice(ctx.source_name, path))
    return dataset


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


def csv_record_lines(path: Path, delimiter: str, errors: str = "strict",
                     not_utf8_rows: dict[int, int] | None = None) -> Any:
    """The file line on which each data row of a CSV file starts (the header excluded), as
    an ``array`` of ints, read with the csv module the way pandas reads it (lines holding
    only whitespace are skipped, a line holding a quoted empty cell ``""`` is a row, a
    quoted cell may span lines); None when the csv module cannot read it. The file is
    read a line at a time; ``errors``: as :func:`open`'s (``surrogateescape`` for a file
    some of whose rows are not UTF-8, which ``not_utf8_rows`` then gets: each record holding
    such bytes, numbered from 1 (0: the header), and its first line holding them)."""
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
        with io.TextIOWrapper(open_decompressed(path), encoding="utf-8-sig", newline="", errors=errors) as handle:
            reader = csv.reader(tracked(handle), delimiter=delimiter)
            previous = 0
            for row in reader:
                start, previous = previous + 1, reader.line_num
                first = current.get(start, "")
                escaped = [number for number, line in current.items() if has_escaped_bytes(line)] \
                    if not_utf8_rows is not None else []
                current.clear()
                if len(row) <= 1 and not "".join(row).strip() and '"' not in first:
                    continue  # a blank or whitespace-only line; a quoted empty cell ("") is a row
                if escaped:
                    not_utf8_rows[len(starts)] = min(escaped)  # type: ignore[index]
                starts.append(start)
    except (csv.Error, TypeError, ValueError, OSError, EOFError):  # e.g. a delimiter the csv module refuses
        return None
    finally:
        csv.field_size_limit(limit)
    return starts[1:]


def crlf_lines(path: Path) -> bool:
    """Whether every line of CSV file ``path`` ends with a carriage return and a line feed
    (saved on Windows, or checked out by git with ``autocrlf``): such a conversion turns the
    line breaks inside quoted cells into CRLF too, which :func:`lf_cells` turns back, so that
    a cell reads as in the same file saved with LF line ends. A line feed alone anywhere (a
    file of mixed line ends: rows appended by another program, a header edited on Windows)
    makes it no such file, and its cells are read as written, CRLF and all: which of them
    was a conversion is not known, and an answer is not changed on a guess (the header's line
    end alone decided it before; :func:`mixed_line_ends_notice` says so). A carriage return
    alone (in a cell, or ending a line) is neither. False when it cannot be read (the loader
    says why). From :func:`line_ends`, which reads a file of CRLF lines once a process."""
    found = line_ends(path)
    return found is not None and found.crlf > 0 and found.lf == 0


@dataclass(frozen=True)
class LineEnds:
    """How the lines of a text file end, as :func:`line_ends` counts them: ``crlf`` lines with
    a carriage return and a line feed, ``lf`` with a line feed alone, ``first_crlf`` the first
    CRLF line (1 the first line; 0 none); ``whole``: counted through the file (else up to its
    first line feed alone, no CRLF before it: not a CRLF file, its later lines not counted)."""

    crlf: int
    lf: int
    first_crlf: int
    whole: bool


#: files whose :class:`LineEnds` a process keeps (a few numbers each): a cache of 8 read a
#: 200 MB CRLF file through again for each of the loader, the fingerprint and validate once a
#: spec had more CSV files than that
LINE_ENDS_KEPT = 1 << 16


def line_ends(path: Path, whole: bool = False) -> LineEnds | None:
    """The :class:`LineEnds` of text file ``path`` (decompressed), kept while its size and
    modification time stay (the loader, the fingerprint and validate each ask); ``whole``:
    counted through the file, also when its first lines end with a line feed alone (a file
    whose later lines end with CRLF is one of mixed line ends). None when it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (path.resolve(), stat.st_size, stat.st_mtime_ns)
    found = _line_ends(*key, whole=False)
    if whole and found is not None and not found.whole:
        found = _line_ends(*key, whole=True)
    return found


@functools.lru_cache(maxsize=LINE_ENDS_KEPT)
def _line_ends(path: Path, size: int, mtime_ns: int, whole: bool) -> LineEnds | None:
    """:func:`line_ends` of the file ``path`` with that size and time (the key): its bytes
    read a MB at a time, the line feeds and CRLFs counted by C (a CRLF split between two
    reads counted too); unless ``whole``, stopping at the first line feed alone when no CRLF
    came before it (a file of LF lines: one MB read, not the whole file)."""
    import zlib

    crlf = lf = first = 0
    after_cr = False
    try:
        with open_decompressed(path) as handle:
            while chunk := handle.read(1 << 20):
                joined = after_cr and chunk.startswith(b"\n")  # (a CRLF split between two reads)
                pairs = chunk.count(b"\r\n") + joined
                if pairs and not first:  # its line: the line feeds before it, plus one
                    first = crlf + lf + (0 if joined else chunk.count(b"\n", 0, chunk.index(b"\r\n"))) + 1
                crlf, lf, after_cr = crlf + pairs, lf + chunk.count(b"\n") - pairs, chunk.endswith(b"\r")
                if lf and not crlf and not whole:
                    return LineEnds(crlf, lf, first, whole=False)
    except (OSError, EOFError, zlib.error, UserError):
        return None
    return LineEnds(crlf, lf, first, whole=True)


def mixed_line_ends_notice(path: Path, source: str | None, delimiter: str = ",") -> str | None:
    """The data stage's warning for CSV file ``path`` whose lines end some with CRLF and some
    with a line feed alone (rows appended by another program, a part saved on Windows) and
    one of whose quoted cells spans lines (:func:`csv_cell_spans_lines`), which validate says
    too; None for any other file. Its rows are read alike either way (pandas takes CRLF and LF
    alike as a row's end: no cell keeps a trailing carriage return), so a file none of whose
    cells holds a line break reads as with one line end, and is said nothing of; but a quoted
    cell's line breaks are read as written (:func:`crlf_lines`): CRLF in some cells, LF in
    others. ``source`` None: said of the file alone, for every task a ``where`` reads."""
    found = line_ends(path, whole=True)
    if found is None or not (found.crlf and found.lf) or not csv_cell_spans_lines(path, delimiter):
        return None
    said = f"Source {source!r}: file" if source is not None else "File"
    shown = shell_arg(shown_path(path))
    fix = (f"`zcat {shown} | dos2unix | gzip > fixed.csv.gz`, then put fixed.csv.gz in its place (LF; `unix2dos` "
           "for CRLF)" if first_bytes(path, 2) == GZIP_MAGIC else f"`dos2unix {shown}` (LF; `unix2dos` for CRLF)")
    return (f"{said} {shown_path(path)}: {found.crlf} of its {found.crlf + found.lf} lines "
            f"{'ends' if found.crlf == 1 else 'end'} with CRLF (the first: line {found.first_crlf}), the others "
            "with a line feed (LF) alone: mixed line ends, as when rows are "
            "added by another program or part of the file was saved on Windows. Its rows are read alike either way "
            "(no cell keeps a trailing carriage return), but a quoted cell holds a line break, read as written, "
            "CRLF in some cells and LF in others, which the model sees as different text. Give the file one line "
            f"end: {fix}.")


def csv_cell_spans_lines(path: Path, delimiter: str = ",") -> bool:
    """Whether a quoted cell of CSV file ``path`` holds a line break (a row read by the csv
    module spans more than one line), read up to the first such row, once while the file is
    unchanged (each task a ``where`` reads from a file asks). False when the csv module cannot
    read it (the loader says why)."""
    try:
        stat = path.stat()
    except OSError:
        return False
    return _cell_spans_lines(path.resolve(), delimiter, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=LINE_ENDS_KEPT)
def _cell_spans_lines(path: Path, delimiter: str, size: int, mtime_ns: int) -> bool:
    """:func:`csv_cell_spans_lines` of the file ``path`` with that size and time (the key)."""
    import csv

    try:
        with csv_rows(path, delimiter) as reader:
            previous = 0
            for _ in reader:
                if reader.line_num > previous + 1:
                    return True
                previous = reader.line_num
    except (csv.Error, TypeError, ValueError, OSError, EOFError, UserError):
        return False
    return False


@contextlib.contextmanager
def csv_rows(path: Path, delimiter: str) -> Iterator[Any]:
    """A ``csv.reader`` over CSV file ``path`` (decompressed, a byte-order mark at its start
    dropped, bytes that are not UTF-8 as surrogate escapes), with no limit on a cell's size
    while it is open (a long multi-line cell is no error; the limit is put back after)."""
    import csv

    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(2**31 - 1)
        with io.TextIOWrapper(open_decompressed(path), encoding="utf-8-sig", newline="",
                              errors="surrogateescape") as handle:
            yield csv.reader(handle, delimiter=delimiter)
    finally:
        csv.field_size_limit(limit)


def lf_cells(frame: Any) -> Any:
    """``frame`` (a pandas frame of text cells) with each CRLF inside a cell as LF: the cells
    of a file whose lines end with CRLF (:func:`crlf_lines`) read as those of the same file
    with LF line ends (a JSON Lines file needs none: JSON writes a cell's line break as
    ``\\n``). The frame itself is changed, and returned."""
    for at in range(frame.shape[1]):
        cells = frame.iloc[:, at]
        if cells.str.contains("\r\n", regex=False).any():
            frame.iloc[:, at] = cells.str.replace("\r\n", "\n", regex=False)
    return frame


def csv_text_options(escaped: bool = False) -> dict[str, Any]:
    """``pandas.read_csv``'s options reading a CSV file's cells as the loaders read them: every
    cell as text (an empty one "", not NaN), a UTF-8 byte-order mark dropped; ``escaped``:
    bytes that are not UTF-8 as surrogate escapes, in Python strings (pandas' arrow text
    refuses them), for the second read of a file a strict read failed on."""
    return {"dtype": object if escaped else str, "keep_default_na": False, "encoding": "utf-8-sig",
            "encoding_errors": "surrogateescape" if escaped else "strict"}


def csv_text_frame(frame: Any, crlf: bool) -> Any:
    """A frame :func:`csv_text_options` read, as the loaders hand its rows on: column names as
    text, and a CRLF file's (``crlf``, :func:`crlf_lines`) line breaks inside cells as LF
    (:func:`lf_cells`). The frame itself is changed, and returned."""
    frame.columns = [str(c) for c in frame.columns]
    return lf_cells(frame) if crlf else frame


class _BareCarriageReturns(io.BufferedIOBase):
    """A binary file read through, noting whether it holds a carriage return that no line
    feed follows (``bare``): a line break of old Mac files, which pandas' skipping misreads
    where it ends a blank line (the next row's first character is skipped with it)."""

    def __init__(self, handle: IO[bytes]) -> None:
        super().__init__()
        self.handle, self.bare, self.pending = handle, False, False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._note(self.handle.read(size))

    def read1(self, size: int = -1) -> bytes:
        return self._note(self.handle.read1(size) if hasattr(self.handle, "read1") else self.handle.read(size))

    def _note(self, data: bytes) -> bytes:
        if not self.bare:
            if self.pending and data[:1] != b"\n":  # (the file's end, or another character)
                self.bare = True
            self.pending = data.endswith(b"\r")
            self.bare = self.bare or data.count(b"\r") != data.count(b"\r\n") + self.pending
        return data


def _fetch_skipping(frames: Any, wanted: Any, columns: list[str], count: int) -> list[Any] | None:
    """The records at the ascending record indices ``wanted`` of a CSV file of ``count``
    records, read again with pandas skipping the others (``skiprows``: not converted to
    text, a third of a full read's time), as frames of those records only; None where that
    cannot be sure to give the records a full read gives, which the caller then does.

    pandas numbers what it skips by the header, each record (however many lines its quoted
    cells span) and each blank or whitespace-only line, which a full read leaves out and
    the record indices do not count: numbered by the records alone, they are the same only
    where there is no such line, which the count of numbers asked about says (the header
    and ``count`` records). The frames are kept until the file is read to its end, at most
    :data:`common.CHUNK_ROWS` records (the caller's limit), as much as one frame of a full
    read; on any doubt (other columns, a first column taken as the index, a carriage return
    without a line feed after it, an error) None."""
    import zlib

    import pandas as pd

    keep = {0, *(int(i) + 1 for i in wanted)}
    asked = 0
    read: list[_BareCarriageReturns] = []

    def watched(handle: IO[bytes]) -> IO[bytes]:
        read.append(_BareCarriageReturns(handle))
        return read[-1]  # type: ignore[return-value]

    def skip(number: int) -> bool:
        nonlocal asked
        asked += 1
        return number not in keep

    try:
        found = list(frames(skip, watched))
    except (OSError, EOFError, UnicodeDecodeError, zlib.error, ValueError):  # (pandas' errors are ValueErrors)
        return None
    if any(handle.bare for handle in read) or asked != count + 1 or sum(len(frame) for frame in found) != len(wanted):
        return None
    if any(list(frame.columns) != columns or not isinstance(frame.index, pd.RangeIndex) for frame in found):
        return None
    return found


#: the rows of a CSV file's first frame, whose size sets how many the next ones hold
CSV_FIRST_ROWS = 1_000


def not_csv_text(path: Path, delimiter: str, exc: BaseException) -> str:
    """What pandas' refusal ``exc`` of ``path`` as CSV says to the user (after the source, if
    any): the file, pandas' words on one line (its tokenizer's end with a newline), and what
    to check."""
    problem = " ".join(str(exc).split())
    return (f"file {shown_path(path)} is not valid CSV ({problem}). Check the delimiter (loader.delimiter is "
            f"{delimiter!r}) and the quoting.")


@dataclass
class _StrayCells:
    """Cells of a CSV file holding one character its author hardly meant: the first few
    (line, column), how many, and the lines that repeat the header (a byte-order mark's)."""

    first: list[tuple[int, str]] = dataclass_field(default_factory=list)
    count: int = 0
    headers: list[int] = dataclass_field(default_factory=list)

    def add(self, line: int, column: str) -> None:
        self.count += 1
        if len(self.first) < 3:
            self.first.append((line, column))

    def shown(self) -> str:
        more = f" (+{self.count - len(self.first)} more)" if self.count > len(self.first) else ""
        return "; ".join(f"line {line}, column {column!r}" for line, column in self.first) + more


_BOM = b"\xef\xbb\xbf"


def _holds_stray_bytes(path: Path) -> bool:
    """Whether CSV file ``path`` (decompressed) holds a NUL byte, or a UTF-8 byte-order mark
    past its start: looked for in its bytes, a MB at a time (the C search of ``in``), so that
    only such a file is read again as CSV (:func:`csv_stray_cell_notices`)."""
    import zlib

    try:
        with open_decompressed(path) as handle:
            tail, first = b"", True
            while chunk := handle.read(1 << 20):
                data = tail + chunk
                if first:
                    data, first = data.removeprefix(_BOM), False
                if b"\x00" in chunk or _BOM in data:
                    return True
                tail = data[-2:]
    except (OSError, EOFError, zlib.error, UnsupportedCompression):  # (the loader said why already)
        return False
    return False


def csv_stray_cell_notices(path: Path, delimiter: str, source: str | None) -> list[str]:
    """The data stage's warnings on the cells of CSV file ``path`` that hold a byte-order mark
    (U+FEFF) past the file's start, as when two files saved with one are joined (``cat a.csv
    b.csv``: the second one's header is then read as a row), or a NUL byte (damage, or a file
    that is not text): pandas keeps both in the cell's text, which was trained on silently.
    Kept, and said, naming the line and column of the first few. A file holding neither
    (:func:`_holds_stray_bytes`) is not read again. ``source`` None: said of the file alone,
    for every task a ``where`` reads from it (the same words from each: said once), looked
    for once while the file is unchanged."""
    if source is None:
        stat = path.stat()
        return list(_file_stray_cell_notices(path.resolve(), delimiter, stat.st_size, stat.st_mtime_ns))
    return _stray_cell_notices(path, delimiter, f"Source {source!r}: file {shown_path(path)}")


#: words only the notices of a text file's problems have (lines not UTF-8, stray cells, mixed
#: line ends), said of one source or of the file (:func:`file_notice_worded`)
#: (each count's words: "1 of 11 lines is", "2 of 11 lines are"; a notice kept by an earlier run said "are", "hold"
#: and "end" of one too)
_FILE_PROBLEM_WORDS = ("lines are not valid UTF-8 (", "rows are not valid UTF-8 (", "lines is not valid UTF-8 (",
                       "rows is not valid UTF-8 (", " a byte-order mark (U+FEFF), which a file has only at ",
                       " a NUL byte (", " with CRLF (the first: ")
#: the words of a not-UTF-8 notice said of one source, and of the file: of several lines, of one
_LEFT_OUT = (("; they are left out. ", "; they are left out of every source reading it. "),
             ("; it is left out. ", "; it is left out of every source reading it. "))


def file_notice_worded(notice: str, source: str, path: Path, of_file: bool) -> str:
    """A kept notice of the problem of the file ``path`` that source ``source`` reads (lines
    not UTF-8, stray cells, mixed line ends), worded as a run today words it: of the file where
    ``of_file`` (several sources, or a ``where``'s tasks, read it: :func:`text_file_readers`),
    else of the source. A reused source keeps the words of the run that prepared it, when
    another set of sources read the file: said once by validate in one wording, a run printed
    it again in the other. Any other notice is returned as it is."""
    if not any(words in notice for words in _FILE_PROBLEM_WORDS):
        return notice
    notice = _in_todays_count_words(notice)
    own = f"Source {source!r}: file "
    # (a file's stray cells are said of its resolved path: csv_stray_cell_notices looks once a file)
    stray = " a byte-order mark (U+FEFF), which" in notice or " a NUL byte (" in notice
    shown, resolved = shown_path(path), shown_path(path.resolve()) if stray else shown_path(path)
    if of_file and notice.startswith(own + shown + ":"):
        rest = notice[len(own + shown):]
        for left_out, of_every in _LEFT_OUT:
            rest = rest.replace(left_out, of_every, 1)
        return f"File {resolved}{rest}"
    if not of_file and notice.startswith(f"File {resolved}:"):
        rest = notice[len(f"File {resolved}"):]
        for left_out, of_every in _LEFT_OUT:
            rest = rest.replace(of_every, left_out, 1)
        return f"{own}{shown}{rest}"
    return notice


def _in_todays_count_words(notice: str) -> str:
    """A kept notice of a text file's problem (:func:`file_notice_worded`) in the count words a
    run writes today: an earlier subsetctl wrote "3 cell(s) hold", "1 cell(s) hold ...; they are
    read with it", "1 of 11 lines are not valid UTF-8 ...; they are left out" and "1 of its 6
    lines end with CRLF", which no longer match validate's words for the same problem, so a
    reused source's kept notice was said again beside validate's."""
    if (cells := re.search(r": (\d+) cell\(s\) hold ", notice)) is not None:
        one = cells[1] == "1"
        notice = notice.replace(cells[0], f": {cells[1]} {'cell holds' if one else 'cells hold'} ", 1)
        return notice.replace("; they are read with it", "; the cell is read with it", 1) if one else notice
    if (lines := re.search(r": 1 of [\d,]+ (?:lines|rows) are not valid UTF-8 \(", notice)) is not None:
        notice = notice.replace(lines[0], lines[0].replace(" are not ", " is not "), 1)
        return notice.replace("; they are left out", "; it is left out", 1)
    return re.sub(r"(: 1 of its [\d,]+ lines) end with CRLF \(", r"\1 ends with CRLF (", notice, count=1)


def of_the_target(message: str, name: str) -> str:
    """A loader's message about the target, which loaders word as of any source ("Source
    'gsm8k': ... is a Hugging Face hub dataset id"), said of the target: the spec key to
    change is under ``target``, not ``sources``. The data stage and validate word the
    target's messages so alike (validate said "Source 't'" of a problem of the target's file,
    which a run printed again in the data stage's words)."""
    said = f"Source {name!r}"
    return f"The target {name!r}" + message[len(said):] if message.startswith(said) else message


@functools.lru_cache(maxsize=8)
def _file_stray_cell_notices(path: Path, delimiter: str, size: int, mtime_ns: int) -> tuple[str, ...]:
    """:func:`csv_stray_cell_notices` of the file ``path`` with that size and time (the key),
    said of the file alone."""
    return tuple(_stray_cell_notices(path, delimiter, f"File {shown_path(path)}"))


def _stray_cell_notices(path: Path, delimiter: str, said: str) -> list[str]:
    """:func:`csv_stray_cell_notices`, each notice starting with ``said`` (the source and the
    file, or the file)."""
    import csv

    if not _holds_stray_bytes(path):
        return []
    boms, nuls = _StrayCells(), _StrayCells()
    try:
        # (rows not UTF-8, which the loader leaves out, as surrogate escapes: the others' cells still said)
        with csv_rows(path, delimiter) as reader:
            header = next(reader, [])
            previous = reader.line_num
            for row in reader:
                line, previous = previous + 1, reader.line_num
                for j, cell in enumerate(row):
                    column = header[j] if j < len(header) else f"#{j + 1}"
                    if "\ufeff" in cell:
                        boms.add(line, column)
                    if "\x00" in cell:
                        nuls.add(line, column)
                if row and row[0].startswith("\ufeff") and [row[0][1:], *row[1:]] == header and len(boms.headers) < 3:
                    boms.headers.append(line)
    except (csv.Error, UnicodeDecodeError, ValueError, OSError, EOFError):  # (pandas read it: a doubt, said nothing of)
        return []
    notices = []
    if boms.count:
        lines = ", ".join(str(n) for n in boms.headers)
        repeated = (f" Line {lines} repeats the header: another file's, read as a row." if len(boms.headers) == 1 else
                    f" Lines {lines} repeat the header: other files', read as rows." if boms.headers else "")
        notices.append(f"{said}: {count_agreeing(boms.count, 'cell', 'holds', 'hold')} a byte-order mark (U+FEFF), "
                       f"which a file has only at its start, as when two files are joined (`cat a.csv b.csv`) ({boms.shown()}); "
                       f"{'the cell is' if boms.count == 1 else 'they are'} read with it, as a character of the "
                       f"text.{repeated} Delete those 3 bytes (EF BB BF) there"
                       f"{' and the repeated header lines' if boms.headers else ''}.")
    if nuls.count:
        notices.append(f"{said}: {count_agreeing(nuls.count, 'cell', 'holds', 'hold')} a NUL byte ({nuls.shown()}); "
                       f"{'the cell is' if nuls.count == 1 else 'they are'} read with it, as a character of the "
                       "text. A NUL in a text file is damage, or bytes that are not text: remove them "
                       "(`tr -d '\\000' < in.csv > out.csv`) or fix those cells.")
    return notices


@LOADERS.register("csv")
def load_csv(options: CsvLoader, ctx: LoadContext) -> Dataset:
    """A local CSV file with a header row; every cell is read as text, a chunk of rows at
    a time. Messages name the file line of a row (the header is line 1).

    Chunks are :data:`CHUNK_ROWS` rows, or fewer of long rows (:func:`common.batch_rows`, from the
    size of the last chunk read). Lines are found with :func:`csv_record_lines`,
    only when a message needs one."""
    import zlib
    from array import array

    import pandas as pd

    path = _existing_file(options.path, ctx)
    source = ctx.source_name
    # with ``where``: the file's records of that value (their indices, ascending) and their lines
    where, keep, picked_lines, memory = _where(path), None, None, None
    if options.where is not None:
        where, keep, found_rows = _text_rows_where(options, path, ctx)
        picked_lines = found_rows.lines
        memory = _text_file_in_memory(path, "csv", options.delimiter, len(picked_lines))

    @functools.cache
    def lines() -> Any:  # the line mapping reads the file again, only when a message needs a line
        return csv_record_lines(path, options.delimiter)

    def locate(i: int) -> str:
        if keep is not None:
            return f"line {picked_lines[int(keep[i])]}"
        if escaped:  # rows not UTF-8 left out: the kept rows' records, read so
            return f"line {escaped_lines()[kept[i]]}"
        found = lines()
        if found is None or len(found) != builder.count:  # read differently: count from the header
            return f"line {i + 2}"
        return f"line {found[i]}"

    def not_csv(exc: BaseException) -> UserError:
        return UserError(f"Source {source!r}: {not_csv_text(path, options.delimiter, exc)}")

    crlf = crlf_lines(path)

    @functools.cache
    def escaped_lines() -> Any:  # each record's line, rows not UTF-8 read as surrogate escapes
        found = csv_record_lines(path, options.delimiter, errors="surrogateescape")
        return found if found is not None and len(found) == total else range(2, total + 2)

    def frames(skiprows: Any = None, wrap: Any = None) -> Iterator[Any]:
        # each frame's rows as many as its last one's size allows (common.batch_rows): long rows,
        # a corpus's documents, are then not held 50,000 at a time as Python strings; a CRLF
        # file's cells as the LF file's (lf_cells)
        with open_decompressed(path) as handle:
            reader = pd.read_csv(wrap(handle) if wrap else handle, sep=options.delimiter, iterator=True,
                                 skiprows=skiprows, **csv_text_options(escaped is not None))
            with reader:
                size = min(common.CHUNK_ROWS, CSV_FIRST_ROWS)
                while True:
                    try:
                        frame = reader.get_chunk(size)
                    except StopIteration:
                        return
                    yield csv_text_frame(frame, crlf)
                    size = common.batch_rows(int(frame.memory_usage(deep=True).sum()), len(frame))

    def fetch(wanted: Any) -> Iterator[tuple[int, dict[str, Any]]]:  # the file read again for these records
        import numpy as np  # (records of the file, as the builder numbers those it was given)

        if keep is None and escaped:  # the kept records of the file, rows not UTF-8 left out
            at_records = np.frombuffer(kept, dtype=np.int64)
            return ((int(np.searchsorted(at_records, at)), record)
                    for at, record in fetch_records(at_records[wanted], total))
        if keep is None:
            return fetch_records(wanted, builder.count if builder else 0)
        return ((int(np.searchsorted(keep, at)), record) for at, record in fetch_records(keep[wanted], total))

    def fetch_records(wanted: Any, count: int) -> Iterator[tuple[int, dict[str, Any]]]:  # by the file's records
        found = _fetch_skipping(frames, wanted, columns, count) \
            if plain_index and not delimiter_first and len(wanted) <= common.CHUNK_ROWS else None
        if found is None:
            return _records_at(frames(), wanted, lambda frame, at: frame.iloc[at].to_dict("records"))
        indices = iter(wanted.tolist())
        return ((next(indices), record) for frame in found for record in frame.to_dict("records"))

    if memory is not None:  # that value's records, taken from the file kept in memory
        records = [memory.records[i] for i in keep.tolist()]
        columns = list(records[0])
        builder = common_columns(options, ctx, where, locate, columns,
                                 fetch=lambda wanted: ((i, records[i]) for i in wanted.tolist()))
        builder.add_all(records)
        dataset = builder.finish()
        if found_rows.not_utf8 is not None:  # the file's lines, said alike by each task's source
            ctx.notices.append(found_rows.not_utf8.notice(None, path))
        _note_duplicate_csv_columns(path, options.delimiter, columns, ctx)
        ctx.notices.extend(csv_stray_cell_notices(path, options.delimiter, None))
        _note_mixed_line_ends(path, None, options.delimiter, ctx)
        return dataset
    builder: CommonColumns | None = None
    columns: list[str] = []
    plain_index = True  # every frame numbered its rows (no first column taken as the index)
    # a row whose first cell is empty and another not may begin with the delimiter, which
    # pandas' skipping misreads: after a skipped row ended by a bare carriage return it drops
    # that delimiter (the row's cells move one column left), and a skipped row's quoted second
    # cell is not taken as quoted, so a line break in it ends the row and the rest is read as a
    # row of its own (the rows counted can still match, another row's cells then differ)
    delimiter_first = False
    total = 0  # the file's records read
    # a file some of whose rows are not UTF-8 (found by a first, strict, read failing): read
    # again with those bytes as surrogate escapes, the rows holding any left out (NotUtf8Lines:
    # a few damaged lines, not a file in another encoding); ``kept``: the records kept, by index
    escaped: NotUtf8Lines | None = None if keep is None else found_rows.not_utf8
    kept = array("q")
    while True:
        try:
            for frame in frames():
                columns = list(frame.columns)
                plain_index = plain_index and isinstance(frame.index, pd.RangeIndex)
                if not delimiter_first:
                    first_empty = (frame.iloc[:, 0] == "").to_numpy()
                    delimiter_first = bool(first_empty.any() and (frame[first_empty].iloc[:, 1:] != "").to_numpy().any())
                if builder is None:
                    builder = common_columns(options, ctx, where, locate, columns, fetch=fetch)
                if keep is not None:  # that value's records of this frame (those not UTF-8 in none)
                    here = keep[(keep >= total) & (keep < total + len(frame))] - total
                    total += len(frame)
                    frame = frame.iloc[here]
                elif escaped:  # the rows that are UTF-8
                    good = ~frame.map(has_escaped_bytes).to_numpy().any(axis=1)
                    kept.extend(int(i) + total for i in good.nonzero()[0])
                    total += len(frame)
                    frame = frame[good]
                if not builder.mapping_all:  # only the columns every row is checked for
                    frame = frame[[c for c in builder.fields if c in columns]]
                builder.add_all(frame.to_dict("records"))
            break
        except pd.errors.EmptyDataError:
            raise UserError(
                f"Source {source!r}: file {shown_path(path)} is empty. Give a CSV file with a header "
                "row and at least one example."
            ) from None
        except UnicodeDecodeError:
            if escaped is not None or keep is not None:  # (a ``where``'s rows were found reading it so)
                raise UserError(f"Source {source!r}: file {shown_path(path)} is not valid UTF-8. Re-save it as "
                                "UTF-8.") from None
            escaped = lines_not_utf8(path, source, delimiter=options.delimiter)  # (refused: a Latin-1 line, too many such rows)
            builder, columns, plain_index, delimiter_first, total = None, [], True, False, 0
        except (OSError, EOFError, zlib.error) as exc:  # unreadable, or a gzip file cut short
            raise _unreadable(path, source, exc) from None
        except (pd.errors.ParserError, ValueError) as exc:
            raise not_csv(exc) from None
    if builder is None:  # a header and no rows
        raise UserError(f"Source {source!r}: {_where(path)} has no examples. Give a file with at least one row.")
    dataset = builder.finish()
    # (a ``where``'s, or a file other sources read too: the file's problems, said alike by each source)
    of_source = source if keep is None and not ctx.file_shared else None
    if escaped is not None and escaped.count:
        ctx.notices.append(escaped.notice(of_source, path))
    _note_duplicate_csv_columns(path, options.delimiter, columns, ctx)
    ctx.notices.extend(csv_stray_cell_notices(path, options.delimiter, of_source))  # (a file's: looked for once)
    _note_mixed_line_ends(path, of_source, options.delimiter, ctx)
    return dataset


def text_file_readers(loaders: Iterable[Any], base_dir: Path) -> dict[tuple[Any, ...], list[int]]:
    """The JSON Lines and CSV files that ``loaders`` (the target's and the sources', in order)
    read, each with the positions of the loaders reading it: a file's problems (lines not UTF-8,
    stray cells, mixed line ends) are said once for all its readers, by validate (naming them)
    and by the data stage (of the file, :attr:`~subsetctl.data.loaders.common.LoadContext.
    file_shared`). A file is told by its absolute path, its loader type and delimiter."""
    readers: dict[tuple[Any, ...], list[int]] = {}
    for i, loader in enumerate(loaders):
        if getattr(loader, "type", None) in ("jsonl", "csv"):
            file = (resolve_path(loader.path, base_dir).absolute(), loader.type, getattr(loader, "delimiter", None))
            readers.setdefault(file, []).append(i)
    return readers


def _note_mixed_line_ends(path: Path, source: str | None, delimiter: str, ctx: LoadContext) -> None:
    """The data stage's :func:`mixed_line_ends_notice` of CSV file ``path``, if any, of the
    source ``source`` (None: of the file, for every task a ``where`` reads, said alike by each)."""
    notice = mixed_line_ends_notice(path, source, delimiter)
    if notice is not None and notice not in ctx.notices:
        ctx.notices.append(notice)


def _is_json_type(arrow_type: Any) -> bool:
    """Whether ``arrow_type`` is the ``arrow.json`` extension type (JSON text)."""
    import pyarrow as pa

    return isinstance(arrow_type, pa.BaseExtensionType) and arrow_type.extension_name == "arrow.json"


def json_text_decoder(loads: Callable[[str], Any], scalars_as_text: bool) -> Callable[[Any], Any]:
    """What decodes one JSON-text value with ``loads`` (a value that is no text is kept).
    With ``scalars_as_text`` a number, a boolean or null read so stays its JSON text:
    datasets keeps a string that is valid JSON as that JSON (a message's answer ``"4"`` is
    stored as ``4``)."""
    def decode(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        decoded = loads(value)
        return value if scalars_as_text and not isinstance(decoded, (str, list, dict)) else decoded

    return decode


def list_decoder(item: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """What decodes each item of a list value with ``item``; None when items need none."""
    if item is None:
        return None
    return lambda value: [item(v) for v in value] if isinstance(value, list) else value


def struct_decoder(fields: dict[str, Callable[[Any], Any]]) -> Callable[[Any], Any] | None:
    """What decodes the ``fields`` of a struct (dict) value, each with its decoder, the
    other keys kept; None when no field needs one."""
    if not fields:
        return None
    return lambda value: {key: fields[key](v) if key in fields else v for key, v in value.items()} \
        if isinstance(value, dict) else value


def with_decoded(records: list[dict[str, Any]], columns: dict[str, Callable[[Any], Any]]) -> list[dict[str, Any]]:
    """``records`` with each of ``columns`` (column -> decoder) decoded in place."""
    for record in records if columns else ():  # (most files have no such column: no pass over the rows)
        for column, decode in columns.items():
            if column in record:
                record[column] = decode(record[column])
    return records


def _shortest_float32(value: Any) -> Any:
    """A value of a float32 (or float16) column as the float its shortest text names:
    ``to_pylist`` widens float32 0.1 to 0.10000000149011612, which an answer or label then
    read as that text."""
    import numpy as np

    return value if value is None else float(str(np.float32(value)))


def narrow_float_decoders(schema: Any) -> dict[str, Callable[[Any], Any]]:
    """Decoders (for :func:`with_decoded`) of the float32 and float16 columns of the Arrow
    ``schema``: each value read as the float its shortest float32 text names (0.1, not
    0.10000000149011612; :func:`_shortest_float32`); a float64 column's values are exact as
    they are."""
    import pyarrow as pa

    return {f.name: _shortest_float32 for f in schema
            if pa.types.is_float32(f.type) or pa.types.is_float16(f.type)}


def _json_or_text(text: str) -> Any:
    """``text`` as JSON, or itself where it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _json_decoder(arrow_type: Any, scalars_as_text: bool = False) -> Callable[[Any], Any] | None:
    """What turns a Parquet value of ``arrow_type`` into one with the JSON text of each
    ``arrow.json`` column in it (in lists and structs too) decoded: datasets >= 5 writes a
    column whose values mix types so (a chat's content, text in some messages and a list of
    parts in others, or answers ``42`` and ``"forty"``); ``scalars_as_text``: see
    :func:`json_text_decoder`. None when it has no such column."""
    import pyarrow as pa

    if _is_json_type(arrow_type):
        return json_text_decoder(_json_or_text, scalars_as_text)
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return list_decoder(_json_decoder(arrow_type.value_type, scalars_as_text))
    if pa.types.is_struct(arrow_type):
        return struct_decoder({f.name: decoder for f in arrow_type
                               if (decoder := _json_decoder(f.type, scalars_as_text)) is not None})
    return None


def _repeated_struct_field(arrow_type: Any) -> str | None:
    """A field name that a struct in ``arrow_type`` (at any depth: in lists, maps and
    structs) gives two fields, or None. pyarrow cannot turn such a struct into a dictionary,
    which is how every row is read."""
    import pyarrow as pa

    if pa.types.is_struct(arrow_type):
        names = [f.name for f in arrow_type]
        repeated = next((name for i, name in enumerate(names) if name in names[:i]), None)
        return repeated or next((r for f in arrow_type if (r := _repeated_struct_field(f.type))), None)
    if pa.types.is_map(arrow_type):
        return _repeated_struct_field(arrow_type.key_type) or _repeated_struct_field(arrow_type.item_type)
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return _repeated_struct_field(arrow_type.value_type)
    return None


def json_text_columns(options: Any, kind: str) -> set[str]:
    """The columns whose values a loader reads as text: the prompt's and (causal LM) the
    response's, or ``text_field``'s, not with ``messages_field`` (whose chat column is read as text throughout).
    In them a top-level JSON-text value that is a number, a boolean or null stays that text:
    datasets stores a string that is valid JSON as that JSON, so the answer ``"1.50"`` was
    stored as ``1.50`` (decoded, ``"1.5"``) and the answer ``"null"`` as ``null`` (decoded, a
    row without its answer); a number's JSON text is the number's text anyway."""
    if getattr(options, "messages_field", None) is not None:
        return set()
    if options.text_field is not None:
        return {options.text_field}
    prompt = options.prompt_field
    columns = {prompt} if isinstance(prompt, str) else set(prompt)
    if kind != "classifier" and options.response_field:
        columns.add(options.response_field)
    return columns


@dataclass(frozen=True)
class ValueRows:
    """The rows of a Parquet file by the value of one of its columns (``by``, ``where``):
    ``rows[value]``, the 0-based row numbers holding it (ascending); ``left_out``, how many
    rows hold null or blank text, which make no source."""

    rows: dict[str | int, Any]
    left_out: int


def _picks_rows(arrow_type: Any) -> bool:
    """Whether a column of ``arrow_type`` can pick rows (``by``, ``where``): text or whole
    numbers (dictionary-encoded too). A float's value (0.1 + 0.2) or a date is no task
    name, and written back as a YAML ``where`` it might not pick the same rows."""
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        return _picks_rows(arrow_type.value_type)
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_integer(arrow_type)


def parquet_read_as_text(path: Path, loader_type: str) -> str:
    """"a Parquet file, not JSON Lines (loader.type is jsonl): write `type: parquet`" for a
    Parquet file (its first bytes, ``PAR1``) that a ``jsonl`` or ``csv`` loader would read
    as text; "" for any other file, or one that cannot be opened (its reader says why)."""
    if loader_type not in TEXT_ROW_LOADERS:
        return ""
    try:
        if first_bytes(path, 4) != b"PAR1":
            return ""
    except OSError:
        return ""
    return (f"a Parquet file, not {'CSV' if loader_type == 'csv' else 'JSON Lines'} (loader.type is {loader_type}): "
            "write `type: parquet`")


def value_rows(path: Path, column: str, reader: Any = None) -> ValueRows:
    """:class:`ValueRows` of ``column`` in Parquet file ``path``, reading that column only;
    kept for the process while the file's size and modification time stay (a spec loaded
    again, each of the file's sources in the data stage: one read in all, not one per value).
    ``reader``: the loader options the file is read with (a listed source's loader, a
    group's); a ``jsonl`` or ``csv`` one reads a text file (:class:`TextValueRows`), whose
    rows are its records (0-based, in the file's order); None or a ``parquet`` one, Parquet.

    Raises:
        UserError: the file is not Parquet, lacks the column (naming those it has), names
        it twice, or the column holds neither text nor whole numbers (a text file: as
        :func:`_text_value_rows`)."""
    stat = path.stat()
    kind = getattr(reader, "type", "parquet")
    if kind in TEXT_ROW_LOADERS:
        if advice := parquet_read_as_text(path, kind):  # (read as text, "not valid UTF-8 ... Re-save it as UTF-8")
            raise UserError(f"file {shown_path(path)} is {advice}")
        return _text_value_rows(path.resolve(), column, kind, getattr(reader, "delimiter", ","),
                                stat.st_size, stat.st_mtime_ns)
    return _value_rows(path.resolve(), column, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _value_rows(path: Path, column: str, size: int, mtime_ns: int) -> ValueRows:
    """:func:`value_rows`, cached by the file's size and modification time (the last two)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        if column not in names:
            raise UserError(f"file {shown_path(path)} has no column {column!r} to pick rows by; its columns are "
                            f"{', '.join(map(repr, names))}. Set `by` (or `where`) "
                            "to the column naming each row's task.")
        if names.count(column) > 1:  # (the rows picked and their digests would come from different ones)
            raise UserError(f"file {shown_path(path)} has {names.count(column)} columns named {column!r}, the column that picks "
                            "its rows (`by` or `where`), and which one holds each row's task is not known. Rename "
                            "or drop all but one of them in the file.")
        arrow_type = parquet.schema_arrow.field(column).type
        if not _picks_rows(arrow_type):
            raise UserError(f"column {column!r} of file {shown_path(path)} holds {arrow_type} values; rows are picked by a "
                            "column of text or whole numbers (a task's name or id). Name such a column.")
        values = parquet.read(columns=[column]).column(column).combine_chunks()
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"file {shown_path(path)} could not be read as Parquet ({exc}). Check that it is a Parquet file.") from None
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    blank = pc.is_null(values)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        blank = pc.or_(blank, pc.equal(pc.utf8_trim_whitespace(values), ""))
    blank = blank.fill_null(True).to_numpy(zero_copy_only=False)
    encoded = values.dictionary_encode()
    codes = encoded.indices.fill_null(0).to_numpy()  # (a null row, left out: any code)
    kept = np.flatnonzero(~blank)
    order = kept[np.argsort(codes[kept], kind="stable")]  # row numbers grouped by value, ascending in each
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    dictionary = encoded.dictionary.to_pylist()
    rows = {dictionary[codes[group[0]]]: group for group in np.split(order, bounds) if len(group)}
    return ValueRows(dict(sorted(rows.items())), int(blank.sum()))


def value_digests(path: Path, column: str, reader: Any = None) -> dict[str, str]:
    """The sha256 of each value's rows of Parquet file ``path`` (every column of them, in
    the file's order, with the file's column names and types), keyed by the value as JSON
    (``'"cola"'``, ``'3'``): what one ``where`` source reads, so that its data stage
    fingerprint follows its own rows, not the whole file (another task edited, or added,
    prepares that one again only). Where its rows sit in the file is left out: a task
    whose rows moved (rows added to a task before it) is not prepared again, and its
    warnings, recorded when it was, name the rows where they were then. One read of the
    file, a batch at a time; rows of no value (null, blank) are in no digest.

    ``reader``: as :func:`value_rows`'s; a text file's digests are each value's records
    (as JSON, in the file's order), read with its rows (:func:`_text_value_rows`).

    Raises:
        UserError: as :func:`value_rows` (not Parquet, no such column, a column of other values)."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    found = value_rows(path, column, reader)
    if isinstance(found, TextValueRows):
        return dict(found.digests)
    try:
        parquet = pq.ParquetFile(path)
        schema = str(parquet.schema_arrow.remove_metadata()).encode()
        digests = {value: hashlib.sha256(schema) for value in found.rows}
        for batch in parquet.iter_batches(batch_size=_batch_rows(parquet)):
            for row in batch.to_pylist():
                digest = digests.get(row[column])
                if digest is not None:
                    digest.update(b"\n" + json.dumps(row, ensure_ascii=False, default=repr).encode())
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"file {shown_path(path)} could not be read as Parquet ({exc}). Check that it is a Parquet file.") from None
    return {json.dumps(value): digest.hexdigest() for value, digest in digests.items()}


#: the loaders of text files whose ``where`` (and ``by``) picks rows: their rows are read
#: whole once (:func:`_text_value_rows`), Parquet's by its column
TEXT_ROW_LOADERS = ("jsonl", "csv")


@dataclass(frozen=True)
class TextValueRows(ValueRows):
    """:class:`ValueRows` of a JSON Lines or CSV file (``rows``: its records' indices),
    with the file line each record starts on (``lines``, for messages) and the sha256 of
    each value's records (``digests``, keyed as :func:`value_digests`'s), found in the same read."""

    lines: Any
    digests: dict[str, str]
    #: the file's lines that are not UTF-8, left out of every value's rows (none: None)
    not_utf8: NotUtf8Lines | None = None
    #: the columns empty or only whitespace in every row of a value (values with none left out): a
    #: ``where``'s answers that are, which the data stage stops on, said by validate from the listing
    blank: dict[str | int, list[str]] = dataclass_field(default_factory=dict)


#: the records of a text file looked at for the columns a message lists (a key the rows lack)
TEXT_COLUMNS_LISTED_FROM = 1_000


@functools.lru_cache(maxsize=8)
def _text_value_rows(path: Path, column: str, kind: str, delimiter: str, size: int, mtime_ns: int) -> TextValueRows:
    """:func:`value_rows` of JSON Lines (``kind`` ``jsonl``) or CSV file ``path``, read once
    a record at a time as its loader reads it (:func:`_text_records`), cached by the file's
    size and modification time (the last two) as Parquet's are. A value is compared as
    Parquet's: text, or a whole number (JSON's ``3``; a CSV cell is text, ``"3"``); a row
    without the key, or whose value is null or blank, is left out.

    Raises:
        UserError: the file cannot be read (a line that is no JSON object, not CSV), has no
        rows, no row has the column (naming those it has), or a row's value is neither text
        nor a whole number (naming its line)."""
    import hashlib
    from array import array

    import numpy as np

    records = array("q")  # the records holding a value, in order
    codes = array("q")  # the index in ``found`` of each one's value
    lines = array("q")
    found: dict[str | int, int] = {}
    digests: list[Any] = []
    blank: list[set[str]] = []  # by value's code: the columns blank in each of its rows so far
    keys: dict[str, None] = {}  # the columns of the first records, for a message
    count = left_out = 0
    named = False  # some record has the column
    not_utf8 = NotUtf8Lines()
    for count, record in enumerate(_text_records(path, kind, delimiter, lines, not_utf8=not_utf8), start=1):
        if record is None:  # (a CSV row not UTF-8: in no value's rows)
            continue
        line = lines[-1]
        if count <= TEXT_COLUMNS_LISTED_FROM:
            keys.update(dict.fromkeys(record))
        value = record.get(column)
        named = named or column in record
        if value is None or (isinstance(value, str) and not value.strip()):
            left_out += 1
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise UserError(f"file {shown_path(path)}, line {line}: column {column!r} holds a JSON {json_kind(value)} "
                            f"({json.dumps(value)[:40]}); rows are picked by a column of text or whole numbers (a "
                            "task's name or id). Name such a column, or write each row's value as text.")
        code = found.setdefault(value, len(found))
        if code == len(digests):
            digests.append(hashlib.sha256(kind.encode()))
            blank.append({key for key, cell in record.items() if isinstance(cell, str) and not cell.strip()})
        elif blank[code]:  # (most values' rows have every column given: an empty set, not looked at again)
            blank[code] = {key for key in blank[code] if isinstance(cell := record.get(key), str) and not cell.strip()}
        digests[code].update(b"\n" + json.dumps(record, ensure_ascii=False, default=repr).encode())
        records.append(count - 1)
        codes.append(code)
    if count == 0:
        raise UserError(f"file {shown_path(path)} has no rows to pick by {column!r}. Give a file with at least one row.")
    if not named:
        columns = ", ".join(map(repr, keys)) or "none"
        raise UserError(f"file {shown_path(path)} has no column {column!r} to pick rows by; "
                        f"{'its header names' if kind == 'csv' else 'its rows have the keys'} {columns}. "
                        "Set `by` (or `where`) to the column naming each row's task.")
    indices, by_code = np.frombuffer(records, dtype=np.int64), np.frombuffer(codes, dtype=np.int64)
    order = np.argsort(by_code, kind="stable")  # records grouped by value, ascending in each
    groups = np.split(indices[order], np.flatnonzero(np.diff(by_code[order])) + 1) if len(order) else []
    rows = dict(zip(found, groups))  # (``found`` lists the values in the order of their codes)
    ordered = dict(sorted(rows.items(), key=lambda item: (isinstance(item[0], str), item[0])))  # numbers first
    return TextValueRows(ordered, left_out, lines,
                         {json.dumps(value): digests[found[value]].hexdigest() for value in ordered},
                         not_utf8 if not_utf8.count else None,
                         {value: sorted(blank[found[value]]) for value in ordered if blank[found[value]]})


def _text_records(path: Path, kind: str, delimiter: str, lines: Any, duplicates: DuplicateKeys | None = None,
                  not_utf8: NotUtf8Lines | None = None) -> Iterator[dict[str, Any] | None]:
    """Each record of a JSON Lines (``kind`` ``jsonl``) or CSV file, as its loader reads it
    (a CSV cell as text), a record (a frame of them) at a time; ``lines`` (an ``array``) gets
    the file line each starts on, as messages name it (a CSV row's as :func:`csv_record_lines`
    finds it, or counted from the header where that reads the file otherwise: then known at
    the end only). Messages name the file, not a source (their callers name the source or the group).
    ``duplicates``: as :func:`jsonl_records`'s. Lines that are not UTF-8 are left out as the
    loaders leave them out (:class:`NotUtf8Lines`, counted in ``not_utf8``): a JSON Lines
    line is no record, a CSV row holding such bytes is None (its place kept: the loader
    numbers the file's records as pandas reads them).

    Raises:
        UserError: a line that is no JSON object, a file that is not CSV, not UTF-8 (a
        Latin-1 line, many such lines) or cannot be read."""
    import zlib

    import pandas as pd

    unnamed = "\0"
    not_utf8 = NotUtf8Lines() if not_utf8 is None else not_utf8
    if kind == "jsonl":
        try:
            for line, record in jsonl_records(path, unnamed, duplicates, not_utf8=not_utf8):
                lines.append(line)
                yield record
        except UserError as exc:
            raise UserError(str(exc).removeprefix(f"Source {unnamed!r}: ")) from None
        return
    # (surrogate escapes: a clean file's lines the same; one not UTF-8 still has its rows' lines)
    starts = csv_record_lines(path, delimiter, errors="surrogateescape")
    crlf = crlf_lines(path)  # (its cells read as the loader reads them: lf_cells)
    count = 0
    escaped = False  # read again, rows not UTF-8 as surrogate escapes (found by the strict read failing)
    while True:
        try:
            with open_decompressed(path) as handle, pd.read_csv(
                    handle, sep=delimiter, chunksize=common.CHUNK_ROWS, **csv_text_options(escaped)) as reader:
                read = 0
                for frame in reader:
                    for record in csv_text_frame(frame, crlf).to_dict("records"):
                        read += 1
                        if read <= count:  # (yielded by the strict read)
                            continue
                        lines.append(starts[count] if starts is not None and count < len(starts) else count + 2)
                        count += 1
                        yield None if escaped and any(map(has_escaped_bytes, record.values())) else record
            break
        except pd.errors.EmptyDataError:
            return
        except UnicodeDecodeError:
            if escaped:
                raise UserError(f"file {shown_path(path)} is not valid UTF-8. Re-save it as UTF-8.") from None
            try:
                lines_not_utf8(path, unnamed, not_utf8, delimiter)
            except UserError as exc:  # a Latin-1 line, too many such lines
                raise UserError(str(exc).removeprefix(f"Source {unnamed!r}: ")) from None
            escaped = True
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"file {shown_path(path)} could not be read ({exc}).") from None
        except (pd.errors.ParserError, ValueError) as exc:
            raise UserError(not_csv_text(path, delimiter, exc)) from None
    if starts is None or len(starts) != count:  # read otherwise than pandas reads it: counted from the header
        lines[len(lines) - count:] = type(lines)("q", range(2, count + 2))


#: a JSON Lines or CSV file whose tasks are read one by one (``where``) is kept in memory (its
#: records), read once, when they take at most this many bytes (as a Parquet file's data,
#: :data:`WHOLE_FILE_BYTES`), estimated by :data:`TEXT_ROW_BYTES`; a larger one is read again
#: for each task, parsing only that task's lines (JSON Lines) or keeping only its rows (CSV).
#: 200 tasks of 500 rows (a JSON Lines file of 8 MB) took a data stage of 16 s read again for
#: each task, 3 s kept
WHOLE_TEXT_FILE_BYTES = 512 * 2**20

#: the memory a text file's records take, estimated as twice its text (a gzip-compressed
#: file's counted as 8 times its size) and this many bytes a row: a dict of three short
#: strings a row took 1,400 (139 MB for 100,000 rows of an 8 MB file)
TEXT_ROW_BYTES = 1_500


@dataclass(frozen=True)
class TextRecords:
    """The records of a JSON Lines or CSV file (:func:`_whole_text_file`); ``twice``: those
    (by index) naming a key twice, with the keys (JSON Lines), for the loader's notice."""

    records: list[dict[str, Any] | None]  # (None: a CSV row not UTF-8, left out)
    twice: dict[int, list[str]]


def _text_file_in_memory(path: Path, kind: str, delimiter: str, rows: int) -> TextRecords | None:
    """The records of text file ``path`` of ``rows`` records kept in memory
    (:func:`_whole_text_file`), or None for a file whose records would take more than
    :data:`WHOLE_TEXT_FILE_BYTES` (:data:`TEXT_ROW_BYTES`)."""
    stat = path.stat()
    with open(path, "rb") as handle:
        compressed = handle.read(2) == GZIP_MAGIC
    if 2 * stat.st_size * (8 if compressed else 1) + rows * TEXT_ROW_BYTES > WHOLE_TEXT_FILE_BYTES:
        return None
    return _whole_text_file(path.resolve(), kind, delimiter, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1)
def _whole_text_file(path: Path, kind: str, delimiter: str, size: int, mtime_ns: int) -> TextRecords:
    """The records of JSON Lines or CSV file ``path`` (:func:`_text_records`), kept while its
    size and modification time (the last two) stay: the last such file only, as a group's
    sources come file by file; let go of with Parquet's (:func:`release_whole_file`)."""
    from array import array

    records: list[dict[str, Any] | None] = []
    twice: dict[int, list[str]] = {}
    duplicates = DuplicateKeys()
    for record in _text_records(path, kind, delimiter, array("q"), duplicates):
        if duplicates.first:  # (emptied each time: every such record is kept, not the first three)
            twice[len(records)] = duplicates.first.pop()[1]
        records.append(record)
    return TextRecords(records, twice)


def _text_rows_where(options: JsonlLoader | CsvLoader, path: Path,
                     ctx: LoadContext) -> tuple[str, Any, TextValueRows]:
    """For a JSON Lines or CSV loader's ``where``: how messages name the rows (the file and
    the value), the indices of the file's records holding the value (ascending), and the
    file's :class:`TextValueRows` (its records' lines), from one read of the file for all
    its values (:func:`value_rows`)."""
    assert options.where is not None
    (column, value), = options.where.items()
    try:
        found = value_rows(path, column, options)
    except UserError as exc:
        raise UserError(f"Source {ctx.source_name!r}: {exc}") from None
    assert isinstance(found, TextValueRows)
    rows = found.rows.get(value)
    if rows is None:
        raise _no_rows_where(ctx, path, column, value, options.type)
    return f"file {shown_path(path)} {where_text(options.where)}", rows, found


def _no_rows_where(ctx: LoadContext, path: Path, column: str, value: str | int, kind: str) -> UserError:
    """The error for a ``where`` value no row of the file holds (a CSV file's: a whole
    number, which its cells, text, never are)."""
    text = (f" A CSV cell is text: write the value as text ({column}: '{value}')."
            if kind == "csv" and isinstance(value, int) else "")
    return UserError(f"Source {ctx.source_name!r}: no row of file {shown_path(path)} has {column!r} = {value!r} (loader.where). "
                     "The file may have changed since the spec listed its values: validate the spec again, or "
                     f"correct the value.{text}")


@LOADERS.register("parquet")
def load_parquet(options: ParquetLoader, ctx: LoadContext) -> Dataset:
    """A local Parquet file, read a batch of rows at a time.

    Batches are :data:`CHUNK_ROWS` rows, or fewer of long rows (:func:`_batch_rows`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _existing_file(options.path, ctx)

    def unreadable(exc: BaseException) -> UserError:
        if (compressed := compressed_parquet_problem(path)) is not None:
            return UserError(f"Source {ctx.source_name!r}: file {shown_path(path)} is {compressed}.")
        return UserError(
            f"Source {ctx.source_name!r}: file {shown_path(path)} could not be read as Parquet ({exc}). "
            "Check that it is a Parquet file."
        )

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise unreadable(exc) from None
    if parquet.metadata.num_rows == 0:
        raise UserError(f"Source {ctx.source_name!r}: file {shown_path(path)} is empty (no rows).")
    where, locate, batches = _where(path), one_based_row, None
    if options.where is not None:
        where, locate, batches = _rows_where(options.where, path, parquet, ctx)
    names = parquet.schema_arrow.names
    for field in parquet.schema_arrow:
        if (repeated := _repeated_struct_field(field.type)) is not None:
            raise UserError(
                f"Source {ctx.source_name!r}: column {field.name!r} of {shown_path(path)} holds a struct with two "
                f"fields named {repeated!r}; each row is read as a dictionary, which cannot keep both. "
                "Rename one of the two fields in the file (or drop the column) and run again."
            )

    # columns holding JSON text; of a name the file gives two columns, the last one decides, as
    # to_pylist keeps its values (the first one's decoder was applied to them: a plain "42" read as 42)
    texts = json_text_columns(options, ctx.kind)
    decoders = {f.name: _json_decoder(f.type, f.name == options.messages_field
                                      or (f.name in texts and _is_json_type(f.type)))
                for f in parquet.schema_arrow}
    as_json = {name: decoder for name, decoder in decoders.items() if decoder is not None}
    as_json = {**narrow_float_decoders(parquet.schema_arrow), **as_json}

    def records(batch: Any) -> list[dict[str, Any]]:
        return with_decoded(batch.to_pylist(), as_json)

    def all_batches() -> Iterator[Any]:  # the source's rows (with ``where``, that value's only)
        return parquet.iter_batches(batch_size=_batch_rows(parquet)) if batches is None else batches()

    def fetch(wanted: Any) -> Iterator[tuple[int, dict[str, Any]]]:  # the file read again for these records
        return _records_at(all_batches(), wanted, lambda batch, at: records(batch.take(pa.array(at))))

    builder = common_columns(options, ctx, where, locate, names, fetch=fetch)
    # a name the file gives two columns: the last one, which a record (``to_pylist``) holds
    checked = [len(names) - 1 - names[::-1].index(c) for c in builder.fields if c in names]
    twice = _read_twice(names, builder.fields)
    try:
        for batch in all_batches():
            # past the rows mapped as they come, only the columns every row is checked for
            builder.add_all(records(batch if builder.mapping_all else batch.select(checked)))
        dataset = builder.finish()
    except (pa.ArrowException, OSError) as exc:
        raise unreadable(exc) from None
    except UserError as exc:  # ("row 1: 'prompt' is missing", where the first 'prompt' column holds it)
        raise UserError(f"{exc} {twice}" if twice else str(exc)) from None
    return dataset


def _read_twice(names: list[str], fields: list[str]) -> str:
    """What an error in the rows says of the columns a loader reads (``fields``) that a
    Parquet file names more than once (``names``, its columns): a row holds the last of them
    only, which "row 1: 'prompt' is missing" (where the first ``prompt`` holds the text) does
    not show; "" if none."""
    repeated = [f"{names.count(field)} columns named {field!r}" for field in fields if names.count(field) > 1]
    if not repeated:
        return ""
    return (f"The file has {' and '.join(repeated)}, and each row is read with the last of them only: rename or "
            "drop the others in the file if one of them was meant.")


def compressed_parquet_problem(path: Path) -> str | None:
    """What is wrong with a "Parquet" file that is gzip-compressed (``data.parquet.gz``)
    or compressed otherwise, without the path; None for any other. pyarrow reads a Parquet
    file as it is (its data is compressed inside): it said "Parquet magic bytes not found
    in footer. Either the file is corrupted or this is not a parquet file"."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(10)
    except OSError:
        return None
    named = next((name for magic, (name, _) in OTHER_COMPRESSIONS.items() if head.startswith(magic)),
                 "gzip" if head[:2] == GZIP_MAGIC else "bzip2" if _BZIP2.match(head) else None)
    if named is None:
        return None
    plain = path.name[: -len(path.suffix)] if path.suffix.lower() in (".gz", ".zst", ".xz", ".bz2") else path.name
    return (f"compressed with {named}, and a Parquet file is read as it is (its data is compressed inside): "
            f"decompress it (to {plain}) and point the spec at that file")


def _data_bytes(parquet: Any) -> int:
    """The size of the data of ``parquet`` (a ``pyarrow.parquet.ParquetFile``) uncompressed,
    from its row groups' metadata."""
    meta = parquet.metadata
    return sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))


def _batch_rows(parquet: Any) -> int:
    """How many rows of ``parquet`` (a ``pyarrow.parquet.ParquetFile``) a batch is read in
    (:func:`common.batch_rows`, from the size of its data uncompressed)."""
    return common.batch_rows(_data_bytes(parquet), parquet.metadata.num_rows)


def _rows_where(wanted: dict[str, str | int], path: Path, parquet: Any,
                ctx: LoadContext) -> tuple[str, Callable[[int], str], Callable[[], Iterator[Any]]]:
    """For a Parquet loader's ``where``: how messages name the rows (the file and the value),
    where record i is in the file (its row there), and the batches of those rows alone,
    taken from the whole file kept in memory (:data:`WHOLE_FILE_BYTES`), or read from the
    row groups holding them (a file sorted by task reads each task's groups only). The
    rows' numbers come from :func:`value_rows`, one read of the column per file."""
    import numpy as np
    import pyarrow as pa

    (column, value), = wanted.items()
    try:
        rows = value_rows(path, column).rows.get(value)
    except UserError as exc:
        raise UserError(f"Source {ctx.source_name!r}: {exc}") from None
    if rows is None:
        raise _no_rows_where(ctx, path, column, value, "parquet")
    where = f"file {shown_path(path)} {where_text(wanted)}"
    if _data_bytes(parquet) <= WHOLE_FILE_BYTES:
        stat = path.stat()
        picked = _whole_file(path.resolve(), stat.st_size, stat.st_mtime_ns).take(pa.array(rows))
        return where, lambda i: one_based_row(int(rows[i])), lambda: iter(picked.to_batches(_batch_rows(parquet)))
    starts = np.cumsum([0] + [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)])
    group_of_row = np.searchsorted(starts, rows, side="right") - 1
    groups = np.unique(group_of_row)
    # each row's place in the chosen groups read one after another
    offsets = np.concatenate([[0], np.cumsum(np.diff(starts)[groups])[:-1]])
    local = rows - starts[group_of_row] + offsets[np.searchsorted(groups, group_of_row)]

    def batches() -> Iterator[Any]:
        start = 0
        for batch in parquet.iter_batches(batch_size=_batch_rows(parquet), row_groups=groups.tolist()):
            here = local[(local >= start) & (local < start + len(batch))] - start
            if len(here):
                yield batch.take(pa.array(here))
            start += len(batch)

    return where, lambda i: one_based_row(int(rows[i])), batches


#: a Parquet file whose tasks are read one by one (``where``) is kept in memory, read once,
#: when its data (uncompressed) is at most this many bytes; a larger one is read a row group
#: at a time for each task: a file of one 200,000-row group took 0.3 s per task that way
#: (30 times a task's own file), 0.01 s from memory (as a task's own file) after 1.8 s to read it
WHOLE_FILE_BYTES = 512 * 2**20


def release_whole_file() -> None:
    """Let go of the Parquet file :func:`_whole_file` keeps (up to :data:`WHOLE_FILE_BYTES`),
    and of the text file :func:`_whole_text_file` keeps (:data:`WHOLE_TEXT_FILE_BYTES`):
    the data stage, done reading its sources, calls it so that the stages after it in the same
    process (meta-init, gradients) do not hold the file's rows."""
    _whole_file.cache_clear()
    _whole_text_file.cache_clear()
    _file_stray_cell_notices.cache_clear()


@contextlib.contextmanager
def whole_file_released() -> Iterator[None]:
    """Within it, then :func:`release_whole_file` however it ends: a data stage that fails
    (a bad row of a later source) let go of nothing, and a notebook process kept up to
    :data:`WHOLE_FILE_BYTES` of a file's rows until its next data stage succeeded."""
    try:
        yield
    finally:
        release_whole_file()


@functools.lru_cache(maxsize=1)
def _whole_file(path: Path, size: int, mtime_ns: int) -> Any:
    """The Arrow table of Parquet file ``path``, kept while its size and modification time
    (the last two) stay: the last such file only, as a group's sources come file by file."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read()
