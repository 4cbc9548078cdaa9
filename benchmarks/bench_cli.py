"""Cold wall time of every query command, each a fresh process, on the default demo.

Usage: python benchmarks/bench_cli.py [--demo-dir DIR] [--repeats 5] [--json FILE]

Each command runs ``--repeats`` times as ``python -m splatnlp.mechinterp ... --json`` with
``subprocess`` (wall time from ``time.perf_counter`` around the whole process: interpreter start,
imports, loading the contexts, the query, printing), against issue 11's target of 1 s (median).
Also reported: whether the process imported torch (``-X importtime``), since importing it alone
costs about a second. The research store is a temporary file, so nothing real is written.

Then the batch (issue 11): 100 Ultra features in one ``match --features-file`` call, with and
without the verdict, and 100 pairs in one ``compare --pairs-file`` call: total wall time (median of
``--repeats``) and time per query, beside 100 x the single cold call of the same command.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_S = 1.0


def commands(store: str) -> list[tuple[str, list[str]]]:
    """(name, argv) of every command the target names, on demo features of each kind."""
    return [
        ("match ultra", ["match", "5127", "--source", "ultra", "--top", "3"]),
        ("match full", ["match", "361", "--source", "full", "--top", "3"]),
        ("compare", ["compare", "5127", "1126", "--source", "ultra"]),
        ("decompose", ["decompose", "361", "--source", "full"]),
        ("examples", ["examples", "5127", "--source", "ultra"]),
        ("state show", ["state", "show", "5127", "--model", "ultra", "--store", store]),
        ("context list", ["context", "list"]),
        ("context show", ["context", "show", "ultra"]),
    ]


BATCH_SIZE = 100


def batch_files(tmp: Path, n_ultra: int) -> tuple[Path, Path]:
    """``BATCH_SIZE`` Ultra ids spread over the dictionary (one per line), and as many
    ``ULTRA FULL`` pairs of those ids with Full features spread the same way."""
    ids = [int(i) for i in range(0, n_ultra, n_ultra // BATCH_SIZE)][:BATCH_SIZE]
    features = tmp / "ids.txt"
    features.write_text("".join(f"{i}\n" for i in ids))
    pairs = tmp / "pairs.txt"
    pairs.write_text("".join(f"{i} {(7 * k) % 2048}\n" for k, i in enumerate(ids)))
    return features, pairs


def batch_commands(features: Path, pairs: Path) -> list[tuple[str, list[str], str]]:
    """(name, argv, the single-call row it is compared with)."""
    return [
        ("match 100 ultra", ["match", "--features-file", str(features), "--source", "ultra", "--top", "3"], "match ultra"),
        ("match 100 ultra --no-verdict", ["match", "--features-file", str(features), "--source", "ultra", "--top", "3", "--no-verdict"], "match ultra"),
        ("compare 100 pairs", ["compare", "--pairs-file", str(pairs), "--source", "ultra"], "compare"),
    ]


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, int, bool]:
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "splatnlp.mechinterp", *argv, "--json"],
        env=env, capture_output=True, text=True, check=False,
    )
    wall = time.perf_counter() - t
    torch = any(line.rstrip().endswith("| torch") for line in done.stderr.splitlines())
    return wall, done.returncode, torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", default=None, help="a built default demo (default: build or reuse it)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from splatnlp.mechinterp.context import config as cfg
    from splatnlp.mechinterp.demo.build import build_demo, demo_is_built

    demo = Path(args.demo_dir) if args.demo_dir else cfg.demo_dir("default")
    if not demo_is_built(demo):
        print(f"building the default demo into {demo} ...", file=sys.stderr, flush=True)
        build_demo(demo, preset="default")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SPLATNLP_CONTEXTS_DIR": str(demo)}
        store = str(Path(tmp) / "store.sqlite")
        for name, argv in commands(store):
            run_once(argv, env)  # page cache warm: "cold" is a new process, not a cold disk
            walls, codes, torch = [], set(), False
            for _ in range(args.repeats):
                wall, code, imported = run_once(argv, env)
                walls.append(wall)
                codes.add(code)
                torch |= imported
            rows.append({
                "command": name, "argv": argv, "median_s": round(statistics.median(walls), 3),
                "min_s": round(min(walls), 3), "max_s": round(max(walls), 3),
                "exit_codes": sorted(codes), "imports_torch": torch,
            })
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        from splatnlp.mechinterp.context import load_context

        features, pairs = batch_files(Path(tmp), load_context(demo / "ultra").n_features)
        single = {r["command"]: r["median_s"] for r in rows}
        batches = []
        for name, argv, alone in batch_commands(features, pairs):
            walls, codes = [], set()
            for _ in range(args.repeats):
                wall, code, _ = run_once(argv, env)
                walls.append(wall)
                codes.add(code)
            total = statistics.median(walls)
            batches.append({
                "command": name, "argv": argv, "median_s": round(total, 3),
                "per_query_ms": round(1000 * total / BATCH_SIZE, 1),
                "single_calls_s": round(BATCH_SIZE * single[alone], 1), "exit_codes": sorted(codes),
            })
            print(json.dumps(batches[-1]), file=sys.stderr, flush=True)
    print(f"cold wall time, median of {args.repeats} fresh processes, default demo ({demo}); target <= {TARGET_S} s")
    print("| command | median s | min–max s | target met | imports torch | exit |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ok = "yes" if r["median_s"] <= TARGET_S else "no"
        print(f"| `{' '.join(r['argv'][:3])}` | {r['median_s']} | {r['min_s']}–{r['max_s']} | {ok} | {r['imports_torch']} | {r['exit_codes']} |")
    met = sum(r["median_s"] <= TARGET_S for r in rows)
    print(f"{met} of {len(rows)} commands within {TARGET_S} s")
    print()
    print(f"batch: {BATCH_SIZE} queries in one call (median of {args.repeats}), beside {BATCH_SIZE} single cold calls")
    print("| batch | total s | per query ms | 100 single calls s | speed-up | exit |")
    print("|---|---|---|---|---|---|")
    for b in batches:
        print(
            f"| `{b['command']}` | {b['median_s']} | {b['per_query_ms']} | {b['single_calls_s']} | "
            f"{b['single_calls_s'] / b['median_s']:.1f}x | {b['exit_codes']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"commands": rows, "batches": batches}, indent=2))


if __name__ == "__main__":
    main()
