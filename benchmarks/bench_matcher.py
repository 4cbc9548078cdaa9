"""Matcher speed and memory at real scale, side by side with the upstream method.

Usage: python benchmarks/bench_matcher.py [--demo-dir DIR] [--queries 50] [--upstream-queries 20]
                                         [--alignment DIR | --no-index]

Needs the ``real`` demo preset (24,576 x 2,048 features, d_model 512, 100,000 examples, about 190
and 2,200 active features per example); builds it first if absent (several minutes, ~5 GB).
Measures, in this one process:
- loading both contexts, and the first (cold) query of each direction;
- warm ``find_matches`` medians, Ultra->Full (all 2,048 candidates) and Full->Ultra (all 24,576),
  exact over all examples, with the default report (decomposition included);
- the same queries answered from a saved alignment's pair index (``FeatureMatcher(...,
  alignment=DIR)``; ``DIR`` defaults to ``<demo>/alignment``, written first with
  ``splatnlp-mechinterp align`` when absent), and whether their verdicts equal the ones from
  the codes;
- peak resident memory (ru_maxrss, memory-mapped pages included);
- a re-implementation of the upstream matcher (500 sampled candidates, per-candidate loop, top
  tokens from the top 10% of at most 1,000 examples, correlation over shared top examples, 0.0 on
  failure) on the same features, and how often each finds the planted parent.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from splatnlp.mechinterp.analysis import FeatureMatcher, MatchOptions
from splatnlp.mechinterp.context import MechInterpContext
from splatnlp.mechinterp.context import config as cfg
from splatnlp.mechinterp.demo.build import demo_is_built, load_ground_truth

# Issue 12's targets: warm queries without an index, with one, load + cold queries, peak memory.
TARGET_U2F_MS, TARGET_F2U_MS, TARGET_INDEX_MS, TARGET_LOAD_S, TARGET_PEAK_GB = 10, 50, 2, 3.0, 4.0


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def rss_split_gb() -> dict[str, float]:
    """Current resident memory split into anonymous (the process's own) and file-backed pages
    (memory-mapped code files: clean page cache the kernel can drop at any time)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                out[key] = round(int(value.split()[0]) / 2**20, 2)
    return out


class UpstreamMatcher:
    """The upstream SplatNLP matcher's method, re-implemented on our contexts for comparison."""

    def __init__(self, source: MechInterpContext, target: MechInterpContext, seed: int = 0):
        self.source, self.target = source, target
        self.rng = np.random.default_rng(seed)
        self.special = {i for i, t in enumerate(source.token_names) if t.startswith("<")}
        self.tokens = source.examples.token_matrix().tocsr()

    def _top_examples(self, ctx: MechInterpContext, feature: int) -> tuple[np.ndarray, np.ndarray]:
        rows, values = ctx.codes.feature(feature)
        if len(rows) > 1000:
            keep = np.argpartition(-values, 999)[:1000]
            rows, values = rows[keep], values[keep]
        order = np.argsort(-values, kind="stable")
        return rows[order], values[order]

    def _top_tokens(self, rows: np.ndarray) -> set[int]:
        top = rows[: max(1, len(rows) // 10)]  # the top 10% of the (at most 1,000) top examples
        counts: Counter[int] = Counter()
        for r in top:
            counts.update(int(t) for t in self.tokens.indices[self.tokens.indptr[r] : self.tokens.indptr[r + 1]])
        return {t for t, _ in counts.most_common(20) if t not in self.special}

    def find_matches(self, feature: int, n_candidates: int = 500) -> list[tuple[int, float]]:
        src_rows, src_vals = self._top_examples(self.source, feature)
        src_tokens = self._top_tokens(src_rows)
        src_map = dict(zip(src_rows.tolist(), src_vals.tolist(), strict=True))
        candidates = self.rng.choice(self.target.n_features, size=n_candidates, replace=False)
        scored = []
        for c in candidates:
            try:
                rows, vals = self._top_examples(self.target, int(c))
                tokens = self._top_tokens(rows)
                union = src_tokens | tokens
                jaccard = len(src_tokens & tokens) / len(union) if union else 0.0
                shared = [(src_map[r], v) for r, v in zip(rows.tolist(), vals.tolist(), strict=True) if r in src_map]
                if len(shared) < 3:
                    corr = 0.0
                else:
                    a, b = np.array(shared).T
                    corr = float(np.corrcoef(a, b)[0, 1])
                    corr = 0.0 if np.isnan(corr) else corr
            except Exception:  # noqa: BLE001 - upstream returned 0.0 on any failure
                jaccard, corr = 0.0, 0.0
            scored.append((int(c), 0.4 * jaccard + 0.6 * corr))
        scored.sort(key=lambda x: -x[1])
        return scored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", default=None, help="a built demo (default: <data dir>/demo/real)")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--upstream-queries", type=int, default=20)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--alignment", default=None, help="a saved alignment of the two contexts (default <demo>/alignment)")
    ap.add_argument("--no-index", action="store_true", help="skip the queries from a saved pair index")
    args = ap.parse_args()
    folder = Path(args.demo_dir) if args.demo_dir else cfg.demo_dir("real")
    if not demo_is_built(folder):
        print(f"building the 'real' demo preset into {folder} ...", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, "-m", "splatnlp.mechinterp", "demo", "--preset", "real", "--out", str(folder), "-q"],
            check=True,
        )
    truth = load_ground_truth(folder)
    rng = np.random.default_rng(0)

    t0 = time.perf_counter()
    ultra = MechInterpContext(folder / "ultra")
    full = MechInterpContext(folder / "full")
    t_load = time.perf_counter() - t0
    u2f = FeatureMatcher(ultra, full)
    f2u = FeatureMatcher(full, ultra)
    ucls, fcls = np.array(truth.ultra_class), np.array(truth.full_class)
    parent = np.array([-1 if p is None else p for p in truth.ultra_parent])
    kids = rng.choice(np.flatnonzero(parent >= 0), size=args.queries, replace=False)
    fulls = rng.choice(np.flatnonzero(fcls == "split"), size=args.queries, replace=False)

    t0 = time.perf_counter()
    u2f.find_matches(int(kids[0]))
    t_cold_u2f = time.perf_counter() - t0
    t0 = time.perf_counter()
    f2u.find_matches(int(fulls[0]))
    t_cold_f2u = time.perf_counter() - t0

    def timed(matcher: FeatureMatcher, features: np.ndarray) -> tuple[list[float], list]:
        times, reports = [], []
        for f in features:
            t = time.perf_counter()
            reports.append(matcher.find_matches(int(f)))
            times.append((time.perf_counter() - t) * 1000)
        return times, reports

    u2f_ms, u2f_reports = timed(u2f, kids)
    f2u_ms, _ = timed(f2u, fulls)
    # The same queries without report.verdict (MatchOptions(verdict=False)): the verdict of an
    # Ultra source needs its parent's other children, the costly part; is_unique is unchanged.
    fast = MatchOptions(verdict=False)
    u2f_fast_ms, u2f_fast = timed(FeatureMatcher(ultra, full, options=fast), kids)
    f2u_fast_ms, _ = timed(FeatureMatcher(full, ultra, options=fast), fulls)
    same_unique = float(np.mean([a.is_unique == b.is_unique for a, b in zip(u2f_reports, u2f_fast, strict=True)]))
    # The compiled one-against-all kernel (MatchOptions(compiled=True)): the same reports.
    compiled = MatchOptions(compiled=True)
    u2f_c, f2u_c = FeatureMatcher(ultra, full, options=compiled), FeatureMatcher(full, ultra, options=compiled)
    u2f_c.find_matches(int(kids[0]))  # loads numba once
    u2f_compiled_ms, u2f_compiled = timed(u2f_c, kids)
    f2u_compiled_ms, _ = timed(f2u_c, fulls)
    u2f_cfast_ms, _ = timed(FeatureMatcher(ultra, full, options=MatchOptions(compiled=True, verdict=False)), kids)
    f2u_cfast_ms, _ = timed(FeatureMatcher(full, ultra, options=MatchOptions(compiled=True, verdict=False)), fulls)
    same_compiled = float(np.mean([(a.verdict.label, a.verdict.parent) == (b.verdict.label, b.verdict.parent)
                                   for a, b in zip(u2f_reports, u2f_compiled, strict=True)]))
    indexed = None
    if not args.no_index:
        indexed = _indexed_queries(folder, Path(args.alignment) if args.alignment else folder / "alignment",
                                   ultra, full, kids, fulls, u2f_reports, timed)
    ours_hits = float(np.mean([r.matches[0].target_feature == parent[k] for r, k in zip(u2f_reports, kids, strict=True)]))
    peak_ours = peak_rss_gb()
    split_ours = rss_split_gb()

    upstream = UpstreamMatcher(ultra, full)
    up_kids = kids[: args.upstream_queries]
    up_ms, up_hits = [], []
    for k in up_kids:
        t = time.perf_counter()
        res = upstream.find_matches(int(k))
        up_ms.append((time.perf_counter() - t) * 1000)
        up_hits.append(res[0][0] == parent[k])
    ours_same = [r.elapsed_ms for r in u2f_reports[: args.upstream_queries]]

    fig = {
        "n_examples": ultra.n_examples,
        "n_features": {"ultra": ultra.n_features, "full": full.n_features},
        "active_per_example": {
            "ultra": ultra.manifest.codes.mean_active_per_example,
            "full": full.manifest.codes.mean_active_per_example,
        },
        "load_both_s": round(t_load, 4),
        "cold_first_query_s": {"ultra_to_full": round(t_cold_u2f, 2), "full_to_ultra": round(t_cold_f2u, 2)},
        "warm_median_ms": {
            "ultra_to_full": round(statistics.median(u2f_ms), 1),
            "full_to_ultra": round(statistics.median(f2u_ms), 1),
        },
        "warm_median_ms_without_verdict": {
            "ultra_to_full": round(statistics.median(u2f_fast_ms), 1),
            "full_to_ultra": round(statistics.median(f2u_fast_ms), 1),
        },
        "is_unique_same_without_verdict": same_unique,
        "warm_median_ms_compiled": {
            "ultra_to_full": round(statistics.median(u2f_compiled_ms), 1),
            "full_to_ultra": round(statistics.median(f2u_compiled_ms), 1),
            "ultra_to_full_without_verdict": round(statistics.median(u2f_cfast_ms), 1),
            "full_to_ultra_without_verdict": round(statistics.median(f2u_cfast_ms), 1),
            "same_verdicts": same_compiled,
        },
        "from_index": indexed,
        "peak_rss_gb": round(peak_ours, 2),
        "rss_after_queries_gb": split_ours,
        "upstream": {
            "median_ms": round(statistics.median(up_ms), 1),
            "queries": len(up_kids),
            "candidates": 500,
            "finds_planted_parent": float(np.mean(up_hits)),
        },
        "ours_finds_planted_parent": ours_hits,
        "speed_ratio_upstream_over_ours": round(statistics.median(up_ms) / statistics.median(ours_same), 1),
        "peak_rss_gb_after_upstream": round(peak_rss_gb(), 2),
        "ultra_classes_sampled": dict(Counter(ucls[kids].tolist())),
    }
    print(json.dumps(fig, indent=2))
    print(
        f"\nUltra->Full warm median {fig['warm_median_ms']['ultra_to_full']} ms (target <= {TARGET_U2F_MS}), "
        f"Full->Ultra {fig['warm_median_ms']['full_to_ultra']} ms (target <= {TARGET_F2U_MS}), "
        f"load {fig['load_both_s']} s + cold first queries {t_cold_u2f:.2f}/{t_cold_f2u:.2f} s "
        f"(target <= {TARGET_LOAD_S}), peak RSS {fig['peak_rss_gb']} GB (target <= {TARGET_PEAK_GB})\n"
        f"without the verdict (MatchOptions(verdict=False)): Ultra->Full {fig['warm_median_ms_without_verdict']['ultra_to_full']} ms, "
        f"Full->Ultra {fig['warm_median_ms_without_verdict']['full_to_ultra']} ms; is_unique the same for {same_unique:.0%}\n"
        f"upstream method: {fig['upstream']['median_ms']} ms per query over 500 candidates, "
        f"{fig['speed_ratio_upstream_over_ours']}x our time over all candidates; planted parent found "
        f"{fig['upstream']['finds_planted_parent']:.0%} (upstream) vs {ours_hits:.0%} (ours)"
    )
    c = fig["warm_median_ms_compiled"]
    print(
        f"compiled kernel (MatchOptions(compiled=True)): Ultra->Full {c['ultra_to_full']} ms "
        f"({c['ultra_to_full_without_verdict']} without the verdict; target <= {TARGET_U2F_MS}), Full->Ultra "
        f"{c['full_to_ultra']} ms ({c['full_to_ultra_without_verdict']} without; target <= {TARGET_F2U_MS}); "
        f"verdicts equal for {c['same_verdicts']:.0%}"
    )
    if indexed is not None:
        print(
            f"from the saved pair index ({indexed['alignment']}): Ultra->Full "
            f"{indexed['warm_median_ms']['ultra_to_full']} ms, Full->Ultra {indexed['warm_median_ms']['full_to_ultra']} ms "
            f"(target <= {TARGET_INDEX_MS}); verdicts equal to the codes' for {indexed['same_verdict_ultra_to_full']:.0%}; "
            f"index {indexed['index_gb']} GB on disk"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2))


def _indexed_queries(folder, alignment, ultra, full, kids, fulls, reference, timed) -> dict:
    """Warm medians of the same queries from a saved alignment's pair index (aligned first with
    the public CLI when the folder is absent)."""
    if not (alignment / "index" / "index.json").is_file():
        print(f"aligning into {alignment} for the pair index ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "splatnlp.mechinterp", "align", str(folder / "full"), str(folder / "ultra"),
             "--out", str(alignment), "--no-plots", "-q"],
            check=True,
        )
        print(f"aligned in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    u2f, f2u = FeatureMatcher(ultra, full, alignment=alignment), FeatureMatcher(full, ultra, alignment=alignment)
    if u2f.index is None or f2u.index is None:
        raise SystemExit(f"{alignment} has no usable pair index for these contexts")
    u2f.find_matches(int(kids[0]))
    f2u.find_matches(int(fulls[0]))
    u_ms, u_reports = timed(u2f, kids)
    f_ms, _ = timed(f2u, fulls)
    same = [a.verdict.label == b.verdict.label and a.verdict.parent == b.verdict.parent
            for a, b in zip(reference, u_reports, strict=True)]
    size = sum(f.stat().st_size for f in (alignment / "index").iterdir())
    return {
        "alignment": str(alignment),
        "warm_median_ms": {"ultra_to_full": round(statistics.median(u_ms), 2), "full_to_ultra": round(statistics.median(f_ms), 2)},
        "same_verdict_ultra_to_full": float(np.mean(same)),
        "index_gb": round(size / 1e9, 2),
    }


if __name__ == "__main__":
    main()
