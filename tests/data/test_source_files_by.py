"""A ``source_files`` group with ``by``: one Parquet file holding many tasks, one source
per value of its task column, each reading that value's rows only (its loader's ``where``)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from data_helpers import run_data_as_counted_before

from subsetctl.data.loaders import files
from subsetctl.data.loaders.files import load_parquet
from subsetctl.errors import OTHER_UNICODE_FORM, SpecError, UserError
from subsetctl.spec import ParquetLoader, Spec, load_spec


def _rows(values: list) -> list[dict]:
    """Five rows of each task, the tasks interleaved (each has rows in every row group of 3)."""
    rows = [{"task": task, "prompt": f"{task} q{i}", "response": f"a{i}"} for i in range(5) for task in values]
    return rows[::-1]


def _project(tmp_path: Path, rows: list[dict] | None = None, group: dict | None = None, row_group_size: int = 3) -> Path:
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    if rows is None:
        rows = _rows(["cola", "sst 2", "b/é"]) + [{"task": None, "prompt": "n", "response": "n"},
                                                   {"task": "  ", "prompt": "b", "response": "b"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "tasks.parquet", row_group_size=row_group_size)
    (tmp_path / "t.jsonl").write_text('{"prompt": "1", "response": "2"}\n' * 8)
    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"},
                       "split": {"train": 4, "validation": 2, "test": 2}},
            "source_files": [group or {"files": "data/*.parquet", "by": "task", "name_prefix": "flan-",
                                       "loader": {"type": "parquet"}}]}
    path = tmp_path / "subsetctl.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return path


@pytest.mark.parametrize("in_memory", [True, False])
def test_each_value_is_a_source_reading_its_rows_only(tmp_path: Path, in_memory: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if not in_memory:  # a large file: each task's rows read from the row groups holding them
        monkeypatch.setattr(files, "WHOLE_FILE_BYTES", 0)
    spec = load_spec(_project(tmp_path))
    assert [s.name for s in spec.sources] == ["flan-b_e", "flan-cola", "flan-sst_2"]  # sorted by value
    assert [s.loader.where for s in spec.sources] == [{"task": "b/é"}, {"task": "cola"}, {"task": "sst 2"}]
    assert all(s.loader.path == "data/tasks.parquet" for s in spec.sources)
    (note,) = spec.left_out_rows  # the null and the blank value: no source, said once for the file
    assert note[0] == 0 and "2 rows of data/tasks.parquet have no 'task' value" in note[1]
    for source in spec.sources:  # rows from every row group (3 rows each), in the file's order
        ds = load_parquet(source.loader, _ctx(tmp_path, source.name))
        task = source.loader.where["task"]
        assert ds["prompt"] == [f"{task} q{i}" for i in reversed(range(5))]
    # the resolved spec lists each source with its file and value: validated again, the same sources
    again = Spec.model_validate(spec.model_dump(mode="json"))
    assert again.model_dump() == spec.model_dump() and again.sources[0].loader.where == {"task": "b/é"}


def test_whole_number_values_keep_their_type(tmp_path: Path) -> None:
    spec = load_spec(_project(tmp_path, [{"task": t, "prompt": f"p{t}", "response": "r"} for t in (3, 1, 3)]))
    assert [(s.name, s.loader.where) for s in spec.sources] == [("flan-1", {"task": 1}), ("flan-3", {"task": 3})]
    assert load_parquet(spec.sources[1].loader, _ctx(tmp_path, "flan-3"))["prompt"] == ["p3", "p3"]
    with pytest.raises(UserError, match=r"no row of file .* has 'task' = '3'"):  # the text "3" is no 3
        load_parquet(ParquetLoader(type="parquet", path="data/tasks.parquet", where={"task": "3"}), _ctx(tmp_path, "x"))


def test_a_row_problem_names_the_row_of_the_file(tmp_path: Path) -> None:
    rows = [{"task": "a", "prompt": "p", "response": "r"}, {"task": "b", "prompt": "p", "response": "r"},
            {"task": "b", "prompt": None, "response": "r"}]
    spec = load_spec(_project(tmp_path, rows))
    with pytest.raises(UserError, match=r"tasks.parquet \(task = 'b'\), row 3: 'prompt'"):
        load_parquet(spec.sources[1].loader, _ctx(tmp_path, spec.sources[1].name))


def test_problems_name_the_group_the_file_and_the_columns(tmp_path: Path) -> None:
    from subsetctl.api import validate_spec_file

    missing = _project(tmp_path / "a", group={"files": "data/*.parquet", "by": "tsk", "loader": {"type": "parquet"}})
    (issue,) = validate_spec_file(missing).issues
    assert issue.key == "source_files[0] (data/tasks.parquet).by" and issue.line
    assert "no column 'tsk'" in issue.message and "'task', 'prompt', 'response'" in issue.message
    clash = _project(tmp_path / "b", [{"task": t, "prompt": "p", "response": "r"} for t in ("a b", "a_b", "c")])
    (issue,) = validate_spec_file(clash).issues
    assert issue.key == "source_files[0].by" and "'a b'" in issue.message and "'a_b'" in issue.message
    assert "source name 'flan-a_b'" in issue.message
    floats = _project(tmp_path / "c", [{"task": 0.5, "prompt": "p", "response": "r"}])
    assert "holds double values" in validate_spec_file(floats).issues[0].message
    jsonl = _project(tmp_path / "d", group={"files": "data/*.parquet", "by": "task", "loader": {"type": "jsonl"}})
    with pytest.raises(SpecError, match=r"source_files\[0\] \(data/tasks.parquet\).by: file .*tasks.parquet is a Parquet file, not "
                                        r"JSON Lines \(loader.type is jsonl\): write `type: parquet`"):  # (was "not valid UTF-8")
        load_spec(jsonl)
    with pytest.raises(SpecError, match="names 2 columns"):
        load_spec(_listed(tmp_path / "e", {"a": "x", "b": "y"}))


def test_values_that_differ_only_in_unicode_form_are_said_so(tmp_path: Path) -> None:
    """A `by` column holding 'café' on some rows and 'cafe' + a combining accent on others (rows
    from macOS) said "task values 'café' (...) and 'café' (...) both make the source name" with the
    two printing alike, and to give "the files separate groups": the two values are of one file."""
    from subsetctl.api import validate_spec_file

    values = ["caf\u00e9", "cafe\u0301", "\u7ffb\u8a33"]
    (issue,) = validate_spec_file(_project(tmp_path, [{"task": t, "prompt": "p", "response": "r"} for t in values])).issues
    assert issue.message == (
        'task values "cafe\\u0301" (data/tasks.parquet) and \'caf\u00e9\' (data/tasks.parquet) both make the source name '
        f"'flan-cafe' (they differ only in Unicode form ({OTHER_UNICODE_FORM}), which print alike: write them in one "
        "form in the file)")
    clash = _project(tmp_path / "b", [{"task": t, "prompt": "p", "response": "r"} for t in ("a b", "a_b")])
    (issue,) = validate_spec_file(clash).issues  # (one file: no "separate groups" for its two values)
    assert issue.message.endswith("one folder): rename one value in its file"), issue.message


def test_a_loader_without_where_dumps_as_before(tmp_path: Path) -> None:
    """Specs without ``by`` keep their fingerprints: no ``where`` key in a Parquet loader's dump."""
    assert "where" not in ParquetLoader(type="parquet", path="x.parquet").model_dump(mode="json")


def test_the_data_stage_reads_each_task_and_goes_stale_with_the_file(tmp_path: Path) -> None:
    from subsetctl.api import plan_project, run_project
    from subsetctl.reporter import SilentReporter

    _project(tmp_path)
    reporter = SilentReporter()
    run_project(tmp_path, until="data", reporter=reporter)
    # the rows no source takes are said once, by the spec's warning as the run begins (the data stage said it again)
    (said,) = [w for w in map(str, reporter.warnings) if "have no 'task' value" in w]
    assert said.startswith(f"{tmp_path / 'subsetctl.yaml'}:12: source_files[0].by: 2 rows of data/tasks.parquet"), said
    summary = json.loads((tmp_path / ".subsetctl" / "data" / "data.json").read_text())
    assert summary["counts"]["flan-cola"]["train"] == 5 and set(summary["counts"]) == {"t", "flan-b_e", "flan-cola",
                                                                                        "flan-sst_2"}
    assert any("2 rows of data/tasks.parquet have no 'task' value" in w for w in summary["warnings"])
    assert files._whole_file.cache_info().currsize == 0  # the file's rows let go once the stage is done
    assert not {s.name: s for s in plan_project(tmp_path)[2]}["data"].will_run
    rows = _rows(["cola", "sst 2", "b/é"])
    rows[0]["response"] = "changed"
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "tasks.parquet")
    assert {s.name: s for s in plan_project(tmp_path)[2]}["data"].will_run


def test_a_data_stage_that_fails_lets_go_of_the_file_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It let go of the file's rows only when it finished: a notebook process whose data
    stage failed (a bad row of a later source) kept up to 512 MiB of them."""
    from subsetctl.data import stage

    spec = load_spec(_project(tmp_path))
    written: list[str] = []
    real = stage._write_source

    def fail_on_the_second_task(out_dir, name, *args, **kwargs):  # type: ignore[no-untyped-def]
        written.append(name)
        if len(written) == 3:  # the target, a task, then this one
            raise UserError("a bad row")
        return real(out_dir, name, *args, **kwargs)

    monkeypatch.setattr(stage, "_write_source", fail_on_the_second_task)
    with pytest.raises(UserError, match="a bad row"):
        stage.run_data_stage(spec, tmp_path, tmp_path / "out")
    assert len(written) == 3 and files._whole_file.cache_info().currsize == 0


def _listed(tmp_path: Path, where: dict) -> Path:
    """A project listing a source of ``where``'s rows of the tasks file, and one of all its rows."""
    path = _project(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["sources"] = [{"name": "s", "loader": {"type": "parquet", "path": "data/tasks.parquet", "where": where}},
                       {"name": "all", "loader": {"type": "parquet", "path": "data/tasks.parquet"}}]
    del spec["source_files"]
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return path


def _ctx(base: Path, name: str):
    from subsetctl.data.loaders.common import LoadContext

    return LoadContext(source_name=name, base_dir=base, kind="causal-lm", seed=0)  # type: ignore[arg-type]


def test_validate_checks_a_listed_sources_where(tmp_path: Path) -> None:
    """A listed source's ``where``: its column and value checked by validate (the data stage
    stopped on them), and its row count is that value's (a split asking for more is an issue)."""
    from subsetctl.api import validate_spec_file

    (issue,) = validate_spec_file(_listed(tmp_path / "a", {"tsk": "cola"})).issues
    assert issue.key == "sources[0].loader.where" and "no column 'tsk'" in issue.message
    (issue,) = validate_spec_file(_listed(tmp_path / "b", {"task": "colaa"})).issues
    assert issue.key == "sources[0].loader.where" and "no row has task = 'colaa'" in issue.message
    assert "'b/é', 'cola', 'sst 2'" in issue.message
    path = _listed(tmp_path / "b2", {"task": "colaa"})  # a split too: said once (not "has at most 0" beside it)
    spec = yaml.safe_load(path.read_text())
    spec["sources"][0]["split"] = {"train": 2}
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    (issue,) = validate_spec_file(path).issues
    assert issue.key == "sources[0].loader.where", issue
    path = _listed(tmp_path / "c", {"task": "cola"})
    spec = yaml.safe_load(path.read_text())
    spec["sources"][0]["split"] = {"train": 8}
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    (issue,) = validate_spec_file(path).issues
    assert "(task = 'cola') has 5 rows" in issue.message


def test_a_problem_of_many_values_is_said_once(tmp_path: Path) -> None:
    """A group split asking for more rows than 40 tasks have: one issue naming a few of them
    by file and value (each value's message names its own value: they were 40 issues)."""
    from subsetctl.api import validate_spec_file

    rows = [{"task": f"t{i:02d}", "prompt": f"p{j}", "response": "r"} for i in range(40) for j in range(3 + i % 2)]
    path = _project(tmp_path, rows, {"files": "data/*.parquet", "by": "task", "split": {"train": 10},
                                     "loader": {"type": "parquet"}})
    (issue,) = validate_spec_file(path).issues
    assert issue.key.startswith("source_files[0] (all 40 values: data/tasks.parquet (task = 't00'), ")
    assert "has 3 to 4 rows" in issue.message
    text = tmp_path / "text.yaml"  # a few values alike: "and 2 more values" (it said "more files", of one file)
    spec = yaml.safe_load(path.read_text())
    spec["source_files"] = [{"files": "data/*.parquet", "by": "task", "loader": {"type": "parquet", "text_field": "x"}}]
    rows = [{"task": f"t{i}", "prompt": "p", "response": "r"} for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "tasks.parquet")
    text.write_text(yaml.safe_dump(spec))
    (issue,) = validate_spec_file(text).issues
    assert issue.key == "source_files[0] (data/tasks.parquet (task = 't0') and 2 more values).loader.text_field"


def test_value_names_of_any_text() -> None:
    from subsetctl.spec import SourceFilesSpec

    group = SourceFilesSpec(files="*.parquet", by="task", name_prefix="p-", loader={"type": "parquet"})
    assert group.value_source_name("Crème brûlée") == "p-Creme_brulee" and group.value_source_name(12) == "p-12"
    no_ascii = group.value_source_name("中文")
    assert no_ascii.startswith("p-value-") and no_ascii != group.value_source_name("日本")
    long_a, long_b = group.value_source_name("x" * 80 + "a"), group.value_source_name("x" * 80 + "b")
    assert len(long_a) == 64 and long_a != long_b
    unprefixed = SourceFilesSpec(files="*.parquet", by="task", loader={"type": "parquet"})
    assert unprefixed.value_source_name("_task.1") == "task.1"  # as a file's name, no leading _ . -


def test_a_target_reading_one_task_of_the_file_leaves_the_group_its_other_tasks(tmp_path: Path) -> None:
    """The target one task of the file a ``by`` group reads (FLAN kept as one file, the target its
    cola): the group gives the other tasks as sources, not the target's own. The whole file was
    left out as "the target's own", and validate said the group matches no file. A target
    reading the file whole, or by another column, still leaves it out (its rows would leak)."""
    path = _project(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["target"]["loader"] = {"type": "parquet", "path": "data/tasks.parquet", "where": {"task": "cola"}}
    spec["target"]["split"] = {"train": 3, "validation": 1, "test": 1}
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    loaded = load_spec(path)
    assert [(s.name, s.loader.where) for s in loaded.sources] == [("flan-b_e", {"task": "b/é"}),
                                                                 ("flan-sst_2", {"task": "sst 2"})]
    for whole in ({"type": "parquet", "path": "data/tasks.parquet"},
                  {"type": "parquet", "path": "data/tasks.parquet", "where": {"prompt": "cola q1"}}):
        spec["target"]["loader"] = whole
        path.write_text(yaml.safe_dump(spec, allow_unicode=True))
        with pytest.raises(SpecError, match=r"matches only the target's own file\(s\), data/tasks.parquet, which no "
                                            r"source may read .* or set `by` to the column the target's `where` names"):
            load_spec(path)


def test_a_listed_source_reading_one_task_of_the_file_leaves_the_group_its_other_tasks(tmp_path: Path) -> None:
    """One task listed as a source of its own (``where`` on the ``by`` column), for settings of
    its own (a label_map for its 0/1 labels, which the group's would apply to every task's
    answers): the group gives the file's other tasks. It also gave that task, a second source
    of the same rows. A listed source reading the file by another column leaves it whole."""
    path = _project(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["sources"] = [{"name": "cola", "loader": {"type": "parquet", "path": "data/tasks.parquet",
                                                   "where": {"task": "cola"}}, "label_map": {0: "no", 1: "yes"}}]
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    loaded = load_spec(path)
    assert [(s.name, s.loader.where) for s in loaded.sources] == [
        ("cola", {"task": "cola"}), ("flan-b_e", {"task": "b/é"}), ("flan-sst_2", {"task": "sst 2"})]
    spec["sources"][0]["loader"]["where"] = {"prompt": "cola q1"}
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    assert [s.name for s in load_spec(path).sources] == ["cola", "flan-b_e", "flan-cola", "flan-sst_2"]


def test_where_where_no_loader_takes_it_says_what_to_write(tmp_path: Path) -> None:
    """``where`` in a group's loader (beside ``by`` on the same column, or to pick one task),
    or on a text file's loader, was "unknown key (check its spelling...)", as if misspelt."""
    from subsetctl.spec.reading import validate_data

    path = _project(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["source_files"][0]["loader"]["where"] = {"task": "cola"}
    (issue,) = validate_data(spec, str(path))[1]
    assert issue.key == "source_files[0].loader.where" and issue.message.startswith(
        "a source_files group's loader takes no where: `by: COLUMN` makes one source per value")
    del spec["source_files"][0]["loader"]["where"]
    spec["target"]["loader"] = {"type": "huggingface", "path": "t.jsonl", "where": {"task": "cola"}}
    (issue,) = validate_data(spec, str(path))[1]
    assert issue.key == "target.loader.where" and issue.message.startswith(
        "where is the jsonl, csv and parquet loaders' (it reads the rows of one value of a column")


def test_a_group_matching_only_what_the_target_or_listed_sources_read_says_so(tmp_path: Path) -> None:
    """A group whose files are all the target's (a `by` column the target's `where` does not
    name: a misspelt one, which no check then reached), or each of whose values a listed
    source reads, was told its pattern matches no file."""
    path = _project(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["target"]["test_loader"] = {"type": "parquet", "path": "data/tasks.parquet", "where": {"task": "cola"}}
    spec["target"]["split"] = {"train": 3, "validation": 1}
    spec["source_files"][0]["by"] = "tsak"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    with pytest.raises(SpecError, match=r"source_files\[0\]\.files: 'data/\*\.parquet' matches only the target's own "
                                        r"file\(s\), data/tasks.parquet, .*here 'tsak'"):
        load_spec(path)
    del spec["target"]["test_loader"]
    spec["target"]["split"] = {"train": 4, "validation": 2, "test": 2}
    spec["source_files"][0]["by"] = "task"
    spec["sources"] = [{"name": f"s{i}", "loader": {"type": "parquet", "path": "data/tasks.parquet",
                                                   "where": {"task": task}}} for i, task in enumerate(["cola", "sst 2", "b/é"])]
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    with pytest.raises(SpecError, match=r"every 'task' value of data/tasks.parquet is read by the target or a listed "
                                        r"source"):
        load_spec(path)


def test_a_listed_source_named_as_a_value_says_the_group_names_them_after_values(tmp_path: Path) -> None:
    """It said the group names its sources "after their files", of a name made of a value."""
    path = _project(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["sources"] = [{"name": "flan-cola", "loader": {"type": "jsonl", "path": "t.jsonl"}}]
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    with pytest.raises(SpecError, match=r"duplicate source name 'flan-cola' .* names its sources after the values of "
                                        r"its `by` column: set the group's `name_prefix`"):
        load_spec(path)


def test_a_file_whose_by_values_are_all_blank_is_said_so_not_to_match_no_file(tmp_path: Path) -> None:
    """Every row's ``by`` value blank: the group made no source, and validate said its pattern
    matches no file, which it did."""
    from subsetctl.api import validate_spec_file

    path = _project(tmp_path, rows=[{"task": " ", "prompt": f"q{i}", "response": "a"} for i in range(4)])
    (issue,) = validate_spec_file(path).issues
    assert issue.key == "source_files[0].by" and "no row of data/tasks.parquet has a 'task' value" in issue.message


def test_a_tasks_rows_are_read_once_per_file_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`plan` reads the file for the tasks' row digests once after it changed, for all its
    tasks, and takes them from the project's cache after (another process too)."""
    from subsetctl import filehash
    from subsetctl.api import plan_project, run_project
    from subsetctl.reporter import SilentReporter

    _project(tmp_path)
    run_project(tmp_path, until="data", reporter=SilentReporter())
    filehash.flush_hash_caches()
    monkeypatch.setattr(filehash, "_CACHES", {})  # as a new process: the cache comes from disk
    read: list[str] = []
    real = files.value_digests
    monkeypatch.setattr(files, "value_digests", lambda path, column, *reader: read.append(column) or real(path, column))
    assert not {s.name: s for s in plan_project(tmp_path)[2]}["data"].will_run
    assert read == []
    pq.write_table(pa.Table.from_pylist(_rows(["cola", "sst 2"])), tmp_path / "data" / "tasks.parquet")
    plan_project(tmp_path)
    assert read == ["task"]  # three sources' fingerprints, one read


def test_a_data_stage_fingerprinted_by_the_whole_file_stays_up_to_date(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A data stage run while each ``where`` source counted its whole file (an earlier
    subsetctl) stays up to date with the file as it was; once the file changes, `plan` says
    which sources' inputs changed as that run counted them (every task of the file)."""
    from subsetctl.api import plan_project, run_project
    from subsetctl.data import stage
    from subsetctl.reporter import SilentReporter

    _project(tmp_path)
    recorded = run_data_as_counted_before(tmp_path, monkeypatch)
    assert "file" in recorded["flan-cola"]  # (as an earlier subsetctl recorded it)
    assert not {s.name: s for s in plan_project(tmp_path)[2]}["data"].will_run
    rows = _rows(["cola", "sst 2", "b/é"])
    rows[0]["response"] = "changed"
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "tasks.parquet")
    data = {s.name: s for s in plan_project(tmp_path)[2]}["data"]
    assert data.reasons == ["input files changed: flan-b_e, flan-cola, flan-sst_2"]
    # the file as it was, and a source added: the tasks prepared then are reused, as made from the same rows
    _project(tmp_path)
    spec = yaml.safe_load((tmp_path / "subsetctl.yaml").read_text())
    spec["sources"] = [{"name": "x", "loader": {"type": "jsonl", "path": "t.jsonl"}}]
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    prepared: list[str] = []
    real_prepare = stage.prepare_source
    monkeypatch.setattr(stage, "prepare_source",
                        lambda source, *a, **k: prepared.append(source.name) or real_prepare(source, *a, **k))
    run_project(tmp_path, until="data", reporter=SilentReporter())
    assert prepared == ["x"]


def test_validate_names_the_tasks_the_target_or_listed_sources_take_from_a_group(tmp_path: Path) -> None:
    """The values a ``by`` group makes no source of, as the target or a listed source reads
    their rows, were said nowhere: one warning of the group names them, with who reads each."""
    from subsetctl.api import validate_spec_file

    path = _project(tmp_path, _rows(["cola", "sst 2", "b/é", "mnli"]))
    spec = yaml.safe_load(path.read_text())
    spec["target"] = {"name": "t", "loader": {"type": "parquet", "path": "data/tasks.parquet", "where": {"task": "cola"}},
                      "split": {"train": 3, "validation": 1, "test": 1}}
    spec["sources"] = [{"name": "sst", "loader": {"type": "parquet", "path": "data/tasks.parquet",
                                                  "where": {"task": "sst 2"}}}]
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    report = validate_spec_file(path)
    assert not report.issues
    (warning,) = [w for w in report.warnings if "make no source" in w.message]
    assert warning.key == "source_files[0].by" and warning.line
    assert warning.message == ("2 values of the 'task' column make no source of this group, as the target or a "
                               "listed source reads their rows (loader.where): data/tasks.parquet 'cola' (the target "
                               "'t'), data/tasks.parquet 'sst 2' (source 'sst')")
    assert not [w for w in validate_spec_file(_project(tmp_path / "plain")).warnings if "make no source" in w.message]


def test_a_group_label_map_for_one_task_warns_once_for_the_group(tmp_path: Path) -> None:
    """A ``by`` group's label_map meant for one task's 0/1 labels warned once per other task
    (that it renames nothing there, or few of its answers): one warning for the group now."""
    from subsetctl.data import stage

    rows = ([{"task": "cls", "prompt": f"c{i}", "response": str(i % 2)} for i in range(6)]
            + [{"task": t, "prompt": f"{t}{i}", "response": f"w{i}"} for t in ("a", "b", "c") for i in range(6)]
            + [{"task": "sum", "prompt": f"s{i}", "response": r} for i, r in enumerate(["0", "1", "7", "8", "9", "10"])])
    group = {"files": "data/*.parquet", "by": "task", "loader": {"type": "parquet"}, "label_map": {0: "no", 1: "yes"}}
    spec = load_spec(_project(tmp_path, rows, group))
    summary = stage.run_data_stage(spec, tmp_path, tmp_path / "out")
    said = [w for w in summary["warnings"] if "label_map" in w]
    assert len(said) == 1, said
    assert said[0].startswith("source_files[0]: the group's label_map ('0', '1') applies to each of its 5 sources; "
                              "with `by: task`, to every task; it names keys that no row of 3 of them has (renaming "
                              "nothing there): 'a', 'b', 'c'; it renamed fewer than half of the answers of 1"), said[0]
    assert "The first such source's warning: Source 'a': label_map names '0', '1'" in said[0]
    one = load_spec(_project(tmp_path / "one", rows[:12], group))  # one other task: its own warning
    (alone,) = [w for w in stage.run_data_stage(one, tmp_path / "one", tmp_path / "one" / "out")["warnings"]
                if "label_map" in w]
    assert alone.startswith("Source 'a': label_map names '0', '1'")


def test_a_file_naming_the_task_column_twice_is_refused_naming_the_file_and_the_column(tmp_path: Path) -> None:
    """A Parquet file with two columns named as the one picking rows: the rows were picked by
    one of them and their digest (``where``'s fingerprint) read the other, and validate and
    the data stage stopped with an internal KeyError; both now name the file and the column."""
    from subsetctl.api import validate_spec_file

    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "d.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["a", "b"]), pa.array(["p", "q"]), pa.array(["r", "s"]),
                                         pa.array(["x", "y"])], names=["task", "prompt", "response", "task"]), path)
    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
            "sources": [{"name": "a", "loader": {"type": "parquet", "path": "data/d.parquet", "where": {"task": "a"}}},
                        {"name": "b", "loader": {"type": "jsonl", "path": "t.jsonl"}}]}
    (tmp_path / "t.jsonl").write_text('{"prompt": "1", "response": "2"}\n' * 8)
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec))
    (issue,) = validate_spec_file(tmp_path / "subsetctl.yaml").issues
    assert issue.key == "sources[0].loader.where" and f"file {path} has 2 columns named 'task'" in issue.message
    with pytest.raises(UserError, match="has 2 columns named 'task'.*Rename or drop all but one"):
        load_parquet(ParquetLoader(type="parquet", path="data/d.parquet", where={"task": "a"}), _ctx(tmp_path, "a"))
    grouped = _project(tmp_path / "g", group={"files": "../data/*.parquet", "by": "task", "loader": {"type": "parquet"}})
    (issue,) = validate_spec_file(grouped).issues
    assert issue.key == "source_files[0] (../data/d.parquet).by" and "2 columns named 'task'" in issue.message


def test_one_row_with_no_value_is_said_in_the_singular(tmp_path: Path) -> None:
    """The note on rows no source takes said "1 row(s) of ... have no 'task' value ... and are in no source; give
    them one" of a single row; now it agrees with its count."""
    spec = load_spec(_project(tmp_path, _rows(["cola", "sst 2"]) + [{"task": None, "prompt": "n", "response": "n"}]))
    (note,) = spec.left_out_rows
    assert ("1 row of data/tasks.parquet has no 'task' value (null or blank) and is in no source; give it one to "
            "use it") in note[1], note
