"""Tests of splatnlp/mechinterp/analysis/align.py: FeatureMatch v0.1's contract (permutation
recovery, mismatched K, blocking, centering invariance, random baseline), a float64 numpy brute
force, sparse inputs against dense, zero-variance columns, and every documented bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from helpers import as_input_format, assert_close_f32, float_tol

import splatnlp.mechinterp.analysis.align.featurematch as align_module
from splatnlp.mechinterp.analysis.align.featurematch import AlignmentResult, align_features

SEED = 0
N, K_A, K_B = 300, 20, 25


def _centered_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Brute force in float64: center, normalize, multiply; NaN for zero-variance columns."""
    a = np.asarray(a, np.float64) - np.asarray(a, np.float64).mean(0)
    b = np.asarray(b, np.float64) - np.asarray(b, np.float64).mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a.T @ b) / np.outer(np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0))


def _sparse_codes(n: int, k: int, seed: int) -> np.ndarray:
    """Dense float32 copy of ~15%-dense non-negative codes (float32 values, held as float64)."""
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((n, k)) < 0.15, rng.random((n, k)), 0.0)
    return codes.astype(np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def sparse_pair() -> tuple[np.ndarray, np.ndarray]:
    """Two (300, 20) / (300, 25) sparse-ish code matrices with planted structure: A column 1
    copies B column 4, A column 2 is a noisy B column 9."""
    a, b = _sparse_codes(N, K_A, 1), _sparse_codes(N, K_B, 2)
    a[:, 1] = b[:, 4]
    a[:, 2] = b[:, 9] + 0.1 * np.random.default_rng(3).random(N) * (b[:, 9] > 0)
    return a, b


def _assert_same(res: AlignmentResult, ref: AlignmentResult, *, n_terms: int) -> None:
    """Same cosines, stats and zero-variance lists within float_tol(float32, n_terms) (both are
    float32 cosines, products over n_terms example rows); same top scores, each at an index where
    ref scores it the same (so near-ties may come in either order)."""
    atol = float_tol(torch.float32, n_terms)
    torch.testing.assert_close(res.cosine, ref.cosine, rtol=0, atol=atol, equal_nan=True)
    assert len(res.top_matches) == len(ref.top_matches)
    for i, (row, ref_row) in enumerate(zip(res.top_matches, ref.top_matches, strict=True)):
        assert len(row) == len(ref_row)
        for (j, score), (_, ref_score) in zip(row, ref_row, strict=True):
            assert score == pytest.approx(ref_score, abs=atol)
            assert float(ref.cosine[i, j]) == pytest.approx(score, abs=atol)
    for key, value in ref.stats.items():
        assert res.stats[key] == pytest.approx(value, abs=atol, nan_ok=True)
    assert res.zero_variance_a == ref.zero_variance_a
    assert res.zero_variance_b == ref.zero_variance_b


# --- FeatureMatch's contract ------------------------------------------------------------------


def test_permutation_recovery() -> None:
    g = torch.Generator().manual_seed(SEED)
    z_a = torch.randn(256, 32, generator=g)
    perm = torch.randperm(32, generator=g)
    res = align_features(z_a, z_a[:, perm], topk=3, device="cpu")
    inverse = torch.argsort(perm)
    tol = float_tol(torch.float32, 256)  # float32 cosines over 256 rows
    assert isinstance(res, AlignmentResult)
    assert res.cosine.shape == (32, 32)
    assert res.cosine.dtype == torch.float32 and res.cosine.device.type == "cpu"
    for i, row in enumerate(res.top_matches):
        assert len(row) == 3
        index, score = row[0]
        assert type(index) is int and type(score) is float
        assert index == int(inverse[i])
        assert score == pytest.approx(1.0, abs=tol)
        assert row[1][1] < 0.5  # random columns are far from the true match
    assert res.stats["mean_best"] == pytest.approx(1.0, abs=tol)
    assert res.stats["median_best"] == pytest.approx(1.0, abs=tol)
    assert res.stats["pct_above_threshold"] == 100.0
    assert set(res.stats) == {"mean_best", "median_best", "pct_above_threshold"}


@pytest.mark.parametrize(("k_a", "k_b", "topk", "expected_len"), [(7, 3, 5, 3), (3, 12, 5, 5)])
def test_mismatched_k_and_topk_clamped(k_a: int, k_b: int, topk: int, expected_len: int) -> None:
    g = torch.Generator().manual_seed(SEED)
    res = align_features(
        torch.randn(64, k_a, generator=g), torch.randn(64, k_b, generator=g), topk=topk
    )
    assert res.cosine.shape == (k_a, k_b)
    assert len(res.top_matches) == k_a
    assert all(len(row) == expected_len for row in res.top_matches)
    for row in res.top_matches:
        scores = [s for _, s in row]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("fmt_a", "fmt_b"),
    [
        ("torch", "torch"),
        ("scipy_csr_matrix", "scipy_csc_matrix"),
        ("numpy", "torch_coo"),
        ("torch_coo", "numpy"),
    ],
)
def test_blocking_consistency(sparse_pair, fmt_a: str, fmt_b: str) -> None:
    a, b = sparse_pair
    z_a, z_b = as_input_format(a, fmt_a), as_input_format(b, fmt_b)
    ref = align_features(z_a, z_b, block=4096)
    for block in (1, 3):
        # Column statistics are block-independent; a float32 BLAS product of one A column may
        # round differently from that of 3 or 20, so "identical" is up to float32 rounding.
        _assert_same(align_features(z_a, z_b, block=block), ref, n_terms=N)


def test_centering_invariance() -> None:
    rng = np.random.default_rng(SEED)
    a, b = rng.standard_normal((200, 9)), rng.standard_normal((200, 11))
    b[:, 3] = a[:, 5]
    ref = align_features(torch.from_numpy(a), torch.from_numpy(b))
    shifted = align_features(
        torch.from_numpy(a + rng.uniform(-3, 3, 9)), torch.from_numpy(b + rng.uniform(-3, 3, 11))
    )
    _assert_same(shifted, ref, n_terms=200)
    assert ref.top_matches[5][0][0] == 3


def test_random_dictionaries_baseline() -> None:
    g = torch.Generator().manual_seed(SEED)
    res = align_features(torch.randn(2000, 32, generator=g), torch.randn(2000, 32, generator=g))
    # Best of 32 |cosines| ~ N(0, 1/sqrt(2000)): about 0.05.
    assert 0.0 < res.stats["mean_best"] < 0.15
    assert res.stats["pct_above_threshold"] == 0.0


@pytest.mark.parametrize(("n", "k_a", "k_b"), [(3, 3, 4), (17, 5, 8), (300, 20, 25)])
def test_matches_numpy_brute_force(n: int, k_a: int, k_b: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, k_a)).astype(np.float32)
    b = rng.standard_normal((n, k_b)).astype(np.float32) * 5 + 2
    res = align_features(a, b, topk=4, threshold=0.3)
    ref = _centered_cosine(a, b)
    # float32 cosines over n rows against a float64 brute force.
    assert_close_f32(res.cosine, ref, n)
    k = min(4, k_b)
    for i, row in enumerate(res.top_matches):
        assert [j for j, _ in row] == list(np.argsort(-ref[i], kind="stable")[:k])
        assert_close_f32([s for _, s in row], np.sort(ref[i])[::-1][:k], n)
    tol = float_tol(np.float32, n)
    best = ref.max(1)
    assert res.stats["mean_best"] == pytest.approx(best.mean(), abs=tol)
    assert res.stats["median_best"] == pytest.approx(
        float(torch.from_numpy(best).median()), abs=tol
    )
    assert res.stats["pct_above_threshold"] == pytest.approx(100 * np.mean(best >= 0.3))


def test_median_is_the_lower_middle_value_like_featurematch() -> None:
    rng = np.random.default_rng(SEED)
    b = rng.standard_normal((500, 2))
    a = np.stack([b[:, 0], b[:, 1] + rng.standard_normal(500)], axis=1)  # best 1.0 and ~0.7
    res = align_features(a, b)
    best = [row[0][1] for row in res.top_matches]
    # float64 arithmetic on the very float32 scores of top_matches: no float32 reduction between.
    assert res.stats["median_best"] == pytest.approx(min(best))  # torch.median, not numpy's
    assert res.stats["mean_best"] == pytest.approx(sum(best) / 2)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_extreme_scales_do_not_underflow_or_overflow(sparse_pair, scale: float) -> None:
    a, b = sparse_pair
    ref = align_features(a, b)
    _assert_same(align_features(a * scale, b), ref, n_terms=N)
    _assert_same(align_features(sp.csr_matrix(a * scale), sp.csr_matrix(b)), ref, n_terms=N)


def test_requires_grad_input_is_fine() -> None:
    z = torch.randn(50, 4, generator=torch.Generator().manual_seed(SEED), requires_grad=True)
    res = align_features(z, z)
    assert not res.cosine.requires_grad
    assert [row[0][0] for row in res.top_matches] == [0, 1, 2, 3]


# --- sparse inputs ----------------------------------------------------------------------------

SPARSE_FORMATS = [
    "scipy_csr_matrix",
    "scipy_csc_matrix",
    "scipy_coo_array",
    "torch_coo",
    "torch_csr",
    "torch_csc",
]


@pytest.mark.parametrize("fmt", SPARSE_FORMATS)
def test_sparse_inputs_match_dense(sparse_pair, fmt: str) -> None:
    a, b = sparse_pair
    a, b = a.copy(), b.copy()
    a[:, 0] = 0.0  # dead feature
    b[:, 7] = 0.25  # constant, every row stored
    dense = align_features(torch.from_numpy(a), torch.from_numpy(b), block=6)
    ref = _centered_cosine(a, b)
    assert_close_f32(dense.cosine, ref, N)
    for fmt_a, fmt_b in [(fmt, fmt), (fmt, "torch"), ("numpy", fmt)]:
        res = align_features(as_input_format(a, fmt_a), as_input_format(b, fmt_b), block=6)
        _assert_same(res, dense, n_terms=N)
        assert res.zero_variance_a == [0] and res.zero_variance_b == [7]


@pytest.mark.parametrize("layout", ["bsr", "bsc"])
def test_torch_block_sparse_inputs(sparse_pair, layout: str) -> None:
    a, b = sparse_pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: "BSR support is in beta state"
        z_a = torch.from_numpy(a).to_sparse(
            layout=getattr(torch, f"sparse_{layout}"), blocksize=(3, 2)
        )
    _assert_same(align_features(z_a, b), align_features(a, b), n_terms=N)


def test_sparse_duplicates_are_summed() -> None:
    rows, cols = np.array([0, 0, 1, 2, 3]), np.array([0, 0, 1, 0, 1])
    coo = sp.coo_matrix((np.array([1.0, 2.0, 1.0, 1.0, 2.0]), (rows, cols)), shape=(4, 2))
    dense = np.array([[3.0, 0], [0, 1], [1, 0], [0, 2]])
    assert coo.nnz == 5  # the duplicate is still there
    _assert_same(align_features(coo, coo), align_features(dense, dense), n_terms=4)
    assert coo.nnz == 5  # and the caller's matrix is untouched


def test_scipy_sparse_input_is_never_densified_whole(monkeypatch, sparse_pair) -> None:
    a, b = sparse_pair
    full_shapes = {a.shape, b.shape}

    def guard(original):
        def wrapper(self, *args, **kwargs):
            if tuple(self.shape) in full_shapes:
                raise AssertionError(f"densified a whole input of shape {self.shape}")
            return original(self, *args, **kwargs)

        return wrapper

    for cls in (
        sp.csr_matrix,
        sp.csc_matrix,
        sp.coo_matrix,
        sp.csr_array,
        sp.csc_array,
        sp.coo_array,
    ):
        for method in ("toarray", "todense"):
            monkeypatch.setattr(cls, method, guard(getattr(cls, method)))
    monkeypatch.setattr(torch.Tensor, "to_dense", guard(torch.Tensor.to_dense))
    with pytest.raises(AssertionError, match="densified"):  # the guard itself works
        sp.csr_matrix(a).toarray()
    dense_b = torch.from_numpy(b)
    a_torch = torch.from_numpy(a).to_sparse_coo()
    with pytest.raises(AssertionError, match="densified"):
        a_torch.to_dense()
    # Both sparse: densified per chunk of rows only (the smaller side, chunk_size rows at a time).
    res_scipy = align_features(sp.csr_matrix(a), sp.csc_matrix(b), block=7, chunk_size=7)
    res_torch = align_features(a_torch, torch.from_numpy(b).to_sparse_csr(), block=7, chunk_size=7)
    res_mixed = align_features(sp.csr_matrix(a), dense_b, block=7)
    monkeypatch.undo()
    ref = align_features(torch.from_numpy(a), dense_b)
    for res in (res_scipy, res_torch, res_mixed):
        _assert_same(res, ref, n_terms=N)


# --- zero variance ----------------------------------------------------------------------------


def test_zero_variance_columns_are_nan_and_left_out() -> None:
    rng = np.random.default_rng(SEED)
    a, b = rng.standard_normal((100, 5)), rng.standard_normal((100, 4))
    a[:, 1] = 0.0
    a[:, 3] = 7.3  # constant, non-zero: float rounding must not make it "vary"
    b[:, 2] = -1.1
    a[:, 4] = b[:, 0]
    res = align_features(a, b, topk=4, threshold=0.9)
    assert res.zero_variance_a == [1, 3] and res.zero_variance_b == [2]
    cos = res.cosine.numpy()
    assert np.isnan(cos[[1, 3]]).all() and np.isnan(cos[:, 2]).all()
    assert not np.isnan(np.delete(np.delete(cos, [1, 3], 0), 2, 1)).any()
    assert res.top_matches[1] == [] and res.top_matches[3] == []
    for i in (0, 2, 4):
        assert len(res.top_matches[i]) == 3  # min(topk, K_b) minus the NaN column
        assert all(j != 2 and not math.isnan(s) for j, s in res.top_matches[i])
    best = np.nanmax(_centered_cosine(a, b)[[0, 2, 4]], axis=1)
    tol = float_tol(np.float32, 100)  # float32 cosines over 100 rows
    assert res.stats["mean_best"] == pytest.approx(best.mean(), abs=tol)
    assert res.stats["median_best"] == pytest.approx(np.median(best), abs=tol)  # odd count
    assert res.stats["pct_above_threshold"] == pytest.approx(100 / 3)  # feature 4 only


def test_no_defined_score_gives_nan_stats() -> None:
    a = np.random.default_rng(SEED).standard_normal((30, 3))
    res = align_features(a, np.ones((30, 2)))
    assert torch.isnan(res.cosine).all()
    assert res.top_matches == [[], [], []]
    assert all(math.isnan(v) for v in res.stats.values())


# --- input types and dtypes -------------------------------------------------------------------


def test_integer_and_boolean_codes_are_converted_to_float32() -> None:
    rng = np.random.default_rng(SEED)
    counts = rng.integers(0, 4, (80, 6))
    fired = rng.random((80, 5)) < 0.3
    ref = align_features(counts.astype(np.float32), fired.astype(np.float32))
    _assert_same(align_features(counts, fired), ref, n_terms=80)
    _assert_same(align_features(torch.from_numpy(counts), torch.from_numpy(fired)), ref, n_terms=80)
    _assert_same(align_features(sp.csr_matrix(counts), sp.csc_array(fired)), ref, n_terms=80)
    _assert_same(align_features(torch.from_numpy(counts).to_sparse_coo(), fired), ref, n_terms=80)


def test_device_auto_falls_back_to_cpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    z = torch.randn(20, 3, generator=torch.Generator().manual_seed(SEED))
    res = align_features(z, z, device="auto")
    _assert_same(res, align_features(z, z, device=torch.device("cpu")), n_terms=20)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize(
    ("fmt_a", "fmt_b"),
    [
        ("torch", "torch"),
        ("scipy_csr_matrix", "torch_coo"),
        ("numpy", "scipy_csc_matrix"),
        ("torch_csr", "torch"),
    ],
)
def test_cuda_matches_cpu(sparse_pair, fmt_a: str, fmt_b: str) -> None:
    a, b = sparse_pair
    z_a, z_b = as_input_format(a, fmt_a), as_input_format(b, fmt_b)
    cpu = align_features(z_a, z_b, device="cpu", block=8)
    gpu = align_features(z_a, z_b, device="cuda", block=8)
    assert gpu.cosine.device.type == "cpu"
    _assert_same(gpu, cpu, n_terms=N)
    if isinstance(z_a, torch.Tensor) and z_a.layout == torch.strided:
        _assert_same(align_features(z_a.cuda(), z_b, device="auto"), cpu, n_terms=N)


# --- bad input --------------------------------------------------------------------------------


def test_different_n_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"same examples.*\(10, 3\).*\(11, 3\)"):
        align_features(torch.zeros(10, 3), torch.zeros(11, 3))
    with pytest.raises(ValueError, match="same examples"):
        align_features(sp.csr_matrix((10, 3)), np.zeros((9, 3)))


@pytest.mark.parametrize(
    "bad", [torch.zeros(10), np.zeros(10), torch.zeros(2, 3, 4), sp.coo_array(np.ones(10))]
)
def test_not_2d_is_an_error(bad) -> None:
    with pytest.raises(ValueError, match=r"Z_a must be 2-D"):
        align_features(bad, torch.zeros(10, 3))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("fmt", ["torch", "numpy", "scipy_csr_matrix", "torch_coo"])
def test_nan_or_inf_is_an_error(value: float, fmt: str) -> None:
    z = np.random.default_rng(SEED).standard_normal((10, 4))
    z[6, 2] = value
    with pytest.raises(ValueError, match=r"Z_b holds NaN or inf.*column 2"):
        align_features(np.ones((10, 1)).cumsum(0), as_input_format(z, fmt))


def test_beyond_float32_range_is_an_error() -> None:
    z = np.random.default_rng(SEED).standard_normal((10, 4))
    clean = z.copy()
    z[3, 1] = 1e300
    with pytest.raises(ValueError, match=r"Z_a holds NaN or inf \(or a value beyond.*column 1"):
        align_features(z, clean)
    with pytest.raises(ValueError, match=r"Z_a holds .* beyond float32's range\) in column 1"):
        align_features(sp.csc_matrix(z), clean)


@pytest.mark.parametrize("side", ["a", "b"])
@pytest.mark.parametrize("fmt", ["torch", "scipy_csr_matrix"])
def test_no_features_is_an_error(side: str, fmt: str) -> None:
    empty, full = as_input_format(np.zeros((10, 0)), fmt), torch.randn(10, 3)
    args = (empty, full) if side == "a" else (full, empty)
    with pytest.raises(ValueError, match=rf"Z_{side} has no features \(shape \(10, 0\)\)"):
        align_features(*args)


@pytest.mark.parametrize("n", [0, 1])
@pytest.mark.parametrize("fmt", ["torch", "scipy_csr_matrix"])
def test_fewer_than_two_examples_is_an_error(n: int, fmt: str) -> None:
    z = as_input_format(np.zeros((n, 3)), fmt)
    with pytest.raises(ValueError, match=rf"Z_a has {n} example\(s\).*at least 2"):
        align_features(z, z)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"topk": 0}, ValueError, "topk must be >= 1, got 0"),
        ({"topk": -2}, ValueError, "topk must be >= 1, got -2"),
        ({"topk": 2.5}, TypeError, "topk must be an int, got 2.5"),
        ({"topk": True}, TypeError, "topk must be an int, got True"),
        ({"block": 0}, ValueError, "block must be >= 1, got 0"),
        ({"block": "big"}, TypeError, "block must be an int, got 'big'"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be >= 1, got 0"),
        ({"chunk_size": 1.5}, TypeError, "chunk_size must be an int, got 1.5"),
        ({"threshold": math.nan}, ValueError, "threshold must be a number, got nan"),
        ({"threshold": "high"}, TypeError, "threshold must be a real number, got 'high'"),
        ({"device": "tpu-ish"}, ValueError, "unknown device 'tpu-ish'; expected 'auto', 'cpu'"),
        ({"device": "meta"}, ValueError, "device 'meta' is not supported"),
        ({"device": 3.5}, ValueError, "unknown device 3.5"),
    ],
)
def test_bad_options_are_errors(kwargs: dict, error: type, match: str) -> None:
    z = torch.randn(10, 3, generator=torch.Generator().manual_seed(SEED))
    with pytest.raises(error, match=match):
        align_features(z, z, **kwargs)


def test_numpy_integer_options_are_accepted() -> None:
    z = torch.randn(10, 3, generator=torch.Generator().manual_seed(SEED))
    res = align_features(z, z, topk=np.int64(2), block=np.int32(2), threshold=np.float32(0.5))
    assert all(len(row) == 2 for row in res.top_matches)


def test_cuda_requested_without_cuda_is_an_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    z = torch.zeros(10, 3)
    for device in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ValueError, match="CUDA is not available; use 'auto' or 'cpu'"):
            align_features(z, z, device=device)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (torch.zeros(10, 3, dtype=torch.complex64), TypeError, "complex dtype"),
        (np.zeros((10, 3), dtype=np.complex128), TypeError, "dtype complex128; expected real"),
        (np.full((10, 3), "x"), TypeError, "dtype <U1; expected real"),
        (np.zeros((10, 3), dtype=object), TypeError, "dtype object; expected real"),
        (
            [[0.0] * 3] * 10,
            TypeError,
            "must be a torch tensor, a numpy array or a scipy sparse matrix, got list",
        ),
        (torch.ones(10, 3).to_sparse(sparse_dim=1), ValueError, "hybrid sparse tensor"),
    ],
)
def test_bad_input_types_are_errors(bad, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        align_features(bad, torch.zeros(10, 3))


def test_sparse_statistics_in_column_chunks(monkeypatch, sparse_pair) -> None:
    """Chunked column statistics (a few entries per chunk here) give the same result."""
    a, b = sparse_pair
    whole = align_features(sp.csr_matrix(a), sp.csr_matrix(b))
    monkeypatch.setattr(align_module, "_STATS_CHUNK_ENTRIES", 5)
    assert len(align_module._column_chunks(sp.csc_matrix(b).indptr, 5)) > 3
    _assert_same(align_features(sp.csr_matrix(a), sp.csr_matrix(b)), whole, n_terms=N)
    bad = b.copy()
    bad[np.nonzero(bad[:, -1])[0][0], -1] = np.inf
    with pytest.raises(ValueError, match=f"in column {b.shape[1] - 1}"):
        align_features(sp.csr_matrix(a), sp.csr_matrix(bad))
