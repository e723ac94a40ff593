"""Registering a class labels it with the registered name and description, once."""

from __future__ import annotations

from typing import ClassVar

from subsetctl.registry import STRATEGIES, Registry


class _Base:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""


def test_register_sets_empty_name_and_description_but_keeps_declared_ones() -> None:
    registry: Registry[type] = Registry("thing", "subsetctl.test_things", ())

    @registry.register("plain", "a plain thing")
    class Plain(_Base):
        pass

    @registry.register("declared", "registered text")
    class Declared(_Base):
        name = "own_name"

    registry.add("added", type("Added", (_Base,), {}), "added by hand")
    assert (Plain.name, Plain.description) == ("plain", "a plain thing")
    assert (Declared.name, Declared.description) == ("own_name", "registered text")
    assert registry.get("added").name == "added"
    assert _Base.name == ""  # the base class is untouched


def test_built_in_strategies_carry_their_registered_names() -> None:
    for entry in STRATEGIES.entries():
        if entry.origin == "built-in":
            assert entry.obj.name == entry.name and entry.obj.description == entry.description


class _EntryPoint:
    """Stands in for an installed importlib.metadata entry point."""

    def __init__(self, name: str, value: str, obj: object = None, error: Exception | None = None) -> None:
        self.name, self.value, self._obj, self._error = name, value, obj, error

    def load(self) -> object:
        if self._error is not None:
            raise self._error
        return self._obj


def test_a_broken_installed_plugin_is_skipped_and_named_only_when_asked_for(monkeypatch) -> None:
    import pytest

    import subsetctl.registry as registry_module
    from subsetctl.errors import UnknownPluginError, UserError

    class Good:
        """A working third-party thing."""

    installed = [_EntryPoint("broken", "fakeplug_mod:Broken", error=ModuleNotFoundError("No module named 'x'")),
                 _EntryPoint("good", "goodplug:Good", obj=Good)]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: installed)
    registry: Registry[type] = Registry("thing", "subsetctl.test_things", ())
    assert registry.get("good") is Good  # the broken one does not stop the others
    assert registry.origin("good") == "entry point goodplug:Good"
    assert list(registry.broken()) == ["broken"]
    with pytest.raises(UserError, match="'broken' .*fakeplug_mod:Broken.* failed to import: ModuleNotFoundError"):
        registry.get("broken")
    with pytest.raises(UnknownPluginError, match=r"@THINGS.register\('nope'\)"):
        registry.get("nope")


def test_ls_lists_a_broken_plugin_with_its_reason(monkeypatch) -> None:
    from subsetctl.api import list_plugins
    from subsetctl.registry import STRATEGIES

    monkeypatch.setattr(STRATEGIES, "_broken", {"broken": "The strategy plugin 'broken' failed to import: boom."})
    rows = list_plugins()["strategies"]
    assert {"name": "broken", "description": "failed to import", "origin": "entry point",
            "error": "The strategy plugin 'broken' failed to import: boom."} in rows
    assert any(r["name"] == "forward" and r["origin"] == "built-in" for r in rows)


def test_a_plugins_class_without_a_name_says_how_to_register_it(tmp_path, monkeypatch) -> None:
    import pytest

    from subsetctl.errors import UserError
    from subsetctl.registry import load_plugin_string

    (tmp_path / "nameless_plugin.py").write_text(
        "from subsetctl.search.base import Strategy\n\nclass Nameless(Strategy):\n"
        "    def run(self, estimator, context, params):\n        return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match=r"without a name of its own: decorate it with `@STRATEGIES.register"):
        load_plugin_string("nameless_plugin:Nameless")
    (tmp_path / "tweaked_plugin.py").write_text(  # inherits "forward": must not replace the built-in
        "from subsetctl.search.greedy import Forward as ForwardStrategy\n\nclass Tweaked(ForwardStrategy):\n    pass\n\n"
        "class Renamed(ForwardStrategy):\n    name = 'forward'\n")
    with pytest.raises(UserError, match="without a name of its own"):
        load_plugin_string("tweaked_plugin:Tweaked")
    with pytest.raises(UserError, match="is named 'forward', like the strategy from built-in"):
        load_plugin_string("tweaked_plugin:Renamed")
    from subsetctl.registry import STRATEGIES

    assert STRATEGIES.origin("forward") == "built-in"
