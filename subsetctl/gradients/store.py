"""The gradient store: f_i, x_i and hidden-state means for every row, on disk, resumable.

Layout of a store directory::

    info.json     model, adapter fingerprint, projector, seed, d, p, n_rows, h (+ shard, and
                  a shard's library versions); written last at creation, by atomic rename:
                  its presence marks a store
    rows.json     the row table, one {"source", "split", "index"} object per row
    features.npy  (N, d) float32 projected gradients x_i   (np.lib.format.open_memmap)
    outputs.npy   (N,)   float32 model outputs f_i
    repr.npy      (N, h) float32 mean last-layer hidden states (absent when h is 0)
    written.npy   (N,)   bool, True once a row's data is flushed to disk

The arrays' disk blocks are allocated when the store is opened to write (made, or resumed),
so a disk that fills later stops nothing: the memory map writes into room
it holds. ``write`` flushes the data before it marks the bitmap, so a killed run never marks a row
it did not finish; ``compute_store`` computes only the batches holding an unwritten row. A
large job can be split into shards (``shard_rows``) that write their own stores, whose
rows ``take_shard_rows`` copies into the store of all rows (shards of any count, finished
or not); the rows no shard has are then computed there.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from subsetctl.errors import StaleArtifactError, UserError
from subsetctl.project import atomic_write_json, remove_tree

INFO = "info.json"
ROWS = "rows.json"
FEATURES = "features.npy"
OUTPUTS = "outputs.npy"
REPR = "repr.npy"
WRITTEN = "written.npy"

MERGE_BLOCK = 4096
"""Rows copied per write when taking a shard's rows."""

def _numpy(a: Any) -> np.ndarray:
    """A float32 numpy array from a numpy array or a (possibly grad-tracking) tensor."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float32)


def _load_array(path: Path, shape: tuple[int, ...], mode: Literal["r", "r+"]) -> np.ndarray:
    """One of a store's arrays, memory-mapped, once checked read-only against the shape
    ``info.json`` gives it. A file cut short (a crash of the machine, a disk error) is
    refused (StaleArtifactError): numpy's writable memory map extends it with zeros, so the
    rows ``written.npy`` marks done were read as zeros and a resumed gradients stage
    committed them, changing every estimate downstream without a word."""
    try:
        shown = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise StaleArtifactError(f"{path} is damaged ({exc}). Re-run the gradients stage.") from exc
    if shown.shape != shape:
        raise StaleArtifactError(f"{path} holds an array of shape {shown.shape}, not {shape} as the store's "
                                 "info.json says. Re-run the gradients stage.")
    del shown
    return np.load(path, mmap_mode=mode)


def _reserve(path: Path) -> None:
    """Allocate the disk blocks of the array file ``path`` now, where it has holes (numpy's
    ``open_memmap`` makes a sparse file: the size, no blocks). A memory map writing into a
    hole takes the block then, and on a full disk the kernel kills the process with SIGBUS
    ("Bus error", exit 135): a run days into the gradients stage died without a word when
    another job filled the disk. A full disk (or quota) here is an OSError naming the file,
    said as one (:func:`subsetctl.errors.environment_error`); the rows written before are
    kept. A file system that allocates no blocks ahead (EOPNOTSUPP, EINVAL) is left as it was."""
    if not hasattr(os, "posix_fallocate"):  # (not on macOS or Windows)
        return
    stat = path.stat()
    if stat.st_blocks * 512 >= stat.st_size:  # every block there already (a store made by this version)
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, stat.st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        os.close(fd)


def sync_arrays(arrays: Sequence[np.memmap]) -> None:
    """Write what was stored in the memory-mapped ``arrays`` to disk, returning once all of it
    is there (or raising the first OSError).

    On Linux their files' ``fdatasync`` run at once, a thread each: ``msync``, which
    ``np.memmap.flush`` calls, is ``fdatasync`` of the mapped range there (mm/msync.c), and
    syncs that run together share the disk's cache flushes. Each file is opened again by its
    path for it: what the mapping wrote is the file's page cache, which a sync through any
    descriptor of the file writes out, and a writeback error not yet reported is reported to
    a descriptor opened after it (Linux 4.16 on). The path is the mapped file's as long as
    nothing replaces the store's folder while it is written (the project's lock keeps other
    runs out). Flushed one after another, the three data arrays and the written flags took
    about 20 ms a batch on a busy disk, a quarter of the gradients stage at 2,000 tiny sources
    (benchmarks/per_source_costs.py). Elsewhere each array's ``flush`` in turn."""
    if not sys.platform.startswith("linux") or len(arrays) < 2:
        for array in arrays:
            array.flush()
        return

    def sync(path: str | os.PathLike[str]) -> None:  # (np.memmap.filename: a Path or a str)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, path) from exc
        finally:
            os.close(fd)

    threads = _sync_threads()
    for done in [threads.submit(sync, array.filename) for array in arrays]:
        done.result()


#: :func:`_sync_threads`' threads, by the process that started them
_SYNC_THREADS: dict[int, ThreadPoolExecutor] = {}


def _sync_threads() -> ThreadPoolExecutor:
    """The threads :func:`sync_arrays` syncs on, kept for the process: starting three each
    batch took 0.6 ms (90 ms in 157 batches on two busy cores, where a quiet disk syncs them in 0.3 s).
    A forked child, which has none of its parent's threads, starts its own."""
    pid = os.getpid()
    if pid not in _SYNC_THREADS:
        _SYNC_THREADS.clear()
        _SYNC_THREADS[pid] = ThreadPoolExecutor(max_workers=3, thread_name_prefix="gradient-store-sync")
    return _SYNC_THREADS[pid]


def held_bytes(path: str | Path) -> int:
    """The disk bytes the arrays of the store at ``path`` hold now (their allocated blocks, at
    most each file's size; 0 where there is no store): room a store made or resumed there
    takes again, as it is recreated in its place or written into it."""
    held = 0
    for name in (FEATURES, OUTPUTS, REPR, WRITTEN):
        try:
            stat = (Path(path) / name).stat()
        except OSError:
            continue
        held += min(stat.st_blocks * 512, stat.st_size) if hasattr(stat, "st_blocks") else stat.st_size
    return held


class GradientStore:
    """A directory of per-row gradient features; open with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, info: dict[str, Any], rows: list[dict[str, Any]], mode: Literal["r", "r+"]) -> None:
        self.path = Path(path)
        self.info = info
        self.rows = rows
        self.n_rows = int(info["n_rows"])
        self.d = int(info["d"])
        self.h = int(info.get("h", 0))
        self.features = _load_array(self.path / FEATURES, (self.n_rows, self.d), mode)
        self.outputs = _load_array(self.path / OUTPUTS, (self.n_rows,), mode)
        self.repr = _load_array(self.path / REPR, (self.n_rows, self.h), mode) if self.h else None
        self.written = _load_array(self.path / WRITTEN, (self.n_rows,), mode)
        if mode == "r+":  # before any row goes in: a new store's, and one an earlier subsetctl left sparse
            for name in (FEATURES, OUTPUTS, WRITTEN) + ((REPR,) if self.h else ()):
                _reserve(self.path / name)

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def create(
        cls, path: str | Path, rows: Sequence[Mapping[str, Any]], d: int, h: int, info: Mapping[str, Any]
    ) -> GradientStore:
        """Create an empty store for ``rows`` (overwriting any store already at ``path``).

        ``info`` describes what the features depend on (model, adapter, projector, seed,
        p, ...); ``n_rows``, ``d`` and ``h`` are added to it.
        """
        path = Path(path)
        if path.exists():
            remove_tree(path)
        path.mkdir(parents=True)
        n = len(rows)
        full_info = {**dict(info), "n_rows": n, "d": int(d), "h": int(h)}
        with open(path / ROWS, "w") as fh:
            json.dump([dict(r) for r in rows], fh)
        for name, shape, dtype in (
            (FEATURES, (n, d), np.float32),
            (OUTPUTS, (n,), np.float32),
            (WRITTEN, (n,), np.bool_),
        ) + (((REPR, (n, h), np.float32),) if h else ()):
            arr = np.lib.format.open_memmap(path / name, mode="w+", dtype=dtype, shape=shape)
            arr.flush()
            del arr
        atomic_write_json(path / INFO, full_info)
        return cls.open(path, writable=True)

    @classmethod
    def open(cls, path: str | Path, writable: bool = True) -> GradientStore:
        """Open an existing store; raises StaleArtifactError when ``path`` holds none."""
        path = Path(path)
        if not (path / INFO).exists():
            raise StaleArtifactError(
                f"{path} holds no complete gradient store (info.json is missing: creation was "
                "interrupted or the folder was edited). Re-run the gradients stage."
            )
        info = json.loads((path / INFO).read_text())
        rows = json.loads((path / ROWS).read_text())
        return cls(path, info, rows, "r+" if writable else "r")

    # ----------------------------------------------------------------- state
    def write(self, row_indices: Sequence[int] | np.ndarray, f: Any, x: Any, repr: Any = None) -> None:
        """Write rows (store-local indices) and mark them written after the data is on disk
        (:func:`sync_arrays`), the marks then flushed too: a run killed, or a machine that
        stops, loses at most the rows of the batch being written."""
        idx = np.asarray(row_indices, dtype=np.int64)
        f_, x_ = _numpy(f).reshape(-1), _numpy(x)
        if x_.shape != (len(idx), self.d) or f_.shape != (len(idx),):
            raise ValueError(f"write got f {f_.shape} and x {x_.shape} for {len(idx)} rows of d={self.d}")
        if self.repr is not None and repr is None:
            raise ValueError("this store keeps hidden-state means (h > 0); pass repr")
        self.features[idx] = x_
        self.outputs[idx] = f_
        if self.repr is not None:
            self.repr[idx] = _numpy(repr)
        sync_arrays([self.features, self.outputs] + ([self.repr] if self.repr is not None else []))
        self.written[idx] = True
        self.written.flush()

    def first_unwritten(self) -> int | None:
        """Index of the first row not yet written, or None when the store is complete."""
        missing = np.flatnonzero(~np.asarray(self.written))
        return int(missing[0]) if missing.size else None

    def missing_rows(self) -> np.ndarray:
        """Indices of all rows not yet written."""
        return np.flatnonzero(~np.asarray(self.written))

    @property
    def complete(self) -> bool:
        """True when every row is written."""
        return bool(np.all(self.written))

    @property
    def row_offset(self) -> int:
        """Global index of this store's first row (non-zero for a shard)."""
        return int(self.info.get("shard", {}).get("start", 0))

    @property
    def versions(self) -> list[Any]:
        """The library versions that computed the store's rows (info.json's ``versions``):
        each distinct record of :func:`subsetctl.pipeline.library_versions` once, in the
        order they began writing rows; None for rows an earlier subsetctl wrote without
        recording them. It describes the rows only: :meth:`check_info` never compares it."""
        kept = self.info.get("versions")
        if isinstance(kept, list):
            return list(kept)
        return [None] if np.any(self.written) else []

    @property
    def threads(self) -> list[Any]:
        """The thread counts (:func:`subsetctl.pipeline.thread_counts`) the store's rows were
        computed with (info.json's ``threads``): each distinct record once, in the order they
        began writing rows; empty where none was recorded (rows an earlier subsetctl wrote).
        Like :attr:`versions`, it describes the rows only."""
        kept = self.info.get("threads")
        return list(kept) if isinstance(kept, list) else []

    def add_versions(self, versions: Mapping[str, str], threads: Mapping[str, Any] | None = None) -> None:
        """Record that ``versions`` (and the thread counts ``threads``) compute rows of the
        store from now on (recorded before they do, so the rows of a run stopped partway are
        not left out)."""
        known, known_threads = self.versions, self.threads
        added = {**({"versions": [*known, dict(versions)]} if dict(versions) not in known else {}),
                 **({"threads": [*known_threads, dict(threads)]}
                    if threads is not None and dict(threads) not in known_threads else {})}
        if added:
            self.info = {**self.info, **added}
            atomic_write_json(self.path / INFO, self.info)

    def check_info(self, expected: Mapping[str, Any], earlier: Mapping[str, Sequence[Any]] | None = None) -> None:
        """Raise StaleArtifactError when a key of ``expected`` differs from the store's info.

        The gradients stage passes everything the features depend on (model and its config,
        the adapter's fingerprint, projector and its code, seed, p, d, kind, max_length): a
        store taken at another adapter or with another projection must never be mixed in.
        ``earlier`` names, per key, values an earlier subsetctl wrote for the same thing
        (the model's path, before a local folder was known by its files); they match too.
        """
        diffs = self.info_differences(expected, earlier)
        if diffs:
            raise StaleArtifactError(
                f"The gradient store at {self.path} was computed with different settings ("
                + "; ".join(diffs)
                + "). Re-run gradients (subsetctl run recomputes the stage) instead of mixing them."
            )

    def info_differences(self, expected: Mapping[str, Any],
                         earlier: Mapping[str, Sequence[Any]] | None = None) -> list[str]:
        """The keys of ``expected`` the store's info differs in (``"d: stored 8, expected
        16"`` each), as :meth:`check_info` tells them; empty when it would accept the store."""
        earlier = earlier or {}
        return [
            f"{k}: stored {self.info.get(k)!r}, expected {v!r}"
            for k, v in expected.items()
            if self.info.get(k) != v and self.info.get(k) not in earlier.get(k, ())
        ]

    def adopt_info(self, expected: Mapping[str, Any]) -> None:
        """Write ``expected``'s values into info.json where they differ (after
        :meth:`check_info` accepted an earlier spelling of them), so the store is described
        as a fresh one would be and is found again after the model folder moves."""
        if all(self.info.get(k) == v for k, v in expected.items()):
            return
        self.info = {**self.info, **dict(expected)}
        atomic_write_json(self.path / INFO, self.info)


# --------------------------------------------------------------------- compute
@dataclass
class ComputeCounts:
    """Rows computed in this call and rows skipped because they were already written."""

    computed: int
    skipped: int


def compute_store(
    engine: Any,
    make_batch: Callable[[list[int]], dict[str, Any]],
    store: GradientStore,
    batch_size: int,
    progress: Callable[[int, int], None] | None = None,
    resumed: Callable[[int], None] | None = None,
) -> ComputeCounts:
    """Fill ``store`` batch by batch, skipping the batches whose rows are all written
    already (wherever they are: an interrupted run's, or rows taken from shards).

    ``progress(done, n)`` counts the skipped rows at the start, where ``resumed(skipped)``
    is told them (when there are any), and then the rows this call computes: a resumed
    run's skipped rows, wherever they lie, are no part of its speed (its ETA read them as
    rows computed in no time, and the rest as nearly done).

    Batches are the fixed blocks ``[k * batch_size, (k + 1) * batch_size)`` of the store's
    rows, so a resumed or sharded run pads and computes every row exactly as an
    uninterrupted one does. ``make_batch`` gets *global* row indices (store-local index +
    :attr:`GradientStore.row_offset`) and returns a collated batch for ``engine.compute``.
    """
    if batch_size < 1:
        raise UserError(f"gradients.batch_size={batch_size} must be at least 1.")
    n = store.n_rows
    written = np.asarray(store.written)
    done_before = [start for start in range(0, n, batch_size) if written[start:start + batch_size].all()]
    skipped = sum(min(n, start + batch_size) - start for start in done_before)
    if skipped and resumed is not None:
        resumed(skipped)
    elif skipped and progress is not None:
        progress(skipped, n)
    computed = 0
    for start in sorted(set(range(0, n, batch_size)) - set(done_before)):
        local = list(range(start, min(n, start + batch_size)))
        result = engine.compute(make_batch([i + store.row_offset for i in local]))
        store.write(local, result.f, result.x, result.repr if store.h else None)
        computed += len(local)
        if progress is not None:
            progress(skipped + computed, n)
    return ComputeCounts(computed=computed, skipped=skipped)


# --------------------------------------------------------------------- shards
def shard_rows(n_rows: int, shard_index: int, n_shards: int, batch_size: int = 1) -> range:
    """The contiguous, batch-aligned rows of shard ``shard_index`` (0-based) of ``n_shards``.

    Batches of ``batch_size`` rows are dealt out in contiguous runs as evenly as possible;
    the shards are disjoint and cover ``range(n_rows)``. A shard may be empty when there
    are more shards than batches.
    """
    if n_shards < 1 or not 0 <= shard_index < n_shards:
        raise UserError(f"Shard {shard_index} of {n_shards} does not exist; use 0 <= index < count.")
    n_batches = math.ceil(n_rows / batch_size)
    first = shard_index * n_batches // n_shards
    last = (shard_index + 1) * n_batches // n_shards
    return range(min(n_rows, first * batch_size), min(n_rows, last * batch_size))


def shard_dir(base: str | Path, shard_index: int, n_shards: int) -> Path:
    """Directory of one shard's store: ``<base>/shard-<index>-of-<count>`` (0-based index)."""
    return Path(base) / f"shard-{shard_index}-of-{n_shards}"


def create_shard_store(
    base: str | Path,
    rows: Sequence[Mapping[str, Any]],
    d: int,
    h: int,
    info: Mapping[str, Any],
    shard_index: int,
    n_shards: int,
    batch_size: int,
) -> GradientStore:
    """Create the store of one shard: its slice of ``rows`` under :func:`shard_dir`."""
    span = shard_rows(len(rows), shard_index, n_shards, batch_size)
    shard = {
        "index": shard_index,
        "count": n_shards,
        "start": span.start,
        "stop": span.stop,
        "total_rows": len(rows),
    }
    return GradientStore.create(
        shard_dir(base, shard_index, n_shards),
        list(rows[span.start : span.stop]),
        d,
        h,
        {**dict(info), "shard": shard},
    )


def take_shard_rows(shards: Sequence[GradientStore], store: GradientStore) -> int:
    """Copy into ``store`` every row a shard store has written and ``store`` has not.

    The shards need not tile the rows or be complete: shards of different counts (``0/2``
    finished, then ``1/3`` and ``2/3``) or a shard stopped partway each give what they
    have, and the caller computes the rest. Every row is computed the same way whichever
    shard or store computed it (fixed, batch-aligned blocks), so where shards overlap
    either copy will do. The caller checks each shard's info against the store's first
    (:meth:`GradientStore.check_info`: same model, adapter, projection and row table); a
    shard of another ``d`` or ``h``, or whose rows run past the store's, is refused here.
    Returns the number of rows copied.
    """
    copied = 0
    for shard in shards:
        start = shard.row_offset
        stop = start + shard.n_rows
        if (shard.d, shard.h) != (store.d, store.h) or stop > store.n_rows:
            raise StaleArtifactError(f"The gradient shard at {shard.path} does not fit the store at {store.path}.")
        wanted = np.flatnonzero(np.asarray(shard.written) & ~np.asarray(store.written[start:stop]))
        for a in range(0, wanted.size, MERGE_BLOCK):  # bounded memory for big shards
            local = wanted[a : a + MERGE_BLOCK]
            store.write(local + start, shard.outputs[local], shard.features[local],
                        shard.repr[local] if store.h else None)
        copied += int(wanted.size)
    return copied
