"""Tests of splatnlp/mechinterp/report/html.py: escaping, tables, inline images and data, the page."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from report_builders import HOSTILE_TOKENS, Page, page_data, png_of

from splatnlp.mechinterp.report.html import (
    CSP,
    Markup,
    anchor_id,
    esc,
    figure_png,
    fmt,
    json_script,
    page,
    png_img,
    table,
    tag,
)


@pytest.mark.parametrize("text", HOSTILE_TOKENS[:4])
def test_text_and_attributes_are_escaped(text: str) -> None:
    html = tag("p", text, title=text)
    assert "<script" not in html.replace("<p", "") and "<img" not in html and "</td>" not in html
    parsed = Page(f'<div id="x">{html}</div>')
    assert parsed.text_by_id["x"] == text  # read back as text, exactly
    assert esc(Markup("<b>ok</b>")) == "<b>ok</b>"  # built markup passes unchanged


def test_tag_refuses_bad_names() -> None:
    with pytest.raises(ValueError, match="bad tag name 'p onclick'"):
        tag("p onclick", "x")
    with pytest.raises(ValueError, match="bad attribute name 'on click'"):
        tag("p", "x", **{"on click": "y"})


def test_table_cells_are_text_and_rows_are_checked() -> None:
    rows = [[t, 0.5, None] for t in HOSTILE_TOKENS[:4]]
    parsed = Page(table(["token", "score", "missing"], rows, id="t"))
    assert parsed.tables["t"] == [
        ["token", "score", "missing"],
        *[[t, "0.500", "—"] for t in HOSTILE_TOKENS[:4]],
    ]
    with pytest.raises(ValueError, match=r"table row has 2 cells; expected 3"):
        table(["a", "b", "c"], [[1, 2]])


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (math.nan, "—"),
        (math.inf, "—"),
        (0.12345, "0.123"),
        (3.1e-107, "3.1e-107"),
        (0.0, "0.000"),
        (7, "7"),
        (True, "yes"),
    ],
)
def test_fmt(value, text: str) -> None:
    assert fmt(value) == text


def test_json_script_cannot_end_its_element() -> None:
    data = {
        "tokens": HOSTILE_TOKENS,
        "nested": ["</script><script>alert(3)</script>", "<!--", "\u2028"],
    }
    block = json_script("report-data", data)
    assert block.count("</script>") == 1 and "<!--" not in block
    assert page_data(block) == data


def test_json_script_refuses_nan() -> None:
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        json_script("d", {"x": float("nan")})


def test_png_img_round_trips_and_refuses_other_bytes() -> None:
    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    png = figure_png(fig, dpi=50)
    parsed = Page(png_img(png, "a line", caption="cap", id="fig"))
    assert png_of(parsed.images["fig"][0]) == png
    import matplotlib.image

    assert matplotlib.image.imread(io.BytesIO(png)).shape[:2] == (50, 100)
    with pytest.raises(ValueError, match="image 'gif' is not a PNG"):
        png_img(b"GIF89a....", "gif")


def test_anchor_ids() -> None:
    assert anchor_id("full", 361) == "full-361"
    assert anchor_id("my model", np.int64(5)) == "my_model-5"


def test_page_is_self_contained_and_escapes_its_title() -> None:
    text = page(HOSTILE_TOKENS[0], Markup("<p>body</p>"), script="var x = 1;", data={"a": [1]})
    assert text.startswith("<!DOCTYPE html>")
    assert f'content="{CSP}"' in text.replace("&#x27;", "'")
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>" in text
    assert page_data(text) == {"a": [1]}
    assert CSP.startswith("default-src 'none';") and "http" not in CSP  # nothing may be fetched
    with pytest.raises(ValueError, match="must not contain '</script'"):
        page("t", Markup(""), script="x = '</script>'")
