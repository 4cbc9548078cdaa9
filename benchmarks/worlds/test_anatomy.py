"""Hand-made checks of the error anatomy (``benchmarks/worlds/anatomy.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.worlds.anatomy import (
    MIXED_R,
    RELATIONS,
    TRUTH_VARIANTS,
    equivalent_misses,
    lenient_truth,
    pearson_columns,
    relation_to,
    verdict_errors,
)

# Two trees: 0 -> {1, 2}, 1 -> {3}; 4 -> {5}; 6 outside the forest.
PARENT = np.array([-1, 0, 0, 1, -1, 4, -1])


@pytest.mark.parametrize(
    ("x", "y", "tracks", "expected"),
    [
        (3, 3, True, "path"),  # the same feature
        (3, 1, True, "path"),  # its parent
        (3, 0, True, "path"),  # its root
        (1, 3, True, "descendant"),
        (0, 3, True, "descendant"),
        (3, 2, True, "relative"),  # a cousin in the same tree
        (1, 2, True, "relative"),  # a sibling
        (3, 5, True, "other_tree"),
        (3, 6, True, "other_tree"),  # outside the forest
        (3, 1, False, "untracked"),
        (3, -1, True, "untracked"),  # a dead Full latent has no feature
    ],
)
def test_relation_to_walks_both_ancestor_chains(x, y, tracks, expected):
    assert relation_to(x, y, tracks, PARENT) == expected


def test_relation_to_refuses_a_cycle():
    with pytest.raises(ValueError, match="cycle through feature 0"):
        relation_to(0, 1, True, np.array([1, 0]))


def test_verdict_errors_counts_each_kind_once_against_brute_force():
    rng = np.random.default_rng(0)
    full_feature = np.array([0, 1, 2, 3, 5, -1])
    full_tracks = np.array([True, True, True, False, True, False])
    n_u = 200
    ultra_feature = rng.integers(0, 7, n_u)
    category = rng.choice(["child", "novel", "untracked", "dead"], n_u).tolist()
    expected = [sorted(rng.choice(6, rng.integers(1, 3), replace=False).tolist()) if c == "child" else [] for c in category]
    ours = rng.integers(-1, 6, n_u)
    got = verdict_errors(category, expected, ours, ultra_feature, full_feature, full_tracks, PARENT)

    want = {"novel_called_child": dict.fromkeys(RELATIONS, 0), "wrong_parent": dict.fromkeys(RELATIONS, 0)}
    n_missed = 0
    for u in range(n_u):
        f = ours[u]
        if category[u] == "novel" and f >= 0:
            kind = "novel_called_child"
        elif category[u] == "child" and f < 0:
            n_missed += 1
            continue
        elif category[u] == "child" and f not in expected[u]:
            kind = "wrong_parent"
        else:
            continue
        want[kind][relation_to(ultra_feature[u], full_feature[f], full_tracks[f], PARENT)] += 1
    want["child_called_novel"] = {"n": n_missed}
    assert got == want
    assert sum(got["novel_called_child"].values()) == sum(c == "novel" and f >= 0 for c, f in zip(category, ours, strict=True))


def test_verdict_errors_right_verdicts_count_nothing():
    got = verdict_errors(
        ["child", "novel", "untracked"], [[0], [], []], np.array([0, -1, 1]),
        np.array([3, 5, 0]), np.array([1, 2]), np.array([True, True]), PARENT,
    )
    assert all(v == 0 for kind in ("novel_called_child", "wrong_parent") for v in got[kind].values())
    assert got["child_called_novel"] == {"n": 0}


def test_verdict_errors_refuses_arrays_of_other_lengths():
    with pytest.raises(ValueError, match=r"category \(2\), expected_parents \(1\) and ours_parent \(2\)"):
        verdict_errors(["child", "novel"], [[0]], np.array([0, 1]), np.array([0, 1]), np.array([0]), np.array([True]), PARENT)


def test_pearson_columns_equals_numpy_corrcoef():
    rng = np.random.default_rng(1)
    a = rng.random((50, 4)) * (rng.random((50, 4)) < 0.3)
    b = rng.random((50, 3)) * (rng.random((50, 3)) < 0.5)
    b[:, 2] = 0.0  # constant: undefined
    got = pearson_columns(sp.csr_matrix(a), b)
    want = np.corrcoef(a.T, b[:, :2].T)[:4, 4:]
    np.testing.assert_allclose(got[:, :2], want, rtol=1e-12, atol=1e-12)
    assert np.isnan(got[:, 2]).all()
    with pytest.raises(ValueError, match="a has 50 rows and b has 3"):
        pearson_columns(a, b[:3])


def test_verdict_errors_counts_mixtures_off_the_path_only():
    # Ultra 0: novel, feature 3, given Full 1 (feature 5, another tree); Ultra 1: child of Full 0
    # (expected), given Full 2 (feature 1, on its path: not counted as a mixture).
    category, expected = ["novel", "child"], [[], [0]]
    ours = np.array([1, 2])
    ultra_feature, full_feature = np.array([3, 3]), np.array([0, 5, 1])
    tracks = np.array([True, True, True])
    ur, fr = np.zeros((2, 7)), np.zeros((3, 7))
    ur[0, 5] = MIXED_R  # Ultra 0 also fires on Full 1's feature
    fr[1, 3] = MIXED_R - 1e-9  # Full 1 does not quite fire on feature 3
    ur[1, 1] = fr[2, 3] = 0.9  # on-path pair: never a mixture
    got = verdict_errors(category, expected, ours, ultra_feature, full_feature, tracks, PARENT,
                         ultra_feature_r=ur, full_feature_r=fr)
    assert got["novel_called_child"]["other_tree"] == 1
    assert (got["novel_called_child"]["ultra_mixes"], got["novel_called_child"]["full_mixes"]) == (1, 0)
    assert got["novel_called_child"]["unmixed"] == 0
    assert got["wrong_parent"]["path"] == 1
    assert (got["wrong_parent"]["ultra_mixes"], got["wrong_parent"]["full_mixes"]) == (0, 0)
    assert got["wrong_parent"]["unmixed"] == 0  # on the path: not an off-path error

    fr[1, 3] = 0.0
    ur[0, 5] = MIXED_R - 1e-9
    got = verdict_errors(category, expected, ours, ultra_feature, full_feature, tracks, PARENT,
                         ultra_feature_r=ur, full_feature_r=fr)
    assert got["novel_called_child"]["unmixed"] == 1


def test_equivalent_misses_sorts_each_same_feature_latent_once():
    # Ultra latents 0-5; features: 0 -> 7, 1 -> 7 (two trackers of 7), 2 -> 8, 3 -> 9, 4 -> 9
    # (4 tracks nothing), 5 -> 8 (not a same-feature latent).
    same = [[10, 0], [11, 0], [10, 1], [12, 2], [13, 3]]
    parent = np.array([11, 10, 12, -1, 13, 12])
    equivalent = np.array([True, False, False, False, True, True])
    feature = np.array([7, 7, 8, 9, 9, 8])
    tracks = np.array([True, True, True, True, False, True])
    got = equivalent_misses(same, parent, equivalent, feature, tracks)
    # 0: called (parent 11 tracks its feature); 1: parent right, 7 has two trackers;
    # 2: parent right, 8 has two trackers too (5 also tracks 8); 3: novel.
    assert got == {"novel": 1, "other_parent": 0, "ultra_duplicates": 2, "single": 0,
                   "n_same_feature": 4, "n_called": 1}
    tracks[5] = False
    got = equivalent_misses(same, parent, equivalent, feature, tracks)
    assert got["ultra_duplicates"] == 1 and got["single"] == 1
    parent[1] = 12  # tracks feature 8, not 7
    assert equivalent_misses(same, parent, equivalent, feature, tracks)["other_parent"] == 1


# For lenient_truth: Full latents 0-3 track features 1, 3, 5 and (untracked) 2; Ultra latents:
# 0 child of Full 0 (feature 3 under 1), 1 novel on feature 0 (the root above Full 0's and Full
# 1's features), 2 novel on feature 4 (the root above Full 2's 5), 3 novel on feature 6 (outside
# the forest), 4 child of Full 0 whose candidate is Full 2 (another tree), 5 untracked.
L_CATEGORY = ["child", "novel", "novel", "novel", "child", "untracked"]
L_EXPECTED = [[0], None, None, None, [0], None]
L_ULTRA_FEATURE = np.array([3, 0, 4, 6, 3, 2])
L_FULL_FEATURE = np.array([1, 3, 5, 2])
L_FULL_TRACKS = np.array([True, True, True, False])
L_CANDIDATE = np.array([0, 0, 2, 2, 2, 1])


def _lenient(**flags):
    return lenient_truth(L_CATEGORY, L_EXPECTED, L_CANDIDATE, L_ULTRA_FEATURE, L_FULL_FEATURE, L_FULL_TRACKS, PARENT, **flags)


def test_lenient_truth_issue_reading_is_the_truth_as_built():
    novel, accepted, ambiguous = _lenient()
    assert novel.tolist() == [c == "novel" for c in L_CATEGORY]
    assert accepted == [[0], [], [], [], [0], []]
    assert not ambiguous.any()
    assert TRUTH_VARIANTS["issue"] == (False, False)


def test_lenient_truth_absorbed_covers_ancestors_of_tracked_features_only():
    novel, accepted, _ = _lenient(absorbed=True)
    # Feature 0 is above Full 0 (feature 1) and Full 1 (feature 3): covered by both; feature 4 is
    # above Full 2 (feature 5); feature 6 has nothing below it. Full 3 tracks nothing, so its
    # feature 2 (also under 0) adds no parent.
    assert novel.tolist() == [False, False, False, True, False, False]
    assert accepted[1] == [0, 1] and accepted[2] == [2] and accepted[3] == []
    assert accepted[0] == [0]  # children keep their expected parents


def test_lenient_truth_mixed_makes_a_mixing_candidate_ambiguous():
    ur, fr = np.zeros((6, 7)), np.zeros((4, 7))
    ur[4, 5] = MIXED_R  # Ultra 4 (feature 3) also fires on Full 2's feature 5: ambiguous
    fr[2, 6] = MIXED_R  # Full 2 also fires on Ultra 3's feature 6: ambiguous
    fr[2, 4] = 0.9  # Full 2 fires on Ultra 2's feature 4 (its own 5 lies below 4: off the path)
    ur[0, 1] = 0.9  # Ultra 0's candidate is its expected parent: never ambiguous
    novel, accepted, ambiguous = _lenient(mixed=True, ultra_feature_r=ur, full_feature_r=fr)
    assert ambiguous.tolist() == [False, False, True, True, True, False]
    assert novel.tolist() == [False, True, True, True, False, False]  # the truth's own answer stays
    assert accepted[4] == [0, 2] and accepted[3] == []  # a novel one has no parent to accept
    fr[2, 6] = MIXED_R - 1e-9
    assert not _lenient(mixed=True, ultra_feature_r=ur, full_feature_r=fr)[2][3]
    # Both readings: Ultra 2 is covered (absorbed), so Full 2 is acceptable and not ambiguous.
    novel, accepted, ambiguous = _lenient(absorbed=True, mixed=True, ultra_feature_r=ur, full_feature_r=fr)
    assert not novel[2] and accepted[2] == [2] and not ambiguous[2]


def test_lenient_truth_refuses_bad_input():
    with pytest.raises(ValueError, match=r"category \(6\), expected_parents \(5\) and candidate \(6\)"):
        lenient_truth(L_CATEGORY, L_EXPECTED[:5], L_CANDIDATE, L_ULTRA_FEATURE, L_FULL_FEATURE, L_FULL_TRACKS, PARENT)
    with pytest.raises(ValueError, match="mixed=True needs ultra_feature_r and full_feature_r"):
        _lenient(mixed=True)

