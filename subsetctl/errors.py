"""Exceptions that the CLI turns into clean one-paragraph messages.

Anything raised as a :class:`UserError` is the user's to fix (bad spec, missing file,
unknown name). The CLI prints its message and exits with status 1, never a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input; the message says what is wrong and what to do."""


class SpecError(UserError):
    """The spec file is malformed or invalid."""


class UnknownPluginError(UserError):
    """A name was asked of a registry that does not know it."""


class LockedError(UserError):
    """Another process holds the project lock."""


class StaleArtifactError(UserError):
    """An upstream artifact does not match what the spec asks for."""
