"""Rows shared across the prepared data that make the method's numbers meaningless.

Every figure subsetctl produces rests on the target's held-out rows being unseen: the
search ranks subsets by the estimated loss on the target's validation split, and the
report compares selections on its test split. A source that contains those rows verbatim
(a scraped copy of the benchmark, the target file listed twice, a ``source_files`` glob
that also matches a copy of it) is "helpful" only because it leaks the answers, and the
search will pick it. Nothing fails, so the data stage says so in warnings:

- a source holding target validation/test rows verbatim (same prompt and same answer);
- the target's own train split repeating its validation/test rows (duplicate lines);
- two or more sources holding exactly the same rows (one file under two names);
- a source all of whose rows are rows of the target's train split (the target's file
  listed as a source, for its train rows).

Sources with ``corrupt.shuffle_responses`` are negative controls by design and are left
out of the first check: their answers are shuffled, so a row that still matches does so
by chance. Rows match on the prompt and the answer (the response, or the label's text
for a classifier) with surrounding whitespace removed and line ends made alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

NAMES_SHOWN = 5
"""Source names one warning lists before it says how many more there are."""

KEY_BATCH = 2048
"""Rows of a source the checks read as Python strings at once: a source's rows are
checked a batch at a time, so that its text is never held in Python twice over."""


def _comparable(text: Any) -> str:
    """A cell as rows are compared: whitespace-stripped, with Windows (``\r\n``) and old
    Mac (``\r``) line ends as ``\n``, so that a copy of the target saved on another system
    (a CSV cell keeps its line ends verbatim) still matches it."""
    text = str(text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.strip()


def _key_batches(dataset: Any, kind: str) -> Iterator[list[tuple[str, str]]]:
    """(prompt, answer) of every row, as :func:`_comparable` compares them,
    :data:`KEY_BATCH` rows at a time. The two columns are read from the Arrow table (its
    slices cost no copy): a datasets ``Column`` iterated row by row took 40 s for a million
    rows, and ``select_columns`` made a new ``Dataset`` first (~2 ms a split: a tenth of the
    data stage of many small sources)."""
    from subsetctl.data.loaders import dataset_table

    answer = "label_text" if kind == "classifier" else "response"
    if len(dataset) == 0:
        return
    table = dataset_table(dataset).select(["prompt", answer])
    for start in range(0, table.num_rows, KEY_BATCH):
        columns = table.slice(start, KEY_BATCH).to_pydict()
        yield [(_comparable(p), _comparable(a)) for p, a in zip(columns["prompt"], columns[answer])]


def _row_keys(dataset: Any, kind: str) -> list[tuple[str, str]]:
    """:func:`_key_batches` of ``dataset`` in one list (the target's splits, kept)."""
    return [key for keys in _key_batches(dataset, kind) for key in keys]


def _rows_digest(keys: Iterable[tuple[str, str]]) -> int:
    """The sum, modulo 2**64, of each row's (prompt, answer) hash: two sources' sums (and
    row counts) are equal when they hold the same rows in any order, and the sum takes in a
    source a batch at a time without keeping anything a row. Python's ``hash`` of strings
    is salted per process, which suits sums compared within one data stage only (and no
    cryptographic digest is needed to tell apart rows that differ by accident). Each row's
    hash is of its prompt and answer joined, one string: a tuple's hash combines its items'
    nearly additively (xxHash's add, rotate and multiply), so a classifier source and its
    copy with the labels shuffled among the rows (``corrupt.shuffle_responses``, a negative
    control), the same prompts and the same labels paired otherwise, summed alike in about a
    third of the processes and were called "the same rows"."""
    return sum(hash(f"{prompt}\x00{answer}") for prompt, answer in keys) % 2**64


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


class OverlapCheck:
    """This module's checks, fed one source at a time, so that the data stage need not
    keep every source in memory: per source it keeps a count and a digest. A source's
    rows are read a batch at a time, and only their count and digest kept: for a
    source of 300 MB of text, its rows as Python strings, each row's text joined once more
    and that text encoded took about 1.2 GB above the source's own table."""

    def __init__(self, target: str, target_splits: Mapping[str, Any], kind: str,
                 negative_controls: Iterable[str] = ()) -> None:
        self.target, self.kind = target, kind
        self.controls = set(negative_controls)
        self.held_out = {k for split in ("validation", "test") for k in _row_keys(target_splits[split], kind)}
        self.target_train = set(_row_keys(target_splits["train"], kind))
        self.repeated = len(self.held_out & self.target_train)
        self.leaking: list[tuple[str, int]] = []
        self.copies_of_train: list[str] = []
        self.by_content: dict[str, list[str]] = {}

    def add(self, name: str, splits: Mapping[str, Any]) -> None:
        """Take in one source's prepared splits."""
        checked = name not in self.controls  # a negative control is only compared with the other sources
        shared: set[tuple[str, str]] = set()
        rows = digest = 0
        all_in_train = checked
        for split in splits.values():
            for keys in _key_batches(split, self.kind):
                if checked and self.held_out:
                    shared.update(self.held_out.intersection(keys))
                all_in_train = all_in_train and self.target_train.issuperset(keys)
                rows += len(keys)
                digest = (digest + _rows_digest(keys)) % 2**64
        if shared:
            self.leaking.append((name, len(shared)))
        if rows and all_in_train:
            self.copies_of_train.append(name)
        if rows:
            self.by_content.setdefault(f"{rows}:{digest:016x}", []).append(name)

    def warnings(self) -> list[str]:
        """What the checks found, for the sources added so far; a classifier's rows are
        called by what they hold, a text and its label, not a prompt and its answer."""
        warnings: list[str] = []
        same = "the same text and label" if self.kind == "classifier" else "the same prompt and answer"
        answers = "labels" if self.kind == "classifier" else "answers"
        if self.repeated:
            warnings.append(
                f"The target {self.target!r} has {self.repeated} validation/test row(s) that also appear in its "
                f"train split ({same}: its data repeats them). Subsets are ranked by the "
                "validation loss and compared on the test split, both of which then reward memorizing these "
                "rows. Remove the duplicates from the target's data."
            )
        if self.leaking:  # one warning for all: a pool of a thousand sources may have many small overlaps
            leaking = sorted(self.leaking, key=lambda item: -item[1])
            # each source's count is of the held-out rows it holds: "(15)" alone left a reader to guess
            shown = ", ".join(f"{name!r} ({count} row{'' if count == 1 else 's'})" for name, count in leaking[:NAMES_SHOWN])
            more = (f" and {len(leaking) - NAMES_SHOWN} more sources "
                    f"({sum(c for _, c in leaking[NAMES_SHOWN:])} rows)" if len(leaking) > NAMES_SHOWN else "")
            which = f"Source {shown}{more} holds" if len(leaking) == 1 else f"Sources {shown}{more} hold"
            warnings.append(
                f"{which} target validation/test rows verbatim ({same}; of the target's "
                f"{len(self.held_out)} distinct held-out rows): training on them leaks held-out {answers}, so the "
                "search will rate such sources helpful and the test scores of selections with them are inflated. "
                "Remove those rows from the sources (or the sources from the spec)."
            )
        if self.copies_of_train:
            which = ("Every row of source " if len(self.copies_of_train) == 1 else "Every row of sources ")
            warnings.append(
                f"{which}{_names(self.copies_of_train)} is a row of the train split of the target {self.target!r} itself "
                f"({same}): such a source brings no new data, only counts target rows again (in "
                "meta-init and in every subset that takes it), so selecting it weighs the target's rows more. "
                "Remove it from the sources unless repeating the target's rows is what you mean to test."
            )
        for names in self.by_content.values():
            if len(names) > 1:
                warnings.append(
                    f"Sources {_names(names)} hold exactly the same rows (the same file or data under "
                    f"{len(names)} names?): each copy counts again in meta-init and in every subset that takes "
                    "more than one of them. Keep one."
                )
        return warnings


def overlap_warnings(
    target: str,
    prepared: Mapping[str, Mapping[str, Any]],
    kind: str,
    negative_controls: Iterable[str] = (),
) -> list[str]:
    """The warnings of this module's checks for ``prepared`` (``{name: {split: Dataset}}``,
    the target included); ``negative_controls`` are the sources whose answers are shuffled."""
    check = OverlapCheck(target, prepared[target], kind, negative_controls)
    for name, splits in prepared.items():
        if name != target:
            check.add(name, splits)
    return check.warnings()
