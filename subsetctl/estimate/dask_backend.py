"""The Dask backend of :func:`subsetctl.estimate.executors.estimate_parallel`: its client side.

Dask clients (and the LocalCluster started when no ``address`` is given) are opened on
first use and kept for the rest of the process, one per settings, so a search that
estimates step by step does not start a cluster per step; :func:`close_dask_clients`
closes them (it runs at exit). The estimator is scattered to every worker, and kept there
for the next call with the same estimator (the same object, its attributes not
reassigned; on the same client, while its data is not lost):
:func:`forget_scattered_estimator` releases it. Before it is, the workers not checked yet
are asked whether they run this subsetctl and can import the estimator's code.

Dask problems a user can fix (dask not installed, a malformed or unreachable address, no
workers, workers without subsetctl or with another copy of it, a scheduler lost or no
longer answering) are UserErrors.

What runs on the workers (:func:`~subsetctl.estimate.executors._run_on_dask_worker`,
:func:`~subsetctl.estimate.executors._load_code`,
:func:`~subsetctl.estimate.executors.subsetctl_code_digest`) stays in
:mod:`subsetctl.estimate.executors`: Dask ships those functions by reference, by module and
name, and a worker with a subsetctl older than the code check is told apart by the name
it lacks there.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from subsetctl import __version__
from subsetctl.errors import UserError
from subsetctl.estimate.base import EstimateBatch, SubsetEstimator
from subsetctl.estimate.executors import (
    _attribute_values,
    _by_reference,
    _load_code,
    _referenced_code,
    _run_on_dask_worker,
    _same_estimator,
    _sigint_blocked_for_new_threads,
    _timed,
    subsetctl_code_digest,
)


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
    first had set kept every log off for good once it put them "back".

    Only ``distributed`` itself and those below it with a level of their own are set: the
    others (level NOTSET) take theirs from it. Each ``setLevel`` clears the cache of every
    logger of the process (~560 in a ``subsetctl run``, with transformers and torch
    loaded), and setting all ~60 of distributed's took ~16 ms per use there, paid around
    each fetched estimate (8 per call of a search: half a local cluster's time per call;
    ``benchmarks/search_dask.py``)."""
    global _logs_off_depth
    with _LOGS_OFF_LOCK:
        if _logs_off_depth == 0:
            loggers = [logging.getLogger("distributed")] + [
                logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
                if name.startswith("distributed.") and getattr(logging.root.manager.loggerDict[name], "level", 0)]
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


def scheduler_threads(address: str, connect_timeout: float) -> tuple[int, int, str | None]:
    """(workers, their threads, why the search would refuse them) of the Dask scheduler at
    ``address``, asked as the search connects (:func:`_connect_dask`: the same UserErrors, for
    a port that is no Dask scheduler's too); for `doctor`, which tried only a TCP connection.
    The third is :func:`_check_workers_code`'s refusal (workers without subsetctl, or with
    another one), None when they run this subsetctl: doctor passed such workers, and the
    search stopped on them after the model stages."""
    conn = _connect_dask(_import_dask(), 1, address, connect_timeout)
    refused = None
    waited = _answer_within(connect_timeout)
    try:
        nthreads = conn.client.nthreads()
        if nthreads:
            try:  # distributed's ``run`` has no timeout: a worker whose event loop is blocked hung doctor
                _within(waited, lambda: _check_workers_code(conn.client, address))
            except UserError as exc:
                refused = str(exc)
            except _NoAnswer:
                refused = (f"{_unanswered_check(_workers_phrase(address), 'of their code', waited)}: the search "
                           "asks them the same before it sends them work, and would wait on them. Restart such "
                           "workers, or raise executor.connect_timeout for workers slow to answer.")
    finally:
        conn.close()
    return len(nthreads), sum(nthreads.values()), refused


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


#: what says that a local cluster starts (:func:`announcing_cluster_start`); None: nothing
_announce_cluster_start: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "subsetctl_announce_cluster_start", default=None)


@contextlib.contextmanager
def announcing_cluster_start(announce: Callable[[str], None]) -> Iterator[None]:
    """Within the block, ``announce("starting a local Dask cluster of 2 processes")`` is
    called as a call of this thread starts a LocalCluster (the search stage logs it): its
    start took ~10 s on a loaded 2-core machine, on the search's first estimate, before
    which nothing said what the search waited for."""
    token = _announce_cluster_start.set(announce)
    try:
        yield
    finally:
        _announce_cluster_start.reset(token)


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
            announce = _announce_cluster_start.get()
            if address is None and announce is not None:
                announce(f"starting a local Dask cluster of {n_jobs} process{'es' if n_jobs > 1 else ''}")
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
    module = _missing_module(exc)
    return None if module is None else _cannot_import(module, workers or _workers_phrase(address))


def _missing_module(exc: BaseException) -> str | None:
    """The module a worker's answer ``exc`` says it cannot import, else None."""
    if not isinstance(exc, ImportError) and type(exc) is not Exception:
        return None
    found = _MISSING_MODULE.search(str(exc))
    return None if found is None else found.group(1)


def _cannot_import(module: str, workers: str) -> UserError:
    """The UserError for the ``workers`` (:func:`_workers_phrase`) that cannot import ``module``."""
    need = (f"subsetctl {__version__} installed (the same version as here)" if module.split(".")[0] == "subsetctl"
            else f"{module!r} importable (subsetctl {__version__} and the spec's plugins installed, as here)")
    return UserError(f"{workers} cannot import {module!r}: every worker must have {need}.")


def _code_of(estimator: SubsetEstimator) -> bytes | None:
    """A pickle of the classes and functions that unpickling ``estimator`` (and running
    :func:`_run_on_dask_worker`) imports, without its data; None when plain pickle cannot tell (an
    estimator only cloudpickle ships: Dask's own errors speak for it then)."""
    import pickle

    code = _referenced_code(estimator)
    return None if code is None else pickle.dumps(tuple(_by_reference(code, estimator)), protocol=5)


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


def _check_workers_code(client: Any, address: str | None, workers: list[str] | None = None,
                        total: int | None = None) -> list[str]:
    """A UserError naming the workers whose subsetctl differs from this process's: none at
    all, another version, or the same version from another checkout. The estimator is shipped by
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
    # a worker without subsetctl answers with the error of unpickling subsetctl_code_digest
    missing = {worker: module for worker, answer in answers.items()
               if isinstance(answer, BaseException) and (module := _missing_module(answer)) is not None}
    if missing:
        names = sorted(missing)
        raise _cannot_import(missing[names[0]], _workers_phrase(address, names, total))
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


def _unanswered_check(workers: str, checked: str, waited: float) -> str:
    """The start of a message for ``workers`` (:func:`_workers_phrase`) that did not answer
    subsetctl's check ``checked`` ("of their code") within ``waited`` s; doctor's and the search's."""
    return (f"{workers} did not all answer subsetctl's check {checked} within {waited:g} s (a worker busy in a "
            "task that holds its event loop, or frozen)")


def _answered(check: Callable[[], list[str]], address: str | None, connect_timeout: float, workers: str,
              checked: str) -> list[str]:
    """``check()`` (:func:`_check_workers_code` or :func:`_check_workers_load` of ``workers``,
    :func:`_workers_phrase`), given up after :func:`_answer_within` s with a UserError when
    the cluster is at ``address``: distributed's ``Client.run`` has no timeout, so a worker
    whose event loop was blocked hung the search before it sent any work, without a word.
    A local cluster's workers are this process's own (and slow to start on a loaded
    machine): they are waited for, as their estimates are (:func:`_finished`)."""
    if address is None:
        return check()
    waited = _answer_within(connect_timeout)
    try:
        return _within(waited, check)
    except _NoAnswer:
        raise UserError(
            f"{_unanswered_check(workers, checked, waited)}, asked before the search sends them work. {_KEPT}: "
            f"restart those workers (or raise executor.connect_timeout for workers slow to answer), and run again."
        ) from None


def _check_new_workers(client: Any, estimator: SubsetEstimator, address: str | None,
                       workers: dict[str, dict[str, Any]], connect_timeout: float) -> None:
    """:func:`_check_workers_code` and :func:`_check_workers_load` on those of ``workers``
    (the scheduler's identity of each, by address) not checked yet with this client and
    this estimator's code, each bounded by :func:`_answered`. A worker is known by its
    address and scratch folder: one restarted at the same address (a fixed
    ``--worker-port``), maybe from another checkout, has a new folder, and is checked again."""
    import hashlib

    if _checked.get("client") is not client:
        _checked.clear()
        _checked.update(client=client, code=set(), loaded=set())
    process = {worker: (worker, str(info.get("local_directory"))) for worker, info in workers.items()}
    unchecked = sorted(w for w, key in process.items() if key not in _checked["code"])
    if unchecked:  # first: an older subsetctl there has no _load_code
        passed = _answered(lambda: _check_workers_code(client, address, unchecked, len(workers)), address,
                           connect_timeout, _workers_phrase(address, unchecked, len(workers)), "of their code")
        _checked["code"].update(process[w] for w in passed if w in process)
    code = _code_of(estimator)
    if code is None:
        return
    digest = hashlib.sha256(code).hexdigest()
    unloaded = sorted(w for w, key in process.items() if (key, digest) not in _checked["loaded"])
    if unloaded:
        passed = _answered(lambda: _check_workers_load(client, estimator, address, unloaded, len(workers), code=code),
                           address, connect_timeout, _workers_phrase(address, unloaded, len(workers)),
                           "that they can load the estimator's code")
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
        _check_new_workers(client, estimator, address, workers, connect_timeout)
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
    when it is the same estimator (as :func:`~subsetctl.estimate.executors._dumped_estimator`
    tells) on the same client and its data is still there (``finished``; lost with its
    workers, it is ``cancelled``), else a new one (the last one released). One future is
    kept, not a new one scattered under a fresh key per call (see :func:`_scatter`)."""
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
    them again) and how fast the local cluster ran it against this process
    (:func:`~subsetctl.estimate.executors._workers_or_here`: the next call times them
    again); done when the search stage ends, when a call fails and when its client is
    closed. Safe to call any time."""
    _release_scattered()
    _checked.clear()
    if _timed.get("backend") == "dask":
        _timed.clear()


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

