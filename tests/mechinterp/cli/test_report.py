"""Tests of the ``report`` command (splatnlp/mechinterp/cli/report.py) on the small planted pair:
both kinds of report, ``--overwrite``, every refused input with its exit code, and that an
alignment report imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Pair, build_planted_pair

from splatnlp.mechinterp.analysis.align.dictionary import align_contexts
from splatnlp.mechinterp.analysis.align.report import AlignOptions
from splatnlp.mechinterp.analysis.align.tables import save_tables
from splatnlp.mechinterp.cli.app import main
from splatnlp.mechinterp.cli.common import EXIT_BAD_INPUT, EXIT_MISSING, EXIT_OK
from splatnlp.mechinterp.report import ReportManifest


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return build_planted_pair(tmp_path_factory.mktemp("cli-report-pair"))


@pytest.fixture(scope="module")
def alignment(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tables = align_contexts(
        pair.target, pair.source, options=AlignOptions(n_null_features=8, n_null_directions=16)
    )
    return save_tables(tables, tmp_path_factory.mktemp("cli-report-alignment") / "alignment")


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def _feature_args(pair: Pair, out: Path, feature: str = "2") -> list[str]:
    return [
        "report",
        feature,
        "--source",
        str(pair.source.path),
        "--target",
        str(pair.target.path),
        "--out",
        str(out),
    ]


def test_feature_report(pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    code, doc = _run(capsys, [*_feature_args(pair, out), "--top", "3", "--examples", "4", "--json"])
    assert code == EXIT_OK
    assert doc["path"] == str(out / "index.html") and doc["out"] == str(out)
    assert doc["kind"] == "feature" and doc["feature"] == 2 and doc["schema_version"] == 1
    assert doc["bytes"] == (out / "index.html").stat().st_size
    data = ReportManifest.model_validate_json((out / "report.json").read_text()).data
    assert len(data["match_report"]["matches"]) == 3 and len(data["examples"]["source"]["top"]) == 4
    # Again: refused without --overwrite (the report is left as it was), replaced with it.
    code, doc = _run(capsys, [*_feature_args(pair, out, "3"), "--json"])
    assert code == EXIT_BAD_INPUT
    assert (
        "holds a previous report" in doc["error"]["message"]
        and "--overwrite" in doc["error"]["hint"]
    )
    assert (
        ReportManifest.model_validate_json((out / "report.json").read_text()).inputs["feature"] == 2
    )
    assert main([*_feature_args(pair, out, "3"), "--overwrite"]) == EXIT_OK
    assert f"report written to {out / 'index.html'}" in capsys.readouterr().out
    assert (
        ReportManifest.model_validate_json((out / "report.json").read_text()).inputs["feature"] == 3
    )


def test_alignment_report(
    alignment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ar"
    code, doc = _run(capsys, ["report", "--alignment", str(alignment), "--out", str(out), "--json"])
    assert code == EXIT_OK
    assert doc["kind"] == "alignment" and doc["alignment"] == str(alignment)
    assert ReportManifest.model_validate_json((out / "report.json").read_text()).kind == "alignment"


def test_feature_report_with_an_alignment(
    pair: Pair, alignment: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "r"
    code, _ = _run(capsys, [*_feature_args(pair, out), "--alignment", str(alignment), "--json"])
    assert code == EXIT_OK
    manifest = ReportManifest.model_validate_json((out / "report.json").read_text())
    assert (
        manifest.data["match_report"]["alignment"]["class_label"]
        in (out / "index.html").read_text()
    )


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["report", "--out", "OUT"],
            EXIT_BAD_INPUT,
            "report needs a FEATURE (with --source) or --alignment DIR",
        ),
        (["report", "5", "--out", "OUT"], EXIT_BAD_INPUT, "--source is required with FEATURE 5"),
        (
            ["report", "--alignment", "ALIGN", "--source", "ultra", "--out", "OUT"],
            EXIT_BAD_INPUT,
            "--source and --target describe a feature report",
        ),
        (
            ["report", "x5", "--source", "ultra", "--out", "OUT"],
            EXIT_BAD_INPUT,
            "invalid int value: 'x5'",
        ),
        (
            ["report", "--alignment", "MISSING", "--out", "OUT"],
            EXIT_MISSING,
            "alignment folder 'MISSING' does not exist",
        ),
    ],
)
def test_refused_arguments(
    alignment: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    paths = {
        "OUT": str(tmp_path / "out"),
        "ALIGN": str(alignment),
        "MISSING": str(tmp_path / "MISSING"),
    }
    argv = [paths.get(a, a) for a in argv]
    got, doc = _run(capsys, [*argv, "--json"])
    assert got == code
    assert message.replace("MISSING", str(tmp_path / "MISSING")) in doc["error"]["message"]
    assert not (tmp_path / "out").exists()


def test_unknown_feature_and_foreign_folder(
    pair: Pair, alignment: Path, tmp_path: Path, capsys
) -> None:
    code, doc = _run(capsys, [*_feature_args(pair, tmp_path / "r", "7"), "--json"])
    assert code == EXIT_BAD_INPUT and "feature 7 is out of range" in doc["error"]["message"]
    assert not (tmp_path / "r").exists()
    code, doc = _run(
        capsys,
        ["report", "--alignment", str(alignment), "--out", str(alignment), "--overwrite", "--json"],
    )
    assert code == EXIT_BAD_INPUT
    assert "is not empty and is not a report" in doc["error"]["message"]
    assert "never replaced" in doc["error"]["hint"]


def test_an_alignment_report_imports_no_torch(alignment: Path, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from splatnlp.mechinterp.cli.app import main\n"
        f"assert main(['report', '--alignment', {str(alignment)!r}, '--out', {str(tmp_path / 'r')!r}, '-q']) == 0\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["report", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "example:\n  splatnlp-mechinterp report 5127 --source ultra --out " in out
    assert "--overwrite" in out and "--alignment DIR" in out
