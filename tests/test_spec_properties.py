"""Property-based tests (hypothesis) of the spec's YAML reading: the lines of key paths
(anchors, aliases, `<<` merges), the duplicate-key check, and ``key=value`` overrides.

Documents are generated as a tree, written out as block YAML by :func:`_emit` (which
notes the line of every ``<<``), and what the loader must read is worked out from the
tree by :func:`_expected` with YAML's merge rules: a mapping's own keys win, then the
first mapping merged (of a ``[*a, *b]`` list, or of several ``<<`` keys), each merged
mapping's own merges below its keys. Every scalar written is a distinct number, so the
line a key path is attributed to can be checked by the value written there."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subsetctl.errors import SpecError, path_not_found_note, shell_arg
from subsetctl.spec import (
    _as_written_hint,
    _UniqueKeyLoader,
    apply_overrides,
    format_path,
    key_lines,
    line_of_key,
    merged_keys,
    override_value,
    parse_key_path,
    validate_data,
)

PROPERTY = settings(max_examples=200, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# one-character keys and longer ones: PyYAML 6.0.4 merged the two differently
KEYS = ["a", "b", "x", "lr", "steps", "name", "max_examples"]


@dataclass(eq=False)
class Map:
    own: list[tuple[str, Any]]
    merges: list[list[str]]          # one entry per `<<`: the anchors it names
    as_list: list[bool]              # per `<<`: written as [*a] (a list) or *a
    merge_lines: list[int] = field(default_factory=list)  # filled in by _emit


@dataclass(eq=False)
class Seq:
    items: list[Any]


@dataclass(eq=False)
class Alias:
    name: str


@st.composite
def _documents(draw: st.DrawFn) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Anchored mappings ``base0: &base0`` (each may merge the earlier ones) and then the
    keys that use them, by merges and by aliases."""
    counter = itertools.count(1)
    anchors: list[str] = []
    defs: dict[str, Any] = {}

    def value(depth: int) -> Any:
        choices = ["scalar", "scalar"]
        if depth < 3:
            choices += ["map", "seq"]
        if anchors:
            choices.append("alias")
        kind = draw(st.sampled_from(choices))
        if kind == "scalar":
            return next(counter)
        if kind == "map":
            return mapping(depth + 1)
        if kind == "alias":
            return Alias(draw(st.sampled_from(anchors)))
        items = []
        for _ in range(draw(st.integers(1, 3))):
            items.append(mapping(depth + 1) if depth < 3 and draw(st.booleans()) else next(counter))
        return Seq(items)

    def mapping(depth: int) -> Map:
        keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=4))
        merges: list[list[str]] = []
        as_list: list[bool] = []
        if anchors:
            for _ in range(draw(st.integers(0, 2))):
                merges.append(draw(st.lists(st.sampled_from(anchors), min_size=1, max_size=3)))
                as_list.append(len(merges[-1]) > 1 or draw(st.booleans()))
        if not keys and not merges:
            keys = [draw(st.sampled_from(KEYS))]
        return Map([(k, value(depth)) for k in keys], merges, as_list)

    top: list[tuple[str, Any]] = []
    for i in range(draw(st.integers(1, 3))):
        name = f"base{i}"
        node = mapping(1)
        top.append((f"{name}: &{name}", node))
        defs[name] = node
        anchors.append(name)
    for i in range(draw(st.integers(1, 3))):
        top.append((f"use{i}:", value(0) if draw(st.booleans()) else mapping(1)))
    return top, defs


def _emit(top: list[tuple[str, Any]]) -> str:
    lines: list[str] = []

    def put_map(node: Map, indent: int, first_prefix: str | None = None) -> None:
        """Write ``node``'s pairs at ``indent``; the first line may start with ``- ``."""
        slots = sorted((i * 7 + len(node.own)) % (len(node.own) + 1) for i in range(len(node.merges)))
        entries: list[tuple[str, Any]] = []  # the merges go between the keys, anywhere, in their order
        merge = iter(range(len(node.merges)))
        for j in range(len(node.own) + 1):
            entries += [("<<", next(merge)) for slot in slots if slot == j]
            entries += node.own[j:j + 1]
        for n, (key, val) in enumerate(entries):
            lead = first_prefix if n == 0 and first_prefix is not None else " " * indent
            if key == "<<":
                names = node.merges[val]
                written = ("[" + ", ".join(f"*{a}" for a in names) + "]" if node.as_list[val]
                           else f"*{names[0]}")
                lines.append(f"{lead}<<: {written}")
                node.merge_lines.append(len(lines))
            else:
                put_value(f"{lead}{key}:", val, indent)

    def put_value(head: str, val: Any, indent: int) -> None:
        if isinstance(val, int):
            lines.append(f"{head} {val}")
        elif isinstance(val, Alias):
            lines.append(f"{head} *{val.name}")
        elif isinstance(val, Map):
            lines.append(head)
            put_map(val, indent + 2)
        else:
            lines.append(head)
            for item in val.items:
                if isinstance(item, Map):
                    put_map(item, indent + 4, " " * (indent + 2) + "- ")
                else:
                    lines.append(f"{' ' * (indent + 2)}- {item}")

    for head, val in top:
        put_value(head, val, 0)
    return "\n".join(lines) + "\n"


def _expected(top: list[tuple[str, Any]], defs: dict[str, Any]) -> tuple[dict[str, Any], dict[tuple, int]]:
    """What YAML reads from the tree, and the line of the (outermost) ``<<`` that brought
    each merged key path in."""
    merged: dict[tuple, int] = {}

    def pairs(node: Map) -> list[tuple[str, Any, int | None]]:  # winners first
        out: list[tuple[str, Any, int | None]] = [(k, v, None) for k, v in node.own]
        for names, line in zip(node.merges, node.merge_lines, strict=True):
            for name in names:
                out += [(k, v, line) for k, v, _ in pairs(defs[name])]  # the `<<` in this mapping
        return out

    def build(val: Any, path: tuple, via: int | None) -> Any:
        if isinstance(val, int):
            return val
        if isinstance(val, Alias):
            return build(defs[val.name], path, via)
        if isinstance(val, Seq):
            out = []
            for i, item in enumerate(val.items):
                if via is not None:
                    merged[path + (i,)] = via
                out.append(build(item, path + (i,), via))
            return out
        result: dict[str, Any] = {}
        for key, item, line in pairs(val):
            if key in result:
                continue
            at = via if via is not None else line
            if at is not None:
                merged[path + (key,)] = at
            result[key] = build(item, path + (key,), at)
        return result

    data = {head.split(":")[0]: build(val, (head.split(":")[0],), None) for head, val in top}
    return data, merged


def _paths(data: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    out = [(path, data)] if path else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _paths(value, path + (i,))
    return out


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # what read_yaml reads a spec with


@PROPERTY
@given(_documents())
def test_merges_are_read_as_yaml_defines_them_and_every_key_path_has_its_line(
        doc: tuple[list[tuple[str, Any]], dict[str, Any]]) -> None:
    """The spec loader reads merges as YAML says (own keys, then the first mapping merged,
    win: PyYAML 6.0.4 let the last one win for keys longer than one character), and
    key_lines gives every key path the line that writes the value kept; merged_keys the
    ``<<`` that brought it in; line_of_key falls back to the deepest written part."""
    top, defs = doc
    text = _emit(top)
    data = _load(text)
    expected, expected_merges = _expected(top, defs)
    assert data == expected, text
    written = text.splitlines()
    lines = key_lines(text)
    for path, value in _paths(data):
        assert path in lines, (path, text)
        line = written[lines[path] - 1]
        last = path[-1]
        if isinstance(last, str):
            pattern = rf"(^|[\s-]){re.escape(last)}:"
            if isinstance(value, int):  # the value kept is the one written on that line
                pattern += rf" ({value}|\*\w+)$"
            assert re.search(pattern, line), (path, value, lines[path], line, text)
        else:
            assert line.lstrip().startswith("- "), (path, line, text)
            if isinstance(value, int):
                assert line.endswith(f"- {value}"), (path, value, line, text)
        assert line_of_key(path, lines) == lines[path]
        assert line_of_key((*path, "not_written", 3), lines) == lines[path]
    assert line_of_key(("never_written",), lines) is None
    assert set(lines) <= {path for path, _ in _paths(data)}, text  # no path the data does not have
    assert merged_keys(text) == expected_merges, text


_PART = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,8}", fullmatch=True),
                  # (a part that begins with a quote is an override's quoted name, sources."2024".x: not a plain one)
                  st.text(st.characters(blacklist_characters=".[]=", blacklist_categories=("Cs", "Zs", "Cc")),
                          min_size=1, max_size=6).filter(lambda part: not part.lstrip().startswith(("'", '"'))),
                  st.integers(0, 50))


@PROPERTY
@given(st.lists(_PART, min_size=1, max_size=6).filter(lambda p: isinstance(p[0], str)))
def test_format_path_and_parse_key_path_round_trip(parts: list[str | int]) -> None:
    written = format_path(tuple(parts))
    assert parse_key_path(written) == [p.strip() if i == 0 and isinstance(p, str) else p
                                       for i, p in enumerate(parts)] or written != written.strip()


@PROPERTY
@given(st.recursive(st.integers(0, 5) | st.text(max_size=4),
                    lambda inner: st.lists(inner, min_size=1, max_size=3)
                    | st.dictionaries(st.sampled_from(KEYS), inner, min_size=1, max_size=3), max_leaves=12),
       st.data())
def test_an_override_sets_the_value_at_its_path_and_nothing_else(tree: Any, data: st.DataObject) -> None:
    """``path=value`` sets exactly that path, for every path of a document (list items by
    ``[i]``); the original is not changed."""
    spec = {"root": tree}
    path, _ = data.draw(st.sampled_from(_paths(spec)))
    new = data.draw(st.integers(1000, 2000))
    before = repr(spec)
    out = apply_overrides(spec, [f"{format_path(path)}={new}"])
    assert repr(spec) == before
    node: Any = out
    for part in path:
        node = node[part]
    assert node == new
    for other, value in _paths(spec):
        if other[: len(path)] != path and path[: len(other)] != other:
            node = out
            for part in other:
                node = node[part]
            assert node == value


@PROPERTY
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12))
def test_an_override_value_is_yaml_or_the_text_as_given(raw: str) -> None:
    """The value is what YAML reads (never an exception), or the text itself when YAML
    cannot read it or would drop a `#` comment of it."""
    value = override_value(raw)
    try:
        yaml_value = yaml.safe_load(raw)
    except yaml.YAMLError:
        assert value == raw
        return
    assert value == (raw if raw == "" else yaml_value) or value == raw


@pytest.mark.parametrize(("raw", "value"), [
    ("yes", True), ("off", False), ("0042", 34), ("1e3", "1e3"), ("1.0e+3", 1000.0), ("~", None),
    ("'yes'", "yes"), ('"0042"', "0042"), ("", ""), ("  ", "  "), ("\t", "\t"), ("x #1", "x #1"), ("#1", "#1"), ("héllo", "héllo"),
    ("[1, 2]", [1, 2]), ("{a: 1}", {"a": 1}), ("a: b", {"a": "b"}),
])
def test_override_values_yaml_reads_specially(raw: str, value: Any) -> None:
    assert override_value(raw) == value and type(override_value(raw)) is type(value)


@pytest.mark.parametrize("override", [
    "sources[5].max_examples=1", "sources[0].loader.path.x=1", "sources.0.name=x", "a..b=1", "=1",
    "[0]=1", "noequals", "target.name[0]=x", "sources[0][0]=1",
])
def test_overrides_of_paths_that_cannot_exist_are_user_errors(override: str) -> None:
    data = {"sources": [{"name": "s", "loader": {"type": "jsonl", "path": "s.jsonl"}}], "target": {"name": "t"}}
    with pytest.raises(SpecError):
        apply_overrides(data, [override])


def test_an_override_value_nested_too_deeply_is_a_user_error() -> None:
    """Raised RecursionError: "internal error" from `validate . 'x=[[[[...'`."""
    with pytest.raises(SpecError, match="nested too deeply"):
        apply_overrides({}, ["project.name=" + "[" * 3000 + "]" * 3000])


def test_overrides_create_missing_mappings_and_keep_unicode() -> None:
    out = apply_overrides({}, ["a.b.c.d=1", "project.name=Café 日本", "a.b.e=~"])
    assert out == {"a": {"b": {"c": {"d": 1}, "e": None}}, "project": {"name": "Café 日本"}}


# ------------------------------------------------------------------ duplicate keys


@PROPERTY
@given(st.lists(st.sampled_from(["1", "'1'", "1.0", "true", "yes", "~", "null", "a", "'a'", "b", "<<"]),
                min_size=1, max_size=5))
def test_a_key_given_twice_in_one_mapping_is_refused_and_only_then(keys: list[str]) -> None:
    """A mapping whose own keys YAML reads as equal is refused (a merge key is no key);
    keys differing in type (1 and "1") are two keys."""
    text = "base: &base {z: 0}\nm:\n" + "".join(
        f"  {k}: *base\n" if k == "<<" else f"  {k}: {i}\n" for i, k in enumerate(keys))
    read = [yaml.safe_load(f"{k}: 0") for k in keys if k != "<<"]
    distinct = {(type(next(iter(r))), next(iter(r))) if not isinstance(next(iter(r)), bool | int | float)
                else ("number", next(iter(r))) for r in read}
    if len(distinct) < len(read):
        with pytest.raises(yaml.YAMLError, match="duplicate key"):
            _load(text)
    else:
        assert len(_load(text)["m"]) == len(read) + ("<<" in keys)


def test_a_duplicate_inside_an_anchor_is_refused() -> None:
    with pytest.raises(yaml.YAMLError, match="duplicate key x"):
        _load("base: &b\n  x: 1\n  x: 2\nuse:\n  <<: *b\n")
    with pytest.raises(yaml.YAMLError, match="duplicate key x"):  # written in place: read nowhere else
        _load("use:\n  <<: &b {x: 1, x: 2}\n")
    with pytest.raises(yaml.YAMLError, match="duplicate key null"):
        _load("~: 1\nnull: 2\n")


def test_an_anchored_mapping_merged_where_it_is_defined_is_no_duplicate() -> None:
    """PyYAML rewrote the mapping ``b`` while merging it into ``m`` (the keys ``b`` merges
    put among its own), so reading ``b`` then found `x` twice; and ``m.x`` was ``c``'s 1."""
    text = "m:\n  c: &c {x: 1}\n  b: &b {<<: *c, x: 2}\n  <<: *b\n"
    assert _load(text) == {"m": {"x": 2, "c": {"x": 1}, "b": {"x": 2}}}
    assert key_lines(text)[("m", "x")] == 3


# ------------------------------------------------------------------ error messages


@PROPERTY
@given(st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")), min_size=1, max_size=8)
       | st.sampled_from(["!!int", "!!float", "!!bool", "!!timestamp", "*n", "&n", "%x", "0042", "2.10", "+5",
                          "0x1F", "1_000", "190:20:30"]),
       st.integers(-50, 50) | st.floats(allow_nan=False, allow_infinity=False))
def test_the_as_written_hint_never_fails_and_quotes_what_yaml_reads_as_the_value(written: str, value: Any) -> None:
    """`name: !!int 3` and `name: *n` (an anchored number) failed `validate` with an
    internal error: the hint read the tag or the alias alone as YAML."""
    message = f'expected text, got the number {value!r} (quote it to keep it text, e.g. "{value}")'
    out = _as_written_hint(message, value, ("project", "name"), 1, f"  name: {written} # c\n")
    if out != message:
        assert f'as written: "{written}"' in out and yaml.safe_load(written) == value


def test_a_tag_or_an_alias_given_for_text_is_reported_not_an_internal_error() -> None:
    for written in ("!!int 3", "*n"):
        text = f"n: &n 5\nproject:\n  name: {written}\n"
        _, issues = validate_data(_load(text), "subsetctl.yaml", text)
        assert any(i.key == "project.name" and "expected text" in i.message for i in issues), issues


# ------------------------------------------------------------------ errors.py helpers


@PROPERTY
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20))
def test_shell_arg_is_one_shell_word_naming_the_same_file(path: str) -> None:
    import shlex

    words = shlex.split(shell_arg(path))
    assert words == [f"./{path}" if path.startswith("-") else path]


@PROPERTY
@given(st.text(max_size=20), st.from_regex(r"\$\{?[A-Za-z_][A-Za-z0-9_]{0,6}\}?", fullmatch=True))
def test_unexpanded_variable_note_names_a_variable_in_the_path(prefix: str, variable: str) -> None:
    assert path_not_found_note("/no/vars/here") == ""
    note = path_not_found_note(prefix.replace("$", "") + variable)
    assert note.startswith(". $") and "does not expand environment variables" in note


@pytest.mark.parametrize("depth", [65, 1471])
def test_flow_collections_nested_past_the_limit_are_refused_before_the_scanner_crawls(
    tmp_path, depth: int
) -> None:
    """PyYAML's pure-Python scanner re-checks every open bracket at each token: a spec or
    an override of `[[[[...` a thousand deep took ~5 s to end in a RecursionError (a fuzz
    test's deadline under load). Refused past 64 levels, far deeper than any spec."""
    from subsetctl.spec.reading import read_yaml
    from subsetctl.spec.yaml_depth import MAX_FLOW_DEPTH

    nested = "[" * depth + "]" * depth
    spec = tmp_path / "subsetctl.yaml"
    spec.write_text(f"x: {nested}\n")
    with pytest.raises(SpecError, match="nested too deeply"):
        read_yaml(spec)
    with pytest.raises(SpecError, match="nested too deeply"):
        apply_overrides({}, [f"project.name={nested}"])
    deepest = "[" * MAX_FLOW_DEPTH + "]" * MAX_FLOW_DEPTH
    spec.write_text(f"x: {deepest}\n")
    assert read_yaml(spec)[0]["x"] is not None and override_value(deepest) is not None  # at the limit: read


def test_an_override_value_whose_aliases_expand_past_the_limit_is_refused() -> None:
    """A spec file's aliases were counted ("billion laughs"), an override value's not: eight
    levels of nine aliases, a few hundred characters on a command line, took 0.5 GB and 18 s
    to be refused as no text, and each level more ten times that. Refused as a spec file's
    are; an alias or two is still read."""
    levels = ["&l0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 8)]
    with pytest.raises(SpecError, match="aliases .* more than 1,000,000 values"):
        apply_overrides({}, [f"project.name=[{', '.join(levels)}]"])
    assert override_value("[&a x, *a]") == ["x", "x"]


def test_key_lines_read_by_libyaml_are_those_the_pure_python_loader_reads() -> None:
    """key_lines composes a spec with libyaml where PyYAML has it (ten times as fast: a spec of
    2,000 sources took a quarter of `validate` to read twice with the pure-Python loader); the
    lines and merges it finds are the same, and a document libyaml refuses is read by the
    pure-Python loader as before."""
    from subsetctl.spec import issues

    text = ("base: &b\n  loader: {type: jsonl, path: a.jsonl}\n  max_examples: 3\n"
            "sources:\n  - <<: *b\n    name: a\n  - name: b\n    <<: [*b]\n    max_examples: 4\n"
            "target:\n  name: t\n  split: {train: 1}\n")
    fast = issues._key_lines_of.__wrapped__(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(issues, "_FAST_LINE_LOADER", None)
        assert issues._key_lines_of.__wrapped__(text) == fast
    assert fast[0][("sources", 1, "max_examples")] == 9 and fast[0][("sources", 0, "loader", "path")] == 2
    assert fast[1][("sources", 1, "loader")] == 8 and ("sources", 1, "max_examples") not in fast[1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(issues, "_FAST_LINE_LOADER", type("Refusing", (yaml.SafeLoader,), {
            "compose_document": lambda self: (_ for _ in ()).throw(yaml.YAMLError("refused"))}))
        assert issues._key_lines_of.__wrapped__(text) == fast


LIBYAML = pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False), reason="PyYAML without libyaml")


def _fast_load(text: str) -> Any:
    """``text`` read by the spec's libyaml loader alone, as :func:`~subsetctl.spec.reading._spec_data`
    first tries it (None where that one is missing)."""
    from subsetctl.spec import reading
    from subsetctl.spec.yaml_depth import safe_load_limited

    assert reading._FAST_UNIQUE_KEY_LOADER is not None and not reading._READ_OTHERWISE_BY_LIBYAML.search(text), text
    return safe_load_limited(text, reading._FAST_UNIQUE_KEY_LOADER)


@LIBYAML
@PROPERTY
@given(_documents())
def test_the_libyaml_spec_loader_reads_merges_and_aliases_as_the_pure_python_one(
        doc: tuple[list[tuple[str, Any]], dict[str, Any]]) -> None:
    """A spec is composed by libyaml where PyYAML has it (a spec of 2,000 sources read in a
    quarter of the CPU): the documents of merges and aliases above, which it reads itself (no
    fallback), give what the pure-Python loader gives and YAML defines."""
    top, defs = doc
    text = _emit(top)
    assert _fast_load(text) == _load(text) == _expected(top, defs)[0], text


#: pieces of YAML, with those libyaml reads otherwise than the pure-Python reader (tags, ``?`` in
#: flow collections, block scalar headers, a BOM inside the text, tabs, directives)
_PIECES = ["a", "b", "1", ":", ": ", " ", "  ", "\n", "\n  ", "- ", "-", "[", "]", "{", "}", ",", "'", '"', "#",
           "&x", "*x", "<<", "?", "!", "!!str ", "|", ">", "%", "\t", "\\", "...", "---", "\r", "\u2028", "\x85",
           "\ufeff", "\x07", "é", "~", "="]


def _outcome(read: Any, text: str) -> tuple[Any, ...]:
    """What ``read(text)`` gives: ("data", its repr) or ("error", its type and message)."""
    try:
        return "data", repr(read(text))
    except Exception as exc:  # noqa: BLE001 (what either loader raises is compared, whatever it is)
        return "error", type(exc).__name__, str(exc)


@LIBYAML
@settings(max_examples=3000, derandomize=True, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=25))
def test_a_text_reads_the_same_with_libyaml_as_with_the_pure_python_loader(pieces: list[str]) -> None:
    """Random texts, mostly malformed, give the spec reader the data or the error the pure-Python
    loader gives: what libyaml would read otherwise (found this way: ``!`` alone null to one and
    "" to the other, ``[a?b]``, ``|#``, a BOM past the start) is left to the pure-Python loader."""
    from subsetctl.spec.reading import _spec_data, _UniqueKeyLoader
    from subsetctl.spec.yaml_depth import safe_load_limited

    text = "".join(pieces)
    assert _outcome(_spec_data, text) == _outcome(lambda t: safe_load_limited(t, _UniqueKeyLoader), text)


@LIBYAML
@pytest.mark.parametrize("text", [
    'x: {"a":! }\n',  # a tag right after a JSON-like key's ':': libyaml "", the pure-Python reader null
    'x: {"a":!, }\n',  # libyaml "", the pure-Python reader refuses it
    "x: ! \n",
    "x: [a?b]\n",
])
def test_a_text_libyaml_reads_otherwise_gets_the_pure_python_loaders_data(text: str) -> None:
    """Where libyaml reads a text otherwise than the pure-Python loader, the spec reader gives
    what the pure-Python loader gives (the data, or the error)."""
    from subsetctl.spec.reading import _spec_data, _UniqueKeyLoader
    from subsetctl.spec.yaml_depth import safe_load_limited

    assert _outcome(_spec_data, text) == _outcome(lambda t: safe_load_limited(t, _UniqueKeyLoader), text)


_GOOD = "target:\n  name: t\n  loader: {type: jsonl, path: t.jsonl}\nsources:\n  - name: a\n"


@LIBYAML
@pytest.mark.parametrize("text", [
    _GOOD + "  - name: b\n    name: c\n",  # a key twice
    _GOOD + "  - <<: {name: b, name: c}\n",  # twice in a mapping merged in place
    _GOOD + "  - {~: 1, null: 2}\n",  # null twice
    _GOOD + "x: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 7)),  # aliases past the limit
    _GOOD + "x: &a [*a]\n",  # an alias inside its own anchor
    _GOOD + "x: " + "[" * 65 + "]" * 65 + "\n",  # flow past the limit
    _GOOD + "x:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 600)),  # block nested past the recursion limit
    _GOOD + "x: 2024-13-45\n",  # a date YAML cannot make
    _GOOD + "x: [1, 2\ny: 3\n",  # an unclosed bracket
    _GOOD + "   - name: b\n",  # mis-indented
    _GOOD + "x: {a: 1 b: 2}\n",  # a comma missing
    _GOOD + "x: !!python/object:os.system 1\n",  # a tag no safe loader makes
    _GOOD + "x: !foo 1\n",
    _GOOD + "x: [a?b]\n",  # libyaml: text; the pure-Python scanner: a key
    "\ufeff" + _GOOD + "x: [a?b]\n",  # (libyaml's marks leave the byte-order mark out)
    _GOOD + "x: |#\n  a\n",  # libyaml reads a block scalar
    _GOOD + "x:\t1\n",  # a tab after a value
    _GOOD + "---\nx: 1\n",  # two documents
    "- a\n- b\n",  # no mapping
])
def test_a_bad_spec_gets_the_same_error_with_or_without_libyaml(tmp_path, text: str) -> None:
    """read_yaml composes a spec with libyaml where PyYAML has it; what it refuses, or libyaml
    cannot read as the pure-Python loader does, is read by the pure-Python loader: the same
    message and line as when PyYAML has no libyaml."""
    from subsetctl.spec import reading

    spec = tmp_path / "subsetctl.yaml"
    spec.write_text(text)
    with pytest.raises(SpecError) as with_libyaml:
        reading.read_yaml(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reading, "_FAST_UNIQUE_KEY_LOADER", None)
        with pytest.raises(SpecError) as without:
            reading.read_yaml(spec)
    assert str(with_libyaml.value) == str(without.value)
    assert getattr(with_libyaml.value, "line", None) == getattr(without.value, "line", None)
