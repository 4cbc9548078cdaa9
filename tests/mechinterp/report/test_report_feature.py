"""Tests of splatnlp/mechinterp/report/feature.py on the tiny demo and on the hostile pair: the page
shows what the matcher, the decomposition and the examples say (read back from its tables), the
scatter's overlap counts match a brute-force count, every token and name is escaped, and bad
input writes nothing."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from report_builders import HOSTILE_SOURCE_NAME, HOSTILE_TOKENS, Page, external_references, png_of

from splatnlp.mechinterp.analysis.align.plots import plot_pair
from splatnlp.mechinterp.analysis.examples import feature_examples
from splatnlp.mechinterp.analysis.match.matcher import FeatureMatcher
from splatnlp.mechinterp.context import MechInterpContext
from splatnlp.mechinterp.report import ReportManifest, write_feature_report
from splatnlp.mechinterp.report.feature import PAIR_DPI
from splatnlp.mechinterp.report.html import fmt


@pytest.fixture(scope="module")
def tiny(tiny_demo_dir: Path) -> tuple[MechInterpContext, MechInterpContext]:
    return MechInterpContext(tiny_demo_dir / "ultra"), MechInterpContext(tiny_demo_dir / "full")


def _column(ctx: MechInterpContext, feature: int) -> np.ndarray:
    """The feature's codes by slicing the CSR matrix (not the CSC column the report reads)."""
    return np.asarray(ctx.codes.csr[:, feature].toarray()).ravel()


def _check_page(
    index: Path, source: MechInterpContext, target: MechInterpContext, feature: int, n_top: int = 10
) -> Page:
    text = index.read_text(encoding="utf-8")
    page = Page(text)
    manifest = ReportManifest.model_validate_json((index.parent / "report.json").read_text())
    assert manifest.kind == "feature" and manifest.inputs["feature"] == feature
    report = FeatureMatcher(source, target).find_matches(feature, n_top_matches=n_top)
    saved = manifest.data["match_report"]
    assert {k: v for k, v in saved.items() if k != "elapsed_ms"} == {
        k: v for k, v in report.model_dump(mode="json").items() if k != "elapsed_ms"
    }
    # The verdict, every listed match and every decomposition member, as the matcher gives them.
    assert page.text_by_id["verdict-label"] == report.verdict.label
    # The confidence and its measured basis come with a larger-side verdict, and only there.
    if report.verdict.confidence is None:
        assert "verdict-confidence" not in page.text_by_id
    else:
        assert page.text_by_id["verdict-confidence"] == f"Confidence: {report.verdict.confidence_basis}"
        assert f"<dt>confidence</dt><dd>{report.verdict.confidence}</dd>" in text
    rows = page.tables["matches-table"][1:]
    assert [r[1] for r in rows] == [str(m.target_feature) for m in report.matches]
    assert [r[2] for r in rows] == [m.relation for m in report.matches]
    assert [r[3] for r in rows] == [fmt(m.activation_correlation) for m in report.matches]
    d = report.decomposition
    if d.members:
        members = page.tables["decomposition-members"][1:]
        assert [r[0] for r in members] == [str(m.feature) for m in d.members]
        assert [r[1] for r in members] == [fmt(m.weight) for m in d.members]
    if report.verdict.children:
        assert page.text_by_id["children"].split(", ")[0].split(" ")[0] == str(
            report.verdict.children[0]
        )
    # Examples of the feature and of its top match.
    top = report.matches[0].target_feature
    for ctx, f in ((source, feature), (target, top)):
        ex = feature_examples(ctx, f, top=10)
        key = f"top-examples-{ctx.model_type}-{f}"
        if ex.top:
            assert [r[0] for r in page.tables[key][1:]] == [str(r.example_id) for r in ex.top]
            assert [r[3] for r in page.tables[key][1:]] == [fmt(r.activation) for r in ex.top]
        else:
            assert key not in page.tables and ex.note in text
    # The overlap counts against a brute-force count, and the scatter decodes at its size.
    x, y = _column(source, feature), _column(target, top)
    want = [
        int(((x > 0) & (y > 0)).sum()),
        int(((x > 0) & (y <= 0)).sum()),
        int(((x <= 0) & (y > 0)).sum()),
        int(((x <= 0) & (y <= 0)).sum()),
    ]
    assert page.tables["overlap"][1] == [str(v) for v in want]
    image = matplotlib.image.imread(io.BytesIO(png_of(page.images["pair-scatter"][0])))
    width, height = plot_pair(x, y).figure.get_size_inches() * PAIR_DPI
    assert image.shape[:2] == (round(height), round(width))
    assert external_references(text) == []
    return page


@pytest.mark.parametrize(("model", "feature"), [("ultra", 5127), ("full", 361)])
def test_feature_report_shows_the_matcher_results(
    tiny, tmp_path: Path, model: str, feature: int
) -> None:
    ultra, full = tiny
    source, target = (ultra, full) if model == "ultra" else (full, ultra)
    index = write_feature_report(source, target, feature, tmp_path / "report")
    assert index == tmp_path / "report" / "index.html"
    _check_page(index, source, target, feature)


def test_a_dead_feature_gets_a_report(tiny, tmp_path: Path) -> None:
    ultra, full = tiny
    dead = int(np.flatnonzero(np.diff(ultra.codes.csc.indptr) == 0)[0])
    index = write_feature_report(ultra, None, dead, tmp_path / "dead", n_top_matches=3)
    page = _check_page(index, ultra, full, dead, n_top=3)
    assert page.text_by_id["verdict-label"] == "dead"
    assert len(page.tables["matches-table"]) == 1 + 3
    # Every empty verdict value above says why (from Verdict.undefined).
    assert "parent: the feature is never active" in page.text_by_id["verdict-undefined"]


def test_tokens_and_names_are_escaped(hostile, tmp_path: Path) -> None:
    source, target = hostile
    index = write_feature_report(source, target, 0, tmp_path / "hostile")
    text = index.read_text(encoding="utf-8")
    page = _check_page(index, source, target, 0)
    for raw in (*HOSTILE_TOKENS[:4], HOSTILE_SOURCE_NAME):
        assert raw not in text
    assert [s for s in page.scripts] == [{}]  # the page's own image check, nothing from the data
    shown = {cell for table in page.tables.values() for row in table for cell in row}
    assert HOSTILE_TOKENS[0] in shown and HOSTILE_TOKENS[2] in shown  # shown as text, intact
    assert any(HOSTILE_TOKENS[1] in cell for cell in shown)


def test_unknown_feature_and_bad_options_write_nothing(tiny, tmp_path: Path) -> None:
    ultra, full = tiny
    with pytest.raises(ValueError, match=r"feature 24576 is out of range for 'ultra' \(0..24575\)"):
        write_feature_report(ultra, full, 24576, tmp_path / "a")
    with pytest.raises(TypeError, match="feature id must be an integer, got '12'"):
        write_feature_report(ultra, full, "12", tmp_path / "a")
    with pytest.raises(ValueError, match="n_examples must be an integer >= 1, got 0"):
        write_feature_report(ultra, full, 12, tmp_path / "a", n_examples=0)
    with pytest.raises(ValueError, match="n_top_matches must be an integer >= 1, got 0"):
        write_feature_report(ultra, full, 12, tmp_path / "a", n_top_matches=0)
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_folder_that_is_not_a_report_and_replaces_a_report(tiny, tmp_path: Path) -> None:
    ultra, full = tiny
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"'.*foreign' is not empty and is not a report"):
        write_feature_report(ultra, full, 12, foreign, overwrite=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    out = tmp_path / "r"
    write_feature_report(full, ultra, 3, out, n_top_matches=2)
    with pytest.raises(FileExistsError, match="holds a previous report"):
        write_feature_report(full, ultra, 4, out, n_top_matches=2)
    write_feature_report(full, ultra, 4, out, n_top_matches=2, overwrite=True)
    assert (
        ReportManifest.model_validate_json((out / "report.json").read_text()).inputs["feature"] == 4
    )
