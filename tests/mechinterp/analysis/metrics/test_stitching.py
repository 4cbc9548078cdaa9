"""The stitching test against a brute-force loop over each latent's active examples."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import float_tol

from splatnlp.mechinterp.analysis.metrics.stitching import (
    decoder_contributions,
    residuals,
    stitching_test,
)

N, D, K_SMALL, K_LARGE = 300, 12, 6, 25


def _world(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, D)).astype(np.float32)
    small = sp.random(N, K_SMALL, density=0.3, random_state=seed, format="csr", dtype=np.float32)
    large = sp.random(N, K_LARGE, density=0.15, random_state=seed + 1, format="csc", dtype=np.float32)
    w_small = rng.standard_normal((K_SMALL, D)).astype(np.float32)
    b = rng.standard_normal(D).astype(np.float32)
    w_large = rng.standard_normal((K_LARGE, D)).astype(np.float32)
    return x, small, large, w_small, b, w_large


def _brute(x, small, large, w_small, b, w_large, rows_of):
    """For each large latent: the smaller SAE's squared error on its examples, with and without
    the latent's contribution added, summed example by example in float64."""
    recon = small.toarray().astype(np.float64) @ w_small + b
    a = large.toarray().astype(np.float64)
    delta, base = np.full(K_LARGE, np.nan), np.full(K_LARGE, np.nan)
    for j in range(K_LARGE):
        rows = rows_of(j)
        if not len(rows):
            continue
        before = ((x[rows] - recon[rows]) ** 2).sum()
        after = ((x[rows] - recon[rows] - np.outer(a[rows, j], w_large[j])) ** 2).sum()
        delta[j], base[j] = after - before, before
    return delta, base


def test_exact_stitching_matches_brute_force() -> None:
    x, small, large, w_small, b, w_large = _world()
    residual = residuals(x, small, lambda c, _x: c @ w_small + b, chunk_size=64)
    got = stitching_test(residual, large, w_large, block_entries=37)
    dense = large.toarray()
    delta, base = _brute(x, small, large, w_small, b, w_large, lambda j: np.flatnonzero(dense[:, j] > 0))
    # float32 residuals and dot products over D terms; scale: the summed squared errors.
    tol = float_tol(np.float32, D * N) * np.nanmax(base)
    np.testing.assert_allclose(got.delta_sse, delta, atol=tol, rtol=0)
    np.testing.assert_allclose(got.base_sse, base, atol=tol, rtol=0)
    np.testing.assert_allclose(got.gain, -delta / base, atol=tol / np.nanmin(base), rtol=0)
    np.testing.assert_array_equal(got.n_examples, np.diff(large.indptr))


def test_capped_stitching_uses_the_same_rows_for_every_latent() -> None:
    x, small, large, w_small, b, w_large = _world(3)
    residual = residuals(x, small, lambda c, _x: c @ w_small + b)
    cap = 10
    got = stitching_test(residual, large, w_large, max_examples_per_feature=cap, seed=5)
    rank = np.random.default_rng(5).permutation(N)
    dense = large.toarray()

    def rows_of(j):
        rows = np.flatnonzero(dense[:, j] > 0)
        return rows[np.argsort(rank[rows])[:cap]]

    delta, base = _brute(x, small, large, w_small, b, w_large, rows_of)
    tol = float_tol(np.float32, D * cap) * np.nanmax(base)
    np.testing.assert_allclose(got.delta_sse, delta, atol=tol, rtol=0)
    assert got.n_examples.max() == cap


def test_a_latent_the_small_sae_lacks_has_gain_one_and_a_copy_has_none() -> None:
    """x = a * v where the smaller SAE has nothing: a latent with decoder v removes all of the
    error (gain 1); with the smaller SAE reconstructing x exactly, it only adds error."""
    rng = np.random.default_rng(1)
    v = rng.standard_normal(D).astype(np.float32)
    a = (rng.random(N) * (rng.random(N) < 0.5)).astype(np.float32)
    x = np.outer(a, v)
    large = sp.csc_matrix(a[:, None])
    none = stitching_test(x.copy(), large, v[None, :])
    assert none.gain[0] == pytest.approx(1.0, abs=float_tol(np.float32, D))
    exact_small = stitching_test(np.zeros_like(x), large, v[None, :])
    assert exact_small.delta_sse[0] > 0 and np.isnan(exact_small.gain[0])  # nothing to remove


def test_decoder_contributions_of_a_linear_decoder_are_its_rows() -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((7, D)).astype(np.float32)
    b = rng.standard_normal(D).astype(np.float32)
    got = decoder_contributions(lambda c, _x: np.asarray(c @ w) + b, 7, D)
    np.testing.assert_allclose(got, w, atol=float_tol(np.float32, 1) * np.abs(b).max() * 4, rtol=0)


def test_bad_shapes_are_refused() -> None:
    x, small, large, w_small, b, w_large = _world()
    with pytest.raises(ValueError, match=r"residual has 10 rows; the codes have 300"):
        stitching_test(x[:10], large, w_large)
    with pytest.raises(ValueError, match=r"contributions have shape \(3, 12\); expected \(25, 12\)"):
        stitching_test(x, large, w_large[:3])
    with pytest.raises(ValueError, match=r"max_examples_per_feature must be >= 1"):
        stitching_test(x, large, w_large, max_examples_per_feature=0)
