"""project.cache_limit_gb: after a run, the least recently used cache entries go first,
never those the run used or wrote."""

from __future__ import annotations

import os
import time
from pathlib import Path

from subsetctl.api import run_project
from subsetctl.project import Project


def _entry(folder: Path, name: str, size: int, age_s: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"x" * size)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def test_the_least_recently_used_entries_go_first(tmp_path: Path) -> None:
    project = Project(tmp_path)
    cache = project.state_dir / "cache"
    old = _entry(cache / "evaluate", "old.json", 400, 300)
    used = _entry(cache / "verify", "used.json", 400, 200)
    adapter = cache / "finetune" / "abc"
    _entry(adapter / "adapter", "weights.bin", 400, 100)
    os.utime(adapter, (time.time() - 100, time.time() - 100))
    fresh = _entry(cache / "search", "fresh.json", 400, 0)
    removed, freed = project.prune_caches(limit_bytes=900, keep_since_ns=time.time_ns() - 10**9)
    assert (removed, freed) == (2, 800) and not old.exists() and not used.exists()
    assert adapter.is_dir() and fresh.exists()
    # what this run used is kept even over the limit
    removed, _ = project.prune_caches(limit_bytes=0, keep_since_ns=time.time_ns() - 200 * 10**9)
    assert removed == 0 and adapter.is_dir() and fresh.exists()


def test_an_entry_that_could_not_be_deleted_is_not_counted(tmp_path: Path, monkeypatch) -> None:
    """In a project folder a team shares, another user's cache entries (folders made under
    umask 022) cannot be deleted: the run still said "caches: deleted 2 entries (800 B)" of
    entries left as they were."""
    import shutil

    project = Project(tmp_path)
    cache = project.state_dir / "cache"
    theirs = cache / "finetune" / "theirs"
    _entry(theirs / "adapter", "weights.bin", 400, 300)
    os.utime(theirs, (time.time() - 300, time.time() - 300))
    mine = _entry(cache / "evaluate", "mine.json", 400, 200)
    real_rmtree = shutil.rmtree
    monkeypatch.setattr(shutil, "rmtree", lambda path, ignore_errors=False, **kw: None if Path(path) == theirs
                        else real_rmtree(path, ignore_errors=ignore_errors, **kw))  # (root deletes anything)
    assert project.prune_caches(limit_bytes=0, keep_since_ns=time.time_ns() - 10**9) == (1, 400)
    assert theirs.is_dir() and not mine.exists()


def test_a_run_keeps_the_caches_within_the_limit(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran()  # a copy of a whole run, its caches with it
    project = Project(tiny_project)
    before = {p.name for p in (project.state_dir / "cache" / "finetune").iterdir()}
    assert before
    an_hour_ago = time.time() - 3600  # the first run was a while ago
    for entry in (project.state_dir / "cache").glob("*/*"):
        os.utime(entry, (an_hour_ago, an_hour_ago))
    limit = ["project.cache_limit_gb=0.000000001"]  # one byte: only what this run used stays
    run_project(tiny_project, overrides=["finetune.steps=3", *limit])
    after = {p.name for p in (project.state_dir / "cache" / "finetune").iterdir()}
    assert after and not (after & before)  # the first run's fine-tunes (not used by this run) are gone
    evaluated = list((project.state_dir / "cache" / "evaluate").iterdir())
    assert len(evaluated) == len(after)  # the first run's test results too


def test_an_entry_used_right_after_the_run_started_is_kept(tmp_path: Path) -> None:
    """The run's start came from the process clock, which runs ahead of the file system's
    (a coarse kernel clock; a file server): entries used just after it looked older and
    were deleted. It comes from a marker file's time now."""
    project = Project(tmp_path)
    entry = _entry(project.state_dir / "cache" / "verify", "used.json", 10, 3600)
    for _ in range(50):
        started = project.cache_clock()
        assert started is not None
        os.utime(entry)  # the run uses it (a cache hit)
        assert project.prune_caches(limit_bytes=0, keep_since_ns=started) == (0, 0)
    assert entry.exists()


def test_half_written_entries_of_a_killed_run_go_once_old_and_another_runs_at_work_stays(tmp_path: Path) -> None:
    """A half-written copy (``*.partial``) an hour older than the run's start is a killed
    run's, and goes; a younger one may be another process's writing it now (a cache folder
    projects share), as finetune's store leaves it: one merely older than the run's start
    was deleted from under it."""
    project = Project(tmp_path)
    old, young = (project.state_dir / "cache" / "finetune" / f"{name}.partial" for name in ("abc", "def"))
    for partial, age in ((old, 7200), (young, 10)):
        _entry(partial / "adapter", "weights.bin", 100, age)
        os.utime(partial, (time.time() - age, time.time() - age))
    project.prune_caches(limit_bytes=10**9, keep_since_ns=time.time_ns() - 10**9)
    assert not old.exists() and young.exists()


def test_an_absurdly_large_limit_is_no_limit(jsonl_project: Path) -> None:
    """1e300 GB passes validation but is infinite in bytes: the trim after the run stopped
    it with an internal error (OverflowError) instead of keeping every entry."""
    entry = _entry(Project(jsonl_project).state_dir / "cache" / "evaluate", "old.json", 10, 3600)
    run_project(jsonl_project, overrides=["project.cache_limit_gb=1e300"], until="data")
    assert entry.exists()


def test_the_trim_says_how_much_it_freed_in_a_unit_that_shows_it(jsonl_project: Path) -> None:
    """A few kB freed read "(0.0 MB)", as if nothing had been."""
    from subsetctl.reporter import SilentReporter

    _entry(Project(jsonl_project).state_dir / "cache" / "evaluate", "old.json", 12_000, 3600)
    reporter = SilentReporter()
    run_project(jsonl_project, overrides=["project.cache_limit_gb=0.000000001"], until="data", reporter=reporter)
    assert any("deleted 1 entry" in m and "(12 kB)" in m for m in reporter.messages)


def test_an_old_entry_replace_dir_left_aside_goes_after_an_hour(tmp_path: Path) -> None:
    """A hidden `.<key>.old-<hex>` folder replace_dir set aside and failed to delete (a race with
    another run; killed between its steps) was never trimmed: hidden, it was skipped for good."""
    project = Project(tmp_path)
    cache = project.state_dir / "cache" / "finetune"
    leftover = cache / ".0123abcd.old-89abcdef"
    _entry(leftover / "adapter", "weights.bin", 100, 10)
    kept = _entry(cache / ".notes", "mine.txt", 10, 10)  # (other hidden files are not the cache's)
    project.prune_caches(limit_bytes=10**9, keep_since_ns=time.time_ns() - 10**9)
    assert leftover.exists()  # set aside just now: the run that did so may be deleting it
    project.prune_caches(limit_bytes=10**9, keep_since_ns=time.time_ns() + 2 * 3600 * 10**9)  # (an hour on)
    assert not leftover.exists() and kept.exists()


def test_an_entry_dated_in_the_future_is_ordered_as_now_but_not_kept_as_this_runs(tmp_path: Path) -> None:
    """After the clock was set back, entries written before were dated in the future: they
    counted as used by this run, so the trim kept them over cache_limit_gb until real time
    caught up (a day's jump: a day of a cache over its limit)."""
    project = Project(tmp_path)
    cache = project.state_dir / "cache"
    old = _entry(cache / "evaluate", "old.json", 400, 3600)
    ahead = _entry(cache / "verify", "ahead.json", 400, -86400)  # dated a day ahead
    started = project.cache_clock()
    assert started is not None
    mine = _entry(cache / "search", "mine.json", 400, 0)  # used by this run
    assert project.prune_caches(limit_bytes=900, keep_since_ns=started) == (1, 400)  # the oldest first
    assert not old.exists() and ahead.exists() and mine.exists()
    assert project.prune_caches(limit_bytes=0, keep_since_ns=started) == (1, 400)
    assert not ahead.exists() and mine.exists()
