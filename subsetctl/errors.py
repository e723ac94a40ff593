"""Exceptions that the CLI turns into clean one-paragraph messages.

Anything raised as a :class:`UserError` is the user's to fix (bad spec, missing file,
unknown name). The CLI prints its message and exits with status 1, never a traceback.
"""

from __future__ import annotations

import shlex


def shell_arg(path: object) -> str:
    """``path`` as one shell word, for a command a message suggests: copy-pasteable when it
    holds spaces, quotes or other characters a shell reads, or starts with '-' (an option
    to the command); a plain path as it is."""
    text = str(path)
    return shlex.quote(f"./{text}" if text.startswith("-") else text)


class UserError(Exception):
    """An error caused by user input; the message says what is wrong and what to do."""


class SpecError(UserError):
    """The spec file is malformed or invalid."""


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

    def __init__(self, message: str, kind: str = "", name: str = "") -> None:
        super().__init__(message)
        self.kind, self.name = kind, name


class LockedError(UserError):
    """Another process holds the project lock. ``holder``: "run" (a plain `run`),
    "shards" (shard runs holding it shared) or "" (another lock than the project's)."""

    def __init__(self, message: str, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


class StaleArtifactError(UserError):
    """An upstream artifact does not match what the spec asks for."""
