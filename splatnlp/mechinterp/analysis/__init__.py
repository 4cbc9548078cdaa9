"""Cross-model feature matching: metrics, the matcher, its reports, and alignment.

Names load on first use (PEP 562), so that light users such as the research-state store, which
only needs the report models, do not pay for importing torch through the matcher (~2.6 s).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AlignmentResult": "align",
    "AlignmentReport": "alignment",
    "AlignmentTables": "alignment",
    "AlignOptions": "alignment",
    "align_contexts": "alignment",
    "load_tables": "alignment",
    "save_tables": "alignment",
    "align_features": "align",
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
    "AlignmentReport",
    "AlignmentResult",
    "AlignmentTables",
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
    from splatnlp.mechinterp.analysis.alignment import (
        AlignmentReport,
        AlignmentTables,
        AlignOptions,
        align_contexts,
        load_tables,
        save_tables,
    )
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
