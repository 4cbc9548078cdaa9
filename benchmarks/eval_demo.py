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

from splatnlp.mechinterp.analysis import FeatureMatcher, MatchOptions
from splatnlp.mechinterp.analysis.match.matcher import SORT_KEYS
from splatnlp.mechinterp.analysis.metrics import pairs as M
from splatnlp.mechinterp.context import MechInterpContext
from splatnlp.mechinterp.context import config as cfg
from splatnlp.mechinterp.demo.build import load_ground_truth

METRICS = SORT_KEYS  # combined_score and every pair metric


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

    # Activation metrics, decomposition and uniqueness do not depend on the top-token method;
    # only top_token_overlap (and so combined_score) does, so both methods share one pass.
    methods = ("enrichment", "frequency")
    u2f = {m: FeatureMatcher(ultra, full, options=MatchOptions(top_token_method=m)) for m in methods}
    f2u = {m: FeatureMatcher(full, ultra, options=MatchOptions(top_token_method=m)) for m in methods}
    weights = MatchOptions().weights

    def all_scores(matchers: dict, feature: int) -> dict[str, dict[str, np.ndarray]]:
        base = matchers["enrichment"].score_all(feature)
        out = {"enrichment": base}
        alt = matchers["frequency"]
        tok, _ = M.set_jaccard(alt._source.top_tokens[feature], alt._target.token_sets)
        if alt._source.count[feature] == 0:  # dead source: undefined, as in the matcher
            tok[:] = np.nan
        freq = dict(base, top_token_overlap=tok)
        freq["combined_score"] = sum(w * freq[name] for name, w in weights.items())
        out["frequency"] = freq
        return out

    t0 = time.perf_counter()
    with_parent = pick(np.flatnonzero(parent >= 0))
    hits = {m: {k: 0 for k in METRICS} for m in methods}
    for u in with_parent:
        for m, sc in all_scores(u2f, int(u)).items():
            for k in METRICS:
                hits[m][k] += argbest(sc[k]) == parent[u]
    split = pick(np.flatnonzero(fcls == "split"))
    rprec = {m: {k: [] for k in METRICS} for m in methods}
    tp = fp = fn = 0
    for f in split:
        kids = set(children[int(f)])
        for m, sc in all_scores(f2u, int(f)).items():
            for k in METRICS:
                best = np.argsort(-np.nan_to_num(sc[k], nan=-np.inf), kind="stable")[: len(kids)]
                rprec[m][k].append(len(kids & set(best.tolist())) / len(kids))
        members = {x.feature for x in f2u["enrichment"].find_decomposition(int(f)).members}
        tp += len(members & kids)
        fp += len(members - kids)
        fn += len(kids - members)
    novel = pick(np.flatnonzero(ucls == "novel"))
    full_only = np.flatnonzero(fcls == "full_only")
    matcher_u, matcher_f = u2f["enrichment"], f2u["enrichment"]
    unique_novel = float(np.mean([matcher_u.find_matches(int(u), decompose=False).is_unique for u in novel]))
    unique_kids = float(np.mean([matcher_u.find_matches(int(u), decompose=False).is_unique for u in with_parent]))
    unique_full_only = float(np.mean([matcher_f.find_matches(int(f), decompose=False).is_unique for f in full_only]))
    results["decomposition_precision"] = tp / max(tp + fp, 1)
    results["decomposition_recall"] = tp / max(tp + fn, 1)
    results["novel_ultra_unique"] = unique_novel
    results["full_only_unique"] = unique_full_only
    results["children_wrongly_unique"] = unique_kids
    results["n_children_evaluated"] = int(len(with_parent))
    results["n_split_parents_evaluated"] = int(len(split))
    results["seconds"] = round(time.perf_counter() - t0, 1)
    for m in methods:
        results[m] = {
            "parent_recovery": {k: hits[m][k] / len(with_parent) for k in METRICS},
            "decomposition_r_precision": {k: float(np.mean(v)) for k, v in rprec[m].items()},
        }
    print(f"{len(with_parent)} Ultra children/equivalents, {len(split)} split Full parents ({results['seconds']} s)")
    print(f"{'metric':<24} {'parent recovery':>22} {'decomp R-precision':>22}")
    print(f"{'':<24} {'enrichment / frequency':>22} {'enrichment / frequency':>22}")
    for k in METRICS:
        pr = [results[m]["parent_recovery"][k] for m in methods]
        rp = [results[m]["decomposition_r_precision"][k] for m in methods]
        print(f"{k:<24} {pr[0]:>12.3f} / {pr[1]:.3f} {rp[0]:>14.3f} / {rp[1]:.3f}")
    print(
        f"matcher decomposition: precision {results['decomposition_precision']:.3f}, recall "
        f"{results['decomposition_recall']:.3f}; reported unique: novel Ultra {unique_novel:.3f}, "
        f"full-only Full {unique_full_only:.3f}, children (wrongly) {unique_kids:.3f}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
