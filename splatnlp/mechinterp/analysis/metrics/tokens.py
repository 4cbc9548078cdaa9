"""Top-token sets: which tokens characterize a feature, by two definitions.

Both read the per-feature statistics built with the context (``stats.top_token_counts``: how
many of a feature's top-k activating examples hold each token; ``stats.token_frequency``: the
share of all examples holding it). Special tokens (``<PAD>`` ...) never count.

``frequency`` (upstream): the tokens that occur most often among the feature's top-activating
    examples. Tokens common to all builds (a popular ability) rank high for every feature.
``enrichment``: tokens ranked by how far their count among the k top examples exceeds what
    their share of all examples predicts, as a binomial z-score
    ``(count - k p) / sqrt(k p (1 - p))``, keeping tokens seen at least ``min_count`` times with
    ``z >= min_z``. Tokens every build has score near 0; a rare token seen twice by chance does
    not outrank a theme token seen in half the top examples (a plain log-ratio would let it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

TopTokenMethod = Literal["frequency", "enrichment"]
TOP_TOKEN_METHODS: tuple[str, ...] = ("frequency", "enrichment")


def special_token_mask(token_names: list[str]) -> np.ndarray:
    """True for special tokens such as ``<PAD>``, shape (n_tokens,)."""
    return np.array([t.startswith("<") and t.endswith(">") for t in token_names], dtype=bool)


def token_scores(
    top_token_counts: np.ndarray,
    n_top: np.ndarray,
    token_frequency: np.ndarray,
    special: np.ndarray,
    *,
    method: TopTokenMethod,
    min_count: int = 3,
    min_z: float = 3.0,
) -> np.ndarray:
    """Score of every token for every feature, shape (F, T); -inf where a token is not eligible.

    Parameters
    ----------
    top_token_counts : array of shape (F, T), token counts among each feature's top examples
    n_top : int array of shape (F,), how many top examples each feature has
    token_frequency : array of shape (T,), share of all examples holding each token
    special : bool array of shape (T,), tokens that never count
    """
    if method not in TOP_TOKEN_METHODS:
        raise ValueError(f"top-token method {method!r} is unknown; expected one of {TOP_TOKEN_METHODS}")
    counts = np.asarray(top_token_counts, dtype=np.float64)
    if method == "frequency":
        scores = np.where(counts > 0, counts, -np.inf)
    else:
        k = np.asarray(n_top, dtype=np.float64)[:, None]
        p = np.clip(np.asarray(token_frequency, dtype=np.float64), 1e-9, 1 - 1e-9)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (counts - k * p) / np.sqrt(k * p * (1 - p))
        scores = np.where((counts >= min_count) & (z >= min_z), z, -np.inf)
    scores[:, special] = -np.inf
    return scores


def top_token_ids(scores: np.ndarray, n_tokens: int) -> list[np.ndarray]:
    """Per feature, the ids of its best ``n_tokens`` eligible tokens, best first (ties by id)."""
    n_tokens = min(n_tokens, scores.shape[1])
    out = []
    # argsort on (-score, id): stable sort of -score keeps lower ids first among ties.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :n_tokens]
    for f in range(scores.shape[0]):
        ids = order[f]
        out.append(ids[np.isfinite(scores[f, ids])])
    return out


def token_set_matrix(token_ids: list[np.ndarray], n_token_space: int) -> sp.csr_matrix:
    """Binary membership matrix of shape (F, n_token_space) from per-feature token id lists."""
    # Imported here: the report models import this module for TopTokenMethod, and the research
    # store, which loads them, starts faster without scipy (~0.4 s).
    import scipy.sparse as sp

    lengths = np.array([len(t) for t in token_ids], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(token_ids).astype(np.int64) if len(token_ids) else np.zeros(0, np.int64)
    return sp.csr_matrix(
        (np.ones(len(indices)), indices, indptr), shape=(len(token_ids), n_token_space)
    )
