"""Results reused from the re-run caches (verify fine-tunes, finetune runs, evaluations)
say which library versions computed them, and the report says when those differ from the
current ones; a library upgrade makes nothing stale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from subsetctl import pipeline
from subsetctl.api import plan_project, run_project
from subsetctl.project import Project
from subsetctl.reporter import SilentReporter

BASE = ("verify.enabled=true", "verify.k=3", "verify.steps=1", "verify.kinds=[ce]")


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_results_taken_from_the_caches_record_the_versions_that_computed_them(
        tiny_project_ran, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_project = tiny_project_ran(overrides=BASE)  # a copy of run_project(tiny_project, BASE)
    state = tiny_project / ".subsetctl"
    then = pipeline.library_versions()
    entry = next((state / "cache" / "evaluate").glob("*.json"))
    assert _read(entry)["versions"] == then  # each entry records the versions computing it
    assert _read(state / "verify" / "provenance.json") == {"computed_with": {}}  # all computed now
    assert "other_library_versions" not in _read(tiny_project / "report.json")

    now = {**then, "torch": "99.0"}  # an upgrade of torch between the runs
    monkeypatch.setattr(pipeline, "library_versions", lambda: now)
    assert all(not s.will_run for s in plan_project(tiny_project, list(BASE))[2])  # nothing is stale for it
    old = _read(entry)
    del old["versions"]  # as an earlier subsetctl cached it
    entry.write_text(json.dumps(old))

    run_project(tiny_project, [*BASE, "finetune.seeds=2", "verify.repeats=2"])  # reuses the first runs
    verify = _read(state / "verify" / "provenance.json")["computed_with"]
    assert verify == {f"ce-{i}-0": then for i in range(3)}  # repeat 1's were computed now
    finetune = _read(state / "finetune" / "provenance.json")["computed_with"]
    runs = _read(state / "finetune" / "manifest.json")["summary"]["runs"]
    assert len(finetune) == runs // 2 and all(v == then for v in finetune.values())
    evaluate = _read(state / "evaluate" / "provenance.json")["computed_with"]
    assert sorted(evaluate.values(), key=str) == sorted([None, *[then] * (runs // 2 - 1)], key=str)
    assert "versions" not in json.dumps(_read(state / "evaluate" / "per_run.json"))  # results only

    report = _read(tiny_project / "report.json")["other_library_versions"]
    torch = {"then": then.get("torch"), "now": "99.0"}
    assert report["now"] == now and report["stages"]["data"] == {"torch": torch}  # not re-run: from before
    assert report["reused"]["verify"] == {f"ce-{i}-0": {"torch": torch} for i in range(3)}
    assert sorted(report["reused"]["evaluate"].values(), key=str) == sorted(
        ["unknown", *[{"torch": torch}] * (runs // 2 - 1)], key=str)
    md = (tiny_project / "report.md").read_text()
    assert "Computed with other library versions than the current ones" in md
    assert f"torch {then.get('torch')}, now 99.0" in md and "3 result(s) verify took from the cache" in md
    assert "1 result(s) taken from the cache were computed with library versions not recorded" in md


def test_a_report_of_results_computed_with_the_current_versions_has_no_note() -> None:
    from subsetctl.report.cells import versions_line

    assert versions_line({}) is None
    assert versions_line({"other_library_versions": {"now": {}, "reused": {"verify": {}}}}) is None


def _batch(m: int):
    from subsetctl.estimate.base import EstimateBatch

    return EstimateBatch(loss=np.ones(m), w_norm=np.ones(m), iterations=np.ones(m, dtype=int),
                         converged=np.ones(m, dtype=bool))


def test_the_subset_results_store_records_the_versions_computing_each_row(tmp_path: Path) -> None:
    from subsetctl.estimate.results import DATA_FILE, SubsetResultsStore

    masks = np.array([[True, False], [False, True], [True, True]])
    store = SubsetResultsStore(tmp_path / "s", ["a", "b"], "k", versions={"torch": "1"})
    store.add(masks[:2], _batch(2))
    store = SubsetResultsStore(tmp_path / "s", ["a", "b"], "k", versions={"torch": "2"})  # after an upgrade
    store.add(masks[2:], _batch(1))
    rows = store.rows_of(masks)
    assert store.versions_of(rows) == [({"torch": "1"}, 2), ({"torch": "2"}, 1)]
    # a store an earlier subsetctl wrote (format 1: boolean masks, one file) records none:
    # unknown, and it is kept, not reset
    masks_bool, rest = store.results()
    for path in (tmp_path / "s").glob("subsets*.npz"):
        path.unlink()
    np.savez(tmp_path / "s" / DATA_FILE, masks=masks_bool, loss=rest.loss, w_norm=rest.w_norm,
             iterations=rest.iterations, converged=rest.converged, completed=np.ones(3, dtype=bool))
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    (tmp_path / "s" / "store.json").write_text(json.dumps({**meta, "format": 1}))
    store = SubsetResultsStore(tmp_path / "s", ["a", "b"], "k", versions={"torch": "2"})
    assert store.reset_reason is None and store.versions_of(store.rows_of(masks)) == [(None, 3)]


def test_the_subset_results_store_records_the_thread_counts_computing_each_row(tmp_path: Path) -> None:
    """The search's store recorded the library versions computing each estimate, not the
    thread counts: estimates a re-run took from it had none in report.json's reused_threads."""
    from subsetctl.estimate.results import SubsetResultsStore

    masks = np.array([[True, False], [False, True], [True, True]])
    store = SubsetResultsStore(tmp_path / "s", ["a", "b"], "k", versions={"torch": "1"}, threads={"torch": 1})
    store.add(masks[:2], _batch(2))
    store = SubsetResultsStore(tmp_path / "s", ["a", "b"], "k", versions={"torch": "1"}, threads={"torch": 2})
    store.add(masks[2:], _batch(1))
    store = SubsetResultsStore(tmp_path / "s", ["a", "b"], "k", versions={"torch": "1"})  # read back
    rows = store.rows_of(masks)
    assert store.threads_of(rows) == [({"torch": 1}, 2), ({"torch": 2}, 1)]
    assert store.versions_of(rows) == [({"torch": "1"}, 3)]  # one record of versions, however many counts
    # a store an earlier subsetctl wrote lists versions with no thread counts beside them: not recorded
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    (tmp_path / "s" / "store.json").write_text(json.dumps({key: value for key, value in meta.items() if key != "threads"}))
    store = SubsetResultsStore(tmp_path / "s", ["a", "b"], "k", versions={"torch": "1"}, threads={"torch": 1})
    assert store.threads_of(rows) == [(None, 3)]
    store.add(np.array([[False, False]]), _batch(1))  # computed now: recorded
    assert store.threads_of(store.rows_of(np.array([[False, False]]))) == [({"torch": 1}, 1)]


def test_search_estimates_taken_from_the_store_are_counted_by_the_versions_that_computed_them(
        tiny_project_ran, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_project = tiny_project_ran("search")
    state = tiny_project / ".subsetctl"
    assert _read(state / "search" / "provenance.json")["estimates"] == []  # all computed by that run
    then, threads = pipeline.library_versions(), pipeline.thread_counts()
    monkeypatch.setattr(pipeline, "library_versions", lambda: {**then, "numpy": "9.9"})
    monkeypatch.setattr(pipeline, "thread_counts", lambda: {"torch": 99})  # a shell of another OMP_NUM_THREADS
    reporter = SilentReporter()
    run_project(tiny_project, ["search.strategies=[{name: exhaustive}]"], reporter=reporter)  # all from the store
    groups = _read(state / "search" / "provenance.json")["estimates"]
    assert len(groups) == 1 and groups[0]["versions"] == then and groups[0]["count"] >= 8
    # the thread counts that computed them too (recorded as other stages' reused results are)
    taken = {"subset estimates": [{"threads": threads, "count": groups[0]["count"]}]}
    assert _read(state / "search" / "provenance.json")["threads"] == taken
    assert _read(tiny_project / "report.json")["stages"]["search"]["reused_threads"] == taken
    # the terminal says so too (it said only "Ran search in 0.4 s")
    assert f"search: {groups[0]['count']} subset estimates taken from the store" in "\n".join(reporter.messages)
    assert "computed; 0 computed now." in "\n".join(reporter.messages)
    report = _read(tiny_project / "report.json")["other_library_versions"]
    numpy = {"numpy": {"then": then.get("numpy"), "now": "9.9"}}
    assert report["reused_estimates"]["search"] == [{"count": groups[0]["count"], "versions": numpy}]
    assert f"{groups[0]['count']} subset estimate(s) search took from the cache" in (tiny_project / "report.md").read_text()


def test_a_stage_recomputed_to_the_same_outputs_with_the_current_versions_rewrites_the_note(
        tiny_project_ran, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_project = tiny_project_ran(overrides=BASE)  # a copy of run_project(tiny_project, BASE)
    state = tiny_project / ".subsetctl"
    then = pipeline.library_versions()
    monkeypatch.setattr(pipeline, "library_versions", lambda: {**then, "torch": "99.0"})
    run_project(tiny_project, [*BASE, "finetune.seeds=2"])
    assert "verify" in _read(tiny_project / "report.json")["other_library_versions"]["stages"]
    digest = _read(state / "verify" / "manifest.json")["output_digest"]
    run_project(tiny_project, [*BASE, "finetune.seeds=2"], force="verify")  # the same fine-tunes, with torch 99.0
    assert _read(state / "verify" / "manifest.json")["output_digest"] == digest  # (nothing else re-runs for it)
    # the report no longer says verify's results were computed with the torch before
    assert "verify" not in _read(tiny_project / "report.json")["other_library_versions"]["stages"]
    assert all(not s.will_run for s in plan_project(tiny_project, [*BASE, "finetune.seeds=2"])[2])
    monkeypatch.setattr(pipeline, "library_versions", lambda: {**then, "torch": "100.0"})
    assert all(not s.will_run for s in plan_project(tiny_project, [*BASE, "finetune.seeds=2"])[2])  # an upgrade alone


def test_a_library_installed_only_since_is_no_difference() -> None:
    """Installing dask (or reasoning-gym) after a run put every kept stage in the report's
    note ("dask absent, now 2025.1"), though it took no part in their results; an uninstalled
    or changed library still counts, and an entry without versions is unknown."""
    then = {"subsetctl": "1.0", "torch": "2.13.0", "numpy": "2.0"}
    assert pipeline.versions_differing(then, {**then, "dask": "2025.1"}) is None
    assert pipeline.versions_differing(then, {"subsetctl": "1.0", "torch": "2.14.0"}) == {
        "numpy": {"then": "2.0", "now": None}, "torch": {"then": "2.13.0", "now": "2.14.0"}}
    assert pipeline.versions_differing(None, then) == "unknown"


def test_the_note_names_gradient_shards_merged_with_other_versions_as_shards() -> None:
    """Rows merged from `run --shard` were "2 result(s) gradients took from the cache"."""
    from subsetctl.report.cells import versions_line

    torch = {"torch": {"then": "2.1.0", "now": "2.2.0"}}
    line = versions_line({"other_library_versions": {"now": {}, "reused": {"gradients": {
        "shard 0/3 (run 1 of 2)": torch, "shard 0/3 (run 2 of 2)": torch, "shard 2/3": torch, "shard 1/3": "unknown"},
        "verify": {"ce-0-0": "unknown"}}}})
    assert line == ("Computed with other library versions than the current ones: the gradient rows of 2 shard(s) "
                    "merged (shard 0/3, shard 2/3) (torch 2.1.0, now 2.2.0); 1 result(s) taken from the cache were "
                    "computed with library versions not recorded (cached by an earlier subsetctl); 1 gradient shard(s) "
                    "merged were computed with library versions not recorded (begun by an earlier subsetctl). "
                    "report.json's other_library_versions lists them.")


def test_a_rerun_after_ctrl_c_in_finetune_says_which_fine_tunes_it_kept_and_which_it_trained(
        tiny_project_ran, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stopped by Ctrl-C during the finetune stage, then run again: the rerun said nothing
    of the fine-tunes the stopped run had finished (and it kept), only those it trained."""
    from subsetctl.modeling import train

    tiny_project = tiny_project_ran("search")
    real, calls = train.train_lora, []

    def stopped_at_the_second(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_lora", stopped_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        run_project(tiny_project, until="finetune")
    monkeypatch.setattr(train, "train_lora", real)
    reporter = SilentReporter()
    run_project(tiny_project, until="finetune", reporter=reporter)
    summary = _read(tiny_project / ".subsetctl" / "finetune" / "manifest.json")["summary"]
    runs = summary["runs"]
    assert runs >= 2 and summary["trained_now"] == runs - 1, summary
    assert (f"finetune: of {runs} fine-tunes, 1 kept as the run that stopped partway finished it; {runs - 1} "
            "trained now.") in reporter.messages, reporter.messages


def test_each_stage_records_the_thread_counts_its_results_were_computed_with(tiny_project_ran) -> None:
    """torch's results differ in the last bits between thread counts, so each manifest and
    report.json's stage entries say which the results were computed with."""
    import torch

    root = tiny_project_ran()
    report = _read(root / "report.json")
    for stage in ("meta_init", "gradients", "finetune", "evaluate"):
        threads = _read(root / ".subsetctl" / stage / "manifest.json")["threads"]
        assert threads == {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": "1"}  # as the tests pin them
        assert report["stages"][stage]["threads"] == threads


def test_the_thread_counts_recorded_follow_torch_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    try:
        assert pipeline.thread_counts() == {"torch": 2, "OMP_NUM_THREADS": "2"}
    finally:
        torch.set_num_threads(before)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert pipeline.thread_counts() == {"torch": before}


def test_results_taken_from_the_caches_record_the_thread_counts_that_computed_them(tiny_project_ran) -> None:
    """The fine-tunes and evaluations a re-run takes from the cache were computed with the thread
    counts of the run that cached them, not the manifest's: provenance.json and report.json's
    ``reused_threads`` say which, and the report's note names them when they differ."""
    import torch

    root = tiny_project_ran()
    state = root / ".subsetctl"
    then = _read(state / "finetune" / "manifest.json")["threads"]
    entry = next((state / "cache" / "evaluate").glob("*.json"))
    assert _read(entry)["threads"] == then  # each cache entry records them beside its versions
    before = torch.get_num_threads()
    torch.set_num_threads(before + 1)  # a later shell of another OMP_NUM_THREADS
    try:
        run_project(root, ["finetune.seeds=2"])  # seed 0's runs and results come from the cache
    finally:
        torch.set_num_threads(before)
    assert _read(state / "finetune" / "manifest.json")["threads"]["torch"] == before + 1
    for stage in ("finetune", "evaluate"):
        provenance = _read(state / stage / "provenance.json")
        assert provenance["threads"] and set(provenance["threads"]) == set(provenance["computed_with"])
        assert all(threads == then for threads in provenance["threads"].values())
        assert "threads" not in json.dumps(_read(state / stage / ("runs.json" if stage == "finetune" else "per_run.json")))
    report = _read(root / "report.json")
    assert report["stages"]["finetune"]["reused_threads"] == _read(state / "finetune" / "provenance.json")["threads"]
    runs = len(report["stages"]["finetune"]["reused_threads"])
    md = (root / "report.md").read_text()
    assert f"finetune ({runs} from the cache or shards), evaluate ({runs} from the cache or shards) with {before} " in md
    assert f"; finetune, evaluate with {before + 1} threads." in md


def test_gradient_shards_merged_record_the_thread_counts_of_their_runs() -> None:
    """Rows merged from `run --shard` on another machine (or shell) were computed with its
    thread counts: the note names the gradients stage's merged rows by them."""
    from subsetctl.report.cells import threads_line

    report = {"stages": {"gradients": {"threads": {"torch": 2}, "reused_threads": {
        "shard 0/2": [{"torch": 4}], "shard 1/2": [{"torch": 2}, {"torch": 4}]}}, "meta_init": {"threads": {"torch": 2}}}}
    assert threads_line(report) == (
        "Computed with different torch thread counts, whose results differ in the last bits: meta_init, gradients "
        "with 2 threads; gradients (2 from the cache or shards) with 4 threads. To have the results of one run, "
        "re-run the stages of the other count with the same one (`OMP_NUM_THREADS=N subsetctl run DIR --force "
        "STAGE`, STAGE the first of them); each stage's `threads` in report.json lists them (`reused_threads`, those of its "
        "results from the cache or shards).")


def test_the_report_says_what_produced_the_selection(tiny_project_ran) -> None:
    """A reviewer given the project folder could not tell from report.md, nor report.json,
    which data files (by content) and model files the selection was made from: only the
    stages' manifests held their sha256. Both now say, with the seeds, lambda and versions."""
    import re

    root = tiny_project_ran()
    report = _read(root / "report.json")
    data = _read(root / ".subsetctl" / "data" / "manifest.json")["inputs"]["extra"]
    model = _read(root / ".subsetctl" / "meta_init" / "manifest.json")["inputs"]["extra"]["model_files"]
    from subsetctl.report.build import expand_input_files

    # (the sources reading one file each: one table of columns, data_files, since report_format 13)
    assert "a" in report["input_files"]["data_files"]["source"] and "a" not in report["input_files"]["data"]
    assert expand_input_files(report["input_files"]) == {"data": data, "model": {"model_files": model}}
    md = (root / "report.md").read_text()
    section = md[md.index("## Reproducing the selection"):md.index("## Time per stage")]
    assert f"- resolved spec: .subsetctl/specs/{report['stages']['search']['resolved_spec']}.json" in section
    assert "- seeds: project.seed 0" in section and "- estimator fast, lambda 1 (the spec's estimate.lam)" in section
    versions = report["stages"]["search"]["versions"]
    assert f"subsetctl {versions['subsetctl']}, torch {versions['torch']}, transformers" in section
    for source in ("a", "b", "target"):
        assert f"| {source} | `{data[source]['file']['sha256']}` |" in section
    assert f"| model.safetensors | `{model['files']['model.safetensors']['sha256']}` |" in section
    assert len(re.findall(r"`[0-9a-f]{64}`", section)) == len(model["files"]) + len(data)


def test_report_md_holds_every_setting_its_results_were_made_with(tiny_project_ran) -> None:
    """A sweep keeping each variant's report.md (`cp report.md v7.md`) could not re-create
    variant 7 from it: it named the resolved spec under `.subsetctl/specs/`, which `run` deletes
    once no kept results name it, and no setting (a variant made by editing its spec file: not
    even an override line). The section on reproducing the selection now writes report.json's
    `settings` out, folded; past SETTINGS_SHOWN keys, it says where they are."""
    from subsetctl.report.markdown import SETTINGS_SHOWN, render_markdown

    root = tiny_project_ran()
    report = json.loads((root / "report.json").read_text())
    md = (root / "report.md").read_text()
    section = md[md.index("## Reproducing the selection"):md.index("## Time per stage")]
    block = section[section.index("```json") + len("```json"):section.index("```", section.index("```json") + 7)]
    assert json.loads(block) == report["settings"] and '"gradients.d": ' in block
    assert f"<details><summary>{len(report['settings'])} settings: every setting these results were made with" \
        in section
    many = {**report, "settings": {f"sources[{i}].name": f"s{i}" for i in range(SETTINGS_SHOWN + 1)}}
    section = render_markdown(many, {})
    assert f"- {SETTINGS_SHOWN + 1} settings: every setting" in section and "```json" not in section


def _git(folder: Path, *args: str) -> str:
    import subprocess

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "HOME": str(folder), "PATH": __import__("os").environ["PATH"]}
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


@pytest.mark.skipif(__import__("shutil").which("git") is None, reason="needs git")
def test_a_git_checkout_of_subsetctl_records_its_commit_and_whether_it_differs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every build of a checkout recorded "subsetctl": "0.1.0" alone: results of two commits (or
    of local edits) could not be told apart. The commit is read from .git's files (a packed ref
    too), "+dirty" from git when a tracked file differs; without git, the commit alone; an
    installed package (no .git beside it) records none."""
    from subsetctl import checkout

    package = tmp_path / "subsetctl"
    package.mkdir()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'subsetctl'\n")
    (package / "__init__.py").write_text("")
    monkeypatch.setattr(checkout, "package_folder", lambda: package)
    checkout.source_commit.cache_clear()
    assert checkout.source_commit() is None  # not a checkout: an installed package
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    sha = _git(tmp_path, "rev-parse", "HEAD")
    checkout.source_commit.cache_clear()
    assert checkout.source_commit() == sha[:12]
    assert pipeline.library_versions()[pipeline.SUBSETCTL_COMMIT] == sha[:12]
    (package / "__init__.py").write_text("x = 1\n")  # a local edit
    checkout.source_commit.cache_clear()
    assert checkout.source_commit() == f"{sha[:12]}+dirty"
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))  # git missing: the commit alone, no error
    _git_dir = tmp_path / ".git"
    _git_dir.joinpath("packed-refs").write_text(f"# pack-refs with: peeled\n{sha} refs/heads/packed\n")
    _git_dir.joinpath("HEAD").write_text("ref: refs/heads/packed\n")
    checkout.source_commit.cache_clear()
    assert checkout.source_commit() == sha[:12]
    checkout.source_commit.cache_clear()


def test_the_commit_of_a_checkout_changes_no_fingerprint_and_is_no_other_version(
        jsonl_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit is recorded with the versions (the manifests, provenance.json, the caches),
    but it is no input of any stage: results made by another build (or by one that recorded
    none, an installed release or an earlier subsetctl) are up to date, and the report's note on
    other library versions does not count a commit as one."""
    from subsetctl import checkout
    from subsetctl.report.build import results_versions

    monkeypatch.setattr(checkout, "source_commit", lambda: None)  # as an earlier subsetctl ran it
    run_project(jsonl_project, [], until="data")
    assert pipeline.SUBSETCTL_COMMIT not in _read(jsonl_project / ".subsetctl" / "data" / "manifest.json")["versions"]
    monkeypatch.setattr(checkout, "source_commit", lambda: "0123456789ab+dirty")
    assert all(not s.will_run for s in plan_project(jsonl_project, [], until="data")[2])
    run_project(jsonl_project, [], until="data", force=["data"])
    recorded = _read(jsonl_project / ".subsetctl" / "data" / "manifest.json")["versions"]
    assert recorded[pipeline.SUBSETCTL_COMMIT] == "0123456789ab+dirty"
    monkeypatch.setattr(checkout, "source_commit", lambda: "ba9876543210")  # the next commit
    assert all(not s.will_run for s in plan_project(jsonl_project, [], until="data")[2])
    assert pipeline.versions_differing(recorded, pipeline.library_versions()) is None
    other = {**recorded, pipeline.SUBSETCTL_COMMIT: "ba9876543210"}  # another stage's, made by the next commit
    monkeypatch.setattr(Project, "read_results_manifest",
                        lambda self, stage: {"versions": recorded if stage == "data" else other})
    assert results_versions(Project(jsonl_project)) is None  # (an input of the report stage when not None)
    upgraded = {**other, "numpy": "99.0"}
    monkeypatch.setattr(Project, "read_results_manifest",
                        lambda self, stage: {"versions": recorded if stage == "data" else upgraded})
    assert results_versions(Project(jsonl_project)) is not None


def test_a_damaged_base_model_record_gives_no_notes_not_an_internal_error(tmp_path: Path) -> None:
    """A finetune base_model.json that was not JSON made `plan` and `report` stop with an
    internal error (JSONDecodeError) reading its notes (plan goes on to say the stage is
    corrupt: the file fails its checksums). Its notes are left out instead."""
    from subsetctl.project import Project
    from subsetctl.report.build import finetune_commits_noted, models_moved_outside

    (tmp_path / "subsetctl.yaml").write_text("{}")
    project = Project(tmp_path.resolve())
    folder = project.results_dir("finetune")
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"stage": "finetune"}')
    for damaged in (b"{", b"", b"\xff\xfe"):
        (folder / "base_model.json").write_bytes(damaged)
        assert finetune_commits_noted(project) is None and models_moved_outside(project) == {}
