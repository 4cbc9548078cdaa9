"""Streamed all-pairs products of two code matrices over their shared examples, and devices.

``pair_sums_streamed`` walks both CSR matrices in row chunks and accumulates, for every pair of
features ``(i, j)``, ``dot[i, j] = sum_n a_ni b_nj`` and (optionally) ``coactive[i, j] = #{n : a_ni >
0 and b_nj > 0}``. On the CPU the default kernel is the compiled sparse x sparse one
(:mod:`~splatnlp.mechinterp.analysis.metrics.kernels`, numba: only co-active pairs, float64
products and sums); without numba, and for ``product="torch"`` / ``"scipy"``, per chunk the side
with more features stays sparse and the other is densified, products run in float32 and are
summed into float64. Whole-dictionary alignment
(``alignment.py``) and FeatureMatch's ``align_features`` on sparse codes (``align.py``) share it.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from splatnlp.mechinterp.analysis.metrics import kernels

__all__ = ["PRODUCTS", "pair_sums_streamed", "resolve_device", "resolve_product"]

PRODUCTS: tuple[str, ...] = ("auto", "numba", "torch", "scipy")
"""CPU kernels of the pass: "auto" is "numba" when numba is installed, else "torch"."""


def resolve_product(product: str) -> str:
    """The CPU kernel ``product`` names ("auto" resolved); ValueError for an unknown one or
    "numba" without numba."""
    if product not in PRODUCTS:
        raise ValueError(f"product {product!r} is unknown; expected one of {list(PRODUCTS)}")
    if product == "auto":
        return "numba" if kernels.AVAILABLE else "torch"
    if product == "numba" and not kernels.AVAILABLE:
        raise ValueError("product 'numba' needs numba installed (pip install numba); use 'auto' or 'torch'")
    return product


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> CUDA when available else CPU; CPU or an available CUDA device otherwise."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:<index>' or a "
            f"torch.device"
        ) from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; expected 'auto', 'cpu' or 'cuda'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} was requested but CUDA is not available; use 'auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} does not exist; {torch.cuda.device_count()} CUDA device(s)"
            )
    return dev


def _torch_csr(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    """A canonical scipy CSR matrix as a float32 torch CSR tensor on ``device``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(np.ascontiguousarray(matrix.data, dtype=np.float32)),
            size=matrix.shape,
            check_invariants=False,  # built from a canonical scipy CSR
        ).to(device)


def _sparse_t_dense(sparse: sp.csr_matrix, dense: np.ndarray, product: str) -> np.ndarray:
    """``sparse.T @ dense`` of a (rows, K_s) CSR chunk and a (rows, m) array -> (K_s, m)."""
    if product == "scipy":
        return np.asarray(sparse.T @ dense)
    tensor = _torch_csr(sparse.T.tocsr(), torch.device("cpu"))
    return torch.sparse.mm(tensor, torch.from_numpy(dense)).numpy()


def pair_sums_streamed(
    a_csr: sp.csr_matrix,
    b_csr: sp.csr_matrix,
    *,
    chunk_size: int = 2048,
    product: Literal["auto", "numba", "torch", "scipy"] = "auto",
    device: str | torch.device = "cpu",
    progress: bool = False,
    coactive: bool = True,
    coactive_dtype: type | np.dtype = np.float64,
) -> tuple[np.ndarray, np.ndarray | None]:
    """All-pairs ``dot`` and ``coactive`` over the examples, streamed in row chunks.

    Parameters
    ----------
    a_csr : sparse matrix of shape (n_examples, K_a), CSR, no explicit zeros
    b_csr : sparse matrix of shape (n_examples, K_b), CSR, same rows
    chunk_size : rows per chunk (>= 1)
    product : the CPU kernel (:data:`PRODUCTS`; "auto": the compiled one when numba is installed);
        ignored on CUDA, where torch runs
    device : "cpu", "cuda", "cuda:<index>" or "auto"; on CUDA both accumulators live on the
        device (float64, 2 x K_a x K_b x 8 bytes) and come back once at the end
    progress : show a progress bar over the examples on stderr
    coactive : also count co-activations (False: ``dot`` only, half the work; coactive is None)
    coactive_dtype : dtype of the returned counts: float64 (default), or uint32 / int64 (exact
        integers; the compiled kernel then counts in it directly: uint32 halves the accumulator)

    Returns (dot, coactive): dot float64 of shape (K_a, K_b), coactive of the same shape in
    ``coactive_dtype``, holding integers.
    """
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if a_csr.shape[0] != b_csr.shape[0]:
        raise ValueError(
            f"a has {a_csr.shape[0]} rows and b has {b_csr.shape[0]}; expected the same examples"
        )
    dev = resolve_device(device)
    kernel = resolve_product(product)
    # The side with more features stays sparse: densifying it would cost chunk x K_large floats.
    swap = a_csr.shape[1] < b_csr.shape[1]
    sparse_side, dense_side = (b_csr, a_csr) if swap else (a_csr, b_csr)
    starts = _chunks(sparse_side.shape[0], int(chunk_size), progress)
    if dev.type == "cpu" and kernel == "numba":
        # Output rows are the smaller side's features (rows of K_large stay in cache).
        dot, both = _pair_sums_compiled(dense_side, sparse_side, starts, int(chunk_size), coactive, coactive_dtype)
        if swap:
            return dot, both
        return dot.T, None if both is None else both.T
    if dev.type != "cpu":
        dot, both = _pair_sums_device(sparse_side, dense_side, starts, int(chunk_size), dev, coactive)
    else:
        dot, both = _pair_sums_cpu(sparse_side, dense_side, starts, int(chunk_size), kernel, coactive)
    if both is not None and np.dtype(coactive_dtype) != both.dtype:
        both = np.rint(both).astype(coactive_dtype)
    if swap:
        return dot.T, None if both is None else both.T
    return dot, both


def _chunks(n: int, chunk_size: int, progress: bool) -> Iterable[int]:
    """Chunk start rows, with a tqdm bar counting examples when ``progress``."""
    starts = range(0, n, chunk_size)
    if not progress:
        return starts
    from tqdm.auto import tqdm

    def counted() -> Iterator[int]:
        with tqdm(total=n, unit="ex", desc="aligning", file=sys.stderr) as bar:
            for start in starts:
                yield start
                bar.update(min(chunk_size, n - start))

    return counted()


def _pair_sums_compiled(
    small_side, large_side, starts: Iterable[int], chunk_size: int, count: bool, count_dtype
) -> tuple[np.ndarray, np.ndarray | None]:
    """(K_small, K_large) sums by the compiled kernel, one block of rows at a time."""
    n, k_s, k_l = small_side.shape[0], small_side.shape[1], large_side.shape[1]
    dot = np.zeros((k_s, k_l))
    coactive = np.zeros((k_s, k_l), dtype=count_dtype) if count else None
    for start in starts:
        stop = min(start + chunk_size, n)
        kernels.accumulate_pair_sums(small_side[start:stop], large_side[start:stop], dot, coactive)
    return dot, coactive


def _pair_sums_cpu(
    sparse_side, dense_side, starts: Iterable[int], chunk_size: int, product: str, count: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    n, k_s, k_d = sparse_side.shape[0], sparse_side.shape[1], dense_side.shape[1]
    dot = np.zeros((k_s, k_d))
    coactive = np.zeros((k_s, k_d)) if count else None
    for start in starts:
        stop = min(start + int(chunk_size), n)
        s = sp.csr_matrix(sparse_side[start:stop], dtype=np.float32)
        d = dense_side[start:stop].toarray().astype(np.float32, copy=False)
        # float32 products, summed into float64 per chunk: within a chunk the error stays ~1e-7
        # relative, and the chunk sums never lose digits to the running total.
        dot += _sparse_t_dense(s, d, product)
        if not count:
            continue
        s.data[:] = 1.0  # stored entries are active ones (codes have no explicit zeros)
        # float32 counts are exact below 2**24 rows per chunk.
        coactive += _sparse_t_dense(s, (d > 0).astype(np.float32), product)
    return dot, coactive


def _pair_sums_device(
    sparse_side, dense_side, starts: Iterable[int], chunk_size: int, dev: torch.device, count: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_pair_sums_cpu` with the products and accumulators on a CUDA device."""
    n, k_s, k_d = sparse_side.shape[0], sparse_side.shape[1], dense_side.shape[1]
    dot = torch.zeros((k_s, k_d), dtype=torch.float64, device=dev)
    coactive = torch.zeros((k_s, k_d), dtype=torch.float64, device=dev) if count else None
    for start in starts:
        stop = min(start + chunk_size, n)
        s_t = sp.csr_matrix(sparse_side[start:stop], dtype=np.float32).T.tocsr()
        s_t.sort_indices()
        d = torch.from_numpy(dense_side[start:stop].toarray().astype(np.float32, copy=False)).to(
            dev
        )
        dot += torch.sparse.mm(_torch_csr(s_t, dev), d).double()
        if not count:
            continue
        s_t.data[:] = 1.0
        coactive += torch.sparse.mm(_torch_csr(s_t, dev), (d > 0).float()).double()
    return dot.cpu().numpy(), None if coactive is None else coactive.cpu().numpy()
