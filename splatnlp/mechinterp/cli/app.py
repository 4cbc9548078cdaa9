"""``splatnlp-mechinterp``: a thin command-line shell over the Python API.

This module assembles the parser from the command groups (``demo``, ``match``, ``align``,
``state``, ``context``: one module each, sharing :mod:`splatnlp.mechinterp.cli.common`), maps
errors to exit codes and runs :func:`main`.

Every command prints a short readable summary, or with ``--json`` exactly one JSON document on
stdout. Logs and progress go to stderr. Errors with ``--json`` are JSON too::

    {"error": {"type": "KeyError", "message": "...", "hint": "..."}}

Exit codes: 0 ok; 1 unexpected internal error; 2 bad input (bad arguments or values, unknown
names); 3 something needed is missing (a context, a file, the demo); 130 interrupted;
141 the output pipe was closed by its reader.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from splatnlp.mechinterp.cli.align import add_align_commands
from splatnlp.mechinterp.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_MISSING,
    CLIError,
    Parser,
    examples_epilog,
)
from splatnlp.mechinterp.cli.context import add_context_commands
from splatnlp.mechinterp.cli.demo import add_demo_commands
from splatnlp.mechinterp.cli.examples import add_examples_commands
from splatnlp.mechinterp.cli.match import add_match_commands
from splatnlp.mechinterp.cli.plot import add_plot_commands
from splatnlp.mechinterp.cli.report import add_report_commands
from splatnlp.mechinterp.cli.state import add_state_commands


def build_parser() -> argparse.ArgumentParser:
    """The ``splatnlp-mechinterp`` parser with every command group; building it imports no torch."""
    parser = Parser(
        prog="splatnlp-mechinterp",
        description="Match SAE features between the SplatNLP Full and Ultra models.",
        epilog=examples_epilog("splatnlp-mechinterp demo", "splatnlp-mechinterp context list --json")
        + "\n\nexit codes: 0 ok, 1 internal error, 2 bad input, 3 missing context/file, 130 interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The order here is the order of COMMAND in --help.
    add_demo_commands(sub)
    add_match_commands(sub)
    add_examples_commands(sub)
    add_plot_commands(sub)
    add_align_commands(sub)
    add_report_commands(sub)
    add_state_commands(sub)
    add_context_commands(sub)
    return parser


def _error_code(exc: BaseException) -> tuple[int, str | None]:
    if isinstance(exc, CLIError):
        return exc.code, exc.hint
    # Imported only here: the context package loads torch, which a usage error need not wait for.
    from splatnlp.mechinterp.context import DEMO_HINT

    if isinstance(exc, FileNotFoundError):
        return EXIT_MISSING, "check the path; " + DEMO_HINT + " if you need the demo contexts"
    if isinstance(exc, KeyError):
        return EXIT_MISSING, f"run `splatnlp-mechinterp context list` to see known contexts; {DEMO_HINT}"
    if isinstance(exc, FileExistsError):
        return EXIT_BAD_INPUT, "pass --overwrite to replace it"
    if isinstance(exc, (ValueError, TypeError, NotImplementedError, ImportError)):
        return EXIT_BAD_INPUT, None
    return EXIT_INTERNAL, "this is a bug; please report it with the command you ran"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as Unix tools do, and keep the
        # interpreter from failing again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - every failure becomes a message and an exit code
        code, hint = _error_code(exc)
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        if as_json:
            print(json.dumps({"error": {"type": type(exc).__name__, "message": message, "hint": hint}}))
        else:
            print(f"error: {message}" + (f"\nhint: {hint}" if hint else ""), file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
