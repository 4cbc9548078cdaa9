"""Per-feature statistics, computed once when a context is built.

Stored in a context's ``stats/`` folder as .npy files (shapes for F features, T tokens, k top
examples)::

    frequency.npy         (F,)   share of examples where the feature is active (code > 0)
    mean.npy, std.npy     (F,)   float64, over all examples, zeros included
    mean_active.npy       (F,)   mean over the examples where it is active (NaN if dead)
    max.npy               (F,)
    top_examples.npy      (F, k) int32 row indices, strongest first, -1 where fewer are active
    top_values.npy        (F, k) float32
    top_token_counts.npy  (F, T) float32: how many of the feature's top-k examples hold each token
    token_activation.npy  (F, T) float32: sum of the feature's code over examples holding the token
    token_frequency.npy   (T,)   float32: share of all examples holding each token

T is the combined token space of :meth:`ExampleSet.token_matrix` (ability ids, then weapon ids).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from splatnlp.mechinterp.context.codes import column_blocks
from splatnlp.mechinterp.context.examples import load_npy


@dataclass(frozen=True, eq=False)
class FeatureStats:
    frequency: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    mean_active: np.ndarray
    max: np.ndarray
    top_examples: np.ndarray
    top_values: np.ndarray
    top_token_counts: np.ndarray
    token_activation: np.ndarray
    token_frequency: np.ndarray

    @property
    def n_features(self) -> int:
        return len(self.frequency)

    @property
    def n_top_examples(self) -> int:
        return self.top_examples.shape[1]

    def n_top(self, feature: int) -> int:
        """How many top examples feature ``feature`` has (fewer than k when rarely active)."""
        return int((self.top_examples[feature] >= 0).sum())

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for f in fields(self):
            np.save(directory / f"{f.name}.npy", getattr(self, f.name))

    @classmethod
    def load(cls, directory: str | Path, *, n_features: int, n_tokens: int) -> FeatureStats:
        directory = Path(directory)
        arrays = {f.name: load_npy(directory / f"{f.name}.npy") for f in fields(cls)}
        expected = {"top_token_counts": (n_features, n_tokens), "token_activation": (n_features, n_tokens)}
        for name, arr in arrays.items():
            want = expected.get(name, (n_tokens,) if name == "token_frequency" else None)
            if want is None:
                ok = arr.shape[0] == n_features
                want_text = f"({n_features}, ...)"
            else:
                ok = arr.shape == want
                want_text = str(want)
            if not ok:
                raise ValueError(
                    f"{str(directory / (name + '.npy'))!r} has shape {arr.shape}; expected {want_text}"
                )
        return cls(**arrays)


_STATS_BLOCK_NNZ = 1 << 24
"""Codes per block of :func:`compute_feature_stats`' sums (128 MB of float64 each)."""


def compute_feature_stats(
    csc: sp.csc_matrix, tokens: sp.csr_matrix, *, n_top_examples: int = 100
) -> FeatureStats:
    """Statistics of every feature.

    Parameters
    ----------
    csc : sparse matrix of shape (n_examples, n_features), CSC, non-negative codes
    tokens : binary sparse matrix of shape (n_examples, n_tokens), from ``ExampleSet.token_matrix``
    n_top_examples : how many strongest examples to keep per feature
    """
    n_examples, n_features = csc.shape
    if tokens.shape[0] != n_examples:
        raise ValueError(f"token matrix has {tokens.shape[0]} rows; codes have {n_examples}")
    indptr = np.asarray(csc.indptr, dtype=np.int64)
    counts = np.diff(indptr)
    n = max(n_examples, 1)
    nonempty = counts > 0
    sums, sq, active, mx = (np.zeros(n_features) for _ in range(4))
    # Per-feature sums over blocks of whole columns, float64 within a block: a float64 copy of
    # every code, its column index and its square (3 x 1.8 GB at real scale) made this the
    # peak of a real-preset build (7.2 GB).
    for c0, c1 in column_blocks(indptr, _STATS_BLOCK_NNZ):
        lo = indptr[c0]
        d = np.asarray(csc.data[lo : indptr[c1]], dtype=np.float64)
        cols = np.arange(c0, c1)[nonempty[c0:c1]]
        if len(cols) == 0:
            continue
        starts = indptr[cols] - lo
        sums[cols] = np.add.reduceat(d, starts)
        sq[cols] = np.add.reduceat(d * d, starts)
        active[cols] = np.add.reduceat((d > 0).astype(np.float64), starts)
        mx[cols] = np.maximum.reduceat(d, starts)
    mean = sums / n
    std = np.sqrt(np.maximum(sq / n - mean * mean, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_active = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    k = n_top_examples
    top_examples = np.full((n_features, k), -1, dtype=np.int32)
    top_values = np.zeros((n_features, k), dtype=np.float32)
    rows_all = np.asarray(csc.indices)
    data = csc.data
    for f in np.flatnonzero(nonempty):
        lo, hi = indptr[f], indptr[f + 1]
        values = np.asarray(data[lo:hi], dtype=np.float64)
        if hi - lo > k:
            # Keep every value tied with the k-th largest: argpartition alone would pick among
            # them arbitrarily, and the row tie-break below must decide which ones stay.
            kth = -np.partition(-values, k - 1)[k - 1]
            part = np.flatnonzero(values >= kth)
        else:
            part = np.arange(hi - lo)
        # Strongest first; ties broken by example row so the order is deterministic.
        order = part[np.lexsort((rows_all[lo:hi][part], -values[part]))][:k]
        top_examples[f, : len(order)] = rows_all[lo:hi][order]
        top_values[f, : len(order)] = values[order]

    # Token counts among each feature's top examples: a 0/1 selection matrix times tokens.
    sel_rows, sel_cols = np.nonzero(top_examples >= 0)
    selection = sp.csr_matrix(
        (np.ones(len(sel_rows), dtype=np.float32), (sel_rows, top_examples[sel_rows, sel_cols])),
        shape=(n_features, n_examples),
    )
    tokens = sp.csr_matrix(tokens, dtype=np.float32)
    top_token_counts = (selection @ tokens).toarray().astype(np.float32)
    token_activation = np.asarray((csc.T.tocsr() @ tokens).toarray(), dtype=np.float32)
    token_frequency = np.asarray(tokens.sum(axis=0)).ravel().astype(np.float32) / n
    return FeatureStats(
        frequency=(active / n).astype(np.float32),
        mean=mean,  # float64: exact Pearson from sums needs more than float32's 7 digits
        std=std,
        mean_active=mean_active.astype(np.float32),
        max=mx.astype(np.float32),
        top_examples=top_examples,
        top_values=top_values,
        top_token_counts=top_token_counts,
        token_activation=token_activation,
        token_frequency=token_frequency,
    )
