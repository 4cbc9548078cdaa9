"""``splatnlp-mechinterp align``: align two whole dictionaries and write the tables and plots.

A thin shell over :mod:`splatnlp.mechinterp.analysis.align`, imported only when the command runs.
"""

from __future__ import annotations

import argparse

from splatnlp.mechinterp.cli.common import EXIT_OK, CLIError, add_common, emit, examples_epilog


def _cmd_align(args: argparse.Namespace) -> int:
    from splatnlp.mechinterp.analysis.align.dictionary import align_contexts
    from splatnlp.mechinterp.analysis.align.report import AlignOptions
    from splatnlp.mechinterp.analysis.align.tables import check_output_dir, save_tables
    from splatnlp.mechinterp.context import load_context

    # Everything that can be refused is refused before the long pass.
    try:
        out = check_output_dir(args.out)
    except FileExistsError as exc:
        raise CLIError(
            str(exc), hint="pass a new or empty folder, or one an earlier `align` wrote (it is replaced whole)"
        ) from exc
    options = AlignOptions(
        chunk_size=args.chunk_size,
        n_examples=args.examples,
        device=args.device,
        n_null_features=args.null_features,
        n_null_directions=args.null_directions,
        cka=args.cka,
        top_token_method=args.top_tokens,
        seed=args.seed,
        keep_index=not args.no_index,
        dask=args.dask,
    )
    a = load_context(args.a, contexts_dir=args.contexts_dir)
    b = load_context(args.b, contexts_dir=args.contexts_dir)
    chosen = _chosen_features(args, a, b)
    tables = align_contexts(a, b, options=options, progress=not args.quiet)
    files = {}
    if not args.no_plots:
        from splatnlp.mechinterp.analysis.align.plots import save_plots

        files["plots"] = lambda path: save_plots(tables, path)
    if chosen is not None:
        small, large, ids = chosen
        files[f"plots/{CHOSEN_HEATMAP}"] = lambda path: _chosen_heatmap(tables, small, large, ids, path)
    save_tables(tables, out, files=files)
    plots = sorted(str(f) for f in (out / "plots").glob("*.png")) if (out / "plots").is_dir() else []
    index = out / "index" if (out / "index" / "index.json").is_file() else None
    payload = {
        "out": str(out), "plots": plots, "index": None if index is None else str(index),
        "report": tables.report.model_dump(mode="json"),
    }
    text = (
        tables.report.summary() + f"\n  tables written to {out}" + (f" (plots in {out / 'plots'})" if plots else "")
        + (f"\n  pair index in {index}: `match --alignment {out}` answers from it" if index else "")
    )
    emit(args, payload, text)
    return EXIT_OK


CHOSEN_HEATMAP = "heatmap_features.png"
"""The heatmap of ``--heatmap-features``, in ``plots/``."""


def _chosen_features(args: argparse.Namespace, a, b):
    """(smaller context, larger context, ids) for ``--heatmap-features``, ids checked against
    the smaller dictionary before the long pass; None without the option."""
    if not args.heatmap_features:
        return None
    small, large = (a, b) if a.n_features <= b.n_features else (b, a)
    try:
        ids = list(dict.fromkeys(small.check_feature(int(f)) for f in args.heatmap_features))
    except ValueError as exc:
        raise CLIError(
            f"--heatmap-features: {exc} ({small.name!r} is the smaller dictionary, whose features are the rows)",
            hint=f"ids of {small.model_type!r} (0..{small.n_features - 1})",
        ) from exc
    return small, large, ids


def _chosen_heatmap(tables, small, large, ids: list[int], path) -> None:
    """The chosen smaller-side features (rows) against their assigned children (columns), by
    activation correlation, from the alignment just computed (its tables give the children)."""
    from splatnlp.mechinterp.analysis import FeatureMatcher
    from splatnlp.mechinterp.analysis.align.plots import plot_block
    from splatnlp.mechinterp.cli.plot import block_columns, block_matrix, write_image

    matcher = FeatureMatcher(small, large, alignment=tables)
    cols = block_columns(matcher, ids, [], with_children=True)
    ax = plot_block(
        block_matrix(matcher, ids, cols), ids, cols,
        row_label=f"{small.model_type} feature", col_label=f"{large.model_type} feature (its children)",
        title=f"activation correlation: {small.model_type} {', '.join(map(str, ids[:6]))}"
        + (" ..." if len(ids) > 6 else "") + f" x {len(cols)} children",
    )
    write_image(ax, path)


def add_align_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``align`` command."""
    fmt = argparse.RawDescriptionHelpFormatter
    align = subparsers.add_parser(
        "align",
        help="align two whole dictionaries: best matches, parents, classes, null, plots",
        description=(
            "Score every feature of A against every feature of B (one streamed pass over the codes), "
            "assign each feature of the larger dictionary to its best-correlated parent, classify "
            "every feature, and write the report, per-feature tables and plots to --out."
        ),
        epilog=examples_epilog(
            "splatnlp-mechinterp align full ultra --out ./alignment --json",
            "splatnlp-mechinterp match 18712 --source ultra --alignment ./alignment --json",
        ),
        formatter_class=fmt,
    )
    align.add_argument("a", help="context A (name or folder), e.g. full")
    align.add_argument("b", help="context B, e.g. ultra")
    align.add_argument("--out", required=True, help="folder for report.json, tables and plots (replaced whole)")
    align.add_argument("--examples", type=int, default=None, help="use the first N examples only (a quick look)")
    align.add_argument("--chunk-size", type=int, default=2048, help="example rows per streamed chunk (default 2048)")
    align.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    align.add_argument("--null-features", type=int, default=256, help="random features per side in the null (default 256)")
    align.add_argument("--null-directions", type=int, default=256, help="random directions in the decoder null (default 256)")
    align.add_argument("--cka", action="store_true", help="also compute linear CKA between the two code matrices")
    align.add_argument(
        "--dask", default=None, metavar="SCHEDULER",
        help="compute the pair sums on a Dask cluster: a scheduler address (tcp://host:8786) or local:N "
        "for N local worker processes (needs the dask extra; workers must read both context folders)",
    )
    align.add_argument(
        "--top-tokens", default="enrichment", choices=["enrichment", "frequency"],
        help="top-token definition for token overlap (default enrichment)",
    )
    align.add_argument("--seed", type=int, default=0)
    align.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    align.add_argument(
        "--heatmap-features", nargs="+", type=int, default=None, metavar="ID",
        help=f"also draw these features of the smaller dictionary against their children into plots/{CHOSEN_HEATMAP}",
    )
    align.add_argument(
        "--no-index", action="store_true",
        help="skip the pair index (index/: 12 bytes per feature pair, 0.6 GB at 2,048 x 24,576) that lets "
        "`match --alignment` answer without the codes",
    )
    add_common(align)
    align.set_defaults(func=_cmd_align)
