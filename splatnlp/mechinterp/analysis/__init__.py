"""Cross-model feature matching: metrics, the matcher, its reports, and alignment.

Names load on first use (PEP 562), so that light users such as the research-state store, which
only needs the report models, do not pay for importing torch through the matcher (~2.6 s).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AlignmentResult": "align",
    "AlignedFeature": "tables",
    "AlignmentReport": "tables",
    "AlignmentTables": "tables",
    "AlignOptions": "tables",
    "align_contexts": "alignment",
    "load_tables": "tables",
    "save_tables": "tables",
    "align_features": "align",
    "CKAResult": "tables",
    "linear_cka": "cka",
    "FeatureMatcher": "matcher",
    "MatchOptions": "matcher",
    "Decomposition": "reports",
    "DecompositionMember": "reports",
    "FeatureComparison": "reports",
    "FeatureMatch": "reports",
    "FeatureSummary": "reports",
    "MatchReport": "reports",
    "NullModel": "reports",
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
    "FeatureComparison",
    "FeatureMatch",
    "FeatureMatcher",
    "FeatureSummary",
    "MatchOptions",
    "MatchReport",
    "NullModel",
    "align_contexts",
    "align_features",
    "linear_cka",
    "load_tables",
    "save_tables",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from splatnlp.mechinterp.analysis.align import AlignmentResult, align_features
    from splatnlp.mechinterp.analysis.alignment import align_contexts
    from splatnlp.mechinterp.analysis.cka import linear_cka
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
    from splatnlp.mechinterp.analysis.tables import (
        AlignedFeature,
        AlignmentReport,
        AlignmentTables,
        AlignOptions,
        CKAResult,
        load_tables,
        save_tables,
    )
