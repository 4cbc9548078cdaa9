"""Whole-dictionary alignment of two contexts: every feature of A against every feature of B.

One streamed pass over both contexts' CSR codes accumulates, for every pair ``(i, j)``,

- ``dot[i, j] = sum_n a_ni b_nj`` and ``coactive[i, j] = #{n : a_ni > 0 and b_nj > 0}``,

from which the pair metrics of :mod:`splatnlp.mechinterp.analysis.metrics` follow exactly
(Pearson from sufficient statistics, containments, co-activation Jaccard), the same numbers
:meth:`FeatureMatcher.score_all` gives one source at a time. Memory is bounded by the
accumulators (two float64 arrays of shape (K_a, K_b): 0.8 GB at 24,576 x 2,048) and one chunk of
rows; dense codes of shape (n_examples, n_features) are never built. Per chunk, the side with
more features stays sparse and the other is densified (``chunk_size`` rows of it).

Decoder cosine (weights only) and top-token Jaccard (``analysis/tokens.py``) are all-pairs too.
From the six matrices: each feature's best match by every metric, a many-to-one parent
assignment (each feature of the larger dictionary to its best-correlated feature of the smaller),
a one-to-one Hungarian assignment when the sizes are comparable, a class for every feature, and
a cheap null (one permutation of the example order for a random subset of features; random unit
directions for the decoder).

Undefined values are NaN in the arrays (never 0.0), following :class:`FeatureMatcher`:
correlation where either feature is active on fewer than ``min_active`` examples or has zero
variance; ``P(b|a)`` where ``a`` is rarer than ``min_active`` (and ``P(a|b)`` likewise);
co-activation Jaccard where both are dead; top-token Jaccard where either feature is dead or
both token sets are empty (symmetric, unlike the matcher, which gives a dead *target* 0.0 against
a source with tokens); decoder cosine where either decoder row is the zero vector. A best match
is ``-1`` with score NaN when a feature has no defined score at all.

Saved layout of :func:`save_tables` (``load_tables`` reads it back)::

    report.json            the AlignmentReport (options, fingerprints, summaries, timings)
    a/<array>.npy          per-feature arrays of side A, shape (K_a,), listed in SIDE_ARRAYS
    b/<array>.npy          the same for side B, shape (K_b,)

Arrays: ``best_<metric>_index`` (int64, -1 = none) and ``best_<metric>_score`` (float64, NaN =
none) for each metric in :data:`METRICS`; ``count`` (int64, examples where active); ``parent``
(int64: on the larger side, the assigned feature of the smaller side, -1 = none; on the smaller
side all -1) and ``parent_score`` (its correlation, NaN = none); ``n_assigned`` (int64: on the
smaller side, how many larger-side features were assigned to it; 0 on the larger side);
``hungarian`` / ``hungarian_score`` (the one-to-one partner, -1 / NaN when skipped or unpaired);
``class_label`` (fixed-width unicode, see :data:`SMALL_CLASSES` and :data:`LARGE_CLASSES`).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.optimize
import scipy.sparse as sp
import torch
from pydantic import BaseModel, ConfigDict, Field

from splatnlp.mechinterp.analysis import metrics as M
from splatnlp.mechinterp.analysis.matcher import FeatureArrays, MatchOptions
from splatnlp.mechinterp.analysis.tokens import TopTokenMethod
from splatnlp.mechinterp.context import MechInterpContext

__all__ = [
    "AlignOptions",
    "AlignmentReport",
    "AlignmentTables",
    "align_contexts",
    "load_tables",
    "save_tables",
]

METRICS: tuple[str, ...] = (
    "activation_correlation",
    "coactivation_jaccard",
    "p_b_given_a",
    "p_a_given_b",
    "decoder_cosine",
    "top_token_overlap",
)
"""The all-pairs metrics, each a (K_a, K_b) matrix; ``p_b_given_a`` is P(b > 0 | a > 0)."""

SMALL_CLASSES: tuple[str, ...] = ("split_parent", "equivalent", "partial", "unique", "dead")
"""Classes of the smaller dictionary's features: ``dead`` never active; ``split_parent`` >= 2
larger-side features assigned; ``equivalent`` exactly one, with correlation >=
``equivalent_correlation``; ``partial`` exactly one, below it; ``unique`` none."""

LARGE_CLASSES: tuple[str, ...] = ("split_child", "equivalent", "partial", "novel", "dead")
"""Classes of the larger dictionary's features: ``dead`` never active; ``novel`` no parent (best
correlation below ``related_correlation`` or undefined); otherwise the parent's class
(``split_child`` for a split parent)."""

SIDE_ARRAYS: tuple[str, ...] = (
    *(f"best_{m}_{k}" for m in METRICS for k in ("index", "score")),
    "count",
    "parent",
    "parent_score",
    "n_assigned",
    "hungarian",
    "hungarian_score",
    "class_label",
)
NULL_QUANTILES = (0.5, 0.95, 0.99)


class AlignOptions(BaseModel):
    """How two dictionaries are aligned. Thresholds default to :class:`MatchOptions`'s."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk_size: int = Field(2048, ge=1)
    """Example rows per streamed chunk; memory is about chunk_size x (smaller K) x 8 bytes."""
    product: Literal["scipy", "torch"] = "torch"
    """Sparse-times-dense kernel per chunk. torch's CSR kernel is multi-threaded (measured 2.2x
    faster than scipy's on 2 cores on the tiny demo: 6.4 s vs 13.9 s for the
    pass at chunk 2048; 7.9 s vs 14.5 s at 512); both give the same sums."""
    min_active: int = Field(5, ge=1)
    """Features active on fewer examples get no correlation or containment (NaN)."""
    related_correlation: float = Field(0.3, ge=-1.0, le=1.0)
    """A larger-side feature is assigned to its best-correlated smaller-side feature only when
    their correlation reaches this."""
    equivalent_correlation: float = Field(0.85, ge=-1.0, le=1.0)
    """A smaller-side feature with exactly one assigned feature is ``equivalent`` at or above
    this correlation, ``partial`` below."""
    hungarian_max_ratio: float = Field(2.0, ge=1.0)
    """Run the one-to-one Hungarian assignment only when max(K)/min(K) is at most this."""
    share_threshold: float = 0.5
    """``share_above_*`` in the metric summaries counts best scores at least this."""
    top_token_method: TopTokenMethod = "enrichment"
    n_top_tokens: int = Field(10, ge=1)
    n_null_features: int = Field(256, ge=0)
    """Random features of each side whose correlations are recomputed with the example order of
    that side shuffled once (0: no activation null)."""
    n_null_directions: int = Field(256, ge=0)
    """Random unit directions compared with the other side's decoder (0: no decoder null)."""
    seed: int = 0
    keep_matrices: bool = False
    """Keep the six (K_a, K_b) matrices (float32) on the result; 0.2 GB each at real scale."""


class MetricSummary(BaseModel):
    """Best-match scores of one metric, both ways."""

    mean_max_a: float | None
    """Mean over A features (with a defined score) of their best score against B."""
    mean_max_b: float | None
    share_above_a: float | None
    """Share of A features (with a defined score) whose best score is >= ``threshold``."""
    share_above_b: float | None
    threshold: float
    n_defined_a: int
    n_defined_b: int


class NullSummary(BaseModel):
    """Chance levels beside the best-match summaries."""

    correlation_max_a: dict[str, float] | None
    """Quantiles ("0.5", "0.95", "0.99") of the best correlation against all of B of random A
    features with A's example order shuffled once; None when not computed."""
    correlation_max_b: dict[str, float] | None
    n_null_features_a: int
    n_null_features_b: int
    decoder_max_a: dict[str, float] | None
    """Quantiles of the best cosine of a uniformly random unit direction with B's decoder rows
    (the chance level of A features' best decoder cosine)."""
    decoder_max_b: dict[str, float] | None
    seed: int


class HungarianSummary(BaseModel):
    n_pairs: int
    """min(K_a, K_b) pairs, from ``linear_sum_assignment`` on -correlation (NaN as 0)."""
    mean_correlation: float | None
    """Mean correlation of the pairs with a defined one."""
    n_related: int
    """Pairs with correlation >= ``related_correlation``."""


class AlignmentReport(BaseModel):
    """Summary of :func:`align_contexts` (JSON round-trip); per-feature arrays live in
    :class:`AlignmentTables`."""

    model_config = ConfigDict(extra="forbid")

    a_name: str
    b_name: str
    a_model: str
    b_model: str
    a_fingerprint: str
    b_fingerprint: str
    n_examples: int
    n_features_a: int
    n_features_b: int
    options: AlignOptions
    larger_side: Literal["a", "b"]
    """The side assigned many-to-one to the other (B when the sizes are equal)."""
    metrics: dict[str, MetricSummary]
    class_counts_a: dict[str, int]
    class_counts_b: dict[str, int]
    hungarian: HungarianSummary | None
    hungarian_skipped: str | None
    """Why the Hungarian assignment was skipped (sizes too different), or None."""
    null: NullSummary
    elapsed_s: float
    timings_s: dict[str, float]
    """Seconds per stage: ``stream``, ``metrics``, ``tokens``, ``decoder``, ``assign``, ``null``."""
    warnings: list[str] = []


@dataclass(eq=False)
class AlignmentTables:
    """What :func:`align_contexts` returns: the report, per-feature arrays of both sides
    (names in :data:`SIDE_ARRAYS`), and the (K_a, K_b) matrices when ``keep_matrices``."""

    report: AlignmentReport
    a: dict[str, np.ndarray]
    b: dict[str, np.ndarray]
    matrices: dict[str, np.ndarray] | None = None


# -- streaming ---------------------------------------------------------------------------------
def _sparse_t_dense(sparse: sp.csr_matrix, dense: np.ndarray, product: str) -> np.ndarray:
    """``sparse.T @ dense`` of a (rows, K_s) CSR chunk and a (rows, m) array -> (K_s, m)."""
    if product == "scipy":
        return np.asarray(sparse.T @ dense)
    t = sparse.T.tocsr()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        tensor = torch.sparse_csr_tensor(
            torch.from_numpy(t.indptr.astype(np.int64)),
            torch.from_numpy(t.indices.astype(np.int64)),
            torch.from_numpy(np.ascontiguousarray(t.data, dtype=np.float32)),
            size=t.shape,
            check_invariants=False,  # built from a canonical scipy CSR just above
        )
    return torch.sparse.mm(tensor, torch.from_numpy(dense)).numpy()


def pair_sums_streamed(
    a_csr: sp.csr_matrix,
    b_csr: sp.csr_matrix,
    *,
    chunk_size: int = 2048,
    product: Literal["scipy", "torch"] = "torch",
) -> tuple[np.ndarray, np.ndarray]:
    """All-pairs ``dot`` and ``coactive`` over the examples, streamed in row chunks.

    Parameters
    ----------
    a_csr : sparse matrix of shape (n_examples, K_a), CSR, no explicit zeros
    b_csr : sparse matrix of shape (n_examples, K_b), CSR, same rows
    chunk_size : rows per chunk (>= 1)

    Returns (dot, coactive), both float64 arrays of shape (K_a, K_b); coactive holds integers.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if a_csr.shape[0] != b_csr.shape[0]:
        raise ValueError(f"a has {a_csr.shape[0]} rows and b has {b_csr.shape[0]}; expected the same examples")
    n = a_csr.shape[0]
    # The side with more features stays sparse: densifying it would cost chunk x K_large floats.
    swap = a_csr.shape[1] < b_csr.shape[1]
    sparse_side, dense_side = (b_csr, a_csr) if swap else (a_csr, b_csr)
    k_s, k_d = sparse_side.shape[1], dense_side.shape[1]
    dot = np.zeros((k_s, k_d))
    coactive = np.zeros((k_s, k_d))
    for start in range(0, n, int(chunk_size)):
        stop = min(start + int(chunk_size), n)
        s = sp.csr_matrix(sparse_side[start:stop], dtype=np.float32)
        d = dense_side[start:stop].toarray().astype(np.float32, copy=False)
        # float32 products, summed into float64 per chunk: within a chunk the error stays ~1e-7
        # relative, and the chunk sums never lose digits to the running total.
        dot += _sparse_t_dense(s, d, product)
        s.data[:] = 1.0  # stored entries are active ones (codes have no explicit zeros)
        # float32 counts are exact below 2**24 rows per chunk.
        coactive += _sparse_t_dense(s, (d > 0).astype(np.float32), product)
    if swap:
        return dot.T, coactive.T
    return dot, coactive


# -- matrices from sums ------------------------------------------------------------------------
def _correlation(dot, n, a: FeatureArrays, b: FeatureArrays, min_active: int) -> np.ndarray:
    """Pearson from sums, float64, NaN where undefined; overwrites and returns ``dot``."""
    # In place: these are (K_a, K_b) arrays, 0.4 GB each at real scale.
    r = dot
    r /= n
    r -= a.mean[:, None] * b.mean[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        r /= a.std[:, None] * b.std[None, :]
    np.clip(r, -1.0, 1.0, out=r)
    bad_a = (a.count < min_active) | (a.std == 0)
    bad_b = (b.count < min_active) | (b.std == 0)
    r[bad_a, :] = np.nan
    r[:, bad_b] = np.nan
    return r


def _containment(coactive, count_given: np.ndarray, min_active: int, axis: int) -> np.ndarray:
    """coactive / count of the conditioning side (rows when axis 0, columns when 1)."""
    count = count_given.astype(coactive.dtype)
    shape = (-1, 1) if axis == 0 else (1, -1)
    ok = (count >= min_active).reshape(shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, coactive / np.maximum(count, 1).reshape(shape), np.nan)


def _coactivation_jaccard(coactive, count_a, count_b) -> np.ndarray:
    union = count_a[:, None].astype(coactive.dtype) + count_b[None, :].astype(coactive.dtype) - coactive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, coactive / np.where(union > 0, union, 1.0), np.nan)


def _token_jaccard(a: FeatureArrays, b: FeatureArrays) -> np.ndarray:
    # Dense float32 product: the token space is small (~200), and a sparse product with a
    # nearly dense (K_a, K_b) result was 4x slower. Counts <= n_top_tokens are exact in float32.
    sets_a = a.token_sets.toarray().astype(np.float32)
    sets_b = b.token_sets.toarray().astype(np.float32)
    inter = (sets_a @ sets_b.T).astype(np.float64)
    union = sets_a.sum(1)[:, None] + sets_b.sum(1)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(union > 0, inter / np.where(union > 0, union, 1.0), np.nan)
    # A dead feature has no top examples to take tokens from: undefined, not "no overlap".
    jac[a.count == 0, :] = np.nan
    jac[:, b.count == 0] = np.nan
    return jac


def _best(matrix: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Best index and score along ``axis`` (1: each row's best column); -1 / NaN when none."""
    filled = np.nan_to_num(matrix, nan=-np.inf, neginf=-np.inf)
    idx = np.argmax(filled, axis=axis)
    score = np.take_along_axis(filled, np.expand_dims(idx, axis), axis).squeeze(axis)
    none = ~np.isfinite(score)
    return np.where(none, -1, idx).astype(np.int64), np.where(none, np.nan, score).astype(np.float64)


def _quantiles(values: np.ndarray) -> dict[str, float] | None:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    return {str(q): float(np.quantile(values, q)) for q in NULL_QUANTILES}


def _summary(best_a: np.ndarray, best_b: np.ndarray, threshold: float) -> MetricSummary:
    def stats(x):
        x = x[np.isfinite(x)]
        if len(x) == 0:
            return None, None, 0
        return float(x.mean()), float((x >= threshold).mean()), len(x)

    mean_a, share_a, n_a = stats(best_a)
    mean_b, share_b, n_b = stats(best_b)
    return MetricSummary(
        mean_max_a=mean_a, mean_max_b=mean_b, share_above_a=share_a, share_above_b=share_b,
        threshold=threshold, n_defined_a=n_a, n_defined_b=n_b,
    )


# -- nulls -------------------------------------------------------------------------------------
def _correlation_null(
    mine: FeatureArrays, other: FeatureArrays, n_features: int, opt: AlignOptions, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Best correlation against all of ``other`` of up to ``n_features`` random live features of
    ``mine`` after one shuffle of their example order; returns (best per feature, how many)."""
    live = np.flatnonzero((mine.count >= opt.min_active) & (mine.std > 0))
    if n_features == 0 or len(live) == 0:
        return np.zeros(0), 0
    subset = np.sort(rng.choice(live, size=min(n_features, len(live)), replace=False))
    n = mine.ctx.n_examples
    perm = rng.permutation(n)
    # A shuffle keeps every feature's moments, so the real means and stds still apply.
    shuffled = sp.csr_matrix(mine.ctx.codes.csc[:, subset].tocsr()[perm])
    shuffled.sort_indices()
    dot, _ = pair_sums_streamed(shuffled, other.ctx.codes.csr, chunk_size=opt.chunk_size, product=opt.product)
    sub = _SubSide(mine, subset)
    r = _correlation(dot, n, sub, other, opt.min_active)
    return _best(r, axis=1)[1], len(subset)


class _SubSide:
    """The moments of some features of a side, shaped like :class:`FeatureArrays` for _correlation."""

    def __init__(self, side: FeatureArrays, subset: np.ndarray):
        self.mean, self.std, self.count = side.mean[subset], side.std[subset], side.count[subset]


def _decoder_null(other: FeatureArrays, n_directions: int, rng: np.random.Generator) -> np.ndarray:
    """Best cosine of uniformly random unit directions with ``other``'s unit decoder rows."""
    if n_directions == 0:
        return np.zeros(0)
    d = other.decoder.shape[1]
    directions = M.unit_rows(rng.standard_normal((n_directions, d)))
    return _best((directions @ other.decoder.T).astype(np.float64), axis=1)[1]


# -- assignment and classes --------------------------------------------------------------------
def _assign(corr_large_small: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Each larger-side row's best smaller-side column if its correlation >= threshold."""
    idx, score = _best(corr_large_small, axis=1)
    keep = np.isfinite(score) & (score >= threshold)
    return np.where(keep, idx, -1), np.where(keep, score, np.nan)


def _classify(parent, parent_score, count_small, count_large, equivalent_correlation):
    n_assigned = np.bincount(parent[parent >= 0], minlength=len(count_small)).astype(np.int64)
    # The single assigned feature's correlation decides equivalent vs partial.
    single_score = np.full(len(count_small), np.nan)
    has = parent >= 0
    single_score[parent[has]] = parent_score[has]  # only read where n_assigned == 1
    small = np.full(len(count_small), "unique", dtype="U12")
    small[n_assigned >= 2] = "split_parent"
    one = n_assigned == 1
    with np.errstate(invalid="ignore"):
        small[one & (single_score >= equivalent_correlation)] = "equivalent"
    small[one & ~(single_score >= equivalent_correlation)] = "partial"
    small[count_small == 0] = "dead"
    large = np.full(len(count_large), "novel", dtype="U12")
    parent_class = small[parent[has]]
    large[has] = np.where(parent_class == "split_parent", "split_child", parent_class)
    large[count_large == 0] = "dead"
    return small, large, n_assigned


def _counts(labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, int]:
    return {c: int((labels == c).sum()) for c in classes}


# -- public API --------------------------------------------------------------------------------
def align_contexts(
    a: MechInterpContext, b: MechInterpContext, *, options: AlignOptions | None = None
) -> AlignmentTables:
    """Align every feature of ``a`` with every feature of ``b`` over their shared examples.

    Parameters
    ----------
    a, b : contexts over the same example set (equal fingerprints)
    options : :class:`AlignOptions`

    Returns
    -------
    AlignmentTables
        ``report`` (summary, JSON-ready), ``a`` / ``b`` per-feature arrays of shape (K_a,) /
        (K_b,) named in :data:`SIDE_ARRAYS`, and ``matrices`` ((K_a, K_b) float32 per metric in
        :data:`METRICS`) when ``options.keep_matrices``.

    Raises
    ------
    TypeError for non-context inputs; ValueError for contexts over different example sets.
    """
    t0 = time.perf_counter()
    opt = options or AlignOptions()
    if not isinstance(opt, AlignOptions):
        raise TypeError(f"options must be AlignOptions, got {type(opt).__name__}")
    for name, ctx in (("a", a), ("b", b)):
        if not isinstance(ctx, MechInterpContext):
            raise TypeError(f"{name} must be a MechInterpContext, got {type(ctx).__name__}")
    if a.fingerprint != b.fingerprint or a.n_examples != b.n_examples:
        raise ValueError(
            f"contexts {a.name!r} ({a.fingerprint}, {a.n_examples} examples) and {b.name!r} "
            f"({b.fingerprint}, {b.n_examples} examples) are over different example sets; "
            "alignment needs codes on one shared example set"
        )
    match_opt = MatchOptions(
        min_active=opt.min_active, top_token_method=opt.top_token_method, n_top_tokens=opt.n_top_tokens
    )
    side_a, side_b = FeatureArrays(a, match_opt), FeatureArrays(b, match_opt)
    n = a.n_examples
    timings: dict[str, float] = {}
    notes: list[str] = []

    t = time.perf_counter()
    dot, coactive = pair_sums_streamed(a.codes.csr, b.codes.csr, chunk_size=opt.chunk_size, product=opt.product)
    timings["stream"] = time.perf_counter() - t

    tables_a: dict[str, np.ndarray] = {"count": side_a.count.astype(np.int64)}
    tables_b: dict[str, np.ndarray] = {"count": side_b.count.astype(np.int64)}
    matrices: dict[str, np.ndarray] = {}
    summaries: dict[str, MetricSummary] = {}
    corr: np.ndarray | None = None

    def record(name: str, matrix: np.ndarray) -> None:
        filled = np.nan_to_num(matrix, nan=-np.inf, neginf=-np.inf)  # one copy serves both directions
        for side, axis in ((tables_a, 1), (tables_b, 0)):
            side[f"best_{name}_index"], side[f"best_{name}_score"] = _best(filled, axis)
        del filled
        summaries[name] = _summary(
            tables_a[f"best_{name}_score"], tables_b[f"best_{name}_score"], opt.share_threshold
        )
        if opt.keep_matrices:
            matrices[name] = matrix.astype(np.float32)

    # One derived matrix at a time, so peak memory is the two accumulators plus one more.
    t = time.perf_counter()
    corr = _correlation(dot, n, side_a, side_b, opt.min_active)
    del dot
    record("activation_correlation", corr)
    # Counts are exact in float32 (< 2**24 examples); halving the memory traffic of these
    # elementwise (K_a, K_b) passes cut them by about half.
    coactive = coactive.astype(np.float32)
    record("coactivation_jaccard", _coactivation_jaccard(coactive, side_a.count, side_b.count))
    record("p_b_given_a", _containment(coactive, side_a.count, opt.min_active, axis=0))
    record("p_a_given_b", _containment(coactive, side_b.count, opt.min_active, axis=1))
    del coactive
    timings["metrics"] = time.perf_counter() - t

    t = time.perf_counter()
    if a.d_model == b.d_model:
        # float32 like FeatureMatcher's cosine_rows (the same numbers), then float64 for NaN-safe ops.
        dec = np.clip((side_a.decoder @ side_b.decoder.T).astype(np.float64), -1.0, 1.0)
    else:
        dec = np.full((a.n_features, b.n_features), np.nan)
        notes.append(
            f"decoder cosine is undefined: d_model differs ({a.d_model} for {a.name!r}, "
            f"{b.d_model} for {b.name!r})"
        )
    record("decoder_cosine", dec)
    del dec
    timings["decoder"] = time.perf_counter() - t
    t = time.perf_counter()
    record("top_token_overlap", _token_jaccard(side_a, side_b))
    timings["tokens"] = time.perf_counter() - t

    # Many-to-one: each feature of the larger dictionary to its best-correlated smaller one.
    t = time.perf_counter()
    larger: Literal["a", "b"] = "a" if a.n_features > b.n_features else "b"
    large, small = (tables_a, tables_b) if larger == "a" else (tables_b, tables_a)
    corr_ls = corr if larger == "a" else corr.T
    parent, parent_score = _assign(corr_ls, opt.related_correlation)
    small_cls, large_cls, n_assigned = _classify(
        parent, parent_score, small["count"], large["count"], opt.equivalent_correlation
    )
    large.update(parent=parent, parent_score=parent_score, n_assigned=np.zeros(len(parent), np.int64))
    small.update(
        parent=np.full(len(n_assigned), -1, np.int64),
        parent_score=np.full(len(n_assigned), np.nan),
        n_assigned=n_assigned,
    )
    large["class_label"], small["class_label"] = large_cls, small_cls

    ratio = max(a.n_features, b.n_features) / min(a.n_features, b.n_features)
    hungarian, skipped = None, None
    for side, k in ((tables_a, a.n_features), (tables_b, b.n_features)):
        side["hungarian"], side["hungarian_score"] = np.full(k, -1, np.int64), np.full(k, np.nan)
    if ratio <= opt.hungarian_max_ratio:
        rows, cols = scipy.optimize.linear_sum_assignment(-np.nan_to_num(corr, nan=0.0))
        scores = corr[rows, cols]
        tables_a["hungarian"][rows], tables_a["hungarian_score"][rows] = cols, scores
        tables_b["hungarian"][cols], tables_b["hungarian_score"][cols] = rows, scores
        defined = scores[np.isfinite(scores)]
        with np.errstate(invalid="ignore"):
            n_related = int((scores >= opt.related_correlation).sum())
        hungarian = HungarianSummary(
            n_pairs=len(rows),
            mean_correlation=float(defined.mean()) if len(defined) else None,
            n_related=n_related,
        )
    else:
        skipped = (
            f"sizes differ {ratio:.1f}x ({a.n_features} vs {b.n_features} features), more than "
            f"hungarian_max_ratio={opt.hungarian_max_ratio}: a one-to-one assignment would leave "
            "most of the larger dictionary unpaired; see the many-to-one parent assignment"
        )
    timings["assign"] = time.perf_counter() - t
    del corr

    t = time.perf_counter()
    rng = np.random.default_rng(opt.seed)
    null_a, n_null_a = _correlation_null(side_a, side_b, opt.n_null_features, opt, rng)
    null_b, n_null_b = _correlation_null(side_b, side_a, opt.n_null_features, opt, rng)
    same_d = a.d_model == b.d_model
    null = NullSummary(
        correlation_max_a=_quantiles(null_a),
        correlation_max_b=_quantiles(null_b),
        n_null_features_a=n_null_a,
        n_null_features_b=n_null_b,
        decoder_max_a=_quantiles(_decoder_null(side_b, opt.n_null_directions, rng)) if same_d else None,
        decoder_max_b=_quantiles(_decoder_null(side_a, opt.n_null_directions, rng)) if same_d else None,
        seed=opt.seed,
    )
    timings["null"] = time.perf_counter() - t

    report = AlignmentReport(
        a_name=a.name,
        b_name=b.name,
        a_model=a.model_type,
        b_model=b.model_type,
        a_fingerprint=a.fingerprint,
        b_fingerprint=b.fingerprint,
        n_examples=n,
        n_features_a=a.n_features,
        n_features_b=b.n_features,
        options=opt,
        larger_side=larger,
        metrics=summaries,
        class_counts_a=_counts(tables_a["class_label"], LARGE_CLASSES if larger == "a" else SMALL_CLASSES),
        class_counts_b=_counts(tables_b["class_label"], LARGE_CLASSES if larger == "b" else SMALL_CLASSES),
        hungarian=hungarian,
        hungarian_skipped=skipped,
        null=null,
        elapsed_s=time.perf_counter() - t0,
        timings_s={k: round(v, 4) for k, v in timings.items()},
        warnings=notes,
    )
    return AlignmentTables(report=report, a=tables_a, b=tables_b, matrices=matrices or None)


def save_tables(tables: AlignmentTables, directory: str | Path) -> Path:
    """Write ``report.json`` and the per-feature arrays (layout in the module docstring); the
    (K_a, K_b) matrices are not saved. Returns the folder."""
    directory = Path(directory)
    for name, side in (("a", tables.a), ("b", tables.b)):
        (directory / name).mkdir(parents=True, exist_ok=True)
        for key in SIDE_ARRAYS:
            np.save(directory / name / f"{key}.npy", side[key], allow_pickle=False)
    (directory / "report.json").write_text(tables.report.model_dump_json(indent=2))
    return directory


def load_tables(directory: str | Path) -> AlignmentTables:
    """Read what :func:`save_tables` wrote (without matrices)."""
    directory = Path(directory)
    path = directory / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"no alignment report at {str(path)!r}; write it with save_tables")
    report = AlignmentReport.model_validate(json.loads(path.read_text()))
    sides = {}
    for name, k in (("a", report.n_features_a), ("b", report.n_features_b)):
        arrays = {}
        for key in SIDE_ARRAYS:
            file = directory / name / f"{key}.npy"
            if not file.is_file():
                raise FileNotFoundError(f"alignment table {str(file)!r} is missing")
            arr = np.load(file, allow_pickle=False)
            if arr.shape != (k,):
                raise ValueError(f"{str(file)!r} has shape {arr.shape}; expected ({k},)")
            arrays[key] = arr
        sides[name] = arrays
    return AlignmentTables(report=report, a=sides["a"], b=sides["b"])
