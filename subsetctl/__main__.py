"""``python -m subsetctl``: the ``subsetctl`` command, run by a Python interpreter.

For when pip's scripts folder is not on PATH (pip warns "installed in ... which is not on
PATH" and ``subsetctl`` is then "command not found"), or to be sure which environment's
subsetctl runs: ``/path/to/venv/bin/python -m subsetctl run DIR``. The ``subsetctl`` script
pip installs calls :func:`command` too.
"""

import os
import sys

# `python -m` puts the current folder first on sys.path, which the `subsetctl` command does not:
# a module lying there (a `plugins:` module beside a spec from someone else, run from its folder)
# was imported, its code run, by `python -m subsetctl validate` and not by `subsetctl validate`.
# `PYTHONPATH=.` still puts the folder there, as it does for the command.
if not sys.flags.safe_path and sys.path and sys.path[0] == os.getcwd():
    del sys.path[0]


def command() -> None:
    """Run the command line's command (:func:`subsetctl.cli.main`). Ctrl-C while its modules are
    first imported (click's, rich's, subsetctl's own: over a second on a busy machine) printed a
    traceback and the process died of SIGINT (exit -2, not 130); nothing has started then, and
    it says "interrupted." (exit 130) as a command stopped later does."""
    try:
        from subsetctl.cli import main  # (after the path is the command's)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted.\n")
        sys.exit(130)
    try:
        main()
    finally:
        # Ctrl-C in code run by exec or eval of a string (the methods of a namedtuple or a dataclass being
        # made, as a module is first imported) leaves CPython noting an interrupt not handled, even once
        # the command handled it ("interrupted; finished work is kept", exit 130): `python -m subsetctl`
        # then killed itself with SIGINT as it exited, exit -2. Such code run again without one clears it.
        exec("")  # noqa: S102


if __name__ == "__main__":
    command()
