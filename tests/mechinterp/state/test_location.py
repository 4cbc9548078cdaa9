"""Tests of splatnlp/mechinterp/state/location.py: where the database file lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from splatnlp.mechinterp.state.location import store_path
from splatnlp.mechinterp.state.store import ResearchStore


def test_store_path_default_config_and_env(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPLATNLP_STORE", raising=False)
    assert store_path() == isolated_env / "research_state.sqlite"
    config = tmp_path / "config.yaml"
    config.write_text("store_path: stores/mine.sqlite\n")
    monkeypatch.setenv("SPLATNLP_CONFIG", str(config))
    assert store_path() == tmp_path / "stores" / "mine.sqlite"  # relative to the config file
    monkeypatch.setenv("SPLATNLP_STORE", str(tmp_path / "env.sqlite"))
    assert store_path() == tmp_path / "env.sqlite"


def test_default_store_is_created_under_the_data_dir(isolated_env: Path) -> None:
    with ResearchStore() as s:
        assert s.path == isolated_env / "research_state.sqlite"
    assert (isolated_env / "research_state.sqlite").is_file()
