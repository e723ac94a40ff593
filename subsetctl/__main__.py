"""``python -m subsetctl``: the ``subsetctl`` command, run by a Python interpreter.

For when pip's scripts folder is not on PATH (pip warns "installed in ... which is not on
PATH" and ``subsetctl`` is then "command not found"), or to be sure which environment's
subsetctl runs: ``/path/to/venv/bin/python -m subsetctl run DIR``.
"""

from subsetctl.cli import main

if __name__ == "__main__":
    main()
