"""Helpers shared by the estimation engine tests."""

from __future__ import annotations

import numpy as np


def random_masks(n_masks: int, n_sources: int, seed: int, p: float = 0.5) -> np.ndarray:
    """Random subsets, each source in with probability ``p``."""
    return np.random.default_rng(seed).random((n_masks, n_sources)) < p
