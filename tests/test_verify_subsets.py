"""verify's choice of subsets: k distinct ones, all of them when k asks for every subset."""

from __future__ import annotations

import pytest

from subsetctl.stages.verify import verify_subsets


@pytest.mark.parametrize("n", [4, 5, 6])
def test_every_subset_is_chosen_when_k_asks_for_them_all(n: int) -> None:
    """With 4 sources and k = 16 verify fine-tuned 14 subsets (5 sources, k = 32: 22), and
    said nothing: once every subset of one size was chosen, the cycle of sizes stopped
    there instead of going on to the sizes with subsets left."""
    sources = [f"s{i}" for i in range(n)]
    for k in (2**n - 1, 2**n, 2**n + 3):
        subsets = verify_subsets(sources, k, seed=0)
        assert len(subsets) == min(k, 2**n)
        assert len({tuple(s) for s in subsets}) == len(subsets)


def test_a_larger_k_keeps_the_subsets_of_a_smaller_one() -> None:
    """Raising verify.k adds subsets after those already fine-tuned (whose runs are reused)."""
    sources = [f"s{i}" for i in range(5)]
    smaller = verify_subsets(sources, 12, seed=1)
    assert verify_subsets(sources, 32, seed=1)[:12] == smaller
    assert smaller[:2] == [[], sources]


def test_sizes_cycle_from_one_after_the_empty_and_full_subsets() -> None:
    sources = [f"s{i}" for i in range(5)]
    subsets = verify_subsets(sources, 10, seed=3)
    assert subsets[0] == [] and subsets[1] == sources
    assert [len(s) for s in subsets[2:]] == [1, 2, 3, 4, 1, 2, 3, 4]
    for s in subsets:
        assert s == [x for x in sources if x in s]  # names in source (mask) order


def test_the_seed_decides_the_random_subsets_and_k_bounds_them() -> None:
    sources = [f"s{i}" for i in range(8)]
    a = verify_subsets(sources, 8, seed=0)
    assert verify_subsets(sources, 8, seed=0) == a
    assert any(verify_subsets(sources, 8, seed=s) != a for s in (1, 2, 3))
    assert verify_subsets(sources, 1, seed=0) == [[]]
    assert len(verify_subsets(sources, 5, seed=0)) == 5


def test_no_sources_give_the_empty_subset_once() -> None:
    """The empty subset and "all sources" are the same subset then: it was listed twice."""
    assert verify_subsets([], 4, 0) == [[]]
    assert verify_subsets(["a"], 4, 0) == [[], ["a"]]
