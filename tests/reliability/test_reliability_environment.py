"""What a run meets from the machine mid-stage, rather than from the spec: the project's
folder gone under it. Each is a user error that names what happened and what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import relfixtures as rf
from click.testing import CliRunner

from subsetctl.cli import main
from subsetctl.stages.data import DataStage


@pytest.mark.parametrize("then", ["fails", "finishes"])
def test_a_project_deleted_while_a_stage_runs_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      then: str) -> None:
    """A stage failing on the files gone said to re-run an upstream stage ("holds no complete
    gradient store ... Re-run the gradients stage"), and a stage that finished wrote its
    results into folders made anew and was recorded as done in an empty project."""
    project = rf.make_project(tmp_path / "p", rf.data_spec())

    def deleted(self, ctx):
        shutil.rmtree(project)
        if then == "fails":
            raise FileNotFoundError(2, "No such file or directory", str(project / ".subsetctl" / "x"))
        return {}

    monkeypatch.setattr(DataStage, "run", deleted)
    result = CliRunner().invoke(main, ["run", str(project), "--until", "data", "-q"])
    assert result.exit_code == 1 and "internal error" not in result.output, result.output
    assert f"the project's state folder {project / '.subsetctl'} is gone while it ran" in " ".join(result.output.split())
    assert not project.exists()  # nothing made anew
