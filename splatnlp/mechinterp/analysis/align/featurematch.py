"""Whole-dictionary alignment: FeatureMatch v0.1's ``align_features``, dense or sparse codes.

Two dictionaries' codes on the same ``n_examples`` are compared column by column with the
*centered* cosine (each column minus its mean over the examples, then cosine), as FeatureMatch
v0.1 does (Course-Correct-Labs/featurematch, ``featurematch/featurematch.py``). The result keeps
its contract: ``.cosine`` (K_a, K_b) on the CPU, ``.top_matches`` per A feature, and
``.stats`` with ``mean_best``, ``median_best`` and ``pct_above_threshold``.

Beyond the original: sparse inputs (scipy, torch COO/CSR/CSC) are never densified whole; a
zero-variance column gets NaN (the original divides by ``norm + 1e-9`` and reports 0.0); bad
input raises ``ValueError`` / ``TypeError`` instead of ``assert``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from splatnlp.mechinterp.analysis.metrics import kernels
from splatnlp.mechinterp.analysis.metrics.inputs import check_int, validated_codes
from splatnlp.mechinterp.analysis.metrics.streamed import pair_sums_streamed, resolve_device
from splatnlp.mechinterp.context.codes import column_blocks as _column_chunks

__all__ = ["AlignmentResult", "align_features"]

ZERO_VARIANCE_RTOL = 1e-6
"""A column is zero-variance when ``||x - mean(x)|| <= ZERO_VARIANCE_RTOL * ||x||``: its spread is
below float32 resolution of its level (float32 epsilon is 1.2e-7), so the cosine would be rounding
noise. Scale-invariant, unlike the original's absolute ``1e-9`` added to the norm."""

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_STATS_CHUNK_ENTRIES = 1 << 20
"""Stored entries per chunk when a sparse input's statistics are computed. Small enough that the
float64 temporaries (8 MiB each) are reused from the allocator's heap: at 2^24 every temporary
was a fresh mapping whose first touch page-faults, and the statistics of 15,000 x 24,576 codes
took 2.2 s instead of 0.56 s."""

@dataclass(eq=False)
class AlignmentResult:
    """What :func:`align_features` returns (FeatureMatch v0.1's ``AlignmentResult``, extended)."""

    cosine: torch.Tensor
    """float32 CPU tensor of shape (K_a, K_b): centered cosine of A feature i with B feature j;
    NaN in the rows of zero-variance A features and the columns of zero-variance B features."""

    top_matches: list[list[tuple[int, float]]]
    """For each A feature, ``(index_b, score)`` pairs, best first: ``min(topk, K_b)`` of them, fewer
    only when B has zero-variance features (NaN is never a match); empty for a zero-variance A
    feature."""

    stats: dict[str, float]
    """``mean_best``, ``median_best`` and ``pct_above_threshold`` (percent, 0..100) of the A
    features' best scores, over A features that have one; NaN when none has."""

    zero_variance_a: list[int] = field(default_factory=list)
    """A features with zero variance over the examples (NaN rows of ``cosine``)."""

    zero_variance_b: list[int] = field(default_factory=list)
    """B features with zero variance over the examples (NaN columns of ``cosine``)."""


def align_features(
    Z_a: Any,
    Z_b: Any,
    topk: int = 5,
    threshold: float = 0.8,
    device: str | torch.device = "auto",
    block: int = 4096,
    *,
    chunk_size: int = 2048,
) -> AlignmentResult:
    """Centered-cosine alignment of every feature of dictionary A with every feature of B.

    ``cosine[i, j] = <a_i - mean(a_i), b_j - mean(b_j)> / (||a_i - mean(a_i)|| ||b_j - mean(b_j)||)``
    over the ``n_examples`` rows; then, for each A feature, its ``topk`` best B features, and
    summary stats of the A features' best scores.

    Parameters
    ----------
    Z_a : array of shape (n_examples, K_a)
        Codes of dictionary A. A dense torch tensor (FeatureMatch's contract), a numpy array, a
        scipy sparse matrix / array, or a torch sparse tensor (COO, CSR, CSC, BSR, BSC). Boolean
        and integer dtypes are converted to float32; complex and non-numeric dtypes raise
        ``TypeError``. Values must be finite in float32 (no NaN, no inf, ``|x| <= 3.4e38``).
    Z_b : array of shape (n_examples, K_b)
        Codes of dictionary B on the same examples, in any of the forms above.
    topk : int
        Matches kept per A feature; clamped to K_b as FeatureMatch does. ``topk < 1`` raises.
    threshold : float
        ``pct_above_threshold`` counts A features whose best score is ``>= threshold``.
    device : "auto", "cpu", "cuda", "cuda:<index>" or torch.device
        Where the products run, in float32: "auto" is CUDA when available, else the CPU.
        ``.cosine`` always comes back on the CPU.
    block : int
        A features per block: device memory holds B once (dense B: a centered, normalized float32
        copy, prepared ``block`` columns at a time; sparse B: its nonzeros), one block of A
        columns and one (block, K_b) slice of the cosine. Results do not depend on it beyond
        float32 matmul rounding (a few 1e-6).
    chunk_size : int
        With both inputs sparse, example rows per streamed chunk (keyword only; not part of
        FeatureMatch's signature): memory holds one (chunk_size, min(K_a, K_b)) dense slice.

    Returns
    -------
    AlignmentResult
        ``cosine`` (K_a, K_b) float32 on the CPU, ``top_matches``, ``stats``, and the indices of
        zero-variance features on each side.

    Notes
    -----
    - Sparse inputs are never densified whole (float64 CPU copies of both are made for the column
      statistics). With both sparse, ``Z_a_c^T Z_b_c = Z_a^T Z_b - n_examples mu_a mu_b^T``: the
      raw product streams over ``chunk_size`` rows at a time (the side with fewer features
      densified per chunk, float32 products summed in float64 per chunk, as whole-dictionary
      alignment does), and the mean correction runs in float64 because it subtracts nearly
      equal numbers. With one side sparse, A is read ``block`` columns at a time and B's nonzeros
      are held once; the dense side is centered first, so no correction is needed and float32 is
      exact enough.
    - Dense blocks are centered and normalized in float64 (temporaries of a few (n, block)
      float64 arrays), then multiplied in float32; sparse columns are first divided by their
      largest absolute value (the cosine is scale-invariant) so float32 products cannot overflow.
    - TF32 matmuls (``torch.backends.cuda.matmul.allow_tf32 = True``, off by default) would cost
      about three decimal digits on CUDA; this function does not change that global setting.
    - A zero-variance (constant) column, see :data:`ZERO_VARIANCE_RTOL`, has no defined cosine:
      its row / column of ``cosine`` is NaN, it never appears in ``top_matches``, and an A
      feature without any defined score is left out of ``stats``. If no A feature has a defined
      score, every stat is NaN. (FeatureMatch divides by ``norm + 1e-9`` and reports 0.0.)
    - Rounding can push a cosine a few ulps past +-1; values are clamped to [-1, 1].
    - ``median_best`` is ``torch.median``'s: the lower of the two middle values for an even
      count, as in FeatureMatch.
    - Ties in ``top_matches`` are ordered as ``torch.topk`` orders them.

    Raises
    ------
    TypeError
        An input that is not a tensor / array / sparse matrix, or of complex or non-numeric
        dtype; a non-integer ``topk`` or ``block``; a non-numeric ``threshold``.
    ValueError
        Inputs that are not 2-D, differ in ``n_examples``, have fewer than 2 examples or no
        features, or hold NaN / inf; ``topk < 1``; ``block < 1``; a NaN ``threshold``; an
        unknown device, or CUDA requested where it is not available.

    Examples
    --------
    >>> Z_a = torch.randn(128, 32)
    >>> res = align_features(Z_a, Z_a[:, torch.randperm(32)])
    >>> round(res.stats["mean_best"], 4)
    1.0
    """
    dev = resolve_device(device)
    # Both scipy-sparse on the CPU with the compiled kernel: read them as given (float64 sums,
    # no scaled copies); otherwise validated CSC copies, scaled for float32 products.
    direct = dev.type == "cpu" and kernels.AVAILABLE and sp.issparse(Z_a) and sp.issparse(Z_b)
    make = _CsrCodes if direct else _as_codes
    a = make(Z_a, "Z_a")
    b = make(Z_b, "Z_b")
    if a.n_examples != b.n_examples:
        raise ValueError(
            f"Z_a and Z_b must hold the same examples (rows): Z_a has shape "
            f"{(a.n_examples, a.n_features)}, Z_b has shape {(b.n_examples, b.n_features)}"
        )
    for codes in (a, b):
        if codes.n_examples < 2:
            raise ValueError(
                f"{codes.name} has {codes.n_examples} example(s) (shape "
                f"{(codes.n_examples, codes.n_features)}); a centered cosine needs at least 2"
            )
        if codes.n_features == 0:
            raise ValueError(
                f"{codes.name} has no features (shape {(codes.n_examples, codes.n_features)}); "
                f"expected at least one column"
            )
    topk = check_int(topk, "topk")
    block = check_int(block, "block")
    chunk_size = check_int(chunk_size, "chunk_size")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    if isinstance(threshold, bool) or not isinstance(
        threshold, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"threshold must be a real number, got {threshold!r}")
    if math.isnan(threshold):
        raise ValueError(f"threshold must be a number, got {threshold!r}")
    a.load()
    b.load()

    with torch.no_grad():
        return _align(
            a, b, topk=topk, threshold=float(threshold), device=dev, block=block, chunk_size=chunk_size
        )


# --- the computation --------------------------------------------------------------------------


def _align(
    a: _Codes,
    b: _Codes,
    *,
    topk: int,
    threshold: float,
    device: torch.device,
    block: int,
    chunk_size: int,
) -> AlignmentResult:
    """The blocked loop over A's columns; inputs already validated."""
    n, k_a, k_b = a.n_examples, a.n_features, b.n_features
    both_sparse = a.is_sparse and b.is_sparse
    # float64 only where the mean correction needs it (see align_features' notes).
    gram_dtype = torch.float64 if both_sparse else torch.float32

    gram_all = None
    if both_sparse:
        # One streamed pass over row chunks (float32 products summed in float64), as whole-
        # dictionary alignment does: a sparse x sparse product with a nearly dense (K_a, K_b)
        # result was ~6x slower and held the whole of B twice (measured at 2,000 x 24,576).
        a_csr = a.scaled_csr()
        a.release()  # the CSC copies are not read again on this path
        b_csr = b.scaled_csr()
        b.release()
        gram_all, _ = pair_sums_streamed(a_csr, b_csr, chunk_size=chunk_size, device=device, coactive=False)
        del a_csr, b_csr
        b_dev = None
        zero_b = torch.from_numpy(b.zero_variance).to(device)
        b_mean = torch.from_numpy(b.mean).to(device, gram_dtype)
        b_norm = torch.from_numpy(b.centered_norm).to(device, gram_dtype)
    elif b.is_sparse:
        # A dense: (B^T @ A_blk)^T, B^T as (K_b, n).
        b_dev = b.sparse_block(0, k_b, device, gram_dtype, transpose=not a.is_sparse)
        zero_b = torch.from_numpy(b.zero_variance).to(device)
        b_mean = torch.from_numpy(b.mean).to(device, gram_dtype)
        b_norm = torch.from_numpy(b.centered_norm).to(device, gram_dtype)
    else:
        b_dev = torch.empty((n, k_b), dtype=torch.float32, device=device)
        zero_b = torch.empty(k_b, dtype=torch.bool, device=device)
        for j0 in range(0, k_b, block):
            j1 = min(j0 + block, k_b)
            b_dev[:, j0:j1], zero_b[j0:j1] = _unit_columns(
                b.dense_block(j0, j1, device), b.name, j0
            )

    k = min(topk, k_b)
    cosine = torch.empty((k_a, k_b), dtype=torch.float32)
    top_scores = torch.empty((k_a, k), dtype=torch.float32)
    top_index = torch.empty((k_a, k), dtype=torch.int64)
    zero_a = torch.empty(k_a, dtype=torch.bool)
    for i0 in range(0, k_a, block):
        i1 = min(i0 + block, k_a)
        if a.is_sparse:
            a_t = None if both_sparse else a.sparse_block(i0, i1, device, gram_dtype, transpose=True)  # (b, n)
            zero_blk = torch.from_numpy(a.zero_variance[i0:i1]).to(device)
            a_norm = torch.from_numpy(a.centered_norm[i0:i1]).to(device, gram_dtype)
            if b.is_sparse:
                a_mean = torch.from_numpy(a.mean[i0:i1]).to(device, gram_dtype)
                gram = torch.from_numpy(gram_all[i0:i1]).to(device, gram_dtype)
                gram -= n * a_mean[:, None] * b_mean[None, :]
                cos = gram / (_safe(a_norm)[:, None] * _safe(b_norm)[None, :])
            else:
                cos = torch.sparse.mm(a_t, b_dev) / _safe(a_norm)[:, None]
        else:
            a_unit, zero_blk = _unit_columns(a.dense_block(i0, i1, device), a.name, i0)
            if b.is_sparse:
                cos = torch.sparse.mm(b_dev, a_unit).T / _safe(b_norm)[None, :]
            else:
                cos = a_unit.T @ b_dev
        cos = cos.to(torch.float32).clamp_(-1.0, 1.0)
        cos[zero_blk] = torch.nan
        cos[:, zero_b] = torch.nan
        # NaN ranks below every defined score, then is dropped when the lists are built.
        scores, index = torch.topk(torch.nan_to_num(cos, nan=-math.inf), k, dim=1)
        cosine[i0:i1] = cos.cpu()
        top_scores[i0:i1], top_index[i0:i1] = scores.cpu(), index.cpu()
        zero_a[i0:i1] = zero_blk.cpu()

    top_matches = [
        [(j, s) for j, s in zip(row_index, row_scores, strict=True) if s != -math.inf]
        for row_index, row_scores in zip(top_index.tolist(), top_scores.tolist(), strict=True)
    ]
    best = top_scores[:, 0]
    best = best[torch.isfinite(best)]
    if best.numel():
        stats = {
            "mean_best": float(best.double().mean()),
            "median_best": float(best.median()),
            "pct_above_threshold": float((best >= threshold).double().mean() * 100.0),
        }
    else:
        stats = {"mean_best": math.nan, "median_best": math.nan, "pct_above_threshold": math.nan}
    return AlignmentResult(
        cosine=cosine,
        top_matches=top_matches,
        stats=stats,
        zero_variance_a=torch.nonzero(zero_a).flatten().tolist(),
        zero_variance_b=torch.nonzero(zero_b.cpu()).flatten().tolist(),
    )


def _safe(norm: torch.Tensor) -> torch.Tensor:
    """Norms with zeros replaced by 1 (their rows / columns become NaN afterwards anyway)."""
    return torch.where(norm > 0, norm, torch.ones_like(norm))


def _unit_columns(raw: torch.Tensor, name: str, j0: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centered, unit-norm float32 columns of a dense block, and its zero-variance mask."""
    finite = torch.isfinite(raw).all(dim=0)
    if not bool(finite.all()):
        col = j0 + int(torch.nonzero(~finite)[0, 0])
        raise ValueError(
            f"{name} holds NaN or inf (or a value beyond float32's range) in column {col}; "
            f"codes must be finite"
        )
    # Column statistics in float64: float32's whole range squares without overflow or
    # underflow, and a column's unit vector then does not depend on the block it came in.
    raw = raw.to(torch.float64)
    centered = raw - raw.mean(dim=0)
    norm = torch.linalg.vector_norm(centered, dim=0)
    zero = norm <= ZERO_VARIANCE_RTOL * torch.linalg.vector_norm(raw, dim=0)
    unit = (centered / torch.where(zero, torch.ones_like(norm), norm)).to(torch.float32)
    unit[:, zero] = 0.0
    return unit, zero


# --- inputs ------------------------------------------------------------------------------------


class _Codes:
    """One validated input: a dense array / tensor read by column blocks, or a scaled CSC copy
    of a sparse one with its float64 column statistics."""

    def __init__(
        self, name: str, dense: np.ndarray | torch.Tensor | None, csc: sp.csc_array | None
    ):
        self.name = name
        self.dense = dense
        self.is_sparse = csc is not None
        shape = csc.shape if csc is not None else tuple(dense.shape)
        self.n_examples, self.n_features = int(shape[0]), int(shape[1])
        self._csc = csc

    def load(self) -> None:
        """Check a sparse input's values and compute its column statistics (after validation)."""
        if not self.is_sparse:
            return  # dense inputs are checked block by block in _unit_columns
        csc, self._csc = self._csc, None
        n, f = self.n_examples, self.n_features
        indptr, counts = csc.indptr, np.diff(csc.indptr)
        data = csc.data  # float32 or float64, our own copy: scaled in place below, kept float32
        self.mean, centered_sq, raw_sq = np.zeros(f), np.zeros(f), np.zeros(f)
        # Column chunks of ~16M entries: float64 temporaries stay ~0.5 GB however large the
        # input (whole-array temporaries took align_features to 13 GB at 100,000 x 24,576).
        for j0, j1 in _column_chunks(indptr, _STATS_CHUNK_ENTRIES):
            lo, hi = int(indptr[j0]), int(indptr[j1])
            d = data[lo:hi].astype(np.float64)
            bad = ~(np.isfinite(d) & (np.abs(d) <= _FLOAT32_MAX))
            if bad.any():
                pos = lo + int(np.flatnonzero(bad)[0])
                raise _not_finite(self.name, int(np.searchsorted(indptr, pos, side="right") - 1))
            col = np.repeat(np.arange(j1 - j0), counts[j0:j1])
            # Scale each column to max |x| = 1: float32 products with it can then not overflow.
            scale = np.zeros(j1 - j0)
            nonempty = counts[j0:j1] > 0
            if hi > lo:
                scale[nonempty] = np.maximum.reduceat(np.abs(d), indptr[j0:j1][nonempty] - lo)
            scale[scale == 0] = 1.0
            d /= scale[col]
            data[lo:hi] = d
            # Two-pass moments over all n rows (the implicit zeros contribute (0 - mean)^2 each).
            mean = _column_sums(col, d, j1 - j0) / n
            self.mean[j0:j1] = mean
            centered_sq[j0:j1] = _column_sums(col, (d - mean[col]) ** 2, j1 - j0)
            raw_sq[j0:j1] = _column_sums(col, d * d, j1 - j0)
        centered_sq += (n - counts) * self.mean**2
        self.indptr, self.indices = indptr, csc.indices
        self.data = data.astype(np.float32, copy=False)  # products run in float32
        self.centered_norm = np.sqrt(centered_sq)
        self.zero_variance = self.centered_norm <= ZERO_VARIANCE_RTOL * np.sqrt(raw_sq)

    def dense_block(self, j0: int, j1: int, device: torch.device) -> torch.Tensor:
        """Columns j0..j1 as a float32 tensor on the device (only this block is copied)."""
        if isinstance(self.dense, np.ndarray):
            with np.errstate(over="ignore"):  # overflow to inf is reported by _unit_columns
                block = np.ascontiguousarray(self.dense[:, j0:j1], dtype=np.float32)
            return torch.from_numpy(block).to(device)
        return self.dense[:, j0:j1].detach().to(device=device, dtype=torch.float32)

    def release(self) -> None:
        """Drop the sparse copy (statistics stay)."""
        self.indptr = self.indices = self.data = None

    def scaled_csr(self) -> sp.csr_matrix:
        """The scaled sparse codes as a float32 CSR matrix of shape (n_examples, n_features)."""
        csc = sp.csc_matrix(
            (self.data, self.indices, self.indptr), shape=(self.n_examples, self.n_features)
        )
        return csc.tocsr()

    def sparse_block(
        self, j0: int, j1: int, device: torch.device, dtype: torch.dtype, *, transpose: bool
    ) -> torch.Tensor:
        """Columns j0..j1 as a torch COO tensor: (j1 - j0, n) if ``transpose`` else (n, j1 - j0)."""
        lo, hi = int(self.indptr[j0]), int(self.indptr[j1])
        rows = torch.from_numpy(self.indices[lo:hi].astype(np.int64))
        cols = torch.from_numpy(np.repeat(np.arange(j1 - j0), np.diff(self.indptr[j0 : j1 + 1])))
        values = torch.from_numpy(self.data[lo:hi]).to(dtype)
        shape = (j1 - j0, self.n_examples)
        # CSC order is (column, row)-sorted: the transpose is already coalesced.
        tensor = torch.sparse_coo_tensor(
            torch.stack([cols, rows]), values, shape, check_invariants=False, is_coalesced=True
        )
        if not transpose:
            tensor = tensor.t().coalesce()
        return tensor.to(device)


def _not_finite(name: str, column: int) -> ValueError:
    return ValueError(
        f"{name} holds NaN or inf (or a value beyond float32's range) in column {column}; codes must be finite"
    )


class _CsrCodes:
    """A scipy-sparse input read in place as CSR (a copy only when it is in another format or
    has duplicate entries), with float64 column statistics from two passes over its rows; the
    compiled kernel multiplies in float64, so nothing is scaled. At 100,000 x 24,576 this keeps
    ``align_features`` from holding two more copies of the codes (7.3 GB before)."""

    is_sparse = True

    def __init__(self, Z: Any, name: str):
        _, sparse = validated_codes(Z, name)
        csr = sparse if sparse.format == "csr" else sp.csr_matrix(sparse)
        if not csr.has_canonical_format:
            csr = csr.copy()
            csr.sum_duplicates()
        if csr.dtype not in (np.float32, np.float64):
            csr = csr.astype(np.float64)
        self.name, self.csr = name, csr
        self.n_examples, self.n_features = int(csr.shape[0]), int(csr.shape[1])

    def _row_chunks(self):
        indptr = self.csr.indptr
        rows = max(1, int(_STATS_CHUNK_ENTRIES // max(1, self.csr.nnz / max(self.n_examples, 1))))
        for r0 in range(0, self.n_examples, rows):
            r1 = min(r0 + rows, self.n_examples)
            lo, hi = int(indptr[r0]), int(indptr[r1])
            yield np.asarray(self.csr.indices[lo:hi]), np.asarray(self.csr.data[lo:hi], dtype=np.float64)

    def load(self) -> None:
        """Check the values and compute mean, centered norm and zero variance per column."""
        n, f = self.n_examples, self.n_features
        total, raw_sq, count = np.zeros(f), np.zeros(f), np.zeros(f)
        for cols, d in self._row_chunks():
            bad = ~(np.isfinite(d) & (np.abs(d) <= _FLOAT32_MAX))
            if bad.any():
                raise _not_finite(self.name, int(cols[np.flatnonzero(bad)[0]]))
            total += np.bincount(cols, weights=d, minlength=f)
            raw_sq += np.bincount(cols, weights=d * d, minlength=f)
            count += np.bincount(cols, minlength=f)
        self.mean = total / n
        # Two passes: the stored entries' squared deviations, then the implicit zeros'.
        centered_sq = (n - count) * self.mean**2
        for cols, d in self._row_chunks():
            centered_sq += np.bincount(cols, weights=(d - self.mean[cols]) ** 2, minlength=f)
        self.centered_norm = np.sqrt(centered_sq)
        self.zero_variance = self.centered_norm <= ZERO_VARIANCE_RTOL * np.sqrt(raw_sq)

    def scaled_csr(self) -> sp.csr_matrix:
        """The codes as they are (the compiled kernel's float64 products need no scaling)."""
        return self.csr

    def release(self) -> None:
        """Nothing to drop: the matrix is the caller's."""


def _column_sums(col: np.ndarray, weights: np.ndarray, n_features: int) -> np.ndarray:
    """Per-column float64 sums of entry weights (bincount returns int64 when there are none)."""
    return np.bincount(col, weights=weights, minlength=n_features).astype(np.float64, copy=False)


def _as_codes(Z: Any, name: str) -> _Codes:
    """Validated input; sparse inputs become a float64 CSC copy with duplicates summed."""
    dense, sparse = validated_codes(Z, name)
    if sparse is None:
        return _Codes(name, dense, None)
    # A copy: sum_duplicates sorts in place, and the caller's matrix stays untouched.
    # float32 stays float32 (half the memory of a float64 copy); other dtypes become float64 and
    # are checked against float32's range before being stored as float32.
    dtype = np.float32 if sparse.dtype == np.float32 else np.float64
    # One new copy: tocsc() of another format already allocates, so it is not copied again.
    csc = sp.csc_array(sparse.copy() if sparse.format == "csc" else sparse.tocsc())
    if csc.dtype != dtype:
        csc = csc.astype(dtype)
    csc.sum_duplicates()
    return _Codes(name, None, csc)
