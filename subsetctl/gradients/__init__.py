"""Projected per-example gradients.

- :mod:`subsetctl.gradients.projectors`: random projections P regenerated from a seed
  within a memory budget (registered as ``rademacher`` and ``gaussian``).
- :mod:`subsetctl.gradients.engine`: f_i, x_i = P^T d f_i / d theta and mean hidden states
  for a batch, with one forward and one backward.
- :mod:`subsetctl.gradients.store`: the on-disk, resumable, shardable gradient store.

This package imports nothing heavy itself: the store needs only numpy, so readers of
gradient features (the estimate stage) do not pay for importing torch.
"""
