"""Paths as a user types them: ``~`` and ``~user`` expanded as a shell does."""

from __future__ import annotations

import os
from pathlib import Path


def expand_home(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded, as the shell expands it: a
    ``~name`` of no user on this machine (or ``~`` without a home) stays as written, a path
    that then does not exist and is said so. pathlib's ``Path.expanduser`` raised
    RuntimeError("Could not determine home directory") there, which a spec's
    ``model.source: ~nosuchuser/model`` turned into an internal error."""
    return Path(os.path.expanduser(os.fspath(path)))
