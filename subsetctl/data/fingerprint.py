"""What a source's prepared data depends on besides its spec slice: local file digests and
the versions of the packages that generate data. The data stage's fingerprint includes
these, so editing a data file or upgrading a generator makes the stage stale.

Kept apart from the data stage itself so that planning and validating (which compute
fingerprints) do not import ``datasets``.
"""

from __future__ import annotations

from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from subsetctl.data.loaders import evals_data_dir, resolve_path
from subsetctl.project import sha256_file
from subsetctl.spec import HuggingFaceLoader, SourceSpec


def _file_fingerprint(path: Path) -> dict[str, Any]:
    """Size and sha256 of a local file, or that it is missing. The path itself is left
    out (the spec slice holds it, relative to the spec), so a moved project stays valid."""
    if not path.is_file():
        return {"missing": True}
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def _tree_fingerprint(path: Path) -> dict[str, Any]:
    """A file's fingerprint, or the fingerprints of every file under a folder."""
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and ".cache" not in p.relative_to(path).parts
        )
        return {
            "files": {p.relative_to(path).as_posix(): _file_fingerprint(p) for p in files},
        }
    return _file_fingerprint(path)


def _version(distribution: str) -> str | None:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


def source_fingerprint_inputs(source: SourceSpec, spec_dir: Path) -> dict[str, Any]:
    """What a source's data depends on besides its spec: local data files (size and
    sha256, so editing one makes the data stage stale; modification times are left out
    so that copying a project or touching a file does not) and, for generated or
    packaged data, the version of the package that produces it."""
    loader = source.loader
    spec_dir = Path(spec_dir)
    if loader.type in ("jsonl", "csv", "parquet"):
        return {"file": _file_fingerprint(resolve_path(loader.path, spec_dir))}
    if isinstance(loader, HuggingFaceLoader):
        out: dict[str, Any] = {"datasets": _version("datasets")}
        local = resolve_path(loader.path, spec_dir)
        if local.exists():
            out["path"] = _tree_fingerprint(local)
        if loader.data_files:
            out["data_files"] = [
                _tree_fingerprint(resolve_path(f, spec_dir)) if resolve_path(f, spec_dir).exists() else f
                for f in loader.data_files
            ]
        return out
    if loader.type == "reasoning_gym":
        return {"reasoning_gym": _version("reasoning-gym") or _version("reasoning_gym")}
    if loader.type == "evals":
        data_dir = evals_data_dir()
        return {"evals": _version("evals"), "installed": data_dir is not None}
    return {}
