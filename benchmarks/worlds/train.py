"""Train a world's SAEs with SAELens's own trainer and save them in SAELens's format.

Training batches are drawn (with replacement) from a pool sampled once per world and shared by
both SAEs: on this 2-core machine SAELens's hierarchy modifier costs about as much per batch as
the SAE step itself, so sampling once halves a world's build time. Everything else is SAELens:
its ``TrainingSAE`` classes, ``SAETrainer`` (Adam, TopK auxiliary loss, dead-latent tracking,
L1 warm-up) and ``save_inference_model`` (``cfg.json`` + ``sae_weights.safetensors``, decoder
norms folded for TopK, BatchTopK saved as JumpReLU).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sae_lens import (
    SAE,
    BatchTopKTrainingSAE,
    BatchTopKTrainingSAEConfig,
    StandardTrainingSAE,
    StandardTrainingSAEConfig,
    TopKTrainingSAE,
    TopKTrainingSAEConfig,
)
from sae_lens.config import LoggingConfig, SAETrainerConfig
from sae_lens.training.sae_trainer import SAETrainer

from benchmarks.worlds.registry import SAESpec

__all__ = ["PoolIterator", "SAEMetrics", "encode", "make_sae", "sae_metrics", "train_sae"]


class PoolIterator(Iterator[torch.Tensor]):
    """Endless random batches (with replacement) from a fixed pool of activations.

    Parameters
    ----------
    pool : float32 tensor of shape (n_pool, d_in)
    batch_size : int
    seed : int
    """

    def __init__(self, pool: torch.Tensor, batch_size: int, *, seed: int):
        if pool.ndim != 2 or pool.shape[0] < batch_size:
            raise ValueError(
                f"pool must be 2-D with at least batch_size={batch_size} rows, got {tuple(pool.shape)}"
            )
        self.pool = pool
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> PoolIterator:
        return self

    def __next__(self) -> torch.Tensor:
        rows = torch.randint(0, self.pool.shape[0], (self.batch_size,), generator=self.generator)
        return self.pool[rows]


def make_sae(spec: SAESpec, d_in: int, *, seed: int, l1_warm_up_steps: int = 0) -> Any:
    """A freshly initialised SAELens training SAE for ``spec`` (seeded)."""
    torch.manual_seed(seed)
    if spec.architecture == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=spec.d_sae, k=int(spec.k)))
    if spec.architecture == "batchtopk":
        return BatchTopKTrainingSAE(
            BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=spec.d_sae, k=float(spec.k))
        )
    if spec.architecture == "standard":
        return StandardTrainingSAE(
            StandardTrainingSAEConfig(
                d_in=d_in,
                d_sae=spec.d_sae,
                l1_coefficient=float(spec.l1_coefficient),
                l1_warm_up_steps=l1_warm_up_steps,
            )
        )
    raise ValueError(f"unknown architecture {spec.architecture!r}")


def train_sae(
    spec: SAESpec, pool: torch.Tensor, out_dir: str | Path, *, seed: int
) -> tuple[Path, float]:
    """Train one SAE with SAELens's ``SAETrainer`` and save its inference form in ``out_dir``.

    Parameters
    ----------
    spec : SAESpec
    pool : float32 tensor of shape (n_pool, d_in)
        Training batches are drawn from it.
    out_dir : path
        Receives ``cfg.json`` and ``sae_weights.safetensors``.
    seed : int
        Seeds the initialisation and the batch order.

    Returns
    -------
    out_dir : Path
    seconds : float
        Wall time of ``SAETrainer.fit``.
    """
    steps = spec.training_samples // spec.batch_size
    # L1 warm-up over the first 5 % of steps: without it ReLU SAEs lose latents in the first
    # hundred steps of a short run.
    sae = make_sae(
        spec,
        int(pool.shape[1]),
        seed=seed,
        l1_warm_up_steps=steps // 20 if spec.architecture == "standard" else 0,
    )
    cfg = SAETrainerConfig(
        total_training_samples=spec.training_samples,
        train_batch_size_samples=spec.batch_size,
        lr=spec.lr,
        lr_end=spec.lr / 10,
        lr_scheduler_name="constant",
        lr_decay_steps=steps // 5,
        device="cpu",
        # SAELens's default window (1,000 steps of 1,024) is most of a short run.
        dead_feature_window=200,
        feature_sampling_window=500,
        logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(
        cfg=cfg, sae=sae, data_provider=PoolIterator(pool, spec.batch_size, seed=seed)
    )
    start = time.perf_counter()
    # SAELens's progress bar writes a line per update to stderr; keep build logs readable.
    with contextlib.redirect_stderr(io.StringIO()):
        trained = trainer.fit()
    seconds = time.perf_counter() - start
    out_dir = Path(out_dir)
    trained.save_inference_model(str(out_dir))
    return out_dir, seconds


@torch.no_grad()
def encode(
    sae_dir: str | Path, hidden: np.ndarray, *, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Codes and reconstructions of ``hidden`` by the saved SAE, loaded with SAELens itself.

    Returns
    -------
    codes : float32 array of shape (n_examples, d_sae)
    recon : float32 array of shape (n_examples, d_in)
    """
    sae = SAE.load_from_disk(str(sae_dir), device="cpu")
    sae.eval()
    codes, recon = [], []
    for start in range(0, hidden.shape[0], chunk):
        x = torch.from_numpy(hidden[start : start + chunk])
        z = sae.encode(x)
        codes.append(z.numpy())
        recon.append(sae.decode(z).numpy())
    return np.concatenate(codes), np.concatenate(recon)


@dataclass
class SAEMetrics:
    """Quality of one SAE on the world's evaluation set."""

    l0: float
    """Mean active latents per example."""
    fvu: float
    """Fraction of variance unexplained: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2."""
    explained_variance: float
    """1 - fvu."""
    dead_fraction: float
    """Share of latents never active on the evaluation set."""
    n_dead: int
    """Latents never active on the evaluation set."""
    train_seconds: float
    """Wall time of SAELens's ``SAETrainer.fit``."""


def sae_metrics(
    codes: np.ndarray, recon: np.ndarray, hidden: np.ndarray, train_seconds: float
) -> SAEMetrics:
    """L0, FVU and dead latents of codes (n_examples, d_sae) / recon (n_examples, d_in)."""
    active = codes > 0
    # float64 sums: 20,000 x 128 float32 squares lose digits in a float32 accumulator.
    residual = float(((hidden.astype(np.float64) - recon) ** 2).sum())
    total = float(((hidden - hidden.mean(0, dtype=np.float64)) ** 2).sum())
    fvu = residual / total
    n_dead = int((~active.any(0)).sum())
    return SAEMetrics(
        l0=float(active.sum(1).mean()),
        fvu=fvu,
        explained_variance=1.0 - fvu,
        dead_fraction=n_dead / codes.shape[1],
        n_dead=n_dead,
        train_seconds=train_seconds,
    )
