"""The large libraries a stage uses (datasets; torch, transformers, peft) imported whole first.

A notebook's interrupt (Ctrl-C, the kernel's stop button: SIGINT) that lands while Python
is first importing them leaves them half imported in ``sys.modules``: the next run in that
process failed ("Could not import module 'LlamaForCausalLM'", "partially initialized module
'torch._dynamo'", "module 'dill' has no attribute '_dill'") until the kernel was restarted.
Their first import is therefore made with SIGINT held back (:func:`interrupts_held`), and the
interrupt raised as soon as it is done: the run stops as it would have, and the next one
finds them whole. So are the other signals a Python handler takes: a notebook's own handler
(a cell's time limit on SIGALRM) may raise KeyboardInterrupt as well. Each stage names what it imports so (:attr:`subsetctl.pipeline.Stage.imports_first`; a run that needs fewer, :meth:`subsetctl.pipeline.Stage.imports_for`).
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

#: what the data stage imports that takes seconds (dill, pyarrow and pandas among them)
DATA_LIBRARIES: tuple[str, ...] = ("datasets",)

#: what the model stages import that takes seconds (torch._dynamo, pulled in by
#: transformers' generation code, among them), besides what they read the data with
MODEL_LIBRARIES: tuple[str, ...] = (
    *DATA_LIBRARIES, "torch", "transformers", "transformers.modeling_utils", "transformers.generation",
    "transformers.models.auto.modeling_auto", "peft",
)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold back SIGINT, and every other signal a Python handler takes, inside; once the block
    is done, call the handler there was for each that came (in the order they came, each
    once). A notebook's own handler may raise KeyboardInterrupt too (a time limit on a cell:
    ``signal.alarm`` with a SIGALRM handler that raises it), and one raised halfway through
    an import left the library half imported as Ctrl-C did; it is raised a few seconds late
    instead. Only in the main thread, where Python runs signal handlers; a signal ignored, or
    left to its default action (to kill the process), is not touched."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers: dict[int, Any] = {}
    for signum in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError):  # (SIGKILL and SIGSTOP: no handler to read)
            handler = signal.getsignal(signum)
            if callable(handler):
                handlers[signum] = handler
    held: dict[int, FrameType | None] = {}
    for signum in handlers:
        signal.signal(signum, lambda signum, frame: held.setdefault(signum, frame))
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum, frame in held.items():  # the first handler to raise ends it
            handlers[signum](signum, frame)


def import_whole(libraries: tuple[str, ...]) -> None:
    """Import those of ``libraries`` not imported yet, an interrupt held back until they are
    (see the module's docstring). One that cannot be imported is left to the stage, which
    says what to install."""
    missing = [name for name in libraries if name not in sys.modules]
    if not missing:
        return
    with interrupts_held():
        for name in missing:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
