"""Feature codes on disk: one sparse matrix in both orientations, memory-mapped.

A context's ``codes/`` folder holds the matrix of shape (n_examples, n_features) twice::

    csr_indptr.npy  (n_examples + 1,)   csr_indices.npy (nnz,) feature ids   csr_data.npy (nnz,) float32
    csc_indptr.npy  (n_features + 1,)   csc_indices.npy (nnz,) example rows  csc_data.npy (nnz,) float32

Row reads (the codes of some examples) use CSR, column reads (one feature over all examples)
use CSC: slicing a column out of CSR would touch every row. Arrays are opened with
``np.load(mmap_mode="r")``, so opening a real-size store costs no RAM until pages are read.
Index arrays are int32 while nnz < 2**31 so that scipy wraps them without copying (it upcasts
both to a common index dtype otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from splatnlp.mechinterp.context.examples import load_npy

_ORIENTATIONS = ("csr", "csc")


def _index_dtype(nnz: int, size: int) -> type:
    return np.int32 if max(nnz, size) < np.iinfo(np.int32).max else np.int64


def column_blocks(indptr: np.ndarray, max_entries: int) -> list[tuple[int, int]]:
    """Consecutive column ranges ``(j0, j1)`` of a CSC matrix holding at most ``max_entries``
    stored entries each (a single column may hold more), for passes over the codes in blocks of
    whole columns."""
    f = len(indptr) - 1
    bounds, j0 = [], 0
    while j0 < f:
        j1 = int(np.searchsorted(indptr, indptr[j0] + max_entries, side="right")) - 1
        j1 = min(max(j1, j0 + 1), f)
        bounds.append((j0, j1))
        j0 = j1
    return bounds


def write_codes(directory: str | Path, codes: sp.spmatrix | sp.sparray) -> dict[str, int | float]:
    """Write ``codes`` (n_examples, n_features) in both orientations; return its summary.

    Explicit zeros are dropped and duplicates summed, so ``nnz`` counts active entries.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    csr = sp.csr_matrix(codes, dtype=np.float32)
    # The clean-up works in place on arrays shared with the caller's matrix: copy first, but
    # only when there is something to clean (a real-size matrix is gigabytes).
    if not csr.has_canonical_format or not np.all(csr.data):
        csr = csr.copy()
        csr.sum_duplicates()
        csr.eliminate_zeros()
    n_examples, n_features = csr.shape
    idx = _index_dtype(csr.nnz, max(csr.shape))
    for name, mat in (("csr", csr), ("csc", csr.tocsc())):
        mat.sort_indices()
        # copy=False: a cast to the dtype the arrays already have would copy ~0.9 GB each at
        # real scale, on top of the matrix and its CSC transpose.
        np.save(directory / f"{name}_indptr.npy", mat.indptr.astype(idx, copy=False))
        np.save(directory / f"{name}_indices.npy", mat.indices.astype(idx, copy=False))
        np.save(directory / f"{name}_data.npy", mat.data.astype(np.float32, copy=False))
        del mat
    return {
        "n_examples": n_examples,
        "n_features": n_features,
        "nnz": int(csr.nnz),
        "mean_active_per_example": float(csr.nnz / max(n_examples, 1)),
    }


class CodeStore:
    """Read access to a ``codes/`` folder; arrays are memory-mapped and opened lazily.

    Parameters
    ----------
    directory : path of the ``codes/`` folder
    shape : (n_examples, n_features) the manifest promises; checked against the files
    """

    def __init__(self, directory: str | Path, shape: tuple[int, int]):
        self.directory = Path(directory)
        self.shape = (int(shape[0]), int(shape[1]))
        self._mats: dict[str, sp.csr_matrix | sp.csc_matrix] = {}

    def __repr__(self) -> str:
        return f"CodeStore({str(self.directory)!r}, shape={self.shape})"

    @property
    def n_examples(self) -> int:
        return self.shape[0]

    @property
    def n_features(self) -> int:
        return self.shape[1]

    def _open(self, orientation: str) -> sp.csr_matrix | sp.csc_matrix:
        if orientation not in self._mats:
            arrays = {
                part: load_npy(self.directory / f"{orientation}_{part}.npy", mmap=True)
                for part in ("indptr", "indices", "data")
            }
            n_major = self.shape[0] if orientation == "csr" else self.shape[1]
            indptr, indices, data = arrays["indptr"], arrays["indices"], arrays["data"]
            where = str(self.directory / orientation)
            if indptr.shape != (n_major + 1,):
                raise ValueError(
                    f"{where}_indptr.npy has shape {indptr.shape}; expected ({n_major + 1},) for "
                    f"codes of shape {self.shape}"
                )
            if indices.shape != data.shape or int(indptr[-1]) != len(data):
                raise ValueError(
                    f"{where}_*.npy disagree: indptr ends at {int(indptr[-1])}, indices has "
                    f"{len(indices)} and data {len(data)} entries"
                )
            cls = sp.csr_matrix if orientation == "csr" else sp.csc_matrix
            # check_format is skipped on purpose: it would read every index (the whole file).
            mat = cls((data, indices, indptr), shape=self.shape, copy=False)
            self._mats[orientation] = mat
        return self._mats[orientation]

    @property
    def csr(self) -> sp.csr_matrix:
        """The codes as a CSR matrix over memory-mapped arrays, shape (n_examples, n_features)."""
        return self._open("csr")

    @property
    def csc(self) -> sp.csc_matrix:
        """The codes as a CSC matrix over memory-mapped arrays, shape (n_examples, n_features)."""
        return self._open("csc")

    @property
    def nnz(self) -> int:
        return int(self.csr.indptr[-1])

    def feature(self, feature: int) -> tuple[np.ndarray, np.ndarray]:
        """Examples where ``feature`` is active and its values there: (rows int, values float32)."""
        if isinstance(feature, bool) or not 0 <= int(feature) < self.n_features:
            raise ValueError(f"feature {feature} is out of range (0..{self.n_features - 1})")
        csc = self.csc
        lo, hi = int(csc.indptr[feature]), int(csc.indptr[feature + 1])
        return np.asarray(csc.indices[lo:hi]), np.asarray(csc.data[lo:hi])

    def feature_dense(self, feature: int) -> np.ndarray:
        """One feature over all examples, shape (n_examples,), zeros included."""
        rows, values = self.feature(feature)
        out = np.zeros(self.n_examples, dtype=np.float32)
        out[rows] = values
        return out

    def example_rows(self, rows: np.ndarray) -> sp.csr_matrix:
        """Codes of the given examples, shape (len(rows), n_features), read into memory."""
        return self.csr[np.asarray(rows)]

    def iter_row_chunks(self, chunk_size: int = 8192) -> Iterator[tuple[int, int, sp.csr_matrix]]:
        """Yield ``(start, stop, codes[start:stop])`` so a pass over all codes has bounded memory."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        csr = self.csr
        for start in range(0, self.n_examples, chunk_size):
            stop = min(start + chunk_size, self.n_examples)
            yield start, stop, csr[start:stop]

    def has_files(self) -> bool:
        return all(
            (self.directory / f"{o}_{p}.npy").is_file()
            for o in _ORIENTATIONS
            for p in ("indptr", "indices", "data")
        )
