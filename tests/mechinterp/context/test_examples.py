"""Tests of splatnlp/mechinterp/examples.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from helpers import random_examples, random_records, small_vocabs

from splatnlp.mechinterp.context.examples import ExampleSet, load_npy
from splatnlp.mechinterp.context.vocab import Vocab


def _replace(examples: ExampleSet, **arrays: np.ndarray) -> ExampleSet:
    return dataclasses.replace(examples, **arrays)


def test_from_records_round_trip() -> None:
    rng = np.random.default_rng(0)
    records = random_records(rng, 30)
    vocab, wvocab = small_vocabs()
    examples = ExampleSet.from_records(records, vocab=vocab, weapon_vocab=wvocab)
    assert len(examples) == examples.n_examples == 30
    assert [examples.record(i) for i in range(30)] == records
    assert examples.example_ids.dtype == np.int64
    assert examples.ability_indptr[-1] == sum(len(r["abilities"]) for r in records)


def test_save_load(tmp_path: Path) -> None:
    examples = random_examples(np.random.default_rng(1), 25)
    examples.save(tmp_path / "examples")
    loaded = ExampleSet.load(
        tmp_path / "examples", vocab=examples.vocab, weapon_vocab=examples.weapon_vocab
    )
    for name in ("example_ids", "weapon_tokens", "ability_indptr", "ability_tokens"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(examples, name))
    assert loaded.fingerprint == examples.fingerprint


def test_token_matrix_against_dense_brute_force() -> None:
    examples = random_examples(np.random.default_rng(2), 40)
    # A repeated ability token in one build counts once.
    tokens = examples.ability_tokens.copy()
    tokens[1] = tokens[0]
    examples = _replace(examples, ability_tokens=tokens)
    n_vocab = len(examples.vocab)
    expected = np.zeros((40, examples.n_tokens), dtype=np.float32)
    for i in range(40):
        for t in examples.ability_tokens[
            examples.ability_indptr[i] : examples.ability_indptr[i + 1]
        ]:
            expected[i, t] = 1.0
        expected[i, n_vocab + examples.weapon_tokens[i]] = 1.0
    mat = examples.token_matrix()
    assert mat.shape == (40, n_vocab + len(examples.weapon_vocab))
    np.testing.assert_array_equal(mat.toarray(), expected)
    assert set(np.unique(mat.data)) == {1.0}
    assert examples.token_names() == examples.vocab.tokens + examples.weapon_vocab.tokens


def test_fingerprint_identity() -> None:
    records = random_records(np.random.default_rng(3), 20)
    vocab, wvocab = small_vocabs()
    a = ExampleSet.from_records(records, vocab=vocab, weapon_vocab=wvocab)
    b = ExampleSet.from_records(records, vocab=vocab, weapon_vocab=wvocab)
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint.startswith("sha256:") and len(a.fingerprint) == 7 + 64

    # One ability token changed -> a different fingerprint.
    changed = [dict(r) for r in records]
    old = changed[7]["abilities"]
    replacement = next(t for t in vocab.tokens[3:] if t not in old)
    changed[7] = {**changed[7], "abilities": [*old[:-1], replacement]}
    assert (
        ExampleSet.from_records(changed, vocab=vocab, weapon_vocab=wvocab).fingerprint
        != a.fingerprint
    )

    # The weapon or one id changed -> different too.
    other_weapon = next(w for w in wvocab.tokens if w != records[0]["weapon"])
    rewep = [{**records[0], "weapon": other_weapon}, *records[1:]]
    assert (
        ExampleSet.from_records(rewep, vocab=vocab, weapon_vocab=wvocab).fingerprint
        != a.fingerprint
    )
    reid = [{**records[0], "id": max(r["id"] for r in records) + 1}, *records[1:]]
    assert (
        ExampleSet.from_records(reid, vocab=vocab, weapon_vocab=wvocab).fingerprint != a.fingerprint
    )

    # Same builds under reordered vocabularies -> same fingerprint, though the ids differ.
    rng = np.random.default_rng(4)
    vocab_r = Vocab.from_tokens([vocab.tokens[i] for i in rng.permutation(len(vocab))])
    wvocab_r = Vocab.from_tokens(wvocab.tokens[::-1])
    c = ExampleSet.from_records(records, vocab=vocab_r, weapon_vocab=wvocab_r)
    assert not np.array_equal(c.ability_tokens, a.ability_tokens)
    assert c.fingerprint == a.fingerprint


def test_from_records_errors() -> None:
    vocab, wvocab = small_vocabs()
    with pytest.raises(ValueError, match=r"example #1 lacks key 'weapon'"):
        ExampleSet.from_records(
            [{"id": 1, "weapon": "weapon_id_0", "abilities": []}, {"id": 2, "abilities": []}],
            vocab=vocab,
            weapon_vocab=wvocab,
        )
    with pytest.raises(
        ValueError, match=r"example 5: weapon token 'weapon_id_999' is not in weapon_vocab"
    ):
        ExampleSet.from_records(
            [{"id": 5, "weapon": "weapon_id_999", "abilities": []}],
            vocab=vocab,
            weapon_vocab=wvocab,
        )
    with pytest.raises(
        ValueError, match=r"example 6: ability token 'swim_speed_up_99' is not in vocab"
    ):
        ExampleSet.from_records(
            [{"id": 6, "weapon": "weapon_id_0", "abilities": ["swim_speed_up_99"]}],
            vocab=vocab,
            weapon_vocab=wvocab,
        )


@pytest.fixture
def examples() -> ExampleSet:
    return random_examples(np.random.default_rng(5), 10)


def test_out_of_vocab_ability_id_names_example_and_range(examples: ExampleSet) -> None:
    tokens = examples.ability_tokens.copy()
    row = 6
    tokens[examples.ability_indptr[row]] = len(examples.vocab)
    eid = int(examples.example_ids[row])
    hi = len(examples.vocab) - 1
    with pytest.raises(
        ValueError,
        match=rf"ability token id {hi + 1} of example {eid} \(row {row}\) is outside the "
        rf"vocabulary \(valid ids 0\.\.{hi}\)",
    ):
        _replace(examples, ability_tokens=tokens)
    tokens[examples.ability_indptr[row]] = -3
    with pytest.raises(ValueError, match=rf"ability token id -3 of example {eid} \(row {row}\)"):
        _replace(examples, ability_tokens=tokens)


def test_out_of_vocab_weapon_id_names_example_and_range(examples: ExampleSet) -> None:
    weapons = examples.weapon_tokens.copy()
    weapons[3] = 6
    eid = int(examples.example_ids[3])
    with pytest.raises(
        ValueError,
        match=rf"weapon token id 6 of example {eid} \(row 3\) is outside the vocabulary \(valid ids 0\.\.5\)",
    ):
        _replace(examples, weapon_tokens=weapons)


def test_duplicate_ids(examples: ExampleSet) -> None:
    ids = examples.example_ids.copy()
    ids[7] = ids[2]
    with pytest.raises(
        ValueError, match=rf"example id {ids[2]} appears more than once \(rows \[2, 7\]\)"
    ):
        _replace(examples, example_ids=ids)


def test_bad_indptr(examples: ExampleSet) -> None:
    n_tokens = len(examples.ability_tokens)
    with pytest.raises(ValueError, match=r"ability_indptr has shape \(10,\); expected \(11,\)"):
        _replace(examples, ability_indptr=examples.ability_indptr[:-1])
    indptr = examples.ability_indptr.copy()
    indptr[-1] -= 1
    with pytest.raises(
        ValueError, match=rf"must run from 0 to {n_tokens}, got 0\.\.{n_tokens - 1}"
    ):
        _replace(examples, ability_indptr=indptr)
    indptr = examples.ability_indptr.copy()
    indptr[0] = 1
    with pytest.raises(ValueError, match=rf"must run from 0 to {n_tokens}, got 1\.\.{n_tokens}"):
        _replace(examples, ability_indptr=indptr)
    indptr = examples.ability_indptr.copy()
    indptr[4] = indptr[6] + 1
    with pytest.raises(ValueError, match=r"ability_indptr is not non-decreasing"):
        _replace(examples, ability_indptr=indptr)


def test_bad_shapes(examples: ExampleSet) -> None:
    with pytest.raises(ValueError, match=r"example_ids must be 1-D, got shape \(10, 1\)"):
        _replace(examples, example_ids=examples.example_ids[:, None])
    with pytest.raises(ValueError, match=r"weapon_tokens has shape \(9,\); expected \(10,\)"):
        _replace(examples, weapon_tokens=examples.weapon_tokens[:-1])


def test_empty_set_with_stray_tokens_is_refused(examples: ExampleSet) -> None:
    with pytest.raises(ValueError, match=r"ability_indptr must run from 0 to 2, got 0\.\.0"):
        _replace(
            examples,
            example_ids=np.zeros(0, np.int64),
            weapon_tokens=np.zeros(0, np.int32),
            ability_indptr=np.zeros(1, np.int64),
            ability_tokens=np.array([3, 4], np.int32),
        )


def test_corrupt_and_missing_npy_are_named(tmp_path: Path, examples: ExampleSet) -> None:
    folder = tmp_path / "examples"
    examples.save(folder)
    (folder / "ability_tokens.npy").write_bytes(b"not an npy file at all")
    kwargs = {"vocab": examples.vocab, "weapon_vocab": examples.weapon_vocab}
    with pytest.raises(ValueError, match=r"file '.*ability_tokens\.npy' is not a readable \.npy"):
        ExampleSet.load(folder, **kwargs)
    (folder / "ability_tokens.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing file '.*ability_tokens\.npy'"):
        ExampleSet.load(folder, **kwargs)


def test_truncated_npy_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.arange(1000, dtype=np.int64))
    path.write_bytes(path.read_bytes()[:500])
    for mmap in (False, True):
        with pytest.raises(ValueError, match=r"file '.*a\.npy' is not a readable \.npy"):
            load_npy(path, mmap=mmap)


def test_inconsistent_files_name_the_folder(tmp_path: Path, examples: ExampleSet) -> None:
    folder = tmp_path / "examples"
    examples.save(folder)
    np.save(folder / "weapon_tokens.npy", examples.weapon_tokens[:-1])
    with pytest.raises(
        ValueError, match=r"example set in '.*examples' is inconsistent: weapon_tokens has shape"
    ):
        ExampleSet.load(folder, vocab=examples.vocab, weapon_vocab=examples.weapon_vocab)
