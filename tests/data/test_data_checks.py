"""check_sources: problems found from the spec alone, with keys and line numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from data_helpers import check_issues, fake_cached_hub_dataset, qa_rows, write_jsonl

from subsetctl.data.checks import LABEL_ROWS_READ
from subsetctl.data.loaders import evals_data_dir
from subsetctl.errors import UserError

GOOD = """\
target:
  name: tgt
  loader:
    type: jsonl
    path: data/t.jsonl
  split: {train: 0.5, validation: 0.25, test: 0.25}
sources:
  - name: rg
    loader:
      type: reasoning_gym
      task: basic_arithmetic
      size: 10
"""


def test_good_spec_has_no_issues(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    assert check_issues(tmp_path, GOOD) == {}


def test_missing_file_has_key_line_and_resolved_path(tmp_path: Path) -> None:
    issues = check_issues(tmp_path, GOOD)
    issue = issues["target.loader.path"]
    assert issue.line == 5
    assert str(tmp_path / "data" / "t.jsonl") in issue.message


def test_a_url_or_a_pattern_as_a_file_loaders_path_is_said_to_be_one(tmp_path: Path) -> None:
    """`path: https://example.com/a.jsonl` was told ".../https:/example.com/a.jsonl does not
    exist" (the slashes collapsed, no word that URLs are not read) and `path: data/*.jsonl`
    "file data/*.jsonl does not exist", with no word of source_files."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    write_jsonl(tmp_path / "data" / "a.jsonl", qa_rows(4))
    spec = GOOD + ("  - {name: web, loader: {type: jsonl, path: 'https://example.com/a.jsonl'}}\n"
                   "  - {name: many, loader: {type: csv, path: 'data/*.jsonl'}}\n")
    issues = check_issues(tmp_path, spec)
    web, many = issues["sources[1].loader.path"].message, issues["sources[2].loader.path"].message
    assert web.startswith("'https://example.com/a.jsonl' is a URL, and the jsonl, csv and parquet loaders read "
                          "local files only"), web
    assert "data_files: [https://example.com/a.jsonl]" in web
    assert many.startswith("'data/*.jsonl' is a file pattern, and loader.path names one file: for one source per "
                           "matching file use a `source_files` group"), many


def test_many_issues(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    text = (
        GOOD.replace("test: 0.25}", "test: 0}")
        + """\
  - name: typo
    loader: {type: reasoning_gym, task: basic_arithmetc}
  - name: badcfg
    loader: {type: reasoning_gym, task: basic_arithmetic, size: 5, config: {bogus: 1}}
    split: {train: 4, validation: 3}
  - name: plug
    loader: {type: plugin, name: no_such_loader}
  - name: nores
    loader: {type: jsonl, path: data/t.jsonl, response_field: null}
  - name: ev
    loader: {type: evals, name: shape_in_shap}
"""
    )
    issues = check_issues(tmp_path, text)
    assert "target.split.test" in issues
    assert "basic_arithmetic" in issues["sources[1].loader.task"].message
    assert issues["sources[1].loader.task"].line == 14
    assert "bogus" in issues["sources[2].loader.config.bogus"].message
    assert "7 examples" in issues["sources[2].split"].message
    assert "no_such_loader" in issues["sources[3].loader.name"].message
    assert "sources[4].loader.response_field" in issues
    if evals_data_dir() is not None:
        assert "shape_in_shape" in issues["sources[5].loader.name"].message
    else:
        assert "sources[5].loader" in issues


def test_classifier_needs_label_field(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    issues = check_issues(tmp_path, "model: {kind: classifier}\n" + GOOD)
    assert "target.loader.label_field" in issues


def test_missing_columns_are_all_found_from_the_files_heads(tmp_path: Path) -> None:
    import pandas as pd

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "data" / "s.csv").write_text("\nquestion;answer\nq;a\n")  # a blank line first, as pandas allows
    pd.DataFrame({"text": ["x"], "gold": ["y"]}).to_parquet(tmp_path / "data" / "s.parquet")
    text = GOOD + """\
  - name: c
    loader: {type: csv, path: data/s.csv, delimiter: ";", prompt_field: question, response_field: reply}
  - name: p
    loader: {type: parquet, path: data/s.parquet, prompt_field: prompt, response_field: gold}
  - name: j
    loader: {type: jsonl, path: data/t.jsonl, prompt_field: q}
"""
    issues = check_issues(tmp_path, text)
    assert set(issues) == {"sources[1].loader.response_field", "sources[2].loader.prompt_field",
                           "sources[3].loader.prompt_field"}
    assert "no column 'reply'" in issues["sources[1].loader.response_field"].message
    assert "'question', 'answer'" in issues["sources[1].loader.response_field"].message
    assert "'text', 'gold'" in issues["sources[2].loader.prompt_field"].message
    assert issues["sources[3].loader.prompt_field"].line == 18  # the loader's line


def test_compressed_files_are_checked_and_non_utf8_is_found_by_validate(tmp_path: Path) -> None:
    """validate read a .jsonl.gz as "can't tell" and a latin-1 file as fine; both failed
    only at the data stage (the first with advice to re-save it as UTF-8)."""
    import gzip

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "data" / "s.jsonl.gz").write_bytes(gzip.compress(b'{"question": "q", "response": "a"}\n'))
    (tmp_path / "data" / "l.jsonl").write_bytes(b'{"prompt": "caf\xe9", "response": "x"}\n')
    text = GOOD + """\
  - name: z
    loader: {type: jsonl, path: data/s.jsonl.gz}
  - name: l
    loader: {type: jsonl, path: data/l.jsonl}
"""
    issues = check_issues(tmp_path, text)
    assert set(issues) == {"sources[1].loader.prompt_field", "sources[2].loader.path"}
    assert "'question', 'response'" in issues["sources[1].loader.prompt_field"].message
    assert "not valid UTF-8" in issues["sources[2].loader.path"].message


def _issues_of_files(tmp_path: Path, kind: str, files: dict[str, bytes]) -> tuple[str, dict]:
    """The spec (GOOD, with a source of loader ``kind`` reading each of ``files``, by name,
    written under data/) and validate's data issues of it."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    text = GOOD
    for name, data in files.items():
        (tmp_path / "data" / f"{name}.{kind}").write_bytes(data)
        text += f"  - name: {name}\n    loader: {{type: {kind}, path: data/{name}.{kind}}}\n"
    return text, check_issues(tmp_path, text)


def test_validate_says_of_jsonl_lines_that_are_not_utf8_what_the_data_stage_does(tmp_path: Path) -> None:
    """Validate refused a file whose first 8 KB held a byte that is not UTF-8, said nothing of
    one further on, and never what the data stage does: a few such lines left out with a
    warning, a Latin-1 line (or many such lines) refusing the file."""
    import yaml

    from subsetctl.api import spec_warnings
    from subsetctl.spec import Spec

    good = b"".join(b'{"prompt": "q%d", "response": "a"}\n' % i for i in range(30))
    text, issues = _issues_of_files(tmp_path, "jsonl", {"few": b'{"prompt": "x\x81y", "response": "a"}\n' + good,
                                                        "latin": good + b'{"prompt": "caf\xe9", "response": "a"}\n'})
    assert set(issues) == {"sources[2].loader.path"}
    assert issues["sources[2].loader.path"].message == (
        "latin.jsonl: not valid UTF-8 (byte 1055, line 31; it reads as Latin-1 (Windows-1252) text there): "
        "re-save it as UTF-8")
    warnings = spec_warnings(Spec.model_validate(yaml.safe_load(text)), tmp_path / "subsetctl.yaml")
    (warning,) = [w for w in warnings if w.key == "sources[1].loader.path"]
    assert warning.message.endswith("few.jsonl: 1 of 31 lines is not valid UTF-8 (line 1; the first at byte 13); "
                                    "it is left out. If the file was saved in another encoding, re-save it as UTF-8.")


def test_validate_finds_a_source_whose_every_answer_is_blank(tmp_path: Path) -> None:
    """A file whose every row's answer is empty or whitespace passed validate, and the data
    stage stopped on it ("is empty in every row"), after the sources before it: validate
    says it now, naming the column and the option; one answer given is no such file."""
    _, issues = _issues_of_files(tmp_path, "csv", {"blank": b'prompt,response\nq1,\nq2, \nq3,""\n',
                                                   "one": b"prompt,response\nq1,\nq2,a\n"})
    assert {key: issue.message for key, issue in issues.items()} == {"sources[1].loader.response_field": (
        "blank.csv: column 'response' is empty in every row (3 rows): the data stage leaves such rows out and "
        "stops on a source left with none. Every row needs a gold response: check that response_field names the "
        "column that holds them, or fill it in")}
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    _, issues = _issues_of_files(jsonl, "jsonl", {"blank": b'{"prompt": "q", "response": " "}\n' * 2})
    assert list(issues) == ["sources[1].loader.response_field"]
    assert issues["sources[1].loader.response_field"].message.startswith("blank.jsonl: column 'response' is empty in every "
                                                                  "row (2 rows)")




def test_every_answer_blank_is_found_past_1000_rows_in_parquet_and_in_a_wheres_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check read JSON Lines and CSV files of at most 1,000 rows (read whole): a larger one,
    a Parquet file and a ``where``'s rows were passed, and the data stage stopped on them. Each
    is looked at now, the answers read as a stream up to the first that is not blank: a large
    file whose first row has its answer is not read further."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from subsetctl.data import checks

    blank_jsonl = b"".join(b'{"prompt": "q%d", "response": " "}\n' % i for i in range(1500))
    blank_csv = b"prompt,response\n" + b"".join(b"q%d,\n" % i for i in range(1500))
    rows = [{"task": "a" if i % 2 else "b", "prompt": f"q{i}", "response": "" if i % 2 else "r"} for i in range(40)]
    for kind, data in (("jsonl", blank_jsonl), ("csv", blank_csv)):
        folder = tmp_path / kind
        folder.mkdir()
        _, issues = _issues_of_files(folder, kind, {"big": data})
        assert issues["sources[1].loader.response_field"].message.startswith(
            f"big.{kind}: column 'response' is empty in every row (1,500 rows)"), issues
    folder = tmp_path / "parquet"
    folder.mkdir()
    (folder / "data").mkdir()
    write_jsonl(folder / "data" / "t.jsonl", qa_rows(4))
    pq.write_table(pa.Table.from_pylist([{"prompt": f"q{i}", "response": ""} for i in range(3)]),
                   folder / "data" / "blank.parquet")
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "tasks.parquet")
    (folder / "data" / "tasks.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "data" / "tasks.csv").write_text("task,prompt,response\n" + "".join(
        f"{row['task']},{row['prompt']},{row['response']}\n" for row in rows))
    text = GOOD + "  - name: blank\n    loader: {type: parquet, path: data/blank.parquet}\n" + "".join(
        f"  - name: {kind}-{task}\n    loader: {{type: {kind}, path: data/tasks.{kind}, where: {{task: {task}}}}}\n"
        for kind in ("parquet", "jsonl", "csv") for task in ("a", "b"))
    issues = check_issues(folder, text)
    assert {key: issue.message.split(": the data stage")[0] for key, issue in issues.items()} == {
        "sources[1].loader.response_field": "blank.parquet: column 'response' is empty in every row (3 rows)",
        "sources[2].loader.response_field": "tasks.parquet: column 'response' is empty in every row (task = 'a') (20 rows)",
        "sources[4].loader.response_field": "tasks.jsonl: column 'response' is empty in every row (task = 'a') (20 rows)",
        "sources[6].loader.response_field": "tasks.csv: column 'response' is empty in every row (task = 'a') (20 rows)"}
    answered = tmp_path / "answered"
    answered.mkdir()
    parsed: list[str] = []
    real = checks.json.loads
    monkeypatch.setattr(checks.json, "loads", lambda line, *a, **k: parsed.append(line) or real(line, *a, **k))
    _, issues = _issues_of_files(answered, "jsonl", {"big": b'{"prompt": "q", "response": "a"}\n' + blank_jsonl})
    assert "sources[1].loader.response_field" not in issues and len(parsed) < 10, len(parsed)

def test_a_parquet_wheres_answers_are_read_a_batch_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The answers of the rows a Parquet file's ``where`` picks are taken LABEL_ROWS_READ at a
    time, up to the first that is not blank, as a whole file's batches are: every picked row's
    answer was made a Python string before the first was looked at (a task of a million rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from subsetctl.data import checks
    from subsetctl.spec.models import ParquetLoader

    picked = 3 * LABEL_ROWS_READ
    path = tmp_path / "tasks.parquet"
    pq.write_table(pa.Table.from_pylist([{"task": "a", "prompt": f"q{i}", "response": "" if i else "r"}
                                         for i in range(picked)] + [{"task": "b", "prompt": "q", "response": ""}]), path)
    taken: list[int] = []
    real = checks._label_column

    class Counted:
        """The answer column, counting the rows each take asks for."""

        def __init__(self, column: Any) -> None:
            self.column = column

        def take(self, rows: Any) -> Any:
            taken.append(len(rows))
            return self.column.take(rows)

    monkeypatch.setattr(checks, "_label_column", lambda *args: Counted(real(*args)))
    loader = ParquetLoader(type="parquet", path=str(path), where={"task": "a"})
    answers = checks._answers(loader, path, "response")
    assert next(answers) == "r" and taken == [LABEL_ROWS_READ]
    assert sum(1 for _ in answers) == picked - 1 and taken == [LABEL_ROWS_READ] * 3


def test_a_wheres_blank_answers_are_found_from_a_listing_kept_before_it_said_them(tmp_path: Path) -> None:
    """A JSON Lines file's ``where`` listing kept in the project's cache by an earlier subsetctl
    held no ``blank`` columns: the blank-answers check of its ``where`` sources was silent until
    the file changed, and the data stage stopped on them. Such a listing is made again."""
    from subsetctl.data.fingerprint import _derived_name, listed_values
    from subsetctl.filehash import hash_cache
    from subsetctl.spec import JsonlLoader

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    rows = [{"task": "a" if i % 2 else "b", "prompt": f"q{i}", "response": "" if i % 2 else "r"} for i in range(40)]
    write_jsonl(tmp_path / "data" / "tasks.jsonl", rows)
    path, loader = tmp_path / "data" / "tasks.jsonl", JsonlLoader(type="jsonl", path="data/tasks.jsonl")
    hash_cache(tmp_path).derived(path, _derived_name("values", "task", loader, path),  # (as kept then)
                                 lambda _: {"values": [["b", 20], ["a", 20]], "left_out": 0})
    text = GOOD + "".join(f"  - name: {task}\n    loader: {{type: jsonl, path: data/tasks.jsonl, where: {{task: {task}}}}}\n"
                          for task in ("a", "b"))
    issues = check_issues(tmp_path, text)
    assert {key: issue.message.split(": the data stage")[0] for key, issue in issues.items()} == {
        "sources[1].loader.response_field": "tasks.jsonl: column 'response' is empty in every row (task = 'a') (20 rows)"}
    assert listed_values(path, "task", loader, tmp_path) == ({"b": 20, "a": 20}, 0)


def test_a_file_read_to_a_line_not_utf8_is_not_called_blank_in_every_row(tmp_path: Path) -> None:
    """A JSON Lines file whose first 400 answers are blank, then a line not UTF-8 (which the
    data stage leaves out), then rows with answers: validate read its rows up to that line,
    past the first block the decoder took, and refused the file as "empty in every row (237
    rows)", though the data stage keeps its 10 answered rows."""
    blank = b"".join(b'{"prompt": "q%d", "response": ""}\n' % i for i in range(400))
    answered = b"".join(b'{"prompt": "p%d", "response": "a"}\n' % i for i in range(10))
    _, issues = _issues_of_files(tmp_path, "jsonl", {"late": blank + b'{"prompt": "x\x81y", "response": "z"}\n'
                                                     + answered})
    assert "sources[1].loader.response_field" not in issues, issues
    also = tmp_path / "also"
    also.mkdir()
    _, issues = _issues_of_files(also, "jsonl", {"late": blank + b'{"prompt": "x\x81y", "response": ""}\n'})
    assert issues["sources[1].loader.response_field"].message.startswith(  # (the line left out is no row)
        "late.jsonl: column 'response' is empty in every row (400 rows)")

def test_validate_finds_a_csv_quote_never_closed(tmp_path: Path) -> None:
    """A stray quote makes the rest of a CSV file one cell, which the data stage refuses
    (pandas: "EOF inside string"); validate, reading the header only, passed the spec. A
    quote inside an unquoted cell (`5" screen`, read as written) and a quoted cell over
    lines are fine."""
    _, issues = _issues_of_files(tmp_path, "csv", {"bad": b'prompt,response\nq1,a1\n"q2,a2\nq3,a3\n',
                                                   "ok": b'prompt,response\n5" screen,a1\n"two\nlines, ""quoted""",a2\n'})
    assert set(issues) == {"sources[1].loader.path"}
    assert issues["sources[1].loader.path"].message == (
        "bad.csv: not valid CSV (EOF inside string starting at line 3: a quoted cell opened there is never closed, "
        "so the rest of the file would be read as that cell). Check the delimiter (loader.delimiter is ',') and the "
        'quoting: close that quote, or double a quote meant inside a cell ("")')


def _few_and_latin(kind: str) -> str:
    """GOOD with two sources of ``kind`` (jsonl, csv) reading data/few.KIND and data/latin.KIND."""
    return GOOD + "".join(f"  - name: {name}\n    loader: {{type: {kind}, path: data/{name}.{kind}}}\n"
                          for name in ("few", "latin"))


def test_validate_says_of_csv_rows_that_are_not_utf8_what_the_data_stage_does(tmp_path: Path) -> None:
    """A CSV file with a row that is not UTF-8 in its head was refused by validate, where the
    data stage leaves such a row out: now a warning, in its words; a Latin-1 row past the
    head is the data stage's error (validate said nothing of it)."""
    import yaml

    from subsetctl.api import spec_warnings
    from subsetctl.spec import Spec

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    good = b"".join(b"q%d,a\n" % i for i in range(30))
    (tmp_path / "data" / "few.csv").write_bytes(b"prompt,response\nx\x81y,a\n" + good)
    (tmp_path / "data" / "latin.csv").write_bytes(b"prompt,response\n" + good * 400 + b"caf\xe9,a\n")
    text = _few_and_latin("csv")
    issues = check_issues(tmp_path, text)
    assert set(issues) == {"sources[2].loader.path"}
    assert issues["sources[2].loader.path"].message.startswith("latin.csv: not valid UTF-8 (byte ")
    assert "it reads as Latin-1 (Windows-1252) text there): re-save it as UTF-8" in issues["sources[2].loader.path"].message
    warnings = spec_warnings(Spec.model_validate(yaml.safe_load(text)), tmp_path / "subsetctl.yaml")
    (warning,) = [w for w in warnings if w.key == "sources[1].loader.path"]
    assert warning.message.endswith("few.csv: 1 of 31 rows is not valid UTF-8 (line 2; the first at byte 17); "
                                    "it is left out. If the file was saved in another encoding, re-save it as UTF-8.")


def test_validate_counts_a_csv_files_rows_not_utf8_as_the_data_stage_does(tmp_path: Path) -> None:
    """validate counted a CSV file's lines for "more than a tenth not UTF-8": one bad row whose
    quoted cell spans five lines was refused (5 of 15 lines), two bad rows among long cells
    left out (2 of 91 lines). It counts rows (records) now, as the data stage does."""
    good = b"".join(b"q%d,a\n" % i for i in range(9))
    long_cells = b"".join(b'"q%d\n' % i + b"l\n" * 9 + b'",a\n' for i in range(8))
    text, issues = _issues_of_files(tmp_path, "csv", {
        "few": b'prompt,response\n"x\x81\nx\x81\nx\x81\nx\x81\nx\x81",a\n' + good,
        "many": b"prompt,response\n" + long_cells + b"x\x81,a\ny\x81,a\n"})
    assert {key: issue.message for key, issue in issues.items()} == {"sources[2].loader.path": (
        "many.csv: not valid UTF-8 (byte 225, line 90): re-save it as UTF-8; 2 of its 10 rows are not UTF-8 "
        "(line 90, line 91)")}
    assert _warning_on(tmp_path, text, "sources[1].loader.path").endswith(
        "few.csv: 1 of 10 rows is not valid UTF-8 (line 2; the first at byte 18); it is left out. If the file "
        "was saved in another encoding, re-save it as UTF-8.")


def _warning_on(tmp_path: Path, text: str, key: str) -> str:
    """The message of the one warning validate gives of spec ``text`` (in ``tmp_path``) on ``key``."""
    import yaml

    from subsetctl.api import spec_warnings
    from subsetctl.spec import Spec

    (warning,) = [w for w in spec_warnings(Spec.model_validate(yaml.safe_load(text)), tmp_path / "subsetctl.yaml")
                  if w.key == key]
    return warning.message


def _large_few_and_latin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, few: bytes,
                         latin: bytes) -> dict:
    """validate's issues of :func:`_few_and_latin`'s spec, data/few.KIND and data/latin.KIND
    holding ``few`` and ``latin``, every file taken for one over LINES_COUNTED_MB."""
    from subsetctl.data import checks

    monkeypatch.setattr(checks, "LINES_COUNTED_MB", 0)  # (every file is "large")
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "data" / f"few.{kind}").write_bytes(few)
    (tmp_path / "data" / f"latin.{kind}").write_bytes(latin)
    return check_issues(tmp_path, _few_and_latin(kind))


def test_validate_of_a_large_jsonl_file_leaves_a_bad_head_line_to_the_data_stage(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON Lines file over LINES_COUNTED_MB with a line that is not UTF-8 in its head was an
    error of validate ("invalid bytes") where the data stage leaves the line out; a Latin-1
    line there is still refused, in the data stage's words."""
    good = b"".join(b'{"prompt": "q%d", "response": "a"}\n' % i for i in range(30))
    issues = _large_few_and_latin(tmp_path, monkeypatch, "jsonl", b'{"prompt": "x\x81y", "response": "a"}\n' + good,
                                  b'{"prompt": "caf\xe9", "response": "a"}\n' + good)
    assert set(issues) == {"sources[2].loader.path"}
    assert issues["sources[2].loader.path"].message == (
        "latin.jsonl: not valid UTF-8 (byte 15, line 1; it reads as Latin-1 (Windows-1252) text there): "
        "re-save it as UTF-8")


def test_validate_of_a_large_csv_file_refuses_a_header_that_is_not_utf8(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A CSV file over LINES_COUNTED_MB whose header is not UTF-8 is refused by the data stage
    (no column could be named): validate read its head, left the header out as a line the
    data stage leaves out, and took the header's escaped bytes for a column's name."""
    good = b"".join(b"q%d,a\n" % i for i in range(30))
    issues = _large_few_and_latin(tmp_path, monkeypatch, "csv", b"pr\x81ompt,response\n" + good,
                                  b"prompt,response\n" + good)
    assert set(issues) == {"sources[1].loader.path"}
    assert issues["sources[1].loader.path"].message == "few.csv: not valid UTF-8 (byte 2, line 1): re-save it as UTF-8"


def test_a_corrupt_gzip_file_is_an_issue_not_an_internal_error(tmp_path: Path) -> None:
    """A gzip file whose deflate data is corrupt (zlib.error, not an OSError) made validate
    fail with an internal error: at its first line, and after a non-UTF-8 first line when
    the file was read again to say where the bad byte is. Then it was said nothing of."""
    import zlib

    def corrupt_gzip(text: bytes) -> bytes:  # the text, then a deflate block of the reserved type
        packer = zlib.compressobj(wbits=-15)
        body = packer.compress(text) + packer.flush(zlib.Z_FULL_FLUSH)
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body + b"\x07"

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "data" / "c.jsonl.gz").write_bytes(corrupt_gzip(b""))
    (tmp_path / "data" / "l.jsonl.gz").write_bytes(corrupt_gzip(b'{"prompt": "caf\xe9", "response": "x"}\n' * 5000))
    text = GOOD + """\
  - name: c
    loader: {type: jsonl, path: data/c.jsonl.gz}
  - name: l
    loader: {type: jsonl, path: data/l.jsonl.gz}
"""
    issues = check_issues(tmp_path, text)
    assert set(issues) == {"sources[1].loader.path", "sources[2].loader.path"}
    assert "c.jsonl.gz: the file is gzip-compressed but cannot be decompressed" in issues["sources[1].loader.path"].message
    assert "not valid UTF-8" in issues["sources[2].loader.path"].message


@pytest.mark.parametrize("name", ["s.jsonl.gz", "s.csv.gz"])
def test_a_gzip_file_cut_short_or_garbage_is_an_issue(tmp_path: Path, name: str) -> None:
    """A .gz file cut in half (its head still decompresses) and random bytes after the gzip
    magic passed validate: only the data stage said the file cannot be decompressed."""
    import gzip
    import random

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    rng = random.Random(0)
    if name.endswith(".jsonl.gz"):
        text = "".join(f'{{"prompt": "q{i} {rng.random()}", "response": "a{i}"}}\n' for i in range(3000))
    else:
        text = "prompt,response\n" + "".join(f"q{i} {rng.random()},a{i}\n" for i in range(3000))
    packed = gzip.compress(text.encode())
    (tmp_path / "data" / name).write_bytes(packed[: len(packed) // 2])
    (tmp_path / "data" / "g.jsonl.gz").write_bytes(b"\x1f\x8b" + rng.randbytes(2000))
    (tmp_path / "data" / "ok.jsonl.gz").write_bytes(gzip.compress(b'{"prompt": "q", "response": "a"}\n'))
    spec = GOOD + f"""\
  - name: cut
    loader: {{type: {name.split('.')[1]}, path: data/{name}}}
  - name: garbage
    loader: {{type: jsonl, path: data/g.jsonl.gz}}
  - name: ok
    loader: {{type: jsonl, path: data/ok.jsonl.gz}}
"""
    issues = check_issues(tmp_path, spec)
    assert set(issues) == {"sources[1].loader.path", "sources[2].loader.path"}
    cut = issues["sources[1].loader.path"].message
    assert cut.startswith(f"{name}: the file is gzip-compressed but cannot be decompressed (Compressed file ended")
    assert "cut short or damaged. Copy it again" in cut
    assert "g.jsonl.gz: the file is gzip-compressed but cannot be decompressed" in issues["sources[2].loader.path"].message


def test_evals_checks_the_default_files_first_sample_for_ideal(tmp_path: Path) -> None:
    if evals_data_dir() is None:
        pytest.skip("needs the evals package (pip install --no-deps evals==3.0.1.post1)")
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    text = GOOD + """\
  - name: ana
    loader: {type: evals, name: anagrams}
  - name: graded
    loader: {type: evals, name: already_said_that}
"""
    issues = check_issues(tmp_path, text)
    assert "sources[1].loader.name" not in issues  # samples.jsonl has ideal answers, fewshot.jsonl sorts first
    message = issues["sources[2].loader.name"].message
    assert "has no 'ideal' answer" in message and "model-graded" in message


def test_evals_first_line_check(tmp_path: Path) -> None:
    from subsetctl.data.checks import _first_object_has_ideal

    write_jsonl(tmp_path / "a.jsonl", [{"input": "x", "ideal": "y"}])
    write_jsonl(tmp_path / "b.jsonl", [{"input": "x"}])
    (tmp_path / "c.jsonl").write_text("\nnot json\n")
    assert _first_object_has_ideal(tmp_path / "a.jsonl")
    assert not _first_object_has_ideal(tmp_path / "b.jsonl")
    assert _first_object_has_ideal(tmp_path / "c.jsonl")  # the data stage explains that one


def test_unknown_reasoning_gym_task_says_how_to_list_tasks(tmp_path: Path) -> None:
    issues = check_issues(tmp_path, GOOD.replace("task: basic_arithmetic", "task: chain_sums"))
    message = issues["sources[0].loader.task"].message
    assert "'chain_sum'" in message and "reasoning_gym.factory.DATASETS" in message


@pytest.mark.parametrize(("path", "local"), [
    ("./data/x", True), ("../x", True), (".hidden", True), ("/abs/x", True), ("~/x", True), (".\\win", True),
    ("train.jsonl", True), ("dir/file.parquet", True),
    ("org/name", False), ("glue", False), ("json", False),
])
def test_looks_local_tells_paths_from_hub_ids(path: str, local: bool) -> None:
    """One rule for validate (a missing local path) and the huggingface loader (no hub
    round trip for a path): a path the loader used to treat as local stays local."""
    from subsetctl.hub import looks_local

    assert looks_local(path) is local


def test_non_utf8_says_where_and_a_tab_delimited_file_gets_a_hint_that_works(tmp_path: Path) -> None:
    """The bad byte was said to be "at the start of the file" (it was on line 2); the hint
    `set loader.delimiter` written as '\\t' in single quotes was refused as two characters."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "data" / "l.csv").write_bytes(b"prompt,response\nabc,d\xe9f\n")
    (tmp_path / "data" / "tab.tsv").write_text("question\treply\nq\ta\n")
    text = GOOD + """\
  - name: l
    loader: {type: csv, path: data/l.csv}
  - name: tab
    loader: {type: csv, path: data/tab.tsv, prompt_field: question, response_field: reply}
"""
    issues = check_issues(tmp_path, text)
    assert "byte 21, line 2" in issues["sources[1].loader.path"].message
    assert 'set loader.delimiter: "\\t"' in issues["sources[2].loader.prompt_field"].message
    for written in ("'\\t'", "tab", '"\\t"'):
        fixed = text.replace("path: data/tab.tsv,", f"path: data/tab.tsv, delimiter: {written},")
        assert "sources[2].loader.prompt_field" not in check_issues(tmp_path, fixed), written


def test_a_folder_a_non_parquet_file_a_missing_local_dataset_and_seed_in_config_are_found(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "folder.jsonl").mkdir()
    (tmp_path / "fake.parquet").write_text('{"prompt": "a", "response": "b"}\n')
    text = GOOD.replace("size: 10", "size: 10\n      config: {seed: 3, size: 4}") + """\
  - name: dir
    loader: {type: jsonl, path: folder.jsonl}
  - name: pq
    loader: {type: parquet, path: fake.parquet}
  - name: hf
    loader: {type: huggingface, path: ./no_such_folder}
"""
    issues = check_issues(tmp_path, text)
    assert set(issues) == {"sources[0].loader.config.seed", "sources[0].loader.config.size", "sources[1].loader.path",
                           "sources[2].loader.path", "sources[3].loader.path"}
    assert issues["sources[0].loader.config.seed"].message == "set seed with loader.seed, not inside loader.config"
    assert issues["sources[0].loader.config.size"].message == "set size with loader.size, not inside loader.config"
    assert issues["sources[1].loader.path"].message == (
        f"{tmp_path / 'folder.jsonl'} is a folder, not a file: point loader.path at the data file itself (a "
        "`source_files` group makes one source per file of a folder; a folder of a dataset loads with "
        "`type: huggingface`)")
    assert issues["sources[2].loader.path"].message.startswith("fake.parquet: not a Parquet file (")
    assert issues["sources[3].loader.path"].message == (f"local dataset path {tmp_path / 'no_such_folder'} "
                                                        "does not exist")
    assert issues["sources[3].loader.path"].line == text.splitlines().index("    loader: {type: huggingface, "
                                                                          "path: ./no_such_folder}") + 1


def test_a_plugin_loader_named_plugin_is_refused_by_validate_as_by_the_data_stage(tmp_path: Path) -> None:
    """`{type: plugin, name: plugin}` validates, then `run` stops at once: "loader.name cannot
    be 'plugin' itself" (load_plugin); validate is there to say it first."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    issues = check_issues(tmp_path, GOOD + "  - name: p\n    loader: {type: plugin, name: plugin}\n")
    assert "'plugin' is the loader type, not a loader" in issues["sources[1].loader.name"].message


def test_a_plugin_loader_naming_a_built_in_has_that_loaders_options_checked_by_validate(tmp_path: Path) -> None:
    """`{type: plugin, name: jsonl, options: {pth: ...}}` passed validate; the data stage
    refused it, in pydantic's words, after preparing the sources before it. Its options
    get the built-in loader's checks, its file's too."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    issues = check_issues(tmp_path, GOOD + "  - name: a\n    loader: {type: plugin, name: jsonl, options: {pth: data/t.jsonl}}\n"
                                     "  - name: b\n    loader: {type: plugin, name: jsonl, options: {path: nope.jsonl}}\n"
                                     "  - name: c\n    loader: {type: plugin, name: jsonl, options: {path: data/t.jsonl}}\n")
    assert sorted(issues) == ["sources[1].loader.options.path", "sources[1].loader.options.pth",
                              "sources[2].loader.options.path"]
    assert issues["sources[1].loader.options.path"].message.startswith(
        "required key is missing (an option of the built-in loader 'jsonl'")
    assert "unknown key" in issues["sources[1].loader.options.pth"].message
    assert "nope.jsonl does not exist" in issues["sources[2].loader.options.path"].message


def test_a_save_to_disk_folders_split_and_columns_are_checked_from_its_metadata(tmp_path: Path) -> None:
    """A DatasetDict without the split asked for, and a saved dataset without the column asked
    for, were found only by the data stage."""
    from datasets import Dataset, DatasetDict

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    rows = Dataset.from_dict({"question": ["q0", "q1"], "answer": ["a0", "a1"]})
    DatasetDict({"train": rows, "test": rows}).save_to_disk(str(tmp_path / "dd"))
    rows.save_to_disk(str(tmp_path / "one"))
    fields = "prompt_field: question, response_field: answer"
    issues = check_issues(tmp_path, GOOD + f"""\
  - {{name: dev, loader: {{type: huggingface, path: dd, split: dev, {fields}}}}}
  - {{name: col, loader: {{type: huggingface, path: dd, split: test, prompt_field: text, response_field: answer}}}}
  - {{name: one, loader: {{type: huggingface, path: one, prompt_field: question, response_field: ans}}}}
  - {{name: good, loader: {{type: huggingface, path: dd, split: test, {fields}}}}}
""")
    assert set(issues) == {"sources[1].loader.split", "sources[2].loader.prompt_field",
                           "sources[3].loader.response_field"}
    assert "splits train, test, not 'dev'" in issues["sources[1].loader.split"].message
    assert "no column 'text'" in issues["sources[2].loader.prompt_field"].message
    assert "no column 'ans' (its features are 'question', 'answer')" in issues["sources[3].loader.response_field"].message


def test_the_files_a_json_csv_or_parquet_builder_reads_are_checked_for_the_columns_asked_for(tmp_path: Path,
                                                                                            make_ctx) -> None:
    """`type: huggingface` with `path: json` (csv, parquet) and local `data_files` got no
    column check: a misspelt prompt_field passed validate and failed in the data stage. The
    files are read as the builder reads them (a JSON array too; globs expanded)."""
    import json

    import pandas as pd

    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    (tmp_path / "data" / "parts").mkdir(parents=True)
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    write_jsonl(tmp_path / "data" / "parts" / "a.jsonl", qa_rows(3))
    write_jsonl(tmp_path / "data" / "parts" / "b.jsonl", qa_rows(3, "r"))
    (tmp_path / "data" / "arr.json").write_text(json.dumps(qa_rows(3), indent=2))
    pd.DataFrame(qa_rows(3)).to_csv(tmp_path / "data" / "s.csv", index=False)
    pd.DataFrame(qa_rows(3)).to_parquet(tmp_path / "data" / "s.parquet", index=False)
    sources = [("json", "data/parts/a.jsonl"), ("json", "data/arr.json"), ("csv", "data/s.csv"),
               ("parquet", "data/s.parquet"), ("json", "data/parts/*.jsonl")]
    good = GOOD + "".join(f"  - {{name: s{i}, loader: {{type: huggingface, path: {builder}, data_files: ['{f}']}}}}\n"
                          for i, (builder, f) in enumerate(sources))
    assert check_issues(tmp_path, good) == {}
    for builder, file in sources:  # (as the data stage reads them)
        loader = HuggingFaceLoader(type="huggingface", path=builder, data_files=[file])
        assert load_huggingface(loader, make_ctx())["prompt"][:2] == ["q0?", "q1?"]
    issues = check_issues(tmp_path, good.replace("data_files:", "prompt_field: promt, data_files:"))
    assert set(issues) == {f"sources[{i}].loader.prompt_field" for i in range(1, 6)}
    message = issues["sources[1].loader.prompt_field"].message
    assert message == (f"data file {tmp_path / 'data' / 'parts' / 'a.jsonl'} has no column 'promt' (its first row has "
                       "'prompt', 'response', 'extra'); did you mean 'prompt'? set prompt_field: \"prompt\", or fix the data")
    assert "no column 'promt' (its first row has 'prompt', 'response', 'extra')" in issues[
        "sources[2].loader.prompt_field"].message
    assert "(its header has 'prompt', 'response', 'extra')" in issues["sources[3].loader.prompt_field"].message
    assert "(its schema has 'prompt', 'response', 'extra')" in issues["sources[4].loader.prompt_field"].message
    assert issues["sources[5].loader.prompt_field"].message.startswith(
        f"each of the 2 data files ({tmp_path / 'data' / 'parts' / 'a.jsonl'}, ...; 2 in all) has no column 'promt' "
        "(their heads have 'prompt', 'response', 'extra')")
    issues = check_issues(tmp_path, good.replace("data_files:", "response_field: answer, data_files:"))
    assert set(issues) == {f"sources[{i}].loader.response_field" for i in range(1, 6)}


def test_a_text_builder_file_read_without_text_field_is_told_to_set_it(tmp_path: Path) -> None:
    """`path: text` (a .txt file, a line a row, as the README shows it) without `text_field`
    passed validate, and the data stage then said "no column 'prompt' ... set
    loader.prompt_field to one of them", though the builder's one column is `text`."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "data" / "notes.txt").write_text("The sum of 1 and 2 is 3.\nThe sum of 2 and 3 is 5.\n")
    loader = "{type: huggingface, path: text, data_files: [data/notes.txt]"
    issues = check_issues(tmp_path, GOOD + f"  - {{name: notes, loader: {loader}}}}}\n")
    assert set(issues) == {"sources[1].loader.response_field"}
    message = issues["sources[1].loader.response_field"].message
    assert "has one column, 'text', and no prompt and response to learn: set text_field: text" in message
    assert check_issues(tmp_path, GOOD + f"  - {{name: notes, loader: {loader}, text_field: text}}}}\n") == {}
    issues = check_issues(tmp_path, GOOD + f"  - {{name: notes, loader: {loader}, text_field: txt}}}}\n")
    assert "no column 'txt' (its first row has 'text')" in issues["sources[1].loader.text_field"].message


def test_a_txt_file_read_as_json_lines_or_csv_is_told_the_plain_text_reader(tmp_path: Path) -> None:
    """A .txt file (a line a row) read with `type: jsonl` was only "not JSON", and read with
    `type: csv` was told to set `text_field` to its first line, which CSV takes for a header
    (so that line would be lost): both now name the loader that reads plain text."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "data" / "notes.txt").write_text("The sum of 1 and 2 is 3.\nThe sum of 2 and 3 is 5.\n")
    issues = check_issues(tmp_path, GOOD + "  - {name: a, loader: {type: jsonl, path: data/notes.txt}}\n"
                                           "  - {name: b, loader: {type: csv, path: data/notes.txt}}\n")
    advice = ("for plain text, a line a row, write loader: {type: huggingface, path: text, "
              "data_files: [data/notes.txt], text_field: text}")
    assert set(issues) == {"sources[1].loader.path", "sources[2].loader.prompt_field",
                           "sources[2].loader.response_field"}
    assert f"notes.txt: its name ends in .txt: {advice}" in issues["sources[1].loader.path"].message
    assert "line 1 is not JSON" in issues["sources[1].loader.path"].message
    message = issues["sources[2].loader.response_field"].message
    assert f"a CSV file's first line is its header, and its name ends in .txt: {advice}" in message
    assert "set text_field: \"The sum" not in message


def test_a_large_json_lines_builder_file_is_checked_from_its_head(tmp_path: Path, monkeypatch) -> None:
    """A JSON Lines file over :data:`LINES_COUNTED_MB` read through `path: json` was taken to
    have every column asked for (it is not read through on each validate), so a misspelt
    response_field passed validate and the data stage said it later. Its first rows are read,
    as for a small file: an answer they lack is missing; a listed prompt column a row may
    leave out is not said missing (as with `type: jsonl`)."""
    from subsetctl.data import checks

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    write_jsonl(tmp_path / "data" / "big.jsonl", qa_rows(1200))
    monkeypatch.setattr(checks, "LINES_COUNTED_MB", 0.01)
    text = GOOD + "  - {name: big, loader: {type: huggingface, path: json, data_files: [data/big.jsonl]}}\n"
    assert check_issues(tmp_path, text) == {}
    issues = check_issues(tmp_path, text.replace("data_files:", "response_field: answer, data_files:"))
    assert set(issues) == {"sources[1].loader.response_field"}
    assert "has no column 'answer' (its first row has 'prompt', 'response', 'extra')" in \
        issues["sources[1].loader.response_field"].message
    assert check_issues(tmp_path, text.replace("data_files:", "prompt_field: [prompt, context], data_files:")) == {}


@pytest.fixture
def offline_datasets_cache(tmp_path: Path, monkeypatch) -> Path:
    """A datasets cache of its own, read offline (HF_DATASETS_OFFLINE), by subsetctl and by
    datasets (which read both when imported); the hub is never asked."""
    import datasets

    cache = tmp_path / "hf-datasets"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


def test_a_cached_hub_datasets_configuration_and_split_are_checked_offline(tmp_path: Path, offline_datasets_cache,
                                                                            make_ctx) -> None:
    """A hub id read from the local datasets cache (offline) got no check of loader.name or
    loader.split: `name: wrong_config` or `split: tset` passed validate and the data stage
    stopped on datasets' "Couldn't find cache for org/qa for config 'wrong_config'". They are
    checked against the metadata datasets keeps with the cached tables, listing the choices,
    as for a local folder; so are the columns."""
    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    fake_cached_hub_dataset(offline_datasets_cache, "org/qa", "main", {"train": qa_rows(5), "test": qa_rows(2)})
    good = GOOD + "  - {name: hub, loader: {type: huggingface, path: org/qa, name: main, split: test}}\n"
    assert check_issues(tmp_path, good) == {}
    loaded = load_huggingface(HuggingFaceLoader(type="huggingface", path="org/qa", name="main", split="test"),
                              make_ctx())  # (as the data stage reads it)
    assert loaded["prompt"] == ["q0?", "q1?"]
    issues = check_issues(tmp_path, good.replace("name: main", "name: wrong_config"))
    assert set(issues) == {"sources[1].loader.name"}
    assert "holds 'org/qa' in the configurations main, not 'wrong_config': set name to one of them" in \
        issues["sources[1].loader.name"].message
    assert "where the hub is reachable with HF_DATASETS_OFFLINE unset (HF_DATASETS_OFFLINE is set)" in \
        issues["sources[1].loader.name"].message  # (the variable is why this cache is all there is)
    issues = check_issues(tmp_path, good.replace("split: test", "split: tset"))
    assert set(issues) == {"sources[1].loader.split"}
    assert "(configuration 'main') with the splits train, test, not 'tset' (did you mean 'test'?); set split to one of them" in \
        issues["sources[1].loader.split"].message
    assert check_issues(tmp_path, good.replace("split: test", "split: all")) == {}  # (every split)
    issues = check_issues(tmp_path, good.replace("split: test", "split: train+all"))  # (datasets: Unknown split "all")
    assert "with the splits train, test, not 'train+all'" in issues["sources[1].loader.split"].message
    issues = check_issues(tmp_path, good.replace("split: test", "split: test, response_field: answer"))
    assert "has no column 'answer' (its features are 'prompt', 'response', 'extra')" in \
        issues["sources[1].loader.response_field"].message
    assert check_issues(tmp_path, good.replace(", name: main", "")) == {}  # one configuration: it is read
    fake_cached_hub_dataset(offline_datasets_cache, "org/qa", "other", {"train": qa_rows(5)})
    issues = check_issues(tmp_path, good.replace(", name: main", ""))
    assert "in the configurations main, other, and loader.name chooses none of them; set name to one of them" in \
        issues["sources[1].loader.name"].message


def test_builder_files_whose_columns_cannot_be_told_here_are_not_said_to_lack_one(tmp_path: Path) -> None:
    """No false alarm: a JSON document holding no list of rows under its one key, a
    pretty-printed one, a column first met in a later row, a remote file, or pandas' name for
    a repeated CSV column are left to the data stage. (A split other than train of a list of
    data_files, once left too, is an issue of its own: they are read as train alone.)"""
    import json

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "data" / "doc.json").write_text(json.dumps({"data": "not rows"}))
    (tmp_path / "data" / "pretty.json").write_text(json.dumps({"data": [1, 2]}, indent=2))
    write_jsonl(tmp_path / "data" / "late.jsonl", [{"prompt": "q", "response": "a"}] * 3 + [
        {"prompt": "q", "response": "a", "context": "c"}])
    (tmp_path / "data" / "twice.csv").write_text("prompt,prompt,response\nq,r,a\n")
    loaders = ["{path: json, data_files: [data/doc.json]}", "{path: json, data_files: [data/pretty.json]}",
               "{path: json, data_files: [data/late.jsonl], prompt_field: [prompt, context]}",
               "{path: json, data_files: ['https://example.com/x.jsonl', data/late.jsonl], prompt_field: promt}",
               "{path: csv, data_files: [data/twice.csv], prompt_field: prompt.1}"]
    text = GOOD + "".join(f"  - {{name: s{i}, loader: {{type: huggingface, {loader[1:]}}}\n"
                          for i, loader in enumerate(loaders))
    assert check_issues(tmp_path, text) == {}


def test_an_archive_of_builder_files_is_left_to_the_data_stage(tmp_path: Path, make_ctx) -> None:
    """`path: csv` with `data_files: [data.tar.gz]`: datasets unpacks the archive and reads the
    CSV files in it, but validate read the tar's own header as the CSV header and said the
    columns were missing ("no column 'prompt' (its first row has '././@PaxHeader...')")."""
    import tarfile

    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "train.csv").write_text("prompt,response\nq0?,a0\nq1?,a1\n")
    for name, mode in (("csvs.tar", "w"), ("csvs.tar.gz", "w:gz")):
        with tarfile.open(tmp_path / "data" / name, mode) as archive:
            archive.add(tmp_path / "train.csv", arcname="train.csv")
    text = GOOD + "".join(f"  - {{name: s{i}, loader: {{type: huggingface, path: csv, data_files: [data/{name}]}}}}\n"
                          for i, name in enumerate(("csvs.tar", "csvs.tar.gz")))
    assert check_issues(tmp_path, text) == {}
    for name in ("csvs.tar", "csvs.tar.gz"):  # (as the data stage reads them)
        loader = HuggingFaceLoader(type="huggingface", path="csv", data_files=[f"data/{name}"])
        assert load_huggingface(loader, make_ctx())["prompt"] == ["q0?", "q1?"]


def test_a_builder_csv_files_lines_of_spaces_before_its_header_are_skipped_as_pandas_does(tmp_path: Path,
                                                                                       make_ctx) -> None:
    """`path: csv` reads its files with pandas, which skips lines of only spaces and tabs
    before the header as it does blank ones; validate took such a line for the header and
    said the columns were missing ("no column 'prompt' (its first row has '   ')")."""
    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "data" / "s.csv").write_text("   \n\t\r\n\nprompt,response\nq0?,a0\nq1?,a1\n", newline="")
    loader = "{type: huggingface, path: csv, data_files: [data/s.csv]}"
    assert check_issues(tmp_path, GOOD + f"  - {{name: s, loader: {loader}}}\n") == {}
    loaded = load_huggingface(HuggingFaceLoader(type="huggingface", path="csv", data_files=["data/s.csv"]), make_ctx())
    assert loaded["prompt"] == ["q0?", "q1?"]  # (as the data stage reads it)
    issues = check_issues(tmp_path, GOOD + f"  - {{name: s, loader: {loader[:-1]}, prompt_field: promt}}}}\n")
    assert "no column 'promt' (its header has 'prompt', 'response')" in issues["sources[1].loader.prompt_field"].message


def test_a_builder_csv_column_is_known_by_the_name_pandas_gives_a_repeated_one(tmp_path: Path, make_ctx) -> None:
    """pandas names the third column of `score,score.1,score` `score.2` (`score.1` is taken);
    validate counted repeats alone, said `score.1` again and refused `label_field: score.2`,
    which the data stage reads."""
    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "data" / "s.csv").write_text("prompt,response,score,score.1,score\nq0?,a0,1,2,3\nq1?,a1,4,5,6\n")
    loader = "{type: huggingface, path: csv, data_files: [data/s.csv], response_field: score.2}"
    assert check_issues(tmp_path, GOOD + f"  - {{name: s, loader: {loader}}}\n") == {}
    loaded = load_huggingface(HuggingFaceLoader(type="huggingface", path="csv", data_files=["data/s.csv"],
                                                response_field="score.2"), make_ctx())
    assert loaded["response"] == ["3", "6"]  # (as the data stage reads it)


@pytest.mark.parametrize(("delimiter", "before", "refused"), [
    (",", "   \n\t\r\n\n", False),  # pandas skips them as blank lines
    ("\t", "  \n", False),
    ("\t", "\t\n", True),  # a tab, the delimiter, makes a row of empty cells: pandas's header
])
def test_a_csv_sources_lines_of_spaces_before_its_header_are_skipped_as_pandas_does(
        tmp_path: Path, make_ctx, delimiter: str, before: str, refused: bool) -> None:
    """A `csv` source is read with pandas, which skips lines of only spaces and tabs before
    the header as blank ones unless the delimiter is among them; validate took such a line
    for the header and said every column was missing ("its first row has '   '")."""
    from subsetctl.data.loaders.files import load_csv
    from subsetctl.spec import CsvLoader

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "data" / "s.csv").write_text(before + f"prompt{delimiter}response\nq0?{delimiter}a0\n", newline="")
    loader = f"{{type: csv, path: data/s.csv, delimiter: {json.dumps(delimiter)}}}"
    issues = check_issues(tmp_path, GOOD + f"  - {{name: s, loader: {loader}}}\n")
    read = CsvLoader(type="csv", path=str(tmp_path / "data" / "s.csv"), delimiter=delimiter)
    if refused:
        assert "sources[1].loader.prompt_field" in issues
        with pytest.raises(UserError):  # (the data stage refuses it too)
            load_csv(read, make_ctx())
    else:
        assert issues == {}
        assert load_csv(read, make_ctx())["prompt"] == ["q0?"]  # (as the data stage reads it)


def test_an_unknown_plugin_loader_is_not_offered_the_plugin_type_itself(tmp_path: Path) -> None:
    """`name: plugn` was asked "did you mean 'plugin'?", and 'plugin' was listed among the
    loaders a plugin loader may name, though naming it is refused."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    issues = check_issues(tmp_path, GOOD + "  - name: p\n    loader: {type: plugin, name: plugn}\n")
    message = issues["sources[1].loader.name"].message
    assert "Unknown loader 'plugn'. Registered loaders: csv, evals, huggingface, jsonl, parquet" in message
    assert "'plugin'" not in message and ", plugin," not in message


#: a classifier spec's head with ``model.num_labels: 2`` and the target
#: :func:`_two_label_target` writes; the sources follow
CLASSIFIER_HEAD = """\
model: {kind: classifier, num_labels: 2}
target:
  name: tgt
  loader: {type: jsonl, path: data/t.jsonl, label_field: label}
sources:
"""


def _two_label_target(tmp_path: Path) -> None:
    """data/t.jsonl: 8 rows whose labels are 'pos' and 'neg', read by CLASSIFIER_HEAD."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", [{"prompt": f"t{i}", "label": ["pos", "neg"][i % 2]} for i in range(8)])


def test_num_labels_counts_the_labels_of_the_targets_test_loader(tmp_path: Path) -> None:
    """The test file's rows are all kept (no draw), so a class only it has needs a head
    output too: validate passed it and the run refused it after the data stage."""
    _two_label_target(tmp_path)
    write_jsonl(tmp_path / "data" / "test.jsonl", [{"prompt": f"x{i}", "label": ["pos", "neu"][i % 2]} for i in range(4)])
    write_jsonl(tmp_path / "data" / "s.jsonl", [{"prompt": f"s{i}", "label": "neg"} for i in range(4)])
    text = CLASSIFIER_HEAD.replace("label_field: label}\n", "label_field: label}\n  split: {train: 0.8, validation: 0.2}\n"
                                   "  test_loader: {type: jsonl, path: data/test.jsonl, label_field: label}\n", 1) + """\
  - name: s
    loader: {type: jsonl, path: data/s.jsonl, label_field: label}
"""
    issues = check_issues(tmp_path, text)
    assert set(issues) == {"model.num_labels"}, issues
    assert "3 labels ('neg', 'neu', 'pos')" in issues["model.num_labels"].message


def test_num_labels_leaves_out_the_labels_a_label_map_drops(tmp_path: Path) -> None:
    """A 3-class source whose label_map drops its neutral rows (``neu: null``) has the
    target's two classes: no num_labels issue (and no crash sorting a None class)."""
    _two_label_target(tmp_path)
    write_jsonl(tmp_path / "data" / "s.jsonl", [{"prompt": f"s{i}", "label": ["pos", "neg", "neu"][i % 3]}
                                                for i in range(6)])
    text = CLASSIFIER_HEAD + """\
  - name: s
    loader: {type: jsonl, path: data/s.jsonl, label_field: label}
    label_map: {neu: null}
"""
    assert check_issues(tmp_path, text) == {}
    issues = check_issues(tmp_path, text.replace("{neu: null}", "{neu: neutral}"))
    assert "3 labels ('neg', 'neutral', 'pos')" in issues["model.num_labels"].message


def test_num_labels_below_the_labels_of_the_files_heads_is_an_issue(tmp_path: Path) -> None:
    """A classifier's `model.num_labels: 2` with three classes in the data passed validate;
    the run refused it only after the data stage, before meta-init."""

    import pyarrow as pa
    import pyarrow.parquet as pq

    _two_label_target(tmp_path)
    (tmp_path / "data" / "s.csv").write_text("prompt,label\n" + "".join(f"s{i}, neg\n" for i in range(4)))
    pq.write_table(pa.table({"prompt": ["p", "q"], "label": ["neu", None]}), tmp_path / "data" / "p.parquet")
    text = CLASSIFIER_HEAD + """\
  - name: s
    loader: {type: csv, path: data/s.csv, label_field: label}
  - name: p
    loader: {type: parquet, path: data/p.parquet, label_field: label}
"""
    issues = check_issues(tmp_path, text)
    assert set(issues) == {"model.num_labels"}
    message = issues["model.num_labels"].message
    assert "is 2, but" in message and "3 labels ('neg', 'neu', 'pos')" in message
    assert "raise model.num_labels to at least 3" in message and "leave it out" in message
    assert issues["model.num_labels"].line == 1
    assert check_issues(tmp_path, text.replace("num_labels: 2", "num_labels: 3")) == {}
    assert check_issues(tmp_path, text.replace(", num_labels: 2", "")) == {}
    (tmp_path / "data" / "p.parquet").unlink()  # only the heads' labels count: 2 is enough for pos and neg
    assert set(check_issues(tmp_path, text)) == {"sources[1].loader.path"}


def test_num_labels_check_counts_the_classes_a_label_map_makes(tmp_path: Path) -> None:
    """A source labelled 0/1 whose label_map renames them to the target's 'neg'/'pos' adds
    no class: counting its file's own labels would refuse a head of 2 that the run sizes so."""
    _two_label_target(tmp_path)
    write_jsonl(tmp_path / "data" / "s.jsonl", [{"prompt": f"s{i}", "label": i % 2} for i in range(4)])
    text = CLASSIFIER_HEAD + """\
  - name: s
    loader: {type: jsonl, path: data/s.jsonl, label_field: label}
    label_map: {0: neg, 1: pos}
"""
    assert check_issues(tmp_path, text) == {}
    issues = check_issues(tmp_path, text.replace("{0: neg, 1: pos}", "{0: neg}"))
    assert "3 labels ('1', 'neg', 'pos')" in issues["model.num_labels"].message


def test_num_labels_check_skips_a_parquet_label_that_is_not_utf8(tmp_path: Path) -> None:
    """A Parquet label column stored as binary with bytes that are not UTF-8 made validate
    fail with an internal error (UnicodeDecodeError) while counting the labels for
    model.num_labels; the data stage names that row, validate counts the other labels."""

    import pyarrow as pa
    import pyarrow.parquet as pq

    _two_label_target(tmp_path)
    labels = pa.array([b"\xff\xfe", b"neu", b"pos"], pa.binary())
    pq.write_table(pa.table({"prompt": ["p", "q", "r"], "label": labels}), tmp_path / "data" / "p.parquet")
    text = CLASSIFIER_HEAD + """\
  - name: p
    loader: {type: parquet, path: data/p.parquet, label_field: label}
"""
    issues = check_issues(tmp_path, text)
    assert set(issues) == {"model.num_labels"}
    assert "3 labels ('neg', 'neu', 'pos')" in issues["model.num_labels"].message
    assert check_issues(tmp_path, text.replace("num_labels: 2", "num_labels: 3")) == {}


def test_num_labels_check_reads_a_crlf_csv_files_labels_as_the_loader(tmp_path: Path) -> None:
    """A CSV file saved with CRLF line ends has its quoted cells' line breaks read as LF by the
    loader; validate's own read kept CRLF, so a label "very\\r\\ngood" was not the label_map's
    "very\\ngood" and made a third class: num_labels 2 refused where the data stage finds 2."""
    _two_label_target(tmp_path)
    (tmp_path / "data" / "c.csv").write_bytes(b'prompt,label\r\np,pos\r\nq,"very\r\ngood"\r\nr,neg\r\n')
    text = CLASSIFIER_HEAD + """\
  - name: c
    loader: {type: csv, path: data/c.csv, label_field: label}
    label_map: {"very\\ngood": pos}
"""
    assert check_issues(tmp_path, text) == {}


def test_num_labels_check_reads_the_last_of_two_parquet_columns_of_one_name_as_the_loader(tmp_path: Path) -> None:
    """A Parquet file with two columns named like loader.label_field: the loader reads the
    last one (a record's), validate read the first, so its labels were another column's
    (here three labels where the data stage finds one: num_labels 2 refused for nothing)."""

    import pyarrow as pa
    import pyarrow.parquet as pq

    _two_label_target(tmp_path)
    table = pa.Table.from_arrays([pa.array(["p", "q", "r"]), pa.array(["x", "y", "z"]), pa.array(["neg"] * 3)],
                                 names=["prompt", "label", "label"])
    pq.write_table(table, tmp_path / "data" / "p.parquet")
    text = CLASSIFIER_HEAD + """\
  - name: p
    loader: {type: parquet, path: data/p.parquet, label_field: label}
"""
    assert check_issues(tmp_path, text) == {}
    table = pa.Table.from_arrays([pa.array(["p", "q", "r"]), pa.array(["neg"] * 3), pa.array(["x", "y", "z"])],
                                 names=["prompt", "label", "label"])
    pq.write_table(table, tmp_path / "data" / "p.parquet")
    issues = check_issues(tmp_path, text)
    assert set(issues) == {"model.num_labels"}
    assert "5 labels ('neg', 'pos', 'x', 'y', 'z')" in issues["model.num_labels"].message


def test_num_labels_check_reads_a_parquet_json_text_label_column_as_the_loader(tmp_path: Path) -> None:
    """datasets 5 writes a label column mixing types (`to_parquet`) as JSON text: the loader
    decodes it ('pos'), validate counted its text ('"pos"', quotes included) as another
    label, so the target's 'pos' and 'neg' and a source's 'pos', 'neg' and 1 were 5 labels
    where the run finds 3, and num_labels 3 was refused."""
    from datasets import Dataset

    _two_label_target(tmp_path)
    Dataset.from_list([{"prompt": f"p{i}", "label": ["pos", "neg", 1][i % 3]} for i in range(6)],
                      on_mixed_types="use_json").to_parquet(tmp_path / "data" / "p.parquet")
    text = CLASSIFIER_HEAD.replace("num_labels: 2", "num_labels: 3") + """\
  - name: p
    loader: {type: parquet, path: data/p.parquet, label_field: label}
"""
    assert check_issues(tmp_path, text) == {}
    issues = check_issues(tmp_path, text.replace("num_labels: 3", "num_labels: 2"))
    assert "3 labels ('1', 'neg', 'pos')" in issues["model.num_labels"].message


@pytest.mark.parametrize("keep", ["max_examples: 3", "split: {train: 3}", "split: {train: 0.2}"])
def test_num_labels_check_leaves_out_a_source_the_run_draws_rows_of(tmp_path: Path, keep: str) -> None:
    """A source that keeps a seeded draw of its rows (max_examples, split counts, a train
    fraction below 1): the run's labels are the drawn rows' only, so a label of the file's
    head that the draw leaves out made validate refuse a num_labels the run accepts."""
    import json

    from subsetctl.data.loaders import sample_order

    _two_label_target(tmp_path)
    kept = set(sample_order(7, 20, 3).tolist()) | set(sample_order(7, 20, None)[:4].tolist())
    rare = min(set(range(20)) - kept)  # a row no draw keeps
    (tmp_path / "data" / "s.jsonl").write_text(
        "".join(json.dumps({"prompt": f"s{i}", "label": "neu" if i == rare else "neg"}) + "\n" for i in range(20)))
    text = CLASSIFIER_HEAD + f"""\
  - name: s
    seed: 7
    {keep}
    loader: {{type: jsonl, path: data/s.jsonl, label_field: label}}
"""
    assert check_issues(tmp_path, text) == {}
    every_row = text.replace(f"    {keep}\n", "")
    assert set(check_issues(tmp_path, every_row)) == {"model.num_labels"}


def test_a_gzip_json_lines_file_is_decompressed_once_for_its_line_count_and_gzip_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate read a gzip-compressed JSON Lines file through twice, once to count its
    lines and once to see that it decompresses to its end (about 1 s each for 64 MB): one
    read says both. A file cut short is still an issue."""
    import gzip
    import random

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    rng = random.Random(0)
    text = "".join(f'{{"prompt": "q{i} {rng.random()}", "response": "a{i}"}}\n' for i in range(20000)).encode()
    (tmp_path / "data" / "s.jsonl.gz").write_bytes(gzip.compress(text))
    read = {"bytes": 0}
    for name in ("read", "read1"):
        original = getattr(gzip.GzipFile, name)

        def counted(self, *args, _original=original):  # type: ignore[no-untyped-def]
            data = _original(self, *args)
            read["bytes"] += len(data)
            return data

        monkeypatch.setattr(gzip.GzipFile, name, counted)
    spec = GOOD + """\
  - name: s
    loader: {type: jsonl, path: data/s.jsonl.gz}
    split: {train: 30000}
"""
    issues = check_issues(tmp_path, spec)
    assert set(issues) == {"sources[1].split"} and "has at most 20000" in issues["sources[1].split"].message
    assert len(text) <= read["bytes"] < 1.5 * len(text)
    packed = gzip.compress(text)
    (tmp_path / "data" / "s.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    issues = check_issues(tmp_path, spec)
    assert set(issues) == {"sources[1].loader.path"}
    assert "cannot be decompressed (Compressed file ended" in issues["sources[1].loader.path"].message


def test_a_plain_local_folder_of_data_files_has_its_columns_checked(tmp_path: Path, make_ctx) -> None:
    """`{type: huggingface, path: ./data/more}` on a folder of CSV (or JSON Lines) files was
    not checked for columns, as a single file is: the data stage said the column was missing.
    The files datasets reads for the split are checked, as it finds them; a folder whose
    files it reads otherwise (a .tsv file's tab) is left to the data stage."""
    import pandas as pd

    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    for name in ("more", "split", "lines", "tabs"):
        (tmp_path / "data" / name).mkdir(parents=True)
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    for part in ("a", "b"):
        pd.DataFrame(qa_rows(3, part)).to_csv(tmp_path / "data" / "more" / f"{part}.csv", index=False)
        write_jsonl(tmp_path / "data" / "lines" / f"{part}.jsonl", qa_rows(3, part))
    pd.DataFrame(qa_rows(3)).to_csv(tmp_path / "data" / "split" / "train.csv", index=False)
    pd.DataFrame(qa_rows(2, "t")).to_csv(tmp_path / "data" / "split" / "test.csv", index=False)  # another split
    pd.DataFrame(qa_rows(3)).to_csv(tmp_path / "data" / "tabs" / "a.tsv", index=False, sep="\t")
    folders = ["./data/more", "./data/split", "./data/lines", "./data/tabs"]
    good = GOOD + "".join(f"  - {{name: s{i}, loader: {{type: huggingface, path: {folder}}}}}\n"
                          for i, folder in enumerate(folders))
    assert check_issues(tmp_path, good) == {}
    loader = HuggingFaceLoader(type="huggingface", path=str(tmp_path / "data" / "split"))
    assert load_huggingface(loader, make_ctx())["prompt"] == ["q0?", "q1?", "q2?"]  # (as the data stage reads it)
    issues = check_issues(tmp_path, good.replace("}}\n", ", response_field: Response}}\n"))
    assert set(issues) == {f"sources[{i}].loader.response_field" for i in range(1, 4)}, issues
    assert issues["sources[1].loader.response_field"].message.startswith(
        f"each of the 2 data files ({tmp_path / 'data' / 'more' / 'a.csv'}, ...; 2 in all) has no column 'Response' "
        "(their heads have 'prompt', 'response', 'extra'); 'response' differs from it only in letter case")
    assert "data file " + str(tmp_path / "data" / "split" / "train.csv") in issues[
        "sources[2].loader.response_field"].message


def test_a_mistyped_column_is_told_the_column_spelled_like_it(tmp_path: Path, make_ctx) -> None:
    """`prompt_field: questoin` on a dataset of 'question' and 'answer' columns listed the
    columns and said to pick one: among a hub dataset's twenty the one a typo meant was left
    to be found. validate and the data stage name it; a name like none of them is told only
    the list, as before."""
    from datasets import Dataset, DatasetDict

    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    rows = Dataset.from_list([{"question": f"q{i}?", "answer": f"a{i}"} for i in range(3)])
    DatasetDict({"train": rows, "test": rows}).save_to_disk(str(tmp_path / "data" / "saved"))
    spec = GOOD + "  - {name: s, loader: {type: huggingface, path: ./data/saved, prompt_field: questoin, " \
                  "response_field: answers}}\n"
    issues = check_issues(tmp_path, spec)
    assert set(issues) == {"sources[1].loader.prompt_field", "sources[1].loader.response_field"}, issues
    assert issues["sources[1].loader.prompt_field"].message.endswith(
        "has no column 'questoin' (its features are 'question', 'answer'); did you mean 'question'? set "
        'prompt_field: "question", or fix the data')
    assert "did you mean 'answer'? set response_field: \"answer\"" in issues["sources[1].loader.response_field"].message
    far = check_issues(tmp_path, spec.replace("questoin", "text").replace("answers", "answer"))
    assert far["sources[1].loader.prompt_field"].message.endswith("set prompt_field to one of them or fix the data")
    loader = HuggingFaceLoader(type="huggingface", path=str(tmp_path / "data" / "saved"), prompt_field="questoin",
                               response_field="answer")
    with pytest.raises(UserError, match=r"has no column 'questoin' \(asked for by loader\.prompt_field\)\. Available "
                                        r"columns: 'answer', 'question'\. Did you mean 'question'\? Set "
                                        r"loader\.prompt_field to one of them"):
        load_huggingface(loader, make_ctx())


def test_a_prompt_completion_file_read_with_the_default_response_field_is_told_completion(
        tmp_path: Path, make_ctx) -> None:
    """A file of `prompt` and `completion` columns (OpenAI's legacy fine-tuning format) read
    with the default response_field was told it "has no column 'response' ... set
    response_field to one of them", as if the loader could not tell which: validate and the
    data stage name 'completion' (and 'question' for a default prompt_field); a column the
    spec names itself is told only a close spelling, as before."""
    from subsetctl.data.loaders.files import load_jsonl
    from subsetctl.spec import JsonlLoader

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    write_jsonl(tmp_path / "data" / "pc.jsonl", [{"prompt": f"{i}+1=", "completion": str(i + 1)} for i in range(4)])
    write_jsonl(tmp_path / "data" / "qa.jsonl", [{"question": f"{i}+1=", "solution": str(i + 1)} for i in range(4)])
    spec = GOOD + ("  - {name: s, loader: {type: jsonl, path: data/pc.jsonl}}\n"
                   "  - {name: q, loader: {type: jsonl, path: data/qa.jsonl}}\n"
                   "  - {name: own, loader: {type: jsonl, path: data/pc.jsonl, response_field: reply}}\n")
    issues = check_issues(tmp_path, spec)
    assert set(issues) == {"sources[1].loader.response_field", "sources[2].loader.prompt_field",
                           "sources[2].loader.response_field", "sources[3].loader.response_field"}, issues
    assert issues["sources[1].loader.response_field"].message.endswith(
        "has no column 'response' (its first row has 'prompt', 'completion'); did you mean 'completion'? set "
        'response_field: "completion", or fix the data')
    assert 'did you mean \'question\'? set prompt_field: "question"' in issues["sources[2].loader.prompt_field"].message
    assert 'set response_field: "solution"' in issues["sources[2].loader.response_field"].message
    assert issues["sources[3].loader.response_field"].message.endswith(
        "set response_field to one of them or fix the data")  # named by the spec: no guess
    loader = JsonlLoader(type="jsonl", path=str(tmp_path / "data" / "pc.jsonl"))
    with pytest.raises(UserError, match=r"has no column 'response' \(asked for by loader\.response_field\)\. "
                                        r"Available columns: 'completion', 'prompt'\. Did you mean 'completion'\?"):
        load_jsonl(loader, make_ctx())


def test_a_default_column_name_written_out_in_the_spec_is_told_no_usual_name(tmp_path: Path, make_ctx) -> None:
    """`response_field: response` written out (the default's name, as the spec names it) was
    told "did you mean 'completion'?" as if left out, though a column the spec names is told
    only a close spelling: the spec's loader tells the two apart (pydantic's model_fields_set),
    in validate and in the data stage alike."""
    from subsetctl.data.loaders.files import load_jsonl
    from subsetctl.spec import JsonlLoader

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    write_jsonl(tmp_path / "data" / "pc.jsonl", [{"query": f"{i}+1=", "completion": str(i + 1)} for i in range(4)])
    spec = GOOD + ("  - {name: s, loader: {type: jsonl, path: data/pc.jsonl, prompt_field: prompt, "
                   "response_field: response}}\n")
    issues = check_issues(tmp_path, spec)
    for option in ("prompt_field", "response_field"):
        message = issues[f"sources[1].loader.{option}"].message
        assert message.endswith(f"set {option} to one of them or fix the data") and "did you mean" not in message
    written = JsonlLoader(type="jsonl", path=str(tmp_path / "data" / "pc.jsonl"), prompt_field="prompt",
                          response_field="response")
    with pytest.raises(UserError, match=r"Set loader\.\w+_field to one of them") as raised:
        load_jsonl(written, make_ctx())
    assert "Did you mean" not in str(raised.value), raised.value
    left_out = JsonlLoader(type="jsonl", path=str(tmp_path / "data" / "pc.jsonl"))
    with pytest.raises(UserError, match=r"Did you mean '(query|completion)'\?"):
        load_jsonl(left_out, make_ctx())


def test_a_usual_answer_column_in_another_letter_case_is_told_by_its_own_name(tmp_path: Path) -> None:
    """A file of `Prompt` and `Answer` columns (a CSV header's capitals) read with the default
    response_field was told only to "set response_field to one of them": the usual answer
    column is matched letter case aside, and named as the file spells it."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    write_jsonl(tmp_path / "data" / "pa.jsonl", [{"Prompt": f"{i}+1=", "Answer": str(i + 1)} for i in range(4)])
    issues = check_issues(tmp_path, GOOD + "  - {name: s, loader: {type: jsonl, path: data/pa.jsonl}}\n")
    assert issues["sources[1].loader.response_field"].message.endswith(
        "did you mean 'Answer'? set response_field: \"Answer\", or fix the data"), issues


def test_a_save_to_disk_folder_load_from_disk_would_refuse_is_told_by_validate_and_the_data_stage(
        tmp_path: Path, make_ctx) -> None:
    """A save_to_disk folder copied without its dataset_info.json, a DatasetDict without a
    split's folder, or features of a type a newer datasets wrote passed validate (unreadable
    metadata was left to the data stage), which then said "datasets.load_dataset could not
    load ...: neither a `Dataset` directory nor a `DatasetDict` directory" and to check
    loader.name and data_files. Each is an issue at loader.path saying what is missing and
    what to do, and the data stage's error says the same of load_from_disk."""
    from datasets import Dataset, DatasetDict

    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    rows = Dataset.from_list(qa_rows(3))
    for name in ("noinfo", "newer"):
        rows.save_to_disk(str(tmp_path / "data" / name))
    DatasetDict({"train": rows, "test": rows}).save_to_disk(str(tmp_path / "data" / "nosplit"))
    (tmp_path / "data" / "noinfo" / "dataset_info.json").unlink()
    shutil.rmtree(tmp_path / "data" / "nosplit" / "train")
    info = json.loads((tmp_path / "data" / "newer" / "dataset_info.json").read_text())
    info["features"]["response"] = {"dtype": "string", "_type": "TextOfTomorrow"}
    (tmp_path / "data" / "newer" / "dataset_info.json").write_text(json.dumps(info))
    names = ("noinfo", "newer", "nosplit")
    spec = GOOD + "".join(f"  - {{name: {n}, loader: {{type: huggingface, path: ./data/{n}}}}}\n" for n in names)
    issues = check_issues(tmp_path, spec)
    assert set(issues) == {f"sources[{i}].loader.path" for i in (1, 2, 3)}, issues
    told = {name: issues[f"sources[{i}].loader.path"].message for i, name in enumerate(names, 1)}
    assert told["noinfo"].endswith("noinfo has no dataset_info.json, which datasets.load_from_disk reads beside the "
                                   "data files: copy the folder whole, or save the dataset again with save_to_disk")
    assert "holds features datasets " in told["newer"] and "(Feature type 'TextOfTomorrow' not found), as a folder " \
        "written by a newer datasets may: upgrade datasets" in told["newer"]
    assert "dataset_dict.json names the split 'train', but it has no folder 'train'" in told["nosplit"]
    for name in names:
        with pytest.raises(UserError) as err:
            load_huggingface(HuggingFaceLoader(type="huggingface", path=f"data/{name}"), make_ctx())
        assert "datasets.load_from_disk could not read" in str(err.value)
        assert told[name] in str(err.value) and "loader.data_files" not in str(err.value)


def test_save_to_disk_metadata_nested_past_pythons_depth_is_told_by_validate_and_the_data_stage(
        tmp_path: Path, make_ctx) -> None:
    """A save_to_disk folder whose state.json, dataset_info.json or dataset_dict.json is
    valid JSON nested past Python's depth (`[[[[...`) was an internal error (RecursionError)
    in validate, plan and the data stage, and a label_map's check of the folder's
    ClassLabel columns: each reader caught only ValueError. It is the issue a folder whose
    metadata is not JSON is, the same in the data stage's error; the fingerprint counts the
    state.json by its bytes."""
    from datasets import Dataset, DatasetDict

    from subsetctl.data.fingerprint import saved_to_disk_fingerprint
    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    rows = Dataset.from_list(qa_rows(3))
    for name in ("state", "info"):
        rows.save_to_disk(str(tmp_path / "data" / name))
    DatasetDict({"train": rows}).save_to_disk(str(tmp_path / "data" / "dict"))
    deep = "[" * 100_000 + "]" * 100_000
    for name, file in (("state", "state.json"), ("info", "dataset_info.json"), ("dict", "dataset_dict.json")):
        (tmp_path / "data" / name / file).write_text(deep)
    names = ("state", "info", "dict")
    spec = GOOD + "".join(f"  - {{name: {n}, label_map: {{'0': x}}, loader: {{type: huggingface, path: ./data/{n}}}}}\n"
                          for n in names)
    issues = check_issues(tmp_path, spec)
    assert set(issues) == {f"sources[{i}].loader.path" for i in (1, 2, 3)}, issues
    told = {name: issues[f"sources[{i}].loader.path"].message for i, name in enumerate(names, 1)}
    for name, file in (("state", "state.json"), ("info", "dataset_info.json"), ("dict", "dataset_dict.json")):
        assert f"cannot be read as JSON ({file} is nested deeper than Python's JSON reader goes" in told[name], told
        assert told[name].endswith("copy the folder whole, or save the dataset again with save_to_disk")
        with pytest.raises(UserError) as err:
            load_huggingface(HuggingFaceLoader(type="huggingface", path=f"data/{name}"), make_ctx())
        assert "datasets.load_from_disk could not read" in str(err.value) and told[name] in str(err.value)
    counted = saved_to_disk_fingerprint(tmp_path / "data" / "state", tmp_path)
    assert "sha256" in counted["files"]["state.json"]


def test_save_to_disk_metadata_that_is_json_but_no_object_is_told_by_validate_and_the_data_stage(
        tmp_path: Path, make_ctx) -> None:
    """A save_to_disk folder whose state.json or dataset_info.json is JSON but not an object
    (`[1]`) was an internal error (AttributeError: 'list' object has no attribute 'items') in
    validate's checks, its label_map warnings and the data stage: it is the folder's issue at
    loader.path, the same in the data stage's error."""
    import yaml
    from datasets import Dataset

    from subsetctl.api import spec_warnings
    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader, Spec

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    rows = Dataset.from_list(qa_rows(3))
    names = {"state": "state.json", "info": "dataset_info.json"}
    for name, file in names.items():
        rows.save_to_disk(str(tmp_path / "data" / name))
        (tmp_path / "data" / name / file).write_text("[1]")
    spec = GOOD + "".join(f"  - {{name: {n}, label_map: {{'0': x}}, loader: {{type: huggingface, path: ./data/{n}}}}}\n"
                          for n in names)
    issues = check_issues(tmp_path, spec)
    assert set(issues) == {"sources[1].loader.path", "sources[2].loader.path"}, issues
    spec_warnings(Spec.model_validate(yaml.safe_load(spec)), tmp_path / "subsetctl.yaml")  # (no internal error)
    for i, (name, file) in enumerate(names.items(), 1):
        told = issues[f"sources[{i}].loader.path"].message
        assert f"{file} is not a JSON object" in told and told.endswith("save the dataset again with save_to_disk")
        with pytest.raises(UserError) as err:
            load_huggingface(HuggingFaceLoader(type="huggingface", path=f"data/{name}"), make_ctx())
        assert "datasets.load_from_disk could not read" in str(err.value) and told in str(err.value)


def test_a_dataset_dict_json_that_is_no_object_listing_splits_is_told_by_validate_and_the_data_stage(
        tmp_path: Path, make_ctx) -> None:
    """A save_to_disk DatasetDict folder whose dataset_dict.json is JSON but not an object
    (`[1]`), or one without "splits", passed validate silently (its reader's TypeError or
    KeyError was caught as metadata left to the data stage): it is the folder's issue at
    loader.path, as other damaged save_to_disk metadata is, the same in the data stage's error."""
    import yaml
    from datasets import Dataset, DatasetDict

    from subsetctl.api import spec_warnings
    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader, Spec

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    rows = Dataset.from_list(qa_rows(3))
    written = {"list": ("[1]", "is not a JSON object"), "nosplits": ('{"other": 1}', 'has no list of "splits"')}
    for name, (text, _) in written.items():
        DatasetDict({"train": rows}).save_to_disk(str(tmp_path / "data" / name))
        (tmp_path / "data" / name / "dataset_dict.json").write_text(text)
    spec = GOOD + "".join(f"  - {{name: {n}, label_map: {{'0': x}}, loader: {{type: huggingface, path: ./data/{n}}}}}\n"
                          for n in written)
    issues = check_issues(tmp_path, spec)
    assert set(issues) == {"sources[1].loader.path", "sources[2].loader.path"}, issues
    spec_warnings(Spec.model_validate(yaml.safe_load(spec)), tmp_path / "subsetctl.yaml")  # (no internal error)
    for i, (name, (_, said)) in enumerate(written.items(), 1):
        told = issues[f"sources[{i}].loader.path"].message
        assert f"dataset_dict.json {said}" in told and told.endswith("save the dataset again with save_to_disk"), told
        with pytest.raises(UserError) as err:
            load_huggingface(HuggingFaceLoader(type="huggingface", path=f"data/{name}"), make_ctx())
        assert "datasets.load_from_disk could not read" in str(err.value) and told in str(err.value)


def test_a_dataset_dicts_split_read_by_default_is_said_in_a_note(tmp_path: Path) -> None:
    """A huggingface loader with no `split` on a DatasetDict folder of train, validation and
    test splits read its train split, which nothing said: a target's own validation and test
    splits were not read (its split settings cut train's rows). A note says so, for the
    target and once for the sources (counting the others); a written `split`, or a dict of
    one split, is not said."""
    import yaml
    from datasets import Dataset, DatasetDict

    from subsetctl.api import validate_spec_file

    rows = Dataset.from_list(qa_rows(8))
    DatasetDict({"train": rows, "validation": rows, "test": rows}).save_to_disk(str(tmp_path / "three"))
    DatasetDict({"train": rows}).save_to_disk(str(tmp_path / "one"))
    read = {"type": "huggingface", "path": "./three"}
    spec = {"target": {"name": "t", "loader": read},
            "sources": [{"name": "a", "loader": read}, {"name": "b", "loader": read},
                        {"name": "c", "loader": {**read, "split": "train"}},
                        {"name": "d", "loader": {"type": "huggingface", "path": "./one"}}]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert report.ok, report.issues
    said = {w.key: w.message for w in report.warnings if "loader.split is not set" in w.message}
    assert set(said) == {"target.loader", "sources[0].loader"}, said
    assert all(w.note for w in report.warnings if w.key in said)
    assert said["target.loader"].startswith(
        f"loader.split is not set, so the target reads the split 'train' of the DatasetDict saved in {tmp_path / 'three'} "
        "(its splits: train, validation, test), and its split settings cut that split's rows")
    assert "source 'a' reads the split 'train'" in said["sources[0].loader"]
    assert "; 1 more source reads a DatasetDict's 'train' split so too (b)." in said["sources[0].loader"]


def test_a_dataset_dicts_split_read_by_default_beside_a_test_loader_is_said_as_it_is(tmp_path: Path) -> None:
    """A target with a test_loader was told that its split settings cut train, validation
    and test, and to add a test_loader: they cut train and validation, and a split the
    test_loader reads is read."""
    import yaml
    from datasets import Dataset, DatasetDict

    from subsetctl.api import validate_spec_file

    rows = Dataset.from_list(qa_rows(8))
    DatasetDict({"train": rows, "validation": rows, "test": rows}).save_to_disk(str(tmp_path / "three"))
    read = {"type": "huggingface", "path": "./three"}
    spec = {"target": {"name": "t", "loader": read, "test_loader": {**read, "split": "test"}},
            "sources": [{"name": n, "loader": {**read, "split": "train"}} for n in ("a", "b")]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert report.ok, report.issues
    (said,) = [w.message for w in report.warnings if "loader.split is not set" in w.message]
    assert said == (
        f"loader.split is not set, so the target reads the split 'train' of the DatasetDict saved in {tmp_path / 'three'} "
        "(its splits: train, validation, test), and its split settings cut that split's rows into train and "
        "validation (its test rows are target.test_loader's): the DatasetDict's validation split is not read. "
        "A note, not a problem (validate passes): write `split: train` to say so."), said


def test_label_map_keys_that_are_class_ids_of_a_classlabel_column_are_warned_of(tmp_path: Path) -> None:
    """A save_to_disk dataset whose answer column is a ClassLabel (ids stored, with names)
    is read as the names: `label_map: {0: negative, 1: positive}` renamed nothing, which
    only the data stage said, after reading every row, without saying why. validate warns,
    naming the names to write; keys that are the names are not warned of."""
    import yaml
    from datasets import ClassLabel, Dataset, Features, Value

    from subsetctl.api import validate_spec_file

    features = Features({"prompt": Value("string"), "response": ClassLabel(names=["neg", "pos"])})
    Dataset.from_dict({"prompt": ["a", "b"], "response": [0, 1]}, features=features).save_to_disk(str(tmp_path / "cls"))
    write_jsonl(tmp_path / "t.jsonl", qa_rows(8))
    read = {"type": "huggingface", "path": "./cls"}
    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
            "sources": [{"name": "ids", "loader": read, "label_map": {0: "negative", 1: "positive"}},
                        {"name": "names", "loader": read, "label_map": {"neg": "negative", "pos": "positive"}}]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert report.ok, report.issues
    said = {w.key: w.message for w in report.warnings if w.key.endswith("label_map")}
    assert set(said) == {"sources[0].label_map"}, said
    assert said["sources[0].label_map"] == (
        f"'0', '1' are class ids of the ClassLabel column 'response' of the dataset saved in {tmp_path / 'cls'}, whose "
        "rows are read as the class names ('neg', 'pos'): such keys rename nothing. Write the names: label_map: "
        '{"neg": "negative", "pos": "positive"}.')


def _issues_with_source(tmp_path: Path, loader: str) -> dict[str, str]:
    """check_issues' messages, by key, for GOOD with a source ``h`` read by ``loader`` (flow YAML)."""
    return {key: issue.message for key, issue in check_issues(tmp_path, GOOD + f"  - {{name: h, loader: {loader}}}\n").items()}


def test_a_local_hub_dataset_copys_configuration_and_split_are_checked(tmp_path: Path) -> None:
    """A hub dataset's local copy (its README.md's `configs:`, as gsm8k's main and socratic)
    passed validate with a configuration it lacks, none chosen of several, or a split the
    configuration lacks: the data stage stopped on datasets' own text ("Config name is
    missing ... `load_dataset('hub', 'main')`"). Each is an issue listing the choices."""
    import pandas as pd

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    hub = tmp_path / "hub"
    for config in ("main", "socratic"):
        (hub / config).mkdir(parents=True)
        for split in ("train", "test"):
            pd.DataFrame(qa_rows(3, split)).to_csv(hub / config / f"{split}-00000.csv", index=False)
    (hub / "README.md").write_text("---\nconfigs:\n" + "".join(
        f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train-*\n"
        f"  - split: test\n    path: {c}/test-*\n" for c in ("main", "socratic")) + "---\n")
    (tmp_path / "plain").mkdir()
    pd.DataFrame(qa_rows(3)).to_csv(tmp_path / "plain" / "a.csv", index=False)

    def issues_of(loader: str) -> dict[str, str]:
        return _issues_with_source(tmp_path, loader)

    assert issues_of("{type: huggingface, path: ./hub, name: socratic, split: test}") == {}
    assert issues_of("{type: huggingface, path: ./hub, name: main, split: 'train[:50%]'}") == {}
    assert issues_of("{type: huggingface, path: ./hub, name: mian}") == {"sources[1].loader.name": (
        f"the dataset in {hub} has no configuration 'mian'; its configurations are main, socratic: set name to "
        "one of them (e.g. name: main)")}
    assert issues_of("{type: huggingface, path: ./hub}") == {"sources[1].loader.name": (
        f"the dataset in {hub} has the configurations main, socratic, and loader.name chooses none of them; "
        "set name to one of them (e.g. name: main)")}
    assert issues_of("{type: huggingface, path: ./hub, name: main, split: validation}") == {"sources[1].loader.split": (
        f"the dataset in {hub} (configuration 'main') has the splits train, test, not 'validation'; set split to "
        "one of them")}
    assert issues_of("{type: huggingface, path: ./plain, split: test}") == {"sources[1].loader.split": (
        f"the dataset in {tmp_path / 'plain'} has the splits train, not 'test'; set split to one of them")}
    assert issues_of("{type: huggingface, path: ./plain, name: main}") == {"sources[1].loader.name": (
        f"the dataset in {tmp_path / 'plain'} has one configuration, not 'main' (its data files, read as they "
        "are): leave loader.name out")}

def test_a_mistyped_huggingface_split_is_found_by_validate_with_the_one_meant(tmp_path: Path) -> None:
    """`split: tran` on a file builder's list of data_files (read as one split, train) passed
    validate, and the data stage stopped on datasets' `ValueError: Unknown split "tran".
    Should be one of ['train'].`; a local folder's or a saved DatasetDict's split was said
    wrong at validate without the one likely meant. `split: all` is every split (train; a
    folder's train and test), as load_dataset reads it: a folder's was refused."""
    from datasets import Dataset, DatasetDict

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "plain").mkdir()
    write_jsonl(tmp_path / "plain" / "train.jsonl", qa_rows(3))
    write_jsonl(tmp_path / "plain" / "test.jsonl", qa_rows(3))
    DatasetDict({"train": Dataset.from_list(qa_rows(2)), "validation": Dataset.from_list(qa_rows(2))}).save_to_disk(
        str(tmp_path / "saved"))

    expected = {
        "{type: huggingface, path: json, data_files: [data/t.jsonl], split: tran}": (
            "data_files (a list) are read as one split, train, not 'tran' (did you mean 'train'?), whatever their "
            "files hold: write split: train or leave split out (train is the default), and list in data_files the "
            "files to read"),
        "{type: huggingface, path: json, data_files: [data/t.jsonl], split: 'train[:50%]'}": None,
        "{type: huggingface, path: json, data_files: [data/t.jsonl], split: all}": None,  # (datasets reads train)
        "{type: huggingface, path: ./plain, split: all}": None,  # (every split: train and test, as datasets reads it)
        "{type: huggingface, path: ./plain, split: 'all[:50%]'}": (  # (datasets reads exactly "all" alone as every split)
            f"the dataset in {tmp_path / 'plain'} has the splits train, test, not 'all'; set split to one of them"),
        "{type: huggingface, path: ./plain, split: tset}": (
            f"the dataset in {tmp_path / 'plain'} has the splits train, test, not 'tset' (did you mean 'test'?); set "
            "split to one of them"),
        "{type: huggingface, path: ./saved, split: Validation}": (
            f"the DatasetDict saved in {tmp_path / 'saved'} has the splits train, validation, not 'Validation' (did "
            "you mean 'validation'?); set split to one of them"),
    }
    for loader, message in expected.items():
        said = _issues_with_source(tmp_path, loader)
        assert said == ({"sources[1].loader.split": message} if message else {}), (loader, said)


def test_a_missing_column_names_the_loader_setting_that_reads_the_file_as_it_is(tmp_path: Path) -> None:
    """A new user's own files read with the default columns: a chat a row (a `messages`
    column) was told to set prompt_field to 'messages'; a tab-separated file read by the
    huggingface loader, which has no delimiter option, was told to set prompt_field; a
    text-only file was told to set response_field to 'text', which validate then refuses
    (the prompt's column); a classifier's label column given as response_field was told
    only to name it with label_field. Each now says what to write, and what it says works."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    write_jsonl(tmp_path / "data" / "chat.jsonl", [{"messages": [{"role": "user", "content": "2+2?"},
                                                                {"role": "assistant", "content": "4"}]}])
    write_jsonl(tmp_path / "data" / "text.jsonl", [{"text": "The cat sat."}])
    (tmp_path / "data" / "tab.tsv").write_text("question\treply\nq\ta\n")
    text = GOOD + """\
  - name: chat
    loader: {type: jsonl, path: data/chat.jsonl}
  - name: tab
    loader: {type: huggingface, path: csv, data_files: [data/tab.tsv], prompt_field: question, response_field: reply}
  - name: text
    loader: {type: jsonl, path: data/text.jsonl, prompt_field: text}
"""
    issues = check_issues(tmp_path, text)
    for key in ("prompt_field", "response_field"):
        assert "read it with loader.messages_field: messages" in issues[f"sources[1].loader.{key}"].message
    assert 'loader: {type: csv, delimiter: "\\t"}' in issues["sources[2].loader.prompt_field"].message
    assert "has one column, 'text', and no prompt and response to learn: set text_field: text" in issues[
        "sources[3].loader.response_field"].message
    fixed = (text.replace("path: data/chat.jsonl}", "path: data/chat.jsonl, messages_field: messages}")
             .replace("type: huggingface, path: csv, data_files: [data/tab.tsv],",
                      'type: csv, delimiter: "\\t", path: data/tab.tsv,')
             .replace("path: data/text.jsonl, prompt_field: text}", "path: data/text.jsonl, text_field: text}"))
    assert list(check_issues(tmp_path, fixed)) == []
    classifier = "model: {kind: classifier}\n" + GOOD.replace("path: data/t.jsonl", "path: data/t.jsonl\n    response_field: response")
    assert "(label_field: response, if the column" in check_issues(tmp_path, classifier)["target.loader.label_field"].message


def test_a_dotted_path_given_to_the_jsonl_or_parquet_loader_says_the_huggingface_loader_reads_it(
        tmp_path: Path) -> None:
    """README: a column option names a struct column's field as a dotted path with the
    huggingface loader, "the other loaders read column names only". The jsonl loader given
    `prompt_field: meta.question` on a file whose one column is `meta` was told to set
    `text_field: meta`, which trains on the struct's JSON text; it is now told which loader
    reads the field, and that loader's spec passes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    rows = [{"meta": {"question": f"q{i}", "answer": f"a{i}"}} for i in range(4)]
    write_jsonl(tmp_path / "data" / "nested.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "nested.parquet")
    text = GOOD + """\
  - name: nested
    loader: {type: jsonl, path: data/nested.jsonl, prompt_field: meta.question, response_field: meta.answer}
  - name: nested_pq
    loader: {type: parquet, path: data/nested.parquet, prompt_field: meta.question, response_field: meta.answer}
"""
    issues = check_issues(tmp_path, text)
    for i, loader, builder, file in ((1, "jsonl", "json", "data/nested.jsonl"),
                                     (2, "parquet", "parquet", "data/nested.parquet")):
        for key in ("prompt_field", "response_field"):
            message = issues[f"sources[{i}].loader.{key}"].message
            assert f"'meta' is a column: the {loader} loader reads column names only" in message, message
            assert f'{{type: huggingface, path: {builder}, data_files: ["{file}"], ...}}' in message, message
            assert "text_field" not in message, message
    fixed = (text.replace("{type: jsonl, path: data/nested.jsonl,",
                          "{type: huggingface, path: json, data_files: [data/nested.jsonl],")
             .replace("{type: parquet, path: data/nested.parquet,",
                      "{type: huggingface, path: parquet, data_files: [data/nested.parquet],"))
    assert list(check_issues(tmp_path, fixed)) == []


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_document_holding_its_rows_under_a_key_is_said_with_how_to_make_them_rows(
        tmp_path: Path, indent: int | None) -> None:
    """A JSON file that is one object holding its rows under a key (SQuAD's
    `{"version": ..., "data": [...]}`) passed validate as a `huggingface` json source (one
    key, or pretty-printed) and then failed the data stage with "Available columns: 'data'",
    which no loader option fixes; as a `jsonl` source it was told to set prompt_field to
    'data'. Each now says the rows are under 'data' and how to write them as rows."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    for name, document in (("one", {"data": qa_rows(3)}), ("two", {"version": 1, "data": qa_rows(3)})):
        (tmp_path / "data" / f"{name}.json").write_text(json.dumps(document, indent=indent))
    text = GOOD + "".join(f"  - {{name: {name}, loader: {{type: {loader}}}}}\n" for name, loader in (
        ("a", "huggingface, path: json, data_files: [data/one.json]"),
        ("b", "huggingface, path: json, data_files: [data/two.json]"),
        ("c", "jsonl, path: data/one.json"), ("d", "jsonl, path: data/two.json")))
    issues = check_issues(tmp_path, text)
    for i, name in ((1, "one"), (2, "two")) + (((3, "one"), (4, "two")) if indent is None else ()):
        message = issues[f"sources[{i}].loader.prompt_field"].message
        assert "holding its 3 rows under 'data'" in message and f"jq -c '.data[]' {name}.json" in message, message
        assert "set prompt_field to one of them" not in message
    for i, name in ((3, "one"), (4, "two")) if indent else ():  # pretty-printed, read as JSON Lines
        message = issues[f"sources[{i}].loader.path"].message
        assert "pretty-printed" in message and f"jq -c '.data[]' {name}.json" in message, message


def test_the_jq_command_for_rows_under_a_key_runs_as_shown_for_any_file_and_key() -> None:
    """The advice's `jq` command pasted the file names in bare and the key after a dot: for
    `my data.json`, or rows under 'my rows', the command shown failed (or wrote elsewhere)."""
    from subsetctl.data.loaders import jq_rows_command

    assert jq_rows_command("squad.json", "data") == "jq -c '.data[]' squad.json > squad.jsonl"
    assert jq_rows_command("alpaca.json") == "jq -c '.[]' alpaca.json > alpaca.jsonl"
    assert jq_rows_command("my data.json", "my rows") == \
        """jq -c '.["my rows"][]' 'my data.json' > 'my data.jsonl'"""


def test_a_document_with_rows_under_a_key_names_a_jq_command_quoted_for_the_shell(tmp_path: Path) -> None:
    """validate's advice for `{"my rows": [...]}` in `my data.json` gives a command that runs as shown."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "data" / "my data.json").write_text(json.dumps({"my rows": qa_rows(3)}))
    issues = check_issues(tmp_path, GOOD + "  - {name: a, loader: {type: jsonl, path: data/my data.json}}\n")
    message = issues["sources[1].loader.prompt_field"].message
    assert """`jq -c '.["my rows"][]' 'my data.json' > 'my data.jsonl'`""" in message, message


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "csv"])
def test_num_labels_check_reads_a_where_sources_own_rows(tmp_path: Path, kind: str) -> None:
    """A source reading one task of a file (``where``) had the file's first rows'
    labels counted, another task's: a head of 2 refused for labels only that task has, and
    a third label of its own, past the file's first rows, not seen."""
    import pandas as pd

    _two_label_target(tmp_path)
    rows = ([{"task": "other", "prompt": f"o{i}", "label": f"l{i % 5}"} for i in range(LABEL_ROWS_READ)]
            + [{"task": "mine", "prompt": f"m{i}", "label": ["pos", "neg"][i % 2]} for i in range(6)])
    path = tmp_path / "data" / f"tasks.{kind}"

    def write() -> None:
        frame = pd.DataFrame(rows)
        if kind == "parquet":
            frame.to_parquet(path)
        elif kind == "jsonl":
            frame.to_json(path, orient="records", lines=True)
        else:
            frame.to_csv(path, index=False)

    write()
    text = CLASSIFIER_HEAD + f"""\
  - name: mine
    loader: {{type: {kind}, path: data/tasks.{kind}, label_field: label, where: {{task: mine}}}}
"""
    assert check_issues(tmp_path, text) == {}
    rows[-1]["label"] = "neu"
    write()
    issues = check_issues(tmp_path, text)
    assert "3 labels ('neg', 'neu', 'pos')" in issues["model.num_labels"].message


def test_max_examples_above_the_rows_a_file_holds_is_said_once_as_a_note_validate_passes(tmp_path: Path) -> None:
    """A max_examples above the rows of a JSON Lines or Parquet file (of its `where` value's)
    cuts nothing: said once, naming the source, the rows and the setting, and validate still
    passes (there is no strict mode); one below them, or a file whose rows are not counted
    cheaply (CSV), is not said."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    from subsetctl.api import validate_spec_file

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(8))
    write_jsonl(tmp_path / "data" / "s.jsonl", qa_rows(3))
    pq.write_table(pa.Table.from_pylist([{"task": t, **row} for t in ("a", "b") for row in qa_rows(4)]),
                   tmp_path / "data" / "m.parquet")
    (tmp_path / "data" / "c.csv").write_text("prompt,response\nq,a\n")
    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "data/t.jsonl"}, "max_examples": 8},
            "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "data/s.jsonl"}, "max_examples": 50},
                        {"name": "m", "loader": {"type": "parquet", "path": "data/m.parquet", "where": {"task": "a"}},
                         "max_examples": 5},
                        {"name": "c", "loader": {"type": "csv", "path": "data/c.csv"}, "max_examples": 9}]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert report.ok, report.issues
    said = {w.key: w.message for w in report.warnings if "max_examples" in w.key}
    assert set(said) == {"sources[0].max_examples", "sources[1].max_examples"}, said
    assert said["sources[0].max_examples"].startswith(
        f"max_examples is 50, more than source 's' can keep (file {tmp_path / 'data' / 's.jsonl'} has 3 non-blank "
        "lines): every row is kept and it cuts none. A note, not a problem (validate passes)")
    assert "source 'm' can keep (file" in said["sources[1].max_examples"] and "(task = 'a') has 4 rows)" in \
        said["sources[1].max_examples"]
    # a note, printed so (it printed "warning:"), and not a warning of `run` (a stage's results record those)
    assert all(w.note for w in report.warnings if "max_examples" in w.key)
    from click.testing import CliRunner

    from subsetctl.api import load_project
    from subsetctl.cli import main
    from subsetctl.reporter import SilentReporter

    printed = CliRunner().invoke(main, ["validate", str(tmp_path)]).output
    assert "  note: " in printed and "max_examples is 50" in printed and "warning:" not in printed, printed
    (listed,) = json.loads(CliRunner().invoke(main, ["validate", "--format", "json", str(tmp_path)]).output)
    assert [w.get("note") for w in listed["warnings"]] == [True, True] and listed["validate_format"] == 2
    reporter = SilentReporter()
    load_project(tmp_path, reporter=reporter)
    assert reporter.warnings == [] and any(m.startswith("note: ") and "max_examples is 50" in m
                                           for m in reporter.messages), reporter.messages


def test_validate_checks_the_local_files_of_a_huggingface_file_builder(tmp_path: Path) -> None:
    """`path: json` (csv, parquet) with a data file that is a folder, empty, or a Parquet file
    cut short passed validate; the data stage then stopped on the builder's words ("Unable
    to find x.csv", "StopIteration", "Parquet magic bytes not found in footer")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "empty.jsonl").write_text("")
    pq.write_table(pa.table({"prompt": ["q"] * 50, "response": ["a"] * 50}), tmp_path / "whole.parquet")
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "whole.parquet").read_bytes()[:-30])

    def issues(builder: str, file: str) -> list[tuple[str, str]]:
        loader = json.dumps({"type": "huggingface", "path": builder, "data_files": [file]})
        return [(key, issue.message) for key, issue in check_issues(
            tmp_path, "target:\n  name: t\n  loader: {type: jsonl, path: data/t.jsonl}\n"
                      f"sources:\n  - name: s\n    loader: {loader}\n").items()]

    key = "sources[0].loader.data_files[0]"
    assert issues("csv", "dir.csv") == [(key, (f"data file {tmp_path / 'dir.csv'} is a folder, not a file: the csv "
                                              "builder reads files (list the folder's files, or a glob of them)"))]
    assert issues("json", "empty.jsonl") == [(key, (f"data file {tmp_path / 'empty.jsonl'} is empty (no line of "
                                                   "text): give at least one example"))]
    ((_, message),) = issues("parquet", "cut.parquet")
    assert message.startswith("cut.parquet: not a Parquet file (Parquet magic bytes not found"), message
    assert issues("parquet", "whole.parquet") == []


def test_validate_reads_each_small_source_file_from_disk_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate looks at each source file several times (its head, its lines counted, its
    answers, its lines not UTF-8), most opening it twice: ten opens a file, 100,000 for 10,000.
    A small file is read once a validation (:func:`files_read_once`), the same issues found;
    one edited since is read again."""
    import builtins

    from subsetctl.api import validate_spec_file

    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(8))
    write_jsonl(tmp_path / "data" / "a.jsonl", qa_rows(6))
    write_jsonl(tmp_path / "data" / "b.jsonl", [{"prompt": "q", "response": " "}] * 3)  # (every answer blank)
    spec = tmp_path / "subsetctl.yaml"
    spec.write_text(GOOD.replace("sources:\n", "sources:\n  - name: a\n    loader: {type: jsonl, path: data/a.jsonl}\n"
                                 "  - name: b\n    loader: {type: jsonl, path: data/b.jsonl}\n"))
    opened: dict[str, int] = {}
    original = builtins.open

    def counted(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(file).startswith(str(tmp_path / "data")):
            opened[Path(file).name] = opened.get(Path(file).name, 0) + 1
        return original(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counted)
    report = validate_spec_file(spec)
    assert opened == {"t.jsonl": 1, "a.jsonl": 1, "b.jsonl": 1}
    assert [issue.key for issue in report.issues] == ["sources[1].loader.response_field"]
    assert "is empty in every row" in report.issues[0].message
    from subsetctl.data.loaders.files import files_read_once, open_decompressed

    with files_read_once():
        first = open_decompressed(tmp_path / "data" / "a.jsonl").read()
        write_jsonl(tmp_path / "data" / "a.jsonl", qa_rows(7))
        assert open_decompressed(tmp_path / "data" / "a.jsonl").read() != first


def test_a_data_path_is_made_once_and_one_with_a_tilde_follows_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate's checks and warnings resolve each source's path about ten times (20,000 paths
    made for 2,000 sources): a path without ``~`` is made once per spec folder; one with ``~``
    is expanded each time, against the home of the moment."""
    from subsetctl.data.loaders import resolve_path

    assert resolve_path("data/a.jsonl", tmp_path) is resolve_path("data/a.jsonl", tmp_path)
    assert resolve_path("data/a.jsonl", tmp_path) == tmp_path / "data" / "a.jsonl"
    assert resolve_path("data/a.jsonl", tmp_path / "other") == tmp_path / "other" / "data" / "a.jsonl"
    assert resolve_path(str(tmp_path / "b.jsonl"), Path("/elsewhere")) == tmp_path / "b.jsonl"
    monkeypatch.setenv("HOME", str(tmp_path / "one"))
    assert resolve_path("~/a.jsonl", tmp_path) == tmp_path / "one" / "a.jsonl"
    monkeypatch.setenv("HOME", str(tmp_path / "two"))
    assert resolve_path("~/a.jsonl", tmp_path) == tmp_path / "two" / "a.jsonl"


def test_validate_works_out_the_files_it_reads_through_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files validate reads through (:func:`files_read_through`: each source's path and
    size looked up) were worked out three times a validation, by the checks and two warnings:
    once now, the same answer kept to the validation's end; outside one, afresh each time."""
    from subsetctl.api import validate_spec_file
    from subsetctl.data import checks
    from subsetctl.spec import Spec

    write_jsonl(tmp_path / "t.jsonl", qa_rows(8))
    write_jsonl(tmp_path / "a.jsonl", qa_rows(6))
    text = GOOD.replace("sources:\n", "sources:\n  - name: a\n    loader: {type: jsonl, path: a.jsonl}\n    max_examples: 9\n")
    (tmp_path / "subsetctl.yaml").write_text(text.replace("data/t.jsonl", "t.jsonl"))
    looked_up: list[str] = []
    listed = checks._files_validate_reads

    def counted(spec: Spec, base_dir: Path):  # type: ignore[no-untyped-def]
        looked_up.append(spec.target.name)
        return listed(spec, base_dir)

    monkeypatch.setattr(checks, "_files_validate_reads", counted)
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert report.ok, report.issues
    assert any("max_examples" in w.key for w in report.warnings), report.warnings  # (one of the warnings that ask)
    assert len(looked_up) == 1
    assert report.spec is not None
    granted = checks.files_read_through(report.spec, tmp_path)[0]
    assert granted == {tmp_path / "t.jsonl", tmp_path / "a.jsonl"}
    assert checks.files_read_through(report.spec, tmp_path)[0] is not granted and len(looked_up) == 3


def test_validate_says_the_label_map_typos_the_data_stage_warns_of(tmp_path: Path, monkeypatch: Any) -> None:
    """A classifier's label_map key that no label in the data is ('entailement'), and a source
    label the target lacks that the map leaves out, were warned of by the data stage only,
    minutes into a run: validate says them in the data stage's words, once, from the labels
    the loader reads in the first rows; where rows are left unread it says so (a later row
    may have the key), and takes no first rows for all the target's classes."""
    import yaml

    from subsetctl import spec_checks
    from subsetctl.api import validate_spec_file
    from subsetctl.spec import Spec

    write_jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "y": ["neg", "pos"][i % 2]} for i in range(40)])
    write_jsonl(tmp_path / "s.jsonl", [{"text": f"s{i}", "y": [0, 1, 2][i % 3]} for i in range(30)])
    write_jsonl(tmp_path / "e.jsonl", [{"text": f"e{i}", "y": ["entailment", "neutral"][i % 2]} for i in range(30)])
    loader = {"type": "jsonl", "prompt_field": "text", "label_field": "y"}
    spec = {"model": {"kind": "classifier"}, "target": {"name": "t", "loader": {**loader, "path": "t.jsonl"}},
            "sources": [{"name": "s", "loader": {**loader, "path": "s.jsonl"}, "label_map": {0: "neg", 1: "pos", 3: None}},
                        {"name": "e", "loader": {**loader, "path": "e.jsonl"},
                         "label_map": {"entailement": "pos", "neutral": "neg"}}]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert report.ok, report.issues
    said = [(w.key, w.message) for w in report.warnings if w.key.endswith("label_map")]
    # the data stage's own warnings, word for word
    from subsetctl.data.stage import run_data_stage

    stage = run_data_stage(Spec.model_validate(spec), tmp_path, tmp_path / "out")["warnings"]
    assert sorted(said) == sorted([("sources[0].label_map", stage[0]), ("sources[1].label_map", stage[1]),
                                   ("sources[0].label_map", stage[2])]), (said, stage)
    assert "label_map names '3'" in stage[0] and "'entailement' looks like its label 'entailment'" in stage[1]
    assert "labels the target never uses: '2'" in stage[2]
    # rows left unread: said, and the target's first rows are not taken for all its classes
    monkeypatch.setattr(spec_checks, "LABEL_MAP_ROWS_READ", 20)
    said = [w.message for w in validate_spec_file(tmp_path / "subsetctl.yaml").warnings if w.key.endswith("label_map")]
    assert len(said) == 2 and all(m.endswith("Validate read the first 20 rows of its file: a later row may have it "
                                             "(the data stage reads them all).") for m in said), said


def _label_rows_read(monkeypatch: Any) -> list[int]:
    """The rows validate's reads of labels (:func:`~subsetctl.data.checks.head_label_texts`) take
    of each file, in order, as a list filled as they are read."""
    from subsetctl.data import checks

    read: list[int] = []
    real = checks.head_label_texts

    def counted(loader, path, at_most=1000):  # type: ignore[no-untyped-def]
        found = real(loader, path, at_most)
        read.append(found[1])
        return found

    monkeypatch.setattr(checks, "head_label_texts", counted)
    return read


def test_validate_reads_a_bounded_total_of_rows_for_the_label_map_check(tmp_path: Path, monkeypatch: Any) -> None:
    """Each file's labels were read up to LABEL_MAP_ROWS_READ rows, but with no bound on all of
    them: 200 sources' files of 100,000 rows with a label_map took 3 minutes to validate. The
    reads stop at LABEL_MAP_ROWS_TOTAL rows in all (the last file read cut to what is left, and
    said so), and a note names the sources left unread."""
    import yaml

    from subsetctl import spec_checks
    from subsetctl.api import validate_spec_file

    write_jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "y": ["neg", "pos"][i % 2]} for i in range(40)])
    loader = {"type": "jsonl", "prompt_field": "text", "label_field": "y"}
    for name in "abcde":
        write_jsonl(tmp_path / f"{name}.jsonl", [{"text": f"{name}{i}", "y": ["x", "y"][i % 2]} for i in range(30)])
    spec = {"model": {"kind": "classifier"}, "target": {"name": "t", "loader": {**loader, "path": "t.jsonl"}},
            "sources": [{"name": name, "loader": {**loader, "path": f"{name}.jsonl"},
                         "label_map": {"x": "neg", "y": "pos", "z": "pos"}} for name in "abcde"]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    read = _label_rows_read(monkeypatch)
    monkeypatch.setattr(spec_checks, "LABEL_MAP_ROWS_TOTAL", 80)
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert read == [40, 30, 10], read  # the target's rows, a's, then b's first 10: 80 in all
    said = {w.key: w.message for w in report.warnings if w.key.endswith("label_map")}
    assert said["sources[0].label_map"].startswith("Source 'a': label_map names 'z'")
    assert said["sources[1].label_map"].endswith("Validate read the first 10 rows of its file: a later row may have "
                                                 "it (the data stage reads them all).")
    assert said["sources[2].label_map"] == (
        "validate checked the label_map of 2 sources against the labels of their files' first rows, 80 rows in "
        "all, and stopped there: the label_map of 3 more (c, d, e) is checked by the data stage, which warns of a "
        "key no label is as it reads their rows. A note, not a problem (validate passes).")
    assert report.ok


def _by_group_project(folder: Path, rows: list[dict[str, Any]]) -> None:
    """A classifier spec in ``folder``: a target of 40 neg/pos rows, and a `by: task` group
    of ``rows`` (mix.jsonl) with the label_map {0: neg, 1: pos}."""
    import yaml

    write_jsonl(folder / "t.jsonl", [{"text": f"t{i}", "y": ["neg", "pos"][i % 2]} for i in range(40)])
    write_jsonl(folder / "mix.jsonl", rows)
    loader = {"type": "jsonl", "prompt_field": "text", "label_field": "y"}
    spec = {"model": {"kind": "classifier"}, "target": {"name": "t", "loader": {**loader, "path": "t.jsonl"}},
            "source_files": [{"files": "mix.jsonl", "by": "task", "name_prefix": "m-", "loader": loader,
                              "label_map": {0: "neg", 1: "pos"}}]}
    (folder / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def test_validate_says_a_groups_label_map_typo_once_as_the_data_stage_does(tmp_path: Path) -> None:
    """A `by` group's label_map meant for one task named keys no row of the other tasks has:
    validate said it once per task (5 lines saying one thing); it says the data stage's one
    merged warning, at the group's label_map."""

    from subsetctl.api import validate_spec_file
    from subsetctl.data.stage import run_data_stage

    _by_group_project(tmp_path, [{"task": f"k{k}", "text": f"{k}-{i}", "y": [0, 1][i % 2] if k == 0 else
                                  ["neg", "pos"][i % 2]} for k in range(6) for i in range(12)])
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    said = [(w.key, w.message) for w in report.warnings if "label_map" in w.key]
    stage = [w for w in run_data_stage(report.spec, tmp_path, tmp_path / "out")["warnings"] if "label_map" in w]
    assert said == [("source_files[0].label_map", stage[0])] and len(stage) == 1, (said, stage)
    assert stage[0].startswith("source_files[0]: the group's label_map ('0', '1') applies to each of its 6 sources")


def test_a_groups_label_map_warning_past_validates_row_limit_says_it_read_part_of_the_group(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Where validate's row limit (LABEL_MAP_ROWS_TOTAL) stopped partway through a group of 5
    sources, its merged warning said the map "names keys that no row of 2 of them has", as
    if the group were those 2, while the data stage says it of all 5: a run printed two
    warnings that disagreed. Validate's says it read the labels of 2 of the 5, the other 3
    left to the data stage; read whole, the group's warning is the data stage's."""

    from subsetctl import spec_checks
    from subsetctl.api import validate_spec_file
    from subsetctl.data.stage import run_data_stage

    _by_group_project(tmp_path, [{"task": f"k{k}", "text": f"{k}-{i}", "y": ["neg", "pos"][i % 2]}
                                 for k in range(5) for i in range(12)])
    whole = validate_spec_file(tmp_path / "subsetctl.yaml")
    stage = [w for w in run_data_stage(whole.spec, tmp_path, tmp_path / "out")["warnings"] if "label_map" in w]
    assert [w.message for w in whole.warnings if w.key == "source_files[0].label_map"] == stage, stage
    assert "names keys that no row of 5 of them has" in stage[0]
    monkeypatch.setattr(spec_checks, "LABEL_MAP_ROWS_TOTAL", 40 + 24)  # the target's rows, then 2 tasks' 12
    (said,) = [w.message for w in validate_spec_file(tmp_path / "subsetctl.yaml").warnings
               if w.key == "source_files[0].label_map"]
    assert said.startswith("source_files[0]: the group's label_map ('0', '1') applies to each of its 5 sources; with "
                           "`by: task`, to every task; validate read the labels of 2 of them (its row limit left the "
                           "other 3 to the data stage), and of those it names keys that no row of 2 of them has "
                           "(renaming nothing there): 'm-k0', 'm-k1'. "), said


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_validate_takes_no_label_map_key_for_unused_past_a_line_not_utf8(tmp_path: Path, kind: str) -> None:
    """A file with a line that is not UTF-8 (the data stage leaves it out, with a warning, and
    reads on): validate's read of its labels stopped there, took the rows before it for all the
    file's, and warned that the label_map key of a later row's label ('neutral') renamed
    nothing, which the data stage does not say."""
    import yaml

    from subsetctl.api import validate_spec_file
    from subsetctl.data.stage import run_data_stage

    write_jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "y": ["neg", "pos"][i % 2]} for i in range(40)])
    labels = ["entailment"] * 10 + ["neutral"] * 10
    if kind == "jsonl":
        lines = [json.dumps({"text": f"e{i}", "y": y}).encode() + b"\n" for i, y in enumerate(labels)]
        lines.insert(5, b'{"text": "x\x81", "y": "entailment"}\n')
    else:
        lines = [b"text,y\n"] + [f"e{i},{y}\n".encode() for i, y in enumerate(labels)]
        lines.insert(6, b"x\x81,entailment\n")
    (tmp_path / f"e.{kind}").write_bytes(b"".join(lines))
    loader = {"type": "jsonl", "prompt_field": "text", "label_field": "y"}
    spec = {"model": {"kind": "classifier"}, "target": {"name": "t", "loader": {**loader, "path": "t.jsonl"}},
            "sources": [{"name": "e", "loader": {**loader, "type": kind, "path": f"e.{kind}"},
                         "label_map": {"entailment": "pos", "neutral": "neg", "contradiction": "neg"}}]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    stage = run_data_stage(report.spec, tmp_path, tmp_path / "out")["warnings"]
    # only the key no row has is said, by both; 'neutral', a label past the line, is read
    said = [w.message for w in report.warnings if w.key.endswith("label_map")]
    assert len(said) == 1 and said[0].startswith("Source 'e': label_map names 'contradiction', which no row of it "
                                                  "has as its label (its labels: 'entailment', 'neutral')"), said
    assert [w for w in stage if "label_map" in w] == said, stage


def test_validate_checks_a_label_map_without_importing_datasets(tmp_path: Path) -> None:
    """validate's label_map check (a key no label is, a label the map leaves out) built its
    labels into a datasets Dataset and imported the data stage's module: validating any
    classifier spec with a label_map imported datasets (1-2 s, half of validate's time), which
    validate otherwise does not need. Its warnings are found without it."""
    import subprocess
    import sys

    import yaml

    write_jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "y": ["neg", "pos"][i % 2]} for i in range(40)])
    write_jsonl(tmp_path / "s.jsonl", [{"text": f"s{i}", "y": [0, 1, 2][i % 3]} for i in range(30)])
    loader = {"type": "jsonl", "prompt_field": "text", "label_field": "y"}
    spec = {"model": {"kind": "classifier"}, "target": {"name": "t", "loader": {**loader, "path": "t.jsonl"}},
            "sources": [{"name": "s", "loader": {**loader, "path": "s.jsonl"}, "label_map": {0: "neg", 1: "pos", 3: None}}]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    probe = ("import sys; from subsetctl.api import validate_spec_file; "
             "print([w.message[:60] for w in validate_spec_file(sys.argv[1]).warnings if 'label' in w.message]); "
             "print('datasets' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "subsetctl.yaml")], capture_output=True,
                          text=True, check=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    said, imported = done.stdout.strip().splitlines()[-2:]
    assert "label_map names '3'" in said and "labels the target never uses" in said, done.stdout + done.stderr
    assert imported == "False", done.stdout + done.stderr


def test_a_label_map_key_of_other_digits_beside_a_classlabel_column_is_no_traceback(tmp_path: Path) -> None:
    """validate's check of label_map keys that are a save_to_disk ClassLabel column's ids took
    any key whose characters are digits for an id: int('²') ('²'.isdigit() is true) raised a
    ValueError out of validate, a traceback for a label_map key."""
    import yaml
    from datasets import ClassLabel, Dataset, Features, Value

    from subsetctl.api import validate_spec_file

    features = Features({"prompt": Value("string"), "response": ClassLabel(names=["neg", "pos"])})
    Dataset.from_dict({"prompt": ["a", "b"], "response": [0, 1]}, features=features).save_to_disk(str(tmp_path / "cls"))
    write_jsonl(tmp_path / "t.jsonl", qa_rows(8))
    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
            "sources": [{"name": "ids", "loader": {"type": "huggingface", "path": "./cls"},
                         "label_map": {"²": "negative", "1": "positive"}}]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    said = [w.message for w in report.warnings if w.key.endswith("label_map")]
    assert len(said) == 1 and said[0].startswith("'1' is a class id of the ClassLabel column 'response'"), said


def test_head_label_texts_says_rows_are_left_unread_past_a_csv_row_not_utf8(tmp_path: Path) -> None:
    """A CSV file longer than the rows read, one of them not UTF-8 (left out, as the data stage
    leaves it out): the rows past those read are still unread. Counting the rows kept said all
    were read, so validate took the first rows' labels for the target's every class and said
    no "a later row may have it" beside a label_map key those rows lack."""
    from subsetctl.data.checks import head_label_texts
    from subsetctl.spec import CsvLoader

    lines = [b"text,y\n"] + [f"e{i},{'ab'[i % 2]}\n".encode() for i in range(10)]
    lines.insert(2, b"x\x81,a\n")
    (tmp_path / "e.csv").write_bytes(b"".join(lines))
    loader = CsvLoader(type="csv", path=str(tmp_path / "e.csv"), prompt_field="text", label_field="y")
    texts, read = head_label_texts(loader, tmp_path / "e.csv", 4)
    assert texts == ["a", "b", "a"] and read == 4, (texts, read)


def test_head_label_texts_counts_a_jsonl_line_that_is_not_an_object_as_a_row_read(tmp_path: Path) -> None:
    """A JSON Lines line that is JSON but not an object (`[1]`) used up one of the rows read
    without being counted: a file longer than the rows read was said read whole (no "a later
    row may have it", its first labels taken for the target's every class), and validate's
    row total was under-counted. It is a row read, with no label."""
    from subsetctl.data.checks import head_label_texts
    from subsetctl.spec import JsonlLoader

    (tmp_path / "e.jsonl").write_text("[1]\n" + "".join(f'{{"text": "e{i}", "y": "{"ab"[i % 2]}"}}\n' for i in range(5)))
    loader = JsonlLoader(type="jsonl", path=str(tmp_path / "e.jsonl"), prompt_field="text", label_field="y")
    texts, read = head_label_texts(loader, tmp_path / "e.jsonl", 4)
    assert texts == ["a", "b", "a"] and read == 4, (texts, read)


def test_validate_reads_a_bounded_total_of_jsonl_files_through(tmp_path: Path, monkeypatch: Any) -> None:
    """Validate read every JSON Lines file up to 64 MB through (its rows counted for the split
    check, its gzip and UTF-8 checked): 2,000 sources' files of 100,000 rows took 102.6 s. The
    files are read through in the spec's order, the target's first, up to READ_THROUGH_MB_TOTAL
    (the one crossing it whole): a file past it is left to the data stage (its split asking more
    rows than it has, its lines not UTF-8, not said), a note names its sources, and validate passes."""
    import yaml

    from subsetctl.api import validate_spec_file
    from subsetctl.data import checks

    write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"t{i}", "response": "a"} for i in range(40)])
    for name in "abcd":
        write_jsonl(tmp_path / f"{name}.jsonl", [{"prompt": f"{name}{i}", "response": "a"} for i in range(30)])
    (tmp_path / "e.jsonl").write_bytes(b'{"prompt": "x\x81y", "response": "a"}\n' + (tmp_path / "a.jsonl").read_bytes())
    loader = {"type": "jsonl", "prompt_field": "prompt", "response_field": "response"}
    spec = {"target": {"name": "t", "loader": {**loader, "path": "t.jsonl"}},
            "sources": [{"name": name, "loader": {**loader, "path": f"{name}.jsonl"},
                         **({"split": {"train": 100}} if name in "bd" else {"max_examples": 1000} if name == "c"
                            else {})} for name in "abcde"]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    read = (tmp_path / "t.jsonl").stat().st_size + (tmp_path / "a.jsonl").stat().st_size + 1  # t, a and b's first
    monkeypatch.setattr(checks, "READ_THROUGH_MB_TOTAL", read / 2**20, raising=False)
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert [i.key for i in report.issues] == ["sources[1].split"], report.issues  # b's: read; d's: past the total
    assert "but the source has at most 30 (file " in report.issues[0].message
    said = {w.key: w for w in report.warnings}
    assert "sources[4].loader.path" not in said  # e's line not UTF-8: the data stage says it
    assert "sources[2].max_examples" not in said  # c's max_examples above its rows: not counted
    note = said["sources[2].loader.path"]
    assert note.note and note.message.startswith("validate read 3 JSON Lines, CSV and JSON file(s) through, "), note
    assert "and stopped there: the files of 3 more (c, d, e) are read through by the data stage alone" in note.message
    monkeypatch.setattr(checks, "READ_THROUGH_MB_TOTAL", 1)  # all of them: d's split and e's line are said
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert [i.key for i in report.issues] == ["sources[1].split", "sources[3].split"], report.issues
    assert "sources[4].loader.path" in {w.key for w in report.warnings if not w.note}
    assert "sources[2].max_examples" in {w.key for w in report.warnings if w.note}


def test_the_read_through_note_is_no_problem_beside_a_group_matching_no_file(tmp_path: Path, monkeypatch: Any) -> None:
    """A spec whose source_files group matches no file has its listed sources checked all the
    same (listed_parts_issues): the note of the files left past READ_THROUGH_MB_TOTAL was listed
    among its problems ("A note, not a problem" as an error); it is a note among the warnings."""
    import yaml

    from subsetctl.api import validate_spec_file
    from subsetctl.data import checks

    for name in "tab":
        write_jsonl(tmp_path / f"{name}.jsonl", [{"prompt": f"{name}{i}", "response": "a"} for i in range(30)])
    loader = {"type": "jsonl", "prompt_field": "prompt", "response_field": "response"}
    spec = {"target": {"name": "t", "loader": {**loader, "path": "t.jsonl"}},
            "sources": [{"name": name, "loader": {**loader, "path": f"{name}.jsonl"}} for name in "ab"],
            "source_files": [{"files": "nothing/*.jsonl", "loader": loader}]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    monkeypatch.setattr(checks, "READ_THROUGH_MB_TOTAL", ((tmp_path / "t.jsonl").stat().st_size + 1) / 2**20)
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert [i.key for i in report.issues] == ["source_files[0].files"], report.issues
    (note,) = report.warnings
    assert note.note and note.key == "sources[1].loader.path" and "the files of 1 more (b)" in note.message, note


def test_an_empty_file_read_by_two_sources_is_not_left_past_the_read_through_total(tmp_path: Path) -> None:
    """An empty file was granted no part of READ_THROUGH_MB_TOTAL (0 bytes of it), so its second
    reader was named as left to the data stage, in a note that validate "stopped" at 256 MB
    when it had read a few bytes: each reader is told the file is empty, and no note is given."""
    import yaml

    from subsetctl.api import validate_spec_file

    write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"t{i}", "response": "a"} for i in range(30)])
    (tmp_path / "e.jsonl").write_text("")
    loader = {"type": "jsonl", "prompt_field": "prompt", "response_field": "response"}
    spec = {"target": {"name": "t", "loader": {**loader, "path": "t.jsonl"}},
            "sources": [{"name": name, "loader": {**loader, "path": "e.jsonl"}} for name in ("e1", "e2")]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert [i.key for i in report.issues] == ["sources[0].loader.path", "sources[1].loader.path"], report.issues
    assert not [w for w in report.warnings if w.note], report.warnings


def test_the_read_through_note_is_keyed_at_an_evals_sources_eval(tmp_path: Path, monkeypatch: Any) -> None:
    """The note of the files left past READ_THROUGH_MB_TOTAL was keyed at the first one's
    ``loader.path``, which an `evals` source has not (its ``loader.name`` names its file)."""
    import yaml

    from subsetctl.api import validate_spec_file
    from subsetctl.data import checks

    if evals_data_dir() is None:
        pytest.skip("needs the evals package (pip install --no-deps evals==3.0.1.post1)")
    write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"t{i}", "response": "a"} for i in range(30)])
    loader = {"type": "jsonl", "prompt_field": "prompt", "response_field": "response"}
    spec = {"target": {"name": "t", "loader": {**loader, "path": "t.jsonl"}},
            "sources": [{"name": "a", "loader": {**loader, "path": "t.jsonl"}},
                        {"name": "ana", "loader": {"type": "evals", "name": "anagrams"}}]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    monkeypatch.setattr(checks, "READ_THROUGH_MB_TOTAL", ((tmp_path / "t.jsonl").stat().st_size) / 2**20)
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    (note,) = [w for w in report.warnings if w.note and "read through" in w.message]
    assert note.key == "sources[1].loader.name" and "the files of 1 more (ana)" in note.message, note


def test_validate_reads_a_bounded_total_of_rows_for_the_num_labels_check(tmp_path: Path, monkeypatch: Any) -> None:
    """model.num_labels was checked against the labels of every file's first 1,000 rows, with no
    bound on all of them: 2,000 sources took 55 s of a 102.6 s validate (profiled). The reads stop at
    NUM_LABELS_ROWS_TOTAL rows in all (the target's first, the last file read cut to what is left),
    a label past them is left to the run, and a note names the sources left unread."""
    import yaml

    from subsetctl.api import validate_spec_file
    from subsetctl.data import checks

    write_jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "y": ["neg", "pos"][i % 2]} for i in range(40)])
    loader = {"type": "jsonl", "prompt_field": "text", "label_field": "y"}
    for name in "abcde":  # (e has a third label: past the total, left to the run)
        write_jsonl(tmp_path / f"{name}.jsonl", [{"text": f"{name}{i}", "y": ["neg", "pos", "odd" if name == "e"
                                                                               else "pos"][i % 3]} for i in range(30)])
    spec = {"model": {"kind": "classifier", "num_labels": 2},
            "target": {"name": "t", "loader": {**loader, "path": "t.jsonl"}},
            "sources": [{"name": name, "loader": {**loader, "path": f"{name}.jsonl"}} for name in "abcde"]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    read = _label_rows_read(monkeypatch)
    monkeypatch.setattr(checks, "NUM_LABELS_ROWS_TOTAL", 80, raising=False)
    report = validate_spec_file(tmp_path / "subsetctl.yaml")
    assert read == [40, 30, 10], read  # the target's rows, a's, then b's first 10: 80 in all
    assert report.ok, report.issues
    (note,) = [w for w in report.warnings if w.key == "model.num_labels"]
    assert note.note and note.message == (
        "validate counted the labels of the first rows of 2 source(s)' files beside the target's, 80 rows in all, "
        "and stopped there: the labels of 3 more (c, d, e) are counted by the run, which refuses a num_labels below "
        "them after the data stage. A note, not a problem (validate passes).")
    monkeypatch.setattr(checks, "NUM_LABELS_ROWS_TOTAL", 1000)  # e's third label read: refused
    assert [i.key for i in validate_spec_file(tmp_path / "subsetctl.yaml").issues] == ["model.num_labels"]


def test_validate_counts_an_evals_sources_lines_within_the_read_through_total(tmp_path: Path) -> None:
    """An `evals` source's file (in the installed package) is read through as a JSON Lines file
    is, within READ_THROUGH_MB_TOTAL: its split asking more rows than the file has is still said
    (the total's files were JSON Lines and CSV loaders' alone, so its lines went uncounted)."""
    if evals_data_dir() is None:
        pytest.skip("needs the evals package (pip install --no-deps evals==3.0.1.post1)")
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    issues = check_issues(tmp_path, GOOD + """\
  - name: ana
    loader: {type: evals, name: anagrams}
    split: {train: 1000000}
""")
    assert "has at most" in issues["sources[1].split"].message and "non-blank lines" in issues["sources[1].split"].message


def test_a_plain_folders_builder_failing_is_not_told_to_leave_out_a_name_it_does_not_give(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A huggingface loader on a plain folder of data files whose builder failed for another
    reason was told "the dataset in . has one configuration, not None (its data files, read
    as they are): leave loader.name out", with loader.name left out already. A name given
    there is still told to go."""
    import datasets

    from subsetctl.data import checks
    from subsetctl.spec.models import HuggingFaceLoader

    monkeypatch.setattr(datasets, "get_dataset_config_names", lambda path: ["default"])
    for name, said in ((None, []), ("main", ["sources[0].loader.name"])):
        issues = checks._Issues("subsetctl.yaml", {})
        checks._check_folder_config(HuggingFaceLoader(type="huggingface", path=str(tmp_path), name=name), tmp_path,
                                    ("sources", 0, "loader"), issues)
        assert [issue.key for issue in issues.found] == said, issues.found
        assert all("not None" not in issue.message for issue in issues.found)


def test_a_files_listing_is_made_dicts_once_per_process_until_the_file_changes(tmp_path: Path) -> None:
    """Each ``where`` source of one file asks for the file's listing (twice, in validate):
    the dict of all its values was made again each time, so validating 2,000 tasks of one
    JSON Lines file took most of its time making 4,000 dicts of 2,000 values. It is made
    once, and again only when the file changes."""
    from subsetctl.data.fingerprint import blank_columns, listed_values
    from subsetctl.spec import JsonlLoader

    path, loader = tmp_path / "tasks.jsonl", JsonlLoader(type="jsonl", path="tasks.jsonl")
    write_jsonl(path, [{"task": f"t{i % 3}", "prompt": f"q{i}", "response": "r"} for i in range(9)])
    values, _ = listed_values(path, "task", loader, tmp_path)
    assert values == {"t0": 3, "t1": 3, "t2": 3}
    assert listed_values(path, "task", loader, tmp_path)[0] is values
    assert blank_columns(path, "task", loader, tmp_path) is blank_columns(path, "task", loader, tmp_path)
    write_jsonl(path, [{"task": "t9", "prompt": "q", "response": "r"}])
    assert listed_values(path, "task", loader, tmp_path) == ({"t9": 1}, 0)


def test_a_files_listings_kept_as_dicts_do_not_grow_when_the_hash_cache_is_made_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listings made dicts were kept by the identity of the hash cache's listing: a notebook
    loading a spec again (new hash caches, new listings of the same files) added every listing
    again each time, and the store grew for as long as the process ran. One per file and column."""
    from subsetctl import filehash
    from subsetctl.data import fingerprint
    from subsetctl.spec import JsonlLoader

    monkeypatch.setattr(fingerprint, "_LISTINGS_AS_DICTS", {})
    path, loader = tmp_path / "tasks.jsonl", JsonlLoader(type="jsonl", path="tasks.jsonl")
    write_jsonl(path, [{"task": f"t{i % 3}", "prompt": f"q{i}", "response": "r"} for i in range(9)])
    for _ in range(3):
        monkeypatch.setattr(filehash, "_CACHES", {})  # as a notebook's spec loaded again makes new ones
        assert fingerprint.listed_values(path, "task", loader, tmp_path) == ({"t0": 3, "t1": 3, "t2": 3}, 0)
    assert len(fingerprint._LISTINGS_AS_DICTS) == 1


def test_a_parquet_files_listing_is_made_dicts_once_per_process_until_the_file_changes(tmp_path: Path) -> None:
    """A Parquet file's ``where`` sources: its column was read once per process, but the dict of
    all its values was made again for each source, twice (validate of 2,000 tasks of one Parquet
    file: 12 s of its 15 s of CPU). It is made once, and again only when the file changes."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from subsetctl.data.fingerprint import listed_values

    path = tmp_path / "tasks.parquet"
    pq.write_table(pa.table({"task": [f"t{i % 3}" for i in range(9)], "prompt": ["q"] * 9, "response": ["r"] * 9}), path)
    values, _ = listed_values(path, "task", None, tmp_path)
    assert values == {"t0": 3, "t1": 3, "t2": 3}
    assert listed_values(path, "task", None, tmp_path)[0] is values
    pq.write_table(pa.table({"task": ["t9"], "prompt": ["q"], "response": ["r"]}), path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # (a later time, surely)
    assert listed_values(path, "task", None, tmp_path) == ({"t9": 1}, 0)


def test_a_parquet_files_listing_made_dicts_does_not_hold_its_rows_past_the_column_reads_cache(
        tmp_path: Path) -> None:
    """The dicts of a Parquet file's listing were kept by its ``ValueRows`` (every row number of
    every value, a whole column's worth), held for the process: a spec of many big Parquet files
    held each one's rows, where the column reads' cache holds the last 8. The dicts are kept
    without them: once that cache lets a file's rows go, they are freed."""
    import gc
    import weakref

    import pyarrow as pa
    import pyarrow.parquet as pq

    from subsetctl.data.fingerprint import listed_values
    from subsetctl.data.loaders import files

    path = tmp_path / "tasks.parquet"
    pq.write_table(pa.table({"task": [f"t{i % 3}" for i in range(9)], "prompt": ["q"] * 9, "response": ["r"] * 9}), path)
    files._value_rows.cache_clear()  # (an earlier test's reads)
    rows = weakref.ref(files.value_rows(path, "task"))
    values, _ = listed_values(path, "task", None, tmp_path)
    assert values == {"t0": 3, "t1": 3, "t2": 3} and rows() is not None
    files._value_rows.cache_clear()
    gc.collect()
    assert rows() is None, gc.get_referrers(rows())
    assert listed_values(path, "task", None, tmp_path)[0] == values


def test_validate_counts_a_huggingface_loaders_json_data_files_toward_its_read_through_total(
        tmp_path: Path, monkeypatch: Any) -> None:
    """A ``huggingface`` loader's JSON ``data_files`` (``path: json``) were read whole for their columns (a JSON
    array, up to 64 MB each) outside READ_THROUGH_MB_TOTAL, which the JSON Lines files count toward: thousands of
    such sources read gigabytes on every validate. Now they count: past the total one is left to the data stage,
    and the note names its source; within it, its columns are checked as before."""
    import yaml

    from subsetctl.api import validate_spec_file
    from subsetctl.data import checks

    write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"t{i}", "response": "a"} for i in range(40)])
    (tmp_path / "arr.json").write_text(json.dumps([{"question": f"q{i}", "response": "a"} for i in range(30)]))
    spec = {"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl", "prompt_field": "prompt",
                                               "response_field": "response"}},
            "sources": [{"name": "arr", "loader": {"type": "huggingface", "path": "json", "data_files": ["arr.json"],
                                                   "prompt_field": "prompt", "response_field": "response"}}]}
    (tmp_path / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    report = validate_spec_file(tmp_path / "subsetctl.yaml")  # within the total: its missing column is said
    assert any(i.key.startswith("sources[0].loader") and "'prompt'" in i.message for i in report.issues), report.issues
    monkeypatch.setattr(checks, "READ_THROUGH_MB_TOTAL", (tmp_path / "t.jsonl").stat().st_size / 2**20)
    report = validate_spec_file(tmp_path / "subsetctl.yaml")  # the target's file spends it: arr.json is not read
    assert not [i for i in report.issues if i.key.startswith("sources")], report.issues
    note = {w.key: w for w in report.warnings}["sources[0].loader.data_files"]
    assert note.note and "the files of 1 more (arr) are read through by the data stage alone" in note.message, note
