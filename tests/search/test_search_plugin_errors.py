"""Who is blamed when a plugin strategy fails: the plugin for its own errors, subsetctl for
errors raised while estimating on the plugin's behalf."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from subsetctl.errors import UserError
from subsetctl.registry import STRATEGIES
from subsetctl.search.base import SearchContext, Strategy, StrategyParams, StrategyResult
from subsetctl.stages.search import _run_strategy


class _FailingEstimator:
    """An estimator whose estimate() fails as a lost dask worker would."""

    sources = ("a", "b")

    def masks_for(self, subsets: list[list[str]]) -> np.ndarray:
        return np.array([[s in subset for s in self.sources] for subset in subsets], dtype=bool)

    def estimate(self, masks: np.ndarray) -> Any:
        raise RuntimeError("worker lost")


@STRATEGIES.register("test_plugin_asks_for_estimates", "a plugin that only asks for estimates")
class _AsksForEstimates(Strategy):
    def run(self, estimator: Any, context: SearchContext, params: StrategyParams) -> StrategyResult:
        estimator.estimate(estimator.masks_for([["a"]]))
        return StrategyResult(strategy=self.name, selected=["a"])


@STRATEGIES.register("test_plugin_own_bug", "a plugin with a bug of its own")
class _OwnBug(Strategy):
    def run(self, estimator: Any, context: SearchContext, params: StrategyParams) -> StrategyResult:
        raise ZeroDivisionError("plugin arithmetic")


def test_errors_while_estimating_are_not_blamed_on_the_plugin() -> None:
    context = SearchContext(sources=["a", "b"])
    assert STRATEGIES.origin("test_plugin_asks_for_estimates").startswith("module ")
    with pytest.raises(RuntimeError, match="worker lost"):  # subsetctl's: shown as an internal error
        _run_strategy(_AsksForEstimates, "test_plugin_asks_for_estimates", "p", _FailingEstimator(), context,
                      StrategyParams())
    with pytest.raises(UserError, match=r"raised ZeroDivisionError: plugin arithmetic \(at \S+test_search_plugin_errors"
                                        r"\.py:\d+, in run\)\. This is an error in the plugin"):
        _run_strategy(_OwnBug, "test_plugin_own_bug", "p", _FailingEstimator(), context, StrategyParams())


@pytest.mark.parametrize(("how", "says"), [
    ("method", (r"has sources a method \(not a property\); `sources` must be a property giving the names of the "
                r"features' sources in their order \(help1, flip1")),
    ("reversed", r"has sources \['flip3', 'noise2', .*\]; `sources` must be a property"),
])
def test_a_plugin_estimators_sources_are_checked_when_it_is_built(planted_features: Any, how: str, says: str) -> None:
    """``sources`` written as a method stopped the search with "internal error: TypeError:
    'method' object is not iterable"; in another order, with "The results store ... is for
    sources [...], but the estimator has [...]", which named no plugin."""
    from subsetctl.estimate.solvers import FastEstimator
    from subsetctl.registry import ESTIMATORS
    from subsetctl.spec import Spec
    from subsetctl.stages.features import make_estimator

    class AsMethod(FastEstimator):
        def sources(self) -> list[str]:  # type: ignore[override]
            return list(self._sources)

    class Reversed(FastEstimator):
        @property
        def sources(self) -> list[str]:
            return list(reversed(self._sources))

    ESTIMATORS.add("test_sources_plugin", AsMethod if how == "method" else Reversed, "test",
                   origin="module test_search_plugin_errors")
    spec = Spec.model_validate({
        "target": {"name": "t", "loader": {"type": "jsonl", "path": "t.jsonl"}},
        "sources": [{"name": "s0", "loader": {"type": "jsonl", "path": "t.jsonl"}}],
        "estimate": {"estimator": "test_sources_plugin"},
    })
    with pytest.raises(UserError, match=r"The estimator plugin 'test_sources_plugin' \(module "
                                        r"test_search_plugin_errors, \S+\.py\) " + says):
        make_estimator(spec, planted_features, 1.0)


def test_a_strategys_result_over_thousands_of_sources_is_checked_in_linear_time() -> None:
    """The checks of a strategy's pick scanned the list of sources once per name (and
    counted each selected name in a copy of the pick): 0.25 s a strategy over 3,000
    sources, 1.8 s over 8,000; a pick of them all is checked in milliseconds now."""
    import time

    names = [f"s{i:05d}" for i in range(8000)]

    class _PicksAll(Strategy):
        def run(self, estimator: Any, context: SearchContext, params: StrategyParams) -> StrategyResult:
            return StrategyResult("all_of_them", list(names), scores=dict.fromkeys(names, 1.0), estimated_loss=1.0)

    started = time.process_time()  # (CPU time: a busy machine's other processes stretch the wall time)
    result = _run_strategy(_PicksAll, "all", "all", _FailingEstimator(), SearchContext(sources=names),
                           StrategyParams())
    assert result.selected == names and time.process_time() - started < 0.5
    with pytest.raises(UserError, match=r"selected 's00007' more than once"):
        _PicksAll.run = lambda self, e, c, p: StrategyResult("x", [*names[:10], "s00007"])  # type: ignore[method-assign]
        _run_strategy(_PicksAll, "all", "all", _FailingEstimator(), SearchContext(sources=names), StrategyParams())


def test_a_source_with_no_train_rows_is_left_out_of_a_pick_with_a_notice() -> None:
    """A source whose split gave its one row to validation has no train rows: random_ensemble
    scored it by chance and picked it, and the report listed it as chosen though fine-tuning
    on it adds nothing. It is taken out of the pick, with a notice; other picks are kept."""
    from subsetctl.estimate.base import FeatureSet
    from subsetctl.stages.search import _leave_out_empty_sources

    rows = [np.zeros((3, 2)), np.zeros((0, 2)), np.zeros((1, 2))]
    features = FeatureSet(target="t", sources=["a", "one", "b"], target_train_x=np.zeros((2, 2)),
                          target_train_f=np.zeros(2), source_train_x=rows, source_train_f=[r[:, 0] for r in rows],
                          val_x=np.zeros((1, 2)), val_f=np.zeros(1))
    result = StrategyResult("random_ensemble", ["a", "one", "b"], notices=["earlier"])
    _leave_out_empty_sources(result, features)
    assert result.selected == ["a", "b"]
    assert result.notices == ["earlier", ("left 'one' out of its pick: it has no train rows (all its rows went to "
                                          "validation or test), so fine-tuning on it adds nothing; the pick's "
                                          "estimate is the same without it.")]
    kept = StrategyResult("forward", ["a"])
    _leave_out_empty_sources(kept, features)
    assert kept.selected == ["a"] and kept.notices == []
