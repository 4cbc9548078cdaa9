"""Tests of splatnlp/mechinterp/cli/common.py: what every command group shares."""

from __future__ import annotations

import argparse
import json

import pytest
from pydantic import BaseModel

from splatnlp.mechinterp.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_MISSING,
    JSON_SCHEMA_VERSION,
    CLIError,
    Parser,
    add_common,
    emit,
    examples_epilog,
)


class _Payload(BaseModel):
    n_features: int


@pytest.mark.parametrize("payload", [_Payload(n_features=7), {"n_features": 7}])
def test_emit_json_and_text(payload: BaseModel | dict, capsys: pytest.CaptureFixture[str]) -> None:
    emit(argparse.Namespace(json=True), payload, "seven")
    assert json.loads(capsys.readouterr().out) == {
        "schema_version": JSON_SCHEMA_VERSION,
        "n_features": 7,
    }
    emit(argparse.Namespace(json=False), payload, "seven")
    assert capsys.readouterr().out == "seven\n"


def test_parser_raises_a_cli_error_with_a_hint() -> None:
    parser = Parser(prog="splatnlp-mechinterp thing")
    add_common(parser)
    args = parser.parse_args(["--json", "-q", "--contexts-dir", "d"])
    assert (args.json, args.quiet, args.contexts_dir) == (True, True, "d")
    with pytest.raises(CLIError, match=r"^splatnlp-mechinterp thing: unrecognized") as info:
        parser.parse_args(["--frobnicate"])
    assert info.value.code == EXIT_BAD_INPUT
    assert info.value.hint == "run `splatnlp-mechinterp thing --help`"


def test_cli_error_code_and_epilog() -> None:
    err = CLIError("no such thing", code=EXIT_MISSING, hint="look elsewhere")
    assert (str(err), err.code, err.hint) == ("no such thing", EXIT_MISSING, "look elsewhere")
    assert CLIError("bad").code == EXIT_BAD_INPUT and CLIError("bad").hint is None
    assert examples_epilog("a b", "c") == "example:\n  a b\n  c"
