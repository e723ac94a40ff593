"""Evaluation: answer normalization, reasoning-gym scoring, generation, classifier metrics."""

from __future__ import annotations

import json
import re
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modelfixtures import causal_rows, classifier_rows

import subsetctl.modeling.evaluate as ev
from subsetctl.errors import UserError
from subsetctl.modeling.answers import exact_match, macro_f1, normalize_answer
from subsetctl.modeling.evaluate import ReasoningGymScorer, evaluate_model, generate_answers
from subsetctl.modeling.lora import apply_lora
from subsetctl.modeling.resolve import resolve_model
from subsetctl.modeling.train import evaluate_loss


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("  Paris. ", "paris", 1.0),
        ("New   York\n City", "new york city", 1.0),
        ("4.0", "4", 1.0),
        ("-4", "-4.", 1.0),
        ("1,000", "1000", 1.0),
        ("4.5", "4", 0.0),
        ("paris, france", "paris", 0.0),
        ("", "x", 0.0),
        ("1e3", "1000", 1.0),
        ("nan", "nan", 1.0),  # equal strings; NaN is never compared numerically
    ],
)
def test_exact_match(pred, gold, expected) -> None:
    assert exact_match(pred, gold) == expected


def test_normalize_answer() -> None:
    assert normalize_answer("  A  B.  ") == "a b"
    assert normalize_answer("3.") == "3"
    assert normalize_answer("...") == normalize_answer(" ... ") == "..."  # marks alone are the answer
    assert exact_match("", ".") == 0.0


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("東京。", "東京"),  # the CJK full stop is dropped as '.' is
        ("caf\u00e9", "cafe\u0301"),  # NFC and NFD (macOS) forms of one word
        ("１２", "12"), ("１２．０", "12"), ("ＡＢＣ", "abc"),  # full-width digits and letters
        ("はい！", "はい"), ("なに？", "なに"), ("12．", "12"), ("はい｡", "はい"),  # full- and half-width marks
        ("नमस्ते।", "नमस्ते"), ("مرحبا؟", "مرحبا"), ("ok…", "ok"), ("\ufb01ne", "fine"),  # other scripts; ellipsis; ligature
    ],
)
def test_exact_match_of_non_english_answers(pred, gold) -> None:
    """Answers in other scripts and Unicode forms match as English ones do: before, each
    of these scored 0 (the '。' kept, NFD 'é' two code points, '１２' not '12')."""
    assert exact_match(pred, gold) == exact_match(gold, pred) == 1.0


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("Paris.", "paris", 1.0), ("  Yes .", "yes", 1.0), ("3.", "3", 1.0), ("New\tYork", "new york", 1.0),
        ("5!", "5", 0.0), ("why?", "why", 0.0), ("10\u00b2", "102", 0.0), ("H\u2082O", "h2o", 0.0),
        ("\u00bd", "1/2", 0.0), ("\u00bd", "\u00bd", 1.0), ("x\u00b2", "X\u00b2", 1.0), ("paris, france", "paris", 0.0),
        ("e.g.", "e.g", 1.0), ("a.b", "ab", 0.0), ("Ç", "ç", 1.0), ("1,000.", "1000", 1.0), ("-4.", "-4", 1.0),
    ],
)
def test_english_answers_score_as_before(pred, gold, expected) -> None:
    """NFKC changes nothing ASCII, and English answers keep what they meant: an ASCII '!'
    or '?' stays ('5!' is a factorial), superscripts, subscripts and fractions are kept as
    written ('10²' is 100, not '102')."""
    assert exact_match(pred, gold) == expected


@given(st.text(max_size=12))
@settings(max_examples=400, deadline=None)
def test_normalize_answer_is_idempotent(text) -> None:
    once = normalize_answer(text)
    assert normalize_answer(once) == once
    assert exact_match(text, once) == 1.0


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=12))
@settings(max_examples=300, deadline=None)
def test_normalize_of_ascii_is_as_before_but_for_a_run_of_final_periods(text) -> None:
    """On ASCII text the normalization is the one before (strip, lowercase, collapse
    whitespace, drop one trailing '.') wherever the text does not end in two or more."""
    before = re.sub(r"\s+", " ", text.strip().lower())
    before = before[:-1].rstrip() if before.endswith(".") else before
    if not before.endswith(".") and before:
        assert normalize_answer(text) == before


def test_normalize_answer_of_text_in_nfkc_makes_no_pass_over_each_character(monkeypatch) -> None:
    """An answer in NFKC already (English text, most CJK text) is folded with no Python call per
    character: the data stage normalizes every answer of every source where the target's are
    class words, and that pass made it 7 times slower (20,000 answers of 180 characters: 0.2 s
    before NFKC, 1.5 s with it). A superscript still takes the per-character pass, and is kept."""
    def per_character(char: str) -> bool:
        raise AssertionError(f"a per-character pass over {char!r}")

    from subsetctl.modeling import answers

    monkeypatch.setattr(answers, "_kept_form", per_character)
    assert normalize_answer("  The Quick  Brown fox. ") == "the quick brown fox"
    assert normalize_answer("東京タワー。") == "東京タワー"
    monkeypatch.undo()
    assert normalize_answer("10²") == "10²"


def _rg_rows(task: str, n: int, seed: int = 7) -> list[dict]:
    import reasoning_gym

    data = reasoning_gym.create_dataset(task, size=n, seed=seed)
    rows = []
    for i in range(n):
        e = data[i]
        meta = dict(e["metadata"], rg_task=task)
        rows.append(
            {
                "source": task,
                "prompt": e["question"],
                "response": e["answer"],
                "label": -1,
                "metadata": json.dumps(meta, default=list),
                "row": i,
            }
        )
    return rows


def test_reasoning_gym_scores_real_rows() -> None:
    scorer = ReasoningGymScorer()
    for task in ("basic_arithmetic", "word_sorting"):
        for row in _rg_rows(task, 2):
            assert scorer.score(row["response"], row) == 1.0
            assert scorer.score("definitely wrong", row) < 1.0
    assert sorted(key.split("|")[0] for key in scorer._by_task) == ["basic_arithmetic", "word_sorting"]  # one each
    with pytest.raises(UserError, match="rg_task"):
        scorer.score("1", causal_rows()[0])


@pytest.mark.parametrize("task", ["string_insertion", "spiral_matrix", "n_queens", "binary_matrix"])
def test_a_generated_answer_is_never_run_as_python_by_the_scorer(task: str, tmp_path) -> None:
    """These tasks' score_answer `eval`s the model's answer ("is it a Python list?"): a
    generated `__import__('os').system(...)` ran during the evaluate stage."""
    marker = tmp_path / "ran"
    scorer = ReasoningGymScorer()
    (row,) = _rg_rows(task, 1)
    assert scorer.score(f"__import__('pathlib').Path({str(marker)!r}).touch() or 'x'", row) == 0.0
    assert not marker.exists()
    assert scorer.score(row["response"], row) == 1.0
    assert not [name for name, m in list(sys.modules.items())  # the modules' eval is the builtin again
                if name.startswith("reasoning_gym") and m is not None and "eval" in vars(m)]


def test_the_scorers_eval_takes_literals_and_arithmetic_only() -> None:
    from subsetctl.modeling.evaluate import _eval_data_only

    assert _eval_data_only("['a', 'b']") == ["a", "b"] and _eval_data_only(" [[1, 0], [0, 1]] ") == [[1, 0], [0, 1]]
    assert _eval_data_only("((0x3a << 0x2) - 0x1f) >> 0x1") == 100 and _eval_data_only("-(7 // 2) + 2**10") == 1021
    for code in ("__import__('os')", "().__class__", "[x for x in ()]", "9**9**9", "1 << 10**10", "'a' * 10**9",
                 "open('f')", "(lambda: 1)()"):
        with pytest.raises(ValueError, match="not evaluated"):
            _eval_data_only(code)
    scorer = ReasoningGymScorer()  # bitwise_arithmetic's own check evaluates its problem: still scored right
    for row in _rg_rows("bitwise_arithmetic", 2):
        assert scorer.score(row["response"], row) == 1.0


def test_auto_metric_dispatch_with_perfect_answers(monkeypatch, tiny_llama_dir) -> None:
    model, tok, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    rows = _rg_rows("basic_arithmetic", 3) + causal_rows()[:2]
    monkeypatch.setattr(ev, "generate_answers", lambda m, t, prompts, *a: [r["response"] for r in rows])
    out = evaluate_model(model, tok, rows, "causal-lm", max_length=96, max_new_tokens=4)
    assert out["score"] == 1.0 and out["metric"] == "mixed"
    assert [p["scorer"] for p in out["predictions"]] == ["reasoning_gym"] * 3 + ["exact_match"] * 2
    assert out["metrics"]["reasoning_gym"] == 1.0 and out["metrics"]["exact_match"] == 1.0
    assert any("only 5 examples" in w for w in out["warnings"])
    with pytest.raises(UserError, match="rg_task"):
        evaluate_model(model, tok, rows, "causal-lm", 96, 4, metric="reasoning_gym")


def test_generation_left_padding_matches_unbatched(tiny_llama_dir) -> None:
    model, tok, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    model = apply_lora(model, r=2)
    prompts = ["1+1", "a much longer prompt here", "xy"]
    batched = generate_answers(model, tok, prompts, max_length=64, max_new_tokens=6, batch_size=3)
    single = [generate_answers(model, tok, [p], 64, 6, 1)[0] for p in prompts]
    assert batched == single
    assert all(len(a) <= 6 for a in batched)  # char tokenizer: at most 6 new characters
    assert not any(a.startswith(p) for a, p in zip(batched, prompts))  # prompt not echoed


def test_evaluate_model_losses_match_and_predictions(tiny_llama_dir) -> None:
    model, tok, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    rows = causal_rows() * 2
    out = evaluate_model(model, tok, rows, "causal-lm", max_length=32, max_new_tokens=3, batch_size=4)
    assert out["n"] == 16 and len(out["predictions"]) == 16 and out["warnings"] == []
    assert out["loss_surrogate"] == pytest.approx(evaluate_loss(model, tok, rows, "causal-lm", 32), rel=1e-6)
    assert out["loss_ce"] == pytest.approx(
        evaluate_loss(model, tok, rows, "causal-lm", 32, objective="ce"), rel=1e-6
    )
    assert out["metric"] == "exact_match" and 0.0 <= out["score"] <= 1.0


def test_classifier_accuracy_and_macro_f1(tiny_bert_dir) -> None:
    model, tok, _ = resolve_model(str(tiny_bert_dir), "classifier", num_labels=2)
    rows = classifier_rows(12)
    out = evaluate_model(model, tok, rows, "classifier", max_length=16, batch_size=5)
    preds = [p["prediction"] for p in out["predictions"]]
    labels = [r["label"] for r in rows]
    assert out["metrics"]["accuracy"] == pytest.approx(sum(p == y for p, y in zip(preds, labels)) / 12)
    assert out["metric"] == "accuracy" and out["score"] == out["metrics"]["accuracy"]
    assert out["metrics"]["macro_f1"] == pytest.approx(macro_f1(preds, labels))
    with pytest.raises(UserError):
        evaluate_model(model, tok, rows, "classifier", 16, metric="exact_match")


def test_macro_f1_hand_computed() -> None:
    # class 0: tp=1 fp=1 fn=1 -> F1 0.5; class 1: tp=1 fp=1 fn=1 -> 0.5; class 2: tp=1 -> 1
    assert macro_f1([0, 1, 1, 0, 2], [0, 0, 1, 1, 2]) == pytest.approx(2 / 3)
    assert macro_f1([1, 1], [1, 1]) == 1.0
    # a class only a source has, predicted once: a miss of the true class (sklearn's macro over
    # the gold labels), not a third class with F1 0 (which gave 0.649 for 19 of 20 right)
    gold = [0] * 10 + [1] * 10
    stray = [2] + gold[1:]
    assert macro_f1(stray, gold) == pytest.approx((18 / 19 + 1.0) / 2)  # class 0: 9 of 10 found, no false alarm
    assert macro_f1(stray, gold) > 0.9


def test_reasoning_gym_scores_with_the_generator_config_of_the_row() -> None:
    """decimal_arithmetic's tolerance follows its config: with one decimal place -2.36 is
    right for -2.4 (the task's own scorer says 1.0); the default-config scorer said 0."""
    scorer = ReasoningGymScorer()
    config = {"min_num_decimal_places": 1, "max_num_decimal_places": 1}
    row = {"prompt": "q", "response": "-2.4", "metadata": {"rg_task": "decimal_arithmetic", "rg_config": config}}
    assert scorer.score("-2.36", row) == 1.0
    assert scorer.score("-2.36", {**row, "metadata": {"rg_task": "decimal_arithmetic"}}) == 0.0  # default config


def test_exact_match_reads_plain_numbers_only() -> None:
    """float() also reads 1_000 and other scripts' digits: '1_000' matched '1000'."""

    assert exact_match("1,000", "1000") == exact_match("4.0", "4") == exact_match(".5", "0.5") == 1.0
    assert exact_match("1e3", "1000") == exact_match("-2", "-2.0") == 1.0
    assert exact_match("1_000", "1000") == exact_match("\u0663", "3") == 0.0
    # exact values, no float tolerance: these matched within a relative 1e-9
    for pred, gold in (("1234567891", "1234567890"), ("3.14159265358", "3.14159265359"), ("1e-12", "0"),
                       ("9876543211", "9876543210")):
        assert exact_match(pred, gold) == 0.0, (pred, gold)
    assert exact_match("12345678901234567890", "12,345,678,901,234,567,890") == 1.0


def test_the_shortest_form_of_a_gold_number_is_one_exact_match_accepts() -> None:
    """The forms were built through a float ('3.141592653589793' for a 21-digit gold),
    which the exact comparison rejects: the too-long-answer warning went missing."""
    from subsetctl.modeling.answers import shortest_matching_forms

    for gold in ("3.14159265358979323846", "9007199254740993", "1,000,000", "4.000", "1e-12", "paris"):
        forms = shortest_matching_forms(gold)
        assert all(exact_match(form, gold) == 1.0 for form in forms), (gold, forms)
    assert shortest_matching_forms("1,000,000") == ["1,000,000", "1000000"]
    assert shortest_matching_forms("1e99999") == ["1e99999"]  # never written out digit by digit


def test_test_prompts_cut_for_generation_are_warned_about(monkeypatch, tiny_llama_dir) -> None:
    """Training keeps a prompt up to max_length minus its answer; generation keeps only
    max_length - max_new_tokens tokens: a 50-character prompt lost its question at
    evaluate with no stage saying so."""
    model, tok, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    rows = [{"source": "t", "row": i, "prompt": "What is 4 plus one? Reply with the number only." + str(i),
             "response": "5", "metadata": "{}"} for i in range(3)]
    monkeypatch.setattr(ev, "generate_answers", lambda m, t, prompts, *a: ["5"] * len(prompts))
    cut = evaluate_model(model, tok, rows, "causal-lm", max_length=64, max_new_tokens=32)["warnings"]
    assert any("3 of 3 test prompts are longer than model.max_length - evaluate.max_new_tokens = 32" in w
               for w in cut), cut
    whole = evaluate_model(model, tok, rows, "causal-lm", max_length=128, max_new_tokens=32)["warnings"]
    assert not any("test prompts are longer" in w for w in whole)


def test_answers_longer_than_generation_may_produce_are_warned(tiny_llama_dir) -> None:
    """A gold answer of 5 characters with max_new_tokens 3 can never be matched: the
    score understates every selection alike, so evaluate says so."""
    model, tok, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    rows = [dict(r, response="12345" if i < 3 else "7") for i, r in enumerate(causal_rows() * 2)]
    out = evaluate_model(model, tok, rows, "causal-lm", max_length=32, max_new_tokens=3, batch_size=4)
    (warning,) = out["warnings"]
    assert "3 of 16 test answers are longer than evaluate.max_new_tokens=3" in warning
    assert "the longest has 5" in warning and "at least 5" in warning
    assert evaluate_model(model, tok, rows, "causal-lm", max_length=32, max_new_tokens=5)["warnings"] == []
    # what exact_match accepts counts: "1,000" matches "1000" and "7.000" matches "7", "Yes." matches "yes"
    short = [dict(r, response=answer) for r, answer in zip(causal_rows() * 2, ["1,000", "7.000", "Yes."] * 6)]
    assert evaluate_model(model, tok, short, "causal-lm", max_length=32, max_new_tokens=4)["warnings"] == []


def test_generation_cuts_of_only_the_template_preamble_do_not_say_scores_may_mislead(monkeypatch,
                                                                                   tiny_llama_dir) -> None:
    """A chat template's default system prompt cut at evaluate is not a prompt whose
    question was lost; the warning said every cut prompt's score may not reflect the task."""
    model, tok, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    tok.chat_template = "System: be brief.\nUser: {{ messages[0]['content'] }}\nAssistant:"  # 24 before
    rows = [{"source": "t", "row": i, "prompt": "What is 4 plus one?" + str(i), "response": "5", "metadata": "{}"}
            for i in range(3)]  # 20 characters, 51 tokens rendered
    monkeypatch.setattr(ev, "generate_answers", lambda m, t, prompts, *a: ["5"] * len(prompts))
    preamble = evaluate_model(model, tok, rows, "causal-lm", max_length=72, max_new_tokens=32)["warnings"]
    assert any("3 of 3 test prompts" in w and "prompts themselves are whole" in w and "may not reflect" not in w
               for w in preamble), preamble
    own = evaluate_model(model, tok, rows, "causal-lm", max_length=56, max_new_tokens=32)["warnings"]
    assert any("3 of 3 test prompts" in w and "so their scores may not reflect the task" in w
               and "whole" not in w for w in own), own
    mixed = [*rows, dict(rows[0], prompt="x" * 40)]  # its own text reaches past the 40 tokens kept
    some = evaluate_model(model, tok, mixed, "causal-lm", max_length=72, max_new_tokens=32)["warnings"]
    assert any("4 of 4 test prompts" in w and "1 of them loses part of its own text, so its score may not" in w
               for w in some), some


def test_a_one_row_test_split_is_warned_about_in_the_singular(tiny_llama_dir) -> None:
    """ "The test split has only 1 examples" read wrong."""
    model, tok, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    out = evaluate_model(model, tok, causal_rows()[:1], "causal-lm", max_length=32, max_new_tokens=2)
    assert out["warnings"][0].startswith("The test split has only 1 example (< 10); the task metric is too noisy")


def _metaspace_char_tokenizer():
    """A character BPE tokenizer (no merges) with a ``Metaspace(prepend_scheme="first")``
    pre-tokenizer, as SentencePiece's (Llama, Mistral): a text's first word starts with a
    "▁" token, which "12" after "hi\\n" does not have ("▁", "1", "2" alone; "1", "2" there)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "</s>", "▁", "h", "i", "\n", "1", "2", "3"])}
    tk = Tokenizer(models.BPE(vocab, [], unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", behavior="isolated"),
                                                pre_tokenizers.Metaspace(prepend_scheme="first")])
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="</s>", unk_token="<unk>")


def test_answers_are_counted_as_generated_after_their_prompt(monkeypatch) -> None:
    """An answer's tokens were counted tokenized alone, where a Metaspace tokenizer starts
    it with "▁": one token more than training and generation give it after the prompt, so
    an answer that fits max_new_tokens exactly was said never to fit."""
    from subsetctl.modeling.encoding import encode_rows

    tok = _metaspace_char_tokenizer()
    assert tok.convert_ids_to_tokens(tok("12", add_special_tokens=False)["input_ids"]) == ["▁", "1", "2"]
    rows = [{"source": "t", "row": 0, "prompt": "hi", "response": "12"},
            {"source": "t", "row": 1, "prompt": "hi", "response": "123"}]
    (trained,) = encode_rows(tok, rows[:1], "causal-lm", 32)
    assert sum(trained.response_mask) == 2 + 1  # the answer's 2 tokens and EOS, as trained
    calls = []
    real_call = type(tok).__call__
    monkeypatch.setattr(type(tok), "__call__", lambda self, *a, **k: calls.append(a) or real_call(self, *a, **k))
    assert ev.answers_longer_than(tok, rows[:1], 2) is None
    assert len(calls) <= 3  # batched: the contexts and the joined texts, not a call per answer
    warning = ev.answers_longer_than(tok, rows, 2)
    assert warning is not None and warning.startswith("1 of 2 test answers are longer than evaluate.max_new_tokens=2")
    assert "the longest has 3" in warning


def test_classifier_test_texts_cut_by_max_length_are_warned(tiny_bert_dir) -> None:
    """A classifier's test texts longer than model.max_length were scored on their start
    alone without a word (the gradients stage counts only train and validation rows)."""
    model, tok, _ = resolve_model(str(tiny_bert_dir), "classifier", num_labels=2)
    rows = classifier_rows(4)
    assert evaluate_model(model, tok, rows, "classifier", max_length=16)["warnings"][1:] == []  # (few rows)
    rows[2] = {**rows[2], "prompt": "good " * 40}
    warned = evaluate_model(model, tok, rows, "classifier", max_length=16)["warnings"]
    assert "model.max_length=16 tokens cut 1 of 4 test examples: in 1 the text was cut at its end (sent: 1)" \
        in warned[-1], warned


def test_causal_lm_test_answers_cut_by_max_length_are_warned_of_for_the_test_loss(monkeypatch, tiny_llama_dir) -> None:
    """A test answer longer than model.max_length was scored by the test loss on its first
    max_length - 1 tokens alone; only generation's warnings spoke, of generation."""
    model, tok, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    monkeypatch.setattr(ev, "generate_answers", lambda m, t, prompts, *a: ["x"] * len(prompts))
    rows = causal_rows() * 2
    assert evaluate_model(model, tok, rows, "causal-lm", max_length=32, max_new_tokens=3)["warnings"] == []
    rows[1] = {**rows[1], "source": "essays", "response": "blah " * 20}
    warned = evaluate_model(model, tok, rows, "causal-lm", max_length=32, max_new_tokens=3)["warnings"]
    assert ("model.max_length=32 tokens cut 1 of 16 test examples as the test loss reads them: in 1 the answer "
            "itself was cut and fills max_length alone: the test loss scores its start without its end") in warned[-1]
    assert "(essays: 1)" in warned[-1]
    # a prompt cut only in the chat template's system prompt keeps its text: no news (the quickstart's)
    from tinymodels import char_tokenizer

    templated = char_tokenizer()
    templated.chat_template = "System: be brief.\nUser: {{ messages[0]['content'] }}\nAssistant:"
    whole = [{"source": "t", "row": 0, "prompt": "What is 2+2?", "response": "4"}]
    assert ev._texts_cut(templated, whole, "causal-lm", 40) is None  # 12 of its 24 template characters cut
    own = [{**whole[0], "prompt": "x" * 40}]
    assert "in 1 the prompt was cut from the left (t: 1)" in ev._texts_cut(templated, own, "causal-lm", 40)


def test_a_one_token_text_with_no_bos_or_eos_is_left_out_of_the_test_loss(monkeypatch, tiny_llama_dir) -> None:
    """A text of one token, with a tokenizer that puts no BOS token before it and no EOS
    token after it, has no token to score: its loss was 0, lowering the test loss (and the
    validation loss) without a word. It is NaN (None in ``losses``), left out, and said."""
    from subsetctl.modeling.train import per_example_outputs

    model, tok, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    tok.eos_token = None  # (the pad token resolution gave it stays)
    assert tok.eos_token_id is None and tok.pad_token_id is not None
    rows = causal_rows()[:3] + [{"prompt": "", "response": "a", "source": "one", "row": 0,
                                 "metadata": {"whole_text": True}}]
    monkeypatch.setattr(ev, "generate_answers", lambda m, t, prompts, *a: [r["response"] for r in rows])
    out = evaluate_model(model, tok, rows, "causal-lm", max_length=32, max_new_tokens=3)
    ce = per_example_outputs(model, tok, rows[:3], "causal-lm", 32, 8)["ce"]
    assert out["losses"][3] is None and out["losses"][:3] == pytest.approx(list(ce))
    assert out["loss_ce"] == pytest.approx(ce.mean()) and out["loss_ce"] > 0
    assert evaluate_loss(model, tok, rows, "causal-lm", 32, objective="ce") == pytest.approx(ce.mean())
    (said,) = [w for w in out["warnings"] if "no token to score" in w]
    assert said.startswith("1 of 4 test examples has no token to score ('one': 1)") and "left out of the test loss" in said
    with pytest.raises(UserError, match="None of the 1 examples"):
        evaluate_loss(model, tok, rows[3:], "causal-lm", 32)


def test_answers_in_class_words_are_a_closed_set_free_answers_are_not() -> None:
    """A causal LM's target answered in class words ("positive"/"negative", as README's
    classification section writes it) gets macro-F1 over the exact answers; sums, sentences
    and a split whose answers do not repeat (10 rows, 10 answers) do not."""
    from subsetctl.modeling.answers import answer_classes

    assert answer_classes(["Positive", "negative.", "positive ", "negative"]) == ["negative", "positive"]
    assert answer_classes(["not entailment", "entailment"] * 3) == ["entailment", "not entailment"]
    assert answer_classes([str(i) for i in range(10)]) is None  # each answer once: no closed set
    assert answer_classes([str(i % 25) for i in range(100)]) is None  # more than 20 distinct
    assert answer_classes(["the cat sat on the mat", "a dog ran"] * 5) is None  # sentences
    assert answer_classes(["yes"] * 6) is None  # one answer: no classes to average over


def test_answers_macro_f1_counts_an_answer_no_gold_class_has_as_a_miss() -> None:
    from subsetctl.modeling.answers import answers_macro_f1, macro_f1

    golds = ["positive", "positive", "positive", "negative"]
    # all "positive": exact match 0.75, macro-F1 (0.857 + 0) / 2
    assert answers_macro_f1(["Positive."] * 4, golds) == pytest.approx(macro_f1([1, 1, 1, 1], [1, 1, 1, 0]))
    assert answers_macro_f1(["positive", "positive", "positive", "negative"], golds) == 1.0
    assert answers_macro_f1(["positive", "maybe", "positive", "negative"], golds) == \
        pytest.approx(macro_f1([1, -1, 1, 0], [1, 1, 1, 0]))


def test_the_data_stage_warns_of_test_answers_longer_than_generation_may_produce(tiny_llama_dir, tmp_path,
                                                                               monkeypatch) -> None:
    """Answers longer than evaluate.max_new_tokens were warned of only by evaluate, after
    hours of fine-tunes whose scores they cap alike: the data stage says it, in evaluate's
    words, counting the tokens of the longest test answers (a bounded number of them) with
    the model's tokenizer."""
    import yaml

    from subsetctl.data import stage
    from subsetctl.spec import Spec

    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"prompt": f"q{i}", "response": "12345" if i % 2 else "7"})
                                              + "\n" for i in range(20)))
    spec = Spec.model_validate(yaml.safe_load(f"""
model: {{source: {tiny_llama_dir}}}
target: {{name: t, loader: {{type: jsonl, path: t.jsonl}}, split: {{train: 0.5, test: 0.5}}}}
evaluate: {{max_new_tokens: 3}}
sources: [{{name: s, loader: {{type: jsonl, path: t.jsonl}}}}]
"""))
    warnings = stage.run_data_stage(spec, tmp_path, tmp_path / "out")["warnings"]
    test = stage.load_split(tmp_path / "out", "t", "test")
    long = sum(r == "12345" for r in test["response"])
    assert f"{long} of 10 test answers are longer than evaluate.max_new_tokens=3 tokens" in " ".join(warnings)
    monkeypatch.setattr(stage, "LONG_ANSWERS_COUNTED", 2)  # the longest 2 counted: at least those
    warnings = stage.run_data_stage(spec, tmp_path, tmp_path / "out2")["warnings"]
    assert "at least 2 of 10 test answers are longer than evaluate.max_new_tokens=3" in " ".join(warnings)
    # answers that fit: nothing
    spec = Spec.model_validate({**spec.model_dump(exclude_unset=True), "evaluate": {"max_new_tokens": 8}})
    assert not [w for w in stage.run_data_stage(spec, tmp_path, tmp_path / "out3")["warnings"] if "max_new" in w]
