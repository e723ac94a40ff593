"""``loader.text_field``: plain-text rows (a corpus's documents) read as an empty prompt and
the text as the response, marked to be trained on whole, and the spec and ``validate`` rules
of the option."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from data_helpers import check_issues, qa_rows, write_jsonl

from subsetctl.data.loaders import load_csv, load_jsonl, load_parquet
from subsetctl.errors import UserError
from subsetctl.spec import CsvLoader, JsonlLoader, ParquetLoader
from subsetctl.spec.reading import validate_data
from subsetctl.text_rows import TEXT_KEY, is_text_row


def _jsonl(tmp_path: Path, rows: list[dict], field: str = "text") -> JsonlLoader:
    write_jsonl(tmp_path / "corpus.jsonl", rows)
    return JsonlLoader(type="jsonl", path="corpus.jsonl", text_field=field)


def test_text_rows_are_an_empty_prompt_and_the_text_as_the_response(tmp_path: Path, make_ctx) -> None:
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, [{"text": " The cat sat.", "id": 7}, {"text": "  Indented code", "id": 8}]), ctx)
    assert ds["prompt"] == ["", ""] and ds["response"] == [" The cat sat.", "  Indented code"]
    assert [json.loads(m) for m in ds["metadata"]] == [{"id": 7, TEXT_KEY: True}, {"id": 8, TEXT_KEY: True}]
    assert all(is_text_row(row) for row in ds)
    # no "empty prompt" notice (no prompt is what the option means), nor one on answers starting with whitespace
    assert ctx.notices == []


def test_csv_and_parquet_read_a_text_column(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "c.csv").write_text('title,body\na,"line one\nline two"\nb,second\n')
    ds = load_csv(CsvLoader(type="csv", path="c.csv", text_field="body"), make_ctx())
    assert ds["prompt"] == ["", ""] and ds["response"] == ["line one\nline two", "second"]
    assert [json.loads(m) for m in ds["metadata"]] == [{"title": "a", TEXT_KEY: True}, {"title": "b", TEXT_KEY: True}]
    pq.write_table(pa.Table.from_pylist([{"content": "def f(): pass"}, {"content": "x = 1"}]), tmp_path / "p.parquet")
    ds = load_parquet(ParquetLoader(type="parquet", path="p.parquet", text_field="content"), make_ctx())
    assert ds["response"] == ["def f(): pass", "x = 1"] and all(is_text_row(row) for row in ds)


def test_a_blank_text_is_left_out_and_a_missing_column_is_an_error_naming_text_field(tmp_path: Path,
                                                                                      make_ctx) -> None:
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, [{"text": "kept"}, {"text": "   "}, {"text": "also kept"}]), ctx)
    assert ds["response"] == ["kept", "also kept"]
    assert any("1 of 3 rows has an empty 'text' (loader.text_field) (line 2)" in n for n in ctx.notices), ctx.notices
    with pytest.raises(UserError, match=r"has no column 'body' \(asked for by loader.text_field\)\. "
                                        r"Available columns: 'id', 'text'\."):
        load_jsonl(_jsonl(tmp_path, [{"text": "a", "id": 1}], field="body"), make_ctx())


def test_plain_text_read_with_prompt_and_response_columns_is_told_to_set_text_field(tmp_path: Path,
                                                                                   make_ctx) -> None:
    """A corpus read without text_field (a .txt file through `path: text`, a hub corpus as
    wikitext, whose one column is `text`) stopped the data stage with "Set
    loader.prompt_field to one of them": prompt_field: text would still have no answer."""
    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    (tmp_path / "notes.txt").write_text("The sum of 1 and 2 is 3.\nThe sum of 2 and 3 is 5.\n")
    told = r"Available columns: 'text'\. Plain text with no prompt and response to learn reads with loader\.text_field: text "
    with pytest.raises(UserError, match=r"has no column 'prompt' \(asked for by loader\.prompt_field\)\. " + told):
        load_huggingface(HuggingFaceLoader(type="huggingface", path="text", data_files=["notes.txt"]), make_ctx())
    with pytest.raises(UserError, match=r"loader\.text_field: body \(in place of"):  # a file's one column
        load_jsonl(_jsonl(tmp_path, [{"body": "a"}], field=None), make_ctx())
    with pytest.raises(UserError, match=r"Set loader\.prompt_field to one of them"):  # an answer: no text advice
        load_jsonl(_jsonl(tmp_path, [{"text": "a", "response": "b"}], field=None), make_ctx())
    write_jsonl(tmp_path / "c.jsonl", [{"text": "a"}])
    with pytest.raises(UserError, match=r"Set loader\.label_field to one of them"):  # a classifier: none either
        load_jsonl(JsonlLoader(type="jsonl", path="c.jsonl", prompt_field="text", label_field="label"),
                   make_ctx(kind="classifier"))


def test_a_missing_null_or_nan_text_is_left_out_with_the_blank_ones_in_one_notice(tmp_path: Path, make_ctx) -> None:
    """A corpus's row without its text is a missing document: left out, as a blank one is,
    and counted in the same notice (one null text in a pretraining shard stopped the whole
    source), whether the value is null, NaN, or the key is absent from a JSON Lines row;
    a Parquet column's nulls alike. Only a source left with no text is an error."""
    (tmp_path / "corpus.jsonl").write_text(
        '{"text": "one"}\n{"text": null}\n{"text": " "}\n{"id": 4}\n{"text": NaN}\n{"text": "six"}\n')
    ctx = make_ctx()
    ds = load_jsonl(JsonlLoader(type="jsonl", path="corpus.jsonl", text_field="text"), ctx)
    assert ds["response"] == ["one", "six"] and ds["row"] == [0, 5]
    notice, = ctx.notices
    assert ("4 of 6 rows have an empty or missing 'text' (loader.text_field) (line 2, line 3, line 4, line 5; "
            "3 missing, null or NaN); they are left out") in notice, notice
    pq.write_table(pa.Table.from_pylist([{"text": "a"}, {"text": None}]), tmp_path / "p.parquet")
    ctx = make_ctx()
    assert load_parquet(ParquetLoader(type="parquet", path="p.parquet", text_field="text"), ctx)["response"] == ["a"]
    assert ctx.notices == ["Source 'src': file " + str(tmp_path / "p.parquet") + ": 1 of 2 rows has a missing, null "
                           "or NaN 'text' (loader.text_field) (row 2); it is left out (every row needs a text)."]
    with pytest.raises(UserError, match=r"'text' \(loader.text_field\) is missing, null or NaN in every row "
                                        r"\(line 1, line 2\)"):
        load_jsonl(_jsonl(tmp_path, [{"text": None}, {"text": None, "id": 2}]), make_ctx())


def test_a_document_that_is_not_utf8_text_is_left_out_with_one_notice(tmp_path: Path, make_ctx) -> None:
    """A document holding a lone surrogate (a JSON ``\\ud800`` escape, as a crawl's broken
    emoji gives) or a binary column's bytes that are not UTF-8 stopped the whole source; it
    is left out (the seeded draw too draws among the others), counted in one notice naming
    the first rows, and only a source left with no text is an error."""
    rows = [{"text": f"document {i}"} for i in range(12)]
    rows[3]["text"] = "broken \ud83d emoji"
    rows[7]["text"] = "\udfff"
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ds["row"] == [i for i in range(12) if i not in (3, 7)]
    (notice,) = ctx.notices
    assert "corpus.jsonl: 2 of 12 rows hold text that is not valid UTF-8 (line 4, line 8); they are left out" in notice
    assert "line 4: the 'text' value contains an invalid unicode escape (a lone surrogate" in notice
    ctx = make_ctx()
    ctx = type(ctx)(source_name=ctx.source_name, base_dir=ctx.base_dir, kind=ctx.kind, seed=ctx.seed, keep_at_most=4)
    drawn = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ctx.drawn == {"rows": 10} and len(drawn) == 4 and not {3, 7} & set(drawn["row"])
    pq.write_table(pa.table({"text": pa.array([b"ok", b"caf\xe9", None], pa.binary())}), tmp_path / "b.parquet")
    ctx = make_ctx()
    assert load_parquet(ParquetLoader(type="parquet", path="b.parquet", text_field="text"), ctx)["response"] == ["ok"]
    assert [n.split(": ", 2)[2][:40] for n in ctx.notices] == ["1 of 3 rows holds text that is not valid",
                                                               "1 of 3 rows has a missing, null or NaN '"]
    with pytest.raises(UserError, match=r"line 1: the 'text' value contains an invalid unicode escape .* No row is "
                                        r"left: 1 of 2 rows holds such text \(line 1\), 1 more an empty one\."):
        load_jsonl(_jsonl(tmp_path, [{"text": "\ud800"}, {"text": " "}]), make_ctx())


def test_a_txt_files_byte_order_mark_is_not_part_of_its_first_row(tmp_path: Path, make_ctx) -> None:
    """A .txt file saved by a Windows editor as "UTF-8 with BOM" (CRLF line endings too) is
    read as the same file without them: datasets' text builder kept the BOM as a U+FEFF at
    the start of the first row's text, which then was trained on and scored."""
    from subsetctl.data.loaders.huggingface import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    (tmp_path / "plain.txt").write_bytes(b"First line.\nSecond line.\n")
    (tmp_path / "windows.txt").write_bytes(b"\xef\xbb\xbfFirst line.\r\nSecond line.\r\n")

    def texts(name: str) -> list[str]:
        loader = HuggingFaceLoader(type="huggingface", path="text", data_files=[name], text_field="text")
        return load_huggingface(loader, make_ctx())["response"]

    assert texts("windows.txt") == texts("plain.txt") == ["First line.", "Second line."]


def test_a_txt_files_blank_lines_are_told_as_what_they_are_not_as_a_column_read_wrong(tmp_path: Path,
                                                                                      make_ctx) -> None:
    """A .txt file read through datasets' ``text`` builder is a line a row: where its blank
    lines (between paragraphs) are most rows, the notice told to "check that the loader reads
    the right column", which a text file has one of; it says how a .txt file is read."""
    from subsetctl.data.loaders import load_huggingface
    from subsetctl.spec import HuggingFaceLoader

    (tmp_path / "notes.txt").write_text("First paragraph.\n\nSecond one.\n\nThird.\n\n\n")
    ctx = make_ctx()
    loader = HuggingFaceLoader(type="huggingface", path="text", data_files=["notes.txt"], text_field="text")
    assert load_huggingface(loader, ctx)["response"] == ["First paragraph.", "Second one.", "Third."]
    (notice,) = ctx.notices
    assert "4 of 7 rows have an empty 'text'" in notice and "the right column" not in notice, notice
    assert notice.startswith(f"Source 'src': dataset 'text' of {tmp_path / 'notes.txt'}: 4 of 7 rows"), notice  # (its file)
    assert "That is most of its rows: a .txt file is read a line a row (datasets' text builder: each line one " \
           "document, as the README's plain-text section says)" in notice
    ctx = make_ctx()  # a JSON Lines corpus's blank texts: the column may well be the wrong one
    load_jsonl(_jsonl(tmp_path, [{"text": "a"}, {"text": ""}, {"text": ""}]), ctx)
    assert "That is most of its rows: check that the loader reads the right column." in ctx.notices[0]


def test_max_examples_draws_among_the_texts_kept(tmp_path: Path, make_ctx) -> None:
    """``max_examples`` counts texts kept: the rows left out (null, blank) are not drawn."""
    rows = [{"text": f"document {i}"} if i % 3 else {"text": None if i % 2 else ""} for i in range(30)]
    ctx = make_ctx()
    ctx = type(ctx)(source_name=ctx.source_name, base_dir=ctx.base_dir, kind=ctx.kind, seed=ctx.seed, keep_at_most=5)
    drawn = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ctx.drawn == {"rows": 20} and len(drawn) == 5 and all(row % 3 for row in drawn["row"])
    assert drawn["response"] == [f"document {row}" for row in drawn["row"]]


def test_a_text_held_as_a_list_is_said_to_be_trained_on_as_json(tmp_path: Path, make_ctx) -> None:
    """A document kept as a list of its parts is trained on as its JSON text: the notice says
    so in a text's terms (it spoke of a gold response and accepted answers) and says to join
    the parts."""
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, [{"text": "plain"}, {"text": ["part one", "part two"]}]), ctx)
    assert ds["response"] == ["plain", '["part one", "part two"]']
    notice, = ctx.notices
    assert "1 row of file " in notice and "has a list or an object" in notice and "(at line 2" in notice and "trained on as its JSON text" in notice
    assert "Join the parts into one string" in notice and "gold response" not in notice


def test_a_text_that_is_no_string_is_said_in_a_texts_terms(tmp_path: Path, make_ctx) -> None:
    """A number or a boolean as a text (an id or a score column named by mistake) is trained
    on as its few characters: one notice counts such rows, in a text's terms (the notice on
    whole numbers held as floats spoke of gold responses and exact_match)."""
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, [{"text": 5.0}, {"text": "a document"}, {"text": 7}, {"text": True}]), ctx)
    assert ds["response"] == ["5.0", "a document", "7", "true"]
    notice, = ctx.notices
    assert ("3 rows of file " in notice and "have a number or another value that is not a string as 'text' "
            "(loader.text_field) (first at line 1: '5.0')" in notice and "names the column of the documents" in notice)
    assert "gold response" not in notice and "exact_match" not in notice


def test_a_drawn_sample_of_texts_maps_the_rows_it_keeps(tmp_path: Path, make_ctx) -> None:
    rows = [{"text": f"document {i}", "n": i} for i in range(30)]
    ctx = make_ctx()
    ctx = type(ctx)(source_name=ctx.source_name, base_dir=ctx.base_dir, kind=ctx.kind, seed=ctx.seed, keep_at_most=5)
    drawn = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ctx.drawn == {"rows": 30} and len(drawn) == 5
    assert all(text == f"document {row}" and json.loads(m) == {"n": row, TEXT_KEY: True}
               for text, row, m in zip(drawn["response"], drawn["row"], drawn["metadata"], strict=True))


def test_a_classifier_cannot_load_texts(tmp_path: Path, make_ctx) -> None:
    with pytest.raises(UserError, match="text_field is for a causal LM's plain text.*model.kind is classifier"):
        load_jsonl(_jsonl(tmp_path, [{"text": "a", "label": 1}]), make_ctx(kind="classifier"))


def test_a_rows_own_mark_is_refused(tmp_path: Path, make_ctx) -> None:
    """The mark is the model stages' cue to train on a row with no prompt and no template:
    a data column of that name is refused in a text source, and in a prompt/response source
    where it would mark a row with a prompt."""
    for own in ({TEXT_KEY: True}, {"metadata": {TEXT_KEY: "yes"}}):
        with pytest.raises(UserError, match=rf"line 1: the row has a key of its own named '{TEXT_KEY}'"):
            load_jsonl(_jsonl(tmp_path, [{"text": "a", **own}]), make_ctx())
        write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "q", "response": "r", **own}])
        with pytest.raises(UserError, match=rf"line 1: its '{TEXT_KEY}' \(a column, or a key of its metadata\)"):
            load_jsonl(JsonlLoader(type="jsonl", path="qa.jsonl"), make_ctx())


# ------------------------------------------------------------------------- spec and validate


SPEC = """\
target:
  name: tgt
  loader: {type: jsonl, path: data/t.jsonl}
  split: {train: 0.5, validation: 0.25, test: 0.25}
sources:
  - name: corpus
    loader:
      type: jsonl
      path: data/corpus.jsonl
      text_field: text
"""


def _spec_issues(tmp_path: Path, text: str) -> list:
    return validate_data(yaml.safe_load(text), str(tmp_path / "subsetctl.yaml"), text)[1]


@pytest.mark.parametrize("key", ["prompt_field", "response_field", "messages_field"])
def test_text_field_with_another_reading_of_the_rows_is_a_spec_error(tmp_path: Path, key: str) -> None:
    (issue,) = _spec_issues(tmp_path, SPEC.replace("      text_field: text\n", f"      text_field: text\n      {key}: x\n"))
    if key == "messages_field":
        assert issue.key == "sources[0].loader.text_field" and "cannot be combined with messages_field ('x')" in issue.message
    else:
        assert issue.key == f"sources[0].loader.{key}" and issue.line == 11
        assert "cannot be combined with text_field ('text')" in issue.message


def test_label_map_with_text_field_is_a_spec_error_naming_both(tmp_path: Path) -> None:
    """A text trained on whole has no answer to rename: the map was accepted and the data
    stage warned, source by source, to write its keys as the answers read."""
    (issue,) = _spec_issues(tmp_path, SPEC + "    label_map: {0: negative, 1: positive}\n")
    assert issue.key == "sources[0]" and issue.message.startswith(
        "label_map cannot be combined with loader.text_field ('text'): label_map renames answers")
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"text": "a"}])
    group = SPEC + ("source_files:\n  - files: data/a*.jsonl\n    loader: {type: jsonl, text_field: text}\n"
                    "    label_map: {0: negative}\n")
    (issue,) = _spec_issues(tmp_path, group.replace("      text_field: text\n", ""))
    assert issue.key == "source_files[0]" and "label_map cannot be combined with loader.text_field" in issue.message


@pytest.mark.parametrize("loader", ["loader", "test_loader"])
def test_the_target_cannot_be_plain_text(tmp_path: Path, loader: str) -> None:
    """The target's test rows are scored by answers generated for their prompts."""
    target = "  loader: {type: jsonl, path: data/t.jsonl, text_field: text}\n"
    if loader == "test_loader":
        target = "  loader: {type: jsonl, path: data/t.jsonl}\n  test_loader: {type: jsonl, path: data/x.jsonl, text_field: text}\n"
    text = SPEC.replace("  loader: {type: jsonl, path: data/t.jsonl}\n  split: {train: 0.5, validation: 0.25, test: 0.25}\n",
                        target)
    (issue,) = _spec_issues(tmp_path, text)
    assert issue.key == f"target.{loader}" and "text_field ('text') is for sources only" in issue.message
    assert "exact_match or reasoning_gym" in issue.message


def test_text_field_dumps_without_the_prompt_and_reads_again_and_in_groups(tmp_path: Path) -> None:
    """A loader without the option dumps as before it existed (its fingerprint unchanged);
    one with it, without the prompt and response columns it replaces, and is valid again."""
    assert "text_field" not in CsvLoader(type="csv", path="x.csv").model_dump(mode="json")
    loader = CsvLoader(type="csv", path="x.csv", text_field="text")
    dumped = loader.model_dump(mode="json")
    assert "prompt_field" not in dumped and "response_field" not in dumped
    assert CsvLoader.model_validate(dumped) == loader
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"text": "a"}])
    text = SPEC + "source_files:\n  - files: data/a*.jsonl\n    loader: {type: jsonl, text_field: text}\n"
    spec, issues = validate_data(yaml.safe_load(text), str(tmp_path / "subsetctl.yaml"), text)
    assert issues == [] and spec is not None
    assert [s.loader.text_field for s in spec.sources] == ["text", "text"]


def test_validate_names_text_field_for_a_file_of_plain_text(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    write_jsonl(tmp_path / "data" / "corpus.jsonl", [{"text": "The cat sat."}])
    write_jsonl(tmp_path / "data" / "wiki.jsonl", [{"id": 1, "title": "Cats", "text": "The cat sat."}])
    (tmp_path / "data" / "code.csv").write_text("content\nx = 1\n")
    text = SPEC.replace("      text_field: text\n", "") + """\
  - name: wiki
    loader: {type: jsonl, path: data/wiki.jsonl}
  - name: code
    loader: {type: csv, path: data/code.csv}
"""
    issues = check_issues(tmp_path, text)
    assert set(issues) == {f"sources[{i}].loader.response_field" for i in range(3)}, issues  # one issue a source
    assert issues["sources[0].loader.response_field"].message.startswith(
        "the file has one column, 'text', and no prompt and response to learn: set text_field: text (in place of "
        "prompt_field and response_field) to train on each row's text whole")
    assert "has no column 'response' (its first row has 'id', 'title', 'text'), and no prompt and response to " \
           "learn: set text_field: text" in issues["sources[1].loader.response_field"].message
    assert "has one column, 'content'" in issues["sources[2].loader.response_field"].message
    fixed = (text.replace("path: data/corpus.jsonl\n", "path: data/corpus.jsonl\n      text_field: text\n")
             .replace("path: data/wiki.jsonl}", "path: data/wiki.jsonl, text_field: text}")
             .replace("path: data/code.csv}", "path: data/code.csv, text_field: content}"))
    assert check_issues(tmp_path, fixed) == {}
    # a file of prompts alone lacks its answers: it is no text to train on whole
    write_jsonl(tmp_path / "data" / "questions.jsonl", [{"question": "2+2?"}])
    prompts = check_issues(tmp_path, fixed + "  - {name: q, loader: {type: jsonl, path: data/questions.jsonl, "
                                              "prompt_field: question}}\n")
    assert "text_field" not in prompts["sources[3].loader.response_field"].message
    missing = check_issues(tmp_path, fixed.replace("text_field: content", "text_field: body"))
    assert "has no column 'body' (its header has 'content'); set text_field" in \
        missing["sources[2].loader.text_field"].message


def test_validate_takes_a_text_column_some_first_rows_lack(tmp_path: Path) -> None:
    """A JSON Lines row without its text is left out by the data stage (a missing document):
    validate does not refuse a file whose first rows lack the column (it said "every row needs
    its prompt"), even past the rows it reads first, and names a column no row has."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    write_jsonl(tmp_path / "data" / "corpus.jsonl", [{"id": 1}, {"id": 2, "text": "The cat sat."}])
    assert check_issues(tmp_path, SPEC) == {}
    write_jsonl(tmp_path / "data" / "corpus.jsonl", [{"id": i} for i in range(1500)] + [{"id": 0, "text": "a"}])
    assert check_issues(tmp_path, SPEC) == {}
    write_jsonl(tmp_path / "data" / "corpus.jsonl", [{"id": 1, "body": "a"}, {"id": 2, "body": "b"}])
    assert "has no column 'text' (its first 2 rows have 'id', 'body'); set text_field" in \
        check_issues(tmp_path, SPEC)["sources[0].loader.text_field"].message


def test_validate_refuses_text_field_for_a_classifier(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", [{"prompt": "q", "label": 1}] * 4)
    write_jsonl(tmp_path / "data" / "corpus.jsonl", [{"text": "a", "label": 1}])
    text = "model: {kind: classifier}\n" + SPEC.replace(
        "path: data/t.jsonl}", "path: data/t.jsonl, label_field: label}").replace(
        "      text_field: text\n", "      text_field: text\n      label_field: label\n")
    issues = check_issues(tmp_path, text)
    assert "is for a causal LM's plain text, trained on whole, but model.kind is classifier" in \
        issues["sources[0].loader.text_field"].message


def test_a_classifier_s_plain_text_source_is_one_problem_saying_it_needs_a_label_column(tmp_path: Path) -> None:
    """A text source (`type: huggingface, path: text`, or text_field) in a classifier's spec
    was up to four problems for one cause: no column 'prompt', no label_field (or no column
    'label'), text_field is for a causal LM. It is one, at label_field; a text_field source
    whose file has its label column keeps its own problem (the test above)."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", [{"prompt": "q", "label": 1}] * 4)
    (tmp_path / "data" / "notes.txt").write_text("a line\nanother\n")
    write_jsonl(tmp_path / "data" / "corpus.jsonl", [{"text": "a"}, {"text": "b"}])
    target = "target:\n  name: tgt\n  loader: {type: jsonl, path: data/t.jsonl, label_field: label}\n" \
             "  split: {train: 0.5, validation: 0.25, test: 0.25}\n"
    for loader in ("{type: huggingface, path: text, data_files: [data/notes.txt]}",
                   "{type: huggingface, path: text, data_files: [data/notes.txt], text_field: text}",
                   "{type: huggingface, path: text, data_files: [data/notes.txt], label_field: label}",
                   "{type: jsonl, path: data/corpus.jsonl, text_field: text}",
                   "{type: jsonl, path: data/corpus.jsonl, text_field: text, label_field: label}"):
        text = f"model: {{kind: classifier}}\n{target}sources:\n  - name: corpus\n    loader: {loader}\n"
        issues = check_issues(tmp_path, text)
        assert list(issues) == ["sources[0].loader.label_field"], (loader, issues)
        assert issues["sources[0].loader.label_field"].message.startswith(
            "a classifier's sources need a label column"), (loader, issues)


def test_validate_warns_that_shuffling_texts_plants_nothing(tmp_path: Path) -> None:
    """Shuffled among rows without prompts, the texts are the same texts: a negative control
    that is none."""
    from subsetctl.api import spec_warnings
    from subsetctl.spec import Spec

    data = yaml.safe_load(SPEC)
    data["sources"][0]["corrupt"] = {"shuffle_responses": True}
    warnings = spec_warnings(Spec.model_validate(data), tmp_path / "subsetctl.yaml")
    (warning,) = [w for w in warnings if w.key == "sources[0].corrupt.shuffle_responses"]
    assert warning.message.startswith("does nothing to a source read with loader.text_field")
    data["sources"][0]["loader"] = {"type": "jsonl", "path": "data/corpus.jsonl"}
    assert not [w for w in spec_warnings(Spec.model_validate(data), tmp_path / "subsetctl.yaml")
                if w.key.endswith("shuffle_responses")]


def test_validate_checks_a_txt_file_read_by_the_text_builder(tmp_path: Path) -> None:
    """A .txt file read with datasets' ``text`` builder that is a folder, empty or not UTF-8
    passed validate, and the data stage stopped on the builder's own words ("Unable to find
    x.txt", "Please pass `features` or at least one example", a UnicodeDecodeError at a
    position of no line). An empty file beside one with text adds no row: no issue."""
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", qa_rows(4))
    (tmp_path / "dir.txt").mkdir()
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "latin.txt").write_bytes(b"line one\ncaf\xe9\n")
    (tmp_path / "ok.txt").write_text("a document\n")

    def issues(*files: str) -> list[tuple[str, str]]:
        loader = json.dumps({"type": "huggingface", "path": "text", "data_files": list(files), "text_field": "text"})
        return [(key, issue.message) for key, issue in check_issues(
            tmp_path, "target:\n  name: t\n  loader: {type: jsonl, path: data/t.jsonl}\n"
                      f"sources:\n  - name: s\n    loader: {loader}\n").items()]

    assert issues("dir.txt") == [("sources[0].loader.data_files[0]", (f"data file {tmp_path / 'dir.txt'} is a folder, "
                                  "not a file: the text builder reads files (list the folder's files, or a glob of "
                                  "them)"))]
    assert issues("empty.txt") == [("sources[0].loader.data_files[0]", (f"data file {tmp_path / 'empty.txt'} is empty "
                                    "(no line of text): give at least one document (a line a row)"))]
    assert issues("ok.txt", "latin.txt") == [("sources[0].loader.data_files[1]", ("latin.txt: not valid UTF-8 (invalid "
                                              "continuation byte, byte 12, line 2): re-save it as UTF-8"))]
    assert issues("ok.txt", "empty.txt") == []
