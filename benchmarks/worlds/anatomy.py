"""Where the verdicts go wrong on a world: each error of the parent and novel verdicts, sorted by
how the Full latent it involves relates to the Ultra latent's true feature in the hierarchy, and
each same-feature latent not called equivalent, by why (:func:`equivalent_misses`).

Pure functions over the ground truth's arrays (no sae-lens, no package imports), so that
``python -m pytest benchmarks/worlds`` checks them on hand-made forests.

For an Ultra latent ``u`` whose best true feature is ``X``, and a Full latent ``f`` (the parent
the verdict gave it), whose best true feature is ``Y``, :func:`relation_to` says what ``f`` is
to ``X``:

- ``untracked``: ``f`` tracks no single true feature (best r below the tracking cut);
- ``path``: ``Y`` is ``X`` or one of its ancestors (an expected parent, or a Full latent tracking
  a farther ancestor than the nearest tracked one);
- ``descendant``: ``Y`` lies below ``X``: the Full latent is the finer one, so "u is a part of
  f" has the direction wrong, though the pair correlates as a parent pair would;
- ``relative``: ``Y`` shares a root with ``X`` but is on another branch (a sibling or a cousin,
  e.g. a Full latent that absorbed a shared ancestor);
- ``other_tree``: ``Y`` is in another tree (or outside the forest).

Off the path, the pair's correlation has to come from somewhere: either ``u`` also fires on
``Y`` (Pearson r of ``u`` with ``Y`` at least :data:`MIXED_R`: the Ultra latent mixes two
features) or ``f`` also fires on ``X`` (the Full latent carries ``X`` without tracking it, which
the truth's one-best-feature rule does not see). Those two are counted beside the relations
(``ultra_mixes``, ``full_mixes``; a pair can be both; ``unmixed``: neither, the errors
that no ambiguity of the truth explains).

The error kinds of :func:`verdict_errors`:

- ``novel_called_child``: truth ``novel`` (no ancestor of ``X`` tracked in Full), ours a parent;
- ``child_called_novel``: truth ``child``, ours ``novel`` (no relation: there is no ``f``);
- ``wrong_parent``: truth ``child``, ours a parent that is not one of the expected ones.

:func:`lenient_truth` rescores under two readings of the truth that the team has not chosen
between (the issue's truth stays the one every table reports): ``absorbed``, where a feature
``X`` counts as covered when a Full latent tracks a descendant of ``X`` (that latent absorbed
``X``'s direction, Chanin et al. 2024, so Full reconstructs the inputs where ``X`` fires), and
``mixed``, where a latent whose best-correlated Full latent mixes features with it
(``ultra_mixes`` or ``full_mixes`` above) may be called either that latent's child or what the
truth says. Both say how much of a gap is the truth's one-best-feature rule and how much the
verdicts'.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = [
    "EQUIVALENT_MISSES",
    "MIXED_R",
    "MIX_KEYS",
    "RELATIONS",
    "TRUTH_VARIANTS",
    "equivalent_misses",
    "lenient_truth",
    "pearson_columns",
    "relation_to",
    "verdict_errors",
]

MIX_KEYS: tuple[str, ...] = ("ultra_mixes", "full_mixes", "unmixed")
"""Counts of off-path errors by which latent also fires on the other's feature (docstring)."""

MIXED_R = 0.2
"""A latent "also fires on" a true feature when their Pearson r reaches this: far above chance
(about 1 / sqrt(20,000) = 0.007 for an unrelated pair in these worlds) and below the 0.3 at which
the verdicts call a pair related. Anatomy only; no verdict reads it."""

RELATIONS: tuple[str, ...] = ("untracked", "path", "descendant", "relative", "other_tree")
"""What a Full latent is to an Ultra latent's true feature (module docstring)."""


def _chain(parent: np.ndarray, feature: int) -> list[int]:
    """``feature``, its parent, ... up to its root."""
    out = [int(feature)]
    while parent[out[-1]] >= 0:
        out.append(int(parent[out[-1]]))
        if len(out) > len(parent):
            raise ValueError(f"the hierarchy has a cycle through feature {feature}")
    return out


def pearson_columns(a: sp.spmatrix | np.ndarray, b: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Pearson r of every column of ``a`` (n, p) with every column of ``b`` (n, q), zeros
    included, shape (p, q), float64; NaN where a column is constant."""
    a, b = sp.csc_matrix(a, dtype=np.float64), sp.csc_matrix(b, dtype=np.float64)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a has {a.shape[0]} rows and b has {b.shape[0]}; expected the same examples")
    n = a.shape[0]
    ma, mb = np.asarray(a.mean(0)).ravel(), np.asarray(b.mean(0)).ravel()
    va = np.asarray(a.multiply(a).mean(0)).ravel() - ma**2
    vb = np.asarray(b.multiply(b).mean(0)).ravel() - mb**2
    cov = (a.T @ b).toarray() / n - np.outer(ma, mb)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.outer(va, vb) > 0, cov / np.sqrt(np.outer(va, vb)), np.nan)


def _mixes(u: int, f: int, x: int, y: int, ultra_feature_r: np.ndarray, full_feature_r: np.ndarray) -> tuple[bool, bool]:
    """Whether Ultra latent ``u`` fires on Full latent ``f``'s feature ``y`` (-1: none), and
    whether ``f`` fires on ``u``'s feature ``x`` (Pearson r >= :data:`MIXED_R`)."""
    return bool(y >= 0 and ultra_feature_r[u, y] >= MIXED_R), bool(full_feature_r[f, x] >= MIXED_R)


def relation_to(x: int, y: int, f_tracks: bool, parent: np.ndarray) -> str:
    """One of :data:`RELATIONS`: what a Full latent whose best true feature is ``y`` (and which
    tracks it when ``f_tracks``) is to the true feature ``x``.

    Parameters
    ----------
    x, y : true feature indices (``y`` -1 for a dead Full latent, which counts as untracked)
    parent : int array of shape (n_true,), each feature's parent, -1 for roots and features
        outside the forest
    """
    if not f_tracks or y < 0:
        return "untracked"
    up_x, up_y = _chain(parent, x), _chain(parent, y)
    if y in up_x:
        return "path"
    if x in up_y:
        return "descendant"
    return "relative" if up_x[-1] == up_y[-1] else "other_tree"


def verdict_errors(
    category: Sequence[str],
    expected_parents: Sequence[Sequence[int]],
    ours_parent: np.ndarray,
    ultra_feature: np.ndarray,
    full_feature: np.ndarray,
    full_tracks: np.ndarray,
    parent: np.ndarray,
    *,
    ultra_feature_r: np.ndarray | None = None,
    full_feature_r: np.ndarray | None = None,
) -> dict[str, dict[str, int]]:
    """Every parent / novel error among the Ultra latents that track a true feature, counted by
    kind and by :func:`relation_to` of the Full latent involved.

    Parameters
    ----------
    category : per Ultra latent, the truth's ``child`` / ``novel`` / ``untracked`` / ``dead``
    expected_parents : per Ultra latent, the acceptable Full parents (empty unless a child)
    ours_parent : int array of shape (K_ultra,), the verdict's parent, -1 for none (novel)
    ultra_feature : int array of shape (K_ultra,), each Ultra latent's best true feature
    full_feature : int array of shape (K_full,), each Full latent's best true feature (-1 dead)
    full_tracks : bool array of shape (K_full,), the Full latent tracks its best feature
    parent : int array of shape (n_true,), the hierarchy (see :func:`relation_to`)
    ultra_feature_r, full_feature_r : float arrays of shape (K_ultra, n_true) and
        (K_full, n_true), each latent's Pearson r with every true feature
        (:func:`pearson_columns`); with them, off-path errors are also counted as
        ``ultra_mixes`` / ``full_mixes`` (module docstring)

    Returns
    -------
    ``{"novel_called_child": {relation: n, ...}, "wrong_parent": {relation: n, ...},
    "child_called_novel": {"n": n}}``, relations in :data:`RELATIONS` order, zeros kept, then
    :data:`MIX_KEYS` when the correlations are given.
    """
    ours_parent = np.asarray(ours_parent)
    if len(category) != len(ours_parent) or len(expected_parents) != len(ours_parent):
        raise ValueError(
            f"category ({len(category)}), expected_parents ({len(expected_parents)}) and "
            f"ours_parent ({len(ours_parent)}) must all have one entry per Ultra latent"
        )
    mixes = ultra_feature_r is not None and full_feature_r is not None
    counts: dict[str, Counter] = {"novel_called_child": Counter(), "wrong_parent": Counter()}
    child_called_novel = 0
    for u, cat in enumerate(category):
        f = int(ours_parent[u])
        if cat == "novel" and f >= 0:
            kind = "novel_called_child"
        elif cat == "child" and f < 0:
            child_called_novel += 1
            continue
        elif cat == "child" and f not in set(expected_parents[u]):
            kind = "wrong_parent"
        else:
            continue
        x, y = int(ultra_feature[u]), int(full_feature[f])
        relation = relation_to(x, y, bool(full_tracks[f]), parent)
        counts[kind][relation] += 1
        if mixes and relation != "path":
            ultra_mixes, full_mixes = _mixes(u, f, x, y, ultra_feature_r, full_feature_r)
            counts[kind]["ultra_mixes"] += ultra_mixes
            counts[kind]["full_mixes"] += full_mixes
            counts[kind]["unmixed"] += not (ultra_mixes or full_mixes)
    keys = RELATIONS + (MIX_KEYS if mixes else ())
    out = {kind: {key: int(c[key]) for key in keys} for kind, c in counts.items()}
    out["child_called_novel"] = {"n": child_called_novel}
    return out


TRUTH_VARIANTS: dict[str, tuple[bool, bool]] = {
    "issue": (False, False),
    "absorbed": (True, False),
    "mixed": (False, True),
    "both": (True, True),
}
"""The readings of :func:`lenient_truth`, as its ``(absorbed, mixed)`` flags; ``issue`` is the
ground truth as built."""


def lenient_truth(
    category: Sequence[str],
    expected_parents: Sequence[Sequence[int] | None],
    candidate: np.ndarray,
    ultra_feature: np.ndarray,
    full_feature: np.ndarray,
    full_tracks: np.ndarray,
    parent: np.ndarray,
    *,
    absorbed: bool = False,
    mixed: bool = False,
    ultra_feature_r: np.ndarray | None = None,
    full_feature_r: np.ndarray | None = None,
) -> tuple[np.ndarray, list[list[int]], np.ndarray]:
    """The truth of the novel and parent verdicts under a more lenient reading (module docstring).

    ``absorbed``: an Ultra latent whose truth is ``novel`` but whose feature ``X`` is a strict
    ancestor of a feature that a Full latent tracks is a child, its acceptable parents those Full
    latents. ``mixed``: a scored latent (``child`` or ``novel``) whose ``candidate`` Full latent
    ``f`` is not acceptable, is off ``X``'s path, and mixes with it (one of the two fires on the
    other's feature, Pearson r >= :data:`MIXED_R`) is *ambiguous*: both ``f`` and the reading's
    own answer are right, so ``f`` becomes acceptable and the latent leaves the novel scores.
    The candidate is every predictor's: the verdicts give a latent its best-correlated Full latent
    or none, and so does the threshold baseline, so one truth serves ours and the baselines.

    Parameters
    ----------
    category, expected_parents, ultra_feature, full_feature, full_tracks, parent : as in
        :func:`verdict_errors` (``expected_parents`` entries may be None for no parent)
    candidate : int array of shape (K_ultra,), each latent's best-correlated Full latent (-1 none)
    ultra_feature_r, full_feature_r : as in :func:`verdict_errors`; required with ``mixed``

    Returns
    -------
    novel : bool array of shape (K_ultra,), the latent is novel under this reading
    accepted : per Ultra latent, its acceptable Full parents (sorted; empty for a novel one)
    ambiguous : bool array of shape (K_ultra,), left out of the novel scores (``mixed`` only)
    """
    candidate = np.asarray(candidate)
    if len(category) != len(candidate) or len(expected_parents) != len(candidate):
        raise ValueError(
            f"category ({len(category)}), expected_parents ({len(expected_parents)}) and "
            f"candidate ({len(candidate)}) must all have one entry per Ultra latent"
        )
    if mixed and (ultra_feature_r is None or full_feature_r is None):
        raise ValueError("mixed=True needs ultra_feature_r and full_feature_r (each latent's r with every true feature)")
    below: dict[int, set[int]] = {}  # true feature -> the Full latents tracking a strict descendant
    if absorbed:
        for f in np.flatnonzero(np.asarray(full_tracks, dtype=bool)):
            if full_feature[f] >= 0:
                for ancestor in _chain(parent, int(full_feature[f]))[1:]:
                    below.setdefault(ancestor, set()).add(int(f))
    novel = np.zeros(len(category), dtype=bool)
    ambiguous = np.zeros(len(category), dtype=bool)
    accepted: list[list[int]] = []
    for u, cat in enumerate(category):
        x = int(ultra_feature[u])
        ok = set(expected_parents[u] or ()) if cat == "child" else set()
        novel[u] = cat == "novel"
        if novel[u] and x in below:
            ok, novel[u] = set(below[x]), False
        f = int(candidate[u])
        if mixed and cat in ("child", "novel") and f >= 0 and f not in ok:
            y = int(full_feature[f])
            if relation_to(x, y, bool(full_tracks[f]), parent) != "path" and any(
                _mixes(u, f, x, y, ultra_feature_r, full_feature_r)
            ):
                ok.add(f)
                ambiguous[u] = True
        accepted.append(sorted(ok) if not novel[u] else [])
    return novel, accepted, ambiguous


EQUIVALENT_MISSES: tuple[str, ...] = ("novel", "other_parent", "ultra_duplicates", "single")
"""Why a same-feature Ultra latent is not called equivalent (:func:`equivalent_misses`)."""


def equivalent_misses(
    same_feature_pairs: Sequence[Sequence[int]],
    ours_parent: np.ndarray,
    ours_equivalent: np.ndarray,
    ultra_feature: np.ndarray,
    ultra_tracks: np.ndarray,
) -> dict[str, int]:
    """The same-feature Ultra latents (some Full latent tracks the feature they track) that the
    verdict does not call equivalent to such a Full latent, by why:

    - ``novel``: no parent;
    - ``other_parent``: its parent does not track its feature;
    - ``ultra_duplicates``: its parent does, and at least one other Ultra latent tracks the same
      feature (the wide SAE has several latents for it; each looks like a part of the Full one);
    - ``single``: its parent does, and it is the only Ultra latent tracking the feature.

    Parameters
    ----------
    same_feature_pairs : the truth's ``[full, ultra]`` pairs tracking one true feature
    ours_parent : int array of shape (K_ultra,), the verdict's parent, -1 for none
    ours_equivalent : bool array of shape (K_ultra,), class ``equivalent``
    ultra_feature : int array of shape (K_ultra,), each Ultra latent's best true feature
    ultra_tracks : bool array of shape (K_ultra,), the Ultra latent tracks it

    Returns ``{reason: n}`` in :data:`EQUIVALENT_MISSES` order, with ``n_same_feature`` (the
    Ultra latents counted) and ``n_called`` (those called equivalent to a same-feature one).
    """
    fulls_of: dict[int, set[int]] = {}
    for f, u in same_feature_pairs:
        fulls_of.setdefault(int(u), set()).add(int(f))
    trackers = Counter(int(ultra_feature[u]) for u in np.flatnonzero(np.asarray(ultra_tracks, dtype=bool)))
    out = dict.fromkeys(EQUIVALENT_MISSES, 0)
    called = 0
    for u, fulls in sorted(fulls_of.items()):
        p = int(ours_parent[u])
        if p in fulls and bool(ours_equivalent[u]):
            called += 1
        elif p < 0:
            out["novel"] += 1
        elif p not in fulls:
            out["other_parent"] += 1
        else:
            out["ultra_duplicates" if trackers[int(ultra_feature[u])] >= 2 else "single"] += 1
    return {**out, "n_same_feature": len(fulls_of), "n_called": called}
