"""Chat context (a multi-turn chat's earlier messages, in a row's metadata) rendered
before the prompt; rows without one encode as they always did (pinned)."""

from __future__ import annotations

import hashlib
import json

from tinymodels import char_tokenizer

from subsetctl.modeling.encoding import encode_rows

#: a chat template with every role (as SmolLM2's, Qwen's)
ROLES_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                  "{% if add_generation_prompt %}<assistant>{% endif %}")


def _char_tokenizer_adding_bos():
    """A character-level tokenizer that starts every text with <s> (a base Llama's kind)."""
    import string

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = ["<eos>", "<unk>", "<s>"] + list(string.printable[:95])
    tk = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", unk_token="<unk>", bos_token="<s>")


#: ordinary rows (no chat context), among them metadata that names the key in a value
ORDINARY = [
    {"source": "s", "row": 0, "prompt": "What is 2+2?", "response": "4", "metadata": "{}"},
    {"source": "s", "row": 1, "prompt": "Name a colour.", "response": "red", "metadata": '{"a": 1}'},
    {"source": "s", "row": 2, "prompt": "say chat_context", "response": "chat_context",
     "metadata": '{"note": "chat_context"}'},
    {"source": "s", "row": 3, "prompt": "x" * 70, "response": "yes", "metadata": '{"rg_task": "t"}'},
    {"source": "s", "row": 4, "prompt": "", "response": "continue", "metadata": ""},
    {"prompt": "no metadata at all", "response": "ok"},
]


def _digest(encoded: list) -> str:
    flat = [[e.input_ids, e.response_mask, e.truncated, e.answer_cut, e.prompt_tokens_cut, e.within_template]
            for e in encoded]
    return hashlib.sha256(json.dumps(flat).encode()).hexdigest()[:16]


def test_rows_without_a_chat_context_keep_their_ids() -> None:
    """Pinned before chat contexts were rendered: ids, masks and cut accounting of
    ordinary rows, with a chat template and without one (a base model's BOS)."""
    templated = char_tokenizer()
    templated.chat_template = ROLES_TEMPLATE
    digests = {name: [_digest(encode_rows(tok, ORDINARY, "causal-lm", n)) for n in (64, 40)]
               for name, tok in (("template", templated), ("bos", _char_tokenizer_adding_bos()),
                                 ("plain", char_tokenizer()))}
    assert digests == PINNED, digests


PINNED = {"template": ["c780df6d7d16534c", "242ac7d458a1adc1"], "bos": ["c53e9cdbc9ceddf5", "d0ebca599ff29e57"],
          "plain": ["f187fb395f82cc55", "f94309a4a131a431"]}
