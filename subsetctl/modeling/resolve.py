"""Resolve a spec's ``model.source`` string into a loaded model and tokenizer.

A source is, in this order: a packaged model name (see :mod:`subsetctl.modeling.packaged`),
an existing local folder, or a Hugging Face hub id (``org/name``) passed to
``from_pretrained`` unchanged. Anything else is a :class:`UserError` that lists the
packaged models, because on offline machines those are what works.

The returned ``info`` dict describes the model well enough to fingerprint a stage:
where it came from, the folder read, and a hash of its config.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import hashlib
import json
import re
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from subsetctl.errors import (
    UserError,
    as_typed,
    json_syntax_error,
    owner_note,
    path_not_found_note,
    shell_arg,
)
from subsetctl.hub import (
    cache_looked_in,
    cache_write_problem,
    cached_model_guess,
    cached_snapshot,
    hub_reachable,
    model_cached,
    snapshot_pinned,
)
from subsetctl.modeling.remote_code import (
    raised_loading_code,
    refuse_code_not_trusted,
    remote_code_import_failed,
    remote_code_not_fetched,
)
from subsetctl.registry import PACKAGED_MODELS
from subsetctl.user_paths import expand_home

Kind = Literal["causal-lm", "classifier"]
KINDS: tuple[str, ...] = ("causal-lm", "classifier")
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")

#: ``org/name`` with hub-legal characters; a leading ``.``/``/``/``~`` means a path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")

#: Config keys that change with the saving library, not with the model.
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "_commit_hash")

#: Files any one of which holds a tokenizer's vocabulary (fast, SentencePiece, WordPiece, BPE):
#: SentencePiece files under the names transformers' tokenizers give them (``spm.model``:
#: DeBERTa-v2/v3, whose hub folders ship no tokenizer.json; ``sentencepiece.model``: RemBERT).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "spm.model",
                   "sentencepiece.model", "vocab.txt", "vocab.json")

#: transformers ``model_type``s of encoder-only families: bidirectional attention, trained
#: as masked LMs. ``AutoModelForCausalLM`` maps many of them to a causal-LM class anyway
#: (BertLMHeadModel, RobertaForCausalLM, ...), which is only causal with ``is_decoder: true``
#: in config.json and otherwise gets a random LM head; the others it cannot load at all.
ENCODER_ONLY_MODEL_TYPES: frozenset[str] = frozenset({
    "albert", "bert", "bert-generation", "big_bird", "camembert", "convbert", "data2vec-text",
    "deberta", "deberta-v2", "distilbert", "electra", "ernie", "esm", "funnel", "ibert", "layoutlm",
    "longformer", "megatron-bert", "mobilebert", "modernbert", "mpnet", "nezha", "rembert", "roberta",
    "roberta-prelayernorm", "roc_bert", "roformer", "squeezebert", "xlm-roberta", "xlm-roberta-xl", "xmod",
})

#: Class-name endings of generative heads in config.json's ``architectures``.
_CAUSAL_HEAD_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")

#: Notices already given in this run, each under a key naming its kind and what it is
#: about: every stage (and every fine-tune job) loads the base model again.
_NOTICES_GIVEN: set[Hashable] = set()


def first_notice(key: Hashable) -> bool:
    """True the first time ``key`` is asked about in this run, so a notice about a model
    (a head re-initialized, its classes reordered, layers newly initialized) is given
    once, not by each stage that loads the model. Keys start with the notice's kind."""
    if key in _NOTICES_GIVEN:
        return False
    _NOTICES_GIVEN.add(key)
    return True


def forget_notices_given() -> None:
    """Start a new run: its notices are given again (once in it). A notebook runs
    several projects, or one again, in one process, where the CLI runs one per process."""
    _NOTICES_GIVEN.clear()


def _head_label_names(config: Any) -> list[str]:
    """A classification head's class name per output, from ``config.id2label`` (keyed by
    int, or by str as a config.json read back gives them)."""
    id2label = dict(getattr(config, "id2label", None) or {})
    return [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(len(id2label))]


def head_class_order(config: Any, classes: list[str]) -> list[int] | None:
    """Where each of the project's classes sits in a kept classification head, when the
    head's ``config.id2label`` names exactly the project's classes (case and surrounding
    blanks aside) in another order: ``order[i]`` is the head output trained for
    ``classes[i]``. None when there is nothing to reorder: the same order, heads named
    ``LABEL_0``... (new, or saved without names), or names that are not the project's.

    The project numbers its classes by their sorted names (the data stage's vocabulary),
    while a fine-tuned checkpoint's head keeps its own order (e.g. an NLI model's
    entailment/neutral/contradiction)."""
    named = _head_label_names(config)
    if len(named) != len(classes):
        return None

    def fold(name: str) -> str:
        return name.strip().lower()

    folded = [fold(n) for n in named]
    if (any(re.fullmatch(r"LABEL_\d+", n) for n in named) or len(set(folded)) != len(folded)
            or sorted(folded) != sorted(map(fold, classes))):
        return None
    order = [folded.index(fold(c)) for c in classes]
    return None if order == list(range(len(classes))) else order


def reorder_head_to_classes(model: Any, classes: list[str], where: str) -> tuple[str | None, bool] | None:
    """Reorder a kept classification head's outputs to the project's class ids (see
    :func:`head_class_order`), in place; None when there was nothing to reorder, else
    what to tell the user (None when told already) and whether the head was reordered.

    The head's output layer (the last linear layer of its ``classifier``/``score`` module
    with one output per class) has its rows permuted, and ``config.id2label`` follows, so
    output ``i`` starts out as the class ``classes[i]`` it was trained for: loaded as
    saved, each output would start out meaning another class, which meta-init and the
    fine-tunes would have to unlearn. A head whose output layer cannot be found is kept
    as saved, with a warning saying so. Said once per run and model."""
    import torch

    order = head_class_order(model.config, classes)
    if order is None:
        return None
    named = _head_label_names(model.config)
    theirs = ", ".join(f"{i} = {n!r}" for i, n in enumerate(named))
    ours = ", ".join(f"{i} = {c!r}" for i, c in enumerate(classes))
    found = (f"{where} has a classification head for this project's classes in another order ({theirs}, from its "
             "config.json id2label)")
    from subsetctl.modeling.lora import classifier_head_names

    try:
        heads = [getattr(model, name) for name in classifier_head_names(model)]
    except UserError:
        heads = []
    outputs = [m for head in heads for m in head.modules()
               if isinstance(m, torch.nn.Linear) and m.out_features == len(classes)]
    said = not first_notice(("head classes reordered", where, tuple(named), tuple(classes)))
    if not outputs:
        kept = (f"{found} than the project's ids, which follow the sorted label names ({ours}), and "
                "subsetctl found no output layer to reorder: the head is kept as saved, so each of its outputs "
                "starts out as another class, and meta-init and the fine-tunes must unlearn that.")
        return (None if said else kept), False
    layer = outputs[-1]
    index = torch.tensor(order, device=layer.weight.device)
    with torch.no_grad():
        layer.weight.copy_(layer.weight.index_select(0, index))
        if layer.bias is not None:
            layer.bias.copy_(layer.bias.index_select(0, index))
    model.config.id2label = dict(enumerate(classes))
    model.config.label2id = {c: i for i, c in enumerate(classes)}
    reordered = (f"{found}; its outputs were reordered to the project's ids, which follow the "
                 f"sorted label names ({ours}), so each starts out as the class it was trained for.")
    return (None if said else reordered), True


def packaged_names() -> list[str]:
    """Names of the packaged models (for error messages and ``subsetctl ls``)."""
    return PACKAGED_MODELS.names()


def _packaged_hint() -> str:
    return ", ".join(packaged_names()) or "(none installed)"


def config_hash(config: Any) -> str:
    """sha256 of a transformers config's full dict, minus fields that name the saving
    library or the folder, so the same model read from two places hashes the same."""
    data = config.to_dict()
    for key in _VOLATILE_CONFIG_KEYS:
        data.pop(key, None)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_pad_token(tokenizer: Any, model: Any | None = None, where: str = "The model") -> None:
    """Give a tokenizer without a pad token the EOS token as pad (and tell the model's
    config, which sequence-classification heads need to find the last real token). A pad
    token the model has no embedding for (added to the tokenizer without resizing the
    model's embeddings) is replaced by EOS the same way: padding is masked, but its id is
    still looked up. ``where`` names the model in the error for a tokenizer with neither."""
    rows = _embedding_rows(model)
    if tokenizer.pad_token is not None and rows is not None and (tokenizer.pad_token_id or 0) >= rows:
        tokenizer.pad_token = None
        model.config.pad_token_id = None  # the EOS below, where the head looks for the padding
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError(
                f"{where} has a tokenizer with neither a pad token nor an EOS token, so batches cannot be "
                "padded. Use a model whose tokenizer defines one of them, or add a pad token to the tokenizer "
                "files of the local model folder (tokenizer.pad_token = ...; tokenizer.save_pretrained(folder))."
            )
        tokenizer.pad_token = tokenizer.eos_token
    if model is not None and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def _embedding_rows(model: Any | None) -> int | None:
    """How many token ids ``model``'s input embedding has, or None when that cannot be told."""
    try:
        rows = model.get_input_embeddings().num_embeddings
    except (AttributeError, NotImplementedError):
        return None
    return rows if isinstance(rows, int) else None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and warnings while loading: subsetctl reports
    through its own progress callbacks, and nothing below the CLI prints."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def not_a_causal_lm(config: Mapping[str, Any]) -> str | None:
    """Why a model whose config.json holds ``config`` cannot be loaded as a causal-lm, or
    None when it can (or when that cannot be told from the config).

    The rule, in order:

    - custom modeling code (``auto_map``) or ``is_decoder: true``: loadable. An encoder
      family's checkpoint trained as a decoder says ``is_decoder: true``;
    - ``is_encoder_decoder: true`` (T5, BART, ...): not loadable, since ``AutoModelForCausalLM``
      builds BART's and its kin's decoder alone, whose cross-attention never sees an encoder;
    - a ``model_type`` in :data:`ENCODER_ONLY_MODEL_TYPES` (bert, roberta, deberta, ...): not
      loadable, since ``AutoModelForCausalLM`` would build it with bidirectional attention
      and a random LM head, so every loss, gradient and generation would be meaningless;
    - ``architectures`` naming a masked-LM head (``...ForMaskedLM``) and no generative head
      (``...ForCausalLM``, ``...LMHeadModel``, ``...ForConditionalGeneration``): an encoder of
      a family not listed above, so not loadable either;
    - anything else: loadable.

    ``is_decoder`` alone cannot decide it: decoder configs such as llama, qwen2 or gpt2 have
    no such field, and some (gpt_neox, trocr) carry ``is_decoder: false`` by default. Nor
    can "no causal head in ``architectures``": decoders are often saved headless
    (``LlamaModel``) or as classifiers, and still load usefully when their LM head is tied
    to the embeddings.
    """
    if config.get("auto_map") or config.get("is_decoder") is True:
        return None
    model_type = config.get("model_type")
    if config.get("is_encoder_decoder") is True:
        return f"an encoder-decoder (sequence-to-sequence) model (model_type {model_type!r})"
    if model_type in ENCODER_ONLY_MODEL_TYPES:
        return f"an encoder-only model (model_type {model_type!r}, without is_decoder: true)"
    architectures = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    masked = [a for a in architectures if a.endswith("ForMaskedLM")]
    if masked and not any(a.endswith(_CAUSAL_HEAD_SUFFIXES) for a in architectures):
        return f"an encoder-only model (a masked-LM head, {masked[0]})"
    return None


def packaged_names_of_kind(kind: str) -> list[str]:
    """The packaged models that load as ``kind`` ("causal-lm", "classifier"), for error
    messages; a plugin's packaged model that is broken (not a PackagedModel) is left out
    here (the error is about another model) and refused when a spec names it."""
    names = []
    for name in packaged_names():
        try:
            entry = PACKAGED_MODELS.get(name)
        except UserError:
            continue
        if kind in entry.kinds:
            names.append(name)
    return names


def _causal_packaged_hint() -> str:
    """The packaged models that load as a causal-lm, for error messages."""
    return ", ".join(packaged_names_of_kind("causal-lm")) or "none installed"


def _refuse_non_causal(config: Mapping[str, Any], where: str) -> None:
    """Raise a UserError when :func:`not_a_causal_lm` refuses ``config``; ``where`` names the
    model in the message ("The model folder /x", "The hub model 'org/name'")."""
    reason = not_a_causal_lm(config)
    if reason is None:
        return
    if config.get("is_encoder_decoder") is True:
        why = ("would load its decoder alone (BART and its kin), whose cross-attention never sees the encoder, or "
               "not load it at all,")
        fix = "subsetctl does not fine-tune encoder-decoder models: point"
    else:
        why = "would give it a random LM head on bidirectional attention (or not load it at all)"
        fix = "Set model.kind: classifier to fine-tune it as a sequence classifier, or point"
    raise UserError(
        f"{where} holds {reason}, so it cannot be loaded as a causal-lm: transformers {why} and every result "
        f"would be meaningless. {fix} model.source at a decoder (causal) language model (packaged: "
        f"{_causal_packaged_hint()})."
    )


def _refuse_unsupported_architecture(config: Any, kind: str, where: str) -> None:
    """A UserError when transformers has no class that loads ``config``'s model_type as
    ``kind`` (a vision model, CLIP, T5 as a causal-lm): from_pretrained's "Unrecognized
    configuration class" ValueError was reported as a damaged folder to copy again."""
    from transformers.models.auto import modeling_auto

    if getattr(config, "auto_map", None):  # custom code names its own classes
        return
    auto, names = (("AutoModelForCausalLM", modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) if kind == "causal-lm"
                   else ("AutoModelForSequenceClassification",
                         modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES))
    model_type = getattr(config, "model_type", None)
    if model_type in names:
        return
    classes = ", ".join(getattr(config, "architectures", None) or []) or "no architectures listed"
    raise UserError(
        f"{where} holds a {model_type!r} model ({classes}), which transformers cannot load as a {kind} "
        f"({auto} has no class for it). "
        "subsetctl fine-tunes decoder (causal) language models and text sequence classifiers: point model.source "
        f"at one of those (packaged: {_packaged_hint()})."
    )


def _reinitialized_head_labels(mismatched: Iterable[Any], num_labels: int, where: str) -> int | None:
    """The checkpoint's label count when loading replaced its classification head (all of
    ``mismatched``, transformers' ``(key, checkpoint shape, model shape)`` triples, differ
    only in the label dimension), else None. Any other size mismatch means the weights do
    not fit their own config.json: a UserError, rather than silently random weights."""
    old_labels: set[int] = set()
    for key, old, new in sorted(mismatched, key=lambda m: str(m[0])):
        old, new = tuple(old), tuple(new)
        if len(old) == len(new) >= 1 and old[1:] == new[1:] and new[0] == num_labels:
            old_labels.add(int(old[0]))
            continue
        raise UserError(
            f"{where} does not fit its own config.json: {key} has shape {old} in the checkpoint but {new} "
            "in the model. Save the model again with save_pretrained, or fix config.json."
        )
    return max(old_labels) if old_labels else None


def newly_initialized_layers(model: Any, missing_keys: Iterable[str]) -> tuple[list[str], list[str]]:
    """The layers of a sequence classifier, other than its head (``classifier``/``score``),
    whose weights ``missing_keys`` (transformers' loading info) says the checkpoint lacked,
    so that loading initialized them at random: DeBERTa-v2's ``pooler.dense``, ModernBERT's
    ``head.dense`` and ``head.norm`` from a bare encoder, BERT's pooler from a checkpoint
    saved without it (not DistilBERT's ``pre_classifier``: peft's name match for the
    ``classifier`` head trains it already). Returned as dotted module names,
    the ``nn.Linear`` ones (LoRA's ``modules_to_save`` trains them with the head) and the
    others (a LayerNorm, left at its initial values: the gradients stage computes
    per-example gradients of linear layers only)."""
    import torch

    from subsetctl.modeling.lora import _HEAD_NAMES, classifier_head_names

    try:
        heads = tuple(f"{name}." for name in classifier_head_names(model))
    except UserError:
        heads = ()
    parameters = {name for name, _ in model.named_parameters()}
    owners = {key.rsplit(".", 1)[0] for key in missing_keys if key in parameters and "." in key}
    # peft matches modules_to_save by the end of the name: DistilBERT's pre_classifier is trained as
    # "classifier" is (and always was), so it is not new to train
    owners = {o for o in owners if not f"{o}.".startswith(heads) and not o.endswith(_HEAD_NAMES)}
    modules = dict(model.named_modules())
    linear = sorted(o for o in owners if isinstance(modules.get(o), torch.nn.Linear))
    return linear, sorted(owners - set(linear))


def _notify(message: str, warn: Callable[[str], None] | None, progress: Callable[[str], None] | None) -> None:
    """Say ``message`` through ``warn``, else ``progress``, else as a Python warning."""
    if warn is not None:
        warn(message)
    elif progress is not None:
        progress(f"warning: {message}")
    else:
        warnings.warn(message, UserWarning, stacklevel=3)


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in DTYPES:
        raise UserError(f"Unknown dtype {dtype!r}; use one of: {', '.join(DTYPES)}.")
    return getattr(torch, dtype)


def _load(
    location: str,
    kind: str,
    dtype: str,
    trust_remote_code: bool,
    num_labels: int | None,
    local_files_only: bool = False,
    where: str | None = None,
    revision: str | None = None,
) -> tuple[Any, Any, int | None, tuple[list[str], list[str]]]:
    """``from_pretrained`` for the tokenizer and the model of the requested kind.

    The random parts of a freshly loaded model (a new classification head) are drawn
    under a fixed seed so the same source always gives the same starting weights.
    A causal-lm whose config describes an encoder is refused (:func:`not_a_causal_lm`).
    A classifier checkpoint whose head has another label count than ``num_labels`` (a
    fine-tuned sentiment or NLI model) gets a new head; the third value returned is then
    the checkpoint's label count, else None. The fourth is a classifier's layers outside
    its head that the checkpoint has no weights for (:func:`newly_initialized_layers`).
    ``where`` names the model in messages; ``revision`` (a hub id's commit, branch or tag)
    is passed to each ``from_pretrained`` where it is set.
    """
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    where = where or f"The model {as_typed(location)}"
    replaced_head: int | None = None
    new_layers: tuple[list[str], list[str]] = ([], [])

    pinned: dict[str, Any] = {"revision": revision} if revision is not None else {}
    kwargs: dict[str, Any] = {
        "dtype": _torch_dtype(dtype),
        "trust_remote_code": trust_remote_code,
        "local_files_only": local_files_only,
        **pinned,
    }
    if local_files_only:  # transformers looks for a hub id's adapter_config.json without it: 5 retries, ~25 s a load
        kwargs["adapter_kwargs"] = {"local_files_only": True}
    with quiet_transformers(), torch.random.fork_rng(devices=[]):
        tokenizer = AutoTokenizer.from_pretrained(
            location, trust_remote_code=trust_remote_code, local_files_only=local_files_only, **pinned
        )
        torch.manual_seed(0)
        config = AutoConfig.from_pretrained(
            location, trust_remote_code=trust_remote_code, local_files_only=local_files_only, **pinned
        )
        _refuse_unsupported_architecture(config, kind, where)
        if kind == "causal-lm":
            _refuse_non_causal(config.to_dict(), where)
            model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
        else:
            if num_labels is not None:
                kwargs["num_labels"] = num_labels
            model, loading = AutoModelForSequenceClassification.from_pretrained(
                location, ignore_mismatched_sizes=True, output_loading_info=True, **kwargs
            )
            replaced_head = _reinitialized_head_labels(
                loading.get("mismatched_keys") or (), model.config.num_labels, where
            )
            new_layers = newly_initialized_layers(model, loading.get("missing_keys") or ())
    ensure_pad_token(tokenizer, model, where)
    silence_sequence_length_warning(tokenizer)
    if kind == "classifier" and model.config.pad_token_id != tokenizer.pad_token_id:
        # a decoder's head takes the last token that is not config.pad_token_id as the text's end:
        # another id than the batches are padded with made it read a padding position
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer, replaced_head, new_layers


def silence_sequence_length_warning(tokenizer: Any) -> None:
    """Mark transformers' "Token indices sequence length is longer than the specified maximum
    sequence length for this model (77 > 16). Running this sequence through the model will
    result in indexing errors" as said already for ``tokenizer``. subsetctl tokenizes long
    texts whole to count and cut them itself (to ``model.max_length``, checked against the
    model's positions), so a long document's row printed that warning in the middle of a
    stage: of errors that never come, naming the tokenizer's ``model_max_length`` rather than
    model.max_length, which the truncation warnings speak of."""
    said = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(said, dict):
        said["sequence-length-is-longer-than-the-specified-maximum"] = True


def model_location(source: str, spec_dir: Path | None) -> str:
    """What ``model.source`` names, with a relative folder resolved like a data path.

    A relative path is taken against the spec's folder (so ``model.source: ckpt/base`` in
    ``myproj/subsetctl.yaml`` works from any working directory, as data paths do); when
    no such folder is there, against the working directory, as before. Packaged names,
    absolute paths and hub ids come back unchanged."""
    if source in packaged_names() or spec_dir is None:
        return source
    path = expand_home(source)
    if not path.is_absolute() and (Path(spec_dir) / path).is_dir():
        return str((Path(spec_dir) / path).resolve())
    return source


def uncached_hub_model(source: str, spec_dir: Path | None, revision: str | None = None) -> str | None:
    """The hub id ``model.source`` names when the local Hugging Face cache does not hold it
    (at ``revision``, ``model.revision``, where set; loading it downloads it); None for a
    packaged model, a local folder, a cached hub id, or no model source at all
    (:func:`check_model_folder` says so)."""
    try:
        location = model_location(source, spec_dir)
        if classify_model_source(location) == "hub" and not model_cached(location, revision):
            return location
    except UserError:
        pass
    except OSError as exc:  # a name too long to look at, no hub id: validate's model.source issue says so
        if exc.errno != errno.ENAMETOOLONG:
            raise
    return None


#: Weights files ``from_pretrained`` reads from a model folder, one of which it needs (an index
#: names shards that must be there too).
_WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
_WEIGHTS_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
#: a weights shard's name (``model-00001-of-00002.safetensors``), as ``save_pretrained`` writes it
_SHARD_NAME = re.compile(r"-\d+-of-\d+\.(safetensors|bin)$")


def snapshot_lacks(snapshot: Path) -> str | None:
    """What a hub model's snapshot folder in the local Hugging Face cache lacks for
    ``from_pretrained`` to load it offline, in words ("model.safetensors (a link to a blob that
    is not there)", "a weights file (...)", "tokenizer files (...)"); None when it holds a
    weights file (and every shard its index names) and tokenizer files. A snapshot's files
    are links into the repo's ``blobs``: a download cut short, or blobs deleted to free space,
    leave links to nothing, which the folder still lists."""
    try:
        names, listed, dangling = _listed_files(snapshot)
    except OSError:
        return None  # (loading says what is wrong with it)
    lacking = [_dangling_text(name) for name in dangling] + _weights_lacking(snapshot, names, listed)
    if not listed & set(TOKENIZER_FILES) and not _tokenizer_needs_no_files(snapshot):
        lacking.append(f"tokenizer files (one of {', '.join(TOKENIZER_FILES)})")
    return "; ".join(lacking) or None


def _listed_files(folder: Path) -> tuple[list[str], set[str], list[str]]:
    """``folder``'s entries, sorted; those that are files or links (to a file or to nothing);
    and the links to nothing (a hub snapshot's download cut short, its blobs deleted), which
    :func:`_dangling_text` words. OSError where it cannot be listed."""
    names = sorted(p.name for p in folder.iterdir())
    present = {name for name in names if (folder / name).is_file()}
    dangling = [name for name in names if name not in present and (folder / name).is_symlink()]
    return names, present | set(dangling), dangling


def _dangling_text(name: str) -> str:
    """A link to nothing that a model folder lists, in words."""
    return f"{name} (a link to a blob that is not there)"


def _weights_lacking(folder: Path, names: list[str], listed: set[str]) -> list[str]:
    """What a model folder ``folder`` (its entries ``names``; ``listed``, those that are files
    or links) lacks of its weights, in words: "a weights file (one of ...; it holds ...)", or
    the shards an index names that are not there; [] where ``from_pretrained`` finds them all."""
    if not listed & {*_WEIGHTS_FILES, *_WEIGHTS_INDEXES}:
        return [f"a weights file (one of {', '.join(_WEIGHTS_FILES)}; it holds {', '.join(names) or 'nothing'})"]
    lacking: list[str] = []
    for index in sorted(listed & set(_WEIGHTS_INDEXES)):
        try:
            weight_map = json.loads((folder / index).read_text(encoding="utf-8")).get("weight_map") or {}
            shards = sorted({str(f) for f in weight_map.values()} - listed)
        except (OSError, ValueError, AttributeError, TypeError):
            continue  # (a dangling index is said by the caller; loading says what is wrong with another)
        if shards:
            lacking.append(f"{len(shards)} of the weights shards {index} names ({', '.join(shards[:3])}"
                           f"{', ...' if len(shards) > 3 else ''})")
    return lacking


def model_folder_without_weights_note(source: str, spec_dir: Path | None) -> str | None:
    """For a ``model.source`` naming a local model folder that holds config.json but lacks
    its weights (:func:`_weights_lacking`: a folder where only the config and tokenizer were
    saved, a copy that left the weights behind, a shard missing): what it lacks and what to
    do, for `validate` to warn of (`run` would stop at meta_init, after the data stage, with
    transformers' "no file named model.safetensors"); None otherwise, and where the folder
    cannot be listed (loading says why)."""
    try:
        folder = local_model_folder(source, spec_dir)
    except OSError:
        return None
    if folder is None:  # (no folder with config.json: check_model_folder refuses it)
        return None
    try:
        names, listed, dangling = _listed_files(folder)
    except OSError:
        return None
    # (a weights file that is a link to nothing, as in a snapshot folder whose blob is gone: said so, not "lacks a
    # weights file (...; it holds model.safetensors)", nor nothing for a shard; a README.md such a link is no matter)
    lacking = [_dangling_text(name) for name in dangling
               if name in (*_WEIGHTS_FILES, *_WEIGHTS_INDEXES) or _SHARD_NAME.search(name)]
    lacking += _weights_lacking(folder, names, listed)
    if not lacking:
        return None
    return (f"The model folder {folder.resolve()} lacks {'; '.join(lacking)}: `run` would stop at meta_init, "
            "after the data stage, as the model cannot load. Save the weights there too "
            "(model.save_pretrained(folder)), or copy the folder again whole.")


def partly_cached_hub_model(source: str, spec_dir: Path | None,
                            revision: str | None = None) -> tuple[str, Path, str] | None:
    """For a ``model.source`` naming a hub id whose config.json the local Hugging Face cache
    holds but not all it needs to load (:func:`snapshot_lacks`): the id, its snapshot folder
    and what that lacks; None otherwise (a complete snapshot, an id not cached at all, not a
    hub id). Loading it where the hub can be reached downloads the rest. ``revision``:
    ``model.revision``, the snapshot looked at where set."""
    from subsetctl.hub import cached_snapshot

    try:
        location = model_location(source, spec_dir)
        if classify_model_source(location) != "hub":
            return None
    except UserError:
        return None
    except OSError as exc:  # a name too long to look at: validate's model.source issue says so
        if exc.errno != errno.ENAMETOOLONG:
            raise
        return None
    snapshot = cached_snapshot(location, revision)
    lacks = snapshot_lacks(snapshot) if snapshot is not None else None
    return (location, snapshot, lacks) if snapshot is not None and lacks is not None else None


def adapter_base_model_name(source: str, spec_dir: Path | None) -> str:
    """The base model a saved adapter names (its adapter_config.json's
    ``base_model_name_or_path``): ``model.source`` as the spec names it, so that a copied
    project's adapters name it as the project does. A packaged model's name or a hub id as
    it is; a local folder by its path relative to the project folder when the spec names it
    so (peft wrote the folder's absolute path on the machine that trained them, and a
    packaged model's converted copy in the user cache), else its absolute path."""
    if source in packaged_names():
        return source
    location = expand_home(model_location(source, spec_dir))
    if not location.is_dir():
        return source  # a hub id
    written = expand_home(source)
    if not written.is_absolute() and spec_dir is not None and (Path(spec_dir) / written).is_dir():
        return written.as_posix()
    return str(location.resolve())


def adapter_base_model_folder(source: str, spec_dir: Path | None) -> str | None:
    """The folder the base model is read from on this machine (a local folder's absolute
    path; a packaged model's folder, once converted), to load an adapter onto with plain
    peft; None for a hub id, or a packaged model not converted here (never converted for it)."""
    if source in packaged_names():
        from subsetctl.modeling.packaged import present_folder

        found = present_folder(source)
        return str(found) if found is not None else None
    location = expand_home(model_location(source, spec_dir))
    return str(location.resolve()) if location.is_dir() else None


def adapter_base_model_revision(source: str, spec_dir: Path | None, revision: str | None = None) -> str | None:
    """For a hub id, the revision (commit) of it that the local Hugging Face cache serves
    (:func:`subsetctl.hub.cached_revision`) for ``revision`` (``model.revision``: a commit, or
    the branch or tag the cache's refs resolve; None: its main): a newer revision downloaded
    later leaves the stages up to date, so ``from_pretrained(id)`` may later load other
    weights than the adapters were trained on; the report names this one. None for a
    packaged model, a local folder, or a hub id the cache does not hold (at ``revision``)."""
    if source in packaged_names() or not _HUB_ID.match(source):
        return None
    if expand_home(model_location(source, spec_dir)).is_dir():
        return None
    from subsetctl.hub import cached_revision

    return cached_revision(source, revision)


def folder_a_hub_id_shadows(source: str, spec_dir: Path | None) -> Path | None:
    """For a ``model.source`` that is no folder but looks like a hub id (``models/bsae``):
    the local folder its first part names, when there is one (next to the spec or in the
    working directory). A mistyped local path is far likelier than a hub organization
    that happens to share a local folder's name, so ``validate`` warns about it."""
    if source in packaged_names() or not _HUB_ID.match(source):
        return None
    if expand_home(model_location(source, spec_dir)).is_dir():
        return None
    first = source.split("/", 1)[0]
    for base in ([Path(spec_dir)] if spec_dir is not None else []) + [Path.cwd()]:
        if (base / first).is_dir():
            return (base / first).resolve()
    return None


def _check_packaged_kind(source: str, kind: str) -> None:
    """Raise a UserError when the packaged model ``source`` cannot be loaded as ``kind``
    (the encoder all-minilm-l6-v2 as a causal-lm); the hint names only packaged models
    that can."""
    entry = PACKAGED_MODELS.get(source)
    if kind in entry.kinds:
        return
    fitting = packaged_names_of_kind(kind)
    raise UserError(
        f"The packaged model {as_typed(source)} ({entry.architecture}) cannot be loaded as a {kind}; it supports: "
        f"{', '.join(entry.kinds)}. Change model.kind, or pick a packaged model that loads as a {kind} "
        f"({', '.join(fitting) or 'none installed'}) or a folder or hub id of one."
    )


#: config.json keys of rotary position encodings: such models have no table of learned
#: positions to run past (and ``rope_scaling`` stretches them beyond the declared count).
ROTARY_CONFIG_KEYS = ("rope_theta", "rope_parameters", "rope_scaling", "rotary_dim", "rotary_pct",
                      "rotary_emb_base", "partial_rotary_factor")


def position_limit(config: Mapping[str, Any]) -> tuple[str, int] | None:
    """The most token positions a model with *learned* position embeddings has, with the
    key that says so (``n_positions`` for GPT-2 and its kin, ``max_position_embeddings``
    for BERT, OPT and most others); None for a rotary model (:data:`ROTARY_CONFIG_KEYS`,
    or ``position_embedding_type: rotary``) or a config that declares nothing."""
    if any(config.get(key) is not None for key in ROTARY_CONFIG_KEYS) \
            or config.get("position_embedding_type") in ("rotary", "rope"):
        return None
    for key in ("n_positions", "max_position_embeddings"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return key, value
    return None


def refuse_max_length_beyond_positions(config: Mapping[str, Any], max_length: int, where: str) -> None:
    """A UserError when ``model.max_length`` is more than the learned positions the model
    has (:func:`position_limit`): models with learned position embeddings (GPT-2, BERT,
    OPT) fail with an IndexError on the first example that long, which may come only at
    evaluate, after every fine-tune (generation fills prompts up to ``max_length``).
    Rotary models are left alone: they run on (``rope_scaling`` even extends them)."""
    limit = position_limit(config)
    if limit is None or max_length <= limit[1]:
        return
    key, positions = limit
    raise UserError(
        f"model.max_length is {max_length}, but {where} has only {positions} token positions ({key} in its "
        f"config.json): examples that long (and a causal LM's generation at evaluate) would run past them. Set "
        f"model.max_length to at most {positions}."
    )


#: RoPE scalings that stretch the positions a model was trained on by their ``factor``
#: (transformers' rope_type, or ``type`` in older config.json files)
FACTOR_SCALINGS = ("linear", "dynamic", "yarn", "llama3")


def _positive(value: Any) -> bool:
    """Whether ``value`` is a positive number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def rope_scaling_of(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The RoPE scaling of a model's config: ``rope_scaling`` (config.json), or
    ``rope_parameters`` of a rope_type other than default (transformers 5 writes a config's
    rope_scaling there); None for a model without one."""
    for key in ("rope_scaling", "rope_parameters"):
        scaling = config.get(key)
        if isinstance(scaling, Mapping) and (scaling.get("rope_type") or scaling.get("type")) not in ("default", None):
            return scaling
        if key == "rope_scaling" and scaling is not None and not isinstance(scaling, Mapping):
            return {}  # (something else: a scaling it cannot read)
        if key == "rope_scaling" and isinstance(scaling, Mapping) and scaling and not {"rope_type", "type"} & set(scaling):
            return scaling  # (settings of no type, ``{"factor": 4.0}``: a scaling it cannot read, not none)
    return None


def scaled_positions(config: Mapping[str, Any], scaling: Mapping[str, Any]) -> tuple[int, str] | None:
    """The most token positions a rotary model with the RoPE ``scaling`` reads, and how that
    follows from its config: for a scaling by a factor (:data:`FACTOR_SCALINGS`) that factor
    times the positions it was trained on (``original_max_position_embeddings``, else
    ``max_position_embeddings``), or the declared ``max_position_embeddings`` where that is
    more (Llama 3.1 declares 131,072 of 8 x 8,192); longrope's declared count. None when it
    cannot tell (another scaling, no factor)."""
    declared = config.get("max_position_embeddings")
    declared = declared if _positive(declared) and isinstance(declared, int) else None
    kind = scaling.get("rope_type") or scaling.get("type")
    if kind == "longrope" and declared:
        return declared, f"max_position_embeddings, which its {kind} RoPE scaling reaches"
    factor = scaling.get("factor")
    original = next((value for value in (scaling.get("original_max_position_embeddings"),
                                         config.get("original_max_position_embeddings"), declared)
                     if _positive(value) and isinstance(value, int)), None)
    if kind not in FACTOR_SCALINGS or not _positive(factor) or original is None:
        return None
    stretched = int(factor * original)
    if declared and declared > stretched:
        return declared, f"max_position_embeddings, beyond its {kind} RoPE scaling's {factor:g} x {original}"
    return stretched, f"{original} trained positions stretched {factor:g} times by its {kind} RoPE scaling"


def max_length_past_trained_positions(config: Mapping[str, Any], max_length: int, where: str) -> str | None:
    """A warning when ``model.max_length`` is more than the positions a *rotary* model reads:
    those it was trained on (``max_position_embeddings``), or as far as its RoPE scaling
    stretches them (:func:`scaled_positions`), else None; where the config's scaling says
    not how far (another kind, no factor), past ``max_position_embeddings`` the warning
    says so. Such a model runs past them without an error
    (:func:`refuse_max_length_beyond_positions` leaves it alone), but its outputs degrade
    there, so a long example's loss, f and gradients are of a model out of its range, and
    nothing said so; a model with learned positions is refused instead. Any rope_scaling
    silenced the warning, a linear factor of 2 with max_length 4 x the trained positions too."""
    if position_limit(config) is not None:
        return None  # learned positions: refused past them
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or isinstance(positions, bool) or positions <= 0 or max_length <= positions:
        return None
    scaling = rope_scaling_of(config)
    if scaling is None:
        return (f"model.max_length is {max_length}, but {where} was trained on at most {positions} token positions "
                "(max_position_embeddings in its config.json, with no rope_scaling): it runs on past them without "
                f"an error, but its outputs degrade there, so examples longer than {positions} tokens are trained and "
                f"scored out of its range. Set model.max_length to at most {positions}, or give the model a RoPE "
                "scaling (rope_scaling in its config.json) if it is meant to read longer texts.")
    scaled = scaled_positions(config, scaling)
    if scaled is None:
        kind = scaling.get("rope_type") or scaling.get("type")
        return (f"model.max_length is {max_length}, past the {positions} token positions {where} declares "
                f"(max_position_embeddings in its config.json), and subsetctl cannot tell how far its RoPE scaling "
                f"(rope_scaling {f'of type {kind!r}' if kind else 'as written, with no type' if scaling else 'as written'}"
                f"{'' if _positive(scaling.get('factor')) else ', with no factor'}) stretches them: past what it "
                "reads, a rotary model runs on without an error but its outputs degrade. Check the length the "
                "model's card gives, and keep model.max_length within it.")
    limit, how = scaled
    if max_length <= limit:
        return None
    return (f"model.max_length is {max_length}, but {where} reads at most {limit} token positions ({how}, in its "
            f"config.json): it runs on past them without an error, but its outputs degrade there, so examples "
            f"longer than {limit} tokens are trained and scored out of its range. Set model.max_length to at most "
            f"{limit}.")


def check_model_folder(source: str, spec_dir: Path | None, kind: str | None = None,
                       revision: str | None = None, trust_remote_code: bool | None = None) -> None:
    """Raise the UserError :func:`resolve_model` would, for what validate can see without
    loading anything: a source that is no packaged model, folder or hub id, a packaged
    model that does not load as ``kind``, a folder without config.json (``.``, a parent
    folder of the model, an empty string) or without tokenizer files, or, with ``kind`` "causal-lm", a folder whose
    config.json describes an encoder-only or encoder-decoder model
    (:func:`not_a_causal_lm`; only json is read, transformers is not imported), or a plugin
    package's packaged model whose ``locate`` fails (one not converted on first use, which
    only finds its shipped folder). A hub id's cached config.json is read at ``revision``
    (``model.revision``) where set. With ``trust_remote_code`` (``model.trust_remote_code``)
    given, also a folder (or a hub id's cached copy) whose model only its own code builds,
    while that is off (:func:`~subsetctl.modeling.remote_code.refuse_code_not_trusted`)."""
    if kind is not None and source in packaged_names():
        _check_packaged_kind(source, kind)
    if source in packaged_names() and PACKAGED_MODELS.origin(source) != "built-in" \
            and not PACKAGED_MODELS.get(source).converted:
        from subsetctl.modeling.packaged import locate_packaged

        locate_packaged(source)  # said now, not first by run's meta_init
    location = model_location(source, spec_dir)
    origin = classify_model_source(location, spec_dir)
    if origin == "hub":  # its cached config.json, where the cache has one
        _check_cached_hub_config(location, kind, revision, trust_remote_code)
    if origin != "local":
        return
    folder = expand_home(location).resolve()
    if not (folder / "config.json").is_file():
        try:
            inside = sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file())[:5]
        except OSError:  # an unreadable folder: no hint
            inside = []
        hint = f" Its subfolders {', '.join(inside)} hold one: point model.source at the model's own folder." \
            if inside else _adapter_hint(folder)
        raise UserError(
            f"The folder {folder} has no config.json, so it is not a Hugging Face model folder.{hint} Point "
            "model.source at the folder that holds config.json and the weights (as written by "
            f"save_pretrained), or use a packaged model ({_packaged_hint()})."
        )
    _refuse_folder_without_tokenizer(folder)
    _refuse_config_not_json(folder)
    if kind == "causal-lm":
        config = _folder_config(folder)
        if config is not None:
            _refuse_non_causal(config, f"The model folder {folder}")
    if trust_remote_code is not None:
        refuse_code_not_trusted(folder, trust_remote_code)


def _check_cached_hub_config(source: str, kind: str | None, revision: str | None,
                             trust_remote_code: bool | None) -> None:
    """:func:`check_model_folder`'s checks of the hub model ``source``'s config.json as the
    local Hugging Face cache holds it (at ``revision``, ``model.revision``, where set), offline
    too, so that they are said before the data stage runs, not at meta_init: an encoder where
    ``kind`` is "causal-lm", and a model only its own ``auto_map`` code builds while
    ``trust_remote_code`` is off (transformers said only "contains custom code which must be
    executed", where a local folder got subsetctl's advice). A cache without config.json, or
    with one that cannot be read, passes: only config.json is read, the rest is left to loading; so
    does, with the hub reachable, a copy of main (or a branch or tag) that may be older than what
    loads (:func:`_cached_copy_loads`)."""
    snapshot = cached_snapshot(source, revision)
    config = _folder_config(snapshot) if snapshot is not None else None
    if snapshot is None or config is None:
        return
    where = _hub_copy_opening(source, snapshot)
    try:
        if kind == "causal-lm":
            _refuse_non_causal(config, where)
        if trust_remote_code is not None:
            refuse_code_not_trusted(snapshot, trust_remote_code, where)
    except UserError:  # (the hub probed only then: a cache's revision of main may be out of date online)
        if _cached_copy_loads(snapshot, revision):
            raise


def _cached_copy_loads(snapshot: Path, revision: str | None) -> bool:
    """Whether a hub model's ``snapshot`` in the local Hugging Face cache is what loading it at
    ``revision`` (``model.revision``) reads, so that a refusal read from its config.json holds:
    ``revision`` is its commit (:func:`~subsetctl.hub.snapshot_pinned`), or the hub is out of
    reach. Online, main (or a branch or tag) loads where it points on the hub now, perhaps a
    later revision than the cache's, which the load checks once it has it. Probes the hub:
    called only where a refusal rests on the answer."""
    return snapshot_pinned(snapshot, revision) or not hub_reachable()


def _read_from_a_stale_hub_copy(source: str, spec_dir: Path | None, revision: str | None) -> bool:
    """Whether the config.json validate reads for ``model.source`` (:func:`_config_validate_reads`)
    is a hub id's snapshot in the local Hugging Face cache that loading it may not read
    (:func:`_cached_copy_loads`). Probes the hub: called only where a refusal rests on the answer."""
    try:
        location = model_location(source, spec_dir)
    except UserError:
        return False
    if source in packaged_names() or classify_model_source(location) != "hub":
        return False
    snapshot = cached_snapshot(location, revision)
    return snapshot is not None and not _cached_copy_loads(snapshot, revision)


def _refuse_config_not_json(folder: Path) -> None:
    """A UserError for a model folder whose config.json is not JSON (cut short by a copy or
    download, or edited by hand): `validate` passed it, and `run` stopped after the data
    stage with transformers' "It looks like the config file at ... is not a valid JSON file"
    and advice about the weights. A file that cannot be read is left to the load to say."""
    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(
            f"The model folder {folder} has a config.json that is not valid JSON (line {exc.lineno}: "
            f"{json_syntax_error(exc)}): fix it, or copy the folder again (a copy or download stopped partway "
            "leaves files cut short), or write it with model.save_pretrained(folder)."
        ) from None
    except (OSError, ValueError):  # (unreadable, not UTF-8: loading it says so)
        return


def _refuse_folder_without_tokenizer(folder: Path) -> None:
    """A UserError for a model folder that holds none of :data:`TOKENIZER_FILES`, listing
    what it holds; unless its tokenizer needs no vocabulary file
    (:func:`_tokenizer_needs_no_files`)."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES) and not _tokenizer_needs_no_files(folder):
        present = ", ".join(sorted(p.name for p in folder.iterdir())[:12]) or "nothing"
        raise UserError(
            f"The model folder {folder} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); it "
            f"holds: {present}. Save the tokenizer there too (tokenizer.save_pretrained(folder))."
        )


def _refuse_unreadable_files(folder: Path, where: str) -> None:
    """A UserError for a model folder holding files this user may not read (a folder a
    teammate saved, whose safetensors weights file is 0o600; a converted copy an earlier
    subsetctl wrote so into a shared SUBSETCTL_CACHE): transformers said "No such file or
    directory" of the weights file, which is there, and, for a packaged model, stopped the
    run with an internal error. Names the first such file, its owner and the command
    (:func:`_unreadable_files`)."""
    found = _unreadable_files(folder, where)
    if found is not None:
        what, advice = found
        raise UserError(f"{what}. {advice}; then run again.")


def _unreadable_files(folder: Path, where: str) -> tuple[str, str] | None:
    """Of a model folder ``folder`` (named ``where``) holding files this user may not read:
    what is wrong (the first such file, how many more, its owner) and what to do (its
    owner's ``chmod``), apart, as `validate`'s warning and `doctor`'s check give them; None
    where every file is readable, or the folder cannot be listed (the load says so)."""
    import os

    try:
        refused = sorted(p for p in folder.iterdir() if p.is_file() and not os.access(p, os.R_OK))
    except OSError:
        return None
    if not refused:
        return None
    more = f" and {len(refused) - 1} more" if len(refused) > 1 else ""
    whose = f" ({note})" if (note := owner_note(refused[0])) else ""
    return (f"{where} holds files you may not read: {refused[0].name}{more}{whose}",
            f"Its owner can make them readable with `chmod -R a+rX {shell_arg(folder)}` (or `g+rX`, for their group alone)")


def unreadable_model_files_note(source: str, spec_dir: Path | None) -> tuple[str, str] | None:
    """What `plan` and `run` stop with (:func:`_refuse_unreadable_files`) when ``source`` is a
    local model folder holding files this user may not read (a teammate's checkpoint saved
    0o600), for `validate` to warn of and `doctor` to fail on: what is wrong and what to do
    (:func:`_unreadable_files`); None otherwise (nothing loaded), and where the folder cannot
    be looked at (a name too long: a problem of model.source already)."""
    try:
        folder = local_model_folder(source, spec_dir)
    except OSError:
        return None
    if folder is None:
        return None
    folder = folder.resolve()
    return _unreadable_files(folder, f"The model folder {folder}")


#: Tokenizers of characters or bytes, which save no vocabulary file (only tokenizer_config.json)
_FILELESS_TOKENIZERS = ("CanineTokenizer", "ByT5Tokenizer", "PerceiverTokenizer")
#: ``model_type``s whose tokenizer (AutoTokenizer's choice from config.json) is one of them
_FILELESS_MODEL_TYPES = ("canine", "perceiver")


def _tokenizer_needs_no_files(folder: Path) -> bool:
    """Whether a model folder's tokenizer is one of :data:`_FILELESS_TOKENIZERS`, named by
    its tokenizer_config.json or, without one naming a class, by its config.json's
    ``model_type`` (a CANINE folder transformers loads holds only tokenizer_config.json)."""
    try:
        tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tokenizer_config = None
    named = tokenizer_config.get("tokenizer_class") if isinstance(tokenizer_config, dict) else None
    if named is not None:
        return named in _FILELESS_TOKENIZERS
    return (_folder_config(folder) or {}).get("model_type") in _FILELESS_MODEL_TYPES


def _adapter_hint(folder: Path) -> str:
    """A sentence for a folder without config.json that holds a peft adapter (its
    adapter_config.json): model.source names the base model, the adapter is not one."""
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    named = f" ({base})" if isinstance(base, str) and base else ""
    return (f" It holds a LoRA (peft) adapter: model.source must name its base model{named}, since subsetctl "
            "trains its own adapter on the base model.")


def _hub_copy_named(source: str, snapshot: Path) -> str:
    """How messages name the hub model ``source`` read from ``snapshot``, its copy in the
    local Hugging Face cache (mid-sentence: "the hub model ...")."""
    return f"the hub model {as_typed(source)} (its copy in the local Hugging Face cache, {snapshot})"


def _hub_copy_opening(source: str, snapshot: Path) -> str:
    """:func:`_hub_copy_named` opening a sentence ("The hub model ...")."""
    return "T" + _hub_copy_named(source, snapshot)[1:]


def _folder_config(folder: Path) -> dict[str, Any] | None:
    """A model folder's config.json, or None when it is missing, unreadable or not a json
    object (loading the model says what is wrong with it)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def check_max_length_fits_folder(source: str, spec_dir: Path | None, max_length: int,
                                 revision: str | None = None) -> None:
    """:func:`refuse_max_length_beyond_positions` for a local model folder, a packaged
    model shipped as a plain folder, or a hub id the local Hugging Face cache holds, from
    its config.json alone (validate); hub models not cached and packaged models that are
    converted on first use are checked when a stage loads them. Nothing is said here about
    a source :func:`check_model_folder` refuses. ``revision``: ``model.revision``, where set. With
    the hub reachable, a hub id's cached copy of main (or a branch or tag), perhaps an older
    revision than the one that loads, refuses nothing (:func:`_cached_copy_loads`): the load checks it."""
    found = _config_validate_reads(source, spec_dir, revision)
    if found is None:
        return
    try:
        refuse_max_length_beyond_positions(found[0], max_length, found[1])
    except UserError:
        if not _read_from_a_stale_hub_copy(source, spec_dir, revision):
            raise


def max_length_note_for_folder(source: str, spec_dir: Path | None, max_length: int,
                               revision: str | None = None) -> str | None:
    """:func:`max_length_past_trained_positions` for the model whose config.json validate
    reads (:func:`check_max_length_fits_folder`'s), or None."""
    found = _config_validate_reads(source, spec_dir, revision)
    return None if found is None else max_length_past_trained_positions(found[0], max_length, found[1])


def _config_validate_reads(source: str, spec_dir: Path | None,
                           revision: str | None = None) -> tuple[dict[str, Any], str] | None:
    """The config.json validate reads for ``model.source`` without loading anything, and how
    messages name its model: a local folder's, a packaged model's shipped as a plain folder,
    or a hub id's in the local Hugging Face cache; None for the rest (hub models not cached,
    packaged models converted on first use, a source :func:`check_model_folder` refuses)."""
    found = folder_read_without_loading(source, spec_dir, revision)
    if found is None:
        return None
    config = _folder_config(found[0])
    return None if config is None else (config, found[1])


def folder_read_without_loading(source: str, spec_dir: Path | None,
                                revision: str | None = None) -> tuple[Path, str] | None:
    """The model folder whose files can be read for ``model.source`` without loading or
    converting anything (:func:`_config_validate_reads`'s, also for ``plan``'s memory estimate),
    and how messages name its model; None where there is none (see there). A hub id's
    snapshot is that of ``revision`` (``model.revision``) where set."""
    from subsetctl.hub import cached_snapshot
    from subsetctl.registry import PACKAGED_MODELS

    try:
        if source in packaged_names():
            packaged = PACKAGED_MODELS.get(source)
            if packaged.converted:
                return None
            from subsetctl.modeling.packaged import locate_packaged

            folder = Path(locate_packaged(source))  # finds the shipped folder, nothing more
        else:
            location = model_location(source, spec_dir)
            origin = classify_model_source(location)
            if origin == "hub":
                snapshot = cached_snapshot(location, revision)
                if snapshot is None:
                    return None
                return snapshot, _hub_copy_named(location, snapshot)
            if origin != "local":
                return None
            folder = expand_home(location).resolve()
    except (UserError, OSError):  # (OSError: a name too long to look at, a problem of model.source)
        return None
    return folder, f"the model folder {folder}"


def local_model_folder(source: str, spec_dir: Path | None) -> Path | None:
    """The model folder ``model.source`` names when it is a local one (a folder with a
    config.json, not a packaged model's name), else None (a packaged model, a hub id, or
    no model folder)."""
    if source in packaged_names():
        return None
    folder = expand_home(model_location(source, spec_dir))
    return folder if (folder / "config.json").is_file() else None


#: the key under which :func:`model_fingerprint_inputs` records a packaged model's package and version
MODEL_PACKAGE_KEY = "model_package"


def model_fingerprint_inputs(source: str, spec_dir: Path | None) -> dict[str, Any]:
    """What the model stages depend on besides ``model.source`` itself: for a local
    folder, the size and sha256 of every file in it (so a retrained or replaced checkpoint
    at the same path makes meta_init, gradients, verify, finetune and evaluate stale;
    hashes are cached, see :mod:`subsetctl.filehash`). A packaged model from an installed
    plugin package adds that package and its version (``model_package``: a new release may
    ship other weights); the built-in ones are known by name (their packages' versions are
    not recorded), and hub ids by the spec, so they add nothing."""
    package = PACKAGED_MODELS.package(source) if source in packaged_names() else None
    if package is not None:
        return {MODEL_PACKAGE_KEY: package}
    folder = local_model_folder(source, spec_dir)
    if folder is None:  # not a model folder: nothing to hash (validate and the model stages say what
        return {}  # is wrong; never hash a whole unrelated tree)
    from subsetctl.filehash import tree_fingerprint

    try:
        return {"model_files": tree_fingerprint(folder, spec_dir)}
    except PermissionError:  # a teammate's new checkpoint saved 0o600: say whose, and the chmod that reads it
        _refuse_unreadable_files(folder, f"The model folder {folder}")  # ("copy the project" could not help)
        raise


#: What a causal LM's model-stage inputs and fine-tune cache keys hold when its tokenizer
#: gives an answer other ids after the prompt than alone (:func:`answer_tokenization_inputs`):
#: results computed before the answer was tokenized after the prompt's last characters
#: (:func:`subsetctl.modeling.encoding.tokenize_responses`) lack it, so they are stale.
ANSWER_TOKENIZATION = {"answer_tokenization": "after_prompt_tail"}

#: SentencePiece model files: a slow tokenizer (or one converted from it) marks a text's
#: first word with "▁"
_SENTENCEPIECE_FILES = ("tokenizer.model", "spiece.model", "sentencepiece.bpe.model")

#: tokenizer.json's path, mtime and size -> whether it marks a text's first word (parsed
#: once per process: `plan` asks for every model stage)
_MARKS_FIRST_WORD: dict[tuple[str, int, int], bool] = {}


def _component_marks_first_word(component: Any) -> bool:
    """Whether a tokenizer.json ``pre_tokenizer`` or ``normalizer`` (a ``Sequence`` of them
    looked into) puts something before a text's first word that it does not put after other
    text: ``Metaspace`` with a word start at the beginning (``prepend_scheme`` "always" or
    "first"; older files: ``add_prefix_space``, true by default), ``ByteLevel`` with
    ``add_prefix_space``, and a ``Prepend`` normalizer (Llama's legacy "▁")."""
    if not isinstance(component, dict):
        return False
    kind = component.get("type")
    if kind == "Sequence":
        parts = component.get("pretokenizers", component.get("normalizers"))
        return isinstance(parts, list) and any(_component_marks_first_word(part) for part in parts)
    if kind == "Metaspace":
        scheme = component.get("prepend_scheme")
        return scheme != "never" if scheme is not None else component.get("add_prefix_space", True) is not False
    if kind == "ByteLevel":
        return component.get("add_prefix_space") is True
    if kind == "Prepend":
        return bool(component.get("prepend"))
    return False


def tokenizer_marks_first_word(folder: Path) -> bool:
    """Whether the tokenizer in a model folder marks a text's first word as it does no word
    after other text (SentencePiece-style: a ``Metaspace`` pre-tokenizer or Llama's legacy
    "▁" normalizer, in tokenizer.json or nested in a ``Sequence``; a SentencePiece model file
    without tokenizer.json): an answer tokenized alone then got ids other than after its
    prompt. Read from the files, without transformers (``plan`` stays fast); a
    tokenizer.json that cannot be read counts as not (loading the model says what is wrong).
    Byte-level BPE (GPT-2, Qwen, SmolLM2, Llama 3), WordPiece and character tokenizers do not."""
    path = folder / "tokenizer.json"
    try:
        stat = path.stat()
    except OSError:
        return any((folder / name).is_file() for name in _SENTENCEPIECE_FILES)
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _MARKS_FIRST_WORD:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        _MARKS_FIRST_WORD[key] = isinstance(data, dict) and (
            _component_marks_first_word(data.get("pre_tokenizer"))
            or _component_marks_first_word(data.get("normalizer")))
    return _MARKS_FIRST_WORD[key]


def answer_tokenization_inputs(source: str, spec_dir: Path | None, kind: str) -> dict[str, Any]:
    """:data:`ANSWER_TOKENIZATION` for a causal LM whose tokenizer marks a text's first word
    (:func:`tokenizer_marks_first_word`): its answers' ids changed when they came to be
    tokenized after the prompt, so the model stages' results and cached fine-tunes computed
    before are stale; {} for every other model, whose ids did not change (a classifier
    tokenizes no answer).

    Read from a local folder and from a packaged model shipped as a folder. A packaged model
    converted on first use (SmolLM2, byte-level BPE) and a hub id add nothing: their folder
    may not be there yet when `plan` or `run` takes a stage's inputs, and would be after the
    run, which would make its results stale once for nothing."""
    if kind != "causal-lm":
        return {}
    if source in packaged_names():
        if getattr(PACKAGED_MODELS.get(source), "converted", True):
            return {}
        from subsetctl.modeling.packaged import present_folder

        folder = present_folder(source)
    else:
        folder = local_model_folder(source, spec_dir)  # (None: a hub id, or no model folder)
    return dict(ANSWER_TOKENIZATION) if folder is not None and tokenizer_marks_first_word(folder) else {}


def classify_model_source(source: str, spec_dir: Path | None = None) -> str:
    """ "packaged", "local" or "hub"; raises a UserError for anything else. ``spec_dir``
    (where a relative folder is looked for first) only sharpens that error: a folder there
    or in the working directory whose name differs in letter case or Unicode form is named."""
    if source in packaged_names():
        return "packaged"
    path = expand_home(source)
    looked_in = [path] if path.is_absolute() else [*([Path(spec_dir) / path] if spec_dir is not None else []), path]
    file = next((p for p in looked_in if p.exists() and not p.is_dir()), None)
    if file is not None and (path.exists() or not _HUB_ID.match(source)):  # (model.source: ./model/config.json)
        raise UserError(
            f"Model source {as_typed(source)} is a file ({file}), not a folder. Name the Hugging Face model "
            f"folder that holds config.json (perhaps {as_typed(Path(source).parent)}), a packaged model "
            f"({_packaged_hint()}), or a hub id like 'org/name'."
        )
    if path.exists():
        return "local"
    if _HUB_ID.match(source):
        return "hub"
    where = ("" if path.is_absolute() else
             f" (a relative folder is looked for next to the spec file, then in the current folder, {Path.cwd()})")
    note = next((n for n in (path_not_found_note(source, p) for p in looked_in) if n), "")
    if path.is_absolute() and spec_dir is not None:
        note += _moved_project_note(path, Path(spec_dir))
    note += next((n for n in (_uncached_snapshot_note(p) for p in looked_in) if n), "")
    raise UserError(
        f"Unknown model {as_typed(source)}: it is not a packaged model{_packaged_guess(source)}, not an existing "
        f"folder{where} and not a hub id of the form 'org/name'. Packaged models: {_packaged_hint()}. Or give the "
        f"path of a local Hugging Face model folder{note}."
    )


def _uncached_snapshot_note(path: Path) -> str:
    """For a missing ``path`` of the form ``.../models--ORG--NAME/snapshots/COMMIT`` (a hub
    model's revision pinned by its folder in the local Hugging Face cache, one the cache does
    not hold): the commits it holds, each with the branch or tag names its ``refs`` give it,
    and their folders; "" for any other path. Without it a revision never downloaded here was
    told only "Unknown model ..."."""
    repo = path.parent.parent
    if path.parent.name != "snapshots" or not repo.name.startswith("models--"):
        return ""
    from subsetctl.hub import cached_model_revisions, revisions_listed

    commits, refs = cached_model_revisions(repo)
    hub_id = repo.name.removeprefix("models--").replace("--", "/")
    if not commits:
        return (f". The local Hugging Face cache holds no revision of {hub_id!r} ({repo} has no snapshot): "
                "load it once where the hub is reachable")
    named = next((c for ref, c in refs if ref == path.name and c in commits), None)
    if named is not None:  # snapshots/main: a branch or tag, whose commit names the folder
        return (f". {path.name!r} is a branch or tag of {hub_id!r}, not a folder: the local Hugging Face cache "
                f"holds it as commit {named}, so write model.source: {path.parent / named}, or model.source: "
                f"{hub_id} with model.revision: {path.name}")
    return (f". The local Hugging Face cache holds {len(commits)} revision{'s' if len(commits) > 1 else ''} of "
            f"{hub_id!r}, not {path.name!r}: {revisions_listed(commits, refs)}, each a folder in "
            f"{path.parent}; or write model.source: {hub_id} with model.revision: {path.name}, which loads it where the "
            "hub is reachable (and offline once downloaded)")


def _recorded_model_files(project_dir: Path) -> Any:
    """The model folder's files (``model_files``: sizes and sha256) that the first of the
    project's model stages with finished results recorded (meta_init's, as a rule); None
    where none did (nothing run yet, a hub id or a packaged model)."""
    from subsetctl.project import Project
    from subsetctl.stages import stage_names

    for stage in stage_names():
        manifest = Project(project_dir).read_results_manifest(stage) or {}
        extra = manifest.get("inputs", {}).get("extra") if isinstance(manifest.get("inputs"), dict) else None
        if isinstance(extra, dict) and extra.get("model_files") is not None:
            return extra["model_files"]
    return None


def _moved_project_note(path: Path, spec_dir: Path, depth: int = 3) -> str:
    """For an absolute model folder ``path`` that is not there: where the project (the spec's
    folder ``spec_dir``) holds a model folder by the same last names, inside it or beside it
    (``model``, ``models/base``, ``../m``), the relative ``model.source`` to give. A project
    copied or moved (`cp -r A B`, `mv`) keeps a spec naming its model by its old absolute
    path, and ``plan`` then only said the folder was unknown; "" where no such folder is.
    That the stages stay up to date is said only where that folder's files are those the
    project's results recorded (:func:`_recorded_model_files`): a folder by that name may
    hold another model (``../m`` beside the project, another checkpoint)."""
    parts = path.parts[1:]
    for base, prefix in ((spec_dir, ""), (spec_dir.parent, "../")):
        for k in range(1, min(depth, len(parts)) + 1):
            tail = Path(*parts[-k:])
            if (base / tail / "config.json").is_file():
                relative = prefix + tail.as_posix()
                return (f". The spec's folder has the model folder {relative!r} ({(base / tail).resolve()}): if "
                        "the project was copied or moved since the spec named its model by this absolute path, set "
                        f"model.source: {relative} (relative to the spec's folder: right after a move too)"
                        f"{_kept_results_note(relative, spec_dir)}")
    return ""


def _kept_results_note(relative: str, spec_dir: Path) -> str:
    """What giving ``model.source: relative`` does to the project's results: where they were
    made from a local model folder (:func:`_recorded_model_files`), "the stages stay up to
    date" for a folder of the same files, else that the model stages would run again; "" where
    none were (nothing run yet)."""
    recorded = _recorded_model_files(spec_dir)
    if recorded is None:  # nothing run from a local folder yet: no results to keep
        return ""
    if model_fingerprint_inputs(relative, spec_dir).get("model_files") == recorded:
        return "; the stages stay up to date, as a model folder is known by its files"
    return (". Its files are not those of the model the project's results were made from, "
            "though: check it is the model you mean (with it, the model stages run again)")


def model_in_another_project_note(source: str, spec_dir: Path) -> str | None:
    """For a ``model.source`` naming by an absolute path a model folder inside another project's
    folder (one holding a subsetctl.yaml, neither this spec's folder ``spec_dir`` nor around or
    inside it) where ``spec_dir`` holds a model folder at the same place: the relative
    ``model.source`` that reads this project's own. `cp -r A B` of a spec naming A's model by
    its absolute path (A/model) leaves B reading A's model, silently, until A is gone (then
    :func:`_moved_project_note` says it). None otherwise: a model another project's folder
    holds and this one has no copy of is shared on purpose."""
    path = expand_home(source)
    if source in packaged_names() or not path.is_absolute() or not (path / "config.json").is_file():
        return None
    try:
        folder, here = path.resolve(), Path(spec_dir).resolve()
    except (OSError, RuntimeError):
        return None
    if folder.is_relative_to(here):
        return None
    other = next((p for p in folder.parents if (p / "subsetctl.yaml").is_file()), None)
    if other is None or here.is_relative_to(other):  # (a project nested in the one holding the model: its own)
        return None
    relative = folder.relative_to(other).as_posix()
    if not (here / relative / "config.json").is_file():
        return None
    return (f"{as_typed(source)} is a model folder inside another project's folder, {other} (it holds a "
            f"subsetctl.yaml), and this project's folder has a model folder at the same place, {relative!r}: if "
            "this project was copied from that one (`cp -r`), it reads that project's model, not its own (until "
            f"that folder is gone). Set model.source: {relative} (relative to the spec's folder) to read its own"
            f"{_kept_results_note(relative, here)}.")


def revision_refused(source: str, origin: str) -> str:
    """Why ``model.revision`` cannot be set for ``source``, a packaged model or a local folder
    (``origin``): only a hub id has revisions to choose from; the folder is loaded as it is."""
    what = ("the packaged model" if origin == "packaged" else "the local model folder")
    return (f"model.revision is set, but model.source {as_typed(source)} is {what}, which has no revisions: "
            "model.revision pins a Hugging Face hub id's commit, branch or tag (model.source: org/name). "
            "Remove model.revision, or point model.source at the hub id whose revision you mean.")


def revision_not_cached(source: str, revision: str) -> str:
    """What to say where the hub cannot be reached and the local Hugging Face cache does
    not hold ``revision`` of the hub model ``source``: the revisions it holds, each commit with
    the branches and tags its refs give it, so the one meant (a tag never downloaded here, a
    commit mistyped) can be told apart."""
    from subsetctl.hub import cached_model_revisions_text, unreachable_reason

    return (f"model.revision {as_typed(revision)} of the hub model {as_typed(source)} is not in the local Hugging Face "
            f"cache, and {unreachable_reason()}: loading it would fail. The cache holds "
            f"{cached_model_revisions_text(source)}. Set model.revision to one of those commits or the branch or "
            "tag naming it, or remove model.revision to load the cache's main; or load the revision once where "
            "the hub is reachable (it then loads offline from the cache).")


def _packaged_guess(source: str) -> str:
    """" (did you mean 'smollm2-135m-instruct'?)" for a model name close to a packaged one's,
    in any letter case (`SmolLM2-135M-Instruct`, as the model card writes it, or the name cut
    short, `smollm2-135m`); "" when none is close."""
    names = packaged_names()
    close = difflib.get_close_matches(source.strip().lower(), names, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve_model(
    source: str,
    kind: Kind = "causal-lm",
    dtype: str = "float32",
    trust_remote_code: bool = False,
    num_labels: int | None = None,
    cache_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
    revision: str | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """Load ``source`` as a model of ``kind`` plus its tokenizer.

    Args:
        source: packaged name, local folder, or hub id ``org/name``.
        kind: "causal-lm" (AutoModelForCausalLM; an encoder-only model is a UserError) or
            "classifier" (AutoModelForSequenceClassification; the head is new unless the
            folder has one with ``num_labels`` outputs: one of another size is replaced).
        dtype: "float32" (default), "bfloat16" or "float16".
        trust_remote_code: passed to ``from_pretrained``; off unless the spec asks.
        num_labels: classifier head size (ignored for causal LMs).
        cache_dir: where packaged models are converted (default: user cache).
        progress: receives one-line notices (e.g. the one-time GGUF conversion).
        warn: receives one-line warnings (a replaced classification head, once per
            run: :func:`first_notice`); without it they go to ``progress``, else to
            :func:`warnings.warn`.
        revision: a hub id's commit, branch or tag (``model.revision``; offline a branch or
            tag is resolved through the local cache's refs); a UserError for any other source.

    Returns:
        ``(model, tokenizer, info)``; the model is in eval mode, the tokenizer has a pad
        token, and ``info`` holds source, origin, path, kind, dtype, architecture,
        config_hash, num_parameters, and where they apply lora_targets (the default LoRA
        targets of a packaged model), hub_offline (a hub id: whether the hub was out of
        reach), revision (a hub id: the commit the local cache serves once loaded, for
        ``revision`` where set, :func:`subsetctl.hub.cached_revision`) and new_layers (a classifier's newly
        initialized linear layers).
    """
    if kind not in KINDS:
        raise UserError(f"Unknown model kind {kind!r}; use one of: {', '.join(KINDS)}.")
    _torch_dtype(dtype)
    origin = classify_model_source(source)
    if revision is not None and origin != "hub":
        raise UserError(revision_refused(source, origin))
    info: dict[str, Any] = {"source": source, "origin": origin, "kind": kind, "dtype": dtype}

    if origin == "packaged":
        entry = PACKAGED_MODELS.get(source)
        _check_packaged_kind(source, kind)
        from subsetctl.modeling.packaged import locate_packaged

        folder = locate_packaged(source, Path(cache_dir) if cache_dir is not None else None, progress)
        location = str(folder)
        info["lora_targets"] = list(entry.lora_targets)
        where = f"The packaged model {as_typed(source)}"
        _refuse_unreadable_files(folder, f"The converted copy of the packaged model {as_typed(source)}, {folder},")
        model, tokenizer, replaced_head, new_layers = _load(location, kind, dtype, trust_remote_code, num_labels, where=where)
    elif origin == "local":
        folder = expand_home(source).resolve()
        if not (folder / "config.json").is_file():
            raise UserError(
                f"The folder {folder} has no config.json, so it is not a Hugging Face model "
                f"folder.{_adapter_hint(folder)} Point model.source at the folder that holds config.json and the weights "
                f"(as written by save_pretrained), or use a packaged model ({_packaged_hint()})."
            )
        location = str(folder)
        _refuse_folder_without_tokenizer(folder)
        _refuse_unreadable_files(folder, f"The model folder {folder}")
        refuse_code_not_trusted(folder, trust_remote_code)
        from safetensors import SafetensorError

        where = f"The model folder {folder}"
        try:
            model, tokenizer, replaced_head, new_layers = _load(
                location, kind, dtype, trust_remote_code, num_labels, where=where
            )
        except ImportError as exc:  # (the auto_map code's imports: a package not installed)
            if (import_failed := remote_code_import_failed(folder, exc, _first_line(exc))) is None:
                raise
            raise UserError(import_failed) from exc
        except (OSError, ValueError, SafetensorError) as exc:  # SafetensorError: a truncated or damaged weights file
            if trust_remote_code and (not_fetched := remote_code_not_fetched(folder, exc, _first_line(exc))):
                raise UserError(not_fetched) from exc
            raise UserError(
                f"Could not load the model folder {folder}: {_first_line(exc)} Check that it holds the "
                "weights and tokenizer files written by save_pretrained (a half-finished copy or "
                "download leaves a weights file that cannot be read: copy it again)."
            ) from exc
    else:
        location = source
        offline = not hub_reachable()  # offline: only the local HF cache can serve it
        info["hub_offline"] = offline
        where = f"The hub model {as_typed(source)}"
        snapshot = cached_snapshot(source, revision)
        if snapshot is not None and (offline or snapshot_pinned(snapshot, revision)):  # what loads: as a local folder's
            refuse_code_not_trusted(snapshot, trust_remote_code, _hub_copy_opening(source, snapshot))
        try:
            model, tokenizer, replaced_head, new_layers = _load(
                location, kind, dtype, trust_remote_code, num_labels, offline, where=where, revision=revision
            )
        except UserError:
            raise
        except Exception as exc:  # offline, unreachable, gated, missing: all the user's to fix
            if (cache_problem := cache_write_problem(exc, default="hub")) is not None:
                raise UserError(f"Could not load {as_typed(source)} from the Hugging Face hub: it could not write the "
                                f"local cache: {cache_problem}") from exc
            if (code_problem := _hub_model_code_problem(source, revision, exc, trust_remote_code)) is not None:
                raise UserError(code_problem) from exc
            if not offline:
                where = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}"
            elif model_cached(source, revision):  # validate found its config.json: say what the cache lacks
                partial = partly_cached_hub_model(source, None, revision)
                lacks = (f"its copy there, {partial[1]}, lacks {partial[2]}" if partial is not None
                         else _first_line(exc).rstrip("."))
                where = ("the hub is unreachable from this machine and the local Hugging Face cache holds only "
                         f"part of the model: {lacks}; load it once where the hub is reachable to download the rest")
            elif revision is not None:
                raise UserError(revision_not_cached(source, revision)) from exc
            else:
                where = ("the hub is unreachable from this machine and the model is not in the local "
                         f"Hugging Face cache, {cache_looked_in('model')}")
            raise UserError(
                f"Could not load {as_typed(source)} from the Hugging Face hub ({where}). If this machine "
                f"is offline, set model.source to a packaged model ({_packaged_hint()}) or the path of a local "
                f"model folder; if the id is misspelled, fix it.{cached_model_guess(source) if offline else ''}"
            ) from exc

    if replaced_head is not None and first_notice(("head re-initialized", location, replaced_head,
                                                   model.config.num_labels)):
        _notify(
            f"{where} has a classification head with {replaced_head} labels, but this project has "
            f"{model.config.num_labels}: the head is re-initialized (seeded) for {model.config.num_labels} "
            "labels and trained from scratch; the rest of the checkpoint is used as saved.",
            warn, progress,
        )
    linear, other = new_layers
    if linear:
        info["new_layers"] = linear
    if (linear or other) and first_notice(("new layers", location, tuple(linear), tuple(other))):
        said = [(f"{where} has no weights for {', '.join(linear + other)}, which {type(model).__name__} adds "
                 "besides the classification head: transformers initializes "
                 f"{'it' if len(linear + other) == 1 else 'them'} at random (seeded)")]
        if linear:
            said.append(f"{', '.join(linear)} {'is' if len(linear) == 1 else 'are'} trained with the head")
        if other:
            one = len(other) == 1
            said.append(f"{', '.join(other)} ({'not a linear layer' if one else 'not linear layers'}) "
                        f"{'keeps its' if one else 'keep their'} initial values")
        (progress or (lambda m: _notify(m, warn, None)))("; ".join(said) + ".")
    if origin == "hub" and (commit := adapter_base_model_revision(source, None, revision)) is not None:
        info["revision"] = commit  # (what plan compares with the cache's later: hub_revision_changed_note)
    info["path"] = location
    info["architecture"] = getattr(model.config, "model_type", "unknown")
    info["config_hash"] = config_hash(model.config)
    info["num_parameters"] = int(sum(p.numel() for p in model.parameters()))
    return model, tokenizer, info


def _hub_model_code_problem(source: str, revision: str | None, exc: Exception, trust_remote_code: bool) -> str | None:
    """What to say where loading the hub model ``source`` failed with ``exc`` because of the code
    its ``auto_map`` names, read from its snapshot in the local Hugging Face cache, which the
    failed load has just read (or downloaded): that code imports a package not installed
    (offline this was said as a cache holding only part of the model), or, with
    ``trust_remote_code`` off, only that code builds the model (transformers' "contains custom
    code which must be executed", once the hub was reachable and the cache's copy, possibly of an
    older revision, was not read first). None for any other failure."""
    snapshot = cached_snapshot(source, revision)
    if snapshot is None or not raised_loading_code(exc):  # (a failed download: the cache's copy may be stale)
        return None
    where = _hub_copy_opening(source, snapshot)
    if isinstance(exc, ImportError):
        return remote_code_import_failed(snapshot, exc, _first_line(exc), where)
    try:
        refuse_code_not_trusted(snapshot, trust_remote_code, where)
    except UserError as refused:
        return str(refused)
    return None


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of a loader's message, shortened: transformers' tokenizer errors run
    to several numbered paragraphs that bury what is wrong (a file is missing)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text if text.endswith((".", "…")) else text + "."

