"""``key=value`` overrides from the command line: parsing key paths and values (as YAML,
text kept as written), applying them to a spec's data, and telling which issues they
caused.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from typing import Any, NamedTuple, get_args, get_origin

import yaml

from subsetctl.errors import SpecError, printable, worded
from subsetctl.spec.issues import SpecIssue, _models_in, format_path, key_named_meant
from subsetctl.spec.yaml_depth import (
    _MAX_ALIAS_EXPANSION,
    AliasesExpandTooFarError,
    FlowTooDeepError,
    safe_load_limited,
)

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_QUOTED = re.compile(r"\"([^\"]+)\"|'([^']+)'")


class QuotedName(str):
    """A part of an override's key written in quotes (``sources."2024".max_examples``): a name,
    never a list index, even when it is all digits (a source named 2024), and whole even when
    it holds dots (a source named v1.2)."""


def split_override(item: str) -> tuple[str, str | None]:
    """An override's key and value: ``item`` split at its first "=" outside a quoted part of the
    key (``sources[0].label_map."a=b"=pos`` -> ``('sources[0].label_map."a=b"', 'pos')``), so
    that a quoted name may hold "=" (split at the first "=", its key was cut inside the quotes);
    value None when there is no such "=" (``sources."a=b"``: no value). A quote opens a part
    only at the start of one, as :func:`parse_key_path` reads it (``o'brien`` is a name), and one
    never closed is no quote (the key is split at its first "=", and reading it says what is
    wrong with it)."""
    i = 0
    while i < len(item):
        char = item[i]
        if char in "\"'" and (not item[:i].strip() or item[i - 1] == "."):
            end = item.find(char, i + 1)
            if end > i + 1:  # (`""` is no name: parse_key_path refuses it)
                i = end + 1
                continue
        if char == "=":
            return item[:i], item[i + 1:]
        i += 1
    return item, None


def parse_key_path(key: str) -> list[str | int]:
    """'sources[0].max_examples' -> ['sources', 0, 'max_examples']; a part in quotes is a
    :class:`QuotedName` ('sources."2024".x' -> ['sources', QuotedName('2024'), 'x'])."""
    parts: list[str | int] = []
    pos = 0
    key = key.strip()
    while pos < len(key):
        if key[pos] == ".":
            if pos == 0 or pos + 1 >= len(key) or key[pos + 1] in ".[":  # "a..b", ".a", "a.", "a.[0]"
                raise SpecError(f"Override key {key!r} is not a dotted key path like a.b[0].c (an empty part).")
            pos += 1
            continue
        if key[pos] in "\"'":  # (a quote inside a part, `o'brien`, is part of the name)
            quoted = _QUOTED.match(key, pos)
            if quoted is None or (quoted.end() < len(key) and key[quoted.end()] not in ".["):
                raise SpecError(f"Override key {key!r} is not a dotted key path like a.b[0].c: a quoted part is a "
                                'whole name between two quotes, e.g. sources."2024".max_examples. A name holding '
                                "a double quote is quoted with single ones ('say \"hi\"'), and one holding a single "
                                'quote with double ones ("it\'s"); a name holding both cannot be written in a key: '
                                "set the mapping that holds it whole (e.g. sources[0].label_map={...}, its value "
                                "as YAML), or its list item by index (sources[0]...).")
            parts.append(QuotedName(quoted.group(1) or quoted.group(2)))
            pos = quoted.end()
            continue
        match = _TOKEN.match(key, pos)
        if not match:
            raise SpecError(f"Override key {key!r} is not a dotted key path like a.b[0].c."
                            f"{_named_in_brackets_hint(key, pos, parts)}")
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
        if match.group(2) is not None and pos < len(key) and key[pos] not in ".[":  # "sources[0]max_examples"
            raise SpecError(f"Override key {key!r} is not a dotted key path like a.b[0].c: write a dot after "
                            f"{key[:pos]!r} ({key[:pos]}.{key[pos:]}).")
    if not parts:
        raise SpecError(f"Override key {key!r} is empty.")
    return parts


def override_without_value_note(path: object) -> str:
    """For a spec file or project folder named on the command line that is not there: when
    it reads as a key of the spec (``meta_init.steps``, ``sources[0].max_examples``: a first
    part that is a top-level key, then at least one more), that it is an override missing its
    ``=value`` (`subsetctl validate . meta_init.steps`, whose advice was `subsetctl init
    meta_init.steps`), with the argument to write; "" otherwise. Its last part must be a key
    the spec has somewhere (``steps``): a missing ``project.yaml`` or ``model.yml`` is a spec
    file's name, not an override. A list index is a last part too (``sources[0]``), and so is
    any key under a mapping-valued setting (``target.label_map.pos``, ``where``, ``params``), or a
    misspelling of a key valid where it stands (``model.lora.rr``), said with the key meant; a
    missing ``sources.extra.yaml`` (``yaml`` no key of a source) is a file's name. A first part
    that misspells a top-level key (``modle.lora.r``) reads as an override too where every wrong
    part has a likely meant key (advised `init modle.lora.r` before). Where each wrong part has
    one, the key meant is named whole (``model.lora.r=VALUE``)."""
    from subsetctl.spec.models import Spec  # (the models read overrides' helpers)

    text = str(path)
    if "=" in text or "/" in text or os.sep in text:
        return ""
    try:
        parts = parse_key_path(text)
    except SpecError:
        return ""
    if len(parts) < 2:
        return ""
    nearest = nearest_key(parts)
    judged = parts if parts[0] in Spec.model_fields else nearest  # modle.lora.r: judged as model.lora.r
    if judged is None:  # proj.v2: a folder's name, no top-level key misspelled
        return ""
    last, before = judged[-1], judged[-2]
    wrong = _first_unknown_part(parts)
    if not (isinstance(last, int) or last in _spec_key_names()
            or (isinstance(before, str) and before in _spec_mapping_names())
            or (len(parts) > 2 and wrong is not None and wrong[0] == len(parts) - 1
                and _meant_key(parts, *wrong))):  # model.lora.rr; not a missing sources.extra.yaml
        return ""
    if wrong is None:
        return (f": {text} reads as a key of the spec, an override without its value. Write each override as one "
                f"argument, key=value without spaces around '=' ({text}=VALUE)")
    meant = (f"the key it likely means: {key_text(nearest)}=VALUE" if nearest is not None
             else "a key `subsetctl schema` lists")
    return (f": {text} reads as an override without its value, and its key is wrong too: "
            f"{unknown_part_note(parts, *wrong)}. Write each override as one argument, key=VALUE without spaces "
            f"around '=', with {meant}")


def nearest_key(parts: list[str | int]) -> list[str | int] | None:
    """``parts`` (an override's key path) with each part that is no key where it stands put
    right to the key it likely misspells (``modle.lora.rr`` -> ``model.lora.r``), the first
    wrong part first, so that later parts are judged under the key meant; ``parts`` as they are
    when all are keys; None where a wrong part misspells no key there (``model.xyz.r``), or is a
    list index that cannot be one (``sources[0][1]``): no key to name."""
    fixed = list(parts)
    for _ in range(len(parts) + 1):  # each pass puts one part right, after the one before, or ends
        wrong = _first_unknown_part(fixed)
        if wrong is None:
            return fixed
        at, valid = wrong
        meant = _meant_key(fixed, at, valid) if valid and isinstance(fixed[at], str) else None
        if meant is None:
            return None
        fixed[at] = meant
    return None


#: how many of the keys valid where a key path goes wrong its advice lists (sorted)
_KEYS_LISTED = 12


def _first_unknown_part(parts: list[str | int]) -> tuple[int, list[str]] | None:
    """Where an override's key path leaves the spec's keys: the index of its first part that
    no model of the spec has there (``model.loraa.r`` -> 1, ``loraa``), with the keys valid at
    that place, sorted (none where the part before takes a value, not keys: ``model.lora.r.x``,
    or is no list and is given an index: ``model.lora.r[0]``);
    None when every part is a key (or a list index, or a source's or strategy's name in a named
    list, or anything under a setting whose keys are the user's own, ``label_map``, ``params``).
    The advice about a key used to look at its last word alone, and so passed ``model.loraa.r``
    (``r`` is a key) as a key of the spec."""
    from pydantic import BaseModel

    from subsetctl.spec.models import Spec  # (the models read overrides' helpers)

    named_lists = {listed.path for listed in _NAMED_LISTS}
    models: list[Any] = [Spec]
    for i, part in enumerate(parts):
        if isinstance(part, int) and i > 0 and (isinstance(parts[i - 1], int)
                                                or tuple(parts[:i - 1]) in named_lists):
            return i, []  # sources[0][1], sources.wiki[1]: an item of a list is no list (the spec has no list of lists)
        if isinstance(part, int) or tuple(parts[:i]) in named_lists:  # a list item: its type is in hand
            continue
        fields = [model.model_fields[part] for model in models
                  if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields]
        if not fields:
            return i, sorted({key for model in models if isinstance(model, type) and issubclass(model, BaseModel)
                              for key in model.model_fields})
        if any(_is_mapping(field.annotation) for field in fields):  # label_map.pos, params.k: the user's keys
            return None
        models = [model for field in fields for model in _models_in(field.annotation)]
        if i < len(parts) - 1 and isinstance(parts[i + 1], int):
            if not any(_is_list(field.annotation) for field in fields):  # model.lora.r[0]: r is no list
                return i + 1, []
        elif not models and i < len(parts) - 1:  # model.lora.r.x: r takes a value
            return i + 1, []
    return None


def unknown_part_note(parts: list[str | int], at: int, valid: list[str]) -> str:
    """What is wrong at part ``at`` of an override's key path (as :func:`_first_unknown_part`
    found it): "model has no key 'loraa' (did you mean 'lora'? its keys: ...)", or that the
    part before takes a value, not keys, or is not a list and so has no item at an index."""
    where, part = format_path(tuple(parts[:at])), parts[at]
    if isinstance(part, int):
        return f"{where} is not a list, so {key_text(parts[: at + 1])} is no setting"
    if not valid:
        return f"{where} takes a value, not keys, so {key_text(parts[: at + 1])} is no setting"
    close = _meant_key(parts, at, valid)
    meant = f"did you mean {close!r}? " if close else ""
    listed = ", ".join(valid[:_KEYS_LISTED]) + (", ..." if len(valid) > _KEYS_LISTED else "")
    owner = where if at else "the spec"  # (format_path writes no parts as "(top level)")
    return f"{owner} has no key {str(part)!r} ({meant}its keys: {listed})"


def _meant_key(parts: list[str | int], at: int, valid: list[str]) -> str | None:
    """The key of ``valid`` that the wrong part ``at`` of an override's key path ``parts``
    likely means: the one the spec's errors name for it there in other tools' words
    (:func:`~subsetctl.spec.issues.key_named_meant`: ``source_files[0].pattern`` -> ``files``,
    which no spelling comes close to), else the one it is a likely misspelling of (``rr`` ->
    ``r``, ``loraa`` -> ``lora``); None if neither."""
    import difflib

    named = key_named_meant(parts[: at + 1])
    if named in valid:
        return named
    close = difflib.get_close_matches(str(parts[at]), valid, n=1, cutoff=0.6)
    return close[0] if close else None


@functools.cache
def _spec_key_names() -> frozenset[str]:
    """Every key name of the spec's mappings, at any depth (``steps``, ``max_examples``)."""
    return frozenset(key for key, _ in _spec_fields())


@functools.cache
def _spec_mapping_names() -> frozenset[str]:
    """The names of the spec's settings whose value is a mapping of any keys (``label_map``,
    ``where``, ``params``): a key under one is the user's own, no key name of the spec."""
    return frozenset(key for key, annotation in _spec_fields() if _is_mapping(annotation))


def _is_mapping(annotation: Any) -> bool:
    """Whether a setting of this type annotation may be a mapping of any keys (``dict[str, Any]``,
    through Optional and unions)."""
    return get_origin(annotation) is dict or any(_is_mapping(arg) for arg in get_args(annotation))


def _is_list(annotation: Any) -> bool:
    """Whether a setting of this type annotation may be a list (``list[Source]``, through
    Optional and unions): an override may name its items by index."""
    return get_origin(annotation) in (list, tuple) or any(_is_list(arg) for arg in get_args(annotation))


def _spec_fields() -> list[tuple[str, Any]]:
    """Each field of the spec's models, at any depth, as its key name and type annotation."""
    from subsetctl.spec.models import Spec  # (the models read overrides' helpers)

    fields: list[tuple[str, Any]] = []
    seen: set[type] = set()
    models: list[Any] = [Spec]
    while models:
        model = models.pop()
        if model in seen:
            continue
        seen.add(model)
        for key, field in model.model_fields.items():
            fields.append((key, field.annotation))
            models.extend(_models_in(field.annotation))
    return fields


def name_in_key(name: str, *, quoted: bool = False) -> str | None:
    """The part of an override's key that names ``name`` as :func:`parse_key_path` (and
    :func:`split_override`) read it back: bare where that reads it whole as a name (``wiki``),
    else in quotes, double ones (``"v1.2"``) or single ones when it holds a double quote
    (``'say "hi"'``); always quoted with ``quoted``. None for a name no key can write (one
    holding both kinds of quote, or none at all): name its item by index instead. (Advice
    that put every name in double quotes gave ``sources."say "hi"".x``, which is refused.)"""
    if not quoted and re.fullmatch(r"[^.\[\]=\"'\s]([^.\[\]=]*[^.\[\]=\s])?", name) and not name.isdigit():
        return name
    if not name:
        return None
    if '"' not in name:
        return f'"{name}"'
    return f"'{name}'" if "'" not in name else None


def key_text(parts: list[str | int] | tuple[str | int, ...]) -> str:
    """``parts`` (:func:`parse_key_path`'s) written back as a key it reads as those parts: a
    :class:`QuotedName` in its quotes (:func:`name_in_key`), so ``label_map."v1.2"`` stays one
    key where :func:`~subsetctl.spec.issues.format_path` writes ``label_map.v1.2``, two."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            written = name_in_key(part, quoted=True) if isinstance(part, QuotedName) else part
            out += ("." if out else "") + (written if written is not None else part)
    return out


def _named_in_brackets_hint(key: str, pos: int, parts: list[str | int]) -> str:
    """Advice for a source or strategy named in brackets (``sources[wiki].max_examples``, as
    `report --compare` keys the settings that differ): brackets take an index; a name goes
    after a dot. Empty for other keys. A name quoted inside the brackets (``sources["wiki"]``,
    as Python or JavaScript index a dict) is advised without its quotes."""
    inside = re.match(r"\[([^\[\]]+)\]", key[pos:])
    listed = next((n for n in _NAMED_LISTS if tuple(parts) == n.path), None)
    if inside is None or listed is None or re.fullmatch(r"\s*-?\d+\s*", inside.group(1)):
        return ""
    quoted = _QUOTED.fullmatch(inside.group(1))
    named = (quoted.group(1) or quoted.group(2)) if quoted else inside.group(1)
    where, rest = format_path(listed.path), key[pos + inside.end():]
    bare, in_quotes = name_in_key(named), name_in_key(named, quoted=True)
    if bare == named:
        after_a_dot = (f"{where}.{named}{rest}, or in quotes, {where}.{in_quotes}{rest}, when its name is all digits "
                       "or has dots")
    elif in_quotes:  # (a name a bare key would misread: its quotes, dots, an "=")
        after_a_dot = f"in quotes as this one's name needs, {where}.{bare}{rest}"
    else:
        after_a_dot = "but a name holding both kinds of quote cannot be written in a key: name it by its index"
    return f" Brackets take an index ({where}[0]{rest}); a {listed.noun} is named after a dot, {after_a_dot}."


def override_value(raw_value: str) -> Any:
    """The value of an override's ``=`` side, read as YAML (``32`` a number, ``[a, b]`` a
    list, ``null`` nothing), except that text YAML would cut at a ``#`` comment (``x #1``,
    ``#1``) is kept whole as a string: on a command line a ``#`` is part of the value, and
    dropping what follows it silently changed the name or path written. Text YAML cannot
    read is a string too, and so is an empty or blank value (``x=``, ``x=' '``), as
    written: YAML read blanks as null, so ``x=`` was text and ``x=' '`` nothing (``null``
    or ``~`` say nothing), and a space, a CSV delimiter, could not be given."""
    if not raw_value.strip():
        return raw_value
    try:
        value = safe_load_limited(raw_value)
    except yaml.YAMLError:
        return raw_value
    except (RecursionError, FlowTooDeepError):  # `[[[[...`: as a spec file nested so deeply, a user error, not an internal one
        shown = raw_value if len(raw_value) <= 40 else raw_value[:40] + "..."
        raise SpecError(f"Override value {shown!r} is nested too deeply to be a spec value.") from None
    except AliasesExpandTooFarError:
        shown = raw_value if len(raw_value) <= 40 else raw_value[:40] + "..."
        raise SpecError(f"Override value {shown!r}: its aliases (*name) repeat what they refer to into more than "
                        f"{_MAX_ALIAS_EXPANSION:,} values, far more than any spec value holds. Write the value out, "
                        "or use each anchor only where it is needed.") from None
    except ValueError:  # `2024-13-45`, a date YAML cannot make: text, as what YAML cannot read
        return raw_value
    return raw_value if "#" in raw_value and _yaml_drops_a_comment(raw_value) else value


def _yaml_drops_a_comment(text: str) -> bool:
    """Whether YAML reads part of ``text`` as a comment: a ``#`` outside every token. (Text
    left after the last token missed the comments of a block list or map, ``- a #b`` and
    ``a: b #c``, whose closing token comes at the very end, and of a flow list's inner lines.)"""
    spans = [(token.start_mark.index, token.end_mark.index) for token in yaml.scan(text)
             if token.end_mark.index > token.start_mark.index]
    return any(char == "#" and not any(start <= i < end for start, end in spans) for i, char in enumerate(text))


def apply_overrides(data: dict[str, Any], overrides: list[str], written: dict[str, str] | None = None) -> dict[str, Any]:
    """Apply ``key=value`` overrides (values parsed as YAML) to a copy of ``data``. ``written``:
    :func:`indexed_overrides`'s, so that an error quotes an override as it was written."""
    out = _unshared_copy(data)
    for item in map(_typed_text, overrides):
        shown = as_written(item, written)
        key, raw_value = split_override(item)
        if raw_value is None:
            raise SpecError(f"Override {shown!r} must look like key=value (e.g. gradients.d=256).")
        value = override_value(raw_value)
        parts = parse_key_path(key)
        node: Any = out
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise SpecError(_no_item(shown, parts[: i + 1], node, out))
                node = node[part]
            else:
                if not isinstance(node, dict):
                    raise SpecError(_not_a_mapping(shown, parts, i, node))
                if part not in node or node[part] is None:
                    if isinstance(nxt, int):
                        raise SpecError(f"Override {shown!r}: {format_path(tuple(parts[: i + 1]))} does not "
                                        f"exist.{_groups_hint(parts[: i + 1], out)}")
                    node[part] = {}
                node = node[part]
        last = parts[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise SpecError(_no_item(shown, parts, node, out))
            node[last] = value
        else:
            if not isinstance(node, dict):
                raise SpecError(_not_a_mapping(shown, parts, len(parts) - 1, node))
            node[last] = value
    return out


class _NamedList(NamedTuple):
    """A list of the spec whose items an override may name instead of indexing."""

    path: tuple[str, ...]  # where it is: ("search", "strategies")
    answers_to: tuple[str, ...]  # the keys of an item that name it, as the name is looked for
    noun: str  # one item, in words: "strategy"
    plural: str
    unlisted: str  # the rest of "the spec lists no search.strategies to name 'x' among", when it lists none
    tell_apart: str  # the rest of the advice when several answer to the name (after "by its index, ...")
    item_model: str  # the spec model of one item (in subsetctl.spec.models), whose keys a name may be mistaken for


#: the lists whose items an override may name instead of indexing: ``search.strategies.forward``
#: (the strategy whose ``label``, or ``name``, is forward) and ``sources.wiki`` (the source named wiki)
_NAMED_LISTS = (
    _NamedList(("search", "strategies"), ("label", "name"), "strategy", "strategies",
               " (the default strategy is not written in the file): list them there, or set the list whole on the "
               "command line (search.strategies=[{name: ...}])", ", or by a `label:` that the spec gives it",
               "StrategySpec"),
    _NamedList(("sources",), ("name",), "source", "sources", "", "", "SourceSpec"),
)

#: how many items a refused name's error lists (the closest to the name first): a `by` group
#: of 500 tasks listed in one paragraph read as no list at all
_CHOICES_LISTED = 10


def indexed_overrides(data: dict[str, Any], overrides: list[str], written: dict[str, str] | None = None) -> list[str]:
    """``overrides`` with a search strategy or a source named where its index goes, written with
    its index: ``search.strategies.forward.params.k=3`` -> ``search.strategies[0].params.k=3`` (the
    strategy whose ``label``, or ``name``, is forward), ``sources.wiki.max_examples=50`` ->
    ``sources[2].max_examples=50`` (the source named wiki), in ``data`` as the overrides before it
    leave it, so that what follows (applying them, blaming issues on them, recording them) sees one
    key for one setting. The index alone changed with the list's order. Raises SpecError when no
    item or several answer to the name (two `random` baselines: their labels, or indices, tell them
    apart), listing them. Other overrides, malformed ones included, are kept as written.
    ``written``, when given, gets each override written here with an index -> the override as
    it was written, for the messages that quote it (:func:`as_written`): they quoted
    ``search.strategies[1].params.k=3`` to a user who typed ``search.strategies.forward.params.k=3``."""
    out: list[str] = []
    for item in overrides:
        key, split_value = split_override(str(item))
        value = split_value if split_value is not None else ""
        try:
            parts = parse_key_path(key)
        except SpecError:
            parts = []
        listed = next((n for n in _NAMED_LISTS if len(parts) > len(n.path) and tuple(parts[:len(n.path)]) == n.path),
                      None)
        named = parts[len(listed.path)] if listed is not None else None
        if listed is None or not isinstance(named, str):
            out.append(item)
            continue
        try:
            applied = apply_overrides(data, out)
        except SpecError:  # an earlier override is malformed: said there
            out.append(item)
            continue
        entries: Any = applied
        for part in listed.path:  # (a `search` that is no mapping lists none either)
            entries = entries.get(part) if isinstance(entries, dict) else None
        where = format_path(listed.path)
        if entries is None:
            raise SpecError(f"Override {item!r}: the spec lists no {where} to name {named!r} among{listed.unlisted}."
                            f"{_groups_hint(['sources'], applied) if listed.noun == 'source' else ''}")
        if not isinstance(entries, list):  # (a list of another kind: validation says so)
            out.append(item)
            continue
        found = [i for i, entry in enumerate(entries)
                 if isinstance(entry, dict) and any(entry.get(k) == named for k in listed.answers_to)]
        digits = named.isdigit() and not isinstance(named, QuotedName)
        if digits and not found:  # `sources.0.x`, no source named 0: apply_overrides says to write sources[0]
            out.append(item)
            continue
        if digits and int(named) < len(entries) and found != [int(named)]:  # (both readings one item: that one)
            raise SpecError(_index_or_name(item, parts, value, listed, entries, found))
        if len(found) != 1:
            choices = _choices(named, entries, found or range(len(entries)), where, listed)
            answer = "named or labelled" if "label" in listed.answers_to else "named"
            problem = (f"no {listed.noun} is {answer} {named!r} (the {listed.plural}: {choices})" if not found
                       else f"{len(found)} {listed.plural} answer to {named!r} ({choices}): name one by its index, "
                            f"{key_text((*listed.path, found[0], *parts[len(listed.path) + 1:]))}={value}"
                            f"{listed.tell_apart}")
            dotted = _dotted_name_hint(parts, value, listed, entries) if not found else ""
            if not found and not dotted:  # a mistyped name (`sources.wkii.x=1`): the one meant, as for a mistyped key
                problem += _meant_hint(named, entries, listed, parts, value)
            hint = _groups_hint(["sources"], applied) if listed.noun == "source" and not found else ""
            if not found and len(parts) == len(listed.path) + 1:
                hint = _one_item_key_hint(named, value, listed) + hint
            hint = dotted + hint
            raise SpecError(f"Override {item!r}: {problem}{'' if problem.endswith('?') else '.'}{hint}")
        out.append(f"{key_text((*listed.path, found[0], *parts[len(listed.path) + 1:]))}={value}")
        if written is not None:
            written[out[-1]] = item
    return out


def _index_or_name(item: str, parts: list[str | int], value: str, listed: _NamedList, entries: list[Any],
                   found: list[int]) -> str:
    """The error of an override whose all-digit part names an item of a named list and is an
    index of it too (``sources.1.max_examples=5`` where a source is named 1): how to write each."""
    named, rest = str(parts[len(listed.path)]), parts[len(listed.path) + 1:]
    item_at = format_path((*listed.path, int(named)))
    by_index = key_text((*listed.path, int(named), *rest))
    by_name = f"{format_path(listed.path)}.{name_in_key(named, quoted=True)}{by_index[len(item_at):]}"
    which = ", ".join(format_path((*listed.path, i)) for i in found)
    return (f"Override {item!r}: {named} is both the name of a {listed.noun} ({which}) and an index of "
            f"{format_path(listed.path)} ({item_at} is {_called(entries[int(named)])}). "
            f"Write {by_index}={value} for the {listed.noun} at index {named}, or {by_name}={value} for the "
            f"{listed.noun} named {named} (in a shell, quote the whole override: {shlex.quote(f'{by_name}={value}')}).")


def _meant_hint(named: str, entries: list[Any], listed: _NamedList, parts: list[Any], value: str) -> str:
    """"; did you mean 'wiki' (sources.wiki.max_examples=50)?" for a name that no item of a
    named list answers to but one's is close to (a typo); "" otherwise."""
    import difflib

    names = {str(entry[k]): i for i, entry in reversed(list(enumerate(entries))) if isinstance(entry, dict)
             for k in listed.answers_to if entry.get(k)}
    close = difflib.get_close_matches(named, list(names), n=1, cutoff=0.75)
    if not close:
        return ""
    return f"; did you mean {close[0]!r} ({_key_naming(close[0], names[close[0]], listed, parts[len(listed.path) + 1:])}={value})?"


def _one_item_key_hint(named: str, value: str, listed: _NamedList) -> str:
    """Advice when the name looked for is a key of one item (``sources.max_examples=3``, meant
    for every source): there is no key setting it on them all; name one item, by its name or
    its index. Empty for other names."""
    from subsetctl.spec import models

    if named not in getattr(models, listed.item_model).model_fields:
        return ""
    where = format_path(listed.path)
    return (f" {named!r} is a key of each {listed.noun}, not a {listed.noun}'s name: an override sets it on one "
            f"{listed.noun} at a time, named ({where}.NAME.{named}={value}) or by its index "
            f"({where}[0].{named}={value}); there is no key for all {listed.plural} at once.")


def _dotted_name_hint(parts: list[str | int], value: str, listed: _NamedList, entries: list[Any]) -> str:
    """Advice when the name looked for, with the parts after it, is an item's name holding dots
    (``sources.v1.2.max_examples=5`` for the source named v1.2, whose unquoted key looks for a
    source named v1): the quoted form that names it. It said only that no source is named v1.
    Empty for other names."""
    start = len(listed.path)
    names = {str(entry[k]): i for i, entry in reversed(list(enumerate(entries))) if isinstance(entry, dict)
             for k in listed.answers_to if entry.get(k) is not None}
    for end in range(len(parts) - 1, start + 1, -1):  # the longest name first; a key must follow it
        dotted = ".".join(str(part) for part in parts[start:end])
        if dotted in names:
            fixed = _key_naming(dotted, names[dotted], listed, parts[end:])
            how = "in quotes" if name_in_key(dotted, quoted=True) else "by its index (its name holds both kinds of quote)"
            return (f" {dotted!r} is a {listed.noun} whose name holds a dot, which an unquoted key splits: name it "
                    f"{how}, {fixed}={value} (in a shell, quote the whole override: {shlex.quote(f'{fixed}={value}')}).")
    return ""


def _key_naming(name: str, index: int, listed: _NamedList, rest: list[str | int]) -> str:
    """The override key of ``rest`` under the item of a named list called ``name`` (at
    ``index``): the name as :func:`name_in_key` writes it, or the index where no key can."""
    part = name_in_key(name)
    by_index = key_text((*listed.path, index, *rest))
    if part is None:
        return by_index
    return f"{format_path(listed.path)}.{part}{by_index[len(format_path((*listed.path, index))):]}"


def as_written(item: str, written: dict[str, str] | None) -> str:
    """The override ``item`` as the user wrote it: with the name of the strategy or source
    that :func:`indexed_overrides` (which filled ``written``) wrote with its index; else as it is."""
    return written.get(item, item) if written else item


def _choices(named: str, entries: list[Any], indices: Any, where: str, listed: _NamedList) -> str:
    """The items at ``indices`` of a named list, as a refused name's error lists them
    ("search.strategies[0] forward, search.strategies[2] random (label r2)"), in order; of more
    than :data:`_CHOICES_LISTED`, that many, those whose name is closest to ``named`` first, and
    how many there are."""
    import difflib

    called = {i: _called(entries[i]) for i in indices}
    order = list(called)
    if len(order) > _CHOICES_LISTED:
        close = difflib.get_close_matches(named, list(called.values()), n=_CHOICES_LISTED)
        order = sorted(order, key=lambda i: close.index(called[i]) if called[i] in close else len(close))
    shown = ", ".join(f"{where}[{i}] {called[i]}" for i in order[:_CHOICES_LISTED])
    return f"{shown}, ... ({len(order)} {listed.plural})" if len(order) > _CHOICES_LISTED else shown or "none"


def _called(entry: Any) -> str:
    """A named list's item as :func:`indexed_overrides` lists it: its name, and label when set."""
    if not isinstance(entry, dict):
        return "(not a mapping)"
    label = f" (label {entry['label']})" if entry.get("label") else ""
    return f"{entry.get('name')}{label}"


def overrides_that_change(data: dict[str, Any], overrides: list[str]) -> list[str]:
    """The ``overrides`` that make ``data`` (the spec file's settings) other than the file
    says: an override a later one replaces (the same key, or one above it) is left out, and
    so is one whose key holds the file's own value once all are applied (`run
    finetune.steps=5` on a spec with ``steps: 5``). The rest are what the report calls
    "made with command-line overrides" and the manifests record; a result made with no-op
    overrides is the spec's alone. Malformed overrides are kept (apply_overrides refuses them)."""
    try:
        whole = apply_overrides(data, overrides)
    except SpecError:
        return list(overrides)
    try:  # (each override's own key parts: a quoted one whole, `label_map."v1.2"`, where its
        # format_path text, `label_map.v1.2`, read back as two keys and found neither value)
        keyed = [(tuple(parse_key_path(split_override(str(item))[0])), str(item)) for item in overrides]
    except SpecError:
        return list(overrides)
    missing = object()

    def at(node: Any, key: tuple[str | int, ...]) -> Any:
        for part in key:
            in_list = isinstance(part, int) and isinstance(node, list) and -len(node) <= part < len(node)
            if not (in_list or (isinstance(part, str) and isinstance(node, dict) and part in node)):
                return missing
            node = node[part]
        return node

    kept = []
    for i, (key, item) in enumerate(keyed):
        replaced = any(key[:len(later)] == later for later, _ in keyed[i + 1:])  # (the same key, or one above it)
        if not replaced and at(whole, key) != at(data, key):
            kept.append(item)
    return kept


def _unshared_copy(node: Any, inside: frozenset[int] = frozenset()) -> Any:
    """A copy of ``node`` in which no mapping or list is shared: a YAML alias (``loader: *ld``)
    reads as the anchored object itself, which ``copy.deepcopy`` keeps shared, so an override
    of ``sources[0].loader.path`` changed every source whose loader was that alias. (A
    mapping or list inside itself, a recursive alias, is left as it is there.)"""
    if not isinstance(node, (dict, list)) or id(node) in inside:
        return node
    inside = inside | {id(node)}
    if isinstance(node, dict):
        return {key: _unshared_copy(value, inside) for key, value in node.items()}
    return [_unshared_copy(value, inside) for value in node]


def _typed_text(item: str) -> str:
    """A command-line override as the text typed. Python decodes arguments with the file
    system encoding, so under LC_ALL=C (UTF-8 mode off) `project.name=café` arrives as escaped
    bytes (surrogates), which pydantic refused as "unable to parse raw data as a unicode
    string" and writing the spec's files refused (UnicodeEncodeError): they are read as UTF-8.
    Bytes that are not UTF-8 at all are refused here."""
    try:
        item.encode("utf-8")
        return item
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(item).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        shown = printable(item)
        raise SpecError(f"Override {shown!r} is not valid UTF-8 text (the terminal sent other bytes, "
                        "shown as \ufffd). Type it again under a UTF-8 locale, or write the value into "
                        "the spec file.") from None


def _groups_hint(path: list[str | int], data: dict[str, Any]) -> str:
    """For an override of ``sources[i]`` in a spec with ``source_files`` groups: their
    sources are not in ``sources`` when overrides apply, so how to reach them instead."""
    if path[0] != "sources" or len(path) > 2 or not data.get("source_files"):
        return ""
    which = ("The sources of this spec's source_files groups are added after overrides apply"
             if data.get("sources") else "This spec lists its sources as source_files groups")
    return f" {which}: override a group's settings (source_files[0].max_examples=5), or list the source under sources."


def _no_item(item: str, path: list[str | int], node: Any, data: dict[str, Any]) -> str:
    """The error of an override naming a list item that is not there (``path`` ends with
    its index): how many items the list has, or that it is no list."""
    where, missing = format_path(tuple(path[:-1])), format_path(tuple(path))
    if not isinstance(node, list):
        return f"Override {item!r}: {missing} does not exist ({where} is not a list)."
    return f"Override {item!r}: {missing} does not exist: {_items_count(where, node)}.{_groups_hint(path, data)}"


def _items_count(where: str, items: list[Any]) -> str:
    """How many items the list at ``where`` has, and their indices: "sources has 3 items,
    sources[0] to sources[2]"."""
    return (f"{where} is empty" if not items else
            f"{where} has 1 item, {where}[0]" if len(items) == 1 else
            f"{where} has {len(items)} items, {where}[0] to {where}[{len(items) - 1}]")


def _not_a_mapping(item: str, parts: list[str | int], at: int, node: Any) -> str:
    """The error of an override whose key goes into something that is no mapping at part
    ``at`` of its key path ``parts``; for a list item written with a dot
    (``sources.0.max_examples=5``), the override written with brackets
    (``sources[0].max_examples=5``), or, past the list's end, how many items it has. (The
    advice was always "e.g. sources[0].max_examples=50", and named an item past the end.)"""
    where, part = format_path(tuple(parts[:at])), parts[at]
    if isinstance(node, list) and str(part).isdigit():
        index = int(part)
        if index >= len(node):
            return (f"Override {item!r}: {where} is a list, not a mapping, and an item is named with brackets, "
                    f"{where}[{index}], which does not exist: {_items_count(where, node)}.")
        value = split_override(item)[1]
        fixed = [*parts[:at], index, *parts[at + 1:]]
        wrong = _first_unknown_part(fixed)
        if wrong is not None:  # sources.0.loaderr.path=x: not "write sources[0].loaderr.path=x"
            return (f"Override {item!r}: {where} is a list, not a mapping: name an item with brackets, "
                    f"{key_text(fixed[: at + 1])}; and {unknown_part_note(fixed, *wrong)}.")
        return (f"Override {item!r}: {where} is a list, not a mapping: name an item with brackets, "
                f"{key_text(fixed)}={value}.")
    return f"Override {item!r}: {where} is not a mapping."


def override_keys(overrides: list[str]) -> list[tuple[str, str]]:
    """``(key path, override)`` for each well-formed ``key=value`` override, in order
    (``sources[0].max_examples=3`` -> ``("sources[0].max_examples", ...)``)."""
    keys = []
    for item in overrides:
        try:
            keys.append((format_path(tuple(parse_key_path(split_override(str(item))[0]))), str(item)))
        except SpecError:
            continue
    return keys


def overrides_under(overrides: list[str], keys: list[str]) -> list[str]:
    """The ``overrides`` that set one of ``keys`` (spec key paths, or `plan`'s
    ``sources: ...`` or ``search.strategies: ...`` description of a changed list) or a key above or below one: a
    ``source_files`` override counts for ``sources``, which that group expands into. A key
    with a part in quotes (``label_map."v1.2"``, as `plan` names it) is that of the override."""
    def plain(key: str) -> str:  # label_map."v1.2" -> label_map.v1.2, as override_keys has it
        try:
            return format_path(tuple(parse_key_path(key)))
        except SpecError:
            return key

    return [item for key, item in override_keys(overrides)
            if any(same_branch(key, plain(k)) or same_branch(key, k.split(":", 1)[0])  # "search.strategies: added x"
                   or (k.split(":", 1)[0] == "sources" and key.startswith("source_files"))
                   for k in keys)]


def attribute_overrides(issues: list[SpecIssue], overrides: list[str],
                        written: dict[str, str] | None = None) -> list[SpecIssue]:
    """Point issues under an overridden key at the command-line override that set it, quoted
    as it was written (``written``: :func:`indexed_overrides`'s).

    Without this, ``run . estimate.lam=-1`` would be reported at the line of the file's
    own ``lam:``, which holds a valid value; the user would look in the wrong place. An
    issue is attributed when its key is the override's, or one lies under the other; one
    that names several sources (a duplicate name) to the override of each name it names."""
    blamed = override_keys(overrides)
    out = []
    for issue in issues:
        plain_key = re.sub(r"^(source_files\[\d+\]) \(.*\)(?=[.\[]|$)", r"\1", issue.key)  # a group's file named in it
        in_effect = _overrides_behind(issue, plain_key, blamed)
        if in_effect:
            message = issue.message
            for key, item in in_effect:
                if key == plain_key:
                    message = _quoted_on_the_command_line(message, as_written(item, written))
                message = _line_of_overridden_key(message, key)
            shown = ", ".join(as_written(item, written) for _, item in in_effect)
            body, stop = (message[:-1], ".") if message.endswith(".") else (message, "")  # "...'abc' (set on ...)."
            issue = issue.model_copy(update={
                "key": _key_set_on_the_command_line(issue.key, plain_key, in_effect),
                "line": None,
                "message": f"{body} ({worded('set on the command line', 'given in overrides')}: {shown}){stop}"})
        out.append(issue)
    return out


def _key_set_on_the_command_line(key: str, plain_key: str, in_effect: list[tuple[str, str]]) -> str:
    """Where an issue made by the overrides ``in_effect`` sits: at its own ``key`` where one of
    them set it (or a key above or below it), or where it is no source's name; else, a duplicate
    source name, at the last of them, which set the name the file's source has too
    (`sources[0].name=b`, the file's sources[1].name 'b'). The issue sat at the file's untouched
    sources[1].name, with no line, though that key has one there."""
    if not re.fullmatch(r"sources\[\d+\]\.name", plain_key) or any(
            same_branch(plain_key, set_key) or _selects_meaning_of(set_key, plain_key) for set_key, _ in in_effect):
        return key
    return in_effect[-1][0]


def _overrides_behind(issue: SpecIssue, plain_key: str, blamed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The overrides (``(key, item)`` of :func:`override_keys`, in command-line order) that made
    ``issue``: the last one of (or over, or selecting the meaning of) its key ``plain_key``, and
    for each source a whole-spec check names (a duplicate name: each of them), the last one of
    that source's name (or of the whole source), not one of another of its keys
    (`sources[0].max_examples=3`). The last override of a key is the one in effect. Only the
    last override of all was credited, so `sources[1].name=a sources[2].name=a` said nothing
    of the first."""
    found: list[tuple[str, str]] = []

    def last(matches: Any) -> None:
        hit = next(((key, item) for key, item in reversed(blamed) if matches(key)), None)
        if hit is not None and hit not in found:
            found.append(hit)

    last(lambda key: same_branch(plain_key, key) or _selects_meaning_of(key, plain_key))
    for source in dict.fromkeys(re.findall(r"sources\[\d+\]", issue.message)):
        last(lambda key, name=f"{source}.name": same_branch(name, key))
    return sorted(found, key=blamed.index)


#: where a duplicate name's first source names it in the file, as a message says it ("; the first is
#: sources[0].name, at line 20"): an override of that key makes the file's line the wrong place to look
_KEY_AT_LINE = re.compile(r"; the first is (sources\[\d+\]\.name), at line \d+")


def _line_of_overridden_key(message: str, key: str) -> str:
    """``message`` without where the file names a key ("; the first is sources[0].name, at
    line 20") where the override of ``key`` set it: the file's line holds the value the override
    replaced, and the issue ends with the overrides that made it ("(set on the command line:
    sources[0].name=b)"). It said ", set on the command line" in its place, and then "(set on the
    command line: ...)" again."""
    return _KEY_AT_LINE.sub(lambda m: "" if same_branch(m.group(1), key) else m.group(0), message)


#: the advice to quote a number or boolean YAML read for text, as spec.issues words it for a file
_QUOTE_ADVICE = re.compile(r"(quote (?:it|the value) to keep it text)(?:, e\.g\. \"[^\"]*\"|, as written: .*)?\)$")


def _quoted_on_the_command_line(message: str, item: str) -> str:
    """``message`` with its advice to quote a value (``name: 007`` is the number 7) given as
    the override to type: the shell takes the quotes of ``project.name="007"`` off, so YAML
    read the number again, and the file's example ``"7"`` would even have changed the text."""
    key, raw = split_override(item)
    quoted = f'{key}="{raw}"'
    where = worded(f"on the command line, inside the shell's quotes: {shlex.quote(quoted)}",
                   f"in overrides: {quoted!r}")  # (from Python, no shell takes the quotes off)
    return _QUOTE_ADVICE.sub(lambda m: f"{m.group(1)}; {where})", message)


def _selects_meaning_of(override: str, key: str) -> bool:
    """Whether the override sets what decides ``key``'s meaning: a strategy's name decides
    which params are valid, a loader's type which options are, so an override
    ``search.strategies[3].name=random`` is what made its ``params`` wrong. (Other
    ``name`` keys, a source's or a dataset configuration's, decide nothing beside them.)"""
    selects = re.fullmatch(r"(search\.strategies\[\d+\])\.name|(.*\.loader)\.type", override)
    if selects is None:
        return False
    parent = selects.group(1) or selects.group(2)
    return key.startswith(parent + ".")


def same_branch(a: str, b: str) -> bool:
    """Whether key paths ``a`` and ``b`` are equal or one lies under the other (an
    override ``foo.bar=1`` makes the unknown key ``foo``)."""
    return a == b or any(long.startswith((short + ".", short + "[")) for short, long in ((a, b), (b, a)))
