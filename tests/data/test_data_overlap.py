"""The data stage's warnings about held-out target rows in the training data and about
sources that are copies of each other (silently wrong results otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_helpers import write_jsonl

from subsetctl.data.stage import run_data_stage
from subsetctl.spec import Spec


def _rows(prefix: str, n: int, offset: int = 0) -> list[dict]:
    return [{"prompt": f"{prefix} {i}?", "response": str(i)} for i in range(offset, offset + n)]


def _run(tmp_path: Path, sources: list[dict]) -> list[str]:
    spec = Spec.model_validate({
        "project": {"seed": 0},
        "target": {"name": "tgt", "loader": {"type": "jsonl", "path": "t.jsonl"},
                   "split": {"train": 10, "validation": 10, "test": 5}},
        "sources": sources,
    })
    return run_data_stage(spec, tmp_path, tmp_path / "out")["warnings"]


def test_held_out_rows_in_a_source_copies_and_repeats_are_warned(tmp_path: Path) -> None:
    target = _rows("q", 25)
    write_jsonl(tmp_path / "t.jsonl", target)
    write_jsonl(tmp_path / "clean.jsonl", _rows("other", 8))
    write_jsonl(tmp_path / "scraped.jsonl", _rows("other", 4, 100) + [dict(r, prompt=f"  {r['prompt']} ") for r in target])
    warnings = _run(tmp_path, [
        {"name": "clean", "loader": {"type": "jsonl", "path": "clean.jsonl"}},
        {"name": "scraped", "loader": {"type": "jsonl", "path": "scraped.jsonl"}},
        {"name": "clean_again", "loader": {"type": "jsonl", "path": "clean.jsonl"}},
        # the target's own file with shuffled answers: a negative control, not a leak
        {"name": "control", "loader": {"type": "jsonl", "path": "t.jsonl"}, "corrupt": {"shuffle_responses": True}},
    ])
    assert len(warnings) == 2
    assert warnings[0].startswith("Source 'scraped' (15 rows) holds target validation/test rows verbatim")
    assert "of the target's 15 distinct held-out rows" in warnings[0]
    assert warnings[1].startswith("Sources 'clean', 'clean_again' hold exactly the same rows")


def test_a_target_that_repeats_its_rows_across_splits_is_warned(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "t.jsonl", _rows("q", 13) * 2)  # every line twice: copies land in train and test
    write_jsonl(tmp_path / "s.jsonl", _rows("other", 8))
    (warning,) = _run(tmp_path, [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}])
    assert "The target 'tgt' has" in warning and "also appear in its train split" in warning


def test_clean_data_gets_no_overlap_warning(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "t.jsonl", _rows("q", 25))
    write_jsonl(tmp_path / "s.jsonl", _rows("q", 8, 25))  # the same task, other rows
    assert _run(tmp_path, [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}]) == []


def test_target_splits_that_are_legal_but_likely_not_meant_are_warned(tmp_path: Path) -> None:
    """Fractions adding up to 0.7 left 6 of 20 target rows unused, and a 1-row validation
    split decided the selection, without a word."""
    write_jsonl(tmp_path / "t.jsonl", _rows("q", 20))
    write_jsonl(tmp_path / "s.jsonl", _rows("other", 8))
    spec = Spec.model_validate({
        "target": {"name": "tgt", "loader": {"type": "jsonl", "path": "t.jsonl"},
                   "split": {"train": 0.2, "validation": 0.25, "test": 0.25}},
        "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}],
    })
    unused, few = run_data_stage(spec, tmp_path, tmp_path / "out")["warnings"]
    assert "add up to 0.7, so 6 of its 20 examples are left out" in unused
    assert "only 5 validation examples (< 10)" in few
    from subsetctl.data.prepare import _target_split_notes

    (one,) = _target_split_notes(spec.target, {"train": 4, "validation": 1, "test": 5}, 10)
    assert "has only 1 validation example (< 10)" in one  # not "1 validation examples"


def test_many_small_leaks_are_one_warning(tmp_path: Path) -> None:
    """A pool of a thousand sources gave one paragraph per source sharing a row by chance."""
    target = _rows("q", 25)
    write_jsonl(tmp_path / "t.jsonl", target)
    sources = []
    for i in range(8):
        write_jsonl(tmp_path / f"s{i}.jsonl", _rows(f"other{i}", 5) + target)
        sources.append({"name": f"s{i}", "loader": {"type": "jsonl", "path": f"s{i}.jsonl"}})
    (leak,) = [w for w in _run(tmp_path, sources) if "verbatim" in w]
    assert leak.startswith("Sources 's0' (15 rows), 's1' (15 rows), 's2' (15 rows), 's3' (15 rows), 's4' (15 rows) "
                           "and 3 more sources (45 rows) hold target validation/test rows verbatim")


def test_a_copy_of_the_target_with_windows_line_ends_is_still_a_leak(tmp_path: Path) -> None:
    """A CSV cell keeps its line ends verbatim, so a copy of a multi-line target saved on
    Windows (\\r\\n) held the same rows under other bytes and escaped the check."""
    import csv

    target = [{"prompt": f"line one {i}\nline two?", "response": f"{i}\nok"} for i in range(25)]
    write_jsonl(tmp_path / "t.jsonl", target)
    with open(tmp_path / "copy.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["prompt", "response"])
        writer.writerows([r["prompt"].replace("\n", "\r\n"), r["response"].replace("\n", "\r\n")] for r in target)
    (warning,) = _run(tmp_path, [{"name": "copy", "loader": {"type": "csv", "path": "copy.csv"}}])
    assert warning.startswith("Source 'copy' (15 rows) holds target validation/test rows verbatim")


def test_a_source_of_the_targets_own_train_rows_is_warned(tmp_path: Path) -> None:
    """The target's train rows listed as a source (a real user's "also train on the target")
    passed without a word: the leak check looks at held-out rows only, and the copies check
    at sources only; the search then picks it by noise or for weighing the target more."""
    from datasets import load_from_disk

    write_jsonl(tmp_path / "t.jsonl", _rows("q", 25))
    write_jsonl(tmp_path / "s.jsonl", _rows("other", 8))
    assert _run(tmp_path, [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}]) == []
    train = load_from_disk(str(tmp_path / "out" / "tgt" / "train"))
    write_jsonl(tmp_path / "tt.jsonl", [{"prompt": p, "response": r} for p, r in zip(train["prompt"], train["response"])])
    (warning,) = _run(tmp_path, [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}},
                                 {"name": "tt", "loader": {"type": "jsonl", "path": "tt.jsonl"}}])
    assert warning.startswith("Every row of source 'tt' is a row of the train split of the target 'tgt' itself")


def test_the_checks_read_a_splits_rows_without_making_a_dataset_of_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """``select_columns`` made a new ``Dataset`` of every split the checks read (~2 ms each,
    a tenth of the data stage of many small sources): the rows are read from the split's
    Arrow table, in the split's order (its ``select`` mapping applied), as before."""
    from datasets import Dataset

    from subsetctl.data.loaders import dataset_from_columns
    from subsetctl.data.overlap import OverlapCheck

    rows = {"source": ["s"] * 3, "prompt": ["a ", "b", "c\r\n"], "response": ["1", " 2", "3"], "label": [-1] * 3,
            "label_text": [""] * 3, "metadata": ["{}"] * 3, "row": [0, 1, 2]}
    target = {"train": dataset_from_columns(rows).select([2, 0]), "validation": dataset_from_columns(rows).select([1]),
              "test": dataset_from_columns(rows).select(range(0))}
    made: list[str] = []
    for how in ("__init__", "select_columns", "with_format"):  # the ways one is made
        real = getattr(Dataset, how)
        monkeypatch.setattr(Dataset, how, lambda self, *a, _how=how, _real=real, **k: (made.append(_how),
                                                                                     _real(self, *a, **k))[1])
    check = OverlapCheck("tgt", target, "causal-lm")
    assert made == []
    assert check.target_train == {("c", "3"), ("a", "1")} and check.held_out == {("b", "2")}


def test_a_classifiers_overlap_warnings_speak_of_texts_and_labels() -> None:
    """A classifier's rows are a text and its label: the warnings said "the same prompt
    and answer" and "leaks held-out answers", a causal LM's words."""
    from subsetctl.data.loaders import dataset_from_columns
    from subsetctl.data.overlap import OverlapCheck

    def split(texts: list[str], labels: list[str]):  # type: ignore[no-untyped-def]
        n = len(texts)
        return dataset_from_columns({"source": ["s"] * n, "prompt": texts, "response": [""] * n, "label": [0] * n,
                                     "label_text": labels, "metadata": ["{}"] * n, "row": list(range(n))})

    target = {"train": split(["a", "b"], ["pos", "neg"]), "validation": split(["b"], ["neg"]),
              "test": split(["c"], ["pos"])}
    check = OverlapCheck("tgt", target, "classifier")
    check.add("copy", {"train": split(["c", "a"], ["pos", "pos"])})
    repeated, leaking = check.warnings()
    assert "(the same text and label: its data repeats them)" in repeated
    assert leaking.startswith("Source 'copy' (1 row) holds target validation/test rows verbatim (the same text and "
                              "label; of the target's 2 distinct held-out rows): training on them leaks held-out "
                              "labels,")
    assert not any("prompt and answer" in w or "answers" in w for w in check.warnings())


def test_a_large_sources_rows_are_checked_a_batch_at_a_time() -> None:
    """The checks held a source's every row as Python strings, then each row's text joined
    once more and that text encoded, all at once: a 300 MB CSV source took the data stage
    from 0.9 GB to 2.1 GB. Now they hold a batch of rows and a sum of the rows' hashes, and a
    copy of the source in another order is still found to hold the same rows."""
    import tracemalloc

    from subsetctl.data.loaders import dataset_from_columns
    from subsetctl.data.overlap import OverlapCheck

    def split(prompts: list[str]):  # type: ignore[no-untyped-def]
        n = len(prompts)
        return dataset_from_columns({"source": ["s"] * n, "prompt": prompts, "response": ["an answer"] * n,
                                     "label": [-1] * n, "label_text": [""] * n, "metadata": ["{}"] * n,
                                     "row": list(range(n))})

    n = 40_000
    prompts = [f"{i:08d}" + " word" * 60 for i in range(n)]
    text_mb = sum(map(len, prompts)) / 1e6
    target = {"train": split(["t"]), "validation": split([prompts[7]]), "test": split(["u"])}
    check = OverlapCheck("tgt", target, "causal-lm")
    big = split(prompts)
    tracemalloc.start()
    try:
        check.add("big", {"train": big})
        peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    assert peak_mb < text_mb / 4, (peak_mb, text_mb)
    check.add("copy", {"train": big.select(range(n - 1, -1, -1))})
    warnings = check.warnings()
    assert any(w.startswith("Sources 'big' (1 row), 'copy' (1 row) hold target validation/test rows") for w in warnings)
    assert any(w.startswith("Sources 'big', 'copy' hold exactly the same rows") for w in warnings)


def test_a_label_shuffled_copy_of_a_classifier_source_is_not_called_the_same_rows() -> None:
    """`init -t classifier`'s products and products_shuffled (its labels shuffled among the
    rows, a negative control) were warned about as "hold exactly the same rows ... Keep one"
    in about a third of the runs: the rows' hashes, of (prompt, label) tuples, summed nearly
    additively, so the same prompts and labels paired otherwise often summed alike. Python
    salts its string hashes per process, so this is checked under fixed salts."""
    import os
    import subprocess
    import sys

    code = """
import random
from subsetctl.data.overlap import _rows_digest
rng = random.Random(0)
prompts, labels = [f"row {i} text" for i in range(24)], ["negative", "positive"] * 12
same = 0
for _ in range(200):
    shuffled = labels[:]
    rng.shuffle(shuffled)
    same += shuffled != labels and _rows_digest(zip(prompts, labels)) == _rows_digest(zip(prompts, shuffled))
print(same)
"""
    for salt in ("0", "3"):  # (25 and 67 of the 200 shuffles summed alike)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": salt, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert done.stdout.strip() == "0", (salt, done.stdout, done.stderr)
