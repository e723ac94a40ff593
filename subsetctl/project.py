"""The project directory: spec file, state folder, lock, manifests and atomic writes (the
flock primitives the lock is built on: :mod:`subsetctl.file_locks`).

Layout::

    DIR/subsetctl.yaml          the spec (single source of truth)
    DIR/.subsetctl/lock         lock of a running `run` (exclusive, holds its PID, host and user; shared by `run --shard`)
    DIR/.subsetctl/<stage>/     a stage's artifacts
    DIR/.subsetctl/<stage>/manifest.json
                                written last, by atomic rename: the commit point
    DIR/.subsetctl/<stage>/work.json
                                the inputs and PID of the run working in the folder (a resume checks it)
    DIR/.subsetctl/specs/<digest>.json
                                the resolved specs the stages ran with (each manifest names its own)
    DIR/.subsetctl/.set-aside/<stage>/
                                a stage's finished results while a run with other inputs replaces them
    DIR/.subsetctl/.previous/<stage>/<fingerprint>/
                                earlier result sets (``project.keep_previous``), put back when the spec returns to them
    DIR/.subsetctl/cache/       re-run caches (fine-tunes, verify runs, test results, estimates; file hashes)

A manifest records the stage fingerprint, the spec slice it was computed from, the
upstream stages' output digests, the package and library versions, and a checksum of
every artifact file, so that corruption is detected instead of silently used.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG, S_IWGRP, S_IWOTH, S_IWUSR, S_IXUSR
from typing import IO, Any, Generic, TypeVar

from subsetctl.errors import (
    UTF8_LOCALE_ADVICE,
    LockedError,
    NotFoundError,
    UserError,
    missing_path_note,
    printable,
    shell_arg,
    standard_input_note,
    windows_path_note,
)
from subsetctl.file_locks import (
    LockHolder,
    LocksUnsupportedError,
    file_lock_held,
    flocked,
    pid_alive,
    process_started_after,
    write_holder,
)
from subsetctl.spec import SPEC_FILENAME
from subsetctl.spec.overrides import override_without_value_note
from subsetctl.spec.reading import spec_folder_message
from subsetctl.user_paths import expand_home

#: under the state folder: each stage's last finished results while a run with other
#: inputs re-runs it; put back if the spec returns to their inputs before that run commits
SET_ASIDE_DIRNAME = ".set-aside"
#: under the state folder: each stage's previous result sets (:meth:`Project.previous_dir`)
PREVIOUS_DIRNAME = ".previous"

STATE_DIRNAME = ".subsetctl"
MANIFEST = "manifest.json"
#: under the state folder: the resolved specs the stages ran with, one file per distinct spec
SPECS_DIRNAME = "specs"
#: a stage folder's own copy of its resolved spec, written by subsetctl before the shared store
RESOLVED_SPEC = "resolved_spec.json"
#: a stage folder's record of the run working in it: its inputs fingerprint and PID
WORK_MARKER = "work.json"
#: a file or folder being written, renamed into place when complete: ``.<name>.tmp-<PID>-<random>``
#: (:func:`atomic_write`, adapters, checkpoints); one whose process is gone was cut short by a kill
LEFTOVER = re.compile(r"^\..+\.tmp-(\d+)-[A-Za-z0-9_]+$")
#: an old folder :func:`replace_dir` renamed aside, deleted once the new one is in place
REPLACED = re.compile(r"^\..+\.old-[0-9a-f]{8}$")


def new_file_mode() -> int:
    """The mode a plainly created file gets under this process's umask (0o644 under the usual
    022). ``tempfile.mkstemp`` creates 0o600 files, which would leave report.md and every
    artifact unreadable to the rest of a team sharing the project directory. Read at each
    call, not once per process: a notebook that sets ``os.umask(0o002)`` between two runs
    got group-writable data files but atomically written artifacts with the first mode."""
    with contextlib.suppress(OSError, ValueError), open(_PROC_STATUS, encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    return _probed_file_mode()


_PROC_STATUS = "/proc/self/status"  # where Linux gives the umask without setting it


def give_files_new_mode(folder: Path) -> None:
    """Give every file under ``folder`` the mode :func:`new_file_mode` says: what a library
    saved there (``save_pretrained``: safetensors creates its weights file 0o600) becomes
    as readable as the other files this process writes, so that the rest of a team sharing
    the project directory, or the model cache, can read it too."""
    mode = new_file_mode()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


def copy_tree_writable(src: Path, dst: Path) -> None:
    """``shutil.copytree(src, dst)`` without ``src``'s permissions: the files get the mode
    :func:`new_file_mode` says and every folder is writable by its owner. A copy out of a
    read-only cache (a teammate's, one made ``chmod -R a-w``) kept its read-only modes, so
    what is written into the copy next (a fine-tune's README.md) was refused in a folder
    the user never made read-only."""
    shutil.copytree(src, dst, copy_function=shutil.copyfile)
    give_files_new_mode(dst)
    for folder in [dst, *(path for path in dst.rglob("*") if path.is_dir() and not path.is_symlink())]:
        folder.chmod(folder.stat().st_mode | S_IWUSR | S_IXUSR)


def _probed_file_mode() -> int:
    """:func:`new_file_mode` where there is no ``/proc`` (macOS): the mode of a probe file
    created 0o666 in the temporary folder. Setting the umask to 0 and back to read it, as
    the last resort does, briefly lets a file another thread creates meanwhile (a notebook's,
    Dask's) be writable by everyone, and this runs at every atomic write."""
    import secrets

    probe = os.path.join(tempfile.gettempdir(), f".subsetctl-umask-{os.getpid()}-{secrets.token_hex(8)}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
    try:
        return os.fstat(fd).st_mode & 0o777
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)


def check_arrow_can_open(folder: Path) -> None:
    """Refuse a project folder whose path pyarrow cannot open: under a locale that is not
    UTF-8 (``LC_ALL=C`` with UTF-8 mode off) a non-ASCII path reads as escaped bytes
    (surrogates), which pyarrow, encoding every path as UTF-8, refuses, so the stages after
    the data stage stopped with an internal error (``UnicodeEncodeError``)."""
    path = str(Path(folder).absolute())
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = printable(path)
        encoding = sys.getfilesystemencoding()
        if encoding.lower().replace("-", "") == "utf8":  # bytes in the path that are not UTF-8
            why, fix = "has bytes that are not UTF-8", "Rename the folders in its path to UTF-8 names"
        else:
            why = (f"is not readable as text under this locale (Python's file system encoding is {encoding}, "
                   "as under LC_ALL=C with UTF-8 mode off)")
            fix = UTF8_LOCALE_ADVICE[0].upper() + UTF8_LOCALE_ADVICE[1:]
        raise UserError(
            f"The project folder's path ({shown}) {why}, and pyarrow, which stores the stages' data, cannot "
            f"open files there. {fix}, or move the project to a folder whose path is ASCII."
        ) from None


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """Write ``path`` through ``write(handle)`` so that readers see the old or the new file,
    never half: a temporary file in the same folder, fsync, then ``os.replace``. An
    OSError that names no file is given ``path`` (:func:`naming_os_errors`): the
    pipeline's note names only the stage's folder, not the cache or other folder the
    stage was writing to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-")  # see LEFTOVER
    try:
        with naming_os_errors(path):
            os.fchmod(fd, new_file_mode())
            with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def naming_os_errors(path: Path) -> Iterator[None]:
    """Give an OSError raised in the block that names no file (a write or fsync on a full
    disk) ``path`` as its file, so that the message says where it was writing."""
    try:
        yield
    except OSError as exc:
        if exc.errno is not None and exc.filename is None:
            exc.filename = str(path)
        raise


def touch(path: Path) -> None:
    """Mark a cache entry as used now (its modification time), so that
    :meth:`Project.prune_caches` deletes the least recently used first."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _regular_files(folder: Path) -> Iterator[os.stat_result]:
    """The stat of every regular file under ``folder``; files and folders that vanish
    meanwhile (a running `run` renames and deletes them) are skipped, not an error."""
    for parent, _, names in os.walk(folder, onerror=lambda _: None):
        for name in names:
            try:
                stat = os.lstat(os.path.join(parent, name))
            except OSError:
                continue
            if S_ISREG(stat.st_mode):
                yield stat


def _new_bytes(folder: Path, seen: set[tuple[int, int]]) -> int:
    """Bytes of the files under ``folder`` not in ``seen`` ((device, inode) pairs), which
    it adds them to: a file with several links is counted once."""
    return _new_bytes_of(_regular_files(folder), seen)


def _new_bytes_of(stats: Iterable[os.stat_result], seen: set[tuple[int, int]]) -> int:
    """:func:`_new_bytes` of the files of those stats."""
    total = 0
    for stat in stats:
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_size
    return total


def _size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if not path.is_dir():
        return path.stat().st_size
    return sum(stat.st_size for stat in _regular_files(path))


def nearest_existing(folder: Path) -> Path:
    """``folder``, or the nearest folder above it that exists (where a run would make it). A
    path that cannot be looked at (below a folder this user may not enter: another user's
    0o700 home, where a shared HF_HOME or SUBSETCTL_CACHE points) counts as not there, so
    that the folder it is in is told: its PermissionError stopped `doctor` whole, not one check."""
    for path in (folder, *folder.parents):
        try:
            if path.exists():
                return path
        except OSError:  # (Path.exists raises it for EACCES, ENAMETOOLONG)
            continue
    return folder


def free_disk_at(folder: Path) -> tuple[int, Path]:
    """The free disk (bytes) where ``folder`` is or would be made (:func:`nearest_existing`),
    and that folder."""
    where = nearest_existing(folder)
    return shutil.disk_usage(where).free, where


def filesystem_of(where: Path) -> int | None:
    """The device of the filesystem holding ``where`` (``st_dev``, through links); None where it
    cannot be read. Two folders with one device share their free disk (:func:`free_disk_at`)."""
    try:
        return os.stat(where).st_dev
    except OSError:
        return None


def size_text(nbytes: float) -> str:
    """Bytes as a person reads them: "1.2 GB", "340.0 MB", "12 kB" (a figure in GB alone
    read "0.00 GB" for a small project's files)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 1e3:.0f} kB"


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object read from ``path``, or None (absent, unreadable, or not an object)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


MemoKey = TypeVar("MemoKey")
MemoValue = TypeVar("MemoValue")


class CommandMemo(Generic[MemoKey, MemoValue]):
    """A dict that exists only while :meth:`scope` is entered: what one command worked out
    once (a parsed manifest, a spec's validation) and would otherwise work out again and
    again, dropped when the outermost scope ends so that nothing held outlives the
    command. Re-entrant: a nested scope shares the outer one's dict. :attr:`held` is None
    outside any scope (nothing is kept)."""

    def __init__(self) -> None:
        self.held: dict[MemoKey, MemoValue] | None = None

    @contextlib.contextmanager
    def scope(self) -> Iterator[dict[MemoKey, MemoValue]]:
        """Keep what is memoized until the outermost scope ends; yields the dict held."""
        if self.held is not None:
            yield self.held
            return
        self.held = {}
        try:
            yield self.held
        finally:
            self.held = None


#: path -> (its stat stamp, the manifest parsed from it) while :func:`manifests_read_once` is on
_parsed_manifests: CommandMemo[Path, tuple[tuple[int, ...], dict[str, Any]]] = CommandMemo()


def manifests_read_once() -> contextlib.AbstractContextManager[Any]:
    """Within it, :meth:`Project.read_manifest` parses each manifest file once while it is
    the same file (device, inode, size, modification and change times): one command read
    the data stage's manifest (1.5 kB a source) over a hundred times, seconds for a project
    of thousands of sources. Re-entrant; the parsed manifests are dropped when the
    outermost one ends, so a dict handed out is never shared beyond the command. Usable as
    a decorator too."""
    return _parsed_manifests.scope()


def artifacts_shape_ok(artifacts: Any) -> bool:
    """Whether recorded checksums (a manifest's ``artifacts``, a cached fine-tune's
    checksums.json) map each file to its ``sha256`` and ``size``, as
    :func:`verify_checksums` reads them."""
    return isinstance(artifacts, dict) and all(
        isinstance(meta, dict) and isinstance(meta.get("sha256"), str) and isinstance(meta.get("size"), int)
        for meta in artifacts.values())


def manifest_shape_ok(manifest: dict[str, Any]) -> bool:
    """Whether a manifest read from disk has the shape the stages rely on: a fingerprint,
    artifacts mapping each file to its ``sha256`` and ``size``, and inputs (when recorded)
    as mappings. A manifest edited by hand with another type in one of them is no manifest
    (it stopped `plan`, `report` and `run` with an internal error)."""
    artifacts = manifest.get("artifacts", {})
    inputs = manifest.get("inputs", {})
    return (
        isinstance(manifest.get("fingerprint"), str)
        and artifacts_shape_ok(artifacts)
        and isinstance(inputs, dict)
        and all(isinstance(inputs.get(key, {}), dict) for key in ("upstream", "slice"))
    )


def replace_dir(src: Path, dst: Path, aside: Path | None = None) -> None:
    """Move folder ``src`` to ``dst``, replacing ``dst``. The old ``dst`` is first renamed
    aside (to ``aside``, by default a hidden sibling) and deleted last, so that at every
    moment ``dst`` is the old or the new complete folder, never half-written; should the
    second rename fail, the old folder is put back before the error is raised."""
    import uuid

    old = None
    if dst.exists():
        old = aside or dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        if old is not None and not dst.exists():
            os.replace(old, dst)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


#: how long a cache entry's half-written copy (``*.partial``) or an old entry :func:`replace_dir`
#: set aside (``.<key>.old-<hex>``) is left to the run at work on it (which deletes it itself at
#: once, unless it was killed or the deletion failed) before it counts as a leftover and is
#: deleted: a younger one may be another process's at work (another project's run sharing the
#: cache, on another machine too)
ABANDONED_AFTER_NS = 3600 * 1_000_000_000

#: the name :func:`replace_dir` gives the old folder it sets aside (by default)
_SET_ASIDE_LEFTOVER = re.compile(r"\..+\.old-[0-9a-f]{8}")


def _remove_leftover(path: Path, before_ns: int) -> None:
    """Delete the folder ``path`` :func:`replace_dir` set aside, where it was set aside (its
    change time: renaming renews it, not the modification time) before ``before_ns``."""
    try:
        if path.lstat().st_ctime_ns < before_ns and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


def remove_tree(path: Path) -> None:
    """``shutil.rmtree(path)``, raising the first error with the full path of the file it
    could not delete: rmtree deletes through folder descriptors, so its OSError named the
    bare file name ("Cannot use written.npy: Permission denied"), not where it is."""

    def name_the_path(failed: str, error: BaseException) -> None:
        if isinstance(error, OSError) and error.filename != failed:
            error.filename = failed
        raise error

    if sys.version_info >= (3, 12):  # onerror is deprecated there
        shutil.rmtree(path, onexc=lambda _func, failed, error: name_the_path(failed, error))
    else:
        shutil.rmtree(path, onerror=lambda _func, failed, exc_info: name_the_path(failed, exc_info[1]))


def keep_as_backup(path: Path) -> Path:
    """Copy the file ``path`` to a backup file that does not exist yet, ``NAME.bak``, then
    ``NAME.bak.1``, ``.bak.2``, ...; returns the backup. For a file of the user's that
    subsetctl is about to replace (a spec ``init --force`` overwrites, a report.md of
    their own): an earlier backup is never overwritten."""
    old = path.read_bytes()
    n = 0
    while True:
        backup = path.with_name(path.name + (".bak" if n == 0 else f".bak.{n}"))
        try:
            with backup.open("xb") as f:  # never overwrites an earlier backup
                f.write(old)
            return backup
        except FileExistsError:
            n += 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(text))


def finite_json(data: Any) -> Any:
    """``data`` with every NaN or infinite float replaced by None: Python's json writes
    them as the bare words NaN/Infinity, which is not JSON (JavaScript, jq and strict
    parsers reject the whole file). Every reader here treats None as "no value"."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    return data


def json_text(data: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``data`` (non-finite floats as null; see :func:`finite_json`)."""
    return json.dumps(finite_json(data), allow_nan=False, default=str, **kwargs)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def readable_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps(value)`` with text in other scripts as it is (``"データ/目標.jsonl"``), not
    ``\\u`` escapes, for files people read (report.md, report.json) and write as UTF-8; a lone
    surrogate (a file name's bytes that are not UTF-8, kept as Python decodes them) stays
    escaped, as UTF-8 cannot write it."""
    text = json.dumps(value, ensure_ascii=False, **kwargs)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def json_file_text(data: Any) -> str:
    """The text of a JSON file subsetctl writes: strict JSON, indented, keys sorted."""
    return json_text(data, indent=2, sort_keys=True) + "\n"


def compact_json_file_text(data: Any, width: int = 120) -> str:
    """The text of a JSON file of many small records (report.json), as :func:`json_file_text`
    reads (strict JSON, keys sorted) but shorter: an object or list whose text fits on one
    line of ``width`` characters, indent included, is one line (a source's row counts,
    ``{"test": 0, "train": 5, "validation": 0}``, not five lines), and a longer list or
    object of plain values (thousands of source names, their scores) wraps as many to a line
    as fit. One entry a line and two spaces an indent were a third of report.json at
    thousands of sources."""
    data = finite_json(data)

    def dumps(value: Any) -> str:
        return readable_json(value, allow_nan=False, default=str, sort_keys=True)

    def text(value: Any, indent: int) -> str:
        one = dumps(value)
        if not isinstance(value, dict | list) or not value or indent + len(one) <= width:
            return one
        pad = " " * (indent + 2)
        pairs = sorted(value.items()) if isinstance(value, dict) else None
        nested = any(isinstance(item, dict | list) for item in (value.values() if pairs is not None else value))
        if pairs is not None and nested:  # (a key's text as json.dumps writes it, also of a number)
            items = [f"{dumps({key: None})[1:-7]}: {text(item, indent + 2)}" for key, item in pairs]
        elif nested:
            items = [text(item, indent + 2) for item in value]
        else:  # plain values (a source's score by its name): as many a line as fit
            items, line = [], ""
            for item in (dumps({key: item})[1:-1] for key, item in pairs) if pairs is not None else map(dumps, value):
                if line and len(pad) + len(line) + len(item) + 2 > width:
                    items.append(line)
                    line = ""
                line = f"{line}, {item}" if line else item
            items.append(line)
        opening, closing = "{}" if isinstance(value, dict) else "[]"
        return f"{opening}\n" + ",\n".join(pad + item for item in items) + f"\n{' ' * indent}{closing}"

    return text(data, 0) + "\n"


def timestamp() -> str:
    """Now, local time with its UTC offset, as RFC 3339 writes it (``2026-12-04T15:46:29+01:00``):
    when a stage's results were written, in its manifest and report.json. ``%z``'s ``+0100``
    (no colon) is not RFC 3339, which Go's ``time.RFC3339``, Safari's ``Date`` and JSON
    Schema's ``date-time`` require of a script reading report.json."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` as :func:`json_file_text`, atomically (see :func:`atomic_write`)."""
    atomic_write_text(path, json_file_text(data))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of the file ``path`` as hex, read ``chunk`` bytes at a time (a model's
    weights need not fit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(data: Any) -> str:
    """A short stable hash of JSON-able data."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: a file changed less than this before it is hashed may be changed again within the
#: same tick of the file system's coarse clock without its change time moving
RACY_WINDOW_NS = 50_000_000


def stat_stamp(path: Path) -> list[int]:
    """A file's modification and change times and inode: while all three are unchanged the
    file has not been written, renamed over or replaced (the change time cannot be set back,
    unlike the modification time), so a checksum taken under this stamp still holds."""
    return stamp_of(path.stat())


def stamp_of(stat: os.stat_result) -> list[int]:
    """:func:`stat_stamp` of a file whose stat was taken."""
    return [stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def _hidden(rel: Path) -> bool:
    """Whether a path inside a stage folder is hidden, or inside a hidden folder: bookkeeping
    (a data source's ``.source.json``) or what a killed write left (``.adapter.tmp-PID-…/``),
    never an artifact."""
    return any(part.startswith(".") for part in rel.parts)


def artifact_checksums(folder: Path, scratch: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """sha256, size and stat stamp of every file under ``folder``, except the manifest,
    hidden files, lock files and the top-level ``scratch`` folders (a stage's work in
    progress, such as meta_init's checkpoints). Scratch is per stage so that a data source
    named like another stage's scratch folder is still tracked.

    The stamp lets :func:`verify_checksums` skip re-hashing files nothing has touched
    since; it is not part of what the artifact *is* (see :func:`artifact_contents`). As in
    git's "racy clean" rule, a stamp is only good once the clock has moved on from the
    file's last change, so files changed within the last :data:`RACY_WINDOW_NS` are hashed
    after that much time has passed; a file that changes while it is hashed gets no stamp."""
    exclude = (MANIFEST, WORK_MARKER, *scratch)  # work.json: bookkeeping of unfinished work, not an output
    out: dict[str, dict[str, Any]] = {}
    if not folder.exists():
        return out
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or rel.parts[0] in exclude or _hidden(rel) or path.name.endswith(".lock"):
            continue
        files.append((rel, path))
    newest = max((path.stat().st_ctime_ns for _, path in files), default=0)
    wait = newest + RACY_WINDOW_NS - time.time_ns()
    if wait > 0:
        time.sleep(min(wait, RACY_WINDOW_NS) / 1e9)
    for rel, path in files:
        before = stat_stamp(path)
        entry: dict[str, Any] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
        if stat_stamp(path) == before and trustworthy_stamp(before):
            entry["stat"] = before
        out[rel.as_posix()] = entry
    return out


def trustworthy_stamp(stamp: list[int]) -> bool:
    """Whether a stamp's times are fine-grained: a file system that keeps whole seconds
    (ext4 with small inodes, FAT, some network file systems) would let a same-size rewrite
    within the second keep the stamp, so its files are always hashed."""
    mtime_ns, ctime_ns, _ = stamp
    return bool(mtime_ns % 1_000_000_000 or ctime_ns % 1_000_000_000)


def artifact_contents(artifacts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The checksums without their stat stamps: what a stage's output digest is taken
    over, so that a re-run writing the same bytes keeps every later stage up to date."""
    return {rel: {k: v for k, v in meta.items() if k != "stat"} for rel, meta in artifacts.items()}


def verify_checksums(folder: Path, recorded: dict[str, dict[str, Any]],
                     restamped: dict[str, list[int]] | None = None) -> list[str]:
    """Names of recorded artifacts that are missing, truncated or altered.

    A file whose stat stamp is the one recorded with its checksum is not hashed again:
    `plan` and every `run` check every artifact, and hashing a multi-GB gradient store
    took about a second per GB each time. Any write, replacement or copy of the file
    changes the stamp and is hashed in full (as is every file of a manifest written by
    a version that recorded no stamps). Files hashed and found intact go into
    ``restamped`` (their current stamps), for the caller to record. A stamp cannot see
    bytes that rot on disk under unchanged metadata; such damage is found once the file
    is written or copied."""
    problems = []
    for rel, meta in recorded.items():
        if rel == WORK_MARKER:  # recorded by older builds; bookkeeping, not an output
            continue
        if (rel.startswith(".") or "/." in rel) and _hidden(Path(rel)):  # a killed write's leftover that an older build recorded: no artifact
            continue  # (see artifact_checksums), and `run` deletes it
        try:
            problem = _checksum_problem(folder / rel, meta, rel, restamped)
        except (FileNotFoundError, NotADirectoryError):  # gone since: a running `run` moved its folder
            problem = f"{rel} is missing"  # (`plan` and `report` check while one works)
        if problem:
            problems.append(problem)
    return problems


def _checksum_problem(path: Path, meta: dict[str, Any], rel: str, restamped: dict[str, list[int]] | None) -> str | None:
    """What is wrong with one recorded artifact (see :func:`verify_checksums`), or None."""
    try:  # one stat for the three questions (three each took 5 s of a `plan` of 10,000 sources' 60,000 files)
        stat = path.stat()
    except (OSError, ValueError):
        stat = None
    if stat is None or not S_ISREG(stat.st_mode):
        return f"{rel} is missing"
    if stat.st_size != meta["size"]:
        return f"{rel} has size {stat.st_size}, expected {meta['size']}"
    if meta.get("stat") is not None and meta["stat"] == stamp_of(stat):
        return None
    before = stat_stamp(path)
    if sha256_file(path) != meta["sha256"]:
        return f"{rel} does not match its checksum"
    if restamped is not None and stat_stamp(path) == before and trustworthy_stamp(before):
        restamped[rel] = before
    return None


class _LockBusy(Exception):
    """The project lock is held (:meth:`Project.restamp_manifest_when_idle` then writes nothing)."""


def _not_a_spec_file(path: Path) -> str:
    """The error of a project named by a file that is no spec by its name (``report.md``,
    ``a.jsonl``, a script), not the YAML spec of another name that may be renamed to
    ``subsetctl.yaml``: the project folder holding it, where there is one, to name instead. It
    was advised to rename or copy the file to its folder's subsetctl.yaml, one that was there
    already, or to check it as a spec with `validate`. A file in a project's subfolder
    (``p/data/a.jsonl``) names that project too."""
    folder = path.parent
    project = folder.resolve() if (folder / SPEC_FILENAME).is_file() else enclosing_project(folder)
    if project is not None:
        return (f"{path} is a file, but a project is a folder whose spec is named {SPEC_FILENAME}: {path.name} is "
                f"in the project {shell_arg(project)}: name that folder (or its {SPEC_FILENAME}).")
    return (f"{path} is a file, but a project is a folder whose spec is named {SPEC_FILENAME}: name a project "
            f"folder, or create one with `subsetctl init DIR` (a spec names its data files under target.loader "
            "and sources).")


def missing_project_folder_note(p: Path) -> str:
    """What follows "``p`` does not exist" where a command names a project folder ``p`` that is not
    there (:meth:`Project.find`, and `doctor`'s project check): why, when that shows, and what to
    name or create instead, ending with a ``.``. ``init`` of it is advised only where that makes
    the project meant: not for ``-`` (standard input), a spec file named otherwise beside its
    project, a Windows path (``init 'proj\\v2'``, which init refuses), an override without its
    value (``meta_init.steps``) nor a spec file's own path (``p/subsetctl.yaml``)."""
    if standard_input_note(p):  # `subsetctl plan -`: not "create one with `init ./-`"
        return f"{standard_input_note(p)}."
    spec = spec_beside(p)
    if spec is not None:  # `run proj/subsetctl.yml`: the project is there, its spec named otherwise
        return f", but {spec} does: name the project folder ({shell_arg(spec.parent)}) or its {SPEC_FILENAME}."
    if windows_path_note(p):  # `plan proj\\v2`: not "create one with `init 'proj\\v2'`", which init refuses
        return f"{windows_path_note(p)}."
    if override_without_value_note(p):  # `plan meta_init.steps`: not "create one with `init meta_init.steps`"
        return f"{override_without_value_note(p)}."
    create = (f"or create one with `subsetctl init {shell_arg(p)}`" if not named_as_yaml(p)
              else f"or create one with `subsetctl init DIR` (its spec is DIR/{SPEC_FILENAME})")
    return (f"{missing_path_note(p, 'the command')}. Name an existing project folder (one holding {SPEC_FILENAME}), "
            f"{create}.")


def named_as_yaml(path: Path) -> bool:
    """Whether ``path``'s name ends in ``.yaml`` or ``.yml`` (in any case): a spec file named
    where a command takes a project folder (or its spec), not a data file or a report."""
    return path.suffix.lower() in (".yaml", ".yml")


def named_as_json(path: Path) -> bool:
    """Whether ``path``'s name ends in ``.json`` (in any case): a report.json kept from a
    variant, which `report --compare` reads, named where a project folder is expected."""
    return path.suffix.lower() == ".json"


def spec_beside(path: Path) -> Path | None:
    """For a spec file named that does not exist (`proj/subsetctl.yml`, `proj/spec.yaml`): the
    project spec in its folder, when there is one, which the user most likely meant."""
    if not named_as_yaml(path) or path.name == SPEC_FILENAME or path.exists():
        return None
    spec = path.parent / SPEC_FILENAME
    return spec if spec.is_file() else None


def enclosing_project(folder: Path) -> Path | None:
    """The nearest folder above ``folder`` that holds a spec, resolved: the project a command
    run in its data folder most likely meant (``init`` there would nest a second project)."""
    return next((f for f in folder.resolve().parents if (f / SPEC_FILENAME).is_file()), None)


def projects_below(folder: Path, looked_at: int = 500) -> list[Path]:
    """The project folders right inside ``folder`` (holding a spec), by name: the project a
    command run in its parent folder meant (`subsetctl init myproject` then `subsetctl run`,
    which advised `subsetctl init .`); :func:`projects_named` names them. Only the first
    ``looked_at`` entries are looked at (a home folder may hold thousands); an unreadable
    folder has none."""
    import itertools

    found = []
    with contextlib.suppress(OSError):
        for entry in itertools.islice(folder.iterdir(), looked_at):
            with contextlib.suppress(OSError):
                if (entry / SPEC_FILENAME).is_file():
                    found.append(entry)
    return sorted(found)


def projects_named(below: list[Path], most: int = 3) -> str:
    """:func:`projects_below`'s folders as an error names them: the first ``most``, then how
    many more (a folder of 15 variants named 3, as if they were all)."""
    more = len(below) - most
    return ", ".join(shell_arg(p) for p in below[:most]) + (f" and {more} more" if more > 0 else "")


def path_argument(value: Any, what: str, example: str) -> Path:
    """``value`` as a Path, or a UserError saying what to pass: a dict or None raised a
    TypeError from Path() ("expected str, bytes or os.PathLike object"), and an empty dict
    or list was taken for the current folder."""
    if not isinstance(value, str | os.PathLike):
        raise UserError(f"{what} must be a str or pathlib.Path (e.g. {example!r}), not {value!r} "
                        f"({type(value).__name__}).")
    return expand_home(value)


def _own_private_group(gid: int) -> bool:
    """Whether the group ``gid`` is this user's private group, the user-private-group scheme
    of Debian, Ubuntu and Fedora (``USERGROUPS_ENAB``): the user's primary group, named as the
    user, listing no other member and no other user's primary group (a member the group's
    list leaves out). Such systems set umask 002 for these users, so every folder they make
    is writable by that group, which no one else is in: a link to it was refused as
    "writable by its group". Where the user or group database cannot tell, False."""
    import grp
    import pwd

    try:
        user, group = pwd.getpwuid(os.getuid()), grp.getgrgid(gid)
        if gid != user.pw_gid or group.gr_name != user.pw_name or not set(group.gr_mem) <= {user.pw_name}:
            return False
        return not any(other.pw_gid == gid and other.pw_name != user.pw_name for other in pwd.getpwall())
    except (KeyError, OSError):
        return False


@dataclass
class Project:
    """A project directory holding ``subsetctl.yaml`` and the ``.subsetctl`` state."""

    root: Path
    #: while `plan` works out a run (:meth:`as_if_put_back`): the manifests of kept results
    #: that run will put back, by stage, read in place of the stage's current ones
    _put_back: dict[str, dict[str, Any]] | None = field(default=None, repr=False, compare=False)
    #: while this process holds the run lock exclusively: the lock files it holds, the one it
    #: took first and any it took again after the file was deleted (:meth:`keep_lock_in_place`),
    #: and what it wrote in them
    _held_locks: list[IO[str]] | None = field(default=None, repr=False, compare=False)
    _held_lock_text: str = field(default="", repr=False, compare=False)
    #: the folder (or spec file) :meth:`find` was given, as given: "" for the current folder
    #: (none named); None for a Project made from its root alone. Commands a message suggests
    #: name the project so on the command line (:func:`subsetctl.errors.run_command`).
    named_as: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def find(cls, path: str | Path | None) -> Project:
        """The project at ``path`` (a directory or its spec file); errors if none. Not a
        str or Path (``list_plugins({...})`` from a notebook): a UserError saying what to pass,
        not a TypeError, nor an empty dict or list taken for the current folder."""
        p = Path(".") if path is None or path == "" else path_argument(path, "The project folder", "myproject")
        if p.is_file():
            if named_as_json(p):  # a report.json kept from a variant: no spec to rename
                raise UserError(
                    f"{p} is a file, but a project is a folder whose spec is named {SPEC_FILENAME}: name the "
                    f"project folder. A report.json kept from a variant is read only by `report --compare`: "
                    f"`subsetctl report {shell_arg(p)} --compare OTHER` (another kept report.json, or a project "
                    "folder) sets it beside another variant."
                )
            if p.name != SPEC_FILENAME and not named_as_yaml(p):  # report.md, a.jsonl
                raise UserError(_not_a_spec_file(p))
            if p.name != SPEC_FILENAME:  # its folder's own spec would be run instead, without a word
                raise UserError(
                    f"{p} is a file, but a project is a folder whose spec is named {SPEC_FILENAME}: commands "
                    f"other than `validate` take the folder (or its {SPEC_FILENAME}). Name the folder, or "
                    f"rename or copy {p.name} to {p.parent / SPEC_FILENAME} (one spec per project folder), "
                    f"or check this file alone with `subsetctl validate {shell_arg(p)}`."
                )
            p = p.parent
        if not p.exists():
            raise NotFoundError(f"{p} does not exist{missing_project_folder_note(p)}")
        if not p.is_dir():  # /dev/null, a named pipe: `init` of it, as advised below, refused it as a file
            raise UserError(f"{p} is neither a folder nor a file (a device or a named pipe): a project is a folder "
                            f"holding its spec ({SPEC_FILENAME}); name the project folder.")
        if (p / SPEC_FILENAME).is_dir():
            raise UserError(spec_folder_message(p))
        if not (p / SPEC_FILENAME).is_file():
            enclosing = enclosing_project(p)
            if enclosing is not None:  # run from a project's data folder: `init` there would nest a project
                raise NotFoundError(
                    f"{p} is not a subsetctl project: it has no {SPEC_FILENAME}, but it is inside the project "
                    f"{enclosing}. Name that folder ({shell_arg(enclosing)}), or create a project here with "
                    f"`subsetctl init {shell_arg(p)}`.")
            from subsetctl.overview import sweep_projects

            below = sweep_projects(p)[0]  # (a sweep's nested variants too, sweep/lam0.1/seed0, as `ls` finds them)
            if below:  # run from the folder `subsetctl init myproject` was typed in: the project is below it
                names = projects_named(below)
                raise NotFoundError(
                    f"{p} is not a subsetctl project: it has no {SPEC_FILENAME}, but {names} "
                    f"{'is a project' if len(below) == 1 else 'are projects'}: name "
                    f"{'it' if len(below) == 1 else 'one'} after the command, as in `subsetctl run "
                    f"{shell_arg(below[0])}`, or create a project here with `subsetctl init {shell_arg(p)}`.")
            raise NotFoundError(
                f"{p} is not a subsetctl project: it has no {SPEC_FILENAME}. "
                f"Create one with `subsetctl init {shell_arg(p)}`."
            )
        root = p.resolve()
        if "::" in str(root):  # fsspec's chained-URL separator: datasets wrote no data files, then failed
            raise UserError(
                f"{root}: the project folder's path holds '::', which the datasets library reads as a chained URL "
                "(as in 'zip://x::file.zip'): it cannot save or load the prepared data there. Rename the folder "
                "(or the one above it that holds '::'), or move the project."
            )
        return cls(root, named_as="" if path is None else str(path))

    @property
    def spec_path(self) -> Path:
        """The project's spec file, ``subsetctl.yaml``."""
        return self.root / SPEC_FILENAME

    @property
    def state_dir(self) -> Path:
        """The folder of everything subsetctl computes and keeps for the project, ``.subsetctl``."""
        return self.root / STATE_DIRNAME

    @property
    def lock_path(self) -> Path:
        """The run lock's file (:meth:`lock`)."""
        return self.state_dir / "lock"

    def stage_dir(self, stage: str) -> Path:
        """The folder of ``stage``'s current results (and of a run's work in progress)."""
        return self.state_dir / stage

    def set_aside_dir(self, stage: str) -> Path:
        """Where a stage's finished results wait while a run with other inputs replaces them
        (see :meth:`subsetctl.pipeline.Pipeline._prepare_work_dir`)."""
        return self.state_dir / SET_ASIDE_DIRNAME / stage

    def read_set_aside_manifest(self, stage: str) -> dict[str, Any] | None:
        """The manifest of ``stage``'s set-aside results, or None (none, or unreadable)."""
        return read_json_object(self.set_aside_dir(stage) / MANIFEST)

    def previous_dir(self, stage: str) -> Path:
        """The folder of a stage's previous finished results (``project.keep_previous``):
        each set of results a run with other inputs replaced waits in a subfolder named by
        its inputs fingerprint (content-addressed: the same inputs kept twice are one set),
        so that going back to any of them puts it back instead of computing it again."""
        return self.state_dir / PREVIOUS_DIRNAME / stage

    def previous_sets(self, stage: str) -> list[Path]:
        """The folders of ``stage``'s previous result sets, the most recently kept first
        (a set's folder is dated when it is kept). A previous folder with a manifest of its
        own is the one set an earlier subsetctl kept there."""
        folder = self.previous_dir(stage)
        if (folder / MANIFEST).is_file():
            return [folder]
        dated = []
        for child in folder.iterdir() if folder.is_dir() else []:
            with contextlib.suppress(OSError):
                if not child.name.startswith(".") and child.is_dir():
                    dated.append((child.stat().st_mtime_ns, child.name, child))
        return [child for _, _, child in sorted(dated, reverse=True)]

    def read_previous_manifests(self, stage: str) -> list[tuple[Path, dict[str, Any]]]:
        """Each previous result set of ``stage`` (:meth:`previous_sets`) with its manifest,
        the most recent first; sets whose manifest is missing or unreadable are left out."""
        return [(folder, manifest) for folder in self.previous_sets(stage)
                if (manifest := read_json_object(folder / MANIFEST)) is not None]

    def keep_as_previous(self, stage: str, keep: int = 1) -> None:
        """Once a run with other inputs has committed ``stage``: its set-aside results (the
        ones it replaced) become one of the stage's previous result sets, of which the
        ``keep`` most recent are kept (the oldest are deleted)."""
        aside = self.set_aside_dir(stage)
        if (aside / MANIFEST).is_file():
            self.add_previous(stage, aside, keep)
        self.drop_set_aside(stage)

    def add_previous(self, stage: str, folder: Path, keep: int) -> None:
        """Move ``folder`` (finished results of ``stage``) in among its previous result sets,
        under its inputs fingerprint (replacing a set of the same inputs), dated now; then
        keep the ``keep`` most recent sets only."""
        self._previous_as_sets(stage)
        manifest = read_json_object(folder / MANIFEST) or {}
        key = str(manifest.get("fingerprint") or "")
        key = key[:16] if re.fullmatch(r"[0-9A-Za-z_-]+", key) else f"unknown-{os.getpid()}-{time.time_ns()}"
        target = self.previous_dir(stage) / key
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(folder, target)
        os.utime(target)  # a rename leaves its date as it was: the set is dated by when it was kept
        self.limit_previous(stage, keep)

    def limit_previous(self, stage: str, keep: int) -> None:
        """Delete ``stage``'s previous result sets but the ``keep`` most recent ones."""
        for old in self.previous_sets(stage)[max(keep, 0):]:
            shutil.rmtree(old, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.previous_dir(stage).rmdir()  # none left
        with contextlib.suppress(OSError):
            (self.state_dir / PREVIOUS_DIRNAME).rmdir()

    def _stages_with_previous(self) -> list[str]:
        """The stages with a folder of previous result sets, by name (hidden moves left out)."""
        folder = self.state_dir / PREVIOUS_DIRNAME
        return [child.name for child in (sorted(folder.iterdir()) if folder.is_dir() else [])
                if not child.name.startswith(".") and child.is_dir()]

    def limit_all_previous(self, keep: int) -> None:
        """:meth:`limit_previous` for every stage (``project.keep_previous`` lowered)."""
        for stage in self._stages_with_previous():
            self.limit_previous(stage, keep)

    def _previous_as_sets(self, stage: str) -> None:
        """Move the one previous set an earlier subsetctl kept in ``stage``'s previous folder
        itself into a subfolder of it, as the sets are kept now. Two renames: a kill between
        them leaves the hidden folder that :meth:`recover_swaps` moves in."""
        folder = self.previous_dir(stage)
        moving = folder.parent / f".{stage}.sets"
        if (folder / MANIFEST).is_file():
            os.replace(folder, moving)
        if moving.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            key = str((read_json_object(moving / MANIFEST) or {}).get("fingerprint") or "earlier")[:16]
            os.replace(moving, folder / (key if re.fullmatch(r"[0-9A-Za-z_-]+", key) else "earlier"))

    def swap_in_previous(self, stage: str, kept: Path, keep_current: bool, keep: int = 1) -> None:
        """Put ``stage``'s previous result set ``kept`` (one of :meth:`previous_sets`) in its
        folder. Its current finished results become a previous set when ``keep_current``
        (else, and unfinished work always, are deleted); the ``keep`` most recent sets are
        kept. Three renames; :meth:`recover_swaps` completes one a crash cut short."""
        current = self.stage_dir(stage)
        swap = self._swap_dir(stage)
        self.recover_swaps()  # a swap a kill cut short holds results: completed, never deleted
        if current.exists():
            os.replace(current, swap)
        os.replace(kept, current)
        if swap.exists() and keep_current and (swap / MANIFEST).is_file():
            self.add_previous(stage, swap, keep)
        else:
            shutil.rmtree(swap, ignore_errors=True)
        self.limit_previous(stage, keep)
        self.tidy_set_aside()

    def finish_interrupted_moves(self, keep_previous: int) -> None:
        """Complete what a run killed between two renames left (`run` calls this first,
        under the lock): a cut-short :meth:`swap_in_previous`; set-aside results of a stage
        that has committed since (killed before :meth:`keep_as_previous`), which become its
        previous ones (or are dropped, ``keep_previous`` 0: the sets kept per stage); and the old folders
        :func:`replace_dir` had renamed aside and not yet deleted (always ones being
        replaced, so safe to delete). Set-aside results of a stage whose manifest is
        damaged stay set aside: that stage has not committed, and they may be its only
        good results."""
        self.recover_swaps()
        folder = self.state_dir / SET_ASIDE_DIRNAME
        for aside in sorted(folder.iterdir()) if folder.is_dir() else []:
            if aside.is_dir() and not aside.name.startswith(".") and self.read_committed_manifest(aside.name):
                if keep_previous:
                    self.keep_as_previous(aside.name, keep_previous)
                else:
                    self.drop_set_aside(aside.name)
        for pattern in (f"{SET_ASIDE_DIRNAME}/.*.old-*", f"{PREVIOUS_DIRNAME}/.*.old-*", f"{PREVIOUS_DIRNAME}/*/.*.old-*",
                        ".*.old-*"):
            for old in self.state_dir.glob(pattern):
                shutil.rmtree(old, ignore_errors=True)
        self.tidy_set_aside()
        self.delete_killed_writes()

    def delete_killed_writes(self) -> None:
        """Delete the half-written files and folders (:data:`LEFTOVER`) of processes that are
        gone: a kill between writing and renaming into place leaves them, hidden, in the
        state folder or next to report.md; no later write reuses their names."""
        def gone(name: str) -> bool:
            match = LEFTOVER.match(name)
            return match is not None and not pid_alive(int(match.group(1)))

        for folder in (self.root, self.root / "plots"):
            for path in folder.glob(".*.tmp-*") if folder.is_dir() else []:
                if path.is_file() and gone(path.name):
                    path.unlink(missing_ok=True)
        for parent, folders, files in os.walk(self.state_dir):
            for name in files:
                if gone(name):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(parent, name))
            for name in [name for name in folders if gone(name)]:
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
                folders.remove(name)

    def recover_swaps(self) -> None:
        """Complete a :meth:`swap_in_previous` that a crash or kill cut short: the stage's
        results, out of its folder for an instant, are never lost (nor an earlier
        subsetctl's previous set being moved into a subfolder, :meth:`_previous_as_sets`)."""
        folder = self.state_dir / PREVIOUS_DIRNAME
        for moving in sorted(folder.glob(".*.sets")) if folder.is_dir() else []:
            self._previous_as_sets(moving.name[1:-len(".sets")])
        for swap in sorted(folder.glob(".*.swap")) if folder.is_dir() else []:
            stage = swap.name[1:-len(".swap")]
            if not self.stage_dir(stage).exists():  # cut before the previous results went in
                os.replace(swap, self.stage_dir(stage))
            elif (swap / MANIFEST).is_file():  # cut before the current results became a previous set
                self.add_previous(stage, swap, len(self.previous_sets(stage)) + 1)
            else:
                shutil.rmtree(swap, ignore_errors=True)

    def kept_bytes(self) -> dict[str, int]:
        """Disk taken by what the project keeps besides its current results, for `plan`:
        ``previous`` (:meth:`previous_sets`, less files hard-linked into the stage folders),
        ``set_aside`` and ``cache``. Each file is counted once however many links it has."""
        kept = {name: list(_regular_files(self.state_dir / folder))
                for name, folder in (("previous", PREVIOUS_DIRNAME), ("set_aside", SET_ASIDE_DIRNAME), ("cache", "cache"))}
        # current results: what links to them costs nothing more; only a file of more than one link can be
        # one (the walk of the current results took 60,000 stats for a 10,000-source project's `plan`)
        linked = any(stat.st_nlink > 1 for stats in kept.values() for stat in stats)
        seen = self._current_files() if linked else set()
        return {name: _new_bytes_of(stats, seen) for name, stats in kept.items()}

    def _current_files(self) -> set[tuple[int, int]]:
        """(device, inode) of every file of the current results (the state folder less what
        is kept besides them): a kept file linked to one of them takes no more disk."""
        seen: set[tuple[int, int]] = set()
        hidden = (SET_ASIDE_DIRNAME, PREVIOUS_DIRNAME, "cache")
        try:
            current = [f for f in self.state_dir.iterdir() if f.name not in hidden]
        except OSError:
            current = []
        for folder in current:
            _new_bytes(folder, seen)
        return seen

    def prune_previous(self, limit_bytes: int) -> tuple[int, int]:
        """Delete the previous result sets of every stage kept least recently until they
        take at most ``limit_bytes`` (``project.keep_previous_gb``; files linked into the
        current results count nothing). Returns (sets deleted, bytes freed)."""
        seen = self._current_files()
        dated = []
        for stage in self._stages_with_previous():
            for kept in self.previous_sets(stage):
                with contextlib.suppress(OSError):
                    dated.append((kept.stat().st_mtime_ns, kept, stage))
        sized = [(mtime, kept, stage, _new_bytes(kept, seen)) for mtime, kept, stage in sorted(dated, reverse=True)]
        total = sum(size for *_, size in sized)
        removed = freed = 0
        for _, kept, stage, size in reversed(sized):  # the least recently kept first
            if total <= limit_bytes:
                break
            shutil.rmtree(kept, ignore_errors=True)
            self.limit_previous(stage, len(self.previous_sets(stage)))  # (its folder, when emptied)
            total, removed, freed = total - size, removed + 1, freed + size
        return removed, freed

    #: the cache folders :meth:`prune_caches` trims, one entry (file or folder) per cached result
    CACHE_KINDS = ("finetune", "verify", "evaluate", "search")

    #: how much earlier than a run's start (by the file system's clock) cache entries count as
    #: used by it: covers file systems that store whole seconds
    CACHE_CLOCK_MARGIN_NS = 2_000_000_000

    def cache_clock(self) -> int | None:
        """The time a run starts, by the clock of the file system that dates the cache
        entries (a marker file's modification time, less :data:`CACHE_CLOCK_MARGIN_NS`):
        the process clock can run ahead of it (a coarse kernel clock; a file server behind
        the machine), which would make entries this run used look older than its start.
        None when the marker cannot be written (then nothing is trimmed)."""
        now = self._cache_now()
        return None if now is None else now - self.CACHE_CLOCK_MARGIN_NS

    def _cache_now(self) -> int | None:
        """Now, by the clock of the file system that dates the cache entries: the
        modification time of a marker file written now (None when it cannot be written)."""
        marker = self.state_dir / "cache" / ".run-started"
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(os.getpid()))
            return marker.stat().st_mtime_ns
        except OSError:
            return None

    def prune_caches(self, limit_bytes: int, keep_since_ns: int) -> tuple[int, int]:
        """Delete the least recently used cache entries (fine-tunes, verify runs, test
        results, subset estimates) until the caches take at most ``limit_bytes``; entries
        used or written since ``keep_since_ns`` (this run, :meth:`cache_clock`) are never
        deleted. Entries are dated by their modification time, which a cache hit renews
        (:func:`touch`). Half-written entries a killed run left (``*.partial``) go too, and
        old entries :func:`replace_dir` set aside (``.<key>.old-<hex>``) that it failed to
        delete, each :data:`ABANDONED_AFTER_NS` older than the run's start (a younger copy may
        be another process's at work, as finetune's store leaves it: one merely older than
        the run's start was deleted under a run sharing the cache) (they are hidden, never used, and
        were kept for good). An entry dated in the future (written before the clock was set
        back) counts as used now for its order, but is not protected as this run's: it was
        kept over the limit until the clock caught up.
        Returns (entries deleted, bytes freed): an entry that could not be deleted (another
        user's, in a project folder a team shares) is not counted: the run said it had deleted it."""
        entries: list[tuple[int, int, Path]] = []
        for kind in self.CACHE_KINDS:
            folder = self.state_dir / "cache" / kind
            try:
                children = list(folder.iterdir())
            except OSError:
                continue
            for child in children:
                if child.name.startswith("."):
                    if _SET_ASIDE_LEFTOVER.fullmatch(child.name):
                        _remove_leftover(child, keep_since_ns - ABANDONED_AFTER_NS)
                    continue
                try:
                    mtime = child.stat().st_mtime_ns
                    if child.name.endswith(".partial"):  # half-written by a run that was killed: never used
                        if mtime < keep_since_ns - ABANDONED_AFTER_NS:  # (a younger one: maybe another run's at work)
                            shutil.rmtree(child, ignore_errors=True)
                        continue
                    entries.append((mtime, _size_of(child), child))
                except OSError:
                    continue
        total = sum(size for _, size, _ in entries)
        if total <= limit_bytes:
            return 0, 0
        now = self._cache_now()  # (what lies beyond it, with a coarse file system's rounding, is no use of this run's)
        future = 2**63 if now is None else now + self.CACHE_CLOCK_MARGIN_NS
        removed = freed = 0
        for mtime, size, path in sorted(entries, key=lambda e: min(e[0], future)):
            if total <= limit_bytes:
                break
            if keep_since_ns <= mtime <= future:  # used or written by this run
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            if os.path.lexists(path):  # another user's entry in a cache a team shares: not this run's to delete
                continue
            total -= size
            removed, freed = removed + 1, freed + size
        return removed, freed

    def keep_resolved_spec(self, resolved: dict[str, Any]) -> str:
        """Store the resolved spec a stage ran with as ``specs/<digest>.json`` and return
        the digest, which the stage's manifest records (``resolved_spec``). One file per
        distinct spec, not one per stage folder: the stages of a run share their spec, and
        with 2,000 sources each copy took 860 KB, nine of them a run. An existing copy whose
        text is the spec's is kept (its modification time renewed: used by this run); the
        text is made once, for the comparison and the write, and the copy is not parsed."""
        digest = fingerprint(resolved)
        path = self._stored_spec_path(digest)
        text = json_file_text(resolved)
        try:
            same = path.read_text(encoding="utf-8") == text
        except (OSError, UnicodeDecodeError):  # not there yet (or unreadable: written again)
            same = False
        if same:
            touch(path)
        else:
            atomic_write_text(path, text)
        return digest

    def resolved_spec(self, stage: str) -> dict[str, Any] | None:
        """The resolved spec ``stage``'s current results were computed with: the stored one
        its manifest names, or the stage folder's own ``resolved_spec.json`` (results of an
        earlier subsetctl); None when there is neither."""
        manifest = self.read_manifest(stage) or {}
        digest = manifest.get("resolved_spec")
        if isinstance(digest, str):
            return self.stored_spec(digest)
        return read_json_object(self.stage_dir(stage) / RESOLVED_SPEC)

    def stored_spec(self, digest: str) -> dict[str, Any] | None:
        """The resolved spec :meth:`keep_resolved_spec` stored under ``digest`` (a
        manifest's ``resolved_spec``); None when it is missing or unreadable."""
        return read_json_object(self._stored_spec_path(digest))

    def holds_stored_spec(self, digest: str) -> bool:
        """Whether the resolved spec of ``digest`` is stored (:meth:`keep_resolved_spec`)."""
        return self._stored_spec_path(digest).is_file()

    def _stored_spec_path(self, digest: str) -> Path:
        """Where :meth:`keep_resolved_spec` stores the resolved spec of ``digest``."""
        return self.state_dir / SPECS_DIRNAME / f"{digest}.json"

    def prune_resolved_specs(self) -> int:
        """Delete the stored specs that no stage's results name (current, set aside or
        previous: the results a later run may put back). Called under the exclusive lock,
        when no other run can be between storing a spec and writing the manifest that
        names it. Returns how many were deleted."""
        named = set()
        for manifest in (*self.state_dir.glob(f"*/{MANIFEST}"), *self.state_dir.glob(f"{SET_ASIDE_DIRNAME}/*/{MANIFEST}"),
                         *self.state_dir.glob(f"{PREVIOUS_DIRNAME}/*/{MANIFEST}"),
                         *self.state_dir.glob(f"{PREVIOUS_DIRNAME}/*/*/{MANIFEST}")):
            digest = (read_json_object(manifest) or {}).get("resolved_spec")
            if isinstance(digest, str):
                named.add(f"{digest}.json")
        removed = 0
        for path in (self.state_dir / SPECS_DIRNAME).glob("*.json"):
            with contextlib.suppress(OSError):
                if path.name not in named:
                    path.unlink()
                    removed += 1
        return removed

    def drop_previous(self) -> None:
        """Delete every stage's previous results (``project.keep_previous: false``)."""
        shutil.rmtree(self.state_dir / PREVIOUS_DIRNAME, ignore_errors=True)

    def swap_cut_short(self, stage: str) -> bool:
        """Whether a :meth:`swap_in_previous` of ``stage`` was cut short (see :meth:`recover_swaps`)."""
        return self._swap_dir(stage).is_dir()

    def _swap_dir(self, stage: str) -> Path:
        return self.state_dir / PREVIOUS_DIRNAME / f".{stage}.swap"

    def drop_set_aside(self, stage: str) -> None:
        """Delete ``stage``'s set-aside results (replaced for good, or dropped by ``--force``),
        and the set-aside folder itself once it holds nothing."""
        shutil.rmtree(self.set_aside_dir(stage), ignore_errors=True)
        self.tidy_set_aside()

    def tidy_set_aside(self) -> None:
        """Remove the set-aside folder when no stage's results wait in it."""
        try:
            (self.state_dir / SET_ASIDE_DIRNAME).rmdir()
        except OSError:  # absent, or results of another stage still wait there
            pass

    def results_dir(self, stage: str) -> Path:
        """Where ``stage``'s finished results are: its folder, or, while a run with other
        inputs has set them aside and not yet replaced them (it stopped with an error, or is
        still running), the set-aside folder. The report reads them from here."""
        if self.read_committed_manifest(stage) is None and self.read_set_aside_manifest(stage) is not None:
            return self.set_aside_dir(stage)
        return self.stage_dir(stage)

    @contextlib.contextmanager
    def as_if_put_back(self) -> Iterator[dict[str, dict[str, Any]]]:
        """For `plan`: a dict to fill, stage -> the manifest of kept results the run will put
        back; meanwhile :meth:`read_results_manifest` reads those, so what a later stage
        derives from its upstream results (the report's "made with overrides" input) is
        what it will be once `run` has put them back. Nothing on disk changes."""
        self._put_back = {}
        try:
            yield self._put_back
        finally:
            self._put_back = None

    def read_results_manifest(self, stage: str) -> dict[str, Any] | None:
        """The manifest of ``stage``'s finished results wherever they are (see
        :meth:`results_dir`); None when it has none (``{"corrupt": True}`` when its own
        manifest is damaged and nothing is set aside)."""
        if self._put_back and stage in self._put_back:  # (while planning: what `run` will put back)
            return self._put_back[stage]
        manifest = self.read_manifest(stage)
        if manifest is not None and not manifest.get("corrupt"):
            return manifest
        return self.read_set_aside_manifest(stage) or manifest

    def read_committed_manifest(self, stage: str) -> dict[str, Any] | None:
        """``stage``'s manifest when it has committed results in its folder; None when it
        has no manifest or a damaged one (no commit: set-aside results still stand for it)."""
        manifest = self.read_manifest(stage)
        return None if manifest is None or manifest.get("corrupt") else manifest

    def inside(self, path: Path) -> Path:
        """``path`` resolved, refusing anything outside the project directory."""
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise UserError(f"Refusing to write {resolved}: it is outside the project {self.root}"
                            + (f" ({path} links there). Remove the link (`rm {shell_arg(path)}`, which leaves what "
                               "it points to alone), then run again." if path.is_symlink() else "."))
        return resolved

    # ------------------------------------------------------------------ manifests

    def read_manifest(self, stage: str) -> dict[str, Any] | None:
        """``stage``'s manifest; None when it has none, ``{"corrupt": True}`` when the file
        is no manifest (not JSON, or JSON that is not an object with a fingerprint, or not of
        :func:`manifest_shape_ok`'s shape: a file truncated, overwritten or edited by hand),
        which `plan` shows and `run` recomputes. Within :func:`manifests_read_once` the file
        is parsed once while it stays the same file: the dict is then shared, so callers
        must not change it (copy what they change)."""
        path = self.stage_dir(stage) / MANIFEST
        if not path.is_file():
            return None
        cache = _parsed_manifests.held
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())  # of the file read, even if a `run` replaces it meanwhile
                stamp = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
                cached = cache.get(path) if cache is not None else None
                if cached is not None and cached[0] == stamp:  # the same file as parsed before: its dict
                    return cached[1]
                manifest = json.loads(handle.read().decode("utf-8"))
        except (FileNotFoundError, NotADirectoryError):  # gone since: a running `run` moved the stage's folder
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"corrupt": True}
        if not (isinstance(manifest, dict) and manifest_shape_ok(manifest)):
            return {"corrupt": True}
        if cache is not None:
            cache[path] = (stamp, manifest)
        return manifest

    def write_manifest(
        self, stage: str, manifest: dict[str, Any], artifacts: dict[str, dict[str, Any]] | None = None
    ) -> None:
        """Commit ``stage``: write its manifest with the checksums of its artifacts
        (``artifacts`` when the caller has them already, else every file in its folder)."""
        folder = self.stage_dir(stage)
        manifest = dict(manifest)
        manifest["artifacts"] = artifact_checksums(folder) if artifacts is None else artifacts
        manifest["written_at"] = timestamp()
        atomic_write_json(folder / MANIFEST, manifest)

    def restamp_manifest(self, stage: str, restamped: dict[str, list[int]]) -> None:
        """Record the current stat stamps of ``stage``'s artifacts that were hashed and
        found intact (a copied project, a manifest from before stamps), so the next check
        does not hash them again. The rest of the manifest is unchanged."""
        manifest = self.read_manifest(stage)
        if not restamped or manifest is None or manifest.get("corrupt"):
            return
        artifacts = manifest.get("artifacts", {})  # copied: the manifest read may be shared (manifests_read_once)
        manifest = {**manifest, "artifacts": {rel: {**meta, "stat": restamped[rel]} if rel in restamped else meta
                                              for rel, meta in artifacts.items()}}
        with contextlib.suppress(OSError):  # a read-only project: checked in full next time too
            atomic_write_json(self.stage_dir(stage) / MANIFEST, manifest)

    def restamp_manifest_when_idle(self, stage: str, restamped: dict[str, list[int]]) -> None:
        """:meth:`restamp_manifest` for `plan` and `report`, only while no `run` holds the
        lock (taken without waiting, for the instant of the write): a project copied with
        ``cp -r`` or rsync gets new inodes and change times, and one only looked at (its
        report read on a laptop) had every artifact hashed again by each `plan` and
        `report`. A running `run` may be committing the stage, so then nothing is written;
        a read-only project is left as it is."""
        with (contextlib.suppress(_LockBusy, OSError, LocksUnsupportedError),  # held, read-only, no locks there
              flocked(self.lock_path, fcntl.LOCK_EX, lambda _holder: _LockBusy())):
            self.restamp_manifest(stage, restamped)

    def invalidate(self, stage: str) -> None:
        """Remove a stage's commit point (its artifacts stay for resuming)."""
        with contextlib.suppress(FileNotFoundError):
            (self.stage_dir(stage) / MANIFEST).unlink()

    def reset_stage(self, stage: str) -> None:
        """Delete a stage's artifacts entirely."""
        shutil.rmtree(self.stage_dir(stage), ignore_errors=True)

    # ----------------------------------------------------------------------- lock

    def run_in_progress(self) -> str | None:
        """The PID of a plain `run` holding the lock right now, or None, so `plan` can say its
        statuses are moving. A shared probe, released at once: it never stands in the way of
        shard runs (shared too), and of a starting `run` only for that instant. A run whose
        lock file was deleted is found by its work marker (:meth:`run_holding_deleted_lock`)."""
        path = self.lock_path
        if not path.is_file() or not file_lock_held(path):
            running = self.run_holding_deleted_lock()
            return None if running is None else str(running[0])
        holder = self._lock_holder()
        return (holder.pid if holder is not None else "") or "unknown"

    def umask_hides_from_team(self, checking: bool = False) -> str | None:
        """A warning for a `run` whose umask keeps what it writes from the project folder's
        group, where that folder is group-writable (a project a team shares): under ``umask
        022`` a teammate's `run` stopped afterwards on the stage folders and files it made
        ("Permission denied"; their `plan` and `report`, which write nothing there, still
        work), under ``umask 077`` their `plan` and `report` too, and nothing had said so to
        the user who made them. ``checking``: worded for `doctor`, of this shell's umask, not
        a run's. None where the folder is not the group's to write, or the umask lets the
        group read and write, and where it is a world-writable folder with the sticky bit
        (1777, as /tmp): everyone's to write, each keeping their own files, no team's."""
        parts = self.umask_hidden_parts(checking)
        return None if parts is None else " ".join(parts)

    def umask_hidden_parts(self, checking: bool = False) -> tuple[str, str] | None:
        """:meth:`umask_hides_from_team`'s warning as what is wrong and what to do, apart (as
        `doctor`'s umask check gives them); None where all is well."""
        import stat

        from subsetctl.errors import group_name

        try:
            info = self.root.stat()
        except OSError:
            return None
        file_mode = new_file_mode()  # (read once: /proc/self/status each time)
        if not info.st_mode & 0o020 or (file_mode & 0o060) == 0o060 \
                or (info.st_mode & stat.S_ISVTX and info.st_mode & 0o002):
            return None

        mode = stat.filemode(stat.S_IFREG | file_mode)
        stops = ("a teammate's `run` stops on it afterwards (Permission denied; their `plan` and `report` still work)"
                 if file_mode & 0o040 else
                 "a teammate's `plan`, `report` and `run` stop on it afterwards (Permission denied)")
        shared = f"The project folder {self.root} is shared with its group {group_name(info.st_gid)} (group-writable), "
        chmod = f"`chmod -R g+rwX {shell_arg(self.root)}`"
        if checking:
            what = f"{shared}but the umask here keeps what subsetctl writes from the group (its files would get {mode})"
            return f"{what}: {stops}.", f"Run subsetctl under `umask 002` (and {chmod} once for what earlier runs wrote)."
        return (f"{shared}but this run's umask keeps what it writes from the group (its files get {mode}): {stops}.",
                f"Run subsetctl under `umask 002` (and {chmod} once for what it wrote so far).")

    def running_whose(self) -> str:
        """Where and whose the `run` holding the lock is, as its lock file says: " on HOST"
        for another machine, ", user NAME" for another user (a team sharing the project
        folder: whom to ask, as the PID alone does not say); "" when it is this user's here,
        or the file does not say (:meth:`~subsetctl.file_locks.LockHolder.where_whose`)."""
        holder = self._lock_holder()
        return holder.where_whose if holder is not None else ""

    def run_spec_digest(self) -> str | None:
        """The digest of the resolved spec the `run` holding the lock read as it started, as
        its lock file names it (:meth:`note_run_spec`): `plan` compares the spec with it at
        any moment of that run, between its stages too. None where the file names none (no
        run, one that has not stored its spec yet, or an earlier subsetctl's)."""
        holder = self._lock_holder()
        return holder.spec if holder is not None else None

    def _lock_holder(self) -> LockHolder | None:
        """What the lock file says of its holder (:class:`~subsetctl.file_locks.LockHolder`);
        None when it cannot be read."""
        try:
            return LockHolder.read(self.lock_path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return None

    def read_work_marker(self, stage: str) -> dict[str, Any]:
        """``stage``'s work marker (work.json, written as a stage starts: the inputs
        fingerprint and the PID of the run working on it); empty when missing or unreadable."""
        try:
            marker = json.loads((self.stage_dir(stage) / WORK_MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return marker if isinstance(marker, dict) else {}

    def holds_work(self, stage: str) -> bool:
        """Whether ``stage``'s folder holds anything besides its work marker: what a run that
        stopped partway computed. A run that failed before computing anything (its model
        could not be loaded, the device was missing) leaves the marker alone, which is no
        work to resume or discard."""
        try:
            return any(path.name != WORK_MARKER for path in self.stage_dir(stage).iterdir())
        except OSError:  # no folder (or not one)
            return False

    def stage_in_progress(self, pid: str) -> str | None:
        """The stage the `run` with process id ``pid`` is computing: the one whose work
        marker names that process and that has not committed (no manifest) yet."""
        for marker in sorted(self.state_dir.glob(f"*/{WORK_MARKER}")):
            stage = marker.parent.name
            if str(self.read_work_marker(stage).get("pid")) == pid and not (marker.parent / MANIFEST).exists():
                return stage
        return None

    def refuse_links(self) -> None:
        """UserError when a run could write or delete through a symbolic link: the state
        folder, or anything in it, being one. subsetctl makes no links there; a project
        folder copied from someone else (an archive, a git clone) can hold them, and a
        run's writes (the lock file's PID, a stage's files) and deletions (a stage re-run,
        the cache and spec cleanups) would then reach the files they point to, outside the
        project. The state folder and its cache folder may each be a link (to a bigger
        disk) while no one the project does not trust could have made the link or could write
        the folder it points to (:meth:`_refuse_a_link_others_could_plant`) and that folder
        holds only what subsetctl writes there (or nothing)."""
        from subsetctl.filehash import CACHE_FILE, CACHE_LOCK_FILE, DERIVED_FILE
        from subsetctl.modeling.special_text import COUNTS_CACHE_FILE
        from subsetctl.stages import all_stages

        state = self.state_dir
        linkable = {  # a folder that may be a link -> the names subsetctl writes in it
            state: {stage.name for stage in all_stages()} | {"cache", SPECS_DIRNAME, "lock", SET_ASIDE_DIRNAME,
                                                             PREVIOUS_DIRNAME},
            state / "cache": {*self.CACHE_KINDS, CACHE_FILE[-1], CACHE_LOCK_FILE[-1], DERIVED_FILE[-1],
                              COUNTS_CACHE_FILE[-1], "matplotlib",
                              ".run-started"},
        }
        if state.is_symlink() and state.is_dir():
            self._refuse_a_link_others_could_plant(state)
            self._refuse_a_link_to_other_files(state, linkable[state])
        if (self.root / "plots").is_symlink():  # the report stage refuses it (:meth:`inside`): said before the work
            self.inside(self.root / "plots")
        # walked by path strings, a Path made only for a link: making one per entry was most of the
        # time at 10,000 sources (60,000 entries, every `run` and `plan`)
        linkable_at = {str(path): path for path in linkable}
        pending = [str(state)] if state.is_dir() else []
        while pending:
            try:
                entries = list(os.scandir(pending.pop()))
            except OSError:  # unreadable: the run's own writes there say so
                continue
            for entry in entries:
                if entry.is_symlink() and (link := linkable_at.get(entry.path)) is not None and entry.is_dir():
                    self._refuse_a_link_others_could_plant(link)
                    self._refuse_a_link_to_other_files(link, linkable[link])
                elif entry.is_symlink():
                    raise UserError(
                        f"Refusing to run: {entry.path} is a symbolic link (to {os.readlink(entry.path)}). subsetctl "
                        f"makes no links in {state}, and a run writing or deleting there would reach the file it "
                        "points to, outside the project (a project folder copied from someone else can hold one). "
                        f"Remove the link (`rm {shell_arg(entry.path)}`, which leaves what it points to alone), then "
                        "run again.")
                if entry.is_dir():  # (a link only where it was taken above)
                    pending.append(entry.path)

    def _refuse_a_link_others_could_plant(self, link: Path) -> None:
        """UserError when the state (or cache) folder ``link`` is a link someone the project
        does not trust could have made or could write through: the link another user's, or
        the folder it points to another user's or writable by its group, unless the project
        folder is a team's (group-writable, not by everyone) and that folder is the team
        group's; a folder everyone may write, never. On a shared machine such a user could
        otherwise point the run at a folder of theirs (empty, so taken) and, after the check,
        put links in it that the run writes and deletes through, reaching the user's files.
        (A teammate who may write the project folder may write its state folder anyway.) A
        folder writable by the user's own private group (:func:`_own_private_group`: Ubuntu's
        and Fedora's default, where umask 002 makes every new folder group-writable) is the
        user's alone."""
        if not hasattr(os, "getuid"):  # (no owners to compare on Windows)
            return
        me, made_by, target, project = os.getuid(), os.lstat(link).st_uid, os.stat(link), self.root.stat()
        team = bool(project.st_mode & S_IWGRP) and not project.st_mode & S_IWOTH
        teams = team and target.st_gid == project.st_gid  # the folder linked to is the team group's
        real = os.path.realpath(link)
        why = (f"{real} is writable by everyone" if target.st_mode & S_IWOTH else
               f"the link is another user's (uid {made_by})" if made_by != me and not team else
               f"{real} is another user's (uid {target.st_uid})" if target.st_uid != me and not teams else
               f"{real} is writable by its group" if target.st_mode & S_IWGRP and not teams
               and not _own_private_group(target.st_gid) else None)
        if why is not None:
            raise UserError(
                f"Refusing to run: {link} is a link to {real}, and {why}; a run writes into that folder and deletes "
                "there, and on a shared machine whoever else may write the link or the folder could send those "
                f"writes elsewhere. Remove the link (`rm {shell_arg(link)}`, which leaves the folder it points to "
                "alone) and let the run make the folder, or link it to a folder of your own that only you can write "
                f"(`chmod go-w {shell_arg(real)}`; a team's project, group-writable, may link to a folder of the "
                "team's group), then run again.")

    @staticmethod
    def _refuse_a_link_to_other_files(link: Path, own: set[str]) -> None:
        """UserError when the folder ``link`` points to holds files other than ``own`` (the
        names subsetctl writes there) and its half-written or replaced leftovers."""
        foreign = sorted(e.name for e in os.scandir(link)
                         if e.name not in own and not LEFTOVER.match(e.name) and not REPLACED.match(e.name))
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise UserError(
                f"Refusing to run: {link} is a link to {os.path.realpath(link)}, which holds files subsetctl did not "
                f"write ({shown}); a run writes into that folder and deletes there. Point the link at an empty "
                f"folder (or remove it, `rm {shell_arg(link)}`, which leaves the folder it points to alone), then "
                "run again.")

    @contextlib.contextmanager
    def lock(self, notice: Any = None, shared: bool = False, shard: bool = False,
             waiting: Any = None) -> Iterator[None]:
        """Hold the project's run lock; a conflicting holder gets a LockedError naming it.

        A plain `run` holds it exclusively (and writes its PID into the lock file); the
        shard runs of the gradients stage (`run --shard i/N`) hold it shared, so shards
        started on several GPUs or machines that share the project directory run at the
        same time while no plain `run` can. A lock left by a dead process is taken over
        (the kernel drops flock locks when a process dies; the PID file tells us whose it was).
        A state folder holding a symbolic link is refused first (:meth:`refuse_links`), before
        the lock file is opened for writing.

        ``shard``: taken by a shard run. Its exclusive hold (the stages before gradients,
        putting back kept results) is marked ``PID shard HOST USER`` in the lock file, and a shard
        run waits for another shard run's exclusive hold instead of failing: shards
        started at the same moment run those stages once, then side by side. ``waiting``
        is told when it waits (``notice`` when it takes over a stale lock)."""
        def computing(pid: str) -> str:  # the stage the holder computes, as `plan` says it: what is waited for
            stage = self.stage_in_progress(pid) if pid.isdigit() else None
            return f", computing {stage}" if stage else ""

        def busy(text: str) -> LockedError:
            holder = LockHolder.read(text)
            who = ("running `subsetctl run --shard` processes. Wait for them to finish or stop them" if not holder.pid
                   else f"a `subsetctl run --shard` (PID {holder.pid}{holder.where_whose}) running the stages before "
                   f"gradients. Wait for it to finish or {holder.stop_it}" if holder.shard else
                   f"a running `subsetctl run` (PID {holder.pid}{holder.where_whose}{computing(holder.pid)}). Wait "
                   f"for it to finish or {holder.stop_it}")
            return LockedError(f"Project {self.root} is locked by {who}; `plan` and `report` work meanwhile.",
                               holder="run" if holder.pid else "shards")

        def shard_preparing(text: str) -> bool:
            # a holder that died released its lock (the kernel, or the file server, drops it), so
            # waiting on the lock itself never waits for the dead; no PID check (another machine's)
            holder = LockHolder.read(text)
            waits = shard and holder.shard
            if waits and waiting is not None:
                waiting(f"Waiting for the shard run PID {holder.pid}{holder.where_whose}, which runs the stages before "
                        "gradients (or puts kept results back) for every shard.")
            return waits

        self.refuse_links()  # before the lock file is opened for writing
        if (self.lock_path.is_file() and not os.access(self.lock_path, os.W_OK)
                and file_lock_held(self.lock_path)):  # a teammate's run, in a project this user may not write:
            # that it runs is said first (a script retries on project_locked), then, once it ends, the permissions
            raise busy(self.lock_path.read_text(encoding="utf-8", errors="replace").strip())
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        with flocked(self.lock_path, mode, busy, attempts=5, wait_for=shard_preparing) as handle:
            if shared:
                handle.truncate(0)  # any PID there is a dead exclusive holder's: none can be alive now
                handle.flush()
                yield
                return
            handle.seek(0)
            previous_holder = LockHolder.read(handle.read())
            previous = previous_holder.pid
            stale = previous.isascii() and previous.isdigit() and int(previous) != os.getpid() and (
                bool(previous_holder.on_host) or not pid_alive(int(previous)))  # the lock was free: it died there
            running = None if shard else self.run_holding_deleted_lock()  # shard runs' markers are their own
            if running is not None:
                raise LockedError(
                    f"Project {self.root} is locked by a running `subsetctl run` (PID {running[0]}, computing "
                    f"{running[1]}), whose lock file {self.lock_path} was deleted. Wait for it to finish or "
                    "stop that process; `plan` and `report` work meanwhile.", holder="run")
            if stale and notice is not None and previous_holder.on_host:  # no PID to look up there: the lock alone
                notice(f"Took over the lock left by PID {previous}{previous_holder.where_whose}: no process holds its "
                       "file lock, so that run has ended; were it still running there, this file system would not "
                       "share file locks between machines (an NFS mount with `nolock` or `local_lock`): then stop "
                       "this run at once, as two runs of one project overwrite each other's work, and run the "
                       "project from one machine at a time.")
            elif stale and notice is not None:
                left = self.stage_left_by(int(previous), previous_holder.host)
                notice(f"Took over a stale lock left by PID {previous}{previous_holder.where_whose}, which is no longer "
                       "running." + (f" It ended while computing {left} without letting the lock go: killed outright "
                                    "(SIGKILL, the out-of-memory killer, a scheduler's hard limit), ended by a library "
                                    "(OpenBLAS giving up on memory under a `ulimit -v`) or too short of memory to "
                                    f"clean up. Finished stages are kept, and {left} resumes from what it had saved."
                                    if left else ""))
            self._held_lock_text = LockHolder.text(shard)
            write_holder(handle, self._held_lock_text)
            self._held_locks = [handle]
            try:
                yield
            finally:
                if not shard:  # a shard run goes on computing its rows under the shared lock
                    self._drop_pid_from_work_markers()
                held, self._held_locks = self._held_locks or [handle], None
                with contextlib.ExitStack() as closing:
                    for taken_again in held[1:]:
                        closing.callback(taken_again.close)
                    for each in held:
                        each.seek(0)
                        each.truncate()
                        each.flush()

    def keep_lock_in_place(self) -> None:
        """Before a stage starts: make sure the run lock this process holds is still the
        file at ``.subsetctl/lock``. A user who deleted that file (taking it for a stale
        lock, as with git's index.lock) let a second `run` lock a new one beside this run;
        this run then takes the new file itself, or, when another run holds it already,
        stops between stages (nothing computed is lost) rather than write stages beside it."""
        if not self._held_locks:
            return
        path = self.lock_path
        try:
            if os.path.samestat(os.fstat(self._held_locks[-1].fileno()), os.stat(path)):
                return
        except FileNotFoundError:
            pass
        handle = open(path, "a+", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed when the lock ends
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            other = LockHolder.read(handle.read())
            holder = f"{other.pid}{other.where_whose}" if other.pid else "unknown"
            handle.close()
            raise LockedError(
                f"The lock file {path} of project {self.root} was deleted while this run held it, and another "
                f"`subsetctl run` (PID {holder}) has locked the project since. This run stops here so that the two do "
                "not write the same stages; the stages it finished are kept. Let the other run finish, then run "
                "again if anything is left to do (`subsetctl plan` says).", holder="run") from None
        write_holder(handle, self._held_lock_text)
        self._held_locks.append(handle)

    def note_run_spec(self, digest: str) -> None:
        """Add ``digest`` (the resolved spec this `run` read, stored as ``specs/<digest>.json``)
        to the lock file this process holds exclusively, once (:meth:`run_spec_digest`): `plan`
        named the spec keys edited since a run started only while a stage's work marker named
        its spec, and said nothing between two stages or during the report step. Appended, not
        written over: a `plan` reading the file meanwhile finds the holder's words whole (a
        digest cut short is not taken). A lock file taken again after a deletion
        (:meth:`keep_lock_in_place`) gets it too. Nothing is written where this process holds
        no lock, or holds it shared (shard runs)."""
        if not self._held_locks or LockHolder.read(self._held_lock_text).spec is not None:
            return
        self._held_lock_text += f" {digest}"
        for handle in self._held_locks:
            handle.seek(0, os.SEEK_END)
            handle.write(f" {digest}")
            handle.flush()

    def _drop_pid_from_work_markers(self) -> None:
        """As this process lets the lock go: take its PID out of the stages' work markers, so
        that neither `plan` nor a later `run` (:meth:`run_holding_deleted_lock`) takes the
        process, still alive in a notebook, for a run computing a stage it left unfinished
        (stopped by an error or Ctrl-C) or whose manifest was deleted since. The markers'
        inputs stay: the next run resumes the work."""
        for marker_path in self.state_dir.glob(f"*/{WORK_MARKER}"):
            marker = self.read_work_marker(marker_path.parent.name)
            if marker.get("pid") == os.getpid():
                with contextlib.suppress(OSError):  # a full disk or a read-only folder: the marker stays
                    atomic_write_json(marker_path, {k: v for k, v in marker.items() if k not in ("pid", "host")})

    def stage_left_by(self, pid: int, host: str | None) -> str | None:
        """The stage a dead `run` (``pid`` on ``host``; None: an earlier subsetctl's lock, which named
        no host: this one) was computing when it ended without letting the lock go, by its work
        marker (work.json of an unfinished stage, which keeps the PID only while that run computes
        it: :meth:`_drop_pid_from_work_markers`); None when it was computing none. A run killed
        outright, or ended by a library (OpenBLAS's "Memory allocation still failed ... giving up"
        under a `ulimit -v`), says nothing of its own (or too little memory was left to clean up), and the next run's notice names the stage."""
        for marker_path in sorted(self.state_dir.glob(f"*/{WORK_MARKER}")):
            marker = self.read_work_marker(marker_path.parent.name)
            if (marker.get("pid") == pid and marker.get("host") in (host or socket.gethostname(), None)
                    and not (marker_path.parent / MANIFEST).exists()):
                return marker_path.parent.name
        return None

    def run_holding_deleted_lock(self) -> tuple[int, str] | None:
        """A live `run` of this project on this machine that a lock check could not see, as
        (PID, stage): its lock file was deleted, and the new file at the path is unlocked. Found
        by its work marker (work.json of a stage it has not finished, naming its PID and host)
        when that process is alive and started before the marker was written (a PID the
        system has since given to another process does not count). None when there is none."""
        host = socket.gethostname()
        for marker_path in sorted(self.state_dir.glob(f"*/{WORK_MARKER}")):
            stage = marker_path.parent.name
            marker = self.read_work_marker(stage)
            pid = marker.get("pid")
            if (not isinstance(pid, int) or isinstance(pid, bool) or pid == os.getpid() or marker.get("host") != host
                    or (marker_path.parent / MANIFEST).exists() or not pid_alive(pid)):
                continue
            if process_started_after(pid, marker_path):
                continue
            return pid, stage
        return None
