"""How much memory a model stage will take, estimated before it runs (``plan``, ``doctor``).

Read without torch or loading anything: the parameter count and shapes from the headers of
the model folder's safetensors files (a few KB each), its config.json for the layer sizes,
and the spec's dtype, batch sizes, ``model.max_length``, LoRA rank and projection. The
estimate is the peak resident memory of the ``run`` process while the stage runs:

- the libraries (torch, transformers, peft, the tokenizer): :data:`LIBRARIES_BYTES`;
- the base model's weights, held in ``model.dtype`` whatever the files store; while it
  loads, also the files' own bytes where they store another dtype (they are mapped while
  copied: bfloat16 does not lower the peak of a float32 checkpoint);
- a batch's activations kept for the backward pass (training stages and gradients) or
  those of one forward pass and the generation's cache (evaluate), from the tokens a batch
  holds (batch size times ``model.max_length``) and the layer sizes;
- gradients: each example's LoRA gradient (batch x p floats, twice over while projected)
  and the projection matrix, never more than ``gradients.memory_budget_mb``.

The constants were measured with ``/usr/bin/time -v`` on a random 0.47B Llama (24 layers,
hidden 1024, vocabulary 32,000; see README's Measured); a rough guide, meant to tell a
machine that is far too small before a run, not to the last 10%.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: resident memory of a model stage's process before the model loads: Python, torch,
#: transformers, peft and the tokenizer (measured: 0.53 GB for a 2-layer model's meta_init)
LIBRARIES_BYTES = int(0.55 * 2**30)

#: bytes a parameter or activation takes in each ``model.dtype``
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

#: the stages that load the model, whose memory :func:`stage_peak_bytes` estimates
MODEL_STAGES = ("meta_init", "gradients", "verify", "finetune", "evaluate")


def loads_model(stage: str, spec: Any) -> bool:
    """Whether ``stage`` loads the model with ``spec``: the :data:`MODEL_STAGES`, and the
    search whose estimator fine-tunes for real (``true_finetune``: one subset at a time, in
    this process, with verify's batch size and budget; a plugin's that sets ``needs_model``).
    An estimator not registered here (a spec's plugin not imported, with ``--no-plugins``)
    loads none as far as this says: the spec check says why it is unknown, and this raised it
    from doctor's memory check, ending every check after it."""
    if stage in MODEL_STAGES:
        return True
    if stage != "search":
        return False
    from subsetctl.errors import UserError
    from subsetctl.registry import ESTIMATORS

    try:
        estimator = ESTIMATORS.get(spec.estimate.estimator)
    except UserError:
        return False
    return bool(getattr(estimator, "needs_model", False))

#: activation values kept per token and layer for the backward pass, as multiples of the
#: hidden size and of the MLP's intermediate size (the attention's and the MLP's inputs and
#: outputs, norms, the gated activation), calibrated on the measured run
_HIDDEN_PER_LAYER = 10.0
_INTERMEDIATE_PER_LAYER = 2.5


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a model: its parameter count, the bytes its files store
    them in, the LoRA parameters a
    target module list gives per unit of rank (None when the targets are not known without
    loading it), and its layer sizes (0 where config.json does not say)."""

    params: int
    stored_bytes: int
    lora_per_rank: int | None
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    #: read from config.json alone (a hub cache that holds the config, not the weights): the
    #: counts are worked out from its layer sizes, so rougher
    from_config: bool = False
    #: worked out from config.json for its text decoder alone, where the model's causal-LM class
    #: also loads parts that are not counted (:data:`_TOWERS_NOT_COUNTED`: a vision or audio tower)
    decoder_only: bool = False


#: bytes an element of each safetensors dtype takes (others count as 4)
_STORED_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1}


def _safetensors_shapes(path: Path) -> dict[str, tuple[list[int], int]]:
    """Tensor name -> shape and bytes an element, from a safetensors file's header alone
    (8 bytes of length, then JSON); {} for a file that is not one."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100 * 2**20:
                return {}
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return {}
    return {name: (list(entry["shape"]), _STORED_BYTES.get(str(entry.get("dtype")), 4))
            for name, entry in header.items() if isinstance(entry, dict) and isinstance(entry.get("shape"), list)}


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files transformers loads from ``folder``: those its
    ``model.safetensors.index.json`` lists, else ``model.safetensors``, else every
    ``*.safetensors`` (not a ``consolidated.safetensors`` beside the shards, as some hub
    repositories keep for other tools, which would count the weights twice)."""
    try:
        index = json.loads((folder / "model.safetensors.index.json").read_text(encoding="utf-8"))
        return [folder / name for name in sorted(set(index["weight_map"].values()))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    single = folder / "model.safetensors"
    return [single] if single.is_file() else sorted(folder.glob("*.safetensors"))


def read_shape(folder: Path, target_modules: list[str] | None) -> ModelShape | None:
    """The :class:`ModelShape` of the model in ``folder`` (its ``*.safetensors`` files and
    config.json), with LoRA on ``target_modules`` (None: the default run takes for the model
    type, where it is known without peft: :func:`~subsetctl.modeling.lora.known_default_targets`); None when the folder holds no safetensors weights (a
    ``pytorch_model.bin`` checkpoint is not read: unpickling it is loading it)."""
    from subsetctl.modeling.lora import known_default_targets, peft_target_modules, targeted

    found: dict[str, tuple[list[int], int]] = {}
    for file in _weight_files(folder):
        found.update(_safetensors_shapes(file))
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    config = config if isinstance(config, dict) else {}
    if not found:
        return _shape_from_config(config, target_modules)
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    hidden = _config_size(text, "hidden_size")
    model_type = config.get("model_type")
    defaults = known_default_targets(str(model_type))  # (a Gemma 3's taken under its language model alone, as run does)
    targets = target_modules if target_modules is not None else (
        peft_target_modules(model_type, defaults) if defaults is not None else None)
    shapes = {name: shape for name, (shape, _) in found.items()}
    matrices = [name.removesuffix(".weight") for name, shape in shapes.items()
                if len(shape) == 2 and name.endswith(".weight")]
    lora = None
    # (a target, named in the spec or by default, that names no matrix, a layer the model lacks: run
    # refuses the model, so no figure, as the config-only count gives none)
    named = target_modules if target_modules is not None else defaults
    if targets is not None and set(named or ()) <= {name.rsplit(".", 1)[-1] for name in matrices}:
        lora = sum(shapes[f"{name}.weight"][0] + shapes[f"{name}.weight"][1] for name in matrices
                   if targeted(name, targets))
    return ModelShape(
        params=sum(math.prod(shape) for shape in shapes.values()),
        stored_bytes=sum(math.prod(shape) * width for shape, width in found.values()),
        lora_per_rank=lora,
        layers=_config_size(text, "num_hidden_layers"),
        hidden=hidden,
        intermediate=_config_size(text, "intermediate_size") or 4 * hidden,
        vocab=_config_size(text, "vocab_size"),
    )


#: the keys a decoder's config.json may give each size under: transformers' name first, then
#: the names of the config classes' ``attribute_map`` (GPT-2's ``n_embd``, ``n_layer``, ``n_head``,
#: ``n_inner``, ``n_positions``; others' ``d_model``, ``num_layers``, ``num_heads``). The map is
#: a class attribute, not in config.json, so reading it would import transformers; this table
#: holds the decoder-only aliases it lists.
_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim", "embed_dim", "hidden_dim"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "num_key_value_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "d_ff"),
    "vocab_size": ("vocab_size", "n_vocab"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions"),
    "head_dim": ("head_dim",),
}


def _config_size(config: dict[str, Any], name: str) -> int:
    """The size ``name`` (a key of :data:`_CONFIG_KEYS`, as transformers names it) in a
    config.json's ``config``, under whichever of its aliases the config writes; 0 where none
    is a positive integer (GPT-2's ``n_inner: null`` means 4 x the hidden size)."""
    return next((config[k] for k in _CONFIG_KEYS[name] if _positive_int(config.get(k))), 0)


#: decoder-only model types whose MLP is gated (three matrices: gate, up, down), as
#: :func:`_shape_from_config` counts them
_GATED_MLP_TYPES = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text",
                              "phi3", "olmo", "olmo2", "granite", "smollm3", "stablelm", "cohere", "exaone4",
                              "qwen2_moe", "qwen3_moe", "llama4_text", "mllama_text_model"})

#: model types whose config class defaults to a head of its own (``tie_word_embeddings: false``),
#: checked against transformers 5's config classes: a config.json that leaves the key out (one
#: written by hand, or trimmed) has an untied head of vocabulary x hidden for these, tied for others
_UNTIED_BY_DEFAULT = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "phi3",
                                "phi", "olmo", "olmo2", "olmoe", "granite", "granitemoe", "gpt_neox", "stablelm",
                                "gptj", "glm", "exaone4", "ministral", "deepseek_v3", "llama4_text"})

#: model types whose attention normalises each head's queries and keys (``q_norm``, ``k_norm``,
#: one weight a head dimension); OLMo 2 normalises all heads' at once (below)
_QK_NORM_TYPES = frozenset({"qwen3", "qwen3_moe", "gemma3_text", "exaone4"})

#: model types with four norms a layer (before and after the attention and the MLP), not two
_FOUR_NORM_TYPES = frozenset({"gemma2", "gemma3_text", "glm4"})

#: model types whose norms are LayerNorms with a bias (twice the hidden size each), not RMSNorms
_LAYER_NORM_TYPES = frozenset({"opt", "stablelm", "phi", "starcoder2", "gpt_neox", "gptj", "codegen"})

#: model types whose attention and MLP run side by side on one norm's output: one norm a layer, not two
_ONE_NORM_TYPES = frozenset({"phi", "gptj", "codegen", "cohere"})

#: model types whose MLP's layers always have a bias
_MLP_BIAS_TYPES = frozenset({"phi", "gpt_neox", "gptj", "codegen"})

#: model types whose output head has a bias (a vocabulary's worth)
_HEAD_BIAS_TYPES = frozenset({"phi", "gptj", "codegen"})

#: what each family names its layer's matrices, where not as Llama does (``q_proj``, ``k_proj``,
#: ``v_proj``, ``o_proj``; ``up_proj``, ``down_proj``): the query, key and value projections (one
#: name: a fused matrix of all three), the attention's output, the MLP's up and down projections.
#: LoRA's per-rank count matches target_modules against these: OPT's ``fc1``, ``fc2`` counted
#: nothing, being counted under Llama's names
_LAYER_NAMES: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "opt": (("q_proj", "k_proj", "v_proj"), "out_proj", "fc1", "fc2"),
    "phi": (("q_proj", "k_proj", "v_proj"), "dense", "fc1", "fc2"),
    "starcoder2": (("q_proj", "k_proj", "v_proj"), "o_proj", "c_fc", "c_proj"),
    "gpt_neox": (("query_key_value",), "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "gptj": (("q_proj", "k_proj", "v_proj"), "out_proj", "fc_in", "fc_out"),
    "codegen": (("qkv_proj",), "out_proj", "fc_in", "fc_out"),
    "phi3": (("qkv_proj",), "o_proj", "gate_up_proj", "down_proj"),  # (gate and up in one matrix)
    "phi4_multimodal": (("qkv_proj",), "o_proj", "gate_up_proj", "down_proj"),  # (Phi-3's decoder; a flat config)
    "glm": (("q_proj", "k_proj", "v_proj"), "o_proj", "gate_up_proj", "down_proj"),
    "glm4": (("q_proj", "k_proj", "v_proj"), "o_proj", "gate_up_proj", "down_proj"),  # (GLM-4-0414's, GLM-Z1's)
}
_LLAMA_NAMES = (("q_proj", "k_proj", "v_proj"), "o_proj", "up_proj", "down_proj")

#: multimodal model types whose causal-LM class (``AutoModelForCausalLM``'s, as transformers 5 maps
#: them) loads vision or audio towers with the text decoder, which :func:`_shape_from_config` does
#: not count (Gemma 3's it does: :func:`_vision_tower_params`). Others (LLaVA, Qwen2-VL, Idefics3)
#: have no causal-LM class, and Mllama's and Llama 4's loads the text decoder alone.
_TOWERS_NOT_COUNTED = frozenset({"gemma3n", "gemma4", "gemma4_unified", "got_ocr2", "moss_transcribe_diarize",
                                 "phi4_multimodal"})

#: bytes an element of each config.json ``torch_dtype`` (``dtype``) takes
_CONFIG_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def _shape_from_config(config: dict[str, Any], target_modules: list[str] | None) -> ModelShape | None:
    """A :class:`ModelShape` worked out from a decoder's config.json alone (embeddings, the
    attention's four projections with grouped key-value heads, a gated or plain MLP, an untied
    head), for a folder without safetensors weights: the local Hugging Face cache holds a hub
    id's config.json where only it was downloaded (`hf download ID config.json`, a download cut short),
    and plan gave no estimate. The sizes are read under any of their names (:data:`_CONFIG_KEYS`:
    GPT-2's ``n_embd``, ``n_layer``); GPT-2's own layers (``c_attn``, ``c_proj``, ``c_fc``, with
    biases and learned positions; GPTBigCode's alike, its attention multi-query) are counted as it names them, the families of
    :data:`_LAYER_NAMES` (OPT's ``fc1``, GPT-NeoX's ``query_key_value``) under their names, every
    other type's as Llama's (``q_proj`` ... ``down_proj``), which LoRA's per-rank count covers.
    None where the config does not give the sizes."""
    from subsetctl.modeling.lora import known_default_targets

    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    hidden, layers = _config_size(text, "hidden_size"), _config_size(text, "num_hidden_layers")
    vocab = _config_size(text, "vocab_size")
    if not (hidden and layers and vocab):
        return None
    heads = _config_size(text, "num_attention_heads") or 1
    head_dim = _config_size(text, "head_dim") or hidden // heads
    kv = (_config_size(text, "num_key_value_heads") or heads) * head_dim
    intermediate = _config_size(text, "intermediate_size") or 4 * hidden
    model_type = config.get("model_type")
    per_layer: list[tuple[str, tuple[int, int]]]
    decoder_layers: list[tuple[list[tuple[str, tuple[int, int]]], int]]  # each layer's matrices and other parameters
    if model_type in ("gpt2", "gpt_bigcode"):  # each layer with a bias; learned positions, norms with biases
        # GPTBigCode's (StarCoderBase's) multi-query attention: one key and one value head for all queries
        multi_query = model_type == "gpt_bigcode" and text.get("multi_query") is not False
        qkv = hidden + 2 * (head_dim if multi_query else hidden)
        per_layer = [("c_attn", (hidden, qkv)), ("c_proj", (hidden, hidden)), ("c_fc", (hidden, intermediate)),
                     ("c_proj", (intermediate, hidden))]
        extra = _config_size(text, "max_position_embeddings") * hidden + hidden  # (+ the last norm's bias)
        per_layer_extra = 2 * 2 * hidden + qkv + hidden + intermediate + hidden  # the norms, the biases
        decoder_layers = [(per_layer, per_layer_extra)] * layers
    else:
        # a multimodal config's decoder is its text_config's model type (Gemma 3's "gemma3_text" in a "gemma3"):
        # the top-level type named none of its layers' gated MLP, norms and query-key norms
        layer_type = str(text.get("model_type") if text is not config and isinstance(text.get("model_type"), str)
                         else model_type)
        attention = _attention_matrices(layer_type, hidden, heads * head_dim, kv)
        vectors = _layer_vectors(text, layer_type, hidden, heads * head_dim, kv, intermediate)
        # Mllama's cross-attention layers: the same matrices, and query and key norms and two gates of their own
        crossing = set(_int_list(text.get("cross_attention_layers"))) if layer_type == "mllama_text_model" else set()
        decoder_layers = [((_gemma4_attention(text, index, layers, hidden, heads, head_dim)
                            if layer_type == "gemma4_text" else attention)
                           + _mlp_matrices(text, layer_type, hidden, intermediate, index),
                           vectors + (2 * head_dim + 2 if index in crossing else 0)) for index in range(layers)]
        # OPT's learned positions (2 more than it reads) and the last norm's bias of LayerNorm types; Mllama's
        # embeddings' 8 rows past the vocabulary (its image tokens')
        extra = ((_config_size(text, "max_position_embeddings") + 2) * hidden if model_type == "opt" else 0) + (
            hidden if model_type in _LAYER_NORM_TYPES else 0) + (vocab if model_type in _HEAD_BIAS_TYPES else 0) + (
            8 * hidden if layer_type == "mllama_text_model" else 0)
    tied = _tied_head(config, text, str(model_type))
    params = (vocab * hidden * (1 if tied else 2) + extra
              + sum(sum(a * b for _, (a, b) in matrices) + other for matrices, other in decoder_layers) + hidden
              + _vision_tower_params(config, hidden))
    targets = target_modules if target_modules is not None else known_default_targets(str(model_type))
    named = {name for matrices, _ in decoder_layers for name, _ in matrices}
    lora = (sum(a + b for matrices, _ in decoder_layers for name, (a, b) in matrices if name in targets)
            if targets is not None and set(targets) <= named else None)
    if lora is not None and target_modules is not None:  # (named in the spec: matched by name in every tower)
        lora += _vision_tower_lora(config, target_modules)
    stored = _CONFIG_DTYPE_BYTES.get(str(config.get("torch_dtype") or config.get("dtype")), 4)
    return ModelShape(params=params, stored_bytes=params * stored, lora_per_rank=lora, layers=layers, hidden=hidden,
                      intermediate=intermediate, vocab=vocab, from_config=True,
                      decoder_only=model_type in _TOWERS_NOT_COUNTED)


def _vision_tower_params(config: dict[str, Any], text_hidden: int) -> int:
    """The parameters of a Gemma 3 multimodal config's vision tower (SigLIP, its
    ``vision_config``) and of its projector into the decoder's width (``text_hidden``): the
    causal-LM class loads them with the decoder (``Gemma3ForConditionalGeneration``), some 0.42B
    parameters of Gemma 3 4B's 4.3B. 0 for any other config, whose vision tower (if any) is not
    counted here."""
    vision = config.get("vision_config")
    if config.get("model_type") != "gemma3" or not isinstance(vision, dict):
        return 0
    hidden, layers = _config_size(vision, "hidden_size"), _config_size(vision, "num_hidden_layers")
    intermediate = _config_size(vision, "intermediate_size")
    image, patch, channels = (_positive_int(vision.get(key)) for key in ("image_size", "patch_size", "num_channels"))
    if not (hidden and layers and intermediate and image and patch and channels):
        return 0
    mlp = hidden * intermediate + intermediate + intermediate * hidden + hidden  # fc1, fc2 with biases
    per_layer = 4 * (hidden * hidden + hidden) + 2 * 2 * hidden + mlp  # q, k, v, out with biases; two LayerNorms
    embeddings = channels * patch * patch * hidden + hidden + (image // patch) ** 2 * hidden  # patches, positions
    # the attention-pooling head (a probe, its attention, a LayerNorm and an MLP), unless vision_use_head is off
    head = hidden + 4 * (hidden * hidden + hidden) + 2 * hidden + mlp if vision.get("vision_use_head", True) else 0
    projector = hidden * text_hidden + hidden  # the projection into the decoder and its RMSNorm
    return embeddings + layers * per_layer + 2 * hidden + head + projector


def _vision_tower_lora(config: dict[str, Any], targets: list[str]) -> int:
    """LoRA's parameters per unit of rank on a Gemma 3 multimodal config's vision tower (SigLIP)
    for ``targets`` named in the spec: they match its attention's ``q_proj``, ``k_proj`` and
    ``v_proj`` (hidden x hidden each) by name, as the language model's (the default targets,
    :data:`~subsetctl.modeling.lora.LANGUAGE_MODEL_SCOPE`, do not). 0 for any other config."""
    vision = config.get("vision_config")
    if config.get("model_type") != "gemma3" or not isinstance(vision, dict):
        return 0
    hidden, layers = _config_size(vision, "hidden_size"), _config_size(vision, "num_hidden_layers")
    return layers * 2 * hidden * len({"q_proj", "k_proj", "v_proj"} & set(targets))


def _mlp_matrices(text: dict[str, Any], model_type: str, hidden: int, intermediate: int,
                  index: int) -> list[tuple[str, tuple[int, int]]]:
    """The MLP matrices of a Llama-style decoder's layer ``index``, as :func:`_shape_from_config`
    counts them: up and down, and gate where the type's MLP is gated (:data:`_GATED_MLP_TYPES`); a
    Mixtral-style mixture of experts (``num_local_experts``, in the layers :func:`_mixture_at` says)
    has that many gated MLPs and a router (hidden x experts), each expert's matrices named as Mixtral
    names them (``w1``, ``w2``, ``w3``, which no default LoRA target names), so the MLP weighs what its
    experts weigh, not one of them; Qwen's and OLMoE's (``num_experts``) too, each expert
    ``moe_intermediate_size`` wide where that is set, and Qwen2-MoE's shared expert
    (``shared_expert_intermediate_size``, a gated MLP and its gate); Llama 4's shared expert is as wide
    as its experts, without a gate, and its layers without experts ``intermediate_size_mlp`` wide."""
    llama4 = model_type == "llama4_text"
    experts = _positive_int(text.get("num_local_experts")) or _positive_int(text.get("num_experts"))
    if experts and _mixture_at(text, index):
        size = _positive_int(text.get("moe_intermediate_size")) or intermediate  # (Qwen's experts are smaller)
        shared = _positive_int(text.get("shared_expert_intermediate_size"))  # Qwen2-MoE's expert every token takes
        return [("gate", (hidden, experts))] + [
            (name, shape) for _ in range(experts)
            for name, shape in (("w1", (hidden, size)), ("w2", (size, hidden)), ("w3", (hidden, size)))] + (
            [("gate_proj", (hidden, shared)), ("up_proj", (hidden, shared)), ("down_proj", (shared, hidden)),
             ("shared_expert_gate", (hidden, 1))] if shared else []) + (
            [("gate_proj", (hidden, size)), ("up_proj", (hidden, size)), ("down_proj", (size, hidden))] if llama4
            else [])
    if llama4:
        intermediate = _positive_int(text.get("intermediate_size_mlp")) or intermediate
    _, _, up, down = _LAYER_NAMES.get(model_type, _LLAMA_NAMES)
    if up == "gate_up_proj":  # (one matrix of both)
        return [(up, (hidden, 2 * intermediate)), (down, (intermediate, hidden))]
    gated = [("gate_proj", (hidden, intermediate))] if model_type in _GATED_MLP_TYPES else []
    return [(up, (hidden, intermediate)), (down, (intermediate, hidden)), *gated]


def _mixture_at(text: dict[str, Any], index: int) -> bool:
    """Whether a mixture-of-experts decoder's layer ``index`` has experts, as transformers builds
    it: Llama 4's ``moe_layers`` where listed; else every ``decoder_sparse_step``-th layer (Qwen's;
    Llama 4's ``interleave_moe_layer_step``; 1: every layer) not in ``mlp_only_layers`` (Qwen's
    layers with a plain MLP); every layer of a type that has none of these keys (Mixtral's, OLMoE's)."""
    listed = text.get("moe_layers")
    if isinstance(listed, list):
        return index in _int_list(listed)
    step = _positive_int(text.get("decoder_sparse_step")) or _positive_int(text.get("interleave_moe_layer_step")) or 1
    return index not in _int_list(text.get("mlp_only_layers")) and (index + 1) % step == 0


def _int_list(value: object) -> list[int]:
    """The integers of a config.json list (``mlp_only_layers``, ``cross_attention_layers``); [] for
    anything else."""
    return [v for v in value if isinstance(v, int) and not isinstance(v, bool)] if isinstance(value, list) else []


def _attention_matrices(model_type: str, hidden: int, queries: int, kv: int) -> list[tuple[str, tuple[int, int]]]:
    """A layer's attention matrices, as :func:`_shape_from_config` counts them, under the names
    the family gives them (:data:`_LAYER_NAMES`): the query, key and value projections (``queries``
    and ``kv`` wide: grouped key-value heads), or one fused matrix of all three, and the output."""
    projections, output, _, _ = _LAYER_NAMES.get(model_type, _LLAMA_NAMES)
    widths = (queries, kv, kv)
    fused = [(projections[0], (hidden, sum(widths)))] if len(projections) == 1 else [
        (name, (hidden, width)) for name, width in zip(projections, widths)]
    return [*fused, (output, (queries, hidden))]


def _gemma4_attention(text: dict[str, Any], index: int, layers: int, hidden: int, heads: int,
                      head_dim: int) -> list[tuple[str, tuple[int, int]]]:
    """Gemma 4's (``gemma4_text``) layer ``index``'s attention matrices, as transformers builds them:
    its full-attention layers' heads are wider (``per_layer_config``'s ``head_dim``, else
    ``global_head_dim``, 512) and may have their own key-value heads; such a layer has no ``v_proj``
    where keys are values (``attention_k_eq_v``), and the last ``num_kv_shared_layers`` reuse an
    earlier layer's keys and values, with neither ``k_proj`` nor ``v_proj``. Counted as a Llama's,
    plan's LoRA count missed the wider queries and counted value projections run cannot adapt."""
    types = [t for t in text.get("layer_types") or () if isinstance(t, str)]
    if len(types) != layers:  # (transformers' default: every sixth layer full attention)
        types = ["sliding_attention" if (i + 1) % 6 else "full_attention" for i in range(layers)]
    full = index == layers - 1 or types[index] == "full_attention"  # (the last layer always is)
    kv_heads = _config_size(text, "num_key_value_heads") or heads
    per_layer = text.get("per_layer_config")
    if isinstance(per_layer, dict):  # (config.json's keys are the layers' indices as text: "5", "05")
        own = next((v for k, v in per_layer.items() if str(k).isdigit() and int(k) == index and isinstance(v, dict)),
                   {})
        head_dim = _positive_int(own.get("head_dim")) or head_dim
        kv_heads = _positive_int(own.get("num_key_value_heads")) or kv_heads
    elif full:
        head_dim = _positive_int(text.get("global_head_dim")) or 512
        if text.get("attention_k_eq_v"):
            kv_heads = _positive_int(text.get("num_global_key_value_heads")) or kv_heads
    shared = _positive_int(text.get("num_kv_shared_layers"))
    keys_values = ([] if index >= layers - shared else
                   [("k_proj", (hidden, kv_heads * head_dim))]
                   + ([] if full and text.get("attention_k_eq_v") else [("v_proj", (hidden, kv_heads * head_dim))]))
    return [("q_proj", (hidden, heads * head_dim)), *keys_values, ("o_proj", (heads * head_dim, hidden))]


def _layer_vectors(text: dict[str, Any], model_type: str, hidden: int, queries: int, kv: int,
                   intermediate: int) -> int:
    """A Llama-style layer's parameters outside its matrices: its norms (two of the hidden size,
    four for :data:`_FOUR_NORM_TYPES`, one for :data:`_ONE_NORM_TYPES`, LayerNorms' biases
    doubling them), the per-head query and key norms of :data:`_QK_NORM_TYPES` (OLMo 2's over all
    heads), and the biases a family always has or a config switches on: Qwen2's on the queries,
    keys and values, Phi's everywhere, :data:`_MLP_BIAS_TYPES`' on the MLP, ``attention_bias``
    (the four projections'), ``mlp_bias`` (the MLP's), :func:`_bias_switched_on`. Small beside
    the matrices, but they made the count of a Qwen2 or Gemma 2 differ from its weights' (Phi-2's,
    Pythia-1B's, StarCoder2-3B's and GPT-J-6B's by 0.01-0.03%)."""
    norms = 4 if model_type in _FOUR_NORM_TYPES else 1 if model_type in _ONE_NORM_TYPES else 2
    total = norms * hidden * (2 if model_type in _LAYER_NORM_TYPES else 1)
    head_dim = _config_size(text, "head_dim") or queries // (_config_size(text, "num_attention_heads") or 1)
    if model_type in _QK_NORM_TYPES:
        total += 2 * head_dim
    elif model_type in ("olmo2", "olmoe"):
        total += queries + kv
    if model_type in ("qwen2", "qwen2_moe") or (model_type == "stablelm" and text.get("use_qkv_bias") is True) \
            or (model_type in ("glm", "glm4") and text.get("attention_bias") is not False):  # (GLM's: none on the output)
        total += queries + 2 * kv
    elif text.get("attention_bias") is True or model_type == "phi" or _bias_switched_on(text, model_type):
        total += queries + 2 * kv + hidden
    if text.get("mlp_bias") is True or model_type in _MLP_BIAS_TYPES or _bias_switched_on(text, model_type):
        total += (2 if model_type in _GATED_MLP_TYPES else 1) * intermediate + hidden
    return total


def _bias_switched_on(text: dict[str, Any], model_type: str) -> bool:
    """Whether a family whose one config key gives its decoder's linear layers a bias has it on
    (unless written false: on by default, a config.json written before the key was, GPT-NeoX's, has
    them): OPT's ``enable_bias`` and StarCoder2's ``use_bias`` (every layer), GPT-NeoX's
    ``attention_bias`` (its attention's; its MLP's have one whatever it says)."""
    key = {"opt": "enable_bias", "starcoder2": "use_bias", "gpt_neox": "attention_bias"}.get(model_type)
    return key is not None and text.get(key) is not False


def _tied_head(config: dict[str, Any], text: dict[str, Any], model_type: str) -> bool:
    """Whether the model's output head is its input embeddings (counted once): as config.json
    says (``tie_word_embeddings``, at its top or in its ``text_config``), else as the model
    type's config class defaults (:data:`_UNTIED_BY_DEFAULT`: a Llama's head is its own). The
    estimate took every config without the key as tied, half a Llama's embedding parameters."""
    for source in (config, text):
        if isinstance(source.get("tie_word_embeddings"), bool):
            return bool(source["tie_word_embeddings"])
    return model_type not in _UNTIED_BY_DEFAULT


def _positive_int(value: object) -> int:
    """``value`` where it is a positive integer (not a bool), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def stage_peak_bytes(stage: str, spec: Any, shape: ModelShape) -> int:
    """The estimated peak resident memory of ``run`` while ``stage`` (one that
    :func:`loads_model`) runs with ``spec`` on a model of ``shape`` (see the module's
    docstring for what it counts)."""
    width = DTYPE_BYTES.get(spec.model.dtype, 4)
    length = spec.model.max_length
    per_token_training = (shape.layers * (_HIDDEN_PER_LAYER * shape.hidden
                                          + _INTERMEDIATE_PER_LAYER * shape.intermediate) * width
                          + 3 * 4 * shape.vocab)  # the logits, their log-softmax and its gradient, in float32
    total = LIBRARIES_BYTES + shape.params * width
    lora = (shape.lora_per_rank or 0) * spec.model.lora.r
    if stage == "meta_init":
        total += spec.meta_init.batch_size * length * per_token_training + 4 * 4 * lora  # + AdamW's state
    elif stage == "finetune":
        total += spec.finetune.batch_size * length * per_token_training + 4 * 4 * lora
    elif stage in ("verify", "search"):  # (the search's real fine-tunes take verify's budget)
        total += spec.verify.batch_size * length * per_token_training + 4 * 4 * lora
    elif stage == "gradients":
        batch = spec.gradients.batch_size
        budget = spec.gradients.memory_budget_mb * 2**20
        projection = (min(budget, math.ceil(lora / 1024) * 1024 * spec.gradients.d * 4) if shape.lora_per_rank
                      else budget)
        total += batch * length * per_token_training + 2 * batch * lora * 4 + projection
    elif stage == "evaluate":
        tokens = spec.evaluate.batch_size * (length + spec.evaluate.max_new_tokens)
        # the generation's key-value cache (at most hidden numbers a token and layer, each of keys and values);
        # the head runs on the last position of each row (and the test loss's on its answer's alone)
        total += tokens * 2 * shape.layers * shape.hidden * width + spec.evaluate.batch_size * shape.vocab * 4 * 2
    return int(max(total, loading_bytes(spec, shape)))


def loading_bytes(spec: Any, shape: ModelShape) -> int:
    """The peak while the model loads: its files are memory-mapped, and weights stored in
    another dtype than ``model.dtype`` are copied into it, both held at once (float32 files
    loaded as bfloat16 peak higher than as float32, whose tensors are the mapped files)."""
    weights = shape.params * DTYPE_BYTES.get(spec.model.dtype, 4)
    return LIBRARIES_BYTES + shape.stored_bytes + (weights if shape.stored_bytes != weights else 0)


#: the stages whose LoRA weights on disk :func:`disk_bytes` counts
DISK_STAGES = ("meta_init", "finetune")

#: checkpoints of one training run on disk at once: the last, the best by validation, and the
#: next one while it is written (:func:`~subsetctl.modeling.train.train_lora` keeps the last two)
_CHECKPOINTS_AT_ONCE = 3


def disk_bytes(stage: str, spec: Any, shape: ModelShape, fine_tunes: int | None = None) -> int:
    """The disk ``stage`` writes of LoRA weights with ``spec`` on a model of ``shape`` at
    most (bytes): each adapter is its LoRA parameters (``lora_per_rank`` x ``model.lora.r``)
    in float32, as peft keeps them whatever ``model.dtype``, and a checkpoint that and
    AdamW's two moments. meta_init: its checkpoints (:data:`_CHECKPOINTS_AT_ONCE`) and its
    adapter; finetune: an adapter in its folder and one in the cache for each fine-tune
    (selections x ``finetune.seeds``, alike picks counted apart: an upper bound), and the
    checkpoints of the one that trains. 0 for other stages (verify's fine-tunes keep only
    their losses), for a switched-off finetune, and where the LoRA targets are not known
    without loading the model. (A classifier's head, saved beside, is left out: small.)
    ``fine_tunes``: finetune's count where it is known (the stage, once the search picked, counts
    those it has yet to train), else :func:`fine_tunes_at_most`.

    Checked with ``du`` (2026-12-05): the quickstart's meta_init (SmolLM2-135M, r=8; 4 steps, a
    checkpoint each) held 13.2 MB at most, two checkpoints of 5.65 MB and its 1.86 MB adapter
    (1.84 MB counted), against 18.4 MB counted; the tiny test model's finetune, 2 distinct picks
    of 4 selections, left 28 kB, against 61 kB counted (its 1 kB file headers, small beside a
    real adapter, uncounted)."""
    return sum(disk_shares(stage, spec, shape, fine_tunes))


def disk_shares(stage: str, spec: Any, shape: ModelShape, fine_tunes: int | None = None) -> tuple[int, int]:
    """:func:`disk_bytes` split by where it is written (bytes): the stage's folder's share (its
    checkpoints and adapters) and the adapter cache's (``.subsetctl/cache``: finetune's one adapter
    a fine-tune; 0 for meta_init). The cache may link to another disk than the stage folder's
    (README: a bigger disk), so each share is measured against its own disk's free space."""
    if stage not in DISK_STAGES or shape.lora_per_rank is None:
        return 0, 0
    adapter = shape.lora_per_rank * spec.model.lora.r * 4
    checkpoints = _CHECKPOINTS_AT_ONCE * 3 * adapter  # (the adapter, AdamW's exp_avg and exp_avg_sq)
    if stage == "meta_init":
        return checkpoints + adapter, 0
    if not spec.finetune.enabled:
        return 0, 0
    n = fine_tunes_at_most(spec) if fine_tunes is None else fine_tunes
    return (checkpoints + n * adapter, n * adapter) if n else (0, 0)


def disk_counted(stage: str, spec: Any, shape: ModelShape, cache_apart: bool = False) -> str:
    """How :func:`disk_bytes` counts ``stage``'s disk, in words, for ``plan``: "its adapter of
    1.8 MB and up to 3 checkpoints, each the adapter and AdamW's two moments"; for finetune
    also that it counts every fine-tune its work says "up to" (alike picks, trained once,
    take less: the quickstart's 5 selections trained 4 adapters). ``cache_apart``: the adapter
    cache is on another disk and counted in a note of its own (:func:`disk_shares`), so the
    folder's words leave its adapters out (they said "and one in the cache" of a size that
    did not count it). "" where it counts nothing."""
    from subsetctl.project import size_text

    if not disk_bytes(stage, spec, shape):
        return ""
    adapter = size_text((shape.lora_per_rank or 0) * spec.model.lora.r * 4)
    each = "each the adapter and AdamW's two moments"
    if stage == "meta_init":
        return f"its adapter of {adapter} and up to {_CHECKPOINTS_AT_ONCE} checkpoints, {each}"
    n = fine_tunes_at_most(spec)
    cached = "" if cache_apart else " and one in the cache"
    return (f"an adapter of {adapter} in its folder{cached} for each of up to {n} fine-tune"
            f"{'s' if n != 1 else ''} (alike picks, trained once, take less), and up to {_CHECKPOINTS_AT_ONCE} "
            f"checkpoints of the one that trains, {each}")


def fine_tunes_at_most(spec: Any) -> int:
    """The fine-tunes the finetune stage trains with ``spec`` at most: each selection (the
    search's strategies and ``finetune.baselines``) once per ``finetune.seeds``, alike picks
    counted apart (they are trained once)."""
    return (len(spec.search.strategies) + len(spec.finetune.baselines)) * spec.finetune.seeds


def estimate(stage: str, spec: Any, spec_dir: Path) -> tuple[int, str] | None:
    """``stage``'s estimated peak memory with ``spec`` (:func:`stage_peak_bytes`) and that in
    words ("about 2.9 GB at its peak, 1.9 GB of it the weights: 468M parameters in float32"),
    for the model in the folder read without loading anything
    (:func:`~subsetctl.modeling.resolve.folder_read_without_loading`); None for a stage that
    loads no model, or a model that cannot be read so (a hub id not cached, a packaged
    model not converted yet, a checkpoint with neither safetensors weights nor a config.json
    the size can be read from); a packaged model converted already is read from its
    converted folder."""
    from subsetctl.project import size_text

    if not loads_model(stage, spec):
        return None
    shape = model_shape(spec, spec_dir)
    if shape is None:
        return None
    peak = stage_peak_bytes(stage, spec, shape)
    weights = shape.params * DTYPE_BYTES.get(spec.model.dtype, 4)
    stored = (" (while the model loads: its files, in another dtype, stay mapped as they are converted)" if (
        peak == loading_bytes(spec, shape) and shape.stored_bytes != weights) else "")
    # (a local folder too, or one whose weights are pytorch_model.bin: the folder, not the hub cache, is named)
    rough = (", worked out from its config.json alone: its folder holds no safetensors weights to read"
             if shape.from_config else "")
    if shape.decoder_only:
        rough += ("; its text decoder's alone: the vision or audio parts run loads with it are not counted, "
                  "so the memory is more than this")
    return peak, (f"about {size_text(peak)} of memory at its peak{stored}, {size_text(weights)} of it the weights "
                  f"({_count_text(shape.params)} parameters in {spec.model.dtype}{rough})")


def no_estimate_reason(spec: Any, spec_dir: Path) -> str | None:
    """Why ``plan`` gives the model stages no memory estimate, and what to do, where the model
    is a hub id the local Hugging Face cache holds no config.json of (at ``model.revision``),
    or a packaged model not converted yet (the quickstart's SmolLM2 before its first run):
    the estimate reads the model's files without downloading or converting anything, and
    plan left the estimate (and the rough time) out without a word. None for any other model
    (or one it can estimate)."""
    from subsetctl.modeling.resolve import uncached_hub_model

    unconverted = _conversion_pending(spec.model.source)
    if unconverted is not None:
        return (f"no memory estimate or rough time for the model stages: the packaged model {spec.model.source} "
                "is not converted yet, and plan reads a model's config.json and weights' headers from its "
                f"converted folder, converting nothing. The first `run` converts it into {unconverted} (about 30 s, "
                "once: every project then reads that copy), after which plan estimates from its files.")
    name = uncached_hub_model(spec.model.source, spec_dir, spec.model.revision)
    if name is None:
        return None
    at = f" --revision {spec.model.revision}" if spec.model.revision else ""
    return (f"no memory estimate for the model stages: the hub id {name} is not in the local Hugging Face cache, "
            "and plan reads a model's config.json and weights' headers from there, downloading nothing. "
            f"`hf download {name}{at} config.json` fetches its config (a few KB) for a rough estimate; the first "
            "`run` downloads the whole model, after which plan estimates from its files.")


def no_estimate_note(stage: str, spec: Any, spec_dir: Path) -> str | None:
    """:func:`no_estimate_reason` for ``stage``, one that :func:`loads_model` with ``spec``
    (``plan --format json``'s ``memory_note``, which its text prints once); None for another."""
    return no_estimate_reason(spec, spec_dir) if loads_model(stage, spec) else None


def model_folder(source: str, spec_dir: Path, revision: str | None = None) -> Path | None:
    """The folder of model ``source`` whose files can be read without loading or converting
    anything (:func:`~subsetctl.modeling.resolve.folder_read_without_loading`, a hub id's at
    ``revision``, ``model.revision``; a packaged model converted already, its converted
    folder); None where there is none."""
    from subsetctl.modeling.resolve import folder_read_without_loading

    found = folder_read_without_loading(source, spec_dir, revision)
    return found[0] if found is not None else _converted_packaged(source)


def model_shape(spec: Any, spec_dir: Path) -> ModelShape | None:
    """The :class:`ModelShape` of ``spec``'s model, from its :func:`model_folder`; None where
    there is none. Read once while the folder's files stay (:func:`_kept_shape`): a `plan`
    asks for it about 8 times (each model stage's memory and disk, the gradient store, the
    durations), each a read of every weight file's header."""
    from subsetctl.filehash import folder_stamps

    folder = model_folder(spec.model.source, spec_dir, spec.model.revision)
    if folder is None:
        return None
    targets = spec.model.lora.target_modules
    return _kept_shape(*folder_stamps(Path(folder)), None if targets is None else tuple(targets))


@functools.lru_cache(maxsize=4)
def _kept_shape(folder: str, files: tuple[tuple[str, int, int], ...],
                targets: tuple[str, ...] | None) -> ModelShape | None:
    """:func:`read_shape` of ``folder`` with LoRA on ``targets``, kept while its ``files``
    (:func:`~subsetctl.filehash.folder_stamps`, the key) stay unchanged."""
    return read_shape(Path(folder), None if targets is None else list(targets))


def stored_in_16_bits(spec: Any, spec_dir: Path) -> bool:
    """Whether the model's files (read as :func:`estimate` reads them) store its weights in
    16 bits (bfloat16 or float16) while ``model.dtype`` is float32, which holds them at
    twice that: ``model.dtype: bfloat16`` then halves the weights' memory, which
    out-of-memory advice names. (A float32 checkpoint's peak it does not lower: the files
    stay mapped while they are converted.)"""
    if spec.model.dtype != "float32":
        return False
    shape = model_shape(spec, spec_dir)
    # (a few float32 buffers beside 16-bit weights still count as a 16-bit checkpoint)
    return shape is not None and shape.params > 0 and shape.stored_bytes < 2.5 * shape.params


def _converted_packaged(source: str) -> Path | None:
    """The folder a packaged model shipped as GGUF was converted into on this machine (the
    quickstart's SmolLM2), or None (another source, or not converted yet)."""
    from subsetctl.modeling.packaged import present_folder
    from subsetctl.modeling.resolve import packaged_names

    return present_folder(source) if source in packaged_names() else None


def _conversion_pending(source: str) -> Path | None:
    """:func:`~subsetctl.modeling.packaged.conversion_pending` of a packaged model ``source``
    (where its first run converts it); None for another source (as that function says it), or
    where no home folder is known for the cache (`validate` warns of that one)."""
    from subsetctl.errors import UserError
    from subsetctl.modeling.packaged import conversion_pending

    try:
        return conversion_pending(source)
    except UserError:
        return None


def _count_text(n: int) -> str:
    """A parameter count as model cards write it: "468M", "1.2B", "135K"."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}" if n < 10 * scale else f"{n / scale:.0f}{unit}"
    return str(n)


def available_memory() -> tuple[int, str] | None:
    """The memory a new process may take now, in bytes, and what it is in words: Linux's
    ``MemAvailable`` (free memory plus what the page cache gives back), lowered to what a
    cgroup's ``memory.max`` (a container's or a batch job's limit) leaves; None where
    neither can be read (not Linux)."""
    found: list[tuple[int, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "available on this machine (MemAvailable)"))
    except (OSError, ValueError, IndexError):
        pass
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit.isdigit():
            used = int((cgroup / "memory.current").read_text().strip())
            found.append((max(0, int(limit) - used), "left under this container's or job's limit (cgroup memory.max)"))
    except (OSError, ValueError):
        pass
    return min(found) if found else None
