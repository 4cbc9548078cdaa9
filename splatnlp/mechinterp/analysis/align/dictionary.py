"""Whole-dictionary alignment of two contexts: every feature of A against every feature of B.

One streamed pass over both contexts' CSR codes accumulates, for every pair ``(i, j)``,

- ``dot[i, j] = sum_n a_ni b_nj`` and ``coactive[i, j] = #{n : a_ni > 0 and b_nj > 0}``,

from which the pair metrics of :mod:`splatnlp.mechinterp.analysis.metrics.pairs` follow exactly
(Pearson from sufficient statistics, containments, co-activation Jaccard), the same numbers
:meth:`FeatureMatcher.score_all` gives one source at a time. Memory is bounded by the
accumulators (two float64 arrays of shape (K_a, K_b): 0.8 GB at 24,576 x 2,048), the float32 pair
index kept for ``save_tables`` (0.6 GB there; ``AlignOptions(keep_index=False)`` drops it) and one
chunk of rows; dense codes of shape (n_examples, n_features) are never built. The default kernel
visits only co-active pairs (``analysis/metrics/kernels.py``); the fallback densifies the side
with fewer features per chunk (``chunk_size`` rows of it).

Decoder cosine (weights only) and top-token Jaccard (``analysis/tokens.py``) are all-pairs too.
From the six matrices: each feature's best match by every metric, a many-to-one parent
assignment (each feature of the larger dictionary to its best-correlated feature of the smaller),
a one-to-one Hungarian assignment when the sizes are comparable, a class for every feature, and
a cheap null (one permutation of the example order for a random subset of features; random unit
directions for the decoder), a heatmap block for the plots (``analysis/plots.py``) and, with
``options.cka``, linear CKA of the two code matrices (``analysis/metrics/cka.py``). The streamed
products are in ``analysis/metrics/streamed.py``.

Undefined values are NaN in the arrays (never 0.0), following :class:`FeatureMatcher`:
correlation where either feature is active on fewer than ``min_active`` examples or has zero
variance; ``p_target_given_source`` (P(b|a)) where ``a`` is rarer than ``min_active``
(``p_source_given_target``, P(a|b), likewise);
co-activation Jaccard where both are dead; top-token Jaccard where either feature is dead or
both token sets are empty (symmetric, unlike the matcher, which gives a dead *target* 0.0 against
a source with tokens); decoder cosine where either decoder row is the zero vector. A best match
is ``-1`` with score NaN when a feature has no defined score at all.

The options, report models and saved layout live in :mod:`splatnlp.mechinterp.analysis.align.tables`
(re-exported here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.optimize
import scipy.sparse as sp

from splatnlp.mechinterp.analysis.align.index import index_meta
from splatnlp.mechinterp.analysis.align.report import (
    BLOCK_ARRAYS,
    LARGE_CLASSES,
    METRICS,
    NULL_ARRAYS,
    NULL_QUANTILES,
    SIDE_ARRAYS,
    SMALL_CLASSES,
    AlignedFeature,
    AlignmentReport,
    AlignOptions,
    HungarianSummary,
    MetricSummary,
    NullSummary,
)
from splatnlp.mechinterp.analysis.align.tables import (
    AlignmentTables,
    larger_side_confidence,
    load_tables,
    save_tables,
)
from splatnlp.mechinterp.analysis.metrics import kernels
from splatnlp.mechinterp.analysis.metrics import pairs as M
from splatnlp.mechinterp.analysis.metrics import proportionality as PROP
from splatnlp.mechinterp.analysis.metrics import reconstruction as REC
from splatnlp.mechinterp.analysis.metrics import siblings as SIB
from splatnlp.mechinterp.analysis.metrics import verdicts as V
from splatnlp.mechinterp.analysis.metrics.cka import linear_cka
from splatnlp.mechinterp.analysis.metrics.features import FeatureArrays
from splatnlp.mechinterp.analysis.metrics.streamed import pair_sums_streamed, resolve_device
from splatnlp.mechinterp.context import MechInterpContext

__all__ = [
    "BLOCK_ARRAYS",
    "LARGE_CLASSES",
    "METRICS",
    "NULL_ARRAYS",
    "SIDE_ARRAYS",
    "SMALL_CLASSES",
    "AlignOptions",
    "AlignedFeature",
    "AlignmentReport",
    "AlignmentTables",
    "align_contexts",
    "load_tables",
    "pair_sums_streamed",
    "save_tables",
]

HEATMAP_ROWS = 48
"""Random smaller-side features with at least one assigned feature drawn into the heatmap."""
HEATMAP_CHILDREN = 6
"""At most this many assigned features per heatmap row (the best-correlated ones)."""

# -- matrices from sums ------------------------------------------------------------------------
def _correlation(dot, n, a: _Moments, b: _Moments, min_active: int) -> np.ndarray:
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
    union = (
        count_a[:, None].astype(coactive.dtype) + count_b[None, :].astype(coactive.dtype) - coactive
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, coactive / np.where(union > 0, union, 1.0), np.nan)


def _token_jaccard(
    a: FeatureArrays, b: FeatureArrays, count_a: np.ndarray, count_b: np.ndarray
) -> np.ndarray:
    # Dense float32 product: the token space is small (~200), and a sparse product with a
    # nearly dense (K_a, K_b) result was 4x slower. Counts <= n_top_tokens are exact in float32.
    # The ratio stays in float32: Jaccards of sets of <= n_top_tokens differ by >= 1/(2n)^2, far
    # above float32's rounding, so every order and tie is the float64 one (half the memory).
    sets_a = a.token_sets.toarray().astype(np.float32)
    sets_b = b.token_sets.toarray().astype(np.float32)
    inter = sets_a @ sets_b.T
    union = sets_a.sum(1)[:, None] + sets_b.sum(1)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        union[union <= 0] = np.nan  # 0 / NaN = NaN: undefined where both sets are empty
        jac = np.divide(inter, union, out=inter)
    # A dead feature has no top examples to take tokens from: undefined, not "no overlap".
    jac[count_a == 0, :] = np.nan
    jac[:, count_b == 0] = np.nan
    return jac


def _best(matrix: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Best index and score along ``axis`` (1: each row's best column); -1 / NaN when none."""
    rows, cols = kernels.best_of_rows_and_columns(matrix)
    return rows if axis == 1 else cols


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
        mean_max_a=mean_a,
        mean_max_b=mean_b,
        share_above_a=share_a,
        share_above_b=share_b,
        threshold=threshold,
        n_defined_a=n_a,
        n_defined_b=n_b,
    )


# -- nulls -------------------------------------------------------------------------------------
@dataclass
class _Moments:
    """Per-feature count, mean and std (population) over the rows aligned, shape (K,) each."""

    count: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, side: FeatureArrays) -> _Moments:
        return cls(count=side.count, mean=side.mean, std=side.std)

    @classmethod
    def from_rows(cls, csr: sp.csr_matrix) -> _Moments:
        """Moments of the columns of a (n, K) CSR slice; std zeroed like FeatureArrays.std."""
        n, k = csr.shape
        idx = np.asarray(csr.indices)
        data = np.asarray(csr.data, dtype=np.float64)
        mean = np.bincount(idx, weights=data, minlength=k) / n
        sq = np.bincount(idx, weights=data * data, minlength=k) / n
        std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
        std = np.where(std <= 1e-5 * np.abs(mean), 0.0, std)  # see FeatureArrays.std
        return cls(count=np.bincount(idx, minlength=k).astype(np.int64), mean=mean, std=std)

    def subset(self, features: np.ndarray) -> _Moments:
        return _Moments(
            count=self.count[features], mean=self.mean[features], std=self.std[features]
        )


def _correlation_null(
    mine_ctx: MechInterpContext,
    mine: _Moments,
    other_csr: sp.csr_matrix,
    other: _Moments,
    opt: AlignOptions,
    rng: np.random.Generator,
) -> np.ndarray:
    """Best correlation against all of ``other`` of up to ``opt.n_null_features`` random live
    features of ``mine`` after one shuffle of their example order (over the first
    ``other_csr.shape[0]`` examples), one value per feature."""
    live = np.flatnonzero((mine.count >= opt.min_active) & (mine.std > 0))
    if opt.n_null_features == 0 or len(live) == 0:
        return np.zeros(0)
    subset = np.sort(rng.choice(live, size=min(opt.n_null_features, len(live)), replace=False))
    n = other_csr.shape[0]
    perm = rng.permutation(n)
    # Columns from the CSC copy (a few hundred column reads), then the aligned rows, shuffled.
    # A shuffle keeps every feature's moments, so the real means and stds still apply.
    shuffled = sp.csr_matrix(mine_ctx.codes.csc[:, subset].tocsr()[:n][perm])
    shuffled.sort_indices()
    dot, _ = pair_sums_streamed(
        shuffled, other_csr, chunk_size=opt.chunk_size, product=opt.product, device=opt.device
    )
    r = _correlation(dot, n, mine.subset(subset), other, opt.min_active)
    return _best(r, axis=1)[1]


def _decoder_null(other: FeatureArrays, n_directions: int, rng: np.random.Generator) -> np.ndarray:
    """Best cosine of uniformly random unit directions with ``other``'s unit decoder rows."""
    if n_directions == 0:
        return np.zeros(0)
    d = other.decoder.shape[1]
    directions = M.unit_rows(rng.standard_normal((n_directions, d)))
    return _best((directions @ other.decoder.T).astype(np.float64), axis=1)[1]


# -- assignment and classes --------------------------------------------------------------------
def _classify(
    parent, parent_score, parent_decoder, count_small, count_large, opt: AlignOptions, *, coactive_lower=None,
    siblings=(None, None), proportion=(None, None),
):
    """Classes of both sides from the parent assignment (rules in analysis/metrics/verdicts.py);
    ``siblings``: the larger side's (siblings_inside, inside_siblings); ``proportion``: its
    (parent_proportionality, sibling_proportionality)."""
    n_assigned = np.bincount(parent[parent >= 0], minlength=len(count_small)).astype(np.int64)
    has = parent >= 0
    equivalent_pair = has & V.is_equivalent(
        parent_score, parent_decoder, opt.equivalent_decoder_cosine, opt.equivalent_correlation,
        coactive_lower=coactive_lower, equivalent_coactive_correlation=opt.equivalent_coactive_correlation,
        siblings_inside=siblings[0], inside_siblings=siblings[1],
        proportionality=proportion[0], sibling_proportionality=proportion[1],
    )
    n_equivalent = np.bincount(parent[equivalent_pair], minlength=len(count_small))
    small = V.small_side_classes(n_assigned, n_equivalent, count_small)
    parent_n = n_assigned[np.maximum(parent, 0)] if len(n_assigned) else np.zeros(len(parent), np.int64)
    large = V.large_side_classes(has, equivalent_pair, parent_n, count_large)
    return small, large, n_assigned


def _heatmap_block(
    corr_ls: np.ndarray, parent: np.ndarray, parent_score: np.ndarray, n_assigned: np.ndarray, rng
) -> dict[str, np.ndarray]:
    """The heatmap's rows, columns and correlations (layout in :data:`BLOCK_ARRAYS`) from the
    (K_large, K_small) correlation and the parent assignment."""
    candidates = np.flatnonzero(n_assigned >= 1)
    rows = rng.choice(candidates, size=min(HEATMAP_ROWS, len(candidates)), replace=False)
    rows = rows[np.lexsort((rows, -n_assigned[rows]))]  # most assigned first, then by id
    cols, col_row = [], []
    for position, small in enumerate(rows):
        children = np.flatnonzero(parent == small)
        children = children[np.argsort(-parent_score[children], kind="stable")][:HEATMAP_CHILDREN]
        cols.extend(children.tolist())
        col_row.extend([position] * len(children))
    cols = np.asarray(cols, dtype=np.int64)
    values = (
        corr_ls[np.ix_(cols, rows)].T.astype(np.float32)
        if len(cols)
        else np.zeros((len(rows), 0), np.float32)
    )
    return {
        "rows": rows.astype(np.int64),
        "cols": cols,
        "values": values,
        "col_row": np.asarray(col_row, dtype=np.int64),
    }


def _counts(labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, int]:
    return {c: int((labels == c).sum()) for c in classes}


def _confidence_counts(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """``AlignmentReport.confidence_counts`` of the larger side's arrays."""
    labels = np.asarray(arrays["class_label"]).astype(str)
    levels = larger_side_confidence(arrays)
    return {
        c: {level: int(((labels == c) & (levels == level)).sum()) for level in ("high", "low")}
        for c in LARGE_CLASSES
        if c != "dead"
    }


# -- public API --------------------------------------------------------------------------------
def _first_rows(csr: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """The first ``n`` rows of a CSR matrix as views of its arrays (scipy's ``csr[:n]`` copies
    them: 1.8 GB of the real preset's memory-mapped Ultra codes for half of its examples, which
    made aligning on 50,000 examples peak higher than on all 100,000)."""
    nnz = int(csr.indptr[n])
    # Set on an empty matrix: the (data, indices, indptr) constructor prunes arrays that are
    # views of less than half their base into copies.
    view = sp.csr_matrix((n, csr.shape[1]), dtype=csr.dtype)
    view.data, view.indices, view.indptr = csr.data[:nnz], csr.indices[:nnz], csr.indptr[: n + 1]
    return view


def align_contexts(
    a: MechInterpContext,
    b: MechInterpContext,
    *,
    options: AlignOptions | None = None,
    progress: bool = False,
) -> AlignmentTables:
    """Align every feature of ``a`` with every feature of ``b`` over their shared examples.

    Parameters
    ----------
    a, b : contexts over the same example set (equal fingerprints)
    options : :class:`AlignOptions`
    progress : show a progress bar of the main pass over the examples on stderr

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
    side_a, side_b = (
        FeatureArrays(ctx, top_token_method=opt.top_token_method, n_top_tokens=opt.n_top_tokens)
        for ctx in (a, b)
    )
    device = resolve_device(opt.device)  # fail on a bad device before the long pass
    n = a.n_examples if opt.n_examples is None else min(opt.n_examples, a.n_examples)
    timings: dict[str, float] = {}
    notes: list[str] = []
    if n < a.n_examples:
        csr_a, csr_b = _first_rows(a.codes.csr, n), _first_rows(b.codes.csr, n)
        mom_a, mom_b = _Moments.from_rows(csr_a), _Moments.from_rows(csr_b)
        notes.append(
            f"aligned on the first {n} of {a.n_examples} examples; top tokens come from all of them"
        )
    else:
        csr_a, csr_b = a.codes.csr, b.codes.csr
        mom_a, mom_b = _Moments.of(side_a), _Moments.of(side_b)

    t = time.perf_counter()
    # Counts in uint32: exact, half a float64 accumulator, and the pair index's own array.
    if opt.dask is not None:  # the same sums over row shards on a cluster, tree-reduced
        from splatnlp.mechinterp.analysis.align.distributed import dask_client, pair_sums_dask

        with dask_client(opt.dask) as client:
            dot, coactive = pair_sums_dask(a, b, client, shard_rows=opt.dask_shard_rows, n_examples=n)
        dot, coactive = np.ascontiguousarray(dot), np.ascontiguousarray(coactive)
    else:
        dot, coactive = pair_sums_streamed(
            csr_a, csr_b, chunk_size=opt.chunk_size, product=opt.product, device=device, progress=progress,
            coactive_dtype=np.uint32,
        )
    timings["stream"] = time.perf_counter() - t

    tables_a: dict[str, np.ndarray] = {"count": mom_a.count.astype(np.int64)}
    tables_b: dict[str, np.ndarray] = {"count": mom_b.count.astype(np.int64)}
    matrices: dict[str, np.ndarray] = {}
    summaries: dict[str, MetricSummary] = {}
    corr: np.ndarray | None = None

    def record(name: str, matrix: np.ndarray) -> None:
        # Both directions' best in one parallel read of the matrix, no NaN-filled copy.
        rows, cols = kernels.best_of_rows_and_columns(matrix)
        for side, (index, score) in ((tables_a, rows), (tables_b, cols)):
            side[f"best_{name}_index"], side[f"best_{name}_score"] = index, score
        summaries[name] = _summary(
            tables_a[f"best_{name}_score"], tables_b[f"best_{name}_score"], opt.share_threshold
        )
        if opt.keep_matrices:
            matrices[name] = matrix.astype(np.float32)

    # One derived matrix at a time, so peak memory is the two accumulators plus one more.
    t = time.perf_counter()
    # The pair index keeps the sums themselves (float32: the precision of the pass's products),
    # copied first: the correlation is computed in place of `dot`.
    keep_index = opt.keep_index and n == a.n_examples
    index = {"dot": dot.astype(np.float32, order="C")} if keep_index else None
    corr = _correlation(dot, n, mom_a, mom_b, opt.min_active)
    del dot
    record("activation_correlation", corr)
    # Counts are exact in float32 (< 2**24 examples); halving the memory traffic of these
    # elementwise (K_a, K_b) passes cut them by about half.
    if index is not None:
        index["coactive"] = np.ascontiguousarray(coactive)
    coactive = coactive.astype(np.float32)
    record("coactivation_jaccard", _coactivation_jaccard(coactive, mom_a.count, mom_b.count))
    record("p_target_given_source", _containment(coactive, mom_a.count, opt.min_active, axis=0))
    record("p_source_given_target", _containment(coactive, mom_b.count, opt.min_active, axis=1))
    del coactive
    timings["metrics"] = time.perf_counter() - t

    t = time.perf_counter()
    if a.d_model == b.d_model:
        # float32 like FeatureMatcher's cosine_rows (the same numbers); the pair index keeps
        # this very array, and the best-match pass reads float32 as well as float64.
        dec = side_a.decoder @ side_b.decoder.T
        np.clip(dec, -1.0, 1.0, out=dec)
        if index is not None:
            index["decoder"] = dec
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
    record("top_token_overlap", _token_jaccard(side_a, side_b, mom_a.count, mom_b.count))
    timings["tokens"] = time.perf_counter() - t

    # Many-to-one: each feature of the larger dictionary to its best-correlated smaller one.
    t = time.perf_counter()
    a_larger = V.larger_is_first((a.n_features, a.model_type, a.name), (b.n_features, b.model_type, b.name))
    larger: Literal["a", "b"] = "a" if a_larger else "b"
    large, small = (tables_a, tables_b) if larger == "a" else (tables_b, tables_a)
    corr_ls = corr if larger == "a" else corr.T
    # The parent rule's nesting evidence: how much of each larger-side feature's activation
    # lies where its best-correlated smaller-side feature is active (one pass, O(nnz)).
    mom_large, mom_small = (mom_a, mom_b) if a_larger else (mom_b, mom_a)
    # The larger side's best correlation, already found by record(): V.best_candidates' answer.
    best_ls = large["best_activation_correlation_index"]
    mass = M.inside_mass(csr_a if a_larger else csr_b, csr_b if a_larger else csr_a, best_ls)
    nesting = V.nesting_lower_bound(
        mass.inside, mass.total, mass.total_sq, mom_small.count[np.maximum(best_ls, 0)], n
    )
    nesting[(best_ls < 0) | (mom_large.count < opt.min_active)] = np.nan
    # The information test of the weak parents below the correlation cut: how well the smaller
    # SAE reconstructs the inputs where each larger-side feature fires (one sparse decode of the
    # smaller codes, then one product with the squared larger codes).
    t_info = time.perf_counter()
    small_ctx = b if a_larger else a
    rows = REC.context_row_errors(small_ctx, n if n < a.n_examples else None)
    if isinstance(rows, str):
        error_ratio = np.full(len(best_ls), np.nan)
        notes.append(
            f"the information test of novel (error_ratio) could not run: {rows} Below the correlation "
            f"cut, nested features kept their parent without it and r in [{V.WEAK_CORRELATION}, "
            f"{opt.related_correlation}) was novel"
        )
    else:
        error_ratio = REC.error_ratio(csr_a if a_larger else csr_b, rows)
        error_ratio[mom_large.count < opt.min_active] = np.nan
    timings["information"] = time.perf_counter() - t_info
    parent, parent_score = V.assign_parents(
        corr_ls, opt.related_correlation, nesting=nesting, nested_containment=opt.nested_containment,
        best=(best_ls, large["best_activation_correlation_score"]), error_ratio=error_ratio,
    )
    # Each parent verdict's rival (verdicts.rivals): the best-correlated smaller-side feature
    # unrelated to the parent, from the smaller side's own correlations (one more streamed pass,
    # over its codes alone: K_small x K_small sums).
    t_riv = time.perf_counter()
    small_csr = csr_b if a_larger else csr_a
    dot_small, _ = pair_sums_streamed(
        small_csr, small_csr, chunk_size=opt.chunk_size, product=opt.product, device=device,
        coactive_dtype=np.uint32,
    )  # fmt: skip
    small_corr = _correlation(dot_small, n, mom_small, mom_small, opt.min_active)
    del dot_small
    rival = np.full(len(parent), -1, np.int64)
    rival_score = np.full(len(parent), np.nan)
    for start in range(0, len(parent), 1024):  # bounded copies of the rows (corr_ls may be a view)
        at = slice(start, start + 1024)
        rival[at], rival_score[at] = V.rivals(
            np.asarray(corr_ls[at]), parent[at], small_corr[np.maximum(parent[at], 0)]
        )
    del small_corr
    timings["rivals"] = time.perf_counter() - t_riv
    side_large, side_small = (side_a, side_b) if larger == "a" else (side_b, side_a)
    has = parent >= 0
    parent_decoder = np.full(len(parent), np.nan)
    if a.d_model == b.d_model:  # the parent pairs' decoder cosines, as the matcher computes them
        rows = np.flatnonzero(has)
        parent_decoder[rows] = np.einsum(
            "kd,kd->k", side_large.decoder[rows], side_small.decoder[parent[rows]]
        )
    # The same pass summed each feature and its best candidate over the examples where both fire:
    # the co-active correlation, evidence of 'equivalent' (verdicts.is_equivalent).
    coactive = np.where(has, mass.coactive_correlation, np.nan)
    coactive_count = np.where(has, mass.co_count, 0).astype(np.int64)
    # And how close each is to a multiple of its parent where the parent fires, against its
    # siblings' median (verdicts.equivalent_by, "proportionality"): from the same co-active sums.
    small_sq = M.column_power_sums(csr_b if a_larger else csr_a, 2)
    proportion = np.where(
        has, PROP.proportionality(mass.co_sums[4], mass.co_sums[2], small_sq[np.maximum(best_ls, 0)]), np.nan
    )
    sibling_proportion = PROP.sibling_median(proportion, parent)
    # Beside siblings: how much their activation lies inside each feature's, and the reverse,
    # the evidence of a latent at its parent's level (verdicts.equivalent_by, "siblings"). The
    # compiled pass over the rows that sums each parent's children's Gram matrix for the index
    # sums it too (at real scale 13.5-13.9 s with it, 8.3-8.9 s without, plus 2.1 s for the
    # means); without numba, a pass over each parent's children's columns (12.7 s there, and
    # the column copy of the codes mapped beside the rows: 5.2 GB peak instead of 4.0).
    t_sib = time.perf_counter()
    large_csr = csr_a if a_larger else csr_b
    children = None
    if kernels.AVAILABLE:
        children = kernels.children_gram(large_csr, csr_b if a_larger else csr_a, parent)
        siblings = SIB.sibling_nesting_from_sums(children[0], children[3], large_csr, parent, mom_large.count)
    else:
        siblings = SIB.sibling_nesting_by_parent((a if a_larger else b).codes.csc, parent, n)
    timings["siblings"] = time.perf_counter() - t_sib
    small_cls, large_cls, n_assigned = _classify(
        parent, parent_score, parent_decoder, small["count"], large["count"], opt,
        coactive_lower=V.coactive_lower_bound(coactive, coactive_count, n_tests=len(parent)),
        siblings=siblings, proportion=(proportion, sibling_proportion),
    )
    large.update(
        parent=parent,
        parent_score=parent_score,
        parent_decoder_cosine=parent_decoder,
        parent_coactive_correlation=coactive,
        parent_coactive_count=coactive_count,
        nesting=nesting,
        error_ratio=error_ratio,
        siblings_inside=siblings[0],
        inside_siblings=siblings[1],
        parent_proportionality=proportion,
        sibling_proportionality=sibling_proportion,
        rival=rival,
        rival_score=rival_score,
        n_assigned=np.zeros(len(parent), np.int64),
    )
    small.update(
        parent=np.full(len(n_assigned), -1, np.int64),
        parent_score=np.full(len(n_assigned), np.nan),
        parent_decoder_cosine=np.full(len(n_assigned), np.nan),
        parent_coactive_correlation=np.full(len(n_assigned), np.nan),
        parent_coactive_count=np.zeros(len(n_assigned), np.int64),
        nesting=np.full(len(n_assigned), np.nan),
        error_ratio=np.full(len(n_assigned), np.nan),
        siblings_inside=np.full(len(n_assigned), np.nan),
        inside_siblings=np.full(len(n_assigned), np.nan),
        parent_proportionality=np.full(len(n_assigned), np.nan),
        sibling_proportionality=np.full(len(n_assigned), np.nan),
        rival=np.full(len(n_assigned), -1, np.int64),
        rival_score=np.full(len(n_assigned), np.nan),
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
    rng = np.random.default_rng(opt.seed)
    block = _heatmap_block(corr_ls, parent, parent_score, n_assigned, rng)
    # The siblings' pass and the information test ran inside this stage; they are timed on their
    # own, so the stages add up.
    timings["assign"] = time.perf_counter() - t - timings["siblings"] - timings["information"] - timings["rivals"]
    del corr, corr_ls
    if index is not None and children is not None:
        # Each smaller-side feature's children's Gram matrix and coverage, for its decomposition
        # from the index (the matcher then reads no child's codes; 3.6 MB at real scale), from
        # the pass that summed the sibling evidence above.
        index["children_offsets"], index["children_gram"], index["children_covered"] = children[:3]

    t = time.perf_counter()
    same_d = a.d_model == b.d_model
    null_arrays = {
        "correlation_a": _correlation_null(a, mom_a, csr_b, mom_b, opt, rng),
        "correlation_b": _correlation_null(b, mom_b, csr_a, mom_a, opt, rng),
        "decoder_a": _decoder_null(side_b, opt.n_null_directions, rng) if same_d else np.zeros(0),
        "decoder_b": _decoder_null(side_a, opt.n_null_directions, rng) if same_d else np.zeros(0),
    }
    null = NullSummary(
        correlation_max_a=_quantiles(null_arrays["correlation_a"]),
        correlation_max_b=_quantiles(null_arrays["correlation_b"]),
        n_null_features_a=len(null_arrays["correlation_a"]),
        n_null_features_b=len(null_arrays["correlation_b"]),
        decoder_max_a=_quantiles(null_arrays["decoder_a"]),
        decoder_max_b=_quantiles(null_arrays["decoder_b"]),
        seed=opt.seed,
    )
    timings["null"] = time.perf_counter() - t

    cka = None
    if opt.cka:
        t = time.perf_counter()
        cka = linear_cka(
            csr_a,
            csr_b,
            batch_size=opt.cka_batch_size,
            n_permutations=opt.n_cka_permutations,
            seed=opt.seed,
            device=device,
        )
        timings["cka"] = time.perf_counter() - t

    report = AlignmentReport(
        a_name=a.name,
        b_name=b.name,
        a_model=a.model_type,
        b_model=b.model_type,
        a_fingerprint=a.fingerprint,
        b_fingerprint=b.fingerprint,
        n_examples=n,
        n_examples_context=a.n_examples,
        n_features_a=a.n_features,
        n_features_b=b.n_features,
        options=opt,
        larger_side=larger,
        metrics=summaries,
        class_counts_a=_counts(
            tables_a["class_label"], LARGE_CLASSES if larger == "a" else SMALL_CLASSES
        ),
        class_counts_b=_counts(
            tables_b["class_label"], LARGE_CLASSES if larger == "b" else SMALL_CLASSES
        ),
        confidence_counts=_confidence_counts(tables_a if larger == "a" else tables_b),
        hungarian=hungarian,
        hungarian_skipped=skipped,
        null=null,
        cka=cka,
        elapsed_s=time.perf_counter() - t0,
        timings_s={k: round(v, 4) for k, v in timings.items()},
        warnings=notes,
    )
    return AlignmentTables(
        report=report,
        a=tables_a,
        b=tables_b,
        block=block,
        null=null_arrays,
        matrices=matrices or None,
        index=index,
        index_meta=index_meta(a, b, n) if index is not None else None,
    )
