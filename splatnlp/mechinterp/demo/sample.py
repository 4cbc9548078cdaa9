"""The sample match ``splatnlp-mechinterp demo`` prints after building."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from splatnlp.mechinterp.analysis import FeatureMatcher
from splatnlp.mechinterp.context import MechInterpContext

# The feature the upstream skill document uses as its example.
SAMPLE_ULTRA_FEATURE = 18712


def sample_match(demo_dir: str | Path, *, feature: int = SAMPLE_ULTRA_FEATURE) -> dict[str, Any]:
    """Match one Ultra feature of a built demo against Full; a JSON-ready dict with ``text``."""
    demo_dir = Path(demo_dir)
    ultra = MechInterpContext(demo_dir / "ultra")
    full = MechInterpContext(demo_dir / "full")
    if feature >= ultra.n_features:
        # Presets at reduced widths ('trained') have fewer Ultra features than the upstream id.
        feature = feature % ultra.n_features
    report = FeatureMatcher(ultra, full).find_matches(feature, n_top_matches=3)
    best = report.matches[0] if report.matches else None
    return {
        "source_feature": feature,
        "best_target": None if best is None else best.target_feature,
        "best_correlation": report.best_correlation,
        "relation": None if best is None else best.relation,
        "is_unique": report.is_unique,
        "text": "sample match (ultra -> full):\n" + report.summary(),
    }
