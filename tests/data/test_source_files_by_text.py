"""``by`` and ``where`` on JSON Lines and CSV files: one file holding many tasks, one source
per value of its task column, each reading that value's rows only, as for Parquet
(``test_source_files_by.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from subsetctl.data.loaders import files
from subsetctl.data.loaders.common import LoadContext
from subsetctl.data.loaders.files import load_csv, load_jsonl
from subsetctl.errors import UserError
from subsetctl.spec import CsvLoader, JsonlLoader, load_spec

LOADERS = {"jsonl": load_jsonl, "csv": load_csv}


def _rows(tasks: list, per_task: int = 5) -> list[dict]:
    """``per_task`` rows of each task, the tasks interleaved."""
    return [{"task": task, "prompt": f"{task} q{i}", "response": f"a{i}"} for i in range(per_task) for task in tasks]


def _write(path: Path, rows: list[dict]) -> None:
    """``rows`` as JSON Lines, as CSV (a header, every cell as written; None as an empty cell),
    or as Parquet (to compare)."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
        return
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = ["" if row.get(c) is None else str(row[c]) for row in rows for c in columns]
    lines = [",".join(columns)] + [",".join(cells[i:i + len(columns)]) for i in range(0, len(cells), len(columns))]
    path.write_text("\n".join(lines) + "\n")


def _project(tmp_path: Path, kind: str, rows: list[dict] | None = None, by: str = "task") -> Path:
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    if rows is None:
        rows = _rows(["cola", "sst 2", "b/é"]) + [{"task": None, "prompt": "n", "response": "n"},
                                                   {"task": "  ", "prompt": "b", "response": "b"}]
    _write(tmp_path / "data" / f"tasks.{kind}", rows)
    (tmp_path / "t.jsonl").write_text('{"prompt": "1", "response": "2"}\n' * 8)
    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"},
                       "split": {"train": 4, "validation": 2, "test": 2}},
            "source_files": [{"files": f"data/*.{kind}", "by": by, "name_prefix": "flan-", "loader": {"type": kind}}]}
    path = tmp_path / "subsetctl.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return path


def _ctx(base: Path, name: str, **settings: int) -> LoadContext:
    return LoadContext(source_name=name, base_dir=base, kind="causal-lm", seed=0, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_each_value_is_a_source_reading_its_rows_only(tmp_path: Path, kind: str, in_memory: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if not in_memory:  # a large file: read again for each task
        monkeypatch.setattr(files, "WHOLE_TEXT_FILE_BYTES", 0)
    spec = load_spec(_project(tmp_path, kind))
    assert [s.name for s in spec.sources] == ["flan-b_e", "flan-cola", "flan-sst_2"]  # sorted by value
    assert [s.loader.where for s in spec.sources] == [{"task": "b/é"}, {"task": "cola"}, {"task": "sst 2"}]
    assert all(s.loader.type == kind and s.loader.path == f"data/tasks.{kind}" for s in spec.sources)
    (note,) = spec.left_out_rows  # the null (a CSV's empty cell) and the blank value: said once for the file
    assert note[0] == 0 and f"2 rows of data/tasks.{kind} have no 'task' value" in note[1]
    for source in spec.sources:  # that task's rows, in the file's order
        ds = LOADERS[kind](source.loader, _ctx(tmp_path, source.name))
        task = source.loader.where["task"]
        assert ds["prompt"] == [f"{task} q{i}" for i in range(5)]


def test_values_keep_their_type_a_csv_cell_being_text(tmp_path: Path) -> None:
    rows = [{"task": t, "prompt": f"p{t}", "response": "r"} for t in (3, 1, 3)]
    spec = load_spec(_project(tmp_path / "j", "jsonl", rows))
    assert [(s.name, s.loader.where) for s in spec.sources] == [("flan-1", {"task": 1}), ("flan-3", {"task": 3})]
    with pytest.raises(UserError, match=r"no row of file .* has 'task' = '3'"):  # the JSON text "3" is no 3
        load_jsonl(JsonlLoader(type="jsonl", path="data/tasks.jsonl", where={"task": "3"}), _ctx(tmp_path / "j", "x"))
    spec = load_spec(_project(tmp_path / "c", "csv", rows))
    assert [(s.name, s.loader.where) for s in spec.sources] == [("flan-1", {"task": "1"}), ("flan-3", {"task": "3"})]
    assert load_csv(spec.sources[1].loader, _ctx(tmp_path / "c", "flan-3"))["prompt"] == ["p3", "p3"]
    with pytest.raises(UserError, match=r"has 'task' = 3 .*A CSV cell is text: write the value as text \(task: '3'\)"):
        load_csv(CsvLoader(type="csv", path="data/tasks.csv", where={"task": 3}), _ctx(tmp_path / "c", "x"))


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_row_problem_names_the_line_of_the_file(tmp_path: Path, in_memory: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if not in_memory:
        monkeypatch.setattr(files, "WHOLE_TEXT_FILE_BYTES", 0)
    rows = [{"task": "a", "prompt": "p", "response": "r"}, {"task": "b", "prompt": "p", "response": "r"},
            {"task": "b", "prompt": None, "response": "r"}]
    project = _project(tmp_path / "j", "jsonl", rows)
    file = tmp_path / "j" / "data" / "tasks.jsonl"
    file.write_text("\n" + file.read_text())  # a blank line first: the row is on line 4
    source = load_spec(project).sources[1]
    with pytest.raises(UserError, match=r"tasks.jsonl \(task = 'b'\), line 4: 'prompt'"):
        load_jsonl(source.loader, _ctx(tmp_path / "j", source.name))
    project = _project(tmp_path / "c", "csv", rows)
    file = tmp_path / "c" / "data" / "tasks.csv"
    file.write_text('task,prompt,response\na,"two\nlines",r\nb,p,r\nb,p,\n')  # the row is on line 5
    source = load_spec(project).sources[1]
    ctx = _ctx(tmp_path / "c", source.name)
    assert len(load_csv(source.loader, ctx)) == 1
    (notice,) = ctx.notices
    assert "tasks.csv (task = 'b'): 1 of 2 rows has an empty 'response'" in notice and "(line 5)" in notice


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_a_draw_reads_that_tasks_rows_again(tmp_path: Path, kind: str, in_memory: bool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows past the first drawn are read again (``fetch``), by their place among the task's."""
    if not in_memory:
        monkeypatch.setattr(files, "WHOLE_TEXT_FILE_BYTES", 0)
    spec = load_spec(_project(tmp_path, kind, _rows(["a", "b"], per_task=40)))
    source = spec.sources[1]
    drawn = LOADERS[kind](source.loader, _ctx(tmp_path, source.name, keep_at_most=5))
    assert len(drawn) == 5 and all(p.startswith("b q") for p in drawn["prompt"])
    assert set(drawn["prompt"]) <= set(LOADERS[kind](source.loader, _ctx(tmp_path, source.name))["prompt"])


def test_validate_says_what_is_wrong_with_a_by_column_or_a_where(tmp_path: Path) -> None:
    from subsetctl.api import validate_spec_file

    (issue,) = validate_spec_file(_project(tmp_path / "a", "jsonl", by="tsk")).issues
    assert issue.key == "source_files[0] (data/tasks.jsonl).by" and issue.line
    assert "no column 'tsk'" in issue.message and "its rows have the keys 'task', 'prompt', 'response'" in issue.message
    (issue,) = validate_spec_file(_project(tmp_path / "b", "csv", by="tsk")).issues
    assert "no column 'tsk'" in issue.message and "its header names 'task', 'prompt', 'response'" in issue.message
    floats = _project(tmp_path / "c", "jsonl", [{"task": "a", "prompt": "p", "response": "r"},
                                                {"task": 0.5, "prompt": "p", "response": "r"}])
    (issue,) = validate_spec_file(floats).issues
    assert "tasks.jsonl, line 2: column 'task' holds a JSON number (0.5)" in issue.message
    # a listed source's where: its column, and a value some row holds (listing the values)
    for kind in ("jsonl", "csv"):
        path = _project(tmp_path / f"d{kind}", kind)
        spec = yaml.safe_load(path.read_text())
        spec["sources"] = [{"name": "s", "loader": {"type": kind, "path": f"data/tasks.{kind}", "where": {"task": "colaa"}},
                            "split": {"train": 2}},
                           {"name": "u", "loader": {"type": kind, "path": f"data/tasks.{kind}", "where": {"tsk": "x"}}},
                           {"name": "v", "loader": {"type": kind, "path": f"data/tasks.{kind}", "where": {"task": "cola"}},
                            "split": {"train": 8}}]
        del spec["source_files"]
        path.write_text(yaml.safe_dump(spec, allow_unicode=True))
        issues = {issue.key: issue.message for issue in validate_spec_file(path).issues}
        assert "no row has task = 'colaa'" in issues["sources[0].loader.where"]
        assert "its values are 'b/é', 'cola', 'sst 2'" in issues["sources[0].loader.where"]
        assert "no column 'tsk'" in issues["sources[1].loader.where"]
        assert "(task = 'cola') has 5 rows" in " ".join(issues.values())
        assert len(issues) == 3, issues


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_editing_one_task_prepares_that_task_alone(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task's fingerprint is its own rows': editing another task's rows (or adding a
    task) leaves it up to date, and the data stage prepares the edited task alone (it made
    every task of the file stale and prepared them all again)."""
    from subsetctl.api import plan_project, run_project
    from subsetctl.data import stage
    from subsetctl.reporter import SilentReporter

    _project(tmp_path, kind)
    run_project(tmp_path, until="data", reporter=SilentReporter())
    summary = json.loads((tmp_path / ".subsetctl" / "data" / "data.json").read_text())
    assert summary["counts"]["flan-cola"]["train"] == 5
    assert not {s.name: s for s in plan_project(tmp_path)[2]}["data"].will_run
    rows = _rows(["cola", "sst 2", "b/é"])
    next(r for r in rows if r["task"] == "cola")["response"] = "changed"
    rows.append({"task": "new", "prompt": "new q", "response": "a"})
    _write(tmp_path / "data" / f"tasks.{kind}", rows)
    data = {s.name: s for s in plan_project(tmp_path)[2]}["data"]
    assert data.will_run and data.reasons == ["spec changed: sources: added flan-new", "input files changed: flan-cola"]
    prepared: list[str] = []
    real = stage.prepare_source
    monkeypatch.setattr(stage, "prepare_source", lambda source, *a, **k: prepared.append(source.name) or real(source, *a, **k))
    run_project(tmp_path, until="data", reporter=SilentReporter())
    assert prepared == ["flan-cola", "flan-new"]


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_a_loader_without_where_is_fingerprinted_as_before(tmp_path: Path, kind: str) -> None:
    """Existing projects keep their fingerprints: no ``where`` key in the dump, the whole file counted."""
    from subsetctl.data.fingerprint import source_fingerprint_inputs
    from subsetctl.filehash import file_fingerprint
    from subsetctl.spec import SourceSpec

    _write(tmp_path / f"d.{kind}", _rows(["a"]))
    loader = {"type": kind, "path": f"d.{kind}"}
    source = SourceSpec.model_validate({"name": "s", "loader": loader})
    assert "where" not in source.loader.model_dump(mode="json")
    assert source_fingerprint_inputs(source, tmp_path) == {"file": file_fingerprint(tmp_path / f"d.{kind}", tmp_path)}
    picked = SourceSpec.model_validate({"name": "s", "loader": {**loader, "where": {"task": "a"}}})
    assert source_fingerprint_inputs(picked, tmp_path)["rows"]["sha256"]


def test_a_csv_file_of_crlf_lines_is_prepared_again_and_plan_says_why(tmp_path: Path) -> None:
    """Its cells' CRLF are read as LF now: data prepared before held the CRLF. Its key gains a
    note (its ``where`` digests are kept under another name), plan names it; an LF file's
    inputs, and so its key, are as they were."""
    from subsetctl.data.fingerprint import source_fingerprint_inputs
    from subsetctl.filehash import file_fingerprint
    from subsetctl.plan_reasons import changed_inputs
    from subsetctl.spec import SourceSpec

    text = 'task,prompt,response\na,"q\nmore",r\n'
    (tmp_path / "lf.csv").write_text(text, newline="")
    (tmp_path / "crlf.csv").write_text(text.replace("\n", "\r\n"), newline="")
    inputs = {name: source_fingerprint_inputs(SourceSpec.model_validate(
        {"name": name, "loader": {"type": "csv", "path": f"{name}.csv"}}), tmp_path) for name in ("lf", "crlf")}
    assert inputs["lf"] == {"file": file_fingerprint(tmp_path / "lf.csv", tmp_path)}
    assert inputs["crlf"] == {"file": file_fingerprint(tmp_path / "crlf.csv", tmp_path), "cells": "CRLF as LF"}
    rows = {name: source_fingerprint_inputs(SourceSpec.model_validate(
        {"name": name, "loader": {"type": "csv", "path": f"{name}.csv", "where": {"task": "a"}}}), tmp_path)
        for name in ("lf", "crlf")}
    assert rows["crlf"] == {**rows["lf"], "cells": "CRLF as LF"}  # (the same rows' digest: the same cells)
    before = {"crlf": {"file": inputs["crlf"]["file"]}}
    assert changed_inputs(before, {"crlf": inputs["crlf"]}) == \
        "input files changed: crlf (its CSV file's CRLF line breaks inside cells now read as LF)"


def test_a_csv_file_of_mixed_line_ends_prepared_by_an_earlier_subsetctl_is_said_to_be_read_as_written(
        tmp_path: Path) -> None:
    """A CRLF header over LF rows had its cells' CRLF read as LF by a subsetctl that looked at
    the header alone (its key noted "cells"); now they are read as written, and plan says so,
    not that the file, which is the same, changed."""
    from subsetctl.data.fingerprint import source_fingerprint_inputs
    from subsetctl.plan_reasons import changed_inputs
    from subsetctl.spec import SourceSpec

    (tmp_path / "mixed.csv").write_bytes(b'prompt,response\r\n"q\r\nmore",r\n')
    now = source_fingerprint_inputs(SourceSpec.model_validate(
        {"name": "mixed", "loader": {"type": "csv", "path": "mixed.csv"}}), tmp_path)
    assert "cells" not in now
    assert changed_inputs({"mixed": {**now, "cells": "CRLF as LF"}}, {"mixed": now}) == (
        "input files changed: mixed (its CSV file has mixed line ends: the line breaks inside its cells are now "
        "read as written, not as LF)")


@pytest.mark.parametrize("in_memory", [True, False])
def test_keys_named_twice_are_said_for_the_tasks_own_rows(tmp_path: Path, in_memory: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if not in_memory:
        monkeypatch.setattr(files, "WHOLE_TEXT_FILE_BYTES", 0)
    project = _project(tmp_path, "jsonl", _rows(["a", "b"], per_task=2))
    (tmp_path / "data" / "tasks.jsonl").write_text(
        '{"task": "a", "prompt": "p", "prompt": "p2", "response": "r"}\n{"task": "b", "prompt": "p", "response": "r"}\n'
        '{"task": "b", "prompt": "p", "response": "r", "response": "r2"}\n')
    spec = load_spec(project)
    ctx = _ctx(tmp_path, "flan-b")
    assert load_jsonl(spec.sources[1].loader, ctx)["response"] == ["r", "r2"]
    (notice,) = ctx.notices
    assert "1 row names a key twice (line 3: 'response')" in notice


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_plan_parses_the_file_once_per_content(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A text file is parsed whole to list its values and digest its tasks (a Parquet file's
    column is read alone): both are kept in the project's cache, so that `plan` parses it
    again only after it changed (it did on each spec load, every `plan` and `validate`)."""
    from subsetctl import filehash
    from subsetctl.api import plan_project, run_project
    from subsetctl.reporter import SilentReporter

    _project(tmp_path, kind)
    run_project(tmp_path, until="data", reporter=SilentReporter())
    filehash.flush_hash_caches()
    monkeypatch.setattr(filehash, "_CACHES", {})  # as a new process: the caches come from disk
    files._text_value_rows.cache_clear()
    parsed: list[Path] = []
    real = files._text_records
    monkeypatch.setattr(files, "_text_records", lambda path, *a, **k: parsed.append(path) or real(path, *a, **k))
    assert not {s.name: s for s in plan_project(tmp_path)[2]}["data"].will_run
    assert parsed == []
    _write(tmp_path / "data" / f"tasks.{kind}", _rows(["cola", "sst 2"]))
    assert [s.name for s in load_spec(tmp_path / "subsetctl.yaml").sources] == ["flan-cola", "flan-sst_2"]
    plan_project(tmp_path)
    assert len(parsed) == 1  # the values and the digests, one parse


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_a_few_lines_not_utf8_are_left_out_of_every_task_said_once(tmp_path: Path, kind: str, in_memory: bool,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """One line of the file that is not UTF-8 stopped every task's source (the file's values
    were read strictly): it is left out, as the loaders leave out such lines, with one warning
    for the file (validate's and the data stage's), not one per task; the drawn rows are read
    again past it."""
    from subsetctl.api import run_project, spec_warnings
    from subsetctl.reporter import SilentReporter

    if not in_memory:
        monkeypatch.setattr(files, "WHOLE_TEXT_FILE_BYTES", 0)
    path = _project(tmp_path, kind, _rows(["a", "b"], per_task=20))
    data = tmp_path / "data" / f"tasks.{kind}"
    bad = b'{"task": "a", "prompt": "x\x81", "response": "y"}\n' if kind == "jsonl" else b"a,x\x81,y\n"
    lines = data.read_bytes().splitlines(keepends=True)
    data.write_bytes(b"".join(lines[:3]) + bad + b"".join(lines[3:]))
    spec = load_spec(path)
    byte = len(b"".join(lines[:3])) + bad.index(b"\x81")
    counted = f"{len(lines) + 1} lines" if kind == "jsonl" else f"{len(lines)} rows"  # (a CSV file's header: no row)
    notice = (f"File {data}: 1 of {counted} is not valid UTF-8 (line 4; the first at byte "
              f"{byte}); it is left out of every source reading it. If the file was saved in another "
              "encoding, re-save it as UTF-8.")
    said = [w.message for w in spec_warnings(spec, path) if "not valid UTF-8" in w.message]
    read_by = " Read by sources 'flan-a' and 'flan-b'."  # (validate names them: each task's key is not the file's)
    assert said == [notice.replace(str(data), "data/" + data.name) + read_by] or said == [notice + read_by]
    source = spec.sources[0]
    drawn = LOADERS[kind](source.loader, _ctx(tmp_path, source.name, keep_at_most=5))
    assert len(drawn) == 5 and all(p.startswith("a q") for p in drawn["prompt"])
    run_project(tmp_path, until="data", reporter=SilentReporter())
    summary = json.loads((tmp_path / ".subsetctl" / "data" / "data.json").read_text())
    assert summary["counts"]["flan-a"]["train"] == 20 and summary["counts"]["flan-b"]["train"] == 20
    assert len([w for w in summary["warnings"] if "not valid UTF-8" in w]) == 1


@pytest.mark.parametrize("in_memory", [True, False])
def test_csv_cells_with_a_bom_or_a_nul_are_said_once_for_the_file(tmp_path: Path, in_memory: bool,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A CSV file whose tasks ``where`` reads, with a NUL byte in a cell: the data stage said
    nothing (every task would have repeated it) and validate never looks for one; now both say
    it once for the file."""
    from subsetctl.api import run_project, spec_warnings
    from subsetctl.reporter import SilentReporter

    if not in_memory:
        monkeypatch.setattr(files, "WHOLE_TEXT_FILE_BYTES", 0)
    path = _project(tmp_path, "csv", _rows(["a", "b"], per_task=20))
    data = tmp_path / "data" / "tasks.csv"
    data.write_bytes(data.read_bytes().replace(b"a q3,", b"a q\x003,"))
    said = [w.message for w in spec_warnings(load_spec(path), path) if "NUL" in w.message]
    assert len(said) == 1 and said[0].startswith("File ") and "1 cell holds a NUL byte (line 8, column 'prompt')" in said[0]
    run_project(tmp_path, until="data", reporter=SilentReporter())
    summary = json.loads((tmp_path / ".subsetctl" / "data" / "data.json").read_text())
    read_by = " Read by sources 'flan-a' and 'flan-b'."  # (validate names them; the data stage, the file alone)
    assert [w + read_by for w in summary["warnings"] if "NUL" in w] == said


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_a_file_a_source_and_a_wheres_tasks_read_is_warned_of_once_naming_every_source(tmp_path: Path,
                                                                                       kind: str) -> None:
    """A file read by a listed source and by a ``where``'s tasks got two warnings of different
    words for one problem (the source's, and the file's), and the tasks' named none of them (its
    key was the first task's alone): one warning now, naming every source that reads the file,
    whose words without them are the data stage's (a run prints it once, as it begins)."""
    from subsetctl.api import spec_warnings, validate_spec_file

    path = _project(tmp_path, kind, _rows(["a", "b"], per_task=20))
    data = tmp_path / "data" / f"tasks.{kind}"
    lines = data.read_bytes().splitlines(keepends=True)
    bad = b'{"task": "a", "prompt": "x\x81", "response": "y"}\n' if kind == "jsonl" else b"a,x\x81,y\n"
    data.write_bytes(b"".join(lines[:3]) + bad + b"".join(lines[3:]))
    spec = yaml.safe_load(path.read_text())
    spec["sources"] = [{"name": "whole", "loader": {"type": kind, "path": f"data/tasks.{kind}"}}]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    said = [w for w in spec_warnings(load_spec(path), path) if "not valid UTF-8" in w.message]
    assert len(said) == 1 and said[0].key == "sources[0].loader.path", said
    assert said[0].message.startswith("File ") and "left out of every source reading it" in said[0].message
    assert said[0].message.endswith(" Read by sources 'whole', 'flan-a' and 'flan-b'.")
    checked = validate_spec_file(path).spec.checked_warnings
    assert said[0].message.removesuffix(" Read by sources 'whole', 'flan-a' and 'flan-b'.") in checked


@pytest.mark.parametrize(("kind", "problem"), [("jsonl", "not valid UTF-8"), ("csv", "not valid UTF-8"),
                                               ("csv", "NUL byte"), ("csv", "mixed line ends")])
def test_a_file_two_listed_sources_read_is_warned_of_by_the_data_stage_as_validate_did(
        tmp_path: Path, kind: str, problem: str) -> None:
    """A file two listed sources read (no ``where``): validate warns once of its problem, of the
    file ("Read by sources 'a' and 'b'."), and a run prints that as it begins; the data stage
    said it again in each source's words ("Source 'a': file ..."), which are not validate's, so
    a run printed one problem three times. It says it of the file now, as validate does."""
    from subsetctl.api import run_project, validate_spec_file
    from subsetctl.reporter import SilentReporter

    path = _project(tmp_path, kind, _rows(["a", "b"], per_task=20))
    data = tmp_path / "data" / f"tasks.{kind}"
    lines = data.read_bytes().splitlines(keepends=True)
    if problem == "not valid UTF-8":
        lines[3] = b'{"task": "a", "prompt": "x\x81", "response": "y"}\n' if kind == "jsonl" else b"a,x\x81,y\n"
    elif problem == "NUL byte":
        lines[3] = b"a,x\x00,y\n"
    else:  # (a quoted cell holding a line break: what mixed line ends change)
        lines = [line.replace(b"\n", b"\r\n") if i % 3 == 0 else line for i, line in enumerate(lines)]
        lines.append(b'b,"two\nlines",y\n')
    data.write_bytes(b"".join(lines))
    spec = yaml.safe_load(path.read_text())
    del spec["source_files"]
    spec["sources"] = [{"name": name, "loader": {"type": kind, "path": f"data/tasks.{kind}"}} for name in ("a", "b")]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    report = validate_spec_file(path)
    said = [w.message for w in report.warnings if problem in w.message]
    assert len(said) == 1 and said[0].endswith(" Read by sources 'a' and 'b'."), said
    run_project(tmp_path, until="data", reporter=SilentReporter())
    summary = json.loads((tmp_path / ".subsetctl" / "data" / "data.json").read_text())
    stage = [w for w in summary["warnings"] if problem in w]
    assert len(stage) == 1 and stage[0] in report.spec.checked_warnings, stage  # (a run prints none of them again)


@pytest.mark.parametrize(("kind", "problem"), [("jsonl", "not valid UTF-8"), ("csv", "NUL byte")])
def test_a_problem_of_the_targets_file_is_worded_as_the_data_stage_words_it(tmp_path: Path, kind: str,
                                                                            problem: str) -> None:
    """The target's file problem (of its file alone) was "Source 't': file ..." in validate's
    words and "The target 't': file ..." in the data stage's, so a run printed it twice (as it
    began, and as the data stage ended). Validate words it as the data stage does."""
    from subsetctl.api import run_project, validate_spec_file
    from subsetctl.reporter import SilentReporter

    path = _project(tmp_path, kind, _rows(["a", "b"], per_task=20))
    data = tmp_path / "data" / f"t.{kind}"
    _write(data, _rows(["t"], per_task=40))
    lines = data.read_bytes().splitlines(keepends=True)
    lines[3] = (b'{"task": "t", "prompt": "x\x81", "response": "y"}\n' if kind == "jsonl" else
                b"t,x\x81,y\n" if problem == "not valid UTF-8" else b"t,x\x00,y\n")
    data.write_bytes(b"".join(lines))
    spec = yaml.safe_load(path.read_text())
    spec["target"]["loader"] = {"type": kind, "path": f"data/t.{kind}"}
    spec["source_files"][0]["files"] = f"data/tasks.{kind}"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    report = validate_spec_file(path)
    said = [w for w in report.warnings if problem in w.message]
    assert len(said) == 1 and said[0].key == "target.loader.path", said
    assert said[0].message.startswith("The target 't': file "), said
    run_project(tmp_path, until="data", reporter=SilentReporter())
    summary = json.loads((tmp_path / ".subsetctl" / "data" / "data.json").read_text())
    assert [w for w in summary["warnings"] if problem in w] == [said[0].message]
    assert said[0].message in report.spec.checked_warnings  # (a run prints it once, as it begins)


@pytest.mark.parametrize("shared_first", [True, False])
@pytest.mark.parametrize(("kind", "problem"), [("jsonl", "not valid UTF-8"), ("csv", "NUL byte")])
def test_a_reused_sources_file_problem_is_worded_by_todays_sharing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, problem: str, shared_first: bool) -> None:
    """A source's kept warnings kept the words of the run that prepared it: prepared while it
    read its file alone, it said the file's problem in its own words once a second source read
    the file too (validate: of the file), and prepared while the two read it, of the file once
    the second was removed (validate: of the source); a run printed the problem twice. A reused
    source's file problems are now worded by today's sharing, without preparing it again."""
    from subsetctl.api import run_project, validate_spec_file
    from subsetctl.data import stage
    from subsetctl.reporter import SilentReporter

    path = _project(tmp_path, kind, _rows(["a", "b"], per_task=20))
    data = tmp_path / "data" / f"tasks.{kind}"
    lines = data.read_bytes().splitlines(keepends=True)
    lines[3] = b'{"task": "a", "prompt": "x\x81", "response": "y"}\n' if problem != "NUL byte" else b"a,x\x00,y\n"
    data.write_bytes(b"".join(lines))
    _write(tmp_path / "other.jsonl", _rows(["c"], per_task=20))
    spec = yaml.safe_load(path.read_text())
    del spec["source_files"]
    listed = {name: {"name": name, "loader": {"type": kind, "path": f"data/tasks.{kind}"}} for name in ("a", "b")}
    listed["c"] = {"name": "c", "loader": {"type": "jsonl", "path": "other.jsonl"}}
    prepared: list[str] = []
    real_prepare = stage.prepare_source
    monkeypatch.setattr(stage, "prepare_source", lambda source, *a, **k: prepared.append(source.name)
                        or real_prepare(source, *a, **k))
    for names in (["a", "b", "c"], ["a", "c"]) if shared_first else (["a", "c"], ["a", "b", "c"]):
        spec["sources"] = [listed[name] for name in names]
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        prepared.clear()
        run_project(tmp_path, until="data", reporter=SilentReporter())
    assert "a" not in prepared, prepared  # (reused: the words alone do not prepare it again)
    report = validate_spec_file(path)
    said = [w.message for w in report.warnings if problem in w.message]
    assert len(said) == 1, said
    summary = json.loads((tmp_path / ".subsetctl" / "data" / "data.json").read_text())
    stage_said = [w for w in summary["warnings"] if problem in w]
    assert len(stage_said) == 1 and stage_said[0] in report.spec.checked_warnings, (stage_said, said)
