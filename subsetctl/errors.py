"""Exceptions that the CLI turns into clean one-paragraph messages.

Anything raised as a :class:`UserError` is the user's to fix (bad spec, missing file,
unknown name). The CLI prints its message and exits with status 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import re
import shlex
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path


def shell_arg(path: object) -> str:
    """``path`` as one shell word, for a command a message suggests: copy-pasteable when it
    holds spaces, quotes or other characters a shell reads, or starts with '-' (an option
    to the command); a plain path as it is."""
    text = str(path)
    return shlex.quote(f"./{text}" if text.startswith("-") else text)


def project_arg(named: str | Path | None) -> str:
    """The project folder as named after a command a message suggests (" my proj" quoted for a
    shell, with its leading space), or "" for the current folder (None or "": none named)."""
    return f" {shell_arg(named)}" if named is not None and str(named) != "" else ""


def run_command(named: str | Path | None, options: str = "", overrides: Iterable[str] = ()) -> str:
    """The `subsetctl run` command line a message suggests, copy-pasteable: the project as
    :func:`project_arg` names it, then ``options`` (already shell words), then the ``overrides``
    as typed, each one shell word. The CLI's advice and the pipeline's both write it here, so
    they name the project alike."""
    return " ".join([f"subsetctl run{project_arg(named)}", *([options] if options else []),
                     *map(shell_arg, overrides)])


def shown_path(path: object) -> str:
    """``path`` as a message shows it: ``..`` and ``.`` folded away (os.path.normpath), so a
    spec's ``../data/x.csv`` reads ``/proj/data/x.csv``, not ``/proj/spec/../data/x.csv``. Only
    the text shown: files are still opened and fingerprinted by the path as joined (through a
    symbolic link, ``link/..`` is not the folder the text folds it to). A URL is kept as it is."""
    import os

    text = str(path)
    return text if "://" in text else os.path.normpath(text)


def as_typed(value: object) -> str:
    """``value`` (a path, a pattern or a model named in a spec) in single quotes as the user
    typed it: ``'data\\*.txt'``, where ``!r`` doubled each backslash (``'data\\\\*.txt'``, a
    path nobody wrote). A value holding a single quote but no double quote is in double
    quotes, also as typed (``"it's\\x"``, not ``"it's\\\\x"``). A value holding both quotes
    or a character a terminal does not show as itself (a tab, a newline, a byte-order mark,
    a byte that was not UTF-8) is shown as ``repr`` shows it, escaped, so that the message
    says what is there."""
    text = str(value)
    if not text.isprintable() or ("'" in text and '"' in text):
        return repr(text)
    return f'"{text}"' if "'" in text else f"'{text}'"


_PYTHON_BOM_HINT = " (decode using utf-8-sig)"  # json's advice to Python code, not to the file's author


def json_syntax_error(exc: ValueError) -> str:
    """What Python's JSON reader said of a line it refused, for a message's parentheses:
    a ``JSONDecodeError``'s words and column (``Unterminated string starting at column 17``,
    whose message ends in "at", not "starting at at column 17"; json's advice to Python code
    about a byte-order mark left out), another ``ValueError``'s first clause."""
    import json

    if isinstance(exc, json.JSONDecodeError):
        said = exc.msg.replace(_PYTHON_BOM_HINT, "").removesuffix(" at")
        return f"{said} at column {exc.colno}"
    return str(exc.args[0]).split(":")[0]


def json_file_problem(exc: BaseException) -> str:
    """Why a JSON file (a report.json named on the command line) could not be read, in a
    message's parentheses: where its JSON breaks (``line 1: Expecting value at column 1``;
    Python's own text added "(char 0)"), that it is not UTF-8, or the system's reason."""
    import json

    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: line {exc.lineno}: {json_syntax_error(exc)}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


#: why a spec or a project folder cannot come from standard input, and what to name instead
SPEC_FROM_ITS_FILE = ("a spec is read from its file, whose folder its relative paths (data files, a "
                      "local model) are taken in. Save the spec as a file and name that file (or a project's "
                      "folder)")


def standard_input_note(path: object, why: str = SPEC_FROM_ITS_FILE) -> str:
    """For ``-`` named where a file or a folder goes (``cat spec.yaml | subsetctl validate -``,
    the Unix way to read standard input), which no such file is: ": '-' is not read as standard
    input here: " and ``why`` (by default: a spec file or a project folder is read from a file),
    instead of advice to create a project named ``./-``; "" for any other path. (A report.json
    given as ``-`` says why with its own words, through the same note.)"""
    if str(path) != "-":
        return ""
    return f": '-' is not read as standard input here: {why}"


def path_not_found_note(path: object, looked_for: Path | None = None) -> str:
    """For a path a spec names that was not found: why, when that shows in the path (so the
    user knows why the file is "missing"): it holds what looks like a shell variable
    (``$HOME/data``, ``${DATA}/x``), which a spec file does not expand (only ``~`` is), or
    it is written as on Windows (:func:`windows_path_note`), or cannot be encoded here
    (:func:`unencodable_path_note`); with ``looked_for``, where it was looked for, also when
    that is a broken symbolic link or a name written otherwise there
    (:func:`missing_path_note`); "" otherwise."""
    found = re.search(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", str(path))
    if not found:
        return (windows_path_note(path) or unencodable_path_note(path)
                or (missing_path_note(looked_for) or cwd_relative_note(path, looked_for)
                    if looked_for is not None else ""))
    return (f". {found.group(0)} is taken as it is: subsetctl does not expand environment variables in a spec "
            "(write the path out, or use ~ for your home folder)")


def cwd_relative_note(path: object, looked_for: Path) -> str:
    """For a relative path a spec names that is not at ``looked_for`` (where the spec's folder
    puts it) but is there from the current folder: a path written from where the command runs
    (`path: myproject/data.jsonl` in myproject's own spec), with the path to write instead;
    "" otherwise."""
    import os

    written = Path(str(path))
    try:
        if written.is_absolute() or str(path).startswith("~") or not written.exists():
            return ""
        spec_folder = looked_for
        for _ in written.parts:  # looked_for is the spec's folder / path, joined as written
            spec_folder = spec_folder.parent
        there = written.resolve()
        if there == looked_for.resolve():
            return ""
        instead = os.path.relpath(there, spec_folder.resolve())
    except (OSError, ValueError):  # (a name the locale cannot encode; no common root)
        return ""
    return (f". {written} is there from the current folder ({Path.cwd()}): write {instead!r}, its path from the "
            "spec's folder (or an absolute path)")


_WINDOWS_DRIVE = re.compile(r"^([A-Za-z]):[\\/]")
#: a Windows drive where WSL mounts it by default (``/mnt/c`` is C:)
_WSL_DRIVE = re.compile(r"^(/mnt/([a-zA-Z]))(?:/|$)")
#: where WSL mounts Windows' drives (its /etc/wsl.conf's default ``[automount] root``)
WSL_MOUNT_ROOT = Path("/mnt")
_WINDOWS_VARIABLE = re.compile(r"%[A-Za-z_][A-Za-z0-9_]*%")
#: a Windows network (UNC) path, ``\\server\share\rest``; Windows Explorer shows a WSL
#: distribution's files as ``\\wsl$\Ubuntu\home\me`` (``\\wsl.localhost\...`` too)
_WINDOWS_UNC = re.compile(r"^\\\\([^\\/]+)\\([^\\/]+)(.*)$")


def windows_path_note(path: object) -> str:
    """For a path that was not found: a note when it is written as on Windows (``data\\a.jsonl``,
    ``C:\\Users\\me``, ``\\\\wsl$\\Ubuntu\\home``, ``%USERPROFILE%``), where ``\\`` is part of a file
    name here, with the path to write instead, or names a Windows drive where WSL mounts it
    (``/mnt/c/Users/me``) on a machine that has no such mount (:func:`wsl_drive_note`); ""
    otherwise."""
    text = str(path)
    if _WSL_DRIVE.match(text):
        return wsl_drive_note(text)
    variable = _WINDOWS_VARIABLE.search(text)
    if variable:
        return (f". {variable.group(0)} is a Windows variable, which subsetctl does not expand: write the path out "
                "(with '/' between folders), or use ~ for your home folder")
    unc = _WINDOWS_UNC.match(text)
    if unc:
        server, share, rest = unc.groups()
        inside = "/" + rest.replace("\\", "/").lstrip("/")
        if server.lower() in ("wsl$", "wsl.localhost"):
            return (f". It is a Windows network path to the files of the WSL distribution {share!r}, as Windows "
                    f"Explorer shows them; inside that distribution they are at '{inside}': write that path")
        return (f". It is a Windows network path (the share {share!r} of {server!r}), which Linux and macOS do not "
                "read as such: write the path where that share is mounted on this machine (with '/' between "
                "folders), or copy the files here")
    drive = _WINDOWS_DRIVE.match(text)
    if not drive and "\\" not in text:
        return ""
    unix = text.replace("\\", "/")
    if drive:
        return (". It is written as a Windows path, with a drive letter, which Linux and macOS do not have: write the "
                f"path the files have on this machine, e.g. '/mnt/{drive.group(1).lower()}/{unix[3:]}' where WSL "
                "mounts that drive (with '/' between folders)")
    return (". It is written as a Windows path: on Linux and macOS a backslash is part of a file name, not a "
            f"folder separator. Write it with '/': '{unix}'")


def running_under_wsl() -> bool:
    """Whether this is WSL, Linux inside Windows (its variable, or its kernel's name)."""
    import os
    import platform

    return "WSL_DISTRO_NAME" in os.environ or "microsoft" in platform.uname().release.lower()


def wsl_drive_note(path: object) -> str:
    """For a path under a Windows drive as WSL mounts it (``/mnt/c/Users/me/a.jsonl``) that was
    not found, where this machine has no such mount (:data:`WSL_MOUNT_ROOT` without that drive's
    folder): a path written under WSL read on another Linux or a Mac, or under WSL with that
    drive not mounted, said only "does not exist"; the note says which, with the Windows path
    the files have. "" where the drive's folder is there (the file alone is missing) or for
    another path."""
    written = _WSL_DRIVE.match(str(path))
    if written is None or (WSL_MOUNT_ROOT / written.group(2)).is_dir():
        return ""
    letter = written.group(2).upper()
    on_windows = f"{letter}:\\" + str(path)[len(written.group(1)):].strip("/").replace("/", "\\")
    if running_under_wsl():
        return (f". {written.group(1)} is where WSL mounts Windows' {letter}: drive, and it is not mounted here: "
                f"check that Windows has a {letter}: drive, and /etc/wsl.conf's [automount] settings (a `root` "
                "other than /mnt/ mounts the drives elsewhere, `enabled = false` none at all)")
    return (f". {written.group(1)} is where WSL (Linux inside Windows) mounts Windows' {letter}: drive, and this "
            f"machine, which is not WSL, has none: the files are {as_typed(on_windows)} on that Windows machine. "
            "Copy them here and write the path they have here, or run subsetctl under WSL on that machine")


def _link_loops(path: Path) -> bool:
    """Whether following the symbolic link ``path`` comes round to a link again (``x -> y``,
    ``y -> x``): the system's "too many levels of symbolic links"."""
    import errno
    import os

    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def missing_path_note(path: Path, written_by: str = "the spec") -> str:
    """For a path that was not found: a note when ``path`` is a symbolic link to nothing (or
    one of a loop of links), or when one of its names is not in its folder as written but is there in another Unicode
    form (``é`` as ``e`` + accent, as macOS writes names) or letter case (which macOS and
    Windows take as the same name, Linux does not); "" otherwise. ``written_by`` is where the
    path was written (the spec, the command)."""
    import os
    import unicodedata

    try:
        if path.is_symlink():
            if _link_loops(path):  # (its target may well exist, as a link leading back)
                return (f". It is a symbolic link to {os.readlink(path)} that leads back to itself (a loop of links, "
                        "which no file ends): point one of them at the data file")
            return f". It is a symbolic link to {os.readlink(path)}, which does not exist: fix the link or the path"
    except (OSError, ValueError):
        return ""

    def same(name: str) -> str:
        return unicodedata.normalize("NFC", name).casefold()

    absolute = Path(os.path.abspath(path))
    for folder, name in ((p.parent, p.name) for p in reversed([absolute, *absolute.parents]) if p.name):
        if (folder / name).exists() or (folder / name).is_symlink():
            continue
        try:
            if name.strip() != name and name.strip() and (folder / name.strip()).exists():
                return (f". Its name {name!r} has a space (or tab) at its start or end, and {folder / name.strip()} "
                        f"is there: remove it from the name {written_by} gives")
            with os.scandir(folder) as entries:
                found = sorted(e.name for e in entries if e.name != name and same(e.name) == same(name))
        except (OSError, ValueError):  # (a folder that may not be listed; a name the locale cannot write)
            return ""
        if not found:
            return _extension_note(folder, name, written_by) if folder / name == absolute else ""
        there = found[0]
        if in_another_form(there, name):  # (found holds no name equal to it)
            return (f". {shown_text(str(folder / there))} is there: the same name in another Unicode form "
                    f"({OTHER_UNICODE_FORM}), which Linux takes as another name. Rename it to the name {written_by} gives")
        if len(found) > 1:  # (Train.jsonl and train.jsonl: which one was meant, macOS could not have told either)
            return (f". {joined_names([str(folder / f) for f in found])} are there: the same name in other letter "
                    "cases, which Linux takes as different files (macOS and Windows as one). Write the name of the "
                    "one you mean as the folder has it")
        return (f". {folder / there} is there: the same name in other letter case, which macOS and Windows take as "
                "the same name and Linux does not. Write the name as the folder has it, or rename it")
    return ""


def _extension_note(folder: Path, name: str, written_by: str) -> str:
    """For a file ``name`` not in ``folder``: a note when a file there has that name with one
    more extension (``train`` for ``train.jsonl``, as Windows Explorer shows names, which
    hides known extensions; ``train.jsonl`` for ``train.jsonl.txt``, as Notepad saves a file
    it is given no type for); "" otherwise."""
    import os

    try:
        with os.scandir(folder) as entries:
            found = sorted(e.name for e in entries if Path(e.name).stem == name and e.name != name)
    except (OSError, ValueError):
        return ""
    if not found:
        return ""
    return (f". {joined_names([str(folder / f) for f in found], 'or')} is there, with one more extension (Windows "
            f"Explorer hides extensions, and Notepad adds .txt to a name it saves): write the name with it in "
            f"{written_by}, or rename the file")


def printable(text: str) -> str:
    """``text`` as a message can print it: bytes that were not UTF-8 (kept as surrogate
    escapes by Python's decoding of file names and arguments) shown as \ufffd."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


#: what "another Unicode form" is, for the messages that say a name, key or label is in one
OTHER_UNICODE_FORM = ("an accented letter or a kana with its voicing mark, é or デ, written as one character, or "
                      "as the letter and its mark, as macOS writes them")


def shown_text(text: str) -> str:
    """A text from the user's data (a label, a ``label_map`` key, a column's value, a file name)
    quoted for a message, as ``repr`` writes it; one not in Unicode's composed form (NFC: 'e' + a
    combining accent, as macOS writes names) with its combining marks escaped, in double quotes as
    YAML reads them ("ne\\u0301gatif"), so that two texts differing only in form do not print alike
    and the one shown can be written in a spec. Other scripts stay as they are ('データ', not
    '\\u30c7\\u30fc\\u30bf' as ``ascii`` writes them). Escaped too: a character NFC replaces
    (U+212B ANGSTROM SIGN, which prints as U+00C5 'Å') and Hangul's conjoining jamo, which
    print as the syllable they spell ('한' decomposed), though neither is a combining mark; and,
    as ``repr`` escapes them, the characters that do not print (a line break: "e\\u0301\\n")."""
    if unicodedata.is_normalized("NFC", text):
        return repr(text)
    escaped = "".join(_yaml_escape(c) if _in_another_form_alone(c) or not c.isprintable()
                      else "\\" + c if c in '"\\' else c for c in text)
    return f'"{escaped}"'


#: the short escapes of YAML's double-quoted scalars (and Python's) for the control characters a label may hold
_SHORT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _yaml_escape(c: str) -> str:
    """``c`` as an escape YAML's double-quoted scalars read (``\\n``, ``\\x07``, ``\\u0301``): a
    line break or other character ``repr`` escapes would break or hide the quoted text."""
    code = ord(c)
    if c in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[c]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _in_another_form_alone(c: str) -> bool:
    """Whether the character ``c`` prints as part of another one that NFC would write in its
    place: a combining mark, a character NFC replaces, a Hangul conjoining jamo."""
    return (bool(unicodedata.combining(c)) or unicodedata.normalize("NFC", c) != c
            or "\u1100" <= c <= "\u11ff" or "\ua960" <= c <= "\ua97f" or "\ud7b0" <= c <= "\ud7ff")


def in_another_form(a: str, b: str) -> bool:
    """Whether texts ``a`` and ``b`` differ, but only in Unicode form (see :func:`shown_text`)."""
    return a != b and unicodedata.normalize("NFC", a) == unicodedata.normalize("NFC", b)


#: what to do when Python's file system encoding cannot write a path (a locale that is not UTF-8)
UTF8_LOCALE_ADVICE = "run under a UTF-8 locale (`export LC_ALL=C.UTF-8`) or with `PYTHONUTF8=1`"


def unencodable_path_note(path: object) -> str:
    """For a path that was not found: a note when its name cannot be written in Python's
    file system encoding (a non-ASCII name under ``LC_ALL=C`` with UTF-8 mode off), so no
    file can be opened by it, whether or not one is there; "" otherwise."""
    import os
    import sys

    try:
        os.fsencode(str(path))
    except UnicodeEncodeError:
        return (f". Its name cannot be written in Python's file system encoding ({sys.getfilesystemencoding()}, "
                f"as under LC_ALL=C with UTF-8 mode off), so it cannot be opened even if it is there: {UTF8_LOCALE_ADVICE}, "
                "or rename it to an ASCII name")
    return ""


#: whether the CLI is running a command: messages then name its options (``--force``, "on the
#: command line"), and the Python API's arguments otherwise (``force=True``, "in overrides")
_CLI_WORDING: contextvars.ContextVar[bool] = contextvars.ContextVar("subsetctl_cli_wording", default=False)


@contextlib.contextmanager
def cli_wording() -> Iterator[None]:
    """Word messages for the command line while the CLI runs a command (see :func:`worded`)."""
    token = _CLI_WORDING.set(True)
    try:
        yield
    finally:
        _CLI_WORDING.reset(token)


def worded(cli: str, python: str) -> str:
    """``cli`` while the CLI runs a command (:func:`cli_wording`), ``python`` for a caller of
    the API: "pass --force" told a notebook of an option it cannot pass."""
    return cli if _CLI_WORDING.get() else python


def count_agreeing(count: int, noun: str, one: str, many: str, of: str = "") -> str:
    r"""``count`` ``noun``\s and their verb, agreeing with it: "1 row has", "3 rows have" (``one``
    "has", ``many`` "have"; the noun's plural takes an "s"), with ``of`` between them where
    given ("1 row of file a.jsonl has"). A message on a count of one read "1 row(s) have"."""
    between = f" of {of}" if of else ""
    return f"{count} {noun}{between} {one}" if count == 1 else f"{count} {noun}s{between} {many}"


def joined_names(names: list[str], last: str = "and") -> str:
    """``["a", "b", "c"]`` as "a, b and c", for a message naming several things (``last``:
    the word before the last name)."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"


class UserError(Exception):
    """An error caused by user input; the message says what is wrong and what to do.

    ``error_kind`` is its kind as `--format json` names it (``{"error": {"kind": ...}}``), a
    stable name a script branches on instead of parsing the message; each subclass sets its own."""

    error_kind = "user_error"


class SpecError(UserError):
    """The spec file is malformed or invalid."""

    error_kind = "spec_invalid"


class NotFoundError(UserError):
    """A folder or file the command was given is not there, or is not a project."""

    error_kind = "not_found"


class SpecFileError(SpecError):
    """The spec file cannot be read as a YAML mapping; ``line`` (1-based, or None) and
    ``problem`` let `validate` list it like any other issue, without repeating the path."""

    def __init__(self, path: object, problem: str, line: int | None = None) -> None:
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {problem}")


class UnknownPluginError(UserError):
    """A name was asked of a registry that does not know it (``kind`` "strategy", ...)."""

    error_kind = "unknown_plugin"

    def __init__(self, message: str, kind: str = "", name: str = "") -> None:
        super().__init__(message)
        self.kind, self.name = kind, name


class PluginNotImported(UserError):
    """A spec's ``plugins:`` module left unimported on purpose (``--no-plugins``): what it
    would register is not checked, which is no error of the spec."""


class LockedError(UserError):
    """Another process holds the project lock. ``holder``: "run" (a plain `run`),
    "shards" (shard runs holding it shared) or "" (another lock than the project's).
    Another process's work, not a mistake: a script retries once it is done."""

    error_kind = "project_locked"

    def __init__(self, message: str, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


class StaleArtifactError(UserError):
    """An upstream artifact does not match what the spec asks for."""

    error_kind = "stale_artifact"


class EnvironmentUserError(UserError):
    """A file-system condition the user fixes (:func:`environment_error`): permissions, a
    full disk or quota, a file where a folder belongs."""

    error_kind = "environment"


class OutOfMemoryUserError(UserError):
    """A stage ran out of memory (:func:`out_of_memory_error`): a setting to lower, not a bug."""

    error_kind = "out_of_memory"


def out_of_memory_error(exc: BaseException, stage: str, settings: dict[str, object],
                        accumulation: tuple[str, str, object] | None = None, half_dtype: bool = False,
                        resumable: tuple[str, tuple[str, ...]] | None = None) -> OutOfMemoryUserError | None:
    """A UserError for a stage that ran out of memory (Python's MemoryError, torch's
    OutOfMemoryError on a GPU, or its CPU allocator refusing a tensor), naming the spec
    ``settings`` that bound the stage's memory (``{"meta_init.batch_size": 8, ...}``, as
    they are now) so the user knows what to lower; None for any other error. A batch
    size the machine cannot hold is the user's to change, not a bug in subsetctl.
    ``accumulation``: for a stage that trains in micro-batches, its batch size key, its
    ``grad_accum`` key and that one's value: lowering the batch size alone also changes
    how many examples each optimizer step takes (the training itself), so the advice says
    to raise ``grad_accum`` as much to keep them. ``half_dtype``: the model's files store
    16-bit weights that ``model.dtype: float32`` holds at twice the size, so the advice
    names ``model.dtype: bfloat16`` too (of a float32 checkpoint it would not lower the
    peak). ``resumable``: for a stage that keeps its work as it goes (meta_init's
    checkpoints, the gradients' rows), that work in words and the settings named that
    leave its inputs as they are: the message says a run with the same settings resumes
    it, and that changing another starts the stage over (its inputs changed)."""
    text = str(exc)
    lower = " or ".join(f"{key} (now {value})" for key, value in settings.items())
    dtype = ("set model.dtype: bfloat16 (now float32: the model's files store 16-bit weights, which float32 "
             "holds at twice their size)" if half_dtype else "")
    if lower:
        advice = f"Lower {lower}{', or ' + dtype if dtype else ''}, then run again"
    elif dtype:
        advice = f"{dtype[0].upper()}{dtype[1:]}, then run again"
    else:
        advice = "Free memory (or use a larger machine), then run again"
    kept = "finished stages are kept."
    if resumable is not None:
        work, neutral = resumable
        changed = [key for key in settings if key not in neutral] + (["model.dtype"] if half_dtype else [])
        kept = (f"finished stages are kept, and so is what this one computed before it stopped, if anything "
                f"({work}): a run with the same settings resumes from it"
                + (f"; changing {' or '.join(changed)} changes the stage's inputs, so it starts over" if changed
                   else "") + ".")
    if accumulation is not None and accumulation[0] in settings:
        batch_key, accum_key, accum = accumulation
        advice += (f" (to keep the training as it is, divide {batch_key} by a number and multiply {accum_key} "
                   f"(now {accum}) by the same one: each optimizer step then averages over as many examples)")
    if type(exc).__name__ == "TerminatedWorkerError":  # loky's, for a worker the system killed (SIGKILL)
        codes = re.search(r"exit codes of the workers are (\{.*?\})", text)
        lost = f" (exit codes {codes.group(1)})" if codes else ""
        return OutOfMemoryUserError(
            f"Stage {stage} lost a worker process{lost}: the system killed it, most likely for lack of memory. "
            f"{advice}: finished stages, and the estimates stored so far, are kept.")

    if not (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM)  # a fork, an mmap the system refused
            or "can't allocate memory" in text or "out of memory" in text.lower()
            or "cannot allocate memory" in text.lower()  # (torch's mmap of a model file: "unable to mmap ...")
            or "CUBLAS_STATUS_ALLOC_FAILED" in text
            or (isinstance(exc, ImportError) and _LIBRARY_NOT_MAPPED in text)):  # a library a stage loads late
        return None
    tried = re.search(r"(?:[Tt]ried|Unable|unable) to (?:allocate|mmap) ([\d.]+) ?([A-Za-z]+)", text)
    size = ""
    if tried:
        amount, unit = tried.groups()
        size = (f": it tried to allocate {float(amount) / 2**20:,.0f} MiB at once" if unit == "bytes"
                else f": it tried to allocate {amount} {unit} at once")
        if "mmap" in text:  # loading the model: no batch size helps with that part
            size += " to map a model file as it loads (the model alone needs that much; `plan` estimates each stage's memory)"
    return OutOfMemoryUserError(
        f"Stage {stage} ran out of memory{size} ({type(exc).__name__}{_address_space_limit()}). {advice}: {kept}")


#: how the loader says it had no memory for a shared library (dlopen's ENOMEM): a stage
#: importing one late (calibrate, scipy's) under a low ``ulimit -v`` was an internal error
_LIBRARY_NOT_MAPPED = "failed to map segment from shared object"


def _address_space_limit() -> str:
    """Where this process has an address space limit (``ulimit -v``, RLIMIT_AS), that limit
    in words, to raise first: torch and the BLAS reserve far more address space than the
    memory they use, so a limit that looks ample runs out at once; else ""."""
    soft = _soft_limit("RLIMIT_AS")
    if soft is None:
        return ""
    return (f"; this process's address space limit, `ulimit -v`, is {soft // 2**20:,} MiB: raise it "
            "(`ulimit -v unlimited`) first")


EDQUOT = getattr(errno, "EDQUOT", 122)  # (not in errno on every platform; Linux's number)
_OUT_OF_SPACE = frozenset({errno.ENOSPC, EDQUOT, errno.EFBIG})
"""ENOSPC (the disk is full), EDQUOT (the user's disk quota is used up: on a shared machine
the usual way to run out) and EFBIG (a file reached the process's file size limit,
``ulimit -f``, or the file system's largest file): the writes that fail for want of room,
which the user frees."""


def as_os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``, with its errno: ``exc`` itself for an OSError that has
    one; for errors that carry the system's error only as text, an OSError built from it
    (``shutil.copytree`` gathers each file's OSError into one ``shutil.Error`` holding
    "[Errno 28] ..." strings; safetensors, which peft saves adapters with, raises
    ``SafetensorError`` "... I/O error: No space left on device (os error 28)"). A full disk
    while copying or saving an adapter was an internal error. None for anything else."""
    import os
    import shutil

    if isinstance(exc, OSError) and not isinstance(exc, shutil.Error):
        return exc
    if isinstance(exc, shutil.Error):
        entries = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
        coded = [(entry, code) for entry in entries if isinstance(entry, tuple) and len(entry) == 3
                 and (code := re.search(r"\[Errno (\d+)\]", str(entry[2])))]
        if not coded:
            return exc
        # a full disk (or quota, or file size limit) first, wherever it is among the files: a
        # file that could not be read before it (a socket, a permission) hid the advice that
        # frees the copy
        found = next((c for c in coded if int(c[1].group(1)) in _OUT_OF_SPACE), coded[0])
        (_, dst, _), code = found
        filename: str | None = str(dst)
    elif type(exc).__name__ == "SafetensorError" and (code := re.search(r"\(os error (\d+)\)", str(exc))):
        filename = None
    else:
        return None
    errno_ = int(code.group(1))
    error = OSError(errno_, os.strerror(errno_), filename)
    for note in getattr(exc, "__notes__", []):
        error.add_note(note)
    return error


def environment_error(error: BaseException) -> EnvironmentUserError | None:
    """A UserError for file-system conditions the user fixes (read-only or unwritable
    folder, full disk, disk quota exceeded, file size limit), from an OSError or an error that carries one as text
    (:func:`as_os_error`); None for anything else, which stays an internal error. The CLI
    prints it; :func:`environment_errors_as_user_errors` raises it to API callers."""
    import os

    if isinstance(error, RuntimeError) and "can't start new thread" in str(error):
        return EnvironmentUserError(
            f"Cannot start a thread (\"{error}\"): the process is short of memory or of threads{_address_space_limit()}"
            f"{_thread_limit()}. Each thread takes address space for its stack, and torch and the BLAS "
            "reserve far more than they use. Raise the limit (or free memory) and run again: finished stages are "
            "kept.")
    exc = as_os_error(error)
    if exc is None:
        return None

    notes = getattr(exc, "__notes__", [])  # the pipeline notes the stage and its folder
    where = f" {exc.filename}" if exc.filename else (f" in {notes[-1]}" if notes else "")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return EnvironmentUserError(
            f"Cannot use{where}: {exc.strerror}{teammate_note(exc)}. subsetctl reads the spec, data and model files "
            "and keeps all its state in the project directory (.subsetctl/, report.md, plots/); fix the permissions, "
            "or copy the project somewhere writable and run it there. Finished stages are kept."
        )
    if exc.errno == errno.EISDIR and exc.filename:
        return EnvironmentUserError(
            f"Cannot use {exc.filename}: {exc.strerror}. subsetctl expects a file there and found a folder; "
            "something else put it there. Move it aside and run again."
        )
    if exc.errno == errno.ENOTDIR and exc.filename:
        return EnvironmentUserError(
            f"Cannot use {exc.filename}: {exc.strerror}. A part of this path is a file where subsetctl expects a "
            "folder (a HOME or cache folder, or the project's .subsetctl/, that is a file); move that file aside "
            "and run again."
        )
    if exc.errno == errno.ENOENT and not exc.filename and str(exc.strerror).startswith(_NO_TEMP_FOLDER):
        return EnvironmentUserError(no_temp_folder_message(str(exc.strerror)))
    if exc.errno == errno.ENOENT and exc.filename and (target := dangling_link_target(str(exc.filename))):
        return EnvironmentUserError(
            f"Cannot use {exc.filename}: it is a symbolic link to {target}, which cannot be made (a folder on its "
            "way does not exist). Remove the link (subsetctl makes the file itself) or make its target's folder, "
            "and run again. Finished stages are kept."
        )
    if exc.errno == errno.EEXIST and exc.filename and os.path.islink(exc.filename) and not os.path.exists(exc.filename):
        return EnvironmentUserError(  # mkdir does not follow a link to nothing: "it is a file" said what it was not
            f"Cannot use {exc.filename}: it is a symbolic link to {os.readlink(exc.filename)}, which does not exist, "
            "where subsetctl keeps a folder. Make the folder it points to, or remove the link (subsetctl makes the "
            "folder itself), and run again. Finished stages are kept."
        )
    if exc.errno == errno.EEXIST and exc.filename and not os.path.isdir(exc.filename):  # mkdir(exist_ok=True)
        return EnvironmentUserError(
            f"Cannot use {exc.filename}: it is a file where subsetctl keeps a folder (its state lives in "
            ".subsetctl/); something else put it there. Move it aside and run again. Finished stages are kept."
        )
    if exc.errno == errno.ENAMETOOLONG:  # `subsetctl init <a 300-letter name>`: an internal error, "a bug"
        name = f" {str(exc.filename)[:60]}..." if exc.filename else ""
        return EnvironmentUserError(f"Cannot use{name}: {exc.strerror}{name_too_long_note(exc)}")
    large_files = ("(the gradient store, checkpoints and the re-run caches in .subsetctl/cache/, safe to delete "
                   "and capped by project.cache_limit_gb, are the large files, and the earlier result sets in "
                   ".subsetctl/.previous/, up to project.keep_previous of each stage, capped by "
                   "project.keep_previous_gb)")
    if exc.errno == errno.ENOMEM:  # outside a stage's own work (which names its memory settings): its bookkeeping
        return EnvironmentUserError(
            f"Out of memory ({exc.strerror}{f', at{where}' if exc.filename else f',{where}' if where else ''}"
            f"{_address_space_limit()}). Free memory "
            "(or use a larger machine) "
            "and run again: finished stages are kept.")
    if exc.errno == errno.ENOSPC:
        return EnvironmentUserError(
            f"No space left on the device (writing{where}). Free disk space {large_files} and run again: "
            "finished work is kept and resumed."
        )
    if exc.errno == EDQUOT:
        return EnvironmentUserError(
            f"Disk quota exceeded (writing{where}): your quota on this file system is used up. Free space in it "
            f"{large_files}, or ask for a larger quota, and run again: finished work is kept and resumed."
        )
    if exc.errno == errno.EFBIG:
        return EnvironmentUserError(
            f"File too large (writing{where}): it reached {_file_size_limit()}. Raise the limit "
            "(`ulimit -f unlimited` in the shell that runs subsetctl) or move the project to a file system "
            "that holds larger files, and run again: finished work is kept and resumed."
        )
    return None


#: how Python's ``tempfile`` says no folder it tries takes a file (``$TMPDIR``, ``/tmp``, ``/var/tmp``,
#: ``/usr/tmp``, the current folder): a container with a read-only root file system and no tmpfs
_NO_TEMP_FOLDER = "No usable temporary directory found in "


def no_temp_folder_found(strerror: str) -> str:
    """What ``tempfile`` found, in words, from its ``strerror`` (which lists the folders it tried
    as a Python list): "no writable temporary folder: Python tried /tmp, ... (TMPDIR is not set)"."""
    import ast
    import os

    listed = strerror[len(_NO_TEMP_FOLDER):]
    try:
        tried = ", ".join(map(str, ast.literal_eval(listed)))
    except (ValueError, SyntaxError, TypeError):
        tried = listed
    tmpdir = os.environ.get("TMPDIR")
    return (f"no writable temporary folder: Python tried {tried} and could write in none "
            f"({f'TMPDIR is {tmpdir}' if tmpdir else 'TMPDIR is not set'})")


#: what to do about no writable temporary folder (:func:`no_temp_folder_found`)
NO_TEMP_FOLDER_ADVICE = (
    "Set TMPDIR to a writable folder (`mkdir -p /scratch/tmp && export TMPDIR=/scratch/tmp`; in a container with "
    "a read-only file system, mount a tmpfs on /tmp: `docker run --read-only --tmpfs /tmp ...`) and run again.")


def no_temp_folder_message(strerror: str) -> str:
    """The message for ``tempfile`` finding no writable temporary folder (``strerror``, which
    lists the folders it tried). The libraries the stages use need one (``datasets``, as it is
    imported; joblib's workers; torch), so a run in a container started with ``--read-only``
    stopped with an internal error, "This is a bug in subsetctl"; the user gives it one."""
    found = no_temp_folder_found(strerror)
    return (f"{found[0].upper()}{found[1:]}. The libraries subsetctl runs (datasets, joblib, torch) need one. "
            f"{NO_TEMP_FOLDER_ADVICE} Finished stages are kept.")


def name_too_long_note(exc: OSError) -> str:
    """What follows "File name too long" (ENAMETOOLONG) in a message: a name in the path over
    the 255 bytes file systems take, or the whole path over the system's limit for one path
    (4,096 bytes on Linux), where every name is short and "give a shorter name" fixed nothing:
    a project many folders deep is moved to a shorter path."""
    import os

    path = str(exc.filename or "")
    size = len(path.encode("utf-8", "surrogateescape"))
    try:
        limit = os.pathconf("/", "PC_PATH_MAX")  # (the terminating NUL included: 4,096 takes 4,095)
    except (OSError, ValueError, AttributeError):  # (no pathconf on Windows)
        limit = 4096
    if size < limit or any(len(part.encode("utf-8", "surrogateescape")) > 255 for part in Path(path).parts):
        return " (most file systems take names of at most 255 bytes). Give a shorter file or folder name."
    return (f": the whole path is {size:,} bytes, and the system takes paths of at most {limit:,} bytes (each "
            "name in it is within the 255 bytes a name may have). Move the project (or the file) to a shorter path.")


def name_too_long_problem(path: object) -> str | None:
    """What a check says of a path whose name is longer than the file system takes or
    which is longer than the system takes (ENAMETOOLONG: every look at it raises, which
    stopped `validate` whole, naming neither the spec key nor the line): "file aaa...
    (a name of 300 bytes) cannot be looked for: File name too long (...)", the path
    shortened; None for any other path (one there or not, said by its caller)."""
    import os

    try:
        os.stat(path)  # type: ignore[arg-type]
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            text = str(path)
            shown = f"{text[:60]}...{text[-20:]}" if len(text) > 90 else text
            return f"{shown} cannot be looked for: {exc.strerror}{name_too_long_note(exc)}"
    except ValueError:  # (a NUL in the path: said by its caller)
        pass
    return None


def owner_note(path: object, subject: str = "it") -> str:
    """For a file or folder this user was refused: who may change that, in words, as
    "it belongs to ann, group team, mode -rw-r--r--; you are bob", for a team sharing a
    project directory or a cache, where the user refused cannot fix another's file and
    needs to know whom to ask; with "you are" left out where it is this user's own. ""
    when ``path`` cannot be looked up (gone, or a folder on its way may not be read).
    ``subject`` names it ("it", or the folder of a file that could not be made)."""
    import os
    import stat

    try:
        info = os.stat(str(path))
    except (OSError, ValueError):
        return ""
    owner, group, me = user_name(info.st_uid), group_name(info.st_gid), user_name(os.geteuid())
    you = "" if info.st_uid == os.geteuid() else f"; you are {me}"
    return f"{subject} belongs to {owner}, group {group}, mode {stat.filemode(info.st_mode)}{you}"


def teammate_note(exc: OSError) -> str:
    """For a permission error on a file or folder another user owns (a teammate's, in a
    project directory or a cache a team shares): whose it is and the command its owner runs
    to let the group write it, the project's folder as a whole where it is in one, as
    "; it belongs to ann, group team, mode drwxr-sr-x; you are bob: ann can let the group
    write it with `chmod -R g+rwX /srv/proj` (and run subsetctl with `umask 002`, so that what
    it writes later stays group-writable)"; "" for this user's own (or an unknown) path."""
    import os

    if exc.errno not in (errno.EACCES, errno.EPERM) or not exc.filename:
        return ""
    path = Path(os.fsdecode(exc.filename)).absolute()
    denied = next((p for p in (path, *path.parents) if os.path.lexists(p)), None)
    try:
        owner = os.lstat(denied).st_uid if denied is not None else os.geteuid()
    except (OSError, ValueError):
        return ""
    if owner == os.geteuid():
        return ""
    folder = denied
    if ".subsetctl" in denied.parts:  # the project's state: the whole project, as every run writes it all
        folder = Path(*denied.parts[:denied.parts.index(".subsetctl")])
    elif (denied.parent / "subsetctl.yaml").is_file():  # report.md, plots/
        folder = denied.parent
    subject = "it" if denied == path else f"its folder {denied}"  # (a file that could not be made there)
    return (f"; {owner_note(denied, subject)}: {user_name(owner)} can let the group write it with "
            f"`chmod -R g+rwX {shell_arg(folder)}` (and run subsetctl with `umask 002`, so that what it writes later "
            "stays group-writable)")


def user_name(uid: int) -> str:
    """The login name of ``uid``, or the number where the user list has none (a container's)."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def group_name(gid: int) -> str:
    """The name of group ``gid``, or the number where the group list has none."""
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


def _file_size_limit() -> str:
    """The limit an EFBIG write ran into, in words: this process's file size limit
    (``ulimit -f``, RLIMIT_FSIZE) where it has one, else the file system's largest file."""
    soft = _soft_limit("RLIMIT_FSIZE")
    if soft is None:
        return "the file system's largest file"
    return f"this process's file size limit (`ulimit -f`: {soft // 1024} KiB)"


def _thread_limit() -> str:
    """This process's limit on its user's processes and threads (``ulimit -u``, RLIMIT_NPROC) in
    words, where it has one, to raise: Python's "can't start new thread" comes of that too."""
    soft = _soft_limit("RLIMIT_NPROC")
    return "" if soft is None else f"; its user may run at most {soft:,} processes and threads (`ulimit -u`)"


def _soft_limit(name: str) -> int | None:
    """This process's soft limit ``resource.<name>`` (``"RLIMIT_FSIZE"``); None where it has
    none, or where there are no such limits (Windows)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    soft, _hard = resource.getrlimit(getattr(resource, name))
    return None if soft == resource.RLIM_INFINITY else soft


def dangling_link_target(path: str) -> str | None:
    """Where the symbolic link ``path`` points when that place does not exist and its folder
    does not either (opening the link to write fails: ENOENT, though ``path`` is there);
    None for anything else, such as a link whose target opening it would create."""
    import os

    if not os.path.islink(path) or os.path.exists(path):
        return None
    target = os.path.realpath(path)
    return None if os.path.isdir(os.path.dirname(target)) else target


@contextlib.contextmanager
def environment_errors_as_user_errors() -> Iterator[None]:
    """Raise the file-system conditions a user fixes (see :func:`environment_error`) as a
    UserError caused by the OSError, as the CLI reports them: a notebook calling the API
    got a bare PermissionError or a full disk's OSError."""
    try:
        yield
    except Exception as exc:
        user_error = environment_error(exc)
        if user_error is None:
            raise
        raise user_error from exc
