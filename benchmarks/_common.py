"""Shared helpers for the benchmark scripts: a work copy of the quickstart project."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart"


def work_project(name: str, fresh: bool = False, reuse_quickstart: bool = True) -> Path:
    """A copy of the quickstart spec in benchmarks/_work/<name> (state kept between runs
    unless ``fresh``), so benchmarks never touch the example's own state.

    With ``reuse_quickstart``, the finished data / meta_init / gradients stages of
    examples/quickstart are copied in when the work folder has none: they are valid as
    long as the spec slices match (the pipeline re-checks fingerprints and checksums)."""
    folder = Path(os.environ.get("SUBSETCTL_BENCH_DIR", ROOT / "benchmarks" / "_work")) / name
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


def stage_seconds(folder: Path) -> dict[str, float]:
    from subsetctl.project import Project

    project = Project(folder)
    out = {}
    for stage in ("data", "meta_init", "gradients", "verify", "calibrate", "search", "finetune", "evaluate", "report"):
        manifest = project.read_manifest(stage)
        if manifest and "seconds" in manifest:
            out[stage] = float(manifest["seconds"])
    return out
