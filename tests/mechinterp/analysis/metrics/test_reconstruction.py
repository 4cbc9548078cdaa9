"""The information test of ``novel``: per-example energies and error ratios against dense brute
force, and the errors it gives on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from helpers import float_tol, random_codes, random_sae

from splatnlp.mechinterp.analysis.metrics import reconstruction as REC


def _brute_energies(x: np.ndarray, codes: np.ndarray, sae) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual and centred energies in float64 from the SAE's dense decode, and per row the bound
    on the float32 rounding of the residual: each of its d_model components is x minus a sum of
    n_features products, so it is off by at most float_tol(float32, n_features + 1) times the sum
    of those terms' magnitudes, and its square by twice |r| times that (plus its square)."""
    x_hat = sae.decode(torch.from_numpy(codes.astype(np.float32)), x=torch.from_numpy(x)).numpy().astype(np.float64)
    r = x.astype(np.float64) - x_hat
    e = (r**2).sum(1)
    v = ((x.astype(np.float64) - x.astype(np.float64).mean(0)) ** 2).sum(1)
    directions = sae.decoder_directions(normalized=False).numpy().astype(np.float64)
    magnitude = np.abs(x) + np.abs(codes) @ np.abs(directions) + np.abs(sae.b_dec.numpy())
    dr = np.array([float_tol(np.float32, codes.shape[1] + 1, scale=m) for m in magnitude.max(1)]) * np.sqrt(x.shape[1])
    return e, v, 2 * np.sqrt(e) * dr + dr**2


def _brute_ratio(rows: REC.RowErrors, large: np.ndarray) -> np.ndarray:
    """The error ratio written out in float64 from given energies."""
    a2 = large.astype(np.float64) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a2.T @ rows.residual_sq / (a2.T @ rows.centred_sq)) / (rows.residual_sq.sum() / rows.centred_sq.sum())


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
    e, v, e_tol = _brute_energies(x, codes.toarray(), sae)
    rows = REC.row_errors(x, codes, sae, chunk_size=50)  # several chunks, a ragged last one
    assert (np.abs(rows.residual_sq - e) <= e_tol).all()
    # The centred energies are float64 sums of d_model squares of float64 differences.
    np.testing.assert_allclose(rows.centred_sq, v, rtol=float_tol(np.float64, x.shape[1]))
    assert rows.fvu == pytest.approx(rows.residual_sq.sum() / rows.centred_sq.sum(), rel=float_tol(np.float64, 1))
    # The ratio from those energies: float64 sums over the examples, in blocks or not.
    expected = _brute_ratio(rows, large.toarray())
    for fmt in (large, large.tocsc()):
        got = REC.error_ratio(fmt, rows, block_rows=64)
        np.testing.assert_allclose(got, expected, rtol=float_tol(np.float64, x.shape[0]), equal_nan=True)
    got = REC.error_ratio(large, rows)
    assert np.isnan(got[7]) and np.isfinite(np.delete(got, 7)).all()
    csc = large.tocsc()
    for j in (0, 5, 29):
        col = csc[:, j]
        assert REC.error_ratio_of(col.indices, col.data, rows) == pytest.approx(got[j], rel=float_tol(np.float64, x.shape[0]))


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
    # Both are float32 sums of n_features products plus the bias: each off by its rounding.
    magnitude = np.abs(codes.toarray()) @ np.abs(sae.decoder_directions(normalized=False).numpy()) + np.abs(sae.b_dec.numpy())
    assert (np.abs(sae.decode_csr(codes, x=x) - dense) <= 2 * float_tol(np.float32, codes.shape[1] + 1) * magnitude).all()


def test_a_context_without_activations_says_why(pair) -> None:
    # The planted pair is built from codes: the test cannot run, and the context's message says so.
    why = REC.context_row_errors(pair.target)
    assert isinstance(why, str) and "has no activations" in why and "built from precomputed codes" in why
