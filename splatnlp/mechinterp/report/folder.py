"""A report folder: ``index.html`` beside the marker ``report.json``, written atomically.

A folder is a report when its ``report.json`` is a :class:`ReportManifest` (``format`` equal to
:data:`REPORT_FORMAT`); an alignment folder's ``report.json`` (an ``AlignmentReport``) is not.
Writing into a non-empty folder that is not a report is refused, even with ``overwrite``: it
may hold someone's files. A previous report is replaced only with ``overwrite``. The new folder
is built under a hidden name beside the target and renamed into place
(:mod:`splatnlp.mechinterp.context.folders`), so a reader sees the old report or the new one,
never a half-written page.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from splatnlp.mechinterp.context.folders import publish_dir, staging_dir

__all__ = [
    "INDEX",
    "MARKER",
    "REPORT_FORMAT",
    "REPORT_SCHEMA_VERSION",
    "ReportManifest",
    "check_report_dir",
    "is_report_dir",
    "write_report_dir",
]

MARKER = "report.json"
INDEX = "index.html"
REPORT_FORMAT = "splatnlp-mechinterp-html-report"
REPORT_SCHEMA_VERSION = 1


def _version() -> str:
    try:
        return metadata.version("splatnlp-mechinterp")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class ReportManifest(BaseModel):
    """``report.json`` of a report folder: what the page shows and what it was made from."""

    format: Literal["splatnlp-mechinterp-html-report"] = REPORT_FORMAT
    """Marks the folder as a report (so ``--overwrite`` may replace it)."""
    schema_version: int = REPORT_SCHEMA_VERSION
    kind: Literal["feature", "alignment"]
    title: str
    index: str = INDEX
    """The page, relative to the folder."""
    created_at: str = Field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    """UTC time the report was written (ISO 8601)."""
    generator: str = Field(default_factory=lambda: f"splatnlp-mechinterp {_version()}")
    inputs: dict[str, Any]
    """What the report was made from: context names, paths and fingerprints, or the alignment
    folder."""
    elapsed_s: float = 0.0
    """Seconds to compute and write the report."""
    data: dict[str, Any] = Field(default_factory=dict)
    """The results the page shows, as JSON (feature reports: the ``MatchReport`` and the
    examples), for programs that want the numbers rather than the page."""


def is_report_dir(directory: str | Path) -> bool:
    """Whether ``directory`` holds a report's marker (a ``report.json`` of :data:`REPORT_FORMAT`)."""
    marker = Path(directory) / MARKER
    if not marker.is_file():
        return False
    try:
        doc = json.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and doc.get("format") == REPORT_FORMAT


def check_report_dir(directory: str | Path, *, overwrite: bool = False) -> Path:
    """``directory`` as a Path if a report may be written there: it is new, an empty folder, or
    (with ``overwrite``) a previous report. Check before the work, not after.

    Raises FileExistsError naming the folder: it is a file, a non-empty folder that is not a
    report (never replaced), or a previous report without ``overwrite``.
    """
    directory = Path(directory)
    if not directory.exists():
        return directory
    if not directory.is_dir():
        raise FileExistsError(
            f"{str(directory)!r} exists and is not a folder; choose a folder for the report"
        )
    if is_report_dir(directory):
        if not overwrite:
            raise FileExistsError(
                f"{str(directory)!r} holds a previous report; pass overwrite=True (--overwrite) to replace it"
            )
        return directory
    if any(directory.iterdir()):
        raise FileExistsError(
            f"{str(directory)!r} is not empty and is not a report (no {MARKER} of format "
            f"{REPORT_FORMAT!r}); choose a new or empty folder"
        )
    return directory


def write_report_dir(
    directory: str | Path,
    files: Mapping[str, str | bytes],
    manifest: ReportManifest,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``files`` (relative path -> text or bytes) and the manifest as a new report folder
    at ``directory``, replacing a previous report only with ``overwrite``. Returns the folder.

    Raises FileExistsError as :func:`check_report_dir` does (checked again right before the
    rename, in case the folder changed while the report was computed), ValueError for a file
    name that leaves the folder or is the marker.
    """
    directory = check_report_dir(directory, overwrite=overwrite)
    tmp = staging_dir(directory)
    try:
        for relative, content in files.items():
            target = (tmp / relative).resolve()
            if relative == MARKER or tmp.resolve() not in target.parents:
                raise ValueError(
                    f"report file name {relative!r} must be a relative path inside the folder, not {MARKER!r}"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        (tmp / MARKER).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        check_report_dir(directory, overwrite=overwrite)
        publish_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory
