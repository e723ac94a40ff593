"""Reading a spec: YAML loaded safely (duplicate keys, aliases that expand too far and
encodings refused with the line), validated into a :class:`Spec` with its issues,
``source_files`` expanded into sources, overrides applied (:func:`load_spec`).
"""

from __future__ import annotations

import errno
import os
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from subsetctl.errors import (
    OTHER_UNICODE_FORM,
    SpecError,
    SpecFileError,
    as_typed,
    count_agreeing,
    in_another_form,
    missing_path_note,
    name_too_long_note,
    name_too_long_problem,
    path_not_found_note,
    printable,
    shown_text,
)
from subsetctl.globbing import (
    UnwalkablePattern,
    folder_as_pattern_note,
    literal_folder_note,
    missing_folder_note,
    resolved_by_folder,
)
from subsetctl.spec.issues import (
    _MERGE_TAG,
    SpecIssue,
    issues_from_validation,
    issues_text,
    key_lines,
    line_of_key,
    meant_key,
)
from subsetctl.spec.models import SPEC_FILENAME, SourceFilesSpec, Spec, where_text
from subsetctl.spec.overrides import (
    apply_overrides,
    indexed_overrides,
    override_without_value_note,
    parse_key_path,
)
from subsetctl.spec.yaml_depth import (
    _MAX_ALIAS_EXPANSION,
    LIBYAML_SAFE_LOADER,
    AliasesExpandTooFarError,
    FlowDepthLimitedLoader,
    FlowTooDeepError,
    LibyamlDepthLimitedLoader,
    safe_load_limited,
)
from subsetctl.user_paths import expand_home


def _missing_spec_advice(path: Path) -> str:
    """What to do about a spec file that is not there: for a project's ``subsetctl.yaml``, the
    `init` of that very folder, or, when the folder lies inside a project (`validate` run in
    its data folder), that project, as `plan` and `run` name it; for a name without a YAML
    suffix (a project folder not made yet), the `init` of that folder; "DIR" otherwise. A path
    written as on Windows (``proj\\v2``) gets the path to write instead: `init` refuses it."""
    from subsetctl.errors import shell_arg, standard_input_note, windows_path_note
    from subsetctl.overview import sweep_projects
    from subsetctl.project import enclosing_project, named_as_yaml, projects_named, spec_beside

    if standard_input_note(path):
        return f"{standard_input_note(path)}."
    if windows_path_note(path):
        return f"{windows_path_note(path)}."
    if override_without_value_note(path):  # `validate . meta_init.steps`: not "create one with `init meta_init.steps`"
        return f"{override_without_value_note(path)}."
    if path.name != SPEC_FILENAME:
        beside = spec_beside(path)
        if beside is not None:  # `validate proj/subsetctl.yml`
            return f", but {beside} is there: `subsetctl validate {shell_arg(path.parent)}` checks it."
        if named_as_yaml(path):
            return ". Create one with `subsetctl init DIR`."
        return f". Create a project there with `subsetctl init {shell_arg(path)}`."
    folder = path.parent
    enclosing = enclosing_project(folder) if folder.is_dir() else None
    if enclosing is not None:
        return (f": {folder} is inside the project {enclosing}. Name that one "
                f"(`subsetctl validate {shell_arg(enclosing)}`), or create a project here with "
                f"`subsetctl init {shell_arg(folder)}`.")
    below = sweep_projects(folder)[0] if folder.is_dir() else []  # (nested too: sweep/lam0.1/seed0, as `ls` finds them)
    if below:  # `validate` in the folder `subsetctl init myproject` was typed in
        return (f", but {projects_named(below)} {'is a project' if len(below) == 1 else 'are projects'}"
                f" in {folder}: name {'it' if len(below) == 1 else 'one'} (`subsetctl validate {shell_arg(below[0])}`), "
                f"or create one here with `subsetctl init {shell_arg(folder)}`.")
    return f". Create one with `subsetctl init {shell_arg(folder)}`."


def spec_folder_message(folder: Path) -> str:
    """The error for a project ``folder`` whose spec file (its ``subsetctl.yaml``) is a folder."""
    from subsetctl.errors import shell_arg

    return (f"{folder / SPEC_FILENAME} is a folder, not a spec file: move or rename it, then create the spec with "
            f"`subsetctl init {shell_arg(folder)}`.")


def read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    """Read a spec file with the safe loader: its mapping and its text (for the lines of
    keys); errors name the file and line."""
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise SpecFileError(path, f"no such spec file{missing_path_note(path, 'the command')}"
                                  f"{_missing_spec_advice(path)}") from None
    except IsADirectoryError:
        if path.name == SPEC_FILENAME:  # (it was "give the spec file (usually subsetctl.yaml)", the name it has)
            raise SpecError(spec_folder_message(path.parent)) from None
        raise SpecError(f"{path} is a directory; give the spec file (usually {SPEC_FILENAME}).") from None
    except OSError as exc:
        why = (name_too_long_note(exc) if exc.errno == errno.ENAMETOOLONG else
               ": give your user read permission on it (`chmod a+r`), or copy the project somewhere you can read it."
               if exc.errno in (errno.EACCES, errno.EPERM) else ".")
        raise SpecFileError(path, f"cannot read the spec file: {exc.strerror}{why}") from None
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        from subsetctl.data.loaders import utf16_note  # (the data loaders import subsetctl.spec)

        raise SpecFileError(path, f"the spec is not valid UTF-8 (byte {exc.start}{utf16_note(raw_bytes[:2])}). "
                                  f"{_data_file_note(path, 'not UTF-8') or 'Save it as UTF-8.'}", raw_bytes.count(b"\n", 0, exc.start) + 1) from None
    if "\x00" in text:  # valid UTF-8, which YAML refuses as "unacceptable character #x0000"
        at = text.index("\x00")
        raise SpecFileError(path, f"the spec has NUL bytes (the first at byte {len(text[:at].encode())}), as UTF-16 "
                                  "text without a byte-order mark has, or a file that is not text. "
                                  f"{_data_file_note(path, 'NUL bytes') or 'Save it as UTF-8.'}", text.count("\n", 0, at) + 1)
    try:
        data = _spec_data(text)
    except AliasesExpandTooFarError:
        raise SpecFileError(
            path, f"its aliases (*name) repeat what they refer to into more than {_MAX_ALIAS_EXPANSION:,} "
            "values, far more than any spec holds (nested aliases grow exponentially; an alias inside "
            "its own anchor repeats without end). Use each anchor only where it is needed.") from None
    except _DuplicateKeyError as exc:
        raise SpecFileError(
            path, f"key {exc.key_path!r} appears twice in one mapping (lines {exc.first_line} and {exc.line}); "
            "YAML would silently keep only the last one. Merge the two into one.", exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "'\\t'" in problem and mark is not None:  # "found character '\t' that cannot start any token"
            problem += _tab_advice(text, mark.line, mark.column)
        elif mark is not None:
            opened = getattr(exc, "context_mark", None)
            problem += _parser_advice(problem, mark.line, opened.line if opened is not None else None)
        raise SpecFileError(path, f"malformed YAML: {problem}. {_data_file_note(path, problem) or 'Fix the syntax and retry.'}",
                            mark.line + 1 if mark is not None else None) from None
    except (RecursionError, FlowTooDeepError):
        raise SpecFileError(path, "the YAML is nested too deeply to be a spec. Fix the file and retry.") from None
    except ValueError as exc:  # `name: 2024-13-45`: a date YAML cannot make (was an internal error)
        node = _unmade_scalar(text)
        what = {"tag:yaml.org,2002:timestamp": "a date", "tag:yaml.org,2002:int": "a whole number",
                "tag:yaml.org,2002:float": "a number"}.get(node.tag, "a value") if node is not None else "a value"
        shown = f"{node.value if len(node.value) <= 40 else node.value[:40] + '...'!r} " if node is not None else ""
        raise SpecFileError(path, f"YAML reads the value {shown}as {what} it cannot make ({exc}): quote it to keep it "
                                  "text, or write it right.", node.start_mark.line + 1 if node is not None else None) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        data_file = _data_file_note(path)
        raise SpecFileError(
            path, "the spec must be a YAML mapping of keys (project, model, target, "
            f"sources, ...), not a {type(data).__name__}.{' ' + data_file if data_file else ''}"
        )
    if _data_file_note(path) and not _has_a_spec_section(data) and not _shaped_like_a_spec(data, path):  # one-line .jsonl
        keys = ", ".join(printable(str(key)) for key in list(data)[:5]) + (", ..." if len(data) > 5 else "")
        raise SpecFileError(path, f"this holds no section of a spec (its keys: {keys or 'none'}). "
                                  f"{_data_file_note(path)}", 1)
    return data, text


def _has_a_spec_section(data: dict[Any, Any]) -> bool:
    """Whether ``data`` holds a top-level key of the spec, or a misspelling of one that the
    unknown-key advice would name (``modle``, ``sourcse``; in any case, ``MODEL``), whose value is a section (a mapping
    or a list: ``target: {...}``, ``sources: [...]``). A one-line JSON Lines file read as YAML is
    a mapping too (``{"prompt": ..., "response": ...}``), and was refused key by key ("prompt:
    unknown key"), where a longer one was told it is a data file; a record with a ``target``
    text field is no spec either. A spec written in JSON whose sections are all misspelled is a
    spec, refused key by key with the keys meant (it was told it looks like a data file)."""
    sections = list(Spec.model_fields)
    return any(isinstance(value, (dict, list)) and (str(key).lower() in sections or meant_key(str(key).lower(), sections))
               for key, value in data.items())  # (in any case: `MODEL`, `Sources`)


def _shaped_like_a_spec(data: dict[Any, Any], path: Path) -> bool:
    """Whether ``data``, whose keys are no spec section nor a misspelling of one, has a spec's
    shape all the same: every value a mapping (sections; a data record holds text, ``{"prompt":
    ..., "meta": {...}}``), or a value that is, or lists, a mapping with a ``loader`` (a source's
    or the target's, under a name of the user's: ``datasets: [{name: a, loader: ...}]``). Such a
    spec in JSON (``basemodel``, ``goal``, ``datasets``) was told it looks like a data file; it is
    refused key by key, its keys named, as a YAML one is. Chat ``messages`` (mappings without a
    ``loader``) are still a data record. Only a name a spec written in JSON may have
    (:data:`_SPEC_AS_TEXT_SUFFIXES`) counts: a one-record ``.jsonl`` file whose values are all
    mappings was refused key by key as a spec ("meta: unknown key"), where it is data."""
    def has_a_loader(value: Any) -> bool:
        return isinstance(value, dict) and "loader" in value

    if not path.name.lower().endswith(_SPEC_AS_TEXT_SUFFIXES):
        return False
    if data and all(isinstance(value, dict) for value in data.values()):
        return True
    return any(has_a_loader(value) or (isinstance(value, list) and any(has_a_loader(item) for item in value))
               for value in data.values())


def _unmade_scalar(text: str) -> yaml.ScalarNode | None:
    """The first value of ``text`` (YAML whose every node reads) that YAML cannot make into
    what its form says (``2024-13-45`` a date, an integer past Python's digits), or None."""
    loader = FlowDepthLimitedLoader(text)
    try:
        todo, seen = [loader.get_single_node()], set()
        while todo:
            node = todo.pop(0)
            if id(node) in seen:  # (an alias: the node it names, once)
                continue
            seen.add(id(node))
            if isinstance(node, yaml.ScalarNode):
                try:
                    loader.construct_object(node)
                except ValueError:
                    return node
            elif isinstance(node, yaml.SequenceNode):
                todo.extend(node.value)
            elif isinstance(node, yaml.MappingNode):
                todo.extend(item for pair in node.value for item in pair)
        return None
    except (yaml.YAMLError, RecursionError, FlowTooDeepError):
        return None
    finally:
        loader.dispose()


#: file name endings of data files, which a spec is not (``validate data.jsonl``)
_DATA_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt", ".gz", ".arrow")

#: of those, the endings a spec written in JSON (which YAML reads) may have; JSON Lines, CSV, ... never hold one
_SPEC_AS_TEXT_SUFFIXES = (".json", ".txt")


def _data_file_note(path: Path, syntax: str | None = None) -> str:
    """What to add to the error of a spec file that does not read as a spec when its name
    ends as a data file's (``subsetctl validate train.jsonl``: "malformed YAML: expected
    '<document start>', but found '{'", with no word that this is no spec): that the command
    takes the spec or the project folder, in place of advice on the file's syntax; "" for
    other names. ``syntax``, the YAML reader's complaint where the file did not parse (or what
    it was not: UTF-8 text): a ``.json`` or ``.txt`` name then counts as a data file's only where
    it held several values one after another ("expected '<document start>'", JSON Lines), as a
    spec written in JSON (YAML reads it) with a syntax error of its own, or saved as UTF-16,
    needs the syntax or UTF-8 advice."""
    if syntax is not None and path.name.lower().endswith(_SPEC_AS_TEXT_SUFFIXES) and "<document start>" not in syntax:
        return ""
    if not path.name.lower().endswith(_DATA_FILE_SUFFIXES):
        return ""
    return (f"{path.name} looks like a data file, not a spec: give the spec file (usually {SPEC_FILENAME}) or the "
            "project folder that holds it; a spec names its data files under target.loader and sources.")


def _tab_advice(text: str, line: int, column: int) -> str:
    """What to say about the tab the YAML reader refused at 0-based ``line`` and ``column``
    of ``text``: one in a line's indentation, or one after its text (``key:<tab>value``, an
    invisible tab at a line's end), which PyYAML refuses too though the line looks right."""
    lines = text.splitlines()
    before = lines[line].lstrip("\ufeff")[:column] if line < len(lines) else ""  # (columns leave a BOM out)
    if not before.strip(" \t"):
        return f" (a tab at column {column + 1}: YAML does not allow tabs for indentation: indent with spaces)"
    return (f" (a tab at column {column + 1}, after {before.strip()!r}: the YAML reader takes no tab between or "
            "after a line's values, only spaces, and one at a line's end is invisible in most editors: "
            "replace it with a space)")


def _parser_advice(problem: str, line: int, opened: int | None = None) -> str:
    """Plain words for the PyYAML parser's messages that a mis-indented line, a missing colon
    or an unclosed ``{...}`` / ``[...]`` gives ("expected <block end>, but found '<block mapping
    start>'", "mapping values are not allowed here", "expected ',' or '}', but got '-'", the
    last on the line after the one to fix), which say neither; "" for others. ``line`` is
    0-based (the column where the parser stopped is often past the colon missing: not said);
    ``opened``, 0-based, is the line where the ``{`` or ``[`` the parser was reading began."""
    for opener, closer in (("{", "}"), ("[", "]")):
        if problem.startswith(f"expected ',' or '{closer}'") and opened is not None:
            where = "" if opened == line else f", likely at the end of line {opened + 1}"
            return (f" (in the '{opener}' opened on line {opened + 1}: a ',' missing between two of its entries, "
                    f"or its closing '{closer}' missing{where})")
    if problem.startswith("expected <block end>"):
        return (f" (the indentation does not line up: line {line + 1}, or the line before it, is indented "
                "more or less than the keys or `- ` items it belongs with; indent the keys of one mapping, "
                "and the items of one list, by the same number of spaces)")
    if problem.startswith("mapping values are not allowed here"):
        return (f" (a ': ' on line {line + 1} where YAML expects no key: a key on it or before it "
                "that lacks its colon (`split {train: 0.5}` for `split: {train: 0.5}`), a line indented deeper "
                "than the keys it belongs with, or a value holding ': ' that needs quotes)")
    return ""


class _DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key_path: str, line: int, first_line: int) -> None:
        super().__init__(f"duplicate key {key_path}")
        self.key_path, self.line, self.first_line = key_path, line, first_line


class _UniqueKeys(yaml.constructor.SafeConstructor):
    """The safe constructor, except that a key given twice in one mapping is an error (plain
    YAML keeps the last one, so half of a spec could vanish without a word). Merge keys
    (``<<: *base``) are YAML's own: the keys they bring in may be given again beside them.
    Mixed into both spec loaders (:class:`_UniqueKeyLoader`, :data:`_FAST_UNIQUE_KEY_LOADER`)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self._check_unique(node)
        flat = yaml.MappingNode(node.tag, self._merged_pairs(node), node.start_mark, node.end_mark,
                                node.flow_style)
        return yaml.constructor.BaseConstructor.construct_mapping(self, flat, deep=deep)

    def _check_unique(self, node: yaml.MappingNode) -> None:
        """Refuse a key given twice among ``node``'s own keys (as Python compares them: 1,
        1.0 and true are one key, 1 and "1" two; ``~`` and ``null`` are both None)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # no value of its own: merged below
                continue
            if key_node.tag == "tag:yaml.org,2002:value":  # a plain `=` key: text, as in PyYAML
                key_node.tag = "tag:yaml.org,2002:str"
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKeyError("null" if key is None else str(key), line, seen[key])
            except TypeError:  # unhashable: the constructor refuses it
                continue
            seen[key] = line

    def _merged_pairs(self, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
        """``node``'s pairs with its merges (``<<``) flattened in, as YAML merges: its own
        keys win, then the first mapping named (of a list, or of several ``<<``), each merged
        mapping's own merges below its keys. One pair per key: the winner.

        Not PyYAML's ``flatten_mapping``: that one rewrites the anchored mappings it merges
        (so one read later held the keys merged into it as duplicates), and PyYAML 6.0.4
        keeps a key of the first merged mapping only when the key's text is one character
        (it compares the key strings by identity): the last merged mapping's value won for
        every longer key, so a spec held another value than the line its errors name."""
        flattened = self.__dict__.setdefault("_flattened", {})  # an anchored mapping merged often: once
        if id(node) in flattened:
            return flattened[id(node)]
        merges: list[yaml.Node] = []
        own: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:  # (each node here went through _check_unique first)
            if key_node.tag != _MERGE_TAG:
                own.append((key_node, value_node))
                continue
            bases = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for base in bases:
                if not isinstance(base, yaml.MappingNode):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"expected a mapping or list of mappings for merging, but found {base.id}",
                        base.start_mark)
                self._check_unique(base)  # one written in place (`<<: {a: 1}`) is read nowhere else
            merges.extend(bases)
        winners: dict[Any, tuple[yaml.Node, yaml.Node]] = {}
        unhashable = []  # the constructor refuses these
        for pair in own + [pair for base in merges for pair in self._merged_pairs(base)]:
            try:
                winners.setdefault(self.construct_object(pair[0], deep=True), pair)
            except TypeError:
                unhashable.append(pair)
        kept = {id(pair) for pair in winners.values()}
        in_order = [pair for base in reversed(merges) for pair in self._merged_pairs(base)] + own
        flattened[id(node)] = [pair for pair in dict.fromkeys(in_order) if id(pair) in kept] + unhashable
        return flattened[id(node)]


class _UniqueKeyLoader(_UniqueKeys, FlowDepthLimitedLoader):
    """The pure-Python spec loader: :class:`_UniqueKeys` on :class:`FlowDepthLimitedLoader`. Its
    errors are the ones :func:`read_yaml` words."""


class _ReadOtherwiseByLibyaml(Exception):
    """A document libyaml may read otherwise than PyYAML's pure-Python reader: that one reads it."""


class _FastUniqueKeyLoader(_UniqueKeys, LibyamlDepthLimitedLoader):
    """:class:`_UniqueKeys` on libyaml's composer (:class:`LibyamlDepthLimitedLoader`). A ``?``
    inside a flow collection (``[a?b]``, ``{?x}``) is refused (``_ReadOtherwiseByLibyaml``): there the
    pure-Python scanner takes every ``?`` as a key's mark, where libyaml reads it as text."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._text = text.removeprefix("\ufeff")  # (libyaml's marks count from after a byte-order mark)

    def get_single_node(self) -> yaml.Node | None:
        root = super().get_single_node()
        if root is not None and "?" in self._text and any(
                "?" in self._text[node.start_mark.index:node.end_mark.index] for node in _flow_collections(root)):
            raise _ReadOtherwiseByLibyaml("a '?' inside a flow collection")
        return root


def _flow_collections(root: yaml.Node) -> list[yaml.CollectionNode]:
    """The collections written in flow style (``[...]``, ``{...}``) in the tree at ``root``, each once."""
    found: list[yaml.CollectionNode] = []
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen or not isinstance(node, yaml.CollectionNode):
            continue
        seen.add(id(node))
        if node.flow_style:  # (the collections inside it are inside its text)
            found.append(node)
        elif isinstance(node, yaml.MappingNode):
            todo.extend(child for pair in node.value for child in pair)
        else:
            todo.extend(node.value)
    return found


#: the spec loader composing with libyaml, where PyYAML has it (:func:`_spec_data` says which texts it reads)
_FAST_UNIQUE_KEY_LOADER = _FastUniqueKeyLoader if LIBYAML_SAFE_LOADER is not None else None

#: what libyaml reads otherwise than PyYAML's pure-Python reader (found by reading random texts with
#: both): a tab (refused after a value); a tag's ``!`` at a value's start, a JSON-like key's ``:`` right
#: before it too (``{"a":! }``; ``!`` alone is null to one and "" to the other); a directive (``%`` at a
#: line's start); a block scalar's ``|`` or ``>`` with a ``#`` right after its header (refused); a
#: byte-order mark past the first character (kept as text); a character the pure-Python reader
#: refuses. (A ``?`` in a flow collection: :class:`_FastUniqueKeyLoader`.)
_READ_OTHERWISE_BY_LIBYAML = re.compile(
    r"\t|(?<![^\s\[\]{},:\ufeff])!|(?m:^%)|[|>][-+0-9]*#|[\s\S]\ufeff|" + yaml.reader.Reader.NON_PRINTABLE.pattern)


def _spec_data(text: str) -> Any:
    """The YAML document ``text`` as a spec is read, with :class:`_UniqueKeys`' checks:
    composed by libyaml where PyYAML has it (a spec of 2,000 sources read in 0.1 s, not 0.4 s
    of CPU; ``key_lines`` composes with libyaml too), unless the text holds something libyaml
    reads otherwise than the pure-Python reader (:data:`_READ_OTHERWISE_BY_LIBYAML`). A text
    libyaml or the checks refuse (a key given twice, aliases expanding too far, nesting past
    ``MAX_FLOW_DEPTH``) is read again by the pure-Python :class:`_UniqueKeyLoader`, whose error
    :func:`read_yaml` words: a spec's errors and their lines are the same either way."""
    if _FAST_UNIQUE_KEY_LOADER is not None and not _READ_OTHERWISE_BY_LIBYAML.search(text):
        try:
            return safe_load_limited(text, _FAST_UNIQUE_KEY_LOADER)
        except (yaml.YAMLError, ValueError, RecursionError, FlowTooDeepError, AliasesExpandTooFarError,
                _ReadOtherwiseByLibyaml):
            pass  # the pure-Python loader's error, not libyaml's wording and line
    return safe_load_limited(text, _UniqueKeyLoader)


def validate_data(data: dict[str, Any], file: str, text: str = "") -> tuple[Spec | None, list[SpecIssue]]:
    """Validate a raw spec dict; returns the Spec or the list of issues.

    ``source_files`` groups are expanded here, against the folder of ``file``: the Spec
    returned lists every source under ``sources`` (groups' after the listed ones) and has
    no groups left, so stages, fingerprints and resolved specs see plain sources."""
    lines = key_lines(text) if text else {}
    if data == {}:  # an empty file (or only comments): "target: required key is missing" said less
        return None, [SpecIssue(file=file, line=None, key="(file)", message=(
            "the spec is empty (no keys, or only comments): it needs a `target` and its `sources` (or "
            "`source_files`); `subsetctl init DIR` writes a commented spec to start from"))]
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        return None, issues_from_validation(exc, file, lines, text)
    if not spec.source_files:
        return spec, []
    return expand_source_files(spec, Path(file).parent, file, lines)


def expand_source_files(
    spec: Spec, spec_dir: Path, file: str, lines: dict[tuple[Any, ...], int]
) -> tuple[Spec | None, list[SpecIssue]]:
    """``spec`` with its ``source_files`` groups turned into sources, one per matched file.

    Problems with an expanded source (a name taken twice, a file name that makes no valid
    source name) are reported under the group's key and line, naming the file."""
    issues: list[SpecIssue] = []
    # dumped as written (exclude_unset): the spec validated again from it knows which keys
    # were written, as validate's warnings ask (a classifier's response_field written)
    entries = [s.model_dump(mode="json", exclude_unset=True) for s in spec.sources]
    origin: dict[int, tuple[int, str]] = {}  # index in the expanded list -> (group, file)
    # the target's own files (its loader's, its test_loader's) are never also sources (the target is
    # always included, and a source of its test rows would leak them): a glob over the data folder may
    # well match them. A file the target reads one task of (a loader's `where` on a `by` group's
    # column: FLAN's file, the target one of its tasks) gives that group its other tasks, not its own
    target_picks: dict[Path, list[dict[str, Any] | None]] = {}  # file -> the `where`s the target reads it with
    readers: dict[tuple[Path, str], str] = {}  # (file, a `where` as text) -> who reads those rows, for the note
    for loader in (spec.target.loader, spec.target.test_loader):
        if getattr(loader, "path", None):
            path, where = _resolved(loader.path, spec_dir), getattr(loader, "where", None)
            target_picks.setdefault(path, []).append(where)
            if where is not None:
                readers.setdefault((path, where_text(where)), f"the target {spec.target.name!r}")
    # likewise a task a listed source reads (`where`): the group gives the file's other tasks, so that one
    # task can have settings of its own (a label_map for its 0/1 labels, which the group's would apply to
    # every task's answers); it was a second source of the same rows
    value_picks = {path: list(wheres) for path, wheres in target_picks.items()}
    for source in spec.sources:
        if getattr(source.loader, "where", None) is not None and getattr(source.loader, "path", None):
            path = _resolved(source.loader.path, spec_dir)
            value_picks.setdefault(path, []).append(source.loader.where)
            readers.setdefault((path, where_text(source.loader.where)), f"source {source.name!r}")
    left_out: list[tuple[int, str]] = []  # (group, note) on rows of a `by` column in no source (null, blank)
    left_to_others: list[tuple[int, str]] = []  # (group, note) on the values the target or listed sources read
    folders: dict[Path, Path] = {}  # each folder of the groups' files, resolved once
    for g, group in enumerate(spec.source_files):
        try:
            matches = group.expand(spec_dir)
        except UnwalkablePattern as walk:  # files: /**/*.jsonl walked the whole disk
            issues.append(SpecIssue(file=file, line=lines.get(("source_files", g, "files")),
                                    key=f"source_files[{g}].files", message=str(walk)))
            continue
        expanded = [e for e in matches if not _targets_file(target_picks, e, group.by, spec_dir, folders)]
        taken_by_others = False  # every value of a `by` group's files read by the target or a listed source
        if group.by is not None and expanded:
            matched = [e["loader"]["path"] for e in expanded]
            expanded, found = _expanded_by_values(group, g, expanded, spec_dir, file, lines, left_out)
            issues.extend(found)
            if found:
                continue
            if not expanded:  # every row's value null or blank: not "matches no file"
                issues.append(SpecIssue(
                    file=file, line=line_of_key(("source_files", g, "by"), lines), key=f"source_files[{g}].by",
                    message=f"no row of {', '.join(matched)} has a {group.by!r} value (each is null or blank), so "
                            "the group makes no source: give the rows their task in that column, or set `by` to "
                            "the column that names it"))
                continue
            picked = [e for e in expanded  # the target's own task (its rows), or a listed source's, is none
                      if e["loader"]["where"] in value_picks.get(_resolved(e["loader"]["path"], spec_dir), [])]
            expanded = [e for e in expanded if e not in picked]
            taken_by_others = not expanded
            if picked and expanded:  # (none left: the group's issue says so)
                left_to_others.append((g, _read_by_others_note(group.by, picked, readers, spec_dir)))
        if matches and not expanded:  # not "matches no file": what it matches is the target's (or read already)
            issues.append(SpecIssue(
                file=file, line=lines.get(("source_files", g, "files")), key=f"source_files[{g}].files",
                message=_all_taken_message(group, matches, taken_by_others)))
            continue
        too_long = name_too_long_problem(_resolved(group.files, spec_dir)) if not expanded else None
        if too_long is not None:  # (every look at its folders would raise "File name too long")
            issues.append(SpecIssue(file=file, line=lines.get(("source_files", g, "files")),
                                    key=f"source_files[{g}].files", message=f"pattern {too_long}"))
        elif not expanded:
            # a folder named as the pattern: what to write, in place of "Check the pattern"
            folder = folder_as_pattern_note(group.files, spec_dir, "." + group.loader.type)
            issues.append(SpecIssue(
                file=file, line=lines.get(("source_files", g, "files")), key=f"source_files[{g}].files",
                message=f"{as_typed(group.files)} matches no file (a relative pattern is taken in {Path(spec_dir).resolve()}; "
                        f"'**' matches subfolders; the target's own files are left out){path_not_found_note(group.files)}"
                        f"{literal_folder_note(group.files, spec_dir)}{missing_folder_note(group.files, spec_dir)}"
                        + (f"{folder}." if folder else ". Check the pattern or remove the group.")))
        for entry in expanded:
            origin[len(entries)] = (g, _origin_text(entry["loader"]))
            entries.append(entry)
    if issues:
        return None, issues
    data = spec.model_dump(mode="json", exclude={"source_files"}, exclude_unset=True)
    try:
        full = Spec.model_validate({**data, "sources": entries})
    except ValidationError as exc:
        return None, blame_source_files(issues_from_validation(exc, file, lines), origin, lines, spec_dir)
    full._source_origins = origin
    full._left_out_rows = left_out
    full._left_to_others = left_to_others
    return full, []


#: the most tasks :func:`_read_by_others_note` names; it counts the rest
READ_BY_OTHERS_NAMED = 5


def _read_by_others_note(by: str, picked: list[dict[str, Any]], readers: dict[tuple[Path, str], str],
                         spec_dir: Path) -> str:
    """One line naming the values of a ``by`` group's files that make no source of the
    group because the target or a listed source reads their rows (``where``), with who
    reads each: the group's sources are otherwise one per value, and a task missing from
    them was said nowhere."""
    named = []
    for entry in picked:
        where = entry["loader"]["where"]
        who = readers.get((_resolved(entry["loader"]["path"], spec_dir), where_text(where)), "a listed source")
        named.append(f"{entry['loader']['path']} {where[by]!r} ({who})")
    more = len(named) - READ_BY_OTHERS_NAMED
    shown = ", ".join(named[:READ_BY_OTHERS_NAMED]) + (f" (+{more} more)" if more > 0 else "")
    values = count_agreeing(len(picked), "value", "makes", "make", of=f"the {by!r} column")
    return (f"{values} no source of this group, as the target or a listed source reads their rows "
            f"(loader.where): {shown}")


def _all_taken_message(group: SourceFilesSpec, matches: list[dict[str, Any]], values: bool) -> str:
    """Why a group whose pattern matches files makes no source: each is the target's own
    (read whole, or by a column other than the group's ``by``), or (``values``) each value
    of its ``by`` column is read by the target or a listed source. It was told its pattern
    matches no file, which hid a ``by`` column the file lacks (no column was checked)."""
    files = ", ".join(dict.fromkeys(e["loader"]["path"] for e in matches))
    if values:
        return (f"every {group.by!r} value of {files} is read by the target or a listed source (its loader's "
                "`where`), so the group makes no source: remove the group, or the listed source of a value")
    how = (f" (a `by` group keeps the target's file when the target's `where` names the group's `by` column, "
           f"here {group.by!r}, leaving out the target's value only; the target reads this file whole or by "
           "another column)" if group.by is not None else "")
    return (f"{as_typed(group.files)} matches only the target's own file(s), {files}, which no source may read (its "
            f"held-out rows would be trained on){how}. Point `files` at the sources' files"
            + (", or set `by` to the column the target's `where` names" if group.by is not None else "")
            + ", or remove the group")


def _resolved(path: str, spec_dir: Path, folders: dict[Path, Path] | None = None) -> Path:
    """A loader's ``path`` as a file, to tell the target's files among a group's; ``folders``:
    the folders resolved so far (:func:`~subsetctl.globbing.resolved_by_folder`), for a
    group's many files. A path whose name Python's file system encoding cannot write (a
    non-ASCII name under ``LC_ALL=C`` with UTF-8 mode off) names no file there: it is made
    absolute, unresolved, and the loader's check says why it cannot be opened (resolving
    it raised UnicodeEncodeError, an internal error)."""
    joined = Path(spec_dir) / expand_home(path)
    try:
        return joined.resolve() if folders is None else resolved_by_folder(joined, folders)
    except UnicodeEncodeError:
        return Path(os.path.abspath(joined))


def _targets_file(target_picks: dict[Path, list[dict[str, Any] | None]], entry: dict[str, Any], by: str | None,
                  spec_dir: Path, folders: dict[Path, Path] | None = None) -> bool:
    """Whether ``entry`` (a group's file) is the target's, to be left out whole: a file the
    target reads (``target_picks``: its ``where``s by file) all of, or for a group without
    ``by``; a ``by`` group keeps a file the target reads one value of its ``by`` column of,
    less that value (:func:`expand_source_files`); ``folders``: as :func:`_resolved` takes it."""
    picks = target_picks.get(_resolved(entry["loader"]["path"], spec_dir, folders))
    if picks is None:
        return False
    return by is None or any(where is None or set(where) != {by} for where in picks)


def _origin_text(loader: dict[str, Any]) -> str:
    """How issues name an expanded source: its file (``data/a.jsonl``), and for one value
    of a ``by`` column the value too (``data/flan.parquet (task = 'cola')``), as the checks
    name that value's rows, so that a problem of many values is said once."""
    where = loader.get("where")
    return loader["path"] if not where else f"{loader['path']} " + where_text(where)


def _expanded_by_values(
    group: SourceFilesSpec, g: int, per_file: list[dict[str, Any]], spec_dir: Path, file: str,
    lines: dict[tuple[Any, ...], int], left_out: list[tuple[int, str]],
) -> tuple[list[dict[str, Any]], list[SpecIssue]]:
    """The sources of a ``by`` group (``per_file``: one entry per matched file, as
    :meth:`SourceFilesSpec.expand` makes them): one per value of the column in each file,
    its rows only. Issues: a file without the column (naming those it has), or that its
    loader cannot read, and two values that make one source name. A (group, note) added to
    ``left_out`` for each file with rows whose value is null or blank (no source takes them)."""
    from subsetctl.data.fingerprint import listed_values  # (the data package imports this one)
    from subsetctl.errors import UserError

    assert group.by is not None
    entries: list[dict[str, Any]] = []
    issues: list[SpecIssue] = []
    named: dict[str, tuple[str, str | int]] = {}  # source name -> (file, value)
    for entry in per_file:
        rel = Path(entry["loader"]["path"])
        try:
            values, left_out_rows = listed_values(_resolved(entry["loader"]["path"], spec_dir), group.by, group.loader,
                                                  spec_dir)
        except UserError as exc:
            issues.append(SpecIssue(file=file, line=line_of_key(("source_files", g, "by"), lines),
                                    key=f"source_files[{g}] ({rel.as_posix()}).by", message=str(exc)))
            continue
        if left_out_rows:
            left_out.append((g, (f"{count_agreeing(left_out_rows, 'row', 'has', 'have', of=rel.as_posix())} no "
                                 f"{group.by!r} value (null or blank) and {'is' if left_out_rows == 1 else 'are'} in "
                                 f"no source; give {'it' if left_out_rows == 1 else 'them'} one to use "
                                 f"{'it' if left_out_rows == 1 else 'them'}")))
        for source in group.expand_by_values(rel, list(values)):
            value = source["loader"]["where"][group.by]
            other = named.setdefault(source["name"].casefold(), (rel.as_posix(), value))
            if other != (rel.as_posix(), value):
                forms = isinstance(value, str) and isinstance(other[1], str) and in_another_form(other[1], value)
                why = (f"they differ only in Unicode form ({OTHER_UNICODE_FORM}), which print alike: write them in one "
                       "form in the file" if forms else "a name holds letters, digits and _.-, and names that differ "
                       "only in case are one folder): rename one value in its file")
                issues.append(SpecIssue(
                    file=file, line=line_of_key(("source_files", g, "by"), lines), key=f"source_files[{g}].by",
                    message=f"{group.by} values {_value_shown(other[1])} ({other[0]}) and {_value_shown(value)} "
                            f"({rel.as_posix()}) both make the source name {source['name']!r} ({why}"
                            + (")" if forms else "") + ("" if other[0] == rel.as_posix() else
                                                        ", or give the files separate groups with different name_prefix")))
                continue
            entries.append(source)
    return entries, issues


def _value_shown(value: str | int) -> str:
    """A ``by`` column's value quoted for a message (:func:`~subsetctl.errors.shown_text`; a number as ``repr``)."""
    return shown_text(value) if isinstance(value, str) else repr(value)


def _line_of(group: tuple[Any, ...], suffix: str, lines: dict[tuple[Any, ...], int]) -> int | None:
    """The line of the deepest key of ``group`` + ``suffix`` (".loader.response_field") the
    YAML has: a group's problem points at the group's own setting when it is written."""
    try:
        parts = tuple(parse_key_path(suffix.lstrip("."))) if suffix.strip(".") else ()
    except SpecError:
        parts = ()
    return line_of_key(group + parts, lines)


def blame_source_files(
    issues: list[SpecIssue], origin: dict[int, tuple[int, str]], lines: dict[tuple[Any, ...], int],
    base_dir: Path | None = None,
) -> list[SpecIssue]:
    """Issues about a source expanded from a ``source_files`` group, keyed by the group and
    the file (``source_files[0] (data/a.jsonl).split``) at the group's line, instead of by
    an index ``sources[i]`` the spec file does not have. The same problem in many files of
    one group (a group setting that fits none of them) is listed once (:func:`_merged`):
    messages alike but for the file they name (as ``base_dir``, the spec's folder, makes its
    path) and their numbers (its row count) are one problem, so 2,000 files too short for
    the group's split are one line, not 2,000."""
    out: list[tuple[SpecIssue, tuple[int, str, str] | None]] = []
    same: dict[tuple[int, str, str], list[tuple[SpecIssue, str, list[str]]]] = {}  # issue, file, its numbers
    for issue in issues:
        match = re.match(r"sources\[(\d+)\]", issue.key)
        shared: tuple[int, str, str] | None = None
        if match and int(match.group(1)) in origin:
            g, path = origin[int(match.group(1))]
            suffix = issue.key[match.end():]
            issue.key, issue.line = f"source_files[{g}] ({path}){suffix}", _line_of(("source_files", g), suffix, lines)
            if issue.message.startswith("duplicate source names ("):  # of several of its files: the group's
                issue.key = f"source_files[{g}]"
        # messages that name sources[i] (duplicate names): the indices they name, looked up
        # (a search per expanded source and issue took 2 min at 2,000 files, each with an issue)
        named_indices = sorted({int(m.group(1)) for m in _SOURCE_INDEX.finditer(issue.message)} & origin.keys())
        named = [origin[index][1] for index in named_indices]  # origin's order: indices ascending
        if named_indices:
            # a function: a backslash in a file name is not an escape
            issue.message = _SOURCE_INDEX.sub(lambda m: _named_file(m, origin), issue.message)
            if issue.key == "(top level)":
                g, path = origin[named_indices[0]]
                issue.key, issue.line = f"source_files[{g}] ({path})", lines.get(("source_files", g))
        same_looking = _same_looking_paths_note(named)
        issue.message += same_looking
        # (a file's name, not one written; files whose names differ only in Unicode form get no other by a prefix)
        if named and issue.message.startswith("duplicate source name") and not same_looking:
            after = ("the values of its `by` column" if all(_BY_VALUE_ORIGIN.search(n) for n in named)
                     else "their files")
            issue.message += (f"; a source_files group names its sources after {after}: set the group's "
                              "`name_prefix` (e.g. `name_prefix: pool-`) to rename them")
        if match and int(match.group(1)) in origin:
            template, numbers = _message_template(issue.message, path, base_dir)
            shared = (g, suffix, template)
            same.setdefault(shared, []).append((issue, path, numbers))
        out.append((issue, shared))
    in_group = Counter(g for g, _ in origin.values())
    merged = {shared: _merged(found, shared, in_group[shared[0]])
              for shared, found in same.items() if _merges(found)}
    # a merged problem where its first file's was; its other files' issues left out
    return [merged.get(shared, issue) for issue, shared in out
            if shared not in merged or issue is same[shared][0][0]]


#: a problem shared by at most this many files of one ``source_files`` group is said for each
#: file (its own numbers and path), unless every file's message is the same; more are said once
FILES_SAID_ONE_BY_ONE = 5

#: the files a problem shared by many files of a group names (the rest are counted)
FILES_NAMED = 3

#: how :func:`_origin_text` names one value of a ``by`` group's column: ``data/flan.parquet (task = 'cola')``
_BY_VALUE_ORIGIN = re.compile(r" \([^()]+ = .+\)$")

#: a number in a message (a row count, a line number), compared across the files of a group
_NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?![\w])")

#: where a message template (:func:`_message_template`) had the file it is about, and a number
_FILE_SLOT, _NUMBER_SLOT = "\x00", "\x01"


def _message_template(message: str, path: str, base_dir: Path | None) -> tuple[str, list[str]]:
    """``message`` with the file it is about (``path``, as written or as ``base_dir`` makes
    it, or its name alone) taken out and its numbers marked: the same template is the same
    problem of two files of one group. Also the numbers, in order."""
    file = expand_home(path)
    full = file if file.is_absolute() or base_dir is None else Path(base_dir) / file
    forms = sorted({path, str(full), *([str(full.resolve())] if base_dir is not None else [])}, key=len, reverse=True)
    # a message naming the file alone ("x_1.jsonl: line 2 is not JSON"), not inside another path or word
    name = rf"(?<![\w./\\-]){re.escape(file.name)}(?!\w|\.\w)"
    parts = re.split("|".join([*(re.escape(form) for form in forms), name]), message)
    numbers = [n for part in parts for n in _NUMBER.findall(part)]
    return _FILE_SLOT.join(_NUMBER.sub(_NUMBER_SLOT, part) for part in parts), numbers


def _merges(found: list[tuple[SpecIssue, str, list[str]]]) -> bool:
    """Whether the issues of files of one group that share a template are said once: when
    there are many of them, or every one's message is the same."""
    return len(found) > 1 and (
        len(found) > FILES_SAID_ONE_BY_ONE or len({issue.message for issue, _, _ in found}) == 1)


def _merged(found: list[tuple[SpecIssue, str, list[str]]], shared: tuple[int, str, str], in_group: int) -> SpecIssue:
    """One issue for a problem of several files of group ``shared[0]`` (each issue with its
    file and the numbers of its message, :func:`_message_template`'s): keyed by how many of
    the group's ``in_group`` files have it and the first few of them, its message the first
    file's with the file it names as ``<each file>`` and a number that differs between them
    as the range it spans (``at most 3 to 4``); a place in the file that differs (``line 3``,
    :data:`_POSITION`) as ``a line (3 to 7 in different files)``, not as a span of lines."""
    g, suffix, template = shared
    first, paths = found[0][0], [path for _, path, _ in found]
    # a `by` group's sources are values of one file's column (_origin_text): "2 more files" named one file
    unit = "values" if all(_BY_VALUE_ORIGIN.search(path) for path in paths) else "files"
    if len(found) <= FILES_SAID_ONE_BY_ONE:  # the same message for every file
        return first.model_copy(update={"key": f"source_files[{g}] ({paths[0]} and {len(paths) - 1} more {unit}){suffix}"})
    spans = [(min(values, key=_number), max(values, key=_number))
             for values in zip(*(numbers for _, _, numbers in found), strict=True)]
    spans.reverse()
    message = ""
    for part in re.split(f"({_NUMBER_SLOT})", template):
        if part != _NUMBER_SLOT:
            message += part
            continue
        low, high = spans.pop()
        position = _POSITION.search(message) if _number(low) != _number(high) else None
        if position is None:
            message += low if _number(low) == _number(high) else f"{low} to {high}"
        else:  # "line 3 to 7" would read as every line from 3 to 7
            word, plural = position.group(1), position.group(2)
            article = "" if plural else ("A " if word[0].isupper() else "a ")
            message = (message[:position.start()] + f"{article}{word.lower() if article else word}{plural} "
                       f"({low} to {high} in different files)")
    how_many = f"all {in_group}" if len(found) == in_group else f"{len(found)} of {in_group}"
    names = ", ".join(paths[:FILES_NAMED])
    return first.model_copy(update={
        "key": f"source_files[{g}] ({how_many} {unit}: {names} and {len(found) - FILES_NAMED} more){suffix}",
        "message": message.replace(_FILE_SLOT, "<each file>"),
    })


#: a word before a number of a message that makes it a place in a file, not a count (``line
#: 3``): differing between files, it is said as "a line (3 to 7 in different files)"
_POSITION = re.compile(r"\b([Ll]ine|[Rr]ow|[Cc]olumn|[Bb]yte)(s?) $")


def _number(text: str) -> float:
    """A number of a message (:data:`_NUMBER`) as a value."""
    return float(text.replace(",", ""))


_SOURCE_INDEX = re.compile(r"sources\[(\d+)\](?!\d)")


def _named_file(match: re.Match[str], origin: dict[int, tuple[int, str]]) -> str:
    """``sources[i]`` in a message as the group and file it was expanded from
    (``source_files[0] (data/a.jsonl)``); as it is when i is no expanded source."""
    index = int(match.group(1))
    if index not in origin:
        return match.group(0)
    g, path = origin[index]
    return f"source_files[{g}] ({path})"


def _same_looking_paths_note(paths: list[str]) -> str:
    """For an issue naming files of a ``source_files`` group: a note when two of them print
    alike but differ in Unicode form (``é`` as one character or as ``e`` + accent, as
    macOS writes names), so the two names the message shows look the same; "" otherwise."""
    forms: dict[str, str] = {}
    for path in paths:
        other = forms.setdefault(unicodedata.normalize("NFC", path), path)
        if other != path:
            return (f". The two file names look alike but differ in Unicode form ({shown_text(other)} and "
                    f"{shown_text(path)}: {OTHER_UNICODE_FORM}), which Linux takes as two names; remove or rename one")
    return ""


def load_spec(path: Path, overrides: list[str] | None = None) -> Spec:
    """Load, override and validate a spec; raise SpecError with every issue found. A search
    strategy or a source may be named in an override's key (``search.strategies.forward.params.k=3``,
    ``sources.wiki.max_examples=50``), as on the command line
    (:func:`~subsetctl.spec.overrides.indexed_overrides`)."""
    data, text = read_yaml(path)
    if overrides:
        written: dict[str, str] = {}  # (an error quotes an override naming a strategy as it was written)
        data = apply_overrides(data, indexed_overrides(data, overrides, written), written)
    spec, issues = validate_data(data, str(path), text)
    if issues:
        raise SpecError(f"{path} is not a valid spec:\n{issues_text(issues, path, overrides)}")
    assert spec is not None
    return spec
