"""The shared verdict rules, and that the matcher, its decomposition and the alignment give the
same verdict for every pair (they all call analysis/metrics/verdicts.py)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import Pair

from splatnlp.mechinterp.analysis import AlignOptions, FeatureMatcher, align_contexts
from splatnlp.mechinterp.analysis.metrics import verdicts as V


def test_assign_parents_is_the_best_correlation_above_the_cut() -> None:
    corr = np.array([[0.1, 0.5, 0.4], [0.2, np.nan, 0.29], [np.nan, np.nan, np.nan], [0.6, 0.6, 0.1]])
    parent, score = V.assign_parents(corr, 0.3)
    assert parent.tolist() == [1, -1, -1, 0]  # ties go to the lower index
    np.testing.assert_array_equal(score, [0.5, np.nan, np.nan, 0.6])
    assert V.assign_parents(np.zeros((2, 0)))[0].tolist() == [-1, -1]


def test_pair_relations_cover_every_label() -> None:
    corr = np.array([0.9, 0.5, 0.97, 0.4, 0.1, np.nan])
    dec = np.array([0.9, 0.2, 0.1, 0.95, 0.99, 0.99])
    parent = np.array([True, True, True, False, True, True])
    small = V.pair_relations(corr, dec, parent, source_is_larger=False)
    assert small.tolist() == [
        "equivalent",  # parent pair, decoders agree
        "source_split_by_target",  # parent pair: the target is the source's child
        "equivalent",  # parent pair, nearly identical activations
        "partial",  # related, not a parent pair, whatever the decoders
        "unrelated",  # below the cut: never a parent pair
        "unrelated",  # undefined correlation
    ]
    large = V.pair_relations(corr, dec, parent, source_is_larger=True)
    assert large[1] == "source_part_of_target" and large[0] == "equivalent"


def test_larger_side_is_decided_the_same_way_from_both_ends() -> None:
    a, b = (2048, "full", "full"), (24576, "ultra", "ultra")
    assert V.larger_is_first(b, a) and not V.larger_is_first(a, b)
    same_a, same_b = (10, "custom", "x"), (10, "custom", "y")
    assert V.larger_is_first(same_b, same_a) != V.larger_is_first(same_a, same_b)


@pytest.fixture(scope="module")
def aligned(pair: Pair):
    return align_contexts(pair.source, pair.target, options=AlignOptions(n_null_features=8, n_null_directions=16))


def test_matcher_decomposition_and_alignment_agree_on_every_pair(pair: Pair, aligned) -> None:
    """The planted pair: source 'ultra' has 7 features, target 'full' 40, so the target is the
    larger model and each target feature's parent is a source feature."""
    small_side, large_side = (aligned.a, aligned.b) if aligned.report.larger_side == "b" else (aligned.b, aligned.a)
    parent = large_side["parent"]
    from_small = FeatureMatcher(pair.source, pair.target)
    from_large = FeatureMatcher(pair.target, pair.source)
    n_checked = 0
    for s in range(pair.source.n_features):
        relation = from_small.score_all(s)["relation"]
        children = {m.feature for m in from_small.find_decomposition(s).members}
        for t in range(pair.target.n_features):
            is_parent_pair = parent[t] == s
            assert (relation[t] in ("source_split_by_target", "equivalent")) == is_parent_pair, (s, t)
            assert (t in children) == is_parent_pair, (s, t)
            back = from_large.score_all(t)["relation"][s]
            assert (back in ("source_part_of_target", "equivalent")) == is_parent_pair, (s, t)
            assert (back == "equivalent") == (relation[t] == "equivalent"), (s, t)
            if is_parent_pair:
                want = "equivalent" if relation[t] == "equivalent" else ("split_child" if small_side["n_assigned"][s] >= 2 else "partial")
                assert large_side["class_label"][t] == want, (s, t)
                n_checked += 1
    assert n_checked >= 3  # the planted copies, parts and superset are parent pairs
