"""Every reference spec under specs/ and examples/ validates (no model is loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from subsetctl.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(ROOT.glob("specs/*.yaml")) + sorted(ROOT.glob("examples/*/subsetctl.yaml"))


def test_there_are_reference_specs() -> None:
    names = {p.name for p in SPECS}
    assert {"minilm-classifier.yaml", "hub-llama-gpu.yaml", "subsetctl.yaml"} <= names


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_reference_spec_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the hub is reachable: hub-llama-gpu.yaml names hub ids, which validate warns
    about offline (see test_hub_ids_that_cannot_be_loaded_offline_are_said_at_once)."""
    import importlib.util

    monkeypatch.setattr("subsetctl.hub.hub_reachable", lambda timeout=3.0: True)

    if "minilm" in path.name and importlib.util.find_spec("evals") is None:
        pytest.skip("the evals package (task data) is not installed")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    # a reference spec is an example to copy: only warnings about the machine it runs on
    # (workers beyond this machine's cores, a GPU's device or dtype) may remain
    machine = ("executor.n_jobs", "model.device", "model.dtype")
    warned = [line for line in result.output.splitlines() if line.strip().startswith("warning:")]
    assert all(any(key in line for key in machine) for line in warned), warned


def test_the_readmes_rehearsal_overrides_fit_the_gpu_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    """README's "Rehearsing a GPU spec on a CPU" shrinks specs/hub-llama-gpu.yaml with
    overrides: each must be a key of that spec's schema with a valid value, and keep
    verify.k high enough that calibration stays on (the rehearsal is to try it)."""
    import re
    import shlex

    monkeypatch.setattr("subsetctl.hub.hub_reachable", lambda timeout=3.0: True)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Rehearsing a GPU spec on a CPU", 1)[1]
    command = re.search(r"```bash\n(subsetctl run rehearsal [^\n]+)\n```", section)
    assert command, "README's rehearsal section has no `subsetctl run rehearsal ...` command"
    overrides = shlex.split(command.group(1))[3:]
    assert {o.split("=", 1)[0] for o in overrides} >= {"meta_init.steps", "verify.k", "finetune.seeds", "gradients.d"}
    result = CliRunner().invoke(main, ["validate", str(ROOT / "specs" / "hub-llama-gpu.yaml"), *overrides])
    assert result.exit_code == 0, result.output
    assert "too few to calibrate" not in result.output and "executor.n_jobs" not in result.output, result.output


def test_the_readmes_required_keys_are_the_schemas() -> None:
    """README's "The spec" names the keys that have no default (the required ones): it left out
    the target's `name` and `loader`, which a spec without them is refused for. Every required
    key of the schema is among those it names, and it names the target's."""
    from subsetctl.spec.models import json_schema

    schema = json_schema()
    required = {("spec", key) for key in schema.get("required", [])} | {
        (name, key) for name, definition in schema["$defs"].items() for key in definition.get("required", [])}
    loaders = {(name, key) for name, key in required if name.endswith(("Loader", "Files"))}
    # a loader's `type` and what it reads (its path, an evals or plugin name, a reasoning-gym task)
    assert {key for _, key in loaders} <= {"type", "path", "name", "task"}, loaders
    assert required - loaders == {("spec", "target"), ("TargetSpec", "name"), ("TargetSpec", "loader"),
                                  ("SourceSpec", "name"), ("SourceSpec", "loader"), ("SourceFilesSpec", "files"),
                                  ("SourceFilesSpec", "loader"), ("StrategySpec", "name")}
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split("## The spec", 1)[1][:1200].split())
    assert ("the required ones, `target` with its `name` and `loader`, each source's `name` and `loader`, a loader's "
            "`type` and what it reads, a `source_files` group's `files` and `loader`, and a strategy's `name`") in readme
