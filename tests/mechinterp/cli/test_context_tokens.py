"""`context build` with generic token data ({"id", "tokens"}, no weapon vocabulary), the
`--no-activations` switch, and examples files whose bad lines are named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import random_records, random_sae, small_vocabs

from splatnlp.mechinterp.cli.app import main
from splatnlp.mechinterp.cli.common import EXIT_BAD_INPUT, EXIT_OK
from splatnlp.mechinterp.context import load_context
from splatnlp.mechinterp.context.sae import save_sae


@pytest.fixture
def token_files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    vocab, _ = small_vocabs()
    records = [{"id": r["id"], "tokens": r["abilities"]} for r in random_records(rng, 60)]
    files = {"examples": tmp_path / "tokens.jsonl", "vocab": tmp_path / "vocab.json", "activations": tmp_path / "x.npy"}
    files["examples"].write_text("".join(json.dumps(r) + "\n" for r in records))
    vocab.to_json(files["vocab"])
    np.save(files["activations"], rng.standard_normal((60, 16)).astype(np.float32))
    files["sae"] = save_sae(random_sae(0), tmp_path / "sae.pt")
    return files


def _argv(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "context", "build", str(out), "--sae", str(files["sae"]), "--examples", str(files["examples"]),
        "--vocab", str(files["vocab"]), "--activations", str(files["activations"]), "--quiet", *extra,
    ]


def test_build_from_generic_tokens_without_a_weapon_vocab(token_files, tmp_path, capsys) -> None:
    assert main(_argv(token_files, tmp_path / "ultra", "--json")) == EXIT_OK
    built = json.loads(capsys.readouterr().out)
    ctx = load_context(tmp_path / "ultra")
    assert built["n_examples"] == 60 and len(ctx.weapon_vocab) == 0
    first = json.loads(token_files["examples"].read_text().splitlines()[0])
    assert ctx.examples.record(0) == first
    assert ctx.has_activations


def test_no_activations_keeps_none(token_files, tmp_path, capsys) -> None:
    assert main(_argv(token_files, tmp_path / "c", "--no-activations")) == EXIT_OK
    assert not load_context(tmp_path / "c").has_activations


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": 0, "tokens": []}', '{"id": 1, "tokens": ["nope"]}'], r"token 'nope' is not in vocab \(record #1, line 2\)"),
        (['{"id": 0, "tokens": []}', '{"id": 1, "tokens": [}'], r"line 2 is not valid JSON"),
        (['{"id": 0, "tokens": []}', "", '{"id": 2, "tokens": []}'], r"line 2 is empty"),
        (['{"id": 0, "tokens": []}', '{"tokens": []}'], r"example #1 lacks key 'id' \(line 2\)"),
        (['{"id": 0, "weapon": "weapon_id_0", "abilities": []}'], r"weapon_vocab is required"),
    ],
)
def test_bad_lines_are_named_and_nothing_is_written(token_files, tmp_path, capsys, lines, message) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    code = main(_argv({**token_files, "examples": bad}, tmp_path / "c", "--json"))
    err = json.loads(capsys.readouterr().out)["error"]
    assert code == EXIT_BAD_INPUT
    assert re.search(message, err["message"]), err["message"]
    assert not (tmp_path / "c").exists()
