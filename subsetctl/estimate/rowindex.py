"""An index from packed masks to row numbers that holds no copy of the masks.

:class:`~subsetctl.estimate.results.SubsetResultsStore` finds a subset's row by its packed
mask (``np.packbits``, ``ceil(n_sources / 8)`` bytes). A ``dict`` keyed by the mask's bytes
held every mask a second time, as a ``bytes`` object with a dict entry and an ``int`` for
its row: about 270 bytes a subset over 1,000 sources, 136 MB for the 500,501 subsets of a
backward search. :class:`RowIndex` keeps a 64-bit hash per row and an open-addressing table
of row numbers (at most half full), about 24 bytes a row; its owner keeps the masks, and a
hash match is confirmed by comparing the owner's row with the mask looked up, so two masks
with the same hash are still told apart. Lookups and inserts work on whole batches.

The owners keep the masks in a :class:`DeltaRows`: a subset one source away from the common
subset of the batch it came in (a greedy step's candidates) as that change, 12 bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

_EMPTY = -1
#: slots a bucket of the table holds
BUCKET = 8
_MIX = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
#: masks looked up or placed at a time (a step reads BUCKET slots of each: 64 bytes)
_STEP = 8_192
#: rows hashed at a time (bounds the temporaries when a large store is indexed on opening)
_BLOCK = 65_536


def grown(values: np.ndarray, size: int, fill: Any = 0, least: int = 64, used: int | None = None) -> np.ndarray:
    """``values`` when its first axis holds ``size`` entries, else a copy with room for
    ``size`` at least, and twice its length at least (appending n entries then copies O(n)
    of them in all); the new entries are ``fill``. ``used``: copy only the first ``used``
    entries (the rest are spare capacity, copied as ``fill``)."""
    if size <= len(values):
        return values
    shape = (max(size, 2 * len(values), least), *values.shape[1:])
    # zeros: pages of entries not written yet stay unallocated (full, or a copy, writes them)
    out = np.zeros(shape, dtype=values.dtype) if fill == 0 else np.full(shape, fill, dtype=values.dtype)
    kept = len(values) if used is None else used
    out[:kept] = values[:kept]
    return out


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
        take: ``take(rows)``, the owner's packed masks of row numbers ``rows`` (2-D).

    The table is buckets of :data:`BUCKET` slots (a row's bucket: its hash's low bits;
    a full bucket overflows to the next), at most half full, so a lookup of a whole
    batch reads one bucket per mask in one step, rarely two.
    """

    def __init__(self, take: Callable[[np.ndarray], np.ndarray]) -> None:
        self._take = take
        self.count = 0  # rows indexed
        self._hashes = np.zeros(0, dtype=np.uint64)  # by row number; capacity grown by doubling
        self._slots = np.full((1, BUCKET), _EMPTY, dtype=np.int64)  # row numbers, _EMPTY where free

    @property
    def nbytes(self) -> int:
        """Memory the index holds (the masks not counted: they are the owner's)."""
        return int(self._hashes.nbytes + self._slots.nbytes)

    def build(self, count: int) -> None:
        """Index the owner's rows ``0 .. count - 1``, replacing what was indexed. Of equal
        rows, the last is the one :meth:`find` returns."""
        self.count = 0
        self._hashes = np.zeros(0, dtype=np.uint64)
        self._slots = np.full((1, BUCKET), _EMPTY, dtype=np.int64)
        if count:
            self._reserve(count, count)
            for start in range(0, count, _BLOCK):
                rows = np.arange(start, min(count, start + _BLOCK))
                self._hashes[rows] = hash_rows(self._take(rows))
            self.count = count
            self._place(np.arange(count - 1, -1, -1))

    def find(self, packed: np.ndarray, hashes: np.ndarray | None = None) -> np.ndarray:
        """The row of each row of ``packed`` (int64), -1 where it is not indexed."""
        packed = np.asarray(packed, dtype=np.uint8)
        h = hash_rows(packed) if hashes is None else hashes
        found = np.full(len(packed), -1, dtype=np.int64)
        if self.count:
            for start in range(0, len(packed), _STEP):  # bounds the (masks, BUCKET) temporaries
                found[start : start + _STEP] = self._find(packed[start : start + _STEP], h[start : start + _STEP])
        return found

    def _find(self, packed: np.ndarray, h: np.ndarray) -> np.ndarray:
        found = np.full(len(packed), -1, dtype=np.int64)
        last = len(self._slots) - 1
        bucket = (h & np.uint64(last)).astype(np.int64)
        active = np.arange(len(packed))
        while active.size:
            slots = self._slots[bucket[active]]  # (k, BUCKET)
            taken = slots != _EMPTY
            same = taken & (self._hashes[np.where(taken, slots, 0)] == h[active, None])
            which, at = np.nonzero(same)  # by mask, then slot: a mask's first slot first
            if which.size:
                equal = (self._take(slots[which, at]) == packed[active[which]]).all(axis=1)
                which, at = which[equal], at[equal]
                first = np.unique(which, return_index=True)[1]  # of equal rows, the earliest slot
                found[active[which[first]]] = slots[which[first], at[first]]
            # not found: look on in the next bucket only past a full one
            active = active[(found[active] < 0) & taken.all(axis=1)]
            bucket[active] = (bucket[active] + 1) & last
        return found

    def insert(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        """Index the owner's rows ``rows`` (none indexed yet, no two equal), of hashes
        ``hashes`` (:func:`hash_rows` of their masks)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return
        self._reserve(self.count + len(rows), int(rows.max()) + 1)
        self._hashes[rows] = hashes
        self.count += len(rows)
        self._place(rows)

    def add(self, packed: np.ndarray, append: Callable[[np.ndarray], int]) -> tuple[np.ndarray, np.ndarray]:
        """The row of each row of ``packed``; the masks not indexed yet (each once, in order
        of first appearance) are given to ``append``, which stores them as the owner's rows
        from the number it returns on, and are indexed. Returns the rows and the positions
        in ``packed`` of the masks appended."""
        packed = np.asarray(packed, dtype=np.uint8)
        h = hash_rows(packed)
        rows = self.find(packed, h)
        missing = np.flatnonzero(rows < 0)
        if not missing.size:
            return rows, missing
        firsts, inverse = distinct_rows(packed[missing], h[missing])
        new = missing[firsts]
        first = append(packed[new])
        numbers = np.arange(first, first + len(new))
        self.insert(h[new], numbers)
        rows[missing] = numbers[inverse]
        return rows, new

    def _reserve(self, count: int, rows: int) -> None:
        """Room for ``count`` rows indexed, numbered below ``rows``: the hashes' capacity,
        and a table at most half full."""
        self._hashes = grown(self._hashes, rows)
        if 2 * count > self._slots.size:
            buckets = len(self._slots)
            while 2 * count > buckets * BUCKET:
                buckets *= 2
            indexed = np.sort(self._slots[self._slots != _EMPTY])[::-1]  # last first: it stays the one found
            self._slots = np.full((buckets, BUCKET), _EMPTY, dtype=np.int64)
            self._place(indexed)

    def _place(self, rows: np.ndarray) -> None:
        """Put ``rows`` (indexed in :attr:`_hashes`) in the first free slot of their bucket
        (or the next bucket with one); of rows sharing a bucket, those earlier in ``rows``
        take the earlier slots."""
        for start in range(0, len(rows), _STEP):  # in order: earlier rows first
            self._place_some(rows[start : start + _STEP])

    def _place_some(self, rows: np.ndarray) -> None:
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


class PackedRows:
    """Packed masks appended in blocks of at most :data:`_BLOCK` rows, the last block grown
    by doubling: no copy of the rows held already once a block is full (a single array
    grown by doubling holds three times the rows while it grows, and up to twice after)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.count = 0
        self._blocks: list[np.ndarray] = []

    @property
    def nbytes(self) -> int:
        return sum(block.nbytes for block in self._blocks)

    def append(self, packed: np.ndarray) -> int:
        """Add the rows of ``packed`` (uint8, ``(k, width)``); returns the first one's number."""
        packed = np.asarray(packed, dtype=np.uint8).reshape(-1, self.width)
        first, done = self.count, 0
        while done < len(packed):
            at = self.count % _BLOCK
            if at == 0 and (not self._blocks or len(self._blocks[-1]) == _BLOCK):
                self._blocks.append(np.zeros((0, self.width), dtype=np.uint8))
            block = self._blocks[-1]
            k = min(len(packed) - done, _BLOCK - at)
            if at + k > len(block):  # the last block grows by doubling, up to _BLOCK rows
                grown = np.zeros((min(_BLOCK, max(at + k, 2 * len(block), 64)), self.width), dtype=np.uint8)
                grown[:at] = block[:at]
                self._blocks[-1] = block = grown
            block[at : at + k] = packed[done : done + k]
            self.count += k
            done += k
        return first

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows of numbers ``rows`` (int array), as one ``(len(rows), width)`` array."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(self._blocks) == 1:
            return self._blocks[0][rows]
        out = np.empty((len(rows), self.width), dtype=np.uint8)
        block, at = np.divmod(rows, _BLOCK)
        for b in np.unique(block).tolist():
            where = block == b
            out[where] = self._blocks[b][at[where]]
        return out


#: set bits of each byte value
POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)
#: of a byte with one bit set, that bit's place in ``np.packbits`` order (highest bit: 0)
_BIT_AT = np.zeros(256, dtype=np.int64)
_BIT_AT[1 << np.arange(8)] = 7 - np.arange(8)
#: rows whose common subset is looked for at a time (a step of a search is estimated in chunks of this order)
_NEAR_ROWS = 1_024
#: anchors looked for in one batch at most (a batch of random subsets: each a look at all its rows)
_ANCHORS_A_BATCH = 32
#: consecutive rows whose common subset is the anchor tried
_WINDOW = 64
#: packed widths below which a mask is no bigger than its delta (12 bytes): every row is kept whole
_PLAIN_WIDTH = 16


class DeltaRows:
    """Packed masks as :class:`PackedRows` holds them (``append``, ``take``, ``count``,
    ``width``), most of them kept as a change of one source to another mask.

    Forward and backward selection estimate, each step, every subset that adds or removes
    one source of the current one: over N sources, about N subsets of ``ceil(N / 8)``
    bytes a step (30 steps over 10,000 sources: 300,000 subsets, 375 MB as packed bits).
    Each batch appended is compared with its *anchor*, the subset of the sources that most
    of its rows hold (for a step's candidates: the current subset); a row equal to it, or
    one source away, is kept as the anchor's number and that source (12 bytes), any other
    row as an anchor of its own. The anchors are packed masks (a step's candidates share
    one), so the bytes a subset costs no longer grow with N for such searches, and other
    searches (random subsets) pay 12 bytes a subset more. Below :data:`_PLAIN_WIDTH` bytes
    every row is kept whole, as :class:`PackedRows` does.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.count = 0
        self.anchors = PackedRows(width)  # the masks rows are kept as changes of (plain: the rows)
        self._plain = width < _PLAIN_WIDTH
        self._anchor = np.zeros(0, dtype=np.int64)  # per row: its anchor's number
        self._flip = np.zeros(0, dtype=np.int32)  # per row: the source it changes of its anchor, -1: none

    @property
    def nbytes(self) -> int:
        return int(self.anchors.nbytes + self._anchor.nbytes + self._flip.nbytes)

    def append(self, packed: np.ndarray) -> int:
        """Add the rows of ``packed`` (uint8, ``(k, width)``); returns the first one's number."""
        packed = np.asarray(packed, dtype=np.uint8).reshape(-1, self.width)
        first = self.count
        if self._plain:
            self.anchors.append(packed)
            self.count += len(packed)
            return first
        for start in range(0, len(packed), _NEAR_ROWS):
            self._append_near(packed[start : start + _NEAR_ROWS])
        return first

    def _append_near(self, packed: np.ndarray) -> None:
        """Append ``packed`` as changes of an anchor where they are one source away from it:
        the subset most of the first :data:`_WINDOW` rows hold (a step's current subset),
        for every row; then likewise for the rows left (a batch spanning steps: each step's
        own); rows near no anchor are kept whole."""
        k = len(packed)
        anchor = np.full(k, -1, dtype=np.int64)
        flip = np.full(k, -1, dtype=np.int32)
        far = np.arange(k)
        for _ in range(_ANCHORS_A_BATCH):
            if far.size < 2:
                break
            window = far[:_WINDOW]
            counts = np.unpackbits(packed[window], axis=1).sum(axis=0, dtype=np.int64)
            common = np.packbits(2 * counts > len(window))
            diff = packed[far] ^ common
            changed = POPCOUNT[diff].sum(axis=1, dtype=np.int64)
            near = changed <= 1
            if near.sum() < 2:  # not worth an anchor: the window's rows are kept whole
                far = far[len(window):]
                continue
            last = self.anchors.count - 1
            if last < 0 or not np.array_equal(self.anchors.take(np.array([last]))[0], common):
                last = self.anchors.append(common[None, :])
            anchor[far[near]] = last
            one = np.flatnonzero(changed == 1)
            byte = diff[one].argmax(axis=1)
            flip[far[one]] = 8 * byte + _BIT_AT[diff[one, byte]]
            far = far[~near]
        whole = np.flatnonzero(anchor < 0)
        if whole.size:
            anchor[whole] = np.arange(self.anchors.append(packed[whole]), self.anchors.count)
        self._add(anchor, flip)

    def _add(self, anchor: np.ndarray, flip: np.ndarray) -> None:
        stop = self.count + len(anchor)
        self._anchor = grown(self._anchor, stop, used=self.count)
        self._flip = grown(self._flip, stop, used=self.count)
        self._anchor[self.count : stop] = anchor
        self._flip[self.count : stop] = flip
        self.count = stop

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows of numbers ``rows`` (int array), as one ``(len(rows), width)`` array."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._plain:
            return self.anchors.take(rows)
        out = self.anchors.take(self._anchor[rows])
        if len(rows) == 1:  # (a trace's entry read: scalar steps, a tenth of the time of the arrays')
            at = int(self._flip[rows[0]])
            if at >= 0:
                out[0, at >> 3] ^= 128 >> (at & 7)
            return out
        return flipped(out, self._flip[rows])

    def export(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Rows ``rows`` as saved in a file: ``anchors`` (the masks they need, packed),
        ``anchor`` (each row's, a row of ``anchors``) and ``flip`` (the source each changes,
        -1: none). :meth:`extend` reads them back."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._plain:
            return {"anchors": self.take(rows), "anchor": np.arange(len(rows), dtype=np.int64),
                    "flip": np.full(len(rows), -1, dtype=np.int32)}
        used, local = np.unique(self._anchor[rows], return_inverse=True)
        return {"anchors": self.anchors.take(used), "anchor": local.reshape(-1).astype(np.int64),
                "flip": self._flip[rows].copy()}

    def extend(self, anchors: np.ndarray, anchor: np.ndarray, flip: np.ndarray) -> int:
        """Append rows saved by :meth:`export` (checked: ``ValueError`` where they do not fit);
        returns the first one's number."""
        anchor = np.asarray(anchor, dtype=np.int64)
        flip = np.asarray(flip, dtype=np.int64)
        if anchors.ndim != 2 or anchors.shape[1] != self.width or anchor.shape != flip.shape or anchor.ndim != 1:
            raise ValueError(f"anchors of shape {anchors.shape} for {anchor.shape} rows")
        if len(anchor) and (anchor.min() < 0 or anchor.max() >= len(anchors)
                            or flip.min() < -1 or flip.max() >= 8 * self.width):
            raise ValueError("row anchors or changed sources out of range")
        first = self.count
        if self._plain:
            whole = flipped(np.asarray(anchors, dtype=np.uint8)[anchor], flip)
            self.anchors.append(whole)
            self.count += len(whole)
            return first
        offset = self.anchors.append(np.asarray(anchors, dtype=np.uint8))
        self._add(anchor + offset, flip.astype(np.int32))
        return first


def flipped(masks: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """``masks`` (packed) with source ``flip`` of each row changed (-1: none)."""
    one = np.flatnonzero(flip >= 0)
    at = flip[one]
    masks[one, at // 8] ^= (np.uint8(128) >> (at % 8).astype(np.uint8))
    return masks
