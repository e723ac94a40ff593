"""Rows whose text holds the text of one of the tokenizer's special tokens.

A Hugging Face tokenizer reads the text of a special token (``<|im_end|>``,
``<|endoftext|>``, ``</s>``) inside the text it is given as that token, not as the
characters (``split_special_tokens`` is off unless the tokenizer was saved with it), as
Hugging Face's ``run_clm`` and LLaMA-Factory (its ``split_special_tokens`` off by default)
tokenize data too, where torchtune encodes a text's special-token strings as plain text: a
code file, a chat log or a web
page quoting one teaches the model to emit an EOS or a turn marker mid-text, and a prompt
holding ``<|im_start|>`` breaks the chat template's structure. The tokens stay as they
were (projects computed before stay up to date); the model stages warn once per run, by
source, naming the tokens and the first rows (:meth:`SpecialTextCounts.notices`), so that the
data can be fixed where those strings are meant as text.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import weakref
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from subsetctl.chat_context import CONTEXT_KEY

#: tokenizer -> the pattern finding its special tokens' texts (None: it reads none from text)
_PATTERNS: weakref.WeakKeyDictionary[Any, re.Pattern[str] | None] = weakref.WeakKeyDictionary()

#: rows named in a warning, by source
FIRST_ROWS = 5


def special_token_texts(tokenizer: Any) -> list[str]:
    """The texts the tokenizer reads as one of its special tokens when a text holds them:
    each special (added) token whose text alone tokenizes to that token's id, longest
    first. Empty for a tokenizer saved with ``split_special_tokens`` (it reads them as
    characters) or one without added special tokens."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    candidates = {int(i): str(t.content) for i, t in added.items() if getattr(t, "special", False) and str(t.content)}
    if not candidates:
        return []
    ids, texts = list(candidates), list(candidates.values())
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return sorted((text for i, text, got in zip(ids, texts, encoded) if list(got) == [i]),
                  key=lambda t: (-len(t), t))


def special_text_pattern(tokenizer: Any) -> re.Pattern[str] | None:
    """One pattern finding any of :func:`special_token_texts` (None when there are none);
    found once per tokenizer."""
    try:
        return _PATTERNS[tokenizer]
    except (KeyError, TypeError):
        pass
    texts = special_token_texts(tokenizer)
    pattern = re.compile(_trie_regex(texts)) if texts else None
    try:
        _PATTERNS[tokenizer] = pattern
    except TypeError:  # (an object that takes no weak reference: found each time)
        pass
    return pattern


def _trie_regex(texts: list[str]) -> str:
    """A regex matching any of ``texts`` (the longest where one is another's start), as a
    trie of their characters: a plain alternation tried every text at each ``<`` of an
    HTML or code text (3,000 special tokens: 0.6 s per MB), the trie one path."""
    trie: dict[str, Any] = {}
    for text in texts:
        node = trie
        for char in text:
            node = node.setdefault(char, {})
        node[""] = {}  # a text ends here

    def regex(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + regex(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        if "" in node:  # a shorter text ends here: the longer ones first, then nothing more
            return "(?:" + "|".join(branches) + ")?"
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return regex(trie)


def _row_texts(row: dict[str, Any], pattern: re.Pattern[str]) -> Iterable[str]:
    """The texts of ``row`` the tokenizer reads: its prompt and response, and its chat
    context's messages (parsed only when the metadata holds a special token's text)."""
    yield str(row.get("prompt") or "")
    yield str(row.get("response") or "")
    raw = row.get("metadata")
    if raw and (not isinstance(raw, str) or (CONTEXT_KEY in raw and pattern.search(raw))):
        from subsetctl.errors import UserError
        from subsetctl.modeling.encoding import row_context

        try:
            context = row_context(row)
        except UserError:  # (a malformed context is refused where the row is encoded)
            context = None
        for message in context or ():
            yield str(message["content"])


class SpecialTextCounts:
    """The rows whose text holds a special token's text, by source: how many, which tokens
    (in how many rows each) and the first rows (as the source numbers them)."""

    def __init__(self, tokenizer: Any) -> None:
        self.pattern = special_text_pattern(tokenizer)
        self.rows: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()
        self.tokens: dict[str, Counter[str]] = {}
        self.found_in: dict[str, list[int]] = {}  # the rows found, by their number in the source

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Count ``rows`` (each with its ``source`` and ``row``, its number in the source)."""
        pattern = self.pattern
        for row in rows:
            source = str(row.get("source", "?"))
            self.seen[source] += 1
            if pattern is None:
                continue
            found: set[str] = set()
            for text in _row_texts(row, pattern):
                if text and pattern.search(text):  # (most rows hold none: one scan each)
                    found.update(pattern.findall(text))
            if not found:
                continue
            self.rows[source] += 1
            self.tokens.setdefault(source, Counter()).update(found)
            self.found_in.setdefault(source, []).append(int(row.get("row", -1)))

    def merge(self, other: SpecialTextCounts) -> None:
        """Count what ``other`` counted, as if its rows were added here after those added so
        far (the same notices, in the same order, as :meth:`add` of all the rows)."""
        self.seen.update(other.seen)
        for source, n in other.rows.items():
            self.rows[source] += n
            self.tokens.setdefault(source, Counter()).update(other.tokens[source])
            self.found_in.setdefault(source, []).extend(other.found_in[source])

    def to_json(self) -> dict[str, Any]:
        """What :meth:`from_json` reads back (the tokens in the order first found: ties keep it)."""
        return {"seen": dict(self.seen), **({"rows": dict(self.rows), "tokens": {s: list(c.items()) for s, c in self.tokens.items()},
                                             "found_in": self.found_in} if self.rows else {})}

    @classmethod
    def from_json(cls, tokenizer: Any, data: Any) -> SpecialTextCounts | None:
        """The counts :meth:`to_json` wrote (found with ``tokenizer``'s special tokens);
        None when ``data`` is not of that shape."""
        counts = cls(tokenizer)
        try:
            counts.seen = Counter({str(s): int(n) for s, n in data["seen"].items()})
            counts.rows = Counter({str(s): int(n) for s, n in data.get("rows", {}).items()})
            counts.tokens = {str(s): Counter({str(t): int(n) for t, n in found}) for s, found in data.get("tokens", {}).items()}
            counts.found_in = {str(s): [int(r) for r in rows] for s, rows in data.get("found_in", {}).items()}
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
        if set(counts.rows) != set(counts.tokens) or set(counts.rows) != set(counts.found_in):
            return None
        return counts

    def notices(self, target: str | None = None) -> list[str]:
        """One warning per source with such rows (none when no row has any); ``target``:
        the target's name, which the warning calls the target."""
        out = []
        for source, n in self.rows.items():
            found = self.tokens[source].most_common()
            tokens = (f"token {found[0][0]!r}" if len(found) == 1 else
                      "tokens " + ", ".join(f"{t!r} (in {k:,})" for t, k in found))
            first = sorted(self.found_in[source])[:FIRST_ROWS]
            rows = ", ".join(map(str, first)) + (f" and {n - len(first):,} more" if n > len(first) else "")
            what = "Target" if source == target else "Source"
            out.append(
                f"{what} {source!r}: {n:,} of {self.seen[source]:,} rows ({rows}) {'holds' if n == 1 else 'hold'} "
                f"the text of the tokenizer's special {tokens}. The tokenizer reads each as that control token, not as text, so "
                "the model is trained on it inside a text (a causal LM learns to end a text or a turn there), and a "
                "prompt holding one breaks the chat template's structure. If they are meant as text, remove or rewrite them in "
                "the data (a plugin loader can), then run again."
            )
        return out


#: under the project's state folder: each source's counts, by its prepared data (:class:`CountsCache`)
COUNTS_CACHE_FILE = ("cache", "special_text.json")
#: raised when :meth:`SpecialTextCounts.add` counts otherwise: the counts kept before are not used
COUNTS_VERSION = 1
#: the most sources :class:`CountsCache` keeps besides those of the run (those of the earliest runs dropped first)
OTHER_SOURCES_KEPT = 100_000


class CountsCache:
    """Each source's :class:`SpecialTextCounts`, kept in the project
    (``.subsetctl/cache/special_text.json``, safe to delete) under the digest of its prepared
    files' checksums and the tokenizer's special-token texts: a run that loads the model
    counts again only the sources prepared since (reading every split of 10,000 sources took
    4 s a run). The sources of earlier runs that this one leaves out (a run with a ``sources=``
    override, a source taken out of the spec for a while) are kept too, up to
    :data:`OTHER_SOURCES_KEPT`: only the last run's were, so a full run after a run of a few
    sources read every other source again. Not written where it cannot be (a read-only
    project counts them all each time)."""

    def __init__(self, path: Path, tokenizer: Any) -> None:
        from subsetctl.project import read_json_object

        self.path = path
        self.tokenizer = tokenizer
        pattern = special_text_pattern(tokenizer)
        # the special tokens' texts the counts were found with (thousands of tokens: a long regex), and how
        self.key = (hashlib.sha256(f"{COUNTS_VERSION}:{pattern.pattern}".encode()).hexdigest()
                    if pattern is not None else None)
        held = read_json_object(path) or {}
        sources = held.get("sources")
        self.held: dict[str, Any] = sources if held.get("pattern") == self.key and isinstance(sources, dict) else {}
        self.kept: dict[str, Any] = {}
        self.changed = False

    def kept_counts(self, name: str, files: str | None) -> SpecialTextCounts | None:
        """The counts kept for ``name``'s prepared ``files`` (a digest; kept for this run too),
        or None where there are none to use (``files`` None: not known, counted each time):
        then the caller counts the source's rows and keeps the counts (:meth:`keep`)."""
        entry = self.held.get(name)
        if files is not None and isinstance(entry, dict) and entry.get("files") == files:
            found = SpecialTextCounts.from_json(self.tokenizer, entry.get("counts"))
            if found is not None:
                self.kept[name] = entry
                return found
        return None

    def keep(self, name: str, files: str | None, counted: SpecialTextCounts) -> None:
        """Keep ``counted``, ``name``'s counts just made, under its prepared ``files``."""
        if files is not None:
            self.kept[name] = {"files": files, "counts": counted.to_json()}
        self.changed = True

    def save(self) -> None:
        """Write the counts of this run's sources, then those of the other sources held (by
        when they were last counted), when they differ from the file's."""
        from subsetctl.project import atomic_write_json

        others = [name for name in self.held if name not in self.kept]
        if (not self.changed and len(others) <= OTHER_SOURCES_KEPT) or not self.path.parent.parent.is_dir():
            return  # (nothing new, or no state folder)
        sources = {**self.kept, **{name: self.held[name] for name in others[:OTHER_SOURCES_KEPT]}}
        with contextlib.suppress(OSError):  # a read-only project: counted again next time
            atomic_write_json(self.path, {"pattern": self.key, "sources": sources})

