"""Name -> object registries for the pluggable parts of subsetctl.

Built-in plugins register themselves with the ``register`` decorator when their module
is imported. Third-party plugins are found through entry points (for example the group
``subsetctl.strategies``) or named explicitly in a spec's ``plugins:`` list as
``module:attr`` strings (imported by :mod:`subsetctl.plugin_loading`; which of their
registrations a spec's call sees is :mod:`subsetctl.plugin_scoping`'s concern). Registries import their built-in modules lazily so that
importing :mod:`subsetctl.registry` stays cheap (no torch).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from subsetctl.errors import UnknownPluginError, UserError
from subsetctl.plugin_scoping import (
    imported_in_a_scope,
    is_plugin,
    note_first_import,
    outside_scope,
    remember,
    scope_undo,
)

T = TypeVar("T")


def doc_summary(obj: Any) -> str:
    """The first paragraph of ``obj``'s docstring as one line for ``subsetctl ls``, with
    Sphinx markup made plain (``:func:`name``` and double backticks become `name`); for an
    object (not a class) with a ``description`` of its own, that (a packaged model's
    docstring is its class's, the same for every model)."""
    own = getattr(obj, "description", None)
    if not isinstance(obj, type) and isinstance(own, str) and own.strip():
        return " ".join(own.split())
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
    #: the installed package that declares its entry point, "name version" (None: a built-in,
    #: a module under ``plugins:``, or an entry point of no known package)
    package: str | None = None


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
    #: ``"module:Class"`` every plugin of this kind must be an instance of (checked by
    #: :meth:`get`): plugins that are objects, not classes (packaged models)
    instance_of: str = ""
    #: registered names that are no answer to "which one?" (the ``plugin`` loader type, which
    #: loads nothing itself): left out of the names an unknown name's error lists or suggests
    not_a_choice: tuple[str, ...] = ()
    #: methods of :attr:`base` that subsetctl calls on every plugin of this kind (``run``), so
    #: a plugin's own must take the base's arguments (checked by :meth:`get`: a ``run(self,
    #: estimator)`` failed only at the search, after the model stages had run)
    called: tuple[str, ...] = ()
    #: the arguments subsetctl calls every function plugin of this kind with, positionally (a
    #: loader's ``(options, ctx)``), checked by :meth:`get`: a ``def load(options)`` passed
    #: validate and failed only at the data stage
    call_as: tuple[str, ...] = ()
    #: the arguments subsetctl builds every plugin class of this kind with, positional ones
    #: then keyword ones written ``"lam="`` (an estimator's ``cls(features, lam=...)``), checked by
    #: :meth:`get` (not for a class built from the stage context instead, ``needs_model``): an
    #: ``__init__(self, features)`` passed validate and failed at calibrate or the search (a
    #: projector's ``__init__(self, p, d)``, at the gradients stage; a strategy, built as
    #: ``cls()``, with an ``__init__(self, k)``, at the search). None: not checked
    built_with: tuple[str, ...] | None = None
    _entries: dict[str, Entry[T]] = field(default_factory=dict)
    _broken: dict[str, str] = field(default_factory=dict)  # entry-point name -> why it failed to import
    _broken_origins: dict[str, str] = field(default_factory=dict)  # entry-point name -> where it comes from
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
            _refuse_a_hidden_class(obj, f"{self.kind} {name!r}", sys._getframe(1))
            self._store(Entry(name=name, obj=obj, description=text, origin=_origin(obj)))
            _label_class(obj, name, text)
            return obj

        return decorator

    def add(self, name: str, obj: T, description: str, origin: str = "built-in", again: bool = False,
            package: str | None = None) -> None:
        """Register ``obj`` directly (used for entry points and ``plugins:``); ``again``: see
        :meth:`_store`; ``package``: see :attr:`Entry.package`."""
        self._store(Entry(name=name, obj=obj, description=description, origin=origin, package=package), again=again)
        _label_class(obj, name, description)

    def _store(self, entry: Entry[T], again: bool = False) -> None:
        """Register ``entry``. A plugin registered under a built-in's name replaces the
        built-in whatever the import order (the built-ins are loaded first; it is recorded,
        :meth:`replaced`); two plugins from different places under one name are an error
        (which one a spec got depended on the order of imports). A plugin registered while
        a :func:`~subsetctl.plugin_scoping.plugin_scope` is open is taken back when it closes, and remembered for the
        module that registered it (:func:`~subsetctl.plugin_loading.load_plugin_string` registers it again). ``again``:
        registered for a spec's call by subsetctl itself (that replay, or a class named under
        ``plugins:``), so registered even outside a scope, where a spec's plugin module run
        again by its own code (``importlib.reload``) is only remembered."""
        if entry.origin != "built-in":
            self._load_builtins()  # not the entry points: one may be the very module being imported
        if not again and is_plugin(entry) and scope_undo() is None and imported_in_a_scope(entry):
            remember(self, entry)  # importlib.reload of a spec's plugin module, between two runs:
            return  # the next call naming it (``again``) registers this version
        old = self._entries.get(entry.name)
        replaces = old is not None and old.obj is not entry.obj and old.origin != entry.origin
        shadows = (replaces and old is not None and old.origin.startswith("entry point") and is_plugin(entry)
                   and scope_undo() is not None)  # for this call, as when the plugin came first
        if old is not None and entry.origin != "built-in" and _two_of_one_module(old.obj, entry.obj):
            file = _origin_file(entry.origin)  # (the module is in sys.modules while it is imported)
            raise UserError(
                f"{entry.origin}{f' ({file})' if file else ''} registers the {self.kind} {entry.name!r} twice, as "
                f"{old.obj.__qualname__} and "
                f"{entry.obj.__qualname__}: give one of them another name (only the last one would be used)."
            )
        if replaces and old is not None and not shadows:
            if old.origin != "built-in" and entry.origin != "built-in":
                raise UserError(
                    f"Two plugins register the {self.kind} {entry.name!r}: {old.origin} and {entry.origin}. "
                    f"Give one of them another name (or list only one of them under plugins:)."
                )
            if old.origin != "built-in":  # a built-in module imported again after a plugin replaced it
                return
        if is_plugin(entry):
            remember(self, entry)
            undo = scope_undo()
            if undo is not None:
                undo.append(self._restorer(entry))
                note_first_import(entry)
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
        try:
            for module in self.builtin_modules:
                importlib.import_module(module)
        except BaseException:  # (a notebook's interrupt): the next call imports what is missing, not
            self._builtins_loaded = False  # "Registered estimators: (none)" for the rest of the process
            raise

    def _load(self) -> None:
        """Import the built-in modules, then every installed entry point of the group. An
        entry point that fails to import is recorded (see :meth:`broken`) and skipped: one
        broken third-party package must not stop projects that do not use it."""
        if self._loaded:
            return
        self._loaded = True
        try:
            self._load_builtins()
        except BaseException:  # (an interrupt: see _load_builtins)
            self._loaded = False
            raise
        with outside_scope():  # what an installed module registers as it is imported stays
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        """Import every installed entry point of the group (see :meth:`_load`)."""
        installed = list(entry_points(group=self.group))  # (each scan reads every package's metadata)
        values: dict[str, dict[str, str | None]] = {}  # name -> entry point value -> its distribution
        for ep in installed:
            values.setdefault(ep.name, {})[ep.value] = distribution_of(ep)
        for name, found in values.items():
            if len(found) > 1:  # which one wins would depend on the order packages were installed
                listed = ", ".join(f"{value!r}{f' of {found[value]}' if found[value] else ''}" for value in sorted(found))
                packages = sorted({dist.split()[0] for dist in found.values() if dist})
                how = f" (`pip uninstall {packages[0]}` or `pip uninstall {packages[1]}`)" if len(packages) == 2 else ""
                self._broken_origins[name] = f"entry points {', '.join(sorted(found))}"
                self._broken[name] = (
                    f"Two installed packages register the {self.kind} {name!r} (entry points "
                    f"{listed}; group {self.group!r}). Uninstall one of them{how}."
                )
        for ep in installed:
            taken = self._entries.get(ep.name)
            beneath = taken is not None and is_plugin(taken) and not self._plugin_of(ep.name, ep.value)
            built_in = taken is not None and taken.origin == "built-in"  # replaced by it, as validate says
            if ep.name in self._broken or (taken is not None and not beneath and not built_in
                                           and not self._plugin_of(ep.name, ep.value)):
                continue
            try:
                with contextlib.redirect_stdout(sys.stderr):  # a print at import must not corrupt --format json
                    obj = ep.load()
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - the plugin's own code: its author's to fix
                from subsetctl.plugin_guard import plugin_frame

                dist = values[ep.name][ep.value]
                of, how = (f" of {dist}", f" (`pip uninstall {dist.split()[0]}`)") if dist else ("", "")
                self._broken_origins[ep.name] = _origin_of_entry_point(ep.value, dist)
                self._broken[ep.name] = (
                    f"The {self.kind} plugin {ep.name!r} (entry point {ep.value!r}{of} in group {self.group!r}) "
                    f"failed to import: {type(exc).__name__}: {exc}{plugin_frame(exc, ep.value.partition(':')[0])}. "
                    f"Fix or uninstall that package{how}."
                )
                continue
            package = values[ep.name][ep.value]  # (its metadata read once, above)
            origin = _origin_of_entry_point(ep.value, package)
            registered = self._entries.get(ep.name)  # by the module's own decorator, as it was imported
            description = registered.description if registered is not None and registered.obj is obj else doc_summary(obj)
            if beneath:  # a spec's plugin of another module has the name for its call: the entry point's after it
                self._installed[ep.name] = Entry(ep.name, obj, description, origin, package)
                _label_class(obj, ep.name, description)
                continue
            self.add(ep.name, obj, description, origin=origin, package=package)

    def _plugin_of(self, name: str, value: str) -> bool:
        """Whether ``name`` is registered by a spec's plugin from the module of the entry
        point ``value`` (an installed package also named under ``plugins:``): the entry
        point registers it again, for good, instead of only for that spec's scope."""
        entry = self._entries[name]
        return is_plugin(entry) and getattr(entry.obj, "__module__", None) == value.partition(":")[0]

    def get(self, name: str) -> T:
        """Return the plugin called ``name``; raise why, if it is an installed plugin that
        failed to import, or an :class:`UnknownPluginError` that lists the registered names."""
        self._load()
        if name in self._entries:
            entry = self._entries[name]
            if self.base and entry.origin != "built-in":
                self._check_kind(entry)
            if self.instance_of and entry.origin != "built-in":
                self._check_instance(entry)
            if self.call_as and entry.origin != "built-in":
                self._check_call(entry)
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
                    f"The {self.kind} {entry.name!r} ({self.described(entry.name)}) is the class {obj.__name__}, which does not "
                    f"define {', '.join(missing)} ({methods} of {module}.{attr}), so it cannot be built; README → "
                    f"Plugins says what each kind of plugin defines. Fix the plugin."
                )
            mismatches = [_call_mismatch(obj, base, method) for method in self.called]
            if self.built_with is not None and not getattr(obj, "needs_model", False):
                positional = [arg for arg in self.built_with if not arg.endswith("=")]
                keywords = [arg.removesuffix("=") for arg in self.built_with if arg.endswith("=")]
                built = _signature_mismatch(obj, obj.__name__, positional, keywords)
                mismatches.insert(0, built and f"constructor {built}")
            for mismatch in mismatches:
                if mismatch:
                    raise UserError(
                        f"The {self.kind} {entry.name!r} ({self.described(entry.name)}) is the class {obj.__name__}, "
                        f"whose {mismatch}; README → Plugins shows one. Fix the plugin."
                    )
            return
        what = (f"the class {obj.__name__}" if isinstance(obj, type) else
                "a function" if callable(obj) and hasattr(obj, "__code__") else f"an instance of {type(obj).__name__}")
        raise UserError(
            f"The {self.kind} {entry.name!r} ({self.described(entry.name)}) is {what}, not a subclass of {module}.{attr}: "
            f"{self.kind} plugins are classes deriving from {attr} (README → Plugins shows one). Fix the plugin."
        )

    def _check_call(self, entry: Entry[T]) -> None:
        """Refuse a function plugin that cannot be called as subsetctl calls it
        (:attr:`call_as`), or is not callable at all, naming its file, the function and the
        signature it needs: it failed only when the stage calling it ran, after validate
        passed."""
        obj = entry.obj
        what = getattr(obj, "__name__", None) or type(obj).__name__
        if not callable(obj):
            problem = (f"is a {type(obj).__name__} object, not a function: a {self.kind} is called as "
                       f"load({', '.join(self.call_as)})")
        else:
            mismatch = _signature_mismatch(obj, what, list(self.call_as))
            if mismatch is None:
                return
            kind = "the class" if isinstance(obj, type) else "the function" if hasattr(obj, "__code__") else "the object"
            problem = f"is {kind} {what}, whose {mismatch}"
        raise UserError(
            f"The {self.kind} {entry.name!r} ({self.described(entry.name)}) {problem}; README → Plugins shows "
            f"one. Fix the plugin."
        )

    def _check_instance(self, entry: Entry[T]) -> None:
        """Refuse a plugin that is not an instance of :attr:`instance_of`, or one whose own
        ``name`` is not the name it is registered under (a spec naming it would find it, and
        its cached files would be kept under the other name), saying what it is: it failed
        later, with an AttributeError, in the stage that used it."""
        module, _, attr = self.instance_of.partition(":")
        expected = getattr(importlib.import_module(module), attr)
        obj = entry.obj
        if not isinstance(obj, expected):
            what = f"the class {obj.__name__}" if isinstance(obj, type) else f"an instance of {type(obj).__name__}"
            raise UserError(
                f"The {self.kind} {entry.name!r} ({entry.origin}) is {what}, not a {module}.{attr}: {self.kind} "
                f"plugins are {attr} objects (README → Plugins shows one). Fix the plugin."
            )
        own = getattr(obj, "name", entry.name)
        if own != entry.name:
            raise UserError(
                f"The {self.kind} {entry.name!r} ({entry.origin}) is a {attr} named {own!r}: register it under "
                f"its own name (or give it the name {entry.name!r}). Fix the plugin."
            )

    @property
    def variable(self) -> str:
        """The name this registry has in :mod:`subsetctl.registry` ("STRATEGIES")."""
        return _plural(self.kind).upper().replace(" ", "_")

    def code_fingerprint(self, name: str, root: Any = None) -> dict[str, Any] | None:
        """The content fingerprint of the file defining plugin ``name``, so that editing a
        plugin makes the stages using it stale, with the digest of its package's other
        modules (``package_files``: its helpers; see
        :func:`~subsetctl.filehash.package_code_fingerprint`), the files of the classes it
        inherits from outside them (``base_classes``: see
        :func:`~subsetctl.filehash.base_class_code_fingerprints`) and, for an installed one, its
        package and version (``"package": "myplug 0.2.0"``: a new release also changes
        what no file of it shows, data it ships); None for built-ins (pinned by subsetctl's
        version) and for names not registered (validate says so), but those a plugin not
        imported may register (``--no-plugins``): :func:`~subsetctl.plugin_loading.code_not_imported`,
        so that ``plan`` says it cannot tell."""
        from subsetctl.filehash import (
            base_class_code_fingerprints,
            code_fingerprint,
            package_code_fingerprint,
        )
        from subsetctl.plugin_loading import code_not_imported, plugins_skipped

        try:
            obj = self.get(name)
        except UnknownPluginError:
            return code_not_imported(self.kind, name) if plugins_skipped() else None
        except UserError:
            return None
        if self.origin(name) == "built-in":
            return None
        code = code_fingerprint(obj, root)
        more = {key: value for key, value in (("package_files", package_code_fingerprint(obj, root)),
                                              ("base_classes", base_class_code_fingerprints(obj, root)),
                                              ("package", self.package(name))) if value is not None}
        return {**(code or {}), **more} if more else code

    def package(self, name: str) -> str | None:
        """The installed package (``"myplug 0.2.0"``) that declares the plugin ``name``'s
        entry point; None for any other plugin (see :attr:`Entry.package`)."""
        self._load()
        entry = self._entries.get(name)
        return None if entry is None else entry.package

    def origin(self, name: str) -> str:
        """Where the plugin ``name`` comes from: "built-in", "module x.y" or "entry point ..."."""
        self._load()
        return self._entries[name].origin

    def described(self, name: str) -> str:
        """:meth:`origin` for a message about the plugin ``name``: with the file of a spec's
        ``plugins:`` module, "module best_single, /work/plugins/best_single.py",
        which is where its author looks (a module name alone may be another file of that name
        found first on ``PYTHONPATH``); the same as :meth:`origin` for any other plugin, so
        ``== "built-in"`` still tells a built-in."""
        origin = self.origin(name)
        file = _origin_file(origin)
        return f"{origin}, {file}" if file else origin

    def broken(self) -> dict[str, str]:
        """Installed entry points of this kind that failed to import, with the reason."""
        self._load()
        return dict(self._broken)

    def broken_summary(self, name: str) -> str:
        """What is wrong with the broken entry point ``name`` (see :meth:`broken`), in a few
        words for `ls` and `doctor`: "registered twice" or "failed to import"."""
        return "registered twice" if self.broken()[name].startswith("Two installed packages") else "failed to import"

    def broken_origin(self, name: str) -> str:
        """Where the broken plugin ``name`` (see :meth:`broken`) comes from, for `ls`: "entry
        point mod:Attr of myplug 0.1.0", or the packages of two that register one name."""
        self._load()
        return self._broken_origins.get(name, "entry point")

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        self._load()
        return [self._entries[n] for n in sorted(self._entries)]


LOADERS: Registry[Any] = Registry("loader", "subsetctl.loaders", ("subsetctl.data.loaders",), not_a_choice=("plugin",),
                                  call_as=("options", "ctx"))
PROJECTORS: Registry[Any] = Registry(
    "projector", "subsetctl.projectors", ("subsetctl.gradients.projectors",),
    base="subsetctl.gradients.projectors:Projector", built_with=("p=", "d=", "seed=", "memory_budget_mb="),
)
ESTIMATORS: Registry[Any] = Registry(
    "estimator",
    "subsetctl.estimators",
    ("subsetctl.estimate.solvers", "subsetctl.estimate.dynamics", "subsetctl.stages.real_finetune"),
    base="subsetctl.estimate.base:SubsetEstimator", called=("estimate",), built_with=("features", "lam="),
)
STRATEGIES: Registry[Any] = Registry(
    "strategy", "subsetctl.strategies", ("subsetctl.search.strategies",), base="subsetctl.search.base:Strategy",
    called=("run",), built_with=(),
)
PACKAGED_MODELS: Registry[Any] = Registry(
    "packaged model", "subsetctl.models", ("subsetctl.modeling.packaged",),
    instance_of="subsetctl.modeling.packaged:PackagedModel",
)

def fine_tunes_for_real(estimator: str) -> bool:
    """Whether the registered estimator ``estimator`` needs the model (``needs_model``,
    e.g. ``true_finetune``: a real fine-tune per subset) rather than the cached features;
    False for a name not registered (validate reports it as unknown)."""
    try:
        return bool(getattr(ESTIMATORS.get(estimator), "needs_model", False))
    except UserError:  # not registered, or not an estimator class: validate says so
        return False


ALL_REGISTRIES: dict[str, Registry[Any]] = {
    "loaders": LOADERS,
    "strategies": STRATEGIES,
    "estimators": ESTIMATORS,
    "projectors": PROJECTORS,
    "models": PACKAGED_MODELS,
}


def registry_named(word: str) -> str | None:
    """The key of :data:`ALL_REGISTRIES` that ``word`` names, plural or singular, in any case
    (``loaders``, ``Strategy``): a kind a user typed where a command takes a folder (`ls loaders`,
    `doctor loaders`), which was looked for as a folder and `subsetctl init` of it advised; None
    for any other word."""
    word = word.strip().lower()
    return next((kind for kind in ALL_REGISTRIES
                 if word in (kind, kind[:-3] + "y" if kind.endswith("ies") else kind[:-1])), None)


def installed_entry_points(group: str) -> dict[str, Any]:
    """The installed entry points of ``group`` by name (one of each; a name two packages
    register is :meth:`Registry.broken`)."""
    return {ep.name: ep for ep in entry_points(group=group)}


def distribution_of(ep: Any) -> str | None:
    """The installed package that declares the entry point ``ep``, as "name version"
    (``myplug 0.2.0``): what to uninstall or upgrade, which its module path does not say;
    None when it is not known (an entry point made by hand)."""
    dist = getattr(ep, "dist", None)
    try:
        name, version = dist.name, dist.version  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - no distribution, or one whose METADATA cannot be read
        return None
    return f"{name} {version}" if name else None


def entry_point_origin(ep: Any) -> str:
    """Where a plugin from the entry point ``ep`` comes from, for `ls` and messages:
    "entry point myplug.strategies:TopK of myplug 0.2.0" (the package and its version
    when known)."""
    return _origin_of_entry_point(ep.value, distribution_of(ep))


def _origin_of_entry_point(value: str, dist: str | None) -> str:
    """:func:`entry_point_origin` of the entry point ``value`` of the package ``dist``."""
    return f"entry point {value}" + (f" of {dist}" if dist else "")


def _origin(obj: Any) -> str:
    """ "built-in" for subsetctl's own plugins, else the module that registered ``obj``
    (for a ``functools.partial``, the module of the function it calls)."""
    import functools

    while isinstance(obj, functools.partial):
        obj = obj.func
    module = getattr(obj, "__module__", None) or ""
    return "built-in" if module == "subsetctl" or module.startswith("subsetctl.") else f"module {module}"


def _origin_file(origin: str) -> str | None:
    """The file of the module a plugin's ``origin`` names ("module best_single", or a
    ``plugins:`` entry's "plugins: best_single:BestSingle"), where its author looks (a module
    name alone may be another file of that name found first on ``PYTHONPATH``); None for any
    other origin, or a module not imported."""
    if origin.startswith("module "):  # registered by a decorator as its module was imported
        module = origin.removeprefix("module ")
    elif origin.startswith("plugins: "):  # a class named under plugins: ("plugins: mod:Attr")
        module = origin.removeprefix("plugins: ").partition(":")[0]
    else:
        return None
    return getattr(sys.modules.get(module), "__file__", None)


#: :func:`_refuse_a_hidden_class`: for each module, the code object of its latest run that
#: registered a class, and the classes that run registered: class name -> (class, "strategy
#: 'x'", line). The code object is kept (not its id): a reloaded module runs a new one.
_CLASSES_OF_A_RUN: dict[str, tuple[Any, dict[str, tuple[Any, str, int]]]] = {}


def _refuse_a_hidden_class(obj: Any, registered_as: str, frame: Any) -> None:
    """Refuse a second class of one name that one run of a module registers (``class Est``
    twice, decorated as the estimators 'a' and 'b', or twice as 'a'; not two strategies, loaders
    or projectors under two names: a loop defining ``class TopN`` for 'top2' and 'top3' works,
    as they are never pickled): the second hides the
    first at module level, so the first is not what ``module:Est`` names (under
    ``plugins:``), pickle finds for loky's workers ("cannot be pickled ... keep lambdas out"),
    or, under one registered name, used at all (the last one won without a word, taken for
    the module reloaded). ``frame``: where the decorator was applied; only a module's own top
    level is followed (its code object tells one run from the next, a reload)."""
    if not isinstance(obj, type) or frame is None or frame.f_code.co_name != "<module>":
        return
    module = getattr(obj, "__module__", None)
    if not module or frame.f_globals.get("__name__") != module:
        return
    code, seen = _CLASSES_OF_A_RUN.get(module, (None, {}))
    if code is not frame.f_code:  # the module's first class registered in this run
        code, seen = frame.f_code, {}
        _CLASSES_OF_A_RUN[module] = (code, seen)
    earlier = seen.get(obj.__qualname__)
    # under two names, only an estimator's is lost (pickled by module and name for loky's workers): strategies,
    # loaders and projectors stay in the main process, where a loop registering one class per name is fine
    pickled = registered_as.startswith("estimator ")
    if earlier is not None and earlier[0] is not obj and (pickled or earlier[1] == registered_as):
        file = getattr(sys.modules.get(module), "__file__", None) or frame.f_code.co_filename
        raise UserError(
            f"module {module} ({file}) defines two classes named {obj.__qualname__}, registered as the "
            f"{earlier[1]} (line {earlier[2]}) and the {registered_as} (line {frame.f_lineno}): the second hides "
            f"the first at module level, so the first cannot be named as {module}:{obj.__qualname__} (under "
            "plugins:) or pickled for loky's worker processes"
            f"{', and only the second would be used' if earlier[1] == registered_as else ''}. Give one of "
            "them another class name."
        )
    seen[obj.__qualname__] = (obj, registered_as, frame.f_lineno)


def _two_of_one_module(old: Any, new: Any) -> bool:
    """Whether ``old`` and ``new`` are two different classes or functions of one module (a
    copy-pasted decorator), not one defined again (its module reloaded, or run twice)."""
    if old is new:
        return False
    module, name = getattr(new, "__module__", None), getattr(new, "__qualname__", None)
    return (module is not None and name is not None and getattr(old, "__module__", None) == module
            and getattr(old, "__qualname__", None) not in (None, name))


def _signature_mismatch(fn: Any, label: str, positional: list[str], keywords: list[str] | None = None) -> str | None:
    """Why ``fn`` cannot be called with the arguments ``positional`` (by position) and
    ``keywords`` (by name): "load(options) cannot be called as load(options, ctx): too many
    positional arguments" (``label`` names it there); None when it can, or when its
    signature cannot be read (a builtin: let the call tell)."""
    import inspect

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    keywords = keywords or []
    try:
        signature.bind(*positional, **dict.fromkeys(keywords))
    except TypeError as exc:
        wanted = ", ".join([*positional, *(f"{k}=..." for k in keywords)])
        return f"{label}{signature} cannot be called as {label}({wanted}): {exc}"
    return None


def _call_mismatch(cls: type, base: type, method: str) -> str | None:
    """Why ``cls.<method>`` cannot be called as subsetctl calls ``base.<method>`` (with the
    base's parameters, positionally): "run(self, estimator) cannot be called as
    run(self, estimator, context, params): too many positional arguments"; None when it
    can, or when either is no plain function."""
    import inspect

    own, expected = inspect.getattr_static(cls, method, None), inspect.getattr_static(base, method, None)
    if not (inspect.isfunction(own) and inspect.isfunction(expected)) or own is expected:
        return None
    wanted = inspect.signature(expected)
    try:
        inspect.signature(own).bind(*wanted.parameters)
    except TypeError as exc:
        return (f"{method}{inspect.signature(own)} cannot be called as {method}({', '.join(wanted.parameters)}): "
                f"{exc}")
    except ValueError:  # no signature to read (a builtin): let the call tell
        return None
    return None


def _label_class(obj: Any, name: str, description: str) -> None:
    """Give a registered class that declares ``name``/``description`` attributes but does not
    set them itself (e.g. a Strategy subclass) the registered ones, so each is written once.
    Also when it inherits them from a registered class (a plugin subclassing the built-in
    ``all``): it was named "all" where its class names it (``Invalid parameters for strategy
    'all'``, ``StrategyResult(strategy=self.name)``)."""
    if not isinstance(obj, type):
        return
    for attr, value in (("name", name), ("description", description)):
        if hasattr(obj, attr) and attr not in vars(obj):
            setattr(obj, attr, value)


