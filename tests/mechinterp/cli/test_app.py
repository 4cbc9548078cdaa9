"""Tests of splatnlp/mechinterp/cli/app.py: the assembled parser, error mapping to exit codes
and JSON errors, help, ``python -m`` and what importing the CLI costs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from splatnlp.mechinterp.cli import build_parser
from splatnlp.mechinterp.cli.app import main
from splatnlp.mechinterp.cli.common import EXIT_BAD_INPUT, EXIT_MISSING


def _run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict]:
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)  # json.loads refuses anything but exactly one document


def test_unknown_context_exit_code_and_json_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run_json(capsys, ["context", "show", "nope", "--json"])
    assert code == EXIT_MISSING == 3
    assert set(err) == {"error"} and set(err["error"]) == {"type", "message", "hint"}
    assert err["error"]["type"] == "KeyError"
    assert err["error"]["message"].startswith("no context named 'nope'")
    assert "splatnlp-mechinterp demo" in err["error"]["hint"]


def test_unknown_context_without_json_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["context", "show", "nope"]) == EXIT_MISSING
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: no context named 'nope'") and "\nhint: " in captured.err


@pytest.mark.parametrize(
    "argv",
    [
        ["context", "show", "--json"],  # missing name
        ["context", "frobnicate", "--json"],
        ["context", "build", "out", "--sae", "s.pt", "--chunk-size", "many", "--json"],
        ["--json"],
    ],
)
def test_bad_arguments_exit_2_with_json(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run_json(capsys, argv)
    assert code == EXIT_BAD_INPUT == 2
    assert err["error"]["type"] == "CLIError"
    assert err["error"]["message"].startswith("splatnlp-mechinterp")
    assert "--help" in err["error"]["hint"]


def test_bad_arguments_without_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["context", "show"]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == "" and "required: name" in captured.err


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["context"],
        ["context", "list"],
        ["context", "show"],
        ["context", "build"],
        ["context", "import-upstream"],
        ["demo"],  # the parser only; the command itself is tested elsewhere
    ],
)
def test_help_has_an_example(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "example:\n  splatnlp-mechinterp " in out


def test_python_dash_m_runs(demo_contexts: Path) -> None:
    env = {**os.environ, "SPLATNLP_CONTEXTS_DIR": str(demo_contexts)}
    result = subprocess.run(
        [sys.executable, "-m", "splatnlp.mechinterp", "context", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert sorted(e["name"] for e in doc["contexts"]) == ["full", "ultra"]


def test_commands_in_help_order() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == ["demo", "match", "compare", "decompose", "examples", "plot", "align", "report", "state", "context"]


def test_importing_the_cli_and_building_its_parser_imports_no_torch() -> None:
    code = (
        "import sys; from splatnlp.mechinterp.cli import build_parser, main; build_parser(); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_match_context_list_and_show_import_no_torch(demo_contexts: Path) -> None:
    """Queries read codes, statistics and the decoder rows (decoder.npy); only encoding, the
    information test and devices need torch."""
    code = (
        "import sys, io, contextlib; from splatnlp.mechinterp.cli import main\n"
        "for argv in (['match', '5127', '--json'], ['match', '361', '--source', 'full', '--json'],\n"
        "             ['decompose', '361', '--json'], ['context', 'list', '--json'],\n"
        "             ['context', 'show', 'ultra', '--json']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main(argv) == 0, argv\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
