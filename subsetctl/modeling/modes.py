"""A model's train/eval mode for the length of a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def in_eval_mode(model: Any) -> Iterator[None]:
    """``model`` in eval mode (no dropout) while the block runs, and afterwards in the mode it
    was in, whether the block finished or raised: scoring, generating and taking gradients
    between training steps must neither see dropout nor leave a model that was training in
    eval mode. The block picks its own autograd mode (``torch.inference_mode()``,
    ``no_grad`` or ``enable_grad``)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
