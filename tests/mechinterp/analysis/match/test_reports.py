"""Tests of splatnlp/mechinterp/analysis/reports.py: JSON round trips, schemas, and the text
renderings of the matcher's results (with undefined values)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import SRC_DEAD, SRC_PLAIN, SRC_RARE, SRC_SUM, TGT_PART_A, TGT_SUPERSET, Pair

from splatnlp.mechinterp.analysis import (
    Decomposition,
    FeatureComparison,
    FeatureMatch,
    FeatureMatcher,
    MatchOptions,
    MatchReport,
)
from splatnlp.mechinterp.analysis.match.reports import REPORT_SCHEMA_VERSION, export_schemas


@pytest.fixture(scope="module")
def matcher(pair: Pair) -> FeatureMatcher:
    return FeatureMatcher(pair.source, pair.target)


@pytest.mark.parametrize("feature", (SRC_PLAIN, SRC_SUM, SRC_DEAD, SRC_RARE))
@pytest.mark.parametrize("n_permutations", (0, 5))
def test_match_report_json_round_trip(pair, feature, n_permutations) -> None:
    matcher = FeatureMatcher(
        pair.source, pair.target, options=MatchOptions(n_permutations=n_permutations)
    )
    report = matcher.find_matches(feature, n_top_matches=40)
    text = report.model_dump_json()
    assert MatchReport.model_validate_json(text) == report
    assert MatchReport.model_validate_json(report.to_json()) == report
    doc = json.loads(text)  # strict JSON: no NaN or Infinity tokens
    assert doc["schema_version"] == REPORT_SCHEMA_VERSION
    assert doc["source_feature"] == feature and len(doc["matches"]) == 40
    assert (
        FeatureMatch.model_validate_json(report.matches[0].model_dump_json()) == report.matches[0]
    )


def test_round_trip_keeps_undefined_values_as_null(matcher) -> None:
    report = matcher.find_matches(SRC_DEAD)
    doc = json.loads(report.model_dump_json())
    match = doc["matches"][0]
    assert match["activation_correlation"] is None and match["combined_score"] is None
    assert "activation_correlation" in match["undefined"]
    assert doc["best_correlation"] is None and doc["is_unique"] is True
    assert MatchReport.model_validate(doc) == report


@pytest.mark.parametrize(
    ("source", "target"), [(SRC_PLAIN, TGT_SUPERSET), (SRC_DEAD, TGT_SUPERSET), (SRC_SUM, 3)]
)
def test_feature_comparison_json_round_trip(matcher, source, target) -> None:
    comparison = matcher.compare_features(source, target)
    assert FeatureComparison.model_validate_json(comparison.model_dump_json()) == comparison
    doc = json.loads(comparison.model_dump_json())
    assert doc["jaccard_similarity"] == doc["top_token_overlap"]


@pytest.mark.parametrize("feature", (SRC_SUM, SRC_DEAD))
def test_decomposition_json_round_trip(matcher, feature) -> None:
    decomposition = matcher.find_decomposition(feature)
    assert Decomposition.model_validate_json(decomposition.model_dump_json()) == decomposition
    assert bool(decomposition.members) == (feature == SRC_SUM)


def test_json_schemas() -> None:
    schema = MatchReport.model_json_schema()
    assert schema["title"] == "MatchReport"
    assert {"matches", "source_feature", "is_unique", "null", "decomposition"} <= set(
        schema["properties"]
    )
    assert MatchReport.json_schema() == schema
    doc = json.loads(export_schemas())
    assert set(doc) == {"MatchReport", "FeatureComparison", "Decomposition", "Verdict"}
    assert doc["MatchReport"] == schema
    assert "jaccard_similarity" in doc["FeatureComparison"]["properties"]
    assert "r_squared" in doc["Decomposition"]["properties"]


def test_summary_and_markdown_name_the_source_and_top_match(matcher) -> None:
    report = matcher.find_matches(SRC_SUM)
    top = report.matches[0]
    assert top.target_feature == TGT_PART_A
    summary = report.summary()
    assert summary.splitlines()[0].startswith(f"ultra feature {SRC_SUM} (active on ")
    assert f"#1 full {TGT_PART_A}: {top.relation}, r={top.activation_correlation:.3f}" in summary
    assert "split into 2 full features" in summary and "no counterpart" not in summary
    markdown = report.to_markdown()
    assert markdown.startswith(f"## ultra feature {SRC_SUM} → full")
    assert f"| 1 | {TGT_PART_A} | {top.relation} | {top.activation_correlation:.3f} |" in markdown
    assert "Decomposition (" in markdown and "Unique to" not in markdown
    assert len([line for line in markdown.splitlines() if line.startswith("| ")]) == 1 + len(
        report.matches
    )


def test_summary_and_markdown_of_a_dead_source(matcher) -> None:
    report = matcher.find_matches(SRC_DEAD)
    summary = report.summary()
    assert summary.splitlines()[0].startswith(f"ultra feature {SRC_DEAD} (active on 0.0% of 300")
    assert "top tokens: none" in summary
    assert "no counterpart in full: ultra 0 is never active: no correlation is defined" in summary
    assert "verdict: dead" in summary
    assert f"#1 full {report.matches[0].target_feature}: unrelated, r=n/a, score=n/a" in summary
    assert "warning: source feature 0 is never active" in summary
    markdown = report.to_markdown()
    assert markdown.startswith(f"## ultra feature {SRC_DEAD} → full")
    assert f"| 1 | {report.matches[0].target_feature} | unrelated | — | — |" in markdown
    assert "**Unique to ultra:**" in markdown and "> warning: source feature 0" in markdown
    assert "nan" not in summary.lower() and "nan" not in markdown.lower()


def _unexplained(model) -> list[str]:
    """Top-level fields of a result that are None without a reason in its ``undefined``."""
    return [name for name in type(model).model_fields if getattr(model, name) is None and name not in model.undefined]


@pytest.mark.parametrize("verdict", (True, False))
@pytest.mark.parametrize("reverse", (False, True))
def test_every_none_of_a_report_says_why(pair: Pair, reverse: bool, verdict: bool) -> None:
    # Every feature of both sides of the planted pair: dead, rare, nested, split, unrelated.
    source, target = (pair.target, pair.source) if reverse else (pair.source, pair.target)
    matcher = FeatureMatcher(source, target, options=MatchOptions(verdict=verdict))
    for feature in range(source.n_features):
        for decompose in (True, False):
            report = matcher.find_matches(feature, n_top_matches=5, decompose=decompose)
            assert _unexplained(report) == [], (feature, decompose)
            parts = [*report.matches, *([report.verdict] if report.verdict else [])]
            parts += [report.decomposition] if report.decomposition else []
            for part in parts:
                assert _unexplained(part) == [], (feature, type(part).__name__)


def test_every_none_of_a_tiny_demo_verdict_says_why(tiny_demo_dir, tiny_alignment) -> None:
    # One feature of every class on each side (the planted pair has no equivalent or novel one).
    from splatnlp.mechinterp.context import MechInterpContext

    full, ultra = MechInterpContext(tiny_demo_dir / "full"), MechInterpContext(tiny_demo_dir / "ultra")
    for source, target, key in ((full, ultra, "a"), (ultra, full, "b")):
        labels = getattr(tiny_alignment, key)["class_label"].astype(str)
        matcher = FeatureMatcher(source, target)
        for label in sorted(set(labels)):
            feature = int(np.flatnonzero(labels == label)[0])
            report = matcher.find_matches(feature, n_top_matches=3)
            assert report.verdict.label == label
            assert _unexplained(report) == [] and _unexplained(report.verdict) == [], (key, label)
            if report.verdict.side == "larger" and report.verdict.parent is None:  # names the verdict
                assert ("never active" if label == "dead" else label) in report.verdict.undefined["parent"]
