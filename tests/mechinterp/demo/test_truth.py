"""Ground truth of trained SAEs (splatnlp/mechinterp/demo/truth.py) against brute force and a
hand-made hierarchy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from splatnlp.mechinterp.demo import truth as T


def test_best_features_is_the_brute_force_argmax_correlation() -> None:
    rng = np.random.default_rng(0)
    features = sp.random(400, 9, density=0.2, random_state=1, format="csr")
    codes = np.zeros((400, 6))
    codes[:, :5] = features[:, :5].toarray() * rng.uniform(0.5, 2, 5) + 0.3 * rng.random((400, 5))
    got = T.best_features(codes, features, chunk=4)
    for j in range(5):
        r = [np.corrcoef(codes[:, j], features[:, f].toarray().ravel())[0, 1] for f in range(9)]
        assert got.best_feature[j] == int(np.argmax(r))
        assert got.best_r[j] == pytest.approx(max(r), abs=1e-9)
    assert got.dead[5] and got.best_feature[5] == -1 and np.isnan(got.best_r[5])
    with pytest.raises(ValueError, match="codes have 3 examples, features 400"):
        T.best_features(codes[:3], features)


def _truth(best: list[int], r: list[float]) -> T.LatentTruth:
    best_r = np.array(r, dtype=float)
    return T.LatentTruth(best_feature=np.array(best), best_r=best_r, dead=np.isnan(best_r))


def test_expected_relations_walk_up_to_the_first_tracked_ancestor() -> None:
    # Forest: 0 -> {1, 2}, 1 -> {3}; 4 is a root nobody small tracks; 5 a separate root.
    parent = np.array([-1, 0, 0, 1, -1, -1])
    full = _truth([0, 5, 2], [0.9, 0.8, 0.3])  # latent 2 tracks nothing (r < 0.5)
    ultra = _truth([1, 3, 2, 4, 5, 0, 0], [0.7, 0.6, 0.9, 0.8, 0.95, 0.2, np.nan])
    rel = T.expected_relations(full, ultra, parent)
    assert rel["expected_parents"] == [[0], [0], [0], [], [1], None, None]
    assert rel["category"] == ["child", "child", "child", "novel", "child", "untracked", "dead"]
    assert rel["expected_split"] == [[0, 1, 2], [4], []]
    assert rel["split_pairs"] == [[0, 0], [0, 1], [0, 2]]
    assert rel["same_feature_pairs"] == [[1, 4]]
    assert rel["equivalent_pairs"] == [[1, 4]]  # one expected child, tracking the same feature
    assert T.ancestors(parent, 3) == [3, 1, 0]
