"""Corruption: a truncated or altered artifact of each kind shows as `corrupt` in `plan`,
and `run` re-runs that stage from scratch with a notice, never reusing the damaged file."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import relfixtures as rf
from click.testing import CliRunner

from subsetctl.api import plan_project, run_project
from subsetctl.cli import main
from subsetctl.reporter import SilentReporter


@pytest.fixture(scope="module")
def finished(made_once_per_run: Callable[[str, Callable[[Path], object]], Path], tiny_llama: Path) -> Path:
    """A project whose whole pipeline ran once for the whole test run (one for all
    pytest-xdist workers; each worker used to run it again): each test copies it, never changes it."""
    folder = made_once_per_run("corruption-finished",
                               lambda folder: run_project(rf.make_project(folder / "p", rf.small_spec(tiny_llama))))
    return folder / "p"


@pytest.fixture
def project(finished: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "p"
    shutil.copytree(finished, dst)
    # data fingerprints hold absolute file paths: the copy re-runs data (same output),
    # everything downstream stays up to date
    ran = [r["stage"] for r in run_project(dst) if r["action"] == "ran"]
    assert ran in ([], ["data"]), ran
    return dst


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _state(project: Path, stage: str) -> str:
    return {s.name: s for s in plan_project(project)[2]}[stage].state


def _corrupt_then_run(project: Path, stage: str, damage: Callable[[], None], why: str) -> tuple[list[str], dict[str, Any]]:
    assert _state(project, stage) == "up to date"
    damage()
    statuses = {s.name: s for s in plan_project(project)[2]}
    assert statuses[stage].state == "corrupt" and statuses[stage].will_run
    assert why in "; ".join(statuses[stage].reasons), statuses[stage].reasons
    reporter = SilentReporter()
    results = {r["stage"]: r["action"] for r in run_project(project, reporter=reporter)}
    assert results[stage] == "ran"
    assert any(stage in w and ("checksum" in w or "unreadable" in w) for w in reporter.warnings), reporter.warnings
    assert _state(project, stage) == "up to date"
    return reporter.warnings, rf.manifest(project, stage)["summary"]


def test_corrupt_manifest_reruns_stage_without_reusing_its_artifacts(project: Path, finished: Path) -> None:
    manifest = project / rf.STATE / "gradients" / "manifest.json"
    _, summary = _corrupt_then_run(project, "gradients", lambda: truncate(manifest), "manifest.json is unreadable")
    assert summary["reused"] == 0 and summary["computed"] == summary["rows"]
    for name in ("features.npy", "outputs.npy"):
        assert np.array_equal(np.load(project / rf.STATE / "gradients" / "store" / name),
                              np.load(finished / rf.STATE / "gradients" / "store" / name))


def test_altered_gradient_features_are_recomputed(project: Path, finished: Path) -> None:
    features = project / rf.STATE / "gradients" / "store" / "features.npy"
    _, summary = _corrupt_then_run(project, "gradients", lambda: flip_middle_byte(features),
                                   "store/features.npy does not match its checksum")
    assert summary["reused"] == 0 and summary["computed"] == summary["rows"]
    assert features.read_bytes() == (finished / rf.STATE / "gradients" / "store" / "features.npy").read_bytes()


def test_truncated_gradient_features_are_recomputed(project: Path, finished: Path) -> None:
    features = project / rf.STATE / "gradients" / "store" / "features.npy"
    _, summary = _corrupt_then_run(project, "gradients", lambda: truncate(features), "store/features.npy has size")
    assert summary["computed"] == summary["rows"]
    assert features.read_bytes() == (finished / rf.STATE / "gradients" / "store" / "features.npy").read_bytes()


def test_truncated_meta_init_adapter_is_retrained(project: Path, finished: Path) -> None:
    adapter = project / rf.STATE / "meta_init" / "adapter" / "adapter_model.safetensors"
    _, summary = _corrupt_then_run(project, "meta_init", lambda: truncate(adapter), "adapter/adapter_model.safetensors")
    assert summary["resumed_from"] == 0  # trained again, not resumed from kept checkpoints
    rf.assert_adapters_close(adapter.parent, finished / rf.STATE / "meta_init" / "adapter", atol=1e-6)
    # identical theta*: the gradients stage downstream stays up to date
    assert _state(project, "gradients") == "up to date"


def test_altered_data_arrow_file_is_rebuilt(project: Path, finished: Path) -> None:
    arrow = next((project / rf.STATE / "data").rglob("*.arrow"))
    original = (finished / arrow.relative_to(project)).read_bytes()
    _corrupt_then_run(project, "data", lambda: flip_middle_byte(arrow), "does not match its checksum")
    assert arrow.read_bytes() == original


def test_cli_shows_corrupt_in_plan_and_a_notice_in_run(project: Path) -> None:
    features = project / rf.STATE / "gradients" / "store" / "features.npy"
    truncate(features)
    runner = CliRunner()
    plan = runner.invoke(main, ["plan", str(project)])
    assert plan.exit_code == 0 and "corrupt" in plan.output
    run = runner.invoke(main, ["run", str(project), "-q", "--until", "gradients"])
    assert run.exit_code == 0, run.output
    assert "fail their checksums" in run.output and "re-running" in run.output
    assert "Ran gradients" in run.output


def test_report_calls_damaged_state_damaged_and_does_not_show_it(project: Path) -> None:
    """The report said "The spec or its input files changed since these results" about a
    damaged store, and showed the selections of a search whose manifest was unreadable."""
    truncate(project / rf.STATE / "gradients" / "store" / "features.npy")
    (project / rf.STATE / "search" / "manifest.json").write_text("garbage")
    result = CliRunner().invoke(main, ["report", str(project)])
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "Damaged saved results: gradients, search" in text
    assert "The spec or its input files changed" not in text
    assert "selections (final" not in text  # the damaged search's results are left out


def test_report_shows_the_results_whatever_became_of_the_report_json_in_the_project_folder(project: Path) -> None:
    """`report` read the project folder's report.json, the user's copy: edited into a list
    (or any other shape) it stopped with an internal error (AttributeError)."""
    (project / "report.json").write_text("[]")
    for args in (["report", str(project)], ["report", str(project), "--format", "json"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0 and "internal error" not in result.output, result.output
        assert "exhaustive" in result.output


def test_a_damaged_cached_fine_tune_is_trained_again_not_reused(project: Path) -> None:
    """A damaged cache entry was copied back unchecked ("reused"), committed with fresh
    checksums, and evaluate then failed with an internal error on every later run."""
    cached = sorted((project / rf.STATE / "cache" / "finetune").glob("*/adapter/adapter_model.safetensors"))
    assert cached
    for path in cached:
        truncate(path)
    reporter = SilentReporter()
    run_project(project, ["finetune.seeds=2"], reporter=reporter)  # re-runs finetune: seed 0 from the cache
    assert sum("cached fine-tune" in w and "is damaged" in w for w in reporter.warnings) == len(cached)
    summary = rf.manifest(project, "finetune")["summary"]
    assert summary["trained_now"] == summary["runs"], summary  # nothing damaged was reused
    assert rf.manifest(project, "evaluate")
    # said while it ran; not kept for the report, where after the repair it would read as a problem
    assert not any("is damaged" in w for w in rf.manifest(project, "finetune").get("warnings", []))


def test_a_damaged_adapter_that_reaches_a_loader_is_a_user_error(project: Path) -> None:
    """Entries cached before checksums were kept are not checked: loading one must name
    the folder and the fix, not print an internal error."""
    from subsetctl.errors import UserError
    from subsetctl.modeling.lora import adapter_fingerprint

    adapter = next((project / rf.STATE / "finetune").rglob("adapter_model.safetensors"))
    truncate(adapter)
    with pytest.raises(UserError, match=r"cannot be read .* damaged\. Compute it again with `subsetctl run "
                                        rf"{re.escape(str(project.resolve()))} --force finetune`"):
        adapter_fingerprint(adapter.parent)


@pytest.fixture(scope="module")
def data_prepared(made_once_per_run: Callable[[str, Callable[[Path], object]], Path]) -> Path:
    """A project of :func:`relfixtures.data_spec` after `subsetctl run --until data`, once for
    the whole test run (copied by each test: a copy is up to date, its files being the same)."""
    folder = made_once_per_run("corruption-data-prepared",
                               lambda folder: run_project(rf.make_project(folder / "p", rf.data_spec()), until="data"))
    return folder / "p"


@pytest.mark.parametrize("damage", ["truncate", "flip", "state"])
def test_a_damaged_source_of_a_data_stage_stopped_partway_is_prepared_again(tmp_path: Path, data_prepared: Path,
                                                                             damage: str) -> None:
    """A prepared source of a data stage that had not committed (stopped partway: no
    manifest, so no checksums) was reused unchecked: a truncated Arrow file or state.json
    stopped every later `run` with an internal error, and an altered byte could crash it
    (SIGSEGV in pyarrow) or be read as data."""
    project = shutil.copytree(data_prepared, tmp_path / "p")
    data = project / rf.STATE / "data"
    arrow = next((data / "a" / "train").glob("*.arrow"))
    original = arrow.read_bytes()
    (data / "manifest.json").unlink()  # as a run killed before the stage committed leaves it
    if damage == "truncate":
        arrow.write_bytes(original[: len(original) // 2])
    elif damage == "flip":
        flip_middle_byte(arrow)
    else:
        (data / "a" / "train" / "state.json").write_text("{")
    result = rf.run_cli(project, "run", str(project), "--until", "data", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "internal error" not in result.stderr
    assert arrow.read_bytes() == original
    assert rf.manifest(project, "data")["summary"]["reused"] == ["target", "b"]


def test_report_leaves_out_the_files_of_a_stage_stopped_before_it_finished(project: Path) -> None:
    """A stage stopped after writing its results but before committing them (no manifest)
    had them shown by `report` as finished (selections, calibrated estimates), unchecked;
    one of them damaged stopped `report` with an internal error (JSONDecodeError)."""
    for stage in ("search", "finetune", "evaluate", "report"):
        (project / rf.STATE / stage / "manifest.json").unlink()
    (project / "report.json").unlink()
    shown = CliRunner().invoke(main, ["report", str(project), "--format", "json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert "search" in data["unfinished"], data["unfinished"]
    for key in ("final", "strategies", "baselines", "adapters", "test_metrics"):
        assert key not in data["report"], key
    assert "data_warnings" in data["report"]  # the data stage finished: its warnings are shown
    (project / rf.STATE / "evaluate" / "metrics.json").write_text('{"metrics": ')
    (project / rf.STATE / "search" / "selections.json").write_bytes(b"\xff\x00")
    for args in (["report", str(project)], ["report", str(project), "--format", "json"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0 and "internal error" not in result.output, result.output


@pytest.mark.parametrize("name", ["outputs.npy", "features.npy"])
def test_a_cut_short_array_of_an_unfinished_gradient_store_is_not_read_as_zeros(
    project: Path, finished: Path, name: str
) -> None:
    """A gradient store a run stopped partway through (no manifest: no checksums) with an
    array file cut short was opened writable, which extends the file with zeros: the rows
    written.npy marked done were committed as zeros, changing the estimates downstream."""
    store = project / rf.STATE / "gradients" / "store"
    (project / rf.STATE / "gradients" / "manifest.json").unlink()
    truncate(store / name)
    run_project(project)
    for array in ("outputs.npy", "features.npy"):
        np.testing.assert_allclose(np.load(store / array), np.load(finished / rf.STATE / "gradients" / "store" / array),
                                   atol=1e-6, err_msg=array)


@pytest.mark.parametrize(("stage", "name", "content"), [
    ("finetune", "runs.json", b'{"3e67": {"loss"'), ("finetune", "runs.json", b"[]"),
    ("evaluate", "per_run.json", b"\xc9garbage"), ("evaluate", "per_run.json", b'{"x": 1}'),
])
def test_a_damaged_record_of_finished_work_is_not_used(project: Path, finished: Path, stage: str, name: str,
                                                       content: bytes) -> None:
    """A stage stopped partway keeps a record of the work it finished (finetune's
    runs.json, evaluate's per_run.json, verify's results.json); one damaged stopped every
    later `run` with an internal error (JSONDecodeError, AttributeError, ...) until it was
    deleted by hand."""
    (project / rf.STATE / stage / "manifest.json").unlink()
    (project / rf.STATE / stage / name).write_bytes(content)
    result = CliRunner().invoke(main, ["run", str(project), "-q"])
    assert result.exit_code == 0 and "internal error" not in result.output, result.output
    assert f"{stage}: " in result.output and "is damaged; it is not used" in result.output
    assert (json.loads((project / rf.STATE / stage / name).read_text())
            == json.loads((finished / rf.STATE / stage / name).read_text()))


@pytest.mark.parametrize("content", ["[]", "{}", '{"score": 1}', ('{"score": "abc", "loss_ce": 4.6, "metric": '
                                     '"exact_match", "n": 5, "metrics": {}, "warnings": []}')])
def test_a_cached_test_result_of_another_shape_is_evaluated_again(project: Path, finished: Path, content: str) -> None:
    """A cached evaluation (or verify fine-tune) that is JSON but not a result stopped the
    stage with an internal error (AttributeError, KeyError) on every run."""
    (project / rf.STATE / "evaluate" / "manifest.json").unlink()
    (project / rf.STATE / "evaluate" / "per_run.json").unlink()
    for entry in (project / rf.STATE / "cache" / "evaluate").glob("*.json"):
        entry.write_text(content)
    result = CliRunner().invoke(main, ["run", str(project), "-q"])
    assert result.exit_code == 0 and "internal error" not in result.output, result.output
    assert (json.loads((project / rf.STATE / "evaluate" / "metrics.json").read_text())
            == json.loads((finished / rf.STATE / "evaluate" / "metrics.json").read_text()))


def test_a_result_whose_values_are_of_other_types_is_damaged() -> None:
    """A hand-edited test result or verify fine-tune (a score of "abc", warnings that are
    not a list) passed as a result and stopped the stage or the report with an internal
    error (ValueError, TypeError) on every run."""
    from subsetctl.stages import common, evaluate, verify

    tested = {"score": 0.5, "loss_ce": None, "metric": "exact_match", "n": 5, "metrics": {}, "warnings": []}
    assert common.is_record(tested, evaluate.RESULT_KEYS)
    for key, value in [("score", "abc"), ("score", None), ("warnings", "abc"), ("metrics", 1), ("n", "5")]:
        assert not common.is_record({**tested, key: value}, evaluate.RESULT_KEYS), key
    assert common.is_record({"true": 4.6, "diverged": False}, verify.RESULT_KEYS)
    assert common.is_record({"true": None, "diverged": True}, verify.RESULT_KEYS)  # a diverged run
    assert not common.is_record({"true": "abc", "diverged": False}, verify.RESULT_KEYS)
    assert not common.is_record({"true": 4.6, "diverged": "no"}, verify.RESULT_KEYS)


def test_cache_entries_of_the_wrong_kind_are_computed_again(project: Path, finished: Path) -> None:
    """A cache entry that is a file where a folder belongs (a fine-tune, the search's store)
    or a folder where a file belongs (a test result) stopped every later `run` with an
    error asking to move it aside by hand; the cache is safe to delete, so it is recomputed."""
    cache = project / rf.STATE / "cache"
    swapped = [*(cache / "finetune").iterdir(), *(cache / "search").iterdir(), *(cache / "evaluate").glob("*.json")]
    for entry in swapped:
        if entry.is_dir():
            shutil.rmtree(entry)
            entry.write_text("x")
        else:
            entry.unlink()
            entry.mkdir()
    for stage, work in (("search", None), ("finetune", "runs.json"), ("evaluate", "per_run.json")):
        for name in ("manifest.json", work):  # started again, with no work finished
            if name:
                (project / rf.STATE / stage / name).unlink()
    result = CliRunner().invoke(main, ["run", str(project), "-q"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert text.count("where subsetctl keeps a") == len(swapped) - 1, text  # the store: "reset"
    assert "subset results store" in text and "was reset: it was a file" in text
    assert all(entry.is_dir() != entry.name.endswith(".json") for entry in swapped)
    assert (json.loads((project / rf.STATE / "evaluate" / "metrics.json").read_text())
            == json.loads((finished / rf.STATE / "evaluate" / "metrics.json").read_text()))


def test_report_leaves_out_a_damaged_finetune_runs_record_not_an_internal_error(project: Path) -> None:
    """The report rebuilt from the other stages' results read the finetune stage's runs.json
    (the seeds that diverged) though that stage was damaged and left out: a truncated one
    stopped `report` with an internal error (JSONDecodeError)."""
    truncate(project / rf.STATE / "finetune" / "runs.json")
    result = CliRunner().invoke(main, ["report", str(project)])
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "internal error" not in text, result.output
    assert "Damaged saved results: finetune" in text
