"""Estimation of fine-tuning performance for subsets of sources, on cached gradients."""
