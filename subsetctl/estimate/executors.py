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
(:func:`forget_dumped_estimator` removes it; it runs at exit).

The loky backend, and the Dask backend on a local cluster, time an estimator's first calls
both on their workers and in this process, and run its further calls the faster way
(:func:`_workers_or_here`): a search's many small calls can cost more in dispatch than the
workers save. A Dask cluster at an ``address`` the user named always gets the work.

The Dask backend's client side (its clients and LocalCluster, the estimator scattered to
the workers, the checks of the workers, its UserErrors) is :mod:`subsetctl.estimate.dask_backend`.
What runs on its workers is here, beside the loky workers' side (:func:`_run_on_dask_worker`,
:func:`_load_code`, :func:`subsetctl_code_digest`): Dask ships these functions by reference
(module and name), so a worker with an older subsetctl is told apart by the name it lacks
here (see :func:`subsetctl.estimate.dask_backend._check_workers_code`).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from subsetctl import __version__
from subsetctl.errors import UserError
from subsetctl.estimate.base import EstimateBatch, SubsetEstimator
from subsetctl.estimate.results import concat_batches, empty_batch
from subsetctl.plugin_guard import prints_to_stderr

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
    process, where a plugin estimator's prints go to stderr as everywhere else (its
    ``estimate`` is called through :class:`~subsetctl.plugin_guard.CheckedEstimator`)."""
    return estimator.estimate(masks)


def _run_on_dask_worker(estimator: SubsetEstimator, masks: np.ndarray) -> EstimateBatch:
    """Worker side of the Dask backend: estimate one batch of ``masks``, the estimator's
    prints sent to stderr (:func:`~subsetctl.plugin_guard.prints_to_stderr`)."""
    with prints_to_stderr():
        return estimator.estimate(masks)


def _run_from_file(path: str, masks: np.ndarray) -> EstimateBatch:
    """Worker side of the loky backend: load the dumped estimator once per process; what it
    prints goes to stderr (:func:`~subsetctl.plugin_guard.prints_to_stderr`)."""
    with prints_to_stderr():
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
    """Worker side of :func:`subsetctl.estimate.dask_backend._check_workers_load`: import
    the estimator's code, what a plugin module prints as it is imported sent to stderr
    (:func:`~subsetctl.plugin_guard.prints_to_stderr`)."""
    import pickle

    with prints_to_stderr(), _registrations_taken_back():
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
    """Whether ``kept`` (:data:`_dumped`, ``dask_backend._scattered``) holds ``estimator``, none of its
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
    and the timings kept of it (:func:`_workers_or_here`, loky's or a local Dask cluster's).
    Safe to call any time; runs at interpreter exit."""
    _timed.clear()
    _forget_dumped_file()


def _forget_dumped_file() -> None:
    """Forget the estimator the last loky call dumped (:data:`_dumped`) and delete its folder."""
    folder = _dumped.get("folder")
    _dumped.clear()
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


atexit.register(forget_dumped_estimator)


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (once a process) with its warning of leaked
    semaphores off. The tracker outlives a run killed outright (SIGKILL, the OOM killer, a
    scheduler's hard limit) and removes the semaphores a Dask LocalCluster's workers had made,
    as it should, but said so after the shell's prompt in a UserWarning with a line of
    multiprocessing's source ("resource_tracker: There appear to be 12 leaked semaphore objects
    to clean up at shutdown"), read as a leak for the user to see to. Nothing is left: the
    tracker has removed them. The filter goes to the tracker's command line (``-W``, from
    ``sys.warnoptions`` as it is started); this process's own warnings are as they were."""
    from multiprocessing import resource_tracker

    before = list(sys.warnoptions)
    sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    try:
        resource_tracker.ensure_running()
    finally:
        sys.warnoptions[:] = before


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
    keeps ignoring it. A stop signal that has a Python handler (`subsetctl`'s: SIGTERM,
    SIGHUP, SIGUSR1, SIGUSR2) is recorded and raised again the same way, though not blocked
    (the workers must stay stoppable by SIGTERM): raised halfway, distributed closed the
    half-started cluster at exit, after "stopped by SIGTERM", with an AssertionError
    traceback.

    multiprocessing's resource tracker is started first: starting it unblocks SIGINT in
    the thread that starts it, which would then be the cluster's own thread."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):  # (Windows: no signal masks)
        yield
        return
    _start_resource_tracker()
    # (handlers can be set in the main thread only; an ignored SIGINT stays ignored)
    main_thread = threading.current_thread() is threading.main_thread()
    record = main_thread and signal.getsignal(signal.SIGINT) != signal.SIG_IGN
    interrupted: list[int] = []

    def recorded(signum: int, frame: Any) -> None:
        interrupted.append(signum)

    handler = signal.signal(signal.SIGINT, recorded) if record else None
    stops: dict[int, Any] = {}
    if main_thread:
        from subsetctl.cli import _stop_signals

        stops = {signum: signal.signal(signum, recorded) for signum in _stop_signals()
                 if callable(signal.getsignal(signum))}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending Ctrl-C is recorded here
        if record:  # (None: a handler not set from Python, which cannot be put back; Python's own instead)
            signal.signal(signal.SIGINT, handler if handler is not None else signal.default_int_handler)
        for signum, stop_handler in stops.items():
            signal.signal(signum, stop_handler)
    for signum in dict.fromkeys(interrupted):  # in the order they came; the first handler to raise ends it
        signal.raise_signal(signum)


class _Sink:
    """A file that keeps nothing: :func:`_referenced_code` pickles only to see what is referenced."""

    def write(self, data: Any) -> int:
        return len(data)


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


#: :func:`subsetctl_code_digest`, computed once per process
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


def _here(estimator: SubsetEstimator, masks: np.ndarray, slices: list[slice],
          advance: Callable[[int], None]) -> Iterator[EstimateBatch]:
    """The batches estimated in this process, one after the other."""
    for i, s in enumerate(slices):
        yield estimator.estimate(masks[s])
        advance(i)


#: calls of each way (the workers, this process) that the loky backend, and Dask's local
#: cluster, time for an estimator before they keep the faster (0: always the workers; see
#: :func:`_workers_or_here`)
TIMED_CALLS = 2
#: the timings of the current estimator on ``backend`` (loky, or dask on a local cluster):
#: ``estimator``, ``attributes`` (as in :data:`_dumped`), ``warm`` (its first call, untimed,
#: ran), and for each way (``workers``, ``sequential``) the ``seconds`` and ``masks`` of its
#: timed calls
_timed: dict[str, Any] = {}


def _workers_or_here(estimator: SubsetEstimator, backend: str) -> str:
    """How ``backend`` (loky, or dask on a local cluster) runs its next call for
    ``estimator``: ``"workers"`` or ``"sequential"`` (this process). A search calls once per
    chunk of 256 subsets and per greedy step; each call costs loky 10-30 ms of dispatch, a
    local Dask cluster 50-90 ms, and this process's numpy already uses every core for its
    matrix products, so on 2 cores a forward search over 2,000 sources took 1.5x as long on
    loky's workers (benchmarks/search_executor.py), and a greedy step of 60 subsets ~15x as
    long on a local Dask cluster (benchmarks/search_dask.py). So the first call runs on the
    workers (it starts them: untimed), then :data:`TIMED_CALLS` calls each way are timed
    alternately and the faster per subset is kept for the estimator's further calls. Both
    ways give the same numbers bit for bit, though this process's BLAS has its own thread
    count (numpy's default: one a core) and each worker another (loky's: the cores /
    ``n_jobs``; a local Dask cluster's: one): the built-in estimators factor their matrices on
    one thread everywhere (:mod:`subsetctl.estimate.blas_threads`)."""
    attributes = _attribute_values(estimator)
    if not _same_estimator(_timed, estimator, attributes) or _timed["backend"] != backend:
        _timed.clear()
        _timed.update(estimator=estimator, attributes=attributes, backend=backend, warm=False,
                      workers={"seconds": 0.0, "masks": 0, "calls": 0},
                      sequential={"seconds": 0.0, "masks": 0, "calls": 0})
    workers, here = _timed["workers"], _timed["sequential"]
    if not _timed["warm"] or TIMED_CALLS <= 0:
        return "workers"
    if min(workers["calls"], here["calls"]) < TIMED_CALLS:
        return "sequential" if here["calls"] <= workers["calls"] else "workers"
    faster_here = here["seconds"] * workers["masks"] < workers["seconds"] * here["masks"]
    return "sequential" if faster_here else "workers"


def _timed_call(way: str, seconds: float, masks: int) -> None:
    """Count a call that ran ``way`` (``"workers"``, ``"sequential"``) for :func:`_workers_or_here`."""
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
            started on first use and reused by later calls (see
            :func:`subsetctl.estimate.dask_backend.close_dask_clients`).
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
    from subsetctl.estimate import dask_backend  # here: it imports this module's worker side

    if backend == "dask" and address is not None and batch_size is None:
        workers = dask_backend._cluster_threads(dask_backend._dask_client(n_jobs, address, connect_timeout),
                                                dask_backend._answer_within(connect_timeout))
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
    # a Dask cluster the user named (an address) gets the work: it was set up for it
    timed = backend == "loky" or (backend == "dask" and address is None)
    way = _workers_or_here(estimator, backend) if timed else "workers"
    started = time.perf_counter()
    parts = []
    if way == "sequential":
        parts.extend(_here(estimator, masks, slices, advance))
    elif backend == "dask":
        parts.extend(dask_backend._dask_results(estimator, masks, slices, n_jobs, address, connect_timeout, advance))
    else:
        # no more workers than tasks: each extra loky process is started (and torn down) for nothing
        for i, part in enumerate(_joblib_results(estimator, masks, slices, backend, min(n_jobs, len(slices)))):
            parts.append(part)
            advance(i)
    if timed:
        _timed_call(way, time.perf_counter() - started, total)
    return concat_batches(parts)
