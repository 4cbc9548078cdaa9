"""Shared fixtures: an isolated environment and one tiny demo build per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from splatnlp.mechinterp.demo.build import build_demo


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the user's real data/config folders or contexts."""
    home = tmp_path / "splatnlp-home"
    monkeypatch.setenv("SPLATNLP_HOME", str(home))
    monkeypatch.setenv("SPLATNLP_CONFIG", str(tmp_path / "no-config.yaml"))
    monkeypatch.delenv("SPLATNLP_CONTEXTS_DIR", raising=False)
    return home


@pytest.fixture(scope="session")
def tiny_demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``tiny`` demo preset (real feature counts, 3,000 examples), built once (~15 s)."""
    out = tmp_path_factory.mktemp("demo") / "tiny"
    build_demo(out, preset="tiny", seed=0, progress=False)
    return out


@pytest.fixture
def demo_contexts(tiny_demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``load_context("full" | "ultra")`` resolve to the tiny demo."""
    monkeypatch.setenv("SPLATNLP_CONTEXTS_DIR", str(tiny_demo_dir))
    return tiny_demo_dir
