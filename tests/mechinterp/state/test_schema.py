"""Tests of splatnlp/mechinterp/state/schema.py: newer schema versions are refused, version 0
stores are migrated with their data, and a failed migration leaves the old version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from state_builders import _report, _scalar

from splatnlp.mechinterp.state.schema import StoreVersionError
from splatnlp.mechinterp.state.store import ResearchStore


def test_newer_schema_is_refused(db: Path) -> None:
    ResearchStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_meta SET value = '7' WHERE key = 'schema_version'")
    with pytest.raises(StoreVersionError, match=rf"{db.name}' has schema version 7, .* up to 2"):
        ResearchStore(db)


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
        assert s.schema_version == 2
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
    import splatnlp.mechinterp.state.schema as schema_module

    old = tmp_path / "v0.sqlite"
    with sqlite3.connect(old) as conn:
        conn.executescript(_V0)

    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE links ADD COLUMN report TEXT")
        raise RuntimeError("migration failed half-way")

    monkeypatch.setattr(schema_module, "MIGRATIONS", (failing,))
    with pytest.raises(RuntimeError, match="half-way"):
        ResearchStore(old)
    assert _scalar(old, "SELECT value FROM schema_meta") == "0"
    assert "report" not in _columns(old)["links"]
