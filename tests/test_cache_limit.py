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


def test_a_run_keeps_the_caches_within_the_limit(tiny_project: Path) -> None:
    run_project(tiny_project)
    project = Project(tiny_project)
    before = {p.name for p in (project.state_dir / "cache" / "finetune").iterdir()}
    assert before
    limit = ["project.cache_limit_gb=0.000000001"]  # one byte: only what this run used stays
    run_project(tiny_project, overrides=["finetune.steps=3", *limit])
    after = {p.name for p in (project.state_dir / "cache" / "finetune").iterdir()}
    assert after and not (after & before)  # the first run's fine-tunes (not used by this run) are gone
    evaluated = list((project.state_dir / "cache" / "evaluate").iterdir())
    assert len(evaluated) == len(after)  # the first run's test results too
