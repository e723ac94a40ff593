"""Plugin packages written into a test's folder, as a plugin author lays them out."""

from __future__ import annotations

from pathlib import Path


def write_package(parent: Path, name: str, modules: dict[str, str]) -> Path:
    """The package ``parent/name`` (an empty ``__init__.py``) with a module per entry of
    ``modules`` (module name -> its source); returns the package's folder."""
    package = parent / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, source in modules.items():
        (package / f"{module}.py").write_text(source)
    return package
