"""The all-pairs kernel candidates side by side: time, peak memory and error against float64.

Usage: python benchmarks/bench_pair_kernels.py [--demo-dir DIR] [--n 5000 20000 100000]
                                               [--kernels numba torch scipy dense] [--slow-max-n 20000]

On the first N examples of the ``real`` demo preset (2,048 x 24,576 features, ~191 and ~2,208
active per example), each kernel computes ``dot`` and ``coactive`` for every Full x Ultra pair,
each run in its own process (peak RSS from ``ru_maxrss``):

- ``numba``: the compiled sparse x sparse kernel with a dense accumulator row
  (``analysis/metrics/kernels.py``, the default); float64 products and sums;
- ``torch``: the previous default, each chunk's sparse Ultra rows times densified Full rows by
  torch's CSR kernel, float32 products summed in float64 per chunk;
- ``scipy``: scipy's sparse x sparse product (SMMP, one thread) of the transposed Full codes with
  the Ultra codes, float64, dot and then counts;
- ``dense``: both chunks densified, float32 GEMM (torch / MKL);
- ``scatter``: not a kernel but this machine's floor for the compiled one's inner loop: the same
  number of (product, count) updates into per-thread (K_Ultra, 2) float64 rows, from 200 real
  Ultra rows that stay in cache, with no rows read from memory and no rows added into totals.
  The compiled kernel's time over this one is what reading the codes and flushing the rows
  cost; the rest is the scatter itself (measured on 2026-12-03: within 1.4x).

The error columns compare each kernel's ``dot`` with scipy's float64 product at the smallest N
(max relative error over pairs whose |dot| exceeds 1e-6 of the largest), and ``coactive`` for
exact equality. Seconds per 1e9 co-active pair contributions show how cost grows with N (it is
linear in them); ``scipy`` and ``dense`` run only up to ``--slow-max-n`` (their 100,000-example
time follows from that rate).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KERNELS = ("numba", "torch", "scipy", "dense", "scatter")


def _codes(folder: Path, n: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    from splatnlp.mechinterp.context import MechInterpContext

    full, ultra = MechInterpContext(folder / "full"), MechInterpContext(folder / "ultra")
    return sp.csr_matrix(full.codes.csr[:n]), sp.csr_matrix(ultra.codes.csr[:n])


def _run(kernel: str, A: sp.csr_matrix, B: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    if kernel in ("numba", "torch"):
        from splatnlp.mechinterp.analysis.metrics.streamed import pair_sums_streamed

        return pair_sums_streamed(A, B, product=kernel)
    if kernel == "scipy":
        At = A.T.tocsr().astype(np.float64)
        dot = (At @ B.astype(np.float64)).toarray()
        ones_a, ones_b = At.copy(), B.astype(np.float64)
        ones_a.data[:] = 1.0
        ones_b.data[:] = 1.0
        return dot, (ones_a @ ones_b).toarray()
    if kernel == "dense":
        import torch

        dot = torch.zeros((A.shape[1], B.shape[1]), dtype=torch.float64)
        co = torch.zeros_like(dot)
        for s in range(0, A.shape[0], 2048):
            a = torch.from_numpy(A[s : s + 2048].toarray())
            b = torch.from_numpy(B[s : s + 2048].toarray())
            dot += (a.T @ b).double()
            co += ((a > 0).float().T @ (b > 0).float()).double()
        return dot.numpy(), co.numpy()
    if kernel == "scatter":
        return _scatter_floor(A, B), None
    raise ValueError(f"kernel {kernel!r} is unknown; expected one of {KERNELS}")


_REPLAY = None


def _replay():
    """The scatter floor's loop, compiled once per process (numba is imported only here)."""
    global _REPLAY
    if _REPLAY is None:
        import numba

        @numba.njit(parallel=True, nogil=True)
        def replay(idx, val, bufs, updates):  # pragma: no cover - compiled
            n_threads = bufs.shape[0]
            for t in numba.prange(n_threads):
                buf = bufs[t]
                done = 0
                r = 0
                while done < updates // n_threads:
                    v = np.float64(r % 7 + 1)
                    for q in range(len(idx)):
                        j = idx[q]
                        buf[j, 0] += v * val[q]
                        buf[j, 1] += 1.0
                    done += len(idx)
                    r += 1

        _REPLAY = replay
    return _REPLAY


def _scatter_floor(A: sp.csr_matrix, B: sp.csr_matrix, n_rows: int = 200) -> np.ndarray:
    """The compiled kernel's updates (one per co-active pair) replayed from ``n_rows`` cached
    Ultra rows into one (K_B, 2) row per thread; returns the rows (so nothing is optimized away)."""
    import numba

    rows = B[: min(n_rows, B.shape[0])]
    idx, val = rows.indices.astype(np.int32), rows.data.astype(np.float32)
    updates = int((np.diff(A.indptr).astype(np.float64) * np.diff(B.indptr)).sum())
    bufs = np.zeros((numba.get_num_threads(), B.shape[1], 2))
    _replay()(idx, val, bufs, updates)
    return bufs


def one(args: argparse.Namespace) -> None:
    """Child process: one kernel at one N; prints a JSON line."""
    A, B = _codes(Path(args.demo_dir), args.one_n)
    contributions = float((np.diff(A.indptr).astype(np.float64) * np.diff(B.indptr)).sum())
    if args.one_kernel in ("numba", "scatter"):  # compile outside the timing
        _run(args.one_kernel, A[:64], B[:64])
    t = time.perf_counter()
    dot, co = _run(args.one_kernel, A, B)
    seconds = time.perf_counter() - t
    out = {
        "kernel": args.one_kernel,
        "n": args.one_n,
        "seconds": round(seconds, 2),
        "s_per_1e9_pairs": round(seconds / contributions * 1e9, 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    if args.reference and co is not None:
        ref = np.load(args.reference)
        big = np.abs(ref["dot"]) > 1e-6 * np.abs(ref["dot"]).max()
        out["max_rel_error"] = float((np.abs(dot - ref["dot"])[big] / np.abs(ref["dot"][big])).max())
        out["coactive_exact"] = bool(np.array_equal(co, ref["coactive"]))
    if args.save_reference:
        np.savez(args.save_reference, dot=dot, coactive=co)
    print(json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", default=None, help="a built real demo (default: <data dir>/demo/real)")
    ap.add_argument("--n", type=int, nargs="+", default=[5000, 20000, 100000])
    ap.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=KERNELS)
    ap.add_argument("--slow-max-n", type=int, default=20000, help="largest N for the scipy and dense kernels")
    ap.add_argument("--one-kernel", help=argparse.SUPPRESS)
    ap.add_argument("--one-n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--reference", help=argparse.SUPPRESS)
    ap.add_argument("--save-reference", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.demo_dir is None:
        from splatnlp.mechinterp.context import config as cfg

        args.demo_dir = str(cfg.demo_dir("real"))
    if args.one_kernel:
        one(args)
        return
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "reference.npz"
        base = [sys.executable, __file__, "--demo-dir", args.demo_dir]
        n0 = min(args.n)
        subprocess.run([*base, "--one-kernel", "scipy", "--one-n", str(n0), "--save-reference", str(ref)],
                       check=True, stdout=subprocess.DEVNULL)
        for n in sorted(args.n):
            for kernel in args.kernels:
                if kernel in ("scipy", "dense") and n > args.slow_max_n:
                    continue
                cmd = [*base, "--one-kernel", kernel, "--one-n", str(n)]
                if n == n0:
                    cmd += ["--reference", str(ref)]
                done = subprocess.run(cmd, check=False, capture_output=True, text=True)
                if done.returncode != 0:
                    rows.append({"kernel": kernel, "n": n, "error": done.stderr.strip().splitlines()[-1:]})
                else:
                    rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print("| kernel | N | seconds | s per 1e9 pairs | peak RSS GB | max rel. error vs float64 | coactive exact |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['kernel']} | {r['n']} | failed: {r['error']} | | | | |")
            continue
        err = f"{r['max_rel_error']:.1e}" if "max_rel_error" in r else ""
        exact = str(r.get("coactive_exact", ""))
        print(f"| {r['kernel']} | {r['n']} | {r['seconds']} | {r['s_per_1e9_pairs']} | {r['peak_rss_gb']} | {err} | {exact} |")
    by = {(r["kernel"], r["n"]): r for r in rows if "error" not in r}
    for n in sorted(args.n):
        if ("numba", n) in by and ("scatter", n) in by:
            print(
                f"N={n}: numba takes {by[('numba', n)]['seconds'] / by[('scatter', n)]['seconds']:.2f}x the "
                "scatter floor (the same updates from cached rows: what is left to gain by reading the codes faster)"
            )
        if ("numba", n) in by and ("torch", n) in by:
            print(f"N={n}: numba {by[('torch', n)]['seconds'] / by[('numba', n)]['seconds']:.1f}x faster than torch (the previous default)")


if __name__ == "__main__":
    main()
