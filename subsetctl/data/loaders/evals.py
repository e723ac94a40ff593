"""The ``evals`` loader: OpenAI evals' JSON Lines samples from the installed ``evals``
package (located, never imported).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subsetctl.data.loaders.common import LoadContext, build_common, close_names, value_to_text
from subsetctl.data.loaders.files import parse_jsonl
from subsetctl.errors import UserError, as_typed, shell_arg, shown_path
from subsetctl.registry import LOADERS
from subsetctl.spec import EvalsLoader

if TYPE_CHECKING:
    from datasets import Dataset


#: how to install the ``evals`` package whose data the loader reads
EVALS_INSTALL_HINT = "pip install --no-deps evals==3.0.1.post1"


def evals_data_dir() -> Path | None:
    """``evals/registry/data`` of the installed ``evals`` package, or None.

    Found with ``importlib.util.find_spec`` so that the heavy package is never imported."""
    spec = importlib.util.find_spec("evals")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "registry" / "data"
    return folder if folder.is_dir() else None


def evals_names(data_dir: Path) -> list[str]:
    """The eval folders under ``data_dir``, listed once while the folder is unchanged (its
    modification time, link count and inode): the installed package's 470 folders took about
    7 ms to list, which validate did several times for each ``evals`` source (10 s of 400
    sources' 18 s)."""
    try:
        stat = data_dir.stat()
    except OSError:  # (listing it says why)
        return _evals_names_listed(data_dir)
    return list(_evals_names_of(data_dir, stat.st_mtime_ns, stat.st_nlink, stat.st_ino))


@functools.lru_cache(maxsize=8)
def _evals_names_of(data_dir: Path, mtime_ns: int, nlink: int, ino: int) -> tuple[str, ...]:
    """:func:`evals_names` of ``data_dir`` as it is now (the rest: what tells it has changed)."""
    return tuple(_evals_names_listed(data_dir))


def _evals_names_listed(data_dir: Path) -> list[str]:
    """The eval folders under ``data_dir``, listed now."""
    return sorted(p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def evals_names_hint(data_dir: Path) -> str:
    """How to see every eval's name (`subsetctl ls` lists loaders, not evals): the folders of
    the installed evals package's data folder, as reasoning_gym_task_hint says of tasks."""
    return (f"The installed evals package has {len(evals_names(data_dir))} evals (its data folder's folders); list "
            f"them with `ls {shell_arg(shown_path(data_dir))}`.")


def evals_files(folder: Path) -> list[str]:
    """The JSONL files of one eval folder, as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jsonl") if p.is_file())


#: The file an eval's samples are usually in; its other files are often few-shot examples.
EVALS_SAMPLES_FILE = "samples.jsonl"


def default_evals_file(files: list[str]) -> str:
    """The file read when ``loader.file`` is not set: ``samples.jsonl`` when the eval has
    one (its other files are typically few-shot or labelled variants: ``fewshot.jsonl``
    sorts first in ``anagrams``), else the first file in sorted order. ``files`` is
    :func:`evals_files`'s non-empty list."""
    if EVALS_SAMPLES_FILE in files:
        return EVALS_SAMPLES_FILE
    nested = [f for f in files if f.rsplit("/", 1)[-1] == EVALS_SAMPLES_FILE]
    return nested[0] if nested else files[0]


def evals_file(options: EvalsLoader, source: str) -> Path:
    """The JSONL file an evals loader reads; UserError when it cannot be found."""
    data_dir = evals_data_dir()
    if data_dir is None:
        raise UserError(
            f"Source {source!r}: the evals loader needs the `evals` package's data files, "
            f"which are not installed. Install them with `{EVALS_INSTALL_HINT}`."
        )
    folder = data_dir / options.name
    if options.name not in evals_names(data_dir):  # not a path: '' or '.' read the first eval's file
        raise UserError(
            f"Source {source!r}: loader.name {options.name!r} is not an eval. "
            f"{close_names(options.name, evals_names(data_dir))} {evals_names_hint(data_dir)}"
        )
    files = evals_files(folder)
    if options.file is None:
        if not files:
            raise UserError(f"Source {source!r}: eval {options.name!r} ({shown_path(folder)}) has no .jsonl file.")
        return folder / default_evals_file(files)
    if options.file not in files:
        listed = ", ".join(repr(f) for f in files) or "(none)"
        raise UserError(
            f"Source {source!r}: loader.file {as_typed(options.file)} is not in eval {options.name!r} "
            f"({shown_path(folder)}). Its files: {listed}."
        )
    return folder / options.file


def _evals_prompt(value: Any) -> str | None:
    """The prompt of an evals ``input``: the contents of its chat messages joined by
    blank lines (system, user and few-shot assistant turns, in order), or the text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for message in value:
            content = message.get("content") if isinstance(message, dict) else message
            if content is not None:
                parts.append(value_to_text(content))
        return "\n\n".join(parts)
    if value is None:
        return None
    return value_to_text(value)


@LOADERS.register("evals")
def load_evals(options: EvalsLoader, ctx: LoadContext) -> Dataset:
    """A task from the `evals` package: chat ``input`` -> prompt, ``ideal`` -> response.

    A list ``ideal`` (several accepted answers) gives its first item as the response;
    the whole list stays in the metadata as ``ideal_all``, with the sample's other keys,
    ``evals_name`` and ``evals_file`` (the file as ``loader.file`` names it, its folder in
    the eval included)."""
    path = evals_file(options, ctx.source_name)
    data_dir = evals_data_dir()  # (found: evals_file found the file in it)
    # the file as loader.file names it: theory_of_mind has tomi/test.jsonl and socialiqa/test.jsonl
    file_name = path.relative_to(data_dir / options.name).as_posix() if data_dir else path.name
    parsed = parse_jsonl(path, ctx.source_name)
    records = []
    for number, record in parsed:
        ideal = record.get("ideal")
        if isinstance(ideal, list):
            ideal_all = ideal
            ideal = ideal[0] if ideal else None
        else:
            ideal_all = [ideal] if ideal is not None else []
        if ideal is None:
            raise UserError(
                f"Source {ctx.source_name!r}: file {shown_path(path)}, line {number} has no 'ideal' answer. "
                f"{_evals_no_ideal_advice(options, path)}"
            )
        extra = {k: v for k, v in record.items() if k not in ("input", "ideal")}
        extra.update(evals_name=options.name, evals_file=file_name, ideal_all=ideal_all)
        records.append({"prompt": _evals_prompt(record.get("input")), "ideal": ideal, "metadata": extra})
    lines = [number for number, _ in parsed]
    return build_common(
        records,
        "prompt",
        "ideal",
        None,
        ctx,
        f"file {shown_path(path)}",
        lambda i: f"line {lines[i]}",
        ["input", "ideal"],
        fix="Choose an eval (loader.name) or file (loader.file) whose every sample has an 'ideal' answer.",
        draw=True,
    )


def _evals_no_ideal_advice(options: EvalsLoader, path: Path) -> str:
    """What to do about a sample without an ``ideal`` answer: choose another file when the
    eval has several (besides its samples, an eval may ship few-shot or model-graded
    files), else another eval (this one is probably model-graded)."""
    data_dir = evals_data_dir()
    folder = data_dir / options.name if data_dir is not None else path.parent
    others = [f for f in evals_files(folder) if folder / f != path] if folder.is_dir() else []
    if others:
        listed = ", ".join(repr(f) for f in others)
        return (
            f"Eval {options.name!r} has other files ({listed}): choose one with ideal answers with "
            "loader.file, or choose another eval (this file is probably model-graded)."
        )
    return f"Eval {options.name!r} is probably model-graded; choose an eval with ideal answers."
