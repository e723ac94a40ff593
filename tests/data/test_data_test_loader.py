"""``target.test_loader``: a target's own test set (a benchmark's official test split),
kept apart from the rows its loader's seeded split draws train and validation from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from data_helpers import check_issues, qa_rows, write_jsonl

from subsetctl.data.prepare import prepare_source
from subsetctl.data.stage import load_split, run_data_stage, source_context, source_key
from subsetctl.errors import UserError
from subsetctl.pipeline import Pipeline, Stage, StageContext
from subsetctl.project import Project
from subsetctl.spec import Spec, apply_overrides
from subsetctl.stages import all_stages
from subsetctl.stages.data import DataStage

TEST_ROWS = [{"prompt": f"official {i}?", "response": str(i)} for i in (7, 3, 9, 1, 5)]  # not sorted: file order


def _spec(target: dict[str, Any], sources: list[dict[str, Any]] | None = None) -> Spec:
    return Spec.model_validate({
        "project": {"seed": 3},
        "target": {"name": "tgt", "loader": {"type": "jsonl", "path": "t.jsonl"}, **target},
        "sources": sources or [{"name": "aux", "loader": {"type": "jsonl", "path": "aux.jsonl"}}],
    })


def _files(folder: Path) -> None:
    write_jsonl(folder / "t.jsonl", qa_rows(12, "t"))
    write_jsonl(folder / "aux.jsonl", qa_rows(6, "x"))
    write_jsonl(folder / "test.jsonl", TEST_ROWS)


def test_the_test_split_is_every_row_of_test_loader_in_file_order(tmp_path: Path) -> None:
    """The test rows are the test file's, all of them and in its order (max_examples and
    the seeded draw apply to loader's rows only); loader's rows go to train and validation."""
    _files(tmp_path)
    spec = _spec({"test_loader": {"type": "jsonl", "path": "test.jsonl"}, "max_examples": 8})
    summary = run_data_stage(spec, tmp_path, tmp_path / "out")
    assert summary["counts"]["tgt"] == {"train": 6, "validation": 2, "test": 5}  # 0.75/0.25 of 8
    assert summary["target_test_from"] == "test_loader"
    assert "target_test_from" not in run_data_stage(_spec({}), tmp_path, tmp_path / "plain")  # data.json as it was
    test = load_split(tmp_path / "out", "tgt", "test")
    assert [(r["prompt"], r["response"], r["row"], r["source"]) for r in test] == [
        (r["prompt"], r["response"], i, "tgt") for i, r in enumerate(TEST_ROWS)]
    drawn = [r["prompt"] for split in ("train", "validation") for r in load_split(tmp_path / "out", "tgt", split)]
    assert not set(drawn) & {r["prompt"] for r in TEST_ROWS} and len(set(drawn)) == 8


def test_a_classifiers_test_rows_get_the_targets_label_map_and_the_shared_labels(tmp_path: Path) -> None:
    loader = {"type": "jsonl", "prompt_field": "text", "label_field": "label"}
    write_jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "label": i % 2} for i in range(8)])
    write_jsonl(tmp_path / "test.jsonl", [{"text": f"official{i}", "label": i % 2} for i in range(3)])
    write_jsonl(tmp_path / "aux.jsonl", [{"text": f"s{i}", "label": "pos"} for i in range(2)])
    spec = Spec.model_validate({
        "model": {"kind": "classifier"},
        "target": {"name": "tgt", "loader": {**loader, "path": "t.jsonl"}, "label_map": {0: "neg", 1: "pos"},
                   "test_loader": {**loader, "path": "test.jsonl"}},
        "sources": [{"name": "aux", "loader": {**loader, "path": "aux.jsonl"}}],
    })
    summary = run_data_stage(spec, tmp_path, tmp_path / "out")
    test = load_split(tmp_path / "out", "tgt", "test")
    assert summary["labels"] == ["neg", "pos"]
    assert [(r["prompt"], r["label_text"], r["label"]) for r in test] == [
        ("official0", "neg", 0), ("official1", "pos", 1), ("official2", "neg", 0)]


def test_a_label_map_key_the_test_rows_lack_is_said_of_the_test_loader(tmp_path: Path) -> None:
    """The test file holding one class only: the unused label_map key is said of its
    rows (the loader's rows use it), not of the target as a whole."""
    loader = {"type": "jsonl", "prompt_field": "text", "label_field": "label"}
    write_jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "label": i % 2} for i in range(8)])
    write_jsonl(tmp_path / "test.jsonl", [{"text": f"official{i}", "label": 0} for i in range(3)])
    spec = Spec.model_validate({
        "model": {"kind": "classifier"},
        "target": {"name": "tgt", "loader": {**loader, "path": "t.jsonl"}, "label_map": {0: "neg", 1: "pos"},
                   "test_loader": {**loader, "path": "test.jsonl"}},
        "sources": [{"name": "aux", "loader": {**loader, "path": "t.jsonl"}}],
    })
    warnings: list[str] = []
    prepare_source(spec.target, source_context(spec, spec.target, tmp_path), warnings)
    said = [w for w in warnings if "label_map names '1'" in w]
    assert len(said) == 1 and said[0].startswith("Target 'tgt': its test_loader (jsonl): label_map names '1'"), warnings


def test_the_leak_checks_see_the_test_loaders_rows(tmp_path: Path) -> None:
    """A source holding the official test rows, and the target's train rows repeating
    them, are warned about as for test rows drawn from loader."""
    _files(tmp_path)
    write_jsonl(tmp_path / "t.jsonl", qa_rows(12, "t") + TEST_ROWS[:1])
    write_jsonl(tmp_path / "scraped.jsonl", qa_rows(3, "y") + TEST_ROWS)
    spec = _spec({"test_loader": {"type": "jsonl", "path": "test.jsonl"}, "split": {"train": 1.0}},
                 [{"name": "scraped", "loader": {"type": "jsonl", "path": "scraped.jsonl"}}])
    warnings = run_data_stage(spec, tmp_path, tmp_path / "out")["warnings"]
    assert any(w.startswith("Source 'scraped' (5 rows) holds target validation/test rows verbatim") for w in warnings), \
        warnings
    assert any("tgt" in w and "repeat" in w for w in warnings), warnings


def test_a_test_loader_reading_no_rows_or_failing_is_an_error_naming_it(tmp_path: Path) -> None:
    _files(tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n")
    for path in ("empty.jsonl", "missing.jsonl"):
        spec = _spec({"test_loader": {"type": "jsonl", "path": path}})
        with pytest.raises(UserError, match=r"Target 'tgt': its test_loader \(jsonl\)"):
            prepare_source(spec.target, source_context(spec, spec.target, tmp_path), [])


def test_the_test_files_content_is_in_the_targets_key_and_unset_it_adds_nothing(tmp_path: Path) -> None:
    _files(tmp_path)
    spec = _spec({"test_loader": {"type": "jsonl", "path": "test.jsonl"}})
    key = source_key(spec, spec.target, tmp_path)
    write_jsonl(tmp_path / "test.jsonl", TEST_ROWS[:2])
    assert source_key(spec, spec.target, tmp_path) != key
    plain = _spec({})
    assert "test_loader" not in plain.model_dump(mode="json")["target"]
    assert "test_loader" not in json.dumps(plain.model_dump(mode="json", exclude_unset=True))


class _ReadsTrainSide(Stage):
    """Stands in for meta_init: reads the data stage's train and validation rows only."""

    name, after, reads_parts = "trains", ("data",), {"data": "train"}  # common.TRAIN_SIDE

    def run(self, ctx: StageContext) -> dict[str, Any]:
        (ctx.out_dir / "out.txt").write_text(str(len(load_split(ctx.upstream_dir("data"), "tgt", "train"))))
        return {}


class _ReadsTest(_ReadsTrainSide):
    """Stands in for evaluate: reads the test rows."""

    name, after, reads_parts = "scores", ("data", "trains"), {}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        (ctx.out_dir / "out.txt").write_text(str(len(load_split(ctx.upstream_dir("data"), "tgt", "test"))))
        return {}


class _DataBeforeParts(DataStage):
    """The data stage as a subsetctl before :meth:`DataStage.output_parts` recorded it."""

    def output_parts(self, outputs: dict[str, str], summary: dict[str, Any]) -> dict[str, Any]:
        return {}


def _ran(project: Path, data: DataStage) -> set[str]:
    spec = _spec({"test_loader": {"type": "jsonl", "path": "test.jsonl"}})
    results = Pipeline(Project(project), spec, [data, _ReadsTrainSide(), _ReadsTest()]).run()
    return {r["stage"] for r in results if r["action"] == "ran"}


def test_an_edit_of_the_test_file_reruns_only_the_stages_reading_the_test_rows(tmp_path: Path) -> None:
    _files(tmp_path)
    assert _ran(tmp_path, DataStage()) == {"data", "trains", "scores"}
    write_jsonl(tmp_path / "test.jsonl", TEST_ROWS[:2])
    assert _ran(tmp_path, DataStage()) == {"data", "scores"}
    write_jsonl(tmp_path / "t.jsonl", qa_rows(16, "t"))  # the train side: everything
    assert _ran(tmp_path, DataStage()) == {"data", "trains", "scores"}


def _plan(project: Path, spec: Spec) -> dict[str, Any]:
    return {s.name: s for s in Pipeline(Project(project), spec, [DataStage(), _ReadsTrainSide(), _ReadsTest()]).plan()}


def test_plan_knows_an_edit_of_the_test_file_leaves_the_stages_reading_the_train_side_up_to_date(
        tmp_path: Path) -> None:
    """Not "only if the stages before change" beside every stage after the data: `run` would
    not run them, and `plan` can tell before the data stage runs."""
    _files(tmp_path)
    _ran(tmp_path, DataStage())
    write_jsonl(tmp_path / "test.jsonl", TEST_ROWS[:2])
    planned = _plan(tmp_path, _spec({"test_loader": {"type": "jsonl", "path": "test.jsonl"}}))
    assert planned["data"].reasons == ["input files changed: tgt (its test_loader's: the test rows alone)"]
    assert (planned["trains"].state, planned["trains"].will_run) == ("up to date", False)
    assert planned["scores"].will_run and planned["scores"].reasons == [
        "upstream data will re-run (skipped if its output is unchanged)"]
    assert _ran(tmp_path, DataStage()) == {"data", "scores"}  # as planned
    write_jsonl(tmp_path / "t.jsonl", qa_rows(16, "t"))  # the train side: not known before it runs
    planned = _plan(tmp_path, _spec({"test_loader": {"type": "jsonl", "path": "test.jsonl"}}))
    assert planned["trains"].will_run and planned["trains"].conditional


def test_plan_says_when_an_edit_of_a_classifiers_test_file_reaches_the_train_side(tmp_path: Path) -> None:
    """A classifier's label vocabulary is taken over the test rows too: whether the train side
    changes is not known before the data stage runs, and `plan` says what it depends on."""
    loader = {"type": "jsonl", "prompt_field": "text", "label_field": "label"}
    write_jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "label": i % 2} for i in range(12)])
    write_jsonl(tmp_path / "test.jsonl", [{"text": f"official{i}", "label": i % 2} for i in range(3)])
    write_jsonl(tmp_path / "aux.jsonl", [{"text": f"s{i}", "label": 1} for i in range(4)])
    spec = Spec.model_validate({
        "model": {"kind": "classifier"},
        "target": {"name": "tgt", "loader": {**loader, "path": "t.jsonl"}, "split": {"train": 8, "validation": 4},
                   "test_loader": {**loader, "path": "test.jsonl"}},
        "sources": [{"name": "aux", "loader": {**loader, "path": "aux.jsonl"}}],
    })
    Pipeline(Project(tmp_path), spec, [DataStage(), _ReadsTrainSide(), _ReadsTest()]).run()
    write_jsonl(tmp_path / "test.jsonl", [{"text": f"official{i}", "label": i % 2} for i in range(2)])
    planned = _plan(tmp_path, spec)
    assert planned["trains"].will_run and planned["trains"].conditional
    assert "adding or dropping a label no other row has" in planned["trains"].reasons[0]


def test_results_of_a_subsetctl_before_the_train_side_stay_up_to_date_through_an_edit_of_the_test_file(
        tmp_path: Path) -> None:
    """The stages after the data stage recorded its whole output's digest: up to date as they
    are, and still once an edit of the test rows alone re-ran it (twice: it carries over)."""
    _files(tmp_path)
    assert _ran(tmp_path, _DataBeforeParts()) == {"data", "trains", "scores"}
    assert _ran(tmp_path, DataStage()) == set()
    for rows in (TEST_ROWS[:2], TEST_ROWS[:3]):
        write_jsonl(tmp_path / "test.jsonl", rows)
        assert _ran(tmp_path, DataStage()) == {"data", "scores"}


BASE: dict[str, Any] = {
    "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"},
               "split": {"train": 0.75, "validation": 0.25}},
    "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}],
    "verify": {"enabled": True},
}


@pytest.mark.parametrize("override", ["target.test_loader={type: jsonl, path: test.jsonl}",
                                      "target.test_loader={type: huggingface, path: gsm8k, split: test}"])
def test_setting_or_changing_test_loader_changes_the_data_stage_only(override: str) -> None:
    """(the stages after it re-run where the data stage's output changes, as for any data)"""
    before = Spec.model_validate(BASE)
    after = Spec.model_validate(apply_overrides(BASE, [override]))
    assert {s.name for s in all_stages() if s.spec_slice(before) != s.spec_slice(after)} == {"data"}


def test_a_source_files_glob_leaves_out_the_test_file_as_it_leaves_out_the_targets(tmp_path: Path) -> None:
    """A glob over the data folder matching the test file made it a source: the official
    test rows in training (the leak warning said so, but the spec asked for it)."""
    from subsetctl.spec import load_spec

    _files(tmp_path)
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump({
        "target": {"name": "tgt", "loader": {"type": "jsonl", "path": "t.jsonl"},
                   "test_loader": {"type": "jsonl", "path": "./test.jsonl"}},
        "source_files": [{"files": "*.jsonl", "loader": {"type": "jsonl"}}]}))
    spec = load_spec(tmp_path / "subsetctl.yaml")
    assert [s.name for s in spec.sources] == ["aux"]
    assert spec.target.test_loader is not None and spec.target.split.test == 0


def test_split_test_beside_test_loader_is_refused_naming_both_keys() -> None:
    """...at test_loader's key (and so its line), not the target's first line."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"target\.split\.test is 0\.25, but target\.test_loader is set.*"
                                              r"Remove target\.split\.test \(or set it to 0\), or remove "
                                              r"target\.test_loader") as refused:
        _spec({"test_loader": {"type": "jsonl", "path": "x.jsonl"},
               "split": {"train": 0.5, "validation": 0.25, "test": 0.25}})
    assert [e["loc"] for e in refused.value.errors()] == [("target", "test_loader")]
    assert _spec({"test_loader": {"type": "jsonl", "path": "x.jsonl"},
                  "split": {"train": 10, "validation": 5, "test": 0}}).target.split.test == 0
    default = _spec({"test_loader": {"type": "jsonl", "path": "x.jsonl"}}).target.split
    assert (default.train, default.validation, default.test) == (0.75, 0.25, 0)


def test_a_split_naming_a_file_points_at_test_loader() -> None:
    with pytest.raises(ValueError, match=r"names a file.*target\.test_loader: \{type: jsonl, path: data/test\.jsonl\}"):
        _spec({"split": {"train": 0.8, "validation": 0.2, "test": "data/test.jsonl"}})


VALIDATED = """\
target:
  name: tgt
  loader: {type: jsonl, path: t.jsonl}
  split: {train: 0.75, validation: 0.25}
  test_loader:
    type: jsonl
    path: {path}
sources:
  - name: aux
    loader: {type: jsonl, path: aux.jsonl}
"""


def test_validate_checks_test_loader_as_it_checks_loader(tmp_path: Path) -> None:
    """A missing file or column is told at target.test_loader's key and line; the target's
    split needs no test rows then (and without test_loader, that issue names it)."""
    _files(tmp_path)
    assert check_issues(tmp_path, VALIDATED.replace("{path}", "test.jsonl")) == {}
    missing = check_issues(tmp_path, VALIDATED.replace("{path}", "nope.jsonl"))
    assert list(missing) == ["target.test_loader.path"] and missing["target.test_loader.path"].line == 7
    assert str(tmp_path / "nope.jsonl") in missing["target.test_loader.path"].message
    write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "response": "a"}])
    columns = check_issues(tmp_path, VALIDATED.replace("{path}", "bad.jsonl"))
    assert [key.startswith("target.test_loader") for key in columns] == [True], columns
    no_test = check_issues(tmp_path, VALIDATED.replace("  test_loader:\n    type: jsonl\n    path: {path}\n", ""))
    assert "target.test_loader" in no_test["target.split.test"].message


def test_validates_warnings_about_unread_options_cover_test_loader(tmp_path: Path) -> None:
    """A label_field a causal LM ignores, and the reasoning_gym metric on test rows that
    carry no reasoning-gym metadata, are warned about for test_loader as for loader."""
    from subsetctl.api import spec_warnings

    spec = Spec.model_validate({
        "target": {"name": "tgt", "loader": {"type": "reasoning_gym", "task": "leg_counting"},
                   "test_loader": {"type": "jsonl", "path": "test.jsonl", "label_field": "y"}},
        "sources": [{"name": "aux", "loader": {"type": "jsonl", "path": "aux.jsonl"}}],
        "evaluate": {"metric": "reasoning_gym"},
    })
    said = {issue.key: issue.message for issue in spec_warnings(spec, tmp_path / "subsetctl.yaml")}
    assert said["target.test_loader.label_field"].startswith("is for classifiers only")
    assert "a jsonl test_loader has none" in said["evaluate.metric"]


def test_a_hub_test_loader_is_among_the_hub_datasets_a_run_needs(tmp_path: Path) -> None:
    """`plan`, `run` and `doctor` list the hub datasets the local caches lack: the test set's too."""
    from subsetctl.data.checks import uncached_hub_datasets

    _files(tmp_path)
    spec = _spec({"test_loader": {"type": "huggingface", "path": "no-such-org/no-such-set", "split": "test"}})
    assert uncached_hub_datasets(spec, tmp_path) == [(("target", "test_loader", "path"), "no-such-org/no-such-set")]


def test_a_tiny_project_evaluates_on_the_test_files_rows(tiny_project: Path) -> None:
    """End to end: every selection is evaluated on the test file's rows, exactly, and the
    data stage's plan says where they come from."""
    from subsetctl.api import plan_project, run_project

    write_jsonl(tiny_project / "test.jsonl", TEST_ROWS)
    spec_path = tiny_project / "subsetctl.yaml"
    data = yaml.safe_load(spec_path.read_text())
    data["target"]["split"] = {"train": 10, "validation": 5}
    data["target"]["test_loader"] = {"type": "jsonl", "path": "test.jsonl"}
    spec_path.write_text(yaml.safe_dump(data, sort_keys=False))
    run_project(tiny_project, ["search.strategies=[{name: exhaustive}]"])
    per_run = json.loads((tiny_project / ".subsetctl" / "evaluate" / "per_run.json").read_text())
    assert per_run
    for result in per_run.values():
        assert [(p["row"], p["gold"]) for p in result["predictions"]] == [
            (i, r["response"]) for i, r in enumerate(TEST_ROWS)]
    report = json.loads((tiny_project / "report.json").read_text())
    assert report["target_test_from"] == report["final_vs_baselines"]["test_from"] == "test_loader"
    assert "5 test examples from target.test_loader" in (tiny_project / "report.md").read_text()
    from click.testing import CliRunner

    from subsetctl.cli import main

    shown = " ".join(CliRunner().invoke(main, ["report", str(tiny_project)]).output.split())
    assert "test metrics (target.test_loader's rows)" in shown, shown  # not "the target's held-out split"
    write_jsonl(tiny_project / "test.jsonl", TEST_ROWS[:3])  # an edited test file: the data stage re-runs
    _, spec, statuses = plan_project(tiny_project, ["search.strategies=[{name: exhaustive}]"])
    data_stage = next(s for s in all_stages() if s.name == "data")
    assert [(s.will_run, s.reasons) for s in statuses if s.name == "data"] == [
        (True, ["input files changed: target (its test_loader's: the test rows alone)"])]
    assert {s.name for s in statuses if s.will_run} == {"data", "evaluate", "report"}  # what `run` runs, below
    assert "the target (its test rows from target.test_loader)" in data_stage.work(spec)
    # what evaluate will do: it said "the target's test split through each fine-tuned adapter" (how many, and on
    # how many rows, untold) though the fine-tunes are up to date and the test file's rows are counted cheaply
    [evaluate] = [s for s in statuses if s.name == "evaluate"]
    assert evaluate.work is not None and evaluate.work.startswith(
        f"the target's test split (at most 3 rows: file {tiny_project / 'test.jsonl'} has 3 non-blank lines) through "
        f"the {len(per_run)} fine-tuned adapters, generating up to "), evaluate.work
    assert evaluate.work.endswith("; results cached for those test rows are reused"), evaluate.work
    ran = {r["stage"]: r["action"] for r in run_project(tiny_project, ["search.strategies=[{name: exhaustive}]"])}
    evaluated = json.loads((tiny_project / ".subsetctl" / "evaluate" / "manifest.json").read_text())["summary"]
    assert (evaluated["adapters"], evaluated["n_test"], evaluated["reused"]) == (len(per_run), 3, 0), evaluated
    # only the stages reading the test rows: meta_init, the gradients and the fine-tunes read none
    assert {stage for stage, action in ran.items() if action == "ran"} == {"data", "evaluate", "report"}, ran
    from subsetctl.report.build import outdated_stages

    assert outdated_stages(Project(tiny_project)) == []  # meta_init's results follow from the data's train side
    runs = json.loads((tiny_project / ".subsetctl" / "finetune" / "manifest.json").read_text())["summary"]["runs"]
    run_project(tiny_project, ["search.strategies=[{name: exhaustive}]", "finetune.seeds=2"])
    finetuned = json.loads((tiny_project / ".subsetctl" / "finetune" / "manifest.json").read_text())["summary"]
    assert finetuned["reused_runs"] == runs  # the first seed's, trained with other test rows: the cache's keys omit them


def test_a_test_loader_reading_what_loader_reads_is_refused(tmp_path: Path) -> None:
    """`test_loader` copied from `loader` unchanged (the test file not yet written in): the
    test rows were the training file's, a leaked test set only the data stage's generic
    "repeats them" warning hinted at."""
    from subsetctl.spec import Spec

    loader = {"type": "jsonl", "path": "target.jsonl"}
    target = {"name": "t", "loader": loader, "test_loader": dict(loader)}
    with pytest.raises(ValueError, match=r"test_loader\n.*reads what target.loader reads"):
        Spec.model_validate({"target": target, "sources": [{"name": "a", "loader": {"type": "jsonl",
                                                                                     "path": "a.jsonl"}}]})
    Spec.model_validate({"target": {**target, "test_loader": {**loader, "path": "test.jsonl"}},
                         "sources": [{"name": "a", "loader": {"type": "jsonl", "path": "a.jsonl"}}]})


def test_earlier_keys_of_the_data_include_those_of_an_upgraded_projects_whole_output() -> None:
    """After an upgrade and an edit of the test rows alone, the data stage's manifest keeps the
    whole digest its old-code results had (``output_digests_as_before``): the gradient shards,
    verify's and the search's real fine-tunes cached under it were passed over, as only the
    current whole digest was tried beside the train side's."""
    from subsetctl.pipeline import PARTS_AS_BEFORE
    from subsetctl.stages.common import data_keys_before

    manifest = {"output_digest": "whole-now", "output_digests": {"train": "train-side"},
                PARTS_AS_BEFORE: {"train": ["whole-old"]}}
    assert data_keys_before(manifest) == ["whole-now", "whole-old"]
    assert data_keys_before({"output_digest": "same"}) == []  # results before parts: the whole is the key
    assert data_keys_before(None) == []
