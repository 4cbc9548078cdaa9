"""Small random builders shared by the context-layer tests (vocab, examples, codes, stats,
context, cli). Every builder takes a seed or a Generator so tests are reproducible."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from splatnlp.mechinterp.examples import ExampleSet
from splatnlp.mechinterp.sae import SAE, splatnlp_sae
from splatnlp.mechinterp.vocab import Vocab, splatoon_ability_vocab, weapon_vocab


def small_vocabs() -> tuple[Vocab, Vocab]:
    """The real ability vocabulary and a 6-weapon vocabulary."""
    return splatoon_ability_vocab(), weapon_vocab(range(0, 60, 10))


def random_records(rng: np.random.Generator, n_examples: int, *, first_id: int = 100) -> list[dict]:
    """Build records ``{"id", "weapon", "abilities"}`` with 2-7 distinct non-special abilities."""
    vocab, wvocab = small_vocabs()
    ability_tokens = [t for t in vocab.tokens if not t.startswith("<")]
    ids = first_id + rng.permutation(3 * n_examples)[:n_examples]
    records = []
    for i in range(n_examples):
        k = int(rng.integers(2, 8))
        picks = rng.choice(len(ability_tokens), size=k, replace=False)
        records.append(
            {
                "id": int(ids[i]),
                "weapon": wvocab.tokens[int(rng.integers(len(wvocab)))],
                "abilities": [ability_tokens[j] for j in picks],
            }
        )
    return records


def random_examples(rng: np.random.Generator, n_examples: int) -> ExampleSet:
    vocab, wvocab = small_vocabs()
    return ExampleSet.from_records(
        random_records(rng, n_examples), vocab=vocab, weapon_vocab=wvocab
    )


def random_sae(seed: int, *, d_model: int = 16, n_features: int = 40) -> SAE:
    """A SplatNLP-convention SAE with random weights; roughly a third of its codes are active."""
    gen = torch.Generator().manual_seed(seed)
    return splatnlp_sae(
        W_enc=torch.randn(d_model, n_features, generator=gen) / d_model**0.5,
        b_enc=torch.full((n_features,), -0.4),
        W_dec=torch.randn(n_features, d_model, generator=gen),
        b_dec=0.1 * torch.randn(d_model, generator=gen),
    )


def random_codes(
    rng: np.random.Generator, n_examples: int, n_features: int, *, density: float = 0.2
) -> sp.csr_matrix:
    """Non-negative random sparse codes (no explicit zeros), float32 CSR."""
    dense = rng.random((n_examples, n_features)).astype(np.float32)
    dense[rng.random((n_examples, n_features)) >= density] = 0.0
    return sp.csr_matrix(dense)
