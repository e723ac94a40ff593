"""A full disk is a user error that says so, wherever the write fails: also inside
``shutil.copytree`` (an adapter copied into place), safetensors (peft saving an adapter)
and ``torch.save`` (a checkpoint's optimizer state), which carry the system's error only
as text or not at all."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import relfixtures as rf
from click.testing import CliRunner

from subsetctl.api import run_project
from subsetctl.cli import main
from subsetctl.errors import UserError
from subsetctl.stages.data import DataStage

FULL = "No space left on device"


def _copytree_full() -> shutil.Error:
    src, dst = "/p/.subsetctl/finetune/runs/r/checkpoints/step-2/adapter/a.json", "/p/.subsetctl/finetune/runs/r/.adapter.tmp/a.json"
    return shutil.Error([(src, dst, f"[Errno 28] {FULL}: '{src}' -> '{dst}'")])


def _safetensors_full() -> Exception:
    from safetensors import SafetensorError

    return SafetensorError(f"Error while serializing: I/O error: {FULL} (os error 28)")


@pytest.mark.parametrize("error", [_copytree_full, _safetensors_full])
def test_a_full_disk_in_copytree_or_safetensors_is_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error
) -> None:
    """Both stopped `run` with "internal error: Error: [(...)]" / "SafetensorError: ..." and
    "This is a bug in subsetctl" on a full disk."""
    project = rf.make_project(tmp_path / "p", rf.data_spec())

    def full(self, ctx):
        raise error()

    monkeypatch.setattr(DataStage, "run", full)
    result = CliRunner().invoke(main, ["run", str(project), "--until", "data", "-q"])
    assert result.exit_code == 1, result.output
    assert "No space left on the device" in result.output and "Free disk space" in result.output, result.output
    assert "internal error" not in result.output and "bug in subsetctl" not in result.output
    with pytest.raises(UserError, match="No space left on the device"):  # the API raises it as a UserError too
        run_project(project, until="data")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_checkpoint_on_a_full_disk_raises_enospc() -> None:
    """torch.save's own writer reported a full disk as RuntimeError("unexpected pos 576 vs
    534"), an internal error."""
    import torch

    from subsetctl.modeling import train

    with pytest.raises(OSError) as caught:
        train._torch_save({"cpu": torch.get_rng_state()}, Path("/dev/full"))
    assert caught.value.errno == errno.ENOSPC


def test_a_full_disk_among_copytree_errors_is_the_one_said() -> None:
    """shutil.copytree gathers every file's error: a file it could not read listed before
    the full disk (a socket in a checkpoint folder, a permission) hid the full disk."""
    from subsetctl.errors import as_os_error

    unreadable = ("/p/a/sock", "/p/b/sock", "[Errno 6] No such device or address: '/p/a/sock'")
    full = ("/p/a/w.bin", "/p/b/w.bin", f"[Errno 28] {FULL}: '/p/a/w.bin' -> '/p/b/w.bin'")
    error = as_os_error(shutil.Error([unreadable, full]))
    assert error is not None and error.errno == errno.ENOSPC and error.filename == "/p/b/w.bin"
    assert as_os_error(shutil.Error([unreadable])).errno == errno.ENXIO  # otherwise the first, as before


def test_a_full_disk_in_an_atomic_write_names_the_file(tmp_path: Path) -> None:
    """A write or fsync on a full disk names no file: a search estimate store in
    .subsetctl/cache/search/ was reported as "writing in stage search, under
    .subsetctl/search", the stage's folder, not the cache folder filling the disk."""
    from subsetctl.errors import environment_error
    from subsetctl.project import atomic_write

    target = tmp_path / ".subsetctl" / "cache" / "search" / "k" / "subsets.npz"

    def full(handle) -> None:
        raise OSError(errno.ENOSPC, FULL)

    with pytest.raises(OSError) as caught:
        atomic_write(target, full, mode="wb")
    assert caught.value.filename == str(target)
    assert [p.name for p in target.parent.iterdir()] == []  # the temporary file is gone
    message = str(environment_error(caught.value))
    assert f"writing {target})" in message and "cache_limit_gb" in message, message


def test_a_full_disk_while_drawing_a_plot_names_the_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib's write on a full disk names no file: the message named the report stage's
    folder (.subsetctl/report), not plots/ in the project folder."""
    from subsetctl.pipeline import StageContext
    from subsetctl.project import Project
    from subsetctl.report import plots
    from subsetctl.reporter import SilentReporter, StageWarnings
    from subsetctl.spec import load_spec
    from subsetctl.stages.report import ReportStage

    project = Project.find(rf.make_project(tmp_path / "p", rf.data_spec()))

    def full(report, path) -> None:
        raise OSError(errno.ENOSPC, FULL)

    monkeypatch.setattr(plots, "source_scores", full)
    ctx = StageContext(load_spec(project.spec_path), project, StageWarnings(SilentReporter()),
                       project.stage_dir("report"), {})
    with pytest.raises(OSError) as caught:
        ReportStage().run(ctx)
    assert caught.value.filename == str(project.root / "plots" / "source_scores.png")


@pytest.mark.parametrize(("code", "strerror", "said"), [
    (errno.EFBIG, "File too large", ("File too large (writing /p/.subsetctl/data/manifest.json): it reached this "
     "process's file size limit (`ulimit -f`: 20 KiB). Raise the limit (`ulimit -f unlimited`")),
    (errno.EDQUOT, "Disk quota exceeded", ("Disk quota exceeded (writing /p/.subsetctl/data/manifest.json): your "
     "quota on this file system is used up.")),
])
def test_a_file_size_limit_or_a_used_up_quota_is_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, strerror: str, said: str
) -> None:
    """Under `ulimit -f` (EFBIG) or on a file system whose quota the user has used up
    (EDQUOT, a shared machine's usual way to run out of room), `run` stopped with "internal
    error: OSError: [Errno 27] File too large: '.../manifest.json'" and "This is a bug in
    subsetctl"; copying an adapter there said the unreadable file's error, not that one."""
    import resource

    project = rf.make_project(tmp_path / "p", rf.data_spec())
    monkeypatch.setattr(resource, "getrlimit", lambda which: (20 * 1024, resource.RLIM_INFINITY))

    def no_room(self, ctx):
        raise OSError(code, strerror, "/p/.subsetctl/data/manifest.json")

    monkeypatch.setattr(DataStage, "run", no_room)
    result = CliRunner().invoke(main, ["run", str(project), "--until", "data", "-q"])
    assert result.exit_code == 1, result.output
    assert said in " ".join(result.output.split()), result.output
    assert "finished work is kept and resumed" in result.output
    assert "internal error" not in result.output and "bug in subsetctl" not in result.output

    from subsetctl.errors import as_os_error

    unreadable = ("/p/a/sock", "/p/b/sock", "[Errno 6] No such device or address: '/p/a/sock'")
    full = ("/p/a/w.bin", "/p/b/w.bin", f"[Errno {code}] {strerror}: '/p/a/w.bin' -> '/p/b/w.bin'")
    error = as_os_error(shutil.Error([unreadable, full]))
    assert error is not None and error.errno == code and error.filename == "/p/b/w.bin"


def _holes_supported(folder: Path) -> bool:
    """Whether files in ``folder`` can be sparse (a size with no blocks behind it)."""
    probe = folder / "probe"
    with open(probe, "wb") as handle:
        handle.seek(1 << 20)
        handle.write(b"\0")
    sparse = probe.stat().st_blocks * 512 < probe.stat().st_size
    probe.unlink()
    return sparse


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="needs posix_fallocate")
def test_a_gradient_store_holds_its_disk_blocks_before_any_row_is_written(tmp_path: Path) -> None:
    """numpy's open_memmap made the store's arrays sparse: a row written into a hole after
    another job filled the disk killed the run with SIGBUS ("Bus error", exit 135, no
    message), days into the gradients stage."""
    from subsetctl.gradients.store import FEATURES, OUTPUTS, WRITTEN, GradientStore

    if not _holes_supported(tmp_path):
        pytest.skip("this file system makes no sparse files")
    rows = [{"source": "t", "split": "train", "index": i} for i in range(4000)]
    store = GradientStore.create(tmp_path / "store", rows, d=64, h=0, info={})
    for name in (FEATURES, OUTPUTS, WRITTEN):
        stat = (store.path / name).stat()
        assert stat.st_blocks * 512 >= stat.st_size, name


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="needs posix_fallocate")
def test_a_full_disk_when_a_gradient_store_takes_its_room_names_the_file_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full disk is said when the store takes its room, naming the file, and the store
    is opened (its room taken) by the next run, once there is room."""
    import numpy as np

    from subsetctl.errors import environment_error
    from subsetctl.gradients.store import FEATURES, GradientStore

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, FULL)

    if not _holes_supported(tmp_path):
        pytest.skip("this file system makes no sparse files")
    rows = [{"source": "t", "split": "train", "index": i} for i in range(4000)]
    with monkeypatch.context() as patched:
        patched.setattr(os, "posix_fallocate", full)
        with pytest.raises(OSError) as caught:
            GradientStore.create(tmp_path / "store", rows, d=64, h=0, info={})
    assert caught.value.filename == str(tmp_path / "store" / FEATURES)
    message = str(environment_error(caught.value))
    assert f"writing {tmp_path / 'store' / FEATURES})" in message and "finished work is kept" in message, message
    store = GradientStore.open(tmp_path / "store", writable=True)  # room again: the next run goes on
    store.write(range(4000), np.ones(4000), np.ones((4000, 64)))
    assert store.complete


def test_meta_init_and_finetune_refuse_to_begin_without_room_for_their_lora_weights(
        tiny_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """plan said `run` would stop at a LoRA stage until there is room, but meta_init and finetune
    had no check before they began, as the gradients stage has: they failed partway with "no
    space left". Each refuses to begin now, saying what it needs, with the stages before kept."""
    import subsetctl.project as project_module
    from subsetctl.project import Project

    real = project_module.free_disk_at
    room = {"free": 10}  # bytes free where the stage writes

    def free_at(folder: Path) -> tuple[int, Path]:
        return (room["free"], real(folder)[1]) if ".subsetctl" in folder.parts else real(folder)

    monkeypatch.setattr(project_module, "free_disk_at", free_at)
    with pytest.raises(UserError) as err:
        run_project(tiny_project)
    said = " ".join(str(err.value).split())
    assert "The meta_init stage's LoRA checkpoints and adapter need up to" in said, said
    assert "Free disk space there and run again" in said and "model.lora.r" in said, said
    project = Project(tiny_project)
    assert project.read_manifest("data") is not None and project.read_manifest("meta_init") is None
    room["free"] = 10**12
    run_project(tiny_project, until="search")
    room["free"] = 10
    with pytest.raises(UserError) as err:
        run_project(tiny_project)
    assert "The finetune stage's LoRA adapters and checkpoints need up to" in str(err.value), err.value
    assert project.read_manifest("search") is not None and project.read_manifest("finetune") is None
    result = CliRunner().invoke(main, ["run", str(tiny_project), "-q"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output


def test_plan_says_run_would_stop_at_finetune_only_where_runs_check_stops_it(
        tiny_project_ran, monkeypatch: pytest.MonkeyPatch) -> None:
    """plan's "`run` would stop at this stage" counted every fine-tune the spec may make (alike
    picks apart), while `run`'s check before finetune counts the distinct ones not yet trained:
    with room for those but not for "up to", plan said `run` would stop and `run` went on. Both
    use one figure now (the "up to" size stays as plan's note); doctor's disk check too."""
    import subsetctl.project as project_module
    from subsetctl.doctor import check_disk
    from subsetctl.modeling.footprint import disk_bytes, model_shape
    from subsetctl.project import Project
    from subsetctl.spec import load_spec
    from subsetctl.stages import gradients
    from subsetctl.stages.finetune import fine_tunes_left

    tiny_project = tiny_project_ran("search")
    project = Project(tiny_project)
    spec = load_spec(tiny_project / "subsetctl.yaml")
    shape = model_shape(spec, tiny_project)
    left = fine_tunes_left(spec, project, resumes=False)
    assert shape is not None and left is not None
    need, most = disk_bytes("finetune", spec, shape, left), disk_bytes("finetune", spec, shape)
    assert need < most, (need, most)  # alike picks: fewer fine-tunes to train than "up to"
    real = project_module.free_disk_at
    room = {"free": need}

    def free_at(folder: Path) -> tuple[int, Path]:
        return (room["free"], real(folder)[1]) if ".subsetctl" in folder.parts else real(folder)

    monkeypatch.setattr(project_module, "free_disk_at", free_at)
    monkeypatch.setattr(gradients, "free_disk_at", free_at)  # (bound when imported: maybe under an earlier patch)
    plan = " ".join(CliRunner().invoke(main, ["plan", str(tiny_project)]).output.split())
    assert "its adapters and checkpoints need up to" in plan and "would stop at this stage" not in plan, plan
    disk = check_disk(tiny_project, spec)
    assert "`run` stops at the stage" not in disk.advice, disk
    room["free"] = need - 1  # short of what `run` checks: both say so
    plan = " ".join(CliRunner().invoke(main, ["plan", str(tiny_project)]).output.split())
    assert "`run` would stop at this stage until there is room" in plan, plan
    room["free"] = need
    run_project(tiny_project)  # goes on, as plan said
    assert project.read_manifest("finetune") is not None


def test_a_stopped_meta_init_counts_its_checkpoints_as_room_only_where_run_resumes_them(
        tiny_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stopped partway through meta_init leaves checkpoints that the next run with the
    same inputs resumes from and replaces: plan, doctor and `run`'s own check count them as room
    (no test held them to it). A run with other inputs discards them, and a stage with finished
    results of other inputs computes them anew: doctor took any work in the stage folder as a
    resume, and any finished results as taking no more room, so it passed where `run` stops."""
    import subsetctl.project as project_module
    from subsetctl.api import load_project, plan_project
    from subsetctl.doctor import check_disk
    from subsetctl.stages import gradients
    from subsetctl.stages.common import lora_disk_left

    run_project(tiny_project, until="meta_init")
    folder = tiny_project / ".subsetctl" / "meta_init"
    (folder / "manifest.json").unlink()  # as a run stopped before it committed: work.json and checkpoints stay
    shutil.rmtree(folder / "adapter")
    project, spec = load_project(tiny_project, [])
    rooms = [lora_disk_left("meta_init", spec, project.root, folder, resumes=resumes) for resumes in (False, True)]
    assert None not in rooms, rooms
    fresh, resumed = (room[0].need for room in rooms if room is not None)
    assert 0 < resumed < fresh, (fresh, resumed)
    real = project_module.free_disk_at
    monkeypatch.setattr(project_module, "free_disk_at",  # room for the rest of the stopped run, not for a new one
                        lambda at: (resumed, real(at)[1]) if ".subsetctl" in at.parts else real(at))
    monkeypatch.setattr(gradients, "planned_room", lambda *args, **kwargs: None)  # (meta_init's room alone)

    def plan_and_doctor(overrides: list[str]) -> tuple[str, bool]:
        overrides = [*overrides, "finetune.enabled=false"]  # (the LoRA stage run would not reach alone)
        [meta_init] = [s for s in plan_project(tiny_project, overrides)[2] if s.name == "meta_init"]
        return " ".join((meta_init.work or "").split()), check_disk(tiny_project, load_project(tiny_project,
                                                                                               overrides)[1]).ok

    work, doctor_ok = plan_and_doctor([])  # the same inputs: `run` resumes, the checkpoints are room
    assert "would stop at this stage" not in work and doctor_ok, work
    stopped = tiny_project / "stopped_meta_init"
    shutil.copytree(folder, stopped)
    run_project(tiny_project, ["finetune.enabled=false"], until="meta_init")  # `run`'s check agrees: it resumes
    assert project.read_manifest("meta_init") is not None
    shutil.rmtree(folder)
    shutil.copytree(stopped, folder)  # stopped partway again
    work, doctor_ok = plan_and_doctor(["meta_init.lr=0.002"])  # other inputs: the partial work is discarded
    assert "`run` would stop at this stage until there is room" in work and not doctor_ok, work
    with pytest.raises(UserError, match="The meta_init stage's LoRA checkpoints and adapter need up to"):
        run_project(tiny_project, ["meta_init.lr=0.002"])
    assert not (folder / "checkpoints").exists()  # (discarded, as plan and doctor counted)
    monkeypatch.setattr(project_module, "free_disk_at", real)
    run_project(tiny_project, until="meta_init")  # finished, with the spec's inputs
    monkeypatch.setattr(project_module, "free_disk_at",
                        lambda at: (resumed, real(at)[1]) if ".subsetctl" in at.parts else real(at))
    work, doctor_ok = plan_and_doctor(["meta_init.lr=0.002"])  # finished results of other inputs: computed anew
    assert "`run` would stop at this stage until there is room" in work and not doctor_ok, work
