"""Shared fixtures: small projects built on local files so tests need no model."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # shared helpers: tests/tinymodels.py


def pytest_configure(config: pytest.Config) -> None:
    """SIGINT raises KeyboardInterrupt in the test processes and in the commands they start, as
    for a command typed at a terminal: a suite started as a background job of a script
    (``pytest ... &``: a non-interactive shell starts it with SIGINT ignored) passed the ignore
    on to every Python it started, and the tests of a Ctrl-C (mid-run, mid-import, as the
    command exits) failed there, then passed run again in the foreground. A background job
    gets no Ctrl-C from its terminal, so nothing it would have had is taken from it."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _registries_as_before() -> object:
    """Plugins a test registers (and built-ins they replace) are gone after it, as they are
    for the next `subsetctl` process: a replaced built-in's warning must not reach other tests."""
    from subsetctl.registry import ALL_REGISTRIES

    for registry in ALL_REGISTRIES.values():
        registry.names()  # the built-ins in first: their modules register them on first import only
    saved = {name: (dict(r._entries), dict(r._replaced)) for name, r in ALL_REGISTRIES.items()}
    yield
    for name, registry in ALL_REGISTRIES.items():
        entries, replaced = saved[name]
        registry._entries.clear()
        registry._entries.update(entries)
        registry._replaced.clear()
        registry._replaced.update(replaced)


@pytest.fixture(autouse=True)
def _plugin_modules_forgotten(tmp_path_factory: pytest.TempPathFactory) -> object:
    """Plugin modules a test imported from its temporary folders are forgotten after it, as
    they are by the next `subsetctl` process: a test restoring one it dropped mid-way (to
    load an edit) put the first version back, for any later test of that module name."""
    before = set(sys.modules)
    yield
    base = tmp_path_factory.getbasetemp().resolve()
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None)
        if isinstance(file, str) and Path(file).resolve().is_relative_to(base):
            del sys.modules[name]


@pytest.fixture(autouse=True)
def _fresh_hub_probe() -> None:
    """Each test probes the hub afresh: a failed probe is remembered for a minute."""
    from subsetctl.hub import forget_unreachable

    forget_unreachable()


@pytest.fixture(autouse=True)
def _notices_given_afresh() -> None:
    """Each test is a new run for the notices said once per run (a head re-initialized, new
    layers): a test calling resolve_model directly, outside a run, left its notice "given"
    for the next test of the same session-wide model folder."""
    resolve = sys.modules.get("subsetctl.modeling.resolve")  # not imported for tests without a model
    if resolve is not None:
        resolve.forget_notices_given()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _write_jsonl_data(folder: Path) -> None:
    write_jsonl(folder / "target.jsonl", [{"prompt": f"{i}+1=", "response": str(i + 1)} for i in range(20)])
    write_jsonl(folder / "a.jsonl", [{"prompt": f"{i}+2=", "response": str(i + 2)} for i in range(10)])
    write_jsonl(folder / "b.jsonl", [{"prompt": f"say {i}", "response": f"{i}"} for i in range(10)])


@pytest.fixture
def jsonl_data_writer():
    """:func:`_write_jsonl_data`, for a test writing the JSONL project's data into a folder of
    its own: `from conftest import` in a test finds whichever conftest.py a whole run
    imported first (tests/search's, tests/modeling's), not this one."""
    return _write_jsonl_data


@pytest.fixture
def jsonl_project(tmp_path: Path) -> Path:
    """A project with a JSONL target and two JSONL sources (no model needed for data)."""
    _write_jsonl_data(tmp_path)
    spec = {
        "project": {"name": "t", "seed": 0},
        "target": {
            "name": "target",
            "loader": {"type": "jsonl", "path": "target.jsonl"},
            "split": {"train": 10, "validation": 5, "test": 5},
        },
        "sources": [
            {"name": "a", "loader": {"type": "jsonl", "path": "a.jsonl"}},
            {"name": "b", "loader": {"type": "jsonl", "path": "b.jsonl"}},
        ],
    }
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return tmp_path


def _made_once_per_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str,
                       make: Callable[[Path], object]) -> Path:
    """A folder ``make(folder)`` filled, made once for the whole test run: under pytest-xdist
    every worker has its own session fixtures, and each built the tiny model and ran the tiny
    project's pipelines again (5-6 runs a worker), so the first worker to ask makes the folder
    in the run's shared temporary folder, under a lock, and the others wait for it and use it
    (pytest-xdist's documented recipe). Without xdist, a new folder of this session's, as any
    session fixture. Tests only read or copy it: a test changing it would change it for
    other workers' tests."""
    if not hasattr(request.config, "workerinput"):  # not an xdist worker (as xdist's `worker_id` tells)
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "made-once-for-all-workers"  # one per run
    shared.mkdir(exist_ok=True)
    folder, made = shared / name, shared / f"{name}.made"
    with FileLock(shared / f"{name}.lock"):
        if not made.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker failing midway left
            folder.mkdir()
            make(folder)
            made.touch()
    return folder


@pytest.fixture(scope="session")
def made_once_per_run(request: pytest.FixtureRequest,
                      tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Callable[[Path], object]], Path]:
    """:func:`_made_once_per_run` for the fixtures of other test files, as a function
    ``(name, make) -> folder``: a module-wide project each pytest-xdist worker built again
    (a pipeline run of its own, seconds each) is made once for the run. Its tests only read
    or copy the folder. (A fixture, as `from conftest import` may find another conftest.py.)"""
    return lambda name, make: _made_once_per_run(request, tmp_path_factory, name, make)


@pytest.fixture(scope="session")
def tiny_llama(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with a char tokenizer, saved to a folder (one for all of a
    run's pytest-xdist workers: tests read or copy it, never change it)."""
    from tinymodels import save_tiny_llama

    return _made_once_per_run(request, tmp_path_factory, "tiny-llama", save_tiny_llama)


@pytest.fixture
def tiny_project(jsonl_project: Path, tiny_llama: Path) -> Path:
    from tinymodels import tiny_project_spec

    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(tiny_project_spec(tiny_llama), sort_keys=False))
    return jsonl_project


@pytest.fixture(scope="session")
def _tiny_project_runs() -> dict:
    """``tiny_project`` after ``run_project(tiny_project, overrides, until=...)``, made once per
    session for each ``(until, overrides, model_at)`` asked for (a key of this dict; one
    folder for all of a run's pytest-xdist workers). Not for direct use: see
    ``tiny_project_ran``."""
    return {}


@pytest.fixture
def tiny_project_ran(request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                     tiny_llama: Path, _tiny_project_runs: dict):
    """A function ``(until=None, into=None, overrides=(), model_at=None) -> Path`` giving
    ``tiny_project`` (same folder, files and spec) as ``run_project(tiny_project, overrides,
    until=until)`` leaves it (``overrides``: a tuple of ``key=value``, as the CLI takes them;
    none unless given): a copy of one such run made once per test run (the pipeline run is
    the slowest step of most end-to-end tests). A copied project stays up to date
    (fingerprints follow file contents, not paths or times), so the copy is that run's state;
    tests that check what the run itself does or says still run it. ``into``: copy it into
    that folder instead (a second project). ``model_at``: a folder of the project (relative,
    as ``models/base``) the tiny model was copied into before the run; the overrides say
    whether the run used it (``model.source=models/base``)."""
    from tinymodels import tiny_project_spec

    from subsetctl.api import run_project
    from subsetctl.hub import forget_unreachable

    def run(folder: Path, until: str | None, overrides: tuple[str, ...], model_at: str | None) -> None:
        _write_jsonl_data(folder)
        (folder / "subsetctl.yaml").write_text(yaml.safe_dump(tiny_project_spec(tiny_llama), sort_keys=False))
        if model_at is not None:
            shutil.copytree(tiny_llama, folder / model_at)
        run_project(folder, list(overrides), until=until)
        forget_unreachable()  # as the autouse fixtures left them for the test
        resolve = sys.modules.get("subsetctl.modeling.resolve")
        if resolve is not None:
            resolve.forget_notices_given()

    def ran(until: str | None = None, into: Path | None = None, overrides: tuple[str, ...] = (),
            model_at: str | None = None) -> Path:
        key = until, overrides, model_at
        if key not in _tiny_project_runs:
            name = f"tiny-project-ran-until-{until or 'all'}"
            if overrides or model_at is not None:  # a folder name of its own for each key
                name += "-" + hashlib.sha256(repr(key[1:]).encode()).hexdigest()[:12]
            _tiny_project_runs[key] = _made_once_per_run(
                request, tmp_path_factory, name, lambda folder: run(folder, until, overrides, model_at))
        shutil.copytree(_tiny_project_runs[key], into or tmp_path, symlinks=True, dirs_exist_ok=True)
        return into or tmp_path

    return ran


@pytest.fixture
def same_jsonl_plugin(monkeypatch: pytest.MonkeyPatch):
    """A function writing, into a folder put on ``sys.path``, a plugin module that
    registers a loader under the built-in ``jsonl`` type and loads exactly as it does;
    it returns the ``plugins:`` entry. The built-in loader is put back, and the module
    forgotten, afterwards."""
    from subsetctl.registry import LOADERS

    LOADERS.get("jsonl")  # the built-ins registered, so the one to put back is there
    monkeypatch.setitem(LOADERS._entries, "jsonl", LOADERS._entries["jsonl"])
    written: list[str] = []

    def write(folder: Path, module: str = "same_jsonl") -> str:
        (folder / f"{module}.py").write_text(
            "from subsetctl.registry import LOADERS\n"
            "from subsetctl.data.loaders import load_jsonl\n"
            "@LOADERS.register('jsonl')\n"
            "def same(options, ctx):\n"
            "    return load_jsonl(options, ctx)\n")
        monkeypatch.syspath_prepend(str(folder))
        written.append(module)
        return f"{module}:same"

    yield write
    for module in written:
        sys.modules.pop(module, None)



@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> object:
    """Tiny random models run fastest on one torch thread: on 2 cores a second thread only
    adds synchronisation to each small op (and contends with a loaded machine): four
    end-to-end tests took 32-37 s instead of 80-82 s. Set for the whole session, before any
    session- or module-wide project is made, and for the `subsetctl` processes tests start
    (OMP_NUM_THREADS): torch's results differ in the last bits between thread counts, so a
    project made with two threads and re-run with one retrained other adapter bits."""
    import torch

    before = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        _THREADS["all"] = _threads_for_this_worker(before)
        yield
    torch.set_num_threads(before)


#: the torch threads a `slow` test takes: torch's count before :func:`_one_torch_thread`
#: pinned it, shared among pytest-xdist's workers
_THREADS: dict[str, int] = {}


def _threads_for_this_worker(threads: int) -> int:
    """The share of `threads` one pytest-xdist worker takes (`pytest -n 2`: each of the two
    workers one of 2 cores' threads), so two `slow` tests running side by side do not make
    four threads fight over two cores; all of them without xdist."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    return max(1, threads // max(1, workers))


@pytest.fixture(autouse=True)
def _all_torch_threads_for_slow_tests(request: pytest.FixtureRequest) -> object:
    """Tests marked `slow` run the real packaged models, which use every thread (except
    under tests/modeling, whose conftest pins one thread for all of its tests)."""
    if request.node.get_closest_marker("slow") is None:
        yield
        return
    import torch

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(_THREADS["all"])
        yield
    torch.set_num_threads(1)
