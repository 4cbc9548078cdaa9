"""Result models of the metrics layer: pydantic only, so that reports and the research store can
embed them without importing the numerics (torch)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

__all__ = ["CKAResult", "none_reasons"]


def none_reasons(model: BaseModel, reasons: Mapping[str, str]) -> dict[str, str]:
    """``{field: why}`` for every top-level field of ``model`` that is None, from ``reasons``.

    Every report that can hold a None says why in its ``undefined`` mapping, so a reader never
    has to guess whether None means "not computed", "not applicable" or "no such thing". A None
    field that ``reasons`` does not explain is left out; the tests of each report kind check
    that none is.
    """
    return {name: reasons[name] for name in type(model).model_fields if getattr(model, name) is None and name in reasons}


class CKAResult(BaseModel):
    """What :func:`linear_cka` returns (JSON round-trip)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float | None
    """Linear CKA: ``mean HSIC(K, L) / sqrt(mean HSIC(K, K) mean HSIC(L, L))`` over the batches.
    1 for codes equal up to an orthogonal map and a scale, near 0 for unrelated codes; the
    debiased estimate can fall slightly below 0 (or, on tiny batches, above 1). None when
    undefined, see ``undefined_reason``."""

    undefined_reason: str | None
    """Why ``value`` is None (a side with zero variance across the examples, e.g. all-zero
    codes); None when ``value`` is defined."""

    n_examples: int
    """Rows of the inputs (the examples both code matrices describe)."""

    batch_size: int
    """The requested rows per batch; the last batch may be shorter, or up to 3 rows longer."""

    n_batches: int
    """Batches the examples were split into (a trailing remainder under 4 rows is merged into the
    previous batch)."""

    debiased: bool
    """True: the unbiased HSIC estimator of Song et al. 2012 per batch; False: the biased
    ``tr(K H L H) / (m - 1)^2``."""

    null_quantiles: dict[str, float] | None
    """Quantiles ("0.5", "0.95", "0.99") of CKA with B's example order shuffled within each
    batch, one CKA per permutation: the chance level of ``value``. None when
    ``n_permutations == 0`` or ``value`` is undefined."""

    n_permutations: int
    """Permutations behind ``null_quantiles`` (0: no null)."""

    seed: int
    """Seed of the permutations (``numpy.random.default_rng(seed)``)."""

    elapsed_s: float
    """Wall-clock seconds of the whole call, validation included."""
