"""The ``splatnlp-mechinterp`` command line: a thin shell over the Python API."""

from splatnlp.mechinterp.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
