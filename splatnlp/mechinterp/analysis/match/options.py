"""How the matcher scores and labels matches: :class:`MatchOptions` and the sort keys."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from splatnlp.mechinterp.analysis.match.reports import PAIR_METRICS
from splatnlp.mechinterp.analysis.metrics.tokens import TopTokenMethod

__all__ = ["SORT_KEYS", "MatchOptions", "SortKey"]

SORT_KEYS = ("combined_score", *PAIR_METRICS)
SortKey = Literal[
    "combined_score",
    "activation_correlation",
    "top_token_overlap",
    "decoder_cosine",
    "coactivation_jaccard",
    "p_target_given_source",
    "p_source_given_target",
]


class MatchOptions(BaseModel):
    """How matches are scored and labelled. Thresholds were measured on the demo (README)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: dict[str, float] = Field(
        default_factory=lambda: {"top_token_overlap": 0.4, "activation_correlation": 0.6}
    )
    """combined_score = sum(weight * metric); upstream's 0.4 overlap + 0.6 correlation."""
    top_token_method: TopTokenMethod = "enrichment"
    """Which top-token definition ``top_token_overlap`` uses (see analysis/tokens.py)."""
    n_top_tokens: int = Field(10, ge=1)
    """Size of each feature's top-token set."""
    min_active: int = Field(5, ge=1)
    """Features active on fewer examples get no correlation or containment (None, with a reason)."""
    related_correlation: float = 0.3
    """A pair with correlation below this is 'unrelated' and cannot be significant."""
    equivalent_correlation: float = 0.85
    equivalent_containment: float = 0.6
    """'equivalent' needs this correlation and both containments at least this."""
    containment_asymmetry: float = 0.15
    """P(s|t) - P(t|s) at least this marks the target as a part of the source (and vice versa)."""
    alpha: float = Field(0.01, gt=0, lt=1)
    """Family-wise significance level."""
    n_permutations: int = Field(0, ge=0)
    """0: analytic permutation null; >0: that many shuffles of the source's examples."""
    seed: int = 0
    max_decomposition_members: int = Field(64, ge=1)

    @field_validator("weights")
    @classmethod
    def _known_metrics(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = set(weights) - set(PAIR_METRICS)
        if unknown:
            raise ValueError(
                f"weights name unknown metrics {sorted(unknown)}; allowed: {list(PAIR_METRICS)}"
            )
        return weights
