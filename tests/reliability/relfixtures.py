"""Helpers for the reliability tests: tiny projects, subprocess runs, kill points.

The crash-resume tests run ``python -m subsetctl.cli run DIR -q`` in a subprocess and
SIGKILL it inside one stage, either when the stage's partial artifacts appear on disk
(polling from outside) or, for the search stage whose estimates take milliseconds,
through the ``relkill`` plugin, which kills its own process after the N-th saved chunk
of subset estimates (``RELTEST_KILL_AFTER_ADDS=N``).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STATE = ".subsetctl"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as JSON Lines."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_data(folder: Path) -> None:
    """The target and source files every reliability project uses."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "target.jsonl", [{"prompt": f"{i}+1=", "response": str(i + 1)} for i in range(20)])
    write_jsonl(folder / "a.jsonl", [{"prompt": f"{i}+2=", "response": str(i + 2)} for i in range(40)])
    write_jsonl(folder / "b.jsonl", [{"prompt": f"say {i}", "response": f"{i}"} for i in range(40)])


def crash_spec(model_dir: Path) -> dict[str, Any]:
    """A whole-pipeline spec whose long stages last long enough to be killed inside:
    40 meta_init steps (checkpoint every 5), 105 gradient rows in batches of 2, forward +
    exhaustive search (several saved estimate chunks) and 30-step fine-tunes."""
    from tinymodels import tiny_project_spec

    spec = tiny_project_spec(model_dir)
    spec["project"]["name"] = "crash"
    spec.update(
        meta_init={"steps": 40, "batch_size": 4, "eval_every": 5, "checkpoint_every": 5},
        gradients={"d": 16, "batch_size": 2},
        search={"strategies": [{"name": "forward"}, {"name": "exhaustive"}]},
        finetune={"steps": 30, "batch_size": 4, "checkpoint_every": 3},
        evaluate={"max_new_tokens": 2},
        report={"plots": False},
        plugins=["relkill:PLUGIN"],
    )
    return spec


def make_project(folder: Path, spec: dict[str, Any]) -> Path:
    """A project folder with the data files and ``spec`` as subsetctl.yaml."""
    write_data(folder)
    (folder / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder


def copy_state(src: Path, dst: Path, stages: list[str]) -> None:
    """Copy the finished ``stages`` of project ``src`` into project ``dst`` (so a test can
    start the pipeline right before the stage it kills)."""
    for stage in stages:
        shutil.copytree(src / STATE / stage, dst / STATE / stage)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a CLI subprocess: the repo and this folder importable, few threads."""
    env = dict(os.environ)
    paths = [str(REPO), str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env["TOKENIZERS_PARALLELISM"] = "false"
    env.pop("SUBSETCTL_DEBUG", None)
    env.update(extra)
    return env


def start_run(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``python -m subsetctl.cli run PROJECT -q`` in a new process (output to files)."""
    with open(project / "run.out", "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "subsetctl.cli", "run", str(project), "-q", *args],
            stdout=out, stderr=subprocess.STDOUT, env=env or subprocess_env(), cwd=str(project),
        )


def run_cli(project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run one CLI command to completion in a subprocess and return its result."""
    return subprocess.run(
        [sys.executable, "-m", "subsetctl.cli", *args], check=False, capture_output=True, text=True,
        env=env or subprocess_env(), timeout=timeout, cwd=str(project),
    )


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 240, poll: float = 0.01) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` is true; False if it exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            hit = ready()
        except (OSError, ValueError):
            hit = False
        if hit:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            return True
        time.sleep(poll)
    proc.kill()
    proc.wait(timeout=30)
    raise AssertionError(f"kill point not reached within {timeout} s")


def manifest(project: Path, stage: str) -> dict[str, Any]:
    """A stage's manifest.json."""
    return json.loads((project / STATE / stage / "manifest.json").read_text())


def checkpoint_steps(folder: Path) -> list[int]:
    """Committed ``step-K`` checkpoints under ``folder`` (those with a trainer state)."""
    if not folder.is_dir():
        return []
    return sorted(int(p.name[5:]) for p in folder.glob("step-*") if (p / "trainer_state.json").is_file())


def written_rows(store: Path) -> int:
    """Rows marked written in a gradient store (0 while it is being created)."""
    path = store / "written.npy"
    if not (store / "info.json").is_file() or not path.is_file():
        return 0
    return int(np.load(path, mmap_mode="r").sum())


def subset_results(folder: Path) -> dict[bytes, tuple[float, float, int, bool]]:
    """Completed subset estimates of a results store: packed mask -> metrics (read through
    the store itself: its main file and the segment files written since)."""
    from subsetctl.estimate.results import META_FILE, SubsetResultsStore

    meta = json.loads((folder / META_FILE).read_text())
    store = SubsetResultsStore(folder, meta["sources"], meta["key"])
    assert store.reset_reason is None, store.reset_reason
    masks, batch = store.results()
    return {np.packbits(mask).tobytes(): (float(loss), float(norm), int(its), bool(conv))
            for mask, loss, norm, its, conv in zip(masks, batch.loss, batch.w_norm, batch.iterations,
                                                   batch.converged, strict=True)}


def adapter_tensors(folder: Path) -> dict[str, np.ndarray]:
    """The tensors of a saved peft adapter as numpy arrays."""
    from safetensors.numpy import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def assert_adapters_close(a: Path, b: Path, atol: float = 1e-5) -> None:
    """Two adapters hold the same tensors within ``atol``."""
    ta, tb = adapter_tensors(a), adapter_tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        np.testing.assert_allclose(ta[key], tb[key], atol=atol, rtol=0, err_msg=key)


def with_changes(spec: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``spec`` with top-level sections updated."""
    out = copy.deepcopy(spec)
    for key, value in sections.items():
        out.setdefault(key, {}).update(value)
    return out


def data_spec() -> dict[str, Any]:
    """A spec whose data stage needs no model (for lock and fuzz tests)."""
    return {
        "project": {"name": "data-only", "seed": 0},
        "target": {"name": "target", "loader": {"type": "jsonl", "path": "target.jsonl"},
                   "split": {"train": 10, "validation": 5, "test": 5}},
        "sources": [{"name": "a", "loader": {"type": "jsonl", "path": "a.jsonl"}},
                    {"name": "b", "loader": {"type": "jsonl", "path": "b.jsonl"}}],
    }


def small_spec(model_dir: Path) -> dict[str, Any]:
    """The crash spec cut down so a whole run takes a few seconds."""
    spec = crash_spec(model_dir)
    spec["meta_init"] = {"steps": 4, "batch_size": 4, "eval_every": 2, "checkpoint_every": 2}
    spec["gradients"] = {"d": 16, "batch_size": 8}
    spec["search"] = {"strategies": [{"name": "exhaustive"}]}
    spec["finetune"] = {"steps": 2, "batch_size": 4}
    spec["plugins"] = []
    return spec


HOLD_LOCK = """
import sys, time
from subsetctl.project import Project
with Project.find(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(600)
"""


def hold_lock(project: Path) -> subprocess.Popen[str]:
    """A subprocess that holds the project's run lock until killed (returns once held)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(project)], stdout=subprocess.PIPE,
                            text=True, env=subprocess_env())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc
