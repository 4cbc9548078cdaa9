"""The report of a saved whole-dictionary alignment: its summary, class counts, plots, and a
sortable, searchable table of every feature of both models with a section per feature.

:func:`write_alignment_report` reads a folder written by ``splatnlp-mechinterp align`` (or
:func:`save_tables`) and writes one self-contained ``index.html``. The table's data is embedded
once as JSON and drawn by the page's script (26,624 rows for Full x Ultra: as static HTML with a
section per feature the page would be tens of megabytes). A row's feature links to
``#<model>-<feature>`` (``#full-361``); the script then draws that feature's section (class,
the rule behind it with its numbers, parent, children, best matches) under the anchor. The
search box takes words (substrings of a row), ``key:value`` (a column equals) and ``key>x``,
``key<x``, ``key>=x``, ``key<=x`` (numeric columns), all of which must hold; ``?q=...`` in the
URL fills it and ``?sort=key`` / ``?sort=-key`` sorts (ascending / descending) on load. The
first :data:`PAGE_SIZE` matching rows are drawn, the rest on "show more" / "show all".
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splatnlp.mechinterp.analysis.metrics.verdicts import (
    COACTIVE_MIN_CORRELATION,
    DECODER_MIN_CORRELATION,
    EQUIVALENT_PROPORTIONALITY,
    EQUIVALENT_PROPORTIONALITY_GAP,
    EQUIVALENT_SIBLING_ASYMMETRY,
    EQUIVALENT_SIBLINGS_INSIDE,
    NOVEL_ERROR_RATIO,
    WEAK_CORRELATION,
)
from splatnlp.mechinterp.report.folder import (
    INDEX,
    MARKER,
    REPORT_FORMAT,
    ReportManifest,
    check_report_dir,
    is_report_dir,
    write_report_dir,
)
from splatnlp.mechinterp.report.html import (
    Markup,
    esc,
    facts,
    page,
    png_img,
    section,
    table,
    tag,
)

if TYPE_CHECKING:
    from splatnlp.mechinterp.analysis.align.tables import AlignmentTables

__all__ = ["TABLE_COLUMNS", "alignment_page", "side_names", "write_alignment_report"]

PLOTS = ("summary", "heatmap", "best_vs_null", "split_counts")
"""The alignment's plots shown, in page order (the PNG names ``save_plots`` writes)."""
PLOT_CAPTIONS = {
    "summary": "One page: the matched block, best scores against the null, split counts, classes "
    "and the headline numbers.",
    "heatmap": "The matched block: correlation of smaller-side features (rows) with their assigned "
    "larger-side features (columns, grouped by parent).",
    "best_vs_null": "Best activation correlation and decoder cosine of every feature against the "
    "other dictionary, beside the null.",
    "split_counts": "How many larger-side features each live smaller-side feature was assigned.",
}
PLOT_DPI = 100
"""Resolution of the plots drawn here when the alignment folder has none saved."""

TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("model", "model", "model"),
    ("feature", "feature", "self"),
    ("class", "class", "text"),
    ("count", "active", "int"),
    ("parent", "parent", "other"),
    ("parent_score", "parent r", "float"),
    ("parent_decoder_cosine", "parent decoder cos", "float"),
    ("nesting", "nesting", "float"),
    ("error_ratio", "error ratio", "float"),
    ("n_children", "children", "int"),
    ("best_activation_correlation", "best r match", "other"),
    ("best_activation_correlation_score", "best r", "float"),
    ("best_decoder_cosine", "best decoder match", "other"),
    ("best_decoder_cosine_score", "best decoder cos", "float"),
)
"""The table's columns: (data key, header, kind). Kinds: ``self`` / ``other`` are feature ids
linking to a section of the row's model / the other model, ``float`` shows 3 decimals."""
DETAIL_METRICS = (
    ("activation_correlation", "activation correlation"),
    ("decoder_cosine", "decoder cosine"),
    ("coactivation_jaccard", "co-activation Jaccard"),
    ("p_target_given_source", "P(other | this)"),
    ("p_source_given_target", "P(this | other)"),
    ("top_token_overlap", "top-token Jaccard"),
)
"""Best match per metric shown in a feature's section (``best_<metric>`` columns)."""
DIGITS = 4
"""Decimals the embedded data keeps (the table shows 3; ``features.csv`` has full precision)."""
PAGE_SIZE = 500
"""Rows the table draws at first, and per "show more": laying out all 26,624 rows of Full x
Ultra took 8-17 s in headless Chromium here (2 loaded cores), 500 rows well under a second."""


# -- writing -------------------------------------------------------------------------------------
def _load(alignment_dir: Path) -> AlignmentTables:
    from splatnlp.mechinterp.analysis.align.tables import load_tables

    hint = "write one with `splatnlp-mechinterp align full ultra --out DIR`"
    if not alignment_dir.exists():
        raise FileNotFoundError(f"alignment folder {str(alignment_dir)!r} does not exist; {hint}")
    if not alignment_dir.is_dir():
        raise FileNotFoundError(f"alignment folder {str(alignment_dir)!r} is not a folder; {hint}")
    if is_report_dir(alignment_dir):
        raise ValueError(
            f"{str(alignment_dir)!r} is an HTML report ({MARKER} of format {REPORT_FORMAT!r}), not "
            f"an alignment folder; pass the folder `align --out` wrote"
        )
    if not (alignment_dir / "report.json").is_file():
        raise FileNotFoundError(
            f"{str(alignment_dir)!r} is not an alignment folder (no report.json); {hint}"
        )
    return load_tables(alignment_dir)


def _plots(tables: AlignmentTables, alignment_dir: Path) -> tuple[dict[str, bytes], str]:
    """The PNGs to show and where they came from: the folder's ``plots/`` when all are there
    (what ``align`` drew), else drawn now."""
    saved = {name: alignment_dir / "plots" / f"{name}.png" for name in PLOTS}
    if all(p.is_file() for p in saved.values()):
        return {name: p.read_bytes() for name, p in saved.items()}, "saved"
    from splatnlp.mechinterp.analysis.align.plots import save_plots

    with tempfile.TemporaryDirectory(prefix="splatnlp-report-plots-") as tmp:
        paths = save_plots(tables, tmp, dpi=PLOT_DPI)
        return {name: paths[name].read_bytes() for name in PLOTS}, "drawn"


def write_alignment_report(
    alignment_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False
) -> Path:
    """Write the report of the alignment saved in ``alignment_dir`` to ``out_dir``.

    Parameters
    ----------
    alignment_dir : a folder written by ``splatnlp-mechinterp align ... --out`` (or
        :func:`save_tables`); its ``plots/`` are shown when present, else drawn
    out_dir : the report folder: new, empty, or (with ``overwrite``) a previous report
    overwrite : replace a previous report at ``out_dir``

    Returns the path of ``index.html`` (beside it ``report.json``, a :class:`ReportManifest`).

    Raises FileExistsError for an ``out_dir`` that may not be written (checked first),
    FileNotFoundError for a missing or incomplete alignment folder, ValueError for a folder that
    is a report rather than an alignment.
    """
    t0 = time.perf_counter()
    alignment_dir = Path(alignment_dir)
    out_dir = check_report_dir(out_dir, overwrite=overwrite)
    tables = _load(alignment_dir)
    plots, plots_from = _plots(tables, alignment_dir)
    body = alignment_page(tables, plots, source=str(alignment_dir))
    r = tables.report
    manifest = ReportManifest(
        kind="alignment",
        title=f"alignment of {r.a_name} and {r.b_name}",
        inputs={
            "alignment": str(alignment_dir.resolve()),
            "a": {"name": r.a_name, "model_type": r.a_model, "fingerprint": r.a_fingerprint},
            "b": {"name": r.b_name, "model_type": r.b_model, "fingerprint": r.b_fingerprint},
            "plots": plots_from,
        },
        elapsed_s=round(time.perf_counter() - t0, 3),
        data={
            "n_features": r.n_features_a + r.n_features_b,
            "class_counts_a": r.class_counts_a,
            "class_counts_b": r.class_counts_b,
        },
    )
    write_report_dir(out_dir, {INDEX: body}, manifest, overwrite=overwrite)
    return out_dir / INDEX


# -- data ----------------------------------------------------------------------------------------
def side_names(tables: AlignmentTables) -> list[str]:
    """Names of sides A and B on the page and in anchors: the model types, or the context names
    when the model types coincide, or either with ``-a`` / ``-b`` when both coincide (two
    features must never share an anchor)."""
    r = tables.report
    for a, b in ((r.a_model, r.b_model), (r.a_name, r.b_name)):
        if a != b:
            return [a, b]
    return [f"{r.a_model}-a", f"{r.b_model}-b"]


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, DIGITS) if math.isfinite(value) else None
    return value


def _equivalent_rule(o) -> str:
    """The ``equivalent`` test in words with the alignment's thresholds (verdicts.equivalent_by)."""
    return (
        f"decoder cosine >= {o.equivalent_decoder_cosine:g} with correlation >= {DECODER_MIN_CORRELATION:g}, "
        f"or correlation >= {o.equivalent_correlation:g}, "
        f"or co-active correlation (family-wise lower bound) >= {o.equivalent_coactive_correlation:g} with "
        f"correlation >= {COACTIVE_MIN_CORRELATION:g}, "
        f"or, beside siblings, theirs lie inside it (>= {EQUIVALENT_SIBLINGS_INSIDE:g}, and "
        f"{EQUIVALENT_SIBLING_ASYMMETRY:g} more than it lies inside theirs) with correlation >= "
        f"{COACTIVE_MIN_CORRELATION:g}, "
        f"or it is nearly a multiple of its parent where the parent fires (squared cosine >= "
        f"{EQUIVALENT_PROPORTIONALITY:g}, and {EQUIVALENT_PROPORTIONALITY_GAP:g} more than its siblings' "
        f"median) with correlation >= {COACTIVE_MIN_CORRELATION:g}"
    )


def _rules(tables: AlignmentTables, small: str, large: str) -> dict[str, dict[str, str]]:
    """Each class's rule in words with the alignment's thresholds (the verdicts module's rules,
    ``analysis/metrics/verdicts.py``), per side."""
    o = tables.report.options
    rc, nc = f"{o.related_correlation:g}", f"{o.nested_containment:g}"
    eq = _equivalent_rule(o)
    return {
        "larger": {
            "split_child": f"assigned to its best-correlated {small} feature (correlation >= {rc}; or, below it, "
            f"nested in it: nesting >= {nc}, or correlation >= {WEAK_CORRELATION}, with the {small} SAE "
            f"reconstructing the inputs where it fires as well as elsewhere: error ratio <= {NOVEL_ERROR_RATIO}), "
            f"which has two or more {large} features assigned",
            "equivalent": f"assigned to its {small} parent and the same feature as it ({eq})",
            "partial": f"assigned to a {small} parent that has no other {large} feature, and not equivalent",
            "novel": f"no parent: best correlation below {rc} (or undefined) and neither nested (nesting below {nc}) "
            f"nor at correlation >= {WEAK_CORRELATION} with the {small} SAE covering where it fires (error ratio <= "
            f"{NOVEL_ERROR_RATIO}); or it is, but the {small} SAE reconstructs the inputs there worse (error ratio above)",
            "dead": "never active on the examples aligned",
        },
        "smaller": {
            "split_parent": f"two or more {large} features assigned to it",
            "equivalent": f"exactly one {large} feature assigned, an equivalent pair ({eq})",
            "partial": f"exactly one {large} feature assigned, not an equivalent pair",
            "unique": f"no {large} feature assigned (none correlates >= {rc} with it as its best, or is nested in it)",
            "dead": "never active on the examples aligned",
        },
    }


def _page_data(tables: AlignmentTables) -> dict[str, Any]:
    """The JSON the page's script reads: per-feature columns (side A first, in feature order),
    the table layout, the rules in words and the contexts."""
    from splatnlp.mechinterp.analysis.align.tables import feature_rows

    r = tables.report
    rows = feature_rows(tables)
    keys = [k for k in rows[0] if k != "model"] if rows else []
    # feature_rows lists side A's features, then side B's, each in feature order.
    columns: dict[str, list[Any]] = {
        "model": [0 if i < r.n_features_a else 1 for i in range(len(rows))]
    }
    for key in keys:
        columns[key] = [_clean(row[key]) for row in rows]
    columns["hungarian"] = [
        int(v) if v >= 0 else None
        for side in (tables.a, tables.b)
        for v in side["hungarian"].tolist()
    ]
    columns["hungarian_score"] = [
        _clean(float(v)) if p >= 0 else None
        for side in (tables.a, tables.b)
        for p, v in zip(side["hungarian"].tolist(), side["hungarian_score"].tolist(), strict=True)
    ]
    larger = 1 if r.larger_side == "b" else 0
    models = side_names(tables)
    return {
        "models": models,
        "contexts": [r.a_name, r.b_name],
        "larger": larger,
        "n_examples": r.n_examples,
        "page_size": PAGE_SIZE,
        "columns": columns,
        "float_columns": sorted(
            k for k, v in columns.items() if any(isinstance(x, float) for x in v)
        ),
        "table": [{"key": k, "label": label, "kind": kind} for k, label, kind in TABLE_COLUMNS],
        "metrics": [{"key": k, "label": label} for k, label in DETAIL_METRICS],
        "rules": _rules(tables, small=models[1 - larger], large=models[larger]),
    }


# -- page ----------------------------------------------------------------------------------------
def _metric_label(metric: str, a: str, b: str) -> str:
    """A readable name of an alignment metric (``p_target_given_source`` is P(b active | a active))."""
    return {
        "activation_correlation": "activation correlation",
        "coactivation_jaccard": "co-activation Jaccard",
        "p_target_given_source": f"P({b} | {a})",
        "p_source_given_target": f"P({a} | {b})",
        "decoder_cosine": "decoder cosine",
        "top_token_overlap": "top-token Jaccard",
    }.get(metric, metric)


def _metric_rows(tables: AlignmentTables) -> list[list[Any]]:
    r = tables.report
    a, b = side_names(tables)
    null = {
        "activation_correlation": (r.null.correlation_max_a, r.null.correlation_max_b),
        "decoder_cosine": (r.null.decoder_max_a, r.null.decoder_max_b),
    }
    rows = []
    for metric, m in r.metrics.items():
        qa, qb = null.get(metric, (None, None))
        rows.append(
            [
                _metric_label(metric, a, b),
                m.mean_max_a,
                (qa or {}).get("0.99"),
                m.mean_max_b,
                (qb or {}).get("0.99"),
                m.share_above_a,
                m.share_above_b,
                m.threshold,
            ]
        )
    return rows


def alignment_page(tables: AlignmentTables, plots: dict[str, bytes], *, source: str) -> str:
    """The HTML of an alignment report (see :func:`write_alignment_report`); ``plots`` maps the
    names in :data:`PLOTS` to PNG bytes (missing names are left out)."""
    r = tables.report
    a, b = side_names(tables)
    title = f"Alignment of {r.a_name} ({a}) and {r.b_name} ({b})"
    classes = list(dict.fromkeys([*r.class_counts_a, *r.class_counts_b]))
    total_a, total_b = sum(r.class_counts_a.values()), sum(r.class_counts_b.values())
    class_rows = [
        [
            c,
            r.class_counts_a.get(c, 0),
            r.class_counts_a.get(c, 0) / total_a if total_a else None,
            r.class_counts_b.get(c, 0),
            r.class_counts_b.get(c, 0) / total_b if total_b else None,
        ]
        for c in classes
    ]
    nav = Markup(
        " · ".join(
            tag("a", name, href=f"#{key}")
            for key, name in (
                ("summary", "Summary"),
                ("classes", "Classes"),
                ("plots", "Plots"),
                ("features", "Features"),
            )
        )
    )
    figures = [
        png_img(
            plots[name],
            f"{name.replace('_', ' ')} plot of the alignment",
            caption=PLOT_CAPTIONS[name],
            id=f"plot-{name}",
        )
        for name in PLOTS
        if name in plots
    ]
    search_help = (
        "Words match any part of a row (model, feature as ultra-5127, class); key:value matches a "
        "column exactly (class:split_parent, model:full, parent:361); key>x, key<x, key>=x, key<=x "
        "compare numbers (count>100, parent_score<0.4). All must hold. Click a header to sort."
    )
    body = Markup(
        "\n".join(
            [
                tag("h1", title),
                tag(
                    "p",
                    f"{r.n_examples:,} examples; {r.n_features_a:,} {a} and {r.n_features_b:,} {b} features. "
                    f"From {source}.",
                    class_="muted",
                ),
                tag("nav", nav),
                section(
                    "Summary",
                    tag("pre", r.summary()),
                    facts(
                        [
                            (f"{a} context", f"{r.a_name} ({r.a_fingerprint[:23]}…)"),
                            (f"{b} context", f"{r.b_name} ({r.b_fingerprint[:23]}…)"),
                            (
                                "assigned",
                                f"{b if r.larger_side == 'b' else a} features to their parents",
                            ),
                            (
                                "parent rule",
                                f"correlation >= {r.options.related_correlation:g}; below it, nesting >= "
                                f"{r.options.nested_containment:g} or correlation >= {WEAK_CORRELATION}, with error "
                                f"ratio <= {NOVEL_ERROR_RATIO} (the information test)",
                            ),
                            (
                                "equivalent",
                                _equivalent_rule(r.options),
                            ),
                            ("elapsed", f"{r.elapsed_s:.1f} s"),
                        ]
                    ),
                    table(
                        [
                            "metric",
                            f"mean best {a}→{b}",
                            "null q0.99",
                            f"mean best {b}→{a}",
                            "null q0.99",
                            f"share ≥ threshold ({a})",
                            f"share ≥ threshold ({b})",
                            "threshold",
                        ],
                        _metric_rows(tables),
                        id="metrics",
                    ),
                    *(tag("p", f"Note: {w}", class_="warning") for w in r.warnings),
                    id="summary",
                ),
                section(
                    "Classes",
                    table(
                        ["class", a, f"share of {a}", b, f"share of {b}"],
                        class_rows,
                        id="class-counts",
                    ),
                    id="classes",
                ),
                section("Plots", *figures, id="plots")
                if figures
                else section("Plots", tag("p", "none"), id="plots"),
                section(
                    "Features",
                    tag("p", search_help, class_="muted"),
                    Markup(
                        '<p><input type="search" id="search" placeholder="search: class:novel, ultra-5127, count&gt;50" '
                        'aria-label="search the features"> <span id="row-count" class="muted"></span></p>'
                    ),
                    tag(
                        "noscript",
                        "The feature table needs JavaScript; the same rows are in the alignment folder's "
                        "features.csv.",
                    ),
                    tag("div", "", id="feature-detail"),
                    tag(
                        "div",
                        tag(
                            "table",
                            Markup(tag("thead", tag("tr", "")) + tag("tbody", "")),
                            id="features-table",
                        ),
                        class_="table-scroll",
                    ),
                    Markup(
                        '<p><button type="button" id="show-more" hidden>show more</button> '
                        '<button type="button" id="show-all" hidden>show all</button></p>'
                    ),
                    id="features",
                ),
                tag(
                    "footer",
                    Markup(
                        "Made by "
                        + tag("code", f"splatnlp-mechinterp report --alignment {source} --out DIR")
                        + esc(". Per feature: ")
                        + tag("code", "splatnlp-mechinterp report FEATURE --source MODEL --out DIR")
                        + esc(".")
                    ),
                ),
            ]
        )
    )
    return page(title, body, script=SCRIPT, data=_page_data(tables))


SCRIPT = r"""
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const cols = data.columns, models = data.models, n = cols.feature.length;
  const anchorModel = models.map((m) => m.replace(/\s+/g, "_"));
  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ESC[c]);
  const floats = new Set(data.float_columns);
  const fmt = (v, key) => (v === null || v === undefined) ? "\u2014" :
    (typeof v === "number" && floats.has(key)) ? v.toFixed(3) : esc(v);
  const keyOf = (i) => anchorModel[cols.model[i]] + "-" + cols.feature[i];
  const byKey = new Map();
  for (let i = 0; i < n; i++) byKey.set(keyOf(i), i);
  const featureLink = (m, f) => f === null ? "\u2014" :
    '<a href="#' + esc(anchorModel[m]) + "-" + f + '">' + f + "</a>";

  // Children of each smaller-side feature, best-correlated first.
  const children = new Map();
  for (let i = 0; i < n; i++) {
    const p = cols.parent[i];
    if (p === null || cols.model[i] !== data.larger) continue;
    if (!children.has(p)) children.set(p, []);
    children.get(p).push(i);
  }
  for (const list of children.values()) list.sort((i, j) => cols.parent_score[j] - cols.parent_score[i] || i - j);

  // -- the table ------------------------------------------------------------------------------
  const table = document.getElementById("features-table");
  const headRow = table.tHead.rows[0], tbody = table.tBodies[0];
  headRow.innerHTML = data.table.map((c) =>
    '<th data-key="' + esc(c.key) + '"' + (c.kind === "text" || c.kind === "model" ? "" : ' class="num"') +
    ' title="sort by ' + esc(c.label) + '">' + esc(c.label) + "</th>").join("");
  function cell(c, i) {
    const v = cols[c.key][i], m = cols.model[i];
    if (c.kind === "model") return "<td>" + esc(models[v]) + "</td>";
    if (c.kind === "self") return '<td class="num">' + featureLink(m, v) + "</td>";
    if (c.kind === "other") return '<td class="num">' + featureLink(1 - m, v) + "</td>";
    if (c.kind === "text") return "<td>" + fmt(v, c.key) + "</td>";
    return '<td class="num">' + fmt(v, c.key) + "</td>";
  }
  const rowHtml = new Array(n);  // built on first display: most rows of a large alignment never are
  const rowOf = (i) => rowHtml[i] || (rowHtml[i] =
    '<tr data-i="' + i + '">' + data.table.map((c) => cell(c, i)).join("") + "</tr>");
  const text = new Array(n);
  for (let i = 0; i < n; i++) {
    text[i] = [models[cols.model[i]], keyOf(i), cols.class[i]].join(" ").toLowerCase();
  }

  // -- what is shown: every feature, sorted, filtered; drawn a page at a time -------------------
  // A table of all 26,624 Full x Ultra rows takes seconds to lay out; the first PAGE rows of the
  // matching ones are drawn, and "show more" / "show all" draw the rest.
  const PAGE = data.page_size;
  let order = Array.from({ length: n }, (_, i) => i), matched = order, limit = PAGE;
  const counter = document.getElementById("row-count");
  const more = document.getElementById("show-more"), all = document.getElementById("show-all");
  function draw() {
    const shown = Math.min(limit, matched.length);
    tbody.innerHTML = matched.slice(0, shown).map(rowOf).join("");
    counter.textContent = matched.length + " of " + n + " features match" +
      (shown < matched.length ? "; the first " + shown + " are shown" : "");
    more.hidden = all.hidden = shown >= matched.length;
    more.textContent = "show " + Math.min(PAGE, matched.length - shown) + " more";
    table.dataset.shown = String(matched.length);
    table.dataset.drawn = String(shown);
  }
  more.addEventListener("click", () => { limit += PAGE; draw(); });
  all.addEventListener("click", () => { limit = Infinity; draw(); });

  // -- search ---------------------------------------------------------------------------------
  const OPS = /^([a-z_]+)(:|>=|<=|=|>|<)(.+)$/;
  function parse(query) {
    return query.trim().toLowerCase().split(/\s+/).filter(Boolean).map((term) => {
      const m = term.match(OPS);
      if (m && Object.prototype.hasOwnProperty.call(cols, m[1])) return { key: m[1], op: m[2] === "=" ? ":" : m[2], value: m[3] };
      return { text: term };
    });
  }
  function holds(i, t) {
    if (t.text !== undefined) return text[i].includes(t.text);
    let v = cols[t.key][i];
    if (t.key === "model") v = models[v];
    if (t.op === ":") return v === null ? (t.value === "none" || t.value === "null") : String(v).toLowerCase() === t.value;
    const x = Number(t.value);
    if (v === null || typeof v !== "number" || Number.isNaN(x)) return false;
    return t.op === ">" ? v > x : t.op === "<" ? v < x : t.op === ">=" ? v >= x : v <= x;
  }
  const search = document.getElementById("search");
  function filter() {
    const terms = parse(search.value);
    matched = terms.length ? order.filter((i) => terms.every((t) => holds(i, t))) : order;
    limit = PAGE;
    draw();
  }
  let timer = null;
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(filter, 120); });

  // -- sorting --------------------------------------------------------------------------------
  let sortKey = null, sortDir = 1;
  function sortBy(key, dir) {
    const v = cols[key];
    order = order.slice().sort((i, j) => {
      const a = v[i], b = v[j];
      if (a === b) return i - j;
      if (a === null) return 1;  // undefined values last, either direction
      if (b === null) return -1;
      return (a < b ? -1 : 1) * dir;
    });
    sortKey = key; sortDir = dir;
    for (const th of headRow.cells) {
      th.classList.toggle("sorted-asc", th.dataset.key === key && dir === 1);
      th.classList.toggle("sorted-desc", th.dataset.key === key && dir === -1);
    }
    table.dataset.sort = (dir === 1 ? "" : "-") + key;
  }
  headRow.addEventListener("click", (event) => {
    const th = event.target.closest("th");
    if (!th) return;
    sortBy(th.dataset.key, sortKey === th.dataset.key ? -sortDir : 1);
    filter();
  });

  // -- a feature's section --------------------------------------------------------------------
  const detail = document.getElementById("feature-detail");
  function facts(items) {
    return '<dl class="facts">' + items.map(([k, v]) => "<dt>" + esc(k) + "</dt><dd>" + v + "</dd>").join("") + "</dl>";
  }
  function render(i) {
    const m = cols.model[i], other = 1 - m, side = m === data.larger ? "larger" : "smaller";
    const f = cols.feature[i], cls = cols.class[i], key = keyOf(i);
    const share = data.n_examples ? " (" + (100 * cols.count[i] / data.n_examples).toFixed(2) + " %)" : "";
    const items = [
      ["context", esc(data.contexts[m]) + " (" + esc(models[m]) + ", the " + side + " dictionary)"],
      ["active on", cols.count[i] + " of " + data.n_examples + " examples" + share],
    ];
    if (side === "larger") {
      items.push(["parent", featureLink(other, cols.parent[i])]);
      items.push(["parent correlation", fmt(cols.parent_score[i], "parent_score")]);
      items.push(["parent decoder cosine", fmt(cols.parent_decoder_cosine[i], "parent_decoder_cosine")]);
      items.push(["nesting (best-correlated " + esc(models[other]) + ")", fmt(cols.nesting[i], "nesting")]);
      items.push([esc(models[other]) + " error ratio where it fires", fmt(cols.error_ratio[i], "error_ratio")]);
      const p = cols.parent[i];
      if (p !== null && children.has(p)) items.push(["parent's children", String(children.get(p).length)]);
    } else {
      items.push(["children", String(cols.n_children[i])]);
    }
    if (cols.hungarian[i] !== null) {
      items.push(["one-to-one partner", featureLink(other, cols.hungarian[i]) + " (r " + fmt(cols.hungarian_score[i], "hungarian_score") + ")"]);
    }
    let out = '<section class="feature-detail" id="' + esc(key) + '"><h3>' + esc(models[m]) + " feature " + f +
      ' <span class="label">' + esc(cls) + "</span></h3>";
    out += '<p class="rule">' + esc((data.rules[side] || {})[cls] || "") + "</p>" + facts(items);
    const kids = side === "smaller" ? (children.get(f) || []) : [];
    if (kids.length) {
      out += "<h3>children in " + esc(models[other]) + " (" + kids.length + ")</h3><p class=\"children\">" +
        kids.map((j) => featureLink(other, cols.feature[j]) + " (r " + fmt(cols.parent_score[j], "parent_score") + ")").join(", ") + "</p>";
    }
    out += "<h3>best match in " + esc(models[other]) + " by each metric</h3><table><thead><tr><th>metric</th><th class=\"num\">" +
      esc(models[other]) + '</th><th class="num">score</th></tr></thead><tbody>';
    for (const metric of data.metrics) {
      const k = "best_" + metric.key;
      out += "<tr><td>" + esc(metric.label) + '</td><td class="num">' + featureLink(other, cols[k][i]) +
        '</td><td class="num">' + fmt(cols[k + "_score"][i], k + "_score") + "</td></tr>";
    }
    out += '</tbody></table><p class="muted">Its own report: <code>splatnlp-mechinterp report ' + f + " --source " +
      esc(data.contexts[m]) + " --target " + esc(data.contexts[other]) + " --out DIR</code></p></section>";
    return out;
  }
  function showDetail() {
    const key = decodeURIComponent(location.hash.slice(1));
    if (!/^.+-\d+$/.test(key)) return;  // a link to a part of the page, not to a feature
    if (!byKey.has(key)) {
      detail.innerHTML = '<p class="warning">No feature ' + esc(key) + " in this alignment.</p>";
      return;
    }
    detail.innerHTML = render(byKey.get(key));
    document.getElementById(key).scrollIntoView();
  }
  window.addEventListener("hashchange", showDetail);

  // -- start: ?q= and ?sort= from the URL -----------------------------------------------------
  const params = new URLSearchParams(location.search);
  if (params.has("q")) search.value = params.get("q");
  const sort = params.get("sort");
  if (sort) {
    const key = sort.replace(/^-/, "");
    if (Object.prototype.hasOwnProperty.call(cols, key)) sortBy(key, sort.startsWith("-") ? -1 : 1);
  }
  filter();
  showDetail();
  document.body.dataset.ready = "true";
})();
"""
