"""Tests of the persistent subset results store and the cached estimator."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from estfixtures import random_masks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subsetctl.errors import UserError
from subsetctl.estimate.base import EstimateBatch, FeatureSet, SubsetEstimator
from subsetctl.estimate.results import CachedEstimator, SubsetResultsStore, stored_among, stored_count
from subsetctl.estimate.solvers import FastEstimator


class CountingEstimator(SubsetEstimator):
    """Wraps an estimator and records every mask it is asked to solve."""

    def __init__(self, inner: SubsetEstimator) -> None:
        self.inner = inner
        self.calls: list[np.ndarray] = []

    @property
    def sources(self) -> list[str]:
        return self.inner.sources

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        self.calls.append(np.array(masks))
        return self.inner.estimate(masks)

    @property
    def solved(self) -> int:
        return sum(len(c) for c in self.calls)


@pytest.fixture
def fast(small_features: FeatureSet) -> FastEstimator:
    return FastEstimator(small_features)


def _distinct_masks(n: int, n_sources: int, seed: int) -> np.ndarray:
    masks = np.unique(random_masks(4 * n, n_sources, seed=seed), axis=0)
    return masks[np.random.default_rng(seed).permutation(len(masks))[:n]]


def test_resume_computes_only_the_rest(tmp_path: Path, fast: FastEstimator) -> None:
    masks = _distinct_masks(30, len(fast.sources), seed=1)
    key = fast.fingerprint()
    first = CountingEstimator(fast)
    cached = CachedEstimator(
        first, SubsetResultsStore(tmp_path, fast.sources, key), {"backend": "sequential"}, chunk_size=4
    )
    cached.estimate(masks[:15])
    assert (cached.computed, cached.reused) == (15, 0)

    # a new process: reopen the store from disk
    second = CountingEstimator(fast)
    store = SubsetResultsStore(tmp_path, fast.sources, key)
    assert store.reset_reason is None and len(store) == 15
    reopened = CachedEstimator(second, store, {"backend": "sequential"}, chunk_size=4)
    got = reopened.estimate(masks)
    assert (reopened.computed, reopened.reused) == (15, 15)
    assert second.solved == 15
    solved = np.concatenate(second.calls)
    assert {m.tobytes() for m in solved} == {m.tobytes() for m in masks[15:]}
    np.testing.assert_allclose(got.loss, fast.estimate(masks).loss, rtol=1e-12)
    assert not list(tmp_path.glob("*.tmp"))


def test_duplicates_within_a_request_are_solved_once(tmp_path: Path, fast: FastEstimator) -> None:
    base = _distinct_masks(5, len(fast.sources), seed=2)
    masks = base[[0, 1, 0, 2, 1, 3, 4, 4]]
    inner = CountingEstimator(fast)
    cached = CachedEstimator(
        inner, SubsetResultsStore(tmp_path, fast.sources, "k"), {"backend": "sequential"}
    )
    progress: list[tuple[int, int]] = []
    cached.progress = lambda d, t: progress.append((d, t))
    got = cached.estimate(masks)
    assert inner.solved == 5 and cached.computed == 5 and cached.reused == 3
    np.testing.assert_allclose(got.loss, fast.estimate(masks).loss, rtol=1e-12)
    assert progress[-1] == (8, 8)
    again = cached.estimate(masks[::-1])
    np.testing.assert_array_equal(again.loss, got.loss[::-1])
    assert inner.solved == 5 and cached.reused == 11


def test_killed_run_keeps_finished_chunks(tmp_path: Path, fast: FastEstimator) -> None:
    class Dies(CountingEstimator):
        def estimate(self, masks: np.ndarray) -> EstimateBatch:
            if self.calls:
                raise KeyboardInterrupt
            return super().estimate(masks)

    masks = _distinct_masks(12, len(fast.sources), seed=3)
    store = SubsetResultsStore(tmp_path, fast.sources, "k")
    cached = CachedEstimator(Dies(fast), store, {"backend": "sequential", "batch_size": 5}, chunk_size=5)
    with pytest.raises(KeyboardInterrupt):
        cached.estimate(masks)
    reopened = SubsetResultsStore(tmp_path, fast.sources, "k")
    found, got = reopened.lookup(masks)
    assert found.tolist() == [True] * 5 + [False] * 7
    np.testing.assert_allclose(got.loss[:5], fast.estimate(masks[:5]).loss, rtol=1e-12)
    assert np.isnan(got.loss[5:]).all()
    assert {m.tobytes() for m in reopened.pending()} == {m.tobytes() for m in masks[5:]}


def test_key_change_resets_the_store(tmp_path: Path, fast: FastEstimator) -> None:
    masks = _distinct_masks(6, len(fast.sources), seed=4)
    store = SubsetResultsStore(tmp_path, fast.sources, "key-a")
    store.add(masks, fast.estimate(masks))
    assert SubsetResultsStore(tmp_path, fast.sources, "key-a").lookup(masks)[0].all()
    other = SubsetResultsStore(tmp_path, fast.sources, "key-b")
    assert other.reset_reason is not None and "key" in other.reset_reason
    assert len(other) == 0 and not other.lookup(masks)[0].any()
    # the old key's results are gone for good
    assert len(SubsetResultsStore(tmp_path, fast.sources, "key-a")) == 0


def test_a_store_under_an_earlier_spelling_of_its_key_is_kept_and_takes_the_new_key(
    tmp_path: Path, fast: FastEstimator
) -> None:
    masks = _distinct_masks(6, len(fast.sources), seed=4)
    SubsetResultsStore(tmp_path, fast.sources, "old").add(masks, fast.estimate(masks))
    kept = SubsetResultsStore(tmp_path, fast.sources, "new", earlier_keys=("old",))
    assert kept.reset_reason is None and kept.lookup(masks)[0].all()
    assert SubsetResultsStore(tmp_path, fast.sources, "new").reset_reason is None  # rewritten under "new"
    assert SubsetResultsStore(tmp_path, fast.sources, "other", earlier_keys=("old",)).reset_reason is not None


def test_source_change_resets_and_mismatch_is_refused(tmp_path: Path, fast: FastEstimator) -> None:
    masks = _distinct_masks(3, len(fast.sources), seed=5)
    SubsetResultsStore(tmp_path, fast.sources, "k").add(masks, fast.estimate(masks))
    renamed = [s + "x" for s in fast.sources]
    store = SubsetResultsStore(tmp_path, renamed, "k")
    assert store.reset_reason is not None and len(store) == 0
    with pytest.raises(UserError, match="sources"):
        CachedEstimator(fast, store)


def test_corrupt_data_file_resets(tmp_path: Path, fast: FastEstimator) -> None:
    masks = _distinct_masks(3, len(fast.sources), seed=6)
    SubsetResultsStore(tmp_path, fast.sources, "k").add(masks, fast.estimate(masks))
    (tmp_path / "subsets.npz").write_bytes(b"not a zip")
    store = SubsetResultsStore(tmp_path, fast.sources, "k")
    assert store.reset_reason is not None and len(store) == 0


@pytest.mark.parametrize("damage", ["truncate", "flip", "rows"])
def test_damaged_zip_or_inconsistent_arrays_reset_the_store(tmp_path: Path, fast: FastEstimator, damage: str) -> None:
    """np.load raises zipfile.BadZipFile (not ValueError) for a truncated or bit-flipped
    file; the store lives in the cache, without checksums, so it must recover by itself."""
    masks = _distinct_masks(4, len(fast.sources), seed=7)
    SubsetResultsStore(tmp_path, fast.sources, "k").add(masks, fast.estimate(masks))
    path = tmp_path / "subsets.npz"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flip":
        with np.load(path) as arrays:
            arrays_bytes = arrays["loss"].tobytes()
        at = bytes(data).index(arrays_bytes)  # a byte inside the stored loss array: a CRC error on reading
        data[at] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        with np.load(path) as arrays:
            kept = {k: arrays[k] for k in arrays.files}
        kept["loss"] = kept["loss"][:-1]
        np.savez(path, **kept)
    store = SubsetResultsStore(tmp_path, fast.sources, "k")
    assert store.reset_reason is not None and "unreadable" in store.reset_reason and len(store) == 0


def test_results_round_trip_metrics(tmp_path: Path) -> None:
    store = SubsetResultsStore(tmp_path, ["a", "b", "c"], "k")
    masks = np.array([[1, 0, 1], [0, 0, 0]], dtype=bool)
    batch = EstimateBatch(
        loss=np.array([0.5, np.nan]),
        w_norm=np.array([1.0, 2.0]),
        iterations=np.array([3, 50]),
        converged=np.array([True, False]),
    )
    store.add(masks, batch)
    found, got = SubsetResultsStore(tmp_path, ["a", "b", "c"], "k").lookup(masks[::-1])
    assert found.all()
    assert got.iterations.tolist() == [50, 3] and got.converged.tolist() == [False, True]
    assert np.isnan(got.loss[0]) and got.loss[1] == 0.5
    all_masks, all_batch = store.results()
    np.testing.assert_array_equal(all_masks, masks)
    assert all_batch.w_norm.tolist() == [1.0, 2.0]
    store.reserve(np.array([[1, 1, 1]], dtype=bool))  # reserved, not completed: in neither
    assert store.estimates().iterations.tolist() == [3, 50] and len(store.results()[0]) == 2


@pytest.mark.parametrize("damage", ["meta not an object", "meta a folder", "data a folder", "store a file"])
def test_a_store_of_another_shape_resets(tmp_path: Path, fast: FastEstimator, damage: str) -> None:
    """A store.json that is JSON but not an object stopped the search with an internal
    error (AttributeError); a file where the store's folder belongs, or a folder where one
    of its files belongs, with an error asking to move it aside: the store is a cache."""
    masks = _distinct_masks(3, len(fast.sources), seed=8)
    folder = tmp_path / "store"
    SubsetResultsStore(folder, fast.sources, "k").add(masks, fast.estimate(masks))
    if damage == "store a file":
        shutil.rmtree(folder)
        folder.write_text("x")
    else:
        name = "subsets.npz" if damage == "data a folder" else "store.json"
        (folder / name).unlink()
        if damage == "meta not an object":
            (folder / name).write_text("[]")
        else:
            (folder / name).mkdir()
    store = SubsetResultsStore(folder, fast.sources, "k")
    assert store.reset_reason is not None and len(store) == 0
    store.add(masks, fast.estimate(masks))
    assert len(SubsetResultsStore(folder, fast.sources, "k")) == 3


def _small_batch(m: int, offset: float = 0.0) -> EstimateBatch:
    return EstimateBatch(loss=np.arange(m) + offset, w_norm=np.ones(m), iterations=np.ones(m, dtype=np.int64),
                         converged=np.ones(m, dtype=bool))


def test_saving_chunk_by_chunk_rewrites_the_main_file_a_logarithmic_number_of_times(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Format 1 rewrote subsets.npz whole after every chunk: a search saving every 256
    estimates wrote its store once per chunk (quadratic: 100 steps of a backward search
    over 1,000 sources took 57.6 s instead of 6.0 s). Each save is now one segment file
    of the rows it changed; the main file is rewritten when the segments hold as many."""
    from subsetctl.estimate import results

    written: list[tuple[str, int]] = []
    real_write = results.atomic_write

    def counting(path: Path, write, mode: str = "w") -> None:
        real_write(path, write, mode)
        written.append((path.name, path.stat().st_size))

    monkeypatch.setattr(results, "atomic_write", counting)
    masks = _distinct_masks(512, 12, seed=11)
    store = SubsetResultsStore(tmp_path, [f"s{i}" for i in range(12)], "k")
    for start in range(0, 512, 8):
        chunk = masks[start:start + 8]
        store.reserve(chunk)
        store.add(chunk, _small_batch(8, offset=start))
    main_writes = [size for name, size in written if name == "subsets.npz"]
    assert len(main_writes) <= 12, len(main_writes)  # 128 saves
    reopened = SubsetResultsStore(tmp_path, store.sources, "k")
    found, got = reopened.lookup(masks)
    assert found.all() and got.loss.tolist() == list(range(512))
    assert len(list(tmp_path.glob("subsets.*.npz"))) < 128


def test_a_segment_left_by_a_crash_after_the_main_file_was_rewritten_is_not_applied_again(
        tmp_path: Path) -> None:
    """The main file records the last segment it holds: a crash between its rewrite and
    the removal of the segments leaves segments that must not undo newer values (here a
    reservation, not completed, applied over the completed result)."""
    sources = ["a", "b", "c", "d"]
    masks = _distinct_masks(6, 4, seed=12)
    store = SubsetResultsStore(tmp_path, sources, "k")
    store.add(masks[:4], _small_batch(4))  # merged at once (the main file was empty)
    store.reserve(masks[4:])  # a segment: 2 rows against 4
    segments = sorted(tmp_path.glob("subsets.*.npz"))
    assert len(segments) == 1
    stale = segments[0].read_bytes()
    store.add(masks[4:], _small_batch(2, offset=10))  # 4 rows of segments against 2 more: merged
    assert not list(tmp_path.glob("subsets.*.npz"))
    segments[0].write_bytes(stale)  # as if the crash came before its removal
    reopened = SubsetResultsStore(tmp_path, sources, "k")
    found, got = reopened.lookup(masks)
    assert reopened.reset_reason is None and found.all() and got.loss.tolist() == [0, 1, 2, 3, 10, 11]
    assert not segments[0].exists()


def test_an_unreadable_segment_resets_the_store(tmp_path: Path) -> None:
    sources = ["a", "b", "c", "d"]
    masks = _distinct_masks(6, 4, seed=13)
    store = SubsetResultsStore(tmp_path, sources, "k")
    store.add(masks[:4], _small_batch(4))
    store.add(masks[4:5], _small_batch(1))
    (segment,) = tmp_path.glob("subsets.*.npz")
    segment.write_bytes(segment.read_bytes()[:40])
    reopened = SubsetResultsStore(tmp_path, sources, "k")
    assert reopened.reset_reason is not None and "segment" in reopened.reset_reason and len(reopened) == 0
    assert not list(tmp_path.glob("subsets*.npz"))


def test_a_format_1_store_is_read_kept_and_written_in_the_current_format(tmp_path: Path) -> None:
    """A store an earlier subsetctl wrote (boolean masks, one file) keeps its results."""
    import json

    from subsetctl.estimate import results

    masks = np.array([[1, 0, 1], [0, 1, 1]], dtype=bool)
    (tmp_path / "store.json").write_text(json.dumps({"format": 1, "key": "k", "sources": ["a", "b", "c"]}))
    np.savez(tmp_path / "subsets.npz", masks=masks, loss=np.array([0.5, 0.7]), w_norm=np.ones(2),
             iterations=np.ones(2, dtype=np.int64), converged=np.ones(2, dtype=bool),
             completed=np.ones(2, dtype=bool))
    store = SubsetResultsStore(tmp_path, ["a", "b", "c"], "k")
    assert store.reset_reason is None and len(store) == 2
    assert json.loads((tmp_path / "store.json").read_text())["format"] == results.FORMAT_VERSION
    store.add(np.array([[1, 1, 1]], dtype=bool), _small_batch(1, offset=0.9))
    found, got = SubsetResultsStore(tmp_path, ["a", "b", "c"], "k").lookup(np.array([[0, 1, 1], [1, 1, 1]], bool))
    assert found.all() and got.loss.tolist() == [0.7, 0.9]


def test_segments_are_merged_before_there_are_too_many(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from subsetctl.estimate import results

    monkeypatch.setattr(results, "MAX_SEGMENTS", 4)
    masks = _distinct_masks(200, 10, seed=14)
    store = SubsetResultsStore(tmp_path, [f"s{i}" for i in range(10)], "k")
    store.add(masks[:100], _small_batch(100))
    for i in range(100, 120):
        store.add(masks[i:i + 1], _small_batch(1, offset=i))
        assert len(list(tmp_path.glob("subsets.*.npz"))) < 4
    assert SubsetResultsStore(tmp_path, store.sources, "k").lookup(masks[:120])[1].loss.tolist() == list(range(120))


def _batch_of(losses: np.ndarray) -> EstimateBatch:
    m = len(losses)
    return EstimateBatch(np.asarray(losses, dtype=float), np.zeros(m), np.zeros(m, dtype=np.int64), np.ones(m, dtype=bool))


@pytest.mark.parametrize("hashing", ["real", "all_equal", "three_values"])
def test_the_index_finds_each_masks_own_row_when_hashes_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashing: str
) -> None:
    """The index keeps a hash per row, not the mask: masks sharing a hash (forced here: one
    hash for all, or three) are told apart by their rows, through growth and reopening."""
    from subsetctl.estimate import rowindex

    real = rowindex.hash_rows
    if hashing == "all_equal":
        monkeypatch.setattr(rowindex, "hash_rows", lambda packed: np.zeros(len(packed), dtype=np.uint64))
    elif hashing == "three_values":
        monkeypatch.setattr(rowindex, "hash_rows", lambda packed: real(packed) % np.uint64(3))
    rng = np.random.default_rng(5)
    masks = np.unique(rng.random((300, 13)) < 0.5, axis=0)
    rng.shuffle(masks)
    losses = np.arange(len(masks), dtype=float)
    sources = [f"s{i}" for i in range(13)]
    store = SubsetResultsStore(tmp_path / "store", sources, "k")
    store.reserve(masks[:40])  # rows 0..39, not completed
    # chunks repeating masks within and across them: one row each
    for start in range(0, len(masks), 64):
        chunk = np.concatenate([masks[start : start + 64], masks[start : start + 3]])
        rows = store.add(chunk, _batch_of(np.concatenate([losses[start : start + 64], losses[start : start + 3]])))
        np.testing.assert_array_equal(rows, np.arange(start, start + len(chunk) - 3).tolist()
                                      + list(range(start, start + 3)))
    absent = ~masks[:5] & (rng.random((5, 13)) < 0.5)  # maybe stored, maybe not
    absent = absent[[not (masks == a).all(axis=1).any() for a in absent]]
    for opened in (store, SubsetResultsStore(tmp_path / "store", sources, "k")):
        order = rng.permutation(len(masks))
        found, batch = opened.lookup(masks[order])
        assert found.all()
        np.testing.assert_array_equal(batch.loss, losses[order])
        np.testing.assert_array_equal(opened.rows_of(masks[order]), order)
        found, batch = opened.lookup(absent)
        assert not found.any() and np.isnan(batch.loss).all()
        assert len(opened) == len(masks)


def test_the_index_returns_the_last_of_equal_stored_rows_as_the_dict_did(tmp_path: Path) -> None:
    """A store file holding one mask twice (not written by a store: an edit) answers with
    its last row, as the index keyed by the mask's bytes did."""
    sources = ["a", "b", "c"]
    store = SubsetResultsStore(tmp_path / "store", sources, "k")
    masks = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=bool)
    store.add(masks, _batch_of(np.array([1.0, 2.0, 3.0])))
    path = tmp_path / "store" / "subsets.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["anchors"][arrays["anchor"][2]] = arrays["anchors"][arrays["anchor"][0]]  # (3 sources: kept whole)
    assert (arrays["flip"] == -1).all()
    np.savez(path, **arrays)
    found, batch = SubsetResultsStore(tmp_path / "store", sources, "k").lookup(masks[:1])
    assert found.all() and batch.loss.tolist() == [3.0]


def test_distinct_rows_with_colliding_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows sharing a hash are still told apart by their bytes; first appearances in order."""
    from subsetctl.estimate import rowindex

    packed = np.array([[3, 1], [2, 0], [3, 1], [7, 7], [2, 0]], dtype=np.uint8)
    for hashes in (None, np.zeros(5, dtype=np.uint64), np.array([1, 0, 1, 0, 0], dtype=np.uint64)):
        firsts, inverse = rowindex.distinct_rows(packed, hashes)
        assert firsts.tolist() == [0, 1, 3] and inverse.tolist() == [0, 1, 0, 2, 1]


def test_reused_rows_are_the_stored_rows_an_earlier_run_computed(tmp_path: Path, fast: FastEstimator) -> None:
    """reused_rows: the store's rows answered without solving that this wrapper did not
    compute itself (asked again later, its own rows are not counted)."""
    masks = random_masks(40, len(fast.sources), seed=3)
    masks = masks[np.sort(np.unique(masks, axis=0, return_index=True)[1])][:12]
    assert len(masks) == 12
    store = SubsetResultsStore(tmp_path / "store", fast.sources, "k")
    first = CachedEstimator(fast, store, chunk_size=4)
    first.estimate(masks[:5])
    first.estimate(masks[:8])  # its own 5 again, 3 new
    assert first.reused_rows == set() and first.computed == 8
    again = CachedEstimator(fast, SubsetResultsStore(tmp_path / "store", fast.sources, "k"), chunk_size=4)
    again.estimate(masks[6:])  # 2 stored by the first, the rest new
    again.estimate(masks[4:])  # 4 and 5 stored by the first; its own again
    assert again.reused_rows == {4, 5, 6, 7} and again.computed == len(masks) - 8


def test_a_wrapped_store_add_that_returns_nothing_still_works(
    tmp_path: Path, fast: FastEstimator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin may wrap SubsetResultsStore.add as it was (returning None), as the
    reliability tests' relkill does: the cached estimator does not rely on its return value."""
    original = SubsetResultsStore.add
    saved: list[int] = []

    def add(self: SubsetResultsStore, masks: np.ndarray, batch: EstimateBatch) -> None:
        original(self, masks, batch)
        saved.append(len(masks))

    monkeypatch.setattr(SubsetResultsStore, "add", add)
    masks = random_masks(9, len(fast.sources), seed=4)
    cached = CachedEstimator(fast, SubsetResultsStore(tmp_path / "store", fast.sources, "k"), chunk_size=4)
    np.testing.assert_allclose(cached.estimate(masks).loss, fast.estimate(masks).loss)
    assert sum(saved) == cached.computed and cached.reused_rows == set()


def _forward_steps(n: int, steps: int) -> np.ndarray:
    """The masks forward selection estimates over ``n`` sources in ``steps`` steps (each
    step adds the first source left): the start, then the current subset plus each other."""
    current, out = np.zeros(n, dtype=bool), [np.zeros((1, n), dtype=bool)]
    for _ in range(steps):
        left = np.flatnonzero(~current)
        masks = np.repeat(current[None, :], len(left), axis=0)
        masks[np.arange(len(left)), left] = True
        out.append(masks)
        current[left[0]] = True
    return np.concatenate(out)


def test_a_format_2_store_is_read_and_rewritten_with_its_masks_as_changes(tmp_path: Path) -> None:
    """A store the previous subsetctl wrote (each mask whole, packed, in the main file and a
    segment) keeps every result; its next save rewrites it in the current format, the
    candidates of a step kept as changes of one source (a fraction of the bytes)."""
    import json

    from subsetctl.estimate import results

    n = 400
    sources = [f"s{i}" for i in range(n)]
    masks = _forward_steps(n, 3)  # 1 + 400 + 399 + 398
    packed, losses = np.packbits(masks, axis=1), np.arange(len(masks), dtype=float)
    (tmp_path / "store.json").write_text(json.dumps({"format": 2, "key": "k", "sources": sources,
                                                     "versions": [], "threads": []}))

    def columns(rows: slice) -> dict[str, np.ndarray]:
        m = len(losses[rows])
        return {"packed_masks": packed[rows], "loss": losses[rows], "w_norm": np.ones(m),
                "iterations": np.ones(m, dtype=np.int64), "converged": np.ones(m, dtype=bool),
                "completed": np.ones(m, dtype=bool), "computed_with": np.full(m, -1, dtype=np.int64)}

    np.savez(tmp_path / "subsets.npz", **columns(slice(0, 800)), merged_through=np.int64(1))
    np.savez(tmp_path / "subsets.2.npz", **columns(slice(800, None)), rows=np.arange(800, len(masks)))
    old_bytes = sum(p.stat().st_size for p in tmp_path.glob("subsets*.npz"))
    store = SubsetResultsStore(tmp_path, sources, "k")
    assert store.reset_reason is None and len(store) == len(masks)
    found, got = store.lookup(masks)
    assert found.all() and got.loss.tolist() == losses.tolist()
    assert json.loads((tmp_path / "store.json").read_text())["format"] == results.FORMAT_VERSION
    store.add(np.ones((1, n), dtype=bool), _small_batch(1, offset=-1.0))  # the next save: the whole file rewritten
    assert [p.name for p in tmp_path.glob("subsets*.npz")] == ["subsets.npz"]
    with np.load(tmp_path / "subsets.npz") as data:
        assert "packed_masks" not in data.files and len(data["anchors"]) < 10
    assert (tmp_path / "subsets.npz").stat().st_size < 0.6 * old_bytes  # (50 bytes a mask, 12 a change; 34 of metrics)
    reopened = SubsetResultsStore(tmp_path, sources, "k")
    assert reopened.reset_reason is None and len(reopened) == len(masks) + 1
    found, got = reopened.lookup(np.concatenate([masks, np.ones((1, n), dtype=bool)]))
    assert found.all() and got.loss.tolist() == [*losses.tolist(), -1.0]
    assert np.array_equal(reopened.results()[0], np.concatenate([masks, np.ones((1, n), dtype=bool)]))


@pytest.mark.parametrize("n", [5, 130, 1001])
def test_delta_rows_give_back_every_mask_appended_and_exported(n: int) -> None:
    """Forward and backward steps (one anchor each, in batches that span two steps), random
    subsets (each kept whole) and repeats read back as appended, before and after an export
    of some rows is read into other rows; a bad export raises ValueError."""
    from subsetctl.estimate.rowindex import DeltaRows

    forward = np.packbits(_forward_steps(n, 3), axis=1)
    backward = np.packbits(~_forward_steps(n, 2), axis=1)
    rand = np.packbits(np.random.default_rng(n).random((40, n)) < 0.5, axis=1)
    packed = np.concatenate([forward, backward[:7], rand, backward[7:], forward[:3]])
    rows = DeltaRows((n + 7) // 8)
    for start in range(0, len(packed), 700):  # (batches across steps and kinds)
        assert rows.append(packed[start : start + 700]) == start
    assert rows.count == len(packed) and np.array_equal(rows.take(np.arange(len(packed))), packed)
    if n > 128:  # (below, each mask is kept whole: 12 bytes a change are no less)
        assert rows.anchors.count < 40 + 10  # the random subsets, and one a step or so
    if n > 1000:
        assert rows.nbytes < packed.nbytes / 4
    some = np.random.default_rng(1).permutation(len(packed))[: len(packed) // 3]
    other = DeltaRows(rows.width)
    other.append(rand[:2])
    assert other.extend(**rows.export(some)) == 2
    assert np.array_equal(other.take(np.arange(2, other.count)), packed[some])
    bad = rows.export(some[:3])
    bad["flip"][0] = 8 * rows.width
    with pytest.raises(ValueError):
        DeltaRows(rows.width).extend(**bad)


_STEPS = st.lists(st.tuples(st.sampled_from(["near", "far", "mixed", "again", "reserve", "reopen"]),
                            st.integers(1, 60), st.integers(0, 2**31)), min_size=1, max_size=10)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(n=st.sampled_from([7, 120, 127, 128, 129, 136]), steps=_STEPS, format_2=st.booleans(), seed=st.integers(0, 99))
def test_a_store_reads_back_every_mask_and_result_whatever_the_order_of_its_saves(
        tmp_path_factory: pytest.TempPathFactory, n: int, steps: list[tuple[str, int, int]], format_2: bool,
        seed: int) -> None:
    """Random batches of subsets one source away from a step's current one, random ones, a
    mix of both (two anchors and far rows in one batch), repeats, reservations and reopenings
    (segments, merges), from an empty store or a format-2 one, at packed widths either side of
    the 16 bytes where masks start being kept as changes: every completed mask finds its own
    result, and ``results`` and ``pending`` give back exactly the masks added and reserved."""
    import json

    path, rng = tmp_path_factory.mktemp("store"), np.random.default_rng(seed)
    sources = [f"s{i}" for i in range(n)]
    model: dict[bytes, float] = {}  # packed mask -> its latest loss
    reserved: set[bytes] = set()
    if format_2:
        old = np.unique(np.packbits(rng.random((int(rng.integers(1, 20)), n)) < 0.5, axis=1), axis=0)
        m = len(old)
        (path / "store.json").write_text(json.dumps({"format": 2, "key": "k", "sources": sources}))
        np.savez(path / "subsets.npz", packed_masks=old, loss=np.arange(m, dtype=float), w_norm=np.ones(m),
                 iterations=np.ones(m, dtype=np.int64), converged=np.ones(m, dtype=bool),
                 completed=np.ones(m, dtype=bool))
        model.update((row.tobytes(), float(i)) for i, row in enumerate(old))
    store = SubsetResultsStore(path, sources, "k")
    current, offset = rng.random(n) < 0.5, 0.0
    for kind, k, step_seed in steps:
        r = np.random.default_rng(step_seed)
        if kind == "reopen":
            store = SubsetResultsStore(path, sources, "k")
            assert store.reset_reason is None
            continue
        near = np.repeat(current[None, :], k, axis=0)
        near[np.arange(k), r.integers(0, n, k)] ^= True
        if kind == "near":
            masks = near
            current = near[r.integers(0, k)].copy()
        elif kind == "far":
            masks = r.random((k, n)) < r.random()
        elif kind == "mixed":
            other = np.repeat(~current[None, :], k, axis=0)
            other[np.arange(k), r.integers(0, n, k)] ^= True
            masks = np.concatenate([near, r.random((k, n)) < 0.5, other])[r.permutation(3 * k)]
        else:  # masks stored already (or the current one), asked again
            known = [np.frombuffer(key, dtype=np.uint8) for key in model] or [np.packbits(current)]
            masks = np.unpackbits(np.stack([known[i] for i in r.integers(0, len(known), k)]), axis=1,
                                  count=n).astype(bool)
        if kind == "reserve":
            store.reserve(masks)
            reserved.update(row.tobytes() for row in np.packbits(masks, axis=1))
            continue
        store.add(masks, _small_batch(len(masks), offset))
        model.update((row.tobytes(), offset + i) for i, row in enumerate(np.packbits(masks, axis=1)))
        offset += 1000.0
    for reading in (store, SubsetResultsStore(path, sources, "k")):
        assert reading.reset_reason is None and len(reading) == len(model)
        masks, batch = reading.results()
        assert dict(zip((row.tobytes() for row in np.packbits(masks, axis=1)), batch.loss.tolist())) == model
        assert {row.tobytes() for row in np.packbits(reading.pending(), axis=1)} == reserved - model.keys()
        if model:
            asked = np.unpackbits(np.stack([np.frombuffer(key, dtype=np.uint8) for key in model]), axis=1,
                                  count=n).astype(bool)
            found, got = reading.lookup(asked)
            assert found.all() and got.loss.tolist() == list(model.values())


def test_reopening_keeps_one_copy_of_a_mask_a_later_segment_saves_again(tmp_path: Path) -> None:
    """A segment that saves rows the store holds already (the estimates of reserved subsets)
    holds their masks again; reopened, the store appended every mask of such a segment, so
    that random subsets (each kept whole) were held twice until the next merge."""
    n = 200
    sources = [f"s{i}" for i in range(n)]
    store = SubsetResultsStore(tmp_path, sources, "k")
    store.add(_distinct_masks(200, n, seed=3), _small_batch(200))  # the main file
    later = _distinct_masks(50, n, seed=4)
    store.reserve(later)  # a segment: 50 rows
    store.add(later, _small_batch(50, offset=0.5))  # another: the same 50 rows, estimated
    assert len(list(tmp_path.glob("subsets.*.npz"))) == 2
    reopened = SubsetResultsStore(tmp_path, sources, "k")
    found, got = reopened.lookup(later)
    assert found.all() and got.loss.tolist() == (np.arange(50) + 0.5).tolist()
    assert reopened._rows.masks.anchors.count == 250  # (each mask once: 300 before)


def test_stored_count_reads_the_completed_rows_of_the_main_file_and_segments_without_opening(
        tmp_path: Path, fast: FastEstimator) -> None:
    """What `plan` says of the search's store ("8 of 8 stored"): the completed rows, those in
    segment files too and reserved ones not, for the same key and sources alone, changing
    nothing on disk."""
    masks = _distinct_masks(30, len(fast.sources), seed=3)
    key = fast.fingerprint()
    assert stored_count(tmp_path / "none", fast.sources, [key]) == 0
    store = SubsetResultsStore(tmp_path, fast.sources, key)
    store.add(masks[:10], _small_batch(10))  # merged at once (the main file was empty)
    store.add(masks[10:13], _small_batch(3))  # a segment file beside the main one
    store.reserve(masks[13:16])  # another: registered, not estimated
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert len(files) > 2  # (segments beside the main file)
    assert stored_count(tmp_path, fast.sources, [key]) == len(store) == 13
    assert stored_count(tmp_path, fast.sources, ["another", key]) == 13  # an earlier spelling of the key
    assert stored_count(tmp_path, fast.sources, ["another"]) == 0  # the search resets it
    assert stored_count(tmp_path, fast.sources[::-1], [key]) == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
    (tmp_path / "subsets.npz").write_bytes(b"garbled")
    assert stored_count(tmp_path, fast.sources, [key]) is None  # unreadable: plan says no count


def test_stored_count_reads_again_under_the_lock_when_a_merge_removes_a_file_meanwhile(
        tmp_path: Path, fast: FastEstimator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search sharing the store merges its segments while `plan` counts (it removes the
    segment the count was about to read): the count is read once more under the store's
    lock, not given up ("no count")."""
    from subsetctl.estimate import results
    from subsetctl.file_locks import file_lock_held

    masks = _distinct_masks(20, len(fast.sources), seed=5)
    key = fast.fingerprint()
    store = SubsetResultsStore(tmp_path, fast.sources, key)
    store.add(masks[:10], _small_batch(10))
    store.add(masks[10:13], _small_batch(3))
    files_now = results._store_files
    reads: list[bool] = []

    def merged_meanwhile(*args: object):
        reads.append(file_lock_held(tmp_path / results.LOCK_FILE))
        if len(reads) in (1, 3):
            raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "subsets.1.npz"))
        yield from files_now(*args)

    monkeypatch.setattr(results, "_store_files", merged_meanwhile)
    assert stored_count(tmp_path, fast.sources, [key]) == 13
    packed = np.packbits(masks[:12], axis=1)
    assert stored_among(tmp_path, fast.sources, [key], packed) == 12
    assert reads == [False, True, False, True]  # the second try of each under the lock


@pytest.mark.parametrize("n_sources", [5, 200])  # masks kept whole; kept as one source changed of an anchor
def test_stored_among_counts_the_completed_rows_holding_given_subsets(tmp_path: Path, n_sources: int) -> None:
    """What `plan` says of the subsets a greedy search asks for in any case ("2 of the 7 it
    asks for in any case"): those of the given subsets the store holds completed, in the
    main file or a segment, a reserved one not, read without opening the store."""
    from subsetctl.search.greedy import Backward, Forward, GreedyParams

    sources = [f"s{i}" for i in range(n_sources)]
    known, _ = Forward.known_subsets(GreedyParams(), n_sources)  # the empty subset, then each source alone
    unpacked = np.unpackbits(known, axis=1, count=n_sources).astype(bool)
    assert (unpacked == np.vstack([np.zeros((1, n_sources), bool), np.eye(n_sources, dtype=bool)])).all()
    backward = np.unpackbits(Backward.known_subsets(GreedyParams(), n_sources)[0], axis=1, count=n_sources)
    assert (backward.astype(bool) == ~unpacked).all()  # all sources, then all but one
    assert stored_among(tmp_path / "none", sources, ["k"], known) == 0
    singles = np.eye(n_sources, dtype=bool)
    store = SubsetResultsStore(tmp_path, sources, "k")
    pairs = singles[:4] | singles[1:5]
    store.add(np.vstack([np.zeros((1, n_sources), bool), pairs]), _small_batch(5))  # the main file: one of them
    store.add(singles[:3], _small_batch(3))  # a segment: three more (a step's candidates: one source changed)
    store.reserve(singles[3:5])  # registered, not estimated
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert stored_among(tmp_path, sources, ["k"], known) == 4
    assert stored_among(tmp_path, sources, ["other"], known) == 0  # the search resets it
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files  # nothing on disk changes
    store.add(singles[3:5], _small_batch(2))  # the reserved rows estimated
    assert stored_among(tmp_path, sources, ["k"], known) == 6 == len(known) - (n_sources - 5)


def _append_beside_another(path: str, seed: int, ready, go) -> None:
    """One of two processes sharing a store: open it, wait for the other to have opened it too,
    then add its own subsets a few at a time."""
    sources = [f"s{i}" for i in range(12)]
    store = SubsetResultsStore(path, sources, key="k")
    ready.set()
    go.wait(30)
    masks = _distinct_masks(40, 12, seed)
    for start in range(0, 40, 8):
        chunk = masks[start : start + 8]
        store.add(chunk, EstimateBatch(np.full(len(chunk), float(seed)), np.ones(len(chunk)),
                                       np.ones(len(chunk), dtype=np.int64), np.ones(len(chunk), dtype=bool)))


def test_two_processes_adding_to_one_store_keep_every_result(tmp_path: Path) -> None:
    """Projects sharing a cache with the same search key append to one store at once: each
    numbered its segments from what it had read, so the second's segment replaced the first's
    (or added rows after rows it had never seen), and results were lost or the store reset."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    events = [(context.Event(), context.Event()) for _ in range(2)]
    workers = [context.Process(target=_append_beside_another, args=(str(tmp_path / "store"), seed, ready, go))
               for seed, (ready, go) in zip((1, 2), events, strict=True)]
    for worker in workers:
        worker.start()
    for ready, _ in events:
        assert ready.wait(60)
    for _, go in events:
        go.set()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    store = SubsetResultsStore(tmp_path / "store", [f"s{i}" for i in range(12)], key="k")
    assert store.reset_reason is None
    for seed in (1, 2):
        masks = _distinct_masks(40, 12, seed)
        found, _ = store.lookup(masks)
        assert found.all(), f"{int((~found).sum())} of the 40 subsets of process {seed} lost"
