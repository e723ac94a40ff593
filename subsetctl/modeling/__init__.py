"""Models: resolution (packaged, local, hub), LoRA, the output function f, training."""
