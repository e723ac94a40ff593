"""A list ``loader.prompt_field``: the prompt made of several columns (Alpaca's instruction
and input, NLI's premise and hypothesis), the rows and files that lack them, the spec's
rules for the list, ``validate``'s head check, and the seeded draw; a plain string
``prompt_field`` dumps and fingerprints as it did before lists were allowed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from data_helpers import check_issues, write_jsonl, write_source

from subsetctl.data import loaders
from subsetctl.data.loaders import LoadContext, load_csv, load_jsonl, load_parquet, sample_order
from subsetctl.data.prepare import SPLITS, load_source, prepare_source
from subsetctl.errors import UserError
from subsetctl.spec import CsvLoader, JsonlLoader, ParquetLoader, SourceSpec, Spec, fingerprint_dump
from subsetctl.spec.reading import validate_data

ALPACA = ["instruction", "input"]

#: Alpaca rows: an empty, a blank, a null and a missing input are all skipped
ROWS: list[dict[str, Any]] = [
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "id": 0},
    {"instruction": "Name a colour.", "input": "", "output": "Red", "id": 1},
    {"instruction": "Say hi.", "input": "  ", "output": "Hi", "id": 2},
    {"instruction": "Count to two.", "input": None, "output": "1 2", "id": 3},
]
PROMPTS = ["Add the numbers.\n\n2 and 3", "Name a colour.", "Say hi.", "Count to two."]


def _metadata(ds: Any) -> list[dict[str, Any]]:
    return [json.loads(m) for m in ds["metadata"]]


def test_jsonl_alpaca_rows_join_the_columns_that_are_not_empty(tmp_path: Path, make_ctx) -> None:
    rows = [*ROWS, {"instruction": "Echo.", "output": "Echo.", "id": 4}]  # no input key at all
    write_jsonl(tmp_path / "a.jsonl", rows)
    ctx = make_ctx()
    ds = load_jsonl(JsonlLoader(type="jsonl", path="a.jsonl", prompt_field=ALPACA, response_field="output"), ctx)
    assert ds["prompt"] == [*PROMPTS, "Echo."]
    assert ds["response"] == ["5", "Red", "Hi", "1 2", "Echo."]
    assert _metadata(ds) == [{"id": i} for i in range(5)]  # the listed columns are used, not metadata
    assert ctx.notices == []


def test_csv_alpaca_rows_join_the_columns_that_are_not_empty(tmp_path: Path, make_ctx) -> None:
    pd.DataFrame(ROWS).to_csv(tmp_path / "a.csv", index=False)  # (None is an empty cell)
    ctx = make_ctx()
    ds = load_csv(CsvLoader(type="csv", path="a.csv", prompt_field=ALPACA, response_field="output"), ctx)
    assert ds["prompt"] == PROMPTS and ds["response"] == ["5", "Red", "Hi", "1 2"]
    assert _metadata(ds) == [{"id": str(i)} for i in range(4)] and ctx.notices == []


def test_parquet_alpaca_rows_join_the_columns_in_the_order_listed(tmp_path: Path, make_ctx) -> None:
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "a.parquet")
    ds = load_parquet(ParquetLoader(type="parquet", path="a.parquet", prompt_field=["input", "instruction"],
                                    response_field="output"), make_ctx())
    assert ds["prompt"] == ["2 and 3\n\nAdd the numbers.", "Name a colour.", "Say hi.", "Count to two."]
    assert _metadata(ds) == [{"id": i} for i in range(4)]


def test_a_classifier_reads_premise_and_hypothesis(tmp_path: Path, make_ctx) -> None:
    write_jsonl(tmp_path / "nli.jsonl", [
        {"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": 0},
        {"premise": "A cat sleeps.", "hypothesis": "The cat is awake.", "label": 2},
        {"premise": "It rains.", "hypothesis": "It is wet.", "label": 0},
    ])
    loader = JsonlLoader(type="jsonl", path="nli.jsonl", prompt_field=["premise", "hypothesis"], label_field="label")
    ds = load_jsonl(loader, make_ctx(kind="classifier"))
    assert ds["prompt"] == ["A dog runs.\n\nAn animal moves.", "A cat sleeps.\n\nThe cat is awake.",
                            "It rains.\n\nIt is wet."]
    assert ds["label_text"] == ["0", "2", "0"] and ds["label"] == [0, 1, 0] and _metadata(ds) == [{}, {}, {}]


def test_a_row_with_every_listed_column_missing_lacks_its_prompt(tmp_path: Path, make_ctx) -> None:
    write_jsonl(tmp_path / "a.jsonl", [ROWS[0], {"input": None, "output": "x"}, {"output": "y"}])
    loader = JsonlLoader(type="jsonl", path="a.jsonl", prompt_field=ALPACA, response_field="output")
    with pytest.raises(UserError) as err:
        load_jsonl(loader, make_ctx())
    message = str(err.value)
    assert "line 2: 'instruction' + 'input' (loader.prompt_field) is missing, null or NaN in every one" in message
    assert "2 of 3 rows lack 'instruction' + 'input' (loader.prompt_field) or 'output' (loader.response_field)" \
        in message and "(line 2, line 3)" in message


def test_rows_whose_listed_columns_are_all_blank_have_an_empty_prompt(tmp_path: Path, make_ctx) -> None:
    write_jsonl(tmp_path / "a.jsonl", [ROWS[0], {"instruction": " ", "input": "", "output": "x"}])
    ctx = make_ctx()
    ds = load_jsonl(JsonlLoader(type="jsonl", path="a.jsonl", prompt_field=ALPACA, response_field="output"), ctx)
    assert ds["prompt"] == [PROMPTS[0], ""]
    (notice,) = ctx.notices
    assert "1 of 2 rows kept have an empty 'instruction' + 'input' (loader.prompt_field) (line 2)" in notice


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_a_listed_column_no_row_has_is_an_error_naming_it(tmp_path: Path, make_ctx, kind: str) -> None:
    rows = [{"instruction": "Say hi.", "output": "Hi"}, {"instruction": "Say bye.", "output": "Bye"}]
    options = {"type": kind, "path": f"a.{kind}", "prompt_field": ["instruction", "input"], "response_field": "output"}
    if kind == "jsonl":
        write_jsonl(tmp_path / "a.jsonl", rows)
        loader, load = JsonlLoader(**options), load_jsonl
    elif kind == "csv":
        pd.DataFrame(rows).to_csv(tmp_path / "a.csv", index=False)
        loader, load = CsvLoader(**options), load_csv
    else:
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
        loader, load = ParquetLoader(**options), load_parquet
    with pytest.raises(UserError) as err:
        load(loader, make_ctx())
    assert ("has no column 'input' (asked for by loader.prompt_field). Available columns: 'instruction', "
            "'output'. Set loader.prompt_field to one of them") in str(err.value)


SPEC = """\
target:
  name: tgt
  loader:
    type: jsonl
    path: data/t.jsonl
    prompt_field: [instruction, input]
    response_field: output
sources:
  - name: rg
    loader: {type: reasoning_gym, task: basic_arithmetic, size: 10}
"""


def test_validate_finds_a_listed_column_past_the_first_row(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    # the first row leaves its empty input out; a later one has it
    write_jsonl(tmp_path / "data" / "t.jsonl", [{"instruction": "a", "output": "b"}, *ROWS, *ROWS])
    assert check_issues(tmp_path, SPEC) == {}
    issues = check_issues(tmp_path, SPEC.replace("[instruction, input]", "[instruction, inptu]"))
    assert set(issues) == {"target.loader.prompt_field[1]"}
    message = issues["target.loader.prompt_field[1]"].message
    assert "has no column 'inptu' (its first 9 rows have 'instruction', 'output', 'input', 'id')" in message
    assert message.endswith("did you mean 'input'? set prompt_field: [\"instruction\", \"input\"], or fix the data")
    assert issues["target.loader.prompt_field[1]"].line == 6


def test_validate_finds_a_listed_column_past_the_head_or_a_bad_line(tmp_path: Path) -> None:
    """A column that first comes after validate's 1000-row head, or after a line that is not
    JSON, is in the file: the data stage reads it, and validate (which every run calls) does
    not refuse the spec; a column no line names is still an issue."""
    (tmp_path / "data").mkdir()
    late = [{"instruction": f"i{i}", "output": f"o{i}"} for i in range(1200)] + ROWS
    write_jsonl(tmp_path / "data" / "t.jsonl", late)
    assert check_issues(tmp_path, SPEC) == {}
    ds = load_jsonl(JsonlLoader(type="jsonl", path="data/t.jsonl", prompt_field=ALPACA, response_field="output"),
                    LoadContext(source_name="t", base_dir=tmp_path, kind="causal-lm", seed=0))
    assert ds["prompt"][1200] == PROMPTS[0]
    issues = check_issues(tmp_path, SPEC.replace("[instruction, input]", "[instruction, inptu]"))
    assert "has no column 'inptu' (its first 1000 rows have 'instruction', 'output')" in \
        issues["target.loader.prompt_field[1]"].message
    lines = [json.dumps({"instruction": "a", "output": "b"}), json.dumps(ROWS[0]), '{"instruction": "cut']
    (tmp_path / "data" / "t.jsonl").write_text("\n".join(lines) + "\n")
    assert check_issues(tmp_path, SPEC) == {}  # (the data stage names line 3)


def test_validate_does_not_read_a_large_file_through_for_a_listed_column(tmp_path: Path, monkeypatch) -> None:
    """Past :data:`LINES_COUNTED_MB` the rest of the file is not looked through (every
    validate, plan and run would read it all): a column the head lacks is not said missing
    there; the data stage, which reads every row, has the last word."""
    from subsetctl.data import checks

    (tmp_path / "data").mkdir()
    rows = [{"instruction": f"i{i}", "output": f"o{i}"} for i in range(1200)]
    write_jsonl(tmp_path / "data" / "t.jsonl", rows)
    typo = SPEC.replace("[instruction, input]", "[instruction, inptu]")
    assert "target.loader.prompt_field[1]" in check_issues(tmp_path, typo)
    monkeypatch.setattr(checks, "LINES_COUNTED_MB", 0.01)
    assert check_issues(tmp_path, typo) == {}


def test_validate_looks_past_a_head_for_a_listed_column_within_the_read_through_total(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    """A listed column a JSON Lines file's head lacks was looked for through the rest of every
    file up to 64 MB, past READ_THROUGH_MB_TOTAL too: 300 sources of 4.4 MB with a typo'd
    column took 116 s to validate, not 15 s. A file past the total is not read past its head
    (the data stage, which reads every row, has the last word; the note names its source);
    one within it still is."""
    from subsetctl.api import validate_spec_file
    from subsetctl.data import checks

    loader = {"type": "jsonl", "prompt_field": ["instruction", "inptu"], "response_field": "output"}
    write_jsonl(tmp_path / "t.jsonl", [{"instruction": f"t{i}", "inptu": "", "output": "o"} for i in range(30)])
    write_jsonl(tmp_path / "a.jsonl", [{"instruction": f"i{i}", "output": f"o{i}"} for i in range(1200)])
    spec = {"target": {"name": "t", "loader": {**loader, "path": "t.jsonl"}},
            "sources": [{"name": "a", "loader": {**loader, "path": "a.jsonl"}}],
            "search": {"strategies": [{"name": "exhaustive"}]}}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert [i.key for i in report.issues] == ["sources[0].loader.prompt_field[1]"], report.issues
    monkeypatch.setattr(checks, "READ_THROUGH_MB_TOTAL", (tmp_path / "t.jsonl").stat().st_size / 2**20)
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert report.issues == [], report.issues
    (note,) = [w for w in report.warnings if w.note]
    assert "the files of 1 more (a)" in note.message and "looks for a column their first rows lack" in note.message


def test_validate_names_a_listed_column_a_csv_header_lacks(tmp_path: Path) -> None:
    """A CSV's columns are named after its header, which the message called "its first row"
    (a data row, to a reader of CSV); JSON Lines keeps "its first row"."""
    (tmp_path / "data").mkdir()
    pd.DataFrame([{"instruction": "a", "output": "b"}] * 8).to_csv(tmp_path / "data" / "t.csv", index=False)
    issues = check_issues(tmp_path, SPEC.replace("type: jsonl\n    path: data/t.jsonl", "type: csv\n    path: data/t.csv"))
    assert set(issues) == {"target.loader.prompt_field[1]"}
    assert "has no column 'input' (its header has 'instruction', 'output')" in \
        issues["target.loader.prompt_field[1]"].message


@pytest.mark.parametrize(("written", "message"), [
    ("[]", "an empty list names no column"),
    ("[instruction, input, instruction]", "names 'instruction' more than once; list each column once"),
])
def test_an_empty_or_repeating_list_is_a_spec_error(tmp_path: Path, written: str, message: str) -> None:
    text = SPEC.replace("[instruction, input]", written)
    spec, issues = validate_data(yaml.safe_load(text), str(tmp_path / "subsetctl.yaml"), text)
    assert spec is None
    (issue,) = issues
    assert issue.key == "target.loader.prompt_field" and issue.line == 6 and message in issue.message


def test_an_empty_prompt_column_name_is_a_spec_error(tmp_path: Path) -> None:
    """`prompt_field: ""` (or the override `target.loader.prompt_field=`) names no column, as
    an empty name in a list does: validate said the spec was valid, and the data stage then
    stopped at "file ... has no column ''"."""
    text = SPEC.replace("[instruction, input]", '""')
    spec, issues = validate_data(yaml.safe_load(text), str(tmp_path / "subsetctl.yaml"), text)
    assert spec is None
    (issue,) = issues
    assert issue.key == "target.loader.prompt_field" and issue.line == 6 and "at least 1 character" in issue.message


def test_a_number_in_the_list_is_one_issue_at_its_item(tmp_path: Path) -> None:
    text = SPEC.replace("[instruction, input]", "[instruction, 3]")
    _spec, issues = validate_data(yaml.safe_load(text), str(tmp_path / "subsetctl.yaml"), text)
    (issue,) = issues
    assert issue.key == "target.loader.prompt_field[1]" and "expected text, got the number 3" in issue.message


def test_messages_field_still_refuses_a_list_prompt_field(tmp_path: Path) -> None:
    text = SPEC.replace("    response_field: output\n", "    messages_field: messages\n")
    spec, issues = validate_data(yaml.safe_load(text), str(tmp_path / "subsetctl.yaml"), text)
    assert spec is None
    (issue,) = issues
    assert issue.key == "target.loader.prompt_field" and "cannot be combined with messages_field" in issue.message


def test_a_list_prompt_field_dumps_and_reads_again_in_groups(tmp_path: Path) -> None:
    loader = JsonlLoader(type="jsonl", path="x.jsonl", prompt_field=ALPACA)
    assert loader.model_dump(mode="json")["prompt_field"] == ALPACA
    assert JsonlLoader.model_validate(loader.model_dump(mode="json")) == loader
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "g.jsonl", ROWS)
    text = SPEC + "source_files:\n  - files: data/g*.jsonl\n    loader: {type: jsonl, prompt_field: [input, instruction]," \
                  " response_field: output}\n"
    spec, issues = validate_data(yaml.safe_load(text), str(tmp_path / "subsetctl.yaml"), text)
    assert issues == [] and spec is not None
    assert [s.loader.prompt_field for s in spec.sources if hasattr(s.loader, "prompt_field")] == [
        ["input", "instruction"]]


# --------------------------------------------------------------- the seeded draw

N = 120


def _draw_rows() -> list[dict[str, Any]]:
    return [{"instruction": f"task {i}", "input": "" if i % 3 else f"context {i}", "output": f"answer {i}", "id": i}
            for i in range(N)]


def _write(folder: Path, kind: str) -> dict[str, Any]:
    return write_source(folder, kind, _draw_rows())


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "huggingface"])
def test_a_capped_source_draws_the_joined_prompts_it_would_without_the_cap(
        tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows past the first kept ones are read again (``fetch``) and their prompt joined
    again: the same prompts as mapping every row and drawing after."""
    loader = {**_write(tmp_path, kind), "prompt_field": ALPACA, "response_field": "output"}
    source = SourceSpec(name="big", loader=loader, max_examples=12,
                        split={"train": 0.5, "validation": 0.25, "test": 0.25})
    full = load_source(source, LoadContext(source_name="big", base_dir=tmp_path, kind="causal-lm", seed=5))
    expected = [dict(row) for row in full.select(sample_order(5, len(full), 12))]
    assert any("\n\ncontext " in row["prompt"] for row in expected)
    mapped: list[int] = []
    real_append = loaders.CommonColumns._append
    monkeypatch.setattr(loaders.CommonColumns, "_append",
                        lambda self, i, *rest: mapped.append(i) or real_append(self, i, *rest))
    ctx = LoadContext(source_name="big", base_dir=tmp_path, kind="causal-lm", seed=5)
    splits = prepare_source(source, ctx)
    got = [dict(row) for name in ("test", "validation", "train") for row in splits[name]]
    assert got == expected
    assert [len(splits[name]) for name in SPLITS] == [6, 3, 3] and len(mapped) <= 2 * 12


# ------------------------------------------------- a string prompt_field as before

PINNED = """\
target:
  name: tgt
  loader: {type: jsonl, path: data/t.jsonl, prompt_field: question, response_field: answer}
sources:
  - name: a
    loader: {type: csv, path: data/a.csv, prompt_field: instruction, response_field: output}
  - name: b
    loader: {type: parquet, path: data/b.parquet}
  - name: c
    loader: {type: huggingface, path: json, data_files: [data/c.jsonl], prompt_field: text}
source_files:
  - files: data/more/*.jsonl
    loader: {type: jsonl, prompt_field: q}
"""


def test_a_string_prompt_field_dumps_and_fingerprints_as_before() -> None:
    """Pinned before lists were allowed: a spec without one keeps its dump (key order
    included), and so every fingerprint and source key: nothing becomes stale."""
    dumped = fingerprint_dump(Spec.model_validate(yaml.safe_load(PINNED)))
    assert json.dumps(dumped["target"]["loader"]) == (
        '{"prompt_field": "question", "response_field": "answer", "label_field": null, "type": "jsonl", '
        '"path": "data/t.jsonl"}')
    assert json.dumps([s["loader"] for s in dumped["sources"]]) == (
        '[{"delimiter": ",", "prompt_field": "instruction", "response_field": "output", "label_field": null, '
        '"type": "csv", "path": "data/a.csv"}, {"prompt_field": "prompt", "response_field": "response", '
        '"label_field": null, "type": "parquet", "path": "data/b.parquet"}, {"prompt_field": "text", '
        '"response_field": "response", "label_field": null, "type": "huggingface", "path": "json", "name": null, '
        '"split": "train", "data_files": ["data/c.jsonl"]}]')
    assert json.dumps(dumped["source_files"][0]["loader"]) == (
        '{"prompt_field": "q", "response_field": "response", "label_field": null, "type": "jsonl"}')
    assert hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest() == (
        "7dc6344b523f2759f01fd9c30fc3d513a4adb72c33c166db16706ddc0ad01bd7")


def test_a_string_prompt_field_maps_a_row_without_the_list_helpers(
        tmp_path: Path, make_ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row of a plain prompt_field takes the one-column path: the list's helpers
    (joining, finding a column whose text is not UTF-8) cost a method call more a row, which
    made mapping a 200k-row file about 12% slower."""
    def unused(*_args: Any) -> None:
        raise AssertionError("a list prompt_field's helper called for a string prompt_field")

    monkeypatch.setattr(loaders.CommonColumns, "_prompt_text", unused)
    monkeypatch.setattr(loaders.CommonColumns, "_prompt_column_of", unused)
    write_jsonl(tmp_path / "a.jsonl", [{"q": f"q{i}", "a": f"a{i}", "tags": [i]} for i in range(3)]
                + [{"q": ["a", "list"], "a": "x"}])
    ctx = make_ctx()
    ds = load_jsonl(JsonlLoader(type="jsonl", path="a.jsonl", prompt_field="q", response_field="a"), ctx)
    assert ds["prompt"] == ["q0", "q1", "q2", '["a", "list"]'] and ds["response"] == ["a0", "a1", "a2", "x"]
    assert any("'q' (loader.prompt_field)" in notice for notice in ctx.notices)  # (the list prompt, said)
