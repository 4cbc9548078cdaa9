"""Decomposition of one feature on several features of the other model: sparse NNLS.

The fit runs through the normal equations, so nothing dense of length ``n_examples`` is built.
"""

from __future__ import annotations

import numpy as np

__all__ = ["active_union", "nnls_sparse"]


def active_union(csc, columns: np.ndarray, n: int) -> np.ndarray:
    """bool (n,): the examples where any of the CSC columns ``columns`` is active (a mark per
    example, no sort). The decomposition's Gram block and its coverage both need it."""
    active = np.zeros(n, dtype=bool)
    for c in np.asarray(columns).tolist():
        active[csc.indices[int(csc.indptr[c]) : int(csc.indptr[c + 1])]] = True
    return active


def _gram(csc, columns: np.ndarray, n: int, active: np.ndarray | None = None) -> np.ndarray:
    """``X^T X`` (float64 (m, m)) of the CSC columns ``columns``, read straight from the CSC
    arrays into a dense float64 block over the examples where any of them is active
    (``active``, :func:`active_union`, when already known), then one matrix product. scipy's
    column slice, sparse product and densify cost ~4 ms of a ~10 ms Full -> Ultra query from the
    pair index at real scale. The block is (m, examples): each column's entries land in one
    contiguous row (4.1 -> 3.2 ms per split parent there, the same numbers)."""
    indptr, indices, data = csc.indptr, csc.indices, csc.data
    spans = [(int(indptr[c]), int(indptr[c + 1])) for c in np.asarray(columns).tolist()]
    union = np.flatnonzero(active_union(csc, columns, n) if active is None else active)
    position = np.empty(n, dtype=np.int64)
    position[union] = np.arange(len(union))
    block = np.zeros((len(spans), len(union)))
    for j, (a, b) in enumerate(spans):
        block[j, position[indices[a:b]]] = data[a:b]
    return block @ block.T


def nnls_sparse(
    csc,
    columns: np.ndarray,
    rows: np.ndarray,
    values: np.ndarray,
    n: int,
    *,
    xty: np.ndarray | None = None,
    column_sums: tuple[np.ndarray, np.ndarray] | None = None,
    active: np.ndarray | None = None,
    gram: np.ndarray | None = None,
) -> tuple[np.ndarray, float | None]:
    """Non-negative least squares of a centered sparse source on centered sparse target columns,
    through the normal equations so nothing dense of length n_examples is built.

    Parameters
    ----------
    csc : target codes, sparse (n, K_t), CSC
    columns : int array of shape (m,), the target columns to fit on
    rows, values : the source's active examples and its codes there, shape (k,)
    n : number of examples
    xty : float array of shape (m,), ``sum_n x_nj y_n`` of each column with the source when
        already known (the matcher's pair sums); None computes it from the codes
    column_sums : ``(sum_n x_nj, sum_n x_nj^2)``, float arrays of shape (m,), when known (the
        per-feature moments): with ``xty``, one column reads no codes at all and several read
        only their CSC arrays for the Gram matrix
    active : bool array of shape (n,), :func:`active_union` of ``columns`` when already known
        (the caller's coverage needs it too)
    gram : float64 array of shape (m, m), ``X^T X`` of the columns (uncentered) when already
        known (a pair index's children Gram matrices): with ``xty`` and ``column_sums`` the fit
        reads no codes at all

    Returns (weights (m,), R^2 or None when the source has zero variance).
    """
    # float64 throughout: a float32 Gram put ~2e-6 of error into the weights of a near-exact fit.
    values = np.asarray(values, dtype=np.float64)
    mu_y = float(values.sum()) / n
    if len(columns) == 1 and xty is not None and column_sums is not None:
        # One column with its sums known: its 1 x 1 Gram matrix is its sum of squares (half of an
        # Ultra->Full query from the pair index was reading the column to compute it).
        mu_x = np.asarray(column_sums[0], dtype=np.float64).reshape(1) / n
        gram = np.asarray(column_sums[1], dtype=np.float64).reshape(1, 1) - n * np.outer(mu_x, mu_x)
    elif xty is not None and column_sums is not None:
        mu_x = np.asarray(column_sums[0], dtype=np.float64) / n
        xtx = _gram(csc, columns, n, active) if gram is None else np.asarray(gram, dtype=np.float64)
        gram = xtx - n * np.outer(mu_x, mu_x)
    else:
        X = csc[:, columns].astype(np.float64)  # (n, m) sparse
        mu_x = np.asarray(X.sum(0)).ravel() / n
        gram = (X.T @ X).toarray() - n * np.outer(mu_x, mu_x)  # Xc^T Xc
    raw = np.asarray(X[rows].T @ values).ravel() if xty is None else np.asarray(xty, dtype=np.float64)
    xy = raw - n * mu_x * mu_y  # Xc^T yc
    sst = float(values @ values) - n * mu_y * mu_y
    if sst <= 0:
        return np.zeros(len(columns)), None
    # nnls wants min |A w - b|: with G = L L^T (Cholesky), A = L^T and b = L^-1 Xc^T yc give the
    # same objective up to a constant. A tiny ridge keeps G positive definite for collinear columns.
    ridge = 1e-9 * max(float(np.trace(gram)), 1e-12)
    if len(columns) == 1:
        # One column: the non-negative least-squares weight in closed form (the same objective),
        # which spares a one-off query the ~0.23 s import of scipy.linalg and scipy.optimize.
        weights = np.maximum(xy / (gram[0, 0] + ridge), 0.0)
    else:
        import scipy.linalg
        import scipy.optimize

        L = np.linalg.cholesky(gram + ridge * np.eye(len(columns)))
        b = scipy.linalg.solve_triangular(L, xy, lower=True)
        weights, _ = scipy.optimize.nnls(L.T, b)
    sse = sst - 2 * float(xy @ weights) + float(weights @ gram @ weights)
    return weights, max(0.0, 1.0 - sse / sst)
