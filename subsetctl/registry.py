"""Name -> object registries for the pluggable parts of subsetctl.

Built-in plugins register themselves with the ``register`` decorator when their module
is imported. Third-party plugins are found through entry points (for example the group
``subsetctl.strategies``) or named explicitly in a spec's ``plugins:`` list as
``module:attr`` strings. Registries import their built-in modules lazily so that
importing :mod:`subsetctl.registry` stays cheap (no torch).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from subsetctl.errors import UnknownPluginError, UserError

T = TypeVar("T")


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
    _entries: dict[str, Entry[T]] = field(default_factory=dict)
    _loaded: bool = False

    def register(self, name: str, description: str | None = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; the description defaults to
        the first paragraph of its docstring (a sentence wrapped over lines stays whole)."""

        def decorator(obj: T) -> T:
            first_paragraph = (getattr(obj, "__doc__", None) or "").strip().split("\n\n")[0]
            text = description or " ".join(first_paragraph.split())
            self._entries[name] = Entry(name=name, obj=obj, description=text)
            _label_class(obj, name, text)
            return obj

        return decorator

    def add(self, name: str, obj: T, description: str, origin: str = "built-in") -> None:
        """Register ``obj`` directly (used for entry points and ``plugins:``)."""
        self._entries[name] = Entry(name=name, obj=obj, description=description, origin=origin)
        _label_class(obj, name, description)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.builtin_modules:
            importlib.import_module(module)
        for ep in entry_points(group=self.group):
            if ep.name in self._entries:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the tool
                raise UserError(
                    f"The {self.kind} plugin {ep.name!r} (entry point {ep.value!r} in group "
                    f"{self.group!r}) failed to import: {exc}. Fix or uninstall that package."
                ) from exc
            doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
            self.add(ep.name, obj, doc[0] if doc else "", origin=f"entry point {ep.value}")

    def get(self, name: str) -> T:
        """Return the plugin called ``name`` or raise a :class:`UnknownPluginError`
        that lists the registered names."""
        self._load()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownPluginError(
                f"Unknown {self.kind} {name!r}. Registered {_plural(self.kind)}: {known}. "
                f"Third-party {_plural(self.kind)} register through the entry-point group "
                f"{self.group!r} or a 'module:attr' line under 'plugins:' in the spec."
            )
        return self._entries[name].obj

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        self._load()
        return [self._entries[n] for n in sorted(self._entries)]


LOADERS: Registry[Any] = Registry("loader", "subsetctl.loaders", ("subsetctl.data.loaders",))
PROJECTORS: Registry[Any] = Registry(
    "projector", "subsetctl.projectors", ("subsetctl.gradients.projectors",)
)
ESTIMATORS: Registry[Any] = Registry(
    "estimator",
    "subsetctl.estimators",
    ("subsetctl.estimate.solvers", "subsetctl.estimate.dynamics", "subsetctl.stages.real_finetune"),
)
STRATEGIES: Registry[Any] = Registry(
    "strategy", "subsetctl.strategies", ("subsetctl.search.strategies",)
)
PACKAGED_MODELS: Registry[Any] = Registry(
    "packaged model", "subsetctl.models", ("subsetctl.modeling.packaged",)
)

ALL_REGISTRIES: dict[str, Registry[Any]] = {
    "loaders": LOADERS,
    "strategies": STRATEGIES,
    "estimators": ESTIMATORS,
    "projectors": PROJECTORS,
    "models": PACKAGED_MODELS,
}


def load_plugin_string(spec: str) -> Any:
    """Import ``module:attr`` (from a spec's ``plugins:`` list); importing it registers it."""
    if ":" not in spec:
        raise UserError(f"Plugin {spec!r} must look like 'package.module:attr'.")
    module_name, attr = spec.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(
            f"Plugin module {module_name!r} could not be imported: {exc}. Install the package that provides "
            "it, or put the module's folder on PYTHONPATH."
        ) from exc
    except Exception as exc:  # the plugin's own code failed while importing: its author's to fix
        raise UserError(
            f"Plugin module {module_name!r} raised {type(exc).__name__} while being imported: {exc}. "
            "Fix the plugin or remove it from plugins:."
        ) from exc
    if not hasattr(module, attr):
        raise UserError(f"Plugin module {module_name!r} has no attribute {attr!r}.")
    return getattr(module, attr)


def _label_class(obj: Any, name: str, description: str) -> None:
    """Give a registered class that declares ``name``/``description`` attributes but leaves
    them empty (e.g. a Strategy subclass) the registered ones, so each is written once."""
    if not isinstance(obj, type):
        return
    for attr, value in (("name", name), ("description", description)):
        if hasattr(obj, attr) and not getattr(obj, attr) and attr not in vars(obj):
            setattr(obj, attr, value)
