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


def _variant_world():
    """Three trees (0 -> {1, 2}; 3 -> {4}; 5) with Full latents tracking 1, 2 and 4, and Ultra
    latents: 0-1 children of Full 0, 2 a child of Full 1, 3 novel on root 0 (above Full 0 and 1),
    4 novel on root 5 (its candidate Full 0 mixes with it), 5 untracked."""
    gt = {
        "ultra": {
            "category": ["child", "child", "child", "novel", "novel", "untracked"],
            "expected_parents": [[0], [0], [1], None, None, None],
            "best_feature": [1, 1, 2, 0, 5, 1],
        },
        "full": {"best_feature": [1, 2, 4], "tracks": [True, True, True]},
        "true_features": {"parent": [-1, 0, 0, -1, 3, -1]},
    }
    category = np.array(gt["ultra"]["category"])
    scored = np.flatnonzero((category == "child") | (category == "novel"))
    ultra_class = np.array(["split_child", "split_child", "novel", "novel", "split_child", "split_child"])
    parent = np.array([0, 1, -1, -1, 0, 2])
    top_index = np.array([0, 1, 1, 0, 0, 2])
    top_score = np.array([0.9, 0.5, 0.25, 0.4, 0.6, 0.3])
    ur, fr = np.zeros((6, 6)), np.zeros((3, 6))
    fr[0, 5] = 0.5  # Full 0 also fires on Ultra 4's feature 5
    return gt, ultra_class, parent, top_index, top_score, scored, {"ultra_feature_r": ur, "full_feature_r": fr}


def test_truth_variant_scores_issue_reading_is_the_tables_truth_and_others_forgive():
    gt, ultra_class, parent, top_index, top_score, scored, mixes = _variant_world()
    got = E.truth_variant_scores(gt, ultra_class, parent, top_index, top_score, scored, mixes)
    assert list(got) == ["issue", "absorbed", "mixed", "both"]
    issue = got["issue"]
    # Children 0, 1, 2: parents 0 (right), 1 (wrong), none; top 0, 1, 1: right, wrong, right.
    assert issue["parent_ours"] == pytest.approx(1 / 3) and issue["parent_top_match"] == pytest.approx(2 / 3)
    # Novel: truth [F, F, F, T, T], ours [F, F, T, T, F]: one TP, one FP, one FN.
    assert issue["novel_f1"] == pytest.approx(0.5) and issue["n_scored_novel"] == 5
    # Absorbed: Ultra 3's root 0 is above Full 0 and Full 1, so it is a child and ours calling it
    # novel is wrong; its parent counts as acceptable for the top correlation (Full 0).
    absorbed = got["absorbed"]
    assert absorbed["n_novel"] == 1 and absorbed["novel_f1"] == pytest.approx(0.0)
    assert absorbed["parent_top_match"] == pytest.approx(3 / 4) and absorbed["parent_ours"] == pytest.approx(1 / 4)
    # Mixed: Ultra 4's candidate Full 0 fires on its feature: it leaves the novel scores.
    mixed = got["mixed"]
    assert mixed["n_scored_novel"] == 4 and mixed["n_novel"] == 1
    assert mixed["novel_f1"] == pytest.approx(2 / 3)
    assert "mixed" not in E.truth_variant_scores(gt, ultra_class, parent, top_index, top_score, scored, {})


def test_apply_variant_thresholds_chooses_each_readings_cut_on_dev_and_reports_means():
    gt, ultra_class, parent, top_index, top_score, scored, mixes = _variant_world()
    rows = [
        {"world": w, "split": split, "truth_variants": E.truth_variant_scores(gt, ultra_class, parent, top_index, top_score, scored, mixes)}
        for w, split in (("d", "dev"), ("t", "test"))
    ]
    cuts = E.apply_variant_thresholds(rows)
    assert set(cuts) == set(E.TRUTH_VARIANTS)
    for r in rows:
        for v in r["truth_variants"].values():
            assert "_novel_inputs" not in v
            assert v["novel_devcut_f1"] is not None or v["n_novel"] == 0  # F1 is undefined without novels
    # Issue reading: novels at r 0.4 and 0.6, children at 0.25, 0.5, 0.9: no single cut gets both.
    assert rows[0]["truth_variants"]["issue"]["novel_devcut_f1"] < 1.0
    lines = E.variant_report(rows, cuts)
    assert lines[1].split()[:3] == ["reading", "split", "novel"]
    assert any(line.startswith("mixed     test") for line in lines)
    # Without a dev world no cut is chosen, and the baseline column stays empty.
    lone = [{"world": "t", "split": "test", "truth_variants": E.truth_variant_scores(gt, ultra_class, parent, top_index, top_score, scored, mixes)}]
    assert set(E.apply_variant_thresholds(lone).values()) == {None}
    assert lone[0]["truth_variants"]["issue"]["novel_devcut_f1"] is None


def test_rival_counts_and_report_pool_parent_verdicts_by_level_and_rival():
    category = np.array(["child", "child", "novel", "child", "untracked"])
    expected = [[0], [1], None, [2], None]
    parent = np.array([0, 0, 1, -1, 0])  # right, wrong, a novel given a parent, none, unscored
    flagged = np.array([True, False, True, False, True])
    level = ["high", "low", "low", "low", "low"]
    got = E.rival_counts(category, expected, parent, flagged, level)
    assert got == {"high rival": [1, 1], "low none": [0, 1], "low rival": [0, 1]}
    lines = E.rival_report([{"world": "d", "split": "dev", "rival": got}])
    assert lines[1] == (
        "  dev   high rival 1.000 n=1 | high none - n=0 | low rival 0.000 n=1 | low none 0.000 n=1 "
        "| all: rival 0.500 n=2, none 0.000 n=1"
    )
