"""The compiled kernels against brute force (dense numpy) and their numpy fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import float_tol

from splatnlp.mechinterp.analysis.metrics import kernels
from splatnlp.mechinterp.analysis.metrics import pairs as M

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed")


def _codes(rng: np.random.Generator, n: int, k: int, density: float) -> sp.csr_matrix:
    dense = rng.random((n, k)).astype(np.float32) * (rng.random((n, k)) < density)
    return sp.csr_matrix(dense)


@pytest.mark.parametrize("shape", [(7, 5), (1, 9), (9, 1), (40, 300)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_best_of_rows_and_columns_is_argmax_without_nan(shape, dtype) -> None:
    rng = np.random.default_rng(sum(shape))
    m = rng.integers(0, 4, size=shape).astype(dtype)  # many ties: the lower index must win
    m[rng.random(shape) < 0.3] = np.nan
    m[rng.random(shape) < 0.1] = -np.inf
    m[0, :] = np.nan  # a row with nothing defined
    (ri, rv), (ci, cv) = kernels.best_of_rows_and_columns(m)
    for (idx, val), axis in (((ri, rv), 1), ((ci, cv), 0)):
        filled = np.where(np.isfinite(m), m, -np.inf)
        want = np.argmax(filled, axis=axis)
        best = np.max(filled, axis=axis)
        none = ~np.isfinite(best)
        np.testing.assert_array_equal(idx, np.where(none, -1, want))
        np.testing.assert_array_equal(val, np.where(none, np.nan, best))
    assert ri[0] == -1 and np.isnan(rv[0])


def test_accumulated_pair_sums_are_the_dense_products() -> None:
    rng = np.random.default_rng(0)
    a, b = _codes(rng, 300, 20, 0.2), _codes(rng, 300, 70, 0.1)
    dot = np.zeros((20, 70))
    co = np.zeros((20, 70), np.uint32)
    for s in range(0, 300, 64):  # blocks add up
        kernels.accumulate_pair_sums(a[s : s + 64], b[s : s + 64], dot, co)
    A, B = a.toarray().astype(np.float64), b.toarray().astype(np.float64)
    np.testing.assert_allclose(dot, A.T @ B, rtol=float_tol(np.float64, 300), atol=0)
    np.testing.assert_array_equal(co, (A > 0).astype(np.int64).T @ (B > 0))
    only = np.zeros((20, 70))
    kernels.accumulate_pair_sums(a, b, only, None)
    np.testing.assert_allclose(only, dot, rtol=float_tol(np.float64, 300), atol=0)


def test_accumulate_refuses_bad_accumulators() -> None:
    rng = np.random.default_rng(1)
    a, b = _codes(rng, 10, 3, 0.5), _codes(rng, 10, 4, 0.5)
    with pytest.raises(ValueError, match=r"dot must be a C-contiguous float64 array of shape \(3, 4\); got float32"):
        kernels.accumulate_pair_sums(a, b, np.zeros((3, 4), np.float32), None)
    with pytest.raises(ValueError, match=r"coactive must be .* got int8"):
        kernels.accumulate_pair_sums(a, b, np.zeros((3, 4)), np.zeros((3, 4), np.int8))
    with pytest.raises(ValueError, match="blocks have 10 and 9 rows"):
        kernels.accumulate_pair_sums(a, b[:9], np.zeros((3, 4)), None)


def test_compiled_one_against_all_equals_the_scipy_gather() -> None:
    rng = np.random.default_rng(2)
    target = _codes(rng, 9000, 50, 0.05)  # > 4,096 rows: the threads split them
    source = _codes(rng, 9000, 1, 0.6).tocsc()
    rows, values = source.indices, source.data
    want = M.pair_sums(rows, values, target, mass=True)
    got = M.pair_sums(rows, values, target, mass=True, compiled=True)
    np.testing.assert_allclose(got[0], want[0], rtol=float_tol(np.float64, len(rows)), atol=0)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[2], want[2], rtol=float_tol(np.float64, len(rows)), atol=0)


def test_columns_against_all_is_the_dense_product() -> None:
    rng = np.random.default_rng(4)
    dense, target = _codes(rng, 400, 30, 0.1).toarray(), _codes(rng, 400, 70, 0.2)
    dense[:, 5] = 0  # a column with no active example: a row of zeros
    source = sp.csc_matrix(dense)
    cols = np.array([5, 0, 29, 0, 17])  # any order, repeats allowed
    got = kernels.columns_against_all(source, cols, target)
    want = source.toarray().astype(np.float64)[:, cols].T @ target.toarray().astype(np.float64)
    assert got.shape == (5, 70) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=float_tol(np.float64, 400), atol=0)
    assert not got[0].any()
    assert kernels.columns_against_all(source, np.array([], dtype=np.int64), target).shape == (0, 70)
    with pytest.raises(ValueError, match="codes have 400 and 399 examples"):
        kernels.columns_against_all(source, cols, target[:399])


def test_compiled_inside_mass_equals_the_numpy_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    large, small = _codes(rng, 500, 60, 0.1), _codes(rng, 500, 8, 0.3)
    cand = rng.integers(-1, 8, size=60)
    got = M.inside_mass(large, small, cand)
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    want = M.inside_mass(large, small, cand)
    for name in ("inside", "total", "total_sq", "co_count", "co_sums"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12, atol=0, equal_nan=True)
    L, S = large.toarray().astype(np.float64), small.toarray() > 0
    brute = np.array([L[S[:, c], u].sum() if c >= 0 else np.nan for u, c in enumerate(cand)])
    np.testing.assert_allclose(got.inside, brute, rtol=1e-12, atol=0, equal_nan=True)


def test_children_gram_is_each_parents_dense_product() -> None:
    # Parents with no child, one child, several; children with no parent (-1); rows with several
    # children of one parent active at once (density 0.4), and empty rows.
    rng = np.random.default_rng(3)
    dense = sp.random(150, 40, density=0.4, random_state=4, dtype=np.float32).toarray()
    dense[:5] = 0
    small = sp.random(150, 9, density=0.5, random_state=5, dtype=np.float32).toarray()
    parent = rng.integers(-1, 6, 40)
    parent[7] = 8  # a parent of one child; 6 and 7 have none
    offsets, gram, covered, inside4 = kernels.children_gram(sp.csr_matrix(dense), sp.csr_matrix(small), parent)
    x = dense.astype(np.float64)
    assert offsets.shape == (10,) and offsets[-1] == len(gram) and covered.shape == (9,)
    for s in range(9):
        children = np.flatnonzero(parent == s)
        q = len(children)
        want = x[:, children].T @ x[:, children]
        # Sums of non-negative products: relative error of a float64 sum over the 150 examples.
        got = gram[offsets[s] : offsets[s + 1]].reshape(q, q)
        np.testing.assert_allclose(got, want, rtol=float_tol(np.float64, len(x)), atol=0)
        assert covered[s] == int(((small[:, s] > 0) & (dense[:, children] > 0).any(axis=1)).sum())
        # Child j's fourth power where child i is active (off the diagonal: the sibling sums).
        c = x[:, children]
        want4 = (c > 0).astype(np.float64).T @ c**4
        got4 = inside4[offsets[s] : offsets[s + 1]].reshape(q, q)
        off = ~np.eye(q, dtype=bool)
        np.testing.assert_allclose(got4[off], want4[off], rtol=float_tol(np.float64, len(x)), atol=0)
    with pytest.raises(ValueError, match=r"parent has shape \(3,\)"):
        kernels.children_gram(sp.csr_matrix(dense), sp.csr_matrix(small), parent[:3])
    with pytest.raises(ValueError, match="parent holds 8; the smaller side has 5 features"):
        kernels.children_gram(sp.csr_matrix(dense), sp.csr_matrix(small[:, :5]), parent)


def test_children_gram_without_numba_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    codes = sp.csr_matrix(np.ones((2, 3), np.float32))
    with pytest.raises(RuntimeError, match="children_gram needs numba: pip install numba"):
        kernels.children_gram(codes, codes[:, :1], np.zeros(3, np.int64))
