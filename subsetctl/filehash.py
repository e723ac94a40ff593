"""Content fingerprints of the local files a project reads (data files, model folders),
with a cache so that a multi-GB model folder is hashed once, not on every `plan`.

A stage is stale when a file it reads changes, so its fingerprint must follow the file's
content (size and sha256), not its path or modification time: a copied project or a
touched file stays up to date. Hashing is the cost: a 7B model's weights take tens of
seconds, and fingerprints are computed by every `plan` and several times per `run`.
:class:`HashCache` therefore remembers each file's sha256 under its (path, size,
modification and change times, inode) and hashes again only when one of those changes. The cache
lives in the project's state folder (``.subsetctl/cache/file_hashes.json``, safe to
delete), written once when the command exits, merged under a short lock with what other
processes wrote meanwhile (projects whose ``cache/`` links to one folder share it); an entry
not looked up for :data:`UNUSED_DAYS` days is dropped, as are the oldest-used beyond
:data:`MAX_ENTRIES`; a project that has never run gets an
in-memory cache only, so `plan` and `validate` leave a fresh folder untouched. What is
derived from a file's content (the digest of each task's rows of a Parquet file its
sources read with ``where``) is kept beside it, under the file's sha256
(``.subsetctl/cache/derived.json``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from stat import S_ISREG
from typing import Any

from subsetctl.file_locks import brief_file_lock
from subsetctl.project import STATE_DIRNAME, atomic_write_json, sha256_file

CACHE_FILE = ("cache", "file_hashes.json")
#: held while the cache is merged with what is on disk and written back (:meth:`HashCache.flush`)
CACHE_LOCK_FILE = ("cache", "file_hashes.json.lock")
#: what :meth:`HashCache.derived` keeps, by file content
DERIVED_FILE = ("cache", "derived.json")

#: an entry of the hash cache not looked up for this many days is dropped when the cache is written:
#: copies of a project (``cp -a``) whose files still exist left theirs for good (30,018 entries, 7.2 MB
#: read by every command, after two copies)
UNUSED_DAYS = 30
#: the most entries the hash cache keeps (those looked up longest ago go first)
MAX_ENTRIES = 100_000

#: each project's cache, by its root resolved, and by an absolute root as given (resolving it again for
#: each file fingerprinted took a stat per folder of its path)
_CACHES: dict[Path, HashCache] = {}


class HashCache:
    """sha256 of files keyed by their stat; persisted under ``root`` when it has a state folder."""

    def __init__(self, root: Path | None) -> None:
        self.path = root / STATE_DIRNAME / Path(*CACHE_FILE) if root is not None else None
        self.entries: dict[str, dict[str, Any]] = _read_json_dict(self.path)
        self.dirty = False
        self._touched: set[str] = set()  # keys this process hashed or looked up (its own, at a merge)
        self._derived: dict[str, Any] | None = None  # read when first asked (few projects have any)
        self.derived_dirty = False
        self._folders: dict[Path, Path] = {}  # a folder -> itself resolved (:meth:`_resolved`)

    @staticmethod
    def _stamp(stat: os.stat_result) -> list[int]:
        # ctime too: unlike mtime it cannot be set back (`cp -p`, `touch -r` over a file)
        return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]

    def sha256(self, path: Path, stat: os.stat_result | None = None) -> str:
        """The file's sha256, from the cache while its size, mtime and inode are unchanged;
        ``stat``: the file's, when the caller has just taken it."""
        key = self._resolved(path)
        stamp = self._stamp(stat if stat is not None else path.stat())
        entry = self.entries.get(key)
        today = _today()
        if isinstance(entry, dict) and entry.get("stat") == stamp and isinstance(entry.get("sha256"), str):
            if entry.get("used") != today:  # (written once a day at most, not by every command)
                entry["used"] = today
                self._touched.add(key)
                self.dirty = True
            return entry["sha256"]
        digest = sha256_file(path)
        self.entries[key] = {"stat": stamp, "sha256": digest, "used": today}
        self._touched.add(key)
        self.dirty = True
        return digest

    def _resolved(self, path: Path) -> str:
        """``path.resolve()`` as text (the cache's key), each folder resolved once
        (:func:`~subsetctl.globbing.resolved_by_folder`): resolving each file's path again
        took most of `plan`'s fingerprinting of 10,000 source files of one folder."""
        from subsetctl.globbing import resolved_by_folder

        return str(resolved_by_folder(path, self._folders))

    def derived(self, path: Path, what: str, compute: Callable[[Path], dict[str, Any]],
                holds: Iterable[str] = ()) -> dict[str, Any]:
        """``compute(path)``, kept under the file's sha256 and ``what`` (say, the column it
        is by): computed again only when the file's content changes, so that `plan` and
        `validate` need not read a large file each time. Not kept when the file changed
        while it was computed (it may be of either version). ``holds``: the keys a kept value
        must have, else it is computed again (one an earlier subsetctl kept, before it
        computed them, is replaced)."""
        digest = self.sha256(path)
        key = f"{digest}:{what}"
        derived = self._derived_entries()
        found = derived.get(key)
        if isinstance(found, dict) and all(part in found for part in holds):
            return found
        value = compute(path)
        if self.sha256(path) == digest:
            derived[key] = value
            self.derived_dirty = True
        return value

    def _derived_entries(self) -> dict[str, Any]:
        if self._derived is None:
            self._derived = _read_json_dict(self.path.with_name(DERIVED_FILE[-1]) if self.path else None)
        return self._derived

    def flush(self) -> None:
        """Write the cache if it changed: once per command (at exit), not once per file,
        which with thousands of files rewrote the whole cache thousands of times."""
        if (not self.dirty and not self.derived_dirty) or self.path is None \
                or not self.path.parent.parent.is_dir():  # no state folder
            return
        try:
            self.path.parent.mkdir(exist_ok=True)
            with brief_file_lock(self.path.with_name(CACHE_LOCK_FILE[-1])):
                if self.dirty:
                    atomic_write_json(self.path, self._merged_entries())
                    self._touched.clear()
                    self.dirty = False
                if self.derived_dirty:
                    held = {entry.get("sha256") for entry in self.entries.values() if isinstance(entry, dict)}
                    derived_path = self.path.with_name(DERIVED_FILE[-1])
                    derived = {**_read_json_dict(derived_path), **self._derived_entries()}  # (others' too)
                    kept = {key: value for key, value in derived.items() if key.partition(":")[0] in held}
                    atomic_write_json(derived_path, kept)
                    self.derived_dirty = False
        except OSError:  # read-only project: hashing still works, only slower next time
            pass

    def _merged_entries(self) -> dict[str, dict[str, Any]]:
        """What to write: the entries on disk now (another project sharing this cache, or a
        `plan` beside a `run`, may have written since this process read it; writing this
        process's alone lost theirs) with those this process hashed or looked up over them;
        less files since deleted or renamed (an old data file, a replaced model folder), and
        entries not looked up for :data:`UNUSED_DAYS` days (copies of a project whose files
        still exist), and beyond :data:`MAX_ENTRIES` those looked up longest ago."""
        merged = _read_json_dict(self.path)
        merged.update({key: self.entries[key] for key in self._touched if key in self.entries})
        today = _today()
        for entry in merged.values():
            if isinstance(entry, dict) and not isinstance(entry.get("used"), int):  # (by an earlier subsetctl)
                entry["used"] = today
        merged = {key: entry for key, entry in merged.items() if isinstance(entry, dict)
                  and today - entry["used"] <= UNUSED_DAYS and os.path.isfile(key)}
        if len(merged) > MAX_ENTRIES:
            kept = sorted(merged, key=lambda key: merged[key]["used"], reverse=True)[:MAX_ENTRIES]
            merged = {key: merged[key] for key in kept}
        self.entries = merged
        return merged


def _today() -> int:
    """Days since 1970 (an entry's ``used``: a day is fine enough, and keeps the file small)."""
    return int(time.time() // 86400)


def _read_json_dict(path: Path | None) -> dict[str, Any]:
    """The JSON object in ``path``; empty when there is none, or it is unreadable or no object."""
    if path is None:
        return {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def hash_cache(root: Path | None) -> HashCache:
    """The process-wide cache of ``root``'s project (one instance per project root),
    written back when the process exits (see :func:`flush_hash_caches`)."""
    if not _CACHES:
        atexit.register(flush_hash_caches)
    if root is not None and (known := _CACHES.get(Path(root))) is not None:
        return known
    key = Path(root).resolve() if root is not None else Path("/")
    if key not in _CACHES:
        _CACHES[key] = HashCache(Path(root) if root is not None else None)
    if root is not None and Path(root).is_absolute():  # (a relative one resolves by the working folder)
        _CACHES[Path(root)] = _CACHES[key]
    return _CACHES[key]


def flush_hash_caches() -> None:
    """Write every changed cache (at exit; a killed process only loses time next run)."""
    for cache in {id(cache): cache for cache in _CACHES.values()}.values():  # (once each: a cache is under two keys)
        cache.flush()


def folder_stamps(folder: Path) -> tuple[str, tuple[tuple[str, int, int], ...]]:
    """``folder`` (resolved) and the name, size and modification time of each file in it:
    the key of what is read from a model folder's files and kept for the process (its
    tokenizer, its shape), which a file replaced or edited there changes."""
    files: list[tuple[str, int, int]] = []
    try:
        for entry in os.scandir(folder):
            if entry.is_file():
                stat = entry.stat()
                files.append((entry.name, stat.st_size, stat.st_mtime_ns))
    except OSError:
        pass
    return str(folder.resolve()), tuple(sorted(files))


def file_fingerprint(path: Path, root: Path | None = None) -> dict[str, Any]:
    """Size and sha256 of a local file, or that it is missing. The path itself is left
    out (the spec holds it, relative to the spec), so a moved project stays valid."""
    try:
        stat = path.stat()  # taken once (three stats of each of 10,000 source files took a second)
    except (OSError, ValueError):
        return {"missing": True}
    if not S_ISREG(stat.st_mode):
        return {"missing": True}
    return {"size": stat.st_size, "sha256": hash_cache(root).sha256(path, stat)}


def tree_fingerprint(path: Path, root: Path | None = None) -> dict[str, Any]:
    """A file's fingerprint, or the fingerprints of every file under a folder (a
    ``.cache`` folder inside it, where tools keep their own state, is left out)."""
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and ".cache" not in p.relative_to(path).parts
        )
        return {"files": {p.relative_to(path).as_posix(): file_fingerprint(p, root) for p in files}}
    return file_fingerprint(path, root)


#: (source file, fingerprint) of each plugin function or class when this process first
#: fingerprinted it: the code it runs, since Python does not import an edited module
#: again. A module reloaded (``importlib.reload``) makes new objects, fingerprinted anew.
_CODE_AS_LOADED: weakref.WeakKeyDictionary[Any, tuple[Path, dict[str, Any]]] = weakref.WeakKeyDictionary()


def code_fingerprint(obj: Any, root: Path | None = None) -> dict[str, Any] | None:
    """The content fingerprint of the source file defining ``obj`` (a function, class or
    callable object) as this process loaded it; where there is no such file to read (a
    notebook cell's code), the digest of its compiled code (:func:`_compiled_code_fingerprint`);
    None when it has no Python code (a builtin, a C extension). Other modules that file
    imports are not followed.

    A file edited after its code was loaded keeps the fingerprint it had: the results are
    made by the loaded code, and a notebook that ran a project, edited a plugin and ran
    again recorded the new file's fingerprint for results of the old code, which a later
    `run` then took as up to date. :func:`code_edited_since_loaded` names such files."""
    import inspect

    target = _code_target(obj)
    try:
        name = inspect.getsourcefile(target)
    except (TypeError, ValueError, OSError):  # a builtin, or a class of a module without a file (a notebook's cell)
        name = None
    if not name or name.startswith("<"):  # no file to read ("<stdin>", "<string>"): the code itself
        return _compiled_code_fingerprint(target)
    try:
        return _CODE_AS_LOADED[target][1]
    except (KeyError, TypeError):  # not seen yet (TypeError: an object weakref cannot follow)
        pass
    if not os.path.isfile(name):  # a Jupyter cell's function names a file its kernel never writes
        return _compiled_code_fingerprint(target)  # (/tmp/ipykernel_PID/HASH.py: {"missing": true} for every version)
    fingerprint = file_fingerprint(Path(name), root)
    with contextlib.suppress(TypeError):
        _CODE_AS_LOADED[target] = (Path(name), fingerprint)
    return fingerprint


def _compiled_code_fingerprint(target: Any) -> dict[str, Any] | None:
    """``{"code_sha256": ...}``, the digest of the compiled code of a function or class that
    has no source file: a strategy class defined in a notebook's cell (its module,
    ``__main__``, has no file) was fingerprinted as None, so running the cell again with
    other code left the search "up to date" with the old code's results. Bytecode, names
    and constants are hashed, not file names or line numbers (which a kernel restart or a
    line added above changes); None when there is no Python code (a builtin, a C extension)."""
    import hashlib
    import types

    digest = hashlib.sha256()
    found = False

    def constant(value: Any) -> str:
        if isinstance(value, set | frozenset):  # (`x in {"a", "b"}`: its order follows the string hashes)
            return "{" + ",".join(sorted(constant(v) for v in value)) + "}"
        if isinstance(value, tuple | list):
            return "(" + ",".join(constant(v) for v in value) + ")"
        if isinstance(value, dict):
            return "{" + ",".join(sorted(f"{constant(k)}:{constant(v)}" for k, v in value.items())) + "}"
        return repr(value)

    def code(co: types.CodeType) -> None:
        digest.update(co.co_code + repr((co.co_names, co.co_varnames, co.co_freevars)).encode())
        for value in co.co_consts:
            if isinstance(value, types.CodeType):
                code(value)
            else:
                digest.update(constant(value).encode())

    def walk(name: str, value: Any, depth: int) -> None:
        nonlocal found
        value = getattr(value, "__func__", value)  # a staticmethod's or classmethod's function
        if isinstance(value, property):
            for part in (value.fget, value.fset, value.fdel):
                if part is not None:
                    walk(name, part, depth)
        elif isinstance(value, types.FunctionType):
            found = True
            digest.update(f"def {name}\0".encode())
            code(value.__code__)
            digest.update(constant(value.__defaults__).encode())
            if value.__kwdefaults__:  # (``*, k=3``: kept apart from __defaults__; only where there are some)
                digest.update(constant(value.__kwdefaults__).encode())
        elif isinstance(value, type) and depth < 4:
            digest.update(f"class {name}({','.join(b.__qualname__ for b in value.__bases__)})\0".encode())
            for key, item in sorted(vars(value).items()):
                if key not in ("__module__", "__dict__", "__weakref__", "__qualname__", "__firstlineno__",
                               "__static_attributes__"):
                    walk(key, item, depth + 1)
        elif isinstance(value, str | int | float | bool | tuple | list | dict | set | frozenset | type(None)):
            digest.update(f"{name}={constant(value)}\0".encode())

    walk(getattr(target, "__qualname__", ""), target, 0)
    return {"code_sha256": digest.hexdigest()} if found else None


def _code_target(obj: Any) -> Any:
    """The function or class whose source file defines ``obj``: a partial's function, a
    callable object's class, a decorated function's original."""
    import functools
    import inspect

    while isinstance(obj, functools.partial):  # the function it calls, not functools.py
        obj = obj.func
    return inspect.unwrap(obj if inspect.isroutine(obj) or inspect.isclass(obj) else type(obj))


#: the most ``.py`` files of a plugin's package :func:`package_code_fingerprint` reads; a
#: package with more (a plugin inside a large library) is left to its defining file
PACKAGE_FILES_LIMIT = 300

#: top-level package name -> :func:`package_code_fingerprint` as this process first took it
_PACKAGE_AS_LOADED: dict[str, dict[str, Any] | None] = {}


def package_code_fingerprint(obj: Any, root: Path | None = None) -> dict[str, Any] | None:
    """One digest of every ``.py`` file of the top-level package that defines ``obj`` (its
    folders, recursively; ``__pycache__`` and hidden folders left out) and their count: a
    plugin's helpers live in the other modules of its package, which the defining file's
    own fingerprint (:func:`code_fingerprint`) does not see. None for a module not in a
    package (its file is all there is) and for a package of more than
    :data:`PACKAGE_FILES_LIMIT` files. Taken once per process, as its code was loaded (see
    :func:`code_fingerprint`): a helper edited in a notebook after the import does not run."""
    import hashlib
    import sys

    top_name = (getattr(_code_target(obj), "__module__", None) or "").partition(".")[0]
    top = sys.modules.get(top_name)
    folders = [Path(folder) for folder in getattr(top, "__path__", None) or []]
    if not folders:
        return None
    if top_name in _PACKAGE_AS_LOADED:
        return _PACKAGE_AS_LOADED[top_name]
    files: list[tuple[str, Path]] = []
    for folder in folders:
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).parts
            if not any(part == "__pycache__" or part.startswith(".") for part in parts[:-1]):
                files.append(("/".join((folder.name, *parts)), path))
            if len(files) > PACKAGE_FILES_LIMIT:
                _PACKAGE_AS_LOADED[top_name] = None
                return None
    digest = hashlib.sha256()
    for name, path in sorted(files):
        digest.update(f"{name}\0{file_fingerprint(path, root).get('sha256')}\n".encode())
    _PACKAGE_AS_LOADED[top_name] = {"sha256": digest.hexdigest(), "files": len(files)}
    return _PACKAGE_AS_LOADED[top_name]


def base_class_code_fingerprints(obj: Any, root: Path | None = None) -> dict[str, Any] | None:
    """``{"myest.CosineEst": <fingerprint>}``: the files of the classes a plugin class inherits
    code from (its method resolution order) that live outside the files its own fingerprints
    already cover: not its defining module's top-level package (or module), not subsetctl's,
    and not the standard library's. A plugin estimator subclassing a class of a sibling
    module (``class Tuned(MyEstimator)`` in ``tuned.py``, ``MyEstimator`` in ``myest.py``)
    runs that module's ``estimate``, but only ``tuned.py`` was fingerprinted: editing
    ``myest.py`` left the search "up to date" and a re-run reused the old code's estimates.
    None for a function (a loader) and for a class with no such base (so the fingerprints
    of existing projects stay as they were).

    Where its package has too many files for :func:`package_code_fingerprint` (which then
    gives None), only its own module is left out: a base in another module of that package
    was fingerprinted by nothing, and editing it left the stages "up to date"."""
    import inspect
    import sys

    target = _code_target(obj)
    if not inspect.isclass(target):
        return None
    own_module = getattr(target, "__module__", None) or ""
    own_top = own_module.partition(".")[0]
    package_covered = package_code_fingerprint(target, root) is not None
    found: dict[str, Any] = {}
    for base in target.__mro__[1:]:
        module = getattr(base, "__module__", None) or ""
        top = module.partition(".")[0]
        covered = module == own_module or (top == own_top and package_covered)
        if covered or top in ("subsetctl", "builtins") or top in sys.stdlib_module_names:
            continue
        fingerprint = code_fingerprint(base, root)
        if fingerprint is not None:
            found[f"{module}.{base.__qualname__}"] = fingerprint
    return found or None


def code_edited_since_loaded(objects: Iterable[Any]) -> list[Path]:
    """The source files of ``objects`` (plugin functions, classes, callable objects), and of
    the base classes their fingerprints count (:func:`base_class_code_fingerprints`), whose
    content changed since this process loaded their code (see :func:`code_fingerprint`):
    it still runs the code from before the edit."""
    edited: set[Path] = set()
    for obj in objects:
        target = _code_target(obj)
        for code in (target, *getattr(target, "__mro__", ())[1:]):  # (a base never fingerprinted: not there)
            try:
                path, fingerprint = _CODE_AS_LOADED[code]
            except (KeyError, TypeError):  # never fingerprinted (or not weak-referenceable)
                continue
            if file_fingerprint(path) != fingerprint:
                edited.add(path)
    return sorted(edited)
