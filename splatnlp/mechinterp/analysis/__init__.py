"""Cross-model feature matching: metrics, the matcher and its reports."""

from splatnlp.mechinterp.analysis.align import AlignmentResult, align_features
from splatnlp.mechinterp.analysis.matcher import FeatureMatcher, MatchOptions
from splatnlp.mechinterp.analysis.reports import (
    Decomposition,
    DecompositionMember,
    FeatureComparison,
    FeatureMatch,
    FeatureSummary,
    MatchReport,
    NullModel,
)

__all__ = [
    "AlignmentResult",
    "Decomposition",
    "DecompositionMember",
    "FeatureComparison",
    "FeatureMatch",
    "FeatureMatcher",
    "FeatureSummary",
    "MatchOptions",
    "MatchReport",
    "NullModel",
    "align_features",
]
