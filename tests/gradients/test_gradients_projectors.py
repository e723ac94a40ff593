"""Random projections: determinism, memory-budget independence, statistics, errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from subsetctl.errors import UnknownPluginError, UserError
from subsetctl.gradients.projectors import UNIT_ROWS, GaussianProjector, RademacherProjector, make_projector
from subsetctl.registry import PROJECTORS

P_ROWS = 3 * UNIT_ROWS + 123  # several units and a ragged last one


@pytest.mark.parametrize("cls", [RademacherProjector, GaussianProjector])
def test_deterministic_and_budget_independent(cls: type) -> None:
    G = torch.randn(5, P_ROWS, generator=torch.Generator().manual_seed(0))
    cached = cls(p=P_ROWS, d=24, seed=7)  # fits the default budget: fully cached
    streamed = cls(p=P_ROWS, d=24, seed=7, memory_budget_mb=0.01)  # regenerates unit by unit
    assert cached.cached_rows == P_ROWS and streamed.cached_rows == 0
    # P itself is the same bit for bit whatever the budget
    assert torch.equal(cached.matrix(), streamed.matrix())
    assert torch.equal(cached.rows(1, 3), cached.matrix()[UNIT_ROWS : 3 * UNIT_ROWS])
    a, b = cached.project(G), streamed.project(G)
    assert torch.equal(a, cached.project(G))  # same again from the cache
    assert torch.equal(a, cls(p=P_ROWS, d=24, seed=7).project(G))  # a second instance
    assert torch.equal(b, cls(p=P_ROWS, d=24, seed=7, memory_budget_mb=0.01).project(G))
    # the budget is not an input of the gradients stage: the projection is the same bit for bit
    assert torch.equal(b, a)
    partial = cls(p=P_ROWS, d=24, seed=7, memory_budget_mb=2 * UNIT_ROWS * 24 * 4 / 2**20 + 1e-6)
    assert 0 < partial.cached_rows < P_ROWS
    assert torch.equal(partial.project(G), a)
    ref = G @ cached.matrix()
    assert float((a - ref).norm() / ref.norm()) < 1e-6
    other = cls(p=P_ROWS, d=24, seed=8).project(G)
    assert (other - a).norm() > 0.5 * a.norm()


@pytest.mark.parametrize("d", [16, 128])
def test_many_units_same_bits_for_every_budget(d: int) -> None:
    """With many units per block (the default budget caches all of them) the projection
    once differed from a streamed one by about 1e-7 relative: a batched matmul rounds
    differently with the batch count. Every budget must give the same bits."""
    p = 40 * UNIT_ROWS + 77
    G = torch.randn(4, p, generator=torch.Generator().manual_seed(1))
    unit_mb = UNIT_ROWS * d * 4 / 2**20
    outs = [RademacherProjector(p=p, d=d, seed=3, memory_budget_mb=mb).project_chunks([G[:, :1000], G[:, 1000:]])
            for mb in (1e-4, 5 * unit_mb, 30 * unit_mb, 1024)]
    for out in outs[1:]:
        assert torch.equal(out, outs[0])


@pytest.mark.parametrize("budget_mb", [0.5, 1.0, 3.0])
def test_buffers_stay_within_the_budget(budget_mb: float) -> None:
    d = 32  # one unit is 128 KB
    p = 40 * UNIT_ROWS + 5  # a dense P would be 5 MB
    proj = RademacherProjector(p=p, d=d, seed=0, memory_budget_mb=budget_mb)
    x = proj.project(torch.randn(4, p))
    assert 0 < proj.cached_rows < p
    assert 0 < proj.held_bytes <= budget_mb * 2**20
    ref = torch.randn(4, p)
    torch.testing.assert_close(
        RademacherProjector(p=p, d=d, seed=0).project(ref), proj.project(ref), rtol=1e-5, atol=1e-4
    )
    assert x.shape == (4, d)


def test_chunks_equal_concatenation() -> None:
    proj = RademacherProjector(p=P_ROWS, d=16, seed=1, memory_budget_mb=0.01)
    widths = [100, UNIT_ROWS, 2000, P_ROWS - 100 - UNIT_ROWS - 2000]
    chunks = [torch.randn(3, w) for w in widths]
    torch.testing.assert_close(
        proj.project_chunks(chunks), proj.project(torch.cat(chunks, 1)), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError):
        proj.project_chunks(chunks[:-1])


def test_same_across_processes() -> None:
    code = (
        "import torch; from subsetctl.gradients.projectors import RademacherProjector as R, GaussianProjector as N;"
        "print(repr(R(p=3000, d=8, seed=11).matrix().sum().item()), repr(N(p=3000, d=8, seed=11).matrix()[:, 3].sum().item()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    here = (
        RademacherProjector(p=3000, d=8, seed=11).matrix().sum().item(),
        GaussianProjector(p=3000, d=8, seed=11).matrix()[:, 3].sum().item(),
    )
    assert [float(x) for x in out] == list(here)


@pytest.mark.parametrize("cls", [RademacherProjector, GaussianProjector])
def test_entries_have_the_right_distribution(cls: type) -> None:
    d = 64
    P = cls(p=4000, d=d, seed=3).matrix()
    assert P.shape == (4000, d)
    assert abs(float((P**2).mean()) * d - 1.0) < 0.02  # variance 1/d
    assert abs(float(P.mean()) * d**0.5) < 0.02
    if cls is RademacherProjector:
        assert torch.all(P.abs() == 1 / d**0.5)
    # columns nearly orthogonal: P^T P ~= (p/d) I, so inner products are preserved on average
    C = P.T @ P * (d / 4000)
    assert float((C - torch.eye(d)).abs().max()) < 0.15


def test_d_larger_than_p_is_a_user_error() -> None:
    with pytest.raises(UserError, match="p=10; lower gradients.d"):
        RademacherProjector(p=10, d=11, seed=0)
    with pytest.raises(UserError):
        GaussianProjector(p=10, d=0, seed=0)


def test_registry() -> None:
    assert {"rademacher", "gaussian"} <= set(PROJECTORS.names())
    assert isinstance(make_projector("gaussian", p=100, d=4, seed=0), GaussianProjector)
    with pytest.raises(UnknownPluginError):
        make_projector("sparse", p=100, d=4, seed=0)


def test_d_equal_to_p_is_allowed() -> None:
    P = GaussianProjector(p=64, d=64, seed=0).matrix()
    assert tuple(P.shape) == (64, 64)


def _unit_generator(seed: int, unit: int) -> torch.Generator:
    from subsetctl.gradients.projectors import unit_seed

    return torch.Generator(device="cpu").manual_seed(unit_seed(seed, unit))


def test_each_unit_comes_from_its_own_seeded_generator() -> None:
    """The documented contract: unit u of P is regenerated from unit_seed(seed, u) alone."""
    d, seed, u = 16, 7, 1
    p = 3 * UNIT_ROWS
    gauss = GaussianProjector(p=p, d=d, seed=seed).matrix()[u * UNIT_ROWS : (u + 1) * UNIT_ROWS]
    ref = torch.empty((UNIT_ROWS, d)).normal_(0.0, 1.0 / d**0.5, generator=_unit_generator(seed, u))
    assert torch.equal(gauss, ref)
    rad = RademacherProjector(p=p, d=d, seed=seed).matrix()[u * UNIT_ROWS : (u + 1) * UNIT_ROWS]
    raw = torch.randint(0, 256, (UNIT_ROWS * d // 8,), generator=_unit_generator(seed, u))
    bits = torch.stack([(raw >> j) & 1 for j in range(8)], dim=1).reshape(UNIT_ROWS, d)  # 8 signs per byte
    assert torch.equal(rad, (bits.to(torch.float32) * 2 - 1) / d**0.5)


def test_neighbouring_seeds_share_no_units() -> None:
    from subsetctl.gradients.projectors import unit_seed

    seeds = {unit_seed(s, u) for s in range(4) for u in range(4)}
    assert len(seeds) == 16  # not seed + unit: seed 1 unit 0 is not seed 0 unit 1


def test_a_budget_exactly_the_size_of_p_caches_all_of_it() -> None:
    """P is generated once and kept when it fits the budget: at exactly its size (2 units
    of 1024 rows x 64 x 4 bytes = 0.5 MB) too, with no streaming block."""
    proj = RademacherProjector(p=2 * UNIT_ROWS, d=64, seed=0, memory_budget_mb=0.5)
    assert (proj.cached_rows, proj.working_units) == (2 * UNIT_ROWS, 0)
    proj.project(torch.ones(1, 2 * UNIT_ROWS))
    assert proj.held_bytes == 2 * UNIT_ROWS * 64 * 4
    smaller = RademacherProjector(p=2 * UNIT_ROWS, d=64, seed=0, memory_budget_mb=0.5 - 1e-6)
    assert smaller.cached_rows < 2 * UNIT_ROWS


def test_unit_seeds_are_pinned_and_make_projector_passes_the_seed_as_given() -> None:
    """A gradient store built with a seed must meet the same P in any later version: the
    unit seeds (63 bits of a blake2b digest) are pinned, and make_projector builds the
    projector of exactly the spec's seed."""
    from subsetctl.gradients.projectors import unit_seed

    assert unit_seed(0, 0) == 7802762590892943497
    assert unit_seed(7, 3) == 2744466480285316672
    for name, cls in (("rademacher", RademacherProjector), ("gaussian", GaussianProjector)):
        built = make_projector(name, p=UNIT_ROWS + 5, d=8, seed=7)
        assert type(built) is cls and built.seed == 7
        assert torch.equal(built.matrix(), cls(p=UNIT_ROWS + 5, d=8, seed=7).matrix())
