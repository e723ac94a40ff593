"""Reaching the Hugging Face hub, and what the local Hugging Face cache already holds.

A model or dataset named by a hub id loads on a machine without network only from the
local cache. Without a check, an offline run learns that after about half a minute of
the hub client's retries, and only once the stages before have run; ``validate`` (and so
``plan`` and ``run``) asks these questions first and fails at once, naming the key.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

#: ``datasets.load_dataset`` builder names that read local files, not hub datasets (as
#: of datasets 5.2, plus older ones; the installed release's own list is used when
#: datasets is imported already).
_FILE_BUILDERS = frozenset({
    "arrow", "audiofolder", "conll", "csv", "eval", "fasta", "fastq", "genbank", "harbor", "hdf5", "iceberg",
    "imagefolder", "json", "lance", "meshfolder", "mmcif", "niftifolder", "pandas", "parquet", "pdb", "pdffolder",
    "sql", "text", "tsfile", "videofolder", "vortex", "webdataset", "xml",
})


#: File suffixes that make a ``huggingface`` loader path a local file, not a hub id.
_LOCAL_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".py")


def looks_local(path: str) -> bool:
    """Whether a ``huggingface`` loader path is meant as a local path, not a hub id: it
    starts like a path (``.``, ``/``, ``~``, a Windows ``.\\``) or names a data file. A hub
    id never does, so such a path that does not exist is a missing file, not a download."""
    return path.startswith((".", "/", "~")) or Path(path).suffix in _LOCAL_SUFFIXES


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub's host accepts a TCP connection within ``timeout`` s.

    Without this check an offline machine spends about a minute in the hub client's
    retries before failing. With a proxy configured the answer cannot be judged from
    here, so the hub is assumed reachable; ``HF_HUB_OFFLINE`` means unreachable.
    """
    try:
        import huggingface_hub.constants as hub_constants

        if getattr(hub_constants, "HF_HUB_OFFLINE", False):
            return False
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        pass
    if _variable_set("HF_HUB_OFFLINE"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        port = url.port or (80 if url.scheme == "http" else 443)  # a mirror may serve on its own port
    except ValueError:
        return False
    address = (hub_host(), port)
    known = _UNREACHABLE_SINCE.get(address)
    if known is not None and time.monotonic() - known < _UNREACHABLE_MEMORY_S:
        return False
    started = time.monotonic()
    for sockaddr in _resolved(*address, timeout=timeout):
        try:
            with socket.create_connection(sockaddr[:2], timeout=max(0.1, timeout - (time.monotonic() - started))):
                _UNREACHABLE_SINCE.pop(address, None)
                return True
        except OSError:
            pass
        if time.monotonic() - started >= timeout:
            break
    _UNREACHABLE_SINCE[address] = time.monotonic()
    return False


def _resolved(host: str, port: int, timeout: float) -> list[tuple]:
    """The socket addresses ``host`` resolves to, or none when it does not resolve within
    ``timeout`` s. A machine whose configured name server cannot be reached (a cluster node
    cut off from the network) blocks in ``getaddrinfo`` for the resolver's own retries,
    often 10-40 s, which a socket's timeout does not cover; the lookup runs in a daemon
    thread, left to finish on its own if it takes longer."""
    found: list[tuple] = []

    def look_up() -> None:
        try:
            found.extend(info[4] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError):  # unknown host; a name IDNA cannot encode
            pass

    lookup = threading.Thread(target=look_up, name="subsetctl-hub-lookup", daemon=True)
    lookup.start()
    lookup.join(timeout)
    return [] if lookup.is_alive() else list(found)


#: (host, port) -> when a probe last failed. One command asks several times (``doctor``
#: validates the spec, then checks hub access; ``run`` validates, then loads), and a
#: dropped connection costs the whole timeout each time: a failure is believed for a
#: minute. A success is not remembered, it costs one round trip.
_UNREACHABLE_SINCE: dict[tuple[str, int], float] = {}
_UNREACHABLE_MEMORY_S = 60.0


def forget_unreachable() -> None:
    """Probe afresh next time (tests, or a long-lived process whose network came back)."""
    _UNREACHABLE_SINCE.clear()


def hub_host() -> str:
    """The hub's host name (``HF_ENDPOINT`` may point at a mirror)."""
    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def model_cached(repo_id: str, revision: str | None = None) -> bool:
    """Whether the local Hugging Face cache holds the config of the hub model ``repo_id``
    (at ``revision``, a commit or a branch or tag its ``refs`` name; None: its ``main``), so
    ``from_pretrained`` can load it offline."""
    return cached_snapshot(repo_id, revision) is not None


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The folder of the hub model ``repo_id``'s files that the local Hugging Face cache
    serves now for ``revision`` (a commit, or a branch or tag its ``refs`` name; None: the
    revision ``from_pretrained`` last downloaded, or loads offline): the snapshot its
    config.json is in; None when the cache does not hold its config.json there. Asks no
    network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a valid repo id
        return None
    return Path(found).parent if isinstance(found, str) else None


def snapshot_pinned(snapshot: Path, revision: str | None) -> bool:
    """Whether the cached ``snapshot`` is the one ``from_pretrained`` loads for ``revision``
    whether or not the hub is reachable: ``revision`` is the commit that names it. A branch or
    tag (or None: main) may have moved on the hub since the cache was filled, and with the hub
    reachable ``from_pretrained`` loads where it points now, so such a snapshot's files say what
    will load only offline."""
    return revision is not None and snapshot.name == revision


def cached_revision(repo_id: str, revision: str | None = None) -> str | None:
    """The commit of the hub model ``repo_id`` that the local Hugging Face cache serves for
    ``revision`` (its snapshot folder's name, :func:`cached_snapshot`); None when it is not cached."""
    snapshot = cached_snapshot(repo_id, revision)
    return snapshot.name if snapshot is not None else None


def model_cache_folder(repo_id: str) -> Path:
    """The hub model ``repo_id``'s folder in the local Hugging Face cache (``models--ORG--NAME``),
    whether or not it is there."""
    import huggingface_hub.constants as hub_constants

    return Path(hub_constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"


def cached_model_revisions(repo_folder: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The commits a hub model's folder in the local Hugging Face cache
    (``models--ORG--NAME``) holds a snapshot of, sorted, and the branches and tags its
    ``refs`` name, as (name, commit) pairs; both empty where it holds none (or cannot be read)."""
    try:
        commits = sorted(p.name for p in (repo_folder / "snapshots").iterdir() if p.is_dir())
        refs = sorted((f.relative_to(repo_folder / "refs").as_posix(), commit)  # (branch or tag, commit)
                      for f in (repo_folder / "refs").rglob("*") if f.is_file() and (commit := _ref_commit(f)) is not None)
    except OSError:
        return [], []
    return commits, refs


def _ref_commit(ref: Path) -> str | None:
    """The commit a hub cache's ``refs`` file names; None for one that cannot be read as text
    (a damaged cache: its bytes not UTF-8 raised UnicodeDecodeError, an internal error, where
    the model's source was to be named unknown)."""
    try:
        return ref.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def cached_model_revisions_text(repo_id: str) -> str:
    """The revisions of the hub model ``repo_id`` the local Hugging Face cache holds, for
    messages: "2 revisions: COMMIT (main), COMMIT (v1.0)" (each commit with the branches and
    tags naming it, five at most), or "no revision" (with the folder looked in)."""
    commits, refs = cached_model_revisions(model_cache_folder(repo_id))
    if not commits:
        return f"no revision of it ({cache_looked_in('model')})"
    return f"{len(commits)} revision{'s' if len(commits) > 1 else ''} of it: {revisions_listed(commits, refs)}"


def revisions_listed(commits: list[str], refs: list[tuple[str, str]]) -> str:
    """``commits`` (of :func:`cached_model_revisions`), five at most, each with the branches and
    tags of ``refs`` naming it, for messages: "COMMIT (main, v1.0), COMMIT"."""
    names = {c: ", ".join(ref for ref, commit in refs if commit == c) for c in commits}
    return ", ".join(f"{c}{f' ({names[c]})' if names[c] else ''}" for c in commits[:5]) + (
        ", ..." if len(commits) > 5 else "")


def is_file_builder(path: str) -> bool:
    """Whether ``path`` names one of datasets' file builders (``json`` with data_files).
    The installed datasets' own list when it is imported already; importing it only to
    ask would add most of a second to every `validate`."""
    loaded = sys.modules.get("datasets.packaged_modules")
    return path in getattr(loaded, "_PACKAGED_DATASETS_MODULES", _FILE_BUILDERS)


def dataset_cached(path: str) -> bool:
    """Whether the local caches hold anything of the hub dataset ``path``: the files
    huggingface_hub downloaded or the tables datasets prepared (datasets falls back to
    either when the hub cannot be reached). Found from the cache folders' names, as
    datasets writes them (``org___name`` with the name in snake case), without importing
    datasets."""
    import huggingface_hub.constants as hub_constants

    namespace, _, name = path.rpartition("/")
    prepared = datasets_cache_dir()
    candidates = [Path(hub_constants.HF_HUB_CACHE) / f"datasets--{path.replace('/', '--')}",
                  prepared / path.replace("/", "___"),
                  prepared / ((f"{namespace}___" if namespace else "") + _snake_case(name))]
    return any(p.is_dir() for p in candidates)


def cached_dataset_tables(path: str) -> dict[str, Path]:
    """The configurations of the hub dataset ``path`` whose tables ``datasets`` prepared in
    its cache, each with the folder it reads them from (``<config>/<version>/<hash>``, the
    latest modified, as datasets chooses), found from the ``dataset_info.json`` datasets
    writes there, without importing datasets; empty when there are none. This is what
    ``load_dataset`` reads where it asks no hub (``HF_DATASETS_OFFLINE``, ``HF_HUB_OFFLINE``,
    the hub out of reach): its configurations' names and splits, and, in the folder's
    ``<hash>``, the revision of the dataset they were prepared from."""
    import json

    namespace, _, name = path.rpartition("/")
    root = datasets_cache_dir() / ((f"{namespace}___" if namespace else "") + _snake_case(name))
    if not root.is_dir():
        return {}

    def modified(folder: Path) -> float:
        try:
            return folder.stat().st_mtime
        except OSError:
            return 0.0

    found: dict[str, Path] = {}
    for folder in sorted(root.glob("*/*/*"), key=modified):  # the latest last, replacing older ones
        try:
            config = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))["config_name"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if config == folder.parent.parent.name:  # (one prepared with other options has its own folder name)
            found[config] = folder
    return found


def cache_looked_in(what: str) -> str:
    """Where the local Hugging Face cache was looked in for a hub ``what`` ("model" or
    "dataset"), and the variables that move it, for messages: an offline machine whose
    cache is elsewhere (a cluster's shared scratch, set in the job's environment only) was
    told the id is "not in the local Hugging Face cache" without saying which folder that was."""
    import huggingface_hub.constants as hub_constants

    hub_cache = _folder_looked_in(hub_constants.HF_HUB_CACHE)
    if what == "model":
        return f"looked in {hub_cache}; HF_HOME or HF_HUB_CACHE name another"
    datasets_cache = _folder_looked_in(datasets_cache_dir())
    return f"looked in {hub_cache} and {datasets_cache}; HF_HOME, HF_HUB_CACHE or HF_DATASETS_CACHE name others"


#: The variables that move the Hugging Face caches, as the environment may set them.
_CACHE_VARIABLES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE", "HF_HOME")


def _folder_looked_in(folder: str | Path) -> str:
    """The cache ``folder`` as written, and where it does not exist " (no such folder: HF_HOME=/x
    is set here; check the path)", naming the variables the environment sets. A job whose
    HF_HOME is misspelt, or names a scratch folder another node mounts, was told its hub id "is
    not in the local Hugging Face cache", as if the cache had been looked through and lacked it."""
    if Path(folder).is_dir():
        return str(folder)
    named = [f"{v}={os.environ[v]}" for v in _CACHE_VARIABLES if os.environ.get(v)]
    return (f"{folder} (no such folder: {', '.join(named)} {'is' if len(named) == 1 else 'are'} set here; check the "
            "path)" if named else f"{folder} (no such folder)")


def cached_model_ids() -> list[str]:
    """The hub model ids the local Hugging Face cache holds a snapshot of (its
    ``models--org--name/snapshots/*`` folders), sorted; found from the folder names alone."""
    import huggingface_hub.constants as hub_constants

    try:
        folders = list(Path(hub_constants.HF_HUB_CACHE).glob("models--*"))
    except OSError:
        return []
    found = []
    for folder in folders:
        try:
            if any((folder / "snapshots").iterdir()):
                found.append(folder.name.removeprefix("models--").replace("--", "/"))
        except OSError:
            continue
    return sorted(found)


def cached_model_guess(repo_id: str) -> str:
    """" The local Hugging Face cache holds 'Org/Name', close to it: did you mean that?" for a hub
    model id the cache does not hold where it holds one spelt alike (in other letter case, as
    the hub's pages write it, or one or two letters apart); "" where it holds none. The cache's
    folders are named in the id's own case, so offline `huggingfacetb/smollm2-135m` does not
    find `HuggingFaceTB/SmolLM2-135M`, and a typo was told only that the id is not cached."""
    import difflib

    cached = {name.lower(): name for name in cached_model_ids() if name != repo_id}
    close = [cached[name] for name in difflib.get_close_matches(repo_id.lower(), list(cached), n=3, cutoff=0.8)]
    if not close:
        return ""
    listed = " or ".join(repr(name) for name in close)
    return (f" The local Hugging Face cache holds {listed}, close to it: did you mean "
            f"{'that' if len(close) == 1 else 'one of them'}?")


def datasets_cache_dir() -> Path:
    """Where ``datasets.load_dataset`` prepares its tables (``HF_DATASETS_CACHE``, else
    ``$HF_HOME/datasets``), found without importing datasets."""
    import huggingface_hub.constants as hub_constants

    return Path(os.environ.get("HF_DATASETS_CACHE") or Path(hub_constants.HF_HOME) / "datasets")


def cache_write_problem(exc: BaseException, default: str) -> str | None:
    """What to say when ``exc`` (or the error it was raised from: datasets wraps a write's
    OSError in DatasetGenerationError) is a Hugging Face cache that cannot be written
    (read-only, not writable, full, a file where its folder goes): the failure, the cache
    and the variable that moves it (and, in a cache a team shares, the teammate whose folder
    it is, and their command); None for any other error. A full disk names no file:
    it is put on the ``default`` cache ("datasets" or "hub"), the one being written. Such
    failures were reported as the dataset's or model's own ("Check loader.path", "if the
    id is misspelled"), which no spec change fixes."""
    import errno

    import huggingface_hub.constants as hub_constants

    from subsetctl.errors import as_os_error, teammate_note

    error = next((found for e in _chain(exc) if (found := as_os_error(e)) is not None), None)
    if error is None or error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.ENOTDIR):
        return None
    caches = {"datasets": (datasets_cache_dir(), "HF_DATASETS_CACHE", "datasets prepares its tables"),
              "hub": (Path(hub_constants.HF_HUB_CACHE), "HF_HUB_CACHE", "the hub client keeps its downloads")}
    if error.filename:  # the cache, a file in it, or a folder above it that could not be made
        failed = Path(os.path.abspath(error.filename))
        found = next((name for name, (cache, _, _) in caches.items()
                      if failed.is_relative_to(Path(os.path.abspath(cache)))
                      or Path(os.path.abspath(cache)).is_relative_to(failed)), None)
    else:
        found = default if error.errno == errno.ENOSPC else None
    if found is None:
        return None
    cache, variable, what = caches[found]
    fix = {errno.ENOSPC: "free disk space there",
           errno.ENOTDIR: "a part of that path is a file: move it aside"}.get(error.errno, "fix its permissions")
    return (f"{error.strerror}{f' ({error.filename})' if error.filename else ''}{teammate_note(error)}. "
            f"{what[0].upper()}{what[1:]} in "
            f"{os.path.abspath(cache)} ({variable}, else $HF_HOME/{found}): {fix}, or set {variable} to a writable "
            f"folder with room (e.g. {variable}=$TMPDIR/hf-{found}).")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every error it was raised from or while handling (``__cause__`` before
    ``__context__``, each followed as far as it goes), each once. Following only
    ``__cause__ or __context__`` missed an OSError in the context of an error raised
    ``from`` another, and looped for ever on a chain that comes back on itself (``raise a
    from b``, ``b`` raised while ``a`` was handled: Python cuts loops of contexts only)."""
    todo, seen = [exc], set()
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        todo.extend(e for e in (error.__context__, error.__cause__) if e is not None)  # (the cause popped first)


def _snake_case(name: str) -> str:
    """``MetaMathQA`` -> ``meta_math_qa``, as datasets names a builder's cache folder."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def datasets_offline_reason() -> str | None:
    """``"HF_DATASETS_OFFLINE is set"`` when it is (to 1, true, yes or on), else None.
    ``datasets`` then loads a hub dataset only from the local caches, as with
    ``HF_HUB_OFFLINE``, while the hub client and transformers (a hub model) still reach
    the hub: :func:`hub_reachable` is not asked about datasets then. Without this an
    uncached hub dataset got no warning from ``validate`` on a machine that can reach the
    hub, and the data stage stopped on datasets' own "Couldn't reach ... on the Hub"; where
    the hub cannot be reached, the message named the host instead of the variable."""
    return "HF_DATASETS_OFFLINE is set" if _variable_set("HF_DATASETS_OFFLINE") else None


def _variable_set(variable: str) -> bool:
    """Whether the environment variable ``variable`` is set to a true value, as the
    Hugging Face libraries read it (1, true, yes, on, in any letter case)."""
    return os.environ.get(variable, "").lower() in ("1", "true", "yes", "on")


def unreachable_reason() -> str:
    """Why the hub cannot be used, for messages. huggingface_hub reads TRANSFORMERS_OFFLINE
    as HF_HUB_OFFLINE: set alone, it was said as the hub's host not being reachable."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _variable_set(variable):
            return f"{variable} is set"
    return f"{hub_host()} cannot be reached from this machine"
