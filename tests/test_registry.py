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
