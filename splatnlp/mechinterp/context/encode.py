"""Encode hidden activations through an SAE into sparse codes, chunk by chunk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from splatnlp.mechinterp.context.sae import SAE

__all__ = ["encode_activations", "load_activations"]


def load_activations(activations: Any, key: str | None) -> np.ndarray | torch.Tensor:
    """Activations as an array-like of shape (n_examples, d_model) without reading a .npy fully."""
    if isinstance(activations, (str, Path)):
        path = Path(activations)
        if not path.is_file():
            raise FileNotFoundError(f"activations file {str(path)!r} does not exist")
        if path.suffix == ".npy":
            try:
                return np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise ValueError(f"activations file {str(path)!r} is not a readable .npy: {exc}") from exc
        if path.suffix == ".safetensors":
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                tensors = load_file(str(path))
            except (SafetensorError, OSError, ValueError) as exc:
                raise ValueError(f"activations file {str(path)!r} is not readable safetensors: {exc}") from exc
            if key is None:
                if len(tensors) != 1:
                    raise ValueError(
                        f"activations file {str(path)!r} holds tensors {sorted(tensors)}; pass "
                        "activations_key to choose one"
                    )
                key = next(iter(tensors))
            if key not in tensors:
                raise ValueError(f"activations file {str(path)!r} has no tensor {key!r}; found {sorted(tensors)}")
            return tensors[key]
        raise ValueError(
            f"activations file {str(path)!r} has suffix {path.suffix!r}; expected .npy or .safetensors"
        )
    if isinstance(activations, (np.ndarray, torch.Tensor)):
        return activations
    raise TypeError(
        f"activations must be a path, numpy array or torch tensor, got {type(activations).__name__}"
    )


def encode_activations(
    sae: SAE,
    activations: np.ndarray | torch.Tensor,
    *,
    chunk_size: int = 2048,
    device: str | torch.device = "cpu",
    progress: bool = True,
    fvu_examples: int = 16384,
) -> tuple[sp.csr_matrix, float, int]:
    """Encode activations (n_examples, d_model) through ``sae`` chunk by chunk.

    Returns the codes as CSR (n_examples, n_features), the reconstruction FVU on the first
    ``fvu_examples`` examples, and how many examples that FVU used.
    """
    from tqdm.auto import tqdm

    if activations.ndim != 2:
        raise ValueError(f"activations must be 2-D (n_examples, d_model), got shape {tuple(activations.shape)}")
    n, d = activations.shape
    if d != sae.d_model:
        raise ValueError(f"activations have d_model {d}, but the SAE expects {sae.d_model}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    device = torch.device(device)
    model = sae.to(device)
    indptr_parts = [np.zeros(1, dtype=np.int64)]
    indices, values = _Appendable(np.int32), _Appendable(np.float32)
    nnz = 0
    sq_err = 0.0
    x_sum = torch.zeros(d, dtype=torch.float64)
    x_sq = 0.0
    n_fvu = min(n, fvu_examples)
    with torch.inference_mode(), tqdm(
        total=n, desc="encoding", unit="ex", disable=not progress, leave=False
    ) as bar:
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            chunk = activations[start:stop]
            # np.array copies the chunk: a slice of a read-only memory map would make torch warn.
            x = torch.as_tensor(np.array(chunk) if not isinstance(chunk, torch.Tensor) else chunk)
            x = x.to(device=device, dtype=torch.float32)
            if not torch.isfinite(x).all():
                bad = (~torch.isfinite(x)).nonzero()[0]
                row, col = int(bad[0]) + start, int(bad[1])
                raise ValueError(
                    f"activations contain a non-finite value ({float(x[row - start, col])}) at "
                    f"example row {row}, dim {col}"
                )
            codes = model.encode(x)
            if start < n_fvu:
                m = min(stop, n_fvu) - start
                recon = model.decode(codes[:m], x=x[:m])
                sq_err += float(((x[:m] - recon) ** 2).sum())
                x_sum += x[:m].sum(0).double().cpu()
                x_sq += float((x[:m].double() ** 2).sum())
            csr = sp.csr_matrix(codes.cpu().numpy())
            if start == 0:  # room for every example at the first chunk's density, and a tenth more
                expected = int(csr.nnz / (stop - start) * n * 1.1) + csr.nnz
                try:
                    indices.reserve(expected)
                    values.reserve(expected)
                except MemoryError:  # a first chunk far denser than the rest: grow as needed
                    pass
            indptr_parts.append(csr.indptr[1:].astype(np.int64) + nnz)
            indices.extend(csr.indices)
            values.extend(csr.data)
            nnz += csr.nnz
            bar.update(stop - start)
    total_var = x_sq - float((x_sum**2).sum()) / max(n_fvu, 1)
    fvu = sq_err / total_var if total_var > 0 else float("nan")
    result = sp.csr_matrix(
        (values.array(), indices.array(), np.concatenate(indptr_parts)), shape=(n, sae.n_features)
    )
    return result, fvu, n_fvu


class _Appendable:
    """A 1-d array appended to chunk by chunk, with room for the expected total: the encoding
    loop writes each chunk's codes straight into it. A list of chunk arrays concatenated at the
    end held the codes twice at that moment, and freeing the chunks did not give the memory back
    (they live on the allocator's heap): that moment was the real preset build's 4.5 GB peak.
    The final view holds more than half of its buffer (room for a tenth more, or growth by
    half), so scipy takes it as it is (it copies views of less than half their base)."""

    def __init__(self, dtype: type):
        self.buf = np.empty(0, dtype=dtype)
        self.size = 0

    def reserve(self, capacity: int) -> None:
        """Room for ``capacity`` items in all (pages are only touched as they are written)."""
        if capacity > len(self.buf):
            grown = np.empty(capacity, dtype=self.buf.dtype)
            grown[: self.size] = self.buf[: self.size]
            self.buf = grown

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if need > len(self.buf):  # the estimate was short: grow by half (rare, one copy)
            self.reserve(max(need, len(self.buf) + len(self.buf) // 2))
        self.buf[self.size : need] = values
        self.size = need

    def array(self) -> np.ndarray:
        return self.buf[: self.size]
