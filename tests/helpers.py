"""Small random builders shared by the tests (vocab, examples, codes, stats, context, cli, and a
planted pair of contexts for the analysis tests), and the float tolerances every numerical
comparison derives (``float_tol``, ``assert_close_f32``). Every builder takes a seed or a
Generator so tests are reproducible."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from splatnlp.mechinterp.context import MechInterpContext, build_context
from splatnlp.mechinterp.context.examples import ExampleSet
from splatnlp.mechinterp.context.sae import SAE, splatnlp_sae
from splatnlp.mechinterp.context.vocab import Vocab, splatoon_ability_vocab, weapon_vocab

# -- float tolerances ----------------------------------------------------------------------------
FLOAT_TOL_SAFETY = 8.0
"""Default ``safety`` of :func:`float_tol` (see there for how it was measured)."""


def float_tol(
    dtype: np.dtype | type | torch.dtype | str,
    n_terms: int,
    scale: float = 1.0,
    safety: float = FLOAT_TOL_SAFETY,
) -> float:
    """Tolerance for a value computed in ``dtype`` by a reduction over ``n_terms`` terms:
    ``safety * eps(dtype) * sqrt(n_terms) * scale``.

    Why: BLAS kernels (MKL's AVX2, AVX-512 and SSE4_2 paths, OpenBLAS's per-core kernels, cuBLAS)
    block, order and fuse a sum differently, so a float result is reproducible only up to its
    rounding error, never to a fixed ``1e-6``. The rounding errors of a sum of ``n_terms`` terms
    have random signs, so they grow like ``eps * sqrt(n_terms)`` of the sum of the terms'
    magnitudes (the probabilistic bound of Higham and Mary, SIAM J. Sci. Comput. 41, 2019; the
    worst case, ``eps * n_terms``, needs every rounding in one direction). Under a few terms the
    fixed roundings (input casts, a normalization, the final cast to float32) dominate instead;
    the safety factor absorbs them.

    Parameters
    ----------
    dtype : the dtype the reduction runs in (numpy or torch): ``eps`` is its machine epsilon,
        1.19e-7 for float32, 2.2e-16 for float64.
    n_terms : int >= 1, the length of the reduction: rows of a cosine or a correlation over
        examples, ``d_model`` of a decoder cosine or an encoder product, rows per float32 chunk
        of a streamed product (chunks are summed in float64), 1 for one rounding (a stored
        float32 copy of a float64 value, a single division).
    scale : the sum of the terms' magnitudes: 1 for a cosine of unit vectors (Cauchy-Schwarz),
        the value itself for a sum of non-negative terms (then pass 1 and use the result as
        ``rtol``).
    safety : measured, not guessed. The worst error / (eps * sqrt(n_terms) * scale) over the
        ~7,900 comparisons in tests/ that use this helper (float32 against float64 references,
        and float32 results of two kernels against each other) was 0.95 with MKL's default
        AVX-512 path on this Xeon, 0.95 under ``MKL_ENABLE_INSTRUCTIONS=SSE4_2`` and 0.43 under
        ``MKL_ENABLE_INSTRUCTIONS=AVX2`` with ``OPENBLAS_CORETYPE=Haswell`` (the worst: a cosine
        of 1 over 300 float32 rows, off by 1.97e-6 = 0.95 * eps * sqrt(300)). The default 8 is
        8.4x that: room for kernels not measured (cuBLAS, ARM) and for a few fixed roundings.

    Returns
    -------
    float, the absolute tolerance (or relative, with ``scale=1``, as above).
    """
    if isinstance(dtype, torch.dtype):
        eps = torch.finfo(dtype).eps
    else:
        eps = float(np.finfo(np.dtype(dtype)).eps)
    if n_terms < 1:
        raise ValueError(f"n_terms must be >= 1, got {n_terms}")
    return safety * eps * math.sqrt(n_terms) * scale


def assert_close_f32(
    actual,
    expected,
    n_terms: int,
    *,
    scale: float = 1.0,
    equal_nan: bool = True,
    err_msg: str = "",
) -> None:
    """``actual`` (a float32 result: array, tensor, list or number) equals ``expected`` (best
    a float64 reference) within ``float_tol(float32, n_terms, scale)``, absolute; NaN only where
    ``expected`` is NaN too (``np.testing.assert_allclose``'s rule, unless ``equal_nan=False``)."""

    def as_array(x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        return np.asarray(x, dtype=np.float64)

    np.testing.assert_allclose(
        as_array(actual),
        as_array(expected),
        rtol=0,
        atol=float_tol(np.float32, n_terms, scale),
        equal_nan=equal_nan,
        err_msg=err_msg,
    )


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


# -- a planted pair of contexts for the analysis tests -------------------------------------------
PAIR_EXAMPLES, PAIR_D_MODEL, N_SOURCE, N_TARGET = 300, 8, 7, 40

# Planted source features (model_type "ultra").
SRC_DEAD, SRC_RARE, SRC_PLAIN, SRC_SUM, SRC_COPIED, SRC_TRACED = 0, 1, 2, 3, 4, 5
SRC_FEW = 6  # active on 8 examples: fewer than its 20 top examples
# Planted target features (model_type "full").
TGT_DEAD, TGT_RARE, TGT_CONSTANT, TGT_ZERO_DECODER = 3, 5, 7, 9
TGT_COPY_A, TGT_COPY_B = 10, 11  # exact copies of SRC_COPIED: r = 1, tied
TGT_PART_A, TGT_PART_B = 12, 13  # SRC_SUM = TGT_PART_A + 0.5 * TGT_PART_B + noise
TGT_SUPERSET = 20  # active wherever SRC_PLAIN is, and elsewhere too
TGT_TRACE = 21  # SRC_TRACED plus a faint trace on 150 other examples: r > 0.85, P(s|t) small


@dataclass
class Pair:
    """Two contexts over one example set, their dense codes and the example set."""

    source: MechInterpContext
    target: MechInterpContext
    source_codes: np.ndarray
    """Dense float64 (n_examples, N_SOURCE), read back from the context."""
    target_codes: np.ndarray
    """Dense float64 (n_examples, N_TARGET), read back from the context."""
    examples: ExampleSet


def planted_codes(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Source (n, 7) and target (n, 40) codes, ~10% dense, with the planted features above."""
    n = PAIR_EXAMPLES
    src = random_codes(rng, n, N_SOURCE, density=0.1).toarray()
    tgt = random_codes(rng, n, N_TARGET, density=0.1).toarray()
    src[:, SRC_DEAD] = 0.0
    src[:, SRC_RARE] = 0.0
    src[[17, 204], SRC_RARE] = [0.8, 0.3]
    tgt[:, TGT_DEAD] = 0.0
    tgt[:, TGT_RARE] = 0.0
    tgt[[5, 90], TGT_RARE] = [0.6, 1.1]
    tgt[:, TGT_CONSTANT] = 0.5  # dyadic: its variance is exactly 0 in floating point
    tgt[:, TGT_COPY_A] = src[:, SRC_COPIED]
    tgt[:, TGT_COPY_B] = src[:, SRC_COPIED]
    noise = np.where(rng.random(n) < 0.05, rng.random(n), 0.0)
    src[:, SRC_SUM] = tgt[:, TGT_PART_A] + 0.5 * tgt[:, TGT_PART_B] + 0.3 * noise
    extra = np.where(rng.random(n) < 0.1, rng.random(n) + 0.1, 0.0)
    tgt[:, TGT_SUPERSET] = np.where(src[:, SRC_PLAIN] > 0, 0.5 + src[:, SRC_PLAIN], extra)
    src[:, SRC_FEW] = 0.0
    src[rng.choice(n, size=8, replace=False), SRC_FEW] = rng.random(8) + 0.1
    others = rng.choice(np.flatnonzero(src[:, SRC_TRACED] == 0), size=150, replace=False)
    tgt[:, TGT_TRACE] = src[:, SRC_TRACED]
    tgt[others, TGT_TRACE] = 0.01
    return src.astype(np.float32), tgt.astype(np.float32)


def themed_examples(rng: np.random.Generator, src: np.ndarray, tgt: np.ndarray) -> ExampleSet:
    """Builds whose tokens follow the codes: each active feature adds its theme token with
    probability 0.8, so top-token sets are not empty; ``<NULL>`` (a special token) joins every
    build where SRC_PLAIN is active, so it would top that feature's list if specials counted."""
    vocab, wvocab = small_vocabs()
    abilities = [t for t in vocab.tokens if not t.startswith("<")]
    theme_src = rng.choice(abilities, size=src.shape[1])
    theme_tgt = rng.choice(abilities, size=tgt.shape[1])
    theme_tgt[TGT_SUPERSET] = theme_src[SRC_PLAIN]
    records = []
    for i in range(src.shape[0]):
        tokens = list(rng.choice(abilities, size=int(rng.integers(2, 5)), replace=False))
        for themes, codes in ((theme_src, src), (theme_tgt, tgt)):
            for f in np.flatnonzero(codes[i] > 0):
                if rng.random() < 0.8:
                    tokens.append(str(themes[f]))
        if src[i, SRC_PLAIN] > 0:
            tokens.append("<NULL>")
        records.append(
            {
                "id": i,
                "weapon": wvocab.tokens[int(rng.integers(len(wvocab)))],
                "abilities": list(dict.fromkeys(tokens)),
            }
        )
    return ExampleSet.from_records(records, vocab=vocab, weapon_vocab=wvocab)


def sae_with_zero_decoder_row(seed: int, n_features: int, zero_row: int | None) -> SAE:
    """A random SplatNLP SAE (d_model 8) whose decoder row ``zero_row`` is all zeros."""
    sae = random_sae(seed, d_model=PAIR_D_MODEL, n_features=n_features)
    W_dec = sae.W_dec.clone()
    if zero_row is not None:
        W_dec[zero_row] = 0.0
    return splatnlp_sae(
        W_enc=sae.W_enc, b_enc=sae.b_enc, W_dec=W_dec, b_dec=torch.zeros(PAIR_D_MODEL)
    )


def build_planted_pair(root: Path, seed: int = 0) -> Pair:
    """Contexts ``root/ultra`` (source, 7 features) and ``root/full`` (target, 40 features) over
    one themed example set, with the planted features named above (top-k of 20 examples)."""
    rng = np.random.default_rng(seed)
    src, tgt = planted_codes(rng)
    examples = themed_examples(rng, src, tgt)
    source = build_context(
        root / "ultra",
        sae=sae_with_zero_decoder_row(seed + 1, N_SOURCE, None),
        examples=examples,
        codes=sp.csr_matrix(src),
        n_top_examples=20,
        progress=False,
    )
    target = build_context(
        root / "full",
        sae=sae_with_zero_decoder_row(seed + 2, N_TARGET, TGT_ZERO_DECODER),
        examples=examples,
        codes=sp.csr_matrix(tgt),
        n_top_examples=20,
        progress=False,
    )
    return Pair(
        source=source,
        target=target,
        source_codes=source.codes.csr.toarray().astype(np.float64),
        target_codes=target.codes.csr.toarray().astype(np.float64),
        examples=examples,
    )


def as_input_format(x: np.ndarray, fmt: str):
    """The same codes in one of the input forms ``align_features`` and ``linear_cka`` accept."""
    import torch

    return {
        "numpy": lambda: x,
        "numpy_float32": lambda: x.astype(np.float32),
        "numpy_fortran": lambda: np.asfortranarray(x),
        "torch": lambda: torch.from_numpy(x),
        "torch_float32": lambda: torch.from_numpy(x).float().requires_grad_(),
        "scipy_csr_matrix": lambda: sp.csr_matrix(x),
        "scipy_csr_float32": lambda: sp.csr_array(x.astype(np.float32)),
        "scipy_csc_matrix": lambda: sp.csc_matrix(x),
        "scipy_coo_array": lambda: sp.coo_array(x),
        "torch_coo": lambda: torch.from_numpy(x).to_sparse_coo(),
        "torch_csr": lambda: torch.from_numpy(x).to_sparse_csr(),
        "torch_csc": lambda: torch.from_numpy(x).to_sparse_csc(),
    }[fmt]()


def other_example_set(context_dir: Path, out: Path, name: str) -> Path:
    """A copy of a context (files linked) whose manifest says it was computed on other examples:
    every command that compares two contexts must refuse it."""
    import yaml

    out.mkdir()
    for item in context_dir.iterdir():
        if item.name != "context.yaml":
            (out / item.name).symlink_to(item)
    manifest = yaml.safe_load((context_dir / "context.yaml").read_text())
    manifest["name"] = name
    manifest["example_set"]["fingerprint"] = "sha256:" + "0" * 64
    (out / "context.yaml").write_text(yaml.safe_dump(manifest))
    return out
