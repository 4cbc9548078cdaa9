"""The shared example set: one gear build per example (an id, a weapon token, ability tokens), or,
for models that are not SplatNLP, one token list per example with no weapon.

Two contexts can only be compared when their codes were computed on the same example set; the
set's :attr:`ExampleSet.fingerprint` is what they compare.

Records come in two shapes: ``{"id", "weapon", "abilities"}`` (SplatNLP builds) or
``{"id", "tokens"}`` (generic; the weapon vocabulary is then empty and every weapon id is
:data:`NO_WEAPON`). Token ids of generic examples are stored where ability ids are.

On disk (``examples/`` inside a context)::

    example_ids.npy     int64  (n_examples,)
    weapon_tokens.npy   int32  (n_examples,)     ids into weapon_vocab.json, -1 = none
    ability_indptr.npy  int64  (n_examples + 1,) CSR row pointers into ability_tokens
    ability_tokens.npy  int32  (n_ability_tokens,) ids into vocab.json
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from splatnlp.mechinterp.context.vocab import Vocab

_FILES = ("example_ids", "weapon_tokens", "ability_indptr", "ability_tokens")
NO_WEAPON = -1
"""Weapon id of an example without a weapon (generic token data)."""


def load_npy(path: Path, *, mmap: bool = False) -> np.ndarray:
    """``np.load`` with errors that name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"missing file {str(path)!r}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"file {str(path)!r} is not a readable .npy array: {exc}") from exc


@dataclass(frozen=True, eq=False)
class ExampleSet:
    """Builds as token ids, with the vocabularies that name them.

    Attributes
    ----------
    example_ids : ndarray of shape (n_examples,), int64, unique
    weapon_tokens : ndarray of shape (n_examples,), ids into ``weapon_vocab``
    ability_indptr : ndarray of shape (n_examples + 1,); example ``i`` has tokens
        ``ability_tokens[ability_indptr[i]:ability_indptr[i + 1]]``
    ability_tokens : ndarray of shape (n_ability_tokens,), ids into ``vocab``
    """

    example_ids: np.ndarray
    weapon_tokens: np.ndarray
    ability_indptr: np.ndarray
    ability_tokens: np.ndarray
    vocab: Vocab
    weapon_vocab: Vocab

    def __post_init__(self) -> None:
        self.validate()

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any]], *, vocab: Vocab, weapon_vocab: Vocab | None = None
    ) -> ExampleSet:
        """From dicts with token strings: ``{"id": int, "weapon": str, "abilities": [str, ...]}``
        (SplatNLP builds) or ``{"id": int, "tokens": [str, ...]}`` (generic, no weapon; then
        ``weapon_vocab`` may be omitted). All records have the same shape; an error names the
        record's position (its line in a ``.jsonl`` file is that position + 1)."""
        ids, weapons, indptr, tokens = [], [], [0], []
        generic: bool | None = None
        for n, rec in enumerate(records):
            where = f"example #{n} (line {n + 1})"
            if not isinstance(rec, Mapping):
                raise ValueError(f"{where} is {type(rec).__name__}, not a JSON object")
            shape = "tokens" in rec
            if generic is None:
                generic = shape
                if not generic and weapon_vocab is None:
                    raise ValueError(
                        f"{where} has a weapon: weapon_vocab is required for "
                        "{'id', 'weapon', 'abilities'} records"
                    )
            elif shape != generic:
                raise ValueError(
                    f"{where} has keys {sorted(rec)}; the first example used "
                    + ("{'id', 'tokens'}" if generic else "{'id', 'weapon', 'abilities'}")
                    + " and every example must use the same shape"
                )
            expected = ("id", "tokens") if generic else ("id", "weapon", "abilities")
            missing = [k for k in expected if k not in rec]
            if missing:
                raise ValueError(
                    f"example #{n} lacks key {missing[0]!r} (line {n + 1}); expected "
                    f"{', '.join(map(repr, expected))}"
                )
            try:
                ids.append(int(rec["id"]))
            except (TypeError, ValueError):
                raise ValueError(f"{where}: id {rec['id']!r} is not an integer") from None
            listed = rec["tokens"] if generic else rec["abilities"]
            if isinstance(listed, str) or not isinstance(listed, Iterable):
                key = "tokens" if generic else "abilities"
                raise ValueError(f"{where}: {key!r} must be a list of token strings, got {listed!r}")
            if generic:
                weapons.append(NO_WEAPON)
            else:
                weapon = rec["weapon"]
                if weapon not in weapon_vocab:
                    raise ValueError(
                        f"example {rec['id']}: weapon token {weapon!r} is not in weapon_vocab "
                        f"(record #{n}, line {n + 1})"
                    )
                weapons.append(weapon_vocab.id(weapon))
            for token in listed:
                if token not in vocab:
                    kind = "token" if generic else "ability token"
                    raise ValueError(
                        f"example {rec['id']}: {kind} {token!r} is not in vocab (record #{n}, line {n + 1})"
                    )
                tokens.append(vocab.id(token))
            indptr.append(len(tokens))
        if generic and weapon_vocab is None:
            weapon_vocab = Vocab({})
        return cls(
            example_ids=np.asarray(ids, dtype=np.int64),
            weapon_tokens=np.asarray(weapons, dtype=np.int32),
            ability_indptr=np.asarray(indptr, dtype=np.int64),
            ability_tokens=np.asarray(tokens, dtype=np.int32),
            vocab=vocab,
            weapon_vocab=weapon_vocab if weapon_vocab is not None else Vocab({}),
        )

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistency (shapes, id ranges, duplicates)."""
        n = len(self.example_ids)
        if self.example_ids.ndim != 1:
            raise ValueError(f"example_ids must be 1-D, got shape {self.example_ids.shape}")
        if self.weapon_tokens.shape != (n,):
            raise ValueError(f"weapon_tokens has shape {self.weapon_tokens.shape}; expected ({n},)")
        if self.ability_indptr.shape != (n + 1,):
            raise ValueError(f"ability_indptr has shape {self.ability_indptr.shape}; expected ({n + 1},)")
        if self.ability_indptr[0] != 0 or self.ability_indptr[-1] != len(self.ability_tokens):
            raise ValueError(
                f"ability_indptr must run from 0 to {len(self.ability_tokens)}, got "
                f"{self.ability_indptr[0]}..{self.ability_indptr[-1]}"
            )
        if n and np.any(np.diff(self.ability_indptr) < 0):
            raise ValueError("ability_indptr is not non-decreasing")
        for name, ids, vocab in (
            ("weapon token", self.weapon_tokens[self.weapon_tokens != NO_WEAPON], self.weapon_vocab),
            ("ability token", self.ability_tokens, self.vocab),
        ):
            if len(ids) and (ids.min() < 0 or ids.max() >= len(vocab)):
                pos = int(np.flatnonzero((ids < 0) | (ids >= len(vocab)))[0])
                if name == "weapon token":  # position among the examples that have a weapon
                    pos = int(np.flatnonzero(self.weapon_tokens != NO_WEAPON)[pos])
                row = pos if name == "weapon token" else int(
                    np.searchsorted(self.ability_indptr, pos, side="right") - 1
                )
                raise ValueError(
                    f"{name} id {int(ids[pos])} of example {int(self.example_ids[row])} (row {row}) "
                    f"is outside the vocabulary (valid ids 0..{len(vocab) - 1})"
                )
        unique, counts = np.unique(self.example_ids, return_counts=True)
        if len(unique) != n:
            dup = int(unique[counts > 1][0])
            rows = np.flatnonzero(self.example_ids == dup)[:2].tolist()
            raise ValueError(f"example id {dup} appears more than once (rows {rows}); ids must be unique")

    # -- access ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.example_ids)

    @property
    def n_examples(self) -> int:
        return len(self.example_ids)

    @property
    def has_weapons(self) -> bool:
        """False for generic token data (no example has a weapon)."""
        return bool(np.any(self.weapon_tokens != NO_WEAPON))

    def weapon(self, i: int) -> str | None:
        """Example ``i``'s weapon token, None when it has none (generic token data)."""
        w = int(self.weapon_tokens[i])
        return None if w == NO_WEAPON else self.weapon_vocab.token(w)

    def abilities(self, i: int) -> list[str]:
        """Example ``i``'s tokens other than the weapon (all its tokens for generic data)."""
        lo, hi = self.ability_indptr[i], self.ability_indptr[i + 1]
        return [self.vocab.token(int(t)) for t in self.ability_tokens[lo:hi]]

    def record(self, i: int) -> dict[str, Any]:
        """Example ``i`` (a row index, not an example id) as a plain dict, in the shape it was
        given: ``{"id", "weapon", "abilities"}`` or ``{"id", "tokens"}``."""
        if not self.has_weapons and len(self.weapon_vocab) == 0:
            return {"id": int(self.example_ids[i]), "tokens": self.abilities(i)}
        return {"id": int(self.example_ids[i]), "weapon": self.weapon(i), "abilities": self.abilities(i)}

    # -- the combined token space used by feature statistics --------------------------------
    @property
    def n_tokens(self) -> int:
        """Size of the combined token space: ability vocab ids, then weapon ids offset by len(vocab)."""
        return len(self.vocab) + len(self.weapon_vocab)

    def token_names(self) -> list[str]:
        return self.vocab.tokens + self.weapon_vocab.tokens

    def token_matrix(self) -> sp.csr_matrix:
        """Binary token incidence, shape (n_examples, n_tokens), in the combined token space."""
        n = self.n_examples
        has_weapon = self.weapon_tokens != NO_WEAPON
        counts = np.diff(self.ability_indptr) + has_weapon
        indptr = np.concatenate([[0], np.cumsum(counts)])
        indices = np.empty(indptr[-1], dtype=np.int32)
        rows = np.repeat(np.arange(n), np.diff(self.ability_indptr))
        # Each row: its ability ids at their slots, then the weapon id (if any) in the last slot.
        pos = np.arange(len(self.ability_tokens)) + np.concatenate([[0], np.cumsum(has_weapon)])[rows]
        indices[pos] = self.ability_tokens
        indices[indptr[1:][has_weapon] - 1] = self.weapon_tokens[has_weapon].astype(np.int64) + len(self.vocab)
        mat = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(n, self.n_tokens)
        )
        mat.sum_duplicates()  # a repeated token counts once
        mat.data[:] = 1.0
        return mat

    # -- identity ----------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` over ids, token strings and structure; equal iff the builds are equal."""
        h = hashlib.sha256()
        h.update(b"splatnlp-example-set-v1\0")
        for arr in (self.example_ids.astype("<i8"), self.ability_indptr.astype("<i8")):
            h.update(np.ascontiguousarray(arr).tobytes())
        # Hash token strings, not ids, so that two vocabularies that order tokens differently
        # but describe the same builds give the same fingerprint.
        vocab_tokens = self.vocab.tokens
        weapon_tokens = self.weapon_vocab.tokens
        # An example without a weapon hashes as "" (generic token data; builds always have one).
        h.update("\n".join("" if t == NO_WEAPON else weapon_tokens[int(t)] for t in self.weapon_tokens).encode())
        h.update(b"\0")
        h.update("\n".join(vocab_tokens[int(t)] for t in self.ability_tokens).encode())
        return "sha256:" + h.hexdigest()

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "example_ids.npy", self.example_ids.astype(np.int64))
        np.save(directory / "weapon_tokens.npy", self.weapon_tokens.astype(np.int32))
        np.save(directory / "ability_indptr.npy", self.ability_indptr.astype(np.int64))
        np.save(directory / "ability_tokens.npy", self.ability_tokens.astype(np.int32))

    @classmethod
    def load(cls, directory: str | Path, *, vocab: Vocab, weapon_vocab: Vocab) -> ExampleSet:
        directory = Path(directory)
        arrays = {name: load_npy(directory / f"{name}.npy") for name in _FILES}
        try:
            return cls(**arrays, vocab=vocab, weapon_vocab=weapon_vocab)
        except ValueError as exc:
            raise ValueError(f"example set in {str(directory)!r} is inconsistent: {exc}") from exc
