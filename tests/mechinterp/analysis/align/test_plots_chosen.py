"""Tests of the chosen-feature plots in splatnlp/mechinterp/analysis/align/plots.py
(``plot_pair``, ``pair_overlap``, ``plot_block``, ``save_figure``): each image is read back from
its Axes and compared with the values it draws, computed by brute force."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from helpers import SRC_DEAD, SRC_PLAIN, SRC_SUM, TGT_CONSTANT, TGT_PART_A, TGT_SUPERSET, Pair  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from splatnlp.mechinterp.analysis.align.plots import (  # noqa: E402
    BLOCK_ANNOTATE_MAX,
    PAIR_COLORS,
    pair_overlap,
    plot_block,
    plot_pair,
    save_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def kinds(s: np.ndarray, t: np.ndarray) -> list[str]:
    return [
        "both"
        if a > 0 and b > 0
        else "only_source"
        if a > 0
        else "only_target"
        if b > 0
        else "neither"
        for a, b in zip(s, t, strict=True)
    ]


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (SRC_PLAIN, TGT_SUPERSET),
        (SRC_SUM, TGT_PART_A),
        (SRC_DEAD, TGT_PART_A),
        (SRC_PLAIN, TGT_CONSTANT),
    ],
)
def test_plot_pair_draws_the_codes(pair: Pair, source: int, target: int) -> None:
    s, t = pair.source_codes[:, source], pair.target_codes[:, target]
    ax = plot_pair(s, t, source_label=f"ultra {source}", target_label=f"full {target}")
    (scatter,) = ax.collections
    np.testing.assert_array_equal(scatter.get_offsets(), np.column_stack([s, t]))
    want_colors = np.array([to_rgba(PAIR_COLORS[k]) for k in kinds(s, t)])
    np.testing.assert_allclose(scatter.get_facecolors()[:, :3], want_colors[:, :3])
    counts = {k: kinds(s, t).count(k) for k in PAIR_COLORS}
    assert pair_overlap(s, t) == {f"n_{k}": v for k, v in counts.items()}
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == [
        f"both active: {counts['both']:,}",
        f"only ultra {source}: {counts['only_source']:,}",
        f"only full {target}: {counts['only_target']:,}",
        f"neither (at 0, 0): {counts['neither']:,}",
    ]
    title = ax.get_title()
    assert f"both {counts['both']:,}, only ultra {source} {counts['only_source']:,}" in title
    if s.std() > 0 and t.std() > 0:
        assert f"r = {np.corrcoef(s, t)[0, 1]:.3f}" in title
    else:  # a dead or constant feature: no correlation, and it says so
        assert "r = n/a" in title
    assert ax.get_xlabel() == f"ultra {source} code" and ax.get_ylabel() == f"full {target} code"


def test_plot_pair_bad_input() -> None:
    with pytest.raises(
        ValueError, match=r"source_codes has 3 examples and target_codes 4; expected the same"
    ):
        plot_pair(np.ones(3), np.ones(4))
    with pytest.raises(
        ValueError, match=r"target_codes must be 1-D \(n_examples,\), got shape \(2, 2\)"
    ):
        plot_pair(np.ones(4), np.ones((2, 2)))


def test_plot_block_image_is_the_brute_force_correlation(pair: Pair) -> None:
    rows, cols = [SRC_PLAIN, SRC_SUM, SRC_DEAD], [TGT_SUPERSET, TGT_PART_A, TGT_CONSTANT, 0]
    S, T = pair.source_codes, pair.target_codes
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.array([[np.corrcoef(S[:, r], T[:, c])[0, 1] for c in cols] for r in rows])
    assert np.isnan(matrix[2]).all() and np.isnan(matrix[:, 2]).all()  # dead row, constant column
    ax = plot_block(matrix, rows, cols, row_label="ultra feature", col_label="full feature")
    (image,) = ax.images
    drawn = image.get_array()
    np.testing.assert_array_equal(np.ma.getdata(drawn), matrix)
    np.testing.assert_array_equal(np.ma.getmaskarray(drawn), np.isnan(matrix))  # NaN drawn grey
    assert image.get_clim() == (-1.0, 1.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(r) for r in rows]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(c) for c in cols]
    cells = [t.get_text() for t in ax.texts]
    assert cells == ["n/a" if np.isnan(v) else f"{v:.2f}" for v in matrix.ravel()]
    assert ax.get_title() == "3 x 4 block: activation correlation"


def test_plot_block_large_and_empty() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.uniform(-1, 1, size=(5, BLOCK_ANNOTATE_MAX // 5 + 1))
    ax = plot_block(matrix, range(5), range(matrix.shape[1]), title="big")
    np.testing.assert_array_equal(ax.images[0].get_array(), matrix)
    assert len(ax.texts) == 0 and ax.get_title() == "big"  # too many cells to label
    empty = plot_block(np.zeros((1, 0)), [3], [])
    assert len(empty.images) == 0 and "empty block: 1 rows, 0 columns" in empty.texts[0].get_text()


def test_plot_block_shape_mismatch() -> None:
    with pytest.raises(
        ValueError,
        match=r"block matrix has shape \(2, 3\); expected \(2, 2\) for 2 row ids and 2 column ids",
    ):
        plot_block(np.zeros((2, 3)), [1, 2], [3, 4])


def test_save_figure(tmp_path, pair: Pair) -> None:
    ax = plot_pair(pair.source_codes[:, SRC_PLAIN], pair.target_codes[:, TGT_SUPERSET])
    png = save_figure(ax, tmp_path / "pair.png", dpi=40)
    assert png.read_bytes()[:8] == PNG_MAGIC
    bare = save_figure(ax.figure, tmp_path / "pair", dpi=40)  # no suffix: PNG
    assert bare.read_bytes()[:8] == PNG_MAGIC
    svg = save_figure(ax, tmp_path / "pair.SVG")
    assert b"<svg" in svg.read_bytes()[:500]
    with pytest.raises(ValueError, match=r"suffix '\.pdf' is not one of \['\.png', '\.svg'\]"):
        save_figure(ax, tmp_path / "pair.pdf")
    with pytest.raises(FileNotFoundError, match=r"folder '.*nowhere' does not exist"):
        save_figure(ax, tmp_path / "nowhere" / "pair.png")
