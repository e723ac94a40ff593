"""One BLAS thread for the matrix factorizations whose rounding depends on the thread count.

OpenBLAS (numpy's BLAS and LAPACK in its pip wheels) factors a matrix (``getrf``, under
``numpy.linalg.solve`` and ``numpy.linalg.inv``) with one algorithm on one thread and with
another, split for threads, on more (past 10,000 entries): the two round differently, ~1e-16
(at d = 128 to 512; d = 64 is factored on one thread anyway). The estimators' other products
(matrix-vector products, and matrix products of whole numbers, see
:class:`~subsetctl.estimate.solvers._ExactSums`) give the same bits on one thread as on several. So without this, the ``fast`` and ``exact`` estimates from
d = 128 on computed in a process with numpy's default threads (one a core) differed in the last
bit from those of a loky worker given one thread (the cores / ``n_jobs``: 2 cores, 2 jobs) or
of a local Dask worker (always one), and a search's picks between near-equal subsets could
follow which process computed them.

:func:`one_blas_thread` runs such a factorization on one thread in every process (this one,
a loky or a Dask worker), whatever its thread count, so the numbers are the same wherever an
estimator runs. It sets the thread count of each OpenBLAS this process has loaded through
OpenBLAS's own ``openblas_set_num_threads`` (what threadpoolctl calls too), and puts it back
afterwards. Not through threadpoolctl: besides being a new dependency, from 3.8 on it lets one
Python thread at a time own OpenBLAS's limit and ignores the others' (and their restores), while
the ``threading`` backend's workers open these blocks at once, each closing when it is done.
A numpy built on another BLAS is left as it is: there ``OMP_NUM_THREADS=1`` (MKL) or
``VECLIB_MAXIMUM_THREADS=1`` (Apple's Accelerate) gives the same bits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: the names OpenBLAS's thread-count setter goes by: a plain build's, and the scipy-openblas
#: builds' in numpy's (64-bit integers) and scipy's wheels; the getter is named alike ("get")
_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads", "openblas_set_num_threads64_")


class _OpenBLAS:
    """One loaded OpenBLAS's thread count, read and set."""

    def __init__(self, setter: Any, getter: Any) -> None:
        self._set, self._get = setter, getter
        self._set.argtypes, self._set.restype = [ctypes.c_int], None
        self._get.argtypes, self._get.restype = [], ctypes.c_int

    def threads(self) -> int:
        return int(self._get())

    def set_threads(self, n: int) -> None:
        self._set(n)


def _loaded_library_paths() -> set[str]:
    """The files of the shared libraries this process has loaded (Linux: ``/proc/self/maps``);
    elsewhere those numpy's wheel ships (macOS: ``numpy/.dylibs``), of which only the loaded
    ones are opened (:func:`_loaded_openblas`)."""
    maps = Path("/proc/self/maps")
    with contextlib.suppress(OSError):  # as the file system names them: a name need not be UTF-8
        fields = (line.split(maxsplit=5) for line in os.fsdecode(maps.read_bytes()).splitlines())
        return {parts[5].strip() for parts in fields if len(parts) == 6 and parts[5].startswith("/")}
    import numpy

    root = Path(numpy.__file__).parent
    return {str(p) for folder in (root / ".dylibs", root.parent / "numpy.libs") if folder.is_dir()
            for p in folder.iterdir()}


def _loaded_openblas() -> list[_OpenBLAS]:
    """Each OpenBLAS this process has loaded, opened without loading anything new."""
    found = []
    for path in sorted(_loaded_library_paths()):
        if "openblas" not in Path(path).name.lower():
            continue
        try:
            library = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | os.RTLD_LAZY)
        except OSError:  # not loaded (RTLD_NOLOAD), or not a library
            continue
        for name in _SETTERS:
            setter = getattr(library, name, None)
            getter = getattr(library, name.replace("_set_", "_get_"), None)
            if setter is not None and getter is not None:
                found.append(_OpenBLAS(setter, getter))
                break
    return found


_lock = threading.Lock()
#: the OpenBLAS libraries found on first use (numpy's is loaded by then: numpy imports it)
_libraries: list[_OpenBLAS] | None = None
#: how many :func:`one_blas_thread` blocks are open now, in all threads of this process
_open_blocks = 0
#: the thread counts to put back when the last block closes
_put_back: list[tuple[_OpenBLAS, int]] = []


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with each loaded OpenBLAS on one thread, the counts put back after it.

    The count is the process's, not the thread's: blocks open at once in several threads
    (the ``threading`` backend) keep it at one until the last of them closes."""
    global _libraries, _open_blocks
    with _lock:
        if _libraries is None:
            _libraries = _loaded_openblas()
        if _open_blocks == 0:
            _put_back[:] = [(library, library.threads()) for library in _libraries]
            for library, threads in _put_back:
                if threads != 1:
                    library.set_threads(1)
        _open_blocks += 1
    try:
        yield
    finally:
        with _lock:
            _open_blocks -= 1
            if _open_blocks == 0:
                for library, threads in _put_back:
                    if threads != 1:
                        library.set_threads(threads)
                _put_back.clear()


def _after_fork_in_child() -> None:
    """A child forked while blocks were open in other threads (which the child lacks) starts
    with none open, its OpenBLAS's counts put back, and a lock no thread holds: else a lock
    held at the fork would hang its first estimate, and its counts would stay at one."""
    global _lock, _open_blocks
    _lock = threading.Lock()
    if _open_blocks:
        for library, threads in _put_back:
            if threads != 1:
                library.set_threads(threads)
    _open_blocks = 0
    _put_back.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
