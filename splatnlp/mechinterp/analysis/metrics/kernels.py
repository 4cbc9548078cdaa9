"""The compiled all-pairs kernel: sparse x sparse pair sums with a dense accumulator row.

For two code matrices over the same examples, ``dot[i, j] = sum_n a_ni b_nj`` and ``coactive[i, j]
= #{n : a_ni > 0 and b_nj > 0}``. Only pairs of features active on the same example contribute:
at real scale 191 x 2,208 per example, 4.2e10 multiply-adds over 100,000 examples, about a tenth
of what a sparse-times-dense product does (which multiplies every stored entry of one side by
every feature of the other, zeros included).

:func:`best_of_rows_and_columns` is the other all-pairs pass: each row's and each column's best
entry of a (K_a, K_b) matrix in one parallel read, instead of two ``argmax`` passes over
NaN-filled copies (which were most of ``align``'s time after the pair sums: 9.6 s of copies and
4.9 s of ``argmax`` for six metrics on the tiny demo).

The pair kernel walks the smaller side's features in parallel (numba ``prange``; each thread owns
whole output rows, so there are no races); for feature ``i`` it visits the examples where it is
active and adds that example's row of the other side into a per-thread (K_large, 2) row holding
product and count side by side (it stays in the core's L2 cache, and one update touches one
cache line), then adds that row into ``dot[i]`` and ``coactive[i]``. Products and sums are float64 (the codes are
float32, so each product is exact and only the running sums round, like the matcher's float64
``pair_sums``). Callers pass row blocks of examples, so the other side's rows being read stay in
cache and memory stays bounded (:func:`splatnlp.mechinterp.analysis.metrics.streamed.pair_sums_streamed`).

numba is an optional speed-up, imported on first use: :data:`AVAILABLE` says whether it is installed, and the streamed pass
falls back to torch's sparse-times-dense product without it.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import scipy.sparse as sp

__all__ = [
    "AVAILABLE", "accumulate_pair_sums", "best_of_rows_and_columns", "columns_against_all", "inside_mass",
    "one_against_all",
]

AVAILABLE = importlib.util.find_spec("numba") is not None
"""Whether numba is installed (checked without importing it)."""


def _jit():
    """The compiled loops, imported (and numba with them) on first use."""
    from splatnlp.mechinterp.analysis.metrics import _numba_kernels

    return _numba_kernels


def _n_threads() -> int:
    import numba

    return numba.get_num_threads()


def inside_mass(
    large_csr: sp.csr_matrix, small_csr: sp.csr_matrix, candidate: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(total, total_sq, co)`` float64 as
    :func:`~splatnlp.mechinterp.analysis.metrics.pairs.inside_mass` defines them: ``total`` and
    ``total_sq`` of shape (K_large,), ``co`` of shape (6, K_large) holding the co-active sums
    (count, large, small, large², small², large·small) not yet NaN-masked, in one parallel pass
    over the rows with a per-thread dense row of the smaller side's codes (the nesting pass:
    measured 8 s -> under 1 s at real scale)."""
    if not AVAILABLE:
        raise RuntimeError("inside_mass needs numba: pip install numba")
    n, k = large_csr.shape
    n_parts = max(1, min(_n_threads(), n))
    total, total_sq = np.zeros((n_parts, k)), np.zeros((n_parts, k))
    co = np.zeros((n_parts, 6, k))
    _jit()._inside_parts(
        np.asarray(large_csr.indptr), np.asarray(large_csr.indices), np.asarray(large_csr.data),
        np.asarray(small_csr.indptr), np.asarray(small_csr.indices), np.asarray(small_csr.data),
        np.asarray(candidate, dtype=np.int64), small_csr.shape[1], total, total_sq, co,
    )
    return total.sum(0), total_sq.sum(0), co.sum(0)


def one_against_all(
    rows: np.ndarray, values: np.ndarray, target_csr: sp.csr_matrix
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One source feature against every target: ``dot`` and ``mass`` float64 and ``coactive``
    int64, shape (K_t,), from the target's CSR rows at the source's active examples.

    ``mass[t]`` is the target's summed code over those examples (the nesting evidence). The same
    sums as :func:`~splatnlp.mechinterp.analysis.metrics.pairs.pair_sums`, with no gathered copy
    of the rows (scipy's row gather was most of a query: 1.7 M entries for an Ultra feature at
    real scale, 20 M for a Full one); rows are split between the threads, each with its own
    accumulators, added at the end.
    """
    if not AVAILABLE:
        raise RuntimeError("one_against_all needs numba: pip install numba")
    k_t = target_csr.shape[1]
    rows = np.asarray(rows)
    n_parts = max(1, min(_n_threads(), len(rows) // 4096 + 1))  # threads pay off past ~4k rows
    acc = np.zeros((n_parts, k_t, 3))  # dot, count (exact in float64 below 2**53), mass
    if len(rows):
        # np.asarray drops the memmap subclass without copying: numba types plain arrays.
        _jit()._one_parts(
            rows, np.asarray(values), np.asarray(target_csr.indptr), np.asarray(target_csr.indices),
            np.asarray(target_csr.data), acc,
        )
    total = acc.sum(0)
    return total[:, 0].copy(), total[:, 1].astype(np.int64), total[:, 2].copy()


def columns_against_all(source_csc: sp.csc_matrix, columns: np.ndarray, target_csr: sp.csr_matrix) -> np.ndarray:
    """Several source features against every target: ``dot`` float64 of shape
    (len(columns), K_t), row i summing ``source[:, columns[i]] * target`` over the examples
    where that source feature is active.

    The batched reverse pass of the matcher (each candidate child's correlations with the whole
    smaller model). The candidates share active examples, so the pass walks the union of those
    examples and reads each one's target row once, adding it into every candidate active there:
    at real scale 1.2-1.8x faster than a pass per candidate reading its own rows, on the same
    candidate sets of Full->Ultra queries (2026-12-03), and 3-4x faster than scipy's sparse
    product of the block (139 ms of a 212 ms query).

    Parameters
    ----------
    source_csc : sparse (n_examples, K_s) CSC, the source side's codes
    columns : int array of shape (q,), which source features (any order, repeats allowed)
    target_csr : sparse (n_examples, K_t) CSR, the target side's codes
    """
    if not AVAILABLE:
        raise RuntimeError("columns_against_all needs numba: pip install numba")
    if source_csc.shape[0] != target_csr.shape[0]:
        raise ValueError(f"codes have {source_csc.shape[0]} and {target_csr.shape[0]} examples; expected the same")
    q, k_t = len(columns), target_csr.shape[1]
    block = source_csc[:, np.asarray(columns, dtype=np.int64)].tocsr()  # examples x q
    rows = np.flatnonzero(np.diff(block.indptr))  # the examples where any column is active
    if len(rows) == 0:
        return np.zeros((q, k_t))
    n_parts = max(1, min(_n_threads(), len(rows) // 2048 + 1))
    acc = np.zeros((n_parts, q, k_t))
    _jit()._rows_dot(
        np.asarray(block.indptr, dtype=np.int64), np.asarray(block.indices), np.asarray(block.data), rows,
        np.asarray(target_csr.indptr), np.asarray(target_csr.indices), np.asarray(target_csr.data), acc,
    )
    return acc.sum(axis=0) if n_parts > 1 else acc[0]


def best_of_rows_and_columns(matrix: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Each row's and each column's best entry, NaN and -inf skipped, ties to the lower index.

    Parameters
    ----------
    matrix : float array of shape (K_a, K_b)

    Returns
    -------
    ((row_index, row_score), (column_index, column_score)): int64 arrays of shape (K_a,) / (K_b,)
    (-1 where a row / column has no finite entry) and float64 scores (NaN there); the same as
    ``argmax`` over a copy with NaN and -inf replaced by -inf, along axis 1 and axis 0.
    """
    m = np.asarray(matrix)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {m.shape}")
    if not AVAILABLE or m.size == 0:
        return _best_numpy(m, 1), _best_numpy(m, 0)
    m = np.ascontiguousarray(m)
    k_a, k_b = m.shape
    n_parts = max(1, min(_n_threads(), k_a))
    row_idx = np.empty(k_a, np.int64)
    row_val = np.empty(k_a, np.float64)
    part_idx = np.full((n_parts, k_b), -1, np.int64)
    part_val = np.full((n_parts, k_b), -np.inf, np.float64)
    _jit()._best_parts(m, row_idx, row_val, part_idx, part_val)
    # Parts hold consecutive rows in order: a later part wins a column only when strictly better.
    col_idx, col_val = part_idx[0].copy(), part_val[0].copy()
    for t in range(1, n_parts):
        better = part_val[t] > col_val
        col_idx[better], col_val[better] = part_idx[t][better], part_val[t][better]
    out = []
    for idx, val in ((row_idx, row_val), (col_idx, col_val)):
        none = idx < 0
        out.append((np.where(none, -1, idx), np.where(none, np.nan, val)))
    return out[0], out[1]


def _best_numpy(matrix: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The numpy reference of :func:`best_of_rows_and_columns` along one axis."""
    filled = np.nan_to_num(matrix, nan=-np.inf, neginf=-np.inf)
    if filled.shape[axis] == 0:
        k = filled.shape[1 - axis]
        return np.full(k, -1, np.int64), np.full(k, np.nan)
    idx = np.argmax(filled, axis=axis)
    score = np.take_along_axis(filled, np.expand_dims(idx, axis), axis).squeeze(axis)
    none = ~np.isfinite(score)
    return np.where(none, -1, idx).astype(np.int64), np.where(none, np.nan, score).astype(np.float64)


def accumulate_pair_sums(
    small_rows: sp.csr_matrix, large_rows: sp.csr_matrix, dot: np.ndarray, coactive: np.ndarray | None
) -> None:
    """Add one block of examples' pair sums into ``dot`` (and ``coactive``), in place.

    Parameters
    ----------
    small_rows : sparse matrix of shape (rows, K_small), the block's codes of the side whose
        features index the output rows (any sparse format; no explicit zeros)
    large_rows : sparse matrix of shape (rows, K_large), the same examples of the other side
    dot : float64 C-contiguous array of shape (K_small, K_large), accumulated into
    coactive : C-contiguous array of the same shape (float64, or an integer type such as uint32:
        exact counts in half the memory), or None to skip the counts

    Raises RuntimeError without numba, ValueError on shapes or layouts that do not fit.
    """
    if not AVAILABLE:
        raise RuntimeError("the compiled pair kernel needs numba: pip install numba")
    if small_rows.shape[0] != large_rows.shape[0]:
        raise ValueError(f"blocks have {small_rows.shape[0]} and {large_rows.shape[0]} rows; expected the same examples")
    shape = (small_rows.shape[1], large_rows.shape[1])
    if dot.shape != shape or dot.dtype != np.float64 or not dot.flags.c_contiguous:
        raise ValueError(f"dot must be a C-contiguous float64 array of shape {shape}; got {dot.dtype} {dot.shape}")
    if coactive is not None and (
        coactive.shape != shape
        or not coactive.flags.c_contiguous
        or coactive.dtype not in (np.float64, np.uint32, np.int64)
    ):
        raise ValueError(
            f"coactive must be a C-contiguous float64, uint32 or int64 array of shape {shape}; "
            f"got {coactive.dtype} {coactive.shape}"
        )
    a = sp.csc_matrix(small_rows)  # features x examples of the block: each feature's examples
    b = sp.csr_matrix(large_rows)
    args = (
        a.indptr.astype(np.int64, copy=False),
        a.indices.astype(np.int32, copy=False),
        a.data.astype(np.float32, copy=False),
        b.indptr.astype(np.int64, copy=False),
        b.indices.astype(np.int32, copy=False),
        b.data.astype(np.float32, copy=False),
    )
    if coactive is None:
        _jit()._dot(*args, dot)
    else:
        _jit()._dot_and_count(*args, dot, coactive, _n_threads())


def children_gram(
    large_csr, small_csr, parent: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every smaller-side feature, the Gram matrix ``X^T X`` of its children's codes (the
    larger-side features whose ``parent`` it is) and how many of its active examples have a
    child active, over all examples, in one pass over both sides' CSR codes: what a Full
    feature's decomposition needs besides the pair sums, so that a query from the pair index
    reads no codes for it.

    Parameters
    ----------
    large_csr : sparse (n_examples, K_large) CSR, the larger side's codes
    small_csr : sparse (n_examples, K_small) CSR, the smaller side's codes (which are active)
    parent : int array of shape (K_large,), each feature's parent (-1: none)

    Returns
    -------
    offsets : int64 array of shape (K_small + 1,); feature ``s``'s children are
        ``np.flatnonzero(parent == s)`` (ascending ids, ``q`` of them) and their Gram matrix is
        ``gram[offsets[s]:offsets[s + 1]].reshape(q, q)``
    gram : float64 array of shape (sum of q**2,): products of float32 codes summed in float64
    covered : int64 array of shape (K_small,): examples where ``s`` and at least one of its
        children are active (the decomposition's coverage, times ``s``'s count)
    inside4 : float64 array in the layout of ``gram``: entry (i, j) of ``s``'s block sums child
        j's code to the fourth power over the examples where child i is active (the sibling
        evidence, :func:`~splatnlp.mechinterp.analysis.metrics.siblings.sibling_nesting_from_sums`)

    Raises RuntimeError without numba.
    """
    if not AVAILABLE:
        raise RuntimeError("children_gram needs numba: pip install numba")
    parent = np.asarray(parent, dtype=np.int64)
    n_small = small_csr.shape[1]
    if parent.shape != (large_csr.shape[1],) or large_csr.shape[0] != small_csr.shape[0]:
        raise ValueError(
            f"parent has shape {parent.shape} and the codes {large_csr.shape} / {small_csr.shape}; "
            f"expected ({large_csr.shape[1]},) and the same examples"
        )
    if parent.size and parent.max() >= n_small:
        raise ValueError(f"parent holds {int(parent.max())}; the smaller side has {n_small} features")
    has = parent >= 0
    n_children = np.bincount(parent[has], minlength=n_small).astype(np.int64)
    # Each child's rank among its parent's children, by id: a stable sort by parent.
    order = np.flatnonzero(has)[np.argsort(parent[has], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(n_children)[:-1]])
    local = np.zeros(len(parent), dtype=np.int64)
    local[order] = np.arange(len(order)) - np.repeat(starts, n_children)
    offsets = np.zeros(n_small + 1, dtype=np.int64)
    np.cumsum(n_children * n_children, out=offsets[1:])
    # One accumulator per thread over its block of examples, summed after (each is ~8 MB at real
    # scale with the fourth-power sums beside the Gram matrix).
    n_parts = max(1, _n_threads())
    # Gram and fourth-power sums side by side, one row per pair (at real scale on 2026-12-03:
    # 13.5-13.9 s, 12.6 s with two separate arrays; the Gram matrix alone took 8.3-8.9 s).
    accs = np.zeros((n_parts, int(offsets[-1]), 2))
    covered = np.zeros((n_parts, n_small), dtype=np.int64)
    _jit()._children_gram(
        np.asarray(large_csr.indptr, dtype=np.int64), np.asarray(large_csr.indices), np.asarray(large_csr.data),
        parent, local, n_children, offsets, accs,
        np.asarray(small_csr.indptr, dtype=np.int64), np.asarray(small_csr.indices), covered,
    )
    total = accs.sum(axis=0)
    return offsets, total[:, 0].copy(), covered.sum(axis=0), total[:, 1].copy()
