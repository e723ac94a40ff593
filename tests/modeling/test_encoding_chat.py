"""Chat context (a multi-turn chat's earlier messages, in a row's metadata) rendered
before the prompt; rows without one encode as they always did (pinned)."""

from __future__ import annotations

import hashlib
import json

from tinymodels import char_tokenizer, char_tokenizer_adding_bos

from subsetctl.modeling.encoding import encode_rows

#: a chat template with every role (as SmolLM2's, Qwen's)
ROLES_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                  "{% if add_generation_prompt %}<assistant>{% endif %}")


#: ordinary rows (no chat context), among them metadata that names the key in a value
ORDINARY = [
    {"source": "s", "row": 0, "prompt": "What is 2+2?", "response": "4", "metadata": "{}"},
    {"source": "s", "row": 1, "prompt": "Name a colour.", "response": "red", "metadata": '{"a": 1}'},
    {"source": "s", "row": 2, "prompt": "say chat_context", "response": "chat_context",
     "metadata": '{"note": "chat_context"}'},
    {"source": "s", "row": 3, "prompt": "x" * 70, "response": "yes", "metadata": '{"rg_task": "t"}'},
    {"source": "s", "row": 4, "prompt": "", "response": "continue", "metadata": ""},
    {"prompt": "no metadata at all", "response": "ok"},
]


def _digest(encoded: list) -> str:
    flat = [[e.input_ids, e.response_mask, e.truncated, e.answer_cut, e.prompt_tokens_cut, e.within_template]
            for e in encoded]
    return hashlib.sha256(json.dumps(flat).encode()).hexdigest()[:16]


def test_rows_without_a_chat_context_keep_their_ids() -> None:
    """Pinned before chat contexts were rendered: ids, masks and cut accounting of
    ordinary rows, with a chat template and without one (a base model's BOS)."""
    templated = char_tokenizer()
    templated.chat_template = ROLES_TEMPLATE
    digests = {name: [_digest(encode_rows(tok, ORDINARY, "causal-lm", n)) for n in (64, 40)]
               for name, tok in (("template", templated), ("bos", char_tokenizer_adding_bos()),
                                 ("plain", char_tokenizer()))}
    assert digests == PINNED, digests


PINNED = {"template": ["c780df6d7d16534c", "242ac7d458a1adc1"], "bos": ["c53e9cdbc9ceddf5", "d0ebca599ff29e57"],
          "plain": ["f187fb395f82cc55", "f94309a4a131a431"]}


#: a chat template that refuses a system role, as Gemma's does
NO_SYSTEM_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                      "{{ raise_exception('System role not supported') }}{% endif %}"
                      "<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
CONTEXT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"},
           {"role": "assistant", "content": "b"}]


def _chat_row(context: list[dict], prompt: str = "c", response: str = "d") -> dict:
    return {"source": "s", "row": 0, "prompt": prompt, "response": response,
            "metadata": json.dumps({"id": 1, "chat_context": context}, sort_keys=True)}


def test_a_chat_context_is_rendered_by_the_template_before_the_prompt() -> None:
    from subsetctl.modeling.encoding import encode_causal_lm, render_prompt

    tok = char_tokenizer()
    tok.chat_template = ROLES_TEMPLATE
    assert render_prompt(tok, "c", CONTEXT) == "<system>Be brief.\n<user>a\n<assistant>b\n<user>c\n<assistant>"
    (encoded,) = encode_rows(tok, [_chat_row(CONTEXT)], "causal-lm", 64)
    assert encoded == encode_causal_lm(tok, "c", "d", 64, context=CONTEXT)
    assert encoded.input_ids == tok(render_prompt(tok, "c", CONTEXT) + "d", add_special_tokens=False)["input_ids"] \
        + [tok.eos_token_id]
    tok.chat_template = NO_SYSTEM_TEMPLATE  # the system text goes before the first user message's
    assert render_prompt(tok, "c", CONTEXT) == "<user>Be brief.\n\na\n<assistant>b\n<user>c\n<assistant>"
    assert render_prompt(tok, "c", CONTEXT[:1]) == "<user>Be brief.\n\nc\n<assistant>"


def test_without_a_template_the_context_texts_come_before_the_prompt() -> None:
    """A single-turn chat's system message reads as the text prepended to the user's did."""
    from subsetctl.modeling.encoding import render_prompt

    tok = char_tokenizer_adding_bos()
    assert render_prompt(tok, "2+2?", CONTEXT[:1]) == render_prompt(tok, "Be brief.\n\n2+2?") == "<s>Be brief.\n\n2+2?\n"
    assert render_prompt(tok, "c", CONTEXT) == "<s>Be brief.\n\na\n\nb\n\nc\n"
    assert encode_rows(tok, [_chat_row(CONTEXT[:1], "2+2?", "4")], "causal-lm", 64) == \
        encode_rows(tok, [{"prompt": "Be brief.\n\n2+2?", "response": "4"}], "causal-lm", 64)


def test_a_long_context_is_cut_and_said_apart_from_a_cut_prompt() -> None:
    from subsetctl.modeling.encoding import TruncationCounts

    tok = char_tokenizer()
    tok.chat_template = ROLES_TEMPLATE
    long_context = [{"role": "user", "content": "x" * 300}, {"role": "assistant", "content": "y" * 300}]
    rows = [_chat_row(long_context, "short question?", "4"), _chat_row(long_context, "q" * 60, "4")]
    encoded = encode_rows(tok, rows, "causal-lm", 40)
    assert [e.truncated for e in encoded] == [True, True]
    assert [(e.within_template, e.within_context) for e in encoded] == [(False, True), (False, False)]
    end = tok("<user>short question?\n<assistant>4", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert encoded[0].input_ids[-len(end):] == end
    counts = TruncationCounts()
    counts.add(encoded, rows)
    notice = counts.notice(40)
    assert "in 1 only earlier messages of the chat were cut from the left, its last user message is whole" in notice
    assert "in 1 the prompt was cut from the left" in notice


def test_a_chat_context_that_is_no_list_of_messages_is_an_error() -> None:
    import pytest

    from subsetctl.errors import UserError

    tok = char_tokenizer()
    with pytest.raises(UserError, match=r"row 0: its metadata's 'chat_context' is not a list of \{role, content\}"):
        encode_rows(tok, [_chat_row([{"role": "tool", "content": "x"}])], "causal-lm", 64)


def test_evaluate_renders_generation_prompts_after_their_context(monkeypatch) -> None:
    import subsetctl.modeling.evaluate as ev

    tok = char_tokenizer()
    tok.chat_template = ROLES_TEMPLATE
    row = _chat_row(CONTEXT, "c", "d")
    (ids,) = ev._generation_prompt_ids(tok, ["c"], [ev.row_context(row)])
    assert ids == tok("<system>Be brief.\n<user>a\n<assistant>b\n<user>c\n<assistant>",
                      add_special_tokens=False)["input_ids"]
    seen = []
    monkeypatch.setattr(ev, "generate_answers",
                        lambda m, t, prompts, *a: seen.append(a[-1]) or ["d"] * len(prompts))
    warnings: list[str] = []
    predictions, _, _ = ev._score_generations(None, tok, [row], 64, 4, 1, "auto", warnings, None)
    assert seen == [[CONTEXT]] and predictions[0]["score"] == 1.0 and warnings == []
    long_context = [{"role": "user", "content": "x" * 300}]
    warning = ev._prompts_cut_for_generation(tok, ["c"], 60, 4, [long_context])
    assert "they lose only earlier messages of their chat, and the prompts themselves are whole" in warning
    warning = ev._prompts_cut_for_generation(tok, ["q" * 80], 60, 4, [long_context])
    assert warning.endswith("so their scores may not reflect the task. Raise model.max_length or lower "
                            "evaluate.max_new_tokens.")


def test_the_model_code_reads_the_context_key_the_loaders_write() -> None:
    """The loaders and the model code take the key from one module (subsetctl.chat_context):
    the two must stay one key."""
    from subsetctl.data.loaders.common import CONTEXT_KEY as WRITTEN
    from subsetctl.modeling.encoding import CONTEXT_KEY as READ

    assert READ == WRITTEN


def test_a_long_prompt_after_a_context_is_not_tokenized_whole(monkeypatch) -> None:
    """A chat with a system message and a long document as its prompt (summarization) is
    tokenized only in the part an example keeps, as a prompt without a context is: telling
    whether only the context was cut tokenized the whole prompt again, row by row (2000
    rows of 60,000 characters: 66 s instead of 0.5 s with SmolLM2's tokenizer)."""
    from subsetctl.modeling.encoding import CHARS_PER_TOKEN

    tok = char_tokenizer()
    tok.chat_template = ROLES_TEMPLATE
    longest: list[int] = []
    call = type(tok).__call__

    def spy(self, text, *args, **kwargs):
        longest.append(max(map(len, [text] if isinstance(text, str) else text), default=0))
        return call(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tok), "__call__", spy)
    context = [{"role": "system", "content": "Summarize."}]
    rows = [_chat_row(context, "q" * 100_000, "4"), _chat_row(context, "short", "4"),
            _chat_row([{"role": "system", "content": "s" * 100}], "short", "4")]
    encoded = encode_rows(tok, rows, "causal-lm", 64)
    assert max(longest) <= 64 * CHARS_PER_TOKEN + 16  # (a response's 16 characters of context)
    assert [(e.truncated, e.within_context) for e in encoded] == [(True, False), (False, False), (True, True)]
