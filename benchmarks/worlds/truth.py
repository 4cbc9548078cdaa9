"""Ground truth of an evaluation world: the package's rules (``splatnlp.mechinterp.demo.truth``,
shared with the demo's trained presets) applied to a SAELens hierarchy."""

from __future__ import annotations

from typing import Any

from benchmarks.worlds.synthetic import Forest
from splatnlp.mechinterp.demo import truth as _truth
from splatnlp.mechinterp.demo.truth import TRACKS_MIN_R, LatentTruth, best_features, r_histogram

__all__ = ["TRACKS_MIN_R", "LatentTruth", "best_features", "expected_relations", "r_histogram"]
__doc__ = _truth.__doc__


def expected_relations(full: LatentTruth, ultra: LatentTruth, forest: Forest) -> dict[str, Any]:
    """:func:`splatnlp.mechinterp.demo.truth.expected_relations` over the forest's parents."""
    return _truth.expected_relations(full, ultra, forest.parent)
