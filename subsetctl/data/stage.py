"""The data stage: prepare the target and every source and save them in the project.

Layout of the stage folder ``out_dir``::

    out_dir/<name>/<split>/    one ``Dataset.save_to_disk`` folder per non-empty split
                               (written by :func:`~subsetctl.data.saving.save_split`)
                               (an empty split has no folder: ``load_split`` gives an
                               empty dataset; ``datasets`` cannot reload 0-row saves)
    out_dir/data.json          the summary :func:`run_data_stage` returns, less ``reused``

Each source is written into a hidden temporary folder and renamed into place, so a
crash leaves either the previous copy or the new one, never half a source. Its
``.source.json`` records the key of what it was prepared from (:func:`source_key`) and
the warnings preparing it gave: a source whose key is unchanged is reused, not loaded
again, from a run stopped partway (its folder here) or copied from the stage's results
of other inputs (set aside or previous, see :func:`run_data_stage`'s ``reuse_from``),
so adding one source to a thousand prepares one. For a
classifier, one label vocabulary is built over the target and all sources (from
``label_text``) and every split is re-encoded with it; it is saved in ``data.json``
(:func:`label_names`). A classifier's source is saved as soon as it is prepared too
(its labels not yet in that vocabulary), so a run stopped partway keeps it, and saved
again once the vocabulary is known if that changes its label ids (a reused source whose
ids stay is copied, as a causal LM's is).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import Dataset

from subsetctl.data.fingerprint import SOURCE_FILE, key_and_inputs, reuse_keys, source_context, source_key
from subsetctl.data.loaders import (
    COLUMNS,
    dataset_from_table,
    empty_dataset,
    encode_labels,
    file_notice_worded,
    label_vocabulary,
    of_the_target,
    release_whole_file,
    resolve_path,
    text_file_readers,
    whole_file_released,
)
from subsetctl.data.overlap import OverlapCheck, overlap_warnings
from subsetctl.data.prepare import (
    SPLITS,
    group_label_map_warnings,
    label_spelling,
    label_texts,
    labels_the_target_lacks,
    prepare_source,
    quiet_datasets,
    split_summary,
)
from subsetctl.data.saving import load_saved, plain_split_table, save_split, unreadable_data_file
from subsetctl.errors import OTHER_UNICODE_FORM, UserError, in_another_form, shown_text
from subsetctl.plugin_loading import load_plugin_string
from subsetctl.plugin_scoping import plugin_scope
from subsetctl.project import atomic_write_json, json_file_text, read_json_object, replace_dir, sha256_file
from subsetctl.spec import SourceSpec, Spec

SUMMARY_FILE = "data.json"
_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"

Progress = Callable[[int, int], None]
#: ``waiting(description)``: a context manager the caller shows a wait with no count in
#: (:func:`subsetctl.reporter.waiting`: a spinner, lines in a log)
Waiting = Callable[[str], AbstractContextManager[None]]


def _save_in_vocabulary(out_dir: Path, name: str, splits: dict[str, Dataset], record: dict[str, Any],
                        vocabulary: list[str], found: Path | None) -> None:
    """Put a classifier source in ``out_dir`` with its labels as ids in the project's
    ``vocabulary``: saved again when those ids differ from the ones it was saved with;
    else kept as it is (saved by this run, or reused in place) or copied from the earlier
    run's folder ``found``, as a causal LM's reused source is (saving every source again
    re-hashed it, ~1 s/GB, on each re-run for one source's sake)."""
    import numpy as np

    ids = {split: np.array(encode_labels(label_texts(ds), vocabulary), dtype=np.int64) for split, ds in splits.items()}
    if not all(np.array_equal(_label_ids(ds), ids[split]) for split, ds in splits.items()):
        _write_source(out_dir, name, {split: _with_label_ids(ds, ids[split]) for split, ds in splits.items()}, record)
    elif found is not None:
        if found != out_dir / name:
            _copy_source(found, out_dir, name)
        if read_json_object(out_dir / name / SOURCE_FILE) != record:
            atomic_write_json(out_dir / name / SOURCE_FILE, record)  # an earlier key: today's


def _label_ids(dataset: Dataset) -> Any:
    """A split's ``label`` column as a numpy array, read from its Arrow table."""
    import numpy as np

    return dataset.with_format("arrow")[:].column("label").to_numpy() if len(dataset) else np.zeros(0, np.int64)


def _as_rewritten(splits: dict[str, Dataset]) -> dict[str, Dataset]:
    """``splits`` rebuilt from their Arrow rows (:func:`_with_label_ids`, their ids as they
    are), so that a classifier source saved as prepared has the content-determined
    fingerprint (in ``state.json``) it has when saved again in the vocabulary: kept or
    saved again, the same rows are the same files, and so the same output digest of the
    data stage as a fresh run's."""
    return {split: _with_label_ids(ds, _label_ids(ds)) if len(ds) else ds for split, ds in splits.items()}


def _with_label_ids(dataset: Dataset, ids: Any) -> Dataset:
    """``dataset`` with ``ids`` as its ``label`` column, built from its Arrow rows
    (``to_dict`` made every prompt of a large source a Python string first)."""
    import pyarrow as pa

    table = dataset.with_format("arrow")[:].combine_chunks()  # only this split's rows
    return dataset_from_table(table.set_column(COLUMNS.index("label"), "label", pa.array(ids, type=pa.int64())))


MANY_CLASSES = 50
"""A source with more distinct labels than this, most of them on one row, probably has
``loader.label_field`` pointing at a text column."""


def _label_setup_warnings(target: str, prepared: dict[str, dict[str, Dataset]], test_loader: bool = False) -> list[str]:
    """Label setups that run but cannot mean what was meant: a target with one class
    (its test accuracy only counts how rarely a selection predicts a class only the
    sources have: there is always one, as the data stage refuses a single class in all),
    target test or validation classes its train split never shows, a source whose
    labels are fractional numbers (a score column), and one whose labels are nearly all
    distinct (a text column). ``test_loader``: the target's test rows are its
    ``target.test_loader``'s, which its split settings do not draw (the advice says so)."""
    warnings = []
    splits = {name: label_texts(ds) for name, ds in prepared[target].items()}
    classes = {t for labels in splits.values() for t in labels}
    if len(classes) == 1:
        others = sorted({t for name, parts in prepared.items() if name != target
                         for ds in parts.values() for t in label_texts(ds)} - classes)
        shown = ", ".join(repr(t) for t in others[:5]) + (" ..." if len(others) > 5 else "")
        warnings.append(f"Target {target!r} has a single class ({next(iter(classes))!r}) in every split: its test "
                        f"accuracy only counts how rarely a selection predicts a class only the sources have "
                        f"({shown}), not how well it tells classes apart. Check the target's loader.label_field.")
    held_out_use = {
        "validation": ("the search ranks every subset by the estimated loss on that class alone, so it favours "
                       "sources that push predictions towards it"),
        "test": ("test accuracy and macro-F1 only count that class, so they reward predicting it, not telling the "
                 "classes apart"),
    }
    for name, used in held_out_use.items():
        held = set(splits.get(name, []))
        if len(held) == 1 and len(classes) > 1 and len(splits[name]) > 1:  # 1 row: the small split's warning
            warnings.append(f"Target {target!r} has a single class ({next(iter(held))!r}) in its {name} split "
                            f"({len(splits[name])} rows), of its {len(classes)} classes: {used}. "
                            + _more_rows_advice(name, test_loader, "the other classes"))
    spelt, as_one = _one_class_spelt_apart(target, splits)  # (its spellings are one class below: said once)
    warnings.extend(spelt)
    warnings.extend(imbalance_warnings(target, Counter(splits.get("train", []))))
    missing_use = {
        "validation": "the search's estimated loss (on the validation rows) does not count it, so no selection is "
                      "chosen for it",
        "test": "test accuracy and macro-F1 (over the test split's classes) say nothing about how well a selection "
                "tells it apart",
    }
    in_all = Counter(as_one.get(t, t) for labels in splits.values() for t in labels)  # (spellings as one class)
    for name, used in missing_use.items():
        missing = sorted(set(in_all) - {as_one.get(t, t) for t in splits.get(name, [])})
        if missing and len(set(splits.get(name, []))) > 1:  # one class there: its own warning above
            rows = {t: in_all[t] for t in missing[:5]}
            shown = ", ".join(f"{t!r} ({n} row{'' if n == 1 else 's'} in all)"
                              for t, n in rows.items()) + (" ..." if len(missing) > 5 else "")
            warnings.append(f"Target {target!r}: its {name} split ({len(splits[name])} rows) has no row of the "
                            f"class{'es' if len(missing) > 1 else ''} {shown}, which its other splits have: {used}. "
                            + _more_rows_advice(name, test_loader, "it"))
    unseen = sorted({as_one.get(t, t) for name in ("validation", "test") for t in splits.get(name, [])}
                    - {as_one.get(t, t) for t in splits.get("train", [])})
    if unseen and len(classes) > 1:
        shown = ", ".join(repr(t) for t in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
        warnings.append(f"Target {target!r}: its validation/test labels {shown} never occur in its train split, so "
                        "only the sources can teach them.")
    for name, parts in prepared.items():
        labels = [t for ds in parts.values() for t in label_texts(ds)]
        distinct = len(set(labels))
        who = f"{'Target' if name == target else 'Source'} {name!r}"
        fractions = _fractional_labels(set(labels))
        if fractions:
            shown = ", ".join(repr(t) for t in fractions[:5]) + (", ..." if len(fractions) > 5 else "")
            warnings.append(f"{who} has labels that are fractional numbers ({shown}; {len(fractions)} of its "
                            f"{distinct} distinct labels): a classifier makes each distinct value a class of its "
                            "own, with no order or nearness between them, so loader.label_field looks like a score "
                            "(a regression target, as STS-B's similarity), not a class. Point loader.label_field "
                            "at a class column, or write the scores as classes in the file (rounded or binned).")
        elif distinct > MANY_CLASSES and distinct > len(labels) / 2:
            warnings.append(f"{who} has {distinct} distinct labels "
                            f"over {len(labels)} rows: loader.label_field is probably a text column, not the class.")
    return warnings


def _more_rows_advice(split: str, test_loader: bool, rows_of: str) -> str:
    """What :func:`_label_setup_warnings` advises for a target ``split`` short of a class's rows
    (``rows_of``: of which): rows added to the file ``target.test_loader`` reads, for a test split
    it reads (``test_loader``), else more rows drawn for the split."""
    if split == "test" and test_loader:
        return f"Add rows of {rows_of} to the file target.test_loader reads."
    return (f"Give target.split.{split} more rows (the seeded split draws each class in proportion only on "
            "average).")


#: a target's train split is imbalanced when one class holds at least this share of its rows ...
IMBALANCED_SHARE = 0.9
#: ... or when a class has fewer train rows than this (:func:`imbalance_warnings`), ...
FEW_CLASS_ROWS = 5
#: ... in a train split of at least this many rows (in a smaller one every class has few: a small
#: target, not an imbalance)
FEW_CLASS_ROWS_AMONG = 50


def imbalance_warnings(target: str, train: Counter[str], classifier: bool = True) -> list[str]:
    """The warning, once, for a target whose train split (``train``: class -> its rows) is
    heavily imbalanced: one class holds :data:`IMBALANCED_SHARE` of the rows or more, or a
    class has fewer than :data:`FEW_CLASS_ROWS` (of :data:`FEW_CLASS_ROWS_AMONG` or more). Fine-tuning has no class weights, so a
    fine-tune learns that balance, and accuracy (a causal LM's exact match, ``classifier``
    False: its classes are the answers of a class-word target) rewards predicting the common
    class; only the test metrics' note on a fine-tune predicting one class said so, after
    every fine-tune had run. Nothing for fewer than two classes (their own warnings)."""
    total = sum(train.values())
    if len(train) < 2 or not total:
        return []
    common, most = min(train.items(), key=lambda item: (-item[1], item[0]))
    rare = sorted((t for t, n in train.items() if n < FEW_CLASS_ROWS and total >= FEW_CLASS_ROWS_AMONG),
                  key=lambda t: (train[t], t))
    heavy = most / total >= IMBALANCED_SHARE
    if not heavy and not rare:
        return []
    what, whats, score = ("class", "classes", "accuracy") if classifier else ("answer", "answers", "exact match")
    # worded for the case at hand: "the other classes" beside two, "the rare classes" beside none rare
    other = next(t for t in sorted(train) if t != common)
    others = f"{what} {other!r}" if len(train) == 2 else whats
    if rare:
        wanted = f"the rare {what if len(rare) == 1 else whats}"
    else:
        wanted = repr(other) if len(train) == 2 else f"the {whats} other than {common!r}"
    said = []
    if heavy:
        said.append(f"the {what} {common!r} has {most:,} of its {total:,} rows ({most / total:.0%})")
    if rare:
        shown = ", ".join(f"{t!r} ({train[t]} row{'' if train[t] == 1 else 's'})" for t in rare[:5]) + (
            f" and {len(rare) - 5} more" if len(rare) > 5 else "")
        said.append(f"the {whats if len(rare) > 1 else what} {shown} ha{'ve' if len(rare) > 1 else 's'} fewer than "
                    f"{FEW_CLASS_ROWS} rows")
    meaning = []
    if heavy:
        meaning.append(f"a fine-tune learns this balance, and {score} rewards predicting {common!r}: "
                       f"answering it to every row scores about {most / total:.0%} on a test split drawn alike, "
                       f"while macro-F1, which counts each class alike, shows the other {others} missed")
    if rare:
        meaning.append(f"a {what} of so few rows is hardly learnt, and the seeded split leaves few of its rows (or "
                       "none) for validation and test, where its part of macro-F1 rests on a handful of rows")
    return [(f"Target {target!r}: its train split is imbalanced: {'; '.join(said)}. Fine-tuning has no class "
             f"weights: {'; and '.join(meaning)}. Judge the selections by macro-F1 beside {score}, and add rows of "
             f"{wanted} where you can (more target rows, or a source of them).")]


def _one_class_spelt_apart(target: str, splits: dict[str, list[str]]) -> tuple[list[str], dict[str, str]]:
    """The warning, once, when the target's own labels write one class several ways
    ('Positive' and 'positive'; a CSV's '1.0' beside '1'; labels are read stripped of
    spaces): each spelling is a class of its own, so the head learns them apart and a test
    row labelled 'Positive' counts a prediction of 'positive' as a miss, and nothing said so
    (a source's labels are compared with the target's in :func:`_label_warnings`).
    ``splits``: each split's labels. It names each spelling's rows and the one
    ``label_map`` that makes them one class each: onto the spelling most rows have (ties:
    the one in composed Unicode form, NFC, then the first sorted). Also returns that map (each other spelling -> its class's spelling),
    by which the target's other label warnings take the spellings as one class."""
    counts = Counter(text for labels in splits.values() for text in labels)
    alike: dict[str, list[str]] = {}
    for text in sorted(counts):
        alike.setdefault(label_spelling(text), []).append(text)
    groups, mapping = [], {}
    for spellings in alike.values():
        if len(spellings) > 1:
            main = min(spellings, key=lambda t: (-counts[t], not unicodedata.is_normalized("NFC", t), t))
            groups.append(", ".join(f"{shown_text(t)} ({counts[t]} row{'' if counts[t] == 1 else 's'})"
                                    for t in spellings))
            mapping.update({t: main for t in spellings if t != main})
    if not mapping:
        return [], {}
    first = next(iter(mapping))
    written = ", ".join(f"{shown_text(k)}: {shown_text(v)}" for k, v in mapping.items())
    form = f", in Unicode form ({OTHER_UNICODE_FORM})" if any(in_another_form(k, v) for k, v in mapping.items()) else ""
    return [(f"Target {target!r} has labels that differ only in case{form} or in the way a number is written: "
            f"{'; '.join(groups)}. Each is a class of its own: the head learns them apart, and a test row labelled "
            f"{shown_text(first)} counts a prediction of {shown_text(mapping[first])} as a miss. If they are one "
            f"class, add to the target's label_map: {{{written}}} (or write the labels alike in the file).")], mapping


def _fractional_labels(labels: set[str]) -> list[str]:
    """The labels that are numbers with a fraction ('0.5', '3.7'), sorted numerically, when
    every label is a number: such a column holds scores, which a classifier would learn as
    unrelated classes. None when any label is a word (a '0.5' among words is a class name)
    or all are whole numbers (a CSV's '1.0' is the class 1, which :func:`_label_warnings`
    compares with the target's)."""
    import math

    values = {}
    for text in labels:
        try:
            values[text] = float(text)
        except ValueError:
            return []
    return sorted((t for t, v in values.items() if math.isfinite(v) and not v.is_integer()), key=values.__getitem__)


def _label_warnings(target: str, prepared: dict[str, dict[str, Dataset]],
                    label_maps: dict[str, dict[str, str | None]] | None = None, test_loader: bool = False) -> list[str]:
    """Classes a source has that the target never uses: harmless but worth knowing, and
    likely a mistake when they are the target's labels written another way (a CSV file
    of floats gives "1.0" where a Parquet or JSON file gives "1"; CSV "True" is not JSON
    true, which reads "1"): each is a class of its own. A source none of whose labels
    is the target's (0/1 beside the target's 'negative'/'positive') gets told so, and
    pointed to ``label_map``: nothing else maps one file's classes onto another's. A label
    that a key of the source's ``label_map`` (``label_maps``: source -> its map) looks like
    misspelt is left to that key's warning (:func:`map_labels`), which says what to write; not
    one the map renames rows into (a used key is no typo: ``{'POSITIVE': 'Positive'}`` beside a
    target's 'positive' is warned of as before).
    ``test_loader``: the target's test rows are its ``target.test_loader``'s."""
    target_labels = {t for ds in prepared[target].values() for t in label_texts(ds)}
    warnings = _label_setup_warnings(target, prepared, test_loader)
    for name, splits in prepared.items():
        if name != target:
            warnings.extend(labels_the_target_lacks(name, [t for ds in splits.values() for t in label_texts(ds)],
                                                    target_labels, (label_maps or {}).get(name) or {}))
    return warnings


def _clean_leftovers(out_dir: Path, names: set[str]) -> None:
    """Remove temporary folders a crashed run left behind, and the folders of sources
    other than ``names`` (the target's and the sources' names) that a run stopped partway
    prepared for another spec: what else it prepared is reused when its key still holds."""
    for path in out_dir.iterdir():
        if path.is_dir() and (path.name.startswith((_TMP_PREFIX, _OLD_PREFIX)) or path.name not in names):
            shutil.rmtree(path, ignore_errors=True)


def _put_in_place(out_dir: Path, name: str, fill: Callable[[Path], object]) -> None:
    """Write one source's folder ``out_dir/name``: ``fill`` writes it as a hidden
    temporary folder (which it must create), renamed into place only when complete."""
    tag = uuid.uuid4().hex[:8]
    tmp = out_dir / f"{_TMP_PREFIX}{name}-{tag}"
    try:
        fill(tmp)
        replace_dir(tmp, out_dir / name, aside=out_dir / f"{_OLD_PREFIX}{name}-{tag}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_source(out_dir: Path, name: str, splits: dict[str, Dataset], record: dict[str, Any]) -> None:
    """Save all splits of one source to ``out_dir/name`` via a temporary folder, with
    ``record`` (its key and warnings) as its ``.source.json``."""

    def fill(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        for split, dataset in splits.items():
            if len(dataset):  # datasets cannot load back a saved 0-row dataset; see load_split
                save_split(dataset, tmp / split)  # save_to_disk's files, written directly; applies a select()
        _write_record(tmp, {**record, "files": _file_sums(tmp)})

    _put_in_place(out_dir, name, fill)


def _write_record(tmp: Path, record: dict[str, Any]) -> None:
    """Write a source's ``.source.json`` in its temporary folder: a plain write, as the
    folder is renamed into place whole and a record a crash of the machine leaves empty
    or cut short is no record (the source is prepared again). A temporary file and fsync
    of its own cost ~3 ms a source, a tenth of the data stage of many small sources."""
    (tmp / SOURCE_FILE).write_text(json_file_text(record), encoding="utf-8")


def _source_files(folder: Path) -> dict[str, Path]:
    """A prepared source's files by relative path, sorted (its record, the ``.source.json``,
    aside)."""
    return {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != SOURCE_FILE}


def _file_sums(folder: Path) -> dict[str, list[Any]]:
    """``{relative path: [size, sha256]}`` of a prepared source's files."""
    return {rel: [path.stat().st_size, sha256_file(path)] for rel, path in _source_files(folder).items()}


def _intact(folder: Path, record: dict[str, Any]) -> bool:
    """Whether a prepared source's files are those its record lists (sizes first, then
    sha256). A file truncated, altered or left out (a crash of the machine, a disk error)
    was reused unchecked from a run stopped partway: loading it stopped every later `run`
    with an internal error, or crashed it (a damaged Arrow file), until the folder was
    deleted by hand. Records written before they listed their files are taken as they are."""
    files = record.get("files")
    if files is None:
        return True
    if not isinstance(files, dict):
        return False
    present = _source_files(folder)
    if set(present) != set(files):
        return False
    try:
        return (all(present[rel].stat().st_size == files[rel][0] for rel in files)
                and all(sha256_file(present[rel]) == files[rel][1] for rel in files))
    except (OSError, TypeError, IndexError, KeyError):
        return False


def _prepared_earlier(folders: list[Path], name: str, keys: tuple[str, ...]) -> tuple[Path, dict[str, Any]] | None:
    """The first ``folder/name`` among ``folders`` prepared from one of ``keys`` (today's,
    then one an earlier subsetctl wrote for the same inputs) whose files are intact, with
    its record."""
    for folder in folders:
        record = read_json_object(folder / name / SOURCE_FILE)
        if (record is not None and record.get("key") in keys and isinstance(record.get("warnings"), list)
                and _intact(folder / name, record)):
            return folder / name, record
    return None


def _copy_source(found: Path, out_dir: Path, name: str) -> None:
    """Put an earlier run's prepared source in ``out_dir/name`` (a file copy, no parsing),
    via a temporary folder. Copied, not hard-linked: every link made or removed changes
    the change time of all of a file's names, which would make the checksum stamps of the
    kept results (and of these) stale and have every later `plan` hash them again."""
    _put_in_place(out_dir, name, lambda tmp: shutil.copytree(found, tmp))


def _prepare_or_reuse(spec: Spec, source: SourceSpec, spec_dir: Path, out_dir: Path, reuse_from: list[Path],
                      warnings: list[str], reused: list[str], file_shared: bool = False,
                      ) -> tuple[dict[str, Dataset], dict[str, Any], Path | None]:
    """One source's splits, its record (key, warnings) and the folder of an earlier run's
    copy it was read from: when one prepared it from the same key (its warnings said
    again; its name added to ``reused``); else prepared now (not yet saved; no folder).
    Today's key is looked for in every folder first, as `plan` looks (:func:`prepared_again`): the
    keys an earlier subsetctl wrote (:func:`reuse_keys`), some counting the files otherwise (a
    ``save_to_disk`` folder whole), are worked out only for a source none holds under it.
    ``file_shared``: its file is read by other sources too (:func:`text_file_readers`)."""
    folders = [out_dir, *reuse_from]
    key, inputs = key_and_inputs(spec, source, spec_dir)
    found = _prepared_earlier(folders, source.name, (key,))
    if found is None and any((folder / source.name / SOURCE_FILE).is_file() for folder in folders):
        # (the keys an earlier subsetctl wrote, only now and only for a source some folder holds: some
        # count the source's files otherwise, and working them out for every source of a fresh run of
        # thousands took 0.15-0.33 ms each; today's left out, looked for already: a folder holding it
        # damaged was hashed again)
        found = next(filter(None, (_prepared_earlier(folders, source.name, tuple(k for k in keys if k != key))
                                   for keys in reuse_keys(spec, source, spec_dir, inputs))), None)
    if found is not None:
        folder, record = found
        record = {**record, "key": key}  # (an earlier key: recorded as today's once the source is in place)
        warnings.extend(_reworded(_in_folder(w, spec_dir), source, spec_dir, file_shared, source is spec.target)
                        for w in record["warnings"])
        reused.append(source.name)
        return {split: load_split(folder.parent, source.name, split) for split in SPLITS}, record, folder
    before = len(warnings)
    try:
        splits = prepare_source(source, source_context(spec, source, spec_dir, file_shared), warnings)
    except UserError as exc:
        if source is spec.target and len(exc.args) == 1 and isinstance(exc.args[0], str):
            exc.args = (of_the_target(exc.args[0], source.name),)
        raise
    if source is spec.target:
        warnings[before:] = [of_the_target(w, source.name) for w in warnings[before:]]
    if source_key(spec, source, spec_dir) != key:  # its files changed as they were read: the rows may be of
        raise UserError(  # either version, and would be reused as made from the first whenever it came back
            f"Source {source.name!r}: its input files changed while the data stage read them. Run again once "
            "they are as they should be (the sources prepared so far are reused)."
        )
    return splits, {"key": key, "warnings": [_folder_free(w, spec_dir) for w in warnings[before:]]}, None


def _reworded(warning: str, source: SourceSpec, spec_dir: Path, file_shared: bool, is_target: bool) -> str:
    """A reused source's kept warning, a problem of its JSON Lines or CSV file worded by
    today's sharing (:func:`~subsetctl.data.loaders.files.file_notice_worded`): of the file
    where other sources read it too (``file_shared``) or a ``where`` reads its tasks, else of
    the source (``is_target``: "The target 't'", as :func:`~subsetctl.data.loaders.files.of_the_target`
    words it). The words are not part of the source's key (preparing the data again for them alone would
    be waste), so a source prepared while it read the file alone kept its
    own words once a second source read the file (and the other way round, once that source
    was removed), and a run printed the problem twice: validate's words and the kept ones."""
    loader = source.loader
    if getattr(loader, "type", None) not in ("jsonl", "csv"):
        return warning
    of_file = file_shared or getattr(loader, "where", None) is not None
    target = f"The target {source.name!r}"  # (the target's own words: of_the_target's, put back after)
    if is_target and warning.startswith(target):
        warning = f"Source {source.name!r}" + warning[len(target):]
    worded = file_notice_worded(warning, source.name, resolve_path(loader.path, spec_dir), of_file)
    return of_the_target(worded, source.name) if is_target else worded


_SPEC_DIR = "{spec_dir}"


def _folder_free(warning: str, spec_dir: Path) -> str:
    """A warning as ``.source.json`` keeps it: the spec folder's path (in the names of its
    data files) written as a placeholder, so that a moved or copied project reuses the
    source and says where its files are now."""
    for form in sorted({str(Path(spec_dir)), str(Path(spec_dir).resolve())}, key=len, reverse=True):
        warning = warning.replace(form + os.sep, _SPEC_DIR + os.sep)  # the folder itself, not /x/proj-old
    return warning


def _in_folder(warning: str, spec_dir: Path) -> str:
    """A kept warning (:func:`_folder_free`) with the spec folder's path put back."""
    return warning.replace(_SPEC_DIR, str(Path(spec_dir)))


@plugin_scope()
@whole_file_released()
def run_data_stage(
    spec: Spec, spec_dir: Path, out_dir: Path, progress: Progress | None = None,
    reuse_from: list[Path] | None = None, reuse: bool = True, reading: Callable[[str], None] | None = None,
    waiting: Waiting | None = None,
) -> dict[str, Any]:
    """Prepare the target and every source and save them under ``out_dir``.

    Args:
        spec: the validated spec.
        spec_dir: the spec file's folder (relative data paths resolve against it).
        out_dir: the stage folder.
        progress: optional ``progress(done, total)``, called after each source is prepared
            or reused.
        reuse_from: folders of earlier data-stage results (of other inputs) whose
            sources prepared from an unchanged key are reused, after those in ``out_dir``
            (a run stopped partway).
        reuse: False prepares every source again (``run --force data``).
        reading: optional ``reading(name)``, called before each source is prepared or
            reused, so that a progress display can name the source being read (one large
            source can take minutes, and ``progress`` counts it only when it is done).
        waiting: optional :data:`Waiting`, shown while the model's tokenizer loads to count
            the target's long test answers (:func:`answers_past_generation`), after every
            source is counted.

    Returns:
        A JSON-able summary, also written to ``out_dir/data.json`` (less ``reused``, so
        that the same data, reused or prepared again, is the same output)::

            {"target": name, "kind": "causal-lm" | "classifier",
             "sources": [source names, in the spec's order],
             "counts": {name: {"train": n, "validation": n, "test": n}},
             "labels": [label names] | None, "warnings": [messages],
             "reused": [names of sources reused from an earlier run]}

        and ``"target_test_from": "test_loader"`` when the target's test rows are those of
        its ``test_loader`` (the report says so beside its test scores).

        (Counts sit under ``counts`` so a source named "warnings" cannot collide.)
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    everything = [spec.target, *spec.sources]
    _clean_leftovers(out_dir, {source.name for source in everything})
    for plugin in spec.plugins:
        load_plugin_string(plugin, spec_dir)
    warnings: list[str] = [f"source_files[{g}].by: {note}" for g, note in spec.left_out_rows]
    reused: list[str] = []
    earlier = [Path(f) for f in reuse_from or []] if reuse else []
    if not reuse:  # forced: nothing in the folder counts either
        for source in everything:
            shutil.rmtree(out_dir / source.name, ignore_errors=True)
    controls = [s.name for s in spec.sources if s.corrupt.shuffle_responses]
    shared = {everything[i].name for readers in text_file_readers([s.loader for s in everything], spec_dir).values()
              if len(readers) > 1 for i in readers}  # (a file several read: its problems said of it, as validate does)
    if spec.model.kind != "classifier":  # each source written as soon as it is prepared: memory for one
        from subsetctl.modeling.answers import answer_classes

        counts: dict[str, Any] = {}
        check: OverlapCheck | None = None
        answer_set: list[str] | None = None  # a target answering in class words: its classes
        target_test: Dataset | None = None
        target_normalized: dict[str, list[str]] = {}  # its answers by split as the test metrics compare them
        test_answers: list[str] | None = None  # its test answers, where read already (class words)
        answer_counts: dict[str, dict[str, dict[str, int]]] = {}
        for done, source in enumerate(everything, start=1):
            if reading is not None:
                reading(source.name)
            splits, record, found = _prepare_or_reuse(spec, source, spec_dir, out_dir, earlier, warnings, reused,
                                                      source.name in shared)
            if check is None:  # the target comes first
                check = OverlapCheck(spec.target.name, splits, spec.model.kind, controls)
                # (its answers read once: the train split's for its classes, then, where they are class
                # words, every split's for the balance, the counts and the long test answers below)
                train = label_texts(splits["train"], "response") if "train" in splits else []
                answer_set = answer_classes(train)
                target_test = splits.get("test")
                if answer_set is not None:
                    target_answers = {split: train if split == "train" else label_texts(ds, "response")
                                      for split, ds in splits.items() if len(ds)}
                    test_answers = target_answers.get("test", [])
                    target_normalized = {split: _normalized(answers) for split, answers in target_answers.items()}
                    warnings.extend(imbalance_warnings(spec.target.name, Counter(target_normalized["train"]),
                                                       classifier=False))
            else:
                check.add(source.name, splits)
            if found is None:
                with quiet_datasets():
                    _write_source(out_dir, source.name, splits, record)
            elif found != out_dir / source.name:  # another run's results: copied in
                _copy_source(found, out_dir, source.name)
            if found is not None and read_json_object(out_dir / source.name / SOURCE_FILE) != record:
                atomic_write_json(out_dir / source.name / SOURCE_FILE, record)  # an earlier key: today's
            counts[source.name] = split_summary(splits)
            if answer_set is not None:
                answer_counts[source.name] = _answer_counts(target_normalized if done == 1 else _normalized_answers(splits),
                                                            answer_set)
            del splits
            if progress is not None:
                progress(done, len(everything))
        assert check is not None
        release_whole_file()
        warnings.extend(check.warnings())
        warnings.extend(answers_past_generation(spec, spec_dir, target_test, test_answers, waiting))
        return _write_summary(out_dir, spec, counts, None, group_label_map_warnings(spec, warnings), reused,
                              answer_counts if answer_set is not None else None)
    prepared: dict[str, dict[str, Dataset]] = {}  # classifiers: the label vocabulary needs every source first
    records: dict[str, dict[str, Any]] = {}
    found_at: dict[str, Path | None] = {}  # where each source's saved rows are: None, saved by this run
    for done, source in enumerate(everything, start=1):
        if reading is not None:
            reading(source.name)
        prepared[source.name], records[source.name], found = _prepare_or_reuse(
            spec, source, spec_dir, out_dir, earlier, warnings, reused, source.name in shared)
        found_at[source.name] = found
        if found is None:  # saved now, labels not yet in the shared vocabulary, so that a run stopped
            with quiet_datasets():  # partway keeps it (a reused source is re-encoded from label_text)
                _write_source(out_dir, source.name, _as_rewritten(prepared[source.name]), records[source.name])
        if progress is not None:
            progress(done, len(everything))
    release_whole_file()
    labels = label_vocabulary(t for splits in prepared.values() for ds in splits.values() for t in label_texts(ds))
    if len(labels) < 2:
        raise UserError(
            f"The classifier data has {len(labels)} distinct label(s) ({', '.join(map(repr, labels)) or 'none'}) over the "
            "target and all sources; a classifier needs at least 2. Check loader.label_field."
        )
    warnings.extend(_label_warnings(spec.target.name, prepared, {s.name: s.label_map or {} for s in everything},
                                    spec.target.test_loader is not None))  # (from label_text, the same in any vocabulary)
    warnings.extend(overlap_warnings(spec.target.name, prepared, spec.model.kind, controls))
    with quiet_datasets():  # one source at a time: memory for one source's re-encoded copy
        for name, splits in prepared.items():
            _save_in_vocabulary(out_dir, name, splits, records[name], labels, found_at[name])
    from subsetctl.report import class_key

    classes = {name: {split: dict(sorted(Counter(map(class_key, label_texts(ds))).items()))
                      for split, ds in splits.items() if len(ds)}
               for name, splits in prepared.items()}
    return _write_summary(out_dir, spec, {name: split_summary(splits) for name, splits in prepared.items()},
                          labels, group_label_map_warnings(spec, warnings), reused, classes)


#: the longest test answers (by characters) whose tokens :func:`answers_past_generation` counts
LONG_ANSWERS_COUNTED = 200


def answers_past_generation(spec: Spec, spec_dir: Path, test: Dataset | None,
                            answers: list[str] | None = None, waiting: Waiting | None = None) -> list[str]:
    """evaluate's warning of a causal LM's test answers longer than ``evaluate.max_new_tokens``
    (:func:`~subsetctl.modeling.evaluate.answers_longer_than`, its words), said by the data
    stage, before hours of fine-tunes whose scores it caps alike: the tokens of the
    :data:`LONG_ANSWERS_COUNTED` longest answers of the target's ``test`` split (``answers``
    where read already, else read here; by characters: a
    bounded cost), counted with the model's tokenizer where its files are here to read (a model
    folder, a packaged model's, converted or shipped, a hub id's cached copy); nothing where they are not, or the
    tokenizer does not load (evaluate says it then). The load is shown in ``waiting`` where given
    (importing torch and transformers and loading a tokenizer took 3-4 s after "data: N/N" without
    a word)."""
    if spec.model.kind != "causal-lm" or test is None or not len(test):
        return []
    answers = label_texts(test, "response") if answers is None else answers
    longest = sorted(range(len(answers)), key=lambda i: -len(answers[i]))[:LONG_ANSWERS_COUNTED]
    if all(_fits_for_certain(answers[i], spec.evaluate.max_new_tokens) for i in longest):
        return []  # (no tokenizer, nor torch and transformers imported for it: 3-4 s of a data-stage-only run)
    from subsetctl.modeling.footprint import model_folder

    folder = model_folder(spec.model.source, spec_dir, spec.model.revision)
    if folder is None:
        return []
    from subsetctl.errors import as_typed
    from subsetctl.filehash import folder_stamps

    described = f"data: loading the tokenizer of {as_typed(spec.model.source)} to count the test answers' tokens"
    with waiting(described) if waiting is not None else nullcontext():
        from subsetctl.modeling.evaluate import answers_longer_than

        tokenizer = _answers_tokenizer(*folder_stamps(Path(folder)), spec.model.trust_remote_code)
    if tokenizer is None:  # a tokenizer that does not load here: the model stages say why
        return []
    warning = answers_longer_than(tokenizer, [test[i] for i in longest], spec.evaluate.max_new_tokens,
                                  of=len(answers))
    return [warning] if warning else []


def _fits_for_certain(answer: str, max_new_tokens: int) -> bool:
    """Whether the answer ``answer`` takes at most ``max_new_tokens`` tokens whatever the
    tokenizer, so that :func:`answers_past_generation` need not load one: a written form
    that matches it (:func:`~subsetctl.modeling.answers.shortest_matching_forms`) is ASCII and
    at most ``max_new_tokens - 1`` characters long. Every token of a tokenizer covers at least
    one character of such a text (byte-level BPE, SentencePiece with or without byte fallback,
    WordPiece; Unicode normalizers leave ASCII as it is), and a SentencePiece-style tokenizer
    may add one "▁" before its first word. (A pre-tokenizer that marks every piece of a text,
    DeBERTa-v2's punctuation split before its "always" Metaspace, may add more: no causal LM's
    we know of; the causal LMs' tokenizers are checked in the tests.) Longer or non-ASCII
    answers are counted with the tokenizer, as before."""
    from subsetctl.modeling.answers import shortest_matching_forms

    return any(form.isascii() and len(form) < max_new_tokens for form in shortest_matching_forms(answer))


@functools.lru_cache(maxsize=2)
def _answers_tokenizer(folder: str, files: tuple[tuple[str, int, int], ...], trust_remote_code: bool) -> Any:
    """The tokenizer of the model folder ``folder`` (its files as ``files``, the key:
    :func:`~subsetctl.filehash.folder_stamps`), or None
    where it does not load: loaded once while those files are unchanged (a packaged model's
    took 0.2-0.4 s, most of a small data stage's time, again at every run of it in one process:
    an API caller's sweep, or the test suite's hundreds of data stages)."""
    from transformers import AutoTokenizer

    from subsetctl.modeling.resolve import quiet_transformers

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception:  # noqa: BLE001 - a tokenizer that does not load here: the model stages say why
        return None


def _normalized(answers: list[str]) -> list[str]:
    """Causal-LM answers as the test metrics compare them (:func:`~subsetctl.modeling.evaluate.
    normalize_answer`: Unicode form, case, spaces and trailing sentence-final marks aside)."""
    from subsetctl.modeling.answers import normalize_answer

    return [normalize_answer(a) for a in answers]


def _normalized_answers(splits: dict[str, Dataset]) -> dict[str, list[str]]:
    """A causal LM's answers (``response``) of each of ``splits`` that has rows, read from its
    Arrow table (:func:`label_texts`), as the test metrics compare them (:func:`_normalized`)."""
    return {split: _normalized(label_texts(ds, "response")) for split, ds in splits.items() if len(ds)}


def _answer_counts(normalized: dict[str, list[str]], classes: list[str]) -> dict[str, dict[str, int]]:
    """A causal LM's rows per class (split -> class -> rows) where the target answers in class
    words (``classes``), as a classifier's data.json ``classes`` are, for the report's class
    balance, from the ``normalized`` answers of each split with rows (:func:`_normalized_answers`):
    each answer that is one of them (as the test metrics compare answers), the others
    summed under :data:`~subsetctl.report.OTHER_ANSWERS` (a source's free answers, thousands of
    them, are no classes to list); a class literally so named under its own key (:func:`~subsetctl.
    report.class_key`), apart from them."""
    from subsetctl.report import OTHER_ANSWERS, class_key

    known = set(classes)
    return {split: dict(sorted(Counter(class_key(a) if a in known else OTHER_ANSWERS for a in answers).items()))
            for split, answers in normalized.items()}


def _write_summary(out_dir: Path, spec: Spec, counts: dict[str, Any], labels: list[str] | None,
                   warnings: list[str], reused: list[str],
                   classes: dict[str, dict[str, dict[str, int]]] | None = None) -> dict[str, Any]:
    """Write and return data.json (see :func:`run_data_stage`); a classifier's ``classes``
    (source -> split -> label -> rows; a causal LM's whose target answers in class words, by
    :func:`_answer_counts`) let the report say the class balance each selection was
    fine-tuned on (they follow from the rows, so they are no part of the output's digest)."""
    summary = {
        "target": spec.target.name,
        "kind": spec.model.kind,
        # the spec's order (counts is written sorted): meta-init's multitask pool and the search's
        # source order follow it, so reordering the sources is a change of this stage's output
        "sources": [source.name for source in spec.sources],
        "counts": counts,
        "labels": labels,
        "warnings": list(dict.fromkeys(warnings)),  # (a file's, said alike by each of its tasks' sources: once)
    }
    if classes is not None:
        summary["classes"] = classes
    if spec.target.test_loader is not None:  # (only then: an unchanged project's data.json stays as it was)
        summary["target_test_from"] = "test_loader"
    atomic_write_json(out_dir / SUMMARY_FILE, summary)
    # not in data.json: the same data reused or prepared again is the same output (its digest); the
    # classes only there (the report reads them; the stage's summary, which report.json copies, is short)
    return {**{key: value for key, value in summary.items() if key != "classes"}, "reused": reused}


def _missing_data(data_dir: Path, what: str) -> UserError:
    """The error for prepared data that is not there: the data stage has not run."""
    return UserError(
        f"No prepared data for {what} in {data_dir}. Run the data stage first "
        "(`subsetctl run`), or check the name."
    )


def load_split(data_dir: Path, name: str, split: str) -> Dataset:
    """One saved split (memory-mapped); an empty dataset for a split of size 0. A split whose
    ``dataset_info.json`` or ``state.json`` holds JSON of another shape (``[]``), on which
    ``load_from_disk`` raises an AttributeError, KeyError or TypeError, is a UserError saying
    it is damaged: `plan` stopped with an internal error where `run` prepares it again. So is
    one whose Arrow file is cut short, overwritten or gone (:func:`_damaged_files`); one the
    system refuses to read (permissions, memory) raises its OSError (:func:`_refused_by_the_system`)."""
    if split not in SPLITS:
        raise UserError(f"Unknown split {split!r}; splits are {', '.join(SPLITS)}.")
    folder = Path(data_dir) / name
    if not folder.is_dir():
        raise _missing_data(data_dir, repr(name))
    path = folder / split
    if not path.exists():
        return empty_dataset()  # empty splits are not saved (see the module docstring)
    if not (path / "dataset_info.json").is_file():
        raise _missing_data(data_dir, f"{name!r} split {split!r}")
    dataset = load_saved(path)
    if dataset is not None:
        return dataset
    try:
        with quiet_datasets():
            return Dataset.load_from_disk(str(path))
    except (AttributeError, KeyError, TypeError) as exc:
        raise UserError(f"The prepared data of {name!r} split {split!r} ({path}) is damaged: its dataset_info.json or "
                        f"state.json is not what the data stage wrote ({type(exc).__name__}: {exc}). Prepare it "
                        "again with `subsetctl run --force data`.") from exc
    except (OSError, pa.ArrowException) as exc:
        if _refused_by_the_system(exc):  # not damage: said as the CLI says it (fix the permissions, free memory)
            raise
        raise _damaged_files(path, name, split, exc) from exc


def _refused_by_the_system(exc: BaseException) -> bool:
    """Whether ``exc``, raised reading a split's files, is the system refusing them (no read
    permission, out of memory or of open files, an I/O error) rather than the files being
    damaged: `run --force data` does not help with those, and the CLI's messages for them
    (:func:`subsetctl.errors.environment_error`, the stages' out-of-memory one) say what does.
    A file removed (ENOENT) is damage, and so is pyarrow's OSError with no errno ("Expected
    file path, but ... is a directory")."""
    return isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno not in (None, errno.ENOENT))


def _damaged_files(path: Path, name: str, split: str, exc: Exception) -> UserError:
    """The error for the saved split ``path`` of source ``name`` that ``load_from_disk`` could
    not read (``exc``): one of its Arrow files truncated, overwritten or gone, which came out
    as pyarrow's ``ArrowInvalid`` (an internal error naming no file) from every stage
    reading the split. It names the file where one of those the split lists does not read."""
    unreadable = unreadable_data_file(path)
    what = f"its file {unreadable[0]}" if unreadable is not None else f"its files in {path}"
    error = unreadable[1] if unreadable is not None else exc
    return UserError(f"The prepared data of {name!r} split {split!r} is damaged: {what} cannot be read "
                     f"({type(error).__name__}: {error}), so it is not what the data stage wrote. Prepare it "
                     "again with `subsetctl run --force data`.")


def split_columns(data_dir: Path, name: str, split: str) -> dict[str, list[Any]]:
    """One saved split's columns as Python lists (``{}`` for an empty split): what
    ``load_split(...)[:]`` gives, read straight from the split's Arrow files when its
    columns are plain values and it was saved with no output format (what the data stage
    writes). ``Dataset.load_from_disk`` takes about 3 ms a split in bookkeeping (a thread
    pool, deep copies of the features), which a fine-tune of 2,000 sources paid once per
    source and run; reading the files takes 0.07 ms. Anything else, or files this cannot
    read (a damaged split), goes through :func:`load_split`, with its errors."""
    table = _plain_table(data_dir, name, split)
    return table.to_pydict() if table is not None else _loaded_columns(data_dir, name, split)


SPLITS_CONVERTED_TOGETHER = 1024
"""The most tables :func:`splits_rows` turns into rows at once: each holds a memory map of
its files until then, and Linux lets a process hold 65,530 (``vm.max_map_count``), where a
spec may list tens of thousands of sources."""


def splits_rows(data_dir: Path, wanted: Sequence[tuple[str, str]]) -> list[list[dict[str, Any]]]:
    """The rows of each ``(name, split)`` of ``wanted``, in order, as dicts: the columns
    :func:`split_columns` gives, zipped into rows (the same values, the same errors), where
    the plain splits' Arrow tables are turned into Python objects together, one
    ``to_pylist`` for each run of tables of one schema (of :data:`SPLITS_CONVERTED_TOGETHER`
    at most). Read one by one, the 2,000 small train splits of as many sources cost the
    gradients stage a conversion and a dict per column and row each."""
    rows: list[list[dict[str, Any]]] = []
    run: list[tuple[int, pa.Table]] = []  # (place in rows, table) of one schema, not converted yet

    def convert() -> None:
        if run:
            converted = pa.concat_tables([table for _, table in run]).to_pylist()
            start = 0
            for place, table in run:
                rows[place] = converted[start:start + table.num_rows]
                start += table.num_rows
            run.clear()

    for name, split in wanted:
        table = _plain_table(data_dir, name, split)
        if table is None:
            columns = _loaded_columns(data_dir, name, split)
            rows.append([dict(zip(columns, values)) for values in zip(*columns.values())])
        else:
            rows.append([])
            if table.num_rows:
                full = len(run) >= SPLITS_CONVERTED_TOGETHER
                if full or (run and not table.schema.equals(run[0][1].schema)):
                    convert()
                run.append((len(rows) - 1, table))
    convert()
    return rows


def _plain_table(data_dir: Path, name: str, split: str) -> pa.Table | None:
    """The Arrow table :func:`split_columns` reads a saved split from (with no columns for a
    split not saved, an empty one: see the module docstring); None where it goes through
    :func:`load_split` (see :func:`~subsetctl.data.saving.plain_split_table`)."""
    if split not in SPLITS:
        return None
    folder = os.path.join(data_dir, name)
    path = os.path.join(folder, split)
    if not os.path.exists(path):
        return pa.table({}) if os.path.isdir(folder) else None
    return plain_split_table(path)


def _loaded_columns(data_dir: Path, name: str, split: str) -> dict[str, list[Any]]:
    """A split's columns as :func:`load_split` reads it (``{}`` where it has no rows)."""
    dataset = load_split(data_dir, name, split)
    return dataset[:] if len(dataset) else {}


def load_all(data_dir: Path, spec: Spec) -> dict[str, dict[str, Dataset]]:
    """``{name: {split: Dataset}}`` for the target and every source of ``spec``."""
    return {
        s.name: {split: load_split(data_dir, s.name, split) for split in SPLITS}
        for s in [spec.target, *spec.sources]
    }


def read_summary(data_dir: Path) -> dict[str, Any]:
    """The summary :func:`run_data_stage` wrote."""
    path = Path(data_dir) / SUMMARY_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _missing_data(data_dir, "the summary (data.json)") from None


def label_names(data_dir: Path) -> list[str] | None:
    """The shared classifier label vocabulary (``label`` id -> name), None for causal-lm."""
    return read_summary(data_dir).get("labels")
