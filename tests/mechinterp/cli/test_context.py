"""Tests of the ``context`` commands (splatnlp/mechinterp/cli/context.py); the ``demo`` command
is tested elsewhere, errors and help in test_app.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import random_records, random_sae, small_vocabs

from splatnlp.mechinterp.cli.app import main
from splatnlp.mechinterp.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_MISSING,
    EXIT_OK,
    JSON_SCHEMA_VERSION,
)
from splatnlp.mechinterp.context.sae import save_sae


def _run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict]:
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)  # json.loads refuses anything but exactly one document


def test_context_list_json_on_the_demo(
    demo_contexts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = _run_json(capsys, ["context", "list", "--json"])
    assert code == EXIT_OK
    assert doc["schema_version"] == JSON_SCHEMA_VERSION
    by_name = {e["name"]: e for e in doc["contexts"]}
    assert set(by_name) == {"full", "ultra"}
    assert by_name["full"]["n_features"] == 2048 and by_name["ultra"]["n_features"] == 24576
    assert by_name["full"]["fingerprint"] == by_name["ultra"]["fingerprint"]
    assert by_name["ultra"]["path"] == str(demo_contexts / "ultra")
    assert by_name["ultra"]["source"] == "$SPLATNLP_CONTEXTS_DIR"


def test_context_show_json_on_the_demo(
    demo_contexts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, ultra = _run_json(capsys, ["context", "show", "ultra", "--json"])
    assert code == EXIT_OK
    assert ultra["schema_version"] == JSON_SCHEMA_VERSION
    assert ultra["n_features"] == 24576 and ultra["d_model"] == 512 and ultra["n_examples"] == 3000
    assert ultra["model_type"] == "ultra"
    code, full = _run_json(capsys, ["context", "show", "full", "--json"])
    assert code == EXIT_OK and full["n_features"] == 2048
    assert full["fingerprint"] == ultra["fingerprint"]
    assert full["reconstruction_fvu"] is not None and 0 < full["reconstruction_fvu"] < 1


def test_context_show_text(demo_contexts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["context", "show", "full"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("context 'full' (full)") and "2048" in out


def test_context_list_without_contexts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["context", "list"]) == EXIT_OK
    assert "no contexts found" in capsys.readouterr().out
    code, doc = _run_json(capsys, ["context", "list", "--json"])
    assert code == EXIT_OK and doc["contexts"] == []


@pytest.fixture
def build_files(tmp_path: Path) -> dict[str, Path]:
    """Inputs of ``context build`` written as files: examples, vocabularies, activations, SAE."""
    rng = np.random.default_rng(0)
    records = random_records(rng, 60)
    vocab, wvocab = small_vocabs()
    files = {
        "examples": tmp_path / "builds.jsonl",
        "vocab": tmp_path / "vocab.json",
        "weapon_vocab": tmp_path / "weapon_vocab.json",
        "activations": tmp_path / "hidden.npy",
        "sae": tmp_path / "sae.pt",
    }
    files["examples"].write_text("".join(json.dumps(r) + "\n" for r in records))
    vocab.to_json(files["vocab"])
    wvocab.to_json(files["weapon_vocab"])
    np.save(files["activations"], rng.standard_normal((60, 16)).astype(np.float32))
    save_sae(random_sae(0, d_model=16, n_features=40), files["sae"])
    return files


def _build_argv(files: dict[str, Path], out: Path) -> list[str]:
    return [
        "context",
        "build",
        str(out),
        "--sae",
        str(files["sae"]),
        "--examples",
        str(files["examples"]),
        "--vocab",
        str(files["vocab"]),
        "--weapon-vocab",
        str(files["weapon_vocab"]),
        "--activations",
        str(files["activations"]),
        "--model-type",
        "ultra",
        "--chunk-size",
        "7",
        "--quiet",
    ]


def test_context_build_then_show(
    build_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "contexts" / "mine"
    code, built = _run_json(capsys, [*_build_argv(build_files, out), "--json"])
    assert code == EXIT_OK
    assert (built["name"], built["model_type"], built["n_features"]) == ("mine", "ultra", 40)
    assert built["n_examples"] == 60 and built["d_model"] == 16
    code, shown = _run_json(capsys, ["context", "show", str(out), "--json"])
    assert code == EXIT_OK
    assert shown["fingerprint"] == built["fingerprint"] and shown["path"] == str(out)
    assert shown["provenance"]["codes_from"] == "activations"
    # Building again into the same folder needs --overwrite.
    code, err = _run_json(capsys, [*_build_argv(build_files, out), "--json"])
    assert code == EXIT_BAD_INPUT
    assert err["error"]["type"] == "FileExistsError" and "--overwrite" in err["error"]["hint"]
    # Progress goes to stderr: without --quiet, stdout still holds exactly one JSON document.
    loud = [a for a in _build_argv(build_files, out) if a != "--quiet"]
    code, rebuilt = _run_json(capsys, [*loud, "--overwrite", "--json"])
    assert code == EXIT_OK and rebuilt["fingerprint"] == built["fingerprint"]


def test_context_build_from_a_json_list_of_records(
    build_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [json.loads(line) for line in build_files["examples"].read_text().splitlines()]
    listed = tmp_path / "builds.json"
    listed.write_text(json.dumps(records))
    argv = _build_argv({**build_files, "examples": listed}, tmp_path / "c")
    assert main(argv) == EXIT_OK
    assert "context 'c' (ultra)" in capsys.readouterr().out


def test_context_build_refuses_both_or_neither_input(
    build_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _build_argv(build_files, tmp_path / "c")
    code, err = _run_json(capsys, [*argv, "--codes", str(tmp_path / "codes.npy"), "--json"])
    assert code == EXIT_BAD_INPUT
    assert err["error"]["message"] == "pass exactly one of --activations and --codes"
    i = argv.index("--activations")
    code, err = _run_json(capsys, [*argv[:i], *argv[i + 2 :], "--json"])
    assert code == EXIT_BAD_INPUT and "exactly one" in err["error"]["message"]
    assert not (tmp_path / "c").exists()


def test_context_build_bad_input_files(
    build_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1,\n')
    code, err = _run_json(
        capsys, [*_build_argv({**build_files, "examples": bad}, tmp_path / "c"), "--json"]
    )
    assert code == EXIT_BAD_INPUT and "bad.jsonl" in err["error"]["message"]
    assert "is not valid JSON" in err["error"]["message"]
    code, err = _run_json(
        capsys,
        [
            *_build_argv({**build_files, "examples": tmp_path / "none.jsonl"}, tmp_path / "c"),
            "--json",
        ],
    )
    assert code == EXIT_MISSING and err["error"]["type"] == "FileNotFoundError"
    assert "none.jsonl" in err["error"]["message"]
