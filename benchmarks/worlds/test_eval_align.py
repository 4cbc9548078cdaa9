"""Checks of ``benchmarks/eval_align.py``'s trained-preset figures on a hand-made answer
(``python -m pytest benchmarks/worlds``)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import eval_align as A
from splatnlp.mechinterp.demo.world import GroundTruth


def _case(same_feature_pairs):
    # Ultra 0: child of Full 0 tracking Full 0's concept (a same-concept pair, though Full 0 has
    # two children); 1: the one-child equivalent of Full 1; 2: a child of Full 0 on a finer
    # concept; 3: novel; 4: untracked (never scored).
    truth = GroundTruth(
        seed=0, preset="trained", full_class=["split", "equivalent"],
        ultra_class=["child", "equivalent", "child", "novel", "untracked"],
        ultra_parent=[0, 1, 0, None, None], ultra_parents=[[0], [1], [0], [], []],
        same_feature_pairs=same_feature_pairs, saes="trained", training={},
    )  # fmt: skip
    b = {
        "parent": np.array([0, 1, 0, -1, 0]),
        "class_label": np.array(["equivalent", "equivalent", "equivalent", "novel", "equivalent"]),
        "best_activation_correlation_index": np.array([0, 1, 0, 0, 0]),
        "best_activation_correlation_score": np.array([0.9, 0.95, 0.6, 0.1, 0.5]),
        "parent_score": np.array([0.9, 0.95, 0.6, np.nan, 0.5]),
        "nesting": np.array([0.9, 0.9, 0.9, np.nan, 0.9]),
        "rival_score": np.full(5, np.nan),
    }
    return SimpleNamespace(a={"class_label": np.array(["split_parent", "equivalent"])}, b=b), truth


def test_trained_scores_counts_equivalents_both_ways():
    tables, truth = _case([[0, 0], [1, 1]])
    got = A.trained_scores(tables, truth)
    # One-child truth: only (1, 1), against every predicted equivalent (0, 1, 2 and the untracked 4).
    assert got["equivalent_precision"] == pytest.approx(1 / 4) and got["equivalent_recall"] == 1.0
    # Per latent (the issue's): (0, 0) and (1, 1) are same-concept; 2 is a wrong equivalent and the
    # untracked 4 is not scored.
    assert got["equivalent_latent_precision"] == pytest.approx(2 / 3)
    assert got["equivalent_latent_recall"] == 1.0
    assert got["equivalent_latent_f1"] == pytest.approx(0.8)


def test_trained_scores_without_same_concept_pairs_leaves_the_per_latent_figures_empty():
    tables, truth = _case(None)  # a ground truth built before the pairs were kept
    got = A.trained_scores(tables, truth)
    assert got["equivalent_latent_f1"] is None and got["equivalent_latent_precision"] is None
