"""What a run meets from the machine mid-stage, rather than from the spec: the project's
folder gone under it, a file system without file locks. Each is a user error that names what happened and what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import relfixtures as rf
from click.testing import CliRunner

from subsetctl.cli import main
from subsetctl.stages.data import DataStage


@pytest.mark.parametrize("then", ["fails", "finishes", "writes and fails", "writes and finishes"])
def test_a_project_deleted_while_a_stage_runs_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      then: str) -> None:
    """A stage failing on the files gone said to re-run an upstream stage ("holds no complete
    gradient store ... Re-run the gradients stage"), and a stage that finished wrote its
    results into folders made anew and was recorded as done in an empty project. A stage
    writing after the deletion makes the state folder anew: that is a folder gone too."""
    from subsetctl.project import atomic_write_json

    project = rf.make_project(tmp_path / "p", rf.data_spec())

    def deleted(self, ctx):
        shutil.rmtree(project)
        if then.startswith("writes"):  # (its write makes .subsetctl/data/ anew)
            atomic_write_json(ctx.out_dir / "x.json", {})
        if then.endswith("fails"):
            raise FileNotFoundError(2, "No such file or directory", str(project / ".subsetctl" / "x"))
        return {}

    monkeypatch.setattr(DataStage, "run", deleted)
    result = CliRunner().invoke(main, ["run", str(project), "--until", "data", "-q"])
    assert result.exit_code == 1 and "internal error" not in result.output, result.output
    assert f"the project's state folder {project / '.subsetctl'} is gone while it ran" in " ".join(result.output.split())
    if not then.startswith("writes"):
        assert not project.exists()  # nothing made anew


def test_a_file_system_without_locks_is_not_taken_for_a_running_run(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """flock refused (ENOLCK: NFS without its lock service) was read as the lock being held:
    "locked by running `subsetctl run --shard` processes", with nothing running; `plan`
    showed no stage as running and still works."""
    import errno
    import fcntl

    from subsetctl.errors import LockedError, UserError
    from subsetctl.file_locks import file_lock_held
    from subsetctl.project import Project

    project = Project.find(rf.make_project(tmp_path / "p", rf.data_spec()))
    real = fcntl.flock

    def no_locks(fd, operation):
        if operation & fcntl.LOCK_UN:
            return real(fd, operation)
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(UserError) as caught, project.lock():
        pass
    assert not isinstance(caught.value, LockedError)
    assert "does not support file locks (flock)" in str(caught.value) and "no other run holds it" in str(caught.value)
    assert not file_lock_held(project.state_dir / "lock")
    project.restamp_manifest_when_idle("data", {"x": [1]})  # (plan, report: nothing to restamp, no error)


def _no_temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's ``tempfile`` finds no writable temporary folder, as in a container started with
    ``--read-only`` and no tmpfs on /tmp (the folders it tries here: one that is not there)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # (it keeps the folder it found)
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [str(tmp_path / "no-such-tmp")])
    monkeypatch.delenv("TMPDIR", raising=False)


def test_no_writable_temporary_folder_is_a_user_error_naming_tmpdir(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """datasets (through dill, as it is imported), torch and joblib ask ``tempfile`` for a
    folder; with none writable the run stopped with "internal error: FileNotFoundError: No
    usable temporary directory found in [...] This is a bug in subsetctl"."""
    import tempfile

    project = rf.make_project(tmp_path / "p", rf.data_spec())
    _no_temp_folder(tmp_path, monkeypatch)
    monkeypatch.setattr(DataStage, "run", lambda self, ctx: tempfile.mkdtemp())  # (as a library does)
    result = CliRunner().invoke(main, ["run", str(project), "--until", "data", "-q"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "internal error" not in text, result.output
    assert (f"No writable temporary folder: Python tried {tmp_path / 'no-such-tmp'} and could write in none "
            "(TMPDIR is not set)") in text
    assert "Set TMPDIR to a writable folder" in text and "Finished stages are kept." in text


def test_doctor_says_there_is_no_writable_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor stopped with the error that importing torch raised instead of reporting it."""
    project = rf.make_project(tmp_path / "p", rf.data_spec())
    _no_temp_folder(tmp_path, monkeypatch)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "no-such-tmp"))
    result = CliRunner().invoke(main, ["doctor", str(project)])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "error:" not in text, result.output
    assert "✗ temporary folder: no writable temporary folder" in text and "(TMPDIR is " in text
    assert "→ Set TMPDIR to a writable folder" in text
