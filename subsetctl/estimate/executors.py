"""Run an estimator over many masks in parallel: joblib (loky, threading) or Dask.

Masks are cut into batches of ``batch_size``, or by default into at least as many
batches as there are workers (``n_jobs``; a Dask cluster's worker threads with an
``address``), each batch is estimated by one worker, and the results are put back in
request order. Because a mask's estimate does not depend on the other masks of its batch
(:mod:`subsetctl.estimate.solvers`), every backend returns the same numbers as the
sequential one.

Shipping the estimator: for loky it is written with :func:`joblib.dump` to a temporary
folder (``/dev/shm`` when it has room) and workers load it memory-mapped, once per
process; so the exact estimator's rows (N x d float64) are shared, not copied per task.
The file is kept for the next call with the same estimator (the same object, its
attributes not reassigned): a search estimates in chunks of 256 subsets, one call each
(:func:`forget_dumped_estimator` removes it; it runs at exit). For Dask it is scattered
to every worker, and kept there for the next call likewise (on the same client, while
its data is not lost; :func:`forget_scattered_estimator` releases it).

The loky backend times an estimator's first calls both on its workers and in this process,
and runs its further calls the faster way (:func:`_loky_or_here`): a search's many small
calls can cost more in dispatch than the workers save.

Dask clients (and the LocalCluster started when no ``address`` is given) are opened on
first use and kept for the rest of the process, one per settings, so a search that
estimates step by step does not start a cluster per step; :func:`close_dask_clients`
closes them (it runs at exit). Dask problems a user can fix (dask not installed, a
malformed or unreachable address, no workers, workers without subsetctl or with another
copy of it, a scheduler lost or no longer answering) are UserErrors.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from subsetctl import __version__
from subsetctl.errors import UserError
from subsetctl.estimate.base import EstimateBatch, SubsetEstimator
from subsetctl.estimate.results import concat_batches, empty_batch

BACKENDS = ("sequential", "loky", "threading", "dask")
#: Default number of batches a request is cut into (when ``batch_size`` is not given).
TARGET_BATCHES = 8
#: Largest default batch; estimators may lower it with a ``chunk_size`` attribute.
MAX_DEFAULT_BATCH = 1024

ProgressFn = Callable[[int, int], None]

_WORKER_CACHE: dict[str, SubsetEstimator] = {}


def default_batch_size(n_masks: int, estimator: SubsetEstimator, workers: int = 1) -> int:
    """Batch size used when none is given: about ``TARGET_BATCHES`` batches, or one per
    worker when there are more ``workers`` (with 8 batches, a search's 256-subset chunks
    kept only 8 of 16 loky workers, or of a Dask cluster's 64, busy), capped by the
    estimator's own ``chunk_size`` (if it has one) and ``MAX_DEFAULT_BATCH``."""
    cap = int(getattr(estimator, "chunk_size", MAX_DEFAULT_BATCH))
    return max(1, min(cap, MAX_DEFAULT_BATCH, math.ceil(n_masks / max(TARGET_BATCHES, workers))))


def _batches(n: int, size: int) -> list[slice]:
    """``n`` masks cut into slices of ``size`` (the last one shorter), in order."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _run_batch(estimator: SubsetEstimator, masks: np.ndarray) -> EstimateBatch:
    """Worker side of the threading backend: estimate one batch of ``masks``. It runs in this
    process, whose prints a `--format json` command already sends to stderr for the whole
    command (see :mod:`subsetctl.cli`): ``sys.stdout`` is one for all threads, so it is not
    redirected here, per batch, where the threads' redirections would undo each other."""
    return estimator.estimate(masks)


#: :func:`_prints_to_stderr`: its lock, the calls inside it, and the stdout it replaced
_STDOUT_LOCK = threading.Lock()
_stdout_redirections = 0
_stdout_before: Any = None


@contextlib.contextmanager
def _prints_to_stderr() -> Iterator[None]:
    """Worker side: ``sys.stdout`` is ``sys.stderr`` while any task is inside, so that what a
    plugin estimator prints goes to stderr. A worker of the local Dask cluster, or of loky,
    shares this process's stdout, which holds only the JSON of a `--format json` command (see
    :mod:`subsetctl.cli`): a print there came before the JSON, and a script could not parse
    it. Counted under a lock, not :func:`contextlib.redirect_stdout`: a Dask worker runs its
    tasks in threads (``threads_per_worker``), and each thread putting back the stdout it
    found could leave a worker's stdout on stderr for good."""
    global _stdout_redirections, _stdout_before
    with _STDOUT_LOCK:
        if _stdout_redirections == 0:
            _stdout_before, sys.stdout = sys.stdout, sys.stderr
        _stdout_redirections += 1
    try:
        yield
    finally:
        with _STDOUT_LOCK:
            _stdout_redirections -= 1
            if _stdout_redirections == 0:
                sys.stdout, _stdout_before = _stdout_before, None


def _run_on_dask_worker(estimator: SubsetEstimator, masks: np.ndarray) -> EstimateBatch:
    """Worker side of the Dask backend: estimate one batch of ``masks``, the estimator's
    prints sent to stderr (:func:`_prints_to_stderr`)."""
    with _prints_to_stderr():
        return estimator.estimate(masks)


def _run_from_file(path: str, masks: np.ndarray) -> EstimateBatch:
    """Worker side of the loky backend: load the dumped estimator once per process; what it
    prints goes to stderr (:func:`_prints_to_stderr`)."""
    with _prints_to_stderr():
        est = _WORKER_CACHE.get(path)
        if est is None:
            import joblib

            _WORKER_CACHE.clear()  # keep only the current call's estimator
            with _registrations_taken_back():
                est = joblib.load(path, mmap_mode="r")
            _WORKER_CACHE[path] = est
        return est.estimate(masks)


def _registrations_taken_back() -> contextlib.AbstractContextManager[None]:
    """Worker side: what a plugin module registers as unpickling the estimator imports it is
    taken back afterwards, as the calling process does after each call. A worker outlives
    the call (loky reuses its workers; a Dask cluster at an ``address`` serves many runs), so
    another project's plugin registering the same name (its own estimator ``my_estimator``)
    failed there with "Two plugins register the estimator"; the worker needs the class,
    not the registry."""
    from subsetctl.plugin_scoping import plugin_scope

    return plugin_scope()


def _load_code(code: bytes) -> None:
    """Worker side of :func:`_check_workers_load`: import the estimator's code, what a plugin
    module prints as it is imported sent to stderr (:func:`_prints_to_stderr`)."""
    import pickle

    with _prints_to_stderr(), _registrations_taken_back():
        pickle.loads(code)


#: the workers of the loky backend exit after this long without work (loky's default is
#: 300 s): the calls of one search follow each other closely, and the workers of a run
#: killed with SIGKILL (which cannot stop them) should not linger, holding its output open
LOKY_IDLE_WORKER_TIMEOUT_S = 60


#: the estimator folders (:func:`_temp_dir`): ``subsetctl-estimator-<PID>-<random>``
_TEMP_PREFIX = "subsetctl-estimator-"
_ESTIMATOR_FILE = "estimator.joblib"
_swept: set[Path] = set()


def _temp_dir(nbytes: int) -> str:
    """A folder for the dumped estimator, in ``/dev/shm`` (memory) when it has room. Its
    name carries this process's PID, so that the folders of runs killed before they could
    delete theirs (SIGKILL, out of memory) are found and deleted, once per process."""
    shm = Path("/dev/shm")
    roomy = shm.is_dir() and os.access(shm, os.W_OK)
    prefix = f"{_TEMP_PREFIX}{os.getpid()}-"
    for parent in ([shm] if roomy else []) + [Path(tempfile.gettempdir())]:
        if parent not in _swept:
            _swept.add(parent)
            _delete_dead_runs_temp_dirs(parent)
    if roomy and shutil.disk_usage(shm).free > 2 * nbytes + (64 << 20):
        return tempfile.mkdtemp(prefix=prefix, dir=shm)
    return tempfile.mkdtemp(prefix=prefix)


def _delete_dead_runs_temp_dirs(parent: Path) -> None:
    """Delete the estimator folders (:func:`_temp_dir`) in ``parent`` whose process is gone:
    only folders named so that hold nothing but the dumped estimator (a PID seen from
    another container sharing /dev/shm may look dead; a folder of anyone else's is never
    ours)."""
    from subsetctl.file_locks import pid_alive

    with contextlib.suppress(OSError):
        for folder in parent.glob(f"{_TEMP_PREFIX}*-*"):
            owner = folder.name[len(_TEMP_PREFIX):].split("-")[0]
            if not (folder.is_dir() and owner.isdigit()) or pid_alive(int(owner)):
                continue
            if {entry.name for entry in folder.iterdir()} <= {_ESTIMATOR_FILE}:
                shutil.rmtree(folder, ignore_errors=True)


def _array_bytes(estimator: Any) -> int:
    """Bytes of the numpy arrays ``estimator`` holds (in its attributes, and the lists, tuples
    and dicts among them, each array once): about the size of its dump, which
    :func:`_temp_dir` puts in ``/dev/shm`` only when that has room for it."""
    total = 0
    stack = [estimator]
    seen: set[int] = set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            total += obj.nbytes
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return total


def _joblib_results(
    estimator: SubsetEstimator,
    masks: np.ndarray,
    slices: list[slice],
    backend: str,
    n_jobs: int,
) -> Iterator[EstimateBatch]:
    """The batches ``slices`` of ``masks`` estimated by joblib's ``backend`` ("threading": the
    estimator shared in memory; "loky": dumped once for the worker processes, see
    :func:`_dumped_estimator`), yielded in the order of ``slices``."""
    from joblib import Parallel, delayed

    if backend == "threading":
        parallel = Parallel(n_jobs=n_jobs, backend="threading", return_as="generator")
        yield from parallel(delayed(_run_batch)(estimator, masks[s]) for s in slices)
        return
    path = _dumped_estimator(estimator)
    with Parallel(n_jobs=n_jobs, backend="loky", return_as="generator",
                  idle_worker_timeout=LOKY_IDLE_WORKER_TIMEOUT_S) as parallel:
        if _loky_workers_may_start(n_jobs):
            # the workers start (or are found running) with SIGINT blocked: a Ctrl-C while they
            # were importing made each print a KeyboardInterrupt traceback of its own
            with _sigint_blocked_for_new_threads():
                list(parallel(delayed(os.getpid)() for _ in range(n_jobs)))
        yield from parallel(delayed(_run_from_file)(path, masks[s]) for s in slices)


def _loky_workers_may_start(n_jobs: int) -> bool:
    """Whether a loky call with ``n_jobs`` may start workers: unless loky's reusable
    executor is up with ``n_jobs`` live workers (the earlier calls of a search), it may. Only
    then are they started with SIGINT blocked: that round trip of ``n_jobs`` tiny tasks took
    3-13 ms here, which every chunk of a search paid on top of its 10-30 ms of dispatch.
    Read from loky's internals; anything unexpected there counts as "may start"."""
    try:
        from joblib.externals.loky import reusable_executor

        executor = reusable_executor._executor
        processes = dict(executor._processes) if executor is not None else {}
        return (executor is None or executor._max_workers != n_jobs or len(processes) != n_jobs
                or bool(getattr(executor, "_broken", None)) or bool(getattr(executor, "_shutdown_thread", None))
                or not all(process.is_alive() for process in processes.values()))
    except Exception:  # noqa: BLE001 - another joblib: start them blocked, as always before
        return True


#: the estimator the last loky call dumped: ``estimator``, ``attributes`` (its attribute values
#: then), ``folder``, ``path``. Dumping it again for every call (and the workers loading it
#: again) took 45% of a backward search's 9.9 s over 1,000 sources (5.5 s with it kept).
_dumped: dict[str, Any] = {}


def _attribute_values(estimator: Any) -> list[Any]:
    """``estimator``'s attributes as (name, value) pairs: what :func:`_same_estimator` compares."""
    return list(vars(estimator).items()) if hasattr(estimator, "__dict__") else []


def _same_estimator(kept: dict[str, Any], estimator: Any, attributes: list[Any]) -> bool:
    """Whether ``kept`` (:data:`_dumped`, :data:`_scattered`) holds ``estimator``, none of its
    attributes reassigned since (their values are held, so compared by identity)."""
    return (kept.get("estimator") is estimator and len(attributes) == len(kept["attributes"])
            and all(k == k0 and v is v0 for (k, v), (k0, v0) in zip(attributes, kept["attributes"])))


def _dumped_estimator(estimator: SubsetEstimator) -> str:
    """The path of ``estimator`` dumped for the loky workers: the last call's file when it
    is the same object and none of its attributes was reassigned since (their values are
    held, so compared by identity), else a new file (the last one removed)."""
    attributes = _attribute_values(estimator)
    if _same_estimator(_dumped, estimator, attributes) and os.path.exists(_dumped["path"]):
        return str(_dumped["path"])
    _forget_dumped_file()

    folder = _temp_dir(_array_bytes(estimator))
    path = os.path.join(folder, _ESTIMATOR_FILE)
    try:
        _dump_for_workers(estimator, path)
    except BaseException as exc:  # a plugin holding a lambda, an open file, ...; or Ctrl-C
        shutil.rmtree(folder, ignore_errors=True)
        if not isinstance(exc, Exception):
            raise
        from subsetctl.plugin_guard import unpicklable_plugin

        blamed = unpicklable_plugin(estimator, "loky", exc)
        if blamed is None:
            raise
        raise blamed from exc
    _dumped.update(estimator=estimator, attributes=attributes, folder=folder, path=path)
    return path


def _dump_for_workers(estimator: SubsetEstimator, path: str) -> None:
    """Write ``estimator`` to ``path`` for the loky workers to load: with joblib (plain
    pickle, its arrays memory-mapped by the workers), or with cloudpickle when its code is
    one the workers cannot import (an estimator class of the script or notebook calling
    subsetctl, in ``__main__``, or of a module registered with
    ``cloudpickle.register_pickle_by_value``), which then travels by value."""
    import joblib

    code = _referenced_code(estimator)
    if code is None or len(_by_reference(code, estimator)) == len(code):
        joblib.dump(estimator, path)
        return
    import cloudpickle

    with open(path, "wb") as file:
        cloudpickle.dump(estimator, file, protocol=5)


def forget_dumped_estimator() -> None:
    """Remove the estimator file kept for the loky workers (the next call dumps it again),
    and the timings kept of it (:func:`_loky_or_here`). Safe to call any time; runs at
    interpreter exit."""
    _timed.clear()
    _forget_dumped_file()


def _forget_dumped_file() -> None:
    """Forget the estimator the last loky call dumped (:data:`_dumped`) and delete its folder."""
    folder = _dumped.get("folder")
    _dumped.clear()
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


atexit.register(forget_dumped_estimator)


# ------------------------------------------------------------------------------ dask


@dataclass
class _DaskConnection:
    """A Dask client and, when this module started it, the LocalCluster it talks to."""

    client: Any
    cluster: Any | None = None
    #: the process environment from before the LocalCluster started, put back when it closes
    environment: dict[str, str] | None = None

    @property
    def alive(self) -> bool:
        return self.client.status == "running"

    def close(self) -> None:
        """Close the client, then the cluster; neither raises (this runs at exit too), and
        neither logs: a client whose scheduler is gone logged its cancelled reconnect as an
        ERROR with a traceback, after the search's own message."""
        with _distributed_logs_off():
            # (asyncio.CancelledError is no Exception: a close cancelled as the scheduler goes)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                self.client.close()
            if self.cluster is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    self.cluster.close()
                _forget_closed_schedulers()
        if self.environment is not None:  # a worker restarted meanwhile set them again
            _environment_put_back(self.environment)


def _forget_closed_schedulers() -> None:
    """Let the scheduler of a closed LocalCluster be freed. distributed caches, process-wide
    and without bound, whether each handler it has called takes a ``comm``
    (``distributed.core._expects_comm``, a ``functools.cache`` keyed by bound methods), so
    every scheduler ever started stayed alive, with its state and the log handler it adds
    to the ``distributed.scheduler`` logger: one more per search stage run on ``dask`` in a
    notebook or a sweep script. Clearing the cache only costs a signature lookup per handler."""
    core = sys.modules.get("distributed.core")
    cache_clear = getattr(getattr(core, "_expects_comm", None), "cache_clear", None)
    if callable(cache_clear):
        cache_clear()


_LOGS_OFF_LOCK = threading.Lock()
_logs_off_depth = 0
_logs_off_levels: list[tuple[logging.Logger, int]] = []


@contextlib.contextmanager
def _distributed_logs_off() -> Iterator[None]:
    """Every ``distributed`` logger silenced, their levels put back when the last of
    overlapping uses (threads, or nested ones) ends: a second use that saved the levels the
    first had set kept every log off for good once it put them "back"."""
    global _logs_off_depth
    with _LOGS_OFF_LOCK:
        if _logs_off_depth == 0:
            loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
                       if name == "distributed" or name.startswith("distributed.")]
            _logs_off_levels[:] = [(logger, logger.level) for logger in loggers]
            for logger in loggers:
                logger.setLevel(logging.CRITICAL + 1)
        _logs_off_depth += 1
    try:
        yield
    finally:
        with _LOGS_OFF_LOCK:
            _logs_off_depth -= 1
            if _logs_off_depth == 0:
                for logger, level in _logs_off_levels:
                    logger.setLevel(level)
                _logs_off_levels.clear()


#: Open Dask connections, one per scheduler address (per ``n_jobs`` for a LocalCluster),
#: reused by every call of the process (a greedy search calls once per step: starting a
#: LocalCluster each time cost seconds per call). Closed by :func:`close_dask_clients`, at
#: the latest at exit.
_DASK_CONNECTIONS: dict[tuple[str | None, int | None], _DaskConnection] = {}
_DASK_LOCK = threading.Lock()
_DASK_AT_EXIT = False

_MISSING_MODULE = re.compile(r"No module named '([^']+)'")


def _import_dask() -> ModuleType:
    """The ``dask.distributed`` module, or a UserError saying how to install it."""
    try:
        import dask.distributed
    except ImportError as exc:
        from subsetctl.doctor import DASK_ADVICE

        raise UserError(f"executor.backend is dask, but {_what_is_missing(exc)}. {DASK_ADVICE}") from exc
    return dask.distributed


def _what_is_missing(exc: ImportError) -> str:
    """Which of dask and distributed is not installed, from ``exc`` or the error it was
    raised from: dask without distributed (``pip install dask``) raises its own
    several-line advice to conda- or pip-install distributed, which the message quoted."""
    cause: BaseException | None = exc
    while cause is not None:
        name = str(getattr(cause, "name", None) or "").split(".")[0] if isinstance(cause, ModuleNotFoundError) else ""
        if name in ("dask", "distributed"):
            return f"{name} is not installed here" + (" (dask is)" if name == "distributed" else "")
        cause = cause.__cause__
    return f"dask.distributed cannot be imported here ({' '.join(str(exc).split())[:200]})"


def _bad_address(address: str, reason: Exception) -> UserError:
    """The UserError for an ``executor.address`` that is no Dask scheduler address (``reason``: why)."""
    return UserError(
        f"executor.address {address!r} is not a Dask scheduler address ({reason}). Use the form "
        "tcp://HOST:PORT (what `dask scheduler` prints), or drop the address to use a local cluster."
    )


def check_dask_address(address: str) -> None:
    """Raise a UserError unless ``address`` is a Dask scheduler address: ``tcp://HOST:PORT``
    (or ``tls://``, ``ws://``, ``ucx://``), ``inproc://...`` or ``HOST:PORT``, with a PORT
    from 1 to 65535.

    Checked before connecting: a Client half-built from a malformed address is closed by
    its ``__del__`` at exit, after a hang and with a stray traceback.
    """
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme != "inproc":
            _, port = parse_host_port(location)  # no default port: "localhost" alone is refused
            if not 1 <= port <= 65535:  # parsed as any integer: 99999 would only time out
                raise ValueError(f"port {port} is not between 1 and 65535")
    except (ValueError, TypeError) as exc:
        raise _bad_address(address, exc) from exc


def _connect_dask(dd: ModuleType, n_jobs: int, address: str | None, connect_timeout: float) -> _DaskConnection:
    """A new client: of the scheduler at ``address``, else of a new LocalCluster with
    ``n_jobs`` single-threaded worker processes."""
    if address is None:
        environment = dict(os.environ)
        cluster = None
        try:
            with _sigint_blocked_for_new_threads():  # and for the workers: Ctrl-C stops subsetctl, not them
                cluster = dd.LocalCluster(
                    n_workers=n_jobs,
                    threads_per_worker=1,
                    processes=True,
                    # no dashboard, and its HTTP server on this machine only and off port 8787 (a
                    # warning when something else holds it; ":0" alone listened on every interface)
                    dashboard_address="127.0.0.1:0",
                    scheduler_kwargs={"dashboard": False},
                    silence_logs=logging.CRITICAL,  # failures reach the user as errors of the search
                )
            # distributed's nanny sets OMP_NUM_THREADS=1, PYTHONHASHSEED, ... in this process's own
            # environment for its workers to inherit: programs a notebook starts later would too
            _environment_put_back(environment)
            return _DaskConnection(dd.Client(cluster, set_as_default=False), cluster, environment)
        except BaseException:  # a Ctrl-C while it started (raised as the block is lifted), a failed
            if cluster is not None:  # client: the cluster just started would outlive it
                with contextlib.suppress(Exception):
                    cluster.close()
                _forget_closed_schedulers()
            _environment_put_back(environment)
            raise
    check_dask_address(address)
    unreachable = (f"Could not reach the Dask scheduler at {address!r} within {connect_timeout:g} s ({{}}). "
                   "Start it (`dask scheduler`), check the address and port, or drop the address to use "
                   "a local cluster.")
    try:
        client = _within(_answer_within(connect_timeout), lambda: _new_client(dd, address, connect_timeout))
    except ValueError as exc:  # a form the check above let through but dask refuses
        raise _bad_address(address, exc) from exc
    except _NoAnswer:  # something listens there, but the Dask handshake never completes
        raise UserError(
            f"No Dask scheduler answered at {address!r} within {_answer_within(connect_timeout):g} s: something "
            "listens on that port but did not complete Dask's handshake (another service, such as the "
            "dashboard's port 8787, or a scheduler too busy to answer). Give the scheduler's own address "
            "(`dask scheduler` prints it; the default port is 8786)."
        ) from None
    except (OSError, TimeoutError, asyncio.CancelledError) as exc:
        raise UserError(unreachable.format(exc)) from exc
    except Exception as exc:  # a non-Dask server's bytes read as a Dask message (MemoryError, ...)
        if "ssl_context" in str(exc):  # tls:// without Dask's TLS settings: refused here, before connecting
            raise UserError(
                f"executor.address {address!r} is a TLS address, but this machine's Dask configuration has no "
                "TLS settings to connect with (distributed.comm.tls: ca-file, client.cert and client.key, e.g. "
                "in ~/.config/dask/distributed.yaml, or the DASK_DISTRIBUTED__COMM__TLS__... environment "
                "variables). Set them as the scheduler's administrator says, or give its tcp:// address."
            ) from exc
        detail = " ".join(str(exc).split())[:200]
        raise UserError(
            f"Could not connect to a Dask scheduler at {address!r} ({type(exc).__name__}"
            f"{': ' + detail if detail else ''}); a server that is not a Dask scheduler answers like this. "
            "Give the scheduler's address (`dask scheduler` prints it; the default port is 8786)."
        ) from exc
    return _DaskConnection(client)


def scheduler_threads(address: str, connect_timeout: float) -> tuple[int, int]:
    """(workers, their threads) of the Dask scheduler at ``address``, asked as the search
    connects (:func:`_connect_dask`: the same UserErrors, for a port that is no Dask
    scheduler's too); for `doctor`, which tried only a TCP connection."""
    conn = _connect_dask(_import_dask(), 1, address, connect_timeout)
    try:
        nthreads = conn.client.nthreads()
    finally:
        conn.close()
    return len(nthreads), sum(nthreads.values())


def _new_client(dd: ModuleType, address: str, connect_timeout: float) -> Any:
    """``dd.Client(address)``, closed when it fails to connect: the half-built client of a
    server that answers but is no Dask scheduler stayed open, kept alive by the error's
    traceback until exit, where its ``__del__`` hung 10 s and printed a traceback."""
    client = dd.Client.__new__(dd.Client)
    try:
        client.__init__(address, timeout=f"{connect_timeout}s", set_as_default=False)
    except BaseException:
        with contextlib.suppress(Exception):
            client.close(timeout=connect_timeout)
        raise
    return client


def _answer_within(connect_timeout: float) -> float:
    """Seconds a scheduler has to answer a request: its handshake's bound as it connects
    (``executor.connect_timeout`` twice, and a second), also while a search waits on it."""
    return 2 * connect_timeout + 1


class _NoAnswer(Exception):
    """:func:`_within` ran out of time."""


def _within(seconds: float, make: Callable[[], Any]) -> Any:
    """``make()``, given up after ``seconds``: distributed's Client waits for a scheduler's
    handshake without a timeout, so a port held by another server hung the search forever.
    The attempt is left to finish in a daemon thread (it holds no lock and no file)."""
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            outcome["value"] = make()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=attempt, name="subsetctl-dask-connect", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _NoAnswer
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _environment_put_back(environment: dict[str, str]) -> None:
    """``os.environ`` as ``environment`` (a copy taken before): variables set since are
    removed, changed ones get their values back."""
    for key in set(os.environ) - set(environment):
        del os.environ[key]
    for key, value in environment.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@contextlib.contextmanager
def _sigint_blocked_for_new_threads() -> Iterator[None]:
    """SIGINT blocked in this thread while a LocalCluster, or the loky backend's workers,
    start. The threads it starts inherit the block, and so do the worker processes they
    spawn (a signal mask survives fork and exec), so a Ctrl-C reaches this process alone,
    which then closes the cluster (joblib, the loky workers); the workers do not die first
    with tracebacks of their own.

    A Ctrl-C meanwhile is not lost: it is recorded (it stays pending until the block is
    lifted, or an older thread of this process takes it) and raised again once the cluster
    has started, for the SIGINT handler from before (Python's raises KeyboardInterrupt) and
    the caller to close the cluster; raised halfway, it left a half-started cluster running
    until exit. Ignoring SIGINT instead, which the workers inherit too, dropped such a
    Ctrl-C and the run went on. A process started with SIGINT ignored (a background job)
    keeps ignoring it.

    multiprocessing's resource tracker is started first: starting it unblocks SIGINT in
    the thread that starts it, which would then be the cluster's own thread."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):  # (Windows: no signal masks)
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    # (handlers can be set in the main thread only; an ignored SIGINT stays ignored)
    record = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) != signal.SIG_IGN
    interrupted: list[int] = []
    handler = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum)) if record else None
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending Ctrl-C is recorded here
        if record:  # (None: a handler not set from Python, which cannot be put back; Python's own instead)
            signal.signal(signal.SIGINT, handler if handler is not None else signal.default_int_handler)
    if interrupted:
        signal.raise_signal(signal.SIGINT)


def _dask_client(n_jobs: int, address: str | None, connect_timeout: float) -> Any:
    """The process's client for these settings, connected on first use and reused after
    (a connection that was closed or lost is replaced)."""
    global _DASK_AT_EXIT
    dd = _import_dask()
    key = (address, None if address is not None else n_jobs)
    with _DASK_LOCK:
        conn = _DASK_CONNECTIONS.get(key)
        if conn is not None and not conn.alive:
            del _DASK_CONNECTIONS[key]
            conn.close()
            conn = None
        if conn is None:
            conn = _connect_dask(dd, n_jobs, address, connect_timeout)
            _DASK_CONNECTIONS[key] = conn
            if not _DASK_AT_EXIT:  # registered after distributed's own exit hooks, so it runs before them
                atexit.register(close_dask_clients)
                _DASK_AT_EXIT = True
        return conn.client


def close_dask_clients() -> None:
    """Close every Dask client (and LocalCluster) this module opened; the next ``dask``
    call connects again. Safe to call any time; runs at interpreter exit."""
    forget_scattered_estimator()
    with _DASK_LOCK:
        conns = list(_DASK_CONNECTIONS.values())
        _DASK_CONNECTIONS.clear()
    for conn in conns:
        conn.close()


def _cluster_threads(client: Any, timeout: float) -> int:
    """How many tasks the workers of ``client``'s scheduler run at once (their threads);
    0 when it cannot say (no workers yet, or the scheduler lost or not answering within
    ``timeout`` s: the estimate says so)."""
    try:
        return sum(client.nthreads(callback_timeout=timeout).values())
    except Exception:  # noqa: BLE001 - the cluster's own trouble: the estimate says it
        return 0


def _require_workers(client: Any, address: str, timeout: float) -> None:
    """Wait up to ``timeout`` s for one worker at the scheduler ``address``, else a UserError
    (scattering to no worker fails with an opaque TimeoutError)."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError as exc:
        raise UserError(
            f"No Dask workers are connected to the scheduler at {address!r} (waited {timeout:g} s). "
            f"Start at least one with `dask worker {address}` on a machine with subsetctl installed (an "
            "adaptive cluster must keep one running), raise executor.connect_timeout if workers take longer "
            "to join, or drop executor.address to use a local cluster."
        ) from exc


def _workers_phrase(address: str | None, failed: list[str] | None = None, total: int = 0) -> str:
    """"The Dask workers at 'tcp://...'", or which of them when known: "1 of the 3 Dask
    workers at 'tcp://...' (tcp://10.0.0.5:40123)"."""
    where = f"at {address!r}" if address else "of the local cluster"
    if not failed:
        return f"The Dask workers {where}"
    names = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
    return f"{len(failed)} of the {total} Dask workers {where} ({names})"


def _worker_import_error(exc: BaseException, address: str | None, workers: str | None = None) -> UserError | None:
    """A UserError for a worker that cannot import a module the estimator needs (the
    scheduler reports it as a bare ``Exception('ModuleNotFoundError(...)')``), else None.
    ``workers``: which of them, when known (:func:`_workers_phrase`)."""
    if not isinstance(exc, ImportError) and type(exc) is not Exception:
        return None
    found = _MISSING_MODULE.search(str(exc))
    if found is None:
        return None
    module = found.group(1)
    need = (f"subsetctl {__version__} installed (the same version as here)" if module.split(".")[0] == "subsetctl"
            else f"{module!r} importable (subsetctl {__version__} and the spec's plugins installed, as here)")
    return UserError(f"{workers or _workers_phrase(address)} cannot import {module!r}: every worker must have {need}.")


class _Sink:
    """A file that keeps nothing: :func:`_code_of` pickles only to see what is referenced."""

    def write(self, data: Any) -> int:
        return len(data)


def _code_of(estimator: SubsetEstimator) -> bytes | None:
    """A pickle of the classes and functions that unpickling ``estimator`` (and running
    :func:`_run_on_dask_worker`) imports, without its data; None when plain pickle cannot tell (an
    estimator only cloudpickle ships: Dask's own errors speak for it then)."""
    import pickle

    code = _referenced_code(estimator)
    return None if code is None else pickle.dumps(tuple(_by_reference(code, estimator)), protocol=5)


def _referenced_code(estimator: SubsetEstimator) -> list[Any] | None:
    """The classes and functions pickling ``estimator`` refers to (with :func:`_run_on_dask_worker`);
    None when plain pickle cannot pickle it."""
    import pickle
    import types

    code: dict[int, Any] = {id(_run_on_dask_worker): _run_on_dask_worker}

    class Referenced(pickle.Pickler):
        def persistent_id(self, obj: Any) -> None:  # called for every object pickled
            if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
                code.setdefault(id(obj), obj)

    try:  # arrays' buffers are handed to the callback, not copied
        Referenced(_Sink(), protocol=5, buffer_callback=lambda buffer: None).dump(estimator)
    except Exception:  # noqa: BLE001 - not plain-picklable: no check
        return None
    return list(code.values())


def _by_reference(code: Any, estimator: SubsetEstimator) -> list[Any]:
    """Those of ``code`` (classes, functions) that Dask ships by reference, so that the
    workers must import them. Dask pickles the estimator with cloudpickle when it refers
    to ``__main__`` (a class of the script or notebook that calls subsetctl) or its module
    is registered with ``cloudpickle.register_pickle_by_value``: what ``__main__`` and
    those modules define then travels by value, and no worker has it to import."""
    import inspect

    import cloudpickle

    def module(obj: Any) -> str:
        return str(getattr(obj, "__module__", None) or "")

    registered = set(cloudpickle.list_registry_pickle_by_value())
    by_value = {"__main__"}
    if any(module(obj) == "__main__" for obj in code) or \
            getattr(inspect.getmodule(estimator), "__name__", None) in registered:
        by_value |= registered

    def shipped_by_value(obj: Any) -> bool:
        name = module(obj)
        return any(name == top or name.startswith(f"{top}.") for top in by_value)

    return [obj for obj in code if not shipped_by_value(obj)]


def _check_workers_load(client: Any, estimator: SubsetEstimator, address: str | None,
                        workers: list[str] | None = None, total: int | None = None,
                        code: bytes | None = None) -> list[str]:
    """A UserError naming the workers that cannot import the estimator's code (subsetctl, a
    plugin). Checked before scattering it: a cluster where only some workers lack a module
    hung the search, their tasks asking the others for an estimator none could give them.

    ``workers``: only these (of ``total`` in the cluster, for the message), else all;
    ``code``: :func:`_code_of` the estimator, when the caller has it. Returns the workers
    that loaded it (none when the check could not run)."""
    code = code if code is not None else _code_of(estimator)
    if code is None:
        return []
    try:
        answers = client.run(_load_code, code, on_error="return",
                             **({} if workers is None else {"workers": workers}))
    except Exception:  # noqa: BLE001 - the cluster's own trouble: the estimate says it
        return []
    # an OSError (CommClosedError, a timeout) is the scheduler not reaching that worker (it
    # left, or is leaving), not its code: the estimate goes on without it, as before
    failed = {worker: answer for worker, answer in answers.items()
              if isinstance(answer, BaseException) and not isinstance(answer, OSError)}
    if not failed:
        return [worker for worker, answer in answers.items() if not isinstance(answer, BaseException)]
    names = sorted(failed)
    workers_phrase = _workers_phrase(address, names, total or len(answers))
    first = failed[names[0]]
    problem = _worker_import_error(first, address, workers_phrase)
    if problem is None:  # a module there, but not the same code (AttributeError, ...)
        problem = UserError(
            f"{workers_phrase} cannot load the estimator's code ({type(first).__name__}: "
            f"{first}): every worker must have subsetctl {__version__} and the spec's plugins installed, "
            "the same versions as here."
        )
    raise problem from first


_CODE_DIGEST: dict[str, Any] = {}


def subsetctl_code_digest() -> dict[str, Any]:
    """subsetctl's version, folder and a SHA-256 of each of its Python files, as this
    process first saw them. Run on Dask workers (shipped by reference, so each computes it
    over its own installed subsetctl) to find workers whose code differs from here."""
    import hashlib

    if not _CODE_DIGEST:
        root = Path(__file__).resolve().parent.parent
        files = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}
        _CODE_DIGEST.update(version=__version__, folder=str(root), files=files)
    return _CODE_DIGEST


def _check_workers_code(client: Any, address: str | None, workers: list[str] | None = None,
                        total: int | None = None) -> list[str]:
    """A UserError naming the workers whose subsetctl differs from this process's: another
    version, or the same version from another checkout. The estimator is shipped by
    reference to subsetctl's code, so such workers would compute the estimates with their
    own code, and the results would silently differ from a local run's. A subsetctl older
    than this check has no :func:`subsetctl_code_digest` to run: its workers answer with the
    error of unpickling it, and are refused as such.

    ``workers``: only these (of ``total`` in the cluster, for the message), else all.
    Returns the workers that passed (none when the check could not run)."""
    try:
        answers = client.run(subsetctl_code_digest, on_error="return",
                             **({} if workers is None else {"workers": workers}))
    except Exception:  # noqa: BLE001 - the cluster's own trouble: the estimate says it
        return []
    total = total or len(answers)
    here = subsetctl_code_digest()
    older = sorted(worker for worker, answer in answers.items()
                   if isinstance(answer, BaseException) and not isinstance(answer, OSError)
                   and subsetctl_code_digest.__name__ in str(answer))
    if older:
        raise UserError(
            f"{_workers_phrase(address, older, total)} run an older subsetctl than {__version__} here "
            f"(one without {subsetctl_code_digest.__name__}, which checks that the workers run the same code). "
            "The estimates are computed with the workers' own subsetctl, so they would differ from this "
            f"machine's. Install the same subsetctl there as here ({here['folder']}), restart the workers, and "
            "run again: the estimates finished so far are kept."
        )
    differing = {worker: answer for worker, answer in answers.items()
                 if isinstance(answer, dict) and answer.get("files") != here["files"]}
    if not differing:
        return [worker for worker, answer in answers.items() if isinstance(answer, dict)]
    names = sorted(differing)
    theirs = differing[names[0]]
    their_files, our_files = theirs.get("files") or {}, here["files"]
    changed = sorted(name for name in set(their_files) | set(our_files) if their_files.get(name) != our_files.get(name))
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    version = theirs.get("version")
    phrase = _workers_phrase(address, names, total)
    if version == __version__ and theirs.get("folder") == here["folder"]:
        # a worker reads subsetctl's files once: started before they were edited here (a
        # checkout being worked on), it keeps the old code, the same folder named twice
        raise UserError(
            f"{phrase} run subsetctl from the same folder as here ({here['folder']}), but with other files "
            f"({len(changed)} file(s) differ: {shown}): they read them before the files were edited (or, on "
            "another machine, that folder holds another copy). The estimates are computed with the workers' own "
            "code, so they would differ from this machine's. Restart the workers (on another machine, install "
            "the same subsetctl there), and run again: the estimates finished so far are kept."
        )
    which = (f"subsetctl {version}, not {__version__} as here" if version != __version__
             else f"another copy of subsetctl {version}")
    raise UserError(
        f"{phrase} run {which} (from {theirs.get('folder')}; "
        f"{len(changed)} file(s) differ: {shown}). The estimates are computed with the workers' own subsetctl, "
        f"so they would differ from this machine's. Install the same subsetctl there as here ({here['folder']}), "
        "restart the workers, and run again: the estimates finished so far are kept."
    )


#: what this search stage's Dask calls have checked of the workers of ``client``: ``code``,
#: the worker processes (address, scratch folder) that run this subsetctl, and ``loaded``,
#: those that loaded the estimator's code, by its digest. Checking every worker on every
#: call (two round trips to all of them) cost ~9 ms of a local cluster's ~48 ms per call,
#: and a search calls once per chunk of 256 subsets and per greedy step.
_checked: dict[str, Any] = {}


def _check_new_workers(client: Any, estimator: SubsetEstimator, address: str | None,
                       workers: dict[str, dict[str, Any]]) -> None:
    """:func:`_check_workers_code` and :func:`_check_workers_load` on those of ``workers``
    (the scheduler's identity of each, by address) not checked yet with this client and
    this estimator's code. A worker is known by its address and scratch folder: one
    restarted at the same address (a fixed ``--worker-port``), maybe from another
    checkout, has a new folder, and is checked again."""
    import hashlib

    if _checked.get("client") is not client:
        _checked.clear()
        _checked.update(client=client, code=set(), loaded=set())
    process = {worker: (worker, str(info.get("local_directory"))) for worker, info in workers.items()}
    unchecked = sorted(w for w, key in process.items() if key not in _checked["code"])
    if unchecked:  # first: an older subsetctl there has no _load_code
        passed = _check_workers_code(client, address, unchecked, len(workers))
        _checked["code"].update(process[w] for w in passed if w in process)
    code = _code_of(estimator)
    if code is None:
        return
    digest = hashlib.sha256(code).hexdigest()
    unloaded = sorted(w for w, key in process.items() if (key, digest) not in _checked["loaded"])
    if unloaded:
        passed = _check_workers_load(client, estimator, address, unloaded, len(workers), code=code)
        _checked["loaded"].update((process[w], digest) for w in passed if w in process)


def _dask_results(
    estimator: SubsetEstimator,
    masks: np.ndarray,
    slices: list[slice],
    n_jobs: int,
    address: str | None,
    connect_timeout: float,
    progress: Callable[[int], None],
) -> list[EstimateBatch]:
    """Estimate every slice of ``masks`` on the process's Dask client for these settings;
    results in the order of ``slices``, ``progress(i)`` called as slice ``i`` finishes."""
    client = _dask_client(n_jobs, address, connect_timeout)
    futures: list[Any] = []
    task_failed = False  # the exception is a task's own (the estimator's, or KilledWorker)
    try:
        if address is not None:  # first: a kept client's scheduler frozen since the last call hung in client.run
            workers = _ask_scheduler(client, address, connect_timeout).get("workers") or {}
            _require_workers(client, address, connect_timeout)
            if not workers:  # they joined while it waited
                workers = _ask_scheduler(client, address, connect_timeout).get("workers") or {}
        else:  # (the local cluster's scheduler runs in this process)
            workers = client.sync(client.scheduler.identity).get("workers") or {}
        _check_new_workers(client, estimator, address, workers)
        shipped = _scattered_estimator(client, estimator)
        futures = [client.submit(_run_on_dask_worker, shipped, masks[s], pure=False) for s in slices]
        position = {f.key: i for i, f in enumerate(futures)}
        results: list[EstimateBatch | None] = [None] * len(futures)
        for fut in _finished(client, futures, address, connect_timeout):
            i = position[fut.key]
            task_failed = fut.status == "error"
            results[i] = _fetched(fut, client, address, connect_timeout)
            progress(i)
        return [r for r in results if r is not None]
    except BaseException as exc:
        if futures:  # the cluster outlives this call: stop what it would still compute
            with contextlib.suppress(Exception, asyncio.CancelledError):
                client.cancel(futures)
        forget_scattered_estimator()  # maybe lost with a worker: the next call scatters it again
        if isinstance(exc, _LostDask) and exc.scheduler_lost:  # stopped answering: the next call connects anew
            _forget_dask_client(client)
        if isinstance(exc, (UserError, KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        problem = _dask_failure(exc, client, address, task_failed)
        if problem is None:
            raise
        if isinstance(problem, _LostDask) and problem.scheduler_lost:
            _forget_dask_client(client)  # its reconnect, given up later, would log an ERROR
        raise problem from exc


def _finished(client: Any, futures: list[Any], address: str | None, connect_timeout: float) -> Iterator[Any]:
    """``futures`` as they finish (``as_completed``). With an ``address``, the scheduler is
    asked for its identity whenever no future finished for ``connect_timeout`` s
    (:func:`_ask_scheduler`: a UserError when it does not answer): a frozen
    scheduler (SIGSTOP, a hung host) keeps its TCP connections open, so the search waited
    for its estimates until Ctrl-C. A scheduler answers while its workers compute, so a
    busy cluster is not taken for a silent one. A local cluster's scheduler runs in this
    process: it is not asked."""
    from dask.distributed import as_completed

    finished = as_completed(futures, loop=client.loop)
    if address is None:
        yield from finished
        return
    quiet_since = time.monotonic()
    while not finished.is_empty():
        if finished.has_ready():
            yield from finished.next_batch(block=False)
            quiet_since = time.monotonic()
            continue
        if time.monotonic() - quiet_since >= connect_timeout:
            _ask_scheduler(client, address, connect_timeout)
            quiet_since = time.monotonic()
        with finished.thread_condition:  # woken as a future finishes (it notifies after queueing it)
            if not finished.has_ready():
                finished.thread_condition.wait(timeout=max(0.01, quiet_since + connect_timeout - time.monotonic()))


def _fetched(fut: Any, client: Any, address: str | None, connect_timeout: float) -> Any:
    """The result of the finished ``fut``, fetched through the scheduler (so it may fail
    too). With an ``address``, the scheduler is asked (:func:`_ask_scheduler`) when that
    takes longer than :func:`_answer_within` s: one frozen just after the estimate
    finished hung the fetch, as it did the wait. One that answers is waited for.

    Dask's own logs are off meanwhile: a worker lost while its result was fetched logged
    "Couldn't gather 1 keys, rescheduling ..." on the terminal, between the progress bar and
    the search's own message about it (or its recomputed result)."""
    with _distributed_logs_off():
        if address is None:
            return fut.result()
        try:
            return fut.result(timeout=_answer_within(connect_timeout))
        except TimeoutError:  # (or the estimator's own TimeoutError, raised again below)
            _ask_scheduler(client, address, connect_timeout)
        return fut.result()


def _ask_scheduler(client: Any, address: str, connect_timeout: float) -> dict[str, Any]:
    """Ask the scheduler at ``address`` for its identity (its ``workers`` among it), and
    return it; a :func:`_scheduler_silent` UserError when it does not answer within
    :func:`_answer_within` s."""
    waited = _answer_within(connect_timeout)
    try:
        return client.sync(client.scheduler.identity, callback_timeout=waited)
    except TimeoutError as exc:
        raise _scheduler_silent(address, waited) from exc


def _dask_failure(exc: BaseException, client: Any, address: str | None, task_failed: bool) -> UserError | None:
    """What a failure of :func:`_dask_results` means to the user: a worker that cannot
    import the estimator's code, or estimates lost with their workers or with the
    scheduler at ``address``; None for the estimator's own errors (and bugs), raised as they
    are. distributed says a lost scheduler in many ways, at any step (waiting for workers,
    scattering, fetching a finished estimate, cancelling): a cancelled future, a
    CommClosedError or another OSError, a TimeoutError, an asyncio.CancelledError, or a
    client that is no longer running; a raw CommClosedError escaped when a finished estimate
    was fetched just as the scheduler died."""
    from distributed import CancelledError
    from distributed.scheduler import KilledWorker

    problem = _worker_import_error(exc, address)
    if problem is not None:
        return problem
    if isinstance(exc, KilledWorker):
        return _cluster_lost(exc, address, scheduler_lost=False)
    if task_failed:
        return None
    client_down = getattr(client, "status", "running") != "running"
    if not client_down and not isinstance(exc, (CancelledError, asyncio.CancelledError, OSError, TimeoutError)):
        return None
    # a future cancelled while the client runs, for another reason than the connection (the
    # scheduler restarted): the workers' trouble; anything else is the connection's
    scheduler_lost = address is not None and (
        client_down or not isinstance(exc, CancelledError)
        or getattr(exc, "reason", None) == "scheduler-connection-lost")
    return _cluster_lost(exc, address, scheduler_lost)


def _forget_dask_client(client: Any) -> None:
    """Close ``client`` (its scheduler is lost) and drop it: the next call connects anew."""
    forget_scattered_estimator()
    with _DASK_LOCK:
        keys = [key for key, conn in _DASK_CONNECTIONS.items() if conn.client is client]
        conns = [_DASK_CONNECTIONS.pop(key) for key in keys]
    for conn in conns:
        conn.close()


#: the estimator the last Dask call scattered: ``estimator``, ``attributes`` (its attribute values
#: then), ``client``, ``future``. Scattering it again for every call cost 30-40 ms each (and
#: the estimator's bytes sent to every worker again); a search calls once per chunk of 256.
_scattered: dict[str, Any] = {}


def _scattered_estimator(client: Any, estimator: SubsetEstimator) -> Any:
    """The future of ``estimator`` scattered to every worker of ``client``: the last call's
    when it is the same estimator (as :func:`_dumped_estimator` tells) on the same client and
    its data is still there (``finished``; lost with its workers, it is ``cancelled``), else a
    new one (the last one released). One future is kept, not a new one scattered under a
    fresh key per call (see :func:`_scatter`)."""
    attributes = _attribute_values(estimator)
    kept = _scattered.get("future")
    if (_same_estimator(_scattered, estimator, attributes) and _scattered["client"] is client
            and getattr(kept, "status", None) == "finished"):
        return kept
    _release_scattered()
    future = _scatter(client, estimator)
    _scattered.update(estimator=estimator, attributes=attributes, client=client, future=future)
    return future


def forget_scattered_estimator() -> None:
    """Release the estimator kept scattered on the Dask workers (the next call scatters it
    again), and forget which workers were checked (:data:`_checked`: the next call checks
    them again); done when the search stage ends, when a call fails and when its client is
    closed. Safe to call any time."""
    _release_scattered()
    _checked.clear()


def _release_scattered() -> None:
    """Release the estimator kept scattered on the Dask workers, if any."""
    future = _scattered.get("future")
    _scattered.clear()
    if future is not None:  # a client closed or lost meanwhile: nothing to release there
        with contextlib.suppress(Exception, asyncio.CancelledError):
            future.release()


def _scatter(client: Any, estimator: SubsetEstimator) -> Any:
    """``estimator`` sent to every worker; a plugin estimator that cannot be pickled is
    blamed on the plugin (it was an internal error, after Dask's "Failed to Serialize"
    log and traceback)."""
    try:
        with _distributed_logs_off():  # that log: the error below says it
            # hash=False: a fresh key per scatter. With the default content hash, the release
            # of the previous future of the same key can race this scatter and drop the data.
            return client.scatter(estimator, broadcast=True, hash=False)
    except TypeError as exc:  # distributed's "Could not serialize object of type ..."
        from subsetctl.plugin_guard import unpicklable_plugin

        cause: BaseException = exc
        while cause.__cause__ is not None:  # pickle's own words: "cannot pickle '_io.TextIOWrapper' object"
            cause = cause.__cause__
        blamed = unpicklable_plugin(estimator, "dask", cause)
        if blamed is None:
            raise
        raise blamed from exc


class _LostDask(UserError):
    """A UserError for estimates lost with the Dask cluster; ``scheduler_lost`` when the
    connection to the scheduler at executor.address was lost."""

    def __init__(self, message: str, scheduler_lost: bool = False) -> None:
        super().__init__(message)
        self.scheduler_lost = scheduler_lost


#: what a search keeps of a failed estimate: it saves each chunk of estimates as it finishes
_KEPT = ("A search keeps the estimates it finished so far (saved in its cache as each chunk finishes), "
         "so running it again resumes there")


#: what to do about a scheduler at executor.address that was lost or stopped answering
_RESTART_SCHEDULER = ("restart the scheduler and its workers (or check the network), or drop executor.address to "
                      "use a local cluster, and run again.")


def _scheduler_silent(address: str, waited: float) -> _LostDask:
    """The UserError for a scheduler at ``address`` that stopped answering (:func:`_finished`)
    though the connection to it stays open: asked after a while without a finished
    estimate, it did not answer within ``waited`` s."""
    return _LostDask(
        f"The Dask scheduler at {address!r} (executor.address) stopped answering while estimating: no estimate "
        f"came back for a while, and it did not answer a request within {waited:g} s, though the connection to it "
        f"is open (it is frozen or suspended, its machine hangs, or the network to it does; raise "
        f"executor.connect_timeout for a scheduler slow to answer). {_KEPT}: {_RESTART_SCHEDULER}",
        scheduler_lost=True,
    )


def _cluster_lost(exc: BaseException, address: str | None, scheduler_lost: bool) -> _LostDask:
    """The UserError for estimates lost with the connection to the scheduler at ``address``
    (``scheduler_lost``), else with their workers (killed, out of memory, or the cluster
    shut down)."""
    try:
        detail = " ".join(str(exc).split())
    except Exception:  # noqa: BLE001 - a half-built exception's own __str__ failing
        detail = ""
    said = f"Dask said {type(exc).__name__}{': ' + detail[:160] if detail else ''}{'...' if len(detail) > 160 else ''}"
    if scheduler_lost:
        return _LostDask(
            f"Lost the connection to the Dask scheduler at {address!r} (executor.address) while estimating: it "
            f"stopped, or the network to it failed ({said}). {_KEPT}: {_RESTART_SCHEDULER}",
            scheduler_lost=True,
        )
    if address is None:  # subsetctl starts (and restarts) the local cluster: the user has none to restart
        return _LostDask(
            f"The Dask workers of the local cluster were lost while estimating: killed, or out of memory ({said}). "
            f"{_KEPT}, on a new local cluster (lower executor.n_jobs or executor.batch_size if they ran out of "
            "memory)."
        )
    return _LostDask(
        f"The Dask workers at {address!r} (executor.address) were lost while estimating: killed, out of memory, or "
        f"the cluster shut down ({said}). {_KEPT}: restart the workers (or use fewer, or a smaller "
        "executor.batch_size, if they ran out of memory) and run again."
    )


def _here(estimator: SubsetEstimator, masks: np.ndarray, slices: list[slice],
          advance: Callable[[int], None]) -> Iterator[EstimateBatch]:
    """The batches estimated in this process, one after the other."""
    for i, s in enumerate(slices):
        yield estimator.estimate(masks[s])
        advance(i)


#: calls of each way (loky's workers, this process) that the loky backend times for an
#: estimator before it keeps the faster (0: always the workers; see :func:`_loky_or_here`)
TIMED_CALLS = 2
#: the loky backend's timings of the current estimator: ``estimator``, ``attributes`` (as in
#: :data:`_dumped`), ``warm`` (its first call, untimed, ran), and for each way the
#: ``seconds`` and ``masks`` of its timed calls
_timed: dict[str, Any] = {}


def _loky_or_here(estimator: SubsetEstimator) -> str:
    """How the loky backend runs its next call for ``estimator``: ``"loky"`` (the workers) or
    ``"sequential"`` (this process). A search calls once per chunk of 256 subsets; each
    call costs loky 10-30 ms of dispatch, and this process's numpy already uses every core
    for its matrix products, so on 2 cores a forward search over 2,000 sources took 1.5x as
    long on the workers (benchmarks/search_executor.py). So the first call runs on the
    workers (it starts them: untimed), then :data:`TIMED_CALLS` calls each way are timed
    alternately and the faster per subset is kept for the estimator's further calls. Every
    way gives the same numbers, bit for bit."""
    attributes = _attribute_values(estimator)
    if not _same_estimator(_timed, estimator, attributes):
        _timed.clear()
        _timed.update(estimator=estimator, attributes=attributes, warm=False,
                      loky={"seconds": 0.0, "masks": 0, "calls": 0},
                      sequential={"seconds": 0.0, "masks": 0, "calls": 0})
    loky, here = _timed["loky"], _timed["sequential"]
    if not _timed["warm"] or TIMED_CALLS <= 0:
        return "loky"
    if min(loky["calls"], here["calls"]) < TIMED_CALLS:
        return "sequential" if here["calls"] <= loky["calls"] else "loky"
    faster_here = here["seconds"] * loky["masks"] < loky["seconds"] * here["masks"]
    return "sequential" if faster_here else "loky"


def _timed_call(way: str, seconds: float, masks: int) -> None:
    """Count a loky-backend call that ran ``way`` for :func:`_loky_or_here`."""
    if not _timed:
        return
    if not _timed["warm"]:
        _timed["warm"] = True
        return
    kept = _timed[way]
    if kept["calls"] < TIMED_CALLS:
        kept.update(seconds=kept["seconds"] + seconds, masks=kept["masks"] + masks, calls=kept["calls"] + 1)


def estimate_parallel(
    estimator: SubsetEstimator,
    masks: np.ndarray,
    backend: str = "loky",
    n_jobs: int = 2,
    address: str | None = None,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    connect_timeout: float = 5.0,
) -> EstimateBatch:
    """Estimate ``masks`` (m, n_sources; a 1-D mask is one subset) with ``estimator`` on
    several workers.

    Args:
        backend: ``"loky"`` (processes, default), ``"threading"``, ``"dask"`` or
            ``"sequential"`` (in this process, same batches).
        n_jobs: joblib workers, or workers of the local Dask cluster; the default batches
            are at least this many (with ``address``: the cluster's worker threads).
        address: Dask scheduler address (``"tcp://host:8786"``); without it a
            ``LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True)`` is
            started on first use and reused by later calls (see :func:`close_dask_clients`).
        batch_size: masks per task; default :func:`default_batch_size`.
        progress: called as ``progress(masks_done, masks_total)`` as batches finish.
        connect_timeout: seconds to wait for the Dask scheduler at ``address`` to answer,
            and again for at least one worker to be connected to it.

    Returns:
        One :class:`EstimateBatch` in the order of ``masks``.

    Raises:
        UserError: unknown backend, bad ``n_jobs``/``batch_size``; for Dask: not
            installed, malformed or unreachable address, no workers, or workers that
            cannot import subsetctl.
    """
    if backend not in BACKENDS:
        raise UserError(f"Unknown executor backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if n_jobs < 1:
        raise UserError(f"n_jobs must be at least 1, got {n_jobs}.")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}.")
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim == 1:
        masks = masks[None, :]
    if masks.ndim != 2 or masks.shape[1] != len(estimator.sources):
        raise UserError(f"Subset masks must have shape (m, {len(estimator.sources)}), got {masks.shape}.")
    total = len(masks)
    if total == 0:
        return empty_batch(0)
    workers = 1 if backend == "sequential" else n_jobs
    if backend == "dask" and address is not None and batch_size is None:
        workers = _cluster_threads(_dask_client(n_jobs, address, connect_timeout), _answer_within(connect_timeout))
    size = batch_size or default_batch_size(total, estimator, workers)
    slices = _batches(total, size)
    done = 0

    def advance(i: int) -> None:
        nonlocal done
        done += slices[i].stop - slices[i].start
        if progress is not None:
            progress(done, total)

    if backend == "sequential" or (backend != "dask" and (n_jobs == 1 or len(slices) == 1)):
        return concat_batches([*_here(estimator, masks, slices, advance)])
    if backend == "dask":
        parts = _dask_results(estimator, masks, slices, n_jobs, address, connect_timeout, advance)
        return concat_batches(parts)
    way = _loky_or_here(estimator) if backend == "loky" else backend
    started = time.perf_counter()
    parts = []
    if way == "sequential":
        parts.extend(_here(estimator, masks, slices, advance))
    else:
        # no more workers than tasks: each extra loky process is started (and torn down) for nothing
        for i, part in enumerate(_joblib_results(estimator, masks, slices, backend, min(n_jobs, len(slices)))):
            parts.append(part)
            advance(i)
    if backend == "loky":
        _timed_call(way, time.perf_counter() - started, total)
    return concat_batches(parts)
