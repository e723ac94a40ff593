"""Random projections x = P^T g of per-example gradients.

P is a p x d random matrix (Rademacher signs or standard normals, scaled 1/sqrt(d)).
For a large model P does not fit in memory (p = 10M, d = 1024 is 40 GB in float32), so it
is never stored: its rows are cut into fixed *units* of :data:`UNIT_ROWS` rows and each
unit is regenerated on demand from ``(seed, unit index)`` with its own
:class:`torch.Generator`. The values of P therefore depend only on the seed, p's row
index and d, never on the memory budget or on how a gradient is split into chunks, and
are identical across calls and processes.

Memory: when the whole of P fits in ``memory_budget_mb`` it is generated once and kept
(fast path). Otherwise half of the budget caches a prefix of P and a quarter is the
working block that the remaining units stream through (allocated once; plus the
generator's scratch, a quarter of the block for Rademacher), so the projector's own memory stays within the
budget (at least one unit is always used, so budgets below
one unit, ``UNIT_ROWS * d * 4`` bytes, are rounded up to that).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from subsetctl.errors import UserError
from subsetctl.registry import PROJECTORS

if TYPE_CHECKING:  # torch is imported where used, so validating a spec stays fast
    import torch

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
        if self.n_units * unit_bytes <= budget:
            self.cached_units = self.n_units
            self.working_units = 0
        else:
            self.cached_units = min(self.n_units, int(budget * 0.5 // unit_bytes))
            self.working_units = max(1, int(budget * 0.25 // unit_bytes))
        self._cache: torch.Tensor | None = None  # units [0, cached_units) of P, built lazily
        self._work: torch.Tensor | None = None  # the streaming block, reused across calls

    # ----------------------------------------------------------------- generation
    @abstractmethod
    def _fill(self, block: torch.Tensor, start_unit: int, generator: torch.Generator) -> None:
        """Fill ``block`` (k, UNIT_ROWS, d), contiguous float32, with units
        ``[start_unit, start_unit + k)`` of P, in place.

        Unit u must come from ``generator.manual_seed(unit_seed(self.seed, u))`` alone, so
        that it does not depend on which other units are generated with it. Rows past p
        (in the last unit) may hold anything: they only ever meet zero gradient entries.
        """

    def units(self, start_unit: int, stop_unit: int) -> torch.Tensor:
        """Generate units ``[start_unit, stop_unit)`` of P, (k, UNIT_ROWS, d), no caching."""
        import torch

        block = torch.empty((stop_unit - start_unit, UNIT_ROWS, self.d), dtype=torch.float32)
        self._fill(block, start_unit, torch.Generator(device="cpu"))
        return block

    def rows(self, start_unit: int, stop_unit: int) -> torch.Tensor:
        """Rows of P for units ``[start_unit, stop_unit)``, (rows, d), trimmed at p."""
        hi = min(self.p, stop_unit * UNIT_ROWS)
        return self.units(start_unit, stop_unit).view(-1, self.d)[: hi - start_unit * UNIT_ROWS]

    def matrix(self) -> torch.Tensor:
        """The whole of P (p x d). Only for small p (tests, debugging): ignores the budget."""
        return self.rows(0, self.n_units)

    @property
    def cached_rows(self) -> int:
        """How many leading rows of P are kept in memory between calls."""
        return min(self.p, self.cached_units * UNIT_ROWS)

    @property
    def held_bytes(self) -> int:
        """Bytes of P-related buffers held between calls (cache, working block, scratch)."""
        held = [self._cache, self._work, getattr(self, "_scratch", None)]
        return sum(t.numel() * t.element_size() for t in held if t is not None)

    def _cached(self) -> torch.Tensor:
        if self._cache is None:
            self._cache = self.units(0, self.cached_units)
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

        Each unit's product ``G[:, unit] @ P[unit]`` is its own (B, UNIT_ROWS) x
        (UNIT_ROWS, d) matmul of contiguous operands and the products are summed in unit
        order, so results are the same bit for bit for the same p, d and seed whatever the
        budget (a batched matmul over a block's units rounded differently with the number
        of units in the block, about 1e-7 relative, so the budget changed the gradient
        store).
        """
        import torch

        if not chunks:
            raise ValueError("project_chunks needs at least one chunk")
        widths = [int(c.shape[1]) for c in chunks]
        if sum(widths) != self.p:
            raise ValueError(f"chunks cover {sum(widths)} coordinates but the projector has p={self.p}")
        offsets = [0]
        for w in widths:
            offsets.append(offsets[-1] + w)
        out = torch.zeros((int(chunks[0].shape[0]), self.d), dtype=torch.float32)
        if self.cached_units:
            self._accumulate(out, self._gather(chunks, offsets, 0, self.cached_units), self._cached())
        gen = torch.Generator(device="cpu")
        unit = self.cached_units
        while unit < self.n_units:
            stop = min(self.n_units, unit + self.working_units)
            block = self._working()[: stop - unit]
            self._fill(block, unit, gen)
            self._accumulate(out, self._gather(chunks, offsets, unit, stop), block)
            unit = stop
        return out

    def _working(self) -> torch.Tensor:
        """The working block, allocated once and reused: fresh allocations of this size
        cost page faults on every call and fragment the heap."""
        import torch

        if self._work is None:
            self._work = torch.empty((self.working_units, UNIT_ROWS, self.d), dtype=torch.float32)
        return self._work

    @staticmethod
    def _gather(
        chunks: Sequence[torch.Tensor], offsets: list[int], start_unit: int, stop_unit: int
    ) -> torch.Tensor:
        """The gradient columns of units ``[start_unit, stop_unit)`` as one (B, k * UNIT_ROWS)
        float32 matrix, zero past p."""
        import torch

        lo, hi = start_unit * UNIT_ROWS, stop_unit * UNIT_ROWS
        G = torch.zeros((int(chunks[0].shape[0]), hi - lo), dtype=torch.float32)
        k = bisect.bisect_right(offsets, lo) - 1
        while k < len(chunks) and offsets[k] < hi:
            a, b = max(lo, offsets[k]), min(hi, offsets[k + 1])
            if a < b:
                G[:, a - lo : b - lo] = chunks[k][:, a - offsets[k] : b - offsets[k]]
            k += 1
        return G

    @staticmethod
    def _accumulate(out: torch.Tensor, G: torch.Tensor, P_units: torch.Tensor) -> None:
        """``out += G @ P``, one matmul per unit, summed in unit order: each product has
        the same shapes and memory layout whatever the block holds, hence the same rounding."""
        for i in range(P_units.shape[0]):
            out += G[:, i * UNIT_ROWS : (i + 1) * UNIT_ROWS].contiguous() @ P_units[i]


@PROJECTORS.register("rademacher", "Random signs +-1/sqrt(d), regenerated block by block from the seed.")
class RademacherProjector(Projector):
    """Random signs +-1/sqrt(d): one random byte gives 8 signs (a table lookup), so cheap
    to regenerate."""

    name = "rademacher"

    def __init__(self, p: int, d: int, seed: int, memory_budget_mb: float = 64) -> None:
        import torch

        super().__init__(p, d, seed, memory_budget_mb)
        bits = torch.arange(8)
        table = ((torch.arange(256).unsqueeze(1) >> bits) & 1).to(torch.float32)
        self._table = (table * 2.0 - 1.0) * self.scale  # byte value -> its 8 signs
        self._scratch: torch.Tensor | None = None  # random bytes (as int64) of a working block

    def _fill(self, block: torch.Tensor, start_unit: int, generator: torch.Generator) -> None:
        import torch

        per_unit = UNIT_ROWS * self.d // 8  # random bytes per unit, 8 signs each
        k = block.shape[0]
        if k <= self.working_units:  # streaming: reuse the scratch indices
            if self._scratch is None:
                self._scratch = torch.empty(self.working_units * per_unit, dtype=torch.int64)
            idx = self._scratch[: k * per_unit]
        else:  # building the cache, once
            idx = torch.empty(k * per_unit, dtype=torch.int64)
        for i in range(k):
            generator.manual_seed(unit_seed(self.seed, start_unit + i))
            torch.randint(
                0, 256, (per_unit,), generator=generator, out=idx[i * per_unit : (i + 1) * per_unit]
            )
        torch.index_select(self._table, 0, idx, out=block.view(-1, 8))


@PROJECTORS.register("gaussian", "Standard normal entries scaled 1/sqrt(d), regenerated from the seed.")
class GaussianProjector(Projector):
    """Standard normal entries scaled 1/sqrt(d) (about 3x slower to regenerate than signs)."""

    name = "gaussian"

    def _fill(self, block: torch.Tensor, start_unit: int, generator: torch.Generator) -> None:
        for i in range(block.shape[0]):
            generator.manual_seed(unit_seed(self.seed, start_unit + i))
            block[i].normal_(0.0, self.scale, generator=generator)


def make_projector(name: str, p: int, d: int, seed: int, memory_budget_mb: float = 64) -> Projector:
    """Build the registered projector ``name`` (raises UnknownPluginError for unknown names)."""
    cls = PROJECTORS.get(name)
    origin = PROJECTORS.described(name)
    if origin == "built-in":
        return cls(p=p, d=d, seed=seed, memory_budget_mb=memory_budget_mb)
    from subsetctl.plugin_guard import CheckedProjector, build_plugin

    inner = build_plugin("projector", name, origin, cls, p=p, d=d, seed=seed, memory_budget_mb=memory_budget_mb)
    return CheckedProjector(inner, name, origin)  # type: ignore[return-value]
