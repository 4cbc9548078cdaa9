"""A world's true features, from SAELens's synthetic module: the model and the samples.

The true features are a SAELens ``SyntheticModel``: unit feature directions in ``d_in``
(``FeatureDictionary``), Zipf base firing probabilities by feature index, folded magnitudes
``relu(N(1, magnitude_std))``, and a hierarchy forest (``generate_hierarchy``) whose children
fire only when their parent fires and are mutually exclusive (every parent's children). The
hierarchy takes the first feature indices breadth-first, so roots get the highest Zipf
probabilities and children are rarer than their parents; SAELens's probability compensation is
on, so a child's firing rate is close to its own Zipf probability. Features the forest does not
use fire independently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from sae_lens.synthetic import (
    HierarchyConfig,
    SyntheticModel,
    SyntheticModelConfig,
    ZipfianFiringProbabilityConfig,
)

from benchmarks.worlds.registry import WorldSpec

__all__ = ["Forest", "forest_of", "make_model", "sample"]


def make_model(spec: WorldSpec) -> tuple[SyntheticModel, list[str]]:
    """The world's SAELens ``SyntheticModel`` and the warnings SAELens logged building it.

    Returns
    -------
    model : SyntheticModel
    warnings : list of str
        E.g. how many features SAELens's hierarchy compensation clamped at probability 1.
    """
    cfg = SyntheticModelConfig(
        num_features=spec.n_true,
        hidden_dim=spec.d_in,
        firing_probability=ZipfianFiringProbabilityConfig(
            exponent=spec.zipf_exponent, max_prob=spec.max_prob, min_prob=spec.min_prob
        ),
        hierarchy=HierarchyConfig(
            total_root_nodes=spec.n_roots,
            branching_factor=spec.branching,
            max_depth=spec.depth,
            mutually_exclusive_portion=1.0,
            compensate_probabilities=True,
        ),
        mean_firing_magnitudes=1.0,
        std_firing_magnitudes=spec.magnitude_std,
        # No feature-dictionary bias: the SAEs' b_dec would learn it; it adds nothing here.
        bias=False,
        seed=spec.seed,
    )
    captured: list[str] = []

    class _Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record.getMessage())

    handler = _Capture(level=logging.WARNING)
    sae_logger = logging.getLogger("sae_lens.synthetic.synthetic_model")
    sae_logger.addHandler(handler)
    try:
        model = SyntheticModel(cfg)
    finally:
        sae_logger.removeHandler(handler)
    return model, captured


@torch.no_grad()
def sample(
    model: SyntheticModel, n: int, *, seed: int, chunk: int = 8192
) -> tuple[np.ndarray, sp.csr_matrix]:
    """Draw ``n`` examples: hidden activations and the true feature activations behind them.

    Returns
    -------
    hidden : float32 array of shape (n, d_in)
    features : float32 CSR matrix of shape (n, n_true)
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    # SAELens's ActivationGenerator draws from torch's global generator.
    torch.manual_seed(seed)
    hidden, features = [], []
    for start in range(0, n, chunk):
        h, f = model.sample_with_features(min(chunk, n - start))
        hidden.append(h.float().numpy())
        features.append(sp.csr_matrix(f.float().numpy()))
    return np.ascontiguousarray(np.concatenate(hidden), dtype=np.float32), sp.vstack(
        features, format="csr"
    ).astype(np.float32)


@dataclass
class Forest:
    """The hierarchy as arrays over true features."""

    parent: np.ndarray
    """int64 (n_true,): the parent feature, -1 for roots and features outside the forest."""
    depth: np.ndarray
    """int64 (n_true,): 0 for roots, 1 for their children, ...; -1 outside the forest."""
    mutually_exclusive: np.ndarray
    """bool (n_true,): the feature's children are mutually exclusive."""

    def ancestors(self, feature: int) -> list[int]:
        """``feature`` itself first, then its parent, ... up to the root."""
        chain = [int(feature)]
        while self.parent[chain[-1]] >= 0:
            chain.append(int(self.parent[chain[-1]]))
        return chain

    def children(self, feature: int) -> list[int]:
        """Direct children of ``feature``."""
        return np.flatnonzero(self.parent == feature).tolist()


def forest_of(model: SyntheticModel) -> Forest:
    """The model's hierarchy as :class:`Forest` arrays."""
    n = model.cfg.num_features
    parent = np.full(n, -1, dtype=np.int64)
    depth = np.full(n, -1, dtype=np.int64)
    exclusive = np.zeros(n, dtype=bool)
    stack = [(root, -1, 0) for root in (model.hierarchy.roots if model.hierarchy else [])]
    while stack:
        node, up, d = stack.pop()
        if node.feature_index is None:
            raise ValueError(
                "organisational hierarchy nodes (feature_index None) are not used here"
            )
        parent[node.feature_index] = up
        depth[node.feature_index] = d
        exclusive[node.feature_index] = bool(node.mutually_exclusive_children)
        stack.extend((child, node.feature_index, d + 1) for child in node.children)
    return Forest(parent=parent, depth=depth, mutually_exclusive=exclusive)
