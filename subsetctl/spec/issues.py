"""Where a spec's keys are (line numbers, YAML merge keys) and its validation issues:
pydantic's errors turned into messages that name the file, the line and the key path
(``sources[3].loader.path``), with hints for values written as text.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError

from subsetctl.errors import as_typed, joined_names, shell_arg
from subsetctl.spec.models import NAME_PATTERN, Spec, _ascii_form, _BooleanForNumber
from subsetctl.spec.yaml_depth import LIBYAML_SAFE_LOADER


class _LineLoader(yaml.SafeLoader):
    """Safe loader (no arbitrary objects) used only to read line numbers."""


#: libyaml's composer where PyYAML was built with it: it reads a spec's lines about ten times
#: as fast as the pure-Python one (0.1 s against 0.9 s for a spec of 2,000 sources, a quarter of
#: its `validate`); the pure-Python one reads what libyaml refuses, as the spec itself is read
_FAST_LINE_LOADER: type | None = LIBYAML_SAFE_LOADER


def key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path in a YAML document to its 1-based line number. A key a merge
    (``<<: *base``) brings in has the line where the anchored mapping writes it, since
    that is where its value is to be fixed (:func:`merged_keys` says where it was merged).

    Memoized on the text: `validate` and `run` ask for the same spec's lines from
    several checks, and each compose with the pure-Python parser took about a second for
    a spec of 3,000 sources (three quarters of `validate`). A copy is returned."""
    return dict(_key_lines_of(text)[0])


def merged_keys(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path a merge (``<<: *base``) brought in to the line of that ``<<``."""
    return dict(_key_lines_of(text)[1])


_MERGE_TAG = "tag:yaml.org,2002:merge"


@functools.lru_cache(maxsize=4)
def _key_lines_of(text: str) -> tuple[dict[tuple[Any, ...], int], dict[tuple[Any, ...], int]]:
    """(:func:`key_lines`, :func:`merged_keys`), computed (callers get copies: these are shared)."""
    lines: dict[tuple[Any, ...], int] = {}
    merged: dict[tuple[Any, ...], int] = {}
    root = _composed(text)

    def record(sub: tuple[Any, ...], mark_node: Any, value_node: Any, merged_at: int | None) -> None:
        """The line of ``sub`` (where ``mark_node`` starts), then the lines under it."""
        if merged_at is not None and sub in lines:  # given beside the merge (or merged earlier): that one counts
            return
        lines[sub] = mark_node.start_mark.line + 1
        if merged_at is not None:
            merged[sub] = merged_at
        walk(value_node, sub, merged_at)

    def walk(node: Any, path: tuple[Any, ...], merged_at: int | None = None) -> None:
        """Record the lines under ``node`` at ``path``; ``merged_at``: the line of the
        ``<<`` that brought it in, whose keys a mapping's own keys (and earlier merges) win over."""
        if isinstance(node, yaml.MappingNode):
            merges = []
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    merges.append((key_node.start_mark.line + 1, value_node))
                else:
                    record(path + (key_node.value,), key_node, value_node, merged_at)
            for line, value_node in merges:  # as YAML merges: the first mapping named wins
                for base in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                    walk(base, path, merged_at if merged_at is not None else line)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                record(path + (i,), item, item, merged_at)

    try:
        if root is not None:
            walk(root, ())
    except RecursionError:  # absurdly deep nesting: the issues simply carry no line
        return {}, {}
    return lines, merged


def _composed(text: str) -> yaml.Node | None:
    """The node tree of the YAML document ``text``, composed by libyaml where it can
    (:data:`_FAST_LINE_LOADER`), else by the pure-Python loader the spec is read with; None
    for an empty document or one neither reads (its issues carry no line)."""
    for loader in ((_FAST_LINE_LOADER,) if _FAST_LINE_LOADER is not None else ()) + (_LineLoader,):
        try:
            return yaml.compose(text, Loader=loader)
        except (yaml.YAMLError, RecursionError):
            continue
    return None


def format_path(loc: tuple[Any, ...]) -> str:
    """('sources', 3, 'loader', 'path') -> 'sources[3].loader.path'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union-tag parts (e.g. 'jsonl', 'int', 'float') from a location."""
    keep: list[Any] = []
    for part in loc:
        if isinstance(part, str) and (
            part in {"jsonl", "csv", "parquet", "huggingface", "reasoning_gym", "evals", "plugin",
                     "one-column", "column-list"}  # (the last two: prompt_field's, spec.models.PromptField)
            or part.startswith(("int", "float", "constrained-", "function-"))
        ):
            continue
        keep.append(part)
    return tuple(keep)


def _deepest_written(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> tuple[Any, ...] | None:
    """``loc``, or its deepest part the YAML writes; None when nothing of it is written."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return loc[:cut]
    return None


def line_of_key(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    """The line of ``loc``, or of its deepest part the YAML writes (a default value that is
    wrong points at the section holding it); None when nothing of it is written."""
    written = _deepest_written(loc, lines)
    return None if written is None else lines[written]


class SpecIssue(BaseModel):
    """One problem found in a spec, with where it is; among the warnings of a valid spec,
    ``note`` marks one that is no problem at all, said in case it was not meant (printed
    "note:", not "warning:", and not counted with the warnings). ``plugin_traceback``: for a
    ``plugins:`` module whose import failed, its own frames
    (:func:`~subsetctl.plugin_guard.plugin_traceback`), which the CLI prints above the message
    as it does for a plugin failing while a stage runs; left out of ``validate --format json``."""

    file: str
    line: int | None
    key: str
    message: str
    note: bool = False
    plugin_traceback: str = Field(default="", exclude=True, repr=False)

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}"


#: the problems of an invalid spec a terminal lists (`validate`, and the "is not a valid spec" of
#: `plan`, `run` and the others): a folder of 2,000 sources since moved made 2,000 lines alike
#: (275 kB) that no one reads; the rest are counted, and `validate --format json` lists them all
ISSUES_SHOWN = 20


def issues_text(issues: list[SpecIssue], spec_path: str | Path, overrides: list[str] | None = None,
                no_plugins: bool = False) -> str:
    """``issues`` a line each, indented, as a terminal lists them: the first
    :data:`ISSUES_SHOWN`, then how many more there are and the command that lists every one,
    naming the spec file ``spec_path`` and the ``overrides`` it was read with (`plan` of another
    folder, or with an override, is not what a bare `subsetctl validate --format json` reads),
    and ``--no-plugins`` where it was given (the command suggested imports no plugin it did not)."""
    lines = ["  " + issue.render() for issue in issues[:ISSUES_SHOWN]]
    more = more_issues_line(issues, "problem", spec_path, overrides, no_plugins)
    return "\n".join([*lines, *([more] if more else [])])


def more_issues_line(issues: list[SpecIssue], kind: str, spec_path: str | Path,
                     overrides: list[str] | None = None, no_plugins: bool = False, kinds: str = "") -> str:
    """The line a terminal gives, after the first :data:`ISSUES_SHOWN` of ``issues`` (each a
    ``kind``: "problem", "warning"; ``kinds`` its plural where that is not ``kind`` and an s),
    for the rest: how many, and the `validate --format json`
    command that lists every one (naming the spec, its overrides and --no-plugins, as
    :func:`issues_text` says); "" when none is left out. (`validate` printed every warning: a
    spec of 2,000 sources each noted alike made 2,000 lines.)"""
    more = len(issues) - ISSUES_SHOWN
    if more <= 0:
        return ""
    command = " ".join(["subsetctl validate", *(["--no-plugins"] if no_plugins else []), shell_arg(spec_path),
                        *map(shell_arg, overrides or []), "--format json"])
    what = kind if more == 1 else kinds or kind + "s"
    return f"  ... and {more:,} more {what} (of {len(issues):,}): `{command}` lists every one"


def warnings_shown(warnings: list[SpecIssue], spec_path: str | Path, overrides: list[str] | None = None,
                   no_plugins: bool = False) -> tuple[list[SpecIssue], str]:
    """The warnings and notes of a valid spec a terminal lists (`validate`, and `plan` and `run`
    as they begin), and the line after them: all of them and "" up to :data:`ISSUES_SHOWN`;
    past it the first :data:`ISSUES_SHOWN`, the warnings before the notes (20 notes need not
    hide a warning), and :func:`more_issues_line`'s count of the rest, as "warnings", "notes"
    or "warnings and notes", naming the command that lists every one (a warning per source of
    2,000 made 2,000 lines, in `plan` and at the start of every `run`)."""
    if len(warnings) <= ISSUES_SHOWN:
        return warnings, ""
    ordered = sorted(warnings, key=lambda w: w.note)
    notes = {w.note for w in ordered[ISSUES_SHOWN:]}
    kind, kinds = ("note", "") if notes == {True} else ("warning", "") if notes == {False} \
        else ("warning or note", "warnings and notes")
    return ordered[:ISSUES_SHOWN], more_issues_line(ordered, kind, spec_path, overrides, no_plugins, kinds)


def issues_from_validation(
    exc: ValidationError, file: str, lines: dict[tuple[Any, ...], int], text: str = ""
) -> list[SpecIssue]:
    """Turn pydantic errors into SpecIssues naming file, line and key path. ``text``: the
    spec file's text, for a number given for text to be quoted as it is written there."""
    found: list[SpecIssue] = []
    errors = exc.errors()
    merged = merged_keys(text) if text else {}

    def union_member(err: Any) -> tuple[Any, ...] | None:  # the key, when err is one member of a union
        loc = tuple(err["loc"])
        return _clean_loc(loc) if _clean_loc(loc) != loc else None

    # a count-or-fraction key fails once as an integer and once as a number: say it once
    number_failed = {union_member(e) for e in errors if e["type"] in ("float_parsing", "float_type")} - {None}
    # 1.5 or -0.5 fails as a count (not whole) and as a fraction (out of range): one problem
    fraction_out_of_range = {union_member(e) for e in errors if "constrained-float" in e["loc"]
                             and e["type"] in ("less_than_equal", "greater_than_equal")} - {None}
    for err in errors:
        if err["type"] in ("int_parsing", "int_type") and union_member(err) in number_failed:
            continue
        if "constrained-int" in err["loc"] and union_member(err) in fraction_out_of_range:
            continue
        loc = _clean_loc(tuple(err["loc"]))
        if err["type"] == "invalid_key":  # pydantic's loc holds the key as a number (`yes:` read True is 1)
            loc = _written_key(loc[:-1], err.get("input"), lines)
        message = plain_error_message(err)
        if union_member(err) in fraction_out_of_range and "constrained-float" in err["loc"]:
            message = (f"expected a count (a whole number of examples, 0 or more) or a fraction from 0 to 1, "
                       f"got {_describe_value(err.get('input'))}")
        if err["type"] == "string_type" and text:
            message = _as_written_hint(message, err.get("input"), loc, line_of_key(loc, lines), text)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, err["ctx"]["discriminator"].strip("'"))  # blame the `type:` line itself
        named = re.findall(r"sources\[(\d+)\]", message) if not loc else []
        if named:  # a whole-spec check about a source (a duplicate name): at that source
            loc = ("sources", int(named[-1]))
            loc, message = _at_second_name(loc, message, lines)
        message += _merge_note(loc, lines, merged)
        issue = SpecIssue(file=file, line=line_of_key(loc, lines), key=format_path(loc), message=message)
        if issue not in found:  # a union (count or fraction) fails once per member, alike
            found.append(issue)
    return found


#: the problem of one duplicate name, its sources in group 1: "duplicate source name 'a' (sources[0] and
#: sources[3]); names must be unique: rename one" (other problems of the spec's sources may follow it, after "; ")
_DUPLICATE_NAME = re.compile(r"duplicate source name .*? \((sources\[\d+\](?:(?:, | and )sources\[\d+\])+)\); "
                             r"names must be unique: rename (?:one|all but one)")


def _at_second_name(loc: tuple[Any, ...], message: str, lines: dict[tuple[Any, ...], int]) -> tuple[tuple[Any, ...], str]:
    """The location and message of a whole-spec problem about sources: for one duplicate
    name, at the second source's ``name`` key (``sources[3].name``, the one that repeats it),
    with where the first one is (its key and line) said; ``loc`` and ``message`` as they are
    otherwise, or where the sources' names are not written in the file (a ``source_files``
    group's). The issue named the last source (``sources[3]``) and the first only by index."""
    duplicate = _DUPLICATE_NAME.match(message)
    if duplicate is None:
        return loc, message
    first, second = (int(i) for i in re.findall(r"sources\[(\d+)\]", duplicate.group(1))[:2])
    if ("sources", second, "name") not in lines:
        return loc, message
    first_line = lines.get(("sources", first, "name"))
    where = f"; the first is sources[{first}].name, at line {first_line}" if first_line is not None else ""
    end = duplicate.end()  # (said there, not after a problem that follows: a source named as the target)
    return ("sources", second, "name"), message[:end] + where + message[end:]


def _written_key(parent: tuple[Any, ...], key: Any, lines: dict[tuple[Any, ...], int]) -> tuple[Any, ...]:
    """The location of a key YAML did not read as text (``yes:``, ``1:``, ``~:``) under
    ``parent``, with the key as the file writes it (so the issue names it and its line);
    ``parent`` plus the key as read when no written key reads as it."""
    for path in lines:
        if len(path) == len(parent) + 1 and path[:-1] == parent and isinstance(path[-1], str):
            try:
                read = yaml.safe_load(path[-1])
            except yaml.YAMLError:
                continue
            if read == key and type(read) is type(key):
                return path
    return (*parent, str(key))


def _merge_note(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int], merged: dict[tuple[Any, ...], int]) -> str:
    """" (brought in by the `<<` merge at line 13)" when the deepest written part of
    ``loc`` came from a merge: the issue's line is then the anchored mapping's, which
    another key path may share, so the reader is told why."""
    written = _deepest_written(loc, lines)
    return f" (brought in by the `<<` merge at line {merged[written]})" if written in merged else ""


def _as_written_hint(message: str, value: Any, loc: tuple[Any, ...], line: int | None, text: str) -> str:
    """``message`` with the quoting example written as the number is in the file, when YAML
    read it as another one: `name: 0042` is octal 34 in YAML, and the advice to write
    "34" would have renamed the source (as "2.1" would `name: 2.10`)."""
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or line is None or not loc
            or not isinstance(loc[-1], str)):
        return message
    spec_lines = text.splitlines()
    if line > len(spec_lines):
        return message
    found = re.search(rf"(?<![\w.-]){re.escape(loc[-1])}\s*:\s*([^\s,{{}}\[\]#'\"]+)", spec_lines[line - 1])
    written = found.group(1) if found else None
    if written is None or written == str(value):
        return message
    try:  # a tag (`!!int 3`) or an alias (`*n`) read alone failed (PyYAML's IndexError, an undefined alias)
        same = yaml.safe_load(written) == value
    except (yaml.YAMLError, ValueError, LookupError, AttributeError, TypeError):
        return message
    if not same:
        return message
    return message.replace(f'e.g. "{value}")', f'as written: "{written}"; unquoted, YAML reads {written} as {value})')


_SAVED = "a folder written by save_to_disk: {type: huggingface, path: FOLDER}"
_SPREADSHEET = "a spreadsheet: save it as CSV (UTF-8) and read that with type: csv"
_PLAIN_TEXT = ('a causal LM\'s plain text, trained on whole, is read with text_field: a text file a line a row with '
               '{type: huggingface, path: text, data_files: [FILE], text_field: text}, a JSON Lines file of '
               '{"text": ...} with {type: jsonl, text_field: text}; rows of a prompt and an answer are JSON Lines '
               '({"prompt": ..., "response": ...} a line: type: jsonl) or CSV columns (type: csv)')
_JSON = ("a JSON Lines file, one object a line: type: jsonl; one JSON array of examples (a .json file): "
         "{type: huggingface, path: json, data_files: [FILE]}")
#: what to write for a loader type named after a file format subsetctl reads with another
#: loader (``type: json`` for a JSON array was told "did you mean 'jsonl'?", which then
#: refused the array; ``type: tsv`` "did you mean 'csv'?", which split at commas): the
#: loader it needs, and how
_LOADER_TYPE_ADVICE = {
    "json": ("huggingface", _JSON),
    "tsv": ("csv", 'a tab-separated file: {type: csv, delimiter: "\\t"}'),
    "hf": ("huggingface", "type: huggingface"),
    "datasets": ("huggingface", "a Hugging Face dataset, a save_to_disk folder or a hub id: type: huggingface"),
    "arrow": ("huggingface", _SAVED),
    "disk": ("huggingface", _SAVED),
    "excel": ("csv", _SPREADSHEET),
    "xlsx": ("csv", _SPREADSHEET),
    "text": ("jsonl", _PLAIN_TEXT),
    "txt": ("jsonl", _PLAIN_TEXT),
}


#: ``datasets.load_dataset`` options a Hugging Face user writes on a ``huggingface`` loader,
#: which it does not take: what to do instead (a bare "unknown key (check its spelling)"
#: said nothing of a key spelled right)
_HUGGINGFACE_OPTIONS_NOT_TAKEN = {
    "revision": ("the huggingface loader takes no revision: a hub id is read as the local Hugging Face cache "
                 "holds it (offline) or as the hub's latest. To pin a revision, save it once where the hub is "
                 "reachable, `datasets.load_dataset(ID, NAME, split=SPLIT, revision=COMMIT).save_to_disk(FOLDER)`, "
                 "and point loader.path at that folder (its files are then part of the data stage's inputs); "
                 "or remove revision"),
    "streaming": ("the huggingface loader takes no streaming: the data stage reads the whole split (datasets "
                  "prepares it in its cache once, memory-mapped, and it is read a batch of rows at a time), and "
                  "max_examples bounds how many rows the later stages use; remove streaming (for a part of a "
                  "very large dataset, save that part with save_to_disk and read the folder)"),
}


#: keys that name a spec key in other tools' words (lowercase: written in any case), by the
#: location of their mapping (keys only: no list indices, nor a loader's type, as
#: :func:`_clean_loc` drops it): the key they mean, which "did you mean" suggests where the
#: spelling is too far from it (a source_files group's `pattern: "pool/*.jsonl"` was told
#: only "check its spelling", with no word of `files`)
KEYS_MEANT: dict[tuple[str, ...], dict[str, str]] = {
    ("source_files",): dict.fromkeys(("pattern", "patterns", "glob", "globs", "path", "paths"), "files"),
}


#: what to do with chats in a CSV file, whose loader takes no messages_field
_CSV_CHATS = ("a CSV cell is text, not a list of messages: write the chats as JSON Lines (one {\"messages\": "
              "[...]} object a line) or Parquet and read them with type: jsonl or parquet, or give the CSV file "
              "a prompt and a response column")


def plain_error_message(err: Any) -> str:
    """A pydantic error's message in the spec's terms: what is wrong and what to write."""
    kind, value, message = err["type"], err.get("input"), err["msg"]
    if kind == "extra_forbidden":
        loc = [part for part in err["loc"] if isinstance(part, (str, int))]
        if loc[:1] == ["source_files"] and "loader" in loc and loc[-1] == "path":  # right spelling, wrong place
            return ("a source_files group's loader takes no path: the group's `files` pattern names the files "
                    "(one source each); remove loader.path")
        if loc[:1] == ["source_files"] and "loader" in loc and loc[-1] == "where":  # a listed source's option
            return ("a source_files group's loader takes no where: `by: COLUMN` makes one source per value of a "
                    "column (each reading its rows with where), and a listed source reads one value with "
                    "{type: parquet, path: FILE, where: {COLUMN: VALUE}} (or type: jsonl, csv), which a `by` group "
                    "on that column then leaves out; remove loader.where")
        if loc[-1:] == ["where"] and any(str(part).endswith("loader") for part in loc):  # huggingface, a plugin's
            return ("where is the jsonl, csv and parquet loaders' (it reads the rows of one value of a column, one "
                    "task of a local file holding many): read the data from such a file, or remove where")
        if loc[-2:-1] == ["huggingface"] and loc[-1] in _HUGGINGFACE_OPTIONS_NOT_TAKEN:  # load_dataset's own
            return _HUGGINGFACE_OPTIONS_NOT_TAKEN[loc[-1]]
        other_types = _other_types_taking(loc) if len(loc) >= 2 else []
        if other_types:  # right spelling, another loader's key
            why = _CSV_CHATS if loc[-2:] == ["csv", "messages_field"] else f"remove {loc[-1]} or change loader.type"
            return (f"the {loc[-2]} loader takes no {loc[-1]} (the {joined_names(other_types)} "
                    f"{'loaders take' if len(other_types) > 1 else 'loader takes'} it): {why}")
        allowed = sorted(_keys_at(loc[:-1]) - {str(loc[-1])}) if loc else []  # never the key just refused
        hidden = _hidden_characters(str(loc[-1])) if loc else ""
        if hidden:
            return (f"unknown key {str(loc[-1])!r}: it holds {hidden}, which YAML takes as part of the key's name "
                    "(not as indentation or a space between words): retype the line with plain spaces "
                    "(`subsetctl schema` lists the keys)")
        meant = _key_meant(loc, allowed) if loc else None
        if meant:
            return f"unknown key (did you mean {meant!r}? `subsetctl schema` lists the keys)"
        return "unknown key (check its spelling; `subsetctl schema` lists the keys)"
    if kind == "missing":
        return "required key is missing"
    if kind == "invalid_key":  # `yes: 1`, `1: 2`, `~: x`: the key is no name
        return (f"a key must be text, and YAML read this one as {_describe_value(value)} (unquoted "
                "true/false, yes/no and on/off are booleans, unquoted numbers are numbers and ~ is null): "
                "write the key's name (`subsetctl schema` lists the keys)")
    if isinstance(value, _BooleanForNumber):
        return (f"expected a number, got the boolean {value!r} (YAML reads true/false, yes/no "
                "and on/off as booleans)")
    if kind == "union_tag_invalid":  # `type: json` on a loader
        tag, expected = err["ctx"]["tag"], [t.strip(" '") for t in err["ctx"]["expected_tags"].split(",")]
        close = difflib.get_close_matches(tag.lower(), expected, n=1, cutoff=0.5)  # JSONL -> jsonl
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        advice = _LOADER_TYPE_ADVICE.get(tag.strip().lower().lstrip("."))
        if advice is not None and advice[0] in expected:  # (a source_files group takes no huggingface)
            hint = f" ({advice[1]})"
        plugin = "; a loader from a plugin is `type: plugin` with its `name`" if "plugin" in expected else ""
        return f"unknown loader type {tag!r}{hint}. The types are {', '.join(expected)}{plugin}."
    if kind == "union_tag_not_found":
        types = ("jsonl, csv or parquet" if "source_files" in err["loc"]
                 else "jsonl, csv, parquet, huggingface, reasoning_gym, evals or plugin")
        return f"the loader needs a `type` ({types})"
    if kind in ("model_type", "dict_type", "model_attributes_type"):  # the last: a loader (a tagged union)
        loc = tuple(err["loc"])
        # `strategies: [forward, random_ensemble]`: each entry is a strategy's name alone
        hint = (f": a strategy is written `{{name: {value}}}` (with `params:` beside it, if any)"
                if loc[:2] == ("search", "strategies") and len(loc) == 3 and isinstance(value, str) else "")
        return f"expected a mapping of keys (key: value), got {_describe_value(value)}{hint}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, got {_describe_value(value)}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {_describe_value(value)}"
    if kind in ("bool_parsing", "bool_type"):  # (pydantic's "Input should be a valid boolean, unable to interpret input")
        return f"expected true or false, got {_describe_value(value)}"
    if kind in ("too_short", "too_long") and isinstance(value, list):  # (pydantic's "... after validation, not 0")
        least = kind == "too_short"
        bound = err.get("ctx", {}).get("min_length" if least else "max_length")
        got = "an empty list" if not value else f"{len(value)}"
        return (f"expected {'at least' if least else 'at most'} {bound} item{'' if bound == 1 else 's'}, got {got}"
                if bound is not None else message)
    if kind == "string_type" and isinstance(value, list) and tuple(err["loc"])[:1] == ("source_files",) \
            and tuple(err["loc"])[-1:] == ("files",):  # `files: [a.jsonl, b.jsonl]`
        return (f"expected one glob pattern, got a list {value!r}: give a pattern matching them all (e.g. "
                "data/pool/*.jsonl), a group for each, or list the files as sources")
    if kind == "string_type":  # `name: 2023`, `name: yes`: YAML read a number or a boolean
        if isinstance(value, bool):
            return (f"expected text, got the boolean {str(value).lower()} (YAML reads unquoted true/false, "
                    "yes/no and on/off as booleans: quote the value to keep it text)")
        if isinstance(value, (int, float)):
            return (f"expected text, got the number {value!r} (YAML reads unquoted numbers as numbers: quote "
                    f'it to keep it text, e.g. "{value}")')
        if isinstance(value, datetime.date):  # `name: 2024-01-01`, which an editor's YAML 1.2 reads as text
            return (f"expected text, got the {'time' if isinstance(value, datetime.datetime) else 'date'} {value} "
                    f'(YAML reads an unquoted date as a date: quote it to keep it text, e.g. "{value}")')
        return f"expected text, got {_describe_value(value)}"
    if kind == "list_type" and isinstance(value, dict) and value \
            and tuple(err["loc"]) in (("sources",), ("search", "strategies")):  # `sources: {wiki: {loader: ...}}`
        key = format_path(tuple(err["loc"]))
        if "name" in value:  # one item written without its '- '
            return (f"expected a list, got one mapping (name: {value['name']}, ...): {key} is a list: write "
                    f"'- ' before the item's first key (`- name: {value['name']}`), and each further item likewise")
        names = [str(name) for name in value]
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return (f"expected a list, got a mapping of names ({shown}): {key} is a list whose items each give "
                f"their name, e.g. `- name: {names[0]}` with the rest of its keys under it")
    if kind == "list_type":  # `search.strategies=exhaustive`
        return (f"expected a list, got {_describe_value(value)} (in YAML `[a, b]`, or one `- item` per "
                "line)")
    if tuple(err["loc"]) == ("model", "revision") and kind in ("string_pattern_mismatch", "string_too_short"):
        # (pydantic's "String should match pattern '^\\S+$'" said nothing of what a revision is)
        return (f"{_describe_value(value)} is no revision: write a commit sha, or "
                "a branch or tag name, none of which holds a space (model.revision: main, v1.0, or the commit's 40 "
                "hex digits), or remove model.revision to load the cache's main or the hub's latest")
    if kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == NAME_PATTERN:
        hint = ""
        if isinstance(value, str) and not value.isascii():  # 'café' is letters, but not ASCII ones
            folded = re.sub(r"[^A-Za-z0-9_.\-]", "_", _ascii_form(value)).lstrip("_.-")[:64]
            hint = "; the letters must be ASCII: no accents, other scripts or emoji" + (
                f" (e.g. {folded!r})" if re.fullmatch(NAME_PATTERN, folded) else "")
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else \
            f"{value[:40]!r}... ({len(value):,} characters)"  # a 5,000-character name filled the screen
        return (f"{shown} is not a valid name: use letters, digits, '_', '.' and '-' (no spaces or '/'), "
                f"starting with a letter or digit, at most 64 characters{hint}")
    if kind in _RANGE_SIGNS and "input" in err:  # (pydantic's "Input should be greater than or equal to 1")
        return range_message(kind, err.get("ctx", {}), value) or f"{message} (got {value!r})"
    if kind == "literal_error" and "input" in err:  # `kind: classifer`: the value written, and the one likely meant
        choices = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
        loc = tuple(err["loc"])
        if loc == ("model", "device") and isinstance(value, str) and re.fullmatch(r"cuda:\d+", value.strip()):
            return (f"{message} (got {value!r}): 'cuda' runs on the first GPU torch sees; to run on GPU "
                    f"{value.strip()[5:]}, keep 'cuda' and start the command with CUDA_VISIBLE_DEVICES="
                    f"{value.strip()[5:]}")
        if loc == ("model", "dtype") and (device := _device_named(value)):
            return (f"{message} (got {value!r}): {value!r} names a device, not a precision: write model.device: "
                    f"{device} for that, and model.dtype for the precision ('float32', or 'bfloat16' or "
                    "'float16' on a GPU)")
        meant = LIKELY_MEANT.get(loc, {}).get(str(value).strip().lower())
        close = [meant] if meant else difflib.get_close_matches(str(value).lower(), choices, n=1, cutoff=0.6)
        if tuple(err["loc"]) == ("evaluate", "metric") and _names_f1(value):  # the classifier's second figure
            return (f"{message} (got {value!r}): a classifier's macro-F1 is no metric to choose; it is "
                    "reported beside accuracy ('accuracy' or 'auto') in every test-metrics table and in "
                    "report.json's test_metrics (macro_f1_mean)")
        return f"{message} (got {value!r}{f'; did you mean {close[0]!r}?' if close else ''})"
    return message.removeprefix("Value error, ")


#: pydantic's range error types, each with its bound's key in the error's ctx and the sign it is written with
_RANGE_SIGNS = {"greater_than_equal": ("ge", ">="), "greater_than": ("gt", ">"),
                "less_than_equal": ("le", "<="), "less_than": ("lt", "<")}


def range_message(kind: str, ctx: dict[str, Any], value: Any) -> str:
    """A value out of a key's range, in the spec's words: "expected a whole number >= 1, got -1"
    (an integer key) or "expected a number > 0, got 0" (a float key: pydantic gives its bound as
    a float), where pydantic said "Input should be greater than or equal to 1"; "" when ``ctx``
    holds no bound of ``kind``. A number written as text (``max_length: "4"``, which pydantic
    reads as a number) is "got 4 (written as text)", not "got the text '4'"."""
    key, sign = _RANGE_SIGNS[kind]
    bound = ctx.get(key)
    if not isinstance(bound, (int, float)) or isinstance(bound, bool):
        return ""
    whole = isinstance(bound, int)
    shown_bound = str(int(bound)) if isinstance(bound, float) and bound.is_integer() and abs(bound) < 1e15 \
        else str(bound)  # a float key's 1.0 is the 1 its description says
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        got = str(value)
    elif isinstance(value, str) and _reads_as_number(value):  # `max_length: "4"`: not "got the text '4'"
        got = f"{value.strip()} (written as text)"
    else:
        got = _describe_value(value)
    return f"expected {'a whole number' if whole else 'a number'} {sign} {shown_bound}, got {got}"


def _reads_as_number(text: str) -> bool:
    """Whether ``text`` is a number written as text (``"4"``, ``" 0.5 "``)."""
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


#: values of a choice that name another choice in other tools' words (PyTorch's, the Hugging
#: Face Trainer's flags), by the key's location: what "did you mean" suggests for them, where
#: the closest spelling is wrong (`device: gpu` looks most like 'cpu') or too far (`fp16`)
LIKELY_MEANT: dict[tuple[str, ...], dict[str, str]] = {
    ("model", "dtype"): {"fp16": "float16", "half": "float16", "torch.float16": "float16",
                         "bf16": "bfloat16", "torch.bfloat16": "bfloat16",
                         "fp32": "float32", "float": "float32", "full": "float32", "torch.float32": "float32"},
    ("model", "device"): {"gpu": "cuda", "cuda0": "cuda"},
}


def _device_named(value: Any) -> str | None:
    """The ``model.device`` choice ``value`` names (``gpu`` -> 'cuda', ``cpu`` -> 'cpu') in the
    words LIKELY_MEANT knows for a device; None when it names none. A ``model.dtype: gpu`` was
    told only the three precisions, with no word that a GPU is chosen with model.device."""
    written = str(value).strip().lower()
    return LIKELY_MEANT[("model", "device")].get(written) or (written if written in ("cpu", "cuda") else None)


def _names_f1(value: Any) -> bool:
    """Whether ``value`` names an F1 score (``macro_f1``, ``F1``, ``macro-F1``)."""
    return isinstance(value, str) and re.sub(r"[^a-z0-9]", "", value.lower()) in ("f1", "macrof1", "f1macro")


def _keys_at(path: list[str | int]) -> set[str]:
    """The keys the spec allows in the mapping at ``path`` (a pydantic error location:
    keys, list indices and union member tags), for "did you mean"; empty if unknown."""
    return {key for model in _models_at(path) if isinstance(model, type) and issubclass(model, BaseModel)
            for key in model.model_fields}


def _models_at(path: list[str | int]) -> list[Any]:
    """The spec models the mapping at ``path`` (as :func:`_keys_at`'s) may be: every member of
    a union not narrowed by its tag (a loader's), the one member a tag names."""
    models: list[Any] = [Spec]
    for part in path:
        found: list[Any] = []
        for model in models:
            if isinstance(part, int):  # a list item: the list's item type is already in hand
                found.append(model)
            elif isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
                found.extend(_models_in(model.model_fields[part].annotation))
            elif isinstance(model, type) and issubclass(model, BaseModel) and _tagged(model, part):
                found.append(model)  # a union member's tag (e.g. "jsonl"): that member only
        models = found
    return models


def _other_types_taking(loc: list[str | int]) -> list[str]:
    """The ``type`` tags of the other members of the union whose member ``loc[-2]`` refused
    the key ``loc[-1]`` that take that key (``messages_field`` under a ``csv`` loader: jsonl,
    parquet and huggingface), in the union's order; empty where ``loc[-2]`` is no member's tag.
    A key spelt right for another loader read as "check its spelling"."""
    tag, key = loc[-2], str(loc[-1])
    members = [model for model in _models_at(loc[:-2]) if isinstance(model, type) and issubclass(model, BaseModel)]
    if not any(_tagged(model, tag) for model in members):
        return []
    return [other for model in members if key in model.model_fields and "type" in model.model_fields
            and not _tagged(model, tag) for other in get_args(model.model_fields["type"].annotation)]


def meant_key(key: str, allowed: list[str]) -> str | None:
    """The key of ``allowed`` that ``key`` is a likely misspelling of (``modle`` -> ``model``,
    ``sourcse`` -> ``sources``), as an unknown key's "did you mean" names it; None if none is close."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75)
    return close[0] if close else None


def key_named_meant(loc: list[str | int]) -> str | None:
    """The spec key that the unknown key ``loc[-1]`` names in other tools' words at its place,
    as :data:`KEYS_MEANT` has it (``pattern`` in a source_files group: ``files``), however far
    its spelling; None if it names none. (The spec's errors and an override's key use it.)"""
    place = tuple(part for part in _clean_loc(tuple(loc[:-1])) if isinstance(part, str))
    return KEYS_MEANT.get(place, {}).get(str(loc[-1]).lower())


def _key_meant(loc: list[str | int], allowed: list[str]) -> str | None:
    """The key of ``allowed`` that the unknown key ``loc[-1]`` means: the one KEYS_MEANT
    names for it at its place (:func:`key_named_meant`), else its closest spelling
    (:func:`meant_key`); None if neither."""
    named = key_named_meant(loc)
    return named if named in allowed else meant_key(str(loc[-1]), allowed)


def _tagged(model: type[BaseModel], tag: str | int) -> bool:
    """Whether ``tag`` is the ``type`` of the union member ``model`` (a loader's "jsonl")."""
    field_info = model.model_fields.get("type")
    return field_info is not None and tag in get_args(field_info.annotation)


def _models_in(annotation: Any) -> list[Any]:
    """The pydantic models an annotation may hold (through Optional, lists, dicts, unions
    and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _hidden_characters(key: str) -> str:
    """The characters of ``key`` that print as a space or as nothing (a no-break space pasted
    from a web page or a word processor, a zero-width space), named: "U+00A0 (NO-BREAK
    SPACE)"; "" when it has none. Such a key was refused as unknown, shown as ``  seed``,
    with no hint of why (the no-break spaces meant as its indentation)."""
    import unicodedata

    found = dict.fromkeys(c for c in key if c != " " and (unicodedata.category(c) in ("Zs", "Cf", "Cc")))
    return ", ".join(f"U+{ord(c):04X} ({unicodedata.name(c, 'a control character')})" for c in found)


def _describe_value(value: Any) -> str:
    """``'a.jsonl'`` -> "the text 'a.jsonl'": what a wrong value was read as; text as it was
    typed (:func:`~subsetctl.errors.as_typed`: an override YAML could not read as a list,
    ``[{name: a\\b}``, is that text, not ``'[{name: a\\\\b}'``)."""
    kinds = {str: "the text", list: "a list", dict: "a mapping", type(None): "nothing (null)",
             bool: "the boolean", int: "the number", float: "the number"}
    word = kinds.get(type(value), f"the {type(value).__name__}")
    shown = as_typed(value) if isinstance(value, str) else repr(value)
    return word if value is None else f"{word} {shown}" if len(shown) <= 60 else word
