"""Fixtures of the analysis tests."""

from __future__ import annotations

import pytest
from helpers import Pair, build_planted_pair


@pytest.fixture(scope="session")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """The planted pair of small contexts (source 'ultra', 7 features -> target 'full', 40);
    see ``helpers.build_planted_pair``."""
    return build_planted_pair(tmp_path_factory.mktemp("pair"))
