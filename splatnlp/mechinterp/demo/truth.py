"""Ground truth of trained SAEs: which true feature each latent tracks, expected parents, splits.

Used by the demo's ``trained`` presets and by the evaluation worlds of ``benchmarks/worlds``,
whose SAEs are learned, so a latent's id says nothing about which planted feature it found.

Rules (fixed here, recorded in every ``ground_truth.json``):

- A latent's **best feature** is the true feature with the highest Pearson correlation with its
  codes over all examples, zeros included. A latent never active on the evaluation set is
  **dead** (no best feature).
- A latent **tracks** its best feature when that correlation is at least ``TRACKS_MIN_R`` (0.5).
  The build prints the histogram of best correlations that supports the choice: the mass sits
  either well above 0.5 (latents that learned a feature or a feature plus its absorbed parent)
  or below 0.3 (the extra latents of a wide SAE fired ~9 % of the time).
- An ultra latent that tracks nothing is **untracked**: it represents no one true feature, so it
  has no expected parent and is left out of the parent and novel scores (counted apart).
- The **expected parents** of a tracking ultra latent: walk from its best feature up its
  ancestors (itself first); at the first feature that some full latents track, those full
  latents (all acceptable). None found: the ultra latent is **novel**.
- **Same-feature pairs**: (full, ultra) latents tracking the same true feature.
- **Expected split** of a full latent: the ultra latents whose expected parents include it.
  **Split pairs** are (full, ultra) pairs of that relation where the full latent has at least two
  expected children.
- **Equivalent pairs**: a full latent with exactly one expected child, which tracks the same
  true feature (the alignment's ``equivalent`` class also asks for exactly one assigned child).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["TRACKS_MIN_R", "LatentTruth", "ancestors", "best_features", "expected_relations", "r_histogram"]

TRACKS_MIN_R = 0.5
"""A latent tracks its best-correlated true feature when that Pearson r is at least this."""


@dataclass
class LatentTruth:
    """Best-correlated true feature of every latent of one SAE."""

    best_feature: np.ndarray
    """int64 (n_latents,): -1 for dead latents."""
    best_r: np.ndarray
    """float64 (n_latents,): NaN for dead latents."""
    dead: np.ndarray
    """bool (n_latents,): never active on the evaluation set."""

    @property
    def tracks(self) -> np.ndarray:
        """bool (n_latents,): live and best r >= TRACKS_MIN_R."""
        return ~self.dead & (np.nan_to_num(self.best_r, nan=-1.0) >= TRACKS_MIN_R)


def best_features(codes: np.ndarray, features: sp.csr_matrix, *, chunk: int = 512) -> LatentTruth:
    """Pearson correlation of every latent with every true feature; keep each latent's best.

    Parameters
    ----------
    codes : float array of shape (n_examples, n_latents)
    features : sparse matrix of shape (n_examples, n_true)

    Returns
    -------
    LatentTruth
    """
    n = codes.shape[0]
    if features.shape[0] != n:
        raise ValueError(f"codes have {n} examples, features {features.shape[0]}")
    F = sp.csc_matrix(features, dtype=np.float64)
    f_mean = np.asarray(F.mean(0)).ravel()
    f_sq = np.asarray(F.multiply(F).sum(0)).ravel()
    f_std = np.sqrt(np.maximum(f_sq / n - f_mean**2, 0.0))
    k = codes.shape[1]
    best_feature = np.full(k, -1, dtype=np.int64)
    best_r = np.full(k, np.nan)
    dead = ~(codes > 0).any(0)
    FT = F.T.tocsr()
    for start in range(0, k, chunk):
        # Pearson from sufficient statistics in float64: exact for the 20,000-example sums.
        Z = codes[:, start : start + chunk].astype(np.float64)
        z_mean = Z.mean(0)
        z_std = Z.std(0)
        cov = np.asarray(FT @ Z) / n - np.outer(f_mean, z_mean)  # (n_true, chunk)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = cov / np.outer(f_std, z_std)
        r[~np.isfinite(r)] = -np.inf
        idx = r.argmax(0)
        val = r[idx, np.arange(r.shape[1])]
        live = np.isfinite(val) & (z_std > 0)
        cols = np.arange(start, start + Z.shape[1])
        best_feature[cols[live]] = idx[live]
        best_r[cols[live]] = val[live]
    best_feature[dead] = -1
    best_r[dead] = np.nan
    return LatentTruth(best_feature=best_feature, best_r=best_r, dead=dead)


def ancestors(parent: np.ndarray, feature: int) -> list[int]:
    """``feature`` itself first, then its parent, ... up to the root (``parent[root] == -1``)."""
    chain = [int(feature)]
    while parent[chain[-1]] >= 0:
        chain.append(int(parent[chain[-1]]))
    return chain


def expected_relations(full: LatentTruth, ultra: LatentTruth, parent: np.ndarray) -> dict[str, Any]:
    """Expected parents, categories, same-feature, split and equivalent pairs (module rules).

    Parameters
    ----------
    full, ultra : each SAE's :class:`LatentTruth`
    parent : int array of shape (n_true,), each true feature's parent feature (-1: a root)

    Returns
    -------
    dict with
        ``expected_parents``: per ultra latent, a sorted list of full latents, ``[]`` when novel,
        None when dead or untracked;
        ``category``: per ultra latent, ``child`` | ``novel`` | ``untracked`` | ``dead``;
        ``same_feature_pairs``, ``split_pairs``, ``equivalent_pairs``: lists of [full, ultra];
        ``expected_split``: per full latent, the sorted ultra latents expecting it as parent.
    """
    trackers: dict[int, list[int]] = {}
    for latent in np.flatnonzero(full.tracks):
        trackers.setdefault(int(full.best_feature[latent]), []).append(int(latent))
    ultra_trackers: dict[int, list[int]] = {}
    for latent in np.flatnonzero(ultra.tracks):
        ultra_trackers.setdefault(int(ultra.best_feature[latent]), []).append(int(latent))

    n_ultra, n_full = ultra.best_feature.shape[0], full.best_feature.shape[0]
    expected: list[list[int] | None] = [None] * n_ultra
    category = ["dead" if d else "untracked" for d in ultra.dead]
    tracks = ultra.tracks
    for u in range(n_ultra):
        if not tracks[u]:
            continue
        parents: list[int] = []
        for feature in ancestors(parent, int(ultra.best_feature[u])):
            if feature in trackers:
                parents = sorted(trackers[feature])
                break
        expected[u] = parents
        category[u] = "child" if parents else "novel"

    split: list[list[int]] = [[] for _ in range(n_full)]
    for u, parents in enumerate(expected):
        for f in parents or ():
            split[f].append(u)
    same = sorted(
        [f, u]
        for feature, fulls in trackers.items()
        for f in fulls
        for u in ultra_trackers.get(feature, ())
    )
    split_pairs = sorted([f, u] for f, us in enumerate(split) if len(us) >= 2 for u in us)
    same_set = {tuple(p) for p in same}
    equivalent = sorted(
        [f, us[0]] for f, us in enumerate(split) if len(us) == 1 and (f, us[0]) in same_set
    )
    return {
        "expected_parents": expected,
        "category": category,
        "same_feature_pairs": same,
        "expected_split": split,
        "split_pairs": split_pairs,
        "equivalent_pairs": equivalent,
    }


def r_histogram(
    truth: LatentTruth, edges: tuple[float, ...] = tuple(np.round(np.arange(0, 1.01, 0.1), 1))
) -> dict[str, int]:
    """Counts of live latents' best r in bins ``[edges[i], edges[i+1])`` (last bin closed)."""
    r = truth.best_r[~truth.dead]
    counts, _ = np.histogram(np.clip(r, edges[0], edges[-1]), bins=np.asarray(edges))
    return {
        f"{lo:.1f}-{hi:.1f}": int(c)
        for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
    }
