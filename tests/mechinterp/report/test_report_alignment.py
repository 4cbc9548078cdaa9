"""Tests of splatnlp/mechinterp/report/alignment.py on the planted and hostile pairs: every feature
of both models is in the page's data with the numbers of ``features.csv``, the summary and class
tables match the report, the plots are the saved ones (or drawn when none were saved), names are
escaped, and bad folders are refused."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from report_builders import (
    HOSTILE_SOURCE_NAME,
    HOSTILE_TARGET_NAME,
    Page,
    external_references,
    page_data,
    png_of,
)

from splatnlp.mechinterp.analysis.align.tables import load_tables
from splatnlp.mechinterp.report import ReportManifest, write_alignment_report
from splatnlp.mechinterp.report.alignment import PLOTS, TABLE_COLUMNS


def _csv_rows(alignment: Path) -> list[dict[str, str]]:
    with (alignment / "features.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_every_feature_is_in_the_page_with_its_csv_numbers(
    planted_alignment: Path, tmp_path: Path
) -> None:
    index = write_alignment_report(planted_alignment, tmp_path / "report")
    text = index.read_text(encoding="utf-8")
    data = page_data(text)
    tables = load_tables(planted_alignment)
    r = tables.report
    rows = _csv_rows(planted_alignment)
    cols = data["columns"]
    assert len(cols["feature"]) == r.n_features_a + r.n_features_b == len(rows)
    assert data["models"] == [r.a_model, r.b_model]
    for i, row in enumerate(rows):
        assert data["models"][cols["model"][i]] == row["model"] and cols["feature"][i] == int(
            row["feature"]
        )
        assert cols["class"][i] == row["class"]
        for key in (
            "parent",
            "n_children",
            "count",
            "best_activation_correlation",
            "best_decoder_cosine",
        ):
            assert cols[key][i] == (int(row[key]) if row[key] else None), (i, key)
        for key in (
            "parent_score",
            "parent_decoder_cosine",
            "nesting",
            "best_activation_correlation_score",
        ):
            want = round(float(row[key]), 4) if row[key] else None
            assert cols[key][i] == want, (i, key)
    # Each side's features once, in order: the anchors the table links to are all distinct.
    anchors = [
        f"{data['models'][m]}-{f}" for m, f in zip(cols["model"], cols["feature"], strict=True)
    ]
    assert len(set(anchors)) == len(anchors)
    assert {c["key"] for c in data["table"]} == {k for k, _, _ in TABLE_COLUMNS} <= set(cols)
    # Class counts and the summary.
    page = Page(text)
    classes = {row[0]: (int(row[1]), int(row[3])) for row in page.tables["class-counts"][1:]}
    for c, (na, nb) in classes.items():
        assert (na, nb) == (r.class_counts_a.get(c, 0), r.class_counts_b.get(c, 0))
    assert set(classes) == set(r.class_counts_a) | set(r.class_counts_b)
    assert r.summary() in page.text_by_id["summary"]  # the <pre>, read back as text
    # The plots are the PNGs align saved, byte for byte; nothing leaves the page.
    for name in PLOTS:
        assert (
            png_of(page.images[f"plot-{name}"][0])
            == (planted_alignment / "plots" / f"{name}.png").read_bytes()
        )
    assert external_references(text) == []
    manifest = ReportManifest.model_validate_json((index.parent / "report.json").read_text())
    assert manifest.kind == "alignment" and manifest.inputs["plots"] == "saved"
    assert manifest.data["n_features"] == len(rows)


def test_plots_are_drawn_when_none_were_saved_and_names_are_escaped(
    hostile_alignment: Path, tmp_path: Path
) -> None:
    index = write_alignment_report(hostile_alignment, tmp_path / "report")
    text = index.read_text(encoding="utf-8")
    page = Page(text)
    assert sorted(page.images) == sorted(f"plot-{name}" for name in PLOTS)
    assert all(png_of(src[0]).startswith(b"\x89PNG") for src in page.images.values())
    assert (
        ReportManifest.model_validate_json((index.parent / "report.json").read_text()).inputs[
            "plots"
        ]
        == "drawn"
    )
    for raw in (HOSTILE_SOURCE_NAME, HOSTILE_TARGET_NAME, "<b>", "<i>"):
        assert raw not in text
    assert page_data(text)["contexts"] == [HOSTILE_TARGET_NAME, HOSTILE_SOURCE_NAME]
    assert HOSTILE_SOURCE_NAME in page.text_by_id["summary"]  # shown as text
    assert len(page.scripts) == 3  # the data, the table script, the image check


def test_bad_alignment_folders(planted_alignment: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"alignment folder '.*nowhere' does not exist"):
        write_alignment_report(tmp_path / "nowhere", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"'.*empty' is not an alignment folder \(no report.json\)"
    ):
        write_alignment_report(empty, tmp_path / "out")
    broken = tmp_path / "broken"
    shutil.copytree(planted_alignment, broken)
    (broken / "b" / "count.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"alignment table '.*count.npy' is missing"):
        write_alignment_report(broken, tmp_path / "out")
    report = write_alignment_report(planted_alignment, tmp_path / "first").parent
    with pytest.raises(ValueError, match=r"'.*first' is an HTML report .* not an alignment folder"):
        write_alignment_report(report, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_to_write_into_the_alignment_folder(planted_alignment: Path) -> None:
    before = sorted(p.name for p in planted_alignment.iterdir())
    with pytest.raises(FileExistsError, match="is not empty and is not a report"):
        write_alignment_report(planted_alignment, planted_alignment, overwrite=True)
    assert sorted(p.name for p in planted_alignment.iterdir()) == before
