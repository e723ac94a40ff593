"""Chat-format rows (``loader.messages_field``): a causal LM's example read from a list of
messages, OpenAI-style (``{"role": "user", "content": ...}``) or ShareGPT-style
(``{"from": "human", "value": ...}``), and :func:`common_columns`, which gives a file
loader the :class:`~subsetctl.data.loaders.common.CommonColumns` for its options.

A row is a conversation that ends with the assistant's answer, a user message just before
it. A message's text is its ``content`` (``value``): a string, or a list of OpenAI-style
content parts that are all text (``{"type": "text", "text": ...}``, the Responses API's
``input_text`` and ``output_text`` parts, or plain strings),
their texts joined with nothing between them (see :func:`_parts_text`); a row with any
other part (an image, audio, a file) is left out. The response is the answer's text, the
prompt the user message's text, and the messages before that one (system messages,
earlier user and assistant turns, roles as system, user and assistant) go into the row's
metadata under :data:`CONTEXT_KEY` as ``[{"role": ..., "content": ...}, ...]``, contents
as text (none for a single-turn chat without a system message; blank system messages are
dropped). The prompt stays plain text: the model's
chat template is applied to the context and it later, as to every prompt
(:func:`subsetctl.modeling.encoding.render_prompt`). Rows that are no such conversation
are left out, counted, with one notice per kind of problem; a source all of whose rows are
left out is an error that says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING, Any

from subsetctl.chat_context import CONTEXT_KEY
from subsetctl.data.loaders.common import (
    CommonColumns,
    LoadContext,
    _check_context_utf8,
    _named,
    _required_fields,
)
from subsetctl.errors import UserError
from subsetctl.spec import LoaderBase

if TYPE_CHECKING:
    from datasets import Dataset

#: each role as a message may name it (OpenAI's ``role`` or ShareGPT's ``from``), by what it is here;
#: OpenAI's ``developer`` messages (its reasoning models' and the Responses API's) are its system messages
ROLES = {"system": "system", "developer": "system", "user": "user", "human": "user", "assistant": "assistant",
         "gpt": "assistant"}

#: what a notice says of the rows left out for each kind of problem (:class:`NotAChat`'s ``kind``)
NO_MESSAGES = "not a list of messages"
NOT_ANSWERED = "last message not the assistant's"
NO_USER = "no user message just before the answer"
NOT_ALTERNATING = "turns that do not alternate"
NOT_TEXT_PARTS = "content parts that are not text"
# the types of a content part that is text: the Chat Completions API's, and the Responses
# API's for a user's (input) and an assistant's (output) text
TEXT_PART_TYPES = ("text", "input_text", "output_text")


class NotAChat(ValueError):
    """A row's messages are not a conversation ending with a user message and the
    assistant's answer. ``kind`` is one of :data:`NO_MESSAGES`, :data:`NOT_TEXT_PARTS`,
    :data:`NOT_ANSWERED`, :data:`NO_USER`, :data:`NOT_ALTERNATING` (the rows left out are
    counted by it), ``detail`` what is wrong with this row."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def _message(message: Any, n: int) -> tuple[str, str]:
    """(role: system, user or assistant; text) of a chat's message ``n`` (0-based)."""
    if not isinstance(message, dict):
        raise NotAChat(NO_MESSAGES, f"message {n + 1} is a {type(message).__name__}, not an object")
    # (a Parquet struct column holding both styles has all four keys, the unused ones null)
    role = message.get("role") if message.get("role") is not None else message.get("from")
    text = message.get("content") if message.get("content") is not None else message.get("value")
    if not isinstance(role, str) or role.strip().lower() not in ROLES:
        raise NotAChat(NO_MESSAGES, f"message {n + 1} has the role {role!r}, not system (developer), user "
                                      "(human) or assistant (gpt)")
    if isinstance(text, (list, tuple)):  # OpenAI's content parts ([{"type": "text", "text": ...}, ...])
        text = _parts_text(text, n)
    elif isinstance(text, dict):
        raise NotAChat(NO_MESSAGES, f"message {n + 1} has a dict as content, not text or a list of text parts")
    if not isinstance(text, str):
        raise NotAChat(NO_MESSAGES, f"message {n + 1} has no text content (content or value)")
    return ROLES[role.strip().lower()], text


def _parts_text(parts: list[Any] | tuple[Any, ...], n: int) -> str:
    """The text of message ``n``'s content given as parts (OpenAI's ``[{"type": "text",
    "text": ...}, ...]``, the Responses API's ``input_text`` and ``output_text`` parts
    alike, or plain strings): their texts joined with nothing between them, as the OpenAI
    SDK joins a response's text parts (``Response.output_text``) and as chat templates
    that take parts (Qwen2-VL's, Llama 3.2 Vision's) write them; no parts is
    no text. Keys other than ``type`` and ``text`` are not looked at (a Parquet struct
    column gives each part every key its rows' parts have, those unused null). Raises
    :class:`NotAChat` (:data:`NOT_TEXT_PARTS`) for a part that is not text (an image,
    audio, a file, a refusal: the row cannot be read as text alone) or whose text is no
    string."""
    texts = []
    for k, part in enumerate(parts):
        where = f"message {n + 1}'s content part {k + 1}"
        if isinstance(part, str):
            texts.append(part)
        elif not isinstance(part, dict):
            raise NotAChat(NOT_TEXT_PARTS, f"{where} is a {type(part).__name__}, not a part")
        elif part.get("type") not in TEXT_PART_TYPES:
            raise NotAChat(NOT_TEXT_PARTS, f"{where} has the type {part.get('type')!r}, not a text part's "
                                            f"({', '.join(TEXT_PART_TYPES)})")
        elif not isinstance(part.get("text"), str):
            raise NotAChat(NOT_TEXT_PARTS, f"{where} (type {part['type']!r}) has no text")
        else:
            texts.append(part["text"])
    return "".join(texts)


def read_chat(messages: Any) -> tuple[list[dict[str, str]], str, str]:
    """(context, prompt, response) of a chat: the messages before the last user message
    (``{"role", "content"}`` each, roles as system, user or assistant), that message's
    text, the last message's text (the assistant's). Blank system messages are left out
    before anything else is looked at (one between turns does not break their order).
    Raises :class:`NotAChat` for anything else."""
    if not isinstance(messages, (list, tuple)) or not messages:
        shown = "an empty list" if isinstance(messages, (list, tuple)) else f"a {type(messages).__name__}"
        raise NotAChat(NO_MESSAGES, f"the value is {shown}")
    read = [_message(message, n) for n, message in enumerate(messages)]
    # (number in the chat, role, text), the number kept for the details of rows left out
    turns = [(n + 1, role, text) for n, (role, text) in enumerate(read) if role != "system" or text.strip()]
    last_role, response = turns[-1][1:] if turns else read[-1]
    if last_role != "assistant":
        raise NotAChat(NOT_ANSWERED, f"the last message is the {last_role}'s")
    if len(turns) < 2 or turns[-2][1] != "user":
        before = f"the {turns[-2][1]}'s" if len(turns) > 1 else "none"
        raise NotAChat(NO_USER, f"the message before the answer is {before}, not the user's")
    _check_alternating(turns)
    context = [{"role": role, "content": text} for _, role, text in turns[:-2]]
    return context, turns[-2][2], response


def _check_alternating(turns: list[tuple[int, str, str]]) -> None:
    """Raise :class:`NotAChat` unless ``turns`` ((number, role, text) each) are system
    messages first, then user and assistant messages by turns, the user's first: many chat
    templates (Llama 2's, Mistral's, Gemma's) refuse any other order, which would stop a
    run at meta-init instead of leaving the row out here."""
    start = next(i for i, (_, role, _) in enumerate(turns) if role != "system")  # (the last is the assistant's)
    for i, (number, role, _) in enumerate(turns[start:]):
        wanted = "user" if i % 2 == 0 else "assistant"
        if role != wanted:
            raise NotAChat(NOT_ALTERNATING, f"message {number} is the {role}'s where the {wanted}'s comes "
                                            "(system messages first, then user and assistant by turns)")


@dataclass
class _LeftOut:
    """Rows left out for one kind of problem: how many, the first few, and the first one's detail."""

    count: int = 0
    first: list[int] = dataclass_field(default_factory=list)
    detail: str = ""


class ChatColumns(CommonColumns):
    """:class:`CommonColumns` for rows whose ``messages_field`` holds a chat (see the
    module): its rules (a missing or null value is an error, a blank answer is left out,
    an empty prompt is said, the seeded draw) apply to the prompt and response
    :func:`read_chat` reads from it, the messages before them going into the metadata
    (:data:`CONTEXT_KEY`), and rows it refuses are left out by kind. A row with a key of
    its own named :data:`CONTEXT_KEY` (a column, or a key of its ``metadata`` object) is
    an error: it would be read as the chat's earlier messages."""

    def __init__(self, messages_field: str, ctx: LoadContext, where: str, locate: Callable[[int], str],
                 available: Iterable[str] | None = None,
                 fetch: Callable[[Any], Iterable[tuple[int, dict[str, Any]]]] | None = None) -> None:
        super().__init__(messages_field, messages_field, "messages_field", ctx, where, locate, available,
                         fetch=fetch)
        self.prompt_option = "messages_field"
        self.refused: dict[str, _LeftOut] = {}
        self.context: list[dict[str, str]] = []  # the context of the record :meth:`_texts` read last

    @property
    def left_out_count(self) -> int:
        """Rows left out: those with a blank answer or text that is not UTF-8, and those that are no chat."""
        return super().left_out_count + sum(kind.count for kind in self.refused.values())

    def _map(self, i: int, record: dict[str, Any]) -> None:
        try:
            super()._map(i, record)
        except NotAChat as exc:
            left_out = self.refused.setdefault(exc.kind, _LeftOut(detail=exc.detail))
            left_out.count += 1
            if len(left_out.first) < 5:
                left_out.first.append(i)
            return

    def _check_more_text(self, record: dict[str, Any], locate: Callable[[], str]) -> None:
        """The earlier messages (read with the prompt by :meth:`_texts`), checked as the prompt
        is (a row's own :data:`CONTEXT_KEY` is refused, by :meth:`_more_metadata`)."""
        _check_context_utf8(self.context, self.ctx.source_name, self.where, locate, self.prompt_field)

    def _count_structured(self, i: int, values: dict[str, Any]) -> None:
        """Nothing: a list of messages is what the column holds."""

    def _texts(self, record: dict[str, Any]) -> tuple[str, str]:
        """The prompt and the answer; the context is kept for :meth:`_digest` and
        :meth:`_more_metadata`, which follow for the same record."""
        self.context, prompt, answer = read_chat(record[self.prompt_field])
        return prompt, answer

    def _digest(self, prompt: str, answer: str) -> int:
        return hash((prompt, answer, tuple((m["role"], m["content"]) for m in self.context)))

    def _more_metadata(self, i: int, extra: dict[str, Any]) -> None:
        if CONTEXT_KEY in extra:
            raise UserError(
                f"Source {self.ctx.source_name!r}: {self.where}, {self.locate(i)}: the row has a key of its own "
                f"named {CONTEXT_KEY!r} (a column, or a key of its metadata), the name under which a chat's "
                f"earlier messages are kept with {_named(self.prompt_field, self.prompt_option)}. Rename that "
                "column (or drop it), or read the chats in a plugin loader."
            )
        if self.context:
            extra[CONTEXT_KEY] = self.context

    def _answer_named(self) -> str:
        """The chat's last message: the column itself is not empty."""
        return f"assistant's answer in {_named(self.prompt_field, self.prompt_option)}"

    def _prompt_named(self) -> str:
        return f"user message in {_named(self.prompt_field, self.prompt_option)}"

    def _shown(self, left_out: _LeftOut) -> str:
        more = left_out.count - len(left_out.first)
        return ", ".join(self.locate(i) for i in left_out.first) + (f" (+{more} more)" if more > 0 else "")

    def finish(self) -> Dataset:
        """The dataset of the chats, with a notice for each kind of row left out; an error
        that says why when no row is left."""
        named, source = _named(self.prompt_field, self.prompt_option), self.ctx.source_name
        if self.error is None and self.refused and self.usable == 0:
            why = "; ".join(f"{kind.count} {what} (first at {self.locate(kind.first[0])}: {kind.detail})"
                            for what, kind in self.refused.items())
            blank = f"; {self.blank_count} with an empty answer" if self.blank_count else ""
            raise UserError(
                f"Source {source!r}: {self.where}: no row has a chat in {named} ({why}{blank}). Each row needs a "
                "list of messages ({role, content} or ShareGPT's {from, value}, each content text or a list of "
                "text parts) that ends with a user message and the assistant's answer, any system messages and "
                "earlier turns before them. Check loader.messages_field, or render the chats in a plugin loader."
            )
        dataset = super().finish()
        for what, kind in self.refused.items():
            self.ctx.notices.append(
                f"Source {source!r}: {self.where}: {kind.count} of {self.count} rows "
                f"{'is' if kind.count == 1 else 'are'} left out, {'its' if kind.count == 1 else 'their'} {named} "
                f"being no chat: {what} ({self._shown(kind)}; the first: {kind.detail}). Each row needs a list of "
                "messages ({role, content} or ShareGPT's {from, value}, each content text or a list of text parts) "
                "ending with a user message and the assistant's answer."
            )
        return dataset


def common_columns(options: LoaderBase, ctx: LoadContext, where: str, locate: Callable[[int], str],
                   available: Iterable[str] | None = None,
                   fetch: Callable[[Any], Iterable[tuple[int, dict[str, Any]]]] | None = None) -> CommonColumns:
    """The :class:`CommonColumns` a file loader with ``options`` feeds its records to: a
    :class:`ChatColumns` with ``messages_field`` (causal LMs only), a
    :class:`~subsetctl.data.loaders.text.TextColumns` with ``text_field`` (causal LMs only),
    else one reading the prompt and the answer column the model kind needs."""
    from subsetctl.data.loaders.text import TextColumns, reads_text_lines

    if getattr(options, "text_field", None) is not None:
        return TextColumns(options.text_field, ctx, where, locate, available, fetch, reads_text_lines(options))
    messages_field = getattr(options, "messages_field", None)
    if messages_field is None:
        answer_option, answer_field = _required_fields(options, ctx)
        return CommonColumns(options.prompt_field, answer_field, answer_option, ctx, where, locate, available,
                             fetch=fetch, written=options.model_fields_set)
    if ctx.kind == "classifier":
        raise UserError(
            f"Source {ctx.source_name!r}: loader.messages_field is for a causal LM's chats, but model.kind is "
            "classifier. Name the text column with loader.prompt_field and the class with loader.label_field."
        )
    return ChatColumns(messages_field, ctx, where, locate, available, fetch)
