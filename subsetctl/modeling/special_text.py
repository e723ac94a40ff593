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

import re
import weakref
from collections import Counter
from collections.abc import Iterable
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
