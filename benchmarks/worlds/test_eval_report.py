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
    assert row["novel_devcut_f1"] == 1.0  # 0.2 < 0.2653 <= 0.35
    row = lone()
    assert E.apply_dev_threshold([row], 0.4) == (0.4, "given with --dev-threshold")
    assert row["novel_devcut_f1"] == pytest.approx(2 / 3)  # both called novel: P 1/2, R 1
