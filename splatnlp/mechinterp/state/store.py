"""The research store's API: :class:`ResearchStore` (the whole file) and
:class:`ResearchStateManager` (one feature).

* :class:`ResearchStateManager`: one feature (upstream's interface): ``add_hypothesis``,
  ``update_hypothesis``, ``add_evidence``, ``set_label``, ``add_pitfall``, ``add_note``,
  ``state()``, ``to_markdown()``. Every mutating call also appends a
  :class:`~splatnlp.mechinterp.state.records.HistoryEntry`, in the same transaction.
* :class:`ResearchStore`: the file: links (``record_link``, ``record_link_from_report``,
  ``links``), findings (``record_decomposition``, ``record_no_counterpart``, ``findings``),
  ``feature_state``, exports, and ``import_upstream_state`` for upstream SplatNLP's
  per-feature JSON files. Every link or finding touches each feature it names (``created_at``,
  ``updated_at``) and appends a history entry to it, in the same transaction.

The two share this module because each builds the other: ``ResearchStore.manager`` returns a
manager on the store, and a manager given no store opens the default one. Connections, locking
and transactions are :class:`~splatnlp.mechinterp.state.db.Database`'s; the SQL of the records
is in :mod:`~splatnlp.mechinterp.state.rows`.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from splatnlp.mechinterp.state.db import Database
from splatnlp.mechinterp.state.records import (
    FINDING_KINDS,
    LINK_SCORE_FIELDS,
    CrossModelLink,
    Evidence,
    EvidenceId,
    FeatureState,
    Finding,
    Hypothesis,
    HypothesisId,
    NoCounterpart,
    NonEmptyStr,
    check_feature,
    check_model,
    ordered_union,
    utc_now,
    valid_id,
)
from splatnlp.mechinterp.state.rows import (
    FINDING_SELECT,
    append_history,
    dump_time,
    finding_from_row,
    insert_evidence,
    insert_finding,
    insert_hypothesis,
    insert_link,
    insert_state,
    link_evidence,
    link_from_row,
    link_select,
    load_hypotheses,
    load_state,
    next_id,
    side_filter,
    touch_feature,
)
from splatnlp.mechinterp.state.schema import SCHEMA_VERSION
from splatnlp.mechinterp.state.upstream import load_upstream_state

if TYPE_CHECKING:
    from splatnlp.mechinterp.analysis.match.reports import Decomposition, MatchReport


def _finite(value: Any) -> float | None:
    """``value`` as a float, None where it is undefined (NaN, inf or None)."""
    if value is None:
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _decomposition_summary(d: Decomposition) -> str:
    r2 = "n/a" if d.r_squared is None else f"{d.r_squared:.3f}"
    cov = "n/a" if d.coverage is None else f"{d.coverage:.3f}"
    ids = [m.feature for m in d.members]
    shown = ", ".join(str(i) for i in ids[:12]) + (" ..." if len(ids) > 12 else "")
    me = f"{d.source_model} {d.source_feature}"
    if d.is_split:
        return f"{me} split into {len(ids)} {d.target_model} features [{shown}] (R^2 {r2}, coverage {cov})"
    if ids:
        return f"{me}: one {d.target_model} member [{shown}], not split (R^2 {r2}, coverage {cov})"
    return f"{me}: no {d.target_model} member ({d.n_considered} candidates considered)"


class ResearchStore(Database):
    """An open research-state database.

    Parameters
    ----------
    path : str or Path, optional
        The database file; default :func:`~splatnlp.mechinterp.state.location.store_path`.
        Created (with its folder) if absent.
    busy_timeout_s : float
        How long a write waits for another process's write lock before ``TimeoutError``.

    One connection per instance; use an instance from one thread only. Open one per process.
    Use as a context manager, or call :meth:`close`.
    """

    # links
    def record_link(self, link: CrossModelLink | Mapping[str, Any]) -> int:
        """Validate and store one link; returns the id the store gave it (``link.id`` and
        ``link.finding_id`` are ignored: a finding's links are recorded with it).

        Both features get a row if they had none (``created_at``), their ``updated_at`` and a
        ``link_recorded`` history entry, in the same transaction.
        """
        link = link if isinstance(link, CrossModelLink) else CrossModelLink.model_validate(link)
        return self._write(lambda conn: insert_link(conn, link))

    def record_link_from_report(
        self, report: MatchReport, match_index: int = 0, *, recorded_by: str
    ) -> CrossModelLink:
        """Record the link between a report's source feature and ``report.matches[match_index]``.

        The link keeps the match's metrics as ``scores``, its ``relation``, and the whole report
        as JSON. Returns the stored link (with its id).
        """
        n = len(report.matches)
        if not 0 <= match_index < n:
            allowed = f"0..{n - 1}" if n else "none: the report has no matches"
            raise ValueError(
                f"match_index {match_index} is out of range for the report on "
                f"{report.source_model} feature {report.source_feature} (allowed: {allowed})"
            )
        match = report.matches[match_index]
        link = CrossModelLink(
            source_model=report.source_model,
            source_feature=report.source_feature,
            target_model=report.target_model,
            target_feature=match.target_feature,
            relation=match.relation,
            scores={name: getattr(match, name) for name in LINK_SCORE_FIELDS},
            # Through JSON text: the report's own serializer turns inf/nan into null.
            report=json.loads(report.model_dump_json()),
            recorded_by=recorded_by,
        )
        return link.model_copy(update={"id": self.record_link(link)})

    def links(
        self,
        model: str | None = None,
        feature: int | None = None,
        *,
        limit: int | None = None,
        with_report: bool = True,
    ) -> list[CrossModelLink]:
        """Links with ``model``/``feature`` on either side (source or target), oldest first.

        ``with_report=False`` leaves out the stored MatchReports (they can be large).
        """
        if model is not None:
            check_model(model)
        if feature is not None:
            feature = check_feature(feature)
        if limit is not None and limit < 0:
            raise ValueError(f"limit {limit} is negative; expected a count >= 0")
        clauses, params = side_filter(model, feature)
        sql = (
            f"SELECT {link_select(with_report=with_report)} FROM links"
            + (f" WHERE {clauses}" if clauses else "")
            + " ORDER BY id"
            + (f" LIMIT {int(limit)}" if limit is not None else "")
        )
        rows = self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [link_from_row(r) for r in rows]

    # findings
    def record_decomposition(
        self,
        decomposition: Decomposition,
        pair_scores: Mapping[str, Sequence[Any]],
        *,
        recorded_by: str,
    ) -> Finding:
        """Record a decomposition as one finding on its source feature, with one link from the
        source to each member, all in one transaction.

        Parameters
        ----------
        decomposition : Decomposition
            ``FeatureMatcher.find_decomposition(f)`` with every member (not cut by a display
            limit: ``len(members)`` must equal ``n_members``).
        pair_scores : dict of arrays of shape (n_target_features,)
            ``FeatureMatcher.score_all(f)`` of the same source: each link's ``relation`` and
            scores (every pair metric, ``combined_score``, ``p_value``; None where NaN) are
            read at the member's index; the member's NNLS ``weight`` joins the scores.
        recorded_by : str
            Who records it.

        Returns the stored finding (its ``id``, ``link_ids`` in member order). The source gets
        one ``finding_recorded`` history entry, each member a ``link_recorded`` one. Invalid
        input raises ``ValueError`` before anything is written.
        """
        d = decomposition
        if len(d.members) != d.n_members:
            raise ValueError(
                f"the decomposition of {d.source_model} {d.source_feature} lists "
                f"{len(d.members)} of its {d.n_members} members; record the whole decomposition "
                "(FeatureMatcher.find_decomposition), not one cut for display"
            )
        if "relation" not in pair_scores:
            raise ValueError(
                f"pair_scores has no 'relation' (keys: {sorted(pair_scores)}); pass "
                f"FeatureMatcher.score_all({d.source_feature}) of the decomposed feature"
            )
        n_targets = len(pair_scores["relation"])
        for m in d.members:
            if not 0 <= m.feature < n_targets:
                raise ValueError(
                    f"member {d.target_model} {m.feature} is out of range for pair_scores of "
                    f"length {n_targets}; pass FeatureMatcher.score_all({d.source_feature})"
                )
        now = utc_now()
        links = [
            CrossModelLink(
                source_model=d.source_model,
                source_feature=d.source_feature,
                target_model=d.target_model,
                target_feature=m.feature,
                relation=str(pair_scores["relation"][m.feature]),
                scores={
                    **{
                        name: _finite(pair_scores[name][m.feature])
                        for name in LINK_SCORE_FIELDS
                        if name in pair_scores
                    },
                    "weight": m.weight,
                },
                recorded_by=recorded_by,
                recorded_at=now,
            )
            for m in d.members
        ]
        finding = Finding(
            model_type=d.source_model,
            feature_id=d.source_feature,
            kind="decomposition",
            target_model=d.target_model,
            summary=_decomposition_summary(d),
            decomposition=d,
            recorded_by=recorded_by,
            recorded_at=now,
        )
        return self._write(lambda conn: insert_finding(conn, finding, links))

    def record_no_counterpart(self, report: MatchReport, *, recorded_by: str) -> Finding:
        """Record "no counterpart found" on a report's source feature: its verdict (``novel``,
        ``unique`` or ``dead``), the rule, and the best candidate it was not linked to. No link
        is written.

        ``ValueError`` if the report has no verdict (``MatchOptions(verdict=False)``) or its
        verdict has a counterpart (record that with :meth:`record_link_from_report`).
        """
        v = report.verdict
        me = f"{report.source_model} feature {report.source_feature}"
        if v is None:
            raise ValueError(
                f"the report on {me} has no verdict (MatchOptions(verdict=False)); a "
                "'no counterpart' finding records the verdict's evidence"
            )
        if not report.is_unique:
            raise ValueError(
                f"the verdict of {me} is {v.label!r}, which has a counterpart in "
                f"{report.target_model}; record its pairs with record_link_from_report"
            )
        scored = [m for m in report.matches if m.activation_correlation is not None]
        best = max(scored, key=lambda m: (m.activation_correlation, -m.rank)) if scored else None
        evidence = NoCounterpart(
            verdict_label=v.label,
            rule=v.rule,
            best_candidate=None if best is None else best.target_feature,
            best_candidate_correlation=None if best is None else best.activation_correlation,
            best_candidate_score=None if best is None else best.combined_score,
            best_candidate_relation=None if best is None else best.relation,
            best_correlation=report.best_correlation,
            best_nesting=v.best_nesting,
            error_ratio=v.error_ratio,
            confidence=v.confidence,
            n_candidates_tested=report.n_candidates_tested,
        )
        if best is None:
            shown = "no listed candidate has a defined correlation"
        else:
            shown = (
                f"best candidate {report.target_model} {best.target_feature} "
                f"(r = {best.activation_correlation:.3f}, {best.relation})"
            )
        finding = Finding(
            model_type=report.source_model,
            feature_id=report.source_feature,
            kind="no_counterpart",
            target_model=report.target_model,
            summary=f"no {report.target_model} counterpart: verdict {v.label}; {shown}",
            no_counterpart=evidence,
            recorded_by=recorded_by,
        )
        return self._write(lambda conn: insert_finding(conn, finding))

    def findings(
        self, model: str | None = None, feature: int | None = None, *, kind: str | None = None
    ) -> list[Finding]:
        """Findings about ``model``/``feature`` (their subject, not their members), oldest first."""
        where, params = [], []
        if model is not None:
            check_model(model)
            where.append("model_type = ?")
            params.append(model)
        if feature is not None:
            where.append("feature_id = ?")
            params.append(check_feature(feature))
        if kind is not None:
            if kind not in FINDING_KINDS:
                raise ValueError(
                    f"finding kind {kind!r} is not known; expected one of {list(FINDING_KINDS)}"
                )
            where.append("kind = ?")
            params.append(kind)
        sql = FINDING_SELECT + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        return self._read(
            lambda conn: [finding_from_row(conn, r) for r in conn.execute(sql, params).fetchall()]
        )

    def count_links(self, model: str | None = None, feature: int | None = None) -> int:
        """How many links :meth:`links` would return without a limit."""
        if model is not None:
            check_model(model)
        if feature is not None:
            feature = check_feature(feature)
        clauses, params = side_filter(model, feature)
        sql = "SELECT COUNT(*) FROM links" + (f" WHERE {clauses}" if clauses else "")
        return int(self._read(lambda conn: conn.execute(sql, params).fetchone()[0]))

    # features
    def features(self) -> list[tuple[str, int]]:
        """``(model_type, feature_id)`` of every feature with recorded state, sorted."""
        rows = self._read(
            lambda conn: conn.execute(
                "SELECT model_type, feature_id FROM features ORDER BY model_type, feature_id"
            ).fetchall()
        )
        return [(m, int(f)) for m, f in rows]

    def labels(self, model_type: str) -> dict[int, tuple[str, str | None]]:
        """Every labelled feature of ``model_type``: feature id -> (label, its provenance or
        None), in id order."""
        check_model(model_type)
        rows = self._read(
            lambda conn: conn.execute(
                "SELECT feature_id, label, label_provenance FROM features "
                "WHERE model_type = ? AND label IS NOT NULL ORDER BY feature_id",
                (model_type,),
            ).fetchall()
        )
        return {int(f): (label, provenance) for f, label, provenance in rows}

    def feature_state(self, feature_id: int, model_type: str) -> FeatureState:
        """Everything about one feature (an empty state if nothing was recorded)."""
        check_model(model_type)
        feature_id = check_feature(feature_id)
        return self._read(lambda conn: load_state(conn, feature_id, model_type))

    def manager(self, feature_id: int, model_type: str) -> ResearchStateManager:
        """A :class:`ResearchStateManager` for one feature on this store."""
        return ResearchStateManager(feature_id, model_type, store=self)

    # export / import
    def export_json(self) -> dict[str, Any]:
        """The whole store as one JSON-ready dict: ``schema_version``, ``exported_at``,
        ``features`` (each a FeatureState without its links) and ``links``."""

        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            keys = conn.execute(
                "SELECT model_type, feature_id FROM features ORDER BY model_type, feature_id"
            ).fetchall()
            states = [
                load_state(conn, int(f), m, with_links=False).model_dump(
                    mode="json", exclude={"links"}
                )
                for m, f in keys
            ]
            rows = conn.execute(f"SELECT {link_select()} FROM links ORDER BY id").fetchall()
            return {
                "schema_version": SCHEMA_VERSION,
                "exported_at": dump_time(utc_now()),
                "features": states,
                "links": [link_from_row(r).model_dump(mode="json") for r in rows],
            }

        return self._read(read)

    def export_markdown(self, feature_id: int, model_type: str) -> str:
        """One feature's state as a Markdown page."""
        return self.feature_state(feature_id, model_type).to_markdown()

    def import_upstream_state(
        self, source: str | Path | Mapping[str, Any], *, replace: bool = False
    ) -> FeatureState:
        """Import one upstream SplatNLP per-feature state (``feature_<id>_<model>.json``).

        Parameters
        ----------
        source : path or dict
            The JSON file, or its parsed content.
        replace : bool
            Overwrite the feature's existing state (links, findings and their history entries
            are kept). Without it, a feature that already has hypotheses, evidence or other
            history here is refused.

        Returns the imported state as stored. Malformed input raises ``ValueError`` naming the
        field (``hypotheses[1].id``); nothing is written then.
        """
        state = load_upstream_state(source)
        name = str(source) if isinstance(source, (str, Path)) else "dict"

        def write(conn: sqlite3.Connection) -> None:
            key = (state.model_type, state.feature_id)
            existing = conn.execute(
                "SELECT (SELECT COUNT(*) FROM hypotheses WHERE model_type = ? AND feature_id = ?),"
                " (SELECT COUNT(*) FROM evidence WHERE model_type = ? AND feature_id = ?),"
                " (SELECT COUNT(*) FROM history WHERE model_type = ? AND feature_id = ?"
                f" AND action NOT IN {_KEPT_HISTORY})",
                key * 3,
            ).fetchone()
            if any(existing) and not replace:
                raise ValueError(
                    f"{state.model_type} feature {state.feature_id} already has research state in "
                    f"{str(self.path)!r} ({existing[0]} hypotheses, {existing[1]} evidence, "
                    f"{existing[2]} history entries); pass replace=True (CLI: --replace) to "
                    "overwrite it"
                )
            # The kept history and findings point at the features row, which is replaced: check
            # those foreign keys at COMMIT, when the new row is there (reset after the transaction).
            conn.execute("PRAGMA defer_foreign_keys = ON")
            for table in ("hypothesis_evidence", "hypotheses", "evidence", "features"):
                conn.execute(f"DELETE FROM {table} WHERE model_type = ? AND feature_id = ?", key)
            conn.execute(
                "DELETE FROM history WHERE model_type = ? AND feature_id = ? "
                f"AND action NOT IN {_KEPT_HISTORY}",
                key,
            )
            insert_state(conn, state)
            append_history(
                conn,
                state.model_type,
                state.feature_id,
                "imported_upstream",
                f"imported {len(state.hypotheses)} hypotheses and {len(state.evidence)} evidence "
                f"items from {name}",
            )

        self._write(write)
        return self.feature_state(state.feature_id, state.model_type)


_KEPT_HISTORY = "('link_recorded', 'finding_recorded')"
"""History actions that an upstream import keeps, with the links and findings they describe."""


# -- one feature -----------------------------------------------------------------------------
class ResearchStateManager:
    """Read and change the research state of one feature (upstream SplatNLP's interface).

    Parameters
    ----------
    feature_id : int
        The feature (>= 0).
    model_type : {"full", "ultra"}
    store : ResearchStore, optional
        The store to use; default: open :func:`store_path` (closed again by :meth:`close`).

    Every mutating method is one transaction that also appends a history entry.
    """

    def __init__(self, feature_id: int, model_type: str, *, store: ResearchStore | None = None):
        check_model(model_type)
        self.feature_id = check_feature(feature_id)
        self.model_type = model_type
        self._owns_store = store is None
        self.store = store if store is not None else ResearchStore()

    def close(self) -> None:
        """Close the store if this manager opened it."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> ResearchStateManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResearchStateManager({self.feature_id}, {self.model_type!r}, store={self.store!r})"

    @property
    def _key(self) -> tuple[str, int]:
        return self.model_type, self.feature_id

    def _touch(self, conn: sqlite3.Connection) -> None:
        touch_feature(conn, *self._key)

    def state(self) -> FeatureState:
        """Everything recorded about this feature, links from both sides included."""
        return self.store.feature_state(self.feature_id, self.model_type)

    def to_markdown(self) -> str:
        """The state as a Markdown page."""
        return self.state().to_markdown()

    def set_label(self, label: str | None, *, provenance: str | None = None) -> None:
        """Set (or with None, clear) the feature's label.

        ``provenance`` says where the label came from when it was not chosen by hand (a label
        transfer: ``from ultra 5127, r = 0.73, equivalent``); it is stored beside the label
        (``FeatureState.label_provenance``) and in the history entry, and a label set without
        one clears it.
        """
        if label is not None:
            label = TypeAdapter(NonEmptyStr).validate_python(label)
        if provenance is not None:
            provenance = TypeAdapter(NonEmptyStr).validate_python(provenance)

        def write(conn: sqlite3.Connection) -> None:
            self._touch(conn)
            conn.execute(
                "UPDATE features SET label = ?, label_provenance = ? "
                "WHERE model_type = ? AND feature_id = ?",
                (label, provenance, *self._key),
            )
            detail = f"label: {label!r}" + (f" ({provenance})" if provenance else "")
            append_history(conn, *self._key, "label_set", detail)

        self.store._write(write)

    def add_hypothesis(
        self,
        statement: str,
        *,
        confidence: float = 0.5,
        status: str = "proposed",
        tags: Iterable[str] = (),
        parent: str | None = None,
    ) -> Hypothesis:
        """Add a hypothesis with the next free id (``h001``, ``h002`` ...); returns it."""
        # Validate with a placeholder id first, so nothing is written for a bad record.
        draft = Hypothesis(
            id="h000",
            statement=statement,
            confidence=confidence,
            status=status,  # type: ignore[arg-type]
            tags=list(tags),
            parent_hypothesis=parent,
        )

        def write(conn: sqlite3.Connection) -> Hypothesis:
            if parent is not None:
                self._require_hypothesis(conn, parent)
            hypothesis = draft.model_copy(
                update={"id": next_id(conn, "hypotheses", "h", self._key)}
            )
            self._touch(conn)
            insert_hypothesis(conn, self.model_type, self.feature_id, hypothesis)
            append_history(
                conn, *self._key, "hypothesis_added", f"{hypothesis.id}: {hypothesis.statement}"
            )
            return hypothesis

        return self.store._write(write)

    def update_hypothesis(
        self,
        hid: str,
        *,
        status: str | None = None,
        confidence: float | None = None,
        add_supporting: Iterable[str] = (),
        add_refuting: Iterable[str] = (),
        add_tags: Iterable[str] = (),
    ) -> Hypothesis:
        """Change a hypothesis's status or confidence, or attach evidence ids; returns it.

        Evidence ids must name this feature's evidence (``KeyError`` otherwise); an unknown
        hypothesis is a ``KeyError`` too.
        """
        hid = valid_id(hid, "hypothesis id", HypothesisId, "h001")
        supporting = [valid_id(e, "evidence id", EvidenceId, "e001") for e in add_supporting]
        refuting = [valid_id(e, "evidence id", EvidenceId, "e001") for e in add_refuting]
        add_tags = list(add_tags)

        def write(conn: sqlite3.Connection) -> Hypothesis:
            current = self._require_hypothesis(conn, hid)
            known = {
                r[0]
                for r in conn.execute(
                    "SELECT id FROM evidence WHERE model_type = ? AND feature_id = ?", self._key
                )
            }
            for eid in supporting + refuting:
                if eid not in known:
                    raise KeyError(
                        f"no evidence {eid!r} for {self.model_type} feature {self.feature_id}; "
                        f"known: {sorted(known)}; add it first with add_evidence"
                    )
            changes = current.model_dump()
            if status is not None:
                changes["status"] = status
            if confidence is not None:
                changes["confidence"] = confidence
            changes["supporting_evidence"] = ordered_union(current.supporting_evidence, supporting)
            changes["refuting_evidence"] = ordered_union(current.refuting_evidence, refuting)
            changes["tags"] = ordered_union(current.tags, add_tags)
            changes["updated_at"] = utc_now()
            updated = Hypothesis.model_validate(changes)
            conn.execute(
                "UPDATE hypotheses SET status = ?, confidence = ?, tags = ?, updated_at = ? "
                "WHERE model_type = ? AND feature_id = ? AND id = ?",
                (
                    updated.status,
                    updated.confidence,
                    json.dumps(updated.tags),
                    dump_time(updated.updated_at),
                    *self._key,
                    hid,
                ),
            )
            link_evidence(conn, self.model_type, self.feature_id, hid, supporting, "supporting")
            link_evidence(conn, self.model_type, self.feature_id, hid, refuting, "refuting")
            self._touch(conn)
            parts = [f"status={updated.status}"] if status is not None else []
            parts += [f"confidence={updated.confidence:.2f}"] if confidence is not None else []
            parts += [f"+supporting {e}" for e in supporting] + [f"+refuting {e}" for e in refuting]
            parts += [f"+tag {t}" for t in add_tags]
            append_history(
                conn, *self._key, "hypothesis_updated", f"{hid}: {', '.join(parts) or 'touched'}"
            )
            return updated

        return self.store._write(write)

    def supersede_hypothesis(
        self, hid: str, statement: str, *, confidence: float = 0.5
    ) -> Hypothesis:
        """Mark ``hid`` superseded and add a refined hypothesis pointing back to it."""
        hid = valid_id(hid, "hypothesis id", HypothesisId, "h001")
        with self.store.transaction():
            old = self.update_hypothesis(hid, status="superseded")
            new = self.add_hypothesis(statement, confidence=confidence, tags=old.tags, parent=hid)
            self.store._write(
                lambda conn: append_history(
                    conn, *self._key, "hypothesis_superseded", f"{hid} -> {new.id}"
                )
            )
        return new

    def add_evidence(
        self,
        experiment_id: str,
        summary: str,
        *,
        strength: str,
        result_path: str | None = None,
        key_metrics: Mapping[str, float] | None = None,
        supports: Iterable[str] = (),
        refutes: Iterable[str] = (),
    ) -> Evidence:
        """Add an evidence item with the next free id (``e001`` ...); returns it.

        ``supports`` / ``refutes`` name hypotheses of this feature that the evidence bears on;
        their ``supporting_evidence`` / ``refuting_evidence`` gain the new id.
        """
        draft = Evidence(
            id="e000",
            experiment_id=experiment_id,
            summary=summary,
            strength=strength,  # type: ignore[arg-type]
            result_path=result_path,
            key_metrics=dict(key_metrics or {}),
        )
        supports = [valid_id(h, "hypothesis id", HypothesisId, "h001") for h in supports]
        refutes = [valid_id(h, "hypothesis id", HypothesisId, "h001") for h in refutes]

        def write(conn: sqlite3.Connection) -> Evidence:
            for hid in supports + refutes:
                self._require_hypothesis(conn, hid)
            evidence = draft.model_copy(update={"id": next_id(conn, "evidence", "e", self._key)})
            self._touch(conn)
            insert_evidence(conn, self.model_type, self.feature_id, evidence)
            for hid in supports:
                link_evidence(
                    conn, self.model_type, self.feature_id, hid, [evidence.id], "supporting"
                )
            for hid in refutes:
                link_evidence(
                    conn, self.model_type, self.feature_id, hid, [evidence.id], "refuting"
                )
            append_history(
                conn,
                *self._key,
                "evidence_added",
                f"{evidence.id} ({evidence.strength}) from {evidence.experiment_id}: {evidence.summary}",
            )
            return evidence

        return self.store._write(write)

    def add_pitfall(self, pitfall: str) -> None:
        """Remember a trap to avoid (a repeated pitfall is kept once)."""
        pitfall = TypeAdapter(NonEmptyStr).validate_python(pitfall)

        def write(conn: sqlite3.Connection) -> None:
            self._touch(conn)
            (raw,) = conn.execute(
                "SELECT known_pitfalls FROM features WHERE model_type = ? AND feature_id = ?",
                self._key,
            ).fetchone()
            pitfalls = json.loads(raw)
            if pitfall not in pitfalls:
                pitfalls.append(pitfall)
                conn.execute(
                    "UPDATE features SET known_pitfalls = ? WHERE model_type = ? AND feature_id = ?",
                    (json.dumps(pitfalls), *self._key),
                )
            append_history(conn, *self._key, "pitfall_added", pitfall)

        self.store._write(write)

    def add_note(self, text: str) -> None:
        """Append a paragraph to the feature's notes."""
        text = TypeAdapter(NonEmptyStr).validate_python(text)

        def write(conn: sqlite3.Connection) -> None:
            self._touch(conn)
            conn.execute(
                "UPDATE features SET notes = CASE WHEN notes = '' THEN ? ELSE notes || ? END "
                "WHERE model_type = ? AND feature_id = ?",
                (text, "\n\n" + text, *self._key),
            )
            append_history(conn, *self._key, "note_added", text[:200])

        self.store._write(write)

    def _require_hypothesis(self, conn: sqlite3.Connection, hid: str) -> Hypothesis:
        for h in load_hypotheses(conn, self.model_type, self.feature_id):
            if h.id == hid:
                return h
        known = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM hypotheses WHERE model_type = ? AND feature_id = ? ORDER BY id",
                self._key,
            )
        ]
        raise KeyError(
            f"no hypothesis {hid!r} for {self.model_type} feature {self.feature_id}; known: {known}"
        )


__all__ = ["ResearchStateManager", "ResearchStore"]
