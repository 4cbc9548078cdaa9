"""The saved pair index: the all-pairs sufficient statistics an alignment already computed.

``align --out DIR`` writes them to ``DIR/index/`` so that a matcher given the alignment
(``FeatureMatcher(..., alignment=DIR)``) answers a query from one row or column instead of a pass
over the codes. For features ``i`` of side A and ``j`` of side B, over all examples::

    index/index.json     schema version, both contexts' names, example-set and codes fingerprints
    index/dot.npy        float32 (K_a, K_b)  sum_n a_ni b_nj      (correlation, with the moments)
    index/coactive.npy   uint32  (K_a, K_b)  #{n : a_ni > 0 and b_nj > 0}  (Jaccard, containments)
    index/decoder.npy    float32 (K_a, K_b)  cosine of the two decoder rows (absent when d_model
                                             differs)
    index/children_offsets.npy  int64 (K_small + 1,)  where each smaller-side feature's block starts
    index/children_gram.npy     float64 (sum q**2,)   X^T X of its q children's codes (q x q each;
                                             children by ascending id; absent without numba)
    index/children_covered.npy  int64 (K_small,)      examples where it and any child are active

With the per-feature moments the matcher already holds, ``dot`` and ``coactive`` determine
correlation, co-activation Jaccard and both containments of every pair. ``dot`` is the streamed
pass's float32 products summed into float64 per chunk, stored in float32: relative error about
1e-7, the precision of the pass itself. Counts are exact. At real scale (2,048 x 24,576) the
folder holds 0.6 GB; it is memory-mapped, so a query reads one row (98 KB) or one column.

An index is refused (:class:`IndexMismatch`) for contexts other than the ones it was computed
on (example-set fingerprint, or the codes' fingerprint: another SAE over the same examples), and
when it was written by another schema version (the message gives the command that rebuilds it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "INDEX_DIR",
    "INDEX_SCHEMA",
    "IndexMismatch",
    "PairIndex",
    "codes_fingerprint",
    "index_meta",
    "load_index",
    "write_index",
]

INDEX_DIR = "index"
"""Sub-folder of an alignment folder that holds the pair index."""

INDEX_SCHEMA = 1
"""Version of the index layout; an index with another version is refused."""

_ARRAYS = {"dot": np.float32, "coactive": np.uint32, "decoder": np.float32}
_CHILDREN = {"children_offsets": np.int64, "children_gram": np.float64, "children_covered": np.int64}
"""Optional, 1-d: each smaller-side feature's children's Gram matrix
(:func:`~splatnlp.mechinterp.analysis.metrics.kernels.children_gram`); an index without them
(written before, or without numba) still answers, computing those from the codes."""
_SAMPLE = 4096


class IndexMismatch(ValueError):
    """The index was computed on other contexts, or by another version of the layout."""


def codes_fingerprint(ctx: Any) -> str:
    """``sha256:...`` of a context's codes: shape, per-feature active counts (the CSC row
    pointers) and an even sample of the stored values. Two SAEs over the same examples differ
    here while their example-set fingerprints agree; cheap enough for every load (it reads
    K + 1 pointers and 4,096 values)."""
    codes = ctx.codes
    csc = codes.csc
    h = hashlib.sha256()
    h.update(np.asarray(codes.shape, dtype=np.int64).tobytes())
    h.update(np.asarray(csc.indptr, dtype=np.int64).tobytes())
    nnz = len(csc.data)
    if nnz:
        step = max(1, nnz // _SAMPLE)
        h.update(np.asarray(csc.data[::step][:_SAMPLE], dtype=np.float32).tobytes())
    return "sha256:" + h.hexdigest()


def _identity(ctx: Any) -> dict[str, Any]:
    return {
        "name": ctx.name,
        "model_type": ctx.model_type,
        "n_features": int(ctx.n_features),
        "example_fingerprint": ctx.fingerprint,
        "codes_fingerprint": codes_fingerprint(ctx),
    }


def index_meta(a: Any, b: Any, n_examples: int) -> dict[str, Any]:
    """What ``index.json`` records about the two contexts (computed when aligning, while they
    are at hand)."""
    return {
        "schema": INDEX_SCHEMA,
        "kind": "splatnlp-mechinterp pair index",
        "a": _identity(a),
        "b": _identity(b),
        "n_examples": int(n_examples),
    }


def write_index(directory: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write ``arrays`` (``dot``, ``coactive`` and optionally ``decoder``, each (K_a, K_b)) and
    ``meta`` (:func:`index_meta`) into ``directory`` (created; the caller publishes it atomically).

    Raises ValueError when an array is missing or has the wrong shape.
    """
    directory = Path(directory)
    shape = (int(meta["a"]["n_features"]), int(meta["b"]["n_features"]))
    for key in ("dot", "coactive"):
        if key not in arrays:
            raise ValueError(f"pair index needs {key!r}; got {sorted(arrays)}")
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for key, dtype in _ARRAYS.items():
        if key not in arrays:
            continue
        arr = np.asarray(arrays[key])
        if arr.shape != shape:
            raise ValueError(f"pair index array {key!r} has shape {arr.shape}; expected {shape}")
        # C order: a row (a side-A query) is one contiguous read and a column touches K_a pages;
        # the pass's sums can come back transposed (Fortran order), which made a row query touch
        # K_b pages (measured 190 us vs 10 us per row read on the tiny demo).
        np.save(directory / f"{key}.npy", np.ascontiguousarray(arr, dtype=dtype), allow_pickle=False)
        written[key] = np.dtype(dtype).name
    present = [key for key in _CHILDREN if key in arrays]
    if present and len(present) != len(_CHILDREN):
        raise ValueError(f"pair index needs all of {list(_CHILDREN)} or none; got {present}")
    if present:
        offsets, gram, covered = (np.asarray(arrays[key], dtype=dtype) for key, dtype in _CHILDREN.items())
        k_small = min(shape)
        if offsets.shape != (k_small + 1,) or int(offsets[-1]) != len(gram) or covered.shape != (k_small,):
            raise ValueError(
                f"children_offsets {offsets.shape}, children_gram {gram.shape} and children_covered "
                f"{covered.shape} do not fit {k_small} smaller-side features"
            )
        for key, arr in zip(_CHILDREN, (offsets, gram, covered), strict=True):
            np.save(directory / f"{key}.npy", arr, allow_pickle=False)
            written[key] = arr.dtype.name
    (directory / "index.json").write_text(json.dumps({**meta, "arrays": written}, indent=2))
    return directory


@dataclass(frozen=True, eq=False)
class PairIndex:
    """A loaded pair index (memory-mapped arrays of shape (K_a, K_b)) and its metadata."""

    directory: Path
    meta: dict[str, Any]
    dot: np.ndarray
    coactive: np.ndarray
    decoder: np.ndarray | None
    children_offsets: np.ndarray | None = None
    children_gram: np.ndarray | None = None
    children_covered: np.ndarray | None = None

    def children_gram_of(self, small_feature: int, children: np.ndarray, members: np.ndarray) -> np.ndarray | None:
        """``X^T X`` (float64 (m, m)) of ``members``, children of smaller-side ``small_feature``
        whose whole child list is ``children`` (ascending ids, as the alignment assigned them);
        None when the index holds no children Gram matrices or they do not fit that list."""
        if self.children_offsets is None:
            return None
        lo, hi = int(self.children_offsets[small_feature]), int(self.children_offsets[small_feature + 1])
        q = len(children)
        at = np.searchsorted(children, members)
        if hi - lo != q * q or np.any(at >= q) or np.any(children[np.minimum(at, q - 1)] != members):
            return None
        return np.asarray(self.children_gram[lo:hi]).reshape(q, q)[np.ix_(at, at)]

    def children_covered_of(self, small_feature: int) -> int | None:
        """Examples where ``small_feature`` and any of its children are active (None: not held)."""
        return None if self.children_covered is None else int(self.children_covered[small_feature])

    def side_of(self, ctx: Any) -> str:
        """'a' or 'b': the side ``ctx`` was on when the index was written (by codes fingerprint,
        then name)."""
        fp = codes_fingerprint(ctx)
        sides = [s for s in ("a", "b") if self.meta[s]["codes_fingerprint"] == fp]
        if len(sides) == 2:  # the same codes on both sides: tell them apart by name
            sides = [s for s in sides if self.meta[s]["name"] == ctx.name] or sides[:1]
        if not sides:
            raise IndexMismatch(
                f"pair index {str(self.directory)!r} was computed on contexts "
                f"{self.meta['a']['name']!r} (codes {self.meta['a']['codes_fingerprint'][:19]}...) and "
                f"{self.meta['b']['name']!r} (codes {self.meta['b']['codes_fingerprint'][:19]}...), not on "
                f"{ctx.name!r} (codes {fp[:19]}...); {self._rebuild()}"
            )
        return sides[0]

    def _rebuild(self) -> str:
        return rebuild_command(self.directory.parent, self.meta["a"]["name"], self.meta["b"]["name"])

    def rows(self, side: str, feature: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One feature of ``side`` against every feature of the other side: ``dot`` float64,
        ``coactive`` int64 and ``decoder`` cosine float64 (None when not stored), shape (K_other,)."""
        if side == "a":
            take = (lambda arr: arr[feature])  # noqa: E731 - a contiguous row
        elif side == "b":
            take = (lambda arr: arr[:, feature])  # noqa: E731 - a strided column
        else:
            raise ValueError(f"side must be 'a' or 'b', got {side!r}")
        dec = None if self.decoder is None else np.asarray(take(self.decoder), dtype=np.float64)
        return np.asarray(take(self.dot), dtype=np.float64), np.asarray(take(self.coactive), dtype=np.int64), dec


def rebuild_command(alignment_dir: str | Path, a_name: str, b_name: str) -> str:
    return f"rebuild it with `splatnlp-mechinterp align {a_name} {b_name} --out {str(alignment_dir)}`"


def load_index(directory: str | Path, a: Any, b: Any) -> PairIndex:
    """Open the pair index in ``directory`` for contexts ``a`` and ``b`` (either order).

    Raises
    ------
    FileNotFoundError : no index there
    IndexMismatch : another schema version, other example set or other codes (naming both
        fingerprints), or arrays of the wrong shape
    """
    directory = Path(directory)
    path = directory / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"no pair index at {str(path)!r}")
    meta = json.loads(path.read_text())
    names = (meta.get("a", {}).get("name", "A"), meta.get("b", {}).get("name", "B"))
    if meta.get("schema") != INDEX_SCHEMA:
        raise IndexMismatch(
            f"pair index {str(directory)!r} has schema {meta.get('schema')!r}; this version of "
            f"splatnlp-mechinterp reads schema {INDEX_SCHEMA}: "
            + rebuild_command(directory.parent, *names)
        )
    for ctx in (a, b):
        for side in ("a", "b"):
            want = meta[side]["example_fingerprint"]
            if ctx.fingerprint != want:
                raise IndexMismatch(
                    f"pair index {str(directory)!r} was computed on example set {want}, but context "
                    f"{ctx.name!r} has {ctx.fingerprint}; " + rebuild_command(directory.parent, *names)
                )
    if int(meta["n_examples"]) != int(a.n_examples):
        raise IndexMismatch(
            f"pair index {str(directory)!r} sums {meta['n_examples']} examples; the contexts have "
            f"{a.n_examples}; " + rebuild_command(directory.parent, *names)
        )
    shape = (int(meta["a"]["n_features"]), int(meta["b"]["n_features"]))
    arrays: dict[str, np.ndarray | None] = {}
    for key in _ARRAYS:
        file = directory / f"{key}.npy"
        if key not in meta["arrays"]:
            arrays[key] = None
            continue
        arr = np.load(file, mmap_mode="r", allow_pickle=False)
        if arr.shape != shape or arr.dtype != np.dtype(meta["arrays"][key]):
            raise IndexMismatch(
                f"{str(file)!r} holds {arr.dtype} {arr.shape}; index.json says "
                f"{meta['arrays'][key]} {shape}; " + rebuild_command(directory.parent, *names)
            )
        arrays[key] = arr
    children: dict[str, np.ndarray | None] = dict.fromkeys(_CHILDREN)
    if all(key in meta["arrays"] for key in _CHILDREN):
        for key, dtype in _CHILDREN.items():
            children[key] = np.load(directory / f"{key}.npy", mmap_mode="r", allow_pickle=False)
            if children[key].ndim != 1 or children[key].dtype != np.dtype(dtype):
                raise IndexMismatch(
                    f"{str(directory / (key + '.npy'))!r} holds {children[key].dtype} {children[key].shape}; "
                    f"expected 1-d {np.dtype(dtype).name}; " + rebuild_command(directory.parent, *names)
                )
        if (
            len(children["children_offsets"]) != min(shape) + 1
            or int(children["children_offsets"][-1]) != len(children["children_gram"])
            or len(children["children_covered"]) != min(shape)
        ):
            raise IndexMismatch(
                f"children Gram matrices in {str(directory)!r} do not fit {min(shape)} features; "
                + rebuild_command(directory.parent, *names)
            )
    index = PairIndex(
        directory=directory, meta=meta, dot=arrays["dot"], coactive=arrays["coactive"], decoder=arrays["decoder"],
        children_offsets=children["children_offsets"], children_gram=children["children_gram"],
        children_covered=children["children_covered"],
    )
    sides = {index.side_of(a), index.side_of(b)}
    if sides != {"a", "b"}:
        raise IndexMismatch(
            f"pair index {str(directory)!r} pairs {names[0]!r} with {names[1]!r}; contexts "
            f"{a.name!r} and {b.name!r} are not that pair; " + rebuild_command(directory.parent, *names)
        )
    return index

