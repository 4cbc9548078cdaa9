"""Proportionality of a feature to its parent, against brute force over dense columns."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import float_tol

from splatnlp.mechinterp.analysis.metrics import pairs as M
from splatnlp.mechinterp.analysis.metrics import proportionality as P


def _dense(u: np.ndarray, p: np.ndarray) -> float:
    on = p > 0
    return float(np.dot(u[on], p[on]) ** 2 / (np.dot(p, p) * np.dot(u[on], u[on])))


def _proportionality_of(u: np.ndarray, p: np.ndarray) -> float:
    """As the matcher computes it for one pair: the co-active sums of the two codes' active rows."""
    ur, pr = np.flatnonzero(u), np.flatnonzero(p)
    sums = M.coactive_sums_of(ur, u[ur], pr, p[pr])
    return float(P.proportionality(sums[5], sums[3], np.square(p[pr], dtype=np.float64).sum()))


def test_proportionality_is_the_squared_cosine_on_the_parent_examples() -> None:
    rng = np.random.default_rng(0)
    n = 500
    p = ((rng.random(n) < 0.3) * rng.uniform(0.2, 2.0, n)).astype(np.float32)
    for u in (
        (rng.random(n) < 0.2) * rng.uniform(0.2, 2.0, n),  # unrelated
        np.where(p > 0, 0.7 * p, (rng.random(n) < 0.5) * 3.0),  # a multiple where p fires: 1, whatever elsewhere
        (p > 0) * (rng.random(n) < 0.3) * rng.uniform(0.2, 2.0, n),  # a part
    ):
        u = u.astype(np.float32)
        got = _proportionality_of(u, p)
        assert got == pytest.approx(_dense(u.astype(np.float64), p.astype(np.float64)), rel=float_tol(np.float64, n))
    multiple = np.where(p > 0, 0.7 * p, 1.0).astype(np.float32)
    # Each u = fl(0.7 p) is one float32 rounding off an exact multiple.
    assert _proportionality_of(multiple, p) == pytest.approx(1.0, abs=float_tol(np.float32, 1))
    # No example where both fire: undefined.
    assert np.isnan(P.proportionality(0.0, 0.0, 4.0))
    assert P.proportionality(2.0 + 1e-15, 1.0, 4.0) <= 1.0  # rounding is clipped


def test_sibling_median_is_the_median_of_the_others_with_the_same_parent() -> None:
    values = np.array([0.9, 0.1, 0.3, 0.5, 0.7, np.nan, 0.2])
    parent = np.array([0, 0, 0, 1, -1, 1, 2])
    got = P.sibling_median(values, parent)
    want = [np.median([0.1, 0.3]), np.median([0.9, 0.3]), np.median([0.9, 0.1]), np.nan, np.nan, 0.5, np.nan]
    np.testing.assert_allclose(got, want)  # NaN siblings skipped; no sibling or no parent: NaN
    np.testing.assert_allclose(P.others_median(np.array([1.0, 2.0, 4.0])), [3.0, 2.5, 1.5])


def test_bad_inputs_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"values have shape \(2,\), parent \(3,\)"):
        P.sibling_median(np.zeros(2), np.zeros(3, np.int64))
