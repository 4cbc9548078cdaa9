"""Tests of splatnlp/mechinterp/vocab.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from splatnlp.mechinterp.context.vocab import (
    AP_RUNGS,
    MAIN_ONLY_ABILITIES,
    SPECIAL_TOKENS,
    STANDARD_ABILITIES,
    Vocab,
    ability_of,
    as_vocab,
    splatoon_ability_vocab,
    weapon_vocab,
)


def test_json_round_trip(tmp_path: Path) -> None:
    vocab = Vocab({"b": 1, "a": 0, "<PAD>": 2})
    path = tmp_path / "vocab.json"
    vocab.to_json(path)
    loaded = Vocab.from_json(path)
    assert loaded == vocab
    assert loaded.tokens == ["a", "b", "<PAD>"]
    assert json.loads(path.read_text()) == {"a": 0, "b": 1, "<PAD>": 2}
    assert [loaded.id(t) for t in loaded.tokens] == [0, 1, 2]
    assert loaded.token(1) == "b"
    assert loaded.special_ids() == [2]
    assert "a" in loaded and "z" not in loaded


def test_from_tokens_numbers_in_order() -> None:
    vocab = Vocab.from_tokens(["x", "y", "z"])
    assert vocab.tokens == ["x", "y", "z"]
    assert len(vocab) == 3
    assert vocab != Vocab.from_tokens(["y", "x", "z"])


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        ({"a": 0, "b": 2}, r"vocabulary id 2 of token 'b'.*0\.\.1 \(ids must be contiguous\)"),
        ({"a": -1, "b": 0}, r"vocabulary id -1 of token 'a'"),
        ({"a": 0, "b": "1"}, r"vocabulary id '1' of token 'b'"),
        ({"a": 0, "b": True}, r"vocabulary id True of token 'b'"),
        ({"a": 1, "b": 1}, r"vocabulary id 1 .*used by both 'a' and 'b'"),
    ],
)
def test_bad_ids_are_refused_with_the_id_named(mapping: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Vocab(mapping)


def test_error_names_the_source_file(tmp_path: Path) -> None:
    path = tmp_path / "gappy.json"
    path.write_text(json.dumps({"a": 0, "b": 5}))
    with pytest.raises(ValueError, match=r"vocabulary id 5 of token 'b' in '.*gappy\.json'"):
        Vocab.from_json(path)


def test_non_string_token_is_refused() -> None:
    with pytest.raises(ValueError, match=r"vocabulary token 3 is not a string"):
        Vocab({3: 0})  # type: ignore[dict-item]


def test_bad_json_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"vocabulary file '.*broken\.json' is not valid JSON"):
        Vocab.from_json(bad)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"'.*list\.json' holds a list; expected a JSON object"):
        Vocab.from_json(listed)
    with pytest.raises(FileNotFoundError, match=r"vocabulary file '.*absent\.json' does not exist"):
        Vocab.from_json(tmp_path / "absent.json")


def test_unknown_token_and_id() -> None:
    vocab = Vocab.from_tokens(["a", "b"])
    with pytest.raises(KeyError, match=r"token 'c' is not in the vocabulary \(2 tokens\)"):
        vocab.id("c")
    with pytest.raises(IndexError, match=r"token id 2 is out of range for a vocabulary of 2"):
        vocab.token(2)
    with pytest.raises(IndexError, match=r"token id -1 is out of range"):
        vocab.token(-1)


def test_splatoon_ability_vocab() -> None:
    vocab = splatoon_ability_vocab()
    assert len(STANDARD_ABILITIES) == 14 and len(AP_RUNGS) == 9 and len(MAIN_ONLY_ABILITIES) == 12
    assert len(vocab) == 3 + 14 * 9 + 12
    assert vocab.tokens[:3] == list(SPECIAL_TOKENS)
    assert vocab.special_ids() == [0, 1, 2]
    assert vocab.tokens[3] == "ink_recovery_up_3"
    assert "swim_speed_up_57" in vocab and "ninja_squid" in vocab
    assert len(set(vocab.tokens)) == len(vocab)
    # Every standard ability appears at every rung exactly once.
    rungs = [t for t in vocab.tokens if ability_of(t) == "swim_speed_up"]
    assert rungs == [f"swim_speed_up_{ap}" for ap in AP_RUNGS]


def test_weapon_vocab() -> None:
    vocab = weapon_vocab([0, 10, 250])
    assert vocab.tokens == ["weapon_id_0", "weapon_id_10", "weapon_id_250"]


@pytest.mark.parametrize(
    ("token", "ability"),
    [
        ("swim_speed_up_21", "swim_speed_up"),
        ("ink_saver_main_3", "ink_saver_main"),
        ("ninja_squid", "ninja_squid"),
        ("<PAD>", "<PAD>"),
        ("weapon_id_40", "weapon_id"),
    ],
)
def test_ability_of(token: str, ability: str) -> None:
    assert ability_of(token) == ability


def test_as_vocab(tmp_path: Path) -> None:
    vocab = Vocab.from_tokens(["a", "b"])
    assert as_vocab(vocab) is vocab
    assert as_vocab({"a": 0, "b": 1}) == vocab
    path = tmp_path / "v.json"
    vocab.to_json(path)
    assert as_vocab(path) == vocab
    assert as_vocab(str(path)) == vocab
    with pytest.raises(TypeError, match=r"weapon_vocab must be a Vocab.*got list"):
        as_vocab(["a", "b"], what="weapon_vocab")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"vocabulary id 3 of token 'b' in weapon_vocab"):
        as_vocab({"a": 0, "b": 3}, what="weapon_vocab")
