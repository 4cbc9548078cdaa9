"""``splatnlp-mechinterp demo``: build the demo world's contexts and print a sample match.

A thin shell over :mod:`splatnlp.mechinterp.demo`, imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from splatnlp.mechinterp.cli.common import EXIT_OK, add_common, emit, examples_epilog


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.export_inputs:
        from splatnlp.mechinterp.demo.build import export_inputs

        paths = export_inputs(args.export_inputs, preset=args.preset, seed=args.seed)
        emit(args, {"inputs": paths}, "\n".join(f"{role:<13} {path}" for role, path in paths.items()))
        return EXIT_OK
    from splatnlp.mechinterp.demo.build import build_demo
    from splatnlp.mechinterp.demo.sample import sample_match

    summary = build_demo(args.out, preset=args.preset, seed=args.seed, force=args.force, progress=not args.quiet)
    out = Path(args.out) if args.out else None
    from splatnlp.mechinterp.context import config as cfg

    folder = out or cfg.demo_dir(args.preset)
    sample = sample_match(folder)
    payload = {"demo": summary, "path": str(folder), "sample_match": sample}
    text = (
        f"demo preset {summary['preset']!r} (seed {summary['seed']}): "
        f"{summary['n_examples']} examples, {summary['size_bytes'] / 2**20:.0f} MiB at {folder}\n"
        f"built in {summary['timings']['total_s']} s\n\n{sample['text']}"
    )
    if args.out or args.preset != "default":
        text += (
            f"\n\nTo load these contexts by name: export SPLATNLP_CONTEXTS_DIR={folder}"
        )
    emit(args, payload, text)
    return EXIT_OK


def add_demo_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command."""
    fmt = argparse.RawDescriptionHelpFormatter
    demo = subparsers.add_parser(
        "demo",
        help="build the demo contexts (full, ultra) and print a sample match",
        description="Build the deterministic demo world's two contexts and ground truth, then print a sample match.",
        epilog=examples_epilog("splatnlp-mechinterp demo", "splatnlp-mechinterp demo --preset tiny --out ./demo-tiny --json"),
        formatter_class=fmt,
    )
    demo.add_argument("--preset", default="default", help="tiny, default, real, or trained (SAEs trained on the hidden states, 256 / 2,048 features; about a minute) (default: default)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default=None, help="output folder (default: <data dir>/demo/<preset>)")
    demo.add_argument("--force", action="store_true", help="rebuild even if already built")
    demo.add_argument(
        "--export-inputs", default=None, metavar="DIR",
        help="instead of building contexts, write the world's raw inputs (SAE checkpoints, hidden.npy, "
        "builds.jsonl, vocabularies) to DIR, in the formats `context build` reads",
    )
    add_common(demo)
    demo.set_defaults(func=_cmd_demo)
