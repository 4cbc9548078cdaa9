"""Contexts keep the hidden activations they were encoded from (for the stitching test of
novelty), and say clearly when they have none."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from helpers import random_examples, random_sae

from splatnlp.mechinterp.context import build_context, load_context
from splatnlp.mechinterp.context.manifest import MANIFEST

N, D, K = 120, 16, 40


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    return random_sae(seed, d_model=D, n_features=K), random_examples(rng, N), rng.standard_normal((N, D)).astype(np.float32)


def test_activations_are_kept_exactly(tmp_path) -> None:
    sae, examples, acts = _inputs()
    path = tmp_path / "acts.npy"
    np.save(path, acts)
    ctx = build_context(tmp_path / "ultra", sae=sae, examples=examples, activations=path, chunk_size=7, progress=False)
    assert ctx.has_activations
    kept = load_context(tmp_path / "ultra").activations
    assert isinstance(kept, np.memmap) and kept.dtype == np.float32
    np.testing.assert_array_equal(kept, acts)  # a copy, bit for bit


def test_float64_tensor_activations_are_stored_as_float32(tmp_path) -> None:
    import torch

    sae, examples, acts = _inputs(1)
    ctx = build_context(
        tmp_path / "full", sae=sae, examples=examples, activations=torch.from_numpy(acts.astype(np.float64)), progress=False
    )
    np.testing.assert_array_equal(ctx.activations, acts)


def test_a_context_from_codes_says_why_it_has_none(tmp_path) -> None:
    sae, examples, acts = _inputs()
    codes = sae.encode(__import__("torch").from_numpy(acts)).numpy()
    ctx = build_context(tmp_path / "c", sae=sae, examples=examples, codes=codes, progress=False)
    assert not ctx.has_activations
    with pytest.raises(LookupError, match=r"has no activations: it was built from precomputed codes"):
        _ = ctx.activations


def test_keep_activations_false_stores_none(tmp_path) -> None:
    sae, examples, acts = _inputs()
    ctx = build_context(tmp_path / "c", sae=sae, examples=examples, activations=acts, keep_activations=False, progress=False)
    assert not (ctx.path / "activations.npy").exists()
    with pytest.raises(LookupError, match=r"keep_activations=False"):
        _ = ctx.activations


def test_schema_version_1_contexts_still_load(tmp_path) -> None:
    sae, examples, acts = _inputs()
    ctx = build_context(tmp_path / "c", sae=sae, examples=examples, activations=acts, keep_activations=False, progress=False)
    manifest = yaml.safe_load((ctx.path / MANIFEST).read_text())
    manifest["schema_version"] = 1
    del manifest["activations"]
    (ctx.path / MANIFEST).write_text(yaml.safe_dump(manifest))
    again = load_context(ctx.path)
    assert again.manifest.schema_version == 1 and not again.has_activations


def test_a_damaged_activations_file_is_refused(tmp_path) -> None:
    sae, examples, acts = _inputs()
    ctx = build_context(tmp_path / "c", sae=sae, examples=examples, activations=acts, progress=False)
    np.save(ctx.path / "activations.npy", acts[:10])
    with pytest.raises(ValueError, match=r"activations.npy holds float32 \(10, 16\); expected float32 \(120, 16\)"):
        _ = load_context(ctx.path).activations
