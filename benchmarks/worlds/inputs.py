"""Token inputs for a world's contexts: builds.jsonl, tokens.jsonl and the two vocabularies.

Each example's tokens are ``f{j}`` for its 1-6 strongest active true features (how many: drawn
uniformly, capped by how many are active), so top-token overlap between latents is meaningful
but weak, as SplatNLP's ~7 abilities per build are for ~2,200 active Ultra features. A single
placeholder weapon ``w0``. ``tokens.jsonl`` holds the same tokens in the generic
``{"id", "tokens"}`` format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["MAX_TOKENS", "WEAPON", "example_tokens", "write_inputs"]

MAX_TOKENS = 6
"""At most this many tokens per example."""
WEAPON = "w0"
"""The one placeholder weapon token."""


def example_tokens(features: sp.csr_matrix, *, seed: int) -> list[list[str]]:
    """Tokens of every example (rows of ``features``, shape (n_examples, n_true))."""
    rng = np.random.default_rng(seed)
    wanted = rng.integers(1, MAX_TOKENS + 1, size=features.shape[0])
    out: list[list[str]] = []
    for i in range(features.shape[0]):
        lo, hi = features.indptr[i], features.indptr[i + 1]
        cols, vals = features.indices[lo:hi], features.data[lo:hi]
        keep = vals > 0
        cols, vals = cols[keep], vals[keep]
        # Strongest first; ties by feature index so the order is reproducible.
        order = np.lexsort((cols, -vals))[: wanted[i]]
        out.append([f"f{j}" for j in cols[order]])
    return out


def write_inputs(directory: str | Path, features: sp.csr_matrix, *, seed: int) -> dict[str, Path]:
    """Write the token files for ``features`` (n_examples, n_true) into ``directory``.

    Returns
    -------
    dict of paths: ``builds``, ``tokens``, ``vocab``, ``weapon_vocab``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokens = example_tokens(features, seed=seed)
    paths = {
        "builds": directory / "builds.jsonl",
        "tokens": directory / "tokens.jsonl",
        "vocab": directory / "vocab.json",
        "weapon_vocab": directory / "weapon_vocab.json",
    }
    with open(paths["builds"], "w") as b, open(paths["tokens"], "w") as t:
        for i, toks in enumerate(tokens):
            b.write(json.dumps({"id": i, "weapon": WEAPON, "abilities": toks}) + "\n")
            t.write(json.dumps({"id": i, "tokens": toks}) + "\n")
    paths["vocab"].write_text(json.dumps({f"f{j}": j for j in range(features.shape[1])}))
    paths["weapon_vocab"].write_text(json.dumps({WEAPON: 0}))
    return paths
