"""Token vocabularies of the SplatNLP build model.

A build is a weapon token (its own vocabulary, ``weapon_id_N``) plus ability tokens such as
``swim_speed_up_21`` (an ability at an AP rung) or ``ninja_squid`` (a main-only ability).
Vocabularies are stored as ``{token: id}`` JSON files, as upstream SplatNLP does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

SPECIAL_TOKENS: tuple[str, ...] = ("<PAD>", "<MASK>", "<NULL>")
STANDARD_ABILITIES: tuple[str, ...] = (
    "ink_recovery_up",
    "ink_resistance_up",
    "ink_saver_main",
    "ink_saver_sub",
    "intensify_action",
    "quick_respawn",
    "quick_super_jump",
    "run_speed_up",
    "special_charge_up",
    "special_power_up",
    "special_saver",
    "sub_power_up",
    "sub_resistance_up",
    "swim_speed_up",
)
AP_RUNGS: tuple[int, ...] = (3, 6, 12, 15, 21, 29, 38, 51, 57)
MAIN_ONLY_ABILITIES: tuple[str, ...] = (
    "comeback",
    "last_ditch_effort",
    "opening_gambit",
    "tenacity",
    "ability_doubler",
    "haunt",
    "ninja_squid",
    "respawn_punisher",
    "thermal_ink",
    "drop_roller",
    "object_shredder",
    "stealth_jump",
)

_RUNG_SUFFIX = re.compile(r"^(?P<ability>.+)_(?P<ap>\d+)$")


def ability_of(token: str) -> str:
    """The ability a token belongs to: ``swim_speed_up_21`` -> ``swim_speed_up``."""
    match = _RUNG_SUFFIX.match(token)
    return match.group("ability") if match else token


class Vocab:
    """A bijection between token strings and contiguous integer ids ``0..len-1``."""

    def __init__(self, token_to_id: Mapping[str, int], *, source: str | None = None):
        where = f" in {source}" if source else ""
        tokens = [None] * len(token_to_id)
        for token, idx in token_to_id.items():
            if not isinstance(token, str):
                raise ValueError(f"vocabulary token {token!r}{where} is not a string")
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(token_to_id):
                raise ValueError(
                    f"vocabulary id {idx!r} of token {token!r}{where} is not an integer in "
                    f"0..{len(token_to_id) - 1} (ids must be contiguous)"
                )
            if tokens[idx] is not None:
                raise ValueError(f"vocabulary id {idx}{where} is used by both {tokens[idx]!r} and {token!r}")
            tokens[idx] = token
        self._tokens: list[str] = tokens  # type: ignore[assignment]
        self._ids: dict[str, int] = dict(token_to_id)

    @classmethod
    def from_tokens(cls, tokens: Iterable[str]) -> Vocab:
        return cls({token: i for i, token in enumerate(tokens)})

    @classmethod
    def from_json(cls, path: str | Path) -> Vocab:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"vocabulary file {str(path)!r} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"vocabulary file {str(path)!r} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(
                f"vocabulary file {str(path)!r} holds a {type(data).__name__}; expected a JSON "
                "object mapping token -> id"
            )
        return cls(data, source=repr(str(path)))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self._ids, indent=0, sort_keys=False) + "\n")

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._tokens == other._tokens

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"

    @property
    def tokens(self) -> list[str]:
        """Token strings in id order."""
        return list(self._tokens)

    def id(self, token: str) -> int:
        try:
            return self._ids[token]
        except KeyError:
            raise KeyError(f"token {token!r} is not in the vocabulary ({len(self)} tokens)") from None

    def token(self, idx: int) -> str:
        if not 0 <= int(idx) < len(self):
            raise IndexError(f"token id {idx} is out of range for a vocabulary of {len(self)} tokens")
        return self._tokens[int(idx)]

    def special_ids(self) -> list[int]:
        """Ids of special tokens (``<PAD>`` etc.), which carry no build meaning."""
        return [i for i, t in enumerate(self._tokens) if t.startswith("<") and t.endswith(">")]


def as_vocab(value: Vocab | Mapping[str, int] | str | Path, *, what: str = "vocabulary") -> Vocab:
    """A :class:`Vocab` from a Vocab, a ``{token: id}`` mapping or a JSON file path."""
    if isinstance(value, Vocab):
        return value
    if isinstance(value, (str, Path)):
        return Vocab.from_json(value)
    if isinstance(value, Mapping):
        return Vocab(value, source=what)
    raise TypeError(
        f"{what} must be a Vocab, a {{token: id}} mapping or a JSON path, got {type(value).__name__}"
    )


def splatoon_ability_vocab() -> Vocab:
    """The ability vocabulary: specials, 14 standard abilities x 9 AP rungs, 12 main-only abilities."""
    tokens = list(SPECIAL_TOKENS)
    tokens += [f"{ability}_{ap}" for ability in STANDARD_ABILITIES for ap in AP_RUNGS]
    tokens += list(MAIN_ONLY_ABILITIES)
    return Vocab.from_tokens(tokens)


def weapon_vocab(weapon_numbers: Iterable[int]) -> Vocab:
    """A weapon vocabulary of ``weapon_id_N`` tokens."""
    return Vocab.from_tokens(f"weapon_id_{n}" for n in weapon_numbers)
