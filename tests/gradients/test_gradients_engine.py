"""The batched per-example gradient engine against one-at-a-time autograd."""

from __future__ import annotations

import pytest
import torch
from gradfixtures import (
    causal_batch,
    classifier_batch,
    parameter_fingerprint,
    tiny_bert_lora,
    tiny_llama_lora,
)

from subsetctl.errors import UserError
from subsetctl.gradients.engine import PerExampleGradientEngine, trainable_parameters
from subsetctl.gradients.projectors import RademacherProjector
from subsetctl.modeling.outputs import causal_lm_f, classifier_f

LENGTHS = [12, 7, 10, 4, 12]


def _p(model: torch.nn.Module) -> int:
    return sum(p.numel() for _, p in trainable_parameters(model))


def reference_gradients(model: torch.nn.Module, batch: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """Per-example gradients the slow way: each example alone (unpadded), one
    torch.autograd.grad per example, flattened in sorted-name order."""
    params = [p for _, p in trainable_parameters(model)]
    rows = []
    for i in range(batch["input_ids"].shape[0]):
        n = int(batch["attention_mask"][i].sum())
        ids = batch["input_ids"][i : i + 1, :n]
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
        if kind == "causal-lm":
            f = causal_lm_f(out.logits, ids, batch["response_mask"][i : i + 1, :n])
        else:
            f = classifier_f(out.logits, batch["labels"][i : i + 1])
        grads = torch.autograd.grad(f.sum(), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_batched_gradients_match_one_at_a_time() -> None:
    model = tiny_llama_lora()
    batch = causal_batch(LENGTHS)
    proj = RademacherProjector(p=_p(model), d=32, seed=3)
    engine = PerExampleGradientEngine(model, proj)
    _, _, chunks = engine.per_example_gradients(batch)
    G = torch.cat(chunks, dim=1)
    ref = reference_gradients(model, batch, "causal-lm")
    assert G.shape == ref.shape
    for i in range(len(LENGTHS)):  # every example on its own, not just on average
        assert rel(G[i], ref[i]) < 1e-4
    out = engine.compute(batch)
    assert rel(out.x, ref @ proj.matrix()) < 1e-4
    # per-example, not a batch sum: the rows differ from each other
    assert rel(G[0], G[1]) > 0.1


def test_gradients_batch_size_changes_the_features_only_by_float_rounding() -> None:
    """gradients.batch_size 1 against 5 (LENGTHS' five rows in one batch): the same f, projected
    gradients and repr to float32 rounding (the tiny project's store, 1 against its 4: 5e-7
    relative), not bit for bit:
    padding to the longest row of a batch changes the shapes of the matrix products, so the
    order of the sums. A row's results must not depend on the rows batched with it beyond that
    (gradients.batch_size is in the stage's fingerprint, so another one re-runs it)."""
    model = tiny_llama_lora()
    engine = PerExampleGradientEngine(model, RademacherProjector(p=_p(model), d=16, seed=0))
    batch = causal_batch(LENGTHS)
    together = engine.compute(batch)
    for i, n in enumerate(LENGTHS):  # batch_size 1: the row alone, padded to its own length
        alone = engine.compute({key: value[i : i + 1, :n] for key, value in batch.items()})
        torch.testing.assert_close(alone.f, together.f[i : i + 1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(alone.repr, together.repr[i : i + 1], rtol=1e-5, atol=1e-6)
        assert rel(alone.x[0], together.x[i]) < 1e-5


def test_f_and_repr_match_plain_forward() -> None:
    model = tiny_llama_lora()
    batch = causal_batch(LENGTHS)
    engine = PerExampleGradientEngine(model, RademacherProjector(p=_p(model), d=16, seed=0))
    out = engine.compute(batch)
    with torch.no_grad():
        plain = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
        )
    f = causal_lm_f(plain.logits, batch["input_ids"], batch["response_mask"])
    torch.testing.assert_close(out.f, f, rtol=1e-5, atol=1e-5)
    m = batch["attention_mask"].unsqueeze(-1).float()
    rep = (plain.hidden_states[-1] * m).sum(1) / m.sum(1)
    torch.testing.assert_close(out.repr, rep, rtol=1e-5, atol=1e-5)
    assert out.x.shape == (len(LENGTHS), 16) and out.repr.shape == (len(LENGTHS), engine.hidden_size)


def test_first_order_approximation_in_projected_space() -> None:
    """f(theta + P w) - f(theta) ~= x^T w for a small step w in R^d."""
    model = tiny_llama_lora()
    batch = causal_batch(LENGTHS)
    proj = RademacherProjector(p=_p(model), d=64, seed=5)
    engine = PerExampleGradientEngine(model, proj)
    f_, _, chunks = engine.per_example_gradients(batch)
    G = torch.cat(chunks, dim=1)
    out = engine.compute(batch)
    params = [p for _, p in trainable_parameters(model)]
    theta = torch.cat([p.detach().reshape(-1) for p in params])
    w = torch.randn(64, generator=torch.Generator().manual_seed(0))
    w = w * (1e-3 * theta.norm() / (proj.matrix() @ w).norm())  # step 0.1% of |theta|

    def f_at(vec: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            o = 0
            for p in params:
                p.copy_(vec[o : o + p.numel()].view_as(p))
                o += p.numel()
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            return causal_lm_f(logits, batch["input_ids"], batch["response_mask"])

    f0 = f_at(theta)
    torch.testing.assert_close(f0, f_, rtol=1e-5, atol=1e-5)
    # full parameter space: delta random, g^T delta
    delta = torch.randn(theta.shape, generator=torch.Generator().manual_seed(1))
    delta = delta * (1e-3 * theta.norm() / delta.norm())
    actual_full, predicted_full = f_at(theta + delta) - f0, G @ delta
    # projected space: delta = P w, x^T w
    actual, predicted = f_at(theta + proj.matrix() @ w) - f0, out.x @ w
    f_at(theta)
    err_full, err = rel(predicted_full, actual_full), rel(predicted, actual)
    print(f"first-order relative error at a step of 0.1% |theta|: full {err_full:.2e}, projected {err:.2e}")
    assert err_full < 0.05 and err < 0.05
    # the steps moved f: the comparison is not vacuous
    assert actual.abs().max() > 1e-6 and actual_full.abs().max() > 1e-6


def test_classifier_path_with_linear_head() -> None:
    model = tiny_bert_lora(modules_to_save=["classifier"])
    model.train()  # the engine must switch dropout off itself and restore the mode
    batch = classifier_batch([9, 5, 9, 3])
    proj = RademacherProjector(p=_p(model), d=16, seed=1)
    engine = PerExampleGradientEngine(model, proj, kind="classifier")
    assert any("classifier" in n and n.endswith("bias") for n in engine.param_names)
    _, _, chunks = engine.per_example_gradients(batch)
    assert model.training
    model.eval()
    ref = reference_gradients(model, batch, "classifier")
    G = torch.cat(chunks, dim=1)
    for i in range(4):
        assert rel(G[i], ref[i]) < 1e-4
    out = engine.compute(batch)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(out.f, classifier_f(logits, batch["labels"]), rtol=1e-5, atol=1e-5)
    assert out.repr.shape == (4, 32)


def test_unsupported_trainable_parameter_is_refused() -> None:
    model = tiny_llama_lora()
    model.base_model.model.model.norm.weight.requires_grad_(True)
    with pytest.raises(UserError, match="nn.Linear"):
        PerExampleGradientEngine(model, RademacherProjector(p=_p(model), d=8, seed=0))


def test_fingerprint_tracks_adapter_values() -> None:
    model = tiny_llama_lora()
    fp = parameter_fingerprint(model)
    assert fp == parameter_fingerprint(model)
    with torch.no_grad():
        trainable_parameters(model)[0][1].add_(1e-3)
    assert parameter_fingerprint(model) != fp


@pytest.mark.parametrize("head", ["lm_head", "none", "another_module"])
def test_scored_positions_only_match_full_logits(head: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """causal_lm_scores runs the output head on the response positions only; f, the CE
    and the LoRA gradients equal those of the full logits. A model whose head is not
    reached through get_output_embeddings() (none, or a module that does not get the
    hidden states) is scored from its full logits."""
    from subsetctl.modeling.outputs import causal_lm_scores, causal_lm_token_ce

    model = tiny_llama_lora()
    head_called = head == "lm_head"
    if head == "none":
        monkeypatch.setattr(type(model.get_base_model()), "get_output_embeddings", lambda self: None)
    elif head == "another_module":  # e.g. remote code naming its input embedding
        embeddings = model.get_input_embeddings()
        monkeypatch.setattr(type(model.get_base_model()), "get_output_embeddings", lambda self: embeddings)
    batch = causal_batch(LENGTHS)
    params = [p for _, p in trainable_parameters(model)]
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    f_ref = causal_lm_f(full, batch["input_ids"], batch["response_mask"])
    ce_ref = causal_lm_token_ce(full, batch["input_ids"], batch["response_mask"])
    g_ref = torch.autograd.grad((f_ref + ce_ref).sum(), params)
    out, f, ce, gathered = causal_lm_scores(model, batch)
    g = torch.autograd.grad((f + ce).sum(), params)
    n_scored = int(batch["response_mask"][:, 1:].sum())
    assert out.logits.shape[:2] == ((1, n_scored) if head_called else tuple(batch["input_ids"].shape))
    assert (gathered is not None) == head_called
    torch.testing.assert_close(f, f_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ce, ce_ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("lengths", [[12, 7, 10, 4, 12], [9, 3]])
def test_lora_on_the_output_head_gives_per_example_gradients(lengths: list[int]) -> None:
    """LoRA on lm_head: the head runs on the scored rows only, (1, N, H), so its inputs
    must be put back per example (they were reshaped to (B, -1, H): an error when B does
    not divide N, rows of one example counted for another when it does)."""
    from gradfixtures import VOCAB
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=128, vocab_size=VOCAB, max_position_embeddings=64)
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                             target_modules=["q_proj", "lm_head"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    batch = causal_batch(lengths)
    engine = PerExampleGradientEngine(model, RademacherProjector(p=_p(model), d=16, seed=0))
    _, _, chunks = engine.per_example_gradients(batch)
    G = torch.cat(chunks, dim=1)
    ref = reference_gradients(model, batch, "causal-lm")
    for i in range(len(lengths)):
        assert rel(G[i], ref[i]) < 1e-4


@pytest.mark.parametrize("head", ["lora", "modules_to_save"])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("case", ["rows_without_answer", "one_example", "head_not_found"])
def test_trainable_output_head_per_example_edge_cases(head: str, tied: bool, case: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A trainable output head (LoRA on lm_head, or lm_head in modules_to_save; tied
    embeddings or not) gives each example its own gradient when some examples have no
    answer token (zero rows), for a batch of one, and when the head is not found (full
    logits, nothing put back)."""
    from gradfixtures import VOCAB
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=128, vocab_size=VOCAB, max_position_embeddings=64,
                      tie_word_embeddings=tied)
    targets = ["q_proj", "lm_head"] if head == "lora" else ["q_proj"]
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets,
        modules_to_save=["lm_head"] if head == "modules_to_save" else None))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    assert any("lm_head" in n for n, _ in trainable_parameters(model))
    if case == "one_example":
        batch = causal_batch([9])
    else:
        batch = causal_batch([12, 7, 10, 4])
        if case == "rows_without_answer":
            batch["response_mask"][[1, 3]] = False
        else:
            monkeypatch.setattr(type(model.get_base_model()), "get_output_embeddings", lambda self: None)
    engine = PerExampleGradientEngine(model, RademacherProjector(p=_p(model), d=16, seed=0))
    _, _, chunks = engine.per_example_gradients(batch)
    G = torch.cat(chunks, dim=1)
    ref = reference_gradients(model, batch, "causal-lm")
    for i in range(G.shape[0]):
        if ref[i].norm() == 0:  # no answer token: no gradient
            assert G[i].abs().max() == 0
        else:
            assert rel(G[i], ref[i]) < 1e-4
