"""Page assembly for the HTML reports: escaping, tables, inline images and data, the page shell.

Everything that reaches the page goes through :func:`esc` (``html.escape``, quotes included)
unless it is :class:`Markup`, which only the builders here return; feature names, tokens,
context names and paths come from users' files, so nothing is trusted by default. Data for the
page's script is embedded by :func:`json_script`, whose output cannot close its ``<script>``.

Pages are self-contained: CSS and JS inline, images as ``data:`` URIs, and a Content Security
Policy that forbids every network fetch, so a page that renders here renders offline.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "CSP",
    "IMAGE_CHECK",
    "Markup",
    "anchor_id",
    "esc",
    "facts",
    "figure_png",
    "fmt",
    "join",
    "json_script",
    "link",
    "page",
    "png_img",
    "section",
    "table",
    "tag",
]

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
"""The page's Content Security Policy: inline styles, scripts and ``data:`` images only, so a
page cannot fetch anything (and a report that relied on the network would show it broken)."""

STYLE = """
:root { --fg: #1d2330; --muted: #5b6473; --line: #d9dde4; --band: #f4f6f9; --accent: #2457a6; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 1200px; padding: 1rem 1.5rem 4rem; }
h1 { font-size: 1.6rem; margin: 0.5rem 0 0.25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 0.5rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 1.25rem 0 0.4rem; }
a { color: var(--accent); }
.muted { color: var(--muted); }
.label { display: inline-block; padding: 0.1rem 0.5rem; border-radius: 0.8rem; background: #e4ebf7;
         font-weight: 600; }
table { border-collapse: collapse; margin: 0.4rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 0.25rem 0.6rem; text-align: left;
         vertical-align: top; }
th { background: var(--band); position: sticky; top: 0; }
td.num, th.num { text-align: right; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1rem; margin: 0.5rem 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 0.9rem; }
pre { background: var(--band); padding: 0.75rem; white-space: pre-wrap; font-size: 12px; }
.warning { background: #fff4e0; border-left: 4px solid #e0a030; padding: 0.4rem 0.75rem; }
.columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 1.5rem; }
#features-table th { cursor: pointer; user-select: none; }
#features-table th.sorted-asc::after { content: " \\25B2"; }
#features-table th.sorted-desc::after { content: " \\25BC"; }
.table-scroll { max-height: 70vh; overflow: auto; border: 1px solid var(--line); }
.table-scroll table { margin: 0; width: 100%; }
input[type=search] { font: inherit; padding: 0.3rem 0.5rem; width: min(32rem, 100%); }
section.feature-detail { background: var(--band); padding: 0.5rem 1rem 1rem; margin: 1rem 0; }
footer { margin-top: 3rem; color: var(--muted); font-size: 0.85rem; }
"""


class Markup(str):
    """HTML that is already safe: built here from escaped parts. Plain ``str`` is always escaped."""


def esc(value: Any) -> Markup:
    """``value`` as HTML text: Markup unchanged, anything else ``html.escape``d (quotes too)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    """Escaped parts joined by ``sep`` (itself escaped)."""
    return Markup(esc(sep).join(esc(p) for p in parts))


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell: None and non-finite floats as an em dash, floats to ``digits``
    decimals (scientific below 10^-digits, as p-values need), others as ``str``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.2g}"
        return f"{value:.{digits}f}"
    return str(value)


_ATTR_NAME = re.compile(r"^[a-zA-Z_:][-a-zA-Z0-9_:.]*$")
_SPACE = re.compile(r"\s+")


def tag(name: str, content: Any = "", **attrs: Any) -> Markup:
    """``<name attrs>content</name>``; attribute values are escaped, ``class_`` gives ``class``,
    None or False drops an attribute, True writes it bare."""
    if not _ATTR_NAME.match(name):
        raise ValueError(f"bad tag name {name!r}")
    parts = [name]
    for key, value in attrs.items():
        key = key.rstrip("_").replace("_", "-")
        if not _ATTR_NAME.match(key):
            raise ValueError(f"bad attribute name {key!r}")
        if value is None or value is False:
            continue
        parts.append(key if value is True else f'{key}="{esc(value)}"')
    return Markup(f"<{' '.join(parts)}>{esc(content)}</{name}>")


def anchor_id(model: str, feature: int) -> str:
    """The element id of a feature's section, ``<model>-<feature>`` (``full-361``); whitespace in
    a model name becomes ``_`` since ids cannot hold it (the page's script applies the same rule)."""
    return f"{_SPACE.sub('_', model)}-{int(feature)}"


def link(text: Any, href: str) -> Markup:
    return tag("a", text, href=href)


Cell = Any
"""A table cell: Markup as is, numbers through :func:`fmt`, anything else escaped."""


def _cell(value: Cell) -> tuple[Markup, bool]:
    if isinstance(value, Markup):
        return value, False
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return esc(fmt(value)), numeric


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    id: str | None = None,
    numeric: Sequence[bool] | None = None,
    caption: str | None = None,
) -> Markup:
    """A ``<table>`` with a header row; numeric cells are right-aligned (``numeric`` forces a
    column's alignment, e.g. for columns of Markup links to ids)."""
    head = Markup(
        "".join(
            tag("th", h, class_="num" if numeric and numeric[i] else None)
            for i, h in enumerate(headers)
        )
    )
    body = []
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(
                f"table row has {len(row)} cells; expected {len(headers)} ({list(headers)})"
            )
        cells = []
        for i, value in enumerate(row):
            content, is_num = _cell(value)
            if numeric is not None:
                is_num = numeric[i]
            cells.append(tag("td", content, class_="num" if is_num else None))
        body.append(tag("tr", Markup("".join(cells))))
    inner = Markup(
        (tag("caption", caption) if caption else "")
        + tag("thead", tag("tr", head))
        + tag("tbody", Markup("".join(body)))
    )
    return tag("table", inner, id=id)


def facts(items: Iterable[tuple[str, Any]]) -> Markup:
    """A definition list of (name, value) pairs; values through :func:`fmt` unless Markup."""
    return tag(
        "dl",
        Markup("".join(tag("dt", k) + tag("dd", _cell(v)[0]) for k, v in items)),
        class_="facts",
    )


def section(title: str, *content: Any, id: str | None = None, level: int = 2) -> Markup:
    """A ``<section>`` with a heading and the given content (Markup or escaped text)."""
    return tag("section", Markup(tag(f"h{level}", title) + "".join(esc(c) for c in content)), id=id)


def figure_png(fig: Any, *, dpi: int = 100) -> bytes:
    """A matplotlib Figure as PNG bytes (for :func:`png_img`); the figure is cleared afterwards
    to free its artists."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    fig.clear()
    return buffer.getvalue()


def png_img(png: bytes, alt: str, *, caption: str | None = None, id: str | None = None) -> Markup:
    """A ``<figure>`` holding ``png`` inline as a base64 ``data:`` URI."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"image {alt!r} is not a PNG (first bytes {png[:8]!r})")
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    img = Markup(f'<img src="{src}" alt="{esc(alt)}">')
    return tag("figure", Markup(img + (tag("figcaption", caption) if caption else "")), id=id)


def json_script(element_id: str, data: Any) -> Markup:
    """``data`` as JSON in a ``<script type="application/json">``, read back with
    ``JSON.parse(el.textContent)``. ``<``, ``>`` and ``&`` are written as ``\\u003c`` etc., so no
    string in the data can end the script element or open a comment."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(f'<script type="application/json" id="{esc(element_id)}">{text}</script>')


IMAGE_CHECK = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var decoded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.dataset.images = decoded.length + "/" + images.length;
});
"""
"""Every page records, once loaded, how many of its images decoded (``<body data-images="3/3">``):
an inlined image that is broken shows in the rendered DOM, not only on screen."""


def page(
    title: str, body: Markup, *, script: str = "", data: Mapping[str, Any] | None = None
) -> str:
    """The whole document: head (charset, CSP, title, inline CSS), ``body``, the embedded
    ``data`` (``<script id="report-data">``), an inline ``script`` (trusted source text
    written here, never user data) and :data:`IMAGE_CHECK`."""
    if "</script" in script.lower():
        raise ValueError("inline script must not contain '</script'")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        body,
        json_script("report-data", data) if data is not None else "",
        f"<script>{script}</script>" if script else "",
        f"<script>{IMAGE_CHECK}</script>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"
