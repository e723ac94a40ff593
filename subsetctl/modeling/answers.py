"""Answers as a causal LM's test metrics compare them: exact match (Unicode NFKC, case,
spaces, trailing sentence-final marks and number forms aside), a target's answers in class
words and their macro-F1, and kept answers scored again.

Apart from the model code (:mod:`subsetctl.modeling.evaluate`, which imports torch and
scores with these): the evaluate stage re-scores the answers it kept, and the data stage
counts answers per class, without loading torch."""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

_WS = re.compile(r"\s+")


# --------------------------------------------------------------------------- exact match


#: the sentence-final marks (as Unicode NFKC writes them) a trailing run of which an answer
#: drops: the full stop, and other scripts' full stops, question and exclamation marks ('東京。',
#: Devanagari's danda, Arabic's full stop and question mark, Ethiopic, Armenian, Myanmar, Khmer)
_FINAL_MARKS = frozenset(".!?。।॥۔؟።։။។")
#: compatibility forms NFKC would turn into other text that means something else: '10²' is
#: 100, not '102'; 'H₂O' is not 'H2O' written otherwise; '½' is not '1⁄2' (kept as written)
_KEPT_FORMS = ("<super>", "<sub>", "<fraction>")


def _final_mark(char: str) -> bool:
    """Whether ``char`` is a sentence-final mark an answer drops at its end: one of
    :data:`_FINAL_MARKS` in any width ('．', '！', '？', '｡', '…'), but an ASCII '!' or '?',
    which English answers keep as they did ('5!' is a factorial, not 5)."""
    if char in "!?":
        return False
    folded = unicodedata.normalize("NFKC", char)
    return bool(folded) and all(c in _FINAL_MARKS for c in folded)


def _drop_final_marks(text: str) -> str:
    """``text`` (stripped) without its trailing sentence-final marks (:func:`_final_mark`),
    and the whitespace between them: 'yes . .' -> 'yes'. An answer of marks alone ('...')
    is kept as it is: an empty prediction does not match it."""
    kept = text
    while kept and _final_mark(kept[-1]):
        kept = kept[:-1].rstrip()
    return kept or text


def _kept_form(char: str) -> bool:
    """Whether ``char`` is a superscript, subscript or vulgar fraction (:data:`_KEPT_FORMS`)."""
    return unicodedata.decomposition(char).startswith(_KEPT_FORMS)


def _compatibility_folded(text: str) -> str:
    """``text`` in Unicode NFKC (one form for NFC and NFD 'café', full-width '１２' as '12',
    ligatures 'ﬁ' as 'fi'), but superscripts, subscripts and vulgar fractions
    (:func:`_kept_form`), which NFKC would make other text of, in NFC as written. Text in NFKC
    already (most answers: it holds no such form, which NFKC changes) is returned as it is, with
    no pass over each character in Python (the data stage normalizes every answer of every
    source where the target's are class words)."""
    if unicodedata.is_normalized("NFKC", text):
        return text
    return "".join(unicodedata.normalize("NFC" if kept else "NFKC", "".join(run))
                   for kept, run in itertools.groupby(text, key=_kept_form))


def normalize_answer(text: str) -> str:
    """The answer as exact match compares it: in Unicode NFKC (superscripts, subscripts and
    fractions aside, :func:`_compatibility_folded`), lowercased, whitespace collapsed, without
    its trailing sentence-final marks (a '.', '。', full-width '！'/'？'; :func:`_final_mark`).
    Idempotent: a normalized answer normalizes to itself."""
    text = _drop_final_marks(str(text).strip())
    text = _compatibility_folded(_compatibility_folded(text).lower())
    return _drop_final_marks(_WS.sub(" ", text.strip()))


def _number_text(text: str) -> str | None:
    """``text`` as a plain number Python can read (``-4``, ``4.0``, ``.5``, ``1e3``; ``1,000``
    without its commas), or None: Python's float() also reads ``1_000`` and other scripts'
    digits, which a gold answer compared as text should not equal."""
    candidate = text.replace(",", "") if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?", text) else text
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", candidate, flags=re.ASCII):
        return None
    return candidate


def as_decimal(text: str) -> Decimal | None:
    """The number ``text`` writes plainly as an exact decimal, or None."""
    candidate = _number_text(text)
    if candidate is None:
        return None
    try:
        return Decimal(candidate)
    except InvalidOperation:
        return None


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalized strings agree, or both write the same number exactly
    ("4.0" vs "4", "1,000" vs "1000"); else 0.0. Numbers compare as exact decimals: a
    float tolerance took 1234567891 for 1234567890 and 1e-12 for 0."""
    p, g = normalize_answer(prediction), normalize_answer(gold)
    if p == g:
        return 1.0
    pn, gn = as_decimal(p), as_decimal(g)
    if pn is not None and gn is not None:
        return 1.0 if pn == gn else 0.0
    return 0.0


#: a causal LM's target whose train split has at most this many distinct answers, ...
ANSWER_CLASSES_AT_MOST = 20
#: ... each of at most this many words, answers with class words ("positive", "not entailment"):
#: its report gives macro-F1 over the exact answers beside exact match (:func:`answer_classes`)
ANSWER_CLASS_WORDS = 3


def shortest_matching_forms(gold: str) -> list[str]:
    """Texts :func:`exact_match` accepts for ``gold``, its shortest written forms among
    them: the normalized text, and for a number its plain spelling ("1,000,000" and
    "4.000" match "1000000" and "4")."""
    text = normalize_answer(gold)
    number = as_decimal(text)
    if number is None or not number.is_finite() or abs(number.adjusted()) > 100:  # (no 10^9999 digits)
        return [text]
    plain = format(number.normalize(), "f")  # exact, as exact_match compares: "1,000,000" -> "1000000"
    return [text, plain]


def answer_classes(answers: Sequence[str]) -> list[str] | None:
    """The distinct answers (as :func:`normalize_answer` writes them) of a causal LM's target's
    train split where they form a small closed set, a classification task asked in words: 2 to
    :data:`ANSWER_CLASSES_AT_MOST` of them, each of 1 to :data:`ANSWER_CLASS_WORDS` words, each
    given twice on average (10 rows of 10 answers are no closed set, only a small split); else
    None (free answers: sums, sentences, a text source's whole texts), where a class of each
    answer would be noise. With them, exact match alone hid what a classifier's report shows: a
    pick answering "positive" to every row scored its share of the test split."""
    distinct = sorted({normalize_answer(a) for a in answers})
    if not 2 <= len(distinct) <= min(ANSWER_CLASSES_AT_MOST, len(answers) / 2):
        return None
    return distinct if all(1 <= len(a.split()) <= ANSWER_CLASS_WORDS for a in distinct) else None


def answers_macro_f1(predictions: Sequence[str], golds: Sequence[str]) -> float:
    """Macro-F1 of generated answers over the classes of the gold answers (:func:`macro_f1`),
    an answer of a class where :func:`exact_match` takes it for that gold answer ("Positive.",
    "positive"), any other answer a miss of the true class, as a classifier's stray class is."""
    classes = sorted({normalize_answer(g) for g in golds})

    def as_class(text: str) -> int:
        return next((i for i, c in enumerate(classes) if exact_match(text, c)), -1)

    return macro_f1([as_class(str(p)) for p in predictions], [classes.index(normalize_answer(g)) for g in golds])


def macro_f1(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Unweighted mean F1 over the classes of the gold ``labels`` (scikit-learn's
    ``f1_score(average="macro", labels=sorted(set(labels)))``).

    A prediction of a class no gold label has (the head also has the sources' classes)
    is a miss of the true class, not a class of its own with F1 0: averaging over the
    classes present in labels *or* predictions let one stray prediction take 0.95 to
    0.65, and made runs that strayed into different classes average over different sets."""
    classes = sorted(set(labels))
    scores = []
    for c in classes:
        tp = sum(1 for p, y in zip(predictions, labels) if p == c and y == c)
        fp = sum(1 for p, y in zip(predictions, labels) if p == c and y != c)
        fn = sum(1 for p, y in zip(predictions, labels) if p != c and y == c)
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def rescored_answers(result: dict[str, Any]) -> dict[str, Any] | None:
    """A causal LM's test ``result`` (:func:`~subsetctl.modeling.evaluate.evaluate_model`'s) with its kept answers scored
    again as :func:`exact_match` compares them now (each row's ``prediction`` against its
    ``gold``, where its ``scorer`` was exact match; reasoning-gym's scores kept): ``score``
    and ``metrics`` recomputed, the losses and warnings as they were, nothing generated, so
    results scored before answers were compared in Unicode NFKC need not load the model.
    ``macro_f1`` is left out (the evaluate stage gives it from the answers). None when the
    result does not keep every row's prediction, gold and scorer: it is evaluated again."""
    predictions = result.get("predictions")
    if not isinstance(predictions, list) or not predictions or len(predictions) != result.get("n") or not all(
            isinstance(p, dict) and isinstance(p.get("prediction"), str)
            and p.get("scorer") in ("exact_match", "reasoning_gym") and isinstance(p.get("score"), (int, float))
            for p in predictions):
        return None
    rows, em_scores = [], []
    for p in predictions:
        em = exact_match(p["prediction"], "" if p.get("gold") is None else str(p["gold"]))
        em_scores.append(em)
        rows.append({**p, "score": em if p["scorer"] == "exact_match" else p["score"]})
    metrics = {k: v for k, v in (result.get("metrics") or {}).items() if k != "macro_f1"}
    return {**result, "predictions": rows, "score": float(np.mean([p["score"] for p in rows])),
            "metrics": {**metrics, "exact_match": float(np.mean(em_scores))}}
