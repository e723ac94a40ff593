"""Counting a text file's non-blank lines a block at a time, not a line at a time.

validate counts the non-blank lines of each JSON Lines file (an upper bound of its rows). Read
as the loaders read it (UTF-8 with or without a BOM, lines ended by ``\\n``, ``\\r\\n`` or a lone
``\\r``, as :class:`io.TextIOWrapper` with ``newline=""`` splits them), a line is blank when
``line.strip()`` is empty (Unicode whitespace: NBSP, U+0085, U+2028 and the others
:meth:`str.isspace` names). Iterating lines in Python took about 10 ms for a 4.4 MB file of
100,000 rows; :func:`count_nonblank_lines` gives the same count from whole blocks of decoded
text in about half that: line ends counted with :meth:`str.count`, blank lines with a regular
expression led by the line end.
"""

from __future__ import annotations

import codecs
import re
from typing import IO

#: bytes read at a time
BLOCK_BYTES = 1 << 22

#: a "\n" (alone or a "\r\n"'s) followed by a line of only whitespace and the line's end, which the
#: lookahead leaves for the next match to begin with: one match a blank line after the first.
#: ``\s`` is :meth:`str.isspace`'s whitespace. (Led by a literal character, the search jumps from
#: one to the next; led by a set of them, it tried every character, seven times slower; and
#: replacing each "\r\n" of a file with "\n" first took twice as long as counting its lines.)
_BLANK_LINE_AFTER_LF = re.compile(r"\n[^\S\r\n]*(?=[\r\n])")
#: the same after a "\r" that ends a line alone
_BLANK_LINE_AFTER_CR = re.compile(r"\r(?!\n)[^\S\r\n]*(?=[\r\n])")
#: a "\r" that ends a line alone
_LONE_CR = re.compile(r"\r(?!\n)")
#: the first line, blank
_BLANK_FIRST_LINE = re.compile(r"[^\S\r\n]*[\r\n]")


def _nonblank_in_whole_lines(text: str, end: int) -> int:
    """The non-blank lines of ``text[:end]``, text that ends with a line end (read without a copy)."""
    ends = text.count("\n", 0, end)
    blank = len(_BLANK_LINE_AFTER_LF.findall(text, 0, end)) + (1 if _BLANK_FIRST_LINE.match(text, 0, end) else 0)
    if text.find("\r", 0, end) >= 0:  # lines ended by a lone "\r" (a "\r\n" is one end: its "\n" counted)
        lone = len(_LONE_CR.findall(text, 0, end))  # (text.count("\r\n") took 4 times as long)
        if lone:  # (none in a CRLF file: no second pass over it for blank lines after them)
            ends += lone
            blank += len(_BLANK_LINE_AFTER_CR.findall(text, 0, end))
    return ends - blank


def count_nonblank_lines(handle: IO[bytes]) -> int:
    """The lines of the bytes ``handle`` reads, decoded as strict UTF-8 with or without a BOM,
    that hold something other than whitespace: ``sum(1 for line in text if line.strip())`` of
    the file opened as ``TextIOWrapper(handle, encoding="utf-8-sig", newline="")``, counted
    a block at a time. Bytes that are not UTF-8 raise :class:`UnicodeDecodeError`, and the
    handle's own errors (a gzip file cut short) pass, as that read raises them."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    count, rest = 0, [""]  # rest: the text after the last line end read, a line that may go on, in pieces
    while block := handle.read(BLOCK_BYTES):
        decoded = decoder.decode(block)
        cut = max(decoded.rfind("\n"), decoded.rfind("\r")) + 1
        if not cut:  # (kept in pieces, joined once: a line of many blocks added to a str each time took O(n^2))
            rest.append(decoded)
            continue
        text = "".join([*rest, decoded])
        cut += len(text) - len(decoded)
        count += _nonblank_in_whole_lines(text, cut)
        rest = [text[cut:]]
    text = "".join(rest) + decoder.decode(b"", final=True)
    cut = max(text.rfind("\n"), text.rfind("\r")) + 1
    return count + _nonblank_in_whole_lines(text, cut) + (1 if text[cut:].strip() else 0)
