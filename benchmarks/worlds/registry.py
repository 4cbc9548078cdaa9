"""The evaluation worlds: one typed spec per world, with its fixed seed and its dev/test split.

The split is part of the registry and was fixed before any world was built or scored, so that
rules are chosen on dev worlds and their quality is reported on test worlds (the way SAELens's
synthetic evals and SAEBench report). Each split covers several architectures, width ratios,
firing regimes and hierarchy depths.

Firing regimes:

- ``same_k``: both SAEs fire about as many latents per example as the world has active true
  features (``k_full == k_ultra``).
- ``same_fraction``: both fire about 9 % of their latents, as the SplatNLP SAEs do (about 190
  of 2,048 and 2,200 of 24,576), so the wide SAE fires many more latents than there are true
  features.

World-size rules (the same for dev and test worlds; chosen from tracking counts, novel counts,
FVU and L0 of dev_topk_16x_frac_d2 builds, never from the package's verdict scores):

- ``d_in`` is the smallest power of two that is at least 128 and at least 2.5 times the wide
  SAE's target L0 (:func:`d_in_for`): 128 for same-k worlds, 256 for ultra L0 92, 512 for 184.
  When a SAE fires more latents per example than ``d_in / 2`` it can reconstruct any input
  without learning the features: dev_topk_16x_frac_d2 at d_in 128 (ultra k 184) tracked 107
  of 2,048 ultra latents after 500k samples and 2 after 1.5M (FVU 0.000: a dense code), while
  at d_in 512 it tracked 1,614 after 500k (410 novel). More samples alone make it worse.
- The true features are left as they were (1,024, true L0 ~10): raising the true L0 toward
  the wide SAE's 9 % would need a still larger ``d_in`` for the features to stay recoverable,
  and the build budget (about 4 minutes per world on 2 cores, 1 torch thread) does not allow it.
- Every SAE trains on 1M samples (was 500-600k): the costliest world, dev_topk_16x_frac_d2
  (2,048 latents at d_in 512, 160 ms a step on one idle core), then builds in about 4 minutes.

With these rules every world has at least 362 tracking and 26 novel ultra latents (build
log: ``ground_truth.json`` ``counts``); before them dev_btopk_4x_frac_d1 had 12 and 3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["SAESpec", "SPLITS", "WORLDS", "WorldSpec", "d_in_for", "get_world", "worlds_in_split"]

Architecture = Literal["topk", "batchtopk", "standard"]
Split = Literal["dev", "test"]
SPLITS: tuple[Split, ...] = ("dev", "test")


@dataclass(frozen=True)
class SAESpec:
    """How one of the two SAEs of a world is trained (SAELens's trainer)."""

    d_sae: int
    """Number of latents."""
    architecture: Architecture
    """SAELens training architecture; ``batchtopk`` is saved by SAELens as ``jumprelu``."""
    k: float | None = None
    """``topk``: latents per example; ``batchtopk``: the mean over a batch. None for ``standard``."""
    l1_coefficient: float | None = None
    """``standard`` only: the L1 coefficient, tuned by hand toward ``target_l0`` (see the world's
    notes for the L0 it reached)."""
    target_l0: float = 0.0
    """The L0 the regime asks for (what ``k`` is set to, or what the L1 coefficient aims at)."""
    lr: float = 1e-3
    """Adam learning rate; linearly decayed to a tenth over the last fifth of training."""
    training_samples: int = 1_000_000
    """Activations seen in training (batches of ``batch_size`` drawn from the world's pool)."""
    batch_size: int = 1024
    """Training batch size."""

    def __post_init__(self) -> None:
        if self.architecture in ("topk", "batchtopk") and (self.k is None or self.k <= 0):
            raise ValueError(f"architecture {self.architecture!r} needs k > 0, got k={self.k!r}")
        if self.architecture == "standard" and (
            self.l1_coefficient is None or self.l1_coefficient <= 0
        ):
            raise ValueError(
                f"architecture 'standard' needs l1_coefficient > 0, got {self.l1_coefficient!r}"
            )


@dataclass(frozen=True)
class WorldSpec:
    """One synthetic world: the true features (SAELens ``SyntheticModelConfig``) and two SAEs."""

    name: str
    """Folder name under the worlds directory."""
    split: Split
    """``dev`` (rules may be tuned on it) or ``test`` (reported only)."""
    seed: int
    """Seeds everything: the synthetic model, the training pool, the SAE inits, the eval sample."""
    full: SAESpec
    """The narrow SAE."""
    ultra: SAESpec
    """The wide SAE."""
    regime: Literal["same_k", "same_fraction"]
    """Firing regime (module docstring)."""
    n_true: int = 1024
    """Number of true features (SAELens ``num_features``)."""
    d_in: int | None = None
    """Width of the activations (SAELens ``hidden_dim``); None: :func:`d_in_for` of ``ultra``
    (the module's rule), filled in at construction."""
    depth: int = 1
    """Hierarchy depth below the roots: 1 = parents with children (2 levels), 2 = 3 levels."""
    n_roots: int = 128
    """Hierarchy roots; the features the trees do not use fire independently."""
    branching: tuple[int, int] = (2, 5)
    """Children per parent, drawn uniformly in this inclusive range."""
    zipf_exponent: float = 0.5
    """Zipf exponent of the base firing probabilities (feature index = rank)."""
    max_prob: float = 0.25
    """Firing probability of the most frequent feature."""
    min_prob: float = 0.004
    """Firing probability of the least frequent feature."""
    magnitude_std: float = 0.2
    """Standard deviation of a firing feature's magnitude (mean 1.0)."""
    pool_size: int = 200_000
    """Activations sampled once and shared by both SAEs' training (drawn with replacement)."""
    n_examples: int = 20_000
    """Examples in the evaluation set the contexts are built on (sampled separately)."""
    notes: str = ""
    """What this world is for."""
    tags: tuple[str, ...] = field(default=())
    """Free labels shown in tables."""

    def __post_init__(self) -> None:
        if self.d_in is None:
            # Frozen dataclass: the rule's value is set once, here.
            object.__setattr__(self, "d_in", d_in_for(self.ultra))
        if self.split not in SPLITS:
            raise ValueError(f"world {self.name!r}: split {self.split!r} is not one of {SPLITS}")
        if self.full.d_sae >= self.ultra.d_sae:
            raise ValueError(
                f"world {self.name!r}: full ({self.full.d_sae}) must be narrower than ultra "
                f"({self.ultra.d_sae})"
            )
        if self.depth not in (1, 2):
            raise ValueError(f"world {self.name!r}: depth must be 1 or 2, got {self.depth}")

    @property
    def ratio(self) -> float:
        """Width ratio ultra / full."""
        return self.ultra.d_sae / self.full.d_sae

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the whole spec."""
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


def d_in_for(ultra: SAESpec) -> int:
    """The world's ``d_in``: the smallest power of two >= 128 and >= 2.5 x the wide SAE's
    target L0 (module docstring)."""
    d_in = 128
    while d_in < 2.5 * ultra.target_l0:
        d_in *= 2
    return d_in


def _topk(d_sae: int, k: float, *, batch: bool = False, samples: int = 1_000_000) -> SAESpec:
    return SAESpec(
        d_sae=d_sae,
        architecture="batchtopk" if batch else "topk",
        k=k,
        target_l0=k,
        training_samples=samples,
    )


def _standard(d_sae: int, l1: float, target_l0: float, samples: int = 1_000_000) -> SAESpec:
    return SAESpec(
        d_sae=d_sae,
        architecture="standard",
        l1_coefficient=l1,
        target_l0=target_l0,
        training_samples=samples,
    )


# ~10 true features are active per example in every world (printed by the build), so the
# same-k regime uses k = 10, and 9 % of 128 / 256 / 1,024 / 2,048 latents is 12 / 23 / 92 / 184.
# The L1 coefficients were set from short tuning runs on dev_std_8x_frac_d2 (300k samples: 128
# latents reach L0 13.4 at l1 = 1.0 and die at 3.0; 1,024 latents reach 160 at 0.3 and 48 at
# 1.0, so L0 ~ 48 / l1). They set a training target, not a rule under evaluation, so test
# worlds use them too; the L0 each SAE actually reached is in ground_truth.json. At 3.0 the
# 1,024-latent SAE of dev_std_4x_samek_d1 collapsed (L0 1.0, FVU 1.00), so it uses 1.5.
# The d_in rule moved the same_fraction worlds' L0 far below target (first build at d_in 256 /
# 512 and 1M samples: 128 latents at l1 1.0 reached L0 4.4 and 4.7, 1,024 at 0.5 reached 19.6,
# 2,048 at 0.25 reached 28.6 (test_std_16x_frac_d1: no dev world has a 2,048-latent ReLU
# SAE, and L0 is a training target, not a score), so their coefficients were rescaled once by the same L0 ~ c / l1
# rule toward target_l0 (L0 only, no scores): 0.37, 0.11 and 0.04. The same_k world stayed at
# d_in 128 and keeps its coefficients.
WORLDS: tuple[WorldSpec, ...] = (
    # ---- dev ------------------------------------------------------------------------------
    WorldSpec(
        name="dev_topk_8x_samek_d1",
        split="dev",
        seed=101,
        full=_topk(128, 10),
        ultra=_topk(1024, 10),
        regime="same_k",
        depth=1,
        notes="TopK, 8x, same k, parents with children.",
    ),
    WorldSpec(
        name="dev_btopk_4x_frac_d1",
        split="dev",
        seed=102,
        full=_topk(256, 23, batch=True),
        ultra=_topk(1024, 92, batch=True),
        regime="same_fraction",
        depth=1,
        notes="BatchTopK (saved as JumpReLU), 4x, 9 % of latents each.",
    ),
    WorldSpec(
        name="dev_std_8x_frac_d2",
        split="dev",
        seed=103,
        full=_standard(128, 0.37, 12),
        ultra=_standard(1024, 0.11, 92),
        regime="same_fraction",
        depth=2,
        n_roots=48,
        branching=(2, 4),
        notes="ReLU + L1 (like the SplatNLP SAEs), 8x, ~9 % each, three levels.",
    ),
    WorldSpec(
        name="dev_topk_16x_frac_d2",
        split="dev",
        seed=104,
        full=_topk(128, 12),
        ultra=_topk(2048, 184),
        regime="same_fraction",
        depth=2,
        n_roots=48,
        branching=(2, 4),
        notes="TopK, 16x, 9 % each, three levels (ultra k 184: d_in 512 by the rule).",
    ),
    WorldSpec(
        name="dev_std_4x_samek_d1",
        split="dev",
        seed=105,
        full=_standard(256, 1.3, 10),
        ultra=_standard(1024, 1.5, 10),
        regime="same_k",
        depth=1,
        notes="ReLU + L1, 4x, both near the true L0.",
    ),
    # ---- test -----------------------------------------------------------------------------
    WorldSpec(
        name="test_btopk_8x_samek_d2",
        split="test",
        seed=201,
        full=_topk(128, 10, batch=True),
        ultra=_topk(1024, 10, batch=True),
        regime="same_k",
        depth=2,
        n_roots=48,
        branching=(2, 4),
        notes="BatchTopK (saved as JumpReLU), 8x, same k, three levels.",
    ),
    WorldSpec(
        name="test_topk_4x_frac_d1",
        split="test",
        seed=202,
        full=_topk(256, 23),
        ultra=_topk(1024, 92),
        regime="same_fraction",
        depth=1,
        branching=(3, 6),
        n_roots=96,
        notes="TopK, 4x, 9 % each, wider branching.",
    ),
    WorldSpec(
        name="test_std_16x_frac_d1",
        split="test",
        seed=203,
        full=_standard(128, 0.37, 12),
        ultra=_standard(2048, 0.04, 184),
        regime="same_fraction",
        depth=1,
        notes="ReLU + L1, 16x, ~9 % each.",
    ),
    # Added on 2026-12-02, after every rule had been chosen, as more test worlds: combinations no
    # other world has (BatchTopK at 16x, ReLU at same k with three levels, TopK 8x at 9 %) and
    # new seeds. Nothing was chosen on them. The ReLU world keeps the same-k dev world's
    # coefficients (l1 1.3 / 1.5; L0 reached 4.8 / 16.0): builds aimed at L0 10 on both (0.62 /
    # 2.4, then 0.62 / 1.9) left 5 and 16 novel latents, under the world-size rule's 26 (counts
    # only: at L0 9.6 every Full latent tracked a feature, so few Ultra latents lacked a Full
    # ancestor).
    WorldSpec(
        name="test_btopk_16x_samek_d1",
        split="test",
        seed=303,
        full=_topk(128, 10, batch=True),
        ultra=_topk(2048, 10, batch=True),
        regime="same_k",
        depth=1,
        notes="BatchTopK (saved as JumpReLU), 16x, same k.",
    ),
    WorldSpec(
        name="test_std_8x_samek_d2",
        split="test",
        seed=301,
        full=_standard(128, 1.3, 10),
        ultra=_standard(1024, 1.5, 10),
        regime="same_k",
        depth=2,
        n_roots=48,
        branching=(2, 4),
        notes="ReLU + L1, 8x, both near the true L0, three levels.",
    ),
    WorldSpec(
        name="test_topk_8x_frac_d1",
        split="test",
        seed=302,
        full=_topk(256, 23),
        ultra=_topk(2048, 184),
        regime="same_fraction",
        depth=1,
        notes="TopK, 8x, 9 % each (ultra k 184: d_in 512 by the rule).",
    ),
)


def get_world(name: str) -> WorldSpec:
    """The registered world called ``name``."""
    for world in WORLDS:
        if world.name == name:
            return world
    raise KeyError(f"no world named {name!r}; known: {[w.name for w in WORLDS]}")


def worlds_in_split(split: Split | Literal["all"]) -> list[WorldSpec]:
    """Registered worlds of ``split`` (``"all"``: every world), in registry order."""
    if split == "all":
        return list(WORLDS)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}")
    return [w for w in WORLDS if w.split == split]
