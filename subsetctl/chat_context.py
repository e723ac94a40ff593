"""A chat's context: its messages before the prompt (system messages, earlier user and
assistant turns), kept in a prepared row's metadata under :data:`CONTEXT_KEY` by
``loader.messages_field`` (or a plugin loader) and rendered before the prompt by the model
stages (:func:`subsetctl.modeling.encoding.render_prompt`).

One module for what both sides must agree on, the key and the shape of its value; it
imports nothing, so the data loaders need not load the model code (torch) for it, nor the
model code the loaders and the spec."""

from __future__ import annotations

from typing import Any

#: the metadata key of a chat's messages before its prompt (``[{"role", "content"}, ...]``)
CONTEXT_KEY = "chat_context"

#: the roles a chat context's messages have
CONTEXT_ROLES = frozenset({"system", "user", "assistant"})


def is_chat_context(value: Any) -> bool:
    """Whether ``value`` is a chat context as the model stages read one: none, or a list of
    ``{"role", "content"}`` messages, roles system, user or assistant, contents text."""
    return value is None or (isinstance(value, list) and all(
        isinstance(m, dict) and m.get("role") in CONTEXT_ROLES and isinstance(m.get("content"), str)
        for m in value))
