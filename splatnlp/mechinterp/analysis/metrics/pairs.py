"""Pair metrics between one source feature and every target feature, exact and vectorized.

Everything here is computed from sufficient statistics over *all* examples (zeros included):
for a source feature ``s`` and target ``t`` over n examples,

- ``dot[t] = sum_n s_n t_n`` and ``coactive[t] = #{n : s_n > 0 and t_n > 0}`` come from one pass
  over the target's CSR rows at the examples where ``s`` is active (``s`` is zero elsewhere, so
  nothing else contributes);
- Pearson ``r = (dot/n - mean_s mean_t) / (std_s std_t)`` with population moments;
- containment ``P(t > 0 | s > 0) = coactive / count_s`` and ``P(s > 0 | t > 0) = coactive / count_t``;
- co-activation Jaccard on binarized codes ``coactive / (count_s + count_t - coactive)``.

Undefined values are NaN here, with a per-candidate reason code (see :data:`REASONS`); reports
turn them into ``None`` plus the reason's text. Nothing is ever silently 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from splatnlp.mechinterp.analysis.metrics import kernels

# Reason codes for undefined metrics, shared by every vectorized function here.
OK, SOURCE_DEAD, TARGET_DEAD, SOURCE_RARE, TARGET_RARE, ZERO_VARIANCE, NO_TOKENS, ZERO_DECODER = range(8)
REASONS = {
    SOURCE_DEAD: "the source feature is never active on the example set",
    TARGET_DEAD: "the target feature is never active on the example set",
    SOURCE_RARE: "the source feature is active on fewer than min_active examples",
    TARGET_RARE: "the target feature is active on fewer than min_active examples",
    ZERO_VARIANCE: "a feature has zero variance over the examples (constant code)",
    NO_TOKENS: "neither feature has any top token (both top-token sets are empty)",
    ZERO_DECODER: "a feature's decoder direction is the zero vector",
}


@dataclass(frozen=True, eq=False)
class Moments:
    """Per-feature sufficient statistics over all n examples (float64 for exact Pearson).

    Attributes: ``count`` (F,) examples where active, ``mean`` (F,), ``std`` (F,) population.
    """

    n_examples: int
    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_csc(cls, csc: sp.csc_matrix) -> Moments:
        """Moments of every column of a (n_examples, n_features) CSC matrix, one pass, float64."""
        n, f = csc.shape
        indptr = np.asarray(csc.indptr, dtype=np.int64)
        data = np.asarray(csc.data, dtype=np.float64)
        col = np.repeat(np.arange(f), np.diff(indptr))
        s1 = np.bincount(col, weights=data, minlength=f)
        s2 = np.bincount(col, weights=data * data, minlength=f)
        count = np.bincount(col, weights=(data != 0), minlength=f).astype(np.int64)
        mean = s1 / max(n, 1)
        # Population variance; clipped because s2/n - mean^2 can round to a tiny negative.
        var = np.maximum(s2 / max(n, 1) - mean * mean, 0.0)
        return cls(n_examples=n, count=count, mean=mean, std=np.sqrt(var))


def pair_sums(
    source_rows: np.ndarray,
    source_values: np.ndarray,
    target_csr: sp.csr_matrix,
    *,
    mass: bool = False,
    compiled: bool = False,
) -> tuple[np.ndarray, ...]:
    """``dot`` (F_t,) float64 and ``coactive`` (F_t,) int64 of one source against every target;
    with ``mass``, also ``mass`` (F_t,) float64: each target's summed code over the source's
    active examples (how much of the target lies inside the source, from the same gather).

    Parameters
    ----------
    source_rows : int array of shape (k,), the examples where the source is active
    source_values : array of shape (k,), the source's codes there
    target_csr : sparse matrix of shape (n_examples, F_t), CSR
    compiled : use :func:`kernels.one_against_all` (numba) when installed: the same sums without
        a gathered copy of the rows, 3-4x faster once numba is loaded (~1.3 s per process)
    """
    n_targets = target_csr.shape[1]
    if len(source_rows) == 0:
        empty = (np.zeros(n_targets), np.zeros(n_targets, dtype=np.int64))
        return (*empty, np.zeros(n_targets)) if mass else empty
    if compiled and kernels.AVAILABLE and isinstance(target_csr, sp.csr_matrix):
        # The compiled pass reads the rows in place (no gathered copy): 3-4x faster per query.
        dot, coactive, inside = kernels.one_against_all(source_rows, source_values, target_csr)
        return (dot, coactive, inside) if mass else (dot, coactive)
    sub = target_csr[source_rows]  # scipy's C row gather: reads only these rows
    # sub.T @ values runs scipy's C loop over the gathered entries once; a weighted bincount
    # does the same sum but is ~3x slower (it materializes the repeated weights).
    values = np.asarray(source_values, dtype=np.float64)
    if mass:  # one pass over the gathered entries for both sums (measured 79 ms vs 73 + 73)
        both = np.asarray(sub.T @ np.column_stack([values, np.ones(len(source_rows))]), dtype=np.float64)
        dot, inside = both[:, 0].copy(), both[:, 1].copy()
    else:
        dot, inside = np.asarray(sub.T @ values, dtype=np.float64), None
    # Codes were stored without explicit zeros, so every stored entry is an active one: counting
    # entries per target is the same matvec over ones. `sub` is our own copy, so its data can be
    # overwritten; float32 counts are exact below 2**24 examples (np.bincount was 2x slower).
    if len(source_rows) >= 2**24:
        coactive = np.bincount(sub.indices, minlength=n_targets).astype(np.int64)
    else:
        sub.data[:] = 1.0
        coactive = np.rint(sub.T @ np.ones(len(source_rows), dtype=sub.data.dtype)).astype(np.int64)
    return (dot, coactive, inside) if mass else (dot, coactive)


def pearson(
    dot: np.ndarray,
    n_examples: int,
    source_mean: float,
    source_std: float,
    target_mean: np.ndarray,
    target_std: np.ndarray,
) -> np.ndarray:
    """Pearson correlation over all examples from sums; NaN where a standard deviation is 0."""
    cov = dot / n_examples - source_mean * target_mean
    denom = source_std * target_std
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), np.nan)
    # Rounding can push |r| a hair past 1 for identical features.
    return np.clip(r, -1.0, 1.0)


def containment(coactive: np.ndarray, count: np.ndarray | int) -> np.ndarray:
    """``coactive / count`` (a conditional activation probability), NaN where count is 0."""
    count = np.asarray(count, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, coactive / np.where(count > 0, count, 1.0), np.nan)


def coactivation_jaccard(coactive: np.ndarray, source_count: int, target_count: np.ndarray) -> np.ndarray:
    """Jaccard of the active sets: ``coactive / (count_s + count_t - coactive)``; NaN if both dead."""
    union = source_count + np.asarray(target_count, dtype=np.float64) - coactive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, coactive / np.where(union > 0, union, 1.0), np.nan)


def set_jaccard(
    source_set: np.ndarray, target_sets: sp.csr_matrix, *, by_token: sp.csc_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Jaccard of one token set against many, and the intersection sizes.

    Parameters
    ----------
    source_set : int array, token ids of the source's set (a token listed twice counts once)
    target_sets : binary sparse matrix of shape (F_t, n_tokens), one row per target's set
    by_token : the same matrix in CSC form (each token's targets), or None. With it the
        intersections count only the source's tokens' columns instead of a product over every
        stored entry: 0.14 instead of 0.41 ms against 24,576 sets; the result is the same.

    Returns (jaccard (F_t,) with NaN where both sets are empty, intersection (F_t,) int).
    """
    source_set = np.asarray(source_set, dtype=np.int64)
    if by_token is not None:
        ptr = by_token.indptr
        # np.unique: a token listed twice counts once, as the indicator below does.
        hits = [by_token.indices[ptr[t] : ptr[t + 1]] for t in np.unique(source_set)]
        inter = np.bincount(np.concatenate(hits or [np.zeros(0, np.int64)]), minlength=target_sets.shape[0])
    else:
        indicator = np.zeros(target_sets.shape[1], dtype=np.float64)
        indicator[source_set] = 1.0
        inter = np.asarray(target_sets @ indicator).ravel()
    sizes = np.diff(target_sets.indptr)
    union = len(source_set) + sizes - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(union > 0, inter / np.where(union > 0, union, 1.0), np.nan)
    return jac, inter.astype(np.int64)


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm, float32; zero rows become NaN (their cosine is undefined)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, matrix / np.where(norms > 0, norms, 1.0), np.nan).astype(np.float32)


def cosine_rows(unit_vector: np.ndarray, unit_matrix: np.ndarray) -> np.ndarray:
    """Cosine of a unit vector (d,) with every row of a unit-row matrix (F, d) from
    :func:`unit_rows`; NaN where either was a zero vector."""
    return np.clip((unit_matrix @ unit_vector).astype(np.float64), -1.0, 1.0)


# -- activation mass inside another feature (the nesting evidence of the parent rule) ------------
@dataclass(frozen=True, eq=False)
class InsideMass:
    """Per larger-side feature ``u`` and one candidate ``b`` each, shape (K,) float64:
    ``inside = sum_n u_n [b_n > 0]``, ``total = sum_n u_n``, ``total_sq = sum_n u_n^2``, and the
    sums over the examples where both are active that :func:`coactive_pearson` needs."""

    inside: np.ndarray
    total: np.ndarray
    total_sq: np.ndarray
    co_count: np.ndarray
    """Examples where ``u`` and its candidate are both active."""
    co_sums: np.ndarray
    """(5, K) over those examples: sum u, sum b, sum u², sum b², sum u·b."""

    @property
    def coactive_correlation(self) -> np.ndarray:
        """:func:`coactive_pearson` of each feature with its candidate (NaN where undefined)."""
        return coactive_pearson(self.co_count, *self.co_sums)


def coactive_pearson(count, sx, sy, sxx, syy, sxy) -> np.ndarray:
    """Pearson correlation of two features' codes over the examples where both are active, from
    float64 sums over those examples (elementwise; NaN with fewer than 3 such examples or no
    variance). Unlike the correlation over all examples it is not capped by the firing rates:
    it asks whether the two magnitudes move together when both fire (the ``equivalent`` rule,
    :mod:`~splatnlp.mechinterp.analysis.metrics.verdicts`)."""
    count, sx, sy, sxx, syy, sxy = (np.asarray(v, dtype=np.float64) for v in (count, sx, sy, sxx, syy, sxy))
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / count
        vx = sxx - sx * sx / count
        vy = syy - sy * sy / count
        # Relative floor: a constant code gives a variance that is rounding error, not zero.
        ok = (count >= 3) & (vx > 1e-12 * sxx) & (vy > 1e-12 * syy)
        return np.where(ok, np.clip(cov / np.sqrt(vx * vy), -1.0, 1.0), np.nan)


def coactive_sums_of(
    rows: np.ndarray, values: np.ndarray, other_rows: np.ndarray, other_values: np.ndarray
) -> np.ndarray:
    """One pair's sums over the examples where both are active, float64 of shape (6,): count,
    sum x, sum y, sum x², sum y², sum x·y (x the first feature), in the order of
    :attr:`InsideMass.co_sums` after the count; from each feature's active rows and values (rows
    sorted ascending, as the codes store them)."""
    common, i, j = np.intersect1d(rows, other_rows, assume_unique=True, return_indices=True)
    x = np.asarray(values, dtype=np.float64)[i]
    y = np.asarray(other_values, dtype=np.float64)[j]
    return np.array([len(common), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()])


def coactive_of(
    rows: np.ndarray, values: np.ndarray, other_rows: np.ndarray, other_values: np.ndarray
) -> tuple[float, int]:
    """(:func:`coactive_pearson`, number of co-active examples) of one pair, from each feature's
    active rows and values (rows sorted ascending, as the codes store them)."""
    sums = coactive_sums_of(rows, values, other_rows, other_values)
    return float(coactive_pearson(*sums)), int(sums[0])


def column_power_sums(csr: sp.spmatrix, power: int, block: int = 1 << 24) -> np.ndarray:
    """``sum_n x_nk ** power`` of every column k of a sparse (n, K) CSR matrix, float64 of shape
    (K,), for ``power`` 2 or 4, in blocks of entries: a float64 copy of every code at once would
    be 1.8 GB at real scale."""
    if power not in (2, 4):
        raise ValueError(f"power = {power!r}; expected 2 or 4")
    k = csr.shape[1]
    out = np.zeros(k)
    for lo in range(0, len(csr.data), block):
        d = np.asarray(csr.data[lo : lo + block], dtype=np.float64)
        d *= d
        if power == 4:
            d *= d
        out += np.bincount(csr.indices[lo : lo + block], weights=d, minlength=k)
    return out


def inside_mass_of(rows: np.ndarray, values: np.ndarray, candidate_rows: np.ndarray) -> tuple[float, float, float]:
    """One feature's (inside, total, total_sq) for one candidate, from the feature's active rows
    and values and the candidate's active rows (any order)."""
    v = np.asarray(values, dtype=np.float64)
    inside = np.isin(rows, candidate_rows, assume_unique=True)
    return float(v[inside].sum()), float(v.sum()), float((v * v).sum())


def inside_mass(
    large_csr: sp.csr_matrix, small_csr: sp.csr_matrix, candidate: np.ndarray, *, chunk_size: int = 4096
) -> InsideMass:
    """For every column ``u`` of ``large_csr``, the activation mass that falls where column
    ``candidate[u]`` of ``small_csr`` is active (-1: none, then ``inside`` is NaN), and the
    pair's co-active sums (:attr:`InsideMass.co_sums`).

    One pass over the rows: per chunk, the small side's codes as a dense block and a gather at
    each large nonzero's (row, candidate) — O(nnz_large), no (K_large, K_small) matrix.

    Parameters
    ----------
    large_csr : sparse matrix of shape (n_examples, K_large), CSR
    small_csr : sparse matrix of shape (n_examples, K_small), CSR
    candidate : int array of shape (K_large,)
    """
    n, k = large_csr.shape
    if small_csr.shape[0] != n or len(candidate) != k:
        raise ValueError(
            f"large codes {large_csr.shape}, small codes {small_csr.shape} and candidate "
            f"{len(candidate)} do not line up"
        )
    cand = np.asarray(candidate, dtype=np.int64)
    if kernels.AVAILABLE and isinstance(large_csr, sp.csr_matrix) and isinstance(small_csr, sp.csr_matrix):
        total, total_sq, co = kernels.inside_mass(large_csr, small_csr, cand)
        inside = co[1].copy()
        inside[cand < 0] = np.nan
        return InsideMass(inside=inside, total=total, total_sq=total_sq, co_count=co[0], co_sums=co[1:])
    safe = np.maximum(cand, 0)
    total = np.zeros(k)
    total_sq = np.zeros(k)
    co = np.zeros((6, k))
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        block = large_csr[start:stop]
        cols = np.asarray(block.indices, dtype=np.int64)
        x = np.asarray(block.data, dtype=np.float64)
        local = np.repeat(np.arange(stop - start), np.diff(block.indptr))
        # The small side's codes at each large nonzero's (row, candidate); 0 where inactive.
        y = np.asarray(small_csr[start:stop].toarray(), dtype=np.float64)[local, safe[cols]]
        y[cand[cols] < 0] = 0.0
        hit = y > 0
        total += np.bincount(cols, weights=x, minlength=k)
        total_sq += np.bincount(cols, weights=x * x, minlength=k)
        for row, w in enumerate((hit, x * hit, y, x * x * hit, y * y, x * y)):
            co[row] += np.bincount(cols, weights=w.astype(np.float64), minlength=k)
    inside = co[1].copy()
    inside[cand < 0] = np.nan
    return InsideMass(inside=inside, total=total, total_sq=total_sq, co_count=co[0], co_sums=co[1:])
