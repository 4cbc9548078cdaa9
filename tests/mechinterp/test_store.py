"""Tests of splatnlp/mechinterp/store.py: records, the per-feature manager, links, exports, the
upstream importer, schema versions and migrations, and the store under concurrent and killed
writers."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sqlite3
import time
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from splatnlp.mechinterp.analysis.reports import (
    RELATIONS,
    FeatureMatch,
    FeatureSummary,
    MatchReport,
    NullModel,
    TokenScore,
)
from splatnlp.mechinterp.store import (
    SCHEMA_VERSION,
    CrossModelLink,
    Evidence,
    FeatureState,
    Hypothesis,
    ResearchStateManager,
    ResearchStore,
    StoreVersionError,
    load_upstream_state,
    store_path,
)

needs_fork = pytest.mark.skipif(
    "fork" not in mp.get_all_start_methods(), reason="needs the 'fork' start method"
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite"


@pytest.fixture
def store(db: Path):
    with ResearchStore(db) as s:
        yield s


def _link(source_feature: int = 18712, target_feature: int = 512, **kw: Any) -> dict[str, Any]:
    base = {
        "source_model": "ultra",
        "source_feature": source_feature,
        "target_model": "full",
        "target_feature": target_feature,
        "relation": "equivalent",
        "scores": {"activation_correlation": 0.81, "p_value": None},
        "recorded_by": "test",
    }
    return {**base, **kw}


def _scalar(db: Path, sql: str) -> Any:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchone()[0]


def _table_rows(db: Path) -> dict[str, int]:
    """Rows per table: what 'nothing was written' is checked against."""
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}


# -- location --------------------------------------------------------------------------------
def test_store_path_default_config_and_env(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPLATNLP_STORE", raising=False)
    assert store_path() == isolated_env / "research_state.sqlite"
    config = tmp_path / "config.yaml"
    config.write_text("store_path: stores/mine.sqlite\n")
    monkeypatch.setenv("SPLATNLP_CONFIG", str(config))
    assert store_path() == tmp_path / "stores" / "mine.sqlite"  # relative to the config file
    monkeypatch.setenv("SPLATNLP_STORE", str(tmp_path / "env.sqlite"))
    assert store_path() == tmp_path / "env.sqlite"


def test_default_store_is_created_under_the_data_dir(isolated_env: Path) -> None:
    with ResearchStore() as s:
        assert s.path == isolated_env / "research_state.sqlite"
    assert (isolated_env / "research_state.sqlite").is_file()


def test_connection_settings(store: ResearchStore, db: Path) -> None:
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    assert store.schema_version == SCHEMA_VERSION == 1
    with sqlite3.connect(db) as other:  # WAL is a property of the file, not of one connection
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- records ---------------------------------------------------------------------------------
def test_records_round_trip_through_json() -> None:
    h = Hypothesis(id="h001", statement="fires on SSU stacks", confidence=0.7, tags=["mobility"])
    e = Evidence(id="e012", experiment_id="x", summary="s", strength="weak", key_metrics={"r": 0.5})
    link = CrossModelLink.model_validate(_link())
    state = FeatureState(
        feature_id=3, model_type="full", hypotheses=[h], evidence=[e], links=[link]
    )
    for record in (h, e, link, state):
        assert type(record).model_validate_json(record.model_dump_json()) == record
    assert link.recorded_at.tzinfo == timezone.utc


def test_link_times_are_converted_to_utc_and_naive_times_refused() -> None:
    plus2 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    link = CrossModelLink.model_validate(_link(recorded_at=plus2))
    assert link.recorded_at == datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    assert link.recorded_at.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError, match=r"recorded_at\n.*timezone"):
        CrossModelLink.model_validate(_link(recorded_at=datetime(2024, 5, 1)))


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


def test_transaction_groups_writes_and_rolls_back_together(store: ResearchStore) -> None:
    with store.transaction():
        store.record_link(_link(1))
        store.record_link(_link(2))
    assert store.count_links() == 2
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        store.record_link(_link(3))
        store.manager(3, "ultra").add_hypothesis("claim")
        raise RuntimeError("boom")
    assert store.count_links() == 2
    assert store.features() == []


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


def _report(*, n_matches: int = 2) -> MatchReport:
    matches = [
        FeatureMatch(
            target_feature=512 + i,
            rank=i + 1,
            top_token_overlap=0.5,
            activation_correlation=0.82 - 0.5 * i,
            decoder_cosine=0.4,
            coactivation_jaccard=0.6,
            p_target_given_source=0.9,
            p_source_given_target=0.7,
            combined_score=None if i else 0.77,
            relation="equivalent" if i == 0 else "unrelated",
            p_value=0.001,
            significant=i == 0,
            shared_top_tokens=["swim_speed_up"],
            notes="",
            undefined={} if i == 0 else {"combined_score": "decoder undefined"},
        )
        for i in range(n_matches)
    ]
    return MatchReport(
        source_feature=18712,
        source_model="ultra",
        target_model="full",
        matches=matches,
        n_candidates_tested=2048,
        candidate_selection="all targets",
        best_correlation=0.82 if n_matches else None,
        n_examples=3000,
        source_summary=FeatureSummary(
            feature=18712,
            model="ultra",
            n_active=120,
            frequency=0.04,
            mean=0.01,
            max=3.0,
            top_tokens=[TokenScore(token="swim_speed_up", score=2.5)],
            dead=False,
        ),
        decomposition=None,
        is_unique=n_matches == 0,
        unique_reason=None if n_matches else "no candidate",
        null=NullModel(method="permutation_analytic", description="analytic", n_candidates=2048),
        params={"alpha": 0.01},
        source_fingerprint="abc",
        target_fingerprint="abc",
        elapsed_ms=12.5,
    )


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


# -- upstream import -------------------------------------------------------------------------
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


# -- schema versions and migrations ----------------------------------------------------------
def test_newer_schema_is_refused(db: Path) -> None:
    ResearchStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_meta SET value = '7' WHERE key = 'schema_version'")
    with pytest.raises(StoreVersionError, match=rf"{db.name}' has schema version 7, .* up to 1"):
        ResearchStore(db)


# A version-0 store as an earlier release wrote it: links had no report column, and there was
# no history table.
_V0 = """
CREATE TABLE schema_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO schema_meta VALUES ('schema_version', '0');
CREATE TABLE features (model_type TEXT NOT NULL, feature_id INTEGER NOT NULL, label TEXT,
  notes TEXT NOT NULL DEFAULT '', known_pitfalls TEXT NOT NULL DEFAULT '[]',
  active_constraints TEXT NOT NULL DEFAULT '[]', created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL, PRIMARY KEY (model_type, feature_id));
CREATE TABLE hypotheses (model_type TEXT NOT NULL, feature_id INTEGER NOT NULL, id TEXT NOT NULL,
  statement TEXT NOT NULL, status TEXT NOT NULL, confidence REAL NOT NULL, parent_hypothesis TEXT,
  tags TEXT NOT NULL DEFAULT '[]', created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  PRIMARY KEY (model_type, feature_id, id));
CREATE TABLE evidence (model_type TEXT NOT NULL, feature_id INTEGER NOT NULL, id TEXT NOT NULL,
  experiment_id TEXT NOT NULL, result_path TEXT, summary TEXT NOT NULL, strength TEXT NOT NULL,
  key_metrics TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL,
  PRIMARY KEY (model_type, feature_id, id));
CREATE TABLE hypothesis_evidence (model_type TEXT NOT NULL, feature_id INTEGER NOT NULL,
  hypothesis_id TEXT NOT NULL, evidence_id TEXT NOT NULL, role TEXT NOT NULL,
  PRIMARY KEY (model_type, feature_id, hypothesis_id, evidence_id, role));
CREATE TABLE links (id INTEGER PRIMARY KEY AUTOINCREMENT, source_model TEXT NOT NULL,
  source_feature INTEGER NOT NULL, target_model TEXT NOT NULL, target_feature INTEGER NOT NULL,
  relation TEXT NOT NULL, scores TEXT NOT NULL DEFAULT '{}', recorded_by TEXT NOT NULL,
  recorded_at TEXT NOT NULL);
INSERT INTO features VALUES ('ultra', 18712, 'SSU stacker', 'old notes', '[]', '[]',
  '2024-01-01T00:00:00+00:00', '2024-01-02T00:00:00+00:00');
INSERT INTO hypotheses VALUES ('ultra', 18712, 'h001', 'fires on SSU stacks', 'testing', 0.6, NULL,
  '["mobility"]', '2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00');
INSERT INTO evidence VALUES ('ultra', 18712, 'e001', 'sweep', NULL, 'rises with SSU', 'strong',
  '{"r": 0.9}', '2024-01-01T00:00:00+00:00');
INSERT INTO hypothesis_evidence VALUES ('ultra', 18712, 'h001', 'e001', 'supporting');
INSERT INTO links VALUES (1, 'ultra', 18712, 'full', 512, 'equivalent',
  '{"activation_correlation": 0.8}', 'old-agent', '2024-01-01T00:00:00+00:00');
"""


def _columns(db: Path) -> dict[str, list[str]]:
    with sqlite3.connect(db) as conn:
        tables = sorted(
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        )
        return {t: [c[1] for c in conn.execute(f"PRAGMA table_info({t})")] for t in tables}


def test_version_0_store_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    old = tmp_path / "v0.sqlite"
    with sqlite3.connect(old) as conn:
        conn.executescript(_V0)
    assert "history" not in _columns(old) and "report" not in _columns(old)["links"]

    with ResearchStore(old) as s:
        assert s.schema_version == 1
        state = s.feature_state(18712, "ultra")
        assert state.label == "SSU stacker" and state.notes == "old notes"
        assert state.hypothesis("h001").supporting_evidence == ["e001"]
        assert state.evidence[0].key_metrics == {"r": 0.9}
        (link,) = state.links
        assert link.recorded_by == "old-agent" and link.report is None
        # What v1 added now works on the old data.
        s.manager(18712, "ultra").update_hypothesis("h001", status="supported")
        assert [x.action for x in s.feature_state(18712, "ultra").history] == ["hypothesis_updated"]
        assert s.record_link_from_report(_report(), recorded_by="new").id == 2

    fresh = tmp_path / "fresh.sqlite"
    ResearchStore(fresh).close()
    assert _columns(old) == _columns(fresh)


def test_a_failed_migration_leaves_the_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import splatnlp.mechinterp.store as store_module

    old = tmp_path / "v0.sqlite"
    with sqlite3.connect(old) as conn:
        conn.executescript(_V0)

    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE links ADD COLUMN report TEXT")
        raise RuntimeError("migration failed half-way")

    monkeypatch.setattr(store_module, "MIGRATIONS", (failing,))
    with pytest.raises(RuntimeError, match="half-way"):
        ResearchStore(old)
    assert _scalar(old, "SELECT value FROM schema_meta") == "0"
    assert "report" not in _columns(old)["links"]


def test_files_that_are_not_stores_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(
        ValueError, match=r"other\.sqlite' is a SQLite database but not a research store"
    ):
        ResearchStore(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match=r"junk\.sqlite' is not a research store \(not a SQLite"):
        ResearchStore(junk)


# -- concurrency and crashes -----------------------------------------------------------------
def _record_links_at_once(path: str, worker: int, barrier: Any, results: Any, n: int) -> None:
    try:
        with ResearchStore(path) as s:
            barrier.wait(timeout=60)
            for i in range(n):
                s.record_link(_link(worker * 1000 + i, i, recorded_by=f"worker-{worker}"))
        results.put((worker, "ok"))
    except BaseException:  # noqa: BLE001 - the parent reports the child's traceback
        results.put((worker, traceback.format_exc()))


def _run_workers(target: Any, n_workers: int, path: Path, *extra: Any) -> None:
    """Run ``target(path, worker, barrier, results, *extra)`` in ``n_workers`` processes."""
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(n_workers), ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(str(path), w, barrier, results, *extra))
        for w in range(n_workers)
    ]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert outcomes == dict.fromkeys(range(n_workers), "ok"), outcomes
    assert [p.exitcode for p in procs] == [0] * n_workers


@needs_fork
def test_eight_processes_write_at_the_same_moment(db: Path) -> None:
    ResearchStore(db).close()
    _run_workers(_record_links_at_once, 8, db, 50)
    with ResearchStore(db) as s:
        links = s.links()
    assert len(links) == 400
    assert len({k.id for k in links}) == 400
    assert {(k.recorded_by, k.source_feature) for k in links} == {
        (f"worker-{w}", w * 1000 + i) for w in range(8) for i in range(50)
    }


def _open_fresh_and_add_hypotheses(
    path: str, worker: int, barrier: Any, results: Any, n: int
) -> None:
    try:
        barrier.wait(timeout=60)
        with ResearchStore(path) as s:
            m = s.manager(1, "full")
            for i in range(n):
                m.add_hypothesis(f"claim {i} of worker {worker}")
        results.put((worker, "ok"))
    except BaseException:  # noqa: BLE001
        results.put((worker, traceback.format_exc()))


@needs_fork
def test_processes_creating_a_fresh_store_and_numbering_one_feature_at_once(db: Path) -> None:
    # Creation races (schema set-up) and id allocation races (h001, h002 ...) in one go.
    _run_workers(_open_fresh_and_add_hypotheses, 6, db, 10)
    with ResearchStore(db) as s:
        state = s.feature_state(1, "full")
    assert [h.id for h in state.hypotheses] == [f"h{i:03d}" for i in range(1, 61)]
    assert {h.statement for h in state.hypotheses} == {
        f"claim {i} of worker {w}" for w in range(6) for i in range(10)
    }
    assert len(state.history) == 60


def _commit_then_hang(path: str, n_committed: int, in_transaction: Any) -> None:
    s = ResearchStore(path)
    for i in range(n_committed):
        s.record_link(_link(i, recorded_by="committed"))
    padding = {"padding": "x" * 2000}
    # A small page cache (256 KiB) and ~6 MB of rows: uncommitted pages must spill to the WAL.
    s._conn.execute("PRAGMA cache_size = -256")
    with s.transaction():
        for i in range(3000):
            s.record_link(_link(10_000 + i, recorded_by="uncommitted", report=padding))
        in_transaction.set()
        time.sleep(120)


@needs_fork
def test_writer_killed_mid_transaction_loses_only_the_uncommitted(db: Path) -> None:
    ctx = mp.get_context("fork")
    in_transaction = ctx.Event()
    child = ctx.Process(target=_commit_then_hang, args=(str(db), 20, in_transaction))
    child.start()
    try:
        assert in_transaction.wait(timeout=60), "the child never reached its open transaction"
        wal = db.with_name(db.name + "-wal")
        assert wal.stat().st_size > 1_000_000  # uncommitted data is on disk when the kill lands
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == -signal.SIGKILL

    with ResearchStore(db) as s:
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        links = s.links()
        assert [k.source_feature for k in links] == list(range(20))
        assert {k.recorded_by for k in links} == {"committed"}
        assert s.record_link(_link(99)) == 21  # the dead writer's lock is gone
