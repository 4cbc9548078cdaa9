"""The research-state store: labels, hypotheses, evidence and cross-model links in SQLite.

One embedded database (``sqlite3`` from the standard library, WAL mode) holds what has been learnt
about each feature and every recorded Full ↔ Ultra link. Several processes (agents, notebooks,
the CLI) may read and write it at once: every write is one transaction, so a writer killed
half-way leaves nothing behind, and writers queue for the lock instead of failing.

Modules, lowest first: ``records`` (the pydantic records, their allowed values, a feature's
Markdown page), ``location`` (where the file lives: ``$SPLATNLP_STORE``, the config's
``store_path``, or ``<data dir>/research_state.sqlite``), ``schema`` (layout, version,
migrations), ``rows`` (records to rows and back), ``upstream`` (upstream SplatNLP's per-feature
JSON), ``db`` (connection, locking, transactions), ``store`` (:class:`ResearchStore`, the file,
and :class:`ResearchStateManager`, one feature) and ``transfer`` (labels carried to the other
model's counterparts, :func:`transfer_labels`).

Records are validated before anything is written; an invalid one raises
``pydantic.ValidationError`` (a ``ValueError``) naming the field, and the store is unchanged.
"""

from splatnlp.mechinterp.state.db import BUSY_TIMEOUT_S
from splatnlp.mechinterp.state.location import DEFAULT_STORE_NAME, ENV_STORE, store_path
from splatnlp.mechinterp.state.records import (
    EVIDENCE_STRENGTHS,
    FINDING_KINDS,
    HYPOTHESIS_STATUSES,
    LINK_SCORE_FIELDS,
    MODEL_TYPES,
    CrossModelLink,
    Evidence,
    FeatureState,
    Finding,
    HistoryEntry,
    Hypothesis,
    NoCounterpart,
)
from splatnlp.mechinterp.state.schema import MIGRATIONS, SCHEMA_VERSION, StoreVersionError
from splatnlp.mechinterp.state.store import ResearchStateManager, ResearchStore
from splatnlp.mechinterp.state.transfer import (
    TRANSFER_ACTIONS,
    LabelProposal,
    LabelTransfer,
    SkippedLabel,
    transfer_labels,
)
from splatnlp.mechinterp.state.upstream import load_upstream_state

__all__ = [
    "BUSY_TIMEOUT_S",
    "DEFAULT_STORE_NAME",
    "ENV_STORE",
    "EVIDENCE_STRENGTHS",
    "FINDING_KINDS",
    "HYPOTHESIS_STATUSES",
    "LINK_SCORE_FIELDS",
    "MIGRATIONS",
    "MODEL_TYPES",
    "SCHEMA_VERSION",
    "TRANSFER_ACTIONS",
    "CrossModelLink",
    "Evidence",
    "FeatureState",
    "Finding",
    "HistoryEntry",
    "Hypothesis",
    "LabelProposal",
    "LabelTransfer",
    "NoCounterpart",
    "ResearchStateManager",
    "ResearchStore",
    "SkippedLabel",
    "StoreVersionError",
    "load_upstream_state",
    "store_path",
    "transfer_labels",
]
