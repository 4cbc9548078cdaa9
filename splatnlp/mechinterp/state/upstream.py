"""Read upstream SplatNLP's per-feature research-state JSON (``feature_<id>_<model>.json``).

:func:`load_upstream_state` validates a file (or its parsed content) into a :class:`FeatureState`
and writes nothing; ``ResearchStore.import_upstream_state`` stores the result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from splatnlp.mechinterp.state.records import (
    Evidence,
    EvidenceStrength,
    FeatureState,
    HistoryEntry,
    Hypothesis,
    HypothesisId,
    ModelType,
    NonEmptyStr,
    ordered_union,
    utc_now,
)


# The strict records' fields and checks, tolerant where upstream was: unknown keys ignored,
# timestamps optional and possibly naive (converted by _as_utc), evidence strength defaulted.
class _UpstreamHypothesis(Hypothesis):
    model_config = ConfigDict(extra="ignore")

    created_at: datetime | None = None
    updated_at: datetime | None = None


class _UpstreamEvidence(Evidence):
    model_config = ConfigDict(extra="ignore")

    strength: EvidenceStrength = "moderate"
    supports_hypotheses: list[HypothesisId] = []
    refutes_hypotheses: list[HypothesisId] = []
    created_at: datetime | None = None  # not written by upstream (it has timestamp); unused
    timestamp: datetime | None = None


class _UpstreamHistory(BaseModel):
    model_config = ConfigDict(extra="ignore")

    timestamp: datetime | None = None
    action: NonEmptyStr
    details: str = ""
    spec_path: str | None = None
    result_path: str | None = None


class _UpstreamState(BaseModel):
    """Upstream SplatNLP's ``ResearchState`` JSON; optional fields may be missing."""

    model_config = ConfigDict(extra="ignore")

    feature_id: int = Field(ge=0)
    model_type: ModelType
    feature_label: str | None = None
    hypotheses: list[_UpstreamHypothesis] = []
    evidence_index: list[_UpstreamEvidence] = []
    active_constraints: list[str] = []
    known_pitfalls: list[str] = []
    history: list[_UpstreamHistory] = []
    notes: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


def _as_utc(dt: datetime | None, default: datetime) -> datetime:
    # Upstream wrote datetime.now(): naive local time. astimezone() reads a naive value as local.
    return default if dt is None else dt.astimezone(timezone.utc)


def _field_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a path: ``hypotheses[1].id``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_upstream_state(source: str | Path | Mapping[str, Any]) -> FeatureState:
    """Read and validate an upstream per-feature JSON state; writes nothing.

    Maps ``feature_label`` → ``label``, ``evidence_index`` → ``evidence`` (each item's
    ``supports_hypotheses`` / ``refutes_hypotheses`` are merged into the hypotheses' evidence
    lists), ``history[].details`` → ``detail`` (with its ``spec_path`` / ``result_path``).
    Naive timestamps are read as local time, as upstream wrote them, and converted to UTC.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = repr(str(path))
        if not path.is_file():
            raise FileNotFoundError(f"upstream state file {str(path)!r} does not exist")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"upstream state {name} is not valid JSON: {exc}") from exc
    else:
        raw, name = source, "dict"
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"upstream state {name} must be a JSON object with feature_id and model_type; "
            f"got {type(raw).__name__}"
        )
    try:
        up = _UpstreamState.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{_field_path(e['loc'])}: {e['msg']}"
            + (f" (got {_short(e['input'])})" if e["type"] != "missing" else "")
            for e in exc.errors()
        )
        raise ValueError(f"upstream state {name} is malformed: {problems}") from exc

    def fail(field: str, message: str) -> ValueError:
        return ValueError(f"upstream state {name} is malformed: {field}: {message}")

    hids = [h.id for h in up.hypotheses]
    eids = [e.id for e in up.evidence_index]
    for label, ids in (("hypotheses", hids), ("evidence_index", eids)):
        seen: set[str] = set()
        for i, x in enumerate(ids):
            if x in seen:
                raise fail(f"{label}[{i}].id", f"{x!r} appears more than once")
            seen.add(x)
    supporting: dict[str, list[str]] = {h.id: list(h.supporting_evidence) for h in up.hypotheses}
    refuting: dict[str, list[str]] = {h.id: list(h.refuting_evidence) for h in up.hypotheses}
    for i, h in enumerate(up.hypotheses):
        for field, refs in (
            ("supporting_evidence", h.supporting_evidence),
            ("refuting_evidence", h.refuting_evidence),
        ):
            for ref in refs:
                if ref not in eids:
                    raise fail(
                        f"hypotheses[{i}].{field}", f"{ref!r} is not in evidence_index {eids}"
                    )
        if h.parent_hypothesis is not None and h.parent_hypothesis not in hids:
            raise fail(
                f"hypotheses[{i}].parent_hypothesis",
                f"{h.parent_hypothesis!r} is not in hypotheses {hids}",
            )
    for i, e in enumerate(up.evidence_index):
        for field, refs, target in (
            ("supports_hypotheses", e.supports_hypotheses, supporting),
            ("refutes_hypotheses", e.refutes_hypotheses, refuting),
        ):
            for ref in refs:
                if ref not in target:
                    raise fail(
                        f"evidence_index[{i}].{field}", f"{ref!r} is not in hypotheses {hids}"
                    )
                target[ref] = ordered_union(target[ref], [e.id])

    now = utc_now()
    created = _as_utc(up.created_at, now)
    hypotheses = [
        Hypothesis(
            **h.model_dump(
                exclude={"supporting_evidence", "refuting_evidence", "created_at", "updated_at"}
            ),
            supporting_evidence=supporting[h.id],
            refuting_evidence=refuting[h.id],
            created_at=_as_utc(h.created_at, created),
            updated_at=_as_utc(h.updated_at, _as_utc(h.created_at, created)),
        )
        for h in up.hypotheses
    ]
    evidence = [
        Evidence(
            **e.model_dump(
                exclude={"supports_hypotheses", "refutes_hypotheses", "created_at", "timestamp"}
            ),
            created_at=_as_utc(e.timestamp, created),
        )
        for e in up.evidence_index
    ]
    history = [
        HistoryEntry(
            at=_as_utc(h.timestamp, created),
            action=h.action,
            detail=h.details
            + "".join(
                f" ({k}: {v})" for k, v in (("spec", h.spec_path), ("result", h.result_path)) if v
            ),
        )
        for h in up.history
    ]
    return FeatureState(
        feature_id=up.feature_id,
        model_type=up.model_type,
        label=up.feature_label,
        hypotheses=sorted(hypotheses, key=lambda h: int(h.id[1:])),
        evidence=sorted(evidence, key=lambda e: int(e.id[1:])),
        active_constraints=up.active_constraints,
        known_pitfalls=up.known_pitfalls,
        history=history,
        notes=up.notes,
        created_at=created,
        updated_at=_as_utc(up.updated_at, created),
    )


__all__ = ["load_upstream_state"]
