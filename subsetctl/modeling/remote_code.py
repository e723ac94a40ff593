"""A model folder's own Python code (``auto_map``), and what it takes to load it.

A config.json (or tokenizer_config.json) may name classes in Python files beside it
(``"AutoConfig": "configuration_x.XConfig"``) or in another hub repository's
(``"AutoConfig": "org/repo--configuration_x.XConfig"``). transformers runs such code only
with ``trust_remote_code``, and fetches the other repository's files from the hub, even for
a local folder. Without these checks a folder whose model type transformers does not know
stopped ``run`` with transformers' "contains custom code which must be executed" and advice
to copy the weights again, and an offline machine's with a failed download and the same advice.
"""

from __future__ import annotations

import json
from pathlib import Path

from subsetctl.errors import UserError

#: the files of a model folder whose ``auto_map`` transformers reads
_AUTO_MAP_FILES = ("config.json", "tokenizer_config.json")


def auto_map_entries(folder: Path) -> dict[str, list[str]]:
    """Each of :data:`_AUTO_MAP_FILES` in ``folder`` -> the class references its ``auto_map``
    names (``configuration_x.XConfig``, ``org/repo--modeling_x.XModel``; AutoTokenizer's pair
    of slow and fast classes counted apart, a null left out); files without one are left out."""
    found: dict[str, list[str]] = {}
    for name in _AUTO_MAP_FILES:
        try:
            config = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        auto_map = config.get("auto_map") if isinstance(config, dict) else None
        if not isinstance(auto_map, dict):
            continue
        references = [ref for value in auto_map.values()
                      for ref in (value if isinstance(value, list) else [value]) if isinstance(ref, str)]
        if references:
            found[name] = references
    return found


def other_repositories(references: list[str]) -> list[str]:
    """The hub repositories ``references`` take their code from (``org/repo`` of
    ``org/repo--modeling_x.XModel``), in order, each once."""
    return list(dict.fromkeys(ref.split("--", 1)[0] for ref in references if "--" in ref))


def refuse_code_not_trusted(folder: Path, trust_remote_code: bool, where: str | None = None) -> None:
    """A UserError for a model folder whose config.json's ``model_type`` transformers does not
    know and whose ``auto_map`` names code to build it, while ``model.trust_remote_code`` is
    off: transformers refuses it ("contains custom code which must be executed"), which run
    reported as a folder to copy again. A model type transformers knows (its own, or one
    registered with ``AutoConfig.register``) loads with those classes, its ``auto_map``
    unused, and passes. (transformers' table of model types, a few seconds to import, is read
    only for a folder with an ``auto_map``: validate runs this too.)
    ``where``: how the message names the model (default "The model folder FOLDER"; a hub id's
    copy in the local Hugging Face cache is named as such)."""
    if trust_remote_code:
        return
    references = auto_map_entries(folder).get("config.json")
    if not references:
        return
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(model_type, str):  # (a damaged config.json's list or number: what loading it says)
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type in CONFIG_MAPPING:  # (transformers' own test: its types and those registered, by a plugin say)
        return
    raise UserError(
        f"{where or f'The model folder {folder}'} is a model_type transformers does not know ({model_type!r}), built by code "
        f"its config.json's auto_map names ({', '.join(references[:3])}), which transformers runs only with "
        "model.trust_remote_code: true. Read that code first (it runs as you, with your files), then set "
        "model.trust_remote_code: true in the spec; or point model.source at a model transformers supports."
    )


def remote_code_not_fetched(folder: Path, exc: BaseException, reason: str) -> str | None:
    """What to say where loading the model folder ``folder`` failed with ``exc`` (``reason``:
    its first line) while transformers fetched the code its ``auto_map`` takes from another
    hub repository: the code could not be fetched (offline, or the repository is gone), not a
    damaged copy of the weights, and how to make the folder load without the hub. None where
    it takes no code from elsewhere, or ``exc`` came from elsewhere than that fetch (a
    truncated weights file once the code was fetched: the copy to repeat, as for any folder)."""
    if not raised_loading_code(exc):
        return None
    entries = auto_map_entries(folder)
    references = [ref for refs in entries.values() for ref in refs]
    repos = other_repositories(references)
    if not repos:
        return None
    elsewhere = [ref for ref in references if "--" in ref]
    files = sorted({ref.split("--", 1)[1].rsplit(".", 1)[0] + ".py" for ref in elsewhere})
    return (f"Could not load the model folder {folder}: its auto_map ({', '.join(entries)}) takes code from the hub "
            f"repository {', '.join(repos)} ({', '.join(elsewhere)[:200]}), and "
            f"fetching it failed: {reason} Copy {', '.join(files)} from that repository into the folder and drop "
            f"the '{repos[0]}--' prefix{'es' if len(elsewhere) > 1 else ''} in auto_map, so that it loads "
            "without the hub; or run once where the hub is reachable (transformers keeps the code it fetched).")


def remote_code_import_failed(folder: Path, exc: ImportError, reason: str, where: str | None = None) -> str | None:
    """What to say where the code the model folder ``folder``'s ``auto_map`` names could not be
    imported (``exc``, ``reason`` its first line: transformers' "This modeling file requires the
    following packages that were not found in your environment"), which stopped `run` with an
    internal error: a package to install where subsetctl runs. None where ``exc`` came from
    elsewhere than transformers' import of that code. ``where``: how the message names the model
    (default "The model folder FOLDER"; a hub id's copy in the local Hugging Face cache is named as such)."""
    if not raised_loading_code(exc):
        return None
    opening = f"{where}: its own code" if where else f"The model folder {folder}'s own code"
    return (f"{opening} (the Python files its config.json's auto_map names, run with "
            f"model.trust_remote_code: true) could not be imported: {reason} Install what it asks for in the "
            "Python environment subsetctl runs in, then run again; or point model.source at a model transformers "
            "supports without that code.")


def raised_loading_code(exc: BaseException) -> bool:
    """Whether ``exc`` was raised in transformers' ``dynamic_module_utils``, which fetches and
    imports an ``auto_map``'s code: the one place a failure is the code's, not the weights'."""
    import traceback

    return any(Path(frame.f_code.co_filename).name == "dynamic_module_utils.py"
               and "transformers" in Path(frame.f_code.co_filename).parts
               for frame, _ in traceback.walk_tb(exc.__traceback__))
