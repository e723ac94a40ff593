"""A classifier's layers that loading a base checkpoint initializes at random besides
the head (DeBERTa-v2's pooler, DistilBERT's pre_classifier, ModernBERT's head, BERT's
pooler when the checkpoint lacks it) are trained with the head and saved in the adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from subsetctl.modeling.lora import apply_lora, load_adapter, save_adapter, trained_layers_of
from subsetctl.modeling.resolve import forget_notices_given, resolve_model

_BLOCKS = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
           "max_position_embeddings": 64, "pad_token_id": 0}


def _save(folder: Path, build) -> Path:
    """Save ``build(vocab_size)`` (a base model, no classification head) with the char tokenizer."""
    from tinymodels import char_tokenizer

    tok = char_tokenizer()
    torch.manual_seed(0)
    build(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _deberta(folder: Path) -> Path:
    from transformers import DebertaV2Config, DebertaV2Model

    return _save(folder, lambda v: DebertaV2Model(DebertaV2Config(vocab_size=v, **_BLOCKS)))


def _load(folder: Path) -> tuple:
    said: list[str] = []
    forget_notices_given()
    model, _, info = resolve_model(str(folder), "classifier", num_labels=2, progress=said.append)
    return model, info, [s for s in said if "no weights for" in s]


def test_deberta_pooler_is_found_trained_and_saved_with_the_adapter(tmp_path) -> None:
    """DeBERTa-v2's pooler is not in a base (or masked-LM) checkpoint: it stayed frozen at
    its random initialization under the trained head."""
    folder = _deberta(tmp_path / "deberta")
    model, info, said = _load(folder)
    assert info["new_layers"] == ["pooler.dense"]
    assert said == [(f"The model folder {folder.resolve()} has no weights for pooler.dense, which "
                     "DebertaV2ForSequenceClassification adds besides the classification head: transformers "
                     "initializes it at random (seeded); pooler.dense is trained with the head.")]
    peft_model = apply_lora(model, r=2, kind="classifier", train_also=info["new_layers"])
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert {n for n in trainable if "pooler" in n} == {
        "base_model.model.pooler.dense.modules_to_save.default.weight",
        "base_model.model.pooler.dense.modules_to_save.default.bias"}
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "pooler" in name and p.requires_grad:
                p.add_(1.0)  # as training would move it
    save_adapter(peft_model, tmp_path / "adapter")
    assert trained_layers_of(tmp_path / "adapter") == ["pooler.dense"]
    loaded = load_adapter(_load(folder)[0], tmp_path / "adapter")
    ids = torch.tensor([[3, 4, 5, 6]])
    peft_model.eval()
    with torch.no_grad():
        assert torch.allclose(peft_model(input_ids=ids).logits, loaded(input_ids=ids).logits, atol=1e-6)


def test_only_the_linear_new_layers_of_modernbert_are_trained(tmp_path) -> None:
    """A bare ModernBERT lacks its classifier's head.dense and head.norm: the linear one is
    trained (the gradients stage takes linear layers only), the LayerNorm keeps its ones."""
    from transformers import ModernBertConfig, ModernBertModel

    folder = _save(tmp_path / "modernbert", lambda v: ModernBertModel(
        ModernBertConfig(vocab_size=v, local_attention=16, **_BLOCKS)))
    _, info, said = _load(folder)
    assert info["new_layers"] == ["head.dense"]
    assert said and said[0].endswith("head.dense is trained with the head; head.norm (not a linear layer) keeps "
                                     "its initial values.")


@pytest.mark.parametrize("kind", ["bert with its pooler", "roberta", "llama", "distilbert"])
def test_models_with_nothing_new_but_the_head_are_as_before(tmp_path, kind: str) -> None:
    """No notice, no new layers: the head alone is trained, as subsetctl always did
    (DistilBERT's pre_classifier with it: peft takes it for the "classifier" head)."""
    from transformers import (
        BertConfig,
        BertModel,
        DistilBertConfig,
        DistilBertModel,
        LlamaConfig,
        LlamaModel,
        RobertaConfig,
        RobertaModel,
    )

    build = {"bert with its pooler": lambda v: BertModel(BertConfig(vocab_size=v, **_BLOCKS)),
             "roberta": lambda v: RobertaModel(RobertaConfig(vocab_size=v, **_BLOCKS)),
             "llama": lambda v: LlamaModel(LlamaConfig(vocab_size=v, **_BLOCKS)),
             "distilbert": lambda v: DistilBertModel(DistilBertConfig(
                 vocab_size=v, dim=32, n_layers=1, n_heads=2, hidden_dim=64, pad_token_id=0))}[kind]
    model, info, said = _load(_save(tmp_path / "model", build))
    assert "new_layers" not in info and not said
    peft_model = apply_lora(model, r=2, kind="classifier")
    assert peft_model.peft_config["default"].modules_to_save[:1] == ["score" if kind == "llama" else "classifier"]
    trained = {n.split(".modules_to_save")[0] for n, p in peft_model.named_parameters()
               if p.requires_grad and "modules_to_save" in n}
    assert trained == {"base_model.model." + h for h in (
        ["score"] if kind == "llama" else ["classifier", "pre_classifier"] if kind == "distilbert"
        else ["classifier"])}


def test_a_deberta_project_trains_the_pooler_from_meta_init_to_evaluation(tmp_path) -> None:
    """meta_init saves the pooler in theta*; gradients, the fine-tunes and evaluation
    train and load it as well."""
    from safetensors.torch import load_file

    from subsetctl.api import run_project
    from subsetctl.reporter import SilentReporter
    from subsetctl.stages import common

    folder = _deberta(tmp_path / "deberta")
    project = tmp_path / "project"
    project.mkdir()
    for name, flip in (("target", 0), ("a", 0), ("b", 1)):
        rows = [{"prompt": f"{name} {i}", "label": ["even", "odd"][(i + flip) % 2]} for i in range(20)]
        (project / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    loader = {"type": "jsonl", "label_field": "label"}
    spec = {"project": {"name": "p", "seed": 0},
            "model": {"source": str(folder), "kind": "classifier", "max_length": 16, "lora": {"r": 2, "alpha": 4}},
            "target": {"name": "target", "loader": {**loader, "path": "target.jsonl"},
                       "split": {"train": 10, "validation": 5, "test": 5}},
            "sources": [{"name": n, "loader": {**loader, "path": f"{n}.jsonl"}} for n in ("a", "b")],
            "meta_init": {"steps": 2, "batch_size": 4}, "gradients": {"d": 16, "batch_size": 4},
            "search": {"strategies": [{"name": "exhaustive"}]}, "finetune": {"steps": 1, "batch_size": 4},
            "verify": {"enabled": False}, "executor": {"backend": "sequential", "n_jobs": 1}}
    import yaml

    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    reporter = SilentReporter()
    results = run_project(project, until="evaluate", reporter=reporter)
    assert [r["action"] for r in results][-1] == "ran"
    state = project / ".subsetctl"
    assert trained_layers_of(state / "meta_init" / "adapter") == ["pooler.dense"]
    theta = load_file(str(state / "meta_init" / "adapter" / "adapter_model.safetensors"))
    initial = _load(folder)[0].pooler.dense.weight
    assert not torch.equal(theta["base_model.model.pooler.dense.weight"], initial)  # trained
    runs = list((state / "finetune").rglob("adapter_config.json"))
    assert runs and all(trained_layers_of(r.parent) == ["pooler.dense"] for r in runs)
    assert sum("no weights for pooler.dense" in m for m in reporter.messages) == 1
    # a theta* trained before these layers were (the head alone) keeps the project as it was
    config = state / "meta_init" / "adapter" / "adapter_config.json"
    data = json.loads(config.read_text())
    data["modules_to_save"] = [m for m in data["modules_to_save"] if m != "pooler.dense"]
    config.write_text(json.dumps(data))

    class Ctx:
        spec = type("S", (), {"model": type("M", (), {"kind": "classifier"})})()
        reporter = SilentReporter()

        @staticmethod
        def upstream_dir(stage: str) -> Path:
            return state / stage

    Ctx.project = type("P", (), {"root": project})()
    forget_notices_given()
    assert common.new_layers_trained(Ctx, {"new_layers": ["pooler.dense"]}) == []
    assert common.new_layers_trained(Ctx, {"new_layers": ["pooler.dense"]}, meta_init=True) == ["pooler.dense"]
    # the loading notice said the pooler is trained with the head: corrected, once a run
    assert common.new_layers_trained(Ctx, {"new_layers": ["pooler.dense"]}, state / "meta_init" / "adapter") == []
    said = [m for m in Ctx.reporter.messages if "not trained in this project" in m]
    assert len(said) == 1 and said[0].startswith("pooler.dense is not trained in this project, against the notice")
    assert f"subsetctl run {project} --force meta_init --force finetune" in said[0]  # copy-pasteable anywhere
    assert common.new_layers_trained(Ctx, {}) == [] and len(Ctx.reporter.messages) == 1  # nothing loaded: no word
