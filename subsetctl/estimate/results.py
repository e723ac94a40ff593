"""Persistent store of estimated subsets, and an estimator wrapper that reuses it.

Estimating thousands of subsets with the exact solver takes minutes; a killed or repeated
run should not redo them. :class:`SubsetResultsStore` keeps, in the project directory,
every subset estimated so far (its mask and metrics) under a *key* that fingerprints the
estimator, its lambda and the features: opening the store with another key resets it,
so results of different settings are never mixed (as Kronfluence keys its
caches). :class:`CachedEstimator` wraps any estimator so that only never-seen masks
are computed, in chunks that are saved as they finish.

Layout of the store folder:

* ``store.json``: ``{"format": 3, "key": ..., "sources": [...], "versions": [...],
  "threads": [...]}``, written when the store is created or reset, or new rows are computed
  with library versions or thread counts not listed yet (``versions``: the versions dicts
  that computed its rows; ``threads``, beside each, the thread counts they were computed
  with, null where not recorded: rows an earlier subsetctl computed);
* ``subsets.npz``: the masks as :meth:`~subsetctl.estimate.rowindex.DeltaRows.export`
  writes them: ``anchors`` (A, ceil(n/8)) uint8 (``np.packbits`` of subsets), ``anchor``
  (M,) int64, each subset's row of ``anchors``, and ``flip`` (M,) int32, the source each
  changes of it (-1: none), so that the candidates of a step of forward or backward
  selection (one source away from the current subset) cost 12 bytes each, not
  ``ceil(n/8)`` (30 steps of ``forward`` over 10,000 sources: 375 MB of masks); ``loss``,
  ``w_norm``, ``iterations``, ``converged`` (M,),
  ``completed`` (M,) bool, the bitmap of rows whose metrics are final (rows registered
  with :meth:`SubsetResultsStore.reserve` and not yet estimated are ``False``),
  ``computed_with`` (M,) int, each row's index in ``versions`` and ``threads`` (-1: not recorded, a store
  an earlier subsetctl wrote), and ``merged_through``, the last segment file it holds;
* ``subsets.<k>.npz``: segment files, the rows changed since (the same arrays plus
  ``rows``, their row numbers), applied in order of ``k`` on opening. Each save writes
  one segment; once the segments hold as many rows as ``subsets.npz`` it is rewritten
  with them and they are removed, so a search saving after every chunk writes a few
  times the store's size in all, not the store once per chunk (format 1 rewrote
  ``subsets.npz`` whole each time: 100 steps of a backward search over 1,000 sources
  took 54.1 s, 2.5 s now). Every file is written through a temporary file and
  ``os.replace``, so a crash leaves old or new files, never torn ones;
* ``store.lock``: held (``flock``) while the store is opened and while rows are added:
  projects whose caches link to one folder, searching with the same key at once, share the
  store, and each, finding files another wrote since it last read them, reads them again
  before it adds its rows (both numbered their segments from what they had read, and the
  second's segment replaced the first's: its results were lost).

A format-1 store (``masks`` as booleans, no segments) or format-2 one (``packed_masks``
(M, ceil(n/8)), each subset's mask whole) is read and kept; its masks are kept as
changes from then on, and its main file is rewritten so at its next save.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from subsetctl.errors import UserError
from subsetctl.estimate.base import EstimateBatch, SubsetEstimator
from subsetctl.estimate.rowindex import POPCOUNT, DeltaRows, RowIndex, distinct_rows, flipped, grown
from subsetctl.file_locks import brief_file_lock
from subsetctl.project import atomic_write, remove_tree

FORMAT_VERSION = 3
#: formats this version reads, upgraded in place: 1 (masks saved as booleans, no segment files)
#: and 2 (each mask saved whole, packed)
READABLE_FORMATS = (1, 2, 3)
META_FILE = "store.json"
LOCK_FILE = "store.lock"
DATA_FILE = "subsets.npz"
_SEGMENT_NAME = re.compile(r"subsets\.(\d+)\.npz")
#: segment files at most before the main file is rewritten with them (a search estimating in
#: very small chunks, e.g. one real fine-tune at a time, would otherwise leave thousands)
MAX_SEGMENTS = 512

ProgressFn = Callable[[int, int], None]


# -------------------------------------------------------------- batch utilities


def empty_batch(m: int) -> EstimateBatch:
    """A batch of ``m`` unknown results: NaN loss and norm, 0 iterations, not converged."""
    return EstimateBatch(
        loss=np.full(m, np.nan),
        w_norm=np.full(m, np.nan),
        iterations=np.zeros(m, dtype=np.int64),
        converged=np.zeros(m, dtype=bool),
    )


def concat_batches(batches: Sequence[EstimateBatch]) -> EstimateBatch:
    """Concatenate batches in order; ``extra`` keys present in every batch are kept."""
    if not batches:
        return empty_batch(0)
    keys = set(batches[0].extra)
    for b in batches[1:]:
        keys &= set(b.extra)
    return EstimateBatch(
        loss=np.concatenate([b.loss for b in batches]),
        w_norm=np.concatenate([b.w_norm for b in batches]),
        iterations=np.concatenate([b.iterations for b in batches]).astype(np.int64),
        converged=np.concatenate([b.converged for b in batches]).astype(bool),
        extra={k: np.concatenate([b.extra[k] for b in batches]) for k in sorted(keys)},
    )


def take_batch(batch: EstimateBatch, index: np.ndarray) -> EstimateBatch:
    """Rows ``index`` of ``batch`` (any integer or boolean index)."""
    return EstimateBatch(
        loss=batch.loss[index],
        w_norm=batch.w_norm[index],
        iterations=batch.iterations[index],
        converged=batch.converged[index],
        extra={k: v[index] for k, v in batch.extra.items()},
    )


def put_batch(dest: EstimateBatch, index: np.ndarray, src: EstimateBatch) -> None:
    """Write the rows of ``src`` into ``dest`` at ``index`` (``extra`` is not copied)."""
    dest.loss[index] = src.loss
    dest.w_norm[index] = src.w_norm
    dest.iterations[index] = src.iterations
    dest.converged[index] = src.converged


def _as_masks(masks: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(masks)
    if arr.ndim == 1 and arr.size == n:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n:
        raise UserError(f"Subset masks must have shape (m, {n}) (one column per source), got {arr.shape}.")
    return arr.astype(bool, copy=False)


def _distinct_rows(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``masks`` in order of first appearance, and for each row of
    ``masks`` the index of its distinct row. (``np.unique(axis=0)`` sorts the rows as
    opaque records: 57% of a backward search's time over 1,000 sources.)"""
    firsts, inverse = distinct_rows(np.packbits(masks, axis=1))
    return masks[firsts], inverse


def _segment_name(number: int) -> str:
    return f"subsets.{number}.npz"


# ------------------------------------------------------------------------ store


class _Rows:
    """The store's columns in memory, one row per subset, grown by doubling, and their
    masks (:attr:`masks`, appended with the rows by the store).

    Masks are kept packed (``np.packbits``, 8 sources a byte: a backward search over
    1,000 sources estimates about 500,000 subsets, 500 MB as booleans and 63 MB packed),
    those one source away from a batch's common subset as that change
    (:class:`~subsetctl.estimate.rowindex.DeltaRows`: 12 bytes, 6 MB for that search).
    Appending ``k`` rows copies the columns only when their capacity runs out, so a
    search that adds rows a chunk at a time does linear work, not quadratic.
    """

    def __init__(self, n_sources: int) -> None:
        self.n_sources = n_sources
        self.count = 0
        self.masks = DeltaRows((n_sources + 7) // 8)
        self._columns: dict[str, np.ndarray] = {
            "loss": np.zeros(0), "w_norm": np.zeros(0),
            "iterations": np.zeros(0, dtype=np.int64), "converged": np.zeros(0, dtype=bool),
            "completed": np.zeros(0, dtype=bool), "computed_with": np.zeros(0, dtype=np.int64),
        }

    def __getitem__(self, name: str) -> np.ndarray:
        """The first :attr:`count` rows of column ``name`` (a view)."""
        return self._columns[name][: self.count]

    def append(self, k: int) -> slice:
        """Add ``k`` rows: unknown metrics (NaN, 0, False), not completed, computed with
        unknown versions (-1); their masks are appended to :attr:`masks`. Returns their slice."""
        start, stop = self.count, self.count + k
        for name, column in self._columns.items():
            self._columns[name] = grown(column, stop, used=start)
        fresh = slice(start, stop)
        self._columns["loss"][fresh] = np.nan
        self._columns["w_norm"][fresh] = np.nan
        for name in ("iterations", "converged", "completed"):
            self._columns[name][fresh] = 0
        self._columns["computed_with"][fresh] = -1
        self.count = stop
        return fresh

    def arrays(self, rows: Any = slice(None)) -> dict[str, np.ndarray]:
        """Every column at ``rows`` (as saved in the store's files, with :attr:`masks`'s export)."""
        return {name: column[: self.count][rows] for name, column in self._columns.items()}

    def put(self, rows: Any, arrays: dict[str, np.ndarray]) -> None:
        """Write ``arrays`` (one per column; the masks are not written) at ``rows``."""
        for name, column in self._columns.items():
            column[: self.count][rows] = arrays[name]


def _store_files(path: Path, sources: list[str], keys: Sequence[str]) -> Iterator[tuple[np.ndarray | None, Any]]:
    """The saved files of the store at ``path`` for ``sources`` under one of ``keys``, open,
    in the order :class:`SubsetResultsStore` applies them: the main file (row numbers None:
    its rows in order), then each segment after its last merge with its ``rows``. Nothing
    when there is no store, or one the store would reset (another key, other sources).
    Raises what reading a damaged file raises (the callers say no count then)."""
    meta_path = path / META_FILE
    if not meta_path.is_file():
        return
    meta = json.loads(meta_path.read_text())
    if (not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS
            or meta.get("key") not in keys or meta.get("sources") != list(sources)):
        return
    merged_through = 0
    if (path / DATA_FILE).is_file():
        with np.load(path / DATA_FILE) as data:
            merged_through = int(data["merged_through"]) if "merged_through" in data.files else 0
            yield None, data
    for match in sorted((m for m in map(_SEGMENT_NAME.fullmatch, (f.name for f in path.iterdir())) if m),
                        key=lambda m: int(m.group(1))):
        if int(match.group(1)) > merged_through:
            with np.load(path / match.group(0)) as data:
                yield data["rows"].astype(np.int64), data


def _completed_rows(completed: np.ndarray, rows: np.ndarray | None, done: np.ndarray) -> np.ndarray:
    """The ``completed`` bitmap by row number with one file's ``done`` column applied (its
    ``rows``: None for the main file, whose rows are the first in order)."""
    if rows is None:
        return done
    if len(rows):
        completed = np.concatenate([completed, np.zeros(max(0, int(rows.max()) + 1 - len(completed)), bool)])
        completed[rows] = done
    return completed


def _read_settled(path: Path, read: Callable[[], int]) -> int | None:
    """``read()`` of the store at ``path`` (a count `plan` gives), changing nothing on disk;
    read once more under the store's lock where the first try fails, as it does when a
    search sharing the store merges its segments meanwhile (it removes the files the count
    was reading); None when that fails too (a damaged file: the store says why when the
    search opens it)."""
    reading_errors = (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile)
    try:
        return read()
    except reading_errors:
        if not (path / LOCK_FILE).is_file():
            return None
    try:
        with brief_file_lock(path / LOCK_FILE):
            return read()
    except reading_errors:
        return None


def stored_count(path: Path, sources: list[str], keys: Sequence[str]) -> int | None:
    """How many completed subsets the store at ``path`` holds for ``sources`` under one of
    ``keys`` (today's, then earlier spellings), read without opening it: only its
    ``completed`` columns (the main file's and its segments'), not the masks, so `plan` can
    say "8 of 8 stored" at 10,000 sources in a blink; nothing on disk changes. 0 when there
    is no store, or one :class:`SubsetResultsStore` would reset (another key, other sources);
    None when a file cannot be read (the store says why when the search opens it)."""
    def count() -> int:
        completed = np.zeros(0, dtype=bool)
        for rows, data in _store_files(Path(path), sources, keys):
            completed = _completed_rows(completed, rows, data["completed"].astype(bool))
        return int(completed.sum())

    return _read_settled(Path(path), count)


def stored_among(path: Path, sources: list[str], keys: Sequence[str], wanted: np.ndarray) -> int | None:
    """How many of the subsets ``wanted`` (packed masks, ``np.packbits`` of (k, n) booleans,
    distinct) the store at ``path`` holds completed, read as :func:`stored_count` reads it,
    changing nothing on disk: `plan`'s count of the subsets a greedy search asks for in any
    case (its start and first step) that it takes from the store. Only the rows with as many
    sources as some wanted subset are unpacked (the first step's of forward: 0 or 1 source),
    so a store of a search over 10,000 sources is not unpacked whole. 0 without a store;
    None when a file cannot be read."""
    wanted = np.asarray(wanted, dtype=np.uint8)
    index = {row.tobytes(): i for i, row in enumerate(wanted)}
    sizes = np.unique(POPCOUNT[wanted].sum(axis=1, dtype=np.int64))

    def among() -> int:
        completed = np.zeros(0, dtype=bool)
        found: dict[int, int] = {}  # row number -> the wanted subset it holds
        for rows, data in _store_files(Path(path), sources, keys):
            done = data["completed"].astype(bool)
            numbers = np.arange(len(done), dtype=np.int64) if rows is None else rows
            anchors, anchor, flip = _file_masks(data, len(sources))
            size = POPCOUNT[anchors].sum(axis=1, dtype=np.int64)[anchor]
            one = np.flatnonzero(flip >= 0)
            bit = (anchors[anchor[one], flip[one] // 8] >> (7 - flip[one] % 8)) & 1
            size[one] += 1 - 2 * bit.astype(np.int64)
            near = np.flatnonzero(np.isin(size, sizes))
            for number, mask in zip(numbers[near].tolist(), flipped(anchors[anchor[near]], flip[near])):
                at = index.get(mask.tobytes())
                if at is not None:
                    found[number] = at
            completed = _completed_rows(completed, rows, done)
        return len({at for number, at in found.items() if number < len(completed) and completed[number]})

    return _read_settled(Path(path), among)


def _file_masks(data: Any, n_sources: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One saved file's masks as :meth:`DeltaRows.export` writes them (``anchors``, each
    row's ``anchor`` and ``flip``), those of an earlier format (each mask whole) as anchors
    of their own; ``ValueError`` where they do not fit ``n_sources``."""
    if "anchors" in data.files:
        anchors, anchor, flip = data["anchors"].astype(np.uint8), data["anchor"].astype(np.int64), \
            data["flip"].astype(np.int64)
    else:
        anchors = (data["packed_masks"].astype(np.uint8) if "packed_masks" in data.files
                   else np.packbits(data["masks"].astype(bool), axis=1))
        anchor, flip = np.arange(len(anchors), dtype=np.int64), np.full(len(anchors), -1, dtype=np.int64)
    if anchors.ndim != 2 or anchors.shape[1] != (n_sources + 7) // 8 or anchor.shape != flip.shape or (
            len(anchor) and (anchor.min() < 0 or anchor.max() >= len(anchors)
                             or flip.min() < -1 or flip.max() >= n_sources)):
        raise ValueError("masks that do not fit the store's sources")
    return anchors, anchor, flip


class SubsetResultsStore:
    """Masks and metrics of every subset estimated so far, persisted under ``path``.

    Args:
        path: folder of the store (created if missing), e.g.
            ``<project>/.subsetctl/cache/search/<key>`` (the search stage's).
        sources: source names in mask order; a store written for other sources is reset.
        key: fingerprint of estimator, lambda and features; a store written under another
            key is reset (``reset_reason`` says why).
        earlier_keys: keys an earlier subsetctl wrote for the same results (the key's
            parts were spelled differently then); a store under one of them is kept and
            takes ``key``.
        versions: the library versions computing the rows added now (recorded per row,
            :meth:`versions_of`); None records none.
        threads: the thread counts computing them (:func:`~subsetctl.pipeline.thread_counts`,
            recorded per row with the versions, :meth:`threads_of`); None records none.
    """

    def __init__(self, path: Path | str, sources: list[str], key: str, earlier_keys: tuple[str, ...] = (),
                 versions: dict[str, str] | None = None, threads: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.versions = versions
        self.threads = threads
        self.sources = list(sources)
        self.key = str(key)
        self.earlier_keys = tuple(str(k) for k in earlier_keys)
        self.reset_reason: str | None = None
        if self.path.exists() and not self.path.is_dir():  # a hand edit or a bad copy: estimated again
            self.path.unlink()
            self.reset_reason = f"The subset results store at {self.path} was reset: it was a file, not a folder."
        self.path.mkdir(parents=True, exist_ok=True)
        self._clear()
        self._read_state: list[tuple[str, int, int, int]] = []  # the files as last read or written (:meth:`_files_state`)
        with self._locked():
            self._open()

    def _clear(self) -> None:
        """No rows in memory, nothing read: the state before :meth:`_open` reads the files."""
        self._versions: list[Any] = []  # store.json's list of the versions that computed rows
        self._threads: list[Any] = []  # the thread counts beside each (None: not recorded)
        self._rows = _Rows(len(self.sources))
        self._merged_through = 0  # the last segment number folded into DATA_FILE
        self._main_rows = 0  # the rows DATA_FILE holds
        self._segments: list[tuple[int, int]] = []  # (number, rows) of the segment files not merged yet
        self._upgrade = False  # an earlier format read: the main file is rewritten at the next save
        # packed mask -> row (a hash table over self._rows' masks: no copy of them)
        self._index = RowIndex(lambda rows: self._rows.masks.take(rows))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock for the block, having first read again what another process
        sharing the store (a project whose cache links to the same folder) wrote since this
        one last read or wrote it; the files' state is taken again at the end."""
        with brief_file_lock(self.path / LOCK_FILE):
            if self._read_state and self._files_state() != self._read_state:
                self._clear()
                self._open()
            try:
                yield
            finally:
                self._read_state = self._files_state()

    def _files_state(self) -> list[tuple[str, int, int, int]]:
        """Name, inode, modification time and size of each file of the store but its lock: files are
        replaced whole (a new inode), so any write by another process changes it."""
        with os.scandir(self.path) as entries:
            return sorted((entry.name, entry.inode(), entry.stat().st_mtime_ns, entry.stat().st_size)
                          for entry in entries if entry.name != LOCK_FILE)

    # -- loading --------------------------------------------------------------------

    def _open(self) -> None:
        meta_path = self.path / META_FILE
        data_path = self.path / DATA_FILE
        reason: str | None = None
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                reason = f"its {META_FILE} was unreadable ({exc})"
            else:
                if not isinstance(meta, dict):  # an edit or a bad copy: not what this store wrote
                    reason = f"its {META_FILE} is not a JSON object"
                elif meta.get("format") not in READABLE_FORMATS:
                    reason = f"it has format {meta.get('format')!r}, not {FORMAT_VERSION}"
                elif meta.get("key") != self.key and meta.get("key") not in self.earlier_keys:
                    reason = f"its key {meta.get('key')!r} differs from {self.key!r}"
                elif meta.get("sources") != self.sources:
                    reason = "it was written for a different list of sources"
                else:
                    self._versions = meta.get("versions") if isinstance(meta.get("versions"), list) else []
                    threads = meta.get("threads") if isinstance(meta.get("threads"), list) else []
                    # (versions an earlier subsetctl listed have no thread counts beside them)
                    self._threads = [*threads, *[None] * len(self._versions)][:len(self._versions)]
                    if meta.get("key") != self.key or meta.get("format") != FORMAT_VERSION:
                        # the same results under an earlier spelling of the key, or an earlier
                        # format (read below; from now on written as this one)
                        self._write_meta()
        elif data_path.exists() or self._segment_files():
            reason = f"it had results but no {META_FILE}"
        else:
            self._write_meta()
            return
        if reason is None:
            try:
                if data_path.exists():
                    self._load(data_path)
                self._load_segments()
            except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as exc:  # truncated, bit flips
                reason = f"its {DATA_FILE} or a segment file beside it was unreadable ({exc})"
        if reason is not None:
            self.reset_reason = f"The subset results store at {self.path} was reset: {reason}."
            for path in (meta_path, data_path):  # one of them a folder (a hand edit): unreadable, and in the way
                if path.is_dir():
                    remove_tree(path)
            if data_path.exists():
                data_path.unlink()
            for _, segment in self._segment_files():
                if segment.is_dir():
                    remove_tree(segment)
                else:
                    segment.unlink()
            self._clear()
            self._write_meta()
        self._index.build(self._rows.count)

    @staticmethod
    def _arrays(data: Any, n_sources: int) -> tuple[dict[str, np.ndarray], np.ndarray | dict[str, np.ndarray]]:
        """The columns of one saved file (``data``: an open npz), checked for shape, and its
        masks: :meth:`DeltaRows.export`'s arrays, or (formats 1 and 2) the packed masks."""
        masks: np.ndarray | dict[str, np.ndarray]
        if "anchors" in data.files:
            masks = {name: data[name] for name in ("anchors", "anchor", "flip")}
            if masks["anchor"].ndim != 1:  # (the rows read are checked further as they are added)
                raise ValueError(f"anchor has shape {masks['anchor'].shape}")
            m = len(masks["anchor"])
        elif "packed_masks" in data.files:
            packed = data["packed_masks"].astype(np.uint8)
        else:  # format 1 (an earlier subsetctl): masks as booleans
            masks = data["masks"].astype(bool)
            if masks.ndim != 2 or masks.shape[1] != n_sources:
                raise ValueError(f"masks have shape {masks.shape}")
            packed = np.packbits(masks, axis=1)
        if "anchors" not in data.files:
            if packed.ndim != 2 or packed.shape[1] != (n_sources + 7) // 8:
                raise ValueError(f"packed masks have shape {packed.shape}")
            masks, m = packed, len(packed)
        arrays = {
            "loss": data["loss"].astype(np.float64),
            "w_norm": data["w_norm"].astype(np.float64),
            "iterations": data["iterations"].astype(np.int64),
            "converged": data["converged"].astype(bool),
            "completed": data["completed"].astype(bool),
            # (a store an earlier subsetctl wrote has no record of the versions: unknown)
            "computed_with": (data["computed_with"].astype(np.int64) if "computed_with" in data.files
                              else np.full(m, -1, dtype=np.int64)),
        }
        rows = {m, *(len(a) for a in arrays.values())}
        if len(rows) != 1:
            raise ValueError(f"its arrays have different numbers of rows ({sorted(rows)})")
        return arrays, masks

    def _append_masks(self, masks: np.ndarray | dict[str, np.ndarray], at: np.ndarray) -> None:
        """Append the masks of positions ``at`` of a file's ``masks`` (:meth:`_arrays`) as
        new rows' (a format-2 file's packed masks are kept as changes where they can be). Of
        a format-3 file, only the anchors those rows use: a segment also saves rows held
        already (reserved, then estimated), whose anchors were appended again, unused (random
        subsets, each its own anchor, held twice until the next merge)."""
        if isinstance(masks, dict):
            anchor = masks["anchor"][at]
            if len(anchor) and (anchor.min() < 0 or anchor.max() >= len(masks["anchors"])):
                raise ValueError("row anchors out of range")  # (as extend says it)
            used, local = np.unique(anchor, return_inverse=True)
            self._rows.masks.extend(masks["anchors"][used], local.reshape(-1), masks["flip"][at])
        else:
            for start in range(0, len(at), 65_536):  # (bounds the rows unpacked at a time)
                self._rows.masks.append(masks[at[start : start + 65_536]])

    def _load(self, data_path: Path) -> None:
        with np.load(data_path) as data:
            arrays, masks = self._arrays(data, len(self.sources))
            self._merged_through = int(data["merged_through"]) if "merged_through" in data.files else 0
        self._main_rows = len(arrays["loss"])
        self._upgrade = not isinstance(masks, dict)  # masks saved whole (format 1 or 2): saved as changes next
        self._append_masks(masks, np.arange(len(arrays["loss"])))
        self._rows.put(self._rows.append(len(arrays["loss"])), arrays)

    def _segment_files(self) -> list[tuple[int, Path]]:
        """The segment files in the folder (``subsets.<number>.npz``), by number."""
        found = []
        for path in self.path.iterdir():
            match = _SEGMENT_NAME.fullmatch(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def _load_segments(self) -> None:
        """Apply the segment files written after the last merge, in order; remove those
        the last merge already folded in (left by a crash between its two steps)."""
        for number, path in self._segment_files():
            if number <= self._merged_through:
                path.unlink()
                continue
            with np.load(path) as data:
                rows = data["rows"].astype(np.int64)
                arrays, masks = self._arrays(data, len(self.sources))
            if rows.ndim != 1 or len(rows) != len(arrays["loss"]):
                raise ValueError(f"{path.name} has {len(rows)} row numbers for {len(arrays['loss'])} rows")
            new, at = np.unique(rows, return_index=True)
            at = at[new >= self._rows.count]  # the first position in the file of each row it adds
            new = new[new >= self._rows.count]
            if len(new) and not np.array_equal(new, np.arange(self._rows.count, self._rows.count + len(new))):
                raise ValueError(f"{path.name} adds rows {new[:3].tolist()}... after row {self._rows.count}")
            if (rows < 0).any():
                raise ValueError(f"{path.name} has negative row numbers")
            self._append_masks(masks, at)  # (the rows it holds already keep their masks: the same)
            self._rows.append(len(new))
            self._rows.put(rows, arrays)
            self._segments.append((number, len(rows)))

    def _write_meta(self) -> None:
        text = json.dumps({"format": FORMAT_VERSION, "key": self.key, "sources": self.sources,
                           "versions": self._versions, "threads": self._threads}, indent=1)
        atomic_write(self.path / META_FILE, lambda fh: fh.write(text))

    def _save(self, rows: np.ndarray) -> None:
        """Make the current values of ``rows`` durable: one new segment file with those
        rows, or, once the segments hold as many rows as the main file (or there are
        :data:`MAX_SEGMENTS` of them), the main file rewritten whole and the segments
        removed. Each file is written atomically; the main file records the last segment
        it holds, so a crash between its write and the removals loses nothing and applies
        nothing twice. The main file doubles between rewrites: the writes of a search
        that adds rows a chunk at a time add up to a few times its final size."""
        rows = np.unique(rows)
        number = max([self._merged_through, *(n for n, _ in self._segments)]) + 1
        pending = sum(k for _, k in self._segments) + len(rows)
        if pending >= self._main_rows or len(self._segments) + 1 >= MAX_SEGMENTS or self._upgrade:
            arrays = {**self._rows.arrays(), **self._rows.masks.export(np.arange(self._rows.count)),
                      "merged_through": np.int64(number)}
            atomic_write(self.path / DATA_FILE, lambda fh: np.savez(fh, **arrays), mode="wb")
            self._merged_through = number
            self._main_rows = self._rows.count
            for merged, path in self._segment_files():
                if merged <= number:
                    path.unlink()
            self._segments = []
            self._upgrade = False
            return
        arrays = {**self._rows.arrays(rows), **self._rows.masks.export(rows), "rows": rows}
        atomic_write(self.path / _segment_name(number), lambda fh: np.savez(fh, **arrays), mode="wb")
        self._segments.append((number, len(rows)))

    # -- queries --------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of completed subsets."""
        return int(self._rows["completed"].sum())

    def _unpacked(self, done: np.ndarray) -> np.ndarray:
        """The masks of the rows where ``done`` (one bool a row) is True, as bools."""
        packed = self._rows.masks.take(np.flatnonzero(done))
        return np.unpackbits(packed, axis=1, count=len(self.sources)).astype(bool)

    def _batch_at(self, rows: Any) -> EstimateBatch:
        return EstimateBatch(loss=self._rows["loss"][rows], w_norm=self._rows["w_norm"][rows],
                             iterations=self._rows["iterations"][rows], converged=self._rows["converged"][rows])

    def lookup(self, masks: np.ndarray) -> tuple[np.ndarray, EstimateBatch]:
        """For each mask: whether a completed result is stored, and the results (rows
        not found are NaN / 0 / False)."""
        found, out, _ = self._lookup(masks)
        return found, out

    def _lookup(self, masks: np.ndarray) -> tuple[np.ndarray, EstimateBatch, np.ndarray]:
        """:meth:`lookup`, and the row of each mask found (-1 for the others)."""
        rows = self._completed_rows(masks)
        found = rows >= 0
        out = empty_batch(len(rows))
        if found.any():
            put_batch(out, found, self._batch_at(rows[found]))
        return found, out, rows

    def _completed_rows(self, masks: np.ndarray) -> np.ndarray:
        """The row of each mask, -1 where it is not stored or not completed."""
        rows = self._index.find(np.packbits(_as_masks(masks, len(self.sources)), axis=1))
        found = rows >= 0
        found[found] = self._rows["completed"][rows[found]]
        rows[~found] = -1
        return rows

    def results(self) -> tuple[np.ndarray, EstimateBatch]:
        """All completed masks and their results, in insertion order."""
        done = self._rows["completed"]
        return self._unpacked(done), self._batch_at(done)

    def estimates(self) -> EstimateBatch:
        """The results of all completed subsets, in insertion order, without their masks
        (:meth:`results` unpacks those: 500 MB for a backward search over 1,000 sources)."""
        return self._batch_at(self._rows["completed"])

    def pending(self) -> np.ndarray:
        """Masks reserved with :meth:`reserve` whose results are not stored yet."""
        return self._unpacked(~self._rows["completed"])

    # -- updates --------------------------------------------------------------------

    def _rows_for(self, masks: np.ndarray) -> np.ndarray:
        """Row of each mask, appending unknown masks (not yet completed)."""
        rows, _ = self._index.add(np.packbits(masks, axis=1), self._append)
        return rows

    def _append(self, packed: np.ndarray) -> int:
        """Add rows of masks ``packed`` (not completed); returns the first one's number."""
        self._rows.masks.append(packed)
        return self._rows.append(len(packed)).start

    def reserve(self, masks: np.ndarray) -> None:
        """Register masks about to be estimated (not completed), so that a crash leaves
        a record of the plan (:meth:`pending`)."""
        masks = _as_masks(masks, len(self.sources))
        with self._locked():
            before = self._rows.count
            self._rows_for(masks)
            if self._rows.count != before:
                self._save(np.arange(before, self._rows.count))

    def add(self, masks: np.ndarray, batch: EstimateBatch) -> np.ndarray:
        """Store the results of ``masks`` (completed) and save atomically. Returns their
        rows (:meth:`rows_of`)."""
        masks = _as_masks(masks, len(self.sources))
        if len(batch.loss) != len(masks):
            raise ValueError(f"{len(masks)} masks but {len(batch.loss)} results")
        with self._locked():
            rows = self._rows_for(masks)
            self._rows["loss"][rows] = batch.loss
            self._rows["w_norm"][rows] = batch.w_norm
            self._rows["iterations"][rows] = batch.iterations
            self._rows["converged"][rows] = batch.converged
            self._rows["completed"][rows] = True
            if self.versions is not None:
                made = list(zip(self._versions, self._threads, strict=True))
                if (self.versions, self.threads) not in made:
                    self._versions.append(self.versions)
                    self._threads.append(self.threads)
                    self._write_meta()
                    made.append((self.versions, self.threads))
                self._rows["computed_with"][rows] = made.index((self.versions, self.threads))
            self._save(rows)
            return rows

    def rows_of(self, masks: np.ndarray) -> np.ndarray:
        """The rows of ``masks`` that are completed (their order in the store)."""
        rows = self._completed_rows(masks)
        return rows[rows >= 0]

    def versions_of(self, rows: Any) -> list[tuple[Any, int]]:
        """The library versions that computed ``rows`` (None: not recorded) with how many
        of them each computed, in order of first use."""
        return self._counted(rows, self._versions)

    def threads_of(self, rows: Any) -> list[tuple[Any, int]]:
        """The thread counts that computed ``rows`` (None: not recorded, rows an earlier
        subsetctl computed) with how many of them each computed, in order of first use."""
        return self._counted(rows, self._threads)

    def _counted(self, rows: Any, made: list[Any]) -> list[tuple[Any, int]]:
        """Each distinct record of ``made`` (versions or thread counts, by the rows'
        ``computed_with``; None where not a dict) that computed ``rows``, with how many, in
        the order of the first row of each. Counted by index with numpy, then alike records
        merged: a record compared per row took 1.7 s for a million reused estimates."""
        counts: list[tuple[Any, int]] = []
        ordered = np.sort(np.asarray(rows if isinstance(rows, np.ndarray) else list(rows), dtype=np.int64))
        indices, first, each = np.unique(self._rows["computed_with"][ordered], return_index=True, return_counts=True)
        for j in np.argsort(first, kind="stable"):
            i = int(indices[j])
            record = made[i] if 0 <= i < len(made) and isinstance(made[i], dict) else None
            found = next((k for k, (seen, _) in enumerate(counts) if seen == record), None)
            if found is None:
                counts.append((record, int(each[j])))
            else:
                counts[found] = (record, counts[found][1] + int(each[j]))
        return counts


# ------------------------------------------------------------- cached estimator


class CachedEstimator(SubsetEstimator):
    """An estimator that answers from a :class:`SubsetResultsStore` when it can.

    Only masks never estimated before are computed (duplicates within one request are
    computed once), in chunks of ``chunk_size`` through
    :func:`subsetctl.estimate.executors.estimate_parallel`; each chunk is saved as soon
    as it finishes, so a killed run keeps what it completed.

    Attributes:
        computed: masks solved so far by this wrapper (cumulative over calls).
        reused: requested masks answered without solving (found in the store, or a
            duplicate of another mask of the same request).
    """

    def __init__(
        self,
        estimator: SubsetEstimator,
        store: SubsetResultsStore,
        executor_kwargs: dict[str, Any] | None = None,
        chunk_size: int = 256,
        progress: ProgressFn | None = None,
    ) -> None:
        if list(store.sources) != list(estimator.sources):
            raise UserError(
                f"The results store at {store.path} is for sources {', '.join(map(repr, store.sources))}, but "
                f"the estimator has {', '.join(map(repr, estimator.sources))}; open the store with the "
                "estimator's sources."
            )
        if chunk_size < 1:
            raise UserError(f"chunk_size must be at least 1, got {chunk_size}.")
        self.estimator = estimator
        self.store = store
        self.executor_kwargs = dict(executor_kwargs or {})
        self.executor_kwargs.pop("progress", None)
        self.chunk_size = int(chunk_size)
        self.progress = progress
        self.description = f"cached {getattr(estimator, 'description', '')}".strip()
        self.computed = 0
        self.reused = 0
        # the store's rows answered without solving that this wrapper did not compute (estimated
        # by an earlier run, or by an earlier subsetctl: :meth:`SubsetResultsStore.versions_of`)
        self.reused_rows: set[int] = set()
        # per store row: computed by this wrapper (a set of ints held 66 bytes a row, 31 MB
        # for a backward search over 1,000 sources; this one byte)
        self._computed = np.zeros(0, dtype=bool)

    @property
    def sources(self) -> list[str]:
        return self.estimator.sources

    @property
    def not_converged_advice(self) -> str:  # type: ignore[override]  # the wrapped estimator's (the search's notice ends with it)
        return str(getattr(self.estimator, "not_converged_advice", SubsetEstimator.not_converged_advice))

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        from subsetctl.estimate.executors import estimate_parallel

        masks = _as_masks(masks, len(self.sources))
        total = len(masks)
        if total == 0:
            return empty_batch(0)
        uniq, inverse = _distinct_rows(masks)
        found, results, rows = self.store._lookup(uniq)
        stored = rows[found]
        mine = np.zeros(len(stored), dtype=bool)
        inside = stored < len(self._computed)
        mine[inside] = self._computed[stored[inside]]
        self.reused_rows.update(stored[~mine].tolist())
        todo = np.flatnonzero(~found)
        done = total - int(np.isin(inverse, todo).sum())
        if self.progress is not None:
            self.progress(done, total)
        if todo.size:
            self.store.reserve(uniq[todo])
        counts = np.bincount(inverse, minlength=len(uniq))
        for start in range(0, todo.size, self.chunk_size):
            chunk = todo[start : start + self.chunk_size]
            batch = estimate_parallel(self.estimator, uniq[chunk], **self.executor_kwargs)
            self.store.add(uniq[chunk], batch)
            # (read back, not taken from add's return value: a plugin wrapping add, as the
            # reliability tests' relkill does, may return None)
            added = self.store.rows_of(uniq[chunk])
            if len(added):
                self._computed = grown(self._computed, int(added.max()) + 1, False, least=1024)
            self._computed[added] = True
            put_batch(results, chunk, batch)
            self.computed += int(chunk.size)
            done += int(counts[chunk].sum())
            if self.progress is not None:
                self.progress(done, total)
        self.reused += total - int(todo.size)
        return take_batch(results, inverse)
