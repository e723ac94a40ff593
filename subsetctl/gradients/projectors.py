"""Random projections x = P^T g of per-example gradients (DESIGN.md section 2, step 3).

P is a p x d random matrix (Rademacher signs or standard normals, scaled 1/sqrt(d)).
For a large model P does not fit in memory (p = 10M, d = 1024 is 40 GB in float32), so it
is never stored: its rows are cut into fixed *units* of :data:`UNIT_ROWS` rows and each
unit is regenerated on demand from ``(seed, unit index)`` with its own
:class:`torch.Generator`. The values of P therefore depend only on the seed, p's row
index and d, never on the memory budget or on how a gradient is split into chunks, and
are identical across calls and processes.

Memory: when the whole of P fits in ``memory_budget_mb`` it is generated once and kept
(fast path). Otherwise half of the budget caches a prefix of P and a
quarter is the working block that the remaining rows stream through, so the projector's
own memory stays within the budget (at least one unit is always used, so budgets below
one unit, ``UNIT_ROWS * d * 4`` bytes, are rounded up to that).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch

from subsetctl.errors import UserError
from subsetctl.registry import PROJECTORS

UNIT_ROWS = 1024
"""Rows of P generated from one seeded generator; the unit of regeneration and caching."""

_BYTES = 4  # float32


def unit_seed(seed: int, unit: int) -> int:
    """A 63-bit generator seed for one unit of P, derived stably from the user seed.

    A hash rather than ``seed + unit`` so that seeds s and s+1 do not share units.
    """
    digest = hashlib.blake2b(f"subsetctl-projector:{seed}:{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class Projector(ABC):
    """Projects gradients onto d random directions: ``project(G) = G @ P``.

    Args:
        p: number of gradient coordinates (trainable parameters), the rows of P.
        d: projection dimension, the columns of P; must not exceed p.
        seed: determines P completely (together with p's row index and d).
        memory_budget_mb: most memory P may occupy (cached rows plus working block).
    """

    name: str = "projector"

    def __init__(self, p: int, d: int, seed: int, memory_budget_mb: float = 64) -> None:
        if d <= 0:
            raise UserError(f"The projection dimension d={d} must be positive; set gradients.d to e.g. 256.")
        if d > p:
            raise UserError(
                f"The projection dimension d={d} exceeds the number of trainable parameters p={p}; "
                "lower gradients.d (a projection cannot have more dimensions than the gradient)."
            )
        if memory_budget_mb <= 0:
            raise UserError(
                f"The projector memory budget {memory_budget_mb} MB must be positive; "
                "raise gradients.memory_budget_mb."
            )
        self.p = int(p)
        self.d = int(d)
        self.seed = int(seed)
        self.memory_budget_mb = float(memory_budget_mb)
        self.scale = 1.0 / math.sqrt(self.d)
        self.n_units = math.ceil(self.p / UNIT_ROWS)
        budget = self.memory_budget_mb * 2**20
        unit_bytes = UNIT_ROWS * self.d * _BYTES
        if self.p * self.d * _BYTES <= budget:
            self.cached_units = self.n_units
            self.working_units = 0
        else:
            self.cached_units = min(self.n_units, int(budget * 0.5 // unit_bytes))
            self.working_units = max(1, int(budget * 0.25 // unit_bytes))
        self._cache: torch.Tensor | None = None  # rows [0, cached_rows) of P, built lazily

    # ----------------------------------------------------------------- generation
    @abstractmethod
    def _fill_unit(self, out: torch.Tensor, generator: torch.Generator) -> None:
        """Fill ``out`` (rows x d, contiguous float32) with one unit's scaled entries."""

    def rows(self, start_unit: int, stop_unit: int) -> torch.Tensor:
        """Generate rows of P for units ``[start_unit, stop_unit)`` (no caching)."""
        lo = start_unit * UNIT_ROWS
        hi = min(self.p, stop_unit * UNIT_ROWS)
        block = torch.empty((hi - lo, self.d), dtype=torch.float32)
        gen = torch.Generator(device="cpu")
        for u in range(start_unit, stop_unit):
            a = u * UNIT_ROWS - lo
            b = min(hi, (u + 1) * UNIT_ROWS) - lo
            gen.manual_seed(unit_seed(self.seed, u))
            self._fill_unit(block[a:b], gen)
        return block

    def matrix(self) -> torch.Tensor:
        """The whole of P (p x d). Only for small p (tests, debugging): ignores the budget."""
        return self.rows(0, self.n_units)

    @property
    def cached_rows(self) -> int:
        """How many leading rows of P are kept in memory between calls."""
        return min(self.p, self.cached_units * UNIT_ROWS)

    def _cached(self) -> torch.Tensor:
        if self._cache is None:
            self._cache = self.rows(0, self.cached_units)
        return self._cache

    # ----------------------------------------------------------------- projection
    def project(self, G: torch.Tensor) -> torch.Tensor:
        """``G @ P`` for a (B, p) gradient matrix; returns (B, d) float32."""
        if G.dim() != 2:
            raise ValueError(f"project expects a (B, p) matrix, got shape {tuple(G.shape)}")
        return self.project_chunks([G])

    def project_chunks(self, chunks: Sequence[torch.Tensor]) -> torch.Tensor:
        """Project a gradient given as consecutive column chunks without concatenating.

        ``chunks[k]`` is (B, n_k) and covers rows ``[o_k, o_k + n_k)`` of P with
        ``o_k = n_0 + ... + n_{k-1}``; the widths must add up to p. Typically one chunk
        per parameter tensor, flattened, in the engine's fixed parameter order.
        """
        if not chunks:
            raise ValueError("project_chunks needs at least one chunk")
        widths = [int(c.shape[1]) for c in chunks]
        if sum(widths) != self.p:
            raise ValueError(f"chunks cover {sum(widths)} coordinates but the projector has p={self.p}")
        batch = int(chunks[0].shape[0])
        out = torch.zeros((batch, self.d), dtype=torch.float32)
        offsets = [0]
        for w in widths:
            offsets.append(offsets[-1] + w)

        def accumulate(lo: int, P_rows: torch.Tensor) -> None:
            # One addmm per (unit, chunk) overlap, whatever the block size: the summation
            # order, hence the result bit for bit, does not depend on the memory budget.
            hi = lo + P_rows.shape[0]
            for ulo in range(lo, hi, UNIT_ROWS):
                uhi = min(hi, ulo + UNIT_ROWS)
                k = bisect.bisect_right(offsets, ulo) - 1
                while k < len(chunks) and offsets[k] < uhi:
                    a, b = max(ulo, offsets[k]), min(uhi, offsets[k + 1])
                    if a < b:
                        piece = chunks[k][:, a - offsets[k] : b - offsets[k]].to(torch.float32)
                        out.addmm_(piece, P_rows[a - lo : b - lo])
                    k += 1

        if self.cached_units:
            accumulate(0, self._cached())
        unit = self.cached_units
        while unit < self.n_units:
            stop = min(self.n_units, unit + self.working_units)
            accumulate(unit * UNIT_ROWS, self.rows(unit, stop))
            unit = stop
        return out

    def describe(self) -> dict[str, Any]:
        """What determines P: recorded in the gradient store's info and checked on reuse."""
        return {"name": self.name, "p": self.p, "d": self.d, "seed": self.seed}


@PROJECTORS.register("rademacher", "Random signs +-1/sqrt(d), regenerated block by block from the seed.")
class RademacherProjector(Projector):
    """Random signs +-1/sqrt(d): 64 signs per generated random word, so cheap to regenerate."""

    name = "rademacher"

    def __init__(self, p: int, d: int, seed: int, memory_budget_mb: float = 64) -> None:
        super().__init__(p, d, seed, memory_budget_mb)
        bits = torch.arange(8)
        table = ((torch.arange(256).unsqueeze(1) >> bits) & 1).to(torch.float32)
        self._table = (table * 2.0 - 1.0) * self.scale  # byte value -> its 8 signs

    def _fill_unit(self, out: torch.Tensor, generator: torch.Generator) -> None:
        n = out.numel()
        words = torch.randint(
            -(2**63), 2**63 - 1, (math.ceil(n / 64),), dtype=torch.int64, generator=generator
        )
        byte_idx = words.view(torch.uint8)[: math.ceil(n / 8)].long()
        if n % 8 == 0:
            torch.index_select(self._table, 0, byte_idx, out=out.view(-1, 8))
        else:
            out.view(-1).copy_(self._table[byte_idx].view(-1)[:n])


@PROJECTORS.register("gaussian", "Standard normal entries scaled 1/sqrt(d), regenerated from the seed.")
class GaussianProjector(Projector):
    """Standard normal entries scaled 1/sqrt(d) (about 3x slower to regenerate than signs)."""

    name = "gaussian"

    def _fill_unit(self, out: torch.Tensor, generator: torch.Generator) -> None:
        out.normal_(0.0, self.scale, generator=generator)


def make_projector(name: str, p: int, d: int, seed: int, memory_budget_mb: float = 64) -> Projector:
    """Build the registered projector ``name`` (raises UnknownPluginError for unknown names)."""
    cls = PROJECTORS.get(name)
    return cls(p=p, d=d, seed=seed, memory_budget_mb=memory_budget_mb)
