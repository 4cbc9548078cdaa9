"""Tests of splatnlp/mechinterp/analysis/metrics.py: every pair metric against a dense numpy
brute force on small random sparse codes (dead, rare and constant columns included)."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import assert_close_f32, float_tol

from splatnlp.mechinterp.analysis.metrics import pairs as M

N, N_SOURCE, N_TARGET = 300, 7, 40
DEAD, RARE, CONSTANT = 3, 5, 7  # special target columns
SOURCE_DEAD = 0


@pytest.fixture(scope="module")
def codes() -> tuple[np.ndarray, np.ndarray]:
    """Dense float64 source (300, 7) and target (300, 40) codes, ~10% dense, non-negative.

    Target column 3 is dead, 5 is active on 2 examples, 7 is 0.5 everywhere; source column 0 is
    dead and source 1 is a copy of target 11 (so some pairs are perfectly correlated)."""
    rng = np.random.default_rng(0)
    src = np.where(rng.random((N, N_SOURCE)) < 0.1, rng.random((N, N_SOURCE)), 0.0)
    tgt = np.where(rng.random((N, N_TARGET)) < 0.1, rng.random((N, N_TARGET)), 0.0)
    src[:, SOURCE_DEAD] = 0.0
    tgt[:, DEAD] = 0.0
    tgt[:, RARE] = 0.0
    tgt[[4, 250], RARE] = [0.7, 0.2]
    tgt[:, CONSTANT] = 0.5
    src[:, 1] = tgt[:, 11]
    # float32 like stored codes; the brute force then works on exactly the same numbers.
    return src.astype(np.float32).astype(np.float64), tgt.astype(np.float32).astype(np.float64)


def _corrcoef(a: np.ndarray, b: np.ndarray) -> float:
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.corrcoef(a, b)[0, 1])


def test_moments_from_csc_match_dense(codes) -> None:
    _, tgt = codes
    mom = M.Moments.from_csc(sp.csc_matrix(tgt))
    assert mom.n_examples == N
    np.testing.assert_array_equal(mom.count, (tgt > 0).sum(0))
    assert mom.count.dtype == np.int64
    np.testing.assert_allclose(mom.mean, tgt.mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mom.std, tgt.std(0), rtol=1e-10, atol=1e-12)
    assert mom.count[DEAD] == 0 and mom.mean[DEAD] == 0 and mom.std[DEAD] == 0
    assert mom.count[RARE] == 2
    assert mom.count[CONSTANT] == N and mom.mean[CONSTANT] == 0.5 and mom.std[CONSTANT] == 0.0


def test_moments_do_not_count_explicit_zeros() -> None:
    csc = sp.csc_matrix(
        (np.array([0.0, 2.0, 1.0]), np.array([0, 1, 2]), np.array([0, 2, 3])), shape=(4, 2)
    )
    assert csc.nnz == 3  # the explicit zero is stored
    mom = M.Moments.from_csc(csc)
    np.testing.assert_array_equal(mom.count, [1, 1])
    np.testing.assert_allclose(mom.mean, [0.5, 0.25])


def test_pair_sums_match_dense(codes) -> None:
    src, tgt = codes
    csc, csr = sp.csc_matrix(src.astype(np.float32)), sp.csr_matrix(tgt.astype(np.float32))
    for f in range(N_SOURCE):
        rows = csc.indices[csc.indptr[f] : csc.indptr[f + 1]]
        values = csc.data[csc.indptr[f] : csc.indptr[f + 1]]
        dot, coactive = M.pair_sums(rows, values, csr)
        assert dot.shape == coactive.shape == (N_TARGET,)
        assert dot.dtype == np.float64 and coactive.dtype == np.int64
        np.testing.assert_allclose(dot, src[:, f] @ tgt, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(coactive, ((src[:, f] > 0)[:, None] & (tgt > 0)).sum(0))
    dot, coactive = M.pair_sums(np.zeros(0, np.int64), np.zeros(0, np.float32), csr)
    np.testing.assert_array_equal(dot, np.zeros(N_TARGET))
    np.testing.assert_array_equal(coactive, np.zeros(N_TARGET))


def test_pearson_matches_corrcoef_over_all_examples(codes) -> None:
    src, tgt = codes
    ms, mt = M.Moments.from_csc(sp.csc_matrix(src)), M.Moments.from_csc(sp.csc_matrix(tgt))
    n_defined = 0
    for f in range(N_SOURCE):
        r = M.pearson(src[:, f] @ tgt, N, ms.mean[f], ms.std[f], mt.mean, mt.std)
        expected = np.array([_corrcoef(src[:, f], tgt[:, t]) for t in range(N_TARGET)])
        np.testing.assert_allclose(r, expected, rtol=1e-9, atol=1e-12)  # NaN where corrcoef is
        n_defined += np.isfinite(r).sum()
        assert np.isnan(r[[DEAD, CONSTANT]]).all()
    assert np.isnan(M.pearson(src[:, 0] @ tgt, N, 0.0, 0.0, mt.mean, mt.std)).all()
    assert n_defined == (N_SOURCE - 1) * (N_TARGET - 2)


def test_pearson_of_a_feature_with_itself_is_clipped_to_one(codes) -> None:
    src, tgt = codes
    ms, mt = M.Moments.from_csc(sp.csc_matrix(src)), M.Moments.from_csc(sp.csc_matrix(tgt))
    r = M.pearson(src[:, 1] @ tgt, N, ms.mean[1], ms.std[1], mt.mean, mt.std)
    assert r[11] == pytest.approx(1.0, abs=1e-12) and r[11] <= 1.0
    # Rounding past 1 is clipped: a scaled-up covariance stays at exactly 1.
    assert M.pearson(np.array([2.0]), 1, 0.0, 1.0, np.array([0.0]), np.array([1.0]))[0] == 1.0
    assert M.pearson(np.array([-2.0]), 1, 0.0, 1.0, np.array([0.0]), np.array([1.0]))[0] == -1.0


def test_containment_matches_dense(codes) -> None:
    src, tgt = codes
    for f in range(N_SOURCE):
        s_on = src[:, f] > 0
        coactive = (s_on[:, None] & (tgt > 0)).sum(0)
        count_t = (tgt > 0).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.testing.assert_allclose(
                M.containment(coactive, int(s_on.sum())), coactive / s_on.sum(), rtol=1e-15
            )
            np.testing.assert_allclose(
                M.containment(coactive, count_t), coactive / count_t, rtol=1e-15
            )
    p = M.containment(np.zeros(N_TARGET, np.int64), 0)
    assert np.isnan(p).all()
    p = M.containment(np.array([0, 1, 2]), np.array([0, 4, 2]))
    np.testing.assert_array_equal(p, [np.nan, 0.25, 1.0])


def test_coactivation_jaccard_matches_sets(codes) -> None:
    src, tgt = codes
    for f in range(N_SOURCE):
        s_set = set(np.flatnonzero(src[:, f]).tolist())
        coactive = ((src[:, f] > 0)[:, None] & (tgt > 0)).sum(0)
        got = M.coactivation_jaccard(coactive, len(s_set), (tgt > 0).sum(0))
        for t in range(N_TARGET):
            t_set = set(np.flatnonzero(tgt[:, t]).tolist())
            union = s_set | t_set
            if union:
                assert got[t] == pytest.approx(len(s_set & t_set) / len(union), abs=1e-15)
            else:
                assert np.isnan(got[t])
    # A dead source against a dead target is the only undefined case (0/0).
    assert np.isnan(M.coactivation_jaccard(np.array([0]), 0, np.array([0])))[0]
    assert M.coactivation_jaccard(np.array([0]), 0, np.array([3]))[0] == 0.0


def test_set_jaccard_matches_python_sets() -> None:
    rng = np.random.default_rng(1)
    n_tokens = 30
    sets = [rng.choice(n_tokens, size=int(rng.integers(0, 8)), replace=False) for _ in range(25)]
    sets[3] = np.zeros(0, np.int64)
    sets[4] = np.zeros(0, np.int64)
    lengths = [len(s) for s in sets]
    matrix = sp.csr_matrix(
        (np.ones(sum(lengths)), np.concatenate(sets), np.concatenate([[0], np.cumsum(lengths)])),
        shape=(len(sets), n_tokens),
    )
    for source, by_token in itertools.product((sets[0], sets[7], np.zeros(0, np.int64)), (None, matrix.tocsc())):
        jac, inter = M.set_jaccard(source, matrix, by_token=by_token)
        assert inter.dtype == np.int64
        for t, other in enumerate(sets):
            a, b = set(source.tolist()), set(other.tolist())
            assert inter[t] == len(a & b)
            if a | b:
                assert jac[t] == pytest.approx(len(a & b) / len(a | b), abs=1e-15)
            else:
                assert np.isnan(jac[t])
    jac, _ = M.set_jaccard(sets[0], matrix)
    assert jac[0] == 1.0
    # The column path gives the same array, and a token listed twice counts once in both paths.
    twice = np.concatenate([sets[7], sets[7][:1]])
    for source in (sets[7], twice):
        np.testing.assert_array_equal(
            M.set_jaccard(source, matrix, by_token=matrix.tocsc())[1], M.set_jaccard(source, matrix)[1]
        )


def test_unit_rows_and_cosine_rows_match_float64() -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 5))
    b = rng.standard_normal((9, 5))
    a[2] = 0.0
    b[4] = 0.0
    b[5] = 3.0 * a[0]  # parallel: cosine exactly 1 after clipping
    ua, ub = M.unit_rows(a), M.unit_rows(b)
    assert ua.dtype == np.float32 and ub.shape == (9, 5)
    tol = float_tol(np.float32, 5)  # float32 unit rows, norms and dot products over 5 terms
    np.testing.assert_allclose(np.linalg.norm(ub[[0, 1, 2, 3, 5, 6, 7, 8]], axis=1), 1.0, rtol=tol)
    assert np.isnan(ua[2]).all() and np.isnan(ub[4]).all()
    for i in range(6):
        cos = M.cosine_rows(ua[i], ub)
        assert cos.dtype == np.float64
        norms = np.linalg.norm(a[i]) * np.linalg.norm(b, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = np.where(norms > 0, b @ a[i] / norms, np.nan)
        assert_close_f32(cos, expected, 5)  # float32 directions; NaN where expected is
        assert np.all(np.abs(cos[np.isfinite(cos)]) <= 1.0)
    assert np.isnan(M.cosine_rows(ua[2], ub)).all()  # a zero source vector: every cosine is NaN
    assert M.cosine_rows(ua[0], ub)[5] == pytest.approx(1.0, abs=tol)


def test_inside_mass_and_pair_sums_mass_match_a_dense_loop() -> None:
    rng = np.random.default_rng(7)
    large = sp.random(300, 12, density=0.2, random_state=3, format="csr", dtype=np.float32)
    small = sp.random(300, 5, density=0.3, random_state=4, format="csr", dtype=np.float32)
    candidate = rng.integers(-1, 5, size=12)
    got = M.inside_mass(large, small, candidate, chunk_size=37)
    L, S = large.toarray().astype(np.float64), small.toarray() > 0
    for u in range(12):
        assert got.total[u] == pytest.approx(L[:, u].sum()) and got.total_sq[u] == pytest.approx((L[:, u] ** 2).sum())
        if candidate[u] < 0:
            assert np.isnan(got.inside[u])
        else:
            assert got.inside[u] == pytest.approx(L[S[:, candidate[u]], u].sum())
            rows = np.flatnonzero(L[:, u] > 0)
            one = M.inside_mass_of(rows, L[rows, u], np.flatnonzero(S[:, candidate[u]]))
            assert one == pytest.approx((got.inside[u], got.total[u], got.total_sq[u]))
    # From the small side: every large feature's mass over one small feature's examples.
    rows = np.flatnonzero(S[:, 2])
    dot, coactive, mass = M.pair_sums(rows, small.toarray()[rows, 2], large, mass=True)
    np.testing.assert_allclose(mass, L[rows].sum(0), rtol=1e-6)
    np.testing.assert_array_equal(coactive, (L[rows] > 0).sum(0))
    with pytest.raises(ValueError, match="do not line up"):
        M.inside_mass(large, small[:10], candidate)


def test_coactive_correlation_matches_np_corrcoef_over_the_examples_where_both_fire() -> None:
    rng = np.random.default_rng(11)
    large = sp.random(400, 10, density=0.3, random_state=5, format="csr", dtype=np.float32)
    small = sp.random(400, 4, density=0.5, random_state=6, format="csr", dtype=np.float32)
    candidate = rng.integers(-1, 4, size=10)
    candidate[0] = 1
    got = M.inside_mass(large, small, candidate, chunk_size=53)
    L, S = large.toarray().astype(np.float64), small.toarray().astype(np.float64)
    for u in range(10):
        c = candidate[u]
        if c < 0:
            assert got.co_count[u] == 0 and np.isnan(got.coactive_correlation[u])
            continue
        both = (L[:, u] > 0) & (S[:, c] > 0)
        assert got.co_count[u] == both.sum()
        want = np.corrcoef(L[both, u], S[both, c])[0, 1] if both.sum() >= 3 else np.nan
        # One-pass float64 sums against numpy's two-pass form: their rounding, amplified by the
        # cancellation of sum x^2 - (sum x)^2 / n (a factor mean^2 / var, ~3 for these codes).
        tol = float_tol(np.float64, max(int(both.sum()), 1), scale=10.0)
        assert got.coactive_correlation[u] == pytest.approx(want, rel=tol, nan_ok=True)
        # The one-pair form the matcher uses gives the same number.
        r, n = M.coactive_of(np.flatnonzero(L[:, u]), L[L[:, u] > 0, u], np.flatnonzero(S[:, c]), S[S[:, c] > 0, c])
        assert n == both.sum() and r == pytest.approx(want, rel=tol, nan_ok=True)
    # Fewer than 3 co-active examples, or a constant code there: undefined, not a number.
    assert np.isnan(M.coactive_pearson(2, 1.0, 1.0, 1.0, 1.0, 1.0))
    assert np.isnan(M.coactive_pearson(5, 5.0, 3.0, 5.0, 2.0, 3.0))  # x == 1 on all five


def test_coactive_lower_bound_is_fisher_z_with_bonferroni() -> None:
    from scipy.stats import norm

    from splatnlp.mechinterp.analysis.metrics import verdicts as V

    r, n = 0.9, 103
    for k in (1, 24_576):
        z = norm.ppf(1 - 0.05 / k)
        assert V.coactive_lower_bound(r, n, n_tests=k) == pytest.approx(np.tanh(np.arctanh(r) - z / 10.0), rel=1e-12)
    assert V.coactive_lower_bound(r, n, n_tests=24_576) < V.coactive_lower_bound(r, n)  # wider over more tests
    assert np.isnan(V.coactive_lower_bound(np.nan, 50)) and np.isnan(V.coactive_lower_bound(0.9, 3))
    # equivalent_by names the first test that passes, in the documented order.
    by = V.equivalent_by([0.95, 0.6, 0.6, 0.6], [0.9, 0.1, 0.1, 0.1], coactive_lower=[0.9, 0.8, 0.7, np.nan])
    assert by.tolist() == ["decoder_cosine", "coactive_correlation", "", ""]
    assert V.equivalent_by([0.4], [0.1], coactive_lower=[0.99]).tolist() == [""]  # r below 0.5


def test_column_power_sums_in_blocks_equal_the_dense_sums() -> None:
    x = sp.random(300, 40, density=0.1, format="csr", random_state=2, dtype=np.float32)
    dense = x.toarray().astype(np.float64)
    for power in (2, 4):
        np.testing.assert_allclose(M.column_power_sums(x, power, block=7), (dense**power).sum(0), rtol=float_tol(np.float64, 300))
    with pytest.raises(ValueError, match=r"power = 3; expected 2 or 4"):
        M.column_power_sums(x, 3)
