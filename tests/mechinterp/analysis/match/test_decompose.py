"""nnls_sparse against scipy's NNLS on the dense centered codes, one column and several."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

from splatnlp.mechinterp.analysis.match.decompose import nnls_sparse


@pytest.mark.parametrize("columns", [[0], [3], [0, 1, 2], [1, 3]])
@pytest.mark.parametrize("xty", [False, True])
def test_nnls_sparse_is_dense_nnls(columns: list[int], xty: bool) -> None:
    rng = np.random.default_rng(len(columns))
    n = 400
    X = rng.random((n, 4)) * (rng.random((n, 4)) < 0.3)
    X[:, 3] = X[:, 0] * (rng.random(n) < 0.5)  # column 3 overlaps column 0
    y = 0.8 * X[:, 0] + 0.3 * X[:, 1] + 0.05 * rng.random(n) * (rng.random(n) < 0.2)
    y[X[:, 1] > 0.9] = 0.0
    csc = sp.csc_matrix(X)
    rows = np.flatnonzero(y > 0)
    cols = np.array(columns)
    raw = X[:, cols].T @ y if xty else None
    sums = (X[:, cols].sum(0), (X[:, cols] ** 2).sum(0))  # with xty: the Gram is read from the CSC arrays
    weights, r2 = nnls_sparse(csc, cols, rows, y[rows], n, xty=raw, column_sums=sums)
    Xc, yc = X[:, cols] - X[:, cols].mean(0), y - y.mean()
    want, _ = scipy.optimize.nnls(Xc, yc)
    np.testing.assert_allclose(weights, want, rtol=1e-6, atol=1e-9)
    assert r2 == pytest.approx(1 - np.sum((yc - Xc @ want) ** 2) / np.sum(yc**2), abs=1e-9)


def test_a_negatively_related_single_column_gets_weight_zero() -> None:
    n = 100
    x = np.zeros(n)
    x[:50] = 1.0
    y = np.zeros(n)
    y[50:] = 1.0  # active exactly where x is not
    weights, r2 = nnls_sparse(sp.csc_matrix(x[:, None]), np.array([0]), np.arange(50, 100), y[50:], n)
    assert weights.tolist() == [0.0] and r2 == pytest.approx(0.0, abs=1e-12)
