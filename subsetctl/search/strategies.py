"""The built-in search strategies; importing this module registers them in ``STRATEGIES``.

The registry imports this module lazily (see :mod:`subsetctl.registry`). Each strategy
lives in the module of its family:

- :mod:`subsetctl.search.ensemble`: ``random_ensemble``, ``surrogate``, ``exhaustive``;
- :mod:`subsetctl.search.greedy`: ``forward``, ``backward``;
- :mod:`subsetctl.search.baselines`: ``all``, ``target_only``, ``random``,
  ``gradient_similarity``, ``representation_similarity``.
"""

from __future__ import annotations

from subsetctl.search.baselines import (
    AllSources,
    GradientSimilarity,
    RandomPick,
    RepresentationSimilarity,
    TargetOnly,
)
from subsetctl.search.ensemble import Exhaustive, RandomEnsemble, Surrogate
from subsetctl.search.greedy import Backward, Forward

#: names of the strategies that choose by estimated loss (the rest are baselines)
ESTIMATOR_STRATEGIES = ("random_ensemble", "surrogate", "forward", "backward", "exhaustive")
#: names of the comparison baselines
BASELINE_STRATEGIES = (
    "all",
    "target_only",
    "random",
    "gradient_similarity",
    "representation_similarity",
)

__all__ = [
    "BASELINE_STRATEGIES",
    "ESTIMATOR_STRATEGIES",
    "AllSources",
    "Backward",
    "Exhaustive",
    "Forward",
    "GradientSimilarity",
    "RandomEnsemble",
    "RandomPick",
    "RepresentationSimilarity",
    "Surrogate",
    "TargetOnly",
]
