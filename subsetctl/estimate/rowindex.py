"""An index from packed masks to row numbers that holds no copy of the masks.

:class:`~subsetctl.estimate.results.SubsetResultsStore` finds a subset's row by its packed
mask (``np.packbits``, ``ceil(n_sources / 8)`` bytes). A ``dict`` keyed by the mask's bytes
held every mask a second time, as a ``bytes`` object with a dict entry and an ``int`` for
its row: about 270 bytes a subset over 1,000 sources, 136 MB for the 500,501 subsets of a
backward search. :class:`RowIndex` keeps a 64-bit hash per row and an open-addressing table
of row numbers (at most half full), about 24 bytes a row; its owner keeps the masks, and a
hash match is confirmed by comparing the owner's row with the mask looked up, so two masks
with the same hash are still told apart. Lookups and inserts work on whole batches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_EMPTY = -1
#: slots a bucket of the table holds
BUCKET = 8
_MIX = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
#: rows hashed at a time (bounds the temporaries when a large store is indexed on opening)
_BLOCK = 65_536


def hash_rows(packed: np.ndarray) -> np.ndarray:
    """A 64-bit hash (uint64) of each row of ``packed`` (uint8, 2-D), the same for equal
    rows within a process (never saved): each 8-byte word mixed with its position, the
    mixes added up (mod 2^64) and mixed again (splitmix64's finalizer)."""
    packed = np.asarray(packed, dtype=np.uint8)
    m, width = packed.shape
    words = max(1, (width + 7) // 8)
    salt = (np.arange(1, words + 1, dtype=np.uint64) * _MIX)[None, :]
    out = np.empty(m, dtype=np.uint64)
    for start in range(0, m, _BLOCK):
        block = packed[start : start + _BLOCK]
        padded = np.zeros((len(block), 8 * words), dtype=np.uint8)
        padded[:, :width] = block
        x = padded.view(np.uint64) ^ salt
        x ^= x >> np.uint64(30)
        x *= _MUL1
        x ^= x >> np.uint64(27)
        x *= _MUL2
        h = x.sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(31)
        h *= _MUL1
        h ^= h >> np.uint64(29)
        out[start : start + len(block)] = h
    return out


def distinct_rows(packed: np.ndarray, hashes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``packed`` (uint8, 2-D): the position of each one's first
    appearance, in order, and for each row the index of its distinct row (``hashes``:
    :func:`hash_rows` of ``packed``, if known). Rows are grouped by hash, and the groups
    confirmed by comparing the rows; a hash shared by different rows is sorted out by
    the rows' bytes."""
    packed = np.asarray(packed, dtype=np.uint8)
    h = hash_rows(packed) if hashes is None else hashes
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if (packed == packed[first[inverse]]).all():
        order = np.argsort(first, kind="stable")  # groups in order of first appearance
        number = np.empty(len(first), dtype=np.int64)
        number[order] = np.arange(len(first))
        return first[order], number[inverse]
    seen: dict[bytes, int] = {}  # two different rows with one hash: by their bytes
    firsts: list[int] = []
    index = np.empty(len(packed), dtype=np.int64)
    for i, row in enumerate(packed):
        j = index[i] = seen.setdefault(row.tobytes(), len(firsts))
        if j == len(firsts):
            firsts.append(i)
    return np.array(firsts, dtype=np.int64), index


class RowIndex:
    """Row numbers of packed masks, the masks held by the owner.

    Args:
        packed_rows: returns the owner's packed masks (row ``i``: the mask of row ``i``;
            a view of its current storage, read at each call).

    Rows are numbered from 0 in the order :meth:`build` and :meth:`add` first see them.
    The table is buckets of :data:`BUCKET` slots (a row's bucket: its hash's low bits;
    a full bucket overflows to the next), at most half full, so a lookup of a whole
    batch reads one bucket per mask in one step, rarely two.
    """

    def __init__(self, packed_rows: Callable[[], np.ndarray]) -> None:
        self._packed_rows = packed_rows
        self.count = 0
        self._hashes = np.zeros(0, dtype=np.uint64)  # per row; capacity grown by doubling
        self._slots = np.full((1, BUCKET), _EMPTY, dtype=np.int64)  # row numbers, _EMPTY where free

    @property
    def nbytes(self) -> int:
        """Memory the index holds (the masks not counted: they are the owner's)."""
        return int(self._hashes.nbytes + self._slots.nbytes)

    def build(self, count: int) -> None:
        """Index the owner's first ``count`` rows (all of them new). Of equal rows, the
        last is the one :meth:`find` returns."""
        self.count = 0
        self._hashes = np.zeros(0, dtype=np.uint64)
        self._slots = np.full((1, BUCKET), _EMPTY, dtype=np.int64)
        if count:
            self._reserve(count)
            self._hashes[:count] = hash_rows(self._packed_rows()[:count])
            self.count = count
            self._place(np.arange(count - 1, -1, -1))

    def find(self, packed: np.ndarray, hashes: np.ndarray | None = None) -> np.ndarray:
        """The row of each row of ``packed`` (int64), -1 where it is not indexed."""
        packed = np.asarray(packed, dtype=np.uint8)
        h = hash_rows(packed) if hashes is None else hashes
        found = np.full(len(packed), -1, dtype=np.int64)
        if not self.count or not len(packed):
            return found
        last = len(self._slots) - 1
        bucket = (h & np.uint64(last)).astype(np.int64)
        active = np.arange(len(packed))
        rows = self._packed_rows()
        while active.size:
            slots = self._slots[bucket[active]]  # (k, BUCKET)
            taken = slots != _EMPTY
            same = taken & (self._hashes[np.where(taken, slots, 0)] == h[active, None])
            which, at = np.nonzero(same)  # by mask, then slot: a mask's first slot first
            if which.size:
                equal = (rows[slots[which, at]] == packed[active[which]]).all(axis=1)
                which, at = which[equal], at[equal]
                first = np.unique(which, return_index=True)[1]  # of equal rows, the earliest slot
                found[active[which[first]]] = slots[which[first], at[first]]
            # not found: look on in the next bucket only past a full one
            active = active[(found[active] < 0) & taken.all(axis=1)]
            bucket[active] = (bucket[active] + 1) & last
        return found

    def add(self, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The row of each row of ``packed``, numbering the ones not indexed yet from
        :attr:`count` on (a mask repeated in ``packed`` gets one row). Returns the rows and
        the positions in ``packed`` of the new rows' masks, in row order: the owner
        stores ``packed[new]`` as its rows ``count_before ...`` before the next lookup."""
        packed = np.asarray(packed, dtype=np.uint8)
        h = hash_rows(packed)
        rows = self.find(packed, h)
        missing = np.flatnonzero(rows < 0)
        if not missing.size:
            return rows, missing
        firsts, inverse = distinct_rows(packed[missing], h[missing])
        new = missing[firsts]
        rows[missing] = self.count + inverse
        self._reserve(self.count + len(new))
        fresh = np.arange(self.count, self.count + len(new))
        self._hashes[fresh] = h[new]
        self.count += len(new)
        self._place(fresh)
        return rows, new

    def _reserve(self, count: int) -> None:
        """Room for ``count`` rows: the hashes' capacity, and a table at most half full."""
        if count > len(self._hashes):
            grown = np.zeros(max(count, 2 * len(self._hashes), 64), dtype=np.uint64)
            grown[: self.count] = self._hashes[: self.count]
            self._hashes = grown
        if 2 * count > self._slots.size:
            buckets = len(self._slots)
            while 2 * count > buckets * BUCKET:
                buckets *= 2
            self._slots = np.full((buckets, BUCKET), _EMPTY, dtype=np.int64)
            if self.count:
                self._place(np.arange(self.count - 1, -1, -1))  # last first: it stays the one found

    def _place(self, rows: np.ndarray) -> None:
        """Put ``rows`` (indexed in :attr:`_hashes`) in the first free slot of their bucket
        (or the next bucket with one); of rows sharing a bucket, those earlier in ``rows``
        take the earlier slots."""
        last = len(self._slots) - 1
        bucket = (self._hashes[rows] & np.uint64(last)).astype(np.int64)
        while rows.size:
            slots = self._slots[bucket]
            free = slots == _EMPTY
            full = ~free.any(axis=1)
            bucket[full] = (bucket[full] + 1) & last
            # of the rows wanting one bucket with room, the first takes its first free slot
            room = np.flatnonzero(~full)
            _, first = np.unique(bucket[room], return_index=True)
            winners = room[first]
            self._slots[bucket[winners], free[winners].argmax(axis=1)] = rows[winners]
            left = np.ones(len(rows), dtype=bool)
            left[winners] = False
            rows, bucket = rows[left], bucket[left]
