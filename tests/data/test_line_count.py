"""count_nonblank_lines: validate's count of a JSON Lines file's non-blank lines, a block at a
time, the same as the line-at-a-time count it replaced for every text."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subsetctl.data import line_count
from subsetctl.data.checks import _jsonl_read_through_of
from subsetctl.data.line_count import count_nonblank_lines
from subsetctl.data.loaders.files import open_decompressed


def _counted_a_line_at_a_time(data: bytes) -> int:
    """The count as validate made it before: the file read as the loaders read it, line by line."""
    with io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="") as handle:
        return sum(1 for line in handle if line.strip())


#: line ends, every character str.isspace names (Unicode's too), and characters that are not
#: whitespace though they look blank or end lines elsewhere (U+200B, U+FEFF, NUL)
_PIECES = ["\n", "\r", "\r\n", "\r\r\n", "\n\r", " ", "\t", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f",
           "\x85", "\xa0", "\u1680", "\u2000", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000",
           "\u200b", "\ufeff", "\x00", "a", "{}", "é", "日本", "\U0001f600"]


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(pieces=st.lists(st.sampled_from(_PIECES), max_size=40), bom=st.booleans(),
       block=st.sampled_from([1, 2, 3, 5, 7, 1 << 22]))
def test_the_count_is_the_line_at_a_time_count_for_any_text(pieces: list[str], bom: bool, block: int) -> None:
    """Any mix of line ends (a "\\r\\n" split between blocks too), whitespace and not, a BOM or
    not, read in blocks of any size (1 byte splits every UTF-8 character)."""
    data = (b"\xef\xbb\xbf" if bom else b"") + "".join(pieces).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(line_count, "BLOCK_BYTES", block)
        assert count_nonblank_lines(io.BytesIO(data)) == _counted_a_line_at_a_time(data)


@pytest.mark.parametrize(("text", "expected"), [
    ("", 0), ("\n", 0), ("{}", 1), ("{}\n{}", 2), ("{}\r{}\r", 2), ("{}\r\n\r\n{}\r\n", 2),
    (" \t\n\xa0\n\u2028\n\x85\n{}\n", 1),  # Unicode whitespace: blank lines
    ("{}\u2028{}\x85{}\n", 1),  # U+2028 and U+0085 end no line (str.splitlines' would)
    ("\u200b\n\ufeff\n", 2),  # not whitespace: U+200B, and a BOM past the file's first bytes
])
def test_what_is_a_line_and_what_is_blank(text: str, expected: int) -> None:
    assert count_nonblank_lines(io.BytesIO(text.encode())) == expected == _counted_a_line_at_a_time(text.encode())


def test_bytes_not_utf8_raise_the_decode_error_the_line_at_a_time_read_raised() -> None:
    data = b'{"a": 1}\n' * 10 + b'{"a": "\xff"}\n'
    with pytest.raises(UnicodeDecodeError):
        _counted_a_line_at_a_time(data)
    with pytest.raises(UnicodeDecodeError):
        count_nonblank_lines(io.BytesIO(data))


def test_a_gzip_file_is_counted_and_one_cut_short_is_said_to_be(tmp_path: Path) -> None:
    """As validate reads a JSON Lines file: decompressed, and a gzip file cut short is its damage."""
    text = "".join(f'{{"row": {i}}}\r\n' + ("  \n" if i % 7 == 0 else "") for i in range(5000))
    whole = tmp_path / "rows.jsonl.gz"
    whole.write_bytes(gzip.compress(text.encode()))
    with open_decompressed(whole) as handle:
        assert count_nonblank_lines(handle) == 5000
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole.read_bytes()[:-200])
    with open_decompressed(cut) as handle, pytest.raises((EOFError, zlib.error)):
        count_nonblank_lines(handle)
    assert _jsonl_read_through_of(whole, 1, 1)[:2] == (5000, None)
    rows, damage, _ = _jsonl_read_through_of(cut, 1, 1)
    assert rows is None and damage is not None and "cut short" in damage


def test_a_line_of_many_blocks_takes_time_linear_in_its_length() -> None:
    """A file of one long line (a JSON array named .jsonl): the text carried from block to block
    was added to a str each time, O(n^2): a 200 MB line took 3.4 s of CPU, the line-at-a-time
    count 0.4 s. 8 MB in blocks of 1 kB copied 32 GB so; kept in pieces, it takes milliseconds."""
    import time

    data = b"[" + b"1," * (4 << 20) + b"1]\n \n"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(line_count, "BLOCK_BYTES", 1 << 10)
        started = time.process_time()
        assert count_nonblank_lines(io.BytesIO(data)) == 1
    assert time.process_time() - started < 2
