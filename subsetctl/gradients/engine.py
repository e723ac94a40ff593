"""Batched per-example gradients of f, projected: x_i = P^T d f_i / d theta.

One forward and one backward per batch give every example's gradient, because examples
in a batch do not interact (no batch norm; padding is masked): the gradient of
``sum_i f_i`` with respect to example b's activations is the gradient of ``f_b`` alone.
For a linear layer ``y = x W^T + c`` the per-example weight gradient is then
``sum_t gy[b, t, :]^T x[b, t, :]`` (and ``sum_t gy[b, t, :]`` for the bias): forward hooks
record each trainable ``nn.Linear``'s input and output, ``torch.autograd.grad`` returns
the gradients of those outputs, and an einsum per module finishes the job. This covers
LoRA (``lora_A`` / ``lora_B`` are ``nn.Linear``; the LoRA scaling is applied after
``lora_B`` so it is inside the output gradient) and linear heads in ``modules_to_save``.
Any other trainable parameter is refused with a clear message.

Chosen over ``torch.func`` (``vmap(grad(functional_call))``): that computes the same
per-example gradients but differentiates per example inside vmap (B weight-gradient
computations of every LoRA matrix instead of one einsum) and does not run through
Hugging Face models' mask construction reliably; the hook path costs about one training
step per batch (see benchmarks/gradients.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from subsetctl.errors import UserError
from subsetctl.gradients.projectors import Projector
from subsetctl.modeling.modes import in_eval_mode
from subsetctl.modeling.outputs import causal_lm_scores, classifier_f

KINDS = ("causal-lm", "classifier")


@dataclass
class BatchGradients:
    """One batch's results: f (B,), projected gradients x (B, d) and the mean last-layer
    hidden state over non-pad tokens, repr (B, h). All float32, on the CPU, detached."""

    f: torch.Tensor
    x: torch.Tensor
    repr: torch.Tensor


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The trainable parameters in the fixed order of the gradient vector: sorted by name.

    The flattened gradient is the concatenation of each parameter's gradient flattened
    row-major, in this order; a one-at-a-time reference must use the same order.
    """
    return sorted(((n, p) for n, p in model.named_parameters() if p.requires_grad), key=lambda t: t[0])


@dataclass
class _Slot:
    """A parameter's place in the gradient vector and which module/role produces it."""

    name: str
    module: nn.Linear
    role: str  # "weight" or "bias"
    numel: int


class PerExampleGradientEngine:
    """Computes f, projected per-example gradients and mean hidden states for batches.

    Args:
        model: a (peft-wrapped) model whose trainable parameters are the LoRA weights
            (and optionally linear heads); every trainable parameter must belong to an
            ``nn.Linear``.
        projector: a :class:`Projector` with ``p`` equal to the number of trainable
            parameter entries.
        kind: ``"causal-lm"`` (batch: input_ids, attention_mask, response_mask) or
            ``"classifier"`` (batch: input_ids, attention_mask, labels).
    """

    def __init__(self, model: nn.Module, projector: Projector, kind: str = "causal-lm") -> None:
        if kind not in KINDS:
            raise UserError(f"Unknown model kind {kind!r}; use one of {', '.join(KINDS)}.")
        self.model = model
        self.projector = projector
        self.kind = kind
        params = trainable_parameters(model)
        if not params:
            raise UserError(
                "The model has no trainable parameters, so there are no gradients to project. "
                "Wrap it with a LoRA adapter (meta_init) before computing gradients."
            )
        owner: dict[int, tuple[nn.Linear, str]] = {}
        for module in model.modules():
            if isinstance(module, nn.Linear):
                owner[id(module.weight)] = (module, "weight")
                if module.bias is not None:
                    owner[id(module.bias)] = (module, "bias")
        unsupported = [n for n, p in params if id(p) not in owner]
        if unsupported:
            shown = ", ".join(unsupported[:5]) + (" ..." if len(unsupported) > 5 else "")
            raise UserError(
                f"Per-example gradients are supported for trainable nn.Linear layers only (LoRA "
                f"lora_A/lora_B, linear heads), but these trainable parameters are not: {shown}. "
                "Use plain LoRA on linear modules (no DoRA, no trainable embeddings or norms)."
            )
        self.slots = [_Slot(n, *owner[id(p)], p.numel()) for n, p in params]
        self.param_names = [s.name for s in self.slots]
        self.p = sum(s.numel for s in self.slots)
        if projector.p != self.p:
            raise ValueError(f"projector has p={projector.p} but the model has {self.p} trainable entries")
        self._modules = list({id(s.module): s.module for s in self.slots}.values())

    @property
    def hidden_size(self) -> int:
        """Width h of the ``repr`` rows (the model's hidden size), for sizing the store."""
        config = getattr(self.model, "config", None)
        size = getattr(config, "hidden_size", None)
        if size is None:
            raise ValueError("the model's config has no hidden_size; size the store from a computed batch")
        return int(size)

    # ----------------------------------------------------------------- hooks
    def _capture(self) -> tuple[dict[int, list[tuple[torch.Tensor, torch.Tensor]]], list[Any]]:
        records: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {id(m): [] for m in self._modules}

        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            records[id(module)].append((inputs[0], output))

        handles = [m.register_forward_hook(hook) for m in self._modules]
        return records, handles

    # ----------------------------------------------------------------- compute
    def _forward_f(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """f, repr and, when the output head ran on the scored positions only (its inputs
        are then (1, N, H), one row per scored position), those positions ``(rows, cols)``."""
        attn = batch["attention_mask"]
        gathered = None
        if self.kind == "causal-lm":  # the output head runs on the scored positions only
            out, f, _, gathered = causal_lm_scores(self.model, batch, output_hidden_states=True)
        else:
            out = self.model(input_ids=batch["input_ids"], attention_mask=attn, output_hidden_states=True)
            f = classifier_f(out.logits, batch["labels"])
        last = out.hidden_states[-1].detach().float()
        m = attn.to(last.dtype).unsqueeze(-1)
        rep = (last * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return f, rep, gathered

    def per_example_gradients(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """f (B,), repr (B, h) and the per-example gradient chunks, one (B, numel) per
        parameter in :attr:`param_names` order (unprojected)."""
        with in_eval_mode(self.model):  # no dropout: gradients of the deterministic model
            records, handles = self._capture()
            try:
                with torch.enable_grad():
                    f, rep, gathered = self._forward_f(batch)
            finally:
                for h in handles:
                    h.remove()
        pairs = [(m, x, y) for m in self._modules for (x, y) in records[id(m)]]
        outputs = [y for _, _, y in pairs]
        grads = torch.autograd.grad(f.sum(), outputs, allow_unused=True)
        B = f.shape[0]
        head = self.model.get_output_embeddings() if gathered is not None else None
        in_head = {id(m) for m in head.modules()} if isinstance(head, nn.Module) else set()
        per_module: dict[int, dict[str, torch.Tensor]] = {}
        for (module, x, _), gy in zip(pairs, grads):
            if gy is None:
                continue
            if id(module) in in_head and x.dim() == 3 and x.shape[:2] == (1, gathered[0].numel()):
                # a trainable output head (LoRA on lm_head) saw the scored rows only, example
                # after example: put them back at their (example, position) so the sum over
                # positions below stays per example
                T = batch["input_ids"].shape[1]
                x = x.new_zeros((B, T, x.shape[-1])).index_put(gathered, x[0])
                gy = gy.new_zeros((B, T, gy.shape[-1])).index_put(gathered, gy[0])
            x3 = x.detach().reshape(B, -1, x.shape[-1]).float()
            g3 = gy.reshape(B, -1, gy.shape[-1]).float()
            acc = per_module.setdefault(id(module), {})
            gw = torch.einsum("bto,bti->boi", g3, x3).reshape(B, -1)
            acc["weight"] = acc["weight"] + gw if "weight" in acc else gw
            if module.bias is not None and module.bias.requires_grad:
                gb = g3.sum(dim=1)
                acc["bias"] = acc["bias"] + gb if "bias" in acc else gb
        chunks = []
        for slot in self.slots:
            g = per_module.get(id(slot.module), {}).get(slot.role)
            chunks.append(g if g is not None else torch.zeros((B, slot.numel), dtype=torch.float32))
        return f.detach().float(), rep, chunks

    def compute(self, batch: dict[str, torch.Tensor]) -> BatchGradients:
        """f, projected gradients x = (P^T g_i)_i and mean hidden states for one batch."""
        f, rep, chunks = self.per_example_gradients(batch)
        x = self.projector.project_chunks(chunks)
        return BatchGradients(f=f.cpu(), x=x.cpu(), repr=rep.cpu())
