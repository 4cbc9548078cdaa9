"""How the matcher scores and labels matches: :class:`MatchOptions` and the sort keys."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from splatnlp.mechinterp.analysis.match.reports import PAIR_METRICS
from splatnlp.mechinterp.analysis.metrics.tokens import TopTokenMethod
from splatnlp.mechinterp.analysis.metrics.verdicts import (
    EQUIVALENT_COACTIVE_CORRELATION,
    EQUIVALENT_CORRELATION,
    EQUIVALENT_DECODER_COSINE,
    NESTED_CONTAINMENT,
    RELATED_CORRELATION,
)

__all__ = ["COMPILED_MIN_ENTRIES", "SORT_KEYS", "MatchOptions", "SortKey"]

SORT_KEYS = ("combined_score", *PAIR_METRICS)

COMPILED_MIN_ENTRIES = 100_000_000
"""``MatchOptions(compiled="auto")`` compiles from this many stored codes of both contexts
together: about 40 % of the real scale (2.4e8), where the compiled first query (numba's ~1 s
load included) is about as fast as scipy's; the default demo (4.8e7) stays on scipy."""
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
    """How matches are scored and labelled. The verdict rules and their thresholds are those of
    :mod:`splatnlp.mechinterp.analysis.metrics.verdicts`, chosen on the dev evaluation worlds."""

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
    related_correlation: float = RELATED_CORRELATION
    """A pair with correlation below this is 'unrelated' and cannot be significant; a feature of
    the larger model with no candidate at or above it has no parent (novel). See
    :mod:`splatnlp.mechinterp.analysis.metrics.verdicts` for how it was chosen."""
    nested_containment: float = NESTED_CONTAINMENT
    """... unless it is nested in its best-correlated candidate: the 95 % lower bound of the
    chance-corrected containment reaches this (then that candidate is its parent)."""
    equivalent_decoder_cosine: float = EQUIVALENT_DECODER_COSINE
    """A parent pair is 'equivalent' when its decoder cosine reaches this with an activation
    correlation of at least 0.8 (``verdicts.DECODER_MIN_CORRELATION``), ..."""
    equivalent_correlation: float = EQUIVALENT_CORRELATION
    """... or its activation correlation reaches this, ..."""
    equivalent_coactive_correlation: float = EQUIVALENT_COACTIVE_CORRELATION
    """... or the family-wise lower bound of its co-active correlation (Pearson over the examples where
    both fire) reaches this, with r >= 0.5."""
    alpha: float = Field(0.01, gt=0, lt=1)
    """Family-wise significance level."""
    n_permutations: int = Field(0, ge=0)
    """0: analytic permutation null; >0: that many shuffles of the source's examples."""
    seed: int = 0
    max_decomposition_members: int = Field(64, ge=1)
    verdict: bool = True
    """Compute ``report.verdict``. For a larger-side source it needs the parent's other children
    (one pass of the parent over the larger dictionary plus a reverse pass per candidate: about
    0.15 s a query at real scale, compiled); False skips it for throughput. ``is_unique`` is the same
    either way. Without the verdict and without an alignment, a larger-side source's pair
    relations also leave out the sibling test of ``equivalent`` (it needs those children), so
    such a pair can read ``source_part_of_target`` where the verdict says ``equivalent``."""
    compiled: bool | Literal["auto"] = "auto"
    """Run each query's sums and its candidates' reverse passes with the compiled kernels (numba;
    ``analysis/metrics/kernels.py``) instead of scipy's row gather and sparse product: the same
    float64 sums in another order. ``"auto"``: when numba is installed and the two contexts
    hold at least ``COMPILED_MIN_ENTRIES`` stored codes together. At real scale
    (``benchmarks/bench_matcher.py``, 2026-12-03) compiled queries took 106 / 98 ms with the
    verdict against 438 / 385 ms (Ultra->Full / Full->Ultra), and the first query of a process,
    numba's loading included, 1.06 / 0.64 s against 2.74 / 0.76 s; on small contexts loading
    numba (about 1 s) costs more than it saves."""
    information_test: bool = False
    """Run the stitching test (``report.verdict.information_test``) for larger-side sources when
    the smaller context keeps its activations. Off by default: the first query loads both SAEs
    and reconstructs every example with the smaller one (the verdict does not use it)."""

    @field_validator("weights")
    @classmethod
    def _known_metrics(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = set(weights) - set(PAIR_METRICS)
        if unknown:
            raise ValueError(
                f"weights name unknown metrics {sorted(unknown)}; allowed: {list(PAIR_METRICS)}"
            )
        return weights
