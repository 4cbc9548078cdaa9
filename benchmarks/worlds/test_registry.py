"""Checks of the world registry's rules (``python -m pytest benchmarks/worlds``)."""

from __future__ import annotations

import pytest

from benchmarks.worlds.registry import WORLDS, SAESpec, WorldSpec, d_in_for, worlds_in_split


def _ultra(target_l0: float) -> SAESpec:
    return SAESpec(d_sae=1024, architecture="topk", k=target_l0, target_l0=target_l0)


@pytest.mark.parametrize(
    ("target_l0", "d_in"), [(10, 128), (51, 128), (52, 256), (92, 256), (184, 512)]
)
def test_d_in_for_is_the_smallest_power_of_two_over_2_5_l0(target_l0, d_in):
    assert d_in_for(_ultra(target_l0)) == d_in


def test_every_world_follows_the_d_in_rule():
    for world in WORLDS:
        assert world.d_in == d_in_for(world.ultra), world.name
        assert world.d_in >= 2.5 * world.ultra.target_l0, world.name


def test_an_explicit_d_in_is_kept():
    spec = WorldSpec(
        name="w",
        split="dev",
        seed=0,
        full=_ultra(10),
        ultra=SAESpec(d_sae=2048, architecture="topk", k=10, target_l0=10),
        regime="same_k",
        d_in=64,
    )
    assert spec.d_in == 64


def test_splits_are_fixed():
    assert [w.name for w in worlds_in_split("test")] == [
        "test_btopk_8x_samek_d2",
        "test_topk_4x_frac_d1",
        "test_std_16x_frac_d1",
        "test_btopk_16x_samek_d1",
        "test_std_8x_samek_d2",
        "test_topk_8x_frac_d1",
    ]
    # Dev worlds are the ones the rules were chosen on; none may be added or moved.
    assert [w.name for w in worlds_in_split("dev")] == [
        "dev_topk_8x_samek_d1",
        "dev_btopk_4x_frac_d1",
        "dev_std_8x_frac_d2",
        "dev_topk_16x_frac_d2",
        "dev_std_4x_samek_d1",
    ]
    with pytest.raises(ValueError, match="split must be one of"):
        worlds_in_split("train")  # type: ignore[arg-type]
