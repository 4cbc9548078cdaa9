"""Records to SQLite rows and back: the SQL that the store and the manager share.

Every function takes an open connection and runs inside the caller's transaction; none commits.
Times are stored as ISO 8601 text in UTC, lists and dicts as JSON text.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from splatnlp.mechinterp.state.records import (
    CrossModelLink,
    Evidence,
    FeatureState,
    Finding,
    HistoryEntry,
    Hypothesis,
    utc_now,
)

LINK_COLUMNS: tuple[str, ...] = (
    "id",
    "source_model",
    "source_feature",
    "target_model",
    "target_feature",
    "relation",
    "scores",
    "report",
    "recorded_by",
    "recorded_at",
    "finding_id",
)
"""The ``links`` columns that :func:`link_from_row` reads, in its order."""


def dump_time(dt: datetime) -> str:
    """``dt`` as stored: ISO 8601 text in UTC."""
    return dt.astimezone(timezone.utc).isoformat()


def side_filter(model: str | None, feature: int | None) -> tuple[str, list[Any]]:
    """A ``WHERE`` clause (empty if no filter) and its parameters: links with ``model`` and
    ``feature`` on the source side or on the target side."""
    side = []
    params: list[Any] = []
    for prefix in ("source", "target"):
        parts = []
        if model is not None:
            parts.append(f"{prefix}_model = ?")
            params.append(model)
        if feature is not None:
            parts.append(f"{prefix}_feature = ?")
            params.append(feature)
        if parts:
            side.append("(" + " AND ".join(parts) + ")")
    return " OR ".join(side), params


def link_select(*, with_report: bool = True) -> str:
    """The column list of a ``SELECT`` that :func:`link_from_row` reads (``report`` as NULL
    unless ``with_report``)."""
    return ", ".join(c if with_report or c != "report" else "NULL" for c in LINK_COLUMNS)


def append_history(
    conn: sqlite3.Connection,
    model_type: str,
    feature_id: int,
    action: str,
    detail: str,
    at: datetime | None = None,
) -> None:
    """Append one entry, stamped ``at`` (default now), to a feature's history."""
    conn.execute(
        "INSERT INTO history (model_type, feature_id, at, action, detail) VALUES (?, ?, ?, ?, ?)",
        (model_type, feature_id, dump_time(at or utc_now()), action, detail),
    )


def touch_feature(
    conn: sqlite3.Connection, model_type: str, feature_id: int, at: datetime | None = None
) -> None:
    """Give a feature its row if it has none (``created_at``), and set ``updated_at``."""
    now = dump_time(at or utc_now())
    conn.execute(
        "INSERT INTO features (model_type, feature_id, created_at, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (model_type, feature_id) DO UPDATE SET updated_at = ?",
        (model_type, feature_id, now, now, now),
    )


def _r(scores: dict[str, float | None]) -> str:
    r = scores.get("activation_correlation")
    return "r n/a" if r is None else f"r = {r:.3f}"


def insert_link(
    conn: sqlite3.Connection,
    link: CrossModelLink,
    *,
    finding_id: int | None = None,
    history_on: tuple[str, ...] = ("source", "target"),
) -> int:
    """Insert a link (its ``id`` is ignored), touch both features, and append a ``link_recorded``
    entry to the history of the sides named in ``history_on``; returns the new id."""
    cur = conn.execute(
        "INSERT INTO links (source_model, source_feature, target_model, target_feature, "
        "relation, scores, report, recorded_by, recorded_at, finding_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            link.source_model,
            link.source_feature,
            link.target_model,
            link.target_feature,
            link.relation,
            json.dumps(link.scores),
            None if link.report is None else json.dumps(link.report),
            link.recorded_by,
            dump_time(link.recorded_at),
            finding_id,
        ),
    )
    lid = int(cur.lastrowid)
    detail = (
        f"link #{lid}: {link.source_model} {link.source_feature} -> {link.target_model} "
        f"{link.target_feature} ({link.relation}, {_r(link.scores)}) by {link.recorded_by}"
        + (f", with finding #{finding_id}" if finding_id is not None else "")
    )
    for side in ("source", "target"):
        model, feature = getattr(link, f"{side}_model"), getattr(link, f"{side}_feature")
        touch_feature(conn, model, feature, link.recorded_at)
        if side in history_on:
            append_history(conn, model, feature, "link_recorded", detail, link.recorded_at)
    return lid


def insert_finding(
    conn: sqlite3.Connection, finding: Finding, links: Sequence[CrossModelLink] = ()
) -> Finding:
    """Insert a finding and its links (each tagged with the finding), in the caller's
    transaction: the feature gets one ``finding_recorded`` history entry, each member one
    ``link_recorded``. Returns the finding as stored (with its id and link ids)."""
    evidence = finding.decomposition if finding.kind == "decomposition" else finding.no_counterpart
    touch_feature(conn, finding.model_type, finding.feature_id, finding.recorded_at)
    cur = conn.execute(
        "INSERT INTO findings (model_type, feature_id, kind, target_model, summary, evidence, "
        "recorded_by, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            finding.model_type,
            finding.feature_id,
            finding.kind,
            finding.target_model,
            finding.summary,
            evidence.model_dump_json() if evidence is not None else "{}",
            finding.recorded_by,
            dump_time(finding.recorded_at),
        ),
    )
    fid = int(cur.lastrowid)
    # The parent's history says it once, in the finding's entry; each member's says its link.
    link_ids = [insert_link(conn, k, finding_id=fid, history_on=("target",)) for k in links]
    shown = ", ".join(f"#{i}" for i in link_ids)
    append_history(
        conn,
        finding.model_type,
        finding.feature_id,
        "finding_recorded",
        f"finding #{fid} ({finding.kind}) by {finding.recorded_by}: {finding.summary}"
        + (f"; links {shown}" if link_ids else "; no link"),
        finding.recorded_at,
    )
    return finding.model_copy(update={"id": fid, "link_ids": link_ids})


def finding_from_row(conn: sqlite3.Connection, row: tuple[Any, ...]) -> Finding:
    """A finding from a ``findings`` row (``id, model_type, feature_id, kind, target_model,
    summary, evidence, recorded_by, recorded_at``), with its link ids."""
    fid, model, feature, kind, target, summary, evidence, by, at = row
    link_ids = [
        int(r[0])
        for r in conn.execute("SELECT id FROM links WHERE finding_id = ? ORDER BY id", (fid,))
    ]
    return Finding(
        id=fid,
        model_type=model,
        feature_id=feature,
        kind=kind,
        target_model=target,
        summary=summary,
        **{kind: json.loads(evidence)},
        link_ids=link_ids,
        recorded_by=by,
        recorded_at=at,
    )


FINDING_SELECT = (
    "SELECT id, model_type, feature_id, kind, target_model, summary, evidence, recorded_by, "
    "recorded_at FROM findings"
)
"""The ``SELECT`` whose rows :func:`finding_from_row` reads (add a ``WHERE``)."""


def next_id(conn: sqlite3.Connection, table: str, letter: str, key: tuple[str, int]) -> str:
    """The next free id of a feature (``key``) in ``table``: ``letter`` and >= 3 digits."""
    # Runs under the write lock (BEGIN IMMEDIATE), so two writers cannot take the same number.
    (top,) = conn.execute(
        f"SELECT MAX(CAST(substr(id, 2) AS INTEGER)) FROM {table} "
        "WHERE model_type = ? AND feature_id = ?",
        key,
    ).fetchone()
    return f"{letter}{(top or 0) + 1:03d}"


def insert_hypothesis(
    conn: sqlite3.Connection, model_type: str, feature_id: int, h: Hypothesis
) -> None:
    """Insert a new hypothesis with its supporting and refuting evidence references."""
    conn.execute(
        "INSERT INTO hypotheses (model_type, feature_id, id, statement, status, confidence, "
        "parent_hypothesis, tags, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            model_type,
            feature_id,
            h.id,
            h.statement,
            h.status,
            h.confidence,
            h.parent_hypothesis,
            json.dumps(h.tags),
            dump_time(h.created_at),
            dump_time(h.updated_at),
        ),
    )
    link_evidence(conn, model_type, feature_id, h.id, h.supporting_evidence, "supporting")
    link_evidence(conn, model_type, feature_id, h.id, h.refuting_evidence, "refuting")


def insert_evidence(
    conn: sqlite3.Connection, model_type: str, feature_id: int, e: Evidence
) -> None:
    """Insert a new evidence item."""
    conn.execute(
        "INSERT INTO evidence (model_type, feature_id, id, experiment_id, result_path, summary, "
        "strength, key_metrics, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            model_type,
            feature_id,
            e.id,
            e.experiment_id,
            e.result_path,
            e.summary,
            e.strength,
            json.dumps(e.key_metrics),
            dump_time(e.created_at),
        ),
    )


def link_evidence(
    conn: sqlite3.Connection,
    model_type: str,
    feature_id: int,
    hid: str,
    eids: Iterable[str],
    role: str,
) -> None:
    """Attach evidence ``eids`` to hypothesis ``hid`` as ``role`` (``supporting`` or
    ``refuting``); a reference already there is kept once."""
    conn.executemany(
        "INSERT OR IGNORE INTO hypothesis_evidence (model_type, feature_id, hypothesis_id, "
        "evidence_id, role) VALUES (?, ?, ?, ?, ?)",
        [(model_type, feature_id, hid, eid, role) for eid in eids],
    )


def insert_state(conn: sqlite3.Connection, state: FeatureState) -> None:
    """Insert a whole feature state (not its links or findings) for a feature that has no
    ``features`` row yet."""
    m, f = state.model_type, state.feature_id
    conn.execute(
        "INSERT INTO features (model_type, feature_id, label, label_provenance, notes, "
        "known_pitfalls, active_constraints, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            m,
            f,
            state.label,
            state.label_provenance,
            state.notes,
            json.dumps(state.known_pitfalls),
            json.dumps(state.active_constraints),
            dump_time(state.created_at or utc_now()),
            dump_time(state.updated_at or utc_now()),
        ),
    )
    # Evidence first: the hypotheses' evidence references point at it (foreign keys are on).
    for e in state.evidence:
        insert_evidence(conn, m, f, e)
    for h in state.hypotheses:
        insert_hypothesis(conn, m, f, h)
    conn.executemany(
        "INSERT INTO history (model_type, feature_id, at, action, detail) VALUES (?, ?, ?, ?, ?)",
        [(m, f, dump_time(h.at), h.action, h.detail) for h in state.history],
    )


def load_hypotheses(conn: sqlite3.Connection, model_type: str, feature_id: int) -> list[Hypothesis]:
    """A feature's hypotheses with their evidence references, in id order."""
    refs: dict[tuple[str, str], list[str]] = {}
    for hid, eid, role in conn.execute(
        "SELECT hypothesis_id, evidence_id, role FROM hypothesis_evidence "
        "WHERE model_type = ? AND feature_id = ? ORDER BY rowid",
        (model_type, feature_id),
    ):
        refs.setdefault((hid, role), []).append(eid)
    rows = conn.execute(
        "SELECT id, statement, status, confidence, parent_hypothesis, tags, created_at, updated_at "
        "FROM hypotheses WHERE model_type = ? AND feature_id = ? "
        "ORDER BY CAST(substr(id, 2) AS INTEGER)",
        (model_type, feature_id),
    ).fetchall()
    return [
        Hypothesis(
            id=hid,
            statement=statement,
            status=status,
            confidence=confidence,
            parent_hypothesis=parent,
            tags=json.loads(tags),
            supporting_evidence=refs.get((hid, "supporting"), []),
            refuting_evidence=refs.get((hid, "refuting"), []),
            created_at=created,
            updated_at=updated,
        )
        for hid, statement, status, confidence, parent, tags, created, updated in rows
    ]


def link_from_row(row: tuple[Any, ...]) -> CrossModelLink:
    """A link from a ``links`` row selected as :func:`link_select` (``report`` may be NULL)."""
    lid, sm, sf, tm, tf, relation, scores, report, by, at, finding_id = row
    return CrossModelLink(
        id=lid,
        source_model=sm,
        source_feature=sf,
        target_model=tm,
        target_feature=tf,
        relation=relation,
        scores=json.loads(scores),
        report=None if report is None else json.loads(report),
        recorded_by=by,
        recorded_at=at,
        finding_id=finding_id,
    )


def load_state(
    conn: sqlite3.Connection, feature_id: int, model_type: str, *, with_links: bool = True
) -> FeatureState:
    """Everything about one feature (an empty state if it has no row), links from both sides
    unless ``with_links`` is false."""
    key = (model_type, feature_id)
    row = conn.execute(
        "SELECT label, label_provenance, notes, known_pitfalls, active_constraints, created_at, "
        "updated_at FROM features WHERE model_type = ? AND feature_id = ?",
        key,
    ).fetchone()
    links: list[CrossModelLink] = []
    if with_links:
        clauses, params = side_filter(model_type, feature_id)
        links = [
            link_from_row(r)
            for r in conn.execute(
                f"SELECT {link_select()} FROM links WHERE {clauses} ORDER BY id",
                params,
            )
        ]
    if row is None:
        return FeatureState(feature_id=feature_id, model_type=model_type, links=links)
    label, provenance, notes, pitfalls, constraints, created, updated = row
    evidence = [
        Evidence(
            id=eid,
            experiment_id=exp,
            result_path=path,
            summary=summary,
            strength=strength,
            key_metrics=json.loads(metrics),
            created_at=at,
        )
        for eid, exp, path, summary, strength, metrics, at in conn.execute(
            "SELECT id, experiment_id, result_path, summary, strength, key_metrics, created_at "
            "FROM evidence WHERE model_type = ? AND feature_id = ? "
            "ORDER BY CAST(substr(id, 2) AS INTEGER)",
            key,
        )
    ]
    history = [
        HistoryEntry(at=at, action=action, detail=detail)
        for at, action, detail in conn.execute(
            "SELECT at, action, detail FROM history WHERE model_type = ? AND feature_id = ? "
            "ORDER BY seq",
            key,
        )
    ]
    return FeatureState(
        feature_id=feature_id,
        model_type=model_type,
        label=label,
        label_provenance=provenance,
        hypotheses=load_hypotheses(conn, model_type, feature_id),
        evidence=evidence,
        active_constraints=json.loads(constraints),
        known_pitfalls=json.loads(pitfalls),
        history=history,
        notes=notes,
        links=links,
        findings=[
            finding_from_row(conn, r)
            for r in conn.execute(
                f"{FINDING_SELECT} WHERE model_type = ? AND feature_id = ? ORDER BY id", key
            ).fetchall()
        ],
        created_at=created,
        updated_at=updated,
    )


__all__ = [
    "FINDING_SELECT",
    "LINK_COLUMNS",
    "append_history",
    "dump_time",
    "finding_from_row",
    "insert_evidence",
    "insert_finding",
    "insert_hypothesis",
    "insert_link",
    "insert_state",
    "link_evidence",
    "link_from_row",
    "link_select",
    "load_hypotheses",
    "load_state",
    "next_id",
    "side_filter",
    "touch_feature",
]
