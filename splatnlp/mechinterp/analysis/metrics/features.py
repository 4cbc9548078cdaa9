"""Per-feature arrays of one context that the matcher and the alignment both need.

Counts, moments, top-token sets and unit decoder rows, computed once per context and cached.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from splatnlp.mechinterp.analysis.metrics.pairs import unit_rows
from splatnlp.mechinterp.analysis.metrics.tokens import (
    TopTokenMethod,
    special_token_mask,
    token_scores,
    token_set_matrix,
    top_token_ids,
)
from splatnlp.mechinterp.context import MechInterpContext

__all__ = ["FeatureArrays"]

# Rows of token scores per block (4,096 x 261 float64 = 8.5 MB): small enough to stay in cache.
_TOKEN_BLOCK_ROWS = 4096


class FeatureArrays:
    """Per-context arrays the matcher and alignment need (counts, moments, top-token sets, unit
    decoder rows), computed once per context and options and cached."""

    def __init__(
        self, ctx: MechInterpContext, *, top_token_method: TopTokenMethod = "enrichment", n_top_tokens: int = 10
    ):
        self.ctx = ctx
        self.top_token_method = top_token_method
        self.n_top_tokens = n_top_tokens

    @cached_property
    def count(self) -> np.ndarray:
        """Examples where each feature is active, from the CSC column pointers (exact)."""
        return np.diff(np.asarray(self.ctx.codes.csc.indptr, dtype=np.int64))

    @cached_property
    def mean(self) -> np.ndarray:
        return np.asarray(self.ctx.stats.mean, dtype=np.float64)

    @cached_property
    def std(self) -> np.ndarray:
        std = np.asarray(self.ctx.stats.std, dtype=np.float64)
        # A constant code's one-pass variance E[x^2] - E[x]^2 rounds to ~1e-7 * mean instead of 0
        # (measured at n=2000), and a correlation divided by it is noise (|r| up to 0.2): call it
        # zero. A feature inactive on any example has std/mean >= sqrt(1/n), far above this.
        return np.where(std <= 1e-5 * np.abs(self.mean), 0.0, std)

    @cached_property
    def total(self) -> np.ndarray:
        """float64 (F,): each feature's summed code over all examples."""
        return self.mean * self.ctx.n_examples

    @cached_property
    def total_sq(self) -> np.ndarray:
        """float64 (F,): each feature's summed squared code over all examples (from the stored
        mean and std, before :attr:`std` zeroes near-constant ones)."""
        raw = np.asarray(self.ctx.stats.std, dtype=np.float64)
        return (raw * raw + self.mean * self.mean) * self.ctx.n_examples

    @cached_property
    def token_names(self) -> list[str]:
        return self.ctx.token_names

    @cached_property
    def special(self) -> np.ndarray:
        """bool (T,): special tokens, which never count (computed once: a scan of every name)."""
        return special_token_mask(self.token_names)

    def _scores(self, rows: slice) -> np.ndarray:
        """float64 (len(rows), T): :func:`token_scores` of a block of features."""
        s = self.ctx.stats
        n_top = (s.top_examples[rows] >= 0).sum(1)
        return token_scores(s.top_token_counts[rows], n_top, s.token_frequency, self.special, method=self.top_token_method)

    @cached_property
    def token_scores(self) -> np.ndarray:
        return self._scores(slice(None))

    @cached_property
    def top_tokens(self) -> list[np.ndarray]:
        """Per feature, its top-token ids, best first (:func:`top_token_ids` of :attr:`token_scores`)."""
        if "token_scores" in self.__dict__:
            return top_token_ids(self.token_scores, self.n_top_tokens)
        # Scored in blocks of rows without keeping the (F, T) float64 scores: the same elementwise
        # operations give the same bits, but a cold process no longer faults in ~8 full-size
        # temporaries (Ultra on the default demo: 24,576 x 261, 0.29-0.59 s -> 0.12 s).
        out: list[np.ndarray] = []
        for start in range(0, self.ctx.n_features, _TOKEN_BLOCK_ROWS):
            out += top_token_ids(self._scores(slice(start, start + _TOKEN_BLOCK_ROWS)), self.n_top_tokens)
        return out

    def scores_of(self, feature: int) -> np.ndarray:
        """float64 (T,): one feature's token scores, the row :attr:`token_scores` holds, without
        scoring every feature (a query's source needs only its own: 0.45 s saved per process for
        an Ultra source on the demo)."""
        if "token_scores" in self.__dict__:
            return self.token_scores[feature]
        if feature not in self._one_scores:  # a report asks several times (summary, matches)
            self._one_scores[feature] = self._scores(slice(feature, feature + 1))[0]
        return self._one_scores[feature]

    @cached_property
    def _one_scores(self) -> dict[int, np.ndarray]:
        return {}

    @cached_property
    def _one_top(self) -> dict[int, np.ndarray]:
        return {}

    def top_tokens_of(self, feature: int) -> np.ndarray:
        """One feature's top-token ids, best first: the entry of :attr:`top_tokens`."""
        if "top_tokens" in self.__dict__:
            return self.top_tokens[feature]
        if feature not in self._one_top:
            self._one_top[feature] = top_token_ids(self.scores_of(feature)[None, :], self.n_top_tokens)[0]
        return self._one_top[feature]

    @cached_property
    def token_sets(self):
        return token_set_matrix(self.top_tokens, len(self.token_names))

    @cached_property
    def token_sets_by_token(self):
        """:attr:`token_sets` as CSC: each token's features (``set_jaccard(..., by_token=)``)."""
        return self.token_sets.tocsc()

    @cached_property
    def decoder(self) -> np.ndarray:
        """Unit decoder directions, shape (n_features, d_model), float32; NaN rows for zero ones."""
        return unit_rows(np.asarray(self.ctx.decoder_weights))

    def tokens_of(self, feature: int) -> list[str]:
        return [self.token_names[t] for t in self.top_tokens[feature]]
