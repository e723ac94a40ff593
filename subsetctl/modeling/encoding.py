"""Turn (prompt, response) pairs into token tensors with a response mask.

The response mask marks the gold response tokens: the positions whose log-odds make up
the output function f (see :mod:`subsetctl.modeling.outputs`). Prompts are rendered
with the tokenizer's chat template when it has one, and truncated from the *left* when
an example is longer than ``max_length`` so that the response survives.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from subsetctl.chat_context import CONTEXT_KEY, is_chat_context
from subsetctl.errors import UserError
from subsetctl.text_rows import is_text_row


@dataclass
class EncodedExample:
    """One tokenized example: ``input_ids`` and a same-length 0/1 ``response_mask``."""

    input_ids: list[int]
    response_mask: list[int]
    truncated: bool
    answer_cut: bool = False  # the response itself (with its EOS) did not fit
    #: tokens cut from the prompt's left, as tokenized (a text :func:`tokenize_kept` first
    #: cut in characters lost more); not compared: the tokens are the example
    prompt_tokens_cut: int = field(default=0, compare=False)
    #: the cut took only the chat template's text before the prompt's own (its system
    #: prompt), so the prompt is whole; set by :func:`encode_rows`
    within_template: bool = field(default=False, compare=False)
    #: the cut took only a chat's earlier messages (its context, :func:`row_context`) and the
    #: template's text around them, so the last user message is whole; set by :func:`encode_rows`
    within_context: bool = field(default=False, compare=False)


class TruncationCounts:
    """The examples ``max_length`` cut, by source and by what was cut: a cut prompt loses
    context, a cut answer teaches the model answers without their end (and its EOS) and
    without their prompt (:func:`_assemble_causal_lm` keeps one prompt token then). A
    prompt that lost only the chat template's text before it (its default system prompt)
    is counted apart: its own text is whole."""

    def __init__(self) -> None:
        from collections import Counter

        self.preamble_cut: Counter[str] = Counter()  # only the template's text before the prompt
        self.context_cut: Counter[str] = Counter()  # only a chat's earlier messages (the last user message whole)
        self.prompt_cut: Counter[str] = Counter()
        self.answer_cut: Counter[str] = Counter()
        self.text_cut: Counter[str] = Counter()  # a classifier's input, or a text trained on whole, cut at its end
        #: causal-LM examples with no token scored (a text of one token, no BOS before it, no EOS after)
        self.unscored: Counter[str] = Counter()
        self.seen = 0
        #: source -> [examples, tokens kept, most tokens kept, answer tokens scored] (:meth:`by_source`)
        self.lengths: dict[str, list[int]] = {}

    def _tally(self, source: str, tokens: int, scored: int) -> None:
        tally = self.lengths.setdefault(source, [0, 0, 0, 0])
        tally[0] += 1
        tally[1] += tokens
        tally[2] = max(tally[2], tokens)
        tally[3] += scored

    def add(self, encoded: Sequence[EncodedExample], rows: Sequence[dict]) -> None:
        """Count the examples ``encoded`` from ``rows`` (by each row's ``source``)."""
        for example, row in zip(encoded, rows):
            self.seen += 1
            source = str(row.get("source", "?"))
            if not any(example.response_mask):  # left out where it is used: counted apart, not in the lengths
                self.unscored[source] += 1
                self.lengths.setdefault(source, [0, 0, 0, 0])
            else:
                self._tally(source, len(example.input_ids), sum(example.response_mask))
            if example.answer_cut and is_text_row(row):  # a text trained on whole: cut at its end, as it reads
                self.text_cut[source] += 1
            elif example.answer_cut:
                self.answer_cut[source] += 1
            elif example.within_template:
                self.preamble_cut[source] += 1
            elif example.within_context:
                self.context_cut[source] += 1
            elif example.truncated:
                self.prompt_cut[source] += 1

    def add_classifier(self, tokenizer: Any, rows: Sequence[dict], max_length: int) -> None:
        """Count the classifier ``rows`` whose text is longer than ``max_length`` tokens
        (:func:`encode_classifier` cuts it from the right); one extra tokenizer call."""
        if not rows:
            return
        lengths = [len(ids) for ids in tokenizer([str(row["prompt"]) for row in rows])["input_ids"]]
        for length, row in zip(lengths, rows):
            self.seen += 1
            self._tally(str(row.get("source", "?")), min(length, max_length), 0)
            if length > max_length:
                self.text_cut[str(row.get("source", "?"))] += 1

    @property
    def cut(self) -> int:
        """How many examples were cut at all."""
        return sum(sum(counts.values()) for counts in (self.preamble_cut, self.context_cut, self.prompt_cut,
                                                       self.answer_cut, self.text_cut))

    def by_source(self) -> dict[str, dict[str, Any]]:
        """Per source, in the order first seen: its examples counted, the mean and most
        tokens of them as trained (after ``max_length``'s cut), how many ``max_length`` cut
        (in any way, as :meth:`notice` counts them) and, for a causal LM, the mean answer
        tokens scored (f's and the loss's, EOS included). What a user checks against
        ``model.max_length`` when one source is tweets and another books; the gradients
        stage records it for every row and the report shows it. A causal LM's examples with
        no token to score, which the gradients stage and the fine-tunes leave out, are not
        among them: their count is ``no_token_to_score`` (only where there are some; they
        were counted as examples of one token, so the table's rows were not those used)."""
        out: dict[str, dict[str, Any]] = {}
        for source, (n, tokens, most, scored) in self.lengths.items():
            cut = sum(counts[source] for counts in (self.preamble_cut, self.context_cut, self.prompt_cut,
                                                    self.answer_cut, self.text_cut))
            out[source] = {"examples": n, "mean_tokens": round(tokens / max(1, n), 1), "max_tokens": most, "cut": cut,
                           **({"mean_answer_tokens": round(scored / n, 1)} if scored else {}),
                           **({"no_token_to_score": self.unscored[source]} if self.unscored[source] else {})}
        return out

    def unscored_notice(self, examples: str = "examples",
                        counted: tuple[str, str] = ("it carries no loss and no gradient",
                                                    "they carry no loss and no gradient")) -> str | None:
        """One line naming the sources of examples with no token to score, and how many, or
        None when there are none: a text of one token that the tokenizer puts no BOS token
        before and no EOS token after has nothing that predicts or is predicted (its first
        token is never scored), so its f, loss and gradient were 0, counted as such without
        a word. ``examples`` names what was counted, ``counted`` what that means there, said
        of one example and of several (the words agree with the count)."""
        if not self.unscored:
            return None
        n = sum(self.unscored.values())
        shown = ", ".join(f"{name!r}: {count}" for name, count in self.unscored.most_common(5))
        more = f", {len(self.unscored) - 5} more sources" if len(self.unscored) > 5 else ""
        return (f"{n} of {self.seen} {examples} {'has' if n == 1 else 'have'} no token to score ({shown}{more}): "
                f"{'it' if n == 1 else 'each'} is a text of one token, "
                "and the tokenizer puts no BOS token before a text and no EOS token after it, so nothing predicts "
                f"it and it predicts nothing; {counted[0] if n == 1 else counted[1]}. Leave such rows out of the "
                "data, or use a tokenizer with an EOS token.")

    def notice(self, max_length: int, examples: str = "examples", learns: str = "the model learns") -> str | None:
        """One line saying what was cut where, or None when nothing was; ``examples``
        names what was counted ("examples the 40 training steps drew"), ``learns`` what
        reads a cut answer ("the test loss scores" for test rows)."""
        cut = self.cut
        if not cut:
            return None

        def by_source(counts: Any) -> str:
            shown = [f"{name}: {n}" for name, n in counts.most_common(5)]
            return ", ".join(shown) + (f", {len(counts) - 5} more sources" if len(counts) > 5 else "")

        parts = []
        if self.preamble_cut:
            parts.append(f"in {sum(self.preamble_cut.values())} only the chat template's text before the prompt "
                         f"(its system prompt) was cut, the prompt itself is whole ({by_source(self.preamble_cut)})")
        if self.context_cut:
            parts.append(f"in {sum(self.context_cut.values())} only earlier messages of the chat were cut from the "
                         f"left, its last user message is whole ({by_source(self.context_cut)})")
        if self.prompt_cut:
            parts.append(f"in {sum(self.prompt_cut.values())} the prompt was cut from the left "
                         f"({by_source(self.prompt_cut)})")
        if self.text_cut:
            parts.append(f"in {sum(self.text_cut.values())} the text was cut at its end ({by_source(self.text_cut)})")
        if self.answer_cut:
            parts.append(f"in {sum(self.answer_cut.values())} the answer itself was cut and fills max_length alone: "
                         f"{learns} its start without its end, and without its prompt (cut to its last "
                         f"token) ({by_source(self.answer_cut)})")
        return (f"model.max_length={max_length} tokens cut {cut} of {self.seen} {examples}: {'; '.join(parts)}. "
                "Raise model.max_length if the cut parts matter.")


def render_prompt(tokenizer: Any, prompt: str, context: Sequence[dict[str, str]] | None = None) -> str:
    """The text that precedes the response: the chat template's user turn plus the
    generation prompt when the tokenizer has a chat template, else the prompt and a
    newline, after the BOS token if the tokenizer starts every text with one.

    ``context``: a chat's messages before the prompt (``{"role", "content"}`` each, roles
    system, user or assistant; :func:`row_context`), rendered by the template before the
    user turn; a template that refuses a system role (Gemma's) gets the system messages'
    text before the first user message's, with a blank line. Without a template, the
    messages' texts come before the prompt, each followed by a blank line (a system
    message's text before the user's, as a base model reads it).

    Texts are tokenized without special tokens (a template writes its own), so without a
    template the BOS a base Llama or Mistral model was trained to see first was missing,
    and those models are known to be far off without it."""
    if getattr(tokenizer, "chat_template", None):
        if not context:
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return _render_chat(tokenizer, [*context, {"role": "user", "content": prompt}])
    if context:
        return leading_bos_text(tokenizer) + "".join(f"{m['content']}\n\n" for m in context) + prompt + "\n"
    return leading_bos_text(tokenizer) + prompt + "\n"


def _render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """``messages`` with the chat template and its generation prompt; with the system
    messages folded into the first user message when the template refuses them."""
    from jinja2.exceptions import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError as exc:
        refused = exc
    systems = [m["content"] for m in messages if m["role"] == "system"]
    if systems:
        folded = [dict(m) for m in messages if m["role"] != "system"]
        first = next(m for m in folded if m["role"] == "user")  # (the prompt's, at least)
        first["content"] = "\n\n".join([*systems, first["content"]])
        with contextlib.suppress(TemplateError):
            return tokenizer.apply_chat_template(folded, tokenize=False, add_generation_prompt=True)
    roles = ", ".join(m["role"] for m in messages)
    raise UserError(
        f"The model's chat template refuses a chat's messages ({roles}; the last is the prompt): {refused}. "
        "Render such chats in a plugin loader, or leave them out of the data."
    ) from None


#: the metadata key as a row's metadata JSON names it: rows without it are not parsed
_CONTEXT_KEY_JSON = json.dumps(CONTEXT_KEY)


def row_context(row: dict) -> list[dict[str, str]] | None:
    """A row's chat context (``metadata[CONTEXT_KEY]``, written by ``loader.messages_field``
    or a plugin loader), or None: the metadata JSON is parsed only when it names the key.
    A value that is no list of ``{"role", "content"}`` messages is an error naming the row."""
    raw = row.get("metadata")
    if not raw:
        return None
    if isinstance(raw, dict):
        value = raw.get(CONTEXT_KEY)
    else:
        if _CONTEXT_KEY_JSON not in raw:
            return None
        try:
            parsed = json.loads(raw)
        except (TypeError, ValueError, RecursionError):
            return None
        value = parsed.get(CONTEXT_KEY) if isinstance(parsed, dict) else None
    if value is None or value == []:
        return None
    if not is_chat_context(value):
        raise UserError(
            f"Source {row.get('source', '?')!r}, row {row.get('row', '?')}: its metadata's {CONTEXT_KEY!r} is not "
            "a list of {role, content} messages (roles system, user or assistant), which that key holds: the "
            "chat's messages before the prompt. Rename that column, or fix what the loader writes there."
        )
    return [{"role": m["role"], "content": m["content"]} for m in value]


def context_kept_whole(tokenizer: Any, rendered: str, prompt: str, context: Sequence[dict[str, str]],
                       kept_tokens: int) -> bool:
    """Whether the last ``kept_tokens`` tokens of ``rendered`` (``prompt`` rendered after
    ``context``) hold all of the prompt's own text and what the template puts after it, so
    that a cut took only the chat's earlier messages (and the template's text before
    them). False when the template does not copy the prompt verbatim, and without
    tokenizing it when that text is longer than ``kept_tokens`` times
    :data:`CHARS_PER_TOKEN` characters (as :func:`encode_rows` counts a longer prompt
    without a context as cut): a long document after a system message was tokenized whole
    again, row by row."""
    marked = render_prompt(tokenizer, _PROMPT_MARKER, context)
    if marked.count(_PROMPT_MARKER) != 1:
        return False
    before = marked.split(_PROMPT_MARKER)[0]
    if not rendered.startswith(before + prompt):
        return False
    own = rendered[len(before):]
    if len(own) > kept_tokens * CHARS_PER_TOKEN:
        return False
    return kept_tokens >= len(tokenizer(own, add_special_tokens=False)["input_ids"])


#: tokenizer -> the BOS text it starts texts with ("" for none), found once per tokenizer
_LEADING_BOS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def leading_bos_text(tokenizer: Any) -> str:
    """The BOS token's text if ``tokenizer`` puts it before every text it encodes with
    its special tokens (Llama, Mistral, Gemma), else "" (GPT-2, Qwen, SmolLM2)."""
    try:
        return _LEADING_BOS[tokenizer]
    except (KeyError, TypeError):
        pass
    bos, text = getattr(tokenizer, "bos_token_id", None), ""
    if bos is not None and getattr(tokenizer, "bos_token", None):
        with_specials = tokenizer("a")["input_ids"]
        without = tokenizer("a", add_special_tokens=False)["input_ids"]
        if with_specials[:1] == [bos] and without[:1] != [bos]:
            text = _bos_text_read_back(tokenizer, str(tokenizer.bos_token), bos)
    with contextlib.suppress(TypeError):  # (an object that takes no weak reference: found each time)
        _LEADING_BOS[tokenizer] = text
    return text


#: texts a BOS text must tokenize before as the tokenizer's own BOS does (:func:`_bos_text_read_back`)
_BOS_PROBES = ("a", "Hello world", "x\ny z")


def _bos_text_read_back(tokenizer: Any, bos_text: str, bos: int) -> str:
    """The text that, put before a text tokenized without special tokens, gives the ids the
    tokenizer gives it with them: the BOS token itself, or with a space after it where a
    ``Metaspace(prepend_scheme="first")`` pre-tokenizer (Mistral v0.3, Llama converted with
    ``legacy=False``) marks a word start only at the text's very beginning (after the BOS
    text the first word lost its "▁" and became other tokens); "" when neither does (a
    tokenizer with ``split_special_tokens`` reads the BOS text as plain characters), so
    the prompt is then as without the BOS."""
    wanted = []  # each probe's ids with the tokenizer's own BOS (and nothing it adds at the end)
    for probe in _BOS_PROBES:
        without = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
        wanted.append([bos] + without if list(tokenizer(probe)["input_ids"])[: len(without) + 1] == [bos] + without
                      else None)
    for candidate in (bos_text, bos_text + " "):
        if all(w is not None and list(tokenizer(candidate + probe, add_special_tokens=False)["input_ids"]) == w
               for probe, w in zip(_BOS_PROBES, wanted)):
            return candidate
    return ""


#: stands for a prompt when the chat template is rendered to find what it puts before one
_PROMPT_MARKER = "SUBSETCTL-PROMPT-MARKER"


def template_preamble_tokens(tokenizer: Any) -> int:
    """How many tokens the chat template puts before a prompt's own text (a default system
    prompt, the user turn's opening): a prompt cut from the left by fewer tokens keeps all
    of its own text. 0 without a chat template, or when the template does not copy the
    prompt verbatim once (every cut then counts as the prompt's own)."""
    if not getattr(tokenizer, "chat_template", None):
        return 0
    rendered = render_prompt(tokenizer, _PROMPT_MARKER)
    if rendered.count(_PROMPT_MARKER) != 1:
        return 0
    before = rendered.split(_PROMPT_MARKER)[0]
    return len(tokenizer(before, add_special_tokens=False)["input_ids"]) if before else 0


def cut_within_template(tokens_cut: int, preamble_tokens: int) -> bool:
    """Whether cutting ``tokens_cut`` tokens from a rendered prompt's left takes only the
    chat template's text before the prompt (:func:`template_preamble_tokens`), the
    prompt's own text whole. Training, gradients and evaluate's warning decide alike."""
    return 0 < tokens_cut < preamble_tokens


def encode_causal_lm(
    tokenizer: Any, prompt: str, response: str, max_length: int, source: str = "?", row: int = -1,
    context: Sequence[dict[str, str]] | None = None,
) -> EncodedExample:
    """Tokenize one causal-LM example (``context``: the chat's messages before ``prompt``,
    :func:`render_prompt`); the response ends with the EOS token."""
    _refuse_empty_response(response, source, row)
    rendered = render_prompt(tokenizer, prompt, context)
    (prompt_ids,) = tokenize_kept(tokenizer, [rendered], max_length, keep="end")
    (response_ids,) = tokenize_responses(tokenizer, [rendered], [response], max_length)
    return _assemble_causal_lm(tokenizer, prompt_ids, response_ids, max_length)


#: characters of the rendered prompt a response is tokenized after (:func:`tokenize_responses`)
CONTEXT_CHARS = 16


def tokenize_responses(tokenizer: Any, rendered_prompts: Sequence[str], responses: Sequence[str],
                       max_length: int) -> list[list[int]]:
    """Each response's token ids as tokenizing its rendered prompt and it as one text gives
    them: tokenized after the prompt's last :data:`CONTEXT_CHARS` characters, whose own ids
    are then taken off.

    Tokenized alone, a response starts a text, and a SentencePiece-style tokenizer
    (a ``Metaspace`` pre-tokenizer: Llama, Mistral, Gemma) marks a text's first word with
    "▁", a space the whole text does not have after the prompt's newline: the model was
    trained to answer " Paris" (other tokens) where the text reads "Paris". Byte-level BPE
    (GPT-2, Qwen, Llama 3) and character tokenizers give the same ids either way. Where the
    context's ids are not the start of the joined text's (a token across the join), the
    response is tokenized alone, as before. Long responses are cut in characters first as
    :func:`tokenize_kept` cuts them (it does the cutting, counted in the response's own
    tokens: cutting the joined text instead left fewer answer tokens than the margin needs
    where the context took many, 16 emoji: 60 tokens)."""
    if not responses:
        return []
    contexts = [str(p)[-CONTEXT_CHARS:] for p in rendered_prompts]
    return tokenize_kept(tokenizer, list(responses), max_length, keep="start", after=contexts)


def _ids_after(tokenizer: Any, texts: list[str], contexts: list[str] | None) -> list[list[int] | None]:
    """Each text's ids, tokenized alone (``contexts`` None) or after its context with the
    context's own ids taken off; None where those are not the start of the joined text's
    ids (a token across the join)."""
    if contexts is None:
        return [list(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    context_ids = [list(x) for x in tokenizer(contexts, add_special_tokens=False)["input_ids"]] \
        if any(contexts) else [[] for _ in contexts]
    joined = tokenizer([c + t for c, t in zip(contexts, texts)], add_special_tokens=False)["input_ids"]
    out: list[list[int] | None] = []
    for ids, before in zip(joined, context_ids):
        ids = list(ids)
        out.append(ids[len(before):] if ids[:len(before)] == before and len(ids) > len(before) else None)
    return out


def _refuse_empty_response(response: str, source: str, row: int) -> None:
    if not response or not response.strip():
        raise UserError(
            f"Source {source!r}, row {row}: the response is empty. Every training example needs "
            "a gold response; drop or fix that row."
        )


def _assemble_causal_lm(tokenizer: Any, prompt_ids: list[int], response_ids: list[int],
                        max_length: int) -> EncodedExample:
    """Prompt and response tokens as one example of at most ``max_length`` tokens: the
    response gets the EOS token and is kept whole if it fits; the prompt is cut from the
    left to make room."""
    if tokenizer.eos_token_id is not None:
        response_ids = response_ids + [tokenizer.eos_token_id]
    truncated = answer_cut = False
    if len(response_ids) > max_length - 1:
        response_ids = response_ids[: max_length - 1]
        truncated = answer_cut = True
    room = max_length - len(response_ids)
    prompt_tokens_cut = max(0, len(prompt_ids) - room)
    if prompt_tokens_cut:
        prompt_ids = prompt_ids[prompt_tokens_cut:]
        truncated = True
    ids = list(prompt_ids) + list(response_ids)
    mask = [0] * len(prompt_ids) + [1] * len(response_ids)
    if len(prompt_ids) == 0:  # the first token has no prediction; never count it
        mask[0] = 0
    return EncodedExample(ids, mask, truncated, answer_cut, prompt_tokens_cut)


def pad_id(tokenizer: Any) -> int:
    """A usable pad token id (falls back to EOS, then 0, for tokenizers without one)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def collate_causal_lm(examples: Sequence[EncodedExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: ``input_ids``, ``attention_mask``, ``response_mask`` (B, T)."""
    length = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)
    attn = torch.zeros((len(examples), length), dtype=torch.long)
    resp = torch.zeros((len(examples), length), dtype=torch.bool)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        attn[i, :n] = 1
        resp[i, :n] = torch.tensor(e.response_mask, dtype=torch.bool)
    return {"input_ids": ids, "attention_mask": attn, "response_mask": resp}


def encode_classifier(
    tokenizer: Any, texts: Sequence[str], labels: Sequence[int], max_length: int
) -> dict[str, torch.Tensor]:
    """Tokenize a batch of classifier inputs (truncated from the right, padded on the right:
    a tokenizer that pads on the left by default shifted the learned positions of GPT-2 and
    BERT-like models by each batch's padding, so an example's f depended on its batch).
    A tokenizer saved with ``truncation_side: left`` (chat LMs' often are) would cut the
    text's start instead, where the notices say its end is cut; the call takes no
    truncation side, so the tokenizer's is set for it and put back."""
    side = getattr(tokenizer, "truncation_side", "right")
    tokenizer.truncation_side = "right"
    try:
        enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, padding_side="right",
                        return_tensors="pt")
    finally:
        tokenizer.truncation_side = side
    return {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "labels": torch.tensor(list(labels), dtype=torch.long),
    }


#: a text longer than ``max_length`` times this many characters is tokenized only in
#: the part an example can keep (see :func:`tokenize_kept`)
CHARS_PER_TOKEN = 8
#: tokens between the cut and the tokens kept: tokenizers are local (a cut changes the
#: tokens next to it only), so those further in are the whole text's tokens
CUT_MARGIN_TOKENS = 16


def tokenize_kept(tokenizer: Any, texts: list[str], max_length: int, keep: Literal["start", "end"],
                  after: list[str] | None = None) -> list[list[int]]:
    """Token ids of each text, as the whole text's tokenization gives them where it matters.

    An example keeps at most ``max_length`` tokens: a prompt its end, an answer its start
    (:func:`_assemble_causal_lm`). Tokenizing a 100 kB document to keep 128 of its tokens
    was a quarter of the gradients stage's time with long sources, so a text longer than
    ``max_length * CHARS_PER_TOKEN`` characters is cut to that many from the end it keeps,
    first. Its tokens are then the whole text's except next to the cut; the cut is used only
    when it leaves at least ``max_length + CUT_MARGIN_TOKENS`` tokens, so that the tokens an
    example keeps are all away from it (and the text counts as cut, as it is); otherwise
    (unusually long tokens) the whole text is tokenized. ``after``: the text each one
    follows (:func:`tokenize_responses`), tokenized before it and taken off; a text whose
    ids that does not give is tokenized alone."""
    limit = max_length * CHARS_PER_TOKEN
    cut = [(t[-limit:] if keep == "end" else t[:limit]) if len(t) > limit else t for t in texts]
    ids = _ids_after(tokenizer, cut, after)
    redo = [i for i, t in enumerate(texts)
            if len(t) > limit and (found := ids[i]) is not None and len(found) < max_length + CUT_MARGIN_TOKENS]
    if redo:
        whole = _ids_after(tokenizer, [texts[i] for i in redo], None if after is None else [after[i] for i in redo])
        for i, x in zip(redo, whole):
            ids[i] = x
    alone = [i for i, x in enumerate(ids) if x is None]
    if alone:  # (only with ``after``)
        for i, x in zip(alone, tokenize_kept(tokenizer, [texts[i] for i in alone], max_length, keep)):
            ids[i] = x
    return [x if x is not None else [] for x in ids]


def encode_rows(tokenizer: Any, rows: Sequence[dict], kind: str, max_length: int) -> list[Any]:
    """The items a batch is made of: causal-LM rows (dicts with prompt, response, source,
    row) tokenized as :func:`encode_causal_lm` would, one tokenizer call for all prompts
    and one for all responses; classifier rows as they are, checked to have a label,
    since they are tokenized a batch at a time. A text trained on whole
    (:func:`~subsetctl.text_rows.is_text_row`, ``loader.text_field``) is its response after
    only the BOS text the tokenizer starts texts with (:func:`leading_bos_text`), with no
    chat template: every token of it (and its EOS) is in the response mask, but a first
    token no BOS precedes, which nothing predicts; one longer than ``max_length`` keeps its
    start, as a long answer does."""
    if kind == "causal-lm":  # one tokenizer call per column: row by row took 43 s for 200k rows
        responses = [str(row.get("response") or "") for row in rows]
        for i, (row, response) in enumerate(zip(rows, responses)):
            _refuse_empty_response(response, str(row.get("source", "?")), int(row.get("row", i)))
        if not rows:
            return []
        contexts = [row_context(row) for row in rows]
        # a text trained on whole (loader.text_field): no template, no prompt, only the BOS a text starts with
        prompts = [leading_bos_text(tokenizer) if is_text_row(row) else render_prompt(tokenizer, str(row["prompt"]), context)
                   for row, context in zip(rows, contexts)]
        prompt_ids = tokenize_kept(tokenizer, prompts, max_length, keep="end")
        response_ids = tokenize_responses(tokenizer, prompts, responses, max_length)
        encoded = [_assemble_causal_lm(tokenizer, p, r, max_length) for p, r in zip(prompt_ids, response_ids)]
        if any(e.prompt_tokens_cut for e in encoded):
            preamble = template_preamble_tokens(tokenizer)
            limit = max_length * CHARS_PER_TOKEN  # longer texts were cut in characters first: counted as cut
            for example, prompt, row, context in zip(encoded, prompts, rows, contexts):
                if not example.prompt_tokens_cut:
                    continue
                if context is None:
                    example.within_template = cut_within_template(example.prompt_tokens_cut, preamble) and \
                        len(prompt) <= limit
                elif not example.answer_cut:  # (the tokens kept are exact, however the text was cut)
                    kept = len(example.input_ids) - sum(example.response_mask)
                    example.within_context = context_kept_whole(tokenizer, prompt, str(row["prompt"]), context,
                                                                kept)
        return encoded
    for i, row in enumerate(rows):
        label = row.get("label", -1)
        if label is None or int(label) < 0:
            raise UserError(
                f"Source {row.get('source', '?')!r}, row {row.get('row', i)}: a classifier example "
                "needs a label (an integer >= 0). Fix the loader's label column."
            )
    return list(rows)


def make_batch(tokenizer: Any, items: Sequence[Any], kind: str, max_length: int) -> dict[str, torch.Tensor]:
    """One batch of :func:`encode_rows` items: padded tensors, as training, evaluation
    and the gradient engine take them."""
    if kind == "causal-lm":
        return collate_causal_lm(items, pad_id(tokenizer))
    return encode_classifier(
        tokenizer, [str(row["prompt"]) for row in items], [int(row["label"]) for row in items], max_length
    )
