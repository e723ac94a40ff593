"""LoRA adapters: attach, save, load, fingerprint, count.

theta (the parameters gradients are taken of) is the LoRA parameters only; base weights stay frozen. For
classifiers the new classification head is trained as well (peft ``modules_to_save``),
since a random head cannot be left frozen.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from subsetctl.errors import UserError, shell_arg
from subsetctl.project import atomic_write_text, replace_dir

#: Default LoRA target modules by transformers ``model_type`` (attention query and value),
#: looked up first; peft's table (:func:`peft_default_targets`) covers the other types. The
#: entries part of a project's adapter are never changed, or its stages would run again.
DEFAULT_TARGETS: dict[str, list[str]] = {
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    # Gemma 3's text-only models (gemma-3-1b, 270m): peft's default too, here so that plan's estimate, which reads
    # this table without importing peft (and torch), counts their LoRA parameters
    "gemma3_text": ["q_proj", "v_proj"],
    # Gemma 3's multimodal models (gemma-3-4b and up), the language model's attention alone (LANGUAGE_MODEL_SCOPE)
    "gemma3": ["q_proj", "v_proj"],
    # Gemma 4's (gemma-4-e2b and up: vision and audio towers, their attention named as the language model's), the
    # language model's attention alone (LANGUAGE_MODEL_SCOPE), as peft's regular expression for it takes
    "gemma4": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "t5": ["q", "v"],
    # types peft's table leaves out (checked on tiny models: tests/modeling/test_lora_defaults.py)
    "olmo": ["q_proj", "v_proj"],
    "olmo2": ["q_proj", "v_proj"],
    "starcoder2": ["q_proj", "v_proj"],
    "albert": ["query", "value"],
    "modernbert": ["Wqkv"],
}

#: peft's default LoRA targets (:func:`peft_default_targets`) for the types :data:`DEFAULT_TARGETS`
#: leaves out that run takes from it, copied so that plan's memory and disk estimate
#: (:func:`known_default_targets`) reads them without importing peft (and torch): it gave such a
#: model (OPT, Falcon, Mixtral ...) no LoRA figure. tests/modeling/test_lora_defaults.py checks
#: that it is peft's table of name lists, less subsetctl's types and ``llama4`` (the causal-LM class
#: loads a Llama 4's text model, ``llama4_text``, which neither table has: run refuses it, so plan
#: gives no figure); run still reads peft's. Copied from peft :data:`PEFT_DEFAULTS_COPIED_FROM`.
PEFT_DEFAULTS_COPIED_FROM = "0.21.2"
PEFT_DEFAULT_TARGETS: dict[str, list[str]] = {
    "opt": ["q_proj", "v_proj"],
    "phi": ["q_proj", "v_proj", "fc1", "fc2"],
    "falcon": ["query_key_value"],
    "bloom": ["query_key_value"],
    "gpt_neo": ["q_proj", "v_proj"],
    "gptj": ["q_proj", "v_proj"],
    "codegen": ["qkv_proj"],
    "mpt": ["Wqkv"],
    "stablelm": ["q_proj", "v_proj"],
    "gpt_bigcode": ["c_attn"],
    "mixtral": ["q_proj", "v_proj"],
    "deberta-v2": ["query_proj", "value_proj"],
    "electra": ["query", "value"],
    "bart": ["q_proj", "v_proj"],
    "mt5": ["q", "v"],
    "deberta": ["in_proj"],
    "layoutlm": ["query", "value"],
    "blip-2": ["q", "v", "q_proj", "v_proj"],
    "RefinedWebModel": ["query_key_value"],
    "RefinedWeb": ["query_key_value"],
    "btlm": ["c_proj", "c_attn"],
    "chatglm": ["query_key_value"],
    "rwkv": ["key", "value", "receptance", "output"],
    "rwkv7": ["r_proj", "k_proj", "v_proj", "o_proj", "key", "value"],
    "nemotron_h": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
#: Model types whose causal-LM class holds a vision (or audio) tower whose attention is named as its
#: language model's (Gemma 3's SigLIP, Gemma 4's vision and audio towers: ``q_proj``, ``v_proj``),
#: and the module name that holds the language model: their default targets are taken under it
#: alone (:func:`peft_target_modules`). No text reaches the towers, so LoRA there would train
#: nothing and lengthen every example's gradient (Gemma 4's tower layers, wrapped linear layers,
#: cannot take it at all).
LANGUAGE_MODEL_SCOPE: dict[str, str] = {"gemma3": "language_model", "gemma4": "language_model"}

#: Attribute names transformers uses for sequence-classification heads.
_HEAD_NAMES = ("classifier", "score")

ADAPTER_WEIGHTS = "adapter_model.safetensors"


@contextlib.contextmanager
def _quiet_peft():
    """Hide peft's use of a deprecated transformers API (a FutureWarning the user cannot act
    on) and its notice that it set ``fan_in_fan_out`` to fit the layer (GPT-2's Conv1D):
    nothing below the CLI should print."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message="fan_in_fan_out is set to", category=UserWarning)
        yield


def peft_default_targets() -> dict[str, list[str]]:
    """peft's default LoRA targets by ``model_type`` (its
    ``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``), name lists only: an entry that
    is a regular expression (one architecture's language model inside a multimodal one)
    is left out, as is the whole table in a peft that no longer has it."""
    try:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as mapping
    except ImportError:
        return {}
    return {k: list(v) for k, v in mapping.items()
            if isinstance(v, (list, tuple)) and v and all(isinstance(n, str) for n in v)}


def known_default_targets(model_type: str) -> list[str] | None:
    """The default LoRA targets :func:`default_target_modules` takes for ``model_type`` where
    they are known without loading the model or importing peft: subsetctl's table, else its copy
    of peft's (:data:`PEFT_DEFAULT_TARGETS`); None for another type (plan then gives no LoRA figure)."""
    found = DEFAULT_TARGETS.get(model_type) or PEFT_DEFAULT_TARGETS.get(model_type)
    return list(found) if found is not None else None


def default_target_modules(model: Any) -> list[str]:
    """The default LoRA targets for ``model``'s architecture: subsetctl's table
    (:data:`DEFAULT_TARGETS`), else peft's (:func:`peft_default_targets`); a UserError
    asking the spec to name them when neither knows the type, or when peft's names are
    not linear layers of this model."""
    model_type = getattr(model.config, "model_type", None)
    if model_type in DEFAULT_TARGETS:
        return list(DEFAULT_TARGETS[model_type])
    targets = peft_default_targets().get(model_type) if isinstance(model_type, str) else None
    linear = _linear_names(model)
    if targets and set(targets) <= linear:
        return targets
    why = (f"peft's default for it ({', '.join(targets)}) are not all linear layers of this model" if targets
           else "neither subsetctl nor peft has a default for it")
    raise UserError(
        f"No default LoRA target modules are known for the architecture {model_type!r} ({why}). Name them in "
        "the spec (model.lora.target_modules), usually the attention query and value projections; the linear "
        f"layers this model has are: {', '.join(sorted(linear)[:30]) or 'none'}."
    )


def peft_target_modules(model_type: object, targets: list[str]) -> list[str] | str:
    """The ``target_modules`` peft gets for a model type's default ``targets``: the names as they
    are, or, for a type of :data:`LANGUAGE_MODEL_SCOPE`, a regular expression peft matches whole
    against each module's dotted name, taking those names under its language model alone."""
    scope = LANGUAGE_MODEL_SCOPE.get(model_type) if isinstance(model_type, str) else None
    if scope is None:
        return targets
    return rf".*\b{re.escape(scope)}\..*\.({'|'.join(map(re.escape, targets))})"


def targeted(module: str, target_modules: list[str] | str) -> bool:
    """Whether peft puts LoRA on the module named ``module`` (dotted, as named_modules or a
    weights file names it) for ``target_modules``: a list, by its last name; a regular
    expression (:func:`peft_target_modules`), matched whole."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, module) is not None
    return module.rsplit(".", 1)[-1] in target_modules


def classifier_head_names(model: Any) -> list[str]:
    """Names of the classification head modules of a sequence-classification model."""
    names = [n for n in _HEAD_NAMES if hasattr(model, n)]
    if not names:
        raise UserError(
            f"The classifier model ({type(model).__name__}) has no 'classifier' or 'score' head "
            "module, so its head cannot be trained alongside LoRA. Use an "
            "AutoModelForSequenceClassification-compatible model."
        )
    return names


def apply_lora(
    model: Any,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    target_modules: list[str] | None = None,
    kind: str = "causal-lm",
    seed: int | None = 0,
    train_also: Iterable[str] = (),
) -> Any:
    """Wrap ``model`` (in place) in a peft LoRA model; only LoRA (and a classifier's
    head) stays trainable.

    Args:
        r, alpha, dropout: LoRA rank, scaling numerator and dropout.
        target_modules: module names to adapt; ``None`` takes the architecture default.
        kind: "causal-lm" or "classifier" (the head is added to ``modules_to_save``).
        seed: seeds the LoRA A initialization so the same settings give the same theta_0;
            ``None`` leaves the global RNG alone.
        train_also: a classifier's other layers to train with its head (dotted module
            names: the newly initialized ones, see
            :func:`subsetctl.modeling.resolve.newly_initialized_layers`).
    """
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    targets = list(target_modules) if target_modules else default_target_modules(model)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        raise UserError(
            f"LoRA target modules {', '.join(map(repr, missing))} do not exist in the model "
            f"({getattr(model.config, 'model_type', '?')}). Linear layers it has include: "
            f"{', '.join(sorted(_linear_names(model))[:20])}. Fix model.lora.target_modules."
        )
    peft_targets = targets if target_modules else peft_target_modules(model.config.model_type, targets)
    others = sorted({f"{name.rsplit('.', 1)[-1]} ({type(m).__name__})" for name, m in model.named_modules()
                     if targeted(name, peft_targets) and not _is_lora_layer(m)})
    if others:  # peft adapts embeddings and convolutions too, but the gradients stage (after meta_init) cannot
        raise UserError(
            f"LoRA target modules must be linear layers, but {', '.join(others)} {'is' if len(others) == 1 else 'are'} "
            "not: per-example gradients "
            "are computed for LoRA on linear layers only. Fix model.lora.target_modules; linear layers the model "
            f"has include: {', '.join(sorted(_linear_names(model))[:20])}."
        )
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=peft_targets,
        task_type=TaskType.SEQ_CLS if kind == "classifier" else TaskType.CAUSAL_LM,
        modules_to_save=classifier_head_names(model) + sorted(train_also) if kind == "classifier" else None,
    )
    with _quiet_peft():
        if seed is None:
            return _heads_in_float32(get_peft_model(model, config))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _heads_in_float32(get_peft_model(model, config))


def trained_layers_of(adapter_dir: str | Path) -> list[str]:
    """The layers besides the classification head that the adapter at ``adapter_dir``
    trained (its ``modules_to_save`` less the head): a classifier adapter written before
    subsetctl trained newly initialized layers has none, and keeps training none."""
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8")).get("modules_to_save") or []
    except (OSError, json.JSONDecodeError, AttributeError):
        return []  # load_adapter_weights says what is wrong with the folder
    return sorted({m for m in saved if isinstance(m, str) and m not in _HEAD_NAMES})


def _heads_in_float32(model: Any) -> Any:
    """Keep a classifier's trainable head (peft ``modules_to_save``) in float32 in a
    float16/bfloat16 model, as peft keeps the LoRA weights, its inputs cast to float32:
    trained in float16, AdamW's second moments underflow to 0 and the first step made the
    head NaN (meta_init "diverged" at once); in bfloat16, updates below 1/256 of a weight
    are rounded away."""
    import torch
    from peft.utils import ModulesToSaveWrapper

    def to_float32(module: Any, args: tuple) -> tuple:
        return tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)

    for wrapper in [m for m in model.modules() if isinstance(m, ModulesToSaveWrapper)]:
        for head in wrapper.modules_to_save.values():
            if any(p.is_floating_point() and p.dtype != torch.float32 for p in head.parameters()):
                head.float()
                head.register_forward_pre_hook(to_float32)
    return model


def _is_lora_layer(module: Any) -> bool:
    """Whether LoRA here can target ``module``: nn.Linear and transformers' Conv1D (GPT-2's),
    the layers the gradients stage computes per-example gradients of."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (torch.nn.Linear, Conv1D))


def _linear_names(model: Any) -> set[str]:
    """Names of the layers LoRA can target (:func:`_is_lora_layer`)."""
    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if _is_lora_layer(m)}


#: a peft model's attribute naming the base model its saved adapters name, instead of the path peft
#: loaded it from (:func:`write_adapter`; :func:`subsetctl.modeling.resolve.adapter_base_model_name`)
BASE_MODEL_NAME = "subsetctl_base_model_name"


def write_adapter(model: Any, folder: str | Path) -> None:
    """``model.save_pretrained(folder)``, made reproducible and shareable.

    peft writes ``target_modules`` from a set, in an order that follows the process's
    string hash seed: identical weights gave a different adapter_config.json, so a
    different output digest, and re-ran every stage after meta_init about every other
    time. The config is rewritten with sorted lists and keys. safetensors creates the
    weights file 0600; every file gets the mode the umask gives other artifacts, so a
    team sharing the project can read the adapters. A model with a :data:`BASE_MODEL_NAME`
    attribute has its adapters name it as their base model, not the folder peft loaded it
    from (set after peft's save: saving, peft looks the name up as a folder, else on the hub).

    ``save_embedding_layers=False``: LoRA targets linear layers only and the vocabulary is
    never resized, so there are no embeddings to save, and peft's "auto" asked the hub for a
    hub model's config.json on every save (a request, and two Python warnings, offline)."""
    from subsetctl.project import give_files_new_mode

    folder = Path(folder)
    model.save_pretrained(str(folder), save_embedding_layers=False)
    name = getattr(model, BASE_MODEL_NAME, None)
    name = name if isinstance(name, str) and name else None
    config_path = folder / "adapter_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        for key, value in config.items():
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                config[key] = sorted(value)
        if name is not None:
            config["base_model_name_or_path"] = name
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if name is not None:
        _name_base_model_in_card(folder / "README.md", name)
    give_files_new_mode(folder)


def _name_base_model_in_card(card: Path, name: str) -> None:
    """Have the model card peft writes (README.md, whose front matter's ``base_model:`` and
    ``base_model:adapter:`` tag are the folder the model was loaded from: a local folder's
    absolute path, a packaged model's copy in this machine's user cache) name ``name``, as
    adapter_config.json does."""
    try:
        text = card.read_text(encoding="utf-8")
    except OSError:
        return
    if not text.startswith("---\n"):
        return
    end = text.find("\n---", 3)
    if end < 0:
        return
    head = [f"base_model: {json.dumps(name)}" if line.startswith("base_model:")
            else f"- {json.dumps('base_model:adapter:' + name)}" if line.startswith("- base_model:adapter:")
            else line for line in text[:end].split("\n")]
    card.write_text("\n".join(head) + text[end:], encoding="utf-8")


def card_front_matter(card: Path) -> str:
    """The YAML front matter of the model card peft wrote at ``card`` (``---`` to ``---``
    and the line break after it: ``base_model``, ``library_name``, ``tags``, which a model
    hub reads), or "" where there is none: a card written over peft's keeps it."""
    try:
        text = card.read_text(encoding="utf-8")
    except OSError:
        return ""
    end = text.find("\n---\n", 3) if text.startswith("---\n") else -1
    return text[:end + len("\n---\n")] + "\n" if end >= 0 else ""


def name_base_model(folder: str | Path, name: str) -> None:
    """Make the adapter at ``folder`` name ``name`` as its base model (adapter_config.json's
    ``base_model_name_or_path``): an adapter restored from the cache of finished
    fine-tunes names the model as the project that trained it did."""
    config_path = Path(folder) / "adapter_config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # (loading it says what is wrong)
    if isinstance(config, dict) and config.get("base_model_name_or_path") != name:
        config["base_model_name_or_path"] = name
        atomic_write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_adapter(model: Any, path: str | Path) -> Path:
    """Save a peft model's adapter (peft format) at ``path``, atomically: written into a
    sibling temporary folder, then renamed over any previous adapter."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write_adapter(model, tmp)
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _check_adapter_dir(path: Path) -> None:
    if not (path / "adapter_config.json").is_file():
        raise UserError(
            f"{path} is not a LoRA adapter folder (no adapter_config.json). Run the stage that "
            "writes it again, or point at the folder saved by subsetctl."
        )


@contextlib.contextmanager
def _damaged_adapter_is_a_user_error(path: Path) -> Iterator[None]:
    """A truncated or altered adapter file (a full disk, a bad copy) is the user's to fix by
    re-running the stage that wrote it, not an internal error repeated on every run. A
    file this process may not read is not damaged (the CLI's permissions message says
    so), and peft's ValueErrors about a model that does not fit are not damage either."""
    import errno

    from safetensors import SafetensorError

    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise _damaged(path, exc) from exc
    except (SafetensorError, json.JSONDecodeError) as exc:
        raise _damaged(path, exc) from exc


def _damaged(path: Path, exc: BaseException) -> UserError:
    """The UserError for the adapter at ``path`` whose files cannot be read (``exc``),
    naming the ``--force`` stage that computes it again."""
    parts = path.resolve().parts
    stage, root = None, ""
    if ".subsetctl" in parts[:-1]:
        state = parts.index(".subsetctl")
        root = shell_arg(Path(*parts[:state]))  # the project: the command works from any folder
        # the stage's folder: .subsetctl/<stage>/..., or kept results (.subsetctl/.previous/<stage>/...)
        stage = next((part for part in parts[state + 1:-1] if not part.startswith(".")), None)
    stage = "finetune" if stage == "cache" else stage  # a cached fine-tune
    again = f"`subsetctl run {root} --force {stage}`" if stage else "the stage that wrote it"
    return UserError(
        f"The LoRA adapter at {path} cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}): "
        f"its files are damaged. Compute it again with {again}."
    )


def load_adapter(base_model: Any, path: str | Path, trainable: bool = False) -> Any:
    """Attach the adapter saved at ``path`` to a fresh (un-wrapped) base model.

    ``trainable=True`` leaves the LoRA parameters (and a classifier head) trainable, for
    continuing fine-tuning from theta*; otherwise everything is frozen.
    """
    from peft import PeftModel

    path = Path(path)
    _check_adapter_dir(path)
    with _quiet_peft(), _damaged_adapter_is_a_user_error(path):
        return PeftModel.from_pretrained(base_model, str(path), is_trainable=trainable)


def load_adapter_weights(model: Any, path: str | Path) -> None:
    """Overwrite, in place, the adapter weights of an already-wrapped peft model with those
    saved at ``path`` (cheaper than reloading the base model, e.g. between verify runs)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(path)
    _check_adapter_dir(path)
    with _damaged_adapter_is_a_user_error(path):
        state = load_file(str(path / ADAPTER_WEIGHTS))
    result = set_peft_model_state_dict(model, state)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k or "modules_to_save" in k]
    if unexpected:
        raise UserError(
            f"The adapter at {path} does not fit this model (unexpected weights such as "
            f"{unexpected[0]!r}). It was trained with other LoRA settings or another base model."
        )


def adapter_fingerprint(path: str | Path) -> str:
    """sha256 over the adapter's tensors (sorted names, dtypes, shapes and bytes), so two
    saves of the same weights fingerprint the same regardless of file metadata."""
    from safetensors.torch import load_file

    path = Path(path)
    _check_adapter_dir(path)
    with _damaged_adapter_is_a_user_error(path):
        state = load_file(str(path / ADAPTER_WEIGHTS))
    return tensors_fingerprint(state.items())


def tensors_fingerprint(items: Iterable[tuple[str, Any]]) -> str:
    """sha256 of named tensors, order-independent."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(items, key=lambda kv: kv[0]):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def count_trainable(model: Any) -> int:
    """Number of trainable parameters (LoRA plus any ``modules_to_save``): p, the length of a
    gradient before projection."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
