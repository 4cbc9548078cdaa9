"""The stitching test of novelty (Leask et al. 2025, "Sparse autoencoders do not find canonical
units of analysis"): does adding one latent of the larger SAE to the smaller SAE's
reconstruction lower its error?

For a latent ``u`` of the larger SAE with codes ``a_nu`` and decoder contribution ``d_u`` (the
change of its reconstruction per unit code), and the smaller SAE's residual
``r_n = x_n - x̂_n`` on example ``n``, adding ``a_nu d_u`` to the smaller reconstruction changes
the summed squared error over ``u``'s active examples by

    delta_sse_u = sum_n a_nu^2 |d_u|^2 - 2 a_nu d_u . r_n            (n : a_nu > 0)

``delta_sse_u < 0``: ``u`` reconstructs something the smaller SAE misses there. The ``gain`` is
``-delta_sse_u / sum_n |r_n|^2``, the share of the smaller SAE's error on those examples that
``u`` removes (1: all of it; <= 0: none, ``u`` only repeats what the smaller SAE has).

Exact over every active example by default; ``max_examples_per_feature`` caps the examples per
latent (the same pseudo-random subset of rows for every latent), which makes the cost
``K_large x cap x d_model`` instead of ``nnz x d_model``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "StitchingArrays",
    "contribution_of",
    "decoder_contributions",
    "numpy_decoder",
    "residuals",
    "stitching_test",
]


@dataclass(eq=False)
class StitchingArrays:
    """Per latent of the larger SAE, shape (K_large,) each (NaN where undefined)."""

    delta_sse: np.ndarray
    """Change of the smaller SAE's summed squared error on the latent's (sampled) active examples
    when the latent's contribution is added; negative = it adds something."""
    base_sse: np.ndarray
    """The smaller SAE's summed squared error on those examples."""
    gain: np.ndarray
    """``-delta_sse / base_sse``: share of that error the latent removes (NaN when dead)."""
    n_examples: np.ndarray
    """Examples each figure is summed over (int64; the cap, or all active examples)."""


def residuals(
    x: np.ndarray,
    codes: sp.csr_matrix,
    decode: Callable[[sp.csr_matrix, np.ndarray], np.ndarray],
    *,
    chunk_size: int = 8192,
) -> np.ndarray:
    """``x - decode(codes)`` row chunk by row chunk, float32 of shape (n_examples, d_model).

    ``decode(codes_chunk, x_chunk)`` returns the reconstruction of the chunk (it gets the inputs
    too, for SAEs whose normalization is undone with each row's own statistics).
    """
    if codes.shape[0] != x.shape[0]:
        raise ValueError(f"codes have {codes.shape[0]} rows and x has {x.shape[0]}; expected the same examples")
    out = np.empty(x.shape, dtype=np.float32)
    for start in range(0, x.shape[0], chunk_size):
        stop = min(start + chunk_size, x.shape[0])
        xc = np.asarray(x[start:stop], dtype=np.float32)
        out[start:stop] = xc - decode(codes[start:stop], xc)
    return out


def numpy_decoder(sae: Any) -> Callable[[sp.csr_matrix, np.ndarray], np.ndarray]:
    """``decode(codes, x)`` in numpy for a :class:`~splatnlp.mechinterp.context.sae.SAE`: its
    ``decode_csr`` (its own ``decode`` on sparse codes, normalization undone with each row's
    inputs), float32 in and out."""

    def decode(codes: sp.csr_matrix, x: np.ndarray) -> np.ndarray:
        return sae.decode_csr(codes, x=x)

    return decode


def contribution_of(
    decode: Callable[[sp.csr_matrix, np.ndarray], np.ndarray], feature: int, n_features: int, d_model: int
) -> np.ndarray:
    """One latent's change of the reconstruction per unit code, shape (d_model,):
    ``decode(e_feature) - decode(0)`` (a row of :func:`decoder_contributions`)."""
    codes = sp.csr_matrix(
        (np.array([1.0], np.float32), np.array([feature]), np.array([0, 1, 1])), shape=(2, n_features)
    )
    out = decode(codes, np.zeros((2, d_model), np.float32))
    return (out[0] - out[1]).astype(np.float32)


def decoder_contributions(decode: Callable[[sp.csr_matrix, np.ndarray], np.ndarray], n_features: int, d_model: int) -> np.ndarray:
    """Each latent's change of the reconstruction per unit code, shape (n_features, d_model):
    ``decode(e_j) - decode(0)`` (the decoder rows as the SAE uses them, normalization included)."""
    zero = decode(sp.csr_matrix((1, n_features), dtype=np.float32), np.zeros((1, d_model), np.float32))
    rows = []
    for start in range(0, n_features, 4096):
        stop = min(start + 4096, n_features)
        eye = sp.csr_matrix(
            (np.ones(stop - start, np.float32), np.arange(start, stop), np.arange(stop - start + 1)),
            shape=(stop - start, n_features),
        )
        rows.append(decode(eye, np.zeros((stop - start, d_model), np.float32)) - zero)
    return np.concatenate(rows).astype(np.float32, copy=False)


def stitching_test(
    residual: np.ndarray,
    large_csc: sp.csc_matrix,
    contributions: np.ndarray,
    *,
    max_examples_per_feature: int | None = None,
    seed: int = 0,
    block_entries: int = 1 << 22,
) -> StitchingArrays:
    """The stitching test for every latent of the larger SAE.

    Parameters
    ----------
    residual : array of shape (n_examples, d_model), the smaller SAE's ``x - x̂`` (:func:`residuals`)
    large_csc : sparse matrix of shape (n_examples, K_large), CSC, the larger SAE's codes
    contributions : array of shape (K_large, d_model) (:func:`decoder_contributions`)
    max_examples_per_feature : cap on the examples per latent (None: all of them, exact)
    seed : which rows the cap keeps (one random ranking of the rows, shared by every latent)
    block_entries : gathered entries per block (memory: block_entries x d_model x 4 bytes)
    """
    n, k = large_csc.shape
    if residual.shape[0] != n:
        raise ValueError(f"residual has {residual.shape[0]} rows; the codes have {n}")
    if contributions.shape != (k, residual.shape[1]):
        raise ValueError(
            f"contributions have shape {contributions.shape}; expected ({k}, {residual.shape[1]})"
        )
    if max_examples_per_feature is not None and max_examples_per_feature < 1:
        raise ValueError(f"max_examples_per_feature must be >= 1 or None, got {max_examples_per_feature}")
    indptr = np.asarray(large_csc.indptr, dtype=np.int64)
    rows_all = np.asarray(large_csc.indices)
    values_all = np.asarray(large_csc.data, dtype=np.float64)
    if max_examples_per_feature is not None:
        rank = np.random.default_rng(seed).permutation(n)
        keep = np.zeros(len(rows_all), dtype=bool)
        counts = np.diff(indptr)
        for j in np.flatnonzero(counts > max_examples_per_feature):
            lo, hi = indptr[j], indptr[j + 1]
            order = np.argpartition(rank[rows_all[lo:hi]], max_examples_per_feature - 1)
            keep[lo + order[:max_examples_per_feature]] = True
        keep |= np.repeat(counts <= max_examples_per_feature, counts)
        cols = np.repeat(np.arange(k), counts)[keep]
        rows_all, values_all = rows_all[keep], values_all[keep]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=k))])
    row_sse = np.einsum("nd,nd->n", residual, residual, dtype=np.float64)
    cross = np.zeros(k)
    base = np.zeros(k)
    energy = np.zeros(k)
    norms2 = np.einsum("kd,kd->k", contributions, contributions, dtype=np.float64)
    # Blocks of whole columns, so each latent's sums are finished inside one block.
    start = 0
    while start < k:
        stop = int(np.searchsorted(indptr, indptr[start] + block_entries, side="right")) - 1
        stop = max(stop, start + 1)
        stop = min(stop, k)
        lo, hi = indptr[start], indptr[stop]
        rows, vals = rows_all[lo:hi], values_all[lo:hi]
        cols = np.repeat(np.arange(start, stop), np.diff(indptr[start : stop + 1]))
        # float32 gather and dot over d_model terms, summed into float64 per latent.
        dots = np.einsum("ed,ed->e", residual[rows], contributions[cols]).astype(np.float64)
        cross[start:stop] = np.bincount(cols - start, weights=vals * dots, minlength=stop - start)
        base[start:stop] = np.bincount(cols - start, weights=row_sse[rows], minlength=stop - start)
        energy[start:stop] = np.bincount(cols - start, weights=vals * vals, minlength=stop - start) * norms2[start:stop]
        start = stop
    delta = energy - 2.0 * cross
    used = np.diff(indptr).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where((used > 0) & (base > 0), -delta / base, np.nan)
    delta = np.where(used > 0, delta, np.nan)
    base = np.where(used > 0, base, np.nan)
    return StitchingArrays(delta_sse=delta, base_sse=base, gain=gain, n_examples=used)
