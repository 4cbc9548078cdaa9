"""Linear CKA between two code matrices over the same examples, by minibatch HSIC.

Linear CKA (Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited")
compares two representations of the same ``n_examples`` as a whole: with column-centered codes
``A_c`` (n_examples, K_a) and ``B_c`` (n_examples, K_b),

    CKA = ||B_c^T A_c||_F^2 / (||A_c^T A_c||_F ||B_c^T B_c||_F),

1 for representations that agree up to an orthogonal map and an isotropic scale, near 0 for
unrelated ones. The feature-space form needs a (K_b, K_b) product, too big for SAE codes (K_b up
to 24,576), and the example-space form an (n_examples, n_examples) one. This module uses the
minibatch estimator of Nguyen, Raghu & Kornblith 2021 ("Do Wide and Deep Networks Learn the
Same Things?"): consecutive batches of ``m`` examples, per batch the Gram matrices
``K = A_batch A_batch^T`` and ``L = B_batch B_batch^T`` (m, m) in float64, the unbiased HSIC
estimator of Song et al. 2012 on them, the three HSICs averaged over batches, and

    CKA = mean HSIC(K, L) / sqrt(mean HSIC(K, K) * mean HSIC(L, L)).

Memory is a few (m, m) float64 matrices plus one batch of rows (densified, see below); a sparse
input is never densified whole.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from splatnlp.mechinterp.analysis.metrics.inputs import check_int, validated_codes
from splatnlp.mechinterp.analysis.metrics.results import CKAResult
from splatnlp.mechinterp.analysis.metrics.streamed import resolve_device

__all__ = ["CKAResult", "linear_cka"]

NULL_QUANTILES: tuple[float, ...] = (0.5, 0.95, 0.99)
"""Quantiles of the permutation null reported in :attr:`CKAResult.null_quantiles`."""

ZERO_HSIC_RTOL = 1e-10
"""A side is zero-variance when its mean HSIC(K, K) is at most ``ZERO_HSIC_RTOL`` times the mean
of ``||K||_F^2 / m^2``. Rounding leaves identical rows (true HSIC 0) a debiased HSIC of up to
1e-14 of that yardstick at m = 4096 (measured: 2e-15 at m = 1024), four orders of magnitude
below this threshold; the biased estimator's floor is far lower still."""

SPARSE_PRODUCT_COST = 300.0
"""On the CPU a sparse batch's Gram matrix comes from scipy's sparse x sparse product when its
multiply-adds (``sum_k c_k^2`` for column counts ``c_k`` in the batch) times this are fewer than
a dense product's (``m^2 x active columns``); otherwise the batch is densified and multiplied by
BLAS. Measured on 2 AMD EPYC cores at m = 1024, K = 24,576: scipy's product costs ~5 ns per
multiply-add, numpy's float64 ``X @ X.T`` (OpenBLAS syrk) ~15 ps, and the two cross near 4%
density (the real 'ultra' codes, 9% dense: 1.0 s sparse, 0.4 s dense per batch). torch's
``sparse.mm`` of the CSR batch with its densified transpose, multithreaded, took 9 s there
(3.7 s in float32): each nonzero reads a row of an (n_features, m) operand far beyond cache."""

_FINITE_CHECK_ELEMENTS = 1 << 24  # entries per chunk when scanning for NaN / inf


def linear_cka(
    a: Any,
    b: Any,
    *,
    batch_size: int = 1024,
    debiased: bool = True,
    n_permutations: int = 0,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> CKAResult:
    """Minibatch linear CKA between two code matrices over the same examples.

    The examples (rows) are split into consecutive batches of ``batch_size`` rows; a trailing
    batch with fewer than 4 rows is merged into the previous one (the debiased estimator needs
    ``m >= 4``). Per batch of ``m`` rows, with ``K = A_batch A_batch^T`` and
    ``L = B_batch B_batch^T`` (float64, (m, m)) and ``K~``, ``L~`` the same with zeroed
    diagonals, the unbiased HSIC (Song et al. 2012) is

        HSIC_1(K, L) = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((m-1)(m-2))
                        - 2/(m-2) 1^T K~ L~ 1] / (m (m-3))

    and the biased one ``HSIC_0(K, L) = tr(K H L H) / (m-1)^2`` with ``H = I - 11^T/m``. The
    result is ``mean HSIC(K, L) / sqrt(mean HSIC(K, K) mean HSIC(L, L))``, each mean an
    unweighted average over batches (Nguyen, Raghu & Kornblith 2021). With ``debiased=False``
    and one batch holding every row (``batch_size >= n_examples``) this is the classic
    feature-space linear CKA of the column-centered matrices.

    Parameters
    ----------
    a : array of shape (n_examples, K_a)
        Codes of representation A: a scipy sparse matrix or array (CSR is read in place; other
        formats are converted to CSR, a copy of the nonzeros), a numpy array, or a torch tensor
        (dense, or sparse COO / CSR / CSC, which is converted to scipy CSR). Boolean and integer
        dtypes are converted to float64; complex and non-numeric dtypes raise ``TypeError``.
        Values must be finite.
    b : array of shape (n_examples, K_b)
        Codes of representation B on the same examples, in any of the forms above.
    batch_size : int
        Rows per batch, at least 4. Time grows with it (the Gram products cost ``m^2`` per
        column and batch, so ``n_examples x m`` per column in all), memory as ``m^2`` plus one
        densified batch: (m, active columns) float64, 200 MB at m = 1024, K = 24,576. Measured
        on 2 shared CPU cores, 20,000 examples of the real 'full' (2,048) and 'ultra' (24,576
        features) codes: 6.3 s at 512, 8.9 s at 1024, 18.2 s at 2048; all 100,000 at 1024: 54 s.
    debiased : bool
        Unbiased (True) or biased (False) HSIC per batch. The biased estimate sits well above
        0 for unrelated codes unless ``m`` is large against the feature counts (see the tests);
        the unbiased one is what Nguyen et al. use.
    n_permutations : int
        Permutations for the null (0: none). For each, B's example order is shuffled within
        each batch (L's rows and columns permuted together) and HSIC(K, L_perm) recomputed:
        O(m^2) per batch and permutation, no new product (HSIC(L, L) is unchanged by it);
        about 10 ms per batch and permutation at m = 1024 on the CPU.
    seed : int
        Seed of ``numpy.random.default_rng``; batch ``t``'s permutation ``p`` is its
        ``(t * n_permutations + p)``-th ``permutation(m)`` draw, whatever the device.
    device : "cpu", "cuda", "cuda:<index>", "auto" or torch.device
        Where the Gram products and HSICs run, in float64 ("auto": CUDA when available). On
        the CPU the products use numpy / scipy (see :data:`SPARSE_PRODUCT_COST`), on CUDA torch.

    Returns
    -------
    CKAResult
        ``value`` (None with ``undefined_reason`` when a side has zero variance across the
        examples, see :data:`ZERO_HSIC_RTOL`), the batching, and the null quantiles.

    Raises
    ------
    TypeError
        An input that is not an array / tensor / sparse matrix, or of complex or non-numeric
        dtype; ``batch_size``, ``n_permutations`` or ``seed`` not an int (bool is not);
        ``debiased`` not a bool.
    ValueError
        Inputs that are not 2-D, differ in ``n_examples``, have fewer than 4 rows or no columns,
        or hold NaN / inf (checked before any product); ``batch_size < 4``;
        ``n_permutations < 0``; ``seed < 0``; an unknown device, or CUDA requested where it is
        not available.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(500, 20))
    >>> round(linear_cka(x, 2.0 * x, batch_size=100).value, 6)
    1.0
    """
    start_time = time.perf_counter()
    batch_size = check_int(batch_size, "batch_size")
    n_permutations = check_int(n_permutations, "n_permutations")
    seed = check_int(seed, "seed")
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (numpy.random.default_rng), got {seed}")
    if not isinstance(debiased, (bool, np.bool_)):
        raise TypeError(f"debiased must be a bool, got {debiased!r}")
    debiased = bool(debiased)
    if batch_size < 4:
        raise ValueError(
            f"batch_size must be >= 4 (the debiased HSIC needs 4 rows per batch), got {batch_size}"
        )
    if n_permutations < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}")
    codes_a = _as_codes(a, "a")
    codes_b = _as_codes(b, "b")
    if codes_a.n_examples != codes_b.n_examples:
        raise ValueError(
            f"a and b must hold the same examples (rows): a has shape {codes_a.shape}, "
            f"b has shape {codes_b.shape}"
        )
    for codes in (codes_a, codes_b):
        if codes.n_features == 0:
            raise ValueError(
                f"{codes.name} has no columns (shape {codes.shape}); expected at least one"
            )
    n = codes_a.n_examples
    if n < 4:
        raise ValueError(
            f"a and b have {n} rows (shapes {codes_a.shape}, {codes_b.shape}); linear CKA by "
            f"minibatch HSIC needs at least 4 examples"
        )
    dev = resolve_device(device)
    codes_a.check_finite()
    codes_b.check_finite()

    bounds = _batch_bounds(n, batch_size)
    rng = np.random.default_rng(seed)
    hsic_kl, hsic_kk, hsic_ll, scale_k, scale_l = [], [], [], [], []
    null_kl = np.zeros(n_permutations)
    with torch.no_grad():
        for lo, hi in bounds:
            gram_k = _prepare(codes_a.gram(lo, hi, dev), debiased)
            gram_l = _prepare(codes_b.gram(lo, hi, dev), debiased)
            hsic_kl.append(_hsic(gram_k, gram_l, debiased))
            hsic_kk.append(_hsic(gram_k, gram_k, debiased))
            hsic_ll.append(_hsic(gram_l, gram_l, debiased))
            scale_k.append(gram_k.scale)
            scale_l.append(gram_l.scale)
            for p in range(n_permutations):
                perm = rng.permutation(hi - lo)
                if dev.type != "cpu":
                    perm = torch.from_numpy(perm).to(dev)
                null_kl[p] += _hsic(gram_k, gram_l, debiased, perm=perm)

    n_batches = len(bounds)
    mean_kl = math.fsum(hsic_kl) / n_batches
    mean_kk = math.fsum(hsic_kk) / n_batches
    mean_ll = math.fsum(hsic_ll) / n_batches
    reasons = [
        _zero_variance_reason(name, mean, math.fsum(scale) / n_batches)
        for name, mean, scale in (("a", mean_kk, scale_k), ("b", mean_ll, scale_l))
    ]
    reasons = [r for r in reasons if r is not None]
    if reasons:
        value, quantiles = None, None
    else:
        norm = math.sqrt(mean_kk * mean_ll)
        value = mean_kl / norm
        quantiles = None
        if n_permutations:
            null = null_kl / n_batches / norm
            quantiles = {str(q): float(np.quantile(null, q)) for q in NULL_QUANTILES}
    return CKAResult(
        value=value,
        undefined_reason="; ".join(reasons) if reasons else None,
        n_examples=n,
        batch_size=batch_size,
        n_batches=n_batches,
        debiased=debiased,
        null_quantiles=quantiles,
        n_permutations=n_permutations,
        seed=seed,
        elapsed_s=time.perf_counter() - start_time,
    )


# --- HSIC --------------------------------------------------------------------------------------


def _batch_bounds(n_examples: int, batch_size: int) -> list[tuple[int, int]]:
    """Consecutive ``(lo, hi)`` row ranges; a trailing range under 4 rows joins the previous."""
    starts = list(range(0, n_examples, batch_size))
    if len(starts) > 1 and n_examples - starts[-1] < 4:
        starts.pop()
    return list(zip(starts, [*starts[1:], n_examples], strict=True))


# A numpy array on the CPU, a torch tensor on CUDA. numpy on the CPU keeps the whole CPU path on
# one thread pool: torch's OpenMP threads next to OpenBLAS's spinning ones made the O(m^2) steps
# 20-80x slower (measured on 2 shared cores: 0.3-1.3 s against 0.02 s for 500 rows, 50
# permutations), and the operations used below are spelled the same in both libraries.
_Matrix = np.ndarray | torch.Tensor


@dataclass(eq=False)
class _Gram:
    """One batch's Gram matrix, prepared for HSIC."""

    matrix: _Matrix
    """(m, m): ``K~`` (zeroed diagonal) when debiased, ``H K H`` when biased."""
    row_sums: _Matrix
    """(m,): ``matrix @ 1``."""
    total: float
    """``1^T matrix 1``."""
    scale: float
    """``||K||_F^2 / m^2`` of the raw Gram matrix: the yardstick of :data:`ZERO_HSIC_RTOL`."""


def _prepare(gram: _Matrix, debiased: bool) -> _Gram:
    """Zero the diagonal (debiased) or double-center (biased) a float64 (m, m) Gram, in place."""
    m = gram.shape[0]
    flat = gram.reshape(-1)
    scale = float(flat @ flat) / m**2
    if debiased:
        if isinstance(gram, np.ndarray):
            np.fill_diagonal(gram, 0.0)
        else:
            gram.fill_diagonal_(0.0)
    else:
        # H K H entrywise; row and column means kept apart, as a sparse product's K is
        # symmetric only to rounding.
        row_mean, col_mean = gram.mean(1), gram.mean(0)
        grand = row_mean.mean()
        gram -= row_mean[:, None]
        gram -= col_mean[None, :]
        gram += grand
    row_sums = gram.sum(1)
    return _Gram(matrix=gram, row_sums=row_sums, total=float(row_sums.sum()), scale=scale)


def _hsic(
    gram_k: _Gram, gram_l: _Gram, debiased: bool, perm: np.ndarray | torch.Tensor | None = None
) -> float:
    """HSIC_1 (debiased) or HSIC_0 of two prepared Grams; ``perm`` permutes L's rows and columns."""
    m = gram_k.matrix.shape[0]
    l_matrix, l_row_sums = gram_l.matrix, gram_l.row_sums
    if perm is not None:
        # L[perm][:, perm] in one gather (numpy: 6.5 ms at m = 1024, 11 ms as two fancy
        # indexings). The total 1^T L 1 does not change.
        if isinstance(l_matrix, np.ndarray):
            l_matrix = l_matrix[np.ix_(perm, perm)]
        else:
            l_matrix = l_matrix.reshape(-1)[perm[:, None] * m + perm[None, :]]
        l_row_sums = l_row_sums[perm]
    # tr(K~ L~) = sum(K~ * L~) for symmetric matrices; H K H and H L H are symmetric too.
    trace = float(gram_k.matrix.reshape(-1) @ l_matrix.reshape(-1))
    if not debiased:
        return trace / (m - 1) ** 2
    cross = float(gram_k.row_sums @ l_row_sums)  # 1^T K~ L~ 1 = (K~ 1) . (L~ 1)
    totals = gram_k.total * gram_l.total / ((m - 1) * (m - 2))
    return (trace + totals - 2.0 / (m - 2) * cross) / (m * (m - 3))


def _zero_variance_reason(name: str, mean_hsic: float, mean_scale: float) -> str | None:
    """Why a side's CKA is undefined, or None when its mean HSIC(K, K) is clearly positive."""
    floor = ZERO_HSIC_RTOL * mean_scale
    if mean_hsic > floor:
        return None
    return (
        f"{name} has (nearly) zero variance across the examples (all-zero codes or identical "
        f"rows): its mean HSIC with itself is {mean_hsic:.3g}, not above the rounding floor "
        f"{floor:.3g}"
    )


# --- inputs ------------------------------------------------------------------------------------


class _Codes:
    """One validated input, read one batch of rows at a time: a dense numpy array or torch
    tensor, or the arrays of a scipy CSR matrix (never densified whole)."""

    def __init__(
        self,
        name: str,
        *,
        dense: np.ndarray | torch.Tensor | None = None,
        csr: sp.csr_matrix | sp.csr_array | None = None,
    ):
        self.name = name
        self.dense = dense
        self.csr = csr
        self.shape = tuple(int(s) for s in (dense.shape if csr is None else csr.shape))
        self.n_examples, self.n_features = self.shape

    def check_finite(self) -> None:
        """Raise ``ValueError`` at the first NaN / inf; scanned in chunks, no full-size mask."""
        if self.csr is not None:
            data = self.csr.data
            if data.dtype.kind != "f":
                return
            for lo in range(0, data.size, _FINITE_CHECK_ELEMENTS):
                bad = np.flatnonzero(~np.isfinite(data[lo : lo + _FINITE_CHECK_ELEMENTS]))
                if bad.size:
                    pos = lo + int(bad[0])
                    row = int(np.searchsorted(self.csr.indptr, pos, side="right")) - 1
                    self._raise_not_finite(row, int(self.csr.indices[pos]), data[pos])
            return
        is_float = (
            self.dense.dtype.is_floating_point
            if isinstance(self.dense, torch.Tensor)
            else self.dense.dtype.kind == "f"
        )
        if not is_float:
            return
        rows = max(1, _FINITE_CHECK_ELEMENTS // self.n_features)
        for lo in range(0, self.n_examples, rows):
            chunk = self.dense[lo : lo + rows]
            if isinstance(chunk, torch.Tensor):
                bad = torch.nonzero(~torch.isfinite(chunk.detach()))
                if bad.shape[0]:
                    r, c = (int(i) for i in bad[0])
                    self._raise_not_finite(lo + r, c, float(chunk[r, c]))
            else:
                bad = np.argwhere(~np.isfinite(chunk))
                if bad.shape[0]:
                    r, c = (int(i) for i in bad[0])
                    self._raise_not_finite(lo + r, c, chunk[r, c])

    def _raise_not_finite(self, row: int, col: int, value: Any) -> None:
        raise ValueError(
            f"{self.name} holds NaN or inf ({float(value)} at row {row}, column {col}); codes "
            f"must be finite"
        )

    def gram(self, lo: int, hi: int, device: torch.device) -> _Matrix:
        """``X[lo:hi] @ X[lo:hi]^T``, float64 (m, m): numpy on the CPU, a tensor on CUDA."""
        if self.csr is not None:
            return self._sparse_gram(lo, hi, device)
        if isinstance(self.dense, torch.Tensor):
            batch = self.dense[lo:hi].detach()
            if device.type != "cpu":
                batch = batch.to(device=device, dtype=torch.float64)
                return batch @ batch.T
            batch = batch.cpu().to(torch.float64).numpy()
        else:
            batch = np.ascontiguousarray(self.dense[lo:hi], dtype=np.float64)
            if device.type != "cpu":
                batch = torch.from_numpy(batch).to(device)
                return batch @ batch.T
        # numpy's X @ X.T is a BLAS syrk (OpenBLAS: measured 2x faster than torch's MKL gemm
        # on the AMD CPU this was written on) and exactly symmetric.
        return batch @ batch.T

    def _sparse_gram(self, lo: int, hi: int, device: torch.device) -> _Matrix:
        """Gram of CSR rows lo..hi: sparse x sparse or densified BLAS on the CPU, dense on CUDA."""
        csr = self.csr
        start, stop = int(csr.indptr[lo]), int(csr.indptr[hi])
        indptr = np.asarray(csr.indptr[lo : hi + 1], dtype=np.int64) - start
        indices = np.asarray(csr.indices[start:stop], dtype=np.int64)
        data = np.asarray(csr.data[start:stop], dtype=np.float64)
        if device.type != "cpu":
            return _csr_gram_torch(indptr, indices, data, self.n_features, device)
        return _csr_gram_numpy(indptr, indices, data, self.n_features)


def _csr_gram_numpy(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n_features: int
) -> np.ndarray:
    """Gram of one CSR batch on the CPU: scipy sparse x sparse, or densified BLAS syrk."""
    m = indptr.size - 1
    counts = np.bincount(indices, minlength=n_features)
    active = np.flatnonzero(counts)
    sparse_cost = float(np.dot(counts.astype(np.float64), counts))
    if sparse_cost * SPARSE_PRODUCT_COST < float(m) * m * active.size:
        batch = sp.csr_array((data, indices, indptr), shape=(m, n_features))
        return (batch @ batch.T).toarray()
    # Densify only the columns active in this batch: dead features cost nothing.
    column = np.zeros(n_features, dtype=np.int64)
    column[active] = np.arange(active.size)
    batch = sp.csr_array((data, column[indices], indptr), shape=(m, active.size)).toarray()
    return batch @ batch.T


def _csr_gram_torch(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    n_features: int,
    device: torch.device,
) -> torch.Tensor:
    """Gram of one CSR batch with torch: densified on the device ((m, n_features) float64),
    then one GEMM; only the batch's nonzeros cross the bus. (Not timed against cuSPARSE: no GPU
    was at hand when this was written.)"""
    m = indptr.size - 1
    rows = torch.repeat_interleave(
        torch.arange(m, device=device), torch.from_numpy(np.diff(indptr)).to(device)
    )
    dense = torch.zeros((m, n_features), dtype=torch.float64, device=device)
    dense.index_put_(
        (rows, torch.from_numpy(indices).to(device)),
        torch.from_numpy(data).to(device),
        accumulate=True,  # duplicate entries of a non-canonical CSR add up, as in scipy
    )
    return dense @ dense.T


def _as_codes(x: Any, name: str) -> _Codes:
    """Validated input (:func:`~splatnlp.mechinterp.analysis.metrics.inputs.validated_codes`); sparse
    inputs become (or stay) scipy CSR."""
    dense, sparse = validated_codes(x, name)
    if sparse is None:
        return _Codes(name, dense=dense)
    return _Codes(name, csr=sparse.tocsr())  # CSR (matrix or array) as is; others converted
