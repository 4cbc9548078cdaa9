"""How well the smaller SAE reconstructs the inputs where a feature of the larger SAE fires:
the information test of ``novel`` (:mod:`.verdicts`).

For every example ``n`` the smaller SAE leaves the residual energy ``e_n = |x_n - x̂_n|^2`` of
the input energy ``v_n = |x_n - x̄|^2`` (``x̄`` the mean input over the examples). Its fraction of
variance unexplained is ``Σ e / Σ v`` over all examples; on the examples where a larger-side
feature ``u`` fires, weighted by the square of its code ``a_nu``, it is
``Σ a² e / Σ a² v``. The **error ratio** of ``u`` is the second over the first:

    error_ratio_u = (Σ_n a_nu² e_n / Σ_n a_nu² v_n) / (Σ_n e_n / Σ_n v_n)

1: the smaller SAE reconstructs the inputs where ``u`` fires as well as anywhere; above 1 it
misses more there, which is what a feature the smaller dictionary lacks leaves behind. Unlike the
stitching test (:mod:`.stitching`), which asks whether ``u``'s own decoder direction removes
error and so also passes for children (a child's direction is new to the smaller SAE too), this
asks whether the smaller SAE covers what happens where ``u`` fires: for a child, its parent's
feature is reconstructed there; for a feature of a tree the smaller SAE has no latent for, none
of it is.

Exact over every example: one sparse decode of the smaller SAE's codes (``nnz x d_model``
multiply-adds) for the per-example energies, then one sparse product per feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["RowErrors", "context_row_errors", "error_ratio", "error_ratio_of", "row_errors"]


@dataclass(frozen=True, eq=False)
class RowErrors:
    """The smaller SAE's reconstruction on every example, as energies."""

    residual_sq: np.ndarray
    """float64 (n_examples,): ``|x_n - x̂_n|^2``."""
    centred_sq: np.ndarray
    """float64 (n_examples,): ``|x_n - x̄|^2``."""

    @property
    def fvu(self) -> float:
        """Fraction of variance unexplained over all examples, ``Σ e / Σ v`` (NaN when the inputs
        do not vary)."""
        total = float(self.centred_sq.sum())
        return float(self.residual_sq.sum()) / total if total > 0 else float("nan")


def row_errors(x: np.ndarray, codes: sp.csr_matrix, sae: Any, *, chunk_size: int = 8192) -> RowErrors:
    """Per-example residual and centred input energies of an SAE over its own codes.

    Parameters
    ----------
    x : array of shape (n_examples, d_model), the inputs (memory-mapped is fine)
    codes : CSR matrix of shape (n_examples, n_features), the SAE's codes of ``x``
    sae : :class:`~splatnlp.mechinterp.context.sae.SAE` (its ``decode_csr``: the decoder as the
        SAE applies it, normalization undone with each row's inputs)
    chunk_size : example rows decoded at a time (memory: chunk_size x d_model x 4 bytes x 3)

    Raises
    ------
    ValueError when ``x`` and ``codes`` disagree on the examples or ``chunk_size`` < 1.
    """
    if codes.shape[0] != x.shape[0]:
        raise ValueError(f"codes have {codes.shape[0]} rows and x has {x.shape[0]}; expected the same examples")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n = x.shape[0]
    # The mean input in float64 over every row first: the centred energies need it.
    mean = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, n, chunk_size):
        mean += np.asarray(x[start : start + chunk_size], dtype=np.float64).sum(axis=0)
    mean /= max(n, 1)
    residual_sq = np.empty(n, dtype=np.float64)
    centred_sq = np.empty(n, dtype=np.float64)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        xc = np.asarray(x[start:stop], dtype=np.float32)
        r = xc - sae.decode_csr(codes[start:stop], x=xc)
        residual_sq[start:stop] = np.einsum("nd,nd->n", r, r, dtype=np.float64)
        c = xc.astype(np.float64) - mean
        centred_sq[start:stop] = np.einsum("nd,nd->n", c, c)
    return RowErrors(residual_sq=residual_sq, centred_sq=centred_sq)


def _ratio(weighted_e: np.ndarray, weighted_v: np.ndarray, rows: RowErrors) -> np.ndarray:
    fvu = rows.fvu
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weighted_v > 0, (weighted_e / weighted_v) / fvu, np.nan)


def error_ratio(codes: sp.spmatrix, rows: RowErrors, *, block_rows: int = 8192) -> np.ndarray:
    """The error ratio of every feature of the larger SAE (module docstring).

    Parameters
    ----------
    codes : sparse matrix of shape (n_examples, K_large), the larger SAE's codes (CSR: read in
        blocks of ``block_rows`` examples, no copy of the matrix; other formats are converted)
    rows : :func:`row_errors` of the smaller SAE on the same examples

    Returns
    -------
    float64 array of shape (K_large,); NaN for a feature never active (or active only where the
    input equals the mean), and everywhere when the smaller SAE's error is 0 or undefined.
    """
    n = len(rows.residual_sq)
    if codes.shape[0] != n:
        raise ValueError(f"codes have {codes.shape[0]} rows; the row errors have {n}; expected the same examples")
    csr = codes.tocsr()  # no copy when it is CSR already
    energies = np.stack([rows.residual_sq, rows.centred_sq], axis=1)
    weighted = np.zeros((codes.shape[1], 2))
    for start in range(0, n, block_rows):
        block = csr[start : start + block_rows].astype(np.float64)  # a copy of the block only
        block.data **= 2
        weighted += block.T @ energies[start : start + block_rows]
    weighted_e, weighted_v = weighted[:, 0], weighted[:, 1]
    return _ratio(weighted_e, weighted_v, rows)


def error_ratio_of(example_rows: np.ndarray, values: np.ndarray, rows: RowErrors) -> float:
    """The error ratio of one larger-side feature from its active examples ``example_rows``
    (int, (nnz,)) and codes ``values`` ((nnz,)): :func:`error_ratio` for one column."""
    w = np.square(np.asarray(values, dtype=np.float64))
    idx = np.asarray(example_rows, dtype=np.int64)
    return float(_ratio(np.array([w @ rows.residual_sq[idx]]), np.array([w @ rows.centred_sq[idx]]), rows)[0])


def context_row_errors(ctx: Any, n_examples: int | None = None) -> RowErrors | str:
    """:func:`row_errors` of a context's SAE on its own activations and codes (the first
    ``n_examples`` rows; None: all), or why the test cannot run: the message of the context's
    ``LookupError`` when it kept no activations (built from codes, or ``--no-activations``)."""
    try:
        x = ctx.activations
    except LookupError as err:
        return str(err)
    codes = ctx.codes.csr
    if n_examples is not None and n_examples < x.shape[0]:
        x, codes = x[:n_examples], codes[:n_examples]
    return row_errors(x, codes, ctx.sae)
