"""How well each metric recovers the demo's planted structure (reads the ground truth).

Usage: python benchmarks/eval_demo.py [--preset default] [--demo-dir DIR] [--sample N]

Prints, for each metric alone and for combined_score:
- parent recovery: share of Ultra children/equivalents whose top Full match is the planted parent;
- R-precision of decomposition: for each split Full parent with k planted children, the share of
  its k best Ultra matches that are its children;
and for the matcher's own decomposition (correlation threshold + NNLS) micro precision/recall,
the share of novel Ultra / full-only Full features reported unique, and of children wrongly so.
Both top-token definitions are measured.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from splatnlp.mechinterp import config as cfg
from splatnlp.mechinterp.analysis import FeatureMatcher, MatchOptions
from splatnlp.mechinterp.context import MechInterpContext
from splatnlp.mechinterp.demo.build import load_ground_truth

METRICS = (
    "combined_score",
    "activation_correlation",
    "top_token_overlap",
    "decoder_cosine",
    "coactivation_jaccard",
    "p_target_given_source",
    "p_source_given_target",
)


def argbest(a: np.ndarray) -> int:
    return int(np.argmax(np.nan_to_num(a, nan=-np.inf)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--demo-dir", default=None)
    ap.add_argument("--sample", type=int, default=0, help="evaluate a random sample of features (0: all)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    folder = cfg.demo_dir(args.preset) if args.demo_dir is None else args.demo_dir
    truth = load_ground_truth(folder)
    ultra = MechInterpContext(f"{folder}/ultra")
    full = MechInterpContext(f"{folder}/full")
    rng = np.random.default_rng(0)
    ucls = np.array(truth.ultra_class)
    fcls = np.array(truth.full_class)
    parent = np.array([-1 if p is None else p for p in truth.ultra_parent])
    children = truth.children()
    results: dict = {"preset": args.preset, "n_examples": ultra.n_examples}

    def pick(ids: np.ndarray) -> np.ndarray:
        return rng.choice(ids, size=min(args.sample, len(ids)), replace=False) if args.sample else ids

    for method in ("enrichment", "frequency"):
        opts = MatchOptions(top_token_method=method)
        u2f = FeatureMatcher(ultra, full, options=opts)
        f2u = FeatureMatcher(full, ultra, options=opts)
        t0 = time.perf_counter()
        with_parent = pick(np.flatnonzero(parent >= 0))
        hits = {m: 0 for m in METRICS}
        for u in with_parent:
            sc = u2f.score_all(int(u))
            for m in METRICS:
                hits[m] += argbest(sc[m]) == parent[u]
        parent_recovery = {m: hits[m] / len(with_parent) for m in METRICS}
        split = pick(np.flatnonzero(fcls == "split"))
        rprec = {m: [] for m in METRICS}
        tp = fp = fn = 0
        for f in split:
            kids = set(children[int(f)])
            sc = f2u.score_all(int(f))
            for m in METRICS:
                best = np.argsort(-np.nan_to_num(sc[m], nan=-np.inf), kind="stable")[: len(kids)]
                rprec[m].append(len(kids & set(best.tolist())) / len(kids))
            members = {x.feature for x in f2u.find_decomposition(int(f)).members}
            tp += len(members & kids)
            fp += len(members - kids)
            fn += len(kids - members)
        novel = pick(np.flatnonzero(ucls == "novel"))
        kids_sample = rng.choice(with_parent, size=min(500, len(with_parent)), replace=False)
        full_only = np.flatnonzero(fcls == "full_only")
        unique_novel = np.mean([u2f.find_matches(int(u), decompose=False).is_unique for u in novel])
        unique_kids = np.mean([u2f.find_matches(int(u), decompose=False).is_unique for u in kids_sample])
        unique_full_only = np.mean([f2u.find_matches(int(f), decompose=False).is_unique for f in full_only])
        results[method] = {
            "parent_recovery": parent_recovery,
            "decomposition_r_precision": {m: float(np.mean(v)) for m, v in rprec.items()},
            "decomposition_precision": tp / max(tp + fp, 1),
            "decomposition_recall": tp / max(tp + fn, 1),
            "novel_ultra_unique": float(unique_novel),
            "full_only_unique": float(unique_full_only),
            "children_wrongly_unique": float(unique_kids),
            "n_children_evaluated": int(len(with_parent)),
            "n_split_parents_evaluated": int(len(split)),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        r = results[method]
        print(f"\n== top-token method: {method} ({r['seconds']} s) ==")
        print(f"{'metric':<24} {'parent recovery':>16} {'decomp R-precision':>19}")
        for m in METRICS:
            print(f"{m:<24} {parent_recovery[m]:>16.3f} {r['decomposition_r_precision'][m]:>19.3f}")
        print(
            f"matcher decomposition: precision {r['decomposition_precision']:.3f}, recall "
            f"{r['decomposition_recall']:.3f}; unique: novel Ultra {unique_novel:.3f}, full-only Full "
            f"{unique_full_only:.3f}, children (false) {unique_kids:.3f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
