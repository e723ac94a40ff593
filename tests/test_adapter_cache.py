"""The finished fine-tune cache's look-up: a cached run is used only when its record
shows the selection's training order (earlier versions keyed it by the sorted selection),
on a stand-in for the data stage (no model needed)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from subsetctl.project import artifact_checksums, atomic_write_json
from subsetctl.reporter import SilentReporter
from subsetctl.stages.finetune import CHECKSUMS, AdapterCache


class _Data:
    labels = None

    def of(self, names: list[str], test_splits: bool = True) -> dict:
        return {"files": {n: {"x": n, **({"test/x": n} if test_splits else {})} for n in sorted(names)}, "labels": None}


def _cache(tmp_path: Path, legacy: bool = False) -> AdapterCache:
    cache = object.__new__(AdapterCache)  # its inputs set by hand instead of from a project
    cache.folder = tmp_path / "cache"
    cache.folder.mkdir(parents=True, exist_ok=True)
    cache.data, cache.target, cache.reporter = _Data(), "t", SilentReporter()
    cache.base = {"model": {"source": "a local folder"}, "train": {}, "version": "0"}
    cache.legacy_bases = [{"model": {"source": "/old/path"}, "train": {}, "version": "0"}] if legacy else []
    return cache


def _put(entry: Path, trained: list, tag: str) -> None:
    (entry / "adapter").mkdir(parents=True)
    (entry / "adapter" / "w.bin").write_text(tag)
    atomic_write_json(entry / CHECKSUMS, artifact_checksums(entry / "adapter"))
    atomic_write_json(entry / "record.json", {"subset": trained, "seed": 0, "tag": tag, "steps": 1})


def _restored(cache: AdapterCache, subset: list[str], tmp_path: Path) -> str | None:
    record = cache.restore(subset, 0, tmp_path / "run")
    return None if record is None else record["tag"]


def test_a_fine_tune_of_another_order_under_the_key_is_not_used_but_kept_for_its_order(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    _put(cache._entry(["a", "b"], 0), ["b", "a"], "trained b, a")  # an earlier version's sorted key
    assert _restored(cache, ["a", "b"], tmp_path) is None
    assert _restored(cache, ["b", "a"], tmp_path) == "trained b, a"


def test_an_earlier_versions_entry_is_found_under_its_sorted_key_and_old_model_key(tmp_path: Path) -> None:
    cache = _cache(tmp_path, legacy=True)
    _put(cache._entry(["b", "a"], 0, cache.legacy_bases[0], keyed=["a", "b"]), ["b", "a"], "old key")
    assert _restored(cache, ["a", "b"], tmp_path) is None
    assert _restored(cache, ["b", "a"], tmp_path) == "old key"
    assert (cache._entry(["b", "a"], 0) / "record.json").is_file()  # moved to today's key


def test_an_entry_keyed_by_the_test_splits_files_as_before_is_found_and_moved_to_todays_key(tmp_path: Path) -> None:
    """Earlier versions keyed a fine-tune by its sources' files, test splits too (which it does
    not read): today's key leaves them out, so an edit of the test rows alone trains nothing."""
    cache = _cache(tmp_path, legacy=True)
    _put(cache._entry(["b", "a"], 0, test_splits=True), ["b", "a"], "before")
    _put(cache._entry(["a"], 0, cache.legacy_bases[0], keyed=["a"], test_splits=True), ["a"], "older")
    assert cache.holds(["b", "a"], 0) and cache.holds(["a"], 0)
    assert _restored(cache, ["b", "a"], tmp_path) == "before" and _restored(cache, ["a"], tmp_path) == "older"
    assert (cache._entry(["b", "a"], 0) / "record.json").is_file()  # moved to today's key


def test_a_damaged_record_or_copy_is_trained_again_never_a_crash_or_the_good_copy_lost(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    entry = cache._entry(["a", "b"], 0)
    _put(entry, ["b", "a"], "x")
    atomic_write_json(entry / "record.json", {"subset": ["b", None], "steps": 1, "tag": "x"})
    assert _restored(cache, ["a", "b"], tmp_path) is None  # (was a TypeError sorting None)
    # an old-order entry whose own key holds a damaged copy: the good one replaces it
    cache = _cache(tmp_path / "second")
    _put(cache._entry(["a", "b"], 0), ["b", "a"], "good")
    proper = cache._entry(["b", "a"], 0)
    _put(proper, ["b", "a"], "damaged")
    (proper / "adapter" / "w.bin").write_text("garbage!")
    assert _restored(cache, ["a", "b"], tmp_path) is None
    assert _restored(cache, ["b", "a"], tmp_path) == "good"
    assert json.loads((proper / "record.json").read_text())["tag"] == "good"


def test_an_interrupted_store_leaves_no_half_written_entry(tmp_path, monkeypatch) -> None:
    """Ctrl-C (or SIGTERM) while a finished fine-tune is stored in the cache deletes the
    half-written ``<key>.partial`` folder; it stayed in `.subsetctl/cache/finetune` (counted
    by `plan`, deleted only under `project.cache_limit_gb`) unless the same run was stored
    again."""
    from subsetctl.stages import finetune

    cache = object.__new__(finetune.AdapterCache)
    monkeypatch.setattr(cache, "_entry", lambda subset, seed: tmp_path / "cache" / "key")
    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    real = finetune.atomic_write_json

    def interrupted(path, data):
        if path.name == "record.json":
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(finetune, "atomic_write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.store(["a"], 0, run_dir, {"subset": ["a"]})
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_entry_a_cut_short_deletion_left_without_its_adapter_is_trained_again(tmp_path: Path) -> None:
    """Deleting an entry (the cache trim, a store replacing it) stopped partway can leave its
    record without the adapter or checksums: restoring it was an internal error
    (FileNotFoundError copying the adapter)."""
    cache = _cache(tmp_path)
    entry = cache._entry(["a"], 0)
    _put(entry, ["a"], "x")
    (entry / CHECKSUMS).unlink()
    (entry / "adapter" / "w.bin").unlink()
    (entry / "adapter").rmdir()
    assert _restored(cache, ["a"], tmp_path) is None
    assert not entry.exists()  # deleted, to be stored again once trained


@pytest.mark.parametrize("checksums", [[], {"w.bin": 1}, {"w.bin": {"size": 8}}])
def test_checksums_of_another_shape_are_damage_trained_again_not_an_internal_error(tmp_path: Path,
                                                                                  checksums: object) -> None:
    """A cached fine-tune's checksums.json edited into another shape stopped the finetune
    stage with an internal error (AttributeError, TypeError) on every run."""
    cache = _cache(tmp_path)
    entry = cache._entry(["a"], 0)
    _put(entry, ["a"], "x")
    atomic_write_json(entry / CHECKSUMS, checksums)
    assert _restored(cache, ["a"], tmp_path) is None
    assert not entry.exists()  # deleted, so the run trained now is stored in its place


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO])
@pytest.mark.parametrize("unreadable", ["record.json", CHECKSUMS, "adapter/w.bin"])
def test_a_cached_fine_tune_that_cannot_be_read_is_kept_not_deleted_as_damage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, unreadable: str) -> None:
    """A cached fine-tune's file this process may not read (EACCES, EPERM, EROFS), or that
    the disk failed to read (EIO), is no damage: the entry was deleted and the run trained
    again. Permissions go up as the OSError (the CLI's permissions message); other errors
    are a UserError naming the entry, which is kept."""
    from subsetctl import project
    from subsetctl.errors import UserError

    cache = _cache(tmp_path)
    entry = cache._entry(["a"], 0)
    _put(entry, ["a"], "x")
    (entry / "adapter" / "w.bin").write_text("x")  # a new stamp: hashed again on restore
    path = entry / unreadable
    error = OSError(code, os.strerror(code), str(path))
    read_text, sha256_file = Path.read_text, project.sha256_file

    def refused_text(self: Path, *args: object, **kwargs: object) -> str:
        if self == path:
            raise error
        return read_text(self, *args, **kwargs)

    def refused_hash(file: Path, *args: object, **kwargs: object) -> str:
        if Path(file) == path:
            raise error
        return sha256_file(file, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refused_text)
    monkeypatch.setattr(project, "sha256_file", refused_hash)
    with pytest.raises(OSError if code != errno.EIO else UserError) as raised:
        cache.restore(["a"], 0, tmp_path / "run")
    if code == errno.EIO:
        assert str(entry) in str(raised.value) and "it is kept" in str(raised.value)
    assert raised.value is error or raised.value.__cause__ is error
    monkeypatch.undo()
    assert _restored(cache, ["a"], tmp_path) == "x"  # kept, and used once it can be read


@pytest.mark.parametrize("folder", [True, False])
def test_a_misshapen_entry_deleted_meanwhile_by_someone_else_is_no_internal_error(tmp_path: Path,
                                                                                  folder: bool) -> None:
    """A cache entry of the wrong shape (a file where a folder belongs) deleted by another
    process (the cache deleted by hand while a run uses it) between being found and being
    deleted stopped the run with an internal error (FileNotFoundError)."""
    from subsetctl.stages.common import drop_misshapen_entry

    entry = tmp_path / "entry"
    if folder:
        entry.write_text("a file where a folder belongs")
    else:
        (entry / "inside").mkdir(parents=True)

    class DeletedWhileWarning(SilentReporter):
        def warn(self, message: object) -> None:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    drop_misshapen_entry(DeletedWhileWarning(), entry, folder=folder)
    assert not entry.exists()


def test_an_adapter_the_full_cache_disk_cannot_take_is_warned_of_not_a_stopped_run(tmp_path, monkeypatch) -> None:
    """A fine-tune's adapter copied into a cache whose disk is full: ``shutil.copytree``
    gathers the file's ENOSPC into a ``shutil.Error`` with no errno of its own, which
    :class:`~subsetctl.stages.common.CacheWrites` let through, so the run stopped after
    recording the result, as the permission error it warns of had. Now it is one warning."""
    from subsetctl.stages import common

    cache = _cache(tmp_path)
    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")

    def full(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(shutil, "copyfile", full)  # (copytree's copy2 copies the bytes with it)
    reporter = SilentReporter()
    writes = common.CacheWrites(reporter, cache.folder)
    writes(lambda: cache.store(["a"], 0, run_dir, {"subset": ["a"]}))
    said = [str(w) for w in reporter.warnings]
    assert writes.refused and len(said) == 1 and "cannot take results" in said[0], said
    assert os.strerror(errno.ENOSPC) in said[0] and "adapter_model.safetensors" in said[0], said
    assert list(cache.folder.iterdir()) == []  # no half-written entry either


def test_a_run_restored_from_a_read_only_cache_is_writable(tmp_path: Path) -> None:
    """A cache made read-only (``chmod -R a-w .subsetctl/cache``, a teammate's) is only warned
    of when it cannot take results; but a run copied out of it kept its read-only modes, so
    writing the run's README.md into the copy stopped the run with a permission error naming
    the run's folder, which the user never made read-only."""
    cache = _cache(tmp_path)
    entry = cache._entry(["a"], 0)
    _put(entry, ["a"], "x")
    for path in [*sorted(entry.rglob("*"), reverse=True), entry]:
        path.chmod(0o444 if path.is_file() else 0o555)
    try:
        assert _restored(cache, ["a"], tmp_path) == "x"
    finally:
        for path in [entry, *entry.rglob("*")]:
            path.chmod(0o644 if path.is_file() else 0o755)
    adapter = tmp_path / "run" / "adapter"
    assert all(path.stat().st_mode & 0o200 for path in [adapter, *adapter.rglob("*")])
    assert (adapter / "w.bin").read_text() == "x"


def test_a_run_folder_that_cannot_be_deleted_is_the_permissions_error_naming_it(tmp_path, monkeypatch) -> None:
    """Restoring a cached run over a run folder this process may not delete (left read-only)
    ignored the refusal, and the copy then failed as an internal error (FileExistsError).
    Now the refusal goes up naming the file, which the CLI says as a permissions problem."""
    cache = _cache(tmp_path)
    _put(cache._entry(["a"], 0), ["a"], "x")
    (tmp_path / "run" / "adapter").mkdir(parents=True)
    (tmp_path / "run" / "adapter" / "w.bin").write_text("old")

    def refused(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(os, "unlink", refused)
    with pytest.raises(PermissionError) as raised:
        cache.restore(["a"], 0, tmp_path / "run")
    assert raised.value.filename == str(tmp_path / "run" / "adapter" / "w.bin")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_holds_tells_what_restore_takes_changing_nothing(tmp_path: Path) -> None:
    """`plan` counts a cached fine-tune (:meth:`AdapterCache.holds`) only where `run`'s
    :meth:`AdapterCache.restore` takes it: one of another order, under an earlier key, with a
    damaged record, an adapter file cut short or missing, or a file in the folder's place."""
    cases = {}
    cache = cases["of another order under the key"] = _cache(tmp_path / "order")
    _put(cache._entry(["a", "b"], 0), ["b", "a"], "trained b, a")
    cache = cases["under an earlier key"] = _cache(tmp_path / "legacy", legacy=True)
    _put(cache._entry(["b", "a"], 0, cache.legacy_bases[0], keyed=["a", "b"]), ["b", "a"], "old key")
    cache = cases["cut short"] = _cache(tmp_path / "cut")
    _put(cache._entry(["a", "b"], 0), ["a", "b"], "x")
    (cache._entry(["a", "b"], 0) / "adapter" / "w.bin").write_text("")
    cache = cases["adapter file missing"] = _cache(tmp_path / "missing")
    _put(cache._entry(["b", "a"], 0), ["b", "a"], "x")
    (cache._entry(["b", "a"], 0) / "adapter" / "w.bin").unlink()
    cache = cases["damaged record"] = _cache(tmp_path / "record")
    _put(cache._entry(["a", "b"], 0), ["a", "b"], "x")
    (cache._entry(["a", "b"], 0) / "record.json").write_text('{"subset": ["a", ')
    cache = cases["a file"] = _cache(tmp_path / "file")
    cache._entry(["a", "b"], 0).write_text("not an entry")
    cache = cases["intact"] = _cache(tmp_path / "intact")
    _put(cache._entry(["a", "b"], 0), ["a", "b"], "x")
    for case, cache in cases.items():
        before = _files(cache.folder)
        held = {tuple(subset): cache.holds(subset, 0) for subset in (["a", "b"], ["b", "a"])}
        assert _files(cache.folder) == before, case  # plan changes nothing
        taken = {tuple(subset): _restored(cache, subset, tmp_path / case) is not None
                 for subset in (["a", "b"], ["b", "a"])}
        assert held == taken, case
    assert sum(sum(cache.holds(s, 0) for s in (["a", "b"], ["b", "a"])) for cache in cases.values()) == 3


def test_two_runs_storing_one_fine_tune_at_once_both_finish_and_keep_it_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two projects whose .subsetctl/cache links to one folder (a bigger disk), run at the
    same time on the same model and data, finish the same fine-tune and store it at once.
    Both wrote it through the one folder ``<entry>.partial``: the second deleted the first's
    half copy under it, and the first run stopped on the file it could no longer write."""
    ours, theirs = _cache(tmp_path), _cache(tmp_path)
    runs = {}
    for name in ("ours", "theirs"):
        runs[name] = tmp_path / name
        (runs[name] / "adapter").mkdir(parents=True)
        (runs[name] / "adapter" / "w.bin").write_text("the same weights")
    real_copytree = shutil.copytree

    def copytree(src, dst, *args, **kwargs):
        copied = real_copytree(src, dst, *args, **kwargs)
        if Path(src).parent == runs["ours"]:  # the other run stores the same fine-tune meanwhile, start to end
            theirs.store(["a"], 0, runs["theirs"], {"subset": ["a"], "loss": 1.0})
        return copied

    monkeypatch.setattr(shutil, "copytree", copytree)
    ours.store(["a"], 0, runs["ours"], {"subset": ["a"], "loss": 1.0})
    monkeypatch.setattr(shutil, "copytree", real_copytree)
    restored = tmp_path / "restored"
    assert ours.restore(["a"], 0, restored) is not None
    assert (restored / "adapter" / "w.bin").read_text() == "the same weights"
    entry = ours._entry(["a"], 0)
    assert sorted(p.name for p in entry.parent.iterdir()) == [entry.name]  # no half copy left beside it


def test_a_killed_runs_half_copy_goes_once_old_and_another_runs_at_work_stays(tmp_path: Path) -> None:
    """Each run writes its own ``<entry>.<pid>-<random>.partial``: one a killed run left is
    deleted by the next store of that entry once an hour old; a younger one may be another
    project's run writing it now (a cache folder projects share), and is left alone."""
    cache = _cache(tmp_path)
    entry = cache._entry(["a"], 0)
    old, young = (entry.with_name(f"{entry.name}.{pid}-0000abcd.partial") for pid in (11, 12))
    legacy = entry.with_name(f"{entry.name}.partial")
    for leftover in (old, young, legacy):
        (leftover / "adapter").mkdir(parents=True)
    for stale in (old, legacy):
        os.utime(stale, (0, 0))
    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "w.bin").write_text("w")
    cache.store(["a"], 0, run_dir, {"subset": ["a"]})
    assert sorted(p.name for p in entry.parent.iterdir()) == sorted([entry.name, young.name])
