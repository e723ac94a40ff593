"""Plain-text rows (``loader.text_field``) encoded for training and the gradients: the text
alone, no chat template and no prompt, every token in the response mask (the loss); a long
text keeps its start and is counted as cut at its end."""

from __future__ import annotations

import json

from tinymodels import char_tokenizer, char_tokenizer_adding_bos

from subsetctl.modeling.encoding import TruncationCounts, encode_rows
from subsetctl.text_rows import TEXT_KEY

#: a chat template (as SmolLM2's): a text row must not be rendered with it
TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


def _text_row(text: str, row: int = 0) -> dict:
    return {"source": "corpus", "row": row, "prompt": "", "response": text, "metadata": json.dumps({TEXT_KEY: True})}


def test_the_loss_mask_covers_every_token_of_a_text() -> None:
    """Without a BOS the first token is not predicted by anything (so never in the mask);
    every other token, and the EOS after the text, is. No template text comes before it."""
    text = "The cat sat."
    for tok in (char_tokenizer(), _templated()):
        (example,) = encode_rows(tok, [_text_row(text)], "causal-lm", 64)
        assert tok.decode(example.input_ids) == text + "<eos>"  # no "<user>" / "<assistant>", no newline
        assert example.response_mask == [0] + [1] * len(text)  # every token but the first, and the EOS
        assert not example.truncated
    bos = char_tokenizer_adding_bos()
    (example,) = encode_rows(bos, [_text_row(text)], "causal-lm", 64)
    assert bos.convert_ids_to_tokens(example.input_ids[:1]) == ["<s>"]  # the BOS a base model's texts start with
    assert example.response_mask == [0] + [1] * (len(text) + 1)  # every token of the text and its EOS


def test_a_row_without_the_mark_is_encoded_as_before() -> None:
    """An empty prompt alone is no text row: it is still rendered with the template."""
    tok = _templated()
    row = {**_text_row("abc"), "metadata": "{}"}
    (example,) = encode_rows(tok, [row], "causal-lm", 64)
    assert tok.decode(example.input_ids).startswith("<user>")


def test_a_long_text_keeps_its_start_and_is_counted_as_cut_at_its_end() -> None:
    tok = char_tokenizer()
    text = "".join(chr(ord("a") + i % 26) for i in range(100))
    rows = [_text_row(text), _text_row("short", 1)]
    long_one, short = encode_rows(tok, rows, "causal-lm", 32)
    # as a long answer: max_length - 1 tokens of it (a prompt's last token would have the other), its EOS cut
    assert tok.decode(long_one.input_ids) == text[:31]
    assert long_one.response_mask == [0] + [1] * 30 and long_one.answer_cut
    assert not short.truncated
    counts = TruncationCounts()
    counts.add([long_one, short], rows)
    assert dict(counts.text_cut) == {"corpus": 1} and not counts.answer_cut
    notice = counts.notice(32)
    assert notice is not None and "in 1 the text was cut at its end (corpus: 1)" in notice
    assert "without its prompt" not in notice


def test_a_text_row_is_another_run_than_the_same_response_without_the_mark() -> None:
    from subsetctl.modeling.train import TrainConfig, _run_fingerprint

    cfg = TrainConfig(steps=2, batch_size=4, max_length=32)
    text = _text_row("abc")
    plain = {**text, "metadata": "{}"}
    assert _run_fingerprint(cfg, [text], None, "causal-lm") != _run_fingerprint(cfg, [plain], None, "causal-lm")


def _templated():
    tok = char_tokenizer()
    tok.chat_template = TEMPLATE
    return tok


def test_one_token_texts_with_nothing_to_score_are_counted_by_source() -> None:
    """A text of one token, no BOS before it, no EOS after it, has no token to score (its f
    and gradient were 0, counted in its source without a word): counted by source and said;
    a BOS before it or an EOS after it gives it one."""
    bare = char_tokenizer()
    bare.eos_token = None
    rows = [{**_text_row("a", i), "source": "one"} for i in range(3)] + [{**_text_row("ab"), "source": "two"}]
    counts = TruncationCounts()
    counts.add(encode_rows(bare, rows, "causal-lm", 16), rows)
    assert counts.unscored == {"one": 3}
    notice = counts.unscored_notice("rows", ("it carries nothing", "they carry nothing"))
    assert notice is not None and notice.startswith("3 of 4 rows have no token to score ('one': 3): each is a text")
    assert notice is not None and "; they carry nothing. " in notice
    one = TruncationCounts()  # (the whole notice agrees with a count of one: "it is", "it carries", not "each", "they")
    one.add(encode_rows(bare, rows[2:], "causal-lm", 16), rows[2:])
    notice = one.unscored_notice("rows", ("it carries nothing", "they carry nothing"))
    assert notice is not None and notice.startswith("1 of 2 rows has no token to score ('one': 1): it is a text")
    assert "; it carries nothing. " in notice and "each" not in notice and "they" not in notice
    for tokenizer in (char_tokenizer(), char_tokenizer_adding_bos()):
        counts = TruncationCounts()
        counts.add(encode_rows(tokenizer, rows, "causal-lm", 16), rows)
        assert not counts.unscored and counts.unscored_notice() is None
