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
from subsetctl.filehash import file_fingerprint, tree_fingerprint
from subsetctl.spec import HuggingFaceLoader, SourceSpec


def _version(distribution: str) -> str | None:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


def source_fingerprint_inputs(source: SourceSpec, spec_dir: Path) -> dict[str, Any]:
    """What a source's data depends on besides its spec: local data files (size and
    sha256, so editing one makes the data stage stale; modification times are left out
    so that copying a project or touching a file does not) and, for generated or
    packaged data, the version of the package that produces it. File hashes are cached
    in the project (see :mod:`subsetctl.filehash`)."""
    loader = source.loader
    spec_dir = Path(spec_dir)
    if loader.type in ("jsonl", "csv", "parquet"):
        return {"file": file_fingerprint(resolve_path(loader.path, spec_dir), spec_dir)}
    if isinstance(loader, HuggingFaceLoader):
        out: dict[str, Any] = {"datasets": _version("datasets")}
        local = resolve_path(loader.path, spec_dir)
        if local.exists():
            out["path"] = tree_fingerprint(local, spec_dir)
        if loader.data_files:
            out["data_files"] = [
                tree_fingerprint(resolve_path(f, spec_dir), spec_dir) if resolve_path(f, spec_dir).exists() else f
                for f in loader.data_files
            ]
        return out
    if loader.type == "reasoning_gym":
        return {"reasoning_gym": _version("reasoning-gym") or _version("reasoning_gym")}
    if loader.type == "evals":
        data_dir = evals_data_dir()
        return {"evals": _version("evals"), "installed": data_dir is not None}
    return {}
