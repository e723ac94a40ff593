"""A local model folder whose config.json's auto_map names code: in its own files, or in
another hub repository's (which transformers fetches even for a local folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from subsetctl.errors import UserError
from subsetctl.modeling.resolve import resolve_model

_CONFIG_CODE = "from transformers import LlamaConfig\n\n\nclass XConfig(LlamaConfig):\n    model_type = 'xllama'\n"
_MODEL_CODE = ("from transformers import LlamaForCausalLM\n\nfrom .configuration_x import XConfig\n\n\n"
               "class XModel(LlamaForCausalLM):\n    config_class = XConfig\n")


def _with_auto_map(tiny_llama_dir: Path, folder: Path, prefix: str, model_type: str | None = None) -> Path:
    """A copy of the tiny Llama whose config.json's auto_map names configuration_x.XConfig and
    modeling_x.XModel, after ``prefix`` ("" for the folder's own files, "org/repo--" for a hub
    repository's), as a ``model_type`` (default: the folder's own)."""
    shutil.copytree(tiny_llama_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": f"{prefix}configuration_x.XConfig",
                          "AutoModelForCausalLM": f"{prefix}modeling_x.XModel"}
    config["model_type"] = model_type or config["model_type"]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_folder_of_an_unknown_model_type_with_its_own_code_asks_for_trust_remote_code(
        tiny_llama_dir: Path, tmp_path: Path) -> None:
    """run stopped with transformers' "contains custom code which must be executed" and advice to
    copy the weights again: it says the folder's code builds the model, and to read it and set
    model.trust_remote_code; with it set the folder loads from its own files."""
    folder = _with_auto_map(tiny_llama_dir, tmp_path / "own", "", model_type="xllama")
    (folder / "configuration_x.py").write_text(_CONFIG_CODE)
    (folder / "modeling_x.py").write_text(_MODEL_CODE)
    with pytest.raises(UserError) as raised:
        resolve_model(str(folder), "causal-lm")
    message = str(raised.value)
    assert "model_type transformers does not know ('xllama')" in message, message
    assert "configuration_x.XConfig" in message and "model.trust_remote_code: true" in message, message
    assert "save_pretrained" not in message and "copy" not in message, message
    model, _, _ = resolve_model(str(folder), "causal-lm", trust_remote_code=True)
    assert type(model).__name__ == "XModel"
    # a known model type loads with transformers' own classes, its auto_map unused
    known = _with_auto_map(tiny_llama_dir, tmp_path / "known", "someorg/somerepo--")
    assert type(resolve_model(str(known), "causal-lm")[0]).__name__ == "LlamaForCausalLM"


def test_a_folder_taking_code_from_a_hub_repository_says_so_when_it_cannot_be_fetched(
        tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local folder whose auto_map names another hub repository's code (``org/repo--file.Class``)
    is fetched from the hub with trust_remote_code; offline that failed as "Could not load the model
    folder ... Check that it holds the weights and tokenizer files", a copy to repeat. It names the
    repository and the files to copy into the folder so that it loads without the hub."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # (tests never reach the hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = _with_auto_map(tiny_llama_dir, tmp_path / "remote", "someorg/somerepo--")
    with pytest.raises(UserError) as raised:
        resolve_model(str(folder), "causal-lm", trust_remote_code=True)
    message = str(raised.value)
    assert "takes code from the hub repository someorg/somerepo" in message, message
    assert "Copy configuration_x.py, modeling_x.py from that repository into the folder" in message, message
    assert "'someorg/somerepo--' prefixes in auto_map" in message, message
    assert "weights and tokenizer files" not in message, message


def test_validate_says_a_folder_needs_trust_remote_code_before_the_data_stage(
        tiny_llama_dir: Path, tiny_project: Path) -> None:
    """run found it out at meta_init, after the data stage: validate (so plan and run first)
    says it under model.source, and passes once model.trust_remote_code is on."""
    import yaml
    from click.testing import CliRunner

    from subsetctl.cli import main

    folder = _with_auto_map(tiny_llama_dir, tiny_project / "own", "", model_type="xllama")
    spec_path = tiny_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["model"]["source"] = str(folder)
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = CliRunner().invoke(main, ["validate", str(spec_path)])
    assert result.exit_code == 1, result.output
    assert "model.source" in result.output and "model.trust_remote_code: true" in result.output, result.output
    assert "Traceback" not in result.output
    spec["model"]["trust_remote_code"] = True
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = CliRunner().invoke(main, ["validate", str(spec_path)])
    assert result.exit_code == 0, result.output


def test_a_cached_hub_model_of_an_unknown_model_type_with_its_own_code_asks_for_trust_remote_code(
        tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id whose copy in the local Hugging Face cache has such a config.json got only
    transformers' "contains custom code which must be executed" (a local folder got the advice):
    validate's check and the load both name the cached copy and model.trust_remote_code."""
    import huggingface_hub.constants

    from subsetctl.modeling.resolve import check_model_folder

    repo = tmp_path / "hub" / "models--someorg--xllama"
    snapshot = _with_auto_map(tiny_llama_dir, repo / "snapshots" / "0123456789abcdef", "", model_type="xllama")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("subsetctl.modeling.resolve.hub_reachable", lambda timeout=3.0: False)
    for check in (lambda: check_model_folder("someorg/xllama", tmp_path, "causal-lm", trust_remote_code=False),
                  lambda: resolve_model("someorg/xllama", "causal-lm")):
        with pytest.raises(UserError) as raised:
            check()
        message = str(raised.value)
        assert message.startswith("The hub model 'someorg/xllama' (its copy in the local Hugging Face cache, "
                                  f"{snapshot})"), message
        assert "model_type transformers does not know ('xllama')" in message, message
        assert "model.trust_remote_code: true" in message, message
    check_model_folder("someorg/xllama", tmp_path, "causal-lm", trust_remote_code=True)


def test_a_damaged_weights_file_of_a_folder_taking_code_from_a_hub_repository_is_not_called_a_failed_fetch(
        tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once transformers had the other repository's code (fetched before, or reachable), a
    truncated weights file of such a folder was reported as that code's fetch failing ("fetching
    it failed: Error while deserializing header", copy the .py files in): the advice for a
    failure in transformers' fetch of the code, given for any failure of the load. It is said
    as for any folder now: the weights file cannot be read, copy it again."""
    from safetensors import SafetensorError

    from subsetctl.modeling import resolve

    def damaged(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while deserializing header: incomplete metadata, file not fully covered")

    monkeypatch.setattr(resolve, "_load", damaged)
    folder = _with_auto_map(tiny_llama_dir, tmp_path / "remote", "someorg/somerepo--")
    with pytest.raises(UserError) as raised:
        resolve_model(str(folder), "causal-lm", trust_remote_code=True)
    message = str(raised.value)
    assert "Error while deserializing header" in message and "copy it again" in message, message
    assert "fetching it failed" not in message and "someorg/somerepo" not in message, message


def test_a_model_type_registered_with_transformers_needs_no_trust_remote_code(
        tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers builds a model type registered with it (``AutoConfig.register``, as a plugin
    module may do) with the registered classes, its folder's auto_map unused, and asks for no
    trust_remote_code; the check read transformers' table of its own types alone and refused
    such a folder as one only its own code builds."""
    from transformers import LlamaConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from subsetctl.modeling.remote_code import refuse_code_not_trusted

    class RegisteredConfig(LlamaConfig):
        model_type = "xregistered"

    folder = _with_auto_map(tiny_llama_dir, tmp_path / "registered", "", model_type="xregistered")
    with pytest.raises(UserError, match="model_type transformers does not know"):
        refuse_code_not_trusted(folder, False)
    monkeypatch.setitem(CONFIG_MAPPING._extra_content, "xregistered", RegisteredConfig)  # AutoConfig.register's
    refuse_code_not_trusted(folder, False)


def test_a_config_whose_model_type_is_no_string_is_left_to_the_load_to_report(tiny_llama_dir: Path,
                                                                               tmp_path: Path) -> None:
    """A config.json with an auto_map whose ``model_type`` is a list (a damaged or hand-edited
    file) stopped validate with "internal error: TypeError: unhashable type: 'list'": the
    check looked it up in transformers' table of model types. It is not the check's to judge."""
    from subsetctl.modeling.remote_code import refuse_code_not_trusted

    folder = _with_auto_map(tiny_llama_dir, tmp_path / "damaged", "")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": ["xllama"]}))
    refuse_code_not_trusted(folder, False)


def test_a_folder_whose_own_code_imports_a_package_not_installed_says_to_install_it(
        tiny_llama_dir: Path, tmp_path: Path) -> None:
    """With model.trust_remote_code on, a folder whose auto_map code imports a package not
    installed stopped `run` with "internal error: ImportError: This modeling file requires the
    following packages ...": it is the model folder's code's, and said as a user error."""
    folder = _with_auto_map(tiny_llama_dir, tmp_path / "own", "", model_type="xllama")
    (folder / "configuration_x.py").write_text("import subsetctl_test_no_such_package\n" + _CONFIG_CODE)
    (folder / "modeling_x.py").write_text(_MODEL_CODE)
    with pytest.raises(UserError) as raised:
        resolve_model(str(folder), "causal-lm", trust_remote_code=True)
    message = str(raised.value)
    assert f"The model folder {folder}'s own code" in message and "could not be imported" in message, message
    assert "subsetctl_test_no_such_package" in message and "Install what it asks for" in message, message


def _cached_hub_model(tiny_llama_dir: Path, hub: Path, commit: str, model_type: str | None = "xllama") -> Path:
    """The hub model someorg/xllama's snapshot ``commit`` in the local Hugging Face cache ``hub``,
    which refs/main names: the tiny Llama whose auto_map names its own code (``model_type``
    "xllama"), or with None the tiny Llama as it is (a later revision transformers supports)."""
    repo = hub / "models--someorg--xllama"
    snapshot = repo / "snapshots" / commit
    if model_type is None:
        shutil.copytree(tiny_llama_dir, snapshot)
    else:
        _with_auto_map(tiny_llama_dir, snapshot, "", model_type=model_type)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_an_offline_hub_model_whose_own_code_imports_a_package_not_installed_says_so(
        tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, a hub id whose cached copy's auto_map code imports a package not installed was
    said as "the local Hugging Face cache holds only part of the model" (to download the rest): it
    names the cached copy's code, that it could not be imported, and what to install."""
    import huggingface_hub.constants

    snapshot = _cached_hub_model(tiny_llama_dir, tmp_path / "hub", "0123456789abcdef")
    (snapshot / "configuration_x.py").write_text("import subsetctl_test_no_such_package\n" + _CONFIG_CODE)
    (snapshot / "modeling_x.py").write_text(_MODEL_CODE)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("subsetctl.modeling.resolve.hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(UserError) as raised:
        resolve_model("someorg/xllama", "causal-lm", trust_remote_code=True)
    message = str(raised.value)
    assert message.startswith("The hub model 'someorg/xllama' (its copy in the local Hugging Face cache, "
                              f"{snapshot}): its own code"), message
    assert "could not be imported" in message and "subsetctl_test_no_such_package" in message, message
    assert "only part" not in message and "download the rest" not in message, message


def test_a_reachable_hub_is_not_answered_from_an_older_cached_revision_of_main(
        tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the hub reachable, the cache's copy of main (an older revision whose model only its own
    code built) refused the hub id before loading, for model.trust_remote_code, though the hub's main
    now loads with transformers' classes: validate and the load pass it, and the load still names
    the cached copy and trust_remote_code where what it downloaded needs that code."""
    import huggingface_hub.constants

    from subsetctl.modeling import resolve
    from subsetctl.modeling.resolve import check_model_folder

    hub = tmp_path / "hub"
    _cached_hub_model(tiny_llama_dir, hub, "0123456789abcdef")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr("subsetctl.modeling.resolve.hub_reachable", lambda timeout=3.0: True)
    load = resolve._load

    def download_then_load(model_type: str | None):
        def fake(location, kind, dtype, trust_remote_code, num_labels, local_files_only=False, where=None,
                 revision=None):  # the hub's main, as from_pretrained downloads it into the cache, then loaded
            fresh = _cached_hub_model(tiny_llama_dir, hub, "fedcba9876543210", model_type)
            return load(str(fresh), kind, dtype, trust_remote_code, num_labels, where=where)
        return fake

    check_model_folder("someorg/xllama", tmp_path, "causal-lm", trust_remote_code=False)
    monkeypatch.setattr(resolve, "_load", download_then_load(None))
    assert type(resolve_model("someorg/xllama", "causal-lm")[0]).__name__ == "LlamaForCausalLM"
    # a commit asked for is what loads, reachable or not: its cached copy is read first
    with pytest.raises(UserError, match="model_type transformers does not know"):
        check_model_folder("someorg/xllama", tmp_path, "causal-lm", "0123456789abcdef", trust_remote_code=False)
    shutil.rmtree(hub)
    _cached_hub_model(tiny_llama_dir, hub, "0123456789abcdef", None)
    monkeypatch.setattr(resolve, "_load", download_then_load("xllama"))
    with pytest.raises(UserError) as raised:
        resolve_model("someorg/xllama", "causal-lm")
    message = str(raised.value)
    assert message.startswith("The hub model 'someorg/xllama' (its copy in the local Hugging Face cache, "
                              f"{hub / 'models--someorg--xllama' / 'snapshots' / 'fedcba9876543210'})"), message
    assert "model.trust_remote_code: true" in message, message
