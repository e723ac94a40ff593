"""Shared helpers for the benchmark scripts: a work copy of the quickstart project."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart"


def work_project(name: str, fresh: bool = False, reuse_quickstart: bool = True) -> Path:
    """A copy of the quickstart spec in benchmarks/_work/<name> (state kept between runs
    unless ``fresh``), so benchmarks never touch the example's own state.

    With ``reuse_quickstart``, the finished data / meta_init / gradients stages of
    examples/quickstart are copied in when the work folder has none: they are valid as
    long as the spec slices match (the pipeline re-checks fingerprints and checksums)."""
    folder = work_dir() / name
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(QUICKSTART / "subsetctl.yaml", folder / "subsetctl.yaml")
    if reuse_quickstart:
        for stage in ("data", "meta_init", "gradients"):
            source = QUICKSTART / ".subsetctl" / stage
            target = folder / ".subsetctl" / stage
            if (source / "manifest.json").is_file() and not target.exists():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints"))
    return folder


def fresh_work_dir(name: str) -> Path:
    """benchmarks/_work/<name>, an earlier invocation's folder deleted (not created again):
    its project's stages would not run, and their times would be old."""
    folder = work_dir() / name
    if folder.exists():
        shutil.rmtree(folder)
    return folder


def revision_before(message: str) -> str:
    """The git revision before the last commit of this checkout whose message says
    ``message`` (found by its message: hashes change on a rebase): the old code of an
    old-against-new benchmark; exits saying to give ``--old REV`` when there is none."""
    import subprocess

    found = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%H", "--fixed-strings", f"--grep={message}"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if not found:
        raise SystemExit(f"No commit of this checkout says {message!r}: give the old code with --old REV.")
    return f"{found}^"


def old_against_new_arguments(description: str | None, sources: int, rows: int,
                              more: Callable[[argparse.ArgumentParser], object] | None = None) -> argparse.Namespace:
    """The command line of a benchmark of a project of many sources, timed with this checkout's
    code against an old revision's: ``--sources``, ``--rows`` (examples per source),
    ``--repeats`` and ``--old`` (the old code's git revision; None: the script's default), and
    what ``more`` adds to the parser."""
    parser = argparse.ArgumentParser(description=description)
    if more is not None:
        more(parser)
    parser.add_argument("--sources", type=int, default=sources)
    parser.add_argument("--rows", type=int, default=rows, help="examples per source")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old", help="git revision of the old code (default: the one before the change)")
    return parser.parse_args()


def without_rough_times(text: str) -> str:
    """``plan``'s output without its rough times before a stage's first run ("; about 40 s, a
    rough guess ... a GPU far less"): they follow the load of the moment and differ between
    subsetctl versions, so an old-against-new comparison of what plan says leaves them out."""
    import re

    return re.sub(r"; about [^;]*, a rough guess before its first run: .*?(?=; about \S+ \S*B of memory|$)", "", text,
                  flags=re.MULTILINE)  # (up to the memory estimate or the line's end: its words differ by version)


@contextlib.contextmanager
def old_worktree(revision: str) -> Iterator[Path]:
    """The code of ``revision`` checked out in a temporary git worktree (removed after): the
    old side of an old-against-new benchmark, run with it on PYTHONPATH."""
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), revision], check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def stored_masks(store: Any) -> tuple[Any, int]:
    """The packed masks a :class:`~subsetctl.estimate.results.SubsetResultsStore` holds, one
    row a subset, and the bytes they take in memory, whatever the code measured keeps them as
    (before store format 3: one packed array; since, most as changes of one source)."""
    rows = store._rows
    if hasattr(rows, "masks"):
        return store._index._take(np.arange(rows.count)), int(rows.masks.nbytes)
    return rows["packed_masks"], int(rows["packed_masks"].nbytes)


@contextlib.contextmanager
def forward_search(n: int, steps: int, loss_of: Callable[[np.ndarray, np.ndarray], np.ndarray]
                   ) -> Iterator[tuple[Any, dict[str, Any], Any, float, float]]:
    """``forward`` for ``steps`` steps over ``n`` sources as the search stage runs it (through a
    :class:`~subsetctl.estimate.results.CachedEstimator`, chunks of 256, sequential, a fresh
    results store), with a free estimator: ``loss_of(masks, effects)`` of each source's effect
    (all positive: every step adds a source), so that what is measured is the search's own work.
    Yields the strategy's result, its record (selections.json's, trace cut to 10,000), the
    store (its folder is deleted after), the search's seconds and the process's peak RSS in MB."""
    import resource
    import time

    from subsetctl.estimate.base import EstimateBatch, SubsetEstimator
    from subsetctl.estimate.results import CachedEstimator, SubsetResultsStore
    from subsetctl.search.base import SearchContext, run_strategy

    class Free(SubsetEstimator):
        def __init__(self) -> None:
            self.effects = np.random.default_rng(0).uniform(0.1, 1.0, n) / n
            self._sources = [f"source_{i:05d}" for i in range(n)]

        @property
        def sources(self) -> list[str]:
            return self._sources

        def estimate(self, masks: np.ndarray) -> EstimateBatch:
            m = len(masks)
            return EstimateBatch(loss_of(masks, self.effects), np.zeros(m), np.zeros(m, dtype=int),
                                 np.ones(m, dtype=bool))

    with tempfile.TemporaryDirectory() as folder:
        estimator = Free()
        store = SubsetResultsStore(Path(folder) / "store", estimator.sources, "bench")
        cached = CachedEstimator(estimator, store, {"backend": "sequential"}, chunk_size=256)
        started = time.perf_counter()
        result = run_strategy("forward", cached, SearchContext(sources=list(estimator.sources)), {"max_steps": steps})
        record = result.to_dict(trace_limit=10_000)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        yield result, record, store, seconds, peak


def work_dir() -> Path:
    """benchmarks/_work (git-ignored), or ``$SUBSETCTL_BENCH_DIR``."""
    return Path(os.environ.get("SUBSETCTL_BENCH_DIR", ROOT / "benchmarks" / "_work"))


#: the overrides a fidelity run was made with, in its work folder (fidelity.py writes it)
OVERRIDES_FILE = "fidelity_overrides.json"


def fidelity_overrides(folder: Path) -> list[str]:
    """The overrides ``python benchmarks/fidelity.py`` ran ``folder``'s project with (its
    defaults and the command line's), so that a script reading the run loads the same spec
    (model, meta-init, verify budgets). A run made before they were recorded: the verify
    settings from its resolved spec only."""
    import json

    recorded = folder / OVERRIDES_FILE
    if recorded.is_file():
        return list(json.loads(recorded.read_text()))
    from subsetctl.project import Project

    resolved = Project(folder).resolved_spec("verify")
    assert resolved is not None, f"{folder}: no verify results"
    v = resolved["verify"]
    return ["verify.enabled=true", f"verify.k={v['k']}", f"verify.steps={v['steps']}",
            f"verify.batch_size={v['batch_size']}", f"verify.lr_ce={v['lr_ce']}"]


def fidelity_project(name: str = "fidelity") -> Path:
    """The project a finished ``python benchmarks/fidelity.py [--name NAME]`` run left, for
    the scripts that read it; exits with what to run first when there is none."""
    folder = work_dir() / name
    if not (folder / ".subsetctl" / "calibrate" / "calibration.json").is_file():
        command = "python benchmarks/fidelity.py" + ("" if name == "fidelity" else f" --name {name}")
        raise SystemExit(f"{folder} holds no finished fidelity run: run `{command}` first.")
    return folder


def stage_seconds(folder: Path) -> dict[str, float]:
    from subsetctl.project import Project

    project = Project(folder)
    out = {}
    for stage in ("data", "meta_init", "gradients", "verify", "calibrate", "search", "finetune", "evaluate", "report"):
        manifest = project.read_manifest(stage)
        if manifest and "seconds" in manifest:
            out[stage] = float(manifest["seconds"])
    return out


def timed_subsetctl(code: Path, *args: str, cwd: Path | None = None,
                    env: dict[str, str] | None = None) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds, CPU seconds (user + system: on cores shared with other work they swing
    less than the wall ones) and the finished process of ``python -P -m subsetctl ARGS`` run
    in a fresh process with the package in ``code`` (``env`` added to this one's)."""
    import resource
    import time

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-P", "-m", "subsetctl", *args], check=False, capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **(env or {}), "PYTHONPATH": str(code)})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done


def checked_subsetctl(code: Path, *args: str, cwd: Path | None = None) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds and stdout of ``python -P -m subsetctl ARGS`` run as
    :func:`timed_subsetctl` runs it, 120 columns wide (what it prints is compared across the
    two codes, and wraps the same whatever the terminal); a non-zero exit stops the benchmark
    with the command, the code it ran and its output."""
    wall, cpu, done = timed_subsetctl(code, *args, cwd=cwd, env={"COLUMNS": "120"})
    if done.returncode != 0:
        raise SystemExit(f"subsetctl {' '.join(args)} ({code}) exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return wall, cpu, done.stdout


def keep_best(best: dict[str, list[float]], key: str, wall: float, cpu: float) -> None:
    """``best[key]``: ``[wall, cpu]``, the least wall and the least CPU seconds of the repeats so
    far, each its own minimum (on shared cores the two need not come from the same repeat)."""
    kept = best.setdefault(key, [wall, cpu])
    best[key] = [min(wall, kept[0]), min(cpu, kept[1])]


def child_json(code: Path, script: str, *args: object, what: str, cwd: Path | None = None) -> Any:
    """The JSON its last line prints of the Python ``script`` (``python -P -c script args``) run
    in a fresh process with the package in ``code`` (this checkout, or a worktree of the old
    code): one side of an old-against-new benchmark. ``what`` names the work in the message a
    failed run stops the benchmark with."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, "-P", "-c", script, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{what} with {code} failed (exit {done.returncode}):\n{done.stdout}{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def case_in_child(script: str, code: Path, n: int, steps: int) -> dict[str, Any]:
    """The benchmark ``script``'s case of ``n`` sources and ``steps`` steps (``script --child n
    --steps steps``) in a fresh process running the package in ``code`` (this checkout, or a
    worktree of the old code): the JSON object its last line prints. Its own process, so that
    each case's peak RSS is its own."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, script, "--child", str(n), "--steps", str(steps)],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the case of {n} sources ({code}) exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
