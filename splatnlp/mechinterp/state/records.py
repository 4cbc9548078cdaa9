"""The records of the research-state store: hypotheses, evidence, history, links, findings,
feature states.

Pydantic models, validated before anything is written: an invalid record raises
``pydantic.ValidationError`` (a ``ValueError``) naming the field. Also here: the allowed values
(:data:`MODEL_TYPES`, :data:`HYPOTHESIS_STATUSES`, :data:`EVIDENCE_STRENGTHS`,
:data:`FINDING_KINDS`), the metrics a link keeps (:data:`LINK_SCORE_FIELDS`), the checks of feature keys and ids that the store and the
manager apply to their arguments, and a feature's Markdown page (``FeatureState.to_markdown``).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from splatnlp.mechinterp.analysis.match.reports import PAIR_METRICS, Decomposition, Relation

ModelType = Literal["full", "ultra"]
MODEL_TYPES: tuple[str, ...] = ("full", "ultra")
HypothesisStatus = Literal["proposed", "testing", "supported", "refuted", "superseded"]
HYPOTHESIS_STATUSES: tuple[str, ...] = ("proposed", "testing", "supported", "refuted", "superseded")
EvidenceStrength = Literal["strong", "moderate", "weak"]
EVIDENCE_STRENGTHS: tuple[str, ...] = ("strong", "moderate", "weak")
FindingKind = Literal["decomposition", "no_counterpart"]
FINDING_KINDS: tuple[str, ...] = ("decomposition", "no_counterpart")

HypothesisId = Annotated[str, StringConstraints(pattern=r"^h\d{3,}$")]
EvidenceId = Annotated[str, StringConstraints(pattern=r"^e\d{3,}$")]
NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
UTCDatetime = Annotated[AwareDatetime, AfterValidator(lambda d: d.astimezone(timezone.utc))]
"""A timezone-aware datetime, converted to UTC (naive datetimes are refused: ambiguous)."""

# The metrics of a FeatureMatch that a link keeps as its scores.
LINK_SCORE_FIELDS: tuple[str, ...] = (*PAIR_METRICS, "combined_score", "p_value")


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


class Hypothesis(BaseModel):
    """A statement about what a feature does, with its status and the evidence for and against."""

    model_config = ConfigDict(extra="forbid")

    id: HypothesisId
    """``h`` and at least three digits (``h001``), unique within the feature."""
    statement: NonEmptyStr
    """What the feature is claimed to do."""
    status: HypothesisStatus = "proposed"
    """``proposed``, ``testing``, ``supported``, ``refuted`` or ``superseded``."""
    confidence: float = Field(0.5, ge=0.0, le=1.0, allow_inf_nan=False)
    """Belief in the statement, in [0, 1]."""
    supporting_evidence: list[EvidenceId] = []
    """Ids of this feature's evidence items that support the statement."""
    refuting_evidence: list[EvidenceId] = []
    """Ids of this feature's evidence items that refute it."""
    parent_hypothesis: HypothesisId | None = None
    """The hypothesis this one refines or supersedes."""
    tags: list[NonEmptyStr] = []
    """Free labels (``family-specific``, ``needs-ablation``)."""
    created_at: UTCDatetime = Field(default_factory=utc_now)
    updated_at: UTCDatetime = Field(default_factory=utc_now)


class Evidence(BaseModel):
    """The outcome of one experiment on a feature."""

    model_config = ConfigDict(extra="forbid")

    id: EvidenceId
    """``e`` and at least three digits (``e001``), unique within the feature."""
    experiment_id: NonEmptyStr
    """What produced it (an experiment spec id, ``match``, a notebook name)."""
    result_path: str | None = None
    """Where the full result lives, if anywhere."""
    summary: NonEmptyStr
    """What was found, in a sentence."""
    strength: EvidenceStrength
    """``strong`` (clear, reproducible), ``moderate`` (consistent but noisy) or ``weak``."""
    key_metrics: dict[str, FiniteFloat] = {}
    """The numbers that matter (finite; leave out what could not be computed)."""
    created_at: UTCDatetime = Field(default_factory=utc_now)


class HistoryEntry(BaseModel):
    """One line of a feature's research log."""

    model_config = ConfigDict(extra="forbid")

    at: UTCDatetime = Field(default_factory=utc_now)
    """When (UTC)."""
    action: NonEmptyStr
    """``label_set``, ``hypothesis_added``, ``hypothesis_updated``, ``evidence_added`` ..."""
    detail: str = ""
    """What changed, for people."""


class CrossModelLink(BaseModel):
    """A recorded correspondence between a Full feature and an Ultra feature."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = None
    """Assigned by the store when recorded; None before."""
    source_model: ModelType
    """The model of the feature that was matched (``full`` or ``ultra``)."""
    source_feature: int = Field(ge=0)
    target_model: ModelType
    """The other model."""
    target_feature: int = Field(ge=0)
    relation: Relation
    """One of ``analysis.reports.RELATIONS``."""
    scores: dict[str, FiniteFloat | None] = {}
    """Metrics of the match (``activation_correlation``, ``combined_score``, ``p_value`` ...);
    None where the metric is undefined, never a made-up number."""
    report: dict[str, Any] | None = None
    """The full ``MatchReport`` as JSON, when the link came from one."""
    finding_id: int | None = None
    """The finding this link was recorded with (a decomposition's parent -> member links);
    None for a link recorded on its own."""
    recorded_by: NonEmptyStr
    """Who recorded it (an agent name, a user, ``cli``)."""
    recorded_at: UTCDatetime = Field(default_factory=utc_now)
    """When (UTC)."""

    @model_validator(mode="after")
    def _two_models(self) -> CrossModelLink:
        if self.source_model == self.target_model:
            raise ValueError(
                f"source_model and target_model are both {self.source_model!r}; "
                "a link joins a 'full' feature and an 'ultra' feature"
            )
        return self


class NoCounterpart(BaseModel):
    """The evidence that a feature has no counterpart in the other model: its verdict and the
    best candidate it was not linked to."""

    model_config = ConfigDict(extra="forbid")

    verdict_label: str
    """``novel`` (larger side), ``unique`` (smaller side) or ``dead``."""
    rule: str
    """The verdict's rule, with the feature's numbers."""
    best_candidate: int | None
    """The listed match with the highest activation correlation (None: no correlation is
    defined for any listed match, e.g. a dead feature)."""
    best_candidate_correlation: float | None
    """Its activation correlation (None with ``best_candidate``)."""
    best_candidate_score: float | None
    """Its combined score (None when undefined: ``report.matches[...].undefined`` says why)."""
    best_candidate_relation: Relation | None
    """Its relation label."""
    best_correlation: float | None
    """The highest correlation over every candidate (``report.best_correlation``)."""
    best_nesting: float | None = None
    """Larger side: the verdict's nesting bound in the best-correlated candidate."""
    error_ratio: float | None = None
    """Larger side: the verdict's information test, where it decided (``Verdict.error_ratio``; None
    where the rule did not ask it, and in findings recorded before it existed)."""
    confidence: Literal["high", "low"] | None = None
    """Larger side: the verdict's confidence (``Verdict.confidence``; None for ``unique`` and
    ``dead``, and in findings recorded before it existed)."""
    n_candidates_tested: int
    """How many target features were scored."""


class Finding(BaseModel):
    """One result about a feature, recorded as a whole: a decomposition (the parent, each
    member with its weight and evidence, and one link per member), or "no counterpart found"
    (the verdict and the best candidate, and no link)."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = None
    """Assigned by the store when recorded; None before."""
    model_type: ModelType
    """The model of the feature the finding is about (a decomposition's parent)."""
    feature_id: int = Field(ge=0)
    kind: FindingKind
    """``decomposition`` or ``no_counterpart``."""
    target_model: ModelType
    """The other model (where the members are, or where no counterpart was found)."""
    summary: NonEmptyStr
    """What was found, in a line."""
    decomposition: Decomposition | None = None
    """``decomposition`` findings: the whole decomposition (every member with its weight,
    correlation and containments; R², coverage, method)."""
    no_counterpart: NoCounterpart | None = None
    """``no_counterpart`` findings: the evidence."""
    link_ids: list[int] = []
    """The links recorded with the finding (parent -> each member), in member order."""
    recorded_by: NonEmptyStr
    recorded_at: UTCDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _consistent(self) -> Finding:
        if self.model_type == self.target_model:
            raise ValueError(
                f"model_type and target_model are both {self.model_type!r}; a finding relates "
                "a 'full' feature to the 'ultra' model or the other way"
            )
        payload = {"decomposition": self.decomposition, "no_counterpart": self.no_counterpart}
        if payload[self.kind] is None or any(
            v is not None for k, v in payload.items() if k != self.kind
        ):
            raise ValueError(
                f"a {self.kind!r} finding carries exactly its own evidence field ({self.kind!r}); "
                f"got {sorted(k for k, v in payload.items() if v is not None)}"
            )
        d = self.decomposition
        if d is not None and (d.source_model, d.source_feature, d.target_model) != (
            self.model_type,
            self.feature_id,
            self.target_model,
        ):
            raise ValueError(
                f"the decomposition is of {d.source_model} {d.source_feature} on {d.target_model}, "
                f"not of {self.model_type} {self.feature_id} on {self.target_model}"
            )
        return self


class FeatureState(BaseModel):
    """Everything the store holds about one feature."""

    model_config = ConfigDict(extra="forbid")

    feature_id: int = Field(ge=0)
    model_type: ModelType
    label: str | None = None
    """A short human label, once one is chosen."""
    label_provenance: str | None = None
    """Where the label came from when it was not set by hand (``from ultra 5127, r = 0.73,
    equivalent`` for a transferred label); None otherwise."""
    hypotheses: list[Hypothesis] = []
    """In id order."""
    evidence: list[Evidence] = []
    """In id order."""
    active_constraints: list[str] = []
    """Domain constraints in force (upstream's ``active_constraints``)."""
    known_pitfalls: list[str] = []
    """Traps to avoid when studying this feature."""
    history: list[HistoryEntry] = []
    """Oldest first."""
    notes: str = ""
    """Free-form notes; ``add_note`` appends paragraphs."""
    links: list[CrossModelLink] = []
    """Recorded links where this feature is the source or the target."""
    findings: list[Finding] = []
    """Findings about this feature (a decomposition of it, "no counterpart found"), oldest
    first; its members see the links instead."""
    created_at: UTCDatetime | None = None
    """When the store first recorded something about the feature; None if it never did."""
    updated_at: UTCDatetime | None = None

    def hypothesis(self, hid: str) -> Hypothesis:
        """The hypothesis ``hid``; ``KeyError`` naming the known ids if absent."""
        for h in self.hypotheses:
            if h.id == hid:
                return h
        raise KeyError(
            f"no hypothesis {hid!r} for {self.model_type} feature {self.feature_id}; "
            f"known: {[h.id for h in self.hypotheses]}"
        )

    def to_markdown(self) -> str:
        """A Markdown page: label, hypotheses, evidence, links, pitfalls, notes, history."""
        return _state_markdown(self)


# -- checks of arguments ---------------------------------------------------------------------
def check_model(model: str) -> None:
    """Raise ``ValueError`` unless ``model`` is one of :data:`MODEL_TYPES`."""
    if model not in MODEL_TYPES:
        raise ValueError(f"model {model!r} is not known; expected one of {list(MODEL_TYPES)}")


def check_feature(feature: int) -> int:
    """``feature`` as a plain int; ``ValueError`` unless it is an integer >= 0 (bools refused)."""
    try:
        # operator.index accepts numpy integers and refuses floats and strings.
        value = operator.index(feature) if not isinstance(feature, bool) else -1
    except TypeError:
        value = -1
    if value < 0:
        raise ValueError(f"feature {feature!r} is not a feature id; expected an integer >= 0")
    return value


def valid_id(value: str, what: str, kind: Any, example: str) -> str:
    """``value`` validated as ``kind`` (:data:`HypothesisId` or :data:`EvidenceId`);
    ``ValueError`` naming ``what`` and the expected form (``example``) otherwise."""
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError:
        letter = example[0]
        raise ValueError(
            f"{what} {value!r} is malformed; expected {letter!r} and at least three digits, "
            f"e.g. {example!r}"
        ) from None


def ordered_union(old: Iterable[str], new: Iterable[str]) -> list[str]:
    """``old`` followed by the items of ``new`` not already in it, in order (id and tag lists)."""
    out = list(old)
    for x in new:
        if x not in out:
            out.append(x)
    return out


# -- Markdown ------------------------------------------------------------------------------
def _cell(text: object) -> str:
    # A '|' inside a cell would end it; newlines would end the row.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


def _state_markdown(s: FeatureState) -> str:
    """The page of ``FeatureState.to_markdown`` (optional sections left out when empty)."""
    out = [f"# {s.model_type} feature {s.feature_id}: {s.label or 'unlabeled'}", ""]
    if s.label_provenance:
        out += [f"_Label {s.label_provenance}._", ""]
    if s.updated_at is not None:
        out += [f"_Last updated {s.updated_at:%Y-%m-%d %H:%M} UTC._", ""]
    out += ["## Hypotheses", ""]
    if s.hypotheses:
        out += [
            "| id | status | confidence | statement | supporting | refuting |",
            "|---|---|---:|---|---|---|",
        ]
        out += [
            f"| {h.id} | {h.status} | {h.confidence:.2f} | {_cell(h.statement)} | "
            f"{', '.join(h.supporting_evidence) or '—'} | {', '.join(h.refuting_evidence) or '—'} |"
            for h in s.hypotheses
        ]
    else:
        out.append("None yet.")
    out += ["", "## Evidence", ""]
    for e in s.evidence:
        metrics = ", ".join(f"{k}={v:.3g}" for k, v in e.key_metrics.items())
        out.append(
            f"- **{e.id}** ({e.strength}, {e.experiment_id}): {e.summary}"
            + (f" — {metrics}" if metrics else "")
            + (f" — result: `{e.result_path}`" if e.result_path else "")
        )
    if not s.evidence:
        out.append("None yet.")
    if s.links:
        out += [
            "",
            "## Cross-model links",
            "",
            "| id | source | target | relation | corr | score | recorded |",
            "|---:|---|---|---|---:|---:|---|",
        ]
        out += [
            f"| {k.id} | {k.source_model} {k.source_feature} | {k.target_model} {k.target_feature} | "
            f"{k.relation} | {_num(k.scores.get('activation_correlation'))} | "
            f"{_num(k.scores.get('combined_score'))} | {k.recorded_at:%Y-%m-%d} by {_cell(k.recorded_by)} |"
            for k in s.links
        ]
    if s.findings:
        out += ["", "## Findings", ""]
        out += [
            f"- **#{k.id}** {k.kind} ({k.recorded_at:%Y-%m-%d} by {k.recorded_by}): {k.summary}"
            + (f" — links {', '.join(f'#{i}' for i in k.link_ids)}" if k.link_ids else "")
            for k in s.findings
        ]
    if s.known_pitfalls:
        out += ["", "## Known pitfalls", ""] + [f"- {p}" for p in s.known_pitfalls]
    if s.active_constraints:
        out += ["", "## Active constraints", ""] + [f"- {c}" for c in s.active_constraints]
    if s.notes:
        out += ["", "## Notes", "", s.notes]
    if s.history:
        out += ["", "## History", ""]
        out += [f"- {h.at:%Y-%m-%d %H:%M} {h.action}: {h.detail}" for h in s.history]
    return "\n".join(out) + "\n"


__all__ = [
    "EVIDENCE_STRENGTHS",
    "FINDING_KINDS",
    "HYPOTHESIS_STATUSES",
    "LINK_SCORE_FIELDS",
    "MODEL_TYPES",
    "CrossModelLink",
    "Evidence",
    "EvidenceId",
    "EvidenceStrength",
    "FeatureState",
    "Finding",
    "FindingKind",
    "HistoryEntry",
    "Hypothesis",
    "HypothesisId",
    "HypothesisStatus",
    "ModelType",
    "NoCounterpart",
    "NonEmptyStr",
    "UTCDatetime",
    "check_feature",
    "check_model",
    "ordered_union",
    "utc_now",
    "valid_id",
]
