"""Tests of splatnlp/mechinterp/analysis/plots.py.

On the small planted pair (source 'ultra', 7 features = side A, the smaller; target 'full', 40
features = side B): the PNG files, the heatmap's image against ``tables.block``, the split-count
bars against ``np.bincount``, the degenerate inputs (no null, no finite scores, empty block,
equal sizes), bad input, and plots from saved-and-loaded tables against in-memory ones.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from helpers import Pair
from matplotlib.image import AxesImage

from splatnlp.mechinterp.analysis.align.dictionary import AlignOptions, align_contexts
from splatnlp.mechinterp.analysis.align.plots import (
    FILES,
    plot_best_vs_null,
    plot_class_counts,
    plot_heatmap,
    plot_split_counts,
    save_plots,
    summary_figure,
)
from splatnlp.mechinterp.analysis.align.report import METRICS
from splatnlp.mechinterp.analysis.align.tables import AlignmentTables, load_tables, save_tables

CHEAP = dict(n_null_features=8, n_null_directions=16)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DPI = 40  # small images keep the file well under its time budget; layout is dpi-independent


@pytest.fixture(scope="module")
def tables(pair: Pair) -> AlignmentTables:
    return align_contexts(pair.source, pair.target, options=AlignOptions(**CHEAP))


@pytest.fixture(scope="module")
def no_null(pair: Pair) -> AlignmentTables:
    """The alignment with neither null computed (empty null arrays, None quantiles)."""
    return align_contexts(
        pair.source, pair.target, options=AlignOptions(n_null_features=0, n_null_directions=0)
    )


def empty_block(tables: AlignmentTables) -> AlignmentTables:
    block = {
        "rows": np.zeros(0, np.int64),
        "cols": np.zeros(0, np.int64),
        "values": np.zeros((0, 0), np.float32),
        "col_row": np.zeros(0, np.int64),
    }
    return dataclasses.replace(tables, block=block)


def render(fig) -> np.ndarray:
    """The figure as a PNG decoded to RGBA pixels (drawing runs the layout and every artist)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    assert buffer.getvalue()[:8] == PNG_MAGIC
    buffer.seek(0)
    return matplotlib.image.imread(buffer, format="png")


def texts(ax) -> str:
    return "\n".join(t.get_text() for t in ax.texts)


def bar_heights(ax) -> list[list[float]]:
    return [[p.get_height() for p in c] for c in ax.containers]


def test_fixture_layout(tables: AlignmentTables) -> None:
    # The assertions below name the sides; fail loudly here if the fixture changes.
    r = tables.report
    assert (r.n_features_a, r.n_features_b, r.larger_side) == (7, 40, "b")
    assert (r.a_model, r.b_model) == ("ultra", "full")
    assert len(tables.block["cols"]) > 0


def test_save_plots_writes_pngs(tables: AlignmentTables, tmp_path: Path) -> None:
    out = tmp_path / "new" / "plots"  # created, parents too
    paths = save_plots(tables, out, dpi=DPI)
    assert list(paths) == list(FILES)
    for name, path in paths.items():
        assert path == out / f"{name}.png" and path.is_file()
        assert path.read_bytes()[:8] == PNG_MAGIC
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and min(image.shape[:2]) >= 100
        colours = np.unique(image.reshape(-1, image.shape[2]), axis=0)
        assert len(colours) > 20, f"{name}.png has only {len(colours)} colours"
    # savefig keeps the figure size, so the summary is exactly 18 x 10 inches at DPI.
    assert matplotlib.image.imread(paths["summary"]).shape[:2] == (10 * DPI, 18 * DPI)


def test_save_plots_bad_input(tables: AlignmentTables, tmp_path: Path) -> None:
    for dpi in (0, -5, True, "high"):
        with pytest.raises(ValueError, match=f"dpi must be a number >= 10, got {dpi!r}"):
            save_plots(tables, tmp_path, dpi=dpi)
    with pytest.raises(TypeError, match="tables must be AlignmentTables.*got dict"):
        save_plots({"report": tables.report}, tmp_path)
    for plot in (plot_heatmap, plot_best_vs_null, plot_split_counts, plot_class_counts):
        with pytest.raises(TypeError, match="got str"):
            plot("tables")


def test_heatmap_image_is_the_block(tables: AlignmentTables) -> None:
    values = tables.block["values"].copy()
    values[0, -1] = np.nan  # an undefined correlation must come through as such
    planted = dataclasses.replace(tables, block={**tables.block, "values": values})
    ax = plot_heatmap(planted)
    (image,) = ax.images
    assert isinstance(image, AxesImage)
    shown = image.get_array()
    np.testing.assert_array_equal(np.ma.filled(shown.astype(np.float64), np.nan), values)
    assert (
        np.ma.getmaskarray(shown)[0, -1]
        and np.ma.getmaskarray(shown).sum() == np.isnan(values).sum()
    )
    assert image.get_clim() == (-1.0, 1.0)
    cmap = image.get_cmap()
    assert not np.allclose(cmap.get_bad(), cmap(0.5))  # NaN is not the colour of 0
    # Side A ('ultra') is the smaller: rows; B ('full') the larger: columns, grouped by parent.
    assert ax.get_ylabel() == "ultra feature"
    assert ax.get_xlabel() == "full feature (grouped by assigned ultra parent)"
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(i) for i in tables.block["rows"]]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in tables.block["cols"]]
    n_groups = len(np.unique(tables.block["col_row"]))
    (separators,) = ax.collections
    assert len(separators.get_segments()) == n_groups - 1
    assert len(ax.figure.axes) == 2  # the heatmap and its colorbar


def test_heatmap_empty_block(tables: AlignmentTables) -> None:
    empty = empty_block(tables)
    ax = plot_heatmap(empty)
    assert len(ax.images) == 0 and "no assigned features" in texts(ax)
    assert ax.get_ylabel() == "ultra feature"
    assert render(summary_figure(empty)).shape[:2] == (10 * DPI, 18 * DPI)


def test_heatmap_inconsistent_block(tables: AlignmentTables) -> None:
    block = {**tables.block, "values": tables.block["values"][:, :-1]}
    with pytest.raises(ValueError, match="heatmap block is inconsistent: values"):
        plot_heatmap(dataclasses.replace(tables, block=block))


@pytest.mark.parametrize("metric", ["activation_correlation", "decoder_cosine"])
def test_best_vs_null(tables: AlignmentTables, metric: str) -> None:
    ax = plot_best_vs_null(tables, metric)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    key = "correlation" if metric == "activation_correlation" else "decoder"
    for side, name in (("a", "ultra"), ("b", "full")):
        null = tables.null[f"{key}_{side}"]
        q = np.quantile(null[np.isfinite(null)], 0.99)
        assert f"null {name} q0.99 = {q:.3f}" in labels
        assert any(line.get_xdata()[0] == q for line in ax.lines)
        n = np.isfinite(getattr(tables, side)[f"best_{metric}_score"]).sum()
        assert any(label.endswith(f"(n={n})") and label.startswith(name) for label in labels)
    # Density-normalised: the null histograms (filled bars) each integrate to one.
    assert len(ax.containers) == 2
    for container in ax.containers:
        area = sum(p.get_height() * p.get_width() for p in container)
        assert area == pytest.approx(1.0)


def test_best_vs_null_without_null(no_null: AlignmentTables) -> None:
    assert all(len(v) == 0 for v in no_null.null.values())
    for metric in ("activation_correlation", "decoder_cosine"):
        ax = plot_best_vs_null(no_null, metric)
        assert "null not computed" in ax.get_title()
        assert len(ax.lines) == 0 and len(ax.containers) == 0  # no null histogram, no quantile line
        assert len([p for p in ax.patches if not p.get_fill()]) == 2  # both sides' scores
    ax = plot_best_vs_null(no_null, "coactivation_jaccard")
    assert "no null for this metric" in ax.get_title()
    fig = summary_figure(no_null)
    assert "(null not computed)" in "\n".join(t.get_text() for a in fig.axes for t in a.texts)


def test_best_vs_null_no_finite_scores(tables: AlignmentTables) -> None:
    blank = {
        side: {**getattr(tables, side), "best_decoder_cosine_score": np.full(k, np.nan)}
        for side, k in (("a", 7), ("b", 40))
    }
    nulls = {k: np.zeros(0) for k in tables.null}
    gone = dataclasses.replace(tables, a=blank["a"], b=blank["b"], null=nulls)
    ax = plot_best_vs_null(gone, "decoder_cosine")
    assert "no defined decoder cosine scores on either side" in texts(ax)
    # With the null present, each side without scores still shows up in the legend.
    one_side = dataclasses.replace(tables, a=blank["a"])
    labels = [
        t.get_text() for t in plot_best_vs_null(one_side, "decoder_cosine").get_legend().texts
    ]
    assert "ultra: no defined scores" in labels


def test_best_vs_null_unknown_metric(tables: AlignmentTables) -> None:
    with pytest.raises(ValueError, match=r"unknown metric 'cosine'; expected one of \[") as info:
        plot_best_vs_null(tables, "cosine")
    assert all(m in str(info.value) for m in METRICS)


def test_split_counts_match_bincount(tables: AlignmentTables) -> None:
    small = tables.a  # side A is the smaller
    live = small["class_label"] != "dead"
    expected = np.bincount(small["n_assigned"][live])
    ax = plot_split_counts(tables)
    (heights,) = bar_heights(ax)
    np.testing.assert_array_equal(heights, expected)
    assert sum(heights) == live.sum()
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in range(len(expected))]
    assert "full features assigned per live ultra feature" in ax.get_title()
    # Pooling the tail keeps the total and sums what it pools.
    pooled = plot_split_counts(tables, max_k=1)
    (heights,) = bar_heights(pooled)
    assert heights == [expected[0], expected[1:].sum()]
    assert pooled.get_xticklabels()[-1].get_text() == "1+"


@pytest.mark.parametrize("max_k", [0, -1, 2.5, True])
def test_split_counts_bad_max_k(tables: AlignmentTables, max_k) -> None:
    with pytest.raises(ValueError, match=f"max_k must be an integer >= 1, got {max_k!r}"):
        plot_split_counts(tables, max_k=max_k)


def test_class_counts(tables: AlignmentTables) -> None:
    r = tables.report
    ax = plot_class_counts(tables)
    shares_a, shares_b = bar_heights(ax)
    # Slots pair the classes: A (smaller) in SMALL_CLASSES order, B in LARGE_CLASSES order.
    np.testing.assert_allclose(shares_a, np.array(list(r.class_counts_a.values())) / 7)
    np.testing.assert_allclose(shares_b, np.array(list(r.class_counts_b.values())) / 40)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "split_parent\n/ split_child" and labels[1] == "equivalent"
    bar_texts = [t.get_text() for t in ax.texts]
    assert bar_texts == [str(v) for v in (*r.class_counts_a.values(), *r.class_counts_b.values())]


def test_equal_sizes(pair: Pair) -> None:
    # A context against itself: equal sizes, so B is the larger side and Hungarian runs; both
    # sides have one model and name, so the labels tell them apart by side.
    same = align_contexts(pair.source, pair.source, options=AlignOptions(**CHEAP))
    assert same.report.larger_side == "b" and same.report.hungarian is not None
    ax = plot_heatmap(same)
    assert ax.get_ylabel() == "ultra (A) feature"
    assert ax.get_xlabel() == "ultra (B) feature (grouped by assigned ultra (A) parent)"
    fig = summary_figure(same)
    text = "\n".join(t.get_text() for a in fig.axes for t in a.texts)
    assert "hungarian: 7 pairs" in text
    render(fig)


def test_summary_figure(tables: AlignmentTables) -> None:
    fig = summary_figure(tables)
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(panels) == 6
    text = "\n".join(t.get_text() for a in fig.axes for t in a.texts)
    r = tables.report
    corr = r.metrics["activation_correlation"]
    assert (
        f"ultra->full: {corr.mean_max_a:.3f} (null {r.null.correlation_max_a['0.99']:.3f})" in text
    )
    assert "hungarian skipped: sizes differ" in text
    assert f"examples: {r.n_examples:,}" in text


def test_loaded_tables_plot_the_same(tables: AlignmentTables, tmp_path: Path) -> None:
    loaded = load_tables(save_tables(tables, tmp_path / "aligned"))
    for plot in (plot_heatmap, plot_split_counts, plot_class_counts, plot_best_vs_null):
        assert bar_heights(plot(loaded)) == bar_heights(plot(tables))
    np.testing.assert_array_equal(
        plot_heatmap(loaded).images[0].get_array(), plot_heatmap(tables).images[0].get_array()
    )
    # The whole page (every panel and the report's text), pixel for pixel.
    np.testing.assert_array_equal(render(summary_figure(loaded)), render(summary_figure(tables)))


def test_import_is_light() -> None:
    # Plotting a saved alignment must not need torch, and must not touch pyplot's global state.
    code = (
        "import sys, splatnlp.mechinterp.analysis.align.plots; "
        "print(sorted(m for m in ('torch', 'matplotlib.pyplot') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
