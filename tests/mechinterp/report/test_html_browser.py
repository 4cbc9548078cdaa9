"""The reports rendered in a real browser: Debian's ``chromium``, headless.

Asserts on the DOM after the page's script ran (``--dump-dom``): the table has one row per
feature, ``?q=`` filters it, ``?sort=`` orders it, ``#<model>-<feature>`` draws that feature's
section, every inlined image decoded (``<body data-images="n/n">``), and nothing from the data
became an element; and on screenshots: their size and that they are not blank (the plots'
colours are on screen).

Skips when chromium is missing, except in CI (``CI`` set, as ``.ci/run`` does after installing
chromium), where a missing browser fails the test instead of hiding it; when ``.ci/run`` could
not install it (``SPLATNLP_NO_BROWSER`` set to the reason), the tests skip with that reason.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import matplotlib.image
import numpy as np
import pytest
from report_builders import HOSTILE_SOURCE_NAME, HOSTILE_TOKENS

from splatnlp.mechinterp.analysis.align.tables import load_tables
from splatnlp.mechinterp.context import MechInterpContext
from splatnlp.mechinterp.report import write_alignment_report, write_feature_report

WINDOW = (1200, 2000)
TIMEOUT_S = 120


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None and os.environ.get("SPLATNLP_NO_BROWSER"):
        # .ci/run tried to install it and could not: say so rather than fail on the machine.
        pytest.skip(os.environ["SPLATNLP_NO_BROWSER"])
    if path is None:
        message = (
            "chromium is not installed (Debian: `apt-get install -y chromium`); the browser tests "
            "of the HTML report need it"
        )
        if _in_ci():
            pytest.fail(f"CI is set but {message}; .ci/run installs it when absent")
        pytest.skip(message)
    return path


def _run(chromium: str, profile: Path, url: str, *extra: str) -> str:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *extra,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def dump_dom(
    chromium: str, tmp_path: Path, index: Path, query: str = "", fragment: str = ""
) -> str:
    url = (
        index.resolve().as_uri()
        + (f"?{query}" if query else "")
        + (f"#{fragment}" if fragment else "")
    )
    dom = _run(chromium, tmp_path / "profile", url, "--dump-dom")
    assert 'data-ready="true"' in dom or 'id="features-table"' not in dom, (
        "the table script did not finish"
    )
    return dom


def screenshot(chromium: str, tmp_path: Path, index: Path, query: str = "") -> np.ndarray:
    out = tmp_path / "shot.png"
    url = index.resolve().as_uri() + (f"?{query}" if query else "")
    _run(
        chromium,
        tmp_path / "profile",
        url,
        f"--screenshot={out}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    )
    assert out.stat().st_size > 20_000, f"screenshot is only {out.stat().st_size} bytes"
    return matplotlib.image.imread(io.BytesIO(out.read_bytes()))


def colourful_pixels(image: np.ndarray) -> int:
    """Pixels with clearly unequal channels: plot colours, never the page's greys and text."""
    rgb = image[..., :3].astype(np.float64)
    return int(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.25).sum())


def table_rows(dom: str) -> list[tuple[int, bool]]:
    """(row index into the data, hidden) for each row of the feature table, in DOM order."""
    return [
        (int(i), bool(hidden)) for i, hidden in re.findall(r'<tr data-i="(\d+)"( hidden="")?>', dom)
    ]


@pytest.fixture(scope="module")
def alignment_page(planted_alignment: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_alignment_report(
        planted_alignment, tmp_path_factory.mktemp("browser") / "alignment"
    )


def test_table_has_a_row_per_feature_and_images_decode(
    chromium, alignment_page, planted_alignment, tmp_path
) -> None:
    tables = load_tables(planted_alignment)
    n = tables.report.n_features_a + tables.report.n_features_b
    dom = dump_dom(chromium, tmp_path, alignment_page)
    rows = table_rows(dom)
    assert [i for i, _ in rows] == list(range(n)) and not any(hidden for _, hidden in rows)
    assert (
        f'data-shown="{n}"' in dom
        and f'data-drawn="{n}"' in dom
        and f"{n} of {n} features match<" in dom
    )
    assert '<button type="button" id="show-more" hidden="">' in dom
    links = re.findall(r'<td class="num"><a href="#((?:full|ultra)-\d+)">', dom)
    wanted = {f"{tables.report.a_model}-{f}" for f in range(tables.report.n_features_a)}
    wanted |= {f"{tables.report.b_model}-{f}" for f in range(tables.report.n_features_b)}
    assert wanted <= set(links)
    assert 'data-images="4/4"' in dom


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        ("class:split_parent", lambda row: row["class"] == "split_parent"),
        ("model:ultra count>=30", lambda row: row["model"] == "ultra" and row["count"] >= 30),
        (
            "parent_score<0.5",
            lambda row: row["parent_score"] is not None and row["parent_score"] < 0.5,
        ),
        ("parent:none model:ultra", lambda row: row["model"] == "ultra" and row["parent"] is None),
        ("full-1", lambda row: f"{row['model']}-{row['feature']}".startswith("full-1")),
    ],
)
def test_search_filters_the_rows(
    chromium, alignment_page, planted_alignment, tmp_path, query, keep
) -> None:
    from splatnlp.mechinterp.analysis.align.tables import feature_rows

    rows = feature_rows(load_tables(planted_alignment))
    want = [
        i
        for i, row in enumerate(rows)
        if keep(
            {
                **row,
                "parent_score": None
                if row["parent_score"] is None
                else round(row["parent_score"], 4),
            }
        )
    ]
    assert 0 < len(want) < len(rows), f"query {query!r} does not discriminate on this alignment"
    dom = dump_dom(chromium, tmp_path, alignment_page, query="q=" + quote(query))
    shown = [i for i, hidden in table_rows(dom) if not hidden]
    assert sorted(shown) == want
    assert f'data-shown="{len(want)}"' in dom


@pytest.mark.parametrize("key", ["count", "-count", "-parent_score", "class"])
def test_sort_orders_the_rows(chromium, alignment_page, planted_alignment, tmp_path, key) -> None:
    from splatnlp.mechinterp.analysis.align.tables import feature_rows

    rows = feature_rows(load_tables(planted_alignment))
    column, descending = key.lstrip("-"), key.startswith("-")
    values = [
        None
        if r[column] is None
        else (round(r[column], 4) if isinstance(r[column], float) else r[column])
        for r in rows
    ]
    defined = [i for i, v in enumerate(values) if v is not None]
    # The page's order: by value, ties in data order, undefined values last in both directions.
    if descending:
        defined.sort(key=lambda i: (values[i], -i), reverse=True)
    else:
        defined.sort(key=lambda i: (values[i], i))
    want = defined + [i for i, v in enumerate(values) if v is None]
    dom = dump_dom(chromium, tmp_path, alignment_page, query="sort=" + key)
    assert [i for i, _ in table_rows(dom)] == want
    assert f'data-sort="{key}"' in dom


def test_a_feature_link_draws_its_section(
    chromium, alignment_page, planted_alignment, tmp_path
) -> None:
    tables = load_tables(planted_alignment)
    small = "a" if tables.report.larger_side == "b" else "b"
    model = tables.report.a_model if small == "a" else tables.report.b_model
    arrays = tables.a if small == "a" else tables.b
    parent = int(np.argmax(arrays["n_assigned"]))
    aligned = tables.lookup(model, parent)
    assert len(aligned.children) >= 2
    dom = dump_dom(chromium, tmp_path, alignment_page, fragment=f"{model}-{parent}")
    section = re.search(
        rf'<section class="feature-detail" id="{model}-{parent}">(.*?)</section>', dom, re.S
    )
    assert section is not None, "no section drawn for the linked feature"
    assert f'<span class="label">{aligned.class_label}</span>' in section.group(1)
    children = re.search(r'<p class="children">(.*?)</p>', section.group(1)).group(1)
    assert [int(c) for c in re.findall(r">(\d+)</a>", children)] == aligned.children
    missing = dump_dom(chromium, tmp_path, alignment_page, fragment=f"{model}-99999")
    assert f"No feature {model}-99999 in this alignment." in missing


def test_large_tables_are_drawn_a_page_at_a_time(
    chromium, planted_alignment, tmp_path, monkeypatch
) -> None:
    from splatnlp.mechinterp.report import alignment

    monkeypatch.setattr(alignment, "PAGE_SIZE", 10)
    index = write_alignment_report(planted_alignment, tmp_path / "paged")
    tables = load_tables(planted_alignment)
    n = tables.report.n_features_a + tables.report.n_features_b
    dom = dump_dom(chromium, tmp_path, index, query="sort=-count")
    assert [i for i, _ in table_rows(dom)] == [
        i
        for i, _ in sorted(
            enumerate(int(c) for side in (tables.a, tables.b) for c in side["count"]),
            key=lambda t: (-t[1], t[0]),
        )
    ][:10]
    assert f'data-shown="{n}"' in dom and 'data-drawn="10"' in dom
    assert f"{n} of {n} features match; the first 10 are shown" in dom
    assert '<button type="button" id="show-more">show 10 more</button>' in dom  # not hidden


def test_alignment_screenshot_shows_the_plots(chromium, alignment_page, tmp_path) -> None:
    image = screenshot(chromium, tmp_path, alignment_page)
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])
    assert image[..., :3].std() > 0.05  # not one flat colour
    assert colourful_pixels(image) > 5_000, "no plot colours on screen: the images did not render"


def test_feature_page_renders_with_its_scatter(chromium, tiny_demo_dir, tmp_path) -> None:
    ultra, full = (
        MechInterpContext(tiny_demo_dir / "ultra"),
        MechInterpContext(tiny_demo_dir / "full"),
    )
    index = write_feature_report(full, ultra, 361, tmp_path / "feature")
    dom = dump_dom(chromium, tmp_path, index)
    assert 'data-images="1/1"' in dom and 'id="pair-scatter"' in dom
    image = screenshot(chromium, tmp_path, index)
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])
    assert colourful_pixels(image) > 500, "the scatter's points are not on screen"


def test_hostile_data_stays_text_in_the_browser(
    chromium, hostile, hostile_alignment, tmp_path
) -> None:
    source, target = hostile
    feature_index = write_feature_report(source, target, 0, tmp_path / "feature")
    dom = dump_dom(chromium, tmp_path, feature_index)
    assert dom.count("<script") == 1 and '<img src="x"' not in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    alignment_index = write_alignment_report(hostile_alignment, tmp_path / "alignment")
    dom = dump_dom(chromium, tmp_path, alignment_index, fragment="ultra-0")
    assert dom.count("<script") == 3 and "<b>bold</b>" not in dom
    section = re.search(
        r'<section class="feature-detail" id="ultra-0">(.*?)</section>', dom, re.S
    ).group(1)
    assert "src &lt;b&gt;bold&lt;/b&gt; &amp; co" in section  # the context name, drawn as text
    assert HOSTILE_SOURCE_NAME not in dom and HOSTILE_TOKENS[3] not in dom
