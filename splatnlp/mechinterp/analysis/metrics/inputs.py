"""Validation of code matrices given by users: numpy, scipy sparse or torch (dense or sparse).

Shared by FeatureMatch's ``align_features`` and ``linear_cka``, so that both accept and refuse the
same inputs with the same messages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["check_int", "validated_codes"]

_SPARSE_LAYOUTS = (
    torch.sparse_coo,
    torch.sparse_csr,
    torch.sparse_csc,
    torch.sparse_bsr,
    torch.sparse_bsc,
)


def validated_codes(Z: Any, name: str) -> tuple[np.ndarray | torch.Tensor | None, Any]:
    """Check one code matrix's type, rank and dtype: returns ``(dense, None)`` for a numpy array or
    strided tensor, ``(None, sparse)`` for a scipy sparse matrix (as given) or a torch sparse
    tensor (as a float64 scipy COO array). """
    if isinstance(Z, torch.Tensor):
        if Z.dim() != 2:
            raise ValueError(
                f"{name} must be 2-D (n_examples, n_features), got shape {tuple(Z.shape)}"
            )
        if Z.dtype.is_complex:
            raise TypeError(
                f"{name} has complex dtype {Z.dtype}; expected real (float, int or bool)"
            )
        if Z.layout == torch.strided:
            return Z, None
        if Z.layout not in _SPARSE_LAYOUTS:
            raise TypeError(f"{name} has unsupported layout {Z.layout}")
        coo = Z.detach().to_sparse_coo().coalesce()
        if coo.dense_dim() != 0:
            raise ValueError(
                f"{name} is a hybrid sparse tensor (dense_dim={coo.dense_dim()}); expected a "
                f"plain 2-D sparse tensor"
            )
        rows, cols = coo.indices().cpu().numpy()
        values = coo.values().detach().cpu().to(torch.float64).numpy()
        return None, sp.coo_array((values, (rows, cols)), shape=tuple(Z.shape))
    if sp.issparse(Z):
        if Z.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_examples, n_features), got shape {Z.shape}")
        _check_numpy_dtype(Z.dtype, name)
        return None, Z
    if isinstance(Z, np.ndarray):
        Z = np.asarray(Z)  # np.matrix -> ndarray view
        if Z.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_examples, n_features), got shape {Z.shape}")
        _check_numpy_dtype(Z.dtype, name)
        return Z, None
    raise TypeError(
        f"{name} must be a torch tensor, a numpy array or a scipy sparse matrix, got "
        f"{type(Z).__name__}"
    )


def _check_numpy_dtype(dtype: np.dtype, name: str) -> None:
    """Real numeric dtypes (bool, int, uint, float) only."""
    if dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {dtype}; expected real numbers (float, int or bool)")


def check_int(value: Any, name: str) -> int:
    """An int (numpy integers included, bool excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)
