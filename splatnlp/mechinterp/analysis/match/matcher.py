"""FeatureMatcher: every target feature scored against a source feature, exactly.

One query is one pass over the target's CSR rows at the examples where the source is active
(the source is zero everywhere else, so nothing else contributes to any pair sum), followed by
vectorized arithmetic over all targets. See :mod:`splatnlp.mechinterp.analysis.metrics.pairs`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.special

from splatnlp.mechinterp._threads import one_blas_thread
from splatnlp.mechinterp.analysis.align.index import INDEX_DIR, PairIndex, load_index
from splatnlp.mechinterp.analysis.align.report import AlignedFeature
from splatnlp.mechinterp.analysis.align.tables import AlignmentTables, load_tables
from splatnlp.mechinterp.analysis.match.decompose import active_union, nnls_sparse
from splatnlp.mechinterp.analysis.match.options import (
    COMPILED_MIN_ENTRIES,
    SORT_KEYS,
    MatchOptions,
    SortKey,
)
from splatnlp.mechinterp.analysis.match.reports import (
    Decomposition,
    DecompositionMember,
    FeatureComparison,
    FeatureError,
    FeatureMatch,
    FeatureSummary,
    InformationTest,
    MatchReport,
    NullModel,
    TokenScore,
    Verdict,
)
from splatnlp.mechinterp.analysis.metrics import kernels
from splatnlp.mechinterp.analysis.metrics import pairs as M
from splatnlp.mechinterp.analysis.metrics import proportionality as PROP
from splatnlp.mechinterp.analysis.metrics import reconstruction as REC
from splatnlp.mechinterp.analysis.metrics import siblings as SIB
from splatnlp.mechinterp.analysis.metrics import stitching as ST
from splatnlp.mechinterp.analysis.metrics import verdicts as V
from splatnlp.mechinterp.analysis.metrics.features import FeatureArrays
from splatnlp.mechinterp.analysis.metrics.results import none_reasons
from splatnlp.mechinterp.analysis.metrics.tokens import token_set_matrix
from splatnlp.mechinterp.context import MechInterpContext, load_context

OTHER_MODEL = {"ultra": "full", "full": "ultra"}
_VERDICT_OPTIONS = (
    "min_active", "related_correlation", "nested_containment", "equivalent_decoder_cosine",
    "equivalent_correlation", "equivalent_coactive_correlation",
)
"""Options the verdict depends on: a saved alignment answers for the matcher only when they agree."""
def _feature_summary(arrays: FeatureArrays, feature: int) -> FeatureSummary:
    s = arrays.ctx.stats
    ids = arrays.top_tokens_of(feature)
    scores = arrays.scores_of(feature)
    return FeatureSummary(
        feature=feature,
        model=arrays.ctx.model_type,
        n_active=int(arrays.count[feature]),
        frequency=float(arrays.count[feature] / arrays.ctx.n_examples),
        mean=float(s.mean[feature]),
        max=float(s.max[feature]),
        top_tokens=[
            TokenScore(token=arrays.token_names[t], score=float(scores[t]))
            for t in ids
        ],
        dead=bool(arrays.count[feature] == 0),
    )


_FULL_METRICS_BELOW = 4096
"""With at most this many targets (Full's 2,048) a metric's whole array costs less than picking
out a few: :meth:`_Metrics.at` computes it whole."""


class _Metrics(Mapping):
    """The pair metrics of one source against every target, name -> ``(values, reasons)``
    (float64 and int8 arrays of shape (n_targets,): NaN and a reason code where undefined, 0
    where defined), each computed in full when first read that way. ``at(name, ids)`` computes
    only the given targets: a report reads a few of 24,576, and the full arrays of the cheap
    metrics were ~0.5 ms of a warm query from the index. Both give the same numbers (the same
    elementwise arithmetic)."""

    def __init__(
        self,
        computed: dict[str, tuple[np.ndarray, np.ndarray]],
        compute: dict[str, Callable[[Any], tuple[np.ndarray, np.ndarray]]],
        order: Iterable[str],
    ):
        self._full = dict(computed)
        self.n_targets = len(next(iter(computed.values()))[0])
        self._compute = compute  # name -> f(slice(None) or int ids) -> (values, reasons)
        self._names = list(order)
        if set(self._names) != set(computed) | set(compute):
            raise ValueError(f"metric order {self._names} does not list every metric exactly")

    def __getitem__(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._full:
            self._full[name] = self._compute[name](slice(None))
        return self._full[name]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def at(self, name: str, ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(values, reasons)`` of the targets ``ids`` (an id or an int array of ids)."""
        if name in self._full or self.n_targets <= _FULL_METRICS_BELOW:
            values, reasons = self[name]
            return values[ids], reasons[ids]
        one = np.ndim(ids) == 0
        values, reasons = self._compute[name](np.atleast_1d(np.asarray(ids, dtype=np.int64)))
        return (values[0], reasons[0]) if one else (values, reasons)


class _Scores:
    """Every metric of one source against all targets (:class:`_Metrics`), the weights of the
    combined score, and the arrays the verdict and the decomposition read."""

    def __init__(self, **arrays: Any):
        self.__dict__.update(arrays)

    @cached_property
    def combined(self) -> np.ndarray:
        """float64 (n_targets,): the weighted sum of :attr:`metric`; NaN where a part is NaN."""
        return np.zeros(self.n_targets) + _weighted_sum(self.weights, lambda name: self.metric[name][0])


def _weighted_sum(weights: dict[str, float], value_of: Callable[[str], Any]) -> Any:
    """The combined score: ``w * value`` summed from 0 in the weights' order, so one target's
    score and the whole array's entry are the same bits. NaN propagates: an undefined part makes
    the score undefined."""
    total = 0.0
    for name, w in weights.items():
        total = total + w * value_of(name)
    return total


class _PValues:
    """One source's per-target p-values, computed where they are read: a report reads the few of
    its matches, and the whole array over 24,576 targets (``full``) cost 0.5 ms a query.
    ``p[i]`` takes an id or an array of ids."""

    def __init__(self, at: Callable[[np.ndarray], np.ndarray], n_targets: int):
        self._at = at
        self._n = n_targets

    def __getitem__(self, index: Any) -> np.ndarray:
        return self._at(np.asarray(index))

    def full(self) -> np.ndarray:
        return self._at(np.arange(self._n))


def _analytic_p(corr: np.ndarray, n_examples: int, n_targets: int) -> np.ndarray:
    """Family-wise p-value of each correlation under the analytic permutation null (see
    ``FeatureMatcher._null``), elementwise: NaN stays NaN."""
    # Under a random shuffle of the examples, r has mean 0 and variance 1/(n-1) exactly; tails
    # by the normal approximation, and family-wise over all candidates by Sidak.
    with np.errstate(invalid="ignore"):
        z = np.asarray(corr, dtype=np.float64) * np.sqrt(max(n_examples - 1, 1))
        p_single = scipy.special.ndtr(-z)
        return -np.expm1(n_targets * np.log1p(-np.minimum(p_single, 1 - 1e-16)))


def _top_order(key: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` target ids by ``key`` descending, NaN last, ties by id: a full lexsort's
    prefix, from a partition and a sort of the few at or above the k-th value (a full sort of
    24,576 keys was most of a warm query's time)."""
    filled = np.nan_to_num(np.asarray(key, dtype=np.float64), nan=-np.inf)
    if k < len(filled):
        kth = np.partition(filled, len(filled) - k)[len(filled) - k]
        ids = np.flatnonzero(filled >= kth)  # every tie at the k-th value competes, by id
    else:
        ids = np.arange(len(filled))
    return ids[np.lexsort((ids, -filled[ids]))][:k]


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def _opt(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def _confidence(label: str, best_score: float, nesting: float | None, rival_score: float | None = None) -> dict[str, Any]:
    """``confidence`` and ``confidence_basis`` of a larger-side verdict (``verdicts.confidence``)."""
    level = V.confidence(
        [label], [best_score], [np.nan if nesting is None else nesting], [np.nan if rival_score is None else rival_score]
    )[0]
    return {"confidence": level or None, "confidence_basis": V.CONFIDENCE_BASIS if level else None}


def _weak(corr: np.ndarray) -> np.ndarray:
    """bool: correlations at or above ``verdicts.WEAK_CORRELATION``, where a parent below the cut
    can be had with the information test (so a smaller-side feature's candidate children)."""
    with np.errstate(invalid="ignore"):
        return corr >= V.WEAK_CORRELATION


def _verdict_null_reasons(v: Verdict, source_model: str, error_ratio_why: str | None = None) -> dict[str, str]:
    """Why each None field of a verdict is None, from the verdict itself (and, for
    ``error_ratio``, why the information test gave no number: ``error_ratio_why``)."""
    parent_fields = (
        "parent", "parent_score", "parent_decoder_cosine", "parent_containment",
        "parent_containment_lower", "parent_n_children", "parent_coactive_correlation",
        "parent_coactive_count", "parent_coactive_lower", "parent_proportionality",
    )  # fmt: skip
    if v.side == "smaller":
        no_parent = f"a smaller-side ({source_model}) feature has children (see children), not a parent"
        why = dict.fromkeys(parent_fields, no_parent)
        why["best_nesting"] = "the nesting test is for larger-side features (the parent rule)"
        why["equivalent_by"] = "given on the larger-side feature's verdict (match it from the other side)"
        why["siblings_inside"] = why["inside_siblings"] = "the sibling evidence is for larger-side features"
        why["sibling_proportionality"] = "the proportionality evidence is for larger-side features"
        why["information_test"] = "the stitching test is for larger-side features"
        why["error_ratio"] = "the information test is for larger-side features (the parent rule)"
        why["rival"] = why["rival_score"] = "the rival is for larger-side parent verdicts"
        why["confidence"] = why["confidence_basis"] = (
            "measured for larger-side verdicts only (a parent or novel); a smaller-side class follows from its children's"
        )
        return why
    if v.parent is None:
        why = dict.fromkeys(parent_fields, "the feature is never active" if v.label == "dead" else f"no parent: the verdict is {v.label} (see rule)")
    else:
        why = {
            "parent_decoder_cosine": "undefined: a decoder row has zero norm",
            "parent_containment": "undefined: the feature is active on fewer than min_active examples",
            "parent_containment_lower": "undefined: the feature is active on fewer than min_active examples",
            "parent_coactive_correlation": (
                f"fewer than 3 examples where both are active, or no variance there "
                f"({v.parent_coactive_count} co-active)"
            ),
            "parent_coactive_lower": (
                f"needs at least 4 co-active examples and a defined co-active correlation "
                f"({v.parent_coactive_count} co-active)"
            ),
            "parent_proportionality": "undefined: no example where both are active",
        }
    why["best_nesting"] = (
        "the feature is never active" if v.label == "dead"
        else "no correlation is defined (no best candidate), or the best candidate is active on every example"
    )
    why["equivalent_by"] = (
        f"not equivalent: the verdict is {v.label}" if v.parent is None
        else f"the parent pair passes no equivalence test (decoder cosine, correlation, co-active correlation, siblings, proportionality): {v.label}"
    )
    why["siblings_inside"] = why["inside_siblings"] = (
        f"no parent: the verdict is {v.label}" if v.parent is None
        else "no sibling: no other feature has this parent (or none has a defined share)"
    )
    why["sibling_proportionality"] = (
        f"no parent: the verdict is {v.label}" if v.parent is None
        else "no sibling: no other feature has this parent (or none has a defined proportionality)"
    )
    why["rival"] = why["rival_score"] = (
        f"no parent: the verdict is {v.label}" if v.parent is None
        else "no feature unrelated to the parent (|r| < 0.2 with it) correlates positively with this one"
    )
    why["information_test"] = "not computed"
    why["error_ratio"] = error_ratio_why or (
        f"not needed: the parent rule asks the information test only below related_correlation with weak "
        f"evidence of a parent (nested, or r >= {V.WEAK_CORRELATION}) that is not nested beyond doubt (nesting "
        f">= {V.CONFIDENT_NESTING}); see features.csv for every feature's"
    )
    why["confidence"] = why["confidence_basis"] = "the feature is never active: there is no verdict to doubt"
    return why


class FeatureMatcher:
    """Match features of ``source_ctx`` against every feature of ``target_ctx``.

    Parameters
    ----------
    source_ctx : the context of the model holding the feature you know
    target_ctx : the other model's context; by default the other of ``ultra``/``full``, looked
        up first beside the source's folder, then through :func:`load_context`
    options : :class:`MatchOptions`
    alignment : a saved whole-dictionary alignment of these two contexts (its folder, or
        :class:`AlignmentTables`); reports then carry what it says about the source feature
        (``report.alignment``: class, parent, children, best match per metric), and
        :meth:`aligned` answers from it without scoring. When its options agree with the
        verdict's (:data:`_VERDICT_OPTIONS`) and it covers every example, parents and children
        come from its tables instead of reverse passes over the codes; a folder with a pair index
        (``index/``, :mod:`splatnlp.mechinterp.analysis.align.index`) also gives every pair sum,
        so a query reads one row of it and no codes but the source's own column. Reports are
        the same either way (to float32 precision of the sums).
    """

    def __init__(
        self,
        source_ctx: MechInterpContext,
        target_ctx: MechInterpContext | None = None,
        *,
        options: MatchOptions | None = None,
        alignment: AlignmentTables | str | Path | None = None,
    ):
        if not isinstance(source_ctx, MechInterpContext):
            raise TypeError(f"source_ctx must be a MechInterpContext, got {type(source_ctx).__name__}")
        if target_ctx is None:
            target_ctx = self._default_target(source_ctx)
        if source_ctx.fingerprint != target_ctx.fingerprint:
            raise ValueError(
                f"contexts {source_ctx.name!r} and {target_ctx.name!r} were computed on different "
                f"example sets ({source_ctx.fingerprint[:19]}... vs {target_ctx.fingerprint[:19]}...); "
                "matching needs codes on one shared example set"
            )
        for ctx in (source_ctx, target_ctx):
            if not ctx.codes.has_files():
                raise FileNotFoundError(f"context {ctx.name!r} at {str(ctx.path)!r} has no codes")
        self.source_ctx = source_ctx
        self.target_ctx = target_ctx
        self.options = options or MatchOptions()
        self._source = FeatureArrays(source_ctx, top_token_method=self.options.top_token_method, n_top_tokens=self.options.n_top_tokens)
        self._target = FeatureArrays(target_ctx, top_token_method=self.options.top_token_method, n_top_tokens=self.options.n_top_tokens)
        self.alignment = None if alignment is None else self._check_alignment(alignment)
        self._table = self._verdict_tables()
        self._small_self_rows: dict[int, np.ndarray] = {}  # :meth:`_small_self_row`'s
        self._rivals: dict[tuple[int, int], tuple[int, float]] = {}  # (feature, parent) -> rival, score
        self.index: PairIndex | None = self._open_index()
        """The alignment's pair index when it has one and its verdict tables apply (None otherwise)."""

    def _check_alignment(self, alignment: AlignmentTables | str | Path) -> AlignmentTables:
        tables = alignment if isinstance(alignment, AlignmentTables) else load_tables(alignment)
        r = tables.report
        where = str(tables.source) if tables.source else "the alignment"
        for ctx in (self.source_ctx, self.target_ctx):
            if ctx.fingerprint not in (r.a_fingerprint, r.b_fingerprint):
                raise ValueError(
                    f"{where} was computed on example set {r.a_fingerprint[:19]}..., not on "
                    f"{ctx.name!r}'s ({ctx.fingerprint[:19]}...); align these contexts again"
                )
        try:
            key, _ = tables.side(self.source_ctx.model_type)
        except KeyError:
            key, _ = tables.side(self.source_ctx.name)
        other_model = r.b_model if key == "a" else r.a_model
        if self.target_ctx.model_type != other_model:
            raise ValueError(
                f"{where} aligns {r.a_model!r} with {r.b_model!r}; it has no "
                f"{self.source_ctx.model_type!r} -> {self.target_ctx.model_type!r} direction"
            )
        return tables

    def _verdict_tables(self) -> dict[str, np.ndarray] | None:
        """The larger side's ``parent``, ``parent_score``, ``parent_decoder_cosine``,
        ``parent_coactive_*``, ``nesting`` and best-correlation arrays from the alignment, when its verdicts are this matcher's
        (same verdict options, every example aligned); else None."""
        if self.alignment is None:
            return None
        r = self.alignment.report
        if r.n_examples != self.n_examples or any(
            getattr(r.options, name) != getattr(self.options, name) for name in _VERDICT_OPTIONS
        ):
            return None
        large = self.alignment.a if r.larger_side == "a" else self.alignment.b
        large_model = r.a_model if r.larger_side == "a" else r.b_model
        if large_model != self._large[0].model_type:
            return None
        return {
            "parent": large["parent"],
            "parent_score": large["parent_score"],
            "parent_decoder_cosine": large["parent_decoder_cosine"],
            "parent_coactive_correlation": large["parent_coactive_correlation"],
            "parent_coactive_count": large["parent_coactive_count"],
            "nesting": large["nesting"],
            "error_ratio": large["error_ratio"],
            "siblings_inside": large["siblings_inside"],
            "inside_siblings": large["inside_siblings"],
            "parent_proportionality": large["parent_proportionality"],
            "sibling_proportionality": large["sibling_proportionality"],
            "rival": large["rival"],
            "rival_score": large["rival_score"],
            "best": large["best_activation_correlation_index"],
        }

    def _open_index(self) -> PairIndex | None:
        """The pair index of an alignment folder (checked against both contexts), or None."""
        if self._table is None or self.alignment is None or self.alignment.source is None:
            return None
        folder = Path(self.alignment.source) / INDEX_DIR
        if not (folder / "index.json").is_file():
            return None
        index = load_index(folder, self.source_ctx, self.target_ctx)
        self._index_side = index.side_of(self.source_ctx)
        return index

    def aligned(self, source_feature: int) -> AlignedFeature:
        """What the alignment given to the constructor says about ``source_feature``."""
        if self.alignment is None:
            raise ValueError(
                "this matcher has no alignment; pass FeatureMatcher(..., alignment=<folder>) "
                "written by save_tables or `splatnlp-mechinterp align`"
            )
        feature = self.source_ctx.check_feature(source_feature)
        return self.alignment.lookup(self.source_ctx.model_type, feature)

    @staticmethod
    def _default_target(source: MechInterpContext) -> MechInterpContext:
        other = OTHER_MODEL.get(source.model_type)
        if other is None:
            raise ValueError(
                f"context {source.name!r} has model_type {source.model_type!r}; pass target_ctx "
                "explicitly (the default target exists only for 'ultra' <-> 'full')"
            )
        sibling = source.path.parent / other
        if (sibling / "context.yaml").is_file():
            candidate = MechInterpContext(sibling)
            if candidate.fingerprint == source.fingerprint:
                return candidate
        return load_context(other)

    def __repr__(self) -> str:
        return f"FeatureMatcher({self.source_ctx.name!r} -> {self.target_ctx.name!r})"

    @property
    def n_examples(self) -> int:
        return self.source_ctx.n_examples

    # -- scoring -------------------------------------------------------------------------------
    def _score_all(self, feature: int) -> _Scores:
        opt = self.options
        src, tgt = self._source, self._target
        n = self.n_examples
        rows, values = self.source_ctx.codes.feature(feature)
        count_s = int(len(rows))
        dec = None
        mass = None
        if self.index is not None:  # one row of the saved sums; parents come from the tables
            dot, coactive, dec = self.index.rows(self._index_side, feature)
        elif self._source_is_larger or self._table is not None:
            dot, coactive = M.pair_sums(rows, values, self.target_ctx.codes.csr, compiled=self._compiled)
        else:  # the children's activation mass inside the source: the nesting evidence
            dot, coactive, mass = M.pair_sums(
                rows, values, self.target_ctx.codes.csr, mass=True, compiled=self._compiled
            )
        corr = M.pearson(dot, n, src.mean[feature], src.std[feature], tgt.mean, tgt.std)
        if dec is None:
            dec = M.cosine_rows(src.decoder[feature], tgt.decoder)

        # Reasons, per metric, per target (0 = defined). Later checks win, so order matters.
        n_t = len(dot)
        r_corr, r_pst_all = self._target_reasons
        r_corr = r_corr.copy()
        if count_s == 0:
            r_corr[:] = M.SOURCE_DEAD
        elif count_s < opt.min_active:
            r_corr[:] = M.SOURCE_RARE
        elif src.std[feature] == 0:
            r_corr[:] = M.ZERO_VARIANCE
        corr[r_corr > 0] = np.nan
        r_dec = np.where(np.isnan(dec), M.ZERO_DECODER, 0).astype(np.int8)
        source_reason = M.SOURCE_DEAD if count_s == 0 else (M.SOURCE_RARE if count_s < opt.min_active else 0)
        source_tokens = src.top_tokens_of(feature)

        # The rest per target when read (_Metrics): ``ix`` is slice(None) or an int array.
        def p_ts(ix):
            v = M.containment(coactive[ix], count_s)
            r = np.full(len(v), source_reason, dtype=np.int8)
            v[r > 0] = np.nan
            return v, r

        def p_st(ix):
            v = M.containment(coactive[ix], tgt.count[ix])
            r = r_pst_all[ix].copy()
            v[r > 0] = np.nan
            return v, r

        def cj(ix):
            v = M.coactivation_jaccard(coactive[ix], count_s, tgt.count[ix])
            return v, np.where(np.isnan(v), M.SOURCE_DEAD if count_s == 0 else M.TARGET_DEAD, 0).astype(np.int8)

        def tok(ix):
            if isinstance(ix, slice):
                v, _ = M.set_jaccard(source_tokens, tgt.token_sets, by_token=tgt.token_sets_by_token)
            else:  # the few rows' sets as one small CSR (scipy's row indexing costs more)
                sets = token_set_matrix([tgt.top_tokens_of(int(t)) for t in ix], tgt.token_sets.shape[1])
                v, _ = M.set_jaccard(source_tokens, sets)
            r = np.where(np.isnan(v), M.NO_TOKENS, 0).astype(np.int8)
            if count_s == 0:
                # An empty set vs a non-empty one has Jaccard 0, but a dead source has no top
                # examples to take tokens from at all: that is undefined, not "no overlap".
                v[:] = np.nan
                r[:] = M.SOURCE_DEAD
            return v, r

        metric = _Metrics(
            {"activation_correlation": (corr, r_corr), "decoder_cosine": (dec, r_dec)},
            {"top_token_overlap": tok, "coactivation_jaccard": cj, "p_target_given_source": p_ts,
             "p_source_given_target": p_st},
            order=("activation_correlation", "top_token_overlap", "decoder_cosine",
                   "coactivation_jaccard", "p_target_given_source", "p_source_given_target"),
        )

        # Relations from the shared verdict rules: the parent pair by best correlation, equivalent
        # by decoder direction (analysis/metrics/verdicts.py; alignment uses the same function).
        with np.errstate(invalid="ignore"):
            related = corr >= opt.related_correlation
        parent_pair = self._parent_pairs(feature, corr, related, mass) & np.isfinite(corr)
        coactive_lower = np.full(n_t, np.nan)
        sib_in, sib_of = np.full(n_t, np.nan), np.full(n_t, np.nan)
        prop, sib_prop = np.full(n_t, np.nan), np.full(n_t, np.nan)
        # The sibling test needs the parent's other children: known from the smaller side (its
        # children are the parent pairs) and from an alignment; from the larger side without one
        # it costs a pass of the parent over the codes, which the verdict pays anyway and a
        # MatchOptions(verdict=False) query skips (its relations then leave that test out).
        siblings_known = (not self._source_is_larger) or self._table is not None or opt.verdict
        if not self._source_is_larger and parent_pair.any():
            self._children_of(feature, corr, dec, mass)
        for t in np.flatnonzero(parent_pair):
            pair = (feature, int(t)) if self._source_is_larger else (int(t), feature)
            coactive_lower[t], prop[t] = self._coactive(*pair)[2:]
            if siblings_known:
                sib_in[t], sib_of[t], sib_prop[t] = self._sibling_of(*pair)
        relation = V.pair_relations(
            corr,
            dec,
            parent_pair,
            source_is_larger=self._source_is_larger,
            related_correlation=opt.related_correlation,
            equivalent_decoder_cosine=opt.equivalent_decoder_cosine,
            equivalent_correlation=opt.equivalent_correlation,
            coactive_lower=coactive_lower,
            equivalent_coactive_correlation=opt.equivalent_coactive_correlation,
            siblings_inside=sib_in if siblings_known else None,
            inside_siblings=sib_of if siblings_known else None,
            proportionality=prop if siblings_known else None,
            sibling_proportionality=sib_prop if siblings_known else None,
        )

        return _Scores(
            metric=metric,
            weights=dict(opt.weights),
            n_targets=n_t,
            relation=relation,
            related=related,
            parent_pair=parent_pair,
            dot=dot,
            count_s=count_s,
            rows=rows,
            values=values,
            coactive=coactive,
            mass=mass,
        )

    @cached_property
    def _compiled(self) -> bool:
        """Whether this matcher's sums run in the compiled kernels (``MatchOptions.compiled``)."""
        want = self.options.compiled
        if want == "auto":
            entries = self.source_ctx.codes.nnz + self.target_ctx.codes.nnz
            return kernels.AVAILABLE and entries >= COMPILED_MIN_ENTRIES
        return bool(want) and kernels.AVAILABLE

    @cached_property
    def _target_reasons(self) -> tuple[np.ndarray, np.ndarray]:
        """Why each target's correlation / P(source | target) is undefined on the target's side
        alone (int8 (K_t,) each, 0 = defined): the same for every query, so computed once."""
        tgt, opt = self._target, self.options
        r_corr = np.zeros(self.target_ctx.n_features, dtype=np.int8)
        r_corr[tgt.count < opt.min_active] = M.TARGET_RARE
        r_corr[tgt.count == 0] = M.TARGET_DEAD
        r_corr[(tgt.std == 0) & (tgt.count > 0)] = M.ZERO_VARIANCE
        r_pst = np.zeros(self.target_ctx.n_features, dtype=np.int8)
        r_pst[tgt.count < opt.min_active] = M.TARGET_RARE
        r_pst[tgt.count == 0] = M.TARGET_DEAD
        return r_corr, r_pst

    @cached_property
    def _source_is_larger(self) -> bool:
        s, t = self.source_ctx, self.target_ctx
        return V.larger_is_first((s.n_features, s.model_type, s.name), (t.n_features, t.model_type, t.name))

    def _parent_pairs(
        self, feature: int, corr: np.ndarray, related: np.ndarray, mass: np.ndarray | None
    ) -> np.ndarray:
        """bool (n_targets,): which targets form a parent pair with ``feature``.

        From the larger side the parent is the best-correlated target, when related or nested
        (:func:`verdicts.assign_parents`). From the smaller side a target is a child when
        ``feature`` is *its* parent, which needs the target's correlations with the whole source
        model (one reverse pass per candidate: every target at r >= WEAK_CORRELATION, and every target nested in
        the source).
        """
        out = np.zeros(len(corr), dtype=bool)
        if self._table is not None and not self._source_is_larger:
            return self._table["parent"] == feature
        if self._source_is_larger:
            parent = self._assign(feature, corr)
            if parent >= 0:
                out[parent] = True
            return out
        candidates = np.flatnonzero(related | _weak(corr) | self._nested_candidates(feature, mass))
        # The source's own correlation row first, so that the reverse pass below, which computes
        # each candidate's correlations with the whole source model, also gives its children's
        # rivals (the decomposition's members carry them) without a second pass.
        self._small_self_row(feature)
        self._prefetch_parents(candidates)
        for target in candidates:
            out[target] = self._parent_of(int(target))[0] == feature
        return out

    def _assign(self, large_feature: int, corr: np.ndarray) -> int:
        """The parent of a larger-side feature from its correlations with the smaller side
        (shape (K_small,)), by :func:`verdicts.assign_parents` with the nesting evidence; the
        alignment's when it applies."""
        if self._table is not None:
            return int(self._table["parent"][large_feature])
        best, score = V.best_candidates(corr[None, :])
        nesting = np.array([self._nesting(large_feature, int(best[0]))])
        # The information test only where it decides (weak evidence below the cut): it needs the
        # smaller SAE's reconstruction of every example, computed once per matcher.
        ratio = np.array([self._error_ratio(large_feature)[0] if self._needs_error_ratio(score[0], nesting[0]) else np.nan])
        parent, _ = V.assign_parents(
            corr[None, :], self.options.related_correlation, nesting=nesting,
            nested_containment=self.options.nested_containment, error_ratio=ratio,
        )
        return int(parent[0])

    def _needs_error_ratio(self, score: float, nesting: float) -> bool:
        """Whether the parent rule asks the information test for this best score and nesting
        (:func:`verdicts.needs_error_ratio` under this matcher's options)."""
        return bool(V.needs_error_ratio(score, nesting, self.options.related_correlation, self.options.nested_containment)[0])

    @cached_property
    def _small_row_errors(self) -> REC.RowErrors | str:
        """The smaller SAE's residual and input energies on every example, or why they cannot be
        had (its context kept no activations)."""
        return REC.context_row_errors(self._small[0])

    @cached_property
    def _error_ratios(self) -> dict[int, tuple[float, str | None]]:
        """:meth:`_error_ratio` answers, remembered: the parent rule and the verdict both ask."""
        return {}

    def _error_ratio(self, large_feature: int) -> tuple[float, str | None]:
        """(:func:`reconstruction.error_ratio` of a larger-side feature, why it is NaN or None):
        the alignment's when its verdicts are this matcher's, else from the codes."""
        if large_feature not in self._error_ratios:
            self._error_ratios[large_feature] = self._compute_error_ratio(large_feature)
        return self._error_ratios[large_feature]

    def _compute_error_ratio(self, large_feature: int) -> tuple[float, str | None]:
        if self._table is not None:
            value = float(self._table["error_ratio"][large_feature])
            return value, None if np.isfinite(value) else (
                "not computed by the alignment: the smaller context kept no activations (see its report's "
                "notes), or the feature is active on fewer than min_active examples"
            )
        (large_ctx, large), _ = self._large, self._small
        if large.count[large_feature] < self.options.min_active:
            return float("nan"), f"the feature is active on fewer than min_active={self.options.min_active} examples"
        rows = self._small_row_errors
        if isinstance(rows, str):
            return float("nan"), f"the information test could not run: {rows}"
        value = REC.error_ratio_of(*large_ctx.codes.feature(large_feature), rows)
        return value, None if np.isfinite(value) else "undefined: the inputs do not vary where the feature fires"

    def _nesting(self, large_feature: int, small_feature: int) -> float:
        """:func:`verdicts.nesting_lower_bound` of a larger-side feature in a smaller-side one
        (NaN when none is defined: no candidate, or a feature active on < min_active examples)."""
        (large_ctx, large), (small_ctx, small) = self._large, self._small
        if small_feature < 0 or large.count[large_feature] < self.options.min_active:
            return float("nan")
        if self._table is not None and self._table["best"][large_feature] == small_feature:
            return float(self._table["nesting"][large_feature])
        rows, values = large_ctx.codes.feature(large_feature)
        inside, total, total_sq = M.inside_mass_of(rows, values, small_ctx.codes.feature(small_feature)[0])
        return float(V.nesting_lower_bound(inside, total, total_sq, small.count[small_feature], self.n_examples))

    def _nested_candidates(self, small_feature: int, mass: np.ndarray) -> np.ndarray:
        """bool (K_large,): larger-side features nested in ``small_feature`` whatever their
        correlation, from ``mass`` (K_large,), each one's summed code over the small feature's
        active examples (``pair_sums(..., mass=True)``). A hair of slack below the cut keeps
        every feature the exact per-pair test of :meth:`_parent_of` would accept."""
        (_, large), (_, small) = self._large, self._small
        nesting = V.nesting_lower_bound(
            mass, large.total, large.total_sq, np.full(len(mass), small.count[small_feature]), self.n_examples
        )
        with np.errstate(invalid="ignore"):
            return (nesting >= self.options.nested_containment - 1e-9) & (large.count >= self.options.min_active)

    # -- the two dictionaries by size, for verdicts ---------------------------------------------
    @property
    def _large(self) -> tuple[MechInterpContext, FeatureArrays]:
        return (self.source_ctx, self._source) if self._source_is_larger else (self.target_ctx, self._target)

    @property
    def _small(self) -> tuple[MechInterpContext, FeatureArrays]:
        return (self.target_ctx, self._target) if self._source_is_larger else (self.source_ctx, self._source)

    @cached_property
    def _coactives(self) -> dict[tuple[int, int], tuple[float, int, float, float]]:
        return {}

    def _coactive(self, large_feature: int, small_feature: int) -> tuple[float, int, float, float]:
        """(co-active correlation, its number of examples, its family-wise lower bound,
        proportionality) of a parent pair: Pearson over the examples where both fire (the third
        test of ``equivalent``, :func:`verdicts.is_equivalent`) and how close the larger feature
        is to a multiple of the smaller where that one fires (:mod:`.proportionality`, the fifth);
        the alignment's when it holds this pair, else from the two features' codes. NaN
        correlation where fewer than 3 co-active examples."""
        key = (large_feature, small_feature)
        if key not in self._coactives:
            t = self._table
            if t is not None and t["parent"][large_feature] == small_feature:
                r, n = float(t["parent_coactive_correlation"][large_feature]), int(t["parent_coactive_count"][large_feature])
                lower = float(self._table_coactive_lower[large_feature])
                prop = float(t["parent_proportionality"][large_feature])
            else:
                (large_ctx, _), (small_ctx, _) = self._large, self._small
                small_rows, small_values = small_ctx.codes.feature(small_feature)
                # One intersection of the two features' rows gives both tests' sums.
                sums = M.coactive_sums_of(*large_ctx.codes.feature(large_feature), small_rows, small_values)
                r, n = float(M.coactive_pearson(*sums)), int(sums[0])
                lower = float(V.coactive_lower_bound(r, n, n_tests=self._large[0].n_features))
                small_sq = float(np.square(small_values, dtype=np.float64).sum())
                prop = float(PROP.proportionality(sums[5], sums[3], small_sq))
            self._coactives[key] = (r, n, lower, prop)
        return self._coactives[key]

    @cached_property
    def _table_coactive_lower(self) -> np.ndarray:
        """The family-wise lower bound of every parent pair's co-active correlation in the
        alignment's tables (float64 (K_large,)), computed once as align computes it for its
        classes: per pair it cost a query ~18 µs each, a few hundred µs for a Full feature's
        children from the index."""
        t = self._table
        return V.coactive_lower_bound(
            t["parent_coactive_correlation"], t["parent_coactive_count"], n_tests=self._large[0].n_features
        )

    def _rival(self, large_feature: int, parent: int, corr: np.ndarray | None = None) -> tuple[int | None, float | None]:
        """:func:`verdicts.rivals` of one larger-side feature whose parent is ``parent``, from its
        correlations ``corr`` (K_small,) with the smaller side: the alignment's when it holds this
        verdict, else from the smaller side's correlation row of the parent."""
        if self._table is not None and self._table["parent"][large_feature] == parent:
            r, score = int(self._table["rival"][large_feature]), float(self._table["rival_score"][large_feature])
        elif (large_feature, parent) in self._rivals:  # from the reverse pass that found the parent
            r, score = self._rivals[large_feature, parent]
        else:
            if corr is None:
                corr = self._large_row(large_feature)
            found, scores = V.rivals(corr[None, :], np.array([parent]), self._small_self_row(parent)[None, :])
            r, score = int(found[0]), float(scores[0])
        return (r, score) if r >= 0 else (None, None)

    def _correlation_row(self, side, feature: int, other_side, *, mass: bool = False):
        """One feature of ``side`` against every feature of ``other_side`` (each a ``(context,
        FeatureArrays)`` pair): Pearson, float64 (K_other,), NaN where undefined as in the
        alignment's matrices (a rare or constant feature on either side); with ``mass``, also
        each other feature's summed code over this one's active examples."""
        (ctx, arrays), (other_ctx, other) = side, other_side
        opt = self.options
        rows, values = ctx.codes.feature(feature)
        sums = M.pair_sums(rows, values, other_ctx.codes.csr, mass=mass, compiled=self._compiled)
        if len(rows) < opt.min_active or arrays.std[feature] == 0:
            corr = np.full(other_ctx.n_features, np.nan)
        else:
            corr = M.pearson(sums[0], self.n_examples, arrays.mean[feature], arrays.std[feature], other.mean, other.std)
            corr[(other.count < opt.min_active) | (other.std == 0)] = np.nan
        return (corr, sums[2]) if mass else corr

    def _small_self_row(self, small_feature: int) -> np.ndarray:
        """A smaller-side feature's correlation with every smaller-side feature (K_small,),
        remembered (a decomposition asks it once per member)."""
        if small_feature not in self._small_self_rows:
            self._small_self_rows[small_feature] = self._correlation_row(self._small, small_feature, self._small)
        return self._small_self_rows[small_feature]

    def _large_row(self, large_feature: int) -> np.ndarray:
        """A larger-side feature's correlation with every smaller-side feature (K_small,)."""
        return self._correlation_row(self._large, large_feature, self._small)

    def _small_row(self, small_feature: int) -> tuple[np.ndarray, np.ndarray]:
        """A smaller-side feature against every larger-side one: Pearson (NaN where undefined,
        the masks of :meth:`_score_all`) and each larger feature's summed code over the small
        feature's active examples, float64 arrays of shape (K_large,)."""
        return self._correlation_row(self._small, small_feature, self._large, mass=True)

    @cached_property
    def _parents(self) -> dict[int, tuple[int, float]]:
        """Parent of a larger-side feature, remembered: it depends only on the two contexts and
        the options, and siblings and repeated queries (match, then decompose) ask again."""
        return {}

    def _parent_of(self, large_feature: int) -> tuple[int, float]:
        """(parent, its correlation) of a larger-side feature by :func:`verdicts.assign_parents`
        ((-1, NaN): novel or undefined)."""
        if self._table is not None:
            parent = int(self._table["parent"][large_feature])
            return parent, float(self._table["parent_score"][large_feature]) if parent >= 0 else float("nan")
        if large_feature not in self._parents:  # one code path for every parent: the batched one
            self._prefetch_parents(np.array([large_feature]))
        return self._parents[large_feature]

    @cached_property
    def _small_csr64(self):
        """The smaller side's codes as float64 CSR, for batched reverse passes in the precision
        of :func:`pair_sums` (one copy per matcher: 12 bytes per stored code)."""
        return self._small[0].codes.csr.astype(np.float64)

    def _prefetch_parents(self, large_features: np.ndarray, batch: int = 256) -> None:
        """Parents of many larger-side features at once: one sparse product per batch instead
        of a reverse pass each (measured 1.5x faster on the default demo); the same float64 sums,
        masks and rule as :meth:`_score_all` and :func:`verdicts.assign_parents`; it fills the
        cache :meth:`_parent_of` reads."""
        if self._table is not None:  # the alignment's tables answer every parent
            return
        todo = np.array([u for u in np.asarray(large_features).tolist() if u not in self._parents], dtype=np.int64)
        if len(todo) == 0:
            return
        (large_ctx, large), (_, small) = self._large, self._small
        opt = self.options
        small_bad = (small.count < opt.min_active) | (small.std == 0)
        compiled = self._compiled
        for start in range(0, len(todo), batch):
            ids = todo[start : start + batch]
            if compiled:  # the same float64 sums, each example's row read once for all the candidates
                dots = kernels.columns_against_all(large_ctx.codes.csc, ids, self._small[0].codes.csr)
            else:
                block = large_ctx.codes.csc[:, ids].astype(np.float64).T.tocsr()
                dots = np.asarray((block @ self._small_csr64).todense())
            corr = M.pearson(
                dots, self.n_examples, large.mean[ids][:, None], large.std[ids][:, None], small.mean[None, :], small.std[None, :]
            )
            corr[:, small_bad] = np.nan
            corr[(large.count[ids] < opt.min_active) | (large.std[ids] == 0)] = np.nan
            for i, u in enumerate(ids.tolist()):
                parent = self._assign(u, corr[i])
                self._parents[u] = (parent, float(corr[i, parent]) if parent >= 0 else float("nan"))
                if parent in self._small_self_rows:  # the rival from this same row (:meth:`_rival`)
                    found, score = V.rivals(corr[i : i + 1], np.array([parent]), self._small_self_rows[parent][None, :])
                    self._rivals[u, parent] = (int(found[0]), float(score[0]))

    @cached_property
    def _children(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        return {}

    def _children_of(
        self, small_feature: int, corr: np.ndarray | None = None, dec: np.ndarray | None = None,
        mass: np.ndarray | None = None,
    ):
        """The larger-side features whose parent is ``small_feature``, best-correlated first:
        ``(ids, correlations, decoder cosines, equivalent)`` arrays. ``corr`` / ``dec`` /
        ``mass``: the feature's rows against the larger side when already computed."""
        if small_feature in self._children:
            return self._children[small_feature]
        if self._table is not None:
            # The alignment's assignment; each child's correlation and decoder cosine with its
            # parent are in the tables too (the same pair sums, in float32).
            t = self._table
            ids = np.flatnonzero(t["parent"] == small_feature).astype(np.int64)
            c, d = t["parent_score"][ids], t["parent_decoder_cosine"][ids]
        else:
            if corr is None or mass is None:
                corr, mass = self._small_row(small_feature)
            if dec is None:
                dec = M.cosine_rows(self._small[1].decoder[small_feature], self._large[1].decoder)
            with np.errstate(invalid="ignore"):
                related = corr >= self.options.related_correlation
            candidates = np.flatnonzero(related | _weak(corr) | self._nested_candidates(small_feature, mass))
            self._prefetch_parents(candidates)
            ids = np.array([u for u in candidates if self._parent_of(int(u))[0] == small_feature], dtype=np.int64)
            c, d = corr[ids], dec[ids]
        order = np.lexsort((ids, -c))  # best-correlated first, ties by id
        ids, c, d = ids[order], c[order], d[order]
        opt = self.options
        pairs = np.array([self._coactive(int(u), small_feature)[2:] for u in ids], dtype=np.float64).reshape(-1, 2)
        lower, prop = pairs[:, 0], pairs[:, 1]
        inside, inside_of, sib_prop = self._sibling_evidence(ids, prop)
        if self._table is None:  # with an alignment, _sibling_of reads its tables directly
            self._siblings.update(
                {int(u): (float(a), float(b), float(c)) for u, a, b, c in zip(ids, inside, inside_of, sib_prop, strict=True)}
            )
        self._children[small_feature] = (
            ids, c, d,
            V.is_equivalent(
                c, d, opt.equivalent_decoder_cosine, opt.equivalent_correlation,
                coactive_lower=lower, equivalent_coactive_correlation=opt.equivalent_coactive_correlation,
                siblings_inside=inside, inside_siblings=inside_of,
                proportionality=prop, sibling_proportionality=sib_prop,
            ),
        )
        return self._children[small_feature]

    @cached_property
    def _siblings(self) -> dict[int, tuple[float, float, float]]:
        """(siblings_inside, inside_siblings, sibling_proportionality) of larger-side features
        whose parent's children were listed (:meth:`_children_of`)."""
        return {}

    def _sibling_evidence(self, ids: np.ndarray, prop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``siblings.sibling_nesting`` of one parent's children ``ids`` (any order; float64 (q,)
        each, in that order) and the median of the others' proportionality ``prop`` (q,): the
        alignment's when it holds them, else from their codes, sliced in ascending id order as
        the alignment does, so that both get the same bits."""
        if self._table is not None:
            t = self._table
            return t["siblings_inside"][ids], t["inside_siblings"][ids], t["sibling_proportionality"][ids]
        large_ctx, _ = self._large
        order = np.argsort(ids, kind="stable")
        inside, inside_of = np.full(len(ids), np.nan), np.full(len(ids), np.nan)
        if len(ids) >= 2:
            inside[order], inside_of[order] = SIB.sibling_nesting(large_ctx.codes.csc[:, ids[order]], self.n_examples)
        return inside, inside_of, PROP.others_median(prop)

    def _sibling_of(self, large_feature: int, small_feature: int) -> tuple[float, float, float]:
        """(siblings_inside, inside_siblings, sibling_proportionality) of a larger-side feature
        among ``small_feature``'s children (its parent's): NaN when it has no sibling."""
        t = self._table
        if t is not None and t["parent"][large_feature] == small_feature:
            u = large_feature
            return float(t["siblings_inside"][u]), float(t["inside_siblings"][u]), float(t["sibling_proportionality"][u])
        self._children_of(small_feature)
        return self._siblings.get(int(large_feature), (float("nan"),) * 3)

    def _null(self, feature: int, scores: _Scores) -> tuple[NullModel, _PValues]:
        """The null model and per-target p-values (family-wise over all candidates)."""
        opt = self.options
        n_t = self.target_ctx.n_features
        n = self.n_examples
        if opt.n_permutations == 0:
            expected = float(np.sqrt(2 * np.log(max(n_t, 2)) / max(n - 1, 1)))
            return (
                NullModel(
                    method="permutation_analytic",
                    description=(
                        "source's example order shuffled: Pearson r has mean 0 and variance "
                        f"1/(n-1) with n={n}; one-sided normal tail, Sidak-corrected over "
                        f"{n_t} candidates"
                    ),
                    n_candidates=n_t,
                    expected_max_correlation=expected,
                ),
                _PValues(lambda at: _analytic_p(scores.metric["activation_correlation"][0][at], n, n_t), n_t),
            )
        rng = np.random.default_rng(opt.seed)
        src = self._source
        null_max = []
        for _ in range(opt.n_permutations):
            rows = rng.choice(n, size=scores.count_s, replace=False)
            dot, _ = M.pair_sums(np.sort(rows), scores.values[np.argsort(rows)], self.target_ctx.codes.csr)
            r = M.pearson(dot, n, src.mean[feature], src.std[feature], self._target.mean, self._target.std)
            r[np.isnan(scores.metric["activation_correlation"][0])] = np.nan
            null_max.append(float(np.nanmax(r)) if np.isfinite(r).any() else float("nan"))
        null_arr = np.array(null_max)
        corr_all = scores.metric["activation_correlation"][0]

        def p_at(at: np.ndarray) -> np.ndarray:
            corr = corr_all[at]
            with np.errstate(invalid="ignore"):
                exceed = (null_arr >= corr[..., None]).sum(-1)
            return np.where(np.isnan(corr), np.nan, (1 + exceed) / (1 + opt.n_permutations))

        return (
            NullModel(
                method="permutation_empirical",
                description=(
                    f"best correlation over all {n_t} candidates with the source's values moved "
                    f"to random examples, {opt.n_permutations} shuffles (seed {opt.seed}); "
                    "p = (1 + #shuffles beating r) / (1 + shuffles)"
                ),
                n_candidates=n_t,
                n_permutations=opt.n_permutations,
                null_max_correlation=[round(x, 6) if np.isfinite(x) else None for x in null_max],
                expected_max_correlation=float(np.nanmean(null_arr)) if np.isfinite(null_arr).any() else None,
            ),
            _PValues(p_at, n_t),
        )

    def _match(
        self, feature: int, target: int, rank: int, scores: _Scores, p_value: float,
        row: dict[str, tuple[Any, Any]] | None = None,
    ) -> FeatureMatch:
        """One target's match; ``p_value`` is its entry of :meth:`_null`'s p-values, ``row`` its
        ``(value, reason)`` per metric when already taken for several targets at once."""
        values: dict[str, float | None] = {}
        undefined: dict[str, str] = {}
        row = row if row is not None else {name: scores.metric.at(name, target) for name in scores.metric}
        for name, (value, reason) in row.items():
            values[name] = _opt(value)
            if values[name] is None:
                undefined[name] = M.REASONS.get(int(reason), "undefined")
        combined = _opt(_weighted_sum(scores.weights, lambda name: row[name][0]))
        if combined is None:
            parts = [n for n in self.options.weights if values[n] is None]
            undefined["combined_score"] = f"undefined because {', '.join(parts)} is undefined"
        p = _opt(p_value)
        if p is None:
            undefined["p_value"] = "no correlation to test"
        shared = self._shared_tokens(feature, target)
        significant = bool(p is not None and p < self.options.alpha and scores.related[target])
        relation = str(scores.relation[target])
        return FeatureMatch(
            target_feature=int(target),
            rank=rank,
            combined_score=combined,
            relation=relation,
            p_value=p,
            significant=significant,
            shared_top_tokens=shared,
            notes=self._notes(values, relation, p, significant, shared, undefined),
            undefined=undefined,
            **values,
        )

    def _shared_tokens(self, feature: int, target: int) -> list[str]:
        mine = self._source.top_tokens_of(feature)
        theirs = set(self._target.top_tokens[target].tolist())
        return [self._source.token_names[t] for t in mine if t in theirs]

    def _notes(self, v, relation, p, significant, shared, undefined) -> str:
        if "activation_correlation" in undefined:
            return f"no correlation: {undefined['activation_correlation']}"
        if significant:
            verdict = "significant"
        elif p is not None and p < self.options.alpha:
            verdict = f"below the related threshold {self.options.related_correlation}"
        else:
            verdict = "not significant"
        p_text = "<1e-300" if p == 0 else _fmt(p, ".2g")
        text = (
            f"{relation.replace('_', ' ')}: r={_fmt(v['activation_correlation'])}"
            f" ({verdict}, p={p_text}), "
            f"P(t|s)={_fmt(v['p_target_given_source'])}, P(s|t)={_fmt(v['p_source_given_target'])}, "
            f"decoder cos={_fmt(v['decoder_cosine'])}"
        )
        return text + (f"; shares {', '.join(shared[:3])}" if shared else "; no shared top tokens")

    # -- verdict -------------------------------------------------------------------------------
    def _verdict(self, feature: int, scores: _Scores) -> Verdict:
        """The alignment's class of ``feature`` with its evidence (rules in
        analysis/metrics/verdicts.py, applied to this one feature), and why each None is None."""
        v, why_ratio = self._verdict_of(feature, scores)
        v.undefined = none_reasons(v, _verdict_null_reasons(v, self.source_ctx.model_type, why_ratio))
        return v

    def _verdict_of(self, feature: int, scores: _Scores) -> tuple[Verdict, str | None]:
        """The verdict, and why its ``error_ratio`` is None where the parent rule asked for it."""
        opt = self.options
        corr = scores.metric["activation_correlation"][0]
        dec = scores.metric["decoder_cosine"][0]
        count = scores.count_s
        other = self.target_ctx.model_type
        me = f"{self.source_ctx.model_type} {feature}"
        best = int(np.nanargmax(corr)) if np.isfinite(corr).any() else None
        best_text = "no correlation is defined" if best is None else f"its best correlation is {corr[best]:.3f} ({other} {best})"
        if not self._source_is_larger:
            ids, child_corr, _, eq = self._children_of(feature, corr, dec, scores.mass)
            label = str(V.small_side_classes([len(ids)], [int(eq.sum())], [count])[0])
            if label == "dead":
                rule = f"{me} is never active: no correlation is defined"
            elif len(ids) == 0:
                rule = (
                    f"no {other} feature has {me} as its best-correlated {self.source_ctx.model_type} "
                    f"feature at r >= {opt.related_correlation} ({best_text})"
                )
            else:
                shown = ", ".join(str(int(u)) for u in ids[:8]) + (" ..." if len(ids) > 8 else "")
                rule = (
                    f"{len(ids)} {other} feature(s) have {me} as their best-correlated feature at "
                    f"r >= {opt.related_correlation}: {shown}"
                    + ("; the one is an equivalent pair" if label == "equivalent" else "")
                )
            return (Verdict(
                label=label,
                side="smaller",
                children=ids.tolist(),
                children_scores=[round(float(c), 6) for c in child_corr],
                rule=rule,
                significance=V.SIGNIFICANCE_BASIS,
            ), None)

        info = self._information(feature, scores)
        p = self._assign(feature, corr)
        # Nesting of the feature in its best-correlated candidate (the parent rule's second test).
        nest = None if best is None else _opt(self._nesting(feature, best))
        nest_text = "" if nest is None else f", nesting bound {nest:.3f}"
        # The information test, reported where the rule asks it (weak evidence below the cut).
        ratio, why_ratio = None, None
        if best is not None and self._needs_error_ratio(corr[best], np.nan if nest is None else nest):
            value, why_ratio = self._error_ratio(feature)
            ratio = _opt(value)
        weak = "nested" if nest is not None and nest >= opt.nested_containment else f"r >= {V.WEAK_CORRELATION}"
        if p < 0:
            label = "dead" if count == 0 else "novel"
            if label == "dead":
                rule = f"{me} is never active: no correlation is defined"
            elif ratio is not None:
                rule = (
                    f"{best_text}{nest_text}: below related_correlation {opt.related_correlation}; {weak}, but the "
                    f"{other} SAE reconstructs the inputs where it fires worse than elsewhere (error ratio "
                    f"{ratio:.3f} > {V.NOVEL_ERROR_RATIO}): it carries what the {other} SAE lacks, no parent"
                )
            else:
                rule = (
                    f"{best_text}{nest_text}: below related_correlation {opt.related_correlation}, not nested "
                    f"(nested_containment {opt.nested_containment})"
                    + ("" if best is None or corr[best] < V.WEAK_CORRELATION else
                       f", and the information test could not run ({why_ratio or 'no error ratio'})")
                    + ": no parent"
                )
            return (Verdict(
                label=label, side="larger", rule=rule, significance=V.SIGNIFICANCE_BASIS,
                information_test=info, best_nesting=nest, error_ratio=ratio,
                **_confidence(label, np.nan if best is None else corr[best], nest),
            ), why_ratio)
        siblings, *_ = self._children_of(p)
        rival, rival_score = self._rival(feature, p, corr)
        co_r, co_n, co_lower, prop = self._coactive(feature, p)
        s_in, s_of, s_prop = self._sibling_of(feature, p)
        by = V.equivalent_by(
            corr[p], dec[p], opt.equivalent_decoder_cosine, opt.equivalent_correlation,
            coactive_lower=co_lower, equivalent_coactive_correlation=opt.equivalent_coactive_correlation,
            siblings_inside=s_in, inside_siblings=s_of, proportionality=prop, sibling_proportionality=s_prop,
        )[0] or None
        label = str(V.large_side_classes([True], [by is not None], [len(siblings)], [count])[0])
        contained = scores.metric.at("p_target_given_source", p)[0]
        lower = None
        if np.isfinite(contained):
            lower = float(V.containment_lower_bound(round(contained * count), count))
        why = {
            "equivalent": {
                "decoder_cosine": (
                    f"decoder cosine {dec[p]:.3f} >= {opt.equivalent_decoder_cosine}, r = {corr[p]:.3f} >= "
                    f"{V.DECODER_MIN_CORRELATION}"
                ),
                "correlation": f"correlation {corr[p]:.3f} >= {opt.equivalent_correlation}",
                "coactive_correlation": (
                    f"co-active correlation {co_r:.3f} on {co_n} examples (family-wise lower bound "
                    f"{co_lower:.3f} >= {opt.equivalent_coactive_correlation}), r = {corr[p]:.3f} >= "
                    f"{V.COACTIVE_MIN_CORRELATION}"
                ),
                "siblings": (
                    f"its {len(siblings) - 1} sibling(s) lie inside it (chance-corrected share {s_in:.3f} >= "
                    f"{V.EQUIVALENT_SIBLINGS_INSIDE}) and it does not lie inside them ({s_of:.3f}, "
                    f"{s_in - s_of:.3f} less, >= {V.EQUIVALENT_SIBLING_ASYMMETRY}), r = {corr[p]:.3f} >= "
                    f"{V.COACTIVE_MIN_CORRELATION}: it reads its parent's feature, not a part of it"
                ),
                "proportionality": (
                    f"where its parent fires it is nearly a multiple of it (squared cosine {prop:.3f} >= "
                    f"{V.EQUIVALENT_PROPORTIONALITY}), {V.EQUIVALENT_PROPORTIONALITY_GAP} or more above its "
                    + (f"{len(siblings) - 1} sibling(s)' median {s_prop:.3f}" if np.isfinite(s_prop) else "siblings' (none: 0)")
                    + f", r = {corr[p]:.3f} >= {V.COACTIVE_MIN_CORRELATION}: it scales with its parent's feature, "
                    "not with a part of it"
                ),
                None: "",
            }[by],
            "split_child": f"{other} {p} has {len(siblings)} {self.source_ctx.model_type} features assigned",
            "partial": f"{other} {p} has only this one assigned, and the pair is not equivalent",
        }[label]
        if corr[p] >= opt.related_correlation:
            how = f"r = {corr[p]:.3f} >= {opt.related_correlation}"
        else:
            beyond = nest is not None and nest >= max(V.CONFIDENT_NESTING, opt.nested_containment)
            how = (
                f"r = {corr[p]:.3f} < {opt.related_correlation}, but "
                + (f"nested: bound {nest:.3f} >= {opt.nested_containment}" if weak == "nested" else f"r >= {V.WEAK_CORRELATION}")
                + (
                    f", beyond doubt (>= {V.CONFIDENT_NESTING}): the information test is not asked" if beyond
                    else f", and the {other} SAE reconstructs the inputs where it fires as well as elsewhere "
                    f"(error ratio {ratio:.3f} <= {V.NOVEL_ERROR_RATIO})" if ratio is not None
                    else f" (the information test could not run: {why_ratio or 'no error ratio'})"
                )
            )
        return (Verdict(
            label=label,
            side="larger",
            parent=p,
            parent_score=float(corr[p]),
            parent_decoder_cosine=_opt(dec[p]),
            parent_containment=_opt(contained),
            parent_containment_lower=lower,
            best_nesting=nest,
            error_ratio=ratio,
            parent_n_children=len(siblings),
            equivalent_by=by if label == "equivalent" else None,
            parent_coactive_correlation=_opt(co_r),
            parent_coactive_count=co_n,
            parent_coactive_lower=_opt(co_lower),
            siblings_inside=_opt(s_in),
            inside_siblings=_opt(s_of),
            parent_proportionality=_opt(prop),
            sibling_proportionality=_opt(s_prop),
            rival=rival,
            rival_score=rival_score,
            rule=f"parent {other} {p}, the best-correlated ({how}); {why}"
            + (
                f"; rival {other} {rival} (unrelated to the parent) correlates {rival_score:.3f}, "
                f">= {V.RIVAL_RATIO} of the parent's: it may mix the two features, check both"
                if rival is not None and V.has_rival(corr[p], rival_score) else ""
            ),
            significance=V.SIGNIFICANCE_BASIS,
            information_test=info,
            **_confidence(label, corr[p], nest, rival_score),
        ), why_ratio)

    @cached_property
    def _small_residual(self) -> np.ndarray | str:
        """The smaller SAE's residual ``x - x_hat`` on every example (float32 (n, d_model)), or
        why it cannot be had."""
        (small, _), (large, _) = self._small, self._large
        try:
            x = small.activations
        except LookupError as err:  # built from codes or without activations: the message says which
            return str(err)
        if small.d_model != large.d_model:
            return f"d_model differs ({small.d_model} for {small.name!r}, {large.d_model} for {large.name!r})"
        return ST.residuals(x, small.codes.csr, ST.numpy_decoder(small.sae))

    def _information(self, feature: int, scores: _Scores) -> InformationTest:
        """The stitching test of one larger-side feature, or why it did not run."""
        if not self.options.information_test:
            return InformationTest(
                ran=False, reason="not requested: pass MatchOptions(information_test=True) or --information-test"
            )
        if scores.count_s == 0:
            return InformationTest(ran=False, reason="the feature is never active")
        residual = self._small_residual
        if isinstance(residual, str):
            return InformationTest(ran=False, reason=residual)
        large = self._large[0]
        contribution = ST.contribution_of(ST.numpy_decoder(large.sae), feature, large.n_features, large.d_model)
        column = sp.csc_matrix(
            (scores.values, scores.rows, np.array([0, len(scores.rows)])), shape=(self.n_examples, 1)
        )
        out = ST.stitching_test(residual, column, contribution[None, :])
        return InformationTest(
            ran=True,
            gain=_opt(out.gain[0]),
            delta_sse=_opt(out.delta_sse[0]),
            n_examples=int(out.n_examples[0]),
        )

    # -- public API ----------------------------------------------------------------------------
    @one_blas_thread
    def find_matches(
        self,
        source_feature: int,
        n_candidates: int | None = None,
        n_top_matches: int = 10,
        *,
        sort_by: SortKey = "activation_correlation",
        decompose: bool = True,
    ) -> MatchReport:
        """Score every target feature against ``source_feature`` and return the best.

        Parameters
        ----------
        source_feature : feature id in the source model
        n_candidates : None scores and ranks every target. An int keeps only the best that many
            by the exact ``sort_by`` score, computed for all targets first (an exact prefilter,
            never a random sample); the report's ``candidate_selection`` says so.
        n_top_matches : how many matches the report lists (>= 1)
        sort_by : the metric that orders matches; undefined values sort last. The default,
            exact activation correlation, found the planted parent of every demo child (README);
            ``"combined_score"`` is upstream's order
        decompose : also compute :meth:`find_decomposition` into ``report.decomposition``
        """
        t0 = time.perf_counter()
        feature = self.source_ctx.check_feature(source_feature)
        if isinstance(n_top_matches, bool) or not isinstance(n_top_matches, (int, np.integer)) or n_top_matches < 1:
            raise ValueError(f"n_top_matches must be an integer >= 1, got {n_top_matches!r}")
        if n_candidates is not None and (
            isinstance(n_candidates, bool) or not isinstance(n_candidates, (int, np.integer)) or n_candidates < 1
        ):
            raise ValueError(f"n_candidates must be None or an integer >= 1, got {n_candidates!r}")
        if sort_by not in SORT_KEYS:
            raise ValueError(f"sort_by {sort_by!r} is unknown; expected one of {list(SORT_KEYS)}")
        n_t = self.target_ctx.n_features
        scores = self._score_all(feature)
        null, p_value = self._null(feature, scores)
        key = scores.combined if sort_by == "combined_score" else scores.metric[sort_by][0]
        if n_candidates is not None and n_candidates < n_t:
            tested = int(n_candidates)
            selection = (
                f"exact prefilter: the {tested} best of all {n_t} {self.target_ctx.model_type} "
                f"features by {sort_by} (every feature was scored; the rest are dropped)"
            )
        else:
            tested = n_t
            selection = f"all {n_t} {self.target_ctx.model_type} features"
        top = _top_order(key, min(n_top_matches, tested))
        # Every per-target number of the matches in one vectorized call each, not one per match.
        p_top = p_value[top]
        at_top = {name: scores.metric.at(name, top) for name in scores.metric}
        matches = [
            self._match(feature, int(t), i + 1, scores, p_top[i], {k: (v[i], r[i]) for k, (v, r) in at_top.items()})
            for i, t in enumerate(top)
        ]

        corr = scores.metric["activation_correlation"][0]
        warnings: list[str] = []
        summary = _feature_summary(self._source, feature)
        if summary.dead:
            warnings.append(f"source feature {feature} is never active; every activation metric is undefined")
        elif scores.count_s < self.options.min_active:
            warnings.append(
                f"source feature {feature} is active on only {scores.count_s} examples "
                f"(< min_active={self.options.min_active}); correlations are undefined"
            )
        best = _opt(np.nanmax(corr)) if np.isfinite(corr).any() else None
        if self.options.verdict:
            verdict = self._verdict(feature, scores)
            unique = verdict.label in ("novel", "unique", "dead")
            reason = verdict.rule if unique else None
        else:
            # The same answer without the verdict's costly part (a larger-side feature's siblings):
            # no counterpart = no parent (larger side) or no child among the targets (smaller).
            verdict = None
            if self._source_is_larger:
                unique = scores.count_s == 0 or self._assign(feature, corr) < 0
            else:
                unique = not scores.parent_pair.any()
            reason = (
                f"no {'parent' if self._source_is_larger else 'child'} in {self.target_ctx.model_type} "
                f"(best correlation {best if best is None else round(best, 3)}; verdict not computed: "
                "MatchOptions(verdict=False))"
                if unique else None
            )
        decomposition = self._decompose(feature, scores) if decompose else None
        report = MatchReport(
            source_feature=feature,
            source_model=self.source_ctx.model_type,
            target_model=self.target_ctx.model_type,
            matches=matches,
            n_candidates_tested=tested,
            candidate_selection=selection,
            best_correlation=best,
            n_examples=self.n_examples,
            source_summary=summary,
            decomposition=decomposition,
            is_unique=unique,
            unique_reason=reason,
            null=null,
            params={
                "n_candidates": n_candidates,
                "n_top_matches": n_top_matches,
                "sort_by": sort_by,
                **self.options.model_dump(),
            },
            source_fingerprint=self.source_ctx.fingerprint,
            target_fingerprint=self.target_ctx.fingerprint,
            elapsed_ms=(time.perf_counter() - t0) * 1000,
            warnings=warnings,
            alignment=None if self.alignment is None else self.aligned(feature),
            verdict=verdict,
        )
        report.undefined = none_reasons(report, {
            "unique_reason": "is_unique is false: the source has a counterpart (see verdict)",
            "best_correlation": warnings[0] if warnings else "no correlation is defined",
            "decomposition": "not requested: find_matches(decompose=False) or --no-decomposition",
            "alignment": "no alignment given: FeatureMatcher(..., alignment=DIR) or --alignment DIR",
            "verdict": "not requested: MatchOptions(verdict=False) or --no-verdict",
        })
        return report

    @one_blas_thread
    def score_all(self, source_feature: int) -> dict[str, np.ndarray]:
        """Every metric of ``source_feature`` against all targets, as arrays of shape
        (n_target_features,) with NaN where undefined, plus ``combined_score``, ``relation``
        (object array of labels) and ``p_value``. For bulk analyses; reports use the same numbers."""
        feature = self.source_ctx.check_feature(source_feature)
        scores = self._score_all(feature)
        _, p_value = self._null(feature, scores)
        out = {name: arr for name, (arr, _) in scores.metric.items()}
        out.update(combined_score=scores.combined, relation=scores.relation, p_value=p_value.full())
        return out

    def find_matches_many(self, features: Iterable[Any], **kwargs: Any) -> list[MatchReport | FeatureError]:
        """:meth:`find_matches` of each feature, in order, with the same keyword arguments. A bad
        id gives a :class:`FeatureError` in its place and the rest are answered; the matcher's
        caches (reverse passes, parents) carry over from one query to the next."""
        return [self._one(self.find_matches, f, **kwargs) for f in features]

    def find_decomposition_many(self, features: Iterable[Any]) -> list[Decomposition | FeatureError]:
        """:meth:`find_decomposition` of each feature, in order; bad ids as in :meth:`find_matches_many`."""
        return [self._one(self.find_decomposition, f) for f in features]

    @staticmethod
    def _one(method, feature: Any, **kwargs: Any):
        try:
            return method(feature, **kwargs)
        except (TypeError, ValueError) as err:  # the id (or an option) is bad: answer the rest
            return FeatureError(feature=feature, error=str(err), error_type=type(err).__name__)

    @one_blas_thread
    def find_decomposition(self, feature: int) -> Decomposition:
        """The target features that together account for ``feature`` (e.g. its Ultra children).

        From the smaller side, members are the source's children (the targets whose parent it is,
        by the verdict rules); from the larger side, the targets whose correlation with it
        reaches ``options.related_correlation``. At most ``max_decomposition_members``, strongest
        first; a non-negative least-squares fit of the source's codes on theirs gives each
        member's weight and the share of the source's variance they explain (R^2).
        """
        feature = self.source_ctx.check_feature(feature)
        return self._decompose(feature, self._score_all(feature))

    def _decompose(self, feature: int, scores: _Scores) -> Decomposition:
        opt = self.options
        corr = scores.metric["activation_correlation"][0]
        if self._source_is_larger:
            with np.errstate(invalid="ignore"):
                eligible = np.flatnonzero(corr >= opt.related_correlation)
            chosen = f"targets with correlation >= {opt.related_correlation}"
        else:
            # The source's children, by the same rule as the relation labels and the alignment.
            eligible = np.flatnonzero(scores.parent_pair)  # relation split_by_target or equivalent
            chosen = (
                f"the source's children: targets whose best-correlated {self.source_ctx.model_type} "
                f"feature is the source, with correlation >= {opt.related_correlation}"
            )
        eligible = eligible[np.argsort(-corr[eligible], kind="stable")][: opt.max_decomposition_members]
        method = f"{chosen}, weighted by non-negative least squares of the source's codes on theirs (both centered)"
        base = dict(
            source_feature=feature,
            source_model=self.source_ctx.model_type,
            target_model=self.target_ctx.model_type,
            n_considered=len(eligible),
            method=method,
        )
        if len(eligible) == 0:
            why = f"no member: no {self.target_ctx.model_type} feature meets the rule ({chosen})"
            return Decomposition(
                members=[], n_members=0, r_squared=None, coverage=None, is_split=False,
                undefined={"r_squared": why, "coverage": why}, **base,
            )
        tgt = self._target
        csc = self.target_ctx.codes.csc
        gram, n_covered = self._children_sums(feature, eligible, scores.parent_pair)
        covered = None if n_covered is not None else active_union(csc, eligible, self.n_examples)
        weights, r2 = nnls_sparse(
            csc, eligible, scores.rows, scores.values, self.n_examples,
            xty=scores.dot[eligible], column_sums=(tgt.total[eligible], tgt.total_sq[eligible]),
            active=covered, gram=gram,
        )
        if not len(scores.rows):
            coverage = None
        elif n_covered is not None:
            coverage = n_covered / len(scores.rows)
        else:
            coverage = float(covered[scores.rows].mean())
        p_ts = scores.metric.at("p_target_given_source", eligible)[0]
        p_st = scores.metric.at("p_source_given_target", eligible)[0]
        order = np.lexsort((-corr[eligible], -weights))
        # Members of a smaller-side source are its children: each carries its verdict's rival.
        rivals = (
            {int(u): self._rival(int(u), feature) for u in eligible} if not self._source_is_larger
            else dict.fromkeys((int(u) for u in eligible), (None, None))
        )
        members = [
            DecompositionMember(
                feature=int(eligible[i]),
                weight=float(weights[i]),
                activation_correlation=_opt(corr[eligible[i]]),
                p_target_given_source=_opt(p_ts[i]),
                p_source_given_target=_opt(p_st[i]),
                shared_top_tokens=self._shared_tokens(feature, int(eligible[i])),
                rival=rivals[int(eligible[i])][0],
                rival_score=rivals[int(eligible[i])][1],
            )
            for i in order
        ]
        undefined = {}
        if r2 is None:
            undefined["r_squared"] = "the source's codes have zero variance: there is no variance to explain"
        if coverage is None:
            undefined["coverage"] = "the source is never active: it has no active examples to cover"
        return Decomposition(
            members=members, n_members=len(members), r_squared=r2, coverage=coverage,
            is_split=len(members) >= 2, undefined=undefined, **base,
        )

    def _children_sums(
        self, feature: int, members: np.ndarray, parent_pair: np.ndarray
    ) -> tuple[np.ndarray | None, int | None]:
        """The members' ``X^T X`` (None for fewer than 2: the moments give it) and, when they are
        all of the source's children (``parent_pair``, the scoring pass's mask of them, from the
        alignment's tables), the examples they cover, from the pair index: when the source is
        on the smaller side and the index holds its children's sums; else None, None (computed
        from the codes)."""
        if self.index is None or self._source_is_larger:
            return None, None
        children = np.flatnonzero(parent_pair)
        members = np.asarray(members)
        gram = self.index.children_gram_of(feature, children, members) if len(members) >= 2 else None
        whole = len(members) == len(children) and np.array_equal(np.sort(members), children)
        return gram, self.index.children_covered_of(feature) if whole else None

    @one_blas_thread
    def compare_features(self, source_fid: int, target_fid: int) -> FeatureComparison:
        """Every pair metric for one source and one target feature, and the overlap of their
        active examples (``n_both``, ``n_only_source``, ``n_only_target``, ``n_neither`` and
        up to 3 example ids of each kind in ``overlap_examples``)."""
        source = self.source_ctx.check_feature(source_fid)
        target = self.target_ctx.check_feature(target_fid)
        scores = self._score_all(source)
        _, p_value = self._null(source, scores)
        return self._compare(source, target, scores, p_value)

    def compare_features_many(self, pairs: Iterable[tuple[Any, Any]]) -> list[FeatureComparison | FeatureError]:
        """:meth:`compare_features` of each ``(source, target)`` pair, in order; a bad pair gives
        a :class:`FeatureError` in its place (its ``feature`` is the pair) and the rest are
        answered. A source's scores are computed once for a run of pairs that share it."""
        out: list[FeatureComparison | FeatureError] = []
        last: tuple[int, _Scores, _PValues] | None = None
        for pair in pairs:
            try:
                if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                    raise ValueError(f"{pair!r} is not a (source, target) pair of feature ids")
                source = self.source_ctx.check_feature(pair[0])
                target = self.target_ctx.check_feature(pair[1])
                if last is None or last[0] != source:
                    scores = self._score_all(source)
                    last = (source, scores, self._null(source, scores)[1])
                out.append(self._compare(source, target, last[1], last[2]))
            except (TypeError, ValueError) as err:
                out.append(FeatureError(feature=list(pair) if isinstance(pair, tuple) else pair, error=str(err), error_type=type(err).__name__))
        return out

    def _compare(self, source: int, target: int, scores: _Scores, p_value: _PValues) -> FeatureComparison:
        m = self._match(source, target, 1, scores, p_value[target])
        mine = self._source.tokens_of(source)
        theirs = self._target.tokens_of(target)
        # Overlap of the two active sets from the two CSC columns (sorted rows): no dense pass.
        s_rows = np.asarray(scores.rows, dtype=np.int64)
        s_vals = np.asarray(scores.values, dtype=np.float64)
        t_rows, t_vals = self.target_ctx.codes.feature(target)
        t_rows, t_vals = np.asarray(t_rows, dtype=np.int64), np.asarray(t_vals, dtype=np.float64)
        both, s_at, t_at = np.intersect1d(s_rows, t_rows, assume_unique=True, return_indices=True)
        s_only = np.ones(len(s_rows), dtype=bool)
        s_only[s_at] = False
        t_only = np.ones(len(t_rows), dtype=bool)
        t_only[t_at] = False
        ids = self.source_ctx.examples.example_ids

        def strongest(rows: np.ndarray, key: np.ndarray) -> list[int]:
            order = np.lexsort((rows, -key))[:3]
            return [int(ids[r]) for r in rows[order]]

        # Codes of two features have their own scales: "strong on both" compares each to its max.
        strength = np.zeros(0)
        if len(both):
            strength = np.minimum(s_vals[s_at] / s_vals.max(), t_vals[t_at] / t_vals.max())
        n_both = len(both)
        overlap = dict(
            n_both=n_both,
            n_only_source=len(s_rows) - n_both,
            n_only_target=len(t_rows) - n_both,
            n_neither=self.n_examples - len(s_rows) - len(t_rows) + n_both,
            overlap_examples={
                "both": strongest(both, strength),
                "only_source": strongest(s_rows[s_only], s_vals[s_only]),
                "only_target": strongest(t_rows[t_only], t_vals[t_only]),
            },
        )
        return FeatureComparison(
            source_feature=source,
            target_feature=target,
            source_model=self.source_ctx.model_type,
            target_model=self.target_ctx.model_type,
            jaccard_similarity=m.top_token_overlap,
            top_token_overlap=m.top_token_overlap,
            activation_correlation=m.activation_correlation,
            decoder_cosine=m.decoder_cosine,
            coactivation_jaccard=m.coactivation_jaccard,
            p_target_given_source=m.p_target_given_source,
            p_source_given_target=m.p_source_given_target,
            combined_score=m.combined_score,
            relation=m.relation,
            p_value=m.p_value,
            shared_tokens=[t for t in mine if t in set(theirs)],
            source_only_tokens=[t for t in mine if t not in set(theirs)],
            target_only_tokens=[t for t in theirs if t not in set(mine)],
            n_coactive=int(scores.coactive[target]),
            notes=m.notes,
            undefined=m.undefined,
            **overlap,
        )

    def reverse(self) -> FeatureMatcher:
        """The matcher in the other direction, sharing this one's options."""
        return FeatureMatcher(self.target_ctx, self.source_ctx, options=self.options)
