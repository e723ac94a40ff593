"""Helpers for the modeling tests: example rows (a uniquely named module, not conftest,
so other test folders' helpers cannot shadow it). The tiny model and its char tokenizer
are in tests/tinymodels.py."""

from __future__ import annotations

ARITH = [
    ("1+1", "2"),
    ("2+3", "5"),
    ("4+4", "8"),
    ("3+1", "4"),
    ("5+2", "7"),
    ("6+3", "9"),
    ("2+2", "4"),
    ("1+5", "6"),
]


def causal_rows(pairs=ARITH, source: str = "arith") -> list[dict]:
    """Rows in the common example format for a causal LM."""
    return [
        {"source": source, "prompt": p, "response": r, "label": -1, "metadata": "{}", "row": i}
        for i, (p, r) in enumerate(pairs)
    ]


def classifier_rows(n: int = 12) -> list[dict]:
    """Rows for a 2-class classifier: label 1 when the text mentions 'good'."""
    words = ["good movie", "bad film", "good plot", "bad acting", "really good", "very bad"]
    return [
        {
            "source": "sent",
            "prompt": words[i % len(words)],
            "response": "",
            "label": int("good" in words[i % len(words)]),
            "metadata": "{}",
            "row": i,
        }
        for i in range(n)
    ]
