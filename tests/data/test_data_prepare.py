"""prepare_source: deterministic shuffling, splits, max_examples, corruption."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from data_helpers import qa_rows, write_jsonl

from subsetctl.data.loaders import COLUMNS
from subsetctl.data.prepare import derangement, prepare_source, split_counts
from subsetctl.data.stage import source_context
from subsetctl.errors import OTHER_UNICODE_FORM, UserError
from subsetctl.spec import SourceSpec, Spec, SplitSpec, TargetSpec


def _source(tmp_path: Path, n: int = 20, **kwargs) -> SourceSpec:
    write_jsonl(tmp_path / "d.jsonl", qa_rows(n))
    return SourceSpec(name="src", loader={"type": "jsonl", "path": "d.jsonl"}, **kwargs)


def _rows(splits) -> dict[str, list[int]]:
    return {name: list(ds["row"]) for name, ds in splits.items()}


def test_same_seed_same_rows_other_seed_other_rows(tmp_path: Path, make_ctx) -> None:
    source = _source(tmp_path, split={"train": 10, "validation": 5, "test": 5})
    a = _rows(prepare_source(source, make_ctx(seed=1)))
    b = _rows(prepare_source(source, make_ctx(seed=1)))
    c = _rows(prepare_source(source, make_ctx(seed=2)))
    assert a == b
    assert a != c
    everything = a["train"] + a["validation"] + a["test"]
    assert sorted(everything) == list(range(20))
    assert everything[:10] != sorted(everything[:10])  # actually shuffled


def test_counts_and_unused_rows(tmp_path: Path, make_ctx) -> None:
    splits = prepare_source(_source(tmp_path, split={"train": 7, "validation": 2, "test": 0}), make_ctx())
    assert {k: len(v) for k, v in splits.items()} == {"train": 7, "validation": 2, "test": 0}
    assert splits["test"].column_names == list(COLUMNS)


def test_fractions_use_every_row(tmp_path: Path, make_ctx) -> None:
    target = TargetSpec(name="t", loader={"type": "jsonl", "path": "d.jsonl"})
    write_jsonl(tmp_path / "d.jsonl", qa_rows(10))
    splits = prepare_source(target, make_ctx("t"))
    sizes = {k: len(v) for k, v in splits.items()}
    assert (
        sum(sizes.values()) == 10 and sizes["train"] == 5 and sizes["validation"] >= 2 and sizes["test"] >= 2
    )


def test_split_counts_mixed_and_remainders() -> None:
    assert split_counts(SplitSpec(train=0.5, validation=0.25, test=0.25), 7) == {
        "train": 3,
        "validation": 2,
        "test": 2,
    }
    assert split_counts(SplitSpec(train=0.5, validation=3, test=0), 10) == {
        "train": 5,
        "validation": 3,
        "test": 0,
    }
    assert split_counts(SplitSpec(train=1.0), 13) == {"train": 13, "validation": 0, "test": 0}


def test_held_out_rows_do_not_depend_on_train_size(tmp_path: Path, make_ctx) -> None:
    small = _rows(
        prepare_source(_source(tmp_path, split={"train": 5, "validation": 3, "test": 4}), make_ctx())
    )
    big = _rows(
        prepare_source(_source(tmp_path, split={"train": 13, "validation": 3, "test": 4}), make_ctx())
    )
    assert small["test"] == big["test"] and small["validation"] == big["validation"]


def test_max_examples(tmp_path: Path, make_ctx) -> None:
    splits = prepare_source(_source(tmp_path, n=30, max_examples=8), make_ctx())
    rows = list(splits["train"]["row"])
    assert len(rows) == 8 and len(set(rows)) == 8
    assert rows != list(range(8))  # a seeded sample, not the first rows


def test_too_many_requested_names_source_and_sizes(tmp_path: Path, make_ctx) -> None:
    source = _source(tmp_path, n=10, split={"train": 8, "validation": 5, "test": 0})
    with pytest.raises(UserError, match=r"'src'.*13 examples.*only 10"):
        prepare_source(source, make_ctx())
    source = _source(tmp_path, n=10, max_examples=4, split={"train": 5})
    with pytest.raises(UserError, match=r"only 4 examples \(max_examples=4 of 10 loaded\)"):
        prepare_source(source, make_ctx())


def test_target_without_validation_rows(tmp_path: Path, make_ctx) -> None:
    write_jsonl(tmp_path / "d.jsonl", qa_rows(3))
    target = TargetSpec(
        name="t",
        loader={"type": "jsonl", "path": "d.jsonl"},
        split={"train": 0.8, "validation": 0.1, "test": 0},
    )
    with pytest.raises(UserError, match="no validation examples"):
        prepare_source(target, make_ctx("t"))


def test_zero_row_split_warns(tmp_path: Path, make_ctx) -> None:
    warnings: list[str] = []
    prepare_source(_source(tmp_path, n=5, split={"train": 0.9, "test": 0.1}), make_ctx(), warnings)
    assert any("split.test" in w for w in warnings)


def test_shuffle_responses_is_a_derangement(tmp_path: Path, make_ctx) -> None:
    clean = prepare_source(_source(tmp_path, n=25), make_ctx())["train"]
    bad = prepare_source(_source(tmp_path, n=25, corrupt={"shuffle_responses": True}), make_ctx())["train"]
    assert bad["prompt"] == clean["prompt"] and bad["row"] == clean["row"]
    assert Counter(bad["response"]) == Counter(clean["response"])
    for prompt, response, meta in zip(bad["prompt"], bad["response"], bad["metadata"]):
        assert response != "a" + prompt[1:-1]  # prompt "q7?" owned response "a7"
        assert json.loads(meta)["shuffled_from_row"] == int(response[1:])


def test_shuffle_responses_moves_labels(tmp_path: Path, make_ctx) -> None:
    write_jsonl(tmp_path / "c.jsonl", [{"prompt": f"p{i}", "y": "ab"[i % 2]} for i in range(10)])
    source = SourceSpec(
        name="c",
        loader={"type": "jsonl", "path": "c.jsonl", "label_field": "y"},
        corrupt={"shuffle_responses": True},
    )
    ds = prepare_source(source, make_ctx(kind="classifier"))["train"]
    assert Counter(ds["label_text"]) == Counter({"a": 5, "b": 5})
    assert all(label == "ab".index(text) for label, text in zip(ds["label"], ds["label_text"]))
    assert any(text != "ab"[row % 2] for text, row in zip(ds["label_text"], ds["row"]))


def test_derangement_has_no_fixed_point() -> None:
    rng = np.random.default_rng(0)
    for n in range(2, 30):
        perm = derangement(n, rng)
        assert sorted(perm) == list(range(n)) and not any(perm == np.arange(n))


def test_empty_source(tmp_path: Path, make_ctx) -> None:
    (tmp_path / "d.jsonl").write_text("\n")
    with pytest.raises(UserError, match="empty"):
        prepare_source(SourceSpec(name="src", loader={"type": "jsonl", "path": "d.jsonl"}), make_ctx())


def test_reasoning_gym_source(make_ctx) -> None:
    source = SourceSpec(
        name="rg",
        loader={"type": "reasoning_gym", "task": "basic_arithmetic", "size": 12},
        split={"train": 8, "validation": 4},
    )
    splits = prepare_source(source, make_ctx("rg", seed=3))
    assert len(splits["train"]) == 8 and len(splits["validation"]) == 4
    assert json.loads(splits["train"]["metadata"][0])["rg_seed"] == 3


def test_too_many_requested_advice_fits_the_case(tmp_path: Path, make_ctx) -> None:
    # max_examples far above the rows: raising it cannot help
    source = _source(tmp_path, n=10, max_examples=1000, split={"train": 8, "validation": 5})
    with pytest.raises(UserError) as err:
        prepare_source(source, make_ctx())
    assert "max_examples" not in str(err.value) and "size" not in str(err.value)
    assert "add rows to the source's data (its loader gave 10)" in str(err.value)
    # max_examples cut the rows and the file has enough: raise it
    source = _source(tmp_path, n=10, max_examples=4, split={"train": 5})
    with pytest.raises(UserError, match=r"raise max_examples \(the source has 10 examples\)"):
        prepare_source(source, make_ctx())
    # a generator: raise its size
    source = SourceSpec(name="rg", loader={"type": "reasoning_gym", "task": "leg_counting", "size": 3},
                        split={"train": 5})
    with pytest.raises(UserError, match=r"raise loader\.size \(now 3\)\.$"):
        prepare_source(source, make_ctx())


def test_a_split_larger_than_the_rows_left_says_which_rows_loading_left_out(tmp_path: Path, make_ctx) -> None:
    """20 lines, 5 of them without an answer: "has only 15 examples" did not say why, and
    the warning naming the 5 rows was never shown (the error came first)."""
    rows = [{"prompt": f"q{i}", "response": "" if i % 4 == 0 else str(i)} for i in range(20)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    target = TargetSpec(name="t", loader={"type": "jsonl", "path": "d.jsonl"},
                        split={"train": 10, "validation": 5, "test": 5})
    with pytest.raises(UserError, match=r"^Target 't': split asks for 20 examples .* but it has only 15 examples "
                                        r"\(.*d\.jsonl: 5 of 20 rows have an empty 'response'.*they are left out \(every row needs a gold response\)\)\. Lower"):
        prepare_source(target, make_ctx())


def test_a_split_of_counts_is_said_once_and_fractions_with_their_counts(tmp_path: Path, make_ctx) -> None:
    """A split of counts alone was said twice ("train=10, ... -> train=10, ...")."""
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "response": str(i)} for i in range(8)])
    counted = TargetSpec(name="t", loader={"type": "jsonl", "path": "d.jsonl"},
                         split={"train": 10, "validation": 5, "test": 5})
    with pytest.raises(UserError, match=r"split asks for 20 examples \(train=10, validation=5, test=5\) but"):
        prepare_source(counted, make_ctx())
    mixed = TargetSpec(name="t", loader={"type": "jsonl", "path": "d.jsonl"},
                       split={"train": 0.5, "validation": 5, "test": 2})
    with pytest.raises(UserError, match=r"\(train=0\.5, validation=5, test=2 -> train=4, validation=5, test=2\) but"):
        prepare_source(mixed, make_ctx())


def test_label_map_renames_a_causal_lm_sources_whole_answers(tmp_path: Path) -> None:
    """A classification dataset answering 0/1 as a causal-lm source: label_map teaches the
    target's words (1.0, a whole number stored as a float, is the key 1); an answer merely
    holding a key (10) and one it does not name are kept."""
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"p{i}", "y": [0, 1.0, 10][i % 3]} for i in range(12)])
    spec = Spec.model_validate({
        "target": {"name": "t", "loader": {"type": "jsonl", "path": "d.jsonl"}},
        "sources": [{"name": "sst", "loader": {"type": "jsonl", "path": "d.jsonl", "response_field": "y"},
                     "label_map": {0: "negative", 1: "positive", 5: "neutral"}}]})
    source = spec.sources[0]
    warnings: list[str] = []
    splits = prepare_source(source, source_context(spec, source, tmp_path), warnings)
    answers = Counter(t for ds in splits.values() for t in ds["response"])
    assert answers == {"negative": 4, "positive": 4, "10": 4}
    assert warnings == [  # (not that 1.0 is learned as '1.0': it is renamed)
        ("Source 'sst': label_map names '5', which no row of it has as its answer (its answers: '0', '1.0', '10'); "
         "those keys rename nothing. Write each key as the answer is read (the whole answer; 1.0 matches the key "
         "1, true the key true).")]
    assert set(splits["train"]["label_text"]) <= {""}  # (a classifier's column: untouched)


def test_label_map_renaming_few_of_a_causal_lm_sources_answers_is_warned_about(tmp_path: Path) -> None:
    """A map for one task's 0/1 labels meeting another task's answers (a ``by`` group's
    label_map applies to every task): the arithmetic answer '1' became 'positive' without a
    word. Renaming fewer than half of a source's answers is said, naming what became what and
    the way to map one task only; a map fitting most answers (one class left unmapped) is not."""
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"{i}+1=", "y": i + 1} for i in range(12)])
    write_jsonl(tmp_path / "nli.jsonl", [{"prompt": f"p{i}", "y": i % 3} for i in range(12)])
    spec = Spec.model_validate({
        "target": {"name": "t", "loader": {"type": "jsonl", "path": "d.jsonl"}},
        "sources": [{"name": name, "loader": {"type": "jsonl", "path": path, "response_field": "y"},
                     "label_map": {0: "negative", 1: "positive"}}
                    for name, path in (("add", "d.jsonl"), ("nli", "nli.jsonl"))]})
    found = []
    for source in spec.sources:
        warnings: list[str] = []
        prepare_source(source, source_context(spec, source, tmp_path), warnings)
        found.append([w for w in warnings if "label_map renamed" in w])
    (warning,) = found[0]
    assert warning.startswith("Source 'add': label_map renamed 1 of its 12 answers ('1' -> 'positive'), the others "
                              "being no key ('10', '11', '12', '2', '3' and 6 more)")
    assert "list that task as a source of its own (its loader's `where`" in warning
    assert found[1] == []  # 0 and 1 mapped, 2 (neutral) kept: 8 of 12 renamed, as meant


def test_label_map_renaming_few_answers_shows_them_apart_from_their_other_unicode_form(tmp_path: Path) -> None:
    """The few-answers-renamed warning quotes answers as the other label messages do
    (shown_text): an NFD answer 'ne\u0301gatif' (no key) beside the NFC key 'négatif' it
    was renamed from printed alike, as if the key had matched it."""
    composed, decomposed = "n\u00e9gatif", "ne\u0301gatif"
    answers = [composed] + [decomposed] * 3
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"p{i}", "y": answer} for i, answer in enumerate(answers)])
    spec = Spec.model_validate({
        "target": {"name": "t", "loader": {"type": "jsonl", "path": "d.jsonl"}},
        "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "d.jsonl", "response_field": "y"},
                     "label_map": {composed: "non"}}]})
    warnings: list[str] = []
    prepare_source(spec.sources[0], source_context(spec, spec.sources[0], tmp_path), warnings)
    (warning,) = [w for w in warnings if "label_map renamed" in w]
    assert f"label_map renamed 1 of its 4 answers ('{composed}' -> 'non'), the others being no key " \
           '("ne\\u0301gatif")' in warning, warning


def test_label_map_to_null_drops_a_classifier_sources_rows_before_the_draw(tmp_path: Path, make_ctx) -> None:
    """A 3-class source (0/1/2, 2 neutral) beside a 2-class target: ``{2: null}`` drops the
    neutral rows (a class the target never uses widened the head, and nothing could remove
    it); max_examples counts the rows kept, not those read; a map dropping every row says so."""
    write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}", "y": i % 3} for i in range(30)])
    loader = {"type": "jsonl", "path": "d.jsonl", "prompt_field": "text", "label_field": "y"}
    source = SourceSpec(name="nli", loader=loader, label_map={0: "negative", 1: "positive", 2: None},
                        max_examples=16, split={"train": 1.0, "validation": 0, "test": 0})
    assert source.label_map == {"0": "negative", "1": "positive", "2": None}
    warnings: list[str] = []
    splits = prepare_source(source, make_ctx(kind="classifier"), warnings)
    labels = Counter(t for ds in splits.values() for t in ds["label_text"])
    assert set(labels) == {"negative", "positive"} and sum(labels.values()) == 16
    assert warnings == []
    everything = SourceSpec(name="nli", loader=loader, label_map={0: None, 1: None, 2: None})
    with pytest.raises(UserError, match=r"Source 'nli': its label_map drops every row \(it maps '0', '1', '2' to null"):
        prepare_source(everything, make_ctx(kind="classifier"))


def test_label_map_to_null_drops_a_causal_lm_sources_answers(tmp_path: Path) -> None:
    """With a causal LM, an answer that is a key mapped to null drops its row."""
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"p{i}", "y": i % 3} for i in range(12)])
    spec = Spec.model_validate({
        "target": {"name": "t", "loader": {"type": "jsonl", "path": "d.jsonl"}},
        "sources": [{"name": "nli", "loader": {"type": "jsonl", "path": "d.jsonl", "response_field": "y"},
                     "label_map": {0: "no", 1: "yes", 2: None}}]})
    source = spec.sources[0]
    warnings: list[str] = []
    splits = prepare_source(source, source_context(spec, source, tmp_path), warnings)
    assert Counter(t for ds in splits.values() for t in ds["response"]) == {"no": 4, "yes": 4}
    assert warnings == []
    few = spec.model_copy(update={"sources": [source.model_copy(update={"label_map": {"2": None}})]})
    warnings = []
    prepare_source(few.sources[0], source_context(few, few.sources[0], tmp_path), warnings)
    assert "label_map renamed 4 of its 12 answers ('2' dropped), the others being no key ('0', '1'): answers " \
           "that only happen to equal a key are rewritten or dropped" in warnings[0], warnings


def test_label_map_renames_a_causal_lm_sources_boolean_answers(tmp_path: Path) -> None:
    """A dataset answering JSON true/false (BoolQ) as a causal-lm source of a target answering
    yes/no: ``label_map: {true: 'yes', false: 'no'}``, whose keys are read as labels are ('1',
    '0'), renamed nothing, and the warning said the map names '0' and '1', which it did not
    seem to. A quoted key ('true') matches the answer as written."""
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"p{i}", "y": i % 2 == 0} for i in range(12)])
    for label_map in ({True: "yes", False: "no"}, {"true": "yes", "false": "no"}):
        spec = Spec.model_validate({
            "target": {"name": "t", "loader": {"type": "jsonl", "path": "d.jsonl"}},
            "sources": [{"name": "boolq", "loader": {"type": "jsonl", "path": "d.jsonl", "response_field": "y"},
                         "label_map": label_map}]})
        source = spec.sources[0]
        warnings: list[str] = []
        splits = prepare_source(source, source_context(spec, source, tmp_path), warnings)
        assert Counter(t for ds in splits.values() for t in ds["response"]) == {"yes": 6, "no": 6}, label_map
        assert warnings == [], label_map


def test_a_misspelt_label_map_key_is_said_once_with_the_key_to_write(tmp_path: Path, make_ctx) -> None:
    """An NLI source's label_map key 'entailement' (for 'entailment') got "names 'entailement',
    which no row of it has" and, from the data stage, "has labels the target never uses:
    'entailment'": two warnings for one typo, neither saying which key to write."""
    from datasets import Dataset

    from subsetctl.data.stage import _label_warnings

    write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}", "y": ["entailment", "neutral", "contradiction"][i % 3]}
                                       for i in range(12)])
    source = SourceSpec(name="nli", loader={"type": "jsonl", "path": "d.jsonl", "prompt_field": "text",
                                            "label_field": "y"},
                        label_map={"entailement": "positive", "contradiction": "negative"})
    warnings: list[str] = []
    splits = prepare_source(source, make_ctx(kind="classifier"), warnings)
    (unused,) = warnings
    assert unused == ("Source 'nli': label_map names 'entailement', which no row of it has as its label (its labels: "
                      "'contradiction', 'entailment', 'neutral'); those keys rename nothing. The key 'entailement' "
                      "looks like its label 'entailment' misspelt; the 4 rows whose label is 'entailment' keep it: "
                      "write label_map: {'entailment': 'positive'} instead.")
    target = {"train": Dataset.from_dict({"label_text": ["positive", "negative", "neutral"]})}
    assert _label_warnings("t", {"t": target, "nli": splits}, {"nli": source.label_map}) == []  # said above
    (other,) = _label_warnings("t", {"t": target, "nli": splits})  # (without the map: the class is the target's
    assert "labels the target never uses: 'entailment'" in other  # lack, as before)


def test_a_label_map_key_in_another_unicode_form_than_the_label_is_said_so(tmp_path: Path, make_ctx) -> None:
    """A key 'négatif' typed in the spec (its 'é' one character) beside a file from macOS whose
    label is 'ne' + a combining accent renamed nothing: the warning said the key "looks like its
    label 'négatif' misspelt" and to write {'négatif': ...} instead, the same text twice; a
    one-letter label in the other form ('é') was not even found alike."""
    composed, decomposed = "n\u00e9gatif", "ne\u0301gatif"
    write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}", "y": [decomposed, "positif", "e\u0301"][i % 3]}
                                       for i in range(12)])
    source = SourceSpec(name="fr", loader={"type": "jsonl", "path": "d.jsonl", "prompt_field": "text",
                                           "label_field": "y"},
                        label_map={composed: "\u5426\u5b9a", "positif": "\u80af\u5b9a"})
    warnings: list[str] = []
    prepare_source(source, make_ctx(kind="classifier"), warnings)
    (unused,) = warnings
    assert unused == ("Source 'fr': label_map names 'n\u00e9gatif', which no row of it has as its label (its labels: "
                      '"e\\u0301", "ne\\u0301gatif", \'positif\'); those keys rename nothing. The key \'n\u00e9gatif\' is '
                      f'its label "ne\\u0301gatif" in another Unicode form ({OTHER_UNICODE_FORM}); the 4 rows whose label '
                      'is "ne\\u0301gatif" keep it: write label_map: {"ne\\u0301gatif": \'\u5426\u5b9a\'} instead.')
    written = unused.split("write label_map: ")[1].removesuffix(" instead.")
    assert yaml.safe_load(written) == {decomposed: "\u5426\u5b9a"}  # as YAML reads it, the data's label
    warnings.clear()
    prepare_source(SourceSpec(name="fr", loader=source.loader, label_map={"\u00e9": "x"}), make_ctx(kind="classifier"),
                   warnings)
    assert 'The key \'\u00e9\' is its label "e\\u0301" in another Unicode form' in warnings[0], warnings


def test_a_label_map_key_that_renamed_rows_is_no_misspelt_key(tmp_path: Path, make_ctx) -> None:
    """A key that renames rows into a class close to its own spelling ('POSITIVE' -> 'Positive',
    'contradiction' -> 'contradicts') was taken for a misspelt key by the data stage, which then
    said nothing of the classes the target lacks ('Positive' beside the target's 'positive')."""
    from datasets import Dataset

    from subsetctl.data.stage import _label_warnings

    write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}", "y": ["POSITIVE", "NEGATIVE", "contradiction"][i % 3]}
                                       for i in range(12)])
    source = SourceSpec(name="s", loader={"type": "jsonl", "path": "d.jsonl", "prompt_field": "text",
                                          "label_field": "y"},
                        label_map={"POSITIVE": "Positive", "NEGATIVE": "Negative", "contradiction": "contradicts"})
    warnings: list[str] = []
    splits = prepare_source(source, make_ctx(kind="classifier"), warnings)
    assert warnings == []  # (every key renamed rows)
    target = {"train": Dataset.from_dict({"label_text": ["positive", "negative", "contradiction"]})}
    (said,) = _label_warnings("t", {"t": target, "s": splits}, {"s": source.label_map})
    assert said.startswith("Source 's' has labels the target never uses: 'Negative', 'Positive', 'contradicts'.")
    assert "'Positive' (the target's 'positive')" in said


def test_label_map_renames_a_classifier_sources_labels_to_the_targets_classes(tmp_path: Path, make_ctx) -> None:
    """Classes are matched across files by name, and nothing mapped one file's onto
    another's: an SST-2-style source labelled 0/1 beside a target labelled
    'negative'/'positive' could only teach two classes of its own."""
    write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}", "y": i % 3} for i in range(12)])
    source = SourceSpec(name="sst", loader={"type": "jsonl", "path": "d.jsonl", "prompt_field": "text",
                                            "label_field": "y"},
                        label_map={0: "negative", 1.0: "positive", "7": "neutral"})
    assert source.label_map == {"0": "negative", "1": "positive", "7": "neutral"}  # keys as labels read
    warnings: list[str] = []
    splits = prepare_source(source, make_ctx(kind="classifier"), warnings)
    labels = Counter(t for ds in splits.values() for t in ds["label_text"])
    assert labels == {"negative": 4, "positive": 4, "2": 4}  # a label it does not name keeps its own
    (unused,) = warnings
    assert unused == ("Source 'sst': label_map names '7', which no row of it has as its label (its labels: '0', "
                      "'1', '2'); those keys rename nothing. Write each key as the label is read (JSON 1, 1.0 and "
                      "true read '1'; a CSV cell as written).")
    assert list(splits["train"].column_names) == list(COLUMNS)
    for bad in ({0: ""}, {0: ["a"]}):
        with pytest.raises(ValueError, match="which is no class name"):
            SourceSpec(name="sst", loader={"type": "jsonl", "path": "d.jsonl"}, label_map=bad)
