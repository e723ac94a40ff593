"""LoRA: defaults per architecture, frozen base, classifier head, save/load/fingerprint."""

from __future__ import annotations

import pytest
import torch

from subsetctl.errors import UserError
from subsetctl.modeling.lora import (
    adapter_fingerprint,
    apply_lora,
    count_trainable,
    load_adapter,
    load_adapter_weights,
    save_adapter,
)
from subsetctl.modeling.resolve import resolve_model


def test_llama_lora_defaults_and_frozen_base(tiny_llama_dir) -> None:
    model, _, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    total = sum(p.numel() for p in model.parameters())
    peft_model = apply_lora(model, r=4, alpha=8, kind="causal-lm")
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("q_proj" in n for n in trainable) and any("v_proj" in n for n in trainable)
    assert not any("k_proj" in n for n in trainable)
    # 2 layers x 2 modules x (A: r x in + B: out x r); q: 64->64, v: 64->32 (2 kv heads)
    expected = 2 * ((4 * 64 + 64 * 4) + (4 * 64 + 32 * 4))
    assert count_trainable(peft_model) == expected
    base_frozen = [p.requires_grad for n, p in peft_model.named_parameters() if "lora_" not in n]
    assert not any(base_frozen) and len(base_frozen) > 0
    assert count_trainable(peft_model) < total


def test_bert_classifier_keeps_head_trainable(tiny_bert_dir) -> None:
    model, _, _ = resolve_model(str(tiny_bert_dir), "classifier", num_labels=2)
    peft_model = apply_lora(model, r=2, kind="classifier")
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("query" in n and "lora_A" in n for n in trainable)
    assert any("value" in n and "lora_B" in n for n in trainable)
    assert any("classifier" in n and "modules_to_save" in n for n in trainable)


def test_unknown_target_module_is_user_error(tiny_llama_dir) -> None:
    model, _, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    with pytest.raises(UserError, match="c_attn"):
        apply_lora(model, target_modules=["c_attn"])


def test_same_seed_same_init_and_save_load_roundtrip(tiny_llama_dir, tmp_path) -> None:
    a = apply_lora(resolve_model(str(tiny_llama_dir), "causal-lm")[0], r=4, seed=3)
    b = apply_lora(resolve_model(str(tiny_llama_dir), "causal-lm")[0], r=4, seed=3)
    save_adapter(a, tmp_path / "a")
    save_adapter(b, tmp_path / "b")
    assert adapter_fingerprint(tmp_path / "a") == adapter_fingerprint(tmp_path / "b")

    with torch.no_grad():  # change the weights: fingerprint must change, reload must match
        for n, p in a.named_parameters():
            if "lora_B" in n:
                p.add_(0.5)
    save_adapter(a, tmp_path / "a")  # overwrite in place (atomic replace)
    assert adapter_fingerprint(tmp_path / "a") != adapter_fingerprint(tmp_path / "b")

    loaded = load_adapter(resolve_model(str(tiny_llama_dir), "causal-lm")[0], tmp_path / "a", trainable=False)
    assert count_trainable(loaded) == 0
    ref = dict(a.named_parameters())
    for n, p in loaded.named_parameters():
        if "lora_" in n:
            assert torch.equal(p, ref[n])

    trainable = load_adapter(
        resolve_model(str(tiny_llama_dir), "causal-lm")[0], tmp_path / "a", trainable=True
    )
    assert count_trainable(trainable) == count_trainable(a)

    load_adapter_weights(b, tmp_path / "a")  # in place, no reload of the base model
    for n, p in b.named_parameters():
        if "lora_" in n:
            assert torch.equal(p, ref[n])


def test_load_adapter_from_non_adapter_folder(tiny_llama_dir, tmp_path) -> None:
    model, _, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    with pytest.raises(UserError, match="adapter_config.json"):
        load_adapter(model, tmp_path)


def test_saved_adapters_are_byte_identical_across_processes_and_readable(tiny_llama_dir, tmp_path) -> None:
    """peft writes target_modules from a set, in the order of the process's string hash seed:
    the same weights gave another adapter_config.json (so another output digest) and re-ran
    every stage after meta_init about every other time. safetensors wrote the weights 0600."""
    import os
    import stat
    import subprocess
    import sys

    from subsetctl.project import new_file_mode

    code = ("import sys; from subsetctl.modeling.lora import apply_lora, save_adapter; "
            "from subsetctl.modeling.resolve import resolve_model; "
            "m = resolve_model(sys.argv[1], 'causal-lm')[0]; "
            "save_adapter(apply_lora(m, r=2, seed=0, target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj']), "
            "sys.argv[2])")
    # two hash seeds under which a set of these names iterates in another order (checked
    # first, cheaply), so two processes are enough; they run side by side
    hash_seeds = ("0", "1")
    orders = {subprocess.run([sys.executable, "-c", "print(list({'q_proj', 'k_proj', 'v_proj', 'o_proj'}))"],
                             check=True, capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in hash_seeds}
    assert len(orders) == len(hash_seeds), orders
    outs = [tmp_path / f"seed{hash_seed}" for hash_seed in hash_seeds]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tiny_llama_dir), str(out)],
                              env={**os.environ, "PYTHONHASHSEED": hash_seed})
             for hash_seed, out in zip(hash_seeds, outs)]
    assert [proc.wait() for proc in procs] == [0] * len(procs)
    configs = set()
    for out in outs:
        configs.add((out / "adapter_config.json").read_bytes())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
        assert set(modes.values()) == {new_file_mode()}, modes
    assert len(configs) == 1


def test_an_adapter_this_process_may_not_read_is_not_called_damaged(tiny_llama_dir, tmp_path, monkeypatch) -> None:
    """Adapters written 0600 by an older build and read by a teammate: the advice must be
    about permissions (the CLI's message), not "damaged, compute it again"."""
    import errno

    import safetensors.torch

    from subsetctl.modeling.lora import adapter_fingerprint

    save_adapter(apply_lora(resolve_model(str(tiny_llama_dir), "causal-lm")[0], r=2, seed=0), tmp_path / "a")

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "a"))

    monkeypatch.setattr(safetensors.torch, "load_file", refuse)
    with pytest.raises(PermissionError):
        adapter_fingerprint(tmp_path / "a")


def test_gpt2_conv1d_lora_says_nothing_and_reloads(tmp_path) -> None:
    """GPT-2's attention is a transformers Conv1D: peft sets fan_in_fan_out for it and
    warned so (a raw UserWarning from site-packages) at every meta-init and fine-tune."""
    import warnings

    from tinymodels import save_tiny_gpt2

    folder = save_tiny_gpt2(tmp_path / "gpt2")
    model, _, _ = resolve_model(str(folder), "causal-lm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft_model = apply_lora(model, r=2, kind="causal-lm")
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.05)
        save_adapter(peft_model, tmp_path / "adapter")
        base, _, _ = resolve_model(str(folder), "causal-lm")
        loaded = load_adapter(base, tmp_path / "adapter")
    assert not [str(w.message) for w in caught if "fan_in_fan_out" in str(w.message)]
    assert peft_model.peft_config["default"].fan_in_fan_out is True
    ids = torch.tensor([[3, 4, 5, 6]])
    peft_model.eval()
    with torch.no_grad():
        assert torch.allclose(peft_model(input_ids=ids).logits, loaded(input_ids=ids).logits, atol=1e-6)


def test_a_target_that_is_not_a_linear_layer_is_refused_before_training(tiny_llama_dir) -> None:
    """LoRA on the embeddings trained through all of meta_init, and only the gradients stage
    then refused it (naming peft's parameters, not model.lora.target_modules)."""
    model, _, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    with pytest.raises(UserError, match=r"embed_tokens \(Embedding\) is not.*model\.lora\.target_modules"):
        apply_lora(model, r=2, target_modules=["q_proj", "embed_tokens"])


def test_a_missing_target_on_gpt2_lists_its_conv1d_layers(tmp_path) -> None:
    """GPT-2's layers are transformers Conv1D: the list of layers to choose from said only
    lm_head, the one target that is not what the user wants."""
    from tinymodels import save_tiny_gpt2

    model, _, _ = resolve_model(str(save_tiny_gpt2(tmp_path / "gpt2")), "causal-lm")
    with pytest.raises(UserError, match="include: c_attn, c_fc, c_proj, lm_head"):
        apply_lora(model, target_modules=["q_proj"])


def test_a_damaged_adapters_message_names_the_project_in_its_command(tmp_path) -> None:
    """It said `subsetctl run --force finetune`, which works only from inside the project."""
    from subsetctl.modeling.lora import _damaged

    project = tmp_path / "my project"
    adapter = project / ".subsetctl" / "cache" / "finetune" / "ab12" / "adapter"
    message = str(_damaged(adapter, ValueError("truncated")))
    assert f"Compute it again with `subsetctl run '{project.resolve()}' --force finetune`." in message
    assert "the stage that wrote it" in str(_damaged(tmp_path / "elsewhere" / "adapter", ValueError("x")))
    kept = project / ".subsetctl" / ".previous" / "verify" / "runs" / "cd34" / "adapter"  # not `--force .previous`
    assert f"`subsetctl run '{project.resolve()}' --force verify`." in str(_damaged(kept, ValueError("x")))


def test_saving_the_adapter_of_a_hub_model_asks_the_hub_nothing(tiny_llama_dir, tmp_path, monkeypatch) -> None:
    """peft looked a hub base model's config.json up on the hub at every adapter save (each
    meta-init checkpoint, each fine-tune): offline, a request and two raw UserWarnings from
    site-packages each time. The adapter files are the same as before."""
    import warnings

    import peft.utils.save_and_load as peft_save

    model, _, _ = resolve_model(str(tiny_llama_dir), "causal-lm")
    peft_model = apply_lora(model, r=2, kind="causal-lm")
    save_adapter(peft_model, tmp_path / "local")
    peft_model.peft_config["default"].base_model_name_or_path = "some-org/some-model"  # as loaded from the hub
    asked: list[str] = []

    def unreachable(repo_id: str, filename: str, **kwargs) -> None:  # (None: it could not tell)
        asked.append(repo_id)
        warnings.warn(f"Unable to fetch remote file {filename} in {repo_id}")

    monkeypatch.setattr(peft_save, "check_file_exists_on_hf_hub", unreachable)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_adapter(peft_model, tmp_path / "hub")
    assert asked == [] and not [str(w.message) for w in caught]
    assert (tmp_path / "hub" / "adapter_model.safetensors").read_bytes() == \
        (tmp_path / "local" / "adapter_model.safetensors").read_bytes()
