"""Tests of ResearchStore (splatnlp/mechinterp/state/store.py): links, links from match
reports, findings (decompositions, "no counterpart"), the history and timestamps they give the
features they touch, labels with provenance, read-only stores, a store from before findings, and
the JSON and Markdown exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from state_builders import _link, _report, _scalar, _table_rows

from splatnlp.mechinterp.analysis.match.reports import (
    RELATIONS,
    Decomposition,
    DecompositionMember,
    MatchReport,
    Verdict,
)
from splatnlp.mechinterp.state.records import LINK_SCORE_FIELDS, FeatureState, Finding
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
        ("full", 512),  # the link's target: a link touches both sides
        ("ultra", 18712),
    ]
    assert FeatureState.model_validate(again["features"][2]) == m.state().model_copy(
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


# -- every link and finding touches the features it names -------------------------------------
def test_a_link_gives_both_features_history_and_timestamps(store: ResearchStore) -> None:
    assert store.feature_state(512, "full").created_at is None
    lid = store.record_link(_link(18712, 512))
    link = store.links()[0]
    for model, feature in (("ultra", 18712), ("full", 512)):
        s = store.feature_state(feature, model)
        assert s.created_at == s.updated_at == link.recorded_at
        assert [(h.action, h.at) for h in s.history] == [("link_recorded", link.recorded_at)]
        assert s.history[0].detail == (
            f"link #{lid}: ultra 18712 -> full 512 (equivalent, r = 0.810) by test"
        )
    store.manager(512, "full").add_note("later")
    later = store.feature_state(512, "full")
    assert later.created_at == link.recorded_at < later.updated_at


def _decomposition(n_members: int = 3, *, source: int = 361) -> Decomposition:
    members = [
        DecompositionMember(
            feature=100 + i,
            weight=1.5 - 0.25 * i,
            activation_correlation=0.6 - 0.1 * i,
            p_target_given_source=0.3,
            p_source_given_target=0.9,
            shared_top_tokens=["swim_speed_up"],
        )
        for i in range(n_members)
    ]
    return Decomposition(
        source_feature=source,
        source_model="full",
        target_model="ultra",
        members=members,
        n_members=n_members,
        r_squared=0.8 if n_members else None,
        coverage=0.95 if n_members else None,
        n_considered=n_members,
        method="test",
        is_split=n_members >= 2,
    )


def _pair_scores(n: int = 200) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {name: rng.uniform(0, 1, n) for name in LINK_SCORE_FIELDS}
    out["combined_score"][101] = np.nan  # undefined: stored as None, never a number
    relation = np.array(["unrelated"] * n, dtype=object)
    relation[[100, 101, 102]] = ["source_split_by_target", "equivalent", "source_split_by_target"]
    out["relation"] = relation
    return out


def test_record_decomposition_is_one_finding_with_a_link_per_member(store: ResearchStore) -> None:
    d, scores = _decomposition(), _pair_scores()
    finding = store.record_decomposition(d, scores, recorded_by="agent")
    assert finding.id == 1 and finding.kind == "decomposition" and finding.link_ids == [1, 2, 3]
    assert finding.decomposition == d
    assert (
        finding.summary
        == "full 361 split into 3 ultra features [100, 101, 102] (R^2 0.800, coverage 0.950)"
    )
    assert store.findings() == [finding] == store.findings("full", 361, kind="decomposition")
    assert store.findings("ultra") == [] and store.findings(kind="no_counterpart") == []
    links = store.links("full", 361)
    assert [k.relation for k in links] == [
        "source_split_by_target",
        "equivalent",
        "source_split_by_target",
    ]
    for k, m in zip(links, d.members, strict=True):
        assert k.target_feature == m.feature and k.finding_id == finding.id
        assert k.scores["weight"] == m.weight
        for name in LINK_SCORE_FIELDS:
            value = scores[name][m.feature]
            assert k.scores[name] == (None if np.isnan(value) else pytest.approx(value))
    parent = store.feature_state(361, "full")
    assert parent.findings == [finding]
    assert [h.action for h in parent.history] == ["finding_recorded"]
    assert parent.history[0].detail.endswith("; links #1, #2, #3")
    for m in d.members:
        assert [h.action for h in store.feature_state(m.feature, "ultra").history] == [
            "link_recorded"
        ]
    md = store.export_markdown(361, "full")
    assert "## Findings\n\n- **#1** decomposition (" in md and "links #1, #2, #3" in md
    again = json.loads(json.dumps(store.export_json()))
    (parent_doc,) = [f for f in again["features"] if f["feature_id"] == 361]
    assert FeatureState.model_validate(parent_doc).findings == [finding]


def test_record_decomposition_summaries_of_one_and_no_member(store: ResearchStore) -> None:
    one = store.record_decomposition(_decomposition(1, source=1), _pair_scores(), recorded_by="a")
    none = store.record_decomposition(_decomposition(0, source=2), _pair_scores(), recorded_by="a")
    assert one.summary == "full 1: one ultra member [100], not split (R^2 0.800, coverage 0.950)"
    assert (
        none.summary == "full 2: no ultra member (0 candidates considered)" and none.link_ids == []
    )
    assert "; no link" in store.feature_state(2, "full").history[0].detail


def test_record_decomposition_refuses_bad_input_and_writes_nothing(
    store: ResearchStore, db: Path
) -> None:
    d = _decomposition()
    cut = d.model_copy(update={"members": d.members[:1]})
    with pytest.raises(
        ValueError, match=r"lists 1 of its 3 members; record the whole decomposition"
    ):
        store.record_decomposition(cut, _pair_scores(), recorded_by="a")
    with pytest.raises(ValueError, match=r"pair_scores has no 'relation' .*score_all\(361\)"):
        store.record_decomposition(d, {"activation_correlation": np.zeros(200)}, recorded_by="a")
    with pytest.raises(
        ValueError, match=r"member ultra 100 is out of range for pair_scores of length 50"
    ):
        store.record_decomposition(
            d, {k: v[:50] for k, v in _pair_scores().items()}, recorded_by="a"
        )
    bad = _pair_scores()
    bad["relation"][102] = "cousin"
    with pytest.raises(ValidationError, match=r"(?m)^relation\n"):
        store.record_decomposition(d, bad, recorded_by="a")
    with pytest.raises(ValidationError, match=r"(?m)^recorded_by\n"):
        store.record_decomposition(d, _pair_scores(), recorded_by="")
    assert (
        _table_rows(db)["findings"] == _table_rows(db)["links"] == _table_rows(db)["history"] == 0
    )


def _no_counterpart_report(label: str = "novel") -> MatchReport:
    report = _report(n_matches=3)
    matches = [m.model_copy(update={"relation": "unrelated"}) for m in report.matches]
    matches[2] = matches[2].model_copy(update={"activation_correlation": 0.9})  # best by r, rank 3
    verdict = Verdict(
        label=label, side="larger", rule="no parent (test)", significance="none", best_nesting=0.1,
        confidence="high" if label == "novel" else None,
    )
    return report.model_copy(
        update={"matches": matches, "verdict": verdict, "is_unique": True, "best_correlation": 0.9}
    )


def test_record_no_counterpart_keeps_the_evidence_and_links_nothing(store: ResearchStore) -> None:
    report = _no_counterpart_report()
    finding = store.record_no_counterpart(report, recorded_by="agent")
    ev = finding.no_counterpart
    assert (ev.verdict_label, ev.rule, ev.best_nesting) == ("novel", "no parent (test)", 0.1)
    assert ev.confidence == "high"
    best = report.matches[2]
    assert (ev.best_candidate, ev.best_candidate_correlation) == (best.target_feature, 0.9)
    assert (
        ev.best_candidate_score == best.combined_score and ev.best_candidate_relation == "unrelated"
    )
    assert ev.n_candidates_tested == 2048 and ev.best_correlation == 0.9
    assert (
        finding.summary
        == f"no full counterpart: verdict novel; best candidate full {best.target_feature} (r = 0.900, unrelated)"
    )
    assert store.count_links() == 0 and finding.link_ids == []
    s = store.feature_state(18712, "ultra")
    assert s.findings == [finding] and [h.action for h in s.history] == ["finding_recorded"]
    assert store.feature_state(best.target_feature, "full").created_at is None  # not touched
    dead = _no_counterpart_report("dead")
    dead = dead.model_copy(
        update={
            "matches": [m.model_copy(update={"activation_correlation": None}) for m in dead.matches]
        }
    )
    assert store.record_no_counterpart(dead, recorded_by="a").summary.endswith(
        "no listed candidate has a defined correlation"
    )


def test_record_no_counterpart_refuses_reports_with_a_counterpart_or_no_verdict(
    store: ResearchStore, db: Path
) -> None:
    with pytest.raises(ValueError, match=r"report on ultra feature 18712 has no verdict"):
        store.record_no_counterpart(_report(), recorded_by="a")
    paired = _no_counterpart_report().model_copy(update={"is_unique": False})
    paired.verdict.label = "split_child"
    with pytest.raises(
        ValueError,
        match=r"verdict of ultra feature 18712 is 'split_child'.*record_link_from_report",
    ):
        store.record_no_counterpart(paired, recorded_by="a")
    assert _table_rows(db)["findings"] == 0


def test_a_finding_carries_its_own_evidence_only(store: ResearchStore) -> None:
    with pytest.raises(
        ValidationError, match=r"a 'decomposition' finding carries exactly its own evidence field"
    ):
        Finding(
            model_type="full",
            feature_id=1,
            kind="decomposition",
            target_model="ultra",
            summary="s",
            recorded_by="a",
        )
    with pytest.raises(
        ValidationError, match=r"the decomposition is of full 361 on ultra, not of full 2 on ultra"
    ):
        Finding(
            model_type="full",
            feature_id=2,
            kind="decomposition",
            target_model="ultra",
            summary="s",
            decomposition=_decomposition(),
            recorded_by="a",
        )
    with pytest.raises(ValidationError, match=r"model_type and target_model are both 'full'"):
        Finding(
            model_type="full",
            feature_id=361,
            kind="decomposition",
            target_model="full",
            summary="s",
            decomposition=_decomposition(),
            recorded_by="a",
        )
    with pytest.raises(ValueError, match=r"finding kind 'split' is not known"):
        store.findings(kind="split")
    with pytest.raises(ValueError, match=r"model 'medium' is not known"):
        store.findings("medium")


def test_labels_and_their_provenance(store: ResearchStore) -> None:
    store.manager(5, "full").set_label("by hand")
    store.manager(3, "full").set_label("moved", provenance="from ultra 7, r = 0.73, equivalent")
    store.manager(9, "ultra").set_label("other model")
    store.record_link(_link(1, 4))  # full 4 gets a row, but no label
    assert store.labels("full") == {
        3: ("moved", "from ultra 7, r = 0.73, equivalent"),
        5: ("by hand", None),
    }
    s = store.feature_state(3, "full")
    assert s.label_provenance == "from ultra 7, r = 0.73, equivalent"
    assert s.history[-1].detail == "label: 'moved' (from ultra 7, r = 0.73, equivalent)"
    assert "_Label from ultra 7, r = 0.73, equivalent._" in s.to_markdown()
    with pytest.raises(ValueError, match=r"model 'medium' is not known"):
        store.labels("medium")


def test_upstream_import_keeps_links_findings_and_their_history(store: ResearchStore) -> None:
    store.record_decomposition(_decomposition(), _pair_scores(), recorded_by="a")
    # Only links and findings: not "research state" that an import would overwrite.
    s = store.import_upstream_state(
        {"feature_id": 361, "model_type": "full", "feature_label": "up"}
    )
    assert s.label == "up" and len(s.findings) == 1 and len(s.links) == 3
    assert [h.action for h in s.history] == ["finding_recorded", "imported_upstream"]
    s = store.import_upstream_state({"feature_id": 361, "model_type": "full"}, replace=True)
    assert s.label is None and len(s.findings) == 1
    assert [h.action for h in s.history] == ["finding_recorded", "imported_upstream"]


# -- the store must be writable ----------------------------------------------------------------
def test_check_writable_names_a_read_only_store(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    import splatnlp.mechinterp.state.db as db_module

    with ResearchStore(db) as s:
        s.check_writable()  # a writable store passes, and the probe changes nothing
        s.manager(1, "full").set_label("x")
    before = _table_rows(db)

    class ReadOnly:
        def __getattr__(self, name: str) -> Any:
            return getattr(sqlite3, name)

        @staticmethod
        def connect(path: Any, **kwargs: Any) -> sqlite3.Connection:
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True, **kwargs)

    monkeypatch.setattr(db_module, "sqlite3", ReadOnly())
    with ResearchStore(db) as s:
        assert s.feature_state(1, "full").label == "x"  # reading works
        with pytest.raises(
            ValueError, match=rf"research store '{db}' is not writable .*nothing was written"
        ):
            s.check_writable()
        with pytest.raises(ValueError, match=r"is not writable"):
            s.manager(1, "full").set_label("y")
        with pytest.raises(ValueError, match=r"is not writable"), s.transaction():
            s.record_link(_link())
    monkeypatch.undo()
    assert _table_rows(db) == before


# -- a store from before findings ------------------------------------------------------------
def test_a_version_1_store_opens_and_gains_findings(tmp_path: Path) -> None:
    """A store written by the previous version (no findings table, no label_provenance, no
    finding_id column) opens, keeps its data, and takes the new records."""
    import sqlite3

    from splatnlp.mechinterp.state import schema

    old = tmp_path / "v1.sqlite"
    with sqlite3.connect(old) as conn:
        for statement in schema._BASELINE_V0:
            conn.execute(statement)
        schema.MIGRATIONS[0](conn)
        conn.execute("UPDATE schema_meta SET value = '1' WHERE key = 'schema_version'")
        conn.execute(
            "INSERT INTO features (model_type, feature_id, label, created_at, updated_at) "
            "VALUES ('full', 361, 'old label', '2024-01-01T00:00:00+00:00', '2024-01-02T00:00:00+00:00')"
        )
        conn.execute(
            "INSERT INTO links (source_model, source_feature, target_model, target_feature, relation, "
            "scores, recorded_by, recorded_at, report) VALUES ('ultra', 5, 'full', 361, 'equivalent', "
            "'{}', 'old', '2024-01-01T00:00:00+00:00', NULL)"
        )
    columns = {r[1] for r in sqlite3.connect(old).execute("PRAGMA table_info(links)")}
    assert "finding_id" not in columns

    with ResearchStore(old) as s:
        assert s.schema_version == SCHEMA_VERSION == 2
        state = s.feature_state(361, "full")
        assert (state.label, state.label_provenance, state.findings) == ("old label", None, [])
        assert [k.finding_id for k in state.links] == [None]
        finding = s.record_decomposition(_decomposition(), _pair_scores(), recorded_by="new")
        assert finding.link_ids == [2, 3, 4]
        assert s.feature_state(361, "full").label == "old label"
    fresh = tmp_path / "fresh.sqlite"
    ResearchStore(fresh).close()

    def layout(path: Path) -> dict[str, list[str]]:
        with sqlite3.connect(path) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            return {
                t: [c[1] for c in conn.execute(f"PRAGMA table_info({t})")] for t in sorted(tables)
            }

    assert layout(old) == layout(fresh)
