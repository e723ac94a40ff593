"""``loader.messages_field``: chat-format rows read as one prompt and response, the rows
left out, and the spec and ``validate`` rules of the option."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from data_helpers import check_issues, write_jsonl

from subsetctl.data.loaders import load_huggingface, load_jsonl, load_parquet
from subsetctl.errors import UserError
from subsetctl.spec import HuggingFaceLoader, JsonlLoader, ParquetLoader
from subsetctl.spec.reading import validate_data


def _chat(*turns: tuple[str, str], style: str = "openai") -> list[dict[str, str]]:
    """A chat's messages, ``(role, text)`` each, OpenAI-style or ShareGPT-style."""
    if style == "openai":
        return [{"role": role, "content": text} for role, text in turns]
    names = {"user": "human", "assistant": "gpt", "system": "system"}
    return [{"from": names[role], "value": text} for role, text in turns]


def _jsonl(tmp_path: Path, rows: list[dict[str, Any]], field: str = "messages") -> JsonlLoader:
    write_jsonl(tmp_path / "chat.jsonl", rows)
    return JsonlLoader(type="jsonl", path="chat.jsonl", messages_field=field)


def test_openai_style_rows_give_prompt_and_response(tmp_path: Path, make_ctx) -> None:
    rows = [{"messages": _chat(("user", "2+2?"), ("assistant", "4")), "id": 7},
            {"messages": _chat(("user", "3+3?"), ("assistant", "6")), "id": 8}]
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ds["prompt"] == ["2+2?", "3+3?"] and ds["response"] == ["4", "6"]
    assert [json.loads(m) for m in ds["metadata"]] == [{"id": 7}, {"id": 8}]  # the chat itself is not metadata
    assert ctx.notices == []  # no "each prompt is its JSON text"


def test_sharegpt_style_rows_give_prompt_and_response(tmp_path: Path, make_ctx) -> None:
    rows = [{"conversations": _chat(("user", "hi"), ("assistant", "hello"), style="sharegpt")}]
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, rows, "conversations"), ctx)
    assert ds["prompt"] == ["hi"] and ds["response"] == ["hello"] and ctx.notices == []


def test_system_messages_are_the_chat_context(tmp_path: Path, make_ctx) -> None:
    rows = [{"messages": _chat(("system", "Be brief."), ("user", "2+2?"), ("assistant", "4"))},
            {"messages": _chat(("system", "A."), ("system", " "), ("system", "B."), ("user", "q"), ("assistant", "a"),
                               style="sharegpt")}]
    ds = load_jsonl(_jsonl(tmp_path, rows), make_ctx())
    assert ds["prompt"] == ["2+2?", "q"]
    assert [json.loads(m) for m in ds["metadata"]] == [  # blank system messages are left out
        {"chat_context": [{"role": "system", "content": "Be brief."}]},
        {"chat_context": [{"role": "system", "content": "A."}, {"role": "system", "content": "B."}]}]


@pytest.mark.parametrize("style", ["openai", "sharegpt"])
def test_multi_turn_rows_keep_their_earlier_turns_as_context(tmp_path: Path, make_ctx, style: str) -> None:
    multi = {"messages": _chat(("system", "S"), ("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"),
                               style=style), "id": 2}
    rows = [{"messages": _chat(("user", "q"), ("assistant", "r"), style=style), "id": 1}, multi]
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ds["prompt"] == ["q", "c"] and ds["response"] == ["r", "d"] and ds["row"] == [0, 1]
    assert [json.loads(m) for m in ds["metadata"]] == [
        {"id": 1},
        {"id": 2, "chat_context": [{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
                                   {"role": "assistant", "content": "b"}]}]
    assert ctx.notices == []


def test_a_rows_own_chat_context_key_is_an_error(tmp_path: Path, make_ctx) -> None:
    for row in ({"chat_context": "mine"}, {"metadata": {"chat_context": "mine"}}):
        rows = [{"messages": _chat(("user", "q"), ("assistant", "r")), **row}]
        with pytest.raises(UserError, match=r"line 1: the row has a key of its own named 'chat_context'"):
            load_jsonl(_jsonl(tmp_path, rows), make_ctx())


@pytest.mark.parametrize(("value", "kind", "detail"), [
    ("just text", "not a list of messages", "the value is a str"),
    ([], "not a list of messages", "the value is an empty list"),
    ([{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}], "not a list of messages",
     "message 1 has the role 'tool'"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": None}], "not a list of messages",
     "message 2 has no text content"),
    ([{"role": "user", "content": {"type": "text", "text": "x"}}, {"role": "assistant", "content": "y"}],
     "not a list of messages", "message 1 has a dict as content, not text or a list of text parts"),
    ([{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "u"}}]},
      {"role": "assistant", "content": "y"}],
     "content parts that are not text", "message 1's content part 2 has the type 'image_url', not a text part's (text, input_text, output_text)"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": [{"type": "text", "text": None}]}],
     "content parts that are not text", "message 2's content part 1 (type 'text') has no text"),
    ([{"role": "user", "content": [{"text": "x"}]}, {"role": "assistant", "content": "y"}],
     "content parts that are not text", "message 1's content part 1 has the type None, not a text part's (text, input_text, output_text)"),
    ([{"role": "user", "content": [3.5]}, {"role": "assistant", "content": "y"}],
     "content parts that are not text", "message 1's content part 1 is a float, not a part"),
    ([{"role": "user", "content": "x"}], "last message not the assistant's", "the last message is the user's"),
    ([{"role": "assistant", "content": "y"}], "no user message just before the answer",
     "the message before the answer is none, not the user's"),
    ([{"role": "user", "content": "x"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "y"}],
     "no user message just before the answer", "the message before the answer is the system's, not the user's"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}],
     "no user message just before the answer", "the message before the answer is the assistant's, not the user's"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "y"}],
     "turns that do not alternate", "message 2 is the user's where the assistant's comes"),
    ([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "y"}],
     "turns that do not alternate", "message 1 is the assistant's where the user's comes"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "system", "content": "s"},
      {"role": "user", "content": "q"}, {"role": "assistant", "content": "y"}],
     "turns that do not alternate", "message 3 is the system's where the user's comes"),
])
def test_malformed_rows_are_left_out_with_a_notice(tmp_path: Path, make_ctx, value: Any, kind: str,
                                                   detail: str) -> None:
    rows = [{"messages": _chat(("user", "q"), ("assistant", "r"))}, {"messages": value}]
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ds["prompt"] == ["q"]
    (notice,) = ctx.notices
    assert "1 of 2 rows is left out, its 'messages' (loader.messages_field) being no chat" in notice
    assert f"{kind} (line 2; the first: {detail}" in notice


def _parts(*texts: str) -> list[dict[str, str]]:
    """A message's content as OpenAI-style text parts."""
    return [{"type": "text", "text": text} for text in texts]


def test_text_content_parts_are_read_as_their_texts_joined(tmp_path: Path, make_ctx) -> None:
    rows = [{"messages": [{"role": "system", "content": _parts("Be ", "brief.")},
                          {"role": "user", "content": [*_parts("2+"), "2?"]},  # (a plain string is a part too)
                          {"role": "assistant", "content": _parts("4")}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": _parts("a", "\n", "b")}]}]
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ds["prompt"] == ["2+2?", "q"] and ds["response"] == ["4", "a\nb"] and ctx.notices == []
    assert json.loads(ds["metadata"][0]) == {"chat_context": [{"role": "system", "content": "Be brief."}]}
    # no parts are no text: a system message's are dropped, an answer's is blank, a user message's an empty prompt
    rows = [{"messages": [{"role": "system", "content": []}, {"role": "user", "content": "q"},
                          {"role": "assistant", "content": "a"}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": []}]},
            {"messages": [{"role": "user", "content": []}, {"role": "assistant", "content": "a"}]}]
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ds["prompt"] == ["q", ""] and json.loads(ds["metadata"][0]) == {}
    assert "1 of 3 rows has an empty assistant's answer" in ctx.notices[0]
    assert "1 of 2 rows kept have an empty user message" in ctx.notices[1]


def test_responses_api_text_parts_and_developer_messages_are_read(tmp_path: Path, make_ctx) -> None:
    # the Responses API's items: a user's text as input_text, an assistant's as output_text
    # (with annotations beside it), a system (developer-less) message's as input_text
    rows = [{"messages": [{"role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
                          {"role": "user", "content": [{"type": "input_text", "text": "2+"},
                                                       {"type": "input_text", "text": "2?"}]},
                          {"role": "assistant", "content": [{"type": "output_text", "text": "4",
                                                             "annotations": []}]}]}]
    rows.append({"messages": [{"role": "developer", "content": [{"type": "input_text", "text": "Be terse."}]},
                              {"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6"}]})
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ds["prompt"] == ["2+2?", "3+3?"] and ds["response"] == ["4", "6"] and ctx.notices == []
    assert json.loads(ds["metadata"][0]) == {"chat_context": [{"role": "system", "content": "Be brief."}]}
    # a developer message (OpenAI's reasoning models', the Responses API's) is the system message
    assert json.loads(ds["metadata"][1]) == {"chat_context": [{"role": "system", "content": "Be terse."}]}


def test_rows_with_parts_that_are_not_text_are_left_out_with_a_notice_of_their_own(tmp_path: Path,
                                                                                   make_ctx) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    rows = [{"messages": [{"role": "user", "content": _parts("q1")}, {"role": "assistant", "content": "a1"}]},
            {"messages": [{"role": "user", "content": [*_parts("What is it?"), image]},
                          {"role": "assistant", "content": "a cat"}]},
            {"messages": _chat(("user", "q2"), ("assistant", "a2"))},
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "",
                                                                                             "format": "wav"}}]},
                          {"role": "assistant", "content": "a3"}]},
            {"messages": _chat(("user", "q4"))}]
    ctx = make_ctx()
    ds = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ds["prompt"] == ["q1", "q2"] and ds["response"] == ["a1", "a2"] and ds["row"] == [0, 2]
    parts, answered = ctx.notices
    assert ("2 of 5 rows are left out, their 'messages' (loader.messages_field) being no chat: content parts that "
            "are not text (line 2, line 4; the first: message 1's content part 2 has the type 'image_url', not "
            "a text part's (text, input_text, output_text))") in parts
    assert "1 of 5 rows is left out" in answered and "last message not the assistant's (line 5" in answered
    with pytest.raises(UserError, match=r"no row has a chat in 'messages' \(loader.messages_field\) \(1 content "
                                        r"parts that are not text \(first at line 1: message 1's content part 2"):
        load_jsonl(_jsonl(tmp_path, [rows[1]]), make_ctx())


def test_text_parts_from_a_parquet_struct_column_are_read(tmp_path: Path, make_ctx) -> None:
    # a Parquet struct column gives each part every key its parts have (image_url null in a text part)
    image = {"type": "image_url", "text": None, "image_url": {"url": "https://example.com/cat.png"}}
    rows = [{"messages": [{"role": "system", "content": _parts("S")},
                          {"role": "user", "content": [*_parts("a", "b"), *_parts("c")]},
                          {"role": "assistant", "content": _parts("d")}], "n": 1},
            {"messages": [{"role": "user", "content": [*_parts("x"), image]},
                          {"role": "assistant", "content": _parts("y")}], "n": 2},
            {"messages": [{"role": "user", "content": _parts("q")}, {"role": "assistant", "content": _parts("r")}],
             "n": 3}]
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "chat.parquet")
    assert pq.read_table(tmp_path / "chat.parquet")["messages"].to_pylist()[0][0]["content"][0] == {
        "type": "text", "text": "S", "image_url": None}
    ctx = make_ctx()
    ds = load_parquet(ParquetLoader(type="parquet", path="chat.parquet", messages_field="messages"), ctx)
    assert ds["prompt"] == ["abc", "q"] and ds["response"] == ["d", "r"] and ds["row"] == [0, 2]
    assert [json.loads(m) for m in ds["metadata"]] == [
        {"n": 1, "chat_context": [{"role": "system", "content": "S"}]}, {"n": 3}]
    (notice,) = ctx.notices
    assert "1 of 3 rows is left out" in notice and "content parts that are not text (row 2" in notice
    from datasets import Dataset

    Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    ctx = make_ctx()
    ds = load_huggingface(HuggingFaceLoader(type="huggingface", path="hf", messages_field="messages"), ctx)
    assert ds["prompt"] == ["abc", "q"] and len(ctx.notices) == 1


def test_a_dataset_mixing_text_and_parts_contents_gives_the_texts_not_their_json(tmp_path: Path, make_ctx) -> None:
    """datasets 5 stores a message's content that is text in some messages and a list of
    parts in others as JSON text (a ``Json`` feature inside the chat): read as stored, the
    prompt was the parts' JSON and the text "hi" was '"hi"', quotes included. The answer
    "4", which datasets keeps as the JSON number 4, is the text "4"."""
    import dataclasses

    (tmp_path / "mixed").mkdir()
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": _parts("2+", "2?")},
                          {"role": "assistant", "content": "4"}]},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _parts("hello")}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "true"}]}]
    write_jsonl(tmp_path / "mixed" / "train.jsonl", rows)
    options = HuggingFaceLoader(type="huggingface", path="mixed", messages_field="messages")
    ctx = make_ctx()
    ds = load_huggingface(options, ctx)
    assert ds["prompt"] == ["2+2?", "hi", "q"] and ds["response"] == ["4", "hello", "true"] and ctx.notices == []
    assert [json.loads(m) for m in ds["metadata"]] == [
        {"chat_context": [{"role": "system", "content": "Be brief."}]}, {}, {}]
    capped = load_huggingface(options, dataclasses.replace(make_ctx(), keep_at_most=2))  # rows read again
    assert len(capped) == 2 and set(capped["prompt"]) <= {"2+2?", "hi", "q"}


def test_a_saved_dataset_whose_json_feature_does_not_decode_is_read(tmp_path: Path, make_ctx) -> None:
    """A dataset saved with its ``Json`` feature cast to ``decode=False`` (as done to keep a
    column's JSON text when mapping) stopped the data stage with datasets' RuntimeError
    ("Decoding is disabled for this feature"), a traceback."""
    from datasets import Json, load_dataset

    rows = [{"messages": [{"role": "user", "content": _parts("2+", "2?")}, {"role": "assistant", "content": "4"}],
             "n": 1},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "n": "two"}]
    write_jsonl(tmp_path / "mixed.jsonl", rows)
    loaded = load_dataset("json", data_files=str(tmp_path / "mixed.jsonl"), split="train")
    loaded.cast_column("n", Json(decode=False)).save_to_disk(str(tmp_path / "saved"))
    ds = load_huggingface(HuggingFaceLoader(type="huggingface", path="saved", messages_field="messages"), make_ctx())
    assert ds["prompt"] == ["2+2?", "hi"] and ds["response"] == ["4", "hello"]
    assert [json.loads(m)["n"] for m in ds["metadata"]] == [1, "two"]


def test_a_parquet_file_datasets_wrote_with_json_contents_gives_the_texts(tmp_path: Path, make_ctx) -> None:
    """datasets 5 writes such contents to Parquet (``to_parquet``, the hub's files) as an
    ``arrow.json`` column: read as stored, the prompt was the parts' JSON and the text "hi"
    was '"hi"'; a top-level column of mixed values likewise."""
    import dataclasses

    from datasets import load_dataset

    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": _parts("2+", "2?")},
                          {"role": "assistant", "content": "4"}], "n": 1},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _parts("hello")}],
             "n": "two"}]
    write_jsonl(tmp_path / "mixed.jsonl", rows)
    load_dataset("json", data_files=str(tmp_path / "mixed.jsonl"), split="train").to_parquet(tmp_path / "chat.parquet")
    options = ParquetLoader(type="parquet", path="chat.parquet", messages_field="messages")
    ctx = make_ctx()
    ds = load_parquet(options, ctx)
    assert ds["prompt"] == ["2+2?", "hi"] and ds["response"] == ["4", "hello"] and ctx.notices == []
    assert [json.loads(m) for m in ds["metadata"]] == [
        {"n": 1, "chat_context": [{"role": "system", "content": "Be brief."}]}, {"n": "two"}]
    capped = load_parquet(options, dataclasses.replace(make_ctx(), keep_at_most=1))  # rows read again
    assert len(capped) == 1 and capped["prompt"][0] in {"2+2?", "hi"}


def test_a_drawn_sample_reads_text_parts_as_the_whole_read_does(tmp_path: Path, make_ctx) -> None:
    rows = [{"messages": [{"role": "user", "content": _parts("earlier")}, {"role": "assistant", "content": f"e{i}"},
                          {"role": "user", "content": _parts("q", str(i % 3))},
                          {"role": "assistant", "content": _parts("a", str(i % 3))}]} for i in range(30)]
    rows[4]["messages"][0]["content"].append({"type": "image_url", "image_url": {"url": "u"}})
    whole = load_jsonl(_jsonl(tmp_path, rows), make_ctx())
    ctx = make_ctx()
    ctx = type(ctx)(source_name=ctx.source_name, base_dir=ctx.base_dir, kind=ctx.kind, seed=ctx.seed, keep_at_most=5)
    drawn = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ctx.drawn == {"rows": 29} and len(drawn) == 5 and 4 not in drawn["row"]
    by_row = dict(zip(whole["row"], zip(whole["prompt"], whole["response"], whole["metadata"], strict=True),
                      strict=True))
    assert all(by_row[r] == (p, a, m) for r, p, a, m in zip(drawn["row"], drawn["prompt"], drawn["response"],
                                                            drawn["metadata"], strict=True))
    assert set(drawn["prompt"]) <= {"q0", "q1", "q2"}


def test_a_blank_answer_and_a_null_chat_follow_the_common_rules(tmp_path: Path, make_ctx) -> None:
    rows = [{"messages": _chat(("user", "q"), ("assistant", "r"))}, {"messages": _chat(("user", "q"), ("assistant", " "))}]
    ctx = make_ctx()
    assert load_jsonl(_jsonl(tmp_path, rows), ctx)["response"] == ["r"]
    # the chat is not empty: its answer is (as its user message is, for a prompt)
    assert "1 of 2 rows has an empty assistant's answer in 'messages' (loader.messages_field) (line 2)" \
        in ctx.notices[0]
    with pytest.raises(UserError, match=r"assistant's answer in 'messages' \(loader.messages_field\) is empty in "
                                        r"every row \(line 1, line 2\)"):
        load_jsonl(_jsonl(tmp_path, [rows[1], rows[1]]), make_ctx())
    ctx = make_ctx()
    load_jsonl(_jsonl(tmp_path, [rows[0], {"messages": _chat(("user", ""), ("assistant", "r"))}]), ctx)
    assert "1 of 2 rows kept have an empty user message in 'messages' (loader.messages_field) (line 2)" \
        in ctx.notices[0]
    with pytest.raises(UserError, match=r"line 2: 'messages' \(loader.messages_field\) is missing, null or NaN"):
        load_jsonl(_jsonl(tmp_path, [rows[0], {"messages": None}]), make_ctx())
    with pytest.raises(UserError, match=r"has no column 'messages' \(asked for by loader.messages_field\)"):
        load_jsonl(_jsonl(tmp_path, [{"prompt": "q", "response": "r"}]), make_ctx())


def test_no_row_left_is_an_error_that_says_why(tmp_path: Path, make_ctx) -> None:
    rows = [{"messages": _chat(("user", "a"), ("assistant", "b"), ("assistant", "d"))},
            {"messages": _chat(("user", "q"))}]
    with pytest.raises(UserError) as exc:
        load_jsonl(_jsonl(tmp_path, rows), make_ctx())
    text = str(exc.value)
    assert "no row has a chat in 'messages' (loader.messages_field)" in text
    assert ("1 no user message just before the answer (first at line 1: the message before the answer is the "
            "assistant's, not the user's)") in text
    assert "1 last message not the assistant's (first at line 2: the last message is the user's)" in text


def test_a_drawn_sample_of_chats_maps_the_rows_it_keeps(tmp_path: Path, make_ctx) -> None:
    rows = [{"messages": _chat(("user", "earlier"), ("assistant", f"e{i}"), ("user", f"q{i % 3}"),
                               ("assistant", f"a{i % 3}"))} for i in range(30)]  # alike but for the context
    rows[4] = {"messages": _chat(("user", "x"))}
    whole = load_jsonl(_jsonl(tmp_path, rows), make_ctx())
    ctx = make_ctx()
    ctx = type(ctx)(source_name=ctx.source_name, base_dir=ctx.base_dir, kind=ctx.kind, seed=ctx.seed, keep_at_most=5)
    drawn = load_jsonl(_jsonl(tmp_path, rows), ctx)
    assert ctx.drawn == {"rows": 29} and len(drawn) == 5
    by_row = dict(zip(whole["row"], zip(whole["prompt"], whole["response"], whole["metadata"], strict=True),
                      strict=True))
    assert all(by_row[r] == (p, a, m) for r, p, a, m in zip(drawn["row"], drawn["prompt"], drawn["response"],
                                                            drawn["metadata"], strict=True))
    assert len(set(drawn["metadata"])) == 5 and all("chat_context" in m for m in drawn["metadata"])
    # a row read again must be the one checked, its context too (the same last turns after other ones differ)
    from subsetctl.data.loaders.chat import ChatColumns

    columns = ChatColumns("messages", make_ctx(), "file", str)
    digests = set()
    for first in ("earlier", "changed"):
        columns._texts({"messages": _chat(("user", first), ("assistant", "e"), ("user", "q"), ("assistant", "a"))})
        digests.add(columns._digest("q", "a"))
    assert len(digests) == 2


def test_parquet_and_huggingface_read_chats(tmp_path: Path, make_ctx) -> None:
    rows = [{"conversations": _chat(("system", "S"), ("user", "hi"), ("assistant", "yo"), style="sharegpt"), "n": 1},
            {"conversations": _chat(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"),
                                    style="sharegpt"), "n": 2}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chat.parquet")
    ctx = make_ctx()
    ds = load_parquet(ParquetLoader(type="parquet", path="chat.parquet", messages_field="conversations"), ctx)
    context = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert ds["prompt"] == ["hi", "c"] and ds["response"] == ["yo", "d"] and ctx.notices == []
    assert [json.loads(m) for m in ds["metadata"]] == [
        {"n": 1, "chat_context": [{"role": "system", "content": "S"}]}, {"n": 2, "chat_context": context}]
    from datasets import Dataset

    Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    ctx = make_ctx()
    ds = load_huggingface(HuggingFaceLoader(type="huggingface", path="hf", messages_field="conversations"), ctx)
    assert ds["prompt"] == ["hi", "c"] and json.loads(ds["metadata"][1])["chat_context"] == context


def test_a_classifier_cannot_load_chats(tmp_path: Path, make_ctx) -> None:
    rows = [{"messages": _chat(("user", "q"), ("assistant", "r")), "label": 1}]
    with pytest.raises(UserError, match="messages_field is for a causal LM's chats, but model.kind is classifier"):
        load_jsonl(_jsonl(tmp_path, rows), make_ctx(kind="classifier"))


# ------------------------------------------------------------------------- spec and validate


SPEC = """\
target:
  name: tgt
  loader:
    type: jsonl
    path: data/t.jsonl
    messages_field: messages
  split: {train: 0.5, validation: 0.25, test: 0.25}
sources:
  - name: rg
    loader: {type: reasoning_gym, task: basic_arithmetic, size: 10}
"""


@pytest.mark.parametrize("key", ["prompt_field", "response_field"])
def test_messages_field_with_prompt_or_response_field_is_a_spec_error(tmp_path: Path, key: str) -> None:
    text = SPEC.replace("    messages_field: messages\n", f"    {key}: text\n    messages_field: messages\n")
    spec, issues = validate_data(yaml.safe_load(text), str(tmp_path / "subsetctl.yaml"), text)
    assert spec is None
    (issue,) = issues
    assert issue.key == f"target.loader.{key}" and issue.line == 6
    assert "cannot be combined with messages_field ('messages')" in issue.message


def test_messages_field_reads_again_from_a_dump_and_in_groups(tmp_path: Path) -> None:
    """A loader dumped (resolved specs, ``source_files`` groups) is valid again, and one
    without the option dumps as before it existed."""
    loader = JsonlLoader(type="jsonl", path="x.jsonl", messages_field="messages")
    dumped = loader.model_dump(mode="json")
    assert "prompt_field" not in dumped and JsonlLoader.model_validate(dumped) == loader
    assert "messages_field" not in JsonlLoader(type="jsonl", path="x.jsonl").model_dump(mode="json")
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"messages": _chat(("user", "q"), ("assistant", "r"))}])
    text = SPEC + "source_files:\n  - files: data/a*.jsonl\n    loader: {type: jsonl, messages_field: messages}\n"
    spec, issues = validate_data(yaml.safe_load(text), str(tmp_path / "subsetctl.yaml"), text)
    assert issues == [] and spec is not None
    assert [getattr(s.loader, "messages_field", None) for s in spec.sources] == [None, "messages"]


def test_validate_names_a_missing_messages_column(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", [{"conversations": _chat(("user", "q"), ("assistant", "r"))}] * 4)
    issues = check_issues(tmp_path, SPEC)
    assert set(issues) == {"target.loader.messages_field"}
    assert ("no column 'messages' (its first row has 'conversations'); set messages_field to one of them"
            in issues["target.loader.messages_field"].message)
    assert check_issues(tmp_path, SPEC.replace("messages_field: messages", "messages_field: conversations")) == {}


def test_validate_refuses_messages_field_for_a_classifier(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "t.jsonl", [{"messages": _chat(("user", "q"), ("assistant", "r")), "label": 1}])
    text = "model: {kind: classifier}\n" + SPEC.replace(
        "    messages_field: messages\n", "    messages_field: messages\n    label_field: label\n").replace(
        "  - name: rg\n    loader: {type: reasoning_gym, task: basic_arithmetic, size: 10}\n",
        "  - name: s\n    loader: {type: jsonl, path: data/t.jsonl, prompt_field: messages, label_field: label}\n")
    issues = check_issues(tmp_path, text)
    assert "model.kind is classifier" in issues["target.loader.messages_field"].message


@pytest.mark.parametrize("value", ["earlier text", [{"role": "Human", "content": "hi"}], [{"role": "user"}],
                                   {"role": "user", "content": "hi"}])
def test_a_prompt_field_rows_chat_context_that_is_no_context_stops_the_data_stage(tmp_path: Path, make_ctx,
                                                                                   value: Any) -> None:
    """A row's own chat_context key (a column, a plugin loader's metadata) is rendered
    before its prompt by the model stages: a value they would refuse (meta-init, after the
    data stage) stops the data stage, naming the row."""
    for own in ({"chat_context": value}, {"metadata": {"chat_context": value}}):
        write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "q", "response": "r"}, {"prompt": "q", "response": "r", **own}])
        loader = JsonlLoader(type="jsonl", path="rows.jsonl", prompt_field="prompt", response_field="response")
        with pytest.raises(UserError, match=r"line 2: its 'chat_context' \(a column, or a key of its metadata\) "
                                            r"is not a list of \{role, content\} messages"):
            load_jsonl(loader, make_ctx())


@pytest.mark.parametrize("context", [[("system", "be \ud800 brief")],
                                     [("user", "hi"), ("assistant", "there \udfff")]])
def test_a_lone_surrogate_in_a_chats_earlier_messages_leaves_the_row_out_as_in_its_prompt(tmp_path: Path, make_ctx,
                                                                                          context: list) -> None:
    """The prompt and the answer were checked, the earlier messages not: the row loaded
    and meta-init stopped with an internal error from the tokenizer ("TextEncodeInput
    must be Union[...]"). Such a row is left out, as one with such a prompt, said once."""
    rows = [{"messages": _chat(("user", "q"), ("assistant", "a"))},
            {"messages": _chat(*context, ("user", "q"), ("assistant", "a"))}]
    ctx = make_ctx()
    assert len(load_jsonl(_jsonl(tmp_path, rows), ctx)) == 1
    (notice,) = ctx.notices
    assert re.search(r"1 of 2 rows holds text that is not valid UTF-8 \(line 2\); it is left out\. "
                     r"Line 2: the 'messages' value contains an invalid unicode escape \(a lone "
                     r"surrogate such as \\ud800\)", notice), notice
    assert notice.count("chat.jsonl") == 1, notice  # the source and file said once, not again for the first row
    with pytest.raises(UserError, match=r"line 1: the 'messages' value contains an invalid .* No row is left: 1 of 1"):
        load_jsonl(_jsonl(tmp_path, rows[1:]), make_ctx())
    rows[1]["metadata"] = {"keep": "\ud800"}  # elsewhere in the row: kept, as any metadata
    rows[1]["messages"] = _chat(("system", "s"), ("user", "q"), ("assistant", "a"))
    assert len(load_jsonl(_jsonl(tmp_path, rows), make_ctx())) == 2


def test_a_lone_surrogate_in_a_prompt_field_rows_own_chat_context_leaves_the_row_out(tmp_path: Path, make_ctx) -> None:
    """As in a chat's earlier messages (a column, or a plugin loader's metadata): the row is
    left out, said once (it stopped the whole source)."""
    context = [{"role": "system", "content": "be \ud800 brief"}]
    for own in ({"chat_context": context}, {"metadata": {"chat_context": context}},
                {"metadata": json.dumps({"chat_context": context})}):
        write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "q", "response": "r"}, {"prompt": "q", "response": "r", **own}])
        loader = JsonlLoader(type="jsonl", path="rows.jsonl", prompt_field="prompt", response_field="response")
        ctx = make_ctx()
        assert load_jsonl(loader, ctx)["prompt"] == ["q"]
        (notice,) = ctx.notices
        assert re.search(r"1 of 2 rows holds text that is not valid UTF-8 \(line 2\); it is left out\. "
                         r"Line 2: the 'chat_context' value contains an invalid unicode escape", notice), notice
        with pytest.raises(UserError, match=r"line 1: the 'chat_context' value contains .* No row is left: 1 of 1"):
            write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "q", "response": "r", **own}])
            load_jsonl(loader, make_ctx())


def test_a_prompt_field_rows_own_chat_context_is_kept(tmp_path: Path, make_ctx) -> None:
    """A valid one (a plugin loader's, say), none and an empty one load; a classifier,
    which renders no chat, does not check the key."""
    context = [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "q", "response": "r", "chat_context": v}
                                          for v in (context, None, [])])
    loader = JsonlLoader(type="jsonl", path="rows.jsonl", prompt_field="prompt", response_field="response")
    ds = load_jsonl(loader, make_ctx())
    assert [json.loads(m).get("chat_context") for m in ds["metadata"]] == [context, None, []]
    write_jsonl(tmp_path / "labels.jsonl", [{"text": "q", "label": "x", "chat_context": "plain text"}])
    loader = JsonlLoader(type="jsonl", path="labels.jsonl", prompt_field="text", label_field="label")
    assert len(load_jsonl(loader, make_ctx(kind="classifier"))) == 1


def test_a_blank_system_message_between_turns_is_left_out_not_the_row() -> None:
    """Blank system messages are dropped before the order of turns is looked at: one
    between turns made the row 'turns that do not alternate' (or 'no user message just
    before the answer'); the details still number messages as the chat does."""
    from subsetctl.data.loaders.chat import NOT_ALTERNATING, NotAChat, read_chat

    def chat(*turns: tuple[str, str]) -> list[dict[str, str]]:
        return [{"role": role, "content": text} for role, text in turns]

    assert read_chat(chat(("user", "a"), ("assistant", "b"), ("system", " "), ("user", "q"), ("assistant", "y"))) \
        == ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "q", "y")
    assert read_chat(chat(("user", "q"), ("system", ""), ("assistant", "y"))) == ([], "q", "y")
    with pytest.raises(NotAChat) as caught:
        read_chat(chat(("system", ""), ("user", "a"), ("user", "q"), ("assistant", "y")))
    assert caught.value.kind == NOT_ALTERNATING and caught.value.detail.startswith("message 3 is the user's")
