"""Hand-made checks of the benchmark's metric helpers (``python -m pytest benchmarks/worlds``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.worlds.scoring import (
    aggregate,
    best_threshold,
    binary_scores,
    child_recall,
    confidence_counts,
    membership_accuracy,
    pair_scores,
    shared_threshold,
    threshold_predictions,
)


def test_binary_scores_counts_each_cell():
    # pred/truth: TP at 0, FP at 1, FN at 2, TN at 3 and 4.
    s = binary_scores([True, True, False, False, False], [True, False, True, False, False])
    assert (s.tp, s.fp, s.fn, s.tn) == (1, 1, 1, 2)
    assert s.accuracy == pytest.approx(3 / 5)
    assert s.precision == pytest.approx(0.5)
    assert s.recall == pytest.approx(0.5)
    assert s.f1 == pytest.approx(0.5)


def test_binary_scores_undefined_is_none_not_zero():
    s = binary_scores([False, False], [False, False])
    assert s.precision is None and s.recall is None and s.f1 is None
    assert s.accuracy == 1.0
    # Predicted positives, none true: precision 0, recall undefined, F1 0 (nothing right).
    s = binary_scores([True, False], [False, False])
    assert s.precision == 0.0 and s.recall is None and s.f1 == 0.0
    # Positives exist, none predicted: recall 0, precision undefined, F1 0.
    s = binary_scores([False, False], [True, False])
    assert s.precision is None and s.recall == 0.0 and s.f1 == 0.0


def test_binary_scores_f1_zero_when_nothing_right():
    s = binary_scores([True, False], [False, True])
    assert s.precision == 0.0 and s.recall == 0.0 and s.f1 == 0.0


def test_binary_scores_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one length"):
        binary_scores([True], [True, False])


def test_pair_scores_sets_and_duplicates():
    s = pair_scores([(0, 1), (0, 1), (0, 2), (3, 4)], [(0, 1), (3, 4), (5, 6), (7, 8)])
    assert (s.n_predicted, s.n_true, s.n_correct) == (3, 4, 2)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(0.5)
    assert s.f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    empty = pair_scores([], [(0, 1)])
    assert empty.precision is None and empty.recall == 0.0 and empty.f1 == 0.0
    assert pair_scores([], []).f1 is None


def test_membership_accuracy_accepts_any_listed_parent():
    assert membership_accuracy([3, 5, -1, 2], [[3], [4, 5], [1], [7]]) == pytest.approx(0.5)
    assert membership_accuracy([], []) is None
    with pytest.raises(ValueError, match="predictions"):
        membership_accuracy([1], [])


def test_threshold_predictions_nan_is_novel():
    pred = threshold_predictions(np.array([0.1, 0.2, 0.5, np.nan]), 0.2)
    assert pred.tolist() == [True, False, False, True]


def test_best_threshold_finds_the_separating_cut():
    r = np.array([0.05, 0.1, 0.15, 0.4, 0.6, 0.9])
    novel = np.array([True, True, True, False, False, False])
    cut, s = best_threshold(r, novel)
    assert 0.15 < cut <= 0.4
    assert s.f1 == 1.0 and s.accuracy == 1.0


def test_best_threshold_prefers_f1_over_accuracy():
    # One novel among many: "nothing is novel" has the higher accuracy but F1 undefined.
    r = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    novel = np.array([False, True, False, False, False])
    cut, s = best_threshold(r, novel)
    assert s.tp == 1 and s.f1 is not None and s.f1 > 0
    assert cut > 0.2


def test_best_threshold_rejects_empty():
    with pytest.raises(ValueError, match="at least one"):
        best_threshold(np.array([]), np.array([], dtype=bool))


def test_aggregate_skips_none():
    rows = [{"a": 1.0, "b": None}, {"a": 3.0, "b": None}]
    out = aggregate(rows, ["a", "b"])
    assert out["a"] == 2.0 and out["b"] is None
    assert math.isclose(aggregate([{"a": 0.5}], ["a"])["a"], 0.5)


def test_shared_threshold_picks_the_lowest_cut_that_suits_every_world():
    # Union of values 0.1, 0.3, 0.5, 0.6: candidate cuts 0.1, 0.2, 0.4, 0.55, 0.6 + 1e-9.
    # Only 0.4 calls both worlds' novel latent novel and neither matched one.
    worlds = [(np.array([0.1, 0.5]), np.array([True, False])), (np.array([0.3, 0.6]), np.array([True, False]))]
    cut, scores = shared_threshold(worlds)
    assert cut == pytest.approx(0.4)
    assert [s.f1 for s in scores] == [1.0, 1.0]


def test_shared_threshold_maximises_the_mean_not_each_world():
    # Three noisy worlds, each with its own best cut: the shared one beats every cut on a fine
    # grid for the mean F1.
    rng = np.random.default_rng(0)
    worlds = []
    for _ in range(3):
        r = rng.uniform(0, 1, 40)
        worlds.append((r, r + rng.normal(0, 0.15, 40) < 0.4))
    cut, scores = shared_threshold(worlds)
    mean = np.mean([s.f1 for s in scores])
    # Brute force over a fine grid: no cut does better than the chosen one.
    for t in np.linspace(-0.1, 1.1, 1201):
        grid = np.mean([binary_scores(threshold_predictions(r, t), y).f1 or 0.0 for r, y in worlds])
        assert grid <= mean + 1e-12
    # The scores returned are each world's at that cut.
    assert scores == [binary_scores(threshold_predictions(r, cut), y) for r, y in worlds]


def test_shared_threshold_refuses_no_worlds():
    with pytest.raises(ValueError, match="at least one world"):
        shared_threshold([])


def test_child_recall_credits_any_acceptable_parent_once():
    # Child 10 has two acceptable parents (1, 2); child 11 one (1); child 12 one (3).
    truth = [(1, 10), (2, 10), (1, 11), (3, 12)]
    assert child_recall([(2, 10), (1, 11)], truth) == pytest.approx(2 / 3)
    # Both parents of 10 predicted: still one child found, not two.
    assert child_recall([(1, 10), (2, 10)], truth) == pytest.approx(1 / 3)
    # A pair under a wrong parent finds nothing; the pair recall would agree.
    assert child_recall([(3, 10)], truth) == 0.0
    assert pair_scores([(2, 10), (1, 11)], truth).recall == pytest.approx(2 / 4)
    assert child_recall([(1, 10)], []) is None


def test_confidence_counts_tallies_right_verdicts_per_level():
    category = ["child", "child", "novel", "novel", "untracked", "child", "dead"]
    expected = [[3], [3, 4], [], [], None, [1], None]
    predicted = ["split_child", "partial", "novel", "equivalent", "novel", "novel", "dead"]
    parent = [3, 5, -1, 2, -1, -1, -1]
    level = ["high", "low", "high", "high", "high", "low", None]
    got = confidence_counts(category, expected, predicted, parent, level)
    # child 0 right (high), child 1 wrong parent (low); novel 2 right (high); novel 3 given a
    # parent (high, wrong); untracked and dead are not scored; child 5 called novel (low, wrong).
    assert got == {"parent": {"high": [1, 2], "low": [0, 1]}, "novel": {"high": [1, 1], "low": [0, 1]}}


def test_confidence_counts_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        confidence_counts(["child"], [[1]], ["novel"], [-1, 2], ["high"])
