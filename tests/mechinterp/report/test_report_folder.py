"""Tests of splatnlp/mechinterp/report/folder.py: which folders a report may be written to, the
marker, and that a failed write leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from splatnlp.mechinterp.report.folder import (
    INDEX,
    MARKER,
    REPORT_FORMAT,
    REPORT_SCHEMA_VERSION,
    ReportManifest,
    check_report_dir,
    is_report_dir,
    write_report_dir,
)


def manifest(title: str = "t") -> ReportManifest:
    return ReportManifest(kind="feature", title=title, inputs={"feature": 1})


def test_new_and_empty_folders_are_written(tmp_path: Path) -> None:
    out = write_report_dir(tmp_path / "new" / "report", {INDEX: "<p>é</p>"}, manifest())
    assert (out / INDEX).read_text(encoding="utf-8") == "<p>é</p>"
    doc = json.loads((out / MARKER).read_text())
    assert doc["format"] == REPORT_FORMAT and doc["schema_version"] == REPORT_SCHEMA_VERSION
    assert ReportManifest.model_validate(doc) == ReportManifest.model_validate_json(
        (out / MARKER).read_text()
    )
    assert doc["created_at"].endswith("+00:00") and doc["generator"].startswith(
        "splatnlp-mechinterp "
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_report_dir(write_report_dir(empty, {INDEX: "x"}, manifest()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "new"]  # no staging folder left


def test_a_folder_that_is_not_a_report_is_never_replaced(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.md").write_text("keep")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=r"'.*notes' is not empty and is not a report"):
            write_report_dir(notes, {INDEX: "x"}, manifest(), overwrite=overwrite)
    assert [p.name for p in notes.iterdir()] == ["mine.md"]
    # An alignment folder has a report.json too, of another format: not a report either.
    (notes / MARKER).write_text(json.dumps({"a_name": "full", "b_name": "ultra"}))
    assert not is_report_dir(notes)
    with pytest.raises(FileExistsError, match="is not a report"):
        check_report_dir(notes, overwrite=True)
    (notes / MARKER).write_text("{not json")
    assert not is_report_dir(notes)
    a_file = tmp_path / "file.html"
    a_file.write_text("x")
    with pytest.raises(FileExistsError, match=r"'.*file.html' exists and is not a folder"):
        check_report_dir(a_file, overwrite=True)


def test_a_previous_report_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    out = write_report_dir(tmp_path / "r", {INDEX: "first", "extra.txt": "old"}, manifest("first"))
    with pytest.raises(
        FileExistsError, match=r"'.*r' holds a previous report; pass overwrite=True"
    ):
        write_report_dir(out, {INDEX: "second"}, manifest("second"))
    assert (out / INDEX).read_text() == "first"
    write_report_dir(out, {INDEX: "second"}, manifest("second"), overwrite=True)
    assert (out / INDEX).read_text() == "second" and not (
        out / "extra.txt"
    ).exists()  # replaced whole
    assert ReportManifest.model_validate_json((out / MARKER).read_text()).title == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


@pytest.mark.parametrize("name", ["../escape.html", MARKER, "/abs.html"])
def test_a_failed_write_leaves_the_previous_report_and_no_staging_folder(
    tmp_path: Path, name: str
) -> None:
    out = write_report_dir(tmp_path / "r", {INDEX: "first"}, manifest())
    with pytest.raises(ValueError, match="must be a relative path inside the folder"):
        write_report_dir(out, {INDEX: "second", name: "x"}, manifest(), overwrite=True)
    assert (out / INDEX).read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert not (tmp_path / "escape.html").exists()
