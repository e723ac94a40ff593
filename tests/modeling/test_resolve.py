"""Model resolution: packaged registry, local folders, hub ids, pad tokens, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from subsetctl.errors import UserError
from subsetctl.modeling.resolve import config_hash, resolve_model
from subsetctl.registry import PACKAGED_MODELS


def test_packaged_registry_lists_both_models_with_metadata() -> None:
    names = PACKAGED_MODELS.names()
    assert "smollm2-135m-instruct" in names and "all-minilm-l6-v2" in names
    smol = PACKAGED_MODELS.get("smollm2-135m-instruct")
    assert smol.architecture == "llama" and smol.lora_targets == ("q_proj", "v_proj")
    minilm = PACKAGED_MODELS.get("all-minilm-l6-v2")
    assert minilm.architecture == "bert" and minilm.kinds == ("classifier",)
    assert all(e.description for e in PACKAGED_MODELS.entries())


def test_unknown_name_lists_packaged_models() -> None:
    with pytest.raises(UserError) as err:
        resolve_model("no-such-model", "causal-lm")
    assert "smollm2-135m-instruct" in str(err.value) and "all-minilm-l6-v2" in str(err.value)
    # a relative folder valid from one working directory and not another: the message says where it looked
    assert "next to the spec file, then in the current folder" in str(err.value)


@pytest.mark.parametrize("kind", ["causal-lm", "classifier"])
def test_a_pad_token_the_model_has_no_embedding_for_falls_back_to_eos(tmp_path: Path, kind: str) -> None:
    """A pad token added to the tokenizer without resizing the model's embeddings (or one
    transformers' own tokenizer class adds): padded batches failed at the embedding lookup
    with an internal IndexError."""
    import torch
    from tinymodels import save_tiny_llama
    from transformers import AutoTokenizer

    folder = save_tiny_llama(tmp_path / "llama")
    added = AutoTokenizer.from_pretrained(folder)
    added.add_special_tokens({"pad_token": "[PAD]"})
    added.save_pretrained(folder)
    model, tok, _ = resolve_model(str(folder), kind, num_labels=2 if kind == "classifier" else None)
    assert tok.pad_token == tok.eos_token == "<eos>"
    assert model.config.pad_token_id == tok.eos_token_id < model.get_input_embeddings().num_embeddings
    batch = tok(["ab", "abcd"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()


def test_a_tokenizer_without_pad_or_eos_token_is_an_error_naming_the_model_folder(tmp_path: Path) -> None:
    """The error said "the tokenizer" without naming whose, unlike the other model errors."""
    import string

    from tinymodels import save_tiny_llama
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = ["<unk>"] + list(string.printable[:95])
    tk = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    folder = save_tiny_llama(tmp_path / "llama", PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>"))
    with pytest.raises(UserError, match="neither a pad token nor an EOS token") as err:
        resolve_model(str(folder), "causal-lm")
    assert f"The model folder {folder.resolve()} has a tokenizer" in str(err.value)


def test_local_folder_loads_and_pad_falls_back_to_eos(tiny_llama_dir) -> None:
    model, tok, info = resolve_model(str(tiny_llama_dir), "causal-lm")
    assert tok.pad_token == tok.eos_token == "<eos>"
    assert model.config.pad_token_id == tok.eos_token_id
    assert info["origin"] == "local" and info["architecture"] == "llama"
    assert info["path"] == str(tiny_llama_dir.resolve())
    assert len(info["config_hash"]) == 64 and not model.training
    # the same weights read again hash the same; another config would not
    _, _, again = resolve_model(str(tiny_llama_dir), "causal-lm")
    assert again["config_hash"] == info["config_hash"]
    model.config.hidden_act = "gelu"
    assert config_hash(model.config) != info["config_hash"]


def test_classifier_head_is_deterministic(tiny_bert_dir) -> None:
    import torch

    m1, tok, _info = resolve_model(str(tiny_bert_dir), "classifier", num_labels=3)
    m2, _, _ = resolve_model(str(tiny_bert_dir), "classifier", num_labels=3)
    assert m1.config.num_labels == 3 and tok.pad_token is not None
    assert torch.equal(m1.classifier.weight, m2.classifier.weight)


def test_hub_id_offline_is_user_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(UserError) as err:
        resolve_model("some-org/some-model-that-is-not-cached", "causal-lm")
    text = str(err.value)
    assert "smollm2-135m-instruct" in text and "local" in text


def test_a_hub_cache_that_cannot_be_written_names_the_cache(monkeypatch, tmp_path) -> None:
    """A read-only or full hub cache while downloading a model said "If this machine is
    offline, use a packaged model ...; if the id is misspelled, fix it"."""
    import errno

    import huggingface_hub.constants as hc

    from subsetctl.modeling import resolve

    cache = tmp_path / "hub"
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(resolve, "hub_reachable", lambda: True)
    for error, fix in ((PermissionError(errno.EACCES, "Permission denied", str(cache / ".locks" / "m.lock")),
                        "fix its permissions"),
                       (OSError(errno.ENOSPC, "No space left on device"), "free disk space there")):
        def refuse(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(resolve, "_load", refuse)
        with pytest.raises(UserError) as caught:
            resolve_model("some-org/some-model", "causal-lm")
        text = " ".join(str(caught.value).split())
        assert f"in {cache} (HF_HUB_CACHE, else $HF_HOME/hub): {fix}" in text and "misspelled" not in text, text


def test_folder_without_config_and_file_source_are_user_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="config.json"):
        resolve_model(str(tmp_path), "causal-lm")
    f = tmp_path / "weights.bin"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        resolve_model(str(f), "causal-lm")


def test_bad_kind_dtype_and_packaged_kind() -> None:
    with pytest.raises(UserError, match="kind"):
        resolve_model("all-minilm-l6-v2", "seq2seq")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="dtype"):
        resolve_model("all-minilm-l6-v2", "classifier", dtype="int3")
    with pytest.raises(UserError, match="cannot be loaded as a causal-lm"):
        resolve_model("all-minilm-l6-v2", "causal-lm")


def test_packaged_minilm_classifier_loads() -> None:
    model, _tok, info = resolve_model("all-minilm-l6-v2", "classifier", num_labels=2)
    assert info["origin"] == "packaged" and info["architecture"] == "bert"
    assert info["lora_targets"] == ["query", "value"] and model.config.num_labels == 2


def test_unreachable_hub_fails_fast_without_retries(monkeypatch, tmp_path) -> None:
    import socket

    import huggingface_hub.constants as hc
    from huggingface_hub.utils import build_hf_headers

    from subsetctl.modeling import resolve

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "hub").mkdir()  # (a cache that is there, without the model)

    connections: list[tuple] = []  # each connection tried (the hub client retries each for a minute)

    def no_network(*args, **kwargs):
        connections.append(args)
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    assert resolve.hub_reachable() is False
    build_hf_headers()  # (the hub client's first headers fetch its list of agents, once a process, whatever the model)
    connections.clear()  # (those and the probe's own)
    with pytest.raises(UserError, match="unreachable") as err:
        resolve_model("some-org/not-cached-anywhere", "causal-lm")
    assert connections == []  # the probe's answer believed: no hub client's request, so none of its retries
    assert "set model.source to a packaged model (all-minilm-l6-v2" in str(err.value)  # the key to change
    assert f"looked in {tmp_path / 'hub'}; HF_HOME or HF_HUB_CACHE name another" in str(err.value)  # which cache


def _hub_cache_holding(cache: Path, repo_id: str, folder: Path) -> None:
    """A Hugging Face hub cache (``models--org--name/snapshots/<commit>``, ``refs/main``)
    holding the files of ``folder`` as the hub model ``repo_id``, built by hand."""
    import shutil

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / "0123456789abcdef")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")


def test_a_cached_hub_model_loads_without_asking_the_unreachable_hub(monkeypatch, tmp_path, tiny_llama_dir) -> None:
    """Out of reach (HF_HUB_OFFLINE not set), a hub model is loaded from the local cache
    without a request to the hub: transformers' look for an adapter_config.json did not
    get local_files_only, and spent five retries (about 25 s) on every load, so on every
    stage and fine-tune."""
    import huggingface_hub.constants as hc
    import huggingface_hub.file_download as fd

    from subsetctl.modeling import resolve

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False, raising=False)
    _hub_cache_holding(tmp_path, "tinyorg/tinyllama", tiny_llama_dir)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(resolve, "hub_reachable", lambda timeout=3.0: False)
    asked: list[str] = []

    def unreachable(url, *args, **kwargs):
        asked.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(fd, "get_hf_file_metadata", unreachable)
    _model, _tok, info = resolve_model("tinyorg/tinyllama", "causal-lm")
    assert info["origin"] == "hub" and info["hub_offline"] is True and info["architecture"] == "llama"
    assert asked == []


def test_the_revision_of_a_hub_base_model_is_the_cached_snapshots(monkeypatch, tmp_path, tiny_llama_dir) -> None:
    """The finetune stage records, for a hub id, the commit of the snapshot the local cache
    serves (the report names it); nothing for a hub id the cache lacks, a local folder or a
    packaged model. No network is asked."""
    import huggingface_hub.constants as hc

    from subsetctl.modeling.resolve import adapter_base_model_revision

    _hub_cache_holding(tmp_path / "cache", "tinyorg/tinyllama", tiny_llama_dir)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert adapter_base_model_revision("tinyorg/tinyllama", tmp_path) == "0123456789abcdef"
    assert adapter_base_model_revision("tinyorg/not-cached", tmp_path) is None
    assert adapter_base_model_revision(str(tiny_llama_dir), tmp_path) is None
    assert adapter_base_model_revision("smollm2-135m-instruct", tmp_path) is None


def test_a_hub_model_cached_in_part_is_not_said_to_be_missing_from_the_cache(monkeypatch, tmp_path,
                                                                             tiny_llama_dir) -> None:
    """Out of reach, a hub model whose config.json the cache holds (validate calls it cached)
    but not its weights: the error says what the cache lacks, not that it has none of it."""
    import shutil

    import huggingface_hub.constants as hc

    from subsetctl.modeling import resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    partial = shutil.copytree(tiny_llama_dir, tmp_path / "partial")
    (partial / "model.safetensors").unlink()  # a download cut short before the weights
    _hub_cache_holding(tmp_path / "cache", "tinyorg/partial", partial)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(resolve, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(UserError) as err:
        resolve_model("tinyorg/partial", "causal-lm")
    text = str(err.value)
    assert "holds only part of the model" in text and "model.safetensors" in text, text
    assert "not in the local" not in text


def _offline_with_cache(monkeypatch, cache: Path) -> None:
    """HF_HUB_OFFLINE set, and the hub cache at ``cache``, as a cluster job runs."""
    import huggingface_hub.constants as hc

    from subsetctl.modeling import resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(resolve, "hub_reachable", lambda timeout=3.0: False)


@pytest.mark.parametrize("written", ["tinyorg/tinyllama", "tinyorg/TinyLama"])
def test_a_hub_id_not_cached_names_the_cached_one_spelt_alike(monkeypatch, tmp_path, tiny_llama_dir,
                                                               written: str) -> None:
    """Offline, a hub id in other letter case than the cache's folder (the cache is case-sensitive,
    the hub's pages are not) or one letter off was told only that it is not in the local cache;
    validate and the load now name the cached id it is close to. An id like none names none."""
    import json

    from subsetctl.api import validate_spec_file

    _hub_cache_holding(tmp_path / "cache", "TinyOrg/TinyLlama", tiny_llama_dir)
    _offline_with_cache(monkeypatch, tmp_path / "cache")
    guess = "The local Hugging Face cache holds 'TinyOrg/TinyLlama', close to it: did you mean that?"
    (tmp_path / "t.jsonl").write_text('{"prompt": "a", "response": "b"}\n')
    spec = {"model": {"source": written}, "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
            "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "t.jsonl"}}]}
    (tmp_path / "subsetctl.yaml").write_text(json.dumps(spec))
    (warning,) = [w for w in validate_spec_file(tmp_path / "subsetctl.yaml").warnings if "model.source" in w.render()]
    assert guess in warning.message, warning.message
    with pytest.raises(UserError) as err:
        resolve_model(written, "causal-lm")
    assert guess in " ".join(str(err.value).split()), str(err.value)
    with pytest.raises(UserError) as err:
        resolve_model("otherorg/othermodel", "causal-lm")
    assert "did you mean" not in str(err.value), str(err.value)


def _hub_cache_linking(cache: Path, repo_id: str, folder: Path) -> Path:
    """A hub cache holding ``folder``'s files as the hub client lays them out: each file of
    ``snapshots/<commit>`` a relative link to its blob in ``blobs``. Returns the snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for i, file in enumerate(sorted(folder.iterdir())):
        (repo / "blobs" / f"blob{i}").write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(f"../../blobs/blob{i}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    return snapshot


@pytest.mark.parametrize("damage, said", [
    ("blob of model.safetensors deleted", "lacks model.safetensors (a link to a blob that is not there)"),
    ("model.safetensors never downloaded", ("lacks a weights file (one of model.safetensors, pytorch_model.bin; it "
                                           "holds config.json, generation_config.json, tokenizer.json")),
    ("tokenizer never downloaded", "lacks tokenizer files (one of tokenizer.json"),
    ("a shard never downloaded", ("lacks 1 of the weights shards model.safetensors.index.json names "
                                 "(model-00002-of-00002.safetensors)")),
])
def test_a_hub_model_cached_in_part_is_said_by_validate_offline(monkeypatch, tmp_path, tiny_llama_dir, damage: str,
                                                                said: str) -> None:
    """Offline, a hub id whose snapshot in the local cache holds config.json but not all it
    needs (a weights link to a deleted blob, no weights or tokenizer file, a shard its index
    names) passed validate and plan, and the run stopped at meta_init, after the data stage, on
    transformers' "does not appear to have a file named ..." or "Couldn't instantiate the
    backend tokenizer from one of:". validate (so plan, run and doctor) now warns at once,
    naming the snapshot and what it lacks, and the load says the same; a complete snapshot, or
    one the reachable hub completes, is not warned about."""
    import json

    from subsetctl.api import validate_spec_file
    from subsetctl.modeling import resolve

    snapshot = _hub_cache_linking(tmp_path / "cache", "tinyorg/partial", tiny_llama_dir)
    _hub_cache_linking(tmp_path / "cache", "tinyorg/whole", tiny_llama_dir)
    if damage == "blob of model.safetensors deleted":
        (snapshot / "model.safetensors").resolve().unlink()
    elif damage == "model.safetensors never downloaded":
        (snapshot / "model.safetensors").unlink()
    elif damage == "tokenizer never downloaded":
        (snapshot / "tokenizer.json").unlink()
    else:
        (snapshot / "model.safetensors").unlink()
        (snapshot / "model-00001-of-00002.safetensors").write_bytes(b"")
        (snapshot / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
            "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    _offline_with_cache(monkeypatch, tmp_path / "cache")
    (tmp_path / "t.jsonl").write_text('{"prompt": "a", "response": "b"}\n')

    def model_warnings(source: str) -> list[str]:
        spec = {"model": {"source": source}, "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
                "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "t.jsonl"}}]}
        (tmp_path / "subsetctl.yaml").write_text(json.dumps(spec))
        return [w.message for w in validate_spec_file(tmp_path / "subsetctl.yaml").warnings
                if w.key == "model.source"]

    (warning,) = model_warnings("tinyorg/partial")
    assert (f"'tinyorg/partial' is in the local Hugging Face cache only in part: its copy there, {snapshot}, "
            f"{said}") in warning and "HF_HUB_OFFLINE is set: a stage that still has to load it will fail" in warning
    assert model_warnings("tinyorg/whole") == []
    with pytest.raises(UserError) as err:
        resolve_model("tinyorg/partial", "causal-lm")
    assert f"holds only part of the model: its copy there, {snapshot}, {said}" in str(err.value), str(err.value)
    monkeypatch.setattr("subsetctl.hub.hub_reachable", lambda timeout=3.0: True)  # the hub downloads the rest
    monkeypatch.setattr(resolve, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert model_warnings("tinyorg/partial") == []


def test_a_snapshot_folder_the_cache_lacks_names_the_revisions_it_holds(tmp_path, tiny_llama_dir) -> None:
    """A hub model's revision pinned as its snapshot folder in the local cache (what
    `model.revision`'s message advises), one the cache does not hold, or written with its
    branch name (`snapshots/main`), was only "Unknown model ...": the commits the cache holds
    are named, with their refs, and a branch's folder is given."""
    from subsetctl.modeling.resolve import check_model_folder

    snapshots = _hub_cache_linking(tmp_path / "hub", "tinyorg/tinyllama", tiny_llama_dir).parent
    (snapshots.parent / "refs" / "v1.0").write_text("0123456789abcdef")
    with pytest.raises(UserError) as err:
        check_model_folder(str(snapshots / "fedcba9876543210"), tmp_path, "causal-lm")
    text = " ".join(str(err.value).split())
    assert ("The local Hugging Face cache holds 1 revision of 'tinyorg/tinyllama', not 'fedcba9876543210': "
            "0123456789abcdef (main, v1.0)") in text and f"each a folder in {snapshots}" in text, text
    assert "or write model.source: tinyorg/tinyllama with model.revision: fedcba9876543210, which loads it" in text, text
    with pytest.raises(UserError) as err:
        check_model_folder(str(snapshots / "main"), tmp_path, "causal-lm")
    text = " ".join(str(err.value).split())
    assert ("'main' is a branch or tag of 'tinyorg/tinyllama', not a folder: the local Hugging Face cache holds it as "
            f"commit 0123456789abcdef, so write model.source: {snapshots / '0123456789abcdef'}, or model.source: "
            "tinyorg/tinyllama with model.revision: main") in text, text
    with pytest.raises(UserError) as err:
        check_model_folder(str(tmp_path / "elsewhere" / "model"), tmp_path, "causal-lm")
    assert "revision" not in str(err.value), str(err.value)
    (snapshots.parent / "refs" / "broken").write_bytes(b"\xff\xfe")  # (a damaged ref: not UTF-8) left out
    with pytest.raises(UserError) as err:
        check_model_folder(str(snapshots / "fedcba9876543210"), tmp_path, "causal-lm")
    assert "0123456789abcdef (main, v1.0)" in " ".join(str(err.value).split()), str(err.value)


def test_a_hub_cache_folder_that_does_not_exist_is_said_to_be_missing(monkeypatch, tmp_path) -> None:
    """HF_HOME naming a folder that is not there (misspelt, or a scratch folder another node
    mounts) was told "not in the local Hugging Face cache (looked in X/hub...)", as if the
    cache had been looked through; it now says there is no such folder and which variable
    named it. A cache folder that exists gets no such note."""
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "nothere"))
    _offline_with_cache(monkeypatch, tmp_path / "nothere" / "hub")
    with pytest.raises(UserError) as err:
        resolve_model("someorg/somemodel", "causal-lm")
    text = " ".join(str(err.value).split())
    assert (f"looked in {tmp_path / 'nothere' / 'hub'} (no such folder: HF_HOME={tmp_path / 'nothere'} is set here; "
            "check the path); HF_HOME or HF_HUB_CACHE name another") in text, text
    (tmp_path / "nothere" / "hub").mkdir(parents=True)
    with pytest.raises(UserError) as err:
        resolve_model("someorg/somemodel", "causal-lm")
    assert "no such folder" not in str(err.value), str(err.value)


# --------------------------------------------------------------------------- classifier heads


@pytest.fixture
def fresh_head_notices() -> None:
    """Forget the head re-initializations already reported in this test process."""
    from subsetctl.modeling import resolve

    resolve.forget_notices_given()


def _saved_tensors(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_classifier_checkpoint_with_other_label_count_gets_a_new_head(
    tiny_bert_2_labels_dir, fresh_head_notices
) -> None:
    """A fine-tuned 2-label checkpoint in a 5-label project: the head is re-initialized
    (seeded, so the same every time), the encoder is the checkpoint's, one warning."""
    import torch

    warned: list[str] = []
    model, _tok, info = resolve_model(str(tiny_bert_2_labels_dir), "classifier", num_labels=5, warn=warned.append)
    assert model.config.num_labels == 5 and tuple(model.classifier.weight.shape) == (5, 32)
    saved = _saved_tensors(tiny_bert_2_labels_dir)
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, saved["bert.embeddings.word_embeddings.weight"])
    assert info["origin"] == "local"
    assert len(warned) == 1 and "\n" not in warned[0]
    assert str(tiny_bert_2_labels_dir.resolve()) in warned[0]
    assert "2 labels" in warned[0] and "has 5" in warned[0] and "re-initialized" in warned[0]

    again, _, _ = resolve_model(str(tiny_bert_2_labels_dir), "classifier", num_labels=5, warn=warned.append)
    assert torch.equal(again.classifier.weight, model.classifier.weight)  # seeded head
    assert len(warned) == 1  # said once per process, not once per stage or fine-tune job


def test_classifier_checkpoint_with_matching_head_keeps_it(tiny_bert_2_labels_dir, fresh_head_notices) -> None:
    import torch

    warned: list[str] = []
    model, _, _ = resolve_model(str(tiny_bert_2_labels_dir), "classifier", num_labels=2, warn=warned.append)
    assert torch.equal(model.classifier.weight, _saved_tensors(tiny_bert_2_labels_dir)["classifier.weight"])
    assert warned == []


def test_a_kept_head_with_the_classes_in_another_order_is_reordered(tiny_bert_2_labels_dir, tmp_path,
                                                                     monkeypatch) -> None:
    """A fine-tuned head whose config names the project's classes in another order than
    the sorted vocabulary (POS, NEG against neg, pos) was kept as saved, each output
    starting out as the other class: its outputs are reordered to the project's ids."""
    import json
    import shutil
    from types import SimpleNamespace

    import torch

    from subsetctl.modeling import resolve
    from subsetctl.reporter import SilentReporter
    from subsetctl.stages import common

    folder = Path(shutil.copytree(tiny_bert_2_labels_dir, tmp_path / "ckpt"))  # its config.json is rewritten
    monkeypatch.setattr("subsetctl.data.stage.label_names", lambda data_dir: ["neg", "pos"])
    monkeypatch.setattr(common, "_warn_special_token_text", lambda ctx, tokenizer: None)  # (reads no data here)
    inputs = {"input_ids": torch.tensor([[2, 5, 7, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}

    def loaded_with(names: list[str]) -> tuple[torch.Tensor, list[str], list[str]]:
        config = json.loads((folder / "config.json").read_text())
        config["id2label"] = {str(i): n for i, n in enumerate(names)}
        config["label2id"] = {n: i for i, n in enumerate(names)}
        (folder / "config.json").write_text(json.dumps(config))
        resolve.forget_notices_given()
        reporter = SilentReporter()
        model = SimpleNamespace(source=str(folder), kind="classifier", dtype="float32", device="cpu", trust_remote_code=False,
                                num_labels=None, max_length=32, revision=None)
        ctx = SimpleNamespace(spec=SimpleNamespace(model=model), project=SimpleNamespace(root=tmp_path),
                              reporter=reporter, upstream_dir=lambda stage: tmp_path)
        loaded = common.base_model(ctx)[0].eval()
        with torch.no_grad():
            return loaded(**inputs).logits[0], [m for m in reporter.messages if "head" in m], reporter.warnings

    as_saved, infos, warnings = loaded_with(["NEG", "POS"])  # the same order, whatever the case
    assert infos == [] and warnings == []
    reordered, infos, warnings = loaded_with(["POS", "NEG"])
    torch.testing.assert_close(reordered, as_saved.flip(0))  # output 0 is the head's 'NEG' output
    (info,) = infos
    assert "0 = 'POS', 1 = 'NEG'" in info and "reordered" in info and "(0 = 'neg', 1 = 'pos')" in info
    assert warnings == []
    assert loaded_with(["LABEL_0", "LABEL_1"])[1:] == ([], [])  # no names: nothing to compare
    assert loaded_with(["bad", "good"])[1:] == ([], [])  # other names: their order says nothing


def test_head_notice_goes_to_progress_or_python_warnings(tiny_bert_2_labels_dir, monkeypatch) -> None:
    from subsetctl.modeling import resolve

    notices: list[str] = []
    resolve.forget_notices_given()
    resolve_model(str(tiny_bert_2_labels_dir), "classifier", num_labels=3, progress=notices.append)
    assert len(notices) == 1 and notices[0].startswith("warning: ") and "2 labels" in notices[0]
    resolve.forget_notices_given()
    with pytest.warns(UserWarning, match="2 labels"):
        resolve_model(str(tiny_bert_2_labels_dir), "classifier", num_labels=3)


def test_weights_that_do_not_fit_their_config_are_a_user_error(tiny_bert_2_labels_dir, tmp_path) -> None:
    """Only the label dimension of the head may be replaced: another size mismatch (here a
    config.json edited after saving) is the user's to fix, not silently random weights."""
    import json
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(tiny_bert_2_labels_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 48
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="does not fit its own config.json") as err:
        resolve_model(str(folder), "classifier", num_labels=5)
    assert str(folder) in str(err.value)


def test_packaged_minilm_classifier_has_a_new_head_without_warning(fresh_head_notices) -> None:
    """all-minilm-l6-v2 ships without a head: a new one, nothing to warn about."""
    warned: list[str] = []
    model, _, _ = resolve_model("all-minilm-l6-v2", "classifier", num_labels=5, warn=warned.append)
    assert model.config.num_labels == 5 and warned == []


# --------------------------------------------------------------------------- encoders as causal LMs


def test_encoder_folder_as_causal_lm_is_refused(tiny_bert_dir) -> None:
    folder = str(tiny_bert_dir.resolve())
    with pytest.raises(UserError, match="cannot be loaded as a causal-lm") as err:
        resolve_model(str(tiny_bert_dir), "causal-lm")
    text = str(err.value)
    assert folder in text and "model.kind: classifier" in text and "encoder-only" in text
    assert "smollm2-135m-instruct" in text  # a decoder that works offline
    model, _, _ = resolve_model(str(tiny_bert_dir), "classifier", num_labels=2)  # still fine as a classifier
    assert model.config.num_labels == 2


def test_encoder_hub_model_as_causal_lm_is_refused(tiny_bert_dir, monkeypatch) -> None:
    """The same check for a hub id, whose config is only known once fetched (a local path
    stands in for the hub here); the refusal is not reworded as a download failure."""
    from subsetctl.modeling import resolve

    monkeypatch.setattr(resolve, "classify_model_source", lambda source: "hub")
    monkeypatch.setattr(resolve, "hub_reachable", lambda timeout=3.0: True)
    with pytest.raises(UserError, match="cannot be loaded as a causal-lm") as err:
        resolve_model(str(tiny_bert_dir), "causal-lm")
    assert f"The hub model {str(tiny_bert_dir)!r}" in str(err.value)
    assert "Could not load" not in str(err.value)


def test_validate_check_refuses_encoder_folder_for_causal_lm_only(tiny_bert_dir, tiny_llama_dir) -> None:
    from subsetctl.modeling.resolve import check_model_folder

    with pytest.raises(UserError, match="cannot be loaded as a causal-lm") as err:
        check_model_folder(tiny_bert_dir.name, tiny_bert_dir.parent, "causal-lm")  # relative to the spec
    assert str(tiny_bert_dir.resolve()) in str(err.value)
    check_model_folder(str(tiny_bert_dir), None, "classifier")
    check_model_folder(str(tiny_bert_dir), None)  # no kind: folder checks only, as before
    check_model_folder(str(tiny_llama_dir), None, "causal-lm")
    check_model_folder("all-minilm-l6-v2", None, "classifier")
    with pytest.raises(UserError, match="cannot be loaded as a causal-lm") as err:  # packaged: known without loading
        check_model_folder("all-minilm-l6-v2", None, "causal-lm")
    assert "loads as a causal-lm (smollm2-135m-instruct)" in str(err.value)  # the hint leaves minilm out


def test_validate_checks_the_config_of_a_hub_model_the_local_cache_holds(monkeypatch, tmp_path) -> None:
    """A hub id named an encoder as a causal-lm, or a max_length past its positions: validate
    passed (only local folders' configs were read), the data stage ran, and meta_init
    failed. The local Hugging Face cache's config.json is read as a folder's (offline too,
    no network asked); a hub id the cache lacks, or a classifier, is left to loading it."""
    import json

    import huggingface_hub.constants as hc

    from subsetctl.modeling import resolve
    from subsetctl.modeling.resolve import check_max_length_fits_folder, check_model_folder

    for name, config in (("bert", {"model_type": "bert", "architectures": ["BertModel"]}),
                         ("gpt2", {"model_type": "gpt2", "n_positions": 256})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))  # the cache may hold config.json alone
        _hub_cache_holding(tmp_path / "cache", f"tinyorg/{name}", tmp_path / name)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(resolve, "hub_reachable", lambda timeout=3.0: False)  # what the cache holds is what loads
    snapshot = tmp_path / "cache" / "models--tinyorg--bert" / "snapshots" / "0123456789abcdef"
    with pytest.raises(UserError, match="cannot be loaded as a causal-lm") as err:
        check_model_folder("tinyorg/bert", tmp_path, "causal-lm")
    assert f"The hub model 'tinyorg/bert' (its copy in the local Hugging Face cache, {snapshot})" in str(err.value)
    check_model_folder("tinyorg/bert", tmp_path, "classifier")
    check_model_folder("tinyorg/not-cached", tmp_path, "causal-lm")
    with pytest.raises(UserError, match="has only 256 token positions") as err:
        check_max_length_fits_folder("tinyorg/gpt2", tmp_path, 512)
    assert "model.max_length is 512, but the hub model 'tinyorg/gpt2' (its copy in the local" in str(err.value)
    check_max_length_fits_folder("tinyorg/gpt2", tmp_path, 256)
    check_max_length_fits_folder("tinyorg/not-cached", tmp_path, 512)


def test_a_reachable_hub_model_is_not_refused_from_an_older_cached_revision_of_main(monkeypatch, tmp_path) -> None:
    """With the hub reachable, validate refused a hub id from the cache's copy of main (an encoder as
    a causal-lm, a max_length past its positions), though from_pretrained loads the hub's main as it is
    now, perhaps a later revision: that copy refuses nothing then (the load checks what it gets), while
    model.revision naming the cached commit, which is what loads online too, is still refused."""
    import json

    import huggingface_hub.constants as hc

    from subsetctl.modeling import resolve
    from subsetctl.modeling.resolve import check_max_length_fits_folder, check_model_folder

    for name, config in (("bert", {"model_type": "bert", "architectures": ["BertModel"]}),
                         ("gpt2", {"model_type": "gpt2", "n_positions": 256})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
        _hub_cache_holding(tmp_path / "cache", f"tinyorg/{name}", tmp_path / name)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(resolve, "hub_reachable", lambda timeout=3.0: True)
    check_model_folder("tinyorg/bert", tmp_path, "causal-lm")
    check_max_length_fits_folder("tinyorg/gpt2", tmp_path, 512)
    with pytest.raises(UserError, match="cannot be loaded as a causal-lm"):
        check_model_folder("tinyorg/bert", tmp_path, "causal-lm", "0123456789abcdef")
    with pytest.raises(UserError, match="has only 256 token positions"):
        check_max_length_fits_folder("tinyorg/gpt2", tmp_path, 512, "0123456789abcdef")


def test_a_deberta_folder_with_only_its_spm_model_has_tokenizer_files(tmp_path: Path) -> None:
    """DeBERTa-v2/v3 folders as the hub has them keep their SentencePiece model as spm.model,
    without tokenizer.json: they were refused as having no tokenizer files, while the
    message listed spm.model among the files they hold."""
    import json

    from subsetctl.modeling.resolve import check_model_folder

    folder = tmp_path / "deberta-v3"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "deberta-v2"}))
    (folder / "spm.model").write_bytes(b"\x0a")
    check_model_folder(str(folder), None, "classifier")
    (folder / "spm.model").rename(folder / "other.model")
    with pytest.raises(UserError, match="no tokenizer files"):
        check_model_folder(str(folder), None, "classifier")


@pytest.mark.parametrize(
    ("config", "refused"),
    [
        ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, False),
        ({"model_type": "llama", "architectures": ["LlamaModel"]}, False),
        ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, False),
        ({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}, False),
        ({"model_type": "gpt_neox", "architectures": ["GPTNeoXForCausalLM"], "is_decoder": False}, False),
        ({"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"]}, False),
        ({}, False),
        ({"model_type": "bert", "architectures": ["BertModel"]}, True),
        ({"model_type": "bert", "is_decoder": False}, True),
        ({"model_type": "bert", "architectures": ["BertLMHeadModel"], "is_decoder": True}, False),
        ({"model_type": "roberta", "architectures": ["RobertaForSequenceClassification"]}, True),
        ({"model_type": "distilbert", "architectures": ["DistilBertForMaskedLM"]}, True),
        ({"model_type": "newencoder", "architectures": ["NewEncoderForMaskedLM"]}, True),
        ({"model_type": "bert", "auto_map": {"AutoModelForCausalLM": "m.M"}}, False),
        ({"model_type": "bart", "architectures": ["BartForConditionalGeneration"], "is_encoder_decoder": True}, True),
        ({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "is_encoder_decoder": True}, True),
    ],
)
def test_not_a_causal_lm_rule(config: dict, refused: bool) -> None:
    from subsetctl.modeling.resolve import not_a_causal_lm

    assert (not_a_causal_lm(config) is not None) == refused


@pytest.mark.parametrize(("endpoint", "address"), [
    ("http://127.0.0.1:18080", ("127.0.0.1", 18080)),  # a mirror on its own port was probed on 443
    ("https://hub.example.org", ("hub.example.org", 443)),
    ("http://hub.example.org", ("hub.example.org", 80)),
])
def test_the_hub_probe_follows_hf_endpoints_port(monkeypatch, endpoint: str, address: tuple) -> None:
    import socket

    import huggingface_hub.constants as hc

    from subsetctl import hub

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    probed = []

    def connect(where, timeout):
        probed.append(where)
        raise OSError("refused")

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(socket, "getaddrinfo", _resolving_to_itself)
    assert hub.hub_reachable() is False and probed == [address]


def _resolving_to_itself(host, port, *args, **kwargs) -> list:
    """A name lookup that answers at once with the name itself (no name server asked)."""
    import socket

    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]


def test_the_hub_probe_does_not_wait_on_a_name_server_that_does_not_answer(monkeypatch) -> None:
    """A node whose name server cannot be reached blocks in getaddrinfo for the resolver's
    retries (10-40 s), which the probe's socket timeout did not cover: every validate
    waited that long before saying the hub was unreachable. The lookup now counts in the
    timeout."""
    import socket
    import threading

    import huggingface_hub.constants as hc

    from subsetctl import hub

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False, raising=False)
    answered, let_go = threading.Event(), threading.Event()

    def silent_name_server(*args, **kwargs):
        let_go.wait(60)
        answered.set()
        raise socket.gaierror("Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", silent_name_server)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("no address to connect to"))
    try:
        assert hub.hub_reachable(timeout=0.5) is False
        # not waited for (not a time measured: a busy machine took 3 s and more to give up after 0.5)
        assert not answered.is_set()
    finally:
        let_go.set()  # let the lookup thread end


def test_a_failed_hub_probe_is_believed_for_a_while(monkeypatch) -> None:
    """`doctor` validates and then checks hub access; offline with dropped packets each
    probe costs its whole timeout, so a failure is remembered (a success is not)."""
    import socket

    import huggingface_hub.constants as hc

    from subsetctl import hub

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False, raising=False)
    probes = []
    answer = {"up": False}

    class Connection:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def connect(where, timeout):
        probes.append(where)
        if not answer["up"]:
            raise OSError("timed out")
        return Connection()

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(socket, "getaddrinfo", _resolving_to_itself)
    assert hub.hub_reachable() is False and hub.hub_reachable() is False
    assert len(probes) == 1
    hub.forget_unreachable()
    answer["up"] = True
    assert hub.hub_reachable() is True and hub.hub_reachable() is True
    assert len(probes) == 3  # a success is probed again each time


@pytest.mark.parametrize(("arch", "kind"), [("vit", "causal-lm"), ("vit", "classifier"), ("t5", "causal-lm")])
def test_a_model_transformers_cannot_load_as_the_kind_is_named_not_called_damaged(
    tmp_path: Path, arch: str, kind: str
) -> None:
    """A vision model or T5 given by mistake: from_pretrained's "Unrecognized configuration
    class" was reported as a half-finished copy of the folder, to copy again."""
    from tinymodels import char_tokenizer
    from transformers import T5Config, T5ForConditionalGeneration, ViTConfig, ViTModel

    tok = char_tokenizer()
    if arch == "vit":
        model = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                                   image_size=32, patch_size=8))
    else:
        model = T5ForConditionalGeneration(T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=4, d_kv=8,
                                                    vocab_size=len(tok), decoder_start_token_id=0))
    model.save_pretrained(tmp_path / arch)
    tok.save_pretrained(tmp_path / arch)
    with pytest.raises(UserError, match=f"holds a '{arch}' model .* cannot load as a {kind}") as err:
        resolve_model(str(tmp_path / arch), kind, num_labels=2 if kind == "classifier" else None)
    assert "copy it again" not in str(err.value)


def test_an_encoder_decoder_is_refused_as_a_causal_lm(tmp_path: Path) -> None:
    """AutoModelForCausalLM loads a BART checkpoint's decoder alone (BartForCausalLM), its
    cross-attention fed nothing: every stage ran on a model that meant nothing."""
    from tinymodels import char_tokenizer
    from transformers import BartConfig, BartForConditionalGeneration

    from subsetctl.modeling.resolve import check_model_folder

    tok = char_tokenizer()
    BartForConditionalGeneration(BartConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=len(tok), max_position_embeddings=64,
    )).save_pretrained(tmp_path / "bart")
    tok.save_pretrained(tmp_path / "bart")
    with pytest.raises(UserError, match="encoder-decoder .* cannot be loaded as a causal-lm"):
        check_model_folder(str(tmp_path / "bart"), None, "causal-lm")  # validate
    with pytest.raises(UserError, match="encoder-decoder .* cannot be loaded as a causal-lm"):
        resolve_model(str(tmp_path / "bart"), "causal-lm")


def test_a_peft_adapter_folder_as_the_model_names_its_base_model(tiny_llama_dir, tmp_path: Path) -> None:
    """An adapter folder (adapter_config.json, no config.json) was only "not a Hugging Face
    model folder", which it is, in its way: the message says model.source wants its base."""
    from subsetctl.modeling.lora import apply_lora, save_adapter
    from subsetctl.modeling.resolve import check_model_folder

    model, _, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    save_adapter(apply_lora(model, r=2), tmp_path / "adapter")
    for check in (lambda: check_model_folder(str(tmp_path / "adapter"), None, "causal-lm"),
                  lambda: resolve_model(str(tmp_path / "adapter"), "causal-lm")):
        with pytest.raises(UserError, match=r"LoRA \(peft\) adapter: model.source must name its base model") as err:
            check()
        assert str(tiny_llama_dir.resolve()) in str(err.value) or str(tiny_llama_dir) in str(err.value)


def test_a_classifier_config_pad_id_follows_the_tokenizers(tmp_path: Path) -> None:
    """config.json naming a pad id (5) the tokenizer does not pad with (it has none: EOS is
    used): a decoder's classification head looked for id 5, found none, and read the last
    position of every padded row, a padding token."""
    import json

    import torch
    from tinymodels import save_tiny_llama

    from subsetctl.modeling.encoding import encode_classifier
    from subsetctl.modeling.outputs import classifier_f

    folder = save_tiny_llama(tmp_path / "llama")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "pad_token_id": 5}))
    model, tok, _ = resolve_model(str(folder), "classifier", num_labels=2)
    assert model.config.pad_token_id == tok.pad_token_id == tok.eos_token_id
    texts, labels = ["a long text to classify", "short"], [1, 0]
    batch = encode_classifier(tok, texts, labels, 32)
    with torch.no_grad():
        together = classifier_f(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                batch["labels"])
        alone = encode_classifier(tok, texts[1:], labels[1:], 32)
        f = classifier_f(model(input_ids=alone["input_ids"], attention_mask=alone["attention_mask"]).logits,
                         alone["labels"])
    assert torch.allclose(together[1], f[0], atol=1e-5)


def _legacy_llama_normalizer_tokenizer():
    """Llama's legacy tokenizer.json: no pre-tokenizer, a normalizer that prepends "▁" and
    writes spaces as "▁" (in a Sequence)."""
    import string

    from tokenizers import Tokenizer, models, normalizers
    from transformers import PreTrainedTokenizerFast

    chars = ["<eos>", "<unk>", "▁"] + list(string.printable[:95])
    tk = Tokenizer(models.BPE({c: i for i, c in enumerate(chars)}, [], unk_token="<unk>"))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", unk_token="<unk>")


def test_the_tokenizers_whose_answers_got_other_ids_after_the_prompt_are_told_from_their_files(tmp_path) -> None:
    """Read from tokenizer.json alone, the check agrees with the ids: the tokenizers it names
    give an answer other ids after its prompt than alone (a word-start "▁" before its first
    word), the others the same ids."""
    from tinymodels import byte_level_bpe_tokenizer, char_tokenizer, metaspace_char_tokenizer

    from subsetctl.modeling.encoding import render_prompt, tokenize_responses
    from subsetctl.modeling.resolve import tokenizer_marks_first_word

    tokenizers = {"metaspace first": (metaspace_char_tokenizer("first"), True),
                  "metaspace always": (metaspace_char_tokenizer("always"), True),
                  "metaspace never": (metaspace_char_tokenizer("never"), False),
                  "legacy llama normalizer": (_legacy_llama_normalizer_tokenizer(), True),
                  "char": (char_tokenizer(), False), "byte-level bpe": (byte_level_bpe_tokenizer(), False)}
    for name, (tok, marks) in tokenizers.items():
        folder = tmp_path / name.replace(" ", "-")
        tok.save_pretrained(folder)
        assert tokenizer_marks_first_word(folder) is marks, name
        rendered = render_prompt(tok, "the question is")
        (after,) = tokenize_responses(tok, [rendered], ["answer is Paris"], 64)
        assert (after != tok("answer is Paris", add_special_tokens=False)["input_ids"]) is marks, name
    spm = tmp_path / "sentencepiece-only"
    spm.mkdir()
    (spm / "tokenizer.model").write_bytes(b"\x00")
    assert tokenizer_marks_first_word(spm)
    (spm / "tokenizer.json").write_text("not json")  # loading says what is wrong with it
    assert not tokenizer_marks_first_word(spm)


def test_only_a_causal_lm_read_from_a_folder_gets_the_answer_tokenization_marker(tmp_path) -> None:
    from tinymodels import metaspace_char_tokenizer

    from subsetctl.modeling.resolve import ANSWER_TOKENIZATION, answer_tokenization_inputs

    folder = tmp_path / "models" / "spm"
    metaspace_char_tokenizer().save_pretrained(folder)
    (folder / "config.json").write_text("{}")
    assert answer_tokenization_inputs(str(folder), tmp_path, "causal-lm") == ANSWER_TOKENIZATION
    assert answer_tokenization_inputs("models/spm", tmp_path, "causal-lm") == ANSWER_TOKENIZATION  # by the spec's folder
    assert answer_tokenization_inputs(str(folder), tmp_path, "classifier") == {}  # tokenizes no answer
    (folder / "config.json").unlink()
    assert answer_tokenization_inputs(str(folder), tmp_path, "causal-lm") == {}  # no model folder
    assert answer_tokenization_inputs("org/name", tmp_path, "causal-lm") == {}  # a hub id: not read
    for name in PACKAGED_MODELS.names():  # byte-level BPE and WordPiece: not converted or read for it
        assert answer_tokenization_inputs(name, tmp_path, "causal-lm") == {}


def test_a_canine_or_byt5_folder_needs_no_vocabulary_file(tmp_path: Path) -> None:
    """Tokenizers of characters or bytes save only tokenizer_config.json, and transformers
    loads such a folder: it was refused as having no tokenizer files ("save the tokenizer
    there too"), by validate too. A folder with only the config.json of another family is
    still refused (AutoTokenizer made an empty-vocabulary tokenizer of it)."""
    import json

    from subsetctl.modeling.resolve import check_model_folder

    folder = tmp_path / "canine"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "canine"}))
    check_model_folder(str(folder), None, "classifier")  # AutoTokenizer picks CanineTokenizer by model_type
    (folder / "config.json").write_text(json.dumps({"model_type": "t5"}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "ByT5Tokenizer"}))
    check_model_folder(str(folder), None, "classifier")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    with pytest.raises(UserError, match="no tokenizer files"):
        check_model_folder(str(folder), None, "classifier")


def test_a_packaged_model_from_a_plugin_package_is_known_by_its_release(
        jsonl_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A packaged model an installed plugin package ships was known by its name alone: a
    release shipping other weights left meta_init and every stage after it "up to date",
    and the fine-tune caches handed back runs of the old weights."""
    from types import SimpleNamespace

    from subsetctl import plan_reasons
    from subsetctl.modeling.packaged import PackagedModel
    from subsetctl.modeling.resolve import model_fingerprint_inputs
    from subsetctl.project import Project
    from subsetctl.registry import Entry
    from subsetctl.spec import load_spec
    from subsetctl.stages.common import model_key

    model = PackagedModel(name="plugged-llama", description="a Llama from plugpkg", architecture="llama",
                          kinds=("causal-lm",), lora_targets=("q_proj",), pypi="plugpkg",
                          locate=lambda cache_dir, progress: jsonl_project)  # not called: known by name
    monkeypatch.setitem(PACKAGED_MODELS._entries, "plugged-llama", Entry(
        "plugged-llama", model, model.description, "entry point plugpkg:MODEL of plugpkg 1.0", "plugpkg 1.0"))
    assert model_fingerprint_inputs("plugged-llama", jsonl_project) == {"model_package": "plugpkg 1.0"}
    assert model_fingerprint_inputs("smollm2-135m-instruct", jsonl_project) == {}  # built-ins: by name

    spec_file = jsonl_project / "subsetctl.yaml"
    spec_file.write_text(spec_file.read_text() + "model: {source: plugged-llama}\n")
    ctx = SimpleNamespace(spec=load_spec(spec_file), project=Project.find(jsonl_project))
    key, earlier = model_key(ctx)  # type: ignore[arg-type]
    assert key["model"]["source"] == "plugged-llama" and key["model_package"] == "plugpkg 1.0" and earlier == []

    reason = plan_reasons.changed_inputs({"model_package": "plugpkg 1.0"}, {"model_package": "plugpkg 1.1"})
    assert reason == "input files changed: packaged model (model.source), plugpkg 1.0 -> 1.1"
    assert "is now known by its package too, plugpkg 1.0" in plan_reasons.changed_inputs({}, {"model_package": "plugpkg 1.0"})


@pytest.mark.parametrize(("locate", "says"), [
    ("raise", (r"raised FileNotFoundError: weights not shipped \(at \S+shipper\.py:3, in locate\) while locating "
               r"its folder\. Fix or reinstall that package")),
    ("none", r"returned None from locate\(\); it must return the path of a Hugging Face model folder"),
])
def test_a_plugin_packaged_models_failing_locate_is_blamed_on_its_package(
        jsonl_project: Path, monkeypatch: pytest.MonkeyPatch, locate: str, says: str) -> None:
    """A packaged model's ``locate`` from a plugin package that raised (or gave no path) was
    "internal error ... a bug in subsetctl" in validate and in run."""
    import sys

    from subsetctl.api import validate_spec_file
    from subsetctl.modeling.packaged import PackagedModel
    from subsetctl.modeling.resolve import resolve_model
    from subsetctl.registry import Entry

    (jsonl_project / "shipper.py").write_text(
        "def locate(cache_dir, progress):\n    if MODE == 'raise':\n        raise FileNotFoundError('weights not shipped')\n"
        f"\n\nMODE = {locate!r}\n")
    monkeypatch.syspath_prepend(str(jsonl_project))
    import shipper  # type: ignore[import-not-found]

    model = PackagedModel(name="shipped", description="a model from shipper", architecture="llama",
                          kinds=("causal-lm",), lora_targets=("q_proj",), pypi="shipper", locate=shipper.locate)
    origin = "entry point shipper:MODEL of shipper 1.0"
    monkeypatch.setitem(PACKAGED_MODELS._entries, "shipped", Entry("shipped", model, model.description, origin,
                                                                   "shipper 1.0"))
    try:
        with pytest.raises(UserError, match=r"The packaged model 'shipped' \(" + origin + r"\) " + says):
            resolve_model("shipped", kind="causal-lm")
        spec_file = jsonl_project / "subsetctl.yaml"
        spec_file.write_text(spec_file.read_text() + "model: {source: shipped}\n")
        problems = [e.message for e in validate_spec_file(spec_file).issues if e.key == "model.source"]
        assert len(problems) == 1 and re.search(says, problems[0]), problems
    finally:
        sys.modules.pop("shipper", None)


def test_a_plugin_packaged_models_locate_prints_to_stderr(
        jsonl_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A plugin package's ``locate`` that prints (a debugging print, a download's progress)
    wrote onto stdout in text mode, among `validate`'s verdict and `plan`'s table, while what
    every other plugin code prints goes to stderr."""
    from subsetctl.modeling.packaged import PackagedModel, locate_packaged
    from subsetctl.registry import Entry

    def locate(cache_dir: Path | None, progress: object) -> Path:
        print("shipper: locating")
        return jsonl_project

    model = PackagedModel(name="chatty", description="a model that prints", architecture="llama",
                          kinds=("causal-lm",), lora_targets=("q_proj",), pypi="shipper", locate=locate)
    monkeypatch.setitem(PACKAGED_MODELS._entries, "chatty", Entry("chatty", model, model.description,
                                                                  "entry point shipper:MODEL of shipper 1.0", "shipper 1.0"))
    assert locate_packaged("chatty") == jsonl_project
    printed = capsys.readouterr()
    assert printed.out == "" and "shipper: locating" in printed.err, printed


@pytest.mark.parametrize("packaged", [False, True])
def test_a_model_file_the_user_may_not_read_names_it_its_owner_and_the_chmod(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, packaged: bool) -> None:
    """A teammate's model folder (or a converted copy an earlier subsetctl wrote into a shared
    SUBSETCTL_CACHE) whose safetensors weights file is 0o600: transformers said "No such file
    or directory" of the file, which is there (a packaged model's: "internal error")."""
    import os
    import shutil

    from tinymodels import save_tiny_llama

    from subsetctl.errors import shell_arg

    folder = save_tiny_llama(tmp_path / "my model")
    real_access = os.access
    # (root reads anything: deny as the OS would a user other than the owner)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path).name != "model.safetensors"
                        and real_access(path, mode, **kw))
    source = str(folder)
    if packaged:
        from subsetctl.modeling import packaged as packaged_models

        cache = tmp_path / "cache"
        shutil.copytree(folder, cache / packaged_models.SMOLLM2_NAME)
        monkeypatch.setattr(packaged_models, "locate_packaged", lambda name, cache_dir, progress: cache / name)
        source, folder = packaged_models.SMOLLM2_NAME, cache / packaged_models.SMOLLM2_NAME
    with pytest.raises(UserError) as caught:
        resolve_model(source)
    message = str(caught.value)
    assert "No such file" not in message
    assert f"{folder}{',' if packaged else ''} holds files you may not read: model.safetensors (it belongs to " in message
    assert f"Its owner can make them readable with `chmod -R a+rX {shell_arg(folder)}`" in message



def test_a_model_file_the_user_may_not_read_is_named_when_plan_hashes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A teammate saved a new checkpoint into the model folder of a project the team shares
    (safetensors writes it 0o600): `plan` and `run` of everyone else stopped while hashing
    it with "Cannot use .../model.safetensors: Permission denied ... copy the project
    somewhere writable", which a copy cannot help (it could not read the file either)."""
    import errno
    import os

    from tinymodels import save_tiny_llama

    from subsetctl.modeling.resolve import model_fingerprint_inputs

    folder = save_tiny_llama(tmp_path / "model")
    real_access, real_open = os.access, open
    # (root reads anything: deny as the OS would a user other than the owner)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path).name != "model.safetensors"
                        and real_access(path, mode, **kw))

    def refusing_open(file, *args, **kwargs):
        if Path(os.fsdecode(file)).name == "model.safetensors":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refusing_open)
    with pytest.raises(UserError) as caught:
        model_fingerprint_inputs(str(folder), tmp_path)
    message = str(caught.value)
    assert f"The model folder {folder} holds files you may not read: model.safetensors (it belongs to " in message
    assert f"`chmod -R a+rX {folder}`" in message and "copy the project" not in message

def test_a_long_text_prints_no_indexing_errors_warning_of_transformers(tmp_path: Path, capfd) -> None:
    """A tokenizer saved with model_max_length 16 printed transformers' "Token indices
    sequence length is longer than the specified maximum sequence length for this model
    (77 > 16). Running this sequence through the model will result in indexing errors" in
    the middle of the gradients stage, for a long document that model.max_length cuts."""
    import json

    from tinymodels import save_tiny_llama

    from subsetctl.modeling.encoding import encode_rows

    folder = save_tiny_llama(tmp_path / "llama")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 16}))
    _, tokenizer, _ = resolve_model(str(folder), "causal-lm")
    assert tokenizer.model_max_length == 16
    capfd.readouterr()
    rows = [{"source": "books", "row": 0, "prompt": "lorem ipsum " * 30, "response": "ok"}]
    (encoded,) = encode_rows(tokenizer, rows, "causal-lm", max_length=32)
    assert encoded.truncated and len(encoded.input_ids) == 32
    printed = capfd.readouterr()
    assert "indexing errors" not in printed.err + printed.out


def test_validate_warns_and_doctor_fails_of_a_model_file_the_user_may_not_read(
        tiny_project: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's checkpoint saved 0o600 in the model folder stopped `plan` and `run`,
    while `validate` said the spec was valid with nothing more and `doctor` passed every check."""
    import os

    from subsetctl.api import validate_spec_file
    from subsetctl.doctor import run_checks
    from subsetctl.errors import shell_arg

    real_access = os.access
    # (root reads anything: deny as the OS would a user other than the owner)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path).name != "model.safetensors"
                        and real_access(path, mode, **kw))
    report = validate_spec_file(tiny_project / "subsetctl.yaml")
    assert report.ok
    assert any("holds files you may not read: model.safetensors" in w.render() and "`plan` and `run` here stop"
               in w.render() for w in report.warnings), [w.render() for w in report.warnings]
    failed = [check for check in run_checks(tiny_project) if not check.ok]
    assert [check.name for check in failed] == ["model files"], failed
    assert "model.safetensors" in failed[0].detail
    assert f"chmod -R a+rX {shell_arg(tiny_llama.resolve())}" in failed[0].advice


def _hub_cache_of_two_commits(cache: Path, folder: Path) -> tuple[str, str]:
    """A local hub cache holding ``tinyorg/tinyllama`` at two commits built by hand: the
    first as ``main``, the second (another config.json, so another config_hash) tagged ``v2``."""
    import json
    import shutil

    repo = cache / "models--tinyorg--tinyllama"
    first, second = "a" * 40, "b" * 40
    shutil.copytree(folder, repo / "snapshots" / first)
    shutil.copytree(folder, repo / "snapshots" / second)
    config = json.loads((repo / "snapshots" / second / "config.json").read_text())
    (repo / "snapshots" / second / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(first)
    (repo / "refs" / "v2").write_text(second)
    return first, second


@pytest.mark.parametrize("revision", [None, "main", "v2", "b" * 40])
def test_model_revision_loads_that_revision_of_a_hub_id_offline(monkeypatch, tmp_path, tiny_llama_dir,
                                                                revision: str | None) -> None:
    """`model.revision` (a commit, or a branch or tag the cache's refs resolve) loads that
    revision of a hub id from the local cache offline; unset, the cache's main, as before.
    The commit loaded is the one recorded (info's revision, the adapters' record)."""
    from subsetctl.modeling.resolve import adapter_base_model_revision

    first, second = _hub_cache_of_two_commits(tmp_path / "cache", tiny_llama_dir)
    _offline_with_cache(monkeypatch, tmp_path / "cache")
    expected = first if revision in (None, "main") else second
    _model, _tok, info = resolve_model("tinyorg/tinyllama", "causal-lm", revision=revision)
    _, _, other = resolve_model("tinyorg/tinyllama", "causal-lm", revision=first if expected == second else second)
    assert info["revision"] == expected, info
    assert info["config_hash"] != other["config_hash"]  # the files of that revision were read
    assert adapter_base_model_revision("tinyorg/tinyllama", tmp_path, revision) == expected


def test_a_model_revision_the_cache_lacks_offline_names_the_revisions_it_holds(monkeypatch, tmp_path,
                                                                               tiny_llama_dir) -> None:
    """Offline, a `model.revision` the local cache does not hold (a tag never downloaded here,
    a commit mistyped) is one error naming the commits it holds and their branches and tags,
    from `validate` (a warning under model.revision, as for a hub id not cached) and the load."""
    import json

    from subsetctl.api import validate_spec_file

    first, second = _hub_cache_of_two_commits(tmp_path / "cache", tiny_llama_dir)
    _offline_with_cache(monkeypatch, tmp_path / "cache")
    with pytest.raises(UserError) as err:
        resolve_model("tinyorg/tinyllama", "causal-lm", revision="v3")
    text = str(err.value)
    assert text.startswith("model.revision 'v3' of the hub model 'tinyorg/tinyllama' is not in the local Hugging "
                           "Face cache, and HF_HUB_OFFLINE is set"), text
    assert f"The cache holds 2 revisions of it: {first} (main), {second} (v2). Set model.revision" in text, text
    (tmp_path / "t.jsonl").write_text('{"prompt": "a", "response": "b"}\n')
    for revision, said in (("v3", [text]), ("v2", [])):
        spec = {"model": {"source": "tinyorg/tinyllama", "revision": revision},
                "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
                "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "t.jsonl"}}]}
        (tmp_path / "subsetctl.yaml").write_text(json.dumps(spec))
        report = validate_spec_file(tmp_path / "subsetctl.yaml")
        assert [i for i in report.issues if i.key.startswith("model.")] == [], report.issues
        assert [w.message for w in report.warnings if w.key.startswith("model.")] == said, report.warnings


@pytest.mark.parametrize("source", ["smollm2-135m-instruct", "local"])
def test_model_revision_is_refused_for_a_packaged_model_or_a_local_folder(tmp_path, tiny_llama_dir,
                                                                          source: str) -> None:
    """`model.revision` pins a hub id's revision: a packaged model or a local folder has none,
    so validate refuses it under model.revision (and the load too), saying what to do."""
    import json

    from subsetctl.api import validate_spec_file

    source = str(tiny_llama_dir) if source == "local" else source
    what = "the local model folder" if source == str(tiny_llama_dir) else "the packaged model"
    expected = (f"model.revision is set, but model.source '{source}' is {what}, which has no revisions: "
                "model.revision pins a Hugging Face hub id's commit, branch or tag")
    (tmp_path / "t.jsonl").write_text('{"prompt": "a", "response": "b"}\n')
    spec = {"model": {"source": source, "revision": "main"},
            "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
            "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "t.jsonl"}}]}
    (tmp_path / "subsetctl.yaml").write_text(json.dumps(spec))
    issues = [i for i in validate_spec_file(tmp_path / "subsetctl.yaml").issues if i.key.startswith("model.")]
    assert [i.key for i in issues] == ["model.revision"], issues
    assert issues[0].message.startswith(expected), issues[0].message
    with pytest.raises(UserError, match=re.escape(expected)):
        resolve_model(source, "causal-lm", revision="main")


def test_the_hub_revision_warning_forces_the_first_stage_that_recorded_a_commit(monkeypatch, tmp_path) -> None:
    """Where meta_init's results record no commit (made before commits were recorded) and a later
    model stage's do, the warning named that stage's results but advised `run --force meta_init`."""
    from types import SimpleNamespace

    from subsetctl.modeling import resolve
    from subsetctl.report import build

    source = "tinyorg/tinyllama"
    manifests = [("meta_init", {"summary": {"model": {"name": source}}}),
                 ("gradients", {"summary": {"model": {"revision": "a" * 40}}}),
                 ("verify", {"summary": {"model": {"revision": "c" * 40}}})]
    monkeypatch.setattr(build, "_shown_results",
                        lambda project, skip: [(SimpleNamespace(name=n), m) for n, m in manifests])
    monkeypatch.setattr(build, "_recorded_model_source", lambda manifest: source)
    monkeypatch.setattr(resolve, "adapter_base_model_revision", lambda source, root, pinned: "b" * 40)
    spec = SimpleNamespace(model=SimpleNamespace(source=source, revision=None))
    note = build.hub_revision_changed_note(SimpleNamespace(root=tmp_path), spec)
    assert note is not None and note.startswith(f"The gradients stage's results (and those after it) were made from "
                                                f"{source!r} at commit {'a' * 40}"), note
    assert "`subsetctl run --force gradients`" in note and "meta_init" not in note, note


def test_a_model_folder_whose_config_json_is_not_json_is_refused_by_validate(tmp_path: Path) -> None:
    """A config.json cut short by a copy stopped partway: validate passed the folder, and `run`
    stopped after the data stage with transformers' "It looks like the config file at ... is
    not a valid JSON file" and advice about the weights; validate now names the line and the fix."""
    from subsetctl.api import validate_spec_file

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{\n  "model_type": "llama",\n  "hidden_si')
    (folder / "tokenizer.json").write_text("{}")
    (tmp_path / "t.jsonl").write_text('{"prompt": "q", "response": "a"}\n' * 20)
    (tmp_path / "subsetctl.yaml").write_text(
        "model: {source: m}\ntarget: {name: t, loader: {type: jsonl, path: t.jsonl}}\n"
        "sources: [{name: s, loader: {type: jsonl, path: t.jsonl}}]\nsearch: {strategies: [{name: exhaustive}]}\n")
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert [(i.key, i.message) for i in report.issues] == [(
        "model.source",
        (f"The model folder {folder} has a config.json that is not valid JSON (line 3: Unterminated string starting "
         "at column 3): fix it, or copy the folder again (a copy or download stopped partway leaves files cut "
         "short), or write it with model.save_pretrained(folder)."))]
