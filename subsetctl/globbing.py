"""File globs as ``glob.glob(pattern, recursive=True)`` reads them, without its loops.

``**`` in :mod:`glob` follows every symbolic link to a folder, so a link back into a
folder it is inside (``data/sub/up -> ..``) is entered again and again until the paths
grow too long: the same files match once per turn, and a few such links in one folder
double the paths at each turn (a hang). Used for a spec's ``source_files`` and a
``huggingface`` loader's local ``data_files``.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path

from subsetctl.errors import UserError, as_typed, shown_path
from subsetctl.user_paths import expand_home

# Folders one pattern may enter before the walk stops. A count, not a time: the same spec gets the
# same answer on a fast disk and a slow network one, and a test can pin it. 100,000 folders is 50
# times a big data set kept as files (20,000 files in 2,000 folders); walking them took 15 s on 2
# busy cores (plain folders; 73 to 180 s for the first 100,000 below `/`, whose /sys links are slow),
# and `files: /**/*.jsonl` had walked the whole disk, validate killed after 60 s still walking (a `**` from `/`
# or in /proc, /sys or /dev is now refused before any walk: :class:`WalkFromTheTop`).
# SUBSETCTL_GLOB_FOLDER_LIMIT raises (or lowers) it for a data tree that really holds more folders.
FOLDER_LIMIT = 100_000
FOLDER_LIMIT_ENV = "SUBSETCTL_GLOB_FOLDER_LIMIT"


def allowed_folders() -> int:
    """The folders one pattern may enter: ``$SUBSETCTL_GLOB_FOLDER_LIMIT`` where set (a
    legitimate data tree may hold more than :data:`FOLDER_LIMIT`, and was refused with advice
    to start the pattern lower that did not apply), else :data:`FOLDER_LIMIT`. A value that is
    not a whole number above 0 is a UserError naming the variable."""
    raw = os.environ.get(FOLDER_LIMIT_ENV, "").strip()
    if not raw:
        return FOLDER_LIMIT
    try:
        value = int(raw.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{FOLDER_LIMIT_ENV}={raw!r} is not a whole number above 0: set it to the number of folders "
                        f"a '**' pattern may walk (the default is {FOLDER_LIMIT:,}), or unset it.")
    return value


#: folders a ``**`` is refused in: the kernel's and devices' (Linux's /proc and /sys, /dev), which hold no data
#: and were most of the time `/**` took before :data:`FOLDER_LIMIT` stopped it (/sys's links are slow to list)
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")

#: the folders inside :data:`SYSTEM_FOLDERS` that do hold data, where a ``**`` walks as anywhere else:
#: /dev/shm, the shared-memory file system (in RAM) a data set is copied to for fast reading
DATA_IN_SYSTEM_FOLDERS = ("/dev/shm",)


def _in_folder(path: str, folder: str) -> bool:
    """Whether the real path ``path`` is ``folder`` or inside it."""
    return path == folder or path.startswith(folder + os.sep)


def _walk_refused(real: str) -> bool:
    """Whether a ``**`` may not start at the real folder ``real``: the top of the disk (``/``, a
    drive), or a :data:`SYSTEM_FOLDERS` one other than :data:`DATA_IN_SYSTEM_FOLDERS`."""
    return os.path.dirname(real) == real or (any(_in_folder(real, top) for top in SYSTEM_FOLDERS) and
                                             not any(_in_folder(real, kept) for kept in DATA_IN_SYSTEM_FOLDERS))


class UnwalkablePattern(UserError):
    """A pattern whose ``**`` the walk refuses (:class:`TooManyFolders`, :class:`WalkFromTheTop`)."""


class WalkFromTheTop(UnwalkablePattern):
    """A pattern's ``**`` reached at the top of the disk (``/``, a drive) or in a :data:`SYSTEM_FOLDERS`
    one: refused at once, not after the tens of seconds to minutes :data:`FOLDER_LIMIT`'s walk took there."""

    def __init__(self, pattern: str, folder: str) -> None:
        self.pattern = pattern
        where = ("the top of the disk, every folder on it" if os.path.dirname(folder) == folder else
                 "a system folder of the kernel's or the devices', which holds no data")
        super().__init__(
            f"pattern {as_typed(pattern)} has '**' read every folder below {shown_path(Path(folder))} ({where}): "
            "subsetctl refuses that rather than walk for minutes. Start the pattern at the folder that holds the "
            "files (data/sources/**/*.jsonl, /home/me/pool/**/*.jsonl).")


class TooManyFolders(UnwalkablePattern):
    """A pattern's ``**`` entered more than :func:`allowed_folders` folders (``/home/**/*.jsonl``)."""

    def __init__(self, pattern: str, start: Path, stopped_in: Path, limit: int) -> None:
        self.pattern = pattern
        super().__init__(
            f"pattern {as_typed(pattern)} walked {limit:,} folders below {shown_path(start)} and stopped before "
            f"the end (it was in {shown_path(stopped_in)}): a '**' reads every folder below the folder it starts "
            "from, and one so near the top of the disk takes minutes. Start the pattern at the folder that holds "
            "the files (data/sources/**/*.jsonl, /home/me/pool/**/*.jsonl) rather than / or your home folder; "
            f"if that folder really holds more than {limit:,} folders, set {FOLDER_LIMIT_ENV} to a larger number "
            f"({FOLDER_LIMIT_ENV}={limit * 10}).")


def glob_without_loops(pattern: str, root_dir: Path, folder_limit: int | None = None) -> set[str]:
    """What ``glob.glob(pattern, root_dir=root_dir, recursive=True)`` matches (hidden names
    skipped unless the pattern's part starts with a dot), except that ``**`` does not enter a
    symbolic link to a folder it is already inside: glob follows ``data/sub/up -> ..`` until
    the paths are too long, matching the same files once per turn, and two such links in
    one folder double the paths at each turn (a hang). Raises :class:`TooManyFolders` past
    ``folder_limit`` folders listed (:func:`allowed_folders`), and :class:`WalkFromTheTop` for a
    ``**`` that starts at ``/`` or in /proc, /sys or /dev (but /dev/shm): ``/**/*.jsonl`` walked the whole disk."""
    parts = Path(pattern).parts
    found: set[str] = set()
    limit = allowed_folders() if folder_limit is None else folder_limit
    listed = 0

    def entries(folder: Path) -> list[os.DirEntry[str]]:
        nonlocal listed
        listed += 1
        if listed > limit:
            fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
            raise TooManyFolders(pattern, Path(root_dir, *parts[:fixed]), folder, limit)
        try:
            with os.scandir(folder) as listing:
                return list(listing)
        except OSError:  # not a folder, or unreadable: as glob, no match
            return []

    def is_dir(entry: os.DirEntry[str]) -> bool:
        try:
            return entry.is_dir()  # a link to a folder too
        except OSError:
            return False

    def is_link(entry: os.DirEntry[str]) -> bool:
        """A symbolic link, or a Windows junction (realpath resolves it too; Python 3.12+ tells it)."""
        try:
            return entry.is_symlink() or bool(getattr(entry, "is_junction", lambda: False)())
        except OSError:
            return True  # unknown: resolved, as every folder was

    def walk(rel: str, inside: frozenset[str], i: int, real: str | None = None) -> None:
        """``real``: ``here`` with its links resolved, where the caller knows it (None: resolved here)."""
        here = root_dir / rel
        if i == len(parts):
            if rel:
                found.add(rel)
        elif i == 0 and Path(parts[0]).is_absolute():  # "/" (or a drive): the walk starts there
            walk(parts[0], inside, 1)
        elif parts[i] == "**":  # here and every folder below, each real folder once per path
            real = os.path.realpath(here) if real is None else real
            if not inside and _walk_refused(real):
                raise WalkFromTheTop(pattern, real)
            inside = inside | {real}
            walk(rel, inside, i + 1, real)
            for entry in entries(here):
                if entry.name.startswith("."):
                    continue
                if i == len(parts) - 1:  # a last "**" matches files too
                    found.add(os.path.join(rel, entry.name))
                if not is_dir(entry):
                    continue
                # Only a link can lead back into a folder the path is inside: a plain folder's real
                # path is its name below ours (os.path.realpath on each folder was ~45% of the walk).
                child = os.path.realpath(entry.path) if is_link(entry) else os.path.join(real, entry.name)
                if child not in inside:
                    walk(os.path.join(rel, entry.name), inside, i, child)
        elif glob.has_magic(parts[i]):
            for name in fnmatch.filter([entry.name for entry in entries(here)], parts[i]):
                if parts[i].startswith(".") or not name.startswith("."):
                    walk(os.path.join(rel, name), inside, i + 1)
        elif os.path.lexists(here / parts[i]):
            walk(os.path.join(rel, parts[i]), inside, i + 1)

    walk("", frozenset(), 0)
    return found


def literal_folder_note(pattern: str, root_dir: Path) -> str:
    """For a pattern that matched no file: a folder on its way that exists as written but
    whose name holds a character a pattern reads otherwise (``[``, ``*``, ``?``: a project in
    ``runs [v2]/``, a folder a download or a sync tool named ``data [1]``), so that
    ``/data/runs [v2]/*.jsonl`` looked in ``runs v/`` or ``runs 2/``: the pattern with those
    characters escaped (``[[]``, as :func:`glob.escape` writes them); "" otherwise."""
    parts = expand_home(pattern).parts
    for i in range(len(parts) - 1, 0, -1):  # the longest folder part that is there as written
        folder = Path(*parts[:i])
        if any(glob.has_magic(part) for part in parts[:i]) and (Path(root_dir) / folder).is_dir():
            escaped = os.path.join(glob.escape(str(folder)), *parts[i:])
            return (f". The folder {folder} exists, but a pattern reads '[', '*' and '?' in its path as "
                    f"wildcards, not as those characters: write {as_typed(escaped)}")
    return ""


def folder_as_pattern_note(pattern: str, root_dir: Path, suffix: str) -> str:
    """For a ``source_files`` pattern that matched no file: where it names a folder itself
    (``files: data/shards``), what to write instead, as a pattern of the folder's files
    (``suffix``: the group's loader's, ``.jsonl``) or a source reading the folder whole; a
    folder matches no file, and "Check the pattern" left the reader to guess why. "" otherwise."""
    folder = expand_home(pattern)
    if glob.has_magic(pattern) or not (Path(root_dir) / folder).is_dir():
        return ""
    files = str(folder).rstrip("/") + f"/*{suffix}"
    return (f". It is a folder, and a pattern matches files: write files: {files} for one source a file "
            f"({str(folder).rstrip('/')}/**/*{suffix} with its subfolders' files), or read the folder's files as one "
            f"source, listed under sources: with loader: {{type: huggingface, path: {pattern}}}")


def missing_folder_note(pattern: str, root_dir: Path) -> str:
    """For a pattern that matched no file: the folders it names before its first wildcard
    (``Pool`` in ``Pool/*.jsonl``) when they are not there as written, with why (a folder
    ``pool`` in other letter case, as macOS and Windows read names; another Unicode form):
    :func:`~subsetctl.errors.missing_path_note` of that folder; "" otherwise."""
    from subsetctl.errors import missing_path_note

    parts = expand_home(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts) - 1)
    if fixed == 0:
        return ""
    folder = Path(root_dir) / Path(*parts[:fixed])
    return "" if folder.is_dir() else missing_path_note(folder)


def resolved_by_folder(path: Path, folders: dict[Path, Path]) -> Path:
    """``path.resolve()``, its folder resolved once per folder (``folders``: each folder
    met -> itself resolved, kept by the caller): resolving each of 10,000 files of one
    folder walked the same folders 10,000 times. A file that is itself a link is resolved
    in full (as is a path ending in ``..``)."""
    if path.name in ("", "..") or os.path.islink(path):
        return path.resolve()
    folder = folders.get(path.parent)
    if folder is None:
        folder = folders[path.parent] = path.parent.resolve()
    return folder / path.name
