"""Tests of splatnlp/mechinterp/state/upstream.py and ResearchStore.import_upstream_state:
upstream SplatNLP's per-feature JSON is mapped, refused when malformed, and not written over
existing state unless asked.

(Not test_upstream.py: tests/mechinterp/context/importers/ has one, and test modules here
are imported by their base name.)"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from state_builders import _link, _table_rows

from splatnlp.mechinterp.state.store import ResearchStore
from splatnlp.mechinterp.state.upstream import load_upstream_state

UPSTREAM_STATE = {
    "feature_id": 18712,
    "model_type": "ultra",
    "feature_label": "SSU stacker",
    "hypotheses": [
        {
            "id": "h001",
            "statement": "Feature 18712 detects Swim Speed Up stacking",
            "status": "supported",
            "confidence": 0.8,
            "supporting_evidence": ["e001"],
            "refuting_evidence": [],
            "parent_hypothesis": None,
            "tags": ["mobility"],
            "created_at": "2025-01-10T09:15:02.123456",
            "updated_at": "2025-01-11T10:00:00",
        },
        {
            "id": "h002",
            "statement": "Feature 18712 responds to any mobility ability",
            "status": "refuted",
            "confidence": 0.15,
            "parent_hypothesis": "h001",
            "created_at": "2025-01-10T09:20:00",
        },
    ],
    "evidence_index": [
        {
            "id": "e001",
            "experiment_id": "20250110_091800__family_sweep",
            "result_path": "/runs/results/20250110_091800__result.json",
            "summary": "Activation rises monotonically with SSU rungs",
            "strength": "strong",
            "supports_hypotheses": ["h001"],
            "refutes_hypotheses": ["h002"],
            "key_metrics": {"mean_delta": 0.42, "effect_size": 1.3},
            "timestamp": "2025-01-10T09:18:00",
        },
        {
            "id": "e002",
            "experiment_id": "20250110_093000__weapon_sweep",
            "result_path": "/runs/results/20250110_093000__result.json",
            "summary": "Weak weapon dependence",
            "strength": "weak",
            "key_metrics": {},
            "timestamp": "2025-01-10T09:30:00",
        },
    ],
    "active_constraints": ["one_rung_per_family"],
    "known_pitfalls": ["relu_floor_at_low_activation"],
    "history": [
        {"timestamp": "2025-01-10T09:00:00", "action": "state_created", "details": "Initial"},
        {
            "timestamp": "2025-01-10T09:18:00",
            "action": "evidence_added",
            "details": "Added evidence e001",
            "spec_path": None,
            "result_path": "/runs/results/20250110_091800__result.json",
        },
    ],
    "notes": "SSU ladder looks clean.",
    "created_at": "2025-01-10T09:00:00",
    "updated_at": "2025-01-11T10:00:00",
    "some_future_field": {"ignored": True},
}


def _local_to_utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def test_import_upstream_state_file(store: ResearchStore, tmp_path: Path) -> None:
    path = tmp_path / "feature_18712_ultra.json"
    path.write_text(json.dumps(UPSTREAM_STATE))
    s = store.import_upstream_state(path)
    assert (s.feature_id, s.model_type, s.label) == (18712, "ultra", "SSU stacker")
    h1, h2 = s.hypotheses
    assert h1.status == "supported" and h1.confidence == 0.8 and h1.tags == ["mobility"]
    assert h1.supporting_evidence == ["e001"]
    assert h2.refuting_evidence == ["e001"]  # from e001's refutes_hypotheses
    assert h2.parent_hypothesis == "h001" and h2.tags == []
    # Upstream timestamps are naive local times (datetime.now()).
    assert h1.created_at == _local_to_utc("2025-01-10T09:15:02.123456")
    assert h2.updated_at == _local_to_utc("2025-01-10T09:20:00")
    e1, e2 = s.evidence
    assert e1.key_metrics == {"mean_delta": 0.42, "effect_size": 1.3}
    assert e1.result_path == "/runs/results/20250110_091800__result.json"
    assert e2.strength == "weak" and e2.created_at == _local_to_utc("2025-01-10T09:30:00")
    assert s.active_constraints == ["one_rung_per_family"]
    assert s.known_pitfalls == ["relu_floor_at_low_activation"]
    assert s.notes == "SSU ladder looks clean."
    assert [x.action for x in s.history] == ["state_created", "evidence_added", "imported_upstream"]
    assert s.history[1].detail.endswith("(result: /runs/results/20250110_091800__result.json)")
    assert str(path) in s.history[2].detail
    # New ids continue after the imported ones.
    assert store.manager(18712, "ultra").add_hypothesis("next").id == "h003"


def test_import_upstream_with_only_required_fields(store: ResearchStore) -> None:
    s = store.import_upstream_state({"feature_id": 4, "model_type": "full"})
    assert (s.label, s.hypotheses, s.evidence, s.notes) == (None, [], [], "")
    assert [x.action for x in s.history] == ["imported_upstream"]


def test_import_upstream_refuses_existing_state_unless_replace(store: ResearchStore) -> None:
    store.manager(18712, "ultra").add_hypothesis("mine")
    store.record_link(_link())
    with pytest.raises(
        ValueError, match=r"ultra feature 18712 already has research state .*replace=True"
    ):
        store.import_upstream_state(UPSTREAM_STATE)
    assert [h.statement for h in store.feature_state(18712, "ultra").hypotheses] == ["mine"]
    s = store.import_upstream_state(UPSTREAM_STATE, replace=True)
    assert [h.id for h in s.hypotheses] == ["h001", "h002"]
    assert len(s.links) == 1  # links are not part of a feature's upstream state


def _broken(path: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(UPSTREAM_STATE))
    *parents, last = path.split("/")
    target: Any = doc
    for p in parents:
        target = target[int(p)] if p.isdigit() else target[p]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "pattern"),
    [
        ("hypotheses/1/id", "h1", r"hypotheses\[1\]\.id: String should match pattern .*'h1'"),
        ("hypotheses/0/id", "x001", r"hypotheses\[0\]\.id: String should match pattern"),
        ("hypotheses/0/confidence", 1.2, r"hypotheses\[0\]\.confidence: Input should be less"),
        ("hypotheses/0/status", "maybe", r"hypotheses\[0\]\.status"),
        ("evidence_index/0/strength", "huge", r"evidence_index\[0\]\.strength"),
        ("model_type", "medium", r"model_type: Input should be 'full' or 'ultra'"),
        ("feature_id", _DELETE, r"feature_id: Field required"),
        ("hypotheses/1/parent_hypothesis", "h007", r"hypotheses\[1\]\.parent_hypothesis: 'h007'"),
        (
            "hypotheses/0/supporting_evidence",
            ["e009"],
            r"hypotheses\[0\]\.supporting_evidence: 'e009'",
        ),
        (
            "evidence_index/1/supports_hypotheses",
            ["h005"],
            r"evidence_index\[1\]\.supports_hypotheses",
        ),
        ("hypotheses/1/id", "h001", r"hypotheses\[1\]\.id: 'h001' appears more than once"),
    ],
)
def test_import_upstream_refuses_malformed_state(
    store: ResearchStore, db: Path, path: str, value: Any, pattern: str
) -> None:
    before = _table_rows(db)
    with pytest.raises(ValueError, match=r"upstream state dict is malformed: " + pattern):
        store.import_upstream_state(_broken(path, value))
    assert _table_rows(db) == before


def test_import_upstream_refuses_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"upstream state file '.*nope\.json' does not exist"
    ):
        load_upstream_state(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"upstream state '.*bad\.json' is not valid JSON"):
        load_upstream_state(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(
        ValueError, match=r"must be a JSON object with feature_id and model_type; got list"
    ):
        load_upstream_state(bad)
