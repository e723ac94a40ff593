"""The real packaged SmolLM2: one-time GGUF conversion, fast reload, f on real text."""

from __future__ import annotations

import time

import numpy as np
import pytest

from subsetctl.modeling.evaluate import generate_answers
from subsetctl.modeling.lora import apply_lora, count_trainable
from subsetctl.modeling.packaged import CONVERSION_MARKER
from subsetctl.modeling.resolve import resolve_model
from subsetctl.modeling.train import compute_f

pytestmark = pytest.mark.slow


def test_smollm2_converts_once_reloads_fast_and_computes_f(tmp_path, capfd) -> None:
    notices: list[str] = []
    t0 = time.perf_counter()
    _model, tok, info = resolve_model(
        "smollm2-135m-instruct", "causal-lm", cache_dir=tmp_path, progress=notices.append
    )
    first = time.perf_counter() - t0
    folder = tmp_path / "smollm2-135m-instruct"
    assert (folder / CONVERSION_MARKER).is_file() and (folder / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    assert notices and "one time" in notices[0]
    assert info["architecture"] == "llama" and info["path"] == str(folder)
    assert tok.pad_token is not None and tok.chat_template

    t0 = time.perf_counter()
    again, _, info2 = resolve_model(
        "smollm2-135m-instruct", "causal-lm", cache_dir=tmp_path, progress=notices.append
    )
    second = time.perf_counter() - t0
    assert len(notices) == 2  # no second conversion
    assert info2["config_hash"] == info["config_hash"]
    # a ratio within one run, not seconds: on a loaded machine (another pytest-xdist worker
    # beside it) the reload took 3.0 s after a 209 s conversion
    assert second < first / 5, (first, second)

    rows = [
        {
            "source": "t",
            "prompt": "What is 2 + 2?",
            "response": "2 + 2 = 4",
            "label": -1,
            "metadata": "{}",
            "row": 0,
        },
        {
            "source": "t",
            "prompt": "Name the capital of France.",
            "response": "The capital of France is Paris.",
            "label": -1,
            "metadata": "{}",
            "row": 1,
        },
    ]
    f = compute_f(again, tok, rows, "causal-lm", max_length=64, batch_size=2)
    assert f.shape == (2,) and np.isfinite(f).all()
    # a sensible instruct model prefers the right answer over a wrong one
    wrong = compute_f(
        again,
        tok,
        [dict(rows[0], response="2 + 2 = 7"), dict(rows[1], response="The capital of France is Rome.")],
        "causal-lm",
        64,
        2,
    )
    assert (f > wrong).all(), (f, wrong)
    answer = generate_answers(again, tok, ["Name the capital of France."], 64, 12, 1)[0]
    assert "Paris" in answer, answer
    peft_model = apply_lora(again, r=8, kind="causal-lm")
    assert count_trainable(peft_model) == 460_800  # 30 layers x (q 8x(576+576) + v 8x(576+192))
    out = capfd.readouterr()
    assert out.out == "" and out.err == "", out  # nothing printed (no progress bars, no warnings)
