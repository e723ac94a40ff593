"""Concurrency: one `run` at a time per project; `plan` and `report` stay read-only and
work during a run; a lock left by a dead process is taken over with a notice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import relfixtures as rf
from click.testing import CliRunner

from subsetctl.cli import main


@pytest.fixture
def data_project(tmp_path: Path) -> Path:
    return rf.make_project(tmp_path / "p", rf.data_spec())


def test_second_run_exits_1_naming_the_holder_pid(data_project: Path) -> None:
    holder = rf.hold_lock(data_project)
    try:
        result = CliRunner().invoke(main, ["run", str(data_project), "--until", "data", "-q"])
        assert result.exit_code == 1, result.output
        assert f"PID {holder.pid}" in result.output and "locked" in result.output
        assert "Traceback" not in result.output
        assert not (data_project / ".subsetctl" / "data" / "manifest.json").exists()
        # the same from a separate process (what a user sees in a second terminal)
        other = rf.run_cli(data_project, "run", str(data_project), "--until", "data", "-q")
        assert other.returncode == 1 and f"PID {holder.pid}" in other.stderr
    finally:
        holder.kill()
        holder.wait()


def test_plan_and_report_work_during_a_run_without_the_lock(data_project: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["run", str(data_project), "--until", "data", "-q"]).exit_code == 0
    lock = data_project / ".subsetctl" / "lock"
    holder = rf.hold_lock(data_project)
    try:
        before = lock.read_text()
        assert before.split()[0] == str(holder.pid)
        plan = runner.invoke(main, ["plan", str(data_project)])
        assert plan.exit_code == 0, plan.output
        assert "up to date" in plan.output and "run would execute" in plan.output
        plan_json = runner.invoke(main, ["plan", str(data_project), "--format", "json"])
        assert plan_json.exit_code == 0
        for fmt in ("text", "json"):
            report = runner.invoke(main, ["report", str(data_project), "--format", fmt])
            assert report.exit_code == 0, report.output
            assert "data" in report.output
        assert lock.read_text() == before  # neither touched the holder's lock
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_notice(data_project: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = data_project / ".subsetctl"
    state.mkdir()
    (state / "lock").write_text(str(dead.pid))
    result = CliRunner().invoke(main, ["run", str(data_project), "--until", "data", "-q"])
    assert result.exit_code == 0, result.output
    assert "stale lock" in result.output and str(dead.pid) in result.output
    assert (state / "data" / "manifest.json").is_file()
    assert (state / "lock").read_text() == ""  # released after the run


def test_lock_is_released_when_the_holder_is_killed(data_project: Path) -> None:
    holder = rf.hold_lock(data_project)
    holder.kill()
    holder.wait()
    result = CliRunner().invoke(main, ["run", str(data_project), "--until", "data", "-q"])
    assert result.exit_code == 0, result.output
    assert "stale lock" in result.output and str(holder.pid) in result.output


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"99999999999999999999", "²³".encode(), b"12abc"])
def test_a_damaged_lock_file_is_taken_over(data_project: Path, content: bytes) -> None:
    """A lock file holding bytes that are not UTF-8, a number no PID can be, or digits that
    are not ASCII stopped every `run` with an internal error (UnicodeDecodeError,
    OverflowError, ValueError) until the file was deleted by hand."""
    state = data_project / ".subsetctl"
    state.mkdir()
    (state / "lock").write_bytes(content)
    result = CliRunner().invoke(main, ["plan", str(data_project)])
    assert result.exit_code == 0 and "internal error" not in result.output, result.output
    result = CliRunner().invoke(main, ["run", str(data_project), "--until", "data", "-q"])
    assert result.exit_code == 0 and "internal error" not in result.output, result.output
    assert (state / "data" / "manifest.json").is_file()
    assert (state / "lock").read_text() == ""  # released after the run


def test_a_lock_that_links_where_no_file_can_be_made_is_a_user_error(data_project: Path, tmp_path: Path) -> None:
    """A .subsetctl/lock left as a symbolic link into a folder that is gone (a project copied
    with its links, a cleaned-up scratch disk) stopped `run` with an internal error
    (FileNotFoundError on the lock, which exists as a link), and doctor said all was fine."""
    from subsetctl import doctor

    state = data_project / ".subsetctl"
    state.mkdir()
    (state / "lock").symlink_to(tmp_path / "gone" / "lock")
    result = CliRunner().invoke(main, ["run", str(data_project), "--until", "data", "-q"])
    assert result.exit_code == 1 and "internal error" not in result.output, result.output
    assert "symbolic link" in result.output and str(tmp_path / "gone" / "lock") in result.output
    assert "Remove the link" in result.output
    check = doctor.check_writable(data_project)
    assert not check.ok and "symbolic link" in check.detail, check
    (tmp_path / "gone").mkdir()  # a link whose target opening it makes: run refuses it too (it would write there)
    check = doctor.check_writable(data_project)
    assert not check.ok and "would stop at once on a symbolic link" in check.detail and "Remove the link" in check.advice
    (state / "lock").unlink()
    assert doctor.check_writable(data_project).ok
    result = CliRunner().invoke(main, ["run", str(data_project), "--until", "data", "-q"])
    assert result.exit_code == 0, result.output
