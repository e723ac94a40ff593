"""Where this subsetctl runs from: the git commit of a source checkout (a clone installed with
``pip install -e .``, or put on ``PYTHONPATH``), which the provenance records and `--version` name
beside the version number. Every build of a checkout says "0.1.0" alone, so results computed by
two commits of it (or by local edits) could not be told apart; an installed release has no
commit and records its version alone, as before."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

#: how long ``git status`` may take to say whether the checkout differs from its commit (a checkout
#: on a slow network file system): past it, the commit is recorded without "+dirty"
GIT_TIMEOUT_S = 5.0


def package_folder() -> Path:
    """The folder subsetctl's own modules are imported from."""
    return Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The commit (12 hex digits) of the git checkout subsetctl's modules are imported from, with
    "+dirty" when git says a tracked file differs from it; None when subsetctl does not run from a
    git checkout (an installed wheel) or its commit cannot be read. The commit is read from the
    checkout's own files (``.git/HEAD``, its refs and ``packed-refs``, a worktree's ``gitdir:``
    too), and git runs once, with a timeout, only for "+dirty": where it is missing, fails or
    refuses (another user's checkout), the commit is recorded alone. Never raises; read once a
    process (each cache entry and manifest records it)."""
    root = package_folder().parent
    try:
        commit = _head_commit(root)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if commit is None:
        return None
    return f"{commit[:12]}+dirty" if _tree_differs(root) else commit[:12]


def _head_commit(root: Path) -> str | None:
    """The commit the checkout at ``root`` has checked out (40 hex digits), from its files; None
    when ``root`` is no subsetctl checkout or its HEAD names no commit (a branch without one)."""
    dot_git = root / ".git"
    if not (root / "pyproject.toml").is_file() or not dot_git.exists():  # (site-packages has neither)
        return None
    git_dir = dot_git
    if dot_git.is_file():  # a worktree or submodule: "gitdir: <its folder>"
        text = dot_git.read_text(encoding="utf-8").strip()
        if not text.startswith("gitdir:"):
            return None
        git_dir = (root / text.partition(":")[2].strip()).resolve()
    common = git_dir
    if (git_dir / "commondir").is_file():  # (a worktree's branches are the main checkout's)
        common = (git_dir / (git_dir / "commondir").read_text(encoding="utf-8").strip()).resolve()
    head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    if not head.startswith("ref:"):
        return head if _is_commit(head) else None
    ref = head.partition(":")[2].strip()
    for folder in (git_dir, common):
        if (folder / ref).is_file():
            found = (folder / ref).read_text(encoding="utf-8").strip()
            return found if _is_commit(found) else None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            commit, _, name = line.partition(" ")
            if name.strip() == ref and _is_commit(commit):
                return commit
    return None


def _is_commit(text: str) -> bool:
    """Whether ``text`` is a commit's full hex name (SHA-1's 40 digits, or SHA-256's 64)."""
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def _tree_differs(root: Path) -> bool:
    """Whether git says a tracked file of the checkout at ``root`` differs from its commit (files
    git does not track, a scratch folder, do not count). False where git cannot say: missing,
    failing, refusing or slower than :data:`GIT_TIMEOUT_S`. ``GIT_OPTIONAL_LOCKS=0``: the status
    takes no lock on the index, so a `git commit` the user runs meanwhile does not fail on it."""
    try:
        done = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                              capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False,
                              stdin=subprocess.DEVNULL, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    except (OSError, subprocess.SubprocessError, ValueError):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())
