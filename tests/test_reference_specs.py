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
