"""Checks of ``benchmarks/eval_worlds.py``'s summaries (``python -m pytest benchmarks/worlds``)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import eval_worlds as E


def _row(world: str, split: str, **values):
    row = {"world": world, "split": split, **{key: 1.0 for key, _, _ in E.TARGETS}}
    row.update(novel_f1=0.95, novel_devcut_f1=0.9, novel_oracle_f1=0.97)
    row.update(values)
    return row


def test_target_report_counts_test_worlds_only_and_names_the_lowest():
    rows = [
        _row("d", "dev", novel_f1=0.1),  # a dev world never counts
        _row("a", "test", novel_f1=0.85, novel_devcut_f1=0.9),
        _row("b", "test", split_dec_recall=None),  # undefined counts as not met
    ]
    lines = E.target_report(rows)
    assert lines[0] == "targets on the 2 test worlds:"
    assert "  novel F1 >= 0.9: 1 of 2 (lowest 0.850, a)" in lines
    assert "  split children recall >= 0.9: 1 of 2 (lowest n/a, b)" in lines
    assert "  top match = expected parent >= 0.99: 2 of 2 (lowest 1.000, a)" in lines
    assert "  novel F1 ahead of the dev-chosen threshold: 1 of 2" in lines
    assert "  novel F1 ahead of the best threshold per world: 0 of 2" in lines


def test_target_report_without_test_worlds():
    assert E.target_report([_row("d", "dev")]) == ["targets: no test world in this run"]


def test_apply_dev_threshold_scores_every_row_at_the_dev_cut():
    dev = {"world": "d", "split": "dev", "_novel_inputs": (np.array([0.1, 0.5]), np.array([True, False]))}
    test = {"world": "t", "split": "test", "_novel_inputs": (np.array([0.35, 0.6]), np.array([True, False]))}
    cut, source = E.apply_dev_threshold([dev, test])
    assert cut == pytest.approx(0.3)  # the first cut between the dev world's two values
    assert source == "chosen on the 1 dev worlds of this run"
    assert dev["novel_devcut_f1"] == 1.0 and "_novel_inputs" not in dev
    assert test["novel_devcut_f1"] == 0.0  # 0.35 is above the dev cut: called matched


def test_apply_dev_threshold_without_dev_worlds_uses_the_recorded_or_given_cut():
    def lone():
        return {"world": "t", "split": "test", "_novel_inputs": (np.array([0.2, 0.35]), np.array([True, False]))}

    row = lone()
    cut, source = E.apply_dev_threshold([row])
    assert cut == E.RECORDED_DEV_THRESHOLD and "none in this run" in source
    assert row["novel_devcut_f1"] == 1.0  # 0.2 < 0.2631 <= 0.35
    row = lone()
    assert E.apply_dev_threshold([row], 0.4) == (0.4, "given with --dev-threshold")
    assert row["novel_devcut_f1"] == pytest.approx(2 / 3)  # both called novel: P 1/2, R 1


def test_error_report_prints_each_world_s_counts_in_column_order():
    from benchmarks.worlds.anatomy import verdict_errors

    parent = np.array([-1, 0, 0, 1, -1, -1, 5])  # features: 0 -> {1, 2}, 1 -> {3}; 4; 5 -> {6}
    # Ultra 0: novel given Full 1 (tracks feature 6, another tree); Ultra 1: a child called novel.
    mixed = verdict_errors(
        ["novel", "child"], [[], [0]], np.array([1, -1]), np.array([3, 3]), np.array([1, 6]),
        np.array([True, True]), parent, ultra_feature_r=np.zeros((2, 7)), full_feature_r=np.zeros((2, 7)),
    )
    plain = verdict_errors(["novel"], [[]], np.array([0]), np.array([2]), np.array([1]), np.array([True]), parent)
    misses = {"novel": 0, "other_parent": 1, "ultra_duplicates": 2, "single": 3, "n_same_feature": 9, "n_called": 3}
    rows = [
        {"world": "w_test", "split": "test", "errors": plain, "equivalent_misses": misses},
        {"world": "w_dev", "split": "dev", "errors": mixed, "equivalent_misses": misses},
    ]
    lines = E.error_report(rows)
    dev, test = (next(line for line in lines if line.startswith(w)) for w in ("w_dev ", "w_test"))
    assert lines.index(dev) < lines.index(test)  # dev worlds first
    counts = [int(x) for x in dev.split("|")[1].split()]
    # untracked, path, descendant, relative, other_tree, ultra_mixes, full_mixes, unmixed
    assert counts == [0, 0, 0, 0, 1, 0, 0, 1]
    assert dev.split("|")[3].split() == ["1"]  # one child called novel
    # Without the true activations the mixture columns are "-"; feature 2's sibling is relative.
    assert test.split("|")[1].split() == ["0", "0", "0", "1", "0", "-", "-", "-"]
    eq = [line for line in lines if line.startswith("w_dev ")][1]
    assert eq.split("|")[1].split() == ["9", "3", "0", "1", "2", "3"]
