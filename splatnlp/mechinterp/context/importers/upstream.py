"""Import SAE codes from upstream SplatNLP's activation dumps.

Upstream SplatNLP writes the SAE feature activations of a dataset as numbered batches::

    activations/batch_0000.zarr     dense float array of shape (n_batch_samples, n_features)
    metadata/batch_0000.parquet     one row per sample: sample_id, ability_tokens (token ids into
                                    vocab.json), weapon_id_token (id into weapon_vocab.json),
                                    weapon_name, global_index (the sample's row in the whole dump)

:func:`read_upstream_dump` turns such a dump into an :class:`ExampleSet` and a sparse codes
matrix; :func:`import_upstream_dump` then builds a context from them with
:func:`~splatnlp.mechinterp.context.build_context`. ``zarr`` and ``pyarrow`` are optional
dependencies (``pip install 'splatnlp-mechinterp[importers]'``) imported only when called.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from splatnlp.mechinterp.context import MechInterpContext, build_context
from splatnlp.mechinterp.context.examples import ExampleSet
from splatnlp.mechinterp.context.sae import SAE, load_sae
from splatnlp.mechinterp.context.vocab import Vocab

INSTALL_HINT = "pip install 'splatnlp-mechinterp[importers]'"
REQUIRED_COLUMNS = ("sample_id", "ability_tokens", "weapon_id_token", "global_index")
"""Metadata columns the importer reads. ``weapon_name`` is written upstream too but not needed:
the weapon is identified by ``weapon_id_token`` through ``weapon_vocab``."""
_INT_COLUMNS = ("sample_id", "weapon_id_token", "global_index")
_BATCH = re.compile(r"^batch_(\d+)$")
# Keyword arguments of build_context that import_upstream_dump fills in itself.
_RESERVED_BUILD_KWARGS = ("examples", "codes", "activations")


@dataclass(frozen=True)
class _Batch:
    """One numbered batch: its zarr array folder and its parquet metadata file."""

    number: int
    zarr_path: Path
    parquet_path: Path

    @property
    def label(self) -> str:
        return f"batch {self.zarr_path.stem!r}"


@dataclass
class _Metadata:
    """A batch's metadata as arrays of length n_batch_samples (ability tokens ragged, CSR-style)."""

    sample_ids: np.ndarray
    weapon_tokens: np.ndarray
    global_index: np.ndarray
    ability_lengths: np.ndarray
    ability_tokens: np.ndarray


def _import_zarr() -> Any:
    try:
        import zarr
    except ImportError as exc:
        raise ImportError(
            f"reading upstream SplatNLP dumps needs zarr, which is not installed; {INSTALL_HINT}"
        ) from exc
    return zarr


def _import_pyarrow() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(
            f"reading upstream SplatNLP dumps needs pyarrow, which is not installed; {INSTALL_HINT}"
        ) from exc
    return pa, pc, pq


def _as_vocab(value: Vocab | Mapping[str, int] | str | Path, what: str) -> Vocab:
    """A :class:`Vocab` from a Vocab, a ``{token: id}`` mapping or a JSON path."""
    if isinstance(value, Vocab):
        return value
    if isinstance(value, (str, Path)):
        return Vocab.from_json(value)
    if isinstance(value, Mapping):
        return Vocab(value, source=what)
    raise TypeError(
        f"{what} must be a Vocab, a {{token: id}} mapping or a JSON path, got "
        f"{type(value).__name__}"
    )


def _numbered(folder: Path, suffix: str) -> dict[int, Path]:
    """``{batch number: path}`` for the ``batch_XXXX<suffix>`` entries of ``folder``."""
    found: dict[int, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.suffix != suffix:
            continue
        match = _BATCH.match(entry.stem)
        if match is None:
            continue
        number = int(match.group(1))
        if number in found:
            raise ValueError(
                f"{str(found[number])!r} and {str(entry)!r} both claim batch number {number}; "
                "expected one file per batch"
            )
        found[number] = entry
    return found


def _list_batches(dump_dir: Path) -> list[_Batch]:
    """The dump's batches sorted by number, each zarr paired with its parquet."""
    if not dump_dir.is_dir():
        raise FileNotFoundError(
            f"upstream dump folder {str(dump_dir)!r} "
            + ("is not a folder" if dump_dir.exists() else "does not exist")
        )
    for sub in ("activations", "metadata"):
        if not (dump_dir / sub).is_dir():
            raise FileNotFoundError(
                f"upstream dump {str(dump_dir)!r} has no {sub}/ folder; expected "
                "activations/batch_XXXX.zarr and metadata/batch_XXXX.parquet"
            )
    arrays = _numbered(dump_dir / "activations", ".zarr")
    tables = _numbered(dump_dir / "metadata", ".parquet")
    for number in sorted(arrays.keys() - tables.keys()):
        raise FileNotFoundError(
            f"batch {arrays[number].stem!r} has activations {str(arrays[number])!r} but no "
            f"metadata; expected {str(dump_dir / 'metadata' / (arrays[number].stem + '.parquet'))!r}"
        )
    for number in sorted(tables.keys() - arrays.keys()):
        raise FileNotFoundError(
            f"batch {tables[number].stem!r} has metadata {str(tables[number])!r} but no "
            f"activations; expected {str(dump_dir / 'activations' / (tables[number].stem + '.zarr'))!r}"
        )
    if not arrays:
        raise FileNotFoundError(
            f"upstream dump {str(dump_dir)!r} holds no batches; expected "
            "activations/batch_XXXX.zarr with matching metadata/batch_XXXX.parquet"
        )
    return [_Batch(n, arrays[n], tables[n]) for n in sorted(arrays)]


def _open_array(path: Path) -> Any:
    """The 2-D numeric zarr array stored in ``path`` (at its root, or its group's only array)."""
    zarr = _import_zarr()
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several unrelated types for unreadable stores
        raise ValueError(f"{str(path)!r} is not a readable zarr array: {exc}") from exc
    if hasattr(node, "array_keys"):
        keys = sorted(node.array_keys())
        if len(keys) != 1:
            raise ValueError(
                f"{str(path)!r} is a zarr group holding arrays {keys}; expected one array of "
                "activations (n_samples, n_features), at the root or alone in the group"
            )
        node = node[keys[0]]
    if len(node.shape) != 2:
        raise ValueError(
            f"{str(path)!r} holds an array of shape {tuple(node.shape)}; expected 2-D "
            "activations (n_samples, n_features)"
        )
    dtype = np.dtype(node.dtype)
    if dtype.kind not in "fiu":
        raise ValueError(f"{str(path)!r} holds dtype {dtype}; expected numeric activations")
    return node


def _parquet_rows(batch: _Batch) -> int:
    """Rows of one batch's parquet, after checking its columns; reads only the file footer."""
    pa, _, pq = _import_pyarrow()
    where = str(batch.parquet_path)
    try:
        file = pq.ParquetFile(batch.parquet_path)
        names, n_rows = file.schema_arrow.names, file.metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"metadata {where!r} is not a readable parquet file: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(
            f"metadata {where!r} lacks column(s) {missing}; found {names}, expected "
            f"{list(REQUIRED_COLUMNS)}"
        )
    return int(n_rows)


def _read_metadata(batch: _Batch, *, vocab: Vocab, weapon_vocab: Vocab) -> _Metadata:
    """Read and check one batch's parquet: types, nulls, token id ranges."""
    pa, pc, pq = _import_pyarrow()
    where = str(batch.parquet_path)
    try:
        table = pq.read_table(batch.parquet_path, columns=list(REQUIRED_COLUMNS))
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"metadata {where!r} is not a readable parquet file: {exc}") from exc

    for name in REQUIRED_COLUMNS:
        column = table.column(name)
        if column.null_count:
            raise ValueError(
                f"metadata {where!r}: column {name!r} has {column.null_count} null value(s); "
                "expected a value in every row"
            )
    for name in _INT_COLUMNS:
        if not pa.types.is_integer(table.schema.field(name).type):
            raise ValueError(
                f"metadata {where!r}: column {name!r} has type {table.schema.field(name).type}; "
                "expected integers"
            )
    list_type = table.schema.field("ability_tokens").type
    if not (
        (pa.types.is_list(list_type) or pa.types.is_large_list(list_type))
        and pa.types.is_integer(list_type.value_type)
    ):
        raise ValueError(
            f"metadata {where!r}: column 'ability_tokens' has type {list_type}; expected a list "
            "of integer token ids"
        )

    lists = table.column("ability_tokens").combine_chunks()
    flat = lists.flatten()
    if flat.null_count:
        raise ValueError(
            f"metadata {where!r}: column 'ability_tokens' holds {flat.null_count} null token "
            "id(s); expected integer token ids"
        )
    meta = _Metadata(
        sample_ids=table.column("sample_id").to_numpy().astype(np.int64),
        weapon_tokens=table.column("weapon_id_token").to_numpy().astype(np.int64),
        global_index=table.column("global_index").to_numpy().astype(np.int64),
        ability_lengths=pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64),
        ability_tokens=flat.to_numpy(zero_copy_only=False).astype(np.int64),
    )
    # ExampleSet checks id ranges too, but only this loop knows which batch and sample it was.
    rows_of_tokens = np.repeat(np.arange(len(meta.sample_ids)), meta.ability_lengths)
    for what, ids, rows, vocabulary, vocab_name in (
        (
            "weapon_id_token",
            meta.weapon_tokens,
            np.arange(len(meta.sample_ids)),
            weapon_vocab,
            "weapon_vocab",
        ),
        ("ability token", meta.ability_tokens, rows_of_tokens, vocab, "vocab"),
    ):
        bad = np.flatnonzero((ids < 0) | (ids >= len(vocabulary)))
        if len(bad):
            sample = int(meta.sample_ids[rows[bad[0]]])
            raise ValueError(
                f"metadata {where!r}: sample_id {sample} has {what} {int(ids[bad[0]])}, outside "
                f"{vocab_name} (valid ids 0..{len(vocabulary) - 1}); pass the vocabularies the "
                "dump was written with"
            )
    return meta


def _first_bad(dense: np.ndarray) -> tuple[int, int, str] | None:
    """(row, column, reason) of the first non-finite or negative value, or None."""
    for mask, reason in ((~np.isfinite(dense), "non-finite"), (dense < 0, "negative")):
        if mask.any():
            row, col = np.argwhere(mask)[0]
            return int(row), int(col), reason
    return None


def _zarr_chunk_rows(array: Any) -> int | None:
    """Rows per zarr chunk (inner chunk when sharded), or None when zarr does not say."""
    try:
        rows = int(array.chunks[0])
    except (AttributeError, TypeError, IndexError, NotImplementedError):
        return None
    return rows if rows > 0 else None


def _read_codes(
    batch: _Batch, array: Any, sample_ids: np.ndarray, *, chunk_rows: int, bar: Any
) -> sp.csr_matrix:
    """One batch's activations as CSR (n_batch_samples, n_features), read ``chunk_rows`` at a time."""
    n_rows, n_features = (int(s) for s in array.shape)
    # Read whole zarr chunks: a slice that ends inside a chunk makes zarr decompress that chunk
    # again for the next slice. When a zarr chunk is taller than chunk_rows, one chunk is the
    # least zarr can decompress anyway, so that bounds the dense rows held at once.
    zarr_rows = _zarr_chunk_rows(array) or chunk_rows
    step = max(chunk_rows // zarr_rows, 1) * zarr_rows
    parts = []
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        dense = np.asarray(array[start:stop], dtype=np.float32)
        bad = _first_bad(dense)
        if bad is not None:
            row, col, reason = bad
            raise ValueError(
                f"activations {str(batch.zarr_path)!r}: {reason} value {float(dense[row, col])} at row "
                f"{start + row} (sample_id {int(sample_ids[start + row])}), feature {col}; "
                "expected finite, non-negative SAE activations"
            )
        parts.append(sp.csr_matrix(dense))
        bar.update(stop - start)
    if not parts:
        return sp.csr_matrix((0, n_features), dtype=np.float32)
    return sp.vstack(parts, format="csr", dtype=np.float32)


def _check_unique(
    values: np.ndarray, order: np.ndarray, what: str, batches: list[_Batch], offsets: np.ndarray
) -> None:
    """Raise naming the first value that repeats; ``order`` sorts ``values`` stably."""
    ordered = values[order]
    dup = np.flatnonzero(ordered[1:] == ordered[:-1])
    if not len(dup):
        return
    rows = order[dup[0]], order[dup[0] + 1]
    places = []
    for row in rows:
        b = int(np.searchsorted(offsets, row, side="right") - 1)
        places.append(f"{str(batches[b].parquet_path)!r} row {int(row - offsets[b])}")
    raise ValueError(
        f"{what} {int(ordered[dup[0]])} appears more than once ({places[0]} and {places[1]}); "
        f"expected each {what} once in the whole dump"
    )


def read_upstream_dump(
    dump_dir: str | Path,
    *,
    vocab: Vocab | Mapping[str, int] | str | Path,
    weapon_vocab: Vocab | Mapping[str, int] | str | Path,
    chunk_rows: int = 4096,
    progress: bool = True,
) -> tuple[ExampleSet, sp.csr_matrix]:
    """Read an upstream SplatNLP activation dump into an example set and sparse codes.

    Every ``activations/batch_XXXX.zarr`` is paired with ``metadata/batch_XXXX.parquet`` and
    the batches are read in batch-number order; the rows of all batches are then ordered by the
    metadata's ``global_index``. Each zarr array is read ``chunk_rows`` rows at a time (rounded
    to whole zarr chunks) and kept only as CSR, so a dump never sits in RAM densely.

    Parameters
    ----------
    dump_dir : the dump folder, holding ``activations/`` and ``metadata/``
    vocab : ability vocabulary the ``ability_tokens`` ids refer to (upstream ``vocab.json``):
        a :class:`Vocab`, a ``{token: id}`` mapping or a JSON path
    weapon_vocab : weapon vocabulary the ``weapon_id_token`` ids refer to (upstream
        ``weapon_vocab.json``), in the same forms
    chunk_rows : rows of activations densely in memory at once (at least one zarr chunk)
    progress : show a progress bar

    Returns
    -------
    examples : :class:`ExampleSet` of n_examples samples in ``global_index`` order, with example
        id = ``sample_id``
    codes : scipy.sparse.csr_matrix of shape (n_examples, n_features), float32, rows aligned
        with ``examples``

    Raises
    ------
    FileNotFoundError : the folder, ``activations/``/``metadata/``, or one half of a batch is
        missing
    ValueError : unreadable files, missing metadata columns, row or feature counts that
        disagree, duplicate ``global_index``/``sample_id``, token ids outside the vocabularies,
        NaN/inf or negative activations
    ImportError : zarr or pyarrow is not installed
    """
    from tqdm.auto import tqdm

    if (
        isinstance(chunk_rows, bool)
        or not isinstance(chunk_rows, (int, np.integer))
        or chunk_rows < 1
    ):
        raise ValueError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    vocab = _as_vocab(vocab, "vocab")
    weapon_vocab = _as_vocab(weapon_vocab, "weapon_vocab")
    # Fail on a missing dependency before touching any file.
    _import_zarr()
    _import_pyarrow()
    dump_dir = Path(dump_dir)
    batches = _list_batches(dump_dir)

    # Check every batch's shape and columns first (zarr headers and parquet footers only), so
    # that a bad batch fails before the slow part starts.
    arrays = [_open_array(b.zarr_path) for b in batches]
    n_features = int(arrays[0].shape[1])
    for batch, array in zip(batches, arrays, strict=True):
        if int(array.shape[1]) != n_features:
            raise ValueError(
                f"{batch.label} has {int(array.shape[1])} features ({str(batch.zarr_path)!r} has "
                f"shape {tuple(array.shape)}), but {batches[0].label} has {n_features}; expected "
                "every batch to have the same n_features"
            )
        n_meta = _parquet_rows(batch)
        if n_meta != int(array.shape[0]):
            raise ValueError(
                f"{batch.label}: {str(batch.zarr_path)!r} has {int(array.shape[0])} rows but "
                f"{str(batch.parquet_path)!r} has {n_meta}; expected one metadata row per "
                "activation row"
            )

    metas: list[_Metadata] = []
    code_parts: list[sp.csr_matrix] = []
    total = sum(int(a.shape[0]) for a in arrays)
    with tqdm(
        total=total, desc="reading upstream dump", unit="ex", disable=not progress, leave=False
    ) as bar:
        for batch, array in zip(batches, arrays, strict=True):
            meta = _read_metadata(batch, vocab=vocab, weapon_vocab=weapon_vocab)
            code_parts.append(
                _read_codes(batch, array, meta.sample_ids, chunk_rows=int(chunk_rows), bar=bar)
            )
            metas.append(meta)

    sample_ids = np.concatenate([m.sample_ids for m in metas])
    global_index = np.concatenate([m.global_index for m in metas])
    weapon_tokens = np.concatenate([m.weapon_tokens for m in metas])
    lengths = np.concatenate([m.ability_lengths for m in metas])
    tokens = np.concatenate([m.ability_tokens for m in metas])
    offsets = np.concatenate([[0], np.cumsum([len(m.sample_ids) for m in metas])])

    order = np.argsort(global_index, kind="stable")
    _check_unique(global_index, order, "global_index", batches, offsets)
    _check_unique(sample_ids, np.argsort(sample_ids, kind="stable"), "sample_id", batches, offsets)

    # Permute the ragged ability lists: row i of the result is row order[i] of the input.
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    new_lengths = lengths[order]
    new_indptr = np.concatenate([[0], np.cumsum(new_lengths)])
    gather = np.repeat(indptr[:-1][order] - new_indptr[:-1], new_lengths) + np.arange(
        new_indptr[-1]
    )
    examples = ExampleSet(
        example_ids=sample_ids[order],
        weapon_tokens=weapon_tokens[order].astype(np.int32),
        ability_indptr=new_indptr.astype(np.int64),
        ability_tokens=tokens[gather].astype(np.int32),
        vocab=vocab,
        weapon_vocab=weapon_vocab,
    )
    codes = sp.vstack(code_parts, format="csr", dtype=np.float32)[order]
    return examples, sp.csr_matrix(codes)


def import_upstream_dump(
    dump_dir: str | Path,
    out_dir: str | Path,
    *,
    sae: SAE | str | Path,
    vocab: Vocab | Mapping[str, int] | str | Path,
    weapon_vocab: Vocab | Mapping[str, int] | str | Path,
    name: str | None = None,
    model_type: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    chunk_rows: int = 4096,
    **build_kwargs: Any,
) -> MechInterpContext:
    """Build a context from an upstream SplatNLP activation dump and the SAE that produced it.

    Reads the dump with :func:`read_upstream_dump` and passes the examples and codes to
    :func:`~splatnlp.mechinterp.context.build_context` (codes are taken as given, not
    re-encoded, so the manifest records ``codes_from: codes``).

    Parameters
    ----------
    dump_dir : the dump folder (``activations/`` and ``metadata/``)
    out_dir : the context folder to create
    sae : the SAE whose codes the dump holds: an :class:`SAE` or a path :func:`load_sae`
        accepts; its n_features must equal the dump's
    vocab, weapon_vocab, chunk_rows : as for :func:`read_upstream_dump`
    name, model_type, overwrite, progress : as for ``build_context``
    build_kwargs : further ``build_context`` options (``n_top_examples``, ``provenance``,
        ``source``, ...); ``source`` defaults to ``"upstream dump <dump_dir>"``

    Returns the loaded :class:`MechInterpContext`.
    """
    reserved = sorted(set(build_kwargs) & set(_RESERVED_BUILD_KWARGS))
    if reserved:
        raise TypeError(
            f"import_upstream_dump fills in {reserved} from the dump itself; pass vocab and "
            "weapon_vocab as its own keywords and leave examples/codes/activations out"
        )
    out_dir = Path(out_dir)
    # Checked here as well as in build_context so that a bad call fails before a long read.
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{str(out_dir)!r} already exists; pass overwrite=True to replace it")
    if not isinstance(sae, SAE):
        sae = load_sae(sae)
    batches = _list_batches(Path(dump_dir))
    first = _open_array(batches[0].zarr_path)
    if int(first.shape[1]) != sae.n_features:
        raise ValueError(
            f"upstream dump {str(dump_dir)!r} has {int(first.shape[1])} features "
            f"({str(batches[0].zarr_path)!r} has shape {tuple(first.shape)}), but the SAE has "
            f"n_features={sae.n_features}; expected the SAE that produced the dump"
        )

    examples, codes = read_upstream_dump(
        dump_dir, vocab=vocab, weapon_vocab=weapon_vocab, chunk_rows=chunk_rows, progress=progress
    )
    source = build_kwargs.pop("source", f"upstream dump {dump_dir}")
    provenance = {
        "importer": "splatnlp.mechinterp.context.importers.upstream",
        "upstream_dump": str(Path(dump_dir).resolve()),
        "upstream_batches": len(batches),
        **dict(build_kwargs.pop("provenance", None) or {}),
    }
    return build_context(
        out_dir,
        sae=sae,
        examples=examples,
        codes=codes,
        name=name,
        model_type=model_type,
        source=source,
        provenance=provenance,
        overwrite=overwrite,
        progress=progress,
        **build_kwargs,
    )
