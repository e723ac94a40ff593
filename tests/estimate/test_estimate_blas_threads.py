"""Tests of :mod:`subsetctl.estimate.blas_threads`: one OpenBLAS thread inside, the count put back after."""

from __future__ import annotations

import mmap
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from subsetctl.estimate import blas_threads
from subsetctl.estimate.blas_threads import one_blas_thread


@pytest.fixture
def openblas(blas_threads_here: Callable[[int], list[blas_threads._OpenBLAS]]) -> blas_threads._OpenBLAS:
    """An OpenBLAS this process has loaded (numpy's), on three threads for the test."""
    return blas_threads_here(3)[0]


def test_numpys_openblas_is_found() -> None:
    """numpy's pip wheels bring OpenBLAS: it must be found, or the estimates would follow the
    thread count again (numpy.show_config names the BLAS numpy was built with)."""
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    if "openblas" not in blas.lower():
        pytest.skip(f"numpy here is built with {blas}")
    assert blas_threads._loaded_openblas()


def test_one_thread_inside_and_the_count_put_back_after_nested_blocks(openblas: blas_threads._OpenBLAS) -> None:
    with one_blas_thread():
        assert openblas.threads() == 1
        with one_blas_thread():
            assert openblas.threads() == 1
        assert openblas.threads() == 1  # the outer block still runs
    assert openblas.threads() == 3


def test_blocks_of_several_threads_keep_one_thread_until_the_last_closes(openblas: blas_threads._OpenBLAS) -> None:
    """The count is the process's: a block closing in one thread (the threading backend's
    workers) must not give the threads back to a factorization running in another."""
    first_in, second_out = threading.Event(), threading.Event()
    seen: list[int] = []

    def first() -> None:
        with one_blas_thread():
            first_in.set()
            second_out.wait(10)
            seen.append(openblas.threads())

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(10)
    with one_blas_thread():
        pass
    second_out.set()
    thread.join(10)
    assert seen == [1]
    assert openblas.threads() == 3


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads /proc/self/maps (Linux)")
def test_a_mapped_file_whose_name_is_not_utf8_does_not_stop_the_search(tmp_path: Path) -> None:
    """/proc/self/maps names files in the file system's bytes: read as UTF-8 text, one mapped
    file named in Latin-1 failed every ``fast`` and ``exact`` estimate (UnicodeDecodeError)."""
    path = tmp_path / os.fsdecode(b"caf\xe9.bin")
    path.write_bytes(b"\0" * mmap.PAGESIZE)
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ):
        assert str(path) in blas_threads._loaded_library_paths()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_another_thread_is_in_a_block_gets_the_count_back(
        openblas: blas_threads._OpenBLAS) -> None:
    """The thread whose block was open is not in the child, so no block there would ever close:
    the child's count stayed at one for good (and a lock held at the fork would hang it)."""
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with one_blas_thread():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(10)
        pid = os.fork()
        if pid == 0:  # the child: 0 if it has the count back and a block still sets one thread
            code = 1
            try:
                if openblas.threads() == 3:
                    with one_blas_thread():
                        code = 0 if openblas.threads() == 1 else 2
                    code = code or (0 if openblas.threads() == 3 else 3)
            finally:
                os._exit(code)
        deadline = time.monotonic() + 20
        while (status := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if status[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        assert os.waitstatus_to_exitcode(status[1]) == 0
    finally:
        leave.set()
        thread.join(10)
    assert openblas.threads() == 3
