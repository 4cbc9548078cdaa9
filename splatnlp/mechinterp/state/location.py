"""Where the research-state database lives.

First that is set:

=========================  ===============================================================
``$SPLATNLP_STORE``        the database file
config ``store_path``      the database file named in the config file
default                    ``<data dir>/research_state.sqlite`` (data dir: ``$SPLATNLP_HOME``)
=========================  ===============================================================
"""

from __future__ import annotations

import os
from pathlib import Path

from splatnlp.mechinterp.context.config import data_dir, load_config

ENV_STORE = "SPLATNLP_STORE"
"""The environment variable that names the database file."""
DEFAULT_STORE_NAME = "research_state.sqlite"
"""The file name of the default database, in the data dir."""


def store_path() -> Path:
    """The database file: ``$SPLATNLP_STORE``, else the config's ``store_path``, else
    ``<data dir>/research_state.sqlite``."""
    env = os.environ.get(ENV_STORE)
    if env:
        return Path(env).expanduser()
    configured = load_config().store_path
    return configured if configured is not None else data_dir() / DEFAULT_STORE_NAME


__all__ = ["DEFAULT_STORE_NAME", "ENV_STORE", "store_path"]
