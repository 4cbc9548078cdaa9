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

import importlib.util
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


CSC_BLOCK_ENTRIES = 1 << 25
"""Stored entries per column block when the CSC copy is written (:func:`write_codes`): ~0.3 GB
of block arrays at a time instead of a whole second copy of the codes (1.8 GB at real scale)."""

_NUMBA = importlib.util.find_spec("numba") is not None
"""Whether the compiled block transpose can run (numba is a dependency; checked, not imported)."""


def _csc_blocks(
    csr: sp.csr_matrix, csc_ptr: np.ndarray, blocks: list[tuple[int, int]], idx: type, *, compiled: bool | None = None
):
    """``(rows, values)`` of the CSC matrix of ``csr``, one column block at a time: each column's
    rows ascending, columns in order, so the blocks laid end to end are ``csr.tocsc()``'s
    ``indices`` and ``data`` (``csc_ptr``: its ``indptr``, int64). scipy's whole ``tocsc()`` took
    10 s at real scale and held both copies; this holds one block.

    Compiled (numba, the default when installed): one pass over the CSR entries per block, each
    entry placed at its column's cursor (0.55 s per block of 2**25 entries at real scale, 3.9 s
    in all). Without numba: the block's entries in row order, then a stable sort by column (a
    radix sort, as the column's offset in the block fits 16 bits), which keeps their rows
    ascending (about 1.6 s per block of 2**24).
    """
    compiled = _NUMBA if compiled is None else compiled
    indptr = np.asarray(csr.indptr)
    if compiled:
        from splatnlp.mechinterp.context._numba_codes import csc_block

        for j0, j1 in blocks:
            lo, hi = int(csc_ptr[j0]), int(csc_ptr[j1])
            rows, values = np.empty(hi - lo, dtype=idx), np.empty(hi - lo, dtype=np.float32)
            csc_block(indptr, np.asarray(csr.indices), np.asarray(csr.data), j0, j1, csc_ptr[j0:j1] - lo, rows, values)
            yield rows, values
        return
    # Which block each column is in (uint8 while there are fewer than 256 blocks).
    block_of = np.zeros(csr.shape[1], dtype=np.uint8 if len(blocks) < 256 else np.int32)
    for b, (j0, j1) in enumerate(blocks):
        block_of[j0:j1] = b
    entry_block = block_of[csr.indices]
    for b, (j0, j1) in enumerate(blocks):
        at = np.flatnonzero(entry_block == b)
        rows = (np.searchsorted(indptr, at, side="right") - 1).astype(idx, copy=False)
        local = csr.indices[at] - j0
        order = np.argsort(local.astype(np.uint16) if j1 - j0 <= 1 << 16 else local, kind="stable")
        yield rows[order], csr.data[at[order]]


def _column_counts(csr: sp.csr_matrix, chunk: int = 1 << 24) -> np.ndarray:
    """Stored entries per column, int64 (n_features,). In chunks: ``np.bincount`` casts its
    input to int64 first, a 1.8 GB copy (and 4.8 s) of the real preset's Ultra indices at once."""
    counts = np.zeros(csr.shape[1], dtype=np.int64)
    for start in range(0, csr.nnz, chunk):
        counts += np.bincount(csr.indices[start : start + chunk], minlength=csr.shape[1])
    return counts


class _NpyWriter:
    """A 1-d ``.npy`` file of ``length`` items written chunk by chunk (plain sequential writes:
    neither the whole array nor a memory map of it is ever held); closing it checks that exactly
    ``length`` items were written."""

    def __init__(self, path: Path, dtype: type, length: int):
        self.path, self.dtype, self.length, self.written = path, np.dtype(dtype), length, 0
        self.fh = open(path, "wb")  # noqa: SIM115 - closed by __exit__
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (length,)}
        np.lib.format.write_array_header_1_0(self.fh, header)

    def write(self, chunk: np.ndarray) -> None:
        np.ascontiguousarray(chunk, dtype=self.dtype).tofile(self.fh)
        self.written += len(chunk)

    def __enter__(self) -> _NpyWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.fh.close()
        if exc_type is None and self.written != self.length:  # np.load would read garbage
            raise RuntimeError(f"wrote {self.written} items to {str(self.path)!r}, expected {self.length}")


def write_codes(
    directory: str | Path,
    codes: sp.spmatrix | sp.sparray,
    *,
    block_entries: int = CSC_BLOCK_ENTRIES,
    compiled: bool | None = None,
) -> dict[str, int | float]:
    """Write ``codes`` (n_examples, n_features) in both orientations; return its summary.

    Explicit zeros are dropped and duplicates summed, so ``nnz`` counts active entries. The CSC
    copy is built and written in blocks of whole columns of at most ``block_entries`` entries
    (:func:`_csc_blocks`; ``compiled`` None: numba when installed): at real scale a whole
    ``tocsc()`` beside the CSR matrix was the build's peak (4.4 GB; each copy is 1.8 GB).
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
    csr.sort_indices()
    # copy=False: a cast to the dtype the arrays already have would copy ~0.9 GB each at real
    # scale.
    np.save(directory / "csr_indptr.npy", csr.indptr.astype(idx, copy=False))
    np.save(directory / "csr_indices.npy", csr.indices.astype(idx, copy=False))
    np.save(directory / "csr_data.npy", csr.data.astype(np.float32, copy=False))
    csc_indptr = np.zeros(n_features + 1, dtype=np.int64)
    np.cumsum(_column_counts(csr), out=csc_indptr[1:])
    np.save(directory / "csc_indptr.npy", csc_indptr.astype(idx, copy=False))
    blocks = column_blocks(csc_indptr, block_entries)
    with (
        _NpyWriter(directory / "csc_indices.npy", idx, csr.nnz) as rows_out,
        _NpyWriter(directory / "csc_data.npy", np.float32, csr.nnz) as values_out,
    ):
        for rows, values in _csc_blocks(csr, csc_indptr, blocks, idx, compiled=compiled):
            rows_out.write(rows)
            values_out.write(values)
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
