"""subsetctl: choose which auxiliary data sources to fine-tune a language model on.

The tool estimates, from cached per-example gradients, how fine-tuning on target + S
would change the target's validation loss, for many subsets S, on CPUs.
"""

__version__ = "0.1.0"

#: The results this subsetctl computes, as the stages' fingerprints and the caches' keys know
#: them (not the release, ``__version__``): a new release keeps a project's results up to date,
#: and its cached fine-tunes, evaluations, subset estimates and prepared sources in use, while it
#: computes them as before. Raise it only with a change that makes a result differ for the same
#: inputs; every stage then re-runs once, and `plan` says "this subsetctl computes results
#: otherwise". ("0.1.0": the release whose results it was first keyed by, so projects run
#: before it was kept apart stay up to date.)
RESULTS_VERSION = "0.1.0"
