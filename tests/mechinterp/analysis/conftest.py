"""Fixtures of the analysis tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Pair, build_planted_pair

from splatnlp.mechinterp.analysis import AlignmentTables, AlignOptions, align_contexts
from splatnlp.mechinterp.context import MechInterpContext


@pytest.fixture(scope="session")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """The planted pair of small contexts (source 'ultra', 7 features -> target 'full', 40);
    see ``helpers.build_planted_pair``."""
    return build_planted_pair(tmp_path_factory.mktemp("pair"))


@pytest.fixture(scope="session")
def tiny_alignment(tiny_demo_dir: Path) -> AlignmentTables:
    """``align_contexts(full, ultra)`` of the tiny demo (null sizes 64), computed once."""
    full, ultra = MechInterpContext(tiny_demo_dir / "full"), MechInterpContext(tiny_demo_dir / "ultra")
    return align_contexts(full, ultra, options=AlignOptions(n_null_features=64, n_null_directions=64))
