"""The sibling evidence of ``equivalent`` against a per-pair loop over dense codes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import float_tol

from splatnlp.mechinterp.analysis.metrics import siblings as SIB


def _brute(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """siblings_inside and inside_siblings by their definition, one pair at a time."""
    n, q = x.shape
    nest = np.full((q, q), np.nan)
    for u in range(q):
        rate = (x[:, u] > 0).mean()
        for v in range(q):
            w = x[:, v].astype(np.float64) ** SIB.SIBLING_POWER
            if u != v and w.sum() > 0 and rate < 1:
                share = w[x[:, u] > 0].sum() / w.sum()
                nest[u, v] = (share - rate) / (1 - rate)
    return np.array([np.nanmean(r) for r in nest]), np.array([np.nanmean(c) for c in nest.T])


def test_sibling_nesting_is_the_mean_chance_corrected_fourth_power_share() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((300, 5)) < 0.3) * rng.uniform(0.1, 2.0, (300, 5))
    inside, inside_of = SIB.sibling_nesting(sp.csc_matrix(x.astype(np.float32)), 300)
    want_in, want_of = _brute(x.astype(np.float32))
    # Shares of float64 sums over 300 examples, chance-corrected by 1 / (1 - rate) <= ~2.
    tol = float_tol(np.float64, 300, scale=2.0)
    np.testing.assert_allclose(inside, want_in, rtol=tol, atol=tol)
    np.testing.assert_allclose(inside_of, want_of, rtol=tol, atol=tol)


def test_a_feature_that_holds_its_siblings_is_inside_high_and_inside_of_low() -> None:
    """Feature 0 fires wherever 1 or 2 do (and more); 1 and 2 are apart: 0 holds them, they do not
    hold it or each other."""
    rng = np.random.default_rng(1)
    n = 2000
    on = rng.random(n) < 0.3
    part = rng.random(n) < 0.5
    x = np.zeros((n, 3))
    x[:, 0] = on * rng.uniform(0.5, 1.5, n)
    x[:, 1] = (on & part) * rng.uniform(0.5, 1.5, n)
    x[:, 2] = (on & ~part) * rng.uniform(0.5, 1.5, n)
    inside, inside_of = SIB.sibling_nesting(sp.csc_matrix(x), n)
    assert inside[0] > 0.95 and inside_of[0] < 0.5
    assert inside[1] < 0.5 and inside[2] < 0.5


def test_by_parent_groups_features_and_leaves_single_children_undefined() -> None:
    rng = np.random.default_rng(2)
    x = (rng.random((200, 6)) < 0.3) * rng.uniform(0.1, 2.0, (200, 6))
    parent = np.array([0, 1, 0, -1, 1, 2])
    inside, inside_of = SIB.sibling_nesting_by_parent(sp.csc_matrix(x), parent)
    for group in ([0, 2], [1, 4]):
        want = SIB.sibling_nesting(sp.csc_matrix(x[:, group]), 200)
        np.testing.assert_array_equal(inside[group], want[0])
        np.testing.assert_array_equal(inside_of[group], want[1])
    assert np.isnan(inside[[3, 5]]).all() and np.isnan(inside_of[[3, 5]]).all()
    # The first rows only: the same as the sliced codes.
    first = SIB.sibling_nesting_by_parent(sp.csc_matrix(x), parent, 120)
    np.testing.assert_array_equal(first[0][[0, 2]], SIB.sibling_nesting(sp.csc_matrix(x[:120][:, [0, 2]]), 120)[0])


def test_bad_inputs_name_the_value() -> None:
    x = sp.csc_matrix(np.ones((10, 3)))
    with pytest.raises(ValueError, match="columns have 10 rows; expected n_examples = 9"):
        SIB.sibling_nesting(x, 9)
    with pytest.raises(ValueError, match=r"parent has shape \(2,\); expected \(3,\)"):
        SIB.sibling_nesting_by_parent(x, np.array([0, 0]))
    with pytest.raises(ValueError, match="n_examples = 11; expected 1..10"):
        SIB.sibling_nesting_by_parent(x, np.array([0, 0, 0]), 11)
    # A feature active on every example has no chance level: NaN, not a number.
    inside, _ = SIB.sibling_nesting(x, 10)
    assert np.isnan(inside).all()


def test_from_the_compiled_sums_equals_the_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """align's path (the children pass's fourth-power sums over the rows) and the matcher's (each
    parent's children's columns) give the same evidence, to float64 rounding."""
    from splatnlp.mechinterp.analysis.metrics import kernels

    if not kernels.AVAILABLE:
        pytest.skip("needs numba")
    rng = np.random.default_rng(3)
    x = ((rng.random((400, 12)) < 0.3) * rng.uniform(0.1, 2.0, (400, 12))).astype(np.float32)
    small = ((rng.random((400, 4)) < 0.4) * 1.0).astype(np.float32)
    parent = np.array([0, 0, 0, 1, 1, -1, 2, 3, 3, 3, 3, -1])
    offsets, _, _, inside4 = kernels.children_gram(sp.csr_matrix(x), sp.csr_matrix(small), parent)
    from functools import partial

    from splatnlp.mechinterp.analysis.metrics import pairs

    monkeypatch.setattr(SIB, "column_power_sums", partial(pairs.column_power_sums, block=97))  # several blocks
    got = SIB.sibling_nesting_from_sums(offsets, inside4, sp.csr_matrix(x), parent, (x > 0).sum(axis=0))
    want = SIB.sibling_nesting_by_parent(sp.csc_matrix(x), parent)
    for g, w in zip(got, want, strict=True):
        tol = float_tol(np.float64, 400, scale=2.0)  # the two paths sum in different orders
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
        assert np.array_equal(np.isnan(g), np.isnan(w)) and np.isnan(g[[5, 6, 11]]).all()
