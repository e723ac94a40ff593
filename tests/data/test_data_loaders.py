"""Each loader on small local files, and every bad-input case it must explain."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from data_helpers import qa_rows, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subsetctl.data.loaders import (
    COLUMNS,
    LoadContext,
    evals_data_dir,
    label_vocabulary,
    load_csv,
    load_evals,
    load_huggingface,
    load_jsonl,
    load_parquet,
    load_plugin,
    load_reasoning_gym,
)
from subsetctl.errors import UserError
from subsetctl.registry import LOADERS
from subsetctl.spec import (
    CsvLoader,
    EvalsLoader,
    HuggingFaceLoader,
    JsonlLoader,
    ParquetLoader,
    PluginLoader,
    ReasoningGymLoader,
    SourceSpec,
    Spec,
)


def test_registry_has_every_loader_type() -> None:
    for name in ("jsonl", "csv", "parquet", "huggingface", "reasoning_gym", "evals", "plugin"):
        assert callable(LOADERS.get(name))


# ------------------------------------------------------------------------- jsonl


def test_jsonl_maps_fields_and_keeps_extras(tmp_path: Path, make_ctx) -> None:
    rows = [{"q": "2+2?", "a": 4, "topic": "math"}, {"q": "3+3?", "a": "6", "topic": "math"}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    ds = load_jsonl(
        JsonlLoader(type="jsonl", path="d.jsonl", prompt_field="q", response_field="a"), make_ctx("s1")
    )
    assert ds.column_names == list(COLUMNS)
    assert ds["prompt"] == ["2+2?", "3+3?"]
    assert ds["response"] == ["4", "6"]
    assert ds["label"] == [-1, -1]
    assert ds["source"] == ["s1", "s1"]
    assert ds["row"] == [0, 1]
    assert json.loads(ds["metadata"][0]) == {"topic": "math"}


def test_boolean_answers_and_prompts_read_as_the_file_writes_them(tmp_path: Path, make_ctx) -> None:
    """A JSON ``true`` answer became the text "True" (Python's spelling), which the model
    then learned and was scored against; a parquet boolean column likewise."""
    rows = [{"q": "is 2 even?", "a": True}, {"q": False, "a": False}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    ds = load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl", prompt_field="q", response_field="a"), make_ctx())
    assert ds["response"] == ["true", "false"] and ds["prompt"] == ["is 2 even?", "false"]
    pd.DataFrame({"prompt": ["p0", "p1"], "response": [True, False]}).to_parquet(tmp_path / "d.parquet")
    ds = load_parquet(ParquetLoader(type="parquet", path="d.parquet"), make_ctx())
    assert ds["response"] == ["true", "false"]


def test_decimal_and_date_answers_read_as_their_text_not_quoted(tmp_path: Path, make_ctx) -> None:
    """A Parquet decimal or date column went through JSON: the answer 1.50 became '"1.50"'
    and 2024-01-02 '"2024-01-02"', quotes included."""
    import datetime
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["price?", "when?"],
                             "response": pa.array([decimal.Decimal("1.50"), decimal.Decimal("20.00")],
                                                  pa.decimal128(10, 2)),
                             "day": [datetime.date(2024, 1, 2), datetime.date(2023, 5, 6)]}), tmp_path / "d.parquet")
    ds = load_parquet(ParquetLoader(type="parquet", path="d.parquet"), make_ctx())
    assert ds["response"] == ["1.50", "20.00"]
    on_day = load_parquet(ParquetLoader(type="parquet", path="d.parquet", response_field="day"), make_ctx())
    assert on_day["response"] == ["2024-01-02", "2023-05-06"]


def test_whole_number_answers_held_as_floats_are_a_notice(tmp_path: Path, make_ctx) -> None:
    """A JSON column mixing 5 and 0.5, read by the huggingface loader (datasets' JSON
    reader makes it a float column), and a Parquet float column (pandas' integer column
    with a missing value) read the answer 5 as "5.0" with no word said: the model learned
    and was scored on "5.0" while the same answer in a JSON Lines file, or the target,
    reads "5"."""
    rows = [{"q": f"half of {i}", "a": i // 2 if i % 2 == 0 else i / 2} for i in range(4)]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    ctx = make_ctx("halves")
    ds = load_huggingface(HuggingFaceLoader(type="huggingface", path="json", data_files=["d.json"],
                                            prompt_field="q", response_field="a"), ctx)
    assert ds["response"] == ["0.0", "0.5", "1.0", "1.5"]  # as read: said, not rewritten
    [notice] = [n for n in ctx.notices if "floating-point" in n]
    assert "2 rows" in notice and "'0.0'" in notice and "store the column as integers or as text" in notice
    pd.DataFrame({"prompt": ["p0", "p1"], "response": [3.0, 4.0]}).to_parquet(tmp_path / "d.parquet")
    ctx = make_ctx("floats")
    load_parquet(ParquetLoader(type="parquet", path="d.parquet"), ctx)
    assert any("2 rows" in n and "floating-point" in n for n in ctx.notices)
    write_jsonl(tmp_path / "d.jsonl", rows)  # JSON Lines keeps 0 as "0": only 0.5 and 1.5 are floats
    ctx = make_ctx("halves_jsonl")
    ds = load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl", prompt_field="q", response_field="a"), ctx)
    assert ds["response"] == ["0", "0.5", "1", "1.5"] and not any("floating-point" in n for n in ctx.notices)
    write_jsonl(tmp_path / "c.jsonl", [{"text": "t", "y": 1.0}, {"text": "u", "y": 0.0}])  # a label reads "1"
    ctx = make_ctx("labels", kind="classifier")
    load_jsonl(JsonlLoader(type="jsonl", path="c.jsonl", prompt_field="text", label_field="y"), ctx)
    assert not any("floating-point" in n for n in ctx.notices)


def test_answers_that_mostly_start_with_whitespace_are_a_notice(tmp_path: Path, make_ctx) -> None:
    """A CSV file written with ", " between its cells (header `question, answer`, which
    validate's hint then has read as ' answer') gave every answer a leading space (" 12"), and
    legacy prompt/completion files do so on purpose for base models: the model learned the
    space as each answer's first token with no word said. Most answers so: a notice (a CSV's
    naming the ", " cause); a few: none; a classifier's labels are stripped: none."""
    (tmp_path / "d.csv").write_text("question, answer\n" + "".join(f"q{i}?, {i}\n" for i in range(4)))
    ctx = make_ctx("spaced")
    ds = load_csv(CsvLoader(type="csv", path="d.csv", prompt_field="question", response_field=" answer"), ctx)
    assert ds["response"] == [" 0", " 1", " 2", " 3"]  # as read: said, not rewritten
    [notice] = [n for n in ctx.notices if "starting with whitespace" in n]
    assert "every row" in notice and "' 0'" in notice and "re-save it with ',' alone" in notice, notice
    write_jsonl(tmp_path / "pc.jsonl", [{"prompt": f"{i}?", "completion": f" {i}"} for i in range(3)]
                + [{"prompt": "x?", "completion": "x"}])
    ctx = make_ctx("completions")
    load_jsonl(JsonlLoader(type="jsonl", path="pc.jsonl", response_field="completion"), ctx)
    [notice] = [n for n in ctx.notices if "starting with whitespace" in n]
    assert "3 of 4 rows" in notice and "re-save" not in notice, notice
    write_jsonl(tmp_path / "few.jsonl", [{"prompt": "a", "response": " 1"}] + [{"prompt": "b", "response": "2"}] * 2)
    ctx = make_ctx("few")
    load_jsonl(JsonlLoader(type="jsonl", path="few.jsonl"), ctx)
    assert not any("starting with whitespace" in n for n in ctx.notices)
    ctx = make_ctx("labels", kind="classifier")
    load_csv(CsvLoader(type="csv", path="d.csv", prompt_field="question", label_field=" answer"), ctx)
    assert not any("starting with whitespace" in n for n in ctx.notices)


def test_float32_answers_and_labels_read_as_their_shortest_text(tmp_path: Path, make_ctx) -> None:
    """A Parquet float32 column (numpy's float32, as many pipelines write scores) and a saved
    dataset's `Value("float32")` column read 0.1 as "0.10000000149011612" and 2.3 as
    "2.299999952316284": the model learned those digits, and a classifier's classes were
    named so, with no word said. They read "0.1" and "2.3", as written."""
    import numpy as np
    from datasets import Dataset, Features, Value

    values = [0.1, 0.25, 2.3]
    pd.DataFrame({"prompt": ["p0", "p1", "p2"], "response": np.array(values, dtype=np.float32)}).to_parquet(
        tmp_path / "d.parquet")
    assert load_parquet(ParquetLoader(type="parquet", path="d.parquet"), make_ctx())["response"] == ["0.1", "0.25", "2.3"]
    labels = load_parquet(ParquetLoader(type="parquet", path="d.parquet", label_field="response"),
                          make_ctx(kind="classifier"))["label_text"]
    assert labels == ["0.1", "0.25", "2.3"]
    Dataset.from_dict({"prompt": ["p0", "p1", "p2"], "response": values},
                      features=Features({"prompt": Value("string"), "response": Value("float32")})
                      ).save_to_disk(str(tmp_path / "saved"))
    ds = load_huggingface(HuggingFaceLoader(type="huggingface", path="saved"), make_ctx("hf"))
    assert ds["response"] == ["0.1", "0.25", "2.3"]


def test_a_spreadsheet_workbook_is_told_to_be_saved_as_csv(tmp_path: Path, make_ctx) -> None:
    """An Excel .xlsx given as a CSV source is a zip: validate and the data stage said
    "compressed with zip ... decompress it (`unzip data.xlsx`)", which gives XML parts, not
    rows. A workbook (.xlsx, an old .xls, an .ods) is named as one, with how to save it."""
    import zipfile

    from data_helpers import check_issues

    with zipfile.ZipFile(tmp_path / "book.xlsx", "w") as book:
        book.writestr("xl/workbook.xml", "<workbook/>")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as archive:
        archive.writestr("data.csv", "prompt,response\na,b\n")
    for name, kind in (("book.xlsx", "an Excel workbook"), ("old.xls", "an Excel 97-2003 workbook")):
        with pytest.raises(UserError, match=f"{kind}, not a text file: .*Save the sheet as CSV") as raised:
            load_csv(CsvLoader(type="csv", path=name), make_ctx())
        assert "unzip" not in str(raised.value)
    with pytest.raises(UserError, match=r"compressed with zip.*unzip plain\.zip"):  # a zip of data: as before
        load_csv(CsvLoader(type="csv", path="plain.zip"), make_ctx())
    write_jsonl(tmp_path / "t.jsonl", qa_rows(4))
    issues = check_issues(tmp_path, "target: {name: t, loader: {type: jsonl, path: t.jsonl}}\n"
                                    "sources: [{name: s, loader: {type: csv, path: book.xlsx}}]\n")
    assert "book.xlsx: an Excel workbook, not a text file" in issues["sources[0].loader.path"].message


def test_validate_names_a_csv_workbook_or_bzip2_file_at_its_key(tmp_path: Path) -> None:
    """validate's look for stray byte-order marks and NUL bytes in a CSV source read its
    file decompressed, and a workbook (.xlsx) or a bzip2 file, which cannot be, stopped the
    whole command with a bare "error: file book.xlsx is an Excel workbook ..." (`--format
    json`: an error object, not the list of spec files), hiding the spec's other problems:
    the file checks' problem at ``sources[0].loader.path`` is said, with the others."""
    import bz2
    import zipfile

    from click.testing import CliRunner

    from subsetctl.cli import main

    with zipfile.ZipFile(tmp_path / "book.xlsx", "w") as book:
        book.writestr("xl/workbook.xml", "<workbook/>")
    (tmp_path / "c.csv.bz2").write_bytes(bz2.compress(b"prompt,response\na,1\n"))
    write_jsonl(tmp_path / "t.jsonl", qa_rows(40))
    for name, problem in (("book.xlsx", "an Excel workbook, not a text file"), ("c.csv.bz2", "compressed with bzip2")):
        (tmp_path / "subsetctl.yaml").write_text(
            "target: {name: t, loader: {type: jsonl, path: t.jsonl}}\n"
            f"sources: [{{name: s, loader: {{type: csv, path: {name}}}}}, {{name: u, loader: {{type: jsonl, path: no.jsonl}}}}]\n")
        result = CliRunner().invoke(main, ["validate", str(tmp_path), "--format", "json"])
        assert result.exit_code == 1, result.output
        [checked] = json.loads(result.stdout)
        errors = {error["key"]: error["message"] for error in checked["errors"]}
        assert problem in errors["sources[0].loader.path"], errors
        assert "sources[1].loader.path" in errors, errors  # the other problem is not hidden


def test_jsonl_classifier_labels_by_sorted_value(tmp_path: Path, make_ctx) -> None:
    rows = [{"text": "t", "y": "pos"}, {"text": "u", "y": "neg"}, {"text": "v", "y": "pos"}]
    write_jsonl(tmp_path / "c.jsonl", rows)
    options = JsonlLoader(type="jsonl", path="c.jsonl", prompt_field="text", label_field="y")
    ds = load_jsonl(options, make_ctx(kind="classifier"))
    assert ds["label_text"] == ["pos", "neg", "pos"]
    assert ds["label"] == [1, 0, 1]
    assert ds["response"] == ["", "", ""]


def test_label_vocabulary_sorts_integers_numerically() -> None:
    assert label_vocabulary(["10", "2", "0"]) == ["0", "2", "10"]
    assert label_vocabulary(["b", "a", "1"]) == ["1", "a", "b"]


def test_label_vocabulary_orders_one_value_written_two_ways_the_same_in_every_process() -> None:
    """"01" and "1" (or "0", "00" and "-0") are distinct classes of one integer value: they
    tied, so their ids followed the set's iteration order, which string hashing changes
    from process to process (the data stage re-run gave the same rows other ids)."""
    import subprocess
    import sys

    code = ("from subsetctl.data.loaders import label_vocabulary; "
            "print(label_vocabulary(['1', '01', '0', '00', '-0', 'x']))")
    root = Path(__file__).resolve().parents[2]
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                           env={**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(root)}).stdout.strip()
            for seed in range(6)}
    assert seen == {"['-0', '0', '00', '01', '1', 'x']"}


def test_jsonl_missing_file(tmp_path: Path, make_ctx) -> None:
    with pytest.raises(UserError, match=r"'src'.*nope\.jsonl.*does not exist"):
        load_jsonl(JsonlLoader(type="jsonl", path="nope.jsonl"), make_ctx())


def test_jsonl_missing_column_lists_available(tmp_path: Path, make_ctx) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"question": "x", "response": "y"}])
    with pytest.raises(UserError) as err:
        load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())
    text = str(err.value)
    assert "'prompt'" in text and "'question'" in text and "d.jsonl" in text and "'src'" in text


def test_jsonl_null_value_names_the_line(tmp_path: Path, make_ctx) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": "x", "response": "y"}, {"prompt": "x", "response": None}])
    with pytest.raises(UserError, match="line 2"):
        load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())


def test_nan_answers_are_missing_not_the_text_nan(tmp_path: Path, make_ctx) -> None:
    """A float column's missing cell (Parquet, pandas) and JSON's NaN read as NaN: an
    error naming the row, never a gold answer "nan"."""
    pd.DataFrame({"prompt": ["a", "b", "c"], "response": [1.5, float("nan"), float("nan")]}).to_parquet(
        tmp_path / "d.parquet")
    with pytest.raises(UserError, match=r"row 2: 'response' .*NaN.* 2 of 3 rows lack"):
        load_parquet(ParquetLoader(type="parquet", path="d.parquet"), make_ctx())
    (tmp_path / "d.jsonl").write_text('{"prompt": "a", "response": "x"}\n{"prompt": NaN, "response": "y"}\n')
    with pytest.raises(UserError, match=r"line 2: 'prompt' .*missing, null or NaN"):
        load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())


def test_duplicate_keys_in_a_json_row_are_a_notice_naming_the_lines(tmp_path: Path, make_ctx) -> None:
    """A row naming a key twice kept its last value without a word ({"response": "a",
    "response": "b"} trains on "b"); nested objects count too."""
    (tmp_path / "d.jsonl").write_text(
        '{"prompt": "p", "response": "a", "response": "b"}\n'
        '{"prompt": "q", "response": "c"}\n'
        '{"prompt": "r", "response": "d", "meta": {"x": 1, "x": 2}, "prompt": "s"}\n'
        + '{"prompt": "t", "response": "e", "response": "f"}\n' * 3)
    ctx = make_ctx()
    ds = load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), ctx)
    assert ds["response"][:3] == ["b", "c", "d"] and ds["prompt"][2] == "s"  # JSON's last value, as before
    (notice,) = ctx.notices
    assert f"file {tmp_path / 'd.jsonl'}: 5 rows name a key twice" in notice
    assert "(line 1: 'response'; line 3: 'x', 'prompt'; line 4: 'response' (+2 more))" in notice
    assert "only the last value of each such key is read" in notice
    write_jsonl(tmp_path / "d.jsonl", qa_rows(3))
    ctx = make_ctx()
    load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), ctx)
    assert ctx.notices == []


def test_duplicate_keys_of_a_wide_json_row_are_found_in_linear_time(tmp_path: Path, make_ctx) -> None:
    """The duplicate keys of an object were found by comparing each key with every key
    before it: 20 rows of 5,000 keys, one of them named twice, took 9 s to load (0.03 s
    without the duplicate). Timed against the same rows without it, loaded in the same test, in
    the process's CPU time, not the wall clock's (a busy machine's pause during the second load
    alone could pass the bound; 20 s here beside 0.4 s was the quadratic search)."""
    import time

    keys = ", ".join(f'"k{i}": {i}' for i in range(5000))
    (tmp_path / "plain.jsonl").write_text(f'{{"prompt": "p", "response": "r", {keys}}}\n' * 20)
    (tmp_path / "d.jsonl").write_text(f'{{"prompt": "p", "response": "r", {keys}, "k0": "again"}}\n' * 20)
    started = time.process_time()
    load_jsonl(JsonlLoader(type="jsonl", path="plain.jsonl"), make_ctx())
    plain = time.process_time() - started
    ctx = make_ctx()
    started = time.process_time()
    ds = load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), ctx)
    took = time.process_time() - started
    assert took < 5 * plain + 1.0, (took, plain)
    assert json.loads(ds["metadata"][0])["k0"] == "again"
    (notice,) = ctx.notices
    assert "20 rows name a key twice (line 1: 'k0'; line 2: 'k0'; line 3: 'k0' (+17 more))" in notice


def test_empty_prompts_are_kept_with_a_notice(tmp_path: Path, make_ctx) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": " ", "response": "y"}, {"prompt": "x", "response": "y"},
                                       {"prompt": "", "response": "z"}])
    ctx = make_ctx()
    ds = load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), ctx)
    assert ds["prompt"] == [" ", "x", ""]
    (notice,) = ctx.notices
    assert "2 of 3 rows kept have an empty 'prompt'" in notice and "(line 1, line 3)" in notice
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": "", "response": "y"}])
    ctx = make_ctx()
    load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), ctx)
    assert "every row kept has an empty 'prompt'" in ctx.notices[0]
    # rows left out for a blank answer are not counted among those kept
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": "", "response": ""}, {"prompt": "", "response": "a"},
                                       {"prompt": "p", "response": "b"}, {"prompt": "", "response": " "}])
    ctx = make_ctx()
    load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), ctx)
    assert any("1 of 2 rows kept have an empty 'prompt'" in n and "(line 2);" in n for n in ctx.notices), ctx.notices


def test_a_csv_header_naming_a_column_twice_is_said(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "d.csv").write_text("prompt,response,response\na,first,second\n")
    ctx = make_ctx()
    ds = load_csv(CsvLoader(type="csv", path="d.csv"), ctx)
    assert ds["response"] == ["first"] and json.loads(ds["metadata"][0]) == {"response.1": "second"}
    (notice,) = ctx.notices
    assert "d.csv: the header names 'response' (2 times)" in notice and "read as response.1." in notice
    (tmp_path / "d.csv").write_text("prompt,response,x,x,prompt\nq,a,1,2,q2\n")
    ctx = make_ctx()
    ds = load_csv(CsvLoader(type="csv", path="d.csv"), ctx)
    assert json.loads(ds["metadata"][0]) == {"prompt.1": "q2", "x": "1", "x.1": "2"}
    assert "'prompt' (2 times), 'x' (2 times)" in ctx.notices[0] and "read as x.1, prompt.1." in ctx.notices[0]  # in file order
    (tmp_path / "d.csv").write_text("prompt,response,note,note,note.1\nq,a,1,2,3\n")  # pandas picks note.2
    ctx = make_ctx()
    ds = load_csv(CsvLoader(type="csv", path="d.csv"), ctx)
    assert json.loads(ds["metadata"][0]) == {"note": "1", "note.2": "2", "note.1": "3"}
    assert "read as note.2." in ctx.notices[0]
    (tmp_path / "d.csv").write_text("prompt,response\na,b\n")
    ctx = make_ctx()
    load_csv(CsvLoader(type="csv", path="d.csv"), ctx)
    assert ctx.notices == []


def test_jsonl_non_utf8(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "d.jsonl").write_bytes(b'{"prompt": "caf\xe9", "response": "x"}\n')
    with pytest.raises(UserError, match=r"d\.jsonl is not valid UTF-8 \(byte 15, line 1; it reads as Latin-1 "
                                        r"\(Windows-1252\) text there\)\. Re-save it as UTF-8\.$"):
        load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())


def test_jsonl_invalid_line_number(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "d.jsonl").write_text('{"prompt": "a", "response": "b"}\n\n{"prompt": oops}\n')
    with pytest.raises(UserError, match=r"d\.jsonl, line 3: invalid JSON"):
        load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())


def test_jsonl_non_object_line(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "d.jsonl").write_text("[1, 2]\n")
    with pytest.raises(UserError, match="line 1: expected a JSON object"):
        load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_jsonl_empty_file(tmp_path: Path, make_ctx, content: str) -> None:
    (tmp_path / "d.jsonl").write_text(content)
    with pytest.raises(UserError, match=r"d\.jsonl is empty"):
        load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())


def test_jsonl_directory_is_not_a_file(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(UserError, match="not a file"):
        load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())


def test_classifier_without_label_field(tmp_path: Path, make_ctx) -> None:
    write_jsonl(tmp_path / "d.jsonl", qa_rows(2))
    with pytest.raises(UserError, match="label_field"):
        load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx(kind="classifier"))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
_lines = st.one_of(
    st.text(max_size=30),
    st.dictionaries(st.sampled_from(["prompt", "response", "x"]), _json_values, max_size=3).map(json.dumps),
    _json_values.map(json.dumps),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_lines, max_size=6), raw=st.binary(max_size=20), use_raw=st.booleans())
def test_jsonl_random_content_only_raises_user_error(
    tmp_path: Path, lines: list[str], raw: bytes, use_raw: bool
) -> None:
    path = tmp_path / "fuzz.jsonl"
    if use_raw:
        path.write_bytes(raw)
    else:
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    ctx = LoadContext("fuzz", tmp_path, "causal-lm", 0)
    try:
        ds = load_jsonl(JsonlLoader(type="jsonl", path="fuzz.jsonl"), ctx)
    except UserError as exc:
        assert "fuzz" in str(exc)
    else:
        assert len(ds) >= 1 and ds.column_names == list(COLUMNS)


# ------------------------------------------------------------------- csv/parquet


def test_gzip_compressed_jsonl_and_csv_are_read(tmp_path: Path, make_ctx) -> None:
    """`train.jsonl.gz` used to fail with "not valid UTF-8. Re-save it as UTF-8" (and pass
    validate); a cut-short archive says so."""
    import gzip

    rows = qa_rows(4, "z")
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    ds = load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl.gz"), make_ctx())
    assert ds["prompt"] == [r["prompt"] for r in rows]
    (tmp_path / "d.csv.gz").write_bytes(gzip.compress(b"\xef\xbb\xbfprompt,response\nhi,1\n\"a,b\",2\n"))
    assert load_csv(CsvLoader(type="csv", path="d.csv.gz"), make_ctx())["prompt"] == ["hi", "a,b"]
    (tmp_path / "cut.jsonl.gz").write_bytes((tmp_path / "d.jsonl.gz").read_bytes()[:30])
    with pytest.raises(UserError, match="gzip-compressed but cannot be decompressed"):
        load_jsonl(JsonlLoader(type="jsonl", path="cut.jsonl.gz"), make_ctx())


def test_csv_loader(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "d.csv").write_text("text;label;note\nhello;1;x\nbye;0;\n")
    options = CsvLoader(type="csv", path="d.csv", delimiter=";", prompt_field="text", label_field="label")
    ds = load_csv(options, make_ctx(kind="classifier"))
    assert ds["prompt"] == ["hello", "bye"]
    assert ds["label"] == [1, 0]
    assert json.loads(ds["metadata"][1]) == {"note": ""}


def test_csv_errors(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(UserError, match=r"e\.csv is empty"):
        load_csv(CsvLoader(type="csv", path="e.csv"), make_ctx())
    (tmp_path / "h.csv").write_text("prompt,response\n")
    with pytest.raises(UserError, match=r"h\.csv has no examples"):
        load_csv(CsvLoader(type="csv", path="h.csv"), make_ctx())
    (tmp_path / "m.csv").write_text("prompt,answer\na,b\n")
    with pytest.raises(UserError, match=r"m\.csv has no column 'response'.*'answer'"):
        load_csv(CsvLoader(type="csv", path="m.csv"), make_ctx())
    (tmp_path / "b.csv").write_bytes(b"prompt,response\n\xff\xfe,x\n")
    with pytest.raises(UserError, match=r"b\.csv is not valid UTF-8"):
        load_csv(CsvLoader(type="csv", path="b.csv"), make_ctx())


def test_parquet_loader(tmp_path: Path, make_ctx) -> None:
    pd.DataFrame({"prompt": ["a", "b"], "response": ["x", "y"], "n": [1, 2]}).to_parquet(
        tmp_path / "d.parquet"
    )
    ds = load_parquet(ParquetLoader(type="parquet", path="d.parquet"), make_ctx())
    assert ds["prompt"] == ["a", "b"] and ds["response"] == ["x", "y"]
    assert json.loads(ds["metadata"][1]) == {"n": 2}


@pytest.mark.parametrize("nested_in_list", [False, True])
def test_parquet_struct_with_two_fields_of_one_name_is_a_user_error(
        tmp_path: Path, make_ctx, nested_in_list: bool) -> None:
    """pyarrow cannot read a row whose struct has two fields named alike as a dictionary:
    its ValueError was an internal error; now the column and the field are named."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [pa.field("a", pa.string()), pa.field("a", pa.string())]
    meta = pa.StructArray.from_arrays([pa.array(["x", "y"]), pa.array(["p", "q"])], fields=fields)
    if nested_in_list:
        meta = pa.ListArray.from_arrays(pa.array([0, 1, 2], pa.int32()), meta)
    pq.write_table(pa.table({"prompt": ["a", "b"], "response": ["x", "y"], "meta": meta}), tmp_path / "d.parquet")
    with pytest.raises(UserError, match=r"column 'meta' of .*d\.parquet holds a struct with two fields named 'a'"):
        load_parquet(ParquetLoader(type="parquet", path="d.parquet"), make_ctx())


def test_parquet_string_columns_stored_as_binary_read_as_their_text(tmp_path: Path, make_ctx) -> None:
    """Some writers (Spark without the UTF8 annotation) store text as plain binary: each
    prompt was Python's repr of the bytes, ``"b'hello'"``, quotes included."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": pa.array([b"hello", "caf\u00e9".encode()], pa.binary()),
                             "response": pa.array([b"x", b"y"], pa.binary())}), tmp_path / "b.parquet")
    ds = load_parquet(ParquetLoader(type="parquet", path="b.parquet"), make_ctx())
    assert ds["prompt"] == ["hello", "caf\u00e9"] and ds["response"] == ["x", "y"]
    pq.write_table(pa.table({"prompt": pa.array([b"ok", b"caf\xe9"], pa.binary()),
                             "response": pa.array([b"x", b"y"], pa.binary())}), tmp_path / "bad.parquet")
    ctx = make_ctx()  # a row of bytes that are not UTF-8: left out, said once
    assert load_parquet(ParquetLoader(type="parquet", path="bad.parquet"), ctx)["prompt"] == ["ok"]
    (notice,) = ctx.notices
    assert "1 of 2 rows holds text that is not valid UTF-8 (row 2); it is left out" in notice
    assert re.search(r"it is left out\. Row 2: 'prompt' \(loader.prompt_field\) holds bytes that are "
                     r"not UTF-8 text \(byte 3\)", notice), notice
    pq.write_table(pa.table({"prompt": pa.array([b"caf\xe9"], pa.binary()), "response": pa.array([b"x"], pa.binary())}),
                   tmp_path / "bad.parquet")  # no row left: the error, with the count
    with pytest.raises(UserError, match=r"row 1: 'prompt' .* holds bytes that are not UTF-8 .* No row is left: 1 of 1"):
        load_parquet(ParquetLoader(type="parquet", path="bad.parquet"), make_ctx())


def test_a_parquet_name_given_twice_is_decoded_as_its_last_column(tmp_path: Path, make_ctx) -> None:
    """A record holds the last of two columns named alike; when only the first was JSON
    text (``arrow.json``), its decoder was applied to the last one's plain strings: the
    answer '[3, 4]' was said to be a list, the metadata '42' became the number 42."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not hasattr(pa, "json_"):
        pytest.skip("this pyarrow has no arrow.json type")
    as_json = pa.array(['{"a": 1}', "[1, 2]"], type=pa.json_())
    plain = pa.array(["[3, 4]", "42"])
    pq.write_table(pa.Table.from_arrays([pa.array(["p", "q"]), as_json, plain, as_json, plain],
                                        names=["prompt", "response", "response", "x", "x"]), tmp_path / "d.parquet")
    ctx = make_ctx()
    ds = load_parquet(ParquetLoader(type="parquet", path="d.parquet"), ctx)
    assert ds["response"] == ["[3, 4]", "42"] and ctx.notices == []
    assert [json.loads(m) for m in ds["metadata"]] == [{"x": "[3, 4]"}, {"x": "42"}]


def test_a_row_error_in_a_parquet_column_named_twice_says_the_last_one_is_read(tmp_path: Path, make_ctx) -> None:
    """A null in the last of two columns named 'prompt' (the one a row holds) stopped the
    source with "row 1: 'prompt' is missing, null or NaN", while the file's first 'prompt'
    column held every prompt: the error says which of them is read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_arrays([pa.array(["q", "r"]), pa.array(["a", "b"]), pa.array([None, "x"], pa.string())],
                                        names=["prompt", "response", "prompt"]), tmp_path / "d.parquet")
    with pytest.raises(UserError, match=r"row 1: 'prompt' \(loader.prompt_field\) is missing, null or NaN\. .* The file "
                                        r"has 2 columns named 'prompt', and each row is read with the last of them only"):
        load_parquet(ParquetLoader(type="parquet", path="d.parquet"), make_ctx())


def test_parquet_errors(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(UserError, match=r"bad\.parquet could not be read as Parquet"):
        load_parquet(ParquetLoader(type="parquet", path="bad.parquet"), make_ctx())
    pd.DataFrame({"prompt": pd.Series([], dtype=str), "response": pd.Series([], dtype=str)}).to_parquet(
        tmp_path / "empty.parquet"
    )
    with pytest.raises(UserError, match=r"empty\.parquet is empty"):
        load_parquet(ParquetLoader(type="parquet", path="empty.parquet"), make_ctx())


# ------------------------------------------------------------------- huggingface


def test_huggingface_local_json_folder(tmp_path: Path, make_ctx) -> None:
    folder = tmp_path / "hfdata"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"input": f"i{k}", "output": f"o{k}"} for k in range(4)])
    options = HuggingFaceLoader(
        type="huggingface", path="hfdata", prompt_field="input", response_field="output"
    )
    ds = load_huggingface(options, make_ctx("hf"))
    assert ds["prompt"] == ["i0", "i1", "i2", "i3"] and ds["response"][3] == "o3"
    assert set(ds["source"]) == {"hf"}


def test_an_edited_file_of_a_named_configuration_of_a_dataset_folder_is_read_as_it_is_now(
        tmp_path: Path, make_ctx) -> None:
    """``datasets`` caches a configuration a folder's README.md names under the folder's name,
    the configuration's and the README's hash, not its files': a data file edited after a
    first read gave the cached rows again (the data stage prepared the edited source again with
    its old rows), and a row added to it failed the split sizes cached. The loader reads the
    folder's files each time."""
    folder = tmp_path / "hfdata"
    (folder / "c2").mkdir(parents=True)
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: c2\n  data_files:\n  - split: train\n    path: c2/train.jsonl\n---\n")
    options = HuggingFaceLoader(type="huggingface", path="hfdata", name="c2")
    write_jsonl(folder / "c2" / "train.jsonl", qa_rows(3, "old"))
    assert load_huggingface(options, make_ctx("h2"))["prompt"] == ["old0?", "old1?", "old2?"]
    write_jsonl(folder / "c2" / "train.jsonl", qa_rows(4, "new"))  # a row more: split sizes as cached differ
    assert load_huggingface(options, make_ctx("h2"))["prompt"] == ["new0?", "new1?", "new2?", "new3?"]


def test_huggingface_csv_files_are_read_as_the_text_they_hold(tmp_path: Path, make_ctx) -> None:
    """datasets' csv builder guesses column types: the answers 2 and 1.50 of one column became
    "2.0" and "1.5", 007 "7.0", and the answer NA a missing value (an error). The splits'
    files need not have the same columns."""
    folder = tmp_path / "hubcsv"
    folder.mkdir()
    (folder / "train.csv").write_text("q,a\nq0,007\nq1,1.50\nq2,NA\nq3,2\n", encoding="utf-8")
    (folder / "test.csv").write_text("q\nt0\n", encoding="utf-8")  # a test split without answers
    (tmp_path / "hubtsv").mkdir()
    (tmp_path / "hubtsv" / "train.tsv").write_text("q\ta\nt0,x\t1.0\n", encoding="utf-8")
    options = HuggingFaceLoader(type="huggingface", path="hubcsv", prompt_field="q", response_field="a")
    assert load_huggingface(options, make_ctx("hf"))["response"] == ["007", "1.50", "NA", "2"]
    as_builder = HuggingFaceLoader(type="huggingface", path="csv", data_files=["hubcsv/train.csv"],
                                   prompt_field="q", response_field="a")
    assert load_huggingface(as_builder, make_ctx("hf"))["response"] == ["007", "1.50", "NA", "2"]
    tsv = HuggingFaceLoader(type="huggingface", path="hubtsv", prompt_field="q", response_field="a")
    loaded = load_huggingface(tsv, make_ctx("hf"))
    assert loaded["prompt"] == ["t0,x"] and loaded["response"] == ["1.0"]


def test_huggingface_cache_that_cannot_be_written_names_the_cache(tmp_path: Path, make_ctx, monkeypatch) -> None:
    """A read-only or full datasets cache said "Check loader.path, loader.name, ...", which no
    spec change fixes: the message names the cache folder and the variable that moves it."""
    import errno

    import datasets

    folder = tmp_path / "hfdata"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", qa_rows(2, "a"))
    cache = tmp_path / "ro" / "datasets"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    options = HuggingFaceLoader(type="huggingface", path="hfdata")
    for error in (OSError(errno.EROFS, "Read-only file system", str(cache.parent)),  # above it: not made
                  PermissionError(errno.EACCES, "Permission denied", str(cache / "json" / "x.lock")),
                  OSError(errno.ENOSPC, "No space left on device")):  # (a write names no file)
        def refuse(*args, error=error, **kwargs):
            if error.errno != errno.ENOSPC:
                raise error
            raise datasets.exceptions.DatasetGenerationError("An error occurred") from error  # as datasets wraps it

        monkeypatch.setattr(datasets, "load_dataset", refuse)
        with pytest.raises(UserError) as caught:
            load_huggingface(options, make_ctx("hf"))
        message = str(caught.value)
        assert f"in {cache} (HF_DATASETS_CACHE" in message and "loader.path" not in message, message
    not_a_folder = NotADirectoryError(errno.ENOTDIR, "Not a directory", str(cache))  # HF_HOME under a file
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(not_a_folder))
    with pytest.raises(UserError, match="a part of that path is a file: move it aside"):
        load_huggingface(options, make_ctx("hf"))
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied", str(folder / "train.jsonl"))))
    with pytest.raises(UserError, match="Check loader.path"):  # the data's own file: as before
        load_huggingface(options, make_ctx("hf"))


def test_a_teammates_datasets_cache_names_its_owner_and_the_chmod(tmp_path: Path, monkeypatch) -> None:
    """A Hugging Face cache a team shares (HF_HOME), whose datasets folder one user made
    under umask 022: the next user's data stage said "fix its permissions" of the cache, not
    whose folder it is nor the command its owner runs."""
    import errno
    import os

    from subsetctl.errors import shell_arg
    from subsetctl.hub import cache_write_problem

    cache = tmp_path / "hf" / "datasets"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    refused = PermissionError(errno.EACCES, "Permission denied", str(cache / "_tmp_json.lock"))  # not made
    owner = cache.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 4242)  # another user than the folder's owner
    problem = cache_write_problem(refused, default="datasets") or ""
    assert f"Permission denied ({cache / '_tmp_json.lock'}); its folder {cache} belongs to " in problem, problem
    assert f"can let the group write it with `chmod -R g+rwX {shell_arg(cache)}`" in problem, problem
    assert problem.endswith(f"in {cache} (HF_DATASETS_CACHE, else $HF_HOME/datasets): fix its permissions, or set "
                            "HF_DATASETS_CACHE to a writable folder with room (e.g. HF_DATASETS_CACHE=$TMPDIR/hf-datasets)."), problem


def test_a_cache_write_error_is_found_in_any_cause_or_context_and_a_looping_chain_ends(
        tmp_path: Path, monkeypatch) -> None:
    """The OSError of a cache that cannot be written was looked for along ``__cause__ or
    __context__`` only: one in the context of an error raised ``from`` another was missed
    (the message blamed the spec), and a chain coming back on itself (an error raised again
    ``from`` one raised while handling it) looped for ever: the data stage hung."""
    import errno
    import threading

    from subsetctl.hub import cache_write_problem

    cache = tmp_path / "datasets"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    refused = PermissionError(errno.EACCES, "Permission denied", str(cache / "x.lock"))
    try:
        try:
            raise refused
        except OSError:
            raise RuntimeError("could not prepare the split") from ValueError("no usable builder")
    except RuntimeError as exc:
        in_context = exc
    fallback: BaseException | None = None
    try:
        raise ValueError("the first attempt")
    except ValueError as exc:
        first = exc
        try:
            raise KeyError("the fallback, tried while handling the first")
        except KeyError as exc:
            fallback = exc
    try:
        raise first from fallback  # after both: first -> fallback (its cause) -> first (fallback's context)
    except ValueError as exc:
        looping = exc
    assert looping.__cause__.__context__ is looping

    found: dict[str, str | None] = {}

    def look() -> None:
        found["in context"] = cache_write_problem(in_context, default="datasets")
        found["looping"] = cache_write_problem(looping, default="datasets")

    worker = threading.Thread(target=look, daemon=True)  # (a loop for ever fails the test, not hangs it)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive() and found.get("looping", "") is None, found
    assert f"in {cache} (HF_DATASETS_CACHE" in (found["in context"] or ""), found


def test_huggingface_data_files_globs_resolve_against_the_spec_folder_and_are_tracked(
    tmp_path: Path, make_ctx, monkeypatch
) -> None:
    """`path: json, data_files: [parts/*.jsonl]` was resolved against the working
    directory (StopIteration from another one) and fingerprinted as the pattern text, so
    a file added or edited under parts/ never made the data stage stale."""
    from subsetctl.data.checks import check_sources
    from subsetctl.data.fingerprint import source_fingerprint_inputs

    (tmp_path / "parts").mkdir()
    write_jsonl(tmp_path / "parts" / "p1.jsonl", qa_rows(3, "a"))
    write_jsonl(tmp_path / "parts" / "p2.jsonl", qa_rows(3, "b"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    options = HuggingFaceLoader(type="huggingface", path="json", data_files=["parts/*.jsonl"])
    assert len(load_huggingface(options, make_ctx())) == 6
    source = SourceSpec(name="g", loader=options)
    before = source_fingerprint_inputs(source, tmp_path)
    write_jsonl(tmp_path / "parts" / "p3.jsonl", qa_rows(2, "c"))
    added = source_fingerprint_inputs(source, tmp_path)
    assert added != before and len(load_huggingface(options, make_ctx())) == 8
    write_jsonl(tmp_path / "parts" / "p1.jsonl", qa_rows(3, "z"))
    assert source_fingerprint_inputs(source, tmp_path) != added
    nothing = HuggingFaceLoader(type="huggingface", path="json", data_files=["parts/*.jsonl", "part/*.jsonl"])
    with pytest.raises(UserError, match=r"'src'.*pattern 'part/\*\.jsonl' matches no file"):
        load_huggingface(nothing, make_ctx())
    spec_file = tmp_path / "subsetctl.yaml"
    spec_file.write_text("x: 1\n")
    spec = Spec.model_validate({"target": {"name": "t", "loader": nothing.model_dump()},
                                "sources": [{"name": "s", "loader": options.model_dump()}]})
    (issue,) = check_sources(spec, spec_file)
    assert issue.key == "target.loader.data_files[1]" and "matches no file" in issue.message


def test_an_absolute_data_files_pattern_through_a_folder_named_with_brackets_is_told_the_escaped_one(
    tmp_path: Path, make_ctx
) -> None:
    """`data_files: ["/x/exp [2]/parts/*.jsonl"]` matched nothing (glob reads `[2]` as the
    character 2), said only as "matches no file" while the folder was there as written."""
    parts = tmp_path / "exp [2]" / "parts"
    parts.mkdir(parents=True)
    write_jsonl(parts / "p1.jsonl", qa_rows(3, "a"))
    written = HuggingFaceLoader(type="huggingface", path="json", data_files=[f"{parts}/*.jsonl"])
    escaped = f"{tmp_path}/exp [[]2]/parts/*.jsonl"
    with pytest.raises(UserError, match=re.escape(f"write {escaped!r}")):
        load_huggingface(written, make_ctx())
    assert len(load_huggingface(HuggingFaceLoader(type="huggingface", path="json", data_files=[escaped]),
                                make_ctx())) == 3


def test_huggingface_data_files_in_a_folder_whose_path_holds_brackets(tmp_path: Path) -> None:
    """The spec's folder took part in the data_files glob (/x/exp [2]/parts/*.jsonl: no
    file, though `validate` run inside the folder passed), and load_dataset read each file
    found as a glob again (a file named x [1].jsonl: StopIteration)."""
    from subsetctl.data.checks import check_sources

    folder = tmp_path / "exp [2]"
    (folder / "parts").mkdir(parents=True)
    write_jsonl(folder / "parts" / "p1.jsonl", qa_rows(3, "a"))
    write_jsonl(folder / "parts" / "x [1].jsonl", qa_rows(2, "b"))
    ctx = LoadContext(source_name="g", base_dir=folder, kind="causal-lm", seed=0)
    globbed = HuggingFaceLoader(type="huggingface", path="json", data_files=["parts/*.jsonl"])
    assert len(load_huggingface(globbed, ctx)) == 5
    named = HuggingFaceLoader(type="huggingface", path="json", data_files=["parts/x [1].jsonl"])
    assert len(load_huggingface(named, ctx)) == 2
    spec_file = folder / "subsetctl.yaml"
    spec_file.write_text("x: 1\n")
    spec = Spec.model_validate({"target": {"name": "t", "loader": globbed.model_dump()},
                                "sources": [{"name": "s", "loader": named.model_dump()}]})
    assert check_sources(spec, spec_file) == []


def test_a_huggingface_folder_whose_path_holds_a_bracket_is_refused_by_validate(tmp_path: Path) -> None:
    """load_dataset reads a folder's own path as a pattern ("Couldn't find any data file at
    /x/d [[]1]") while `validate` passed: validate says so, and what to write instead."""
    from subsetctl.data.checks import check_sources

    folder = tmp_path / "d [1]"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", qa_rows(3))
    spec_file = tmp_path / "subsetctl.yaml"
    spec_file.write_text("x: 1\n")
    plain = tmp_path / "d1"
    plain.mkdir()
    write_jsonl(plain / "train.jsonl", qa_rows(3))
    spec = Spec.model_validate({"target": {"name": "t", "loader": {"type": "huggingface", "path": "d1"}},
                                "sources": [{"name": "s", "loader": {"type": "huggingface", "path": "d [1]"}}]})
    (issue,) = check_sources(spec, spec_file)
    assert issue.key == "sources[0].loader.path" and "datasets.load_dataset reads as a file pattern" in issue.message
    assert "`data_files` listing each file" in issue.message
    by_name = Spec.model_validate({"target": {"name": "t", "loader": {"type": "huggingface", "path": "d1"}},
                                  "sources": [{"name": "s", "loader": {"type": "huggingface", "path": "json",
                                                                       "data_files": ["d [1]/train.jsonl"]}}]})
    assert check_sources(by_name, spec_file) == []  # as the message says
    ctx = LoadContext(source_name="s", base_dir=tmp_path, kind="causal-lm", seed=0)
    assert len(load_huggingface(by_name.sources[0].loader, ctx)) == 3


def test_a_huggingface_path_naming_a_data_file_says_which_loader_reads_it(tmp_path: Path, make_ctx) -> None:
    """load_dataset takes a folder or a hub id: at a file that is there it said it "couldn't
    find any data file", and validate let the spec pass."""
    from subsetctl.data.checks import check_sources
    from subsetctl.spec import Spec

    write_jsonl(tmp_path / "rows.jsonl", qa_rows(4))
    options = HuggingFaceLoader(type="huggingface", path="rows.jsonl")
    with pytest.raises(UserError, match=r"rows.jsonl is a file; .*`type: jsonl` with this path.*"
                                        r"`path: json` and `data_files: \[rows.jsonl\]`"):
        load_huggingface(options, make_ctx("hf"))
    spec = Spec.model_validate({"target": {"name": "t", "loader": {"type": "huggingface", "path": "rows.jsonl"}},
                                "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "rows.jsonl"}}]})
    (issue,) = check_sources(spec, tmp_path / "subsetctl.yaml")
    assert issue.key == "target.loader.path" and "is a file; the huggingface loader reads a dataset folder" in issue.message


def test_huggingface_bad_split(tmp_path: Path, make_ctx) -> None:
    folder = tmp_path / "hfdata"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", qa_rows(2))
    with pytest.raises(UserError, match=r"'src'.*has the splits train, not 'nosuch'\. Set loader\.split"):
        load_huggingface(HuggingFaceLoader(type="huggingface", path="hfdata", split="nosuch"), make_ctx())


# ----------------------------------------------------------------- reasoning-gym


def test_reasoning_gym_metadata_rebuilds_and_scores(make_ctx) -> None:
    import reasoning_gym

    ds = load_reasoning_gym(
        ReasoningGymLoader(type="reasoning_gym", task="basic_arithmetic", size=5), make_ctx(seed=7)
    )
    assert len(ds) == 5
    meta = json.loads(ds["metadata"][3])
    assert (meta["rg_task"], meta["rg_seed"], meta["rg_size"], meta["rg_index"]) == (
        "basic_arithmetic",
        7,
        5,
        3,
    )
    generator = reasoning_gym.create_dataset(
        meta["rg_task"], size=meta["rg_size"], seed=meta["rg_seed"], **meta["rg_config"]
    )
    entry = generator[meta["rg_index"]]
    assert entry["question"] == ds["prompt"][3]
    assert generator.score_answer(ds["response"][3], entry) == 1.0


@pytest.mark.parametrize("home", ["read-only", "none"])
def test_reasoning_gym_with_an_unwritable_home_leaves_no_matplotlib_noise(tmp_path: Path, home: str) -> None:
    """reasoning-gym imports matplotlib.pyplot (through cellpylib): where HOME cannot be written
    (a batch job's, a container's) or is not set, `validate`, `plan` and `run` of the quickstart
    printed matplotlib's "mkdir -p failed ... Matplotlib created a temporary cache directory ...
    it is highly recommended to set the MPLCONFIGDIR environment variable" into the log. The
    temporary folder given to it instead is gone once the process exits."""
    import subprocess
    import sys

    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a folder under a file cannot be made, whoever runs the test
    temp = tmp_path / "tmp"
    temp.mkdir()
    code = ("from subsetctl.data.loaders.reasoning_gym import reasoning_gym_tasks\n"
            "import os; print(len(reasoning_gym_tasks()) > 0, 'MPLCONFIGDIR' in os.environ)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "HOME")}
    env.update(XDG_CONFIG_HOME=str(blocked / "config"), XDG_CACHE_HOME=str(blocked / "c"), TMPDIR=str(temp),
               PYTHONPATH=os.pathsep.join(sys.path))
    if home == "read-only":
        env["HOME"] = str(blocked / "home")
    else:  # no HOME, and no entry in the user list: matplotlib finds no home folder
        code = "import pwd; pwd.getpwuid = lambda uid: (_ for _ in ()).throw(KeyError(uid))\n" + code
    done = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.split() == ["True", "False"]  # (the variable was set for the import only)
    assert list(temp.iterdir()) == [], list(temp.iterdir())


def test_reasoning_gym_seed_option_overrides_context(make_ctx) -> None:
    a = load_reasoning_gym(
        ReasoningGymLoader(type="reasoning_gym", task="leg_counting", size=3, seed=1), make_ctx(seed=5)
    )
    b = load_reasoning_gym(
        ReasoningGymLoader(type="reasoning_gym", task="leg_counting", size=3, seed=1), make_ctx(seed=9)
    )
    c = load_reasoning_gym(
        ReasoningGymLoader(type="reasoning_gym", task="leg_counting", size=3), make_ctx(seed=9)
    )
    assert a["prompt"] == b["prompt"] != c["prompt"]


def test_reasoning_gym_unknown_task_suggests(make_ctx) -> None:
    with pytest.raises(UserError, match=r"'basic_arithmetc'.*basic_arithmetic"):
        load_reasoning_gym(ReasoningGymLoader(type="reasoning_gym", task="basic_arithmetc"), make_ctx())


def test_reasoning_gym_bad_config(make_ctx) -> None:
    options = ReasoningGymLoader(type="reasoning_gym", task="basic_arithmetic", size=2, config={"bogus": 1})
    with pytest.raises(UserError, match="bogus"):
        load_reasoning_gym(options, make_ctx())


def test_reasoning_gym_generator_that_raises_is_a_user_error(monkeypatch: pytest.MonkeyPatch, make_ctx) -> None:
    """A generator that gives up on an entry (maze with a distance its grid cannot hold raises
    RuntimeError at entry time) or raises some other error on its config was an internal
    error, "a bug in subsetctl"."""
    import reasoning_gym

    class GivesUp:
        def __getitem__(self, index: int) -> dict:
            if index == 1:
                raise RuntimeError("Could not find suitable path cell after 1000 attempts")
            return {"question": "q", "answer": "a", "metadata": {}}

    monkeypatch.setattr(reasoning_gym, "create_dataset", lambda *a, **k: GivesUp())
    options = ReasoningGymLoader(type="reasoning_gym", task="maze", size=3, config={"min_dist": 40})
    with pytest.raises(UserError) as err:
        load_reasoning_gym(options, make_ctx("mz"))
    text = str(err.value)
    assert "'mz'" in text and "'maze'" in text and "entry 1" in text and "seed 0" in text
    assert "Could not find suitable path cell" in text and "loader.config" in text

    def refuses(*args: object, **kwargs: object) -> None:
        raise KeyError("min_dist")

    monkeypatch.setattr(reasoning_gym, "create_dataset", refuses)
    with pytest.raises(UserError, match=r"'mz'.*'maze' rejected loader.config .*min_dist"):
        load_reasoning_gym(options, make_ctx("mz"))


def test_reasoning_gym_task_without_answers_says_to_choose_another(make_ctx) -> None:
    """rubiks_cube's entries all have a null answer (scored by its checker alone): the error
    said to try another loader.seed or loader.config, which never helps."""
    options = ReasoningGymLoader(type="reasoning_gym", task="rubiks_cube", size=2)
    with pytest.raises(UserError, match=r"'rubiks_cube' gives no answers.*Choose a task with answers") as err:
        load_reasoning_gym(options, make_ctx())
    assert "loader.seed" not in str(err.value)


# ------------------------------------------------------------------------- evals

needs_evals = pytest.mark.skipif(evals_data_dir() is None, reason="evals package data not installed")


@needs_evals
def test_evals_loader(make_ctx) -> None:
    ds = load_evals(EvalsLoader(type="evals", name="shape_in_shape"), make_ctx("ev"))
    assert len(ds) > 10
    assert "helpful assistant" in ds["prompt"][0] and "rectangle" in ds["prompt"][0]
    assert set(ds["response"]) <= {"yes", "no"}
    meta = json.loads(ds["metadata"][0])
    assert meta["evals_name"] == "shape_in_shape" and meta["ideal_all"] == [ds["response"][0]]


@needs_evals
def test_evals_unknown_name_and_file(make_ctx) -> None:
    with pytest.raises(UserError, match=r"'shape_in_shap'.*shape_in_shape"):
        load_evals(EvalsLoader(type="evals", name="shape_in_shap"), make_ctx())
    with pytest.raises(UserError, match="shape_in_shape.jsonl"):
        load_evals(EvalsLoader(type="evals", name="shape_in_shape", file="nope.jsonl"), make_ctx())


def test_evals_file_with_carriage_return_line_endings(monkeypatch: pytest.MonkeyPatch, make_ctx,
                                                      tmp_path: Path) -> None:
    """An evals file whose lines end with a carriage return alone (the package's
    Chinese_character_riddles) reads as the evals package reads it, a line a sample; it
    stopped the data stage with "re-save it", a file inside site-packages."""
    folder = tmp_path / "data" / "riddles"
    folder.mkdir(parents=True)
    samples = [{"input": [{"role": "system", "content": f"Guess {i}."}, {"role": "user", "content": "x"}],
                "ideal": f"[{i}]"} for i in range(3)]
    (folder / "samples.jsonl").write_bytes("\r".join(json.dumps(s) for s in samples).encode() + b"\r")
    monkeypatch.setattr("subsetctl.data.loaders.evals.evals_data_dir", lambda: tmp_path / "data")
    ds = load_evals(EvalsLoader(type="evals", name="riddles"), make_ctx("rd"))
    assert ds["prompt"] == [f"Guess {i}.\n\nx" for i in range(3)] and ds["response"] == ["[0]", "[1]", "[2]"]
    (folder / "samples.jsonl").write_bytes(b'{"input": "a", "ideal": "1"}\r\n\r\n{"input": "b"}\r\n')
    with pytest.raises(UserError, match="line 3 has no 'ideal'"):  # numbered as universal newlines number them
        load_evals(EvalsLoader(type="evals", name="riddles"), make_ctx("rd"))


@needs_evals
@pytest.mark.parametrize("name", ["", ".", "born_first/"])
def test_evals_name_is_an_eval_not_a_path(name: str, make_ctx, tmp_path: Path) -> None:
    """name '' or '.' is the evals data folder itself: it read the first eval's file
    (2d_movement's samples.jsonl) without a word, in validate and in the data stage."""
    from subsetctl.data.checks import check_sources

    with pytest.raises(UserError, match=r"loader.name .* is not an eval"):
        load_evals(EvalsLoader(type="evals", name=name), make_ctx())
    spec_file = tmp_path / "subsetctl.yaml"
    spec_file.write_text("x: 1\n")
    spec = Spec.model_validate({"target": {"name": "t", "loader": {"type": "evals", "name": "born_first"}},
                                "sources": [{"name": "s", "loader": {"type": "evals", "name": name}}]})
    (issue,) = check_sources(spec, spec_file)
    assert issue.key == "sources[0].loader.name" and "unknown eval" in issue.message



@needs_evals
def test_an_unknown_eval_says_how_to_list_the_evals(make_ctx) -> None:
    """`name: nope` was "unknown eval 'nope'. Did you mean 'invoices'?" in validate, with no way
    to see the 470 names (as reasoning-gym's unknown task has); validate and the data stage now
    count them and give the command listing them."""
    from subsetctl.data.checks import check_sources
    from subsetctl.data.loaders import evals_data_dir, evals_names

    data_dir = evals_data_dir()
    assert data_dir is not None
    hint = (f"The installed evals package has {len(evals_names(data_dir))} evals (its data folder's folders); list "
            f"them with `ls {data_dir}`.")
    with pytest.raises(UserError) as caught:
        load_evals(EvalsLoader(type="evals", name="nope"), make_ctx())
    assert str(caught.value).endswith(hint), str(caught.value)
    spec = Spec.model_validate({"target": {"name": "t", "loader": {"type": "evals", "name": "born_first"}},
                                "sources": [{"name": "s", "loader": {"type": "evals", "name": "nope"}}]})
    (issue,) = check_sources(spec, Path("subsetctl.yaml"))
    assert issue.message.startswith("unknown eval 'nope'.") and issue.message.endswith(hint), issue.message


def test_the_eval_names_are_listed_once_while_their_folder_is_unchanged(tmp_path: Path, monkeypatch) -> None:
    """Validate listed the evals package's 470 folders (about 7 ms) several times for each
    `evals` source (400 sources: 18 s, 9.5 s before the read-through total added three more); the
    listing is kept while the folder is unchanged, and a folder added is listed."""
    from subsetctl.data.loaders import evals_names

    for name in ("b", "a", "_hidden"):
        (tmp_path / name).mkdir()
    (tmp_path / "c.txt").write_text("")
    listed: list[Path] = []
    iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: (listed.append(self), iterdir(self))[1])
    assert [evals_names(tmp_path) for _ in range(5)] == [["a", "b"]] * 5
    assert listed.count(tmp_path) == 1, listed
    (tmp_path / "d").mkdir()
    assert evals_names(tmp_path) == ["a", "b", "d"] and listed.count(tmp_path) == 2, listed


@needs_evals
def test_validate_counts_an_evals_file_for_split_counts(tmp_path: Path) -> None:
    """born_first has 122 samples: a split of 500 passed validate and stopped the data stage."""
    from subsetctl.data.checks import check_sources

    spec_file = tmp_path / "subsetctl.yaml"
    spec_file.write_text("x: 1\n")
    spec = Spec.model_validate({
        "target": {"name": "t", "loader": {"type": "reasoning_gym", "task": "chain_sum", "size": 20}},
        "sources": [{"name": "s", "loader": {"type": "evals", "name": "born_first"}, "split": {"train": 500}}]})
    (issue,) = check_sources(spec, spec_file)
    assert issue.key == "sources[0].split" and "at most 122" in issue.message and "born_first.jsonl" in issue.message


def test_evals_missing_package(monkeypatch: pytest.MonkeyPatch, make_ctx) -> None:
    monkeypatch.setattr("subsetctl.data.loaders.evals.evals_data_dir", lambda: None)
    with pytest.raises(UserError, match="pip install --no-deps evals"):
        load_evals(EvalsLoader(type="evals", name="x"), make_ctx())


# ------------------------------------------------------------------------ plugin


def test_plugin_loader_normalizes_output(make_ctx) -> None:
    from datasets import Dataset

    def my_loader(options: dict, ctx: LoadContext) -> Dataset:
        """Test loader."""
        n = options["n"]
        return Dataset.from_dict(
            {"prompt": [f"p{i}" for i in range(n)], "response": ["r"] * n, "tag": ["t"] * n}
        )

    LOADERS.add("test_plugin_loader", my_loader, "test")
    ds = load_plugin(PluginLoader(type="plugin", name="test_plugin_loader", options={"n": 3}), make_ctx("pl"))
    assert ds.column_names == list(COLUMNS)
    assert ds["prompt"] == ["p0", "p1", "p2"] and ds["source"] == ["pl"] * 3
    assert json.loads(ds["metadata"][0]) == {"tag": "t"}


def test_a_plugin_loader_writing_into_its_options_leaves_the_specs_alone(make_ctx, monkeypatch) -> None:
    """A loader doing ``options["seen"] = ...`` changed the spec's own options: the data stage
    then failed every run with "its input files changed while the data stage read them"."""
    from datasets import Dataset

    def writing(options: dict, ctx: LoadContext) -> Dataset:
        options["seen"] = True
        options["nested"]["n"] += 1
        return Dataset.from_dict({"prompt": ["p"], "response": ["r"]})

    monkeypatch.setattr(LOADERS, "_entries", dict(LOADERS._entries))  # put back after the test
    LOADERS.add("test_writing_loader", writing, "test")
    spec_options = PluginLoader(type="plugin", name="test_writing_loader", options={"nested": {"n": 1}})
    load_plugin(spec_options, make_ctx("pl"))
    assert spec_options.options == {"nested": {"n": 1}}


def test_plugin_can_name_builtin_loader(tmp_path: Path, make_ctx) -> None:
    write_jsonl(tmp_path / "d.jsonl", qa_rows(2))
    ds = load_plugin(PluginLoader(type="plugin", name="jsonl", options={"path": "d.jsonl"}), make_ctx())
    assert ds["response"] == ["a0", "a1"]


def test_plugin_unknown_name(make_ctx) -> None:
    with pytest.raises(UserError, match="nonexistent_loader"):
        load_plugin(PluginLoader(type="plugin", name="nonexistent_loader"), make_ctx())


def test_jsonl_lone_surrogate(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "d.jsonl").write_text('{"prompt": "ok", "response": "x", "note": "\\ud800"}\n')
    ds = load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())
    assert json.loads(ds["metadata"][0]) == {"note": "\ud800"}
    (tmp_path / "e.jsonl").write_text('{"prompt": "\\ud800", "response": "x"}\n')
    with pytest.raises(UserError, match=r"e\.jsonl, line 1.*surrogate"):
        load_jsonl(JsonlLoader(type="jsonl", path="e.jsonl"), make_ctx())


def test_plugin_loader_that_raises_is_a_user_error_naming_it(make_ctx) -> None:
    def broken(options: dict, ctx: LoadContext):
        raise ValueError("my loader failed")

    LOADERS.add("test_broken_loader", broken, "test")
    with pytest.raises(UserError, match=r"loader plugin 'test_broken_loader' \([^)]*\) raised ValueError: my loader failed"):
        load_plugin(PluginLoader(type="plugin", name="test_broken_loader"), make_ctx("pl"))


def test_huggingface_folder_written_by_save_to_disk(tmp_path: Path, make_ctx) -> None:
    from datasets import Dataset, DatasetDict

    rows = {"prompt": ["p0", "p1"], "response": ["r0", "r1"]}
    Dataset.from_dict(rows).save_to_disk(str(tmp_path / "one"))
    ds = load_huggingface(HuggingFaceLoader(type="huggingface", path="one"), make_ctx())
    assert ds["prompt"] == ["p0", "p1"]
    DatasetDict({"train": Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "dict"))
    assert load_huggingface(HuggingFaceLoader(type="huggingface", path="dict"), make_ctx())["response"] == ["r0", "r1"]
    with pytest.raises(UserError, match="has the splits train, not 'test'"):
        load_huggingface(HuggingFaceLoader(type="huggingface", path="dict", split="test"), make_ctx())


def test_a_slice_of_a_saved_datasetdicts_split_says_why_it_is_not_read(tmp_path: Path, make_ctx) -> None:
    """`split: train[:10%]` (load_dataset's slice) on a DatasetDict written by save_to_disk,
    which load_from_disk reads by split name only, was told "has the splits train, test, not
    'train[:10%]'. Set loader.split to one of them", by validate and the data stage alike,
    with no word on why a split it has was not one. A split it lacks is told as before."""
    from datasets import Dataset, DatasetDict

    from subsetctl.data.checks import check_sources
    from subsetctl.spec import Spec

    rows = {"prompt": ["p0", "p1"], "response": ["r0", "r1"]}
    DatasetDict({"train": Dataset.from_dict(rows), "test": Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "dict"))
    note = ("(a slice or sum such as 'train[:10%]' is read by load_dataset from a dataset's data files, but a folder "
            "written by save_to_disk is read by split name only; bound a split's rows with max_examples or split "
            "counts instead)")
    with pytest.raises(UserError) as err:
        load_huggingface(HuggingFaceLoader(type="huggingface", path="dict", split="train[:10%]"), make_ctx())
    assert f"has the splits train, test, not 'train[:10%]'. Set loader.split to one of them {note}." in str(err.value)
    (tmp_path / "t.jsonl").write_text('{"prompt": "q", "response": "a"}\n')
    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
            "sources": [{"name": "s", "loader": {"type": "huggingface", "path": "./dict", "split": "train[:10%]"}},
                        {"name": "u", "loader": {"type": "huggingface", "path": "./dict", "split": "validation"}}]}
    issues = check_sources(Spec.model_validate(spec), tmp_path / "subsetctl.yaml")
    said = f"the DatasetDict saved in {tmp_path / 'dict'} has the splits train, test, not"
    assert [i.message for i in issues if i.key.startswith("sources")] == [
        f"{said} 'train[:10%]'; set split to one of them {note}", f"{said} 'validation'; set split to one of them"]


def test_a_split_load_dataset_lacks_is_said_in_subsetctls_words(tmp_path: Path, make_ctx) -> None:
    """datasets' `Unknown split "tran". Should be one of ['train', 'test'].` was passed on
    whole (Python's list, datasets' words, then ". Check loader.path, ..." whatever the
    problem): the splits it has, as a save_to_disk DatasetDict's are said, and the one
    likely meant."""
    import pandas as pd

    (tmp_path / "data").mkdir()
    for split in ("train", "test"):
        pd.DataFrame({"prompt": ["p"], "response": ["r"]}).to_csv(tmp_path / "data" / f"{split}.csv", index=False)
    said = f"Source 'src': dataset {str(tmp_path / 'data')!r} has the splits train, test, not"
    for split, message in [("tran", f"{said} 'tran' (did you mean 'train'?). Set loader.split to one of them."),
                           ("validation", f"{said} 'validation'. Set loader.split to one of them."),
                           ("train+tset", (f"{said} 'tset' (of loader.split 'train+tset') (did you mean 'test'?). "
                                           "Set loader.split to one of them."))]:
        with pytest.raises(UserError) as err:
            load_huggingface(HuggingFaceLoader(type="huggingface", path="data", split=split), make_ctx())
        assert str(err.value) == message


def test_a_saved_datasets_format_and_feature_decoding_do_not_change_its_rows(tmp_path: Path, make_ctx) -> None:
    """Read batch by batch through the dataset's format, a "numpy"-formatted dataset gave
    responses '"5"' and metadata strings, and an Image column a PIL object's repr with a
    memory address (a new data digest on every run)."""
    import io

    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    rows = {"prompt": ["p0", "p1"], "response": [5, 7], "extra": [1.5, 2.5]}
    Dataset.from_dict(rows).with_format("numpy").save_to_disk(str(tmp_path / "np"))
    ds = load_huggingface(HuggingFaceLoader(type="huggingface", path="np"), make_ctx())
    assert ds["response"] == ["5", "7"] and json.loads(ds["metadata"][0]) == {"extra": 1.5}
    png = io.BytesIO()
    PILImage.new("RGB", (1, 1)).save(png, format="PNG")
    features = Features({"prompt": Value("string"), "response": Value("string"), "image": Image()})
    Dataset.from_dict({"prompt": ["p"], "response": ["r"], "image": [{"bytes": png.getvalue(), "path": None}]},
                      features=features).save_to_disk(str(tmp_path / "img"))
    first = load_huggingface(HuggingFaceLoader(type="huggingface", path="img"), make_ctx())["metadata"][0]
    assert "PIL" not in first and "0x" not in first
    assert first == load_huggingface(HuggingFaceLoader(type="huggingface", path="img"), make_ctx())["metadata"][0]


def test_a_save_to_disk_folder_saved_with_a_format_of_a_library_not_installed_is_read(
        tmp_path: Path, make_ctx) -> None:
    """A dataset saved after `set_format("tensorflow")` (on a machine with TensorFlow), a
    DatasetDict's split too, was refused where TensorFlow is not installed: load_from_disk
    sets the saved format ("Tensorflow needs to be installed to be able to return Tensorflow
    tensors"), though the rows are read as Arrow whatever the format. They are read."""
    from datasets import Dataset, DatasetDict

    rows = Dataset.from_dict({"prompt": ["p0", "p1"], "response": ["5", "7"]})
    rows.save_to_disk(str(tmp_path / "one"))
    DatasetDict({"train": rows, "test": rows}).save_to_disk(str(tmp_path / "dict"))
    for state in (tmp_path / "one" / "state.json", tmp_path / "dict" / "test" / "state.json"):
        saved = json.loads(state.read_text())
        state.write_text(json.dumps({**saved, "_format_type": "a library not installed"}))
    assert load_huggingface(HuggingFaceLoader(type="huggingface", path="one"), make_ctx())["response"] == ["5", "7"]
    read = load_huggingface(HuggingFaceLoader(type="huggingface", path="dict", split="test"), make_ctx())
    assert read["prompt"] == ["p0", "p1"]


def test_a_json_column_of_mixed_values_gives_the_values_not_their_json_text(tmp_path: Path, make_ctx) -> None:
    """datasets stores a column whose values mix types as JSON text (a ``Json`` feature):
    read as stored, the answer "forty" was '"forty"', quotes included."""
    import dataclasses

    folder = tmp_path / "mixed"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"q": f"q{i}", "a": [i, f"n{i}"][i % 2], "m": [1, "x"][i % 2]}
                                         for i in range(6)])
    options = HuggingFaceLoader(type="huggingface", path="mixed", prompt_field="q", response_field="a")
    loaded = load_huggingface(options, make_ctx("hf"))
    assert loaded["response"] == ["0", "n1", "2", "n3", "4", "n5"]
    assert [json.loads(m)["m"] for m in loaded["metadata"]] == [1, "x", 1, "x", 1, "x"]
    capped = load_huggingface(options, dataclasses.replace(make_ctx("hf"), keep_at_most=2))  # rows read again
    assert set(capped["response"]) <= set(loaded["response"]) and len(capped) == 2


def test_an_answer_stored_as_json_text_that_looks_like_json_keeps_its_text(tmp_path: Path, make_ctx) -> None:
    """datasets stores a string that is valid JSON, in a column of mixed values, as that
    JSON: decoded, the answer "1.50" was "1.5", " 7" was "7", and the answer "null" was a
    missing answer (the huggingface and parquet loaders refused the file). The prompt and
    response columns keep such a value's text, as the jsonl loader reads the same rows."""
    import dataclasses

    from datasets import load_dataset

    folder = tmp_path / "mixed"
    folder.mkdir()
    answers = ["forty", 42, "1.50", "null", " 7", "1e3", True, 2.5]
    write_jsonl(folder / "train.jsonl", [{"q": [f"q{i}", i][i % 2], "a": a} for i, a in enumerate(answers)])
    load_dataset("json", data_files=str(folder / "train.jsonl"), split="train").to_parquet(tmp_path / "m.parquet")
    expected = load_jsonl(JsonlLoader(type="jsonl", path="mixed/train.jsonl", prompt_field="q", response_field="a"),
                          make_ctx())
    assert expected["response"] == ["forty", "42", "1.50", "null", " 7", "1e3", "true", "2.5"]
    for load, options in [
            (load_huggingface, HuggingFaceLoader(type="huggingface", path="mixed", prompt_field="q", response_field="a")),
            (load_parquet, ParquetLoader(type="parquet", path="m.parquet", prompt_field="q", response_field="a"))]:
        ctx = make_ctx()
        loaded = load(options, ctx)
        assert loaded["prompt"] == expected["prompt"] and loaded["response"] == expected["response"]
        assert ctx.notices == []
        capped = load(options, dataclasses.replace(make_ctx(), keep_at_most=3))  # rows read again
        assert len(capped) == 3 and set(zip(capped["prompt"], capped["response"])) <= set(
            zip(expected["prompt"], expected["response"]))


def test_class_label_columns_give_their_class_names_not_ids(tmp_path: Path, make_ctx) -> None:
    """Most hub classification datasets store labels as ClassLabel ids: a target labelled
    'positive'/'negative' and such a source gave a head of 4 classes ('0', '1', ...)."""
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    Dataset.from_dict({"text": ["bad", "good", "hidden"], "label": [0, 1, -1]},
                      features=features).save_to_disk(str(tmp_path / "sst"))
    options = HuggingFaceLoader(type="huggingface", path="sst", prompt_field="text", label_field="label")
    with pytest.raises(UserError, match=r"row 3: 'label' \(loader\.label_field\) is missing, null or NaN"):
        load_huggingface(options, make_ctx(kind="classifier"))  # -1: no label (a hidden test split), counted from 1
    Dataset.from_dict({"text": ["bad", "good"], "label": [0, 1]}, features=features).save_to_disk(str(tmp_path / "ok"))
    loaded = load_huggingface(options.model_copy(update={"path": "ok"}), make_ctx(kind="classifier"))
    assert loaded["label_text"] == ["negative", "positive"]
    causal = HuggingFaceLoader(type="huggingface", path="ok", prompt_field="text", response_field="label")
    assert load_huggingface(causal, make_ctx())["response"] == ["negative", "positive"]

# ------------------------------------------------------- empty answers (walkthrough)


@pytest.mark.parametrize("response", ["", "   ", "\n\t"])
def test_jsonl_empty_response_rows_are_left_out_with_their_file_line(tmp_path: Path, make_ctx, response: str) -> None:
    write_jsonl(tmp_path / "d.jsonl", [*qa_rows(3), {"prompt": "x", "response": response}])
    ctx = make_ctx()
    loaded = load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), ctx)
    assert len(loaded) == 3 and loaded["row"] == [0, 1, 2]
    (notice,) = ctx.notices
    assert f"file {tmp_path / 'd.jsonl'}: 1 of 4 rows has an empty 'response' (loader.response_field) (line 4)" in notice
    assert "left out" in notice and "\n" not in notice
    write_jsonl(tmp_path / "all.jsonl", [{"prompt": "x", "response": response}] * 2)
    with pytest.raises(UserError, match=r"is empty in every row \(line 1, line 2\).*right column"):
        load_jsonl(JsonlLoader(type="jsonl", path="all.jsonl"), make_ctx())


def test_empty_prompt_is_allowed(tmp_path: Path, make_ctx) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": "", "response": "continuation"}])
    assert load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())["prompt"] == [""]


def test_csv_empty_or_missing_response_cells_name_the_file_lines(tmp_path: Path, make_ctx) -> None:
    # a blank line and a quoted cell spanning two lines before the bad rows: lines are file lines
    (tmp_path / "d.csv").write_text('prompt,response\n\na,"two\nlines"\nb,\nc\nd,ok\n')
    ctx = make_ctx()
    assert load_csv(CsvLoader(type="csv", path="d.csv"), ctx)["prompt"] == ["a", "d"]
    assert "d.csv: 2 of 4 rows have an empty 'response' (loader.response_field) (line 5, line 6)" in ctx.notices[0]
    long_cell = "x" * 200_000  # beyond the csv module's default field limit: lines still found
    (tmp_path / "long.csv").write_text(f'prompt,response\n"{long_cell}\nmore",ok\nb,\n')
    ctx = make_ctx()
    load_csv(CsvLoader(type="csv", path="long.csv"), ctx)
    assert "(line 4)" in ctx.notices[0]


def test_csv_line_holding_only_a_quoted_empty_cell_is_a_row_for_the_line_numbers(tmp_path: Path, make_ctx) -> None:
    # pandas reads `""` as a row (and skips the whitespace-only line): later lines stay exact
    (tmp_path / "d.csv").write_text('prompt,response\n""\n   \nb,\nc,ok\n')
    ctx = make_ctx()
    assert load_csv(CsvLoader(type="csv", path="d.csv"), ctx)["prompt"] == ["c"]
    assert "2 of 3 rows have an empty 'response' (loader.response_field) (line 2, line 4)" in ctx.notices[0]


@pytest.mark.parametrize("label", ["", "  "])
def test_csv_blank_label_is_left_out_not_a_class(tmp_path: Path, make_ctx, label: str) -> None:
    (tmp_path / "d.csv").write_text(f"text,label\nc0,neg\nc1,pos\nc2,{label}\n")
    options = CsvLoader(type="csv", path="d.csv", prompt_field="text", label_field="label")
    ctx = make_ctx(kind="classifier")
    assert sorted(set(load_csv(options, ctx)["label_text"])) == ["neg", "pos"]
    assert "'label' (loader.label_field) (line 4)" in ctx.notices[0] and "class label" in ctx.notices[0]


def test_csv_parse_error_is_one_line(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "d.csv").write_text("prompt,response\na,b\na,b,c\n")
    with pytest.raises(UserError) as err:
        load_csv(CsvLoader(type="csv", path="d.csv"), make_ctx())
    assert "is not valid CSV (Error tokenizing data." in str(err.value)
    assert "\n" not in str(err.value) and "saw 3)" in str(err.value)


# ------------------------------------------------------ huggingface (walkthrough)


def test_huggingface_mixed_types_error_names_the_cause(tmp_path: Path, make_ctx) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"prompt": "a", "response": "b"}])
    write_jsonl(folder / "b.jsonl", [{"prompt": "a", "response": [1, 2]}])
    with pytest.raises(UserError, match=r"DatasetGenerationError: .*\(caused by \w+: .*cast"):
        load_huggingface(HuggingFaceLoader(type="huggingface", path="mixed"), make_ctx())


def test_huggingface_split_on_a_single_saved_dataset(tmp_path: Path, make_ctx) -> None:
    from datasets import Dataset

    rows = {"prompt": ["p0", "p1"], "response": ["r0", "r1"]}
    Dataset.from_dict(rows).save_to_disk(str(tmp_path / "one"))
    ctx = make_ctx()
    assert len(load_huggingface(HuggingFaceLoader(type="huggingface", path="one", split="test"), ctx)) == 2
    assert "without named splits: loader.split 'test' does not apply, so all its rows are read" in ctx.notices[0]
    for split in (None, "train"):  # the default reads the whole dataset, as before
        options = HuggingFaceLoader(type="huggingface", path="one", **({"split": split} if split else {}))
        ctx = make_ctx()
        assert load_huggingface(options, ctx)["prompt"] == ["p0", "p1"] and not ctx.notices
    for recorded in ("test", "test[:50%]", "validation+test"):  # what datasets records: base names count
        Dataset.from_dict(rows, split=recorded).save_to_disk(str(tmp_path / "named"))
        ctx = make_ctx()
        assert len(load_huggingface(HuggingFaceLoader(type="huggingface", path="named", split="test"), ctx)) == 2
        assert not ctx.notices, recorded
    ctx = make_ctx()
    load_huggingface(HuggingFaceLoader(type="huggingface", path="named", split="train"), ctx)
    load_huggingface(HuggingFaceLoader(type="huggingface", path="named", split="dev"), ctx)
    assert len(ctx.notices) == 1 and "the split 'validation+test': loader.split 'dev'" in ctx.notices[0]


# -------------------------------------------------- plugin/rg/evals (walkthrough)


def test_plugin_missing_answer_column_says_what_the_plugin_must_return(make_ctx) -> None:
    from datasets import Dataset

    LOADERS.add("test_noresp_loader", lambda options, ctx: Dataset.from_dict({"prompt": ["p"]}), "test")
    with pytest.raises(UserError) as err:
        load_plugin(PluginLoader(type="plugin", name="test_noresp_loader"), make_ctx("pl"))
    text = str(err.value)
    assert "has no column 'response'" in text and "must return" in text
    assert "loader.name" not in text and "Set loader." not in text
    with pytest.raises(UserError, match=r"no column 'label'.*model\.kind classifier"):
        load_plugin(PluginLoader(type="plugin", name="test_noresp_loader"), make_ctx("pl", kind="classifier"))


def test_plugin_empty_response_rows_are_left_out(make_ctx) -> None:
    from datasets import Dataset

    LOADERS.add(
        "test_emptyresp_loader", lambda options, ctx: Dataset.from_dict({"prompt": ["p", "q"], "response": ["r", ""]}),
        "test",
    )
    ctx = make_ctx("pl")
    assert load_plugin(PluginLoader(type="plugin", name="test_emptyresp_loader"), ctx)["prompt"] == ["p"]
    assert "1 of 2 rows has an empty 'response' (row 2)" in ctx.notices[0]


def test_a_plugin_loaders_structured_values_get_advice_for_plugin_loaders(make_ctx, tmp_path: Path) -> None:
    """A loader plugin's rows with a list as the response (``[["r"]]``) or a chat as the prompt
    were told to "use a plugin loader" (or "render it in a plugin loader"): the advice is about
    what the plugin returns. A built-in loader's rows keep the advice to use one."""
    from datasets import Dataset

    LOADERS.add("test_nested_loader", lambda options, ctx: Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": "hi"}]], "response": [["r"]]}), "test")
    ctx = make_ctx("pl")
    load_plugin(PluginLoader(type="plugin", name="test_nested_loader"), ctx)
    said = " ".join(ctx.notices)
    assert "have the loader plugin 'test_nested_loader' return the one meant as a plain value (a string)." in said, said
    assert ("have the loader plugin 'test_nested_loader' return the last user message as the prompt and the messages "
            "before it as a 'chat_context' column") in said, said
    assert "use a plugin loader" not in said and "render it in a plugin loader" not in said, said
    (tmp_path / "d.jsonl").write_text('{"prompt": "p", "response": ["r"]}\n')
    ctx = make_ctx("file")
    load_plugin(PluginLoader(type="plugin", name="jsonl", options={"path": "d.jsonl"}), ctx)
    assert "write the one meant as a plain value (or use a plugin loader)." in " ".join(ctx.notices), ctx.notices


def test_reasoning_gym_unknown_task_says_how_to_list_tasks(make_ctx) -> None:
    with pytest.raises(UserError) as err:
        load_reasoning_gym(ReasoningGymLoader(type="reasoning_gym", task="chain_sums"), make_ctx())
    text = str(err.value)
    assert "subsetctl ls" not in text and "'chain_sum'" in text
    assert "reasoning_gym.factory.DATASETS" in text


@needs_evals
def test_evals_default_file_prefers_samples(make_ctx) -> None:
    from subsetctl.data.loaders import evals_file

    assert evals_file(EvalsLoader(type="evals", name="anagrams"), "s").name == "samples.jsonl"
    explicit = EvalsLoader(type="evals", name="anagrams", file="fewshot.jsonl")
    assert evals_file(explicit, "s").name == "fewshot.jsonl"
    assert evals_file(EvalsLoader(type="evals", name="born_first"), "s").name == "born_first.jsonl"
    ds = load_evals(EvalsLoader(type="evals", name="anagrams"), make_ctx())
    assert json.loads(ds["metadata"][0])["evals_file"] == "samples.jsonl"


@needs_evals
def test_evals_metadata_names_a_nested_file_with_its_folder(make_ctx) -> None:
    """theory_of_mind has tomi/test.jsonl and socialiqa/test.jsonl: the rows' evals_file was
    "test.jsonl" for both."""
    ds = load_evals(EvalsLoader(type="evals", name="theory_of_mind", file="tomi/test.jsonl"), make_ctx())
    assert json.loads(ds["metadata"][0])["evals_file"] == "tomi/test.jsonl"


def test_evals_default_file_rule() -> None:
    from subsetctl.data.loaders import default_evals_file

    assert default_evals_file(["fewshot.jsonl", "samples.jsonl"]) == "samples.jsonl"
    assert default_evals_file(["a/fewshot.jsonl", "a/samples.jsonl"]) == "a/samples.jsonl"
    assert default_evals_file(["b.jsonl", "c.jsonl"]) == "b.jsonl"


def test_list_or_object_answers_are_used_as_json_text_with_a_notice(tmp_path: Path, make_ctx) -> None:
    """SQuAD-style `answers` lists became '[...]' gold responses without a word."""
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "response": ["x", "y"]}, {"prompt": "b", "response": "z"},
                                       {"prompt": "c", "response": {"text": "w"}}])
    ctx = make_ctx()
    ds = load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), ctx)
    assert ds["response"] == ['["x", "y"]', "z", '{"text": "w"}']
    (notice,) = ctx.notices
    assert "2 rows of file" in notice and "(first at line 1: [\"x\", \"y\"])" in notice
    plain = make_ctx()
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "response": 3}])
    load_jsonl(JsonlLoader(type="jsonl", path="p.jsonl"), plain)
    assert plain.notices == []


# ------------------------------------------------------------------- streaming


def _chunk_rows_cases(tmp_path: Path) -> list[tuple[object, object, str]]:
    """(options, kind, where) of one file per format with 11 rows: a blank answer, a list
    answer and metadata, so chunks meet every per-row path."""
    rows = [{"prompt": f"p{i}", "response": str(i % 3), "topic": f"t{i}"} for i in range(11)]
    rows[4]["response"] = " "
    rows[7]["response"] = ["a", "b"]
    write_jsonl(tmp_path / "s.jsonl", rows)
    frame = pd.DataFrame([{**r, "response": json.dumps(r["response"]) if isinstance(r["response"], list)
                           else r["response"]} for r in rows])
    frame.to_csv(tmp_path / "s.csv", index=False)
    frame.to_parquet(tmp_path / "s.parquet", index=False)
    return [
        (JsonlLoader(type="jsonl", path="s.jsonl"), load_jsonl, "causal-lm"),
        (CsvLoader(type="csv", path="s.csv"), load_csv, "causal-lm"),
        (ParquetLoader(type="parquet", path="s.parquet"), load_parquet, "causal-lm"),
        (JsonlLoader(type="jsonl", path="s.jsonl", label_field="response"), load_jsonl, "classifier"),
    ]


def test_files_read_in_chunks_give_the_same_dataset(tmp_path: Path, make_ctx, monkeypatch) -> None:
    """File loaders map rows a chunk at a time (a large file's rows never all exist as
    Python dicts); the dataset, its notices and its labels must not depend on the chunking."""
    from subsetctl.data import loaders

    for options, load, kind in _chunk_rows_cases(tmp_path):
        whole_ctx = make_ctx(kind=kind)
        whole = load(options, whole_ctx)
        monkeypatch.setattr(loaders.common, "CHUNK_ROWS", 3)
        chunked_ctx = make_ctx(kind=kind)
        chunked = load(options, chunked_ctx)
        monkeypatch.setattr(loaders.common, "CHUNK_ROWS", 50_000)
        assert len(whole) == 10  # the blank answer is left out
        assert chunked.to_dict() == whole.to_dict(), (options.type, kind)
        assert chunked._fingerprint == whole._fingerprint  # caches keyed on it must not see a change
        assert chunked_ctx.notices == whole_ctx.notices
        assert len(whole_ctx.notices) == (2 if options.type == "jsonl" else 1)  # a JSON list answer: a notice
        assert "1 of 11 rows has an empty" in whole_ctx.notices[0]
    assert list(whole["label"]) == [0, 1, 2, 0, 2, 0, 3, 2, 0, 1]  # classifier: ids over every chunk's labels


def test_long_rows_are_chunked_by_their_characters(tmp_path: Path, make_ctx, monkeypatch) -> None:
    """A chunk is made once its rows hold CHUNK_CHARS characters, however few rows that is:
    a corpus of long documents (50,000 of 5 kB) otherwise held them all as Python strings
    before the first chunk (1 GB more at the peak for a 300 MB file). Same dataset."""
    from subsetctl.data import loaders
    from subsetctl.data.loaders.common import CommonColumns

    (tmp_path / "docs.jsonl").write_text(
        "".join(json.dumps({"text": f"doc {i} " + "é" * 1000}) + "\n" for i in range(5)), encoding="utf-8")
    options = JsonlLoader(type="jsonl", path="docs.jsonl", text_field="text")
    whole = load_jsonl(options, make_ctx())
    sizes: list[int] = []
    flush = CommonColumns._flush

    def counting(self: CommonColumns) -> None:
        sizes.append(len(self.columns["row"]))
        flush(self)

    monkeypatch.setattr(CommonColumns, "_flush", counting)
    monkeypatch.setattr(loaders.common, "CHUNK_CHARS", 2500, raising=False)
    chunked = load_jsonl(options, make_ctx())
    assert sizes == [3, 2]  # 3 rows of 1,000-odd characters reach 2,500; the last 2 at the end
    assert chunked.to_dict() == whole.to_dict()
    assert chunked._fingerprint == whole._fingerprint


@pytest.mark.parametrize("kind", ["parquet", "huggingface", "csv"])
def test_long_rows_are_read_in_smaller_batches(tmp_path: Path, make_ctx, monkeypatch, kind: str) -> None:
    """A Parquet or CSV file or a dataset of long rows is read in batches of about
    CHUNK_CHARS bytes (a CSV file's sized by the frame before), not of CHUNK_ROWS rows: each batch becomes Python objects at once (50,000
    documents of 5 kB were 1 GB more at the peak). Same dataset."""
    from datasets import Dataset as HfDataset

    from subsetctl.data import loaders
    from subsetctl.data.loaders.common import CommonColumns

    texts = {"text": [f"doc {i} " + "é" * 1000 for i in range(5)]}
    if kind == "parquet":
        pd.DataFrame(texts).to_parquet(tmp_path / "docs.parquet")
        options, load = ParquetLoader(type="parquet", path="docs.parquet", text_field="text"), load_parquet
    elif kind == "csv":
        pd.DataFrame(texts).to_csv(tmp_path / "docs.csv", index=False)
        options, load = CsvLoader(type="csv", path="docs.csv", text_field="text"), load_csv
        monkeypatch.setattr(loaders.files, "CSV_FIRST_ROWS", 2, raising=False)
    else:
        HfDataset.from_dict(texts).save_to_disk(str(tmp_path / "saved"))
        options, load = HuggingFaceLoader(type="huggingface", path="saved", text_field="text"), load_huggingface
    whole = load(options, make_ctx())
    batches: list[int] = []
    add_all = CommonColumns.add_all

    def counting(self: CommonColumns, records: list) -> CommonColumns:
        batches.append(len(records))
        return add_all(self, records)

    monkeypatch.setattr(CommonColumns, "add_all", counting)
    monkeypatch.setattr(loaders.common, "CHUNK_CHARS", 5000)
    chunked = load(options, make_ctx())
    assert sum(batches) == 5 and max(batches) < 5, batches
    assert chunked.to_dict() == whole.to_dict()
    assert chunked._fingerprint == whole._fingerprint


def test_a_row_error_is_raised_after_the_columns_are_known(tmp_path: Path, make_ctx) -> None:
    """Rows are read one at a time: a null prompt in row 2 names that row, but a column no
    row has is reported as missing (with the columns there are), as when all rows were read first."""
    write_jsonl(tmp_path / "n.jsonl", [{"prompt": "a", "response": "1"}, {"prompt": None, "response": "2"},
                                       {"prompt": "c", "response": "3"}])
    with pytest.raises(UserError, match=r"n\.jsonl, line 2: 'prompt' \(loader\.prompt_field\) is missing, null or NaN"):
        load_jsonl(JsonlLoader(type="jsonl", path="n.jsonl"), make_ctx())
    write_jsonl(tmp_path / "m.jsonl", [{"question": None, "response": "1"}, {"question": "b", "answer": "2"}])
    with pytest.raises(UserError, match=r"has no column 'prompt'.*'answer', 'question', 'response'"):
        load_jsonl(JsonlLoader(type="jsonl", path="m.jsonl"), make_ctx())


def test_csv_lines_of_a_gzip_file_with_a_cell_larger_than_the_file(tmp_path: Path, make_ctx) -> None:
    """The csv module's field limit was set from the (compressed) file size: a long cell
    stopped the line count and the notice fell back to counting from the header."""
    import gzip

    cell = '"' + "x\n" * 150_000 + '"'
    text = f"prompt,response\n{cell},1\n\nq,\nr,2\n"
    (tmp_path / "big.csv.gz").write_bytes(gzip.compress(text.encode()))
    assert (tmp_path / "big.csv.gz").stat().st_size < 300_000
    ctx = make_ctx()
    load_csv(CsvLoader(type="csv", path="big.csv.gz"), ctx)
    (notice,) = ctx.notices
    assert "(line 150004)" in notice  # header 1, the cell 2-150002, a blank line, then q


def test_invalid_utf8_in_a_csv_file_is_located(tmp_path: Path, make_ctx) -> None:
    """Read in chunks, the CSV's decoding error says where (it said only the file)."""
    (tmp_path / "b.csv").write_bytes(b"prompt,response\nok,1\n\xff\xfe,x\n")
    with pytest.raises(UserError, match=r"b\.csv is not valid UTF-8 \(byte 21, line 3[;)]"):
        load_csv(CsvLoader(type="csv", path="b.csv"), make_ctx())
    (tmp_path / "b.jsonl").write_bytes(b'{"prompt": "a", "response": "1"}\n{"prompt": "\xff", "response": "1"}\n')
    with pytest.raises(UserError, match=r"b\.jsonl is not valid UTF-8 \(byte 45, line 2[;)]"):
        load_jsonl(JsonlLoader(type="jsonl", path="b.jsonl"), make_ctx())


def test_a_few_jsonl_lines_that_are_not_utf8_are_left_out_with_one_warning(tmp_path: Path, make_ctx) -> None:
    """One damaged line (stray bytes, a character cut short) stopped the whole source: the
    file was refused at its first bad byte. Now a few are left out, said once; a line that
    reads as Latin-1 text, or such lines more than a tenth of the file, still stop it, so a
    Latin-1 file is never emptied of its accented lines."""
    good = b"".join(b'{"prompt": "q%d", "response": "a"}\n' % i for i in range(30))
    (tmp_path / "few.jsonl").write_bytes(good + b'{"prompt": "x\x81y", "response": "a"}\n' + good
                                         + b'{"prompt": "\xe2\x80", "response": "a"}\n')
    ctx = make_ctx()
    assert len(load_jsonl(JsonlLoader(type="jsonl", path="few.jsonl"), ctx)) == 60
    (notice,) = ctx.notices
    assert re.search(r"few\.jsonl: 2 of 62 lines are not valid UTF-8 \(line 31, line 62; the first at byte 1053\); "
                     r"they are left out\. If the file was saved in another encoding, re-save it as UTF-8\.$", notice)
    (tmp_path / "latin.jsonl").write_bytes(good + b'{"prompt": "caf\xe9", "response": "a"}\n' + good)
    with pytest.raises(UserError, match=r"latin\.jsonl is not valid UTF-8 \(byte 1055, line 31; it reads as Latin-1 "
                                        r"\(Windows-1252\) text there\)\. Re-save it as UTF-8\.$"):
        load_jsonl(JsonlLoader(type="jsonl", path="latin.jsonl"), make_ctx())
    (tmp_path / "many.jsonl").write_bytes(b'{"prompt": "x\x81", "response": "a"}\n' * 4 + good)
    with pytest.raises(UserError, match=r"many\.jsonl is not valid UTF-8 \(byte 13, line 1\)\. Re-save it as UTF-8\. "
                                        r"4 of its 34 lines are not UTF-8 \(line 1, line 2, line 3 \(\+1 more\)\)\.$"):
        load_jsonl(JsonlLoader(type="jsonl", path="many.jsonl"), make_ctx())
    (tmp_path / "one.jsonl").write_bytes(b'{"prompt": "x\x81", "response": "a"}\n'
                                         + b'{"prompt": "q", "response": "a"}\n')  # "1 of its 2 lines are"
    with pytest.raises(UserError, match=r"1 of its 2 lines is not UTF-8 \(line 1\)\.$"):
        load_jsonl(JsonlLoader(type="jsonl", path="one.jsonl"), make_ctx())


def test_a_jsonl_line_with_a_euro_sign_cut_short_is_left_out_not_taken_for_latin1(tmp_path: Path, make_ctx) -> None:
    """A "€" (or "™", "₹": bytes E2 82/84 ..) cut short reads as Windows-1252 "â‚" / "â„", a
    letter and a quote, so the damaged line was taken for Latin-1 text and stopped the whole
    source ("re-save it as UTF-8"), though the file is UTF-8: a lead byte followed by
    continuation bytes is a UTF-8 character begun, so the line is left out as a damaged one."""
    good = b"".join(b'{"prompt": "q%d", "response": "a"}\n' % i for i in range(30))
    (tmp_path / "cut.jsonl").write_bytes(good + b'{"prompt": "7\xe2\x82", "response": "a"}\n'
                                         + b'{"prompt": "x\xe2\x84", "response": "a"}\n' + good)
    ctx = make_ctx()
    assert len(load_jsonl(JsonlLoader(type="jsonl", path="cut.jsonl"), ctx)) == 60
    (notice,) = ctx.notices
    assert re.search(r"cut\.jsonl: 2 of 62 lines are not valid UTF-8 \(line 31, line 32; ", notice), notice


def test_a_count_of_one_line_not_utf8_agrees_and_is_worded_of_the_file_or_the_source(tmp_path: Path,
                                                                                       make_ctx) -> None:
    """The notice said "1 of 31 lines are not valid UTF-8 ...; they are left out": one line
    "is", and "it is" left out. Said of the file where several sources read it, and back of
    the source (file_notice_worded), in the new words and in the words a kept notice of an
    earlier run has."""
    from subsetctl.data.loaders import file_notice_worded

    good = b"".join(b'{"prompt": "q%d", "response": "a"}\n' % i for i in range(30))
    (tmp_path / "one.jsonl").write_bytes(good + b'{"prompt": "x\x81y", "response": "a"}\n')
    ctx = make_ctx()
    assert len(load_jsonl(JsonlLoader(type="jsonl", path="one.jsonl"), ctx)) == 30
    (notice,) = ctx.notices
    assert "one.jsonl: 1 of 31 lines is not valid UTF-8 (line 31; the first at byte 1053); it is left out. " \
           "If the file" in notice, notice
    path = tmp_path / "one.jsonl"
    source = ctx.source_name
    of_file = file_notice_worded(notice, source, path, of_file=True)
    assert of_file.startswith(f"File {path}: 1 of 31 lines is not valid") and \
        "; it is left out of every source reading it. If" in of_file, of_file
    assert file_notice_worded(of_file, source, path, of_file=False) == notice
    kept = notice.replace("lines is not", "lines are not").replace("it is left out", "they are left out")
    assert file_notice_worded(kept, source, path, of_file=True) == of_file  # (an earlier run's words: today's)


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_where_source_leaves_out_jsonl_lines_that_are_not_utf8_as_the_whole_file_does(
        tmp_path: Path, make_ctx, monkeypatch: pytest.MonkeyPatch, in_memory: bool) -> None:
    """A source reading one task of a JSON Lines file (``where``) stopped at a line that is
    not UTF-8, which the same file read whole leaves out with a warning: the file's tasks are
    found by a read of their own, which refused it. Its rows are now those of the whole file's
    read, the line left out and said (its file kept in memory, or read again for the task)."""
    from subsetctl.data.loaders import files

    if not in_memory:
        monkeypatch.setattr(files, "WHOLE_TEXT_FILE_BYTES", 0)
    rows = [b'{"prompt": "q%d", "response": "a", "task": "t%d"}\n' % (i, i % 2) for i in range(40)]
    rows[21] = b'{"prompt": "x\x81y", "response": "a", "task": "t1"}\n'
    (tmp_path / "tasks.jsonl").write_bytes(b"".join(rows))
    ctx = make_ctx()
    ds = load_jsonl(JsonlLoader(type="jsonl", path="tasks.jsonl", where={"task": "t1"}), ctx)
    assert sorted(ds["prompt"]) == sorted(f"q{i}" for i in range(1, 40, 2) if i != 21)
    (notice,) = ctx.notices
    assert re.search(r"tasks\.jsonl: 1 of 40 lines is not valid UTF-8 \(line 22; the first at byte \d+\); it is "
                     r"left out of every source reading it\.", notice), notice


def test_a_byte_order_mark_or_a_nul_byte_in_a_csv_cell_is_said(tmp_path: Path, make_ctx) -> None:
    """Two CSV files joined (`cat a.csv b.csv`, each saved with a BOM) read the second one's
    header as a row whose prompt starts with U+FEFF, and a NUL byte stayed in a cell: both
    were trained on silently. Kept, and said, naming the line and the column."""
    (tmp_path / "a.csv").write_bytes(b"\xef\xbb\xbfprompt,response\nq1,a1\n\xef\xbb\xbfprompt,response\nq2,a\x002\n")
    ctx = make_ctx()
    assert load_csv(CsvLoader(type="csv", path="a.csv"), ctx)["prompt"] == ["q1", "\ufeffprompt", "q2"]
    bom, nul = ctx.notices
    assert re.search(r"a\.csv: 1 cell holds a byte-order mark \(U\+FEFF\), which a file has only at its start, as "
                     r"when two files are joined \(`cat a\.csv b\.csv`\) \(line 3, column 'prompt'\); .* Line 3 repeats "
                     r"the header: another file's, read as a row\. Delete those 3 bytes \(EF BB BF\) there and the "
                     r"repeated header lines\.$", bom), bom
    assert re.search(r"a\.csv: 1 cell holds a NUL byte \(line 4, column 'response'\); the cell is read with it", nul), nul
    (tmp_path / "b.csv").write_bytes(b"\xef\xbb\xbfprompt,response\nq1,a1\n")  # a BOM at the start: nothing said
    ctx = make_ctx()
    load_csv(CsvLoader(type="csv", path="b.csv"), ctx)
    assert ctx.notices == []


def test_an_infinite_answer_is_said_and_an_infinite_label_refused(tmp_path: Path, make_ctx) -> None:
    """JSON's Infinity (which Python's reader takes) read as the answer 'inf', or the class 'inf', silently."""
    (tmp_path / "i.jsonl").write_text('{"prompt": "q", "response": Infinity}\n{"prompt": "q", "response": -Infinity}\n'
                                      '{"prompt": "q2", "response": "x"}\n')
    ctx = make_ctx()
    assert load_jsonl(JsonlLoader(type="jsonl", path="i.jsonl"), ctx)["response"] == ["inf", "-inf", "x"]
    (notice,) = ctx.notices
    assert re.search(r"i\.jsonl: 2 rows have an infinite number \(JSON's Infinity or -Infinity, a float column's "
                     r"inf\) as 'response' \(loader\.response_field\), at line 1, line 2: each gold response is its "
                     r"text, 'inf' or '-inf'", notice), notice
    (tmp_path / "l.jsonl").write_text('{"prompt": "q", "label": 1}\n{"prompt": "q2", "label": -Infinity}\n')
    with pytest.raises(UserError, match=r"l\.jsonl, line 2: 'label' \(loader\.label_field\) is -Infinity, an infinite "
                                        r"number .* which is no class"):
        load_jsonl(JsonlLoader(type="jsonl", path="l.jsonl", label_field="label"), make_ctx(kind="classifier"))


def test_a_few_csv_rows_that_are_not_utf8_are_left_out_with_one_warning(tmp_path: Path, make_ctx) -> None:
    """One CSV row with stray bytes stopped the whole source (pandas refused the file): now
    such rows are left out as a JSON Lines file's lines are, with one warning; the kept rows
    keep their own lines in messages, and the seeded draw reads them again; a Latin-1 row
    still stops the source."""
    good = "".join(f"q{i},a{i}\n" for i in range(30)).encode()
    (tmp_path / "b.csv").write_bytes(b"prompt,response\nok,1\n\x81x,2\n" + good + b"blank,\n")
    ctx = make_ctx()
    dataset = load_csv(CsvLoader(type="csv", path="b.csv"), ctx)
    assert len(dataset) == 31 and "\udc81x" not in dataset["prompt"]
    assert any(re.search(r"b\.csv: 1 of 33 rows is not valid UTF-8 \(line 3; the first at byte 21\); it is left "
                         r"out\.", n) for n in ctx.notices)
    assert any("line 34" in n for n in ctx.notices)  # the blank answer, named by its own line
    drawn = dataclasses.replace(make_ctx(), keep_at_most=5)
    assert len(load_csv(CsvLoader(type="csv", path="b.csv"), drawn)) == 5
    (tmp_path / "latin.csv").write_bytes(b"prompt,response\n" + good + b"caf\xe9,1\n")
    with pytest.raises(UserError, match=r"latin\.csv is not valid UTF-8 \(byte \d+, line 32; it reads as Latin-1"):
        load_csv(CsvLoader(type="csv", path="latin.csv"), make_ctx())
    (tmp_path / "header.csv").write_bytes(b"pr\x81ompt,response\n" + good)  # (no column could be named)
    with pytest.raises(UserError, match=r"header\.csv is not valid UTF-8 \(byte 2, line 1\)\. Re-save it as UTF-8\.$"):
        load_csv(CsvLoader(type="csv", path="header.csv"), make_ctx())


def test_a_csv_files_share_of_rows_not_utf8_counts_rows_not_the_lines_of_their_cells(tmp_path: Path, make_ctx) -> None:
    """"More than a tenth not UTF-8" counted a CSV file's lines: a quoted cell over five lines,
    each with a stray byte, was five of 15 lines and stopped a source of 10 rows whose one row
    was bad; two bad rows among 10 whose cells span 11 lines each were 2 of 91 lines, and left
    out, though a fifth of the rows. Now the rows (records) are counted; the warning still
    names the file lines an editor shows."""
    good = b"".join(b"q%d,a\n" % i for i in range(9))
    (tmp_path / "few.csv").write_bytes(b'prompt,response\n"x\x81\nx\x81\nx\x81\nx\x81\nx\x81",a\n' + good)
    ctx = make_ctx()
    assert len(load_csv(CsvLoader(type="csv", path="few.csv"), ctx)) == 9
    assert any(re.search(r"few\.csv: 1 of 10 rows is not valid UTF-8 \(line 2; the first at byte 18\); it is "
                         r"left out\.", n) for n in ctx.notices), ctx.notices
    long_cells = b"".join(b'"q%d\n' % i + b"l\n" * 9 + b'",a\n' for i in range(8))
    (tmp_path / "many.csv").write_bytes(b"prompt,response\n" + long_cells + b"x\x81,a\ny\x81,a\n")
    with pytest.raises(UserError, match=r"many\.csv is not valid UTF-8 \(byte 225, line 90\)\. Re-save it as UTF-8\. "
                                        r"2 of its 10 rows are not UTF-8 \(line 90, line 91\)\.$"):
        load_csv(CsvLoader(type="csv", path="many.csv"), make_ctx())


def test_a_utf16_file_is_named_so(tmp_path: Path, make_ctx) -> None:
    """A UTF-16 file (Notepad's "Unicode", PowerShell's `>`) was only "not valid UTF-8
    (byte 0, line 1)", by the data stage and by validate."""
    from subsetctl.data.checks import _file_head

    (tmp_path / "u.csv").write_text("prompt,response\nq,1\n", encoding="utf-16")
    (tmp_path / "u.jsonl").write_text('{"prompt": "q", "response": "1"}\n', encoding="utf-16")
    said = r"not valid UTF-8 \(byte 0, line 1; it starts with a UTF-16 byte-order mark, so it is UTF-16 text\)"
    with pytest.raises(UserError, match=rf"u\.csv is {said}"):
        load_csv(CsvLoader(type="csv", path="u.csv"), make_ctx())
    with pytest.raises(UserError, match=rf"u\.jsonl is {said}"):
        load_jsonl(JsonlLoader(type="jsonl", path="u.jsonl"), make_ctx())
    for loader in (CsvLoader(type="csv", path="u.csv"), JsonlLoader(type="jsonl", path="u.jsonl")):
        _, problem, _ = _file_head(loader, tmp_path / loader.path)
        assert "; it starts with a UTF-16 byte-order mark, so it is UTF-16 text)" in problem


def test_a_utf16_file_without_a_byte_order_mark_is_named_so_by_validate(tmp_path: Path) -> None:
    """UTF-16 without a byte-order mark reads as UTF-8 with NULs: validate said "line 1 is not
    JSON (Expecting property name ...)", or that a CSV had no column 'prompt' (its first row
    has 'p\\x00r\\x00o\\x00m...')."""
    from subsetctl.data.checks import _file_head

    (tmp_path / "u.csv").write_bytes("prompt,response\nq,1\n".encode("utf-16-le"))
    (tmp_path / "u.jsonl").write_bytes('{"prompt": "q", "response": "1"}\n'.encode("utf-16-be"))
    for loader, where in ((CsvLoader(type="csv", path="u.csv"), "its header has"),
                          (JsonlLoader(type="jsonl", path="u.jsonl"), "line 1 has")):
        columns, problem, _ = _file_head(loader, tmp_path / loader.path)
        assert columns is None and problem is not None, (columns, problem)
        assert problem.startswith(f"{where} NUL bytes, as UTF-16 text without a byte-order mark has"), problem


def test_a_byte_order_mark_starting_a_later_jsonl_line_is_named_with_what_to_do(tmp_path: Path, make_ctx) -> None:
    """Two files appended (`cat a.jsonl b.jsonl`), the second saved with a BOM: line 3 was
    "invalid JSON (Unexpected UTF-8 BOM (decode using utf-8-sig) at column 1)", advice to
    Python code. A BOM at the file's start still loads."""
    rows = '{"prompt": "q", "response": "1"}\n'
    (tmp_path / "d.jsonl").write_text("\ufeff" + rows * 2 + "\ufeff" + rows, encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())
    message = str(caught.value)
    assert "line 3: invalid JSON (Unexpected UTF-8 BOM at column 1)" in message and "utf-8-sig" not in message
    assert message.endswith("The line starts with a byte-order mark (U+FEFF), which a file may have only at its "
                            "start (as when a file saved with one is appended to another): delete those 3 bytes "
                            "(EF BB BF) there."), message
    (tmp_path / "d.jsonl").write_text("\ufeff" + rows * 3, encoding="utf-8")
    assert len(load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())) == 3


def test_a_jsonl_file_with_carriage_returns_alone_is_named_so(tmp_path: Path, make_ctx) -> None:
    """Lines ending in CR alone (classic Mac OS): validate, reading with universal newlines,
    passed the file, and the data stage, splitting on LF, said "invalid JSON (Extra data at
    column 34)" of line 1. CRLF still loads."""
    from subsetctl.data.checks import _file_head

    rows = '{"prompt": "q", "response": "1"}\r{"prompt": "r", "response": "2"}\r'
    (tmp_path / "cr.jsonl").write_bytes(rows.encode())
    (tmp_path / "crlf.jsonl").write_bytes(rows.replace("\r", "\r\n").encode())
    _, problem, _ = _file_head(JsonlLoader(type="jsonl", path="cr.jsonl"), tmp_path / "cr.jsonl")
    assert problem is not None and problem.startswith("its lines end with a carriage return alone"), problem
    with pytest.raises(UserError, match=r"line 1: invalid JSON .* Its lines end with a carriage return alone"):
        load_jsonl(JsonlLoader(type="jsonl", path="cr.jsonl"), make_ctx())
    assert _file_head(JsonlLoader(type="jsonl", path="crlf.jsonl"), tmp_path / "crlf.jsonl")[1] is None
    assert len(load_jsonl(JsonlLoader(type="jsonl", path="crlf.jsonl"), make_ctx())) == 2


def test_a_jsonl_line_cut_off_mid_string_says_where_in_one_at(tmp_path: Path, make_ctx) -> None:
    """A line cut off inside a string: json's own words end in "at", so the data stage said
    "invalid JSON (Unterminated string starting at at column 17)", and validate, which kept
    the words before json's ':', "line 1 is not JSON (Unterminated string starting at)"."""
    from subsetctl.data.checks import _file_head

    good = '{"prompt": "q", "response": "1"}\n'
    (tmp_path / "cut.jsonl").write_text(good + '{"prompt": "x", "resp\n')
    with pytest.raises(UserError) as caught:
        load_jsonl(JsonlLoader(type="jsonl", path="cut.jsonl"), make_ctx())
    assert "line 2: invalid JSON (Unterminated string starting at column 17). Each" in str(caught.value)
    (tmp_path / "first.jsonl").write_text('{"prompt": "x", "resp')  # a file cut off there
    _, problem, _ = _file_head(JsonlLoader(type="jsonl", path="first.jsonl"), tmp_path / "first.jsonl")
    assert problem is not None and problem.startswith(
        "line 1 is not JSON (Unterminated string starting at column 17): not a JSON Lines file."), problem


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_array_file_given_as_json_lines_says_which_loader_reads_it(tmp_path: Path, make_ctx,
                                                                       indent: int | None) -> None:
    """A .json file holding one array of examples (Alpaca's alpaca_data.json, one line or
    pretty-printed) was "line 1 is not JSON (Expecting value): not a JSON Lines file" or "got
    a JSON list": validate and the data stage now name the huggingface loader's json
    builder, which reads it (offline), with the path as the spec wrote it."""
    from subsetctl.data.checks import _file_head

    rows = [{"instruction": f"Say {i}", "input": "", "output": str(i)} for i in range(3)]
    (tmp_path / "alpaca.json").write_text(json.dumps(rows, indent=indent))
    advice = "read it with loader: {type: huggingface, path: json, data_files: [alpaca.json]}"
    loader = JsonlLoader(type="jsonl", path="alpaca.json", prompt_field="instruction", response_field="output")
    _, problem, _ = _file_head(loader, tmp_path / "alpaca.json")
    assert problem is not None and "It holds one JSON array" in problem and advice in problem, problem
    with pytest.raises(UserError, match=r"line 1: .*It holds one JSON array") as caught:
        load_jsonl(loader, make_ctx())
    assert advice in str(caught.value)
    # a source_files group takes no huggingface loader: it is told how to write JSON Lines too
    assert "(a source of its own: a source_files group has no such loader)" in problem
    assert "or write it as JSON Lines (`jq -c '.[]' alpaca.json > alpaca.jsonl`)." in problem
    advised = HuggingFaceLoader(type="huggingface", path="json", data_files=["alpaca.json"],
                                prompt_field="instruction", response_field="output")
    assert load_huggingface(advised, make_ctx())["response"] == ["0", "1", "2"]


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_array_after_blank_lines_is_named_so_by_the_data_stage_too(tmp_path: Path, make_ctx,
                                                                       indent: int | None) -> None:
    """Blank lines before the array (a file written with a leading newline): validate named the
    json builder (its first non-blank line), the data stage did only for a line 1."""
    from subsetctl.data.checks import _file_head

    (tmp_path / "alpaca.json").write_text("\n\n" + json.dumps([{"prompt": "q", "response": "a"}], indent=indent))
    loader = JsonlLoader(type="jsonl", path="alpaca.json")
    _, problem, _ = _file_head(loader, tmp_path / "alpaca.json")
    assert problem is not None and "It holds one JSON array" in problem, problem
    with pytest.raises(UserError, match=r"line 3: .*It holds one JSON array .*data_files: \[alpaca.json\]"):
        load_jsonl(loader, make_ctx())
    (tmp_path / "d.jsonl").write_text('{"prompt": "q", "response": "a"}\n[1, 2]\n')  # (a later line: no advice)
    with pytest.raises(UserError, match=r"line 2: expected a JSON object .*got a JSON list\.$"):
        load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())


def test_the_json_array_advice_quotes_a_path_yaml_would_read_otherwise() -> None:
    """A path with a comma, "#" or a space is quoted, so the advised loader pastes into a
    spec as the one file; a plain path is left as written."""
    import yaml

    from subsetctl.data.loaders.files import json_document_advice

    for path in ("data/my set, v2.json", "a #1.json", "plain/alpaca_data.json"):
        advice = json_document_advice("[", path)
        flow = advice[advice.index("{type: huggingface"):advice.index("}, which") + 1]
        assert yaml.safe_load(flow)["data_files"] == [path], advice
    assert "data_files: [plain/alpaca_data.json]" in json_document_advice("[", "plain/alpaca_data.json")


def test_a_pretty_printed_object_given_as_json_lines_is_named_so(tmp_path: Path) -> None:
    from subsetctl.data.checks import _file_head

    (tmp_path / "one.json").write_text(json.dumps({"prompt": "q", "response": "a"}, indent=2))
    _, problem, _ = _file_head(JsonlLoader(type="jsonl", path="one.json"), tmp_path / "one.json")
    assert problem is not None and "one JSON object spread over lines (pretty-printed)" in problem, problem


@pytest.mark.parametrize(("head", "name"), [(b"\x28\xb5\x2f\xfd\x00\x01", "zstd"),
                                          (__import__("bz2").compress(b'{"prompt": "a"}'), "bzip2"),
                                          (b"PK\x03\x04\x00\x01", "zip")])


def test_a_file_compressed_otherwise_than_with_gzip_is_named_so(tmp_path: Path, make_ctx, head: bytes,
                                                                   name: str) -> None:
    """A .zst file was "not valid UTF-8 ... Re-save it as UTF-8"."""
    from subsetctl.data.checks import _file_head

    (tmp_path / "d.jsonl").write_bytes(head + b"compressed bytes")
    with pytest.raises(UserError, match=rf"Source 'src': file .*d\.jsonl is compressed with {name}; subsetctl reads "
                                        "plain and gzip-compressed files"):
        load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())
    loader = JsonlLoader(type="jsonl", path="d.jsonl")
    assert _file_head(loader, tmp_path / "d.jsonl")[1].startswith(f"compressed with {name};")  # validate's check


def test_rows_without_an_answer_are_counted_and_listed_in_one_error(tmp_path: Path, make_ctx) -> None:
    """Ten null responses named only the first: fixing them took one run each."""
    rows = [{"prompt": f"q{i}", "response": None if i % 2 else str(i)} for i in range(20)]
    write_jsonl(tmp_path / "n.jsonl", rows)
    with pytest.raises(UserError) as err:
        load_jsonl(JsonlLoader(type="jsonl", path="n.jsonl"), make_ctx())
    text = str(err.value)
    assert "line 2: 'response' (loader.response_field) is missing, null or NaN" in text
    assert text.endswith("10 of 20 rows lack 'prompt' (loader.prompt_field) or 'response' (loader.response_field) "
                         "(line 2, line 4, line 6, line 8, line 10, ...).")
    write_jsonl(tmp_path / "one.jsonl", [*rows[:2], *[{"prompt": "x", "response": "y"}] * 3])
    with pytest.raises(UserError) as one:
        load_jsonl(JsonlLoader(type="jsonl", path="one.jsonl"), make_ctx())
    assert "rows lack" not in str(one.value)  # a single row: the first message says it all


def test_a_chat_style_prompt_is_kept_as_json_text_with_a_warning(tmp_path: Path, make_ctx) -> None:
    rows = [{"prompt": [{"role": "user", "content": f"hi {i}"}], "response": str(i)} for i in range(3)]
    write_jsonl(tmp_path / "chat.jsonl", rows)
    ctx = make_ctx()
    loaded = load_jsonl(JsonlLoader(type="jsonl", path="chat.jsonl"), ctx)
    assert json.loads(loaded["prompt"][0]) == [{"role": "user", "content": "hi 0"}]
    (notice,) = ctx.notices
    assert "3 rows of" in notice and "as 'prompt' (loader.prompt_field) (first at line 1:" in notice
    assert "not rendered with the model's chat template" in notice


def test_a_text_file_that_starts_like_a_bzip2_header_is_read_as_text(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "b.csv").write_text("BZh9,response\nq,1\n")
    loaded = load_csv(CsvLoader(type="csv", path="b.csv", prompt_field="BZh9"), make_ctx())
    assert loaded["prompt"] == ["q"]


def test_plugin_loader_refuses_itself_bad_options_of_a_builtin_and_what_is_no_dataset(
    tmp_path: Path, make_ctx
) -> None:
    with pytest.raises(UserError, match=r"^Source 'pl': loader.name cannot be 'plugin' itself\.$"):
        load_plugin(PluginLoader(type="plugin", name="plugin"), make_ctx("pl"))
    write_jsonl(tmp_path / "d.jsonl", qa_rows(2))
    with pytest.raises(UserError, match=r"loader.options are not valid for the built-in loader 'jsonl': "
                                        r"(?=.*path: Field required)(?=.*bogus: Extra inputs)"):
        load_plugin(PluginLoader(type="plugin", name="jsonl", options={"bogus": 1}), make_ctx("pl"))
    LOADERS.add("test_list_loader", lambda options, ctx: [{"prompt": "p", "response": "r"}], "test")
    with pytest.raises(UserError, match=r"loader plugin 'test_list_loader' \(built-in\) returned list, "
                                        r"not a datasets\.Dataset"):  # (registered here: no module to name)
        load_plugin(PluginLoader(type="plugin", name="test_list_loader"), make_ctx("pl"))


@pytest.mark.parametrize(("returned", "says"), [
    (lambda ds: ds.DatasetDict(train=ds.Dataset.from_dict({"prompt": ["p"], "response": ["r"]})),
     (r"returned DatasetDict, not a datasets\.Dataset \(its splits: train\): return one of them, e\.g\. "
     r"dataset\['train'\]\. Fix the plugin\.")),
    (lambda ds: ds.Dataset.from_dict({"prompt": ["p"], "response": ["r"]}).to_iterable_dataset(),
     r"returned IterableDataset, not a datasets\.Dataset \(a streamed one\): load it without streaming=True"),
    (lambda ds: (row for row in [{"prompt": "p", "response": "r"}]),
     (r"returned generator, not a datasets\.Dataset \(the loader yields rows\): return "
     r"datasets\.Dataset\.from_list\(list\(rows\)\) instead")),
    (lambda ds: [{"prompt": "p", "response": "r"}], (r"returned list, not a datasets\.Dataset: return "
                                                 r"datasets\.Dataset\.from_list\(rows\)")),
    (lambda ds: pd.DataFrame({"prompt": ["p"], "response": ["r"]}),
     r"returned DataFrame, not a datasets\.Dataset: return datasets\.Dataset\.from_pandas\(df, preserve_index=False\)"),
])


def test_a_plugin_loader_returning_what_is_almost_a_dataset_is_told_how_to_make_one(
        make_ctx, monkeypatch, returned, says: str) -> None:
    """A DatasetDict (load_dataset without split=), a streamed dataset, a generator (a loader
    using yield), a list of rows or a DataFrame was "returned DatasetDict, not a
    datasets.Dataset": what to return instead is a line away."""
    import datasets

    from subsetctl.data.loaders import load_plugin

    monkeypatch.setattr(LOADERS, "_entries", dict(LOADERS._entries))  # put back after the test
    LOADERS.add("test_almost_loader", lambda options, ctx: returned(datasets), "test")
    with pytest.raises(UserError, match=says):
        load_plugin(PluginLoader(type="plugin", name="test_almost_loader"), make_ctx("pl"))


def test_a_files_own_source_row_and_label_text_columns_are_kept_in_the_metadata(tmp_path: Path, make_ctx) -> None:
    """They share names with prepared columns and were dropped: a mixed file's "source"
    (which dataset each row came from) was lost. A plugin returning rows a built-in loader
    prepared still gets no copy of those columns in its metadata."""
    from datasets import Dataset

    write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "response": "r", "source": "gsm8k", "row": 7,
                                         "label_text": "easy", "tag": 1}])
    ds = load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx("mine"))
    assert ds["source"] == ["mine"] and ds["row"] == [0]
    assert json.loads(ds["metadata"][0]) == {"source": "gsm8k", "row": 7, "label_text": "easy", "tag": 1}

    def filtering(options: dict, ctx: LoadContext) -> Dataset:
        return load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), ctx)

    LOADERS.add("test_filtering_loader", filtering, "test")
    ds = load_plugin(PluginLoader(type="plugin", name="test_filtering_loader"), make_ctx("wrapped"))
    assert ds["source"] == ["wrapped"]
    assert json.loads(ds["metadata"][0]) == {"source": "gsm8k", "row": 7, "label_text": "easy", "tag": 1}


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_huggingface_data_files_star_star_does_not_follow_a_symlink_loop(tmp_path: Path, make_ctx) -> None:
    """`data_files: [parts/**/*.jsonl]` went round parts/sub/up -> .. as `source_files` did:
    every file was read dozens of times over (the rows repeated), or the glob hung."""
    (tmp_path / "parts" / "sub").mkdir(parents=True)
    write_jsonl(tmp_path / "parts" / "p1.jsonl", qa_rows(3, "a"))
    write_jsonl(tmp_path / "parts" / "sub" / "p2.jsonl", qa_rows(2, "b"))
    (tmp_path / "parts" / "sub" / "up").symlink_to("..", target_is_directory=True)
    options = HuggingFaceLoader(type="huggingface", path="json", data_files=["parts/**/*.jsonl"])
    assert len(load_huggingface(options, make_ctx())) == 5


def test_a_label_of_minus_one_is_noted_as_a_likely_missing_label(tmp_path: Path, make_ctx) -> None:
    """-1 marks a row without a label in many datasets (GLUE's test splits) and was taken
    as a class of its own without a word. It still is (-1 is a class in -1/0/1 sentiment
    data), with a notice counting the rows and saying what to do; -1 and 1 as the only
    labels are two classes, as written, and need no notice."""
    rows = [{"text": "a", "y": 0}, {"text": "b", "y": -1}, {"text": "c", "y": 1}, {"text": "d", "y": "-1"},
            {"text": "e", "y": -1.0}]
    write_jsonl(tmp_path / "c.jsonl", rows)
    options = JsonlLoader(type="jsonl", path="c.jsonl", prompt_field="text", label_field="y")
    ctx = make_ctx(kind="classifier")
    assert load_jsonl(options, ctx)["label_text"] == ["0", "-1", "1", "-1", "-1"]
    (notice,) = ctx.notices
    assert (f"file {tmp_path / 'c.jsonl'}: 3 of 5 rows have -1 as 'y' (loader.label_field) (line 2, line 4, line 5), "
            "taken as a class of its own") in notice
    assert "GLUE" in notice and "drop them" in notice and "\n" not in notice
    write_jsonl(tmp_path / "test.jsonl", [{"text": t, "y": -1} for t in "abcdefg"])
    ctx = make_ctx(kind="classifier")
    load_jsonl(options.model_copy(update={"path": "test.jsonl"}), ctx)
    assert "every row has -1 as 'y' (loader.label_field) (line 1, line 2, line 3, line 4, line 5 (+2 more))" \
        in ctx.notices[0]
    (tmp_path / "pm.csv").write_text("text,y\na,1\nb,-1\nc,1\n")  # -1 and 1: two classes
    ctx = make_ctx(kind="classifier")
    load_csv(CsvLoader(type="csv", path="pm.csv", prompt_field="text", label_field="y"), ctx)
    assert ctx.notices == []


def test_a_data_file_datasets_cannot_read_is_named(tmp_path: Path, make_ctx, capfd) -> None:
    """Parquet files of one dataset with other column types (an int64 answer column, then a
    string one) failed as "DatasetGenerationError: An error occurred while generating the
    dataset (caused by ArrowInvalid: ...)": which file, only datasets' stray log line said,
    printed above the error (it is not printed now)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "pq").mkdir()
    pq.write_table(pa.table({"prompt": ["a", "b"], "response": [1, 2]}), tmp_path / "pq" / "a.parquet")
    pq.write_table(pa.table({"prompt": ["c", "d"], "response": ["x", "y"]}), tmp_path / "pq" / "b.parquet")
    options = HuggingFaceLoader(type="huggingface", path="parquet", data_files=["pq/*.parquet"])
    with pytest.raises(UserError) as caught:
        load_huggingface(options, make_ctx("hf"))
    assert f"split 'train' (reading {tmp_path / 'pq' / 'b.parquet'}): " in str(caught.value), caught.value
    assert "Failed to read file" not in capfd.readouterr().err
    # the json builder's line ("Failed to load JSON from file"), and the parquet builder's ("Failed to read schema")
    write_jsonl(tmp_path / "j.jsonl", qa_rows(3))
    with (tmp_path / "j.jsonl").open("a") as handle:
        handle.write('{"prompt": "q", "response": "a",}\n')
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "pq" / "a.parquet").read_bytes()[:-30])
    for builder, file in (("json", "j.jsonl"), ("parquet", "cut.parquet")):
        with pytest.raises(UserError) as caught:
            load_huggingface(HuggingFaceLoader(type="huggingface", path=builder, data_files=[file]), make_ctx("hf"))
        assert f"split 'train' (reading {tmp_path / file}): " in str(caught.value), caught.value
        assert "Failed to" not in capfd.readouterr().err


def test_a_source_whose_answers_are_mostly_empty_is_told_to_check_its_column(tmp_path: Path, make_ctx) -> None:
    """A source of 50,000 rows whose answers were 90% blank said only that 45,030 rows were
    left out, as for a few blank answers; most of a file blank is more likely the wrong
    column (or answers kept elsewhere) than data to train on."""
    write_jsonl(tmp_path / "most.jsonl", [*qa_rows(1), *({"prompt": "x", "response": " "} for _ in range(3))])
    ctx = make_ctx()
    assert len(load_jsonl(JsonlLoader(type="jsonl", path="most.jsonl"), ctx)) == 1
    assert ctx.notices[0].endswith("they are left out (every row needs a gold response). That is most of its rows: "
                                   "check that the loader reads the right column.")
    write_jsonl(tmp_path / "few.jsonl", [*qa_rows(3), {"prompt": "x", "response": ""}])
    ctx = make_ctx()
    load_jsonl(JsonlLoader(type="jsonl", path="few.jsonl"), ctx)
    assert "most of its rows" not in ctx.notices[0]


def test_a_dotted_prompt_field_reads_a_field_of_a_struct_column(tmp_path: Path, make_ctx) -> None:
    """A struct column as prompt_field was read as its JSON text, and `prompt_field:
    meta.question` was "no column 'meta.question'": a dotted path reads that field (of nested
    structs too), from a save_to_disk folder or JSON Lines objects alike, and validate takes
    it; a part the struct lacks is an error naming its fields, in validate and the data stage."""
    import datasets
    from data_helpers import check_issues

    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    rows = [{"meta": {"question": f"q{i}", "src": {"url": f"u{i}"}}, "answer": f"a{i}"} for i in range(4)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    write_jsonl(tmp_path / "rows.jsonl", rows)
    write_jsonl(tmp_path / "t.jsonl", qa_rows(4))
    spec = ("target: {name: t, loader: {type: jsonl, path: t.jsonl}}\n"
            "sources:\n  - {name: s, loader: {type: huggingface, path: ./saved, prompt_field: meta.question, "
            "response_field: answer}}\n  - {name: j, loader: {type: huggingface, path: json, data_files: [rows.jsonl], "
            "prompt_field: meta.question, response_field: answer}}\n")
    assert check_issues(tmp_path, spec) == {}
    for path, data_files in (("./saved", None), ("json", ["rows.jsonl"])):
        for field, first in (("meta.question", "q0"), ("meta.src.url", "u0")):
            loader = HuggingFaceLoader(type="huggingface", path=path, data_files=data_files, prompt_field=field,
                                       response_field="answer")
            loaded = load_huggingface(loader, make_ctx())
            assert loaded["prompt"][0] == first and loaded["response"][0] == "a0"
            assert json.loads(loaded["metadata"][0])["meta"]["question"] == "q0"  # the struct kept whole
    issues = check_issues(tmp_path, spec.replace("meta.question", "meta.qestion", 1))
    assert set(issues) == {"sources[0].loader.prompt_field"}
    assert issues["sources[0].loader.prompt_field"].message == (
        "'meta.qestion' names a field of a struct column, and the struct column 'meta' has no field 'qestion'; "
        "its fields are 'question', 'src'")
    loader = HuggingFaceLoader(type="huggingface", path="./saved", prompt_field="meta.qestion", response_field="answer")
    with pytest.raises(UserError, match=r"loader.prompt_field 'meta.qestion' names a field of a struct column of "
                                        r"dataset .*, and the struct column 'meta' has no field 'qestion'; its "
                                        r"fields are 'question', 'src'. Set loader.prompt_field to a column, or"):
        load_huggingface(loader, make_ctx())
    loader = HuggingFaceLoader(type="huggingface", path="./saved", prompt_field="answer.x", response_field="answer")
    with pytest.raises(UserError, match="'answer' holds Value values, not a struct"):
        load_huggingface(loader, make_ctx())
    loader = HuggingFaceLoader(type="huggingface", path="./saved", prompt_field="meta.question",
                               response_field="answer", label_field="meta.nope")  # (a causal LM reads no label)
    assert load_huggingface(loader, make_ctx())["prompt"][0] == "q0"


def test_a_jsonl_line_pythons_json_reader_refuses_says_why_not_as_invalid_json(tmp_path: Path, make_ctx) -> None:
    """A whole number of more than 4,300 digits was "invalid JSON (... use
    sys.set_int_max_str_digits() to increase the limit)", advice to Python code; lists nested
    thousands deep (valid JSON) "invalid JSON (maximum recursion depth exceeded ...)"."""
    good = '{"prompt": "q", "response": "a"}\n'
    (tmp_path / "int.jsonl").write_text(good + '{"prompt": "q", "response": ' + "9" * 5000 + "}\n")
    with pytest.raises(UserError, match=r"int\.jsonl, line 2: it holds a whole number of more digits than Python's "
                                        r"JSON reader takes \(4,300\)\. Write that number as a string") as refused:
        load_jsonl(JsonlLoader(type="jsonl", path="int.jsonl"), make_ctx())
    assert "set_int_max_str_digits" not in str(refused.value)
    (tmp_path / "deep.jsonl").write_text(good + '{"prompt": "q", "response": "a", "m": ' + "[" * 100_000
                                         + "]" * 100_000 + "}\n")
    with pytest.raises(UserError, match=r"deep\.jsonl, line 2: its JSON is nested deeper than Python's JSON reader "
                                        r"goes") as refused:
        load_jsonl(JsonlLoader(type="jsonl", path="deep.jsonl"), make_ctx())
    assert "invalid JSON" not in str(refused.value)


def test_a_jsonl_line_that_is_no_object_is_named_in_jsons_words(tmp_path: Path, make_ctx) -> None:
    """A line `null` was "got a JSON NoneType" (Python's name), `"x"` "a JSON str"."""
    from subsetctl.data.checks import _file_head

    for line, kind in (("null", "null"), ('"x"', "string"), ("3.5", "number"), ("true", "boolean")):
        (tmp_path / "d.jsonl").write_text('{"prompt": "q", "response": "a"}\n' + line + "\n")
        with pytest.raises(UserError, match=rf"line 2: expected a JSON object .*got a JSON {kind}\.$"):
            load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), make_ctx())
        (tmp_path / "h.jsonl").write_text(line + "\n")
        _, problem, _ = _file_head(JsonlLoader(type="jsonl", path="h.jsonl"), tmp_path / "h.jsonl")
        assert problem is not None and problem.startswith(f"line 1 is a JSON {kind}, not an object"), problem


def test_a_gzip_compressed_parquet_file_is_told_to_be_decompressed(tmp_path: Path, make_ctx) -> None:
    """data.parquet.gz was "not a Parquet file (Parquet magic bytes not found in footer. Either
    the file is corrupted or this is not a parquet file.)", in validate and the data stage."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    from subsetctl.data.checks import _file_head

    pq.write_table(pa.table({"prompt": ["q"], "response": ["a"]}), tmp_path / "d.parquet")
    (tmp_path / "d.parquet.gz").write_bytes(gzip.compress((tmp_path / "d.parquet").read_bytes()))
    loader = ParquetLoader(type="parquet", path="d.parquet.gz")
    told = ("compressed with gzip, and a Parquet file is read as it is (its data is compressed inside): decompress it "
            "(to d.parquet) and point the spec at that file")
    assert _file_head(loader, tmp_path / "d.parquet.gz") == (None, told, False)
    with pytest.raises(UserError, match=re.escape(f"file {tmp_path / 'd.parquet.gz'} is {told}.")):
        load_parquet(loader, make_ctx())


def test_a_file_gzip_compressed_twice_is_said_to_be(tmp_path: Path, make_ctx) -> None:
    """data.jsonl.gz compressed again (gzip run twice) was "not valid UTF-8 (byte 1, line 1)"
    alone, in validate and the data stage; and is told to be decompressed once, not also to be
    re-saved as UTF-8, which is no fix for it."""
    import gzip

    from subsetctl.data.checks import _file_head

    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(gzip.compress(b'{"prompt": "q", "response": "a"}\n')))
    loader = JsonlLoader(type="jsonl", path="d.jsonl.gz")
    _, problem, _ = _file_head(loader, tmp_path / "d.jsonl.gz")
    said = "its data is gzip-compressed again (compressed twice)): decompress it once (gunzip) and read that file"
    assert problem is not None and problem.endswith(said), problem
    with pytest.raises(UserError) as raised:
        load_jsonl(loader, make_ctx())
    assert str(raised.value).endswith("(compressed twice)). Decompress it once (gunzip) and read that file."), raised.value
    assert "re-save" not in str(raised.value).lower()


@pytest.mark.parametrize("where", [None, {"task": "b"}])
@pytest.mark.parametrize("in_memory", [True, False])
def test_a_csv_file_saved_with_crlf_line_ends_reads_its_cells_as_the_lf_file(
        tmp_path: Path, make_ctx, monkeypatch: pytest.MonkeyPatch, where: dict | None, in_memory: bool) -> None:
    """git's autocrlf and Windows editors turn a multi-line cell's LF into CRLF too: the cell
    was 'q1\\r\\nmore' where the LF file's is 'q1\\nmore', trained on as other text. Every read
    (frames, the records fetched again for max_examples, a ``where``'s records in memory or
    not, their digests) gives the LF file's cells; an LF file's own CR is kept."""
    from subsetctl.data.loaders import files
    from subsetctl.data.loaders.files import value_digests

    if not in_memory:
        monkeypatch.setattr(files, "WHOLE_TEXT_FILE_BYTES", 0)
    lf = 'task,prompt,response\n"a","x\ny",z\n' + "".join(f'b,"q{i}\nmore\n",a{i}\n' for i in range(40))
    (tmp_path / "lf.csv").write_text(lf, newline="")
    (tmp_path / "crlf.csv").write_text(lf.replace("\n", "\r\n"), newline="")
    read = {}
    for name in ("lf", "crlf"):
        for keep in (None, 3):
            ctx = LoadContext(source_name="src", base_dir=tmp_path, kind="causal-lm", seed=0, keep_at_most=keep)
            ds = load_csv(CsvLoader(type="csv", path=f"{name}.csv", where=where), ctx)
            read[name, keep] = list(zip(ds["prompt"], ds["response"]))
    first = [("x\ny", "z"), ("q0\nmore\n", "a0")] if where is None else [("q0\nmore\n", "a0"), ("q1\nmore\n", "a1")]
    assert read["lf", None][:2] == first
    assert read["crlf", None] == read["lf", None] and read["crlf", 3] == read["lf", 3] and len(read["lf", 3]) == 3
    files.release_whole_file()
    loader = CsvLoader(type="csv", path="x.csv")
    assert value_digests(tmp_path / "crlf.csv", "task", loader) == value_digests(tmp_path / "lf.csv", "task", loader)
    (tmp_path / "cr.csv").write_text('prompt,response\n"cr\r\nkept",1\n', newline="")
    assert load_csv(CsvLoader(type="csv", path="cr.csv"), make_ctx())["prompt"] == ["cr\r\nkept"]


def test_a_csv_file_of_mixed_line_ends_has_its_cells_read_as_written(tmp_path: Path, make_ctx) -> None:
    """The header's line end alone decided whether cells' CRLF were read as LF: a CRLF header
    over LF rows changed a cell's CRLF, written so, to LF. Only a file whose every line feed
    follows a carriage return is read so now (one CRLF split between two reads of a MB
    counted); any other keeps its cells as written, and a carriage return alone in a cell is
    kept either way. validate reads the labels and answers alike (:func:`crlf_lines`)."""
    from subsetctl.data.loaders.files import crlf_lines

    files = {"crlf_header": b'prompt,response\r\nq1,"a\r\nb"\nq2,"c\nd"\n',
             "lf_header": b'prompt,response\nq1,"a\r\nb"\r\nq2,c\r\n',
             "cr_cell": b'prompt,response\r\nq1,"a\rb"\r\nq2,"c\r\nd"\r\n'}
    read = {}
    for name, data in files.items():
        (tmp_path / f"{name}.csv").write_bytes(data)
        ds = load_csv(CsvLoader(type="csv", path=f"{name}.csv"), make_ctx())
        read[name] = list(zip(ds["prompt"], ds["response"]))
    assert read == {"crlf_header": [("q1", "a\r\nb"), ("q2", "c\nd")], "lf_header": [("q1", "a\r\nb"), ("q2", "c")],
                    "cr_cell": [("q1", "a\rb"), ("q2", "c\nd")]}
    head = b"prompt,response\r\n"
    split = head + b"q," + b"x" * (2**20 - len(head) - 3) + b"\r\n" + b'q,"a\r\nb"\r\n'  # (the \r is the MB's last byte)
    assert split.index(b"\r\n", len(head)) == 2**20 - 1
    (tmp_path / "split.csv").write_bytes(split)
    (tmp_path / "split_lf.csv").write_bytes(split + b"q,c\n")
    assert crlf_lines(tmp_path / "split.csv") and not crlf_lines(tmp_path / "split_lf.csv")



def _line_end_warnings(tmp_path: Path, target_file: str, source_file: str) -> list[str]:
    """validate's warnings on line ends of a spec whose target reads ``target_file`` and whose
    one source reads ``source_file`` (CSV files in ``tmp_path``)."""
    import yaml

    from subsetctl.api import spec_warnings
    from subsetctl.spec import load_spec

    spec = {"target": {"name": "t", "loader": {"type": "csv", "path": target_file},
                       "split": {"train": 1, "validation": 1, "test": 1}},
            "sources": [{"name": "s", "loader": {"type": "csv", "path": source_file}}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    return [w.message for w in spec_warnings(load_spec(tmp_path / "s.yaml"), tmp_path / "s.yaml")
            if "line end" in w.message]


def test_a_csv_file_of_mixed_line_ends_is_said_with_its_crlf_lines(tmp_path: Path, make_ctx) -> None:
    """A file of mixed line ends kept its cells' CRLF as written, unsaid: the data stage and
    validate say how many lines end with CRLF, the first of them, what it means (rows read
    alike, no cell keeping a trailing CR; a quoted cell's line breaks as written) and the fix;
    a file of CRLF lines alone, or of LF lines alone, is said nothing of."""


    files = {"mixed": b'prompt,response\nq1,"a\r\nb"\r\nq2,r2\r\nq3,"c\nd"\n',
             "crlf": b'prompt,response\r\nq1,"a\r\nb"\r\n', "lf": b'prompt,response\nq1,"a\nb"\n'}
    said = {}
    for name, data in files.items():
        (tmp_path / f"{name}.csv").write_bytes(data)
        ctx = make_ctx(name)
        rows = load_csv(CsvLoader(type="csv", path=f"{name}.csv"), ctx)
        said[name] = [n for n in ctx.notices if "line end" in n]
    assert rows is not None and said["crlf"] == said["lf"] == []
    (notice,) = said["mixed"]
    assert notice.startswith("Source 'mixed': file ") and (
        "mixed.csv: 3 of its 6 lines end with CRLF (the first: line 2), the others with a line feed (LF) alone" in notice)
    assert "no cell keeps a trailing carriage return" in notice and "`dos2unix " in notice
    warned = _line_end_warnings(tmp_path, "mixed.csv", "crlf.csv")
    assert [w.split(": ", 2)[2] for w in warned] == [notice.split(": ", 2)[2]]


def test_mixed_line_ends_are_said_only_where_a_cell_holds_a_line_break(tmp_path: Path, make_ctx) -> None:
    """A CSV file of mixed line ends was warned of although none of its cells spans lines,
    where the line ends change nothing (pandas reads CRLF and LF alike at a row's end): the
    data stage and validate say it only where a quoted cell holds a line break; and of a gzip
    file the fix is `zcat | dos2unix | gzip` (dos2unix does not read one)."""
    import gzip

    files = {"plain.csv": b'prompt,response\r\nq1,r1\nq2,"r, 2"\r\n\nq3,r3\n',
             "cells.csv.gz": gzip.compress(b'prompt,response\r\nq1,"a\nb"\nq2,r2\n')}
    said = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        ctx = make_ctx(name)
        load_csv(CsvLoader(type="csv", path=name), ctx)
        said[name] = [n for n in ctx.notices if "line end" in n]
    assert said["plain.csv"] == [], said
    (notice,) = said["cells.csv.gz"]
    assert "a quoted cell holds a line break" in notice and "| dos2unix | gzip > fixed.csv.gz`" in notice, notice
    warned = _line_end_warnings(tmp_path, "plain.csv", "cells.csv.gz")
    assert len(warned) == 1 and "cells.csv.gz" in warned[0] and "zcat " in warned[0], warned


def test_the_line_ends_of_more_csv_files_than_eight_are_read_once(tmp_path: Path, make_ctx) -> None:
    """A cache of 8 files read a CRLF file through again for each of the fingerprint, the loader
    and validate once a spec had more CSV files than that (a 200 MB one three times, 0.5 s
    each): each file's line ends are read once while it is unchanged, and again once edited."""
    from subsetctl.data.fingerprint import source_fingerprint_inputs
    from subsetctl.data.loaders import files
    from subsetctl.spec import SourceSpec

    sources = []
    for i in range(12):
        (tmp_path / f"s{i}.csv").write_bytes(b'prompt,response\r\nq,"a\r\nb"\r\n')
        sources.append(SourceSpec.model_validate({"name": f"s{i}", "loader": {"type": "csv", "path": f"s{i}.csv"}}))
    files._line_ends.cache_clear()
    for _ in range(2):  # (the fingerprint of every source, then the loader of each: the data stage's order)
        for source in sources:
            assert source_fingerprint_inputs(source, tmp_path)["cells"] == "CRLF as LF"
        for source in sources:
            assert load_csv(source.loader, make_ctx())["response"] == ["a\nb"]
    assert files._line_ends.cache_info().misses == 12
    (tmp_path / "s0.csv").write_bytes(b"prompt,response\nq,a\n")
    assert "cells" not in source_fingerprint_inputs(sources[0], tmp_path)


def test_a_kept_file_notice_in_an_earlier_runs_count_words_is_worded_as_validate_words_it_today(
        tmp_path: Path, make_ctx) -> None:
    """A source reused from a run of the previous subsetctl kept "1 cell(s) hold a NUL byte ...;
    they are read with it", "3 cell(s) hold", "1 of 31 lines are not valid UTF-8 ...; they are
    left out", "1 of its 3 lines end with CRLF": validate now says "1 cell holds", "3 cells hold",
    "is", "ends", and `run` printed the kept words beside validate's, the one problem twice. The
    kept words are brought to today's, as the file's or the source's."""
    from subsetctl.data.loaders import file_notice_worded
    from subsetctl.data.loaders.files import csv_stray_cell_notices, mixed_line_ends_notice

    (tmp_path / "one.csv").write_bytes(b"prompt,response\nq1,a1\nq2,a\x002\n")
    (tmp_path / "three.csv").write_bytes(b"prompt,response\nq\x001,a\x001\nq2,a\x002\n")
    (tmp_path / "crlf.csv").write_bytes(b'prompt,response\r\n"q\n1",a1\nq2,a2\n')  # (a cell spanning lines)
    good = b"".join(b'{"prompt": "q%d", "response": "a"}\n' % i for i in range(30))
    (tmp_path / "one.jsonl").write_bytes(good + b'{"prompt": "x\x81y", "response": "a"}\n')
    ctx = make_ctx()
    load_jsonl(JsonlLoader(type="jsonl", path="one.jsonl"), ctx)
    (one_cell,), (three_cells,) = (csv_stray_cell_notices(tmp_path / f"{n}.csv", ",", "s") for n in ("one", "three"))
    crlf = mixed_line_ends_notice(tmp_path / "crlf.csv", "s")
    earlier = {
        one_cell: one_cell.replace("1 cell holds", "1 cell(s) hold").replace("; the cell is read", "; they are read"),
        three_cells: three_cells.replace("3 cells hold", "3 cell(s) hold"),
        crlf: crlf.replace("lines ends with CRLF", "lines end with CRLF"),
        ctx.notices[0]: ctx.notices[0].replace("lines is not", "lines are not").replace("it is left", "they are left"),
    }
    for today, kept in earlier.items():
        assert kept != today, today
        path = tmp_path / ("one.jsonl" if today is ctx.notices[0] else today.split(": ")[1].rsplit("/", 1)[-1])
        source = ctx.source_name if today is ctx.notices[0] else "s"
        for of_file in (False, True):
            assert (file_notice_worded(kept, source, path, of_file)
                    == file_notice_worded(today, source, path, of_file)), (kept, of_file)


def test_a_notice_on_one_row_agrees_with_its_count(tmp_path: Path, make_ctx) -> None:
    """The notices counting rows said "1 row(s) have ... (first at line 1: ...)" of a single row (answers infinite,
    held as a list or an object, whole numbers stored as floats). Now the count, its verb and "first" agree."""
    (tmp_path / "i.jsonl").write_text('{"prompt": "q", "response": Infinity}\n{"prompt": "q2", "response": "x"}\n')
    ctx = make_ctx()
    load_jsonl(JsonlLoader(type="jsonl", path="i.jsonl"), ctx)
    (notice,) = ctx.notices
    assert "i.jsonl: 1 row has an infinite number (" in notice, notice
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "response": ["x", "y"]}, {"prompt": "b", "response": "z"}])
    ctx = make_ctx()
    load_jsonl(JsonlLoader(type="jsonl", path="d.jsonl"), ctx)
    (notice,) = ctx.notices
    assert re.search(r": 1 row of file \S*d\.jsonl has a list or an object as 'response' \(loader\.response_field\) "
                     r"\(at line 1: ", notice), notice
    pd.DataFrame({"prompt": ["p0", "p1"], "response": [3.0, 0.5]}).to_parquet(tmp_path / "d.parquet")
    ctx = make_ctx("floats")
    load_parquet(ParquetLoader(type="parquet", path="d.parquet"), ctx)
    [notice] = [n for n in ctx.notices if "floating-point" in n]
    assert re.search(r": 1 row of file \S*d\.parquet has a whole number stored as a floating-point number as "
                     r"'response' \(loader\.response_field\) \(at row 1: 3\.0\)", notice), notice
