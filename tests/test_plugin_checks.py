"""What a third-party strategy or estimator returns is checked where subsetctl takes it:
mistakes are refused with the plugin named, never stored or fine-tuned on."""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from subsetctl.errors import UserError
from subsetctl.estimate.base import SubsetEstimator
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import StrategyResult, SubsetTrace
from subsetctl.stages.search import _run_strategy


def _returning(result: Any = None, raise_exit: bool = False) -> type:
    class Returning:
        def run(self, estimator: Any, context: Any, params: Any) -> Any:
            if raise_exit:
                sys.exit("giving up")
            return result

    return Returning


class _Context:
    sources = ("a", "b", "c")


@pytest.fixture
def plugin_strategy_name() -> str:
    """A name registered from this (non-subsetctl) module, so it counts as a plugin."""

    @STRATEGIES.register("checked_test_strategy", "a test strategy")
    class Placeholder:
        pass

    return "checked_test_strategy"


@pytest.mark.parametrize(("result", "says"), [
    # fine-tuned on b's rows twice, under a run key of its own
    (StrategyResult("s", ["b", "b"]), r"selected 'b' more than once"),
    # a string: single-letter names were accepted, longer ones split into letters
    (StrategyResult("s", "b"), r"returned selected='b'; it must be a list of source names"),
    # a TypeError ('NoneType' object is not iterable) called a bug in subsetctl
    (StrategyResult("s", None), r"returned selected=None; it must be a list of source names"),
    # one warning per letter
    (StrategyResult("s", ["a"], notices="hi"), r"returned notices='hi'; notices must be a list of sentences"),
    # "cannot be stored (TypeError: 'NoneType' object is not iterable); estimated_loss and scores must be numbers"
    (StrategyResult("s", ["a"], notices=None), r"returned notices=None; notices must be a list of sentences \(str\)"),  # type: ignore[arg-type]
    (StrategyResult("s", ["a"], notices=[{"n": 2}]), r"returned notices=\[\{'n': 2\}\]; notices must be a list"),
    # a list of numbers: "naming 1.0, 2.0, which are not sources"
    (StrategyResult("s", ["a"], scores=[1.0, 2.0]),  # type: ignore[arg-type]
     r"returned scores=\[1\.0, 2\.0\]; scores must map source names to numbers"),
    # an internal error "could not convert string to float" called a bug in subsetctl
    (StrategyResult("s", ["a"], estimated_loss="low"),
     r"returned a StrategyResult that cannot be stored \(ValueError"),
])
def test_a_plugin_strategys_result_is_checked(plugin_strategy_name: str, result: Any, says: str) -> None:
    with pytest.raises(UserError, match=r"Strategy 'mine' \(module [\w.]+, \S+\.py\) " + says):
        _run_strategy(_returning(result), plugin_strategy_name, "mine", None, _Context(), None)


def test_a_plugin_strategys_result_is_named_by_its_registered_name(plugin_strategy_name: str) -> None:
    """``strategy=None`` (or a name copied from another plugin) was stored and said as it was:
    "None does not weigh its pick against the target alone"."""
    result = _run_strategy(_returning(StrategyResult(None, ["a"], estimated_loss=1.5)),  # type: ignore[arg-type]
                           plugin_strategy_name, "mine", None, _Context(), None)
    assert result.strategy == plugin_strategy_name


def test_a_plugin_estimators_extra_of_the_wrong_shape_is_blamed_on_it() -> None:
    """``extra=[1]`` (or an array of another length) failed as the batches were put together,
    with an IndexError called a bug in subsetctl."""
    from subsetctl.estimate.base import EstimateBatch
    from subsetctl.plugin_guard import CheckedEstimator

    class Inner:
        def __init__(self, extra: Any) -> None:
            self.extra = extra

        def estimate(self, masks: Any) -> EstimateBatch:
            m = len(masks)
            return EstimateBatch(np.ones(m), np.ones(m), np.ones(m, int), np.ones(m, bool), extra=self.extra)

    masks = np.ones((3, 2), dtype=bool)
    for extra, says in (([1], "extra a list"), ({"steps": np.ones(2)}, "extra 'steps' of shape (2,)")):
        with pytest.raises(UserError, match=rf"The estimator plugin 'mine' \(module mine\) returned {re.escape(says)} "
                                            r"for 3 subsets; extra must be a dict of arrays with one row per subset"):
            CheckedEstimator(Inner(extra), "mine", "module mine").estimate(masks)
    assert CheckedEstimator(Inner({"steps": np.ones((3, 2))}), "mine", "module mine").estimate(masks).extra


@pytest.mark.parametrize(("field", "values", "says"), [
    # turned into floats without a word, as if they were the estimates
    ("loss", np.ones(3).astype(str), "loss as strings (dtype <U32), first '1.0'"),
    ("w_norm", np.array([1.0, "x", None], dtype=object), "w_norm as objects (dtype object), first 1.0"),
    ("converged", np.array([1j, 2j, 3j]), "converged as complex numbers (dtype complex128), first 1j"),
])
def test_a_plugin_estimators_non_numeric_results_are_refused_by_name(field: str, values: Any, says: str) -> None:
    """An estimator returning its losses as strings (``loss.astype(str)``) was taken: the
    strings were read as floats further on, and the search ranked subsets by them."""
    from subsetctl.estimate.base import EstimateBatch
    from subsetctl.plugin_guard import CheckedEstimator

    class Inner:
        def __init__(self, **fields: Any) -> None:
            self.fields = fields

        def estimate(self, masks: Any) -> EstimateBatch:
            m = len(masks)
            return EstimateBatch(**{"loss": np.ones(m), "w_norm": np.ones(m), "iterations": np.ones(m, int),
                                    "converged": np.ones(m, bool), **self.fields})

    masks = np.ones((3, 2), dtype=bool)
    with pytest.raises(UserError, match=rf"The estimator plugin 'mine' \(module mine\) returned {re.escape(says)}; loss, "
                                        r"w_norm, iterations and converged must be numeric arrays"):
        CheckedEstimator(Inner(**{field: values}), "mine", "module mine").estimate(masks)
    numbers = {"loss": np.array([1, 2.5, np.nan], dtype=object), "converged": [True, False, True]}  # taken as ever
    assert CheckedEstimator(Inner(**numbers), "mine", "module mine").estimate(masks).converged == [True, False, True]


class _ThreeSources(SubsetEstimator):
    """An estimator of the sources a, b, c: each subset's loss is its size."""

    @property
    def sources(self) -> list[str]:
        return ["a", "b", "c"]

    def estimate(self, masks: Any) -> Any:
        from subsetctl.estimate.base import EstimateBatch

        m = np.asarray(masks, dtype=bool)
        return EstimateBatch(m.sum(1).astype(float), np.ones(len(m)), np.ones(len(m), int), np.ones(len(m), bool))


@pytest.mark.parametrize(("asks", "says"), [
    # names instead of masks: "Subset masks must have shape (m, 3) (one column per source), got (1, 1)"
    (lambda est: est.estimate([["a"]]), (r" passed estimator\.estimate masks of shape \(1, 1\) holding str\d* values; "
                                        r"they must be 0/1 or bool of shape \(m, 3\)")),
    (lambda est: est.estimate(np.ones((2, 7), dtype=bool)), r" passed estimator\.estimate masks of shape \(2, 7\); "),
    # each letter taken for a source: with one-letter names, other subsets than meant, without a word
    (lambda est: est.masks_for(["a", "b"]), (r", calling estimator\.masks_for: masks_for takes a list of subsets, each a "
                                            r"list of source names, but subset 0 is the text 'a'")),
])
def test_a_plugin_strategy_asking_for_estimates_wrongly_is_named(plugin_strategy_name: str, asks: Any,
                                                                 says: str) -> None:
    class Asking:
        def run(self, estimator: Any, context: Any, params: Any) -> Any:
            asks(estimator)
            return StrategyResult("s", ["a"], estimated_loss=1.0)

    with pytest.raises(UserError, match=r"Strategy 'mine' \(module [\w.]+, \S+\.py\)" + says):
        _run_strategy(Asking, plugin_strategy_name, "mine", _ThreeSources(), _Context(), None)
    fine = _returning(StrategyResult("s", ["a"], estimated_loss=1.0))
    assert _run_strategy(fine, plugin_strategy_name, "mine", _ThreeSources(), _Context(), None).selected == ["a"]


def test_a_plugin_strategy_changing_its_sources_is_checked_against_the_projects(plugin_strategy_name: str) -> None:
    """A name appended to its context's list was taken for a source of the project, and a
    reversed ``estimator.sources`` reversed the estimator's own list."""
    names = ["a", "b", "c"]

    class Holding(_ThreeSources):
        @property
        def sources(self) -> list[str]:
            return names  # its own list, as the built-ins' (the features')

    class Adding:  # a name added to its own context's list is still no source of the project
        def run(self, estimator: Any, context: Any, params: Any) -> Any:
            estimator.sources.reverse()
            context.sources.append("zzz")
            return StrategyResult("s", ["zzz"], estimated_loss=1.0)

    estimator = Holding()

    with pytest.raises(UserError, match=r"selected 'zzz', which is not a source of this project \(sources: a, b, c\)"):
        _run_strategy(Adding, plugin_strategy_name, "mine", estimator, SimpleNamespace(sources=["a", "b", "c"]),
                      None)
    assert names == ["a", "b", "c"]


def test_a_plugin_strategy_calling_sys_exit_is_blamed(plugin_strategy_name: str) -> None:
    """It printed only "giving up" and exited 1, the plugin not named."""
    with pytest.raises(UserError, match=r"Strategy 'mine' \(module [\w.]+, \S+\.py\) called sys.exit\('giving up'\)"):
        _run_strategy(_returning(raise_exit=True), plugin_strategy_name, "mine", None, _Context(), None)


def test_a_good_plugin_result_passes(plugin_strategy_name: str) -> None:
    result = StrategyResult("s", ["c", "a"], estimated_loss=1.5)
    assert _run_strategy(_returning(result), plugin_strategy_name, "mine", None, _Context(), None) is result



def test_a_plugin_strategys_print_goes_to_stderr_in_text_mode_too(plugin_strategy_name: str, capfd) -> None:
    """A plugin strategy's print() went to stdout (the command's own output) in text mode, while
    a plugin estimator's went to stderr on loky and Dask workers: plugin code prints on stderr."""
    result = StrategyResult("s", ["a"], estimated_loss=1.5)

    class Printing:
        def run(self, estimator: Any, context: Any, params: Any) -> Any:
            print("PRINTED BY THE STRATEGY")
            return result

    stdout = sys.stdout
    assert _run_strategy(Printing, plugin_strategy_name, "mine", None, _Context(), None) is result
    out, err = capfd.readouterr()
    assert "PRINTED BY THE STRATEGY" not in out and "PRINTED BY THE STRATEGY" in err
    assert sys.stdout is stdout


@pytest.mark.parametrize("said", [float("nan"), np.float32("nan"), float("inf")])
def test_a_plugin_strategys_nan_estimated_loss_is_estimated_by_subsetctl(plugin_strategy_name: str,
                                                                         said: float) -> None:
    """A NaN ``estimated_loss`` the plugin made itself was kept, and the search warned that
    "the estimator gave no finite estimate for its selection", which it had never been
    asked for; subsetctl estimates the selection then, as when the field is left out."""
    from subsetctl.estimate.base import EstimateBatch

    class Estimator:
        sources = ("a", "b", "c")

        def __init__(self) -> None:
            self.asked: list[list[bool]] = []

        def masks_for(self, subsets: list[list[str]]) -> np.ndarray:
            return np.array([[s in subset for s in self.sources] for subset in subsets], dtype=bool)

        def estimate(self, masks: np.ndarray) -> EstimateBatch:
            self.asked.extend(masks.tolist())
            m = len(masks)
            return EstimateBatch(np.full(m, 2.5), np.zeros(m), np.ones(m, int), np.ones(m, bool))

    estimator = Estimator()
    result = StrategyResult("s", ["c", "a"], estimated_loss=said)
    assert _run_strategy(_returning(result), plugin_strategy_name, "mine", estimator, _Context(), None) is result
    assert result.estimated_loss == 2.5 and estimator.asked == [[True, False, True]]


def test_a_plugin_strategys_packed_trace_is_checked_by_the_names_it_holds(plugin_strategy_name: str) -> None:
    """A memo's trace is checked from its bits (not a list of names per subset): a source
    the project lacks is refused only where a subset holds it, and a written entry that is
    no mapping is refused as in a list."""
    trace = SubsetTrace(["a", "b", "zz"])  # e.g. a memo over another estimator
    trace.record(SubsetTrace.pack(np.array([[1, 0, 0], [1, 1, 0]], dtype=bool)), np.array([1.0, np.nan]))
    result = StrategyResult("s", ["a"], estimated_loss=1.5, trace=trace)
    assert _run_strategy(_returning(result), plugin_strategy_name, "mine", None, _Context(), None) is result
    trace.record(SubsetTrace.pack(np.array([[0, 0, 1]], dtype=bool)), np.array([0.5]))
    with pytest.raises(UserError, match=r"returned scores or trace subsets naming 'zz', which are not sources"):
        _run_strategy(_returning(result), plugin_strategy_name, "mine", None, _Context(), None)
    del trace[-1]
    trace.append("oops")
    with pytest.raises(UserError, match=r"returned scores or a trace of the wrong shape"):
        _run_strategy(_returning(result), plugin_strategy_name, "mine", None, _Context(), None)

def test_a_plugin_strategys_trace_subset_given_as_a_text_is_the_wrong_shape(plugin_strategy_name: str) -> None:
    """A trace entry's subset written as a text ("ab") was taken letter by letter, and the
    error named the sources 'a' and 'b' when the source "ab" was meant, or passed where
    each letter is a source."""
    result = StrategyResult("s", ["a"], estimated_loss=1.5, trace=[{"subset": "ab", "loss": 1.0}])
    with pytest.raises(UserError, match=r"returned scores or a trace of the wrong shape; .*trace entries "
                                        r"\{'subset': \[\.\.\.\]"):
        _run_strategy(_returning(result), plugin_strategy_name, "mine", None, _Context(), None)


def test_a_plugin_strategys_generator_selection_is_kept(plugin_strategy_name: str) -> None:
    """The checks used a generator up, and the selection became [] (the target alone)."""
    result = StrategyResult("s", (name for name in ("c", "a")), estimated_loss=1.5)
    assert _run_strategy(_returning(result), plugin_strategy_name, "mine", None, _Context(), None).selected == [
        "a", "c"]


def _load(options: Any, ctx: Any, sep: str) -> None:
    return None


def test_a_partial_plugins_code_is_its_functions_file(tmp_path: Path) -> None:
    """A loader registered as functools.partial(fn, ...) was fingerprinted by functools.py,
    so edits to fn were never noticed."""
    from subsetctl.filehash import code_fingerprint
    from subsetctl.registry import _origin

    wrapped = functools.partial(functools.partial(_load, sep="\t"))
    assert code_fingerprint(wrapped) == code_fingerprint(_load) == code_fingerprint(test_a_good_plugin_result_passes)
    assert _origin(wrapped) == f"module {__name__}"


_NOTEBOOK_CELL = """
from subsetctl.search.base import Strategy

class NbBest(Strategy):
    name = "nb_best"
    kinds = {"a", "b"}

    def run(self, estimator, context, params):
        return pick(context.sources, "nanargmin" in {"nanargmin", "x"})
"""


def _fingerprint_of_a_notebook_cell(code: str) -> Any:
    """The code fingerprint of the class ``code`` defines, as a notebook's cell defines it: in
    ``__main__``, a module without a file (Jupyter's), with the caller's ``__main__`` put back after."""
    import types

    from subsetctl.filehash import code_fingerprint

    module, held = types.ModuleType("__main__"), sys.modules["__main__"]
    sys.modules["__main__"] = module
    try:
        exec(compile(code, "<cell>", "exec"), vars(module))  # noqa: S102 - test code
        return code_fingerprint(vars(module)["NbBest"])
    finally:
        sys.modules["__main__"] = held


def test_a_plugin_class_defined_in_a_notebook_cell_is_fingerprinted_by_its_code() -> None:
    """A strategy class registered from a notebook's cell has no source file: its fingerprint
    was None, so running the cell again with other code left the search "up to date" with
    the old code's results. Now its compiled code is hashed, the same in every process."""
    import subprocess

    from subsetctl.filehash import code_fingerprint

    first = _fingerprint_of_a_notebook_cell(_NOTEBOOK_CELL)
    assert first is not None and set(first) == {"code_sha256"}
    assert _fingerprint_of_a_notebook_cell(_NOTEBOOK_CELL) == first  # the cell run again
    assert _fingerprint_of_a_notebook_cell("\n\n" + _NOTEBOOK_CELL) == first  # lines moved
    edited = _NOTEBOOK_CELL.replace("nanargmin", "nanargmax", 1)
    assert _fingerprint_of_a_notebook_cell(edited) != first
    assert _fingerprint_of_a_notebook_cell(_NOTEBOOK_CELL.replace('"b"', '"c"')) != first
    script = ("import sys, types\nfrom subsetctl.filehash import code_fingerprint\nmodule = types.ModuleType('__main__')\n"
              "sys.modules['__main__'] = module\n"
              f"exec(compile({_NOTEBOOK_CELL!r}, '<cell>', 'exec'), vars(module))\n"
              "print(code_fingerprint(vars(module)['NbBest'])['code_sha256'])")
    for seed in ("1", "2"):  # (the order of a set constant follows the process's string hashes)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert out.stdout.strip() == first["code_sha256"]
    assert code_fingerprint(len) is None  # a builtin: no Python code


def test_a_notebook_cells_keyword_only_default_is_part_of_its_code() -> None:
    """A keyword-only argument's default (``def run(self, estimator, context, params, *,
    k=3)``) is kept apart from the other defaults, and in the class body's code, not the
    method's: a cell changing it to ``k=5`` kept its fingerprint, the search up to date."""
    cell = _NOTEBOOK_CELL.replace("params):", "params, *, k=3):")
    assert _fingerprint_of_a_notebook_cell(cell) != _fingerprint_of_a_notebook_cell(cell.replace("k=3", "k=5"))


def test_a_plugin_function_defined_in_a_jupyter_cell_is_fingerprinted_by_its_code() -> None:
    """A function a Jupyter cell defines names the file its kernel calls the cell,
    /tmp/ipykernel_PID/HASH.py, kept in linecache and never written: it was fingerprinted
    as that missing file, {"missing": true} for every version of the cell, so a loader
    plugin redefined with other code left its sources' data up to date."""
    import linecache
    import types

    from subsetctl.filehash import code_fingerprint

    def cell(code: str, name: str) -> Any:
        module, held = types.ModuleType("__main__"), sys.modules["__main__"]
        sys.modules["__main__"] = module
        try:
            linecache.cache[name] = (len(code), None, code.splitlines(True), name)  # (as ipykernel keeps a cell)
            exec(compile(code, name, "exec"), vars(module))  # noqa: S102 - test code
            return code_fingerprint(vars(module)["nb_loader"])
        finally:
            sys.modules["__main__"] = held
            linecache.cache.pop(name, None)

    first = cell("def nb_loader(options, ctx):\n    return 1\n", "/nonexistent/ipykernel_9/111.py")
    assert first is not None and set(first) == {"code_sha256"}
    assert cell("def nb_loader(options, ctx):\n    return 1\n", "/nonexistent/ipykernel_10/111.py") == first
    assert cell("def nb_loader(options, ctx):\n    return 2\n", "/nonexistent/ipykernel_9/222.py") != first


def test_a_plugin_file_gone_after_its_code_was_loaded_keeps_its_fingerprint(tmp_path: Path) -> None:
    """The code a process runs is the code it loaded: a plugin file moved or deleted after
    (a branch switched in a notebook's session) keeps the fingerprint it had, as an edited
    one does; only a file never there (a Jupyter cell's) is known by its compiled code."""
    import importlib

    from subsetctl.filehash import code_fingerprint

    (tmp_path / "gone_plugin_mod.py").write_text("def gone_loader(options, ctx):\n    return 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        loader = importlib.import_module("gone_plugin_mod").gone_loader
        first = code_fingerprint(loader)
        assert first is not None and "sha256" in first
        (tmp_path / "gone_plugin_mod.py").unlink()
        assert code_fingerprint(loader) == first
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("gone_plugin_mod", None)


def test_an_unpicklable_plugin_estimator_is_blamed_for_loky(monkeypatch) -> None:
    """'internal error: PicklingError ... This is a bug in subsetctl'."""
    from subsetctl.estimate.executors import _joblib_results
    from subsetctl.plugin_guard import CheckedEstimator

    class Holding:
        def __init__(self) -> None:
            # a generator: no pickler takes it (a lambda was taken once an earlier test's run had
            # extended pickle with dill's types, so the test passed or failed with the order)
            self.rows = (row for row in range(3))

    checked = CheckedEstimator(Holding(), "holding", "module mine")
    with pytest.raises(UserError, match=r"The estimator plugin 'holding' \(module mine\) cannot be pickled to run "
                                        r"on loky worker processes"):
        list(_joblib_results(checked, np.zeros((2, 3), bool), [slice(0, 2)], "loky", 2))


#: a plugin module registering an estimator (named by ``name``) whose every estimate is NaN
_NAN_ESTIMATOR = '''
import numpy as np
from subsetctl.estimate.solvers import FastEstimator
from subsetctl.registry import ESTIMATORS

@ESTIMATORS.register("{name}", "NaN everywhere")
class NanEst(FastEstimator):
    def estimate(self, masks):
        batch = super().estimate(masks)
        batch.loss = batch.loss * np.nan
        return batch
'''


def _with_plugins(project: Path, monkeypatch, plugins: list[str], **sections: dict) -> None:
    """Point the project's spec at plugin modules written into it: ``plugins:``, and the
    spec ``sections`` that use them (``estimate=``, ``search=``, ...)."""
    import yaml

    monkeypatch.syspath_prepend(str(project))
    spec = yaml.safe_load((project / "subsetctl.yaml").read_text())
    spec.update(plugins=plugins, **sections)
    (project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def _searched(project: Path, module: str) -> dict[str, Any]:
    """Run ``project`` up to the search and give its selections.json; then forget the plugin
    ``module`` imported from it."""
    import json

    from subsetctl.api import run_project

    try:
        run_project(project, until="search")
    finally:
        sys.modules.pop(module, None)
    return json.loads((project / ".subsetctl" / "search" / "selections.json").read_text())


def _search_fails_with(project: Path, match: str, modules: tuple[str, ...]) -> None:
    """Run ``project`` up to the search, which must stop with a UserError matching
    ``match``; then forget the plugin ``modules`` imported from it."""
    from subsetctl.api import run_project

    try:
        with pytest.raises(UserError, match=match):
            run_project(project, until="search")
    finally:
        for name in modules:
            sys.modules.pop(name, None)


def test_an_estimator_giving_nan_everywhere_stops_the_search(tiny_project: Path, monkeypatch) -> None:
    """Every estimate NaN: the run ended with exit 0 and an arbitrary "final" selection
    (a plugin strategy's argmin of NaNs) was fine-tuned."""

    from subsetctl.api import run_project

    (tiny_project / "nan_est.py").write_text(_NAN_ESTIMATOR.format(name="nanest"))
    (tiny_project / "first_strategy.py").write_text('''
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import Strategy, StrategyResult

@STRATEGIES.register("first_source", "the first source, whatever its estimate")
class FirstSource(Strategy):
    def run(self, estimator, context, params):
        loss = estimator.estimate(estimator.masks_for([[context.sources[0]]])).loss[0]
        return StrategyResult("first_source", [context.sources[0]], estimated_loss=loss)
''')
    _with_plugins(tiny_project, monkeypatch, ["nan_est:NanEst", "first_strategy:FirstSource"],
                  estimate={"estimator": "nanest"}, search={"strategies": [{"name": "first_source"}]},
                  executor={"backend": "sequential"})
    with pytest.raises(UserError, match=r"The estimator 'nanest' \(module nan_est, \S+\.py\) gave no finite estimate for any "
                                        r"of the \d+ subsets estimated"):
        run_project(tiny_project, until="search")
    for name in ("nan_est", "first_strategy"):
        sys.modules.pop(name, None)


def test_a_plugin_strategy_failing_on_an_estimator_that_gave_only_nan_names_the_estimator(
    tiny_project: Path, monkeypatch
) -> None:
    """README's best_single (np.nanargmin over the single-source losses) raised "All-NaN
    slice encountered" on an estimator that fails on every subset, and the error blamed
    the strategy alone ("an error in the plugin"), so its author was sent to fix the
    wrong plugin."""


    (tiny_project / "nan_est2.py").write_text(_NAN_ESTIMATOR.format(name="nanest2"))
    (tiny_project / "best_single2.py").write_text('''
import numpy as np
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import Strategy, StrategyResult

@STRATEGIES.register("best_single2", "the one source with the lowest estimated loss")
class BestSingle(Strategy):
    def run(self, estimator, context, params):
        losses = estimator.estimate(estimator.masks_for([[s] for s in context.sources])).loss
        best = int(np.nanargmin(losses))
        return StrategyResult(strategy=self.name, selected=[context.sources[best]])
''')
    _with_plugins(tiny_project, monkeypatch, ["nan_est2:NanEst", "best_single2:BestSingle"],
                  estimate={"estimator": "nanest2"}, search={"strategies": [{"name": "best_single2"}]})
    _search_fails_with(tiny_project, r"Strategy 'best_single2' \(module best_single2, \S+\.py\) raised ValueError: "
                                     r"All-NaN slice encountered \(at \S+best_single2\.py:10, in run\)\. The estimator 'nanest2' \(module nan_est2, \S+\.py\) "
                                     r"gave no finite estimate for any of the 3 subsets estimated so far .*, "
                                     r"which is most likely why: fix the estimator", ("nan_est2", "best_single2"))


def test_a_strategys_progress_is_shown_on_the_search_line(tiny_project: Path, monkeypatch) -> None:
    """``SearchContext.report`` (a plugin strategy's progress, and the subsets SubsetMemo
    has estimated) was never connected: a long search printed nothing between its
    strategies. It is shown on the search's progress line, in a log file too."""
    import io

    from rich.console import Console

    from subsetctl.api import run_project
    from subsetctl.reporter import RichReporter

    (tiny_project / "reporting_strategy.py").write_text('''
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import Strategy, StrategyResult

@STRATEGIES.register("reporting", "says how far it got")
class Reporting(Strategy):
    def run(self, estimator, context, params):
        for step in range(3):
            context.report("thinking", step + 1, 3)
        return StrategyResult(strategy=self.name, selected=[context.sources[0]])
''')
    _with_plugins(tiny_project, monkeypatch, ["reporting_strategy:Reporting"],
                  search={"strategies": [{"name": "reporting"}, {"name": "exhaustive"}]})
    log = io.StringIO()
    try:
        run_project(tiny_project, until="search", reporter=RichReporter(Console(file=log, width=200), log_every=0))
    finally:
        sys.modules.pop("reporting_strategy", None)
    lines = [line for line in log.getvalue().splitlines() if line.startswith("search: ")]
    assert "search: 0/2" in lines[1] and lines[1].endswith("now=thinking (1/3)")
    assert any(line.endswith("now=exhaustive: estimated 8/8 subsets") for line in lines), lines


def test_a_plugin_strategy_reordering_its_sources_changes_nothing_else(tiny_project: Path, monkeypatch) -> None:
    """``context.sources.reverse()`` (or ``estimator.sources``) in a plugin strategy reversed the
    features' own list: selections.json listed the sources in the other order, the strategies
    after it and the baselines read it so, and masks made from it no longer matched the
    estimator's rows. Each strategy now gets a copy, checked against the sources as they were."""
    (tiny_project / "reordering_strategy.py").write_text('''
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import Strategy, StrategyResult

@STRATEGIES.register("reordering", "reverses the lists it is given")
class Reordering(Strategy):
    def run(self, estimator, context, params):
        context.sources.reverse()
        estimator.sources.reverse()
        return StrategyResult(strategy=self.name, selected=[context.sources[0]])
''')
    _with_plugins(tiny_project, monkeypatch, ["reordering_strategy:Reordering"],
                  search={"strategies": [{"name": "reordering"}, {"name": "exhaustive"}]})
    selections = _searched(tiny_project, "reordering_strategy")
    assert selections["sources"] == ["a", "b", "bad"]
    assert selections["baselines"]["all"]["selected"] == ["a", "b", "bad"]


def test_a_plugin_strategy_changing_its_features_or_earlier_picks_changes_nothing_else(tiny_project: Path,
                                                                                       monkeypatch) -> None:
    """``context.features`` was the estimator's own FeatureSet and ``context.other_selections``
    held the search's own lists (a shallow copy of the dict): a plugin's
    ``features.sources.reverse()`` reordered the sources selections.json records, and a pick it
    lengthened sized the random baseline after it. Each strategy now gets copies of the lists."""
    (tiny_project / "meddling_strategy.py").write_text('''
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import Strategy, StrategyResult

@STRATEGIES.register("meddling", "changes the features and the earlier picks it is given")
class Meddling(Strategy):
    def run(self, estimator, context, params):
        context.features.sources.reverse()
        context.features.source_train_x.reverse()
        context.other_selections["exhaustive"].extend(["a"] * 50)
        return StrategyResult(strategy=self.name, selected=["a"])
''')
    _with_plugins(tiny_project, monkeypatch, ["meddling_strategy:Meddling"],
                  search={"strategies": [{"name": "exhaustive"}, {"name": "meddling"},
                                         {"name": "random", "params": {"like": "exhaustive"}}]})
    selections = _searched(tiny_project, "meddling_strategy")
    assert selections["sources"] == ["a", "b", "bad"]
    picked = selections["strategies"]
    assert len(picked["random"]["selected"]) == len(picked["exhaustive"]["selected"]), picked["random"]
    assert not picked["random"]["notices"], picked["random"]["notices"]


def test_a_plugin_strategy_writing_into_its_features_is_refused_by_name(tiny_project: Path, monkeypatch) -> None:
    """``context.features.val_f[:] = 0`` wrote into the rows the estimator and the strategies after
    it read, without a word: the arrays are read-only, and the error names the strategy."""
    (tiny_project / "writing_strategy.py").write_text('''
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import Strategy, StrategyResult

@STRATEGIES.register("writing", "writes into the features it is given")
class Writing(Strategy):
    def run(self, estimator, context, params):
        context.features.val_f[:] = 0
        return StrategyResult(strategy=self.name, selected=["a"])
''')
    _with_plugins(tiny_project, monkeypatch, ["writing_strategy:Writing"],
                  search={"strategies": [{"name": "writing"}, {"name": "exhaustive"}]})
    _search_fails_with(tiny_project, r"Strategy 'writing' \(module writing_strategy, \S+\) raised ValueError: "
                       r"assignment destination is read-only \(at \S+writing_strategy\.py:8, in run\)\. "
                       r"context\.features' arrays are read-only .* copy one \(np\.array\(\.\.\.\)\)",
                       ("writing_strategy",))


def test_a_plugin_strategys_many_notices_are_warned_ten_then_counted(tiny_project: Path, monkeypatch) -> None:
    """A notice per subset tried was 5,000 warnings while `run` ran; selections.json keeps
    them all."""
    import json

    from subsetctl.api import run_project
    from subsetctl.reporter import SilentReporter

    (tiny_project / "noisy_strategy.py").write_text('''
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import Strategy, StrategyResult

@STRATEGIES.register("noisy", "a notice per source and more")
class Noisy(Strategy):
    def run(self, estimator, context, params):
        return StrategyResult(strategy=self.name, selected=[context.sources[0]],
                              notices=[f"note {i}" for i in range(25)])
''')
    _with_plugins(tiny_project, monkeypatch, ["noisy_strategy:Noisy"], search={"strategies": [{"name": "noisy"}]})
    reporter = SilentReporter()
    try:
        run_project(tiny_project, until="search", reporter=reporter)
    finally:
        sys.modules.pop("noisy_strategy", None)
    said = [w for w in reporter.warnings if w.startswith("noisy: ")]
    assert said[:10] == [f"noisy: note {i}" for i in range(10)]
    assert said[10:] == ["noisy: 15 more notices; report.json lists them all (strategies.noisy.notices)"]
    selections = json.loads((tiny_project / ".subsetctl" / "search" / "selections.json").read_text())
    assert len(selections["strategies"]["noisy"]["notices"]) == 25


@pytest.mark.parametrize(("hooks", "says"), [
    ("    @classmethod\n    def check_spec(cls, params, n_sources, earlier):\n        return params.k > 3\n",
     r"failed in check_spec\(\): AttributeError: 'StrategyParams' object has no attribute 'k'"),
    ("    @classmethod\n    def check_spec(cls, params, n_sources, earlier):\n        return True\n",
     r"returned True from check_spec\(\); it must return a problem \(a str\) or None"),
    ("    @classmethod\n    def max_subsets(cls, params, n_sources):\n        return 'many'\n",
     r"returned 'many' from max_subsets\(\); it must return a number of subsets \(an int, 0 or more\) or None"),
    ("    @classmethod\n    def max_subsets(cls, params, n_sources):\n        return -5\n",
     r"returned -5 from max_subsets\(\); it must return a number of subsets \(an int, 0 or more\) or None"),
])
def test_a_plugin_strategys_validate_hooks_are_blamed_on_it(jsonl_project: Path, monkeypatch, hooks: str,
                                                             says: str) -> None:
    """A plugin's ``check_spec`` that raised or returned True, or ``max_subsets`` returning
    a string (with an estimator that fine-tunes for real), stopped validate and run with
    "internal error ... This is a bug in subsetctl"."""
    import yaml

    from subsetctl.api import validate_spec_file

    (jsonl_project / "hooked_strategy.py").write_text(
        "from subsetctl.registry import STRATEGIES\nfrom subsetctl.search.base import Strategy, StrategyResult\n\n"
        "@STRATEGIES.register('hooked', 'a strategy with validate hooks')\nclass Hooked(Strategy):\n"
        "    def run(self, estimator, context, params):\n        return StrategyResult('hooked', [])\n\n" + hooks)
    monkeypatch.syspath_prepend(str(jsonl_project))
    spec = yaml.safe_load((jsonl_project / "subsetctl.yaml").read_text())
    spec.update(plugins=["hooked_strategy:Hooked"], search={"strategies": [{"name": "hooked"}]},
                estimate={"estimator": "true_finetune"})
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        checked = validate_spec_file(jsonl_project / "subsetctl.yaml")
    finally:
        sys.modules.pop("hooked_strategy", None)
    problems = [issue.render() for issue in checked.issues]
    assert not checked.ok and len(problems) == 1, problems
    assert re.search(r"search\.strategies\[0\]\.name: The strategy plugin 'hooked' \(module hooked_strategy, \S+\.py\) "
                     + says, problems[0]), problems


@pytest.mark.parametrize("strategy", ["random_ensemble", "exhaustive"])
def test_a_built_in_strategy_on_an_estimator_that_gave_only_nan_names_the_estimator(
    tiny_project: Path, monkeypatch, strategy: str
) -> None:
    """random_ensemble, surrogate and exhaustive stopped with "The estimator failed on all
    20 subsets", without saying which estimator: with a plugin estimator, its author was
    not told the plugin was at fault."""

    module = f"nan_est_{strategy}"
    (tiny_project / f"{module}.py").write_text(_NAN_ESTIMATOR.format(name=module))
    _with_plugins(tiny_project, monkeypatch, [f"{module}:NanEst"], estimate={"estimator": module},
                  search={"strategies": [{"name": strategy}]}, executor={"backend": "sequential"})
    _search_fails_with(tiny_project, rf"Strategy '{strategy}' has no subset to choose from\. The estimator "
                                     rf"'{module}' \(module {module}, \S+\.py\) gave no finite estimate for any of the "
                                     r"\d+ subsets estimated so far .*Fix the estimator's code if it is a plugin",
                       (module,))


_NAN_ON_PAIRS_ESTIMATOR = '''
import numpy as np
from subsetctl.estimate.solvers import FastEstimator
from subsetctl.registry import ESTIMATORS

@ESTIMATORS.register("{name}", "NaN for every subset of two sources or more")
class NanOnPairs(FastEstimator):
    def estimate(self, masks):
        batch = super().estimate(masks)
        batch.loss = np.where(np.asarray(masks).sum(axis=1) >= 2, np.nan, batch.loss)
        return batch
'''


def test_a_strategy_whose_subsets_all_failed_names_the_estimator_after_others_had_finite_ones(
    tiny_project: Path, monkeypatch
) -> None:
    """A strategy that found no finite estimate among its own subsets, after an earlier
    strategy had stored finite ones, stopped with random_ensemble's bare "The estimator
    failed on all 20 subsets": the plugin estimator at fault went unnamed."""

    module = "nan_on_pairs"
    (tiny_project / f"{module}.py").write_text(_NAN_ON_PAIRS_ESTIMATOR.format(name=module))
    _with_plugins(tiny_project, monkeypatch, [f"{module}:NanOnPairs"], estimate={"estimator": module},
                  search={"strategies": [{"name": "target_only", "label": "alone"},
                                                       {"name": "random_ensemble",
                                                                   "params": {"alpha": 0.5}}]},
                  executor={"backend": "sequential"})
    _search_fails_with(tiny_project, r"Strategy 'random_ensemble' has no subset to choose from\. The estimator "
                                     rf"'{module}' \(module {module}, \S+\.py\) gave no finite estimate for any of the "
                                     r"subsets this strategy estimated \(NaN or infinite; it gave a finite one for 1 "
                                     r"of the 4 subsets estimated so far\)\. Fix the estimator's code if it is a "
                                     r"plugin", (module,))


def test_a_plugin_strategys_trace_subset_naming_a_source_twice_is_refused(plugin_strategy_name: str) -> None:
    """A trace subset ["a", "a"] was stored and reported as a subset evaluated, one no
    estimate was made for (a selection naming a source twice was already refused)."""
    result = StrategyResult("s", ["a"], estimated_loss=1.5, trace=[{"subset": ["a"], "loss": 1.0},
                                                                   {"subset": ["b", "a", "b"], "loss": 0.5}])
    with pytest.raises(UserError, match=r"returned a trace entry whose subset \['b', 'a', 'b'\] names a source "
                                        r"more than once"):
        _run_strategy(_returning(result), plugin_strategy_name, "mine", None, _Context(), None)


def test_a_plugin_estimators_traceback_comes_back_from_a_worker_with_its_error(tmp_path: Path, monkeypatch) -> None:
    """On loky and Dask workers the error blaming a plugin estimator comes back pickled, which
    drops the plugin's exception it was raised from: `run` (with SUBSETCTL_DEBUG=1 too) showed
    the worker's subsetctl frames and never the plugin's. Its traceback now travels as text,
    from the plugin's own first frame on."""
    import pickle
    import threading

    from subsetctl.plugin_guard import CheckedEstimator, unpicklable_plugin

    (tmp_path / "worker_raising.py").write_text(
        "def helper():\n    return {}['missing']\n\n\nclass Raising:\n    def estimate(self, masks):\n"
        "        return helper()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from worker_raising import Raising

    try:
        with pytest.raises(UserError) as raised:
            CheckedEstimator(Raising(), "raising", "module worker_raising").estimate(np.ones((1, 2), dtype=bool))
        shown = pickle.loads(pickle.dumps(raised.value)).plugin_traceback
        assert shown.startswith("Traceback (most recent call last):\n") and shown.endswith("KeyError: 'missing'\n")
        assert f'"{tmp_path / "worker_raising.py"}", line 7, in estimate' in shown
        assert f'"{tmp_path / "worker_raising.py"}", line 2, in helper' in shown and "plugin_guard" not in shown
        unpicklable = Raising()
        unpicklable.lock = threading.Lock()
        with pytest.raises(TypeError) as pickling:  # in pickle's code, not the plugin's: no traceback to show
            pickle.dumps(unpicklable)
        blamed = unpicklable_plugin(CheckedEstimator(unpicklable, "raising", "module worker_raising"), "loky",
                                    pickling.value)
        assert blamed is not None and "cannot be pickled" in str(blamed) and blamed.plugin_traceback == ""
    finally:
        sys.modules.pop("worker_raising", None)


def test_a_plugins_error_names_the_line_of_its_own_code_it_came_from(tmp_path: Path, monkeypatch) -> None:
    """An exception in a plugin's code was reported as "raised T: msg" alone: its author had
    to re-run with SUBSETCTL_DEBUG=1 (not possible for validate or ls) to learn where. The
    innermost line of the plugin's package is named, not numpy's that raised."""
    from pluginfiles import write_package

    from subsetctl.plugin_guard import CheckedEstimator
    from subsetctl.plugin_loading import load_plugin_string

    package = write_package(tmp_path, "frameplug", {
        "helpers": "import numpy as np\n\n\ndef invert(m):\n    return np.linalg.inv(m)\n",
        "plugins": ("import numpy as np\nfrom frameplug.helpers import invert\n\n\nclass Inverting:\n"
                    "    def run(self, estimator, context, params):\n        return invert(np.zeros((2, 2)))\n\n"
                    "    def estimate(self, masks):\n        return invert(np.zeros((2, 2)))\n")})
    (tmp_path / "failing_import.py").write_text("def setup():\n    raise OSError('no config')\n\n\nsetup()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from frameplug.plugins import Inverting

    STRATEGIES.register("frame_test_strategy", "a test strategy")(Inverting)
    at = f"(at {package / 'helpers.py'}:5, in invert)"
    with pytest.raises(UserError, match=r"raised LinAlgError: Singular matrix " + re.escape(at) + r"\. This is an error"):
        _run_strategy(Inverting, "frame_test_strategy", "mine", None, _Context(), None)
    with pytest.raises(UserError, match=r"failed while estimating subsets: LinAlgError: Singular matrix "
                                        + re.escape(at) + r"\. Fix the plugin"):
        CheckedEstimator(Inverting(), "inv", "module frameplug.plugins").estimate(np.ones((1, 3), dtype=bool))
    with pytest.raises(UserError, match=r"raised OSError while being imported: no config "
                                        + re.escape(f"(at {tmp_path / 'failing_import.py'}:2, in setup)")):
        load_plugin_string("failing_import:X")
