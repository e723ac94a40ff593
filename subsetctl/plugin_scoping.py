"""Plugin scopes: a spec's plugins are registered for its call only.

In one process (a notebook) several projects may run one after another; each must see
only its own ``plugins:``. :func:`plugin_scope` takes back, on leaving, what plugin
modules registered inside it. Python imports a module once, so a module a second spec
names registers nothing on its own: what each module registered is remembered here and
registered again (:func:`register_again`). The registries (:mod:`subsetctl.registry`)
ask this module whether a scope is open and record their undo steps in it; importing
``plugins:`` strings lives in :mod:`subsetctl.plugin_loading`.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from subsetctl.registry import Entry, Registry


#: the undo steps of the open :func:`plugin_scope` (None: no scope, registrations stay)
_SCOPE_UNDO: ContextVar[list[Callable[[], None]] | None] = ContextVar("subsetctl_plugin_scope", default=None)


#: the ``plugins:`` modules :func:`~subsetctl.plugin_loading.load_plugin_string` is importing (innermost last)
_IMPORTING: ContextVar[tuple[str, ...]] = ContextVar("subsetctl_importing_plugins", default=())


#: module name -> the plugin entries it registered, with that module's object when they were
#: recorded (a module imported afresh, a new object, registers anew: older entries are stale)
_REGISTERED_BY: dict[str, dict[tuple[str, str], tuple[Any, Registry[Any], Entry[Any]]]] = {}


#: module name -> that module's object, for the modules whose registrations were made in a
#: :func:`plugin_scope` (a spec's ``plugins:`` and what they import): what one registers
#: when it runs again outside a scope (``importlib.reload``) is kept for the next call naming it
_IMPORTED_IN_A_SCOPE: dict[str, Any] = {}


def imported_in_a_scope(entry: Entry[Any]) -> bool:
    """Whether ``entry``'s module is one whose registrations are made in a scope only: its
    first import was in one, and it is still that module (not imported afresh since, after
    being dropped from ``sys.modules``, say by a notebook's own ``import`` of it)."""
    defining = getattr(entry.obj, "__module__", None)
    if not isinstance(defining, str) or defining not in _IMPORTED_IN_A_SCOPE:
        return False
    return _IMPORTED_IN_A_SCOPE[defining] is sys.modules.get(defining) is not None


def is_plugin(entry: Entry[Any]) -> bool:
    """Whether ``entry`` comes from a module (a spec's ``plugins:``, a notebook's cell), not
    from subsetctl itself or an installed package's entry point, which every project sees."""
    return entry.origin != "built-in" and not entry.origin.startswith("entry point")


def remember(registry: Registry[Any], entry: Entry[Any]) -> None:
    """Record ``entry`` for the module defining its object and for each ``plugins:`` module
    being imported, so that naming either in a later spec registers it again."""
    defining = getattr(entry.obj, "__module__", None)
    for module in {*_IMPORTING.get(), *([defining] if isinstance(defining, str) else [])}:
        _REGISTERED_BY.setdefault(module, {})[(registry.kind, entry.name)] = (sys.modules.get(module), registry, entry)


def registered_anything(module_name: str) -> bool:
    """Whether the ``plugins:`` module ``module_name`` (as imported now) or a package above
    it registered a plugin when imported, itself or through the modules it imports, as
    :func:`remember` recorded it."""
    parts = module_name.split(".")
    for name in (".".join(parts[:i]) for i in range(len(parts), 0, -1)):
        current = sys.modules.get(name)
        if current is not None and any(module is current for module, _, _ in _REGISTERED_BY.get(name, {}).values()):
            return True
    return False


def register_again(module_name: str) -> None:
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



def scope_undo() -> list[Callable[[], None]] | None:
    """The undo steps of the open :func:`plugin_scope`, to which a registration adds its
    own; None outside a scope (registrations stay)."""
    return _SCOPE_UNDO.get()


@contextlib.contextmanager
def outside_scope() -> Iterator[None]:
    """What is registered inside stays after the enclosing scope closes (installed entry
    points, imported while a spec's scope happens to be open)."""
    token = _SCOPE_UNDO.set(None)
    try:
        yield
    finally:
        _SCOPE_UNDO.reset(token)


@contextlib.contextmanager
def importing(module_name: str) -> Iterator[None]:
    """Mark the ``plugins:`` module ``module_name`` as being imported: what is registered
    inside is remembered for it too (:func:`remember`), so naming it again registers it.
    An import that fails takes back what the module registered before failing (inside an
    open scope): Python drops the half-run module, and a spec naming what it registered
    would get, besides the import's error, checks of a class the module never finished
    defining around (its later lines may have fixed it up) - one problem, reported once."""
    token = _IMPORTING.set((*_IMPORTING.get(), module_name))
    undo = _SCOPE_UNDO.get()
    done_before = len(undo) if undo is not None else 0
    try:
        yield
    except BaseException:
        if undo is not None:
            for step in reversed(undo[done_before:]):
                step()
            del undo[done_before:]
        _REGISTERED_BY.pop(module_name, None)
        raise
    else:  # what its parent packages registered was recorded before it was in sys.modules: of it now
        records = _REGISTERED_BY.get(module_name, {})
        for key, (module, registry, entry) in records.items():
            if module is None:
                records[key] = (sys.modules.get(module_name), registry, entry)
    finally:
        _IMPORTING.reset(token)


def note_first_import(entry: Entry[Any]) -> None:
    """Record ``entry``'s module as one whose registrations belong to scopes, if it is
    being imported for the first time now (inside the open scope): see
    :func:`imported_in_a_scope`. Relies on ``module.__spec__._initializing``, which
    importlib sets while a module's code runs."""
    defining = getattr(entry.obj, "__module__", None)
    module = sys.modules.get(defining) if isinstance(defining, str) else None
    if getattr(getattr(module, "__spec__", None), "_initializing", False):
        _IMPORTED_IN_A_SCOPE[str(defining)] = module
