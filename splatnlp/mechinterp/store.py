"""The research-state store: hypotheses, evidence, notes and cross-model links in one SQLite file.

One embedded database (``sqlite3`` from the standard library, WAL mode) holds what has been learnt
about each feature and every recorded Full ↔ Ultra link. Several processes (agents, notebooks,
the CLI) may read and write it at once: every write is one ``BEGIN IMMEDIATE`` … ``COMMIT``
transaction, so a writer killed half-way leaves nothing behind, and writers queue for the lock
(``busy_timeout``) instead of failing.

Where the file lives (first that is set):

=========================  ===============================================================
``$SPLATNLP_STORE``        the database file
config ``store_path``      the database file named in the config file
default                    ``<data dir>/research_state.sqlite`` (data dir: ``$SPLATNLP_HOME``)
=========================  ===============================================================

Two levels of API:

* :class:`ResearchStateManager`: one feature (upstream's interface): ``add_hypothesis``,
  ``update_hypothesis``, ``add_evidence``, ``set_label``, ``add_pitfall``, ``add_note``,
  ``state()``, ``to_markdown()``. Every mutating call also appends a :class:`HistoryEntry`, in the
  same transaction.
* :class:`ResearchStore`: the file: links (``record_link``, ``record_link_from_report``,
  ``links``), ``feature_state``, exports, and ``import_upstream_state`` for upstream SplatNLP's
  per-feature JSON files.

Records are pydantic models validated before anything is written; an invalid one raises
``pydantic.ValidationError`` (a ``ValueError``) naming the field, and the store is unchanged.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from splatnlp.mechinterp.analysis.reports import PAIR_METRICS, Relation
from splatnlp.mechinterp.config import data_dir, load_config

if TYPE_CHECKING:
    from splatnlp.mechinterp.analysis.reports import MatchReport

ENV_STORE = "SPLATNLP_STORE"
DEFAULT_STORE_NAME = "research_state.sqlite"
BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another writer's lock before giving up."""

ModelType = Literal["full", "ultra"]
MODEL_TYPES: tuple[str, ...] = ("full", "ultra")
HypothesisStatus = Literal["proposed", "testing", "supported", "refuted", "superseded"]
HYPOTHESIS_STATUSES: tuple[str, ...] = ("proposed", "testing", "supported", "refuted", "superseded")
EvidenceStrength = Literal["strong", "moderate", "weak"]
EVIDENCE_STRENGTHS: tuple[str, ...] = ("strong", "moderate", "weak")

HypothesisId = Annotated[str, StringConstraints(pattern=r"^h\d{3,}$")]
EvidenceId = Annotated[str, StringConstraints(pattern=r"^e\d{3,}$")]
NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
UTCDatetime = Annotated[AwareDatetime, AfterValidator(lambda d: d.astimezone(timezone.utc))]
"""A timezone-aware datetime, converted to UTC (naive datetimes are refused: ambiguous)."""

# The metrics of a FeatureMatch that a link keeps as its scores.
LINK_SCORE_FIELDS: tuple[str, ...] = (*PAIR_METRICS, "combined_score", "p_value")

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- records ---------------------------------------------------------------------------------
class Hypothesis(BaseModel):
    """A statement about what a feature does, with its status and the evidence for and against."""

    model_config = ConfigDict(extra="forbid")

    id: HypothesisId
    """``h`` and at least three digits (``h001``), unique within the feature."""
    statement: NonEmptyStr
    """What the feature is claimed to do."""
    status: HypothesisStatus = "proposed"
    """``proposed``, ``testing``, ``supported``, ``refuted`` or ``superseded``."""
    confidence: float = Field(0.5, ge=0.0, le=1.0, allow_inf_nan=False)
    """Belief in the statement, in [0, 1]."""
    supporting_evidence: list[EvidenceId] = []
    """Ids of this feature's evidence items that support the statement."""
    refuting_evidence: list[EvidenceId] = []
    """Ids of this feature's evidence items that refute it."""
    parent_hypothesis: HypothesisId | None = None
    """The hypothesis this one refines or supersedes."""
    tags: list[NonEmptyStr] = []
    """Free labels (``family-specific``, ``needs-ablation``)."""
    created_at: UTCDatetime = Field(default_factory=_now)
    updated_at: UTCDatetime = Field(default_factory=_now)


class Evidence(BaseModel):
    """The outcome of one experiment on a feature."""

    model_config = ConfigDict(extra="forbid")

    id: EvidenceId
    """``e`` and at least three digits (``e001``), unique within the feature."""
    experiment_id: NonEmptyStr
    """What produced it (an experiment spec id, ``match``, a notebook name)."""
    result_path: str | None = None
    """Where the full result lives, if anywhere."""
    summary: NonEmptyStr
    """What was found, in a sentence."""
    strength: EvidenceStrength
    """``strong`` (clear, reproducible), ``moderate`` (consistent but noisy) or ``weak``."""
    key_metrics: dict[str, FiniteFloat] = {}
    """The numbers that matter (finite; leave out what could not be computed)."""
    created_at: UTCDatetime = Field(default_factory=_now)


class HistoryEntry(BaseModel):
    """One line of a feature's research log."""

    model_config = ConfigDict(extra="forbid")

    at: UTCDatetime = Field(default_factory=_now)
    """When (UTC)."""
    action: NonEmptyStr
    """``label_set``, ``hypothesis_added``, ``hypothesis_updated``, ``evidence_added`` ..."""
    detail: str = ""
    """What changed, for people."""


class CrossModelLink(BaseModel):
    """A recorded correspondence between a Full feature and an Ultra feature."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = None
    """Assigned by the store when recorded; None before."""
    source_model: ModelType
    """The model of the feature that was matched (``full`` or ``ultra``)."""
    source_feature: int = Field(ge=0)
    target_model: ModelType
    """The other model."""
    target_feature: int = Field(ge=0)
    relation: Relation
    """One of ``analysis.reports.RELATIONS``."""
    scores: dict[str, FiniteFloat | None] = {}
    """Metrics of the match (``activation_correlation``, ``combined_score``, ``p_value`` ...);
    None where the metric is undefined, never a made-up number."""
    report: dict[str, Any] | None = None
    """The full ``MatchReport`` as JSON, when the link came from one."""
    recorded_by: NonEmptyStr
    """Who recorded it (an agent name, a user, ``cli``)."""
    recorded_at: UTCDatetime = Field(default_factory=_now)
    """When (UTC)."""

    @model_validator(mode="after")
    def _two_models(self) -> CrossModelLink:
        if self.source_model == self.target_model:
            raise ValueError(
                f"source_model and target_model are both {self.source_model!r}; "
                "a link joins a 'full' feature and an 'ultra' feature"
            )
        return self


class FeatureState(BaseModel):
    """Everything the store holds about one feature."""

    model_config = ConfigDict(extra="forbid")

    feature_id: int = Field(ge=0)
    model_type: ModelType
    label: str | None = None
    """A short human label, once one is chosen."""
    hypotheses: list[Hypothesis] = []
    """In id order."""
    evidence: list[Evidence] = []
    """In id order."""
    active_constraints: list[str] = []
    """Domain constraints in force (upstream's ``active_constraints``)."""
    known_pitfalls: list[str] = []
    """Traps to avoid when studying this feature."""
    history: list[HistoryEntry] = []
    """Oldest first."""
    notes: str = ""
    """Free-form notes; ``add_note`` appends paragraphs."""
    links: list[CrossModelLink] = []
    """Recorded links where this feature is the source or the target."""
    created_at: UTCDatetime | None = None
    """When the store first recorded something about the feature; None if it never did."""
    updated_at: UTCDatetime | None = None

    def hypothesis(self, hid: str) -> Hypothesis:
        """The hypothesis ``hid``; ``KeyError`` naming the known ids if absent."""
        for h in self.hypotheses:
            if h.id == hid:
                return h
        raise KeyError(
            f"no hypothesis {hid!r} for {self.model_type} feature {self.feature_id}; "
            f"known: {[h.id for h in self.hypotheses]}"
        )

    def to_markdown(self) -> str:
        """A Markdown page: label, hypotheses, evidence, links, pitfalls, notes, history."""
        return _state_markdown(self)


class StoreVersionError(ValueError):
    """The database was written by a newer version of this package."""


# -- location --------------------------------------------------------------------------------
def store_path() -> Path:
    """The database file: ``$SPLATNLP_STORE``, else the config's ``store_path``, else
    ``<data dir>/research_state.sqlite``."""
    env = os.environ.get(ENV_STORE)
    if env:
        return Path(env).expanduser()
    configured = load_config().store_path
    return configured if configured is not None else data_dir() / DEFAULT_STORE_NAME


# -- schema and migrations -------------------------------------------------------------------
# Version 0 is the baseline layout. Every database, fresh or old, is brought to the current
# version by the same ordered migrations, so a fresh store and a migrated one cannot drift apart.
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


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_migrate_0_to_1,)
"""``MIGRATIONS[v]`` upgrades a database from version ``v`` to ``v + 1``, inside the caller's
transaction (SQLite's DDL is transactional: a failed migration leaves the old version intact)."""
SCHEMA_VERSION = len(MIGRATIONS)
"""The version this code writes; 1."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _dump_time(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


# -- the store -------------------------------------------------------------------------------
class ResearchStore:
    """An open research-state database.

    Parameters
    ----------
    path : str or Path, optional
        The database file; default :func:`store_path`. Created (with its folder) if absent.
    busy_timeout_s : float
        How long a write waits for another process's write lock before ``TimeoutError``.

    One connection per instance; use an instance from one thread only. Open one per process.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | Path | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path).expanduser() if path is not None else store_path()
        self.busy_timeout_s = busy_timeout_s
        self._depth = 0  # > 0 inside transaction(): writes join the open transaction
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE.
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ValueError(
                f"cannot open the research store {str(self.path)!r}: {exc}; set "
                f"${ENV_STORE} or store_path in the config file to a writable file"
            ) from exc
        try:
            self._configure()
            self._ensure_schema()
        except BaseException:
            self._conn.close()
            raise

    # connection set-up
    def _configure(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        try:
            mode = self._retrying(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise ValueError(
                f"{str(self.path)!r} is not a research store (not a SQLite database: {exc})"
            ) from exc
        if str(mode).lower() != "wal":
            # Some network file systems cannot hold the WAL index; transactions stay correct.
            warnings.warn(
                f"the research store {str(self.path)!r} could not use WAL mode (got {mode!r}); "
                "concurrent readers will wait for writers",
                stacklevel=3,
            )
        # FULL, not NORMAL: with NORMAL a WAL commit survives a crashed process but may be lost
        # on power failure. Writes here are few and small (one per hypothesis or link), so an
        # fsync per commit costs little, and "committed" then means on disk.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")

    def _read_version(self) -> int | None:
        tables = {
            r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if "schema_meta" not in tables:
            if tables - {"sqlite_sequence"}:
                raise ValueError(
                    f"{str(self.path)!r} is a SQLite database but not a research store "
                    f"(no schema_meta table; tables: {sorted(tables)}); point ${ENV_STORE} "
                    "at another file"
                )
            return None
        row = self._conn.execute(
            "SELECT value FROM schema_meta WHERE key = 'schema_version'"
        ).fetchone()
        try:
            return int(row[0])
        except (TypeError, ValueError):
            raise ValueError(
                f"the research store {str(self.path)!r} has an unreadable schema_version "
                f"{None if row is None else row[0]!r}; expected an integer"
            ) from None

    def _check_not_newer(self, version: int | None) -> None:
        if version is not None and version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"the research store {str(self.path)!r} has schema version {version}, but this "
                f"splatnlp-mechinterp reads versions up to {SCHEMA_VERSION}; upgrade the package, "
                f"or point ${ENV_STORE} at another file"
            )

    def _ensure_schema(self) -> None:
        version = self._retrying(self._read_version)
        self._check_not_newer(version)
        if version == SCHEMA_VERSION:
            return

        def upgrade(conn: sqlite3.Connection) -> None:
            # Read again under the write lock: another process may have upgraded meanwhile.
            current = self._read_version()
            self._check_not_newer(current)
            if current is None:
                for statement in _BASELINE_V0:
                    conn.execute(statement)
                current = 0
            for v in range(current, SCHEMA_VERSION):
                MIGRATIONS[v](conn)
                conn.execute(
                    "UPDATE schema_meta SET value = ? WHERE key = 'schema_version'", (str(v + 1),)
                )

        self._write(upgrade)

    @property
    def schema_version(self) -> int:
        """The version of the open database (always :data:`SCHEMA_VERSION` once opened)."""
        version = self._read_version()
        return -1 if version is None else version

    # transactions
    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt``, again while SQLite says the database is locked, for busy_timeout_s."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.005
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"the research store {str(self.path)!r} stayed locked by another writer "
                        f"for {self.busy_timeout_s:g} s ({exc}); retry, or look for a stuck process"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction (or in the open :meth:`transaction`)."""
        if self._depth:
            return fn(self._conn)

        def attempt() -> T:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            return result

        return self._retrying(attempt)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on one consistent snapshot (a read transaction)."""
        if self._depth:
            return fn(self._conn)

        def attempt() -> T:
            self._conn.execute("BEGIN")
            try:
                return fn(self._conn)
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")

        return self._retrying(attempt)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[ResearchStore]:
        """Group several writes into one transaction: all are committed, or none.

        ``with store.transaction(): store.record_link(a); store.record_link(b)``
        """
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self._retrying(lambda: self._conn.execute("BEGIN IMMEDIATE"))
        self._depth = 1
        try:
            yield self
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def __enter__(self) -> ResearchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResearchStore({str(self.path)!r})"

    # links
    def record_link(self, link: CrossModelLink | Mapping[str, Any]) -> int:
        """Validate and store one link; returns the id the store gave it (``link.id`` is ignored)."""
        link = link if isinstance(link, CrossModelLink) else CrossModelLink.model_validate(link)

        def insert(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO links (source_model, source_feature, target_model, target_feature, "
                "relation, scores, report, recorded_by, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    link.source_model,
                    link.source_feature,
                    link.target_model,
                    link.target_feature,
                    link.relation,
                    json.dumps(link.scores),
                    None if link.report is None else json.dumps(link.report),
                    link.recorded_by,
                    _dump_time(link.recorded_at),
                ),
            )
            return int(cur.lastrowid)

        return self._write(insert)

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
            _check_model(model)
        if feature is not None:
            feature = _check_feature(feature)
        if limit is not None and limit < 0:
            raise ValueError(f"limit {limit} is negative; expected a count >= 0")
        clauses, params = _side_filter(model, feature)
        sql = (
            "SELECT id, source_model, source_feature, target_model, target_feature, relation, "
            f"scores, {'report' if with_report else 'NULL'}, recorded_by, recorded_at FROM links"
            + (f" WHERE {clauses}" if clauses else "")
            + " ORDER BY id"
            + (f" LIMIT {int(limit)}" if limit is not None else "")
        )
        rows = self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [_link_from_row(r) for r in rows]

    def count_links(self, model: str | None = None, feature: int | None = None) -> int:
        """How many links :meth:`links` would return without a limit."""
        if model is not None:
            _check_model(model)
        if feature is not None:
            feature = _check_feature(feature)
        clauses, params = _side_filter(model, feature)
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

    def feature_state(self, feature_id: int, model_type: str) -> FeatureState:
        """Everything about one feature (an empty state if nothing was recorded)."""
        _check_model(model_type)
        feature_id = _check_feature(feature_id)
        return self._read(lambda conn: _load_state(conn, feature_id, model_type))

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
                _load_state(conn, int(f), m, with_links=False).model_dump(
                    mode="json", exclude={"links"}
                )
                for m, f in keys
            ]
            rows = conn.execute(
                "SELECT id, source_model, source_feature, target_model, target_feature, "
                "relation, scores, report, recorded_by, recorded_at FROM links ORDER BY id"
            ).fetchall()
            return {
                "schema_version": SCHEMA_VERSION,
                "exported_at": _dump_time(_now()),
                "features": states,
                "links": [_link_from_row(r).model_dump(mode="json") for r in rows],
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
            Overwrite the feature's existing state (links are kept). Without it, a feature that
            already has hypotheses, evidence or history here is refused.

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
                " (SELECT COUNT(*) FROM history WHERE model_type = ? AND feature_id = ?)",
                key * 3,
            ).fetchone()
            if any(existing) and not replace:
                raise ValueError(
                    f"{state.model_type} feature {state.feature_id} already has research state in "
                    f"{str(self.path)!r} ({existing[0]} hypotheses, {existing[1]} evidence, "
                    f"{existing[2]} history entries); pass replace=True (CLI: --replace) to "
                    "overwrite it"
                )
            for table in ("hypothesis_evidence", "hypotheses", "evidence", "history", "features"):
                conn.execute(f"DELETE FROM {table} WHERE model_type = ? AND feature_id = ?", key)
            _insert_state(conn, state)
            _log(
                conn,
                state.model_type,
                state.feature_id,
                "imported_upstream",
                f"imported {len(state.hypotheses)} hypotheses and {len(state.evidence)} evidence "
                f"items from {name}",
            )

        self._write(write)
        return self.feature_state(state.feature_id, state.model_type)


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
        _check_model(model_type)
        self.feature_id = _check_feature(feature_id)
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
        now = _dump_time(_now())
        conn.execute(
            "INSERT INTO features (model_type, feature_id, created_at, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (model_type, feature_id) DO UPDATE SET updated_at = ?",
            (*self._key, now, now, now),
        )

    def state(self) -> FeatureState:
        """Everything recorded about this feature, links from both sides included."""
        return self.store.feature_state(self.feature_id, self.model_type)

    def to_markdown(self) -> str:
        """The state as a Markdown page."""
        return self.state().to_markdown()

    def set_label(self, label: str | None) -> None:
        """Set (or with None, clear) the feature's label."""
        if label is not None:
            label = TypeAdapter(NonEmptyStr).validate_python(label)

        def write(conn: sqlite3.Connection) -> None:
            self._touch(conn)
            conn.execute(
                "UPDATE features SET label = ? WHERE model_type = ? AND feature_id = ?",
                (label, *self._key),
            )
            _log(conn, *self._key, "label_set", f"label: {label!r}")

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
                update={"id": _next_id(conn, "hypotheses", "h", self._key)}
            )
            self._touch(conn)
            _insert_hypothesis(conn, self.model_type, self.feature_id, hypothesis)
            _log(conn, *self._key, "hypothesis_added", f"{hypothesis.id}: {hypothesis.statement}")
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
        hid = _valid_id(hid, "hypothesis id", HypothesisId, "h001")
        supporting = [_valid_id(e, "evidence id", EvidenceId, "e001") for e in add_supporting]
        refuting = [_valid_id(e, "evidence id", EvidenceId, "e001") for e in add_refuting]
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
            changes["supporting_evidence"] = _union(current.supporting_evidence, supporting)
            changes["refuting_evidence"] = _union(current.refuting_evidence, refuting)
            changes["tags"] = _union(current.tags, add_tags)
            changes["updated_at"] = _now()
            updated = Hypothesis.model_validate(changes)
            conn.execute(
                "UPDATE hypotheses SET status = ?, confidence = ?, tags = ?, updated_at = ? "
                "WHERE model_type = ? AND feature_id = ? AND id = ?",
                (
                    updated.status,
                    updated.confidence,
                    json.dumps(updated.tags),
                    _dump_time(updated.updated_at),
                    *self._key,
                    hid,
                ),
            )
            _link_evidence(conn, self.model_type, self.feature_id, hid, supporting, "supporting")
            _link_evidence(conn, self.model_type, self.feature_id, hid, refuting, "refuting")
            self._touch(conn)
            parts = [f"status={updated.status}"] if status is not None else []
            parts += [f"confidence={updated.confidence:.2f}"] if confidence is not None else []
            parts += [f"+supporting {e}" for e in supporting] + [f"+refuting {e}" for e in refuting]
            parts += [f"+tag {t}" for t in add_tags]
            _log(conn, *self._key, "hypothesis_updated", f"{hid}: {', '.join(parts) or 'touched'}")
            return updated

        return self.store._write(write)

    def supersede_hypothesis(
        self, hid: str, statement: str, *, confidence: float = 0.5
    ) -> Hypothesis:
        """Mark ``hid`` superseded and add a refined hypothesis pointing back to it."""
        hid = _valid_id(hid, "hypothesis id", HypothesisId, "h001")
        with self.store.transaction():
            old = self.update_hypothesis(hid, status="superseded")
            new = self.add_hypothesis(statement, confidence=confidence, tags=old.tags, parent=hid)
            self.store._write(
                lambda conn: _log(conn, *self._key, "hypothesis_superseded", f"{hid} -> {new.id}")
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
        supports = [_valid_id(h, "hypothesis id", HypothesisId, "h001") for h in supports]
        refutes = [_valid_id(h, "hypothesis id", HypothesisId, "h001") for h in refutes]

        def write(conn: sqlite3.Connection) -> Evidence:
            for hid in supports + refutes:
                self._require_hypothesis(conn, hid)
            evidence = draft.model_copy(update={"id": _next_id(conn, "evidence", "e", self._key)})
            self._touch(conn)
            _insert_evidence(conn, self.model_type, self.feature_id, evidence)
            for hid in supports:
                _link_evidence(
                    conn, self.model_type, self.feature_id, hid, [evidence.id], "supporting"
                )
            for hid in refutes:
                _link_evidence(
                    conn, self.model_type, self.feature_id, hid, [evidence.id], "refuting"
                )
            _log(
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
            _log(conn, *self._key, "pitfall_added", pitfall)

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
            _log(conn, *self._key, "note_added", text[:200])

        self.store._write(write)

    def _require_hypothesis(self, conn: sqlite3.Connection, hid: str) -> Hypothesis:
        for h in _load_hypotheses(conn, self.model_type, self.feature_id):
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


# -- upstream import -------------------------------------------------------------------------
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
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


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
                target[ref] = _union(target[ref], [e.id])

    now = _now()
    created = _as_utc(up.created_at, now)
    hypotheses = [
        Hypothesis(
            **h.model_dump(exclude={"supporting_evidence", "refuting_evidence", "created_at", "updated_at"}),
            supporting_evidence=supporting[h.id],
            refuting_evidence=refuting[h.id],
            created_at=_as_utc(h.created_at, created),
            updated_at=_as_utc(h.updated_at, _as_utc(h.created_at, created)),
        )
        for h in up.hypotheses
    ]
    evidence = [
        Evidence(
            **e.model_dump(exclude={"supports_hypotheses", "refutes_hypotheses", "created_at", "timestamp"}),
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


# -- rows <-> records ------------------------------------------------------------------------
def _check_model(model: str) -> None:
    if model not in MODEL_TYPES:
        raise ValueError(f"model {model!r} is not known; expected one of {list(MODEL_TYPES)}")


def _check_feature(feature: int) -> int:
    try:
        # operator.index accepts numpy integers and refuses floats and strings.
        value = operator.index(feature) if not isinstance(feature, bool) else -1
    except TypeError:
        value = -1
    if value < 0:
        raise ValueError(f"feature {feature!r} is not a feature id; expected an integer >= 0")
    return value


def _valid_id(value: str, what: str, kind: Any, example: str) -> str:
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError:
        letter = example[0]
        raise ValueError(
            f"{what} {value!r} is malformed; expected {letter!r} and at least three digits, "
            f"e.g. {example!r}"
        ) from None


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _union(old: Iterable[str], new: Iterable[str]) -> list[str]:
    out = list(old)
    for x in new:
        if x not in out:
            out.append(x)
    return out


def _side_filter(model: str | None, feature: int | None) -> tuple[str, list[Any]]:
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


def _log(
    conn: sqlite3.Connection, model_type: str, feature_id: int, action: str, detail: str
) -> None:
    conn.execute(
        "INSERT INTO history (model_type, feature_id, at, action, detail) VALUES (?, ?, ?, ?, ?)",
        (model_type, feature_id, _dump_time(_now()), action, detail),
    )


def _next_id(conn: sqlite3.Connection, table: str, letter: str, key: tuple[str, int]) -> str:
    # Runs under the write lock (BEGIN IMMEDIATE), so two writers cannot take the same number.
    (top,) = conn.execute(
        f"SELECT MAX(CAST(substr(id, 2) AS INTEGER)) FROM {table} "
        "WHERE model_type = ? AND feature_id = ?",
        key,
    ).fetchone()
    return f"{letter}{(top or 0) + 1:03d}"


def _insert_hypothesis(
    conn: sqlite3.Connection, model_type: str, feature_id: int, h: Hypothesis
) -> None:
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
            _dump_time(h.created_at),
            _dump_time(h.updated_at),
        ),
    )
    _link_evidence(conn, model_type, feature_id, h.id, h.supporting_evidence, "supporting")
    _link_evidence(conn, model_type, feature_id, h.id, h.refuting_evidence, "refuting")


def _insert_evidence(
    conn: sqlite3.Connection, model_type: str, feature_id: int, e: Evidence
) -> None:
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
            _dump_time(e.created_at),
        ),
    )


def _link_evidence(
    conn: sqlite3.Connection,
    model_type: str,
    feature_id: int,
    hid: str,
    eids: Iterable[str],
    role: str,
) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO hypothesis_evidence (model_type, feature_id, hypothesis_id, "
        "evidence_id, role) VALUES (?, ?, ?, ?, ?)",
        [(model_type, feature_id, hid, eid, role) for eid in eids],
    )


def _insert_state(conn: sqlite3.Connection, state: FeatureState) -> None:
    m, f = state.model_type, state.feature_id
    conn.execute(
        "INSERT INTO features (model_type, feature_id, label, notes, known_pitfalls, "
        "active_constraints, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            m,
            f,
            state.label,
            state.notes,
            json.dumps(state.known_pitfalls),
            json.dumps(state.active_constraints),
            _dump_time(state.created_at or _now()),
            _dump_time(state.updated_at or _now()),
        ),
    )
    # Evidence first: the hypotheses' evidence references point at it (foreign keys are on).
    for e in state.evidence:
        _insert_evidence(conn, m, f, e)
    for h in state.hypotheses:
        _insert_hypothesis(conn, m, f, h)
    conn.executemany(
        "INSERT INTO history (model_type, feature_id, at, action, detail) VALUES (?, ?, ?, ?, ?)",
        [(m, f, _dump_time(h.at), h.action, h.detail) for h in state.history],
    )


def _load_hypotheses(
    conn: sqlite3.Connection, model_type: str, feature_id: int
) -> list[Hypothesis]:
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


def _link_from_row(row: tuple[Any, ...]) -> CrossModelLink:
    lid, sm, sf, tm, tf, relation, scores, report, by, at = row
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
    )


def _load_state(
    conn: sqlite3.Connection, feature_id: int, model_type: str, *, with_links: bool = True
) -> FeatureState:
    key = (model_type, feature_id)
    row = conn.execute(
        "SELECT label, notes, known_pitfalls, active_constraints, created_at, updated_at "
        "FROM features WHERE model_type = ? AND feature_id = ?",
        key,
    ).fetchone()
    links: list[CrossModelLink] = []
    if with_links:
        clauses, params = _side_filter(model_type, feature_id)
        links = [
            _link_from_row(r)
            for r in conn.execute(
                "SELECT id, source_model, source_feature, target_model, target_feature, relation, "
                f"scores, report, recorded_by, recorded_at FROM links WHERE {clauses} ORDER BY id",
                params,
            )
        ]
    if row is None:
        return FeatureState(feature_id=feature_id, model_type=model_type, links=links)
    label, notes, pitfalls, constraints, created, updated = row
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
        hypotheses=_load_hypotheses(conn, model_type, feature_id),
        evidence=evidence,
        active_constraints=json.loads(constraints),
        known_pitfalls=json.loads(pitfalls),
        history=history,
        notes=notes,
        links=links,
        created_at=created,
        updated_at=updated,
    )


# -- Markdown --------------------------------------------------------------------------------
def _cell(text: object) -> str:
    # A '|' inside a cell would end it; newlines would end the row.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


def _state_markdown(s: FeatureState) -> str:
    out = [f"# {s.model_type} feature {s.feature_id}: {s.label or 'unlabeled'}", ""]
    if s.updated_at is not None:
        out += [f"_Last updated {s.updated_at:%Y-%m-%d %H:%M} UTC._", ""]
    out += ["## Hypotheses", ""]
    if s.hypotheses:
        out += [
            "| id | status | confidence | statement | supporting | refuting |",
            "|---|---|---:|---|---|---|",
        ]
        out += [
            f"| {h.id} | {h.status} | {h.confidence:.2f} | {_cell(h.statement)} | "
            f"{', '.join(h.supporting_evidence) or '—'} | {', '.join(h.refuting_evidence) or '—'} |"
            for h in s.hypotheses
        ]
    else:
        out.append("None yet.")
    out += ["", "## Evidence", ""]
    for e in s.evidence:
        metrics = ", ".join(f"{k}={v:.3g}" for k, v in e.key_metrics.items())
        out.append(
            f"- **{e.id}** ({e.strength}, {e.experiment_id}): {e.summary}"
            + (f" — {metrics}" if metrics else "")
            + (f" — result: `{e.result_path}`" if e.result_path else "")
        )
    if not s.evidence:
        out.append("None yet.")
    if s.links:
        out += [
            "",
            "## Cross-model links",
            "",
            "| id | source | target | relation | corr | score | recorded |",
            "|---:|---|---|---|---:|---:|---|",
        ]
        out += [
            f"| {k.id} | {k.source_model} {k.source_feature} | {k.target_model} {k.target_feature} | "
            f"{k.relation} | {_num(k.scores.get('activation_correlation'))} | "
            f"{_num(k.scores.get('combined_score'))} | {k.recorded_at:%Y-%m-%d} by {_cell(k.recorded_by)} |"
            for k in s.links
        ]
    if s.known_pitfalls:
        out += ["", "## Known pitfalls", ""] + [f"- {p}" for p in s.known_pitfalls]
    if s.active_constraints:
        out += ["", "## Active constraints", ""] + [f"- {c}" for c in s.active_constraints]
    if s.notes:
        out += ["", "## Notes", "", s.notes]
    if s.history:
        out += ["", "## History", ""]
        out += [f"- {h.at:%Y-%m-%d %H:%M} {h.action}: {h.detail}" for h in s.history]
    return "\n".join(out) + "\n"


__all__ = [
    "CrossModelLink",
    "Evidence",
    "FeatureState",
    "HistoryEntry",
    "Hypothesis",
    "MIGRATIONS",
    "ResearchStateManager",
    "ResearchStore",
    "SCHEMA_VERSION",
    "StoreVersionError",
    "load_upstream_state",
    "store_path",
]
