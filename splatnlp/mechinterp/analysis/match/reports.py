"""Pydantic results of the matcher: what crosses a boundary (JSON, CLI, research store).

A metric that cannot be computed is ``None`` and its name maps to the reason in ``undefined``;
it is never reported as 0.0.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from splatnlp.mechinterp.analysis.align.report import AlignedFeature

REPORT_SCHEMA_VERSION = 1

Relation = Literal[
    "equivalent",
    "source_split_by_target",
    "source_part_of_target",
    "partial",
    "unrelated",
]
RELATIONS: tuple[str, ...] = (
    "equivalent",
    "source_split_by_target",
    "source_part_of_target",
    "partial",
    "unrelated",
)


PAIR_METRICS: tuple[str, ...] = (
    "activation_correlation",
    "top_token_overlap",
    "decoder_cosine",
    "coactivation_jaccard",
    "p_target_given_source",
    "p_source_given_target",
)
"""The per-pair metrics of a FeatureMatch, in report order (the one list the matcher, its CLI and
the research store share)."""


class TokenScore(BaseModel):
    token: str
    score: float
    """Count among the top examples (``frequency``) or log2 enrichment (``enrichment``)."""


class FeatureSummary(BaseModel):
    """One feature on its own."""

    feature: int
    model: str
    n_active: int
    """Examples where the feature's code is > 0."""
    frequency: float
    """Share of examples where the feature is active."""
    mean: float
    """Mean code over all examples (zeros included)."""
    max: float
    top_tokens: list[TokenScore]
    dead: bool
    """Never active on the example set."""


class NullModel(BaseModel):
    """How significance was judged."""

    method: Literal["permutation_analytic", "permutation_empirical"]
    description: str
    n_candidates: int
    """Family size for the family-wise p-values."""
    n_permutations: int = 0
    null_max_correlation: list[float | None] = []
    """Best correlation over all candidates under each shuffle (empirical method only); None
    where no correlation is defined (a dead or rare source)."""
    expected_max_correlation: float | None = None
    """Mean of the best null correlation over all candidates."""


class FeatureMatch(BaseModel):
    """One candidate target feature scored against the source."""

    target_feature: int
    rank: int
    """1-based position in the report's sort order."""
    top_token_overlap: float | None
    """Jaccard of the two top-token sets."""
    activation_correlation: float | None
    """Pearson over all shared examples, zeros included."""
    decoder_cosine: float | None
    """Cosine of the two unit decoder directions (weights only)."""
    coactivation_jaccard: float | None
    """Jaccard of the sets of examples where each is active."""
    p_target_given_source: float | None
    """P(target active | source active)."""
    p_source_given_target: float | None
    """P(source active | target active)."""
    combined_score: float | None
    """Weighted sum of metrics (weights in the report's params); None if any part is undefined."""
    relation: Relation
    p_value: float | None
    """Family-wise p-value of the correlation against the report's null."""
    significant: bool
    """p_value < alpha and correlation >= the 'related' threshold."""
    shared_top_tokens: list[str]
    notes: str
    undefined: dict[str, str] = {}
    """Metric name -> why it is None."""

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class DecompositionMember(BaseModel):
    feature: int
    weight: float
    """Non-negative least-squares weight of this target in the fit of the source."""
    activation_correlation: float | None
    p_target_given_source: float | None
    p_source_given_target: float | None
    shared_top_tokens: list[str]
    rival: int | None = None
    """When the source is the smaller side (members are its children): the member's rival in the
    source's model, the feature unrelated to the source (|r| < 0.2 with it) that correlates best
    with the member (``Verdict.rival`` of the member; None: none correlates positively, or the
    source is the larger side)."""
    rival_score: float | None = None
    """The rival's correlation with the member; at >= 0.5 of ``activation_correlation`` the
    member may mix the source's feature with the rival's: look at both before recording it."""


class Decomposition(BaseModel):
    """The target features that together account for the source feature."""

    source_feature: int
    source_model: str
    target_model: str
    members: list[DecompositionMember]
    n_members: int = 0
    """How many members the decomposition has (``members`` may list fewer: ``decompose --limit``)."""
    r_squared: float | None
    """Share of the source's variance explained by the non-negative fit on the members."""
    coverage: float | None
    """Share of the source's active examples where at least one member is active."""
    n_considered: int
    """Candidates (correlation >= min_correlation) the fit chose from."""
    method: str
    is_split: bool
    """At least two members: the target model splits the source."""
    undefined: dict[str, str] = {}
    """Why ``r_squared`` or ``coverage`` is None, per field (empty when both are defined)."""


class InformationTest(BaseModel):
    """Does the larger SAE's latent carry information the smaller SAE lacks? The stitching test
    (Leask et al. 2025; :mod:`splatnlp.mechinterp.analysis.metrics.stitching`): add the latent's
    decoder contribution to the smaller SAE's reconstruction on the latent's active examples and
    see how much of the smaller SAE's squared error goes away."""

    test: Literal["stitching"] = "stitching"
    ran: bool
    reason: str | None = None
    """Why it did not run (None when it ran)."""
    gain: float | None = None
    """Share of the smaller SAE's squared error on the latent's active examples that adding the
    latent removes (> 0: it adds something the smaller SAE misses; <= 0: it repeats it)."""
    delta_sse: float | None = None
    """Change of the smaller SAE's summed squared error there (negative = lower error)."""
    n_examples: int | None = None
    """Active examples the sums run over."""
    used_in_verdict: bool = False
    """The verdict is decided by the activation evidence; this test is reported beside it (on
    the dev evaluation worlds its gain overlaps between novel latents and children of every
    correlation band, so combining it lowered the novel F1; see the verdicts module)."""


class Verdict(BaseModel):
    """What the source feature *is* relative to the other dictionary: the same class, parent and
    children the whole-dictionary alignment gives it (one set of rules,
    :mod:`splatnlp.mechinterp.analysis.metrics.verdicts`), with the evidence."""

    model_config = ConfigDict(ser_json_inf_nan="null")

    label: str
    """Larger side: one of ``split_child``, ``equivalent``, ``partial``, ``novel``, ``dead``;
    smaller side: ``split_parent``, ``equivalent``, ``partial``, ``unique``, ``dead`` (the
    alignment's classes, ``features.csv``'s ``class``)."""
    side: Literal["larger", "smaller"]
    """Which dictionary the source belongs to (the larger is the one with more features)."""
    parent: int | None = None
    """Larger side: the smaller-side feature it is part of (None when novel or dead)."""
    parent_score: float | None = None
    """The parent's activation correlation (the statistic the parent is chosen by)."""
    parent_decoder_cosine: float | None = None
    parent_containment: float | None = None
    """P(parent active | source active): nesting evidence that firing rates do not cap."""
    parent_containment_lower: float | None = None
    """Its 95 % Wilson lower bound."""
    best_nesting: float | None = None
    """Larger side: the chance-corrected containment bound of the source in its best-correlated
    candidate, ``(lower - q) / (1 - q)`` with q the candidate's firing rate: the parent rule's
    nesting test (a parent below the correlation cut needs >= ``nested_containment``)."""
    error_ratio: float | None = None
    """Larger side, where it decides (best correlation below ``related_correlation`` with weak
    evidence of a parent: nested, or r >= 0.25; not when nested beyond doubt, >= 0.8, which keeps
    the parent without it): the information test of ``novel``, the smaller
    SAE's fraction of variance unexplained on the examples where the source fires (weighted by its
    squared code) over its fraction on all examples (``reconstruction.error_ratio``). At most 1.04:
    the smaller SAE covers what happens there, and the weak evidence gives the parent; above it,
    ``novel``. Every feature's is in the alignment's ``features.csv``."""
    parent_n_children: int | None = None
    """How many larger-side features have this parent (>= 2: the parent is split)."""
    children: list[int] = Field(default_factory=list)
    """Smaller side: the larger-side features whose parent it is, best-correlated first."""
    children_scores: list[float] = Field(default_factory=list)
    equivalent_by: Literal["decoder_cosine", "correlation", "coactive_correlation", "siblings", "proportionality"] | None = None
    """Which test made the parent pair ``equivalent`` (the first that passes, in this order)."""
    siblings_inside: float | None = None
    """Larger side, beside siblings (other features with the same parent): how much of their
    activation lies on the source's active examples beyond chance (mean over them); ``equivalent``
    by siblings when >= 0.6 and >= ``inside_siblings`` + 0.45 with r >= 0.5."""
    inside_siblings: float | None = None
    """The reverse: how much of the source's activation lies on theirs."""
    parent_proportionality: float | None = None
    """Larger side: how close the source is to a multiple of its parent where the parent is
    active (the squared cosine of the two there, ``proportionality.proportionality``);
    ``equivalent`` by proportionality when >= 0.5 and >= ``sibling_proportionality`` (0 without
    siblings) + 0.2, with r >= 0.5."""
    sibling_proportionality: float | None = None
    """The median ``parent_proportionality`` of its siblings (None without any)."""
    rival: int | None = None
    """Larger side, with a parent: the target-model feature unrelated to the parent (|r| < 0.2
    with it) that correlates best with this one (``verdicts.rivals``; None: none correlates
    positively)."""
    rival_score: float | None = None
    """The rival's correlation with this feature. At >= ``verdicts.RIVAL_RATIO`` (0.5) of
    ``parent_score`` the feature may mix the parent's feature with the rival's: the parent is then
    never ``high`` confidence, and the rule says so (parents with a rival were right 62-69 % of
    the time on the evaluation worlds, 93-94 % without)."""
    parent_coactive_correlation: float | None = None
    """Larger side: the parent pair's Pearson correlation over the examples where both are active
    (None: fewer than 3, or no variance there): do the two magnitudes move together?"""
    parent_coactive_count: int | None = None
    """How many examples it is measured on."""
    parent_coactive_lower: float | None = None
    """Its lower bound (Fisher z, 95 % family-wise over the larger dictionary's features:
    ``verdicts.coactive_lower_bound``); ``equivalent`` when it reaches
    ``equivalent_coactive_correlation`` with r >= 0.5."""
    confidence: Literal["high", "low"] | None = None
    """Larger side: how often a verdict like this one was right on the evaluation worlds
    (``high``: the parent holds most of the feature's activation, nesting bound >= 0.8, or
    novel with best correlation < 0.2; ``low``: check it on examples first). See
    ``confidence_basis``."""
    confidence_basis: str | None = None
    """The rule and the measured rates behind ``confidence``."""
    rule: str
    """The rule that gave the label, with this feature's numbers."""
    significance: str
    """How significance enters the verdict (it does not; the effect size decides)."""
    information_test: InformationTest | None = None
    """Larger side only: the stitching test, or why it could not run."""
    undefined: dict[str, str] = {}
    """Why each field that is None is None (no parent, the smaller side, too few co-active
    examples, ...), per field."""


class MatchReport(BaseModel):
    """All candidate matches of one source feature in the other model."""

    model_config = ConfigDict(ser_json_inf_nan="null")

    schema_version: int = REPORT_SCHEMA_VERSION
    source_feature: int
    source_model: str
    target_model: str
    matches: list[FeatureMatch]
    n_candidates_tested: int
    candidate_selection: str
    """How the candidates were chosen (all targets, or an exact prefilter)."""
    best_correlation: float | None
    n_examples: int
    source_summary: FeatureSummary
    decomposition: Decomposition | None
    is_unique: bool
    """The source has no counterpart: its verdict is ``novel`` / ``unique`` (or it is dead)."""
    unique_reason: str | None
    null: NullModel
    params: dict[str, Any]
    source_fingerprint: str
    target_fingerprint: str
    elapsed_ms: float
    warnings: list[str] = Field(default_factory=list)
    alignment: AlignedFeature | None = None
    """What a saved whole-dictionary alignment says about the source feature, when the matcher
    was given one (``FeatureMatcher(..., alignment=...)``)."""
    verdict: Verdict | None = None
    """The source's class, parent or children, and the evidence (the alignment's rules)."""
    undefined: dict[str, str] = {}
    """Why each top-level field that is None is None (``unique_reason``, ``decomposition``,
    ``alignment``, ``verdict``, ``best_correlation``), per field."""

    def summary(self) -> str:
        """A few lines for people."""
        s = self.source_summary
        head = (
            f"{self.source_model} feature {self.source_feature} "
            f"(active on {s.frequency:.1%} of {self.n_examples} examples; top tokens: "
            f"{', '.join(t.token for t in s.top_tokens[:5]) or 'none'})"
        )
        lines = [head]
        if self.verdict is not None and not self.is_unique:
            lines.append(f"  verdict: {self.verdict.label} ({self.verdict.rule})")
        elif self.is_unique:
            label = f"verdict: {self.verdict.label}; " if self.verdict is not None else ""
            lines.append(f"  {label}no counterpart in {self.target_model}: {self.unique_reason}")
        for m in self.matches[:5]:
            r = "n/a" if m.activation_correlation is None else f"{m.activation_correlation:.3f}"
            c = "n/a" if m.combined_score is None else f"{m.combined_score:.3f}"
            lines.append(
                f"  #{m.rank} {self.target_model} {m.target_feature}: {m.relation}, r={r}, "
                f"score={c}, shared {m.shared_top_tokens[:3]}"
            )
        if self.decomposition and self.decomposition.is_split:
            d = self.decomposition
            r2 = "n/a" if d.r_squared is None else f"{d.r_squared:.2f}"
            lines.append(
                f"  split into {len(d.members)} {self.target_model} features "
                f"{[m.feature for m in d.members[:8]]} (R^2 {r2})"
            )
        if self.alignment is not None:
            lines.append(f"  alignment: {self.alignment.describe()}")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A Markdown table of the matches with the source summary."""
        s = self.source_summary
        out = [
            f"## {self.source_model} feature {self.source_feature} → {self.target_model}",
            "",
            f"Active on {s.n_active} / {self.n_examples} examples ({s.frequency:.2%}); "
            f"top tokens: {', '.join(t.token for t in s.top_tokens[:8]) or 'none'}.",
            f"Candidates: {self.candidate_selection}. Null: {self.null.description}",
            "",
            "| rank | feature | relation | corr | token J | decoder cos | P(t|s) | P(s|t) | score | p | shared tokens |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]

        def f(x: float | None, spec: str = ".3f") -> str:
            return "—" if x is None else format(x, spec)

        for m in self.matches:
            out.append(
                f"| {m.rank} | {m.target_feature} | {m.relation} | {f(m.activation_correlation)} | "
                f"{f(m.top_token_overlap)} | {f(m.decoder_cosine)} | {f(m.p_target_given_source)} | "
                f"{f(m.p_source_given_target)} | {f(m.combined_score)} | {f(m.p_value, '.2g')} | "
                f"{', '.join(m.shared_top_tokens[:4])} |"
            )
        if self.verdict is not None:
            out += ["", f"**Verdict: {self.verdict.label}.** {self.verdict.rule}."]
        if self.is_unique:
            out += ["", f"**Unique to {self.source_model}:** {self.unique_reason}"]
        if self.decomposition and self.decomposition.members:
            d = self.decomposition
            out += [
                "",
                f"Decomposition ({d.method}): {len(d.members)} members, "
                f"R² {f(d.r_squared, '.2f')}, coverage {f(d.coverage, '.2f')}",
            ]
        for w in self.warnings:
            out.append(f"\n> warning: {w}")
        return "\n".join(out)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return cls.model_json_schema()


class FeatureError(BaseModel):
    """A query of a batch that could not be answered (the others are): the id as given and why."""

    feature: Any
    error: str
    error_type: str


class FeatureComparison(BaseModel):
    """Every pair metric for one (source, target) pair; item access works like a dict."""

    source_feature: int
    target_feature: int
    source_model: str
    target_model: str
    jaccard_similarity: float | None
    """Top-token Jaccard (same as ``top_token_overlap``)."""
    top_token_overlap: float | None
    activation_correlation: float | None
    decoder_cosine: float | None
    coactivation_jaccard: float | None
    p_target_given_source: float | None
    p_source_given_target: float | None
    combined_score: float | None
    relation: Relation
    p_value: float | None
    shared_tokens: list[str]
    source_only_tokens: list[str]
    target_only_tokens: list[str]
    n_coactive: int
    """Examples where both are active."""
    notes: str
    undefined: dict[str, str] = {}
    n_both: int | None = None
    """Examples where both features are active (= ``n_coactive``). The four ``n_*`` counts
    partition the examples; None only in comparisons saved before they were added."""
    n_only_source: int | None = None
    """Examples where the source is active and the target is not."""
    n_only_target: int | None = None
    """Examples where the target is active and the source is not."""
    n_neither: int | None = None
    """Examples where neither is active."""
    overlap_examples: dict[str, list[int]] = {}
    """Up to 3 example ids (``ctx.examples.example_ids``) of each of ``both``, ``only_source``,
    ``only_target``, highest-activating first: ``only_*`` by the active feature's code, ``both``
    by the smaller of the two codes each divided by its feature's maximum (strong on both);
    ties by example row."""

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(f"{key!r} is not a comparison field; fields: {sorted(type(self).model_fields)}")
        return getattr(self, key)

    def keys(self) -> list[str]:
        return list(type(self).model_fields)


def export_schemas() -> str:
    """JSON schemas of every report model, as one JSON document."""
    return json.dumps(
        {
            "MatchReport": MatchReport.model_json_schema(),
            "FeatureComparison": FeatureComparison.model_json_schema(),
            "Decomposition": Decomposition.model_json_schema(),
            "Verdict": Verdict.model_json_schema(),
        },
        indent=2,
    )
