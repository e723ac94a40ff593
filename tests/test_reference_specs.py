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


def _the_spec_yaml_blocks() -> list[str]:
    """The ```yaml blocks of README's "The spec" section, as written."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## The spec\n", 1)[1].split("\n## Project directory\n", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)


def _write_the_specs_data(folder: Path) -> None:
    """The files README's spec examples read, a few rows each, under ``folder``."""
    import json

    import datasets
    import pandas as pd

    def jsonl(path: str, rows: list[dict]) -> None:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text("".join(json.dumps(row) + "\n" for row in rows))

    qa = [{"question": f"{i}+1=", "answer": str(i + 1)} for i in range(40)]
    jsonl("data/my_task.jsonl", qa)
    jsonl("data/my_task_test.jsonl", qa[:10])
    jsonl("data/alpaca.jsonl", [{"instruction": "Add one.", "input": str(i) if i % 2 else "", "output": str(i + 1)}
                                for i in range(10)])
    jsonl("data/chats.jsonl", [{"messages": [{"role": "user", "content": f"{i}+1?"},
                                             {"role": "assistant", "content": str(i + 1)}]} for i in range(10)])
    jsonl("data/wiki.jsonl", [{"text": f"Document {i}."} for i in range(10)])
    (folder / "data/notes.txt").write_text("".join(f"note {i}\n" for i in range(10)))
    for name in ("pool/x.jsonl", "pool/sub/y.jsonl"):
        jsonl(f"data/{name}", qa[:10])
    pd.DataFrame({"task": ["cola"] * 10 + ["sst 2"] * 10, "inputs": [f"q{i}" for i in range(20)],
                  "targets": [str(i % 2) for i in range(20)]}).to_parquet(folder / "data/flan.parquet")
    datasets.Dataset.from_list([{"prompt": f"{i}*2=", "response": str(2 * i)} for i in range(10)]).save_to_disk(
        str(folder / "local_dataset_folder"))


def test_the_readmes_spec_examples_validate(tmp_path: Path, tiny_llama: Path) -> None:
    """Every ```yaml example of README's "The spec", typed into a spec as a user would (the
    minimal spec whole, also with its commented test_loader; a `loader:` line as one more source's
    loader; a `source_files` group beside the minimal spec's sources), validates, on the tiny
    model. The hub example (gsm8k) is checked with its split and a local test_loader file, as
    its comment offers. Until now only specs/ and examples/ were validated, not these."""
    import yaml

    _write_the_specs_data(tmp_path)
    blocks = _the_spec_yaml_blocks()
    minimal = yaml.safe_load(blocks[0])
    minimal["model"]["source"] = str(tiny_llama)
    minimal["executor"] = {"backend": "sequential", "n_jobs": 1}
    with_test_loader = yaml.safe_load(blocks[0].replace("  split: {train: 0.5", "  # split: {train: 0.5")
                                      .replace("  # test_loader:", "  test_loader:"))
    with_test_loader["target"]["split"] = {"train": 0.75, "validation": 0.25}
    specs = {"minimal": minimal, "minimal with test_loader": {**minimal, "target": with_test_loader["target"]}}
    assert "test_loader" in specs["minimal with test_loader"]["target"]
    for block in blocks[1:]:
        if block.startswith("  loader:"):
            for line in block.splitlines():
                loader = yaml.safe_load(line.strip())["loader"]
                specs[line.strip()] = {**minimal, "sources": [*minimal["sources"], {"name": "s", "loader": loader}]}
        elif block.startswith("target:"):
            target = yaml.safe_load(block)["target"]
            assert "test_loader: {type: jsonl, path: data/test.jsonl}" in block
            target = {**minimal["target"], "split": target["split"],
                      "test_loader": {"type": "jsonl", "path": "data/my_task_test.jsonl",
                                      "prompt_field": "question", "response_field": "answer"}}
            specs["gsm8k's split"] = {**minimal, "target": target}
        else:
            specs[block.splitlines()[1]] = {**minimal, **yaml.safe_load(block)}
    assert len(specs) >= 8, list(specs)
    for name, spec in specs.items():
        (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        result = CliRunner().invoke(main, ["validate", str(tmp_path)])
        assert result.exit_code == 0, (name, result.output)
