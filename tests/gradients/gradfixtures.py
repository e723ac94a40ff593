"""Tiny random-config models and padded batches for the gradient tests (imported by
the test modules; a uniquely named module, not conftest, so other test folders' helpers
cannot shadow it)."""

from __future__ import annotations

import hashlib

import torch
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

VOCAB = 97


def tiny_llama_lora(seed: int = 0) -> torch.nn.Module:
    """A 2-layer random Llama with LoRA r=4 on q_proj, v_proj; lora_B made non-zero so
    that the lora_A gradients are not trivially zero."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=VOCAB,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(cfg)
    model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    model.eval()
    return model


def causal_batch(lengths: list[int], seed: int = 1) -> dict[str, torch.Tensor]:
    """Right-padded random tokens with variable lengths; the response is each example's
    last third (at least one token), as collate_causal_lm lays it out."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.zeros((len(lengths), T), dtype=torch.long)
    attn = torch.zeros((len(lengths), T), dtype=torch.long)
    resp = torch.zeros((len(lengths), T), dtype=torch.bool)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(1, VOCAB, (n,), generator=g)
        attn[i, :n] = 1
        k = max(1, n // 3)
        resp[i, n - k : n] = True
    return {"input_ids": ids, "attention_mask": attn, "response_mask": resp}


def tiny_bert_lora(modules_to_save: list[str] | None = None) -> torch.nn.Module:
    """A 2-layer random BERT classifier (3 labels) with LoRA r=4 on query, value."""
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    model = BertForSequenceClassification(cfg)
    model = get_peft_model(
        model,
        LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["query", "value"],
            lora_dropout=0.1,
            modules_to_save=modules_to_save,
        ),
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    return model


def classifier_batch(lengths: list[int], seed: int = 2) -> dict[str, torch.Tensor]:
    """Right-padded random tokens with labels in {0, 1, 2}."""
    g = torch.Generator().manual_seed(seed)
    b = causal_batch(lengths, seed)
    return {
        "input_ids": b["input_ids"],
        "attention_mask": b["attention_mask"],
        "labels": torch.randint(0, 3, (len(lengths),), generator=g),
    }


def parameter_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the trainable parameters (names, shapes, values): the tests check
    with it that taking gradients leaves the model unchanged."""
    from subsetctl.gradients.engine import trainable_parameters

    h = hashlib.sha256()
    for name, param in trainable_parameters(model):
        t = param.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]
