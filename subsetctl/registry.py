"""Name -> object registries for the pluggable parts of subsetctl.

Built-in plugins register themselves with the ``register`` decorator when their module
is imported. Third-party plugins are found through entry points (for example the group
``subsetctl.strategies``) or named explicitly in a spec's ``plugins:`` list as
``module:attr`` strings. Registries import their built-in modules lazily so that
importing :mod:`subsetctl.registry` stays cheap (no torch).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import re
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, TypeVar

from subsetctl.errors import UnknownPluginError, UserError, shell_arg

T = TypeVar("T")


def doc_summary(obj: Any) -> str:
    """The first paragraph of ``obj``'s docstring as one line for ``subsetctl ls``, with
    Sphinx markup made plain (``:func:`name``` and double backticks become `name`)."""
    first = (getattr(obj, "__doc__", None) or "").strip().split("\n\n")[0]
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", " ".join(first.split()))
    return text.replace("``", "`")


@dataclass
class Entry(Generic[T]):
    """One registered plugin: its name, the object and a one-line description."""

    name: str
    obj: T
    description: str
    origin: str = "built-in"


def _plural(kind: str) -> str:
    """'strategy' -> 'strategies', 'loader' -> 'loaders'."""
    return kind[:-1] + "ies" if kind.endswith("y") else kind + "s"


@dataclass
class Registry(Generic[T]):
    """A registry of one kind of plugin.

    Args:
        kind: human name of the plugin kind, used in error messages ("strategy").
        group: entry-point group third-party packages use to contribute plugins.
        builtin_modules: modules whose import registers the built-in plugins.
    """

    kind: str
    group: str
    builtin_modules: tuple[str, ...] = ()
    #: ``"module:Class"`` every plugin of this kind must subclass (checked by :meth:`get`),
    #: so a function registered as a strategy is the plugin's error, not an internal one
    base: str = ""
    #: registered names that are no answer to "which one?" (the ``plugin`` loader type, which
    #: loads nothing itself): left out of the names an unknown name's error lists or suggests
    not_a_choice: tuple[str, ...] = ()
    _entries: dict[str, Entry[T]] = field(default_factory=dict)
    _broken: dict[str, str] = field(default_factory=dict)  # entry-point name -> why it failed to import
    _replaced: dict[str, str] = field(default_factory=dict)  # built-in name -> the plugin that replaced it
    #: entry points whose name a spec's plugin held when they were read: theirs after the call
    _installed: dict[str, Entry[T]] = field(default_factory=dict)
    _loaded: bool = False
    _builtins_loaded: bool = False

    def register(self, name: str, description: str | None = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; the description defaults to
        the first paragraph of its docstring (a sentence wrapped over lines stays whole)."""

        def decorator(obj: T) -> T:
            text = description or doc_summary(obj)
            self._store(Entry(name=name, obj=obj, description=text, origin=_origin(obj)))
            _label_class(obj, name, text)
            return obj

        return decorator

    def add(self, name: str, obj: T, description: str, origin: str = "built-in", again: bool = False) -> None:
        """Register ``obj`` directly (used for entry points and ``plugins:``); ``again``: see
        :meth:`_store`."""
        self._store(Entry(name=name, obj=obj, description=description, origin=origin), again=again)
        _label_class(obj, name, description)

    def _store(self, entry: Entry[T], again: bool = False) -> None:
        """Register ``entry``. A plugin registered under a built-in's name replaces the
        built-in whatever the import order (the built-ins are loaded first; it is recorded,
        :meth:`replaced`); two plugins from different places under one name are an error
        (which one a spec got depended on the order of imports). A plugin registered while
        a :func:`plugin_scope` is open is taken back when it closes, and remembered for the
        module that registered it (:func:`load_plugin_string` registers it again). ``again``:
        registered for a spec's call by subsetctl itself (that replay, or a class named under
        ``plugins:``), so registered even outside a scope, where a spec's plugin module run
        again by its own code (``importlib.reload``) is only remembered."""
        if entry.origin != "built-in":
            self._load_builtins()  # not the entry points: one may be the very module being imported
        if not again and _is_plugin(entry) and _SCOPE_UNDO.get() is None and _imported_in_a_scope(entry):
            _remember(self, entry)  # importlib.reload of a spec's plugin module, between two runs:
            return  # the next call naming it (``again``) registers this version
        old = self._entries.get(entry.name)
        replaces = old is not None and old.obj is not entry.obj and old.origin != entry.origin
        shadows = (replaces and old is not None and old.origin.startswith("entry point") and _is_plugin(entry)
                   and _SCOPE_UNDO.get() is not None)  # for this call, as when the plugin came first
        if replaces and old is not None and not shadows:
            if old.origin != "built-in" and entry.origin != "built-in":
                raise UserError(
                    f"Two plugins register the {self.kind} {entry.name!r}: {old.origin} and {entry.origin}. "
                    f"Give one of them another name (or list only one of them under plugins:)."
                )
            if old.origin != "built-in":  # a built-in module imported again after a plugin replaced it
                return
        if _is_plugin(entry):
            _remember(self, entry)
            undo = _SCOPE_UNDO.get()
            if undo is not None:
                undo.append(self._restorer(entry))
                defining = getattr(entry.obj, "__module__", None)
                module = sys.modules.get(defining) if isinstance(defining, str) else None
                if getattr(getattr(module, "__spec__", None), "_initializing", False):  # imported in this scope
                    _IMPORTED_IN_A_SCOPE[str(defining)] = module
        if replaces and not shadows:
            self._replaced[entry.name] = entry.origin
        self._entries[entry.name] = entry

    def _restorer(self, coming: Entry[T]) -> Callable[[], None]:
        """A function that undoes the registration of ``coming`` when its scope closes: puts
        the entry registered under its name (and whether it replaced a built-in) back as it
        is now, unless ``coming`` was itself replaced meanwhile by a registration that stays
        (an installed entry point of the same module)."""
        name = coming.name
        entry, replaced = self._entries.get(name), self._replaced.get(name)

        def restore() -> None:
            if self._entries.get(name) is not coming:
                return
            below = entry if entry is not None else self._installed.get(name)  # an entry point read meanwhile
            for table, value in ((self._entries, below), (self._replaced, replaced)):
                if value is None:
                    table.pop(name, None)
                else:
                    table[name] = value  # type: ignore[assignment]

        return restore

    def replaced(self) -> dict[str, str]:
        """Built-in names a plugin has registered again: name -> where that plugin is from."""
        return dict(self._replaced)

    def _load_builtins(self) -> None:
        """Import the modules that register the built-in plugins (once; importing a module
        twice registers nothing more)."""
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        for module in self.builtin_modules:
            importlib.import_module(module)

    def _load(self) -> None:
        """Import the built-in modules, then every installed entry point of the group. An
        entry point that fails to import is recorded (see :meth:`broken`) and skipped: one
        broken third-party package must not stop projects that do not use it."""
        if self._loaded:
            return
        self._loaded = True
        self._load_builtins()
        outside_scope = _SCOPE_UNDO.set(None)  # what an installed module registers as it is imported stays
        try:
            self._load_entry_points()
        finally:
            _SCOPE_UNDO.reset(outside_scope)

    def _load_entry_points(self) -> None:
        """Import every installed entry point of the group (see :meth:`_load`)."""
        values: dict[str, list[str]] = {}
        for ep in entry_points(group=self.group):
            values.setdefault(ep.name, []).append(ep.value)
        for name, found in values.items():
            if len(set(found)) > 1:  # which one wins would depend on the order packages were installed
                self._broken[name] = (
                    f"Two installed packages register the {self.kind} {name!r} (entry points "
                    f"{', '.join(repr(v) for v in sorted(set(found)))} in group {self.group!r}). Uninstall one of them."
                )
        for ep in entry_points(group=self.group):
            taken = self._entries.get(ep.name)
            beneath = taken is not None and _is_plugin(taken) and not self._plugin_of(ep.name, ep.value)
            if ep.name in self._broken or (taken is not None and not beneath and not self._plugin_of(ep.name, ep.value)):
                continue
            try:
                with contextlib.redirect_stdout(sys.stderr):  # a print at import must not corrupt --format json
                    obj = ep.load()
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - the plugin's own code: its author's to fix
                self._broken[ep.name] = (
                    f"The {self.kind} plugin {ep.name!r} (entry point {ep.value!r} in group {self.group!r}) "
                    f"failed to import: {type(exc).__name__}: {exc}. Fix or uninstall that package."
                )
                continue
            if beneath:  # a spec's plugin of another module has the name for its call: the entry point's after it
                self._installed[ep.name] = Entry(ep.name, obj, doc_summary(obj), f"entry point {ep.value}")
                _label_class(obj, ep.name, doc_summary(obj))
                continue
            self.add(ep.name, obj, doc_summary(obj), origin=f"entry point {ep.value}")

    def _plugin_of(self, name: str, value: str) -> bool:
        """Whether ``name`` is registered by a spec's plugin from the module of the entry
        point ``value`` (an installed package also named under ``plugins:``): the entry
        point registers it again, for good, instead of only for that spec's scope."""
        entry = self._entries[name]
        return _is_plugin(entry) and getattr(entry.obj, "__module__", None) == value.partition(":")[0]

    def get(self, name: str) -> T:
        """Return the plugin called ``name``; raise why, if it is an installed plugin that
        failed to import, or an :class:`UnknownPluginError` that lists the registered names."""
        self._load()
        if name in self._entries:
            entry = self._entries[name]
            if self.base and entry.origin != "built-in":
                self._check_kind(entry)
            return entry.obj
        if name in self._broken:
            raise UserError(self._broken[name])
        choices = sorted(n for n in self._entries if n not in self.not_a_choice)
        known = ", ".join(choices) or "(none)"
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownPluginError(
            f"Unknown {self.kind} {name!r}{hint}. Registered {_plural(self.kind)}: {known}. "
            f"Third-party {_plural(self.kind)} register through the entry-point group "
            f"{self.group!r}, or with `@{self.variable}.register({name!r})` (from subsetctl.registry) in a "
            "module named under 'plugins:' in the spec; `subsetctl ls PROJECT` lists what a spec registers.",
            kind=self.kind, name=name,
        )

    def _check_kind(self, entry: Entry[T]) -> None:
        """Refuse a plugin that is not a subclass of :attr:`base`, saying what it is, or a
        subclass that leaves out one of the base's abstract methods (it could not be built:
        the stage using it failed after the stages before it had run, while validate
        passed)."""
        module, _, attr = self.base.partition(":")
        base = getattr(importlib.import_module(module), attr)
        obj = entry.obj
        if isinstance(obj, type) and issubclass(obj, base):
            missing = sorted(getattr(obj, "__abstractmethods__", ()))
            if missing:
                methods = "an abstract method" if len(missing) == 1 else "abstract methods"
                raise UserError(
                    f"The {self.kind} {entry.name!r} ({entry.origin}) is the class {obj.__name__}, which does not "
                    f"define {', '.join(missing)} ({methods} of {module}.{attr}), so it cannot be built; README → "
                    f"Plugins says what each kind of plugin defines. Fix the plugin."
                )
            return
        what = (f"the class {obj.__name__}" if isinstance(obj, type) else
                "a function" if callable(obj) and hasattr(obj, "__code__") else f"an instance of {type(obj).__name__}")
        raise UserError(
            f"The {self.kind} {entry.name!r} ({entry.origin}) is {what}, not a subclass of {module}.{attr}: "
            f"{self.kind} plugins are classes deriving from {attr} (README → Plugins shows one). Fix the plugin."
        )

    @property
    def variable(self) -> str:
        """The name this registry has in :mod:`subsetctl.registry` ("STRATEGIES")."""
        return _plural(self.kind).upper().replace(" ", "_")

    def code_fingerprint(self, name: str, root: Any = None) -> dict[str, Any] | None:
        """The content fingerprint of the file defining plugin ``name``, so that editing a
        plugin makes the stages using it stale; None for built-ins (pinned by subsetctl's
        version) and for names not registered (validate says so)."""
        from subsetctl.filehash import code_fingerprint

        try:
            obj = self.get(name)
        except UserError:
            return None
        return None if self.origin(name) == "built-in" else code_fingerprint(obj, root)

    def origin(self, name: str) -> str:
        """Where the plugin ``name`` comes from: "built-in", "module x.y" or "entry point ..."."""
        self._load()
        return self._entries[name].origin

    def broken(self) -> dict[str, str]:
        """Installed entry points of this kind that failed to import, with the reason."""
        self._load()
        return dict(self._broken)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        self._load()
        return [self._entries[n] for n in sorted(self._entries)]


LOADERS: Registry[Any] = Registry("loader", "subsetctl.loaders", ("subsetctl.data.loaders",), not_a_choice=("plugin",))
PROJECTORS: Registry[Any] = Registry(
    "projector", "subsetctl.projectors", ("subsetctl.gradients.projectors",),
    base="subsetctl.gradients.projectors:Projector",
)
ESTIMATORS: Registry[Any] = Registry(
    "estimator",
    "subsetctl.estimators",
    ("subsetctl.estimate.solvers", "subsetctl.estimate.dynamics", "subsetctl.stages.real_finetune"),
    base="subsetctl.estimate.base:SubsetEstimator",
)
STRATEGIES: Registry[Any] = Registry(
    "strategy", "subsetctl.strategies", ("subsetctl.search.strategies",), base="subsetctl.search.base:Strategy"
)
PACKAGED_MODELS: Registry[Any] = Registry(
    "packaged model", "subsetctl.models", ("subsetctl.modeling.packaged",)
)

def fine_tunes_for_real(estimator: str) -> bool:
    """Whether the registered estimator ``estimator`` needs the model (``needs_model``,
    e.g. ``true_finetune``: a real fine-tune per subset) rather than the cached features;
    False for a name not registered (validate reports it as unknown)."""
    try:
        return bool(getattr(ESTIMATORS.get(estimator), "needs_model", False))
    except UserError:  # not registered, or not an estimator class: validate says so
        return False


#: the undo steps of the open :func:`plugin_scope` (None: no scope, registrations stay)
_SCOPE_UNDO: ContextVar[list[Callable[[], None]] | None] = ContextVar("subsetctl_plugin_scope", default=None)
#: the ``plugins:`` modules :func:`load_plugin_string` is importing (innermost last)
_IMPORTING: ContextVar[tuple[str, ...]] = ContextVar("subsetctl_importing_plugins", default=())
#: module name -> the plugin entries it registered, with that module's object when they were
#: recorded (a module imported afresh, a new object, registers anew: older entries are stale)
_REGISTERED_BY: dict[str, dict[tuple[str, str], tuple[Any, Registry[Any], Entry[Any]]]] = {}


#: module name -> that module's object, for the modules whose registrations were made in a
#: :func:`plugin_scope` (a spec's ``plugins:`` and what they import): what one registers
#: when it runs again outside a scope (``importlib.reload``) is kept for the next call naming it
_IMPORTED_IN_A_SCOPE: dict[str, Any] = {}


def _imported_in_a_scope(entry: Entry[Any]) -> bool:
    """Whether ``entry``'s module is one whose registrations are made in a scope only: its
    first import was in one, and it is still that module (not imported afresh since, after
    being dropped from ``sys.modules``, say by a notebook's own ``import`` of it)."""
    defining = getattr(entry.obj, "__module__", None)
    if not isinstance(defining, str) or defining not in _IMPORTED_IN_A_SCOPE:
        return False
    return _IMPORTED_IN_A_SCOPE[defining] is sys.modules.get(defining) is not None


def _is_plugin(entry: Entry[Any]) -> bool:
    """Whether ``entry`` comes from a module (a spec's ``plugins:``, a notebook's cell), not
    from subsetctl itself or an installed package's entry point, which every project sees."""
    return entry.origin != "built-in" and not entry.origin.startswith("entry point")


def _remember(registry: Registry[Any], entry: Entry[Any]) -> None:
    """Record ``entry`` for the module defining its object and for each ``plugins:`` module
    being imported, so that naming either in a later spec registers it again."""
    defining = getattr(entry.obj, "__module__", None)
    for module in {*_IMPORTING.get(), *([defining] if isinstance(defining, str) else [])}:
        _REGISTERED_BY.setdefault(module, {})[(registry.kind, entry.name)] = (sys.modules.get(module), registry, entry)


def _register_again(module_name: str) -> None:
    """Register once more what ``module_name`` registered when it was imported (by this or
    an earlier spec: Python imports a module once, so its decorators do not run again), and
    what the plugin modules that importing it imports registered: its parent packages, and
    those it refers to (``import helpers``, ``from helpers import Base``). Another spec may
    have imported those first, so ``module_name``'s own import registered nothing of theirs,
    where a fresh process would have. A package's submodules are left out (a package has
    each one it ever imported as an attribute, whoever imported it)."""
    parts = module_name.split(".")
    todo = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        current = sys.modules.get(name)
        for module, registry, entry in list(_REGISTERED_BY.get(name, {}).values()):
            if module is current:
                registry._store(entry, again=True)
        todo += [used for used in _modules_used_by(current) if used in _REGISTERED_BY and used not in seen]


def _modules_used_by(module: Any) -> set[str]:
    """The names of the modules ``module``'s globals are or come from (a module it
    imported, a class or function it imported from one), less its own submodules."""
    import types

    own = f"{getattr(module, '__name__', '')}."
    used: set[str] = set()
    for value in list(vars(module).values()) if module is not None else []:
        if isinstance(value, types.ModuleType):
            used.add(value.__name__)
        elif isinstance(value, (type, types.FunctionType)) and isinstance(value.__module__, str):
            used.add(value.__module__)
    return {name for name in used if not name.startswith(own)}


@contextlib.contextmanager
def plugin_scope() -> Iterator[None]:
    """Registrations of plugins made inside (a spec's ``plugins:`` imported by a run, plan,
    validate or ls) are taken back on leaving, so that in one process (a notebook) the next
    project sees only its own plugins: one without ``plugins:`` no longer finds another's,
    and two projects whose plugins register one name can both run. A scope opened inside
    another one is part of it. Built-ins and installed entry points stay registered."""
    if _SCOPE_UNDO.get() is not None:
        yield
        return
    undo: list[Callable[[], None]] = []
    token = _SCOPE_UNDO.set(undo)
    try:
        yield
    finally:
        _SCOPE_UNDO.reset(token)
        for step in reversed(undo):
            step()


ALL_REGISTRIES: dict[str, Registry[Any]] = {
    "loaders": LOADERS,
    "strategies": STRATEGIES,
    "estimators": ESTIMATORS,
    "projectors": PROJECTORS,
    "models": PACKAGED_MODELS,
}


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
        raise UserError(f"Plugin {spec!r} must look like 'package.module:attr'.")
    try:
        module = _import_registering(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
        if missing and missing != module_name and not module_name.startswith(f"{missing}."):
            raise UserError(  # the plugin was found; something it imports is not installed
                f"Plugin module {module_name!r} imports {missing!r}, which is not installed here ({exc}). Install "
                "it in this environment, or remove the plugin from plugins:."
            ) from exc
        found = _module_file_near(module_name, spec_dir) if missing == module_name or missing is None else None
        where = (f" Its file is {found}: put {found.parent} on PYTHONPATH (`PYTHONPATH={shell_arg(found.parent)} subsetctl ...`)."
                 if found is not None else " Install the package that provides it, or put the module's folder on "
                 "PYTHONPATH.")
        raise UserError(f"Plugin module {module_name!r} could not be imported: {exc}.{where}") from exc
    except UserError:  # subsetctl refused what it registers (two plugins under one name): says so itself
        raise
    except (Exception, SystemExit) as exc:  # the plugin's own code failed (or exited) while importing
        raise UserError(
            f"Plugin module {module_name!r} raised {type(exc).__name__} while being imported: {exc}. "
            "Fix the plugin or remove it from plugins:."
        ) from exc
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


def _import_registering(module_name: str) -> Any:
    """Import the ``plugins:`` module ``module_name``, recording what it registers, and
    register again what it registered when an earlier spec imported it (Python imports a
    module once, so its decorators do not run a second time)."""
    _refuse_another_projects_module(module_name)
    importing = _IMPORTING.set((*_IMPORTING.get(), module_name))
    try:
        with contextlib.redirect_stdout(sys.stderr):  # a print at import must not corrupt --format json
            module = importlib.import_module(module_name)
    finally:
        _IMPORTING.reset(importing)
    _register_again(module_name)
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
    name (random_ensembel), which is a typo."""
    if not (failed_plugins and isinstance(exc, UnknownPluginError)):
        return str(exc)
    close = difflib.get_close_matches(exc.name, registry.names(), n=1, cutoff=0.8)
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


def _register_named_class(obj: Any, spec: str) -> None:
    """Register a strategy or estimator class named in ``plugins:`` that its module did not
    register itself, under its ``name`` attribute: the spec line says which class is
    meant, so it need not be decorated too. A class without a ``name`` is an error that
    says how to name it."""
    from subsetctl.estimate.base import SubsetEstimator
    from subsetctl.search.base import Strategy

    if not isinstance(obj, type):
        return
    for base, registry in ((Strategy, STRATEGIES), (SubsetEstimator, ESTIMATORS)):
        if not issubclass(obj, base) or obj is base:
            continue
        if any(entry.obj is obj for entry in registry.entries()):
            return
        name = vars(obj).get("name", "")  # its own: a subclass of a built-in inherits the built-in's name
        if name in registry.names() and registry.origin(name) != f"plugins: {spec}":  # reloaded: replaced
            raise UserError(
                f"Plugin {spec!r} is named {name!r}, like the {registry.kind} from {registry.origin(name)}: "
                "give the class another `name`."
            )
        if not name:
            raise UserError(
                f"Plugin {spec!r} is a {registry.kind} class without a name of its own: decorate it with "
                f"`@{registry.variable}.register(\"my_{registry.kind}\")` (from subsetctl.registry import "
                f"{registry.variable}) or give it a class attribute `name = \"my_{registry.kind}\"`."
            )
        registry.add(name, obj, getattr(obj, "description", "") or doc_summary(obj), origin=f"plugins: {spec}",
                     again=True)
        return


def _origin(obj: Any) -> str:
    """ "built-in" for subsetctl's own plugins, else the module that registered ``obj``
    (for a ``functools.partial``, the module of the function it calls)."""
    import functools

    while isinstance(obj, functools.partial):
        obj = obj.func
    module = getattr(obj, "__module__", None) or ""
    return "built-in" if module == "subsetctl" or module.startswith("subsetctl.") else f"module {module}"


def _label_class(obj: Any, name: str, description: str) -> None:
    """Give a registered class that declares ``name``/``description`` attributes but leaves
    them empty (e.g. a Strategy subclass) the registered ones, so each is written once."""
    if not isinstance(obj, type):
        return
    for attr, value in (("name", name), ("description", description)):
        if hasattr(obj, attr) and not getattr(obj, attr) and attr not in vars(obj):
            setattr(obj, attr, value)


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
