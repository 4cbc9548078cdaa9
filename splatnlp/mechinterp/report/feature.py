"""The report of one feature: its verdict with the evidence, matches, decomposition, examples
and the scatter against its top match, as one self-contained ``index.html``.

:func:`write_feature_report` runs the matcher (:class:`FeatureMatcher`), reads the examples of
the feature and of its top match (:func:`feature_examples`), draws the pair scatter and writes
the folder (:mod:`splatnlp.mechinterp.report.folder`). :func:`feature_page` builds the page from
those results, so it can be tested without a matcher.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splatnlp.mechinterp.report.folder import (
    INDEX,
    ReportManifest,
    check_report_dir,
    write_report_dir,
)
from splatnlp.mechinterp.report.html import (
    Markup,
    anchor_id,
    esc,
    facts,
    figure_png,
    fmt,
    join,
    page,
    png_img,
    section,
    table,
    tag,
)

if TYPE_CHECKING:  # the matcher and matplotlib load when a report is written, not on import
    from splatnlp.mechinterp.analysis.align.tables import AlignmentTables
    from splatnlp.mechinterp.analysis.examples import FeatureExamples
    from splatnlp.mechinterp.analysis.match.options import MatchOptions
    from splatnlp.mechinterp.analysis.match.reports import MatchReport
    from splatnlp.mechinterp.context import MechInterpContext

__all__ = ["feature_page", "write_feature_report"]

PAIR_DPI = 100
"""Resolution of the inlined pair scatter."""


def _context_info(ctx: MechInterpContext) -> dict[str, Any]:
    return {
        "name": ctx.name,
        "path": str(ctx.path),
        "model_type": ctx.model_type,
        "n_features": ctx.n_features,
        "fingerprint": ctx.fingerprint,
    }


def write_feature_report(
    source_ctx: MechInterpContext,
    target_ctx: MechInterpContext | None,
    feature: int,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    n_top_matches: int = 10,
    n_examples: int = 10,
    options: MatchOptions | None = None,
    alignment: AlignmentTables | str | Path | None = None,
) -> Path:
    """Write the report of ``feature`` of ``source_ctx`` against ``target_ctx`` to ``out_dir``.

    Parameters
    ----------
    source_ctx : the context holding the feature
    target_ctx : the other model's context; None takes the matcher's default (the other of
        ``ultra`` / ``full``)
    feature : feature id in the source model
    out_dir : the report folder: new, empty, or (with ``overwrite``) a previous report
    overwrite : replace a previous report at ``out_dir``
    n_top_matches : matches listed (>= 1)
    n_examples : top-activating examples listed per feature (>= 1)
    options : the matcher's :class:`MatchOptions`
    alignment : a saved alignment of the two contexts; the page then says what it holds about
        the feature

    Returns the path of ``index.html``. The folder also holds ``report.json``
    (:class:`ReportManifest`, with the match report, the examples and the overlap as JSON).

    Raises FileExistsError for an ``out_dir`` that may not be written (see
    :func:`check_report_dir`), before any work; TypeError / ValueError naming a bad feature id
    or option.
    """
    from splatnlp.mechinterp.analysis.align.plots import pair_overlap, plot_pair
    from splatnlp.mechinterp.analysis.examples import feature_examples
    from splatnlp.mechinterp.analysis.match.matcher import FeatureMatcher

    t0 = time.perf_counter()
    out_dir = check_report_dir(out_dir, overwrite=overwrite)
    matcher = FeatureMatcher(source_ctx, target_ctx, options=options, alignment=alignment)
    source, target = matcher.source_ctx, matcher.target_ctx
    feature = source.check_feature(feature)
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
        raise ValueError(f"n_examples must be an integer >= 1, got {n_examples!r}")
    report = matcher.find_matches(feature, n_top_matches=n_top_matches)
    top = report.matches[0]
    source_examples = feature_examples(source, feature, top=n_examples)
    target_examples = feature_examples(target, top.target_feature, top=n_examples)
    x, y = source.codes.feature_dense(feature), target.codes.feature_dense(top.target_feature)
    overlap = pair_overlap(x, y)
    scatter = figure_png(
        plot_pair(
            x,
            y,
            source_label=f"{source.model_type} {feature}",
            target_label=f"{target.model_type} {top.target_feature}",
        ).figure,
        dpi=PAIR_DPI,
    )
    inputs = {
        "source": _context_info(source),
        "target": _context_info(target),
        "feature": feature,
        "alignment": None
        if matcher.alignment is None
        else str(matcher.alignment.source or "memory"),
    }
    body = feature_page(
        report,
        source_examples,
        target_examples,
        overlap=overlap,
        scatter_png=scatter,
        inputs=inputs,
    )
    title = f"{source.model_type} feature {feature}"
    manifest = ReportManifest(
        kind="feature",
        title=title,
        inputs=inputs,
        elapsed_s=round(time.perf_counter() - t0, 3),
        data={
            "match_report": report.model_dump(mode="json"),
            "examples": {
                "source": source_examples.model_dump(mode="json"),
                "top_match": target_examples.model_dump(mode="json"),
            },
            "overlap": overlap,
        },
    )
    write_report_dir(out_dir, {INDEX: body}, manifest, overwrite=overwrite)
    return out_dir / INDEX


# -- page ----------------------------------------------------------------------------------------
def feature_page(
    report: MatchReport,
    source_examples: FeatureExamples,
    target_examples: FeatureExamples,
    *,
    overlap: dict[str, int],
    scatter_png: bytes,
    inputs: dict[str, Any],
) -> str:
    """The HTML of a feature report from its results (see :func:`write_feature_report`)."""
    src, tgt = report.source_model, report.target_model
    top = report.matches[0]
    title = f"{src} feature {report.source_feature}"
    nav = join(
        [
            tag("a", name, href=f"#{key}")
            for key, name in (
                ("verdict", "Verdict"),
                ("plots", "Plots"),
                ("summary", "Feature"),
                ("matches", "Matches"),
                ("decomposition", "Decomposition"),
                ("examples", "Examples"),
            )
        ],
        " · ",
    )
    source_info, target_info = inputs["source"], inputs["target"]
    header = Markup(
        tag("h1", title, id=anchor_id(src, report.source_feature))
        + tag(
            "p",
            f"Context {source_info['name']!r} ({src}) against {target_info['name']!r} ({tgt}), "
            f"{report.n_examples:,} shared examples.",
            class_="muted",
        )
        + tag("nav", nav)
    )
    parts = [
        header,
        _verdict_section(report),
        _plots_section(report, top.target_feature, overlap, scatter_png),
        _summary_section(report),
        _matches_section(report),
        _decomposition_section(report),
        _examples_section(source_examples, target_examples),
        tag(
            "footer",
            Markup(
                "Made by "
                + tag(
                    "code",
                    f"splatnlp-mechinterp report {report.source_feature} --source {source_info['name']} "
                    f"--target {target_info['name']} --out DIR",
                )
                + esc(
                    f". Source {source_info['path']} ({source_info['fingerprint'][:23]}…), target "
                    f"{target_info['path']}."
                )
            ),
        ),
    ]
    return page(title, Markup("\n".join(parts)))


def _feature_ref(model: str, feature: int | None) -> str:
    return "—" if feature is None else f"{model} {feature}"


def _verdict_section(report: MatchReport) -> Markup:
    v = report.verdict
    items: list[Any] = []
    if v is None:
        items.append(tag("p", "The verdict was not computed (MatchOptions(verdict=False))."))
    else:
        items.append(
            tag(
                "p",
                Markup(
                    tag("span", v.label, class_="label", id="verdict-label") + " " + esc(v.rule)
                ),
            )
        )
        rows: list[tuple[str, Any]] = [("side", f"{v.side} dictionary ({report.source_model})")]
        parent_facts = (
            ("parent correlation", "parent_score"),
            ("parent decoder cosine", "parent_decoder_cosine"),
            ("co-active correlation", "parent_coactive_correlation"),
            ("co-active examples", "parent_coactive_count"),
            ("P(parent | this)", "parent_containment"),
            ("its 95 % lower bound", "parent_containment_lower"),
            ("nesting (best candidate)", "best_nesting"),
            ("error ratio (information test)", "error_ratio"),
            ("parent's children", "parent_n_children"),
            ("siblings inside it", "siblings_inside"),
            ("it inside its siblings", "inside_siblings"),
            ("proportional to its parent", "parent_proportionality"),
            ("its siblings' (median)", "sibling_proportionality"),
            ("rival correlation (unrelated to the parent)", "rival_score"),
        )
        shown: list[str] = []
        if v.side == "larger" or v.parent is not None:
            rows.append(("parent", _feature_ref(report.target_model, v.parent)))
            rows += [(label, getattr(v, field)) for label, field in parent_facts]
            rows.append(("rival", _feature_ref(report.target_model, v.rival)))
            shown = ["parent", *(field for _, field in parent_facts), "rival"]
        if v.side == "smaller":
            rows.append(("children", len(v.children)))
        if v.confidence is not None:
            rows.append(("confidence", v.confidence))
        if v.equivalent_by:
            rows.append(("equivalent by", v.equivalent_by))
        items.append(facts(rows))
        why = [f"{name}: {v.undefined[name]}" for name in shown if name in v.undefined]
        if why:  # every empty value above says why (Verdict.undefined)
            items.append(tag("ul", Markup("".join(tag("li", w) for w in why)), class_="muted", id="verdict-undefined"))
        if v.confidence_basis is not None:
            items.append(tag("p", f"Confidence: {v.confidence_basis}", class_="muted", id="verdict-confidence"))
        if v.children:
            items.append(tag("h3", f"Children in {report.target_model} ({len(v.children)})"))
            listed = ", ".join(
                f"{c} (r {fmt(score)})"
                for c, score in zip(v.children, v.children_scores, strict=False)
            )
            items.append(tag("p", listed, id="children"))
        if v.information_test is not None:
            it = v.information_test
            text = (
                f"Stitching test: gain {fmt(it.gain)} over {it.n_examples} examples (beside the verdict, not part of it)."
                if it.ran
                else f"Stitching test not run: {it.reason}"
            )
            items.append(tag("p", text, class_="muted"))
        items.append(tag("p", f"Significance: {v.significance}", class_="muted"))
    if report.is_unique:
        items.append(tag("p", f"No counterpart in {report.target_model}: {report.unique_reason}"))
    if report.alignment is not None:
        items.append(
            tag(
                "p",
                f"Saved alignment ({report.alignment.alignment}): {report.alignment.describe()}",
            )
        )
    for warning in report.warnings:
        items.append(tag("p", f"Warning: {warning}", class_="warning"))
    return section("Verdict", *items, id="verdict")


def _summary_section(report: MatchReport) -> Markup:
    s = report.source_summary
    return section(
        "The feature",
        facts(
            [
                ("model", s.model),
                (
                    "active on",
                    f"{s.n_active:,} of {report.n_examples:,} examples ({s.frequency:.2%})",
                ),
                ("mean activation (all examples)", s.mean),
                ("max activation", s.max),
                ("dead", s.dead),
            ]
        ),
        tag("h3", f"Top tokens ({report.params.get('top_token_method', 'enrichment')})"),
        table(["token", "score"], [[t.token, t.score] for t in s.top_tokens], id="top-tokens")
        if s.top_tokens
        else tag("p", "none", class_="muted"),
        id="summary",
    )


def _matches_section(report: MatchReport) -> Markup:
    headers = [
        "rank",
        report.target_model,
        "relation",
        "correlation",
        "token Jaccard",
        "decoder cosine",
        "co-activation Jaccard",
        "P(target | source)",
        "P(source | target)",
        "combined",
        "p-value",
        "shared top tokens",
    ]
    rows = [
        [
            m.rank,
            str(m.target_feature),
            m.relation,
            m.activation_correlation,
            m.top_token_overlap,
            m.decoder_cosine,
            m.coactivation_jaccard,
            m.p_target_given_source,
            m.p_source_given_target,
            m.combined_score,
            m.p_value,
            ", ".join(m.shared_top_tokens),
        ]
        for m in report.matches
    ]
    undefined = [
        f"{report.target_model} {m.target_feature}: {name} is undefined ({why})"
        for m in report.matches
        for name, why in m.undefined.items()
    ]
    return section(
        f"Matches in {report.target_model}",
        tag(
            "p",
            f"Candidates: {report.candidate_selection}. Sorted by {report.params.get('sort_by')}. "
            f"Null: {report.null.description}",
            class_="muted",
        ),
        table(
            headers,
            rows,
            id="matches-table",
            numeric=[True, True, False, *[True] * 8, False],
        ),
        tag("p", f"Top match: {report.matches[0].notes}") if report.matches else "",
        tag("ul", Markup("".join(tag("li", u) for u in undefined[:20])), class_="muted")
        if undefined
        else "",
        id="matches",
    )


def _decomposition_section(report: MatchReport) -> Markup:
    d = report.decomposition
    if d is None:
        return section(
            "Decomposition", tag("p", "not computed", class_="muted"), id="decomposition"
        )
    head = facts(
        [
            ("members", d.n_members),
            ("split", d.is_split),
            ("R² of the non-negative fit", d.r_squared),
            ("coverage of the active examples", d.coverage),
            ("candidates considered", d.n_considered),
            ("method", d.method),
        ]
    )
    if not d.members:
        return section(
            "Decomposition",
            head,
            tag("p", f"No {d.target_model} feature qualifies as a member.", class_="muted"),
            id="decomposition",
        )
    rows = [
        [
            str(m.feature),
            m.weight,
            m.activation_correlation,
            m.p_target_given_source,
            m.p_source_given_target,
            ", ".join(m.shared_top_tokens),
        ]
        for m in d.members
    ]
    return section(
        "Decomposition",
        head,
        table(
            [
                d.target_model,
                "weight",
                "correlation",
                "P(member | source)",
                "P(source | member)",
                "shared top tokens",
            ],
            rows,
            id="decomposition-members",
            numeric=[True, True, True, True, True, False],
        ),
        id="decomposition",
    )


def _tokens(tokens: list[str], enriched: set[str]) -> Markup:
    """An example's tokens, those in the feature's enrichment table in bold."""
    return Markup(", ".join(tag("b", t) if t in enriched else esc(t) for t in tokens))


def _examples_block(ex: FeatureExamples, other: FeatureExamples) -> Markup:
    enriched = {t.token for t in ex.tokens}
    shared = enriched & {t.token for t in other.tokens}
    prefix = f"{ex.model}-{ex.feature}"
    parts: list[Any] = [
        tag("h3", f"{ex.model} {ex.feature}"),
        facts(
            [
                ("active on", f"{ex.n_active:,} of {ex.n_examples:,} ({ex.activation_rate:.2%})"),
                *((f"activation {k}", v) for k, v in ex.quantiles.items()),
            ]
        ),
    ]
    if ex.note:
        parts.append(tag("p", ex.note, class_="muted"))
    if ex.top:
        parts.append(
            table(
                ["example", "weapon", "tokens", "activation"],
                [
                    [str(r.example_id), r.weapon or "—", _tokens(r.tokens, enriched), r.activation]
                    for r in ex.top
                ],
                id=f"top-examples-{prefix}",
                numeric=[True, False, False, True],
            )
        )
    if ex.tokens:
        parts.append(
            tag(
                "p",
                f"Tokens enriched among the active examples (bold in the examples above); \u2605 also enriched for "
                f"{other.model} {other.feature}.",
                class_="muted",
            )
        )
        parts.append(
            table(
                ["token", "active with it", "rate active", "rate all", "enrichment", "shared"],
                [
                    [
                        t.token,
                        t.n_active,
                        t.rate_active,
                        t.rate_all,
                        t.enrichment,
                        "\u2605" if t.token in shared else "",
                    ]
                    for t in ex.tokens
                ],
                id=f"tokens-{prefix}",
            )
        )
    if ex.weapons:
        parts.append(
            table(
                ["weapon", "active examples", "share"],
                [[w.weapon, w.n_active, w.share] for w in ex.weapons[:10]],
                id=f"weapons-{prefix}",
            )
        )
    return tag("div", Markup("".join(esc(p) for p in parts)))


def _examples_section(source: FeatureExamples, target: FeatureExamples) -> Markup:
    return section(
        "Examples",
        tag(
            "p",
            "The top-activating examples of the feature and of its top match, the tokens over-"
            "represented among each one's active examples, and their weapons.",
            class_="muted",
        ),
        tag(
            "div",
            Markup(_examples_block(source, target) + _examples_block(target, source)),
            class_="columns",
        ),
        id="examples",
    )


def _plots_section(
    report: MatchReport, target_feature: int, overlap: dict[str, int], png: bytes
) -> Markup:
    src, tgt = (
        f"{report.source_model} {report.source_feature}",
        f"{report.target_model} {target_feature}",
    )
    return section(
        "Plots",
        png_img(
            png,
            f"scatter of {src} against {tgt} over every example",
            caption=f"{src} against its top match {tgt} over every example "
            f"({overlap['n_neither']:,} where neither is active, at 0, 0).",
            id="pair-scatter",
        ),
        table(
            ["both active", f"only {src}", f"only {tgt}", "neither"],
            [
                [
                    overlap["n_both"],
                    overlap["n_only_source"],
                    overlap["n_only_target"],
                    overlap["n_neither"],
                ]
            ],
            id="overlap",
        ),
        id="plots",
    )
