"""Tests of splatnlp/mechinterp/analysis/metrics/cka.py: minibatch linear CKA against brute force
(feature-space CKA, the Song et al. formula with explicit matrices, the average over batches),
its invariances, every input form, both sparse product paths, the permutation null, undefined
values, every documented bad input, and CUDA when present."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from helpers import as_input_format

from splatnlp.mechinterp.analysis.metrics import cka
from splatnlp.mechinterp.analysis.metrics.cka import CKAResult, linear_cka

SEED = 0
N, K_A, K_B = 120, 9, 14


# --- brute force, written plainly -----------------------------------------------------------------


def _feature_space_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Classic linear CKA of column-centered matrices (Kornblith et al. 2019, eq. 5)."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    return np.linalg.norm(b.T @ a) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b))


def _hsic_song(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741 (the paper's names)
    """Unbiased HSIC of Song et al. 2012 with explicit matrices and traces."""
    m = k.shape[0]
    kt = k - np.diag(np.diag(k))
    lt = l - np.diag(np.diag(l))
    one = np.ones(m)
    return (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((m - 1) * (m - 2))
        - 2.0 / (m - 2) * (one @ kt @ lt @ one)
    ) / (m * (m - 3))


def _hsic_biased(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """tr(K H L H) / (m - 1)^2 with the explicit centering matrix H."""
    m = k.shape[0]
    h = np.eye(m) - np.ones((m, m)) / m
    return np.trace(k @ h @ l @ h) / (m - 1) ** 2


def _batched_cka(a: np.ndarray, b: np.ndarray, bounds: list[tuple[int, int]], hsic) -> float:
    """Mean HSICs over the given row ranges, then CKA."""
    kl, kk, ll = [], [], []
    for lo, hi in bounds:
        k, l = a[lo:hi] @ a[lo:hi].T, b[lo:hi] @ b[lo:hi].T  # noqa: E741
        kl.append(hsic(k, l))
        kk.append(hsic(k, k))
        ll.append(hsic(l, l))
    return np.mean(kl) / np.sqrt(np.mean(kk) * np.mean(ll))


def _codes(n: int, k: int, seed: int, density: float = 0.3) -> np.ndarray:
    """Non-negative sparse-ish codes (float32 values held as float64)."""
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((n, k)) < density, rng.exponential(size=(n, k)), 0.0)
    return codes.astype(np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def related() -> tuple[np.ndarray, np.ndarray]:
    """A (120, 9) and B (120, 14): B's first 6 columns are noisy mixtures of A's."""
    a = _codes(N, K_A, 1)
    b = _codes(N, K_B, 2)
    mix = np.random.default_rng(3).random((K_A, 6))
    b[:, :6] = np.maximum(a @ mix + 0.3 * b[:, :6], 0.0)
    return a, b.astype(np.float32).astype(np.float64)


# --- numerics against brute force ---------------------------------------------------------------


@pytest.mark.parametrize("batch_size", (N, 4096))
def test_one_biased_batch_equals_feature_space_cka(related, batch_size) -> None:
    a, b = related
    res = linear_cka(a, b, batch_size=batch_size, debiased=False)
    assert res.n_batches == 1 and res.n_examples == N and not res.debiased
    assert res.value == pytest.approx(_feature_space_cka(a, b), abs=1e-10)
    assert 0.3 < res.value < 1.0  # related but not identical: the check is not vacuous


def test_one_debiased_batch_equals_song_formula(related) -> None:
    a, b = related
    res = linear_cka(a, b, batch_size=N)
    assert res.debiased and res.n_batches == 1
    assert res.value == pytest.approx(_batched_cka(a, b, [(0, N)], _hsic_song), abs=1e-10)


def test_private_hsic_equals_song_formula() -> None:
    rng = np.random.default_rng(SEED)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(10, 5)) + 1.0
    k, l = x @ x.T, y @ y.T  # noqa: E741
    for debiased, reference in ((True, _hsic_song), (False, _hsic_biased)):
        gk = cka._prepare(k.copy(), debiased)
        gl = cka._prepare(l.copy(), debiased)
        assert cka._hsic(gk, gl, debiased) == pytest.approx(reference(k, l), rel=1e-12)
        assert cka._hsic(gk, gk, debiased) == pytest.approx(reference(k, k), rel=1e-12)
        perm = rng.permutation(10)
        got = cka._hsic(gk, gl, debiased, perm=perm)
        assert got == pytest.approx(reference(k, l[np.ix_(perm, perm)]), rel=1e-12)


@pytest.mark.parametrize("debiased", (True, False))
@pytest.mark.parametrize(
    ("n", "bounds"),
    [
        # 103 = 4 x 25 + 3: the 3-row remainder joins the last full batch.
        (103, [(0, 25), (25, 50), (50, 75), (75, 103)]),
        # 104 = 4 x 25 + 4: a 4-row batch is kept.
        (104, [(0, 25), (25, 50), (50, 75), (75, 100), (100, 104)]),
    ],
)
def test_multi_batch_is_mean_over_batches(related, debiased, n, bounds) -> None:
    a, b = related
    a, b = a[:n], b[:n]
    res = linear_cka(a, b, batch_size=25, debiased=debiased)
    assert res.n_batches == len(bounds) and res.batch_size == 25
    hsic = _hsic_song if debiased else _hsic_biased
    assert res.value == pytest.approx(_batched_cka(a, b, bounds, hsic), abs=1e-10)


def test_fewer_rows_than_batch_size_is_one_batch(related) -> None:
    a, b = related
    res = linear_cka(a[:7], b[:7], batch_size=1024)
    assert res.n_batches == 1
    assert res.value == pytest.approx(_batched_cka(a, b, [(0, 7)], _hsic_song), abs=1e-10)


@pytest.mark.parametrize("debiased", (True, False))
def test_invariances(debiased) -> None:
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(200, 12)) + rng.normal(size=12)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    for y in (x, 3.5 * x, x @ q):
        res = linear_cka(x, y, batch_size=50, debiased=debiased)
        assert res.value == pytest.approx(1.0, abs=1e-12)
    # Symmetric in its arguments.
    z = rng.normal(size=(200, 5))
    assert linear_cka(x, z, batch_size=50, debiased=debiased).value == pytest.approx(
        linear_cka(z, x, batch_size=50, debiased=debiased).value, abs=1e-14
    )


# --- input forms and product paths ------------------------------------------------------------


FORMATS = (
    "numpy",
    "numpy_float32",
    "numpy_fortran",
    "torch",
    "torch_float32",
    "scipy_csr_matrix",
    "scipy_csr_float32",
    "scipy_csc_matrix",
    "scipy_coo_array",
    "torch_coo",
    "torch_csr",
    "torch_csc",
)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")
@pytest.mark.parametrize("fmt", FORMATS)
def test_input_forms_agree(related, fmt) -> None:
    a, b = related  # float32-representable values: every form holds the same numbers
    ref = linear_cka(a, b, batch_size=32, n_permutations=3)
    res = linear_cka(as_input_format(a, fmt), as_input_format(b, fmt), batch_size=32, n_permutations=3)
    assert res.value == pytest.approx(ref.value, abs=1e-12)
    for q, v in ref.null_quantiles.items():
        assert res.null_quantiles[q] == pytest.approx(v, abs=1e-12)


def test_bool_and_int_inputs_are_float64(related) -> None:
    a, b = related
    a_int, b_bool = np.rint(3 * a).astype(np.int32), b > 0.5
    ref = linear_cka(a_int.astype(np.float64), b_bool.astype(np.float64), batch_size=32)
    for x, y in (
        (a_int, b_bool),
        (sp.csr_array(a_int), sp.csr_matrix(b_bool)),
        (torch.from_numpy(a_int), torch.from_numpy(b_bool)),
    ):
        assert linear_cka(x, y, batch_size=32).value == pytest.approx(ref.value, abs=1e-12)


@pytest.mark.parametrize("cost", (0.0, float("inf")))
def test_sparse_product_paths_agree(related, monkeypatch, cost) -> None:
    """0: always scipy's sparse x sparse product; inf: always densified BLAS."""
    a, b = related
    ref = linear_cka(a, b, batch_size=32)
    monkeypatch.setattr(cka, "SPARSE_PRODUCT_COST", cost)
    res = linear_cka(sp.csr_array(a), sp.csr_array(b), batch_size=32)
    assert res.value == pytest.approx(ref.value, abs=1e-12)


@pytest.mark.parametrize("debiased", (True, False))
def test_torch_path_on_cpu_matches_numpy(related, debiased) -> None:
    """The CUDA code path (torch Grams, HSICs, permutations) run on the CPU."""
    a, b = related
    csr = sp.csr_array(b[:30])
    args = (csr.indptr.astype(np.int64), csr.indices.astype(np.int64), csr.data, K_B)
    want = b[:30] @ b[:30].T
    np.testing.assert_allclose(cka._csr_gram_numpy(*args), want, rtol=1e-13)
    l_torch = cka._csr_gram_torch(*args, torch.device("cpu"))
    assert l_torch.dtype == torch.float64
    np.testing.assert_allclose(l_torch.numpy(), want, rtol=1e-13)
    k = a[:30] @ a[:30].T
    as_numpy = [cka._prepare(x.copy(), debiased) for x in (k, want)]
    as_torch = [cka._prepare(torch.from_numpy(x.copy()), debiased) for x in (k, want)]
    perm = np.random.default_rng(SEED).permutation(30)
    for p_numpy, p_torch in ((None, None), (perm, torch.from_numpy(perm))):
        got = cka._hsic(*as_torch, debiased, perm=p_torch)
        assert got == pytest.approx(cka._hsic(*as_numpy, debiased, perm=p_numpy), rel=1e-12)


@pytest.mark.parametrize("cost", (0.0, float("inf")))
def test_non_canonical_csr_and_dead_columns(monkeypatch, cost) -> None:
    """Duplicate and unsorted entries add up; all-zero columns change nothing."""
    dense = _codes(40, 6, 5)
    dense[:, 2] = 0.0
    # Each row's entries stored twice at half the value, columns in descending order.
    data, indices, indptr = [], [], [0]
    for row in dense:
        cols = np.flatnonzero(row)[::-1]
        data += [*(row[cols] / 2), *(row[cols] / 2)]
        indices += [*cols, *cols]
        indptr.append(len(data))
    dup = sp.csr_array((np.array(data), np.array(indices), np.array(indptr)), shape=dense.shape)
    assert not dup.has_canonical_format
    other = np.random.default_rng(SEED).normal(size=(40, 3))
    ref = linear_cka(dense, other, batch_size=10)
    monkeypatch.setattr(cka, "SPARSE_PRODUCT_COST", cost)
    assert linear_cka(dup, other, batch_size=10).value == pytest.approx(ref.value, abs=1e-12)


def test_sparse_input_is_never_densified_or_changed(related) -> None:
    class NoDensify(sp.csr_matrix):
        def toarray(self, *args, **kwargs):
            raise AssertionError("the whole sparse input was densified")

        todense = toarray

    a, b = related
    sa = NoDensify(a)
    before = (sa.data.copy(), sa.indices.copy(), sa.indptr.copy())
    res = linear_cka(sa, b, batch_size=32)
    assert res.value == pytest.approx(linear_cka(a, b, batch_size=32).value, abs=1e-12)
    for got, want in zip((sa.data, sa.indices, sa.indptr), before, strict=True):
        np.testing.assert_array_equal(got, want)


# --- the permutation null -------------------------------------------------------------------------


def test_null_is_cka_of_b_shuffled_within_batches(related) -> None:
    """Each null value is the CKA with B's rows shuffled within each batch, by the documented
    draws of ``default_rng(seed).permutation``."""
    a, b = related
    n_perm, seed, bounds = 2, 7, [(0, 60), (60, 120)]
    res = linear_cka(a, b, batch_size=60, n_permutations=n_perm, seed=seed)
    rng = np.random.default_rng(seed)
    perms = [[rng.permutation(hi - lo) for _ in range(n_perm)] for lo, hi in bounds]
    null = []
    for p in range(n_perm):
        shuffled = np.concatenate([b[lo:hi][perms[t][p]] for t, (lo, hi) in enumerate(bounds)])
        null.append(linear_cka(a, shuffled, batch_size=60).value)
    want = {str(q): float(np.quantile(null, q)) for q in cka.NULL_QUANTILES}
    assert res.null_quantiles.keys() == want.keys() == {"0.5", "0.95", "0.99"}
    for q in want:
        assert res.null_quantiles[q] == pytest.approx(want[q], abs=1e-12)
    assert res.n_permutations == n_perm and res.seed == seed


def test_independent_inputs_sit_inside_the_null() -> None:
    a, b = _codes(600, 10, 11), _codes(600, 30, 12)
    res = linear_cka(a, b, batch_size=100, n_permutations=200, seed=SEED)
    q = res.null_quantiles
    assert abs(res.value) < 0.02
    assert q["0.5"] <= q["0.95"] <= q["0.99"] < 0.05
    assert res.value < q["0.99"]
    # The debiased null is centered near 0; the biased estimator's sits well above it.
    assert abs(q["0.5"]) < 0.01
    biased = linear_cka(a, b, batch_size=100, debiased=False)
    assert biased.value > 0.05


def test_related_inputs_far_above_the_null(related) -> None:
    a, b = related
    res = linear_cka(a, b, batch_size=30, n_permutations=100, seed=SEED)
    assert res.value > 0.3 > 4 * res.null_quantiles["0.99"]


def test_null_depends_on_seed_only(related) -> None:
    a, b = related
    first = linear_cka(a, b, batch_size=30, n_permutations=20, seed=1)
    again = linear_cka(a, b, batch_size=30, n_permutations=20, seed=1)
    other = linear_cka(a, b, batch_size=30, n_permutations=20, seed=2)
    assert first.null_quantiles == again.null_quantiles != other.null_quantiles
    assert first.value == other.value
    assert linear_cka(a, b, batch_size=30).null_quantiles is None


# --- undefined values ---------------------------------------------------------------------------


@pytest.mark.parametrize("debiased", (True, False))
@pytest.mark.parametrize(
    "make_zero",
    (
        lambda: np.zeros((N, 4)),
        lambda: sp.csr_array((N, 4)),  # no stored entries at all
        lambda: np.tile(np.random.default_rng(SEED).random(4) * 1e3, (N, 1)),  # identical rows
    ),
    ids=("zeros", "empty_sparse", "identical_rows"),
)
def test_zero_variance_side_is_undefined(related, debiased, make_zero) -> None:
    a, _ = related
    res = linear_cka(a, make_zero(), batch_size=32, debiased=debiased, n_permutations=5)
    assert res.value is None and res.null_quantiles is None
    assert res.undefined_reason.startswith("b has (nearly) zero variance")
    both = linear_cka(make_zero(), make_zero(), batch_size=32, debiased=debiased)
    assert (
        both.value is None and "a has" in both.undefined_reason and "b has" in both.undefined_reason
    )
    assert linear_cka(a, a, batch_size=32).undefined_reason is None


# --- the result model ------------------------------------------------------------------------------


def test_result_json_round_trip_and_frozen(related) -> None:
    a, b = related
    for res in (
        linear_cka(a, b, batch_size=32, n_permutations=4),
        linear_cka(a, np.zeros((N, 2)), batch_size=32),
    ):
        text = res.model_dump_json()
        json.loads(text)  # strict JSON
        assert CKAResult.model_validate_json(text) == res
    with pytest.raises(ValueError, match="frozen"):
        res.value = 0.5
    with pytest.raises(ValueError, match="extra"):
        CKAResult.model_validate({**res.model_dump(), "bogus": 1})


# --- bad input ------------------------------------------------------------------------------------


def _with(x: np.ndarray, row: int, col: int, value: float) -> np.ndarray:
    x = x.copy()
    x[row, col] = value
    return x


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"b": np.ones((119, 3))}, ValueError, r"same examples.*\(120, 9\).*\(119, 3\)"),
        ({"a": np.ones(120)}, ValueError, r"a must be 2-D .*got shape \(120,\)"),
        ({"b": torch.ones(120)}, ValueError, r"b must be 2-D .*got shape \(120,\)"),
        ({"a": np.ones((120, 2, 2))}, ValueError, r"a must be 2-D"),
        ({"a": np.ones((120, 0))}, ValueError, r"a has no columns \(shape \(120, 0\)\)"),
        ({"b": sp.csr_array((120, 0))}, ValueError, r"b has no columns"),
        ({"a": np.ones((3, 2)), "b": np.ones((3, 2))}, ValueError, r"3 rows.*at least 4"),
        ({"batch_size": 3}, ValueError, r"batch_size must be >= 4.*got 3"),
        ({"batch_size": 0}, ValueError, r"batch_size must be >= 4.*got 0"),
        ({"batch_size": 32.0}, TypeError, r"batch_size must be an int, got 32\.0"),
        ({"batch_size": True}, TypeError, r"batch_size must be an int, got True"),
        ({"n_permutations": -1}, ValueError, r"n_permutations must be >= 0, got -1"),
        ({"n_permutations": 1.5}, TypeError, r"n_permutations must be an int, got 1\.5"),
        ({"seed": "0"}, TypeError, r"seed must be an int, got '0'"),
        ({"seed": -1}, ValueError, r"seed must be >= 0 .*got -1"),
        ({"debiased": 1}, TypeError, r"debiased must be a bool, got 1"),
        ({"a": [[1.0, 2.0]] * 120}, TypeError, r"a must be a torch tensor, a numpy array or a scipy sparse matrix, got list"),
        ({"a": np.full((120, 2), "x")}, TypeError, r"a has dtype <U1; expected real numbers"),
        ({"b": np.ones((120, 2), complex)}, TypeError, r"b has dtype complex128"),
        ({"b": torch.ones((120, 2), dtype=torch.complex64)}, TypeError, r"complex dtype"),
        ({"device": "tpu"}, ValueError, r"device 'tpu'|unknown device 'tpu'"),
    ],
)
def test_bad_input(related, kwargs, error, match) -> None:
    a, b = related
    args = {"a": a, "b": b, **kwargs}
    with pytest.raises(error, match=match):
        linear_cka(args.pop("a"), args.pop("b"), **args)


@pytest.mark.parametrize("value", (np.nan, np.inf, -np.inf))
@pytest.mark.parametrize("fmt", ("numpy", "torch", "scipy_csr_matrix", "torch_coo"))
def test_non_finite_values(related, value, fmt) -> None:
    a, b = related
    bad = as_input_format(_with(b, 77, 5, value), fmt)
    with pytest.raises(ValueError, match=rf"b holds NaN or inf \({value} at row 77, column 5\)"):
        linear_cka(a, bad, batch_size=32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda(related) -> None:
    a, b = related
    with pytest.raises(ValueError, match=r"'cuda' was requested but CUDA is not available"):
        linear_cka(a, b, device="cuda")
    # "auto" falls back to the CPU.
    assert linear_cka(a, b, device="auto").value == linear_cka(a, b).value


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("fmt", ("numpy", "torch", "scipy_csr_matrix"))
def test_cuda_matches_cpu(related, fmt) -> None:
    a, b = related
    kwargs = {"batch_size": 32, "n_permutations": 5, "seed": 3}
    ref = linear_cka(a, b, **kwargs)
    inputs = [as_input_format(x, fmt) for x in (a, b)]
    if fmt == "torch":
        inputs = [x.to("cuda") for x in inputs]
    for device in ("cuda", "auto", "cuda:0"):
        res = linear_cka(*inputs, device=device, **kwargs)
        assert res.value == pytest.approx(ref.value, abs=1e-10)
        for q, v in ref.null_quantiles.items():
            assert res.null_quantiles[q] == pytest.approx(v, abs=1e-10)
