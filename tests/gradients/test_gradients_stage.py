"""The gradients stage on models whose last hidden state is not config.hidden_size wide."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from subsetctl.api import run_project


def _save_tiny_opt_with_projected_output(folder: Path) -> Path:
    """A 2-layer random OPT whose decoder projects its last hidden state from hidden_size
    (64) to word_embed_proj_dim (32) before the output head, as OPT-350m does (1024 -> 512)."""
    import torch
    from tinymodels import char_tokenizer
    from transformers import OPTConfig, OPTForCausalLM

    tok = char_tokenizer()
    config = OPTConfig(hidden_size=64, word_embed_proj_dim=32, num_hidden_layers=2, num_attention_heads=4,
                       ffn_dim=128, vocab_size=len(tok), max_position_embeddings=256,
                       eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    OPTForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_repr_rows_are_as_wide_as_the_last_hidden_state_not_config_hidden_size(jsonl_project: Path,
                                                                               tmp_path_factory) -> None:
    from tinymodels import tiny_project_spec

    model = _save_tiny_opt_with_projected_output(tmp_path_factory.mktemp("tiny-opt"))
    spec = tiny_project_spec(model)
    spec["sources"] = spec["sources"][:2]
    (jsonl_project / "subsetctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    results = run_project(jsonl_project, until="gradients")
    assert results[-1]["stage"] == "gradients" and results[-1]["action"] == "ran"
    store = jsonl_project / ".subsetctl" / "gradients" / "store"
    info = json.loads((store / "info.json").read_text())
    rep = np.load(store / "repr.npy")
    assert info["h"] == 32 and rep.shape == (info["n_rows"], 32)
    assert np.all(np.abs(rep).sum(axis=1) > 0)  # every row's mean hidden state was written
