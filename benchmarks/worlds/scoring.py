"""Metric helpers for the world benchmark: confusion counts, pair sets, thresholds.

Pure functions over plain arrays and sets, no sae-lens and no package imports, so that
``python -m pytest benchmarks/worlds`` checks them against hand-made cases. A score that cannot
be computed (no positives predicted, nothing to recall) is None, never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "BinaryScores",
    "Pair",
    "PairScores",
    "aggregate",
    "best_threshold",
    "binary_scores",
    "child_recall",
    "confidence_counts",
    "f1_of",
    "membership_accuracy",
    "pair_scores",
    "shared_threshold",
    "threshold_predictions",
]

Pair = tuple[int, int]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def f1_of(precision: float | None, recall: float | None) -> float | None:
    """Harmonic mean of a precision and a recall (None where undefined)."""
    # Either side 0 means nothing right: F1 is 0 even when the other side is undefined
    # (e.g. true pairs exist and none were predicted); otherwise both must be defined.
    if precision == 0 or recall == 0:
        return 0.0
    if precision is None or recall is None:
        return None
    return 2 * precision * recall / (precision + recall)


@dataclass
class BinaryScores:
    """Confusion counts of a yes/no verdict and the scores from them."""

    tp: int
    fp: int
    fn: int
    tn: int
    accuracy: float | None
    """(tp + tn) / all; None when there is nothing to score."""
    precision: float | None
    """tp / (tp + fp); None when nothing was predicted positive."""
    recall: float | None
    """tp / (tp + fn); None when there are no positives."""
    f1: float | None
    """Harmonic mean of precision and recall; None when either is None."""

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def binary_scores(
    predicted: Sequence[bool] | np.ndarray, truth: Sequence[bool] | np.ndarray
) -> BinaryScores:
    """Confusion counts of ``predicted`` against ``truth`` (equal-length boolean arrays)."""
    p = np.asarray(predicted, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    if p.shape != t.shape or p.ndim != 1:
        raise ValueError(
            f"predicted and truth must be 1-D of one length, got {p.shape} and {t.shape}"
        )
    tp = int((p & t).sum())
    fp = int((p & ~t).sum())
    fn = int((~p & t).sum())
    tn = int((~p & ~t).sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return BinaryScores(
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        accuracy=_ratio(tp + tn, p.size),
        precision=precision,
        recall=recall,
        f1=f1_of(precision, recall),
    )


@dataclass
class PairScores:
    """Predicted pairs against true pairs."""

    n_predicted: int
    n_true: int
    n_correct: int
    precision: float | None
    """Correct / predicted; None when nothing was predicted."""
    recall: float | None
    """Correct / true; None when there are no true pairs."""
    f1: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def pair_scores(predicted: Iterable[Pair], truth: Iterable[Pair]) -> PairScores:
    """Precision and recall of a set of (full, ultra) pairs (duplicates count once)."""
    pred = {(int(a), int(b)) for a, b in predicted}
    true = {(int(a), int(b)) for a, b in truth}
    correct = len(pred & true)
    precision, recall = _ratio(correct, len(pred)), _ratio(correct, len(true))
    return PairScores(
        n_predicted=len(pred),
        n_true=len(true),
        n_correct=correct,
        precision=precision,
        recall=recall,
        f1=f1_of(precision, recall),
    )


def child_recall(predicted: Iterable[Pair], truth: Iterable[Pair]) -> float | None:
    """Share of the truth's children (the ultra ids of ``truth``) that some predicted pair
    places under one of their true parents: a child with several acceptable parents counts once,
    and is found when any one of them is predicted, as the parent score accepts any of them.
    None when the truth is empty."""
    pred = {(int(a), int(b)) for a, b in predicted}
    parents: dict[int, set[int]] = {}
    for a, b in truth:
        parents.setdefault(int(b), set()).add(int(a))
    if not parents:
        return None
    found = sum(any((f, u) in pred for f in fs) for u, fs in parents.items())
    return found / len(parents)


def membership_accuracy(
    predicted: Sequence[int], accepted: Sequence[Sequence[int]]
) -> float | None:
    """Share of items whose predicted id is one of its accepted ids (-1 = no prediction, always
    wrong). None when there are no items."""
    if len(predicted) != len(accepted):
        raise ValueError(f"{len(predicted)} predictions for {len(accepted)} items")
    if not predicted:
        return None
    hits = sum(int(p) in set(ok) for p, ok in zip(predicted, accepted, strict=True))
    return hits / len(predicted)


def confidence_counts(
    category: Sequence[str],
    expected: Sequence[Sequence[int] | None],
    predicted_class: Sequence[str],
    predicted_parent: Sequence[int],
    confidence: Sequence[str | None],
) -> dict[str, dict[str, list[int]]]:
    """How often the verdicts of each confidence level were right, over the scored latents
    (truth ``child`` or ``novel``).

    Parameters
    ----------
    category : per Ultra latent, the truth's ``child`` / ``novel`` / ``untracked`` / ``dead``
    expected : per Ultra latent, its acceptable parents (``[]`` when novel, None when unscored)
    predicted_class, predicted_parent, confidence : per Ultra latent, the alignment's class,
        parent (-1 = none) and ``confidence`` (``high`` / ``low``; None or "" = not given)

    Returns ``{"parent": {level: [right, n]}, "novel": {level: [right, n]}}``: ``parent`` counts
    the latents given a parent (right: the parent is an expected one), ``novel`` those called
    novel (right: the truth says novel). Levels not given are left out.
    """
    n = len(category)
    if not len(expected) == len(predicted_class) == len(predicted_parent) == len(confidence) == n:
        raise ValueError(
            f"per-latent inputs differ in length: {n}, {len(expected)}, {len(predicted_class)}, "
            f"{len(predicted_parent)}, {len(confidence)}"
        )
    out: dict[str, dict[str, list[int]]] = {"parent": {}, "novel": {}}
    for u in range(n):
        level = confidence[u]
        if category[u] not in ("child", "novel") or not level:
            continue
        if predicted_class[u] == "novel":
            kind, right = "novel", category[u] == "novel"
        elif int(predicted_parent[u]) >= 0:
            kind, right = "parent", int(predicted_parent[u]) in set(expected[u] or ())
        else:
            continue
        cell = out[kind].setdefault(level, [0, 0])
        cell[0] += int(right)
        cell[1] += 1
    return out


def threshold_predictions(best_r: np.ndarray, threshold: float) -> np.ndarray:
    """The threshold baseline's ``novel`` verdict: best correlation below ``threshold``, or
    undefined (NaN: nothing to correlate with)."""
    r = np.asarray(best_r, dtype=np.float64)
    return ~(np.nan_to_num(r, nan=-np.inf) >= threshold)


def _candidate_cuts(best_r: np.ndarray) -> list[float]:
    """Every cut that splits the observed values differently: the lowest value, each midpoint
    between neighbours, and just above the highest (-inf alone when none is finite)."""
    finite = np.unique(best_r[np.isfinite(best_r)])
    if finite.size == 0:
        return [-np.inf]
    return [finite[0], *((finite[:-1] + finite[1:]) / 2), finite[-1] + 1e-9]


def best_threshold(best_r: np.ndarray, novel: np.ndarray) -> tuple[float, BinaryScores]:
    """The oracle threshold: the cut on the best correlation that maximises ``novel`` F1 (ties:
    accuracy, then the lower cut), over every cut between observed values.

    Parameters
    ----------
    best_r : float array of shape (n,), NaN where undefined
    novel : bool array of shape (n,), the truth

    Returns
    -------
    threshold, scores at that threshold
    """
    r = np.asarray(best_r, dtype=np.float64)
    if r.size == 0:
        raise ValueError("best_threshold needs at least one item")
    best: tuple[float, BinaryScores] | None = None
    for cut in _candidate_cuts(r):
        s = binary_scores(threshold_predictions(r, cut), novel)
        key = (s.f1 if s.f1 is not None else -1.0, s.accuracy or 0.0)
        if best is None or key > (
            best[1].f1 if best[1].f1 is not None else -1.0,
            best[1].accuracy or 0.0,
        ):
            best = (float(cut), s)
    if best is None:
        raise ValueError("best_threshold needs at least one item")
    return best


def shared_threshold(
    worlds: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[float, list[BinaryScores]]:
    """The one cut on the best correlation that maximises the *mean* ``novel`` F1 over several
    worlds (ties: mean accuracy, then the lower cut): the single-threshold baseline chosen on dev
    worlds, as our rules are, then applied unchanged to every other world.

    Parameters
    ----------
    worlds : one ``(best_r, novel)`` pair per world, as :func:`best_threshold` takes them

    Returns
    -------
    threshold, the scores of each world at that threshold (in the order given)
    """
    if not worlds:
        raise ValueError("shared_threshold needs at least one world")
    values = [np.asarray(r, dtype=np.float64) for r, _ in worlds]
    cuts = _candidate_cuts(np.concatenate(values))
    def scored(cut: float) -> tuple[tuple[float, float], float, list[BinaryScores]]:
        scores = [binary_scores(threshold_predictions(r, cut), y) for r, (_, y) in zip(values, worlds, strict=True)]
        key = (
            float(np.mean([s.f1 if s.f1 is not None else 0.0 for s in scores])),
            float(np.mean([s.accuracy or 0.0 for s in scores])),
        )
        return key, float(cut), scores

    # max keeps the first of equal keys: the lowest such cut.
    _, cut, scores = max((scored(c) for c in cuts), key=lambda item: item[0])
    return cut, scores


def aggregate(
    rows: Sequence[dict[str, float | None]], keys: Sequence[str]
) -> dict[str, float | None]:
    """Mean over rows of each key, skipping None (None when every row lacks it)."""
    out: dict[str, float | None] = {}
    for key in keys:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out
