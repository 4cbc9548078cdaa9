"""``splatnlp-mechinterp report``: an HTML report of one feature or of a saved alignment.

A thin shell over :mod:`splatnlp.mechinterp.report`, imported only when the command runs.
"""

from __future__ import annotations

import argparse
import time

from splatnlp.mechinterp.cli.common import (
    EXIT_MISSING,
    EXIT_OK,
    CLIError,
    add_common,
    emit,
    examples_epilog,
)


def _check_out(out: str, overwrite: bool):
    from splatnlp.mechinterp.report.folder import check_report_dir, is_report_dir

    try:
        return check_report_dir(out, overwrite=overwrite)
    except FileExistsError as exc:
        hint = (
            "pass --overwrite to replace the previous report"
            if is_report_dir(out)
            else "pass a new or empty folder (a folder that is not a report is never replaced)"
        )
        raise CLIError(str(exc), hint=hint) from exc


def _cmd_report(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.feature is None and args.alignment is None:
        raise CLIError(
            "report needs a FEATURE (with --source) or --alignment DIR",
            hint="splatnlp-mechinterp report 5127 --source ultra --out DIR, or "
            "splatnlp-mechinterp report --alignment ./alignment --out DIR",
        )
    if args.feature is not None and args.source is None:
        raise CLIError(
            f"--source is required with FEATURE {args.feature}",
            hint="name the model the feature belongs to: --source ultra or --source full",
        )
    if args.feature is None and (args.source or args.target):
        raise CLIError(
            "--source and --target describe a feature report; an alignment report reads both "
            "models from --alignment",
            hint="drop --source/--target, or give a FEATURE",
        )
    out = _check_out(args.out, args.overwrite)
    if args.feature is None:
        from splatnlp.mechinterp.report import write_alignment_report

        try:
            path = write_alignment_report(args.alignment, out, overwrite=args.overwrite)
        except FileNotFoundError as exc:
            raise CLIError(
                str(exc),
                code=EXIT_MISSING,
                hint="check the --alignment folder (what `align --out` wrote)",
            ) from exc
        payload = {"kind": "alignment", "alignment": args.alignment}
    else:
        from splatnlp.mechinterp.analysis.match.options import MatchOptions
        from splatnlp.mechinterp.context import load_context
        from splatnlp.mechinterp.report import write_feature_report

        source = load_context(args.source, contexts_dir=args.contexts_dir)
        target = load_context(args.target, contexts_dir=args.contexts_dir) if args.target else None
        path = write_feature_report(
            source,
            target,
            args.feature,
            out,
            overwrite=args.overwrite,
            n_top_matches=args.top,
            n_examples=args.examples,
            options=MatchOptions(top_token_method=args.top_tokens),
            alignment=args.alignment,
        )
        payload = {"kind": "feature", "feature": args.feature, "source": source.name}
    size = path.stat().st_size
    payload = {
        "path": str(path),
        "out": str(out),
        **payload,
        "bytes": size,
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }
    emit(args, payload, f"report written to {path} ({size / 1e6:.1f} MB); open it in a browser")
    return EXIT_OK


def add_report_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    p = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a feature or of a saved alignment",
        description=(
            "Write DIR/index.html (no network needed: images, styles and scripts inline) and "
            "DIR/report.json. For a FEATURE: its verdict with the evidence, matches, "
            "decomposition, top examples, token enrichment, weapons and the scatter against its "
            "top match. For --alignment without FEATURE: the summary, class counts, plots and a "
            "sortable, searchable table of every feature linking to a section per feature."
        ),
        epilog=examples_epilog(
            "splatnlp-mechinterp report 5127 --source ultra --out out/report-5127 --json",
            "splatnlp-mechinterp report --alignment ./alignment --out out/alignment-report",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("feature", nargs="?", type=int, default=None, help="feature id in --source")
    p.add_argument(
        "--source", default=None, help="context of the feature (name or folder), e.g. ultra"
    )
    p.add_argument(
        "--target", default=None, help="the other context (default: the other of ultra/full)"
    )
    p.add_argument(
        "--alignment",
        default=None,
        metavar="DIR",
        help="a folder `align --out` wrote: without FEATURE, report it; with FEATURE, add what it says",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="report folder (new, empty, or a report with --overwrite)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a previous report at --out")
    p.add_argument("--top", type=int, default=10, help="matches listed (default 10)")
    p.add_argument(
        "--examples", type=int, default=10, help="top examples listed per feature (default 10)"
    )
    p.add_argument(
        "--top-tokens",
        default="enrichment",
        choices=["enrichment", "frequency"],
        help="top-token definition of the matcher (default enrichment)",
    )
    add_common(p)
    p.set_defaults(func=_cmd_report)
