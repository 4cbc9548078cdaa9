"""Hand-made checks of the benchmark's metric helpers (``python -m pytest benchmarks/worlds``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.worlds.scoring import (
    aggregate,
    best_threshold,
    binary_scores,
    membership_accuracy,
    pair_scores,
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
