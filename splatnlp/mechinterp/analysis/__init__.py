"""Cross-model feature matching: metrics, the matcher, its reports, and alignment.

Subpackages follow the data: ``metrics/`` (pure numerics over codes) feeds ``match/`` (one
feature against every feature of the other model) and ``align/`` (all features at once,
FeatureMatch's ``align_features``, saved tables, plots).

Names load on first use (PEP 562), so that light users such as the research-state store, which
only needs the report models, do not pay for importing torch through the matcher (~2.6 s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from splatnlp.mechinterp._lazy import lazy_exports

_EXPORTS = {
    "AlignmentResult": "align.featurematch",
    "AlignedFeature": "align.report",
    "AlignmentReport": "align.report",
    "AlignmentTables": "align.tables",
    "AlignOptions": "align.report",
    "align_contexts": "align.dictionary",
    "load_tables": "align.tables",
    "save_tables": "align.tables",
    "align_features": "align.featurematch",
    "CKAResult": "metrics.results",
    "ExampleRow": "examples",
    "FeatureExamples": "examples",
    "TokenEnrichment": "examples",
    "WeaponShare": "examples",
    "feature_examples": "examples",
    "linear_cka": "metrics.cka",
    "FeatureMatcher": "match.matcher",
    "MatchOptions": "match.options",
    "Decomposition": "match.reports",
    "DecompositionMember": "match.reports",
    "FeatureComparison": "match.reports",
    "FeatureError": "match.reports",
    "FeatureMatch": "match.reports",
    "Verdict": "match.reports",
    "FeatureSummary": "match.reports",
    "MatchReport": "match.reports",
    "NullModel": "match.reports",
}

__all__ = [
    "AlignOptions",
    "AlignedFeature",
    "AlignmentReport",
    "AlignmentResult",
    "AlignmentTables",
    "CKAResult",
    "Decomposition",
    "DecompositionMember",
    "ExampleRow",
    "FeatureComparison",
    "FeatureError",
    "FeatureExamples",
    "FeatureMatch",
    "FeatureMatcher",
    "FeatureSummary",
    "MatchOptions",
    "MatchReport",
    "NullModel",
    "TokenEnrichment",
    "Verdict",
    "WeaponShare",
    "align_contexts",
    "align_features",
    "feature_examples",
    "linear_cka",
    "load_tables",
    "save_tables",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from splatnlp.mechinterp.analysis.align.dictionary import align_contexts
    from splatnlp.mechinterp.analysis.align.featurematch import AlignmentResult, align_features
    from splatnlp.mechinterp.analysis.align.report import (
        AlignedFeature,
        AlignmentReport,
        AlignOptions,
    )
    from splatnlp.mechinterp.analysis.align.tables import AlignmentTables, load_tables, save_tables
    from splatnlp.mechinterp.analysis.examples import (
        ExampleRow,
        FeatureExamples,
        TokenEnrichment,
        WeaponShare,
        feature_examples,
    )
    from splatnlp.mechinterp.analysis.match.matcher import FeatureMatcher
    from splatnlp.mechinterp.analysis.match.options import MatchOptions
    from splatnlp.mechinterp.analysis.match.reports import (
        Decomposition,
        DecompositionMember,
        FeatureComparison,
        FeatureError,
        FeatureMatch,
        FeatureSummary,
        MatchReport,
        NullModel,
        Verdict,
    )
    from splatnlp.mechinterp.analysis.metrics.cka import linear_cka
    from splatnlp.mechinterp.analysis.metrics.results import CKAResult
