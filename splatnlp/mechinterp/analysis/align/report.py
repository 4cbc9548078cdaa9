"""What whole-dictionary alignment reports: its options, the summary models, the per-feature view.

Pure pydantic and constants (no numpy arrays), so the matcher and the research store can read a
saved alignment's report without importing the numerics. The arrays themselves live in
:mod:`splatnlp.mechinterp.analysis.align.tables`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from splatnlp.mechinterp.analysis.metrics.results import CKAResult
from splatnlp.mechinterp.analysis.metrics.tokens import TopTokenMethod
from splatnlp.mechinterp.analysis.metrics.verdicts import (
    EQUIVALENT_COACTIVE_CORRELATION,
    EQUIVALENT_CORRELATION,
    EQUIVALENT_DECODER_COSINE,
    LARGE_CLASSES,
    NESTED_CONTAINMENT,
    RELATED_CORRELATION,
    SMALL_CLASSES,
)

__all__ = [
    "BLOCK_ARRAYS",
    "LARGE_CLASSES",
    "METRICS",
    "NULL_ARRAYS",
    "NULL_QUANTILES",
    "SIDE_ARRAYS",
    "SMALL_CLASSES",
    "AlignOptions",
    "AlignedBest",
    "AlignedFeature",
    "AlignmentReport",
    "HungarianSummary",
    "MetricSummary",
    "NullSummary",
]

METRICS: tuple[str, ...] = (
    "activation_correlation",
    "coactivation_jaccard",
    "p_target_given_source",
    "p_source_given_target",
    "decoder_cosine",
    "top_token_overlap",
)
"""The all-pairs metrics, each a (K_a, K_b) matrix; ``a`` is the source:
``p_target_given_source`` is P(b > 0 | a > 0), ``p_source_given_target`` P(a > 0 | b > 0)."""

SIDE_ARRAYS: tuple[str, ...] = (
    *(f"best_{m}_{k}" for m in METRICS for k in ("index", "score")),
    "count",
    "parent",
    "parent_score",
    "parent_decoder_cosine",
    "parent_coactive_correlation",
    "parent_coactive_count",
    "nesting",
    "error_ratio",
    "siblings_inside",
    "inside_siblings",
    "parent_proportionality",
    "sibling_proportionality",
    "rival",
    "rival_score",
    "n_assigned",
    "hungarian",
    "hungarian_score",
    "class_label",
)
NULL_QUANTILES = (0.5, 0.95, 0.99)

BLOCK_ARRAYS: tuple[str, ...] = ("rows", "cols", "values", "col_row")
"""The heatmap block, always smaller side x larger side: ``rows`` (int64, (R,)) smaller-side
features, ordered by how many larger-side features were assigned to them (most first);
``cols`` (int64, (C,)) their assigned larger-side features, grouped by row and ordered by
correlation within a group; ``values`` (float32, (R, C)) the correlation of every row with
every column (NaN undefined); ``col_row`` (int64, (C,)) the position in ``rows`` of each
column's parent."""

NULL_ARRAYS: tuple[str, ...] = ("correlation_a", "correlation_b", "decoder_a", "decoder_b")
"""Null samples, float64, one value per null feature or direction (empty when not computed):
``correlation_a`` best correlation against all of B of random A features with A's example order
shuffled; ``decoder_a`` best cosine of a random unit direction with B's decoder rows (the chance
level of A's best decoder cosine); ``_b`` likewise."""



class AlignOptions(BaseModel):
    """How two dictionaries are aligned. Thresholds default to :class:`MatchOptions`'s."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk_size: int = Field(2048, ge=1)
    """Example rows per streamed chunk; memory is about chunk_size x (smaller K) x 8 bytes."""
    product: Literal["auto", "numba", "torch", "scipy"] = "auto"
    """The CPU kernel of the pass: "numba" is the compiled sparse x sparse one (only co-active
    pairs, float64; ``analysis/metrics/kernels.py``), "torch" / "scipy" multiply each chunk's
    sparse larger side by its densified smaller side in float32 (torch's is multi-threaded, 2.2x
    scipy's on the tiny demo). "auto": "numba" when installed, else "torch". Side by side in
    ``benchmarks/bench_pair_kernels.py``."""
    min_active: int = Field(5, ge=1)
    """Features active on fewer examples get no correlation or containment (NaN)."""
    related_correlation: float = Field(RELATED_CORRELATION, ge=-1.0, le=1.0)
    """A larger-side feature is assigned to its best-correlated smaller-side feature only when
    their correlation reaches this (``analysis/metrics/verdicts.py``, shared with the matcher)."""
    nested_containment: float = Field(NESTED_CONTAINMENT, ge=-1.0, le=1.0)
    """... or, below it, when the larger feature is nested in its best-correlated smaller one:
    the 95 % lower bound of the chance-corrected containment reaches this (see
    :mod:`splatnlp.mechinterp.analysis.metrics.verdicts`)."""
    equivalent_decoder_cosine: float = Field(EQUIVALENT_DECODER_COSINE, ge=-1.0, le=1.0)
    """A parent pair whose decoder cosine reaches this, with a correlation of at least 0.8
    (``verdicts.DECODER_MIN_CORRELATION``), is ``equivalent``, ..."""
    equivalent_correlation: float = Field(EQUIVALENT_CORRELATION, ge=-1.0, le=1.0)
    """... and so is one whose activation correlation reaches this, ..."""
    equivalent_coactive_correlation: float = Field(EQUIVALENT_COACTIVE_CORRELATION, ge=-1.0, le=1.0)
    """... or whose co-active correlation's family-wise lower bound reaches this (with r >= 0.5)."""
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
    keep_index: bool = True
    """Keep the pair sums (float32 dot, uint32 co-active counts, float32 decoder cosines: 12 bytes
    per pair, 0.6 GB at real scale) on the result, so that ``save_tables`` writes the pair index
    (:mod:`splatnlp.mechinterp.analysis.align.index`) that lets a matcher answer queries without
    the codes. Not kept when aligning on a subset of the examples (``n_examples``)."""
    n_examples: int | None = Field(None, ge=4)
    """Align on the first ``n_examples`` examples only (a quick look; None: all). Moments and
    counts are recomputed over those rows; top tokens still come from the contexts' stats."""
    device: str = "cpu"
    """Where the streamed products run: "cpu", "cuda", "cuda:<index>" or "auto" (CUDA when
    available). The derived matrices, assignment and classes are computed on the CPU."""
    dask: str | None = None
    """Compute the pair sums on a Dask cluster (``analysis/align/distributed.py``): a scheduler
    address (``tcp://host:8786``), or ``local`` / ``local:N`` for a LocalCluster of N worker
    processes. None: in this process. Workers must be able to read both context folders."""
    dask_shard_rows: int = Field(25_000, ge=1)
    """Examples per Dask task (each holds one (K_a, K_b) pair of partial sums)."""
    cka: bool = False
    """Also compute linear CKA between the two code matrices (:func:`~splatnlp.mechinterp.analysis.metrics.cka.linear_cka`,
    minibatch debiased HSIC over every example aligned; ~30-55 s at real scale)."""
    cka_batch_size: int = Field(512, ge=4)
    """Examples per CKA batch (the Gram matrices are batch x batch)."""
    n_cka_permutations: int = Field(32, ge=0)
    """Within-batch shuffles of B's examples behind the CKA null quantiles (0: no null)."""


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
    """Examples the alignment used (``options.n_examples`` or all of the contexts')."""
    n_examples_context: int
    """Examples in the contexts."""
    n_features_a: int
    n_features_b: int
    options: AlignOptions
    larger_side: Literal["a", "b"]
    """The side assigned many-to-one to the other (B when the sizes are equal)."""
    metrics: dict[str, MetricSummary]
    class_counts_a: dict[str, int]
    class_counts_b: dict[str, int]
    confidence_counts: dict[str, dict[str, int]] = {}
    """The larger side's verdicts by class and ``verdicts.confidence``, e.g. ``{"novel": {"high":
    1000, "low": 301}}`` (dead features have none; empty in reports saved before it existed):
    how many verdicts to check on examples before acting on them."""
    hungarian: HungarianSummary | None
    hungarian_skipped: str | None
    """Why the Hungarian assignment was skipped (sizes too different), or None."""
    null: NullSummary
    cka: CKAResult | None = None
    """Linear CKA of the two code matrices with its null, when ``options.cka``."""
    elapsed_s: float
    timings_s: dict[str, float]
    """Seconds per stage: ``stream``, ``metrics``, ``tokens``, ``decoder``, ``assign``, ``null``
    and ``cka`` (when computed)."""
    warnings: list[str] = []

    def summary(self) -> str:
        """A few lines for people: best-match means beside their chance levels, and classes."""

        def num(x: float | None, spec: str = ".3f") -> str:
            return "n/a" if x is None else format(x, spec)

        def q99(q: dict[str, float] | None) -> str:
            return "" if q is None else f" (null q99 {q['0.99']:.3f})"

        corr, dec = self.metrics["activation_correlation"], self.metrics["decoder_cosine"]
        n = self.null
        lines = [
            f"{self.a_name} ({self.n_features_a} features) vs {self.b_name} ({self.n_features_b}) "
            f"over {self.n_examples} examples, {self.elapsed_s:.1f} s",
            f"  mean best correlation: {self.a_model}->{self.b_model} {num(corr.mean_max_a)}"
            f"{q99(n.correlation_max_a)}, {self.b_model}->{self.a_model} {num(corr.mean_max_b)}"
            f"{q99(n.correlation_max_b)}",
            f"  mean best decoder cosine: {num(dec.mean_max_a)}{q99(n.decoder_max_a)}, "
            f"{num(dec.mean_max_b)}{q99(n.decoder_max_b)}",
            f"  share with best correlation >= {corr.threshold}: {num(corr.share_above_a, '.1%')} "
            f"/ {num(corr.share_above_b, '.1%')}",
            f"  {self.a_model}: " + ", ".join(f"{k} {v}" for k, v in self.class_counts_a.items()),
            f"  {self.b_model}: " + ", ".join(f"{k} {v}" for k, v in self.class_counts_b.items()),
        ]
        if self.confidence_counts:
            larger = self.a_model if self.larger_side == "a" else self.b_model
            lines.append(
                f"  {larger} confidence, high / low (check low ones on examples): "
                + ", ".join(f"{k} {v.get('high', 0)} / {v.get('low', 0)}" for k, v in self.confidence_counts.items())
            )
        if self.cka is not None:
            cka = "n/a" if self.cka.value is None else f"{self.cka.value:.3f}"
            q = self.cka.null_quantiles
            lines.append(f"  linear CKA {cka}" + ("" if q is None else f" (null q99 {q['0.99']:.4f})"))
        if self.hungarian is not None:
            lines.append(
                f"  one-to-one (Hungarian): {self.hungarian.n_pairs} pairs, mean correlation "
                f"{num(self.hungarian.mean_correlation)}, {self.hungarian.n_related} related"
            )
        elif self.hungarian_skipped:
            lines.append(f"  one-to-one skipped: {self.hungarian_skipped}")
        lines.extend(f"  note: {w}" for w in self.warnings)
        return "\n".join(lines)


class AlignedBest(BaseModel):
    """A feature's best match in the other model by one metric."""

    feature: int
    score: float


class AlignedFeature(BaseModel):
    """What a saved alignment says about one feature (:meth:`AlignmentTables.lookup`).

    Metric names take the feature's point of view, as in :class:`FeatureMatch`: the feature is
    the source, the other model the target (``p_target_given_source`` = P(other | this)).
    """

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    model: str
    feature: int
    other_model: str
    class_label: str
    """One of :data:`SMALL_CLASSES` (smaller dictionary) or :data:`LARGE_CLASSES` (larger)."""
    count: int
    """Examples where the feature is active (over the examples aligned)."""
    parent: int | None
    """Larger side: the smaller-side feature it was assigned to (None when novel or dead, and on
    the smaller side)."""
    parent_score: float | None
    """The parent's activation correlation."""
    parent_decoder_cosine: float | None = None
    """The parent pair's decoder cosine: with ``parent_score``, the evidence of an
    ``equivalent`` verdict."""
    parent_coactive_correlation: float | None = None
    """The parent pair's correlation over the examples where both are active (None when fewer
    than 3 or no variance): the third evidence of ``equivalent``."""
    parent_coactive_count: int | None = None
    """How many examples that correlation is measured on."""
    nesting: float | None = None
    """Larger side: how much of the feature's activation lies inside its best-correlated
    smaller-side feature beyond chance (95 % lower bound, ``verdicts.nesting_lower_bound``): the
    evidence of a parent below the correlation cut."""
    error_ratio: float | None = None
    """Larger side: the information test of ``novel`` (``reconstruction.error_ratio``): the
    smaller SAE's fraction of variance unexplained on the examples where the feature fires
    (weighted by its squared code) over its fraction on all examples. Above 1.04 the smaller SAE
    misses what happens there, and weak evidence below the correlation cut gives no parent. None
    when the smaller context kept no activations (the test could not run) or the feature is
    (nearly) never active."""
    siblings_inside: float | None = None
    """Larger side, beside siblings (other features with its parent): how much of their
    activation lies on its active examples, beyond chance (mean over them,
    ``siblings.sibling_nesting``); with ``inside_siblings``, the evidence of ``equivalent`` by
    siblings."""
    inside_siblings: float | None = None
    """The reverse: how much of its activation lies on theirs."""
    parent_proportionality: float | None = None
    """Larger side: how close the feature is to a multiple of its parent where the parent is
    active (squared cosine, ``proportionality.proportionality``): with
    ``sibling_proportionality``, the evidence of ``equivalent`` by proportionality."""
    sibling_proportionality: float | None = None
    """The median of its siblings' ``parent_proportionality`` (None without siblings)."""
    rival: int | None = None
    """Larger side, with a parent: the other-model feature unrelated to the parent (|r| < 0.2
    with it) that correlates best with this one (``verdicts.rivals``); None when none correlates
    positively."""
    rival_score: float | None = None
    """The rival's correlation with this feature. At >= 0.5 of ``parent_score`` the feature may
    mix the parent's feature with the rival's (the parent is then never ``high`` confidence)."""
    confidence: Literal["high", "low"] | None = None
    """Larger side: ``verdicts.confidence`` of the class (``high``: the parent holds most of the
    feature's activation without a rival, or novel far below the cut; ``low``: check it on examples first;
    ``verdicts.CONFIDENCE_BASIS`` has the measured rates)."""
    children: list[int]
    """Smaller side: the larger-side features assigned to it, best-correlated first (empty on the
    larger side)."""
    children_scores: list[float]
    hungarian: int | None
    """The one-to-one partner, when the Hungarian assignment ran and paired this feature."""
    hungarian_score: float | None
    best: dict[str, AlignedBest | None]
    """Best match in the other model by each metric (None when no score is defined)."""
    alignment: str
    """Where the alignment came from (its folder, or 'memory')."""
    undefined: dict[str, str] = {}
    """Why each field that is None is None, per field; ``best.<metric>`` for a None in
    ``best``."""

    def describe(self) -> str:
        """One line for people."""
        sure = f", {self.confidence} confidence" if self.confidence else ""
        if self.parent is not None:
            return (
                f"{self.class_label}; assigned to {self.other_model} {self.parent} "
                f"(r={self.parent_score:.3f}{sure})"
            )
        if sure:
            return f"{self.class_label}{sure}"
        if self.children:
            shown = ", ".join(str(c) for c in self.children[:8])
            more = f" and {len(self.children) - 8} more" if len(self.children) > 8 else ""
            return f"{self.class_label}; {len(self.children)} {self.other_model} features assigned: {shown}{more}"
        return f"{self.class_label}; nothing assigned"
