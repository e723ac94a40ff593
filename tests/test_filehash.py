"""File fingerprints follow content, and a file is hashed again only when it changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from subsetctl import filehash
from subsetctl.filehash import file_fingerprint, tree_fingerprint


@pytest.fixture(autouse=True)
def _fresh_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filehash, "_CACHES", {})


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    hashed: list[Path] = []
    real = filehash.sha256_file

    def counting(path: Path, *args: object) -> str:
        hashed.append(path)
        return real(path, *args)

    monkeypatch.setattr(filehash, "sha256_file", counting)
    return hashed


def test_unchanged_files_are_not_hashed_again_even_in_a_new_process(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / ".subsetctl").mkdir()
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "weights.bin").write_bytes(b"\0" * 1000)
    hashed = _count_hashes(monkeypatch)
    first = tree_fingerprint(folder, tmp_path)
    assert len(hashed) == 2 and set(first["files"]) == {"config.json", "weights.bin"}
    filehash.flush_hash_caches()  # at exit
    monkeypatch.setattr(filehash, "_CACHES", {})  # as a new process: the cache comes from disk
    assert tree_fingerprint(folder, tmp_path) == first and len(hashed) == 2
    assert (tmp_path / ".subsetctl" / "cache" / "file_hashes.json").is_file()

    (folder / "weights.bin").write_bytes(b"\1" * 1000)  # same size, new content
    changed = tree_fingerprint(folder, tmp_path)
    assert len(hashed) == 3 and changed["files"]["weights.bin"] != first["files"]["weights.bin"]
    assert changed["files"]["config.json"] == first["files"]["config.json"]


def test_a_project_that_never_ran_gets_no_state_folder(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text("{}\n")
    assert file_fingerprint(tmp_path / "data.jsonl", tmp_path)["size"] == 3
    assert not (tmp_path / ".subsetctl").exists()
    assert file_fingerprint(tmp_path / "missing.jsonl", tmp_path) == {"missing": True}


def test_a_damaged_cache_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / ".subsetctl" / "cache").mkdir(parents=True)
    (tmp_path / ".subsetctl" / "cache" / "file_hashes.json").write_text("{not json")
    (tmp_path / "f.txt").write_text("abc")
    fp = file_fingerprint(tmp_path / "f.txt", tmp_path)
    assert fp["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    filehash.flush_hash_caches()
    assert json.loads((tmp_path / ".subsetctl" / "cache" / "file_hashes.json").read_text())


def test_the_cache_is_written_once_per_command_not_once_per_file(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / ".subsetctl").mkdir()
    for i in range(50):
        (tmp_path / f"s{i}.jsonl").write_text("{}\n")
    writes: list[Path] = []
    monkeypatch.setattr(filehash, "atomic_write_json", lambda path, data: writes.append(path))
    for i in range(50):
        file_fingerprint(tmp_path / f"s{i}.jsonl", tmp_path)
    assert writes == []
    filehash.flush_hash_caches()
    filehash.flush_hash_caches()  # nothing new: no second write
    assert len(writes) == 1


def test_a_rewrite_with_its_old_mtime_put_back_is_still_seen(tmp_path: Path, monkeypatch) -> None:
    import os

    path = tmp_path / "w.bin"
    path.write_bytes(b"\0" * 100)
    first = file_fingerprint(path, tmp_path)["sha256"]
    stat = path.stat()
    path.write_bytes(b"\1" * 100)  # same size, as `cp -p` over it would leave it
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_fingerprint(path, tmp_path)["sha256"] != first


def test_files_since_deleted_leave_the_cache(tmp_path: Path, monkeypatch) -> None:
    """file_hashes.json kept the entry of every file the project ever read (a replaced
    model folder's thousands of shards, old data files), growing without end."""
    (tmp_path / ".subsetctl").mkdir()
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text("{}\n")
    file_fingerprint(old, tmp_path)
    filehash.flush_hash_caches()
    old.unlink()
    new.write_text("{}\n")
    monkeypatch.setattr(filehash, "_CACHES", {})  # the next command
    file_fingerprint(new, tmp_path)
    filehash.flush_hash_caches()
    kept = json.loads((tmp_path / ".subsetctl" / "cache" / "file_hashes.json").read_text())
    assert list(kept) == [str(new.resolve())]


def test_the_cache_keys_files_by_their_resolved_path_through_linked_folders_and_links(tmp_path: Path) -> None:
    """Each folder is resolved once (not each file's path): the keys stay the resolved paths a
    cache written before has, for a file under a linked folder, under `..`, or itself a link."""
    (tmp_path / ".subsetctl").mkdir()
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.jsonl").write_text("{}\n")
    (real / "b.jsonl").write_text("{}\n{}\n")
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    (tmp_path / "c.jsonl").symlink_to(real / "b.jsonl")
    for path in (tmp_path / "linked" / "a.jsonl", tmp_path / "linked" / ".." / "real" / "b.jsonl",
                 tmp_path / "c.jsonl"):
        assert file_fingerprint(path, tmp_path)["size"] == path.stat().st_size
    filehash.flush_hash_caches()
    keys = json.loads((tmp_path / ".subsetctl" / "cache" / "file_hashes.json").read_text())
    assert sorted(keys) == [str((real / "a.jsonl").resolve()), str((real / "b.jsonl").resolve())]
    assert file_fingerprint(tmp_path / "linked", tmp_path) == {"missing": True}  # a folder is no file


def test_two_processes_sharing_the_cache_keep_each_others_entries(tmp_path: Path, monkeypatch) -> None:
    """Projects whose cache/ links to one folder (or a plan beside a run) each write the cache at
    exit: the last writer kept its own entries alone, and the other hashed its files again."""
    (tmp_path / ".subsetctl").mkdir()
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(b"a")
    second.write_bytes(b"b")
    one = filehash.HashCache(tmp_path)  # both read the (empty) cache before either writes
    other = filehash.HashCache(tmp_path)
    one.sha256(first)
    other.sha256(second)
    one.flush()
    other.flush()
    kept = json.loads((tmp_path / ".subsetctl" / "cache" / "file_hashes.json").read_text())
    assert set(kept) == {str(first.resolve()), str(second.resolve())}


def test_entries_not_looked_up_for_a_month_leave_the_cache(tmp_path: Path, monkeypatch) -> None:
    """An earlier copy of a project whose files still exist (`cp -a`) kept its entries for good."""
    (tmp_path / ".subsetctl").mkdir()
    old, new = tmp_path / "old.bin", tmp_path / "new.bin"
    old.write_bytes(b"o")
    new.write_bytes(b"n")
    day = filehash._today()
    monkeypatch.setattr(filehash, "_today", lambda: day - filehash.UNUSED_DAYS - 1)
    file_fingerprint(old, tmp_path)
    filehash.flush_hash_caches()
    monkeypatch.setattr(filehash, "_today", lambda: day)
    monkeypatch.setattr(filehash, "_CACHES", {})
    file_fingerprint(new, tmp_path)
    filehash.flush_hash_caches()
    kept = json.loads((tmp_path / ".subsetctl" / "cache" / "file_hashes.json").read_text())
    assert set(kept) == {str(new.resolve())}
    monkeypatch.setattr(filehash, "MAX_ENTRIES", 1)  # and beyond the cap, the oldest-used go first
    monkeypatch.setattr(filehash, "_today", lambda: day + 1)
    cache = filehash.HashCache(tmp_path)
    cache.sha256(old)
    cache.flush()
    kept = json.loads((tmp_path / ".subsetctl" / "cache" / "file_hashes.json").read_text())
    assert set(kept) == {str(old.resolve())}


def test_a_base_class_file_edited_after_it_was_loaded_is_named(tmp_path: Path, monkeypatch) -> None:
    """A notebook ran a project with a plugin estimator whose ``estimate`` it inherits from a
    sibling module, then edited that module: the base class's fingerprint counts (so the
    results stay recorded as the loaded code's), but the warning that the old code still
    runs looked at the subclass's file alone and said nothing."""
    import sys

    from subsetctl.filehash import base_class_code_fingerprints, code_edited_since_loaded

    (tmp_path / "edited_base.py").write_text("class Base:\n    def estimate(self, masks):\n        return 1\n")
    (tmp_path / "edited_sub.py").write_text("from edited_base import Base\n\n\nclass Sub(Base):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        from edited_sub import Sub

        assert base_class_code_fingerprints(Sub) is not None  # as a stage's fingerprint takes it
        assert code_edited_since_loaded([Sub]) == []
        (tmp_path / "edited_base.py").write_text("class Base:\n    def estimate(self, masks):\n        return 2\n")
        assert code_edited_since_loaded([Sub]) == [tmp_path / "edited_base.py"]
    finally:
        for name in ("edited_base", "edited_sub"):
            sys.modules.pop(name, None)


def test_a_base_class_in_another_module_of_a_package_too_big_to_digest_is_fingerprinted(
        tmp_path: Path, monkeypatch) -> None:
    """A plugin class in a package of more than PACKAGE_FILES_LIMIT files (a large research
    codebase), inheriting its ``estimate`` from another module of that package: the package
    digest is not taken there, and the base class was left out as "covered by it", so
    editing the base module left the stages using the plugin "up to date". A base in the
    plugin's own module is still left to that module's fingerprint."""
    import sys

    from subsetctl.filehash import PACKAGE_FILES_LIMIT, base_class_code_fingerprints, package_code_fingerprint

    package = tmp_path / "bigcodebase"
    package.mkdir()
    for i in range(PACKAGE_FILES_LIMIT + 1):
        (package / f"filler_{i}.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text("class Base:\n    def estimate(self, masks):\n        return 1\n")
    (package / "est.py").write_text("from bigcodebase.base import Base\n\n\nclass Local(Base):\n    pass\n\n\n"
                                    "class Tuned(Local):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        from bigcodebase.est import Tuned

        assert package_code_fingerprint(Tuned) is None  # too many files: not digested
        assert set(base_class_code_fingerprints(Tuned) or {}) == {"bigcodebase.base.Base"}
    finally:
        for name in ("bigcodebase", "bigcodebase.base", "bigcodebase.est"):
            sys.modules.pop(name, None)
        filehash._PACKAGE_AS_LOADED.pop("bigcodebase", None)
