"""Persistent store of estimated subsets, and an estimator wrapper that reuses it.

Estimating thousands of subsets with the exact solver takes minutes; a killed or repeated
run should not redo them. :class:`SubsetResultsStore` keeps, in the project directory,
every subset estimated so far (its mask and metrics) under a *key* that fingerprints the
estimator, its lambda and the features: opening the store with another key resets it,
so results of different settings are never mixed (as Kronfluence keys its
caches). :class:`CachedEstimator` wraps any estimator so that only never-seen masks
are computed, in chunks that are saved as they finish.

Layout of the store folder:

* ``store.json``: ``{"format": 1, "key": ..., "sources": [...], "versions": [...]}``,
  written when the store is created or reset, or new rows are computed with library
  versions not listed yet (``versions``: the versions dicts that computed its rows);
* ``subsets.npz``: ``masks`` (M, n) bool, ``loss``, ``w_norm``, ``iterations``,
  ``converged`` (M,), ``completed`` (M,) bool, the bitmap of rows whose metrics are
  final (rows registered with :meth:`SubsetResultsStore.reserve` and not yet estimated are
  ``False``), and ``computed_with`` (M,) int, each row's index in ``versions`` (-1: not
  recorded, a store an earlier subsetctl wrote). It is rewritten whole through a temporary file and ``os.replace``, so a
  crash leaves either the old or the new version, never a torn one.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from subsetctl.errors import UserError
from subsetctl.estimate.base import EstimateBatch, SubsetEstimator
from subsetctl.project import atomic_write

FORMAT_VERSION = 1
META_FILE = "store.json"
DATA_FILE = "subsets.npz"

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


def _row_keys(masks: np.ndarray) -> list[bytes]:
    packed = np.packbits(masks, axis=1)
    return [row.tobytes() for row in packed]


# ------------------------------------------------------------------------ store


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
    """

    def __init__(self, path: Path | str, sources: list[str], key: str, earlier_keys: tuple[str, ...] = (),
                 versions: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.versions = versions
        self._versions: list[Any] = []  # store.json's list of the versions that computed rows
        self.sources = list(sources)
        self.key = str(key)
        self.earlier_keys = tuple(str(k) for k in earlier_keys)
        self.reset_reason: str | None = None
        if self.path.exists() and not self.path.is_dir():  # a hand edit or a bad copy: estimated again
            self.path.unlink()
            self.reset_reason = f"The subset results store at {self.path} was reset: it was a file, not a folder."
        self.path.mkdir(parents=True, exist_ok=True)
        n = len(self.sources)
        self._masks = np.zeros((0, n), dtype=bool)
        self._batch = empty_batch(0)
        self._completed = np.zeros(0, dtype=bool)
        self._computed_with = np.zeros(0, dtype=np.int64)
        self._open()

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
                elif meta.get("format") != FORMAT_VERSION:
                    reason = f"it has format {meta.get('format')!r}, not {FORMAT_VERSION}"
                elif meta.get("key") != self.key and meta.get("key") not in self.earlier_keys:
                    reason = f"its key {meta.get('key')!r} differs from {self.key!r}"
                elif meta.get("sources") != self.sources:
                    reason = "it was written for a different list of sources"
                else:
                    self._versions = meta.get("versions") if isinstance(meta.get("versions"), list) else []
                    if meta.get("key") != self.key:  # the same results under an earlier spelling of the key
                        self._write_meta()
        elif data_path.exists():
            reason = f"it had results but no {META_FILE}"
        else:
            self._write_meta()
            return
        if reason is None and data_path.exists():
            try:
                self._load(data_path)
            except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as exc:  # truncated, bit flips
                reason = f"its {DATA_FILE} was unreadable ({exc})"
        if reason is not None:
            self.reset_reason = f"The subset results store at {self.path} was reset: {reason}."
            for path in (meta_path, data_path):  # one of them a folder (a hand edit): unreadable, and in the way
                if path.is_dir():
                    shutil.rmtree(path)
            if data_path.exists():
                data_path.unlink()
            n = len(self.sources)
            self._masks = np.zeros((0, n), dtype=bool)
            self._batch = empty_batch(0)
            self._completed = np.zeros(0, dtype=bool)
            self._computed_with = np.zeros(0, dtype=np.int64)
            self._versions = []
            self._write_meta()
        self._index = {k: i for i, k in enumerate(_row_keys(self._masks))}

    def _load(self, data_path: Path) -> None:
        with np.load(data_path) as data:
            masks = data["masks"].astype(bool)
            if masks.ndim != 2 or masks.shape[1] != len(self.sources):
                raise ValueError(f"masks have shape {masks.shape}")
            self._masks = masks
            self._batch = EstimateBatch(
                loss=data["loss"].astype(np.float64),
                w_norm=data["w_norm"].astype(np.float64),
                iterations=data["iterations"].astype(np.int64),
                converged=data["converged"].astype(bool),
            )
            self._completed = data["completed"].astype(bool)
            # (a store an earlier subsetctl wrote has no record of the versions: unknown)
            self._computed_with = (data["computed_with"].astype(np.int64) if "computed_with" in data.files
                                   else np.full(len(masks), -1, dtype=np.int64))
        rows = {len(masks), len(self._batch.loss), len(self._batch.w_norm), len(self._batch.iterations),
                len(self._batch.converged), len(self._completed), len(self._computed_with)}
        if len(rows) != 1:
            raise ValueError(f"its arrays have different numbers of rows ({sorted(rows)})")

    def _write_meta(self) -> None:
        text = json.dumps({"format": FORMAT_VERSION, "key": self.key, "sources": self.sources,
                           "versions": self._versions}, indent=1)
        atomic_write(self.path / META_FILE, lambda fh: fh.write(text))

    def _save(self) -> None:
        arrays = {
            "masks": self._masks,
            "loss": self._batch.loss,
            "w_norm": self._batch.w_norm,
            "iterations": self._batch.iterations,
            "converged": self._batch.converged,
            "completed": self._completed,
            "computed_with": self._computed_with,
        }
        atomic_write(self.path / DATA_FILE, lambda fh: np.savez(fh, **arrays), mode="wb")

    def _index_of(self) -> dict[bytes, int]:
        if not hasattr(self, "_index"):
            self._index = {k: i for i, k in enumerate(_row_keys(self._masks))}
        return self._index

    # -- queries --------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of completed subsets."""
        return int(self._completed.sum())

    def lookup(self, masks: np.ndarray) -> tuple[np.ndarray, EstimateBatch]:
        """For each mask: whether a completed result is stored, and the results (rows
        not found are NaN / 0 / False)."""
        masks = _as_masks(masks, len(self.sources))
        index = self._index_of()
        rows = np.array([index.get(k, -1) for k in _row_keys(masks)], dtype=np.int64)
        found = rows >= 0
        found[found] = self._completed[rows[found]]
        out = empty_batch(len(masks))
        if found.any():
            put_batch(out, found, take_batch(self._batch, rows[found]))
        return found, out

    def results(self) -> tuple[np.ndarray, EstimateBatch]:
        """All completed masks and their results, in insertion order."""
        done = self._completed
        return self._masks[done].copy(), take_batch(self._batch, done)

    def pending(self) -> np.ndarray:
        """Masks reserved with :meth:`reserve` whose results are not stored yet."""
        return self._masks[~self._completed].copy()

    # -- updates --------------------------------------------------------------------

    def _rows_for(self, masks: np.ndarray) -> np.ndarray:
        """Row of each mask, appending unknown masks (not yet completed)."""
        index = self._index_of()
        keys = _row_keys(masks)
        rows = np.empty(len(masks), dtype=np.int64)
        new: list[int] = []
        for i, k in enumerate(keys):
            row = index.get(k)
            if row is None:
                row = len(self._masks) + len(new)
                index[k] = row
                new.append(i)
            rows[i] = row
        if new:
            self._masks = np.concatenate([self._masks, masks[new]])
            self._batch = concat_batches([self._batch, empty_batch(len(new))])
            self._completed = np.concatenate([self._completed, np.zeros(len(new), bool)])
            self._computed_with = np.concatenate([self._computed_with, np.full(len(new), -1, dtype=np.int64)])
        return rows

    def reserve(self, masks: np.ndarray) -> None:
        """Register masks about to be estimated (not completed), so that a crash leaves
        a record of the plan (:meth:`pending`)."""
        masks = _as_masks(masks, len(self.sources))
        before = len(self._masks)
        self._rows_for(masks)
        if len(self._masks) != before:
            self._save()

    def add(self, masks: np.ndarray, batch: EstimateBatch) -> None:
        """Store the results of ``masks`` (completed) and save atomically."""
        masks = _as_masks(masks, len(self.sources))
        if len(batch.loss) != len(masks):
            raise ValueError(f"{len(masks)} masks but {len(batch.loss)} results")
        rows = self._rows_for(masks)
        put_batch(self._batch, rows, batch)
        self._completed[rows] = True
        if self.versions is not None:
            if self.versions not in self._versions:
                self._versions.append(self.versions)
                self._write_meta()
            self._computed_with[rows] = self._versions.index(self.versions)
        self._save()

    def rows_of(self, masks: np.ndarray) -> np.ndarray:
        """The rows of ``masks`` that are completed (their order in the store)."""
        index = self._index_of()
        rows = np.array([index.get(k, -1) for k in _row_keys(_as_masks(masks, len(self.sources)))], dtype=np.int64)
        rows = rows[rows >= 0]
        return rows[self._completed[rows]]

    def versions_of(self, rows: Any) -> list[tuple[Any, int]]:
        """The library versions that computed ``rows`` (None: not recorded) with how many
        of them each computed, in order of first use."""
        counts: dict[int, int] = {}
        for row in sorted(int(r) for r in rows):
            i = int(self._computed_with[row])
            i = i if 0 <= i < len(self._versions) and isinstance(self._versions[i], dict) else -1
            counts[i] = counts.get(i, 0) + 1
        return [(self._versions[i] if i >= 0 else None, n) for i, n in counts.items()]


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
        self._computed_rows: set[int] = set()

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
        uniq, first, inverse = np.unique(masks, axis=0, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # compute in request order
        uniq = uniq[order]
        inverse = np.argsort(order)[inverse.reshape(-1)]
        found, results = self.store.lookup(uniq)
        self.reused_rows.update(int(r) for r in self.store.rows_of(uniq[found]) if int(r) not in self._computed_rows)
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
            self._computed_rows.update(int(r) for r in self.store.rows_of(uniq[chunk]))
            put_batch(results, chunk, batch)
            self.computed += int(chunk.size)
            done += int(counts[chunk].sum())
            if self.progress is not None:
                self.progress(done, total)
        self.reused += total - int(todo.size)
        return take_batch(results, inverse)
