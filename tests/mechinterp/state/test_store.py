"""Tests of ResearchStore (splatnlp/mechinterp/state/store.py): links, links from match
reports, and the JSON and Markdown exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from state_builders import _link, _report, _scalar

from splatnlp.mechinterp.analysis.match.reports import RELATIONS, MatchReport
from splatnlp.mechinterp.state.records import FeatureState
from splatnlp.mechinterp.state.schema import SCHEMA_VERSION
from splatnlp.mechinterp.state.store import ResearchStore


# -- invalid links are refused, and nothing is written ---------------------------------------
@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"relation": "same"}, r"(?m)^relation\n.*'equivalent'"),
        ({"source_model": "medium"}, r"(?m)^source_model\n.*'full' or 'ultra'"),
        ({"target_model": "medium"}, r"(?m)^target_model\n.*'full' or 'ultra'"),
        ({"target_model": "ultra"}, r"source_model and target_model are both 'ultra'"),
        ({"source_feature": -1}, r"(?m)^source_feature\n.*greater than or equal to 0"),
        ({"scores": {"activation_correlation": float("nan")}}, r"scores\.activation_correlation"),
        ({"recorded_by": ""}, r"(?m)^recorded_by\n"),
        ({"colour": "red"}, r"(?m)^colour\n.*[Ee]xtra"),
    ],
)
def test_invalid_link_refused(
    store: ResearchStore, db: Path, override: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(ValidationError, match=pattern):
        store.record_link(_link(**override))
    assert store.count_links() == 0
    assert _scalar(db, "SELECT COUNT(*) FROM links") == 0


def test_every_relation_of_the_reports_is_accepted(store: ResearchStore) -> None:
    for relation in RELATIONS:
        store.record_link(_link(relation=relation))
    assert [k.relation for k in store.links()] == list(RELATIONS)


# -- links -----------------------------------------------------------------------------------
def test_links_are_found_from_both_sides(store: ResearchStore) -> None:
    a = store.record_link(_link(5, 7))  # ultra 5 -> full 7
    b = store.record_link(
        _link(7, 9, source_model="full", target_model="ultra", relation="source_split_by_target")
    )  # full 7 -> ultra 9
    c = store.record_link(_link(6, 8))
    assert [a, b, c] == [1, 2, 3]
    assert [k.id for k in store.links("full", 7)] == [a, b]
    assert [k.id for k in store.links("ultra", 9)] == [b]
    assert [k.id for k in store.links("ultra", 7)] == []
    assert [k.id for k in store.links(feature=7)] == [a, b]
    assert [k.id for k in store.links()] == [a, b, c]
    assert [k.id for k in store.links(limit=2)] == [a, b]
    assert store.count_links("full", 7) == 2
    assert [k.id for k in store.feature_state(7, "full").links] == [a, b]
    assert [k.id for k in store.manager(5, "ultra").state().links] == [a]
    with pytest.raises(ValueError, match=r"model 'medium' is not known"):
        store.links("medium")


def test_record_link_from_report(store: ResearchStore) -> None:
    report = _report()
    link = store.record_link_from_report(report, recorded_by="agent-1")
    assert link.id == 1
    assert (link.source_model, link.source_feature, link.target_model, link.target_feature) == (
        "ultra",
        18712,
        "full",
        512,
    )
    assert link.relation == "equivalent"
    assert link.scores["activation_correlation"] == pytest.approx(0.82)
    assert link.scores["combined_score"] == pytest.approx(0.77)
    second = store.record_link_from_report(report, 1, recorded_by="agent-1")
    assert second.target_feature == 513 and second.relation == "unrelated"
    assert second.scores["combined_score"] is None  # undefined stays None, not 0
    (stored, stored_second) = store.links()
    assert stored == link and stored_second == second
    assert MatchReport.model_validate(stored.report) == report
    assert store.links(with_report=False)[0].report is None


def test_record_link_from_report_refuses_missing_matches(store: ResearchStore) -> None:
    with pytest.raises(ValueError, match=r"match_index 2 is out of range .* \(allowed: 0\.\.1\)"):
        store.record_link_from_report(_report(), 2, recorded_by="a")
    with pytest.raises(ValueError, match=r"allowed: none: the report has no matches"):
        store.record_link_from_report(_report(n_matches=0), recorded_by="a")
    with pytest.raises(ValidationError, match=r"(?m)^recorded_by\n"):
        store.record_link_from_report(_report(), recorded_by="")
    assert store.count_links() == 0


# -- exports ---------------------------------------------------------------------------------
def test_export_json_and_markdown(store: ResearchStore) -> None:
    m = store.manager(18712, "ultra")
    m.set_label("SSU | stacker")
    m.add_hypothesis("fires on SSU | stacks", confidence=0.6)
    m.add_evidence("match-full", "r=0.82 with full 512", strength="strong", key_metrics={"r": 0.82})
    m.update_hypothesis("h001", add_supporting=["e001"])
    m.add_pitfall("ReLU floor")
    store.record_link_from_report(_report(), recorded_by="agent-1")
    store.manager(3, "full").add_note("unrelated feature")

    doc = store.export_json()
    again = json.loads(json.dumps(doc))
    assert again["schema_version"] == SCHEMA_VERSION
    assert [(f["model_type"], f["feature_id"]) for f in again["features"]] == [
        ("full", 3),
        ("ultra", 18712),
    ]
    assert FeatureState.model_validate(again["features"][1]) == m.state().model_copy(
        update={"links": []}
    )
    assert len(again["links"]) == 1 and again["links"][0]["report"]["source_feature"] == 18712

    md = store.export_markdown(18712, "ultra")
    assert md.startswith("# ultra feature 18712: SSU | stacker\n")
    assert "| h001 | proposed | 0.60 | fires on SSU \\| stacks | e001 | — |" in md
    assert "- **e001** (strong, match-full): r=0.82 with full 512 — r=0.82" in md
    assert "| 1 | ultra 18712 | full 512 | equivalent | 0.820 | 0.770 |" in md
    assert "## Known pitfalls\n\n- ReLU floor" in md
    assert md == m.to_markdown()
    assert "None yet." in store.export_markdown(99, "full")
