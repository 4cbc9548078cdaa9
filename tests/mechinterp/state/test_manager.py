"""Tests of ResearchStateManager (splatnlp/mechinterp/state/store.py): invalid records are
refused with nothing written, ids and history, superseding, unknown ids."""

from __future__ import annotations

from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from state_builders import _scalar, _table_rows

from splatnlp.mechinterp.state.records import FeatureState, Hypothesis
from splatnlp.mechinterp.state.store import ResearchStateManager, ResearchStore


# -- invalid records are refused, and nothing is written -------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"confidence": 1.5}, "confidence"),
        ({"confidence": -0.1}, "confidence"),
        ({"confidence": float("nan")}, "confidence"),
        ({"status": "maybe"}, "status"),
        ({"statement": "   "}, "statement"),
    ],
)
def test_invalid_hypothesis_refused(
    store: ResearchStore, db: Path, kwargs: dict[str, Any], field: str
) -> None:
    before = _table_rows(db)
    m = store.manager(7, "full")
    args = {"statement": "fires on SSU stacks", **kwargs}
    with pytest.raises(ValidationError, match=rf"(?m)^{field}\n"):
        m.add_hypothesis(args.pop("statement"), **args)
    assert _table_rows(db) == before
    assert m.state().history == []


@pytest.mark.parametrize("bad_id", ["h1", "x001", "h01", "001", "H001"])
def test_malformed_hypothesis_id_refused(store: ResearchStore, db: Path, bad_id: str) -> None:
    with pytest.raises(ValidationError, match=r"(?m)^id\n.*pattern"):
        Hypothesis(id=bad_id, statement="s")
    m = store.manager(7, "full")
    m.add_hypothesis("fires on SSU stacks")
    before = _table_rows(db)
    with pytest.raises(ValueError, match=rf"hypothesis id {bad_id!r} is malformed; expected 'h'"):
        m.update_hypothesis(bad_id, status="supported")
    assert _table_rows(db) == before


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"strength": "huge"}, r"(?m)^strength\n"),
        ({"strength": "weak", "key_metrics": {"r": float("inf")}}, r"key_metrics\.r"),
        ({"strength": "weak", "summary": ""}, r"(?m)^summary\n"),
    ],
)
def test_invalid_evidence_refused(
    store: ResearchStore, db: Path, kwargs: dict[str, Any], pattern: str
) -> None:
    before = _table_rows(db)
    args = {"summary": "correlates with full 512", **kwargs}
    with pytest.raises(ValidationError, match=pattern):
        store.manager(7, "full").add_evidence("exp", args.pop("summary"), **args)
    assert _table_rows(db) == before


@pytest.mark.parametrize(
    ("feature", "model", "pattern"),
    [
        (5, "medium", r"model 'medium' is not known; expected one of \['full', 'ultra'\]"),
        (-3, "full", r"feature -3 is not a feature id; expected an integer >= 0"),
        ("12", "full", r"feature '12' is not a feature id"),
    ],
)
def test_manager_refuses_bad_feature_keys(
    store: ResearchStore, feature: Any, model: str, pattern: str
) -> None:
    with pytest.raises(ValueError, match=pattern):
        ResearchStateManager(feature, model, store=store)
    with pytest.raises(ValueError, match=pattern):
        store.feature_state(feature, model)


# -- the per-feature manager -----------------------------------------------------------------
def test_manager_round_trip_ids_and_history(store: ResearchStore, db: Path) -> None:
    m = store.manager(18712, "ultra")
    assert m.state() == FeatureState(feature_id=18712, model_type="ultra")  # reading writes nothing
    assert _scalar(db, "SELECT COUNT(*) FROM features") == 0

    m.set_label("Swim Speed Up stacker")
    h1 = m.add_hypothesis("fires on SSU stacks", confidence=0.6, tags=["mobility"])
    h2 = m.add_hypothesis("fires on Ninja Squid", status="testing")
    e1 = m.add_evidence(
        "match-full",
        "matches full 512 at r=0.82",
        strength="strong",
        key_metrics={"correlation": 0.82},
        supports=["h001"],
    )
    e2 = m.add_evidence(
        "ablation-1", "no drop without SSU", strength="weak", result_path="r/a.json"
    )
    h2u = m.update_hypothesis("h002", status="refuted", confidence=0.1, add_refuting=["e002"])
    m.add_pitfall("ReLU floor hides low activations")
    m.add_pitfall("ReLU floor hides low activations")  # kept once
    m.add_note("first note")
    m.add_note("second note")

    assert (h1.id, h2.id, e1.id, e2.id) == ("h001", "h002", "e001", "e002")
    assert h2u.status == "refuted" and h2u.confidence == 0.1 and h2u.refuting_evidence == ["e002"]
    s = m.state()
    assert s.label == "Swim Speed Up stacker"
    assert [h.id for h in s.hypotheses] == ["h001", "h002"]
    assert s.hypothesis("h001").supporting_evidence == ["e001"]
    assert s.hypothesis("h001").tags == ["mobility"] and s.hypothesis("h001").confidence == 0.6
    assert s.hypothesis("h002") == h2u
    assert s.evidence == [e1, e2]
    assert s.evidence[1].result_path == "r/a.json"
    assert s.known_pitfalls == ["ReLU floor hides low activations"]
    assert s.notes == "first note\n\nsecond note"
    assert [x.action for x in s.history] == [
        "label_set",
        "hypothesis_added",
        "hypothesis_added",
        "evidence_added",
        "evidence_added",
        "hypothesis_updated",
        "pitfall_added",
        "pitfall_added",
        "note_added",
        "note_added",
    ]
    assert "h002: status=refuted, confidence=0.10, +refuting e002" == s.history[5].detail
    assert s.created_at is not None and s.updated_at >= s.created_at
    assert all(x.at.tzinfo == timezone.utc for x in s.history)

    # Another feature numbers its own hypotheses; the state survives reopening.
    assert store.manager(18712, "full").add_hypothesis("other model, same number").id == "h001"
    store.close()
    with ResearchStore(db) as again:
        assert again.feature_state(18712, "ultra") == s
        assert again.manager(18712, "ultra").add_hypothesis("third").id == "h003"
        assert again.features() == [("full", 18712), ("ultra", 18712)]


def test_supersede_links_new_to_old(store: ResearchStore) -> None:
    m = store.manager(1, "full")
    m.add_hypothesis("broad claim", tags=["t"])
    new = m.supersede_hypothesis("h001", "narrower claim", confidence=0.7)
    s = m.state()
    assert new.id == "h002" and new.parent_hypothesis == "h001" and new.tags == ["t"]
    assert s.hypothesis("h001").status == "superseded"
    assert [x.action for x in s.history][-3:] == [
        "hypothesis_updated",
        "hypothesis_added",
        "hypothesis_superseded",
    ]


def test_unknown_hypothesis_or_evidence_is_a_key_error_and_writes_nothing(
    store: ResearchStore, db: Path
) -> None:
    m = store.manager(1, "full")
    m.add_hypothesis("claim")
    m.add_evidence("exp", "found", strength="weak")
    before = _table_rows(db)
    with pytest.raises(
        KeyError, match=r"no hypothesis 'h009' for full feature 1; known: \['h001'\]"
    ):
        m.update_hypothesis("h009", status="supported")
    with pytest.raises(KeyError, match=r"no evidence 'e002' for full feature 1; known: \['e001'\]"):
        m.update_hypothesis("h001", status="supported", add_supporting=["e001", "e002"])
    with pytest.raises(KeyError, match=r"no hypothesis 'h002'"):
        m.add_evidence("exp", "found", strength="weak", supports=["h002"])
    with pytest.raises(ValueError, match=r"evidence id 'e1' is malformed"):
        m.update_hypothesis("h001", add_supporting=["e1"])
    assert _table_rows(db) == before
    assert m.state().hypothesis("h001").status == "proposed"
