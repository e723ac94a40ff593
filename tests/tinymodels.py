"""Tiny random-config models saved to folders and a whole-pipeline spec on them, shared by
the end-to-end, modeling and reliability tests (no download)."""

from __future__ import annotations

import string
from pathlib import Path


def char_tokenizer():
    """A character-level fast tokenizer with EOS (no pad token: resolution handles it)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = ["<eos>", "<unk>"] + list(string.printable[:95])
    tk = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", unk_token="<unk>")


def char_tokenizer_adding_bos():
    """A character-level tokenizer that starts every text with <s>, as Llama's and
    Mistral's do when asked for special tokens (and has no chat template, as base models)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = ["<eos>", "<unk>", "<s>"] + list(string.printable[:95])
    tk = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", unk_token="<unk>", bos_token="<s>")


def metaspace_char_tokenizer(prepend_scheme: str = "first"):
    """The character tokenizer behind a ``Metaspace`` pre-tokenizer (nested in a
    ``Sequence``), as SentencePiece-style tokenizers (Llama, Mistral) have: a text's first
    word gets a "▁" token before it that the same word after other text does not."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = ["<eos>", "<unk>", "▁"] + list(string.printable[:95])
    tk = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(prepend_scheme=prepend_scheme, split=False),
        pre_tokenizers.Split(Regex("."), behavior="isolated")])
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", unk_token="<unk>")


def byte_level_bpe_tokenizer():
    """A byte-level BPE tokenizer (as GPT-2's, Qwen's, SmolLM2's) trained on a few texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([string.printable] * 4 + ["the answer is Paris", "question answer"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>")


def save_tiny_llama(folder: Path, tok=None) -> Path:  # type: ignore[no-untyped-def]
    """A 2-layer random Llama with ``tok`` (the char tokenizer unless given)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tok if tok is not None else char_tokenizer()
    config = LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=len(tok), eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id, max_position_embeddings=256,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_tiny_gpt2(folder: Path) -> Path:
    """A 2-layer random GPT-2 (Conv1D layers, tied embeddings) with the char tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = char_tokenizer()
    config = GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=len(tok), n_positions=256,
                        eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_project_spec(model_dir: Path) -> dict:
    """A whole-pipeline spec on JSONL data and a tiny model: runs in seconds."""
    return {
        "project": {"name": "tiny", "seed": 0},
        "model": {"source": str(model_dir), "max_length": 32, "lora": {"r": 2, "alpha": 4}},
        "target": {"name": "target", "loader": {"type": "jsonl", "path": "target.jsonl"},
                   "split": {"train": 10, "validation": 5, "test": 5}},
        "sources": [
            {"name": "a", "loader": {"type": "jsonl", "path": "a.jsonl"}},
            {"name": "b", "loader": {"type": "jsonl", "path": "b.jsonl"}},
            {"name": "bad", "loader": {"type": "jsonl", "path": "target.jsonl"},
             "corrupt": {"shuffle_responses": True}, "max_examples": 10},
        ],
        "meta_init": {"steps": 4, "batch_size": 4, "eval_every": 2, "checkpoint_every": 2},
        "gradients": {"d": 16, "batch_size": 4},
        "search": {"strategies": [{"name": "exhaustive"}, {"name": "gradient_similarity"}]},
        "finetune": {"steps": 2, "batch_size": 4},
        "evaluate": {"max_new_tokens": 3},
        "executor": {"backend": "sequential", "n_jobs": 1},
    }


def change_data_of(project_dir: Path) -> str:
    """Edit a tiny project's spec file so that the data stage's output changes (the
    planted source keeps 8 rows instead of 10); returns the file's text before, to undo
    the change with."""
    import yaml

    spec_path = project_dir / "subsetctl.yaml"
    original = spec_path.read_text()
    spec = yaml.safe_load(original)
    spec["sources"][2]["max_examples"] = 8
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return original
