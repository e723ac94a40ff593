"""Plugin estimators and projectors, checked: their failures are blamed on them.

A built-in estimator or projector that fails is subsetctl's bug; a plugin's failure (an
exception, a result of the wrong type or shape, NaN features) is its author's to fix, and
used to be reported as "internal error ... a bug in subsetctl". Plugin strategies are
checked where they are called (the search stage), loaders with :func:`call_loader_plugin`; these
wrappers do the same for the two kinds that are called from deep inside the estimators'
executors and the gradient engine, and :func:`strategy_hook` for the class methods of a
strategy that validate calls (``check_spec``, ``max_subsets``).
"""

from __future__ import annotations

import contextlib
import numbers
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from subsetctl.errors import UserError

#: :func:`prints_to_stderr`: its lock, the calls inside it, and the stdout it replaced
_STDOUT_LOCK = threading.Lock()
_stdout_redirections = 0
_stdout_before: Any = None


@contextlib.contextmanager
def prints_to_stderr() -> Iterator[None]:
    """``sys.stdout`` is ``sys.stderr`` while any call is inside, so that what plugin code
    prints goes to stderr, whatever the command's format and wherever it runs: every call of
    a plugin's code (a strategy's ``run``, an estimator's ``estimate``, a loader, a
    projector, their constructors and hooks) is inside one, here and on loky and Dask
    workers, which share this process's stdout. stdout holds only what the command itself
    prints (its JSON with `--format json`, which a print before it made unparseable; in text
    its verdict, table or report, which a script pipes on), stderr its progress and warnings,
    which a plugin's print is like. A plugin estimator's print went to stderr on loky and Dask
    workers but to stdout on the sequential and threading backends. Counted under a lock, not
    :func:`contextlib.redirect_stdout`: the threading backend's batches, and a Dask worker's
    tasks (``threads_per_worker``), run in threads, and each thread putting back the stdout
    it found could leave stdout on stderr for good."""
    global _stdout_redirections, _stdout_before
    with _STDOUT_LOCK:
        if _stdout_redirections == 0:
            _stdout_before, sys.stdout = sys.stdout, sys.stderr
        _stdout_redirections += 1
    try:
        yield
    finally:
        with _STDOUT_LOCK:
            _stdout_redirections -= 1
            if _stdout_redirections == 0:
                sys.stdout, _stdout_before = _stdout_before, None


def what_it_did(exc: BaseException, plugin: Any = None) -> str:
    """How a plugin's call ended, for a message: "called sys.exit(3)" (a ``SystemExit``,
    caught so the run does not end silently with the plugin's code) or "raised T: msg",
    followed by where in ``plugin``'s code (its class or function), if known (see
    :func:`plugin_frame`)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}){plugin_frame(exc, plugin)}"
    return f"raised {type(exc).__name__}: {exc}{plugin_frame(exc, plugin)}"


def _home_of(plugin: Any) -> tuple[list[Path], Path | None]:
    """Where ``plugin``'s code lives (``plugin``: its class, function or object, or the name
    of its module): the folders of its top-level package (every module of the package is
    its author's), or, for a plugin in a module of its own (``best_single.py`` on
    PYTHONPATH), that file alone, not the folder it shares with other modules. Found
    without importing anything: the module may be the one that failed to import."""
    import importlib.util

    if isinstance(plugin, str):
        module = plugin
    else:
        owner = plugin if isinstance(plugin, type) or callable(plugin) else type(plugin)
        module = getattr(owner, "__module__", None) or ""
    try:
        spec = importlib.util.find_spec(module.partition(".")[0]) if module else None
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return [], None
    folders = [Path(p) for p in spec.submodule_search_locations or []]
    return folders, (None if folders or not spec.origin else Path(spec.origin))


def _plugin_frames(exc: BaseException, plugin: Any) -> list[traceback.FrameSummary]:
    """The frames of ``exc``'s traceback in ``plugin``'s own code (its package, or its module
    file; ``plugin`` as for :func:`_home_of`), outermost first."""
    if plugin is None or exc.__traceback__ is None:
        return []
    home = _home_of(plugin)  # (once, not for each frame: it looks the module up)
    return [frame for frame in traceback.extract_tb(exc.__traceback__) if _in_plugin_code(frame.filename, home)]


def _in_plugin_code(filename: str | None, home: tuple[list[Path], Path | None]) -> bool:
    """Whether the file ``filename`` is a plugin's own code: in the folders of its package,
    or its module file (``home``, :func:`_home_of`'s)."""
    if not filename:
        return False
    folders, file = home
    return (file is not None and Path(filename) == file) or any(Path(filename).is_relative_to(folder)
                                                                for folder in folders)


def plugin_frame(exc: BaseException, plugin: Any) -> str:
    """" (at /path/myplug/helpers.py:12, in score)": the innermost line of ``plugin``'s own
    code (its package, or its module file; ``plugin`` as for :func:`_home_of`) that ``exc``
    passed through, which is where its author looks first (the line raising may be in numpy;
    the whole traceback is printed above the message, :func:`plugin_traceback`); "" when none
    is known."""
    frames = _plugin_frames(exc, plugin)
    if not frames:
        return ""
    return f" (at {frames[-1].filename}:{frames[-1].lineno}, in {frames[-1].name})"


def plugin_traceback(exc: BaseException, plugin: Any) -> str:
    """The traceback of ``exc``, raised in ``plugin``'s code, as its author reads it: from the
    first frame outside subsetctl and importlib (the frames above it only call or import the
    plugin), with the exceptions it was chained to; "" where none of its frames is the
    plugin's own (the call itself failed, a wrong signature; or pickling it did, in joblib's
    code: the message says what of the plugin is wrong). A syntax error in the plugin's code
    (its import compiled it: no frame of its own) is its line and caret, as Python shows it."""
    import importlib

    import subsetctl

    if isinstance(exc, SyntaxError) and plugin is not None and _in_plugin_code(exc.filename, _home_of(plugin)):
        return "".join(traceback.format_exception_only(exc))
    if not _plugin_frames(exc, plugin):
        return ""
    callers = [Path(module.__file__).resolve().parent for module in (subsetctl, importlib)]  # (importlib: a module's import)
    shown = traceback.TracebackException.from_exception(exc)
    frames = list(shown.stack)
    first = next((i for i, frame in enumerate(frames) if not frame.filename.startswith("<frozen ")
                  and not any(Path(frame.filename).resolve().is_relative_to(folder) for folder in callers)), 0)
    shown.stack = traceback.StackSummary.from_list(frames[first:])
    return "".join(shown.format())


def blamed_on_plugin(error: UserError, exc: BaseException, plugin: Any) -> UserError:
    """``error`` (a message blaming ``plugin`` for ``exc``) carrying the text of the plugin's
    traceback (:func:`plugin_traceback`) as ``plugin_traceback``, which the CLI prints above
    the message. Kept as text, an attribute, so that it survives the pickling that brings an
    error back from a loky or Dask worker: there ``exc`` itself was lost, and `run` (with
    SUBSETCTL_DEBUG=1 too) showed only the workers' subsetctl frames, never the plugin's."""
    error.plugin_traceback = plugin_traceback(exc, plugin)  # type: ignore[attr-defined]
    return error


def call_loader_plugin(fn: Any, options: Any, ctx: Any, who: str, fix: str) -> Any:
    """``fn(options, ctx)``, a loader plugin's call, with an exception of its own code
    (``sys.exit()`` too) blamed on it: "Source 's': {who} raised T: msg (at file:line ...).
    {fix}" (it was reported as an internal error, a bug in subsetctl). A UserError it raises
    is its own message and passes through."""
    try:
        with prints_to_stderr():
            return fn(options, ctx)
    except UserError:
        raise
    except (Exception, SystemExit) as exc:
        raise blamed_on_plugin(UserError(f"Source {ctx.source_name!r}: {who} {what_it_did(exc, fn)}. {fix}"),
                               exc, fn) from exc


def _blame(kind: str, name: str, origin: str, what: str, exc: BaseException | None = None,
           plugin: Any = None) -> UserError:
    """The error for a plugin ``name`` that did ``what`` (raising ``exc``, where in the code
    of ``plugin``, its class or object, says :func:`plugin_frame`)."""
    if isinstance(exc, SystemExit):
        cause = f": it {what_it_did(exc, plugin)}"
    else:
        cause = (f": {type(exc).__name__}: {' '.join(str(exc).split())[:300]}{plugin_frame(exc, plugin)}"
                 if exc is not None else "")
    error = UserError(f"The {kind} plugin {name!r} ({origin}) {what}{cause}. Fix the plugin, or use a built-in "
                      f"{kind} (`subsetctl ls` lists them).")
    return error if exc is None else blamed_on_plugin(error, exc, plugin)


def build_plugin(kind: str, name: str, origin: str, build: Any, *args: Any, **kwargs: Any) -> Any:
    """``build(*args, **kwargs)``, with any exception blamed on the plugin (a constructor
    that takes other arguments than subsetctl passes, an abstract method left out)."""
    try:
        with prints_to_stderr():
            return build(*args, **kwargs)
    except UserError:
        raise
    except (Exception, SystemExit) as exc:  # the plugin's own code (sys.exit() too: not a silent exit)
        raise _blame(kind, name, origin, f"could not be built with {', '.join(map(repr, sorted(kwargs))) or 'no arguments'}",
                     exc, build) from exc


def strategy_hook(cls: Any, name: str, origin: str, hook: str, *args: Any) -> Any:
    """``cls.<hook>(*args)`` for a strategy's optional class methods that validate calls
    (``check_spec``: a problem or None; ``max_subsets``: a count or None). A plugin's
    exception, or a result of another type (``True``, ``"many"``), is blamed on it: it was
    an "internal error ... a bug in subsetctl" that stopped validate and run."""
    expected = {"check_spec": (str, "a problem (a str)"),
                "max_subsets": (numbers.Integral, "a number of subsets (an int, 0 or more)")}
    kind, what = expected[hook]
    if origin == "built-in":
        return getattr(cls, hook)(*args)
    try:
        with prints_to_stderr():
            result = getattr(cls, hook)(*args)
    except UserError:
        raise
    except (Exception, SystemExit) as exc:  # the plugin's own code (sys.exit() too: not a silent exit)
        raise _blame("strategy", name, origin, f"failed in {hook}()", exc, cls) from exc
    negative = isinstance(result, numbers.Integral) and not isinstance(result, bool) and result < 0
    if result is not None and (isinstance(result, bool) or not isinstance(result, kind) or negative):
        # (a negative count was taken as it was: plan counted -5 subsets of work)
        raise _blame("strategy", name, origin, f"returned {result!r} from {hook}(); it must return {what} or None")
    return int(result) if isinstance(result, numbers.Integral) else result


class _Checked:
    """A plugin object whose calls are checked; every other attribute is the plugin's."""

    kind = ""

    def __init__(self, inner: Any, name: str, origin: str) -> None:
        self.inner, self.name, self.origin = inner, name, origin

    def __getattr__(self, attr: str) -> Any:  # sources, fingerprint, needs_model, p, d, ...
        if attr in ("inner", "name", "origin"):  # not set yet (unpickling)
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def _call(self, method: str, doing: str, *args: Any) -> Any:
        """``inner.method(*args)``, with any exception blamed on the plugin."""
        try:
            with prints_to_stderr():
                return getattr(self.inner, method)(*args)
        except UserError:
            raise
        except (Exception, SystemExit) as exc:  # the plugin's own code (sys.exit() too: not a silent exit)
            raise _blame(self.kind, self.name, self.origin, f"failed while {doing}", exc, self.inner) from exc


class CheckedEstimator(_Checked):
    """A plugin estimator whose ``estimate`` results are checked: an ``EstimateBatch``
    with one entry per mask. Picklable when the plugin is, so it runs on loky and Dask
    workers too."""

    kind = "estimator"

    def estimate(self, masks: np.ndarray) -> Any:
        from subsetctl.estimate.base import EstimateBatch

        batch = self._call("estimate", "estimating subsets", masks)
        if not isinstance(batch, EstimateBatch):
            raise _blame("estimator", self.name, self.origin,
                         f"returned a {type(batch).__name__} from estimate(); it must return an EstimateBatch")
        m = len(np.asarray(masks))
        for field in ("loss", "w_norm", "iterations", "converged"):
            shape = np.shape(getattr(batch, field))
            if shape != (m,):
                raise _blame("estimator", self.name, self.origin,
                             f"returned {field} of shape {shape} for {m} subsets; each must have shape ({m},)")
            wrong_type = _not_numbers(getattr(batch, field))
            if wrong_type is not None:  # (losses as strings were turned into floats without a word)
                raise _blame("estimator", self.name, self.origin,
                             f"returned {field} as {wrong_type}; loss, w_norm, iterations and converged must be "
                             "numeric arrays (e.g. loss as floats, NaN where a subset could not be estimated)")
        extra = batch.extra
        wrong = (f"a {type(extra).__name__}" if not isinstance(extra, dict) else
                 next((f"{key!r} of shape {np.shape(value)}" for key, value in extra.items()
                       if np.shape(value)[:1] != (m,)), None))
        if wrong is not None:  # (concatenating the batches failed with an IndexError called a bug in subsetctl)
            raise _blame("estimator", self.name, self.origin,
                         f"returned extra {wrong} for {m} subsets; extra must be a dict of arrays with one row per "
                         f"subset (shape ({m}, ...)), or left out")
        return batch


def _not_numbers(values: Any) -> str | None:
    """What ``values`` (one field of an estimator's batch) hold when not numbers ("strings
    (dtype <U3), first '1.5'"), or None for numbers: bools, ints and floats, in an array of
    that dtype or in an object array (Python floats, Decimals)."""
    array = np.asarray(values)
    if array.dtype.kind in "biuf":
        return None
    if array.dtype.kind == "O" and all(isinstance(v, numbers.Real) for v in array.ravel()):
        return None
    kinds = {"U": "strings", "S": "bytes", "c": "complex numbers", "M": "datetimes", "m": "timedeltas"}
    first = f", first {array.ravel()[:1].tolist()[0]!r}" if array.size else ""
    return f"{kinds.get(array.dtype.kind, 'objects')} (dtype {array.dtype}){first}"


def check_estimator_sources(estimator: CheckedEstimator, expected: list[str]) -> None:
    """Refuse a plugin estimator whose ``sources`` is not the features' source names in
    their order (a method instead of a property, another order, other names): the search
    read it to open its results store and failed with a TypeError called a bug in
    subsetctl, or a message about the store that did not name the plugin."""
    try:
        with prints_to_stderr():
            got = estimator.inner.sources
        names = None if callable(got) or isinstance(got, (str, bytes)) else list(got)
    except (Exception, SystemExit) as exc:  # the plugin's own code (a property that raises)
        raise _blame("estimator", estimator.name, estimator.origin, "failed while reading its sources", exc,
                     estimator.inner) from exc
    if names != list(expected):
        shown = "a method (not a property)" if callable(got) else repr(names if names is not None else got)
        raise _blame("estimator", estimator.name, estimator.origin,
                     f"has sources {shown}; `sources` must be a property giving the names of the features' "
                     f"sources in their order ({', '.join(expected)}), e.g. list(features.sources)")


def unpicklable_plugin(estimator: Any, backend: str, exc: BaseException) -> UserError | None:
    """The error for a plugin estimator that cannot be pickled to run on worker processes
    (``executor.backend``), or None when ``estimator`` is not a plugin (subsetctl's bug)."""
    if not isinstance(estimator, CheckedEstimator):
        return None
    return _blame("estimator", estimator.name, estimator.origin,
                  f"cannot be pickled to run on {backend} worker processes (executor.backend: {backend}); keep "
                  "lambdas, local functions and open files out of its attributes, or set executor.backend: "
                  "threading", exc)


class CheckedProjector(_Checked):
    """A plugin projector whose projections are checked: (rows, d) and finite. A NaN there
    used to pass the gradients stage and be blamed on meta-init at the search."""

    kind = "projector"

    def project_chunks(self, chunks: Any) -> Any:
        import torch

        out = self._call("project_chunks", "projecting gradients", chunks)
        rows = int(chunks[0].shape[0]) if len(chunks) else 0
        d = int(getattr(self.inner, "d", -1))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (rows, d):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise _blame("projector", self.name, self.origin,
                         f"returned {shape} for {rows} gradients; project_chunks must return a tensor of shape "
                         f"({rows}, d={d})")
        if not bool(torch.isfinite(out).all()):
            raise _blame("projector", self.name, self.origin, "returned NaN or infinite projections")
        return out
