"""Model resolution: packaged registry, local folders, hub ids, pad tokens, errors."""

from __future__ import annotations

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
    import time

    import huggingface_hub.constants as hc

    from subsetctl.modeling import resolve

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    assert resolve.hub_reachable() is False
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="unreachable") as err:
        resolve_model("some-org/not-cached-anywhere", "causal-lm")
    assert time.perf_counter() - t0 < 10  # no minute of client retries
    assert "all-minilm-l6-v2" in str(err.value)
