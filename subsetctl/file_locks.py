"""File locks (``flock``) that keep processes of one project apart: holding one
(:func:`flocked`, :func:`exclusive_file_lock`), telling whether another process holds one
(:func:`file_lock_held`), and who holds the project lock, as its lock file says
(:class:`LockHolder`). :meth:`subsetctl.project.Project.lock` builds the run lock on them;
the gradient shards lock their own files with them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from subsetctl.errors import LockedError, UserError, user_name

#: the lock file of a shard run's exclusive hold says "PID shard HOST USER" (other shard runs wait for it)
SHARD_TAG = "shard"
#: a plain `run`'s lock file says "PID run HOST USER" (earlier subsetctl wrote the PID alone, then no USER)
RUN_TAG = "run"


@contextlib.contextmanager
def flocked(
    path: Path, mode: int, on_busy: Callable[[str], Exception], attempts: int = 1,
    wait_for: Callable[[str], bool] | None = None,
) -> Iterator[IO[str]]:
    """Open ``path`` (created if missing) and hold an flock of ``mode`` on it for the block.

    When another process holds a conflicting lock (still, after ``attempts`` tries a tenth
    of a second apart), raise ``on_busy(text of the file)``: lock files hold their
    holder's PID, so the error can say who it is. When ``wait_for(text of the file)`` is
    true, wait for that holder instead (Ctrl-C stops the wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # errors="replace": a lock file holding bytes that are not UTF-8 (damaged) is read as a holder that is no PID
    handle = open(path, "a+", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed in finally
    try:
        try:
            _flock_briefly(handle, mode, attempts)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            if wait_for is None or not wait_for(holder):
                raise on_busy(holder) from None
            fcntl.flock(handle.fileno(), mode)
        try:
            yield handle
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


@contextlib.contextmanager
def brief_file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for a short read-modify-write
    of files beside it that several processes share (a cache's file of hashes, a store of
    estimates), waiting for another holder; where the lock cannot be taken (a read-only
    folder, a file system without locks) the block runs unlocked, as it did before."""
    try:
        handle = open(path, "a")  # noqa: SIM115 - closed below
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        handle.close()


@contextlib.contextmanager
def exclusive_file_lock(path: Path, busy_message: str) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for the block; raise
    LockedError(``busy_message``) if another process holds it (through a momentary
    holder: :func:`file_lock_held` probing it)."""
    with flocked(path, fcntl.LOCK_EX, lambda _holder: LockedError(busy_message), attempts=5):
        yield


def file_lock_held(path: Path) -> bool:
    """Whether another process holds an exclusive flock on the existing file ``path`` right
    now (a plain `run`'s project lock, a shard run's shard lock: :func:`exclusive_file_lock`;
    shared holders, such as shard runs on the project lock, do not count): a shared probe,
    released at once."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed in finally
    except OSError:  # gone (or unreadable): nobody to find
        return False
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a file system without locks: no holder can be found
        return False
    else:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False
    finally:
        handle.close()


def _flock_briefly(handle: Any, mode: int, attempts: int = 5, pause: float = 0.1) -> None:
    """flock without waiting on a real holder, but through a momentary one: `plan` probes
    the lock (shared, released at once), and a `run` starting in that instant should not
    fail. Raises OSError when the lock is still held after ``attempts``."""
    for attempt in range(attempts):
        try:
            fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:  # held by another process
            if attempt == attempts - 1:
                raise
            time.sleep(pause)
        except OSError as exc:  # ENOLCK, EOPNOTSUPP, ...: no holder, a file system without locks
            raise locks_unsupported(Path(handle.name), exc) from exc


class LocksUnsupportedError(UserError):
    """A lock file's file system refuses flock (a network file system mounted without lock
    support): it was taken for a lock another run holds ("locked by running `subsetctl run
    --shard` processes"), with nothing running."""

    error_kind = "environment"  # (the file system's, not another process's: no use retrying)


def locks_unsupported(path: Path, exc: OSError) -> LocksUnsupportedError:
    """The :class:`LocksUnsupportedError` for the lock file ``path`` that flock refused with ``exc``."""
    return LocksUnsupportedError(
        f"Cannot lock {path}: {exc.strerror or exc}. The file system holding it does not support file locks "
        "(flock), which subsetctl needs to keep runs of one project apart; no other run holds it. Move the "
        "project to a local disk, or mount the network file system with lock support."
    )


#: a resolved spec's digest as a lock file names it (:func:`subsetctl.project.fingerprint`: 16 hex digits)
_SPEC_DIGEST = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class LockHolder:
    """Who holds the project lock, as its lock file says: ``PID run HOST USER`` (a plain
    `run`; ``PID`` alone, or without the user, from an earlier subsetctl), ``PID shard HOST
    USER`` (a shard run's exclusive hold, see :meth:`subsetctl.project.Project.lock`), or nothing (shard runs
    holding it shared). The host matters on a cluster: a job refused on one node is told
    which node runs the other; the user, to a team sharing the project folder: whom to ask
    (another user's process is not theirs to stop, and its PID alone does not say whose).
    A run appends the digest of the resolved spec it read once it has stored it (``PID run
    HOST USER DIGEST``, :meth:`~subsetctl.project.Project.note_run_spec`): `plan` names the
    keys edited since, between its stages too; earlier subsetctls read the first four words."""

    pid: str
    shard: bool = False
    host: str | None = None
    user: str | None = None
    #: the holder's resolved spec digest (``.subsetctl/specs/<spec>.json``); None where not (yet) written
    spec: str | None = None

    @classmethod
    def read(cls, text: str) -> LockHolder:
        parts = text.split()
        spec = parts[4] if len(parts) > 4 and _SPEC_DIGEST.fullmatch(parts[4]) else None  # (not half appended)
        return cls(parts[0] if parts else "", parts[1:2] == [SHARD_TAG], parts[2] if len(parts) > 2 else None,
                   parts[3] if len(parts) > 3 else None, spec)

    @staticmethod
    def text(shard: bool) -> str:
        """What this process writes into the lock file when it holds it exclusively."""
        return f"{os.getpid()} {SHARD_TAG if shard else RUN_TAG} {socket.gethostname()} {user_name(os.geteuid())}"

    @property
    def on_host(self) -> str:
        """" on HOST" when the holder is on another machine than this one."""
        return f" on {self.host}" if self.host and self.host != socket.gethostname() else ""

    @property
    def where_whose(self) -> str:
        """:attr:`on_host`, and ", user NAME" when another user started the holder."""
        return self.on_host + (f", user {self.user}" if self.others else "")

    @property
    def others(self) -> bool:
        """Whether another user started the holder (a process this one may not stop)."""
        return bool(self.user) and self.user != user_name(os.geteuid())

    @property
    def stop_it(self) -> str:
        """How a refused user ends the holder: "stop that process", with how (Ctrl-C, or
        `kill PID`, on its machine) and that stopping it loses no finished work, or "ask NAME
        to stop it" where it is another user's (told to stop a process not theirs to stop)."""
        if self.others:
            return f"ask {self.user} to stop it"
        if not self.pid.isdigit():  # (a damaged lock file's first word: no command to give)
            return "stop that process"
        return (f"stop that process (Ctrl-C where it runs, or `kill {self.pid}`{self.on_host}: the work it "
                "finished is kept, and the next `run` resumes the rest)")


def write_holder(handle: IO[str], text: str) -> None:
    """Write ``text`` (:meth:`LockHolder.text`) into the lock file ``handle`` this process holds exclusively."""
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()


def process_started_after(pid: int, path: Path) -> bool:
    """Whether process ``pid`` started after ``path`` was last written, so that it cannot be
    the process that wrote it (its PID was given to another one since). Where the system
    does not say when a process started (no /proc: not Linux), False."""
    try:
        stat_fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        ticks_since_boot = int(stat_fields[stat_fields.rindex(")") + 2:].split()[19])  # field 22, starttime
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text(encoding="ascii").splitlines()
                    if line.startswith("btime "))
        started = boot + ticks_since_boot / os.sysconf("SC_CLK_TCK")
        written = path.stat().st_mtime
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    return started > written + 2.0  # boot time is whole seconds


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts as alive). A zombie, a process
    that died and whose parent has not collected it yet (a script waiting on another shard run
    first), is not: ``kill(pid, 0)`` still finds it, and its lock was taken over without a word."""
    try:
        os.kill(pid, 0)
    except OverflowError:  # no process has it (a damaged lock file's number)
        return False
    except OSError as exc:
        return exc.errno == errno.EPERM
    try:  # (Linux's /proc only; elsewhere a zombie still counts as alive)
        stat_fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    return stat_fields.rpartition(")")[2].split()[:1] != ["Z"]  # field 3, the state, after the name
