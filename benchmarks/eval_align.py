"""How well whole-dictionary alignment recovers the demo's planted structure (reads the ground truth).

Usage: python benchmarks/eval_align.py [--preset default] [--demo-dir DIR] [--json FILE]

Runs ``align_contexts(full, ultra)`` once and prints, against the planted classes:
- precision and recall of each predicted class (split parents, equivalents, unique/full-only and
  dead Full features; split children, equivalents, novel and dead Ultra features);
- the share of planted children / equivalents whose assigned parent is the planted parent, and
  for each metric the share whose best Full match by that metric alone is the planted parent;
- the split-count agreement: for planted split parents, |assigned| vs |planted children|;
- the null's chance levels beside the mean best scores, and the timings.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from splatnlp.mechinterp.analysis.align.dictionary import METRICS, AlignOptions, align_contexts
from splatnlp.mechinterp.context import MechInterpContext
from splatnlp.mechinterp.context import config as cfg
from splatnlp.mechinterp.demo.build import load_ground_truth

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
    print(report.summary())
    print("timings (s):", report.timings_s)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
