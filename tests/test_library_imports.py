"""The model libraries' first import is not cut short by a notebook's interrupt
(subsetctl.library_imports)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest


def test_an_interrupt_during_the_model_libraries_first_import_waits_for_its_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C (SIGINT) while a stage first imported datasets, torch or transformers left them
    half imported: the next run in the notebook failed ("Could not import module
    'LlamaForCausalLM'", "module 'dill' has no attribute '_dill'") until the kernel was
    restarted. Now the import ends whole, then the interrupt is raised, and the next import
    finds the library as it should be."""
    from subsetctl import library_imports
    from subsetctl.pipeline import Stage
    from subsetctl.stages import all_stages

    (tmp_path / "slowlib").mkdir()
    (tmp_path / "slowlib" / "__init__.py").write_text(
        "import os, signal\nbefore = True\nos.kill(os.getpid(), signal.SIGINT)\nafter = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slowlib", raising=False)
    with pytest.raises(KeyboardInterrupt):
        library_imports.import_whole(("slowlib",))
    assert sys.modules["slowlib"].after  # imported whole before the interrupt was raised
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler put back
    library_imports.import_whole(("slowlib",))  # nothing left to import: no interrupt held or raised
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C outside works as before
        os.kill(os.getpid(), signal.SIGINT)
    importing = {stage.name: stage.imports_first for stage in all_stages() if stage.imports_first}
    assert importing == {"data": library_imports.DATA_LIBRARIES, **dict.fromkeys(
        ("meta_init", "gradients", "verify", "finetune", "evaluate"), library_imports.MODEL_LIBRARIES)}
    assert "datasets" in library_imports.MODEL_LIBRARIES and not Stage.imports_first


def test_a_keyboard_interrupt_from_a_handler_of_ones_own_waits_for_the_first_import_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook's own signal handler that raises KeyboardInterrupt (a cell's time limit: SIGALRM)
    was not held back during the libraries' first import: it left them half imported as Ctrl-C
    did. It is called once the import is done; the handler is put back."""
    from subsetctl import library_imports

    def time_is_up(signum: int, frame: object) -> None:
        raise KeyboardInterrupt("time is up")

    (tmp_path / "alarmedlib").mkdir()
    (tmp_path / "alarmedlib" / "__init__.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGALRM)\nafter = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "alarmedlib", raising=False)
    previous = signal.signal(signal.SIGALRM, time_is_up)
    try:
        with pytest.raises(KeyboardInterrupt, match="time is up"):
            library_imports.import_whole(("alarmedlib",))
        assert sys.modules["alarmedlib"].after  # imported whole before the handler raised
        assert signal.getsignal(signal.SIGALRM) is time_is_up
    finally:
        signal.signal(signal.SIGALRM, previous)
