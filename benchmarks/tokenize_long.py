"""Encoding long causal-LM examples: only the part an example keeps is tokenized.

Times :func:`subsetctl.modeling.encoding.encode_rows` on rows with long prompts (as in
summarization or long-document sources) against tokenizing every text whole (what it did
before), with SmolLM2's tokenizer, in the same run, and checks both give the same
examples. Prints one JSON line.

    python benchmarks/tokenize_long.py [--rows 2000] [--chars 6000] [--max-length 128]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from _common import ROOT  # noqa: F401  (puts the repository on the path like the other benchmarks)


def main() -> None:
    from transformers import AutoTokenizer

    from subsetctl.modeling.encoding import _assemble_causal_lm, encode_rows, render_prompt, row_context
    from subsetctl.modeling.packaged import locate_smollm2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--chars", type=int, default=6000, help="characters per prompt")
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    tok = AutoTokenizer.from_pretrained(str(locate_smollm2()))
    rng = random.Random(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "alpha", "beta", "gamma", "delta"]
    rows = [{"source": "s", "row": i, "prompt": " ".join(rng.choice(words) for _ in range(args.chars // 5)),
             "response": str(rng.randint(0, 10**6))} for i in range(args.rows)]

    start = time.perf_counter()
    whole = []
    prompts = tok([render_prompt(tok, r["prompt"], row_context(r)) for r in rows], add_special_tokens=False)["input_ids"]
    answers = tok([r["response"] for r in rows], add_special_tokens=False)["input_ids"]
    for p, a in zip(prompts, answers):
        whole.append(_assemble_causal_lm(tok, list(p), list(a), args.max_length))
    whole_s = time.perf_counter() - start
    start = time.perf_counter()
    kept = encode_rows(tok, rows, "causal-lm", args.max_length)
    kept_s = time.perf_counter() - start
    print(json.dumps({"rows": args.rows, "chars": args.chars, "max_length": args.max_length,
                      "whole_s": round(whole_s, 3), "kept_s": round(kept_s, 3),
                      "speedup": round(whole_s / kept_s, 2), "identical": kept == whole}))


if __name__ == "__main__":
    main()
