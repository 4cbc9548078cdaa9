"""Train a SplatNLP-architecture SAE on activations: ReLU, codes clamped to 6, unit-norm decoder
rows, and an L1 penalty on the codes tuned during training to a target number of active
features per example.

The demo's ``trained`` presets use it so that their SAEs are learned from the hidden states, as
the real Full and Ultra SAEs were, instead of being matched filters built from the planted
dictionary. Training runs on the CPU in float32 with one seeded generator, so a preset and seed
give the same SAE on one machine (BLAS kernels may differ in the last bits across CPUs).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from splatnlp.mechinterp.context.sae import SAE, splatnlp_sae

__all__ = ["TrainOptions", "TrainSummary", "train_splatnlp_sae"]

CLAMP_MAX = 6.0
"""SplatNLP's upper clamp on codes (``splatnlp_sae``)."""


@dataclass(frozen=True)
class TrainOptions:
    """How :func:`train_splatnlp_sae` trains."""

    steps: int = 2000
    batch_size: int = 512
    lr: float = 3e-3
    l1_init: float = 1e-3
    """Starting L1 coefficient (per unit code, per example); adapted toward ``target_l0``."""
    adapt_every: int = 10
    """Steps between adaptations of the L1 coefficient."""
    adapt_rate: float = 0.2
    """Exponent of the multiplicative update ``l1 *= (L0 / target_l0) ** adapt_rate``: the
    penalty grows while too many features fire and shrinks while too few do. Measured on the
    ``trained`` preset (1,500 steps): lr 3e-3 / rate 0.2 / every 10 reach L0 22.8 and 179 for
    targets 23 and 184 at FVU 0.318 and 0.060; lr 1e-3 / rate 0.5 / every 20 gave FVU 0.352 and
    0.074, and collapsed a 24-latent SAE to L0 0.7."""
    seed: int = 0


@dataclass(frozen=True)
class TrainSummary:
    """What training reached, measured on all the activations with the final SAE."""

    l0: float
    """Mean active features per example."""
    fvu: float
    """Fraction of variance unexplained by the reconstruction."""
    dead: int
    """Features never active on the activations."""
    l1: float
    """The final L1 coefficient."""
    seconds: float

    def to_dict(self) -> dict[str, float | int]:
        return {"l0": self.l0, "fvu": self.fvu, "dead": self.dead, "l1": self.l1, "seconds": self.seconds}


def train_splatnlp_sae(
    x: np.ndarray, n_features: int, target_l0: float, options: TrainOptions | None = None
) -> tuple[SAE, TrainSummary]:
    """Train an SAE with SplatNLP's conventions on ``x``.

    Parameters
    ----------
    x : float array of shape (n_examples, d_model)
    n_features : dictionary size
    target_l0 : active features per example to reach (between 1 and ``n_features``)
    options : :class:`TrainOptions`

    Returns
    -------
    (sae, summary) : the trained :class:`SAE` (``splatnlp_sae``: ReLU, clamp 6, unit-norm
        decoder rows) and a :class:`TrainSummary` over all of ``x``
    """
    opt = options or TrainOptions()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must have shape (n_examples >= 2, d_model), got {x.shape}")
    if not 1 <= target_l0 <= n_features:
        raise ValueError(f"target_l0 must be between 1 and n_features={n_features}, got {target_l0}")
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(opt.seed)
    data = torch.from_numpy(x)
    n, d = data.shape
    # Decoder rows start as random unit directions and the encoder as their transpose (the usual
    # tied start); b_dec starts at the mean so the codes first explain deviations from it.
    w_dec = torch.randn(n_features, d, generator=gen)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    scale = float(data.sub(data.mean(0)).norm(dim=1).mean())
    params = {
        "W_enc": (w_dec.T.clone() / max(scale, 1e-6)).requires_grad_(),
        "b_enc": torch.zeros(n_features, requires_grad=True),
        "W_dec": w_dec.clone().requires_grad_(),
        "b_dec": data.mean(0).clone().requires_grad_(),
    }
    optim = torch.optim.Adam(params.values(), lr=opt.lr)
    l1 = opt.l1_init
    l0_sum, seen = 0.0, 0
    for step in range(opt.steps):
        idx = torch.randint(0, n, (min(opt.batch_size, n),), generator=gen)
        batch = data[idx]
        codes, recon = _forward(params, batch)
        mse = (recon - batch).pow(2).sum(1).mean()
        loss = mse + l1 * codes.sum(1).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        l0_sum += float((codes > 0).sum(1).float().mean())
        seen += 1
        if (step + 1) % opt.adapt_every == 0:
            l0 = l0_sum / seen
            l1 *= (max(l0, 0.5) / target_l0) ** opt.adapt_rate
            l0_sum, seen = 0.0, 0
    with torch.no_grad():
        sae = splatnlp_sae(
            params["W_enc"].detach().clone(),
            params["b_enc"].detach().clone(),
            params["W_dec"].detach().clone(),
            params["b_dec"].detach().clone(),
        )
        active = torch.zeros(n_features, dtype=torch.bool)
        l0_total, sse, sst = 0.0, 0.0, 0.0
        mean = data.mean(0)
        for start in range(0, n, 4096):
            chunk = data[start : start + 4096]
            codes = sae.encode(chunk)
            active |= (codes > 0).any(0)
            l0_total += float((codes > 0).sum())
            sse += float((sae.decode(codes) - chunk).pow(2).sum())
            sst += float((chunk - mean).pow(2).sum())
    summary = TrainSummary(
        l0=l0_total / n,
        fvu=sse / sst if sst > 0 else math.nan,
        dead=int((~active).sum()),
        l1=l1,
        seconds=time.perf_counter() - t0,
    )
    return sae, summary


def _forward(params: dict[str, torch.Tensor], batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes and reconstruction, exactly as :class:`SAE` with SplatNLP's conventions computes
    them (the clamp passes no gradient above 6, as in SplatNLP's training)."""
    pre = (batch - params["b_dec"]) @ params["W_enc"] + params["b_enc"]
    codes = torch.relu(pre).clamp(max=CLAMP_MAX)
    unit = params["W_dec"] / params["W_dec"].norm(dim=1, keepdim=True).clamp_min(1e-8)
    return codes, codes @ unit + params["b_dec"]
