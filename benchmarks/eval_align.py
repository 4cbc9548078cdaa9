"""How well whole-dictionary alignment recovers the demo's planted structure (reads the ground truth).

Usage: python benchmarks/eval_align.py [--preset default] [--demo-dir DIR] [--json FILE]

Runs ``align_contexts(full, ultra)`` once and prints, against the planted classes:
- precision and recall of each predicted class (split parents, equivalents, unique/full-only and
  dead Full features; split children, equivalents, novel and dead Ultra features);
- the share of planted children / equivalents whose assigned parent is the planted parent, and
  for each metric the share whose best Full match by that metric alone is the planted parent;
- the split-count agreement: for planted split parents, |assigned| vs |planted children|;
- the null's chance levels beside the mean best scores, and the timings;
- for a preset with trained SAEs (``trained``: latent ids are not planted concepts, the truth
  says which concept each latent tracks, ``splatnlp/mechinterp/demo/truth.py``), the figures of
  ``benchmarks/eval_worlds.py`` over the Ultra latents that track a concept: parent = one of the
  expected parents (ours and argmax correlation), novel precision/recall/F1 beside the
  single-threshold baseline at its oracle cut, split pairs from the assignment, equivalent pairs
  against the one-child truth and, per latent, against every same-concept pair (the issue's
  count, ``eqU`` of ``eval_worlds.py``; ground truths built before 2026-12-04 lack the pairs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.worlds.scoring import (  # noqa: E402
    best_threshold,
    binary_scores,
    child_recall,
    confidence_counts,
    f1_of,
    membership_accuracy,
    pair_scores,
)
from splatnlp.mechinterp.analysis.align.dictionary import METRICS, AlignOptions, align_contexts  # noqa: E402
from splatnlp.mechinterp.analysis.align.tables import larger_side_confidence  # noqa: E402
from splatnlp.mechinterp.context import MechInterpContext  # noqa: E402
from splatnlp.mechinterp.context import config as cfg  # noqa: E402
from splatnlp.mechinterp.demo.build import load_ground_truth  # noqa: E402

# Predicted class -> planted class it should recover.
FULL_PAIRS = (("split_parent", "split"), ("equivalent", "equivalent"), ("unique", "full_only"), ("dead", "dead"))
ULTRA_PAIRS = (("split_child", "child"), ("equivalent", "equivalent"), ("novel", "novel"), ("dead", "dead"))


def precision_recall(pred: np.ndarray, true: np.ndarray) -> dict[str, float | int]:
    tp = int((pred & true).sum())
    return {
        "precision": tp / max(int(pred.sum()), 1),
        "recall": tp / max(int(true.sum()), 1),
        "n_predicted": int(pred.sum()),
        "n_planted": int(true.sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--demo-dir", default=None)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    folder = cfg.demo_dir(args.preset) if args.demo_dir is None else args.demo_dir
    truth = load_ground_truth(folder)
    full, ultra = MechInterpContext(f"{folder}/full"), MechInterpContext(f"{folder}/ultra")
    t0 = time.perf_counter()
    tables = align_contexts(full, ultra, options=AlignOptions(), progress=True)
    elapsed = time.perf_counter() - t0
    report = tables.report
    fcls, ucls = np.array(truth.full_class), np.array(truth.ultra_class)
    planted_parent = np.array([-1 if p is None else p for p in truth.ultra_parent])
    A, B = tables.a["class_label"], tables.b["class_label"]

    results: dict = {"preset": truth.preset, "n_examples": full.n_examples, "elapsed_s": elapsed}
    results["full"] = {pred: precision_recall(A == pred, fcls == true) for pred, true in FULL_PAIRS}
    results["ultra"] = {pred: precision_recall(B == pred, ucls == true) for pred, true in ULTRA_PAIRS}
    has_parent = planted_parent >= 0
    results["assigned_parent_is_planted"] = {
        kind: float((tables.b["parent"][ucls == kind] == planted_parent[ucls == kind]).mean())
        for kind in ("child", "equivalent")
    }
    results["best_by_metric_is_planted_parent"] = {
        m: float((tables.b[f"best_{m}_index"][has_parent] == planted_parent[has_parent]).mean()) for m in METRICS
    }
    split = np.flatnonzero(fcls == "split")
    planted_counts = np.bincount(planted_parent[ucls == "child"], minlength=full.n_features)[split]
    assigned = tables.a["n_assigned"][split]
    results["split_counts"] = {
        "exact": float((assigned == planted_counts).mean()),
        "within_1": float((np.abs(assigned - planted_counts) <= 1).mean()),
        "mean_planted": float(planted_counts.mean()),
        "mean_assigned": float(assigned.mean()),
    }
    if truth.ultra_parents is not None:
        results["trained"] = trained_scores(tables, truth)
    else:  # planted: children and equivalents have their one planted parent
        expected = [[int(p)] if p >= 0 else [] for p in planted_parent]
        results["confidence"] = _confidence(tables, ucls, expected)
    results["report"] = report.model_dump(mode="json")

    print(f"{truth.preset} demo, {full.n_examples} examples: align_contexts(full, ultra) {elapsed:.1f} s")
    print("| side | predicted class | planted class | precision | recall | predicted | planted |")
    print("|---|---|---|---|---|---|---|")
    for side, pairs in (("full", FULL_PAIRS), ("ultra", ULTRA_PAIRS)):
        for pred, true in pairs:
            r = results[side][pred]
            print(
                f"| {side} | {pred} | {true} | {r['precision']:.3f} | {r['recall']:.3f} | "
                f"{r['n_predicted']} | {r['n_planted']} |"
            )
    print("assigned parent is the planted one:", {k: round(v, 3) for k, v in results["assigned_parent_is_planted"].items()})
    print("best match by metric alone is the planted parent:")
    for m, v in results["best_by_metric_is_planted_parent"].items():
        print(f"  {m:<24} {v:.3f}")
    sc = results["split_counts"]
    print(
        f"split counts: exact {sc['exact']:.3f}, within 1 {sc['within_1']:.3f} "
        f"(mean planted {sc['mean_planted']:.1f}, assigned {sc['mean_assigned']:.1f})"
    )
    if "confidence" in results:
        print("verdicts right by confidence: " + _confidence_cells(results["confidence"]))
    if "trained" in results:
        t = results["trained"]
        print("trained SAEs (scored Ultra latents track a concept):", json.dumps(t["counts"]))
        print(
            f"  parent: ours {t['parent_ours']:.3f}, argmax correlation {t['parent_top']:.3f}\n"
            f"  novel: P {t['novel_precision']:.3f} R {t['novel_recall']:.3f} F1 {t['novel_f1']:.3f} "
            f"(acc {t['novel_accuracy']:.3f}); best single threshold F1 {t['novel_oracle_f1']:.3f} "
            f"at {t['novel_oracle_threshold']:.2f}\n"
            f"  split pairs (assigned): P {t['split_precision']:.3f} R {t['split_recall']:.3f}; "
            f"equivalent pairs: P {t['equivalent_precision']:.3f} R {t['equivalent_recall']:.3f}"
        )
        if t["equivalent_latent_f1"] is not None:
            print(
                "  equivalent per latent (every same-concept pair, as eval_worlds' eqU): "
                f"P {t['equivalent_latent_precision']:.3f} R {t['equivalent_latent_recall']:.3f} "
                f"F1 {t['equivalent_latent_f1']:.3f}"
            )
        print("  verdicts right by confidence: " + _confidence_cells(t["confidence"]))
    print(report.summary())
    print("timings (s):", report.timings_s)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


def _confidence(tables, ucls: np.ndarray, expected: list) -> dict[str, dict[str, list[int]]]:
    """``scoring.confidence_counts`` of the Ultra side (``tables.b``); an equivalent latent is a
    child with its acceptable parents, as eval_worlds scores it."""
    category = np.where(ucls == "equivalent", "child", ucls).tolist()
    return confidence_counts(
        category, expected, tables.b["class_label"].astype(str).tolist(), tables.b["parent"].tolist(),
        larger_side_confidence(tables.b).tolist(),
    )


def _confidence_cells(counts: dict[str, dict[str, list[int]]]) -> str:
    """``scoring.confidence_counts`` in a line: share right and n per verdict kind and level."""
    return ", ".join(
        f"{kind} {level} {right / n:.3f} (n={n})"
        for kind, levels in counts.items()
        for level, (right, n) in sorted(levels.items())
    )


def trained_scores(tables, truth) -> dict:
    """eval_worlds' figures for a demo whose SAEs were trained (ground truth by tracking)."""
    ucls, fcls = np.array(truth.ultra_class), np.array(truth.full_class)
    expected = truth.ultra_parents
    scored = np.flatnonzero(np.isin(ucls, ("child", "equivalent", "novel")))
    kids = np.flatnonzero(np.isin(ucls, ("child", "equivalent")))
    parent = tables.b["parent"]
    label = tables.b["class_label"].astype(str)
    top = tables.b["best_activation_correlation_index"]
    top_score = tables.b["best_activation_correlation_score"]
    accepted = [expected[u] for u in kids]
    truth_novel = ucls[scored] == "novel"
    ours = binary_scores(label[scored] == "novel", truth_novel)
    cut, oracle = best_threshold(top_score[scored], truth_novel)
    split_parents = set(np.flatnonzero(tables.a["class_label"].astype(str) == "split_parent").tolist())
    by_parent: dict[int, list[int]] = {}
    for u in kids:
        for f in expected[u]:
            by_parent.setdefault(f, []).append(int(u))
    true_split = [(f, u) for f, us in by_parent.items() if len(us) >= 2 for u in us]
    asg = pair_scores([(int(parent[u]), int(u)) for u in np.flatnonzero(parent >= 0) if int(parent[u]) in split_parents], true_split)
    true_eq = [(truth.ultra_parent[u], int(u)) for u in np.flatnonzero(ucls == "equivalent")]
    confidence = _confidence(tables, ucls, list(expected))
    eq = pair_scores([(int(parent[u]), int(u)) for u in np.flatnonzero(label == "equivalent")], true_eq)
    # The issue's count, as eval_worlds' eqU: of the scored Ultra latents that track a concept some
    # Full latent tracks, those called equivalent to such a latent (recall), against every
    # scored equivalent (precision). Older ground truths lack the pairs.
    same_p = same_r = None
    if truth.same_feature_pairs is not None:
        scored_set = set(scored.tolist())
        truth_same = [(int(f), int(u)) for f, u in truth.same_feature_pairs if u in scored_set]
        eq_pred = [(int(parent[u]), int(u)) for u in np.flatnonzero(label == "equivalent") if u in scored_set]
        same_p, same_r = pair_scores(eq_pred, truth_same).precision, child_recall(eq_pred, truth_same)
    return {
        "counts": {c: int((ucls == c).sum()) for c in sorted(set(ucls))} | {"full_" + c: int((fcls == c).sum()) for c in sorted(set(fcls))},
        "parent_ours": membership_accuracy(parent[kids].tolist(), accepted),
        "parent_top": membership_accuracy(top[kids].tolist(), accepted),
        "novel_precision": ours.precision, "novel_recall": ours.recall, "novel_f1": ours.f1,
        "novel_accuracy": ours.accuracy,
        "novel_oracle_f1": oracle.f1, "novel_oracle_threshold": float(cut),
        "split_precision": asg.precision, "split_recall": asg.recall,
        "equivalent_precision": eq.precision, "equivalent_recall": eq.recall,
        "equivalent_latent_precision": same_p, "equivalent_latent_recall": same_r,
        "equivalent_latent_f1": f1_of(same_p, same_r),
        "confidence": confidence,
        "training": truth.training,
    }


if __name__ == "__main__":
    main()
