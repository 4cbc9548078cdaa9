"""How much a feature's siblings lie inside it: the evidence that a larger-side feature sits at
its parent's level (the same feature) rather than below it (a child).

The larger-side features assigned to one smaller-side parent are *siblings*. A child of a
feature fires on part of that feature's examples, and the parts of a split are largely apart:
one child's activation lies mostly outside another's active examples. A latent that reads the
parent's feature itself fires wherever the parent's feature does, so its siblings' activation
lies inside its active examples, while it does not lie inside theirs. For every pair (u, v) of
siblings over n examples:

- ``share(v in u) = sum_n v_n**4 [u_n > 0] / sum_n v_n**4``: the share of v's activation,
  weighted by its fourth power, on the examples where u is active. The fourth power makes a
  sibling's strong activations count and its weak ones not: SAEs that fire ~9 % of their
  latents give every latent many weak activations off its feature.
- chance-corrected: ``nest(v in u) = (share(v in u) - q_u) / (1 - q_u)`` with ``q_u`` the share
  of examples where u is active (what the share would be if v's activation fell at random).

``siblings_inside[u]`` is the mean of ``nest(v in u)`` over u's siblings, ``inside_siblings[u]``
the mean of ``nest(u in v)``; both NaN for a feature with no sibling. The verdict rule that reads
them is in :mod:`~splatnlp.mechinterp.analysis.metrics.verdicts` (``equivalent`` by siblings).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from splatnlp.mechinterp.analysis.metrics.pairs import column_power_sums

__all__ = ["SIBLING_POWER", "sibling_nesting", "sibling_nesting_by_parent", "sibling_nesting_from_sums"]

SIBLING_POWER = 4
"""The power of a sibling's activation that weights its share (module docstring). On the dev
evaluation worlds the fourth power separated same-feature latents from children better than the
plain activation on 4 of 5 worlds (AUC 0.91-0.98 against 0.84-0.98, mean over siblings)."""


def sibling_nesting(columns: sp.spmatrix, n_examples: int) -> tuple[np.ndarray, np.ndarray]:
    """``(siblings_inside, inside_siblings)``, float64 arrays of shape (q,), of q features that
    share a parent (module docstring).

    Parameters
    ----------
    columns : sparse matrix of shape (n_examples, q), the q siblings' codes (no explicit zeros)
    n_examples : the number of examples the codes cover (>= 1)
    """
    x = sp.csc_matrix(columns, dtype=np.float64)
    n, q = x.shape
    if n != n_examples or n_examples < 1:
        raise ValueError(f"columns have {n} rows; expected n_examples = {n_examples} >= 1")
    if q < 2:
        return np.full(q, np.nan), np.full(q, np.nan)
    active = x.copy()
    active.data = (active.data != 0).astype(np.float64)
    weight = x.copy()
    weight.data = weight.data**SIBLING_POWER
    # inside[u, v] = sum over the examples where u is active of v's weight: the co-active part
    # of every pair, one sparse product of the q columns (q x q).
    inside = np.asarray((active.T @ weight).todense())
    total = np.asarray(weight.sum(axis=0)).ravel()
    rate = np.asarray(active.sum(axis=0)).ravel() / n_examples
    return _from_sums(inside, total, rate)


def _from_sums(inside: np.ndarray, total: np.ndarray, rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two means from one parent's sums: ``inside`` (q, q), ``total`` (q,) each sibling's
    summed weight, ``rate`` (q,) each one's share of active examples."""
    q = len(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = inside / total[None, :]
        nest = (share - rate[:, None]) / (1.0 - rate[:, None])  # nest[u, v]: v inside u
    nest[(total[None, :] <= 0) | (rate[:, None] >= 1.0) | np.eye(q, dtype=bool)] = np.nan
    with warnings.catch_warnings():  # a feature whose every share is undefined gets NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(nest, axis=1), np.nanmean(nest, axis=0)


def sibling_nesting_from_sums(
    offsets: np.ndarray, inside4: np.ndarray, csr: sp.spmatrix, parent: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sibling_nesting_by_parent` from the co-active sums of
    :func:`~splatnlp.mechinterp.analysis.metrics.kernels.children_gram` (one compiled pass over
    the rows, which ``align`` makes anyway) instead of a pass over every feature's column.

    Parameters
    ----------
    offsets, inside4 : ``children_gram``'s block offsets (K_small + 1,) and fourth-power sums
    csr : sparse matrix of shape (n_examples, K_large), the codes those sums are over (CSR)
    parent : int array of shape (K_large,), each feature's parent (-1: none)
    count : int array of shape (K_large,), each feature's active examples in ``csr``
    """
    parent = np.asarray(parent, dtype=np.int64)
    n, k = csr.shape
    total = column_power_sums(csr, SIBLING_POWER)
    rate = np.asarray(count, dtype=np.float64) / max(n, 1)
    inside, inside_of = np.full(k, np.nan), np.full(k, np.nan)
    for s, group in _sibling_groups(parent):
        q = len(group)
        block = np.asarray(inside4[offsets[s] : offsets[s + 1]]).reshape(q, q)
        inside[group], inside_of[group] = _from_sums(block, total[group], rate[group])
    return inside, inside_of


def _sibling_groups(parent: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(parent, its children)`` for every parent with two children or more, the children in
    ascending id order: the order ``children_gram`` lays out its blocks in, and the matcher
    slices their columns in, so that every path gets the same sums."""
    has = np.flatnonzero(parent >= 0)
    has = has[np.argsort(parent[has], kind="stable")]  # by parent, ascending ids within one
    bounds = np.flatnonzero(np.diff(parent[has])) + 1
    return [(int(parent[g[0]]), g) for g in np.split(has, bounds) if len(g) >= 2]


def sibling_nesting_by_parent(
    csc: sp.spmatrix, parent: np.ndarray, n_examples: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sibling_nesting` of every larger-side feature among the features that share its
    parent: ``(siblings_inside, inside_siblings)`` of shape (K_large,), NaN for features without
    a parent or without siblings.

    Parameters
    ----------
    csc : sparse matrix of shape (N, K_large), CSC (a column slice reads only that feature's
        entries)
    parent : int array of shape (K_large,), each feature's parent (-1: none)
    n_examples : use the first ``n_examples`` rows (default all N; an alignment of the first
        rows only)
    """
    parent = np.asarray(parent, dtype=np.int64)
    if parent.shape != (csc.shape[1],):
        raise ValueError(f"parent has shape {parent.shape}; expected ({csc.shape[1]},), one per column")
    n = csc.shape[0] if n_examples is None else int(n_examples)
    if not 1 <= n <= csc.shape[0]:
        raise ValueError(f"n_examples = {n_examples!r}; expected 1..{csc.shape[0]} (the rows of csc)")
    inside, inside_of = np.full(len(parent), np.nan), np.full(len(parent), np.nan)
    for _, group in _sibling_groups(parent):
        columns = csc[:, group]
        inside[group], inside_of[group] = sibling_nesting(columns if n == csc.shape[0] else columns[:n], n)
    return inside, inside_of

