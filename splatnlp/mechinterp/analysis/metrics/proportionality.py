"""How closely a larger-side feature is a multiple of its parent wherever the parent fires: the
evidence that the two read one feature rather than a feature and one of its parts.

For a larger-side feature u and its parent p over n examples, with sums over the examples where
p is active (u is 0 where inactive)::

    proportionality(u, p) = (sum p u)^2 / (sum p^2 * sum u^2)

the squared cosine between the two activation vectors restricted to p's active examples: 1 when
u = c p wherever p fires, whatever u does where p is silent. A latent that reads p's feature
scales with it on all of p's examples; a child fires on a part of them, with its own magnitude,
so most of p's activation meets u at 0 or at a magnitude that does not follow p's. Both sums
over the co-active examples are the co-active correlation's (align: ``pairs.inside_mass``; one
pair: ``pairs.coactive_sums_of``), and ``sum p^2`` is p's own second moment
(``pairs.column_power_sums``), so it costs no pass of its own.

``sibling_proportionality[u]`` is the median proportionality of u's siblings (the other
larger-side features with the same parent; NaN without any): the rule of
:mod:`~splatnlp.mechinterp.analysis.metrics.verdicts` asks u to stand out from them, because a
planted demo child that fires weakly on every parent event (as matched filters do) is nearly
proportional too, but then so are all its siblings.
"""

from __future__ import annotations

import numpy as np

from splatnlp.mechinterp.analysis.metrics.siblings import _sibling_groups

__all__ = ["others_median", "proportionality", "sibling_median"]


def proportionality(co_product: np.ndarray, co_large_sq: np.ndarray, small_sq: np.ndarray) -> np.ndarray:
    """Elementwise ``co_product**2 / (small_sq * co_large_sq)`` (module docstring), NaN where a
    sum is 0 or undefined.

    Parameters
    ----------
    co_product : float array, ``sum p u`` over the examples where both are active
    co_large_sq : float array, ``sum u^2`` over those examples
    small_sq : float array, ``sum p^2`` over all of p's active examples
    """
    num = np.asarray(co_product, dtype=np.float64) ** 2
    den = np.asarray(small_sq, dtype=np.float64) * np.asarray(co_large_sq, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Clipped: float rounding can put an exact multiple a few ulps above 1.
        return np.where(den > 0, np.minimum(num / den, 1.0), np.nan)


def sibling_median(values: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """For every larger-side feature, the median of ``values`` over its siblings (the other
    features with the same ``parent``; NaN values skipped), float64 of shape (K_large,): NaN
    without a parent, without a sibling, or when no sibling has a value.

    Parameters
    ----------
    values : float array of shape (K_large,), e.g. each feature's :func:`proportionality`
    parent : int array of shape (K_large,), each feature's parent (-1: none)
    """
    values = np.asarray(values, dtype=np.float64)
    parent = np.asarray(parent, dtype=np.int64)
    if values.shape != parent.shape:
        raise ValueError(f"values have shape {values.shape}, parent {parent.shape}; expected the same")
    out = np.full(len(values), np.nan)
    for _, group in _sibling_groups(parent):
        out[group] = others_median(values[group])
    return out


def others_median(values: np.ndarray) -> np.ndarray:
    """For each of one parent's q children, the median of ``values`` over the other q - 1
    (NaN values skipped; NaN when none is left), float64 of shape (q,)."""
    v = np.asarray(values, dtype=np.float64)
    out = np.full(len(v), np.nan)
    for i in range(len(v)):
        others = np.delete(v, i)
        others = others[np.isfinite(others)]
        if len(others):
            out[i] = float(np.median(others))
    return out

