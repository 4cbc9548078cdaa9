"""Cold wall time of every query command, each a fresh process, on the default demo.

Usage: python benchmarks/bench_cli.py [--demo-dir DIR] [--repeats 5] [--json FILE]

Each command runs ``--repeats`` times as ``python -m splatnlp.mechinterp ... --json`` with
``subprocess`` (wall time from ``time.perf_counter`` around the whole process: interpreter start,
imports, loading the contexts, the query, printing), against issue 11's target of 1 s (median).
Also reported: whether the process imported torch (``-X importtime``), since importing it alone
costs about a second. The research store is a temporary file, so nothing real is written.
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
    print(f"cold wall time, median of {args.repeats} fresh processes, default demo ({demo}); target <= {TARGET_S} s")
    print("| command | median s | min–max s | target met | imports torch | exit |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ok = "yes" if r["median_s"] <= TARGET_S else "no"
        print(f"| `{' '.join(r['argv'][:3])}` | {r['median_s']} | {r['min_s']}–{r['max_s']} | {ok} | {r['imports_torch']} | {r['exit_codes']} |")
    met = sum(r["median_s"] <= TARGET_S for r in rows)
    print(f"{met} of {len(rows)} commands within {TARGET_S} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
