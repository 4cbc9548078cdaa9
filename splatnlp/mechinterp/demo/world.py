"""A deterministic synthetic SplatNLP world with planted, hierarchical concepts.

The world has three layers, all drawn from one seed:

1. **Concepts.** Every Full feature is a coarse concept with a token *theme* (an ability in an AP
   band, a main-only ability, a weapon class). Most Full concepts are *split*: Ultra has several
   children, each a narrower sub-theme (one rung, one weapon, plus a detail of its own). Some are
   *equivalent* (one Ultra child, same theme); some are *full-only* (Ultra has no counterpart);
   some Ultra concepts are *novel* (no Full parent); some features of both SAEs are *dead*.
2. **Examples.** Each example activates concepts with random magnitudes. A split parent's event
   picks one child (its main child) and lets some siblings fire weakly, as a larger SAE's
   co-firing siblings do.
3. **Hidden states and SAEs.** A hidden state is the sum of the active concepts' directions (a
   child's direction is its parent's plus a private part) plus a bias and noise. The two SAEs are
   SplatNLP checkpoints whose decoders are the planted directions and whose encoders are matched
   filters (a child's filter is its private part, so siblings don't answer each other), with one
   threshold per SAE set to reach the target number of active features per example, then a
   least-squares rescale of the encoder so that decoding reconstructs the activations.
4. **Builds.** The features that answer an example most strongly, each relative to its own
   typical strength, write their theme's tokens into the build (at most one rung per ability);
   the rest of the build is filled with popular abilities. So a feature's top-activating
   examples tend to hold its theme, while tokens every build has carry no meaning.

Feature ids are shuffled per SAE, so an id says nothing about its class. :class:`GroundTruth`
records every feature's class and every Ultra feature's Full parent; library code never reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from splatnlp.mechinterp.context.examples import ExampleSet
from splatnlp.mechinterp.context.sae import SAE, splatnlp_sae
from splatnlp.mechinterp.context.vocab import (
    MAIN_ONLY_ABILITIES,
    STANDARD_ABILITIES,
    Vocab,
    splatoon_ability_vocab,
    weapon_vocab,
)

FullClass = Literal["split", "equivalent", "full_only", "dead", "partial", "untracked"]
"""``partial`` and ``untracked`` occur only with trained SAEs (see :mod:`.truth`)."""
UltraClass = Literal["child", "equivalent", "novel", "dead", "untracked"]

# AP bands a theme can prefer; neighbouring bands overlap at one rung like real builds do.
_BANDS = {"low": (3, 6, 12), "mid": (12, 15, 21, 29), "high": (29, 38, 51, 57)}
_N_WEAPONS = 120
_WEAPON_CLASS_SIZE = 5


@dataclass(frozen=True)
class DemoPreset:
    """Sizes and rates of a demo world."""

    name: str
    n_examples: int
    d_model: int = 512
    n_full: int = 2048
    n_ultra: int = 24576
    parents_per_example: float = 40.0
    """Expected planted Full-level events per example (before thresholding)."""
    novel_per_example: float = 4.0
    """Expected novel Ultra events per example."""
    sibling_rate: float = 0.6
    """Chance that each sibling of the main child fires weakly with it."""
    target_l0_full: float = 190.0
    """Active Full features per example after encoding (upstream Full: about 190)."""
    target_l0_ultra: float = 2200.0
    """Active Ultra features per example after encoding (upstream Ultra: about 2,200)."""
    frac_full_dead: float = 0.03
    frac_full_only: float = 0.03
    frac_full_equivalent: float = 0.10
    frac_ultra_novel: float = 0.05
    frac_ultra_dead: float = 0.03
    child_spread: float = 0.9
    """Norm of a child's private direction relative to its parent's (cosine 1/sqrt(1+s^2))."""
    noise: float = 0.05
    magnitude_sigma: float = 0.5
    """Log-normal sigma of event magnitudes: larger makes an example's strongest events stand out."""
    child_filter_parent: float = 0.6
    """Weight of the parent direction in a child's encoder filter (its private part has weight 1)."""
    emitting_events: int = 6
    """How many of an example's most strongly answering features write their themes into the build."""
    saes: Literal["planted", "trained"] = "planted"
    """``planted``: matched filters built from the planted dictionary (feature ids are planted
    concepts); ``trained``: both SAEs learned from the hidden states with SplatNLP's
    architecture (:mod:`.train`), ground truth by which concept each latent tracks (:mod:`.truth`)."""
    train_steps: int = 1500
    """Training steps of each SAE (``trained`` only)."""


PRESETS: dict[str, DemoPreset] = {
    "tiny": DemoPreset(name="tiny", n_examples=3000),
    "default": DemoPreset(name="default", n_examples=20000),
    "real": DemoPreset(name="real", n_examples=100000),
    # SAEs trained on the hidden states (SplatNLP's ReLU + clamp + L1 at ~9 % of latents active,
    # as Full and Ultra), at an eighth of the real widths: 2,048 / 24,576 at d_model 512 would
    # take about 20 minutes on 2 cores (measured: Ultra 2,048 x d 256 trains in 46 s). Children
    # fire with their parent's events only when chosen (siblings rarely co-fire), so they are
    # rarer than their parents, as in trained SAEs.
    "trained": DemoPreset(
        name="trained",
        n_examples=20000,
        d_model=256,
        n_full=256,
        n_ultra=2048,
        parents_per_example=12.0,
        novel_per_example=1.5,
        sibling_rate=0.05,
        target_l0_full=23.0,
        target_l0_ultra=184.0,
        saes="trained",
    ),
}


@dataclass
class GroundTruth:
    """The planted answer, in the shuffled feature ids the SAEs use."""

    seed: int
    preset: str
    full_class: list[str]
    ultra_class: list[str]
    ultra_parent: list[int | None]
    """For each Ultra feature, its Full parent (children and equivalents) or None."""
    full_theme: list[list[str]] = field(default_factory=list)
    """Tokens each Full concept prefers (empty for dead features)."""
    ultra_theme: list[list[str]] = field(default_factory=list)
    ultra_parents: list[list[int]] | None = None
    """Trained SAEs only: every acceptable Full parent of each Ultra latent (the Full latents
    that track its concept's nearest tracked ancestor); ``ultra_parent`` is the first."""
    same_feature_pairs: list[list[int]] | None = None
    """Trained SAEs only: ``[full, ultra]`` pairs whose latents track the same concept (the
    issue's definition of an equivalent pair, per wide latent; ``equivalent`` in
    ``ultra_class`` is the stricter one-child reading)."""
    saes: str = "planted"
    training: dict | None = None
    """Trained SAEs only: what training reached (L0, FVU, dead latents, seconds) per model."""

    def children(self) -> dict[int, list[int]]:
        """Full feature -> its Ultra children (split) or its one equivalent."""
        out: dict[int, list[int]] = {}
        for u, p in enumerate(self.ultra_parent):
            if p is not None:
                out.setdefault(p, []).append(u)
        return out

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "preset": self.preset,
            "full_class": self.full_class,
            "ultra_class": self.ultra_class,
            "ultra_parent": self.ultra_parent,
            "full_theme": self.full_theme,
            "ultra_theme": self.ultra_theme,
            "ultra_parents": self.ultra_parents,
            "same_feature_pairs": self.same_feature_pairs,
            "saes": self.saes,
            "training": self.training,
        }

    @classmethod
    def from_dict(cls, data: dict) -> GroundTruth:
        return cls(**data)


@dataclass
class DemoWorld:
    examples: ExampleSet
    activations: np.ndarray
    """Hidden states, shape (n_examples, d_model), float32."""
    full_sae: SAE
    ultra_sae: SAE
    truth: GroundTruth


# -- themes ------------------------------------------------------------------------------------
def _ability_components() -> list[tuple[str, list[str]]]:
    comps = [
        (f"{a}:{band}", [f"{a}_{ap}" for ap in rungs])
        for a in STANDARD_ABILITIES
        for band, rungs in _BANDS.items()
    ]
    comps += [(a, [a]) for a in MAIN_ONLY_ABILITIES]
    return comps


def _make_theme(rng: np.random.Generator, ability_comps, weapon_classes) -> list[list[str]]:
    """A coarse theme: one ability component, and half the time a second ability or a weapon class."""
    theme = [ability_comps[rng.integers(len(ability_comps))][1]]
    r = rng.random()
    if r < 0.35:
        theme.append(weapon_classes[rng.integers(len(weapon_classes))])
    elif r < 0.6:
        theme.append(ability_comps[rng.integers(len(ability_comps))][1])
    return theme


def _narrow(rng: np.random.Generator, theme: list[list[str]], ability_comps, weapons) -> list[list[str]]:
    """A child's sub-theme: each parent component narrowed to one token, plus a private detail."""
    sub = [[comp[rng.integers(len(comp))]] for comp in theme]
    r = rng.random()
    if r < 0.45:
        sub.append([weapons[rng.integers(len(weapons))]])
    elif r < 0.8:
        sub.append(ability_comps[rng.integers(len(ability_comps))][1])
    return sub


# -- the generator -----------------------------------------------------------------------------
def generate_world(preset: DemoPreset | str = "default", *, seed: int = 0, shuffle: bool = True) -> DemoWorld:
    """Generate a demo world deterministically from ``seed``.

    ``shuffle=False`` keeps the canonical feature order (split parents first, then equivalents,
    full-only, dead; children grouped by parent), for debugging the generator only.
    """
    if isinstance(preset, str):
        try:
            preset = PRESETS[preset]
        except KeyError:
            raise ValueError(f"unknown demo preset {preset!r}; known: {sorted(PRESETS)}") from None
    p = preset
    rng = np.random.default_rng(seed)
    vocab = splatoon_ability_vocab()
    wvocab = weapon_vocab(range(0, 10 * _N_WEAPONS, 10))
    weapons = wvocab.tokens
    weapon_classes = [
        weapons[i : i + _WEAPON_CLASS_SIZE] for i in range(0, _N_WEAPONS, _WEAPON_CLASS_SIZE)
    ]
    ability_comps = _ability_components()

    # ---- structure (canonical ids; shuffled at the end) ----
    n_dead_f = round(p.frac_full_dead * p.n_full)
    n_only_f = round(p.frac_full_only * p.n_full)
    n_equiv = round(p.frac_full_equivalent * p.n_full)
    n_split = p.n_full - n_dead_f - n_only_f - n_equiv
    full_class = ["split"] * n_split + ["equivalent"] * n_equiv + ["full_only"] * n_only_f + ["dead"] * n_dead_f
    n_novel = round(p.frac_ultra_novel * p.n_ultra)
    n_dead_u = round(p.frac_ultra_dead * p.n_ultra)
    n_children = p.n_ultra - n_equiv - n_novel - n_dead_u
    if n_children < 2 * n_split:
        raise ValueError(f"preset {p.name!r} leaves {n_children} Ultra children for {n_split} split parents")
    # Children per split parent: at least 2, the rest spread unevenly (some parents split a lot).
    extra = rng.multinomial(n_children - 2 * n_split, rng.dirichlet(np.full(n_split, 1.5)))
    n_kids = 2 + extra
    ultra_parent_c = np.concatenate(
        [np.repeat(np.arange(n_split), n_kids), np.arange(n_split, n_split + n_equiv), np.full(n_novel + n_dead_u, -1)]
    )
    ultra_class = ["child"] * n_children + ["equivalent"] * n_equiv + ["novel"] * n_novel + ["dead"] * n_dead_u
    kid_start = np.concatenate([[0], np.cumsum(n_kids)])

    full_theme = [
        _make_theme(rng, ability_comps, weapon_classes) if c != "dead" else [] for c in full_class
    ]
    ultra_theme: list[list[list[str]]] = []
    for u in range(p.n_ultra):
        c = ultra_class[u]
        if c == "child":
            ultra_theme.append(_narrow(rng, full_theme[ultra_parent_c[u]], ability_comps, weapons))
        elif c == "equivalent":
            ultra_theme.append(full_theme[ultra_parent_c[u]])
        elif c == "novel":
            ultra_theme.append(_make_theme(rng, ability_comps, weapon_classes))
        else:
            ultra_theme.append([])

    # ---- directions ----
    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    d = p.d_model
    dir_full = unit(rng.standard_normal((p.n_full, d))).astype(np.float32)
    private = unit(rng.standard_normal((p.n_ultra, d))).astype(np.float32)
    dir_ultra = private.copy()
    has_parent = ultra_parent_c >= 0
    spread = np.where(np.array(ultra_class) == "equivalent", 0.15, p.child_spread).astype(np.float32)
    dir_ultra[has_parent] = unit(
        dir_full[ultra_parent_c[has_parent]] + spread[has_parent, None] * private[has_parent]
    )
    bias = (0.5 * unit(rng.standard_normal(d))).astype(np.float32)

    # ---- events: which concepts fire in which example, how strongly ----
    n = p.n_examples
    live_full = np.flatnonzero(np.array(full_class) != "dead")
    rates = rng.lognormal(0.0, 0.8, size=len(live_full))
    rates *= p.parents_per_example / rates.sum()
    rates = np.minimum(rates, 0.5)
    rows_f, cols_f = _sample_events(rng, n, live_full, rates)
    mag_f = rng.lognormal(0.4, p.magnitude_sigma, size=len(rows_f)).astype(np.float32)

    novel_ids = np.flatnonzero(np.array(ultra_class) == "novel")
    nrates = rng.lognormal(0.0, 0.8, size=len(novel_ids))
    nrates *= p.novel_per_example / nrates.sum()
    rows_n, cols_n = _sample_events(rng, n, novel_ids, np.minimum(nrates, 0.5))
    mag_n = rng.lognormal(0.4, p.magnitude_sigma, size=len(rows_n)).astype(np.float32)

    # Resolve Full events into Ultra-level activity.
    cls_arr = np.array(full_class)
    ev_cls = cls_arr[cols_f]
    kid_pref = rng.gamma(2.0, 1.0, size=n_children).astype(np.float64)
    u_rows, u_cols, u_vals = [], [], []
    split_ev = np.flatnonzero(ev_cls == "split")
    if len(split_ev):
        parents = cols_f[split_ev]
        # Main child: chosen with per-child preference, by inverse CDF within the parent's block.
        cum = np.cumsum(kid_pref)
        lo_c = np.where(kid_start[parents] > 0, cum[np.maximum(kid_start[parents] - 1, 0)], 0.0)
        hi_c = cum[kid_start[parents + 1] - 1]
        draw = lo_c + rng.random(len(split_ev)) * (hi_c - lo_c)
        main = np.searchsorted(cum, draw, side="right")
        main = np.clip(main, kid_start[parents], kid_start[parents + 1] - 1)
        u_rows.append(rows_f[split_ev])
        u_cols.append(main)
        u_vals.append(mag_f[split_ev])
        # Weakly co-firing siblings.
        counts = n_kids[parents]
        ev_rep = np.repeat(np.arange(len(split_ev)), counts)
        block_start = np.repeat(np.cumsum(counts) - counts, counts)
        sib = kid_start[parents][ev_rep] + (np.arange(len(ev_rep)) - block_start)
        keep = (sib != main[ev_rep]) & (rng.random(len(sib)) < p.sibling_rate)
        u_rows.append(rows_f[split_ev][ev_rep[keep]])
        u_cols.append(sib[keep])
        u_vals.append(mag_f[split_ev][ev_rep[keep]] * rng.uniform(0.1, 0.35, keep.sum()).astype(np.float32))
        # One entry per (event, sibling): ~1 GB of int64 at real scale, not needed past here.
        del counts, ev_rep, block_start, sib, keep
    eq_ev = np.flatnonzero(ev_cls == "equivalent")
    if len(eq_ev):
        eq_unit = n_children + (cols_f[eq_ev] - n_split)
        u_rows.append(rows_f[eq_ev])
        u_cols.append(eq_unit)
        u_vals.append(mag_f[eq_ev])
    u_rows.append(rows_n)
    u_cols.append(cols_n)
    u_vals.append(mag_n)
    ultra_act = sp.csr_matrix(
        (np.concatenate(u_vals), (np.concatenate(u_rows), np.concatenate(u_cols))), shape=(n, p.n_ultra)
    )
    only_ev = np.flatnonzero(ev_cls == "full_only")
    full_only_act = sp.csr_matrix(
        (mag_f[only_ev], (rows_f[only_ev], cols_f[only_ev])), shape=(n, p.n_full)
    )

    # ---- hidden states ----
    x = np.asarray(ultra_act @ dir_ultra, dtype=np.float32)
    x += np.asarray(full_only_act @ dir_full, dtype=np.float32)
    x += p.noise * rng.standard_normal(x.shape).astype(np.float32)
    x += bias

    # ---- SAEs ----
    full_enc = dir_full.T.copy()  # (d_model, n_full) matched filters
    ultra_enc = dir_ultra.copy()
    # A child's filter is part parent, part private direction (orthogonal to the parent): it
    # answers its parent's events weakly and its own strongly, as split features do.
    kids = np.flatnonzero(np.array(ultra_class) == "child")
    par = dir_full[ultra_parent_c[kids]]
    priv = dir_ultra[kids] - (dir_ultra[kids] * par).sum(1, keepdims=True) * par
    priv /= np.linalg.norm(priv, axis=1, keepdims=True)
    ultra_enc[kids] = p.child_filter_parent * par + priv
    ultra_enc = ultra_enc.T.copy()
    dead_f = cls_arr == "dead"
    dead_u = np.array(ultra_class) == "dead"
    b_full = _threshold_bias(x, bias, full_enc, p.target_l0_full, dead_f)
    b_ultra = _threshold_bias(x, bias, ultra_enc, p.target_l0_ultra, dead_u)
    full_enc, b_full = _fit_scale(x, bias, full_enc, b_full, dir_full)
    ultra_enc, b_ultra = _fit_scale(x, bias, ultra_enc, b_ultra, dir_ultra)

    # ---- builds ----
    # Each example's build is written by the features that answer it most strongly, each
    # relative to its own typical strength (so a feature's top-activating examples carry its
    # theme): the Ultra features, plus the full-only Full features Ultra lacks.
    only_ids = np.flatnonzero(cls_arr == "full_only")
    emit_src, emit_ok = _strongest_features(
        x, bias, (ultra_enc, b_ultra), (full_enc[:, only_ids], b_full[only_ids]), only_ids, p.emitting_events
    )
    examples = _make_builds(rng, p, n, emit_src, emit_ok, full_theme, ultra_theme, vocab, wvocab)

    if p.saes == "trained":
        concepts = sp.hstack(
            [sp.csr_matrix((mag_f, (rows_f, cols_f)), shape=(n, p.n_full)), ultra_act], format="csr"
        )
        concept_parent = np.concatenate(
            [np.full(p.n_full, -1), np.where(np.array(ultra_class) == "child", ultra_parent_c, -1)]
        ).astype(np.int64)
        themes = full_theme + ultra_theme
        return _trained_world(p, seed, x, examples, concepts, concept_parent, themes)

    # ---- shuffle feature ids ----
    perm_f = rng.permutation(p.n_full)  # canonical -> shuffled id
    perm_u = rng.permutation(p.n_ultra)
    if not shuffle:
        perm_f, perm_u = np.arange(p.n_full), np.arange(p.n_ultra)
    inv_f = np.argsort(perm_f)
    inv_u = np.argsort(perm_u)
    full_sae = splatnlp_sae(
        torch.from_numpy(full_enc[:, inv_f]),
        torch.from_numpy(b_full[inv_f]),
        torch.from_numpy(dir_full[inv_f]),
        torch.from_numpy(bias),
    )
    ultra_sae = splatnlp_sae(
        torch.from_numpy(ultra_enc[:, inv_u]),
        torch.from_numpy(b_ultra[inv_u]),
        torch.from_numpy(dir_ultra[inv_u]),
        torch.from_numpy(bias),
    )
    truth = GroundTruth(
        seed=seed,
        preset=p.name,
        full_class=[full_class[c] for c in inv_f],
        ultra_class=[ultra_class[c] for c in inv_u],
        ultra_parent=[
            int(perm_f[ultra_parent_c[c]]) if ultra_parent_c[c] >= 0 else None for c in inv_u
        ],
        full_theme=[sorted({t for comp in full_theme[c] for t in comp}) for c in inv_f],
        ultra_theme=[sorted({t for comp in ultra_theme[c] for t in comp}) for c in inv_u],
    )
    return DemoWorld(examples=examples, activations=x, full_sae=full_sae, ultra_sae=ultra_sae, truth=truth)


def _trained_world(
    p: DemoPreset,
    seed: int,
    x: np.ndarray,
    examples: ExampleSet,
    concepts: sp.csr_matrix,
    concept_parent: np.ndarray,
    themes: list,
) -> DemoWorld:
    """Train both SAEs on ``x`` and read the ground truth off which concept each latent tracks.

    ``concepts`` (n_examples, n_full + n_ultra) holds every planted concept's activity: Full
    concepts first (a split parent is active on each of its children's events), then Ultra
    concepts; ``concept_parent`` gives a child concept's parent (-1 otherwise). An Ultra
    equivalent's activity is its Full concept's, so ties send latents to the Full concept.
    """
    from splatnlp.mechinterp.demo import truth as T
    from splatnlp.mechinterp.demo.train import TrainOptions, train_splatnlp_sae

    saes, codes, training = {}, {}, {}
    for i, (name, width, l0) in enumerate(
        (("full", p.n_full, p.target_l0_full), ("ultra", p.n_ultra, p.target_l0_ultra))
    ):
        sae, summary = train_splatnlp_sae(x, width, l0, TrainOptions(steps=p.train_steps, seed=seed * 2 + i))
        saes[name], training[name] = sae, summary.to_dict()
        with torch.no_grad():
            codes[name] = np.concatenate(
                [sae.encode(torch.from_numpy(x[s : s + 4096])).numpy() for s in range(0, len(x), 4096)]
            )
    full_t, ultra_t = T.best_features(codes["full"], concepts), T.best_features(codes["ultra"], concepts)
    rel = T.expected_relations(full_t, ultra_t, concept_parent)
    equivalent = {tuple(pair) for pair in rel["equivalent_pairs"]}
    n_children = np.array([len(c) for c in rel["expected_split"]])
    full_class = []
    for f in range(p.n_full):
        if full_t.dead[f]:
            full_class.append("dead")
        elif not full_t.tracks[f]:
            full_class.append("untracked")
        elif n_children[f] >= 2:
            full_class.append("split")
        elif n_children[f] == 1:
            full_class.append("equivalent" if (f, rel["expected_split"][f][0]) in equivalent else "partial")
        else:
            full_class.append("full_only")
    eq_ultra = {u for _, u in equivalent}
    ultra_class = [
        "equivalent" if u in eq_ultra else ("child" if c == "child" else c)
        for u, c in enumerate(rel["category"])
    ]

    def theme_of(t: T.LatentTruth, latent: int) -> list[str]:
        c = int(t.best_feature[latent])
        return sorted({tok for comp in themes[c] for tok in comp}) if t.tracks[latent] else []

    parents = rel["expected_parents"]
    truth = GroundTruth(
        seed=seed,
        preset=p.name,
        full_class=full_class,
        ultra_class=ultra_class,
        ultra_parent=[ps[0] if ps else None for ps in parents],
        full_theme=[theme_of(full_t, f) for f in range(p.n_full)],
        ultra_theme=[theme_of(ultra_t, u) for u in range(p.n_ultra)],
        ultra_parents=[list(ps) if ps else [] for ps in parents],
        same_feature_pairs=[[int(f), int(u)] for f, u in rel["same_feature_pairs"]],
        saes="trained",
        training=training,
    )
    return DemoWorld(examples=examples, activations=x, full_sae=saes["full"], ultra_sae=saes["ultra"], truth=truth)


def _sample_events(
    rng: np.random.Generator, n: int, ids: np.ndarray, rates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bernoulli(rate) activity of each id in each of n examples, as (rows, ids) pairs."""
    counts = rng.binomial(n, rates)
    rows = np.concatenate([rng.choice(n, size=c, replace=False) for c in counts]) if len(ids) else np.zeros(0, int)
    cols = np.repeat(ids, counts)
    return rows.astype(np.int64), cols.astype(np.int64)


def _threshold_bias(
    x: np.ndarray, b_dec: np.ndarray, W_enc: np.ndarray, target_l0: float, dead: np.ndarray
) -> np.ndarray:
    """One encoder bias for all live features so that, on a sample, ``target_l0`` are active per
    example on average; dead features get a bias no input reaches."""
    sample = x[: min(len(x), 2048)] - b_dec
    pre = torch.from_numpy(sample) @ torch.from_numpy(W_enc[:, ~dead])
    n_live = int((~dead).sum())
    q = 1.0 - min(target_l0 / n_live, 1.0)
    flat = pre.flatten().numpy()
    # A fixed-stride subset of 4M values pins the quantile well enough, and partition is O(n).
    flat = flat[:: max(1, flat.size // 4_000_000)]
    k = min(int(q * flat.size), flat.size - 1)
    theta = float(np.partition(flat, k)[k])
    bias = np.full(W_enc.shape[1], -theta, dtype=np.float32)
    bias[dead] = -1e4
    return bias


def _fit_scale(
    x: np.ndarray, b_dec: np.ndarray, W_enc: np.ndarray, b_enc: np.ndarray, W_dec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rescale encoder weights and bias by the least-squares factor that best reconstructs a
    sample: matched filters over-count when many related features fire together. ReLU commutes
    with a positive scale, so which features fire does not change."""
    sample = torch.from_numpy(x[: min(len(x), 2048)] - b_dec)
    pre = sample @ torch.from_numpy(W_enc) + torch.from_numpy(b_enc)
    recon = torch.relu(pre) @ torch.from_numpy(W_dec)
    denom = float((recon * recon).sum())
    alpha = float((recon * sample).sum()) / denom if denom > 0 else 1.0
    alpha = max(alpha, 1e-3)
    return (W_enc * alpha).astype(np.float32), (b_enc * alpha).astype(np.float32)


def _strongest_features(
    x: np.ndarray,
    b_dec: np.ndarray,
    ultra: tuple[np.ndarray, np.ndarray],
    full_only: tuple[np.ndarray, np.ndarray],
    full_only_ids: np.ndarray,
    r: int,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Per example, the ``r`` features with the largest code relative to their own 99.5th
    percentile (on a sample). Returns sources (n, r): an Ultra id >= 0, or ``-1 - full_id`` for a
    full-only Full feature, and a mask of which entries are real (code > 0)."""
    W = torch.from_numpy(np.concatenate([ultra[0], full_only[0]], axis=1))
    b = torch.from_numpy(np.concatenate([ultra[1], full_only[1]]))
    src = np.concatenate([np.arange(ultra[0].shape[1]), -1 - full_only_ids])
    xt = torch.from_numpy(x - b_dec)
    sample = torch.relu(xt[: min(len(x), 4096)] @ W + b)
    if len(sample) > 1:
        # Blocks of features, each a contiguous row block of the transpose: torch.quantile sorts
        # a copy of its input with int64 indices, ~1.8 GB for the whole (4,096, 26,000) sample at
        # real scale; per feature the answer is the same (measured equal, and 6.4 -> 3.1 s).
        per_feature = sample.T.contiguous()
        scale = torch.cat([torch.quantile(per_feature[c : c + 2048], 0.995, dim=1) for c in range(0, len(per_feature), 2048)])
        del per_feature
    else:
        scale = sample.max(0).values
    scale = torch.where(scale > 0, scale, torch.full_like(scale, float("inf")))
    out_src = np.zeros((len(x), r), dtype=np.int64)
    out_ok = np.zeros((len(x), r), dtype=bool)
    for start in range(0, len(x), chunk):
        z = torch.relu(xt[start : start + chunk] @ W + b) / scale
        val, idx = torch.topk(z, r, dim=1)
        out_src[start : start + chunk] = src[idx.numpy()]
        out_ok[start : start + chunk] = (val > 0).numpy()
    return out_src, out_ok


def _make_builds(
    rng: np.random.Generator,
    p: DemoPreset,
    n: int,
    emit_src: np.ndarray,
    emit_ok: np.ndarray,
    full_theme: list,
    ultra_theme: list,
    vocab: Vocab,
    wvocab: Vocab,
) -> ExampleSet:
    """Builds whose first tokens come from each example's emitting features (``emit_src``, see
    :func:`_strongest_features`), filled up with popular abilities."""
    # Popular abilities fill builds, like swim speed and ink saver in real play.
    fill_tokens = [t for t in vocab.tokens if not t.startswith("<")]
    fill_ability = [t.rsplit("_", 1)[0] if t.rsplit("_", 1)[-1].isdigit() else t for t in fill_tokens]
    pop = rng.lognormal(0, 1.0, size=len(fill_tokens))
    pop /= pop.sum()
    weapon_pop = rng.zipf(1.6, size=len(wvocab)).astype(float)
    weapon_pop /= weapon_pop.sum()
    n_fill_target = rng.integers(4, 10, size=n)
    fill_draws = rng.choice(len(fill_tokens), size=(n, 16), p=pop)
    fallback_weapon = rng.choice(len(wvocab), size=n, p=weapon_pop)
    emit_coin = rng.random((n, p.emitting_events, 4))
    pick = rng.random((n, p.emitting_events, 4))
    weapon_tokens = np.empty(n, dtype=np.int32)
    indptr = [0]
    tokens: list[int] = []
    weapon_set = set(wvocab.tokens)
    for i in range(n):
        abilities: dict[str, int] = {}
        weapon = None
        for e in range(emit_src.shape[1]):
            if not emit_ok[i, e]:
                continue
            src = emit_src[i, e]
            theme = ultra_theme[src] if src >= 0 else full_theme[-1 - src]
            for c, comp in enumerate(theme[:4]):
                if emit_coin[i, e, c] > 0.9:
                    continue
                token = comp[int(pick[i, e, c] * len(comp))]
                if token in weapon_set:
                    weapon = weapon or token
                else:
                    ability = token.rsplit("_", 1)[0] if token.rsplit("_", 1)[-1].isdigit() else token
                    abilities.setdefault(ability, vocab.id(token))
        for j in fill_draws[i]:
            if len(abilities) >= n_fill_target[i]:
                break
            abilities.setdefault(fill_ability[j], vocab.id(fill_tokens[j]))
        weapon_tokens[i] = wvocab.id(weapon) if weapon else fallback_weapon[i]
        tokens.extend(abilities.values())
        indptr.append(len(tokens))
    return ExampleSet(
        example_ids=np.arange(n, dtype=np.int64),
        weapon_tokens=weapon_tokens,
        ability_indptr=np.asarray(indptr, dtype=np.int64),
        ability_tokens=np.asarray(tokens, dtype=np.int32),
        vocab=vocab,
        weapon_vocab=wvocab,
    )


__all__ = ["PRESETS", "DemoPreset", "DemoWorld", "GroundTruth", "generate_world"]
