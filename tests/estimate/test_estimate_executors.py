"""Tests of the parallel executors: every backend returns the sequential numbers."""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from estfixtures import random_masks

from subsetctl.errors import UserError
from subsetctl.estimate.base import EstimateBatch, FeatureSet
from subsetctl.estimate.dask_backend import _worker_import_error, check_dask_address, close_dask_clients
from subsetctl.estimate.executors import default_batch_size, estimate_parallel
from subsetctl.estimate.solvers import ExactEstimator, FastEstimator


def _assert_same(a: EstimateBatch, b: EstimateBatch) -> None:
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.w_norm, b.w_norm)
    np.testing.assert_array_equal(a.iterations, b.iterations)
    np.testing.assert_array_equal(a.converged, b.converged)


@pytest.fixture(scope="module")
def exact(small_features: FeatureSet) -> ExactEstimator:
    return ExactEstimator(small_features, lam=0.1)


@pytest.fixture(autouse=True)
def _no_dask_client_left() -> Iterator[None]:
    """Dask clients outlive a call; each test starts without one and leaves none."""
    close_dask_clients()
    yield
    close_dask_clients()


@contextmanager
def _scheduler(n_workers: int, processes: bool) -> Iterator[str]:
    """A LocalCluster's scheduler address; the executor's client to it is closed before
    the cluster (else it logs failed reconnects)."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        try:
            yield cluster.scheduler_address
        finally:
            close_dask_clients()


def test_loky_and_threading_equal_sequential(exact: ExactEstimator) -> None:
    masks = random_masks(37, len(exact.sources), seed=1)
    seen: list[tuple[int, int]] = []
    seq = estimate_parallel(exact, masks, backend="sequential", batch_size=5)
    loky = estimate_parallel(
        exact, masks, backend="loky", n_jobs=2, batch_size=5, progress=lambda d, t: seen.append((d, t))
    )
    threads = estimate_parallel(exact, masks, backend="threading", n_jobs=2, batch_size=5)
    _assert_same(seq, loky)
    _assert_same(seq, threads)
    # order is the request order: compare with a direct call mask by mask
    direct = exact.estimate(masks)
    np.testing.assert_allclose(seq.loss, direct.loss, rtol=1e-12)
    assert seen[-1] == (37, 37) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) == 8


@pytest.mark.parametrize("name", ["fast", "exact", "linear_sgd"])
def test_every_built_in_estimator_gives_the_same_bits_on_any_backend_and_batch_size(
        small_features: FeatureSet, name: str) -> None:
    """executor.backend sequential against loky with n_jobs 2 must give the same estimates,
    so the same selections, bit for bit; so must another batch size, which a search's
    n_jobs changes (:func:`default_batch_size` cuts one batch per worker beyond 8). Each
    built-in estimator, not only the exact one: a subset's estimate depends on its mask
    alone, not on the masks batched with it (linear_sgd's seeded steps included)."""
    from subsetctl.estimate import dynamics  # noqa: F401  (registers linear_sgd)
    from subsetctl.registry import ESTIMATORS

    estimator = ESTIMATORS.get(name)(small_features, lam=0.1)
    masks = random_masks(23, len(small_features.sources), seed=4)
    one_batch = estimate_parallel(estimator, masks, backend="sequential", batch_size=len(masks))
    _assert_same(one_batch, estimate_parallel(estimator, masks, backend="loky", n_jobs=2, batch_size=5))
    _assert_same(one_batch, estimate_parallel(estimator, masks, backend="sequential", batch_size=1))


def test_joblib_starts_no_more_workers_than_tasks(exact: ExactEstimator, monkeypatch) -> None:
    """executor.n_jobs=1000 on 16 subsets started ~1000 loky processes and hung for minutes."""
    from subsetctl.estimate import executors

    asked: list[int] = []
    real = executors._joblib_results
    monkeypatch.setattr(executors, "_joblib_results",
                        lambda est, masks, slices, backend, n_jobs: asked.append(n_jobs) or real(
                            est, masks, slices, backend, n_jobs))
    masks = random_masks(9, len(exact.sources), seed=2)
    result = estimate_parallel(exact, masks, backend="threading", n_jobs=1000, batch_size=3)
    assert asked == [3]  # three batches
    _assert_same(result, estimate_parallel(exact, masks, backend="sequential", batch_size=3))


def test_dask_local_cluster_equals_loky(exact: ExactEstimator) -> None:
    """... and leaves the caller's environment as it was: distributed's nanny set
    OMP_NUM_THREADS=1, PYTHONHASHSEED, ... in it, for any program a notebook started later."""
    import os

    masks = random_masks(20, len(exact.sources), seed=2)
    loky = estimate_parallel(exact, masks, backend="loky", n_jobs=2, batch_size=4)
    environment = dict(os.environ)
    dask = estimate_parallel(exact, masks, backend="dask", n_jobs=2, batch_size=4)
    _assert_same(loky, dask)
    assert dict(os.environ) == environment


def test_closed_local_clusters_do_not_pile_up_in_the_process(small_features: FeatureSet) -> None:
    """A notebook or sweep script runs the search on dask many times in one process, each
    run closing its LocalCluster: the closed schedulers are freed, with the log handler each
    added to the ``distributed.scheduler`` logger (distributed's process-wide cache of its
    handlers' signatures kept every one of them alive)."""
    import gc

    from distributed import Scheduler

    def alive() -> int:
        gc.collect()
        return sum(type(o) is Scheduler for o in gc.get_objects())

    fast = FastEstimator(small_features)
    masks = random_masks(6, small_features.n_sources, seed=0)
    logger = logging.getLogger("distributed.scheduler")
    close_dask_clients()
    before, handlers = alive(), len(logger.handlers)
    for _ in range(2):
        estimate_parallel(fast, masks, backend="dask", n_jobs=1, batch_size=3)
        close_dask_clients()
    assert alive() == before
    assert len(logger.handlers) == handlers


def test_dask_scheduler_address_equals_sequential(small_features: FeatureSet) -> None:
    fast = FastEstimator(small_features)
    masks = random_masks(30, small_features.n_sources, seed=3)
    seq = estimate_parallel(fast, masks, backend="sequential", batch_size=7)
    with _scheduler(n_workers=1, processes=True) as address:
        got = estimate_parallel(fast, masks, backend="dask", address=address, batch_size=7)
    _assert_same(seq, got)


def test_dask_local_cluster_is_started_once_and_reused(
    small_features: FeatureSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A greedy search estimates step by step: one LocalCluster serves every call (one
    per call made it ~20x slower than sequential), and close_dask_clients closes it."""
    import dask.distributed

    started: list[Any] = []
    real = dask.distributed.LocalCluster

    def counting(*args: Any, **kwargs: Any) -> Any:
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(dask.distributed, "LocalCluster", counting)
    fast = FastEstimator(small_features)
    for seed in range(3):  # the same estimator scattered again each call (no key clash)
        masks = random_masks(9, small_features.n_sources, seed=seed)
        got = estimate_parallel(fast, masks, backend="dask", n_jobs=1, batch_size=4)
        _assert_same(estimate_parallel(fast, masks, backend="sequential", batch_size=4), got)
    assert len(started) == 1
    close_dask_clients()
    assert started[0].status.name == "closed"


def test_dask_not_installed_says_how_to_install(small_features: FeatureSet, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("dask", "dask.distributed", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(UserError, match=r"dask is not installed.*pip install 'subsetctl\[dask\]'"):
        estimate_parallel(FastEstimator(small_features), random_masks(3, 10, seed=0), backend="dask")


def test_dask_without_distributed_says_which_is_missing_in_one_paragraph(
        small_features: FeatureSet, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip install dask` alone: dask.distributed raised dask's own several-line advice
    ("dask.distributed is not installed. Please either conda or pip install ..."), which the
    error quoted after saying that dask was not installed."""

    class NoDistributed:
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
            if name == "distributed" or name.startswith("distributed."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    for name in [n for n in sys.modules if n == "distributed" or n.startswith(("distributed.", "dask.distributed"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [NoDistributed(), *sys.meta_path])
    with pytest.raises(UserError) as info:
        estimate_parallel(FastEstimator(small_features), random_masks(3, 10, seed=0), backend="dask")
    message = str(info.value)
    assert "\n" not in message and "conda" not in message, message
    assert message.startswith("executor.backend is dask, but distributed is not installed here (dask is).")
    assert "pip install 'subsetctl[dask]'" in message


def test_validate_warns_when_the_dask_backend_is_set_without_dask(
    jsonl_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from subsetctl.api import validate_spec_file

    path = jsonl_project / "subsetctl.yaml"

    def dask_warnings() -> list[str]:
        report = validate_spec_file(path, ["executor.backend=dask"])
        return [w.render() for w in report.warnings if w.key == "executor.backend"]

    assert dask_warnings() == []  # installed here
    monkeypatch.setitem(sys.modules, "distributed", None)  # `pip install dask` alone: it said dask was missing
    (warning,) = dask_warnings()
    assert "distributed is not installed (dask is) here" in warning, warning
    monkeypatch.setitem(sys.modules, "dask", None)
    (warning,) = dask_warnings()
    assert "dask is not installed here" in warning and "pip install 'subsetctl[dask]'" in warning
    assert "search stage" in warning


def test_dask_scheduler_without_workers_is_a_user_error(
    small_features: FeatureSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search waits executor.connect_timeout s for a worker, then says none joined. What is
    checked is the wait it asked of the scheduler, not the time it took (a busy machine's vary);
    a wait without a bound is given 60 s here, so that the test fails rather than hangs."""
    import distributed

    waits: list[float | None] = []
    real_wait = distributed.Client.wait_for_workers

    def wait_recorded(self: Any, n_workers: int, timeout: float | None = None) -> None:
        waits.append(timeout)
        real_wait(self, n_workers, timeout=60 if timeout is None else timeout)

    monkeypatch.setattr(distributed.Client, "wait_for_workers", wait_recorded)
    with (
        _scheduler(n_workers=0, processes=False) as address,
        pytest.raises(UserError, match="No Dask workers") as info,
    ):
        estimate_parallel(FastEstimator(small_features), random_masks(3, 10, seed=0), backend="dask",
                          address=address, connect_timeout=0.5)
    assert waits == [0.5]
    assert f"(waited 0.5 s). Start at least one with `dask worker {address}`" in str(info.value), info.value
    assert "executor.connect_timeout" in str(info.value)


def test_the_spec_sets_how_long_dask_waits_for_its_scheduler_and_workers() -> None:
    """The wait was 5 s whatever the cluster: one whose workers take longer to join (or
    start on demand) could not be used."""
    from subsetctl.spec import ExecutorSpec
    from subsetctl.stages.features import executor_kwargs

    spec = SimpleNamespace(executor=ExecutorSpec(backend="dask", address="tcp://h:8786", connect_timeout=60))
    assert executor_kwargs(spec)["connect_timeout"] == 60  # type: ignore[arg-type]
    assert executor_kwargs(SimpleNamespace(executor=ExecutorSpec()))["connect_timeout"] == 5.0  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="connect_timeout"):
        ExecutorSpec(connect_timeout=0)


class _UnimportableOnWorkers(FastEstimator):
    """Unpickles by importing a module the workers lack, like a worker without subsetctl."""

    def __reduce__(self) -> tuple[Any, ...]:
        return importlib.import_module, ("subsetctl_plugin_not_on_workers",)


def test_dask_workers_that_cannot_import_are_a_user_error(small_features: FeatureSet) -> None:
    with (
        _scheduler(n_workers=1, processes=True) as address,
        pytest.raises(UserError, match="cannot import 'subsetctl_plugin_not_on_workers'"),
    ):
        estimate_parallel(_UnimportableOnWorkers(small_features), random_masks(3, 10, seed=0),
                          backend="dask", address=address)


def test_worker_import_errors_name_subsetctl_and_its_version() -> None:
    from subsetctl import __version__

    # how the scheduler reports a worker's failed unpickling
    wrapped = Exception('ModuleNotFoundError("No module named \'subsetctl\'")')
    problem = _worker_import_error(wrapped, "tcp://10.0.0.1:8786")
    assert problem is not None
    assert "tcp://10.0.0.1:8786" in str(problem) and f"subsetctl {__version__} installed" in str(problem)
    assert _worker_import_error(ModuleNotFoundError("No module named 'subsetctl.estimate'"), None) is not None
    assert _worker_import_error(ValueError("No module named 'x'"), None) is None  # an estimator's own error
    assert _worker_import_error(Exception("boom"), None) is None


@pytest.mark.parametrize("address", ["localhost", "http://127.0.0.1:8786", "tcp://localhost", "tcp://h:port",
                                     "tcp://h:99999"])
def test_malformed_dask_address_is_refused_before_connecting(
    address: str, small_features: FeatureSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Client is built: a half-built one hung ~10 s at exit and printed a traceback."""
    import dask.distributed

    def no_client(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a Client was built for a malformed address")

    monkeypatch.setattr(dask.distributed, "Client", no_client)
    with pytest.raises(UserError, match="is not a Dask scheduler address.*tcp://HOST:PORT"):
        estimate_parallel(FastEstimator(small_features), random_masks(2, 10, seed=0), backend="dask",
                          address=address)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "127.0.0.1:8786", "tls://sched:8786",
                                     "tcp://[::1]:8786", "inproc://192.0.2.2/123/1"])
def test_well_formed_dask_addresses_pass_the_check(address: str) -> None:
    check_dask_address(address)


def test_unreachable_dask_scheduler_is_a_quick_user_error(small_features: FeatureSet) -> None:
    fast = FastEstimator(small_features)
    with pytest.raises(UserError) as refused:
        estimate_parallel(
            fast,
            random_masks(2, 10, seed=0),
            backend="dask",
            address="tcp://127.0.0.1:9",
            connect_timeout=1.0,
        )
    # given up on by distributed's own connect after executor.connect_timeout, not by the bound on
    # the handshake (3 s) nor after distributed's default 30 s (not a time measured: a busy machine's vary)
    message = str(refused.value)
    assert message.startswith("Could not reach the Dask scheduler at 'tcp://127.0.0.1:9' within 1 s ("), message
    assert "after 1 s" in message, message


def test_a_tls_address_without_tls_settings_says_so(small_features: FeatureSet) -> None:
    """Was "TypeError: TLS expects a `ssl_context` argument ...; a server that is not a
    Dask scheduler answers like this": the server was blamed for this machine's settings."""
    with pytest.raises(UserError, match=r"is a TLS address, but this machine's Dask configuration has no TLS") as info:
        estimate_parallel(FastEstimator(small_features), random_masks(2, 10, seed=0), backend="dask",
                          address="tls://127.0.0.1:9", connect_timeout=1.0)
    assert "distributed.comm.tls" in str(info.value) and "not a Dask scheduler" not in str(info.value)


def test_bad_arguments(small_features: FeatureSet) -> None:
    fast = FastEstimator(small_features)
    masks = random_masks(3, 10, seed=0)
    with pytest.raises(UserError, match="backend"):
        estimate_parallel(fast, masks, backend="mpi")
    with pytest.raises(UserError, match="n_jobs"):
        estimate_parallel(fast, masks, n_jobs=0)
    with pytest.raises(UserError, match="shape"):
        estimate_parallel(fast, masks[:, :4])
    assert estimate_parallel(fast, masks[:0]).loss.shape == (0,)


def test_default_batches_do_not_depend_on_backend(exact: ExactEstimator) -> None:
    assert default_batch_size(1000, exact) == exact.chunk_size
    assert default_batch_size(40, exact) == 5
    assert default_batch_size(1, exact) == 1


def test_default_batches_keep_every_worker_busy(small_features: FeatureSet, monkeypatch) -> None:
    """A search hands the executor 256 subsets at a time: cut into 8 batches whatever
    n_jobs was, 16 loky workers ran 8 tasks (8 idle), and a Dask cluster of 64 workers 8."""
    fast = FastEstimator(small_features)
    assert default_batch_size(256, fast) == 32
    assert default_batch_size(256, fast, workers=16) == 16
    assert default_batch_size(256, fast, workers=64) == 4
    assert default_batch_size(256, fast, workers=1000) == 1
    import joblib

    started: list[int] = []
    real = joblib.Parallel

    def counting(*args: Any, **kwargs: Any) -> Any:
        started.append(kwargs["n_jobs"])
        return real(*args, **kwargs)

    monkeypatch.setattr(joblib, "Parallel", counting)
    masks = random_masks(256, small_features.n_sources, seed=0)
    got = estimate_parallel(fast, masks, backend="threading", n_jobs=16)
    assert started == [16]
    _assert_same(estimate_parallel(fast, masks, backend="sequential"), got)


def test_default_batches_on_a_dask_address_follow_the_clusters_threads(
        small_features: FeatureSet, monkeypatch) -> None:
    """With an address, n_jobs is not the cluster's size: the batches follow its threads."""
    from subsetctl.estimate import executors

    cut: list[int] = []
    real = executors._batches
    monkeypatch.setattr(executors, "_batches", lambda n, size: cut.append(size) or real(n, size))
    fast = FastEstimator(small_features)
    masks = random_masks(48, small_features.n_sources, seed=2)
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=12, processes=False, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        try:
            got = estimate_parallel(fast, masks, backend="dask", address=cluster.scheduler_address, n_jobs=2)
        finally:
            close_dask_clients()
    assert cut == [4]  # 12 batches for 12 threads (n_jobs=2, and 8 batches, would cut 6)
    _assert_same(estimate_parallel(fast, masks, backend="sequential"), got)


@contextmanager
def _non_dask_server(greeting: bytes) -> Iterator[str]:
    """A TCP server on a free port that accepts connections and sends ``greeting`` (maybe
    nothing) but never speaks Dask: a dashboard port, or an SSH server. It hangs up after a
    minute if still open: a client waiting on it without a bound then fails instead of hanging."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []

    def hang_up() -> None:
        server.close()
        for conn in held:
            conn.close()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            with contextlib.suppress(OSError):
                conn.sendall(greeting)

    threading.Thread(target=serve, daemon=True).start()
    timer = threading.Timer(60, hang_up)
    timer.daemon = True
    timer.start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        timer.cancel()
        hang_up()


@pytest.mark.parametrize("greeting", [b"", b"SSH-2.0-OpenSSH_9.6\r\n" * 4])
def test_a_port_that_is_not_a_dask_scheduler_is_a_quick_user_error(greeting: bytes, small_features: FeatureSet) -> None:
    """A silent server hung the search forever (the handshake has no timeout); one that
    greets first was an internal MemoryError. The silent one is given up on after the bound
    on the handshake (connect_timeout twice, and a second): what the message says, not a time
    measured (a busy machine's vary); without the bound, the server hangs up after a minute
    and the message is another."""
    with _non_dask_server(greeting) as address, pytest.raises(UserError) as refused:
        estimate_parallel(FastEstimator(small_features), random_masks(2, 10, seed=0), backend="dask",
                          address=address, connect_timeout=1.0)
    message = str(refused.value)
    if greeting:
        assert f"Could not connect to a Dask scheduler at {address!r} (" in message, message
        assert "a server that is not a Dask scheduler answers like this" in message, message
    else:
        assert message.startswith(f"No Dask scheduler answered at {address!r} within 3 s: something listens on "
                                  "that port but did not complete Dask's handshake"), message


def test_the_client_of_a_server_that_is_no_dask_scheduler_is_closed(
    small_features: FeatureSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The half-built client was left open, kept alive by the error's traceback: at exit
    its __del__ hung 10 s and printed "Exception ignored in: Client.__del__" and a
    traceback after subsetctl's one-paragraph error."""
    import dask.distributed

    built: list[Any] = []

    class Recorded(dask.distributed.Client):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(dask.distributed, "Client", Recorded)
    with _non_dask_server(b"SSH-2.0-OpenSSH_9.6\r\n" * 4) as address, pytest.raises(UserError) as info:
        estimate_parallel(FastEstimator(small_features), random_masks(2, 10, seed=0), backend="dask",
                          address=address, connect_timeout=1.0)
    assert "not a Dask scheduler" in str(info.value)
    assert built and all(client.status == "closed" for client in built)


class _Slow(FastEstimator):
    """The fast estimator, 0.2 s per batch: a scheduler can be stopped while it runs."""

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        time.sleep(0.2)
        return super().estimate(masks)


@contextmanager
def _scheduler_with_one_worker(folder: Path, first_on_path: Path | None = None) -> Iterator[tuple[str, Any]]:
    """(address, scheduler process) of a `dask scheduler` and one `dask worker` started in
    ``folder`` (`-m` puts the working folder first on the path), importing what this
    process imports, with ``first_on_path`` ahead of it; both killed at the end."""
    import json
    import os
    import subprocess

    info = folder / "scheduler.json"
    path = [str(first_on_path)] if first_on_path else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, *(p for p in sys.path if p)])}
    run = [sys.executable, "-m"]
    scheduler = subprocess.Popen([*run, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(info)], env=env, cwd=folder,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([*run, "distributed.cli.dask_worker", "--scheduler-file", str(info), "--nthreads", "1",
                               "--no-nanny", "--no-dashboard"], env=env, cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        address = None
        while address is None and time.monotonic() < deadline:  # the file appears before its text
            try:
                address = json.loads(info.read_text())["address"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                time.sleep(0.1)
        if address is None:
            raise AssertionError(f"the dask scheduler wrote no address into {info} within 60 s")
        yield address, scheduler
    finally:
        for process in (worker, scheduler):
            process.kill()
            process.wait()


def test_a_scheduler_lost_mid_estimate_is_a_user_error_without_a_traceback(
    small_features: FeatureSet, tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A scheduler killed while estimating was reported as lost workers, and closing the
    client logged its cancelled reconnect as an ERROR with a traceback on stderr."""
    import signal

    with _scheduler_with_one_worker(tmp_path) as (address, scheduler):  # the worker imports _Slow
        estimator = _Slow(small_features)
        masks = random_masks(40, small_features.n_sources, seed=0)
        estimate_parallel(estimator, masks[:2], backend="dask", address=address, connect_timeout=30)  # warm
        threading.Timer(0.5, scheduler.send_signal, (signal.SIGKILL,)).start()
        with pytest.raises(UserError) as lost:
            estimate_parallel(estimator, masks, backend="dask", address=address, batch_size=1)
        close_dask_clients()
    assert f"Lost the connection to the Dask scheduler at {address!r}" in str(lost.value)
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.name.startswith("distributed") and r.levelno >= logging.ERROR]


@pytest.fixture(scope="module")
def _scheduler_to_freeze(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """One scheduler and worker (:func:`_scheduler_with_one_worker`) for the cases of
    :func:`test_a_frozen_scheduler_is_a_user_error_not_a_hang`, each of which resumes it at its
    end: starting the two processes (each importing dask) was about half of each case's time."""
    with _scheduler_with_one_worker(tmp_path_factory.mktemp("dask-to-freeze")) as started:
        yield started


@pytest.mark.parametrize("when", ["while estimating", "between calls", "as an estimate is fetched"])
def test_a_frozen_scheduler_is_a_user_error_not_a_hang(
    when: str, small_features: FeatureSet, _scheduler_to_freeze: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduler stopped (SIGSTOP) while estimating keeps its TCP connections open: the
    search waited for its estimates until Ctrl-C. Asked after connect_timeout s without a
    finished estimate, it does not answer, and the search says so; so does a scheduler
    stopped between two calls (the next one hung asking how many threads its workers have),
    or just as a finished estimate is fetched (through the scheduler)."""
    import signal

    import distributed

    address, scheduler = _scheduler_to_freeze  # the worker imports _Slow
    estimator = _Slow(small_features)
    masks = random_masks(40, small_features.n_sources, seed=0)
    estimate_parallel(estimator, masks[:2], backend="dask", address=address, connect_timeout=30)  # warm
    stopper = threading.Timer(0.5, scheduler.send_signal, (signal.SIGSTOP,))
    try:
        if when == "while estimating":
            stopper.start()
        elif when == "between calls":
            scheduler.send_signal(signal.SIGSTOP)
        else:
            real = distributed.Future.result
            monkeypatch.setattr(distributed.Future, "result", lambda self, *args, **kwargs: (
                scheduler.send_signal(signal.SIGSTOP), real(self, *args, **kwargs))[1])
        # each call through the scheduler that timed out, by the wait it was given (callback_timeout)
        gave_up: list[float | None] = []
        real_sync = distributed.Client.sync

        def sync_recorded(self: Any, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            try:
                return real_sync(self, func, *args, **kwargs)
            except TimeoutError:
                gave_up.append(kwargs.get("callback_timeout"))
                raise

        monkeypatch.setattr(distributed.Client, "sync", sync_recorded)
        start = time.monotonic()
        with pytest.raises(UserError) as silent:  # 40 batches of 0.2 s: 8 s unless stopped
            estimate_parallel(estimator, masks, backend="dask", address=address, connect_timeout=0.5,
                              batch_size=None if when == "between calls" else 1)
        took, gave_up = time.monotonic() - start, list(gave_up)
    finally:  # resumed for the next case (a stop not sent yet is not sent)
        stopper.cancel()
        if stopper.is_alive():
            stopper.join()
        scheduler.send_signal(signal.SIGCONT)
        close_dask_clients()
    message = str(silent.value)
    assert message.startswith(f"The Dask scheduler at {address!r} (executor.address) stopped answering"), message
    assert "the estimates it finished so far" in message and "\n" not in message
    # given up on after the search's own wait, 2 s (2 x connect_timeout + 1) unanswered at most twice, not
    # a time measured (those 4 s took 3.1-4.4 s on a loaded machine); and nothing waited for distributed's
    # default timeouts (30 s) or on a scheduler that never answers
    assert 1 <= len(gave_up) <= 2 and set(gave_up) == {2.0}, gave_up
    assert "did not answer a request within 2 s" in message, message
    assert took < 20, took


class _Slower(FastEstimator):
    """The fast estimator, 1.5 s per batch."""

    def estimate(self, masks: np.ndarray) -> EstimateBatch:
        time.sleep(1.5)
        return super().estimate(masks)


def test_a_busy_scheduler_is_not_taken_for_a_frozen_one(small_features: FeatureSet, monkeypatch) -> None:
    """No estimate finishes for longer than connect_timeout: the scheduler is asked, answers
    while its workers compute, and the estimate goes on."""
    import distributed

    asked: list[float] = []
    real = distributed.Client.sync
    monkeypatch.setattr(distributed.Client, "sync", lambda self, func, *args, **kwargs: (
        asked.append(kwargs["callback_timeout"]) if kwargs.get("callback_timeout") == 1.4 else None,
        real(self, func, *args, **kwargs))[1])
    estimator = _Slower(small_features)
    masks = random_masks(2, small_features.n_sources, seed=0)
    with _scheduler(1, processes=False) as address:
        got = estimate_parallel(estimator, masks, backend="dask", address=address, batch_size=1,
                                connect_timeout=0.2)
    _assert_same(got, FastEstimator(small_features).estimate(masks))
    assert len(asked) >= 4, asked  # about every 0.2 s for 3 s


def test_workers_running_another_copy_of_subsetctl_are_refused(small_features: FeatureSet, tmp_path: Path) -> None:
    """Workers were checked only for importing subsetctl: a worker with another checkout of
    the same version computed the estimates with its own code, silently."""
    import shutil

    import subsetctl

    other = tmp_path / "other"
    shutil.copytree(Path(subsetctl.__file__).parent, other / "subsetctl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(other / "subsetctl" / "estimate" / "solvers.py", "a") as edited:
        edited.write("\n# edited in the workers' copy\n")
    with _scheduler_with_one_worker(tmp_path, first_on_path=other) as (address, _):
        with pytest.raises(UserError) as refused:
            estimate_parallel(FastEstimator(small_features), random_masks(4, small_features.n_sources, seed=0),
                              backend="dask", address=address, connect_timeout=30)
        close_dask_clients()
    message = " ".join(str(refused.value).split())
    assert f"1 of the 1 Dask workers at {address!r}" in message, message
    assert f"run another copy of subsetctl {subsetctl.__version__} (from {other / 'subsetctl'}" in message, message
    assert "1 file(s) differ: estimate/solvers.py" in message, message


def test_workers_with_the_same_subsetctl_pass_the_code_check() -> None:
    """The check compares the workers' answers with this process's own digest."""
    from subsetctl.estimate.dask_backend import _check_workers_code
    from subsetctl.estimate.executors import subsetctl_code_digest

    class Answers:
        def __init__(self, answers: dict[str, Any]) -> None:
            self.answers = answers

        def run(self, function: Any, on_error: str) -> dict[str, Any]:
            return self.answers

    here = subsetctl_code_digest()
    assert "estimate/executors.py" in here["files"]
    _check_workers_code(Answers({"tcp://a:1": dict(here), "tcp://b:1": OSError("gone")}), "tcp://s:8786")
    older = {**here, "version": "0.0.9", "files": {**here["files"], "spec.py": "0" * 64}}
    with pytest.raises(UserError, match=r"1 of the 2 Dask workers .*\(tcp://b:1\) run subsetctl 0.0.9, not "
                                        r".* as here .*1 file\(s\) differ: spec.py"):
        _check_workers_code(Answers({"tcp://a:1": dict(here), "tcp://b:1": older}), "tcp://s:8786")


def test_workers_without_subsetctl_fail_the_code_check() -> None:
    """A worker without subsetctl answers the code check with the error of unpickling its
    function (as distributed returns it); the check let it pass, so `doctor` said the
    cluster was ready and the search stopped on it only after the model stages."""
    from subsetctl.estimate.dask_backend import _check_workers_code
    from subsetctl.estimate.executors import subsetctl_code_digest

    class Answers:
        def run(self, function: Any, on_error: str) -> dict[str, Any]:
            return {"tcp://a:1": dict(subsetctl_code_digest()), "tcp://b:1": OSError("gone"),
                    "tcp://c:1": Exception(repr(ModuleNotFoundError("No module named 'subsetctl'")))}

    with pytest.raises(UserError, match=r"^1 of the 3 Dask workers at 'tcp://s:8786' \(tcp://c:1\) cannot import "
                                        r"'subsetctl': every worker must have subsetctl .* installed"):
        _check_workers_code(Answers(), "tcp://s:8786")


def test_doctors_code_check_of_workers_that_do_not_answer_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor's check of the workers' code (:func:`scheduler_threads`) called distributed's
    ``Client.run``, which has no timeout: a worker whose event loop was blocked hung `doctor`.
    It now gives up after the scheduler's answer time and says why the search would wait."""
    from subsetctl.estimate import dask_backend

    released, answered = threading.Event(), threading.Event()

    class Blocked:
        def nthreads(self) -> dict[str, int]:
            return {"tcp://a:1": 2}

        def run(self, function: Any, on_error: str) -> dict[str, Any]:
            released.wait(60)  # a worker that never answers (let go when the test ends)
            answered.set()
            return {}

        def close(self) -> None:
            pass

    monkeypatch.setattr(dask_backend, "_connect_dask", lambda *args: dask_backend._DaskConnection(Blocked()))
    monkeypatch.setattr(dask_backend, "_import_dask", lambda: None)
    try:
        workers, threads, refused = dask_backend.scheduler_threads("tcp://s:8786", 0.1)
        assert not answered.is_set()  # given up on, not waited for (not a time: a busy machine's vary)
    finally:
        released.set()
    assert (workers, threads) == (1, 2)
    assert refused is not None and "The Dask workers at 'tcp://s:8786' did not all answer subsetctl's check of " \
        "their code within 1.2 s" in refused, refused


@pytest.mark.parametrize("blocked", ["code", "load"])
def test_the_searchs_checks_of_workers_that_do_not_answer_are_bounded(
    blocked: str, small_features: FeatureSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search checks new workers' code, then that they load the estimator's code, with
    distributed's ``Client.run``, which has no timeout: a worker whose event loop was blocked
    hung the search before it sent any work, without a word. Each check now gives up after
    the scheduler's answer time, with a UserError naming the workers and what to do."""
    from subsetctl.estimate import dask_backend
    from subsetctl.estimate.executors import _load_code, subsetctl_code_digest

    released, answered = threading.Event(), threading.Event()
    worker = "tcp://a:1"
    identity = {"workers": {worker: {"local_directory": "/tmp/worker-a"}}}

    class Blocked:
        status = "running"
        scheduler = SimpleNamespace(identity=lambda: identity)

        def sync(self, function: Any, callback_timeout: float | None = None) -> Any:
            return function()

        def wait_for_workers(self, n: int, timeout: float) -> None:
            pass

        def run(self, function: Any, *args: Any, on_error: str, workers: list[str]) -> dict[str, Any]:
            if function is {"code": subsetctl_code_digest, "load": _load_code}[blocked]:
                released.wait(60)  # a worker that never answers (let go when the test ends)
                answered.set()
            return {worker: subsetctl_code_digest() if function is subsetctl_code_digest else None}

        def scatter(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("work sent after a check the workers never answered (waited for it)")

    monkeypatch.setattr(dask_backend, "_dask_client", lambda *args: Blocked())
    monkeypatch.setattr(dask_backend, "_answer_within", lambda connect_timeout: 0.2)
    try:
        with pytest.raises(UserError) as silent:
            estimate_parallel(FastEstimator(small_features), random_masks(4, small_features.n_sources, seed=0),
                              backend="dask", address="tcp://s:8786", batch_size=2)
        assert not answered.is_set()  # given up on, not waited for (not a time: a busy machine's vary)
    finally:
        released.set()
    checked = {"code": "of their code", "load": "that they can load the estimator's code"}[blocked]
    message = str(silent.value)
    assert message.startswith(f"1 of the 1 Dask workers at 'tcp://s:8786' ({worker}) did not all answer "
                              f"subsetctl's check {checked} within 0.2 s"), message
    assert "the estimates it finished so far" in message and "restart those workers" in message, message
    assert "executor.connect_timeout" in message and "\n" not in message


def test_workers_with_a_subsetctl_from_before_the_code_check_are_refused() -> None:
    """A worker whose subsetctl has no subsetctl_code_digest answers with the error of
    unpickling it (as distributed returns it); that answer was skipped as the cluster's own
    trouble, so workers of any earlier release passed the check."""
    from subsetctl.estimate.dask_backend import _check_workers_code
    from subsetctl.estimate.executors import subsetctl_code_digest

    class Answers:
        def __init__(self, answers: dict[str, Any]) -> None:
            self.answers = answers

        def run(self, function: Any, on_error: str) -> dict[str, Any]:
            return self.answers

    unpickled = Exception(repr(AttributeError(  # as distributed returns it
        "Can't get attribute 'subsetctl_code_digest' on <module 'subsetctl.estimate.executors' from '/old/x.py'>")))
    with pytest.raises(UserError, match=r"1 of the 2 Dask workers at 'tcp://s:8786' \(tcp://b:1\) run an older "
                                        r"subsetctl than .* here"):
        _check_workers_code(Answers({"tcp://a:1": dict(subsetctl_code_digest()), "tcp://b:1": unpickled}),
                            "tcp://s:8786")


def test_what_runs_on_dask_workers_is_shipped_as_executors_names_it() -> None:
    """The functions Dask runs on the workers go by reference (module and name), and a
    subsetctl older than the code check is told by the AttributeError of unpickling
    ``subsetctl.estimate.executors.subsetctl_code_digest`` there (test above): moved to
    another module with the Dask backend's client side, an older worker would answer "No
    module named ..." instead, which the check does not take for an older subsetctl."""
    import pickle

    from subsetctl.estimate import dask_backend, executors

    for function in (dask_backend.subsetctl_code_digest, dask_backend._load_code, dask_backend._run_on_dask_worker):
        assert function.__module__ == "subsetctl.estimate.executors"
        assert pickle.loads(pickle.dumps(function)) is getattr(executors, function.__name__)


def test_a_plugin_estimator_that_cannot_be_pickled_is_blamed_for_dask(
    small_features: FeatureSet, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """'internal error: TypeError: Could not serialize object of type CheckedEstimator ...
    This is a bug in subsetctl', after Dask's CRITICAL "Failed to Serialize" traceback."""
    from subsetctl.plugin_guard import CheckedEstimator

    estimator = FastEstimator(small_features)
    with open(tmp_path / "log.txt", "w") as log:
        estimator.log = log  # type: ignore[attr-defined]
        checked = CheckedEstimator(estimator, "holding", "module mine")
        with pytest.raises(UserError, match=r"The estimator plugin 'holding' \(module mine\) cannot be pickled to "
                                            r"run on dask worker processes.*opened for reading"):
            estimate_parallel(checked, random_masks(4, small_features.n_sources, seed=0), backend="dask", n_jobs=1)
    assert "Failed to Serialize" not in capfd.readouterr().err


def _future_cancelled(client: Any) -> list[tuple[BaseException, Any]]:
    """A future cancelled as the scheduler's connection was lost, as a newer distributed says
    it (a FutureCancelledError with its reason); none where distributed has no such class
    (2024.1: a plain CancelledError, with no reason, as above)."""
    try:
        from distributed.client import FutureCancelledError
    except ImportError:
        return []
    return [(FutureCancelledError("_run_batch-1", "scheduler-connection-lost"), client)]


def test_workers_lost_mid_search_are_a_user_error() -> None:
    import asyncio

    from distributed import CancelledError
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    from subsetctl.estimate.dask_backend import _dask_failure

    running, connecting = SimpleNamespace(status="running"), SimpleNamespace(status="connecting")
    lost = _dask_failure(CancelledError("_run_batch-1"), running, None, False)
    assert lost is not None and "local cluster were lost" in str(lost) and "finished so far" in str(lost)
    # subsetctl starts the local cluster: there are no workers for the user to restart
    assert "restart the workers" not in str(lost) and "on a new local cluster" in str(lost)
    assert "workers at 'tcp://s:8786' (executor.address) were lost" in str(
        _dask_failure(KilledWorker("_run_batch-1", None, 3), running, "tcp://s:8786", True))  # type: ignore[arg-type]
    assert _dask_failure(ValueError("an estimator's own error"), running, None, False) is None
    assert _dask_failure(OSError("an estimator's own error"), running, "tcp://s:8786", True) is None
    # the scheduler lost, however distributed says it
    for exc, client in [(CommClosedError("in <TCP ConnectionPool.gather>: ConnectionResetError"), running),
                        (OSError("Timed out trying to connect"), running), (TimeoutError(), running),
                        (asyncio.CancelledError(), running), (CancelledError("_run_batch-1"), connecting),
                        (RuntimeError("anything"), SimpleNamespace(status="closed"))] + _future_cancelled(running):
        lost = _dask_failure(exc, client, "tcp://s:8786", False)
        assert lost is not None and str(lost).startswith(
            "Lost the connection to the Dask scheduler at 'tcp://s:8786' (executor.address)"), (exc, lost)
        assert "\n" not in str(lost) and "run again" in str(lost)


def test_a_scheduler_lost_at_any_step_is_a_user_error(small_features: FeatureSet, monkeypatch) -> None:
    """The scheduler lost as a finished estimate was fetched: a raw CommClosedError escaped
    (the mid-estimate test above, under load); so did one while waiting for workers, while
    scattering or submitting. Each step is made to fail as distributed fails there."""
    import asyncio

    import distributed
    from distributed.comm.core import CommClosedError

    masks = random_masks(4, small_features.n_sources, seed=0)
    closed = CommClosedError("in <TCP (closed) ConnectionPool.gather>: ConnectionResetError: [Errno 104]")
    with _scheduler(1, processes=False) as address:
        for owner, method, exc in [(distributed.Future, "result", closed),
                                   (distributed.Client, "wait_for_workers", OSError("Timed out during handshake")),
                                   (distributed.Client, "scatter", closed),
                                   (distributed.Client, "submit", asyncio.CancelledError())]:
            with monkeypatch.context() as patched:
                def fail(*args: Any, exc: BaseException = exc, **kwargs: Any) -> Any:
                    raise exc

                patched.setattr(owner, method, fail)
                with pytest.raises(UserError, match=f"Lost the connection to the Dask scheduler at {address!r}"):
                    estimate_parallel(FastEstimator(small_features, lam=0.1), masks, backend="dask",
                                      address=address, batch_size=2)


def test_closing_a_client_whose_scheduler_is_gone_raises_nothing() -> None:
    import asyncio

    from subsetctl.estimate.dask_backend import _DaskConnection

    def cancelled() -> None:
        raise asyncio.CancelledError

    _DaskConnection(SimpleNamespace(close=cancelled), SimpleNamespace(close=cancelled)).close()


def test_estimator_folders_of_killed_runs_are_deleted_and_nothing_else(tmp_path: Path, monkeypatch) -> None:
    """A SIGKILL between dumping the estimator and deleting its folder (in /dev/shm: memory)
    leaked it until reboot; the folders carry their run's PID, and the next process to
    estimate deletes those whose run is gone, and only such folders."""
    import os
    import subprocess
    import tempfile

    from subsetctl.estimate import executors

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(executors, "Path", lambda p: tmp_path / "no-shm" if p == "/dev/shm" else Path(p))
    monkeypatch.setattr(executors, "_swept", set())
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    dead = tmp_path / f"subsetctl-estimator-{gone}-abc"
    live = tmp_path / f"subsetctl-estimator-{os.getppid()}-def"  # the test runner's parent: alive
    users = tmp_path / f"subsetctl-{gone}-demo"  # a user's own folder, named alike
    dead_with_more = tmp_path / f"subsetctl-estimator-{gone}-xyz"  # holds more than an estimator: not ours
    for folder in (dead, live, users, dead_with_more):
        folder.mkdir()
        (folder / "estimator.joblib").write_bytes(b"x")
    (users / "subsetctl.yaml").write_text("target: {}\n")
    (dead_with_more / "notes.txt").write_text("mine")
    made = Path(executors._temp_dir(1))
    assert made.parent == tmp_path and made.name.startswith(f"subsetctl-estimator-{os.getpid()}-")
    assert not dead.exists() and live.exists() and users.exists() and dead_with_more.exists()


def test_one_dask_worker_without_the_estimators_module_is_a_user_error(
    small_features: FeatureSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster where one worker lacks a plugin (or subsetctl) and the others have it hung
    the search forever: the estimator scattered to every worker could not be unpickled on
    that one, and its tasks kept asking the others for it. Every worker is checked first."""
    import uuid

    from dask.distributed import Client

    module = f"subsetctl_test_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from subsetctl.estimate.solvers import FastEstimator\n\nclass PluginEstimator(FastEstimator):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # the worker processes start with this sys.path
    plugin = importlib.import_module(module).PluginEstimator(small_features)
    masks = random_masks(12, small_features.n_sources, seed=0)
    with _scheduler(n_workers=2, processes=True) as address:
        with Client(address, set_as_default=False) as admin:
            lacking = min(admin.scheduler_info()["workers"])
            admin.run(exec, f"import sys; sys.path.remove({str(tmp_path)!r})", {}, workers=[lacking])
        outcome: dict[str, Any] = {}

        def search() -> None:
            try:
                outcome["result"] = estimate_parallel(plugin, masks, backend="dask", address=address, batch_size=1)
            except BaseException as exc:  # noqa: BLE001 - checked below
                outcome["error"] = exc

        thread = threading.Thread(target=search, daemon=True)
        thread.start()
        thread.join(30)
        assert not thread.is_alive(), "the estimate hung on a worker that cannot import the plugin"
    error = outcome.get("error")
    assert isinstance(error, UserError), outcome
    assert f"cannot import {module!r}" in str(error) and f"1 of the 2 Dask workers at {address!r} ({lacking})" in str(error)


class _OfTheScript(FastEstimator):
    """An estimator class of the script (or notebook) that calls subsetctl: see below."""


def test_an_estimator_class_of_the_calling_script_is_not_refused(
    small_features: FeatureSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class defined in ``__main__`` is shipped by value (Dask pickles such an estimator
    with cloudpickle), so no worker has it to import; the check that every worker can
    import the estimator's code refused it ("cannot load the estimator's code
    (AttributeError: Can't get attribute ...)") though Dask runs it."""
    monkeypatch.setattr(_OfTheScript, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "_OfTheScript", _OfTheScript, raising=False)
    estimator = _OfTheScript(small_features)
    masks = random_masks(6, small_features.n_sources, seed=0)
    got = estimate_parallel(estimator, masks, backend="dask", n_jobs=1, batch_size=3)
    _assert_same(got, estimate_parallel(estimator, masks, backend="sequential", batch_size=3))


def test_an_estimator_class_of_the_calling_script_runs_on_loky(
    small_features: FeatureSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An estimator class defined in a notebook or script (``__main__``) is written for the
    loky workers by value: dumped by reference, as plain pickle does, the workers (which
    have no such class) failed with "AttributeError: Can't get attribute ...", a traceback
    from the search stage."""
    from subsetctl.estimate import executors

    monkeypatch.setattr(_OfTheScript, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "_OfTheScript", _OfTheScript, raising=False)
    estimator = _OfTheScript(small_features)
    masks = random_masks(6, small_features.n_sources, seed=0)
    try:
        got = estimate_parallel(estimator, masks, backend="loky", n_jobs=2, batch_size=3)
    finally:
        executors.forget_dumped_estimator()
    _assert_same(got, estimate_parallel(estimator, masks, backend="sequential", batch_size=3))


def test_a_worker_the_code_check_cannot_reach_is_not_blamed_on_the_code(small_features: FeatureSet) -> None:
    """The scheduler gives a worker it cannot reach (leaving the cluster, its connection
    lost) as that worker's answer: a CommClosedError or a timeout was said as "cannot load
    the estimator's code ... every worker must have subsetctl installed", stopping a search
    Dask would have run on the other workers."""
    from distributed.comm.core import CommClosedError

    from subsetctl.estimate.dask_backend import _check_workers_load

    class Answers:
        def __init__(self, answers: dict[str, Any]) -> None:
            self.answers = answers

        def run(self, function: Any, *args: Any, on_error: str) -> dict[str, Any]:
            return {worker: answer if isinstance(answer, BaseException) else function(*args)
                    for worker, answer in self.answers.items()}

    estimator = FastEstimator(small_features)
    for lost in (CommClosedError("in <TCP (closed) ...>: Stream is closed"), TimeoutError("connect timed out")):
        _check_workers_load(Answers({"tcp://a:1": lost, "tcp://b:1": None}), estimator, "tcp://s:8786")
    with pytest.raises(UserError, match=r"1 of the 2 Dask workers at 'tcp://s:8786' \(tcp://a:1\) cannot import 'gone'"):
        _check_workers_load(Answers({"tcp://a:1": ModuleNotFoundError("No module named 'gone'"), "tcp://b:1": None}),
                            estimator, "tcp://s:8786")


def test_ctrl_c_while_a_local_cluster_starts_stops_the_run_and_the_cluster() -> None:
    """SIGINT was ignored while the local cluster started, so that its workers inherited
    the ignore: a Ctrl-C then was dropped and the run went on. It is now raised once the
    cluster has started, and the cluster is closed; the workers still never get SIGINT."""
    import os
    import signal

    import dask.distributed as dd

    from subsetctl.estimate.dask_backend import _connect_dask

    started: list[Any] = []

    def interrupted_local_cluster(**kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C while the cluster starts
        started.append(dd.LocalCluster(**kwargs))
        return started[-1]

    with pytest.raises(KeyboardInterrupt):
        _connect_dask(SimpleNamespace(LocalCluster=interrupted_local_cluster, Client=dd.Client), 1, None, 5)
    assert len(started) == 1 and started[0].status.name == "closed"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own, put back

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # started as a background job: it stays ignored
    try:
        _connect_dask(SimpleNamespace(LocalCluster=interrupted_local_cluster, Client=dd.Client), 1, None, 5).close()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)

    connection = _connect_dask(dd, 1, None, 5)
    try:
        if Path("/proc").is_dir():  # Linux: the workers start with SIGINT blocked
            for worker in connection.cluster.workers.values():
                status = Path(f"/proc/{worker.process.pid}/status").read_text()
                blocked = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk")), 16)
                assert blocked & (1 << (signal.SIGINT - 1)), status
    finally:
        connection.close()


def test_stop_signal_while_a_local_cluster_starts_is_raised_once_it_has_started() -> None:
    """SIGTERM (or SIGHUP, SIGUSR1/2) while the local cluster started raised there, halfway:
    distributed then closed the half-started cluster at exit, after "stopped by SIGTERM", with
    an "Exception ignored in atexit callback" AssertionError traceback. Like a Ctrl-C, it is now
    raised once the cluster has started, and the cluster is closed; the handler is put back."""
    import os
    import signal

    from subsetctl.cli import Terminated, _stop_signals_as_interrupt
    from subsetctl.estimate.dask_backend import _connect_dask

    started: list[SimpleNamespace] = []

    def interrupted_local_cluster(**kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` while the cluster starts
        for _ in range(1000):  # (Python runs a handler between bytecodes: here, before the fix)
            pass
        started.append(SimpleNamespace(closed=False))
        started[-1].close = lambda: setattr(started[-1], "closed", True)
        return started[-1]

    with _stop_signals_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(Terminated):
            _connect_dask(SimpleNamespace(LocalCluster=interrupted_local_cluster), 1, None, 5)
        assert signal.getsignal(signal.SIGTERM) is handler
    assert len(started) == 1 and started[0].closed


def test_overlapping_silencing_of_distributed_logs_puts_the_levels_back() -> None:
    """Two overlapping uses (two threads' searches): the second saved the levels the first
    had set and put those "back" last, so distributed's logs stayed off for good."""
    from subsetctl.estimate.dask_backend import _distributed_logs_off

    logger = logging.getLogger("distributed.client")
    before = logger.level
    logger.setLevel(logging.INFO)
    try:
        first, second = _distributed_logs_off(), _distributed_logs_off()
        first.__enter__()
        second.__enter__()
        assert logger.level > logging.CRITICAL
        first.__exit__(None, None, None)
        assert logger.level > logging.CRITICAL  # the second is still on
        second.__exit__(None, None, None)
        assert logger.level == logging.INFO
    finally:
        logger.setLevel(before)  # distributed's own level, for later tests


def test_silencing_distributed_logs_sets_only_the_loggers_with_a_level_of_their_own() -> None:
    """Every setLevel clears all loggers' caches: setting each of distributed's ~60 loggers
    around every fetched result took a third of a local cluster's time per call. A logger
    without a level of its own is silenced through ``distributed``'s and keeps NOTSET."""
    from subsetctl.estimate.dask_backend import _distributed_logs_off

    inheriting = logging.getLogger("distributed.subsetctl_test_inheriting")
    own = logging.getLogger("distributed.subsetctl_test_own")
    own.setLevel(logging.INFO)
    try:
        with _distributed_logs_off():
            assert inheriting.level == logging.NOTSET
            assert not inheriting.isEnabledFor(logging.CRITICAL) and not own.isEnabledFor(logging.CRITICAL)
        assert inheriting.level == logging.NOTSET and own.level == logging.INFO
        assert own.isEnabledFor(logging.INFO)
    finally:
        own.setLevel(logging.NOTSET)


def test_fetching_a_result_keeps_dasks_gather_warning_off_the_terminal(capsys) -> None:
    """A worker lost while its result was fetched: distributed logged "Couldn't gather 1
    keys, rescheduling ..." on the terminal, between the progress bar and the search's own
    message about it."""
    from subsetctl.estimate.dask_backend import _fetched

    logger = logging.getLogger("distributed.client")
    handler = logging.StreamHandler()  # (where distributed's own config sends it: stderr)
    logger.addHandler(handler)
    before = logger.level
    logger.setLevel(logging.INFO)

    class _Future:
        def result(self, timeout: float | None = None) -> str:
            logger.warning("Couldn't gather 1 keys, rescheduling ('run-batch-1',)")
            return "estimates"

    try:
        for address in (None, "tcp://10.0.0.1:8786"):
            assert _fetched(_Future(), client=None, address=address, connect_timeout=10.0) == "estimates"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
    assert "Couldn't gather" not in capsys.readouterr().err
    assert logger.level == before


def test_loky_workers_take_one_projects_plugin_estimator_after_anothers_of_the_same_name(
        small_features: FeatureSet, tmp_path: Path, monkeypatch) -> None:
    """Two projects run one after the other in a notebook, each with its own plugin
    estimator registered as 'same_est': the calling process takes the first one's
    registration back after its call, but loky's workers (reused across calls) kept it,
    and unpickling the second one's estimator there failed with "Two plugins register the
    estimator 'same_est'"."""
    from joblib.externals.loky import get_reusable_executor

    from subsetctl.plugin_scoping import plugin_scope
    from subsetctl.registry import ESTIMATORS

    get_reusable_executor().shutdown(wait=True)  # workers that see this test's sys.path
    monkeypatch.syspath_prepend(str(tmp_path))
    masks = random_masks(6, len(small_features.sources), seed=3)
    expected = estimate_parallel(FastEstimator(small_features, lam=0.1), masks, backend="sequential", batch_size=3)
    for letter in "aba":
        module = f"same_est_{letter}"
        (tmp_path / f"{module}.py").write_text(
            "from subsetctl.estimate.solvers import FastEstimator\nfrom subsetctl.registry import ESTIMATORS\n"
            "@ESTIMATORS.register('same_est')\nclass Est(FastEstimator):\n    pass\n")
        with plugin_scope():  # as a run imports its spec's plugins: taken back when it returns
            estimator = importlib.import_module(module).Est(small_features, lam=0.1)
            result = estimate_parallel(estimator, masks, backend="loky", n_jobs=2, batch_size=3)
        _assert_same(result, expected)
    assert "same_est" not in ESTIMATORS.names()


def test_loky_dumps_an_estimator_once_for_the_calls_of_a_search(small_features: FeatureSet, monkeypatch) -> None:
    """A search estimates in chunks of 256 subsets, one call each: the estimator was dumped
    (and loaded by every worker) again for each, 45% of a backward search's 9.9 s over
    1,000 sources. The file is kept while the same estimator comes back unchanged; an
    attribute reassigned since (here lambda) is dumped again, not answered from the old file."""
    import joblib

    from subsetctl.estimate import executors

    dumps: list[str] = []
    real_dump = joblib.dump
    monkeypatch.setattr(joblib, "dump", lambda obj, path: (dumps.append(path), real_dump(obj, path))[1])
    est = FastEstimator(small_features, lam=0.1)
    masks = random_masks(12, small_features.n_sources, seed=0)
    try:
        for _ in range(2):
            _assert_same(estimate_parallel(est, masks, backend="loky", n_jobs=2, batch_size=4), est.estimate(masks))
        assert len(dumps) == 1
        kept = Path(dumps[0]).parent
        est.lam = 10.0
        _assert_same(estimate_parallel(est, masks, backend="loky", n_jobs=2, batch_size=4),
                     FastEstimator(small_features, lam=10.0).estimate(masks))
        assert len(dumps) == 2 and not kept.exists()  # the old file is removed
    finally:
        executors.forget_dumped_estimator()
    assert not Path(dumps[1]).parent.exists()


def test_loky_keeps_the_faster_of_its_workers_and_this_process(small_features: FeatureSet, monkeypatch) -> None:
    """A search calls the executor once per chunk of 256 subsets. Over 2,000 sources each
    loky call's dispatch cost more than the workers saved: a forward search took 1.5x as
    long as in one process on 2 cores. The first call runs on the workers (untimed), then
    TIMED_CALLS calls each way are timed and the faster is kept; the numbers are the same
    either way, and a new estimator (a new stage) is timed afresh."""
    from subsetctl.estimate import executors

    est = FastEstimator(small_features, lam=0.1)
    masks = random_masks(12, small_features.n_sources, seed=0)
    expected = est.estimate(masks)
    on_workers: list[int] = []
    real_workers, real_here = executors._joblib_results, executors._here

    def workers(*args: Any, slow: bool) -> Iterator[EstimateBatch]:
        on_workers.append(1)
        time.sleep(0.2 if slow else 0)
        yield from real_workers(*args)

    def here(*args: Any) -> Iterator[EstimateBatch]:
        time.sleep(0.2)
        yield from real_here(*args)

    try:
        monkeypatch.setattr(executors, "_joblib_results", lambda *a: workers(*a, slow=True))
        for _ in range(8):
            _assert_same(estimate_parallel(est, masks, backend="loky", n_jobs=2, batch_size=4), expected)
        assert len(on_workers) == 1 + executors.TIMED_CALLS  # then this process, faster, for the rest

        executors.forget_dumped_estimator()  # as the search stage does at its end
        on_workers.clear()
        monkeypatch.setattr(executors, "_joblib_results", lambda *a: workers(*a, slow=False))
        monkeypatch.setattr(executors, "_here", here)
        for _ in range(8):
            _assert_same(estimate_parallel(est, masks, backend="loky", n_jobs=2, batch_size=4), expected)
        assert len(on_workers) == 8 - executors.TIMED_CALLS  # the workers, faster, kept
    finally:
        executors.forget_dumped_estimator()
    assert not executors._timed


def test_a_local_dask_cluster_keeps_the_faster_of_its_workers_and_this_process(small_features: FeatureSet,
                                                                              monkeypatch) -> None:
    """Each call to a local Dask cluster cost 50-90 ms of dispatch: a greedy step of 60
    subsets took ~15x as long as in this process. As loky, the first call runs on the
    cluster (it starts it: untimed), TIMED_CALLS calls each way are timed and the faster is
    kept, with the same numbers; a cluster at an address the user named always gets the
    work, and a new stage (forget_scattered_estimator) times afresh."""
    from subsetctl.estimate import dask_backend, executors

    est = FastEstimator(small_features, lam=0.1)
    masks = random_masks(12, small_features.n_sources, seed=0)
    expected = est.estimate(masks)
    on_cluster: list[str | None] = []

    def slow_cluster(estimator: Any, masks: np.ndarray, slices: list[slice], n_jobs: int, address: str | None,
                     *rest: Any) -> list[EstimateBatch]:
        on_cluster.append(address)
        time.sleep(0.05)
        return [estimator.estimate(masks[s]) for s in slices]

    monkeypatch.setattr(dask_backend, "_dask_results", slow_cluster)
    try:
        for _ in range(6):
            _assert_same(estimate_parallel(est, masks, backend="dask", n_jobs=2, batch_size=4), expected)
        assert on_cluster == [None] * (1 + executors.TIMED_CALLS)  # then this process, faster, for the rest
        on_cluster.clear()
        for _ in range(3):
            _assert_same(estimate_parallel(est, masks, backend="dask", n_jobs=2, batch_size=4,
                                           address="tcp://127.0.0.1:8786"), expected)
        assert on_cluster == ["tcp://127.0.0.1:8786"] * 3
        dask_backend.forget_scattered_estimator()  # as the search stage does at its end
        assert not executors._timed
    finally:
        executors.forget_dumped_estimator()


def test_starting_a_local_cluster_is_announced_once(monkeypatch) -> None:
    """A local cluster's start took ~10 s on a loaded machine, on the search's first
    estimate, and nothing said what the search waited for: the search stage now logs it
    (announcing_cluster_start); a cluster reused, or one at an address, is not announced."""
    from subsetctl.estimate import dask_backend

    monkeypatch.setattr(dask_backend, "_connect_dask",
                        lambda *args: dask_backend._DaskConnection(SimpleNamespace(status="running")))
    said: list[str] = []
    with dask_backend.announcing_cluster_start(said.append):
        for _ in range(2):
            dask_backend._dask_client(2, None, 5)
        dask_backend._dask_client(1, None, 5)
        dask_backend._dask_client(2, "tcp://127.0.0.1:8786", 5)
    dask_backend._dask_client(3, None, 5)  # outside the block: not announced
    assert said == ["starting a local Dask cluster of 2 processes", "starting a local Dask cluster of 1 process"]


def test_dask_scatters_an_estimator_once_for_the_calls_of_a_search(small_features: FeatureSet, monkeypatch) -> None:
    """The estimator was scattered to every worker again for each call (a search's chunk of
    256 subsets), 30-40 ms and its bytes over the network each time. One scatter is kept
    while the same estimator comes back unchanged on the same client; it is scattered again
    when an attribute was reassigned (the old one released), when its data was lost with
    the workers, and released when the clients close."""
    import os

    import distributed

    from subsetctl.estimate import dask_backend, executors

    monkeypatch.setattr(executors, "TIMED_CALLS", 0)  # every call on the cluster, none in this process
    scattered: list[Any] = []
    real = distributed.Client.scatter
    monkeypatch.setattr(distributed.Client, "scatter",
                        lambda self, data, **kwargs: (scattered.append(data), real(self, data, **kwargs))[1])
    est = FastEstimator(small_features, lam=0.1)
    masks = random_masks(12, small_features.n_sources, seed=0)
    for _ in range(2):
        _assert_same(estimate_parallel(est, masks, backend="dask", n_jobs=1, batch_size=4), est.estimate(masks))
    assert len(scattered) == 1
    client, first = dask_backend._scattered["client"], dask_backend._scattered["future"].key
    est.lam = 10.0
    expected = FastEstimator(small_features, lam=10.0).estimate(masks)
    _assert_same(estimate_parallel(est, masks, backend="dask", n_jobs=1, batch_size=4), expected)
    assert len(scattered) == 2 and first not in client.futures  # the old one released
    kept = dask_backend._scattered["future"]
    with contextlib.suppress(Exception):
        client.run(os._exit, 1)  # the only worker dies with the estimator; its nanny starts another
    client.wait_for_workers(1, timeout=30)
    deadline = time.monotonic() + 10
    while kept.status == "finished" and time.monotonic() < deadline:
        time.sleep(0.05)
    _assert_same(estimate_parallel(est, masks, backend="dask", n_jobs=1, batch_size=4), expected)
    assert len(scattered) == 3
    close_dask_clients()
    assert dask_backend._scattered == {}


@pytest.mark.skipif(sys.platform == "win32", reason="no signal masks")
def test_loky_workers_start_with_sigint_blocked(exact: ExactEstimator) -> None:
    """Ctrl-C at a terminal sends SIGINT to every process of the run, the loky workers too:
    one still importing (a search's first call) printed a KeyboardInterrupt traceback of its
    own under subsetctl's "interrupted; finished work is kept". The workers start with
    SIGINT blocked, so that subsetctl alone takes the Ctrl-C and stops them."""
    import signal

    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor

    from subsetctl.estimate.executors import LOKY_IDLE_WORKER_TIMEOUT_S, _joblib_results
    from subsetctl.estimate.results import concat_batches

    get_reusable_executor().shutdown(wait=True)  # workers this call starts
    masks = random_masks(4, len(exact.sources), seed=2)
    parts = list(_joblib_results(exact, masks, [slice(0, 2), slice(2, 4)], "loky", 2))
    _assert_same(concat_batches(parts), exact.estimate(masks))
    blocked = Parallel(n_jobs=2, backend="loky", idle_worker_timeout=LOKY_IDLE_WORKER_TIMEOUT_S)(
        delayed(signal.pthread_sigmask)(signal.SIG_BLOCK, []) for _ in range(4))  # the same, reused workers
    assert all(signal.SIGINT in mask for mask in blocked), blocked
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # this process: as before


def test_loky_workers_are_started_blocked_only_when_they_may_start(exact: ExactEstimator) -> None:
    """Starting the workers with SIGINT blocked took a round trip of tiny tasks (3-13 ms)
    before every chunk of a search, on top of its dispatch; it is done when loky has no
    live workers of that number, and not again while they are up."""
    from joblib.externals.loky import get_reusable_executor

    from subsetctl.estimate.executors import _joblib_results, _loky_workers_may_start

    get_reusable_executor().shutdown(wait=True)
    assert _loky_workers_may_start(2)
    masks = random_masks(4, len(exact.sources), seed=3)
    list(_joblib_results(exact, masks, [slice(0, 2), slice(2, 4)], "loky", 2))
    assert not _loky_workers_may_start(2)  # up: the next chunk goes straight to them
    assert _loky_workers_may_start(3)  # another number: loky starts others
    get_reusable_executor().shutdown(wait=True)
    assert _loky_workers_may_start(2)


def test_dask_checks_each_worker_once_per_search_stage(small_features: FeatureSet, monkeypatch) -> None:
    """Every call (a search's chunk of 256 subsets, each greedy step) checked every worker's
    subsetctl and its loading of the estimator's code again: two round trips to all workers
    per call. Each worker process is checked once per search stage now; one that joins
    later is checked before its first tasks, alone, and the stage's end forgets them all."""
    import distributed
    from dask.distributed import LocalCluster

    from subsetctl.estimate import dask_backend

    checked: list[tuple[str, list[str] | None]] = []
    real = distributed.Client.run
    monkeypatch.setattr(distributed.Client, "run", lambda self, function, *args, **kwargs: (
        checked.append((function.__name__, kwargs.get("workers"))), real(self, function, *args, **kwargs))[1])
    est = FastEstimator(small_features, lam=0.1)
    masks = random_masks(12, small_features.n_sources, seed=0)
    expected = est.estimate(masks)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        try:
            address = cluster.scheduler_address
            for _ in range(3):
                _assert_same(estimate_parallel(est, masks, backend="dask", address=address, batch_size=4), expected)
            first = sorted(cluster.scheduler.workers)
            assert checked == [("subsetctl_code_digest", first), ("_load_code", first)]
            checked.clear()
            cluster.scale(2)
            client = dask_backend._scattered["client"]
            client.wait_for_workers(2, timeout=30)
            _assert_same(estimate_parallel(est, masks, backend="dask", address=address, batch_size=4), expected)
            joined = sorted(set(cluster.scheduler.workers) - set(first))
            assert checked == [("subsetctl_code_digest", joined), ("_load_code", joined)]
            checked.clear()
            dask_backend.forget_scattered_estimator()  # as the search stage does at its end
            _assert_same(estimate_parallel(est, masks, backend="dask", address=address, batch_size=4), expected)
            assert [name for name, _ in checked] == ["subsetctl_code_digest", "_load_code"]
            assert sorted(checked[0][1] or []) == sorted(cluster.scheduler.workers)
        finally:
            close_dask_clients()


def test_workers_that_read_subsetctl_before_it_was_edited_are_told_to_restart() -> None:
    """A worker reads subsetctl's files once: started before a checkout was edited, it ran the
    old code from the same folder, and was said to "run another copy of subsetctl (from
    /x/subsetctl ...). Install the same subsetctl there as here (/x/subsetctl)", the same
    folder named twice with no word of what happened."""
    from subsetctl.estimate.dask_backend import _check_workers_code
    from subsetctl.estimate.executors import subsetctl_code_digest

    class Answers:
        def run(self, function: Any, on_error: str) -> dict[str, Any]:
            return {"tcp://a:1": before_edit}

    here = subsetctl_code_digest()
    before_edit = {**here, "files": {**here["files"], "search/greedy.py": "0" * 64}}
    with pytest.raises(UserError) as refused:
        _check_workers_code(Answers(), "tcp://s:8786")
    message = " ".join(str(refused.value).split())
    assert f"run subsetctl from the same folder as here ({here['folder']}), but with other files" in message, message
    assert "1 file(s) differ: search/greedy.py" in message and "Restart the workers" in message, message
    assert "another copy of subsetctl" not in message, message


def test_a_plugin_estimators_print_on_loky_workers_goes_to_stderr(
        small_features: FeatureSet, tmp_path: Path, monkeypatch, capfd) -> None:
    """`run --format json` sends this process's prints to stderr, but a plugin estimator's
    print() on loky's workers (processes writing to the same stdout) came first on stdout,
    before the JSON, which a script could then not parse."""
    from joblib.externals.loky import get_reusable_executor

    from subsetctl.estimate import executors

    get_reusable_executor().shutdown(wait=True)  # workers that see this test's sys.path and stdout
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "printing_est.py").write_text(
        "from subsetctl.estimate.solvers import FastEstimator\n"
        "class Est(FastEstimator):\n"
        "    def estimate(self, masks):\n"
        "        print('PRINTED BY THE PLUGIN', flush=True)\n"
        "        return super().estimate(masks)\n")
    estimator = importlib.import_module("printing_est").Est(small_features, lam=0.1)
    masks = random_masks(6, len(small_features.sources), seed=3)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # as `--format json` runs a command
            estimate_parallel(estimator, masks, backend="loky", n_jobs=2, batch_size=3)
    finally:
        executors.forget_dumped_estimator()
        get_reusable_executor().shutdown(wait=True)
    out, err = capfd.readouterr()
    assert "PRINTED BY THE PLUGIN" not in out and "PRINTED BY THE PLUGIN" in err


@pytest.mark.parametrize("backend", ["dask", "threading"])
def test_a_plugin_estimators_print_on_dask_or_threads_stays_off_json_stdout(
        backend: str, small_features: FeatureSet, tmp_path: Path, monkeypatch, capfd) -> None:
    """The local Dask cluster's workers are processes writing to this process's stdout: a
    plugin estimator's print() there came before `run --format json`'s JSON (as loky's did).
    The threading backend's batches run in this process, under the command's own redirection."""
    from subsetctl.estimate import dask_backend

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / f"printing_est_{backend}.py").write_text(
        "print('PRINTED AT IMPORT', flush=True)\n"  # on each Dask worker too, as it loads the estimator
        "from subsetctl.estimate.solvers import FastEstimator\n"
        "class Est(FastEstimator):\n"
        "    def estimate(self, masks):\n"
        "        print('PRINTED BY THE PLUGIN', flush=True)\n"
        "        return super().estimate(masks)\n")
    masks = random_masks(6, len(small_features.sources), seed=3)
    stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):  # as `--format json` runs a command
            estimator = importlib.import_module(f"printing_est_{backend}").Est(small_features, lam=0.1)
            got = estimate_parallel(estimator, masks, backend=backend, n_jobs=2, batch_size=3)
    finally:
        dask_backend.forget_scattered_estimator()
    out, err = capfd.readouterr()
    assert "PRINTED BY THE PLUGIN" not in out and "PRINTED BY THE PLUGIN" in err
    assert "PRINTED AT IMPORT" not in out and err.count("PRINTED AT IMPORT") >= (2 if backend == "dask" else 1), err
    assert sys.stdout is stdout
    _assert_same(got, estimate_parallel(estimator, masks, backend="sequential", batch_size=3))


@pytest.mark.parametrize("backend", ["sequential", "threading", "loky"])
def test_a_plugin_estimators_print_goes_to_stderr_in_text_mode_on_every_backend(
        backend: str, small_features: FeatureSet, capfd) -> None:
    """Without `--format json`'s redirection a plugin estimator's print() went to stdout on the
    sequential and threading backends (and on loky's batches run in this process) but to
    stderr on loky and Dask workers: plugin code prints on stderr, one place for all."""
    from subsetctl.estimate.solvers import FastEstimator
    from subsetctl.plugin_guard import CheckedEstimator

    class Printing(FastEstimator):
        def estimate(self, masks):
            print("PRINTED BY THE PLUGIN", flush=True)
            return super().estimate(masks)

    estimator = CheckedEstimator(Printing(small_features, lam=0.1), "printing", "module printing")
    masks = random_masks(6, len(small_features.sources), seed=3)
    stdout = sys.stdout
    # (loky with one batch runs it here; a local class cannot be pickled for its workers)
    estimate_parallel(estimator, masks, backend=backend, n_jobs=2 if backend == "threading" else 1, batch_size=3)
    out, err = capfd.readouterr()
    assert "PRINTED BY THE PLUGIN" not in out and "PRINTED BY THE PLUGIN" in err
    assert sys.stdout is stdout


def test_prints_to_stderr_puts_stdout_back_after_overlapping_threads() -> None:
    """Tasks in a Dask worker's threads overlap: with contextlib.redirect_stdout, one leaving
    after another entered put back the other's stderr, and the worker's stdout stayed stderr."""
    from subsetctl.plugin_guard import prints_to_stderr as _prints_to_stderr

    stdout = sys.stdout
    first, second = _prints_to_stderr(), _prints_to_stderr()
    first.__enter__()
    second.__enter__()
    assert sys.stdout is sys.stderr
    first.__exit__(None, None, None)
    assert sys.stdout is sys.stderr  # the second is still estimating
    second.__exit__(None, None, None)
    assert sys.stdout is stdout


_KILLED_WITH_A_SEMAPHORE = """
import multiprocessing, os, signal
from subsetctl.estimate.executors import _sigint_blocked_for_new_threads
with _sigint_blocked_for_new_threads():  # as a LocalCluster starts
    lock = multiprocessing.get_context("spawn").Lock()  # a worker's semaphore, which the tracker registers
print(lock._semlock.name, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # killed outright: the OOM killer, a scheduler's hard limit
"""


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="POSIX semaphores as files: Linux")
def test_a_run_killed_outright_leaves_no_semaphore_and_no_warning_of_one() -> None:
    """SIGKILL of a run on a Dask LocalCluster left multiprocessing's resource tracker printing
    "UserWarning: resource_tracker: There appear to be 12 leaked semaphore objects to clean up at
    shutdown" after the shell's prompt, read as a leak to see to; it removes them as it says."""
    import subprocess
    import sys

    killed = subprocess.run([sys.executable, "-c", _KILLED_WITH_A_SEMAPHORE], check=False, capture_output=True,
                            text=True, timeout=60)  # (its stderr ends once the tracker is done)
    assert killed.returncode == -9, killed.stderr[-800:]
    assert "leaked" not in killed.stderr and "resource_tracker" not in killed.stderr, killed.stderr[-800:]
    name = killed.stdout.strip().lstrip("/")
    assert name and not (Path("/dev/shm") / f"sem.{name}").exists()  # removed all the same


@pytest.mark.parametrize("name", ["fast", "exact"])
def test_this_process_on_two_blas_threads_gives_a_one_thread_workers_bits(
        name: str, blas_threads_here: Callable[[int], object], monkeypatch: pytest.MonkeyPatch) -> None:
    """At d = 128 OpenBLAS factors the Hessians (numpy.linalg.solve, inv) with another
    algorithm on two threads than on one: the estimates of this process, on numpy's default
    threads, differed in the last bit from those of loky workers on one thread each (2 cores,
    n_jobs 2) or of a local Dask cluster's, so sequential and loky, or loky's calls kept here
    and those on its workers, gave other bits. The factorizations run on one thread
    everywhere now."""
    from subsetctl.estimate import executors
    from subsetctl.estimate.synthetic import make_synthetic_features
    from subsetctl.registry import ESTIMATORS

    features = make_synthetic_features(n_sources=6, rows_per_source=40, d=128, n_target_train=40, n_val=30,
                                       seed=5, helpful=(0, 1), harmful=(2,))
    estimator = ESTIMATORS.get(name)(features, lam=0.1)
    masks = random_masks(48, features.n_sources, seed=6)
    blas_threads_here(2)  # numpy's default on 2 cores
    here = estimate_parallel(estimator, masks, backend="sequential")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # what loky gives each of 2 workers on 2 cores
    monkeypatch.setattr(executors, "TIMED_CALLS", 0)  # every call on the workers
    try:
        _assert_same(here, estimate_parallel(estimator, masks, backend="loky", n_jobs=2, batch_size=12))
    finally:
        executors.forget_dumped_estimator()
