"""Fixtures of the research-state tests: a fresh store in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from splatnlp.mechinterp.state.store import ResearchStore


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where the test's store lives (not created yet)."""
    return tmp_path / "state.sqlite"


@pytest.fixture
def store(db: Path) -> Iterator[ResearchStore]:
    """A fresh store at ``db``, closed after the test."""
    with ResearchStore(db) as s:
        yield s
