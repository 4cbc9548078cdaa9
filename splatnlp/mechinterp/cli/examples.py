"""``splatnlp-mechinterp examples``: a feature's top-activating examples, the tokens they share
and their weapons.

A thin shell over :func:`splatnlp.mechinterp.analysis.examples.feature_examples`; it reads one
column of the memory-mapped codes and imports no torch.
"""

from __future__ import annotations

import argparse

from splatnlp.mechinterp.cli.common import EXIT_OK, add_common, emit, examples_epilog

WEAPONS_SHOWN = 10
"""Weapons the readable summary lists (the JSON document has all of them)."""
TOKENS_SHOWN_PER_EXAMPLE = 8
"""Tokens of each top example the readable summary prints before "..."."""


def _summary(result) -> str:
    """The readable form of a :class:`FeatureExamples`: header, quantiles, three tables."""
    head = (
        f"{result.model} feature {result.feature}: active on {result.n_active:,} of "
        f"{result.n_examples:,} examples ({result.activation_rate:.2%})"
    )
    lines = [head]
    if result.quantiles:
        lines.append(
            "  activation " + ", ".join(f"{k} {v:.4g}" for k, v in result.quantiles.items())
        )
    if result.top:
        lines += [
            "",
            f"  top {len(result.top)} examples",
            f"  {'example':>9}  {'activation':>10}  {'weapon':<18} tokens",
        ]
        for row in result.top:
            tokens = row.tokens[:TOKENS_SHOWN_PER_EXAMPLE]
            more = " ..." if len(row.tokens) > len(tokens) else ""
            lines.append(
                f"  {row.example_id:>9}  {row.activation:>10.4g}  {row.weapon or '-':<18} {' '.join(tokens)}{more}"
            )
    if result.tokens:
        lines += ["", "  tokens by enrichment (rate among active / rate among all)"]
        lines.append(
            f"  {'token':<28} {'n_active':>8} {'rate_active':>11} {'rate_all':>9} {'enrichment':>10}"
        )
        for t in result.tokens:
            lines.append(
                f"  {t.token:<28} {t.n_active:>8} {t.rate_active:>11.3f} {t.rate_all:>9.3f} {t.enrichment:>10.2f}"
            )
    if result.weapons:
        shown = result.weapons[:WEAPONS_SHOWN]
        lines += [
            "",
            f"  weapons ({len(result.weapons)} among the active examples; top {len(shown)})",
        ]
        lines += [f"  {w.weapon:<28} {w.n_active:>8} {w.share:>8.1%}" for w in shown]
    if result.note:
        lines += ["", f"  note: {result.note}"]
    return "\n".join(lines)


def _cmd_examples(args: argparse.Namespace) -> int:
    from splatnlp.mechinterp.analysis.examples import feature_examples
    from splatnlp.mechinterp.context import load_context

    ctx = load_context(args.source, contexts_dir=args.contexts_dir)
    result = feature_examples(ctx, args.feature, top=args.top, n_tokens=args.tokens)
    emit(args, result, _summary(result))
    return EXIT_OK


def add_examples_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``examples`` command."""
    p = subparsers.add_parser(
        "examples",
        help="a feature's top-activating examples, activation quantiles, enriched tokens, weapons",
        description=(
            "The examples of one feature: the top-activating ones (id, weapon, tokens, activation), "
            "quantiles of its code over the examples where it is active, the tokens over-represented "
            "there (rate among active examples / rate among all) and the weapon distribution."
        ),
        epilog=examples_epilog(
            "splatnlp-mechinterp examples 5127 --source ultra",
            "splatnlp-mechinterp examples 361 --source full --top 5 --tokens 10 --json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("feature", type=int, help="feature id in the --source context")
    p.add_argument("--source", default="ultra", help="context name or path (default ultra)")
    p.add_argument(
        "--top", type=int, default=10, help="top-activating examples to list (default 10)"
    )
    p.add_argument(
        "--tokens", type=int, default=15, help="rows of the token enrichment table (default 15)"
    )
    add_common(p)
    p.set_defaults(func=_cmd_examples)
