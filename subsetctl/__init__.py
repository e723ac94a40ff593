"""subsetctl: choose which auxiliary data sources to fine-tune a language model on.

The tool estimates, from cached per-example gradients, how fine-tuning on target + S
would change the target's validation loss, for many subsets S, on CPUs.
"""

__version__ = "0.1.0"
