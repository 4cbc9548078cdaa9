"""Where things live: the data directory, the YAML config file, and the demo contexts.

Nothing here is an absolute machine path: every location derives from an environment variable
or the user's platform data/config directory (``platformdirs``).

=========================  ===============================================================
``SPLATNLP_CONTEXTS_DIR``  a folder of contexts (``<dir>/<name>/context.yaml``)
``SPLATNLP_CONFIG``        the YAML config file; default ``<user config dir>/config.yaml``
``SPLATNLP_HOME``          the data directory; default ``<user data dir>`` (demo, store)
=========================  ===============================================================

The config file may hold::

    contexts_dir: ~/sae/contexts        # a folder of contexts
    contexts:                           # or names mapped to context folders
      ultra: ~/sae/ultra_ctx
      full: ~/sae/full_ctx
    demo_preset: default                # which built demo preset load_context falls back to
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

APP_NAME = "splatnlp-mechinterp"
ENV_CONTEXTS_DIR = "SPLATNLP_CONTEXTS_DIR"
ENV_CONFIG = "SPLATNLP_CONFIG"
ENV_HOME = "SPLATNLP_HOME"


class Config(BaseModel):
    """The optional YAML config file."""

    model_config = ConfigDict(extra="forbid")

    contexts_dir: Path | None = None
    """A folder whose sub-folders are contexts."""
    contexts: dict[str, Path] = {}
    """Context names mapped to their folders."""
    demo_preset: str = "default"
    """The built demo preset that ``load_context`` falls back to."""
    store_path: Path | None = None
    """The research-state database file."""


def data_dir() -> Path:
    """The data directory: ``$SPLATNLP_HOME`` or the platform's user data directory."""
    env = os.environ.get(ENV_HOME)
    return Path(env).expanduser() if env else platformdirs.user_data_path(APP_NAME)


def config_path() -> Path:
    """The config file: ``$SPLATNLP_CONFIG`` or ``<user config dir>/config.yaml``."""
    env = os.environ.get(ENV_CONFIG)
    return Path(env).expanduser() if env else platformdirs.user_config_path(APP_NAME) / "config.yaml"


def load_config(path: str | Path | None = None) -> Config:
    """Read the config file; an absent file gives the defaults, a malformed one an error."""
    path = Path(path) if path is not None else config_path()
    if not path.is_file():
        return Config()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        config = Config.model_validate(raw)
    except (yaml.YAMLError, ValidationError, OSError) as exc:
        raise ValueError(f"config file {str(path)!r} is invalid: {exc}") from exc
    # Relative paths in the file are relative to the file, not to the working directory.
    base = path.parent

    def _resolve(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else base / p

    return config.model_copy(
        update={
            "contexts_dir": _resolve(config.contexts_dir) if config.contexts_dir else None,
            "contexts": {k: _resolve(v) for k, v in config.contexts.items()},
            "store_path": _resolve(config.store_path) if config.store_path else None,
        }
    )


def demo_root() -> Path:
    """Where ``splatnlp-mechinterp demo`` writes its presets: ``<data dir>/demo``."""
    return data_dir() / "demo"


def demo_dir(preset: str = "default") -> Path:
    """The folder of one built demo preset (holds ``full/``, ``ultra/``, ``ground_truth/``)."""
    return demo_root() / preset
