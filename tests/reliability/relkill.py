"""A test plugin (listed under ``plugins:`` of the crash-test spec) that can SIGKILL its
own process at a precise point inside the search stage.

With ``RELTEST_KILL_AFTER_ADDS=N`` in the environment, the process kills itself with
SIGKILL right after the N-th chunk of subset estimates is saved to the results store,
i.e. mid-search with some estimates on disk and others not. Without the variable the
plugin does nothing, so the same spec runs normally (in the test process too).
"""

from __future__ import annotations

import os
import signal
from typing import Any

PLUGIN = "relkill"
"""The attribute the spec's ``plugins: ["relkill:PLUGIN"]`` entry names."""


def _install(after: int) -> None:
    from subsetctl.estimate.results import SubsetResultsStore

    original = SubsetResultsStore.add
    calls = {"n": 0}

    def add(self: Any, masks: Any, batch: Any) -> None:
        original(self, masks, batch)
        calls["n"] += 1
        if calls["n"] >= after:
            os.kill(os.getpid(), signal.SIGKILL)

    SubsetResultsStore.add = add  # type: ignore[method-assign]


if os.environ.get("RELTEST_KILL_AFTER_ADDS"):
    _install(int(os.environ["RELTEST_KILL_AFTER_ADDS"]))
