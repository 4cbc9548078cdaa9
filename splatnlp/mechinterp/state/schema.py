"""The database layout of the research store, its version, and the migrations between versions.

Version 0 is the baseline layout. Every database, fresh or old, is brought to the current
version by the same ordered migrations (:func:`upgrade`), so a fresh store and a migrated one
cannot drift apart. A database written by a newer version is refused (:class:`StoreVersionError`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from splatnlp.mechinterp.state.location import ENV_STORE


class StoreVersionError(ValueError):
    """The database was written by a newer version of this package."""


# Never edited: a change to the layout is a new migration, so old databases get it too.
_BASELINE_V0: tuple[str, ...] = (
    "CREATE TABLE schema_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE features (
        model_type TEXT NOT NULL CHECK (model_type IN ('full', 'ultra')),
        feature_id INTEGER NOT NULL CHECK (feature_id >= 0),
        label TEXT,
        notes TEXT NOT NULL DEFAULT '',
        known_pitfalls TEXT NOT NULL DEFAULT '[]',
        active_constraints TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (model_type, feature_id)
    )""",
    """CREATE TABLE hypotheses (
        model_type TEXT NOT NULL,
        feature_id INTEGER NOT NULL,
        id TEXT NOT NULL,
        statement TEXT NOT NULL,
        status TEXT NOT NULL,
        confidence REAL NOT NULL,
        parent_hypothesis TEXT,
        tags TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (model_type, feature_id, id),
        FOREIGN KEY (model_type, feature_id) REFERENCES features (model_type, feature_id)
    )""",
    """CREATE TABLE evidence (
        model_type TEXT NOT NULL,
        feature_id INTEGER NOT NULL,
        id TEXT NOT NULL,
        experiment_id TEXT NOT NULL,
        result_path TEXT,
        summary TEXT NOT NULL,
        strength TEXT NOT NULL,
        key_metrics TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        PRIMARY KEY (model_type, feature_id, id),
        FOREIGN KEY (model_type, feature_id) REFERENCES features (model_type, feature_id)
    )""",
    """CREATE TABLE hypothesis_evidence (
        model_type TEXT NOT NULL,
        feature_id INTEGER NOT NULL,
        hypothesis_id TEXT NOT NULL,
        evidence_id TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('supporting', 'refuting')),
        PRIMARY KEY (model_type, feature_id, hypothesis_id, evidence_id, role),
        FOREIGN KEY (model_type, feature_id, hypothesis_id)
            REFERENCES hypotheses (model_type, feature_id, id),
        FOREIGN KEY (model_type, feature_id, evidence_id)
            REFERENCES evidence (model_type, feature_id, id)
    )""",
    """CREATE TABLE links (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source_model TEXT NOT NULL CHECK (source_model IN ('full', 'ultra')),
        source_feature INTEGER NOT NULL CHECK (source_feature >= 0),
        target_model TEXT NOT NULL CHECK (target_model IN ('full', 'ultra')),
        target_feature INTEGER NOT NULL CHECK (target_feature >= 0),
        relation TEXT NOT NULL,
        scores TEXT NOT NULL DEFAULT '{}',
        recorded_by TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        CHECK (source_model <> target_model)
    )""",
    "INSERT INTO schema_meta (key, value) VALUES ('schema_version', '0')",
)


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    """v1: links keep the full MatchReport; features get a history log; side lookups indexed."""
    conn.execute("ALTER TABLE links ADD COLUMN report TEXT")
    conn.execute(
        """CREATE TABLE history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            model_type TEXT NOT NULL,
            feature_id INTEGER NOT NULL,
            at TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            FOREIGN KEY (model_type, feature_id) REFERENCES features (model_type, feature_id)
        )"""
    )
    conn.execute("CREATE INDEX history_by_feature ON history (model_type, feature_id, seq)")
    conn.execute("CREATE INDEX links_by_source ON links (source_model, source_feature)")
    conn.execute("CREATE INDEX links_by_target ON links (target_model, target_feature)")


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """v2: findings (a decomposition, "no counterpart found") with the links they recorded, and
    where a label came from (``label_provenance``: a label transfer's match evidence)."""
    conn.execute("ALTER TABLE features ADD COLUMN label_provenance TEXT")
    conn.execute(
        """CREATE TABLE findings (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model_type TEXT NOT NULL,
            feature_id INTEGER NOT NULL,
            kind TEXT NOT NULL,
            target_model TEXT NOT NULL,
            summary TEXT NOT NULL,
            evidence TEXT NOT NULL DEFAULT '{}',
            recorded_by TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            FOREIGN KEY (model_type, feature_id) REFERENCES features (model_type, feature_id)
        )"""
    )
    conn.execute("CREATE INDEX findings_by_feature ON findings (model_type, feature_id, id)")
    # No foreign key: ALTER TABLE cannot add one, and a link outlives nothing it points at
    # (findings are never deleted).
    conn.execute("ALTER TABLE links ADD COLUMN finding_id INTEGER")
    conn.execute("CREATE INDEX links_by_finding ON links (finding_id)")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_migrate_0_to_1, _migrate_1_to_2)
"""``MIGRATIONS[v]`` upgrades a database from version ``v`` to ``v + 1``, inside the caller's
transaction (SQLite's DDL is transactional: a failed migration leaves the old version intact)."""
SCHEMA_VERSION = len(MIGRATIONS)
"""The version this code writes; 2."""


def read_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The schema version of the database open on ``conn`` (at ``path``); None if it is empty.

    ``ValueError`` if it holds tables but is not a research store, or its version is unreadable.
    """
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_meta" not in tables:
        if tables - {"sqlite_sequence"}:
            raise ValueError(
                f"{str(path)!r} is a SQLite database but not a research store "
                f"(no schema_meta table; tables: {sorted(tables)}); point ${ENV_STORE} "
                "at another file"
            )
        return None
    row = conn.execute("SELECT value FROM schema_meta WHERE key = 'schema_version'").fetchone()
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise ValueError(
            f"the research store {str(path)!r} has an unreadable schema_version "
            f"{None if row is None else row[0]!r}; expected an integer"
        ) from None


def check_not_newer(version: int | None, path: Path) -> None:
    """Raise :class:`StoreVersionError` if ``version`` is above :data:`SCHEMA_VERSION`."""
    if version is not None and version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"the research store {str(path)!r} has schema version {version}, but this "
            f"splatnlp-mechinterp reads versions up to {SCHEMA_VERSION}; upgrade the package, "
            f"or point ${ENV_STORE} at another file"
        )


def upgrade(conn: sqlite3.Connection, current: int | None) -> None:
    """Bring a database at version ``current`` (None: empty) to :data:`SCHEMA_VERSION`.

    Runs in the caller's write transaction: the baseline layout if the database is empty, then
    every migration from ``current`` on, each recording its new version.
    """
    if current is None:
        for statement in _BASELINE_V0:
            conn.execute(statement)
        current = 0
    for v in range(current, SCHEMA_VERSION):
        MIGRATIONS[v](conn)
        conn.execute("UPDATE schema_meta SET value = ? WHERE key = 'schema_version'", (str(v + 1),))


__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "StoreVersionError",
    "check_not_newer",
    "read_version",
    "upgrade",
]
