"""Builders shared by the research-state tests: a link record, a MatchReport, row counts.

The names keep the leading underscore they had when these tests were one module, so the
moved tests read exactly as they did.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from splatnlp.mechinterp.analysis.match.reports import (
    FeatureMatch,
    FeatureSummary,
    MatchReport,
    NullModel,
    TokenScore,
)


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
