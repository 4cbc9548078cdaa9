"""The all-pairs sums on a Dask cluster: row shards of both code matrices, tree-reduced.

``dot[i, j] = sum_n a_ni b_nj`` and ``coactive[i, j]`` are sums over examples, so they split over
any partition of the examples: each shard's sums are computed by a worker from the contexts'
memory-mapped codes (the workers open the context folders themselves: the data is read where it
lies, nothing but the (K_a, K_b) partial sums travels), and the partial sums are added pairwise in
a tree. Used by ``align_contexts`` when ``AlignOptions(dask=...)`` names a scheduler; the
per-shard kernel is the single-machine one
(:func:`~splatnlp.mechinterp.analysis.metrics.streamed.pair_sums_streamed`), so the result is the
single-process one up to the order of float64 additions.

A worker lost mid-run makes Dask recompute its tasks elsewhere (the tasks are pure); every shard
also returns how many examples it summed and the total is checked against the example count, so
a run never returns a partial sum: it succeeds with every example or raises
:class:`IncompleteSums`.

Needs the ``dask`` extra (``pip install 'splatnlp-mechinterp[dask]'``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IncompleteSums", "dask_client", "pair_sums_dask", "shard_bounds"]


class IncompleteSums(RuntimeError):
    """The reduced sums do not cover every example (a shard was lost and not recomputed)."""


def shard_bounds(n_examples: int, shard_rows: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` row ranges of at most ``shard_rows`` covering ``n_examples``."""
    if isinstance(shard_rows, bool) or not isinstance(shard_rows, (int, np.integer)) or shard_rows < 1:
        raise ValueError(f"shard_rows must be an integer >= 1, got {shard_rows!r}")
    return [(s, min(s + int(shard_rows), n_examples)) for s in range(0, n_examples, int(shard_rows))]


def _shard_sums(a_path: str, b_path: str, start: int, stop: int, coactive: bool, pause: float):
    """One shard's (dot, coactive, n_rows), computed on a worker from the context folders."""
    import time

    from splatnlp.mechinterp.analysis.metrics.streamed import pair_sums_streamed
    from splatnlp.mechinterp.context import MechInterpContext

    a, b = MechInterpContext(a_path), MechInterpContext(b_path)
    dot, both = pair_sums_streamed(
        a.codes.csr[start:stop], b.codes.csr[start:stop], coactive=coactive, coactive_dtype=np.uint32
    )
    if pause:  # tests only: keeps tasks in flight long enough to kill a worker under them
        time.sleep(pause)
    return dot, both, stop - start


def _add(x, y):
    return x[0] + y[0], None if x[1] is None else x[1] + y[1], x[2] + y[2]


def pair_sums_dask(
    a: Any,
    b: Any,
    client: Any,
    *,
    shard_rows: int = 25_000,
    n_examples: int | None = None,
    coactive: bool = True,
    _pause: float = 0.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`pair_sums_streamed` of two contexts' codes, over row shards on a Dask cluster.

    Parameters
    ----------
    a, b : MechInterpContext over the same example set, in folders every worker can read
    client : a ``distributed.Client``
    shard_rows : examples per task (each task holds its shard's codes and one (K_a, K_b) pair of
        partial sums: 0.6 GB at 2,048 x 24,576)
    n_examples : sum over the first this many examples only (None: all)
    coactive : also count co-activations

    Returns (dot float64, coactive uint32 or None), each of shape (K_a, K_b).

    Raises
    ------
    ValueError : contexts over different example sets, a bad ``shard_rows``
    IncompleteSums : the reduced sums do not cover every example
    """
    import dask

    if a.fingerprint != b.fingerprint or a.n_examples != b.n_examples:
        raise ValueError(
            f"contexts {a.name!r} and {b.name!r} are over different example sets; "
            "the sums need codes on one shared example set"
        )
    n = a.n_examples if n_examples is None else min(int(n_examples), a.n_examples)
    bounds = shard_bounds(n, shard_rows)
    task = dask.delayed(_shard_sums, pure=True)
    parts = [task(str(Path(a.path)), str(Path(b.path)), s, e, coactive, _pause) for s, e in bounds]
    add = dask.delayed(_add, pure=True)
    while len(parts) > 1:  # a binary tree: each partial sum travels once per level
        parts = [add(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    dot, both, rows = client.compute(parts[0]).result()
    if rows != n:
        raise IncompleteSums(f"the reduced sums cover {rows} of {n} examples; rerun the alignment")
    return dot, both


@contextmanager
def dask_client(spec: str) -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec``: a scheduler address (``tcp://host:8786``), or
    ``local`` / ``local:N`` to start a LocalCluster of N single-threaded worker processes (2 by
    default) for the duration of the block."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ImportError(
            "aligning on Dask needs the dask extra: pip install 'splatnlp-mechinterp[dask]'"
        ) from exc
    if spec == "local" or spec.startswith("local:"):
        text = spec.partition(":")[2] or "2"
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"dask {spec!r}: expected 'local', 'local:N' with N >= 1, or a scheduler address")
        with LocalCluster(
            n_workers=int(text), threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster, Client(cluster) as client:
            yield client
        return
    with Client(spec) as client:
        yield client
