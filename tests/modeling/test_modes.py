"""in_eval_mode: eval mode (no dropout) inside the block, the model's own mode after it."""

from __future__ import annotations

import pytest
import torch

from subsetctl.modeling.modes import in_eval_mode


@pytest.mark.parametrize("training", [True, False])
def test_eval_inside_and_the_mode_it_had_after(training: bool) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
    model.train(training)
    with in_eval_mode(model):
        assert not model.training and not model[1].training
        x = torch.ones(2, 4)
        assert torch.equal(model(x), model(x))  # no dropout: the same output twice
    assert model.training is training and model[1].training is training


def test_mode_restored_when_the_block_raises() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
    model.train()
    with pytest.raises(RuntimeError, match="out of memory"), in_eval_mode(model):
        raise RuntimeError("CUDA out of memory")
    assert model.training and model[1].training
