"""Tests of :mod:`subsetctl.estimate.blas_threads`: one OpenBLAS thread inside, the count put back after."""

from __future__ import annotations

import threading
from collections.abc import Callable

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
