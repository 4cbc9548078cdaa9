"""Matcher speed and memory at real scale, side by side with the upstream method.

Usage: python benchmarks/bench_matcher.py [--demo-dir DIR] [--queries 50] [--upstream-queries 20]
                                         [--alignment DIR | --no-index] [--json FILE]

Needs the ``real`` demo preset (24,576 x 2,048 features, d_model 512, 100,000 examples, about 190
and 2,200 active features per example); builds it first if absent (about 2 minutes, 4.2 GiB on disk).
Each way of answering runs in its own process (``--mode``, started by this script), so each
peak is the memory a user's process answering that way needs, not the sum of all of them:
- ``codes``: loading both contexts, and the first (cold) query of each direction;
  warm ``find_matches`` medians, Ultra->Full (all 2,048 candidates) and Full->Ultra (all 24,576),
  exact over all examples, with the default report (decomposition included), summed by scipy
  (``MatchOptions(compiled=False)``);
- ``no-verdict``, ``compiled``, ``compiled-no-verdict``: the same queries with
  ``MatchOptions(verdict=False)``, ``compiled=True`` and both (``compiled="auto"``, the
  default, is ``compiled`` at this scale); the compiled modes also report where a query's time
  goes: inside each compiled pass, the time merely to read the entries the main pass sums, and
  the rest;
- ``index``: the same queries answered from a saved alignment's pair index
  (``FeatureMatcher(..., alignment=DIR)``; ``DIR`` defaults to ``<demo>/alignment``, written
  first with ``splatnlp-mechinterp align`` when absent);
- ``upstream``: a re-implementation of the upstream matcher (500 sampled candidates, per-candidate loop, top
  tokens from the top 10% of at most 1,000 examples, correlation over shared top examples, 0.0 on
  failure) on the same features, and how often each finds the planted parent.

Every process reports its peak resident memory (ru_maxrss: memory-mapped code pages included)
and its resident memory after the queries split into anonymous and file-backed pages. Verdicts
and top matches of every mode are compared with the ``codes`` mode's.
"""

from __future__ import annotations

import argparse
import functools
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


MODES = ("codes", "no-verdict", "compiled", "compiled-no-verdict", "index", "upstream")
OPTIONS = {  # explicit, whatever MatchOptions(compiled="auto") picks at this scale
    "codes": {"compiled": False},
    "no-verdict": {"compiled": False, "verdict": False},
    "compiled": {"compiled": True},
    "compiled-no-verdict": {"compiled": True, "verdict": False},
}


def _queries(folder: Path, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same sampled queries in every process: planted Ultra children, split Full features,
    and every Ultra feature's planted parent."""
    truth = load_ground_truth(folder)
    rng = np.random.default_rng(0)
    parent = np.array([-1 if p is None else p for p in truth.ultra_parent])
    kids = rng.choice(np.flatnonzero(parent >= 0), size=n, replace=False)
    fulls = rng.choice(np.flatnonzero(np.array(truth.full_class) == "split"), size=n, replace=False)
    return kids, fulls, parent


class KernelClock:
    """Where a compiled query's time goes: the time inside each compiled pass of the package
    (wrapped in place, so the matcher calls it as usual), and the time to merely read the code
    entries the query's own pass reads (the memory floor of that pass)."""

    PASSES = ("one_against_all", "columns_against_all")  # the main pass, the reverse passes

    def __init__(self) -> None:
        from splatnlp.mechinterp.analysis.metrics import kernels

        self.ms = dict.fromkeys(self.PASSES, 0.0)
        self.read: list = []
        for name in self.PASSES:
            setattr(kernels, name, self._wrap(name, getattr(kernels, name)))

    def _wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            self.ms[name] += (time.perf_counter() - t) * 1000
            if name == "one_against_all":  # read again after the query: the read floor
                self.read.append((np.asarray(args[0]), args[2]))
            return out

        return timed

    def take(self) -> dict[str, float]:
        """The kernel times since the last call, and the read floor of the main passes among them
        (timed now, outside the query)."""
        floor = 0.0
        for rows, csr in self.read:
            args = (rows, np.asarray(csr.indptr), np.asarray(csr.indices), np.asarray(csr.data))
            _read_rows(*args)  # the first read may fault pages in; the query had them mapped
            t = time.perf_counter()
            _read_rows(*args)
            floor += (time.perf_counter() - t) * 1000
        out = {**self.ms, "read_floor": floor}
        self.ms = dict.fromkeys(self.PASSES, 0.0)
        self.read = []
        return out


def _read_rows(rows: np.ndarray, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> float:
    """Read every stored entry of the given CSR rows (index and value) on all threads, summing
    them so that nothing is optimized away: what any pass over those entries must at least pay."""
    return _read_kernel()(rows, indptr, indices, data)


@functools.cache
def _read_kernel():
    """:func:`_read_rows`'s loop, compiled on first use (numba loads only in the compiled modes;
    a function defined inside another cannot be cached on disk)."""
    import numba

    @numba.njit(parallel=True, nogil=True)
    def read(rows, indptr, indices, data):  # pragma: no cover - compiled
        n_parts = numba.get_num_threads()
        out = np.zeros(n_parts)
        for t in numba.prange(n_parts):
            s = 0.0
            for k in range(t * len(rows) // n_parts, (t + 1) * len(rows) // n_parts):
                n = rows[k]
                for q in range(indptr[n], indptr[n + 1]):
                    s += data[q] + indices[q]
            out[t] = s
        return out.sum()

    return read


def _timed(matcher: FeatureMatcher, features: np.ndarray, clock: KernelClock | None = None) -> tuple[list[float], list, list]:
    times, reports, parts = [], [], []
    for f in features:
        if clock is not None:
            clock.take()
        t = time.perf_counter()
        reports.append(matcher.find_matches(int(f)))
        times.append((time.perf_counter() - t) * 1000)
        if clock is not None:
            parts.append(clock.take())
    return times, reports, parts


def _profile(times: list[float], parts: list[dict[str, float]]) -> dict[str, float]:
    """Medians per query: the whole query, each compiled pass, the main pass's read floor, and the
    rest (Python, NumPy and the verdict's other work)."""
    out = {"query": statistics.median(times)}
    for key in (*KernelClock.PASSES, "read_floor"):
        out[key] = statistics.median(p[key] for p in parts)
    out["rest"] = statistics.median(t - sum(p[k] for k in KernelClock.PASSES) for t, p in zip(times, parts, strict=True))
    return {k: round(v, 2) for k, v in out.items()}


def _summary(reports: list) -> list[list]:
    """What the modes are compared on: top match, verdict label and parent (None without)."""
    return [
        [r.matches[0].target_feature, r.verdict.label if r.verdict else None, r.verdict.parent if r.verdict else None, r.is_unique]
        for r in reports
    ]


def run_mode(mode: str, folder: Path, n: int, n_upstream: int, alignment: Path) -> dict:
    """One way of answering, in this process: timings, what it answered, and its memory."""
    kids, fulls, parent = _queries(folder, n)
    t0 = time.perf_counter()
    ultra = MechInterpContext(folder / "ultra")
    full = MechInterpContext(folder / "full")
    out: dict = {"mode": mode, "load_both_s": round(time.perf_counter() - t0, 4)}
    if mode == "upstream":
        upstream = UpstreamMatcher(ultra, full)
        times, hits = [], []
        for k in kids[:n_upstream]:
            t = time.perf_counter()
            res = upstream.find_matches(int(k))
            times.append((time.perf_counter() - t) * 1000)
            hits.append(bool(res[0][0] == parent[k]))
        out.update(median_ms=round(statistics.median(times), 1), queries=len(times), candidates=500,
                   finds_planted_parent=float(np.mean(hits)))
    else:
        kwargs = {"alignment": alignment} if mode == "index" else {"options": MatchOptions(**OPTIONS[mode])}
        u2f, f2u = FeatureMatcher(ultra, full, **kwargs), FeatureMatcher(full, ultra, **kwargs)
        if mode == "index" and (u2f.index is None or f2u.index is None):
            raise SystemExit(f"{alignment} has no usable pair index for these contexts")
        t0 = time.perf_counter()
        u2f.find_matches(int(kids[0]))
        cold_u2f = time.perf_counter() - t0
        t0 = time.perf_counter()
        f2u.find_matches(int(fulls[0]))
        cold_f2u = time.perf_counter() - t0
        clock = KernelClock() if OPTIONS.get(mode, {}).get("compiled") else None
        u_ms, u_reports, u_parts = _timed(u2f, kids, clock)
        f_ms, f_reports, f_parts = _timed(f2u, fulls, clock)
        if clock is not None:
            out["profile_ms"] = {"ultra_to_full": _profile(u_ms, u_parts), "full_to_ultra": _profile(f_ms, f_parts)}
        out.update(
            cold_first_query_s={"ultra_to_full": round(cold_u2f, 2), "full_to_ultra": round(cold_f2u, 2)},
            warm_median_ms={"ultra_to_full": round(statistics.median(u_ms), 2), "full_to_ultra": round(statistics.median(f_ms), 2)},
            ultra_to_full=_summary(u_reports),
            full_to_ultra=_summary(f_reports),
            finds_planted_parent=float(np.mean([r.matches[0].target_feature == parent[k] for r, k in zip(u_reports, kids, strict=True)])),
            elapsed_ms_first_upstream=[r.elapsed_ms for r in u_reports[:n_upstream]],
        )
        if mode == "index":
            out["index_gb"] = round(sum(f.stat().st_size for f in (alignment / "index").iterdir()) / 1e9, 2)
    out.update(peak_rss_gb=round(peak_rss_gb(), 2), rss_after_gb=rss_split_gb())
    return out


def _ensure_alignment(folder: Path, alignment: Path) -> None:
    """Align into ``alignment`` unless it already holds tables this version reads, with a pair
    index (an older layout is refused by ``load_tables``: rebuilt, as its message says)."""
    from splatnlp.mechinterp.analysis.align.tables import load_tables

    if (alignment / "index" / "index.json").is_file():
        try:
            load_tables(alignment)
            return
        except (FileNotFoundError, ValueError) as err:
            print(f"rebuilding {alignment}: {err}", file=sys.stderr, flush=True)
    print(f"aligning into {alignment} for the pair index ...", file=sys.stderr, flush=True)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "splatnlp.mechinterp", "align", str(folder / "full"), str(folder / "ultra"),
         "--out", str(alignment), "--no-plots", "-q"],
        check=True,
    )
    print(f"aligned in {time.perf_counter() - t:.0f} s", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", default=None, help="a built demo (default: <data dir>/demo/real)")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--upstream-queries", type=int, default=20)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--alignment", default=None, help="a saved alignment of the two contexts (default <demo>/alignment)")
    ap.add_argument("--no-index", action="store_true", help="skip the queries from a saved pair index")
    ap.add_argument("--mode", choices=MODES, default=None, help=argparse.SUPPRESS)  # one child process
    args = ap.parse_args()
    folder = Path(args.demo_dir) if args.demo_dir else cfg.demo_dir("real")
    alignment = Path(args.alignment) if args.alignment else folder / "alignment"
    if args.mode:
        print(json.dumps(run_mode(args.mode, folder, args.queries, args.upstream_queries, alignment)))
        return
    if not demo_is_built(folder):
        print(f"building the 'real' demo preset into {folder} ...", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, "-m", "splatnlp.mechinterp", "demo", "--preset", "real", "--out", str(folder), "-q"],
            check=True,
        )
    modes = [m for m in MODES if not (m == "index" and args.no_index)]
    if "index" in modes:
        _ensure_alignment(folder, alignment)
    results = {}
    for mode in modes:
        print(f"mode {mode} ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--demo-dir", str(folder), "--queries", str(args.queries),
             "--upstream-queries", str(args.upstream_queries), "--alignment", str(alignment)],
            capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"mode {mode} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    report(results, args)


def report(results: dict, args: argparse.Namespace) -> None:
    ref = results["codes"]
    print(f"real preset, {args.queries} sampled planted children (Ultra->Full) and split Full features (Full->Ultra), "
          "warm medians; each mode in its own process")
    print("| mode | Ultra->Full ms | Full->Ultra ms | same answers as codes (U->F / F->U) | peak RSS GB | anon / file GB after |")
    print("|---|---|---|---|---|---|")
    for mode, r in results.items():
        if mode == "upstream":
            continue
        same = []
        for key in ("ultra_to_full", "full_to_ultra"):
            pairs = list(zip(ref[key], r[key], strict=True))
            # Without the verdict only the top match and is_unique are comparable.
            same.append(np.mean([(a[0], a[3]) == (b[0], b[3]) if b[1] is None else a == b for a, b in pairs]))
        w, rss = r["warm_median_ms"], r["rss_after_gb"]
        print(f"| {mode} | {w['ultra_to_full']} | {w['full_to_ultra']} | {same[0]:.0%} / {same[1]:.0%} | "
              f"{r['peak_rss_gb']} | {rss.get('RssAnon')} / {rss.get('RssFile')} |")
    up = results["upstream"]
    ours = statistics.median(ref["elapsed_ms_first_upstream"])
    print(f"| upstream (500 sampled candidates) | {up['median_ms']} | - | planted parent {up['finds_planted_parent']:.0%} "
          f"(ours {ref['finds_planted_parent']:.0%}) | {up['peak_rss_gb']} | {up['rss_after_gb'].get('RssAnon')} / "
          f"{up['rss_after_gb'].get('RssFile')} |")
    profiled = [(mode, r["profile_ms"]) for mode, r in results.items() if "profile_ms" in r]
    if profiled:
        print("\nwhere a compiled query's time goes (medians per query, ms; the read floor only reads the "
              "code entries the main pass sums)")
        print("| mode | direction | query | main pass | its read floor | reverse passes | rest |")
        print("|---|---|---|---|---|---|---|")
        for mode, prof in profiled:
            for key, name in (("ultra_to_full", "Ultra->Full"), ("full_to_ultra", "Full->Ultra")):
                p = prof[key]
                print(f"| {mode} | {name} | {p['query']} | {p['one_against_all']} | {p['read_floor']} | "
                      f"{p['columns_against_all']} | {p['rest']} |")
    peak = max(r["peak_rss_gb"] for r in results.values())
    c = ref["cold_first_query_s"]
    print(
        f"\ntargets: Ultra->Full {ref['warm_median_ms']['ultra_to_full']} ms (<= {TARGET_U2F_MS}), "
        f"Full->Ultra {ref['warm_median_ms']['full_to_ultra']} ms (<= {TARGET_F2U_MS}) from the codes; "
        + (f"from the index {results['index']['warm_median_ms']['ultra_to_full']} / "
           f"{results['index']['warm_median_ms']['full_to_ultra']} ms (<= {TARGET_INDEX_MS}, index "
           f"{results['index']['index_gb']} GB on disk); " if "index" in results else "")
        + f"load {ref['load_both_s']} s + cold first queries {c['ultra_to_full']}/{c['full_to_ultra']} s "
        f"(<= {TARGET_LOAD_S}); peak RSS of the largest process {peak} GB (<= {TARGET_PEAK_GB}); "
        f"upstream {up['median_ms']} ms per query over 500 candidates = {up['median_ms'] / ours:.1f}x our time over all"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
