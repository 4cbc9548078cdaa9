"""``splatnlp-mechinterp match | compare | decompose``: one feature against the other model.

A thin shell over :class:`splatnlp.mechinterp.analysis.FeatureMatcher`; the matcher (and torch
behind it) is imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from splatnlp.mechinterp.cli.common import EXIT_OK, CLIError, add_common, emit, examples_epilog


# -- handlers --------------------------------------------------------------------------------
def _matcher(args: argparse.Namespace):
    from splatnlp.mechinterp.analysis import FeatureMatcher, MatchOptions
    from splatnlp.mechinterp.context import load_context

    source = load_context(args.source, contexts_dir=args.contexts_dir)
    target = load_context(args.target, contexts_dir=args.contexts_dir) if args.target else None
    options = MatchOptions(
        n_permutations=getattr(args, "permutations", 0) or 0,
        top_token_method=args.top_tokens,
        information_test=getattr(args, "information_test", False),
    )
    return FeatureMatcher(source, target, options=options, alignment=getattr(args, "alignment", None))


def _cmd_match(args: argparse.Namespace) -> int:
    matcher = _matcher(args)
    # With --output the full table (every scored candidate) goes to the file and stdout keeps the
    # --top first of the same report: one scoring pass, not two. --top is still validated.
    n_top = matcher.target_ctx.n_features if args.output and args.top >= 1 else args.top
    report = matcher.find_matches(
        args.feature,
        n_candidates=args.candidates,
        n_top_matches=n_top,
        sort_by=args.sort_by,
        decompose=not args.no_decomposition,
    )
    if args.output:
        Path(args.output).write_text(report.model_dump_json(indent=1))
        report = report.model_copy(update={"matches": report.matches[: args.top]})
        report.warnings.append(f"all {report.n_candidates_tested} scored candidates written to {args.output}")
    if args.record:
        _record_verdict(args, report)
    emit(args, report, report.summary())
    return EXIT_OK


def _record_verdict(args: argparse.Namespace, report) -> None:
    """Store the verdict's pairs as links: a larger-side feature's parent, or a smaller-side
    feature's children among the listed matches. Nothing for novel, unique or dead features
    (there is no counterpart to link; the report's warning says so)."""
    from splatnlp.mechinterp.state import ResearchStore

    verdict = report.verdict
    pairs = [verdict.parent] if verdict.parent is not None else list(verdict.children)
    if not pairs:
        report.warnings.append(
            f"nothing recorded: the verdict is {verdict.label} ({verdict.rule}); a link needs a counterpart"
        )
        return
    listed = {m.target_feature: i for i, m in enumerate(report.matches)}
    indices = [listed[t] for t in pairs if t in listed]
    missing = [t for t in pairs if t not in listed]
    if not indices:
        raise CLIError(
            f"nothing recorded: the verdict's {report.target_model} feature(s) {missing[:8]} are not "
            "among the listed matches; use the default --sort-by or a larger --top"
        )
    with ResearchStore() as store:
        links = [store.record_link_from_report(report, i, recorded_by=args.recorded_by) for i in indices]
    shown = ", ".join(f"{link.target_feature} ({link.relation})" for link in links)
    report.warnings.append(
        f"recorded {len(links)} link(s) {report.source_model} {report.source_feature} -> "
        f"{report.target_model} {shown}"
    )
    if missing:
        report.warnings.append(
            f"{len(missing)} more {verdict.label} pair(s) not listed and not recorded "
            f"({report.target_model} {missing[:8]}); raise --top to record them"
        )


def _cmd_compare(args: argparse.Namespace) -> int:
    comparison = _matcher(args).compare_features(args.feature, args.target_feature)
    text = (
        f"{comparison.source_model} {comparison.source_feature} vs {comparison.target_model} "
        f"{comparison.target_feature}: {comparison.notes}\n"
        f"  shared tokens {comparison.shared_tokens[:8]}\n"
        f"  source only {comparison.source_only_tokens[:8]}\n"
        f"  target only {comparison.target_only_tokens[:8]}"
    )
    emit(args, comparison, text)
    return EXIT_OK


def _cmd_decompose(args: argparse.Namespace) -> int:
    d = _matcher(args).find_decomposition(args.feature)
    n_members = len(d.members)
    shown = d.model_copy(update={"members": d.members[: args.limit]})
    r2 = "n/a" if d.r_squared is None else f"{d.r_squared:.3f}"
    lines = [
        f"{d.source_model} feature {d.source_feature}: "
        + (f"split into {n_members} {d.target_model} features" if d.is_split else f"{n_members} member(s), not split")
        + f" (R^2 {r2})"
    ]
    lines += [
        f"  {d.target_model} {m.feature}: weight {m.weight:.3f}, r={m.activation_correlation:.3f}, "
        f"shared {m.shared_top_tokens[:3]}"
        for m in shown.members
    ]
    payload = shown.model_dump(mode="json")
    payload["n_members"] = n_members
    emit(args, payload, "\n".join(lines))
    return EXIT_OK


# -- parser ----------------------------------------------------------------------------------
def _matching_options(p: argparse.ArgumentParser, *, default_source: str) -> None:
    p.add_argument("--source", default=default_source, help=f"source context name or path (default {default_source})")
    p.add_argument("--target", default=None, help="target context (default: the other of ultra/full)")
    p.add_argument(
        "--top-tokens", default="enrichment", choices=["enrichment", "frequency"],
        help="top-token definition for token overlap (default enrichment)",
    )


def add_match_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``match``, ``compare`` and ``decompose`` commands."""
    from splatnlp.mechinterp.analysis.match.reports import (
        PAIR_METRICS,  # light: pydantic models only
    )

    fmt = argparse.RawDescriptionHelpFormatter
    match = subparsers.add_parser(
        "match",
        help="score every feature of the other model against one feature",
        description="Find a feature's counterparts in the other model: every candidate scored exactly.",
        epilog=examples_epilog(
            "splatnlp-mechinterp match 18712 --source ultra --top 5 --json",
            "splatnlp-mechinterp match 512 --source full --top 3",
        ),
        formatter_class=fmt,
    )
    match.add_argument("feature", type=int, help="source feature id")
    _matching_options(match, default_source="ultra")
    match.add_argument("--top", type=int, default=10, help="matches to list (default 10)")
    match.add_argument("--candidates", type=int, default=None, help="keep only the best N by an exact prefilter")
    match.add_argument(
        "--sort-by", default="activation_correlation",
        choices=["combined_score", *PAIR_METRICS],
    )
    match.add_argument("--no-decomposition", action="store_true", help="skip the decomposition")
    match.add_argument(
        "--information-test", action="store_true",
        help="also run the stitching test of an Ultra source (verdict.information_test; loads both "
        "SAEs, needs the Full context's activations)",
    )
    match.add_argument("--permutations", type=int, default=0, help="empirical null with N shuffles (default: analytic)")
    match.add_argument("--output", default=None, help="also write every scored candidate to this JSON file")
    match.add_argument("--record", action="store_true", help="record the verdict as cross-model links in the research store: the parent of a larger-side feature, or the listed children of a smaller-side one (nothing for novel or unique)")
    match.add_argument("--recorded-by", default="splatnlp-mechinterp match", help="who records the link")
    match.add_argument(
        "--alignment", default=None, metavar="DIR",
        help="tables written by `align`: the report then says what they hold about the feature "
        "(class, parent, children)",
    )
    add_common(match)
    match.set_defaults(func=_cmd_match)

    compare = subparsers.add_parser(
        "compare",
        help="every pair metric for one source and one target feature",
        epilog=examples_epilog("splatnlp-mechinterp compare 18712 1024 --source ultra --json"),
        formatter_class=fmt,
    )
    compare.add_argument("feature", type=int, help="source feature id")
    compare.add_argument("target_feature", type=int, help="target feature id")
    _matching_options(compare, default_source="ultra")
    add_common(compare)
    compare.set_defaults(func=_cmd_compare)

    decompose = subparsers.add_parser(
        "decompose",
        help="the target features that together account for a source feature (is it split?)",
        epilog=examples_epilog("splatnlp-mechinterp decompose 512 --source full --limit 10 --json"),
        formatter_class=fmt,
    )
    decompose.add_argument("feature", type=int, help="source feature id")
    _matching_options(decompose, default_source="full")
    decompose.add_argument("--limit", type=int, default=20, help="members to list (default 20); n_members gives the total")
    add_common(decompose)
    decompose.set_defaults(func=_cmd_decompose)
