"""HTML reports for people: one feature (its verdict, matches, decomposition, examples, plots)
or a whole saved alignment (summary, classes, plots, a table of every feature), each a
self-contained ``index.html`` in a folder marked by ``report.json``.

``feature`` and ``alignment`` build the pages (plots from :mod:`splatnlp.mechinterp.analysis.align.plots`),
``html`` assembles them (escaping everything), ``folder`` writes the folder atomically. Names
load on first use (PEP 562), so importing the package loads neither the matcher nor matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from splatnlp.mechinterp._lazy import lazy_exports

_EXPORTS = {
    "REPORT_SCHEMA_VERSION": "folder",
    "ReportManifest": "folder",
    "check_report_dir": "folder",
    "is_report_dir": "folder",
    "write_alignment_report": "alignment",
    "write_feature_report": "feature",
}

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "ReportManifest",
    "check_report_dir",
    "is_report_dir",
    "write_alignment_report",
    "write_feature_report",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from splatnlp.mechinterp.report.alignment import write_alignment_report
    from splatnlp.mechinterp.report.feature import write_feature_report
    from splatnlp.mechinterp.report.folder import (
        REPORT_SCHEMA_VERSION,
        ReportManifest,
        check_report_dir,
        is_report_dir,
    )
