"""Generic token data: examples given as ``{"id", "tokens"}`` with no weapon (models that are not
SplatNLP), next to the SplatNLP ``{"id", "weapon", "abilities"}`` builds, which keep working."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import random_sae

from splatnlp.mechinterp.context import build_context, load_context
from splatnlp.mechinterp.context.examples import NO_WEAPON, ExampleSet
from splatnlp.mechinterp.context.vocab import Vocab

VOCAB = Vocab.from_tokens(["a_3", "b_6", "c_12"])
WEAPONS = Vocab.from_tokens(["weapon_id_0", "weapon_id_1"])
BUILDS = [
    {"id": 3, "weapon": "weapon_id_1", "abilities": ["a_3", "c_12"]},
    {"id": 7, "weapon": "weapon_id_0", "abilities": []},
    {"id": 9, "weapon": "weapon_id_0", "abilities": ["b_6"]},
]
GENERIC = [
    {"id": 0, "tokens": ["a_3", "b_6"]},
    {"id": 1, "tokens": []},
    {"id": 2, "tokens": ["c_12", "a_3", "a_3"]},
]


def test_builds_keep_their_fingerprint() -> None:
    """The fingerprint of builds is the one the previous version wrote into existing contexts
    (computed with it on these records)."""
    examples = ExampleSet.from_records(BUILDS, vocab=VOCAB, weapon_vocab=WEAPONS)
    assert examples.fingerprint == (
        "sha256:9ab811c4f901641ed8509888f60a19c74183ff21112aa63a605cd04c034cbe06"
    )
    assert examples.has_weapons
    assert [examples.record(i) for i in range(3)] == BUILDS


def test_generic_records_round_trip(tmp_path) -> None:
    examples = ExampleSet.from_records(GENERIC, vocab=VOCAB)
    assert not examples.has_weapons and len(examples.weapon_vocab) == 0
    assert (examples.weapon_tokens == NO_WEAPON).all()
    assert [examples.record(i) for i in range(3)] == GENERIC
    assert examples.weapon(0) is None
    examples.save(tmp_path / "ex")
    again = ExampleSet.load(tmp_path / "ex", vocab=VOCAB, weapon_vocab=Vocab({}))
    assert again.fingerprint == examples.fingerprint
    assert [again.record(i) for i in range(3)] == GENERIC


def test_generic_token_matrix_matches_brute_force() -> None:
    examples = ExampleSet.from_records(GENERIC, vocab=VOCAB)
    want = np.zeros((3, len(VOCAB)))
    for i, rec in enumerate(GENERIC):
        for t in rec["tokens"]:
            want[i, VOCAB.id(t)] = 1.0  # a repeated token counts once
    np.testing.assert_array_equal(examples.token_matrix().toarray(), want)


def test_builds_token_matrix_matches_brute_force() -> None:
    examples = ExampleSet.from_records(BUILDS, vocab=VOCAB, weapon_vocab=WEAPONS)
    want = np.zeros((3, len(VOCAB) + len(WEAPONS)))
    for i, rec in enumerate(BUILDS):
        for t in rec["abilities"]:
            want[i, VOCAB.id(t)] = 1.0
        want[i, len(VOCAB) + WEAPONS.id(rec["weapon"])] = 1.0
    np.testing.assert_array_equal(examples.token_matrix().toarray(), want)


def test_generic_fingerprint_differs_from_builds_with_the_same_tokens() -> None:
    generic = ExampleSet.from_records([{"id": 3, "tokens": ["a_3"]}], vocab=VOCAB)
    build = ExampleSet.from_records(
        [{"id": 3, "weapon": "weapon_id_0", "abilities": ["a_3"]}], vocab=VOCAB, weapon_vocab=WEAPONS
    )
    assert generic.fingerprint != build.fingerprint


def test_a_context_builds_and_loads_from_generic_tokens(tmp_path) -> None:
    rng = np.random.default_rng(0)
    records = [{"id": i, "tokens": list(rng.choice(VOCAB.tokens, size=2))} for i in range(60)]
    codes = rng.random((60, 5)).astype(np.float32) * (rng.random((60, 5)) < 0.4)
    ctx = build_context(
        tmp_path / "generic",
        sae=random_sae(0, d_model=4, n_features=5),
        examples=records,
        vocab=VOCAB,
        codes=codes,
        progress=False,
    )
    again = load_context(tmp_path / "generic")
    assert again.fingerprint == ctx.fingerprint
    assert again.examples.record(0) == records[0]
    assert again.token_names == VOCAB.tokens
    np.testing.assert_array_equal(again.codes.csr.toarray(), codes)


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"id": 0, "tokens": ["a_3"]}, {"id": 1, "tokens": ["zzz"]}],
         r"example 1: token 'zzz' is not in vocab \(record #1, line 2\)"),
        ([{"id": 0, "tokens": ["a_3"]}, {"id": 1}],
         r"example #1 \(line 2\) has keys \['id'\]; the first example used \{'id', 'tokens'\}"),
        ([{"tokens": ["a_3"]}], r"example #0 lacks key 'id' \(line 1\)"),
        ([{"id": "x", "tokens": []}], r"example #0 \(line 1\): id 'x' is not an integer"),
        ([{"id": 0, "tokens": "a_3"}], r"'tokens' must be a list of token strings, got 'a_3'"),
        ([{"id": 0, "tokens": []}, {"id": 1, "weapon": "weapon_id_0", "abilities": []}],
         r"example #1 \(line 2\) has keys .*every example must use the same shape"),
        ([7], r"example #0 \(line 1\) is int, not a JSON object"),
    ],
)
def test_bad_generic_records_name_the_line(records, message) -> None:
    with pytest.raises(ValueError, match=message):
        ExampleSet.from_records(records, vocab=VOCAB)


def test_builds_need_a_weapon_vocab() -> None:
    with pytest.raises(ValueError, match=r"weapon_vocab is required"):
        ExampleSet.from_records(BUILDS, vocab=VOCAB)
