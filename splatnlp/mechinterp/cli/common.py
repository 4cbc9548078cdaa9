"""What every command group shares: exit codes, :class:`CLIError`, the parser class, the options
every command takes, the example epilog and the one way to print a result.

Every command prints a short readable summary, or with ``--json`` exactly one JSON document on
stdout (with ``schema_version``). This module imports nothing heavy: command groups import it
while the parser is built, before any command runs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pydantic import BaseModel

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_MISSING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a killed writer
JSON_SCHEMA_VERSION = 1


class CLIError(Exception):
    """An error with an exit code and a hint for the user (or agent)."""

    def __init__(self, message: str, *, code: int = EXIT_BAD_INPUT, hint: str | None = None):
        super().__init__(message)
        self.code = code
        self.hint = hint


class Parser(argparse.ArgumentParser):
    """Raises instead of exiting, so that usage errors come out as JSON under --json."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CLIError(f"{self.prog}: {message}", hint=f"run `{self.prog} --help`")


def emit(args: argparse.Namespace, payload: BaseModel | dict[str, Any], text: str) -> None:
    """Print ``payload`` as one JSON document if ``args.json``, else ``text``."""
    if getattr(args, "json", False):
        data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        print(json.dumps({"schema_version": JSON_SCHEMA_VERSION, **data}, indent=2))
    else:
        print(text)


def examples_epilog(*lines: str) -> str:
    """A help epilog listing example command lines."""
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def add_common(p: argparse.ArgumentParser) -> None:
    """Add the options every command takes: ``--json``, ``--contexts-dir``, ``-q/--quiet``."""
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.add_argument(
        "--contexts-dir",
        default=None,
        help="folder of contexts (overrides $SPLATNLP_CONTEXTS_DIR and the config file)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
