"""Plots of a whole-dictionary alignment (:class:`AlignmentTables`), as PNG files.

- :func:`plot_heatmap`: the matched block, smaller-side features against their assigned
  larger-side features (``tables.block``), correlation on a fixed [-1, 1] diverging scale;
- :func:`plot_best_vs_null`: each side's best-match scores of one metric against the null
  samples (``tables.null``), density-normalised so sides of different sizes compare;
- :func:`plot_split_counts`: how many larger-side features each live smaller-side feature got;
- :func:`plot_class_counts`: the feature classes of both sides;
- :func:`summary_figure`: all of the above and the report's headline numbers on one page;
- :func:`save_plots`: ``heatmap.png``, ``best_vs_null.png``, ``split_counts.png`` and
  ``summary.png`` into a folder.
- chosen features: :func:`plot_pair` (two features' codes over all examples, with the overlap
  of their active examples), :func:`plot_block` (a chosen block of correlations, e.g. a Full
  feature and its Ultra children) and :func:`save_figure` (PNG, or SVG by suffix).

Imports only the data layer (``analysis/tables.py``), so plotting a saved alignment needs no torch.
Every ``plot_*`` function draws into the given Axes or, without one, into a new
:class:`matplotlib.figure.Figure`, and returns the Axes. Figures are built directly, never through
pyplot, so nothing is registered in pyplot's global figure list: plotting works headless, in
worker threads (one figure per thread), and frees its memory once the figure is dropped.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from splatnlp.mechinterp.analysis.align.report import (
    LARGE_CLASSES,
    METRICS,
    SMALL_CLASSES,
    AlignmentReport,
)
from splatnlp.mechinterp.analysis.align.tables import AlignmentTables

__all__ = [
    "pair_overlap",
    "plot_best_vs_null",
    "plot_block",
    "plot_class_counts",
    "plot_heatmap",
    "plot_pair",
    "plot_split_counts",
    "save_figure",
    "save_plots",
    "summary_figure",
]

NULL_OF_METRIC: dict[str, tuple[str, str]] = {
    "activation_correlation": ("correlation_a", "correlation_b"),
    "decoder_cosine": ("decoder_a", "decoder_b"),
}
"""The null samples (keys of ``tables.null``, sides A and B) each metric is compared with; the
other metrics have no null."""
NULL_QUANTILE = 0.99
"""The null quantile drawn as a vertical line and quoted in the summary."""
SIDE_COLORS = {"a": "tab:blue", "b": "tab:orange"}
NAN_COLOR = "0.6"
"""Undefined correlations in the heatmap: mid grey, far from the near-white of 0 on RdBu."""
MAX_TICK_LABELS = 80
"""Heatmap axes with more features than this get no per-feature id labels (they would overlap)."""
SPLIT_MAX_K = 40
"""Split-count bars from this many assigned features on are pooled into one "k+" bar. On the
tiny demo (12x more ultra than full features) splits reach 77, with 2 % of the live full
features at 40 or more."""
BAR_LABELS_MAX = 25
"""Split-count bars are labelled with their counts only up to this many bars (they overlap)."""
FILES = ("heatmap", "best_vs_null", "split_counts", "summary")
"""The PNG files :func:`save_plots` writes (``<name>.png``)."""


# -- helpers -----------------------------------------------------------------------------------
def _check_tables(tables: AlignmentTables) -> None:
    if not isinstance(tables, AlignmentTables):
        raise TypeError(
            f"tables must be AlignmentTables (from align_contexts or load_tables), "
            f"got {type(tables).__name__}"
        )


def _new_axes(ax: Axes | None, figsize: tuple[float, float] = (7.0, 4.5)) -> Axes:
    """``ax``, or the single Axes of a new pyplot-free Figure."""
    if ax is not None:
        return ax
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def _side_names(report: AlignmentReport) -> dict[str, str]:
    """Display names of sides 'a' and 'b': the model types, or the context names when the model
    types coincide, or either with " (A)" / " (B)" when both coincide."""
    for a, b in ((report.a_model, report.b_model), (report.a_name, report.b_name)):
        if a != b:
            return {"a": a, "b": b}
    return {"a": f"{report.a_model} (A)", "b": f"{report.b_model} (B)"}


def _sides(tables: AlignmentTables) -> tuple[str, str]:
    """(smaller side, larger side) keys; B counts as larger when the sizes are equal."""
    large = tables.report.larger_side
    return ("b" if large == "a" else "a"), large


def _arrays(tables: AlignmentTables, side: str) -> dict[str, np.ndarray]:
    return tables.a if side == "a" else tables.b


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pretty(metric: str) -> str:
    return {
        "activation_correlation": "activation correlation",
        "coactivation_jaccard": "co-activation Jaccard",
        "p_target_given_source": "P(b | a)",
        "p_source_given_target": "P(a | b)",
        "decoder_cosine": "decoder cosine",
        "top_token_overlap": "top-token Jaccard",
    }.get(metric, metric)


def _message(ax: Axes, text: str) -> None:
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=11,
        color="0.3",
        wrap=True,
    )


# -- panels ------------------------------------------------------------------------------------
def plot_heatmap(tables: AlignmentTables, ax: Axes | None = None) -> Axes:
    """The matched block: correlation of sampled smaller-side features (rows) with their assigned
    larger-side features (columns, grouped by row in assignment order).

    Parameters
    ----------
    tables : AlignmentTables whose ``block`` holds ``rows`` (R,), ``cols`` (C,), ``values`` float
        of shape (R, C) and ``col_row`` (C,) (see ``alignment.BLOCK_ARRAYS``)
    ax : Axes to draw into; None draws into a new Figure

    Returns the Axes. The image (``ax.images[0]``) holds ``values`` as given; NaN (undefined) is
    drawn grey, the colour scale is fixed to [-1, 1], thin vertical lines separate the column
    groups and each row's own group is outlined. An empty block gives a message, not an error.

    Raises TypeError for non-tables, ValueError when the block's shapes disagree.
    """
    _check_tables(tables)
    names = _side_names(tables.report)
    small, large = _sides(tables)
    rows, cols = np.asarray(tables.block["rows"]), np.asarray(tables.block["cols"])
    values = np.asarray(tables.block["values"])
    col_row = np.asarray(tables.block["col_row"])
    if values.shape != (len(rows), len(cols)) or col_row.shape != (len(cols),):
        raise ValueError(
            f"heatmap block is inconsistent: values {values.shape}, col_row {col_row.shape}; "
            f"expected {(len(rows), len(cols))} and ({len(cols)},) for {len(rows)} rows and "
            f"{len(cols)} columns"
        )
    ax = _new_axes(ax, (10.0, 6.0))
    ax.set_ylabel(f"{names[small]} feature")
    ax.set_xlabel(f"{names[large]} feature (grouped by assigned {names[small]} parent)")
    n_with = int((np.asarray(_arrays(tables, small)["n_assigned"]) >= 1).sum())
    if values.size == 0:
        _message(
            ax,
            f"no assigned features: no {names[large]} feature reaches correlation >= "
            f"{tables.report.options.related_correlation:g} with any {names[small]} feature",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"matched block: {names[small]} vs {names[large]}")
        return ax

    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad=NAN_COLOR)
    image = ax.imshow(
        values, cmap=cmap, vmin=-1.0, vmax=1.0, aspect="auto", interpolation="nearest"
    )
    # Group boundaries: columns are contiguous per row, so a change of col_row starts a group.
    starts = np.flatnonzero(np.r_[True, col_row[1:] != col_row[:-1]])
    ax.vlines(starts[1:] - 0.5, -0.5, len(rows) - 0.5, colors="0.35", linewidths=0.4)
    stops = np.r_[starts[1:], len(cols)]
    for start, stop in zip(starts, stops, strict=True):
        ax.add_patch(
            Rectangle(
                (start - 0.5, col_row[start] - 0.5),
                stop - start,
                1.0,
                fill=False,
                edgecolor="black",
                linewidth=0.9,
            )
        )
    for axis, ids, setter, kwargs in (
        ("y", rows, ax.set_yticks, {}),
        ("x", cols, ax.set_xticks, {"rotation": 90}),
    ):
        if len(ids) <= MAX_TICK_LABELS:
            size = 7 if len(ids) <= 50 else 5
            setter(np.arange(len(ids)), [str(i) for i in ids], fontsize=size, **kwargs)
        else:
            setter([])
            label = ax.get_xlabel() if axis == "x" else ax.get_ylabel()
            (ax.set_xlabel if axis == "x" else ax.set_ylabel)(
                f"{label}; {len(ids)} features, ids omitted"
            )
    ax.set_title(
        f"matched block: {len(rows)} of {n_with} {names[small]} features with an assigned "
        f"{names[large]} feature (most assigned first), {len(cols)} {names[large]} features",
        fontsize=10,
    )
    colorbar = ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.01)
    colorbar.set_label("activation correlation (grey: undefined)")
    return ax


def plot_best_vs_null(
    tables: AlignmentTables, metric: str = "activation_correlation", ax: Axes | None = None
) -> Axes:
    """Histograms of both sides' best-match scores of ``metric`` against the null samples.

    Parameters
    ----------
    tables : AlignmentTables; reads ``a`` / ``b`` ``best_<metric>_score`` (shape (K_a,) / (K_b,),
        finite values only) and, for ``activation_correlation`` and ``decoder_cosine``, the null
        samples ``tables.null`` (see :data:`NULL_OF_METRIC`; empty arrays mean "not computed")
    metric : one of ``alignment.METRICS``
    ax : Axes to draw into; None draws into a new Figure

    Returns the Axes: step histograms of the real best scores, filled ones of the null, both
    density-normalised on shared bins, and a dashed line at the null's 0.99 quantile per side.
    Metrics without a null, or a null not computed, say so in the title.

    Raises ValueError for an unknown metric, TypeError for non-tables.
    """
    _check_tables(tables)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {list(METRICS)}")
    names = _side_names(tables.report)
    other = {"a": "b", "b": "a"}
    scores = {s: _finite(_arrays(tables, s)[f"best_{metric}_score"]) for s in ("a", "b")}
    null_keys = NULL_OF_METRIC.get(metric)
    nulls = {"a": np.zeros(0), "b": np.zeros(0)}
    if null_keys is not None:
        nulls = {s: _finite(tables.null[key]) for s, key in zip(("a", "b"), null_keys, strict=True)}
    ax = _new_axes(ax)
    title = f"best {_pretty(metric)}: {names['a']} vs {names['b']}"
    if null_keys is None:
        title += "\n(no null for this metric)"
    elif not any(len(v) for v in nulls.values()):
        title += "\n(null not computed)"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"best {_pretty(metric)} against the other dictionary")
    ax.set_ylabel("density")
    pooled = np.concatenate([*scores.values(), *nulls.values()])
    if len(pooled) == 0:
        _message(ax, f"no defined {_pretty(metric)} scores on either side")
        return ax
    # Shared bins so the real and null histograms line up bar for bar.
    bins = np.histogram_bin_edges(pooled, bins=40)
    for s in ("a", "b"):
        color = SIDE_COLORS[s]
        if len(nulls[s]):
            ax.hist(
                nulls[s],
                bins=bins,
                density=True,
                color=color,
                alpha=0.25,
                label=f"null {names[s]} (n={len(nulls[s])})",
            )
            q = float(np.quantile(nulls[s], NULL_QUANTILE))
            ax.axvline(
                q,
                color=color,
                linestyle="--",
                linewidth=1.2,
                label=f"null {names[s]} q{NULL_QUANTILE:g} = {q:.3f}",
            )
        if len(scores[s]):
            ax.hist(
                scores[s],
                bins=bins,
                density=True,
                histtype="step",
                linewidth=1.8,
                color=color,
                label=f"{names[s]} best vs {names[other[s]]} (n={len(scores[s])})",
            )
        else:
            # An entry with no artist keeps the side visible in the legend.
            ax.plot([], [], color=color, label=f"{names[s]}: no defined scores")
    # Headroom: the legend (up to six entries) sits above the tallest bar, never on a peak.
    ax.set_ylim(0, ax.get_ylim()[1] * 1.6)
    ax.legend(fontsize=7, loc="upper right")
    return ax


def plot_split_counts(
    tables: AlignmentTables, ax: Axes | None = None, *, max_k: int = SPLIT_MAX_K
) -> Axes:
    """How many live smaller-side features have k = 0, 1, 2, ... assigned larger-side features.

    Parameters
    ----------
    tables : AlignmentTables; reads the smaller side's ``n_assigned`` and ``class_label``
        (shape (K_small,)); dead features are left out
    ax : Axes to draw into; None draws into a new Figure
    max_k : bars for k >= ``max_k`` are pooled into one hatched "max_k+" bar (>= 1)

    Returns the Axes with one bar per k (``ax.patches`` in order of k), coloured by class (k = 0
    unique, 1 equivalent or partial, >= 2 split parent) and labelled with its count; the y axis
    is logarithmic when the counts span more than two decades.

    Raises ValueError for ``max_k`` < 1, TypeError for non-tables.
    """
    _check_tables(tables)
    if isinstance(max_k, bool) or not isinstance(max_k, (int, np.integer)) or max_k < 1:
        raise ValueError(f"max_k must be an integer >= 1, got {max_k!r}")
    names = _side_names(tables.report)
    small, large = _sides(tables)
    arrays = _arrays(tables, small)
    live = np.asarray(arrays["class_label"]) != "dead"
    n_assigned = np.asarray(arrays["n_assigned"], dtype=np.int64)[live]
    ax = _new_axes(ax)
    ax.set_title(
        f"{names[large]} features assigned per live {names[small]} feature "
        f"({int(live.sum())} live of {len(live)})",
        fontsize=10,
    )
    ax.set_xlabel(f"assigned {names[large]} features (k)")
    ax.set_ylabel(f"{names[small]} features")
    if len(n_assigned) == 0:
        _message(ax, f"no live {names[small]} features")
        return ax
    counts = np.bincount(n_assigned)
    labels = [str(k) for k in range(len(counts))]
    pooled = len(counts) > max_k + 1
    if pooled:
        # A long tail of a few large splits would squeeze the bars that matter; pool it.
        counts = np.r_[counts[:max_k], counts[max_k:].sum()]
        labels = [*labels[:max_k], f"{max_k}+"]
    ks = np.arange(len(counts))
    colors = np.where(ks == 0, "0.6", np.where(ks == 1, "tab:green", "tab:purple"))
    bars = ax.bar(ks, counts, color=colors, width=0.8)
    if pooled:
        bars[-1].set_hatch("///")
        bars[-1].set_edgecolor("white")
    if len(ks) <= BAR_LABELS_MAX:
        ax.bar_label(bars, labels=[str(c) if c else "" for c in counts], fontsize=7)
        ax.set_xticks(ks, labels, fontsize=8 if len(ks) <= 15 else 6)
    else:
        # Every fifth k keeps the tick labels apart; the pooled bar is always named.
        shown = [k for k in ks if k % 5 == 0 or k == ks[-1]]
        ax.set_xticks(shown, [labels[k] for k in shown], fontsize=8)
    positive = counts[counts > 0]
    if positive.max() > 100 * positive.min():
        ax.set_yscale("log")
        ax.set_ylim(top=positive.max() * 4)
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(top=counts.max() * 1.3)  # headroom for the legend above the bars
    handles = [
        Patch(color="0.6", label="0: unique"),
        Patch(color="tab:green", label="1: equivalent / partial"),
        Patch(color="tab:purple", label=">=2: split parent"),
    ]
    if pooled:
        handles.append(
            Patch(
                facecolor="tab:purple",
                hatch="///",
                edgecolor="white",
                label=f"{max_k}+ pooled (max {int(n_assigned.max())})",
            )
        )
    ax.legend(handles=handles, fontsize=7, loc="upper right")
    return ax


def plot_class_counts(tables: AlignmentTables, ax: Axes | None = None) -> Axes:
    """Feature classes of both sides as grouped bars.

    Parameters
    ----------
    tables : AlignmentTables; reads ``report.class_counts_a`` / ``class_counts_b``
    ax : Axes to draw into; None draws into a new Figure

    Returns the Axes. Corresponding classes of the two sides share a slot (split parent / split
    child, equivalent, partial, unique / novel, dead); bar heights are shares of each side's
    features, so dictionaries of different sizes compare, and each bar is labelled with its
    count. ``ax.containers`` holds the bars of side A, then side B.
    """
    _check_tables(tables)
    report = tables.report
    names = _side_names(report)
    small, large = _sides(tables)
    counts = {"a": report.class_counts_a, "b": report.class_counts_b}
    classes = {small: list(SMALL_CLASSES), large: list(LARGE_CLASSES)}
    # Classes the report has beyond the known ones get their own slot rather than vanishing.
    for s in ("a", "b"):
        for extra in counts[s]:
            if extra not in classes[s]:
                classes[s].append(extra)
    n_slots = max(len(classes["a"]), len(classes["b"]))
    for s in ("a", "b"):
        classes[s] += [""] * (n_slots - len(classes[s]))
    slots = []
    for ca, cb in zip(classes["a"], classes["b"], strict=True):
        slots.append(ca if ca == cb else " / ".join(c for c in (ca, cb) if c))
    ax = _new_axes(ax)
    x = np.arange(n_slots)
    width = 0.4
    for offset, s in ((-width / 2, "a"), (width / 2, "b")):
        n = np.array([counts[s].get(c, 0) if c else 0 for c in classes[s]])
        total = sum(counts[s].values())
        share = n / total if total else np.zeros(len(n))
        bars = ax.bar(
            x + offset,
            share,
            width=width,
            color=SIDE_COLORS[s],
            label=f"{names[s]} ({total} features)",
        )
        ax.bar_label(bars, labels=[str(v) for v in n], fontsize=7)
    ax.set_xticks(x, [s.replace(" / ", "\n/ ") for s in slots], fontsize=8)
    ax.set_ylabel("share of the side's features")
    ax.set_ylim(0, 1.1)
    ax.set_title(f"feature classes: {names['a']} vs {names['b']}", fontsize=10)
    ax.legend(fontsize=8)
    return ax


# -- pages -------------------------------------------------------------------------------------
def _summary_text(tables: AlignmentTables) -> str:
    """The report's headline numbers, one fact a line, wrapped to the text panel's width."""
    r = tables.report
    names = _side_names(r)
    small, large = _sides(tables)
    lines = [
        f"{names['a']} ({r.a_name!r}) vs {names['b']} ({r.b_name!r})",
        f"examples: {r.n_examples:,} (of {r.n_examples_context:,} in the contexts)",
        f"features: {names['a']} {r.n_features_a:,}, {names['b']} {r.n_features_b:,}; "
        f"{names[large]} assigned to {names[small]}",
        "",
    ]
    null_q = {
        "activation_correlation": (r.null.correlation_max_a, r.null.correlation_max_b),
        "decoder_cosine": (r.null.decoder_max_a, r.null.decoder_max_b),
    }
    q_key = str(NULL_QUANTILE)
    for metric in ("activation_correlation", "decoder_cosine"):
        m = r.metrics.get(metric)
        if m is None:
            continue
        lines.append(f"{_pretty(metric)}, mean best (null q{NULL_QUANTILE:g}):")
        for s, mean, share, quantiles in (
            ("a", m.mean_max_a, m.share_above_a, null_q[metric][0]),
            ("b", m.mean_max_b, m.share_above_b, null_q[metric][1]),
        ):
            q = _fmt(quantiles.get(q_key)) if quantiles else "not computed"
            share_text = "n/a" if share is None else f"{share:.1%}"
            lines.append(
                f"  {names[s]}->{names['b' if s == 'a' else 'a']}: {_fmt(mean)} (null {q}); "
                f"{share_text} >= {m.threshold:g}"
            )
    lines.append("")
    for s, class_counts in (("a", r.class_counts_a), ("b", r.class_counts_b)):
        parts = ", ".join(f"{c} {n:,}" for c, n in class_counts.items())
        lines.append(f"classes {names[s]}: {parts}")
    lines.append("")
    if r.cka is not None:
        q = r.cka.null_quantiles
        null = "" if q is None else f" (null q0.99 {q['0.99']:.4f})"
        lines.append(f"linear CKA: {_fmt(r.cka.value)}{null}, {r.cka.n_batches} batches of {r.cka.batch_size}")
    if r.hungarian is not None:
        h = r.hungarian
        lines.append(
            f"hungarian: {h.n_pairs:,} pairs, mean correlation {_fmt(h.mean_correlation)}, "
            f"{h.n_related:,} >= {r.options.related_correlation:g}"
        )
    else:
        lines.append(f"hungarian skipped: {r.hungarian_skipped or 'no reason recorded'}")
    timings = ", ".join(f"{k} {v:.1f}" for k, v in r.timings_s.items())
    lines.append(f"elapsed: {r.elapsed_s:.1f} s ({timings})")
    for note in r.warnings:
        lines.append(f"note: {note}")
    wrapped = []
    for line in lines:
        wrapped.extend(textwrap.wrap(line, width=62, subsequent_indent="    ") or [""])
    return "\n".join(wrapped)


def summary_figure(tables: AlignmentTables) -> Figure:
    """One page: heatmap, best-vs-null of activation correlation and decoder cosine, split
    counts, class counts and the report's headline numbers. Returns a pyplot-free Figure
    (18 x 10 inches); save it with ``fig.savefig``."""
    _check_tables(tables)
    fig = Figure(figsize=(18.0, 10.0), layout="constrained")
    axes = fig.subplot_mosaic(
        [["heatmap", "heatmap", "correlation", "decoder"], ["split", "classes", "text", "text"]],
        width_ratios=[1.0, 1.0, 1.0, 1.0],
    )
    plot_heatmap(tables, ax=axes["heatmap"])
    plot_best_vs_null(tables, "activation_correlation", ax=axes["correlation"])
    plot_best_vs_null(tables, "decoder_cosine", ax=axes["decoder"])
    plot_split_counts(tables, ax=axes["split"])
    plot_class_counts(tables, ax=axes["classes"])
    text_ax = axes["text"]
    text_ax.axis("off")
    text_ax.text(
        0.0,
        1.0,
        _summary_text(tables),
        transform=text_ax.transAxes,
        ha="left",
        va="top",
        family="monospace",
        fontsize=9,
    )
    names = _side_names(tables.report)
    fig.suptitle(f"alignment of {names['a']} and {names['b']}", fontsize=13)
    return fig


def _heatmap_figure(tables: AlignmentTables) -> Figure:
    """A figure sized to the block: ~0.09 inch a column and 0.16 inch a row, within limits."""
    n_rows, n_cols = len(tables.block["rows"]), len(tables.block["cols"])
    width = float(np.clip(3.5 + 0.09 * n_cols, 8.0, 28.0))
    height = float(np.clip(2.5 + 0.16 * n_rows, 5.0, 14.0))
    fig = Figure(figsize=(width, height), layout="constrained")
    plot_heatmap(tables, ax=fig.add_subplot())
    return fig


def _best_vs_null_figure(tables: AlignmentTables) -> Figure:
    fig = Figure(figsize=(13.0, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_best_vs_null(tables, "activation_correlation", ax=left)
    plot_best_vs_null(tables, "decoder_cosine", ax=right)
    return fig


def save_plots(
    tables: AlignmentTables, directory: str | Path, *, dpi: int = 120
) -> dict[str, Path]:
    """Write the alignment's plots as PNG into ``directory`` (created if missing).

    Parameters
    ----------
    tables : AlignmentTables (from ``align_contexts`` or ``load_tables``)
    directory : output folder
    dpi : resolution of every PNG (>= 10)

    Returns ``{name: path}`` for the names in :data:`FILES`: ``heatmap`` (the matched block),
    ``best_vs_null`` (activation correlation and decoder cosine side by side),
    ``split_counts`` and ``summary`` (the one-page :func:`summary_figure`).

    Raises TypeError for non-tables, ValueError for a bad ``dpi``.
    """
    _check_tables(tables)
    if isinstance(dpi, bool) or not isinstance(dpi, (int, np.integer, float)) or dpi < 10:
        raise ValueError(f"dpi must be a number >= 10, got {dpi!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    builders = {
        "heatmap": _heatmap_figure,
        "best_vs_null": _best_vs_null_figure,
        "split_counts": lambda t: (
            plot_split_counts(
                t, Figure(figsize=(7.0, 4.5), layout="constrained").add_subplot()
            ).figure
        ),
        "summary": summary_figure,
    }
    paths: dict[str, Path] = {}
    for name in FILES:
        fig = builders[name](tables)
        path = directory / f"{name}.png"
        fig.savefig(path, dpi=dpi, format="png")
        # A pyplot-free figure is freed with its last reference; clearing it first releases
        # the artists (and the heatmap's image copy) without waiting for the cycle collector.
        fig.clear()
        paths[name] = path
    return paths


# -- chosen features ---------------------------------------------------------------------------
PAIR_COLORS = {
    "both": "tab:purple",
    "only_source": "tab:blue",
    "only_target": "tab:orange",
    "neither": "0.75",
}
"""Scatter colours of :func:`plot_pair`, by where each example is active."""
BLOCK_ANNOTATE_MAX = 400
"""Heatmap cells of :func:`plot_block` carry their value as text up to this many cells."""
FIGURE_FORMATS = {".png": "png", ".svg": "svg"}
"""File suffixes :func:`save_figure` writes, and their format; no suffix means PNG."""


def _codes_1d(name: str, codes: np.ndarray) -> np.ndarray:
    array = np.asarray(codes, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_examples,), got shape {array.shape}")
    return array


def pair_overlap(source_codes: np.ndarray, target_codes: np.ndarray) -> dict[str, int]:
    """Counts of examples where both, only the source, only the target, or neither is active
    (code > 0): keys ``n_both``, ``n_only_source``, ``n_only_target``, ``n_neither``.

    Parameters
    ----------
    source_codes, target_codes : arrays of shape (n_examples,), one feature each, zeros included
    """
    s, t = _codes_1d("source_codes", source_codes) > 0, _codes_1d("target_codes", target_codes) > 0
    if s.shape != t.shape:
        raise ValueError(
            f"source_codes has {len(s)} examples and target_codes {len(t)}; expected the same"
        )
    return {
        "n_both": int((s & t).sum()),
        "n_only_source": int((s & ~t).sum()),
        "n_only_target": int((~s & t).sum()),
        "n_neither": int((~s & ~t).sum()),
    }


def plot_pair(
    source_codes: np.ndarray,
    target_codes: np.ndarray,
    *,
    source_label: str = "source",
    target_label: str = "target",
    ax: Axes | None = None,
) -> Axes:
    """Scatter of two features' codes over all examples, coloured by where each is active.

    Parameters
    ----------
    source_codes, target_codes : arrays of shape (n_examples,), one feature each over the same
        examples, zeros included (``ctx.codes.feature_dense(feature)``)
    source_label, target_label : axis names, e.g. ``"ultra 5127"``
    ax : Axes to draw into; None draws into a new Figure

    Returns the Axes. ``ax.collections[0]`` is the one scatter: its offsets are
    ``(source_codes[i], target_codes[i])`` for every example ``i``, in example order; the
    legend and the title give the four overlap counts of :func:`pair_overlap` and the title the
    Pearson correlation over all examples ("n/a" when a feature is constant).

    Raises ValueError when the arrays are not 1-D of the same length.
    """
    counts = pair_overlap(source_codes, target_codes)
    s, t = _codes_1d("source_codes", source_codes), _codes_1d("target_codes", target_codes)
    kind = np.where(
        s > 0, np.where(t > 0, "both", "only_source"), np.where(t > 0, "only_target", "neither")
    )
    ax = _new_axes(ax, (6.0, 5.0))
    ax.scatter(s, t, c=[PAIR_COLORS[k] for k in kind], s=9, alpha=0.6, linewidths=0)
    labels = {
        "both": "both active",
        "only_source": f"only {source_label}",
        "only_target": f"only {target_label}",
        "neither": "neither (at 0, 0)",
    }
    ax.legend(
        handles=[
            Patch(color=PAIR_COLORS[k], label=f"{labels[k]}: {counts['n_' + k]:,}")
            for k in PAIR_COLORS
        ],
        fontsize=8,
        loc="upper right",
    )
    ax.set_xlabel(f"{source_label} code")
    ax.set_ylabel(f"{target_label} code")
    defined = len(s) > 1 and s.std() > 0 and t.std() > 0
    r = _fmt(float(np.corrcoef(s, t)[0, 1]) if defined else None)
    ax.set_title(
        f"{source_label} vs {target_label}: r = {r} over {len(s):,} examples\n"
        f"both {counts['n_both']:,}, only {source_label} {counts['n_only_source']:,}, "
        f"only {target_label} {counts['n_only_target']:,}, neither {counts['n_neither']:,}",
        fontsize=10,
    )
    return ax


def plot_block(
    matrix: np.ndarray,
    row_ids: list[int] | np.ndarray,
    col_ids: list[int] | np.ndarray,
    *,
    row_label: str = "source feature",
    col_label: str = "target feature",
    value_label: str = "activation correlation",
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Heatmap of a chosen block, e.g. a Full feature and its children (rows) against Ultra
    features (columns), by activation correlation.

    Parameters
    ----------
    matrix : float array of shape (len(row_ids), len(col_ids)), NaN where undefined
    row_ids, col_ids : the feature ids of the rows and columns, as tick labels
    row_label, col_label : axis names (e.g. ``"full feature"``)
    value_label : what the values are (the colour bar's label)
    title : the title; None gives one naming the block's size
    ax : Axes to draw into; None draws into a new Figure

    Returns the Axes. The image (``ax.images[0]``) holds ``matrix`` as given, on a fixed
    [-1, 1] diverging scale with NaN grey; each cell shows its value up to
    :data:`BLOCK_ANNOTATE_MAX` cells. An empty block gives a message, not an error.

    Raises ValueError when the matrix's shape does not match the ids.
    """
    rows, cols = np.asarray(row_ids), np.asarray(col_ids)
    values = np.asarray(matrix, dtype=np.float64)
    if rows.ndim != 1 or cols.ndim != 1 or values.shape != (len(rows), len(cols)):
        raise ValueError(
            f"block matrix has shape {values.shape}; expected {(len(rows), len(cols))} for "
            f"{len(rows)} row ids and {len(cols)} column ids"
        )
    ax = _new_axes(
        ax,
        (
            float(np.clip(2.5 + 0.45 * len(cols), 5.0, 24.0)),
            float(np.clip(2.0 + 0.4 * len(rows), 3.5, 14.0)),
        ),
    )
    ax.set_ylabel(row_label)
    ax.set_xlabel(col_label)
    ax.set_title(title or f"{len(rows)} x {len(cols)} block: {value_label}", fontsize=10)
    if values.size == 0:
        _message(ax, f"empty block: {len(rows)} rows, {len(cols)} columns")
        ax.set_xticks([])
        ax.set_yticks([])
        return ax
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad=NAN_COLOR)
    image = ax.imshow(
        values, cmap=cmap, vmin=-1.0, vmax=1.0, aspect="auto", interpolation="nearest"
    )
    for ids, setter, kwargs in ((rows, ax.set_yticks, {}), (cols, ax.set_xticks, {"rotation": 90})):
        if len(ids) <= MAX_TICK_LABELS:
            setter(
                np.arange(len(ids)),
                [str(i) for i in ids],
                fontsize=7 if len(ids) <= 50 else 5,
                **kwargs,
            )
        else:
            setter([])
    if values.size <= BLOCK_ANNOTATE_MAX:
        for (i, j), v in np.ndenumerate(values):
            text = "n/a" if not np.isfinite(v) else f"{v:.2f}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=6,
                color="white" if abs(v) > 0.6 else "black",
            )
    colorbar = ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.01)
    colorbar.set_label(f"{value_label}\n(grey: undefined)", fontsize=8)
    return ax


def save_figure(figure: Figure | Axes, path: str | Path, *, dpi: int = 120) -> Path:
    """Write ``figure`` (or the figure of an Axes) to ``path``: PNG, or SVG for a ``.svg``
    suffix (see :data:`FIGURE_FORMATS`); the parent folder must exist. Returns the path.

    Raises ValueError for another suffix, FileNotFoundError for a missing folder.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix and suffix not in FIGURE_FORMATS:
        raise ValueError(
            f"cannot write {str(path)!r}: suffix {path.suffix!r} is not one of {sorted(FIGURE_FORMATS)}"
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist"
        )
    fig = figure.figure if isinstance(figure, Axes) else figure
    fig.savefig(path, dpi=dpi, format=FIGURE_FORMATS.get(suffix, "png"))
    return path
