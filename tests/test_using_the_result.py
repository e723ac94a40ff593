"""Using what subsetctl chose outside it: the adapter folders' model cards, and README's
"Using the result" script (load the final pick's adapter with plain transformers and peft,
generate, merge, export its training rows and their provenance) run as written."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from subsetctl.spec import Spec
from subsetctl.stages.finetune import model_card


def test_each_adapters_model_card_names_its_own_seed_and_the_step_kept(tmp_path: Path) -> None:
    """With finetune.seeds: 2 both adapters' README.md said "seed 0" (project.seed), so a
    card copied along with the seed-1 adapter named the wrong seed; nor did it say that the
    weights are those of the best validation step, not always the last step's."""
    from tinymodels import tiny_project_spec

    ctx = SimpleNamespace(spec=Spec.model_validate(tiny_project_spec(tmp_path / "model")))
    record = {"subset": ["a"], "seed": 1, "steps": 4, "best_step": 2, "best_val_loss": 4.5, "last_train_loss": 4.0}
    card = model_card(["exhaustive"], ["a"], ctx, record)
    assert "- project: tiny, seed 1\n" in card, card
    assert "- weights kept: step 2's, the best target validation loss (4.5)\n" in card, card
    no_validation = model_card(["exhaustive"], ["a"], ctx, {**record, "best_step": 0, "best_val_loss": None})
    assert "weights kept" not in no_validation and "seed 1" in no_validation, no_validation
