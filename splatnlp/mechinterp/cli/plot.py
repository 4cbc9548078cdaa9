"""``splatnlp-mechinterp plot pair | block``: plots of chosen features, as PNG (or SVG).

- ``plot pair A B``: the codes of source feature A and target feature B over all examples, with
  the overlap of their active examples (:func:`~splatnlp.mechinterp.analysis.align.plots.plot_pair`);
- ``plot block --features IDS``: the activation correlations of chosen source features (rows)
  with chosen target features (columns: ``--targets``, and with ``--with-children`` each
  feature's decomposition members, its children from the smaller side)
  (:func:`~splatnlp.mechinterp.analysis.align.plots.plot_block`).

A thin shell over the matcher and the plotting module; numpy and matplotlib are imported only
when a command runs, so building the parser stays light.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from splatnlp.mechinterp.cli.common import EXIT_OK, CLIError, add_common, emit, examples_epilog


def _matcher(args: argparse.Namespace):
    from splatnlp.mechinterp.analysis.match.matcher import FeatureMatcher
    from splatnlp.mechinterp.context import load_context

    source = load_context(args.source, contexts_dir=args.contexts_dir)
    target = load_context(args.target, contexts_dir=args.contexts_dir) if args.target else None
    return FeatureMatcher(source, target)


IMAGE_SUFFIXES = (".png", ".svg")
"""Suffixes an image file may have (PNG without one); the same as ``plots.FIGURE_FORMATS``,
named here so that a bad path is refused before matplotlib is imported."""


def check_out(out: str, *, option: str = "--out") -> Path:
    """The image path ``out``, or a :class:`CLIError` naming a bad suffix, a folder in the way
    of a file or a file in the way of a folder. Missing folders are created when the image is
    written (:func:`write_image`), not here: a command refused later leaves nothing behind."""
    path = Path(out)
    if path.suffix and path.suffix.lower() not in IMAGE_SUFFIXES:
        raise CLIError(
            f"{option} {out!r} has suffix {path.suffix!r}; expected one of {list(IMAGE_SUFFIXES)} "
            "(PNG without a suffix)"
        )
    if path.is_dir():
        raise CLIError(f"{option} {out!r} is a folder; expected an image file name")
    blocking = next((p for p in path.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise CLIError(f"{option} {out!r}: {str(blocking)!r} is a file, not a folder")
    return path


def write_image(ax, out: Path) -> Path:
    """Save ``ax``'s figure to ``out`` (PNG, or SVG by suffix), creating missing folders."""
    from splatnlp.mechinterp.analysis.align import plots

    out.parent.mkdir(parents=True, exist_ok=True)
    return plots.save_figure(ax, out)


def save_pair_plot(matcher, source_feature: int, target_feature: int, out: str | Path) -> dict:
    """Draw :func:`plot_pair` of one source and one target feature of ``matcher``'s contexts and
    write it to ``out`` (PNG, or SVG by suffix); returns the drawn overlap counts and the path.
    ``compare --plot`` uses it too."""
    from matplotlib.figure import Figure

    from splatnlp.mechinterp.analysis.align.plots import pair_overlap, plot_pair

    s_ctx, t_ctx = matcher.source_ctx, matcher.target_ctx
    source, target = s_ctx.check_feature(source_feature), t_ctx.check_feature(target_feature)
    s_codes, t_codes = s_ctx.codes.feature_dense(source), t_ctx.codes.feature_dense(target)
    ax = Figure(figsize=(6.0, 5.0), layout="constrained").add_subplot()
    plot_pair(
        s_codes,
        t_codes,
        source_label=f"{s_ctx.model_type} {source}",
        target_label=f"{t_ctx.model_type} {target}",
        ax=ax,
    )
    path = write_image(ax, Path(out))
    return {"out": str(path), **pair_overlap(s_codes, t_codes)}


def _cmd_pair(args: argparse.Namespace) -> int:
    out = check_out(args.out)
    matcher = _matcher(args)
    drawn = save_pair_plot(matcher, args.feature, args.target_feature, out)
    payload = {
        "source_model": matcher.source_ctx.model_type,
        "target_model": matcher.target_ctx.model_type,
        "source_feature": args.feature,
        "target_feature": args.target_feature,
        **drawn,
    }
    text = (
        f"{payload['source_model']} {args.feature} vs {payload['target_model']} {args.target_feature}: "
        f"both {drawn['n_both']}, only source {drawn['n_only_source']}, only target "
        f"{drawn['n_only_target']}, neither {drawn['n_neither']}\n  written to {drawn['out']}"
    )
    emit(args, payload, text)
    return EXIT_OK


def block_columns(
    matcher, features: list[int], targets: list[int], with_children: bool
) -> list[int]:
    """The block's target columns: ``targets`` in the given order, then (``with_children``)
    each source feature's decomposition members not yet listed. Every id is checked first."""
    cols = [matcher.target_ctx.check_feature(t) for t in targets]
    if with_children:
        for f in features:
            for m in matcher.find_decomposition(f).members:
                if m.feature not in cols:
                    cols.append(m.feature)
    return list(dict.fromkeys(cols))


def block_matrix(matcher, features: list[int], cols: list[int]):
    """float ndarray (len(features), len(cols)): the matcher's activation correlation of each
    source feature with each column (NaN where undefined, as in ``match``)."""
    import numpy as np  # here, not at the top: building the parser must stay light

    out = np.full((len(features), len(cols)), np.nan)
    for i, f in enumerate(features):
        out[i] = matcher.score_all(f)["activation_correlation"][np.asarray(cols, dtype=np.int64)]
    return out


def _cmd_block(args: argparse.Namespace) -> int:
    out = check_out(args.out)
    if not args.targets and not args.with_children:
        raise CLIError(
            "plot block needs columns: pass --targets IDS and/or --with-children",
            hint="e.g. plot block --source full --features 361 --with-children --out block.png",
        )
    matcher = _matcher(args)
    features = [matcher.source_ctx.check_feature(f) for f in args.features]
    features = list(dict.fromkeys(features))
    cols = block_columns(matcher, features, args.targets or [], args.with_children)
    matrix = block_matrix(matcher, features, cols)
    from splatnlp.mechinterp.analysis.align.plots import plot_block

    s_model, t_model = matcher.source_ctx.model_type, matcher.target_ctx.model_type
    kind = (
        " (--targets, then decomposition members)"
        if args.with_children and args.targets
        else (" (decomposition members)" if args.with_children else "")
    )
    ax = plot_block(
        matrix,
        features,
        cols,
        row_label=f"{s_model} feature",
        col_label=f"{t_model} feature{kind}",
        title=f"activation correlation: {s_model} {', '.join(map(str, features[:6]))}"
        + (" ..." if len(features) > 6 else "")
        + f" x {len(cols)} {t_model} features",
    )
    path = write_image(ax, Path(out))
    payload = {
        "out": str(path),
        "source_model": s_model,
        "target_model": t_model,
        "rows": features,
        "cols": cols,
        "values": [
            [None if not math.isfinite(v) else float(v) for v in row] for row in matrix.tolist()
        ],
        "null_means": "the correlation is undefined (a feature active on fewer than min_active "
        "examples, or constant); drawn grey",
    }
    text = f"{len(features)} {s_model} x {len(cols)} {t_model} block (activation correlation) written to {path}"
    if not cols:
        text += (
            f"\n  note: no columns ({', '.join(map(str, features))} has no decomposition members)"
        )
    emit(args, payload, text)
    return EXIT_OK


def add_plot_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``plot`` group: ``plot pair`` and ``plot block``."""
    fmt = argparse.RawDescriptionHelpFormatter
    plot = subparsers.add_parser(
        "plot",
        help="plots of chosen features: a pair's activation scatter, a block of correlations",
        epilog=examples_epilog(
            "splatnlp-mechinterp plot pair 5127 1126 --source ultra --out pair.png",
            "splatnlp-mechinterp plot block --source full --features 361 --with-children --out block.svg",
        ),
        formatter_class=fmt,
    )
    sub = plot.add_subparsers(dest="plot_command", required=True, metavar="PLOT")

    def common(p: argparse.ArgumentParser, default_source: str) -> None:
        p.add_argument(
            "--source",
            default=default_source,
            help=f"source context name or path (default {default_source})",
        )
        p.add_argument(
            "--target", default=None, help="target context (default: the other of ultra/full)"
        )
        p.add_argument(
            "--out", required=True, metavar="FILE", help="image file: .png (default) or .svg"
        )
        add_common(p)

    pair = sub.add_parser(
        "pair",
        help="scatter of a source and a target feature's codes over all examples, with their overlap",
        epilog=examples_epilog(
            "splatnlp-mechinterp plot pair 5127 1126 --source ultra --out pair.png --json"
        ),
        formatter_class=fmt,
    )
    pair.add_argument("feature", type=int, help="source feature id")
    pair.add_argument("target_feature", type=int, help="target feature id")
    common(pair, "ultra")
    pair.set_defaults(func=_cmd_pair)

    block = sub.add_parser(
        "block",
        help="heatmap of the activation correlations of chosen source features with chosen targets",
        epilog=examples_epilog(
            "splatnlp-mechinterp plot block --source full --features 361 --with-children --out block.png",
            "splatnlp-mechinterp plot block --source ultra --features 5127 9912 --targets 1126 361 --out b.png",
        ),
        formatter_class=fmt,
    )
    block.add_argument(
        "--features",
        type=int,
        nargs="+",
        required=True,
        metavar="ID",
        help="source feature ids (rows)",
    )
    block.add_argument(
        "--targets",
        type=int,
        nargs="*",
        default=[],
        metavar="ID",
        help="target feature ids (columns)",
    )
    block.add_argument(
        "--with-children",
        action="store_true",
        help="add each source feature's decomposition members as columns (its children, from the smaller side)",
    )
    common(block, "full")
    block.set_defaults(func=_cmd_block)
