"""Search strategies: choose sources from estimated subset losses.

Strategies see only the :class:`~subsetctl.estimate.base.SubsetEstimator` interface.
The built-ins register in :data:`subsetctl.registry.STRATEGIES` when
:mod:`subsetctl.search.strategies` is imported (the registry does that lazily).
"""

from subsetctl.search.base import (
    ProgressFn,
    SearchContext,
    Strategy,
    StrategyParams,
    StrategyResult,
    SubsetMemo,
    SubsetTrace,
    describe_params,
    parse_params,
    run_strategy,
)

__all__ = [
    "ProgressFn",
    "SearchContext",
    "Strategy",
    "StrategyParams",
    "StrategyResult",
    "SubsetMemo",
    "SubsetTrace",
    "describe_params",
    "parse_params",
    "run_strategy",
]
