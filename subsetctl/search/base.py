"""The search-strategy interface: what a strategy receives, returns and is configured by.

A strategy decides which auxiliary sources to keep. It sees the world only through a
:class:`~subsetctl.estimate.base.SubsetEstimator` (``estimate(masks) -> L_hat``), a
:class:`SearchContext` (source names, seed, optional cached features, earlier picks) and
its own validated ``Params``. It returns a :class:`StrategyResult`.

Score convention, for every strategy: **a higher score means a more helpful source**
(including the source is expected to lower the target's validation loss).

Strategies talk to the estimator through :class:`SubsetMemo`, which batches requests,
never asks the estimator twice for the same subset within one run, and records every
evaluated subset in the result's trace (a :class:`SubsetTrace`: packed bits and a float
array, read as the list of ``{"subset": [names], "loss": ...}`` dicts it replaced). Keeping
all estimator traffic in whole batches lets a caching or parallel estimator wrapper (or an
expensive real fine-tune estimator) do its work efficiently.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable, Iterable, Iterator, MutableSequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import ConfigDict, ValidationError

from subsetctl.errors import UserError
from subsetctl.estimate.base import FeatureSet, SubsetEstimator
from subsetctl.estimate.rowindex import DeltaRows, RowIndex, distinct_rows, grown, hash_rows
from subsetctl.spec import NoBooleansForNumbers, plain_error_message

#: ``progress(message, done, total)``: called by strategies as batches finish.
ProgressFn = Callable[[str, int, int], None]


def count_text(count: int) -> str:
    """A number of subsets for a message: in full with thousands separators up to 2^40, past
    that as a power of two (exhaustive over 1,000 sources: 2^1000, which in full ran to 302
    digits), or "more than" the largest one below it."""
    if count <= 2**40:
        return f"{count:,}"
    power = count.bit_length() - 1
    return f"2^{power}" if count == 2**power else f"more than 2^{power}"


class NoFiniteEstimate(UserError):
    """A strategy found no finite estimate among the subsets it needs to choose from
    (every one NaN or infinite). The estimator, not the strategy, is at fault, so the
    search stage, which knows which estimator it is (a plugin's is its author's to fix),
    names it in the message."""


@dataclass
class SearchContext:
    """Everything a strategy may use besides the estimator and its params.

    Attributes:
        sources: auxiliary source names, in mask order (must equal ``estimator.sources``).
        seed: seed for every random choice the strategy makes, so runs are reproducible.
        features: cached gradient features; only the similarity baselines read them.
            The search gives each strategy its own: the arrays are read-only views
            (copy one, ``np.array(a)``, to change it), the lists its own copies.
        other_selections: picks of strategies that ran earlier in the same search,
            keyed by the name under which each was recorded; ``random`` can size its
            pick like one of them. Each strategy gets copies of the lists.
        progress: optional callback ``progress(message, done, total)``; nothing else
            is ever reported to the terminal.
        label: the strategy's ``label`` in the spec, where it has one: its progress and
            notices say it (of two ``gradient_similarity`` entries, "Raise gs_thr's
            threshold" names the one meant); None: the strategy's name.
    """

    sources: list[str]
    seed: int = 0
    features: FeatureSet | None = None
    other_selections: dict[str, list[str]] = field(default_factory=dict)
    progress: ProgressFn | None = None
    label: str | None = None

    def report(self, message: str, done: int, total: int) -> None:
        """Forward a progress event to the callback, if there is one."""
        if self.progress is not None:
            self.progress(message, done, total)


def _json_float(value: float | None) -> float | None:
    """``None`` for missing or non-finite numbers, so results stay valid JSON."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json_value(value: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, SubsetTrace)):  # a memo's trace, as the list it replaced
        return [_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_value(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _json_float(float(value))
    return value


class SubsetTrace(MutableSequence[dict[str, Any]]):
    """The subsets a strategy evaluated, in order; each entry reads as
    ``{"subset": [names in source order], "loss": float | None}`` (``None``: the estimator
    failed), like the list of dicts it replaces, and it can be written like that list.

    Why not that list: a list of names costs 8 bytes a selected source plus a list and a
    dict per subset, and ``forward`` over 2,000 sources evaluates 2M subsets (about 19 GB).
    Here a subset is its mask packed 8 sources to a byte, a row of ``packed`` (the
    :class:`~subsetctl.estimate.rowindex.DeltaRows` that :class:`SubsetMemo` finds its
    estimates in: the trace holds each entry's row number, not a copy of the mask; a
    subset one source away from a step's current one is kept as that change, 12 bytes), and
    its loss one float64 (NaN: failed); names are made only for the entries read, and
    :meth:`StrategyResult.to_dict` reads only those it keeps. An entry written into the
    trace (``append``, ``trace[i] = ...``) is kept as given.
    """

    def __init__(self, sources: list[str], packed: DeltaRows | None = None) -> None:
        self.sources = list(sources)
        self._names_of = np.array(self.sources, dtype=object)  # picks names 4x faster than a loop
        self._packed = DeltaRows((len(self.sources) + 7) // 8) if packed is None else packed
        # per entry: its row in self._packed, or -(k + 1) for self._written[k], an entry written as given
        self._at = array("q")
        self._written: list[Any] = []
        self._loss = array("d")  # per entry; NaN for a failure and for a written entry

    @staticmethod
    def pack(masks: np.ndarray) -> list[bytes]:
        """Each row of the bool ``masks`` as packed bits (``np.packbits``, first source in the
        highest bit): the key of one subset, ``ceil(n_sources / 8)`` bytes."""
        return [row.tobytes() for row in np.packbits(np.asarray(masks, dtype=bool), axis=1)]

    def record(self, rows: list[bytes] | np.ndarray, losses: np.ndarray) -> None:
        """Add evaluated subsets: packed masks (:meth:`pack`, or a 2-D uint8 array of them)
        and their losses (NaN: failed)."""
        if not isinstance(rows, np.ndarray):
            rows = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), self._packed.width)
        first = self._packed.append(rows)
        self.record_rows(np.arange(first, first + len(rows)), losses)

    def record_rows(self, rows: np.ndarray, losses: np.ndarray) -> None:
        """Add evaluated subsets held in :attr:`_packed` already: their row numbers there
        and their losses (NaN: failed)."""
        values = np.asarray(losses, dtype=np.float64).reshape(-1)
        if len(values) != len(rows):
            raise ValueError(f"{len(rows)} subsets but {len(values)} losses")
        self._at.frombytes(np.asarray(rows, dtype=np.int64).tobytes())
        self._loss.frombytes(values.tobytes())

    def losses(self) -> np.ndarray:
        """Every entry's loss as float64, NaN where it failed (written entries: NaN too)."""
        return np.array(self._loss, dtype=np.float64)

    def _mask(self, i: int) -> np.ndarray:
        """Entry ``i``'s packed mask (not a written entry)."""
        return self._packed.take(np.array([self._at[i]]))[0]

    def _names(self, row: np.ndarray) -> list[str]:
        bits = np.unpackbits(row, count=len(self.sources))
        return self._names_of[bits.view(bool)].tolist()

    def _entry(self, i: int) -> dict[str, Any]:
        at = self._at[i]
        if at < 0:
            return self._written[-at - 1]
        loss = self._loss[i]
        return {"subset": self._names(self._mask(i)), "loss": None if math.isnan(loss) else loss}

    def _refs(self, values: list[Any]) -> array:
        """Hold ``values`` as written entries; their references for :attr:`_at`."""
        first = len(self._written)
        self._written.extend(values)
        return array("q", range(-first - 1, -first - len(values) - 1, -1))

    def __len__(self) -> int:
        return len(self._at)

    @typing.overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @typing.overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._entry(i) for i in range(*index.indices(len(self)))]
        return self._entry(range(len(self))[index])  # IndexError as a list's

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            values = list(value)
            kept = len(self._written)
            try:
                self._at[index] = self._refs(values)  # raises first, as a list would
            except (ValueError, TypeError):
                del self._written[kept:]
                raise
            self._loss[index] = array("d", [math.nan] * len(values))
        else:
            self._at[range(len(self))[index]] = self._refs([value])[0]  # IndexError as a list's
            self._loss[index] = math.nan

    def __delitem__(self, index: Any) -> None:
        if not isinstance(index, slice):
            index = range(len(self))[index]  # IndexError as a list's
        del self._at[index]
        del self._loss[index]

    def insert(self, index: int, value: dict[str, Any]) -> None:
        self._at.insert(index, self._refs([value])[0])
        self._loss.insert(index, math.nan)

    def clear(self) -> None:
        self._at = array("q")
        self._written = []
        self._loss = array("d")

    def copy(self) -> SubsetTrace:
        """A shallow copy, as ``list.copy`` gives (the masks' storage is shared: rows are
        only ever added to it)."""
        other = SubsetTrace(self.sources, self._packed)
        other._at, other._written, other._loss = array("q", self._at), list(self._written), array("d", self._loss)
        return other

    __copy__ = copy  # copy.copy: not a second view of the same rows, which the memo goes on adding to

    def sort(self, *, key: Callable[[dict[str, Any]], Any] | None = None, reverse: bool = False) -> None:
        """Sort the entries in place, as ``list.sort`` does (stable); they are then kept as
        written entries."""
        self[:] = sorted(self, key=key, reverse=reverse)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self._entry(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, SubsetTrace)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __add__(self, other: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [*self, *other]

    def __radd__(self, other: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [*other, *self]

    def __repr__(self) -> str:
        return f"SubsetTrace({len(self)} subsets of {len(self.sources)} sources)"

    def named(self) -> list[Any]:
        """Every name some entry lists, each once (for a check of the names, not their
        order): the union of the packed masks, then the written entries' ``subset``
        (an entry that is no mapping raises as reading it would)."""
        width = self._packed.width
        union = np.zeros(width, dtype=np.uint8)
        at = np.frombuffer(self._at, dtype=np.int64).copy() if len(self._at) else np.zeros(0, dtype=np.int64)
        stored = at[at >= 0]
        for start in range(0, len(stored), 65_536):
            union |= np.bitwise_or.reduce(self._packed.take(stored[start : start + 65_536]), axis=0)
        written: list[Any] = []
        for ref in at[at < 0].tolist():
            written.extend(self._written[-ref - 1].get("subset") or [])
        return [*(self._names(union) if width else []), *written]

    def to_json(self, limit: int | None = None,
                names_limit: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """What :meth:`StrategyResult.to_dict` stores: the entries (all of them, or the
        ``limit`` with the lowest loss listing at most ``names_limit`` names in all, in
        evaluation order) as JSON values, and the number of entries when some were left
        out (else ``None``). Names are made only for the entries kept; written entries are
        all converted, so a bad one is found."""
        losses = self.losses()
        written = {}
        for i, at in enumerate(self._at):
            if at < 0:
                written[i] = entry = _json_entry(self._written[-at - 1])
                losses[i] = math.nan if entry["loss"] is None else entry["loss"]

        def size(i: int) -> int:
            return len(written[i]["subset"]) if i in written else int.from_bytes(self._mask(i).tobytes()).bit_count()

        kept = _lowest_losses(losses, limit, size, names_limit)
        entries = [
            written[i] if i in written else {"subset": self._names(self._mask(i)), "loss": _json_float(losses[i])}
            for i in (range(len(self)) if kept is None else kept.tolist())
        ]
        return entries, None if kept is None else len(self)


def _json_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """One trace entry as JSON values."""
    return {"subset": list(entry["subset"]), "loss": _json_float(entry["loss"])}


def _lowest_losses(losses: np.ndarray, limit: int | None, size: Callable[[int], int] | None = None,
                   names_limit: int | None = None) -> np.ndarray | None:
    """Indices of the ``limit`` lowest losses, in evaluation order (failures, NaN, last;
    ties by order), cut further to the first of them (by loss) whose subsets list at most
    ``names_limit`` names in all (``size(i)``: entry ``i``'s; the lowest is always kept);
    ``None`` when every entry is kept."""
    if (limit is None or len(losses) <= limit) and (names_limit is None or size is None):
        return None
    order = np.argsort(losses, kind="stable")[:limit]
    if names_limit is not None and size is not None:
        names = 0
        for j, i in enumerate(order.tolist()):
            names += size(i)
            if names > names_limit and j:
                order = order[:j]
                break
    return None if len(order) == len(losses) else np.sort(order)


def _trace_to_json(
    trace: Iterable[dict[str, Any]], limit: int | None, names_limit: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """:meth:`SubsetTrace.to_json` for any trace (a plugin's may be a list of dicts)."""
    if isinstance(trace, SubsetTrace):
        return trace.to_json(limit, names_limit)
    entries = [_json_entry(t) for t in trace]
    kept = _lowest_losses(np.array([math.nan if t["loss"] is None else t["loss"] for t in entries]), limit,
                          lambda i: len(entries[i]["subset"]), names_limit)
    if kept is None:
        return entries, None
    return [entries[i] for i in kept.tolist()], len(entries)


#: A strategy's notices said one by one (as the search runs, in report.md and `report`); the
#: others are counted in one line, and report.json and selections.json keep them all: a plugin
#: adding a notice per subset it tried printed 5,000 warnings.
NOTICES_SHOWN = 10


def shown_notices(label: str, notices: list[str]) -> list[str]:
    """``notices`` as they are said, each after ``label``: the first :data:`NOTICES_SHOWN`, then
    how many more there are and where they are all."""
    said = [f"{label}: {notice}" for notice in notices[:NOTICES_SHOWN]]
    more = len(notices) - NOTICES_SHOWN
    if more > 0:
        said.append(f"{label}: {more} more notices; report.json lists them all (strategies.{label}.notices)")
    return said


@dataclass
class StrategyResult:
    """What a strategy found.

    Attributes:
        strategy: registered name of the strategy that produced this.
        selected: chosen sources, in the estimator's source order.
        scores: per-source scores, **higher = more helpful**; empty when the strategy
            does not score sources (``all``, ``target_only``, ``random``).
        estimated_loss: ``L_hat`` of the selected subset, ``None`` if not estimated or
            the estimator failed on it.
        trace: every subset the strategy evaluated, in order, as
            ``{"subset": [names], "loss": float | None}`` (``None``: estimator failed):
            the memo's :class:`SubsetTrace`, or any list of such dicts.
        notices: short sentences about anything the user should know (caps, failures).
        diagnostics: strategy-specific figures (fit quality, counts), JSON-friendly.
    """

    strategy: str
    selected: list[str]
    scores: dict[str, float] = field(default_factory=dict)
    estimated_loss: float | None = None
    trace: MutableSequence[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, trace_limit: int | None = None, trace_names_limit: int | None = None) -> dict[str, Any]:
        """A JSON-serializable dict (non-finite floats become ``None``). With more than
        ``trace_limit`` entries, the trace keeps the ``trace_limit`` subsets with the lowest
        loss (in evaluation order) and ``trace_total`` says how many there were: an
        exhaustive search over 20 sources made a 287 MB selections.json of names, when every
        estimate is in the search cache anyway. ``trace_names_limit`` cuts it further to the
        lowest-loss subsets listing that many names in all (backward over 1,000 sources
        lists ~1,000 a subset). Names are made only for the subsets kept."""
        trace, total = _trace_to_json(self.trace, trace_limit, trace_names_limit)
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "selected": list(self.selected),
            "scores": {k: _json_float(v) for k, v in self.scores.items()},
            "estimated_loss": _json_float(self.estimated_loss),
            "trace": trace,
            "notices": list(self.notices),
            "diagnostics": _json_value(self.diagnostics),
        }
        if total is not None:
            out["trace_total"] = total
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StrategyResult:
        """Inverse of :meth:`to_dict` (a trace it cut to ``trace_limit`` stays cut:
        ``trace_total`` is not read back)."""
        return cls(
            strategy=str(data["strategy"]),
            selected=list(data["selected"]),
            scores={k: (float("nan") if v is None else float(v)) for k, v in data.get("scores", {}).items()},
            estimated_loss=(None if data.get("estimated_loss") is None else float(data["estimated_loss"])),
            trace=[
                {"subset": list(t["subset"]), "loss": None if t["loss"] is None else float(t["loss"])}
                for t in data.get("trace", [])
            ],
            notices=list(data.get("notices", [])),
            diagnostics=dict(data.get("diagnostics", {})),
        )


class StrategyParams(NoBooleansForNumbers):
    """Base for strategy parameter models: unknown keys are errors, not silently ignored;
    infinite and NaN numbers and booleans for numbers are refused (YAML reads `.inf`,
    `.nan` and `yes`/`on`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Strategy(ABC):
    """A way of choosing sources from subset-loss estimates.

    Subclasses set ``Params`` (a :class:`StrategyParams` subclass whose fields all have a
    default and a description) and implement :meth:`run`; :meth:`check_spec` may report
    problems the spec alone shows, so that `validate` finds them before any stage runs. Register with
    ``@STRATEGIES.register(name, description)``, which also sets the class's ``name`` and
    ``description`` (one line, shown by ``subsetctl ls``), or through the
    ``subsetctl.strategies`` entry-point group.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    @abstractmethod
    def run(
        self, estimator: SubsetEstimator, context: SearchContext, params: StrategyParams
    ) -> StrategyResult:
        """Search and return the selection; estimator traffic goes through :class:`SubsetMemo`."""

    @classmethod
    def check_spec(cls, params: StrategyParams, n_sources: int, earlier: list[str]) -> str | None:
        """A problem with these params that the spec already shows (``earlier``: the labels
        of the strategies listed before this one), said by `validate` before any stage
        runs; None when there is none. :meth:`run` still checks at run time."""
        return None

    @classmethod
    def max_subsets(cls, params: StrategyParams, n_sources: int) -> int | None:
        """At most how many distinct subsets :meth:`run` asks the estimator about (None:
        not known). With an estimator that fine-tunes for real (``true_finetune``) each one
        is a fine-tune, so `validate` adds these up to say what a search would cost."""
        return None

    @classmethod
    def known_subsets(cls, params: StrategyParams, n_sources: int) -> tuple[np.ndarray, str] | None:
        """The subsets :meth:`run` asks the estimator about whatever its estimates say, as
        packed masks (``np.packbits`` of (k, n_sources) booleans), and what they are in words,
        said after the strategy's label ("start and first step": "forward's start and first
        step"): `plan` counts those the search's store holds. None: not known before it runs
        (the default)."""
        return None


class SubsetMemo:
    """Batched, de-duplicated access to an estimator for the length of one strategy run.

    ``losses(masks)`` sends only subsets not seen before in this run, in one
    ``estimate`` call (or a few, of at most ``chunk_size`` rows, so long batches report
    progress), and records every newly evaluated subset in :attr:`trace` (a
    :class:`SubsetTrace`). Failed estimates (a NaN or infinite loss) become NaN, are
    recorded as ``None`` in the trace and counted; unconverged ones are counted too.
    Subsets are found by their packed mask, held once: in the trace's storage, indexed by a
    hash table of row numbers (:class:`~subsetctl.estimate.rowindex.RowIndex`).
    """

    def __init__(
        self,
        estimator: SubsetEstimator,
        context: SearchContext,
        label: str,
        chunk_size: int = 1024,
    ) -> None:
        self.estimator = estimator
        self.context = context
        self.label = context.label or label  # what its progress and the strategy's notices call the strategy
        self.chunk_size = max(1, int(chunk_size))
        self.sources = list(estimator.sources)
        self._packed = DeltaRows((len(self.sources) + 7) // 8)  # the masks estimated (and any a trace adds)
        self._index = RowIndex(self._packed.take)
        self._values = np.zeros(0)  # loss by row of self._packed
        self.trace: MutableSequence[dict[str, Any]] = SubsetTrace(self.sources, self._packed)
        self.n_failed = 0
        self.n_not_converged = 0
        self.n_calls = 0

    @property
    def n_evaluated(self) -> int:
        """Distinct subsets estimated so far in this run."""
        return self._index.count

    def names(self, mask: np.ndarray) -> list[str]:
        """Source names of one mask, in source order."""
        return [s for s, keep in zip(self.sources, mask) if keep]

    def mask(self, names: list[str]) -> np.ndarray:
        """The mask of one subset given by names."""
        return self.estimator.masks_for([names])[0]

    def losses(self, masks: np.ndarray) -> np.ndarray:
        """``L_hat`` for each row of ``masks`` (NaN where the estimator failed: gave NaN or an
        infinite value)."""
        return self._losses(masks, 0, None)

    def losses_in_parts(self, count: int, masks_at: Callable[[int, int], np.ndarray],
                        rows: int | None = None) -> np.ndarray:
        """``L_hat`` of ``count`` subsets, as :meth:`losses`, their masks made ``rows`` at a time
        (default :attr:`chunk_size`) by ``masks_at(start, stop)`` (those of subsets ``start`` to
        ``stop - 1``), so that a batch too big to hold as bools is never made whole: forward
        selection's candidates over 10,000 sources were 10,000 x 10,000 bools (100 MB) a step.
        Where no subset is repeated or estimated already and ``rows`` is a multiple of
        :attr:`chunk_size`, the estimator is asked in the batches one :meth:`losses` call on
        them all would send, and progress counts the same (else it counts subsets made)."""
        rows = self.chunk_size if rows is None else max(1, int(rows))
        out = np.empty(count)
        for start in range(0, count, rows):
            stop = min(start + rows, count)
            out[start:stop] = self._losses(masks_at(start, stop), start, count)
        return out

    def _losses(self, masks: np.ndarray, done: int, total: int | None) -> np.ndarray:
        """:meth:`losses`; progress says ``done`` subsets more were estimated, of ``total``
        (None: this call's new subsets)."""
        masks = np.asarray(masks, dtype=bool).reshape(-1, len(self.sources))
        packed = np.packbits(masks, axis=1)
        hashes = hash_rows(packed)
        rows_of = self._index.find(packed, hashes)
        missing = np.flatnonzero(rows_of < 0)
        firsts, repeats = distinct_rows(packed[missing], hashes[missing])
        todo = missing[firsts]  # in order of first appearance
        numbers = np.empty(len(todo), dtype=np.int64)  # their rows in self._packed
        for start in range(0, len(todo), self.chunk_size):
            rows = todo[start : start + self.chunk_size]
            batch = self.estimator.estimate(masks[rows])
            self.n_calls += 1
            loss = np.asarray(batch.loss, dtype=float).reshape(-1)
            converged = np.asarray(batch.converged, dtype=bool).reshape(-1)
            if loss.shape[0] != len(rows):
                raise RuntimeError(
                    f"Estimator {type(self.estimator).__name__} returned {loss.shape[0]} "
                    f"losses for {len(rows)} subsets."
                )
            failed = ~np.isfinite(loss)
            # NaN for every failure: an infinite estimate read as a loss made every finite
            # gain of greedy infinite, and -inf was the "lowest loss" of exhaustive and sweep
            values = np.where(failed, np.nan, loss)
            first = self._packed.append(packed[rows])
            new = numbers[start : start + len(rows)] = np.arange(first, first + len(rows))
            self._index.insert(hashes[rows], new)
            self._values = grown(self._values, first + len(rows), np.nan)
            self._values[new] = values
            self.n_failed += int(failed.sum())
            self.n_not_converged += int((~failed & ~converged).sum())
            if isinstance(self.trace, SubsetTrace) and self.trace._packed is self._packed:
                self.trace.record_rows(new, values)
            elif isinstance(self.trace, SubsetTrace):  # a plugin's own
                self.trace.record(packed[rows], values)
            else:  # a plugin replaced it with a list: append to it as before
                self.trace.extend({"subset": self.names(masks[i]), "loss": None if math.isnan(v) else v}
                                  for i, v in zip(rows, values.tolist()))
            said, of = done + start + len(rows), len(todo) if total is None else total
            self.context.report(f"{self.label}: estimated {said}/{of} subsets", said, of)
        rows_of[missing] = numbers[repeats]
        return self._values[rows_of]

    def loss_of(self, names: list[str]) -> float | None:
        """``L_hat`` of one subset given by names; ``None`` if the estimator failed."""
        value = float(self.losses(self.mask(names)[None, :])[0])
        return value if math.isfinite(value) else None

    def notices(self) -> list[str]:
        """Sentences about failed or unconverged estimates, if any."""
        out = []
        if self.n_failed:
            out.append(
                f"The estimator failed (a NaN or infinite loss) on {self.n_failed} of {self.n_evaluated} "
                "subsets; they were left out of scores and selection."
            )
        if self.n_not_converged:
            out.append(
                f"The solver did not converge on {self.n_not_converged} of {self.n_evaluated} "
                "subsets (their estimates are kept but unreliable); "
                f"{getattr(self.estimator, 'not_converged_advice', SubsetEstimator.not_converged_advice)}."
            )
        return out

    def diagnostics(self) -> dict[str, int]:
        """Counts describing this run's estimator traffic."""
        return {
            "n_subsets_estimated": self.n_evaluated,
            "n_estimate_calls": self.n_calls,
            "n_failed": self.n_failed,
            "n_not_converged": self.n_not_converged,
        }


def check_sources(estimator: SubsetEstimator, context: SearchContext) -> None:
    """Refuse to run when the context and the estimator disagree on the sources."""
    if list(estimator.sources) != list(context.sources):
        raise UserError(
            f"The estimator's sources {', '.join(map(repr, estimator.sources))} differ from the search's "
            f"sources {', '.join(map(repr, context.sources))}. Re-run the gradients stage so both come "
            "from the same spec."
        )


def parse_params(strategy_cls: type[Strategy], raw: dict[str, Any] | None, where: str,
                 label: str | None = None) -> StrategyParams:
    """Validate ``raw`` against ``strategy_cls.Params``.

    Args:
        strategy_cls: the strategy class.
        raw: the ``params:`` mapping from the spec (``None`` means all defaults).
        where: the spec path of that mapping, e.g. ``search.strategies[0].params``; error
            messages name keys below it (``search.strategies[0].params.m``).
        label: the strategy's ``label`` in the spec, if any: the error names it (with the
            strategy's name), as the report does, so that of two ``random_ensemble`` entries
            the one meant is plain.

    Raises:
        UserError: one paragraph naming every bad key and what is expected.
    """
    raw = {} if raw is None else raw
    params_cls = getattr(strategy_cls, "Params", None)
    if not (isinstance(params_cls, type) and issubclass(params_cls, StrategyParams)):
        raise UserError(
            f"The strategy {strategy_cls.name!r} ({strategy_cls.__module__}) has a Params that is not a subclass of "
            "subsetctl.search.base.StrategyParams, so its parameters cannot be checked (a pydantic BaseModel "
            "would drop a mistyped key). Derive its Params from StrategyParams."
        )
    if not isinstance(raw, dict):
        raise UserError(
            f"{where} must be a mapping of parameter names to values, got "
            f"{type(raw).__name__}. `subsetctl ls` lists the parameters of "
            f"{strategy_cls.name!r}."
        )
    try:
        return strategy_cls.Params.model_validate(raw)
    except ValidationError as exc:
        valid = ", ".join(strategy_cls.Params.model_fields)
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = plain_error_message(err)
            if err["type"] == "extra_forbidden":  # a mistyped name (`alpa`): the parameter it likely meant
                close = difflib.get_close_matches(str(err["loc"][-1]), list(strategy_cls.Params.model_fields),
                                                  n=1, cutoff=0.75)
                msg = "is not a parameter of this strategy" + (f" (did you mean {close[0]!r}?)" if close else "")
            elif msg == err["msg"].removeprefix("Value error, ") and "input" in err and err["type"] != "missing" \
                    and loc:  # pydantic's own text: say what was given
                msg = f"{msg} (got {err['input']!r})"
            problems.append(f"{where}.{loc}: {msg}" if loc else f"{where}: {msg}")
        # the keys it has help with a mistyped one only, not with a value out of range
        unknown = any(err["type"] == "extra_forbidden" for err in exc.errors())
        named = f"{label!r} ({strategy_cls.name})" if label and label != strategy_cls.name else repr(strategy_cls.name)
        raise UserError(
            f"Invalid parameters for strategy {named}: "
            + "; ".join(problems)
            + ("." if not unknown else f". Valid keys: {valid}. `subsetctl ls` lists their defaults." if valid
               else ". This strategy takes no parameters: remove its params.")
        ) from None


def _type_name(annotation: Any) -> str:
    """A short human-readable name for a parameter's type annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "|".join(repr(a) if not isinstance(a, str) else a for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "None"
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def describe_params(strategy_cls: type[Strategy]) -> list[tuple[str, str, Any, str]]:
    """``(name, type, default, description)`` for each parameter, for ``subsetctl ls``: a
    ``default_factory``'s value, and None for a parameter without a default (a required one,
    see :func:`required_params`), never pydantic's ``PydanticUndefined`` marker."""
    rows = []
    for name, info in strategy_cls.Params.model_fields.items():
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        rows.append((name, _type_name(info.annotation), default, info.description or ""))
    return rows


def required_params(strategy_cls: type[Strategy]) -> set[str]:
    """The parameters of ``strategy_cls`` a spec must set (its ``Params`` gives them no default)."""
    return {name for name, info in strategy_cls.Params.model_fields.items() if info.is_required()}


def run_strategy(
    name: str,
    estimator: SubsetEstimator,
    context: SearchContext,
    raw_params: dict[str, Any] | None = None,
    where: str = "params",
) -> StrategyResult:
    """Look up ``name`` in the strategy registry, validate its params and run it.

    Unknown names raise the registry's error, which lists the registered strategies.
    """
    from subsetctl.registry import STRATEGIES

    strategy_cls = STRATEGIES.get(name)
    params = parse_params(strategy_cls, raw_params, where)
    check_sources(estimator, context)
    result = strategy_cls().run(estimator, context, params)
    result.strategy = name
    return result
