"""``python -m subsetctl``: the ``subsetctl`` command, run by a Python interpreter.

For when pip's scripts folder is not on PATH (pip warns "installed in ... which is not on
PATH" and ``subsetctl`` is then "command not found"), or to be sure which environment's
subsetctl runs: ``/path/to/venv/bin/python -m subsetctl run DIR``.
"""

import os
import sys

# `python -m` puts the current folder first on sys.path, which the `subsetctl` command does not:
# a module lying there (a `plugins:` module beside a spec from someone else, run from its folder)
# was imported, its code run, by `python -m subsetctl validate` and not by `subsetctl validate`.
# `PYTHONPATH=.` still puts the folder there, as it does for the command.
if not sys.flags.safe_path and sys.path and sys.path[0] == os.getcwd():
    del sys.path[0]

from subsetctl.cli import main  # (after the path is the command's)

if __name__ == "__main__":
    main()
