"""A stage's previous results are kept when a run with other inputs replaces them, and put
back (not recomputed) when the spec returns to their inputs (``project.keep_previous``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tinymodels import change_data_of

from subsetctl.api import plan_project, run_project
from subsetctl.project import Project


def _actions(results: list[dict]) -> dict[str, str]:
    return {r["stage"]: r["action"] for r in results}


def _store(project: Project) -> Path:
    return project.stage_dir("gradients") / "store" / "features.npy"


def test_going_back_to_earlier_inputs_puts_the_previous_results_back(tiny_project_ran) -> None:
    """gradients.d: 16, then 8, then 16 again: the third run recomputed the d=16 store."""
    tiny_project = tiny_project_ran("gradients")
    project = Project(tiny_project)
    first = _store(project).read_bytes()
    assert _actions(run_project(tiny_project, until="gradients", overrides=["gradients.d=8"]))["gradients"] == "ran"
    second = _store(project).read_bytes()
    assert second != first and len(project.read_previous_manifests("gradients")) == 1
    statuses = {s.name: s for s in plan_project(tiny_project, until="gradients")[2]}
    assert statuses["gradients"].state == "up to date" and not statuses["gradients"].will_run
    assert "results from an earlier run" in statuses["gradients"].reasons[0]
    assert _actions(run_project(tiny_project, until="gradients"))["gradients"] == "up to date"
    assert _store(project).read_bytes() == first
    # the d=8 results are the previous ones now: back and forth costs nothing
    assert _actions(run_project(tiny_project, until="gradients", overrides=["gradients.d=8"]))["gradients"] == "up to date"
    assert _store(project).read_bytes() == second


def test_previous_results_whose_upstream_reruns_are_put_back(tiny_project_ran) -> None:
    """A change of the data (a source's max_examples), undone: data re-runs to its earlier
    output and meta_init's previous results are put back, as `plan` says beforehand."""
    tiny_project = tiny_project_ran("meta_init")
    project = Project(tiny_project)
    adapter = project.stage_dir("meta_init") / "adapter" / "adapter_model.safetensors"
    before = adapter.read_bytes()
    original = change_data_of(tiny_project)
    assert _actions(run_project(tiny_project, until="meta_init"))["meta_init"] == "ran"
    (tiny_project / "subsetctl.yaml").write_text(original)
    statuses = {s.name: s for s in plan_project(tiny_project, until="meta_init")[2]}
    assert not statuses["data"].will_run and not statuses["meta_init"].will_run  # both kept
    shutil.rmtree(project.previous_dir("data"))  # data must re-run: meta_init's depend on its output
    statuses = {s.name: s for s in plan_project(tiny_project, until="meta_init")[2]}
    assert statuses["meta_init"].will_run and statuses["meta_init"].conditional  # skipped if data comes out as before
    assert "upstream data" in statuses["meta_init"].reasons[0]
    assert "previous results were made from" in statuses["meta_init"].reasons[0]
    assert _actions(run_project(tiny_project, until="meta_init")) == {"data": "ran", "meta_init": "up to date"}
    assert adapter.read_bytes() == before


def test_keep_previous_false_keeps_nothing(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran("gradients")
    project = Project(tiny_project)
    run_project(tiny_project, until="gradients", overrides=["gradients.d=8"])
    assert project.previous_dir("gradients").is_dir()
    run_project(tiny_project, until="gradients", overrides=["gradients.d=8", "project.keep_previous=false"])
    assert not (project.state_dir / ".previous").exists()  # switched off: the disk is given back
    run_project(tiny_project, until="gradients", overrides=["project.keep_previous=false"])
    assert not (project.state_dir / ".previous").exists()


def test_a_swap_cut_short_loses_no_results(tiny_project_ran) -> None:
    """Killed between the renames of a swap: the results out of the stage's folder for an
    instant come back when `run` next starts."""
    tiny_project = tiny_project_ran("gradients")
    project = Project(tiny_project)
    first = _store(project).read_bytes()
    run_project(tiny_project, until="gradients", overrides=["gradients.d=8"])
    swap = project.state_dir / ".previous" / ".gradients.swap"
    os.replace(project.stage_dir("gradients"), swap)  # the first rename of a swap, then the kill
    status = {s.name: s for s in plan_project(tiny_project, ["gradients.d=8"], until="gradients")[2]}["gradients"]
    assert "completes the swap first" in " ".join(status.reasons), status.reasons  # the d=8 ones are in the swap
    assert _actions(run_project(tiny_project, until="gradients"))["gradients"] == "up to date"
    assert _store(project).read_bytes() == first and not swap.exists()
    assert _actions(run_project(tiny_project, until="gradients", overrides=["gradients.d=8"]))["gradients"] == "up to date"


def test_damaged_previous_results_are_not_put_back(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran("gradients")
    project = Project(tiny_project)
    run_project(tiny_project, until="gradients", overrides=["gradients.d=8"])
    kept = project.previous_sets("gradients")[0] / "store" / "features.npy"
    data = bytearray(kept.read_bytes())
    data[-1] ^= 0xFF
    kept.write_bytes(bytes(data))
    statuses = {s.name: s for s in plan_project(tiny_project, until="gradients")[2]}
    assert statuses["gradients"].will_run
    assert _actions(run_project(tiny_project, until="gradients"))["gradients"] == "ran"


def test_the_report_is_written_again_not_put_back(tiny_project_ran) -> None:
    """The report stage writes report.md in the project folder, which putting back its
    previous folder would not restore: going back re-runs it."""
    tiny_project = tiny_project_ran()
    project = Project(tiny_project)
    run_project(tiny_project, overrides=["project.name=renamed"])
    assert "renamed" in (tiny_project / "report.md").read_text()
    assert not project.previous_dir("report").exists()
    assert _actions(run_project(tiny_project))["report"] == "ran"
    assert "renamed" not in (tiny_project / "report.md").read_text()


def test_plan_does_not_promise_previous_results_that_keep_previous_false_deletes(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran("gradients")
    run_project(tiny_project, until="gradients", overrides=["gradients.d=8"])
    off = ["project.keep_previous=false"]
    statuses = {s.name: s for s in plan_project(tiny_project, off, until="gradients")[2]}
    assert statuses["gradients"].will_run and not statuses["gradients"].put_back
    assert _actions(run_project(tiny_project, until="gradients", overrides=off))["gradients"] == "ran"


def test_the_report_says_the_results_shown_are_of_other_inputs_until_run_swaps(tiny_project_ran) -> None:
    """Back to d=16 after a full run with d=8: `plan` calls gradients and what follows up to
    date (their previous results come back), but the report showed the d=8 results as the
    spec's."""
    from subsetctl.report.terminal import load_report_data, outdated_note

    tiny_project = tiny_project_ran()
    run_project(tiny_project, overrides=["gradients.d=8"])
    data = load_report_data(tiny_project)
    assert "gradients" in data["previous"] and "search" in data["previous"]
    assert "other inputs" in (outdated_note(data) or "")
    run_project(tiny_project)
    data = load_report_data(tiny_project)
    assert data["previous"] == [] and data["stale"] == [] and outdated_note(data) is None


def test_a_forced_run_keeps_the_results_it_replaces(tiny_project_ran) -> None:
    """`run --force gradients` with d=16 while the folder held d=8 results deleted them."""
    tiny_project = tiny_project_ran("gradients")
    run_project(tiny_project, until="gradients", overrides=["gradients.d=8"])
    project = Project(tiny_project)
    eight = _store(project).read_bytes()
    assert _actions(run_project(tiny_project, until="gradients", force=["gradients"]))["gradients"] == "ran"
    assert _actions(run_project(tiny_project, until="gradients", overrides=["gradients.d=8"]))["gradients"] == "up to date"
    assert _store(project).read_bytes() == eight


def test_plan_and_run_say_what_they_put_back(tiny_project_ran) -> None:
    """`plan` said "`run` would do nothing" and `run` "nothing to do" while they put three
    stages' previous results back."""
    from click.testing import CliRunner

    from subsetctl.cli import main

    tiny_project = tiny_project_ran("search")
    run_project(tiny_project, until="search", overrides=["gradients.d=8"])
    runner = CliRunner()
    plan = runner.invoke(main, ["plan", str(tiny_project), "--until", "search"], terminal_width=200)
    assert plan.exit_code == 0, plan.output
    assert "put back" in plan.output and "would do nothing" not in plan.output
    assert "puts back the kept results of gradients, calibrate, search" in plan.output
    ran = runner.invoke(main, ["run", str(tiny_project), "--until", "search"], terminal_width=200)
    assert ran.exit_code == 0, ran.output
    assert "put back gradients, calibrate, search" in " ".join(ran.output.split()), ran.output


def test_plan_says_what_the_kept_results_take_on_disk(tiny_project_ran) -> None:
    """Previous results can double a project's size: `plan` says how much they take
    (a file hard-linked into the current results counts once, there)."""
    from types import SimpleNamespace

    from subsetctl.cli import _kept_line

    tiny_project = tiny_project_ran("gradients")
    project = Project(tiny_project)
    assert project.kept_bytes()["previous"] == 0
    run_project(tiny_project, until="gradients", overrides=["gradients.d=8"])
    store = sum(p.stat().st_size for p in project.previous_dir("gradients").rglob("*") if p.is_file())
    assert project.kept_bytes()["previous"] == store > 0
    # a file linked into the current results counts once, there
    linked = project.previous_sets("gradients")[0] / "store" / "features.npy"
    os.link(linked, project.stage_dir("gradients") / "extra-link")
    assert project.kept_bytes()["previous"] == store - linked.stat().st_size
    line = _kept_line(SimpleNamespace(kept_bytes=lambda: {"previous": 2_500_000_000, "set_aside": 0, "cache": 3_000}))
    assert line is not None and "2.5 GB of previous results" in line and "keep_previous: false" in line
    assert "cache" not in line
    assert _kept_line(SimpleNamespace(kept_bytes=lambda: {"previous": 10, "set_aside": 0, "cache": 10})) is None
    # the spec already says false: the next run frees it (the advice to set it was taken)
    off = _kept_line(SimpleNamespace(kept_bytes=lambda: {"previous": 2_500_000, "set_aside": 0, "cache": 0}), False)
    assert off is not None and "the next `run` deletes it" in off and "keep_previous: false` frees" not in off


def test_the_same_data_from_other_inputs_keeps_what_follows(tiny_project_ran, same_jsonl_plugin) -> None:
    """Each source's record (its key: loader code, versions) was part of the data stage's
    output: a data run giving the same rows still re-ran meta_init and all after it. (A
    plugin registered as the jsonl loader that loads as it does: every source's key
    changes, and so do the stage's inputs, not the rows.)"""
    tiny_project = tiny_project_ran("meta_init")
    plugin = same_jsonl_plugin(tiny_project)
    actions = _actions(run_project(tiny_project, until="meta_init", overrides=[f"plugins=[{plugin}]"]))
    assert actions == {"data": "ran", "meta_init": "up to date"}


def test_shards_complete_a_swap_cut_short_first(tiny_project_ran) -> None:
    """`run --shard` after a kill inside a swap deleted the only copy of the results."""
    tiny_project = tiny_project_ran("gradients")
    project = Project(tiny_project)
    run_project(tiny_project, until="gradients", overrides=["gradients.d=8"])
    eight = _store(project).read_bytes()
    (project.state_dir / ".previous").mkdir(exist_ok=True)
    os.replace(project.stage_dir("gradients"), project.state_dir / ".previous" / ".gradients.swap")
    run_project(tiny_project, options={"shard": (0, 2)})
    assert _actions(run_project(tiny_project, until="gradients", overrides=["gradients.d=8"]))["gradients"] == "up to date"
    assert _store(project).read_bytes() == eight


def test_a_kill_between_commit_and_keeping_the_replaced_results_loses_nothing(tiny_project_ran,
                                                                             monkeypatch) -> None:
    tiny_project = tiny_project_ran("gradients")
    project = Project(tiny_project)
    sixteen = _store(project).read_bytes()
    real = Project.keep_as_previous

    def killed(self, stage, keep=1):
        raise KeyboardInterrupt

    monkeypatch.setattr(Project, "keep_as_previous", killed)
    with pytest.raises(KeyboardInterrupt):
        run_project(tiny_project, until="gradients", overrides=["gradients.d=8"])
    monkeypatch.setattr(Project, "keep_as_previous", real)
    assert project.set_aside_dir("gradients").is_dir() and project.read_manifest("gradients") is not None
    assert _actions(run_project(tiny_project, until="gradients", overrides=["gradients.d=8"]))["gradients"] == "up to date"
    assert not project.set_aside_dir("gradients").exists()
    assert _actions(run_project(tiny_project, until="gradients"))["gradients"] == "up to date"
    assert _store(project).read_bytes() == sixteen


def test_a_forced_run_keeps_results_a_failed_run_set_aside(tiny_project_ran, monkeypatch) -> None:
    from subsetctl.errors import UserError
    from subsetctl.stages.gradients import GradientsStage

    tiny_project = tiny_project_ran("gradients")
    project = Project(tiny_project)
    sixteen = _store(project).read_bytes()
    real = GradientsStage.run
    monkeypatch.setattr(GradientsStage, "run", lambda self, ctx: (_ for _ in ()).throw(UserError("failed inside")))
    with pytest.raises(UserError):
        run_project(tiny_project, until="gradients", overrides=["gradients.d=8"])
    monkeypatch.setattr(GradientsStage, "run", real)
    assert project.set_aside_dir("gradients").is_dir()
    run_project(tiny_project, until="gradients", overrides=["gradients.d=8"], force=["gradients"])
    assert _actions(run_project(tiny_project, until="gradients"))["gradients"] == "up to date"
    assert _store(project).read_bytes() == sixteen


def test_plan_until_promises_no_put_back_after_it(tiny_project_ran) -> None:
    tiny_project = tiny_project_ran("search")
    run_project(tiny_project, until="search", overrides=["gradients.d=8"])
    statuses = {s.name: s for s in plan_project(tiny_project, until="gradients")[2]}
    assert statuses["gradients"].put_back
    assert not statuses["calibrate"].put_back and not statuses["search"].put_back


def test_a_damaged_manifest_does_not_cost_the_set_aside_results_with_keep_previous_off(tiny_project: Path,
                                                                                      monkeypatch) -> None:
    from subsetctl.errors import UserError
    from subsetctl.stages.gradients import GradientsStage

    off = ["project.keep_previous=false"]
    run_project(tiny_project, until="gradients", overrides=off)
    project = Project(tiny_project)
    sixteen = _store(project).read_bytes()
    real = GradientsStage.run
    monkeypatch.setattr(GradientsStage, "run", lambda self, ctx: (_ for _ in ()).throw(UserError("failed inside")))
    with pytest.raises(UserError):
        run_project(tiny_project, until="gradients", overrides=["gradients.d=8", *off])
    monkeypatch.setattr(GradientsStage, "run", real)
    assert project.set_aside_dir("gradients").is_dir()
    (project.stage_dir("gradients") / "manifest.json").write_text("{not json")  # no commit: a damaged file
    results = run_project(tiny_project, until="gradients", overrides=off)
    assert _actions(results)["gradients"] != "ran"  # put back, not recomputed
    assert _store(project).read_bytes() == sixteen


def test_plan_of_a_stage_stopped_partway_after_setting_results_aside_says_it_resumes(tiny_project_ran,
                                                                                     monkeypatch) -> None:
    """A run with other inputs set the gradients aside, then stopped partway (Ctrl-C): plan
    said both "`run` computes it anew" and "`run` resumes its work"; it resumes."""
    from subsetctl.gradients.store import GradientStore

    tiny_project = tiny_project_ran("gradients")
    real, calls = GradientStore.write, []

    def stopped(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(GradientStore, "write", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_project(tiny_project, until="gradients", overrides=["gradients.d=8"])
    monkeypatch.setattr(GradientStore, "write", real)
    assert Project(tiny_project).set_aside_dir("gradients").is_dir()
    gradients = {s.name: s for s in plan_project(tiny_project, ["gradients.d=8"], until="gradients")[2]}["gradients"]
    assert gradients.state == "unfinished", gradients.reasons
    assert "resumes" in " ".join(gradients.reasons) and "anew" not in " ".join(gradients.reasons)


def test_going_back_two_settings_puts_every_stage_back(tiny_project_ran) -> None:
    """An ablation: meta_init.steps 4, then 2, then 3, then 4 again. One previous set per
    stage kept the steps=3 results only: the last run trained meta_init and computed the
    gradients again."""
    tiny_project = tiny_project_ran("gradients")
    project = Project(tiny_project)
    first = _store(project).read_bytes()
    for steps in (2, 3):
        actions = _actions(run_project(tiny_project, until="gradients", overrides=[f"meta_init.steps={steps}"]))
        assert actions["meta_init"] == actions["gradients"] == "ran"
    statuses = {s.name: s for s in plan_project(tiny_project, until="gradients")[2]}
    assert statuses["meta_init"].put_back and statuses["gradients"].put_back
    assert not statuses["meta_init"].will_run and not statuses["gradients"].will_run
    results = {r["stage"]: r for r in run_project(tiny_project, until="gradients")}
    assert all(results[name]["action"] == "up to date" and results[name].get("put_back")
               for name in ("meta_init", "gradients")), results
    assert _store(project).read_bytes() == first
    assert len(project.previous_sets("meta_init")) == len(project.previous_sets("gradients")) == 2  # steps 2 and 3


def test_a_strategy_param_set_back_to_its_default_puts_the_search_back(tiny_project_ran) -> None:
    """A sweep's variant `...gradient_similarity.params.top_k=1`, then `top_k=null` (its
    default), or `threshold=0.0` (its default, written out): the search made without them is
    put back, or up to date, not run again; it ran again because its slice held `top_k: None`
    or `threshold: 0.0` where the other held no key."""
    tiny_project = tiny_project_ran("search")
    key = "search.strategies.gradient_similarity.params"
    assert _actions(run_project(tiny_project, until="search", overrides=[f"{key}.top_k=1"]))["search"] == "ran"
    statuses = {s.name: s for s in plan_project(tiny_project, until="search", overrides=[f"{key}.top_k=null"])[2]}
    assert statuses["search"].put_back and not statuses["search"].will_run, statuses["search"].reasons
    results = {r["stage"]: r for r in run_project(tiny_project, until="search", overrides=[f"{key}.top_k=null"])}
    assert results["search"]["action"] == "up to date" and results["search"].get("put_back"), results
    statuses = {s.name: s for s in plan_project(tiny_project, until="search", overrides=[f"{key}.threshold=0.0"])[2]}
    assert statuses["search"].state == "up to date" and not statuses["search"].will_run, statuses["search"].reasons
    statuses = {s.name: s for s in plan_project(tiny_project, until="search", overrides=[f"{key}.threshold=0.1"])[2]}
    assert statuses["search"].will_run  # another value is another search


def test_a_search_recorded_with_default_params_as_written_stays_up_to_date(tiny_project_ran, monkeypatch) -> None:
    """A spec that writes `top_k: null, threshold: 0.0` (the defaults; the quickstart writes
    `alpha: 0.5, select: sign`), its search made by a subsetctl that counted them as written:
    its results are up to date as they are (not swapped for the kept ones made without
    them, nor re-run)."""
    import yaml

    from subsetctl.stages.search import SearchStage

    tiny_project = tiny_project_ran("search")
    spec_file = tiny_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["search"]["strategies"][1]["params"] = {"top_k": None, "threshold": 0.0}
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    with monkeypatch.context() as patched:
        patched.setattr(SearchStage, "spec_slice", SearchStage._slice_as_written)
        run_project(tiny_project, until="search")
    statuses = {s.name: s for s in plan_project(tiny_project, until="search")[2]}
    search = statuses["search"]
    assert search.state == "up to date" and not search.will_run and not search.put_back, search.reasons  # as they are


def test_the_oldest_previous_sets_go_beyond_keep_previous(tiny_project_ran) -> None:
    """keep_previous: 2 and four settings of gradients.d: the first is dropped, the two
    after it are put back; lowering the number drops the oldest beyond it, but not before
    one the spec asks for is put back (as `plan` promised)."""
    tiny_project = tiny_project_ran("gradients")
    project = Project(tiny_project)
    two = ["project.keep_previous=2"]
    stores = {}
    for d in (8, 12, 4):
        run_project(tiny_project, until="gradients", overrides=[f"gradients.d={d}", *two])
        stores[d] = _store(project).read_bytes()
    assert len(project.previous_sets("gradients")) == 2  # d=8 and d=12: the d=16 set went first
    statuses = {s.name: s for s in plan_project(tiny_project, two, until="gradients")[2]}
    assert statuses["gradients"].will_run and not statuses["gradients"].put_back
    for d in (8, 12):
        statuses = {s.name: s for s in plan_project(tiny_project, [f"gradients.d={d}", *two], until="gradients")[2]}
        assert statuses["gradients"].put_back, d
    # the oldest set, asked for with a lower limit: put back first, then the limit drops the d=12 set
    actions = _actions(run_project(tiny_project, until="gradients", overrides=["gradients.d=8", "project.keep_previous=1"]))
    assert actions["gradients"] == "up to date" and _store(project).read_bytes() == stores[8]
    assert len(project.previous_sets("gradients")) == 1  # d=4's, just kept
    actions = _actions(run_project(tiny_project, until="gradients", overrides=["gradients.d=12", "project.keep_previous=1"]))
    assert actions["gradients"] == "ran"


def test_previous_results_an_earlier_subsetctl_kept_are_put_back(tiny_project_ran) -> None:
    """The one previous set an earlier subsetctl kept in .previous/<stage> itself is put
    back, and kept among the sets once a run adds another."""
    tiny_project = tiny_project_ran("gradients")
    project = Project(tiny_project)
    first = _store(project).read_bytes()
    run_project(tiny_project, until="gradients", overrides=["gradients.d=8"])
    (only,) = project.previous_sets("gradients")
    os.replace(only, project.state_dir / "moved")
    shutil.rmtree(project.previous_dir("gradients"))
    os.replace(project.state_dir / "moved", project.previous_dir("gradients"))  # the earlier layout
    assert project.previous_sets("gradients") == [project.previous_dir("gradients")]
    run_project(tiny_project, until="gradients", overrides=["gradients.d=4"])  # d=8 kept as it was, and d=4's
    assert len(project.previous_sets("gradients")) == 2
    assert not (project.previous_dir("gradients") / "manifest.json").exists()
    assert _actions(run_project(tiny_project, until="gradients"))["gradients"] == "up to date"
    assert _store(project).read_bytes() == first


def test_keep_previous_takes_true_false_or_a_count() -> None:
    from pydantic import ValidationError

    from subsetctl.spec.models import DEFAULT_PREVIOUS_SETS, ProjectSpec

    assert ProjectSpec(keep_previous=True).sets_to_keep == DEFAULT_PREVIOUS_SETS
    assert ProjectSpec(keep_previous=False).sets_to_keep == ProjectSpec(keep_previous=0).sets_to_keep == 0
    assert ProjectSpec(keep_previous=1).sets_to_keep == ProjectSpec(keep_previous="1").sets_to_keep == 1
    with pytest.raises(ValidationError) as refused:
        ProjectSpec(keep_previous=-1)
    assert refused.value.error_count() == 1 and "a whole number from 0 to 100" in str(refused.value)


def _two_previous_gradient_sets(tiny_project_ran) -> tuple[Path, Path, Path, int]:
    """The project run with gradients.d 16, 8 then 4: its two previous gradients sets (d=8's,
    then d=16's) and the bytes of the newer one."""
    tiny_project = tiny_project_ran("gradients")
    for d in (8, 4):
        run_project(tiny_project, until="gradients", overrides=[f"gradients.d={d}"])
    newer, older = Project(tiny_project).previous_sets("gradients")
    return tiny_project, newer, older, sum(p.stat().st_size for p in newer.rglob("*") if p.is_file())


def test_keep_previous_gb_drops_the_sets_kept_least_recently(tiny_project_ran) -> None:
    """Gradient stores take gigabytes: `project.keep_previous_gb` bounds the disk the
    previous sets take, of all stages together, the least recently kept going first."""
    tiny_project, newer, older, newer_size = _two_previous_gradient_sets(tiny_project_ran)
    project = Project(tiny_project)
    limit = ["gradients.d=4", f"project.keep_previous_gb={(newer_size + 1) / 1e9!r}"]
    assert _actions(run_project(tiny_project, until="gradients", overrides=limit))["gradients"] == "up to date"
    assert project.previous_sets("gradients") == [newer] and not older.exists()
    assert project.kept_bytes()["previous"] == newer_size
    statuses = {s.name: s for s in plan_project(tiny_project, ["gradients.d=8"], until="gradients")[2]}
    assert statuses["gradients"].put_back and not statuses["meta_init"].will_run


def test_an_earlier_subsetctls_previous_set_moved_in_halfway_is_recovered(tmp_path: Path) -> None:
    """The one previous set an earlier subsetctl kept in `.previous/<stage>` itself is moved
    into a subfolder in two renames (:meth:`Project._previous_as_sets`); a kill between them
    leaves `.previous/.<stage>.sets`, which the next run's :meth:`Project.recover_swaps` moves
    in under its fingerprint, its files intact (it was untested)."""
    from subsetctl.project import atomic_write_json

    (tmp_path / "subsetctl.yaml").write_text("project: {name: x}\n")
    project = Project(tmp_path)
    moving = project.state_dir / ".previous" / ".gradients.sets"
    moving.mkdir(parents=True)
    atomic_write_json(moving / "manifest.json", {"fingerprint": "0123456789abcdef0123"})
    (moving / "features.npy").write_bytes(b"rows")
    project.recover_swaps()
    kept = project.previous_sets("gradients")
    assert kept == [project.previous_dir("gradients") / "0123456789abcdef"] and not moving.exists()
    assert (kept[0] / "features.npy").read_bytes() == b"rows"
    assert [folder for folder, _ in project.read_previous_manifests("gradients")] == kept


def test_shard_runs_trim_the_kept_sets_once_no_other_shard_run_is_computing(tiny_project_ran) -> None:
    """`run --shard` keeps `project.keep_previous`, `keep_previous_gb` and `cache_limit_gb` as a
    plain run does, but only as the last shard run to finish: while another holds the
    project's shared lock, nothing kept is deleted under it."""
    from test_shards import _hold_lock, _release

    tiny_project, newer, older, newer_size = _two_previous_gradient_sets(tiny_project_ran)
    project = Project(tiny_project)
    limit = ["gradients.d=4", f"project.keep_previous_gb={(newer_size + 1) / 1e9!r}", "project.cache_limit_gb=1e-9"]
    cached = project.state_dir / "cache" / "verify" / "0123456789abcdef.json"  # a verify run used long ago
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text("{}")
    os.utime(cached, (1e9, 1e9))
    holder = _hold_lock(tiny_project, shared=True)  # another shard run, still computing
    try:
        run_project(tiny_project, overrides=limit, options={"shard": (0, 2)})
    finally:
        _release(holder)
    assert project.previous_sets("gradients") == [newer, older] and cached.exists()  # left to the last shard run
    run_project(tiny_project, overrides=limit, options={"shard": (1, 2)})
    assert project.previous_sets("gradients") == [newer] and not older.exists() and not cached.exists()
    run_project(tiny_project, overrides=["gradients.d=4", "project.keep_previous=0"], options={"shard": (1, 2)})
    assert project.previous_sets("gradients") == []


def test_kept_bytes_walks_the_current_results_only_when_a_kept_file_has_other_links(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`plan` said what kept results take by first listing every file of the current results
    (60,000 stats for 10,000 sources' data stage), to count a kept file linked to one of them
    once: only a file of more than one link can be one, so with none the walk is left out."""
    project = Project(tmp_path)
    for folder, size in ((".previous/gradients/1", 5), (".set-aside/search", 7), ("cache/finetune/x", 11),
                         ("data", 13)):
        (project.state_dir / folder).mkdir(parents=True)
        (project.state_dir / folder / "f").write_bytes(b"x" * size)
    walked = []
    current = Project._current_files
    monkeypatch.setattr(Project, "_current_files", lambda self: walked.append(1) or current(self))
    assert project.kept_bytes() == {"previous": 5, "set_aside": 7, "cache": 11} and not walked
    os.link(project.state_dir / ".previous/gradients/1/f", project.state_dir / "data" / "g")
    assert project.kept_bytes() == {"previous": 0, "set_aside": 7, "cache": 11} and walked
