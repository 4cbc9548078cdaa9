"""The pair sums on a Dask LocalCluster against the single-process pass, a worker killed mid-run,
and the refusals."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import Pair, float_tol

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

from splatnlp.mechinterp.analysis import align_contexts  # noqa: E402
from splatnlp.mechinterp.analysis.align import distributed as D  # noqa: E402
from splatnlp.mechinterp.analysis.align.report import METRICS, AlignOptions  # noqa: E402
from splatnlp.mechinterp.analysis.metrics.streamed import pair_sums_streamed  # noqa: E402
from splatnlp.mechinterp.context import MechInterpContext  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes, as ``--dask local:2`` starts them."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


def _same_sums(dot, co, ref_dot, ref_co, n_rows: int) -> None:
    # float64 sums in another order: a few float64 roundings of the value.
    assert np.abs(dot - ref_dot).max() <= float_tol(np.float64, n_rows) * max(np.abs(ref_dot).max(), 1.0)
    np.testing.assert_array_equal(co, ref_co)


def test_two_workers_give_the_single_process_sums_on_the_tiny_demo(tiny_demo_dir: Path, cluster) -> None:
    full, ultra = MechInterpContext(tiny_demo_dir / "full"), MechInterpContext(tiny_demo_dir / "ultra")
    ref_dot, ref_co = pair_sums_streamed(full.codes.csr, ultra.codes.csr, coactive_dtype=np.uint32)
    with distributed.Client(cluster) as client:
        dot, co = D.pair_sums_dask(full, ultra, client, shard_rows=1500)  # two shards, one addition
    assert dot.shape == (2048, 24576) and co.dtype == np.uint32
    _same_sums(dot, co, ref_dot, ref_co, full.n_examples)


def test_alignment_on_dask_equals_the_single_process_alignment(pair: Pair, cluster) -> None:
    cheap = dict(n_null_features=8, n_null_directions=16, keep_matrices=True)
    ref = align_contexts(pair.source, pair.target, options=AlignOptions(**cheap))
    on_dask = align_contexts(
        pair.source, pair.target, options=AlignOptions(dask=cluster.scheduler_address, dask_shard_rows=37, **cheap)
    )
    for name in METRICS:
        np.testing.assert_allclose(on_dask.matrices[name], ref.matrices[name], rtol=0, atol=1e-6, equal_nan=True)
    for side in ("a", "b"):
        np.testing.assert_array_equal(on_dask.a["class_label"] if side == "a" else on_dask.b["class_label"],
                                      ref.a["class_label"] if side == "a" else ref.b["class_label"])
    np.testing.assert_array_equal(on_dask.index["coactive"], ref.index["coactive"])


def test_a_worker_killed_mid_run_is_recomputed_not_dropped(pair: Pair) -> None:
    ref_dot, ref_co = pair_sums_streamed(pair.source.codes.csr, pair.target.codes.csr, coactive_dtype=np.uint32)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        pids = client.run(os.getpid)  # {worker address: pid}
        victim = sorted(pids.values())[0]

        def kill_soon() -> None:
            time.sleep(1.0)  # tasks take 0.3 s each: several are done, several in flight
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill_soon)
        killer.start()
        dot, co = D.pair_sums_dask(pair.source, pair.target, client, shard_rows=20, _pause=0.3)
        killer.join()
        assert victim not in client.run(os.getpid).values()  # the worker did die (the nanny restarts it)
    _same_sums(dot, co, ref_dot, ref_co, pair.source.n_examples)


def test_sums_that_miss_examples_are_refused(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    real = D._shard_sums

    def lossy(*args):
        dot, co, rows = real(*args)
        return dot, co, rows - 1  # a shard that lost a row

    monkeypatch.setattr(D, "_shard_sums", lossy)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as client:
        with pytest.raises(D.IncompleteSums, match=rf"cover {pair.source.n_examples - 3} of {pair.source.n_examples} examples"):
            D.pair_sums_dask(pair.source, pair.target, client, shard_rows=pair.source.n_examples // 3 + 1)


def test_bad_dask_inputs(pair: Pair, tmp_path: Path) -> None:
    for bad in ("local:0", "local:two"):
        with pytest.raises(ValueError, match=rf"dask {bad!r}: expected 'local', 'local:N'"):
            with D.dask_client(bad):
                pass
    with pytest.raises(ValueError, match="shard_rows must be an integer >= 1, got 0"):
        D.shard_bounds(10, 0)
    assert D.shard_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
