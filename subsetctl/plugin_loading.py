"""Importing the plugins a spec names under ``plugins:`` (``module:attr`` strings).

Importing a plugin module registers what it defines (its ``register`` decorators run);
this module turns what can go wrong on the way into user errors that say what to do (a
file named instead of a module, a module not on PYTHONPATH, a plugin whose own import
fails, another project's module of the same name), registers a named class its module
did not register itself, and fingerprints plugin code for the stages using it. Which
registrations a spec's call sees is :mod:`subsetctl.plugin_scoping`'s concern. Within
:func:`plugins_not_imported` (``validate --no-plugins``) nothing is imported: each plugin is
located without running its code, and what it would register is "not checked".
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from subsetctl.errors import PluginNotImported, UnknownPluginError, UserError, shell_arg, worded
from subsetctl.plugin_scoping import importing, register_again, registered_anything
from subsetctl.registry import ESTIMATORS, STRATEGIES, Registry, doc_summary

#: set while a command checks a spec without importing its ``plugins:`` (:func:`plugins_not_imported`)
_NOT_IMPORTING: ContextVar[bool] = ContextVar("subsetctl_plugins_not_imported", default=False)

#: how the message of a check left undone for a plugin not imported begins (:func:`is_not_checked`)
NOT_CHECKED = "not checked: "


@contextlib.contextmanager
def plugins_not_imported(on: bool = True) -> Iterator[None]:
    """Within it (when ``on``), :func:`load_plugin_string` imports no ``plugins:`` module: it
    raises :class:`~subsetctl.errors.PluginNotImported` saying where the module is, and a name
    no registry knows is "not checked" (:func:`unknown_after_failed_imports`) rather than an
    error. For checking a spec from someone else without running its code (``validate
    --no-plugins``). Installed entry points are still imported: the environment's, not the spec's."""
    token = _NOT_IMPORTING.set(_NOT_IMPORTING.get() or on)
    try:
        yield
    finally:
        _NOT_IMPORTING.reset(token)


def plugins_skipped() -> bool:
    """Whether the spec's plugins are left unimported now (:func:`plugins_not_imported`)."""
    return _NOT_IMPORTING.get()


def is_not_checked(message: str) -> bool:
    """Whether an issue's ``message`` is a check left undone because the spec's plugins were
    not imported, not a problem of the spec."""
    return message.startswith(NOT_CHECKED)


def no_plugins_option() -> str:
    """How the caller asked for plugins not to be imported, for messages."""
    return worded("--no-plugins", "import_plugins=False")


def module_file(module_name: str) -> Path | None:
    """The file the module ``module_name`` would be imported from, found without running any
    code: :func:`importlib.util.find_spec` imports a dotted name's parent packages (their
    ``__init__.py`` runs), so each part is asked of the import system's finders in the
    folders of the part before. None when it is not found, or is no file (a namespace
    package, a module built into Python)."""
    found: Any = None
    path: Any = None
    parts = module_name.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        if i and path is None:  # the part before is a module, not a package
            return None
        loaded = sys.modules.get(name)
        if loaded is not None:  # imported already (by this process, not for this spec): nothing runs
            found, path = getattr(loaded, "__spec__", None), getattr(loaded, "__path__", None)
            continue
        found = None
        for finder in sys.meta_path:
            try:
                found = finder.find_spec(name, path)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a finder of another package, or a name no module has
                found = None
            if found is not None:
                break
        if found is None:
            return None
        path = found.submodule_search_locations
    origin = getattr(found, "origin", None)
    return Path(origin) if origin and getattr(found, "has_location", False) else None


def code_not_imported(kind: str, name: str) -> dict[str, str]:
    """What stands for the code of the plugin ``name`` of ``kind`` in a stage's inputs when
    no registry knows it and the spec's plugins were not imported: a plugin may provide it,
    so whether its code changed is not known (:func:`codes_not_imported` finds it)."""
    return {_CODE_NOT_IMPORTED: f"the {kind} {name!r}"}


#: the key of :func:`code_not_imported`'s dict
_CODE_NOT_IMPORTED = "code not imported"


def codes_not_imported(inputs: Any) -> list[str]:
    """The plugins (``"the strategy 'mine'"``) whose code ``inputs`` (a stage's, nested dicts
    and lists) holds as :func:`code_not_imported`, in order, once each."""
    found: list[str] = []
    todo = [inputs]
    while todo:
        item = todo.pop(0)
        if isinstance(item, dict):
            if set(item) == {_CODE_NOT_IMPORTED}:
                found += [item[_CODE_NOT_IMPORTED]] if item[_CODE_NOT_IMPORTED] not in found else []
                continue
            todo += list(item.values())
        elif isinstance(item, list):
            todo += item
    return found


def _not_imported(spec: str, module_name: str, spec_dir: Path | None) -> PluginNotImported:
    """The note for the ``plugins:`` entry ``spec`` left unimported (:func:`plugins_not_imported`):
    the file it would run, or where the module may be when it is not on PYTHONPATH."""
    file = module_file(module_name)
    near = _module_file_near(module_name, spec_dir) if file is None else None
    where = (str(file) if file is not None else
             f"not found on PYTHONPATH here{f'; its file may be {near}' if near is not None else ''}")
    return PluginNotImported(
        f"{NOT_CHECKED}the plugin module {module_name!r} ({where}) was not imported ({no_plugins_option()}): "
        f"what {spec!r} registers is not checked"
    )


def load_plugin_string(spec: str, spec_dir: Path | None = None) -> Any:
    """Import ``module:attr`` (from a spec's ``plugins:`` list); importing it registers it.
    ``spec_dir``: the spec's folder, where a module that cannot be imported is looked for
    (``plugins/my_strategy.py``), so the error can say which folder to put on PYTHONPATH."""
    module_name, _, attr = spec.partition(":")
    if "/" in module_name or "\\" in module_name or module_name.endswith(".py"):
        raise UserError(
            f"Plugin {spec!r} names a file; plugins are named by module: put the file's folder on PYTHONPATH and "
            f"write 'module:attr' (for plugins/my_strategy.py: PYTHONPATH=plugins and 'my_strategy:MyStrategy')."
        )
    if not attr:
        raise UserError(f"Plugin {spec!r} must look like 'package.module:attr': the module, a colon and a class or "
                        f"function it defines (e.g. '{module_name or 'my_strategy'}:MyStrategy' for a class MyStrategy "
                        f"in {(module_name or 'my_strategy').replace('.', '/')}.py, its folder on PYTHONPATH).")
    if plugins_skipped():
        raise _not_imported(spec, module_name, spec_dir)
    try:
        module = _import_registering(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
        if missing and missing != module_name and not module_name.startswith(f"{missing}."):
            raise UserError(  # the plugin was found; something it imports is not installed
                f"Plugin module {module_name!r} imports {missing!r}, which is not installed here ({exc}). Install "
                "it in this environment, or remove the plugin from the spec's `plugins` list."
            ) from exc
        found = _module_file_near(module_name, spec_dir) if missing == module_name or missing is None else None
        where = (f" Its file is {found}: put {found.parent} on PYTHONPATH (`PYTHONPATH={shell_arg(found.parent)} subsetctl ...`)."
                 if found is not None else " Install the package that provides it, or put the module's folder on "
                 "PYTHONPATH.")
        raise UserError(f"Plugin module {module_name!r} could not be imported: {exc}.{where}") from exc
    except UserError:  # subsetctl refused what it registers (two plugins under one name): says so itself
        raise
    except (Exception, SystemExit) as exc:  # the plugin's own code failed (or exited) while importing
        from subsetctl.plugin_guard import blamed_on_plugin, plugin_frame

        said, where = str(exc), plugin_frame(exc, module_name)
        if isinstance(exc, SyntaxError) and exc.filename:  # "(mine.py, line 3)": the file's name alone
            said, where = str(exc.msg), f" (at {exc.filename}:{exc.lineno})"
        raise blamed_on_plugin(UserError(
            f"Plugin module {module_name!r} raised {type(exc).__name__} while being imported: {said}"
            f"{where}. Fix the plugin, or remove it from the spec's `plugins` list."
        ), exc, module_name) from exc
    if not hasattr(module, attr):
        public = sorted(name for name in vars(module) if not name.startswith("_"))
        close = difflib.get_close_matches(attr, public, n=1, cutoff=0.6)
        raise UserError(
            f"Plugin module {module_name!r} ({getattr(module, '__file__', None) or 'no file'}) has no attribute "
            f"{attr!r}{f' (did you mean {close[0]!r}?)' if close else ''}: write 'plugins: [\"{module_name}:NAME\"]' "
            "with NAME a class or function the module defines (the one it registers)."
        )
    obj = getattr(module, attr)
    _register_named_class(obj, spec)
    return obj


def registers_nothing(spec: str) -> bool:
    """Whether the ``plugins:`` entry ``spec`` (``module:attr``), imported, registered no
    loader, strategy, estimator, projector or packaged model: neither its module's import
    (its decorators, or those of the modules it imports) nor ``attr`` (a named class, see
    :func:`_register_named_class`) nor anything its module defines is registered, so the
    spec can name nothing of it. False where that is not known: the plugins not imported
    (``--no-plugins``), a module that failed to import or lacks ``attr`` (an error of its own)."""
    from subsetctl.registry import ALL_REGISTRIES

    module_name, _, attr = spec.partition(":")
    module = sys.modules.get(module_name)
    if plugins_skipped() or module is None or not hasattr(module, attr) or registered_anything(module_name):
        return False
    obj = getattr(module, attr)
    for registry in ALL_REGISTRIES.values():
        for entry in registry.entries():
            defining = getattr(entry.obj, "__module__", None) or ""
            if entry.obj is obj or defining == module_name or defining.startswith(f"{module_name}."):
                return False
    return True


def _import_registering(module_name: str) -> Any:
    """Import the ``plugins:`` module ``module_name``, recording what it registers, and
    register again what it registered when an earlier spec imported it (Python imports a
    module once, so its decorators do not run a second time)."""
    _refuse_another_projects_module(module_name)
    with importing(module_name), contextlib.redirect_stdout(sys.stderr):  # a print at import must not
        module = importlib.import_module(module_name)  # corrupt --format json
    register_again(module_name)
    return module


def _refuse_another_projects_module(module_name: str) -> None:
    """A UserError when ``module_name``'s package is imported in this process from another
    file than the one a fresh process would import now: another project's plugin of the
    same name (``plugins/my_strategy.py`` in two projects of one notebook). Python would
    hand this spec the other project's code, and its results would be recorded as this
    plugin's."""
    import importlib.machinery

    top = module_name.partition(".")[0]
    loaded = getattr(sys.modules.get(top), "__file__", None)
    if loaded is None:  # not imported yet (or a namespace package: nothing to compare)
        return
    try:
        found = importlib.machinery.PathFinder.find_spec(top)
    except (ImportError, ValueError):
        return
    fresh = getattr(found, "origin", None)
    if fresh is None or not Path(fresh).exists() or Path(fresh).resolve() == Path(loaded).resolve():
        return
    raise UserError(
        f"Plugin module {module_name!r}: this Python process has already imported {top!r} from {loaded}, but this "
        f"spec's is {fresh}. Python imports a module name once, so the spec would run the other file's code. Give "
        "one of the two modules another name, or run this project in a new process (the CLI, or a fresh kernel)."
    )


def unknown_after_failed_imports(exc: UserError, registry: Registry[Any], failed_plugins: list[str]) -> str:
    """The message for a name ``registry`` does not know while ``failed_plugins`` (the
    spec's ``plugins:`` entries that failed to import, as "plugins[i] (module:attr)") are
    broken: most likely one of them would register it, so say that first instead of
    sending the user off to register it again; unless it is a near miss of a registered
    name (random_ensembel), which is a typo. With the plugins not imported on purpose
    (:func:`plugins_not_imported`), such a name is "not checked" instead: no error."""
    if not (failed_plugins and isinstance(exc, UnknownPluginError)):
        return str(exc)
    close = difflib.get_close_matches(exc.name, registry.names(), n=1, cutoff=0.8)
    if plugins_skipped():  # not imported on purpose: whether one registers it is not known
        typo = f" (or a typo of {close[0]!r})" if close else ""
        return (f"{NOT_CHECKED}the {exc.kind} {exc.name!r} is not built in or installed: provided by a plugin not "
                f"imported ({no_plugins_option()}){typo}")
    if close:
        return f"unknown {exc.kind} {exc.name!r}; did you mean {close[0]!r}?"
    return (f"unknown {exc.kind} {exc.name!r}, probably one that {', '.join(failed_plugins)} registers: "
            "that plugin failed to import (see its problem); fix the import first.")


def _module_file_near(module_name: str, spec_dir: Path | None) -> Path | None:
    """The file of module ``module_name`` in ``spec_dir`` or a folder up to two levels
    below it (``plugins/mystrats.py``), if there is one."""
    if spec_dir is None:
        return None
    relative = Path(*module_name.split(".")).with_suffix(".py")
    for pattern in (str(relative), f"*/{relative}", f"*/*/{relative}"):
        found = sorted(Path(spec_dir).glob(pattern))
        if found:
            return found[0].resolve()
    return None


def _article(word: str) -> str:
    """"an" before ``word`` that starts with a vowel ("an estimator"), else "a"."""
    return "an" if word[:1] in "aeiou" else "a"


def _register_named_class(obj: Any, spec: str) -> None:
    """Register a strategy or estimator class named in ``plugins:`` that its module did not
    register itself, under its ``name`` attribute: the spec line says which class is
    meant, so it need not be decorated too. A class without a ``name`` is an error that
    says how to name it; so is one its module registers as the other kind (with the other
    kind's decorator): it was registered as both, or said to have no name."""
    from subsetctl.estimate.base import SubsetEstimator
    from subsetctl.registry import ALL_REGISTRIES
    from subsetctl.search.base import Strategy

    if not isinstance(obj, type):
        return
    for base, registry in ((Strategy, STRATEGIES), (SubsetEstimator, ESTIMATORS)):
        if not issubclass(obj, base) or obj is base:
            continue
        if any(entry.obj is obj for entry in registry.entries()):
            return
        article = _article(registry.kind)
        elsewhere = [(other, entry.name) for other in ALL_REGISTRIES.values() if other is not registry
                     for entry in other.entries() if entry.obj is obj]
        if elsewhere:  # ``@STRATEGIES.register`` on an estimator class, or ``@ESTIMATORS.register`` on a
            other, as_name = elsewhere[0]  # strategy class, whose decorator's name it then had as its own
            raise UserError(
                f"Plugin {spec!r} is {article} {registry.kind} class (it derives from {base.__name__}), but its "
                f"module registers it as {_article(other.kind)} {other.kind}, {as_name!r}: register it with "
                f"`@{registry.variable}.register({as_name!r})` instead of `@{other.variable}.register`."
            )
        name = vars(obj).get("name", "")  # its own: a subclass of a built-in inherits the built-in's name
        if name in registry.names() and registry.origin(name) != f"plugins: {spec}":  # reloaded: replaced
            raise UserError(
                f"Plugin {spec!r} is named {name!r}, like the {registry.kind} from {registry.origin(name)}: "
                "give the class another `name`."
            )
        if not name:
            raise UserError(
                f"Plugin {spec!r} is {article} {registry.kind} class without a name of its own: decorate it with "
                f"`@{registry.variable}.register(\"my_{registry.kind}\")` (from subsetctl.registry import "
                f"{registry.variable}) or give it a class attribute `name = \"my_{registry.kind}\"`."
            )
        registry.add(name, obj, getattr(obj, "description", "") or doc_summary(obj), origin=f"plugins: {spec}",
                     again=True)
        return


def plugin_code_inputs(plugins: list[str], uses: list[tuple[Registry[Any], str]], root: Any = None) -> dict[str, Any]:
    """``{"plugin code": {"strategy best_single": <fingerprint>, ...}}`` for the plugins in
    ``uses`` that are not built in (after importing the spec's ``plugins:``), for a
    stage's fingerprint: editing a plugin's file makes the stages using it stale. Empty
    when every plugin used is built in, so such projects' fingerprints do not change."""
    for spec in plugins:
        try:
            load_plugin_string(spec)
        except UserError:  # validate says why
            pass
    found = {f"{registry.kind} {name}": registry.code_fingerprint(name, root) for registry, name in uses}
    found = {key: value for key, value in found.items() if value is not None}
    return {"plugin code": found} if found else {}
