"""What the sdist and the wheel built from this checkout hold: users install a wheel, not an
editable checkout, so a file the code reads at run time but the wheel leaves out fails only
for them, and an sdist without the tests' helpers cannot run its own tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from subsetctl import __version__

pytestmark = pytest.mark.slow  # two setuptools builds: about 10 s

ROOT = Path(__file__).resolve().parents[1]
BUMPED = f"{__version__}.dev7"  # the copy's version, to tell it from this checkout's
# a checkout's own scratch (and what building writes), left out of the copy that is built
_NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", ".subsetctl", "_work",
                                     ".hypothesis", ".pytest_cache", ".ruff_cache", "report*", "plots")


class Built(NamedTuple):
    """What :func:`built` gives: the copy built, the names in each archive, the wheel's
    METADATA and what the builds wrote to stderr (setuptools' warnings)."""

    copy: Path
    in_sdist: set[str]
    in_wheel: set[str]
    metadata: str
    warnings: str


@pytest.fixture(scope="module")
def built(made_once_per_run: Callable[[str, Callable[[Path], object]], Path]) -> Built:
    """What :func:`_build_both` made, once for the whole test run (one for all pytest-xdist
    workers; each worker used to build both archives again): the tests only read it."""
    folder = made_once_per_run("packaging-built", _build_both)
    found = json.loads((folder / "built.json").read_text(encoding="utf-8"))
    return Built(folder / "subsetctl", set(found["in_sdist"]), set(found["in_wheel"]), found["metadata"],
                 found["warnings"])


def _build_both(folder: Path) -> None:
    """A copy of the checkout in ``folder``, its ``__version__`` bumped to ``BUMPED``, with the
    litter a working checkout has (compiled files, an example's run, benchmark scratch); in
    ``folder``'s built.json, the names in the sdist (its top folder left off) and in the wheel
    built from it by setuptools, as ``python -m build`` does, the wheel's METADATA and what
    the builds wrote to stderr."""
    copy = folder / "subsetctl"
    shutil.copytree(ROOT, copy, ignore=_NOT_COPIED)
    for litter in ("tests/__pycache__/conftest.cpython-311.pyc", "subsetctl/__pycache__/cli.cpython-311.pyc",
                   "examples/quickstart/.subsetctl/state.json", "benchmarks/_work/result.json"):
        (copy / litter).parent.mkdir(parents=True, exist_ok=True)
        (copy / litter).write_text("{}")
    init = copy / "subsetctl" / "__init__.py"  # a release bumps __version__, and only it
    init.write_text(init.read_text(encoding="utf-8").replace(f'"{__version__}"', f'"{BUMPED}"'), encoding="utf-8")
    out = copy.parent / "dist"
    sdist_name, sdist_warnings = _build("sdist", copy, out)
    with tarfile.open(out / sdist_name) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        sdist.extractall(out / "unpacked", filter="data")
    # the wheel from the unpacked sdist, as `python -m build` makes it
    wheel_name, wheel_warnings = _build("wheel", next((out / "unpacked").iterdir()), out)
    with zipfile.ZipFile(out / wheel_name) as wheel:
        in_wheel = set(wheel.namelist())
        metadata = wheel.read(next(name for name in in_wheel if name.endswith(".dist-info/METADATA"))).decode()
    found = {"in_sdist": sorted(in_sdist), "in_wheel": sorted(in_wheel), "metadata": metadata,
             "warnings": sdist_warnings + wheel_warnings}
    (folder / "built.json").write_text(json.dumps(found), encoding="utf-8")


def _build(kind: str, source: Path, out: Path) -> tuple[str, str]:
    """Build ``kind`` (sdist or wheel) of ``source`` into ``out`` with setuptools' PEP 517
    backend, in a process of its own (a second build in the same process left no wheel).
    Returns the archive's name and what the build wrote to stderr."""
    code = f"import sys; from setuptools import build_meta; print('built:', build_meta.build_{kind}(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=source, capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.rsplit("built:", 1)[1].strip(), done.stderr


def _files(folder: Path, root: Path) -> set[str]:
    """The files under ``folder``, relative to ``root``, compiled files left out."""
    return {p.relative_to(root).as_posix() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_the_sdist_holds_the_tests_their_helpers_and_the_specs_readme_names(built) -> None:
    """The sdist had 25 of the test files (setuptools' default: tests/test*.py) and none of
    conftest.py, tinymodels.py or the test subfolders they need, nor CHANGELOG.md, the
    quickstart example or the reference specs in specs/."""
    copy, in_sdist = built.copy, built.in_sdist
    wanted = _files(copy / "tests", copy) | _files(copy / "subsetctl", copy) | _files(copy / "specs", copy)
    wanted |= {"README.md", "CHANGELOG.md", "pyproject.toml", "MANIFEST.in", "examples/quickstart/subsetctl.yaml"}
    assert sorted(wanted - in_sdist) == []


def test_the_sdist_leaves_out_ci_scratch_and_compiled_files(built) -> None:
    shipped_litter = [name for name in built.in_sdist
                      if name.startswith((".ci/", "benchmarks/_work/", "examples/quickstart/.subsetctl/"))
                      or "__pycache__" in name or name.endswith(".pyc")]
    assert shipped_litter == []


def test_the_wheel_holds_every_file_of_the_package_and_the_console_script(built) -> None:
    """Templates `init` copies and each module: a file under subsetctl/ the wheel leaves out
    is read at run time from a checkout only."""
    copy, in_wheel = built.copy, built.in_wheel
    assert sorted(_files(copy / "subsetctl", copy) - in_wheel) == []
    assert [name for name in in_wheel if not name.startswith(("subsetctl/", "subsetctl-"))] == []
    entry_points = next(name for name in in_wheel if name.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(next((copy.parent / "dist").glob("*.whl"))) as wheel:
        assert "subsetctl = subsetctl.__main__:command" in wheel.read(entry_points).decode()


def test_the_license_is_an_spdx_expression_shipped_with_its_text(built) -> None:
    """pyproject's `license = { text = ... }` table made setuptools warn that it is deprecated
    (an error from 2027 on), and no LICENSE text was shipped, though Apache-2.0 asks for it."""
    assert "License-Expression: Apache-2.0" in built.metadata.splitlines()
    assert "LICENSE" in built.in_sdist
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in built.in_wheel)
    assert "deprecated" not in built.warnings.lower(), built.warnings


def test_the_built_version_is_the_one_subsetctl_version_prints(built) -> None:
    """pyproject.toml and subsetctl/__init__.py each wrote the version: a release that bumped
    one built a wheel whose `subsetctl --version` disagreed with its name and metadata."""
    assert f"Version: {BUMPED}" in built.metadata.splitlines()
    assert f"subsetctl-{BUMPED}.dist-info/METADATA" in built.in_wheel


def test_the_wheel_marks_the_package_as_typed(built) -> None:
    """README documents subsetctl.api for scripts and notebooks, and its functions have type
    hints, but without a py.typed marker (PEP 561) mypy and pyright ignored them and
    reported "missing library stubs" for an installed subsetctl."""
    assert "subsetctl/py.typed" in built.in_wheel
