"""subsetctl.api as a notebook or script calls it (README → Commands → From Python)."""

from __future__ import annotations

from pathlib import Path


def test_validate_spec_file_takes_a_str_path_as_the_other_functions_do(jsonl_project: Path) -> None:
    from subsetctl.api import validate_spec_file

    spec_path = jsonl_project / "subsetctl.yaml"
    from_str = validate_spec_file(str(spec_path), ["gradients.d=64"])
    assert from_str.ok and from_str.spec is not None
    assert from_str.to_dict() == validate_spec_file(spec_path, ["gradients.d=64"]).to_dict()
    (issue,) = validate_spec_file(str(jsonl_project)).issues  # a folder: the issue, not AttributeError
    assert "is a directory" in issue.message


def test_every_record_run_project_returns_has_the_documented_keys(tiny_project: Path) -> None:
    """README: one record per stage, {"stage", "action", "seconds"}; a stage the spec
    switches off had no "seconds", so summing them over the records raised KeyError."""
    from subsetctl.api import run_project

    results = run_project(tiny_project, ["verify.enabled=false"], until="calibrate")
    assert [r["action"] for r in results] == ["ran", "ran", "ran", "disabled", "ran"]
    assert all({"stage", "action", "seconds"} <= set(r) for r in results), results
    assert sum(r["seconds"] for r in results) > 0
