"""Training a SplatNLP-architecture SAE (splatnlp/mechinterp/demo/train.py) and the demo preset
whose SAEs are trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splatnlp.mechinterp.demo.train import TrainOptions, train_splatnlp_sae
from splatnlp.mechinterp.demo.world import DemoPreset, generate_world


def _sparse_data(n: int = 3000, d: int = 24, k: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((k, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    active = rng.random((n, k)) < 4 / k
    return ((active * rng.lognormal(0, 0.3, (n, k))) @ dirs + 0.2).astype(np.float32)


def test_training_reaches_the_target_l0_and_the_summary_is_the_saes_own() -> None:
    x = _sparse_data()
    sae, summary = train_splatnlp_sae(x, 64, 6.0, TrainOptions(steps=1500, seed=1))
    assert sae.activation == "relu" and sae.clamp_max == 6.0 and sae.normalize_decoder
    codes = sae.encode(torch.from_numpy(x))
    l0 = float((codes > 0).sum(1).float().mean())
    assert summary.l0 == pytest.approx(l0, rel=1e-6)
    assert 4.5 <= l0 <= 7.5  # the L1 coefficient was tuned toward 6
    recon = sae.decode(codes).numpy()
    fvu = ((recon - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    # float32 sums over the whole set, in chunks vs at once: a relative tolerance of 1e-4.
    assert summary.fvu == pytest.approx(float(fvu), rel=1e-4) and summary.fvu < 0.5
    again, _ = train_splatnlp_sae(x, 64, 6.0, TrainOptions(steps=1500, seed=1))
    torch.testing.assert_close(again.W_dec, sae.W_dec)  # seeded: the same SAE


@pytest.mark.parametrize(("target", "shape"), [(0.5, (10, 4)), (65, (10, 4)), (2, (1, 4)), (2, (10,))])
def test_bad_training_inputs_are_refused(target: float, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="target_l0|x must have shape"):
        train_splatnlp_sae(np.zeros(shape, np.float32), 64, target)


def test_a_trained_world_has_truth_by_tracking() -> None:
    preset = DemoPreset(
        name="trained-test", n_examples=3000, d_model=32, n_full=32, n_ultra=128, parents_per_example=3.0,
        novel_per_example=0.5, sibling_rate=0.05, target_l0_full=3.0, target_l0_ultra=12.0,
        saes="trained", train_steps=600,
    )
    world = generate_world(preset, seed=0)
    t = world.truth
    assert t.saes == "trained" and set(t.training) == {"full", "ultra"}
    assert world.full_sae.n_features == 32 and world.ultra_sae.n_features == 128
    assert len(t.full_class) == 32 and len(t.ultra_class) == len(t.ultra_parents) == 128
    assert set(t.ultra_class) <= {"child", "equivalent", "novel", "dead", "untracked"}
    for u, (cls, parents) in enumerate(zip(t.ultra_class, t.ultra_parents, strict=True)):
        assert (cls in ("child", "equivalent")) == bool(parents), u
        assert t.ultra_parent[u] == (parents[0] if parents else None)
        assert all(t.full_class[f] in ("split", "equivalent", "partial") for f in parents)
    # Measured (seed 0): 64 children, 9 equivalents, 39 novel, 16 untracked; L0 2.87 and 11.4.
    assert sum(c in ("child", "equivalent") for c in t.ultra_class) >= 40
    assert sum(c == "split" for c in t.full_class) >= 10
    assert 2.0 <= t.training["full"]["l0"] <= 4.0 and 9.0 <= t.training["ultra"]["l0"] <= 15.0
    # Same-concept pairs: the Full latent tracks the Ultra latent's own concept, so it is one of
    # its expected parents; every one-child equivalent is such a pair.
    assert t.same_feature_pairs
    for f, u in t.same_feature_pairs:
        assert f in t.ultra_parents[u] and t.ultra_class[u] in ("child", "equivalent"), (f, u)
    same = {tuple(p) for p in t.same_feature_pairs}
    assert all((t.ultra_parent[u], u) in same for u, c in enumerate(t.ultra_class) if c == "equivalent")
    assert type(t).from_dict(t.to_dict()).same_feature_pairs == t.same_feature_pairs
    again = generate_world(preset, seed=0).truth
    assert again.ultra_parents == t.ultra_parents and again.full_class == t.full_class
