"""The information test of ``novel``: per-example energies and error ratios against dense brute
force, and the errors it gives on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from helpers import float_tol, random_codes, random_sae

from splatnlp.mechinterp.analysis.metrics import reconstruction as REC


def _brute(x: np.ndarray, codes: np.ndarray, sae, large: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energies and ratios written out in float64 from the SAE's dense decode."""
    x_hat = sae.decode(torch.from_numpy(codes.astype(np.float32)), x=torch.from_numpy(x)).numpy().astype(np.float64)
    e = ((x.astype(np.float64) - x_hat) ** 2).sum(1)
    v = ((x.astype(np.float64) - x.astype(np.float64).mean(0)) ** 2).sum(1)
    a2 = large.astype(np.float64) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (a2.T @ e / (a2.T @ v)) / (e.sum() / v.sum())
    return e, v, ratio


@pytest.fixture
def world() -> tuple[np.ndarray, sp.csr_matrix, object, sp.csr_matrix]:
    rng = np.random.default_rng(3)
    n, d = 257, 16
    sae = random_sae(4, d_model=d, n_features=40)
    x = rng.normal(size=(n, d)).astype(np.float32)
    codes = sp.csr_matrix(sae.encode(torch.from_numpy(x)).numpy())
    large = random_codes(rng, n, 30, density=0.15).tolil()
    large[:, 7] = 0  # a dead feature: no ratio
    return x, codes, sae, sp.csr_matrix(large)


def test_row_errors_and_ratios_match_the_dense_formula(world) -> None:
    x, codes, sae, large = world
    e, v, ratio = _brute(x, codes.toarray(), sae, large.toarray())
    rows = REC.row_errors(x, codes, sae, chunk_size=50)  # several chunks, a ragged last one
    tol = float_tol(np.float32, x.shape[1])
    np.testing.assert_allclose(rows.residual_sq, e, rtol=tol, atol=tol * e.max())
    np.testing.assert_allclose(rows.centred_sq, v, rtol=tol)
    assert rows.fvu == pytest.approx(e.sum() / v.sum(), rel=tol)
    for fmt in (large, large.tocsc()):
        got = REC.error_ratio(fmt, rows, block_rows=64)
        np.testing.assert_allclose(got, ratio, rtol=10 * tol, equal_nan=True)
    got = REC.error_ratio(large, rows)
    assert np.isnan(got[7]) and np.isfinite(np.delete(got, 7)).all()
    csc = large.tocsc()
    for j in (0, 5, 29):
        col = csc[:, j]
        assert REC.error_ratio_of(col.indices, col.data, rows) == pytest.approx(got[j], rel=1e-12)


def test_a_feature_where_the_smaller_sae_misses_more_has_a_ratio_above_one() -> None:
    # An SAE whose decoder spans the first 4 of 8 dimensions reconstructs nothing of the rest:
    # a larger-side feature that fires where the input has energy outside its span sits above 1,
    # one that fires where the input lies inside it below.
    rng = np.random.default_rng(0)
    n, d = 400, 8
    eye = torch.eye(d)[:4]
    from splatnlp.mechinterp.context.sae import splatnlp_sae

    sae = splatnlp_sae(W_enc=eye.T.contiguous(), b_enc=torch.zeros(4), W_dec=eye.clone(), b_dec=torch.zeros(d))
    x = np.zeros((n, d), np.float32)
    x[:, :4] = np.abs(rng.normal(size=(n, 4)))
    outside = rng.random(n) < 0.2
    x[outside, 5] = 3.0
    codes = sp.csr_matrix(sae.encode(torch.from_numpy(x)).numpy())
    large = sp.csr_matrix(np.stack([outside * 1.0, (~outside) * 1.0], axis=1))
    ratio = REC.error_ratio(large, REC.row_errors(x, codes, sae))
    assert ratio[0] > 1.04 >= ratio[1]


def test_bad_inputs_name_the_value() -> None:
    sae = random_sae(1, d_model=4, n_features=6)
    x = np.zeros((5, 4), np.float32)
    with pytest.raises(ValueError, match="codes have 3 rows and x has 5"):
        REC.row_errors(x, sp.csr_matrix((3, 6)), sae)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        REC.row_errors(x, sp.csr_matrix((5, 6)), sae, chunk_size=0)
    rows = REC.RowErrors(residual_sq=np.ones(5), centred_sq=np.ones(5))
    with pytest.raises(ValueError, match="codes have 4 rows; the row errors have 5"):
        REC.error_ratio(sp.csr_matrix((4, 2)), rows)
    with pytest.raises(ValueError, match=r"codes must be a scipy sparse matrix of shape \(n_examples, 6\).*got shape \(5, 3\)"):
        sae.decode_csr(sp.csr_matrix((5, 3)))
    with pytest.raises(ValueError, match="got ndarray"):
        sae.decode_csr(np.zeros((5, 6)))
    with pytest.raises(ValueError, match="x has 2 rows and codes have 5"):
        sae.decode_csr(sp.csr_matrix((5, 6)), x=np.zeros((2, 4)))


def test_decode_csr_is_decode(world) -> None:
    x, codes, sae, _ = world
    dense = sae.decode(torch.from_numpy(codes.toarray()), x=torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sae.decode_csr(codes, x=x), dense, rtol=0, atol=float_tol(np.float32, 40) * np.abs(dense).max())


def test_a_context_without_activations_says_why(pair) -> None:
    # The planted pair is built from codes: the test cannot run, and the context's message says so.
    why = REC.context_row_errors(pair.target)
    assert isinstance(why, str) and "has no activations" in why and "built from precomputed codes" in why
