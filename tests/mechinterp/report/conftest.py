"""Fixtures of the report tests: saved alignments of the small planted pair and of the hostile
pair (each about a second), and the hostile contexts themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Pair, build_planted_pair
from report_builders import build_hostile_pair

from splatnlp.mechinterp.analysis.align.dictionary import align_contexts
from splatnlp.mechinterp.analysis.align.plots import save_plots
from splatnlp.mechinterp.analysis.align.report import AlignOptions
from splatnlp.mechinterp.analysis.align.tables import save_tables
from splatnlp.mechinterp.context import MechInterpContext

CHEAP = AlignOptions(n_null_features=8, n_null_directions=16)


@pytest.fixture(scope="session")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """The planted pair (source 'ultra', 7 features; target 'full', 40), see helpers."""
    return build_planted_pair(tmp_path_factory.mktemp("report-pair"))


@pytest.fixture(scope="session")
def planted_alignment(planted: Pair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``align`` of the planted pair saved with its plots, as ``align --out`` writes it."""
    tables = align_contexts(planted.target, planted.source, options=CHEAP)
    out = tmp_path_factory.mktemp("report-alignment") / "alignment"
    save_tables(tables, out, files={"plots": lambda path: save_plots(tables, path, dpi=40)})
    return out


@pytest.fixture(scope="session")
def hostile(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[MechInterpContext, MechInterpContext]:
    """Contexts whose tokens and names are HTML (see ``report_builders.build_hostile_pair``)."""
    return build_hostile_pair(tmp_path_factory.mktemp("report-hostile"))


@pytest.fixture(scope="session")
def hostile_alignment(hostile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``align`` of the hostile pair saved without plots (the report draws them)."""
    source, target = hostile
    tables = align_contexts(target, source, options=CHEAP)
    out = tmp_path_factory.mktemp("report-hostile-alignment") / "alignment"
    save_tables(tables, out)
    return out
