"""Tests of splatnlp/mechinterp/codes.py."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import random_codes

from splatnlp.mechinterp.context.codes import CodeStore, write_codes

N_EXAMPLES, N_FEATURES = 57, 23


@pytest.fixture
def dense() -> np.ndarray:
    return random_codes(np.random.default_rng(0), N_EXAMPLES, N_FEATURES, density=0.3).toarray()


@pytest.fixture
def store(tmp_path: Path, dense: np.ndarray) -> CodeStore:
    write_codes(tmp_path / "codes", sp.csr_matrix(dense))
    return CodeStore(tmp_path / "codes", dense.shape)


def _is_memory_mapped(arr: np.ndarray) -> bool:
    base = arr
    while base is not None:
        if isinstance(base, (np.memmap, mmap.mmap)):
            return True
        base = getattr(base, "base", None)
    return False


def test_both_orientations_equal_the_input(store: CodeStore, dense: np.ndarray) -> None:
    assert store.shape == (N_EXAMPLES, N_FEATURES)
    assert isinstance(store.csr, sp.csr_matrix) and isinstance(store.csc, sp.csc_matrix)
    np.testing.assert_array_equal(store.csr.toarray(), dense)
    np.testing.assert_array_equal(store.csc.toarray(), dense)
    assert store.nnz == np.count_nonzero(dense)
    assert store.csr.has_sorted_indices and store.csc.has_sorted_indices
    assert store.csr.data.dtype == np.float32
    assert store.csr.indices.dtype == np.int32  # so scipy wraps the memory map without a copy


@pytest.mark.parametrize("compiled", (True, False))
@pytest.mark.parametrize("block_entries", (1, 7, 40, 10**9))
def test_csc_written_in_column_blocks_equals_one_transpose(
    tmp_path: Path, dense: np.ndarray, block_entries: int, compiled: bool
) -> None:
    # Blocks of 1 and 7 entries split columns unevenly (a column of more entries than the block
    # is a block alone); empty columns at the edges; 10**9: one block. Compiled (numba) and the
    # numpy path without it.
    dense = dense.copy()
    dense[:, [0, 5, N_FEATURES - 1]] = 0
    write_codes(tmp_path, sp.csr_matrix(dense), block_entries=block_entries, compiled=compiled)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{o}_{part}.npy" for o in ("csc", "csr") for part in ("data", "indices", "indptr")
    ]  # no scratch file left behind
    whole = sp.csr_matrix(dense).tocsc()
    for part in ("indptr", "indices", "data"):
        got = np.load(tmp_path / f"csc_{part}.npy")
        np.testing.assert_array_equal(got, getattr(whole, part))
        assert got.dtype == (np.float32 if part == "data" else np.int32)
    empty = tmp_path / "empty"
    write_codes(empty, sp.csr_matrix((4, 3), dtype=np.float32), block_entries=2, compiled=compiled)
    assert CodeStore(empty, (4, 3)).csc.nnz == 0 and np.load(empty / "csc_indices.npy").shape == (0,)


def test_summary_and_cleanup(tmp_path: Path) -> None:
    # An explicit zero and a duplicate entry: the zero is dropped, the duplicate summed.
    data = np.array([1.0, 0.0, 2.0, 3.0, 4.0], np.float32)
    indices = np.array([2, 1, 0, 0, 3])
    indptr = np.array([0, 2, 4, 5])
    codes = sp.csr_matrix((data, indices, indptr), shape=(3, 4))
    summary = write_codes(tmp_path, codes)
    assert summary == {"n_examples": 3, "n_features": 4, "nnz": 3, "mean_active_per_example": 1.0}
    store = CodeStore(tmp_path, (3, 4))
    expected = np.array([[0, 0, 1, 0], [5, 0, 0, 0], [0, 0, 0, 4]], np.float32)
    np.testing.assert_array_equal(store.csr.toarray(), expected)
    np.testing.assert_array_equal(store.csc.toarray(), expected)
    assert np.all(store.csr.data != 0) and np.all(store.csc.data != 0)
    # The caller's matrix is left as it was.
    np.testing.assert_array_equal(codes.data, data)
    np.testing.assert_array_equal(codes.indices, indices)
    np.testing.assert_array_equal(codes.indptr, indptr)


def test_accepts_any_sparse_format(tmp_path: Path, dense: np.ndarray) -> None:
    write_codes(tmp_path, sp.coo_array(dense.astype(np.float64)))
    np.testing.assert_array_equal(CodeStore(tmp_path, dense.shape).csc.toarray(), dense)


def test_feature_reads(store: CodeStore, dense: np.ndarray) -> None:
    for f in range(N_FEATURES):
        rows, values = store.feature(f)
        expected_rows = np.flatnonzero(dense[:, f])
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_array_equal(values, dense[expected_rows, f])
        np.testing.assert_array_equal(store.feature_dense(f), dense[:, f])
    assert store.feature_dense(0).dtype == np.float32
    for bad in (-1, N_FEATURES):
        with pytest.raises(
            ValueError, match=rf"feature {bad} is out of range \(0\.\.{N_FEATURES - 1}\)"
        ):
            store.feature(bad)


def test_example_rows(store: CodeStore, dense: np.ndarray) -> None:
    rows = np.array([5, 0, 56, 5])
    np.testing.assert_array_equal(store.example_rows(rows).toarray(), dense[rows])


@pytest.mark.parametrize("chunk_size", [1, 7, 57, 1000])
def test_iter_row_chunks_covers_all_rows(
    store: CodeStore, dense: np.ndarray, chunk_size: int
) -> None:
    chunks = list(store.iter_row_chunks(chunk_size))
    assert [c[0] for c in chunks] == list(range(0, N_EXAMPLES, chunk_size))
    assert chunks[-1][1] == N_EXAMPLES
    assert all(stop - start == m.shape[0] for start, stop, m in chunks)
    np.testing.assert_array_equal(sp.vstack([m for _, _, m in chunks]).toarray(), dense)


def test_iter_row_chunks_refuses_bad_chunk_size(store: CodeStore) -> None:
    with pytest.raises(ValueError, match=r"chunk_size must be >= 1, got 0"):
        next(store.iter_row_chunks(0))


def test_arrays_are_memory_maps(store: CodeStore) -> None:
    for mat in (store.csr, store.csc):
        for arr in (mat.data, mat.indices, mat.indptr):
            assert _is_memory_mapped(arr)
    # The check can fail: an array read into memory is not a memory map.
    assert not _is_memory_mapped(np.load(store.directory / "csc_data.npy"))
    assert not _is_memory_mapped(np.array(store.csc.data))


def test_has_files(tmp_path: Path, store: CodeStore) -> None:
    assert store.has_files()
    assert not CodeStore(tmp_path / "nowhere", (1, 1)).has_files()


def test_mismatched_indptr_is_named(tmp_path: Path, dense: np.ndarray) -> None:
    write_codes(tmp_path, sp.csr_matrix(dense))
    # The manifest promises a shape the files do not hold.
    with pytest.raises(
        ValueError,
        match=rf"csr_indptr\.npy has shape \({N_EXAMPLES + 1},\); expected \({N_EXAMPLES + 2},\)",
    ):
        _ = CodeStore(tmp_path, (N_EXAMPLES + 1, N_FEATURES)).csr
    with pytest.raises(ValueError, match=rf"csc_indptr\.npy has shape \({N_FEATURES + 1},\)"):
        _ = CodeStore(tmp_path, (N_EXAMPLES, N_FEATURES - 1)).csc
    # An indptr whose end disagrees with the data.
    indptr = np.load(tmp_path / "csc_indptr.npy")
    indptr[-1] += 1
    np.save(tmp_path / "csc_indptr.npy", indptr)
    with pytest.raises(ValueError, match=r"csc_\*\.npy disagree: indptr ends at"):
        _ = CodeStore(tmp_path, dense.shape).csc


def test_corrupt_and_missing_files_are_named(tmp_path: Path, dense: np.ndarray) -> None:
    write_codes(tmp_path, sp.csr_matrix(dense))
    (tmp_path / "csr_indptr.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=r"file '.*csr_indptr\.npy' is not a readable \.npy"):
        _ = CodeStore(tmp_path, dense.shape).csr
    (tmp_path / "csc_data.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing file '.*csc_data\.npy'"):
        _ = CodeStore(tmp_path, dense.shape).csc
