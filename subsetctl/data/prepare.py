"""Prepare one source: load it, subsample, shuffle, corrupt (if asked) and split it.

Everything is deterministic given the seed (``source.seed`` or the project seed,
carried in :class:`~subsetctl.data.loaders.LoadContext`):

1. load with the registered loader of the spec's ``loader.type``;
2. draw one seeded permutation of the rows; ``max_examples`` keeps its first rows;
3. ``corrupt.shuffle_responses`` (a *negative control*: the source keeps its prompts
   but its answers belong to other prompts, so fine-tuning on it should hurt) moves
   every response/label to another row along one random cycle, a derangement: no row
   keeps its own answer (rows that share an answer text still look unchanged);
4. split along the permutation: test first, then validation, then train, so growing
   the train split never moves rows into or out of the held-out splits;
5. a target with a ``test_loader`` takes every row it reads as its test split, in the
   order read (:func:`load_test_rows`; its ``split.test`` is 0).

Split sizes: an ``int`` is a count, a ``float`` a fraction of the examples kept
(:func:`split_counts`). When the fractions add up to 1, rounding leftovers go to the
largest remainders so that every example is used.

A built-in loader is told how many rows the draw keeps (:func:`rows_used`): it still
checks every row but returns only the kept ones, in the draw's order, the same rows as
drawing from all of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from subsetctl.data.loaders import (
    COLUMNS,
    DRAWING_LOADERS,
    LoadContext,
    dataset_from_columns,
    dataset_table,
    empty_dataset,
    sample_order,
)
from subsetctl.errors import OTHER_UNICODE_FORM, UserError, in_another_form, shown_text
from subsetctl.registry import LOADERS
from subsetctl.spec import SourceSpec, Spec, SplitSpec, TargetSpec

if TYPE_CHECKING:  # datasets is imported where used: validating a spec does not need it
    from datasets import Dataset

SPLITS: tuple[str, ...] = ("train", "validation", "test")

# Independent random streams derived from one seed: the draw of rows is stream
# loaders.STREAM_ORDER (0, see loaders.sample_order); shuffled answers are this one.
_STREAM_CORRUPT = 1


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence the ``datasets`` progress bars (nothing below the CLI prints) and restore
    the previous setting afterwards."""
    from datasets import utils as hf_utils

    was_disabled = hf_utils.are_progress_bars_disabled()
    hf_utils.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            hf_utils.enable_progress_bars()


def load_source(source: SourceSpec, ctx: LoadContext) -> Dataset:
    """The source's rows with the common columns, via the loader registered for its
    ``loader.type``. A built-in loader honours ``ctx.keep_at_most`` (see
    :class:`LoadContext`); another one (a plugin registered under a built-in type) is
    given no limit."""
    from datasets import Dataset

    loader = LOADERS.get(source.loader.type)
    origin = LOADERS.described(source.loader.type)
    if loader not in DRAWING_LOADERS and ctx.keep_at_most is not None:
        ctx = dataclasses.replace(ctx, keep_at_most=None, drawn={})
    with quiet_datasets():
        if origin == "built-in":
            dataset = loader(source.loader, ctx)
        else:  # a plugin registered under the built-in's type
            from subsetctl.plugin_guard import call_loader_plugin

            dataset = call_loader_plugin(  # (its own copy of the options, as a `type: plugin` loader's)
                loader, source.loader.model_copy(deep=True), ctx,
                f"loader plugin {source.loader.type!r} ({origin}), which replaces the built-in loader,",
                "Fix the plugin or the source's loader options.")
    if not isinstance(dataset, Dataset) or set(COLUMNS) - set(dataset.column_names):
        if origin != "built-in":
            raise UserError(
                f"Source {source.name!r}: loader plugin {source.loader.type!r} ({origin}), which replaces the "
                f"built-in loader, returned {_what_it_returned(dataset)}; a replacement is called as the built-in "
                f"is (its options model, e.g. options.path) and must return the built-in's columns "
                f"({', '.join(COLUMNS)}), e.g. by changing what subsetctl.data.loaders.load_{source.loader.type} "
                "returns. Fix the plugin, or register it under a name of its own (README → Plugins)."
            )
        raise UserError(
            f"Source {source.name!r}: the {source.loader.type!r} loader did not return a "
            f"dataset with the columns {', '.join(COLUMNS)}."
        )
    return dataset


_WHOLE_FLOAT = re.compile(r"(-?\d+)\.0+")
#: a causal LM's answer a JSON boolean reads as, and the key it is as a label (``true`` is '1')
_BOOLEAN_ANSWERS = {"true": "1", "false": "0"}


def _answer_key(text: str) -> str:
    """The ``label_map`` key a causal LM's answer ``text`` is, read as a label is (keys are:
    YAML ``1.0`` and ``true`` are '1'): a whole number a float column holds ('1.0') is its
    whole number, a JSON boolean ('true', 'false') '1' or '0'; any other answer itself."""
    if (m := _WHOLE_FLOAT.fullmatch(text)) is not None:
        return m.group(1)
    return _BOOLEAN_ANSWERS.get(text, text)


def label_texts(dataset: Dataset, column: str = "label_text") -> list[str]:
    """A classifier split's ``label_text`` column (or another text ``column``) as a list,
    read from its Arrow table: iterating ``dataset["label_text"]`` decoded row by row (~30 s
    for 400k rows, most of a classifier's data stage re-run)."""
    return dataset_table(dataset).column(column).to_pylist() if len(dataset) else []


def _few_answers_renamed(source: SourceSpec, keys: list[str], texts: list[str]) -> list[str]:
    """A warning when a causal LM's ``label_map`` renamed some of a source's answers but
    fewer than half (``keys``: each answer as a key, ``texts`` as read): a map for 0/1
    labels met answers that only happen to be 0 or 1 (a ``source_files`` group's map
    applies to each of its sources, with ``by`` to every task: an arithmetic task's answer
    '1' became 'positive'), which nothing said; a map fitting most answers is taken as meant."""
    label_map = source.label_map or {}
    hits = [(text, label_map[key]) for key, text in zip(keys, texts, strict=True) if key in label_map]
    if not hits or 2 * len(hits) >= len(texts):
        return []
    pairs = ", ".join(f"{shown_text(a)} -> {shown_text(b)}" if b is not None else f"{shown_text(a)} dropped"
                      for a, b in dict.fromkeys(hits))
    others = sorted({text for key, text in zip(keys, texts, strict=True) if key not in label_map})
    shown = _shown_some(others)
    return [(f"Source {source.name!r}: label_map renamed {len(hits)} of its {len(texts)} answers ({pairs}), the "
            f"others being no key ({shown}): answers that only happen to equal a key are "
            f"{'rewritten or dropped' if any(b is None for _, b in hits) else 'rewritten'} (a "
            "source_files group's label_map applies to each of its sources; with `by`, to every task). If the map "
            "is for one task's labels, list that task as a source of its own (its loader's `where` on the "
            "`by` column, with the label_map), which the group then leaves out, and remove the group's label_map")]


#: how :func:`map_labels`'s warnings about a source begin, after "Source 'name': ": keys no row has, few
#: answers renamed (:func:`group_label_map_warnings` finds those of a group's sources by them)
LABEL_MAP_WARNINGS = ("label_map names ", "label_map renamed ")

#: the most sources a merged warning (:func:`group_label_map_warnings`) names; it counts the rest
GROUP_SOURCES_NAMED = 5


def group_label_map_warnings(spec: Spec, warnings: list[str], unread: Collection[str] = ()) -> list[str]:
    """``warnings`` with :func:`map_labels`'s warnings about the sources of one
    ``source_files`` group (two or more of them) made one, where the first of them was: a
    group's ``label_map`` is every source's, and one meant for a single task of a ``by``
    group warned once per other task (hundreds of lines saying one thing). ``unread``: the
    sources whose labels were not read (validate's row limit): a group read in part says
    how many of its sources it speaks of, even of one, where it counted those read as if
    they were the group (the data stage's warning, of them all, said another number)."""
    members: dict[int, list[SourceSpec]] = {}  # group -> its sources
    for i, (g, _) in sorted(spec.source_origins.items()):
        if i < len(spec.sources):
            members.setdefault(g, []).append(spec.sources[i])
    heads = {f"Source {source.name!r}: {kind}": (g, source.name, kind)
             for g, sources in members.items() if sources[0].label_map for source in sources
             for kind in LABEL_MAP_WARNINGS}
    found: dict[int, dict[str, list[tuple[str, str]]]] = {}  # group -> kind -> (source, warning)
    kept: list[str | int] = []  # the other warnings, and each group's place
    for warning in warnings:
        head = warning.partition(": ")[0] + ": " + next((k for k in LABEL_MAP_WARNINGS
                                                        if warning.partition(": ")[2].startswith(k)), "")
        if head not in heads:
            kept.append(warning)
            continue
        g, name, kind = heads[head]
        if g not in found:
            kept.append(g)
        found.setdefault(g, {}).setdefault(kind, []).append((name, warning))
    out: list[str] = []
    for item in kept:
        if isinstance(item, str):
            out.append(item)
            continue
        left = sum(source.name in unread for source in members[item])
        if sum(map(len, found[item].values())) == 1 and not left:  # one source: its own warning says it best
            out.extend(w for said in found[item].values() for _, w in said)
        else:
            out.append(_group_label_map_warning(item, members[item], found[item], left))
    return out


def _group_label_map_warning(g: int, members: list[SourceSpec], said: dict[str, list[tuple[str, str]]],
                             left: int = 0) -> str:
    """The one warning of group ``g``'s label_map (see :func:`group_label_map_warnings`);
    ``left``: how many of its sources' labels were not read."""
    def named(found: list[tuple[str, str]]) -> str:
        more = len(found) - GROUP_SOURCES_NAMED
        return ", ".join(repr(name) for name, _ in found[:GROUP_SOURCES_NAMED]) + (f" and {more} more" if more > 0
                                                                                  else "")

    keys = ", ".join(repr(k) for k in members[0].label_map or {})
    parts = []
    if (unused := said.get(LABEL_MAP_WARNINGS[0])):
        parts.append(f"names keys that no row of {len(unused)} of them has (renaming nothing there): {named(unused)}")
    if (few := said.get(LABEL_MAP_WARNINGS[1])):
        parts.append(f"renamed fewer than half of the answers of {len(few)} (answers that only happen to equal a key "
                     f"are rewritten): {named(few)}")
    by = next((f"; with `by: {column}`, to every task" for column in (getattr(members[0].loader, "where", None) or {})),
              "")
    first = next(w for found in said.values() for _, w in found)
    read = (f"validate read the labels of {len(members) - left} of them (its row limit left the other {left} to the "
            "data stage), and of those it ") if left else "it "
    return (f"source_files[{g}]: the group's label_map ({keys}) applies to each of its {len(members)} sources{by}; "
            f"{read}{'; it '.join(parts)}. If the map is for one task's labels, list that task as a source of its "
            "own (a loader's `where` on the `by` column, with the label_map), which the group then leaves out, and "
            f"remove the group's label_map. The first such source's warning: {first}")


#: the most distinct labels (answers) among which :func:`misspelt_keys` looks for a key's label
MISSPELT_AMONG = 1000

def folded_label(text: str) -> str:
    """``text`` as labels that differ only in letter case or Unicode form ('é' as one character
    or as 'e' + an accent; a full-width 'Ａ') read alike, to tell such labels apart from others."""
    return unicodedata.normalize("NFKC", text).lower()


def label_spelling(text: str) -> str:
    """A label as a number or truth value would read in any file format: "1.0", "1" and
    "True" (a CSV cell) all read "1", as JSON's 1.0, 1 and true already do; letter case and
    Unicode form aside ('négatif' with its 'é' as one character or as 'e' + an accent)."""
    folded = folded_label(text.strip())
    if folded in ("true", "false"):
        return "1" if folded == "true" else "0"
    try:
        value = float(folded)
    except ValueError:
        return folded
    return str(int(value)) if value.is_integer() else repr(value)



def labels_the_target_lacks(name: str, texts: list[str], target_labels: set[str],
                            label_map: dict[str, str | None]) -> list[str]:
    """The data stage's warning about source ``name`` (``texts``: its rows' labels, one a row,
    the ``label_map`` applied), whose classes the target's (``target_labels``) lack; validate says
    it of the first rows of the files (:func:`subsetctl.spec_checks._warn_label_map_labels`).
    Here, not in :mod:`subsetctl.data.stage`: validate reads plain label texts, without datasets."""
    warnings = []
    by_spelling = {label_spelling(t): t for t in sorted(target_labels)}
    labels = set(texts)
    # (the labels are those after the map: a class it renamed rows into, {'POSITIVE': 'Positive'}, is the
    # map's work, not a label keeping its name beside a misspelt key, and its warning stays)
    misspelt = set(misspelt_keys(label_map, labels).values()) - set(label_map.values())
    extra = sorted(labels - target_labels - misspelt)
    if extra:
        shown = _shown_some(extra)
        alike = [(t, by_spelling[label_spelling(t)]) for t in extra if label_spelling(t) in by_spelling]
        hint = ""
        if alike:
            pairs = ", ".join(f"{shown_text(a)} (the target's {shown_text(b)})" for a, b in alike[:5])
            a, b = alike[0]
            form = (", and an accented letter is one character or, as macOS writes it, a letter and an accent"
                    if any(in_another_form(a, b) for a, b in alike) else "")
            hint = (f" {pairs} look like the target's labels written another way, but each is a class of its "
                    "own: write the labels the same way in every file (a CSV column of floats gives '1.0', "
                    f"CSV True/False stay text, JSON true/false read '1'/'0'{form}), or map them with the "
                    f"source's label_map (e.g. label_map: {{{shown_text(a)}: {shown_text(b)}}}).")
        elif not labels & target_labels:
            ours = sorted(target_labels)
            named = _shown_some(ours)
            hint = (" None of its labels is the target's: classes are matched across files by their names, so "
                    "its rows teach only classes the target's test never asks for (predicting one is a miss). "
                    f"If they are the target's classes ({named}) under other names, map them onto those with "
                    f"the source's label_map (e.g. label_map: {{{shown_text(extra[0])}: {shown_text(ours[0])}}}).")
        elif label_map and not set(extra) & set(label_map.values()):
            hint = _unmapped_hint(label_map, extra, texts, target_labels)
        else:
            hint = (" Its rows of those classes teach classes the target's test never asks for (predicting one "
                    "is a miss); if one is a target class under another name, map it with the source's label_map.")
        warnings.append(f"Source {name!r} has labels the target never uses: {shown}.{hint}")
    return warnings


#: how :func:`_unmapped_hint` says a source's labels the target lacks are ones its label_map leaves out
UNMAPPED_LABELS = "Its label_map, which renames others, does not name them"


def _unmapped_hint(label_map: dict[str, str | None], extra: list[str], texts: list[str],
                   target_labels: set[str]) -> str:
    """What :func:`labels_the_target_lacks` says of a source's labels the target lacks that its
    ``label_map`` (which maps others onto the target's classes) leaves out, a class
    forgotten (a 4-star rating beside 0-3 mapped): their rows, and the map to write, each
    onto a target class or to null, which drops its rows."""
    rows = Counter(texts)
    shown = ", ".join(f"{shown_text(t)} ({rows[t]} row{'' if rows[t] == 1 else 's'})" for t in extra[:5])
    ours = sorted(target_labels)
    named = _shown_some(ours)
    written = ", ".join([*(f"{shown_text(k)}: {'null' if v is None else shown_text(v)}" for k, v in label_map.items()),
                         *(f"{shown_text(t)}: null" for t in extra[:5])])
    return (f" {UNMAPPED_LABELS} ({shown}): its rows of those classes teach "
            "classes the target's test never asks for (predicting one is a miss). Map each onto one of the "
            f"target's classes ({named}), or drop its rows with null: label_map: {{{written}}}.")


def misspelt_keys(label_map: dict[str, str | None], labels: set[str]) -> dict[str, str]:
    """Each key of ``label_map`` that no label in ``labels`` is, but that looks like one the
    map does not name (a typo, 'entailement' for 'entailment'; another case, 'Entailment'):
    key -> that label. Such a label keeps its name, a class (an answer) the map was meant to
    rename; the key's warning says which to write, and the warning about the source's
    classes the target lacks leaves that label to it. Nothing among more than
    :data:`MISSPELT_AMONG` distinct labels (answers of a task, not classes)."""
    import difflib

    unnamed = sorted(labels - set(label_map))
    if len(unnamed) > MISSPELT_AMONG:
        return {}
    folded = {folded_label(t): t for t in unnamed}
    found = {}
    for key in label_map:
        if key in labels:
            continue
        close = difflib.get_close_matches(folded_label(key), list(folded), n=1, cutoff=0.8)
        if close:
            found[key] = folded[close[0]]
    return found


def map_labels(dataset: Dataset, source: SourceSpec, warnings: list[str] | None, kind: str = "classifier") -> Dataset:
    """``dataset`` with each label that ``source.label_map`` names renamed to its class (a
    classifier's source labelled 0/1 taught as the target's 'negative' and 'positive'), or,
    for a causal LM (``kind``), each answer that is a key, whole, replaced by its value (a
    classification dataset's 0/1 answers taught as the words a causal-lm target answers
    with); a key that no row's label is (a typo, '1.0' for the '1' subsetctl reads) is
    warned about, with the labels there are."""
    classifier = kind == "classifier"
    column = "label_text" if classifier else "response"
    label_map = source.label_map or {}
    texts = label_texts(dataset, column)
    # (an answer '1.0', a whole number a float column holds, is the key 1, and 'true' the key true, read '1':
    # a key is read as labels are; an answer the map names as written, a quoted 'true', is that key)
    keys = texts if classifier else [t if t in label_map else _answer_key(t) for t in texts]
    if warnings is not None and (unused := unused_keys_warning(source, texts, keys, kind)) is not None:
        warnings.append(unused)
    digest = hashlib.sha256(json.dumps(label_map, sort_keys=True).encode()).hexdigest()
    renamed = [label_map.get(key, text) for key, text in zip(keys, texts, strict=True)]
    if not classifier and warnings is not None:
        warnings.extend(_few_answers_renamed(source, keys, texts))
    tag = "labels" if classifier else "answers"  # (the classifier's as it was: same prepared data)
    mapped = dataset.remove_columns(column).add_column(
        column, [text if text is not None else "" for text in renamed], new_fingerprint=hashlib.sha256(
            f"{dataset._fingerprint}|{tag}|{digest}".encode()).hexdigest()[:16]).select_columns(
        list(dataset.column_names))
    kept = [i for i, text in enumerate(renamed) if text is not None]
    if len(kept) == len(renamed):
        return mapped
    # a label mapped to null: its rows are dropped (before the seeded draw, so max_examples counts rows kept)
    return mapped.select(kept, new_fingerprint=hashlib.sha256(
        f"{mapped._fingerprint}|dropped|{len(kept)}".encode()).hexdigest()[:16])


def unused_keys_warning(source: SourceSpec, texts: list[str], keys: list[str], kind: str = "classifier") -> str | None:
    """:func:`map_labels`' warning of ``source.label_map`` keys that no row's label (a causal
    LM's answer, ``kind``) is, with the labels there are (``texts``: each row's, as read;
    ``keys``: each as a key of the map), or None; from plain texts, for validate to say it of a
    file's first rows without datasets (:func:`~subsetctl.spec_checks._warn_label_map_labels`)."""
    label_map = source.label_map or {}
    classifier = kind == "classifier"
    what = "label" if classifier else "answer"
    unused = sorted(set(label_map) - set(keys))
    if not unused:
        return None
    misspelt = misspelt_keys(label_map, set(keys))
    there = sorted(set(texts))
    shown = _shown_some(there, 10)
    return (f"{'Target' if isinstance(source, TargetSpec) else 'Source'} {source.name!r}: label_map names "
            f"{', '.join(map(shown_text, unused))}, which no row of it has as its {what} (its {what}s: "
            f"{shown or 'none'}); those keys rename nothing. "
            + _misspelt_hint(label_map, misspelt, keys, what)
            + ("" if set(misspelt) == set(unused) else f"{' ' if misspelt else ''}Write each key as the "
               f"{what} is read " + (
                "(JSON 1, 1.0 and true read '1'; a CSV cell as written)." if classifier else
                "(the whole answer; 1.0 matches the key 1, true the key true).")))


def _misspelt_hint(label_map: dict[str, str | None], misspelt: dict[str, str], keys: list[str], what: str) -> str:
    """What :func:`map_labels`'s warning about unused keys says of those that look like a
    label of the source misspelt (``misspelt``, from :func:`misspelt_keys`; ``keys``: each
    row's label as a key): the label and its rows, which keep its name, and the key to
    write instead; empty when none does."""
    if not misspelt:
        return ""
    written = ", ".join(f"{shown_text(text)}: {'null' if label_map[key] is None else shown_text(label_map[key])}"
                        for key, text in misspelt.items())
    forms = [key for key, text in misspelt.items() if in_another_form(key, text)]
    if len(misspelt) == 1:
        (key, text), = misspelt.items()
        looks = f"is its {what} {shown_text(text)} in another Unicode form ({OTHER_UNICODE_FORM})" if forms else \
            f"looks like its {what} {shown_text(text)} misspelt"
        said = (f"The key {shown_text(key)} {looks}; the {_rows(keys.count(text))} whose {what} is "
                f"{shown_text(text)} keep it")
    else:
        named = ", ".join(f"{shown_text(key)} (its {what} {shown_text(text)}, {_rows(keys.count(text))})"
                          for key, text in misspelt.items())
        said = f"The keys {named} look misspelt{' or are in another Unicode form' if forms else ''}; those rows " \
            f"keep their {what}s"
    return f"{said}: write label_map: {{{written}}} instead."


def _shown_some(texts: list[str], limit: int = 5) -> str:
    """The first ``limit`` of ``texts`` as :func:`~subsetctl.errors.shown_text` shows them, and
    how many more ("'a', 'b' and 3 more")."""
    return ", ".join(map(shown_text, texts[:limit])) + (f" and {len(texts) - limit} more" if len(texts) > limit else "")


def _rows(n: int) -> str:
    """``n`` rows, in words ("1 row", "3 rows")."""
    return f"{n} row{'' if n == 1 else 's'}"


def drops_rows(source: SourceSpec) -> bool:
    """Whether ``source.label_map`` maps a label to null, dropping its rows."""
    return any(value is None for value in (source.label_map or {}).values())


def _what_it_returned(dataset: Any) -> str:
    """What a replacing loader returned, for a message: its type when it is not a
    dataset, else the dataset's columns."""
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        from subsetctl.data.loaders.plugin import how_to_return_a_dataset

        return f"a {type(dataset).__name__}, not a datasets.Dataset{how_to_return_a_dataset(dataset)}"
    return f"a dataset with the columns {', '.join(dataset.column_names) or '(none)'}"


def rows_used(source: SourceSpec) -> int | None:
    """The most rows of the seeded draw :func:`prepare_source` can use: ``max_examples``,
    or fewer when every split is a count (the draw's first rows fill them; with
    ``corrupt.shuffle_responses`` the answers move among every row kept, so only
    ``max_examples`` counts). None: every row."""
    if drops_rows(source):
        return None  # the draw is of the rows the label_map keeps, known only once they are read
    limit = source.max_examples
    sizes = [getattr(source.split, name) for name in SPLITS]
    if all(isinstance(v, int) for v in sizes) and not source.corrupt.shuffle_responses:
        limit = sum(sizes) if limit is None else min(limit, sum(sizes))
    return limit


def split_counts(split: SplitSpec, n: int) -> dict[str, int]:
    """Rows per split for ``n`` examples: ints are counts, floats fractions of ``n``.

    Fractions are floored; when they sum to 1 the leftover rows go to the fractions with
    the largest remainders (ties: train, validation, test). Never more than ``n`` rows
    are handed out by fractions; counts are checked by the caller."""
    sizes = {name: getattr(split, name) for name in SPLITS}
    counts = {name: v for name, v in sizes.items() if isinstance(v, int)}
    fractions = {name: float(v) for name, v in sizes.items() if not isinstance(v, int)}
    exact = {name: f * n for name, f in fractions.items()}
    for name, value in exact.items():
        counts[name] = math.floor(value + 1e-9)
    if fractions and abs(sum(fractions.values()) - 1.0) < 1e-9:
        leftover = n - sum(counts[name] for name in fractions)
        order = sorted(fractions, key=lambda name: (-(exact[name] - counts[name]), SPLITS.index(name)))
        for name in order[: max(leftover, 0)]:
            counts[name] += 1
    return {name: counts[name] for name in SPLITS}


def _too_few_advice(source: SourceSpec, capped: bool, asked: int, n_loaded: int) -> str:
    """What to do when the split asks for more rows than a source has: raise
    ``max_examples`` only when it is what cut the rows (and the loader has enough), raise a
    generator's ``size``, else give the source more data."""
    advice = "Lower the split counts or use fractions"
    if capped and asked <= n_loaded:
        return f"{advice}, or raise max_examples (the source has {n_loaded} examples)."
    if source.loader.type == "reasoning_gym":
        more = f"raise loader.size (now {n_loaded})"
    else:
        more = f"add rows to the source's data (its loader gave {n_loaded})"
    return f"{advice}, or {more}" + (" and raise max_examples." if capped else ".")


MIN_VALIDATION_EXAMPLES = 10
"""Fewer target validation rows than this get a warning: the search ranks every subset by
the estimated loss on them (the evaluate stage warns likewise about the test split)."""


def _target_split_notes(target: TargetSpec, counts: dict[str, int], n: int) -> list[str]:
    """Target splits that are legal but likely not meant: fractions that leave rows
    unused, and a validation split too small to rank subsets by."""
    notes = []
    sizes = [getattr(target.split, name) for name in SPLITS]
    used = sum(counts.values())
    if all(isinstance(v, float) for v in sizes) and used < n:
        notes.append(
            f"Target {target.name!r}: the split fractions ({_describe_split(target.split)}) add up to "
            f"{sum(sizes):g}, so {n - used} of its {n} examples {'is' if n - used == 1 else 'are'} left out of "
            "every split. If that is not meant, "
            "make the fractions add up to 1."
        )
    if 0 < counts["validation"] < MIN_VALIDATION_EXAMPLES:
        notes.append(
            f"Target {target.name!r} has only {counts['validation']} validation example{'' if counts['validation'] == 1 else 's'} (< "
            f"{MIN_VALIDATION_EXAMPLES}): the search ranks every subset by the estimated loss on them, so a few "
            "rows decide the selection. Give target.split.validation more rows if the data allows."
        )
    return notes


def _describe_split(split: SplitSpec, counts: dict[str, int] | None = None) -> str:
    """The split as the spec writes it and, given ``counts`` and when it has fractions, the
    row counts they give: "train=0.5, validation=0.25, test=0.25 -> train=20, ..."; a split
    of counts alone is said once."""
    written = ", ".join(f"{name}={getattr(split, name)!r}" for name in SPLITS)
    if counts is None:
        return written
    counts_said = ", ".join(f"{name}={counts[name]}" for name in SPLITS)
    return counts_said if written == counts_said else f"{written} -> {counts_said}"


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point (for n >= 2): one random cycle through
    all rows. ``out[i]`` is the row whose answer row ``i`` receives."""
    order = rng.permutation(n)
    out = np.arange(n)
    if n >= 2:
        out[order] = np.roll(order, -1)
    return out


def shuffle_responses(dataset: Dataset, seed: int) -> Dataset:
    """Move each row's response, label and label_text to another row (a seeded
    derangement); prompts stay. Each row's metadata records ``shuffled_from_row``, the
    original ``row`` its answer came from, so the corruption is traceable."""
    n = len(dataset)
    source_of = derangement(n, np.random.default_rng([seed, _STREAM_CORRUPT]))
    columns = dataset.to_dict()
    out = dict(columns)
    for name in ("response", "label", "label_text"):
        out[name] = [columns[name][j] for j in source_of]
    metadata = []
    for i, j in enumerate(source_of):
        meta = json.loads(columns["metadata"][i])
        meta["shuffled_from_row"] = int(columns["row"][j])
        metadata.append(json.dumps(meta, ensure_ascii=True, sort_keys=True))
    out["metadata"] = metadata
    return dataset_from_columns(out)


def prepare_source(
    source: SourceSpec, ctx: LoadContext, warnings: list[str] | None = None
) -> dict[str, Dataset]:
    """Load, subsample, shuffle, corrupt and split one source (or the target).

    Args:
        source: the source's spec (a :class:`TargetSpec` for the target).
        ctx: load context; ``ctx.seed`` seeds every random choice.
        warnings: if given, non-fatal problems are appended to it as messages.

    Returns:
        ``{"train": ..., "validation": ..., "test": ...}``; every key is present, a
        split of size 0 is an empty dataset with the common columns.

    Raises:
        UserError: the source is empty, or asks for more rows than it has, or (the
        target) its train, validation or test split would be empty.
    """
    # the loader maps only the rows kept (it still checks them all): a few thousand of a
    # file of millions no longer become millions of metadata strings first
    ctx = dataclasses.replace(ctx, keep_at_most=rows_used(source), drawn={})
    dataset = load_source(source, ctx)
    if warnings is not None:
        warnings.extend(ctx.notices)
    if source.label_map:
        dataset = map_labels(dataset, source, warnings, ctx.kind)
    drawn = "rows" in ctx.drawn  # the loader returned the draw's rows, in its order
    n_loaded = ctx.drawn["rows"] if drawn else len(dataset)
    if n_loaded == 0 and drops_rows(source):
        dropped = ", ".join(repr(key) for key, value in (source.label_map or {}).items() if value is None)
        raise UserError(f"{'Target' if isinstance(source, TargetSpec) else 'Source'} {source.name!r}: its label_map "
                        f"drops every row (it maps {dropped} to null). Map fewer labels to null, or remove the source.")
    if n_loaded == 0:
        raise UserError(f"Source {source.name!r} has no examples. Check its loader settings.")
    order = np.arange(len(dataset)) if drawn else sample_order(ctx.seed, n_loaded, source.max_examples)
    n = len(order)
    counts = split_counts(source.split, n)
    asked = sum(counts.values())
    if asked > n:
        capped = source.max_examples is not None and source.max_examples < n_loaded
        kept = f"{n} examples" + (f" (max_examples={source.max_examples} of {n_loaded} loaded)" if capped else "")
        said = f" ({'; '.join(n.rstrip('.') for n in ctx.notices)})" if ctx.notices else ""  # e.g. blank rows left out
        raise UserError(
            f"{'Target' if isinstance(source, TargetSpec) else 'Source'} {source.name!r}: split asks for {asked} "
            f"examples ({_describe_split(source.split, counts)}) but it has only {kept}{said}. "
            f"{_too_few_advice(source, capped, asked, n_loaded)}"
        )
    if isinstance(source, TargetSpec) and counts["train"] == 0:
        raise UserError(
            f"Target {source.name!r}: split.train={source.split.train!r} of {n} examples gives no training "
            "examples, but every fine-tune (and the target_only baseline) trains on the target's own "
            "training rows. Raise target.split.train (a count >= 1 or a larger fraction)."
        )
    for name in SPLITS:
        requested = getattr(source.split, name)
        if requested and counts[name] == 0:
            if isinstance(source, TargetSpec) and name in ("validation", "test"):
                # both are needed (calibration and selection; the final scores): an empty one
                # must stop the data stage, not evaluate after every fine-tune
                raise UserError(
                    f"Target {source.name!r}: split.{name}={requested!r} of {n} examples "
                    f"gives no {name} examples. Raise target.split.{name} or use more data."
                )
            if warnings is not None:
                warnings.append(
                    f"Source {source.name!r}: split.{name}={requested!r} of {n} examples gives "
                    f"0 {name} examples."
                )
    if isinstance(source, TargetSpec) and warnings is not None:
        warnings.extend(_target_split_notes(source, counts, n))
    if counts["train"] == 0 and not isinstance(source, TargetSpec) and warnings is not None:
        warnings.append(f"Source {source.name!r} has no training examples; it cannot change any fine-tune.")
    if drawn:
        kept_rows = dataset
    else:
        # the fingerprint from the rows' and the order's bytes: datasets would dill-hash the
        # index list (6 s for a million rows)
        order_digest = hashlib.sha256(np.ascontiguousarray(order, dtype=np.int64).tobytes()).hexdigest()
        kept_rows = dataset.select(order, new_fingerprint=hashlib.sha256(
            f"{dataset._fingerprint}|{order_digest}".encode()).hexdigest()[:16])
    if source.corrupt.shuffle_responses:
        if n < 2 and warnings is not None:
            warnings.append(
                f"Source {source.name!r}: shuffle_responses needs at least 2 examples; it has {n}, "
                "so its answers are unchanged."
            )
        kept_rows = shuffle_responses(kept_rows, ctx.seed)
    out: dict[str, Dataset] = {}
    start = 0
    for name in ("test", "validation", "train"):
        count = counts[name]
        out[name] = kept_rows.select(range(start, start + count)) if count else empty_dataset()
        start += count
    if isinstance(source, TargetSpec) and source.test_loader is not None:
        out["test"] = load_test_rows(source, ctx, warnings)
    return {name: out[name] for name in SPLITS}


def load_test_rows(target: TargetSpec, ctx: LoadContext, warnings: list[str] | None = None) -> Dataset:
    """The target's test split read by its ``test_loader``: every row, in the order it
    reads them (no seeded draw, no ``max_examples``: a benchmark's test set is scored
    whole, so results compare with published ones), with the target's column options,
    chat handling and ``label_map`` as its loader's rows get them. Its loader's messages
    and notices name ``test_loader``, so that the key to change is plain.

    Raises:
        UserError: the test loader fails or reads no rows."""
    assert target.test_loader is not None
    said = f"Source {target.name!r}"
    where = f"Target {target.name!r}: its test_loader ({target.test_loader.type})"

    def of_test_loader(message: str) -> str:
        return where + message[len(said):] if message.startswith(said) else f"{where}: {message}"

    test_ctx = dataclasses.replace(ctx, keep_at_most=None, drawn={}, notices=[])
    try:
        dataset = load_source(target.model_copy(update={"loader": target.test_loader}), test_ctx)
    except UserError as exc:
        if len(exc.args) == 1 and isinstance(exc.args[0], str):
            exc.args = (of_test_loader(exc.args[0]),)
        raise
    if warnings is not None:
        warnings.extend(of_test_loader(notice) for notice in test_ctx.notices)
    if len(dataset) == 0:
        raise UserError(f"{where} read no rows, and the final fine-tunes are evaluated on them. Check "
                        "target.test_loader (its file, columns, split), or remove it to draw the test rows from "
                        "target.loader with target.split.test.")
    if target.label_map:
        mapped: list[str] = []  # (said of the test_loader's rows: its loader's may well have those labels)
        dataset = map_labels(dataset, target, mapped, ctx.kind)
        if warnings is not None:
            warnings.extend(where + notice.removeprefix(f"Target {target.name!r}") for notice in mapped)
        if len(dataset) == 0:
            raise UserError(f"{where}: the target's label_map drops every row it read (labels mapped to null), and "
                            "the final fine-tunes are evaluated on them. Map fewer labels to null.")
    return dataset


def split_summary(splits: dict[str, Dataset]) -> dict[str, Any]:
    """``{split: number of rows}``."""
    return {name: len(ds) for name, ds in splits.items()}
