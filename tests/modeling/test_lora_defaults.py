"""Default LoRA targets: subsetctl's table first, then peft's, each checked on a tiny
random model of the architecture (linear layers only, as the gradients stage needs)."""

from __future__ import annotations

import pytest

from subsetctl.errors import UserError
from subsetctl.modeling.lora import (
    DEFAULT_TARGETS,
    PEFT_DEFAULT_TARGETS,
    PEFT_DEFAULTS_COPIED_FROM,
    apply_lora,
    default_target_modules,
    peft_default_targets,
)

H = 32
_COMMON = {"vocab_size": 97, "eos_token_id": 0, "bos_token_id": 0, "pad_token_id": 0}


def _config(name: str):
    import transformers as T

    blocks = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
              "max_position_embeddings": 64, "hidden_size": H, **_COMMON}
    return {
        "opt": lambda: T.OPTConfig(**{**blocks, "ffn_dim": 64, "word_embed_proj_dim": H}),
        "phi": lambda: T.PhiConfig(**blocks),
        "falcon": lambda: T.FalconConfig(hidden_size=H, num_hidden_layers=1, num_attention_heads=2, **_COMMON),
        "bloom": lambda: T.BloomConfig(hidden_size=H, n_layer=1, n_head=2, **_COMMON),
        "gpt_neo": lambda: T.GPTNeoConfig(hidden_size=H, num_layers=1, num_heads=2, attention_types=[[["global"], 1]],
                                          max_position_embeddings=64, **_COMMON),
        "gptj": lambda: T.GPTJConfig(n_embd=H, n_layer=1, n_head=2, rotary_dim=8, n_positions=64, **_COMMON),
        "codegen": lambda: T.CodeGenConfig(n_embd=H, n_layer=1, n_head=2, rotary_dim=8, n_positions=64, n_ctx=64,
                                           **_COMMON),
        "mpt": lambda: T.MptConfig(d_model=H, n_layers=1, n_heads=2, max_seq_len=64, **_COMMON),
        "olmo": lambda: T.OlmoConfig(**blocks),
        "olmo2": lambda: T.Olmo2Config(**blocks),
        "stablelm": lambda: T.StableLmConfig(**{**blocks, "num_key_value_heads": 2}),
        "starcoder2": lambda: T.Starcoder2Config(**{**blocks, "num_key_value_heads": 2}),
        "gpt_bigcode": lambda: T.GPTBigCodeConfig(n_embd=H, n_layer=1, n_head=2, n_positions=64, **_COMMON),
        "mixtral": lambda: T.MixtralConfig(**{**blocks, "num_key_value_heads": 2, "num_local_experts": 2}),
        "deberta-v2": lambda: T.DebertaV2Config(**blocks),
        "electra": lambda: T.ElectraConfig(**{**blocks, "embedding_size": H}),
        "albert": lambda: T.AlbertConfig(**{**blocks, "embedding_size": 16}),
        "modernbert": lambda: T.ModernBertConfig(**{**blocks, "local_attention": 16}),
    }[name]()


#: What each newly covered architecture gets; the first ones come from peft's table.
NEW_DEFAULTS = {
    "opt": ["q_proj", "v_proj"], "phi": ["q_proj", "v_proj", "fc1", "fc2"], "falcon": ["query_key_value"],
    "bloom": ["query_key_value"], "gpt_neo": ["q_proj", "v_proj"], "gptj": ["q_proj", "v_proj"],
    "codegen": ["qkv_proj"], "mpt": ["Wqkv"], "stablelm": ["q_proj", "v_proj"], "gpt_bigcode": ["c_attn"],
    "mixtral": ["q_proj", "v_proj"], "deberta-v2": ["query_proj", "value_proj"], "electra": ["query", "value"],
    # not in peft's table: subsetctl's own
    "olmo": ["q_proj", "v_proj"], "olmo2": ["q_proj", "v_proj"], "starcoder2": ["q_proj", "v_proj"],
    "albert": ["query", "value"], "modernbert": ["Wqkv"],
}
ENCODERS = {"deberta-v2", "electra", "albert", "modernbert"}
NO_CLASSIFIER = {"codegen"}  # transformers has no CodeGenForSequenceClassification


@pytest.mark.parametrize("name", sorted(NEW_DEFAULTS))
def test_architectures_without_a_default_before_get_one_that_adapts_linear_layers(name: str) -> None:
    """opt, falcon, mpt, deberta-v2, modernbert and others said "No default LoRA target
    modules are known": each now gets attention projections that are linear layers (the
    gradients stage refuses anything else), as a classifier and, for decoders, a causal LM."""
    import torch
    import transformers as T

    autos = ([] if name in NO_CLASSIFIER else [T.AutoModelForSequenceClassification]) + (
        [] if name in ENCODERS else [T.AutoModelForCausalLM])
    for auto in autos:
        torch.manual_seed(0)
        model = auto.from_config(_config(name))
        assert default_target_modules(model) == NEW_DEFAULTS[name]
        peft_model = apply_lora(model, r=2, kind="causal-lm" if auto is T.AutoModelForCausalLM else "classifier")
        adapted = {n.split(".")[-4] for n, p in peft_model.named_parameters() if p.requires_grad and "lora_A" in n}
        assert adapted == set(NEW_DEFAULTS[name]), (auto.__name__, adapted)


def _copied_entries_peft_contradicts(peft: dict[str, list[str]]) -> dict[str, object]:
    """The entries of subsetctl's copy that ``peft`` (a peft's name-list table) gives other names,
    as peft's names; an entry an older peft lacks is none of them (peft 0.18.0, which subsetctl
    takes, has no ``nemotron_h``: the copy was made from :data:`PEFT_DEFAULTS_COPIED_FROM`)."""
    return {k: peft[k] for k, v in PEFT_DEFAULT_TARGETS.items() if k in peft and peft[k] != v}


def test_subsetctls_copy_of_peft_defaults_is_peft_table() -> None:
    """plan reads peft's defaults from subsetctl's copy (importing peft imports torch): each entry
    is peft's for a type subsetctl's own table leaves out (which run reads peft's for), where the
    installed peft has it, and every type this file checks peft's defaults of is copied."""
    assert _copied_entries_peft_contradicts(peft_default_targets()) == {}
    assert not set(PEFT_DEFAULT_TARGETS) & set(DEFAULT_TARGETS)
    assert {k for k in NEW_DEFAULTS if k not in DEFAULT_TARGETS} <= set(PEFT_DEFAULT_TARGETS)


def test_an_older_peft_lacking_a_copied_entry_does_not_fail_the_check_of_the_copy() -> None:
    """With peft 0.18.0 (which pyproject allows) the check of the copy failed the suite: that peft
    has no ``nemotron_h`` entry, copied from a later one. An entry peft lacks is no contradiction;
    one it gives other names still is."""
    older = {k: v for k, v in PEFT_DEFAULT_TARGETS.items() if k != "nemotron_h"}
    assert _copied_entries_peft_contradicts(older) == {}
    assert _copied_entries_peft_contradicts({**older, "opt": ["q_proj"]}) == {"opt": ["q_proj"]}


#: peft's entries subsetctl's copy leaves out, and why: run never takes them
NOT_COPIED = {"llama4": "AutoModelForCausalLM loads a Llama 4's text model, model_type llama4_text"}


def test_subsetctls_copy_of_peft_defaults_leaves_out_none_run_takes() -> None:
    """The copy had 13 of peft's entries: a BART, RWKV, Nemotron-H, DeBERTa, LayoutLM, mT5 or ChatGLM
    model, whose default run takes from peft, still got no LoRA figure from plan. Every name-list entry
    of peft's table that subsetctl's own leaves out is copied (a newer peft's new entries: copy them,
    or name them in NOT_COPIED with the reason run never takes them). Checked with the peft the copy
    was made from: another version's table may hold entries of its own, which the test above checks
    do not contradict the copy, and a newer peft installed must not fail the suite for them."""
    import peft as peft_package
    import torch
    import transformers as T

    if peft_package.__version__ != PEFT_DEFAULTS_COPIED_FROM:
        pytest.skip(f"subsetctl's copy was made from peft {PEFT_DEFAULTS_COPIED_FROM}, this is {peft_package.__version__}")
    peft = peft_default_targets()
    wanted = {k: v for k, v in peft.items() if k not in DEFAULT_TARGETS and k not in NOT_COPIED}
    assert PEFT_DEFAULT_TARGETS == wanted, sorted(set(wanted) ^ set(PEFT_DEFAULT_TARGETS))
    text = {"hidden_size": H, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 97, "num_local_experts": 2}
    with torch.device("meta"):
        model = T.AutoModelForCausalLM.from_config(T.Llama4Config(text_config=text))
    assert model.config.model_type == "llama4_text" not in peft  # (run refuses it: no default)


def test_the_defaults_existing_projects_were_trained_with_are_unchanged() -> None:
    """These names are in every existing project's adapter: peft's table must not override them."""
    assert {k: DEFAULT_TARGETS[k] for k in (
        "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gpt2", "gpt_neox", "bert", "roberta",
        "xlm-roberta", "distilbert", "t5")} == {
        "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
        "qwen3": ["q_proj", "v_proj"], "gemma": ["q_proj", "v_proj"], "gemma2": ["q_proj", "v_proj"],
        "phi3": ["qkv_proj"], "gpt2": ["c_attn"], "gpt_neox": ["query_key_value"], "bert": ["query", "value"],
        "roberta": ["query", "value"], "xlm-roberta": ["query", "value"], "distilbert": ["q_lin", "v_lin"],
        "t5": ["q", "v"]}


def test_an_unknown_architecture_names_its_linear_layers_not_the_whole_table(monkeypatch) -> None:
    """The error listed every known default (with peft's table, some 60 entries): it now
    names the model type and the model's own linear layers, in one paragraph."""
    import torch
    import transformers as T

    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(_config("olmo"))
    monkeypatch.setattr(model.config, "model_type", "nonesuch")
    with pytest.raises(UserError) as caught:
        apply_lora(model, r=2)
    message = str(caught.value)
    assert "'nonesuch'" in message and "neither subsetctl nor peft has a default" in message
    assert "linear layers this model has are: down_proj, gate_proj, k_proj, lm_head, o_proj" in message
    assert "\n" not in message and "known defaults" not in message and "gpt_neox" not in message


def test_a_peft_default_that_does_not_fit_the_model_is_not_used(monkeypatch) -> None:
    """peft's names are trusted only when all are linear layers of the model: otherwise
    the spec is asked to name the targets, with why."""
    import torch
    import transformers as T

    from subsetctl.modeling import lora

    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(_config("olmo"))
    monkeypatch.setattr(model.config, "model_type", "nonesuch")
    monkeypatch.setattr(lora, "peft_default_targets", lambda: {"nonesuch": ["q_proj", "embed_tokens"]})
    with pytest.raises(UserError, match=r"peft's default for it \(q_proj, embed_tokens\) are not all linear"):
        default_target_modules(model)


def test_a_project_on_an_opt_model_runs_with_the_default_targets(tmp_path) -> None:
    """meta_init and gradients on a tiny OPT with no model.lora.target_modules in the spec."""
    import json

    import torch
    import transformers as T
    import yaml
    from tinymodels import char_tokenizer, tiny_project_spec

    from subsetctl.api import run_project
    from subsetctl.reporter import SilentReporter

    tok = char_tokenizer()
    config = _config("opt")
    config.vocab_size, config.eos_token_id, config.bos_token_id, config.pad_token_id = len(tok), *[tok.eos_token_id] * 3
    torch.manual_seed(0)
    T.OPTForCausalLM(config).save_pretrained(tmp_path / "opt")
    tok.save_pretrained(tmp_path / "opt")
    project = tmp_path / "project"
    project.mkdir()
    for name, rows in (("target", 20), ("a", 10), ("b", 10)):
        text = "".join(json.dumps({"prompt": f"{name} {i}=", "response": str(i)}) + "\n" for i in range(rows))
        (project / f"{name}.jsonl").write_text(text, encoding="utf-8")
    spec = tiny_project_spec(tmp_path / "opt")
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    results = run_project(project, until="gradients", reporter=SilentReporter())
    assert [r["action"] for r in results] == ["ran", "ran", "ran"]
    adapter = json.loads((project / ".subsetctl" / "meta_init").rglob("adapter_config.json").__next__().read_text())
    assert adapter["target_modules"] == ["q_proj", "v_proj"]


def _tiny_gemma3():
    """A tiny random Gemma 3 of the multimodal kind (``model_type`` "gemma3"), as
    ``AutoModelForCausalLM`` loads it: ``Gemma3ForConditionalGeneration``, its SigLIP vision
    tower's attention named as its language model's (``q_proj``, ``v_proj``)."""
    import torch
    import transformers as T

    text = T.Gemma3TextConfig(hidden_size=H, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              num_key_value_heads=1, head_dim=16, **_COMMON)
    vision = T.SiglipVisionConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=28, patch_size=14)
    torch.manual_seed(0)
    return T.AutoModelForCausalLM.from_config(
        T.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4))


def test_a_multimodal_gemma3_gets_lora_on_its_language_models_attention_alone(tmp_path) -> None:
    """Gemma 3 4B and up (``gemma3``) stopped run with "No default LoRA target modules are known"
    (peft's table has ``gemma3_text`` alone), and naming q_proj, v_proj put LoRA on the vision tower
    too, which no text reaches. The default adapts the language model's query and value projections
    only, and the adapter saved so loads back onto them."""
    from subsetctl.modeling.lora import load_adapter, write_adapter

    model = _tiny_gemma3()
    assert type(model).__name__ == "Gemma3ForConditionalGeneration"
    assert default_target_modules(model) == ["q_proj", "v_proj"]
    assert any("vision_tower" in n and n.endswith("q_proj") for n, _ in model.named_modules())
    peft_model = apply_lora(model, r=2)
    adapted = {n.rsplit(".lora_A", 1)[0] for n, p in peft_model.named_parameters() if p.requires_grad and "lora_A" in n}
    assert adapted == {f"base_model.model.model.language_model.layers.{i}.self_attn.{p}"
                       for i in (0, 1) for p in ("q_proj", "v_proj")}, adapted
    write_adapter(peft_model, tmp_path / "adapter")
    again = load_adapter(_tiny_gemma3(), tmp_path / "adapter")
    assert {n for n, _ in again.named_parameters() if "lora_A" in n} == {
        n for n, _ in peft_model.named_parameters() if "lora_A" in n}


def _tiny_gemma4():
    """A tiny random Gemma 4 (``model_type`` "gemma4"), as ``AutoModelForCausalLM`` loads it:
    ``Gemma4ForConditionalGeneration``, its vision and audio towers' attention named as its
    language model's (``q_proj``, ``v_proj``), wrapped linear layers (``Gemma4ClippableLinear``)."""
    import torch
    import transformers as T

    text = T.Gemma4TextConfig(hidden_size=H, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              num_key_value_heads=1, head_dim=16, global_head_dim=16, hidden_size_per_layer_input=8,
                              vocab_size_per_layer_input=97, layer_types=["sliding_attention", "full_attention"],
                              **_COMMON)
    vision = T.Gemma4VisionConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
                                  num_key_value_heads=2, head_dim=8, position_embedding_size=64)
    audio = T.Gemma4AudioConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, output_proj_dims=16,
                                subsampling_conv_channels=[4, 4])
    torch.manual_seed(0)
    return T.AutoModelForCausalLM.from_config(
        T.Gemma4Config(text_config=text.to_dict(), vision_config=vision.to_dict(), audio_config=audio.to_dict()))


def test_a_gemma4_gets_lora_on_its_language_models_attention_alone(tmp_path) -> None:
    """Gemma 4 (``gemma4``) stopped run with "No default LoRA target modules are known" (peft's entry
    for it is a regular expression, which subsetctl's use of peft's table leaves out). The default
    adapts the language model's query and value projections only, not the vision and audio towers'
    (wrapped layers named alike, which LoRA here cannot take), and the adapter saved loads back."""
    from subsetctl.modeling.lora import load_adapter, write_adapter

    model = _tiny_gemma4()
    assert type(model).__name__ == "Gemma4ForConditionalGeneration"
    assert default_target_modules(model) == ["q_proj", "v_proj"]
    assert {n.split(".")[1] for n, _ in model.named_modules() if n.endswith(".q_proj")} == {
        "language_model", "vision_tower", "audio_tower"}
    peft_model = apply_lora(model, r=2)
    adapted = {n.rsplit(".lora_A", 1)[0] for n, p in peft_model.named_parameters() if p.requires_grad and "lora_A" in n}
    assert adapted == {f"base_model.model.model.language_model.layers.{i}.self_attn.{p}"
                       for i in (0, 1) for p in ("q_proj", "v_proj")}, adapted
    assert all(p.requires_grad == ("lora_" in n) for n, p in peft_model.named_parameters())
    write_adapter(peft_model, tmp_path / "adapter")
    again = load_adapter(_tiny_gemma4(), tmp_path / "adapter")
    assert {n for n, _ in again.named_parameters() if "lora_A" in n} == {
        n for n, _ in peft_model.named_parameters() if "lora_A" in n}
