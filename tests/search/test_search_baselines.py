"""Baselines: sizes, seeds, similarity inputs and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from searchfixtures import SOURCES, CountingEstimator

from subsetctl.errors import UserError
from subsetctl.estimate.base import FeatureSet
from subsetctl.search import SearchContext, run_strategy


def test_all_and_target_only_estimate_their_pick(estimator: CountingEstimator) -> None:
    ctx = SearchContext(sources=list(SOURCES))
    everything = run_strategy("all", estimator, ctx)
    nothing = run_strategy("target_only", estimator, ctx)
    assert everything.selected == list(SOURCES) and nothing.selected == []
    assert everything.estimated_loss is not None and nothing.estimated_loss is not None
    assert len(everything.trace) == len(nothing.trace) == 1


def test_random_is_sized_like_another_pick_and_seeded(estimator: CountingEstimator) -> None:
    ctx = SearchContext(
        sources=list(SOURCES), seed=7, other_selections={"forward": ["help1", "help2", "help3"]}
    )
    a = run_strategy("random", estimator, ctx, {"like": "forward"})
    b = run_strategy("random", estimator, ctx, {"like": "forward"})
    assert len(a.selected) == 3 and a.selected == b.selected
    assert a.selected == [s for s in SOURCES if s in a.selected]
    assert len(run_strategy("random", estimator, ctx, {"k": 5}).selected) == 5


def test_random_needs_an_earlier_strategy_or_k(estimator: CountingEstimator) -> None:
    ctx = SearchContext(sources=list(SOURCES), other_selections={"all": list(SOURCES)})
    with pytest.raises(UserError, match="has not run"):
        run_strategy("random", estimator, ctx, {"like": "forward"})
    with pytest.raises(UserError, match="exactly one"):
        run_strategy("random", estimator, ctx, {}, where="search.strategies[3].params")


def test_similarity_baselines_need_features(estimator: CountingEstimator) -> None:
    ctx = SearchContext(sources=list(SOURCES))
    with pytest.raises(UserError, match="gradient features"):
        run_strategy("gradient_similarity", estimator, ctx)


def test_representation_similarity(estimator: CountingEstimator, planted_features: FeatureSet) -> None:
    ctx = SearchContext(sources=list(SOURCES), features=planted_features)
    with pytest.raises(UserError, match="representations"):
        run_strategy("representation_similarity", estimator, ctx)
    reprs = np.zeros((len(SOURCES), 3))
    reprs[:, 0] = 1.0
    reprs[SOURCES.index("noise2")] = [0.0, 1.0, 0.0]
    reprs[SOURCES.index("flip1")] = [-1.0, 0.0, 0.0]
    with_repr = FeatureSet(
        **{**planted_features.__dict__, "source_repr": reprs, "target_repr": np.array([1.0, 0.2, 0.0])}
    )
    ctx = SearchContext(sources=list(SOURCES), features=with_repr)
    result = run_strategy("representation_similarity", estimator, ctx, {"threshold": 0.5})
    assert "flip1" not in result.selected and "noise2" not in result.selected
    assert len(result.selected) == len(SOURCES) - 2
    assert result.scores["flip1"] < 0 < result.scores["noise2"] < result.scores["help1"]
    top = run_strategy("representation_similarity", estimator, ctx, {"top_k": 2})
    assert len(top.selected) == 2 and "noise2" not in top.selected


def test_similarity_refuses_top_k_and_threshold_together(estimator: CountingEstimator,
                                                        planted_features: FeatureSet) -> None:
    """top_k silently replaced an explicit threshold; the ranking strategies refuse such
    combinations already."""
    ctx = SearchContext(sources=estimator.sources, features=planted_features)
    with pytest.raises(UserError, match="set top_k or threshold, not both"):
        run_strategy("gradient_similarity", estimator, ctx, {"top_k": 2, "threshold": 0.1})
    assert len(run_strategy("gradient_similarity", estimator, ctx, {"top_k": 2}).selected) == 2


def test_gradient_similarity_says_a_1_dimensional_cosine_is_only_a_sign(estimator: CountingEstimator,
                                                                       planted_features: FeatureSet) -> None:
    """gradients.d: 1 (valid) made every score 1 or -1, shown as similarities, without a word."""
    one_d = FeatureSet(**{**planted_features.__dict__,
                          "target_train_x": planted_features.target_train_x[:, :1],
                          "source_train_x": [x[:, :1] for x in planted_features.source_train_x],
                          "val_x": planted_features.val_x[:, :1]})
    result = run_strategy("gradient_similarity", estimator, SearchContext(sources=estimator.sources, features=one_d))
    assert set(map(abs, result.scores.values())) <= {0.0, 1.0}
    assert any("gradients.d=1" in n and "raise gradients.d" in n for n in result.notices), result.notices
    ctx = SearchContext(sources=estimator.sources, features=planted_features)
    assert not any("gradients.d" in n for n in run_strategy("gradient_similarity", estimator, ctx).notices)


def test_similarity_threshold_outside_the_cosine_range_is_refused(estimator: CountingEstimator,
                                                                  planted_features: FeatureSet) -> None:
    """`threshold: 2` kept no source without a word (no cosine exceeds 1)."""
    ctx = SearchContext(sources=estimator.sources, features=planted_features)
    for threshold in (1.0, 2.0, -1.5):
        with pytest.raises(UserError, match="threshold"):
            run_strategy("gradient_similarity", estimator, ctx, {"threshold": threshold})


def test_cosine_is_scale_free_and_normalised_by_both_vectors() -> None:
    from subsetctl.search.baselines import cosine

    assert cosine(np.array([3.0, 4.0]), np.array([4.0, 3.0])) == pytest.approx(24 / 25)
    assert cosine(np.array([1.0, 0.0]), np.array([5.0, 0.0])) == pytest.approx(1.0)
    assert cosine(np.array([10.0, 0.0]), np.array([0.0, 0.5])) == pytest.approx(0.0)
    assert cosine(np.zeros(2), np.array([1.0, 0.0])) == 0.0


def test_similarity_threshold_keeping_all_or_none_is_said(estimator: CountingEstimator,
                                                          planted_features: FeatureSet) -> None:
    """A threshold above every similarity (or below every one) made the pick the target alone
    (or every source) without a word: it looked like a selection."""
    reprs = np.zeros((len(SOURCES), 3))
    reprs[:, 0] = 1.0
    reprs[SOURCES.index("flip1")] = [-1.0, 0.0, 0.0]
    with_repr = FeatureSet(
        **{**planted_features.__dict__, "source_repr": reprs, "target_repr": np.array([1.0, 0.2, 0.0])}
    )
    ctx = SearchContext(sources=list(SOURCES), features=with_repr)
    none = run_strategy("representation_similarity", estimator, ctx, {"threshold": 0.99})
    assert none.selected == []
    (said,) = [n for n in none.notices if "threshold=" in n]
    assert said.startswith(f"threshold=0.99 kept none of the {len(SOURCES)} sources "
                           "(their similarities to the target range from -0.981 to 0.981)"), said
    assert "'target_only'" in said and "Lower representation_similarity's threshold below the highest " \
                                       "similarity (0.981)" in said
    every = run_strategy("representation_similarity", estimator, ctx, {"threshold": -0.99})
    assert every.selected == list(SOURCES)
    (said,) = [n for n in every.notices if "threshold=" in n]
    assert said.startswith(f"threshold=-0.99 kept all {len(SOURCES)} sources "), said
    assert "'all' baseline" in said and "Raise representation_similarity's threshold" in said
    some = run_strategy("representation_similarity", estimator, ctx, {"threshold": 0.5})
    assert 0 < len(some.selected) < len(SOURCES) and not any("threshold=" in n for n in some.notices)
    ctx = SearchContext(sources=list(SOURCES), features=planted_features)
    grads = run_strategy("gradient_similarity", estimator, ctx, {"threshold": 0.999})
    (said,) = [n for n in grads.notices if "threshold=" in n]
    assert grads.selected == [] and said.startswith("threshold=0.999 kept none") and "gradient_similarity's" in said
    alike = FeatureSet(**{**with_repr.__dict__, "source_repr": np.zeros((len(SOURCES), 3))})  # every cosine 0
    flat = run_strategy("representation_similarity", estimator, SearchContext(sources=list(SOURCES), features=alike))
    assert any("no threshold tells them apart" in n for n in flat.notices), flat.notices
    top = run_strategy("gradient_similarity", estimator, ctx, {"top_k": len(SOURCES)})
    assert not any("threshold=" in n for n in top.notices)
    labelled = SearchContext(sources=list(SOURCES), features=planted_features, label="gs_thr")
    (said,) = [n for n in run_strategy("gradient_similarity", estimator, labelled, {"threshold": 0.999}).notices
               if "threshold=" in n]
    assert "Lower gs_thr's threshold" in said, said  # the entry meant, of two gradient_similarity ones


def test_greedy_progress_names_the_strategy_by_its_label(estimator: CountingEstimator) -> None:
    """Of `forward` and a `forward` labelled fwd_mi, both showed "forward, step 1 ..." as they ran."""
    said: list[str] = []
    ctx = SearchContext(sources=estimator.sources, label="fwd_mi",
                        progress=lambda message, done, total: said.append(message))
    run_strategy("forward", estimator, ctx, {"max_steps": 1})
    assert said and all(message.startswith("fwd_mi") for message in said), said
    said.clear()
    run_strategy("forward", estimator, SearchContext(sources=estimator.sources, progress=lambda m, d, t: said.append(m)),
                 {"max_steps": 1})
    assert said and all(message.startswith("forward") for message in said), said


def test_random_like_and_search_final_say_they_read_labels() -> None:
    """`like` and `final` name a strategy by its label (`like: forward` finds no strategy labelled
    fw), but random's error said "'like' (a strategy name)", its description "this earlier
    strategy", and search.final's description promised the order of the per-source score table,
    which only more than 30 sources are ranked by."""
    from subsetctl.search.baselines import RandomParams
    from subsetctl.spec.models import SearchSpec

    with pytest.raises(ValueError, match=r"'like' \(the label of a strategy listed before it: its name where it has "
                                         r"no label\)"):
        RandomParams()
    assert "label" in RandomParams.model_fields["like"].description
    assert "with more than 30 sources, the order of the report's per-source score table" in \
        SearchSpec.model_fields["final"].description
