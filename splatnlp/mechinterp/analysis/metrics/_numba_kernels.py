"""The numba-compiled loops behind :mod:`splatnlp.mechinterp.analysis.metrics.kernels`.

Imported only when a kernel first runs: importing numba costs ~0.3 s and loading these from its
on-disk cache ~1 s more, which a one-off query process should not pay. See ``kernels`` for
what each computes and why.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, nogil=True)
def _dot_and_count(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, dot, coactive, n_threads):  # pragma: no cover - compiled
    # Each thread sums a feature's block into its own interleaved (K_large, 2) row, product and
    # count side by side, so that one update touches one cache line instead of two, then adds it
    # into the outputs (real scale: 1.18x per block of 2,048 examples with uint32 counts, 3.7x
    # with float64 ones in benchmarks/bench_pair_kernels.py).
    # Features go to threads in turn (i = t, t + n_threads, ...), so that each thread allocates
    # its row once for all of its features.
    k_small = len(a_ptr) - 1
    k_large = dot.shape[1]
    for t in numba.prange(n_threads):
        buf = np.zeros((k_large, 2))
        for i in range(t, k_small, n_threads):
            if a_ptr[i] == a_ptr[i + 1]:
                continue
            for p in range(a_ptr[i], a_ptr[i + 1]):
                n = a_idx[p]
                v = np.float64(a_val[p])
                for q in range(b_ptr[n], b_ptr[n + 1]):
                    j = b_idx[q]
                    buf[j, 0] += v * b_val[q]
                    buf[j, 1] += 1.0
            acc = dot[i]
            cnt = coactive[i]
            for j in range(k_large):
                if buf[j, 1] != 0.0:  # no co-active example in the block: nothing to add
                    acc[j] += buf[j, 0]
                    cnt[j] += buf[j, 1]
                    buf[j, 0] = 0.0
                    buf[j, 1] = 0.0


@numba.njit(parallel=True, cache=True, nogil=True)
def _dot(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, dot):  # pragma: no cover - compiled
    for i in numba.prange(len(a_ptr) - 1):
        acc = dot[i]
        for p in range(a_ptr[i], a_ptr[i + 1]):
            n = a_idx[p]
            v = np.float64(a_val[p])
            for q in range(b_ptr[n], b_ptr[n + 1]):
                acc[b_idx[q]] += v * b_val[q]


@numba.njit(parallel=True, cache=True, nogil=True)
def _best_parts(m, row_idx, row_val, part_idx, part_val):  # pragma: no cover - compiled
    k_a, k_b = m.shape
    n_parts = part_idx.shape[0]
    for t in numba.prange(n_parts):
        pi = part_idx[t]
        pv = part_val[t]
        for i in range(t * k_a // n_parts, (t + 1) * k_a // n_parts):
            row = m[i]
            best = -np.inf
            bj = -1
            for j in range(k_b):
                v = row[j]
                # NaN compares false and -inf never beats -inf: both are skipped; strict >
                # keeps the first maximum, as argmax does.
                if v > best:
                    best = v
                    bj = j
                if v > pv[j]:
                    pv[j] = v
                    pi[j] = i
            row_idx[i] = bj
            row_val[i] = best


@numba.njit(parallel=True, cache=True, nogil=True)
def _one_parts(rows, values, indptr, indices, data, acc):  # pragma: no cover - compiled
    # acc[t] is (K_t, 3): dot, count, mass of thread t's rows, interleaved so that one entry's
    # three updates share a cache line (1.15-1.25x over three separate rows at real scale).
    n_parts = acc.shape[0]
    for t in numba.prange(n_parts):
        a = acc[t]
        for k in range(t * len(rows) // n_parts, (t + 1) * len(rows) // n_parts):
            n = rows[k]
            v = np.float64(values[k])
            for q in range(indptr[n], indptr[n + 1]):
                j = indices[q]
                x = np.float64(data[q])
                a[j, 0] += v * x
                a[j, 1] += 1.0
                a[j, 2] += x


@numba.njit(parallel=True, cache=True, nogil=True)
def _rows_dot(b_ptr, b_idx, b_val, rows, indptr, indices, data, acc):  # pragma: no cover - compiled
    # acc[t] is (q, K_t): thread t's sums over its share of ``rows``, the examples where any of
    # the q source columns is active (``b_*``: those columns as CSR over all examples). Each such
    # example's target row is read once and added into the row of every source active there.
    n_parts = acc.shape[0]
    for t in numba.prange(n_parts):
        a = acc[t]
        for r in range(t * len(rows) // n_parts, (t + 1) * len(rows) // n_parts):
            n = rows[r]
            lo, hi = indptr[n], indptr[n + 1]
            for p in range(b_ptr[n], b_ptr[n + 1]):
                i = b_idx[p]
                v = np.float64(b_val[p])
                out = a[i]
                for q in range(lo, hi):
                    out[indices[q]] += v * np.float64(data[q])


@numba.njit(parallel=True, cache=True, nogil=True)
def _inside_parts(l_ptr, l_idx, l_val, s_ptr, s_idx, s_val, cand, k_small, total, total_sq, co):  # pragma: no cover
    # co[t] is (6, K_large): count, large, small, large^2, small^2, large * small over the rows
    # where both the feature and its candidate are active.
    n_parts = total.shape[0]
    n = len(l_ptr) - 1
    for t in numba.prange(n_parts):
        value = np.zeros(k_small, np.float64)  # the candidate side's codes of the current row
        tot, sq, c6 = total[t], total_sq[t], co[t]
        for r in range(t * n // n_parts, (t + 1) * n // n_parts):
            for q in range(s_ptr[r], s_ptr[r + 1]):
                value[s_idx[q]] = np.float64(s_val[q])
            for q in range(l_ptr[r], l_ptr[r + 1]):
                u = l_idx[q]
                x = np.float64(l_val[q])
                tot[u] += x
                sq[u] += x * x
                c = cand[u]
                if c >= 0:
                    y = value[c]
                    if y > 0:
                        c6[0, u] += 1.0
                        c6[1, u] += x
                        c6[2, u] += y
                        c6[3, u] += x * x
                        c6[4, u] += y * y
                        c6[5, u] += x * y
            for q in range(s_ptr[r], s_ptr[r + 1]):
                value[s_idx[q]] = 0.0


@numba.njit(cache=True, nogil=True)
def _children_gram_rows(
    indptr, indices, data, parent, local, n_children, offsets, acc, s_ptr, s_idx, covered, r0, r1
):  # pragma: no cover - compiled
    # Per example: each active child of a parent pairs with the earlier active children of the
    # same parent in that example (a linked list per parent, reset after the example); a parent
    # active there with at least one active child counts the example as covered. ``acc[:, 0]``
    # is the Gram matrix, ``acc[:, 1]`` sums, for each pair, one child's fourth power where the
    # other is active (the sibling evidence of ``equivalent``, metrics/siblings.py): side by
    # side, so that a pair's two updates share a cache line.
    head = np.full(len(n_children), -1, dtype=np.int64)
    small_on = np.zeros(len(n_children), dtype=np.bool_)
    longest = 1
    for r in range(r0, r1):
        longest = max(longest, indptr[r + 1] - indptr[r])
    after = np.empty(longest, dtype=np.int64)  # per entry of the example: the same parent's previous
    for r in range(r0, r1):
        for k in range(s_ptr[r], s_ptr[r + 1]):
            small_on[s_idx[k]] = True
        lo = indptr[r]
        for k in range(lo, indptr[r + 1]):
            u = indices[k]
            p = parent[u]
            if p < 0:
                continue
            q = n_children[p]
            base = offsets[p]
            i = local[u]
            v = np.float64(data[k])
            acc[base + i * q + i, 0] += v * v
            e = head[p]
            if e < 0 and small_on[p]:
                covered[p] += 1
            v2 = v * v
            while e >= 0:
                j = local[indices[e]]
                x = np.float64(data[e])
                w = v * x
                x2 = x * x
                ij = base + i * q + j
                ji = base + j * q + i
                acc[ij, 0] += w
                acc[ij, 1] += x2 * x2
                acc[ji, 0] += w
                acc[ji, 1] += v2 * v2
                e = after[e - lo]
            after[k - lo] = head[p]
            head[p] = k
        for k in range(lo, indptr[r + 1]):
            p = parent[indices[k]]
            if p >= 0:
                head[p] = -1
        for k in range(s_ptr[r], s_ptr[r + 1]):
            small_on[s_idx[k]] = False


@numba.njit(parallel=True, cache=True, nogil=True)
def _children_gram(indptr, indices, data, parent, local, n_children, offsets, accs, s_ptr, s_idx, covered):  # pragma: no cover - compiled
    # One block of examples per row of ``accs`` and ``covered`` (one per thread); the caller
    # sums the rows.
    n_parts = accs.shape[0]
    n = len(indptr) - 1
    for t in numba.prange(n_parts):
        _children_gram_rows(
            indptr, indices, data, parent, local, n_children, offsets, accs[t], s_ptr, s_idx,
            covered[t], t * n // n_parts, (t + 1) * n // n_parts,
        )
