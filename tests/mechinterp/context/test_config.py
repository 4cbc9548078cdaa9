"""Tests of splatnlp/mechinterp/config.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from splatnlp.mechinterp.context import config as cfg


def test_env_vars_set_the_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cfg.ENV_HOME, str(tmp_path / "home"))
    monkeypatch.setenv(cfg.ENV_CONFIG, str(tmp_path / "conf" / "c.yaml"))
    assert cfg.data_dir() == tmp_path / "home"
    assert cfg.config_path() == tmp_path / "conf" / "c.yaml"
    assert cfg.demo_root() == tmp_path / "home" / "demo"
    assert cfg.demo_dir("tiny") == tmp_path / "home" / "demo" / "tiny"
    assert cfg.demo_dir() == tmp_path / "home" / "demo" / "default"


def test_env_vars_expand_the_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(cfg.ENV_HOME, "~/data")
    assert cfg.data_dir() == tmp_path / "data"


def test_platform_defaults_without_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(cfg.ENV_HOME)
    monkeypatch.delenv(cfg.ENV_CONFIG)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    assert cfg.data_dir() == tmp_path / "xdg-data" / cfg.APP_NAME
    assert cfg.config_path() == tmp_path / "xdg-config" / cfg.APP_NAME / "config.yaml"


def test_absent_file_gives_defaults(tmp_path: Path) -> None:
    config = cfg.load_config(tmp_path / "absent.yaml")
    assert config == cfg.Config()
    assert config.contexts_dir is None and config.contexts == {}
    assert config.demo_preset == "default" and config.store_path is None
    # With no argument, $SPLATNLP_CONFIG (pointing at a missing file here) is read.
    assert cfg.load_config() == cfg.Config()


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert cfg.load_config(path) == cfg.Config()


def test_relative_paths_resolve_against_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "config.yaml"
    path.write_text(
        "contexts_dir: ctxs\n"
        "contexts:\n"
        "  ultra: ../elsewhere/ultra\n"
        f"  full: {tmp_path / 'abs' / 'full'}\n"
        "  home: ~/ctx/home\n"
        "demo_preset: tiny\n"
        "store_path: state/store.db\n"
    )
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.chdir(tmp_path)  # a working directory other than the file's folder
    config = cfg.load_config(path)
    assert config.contexts_dir == folder / "ctxs"
    assert config.contexts["ultra"] == folder / "../elsewhere/ultra"
    assert config.contexts["full"] == tmp_path / "abs" / "full"
    assert config.contexts["home"] == tmp_path / "user" / "ctx" / "home"
    assert config.demo_preset == "tiny"
    assert config.store_path == folder / "state" / "store.db"
    monkeypatch.setenv(cfg.ENV_CONFIG, str(path))
    assert cfg.load_config() == config


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("contexts: [unclosed\n", r"config file '.*bad\.yaml' is invalid"),
        ("contexs_dir: /x\n", r"(?s)config file '.*bad\.yaml' is invalid.*contexs_dir"),
        ("contexts: 3\n", r"(?s)config file '.*bad\.yaml' is invalid.*contexts"),
        ("- a\n- b\n", r"config file '.*bad\.yaml' is invalid"),
    ],
)
def test_invalid_file_is_named(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        cfg.load_config(path)
