"""A feature's examples: what its top-activating builds are, what they share, which weapons.

:func:`feature_examples` reads one feature's column of the memory-mapped codes (CSC, no torch)
and the context's example set, and returns :class:`FeatureExamples`: the top-activating
examples, the activation quantiles over the active examples, the token enrichment table
(tokens over-represented among the active examples) and the weapon distribution. Generic token
data (examples with tokens and no weapon) gives tokens and an empty weapon list.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel

from splatnlp.mechinterp.context.load import MechInterpContext

__all__ = ["ExampleRow", "FeatureExamples", "TokenEnrichment", "WeaponShare", "feature_examples"]

QUANTILES: dict[str, float] = {"q50": 0.5, "q90": 0.9, "q99": 0.99, "max": 1.0}
"""Keys of :attr:`FeatureExamples.quantiles` and the quantile each holds (numpy's default
linear interpolation over the active examples' codes)."""


class ExampleRow(BaseModel):
    """One example with the feature's code on it."""

    example_id: int
    """The example's id in the example set (``ctx.examples.example_ids``), not its row."""
    weapon: str | None
    """Its weapon token; None for generic token data."""
    tokens: list[str]
    """Its tokens other than the weapon (its ability tokens; all its tokens for generic data)."""
    activation: float
    """The feature's code on it (> 0)."""


class TokenEnrichment(BaseModel):
    """How much more often a token occurs among the feature's active examples than overall."""

    token: str
    n_active: int
    """Active examples holding the token (a repeated token counts once per example)."""
    rate_active: float
    """``n_active / n_active_examples``."""
    rate_all: float
    """Share of all examples holding the token."""
    enrichment: float
    """``rate_active / rate_all`` (> 0: only tokens seen on an active example are listed)."""


class WeaponShare(BaseModel):
    """How many of the feature's active examples use one weapon."""

    weapon: str
    n_active: int
    share: float
    """``n_active`` / the feature's active examples."""


class FeatureExamples(BaseModel):
    """The examples of one feature (from :func:`feature_examples`)."""

    model: str
    """The context's model type (``ultra``, ``full``, ...)."""
    feature: int
    n_examples: int
    """Examples in the context."""
    n_active: int
    """Examples where the feature's code is > 0."""
    activation_rate: float
    """``n_active / n_examples``."""
    quantiles: dict[str, float]
    """``q50``, ``q90``, ``q99``, ``max`` of the code over the active examples; empty when the
    feature is never active."""
    top: list[ExampleRow]
    """The top-activating examples, strongest first (ties by example row)."""
    tokens: list[TokenEnrichment]
    """Tokens of the active examples by enrichment, then count, then vocabulary order; weapons
    are not tokens here (see :attr:`weapons`)."""
    weapons: list[WeaponShare]
    """Weapons of the active examples, most frequent first (ties by name); empty for generic
    token data."""
    note: str = ""
    """Why a list is empty (a feature never active, generic token data); empty otherwise."""


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _example_token_counts(
    indptr: np.ndarray, tokens: np.ndarray, rows: np.ndarray | None, n_tokens: int
) -> np.ndarray:
    """int64 (n_tokens,): how many of the examples ``rows`` (None: all) hold each token, once
    per example."""
    if rows is None:
        # Copies: sum_duplicates below sorts and compacts its arrays in place, and these are
        # the example set's own.
        sub_indptr, sub_tokens = np.array(indptr), np.array(tokens)
    else:
        starts = indptr[rows]
        lengths = indptr[rows + 1] - starts
        sub_indptr = np.r_[0, np.cumsum(lengths)]
        # Positions of every token of the chosen rows, without a Python loop over rows.
        positions = np.arange(sub_indptr[-1]) + np.repeat(starts - sub_indptr[:-1], lengths)
        sub_tokens = tokens[positions]
    mat = sp.csr_matrix(
        (np.ones(len(sub_tokens), dtype=np.float32), sub_tokens, sub_indptr),
        shape=(len(sub_indptr) - 1, n_tokens),
    )
    # A token repeated within one example counts once. scipy's sum_duplicates, not np.unique
    # of (example, token) keys: 0.16 s against 30 s for 10^6 examples of 10 tokens (numpy 2.4).
    mat.sum_duplicates()
    return np.bincount(mat.indices, minlength=n_tokens).astype(np.int64)


def feature_examples(
    ctx: MechInterpContext, feature: int, *, top: int = 10, n_tokens: int = 15
) -> FeatureExamples:
    """The top-activating examples of ``feature``, its activation quantiles, token enrichment
    and weapon distribution.

    Parameters
    ----------
    ctx : the context holding the feature
    feature : feature id, ``0 <= feature < ctx.n_features``
    top : how many top-activating examples to list (>= 1)
    n_tokens : how many tokens the enrichment table lists (>= 1)

    Returns
    -------
    :class:`FeatureExamples`. A feature never active has ``n_active`` 0, empty lists and
    quantiles, and ``note`` says so.

    Raises TypeError / ValueError naming a bad feature id (with the valid range), and
    ValueError naming a ``top`` or ``n_tokens`` below 1.
    """
    if not isinstance(ctx, MechInterpContext):
        raise TypeError(f"ctx must be a MechInterpContext, got {type(ctx).__name__}")
    feature = ctx.check_feature(feature)
    top = _check_count("top", top)
    n_tokens = _check_count("n_tokens", n_tokens)
    rows, values = ctx.codes.feature(feature)  # one CSC column: the active examples
    rows = np.asarray(rows, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    n_examples = ctx.n_examples
    n_active = len(rows)
    base = dict(
        model=ctx.model_type,
        feature=feature,
        n_examples=n_examples,
        n_active=n_active,
        activation_rate=n_active / n_examples if n_examples else 0.0,
    )
    examples = ctx.examples
    if n_active == 0:
        return FeatureExamples(
            **base,
            quantiles={},
            top=[],
            tokens=[],
            weapons=[],
            note=f"{ctx.model_type} feature {feature} is never active on the {n_examples} "
            "examples: no top examples, quantiles, tokens or weapons",
        )
    quantiles = dict(
        zip(QUANTILES, np.quantile(values, list(QUANTILES.values())).tolist(), strict=True)
    )
    # Strongest first; ties by example row, as the context's stored top examples are.
    order = np.lexsort((rows, -values))[:top]
    top_rows = [
        ExampleRow(
            example_id=int(examples.example_ids[r]),
            weapon=examples.weapon(int(r)),
            tokens=examples.abilities(int(r)),
            activation=float(values[i]),
        )
        for i, r in zip(order, rows[order], strict=True)
    ]

    n_vocab = len(examples.vocab)
    indptr, ability_tokens = examples.ability_indptr, examples.ability_tokens
    count_all = _example_token_counts(indptr, ability_tokens, None, n_vocab)
    count_active = _example_token_counts(indptr, ability_tokens, rows, n_vocab)
    seen = np.flatnonzero(count_active > 0)
    rate_active = count_active[seen] / n_active
    rate_all = count_all[seen] / n_examples
    # One division of exact integers: two tokens with the same ratio get the same float, so the
    # count decides their order (rate_active / rate_all rounds twice and can differ in the last bit).
    enrichment = (count_active[seen] * n_examples) / (count_all[seen] * n_active).astype(np.float64)
    ranked = seen[np.lexsort((seen, -count_active[seen], -enrichment))][:n_tokens]
    where = {t: i for i, t in enumerate(seen)}
    token_rows = [
        TokenEnrichment(
            token=examples.vocab.token(int(t)),
            n_active=int(count_active[t]),
            rate_active=float(rate_active[where[t]]),
            rate_all=float(rate_all[where[t]]),
            enrichment=float(enrichment[where[t]]),
        )
        for t in ranked
    ]

    weapons: list[WeaponShare] = []
    note = ""
    if examples.has_weapons:
        weapon_ids = np.asarray(examples.weapon_tokens)[rows]
        ids, counts = np.unique(weapon_ids[weapon_ids >= 0], return_counts=True)
        names = [examples.weapon_vocab.token(int(w)) for w in ids]
        for k in sorted(range(len(ids)), key=lambda k: (-counts[k], names[k])):
            weapons.append(
                WeaponShare(
                    weapon=names[k], n_active=int(counts[k]), share=float(counts[k] / n_active)
                )
            )
    else:
        note = "no weapons: the examples are generic token data (tokens, no weapon)"
    if not token_rows:
        note = (note + "; " if note else "") + "no tokens: the active examples hold none"
    return FeatureExamples(
        **base, quantiles=quantiles, top=top_rows, tokens=token_rows, weapons=weapons, note=note
    )
